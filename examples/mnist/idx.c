/* Reading IDX files, plain or gzip-compressed (byte_stream.c). */
#define _POSIX_C_SOURCE 200809L

#include "idx.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "byte_stream.h"
#include "regular_file.h"

static int failure(char *error, size_t size, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(error, size, format, args);
    va_end(args);
    return -1;
}

static uint32_t big_endian_u32(const uint8_t *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* The failure of a file that holds `present` bytes of data where its header announces `size`. */
static int wrong_length(char *error, size_t error_size, const char *path, size_t size,
                        uint64_t present)
{
    if (present > size)
        return failure(error, error_size, "%s: trailing data after the announced items", path);
    return failure(error, error_size, "%s: truncated: the header announces %zu bytes of data, the file has %llu",
                   path, size, (unsigned long long)present);
}

/* Reads exactly `size` bytes of data into a buffer that grows (doubling) as data arrives, so
 * that a header announcing more than the file holds costs no more than twice what it holds. */
static int read_data(byte_stream *file, const char *path, size_t size, uint8_t **out, char *error,
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
        long got = byte_stream_read(file, data + filled, capacity - filled);
        if (got < 0) {
            free(data);
            return failure(error, error_size, "%s: %s", path, file->problem);
        }
        filled += (size_t)got;
        if (filled < capacity) {
            free(data);
            return wrong_length(error, error_size, path, size, filled);
        }
    }
    uint8_t extra;
    long trailing = byte_stream_read(file, &extra, 1);
    if (trailing != 0) {
        free(data);
        return trailing < 0 ? failure(error, error_size, "%s: %s", path, file->problem)
                            : wrong_length(error, error_size, path, size, (uint64_t)size + 1);
    }
    *out = data;
    return 0;
}

/* Reads the header and the data of the IDX file open as `file` (of file_size bytes): idx_read
 * after the opening. */
static int read_idx(byte_stream *file, off_t file_size, const char *path,
                    unsigned dimension_count, idx_file *out, char *error, size_t error_size)
{
    uint8_t header[4 + 3 * 4];
    const size_t header_size = 4 + 4 * (size_t)dimension_count;
    long got = byte_stream_read(file, header, header_size);
    if (got < 0)
        return failure(error, error_size, "%s: %s", path, file->problem);
    if ((size_t)got < 4 || header[0] != 0 || header[1] != 0 || header[2] != 0x08
        || header[3] != dimension_count)
        return failure(error, error_size, "%s: not an IDX file of unsigned bytes with %u dimension%s (wrong magic number)",
                       path, dimension_count, dimension_count == 1 ? "" : "s");
    if ((size_t)got < header_size)
        return failure(error, error_size, "%s: truncated header", path);
    idx_file read = {dimension_count, {0, 1, 1}, 1, NULL};
    for (unsigned d = 0; d < dimension_count; d++)
        read.dims[d] = big_endian_u32(header + 4 + 4 * d);
    /* dims are u32: dims[1] * dims[2] fits in 64 bits, but the product of all three may not
     * (2^20 x 2^22 x 2^22 wraps to 0): compare with the limit before multiplying. */
    const uint64_t item_size = (uint64_t)read.dims[1] * read.dims[2];
    if (read.dims[0] == 0 || item_size == 0)
        return failure(error, error_size, "%s: empty: the header announces no data", path);
    if (item_size > IDX_MAX_DATA_BYTES / read.dims[0])
        return failure(error, error_size, "%s: the header announces %u items of %llu byte%s, over the limit of %zu MiB of data",
                       path, read.dims[0], (unsigned long long)item_size, item_size == 1 ? "" : "s",
                       IDX_MAX_DATA_BYTES >> 20);
    read.item_size = (size_t)item_size;
    const size_t size = read.item_size * read.dims[0];
    /* A plain file's length is known: the header must agree with it before anything is
     * allocated. */
    const uint64_t present = file_size > (off_t)header_size ? (uint64_t)file_size - header_size : 0;
    if (!file->compressed && present != size)
        return wrong_length(error, error_size, path, size, present);
    if (read_data(file, path, size, &read.data, error, error_size) != 0)
        return -1;
    *out = read;
    return 0;
}

int idx_read(const char *path, unsigned dimension_count, idx_file *out, char *error,
             size_t error_size)
{
    char why[128];
    off_t file_size;
    int fd = open_regular(path, &file_size, why, sizeof why);
    if (fd < 0)
        return failure(error, error_size, "%s: %s", path, why);
    byte_stream file;
    int result = -1;
    if (byte_stream_open(&file, fd) != 0) {
        failure(error, error_size, "%s: %s", path, file.problem);
    } else {
        result = read_idx(&file, file_size, path, dimension_count, out, error, error_size);
        byte_stream_close(&file);
    }
    close(fd);
    return result;
}

void idx_free(idx_file *file)
{
    free(file->data);
    file->data = NULL;
}
