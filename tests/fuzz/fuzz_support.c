/* Helpers shared by the libFuzzer targets. */
#define _POSIX_C_SOURCE 200809L

#include "fuzz_support.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kd_fuzz_fail(const char *file, int line, const char *condition, const char *format, ...)
{
    fprintf(stderr, "%s:%d: invariant failed: %s\n  ", file, line, condition);
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
    fputc('\n', stderr);
    abort();
}

uint8_t fuzz_u8(fuzz_stream *s)
{
    if (s->size == 0)
        return 0;
    s->size--;
    return *s->data++;
}

uint32_t fuzz_u32(fuzz_stream *s)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v = v << 8 | fuzz_u8(s);
    return v;
}

size_t fuzz_range(fuzz_stream *s, size_t lo, size_t hi)
{
    return lo + (size_t)fuzz_u8(s) % (hi - lo + 1);
}

static float from_bits(uint32_t bits)
{
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

float fuzz_float(fuzz_stream *s)
{
    uint8_t k = fuzz_u8(s);
    switch (k % 24) {
    case 0: return NAN;
    case 1: return INFINITY;
    case 2:
    case 3: return -INFINITY; /* a mask */
    case 4: return FLT_MAX;
    case 5: return -FLT_MAX;
    case 6: return FLT_TRUE_MIN;
    case 7: return -from_bits(fuzz_u32(s) & 0x007FFFFFu); /* a negative denormal */
    case 8: return 0.0f;
    case 9: return -0.0f;
    case 10: return (float)(fuzz_u8(s) % 2 ? 1e30 : -1e30);
    case 11: return 1e-30f;
    case 12: return from_bits(fuzz_u32(s));
    case 13: return (float)(int8_t)fuzz_u8(s) * 1000.0f;
    default: return (float)(int8_t)fuzz_u8(s) / 16.0f;
    }
}

float fuzz_temperature(fuzz_stream *s)
{
    uint8_t k = fuzz_u8(s);
    switch (k % 16) {
    case 0: return 0.0f;
    case 1: return -1.0f;
    case 2: return NAN;
    case 3: return INFINITY;
    case 4: return FLT_TRUE_MIN;
    case 5: return 1e-30f;
    case 6: return 1e30f;
    case 7: return FLT_MAX;
    case 8: return from_bits(fuzz_u32(s));
    case 9: return 1e-3f;
    case 10: return 1e4f;
    case 11: return 20.0f;
    default: return 0.25f + (float)fuzz_u8(s) / 8.0f;
    }
}

static void *fuzz_allocate(void *user, size_t bytes)
{
    fuzz_allocator *c = user;
    c->calls++;
    if (c->fail_at != 0 && c->calls == c->fail_at) {
        c->injected = 1;
        return NULL;
    }
    if (c->limit != 0 && bytes > c->limit) {
        c->over_limit = 1;
        return NULL;
    }
    void *block = malloc(bytes);
    FUZZ_CHECK(block != NULL, "harness out of memory (%zu bytes)", bytes);
    c->live++;
    return block;
}

static void fuzz_release(void *user, void *block)
{
    fuzz_allocator *c = user;
    FUZZ_CHECK(block != NULL, "release(NULL)");
    FUZZ_CHECK(c->live > 0, "release of a block that was never allocated");
    c->live--;
    free(block);
}

kd_allocator fuzz_allocator_hook(fuzz_allocator *counter)
{
    kd_allocator a = {sizeof(kd_allocator), fuzz_allocate, fuzz_release, counter};
    return a;
}

void fuzz_scratch_path(char *out, size_t size, const char *name)
{
    const char *dir = getenv("TMPDIR");
    if (dir == NULL || dir[0] == '\0')
        dir = "/tmp";
    int n = snprintf(out, size, "%s/kd-fuzz-%ld-%s", dir, (long)getpid(), name);
    FUZZ_CHECK(n > 0 && (size_t)n < size, "scratch path too long");
}

void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot create %s", path);
    FUZZ_CHECK(size == 0 || fwrite(data, 1, size, f) == size, "cannot write %s", path);
    FUZZ_CHECK(fclose(f) == 0, "cannot close %s", path);
}
