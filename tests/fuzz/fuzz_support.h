/* Helpers shared by the libFuzzer targets: reading typed values from the fuzzer's bytes, an
 * allocator that counts and can fail, scratch files, and the check that stops a run. */
#ifndef KD_FUZZ_SUPPORT_H
#define KD_FUZZ_SUPPORT_H

#include <stddef.h>
#include <stdint.h>

#include <kd.h>

/* The libFuzzer entry points every target defines. */
int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Stops the run with a message when an invariant does not hold: libFuzzer then saves the
 * input as a crash artifact. */
#define FUZZ_CHECK(condition, ...)                                                                 \
    do {                                                                                           \
        if (!(condition))                                                                          \
            kd_fuzz_fail(__FILE__, __LINE__, #condition, __VA_ARGS__);                             \
    } while (0)

#if defined(__GNUC__)
__attribute__((noreturn, format(printf, 4, 5)))
#endif
void kd_fuzz_fail(const char *file, int line, const char *condition, const char *format, ...);

/* The fuzzer's bytes, consumed front to back; reads past the end give zeros. */
typedef struct fuzz_stream {
    const uint8_t *data;
    size_t size;
} fuzz_stream;

uint8_t fuzz_u8(fuzz_stream *s);
uint32_t fuzz_u32(fuzz_stream *s);
/* An integer in [lo, hi]. */
size_t fuzz_range(fuzz_stream *s, size_t lo, size_t hi);
/* A float drawn mostly from the awkward ones: NaN, +-INFINITY, -INFINITY masks, +-FLT_MAX,
 * denormals, signed zeros, huge and tiny values, raw bit patterns, and small ordinary values. */
float fuzz_float(fuzz_stream *s);
/* A temperature: mostly valid (1e-30 .. 1e30, 1, 20), sometimes 0, negative, NaN, infinite,
 * denormal or raw bits. */
float fuzz_temperature(fuzz_stream *s);

/* An allocator that counts live blocks, refuses its fail_at-th call (0: never) and any request
 * above `limit` bytes (0: no limit). */
typedef struct fuzz_allocator {
    size_t live, calls, fail_at, limit;
    int injected;   /* the fail_at-th call came and was refused */
    int over_limit; /* a request above the limit came and was refused */
} fuzz_allocator;

kd_allocator fuzz_allocator_hook(fuzz_allocator *counter);

/* A scratch path unique to this process, <dir>/kd-fuzz-<pid>-<name>, under $TMPDIR or /tmp. */
void fuzz_scratch_path(char *out, size_t size, const char *name);

/* Writes bytes to a file (replacing it); stops the run on an I/O error. */
void fuzz_write_file(const char *path, const uint8_t *data, size_t size);

#endif /* KD_FUZZ_SUPPORT_H */
