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

/* How many entries of a directory have `part` in their name (a save's temporary files:
 * ".tmp-"); (size_t)-1 if the directory cannot be read. */
size_t kd_test_count_entries(const char *dir, const char *part);

/* A host allocator for the allocator hook: counts calls and live blocks, the bytes live now
 * and at their peak, keeps the largest request, refuses its fail_at-th call (0: never), and
 * notes a request of 0 bytes and a release of NULL or of more blocks than it gave out (the
 * library must do neither). Start from {.fail_at = n} or {0}. */
typedef struct kd_test_allocator {
    size_t calls, live, fail_at, largest, live_bytes, peak_bytes;
    int bad_release, zero_request;
} kd_test_allocator;

/* The kd_allocator table (declared in <kd.h>) that routes to *counter; written into *out. */
struct kd_allocator;
void kd_test_allocator_hook(kd_test_allocator *counter, struct kd_allocator *out);
/* Its two functions, for tables a test builds itself (e.g. with a wrong struct_size). */
void *kd_test_allocate(void *counter, size_t bytes);
void kd_test_release(void *counter, void *block);
/* 1 if every block was released and neither misuse above happened. */
int kd_test_allocator_clean(const kd_test_allocator *counter);

#endif /* KD_TEST_SUPPORT_H */
