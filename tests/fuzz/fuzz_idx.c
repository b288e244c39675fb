/* Fuzz target: the MNIST example's IDX reader (idx_read) and data set loader (dataset_load)
 * on arbitrary files, plain or gzip-compressed.
 *
 * Input: one control byte, then the file. Control bits 0-1: 0 reads the file as labels
 * (idx_read, 1 dimension), 1 as images (3 dimensions), 2 or 3 make it one of the four files of
 * a data set directory whose other three are valid (bits 2-3 say which; bit 4: named *.gz);
 * bits 5-7 size the error buffer.
 *
 * Invariants: failure is -1 with a NUL-terminated, non-empty message in the buffer and the
 * output untouched; success returns exactly the items the header announces. For a file that is
 * not gzip (zlib reads those as they are) the outcome is predicted exactly from the IDX format
 * (magic, type 0x08, dimension count, non-zero sizes, exact length, and for the data set
 * 28x28 images, matching counts and labels 0-9); success must return the file's own bytes. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "dataset.h"
#include "fuzz_support.h"
#include "idx.h"

enum { SET_ITEMS = 2 };

static char file_path[512], dir_path[512];
static const char *const set_names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

static void path_in_dir(char *out, size_t size, const char *name, const char *suffix)
{
    int n = snprintf(out, size, "%s/%s%s", dir_path, name, suffix);
    FUZZ_CHECK(n > 0 && (size_t)n < size, "path too long");
}

/* Removes the data set's files, plain and gzip. */
static void remove_set_files(void)
{
    char path[600];
    for (int k = 0; k < 4; k++) {
        path_in_dir(path, sizeof path, set_names[k], "");
        unlink(path);
        path_in_dir(path, sizeof path, set_names[k], ".gz");
        unlink(path);
    }
}

