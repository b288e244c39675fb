/* Helpers shared by the unit tests: a seeded random generator and buffer sentinels. */
#ifndef KD_TEST_SUPPORT_H
#define KD_TEST_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

/* splitmix64: a small, seeded, reproducible generator (no global state). */
typedef struct kd_test_rng {
    uint64_t state;
} kd_test_rng;

uint64_t kd_test_rng_next(kd_test_rng *rng);
/* Uniform in [lo, hi). */
double kd_test_uniform(kd_test_rng *rng, double lo, double hi);
/* Standard normal (Box-Muller). */
double kd_test_normal(kd_test_rng *rng);

/* Fills n floats with a recognisable pattern, and tells whether they still hold it. */
void kd_test_fill_sentinel(float *buffer, size_t n);
int kd_test_is_sentinel(const float *buffer, size_t n);

#endif /* KD_TEST_SUPPORT_H */
