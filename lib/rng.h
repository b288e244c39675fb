/* A small, seeded, per-handle random generator (xoshiro256**, seeded through splitmix64).
 * No global state: each model carries its own. SPDX-License-Identifier: MIT */
#ifndef KD_LIB_RNG_H
#define KD_LIB_RNG_H

#include <stdint.h>

typedef struct kd_rng {
    uint64_t s[4];
} kd_rng;

/* Seeds the generator; every seed (0 included) gives a valid, distinct state. */
void kd_rng_seed(kd_rng *rng, uint64_t seed);

static inline uint64_t kd_rng_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* The next 64 random bits (inline: dropout draws one per four values). */
static inline uint64_t kd_rng_next(kd_rng *rng)
{
    uint64_t *s = rng->s;
    const uint64_t result = kd_rng_rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = kd_rng_rotl(s[3], 45);
    return result;
}

/* Standard normal, by the Box-Muller transform. */
double kd_rng_normal(kd_rng *rng);

#endif /* KD_LIB_RNG_H */