static void remove_scratch(void)
{
    unlink(file_path);
    remove_set_files();
    rmdir(dir_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_scratch_path(file_path, sizeof file_path, "file.idx");
    fuzz_scratch_path(dir_path, sizeof dir_path, "mnist");
    FUZZ_CHECK(mkdir(dir_path, 0700) == 0, "cannot create %s", dir_path);
    atexit(remove_scratch);
    return 0;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether zlib would read the bytes as gzip rather than as they are. */
static int looks_gzip(const uint8_t *data, size_t size)
{
    return size >= 2 && data[0] == 0x1f && data[1] == 0x8b;
}

/* What idx_read must make of plain bytes: 1 if they are a valid IDX file of unsigned bytes
 * with `dims` dimensions, filling count and item size. */
static int valid_idx(const uint8_t *data, size_t size, unsigned dims, uint32_t *d)
{
    const size_t header = 4 + 4 * (size_t)dims;
    if (size < header || data[0] != 0 || data[1] != 0 || data[2] != 0x08 || data[3] != dims)
        return 0;
    d[1] = d[2] = 1;
    for (unsigned k = 0; k < dims; k++)
        d[k] = be32(data + 4 + 4 * k);
    if (d[0] == 0 || d[1] == 0 || d[2] == 0 || (uint64_t)d[1] * d[2] > UINT64_MAX / d[0])
        return 0;
    return size - header == (uint64_t)d[0] * d[1] * d[2];
}

static void check_message(const char *error, size_t size)
{
    FUZZ_CHECK(memchr(error, '\0', size) != NULL, "message not terminated in %zu bytes", size);
    FUZZ_CHECK(size == 1 || error[0] != '\0', "empty error message");
}

static void fuzz_idx_read(const uint8_t *data, size_t size, unsigned dims, size_t error_size)
{
    fuzz_write_file(file_path, data, size);
    idx_file out, untouched;
    memset(&out, 0xA5, sizeof out);
    untouched = out;
    char error[256];
    memset(error, 'x', sizeof error);
    int result = idx_read(file_path, dims, &out, error, error_size);
    FUZZ_CHECK(result == 0 || result == -1, "idx_read returned %d", result);
    uint32_t d[3] = {0, 1, 1};
    if (!looks_gzip(data, size)) {
        int valid = valid_idx(data, size, dims, d);
        FUZZ_CHECK(result == (valid ? 0 : -1), "idx_read gave %d on a %s file of %zu bytes: %.*s",
                   result, valid ? "valid" : "invalid", size, (int)error_size,
                   result == 0 ? "" : error);
    }
    if (result != 0) {
        check_message(error, error_size);
        FUZZ_CHECK(memcmp(&out, &untouched, sizeof out) == 0, "output written on failure");
        return;
    }
    FUZZ_CHECK(out.dimension_count == dims, "%u dimensions", out.dimension_count);
    FUZZ_CHECK(out.item_size == (size_t)out.dims[1] * out.dims[2] && out.data != NULL
                   && out.dims[0] > 0 && out.item_size > 0,
               "item size %zu for %u x %u", out.item_size, out.dims[1], out.dims[2]);
    if (!looks_gzip(data, size)) {
        FUZZ_CHECK(out.dims[0] == d[0] && out.dims[1] == d[1] && out.dims[2] == d[2], "dims");
        FUZZ_CHECK(memcmp(out.data, data + 4 + 4 * dims, (size_t)d[0] * out.item_size) == 0,
                   "data differs from the file");
    }
    idx_free(&out);
    FUZZ_CHECK(out.data == NULL, "idx_free left data");
}

/* A valid file of the data set: SET_ITEMS images or labels. */
static size_t valid_set_file(int images, uint8_t *out)
{
    const uint8_t header[16] = {0, 0, 0x08, images ? 3 : 1, 0, 0, 0, SET_ITEMS, 0, 0, 0, 28, 0, 0, 0, 28};
    size_t header_size = images ? 16 : 8, item = images ? IMAGE_PIXELS : 1;
    memcpy(out, header, header_size);
    for (size_t i = 0; i < SET_ITEMS * item; i++)
        out[header_size + i] = (uint8_t)(images ? i * 7 : i + 3);
    return header_size + SET_ITEMS * item;
}

/* Whether plain bytes are an acceptable file for slot k of the data set. */
static int valid_set_slot(const uint8_t *data, size_t size, int slot)
{
    const int images = slot % 2 == 0;
    uint32_t d[3];
    if (!valid_idx(data, size, images ? 3 : 1, d) || d[0] != SET_ITEMS)
        return 0;
    if (images)
        return d[1] == 28 && d[2] == 28;
    for (size_t i = 0; i < SET_ITEMS; i++)
        if (data[8 + i] >= CLASS_COUNT)
            return 0;
    return 1;
}

static void check_set(const dataset *set, const uint8_t *images, const uint8_t *labels)
{
    FUZZ_CHECK(set->count == SET_ITEMS, "%zu items", set->count);
    FUZZ_CHECK(memcmp(set->pixels, images + 16, SET_ITEMS * IMAGE_PIXELS) == 0, "pixels differ");
    FUZZ_CHECK(memcmp(set->labels, labels + 8, SET_ITEMS) == 0, "labels differ");
}

static void fuzz_dataset(const uint8_t *data, size_t size, int slot, int gz, size_t error_size)
{
    static uint8_t files[4][16 + SET_ITEMS * IMAGE_PIXELS];
    char path[600];
    remove_set_files();
    for (int k = 0; k < 4; k++) {
        if (k == slot)
            continue;
        size_t n = valid_set_file(k % 2 == 0, files[k]);
        path_in_dir(path, sizeof path, set_names[k], k % 3 == 0 ? ".gz" : "");
        fuzz_write_file(path, files[k], n);
    }
    path_in_dir(path, sizeof path, set_names[slot], gz ? ".gz" : "");
    fuzz_write_file(path, data, size);

    dataset train, test;
    char error[256];
    memset(error, 'x', sizeof error);
    int result = dataset_load(dir_path, &train, &test, error, error_size);
    FUZZ_CHECK(result == 0 || result == -1, "dataset_load returned %d", result);
    if (!looks_gzip(data, size)) {
        int valid = valid_set_slot(data, size, slot);
        FUZZ_CHECK(result == (valid ? 0 : -1), "dataset_load gave %d with a %s file %d: %.*s",
                   result, valid ? "valid" : "invalid", slot, (int)error_size,
                   result == 0 ? "" : error);
    }
    if (result != 0) {
        check_message(error, error_size);
        return;
    }
    if (!looks_gzip(data, size)) {
        memcpy(files[slot], data, size);
        check_set(&train, files[0], files[1]);
        check_set(&test, files[2], files[3]);
    } else {
        FUZZ_CHECK(train.count == SET_ITEMS && test.count == SET_ITEMS, "counts %zu, %zu",
                   train.count, test.count);
    }
    dataset_free(&train);
    dataset_free(&test);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t control = data[0];
    const size_t error_size = (size_t)1 << (control >> 5); /* 1 .. 128 */
    data++;
    size--;
    if ((control & 3) < 2)
        fuzz_idx_read(data, size, (control & 3) == 0 ? 1 : 3, error_size);
    else if (size <= 16 + SET_ITEMS * IMAGE_PIXELS)
        fuzz_dataset(data, size, (control >> 2) & 3, (control >> 4) & 1, error_size);
    return 0;
}
