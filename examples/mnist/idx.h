/* Reading IDX files (the MNIST file format), plain or gzip-compressed.
 *
 * An IDX file is a big-endian header (two zero bytes, a type byte, a dimension count, then one
 * u32 per dimension) followed by the data. This reader accepts unsigned-byte data (type 0x08)
 * with 1 dimension (labels) or 3 dimensions (images), and checks that the data holds exactly
 * what the header announces. A file that starts with the gzip magic number is inflated
 * strictly (byte_stream.h): a missing or wrong trailer, or anything but another gzip member
 * after a member, is an error.
 *
 * Memory: a header announcing more than IDX_MAX_DATA_BYTES of data is refused from the header
 * alone. Below that, a plain file's header must agree with the file's length before anything
 * is allocated, and the buffer for a gzip file's data grows (doubling from 1 MiB) only as the
 * data really arrives: a small hostile file (a decompression bomb, a header announcing 2^32
 * items) costs at most about twice what it really holds, and never more than the cap. */
#ifndef KD_MNIST_IDX_H
#define KD_MNIST_IDX_H

#include <stddef.h>
#include <stdint.h>

/* The most data (bytes after the header) a file may hold: 256 MiB, 342,000 images of 28x28,
 * about five times the largest MNIST-style set (70,000 images, 55 MB). */
#define IDX_MAX_DATA_BYTES ((size_t)1 << 28)

/* A file's contents: dims[0] items of dims[1] x dims[2] bytes (images) or of 1 byte (labels). */
typedef struct idx_file {
    unsigned dimension_count;
    uint32_t dims[3];
    size_t item_size; /* bytes per item: dims[1] * dims[2] for images, 1 for labels */
    uint8_t *data;    /* dims[0] * item_size bytes, malloc'd */
} idx_file;

/* Reads `path` (gzip or plain; a regular file, see regular_file.h) expecting `dimension_count`
 * dimensions (1 or 3). On failure returns -1 with a one-line message in error[] and *out
 * untouched. Allocates memory in proportion to the data actually present, never to what a
 * header claims. */
int idx_read(const char *path, unsigned dimension_count, idx_file *out, char *error,
             size_t error_size);

/* Frees what idx_read allocated; NULL data is fine. */
void idx_free(idx_file *file);

#endif /* KD_MNIST_IDX_H */
