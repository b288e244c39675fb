/* Reading IDX files, plain or gzip-compressed, through zlib. */
#include "idx.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static int failure(char *error, size_t size, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error, size, format, args);
    va_end(args);
    return -1;
}

/* Reads up to n bytes; returns how many were read, or -1 on a read error. */
static long read_bytes(gzFile file, void *buffer, size_t n)
{
    size_t done = 0;
    while (done < n) {
        unsigned chunk = n - done > (1u << 30) ? 1u << 30 : (unsigned)(n - done);
        int got = gzread(file, (char *)buffer + done, chunk);
        if (got < 0)
            return -1;
        if (got == 0)
            break;
        done += (size_t)got;
    }
    return (long)done;
}

static uint32_t big_endian_u32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Reads exactly `size` bytes of data into a buffer that grows as data arrives, so that a header
 * announcing more than the file holds costs no more memory than the file. */
static int read_data(gzFile file, const char *path, size_t size, uint8_t **out, char *error,
                     size_t error_size)
{
    size_t capacity = 0, filled = 0;
    uint8_t *data = NULL;
    while (filled < size) {
        size_t want = capacity == 0 ? (size < (1u << 20) ? size : (1u << 20)) : capacity * 2;
        capacity = want < size ? want : size;
        uint8_t *grown = realloc(data, capacity);
        if (grown == NULL) {
            free(data);
            return failure(error, error_size, "%s: out of memory", path);
        }
        data = grown;
        long got = read_bytes(file, data + filled, capacity - filled);
        if (got < 0) {
            free(data);
            return failure(error, error_size, "%s: read error (corrupt gzip stream?)", path);
        }
        filled += (size_t)got;
        if (filled < capacity) {
            free(data);
            return failure(error, error_size, "%s: truncated: the header announces %zu bytes of data, the file has %zu",
                           path, size, filled);
        }
    }
    uint8_t extra;
    long trailing = read_bytes(file, &extra, 1);
    if (trailing != 0) {
        free(data);
        return failure(error, error_size, trailing < 0 ? "%s: read error (corrupt gzip stream?)"
                                                       : "%s: trailing data after the announced items",
                       path);
    }
    *out = data;
    return 0;
}

int idx_read(const char *path, unsigned dimension_count, idx_file *out, char *error,
             size_t error_size)
{
    gzFile file = gzopen(path, "rb");
    if (file == NULL)
        return failure(error, error_size, "%s: cannot open: %s", path,
                       errno != 0 ? strerror(errno) : "out of memory");
    uint8_t header[4 + 3 * 4];
    const size_t header_size = 4 + 4 * (size_t)dimension_count;
    long got = read_bytes(file, header, header_size);
    int result = -1;
    if (got < 0) {
        failure(error, error_size, "%s: read error (corrupt gzip stream?)", path);
    } else if ((size_t)got < 4 || header[0] != 0 || header[1] != 0 || header[2] != 0x08
               || header[3] != dimension_count) {
        failure(error, error_size, "%s: not an IDX file of unsigned bytes with %u dimension%s (wrong magic number)",
                path, dimension_count, dimension_count == 1 ? "" : "s");
    } else if ((size_t)got < header_size) {
        failure(error, error_size, "%s: truncated header", path);
    } else {
        idx_file read = {dimension_count, {0, 1, 1}, 1, NULL};
        for (unsigned d = 0; d < dimension_count; d++)
            read.dims[d] = big_endian_u32(header + 4 + 4 * d);
        /* dims are u32: dims[1] * dims[2] fits in 64 bits, but the product of all three may
         * not (2^20 x 2^22 x 2^22 wraps to 0); refuse what cannot be addressed before
         * multiplying. */
        uint64_t item_size = (uint64_t)read.dims[1] * read.dims[2];
        read.item_size = (size_t)item_size;
        if (read.dims[0] == 0 || item_size == 0)
            failure(error, error_size, "%s: empty: the header announces no data", path);
        else if (item_size > SIZE_MAX / 2 / read.dims[0])
            failure(error, error_size, "%s: the header announces more data than memory can hold", path);
        else if (read_data(file, path, read.item_size * read.dims[0], &read.data, error,
                           error_size) == 0) {
            *out = read;
            result = 0;
        }
    }
    gzclose(file);
    return result;
}

void idx_free(idx_file *file)
{
    free(file->data);
    file->data = NULL;
}
