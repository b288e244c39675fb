/* Helpers shared by the unit tests. */
#include "support.h"

#include <math.h>
#include <string.h>

uint64_t kd_test_rng_next(kd_test_rng *rng)
{
    uint64_t z = (rng->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double kd_test_uniform(kd_test_rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * ((double)(kd_test_rng_next(rng) >> 11) * 0x1.0p-53);
}

double kd_test_normal(kd_test_rng *rng)
{
    double u1 = kd_test_uniform(rng, 0x1.0p-53, 1.0);
    double u2 = kd_test_uniform(rng, 0.0, 1.0);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static float sentinel_value(size_t i) { return -12345.0f - (float)(i % 7); }

void kd_test_fill_sentinel(float *buffer, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buffer[i] = sentinel_value(i);
}

int kd_test_is_sentinel(const float *buffer, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float expected = sentinel_value(i);
        if (memcmp(&buffer[i], &expected, sizeof expected) != 0)
            return 0;
    }
    return 1;
}
