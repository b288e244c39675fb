/* xoshiro256** seeded through splitmix64 (Blackman and Vigna's published constants).
 * SPDX-License-Identifier: MIT */
#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void kd_rng_seed(kd_rng *rng, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t kd_rng_next(kd_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float kd_rng_uniform(kd_rng *rng) { return (float)(kd_rng_next(rng) >> 40) * 0x1.0p-24f; }

double kd_rng_normal(kd_rng *rng)
{
    /* u1 in (0, 1] so that log(u1) is finite. */
    double u1 = ((double)(kd_rng_next(rng) >> 11) + 1.0) * 0x1.0p-53;
    double u2 = (double)(kd_rng_next(rng) >> 11) * 0x1.0p-53;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}
