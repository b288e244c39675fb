/* Helpers shared by the unit tests. */
#define _POSIX_C_SOURCE 200809L

#include "support.h"

#include <dirent.h>
#include <stddef.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

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

/* Each block is preceded by its size, in a prefix that keeps the block's alignment. */
typedef union block_prefix {
    size_t bytes;
    max_align_t alignment;
} block_prefix;

void *kd_test_allocate(void *counter, size_t bytes)
{
    kd_test_allocator *c = counter;
    c->calls++;
    c->largest = bytes > c->largest ? bytes : c->largest;
    c->zero_request |= bytes == 0;
    if ((c->fail_at != 0 && c->calls == c->fail_at) || bytes > SIZE_MAX - sizeof(block_prefix))
        return NULL;
    block_prefix *prefix = malloc(sizeof *prefix + bytes);
    if (prefix == NULL)
        return NULL;
    prefix->bytes = bytes;
    c->live++;
    c->live_bytes += bytes;
    c->peak_bytes = c->live_bytes > c->peak_bytes ? c->live_bytes : c->peak_bytes;
    return prefix + 1;
}

void kd_test_release(void *counter, void *block)
{
    kd_test_allocator *c = counter;
    if (block == NULL || c->live == 0) {
        c->bad_release = 1;
        return;
    }
    block_prefix *prefix = (block_prefix *)block - 1;
    c->live--;
    c->live_bytes -= prefix->bytes;
    free(prefix);
}

int kd_test_allocator_clean(const kd_test_allocator *counter)
{
    return counter->live == 0 && !counter->bad_release && !counter->zero_request;
}

void kd_test_allocator_hook(kd_test_allocator *counter, struct kd_allocator *out)
{
    *out = (kd_allocator){sizeof(kd_allocator), kd_test_allocate, kd_test_release, counter};
}

size_t kd_test_count_entries(const char *dir, const char *part)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return (size_t)-1;
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        count += strstr(e->d_name, part) != NULL;
    closedir(d);
    return count;
}
