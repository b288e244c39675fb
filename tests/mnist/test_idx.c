/* The MNIST example's IDX reader and data set loader (examples/mnist/idx.c, dataset.c), on
 * fixture files written into a fresh temporary directory, plain and gzip-compressed:
 *   - good image and label files read back exactly, with their dimensions;
 *   - dataset_load finds <name>.gz when <name> is absent, and validates what it loads;
 *   - every kind of bad file (FIFOs and devices too, at once) is refused with -1 and a one-line
 *     message naming the path, *out untouched, nothing leaked (run under the asan preset for
 *     that), and no allocation in proportion to what a header claims, nor beyond the limit or
 *     twice what a decompression bomb really holds (malloc and realloc are wrapped, see
 *     CMakeLists.txt). */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "dataset.h"
#include "idx.h"

enum { PATH_SIZE = 1024, ERROR_SIZE = 512 };

/* ---- Allocation watch: the test links with -Wl,--wrap=malloc,--wrap=realloc, so every call
 * from this program, idx.c and dataset.c included (they are linked in statically), lands here.
 * (zlib's own small allocations, from the shared library, do not.) */

void *__real_malloc(size_t size);
void *__real_realloc(void *pointer, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_realloc(void *pointer, size_t size);

static size_t largest_request; /* the largest single request since it was last reset */

void *__wrap_malloc(size_t size)
{
    if (size > largest_request)
        largest_request = size;
    return __real_malloc(size);
}

void *__wrap_realloc(void *pointer, size_t size)
{
    if (size > largest_request)
        largest_request = size;
    return __real_realloc(pointer, size);
}

/* The reader's first buffer is at most 1 MiB; a bad header must not make it ask for more than
 * the file can fill (well below this). */
#define MODEST_REQUEST ((size_t)4 << 20)

/* ---- Fixture files. */

static char root[PATH_SIZE]; /* the temporary directory of this run */

static void join(char *out, const char *dir, const char *name)
{
    int n = snprintf(out, PATH_SIZE, "%s/%s", dir, name);
    assert_true(n > 0 && n < PATH_SIZE);
}

/* A fresh directory <root>/<name> for one test. */
static void make_dir(char *out, const char *name)
{
    join(out, root, name);
    assert_int_equal(mkdir(out, 0700), 0);
}

static void remove_tree(const char *path)
{
    struct stat info;
    if (lstat(path, &info) != 0)
        return;
    if (S_ISDIR(info.st_mode)) {
        DIR *dir = opendir(path);
        if (dir != NULL) {
            struct dirent *entry;
            while ((entry = readdir(dir)) != NULL) {
                if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
                    continue;
                char child[PATH_SIZE];
                if (snprintf(child, sizeof child, "%s/%s", path, entry->d_name) < PATH_SIZE)
                    remove_tree(child);
            }
            closedir(dir);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void write_file(const char *path, const void *bytes, size_t size, int gz)
{
    if (gz) {
        gzFile file = gzopen(path, "wb");
        assert_non_null(file);
        if (size > 0)
            assert_int_equal(gzwrite(file, bytes, (unsigned)size), (int)size);
        assert_int_equal(gzclose(file), Z_OK);
    } else {
        FILE *file = fopen(path, "wb");
        assert_non_null(file);
        assert_int_equal(fwrite(bytes, 1, size, file), size);
        assert_int_equal(fclose(file), 0);
    }
}

/* The whole content of a (plain) file, malloc'd. */
static uint8_t *read_whole(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fseek(file, 0, SEEK_END), 0);
    long end = ftell(file);
    assert_true(end >= 0);
    rewind(file);
    uint8_t *bytes = malloc((size_t)end + 1);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, (size_t)end, file), (size_t)end);
    fclose(file);
    *size = (size_t)end;
    return bytes;
}

static void put_u32(uint8_t *at, uint32_t v)
{
    at[0] = (uint8_t)(v >> 24);
    at[1] = (uint8_t)(v >> 16);
    at[2] = (uint8_t)(v >> 8);
    at[3] = (uint8_t)v;
}

/* The recognisable content of byte i of a fixture's data (every value 0-255 occurs). */
static uint8_t pattern(size_t i, unsigned seed)
{
    return (uint8_t)(i * 37u + seed * 101u + (i >> 8));
}

/* An IDX header into bytes[]: the magic number (0, 0, type, dimension_count), then
 * dimension_count big-endian dims. Returns its size. */
static size_t put_header(uint8_t *bytes, uint8_t type, unsigned dimension_count,
                         const uint32_t *dims)
{
    bytes[0] = 0;
    bytes[1] = 0;
    bytes[2] = type;
    bytes[3] = (uint8_t)dimension_count;
    for (unsigned d = 0; d < dimension_count; d++)
        put_u32(bytes + 4 + 4 * d, dims[d]);
    return 4 + 4 * (size_t)dimension_count;
}

/* An IDX file: its header, then data_size bytes of pattern(., seed). */
static void write_idx(const char *path, uint8_t type, unsigned dimension_count,
                      const uint32_t *dims, size_t data_size, unsigned seed, int gz)
{
    uint8_t *bytes = malloc(4 + 4 * (size_t)dimension_count + data_size + 1);
    assert_non_null(bytes);
    size_t header = put_header(bytes, type, dimension_count, dims);
    for (size_t i = 0; i < data_size; i++)
        bytes[header + i] = pattern(i, seed);
    write_file(path, bytes, header + data_size, gz);
    free(bytes);
}

/* Images of rows x cols bytes; `extra` bytes of data more (or, negative, fewer) than announced. */
static void write_images(const char *path, uint32_t count, uint32_t rows, uint32_t cols,
                         long extra, unsigned seed, int gz)
{
    const uint32_t dims[3] = {count, rows, cols};
    write_idx(path, 0x08, 3, dims, (size_t)((long)count * (long)rows * (long)cols + extra), seed, gz);
}

/* A decompression bomb: a gzip-compressed IDX file of unsigned bytes whose header announces
 * dims, then `zeros` zero bytes of data (64 MiB of zeros compress to about 64 KiB). */
static void write_bomb(const char *path, unsigned dimension_count, const uint32_t *dims,
                       size_t zeros)
{
    static const uint8_t zero[1 << 16];
    uint8_t header[16];
    size_t header_size = put_header(header, 0x08, dimension_count, dims);
    gzFile file = gzopen(path, "wb");
    assert_non_null(file);
    assert_int_equal(gzwrite(file, header, (unsigned)header_size), (int)header_size);
    for (size_t done = 0; done < zeros; done += sizeof zero) {
        unsigned chunk = zeros - done < sizeof zero ? (unsigned)(zeros - done) : sizeof zero;
        assert_int_equal(gzwrite(file, zero, chunk), (int)chunk);
    }
    assert_int_equal(gzclose(file), Z_OK);
}

/* A label file holding labels[0..count). */
static void write_labels(const char *path, const uint8_t *labels, uint32_t count, int gz)
{
    uint8_t *bytes = malloc(8 + (size_t)count);
    assert_non_null(bytes);
    put_u32(bytes, 0x00000801);
    put_u32(bytes + 4, count);
    memcpy(bytes + 8, labels, count);
    write_file(path, bytes, 8 + (size_t)count, gz);
    free(bytes);
}

/* ---- Checks. */

/* A non-empty one-line message that holds `path` and `detail` (if not NULL). */
static void assert_message(const char *error, const char *path, const char *detail)
{
    size_t length = strnlen(error, ERROR_SIZE);
    if (length == 0 || length >= ERROR_SIZE - 1)
        fail_msg("the message is empty or does not fit: \"%.*s\"", ERROR_SIZE, error);
    if (strchr(error, '\n') != NULL)
        fail_msg("the message is not one line: \"%s\"", error);
    if (strstr(error, path) == NULL)
        fail_msg("the message \"%s\" does not name \"%s\"", error, path);
    if (detail != NULL && strstr(error, detail) == NULL)
        fail_msg("the message \"%s\" does not say \"%s\"", error, detail);
}

/* idx_read(path) fails with a good message holding `detail`, leaves *out as it was, and asks
 * for no more than `most` bytes at once. */
static void assert_idx_fails_within(const char *path, unsigned dimension_count,
                                    const char *detail, size_t most)
{
    idx_file out;
    memset(&out, 0xA5, sizeof out);
    unsigned char before[sizeof out];
    memcpy(before, &out, sizeof out);
    char error[ERROR_SIZE];
    memset(error, 0, sizeof error);
    largest_request = 0;
    int status = idx_read(path, dimension_count, &out, error, sizeof error);
    if (status != -1)
        fail_msg("idx_read(%s, %u) returned %d, not -1 (dims %u x %u x %u)", path,
                 dimension_count, status, out.dims[0], out.dims[1], out.dims[2]);
    assert_memory_equal(&out, before, sizeof out);
    if (largest_request > most)
        fail_msg("%s: a failed read asked for %zu bytes at once, more than %zu", path,
                 largest_request, most);
    assert_message(error, path, detail);
}

/* idx_read(path) fails as assert_idx_fails_within says, asking for no more memory than a
 * modest file needs. */
static void assert_idx_fails(const char *path, unsigned dimension_count, const char *detail)
{
    assert_idx_fails_within(path, dimension_count, detail, MODEST_REQUEST);
}

/* idx_read(path) succeeds with these dims and pattern(., seed) as data. */
static void assert_idx_reads(const char *path, unsigned dimension_count, uint32_t count,
                             uint32_t rows, uint32_t cols, unsigned seed)
{
    idx_file file;
    char error[ERROR_SIZE] = "";
    int status = idx_read(path, dimension_count, &file, error, sizeof error);
    if (status != 0)
        fail_msg("idx_read(%s) failed: %s", path, error);
    assert_int_equal(file.dimension_count, dimension_count);
    assert_int_equal(file.dims[0], count);
    assert_int_equal(file.dims[1], rows);
    assert_int_equal(file.dims[2], cols);
    assert_int_equal(file.item_size, (size_t)rows * cols);
    assert_non_null(file.data);
    size_t size = (size_t)count * rows * cols;
    for (size_t i = 0; i < size; i++)
        if (file.data[i] != pattern(i, seed))
            fail_msg("%s: byte %zu of the data is %u, not %u", path, i, file.data[i], pattern(i, seed));
    idx_free(&file);
    assert_null(file.data);
    idx_free(&file); /* twice is harmless */
}

static int setup_root(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    if (tmp == NULL || tmp[0] == '\0')
        tmp = "/tmp";
    if (snprintf(root, sizeof root, "%s/kd-test-idx-XXXXXX", tmp) >= (int)sizeof root)
        return -1;
    return mkdtemp(root) != NULL ? 0 : -1;
}

static int teardown_root(void **state)
{
    (void)state;
    remove_tree(root);
    return 0;
}

/* ---- idx_read: good files. */

static void test_images_read_back_exactly(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "good-images");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "images.gz" : "images");
        write_images(path, 3, 28, 28, 0, 1, gz);
        assert_idx_reads(path, 3, 3, 28, 28, 1);
        /* Not square: dims[1] is the rows, dims[2] the columns. */
        join(path, dir, gz ? "wide.gz" : "wide");
        write_images(path, 4, 2, 5, 0, 2, gz);
        assert_idx_reads(path, 3, 4, 2, 5, 2);
        join(path, dir, gz ? "one.gz" : "one");
        write_images(path, 1, 1, 1, 0, 3, gz);
        assert_idx_reads(path, 3, 1, 1, 1, 3);
    }
}

static void test_labels_read_back_exactly(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "good-labels");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "labels.gz" : "labels");
        const uint32_t dims[1] = {300};
        write_idx(path, 0x08, 1, dims, 300, 4, gz); /* every byte value: idx_read checks no range */
        assert_idx_reads(path, 1, 300, 1, 1, 4);
    }
}

/* More than the reader's first 1 MiB buffer: the data arrives over several reads, and the
 * buffer grows to exactly what the header announces. */
static void test_large_file_read_back_exactly(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "large");
    const uint32_t count = (3u << 20) + 5u;
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "labels.gz" : "labels");
        const uint32_t dims[1] = {count};
        write_idx(path, 0x08, 1, dims, count, 5, gz);
        largest_request = 0;
        assert_idx_reads(path, 1, count, 1, 1, 5);
        assert_true(largest_request <= count);
        join(path, dir, gz ? "images.gz" : "images");
        write_images(path, 5000, 28, 28, 0, 6, gz);
        assert_idx_reads(path, 3, 5000, 28, 28, 6);
        /* The same, one byte short or one byte too many. */
        write_images(path, 5000, 28, 28, -1, 6, gz);
        assert_idx_fails(path, 3, "truncated");
        write_images(path, 5000, 28, 28, 1, 6, gz);
        assert_idx_fails(path, 3, "trailing");
    }
}

/* ---- idx_read: bad files. */

static void test_missing_file_and_directory(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "missing");
    join(path, dir, "no-such-file");
    assert_idx_fails(path, 3, "cannot open");
    assert_idx_fails(path, 1, "cannot open");
    join(path, dir, "no-such-directory/images");
    assert_idx_fails(path, 3, "cannot open");
    /* A directory is no file either. */
    assert_idx_fails(dir, 3, "not a regular file");
}

/* A FIFO (which open() and read() would wait on forever: an alarm ends the test if so) and a
 * device are refused at once. */
static void test_not_a_regular_file(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "special");
    join(path, dir, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    alarm(30);
    assert_idx_fails(path, 3, "not a regular file");
    assert_idx_fails("/dev/null", 1, "not a regular file");
    alarm(0);
}

static void test_empty_file(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "empty");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "empty.gz" : "empty");
        write_file(path, "", 0, gz);
        assert_idx_fails(path, 3, NULL);
        assert_idx_fails(path, 1, NULL);
    }
}

static void test_wrong_magic(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "magic");
    const uint32_t dims[3] = {2, 28, 28};
    for (int gz = 0; gz <= 1; gz++) {
        /* Two dimensions (0x00000802) where images need three. */
        join(path, dir, gz ? "two-dims.gz" : "two-dims");
        write_idx(path, 0x08, 2, dims, 2 * 28, 1, gz);
        assert_idx_fails(path, 3, "magic");
        assert_idx_fails(path, 1, "magic");
        /* A label file given as images, and an image file given as labels. */
        join(path, dir, gz ? "labels.gz" : "labels");
        const uint8_t labels[4] = {1, 2, 3, 4};
        write_labels(path, labels, 4, gz);
        assert_idx_fails(path, 3, "magic");
        join(path, dir, gz ? "images.gz" : "images");
        write_images(path, 2, 28, 28, 0, 1, gz);
        assert_idx_fails(path, 1, "magic");
        /* The magic number written little-endian, or with a non-zero first byte. */
        static const uint8_t swapped[16] = {3, 8, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28, 0, 0, 0};
        join(path, dir, gz ? "little-endian.gz" : "little-endian");
        write_file(path, swapped, sizeof swapped, gz);
        assert_idx_fails(path, 3, "magic");
        static const uint8_t high[16] = {1, 0, 8, 3, 0, 0, 0, 0, 0, 0, 0, 28, 0, 0, 0, 28};
        join(path, dir, gz ? "first-byte.gz" : "first-byte");
        write_file(path, high, sizeof high, gz);
        assert_idx_fails(path, 3, "magic");
        /* Random bytes (not starting 0x1f 0x8b, the gzip magic). */
        uint8_t noise[2000];
        uint64_t rng = 42;
        for (size_t i = 0; i < sizeof noise; i++)
            noise[i] = (uint8_t)(example_random(&rng) >> 56);
        noise[0] = 0x5a;
        join(path, dir, gz ? "noise.gz" : "noise");
        write_file(path, noise, sizeof noise, gz);
        assert_idx_fails(path, 3, "magic");
        assert_idx_fails(path, 1, "magic");
        /* Text. */
        join(path, dir, gz ? "text.gz" : "text");
        write_file(path, "hello, world\n", 13, gz);
        assert_idx_fails(path, 3, "magic");
    }
}

static void test_wrong_type_byte(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "type");
    const uint32_t dims[3] = {2, 28, 28};
    const uint8_t types[] = {0x09 /* signed byte */, 0x0B /* short */, 0x0C /* int */,
                             0x0D /* float */, 0x0E /* double */, 0x00};
    for (int gz = 0; gz <= 1; gz++) {
        for (size_t t = 0; t < sizeof types; t++) {
            join(path, dir, gz ? "images.gz" : "images");
            write_idx(path, types[t], 3, dims, 2 * 28 * 28, 1, gz);
            assert_idx_fails(path, 3, "magic");
            join(path, dir, gz ? "labels.gz" : "labels");
            write_idx(path, types[t], 1, dims, 2, 1, gz);
            assert_idx_fails(path, 1, "magic");
        }
    }
}

static void test_truncated_header(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "header");
    for (int gz = 0; gz <= 1; gz++) {
        /* Images: the magic number and 0, 1 or 2 of the 3 dimensions (and a partial one). */
        static const uint8_t images[15] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0};
        const size_t cuts[] = {4, 6, 8, 12, 15};
        for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
            join(path, dir, gz ? "images.gz" : "images");
            write_file(path, images, cuts[c], gz);
            assert_idx_fails(path, 3, "truncated header");
        }
        /* Labels: the magic number alone, and half the count. */
        static const uint8_t labels[6] = {0, 0, 8, 1, 0, 0};
        join(path, dir, gz ? "labels.gz" : "labels");
        write_file(path, labels, 4, gz);
        assert_idx_fails(path, 1, "truncated header");
        write_file(path, labels, 6, gz);
        assert_idx_fails(path, 1, "truncated header");
        /* Less than the magic number. */
        write_file(path, labels, 2, gz);
        assert_idx_fails(path, 1, NULL);
        assert_idx_fails(path, 3, NULL);
    }
}

static void test_truncated_data(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "truncated");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "images.gz" : "images");
        write_images(path, 3, 28, 28, -(long)(28 * 28 / 2), 1, gz); /* 2.5 images of 3 */
        assert_idx_fails(path, 3, "truncated");
        write_images(path, 3, 28, 28, -1, 1, gz);
        assert_idx_fails(path, 3, "truncated");
        write_images(path, 3, 28, 28, -3 * 28 * 28, 1, gz); /* the header alone */
        assert_idx_fails(path, 3, "truncated");
        join(path, dir, gz ? "labels.gz" : "labels");
        const uint32_t dims[1] = {10};
        write_idx(path, 0x08, 1, dims, 9, 1, gz);
        assert_idx_fails(path, 1, "truncated");
    }
}

static void test_trailing_data(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "trailing");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "images.gz" : "images");
        write_images(path, 3, 28, 28, 1, 1, gz);
        assert_idx_fails(path, 3, "trailing");
        write_images(path, 3, 28, 28, 28 * 28, 1, gz); /* a whole image more */
        assert_idx_fails(path, 3, "trailing");
        join(path, dir, gz ? "labels.gz" : "labels");
        const uint32_t dims[1] = {10};
        write_idx(path, 0x08, 1, dims, 11, 1, gz);
        assert_idx_fails(path, 1, "trailing");
    }
}

/* A header that claims (nearly) 2^32 items in a tiny file is refused from the header alone
 * (over the limit); one that claims as much as the limit allows is found short, a plain file
 * from its length before any allocation, a gzip file after reading what there is, having
 * asked for no more memory than its first modest buffer. */
static void test_huge_count_in_tiny_file(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "huge");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "labels.gz" : "labels");
        const uint32_t labels[1] = {UINT32_MAX};
        write_idx(path, 0x08, 1, labels, 10, 1, gz);
        assert_idx_fails(path, 1, "over the limit"); /* 4 GiB announced */
        const uint32_t limit_labels[1] = {(uint32_t)IDX_MAX_DATA_BYTES};
        write_idx(path, 0x08, 1, limit_labels, 10, 1, gz);
        assert_idx_fails_within(path, 1, "truncated", gz ? MODEST_REQUEST : 18);
        join(path, dir, gz ? "images.gz" : "images");
        const uint32_t images[3] = {UINT32_MAX, 28, 28};
        write_idx(path, 0x08, 3, images, 28 * 28, 1, gz);
        assert_idx_fails(path, 3, "over the limit"); /* 3.4 TB announced */
        const uint32_t big_images[3] = {UINT32_MAX, 65535, 65535};
        write_idx(path, 0x08, 3, big_images, 100, 1, gz);
        assert_idx_fails(path, 3, "over the limit"); /* 1.8e19 bytes announced */
        const uint32_t one_huge_image[3] = {1, 1u << 15, (1u << 13) + 1}; /* just over 256 MiB */
        write_idx(path, 0x08, 3, one_huge_image, 100, 1, gz);
        assert_idx_fails(path, 3, "over the limit");
    }
}

/* A plain file's header must agree with the file's length: one that announces more or less
 * data than the file holds is refused before the data buffer is allocated (no request larger
 * than the file). */
static void test_plain_length_checked_first(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "plain-length");
    join(path, dir, "labels");
    const uint32_t labels[1] = {1u << 20};
    write_idx(path, 0x08, 1, labels, 10, 1, 0);
    assert_idx_fails_within(path, 1, "truncated: the header announces 1048576 bytes of data, the file has 10", 18);
    join(path, dir, "images");
    write_images(path, 2000, 28, 28, -1, 1, 0);
    assert_idx_fails_within(path, 3, "truncated", 1000);
    write_images(path, 2000, 28, 28, 5, 1, 0);
    assert_idx_fails_within(path, 3, "trailing", 1000);
}

/* Decompression bombs: a gzip file of zeros, small, whose header announces much more than it
 * holds. Over the limit, it is refused from its header; within it, the reader's buffer grows
 * only with the data that really arrives, to at most twice that. */
static void test_decompression_bomb(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "bomb");
    join(path, dir, "labels.gz");
    write_bomb(path, 1, (const uint32_t[]){UINT32_MAX}, (size_t)64 << 20);
    assert_idx_fails(path, 1, "over the limit");
    join(path, dir, "images.gz");
    write_bomb(path, 3, (const uint32_t[]){UINT32_MAX, 28, 28}, (size_t)64 << 20);
    assert_idx_fails(path, 3, "over the limit");
    /* 300,000 images announced (235 MB, within the limit), 10 MiB of data present. */
    const size_t present = (size_t)10 << 20;
    write_bomb(path, 3, (const uint32_t[]){300000, 28, 28}, present);
    assert_idx_fails_within(path, 3, "truncated", 2 * present);
}

/* Dimensions whose product does not fit in 64 bits: 2^20 x 2^22 x 2^22 = 2^64 bytes, which
 * wraps to 0, and (2^32 - 1)^3. Neither may pass for a valid (let alone empty) file. */
static void test_dimension_product_overflow(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "overflow");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "images.gz" : "images");
        const uint32_t wraps_to_zero[3] = {1u << 20, 1u << 22, 1u << 22};
        write_idx(path, 0x08, 3, wraps_to_zero, 0, 1, gz);
        assert_idx_fails(path, 3, NULL);
        write_idx(path, 0x08, 3, wraps_to_zero, 16, 1, gz);
        assert_idx_fails(path, 3, NULL);
        const uint32_t all_ones[3] = {UINT32_MAX, UINT32_MAX, UINT32_MAX};
        write_idx(path, 0x08, 3, all_ones, 16, 1, gz);
        assert_idx_fails(path, 3, NULL);
    }
}

static void test_zero_items(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "zero");
    for (int gz = 0; gz <= 1; gz++) {
        join(path, dir, gz ? "images.gz" : "images");
        write_images(path, 0, 28, 28, 0, 1, gz);
        assert_idx_fails(path, 3, "empty");
        write_images(path, 5, 0, 28, 0, 1, gz); /* images of no pixel */
        assert_idx_fails(path, 3, "empty");
        write_images(path, 5, 28, 0, 0, 1, gz);
        assert_idx_fails(path, 3, "empty");
        join(path, dir, gz ? "labels.gz" : "labels");
        write_labels(path, (const uint8_t *)"", 0, gz);
        assert_idx_fails(path, 1, "empty");
    }
}

static void test_corrupt_gzip(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "gzip");
    /* A valid gzip header (deflate, no flags, Unix), then garbage: 0xff starts a block of the
     * reserved type 3. */
    uint8_t bytes[10 + 200];
    const uint8_t header[10] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memcpy(bytes, header, sizeof header);
    memset(bytes + sizeof header, 0xff, sizeof bytes - sizeof header);
    join(path, dir, "garbage.gz");
    write_file(path, bytes, sizeof bytes, 0);
    assert_idx_fails(path, 3, "corrupt");
    assert_idx_fails(path, 1, "corrupt");

    /* A gzip header alone, then nothing. */
    join(path, dir, "header-only.gz");
    write_file(path, header, sizeof header, 0);
    assert_idx_fails(path, 3, NULL);

    /* A good compressed image file, cut in the middle of its deflate stream. */
    char good[PATH_SIZE];
    join(good, dir, "good.gz");
    write_images(good, 50, 28, 28, 0, 9, 1);
    assert_idx_reads(good, 3, 50, 28, 28, 9);
    size_t size;
    uint8_t *compressed = read_whole(good, &size);
    assert_true(size > 100);
    join(path, dir, "cut.gz");
    write_file(path, compressed, size / 2, 0);
    assert_idx_fails(path, 3, NULL);

    /* The same, whole, with a wrong CRC-32 in its trailer, or garbage in the middle. */
    compressed[size - 8] ^= 0x55;
    join(path, dir, "bad-crc.gz");
    write_file(path, compressed, size, 0);
    assert_idx_fails(path, 3, NULL);
    compressed[size - 8] ^= 0x55;
    memset(compressed + size / 2, 0xff, 16);
    join(path, dir, "garbled.gz");
    write_file(path, compressed, size, 0);
    assert_idx_fails(path, 3, NULL);
    free(compressed);
}

/* A whole deflate stream whose gzip trailer (CRC-32, then the length) is missing or cut, or
 * which something other than another gzip member follows: all the IDX data is there, yet
 * the file is no valid gzip (zlib's gzread would accept every one of them). */
static void test_gzip_trailer_and_trailing_garbage(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE], good[PATH_SIZE];
    make_dir(dir, "gzip-end");
    join(good, dir, "good.gz");
    write_images(good, 20, 28, 28, 0, 10, 1);
    size_t size;
    uint8_t *compressed = read_whole(good, &size);
    uint8_t *longer = malloc(size + 16);
    assert_non_null(longer);
    memcpy(longer, compressed, size);
    const size_t cuts[] = {8, 4, 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        join(path, dir, "no-trailer.gz");
        write_file(path, compressed, size - cuts[c], 0);
        assert_idx_fails(path, 3, "truncated gzip");
    }
    static const char *const garbage[] = {"garbage", "\0", "\x1f", "\x1f\x8b"};
    static const size_t garbage_size[] = {7, 1, 1, 2};
    for (size_t g = 0; g < sizeof garbage / sizeof garbage[0]; g++) {
        memcpy(longer + size, garbage[g], garbage_size[g]);
        join(path, dir, "garbage-after.gz");
        write_file(path, longer, size + garbage_size[g], 0);
        /* A lone gzip magic number is a member cut short. */
        assert_idx_fails(path, 3, g < 3 ? "trailing garbage" : "truncated gzip");
    }
    free(longer);
    free(compressed);
}

/* Gzip members one after another read as one stream (RFC 1952), as gzip -d reads them: the
 * IDX file split across two members, and followed by an empty one. */
static void test_gzip_concatenated_members(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "gzip-members");
    join(path, dir, "plain");
    write_images(path, 20, 28, 28, 0, 11, 0);
    size_t plain_size;
    uint8_t *plain = read_whole(path, &plain_size);
    const size_t split[] = {1000, 3, plain_size};
    uint8_t *joined = malloc(2 * plain_size + 100);
    assert_non_null(joined);
    for (size_t k = 0; k < sizeof split / sizeof split[0]; k++) {
        size_t joined_size = 0, part_size;
        for (int part = 0; part < 2; part++) {
            join(path, dir, "part.gz");
            write_file(path, part == 0 ? plain : plain + split[k],
                       part == 0 ? split[k] : plain_size - split[k], 1);
            uint8_t *bytes = read_whole(path, &part_size);
            memcpy(joined + joined_size, bytes, part_size);
            joined_size += part_size;
            free(bytes);
        }
        join(path, dir, "members.gz");
        write_file(path, joined, joined_size, 0);
        assert_idx_reads(path, 3, 20, 28, 28, 11);
    }
    free(joined);
    free(plain);
}

/* A message longer than the buffer is cut, not overflowed (ASan watches). */
static void test_small_error_buffer(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    make_dir(dir, "small-buffer");
    join(path, dir, "missing");
    char *error = malloc(8);
    assert_non_null(error);
    idx_file out;
    assert_int_equal(idx_read(path, 3, &out, error, 8), -1);
    assert_int_equal(strlen(error), 7);
    assert_memory_equal(error, path, 7);
    free(error);
}

/* ---- dataset_load. */

static const char *const file_names[4] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                          "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};

/* Removes <dir>/<name> and <dir>/<name>.gz. */
static void remove_both(const char *dir, const char *name)
{
    char path[PATH_SIZE], gz_path[PATH_SIZE * 2];
    join(path, dir, name);
    snprintf(gz_path, sizeof gz_path, "%s.gz", path);
    unlink(path);
    unlink(gz_path);
}

/* <dir>/<name>[.gz] (the other one removed): images of rows x cols, pattern(., seed). */
static void put_images(const char *dir, const char *name, uint32_t count, uint32_t rows,
                       uint32_t cols, unsigned seed, int gz)
{
    char path[PATH_SIZE], file[PATH_SIZE];
    remove_both(dir, name);
    snprintf(file, sizeof file, gz ? "%s.gz" : "%s", name);
    join(path, dir, file);
    write_images(path, count, rows, cols, 0, seed, gz);
}

/* The label of example i of a fixture set. */
static uint8_t fixture_label(size_t i, unsigned seed) { return (uint8_t)((i * 7 + seed) % 10); }

static void put_labels(const char *dir, const char *name, uint32_t count, unsigned seed, int gz)
{
    char path[PATH_SIZE], file[PATH_SIZE];
    uint8_t labels[256];
    assert_true(count <= sizeof labels);
    for (uint32_t i = 0; i < count; i++)
        labels[i] = fixture_label(i, seed);
    remove_both(dir, name);
    snprintf(file, sizeof file, gz ? "%s.gz" : "%s", name);
    join(path, dir, file);
    write_labels(path, labels, count, gz);
}

enum { TRAIN_COUNT = 12, TEST_COUNT = 7 };

/* A good data set in a fresh <root>/<name>: file k is compressed when bit k of gz_mask is. */
static void make_dataset(char *dir, const char *name, unsigned gz_mask)
{
    make_dir(dir, name);
    put_images(dir, file_names[0], TRAIN_COUNT, 28, 28, 1, gz_mask & 1);
    put_labels(dir, file_names[1], TRAIN_COUNT, 2, (gz_mask >> 1) & 1);
    put_images(dir, file_names[2], TEST_COUNT, 28, 28, 3, (gz_mask >> 2) & 1);
    put_labels(dir, file_names[3], TEST_COUNT, 4, (gz_mask >> 3) & 1);
}

static void assert_dataset(const dataset *set, size_t count, unsigned image_seed,
                           unsigned label_seed)
{
    assert_int_equal(set->count, count);
    assert_non_null(set->pixels);
    assert_non_null(set->labels);
    for (size_t i = 0; i < count * IMAGE_PIXELS; i++)
        if (set->pixels[i] != pattern(i, image_seed))
            fail_msg("pixel %zu is %u, not %u", i, set->pixels[i], pattern(i, image_seed));
    for (size_t i = 0; i < count; i++)
        assert_int_equal(set->labels[i], fixture_label(i, label_seed));
}

static void assert_dataset_loads(const char *dir)
{
    dataset train, test;
    char error[ERROR_SIZE] = "";
    if (dataset_load(dir, &train, &test, error, sizeof error) != 0)
        fail_msg("dataset_load(%s) failed: %s", dir, error);
    assert_dataset(&train, TRAIN_COUNT, 1, 2);
    assert_dataset(&test, TEST_COUNT, 3, 4);
    dataset_free(&train);
    dataset_free(&test);
    assert_null(train.pixels);
    assert_int_equal(train.count, 0);
}

/* dataset_load(dir) fails with a good message holding `path` and `detail`. */
static void assert_dataset_fails(const char *dir, const char *path, const char *detail)
{
    dataset train, test;
    char error[ERROR_SIZE];
    memset(error, 0, sizeof error);
    assert_int_equal(dataset_load(dir, &train, &test, error, sizeof error), -1);
    assert_message(error, path, detail);
}

static void test_dataset_plain_and_mixed(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    make_dataset(dir, "set-plain", 0x0);
    assert_dataset_loads(dir);
    make_dataset(dir, "set-mixed", 0x5); /* the images compressed, the labels not */
    assert_dataset_loads(dir);
}

static void test_dataset_gz_fallback(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    make_dataset(dir, "set-gz", 0xF);
    assert_dataset_loads(dir);
    /* Where both exist, the plain file is read: a corrupt .gz beside it does not matter. */
    char path[PATH_SIZE];
    make_dataset(dir, "set-both", 0x0);
    for (int k = 0; k < 4; k++) {
        char name[PATH_SIZE];
        snprintf(name, sizeof name, "%s.gz", file_names[k]);
        join(path, dir, name);
        write_file(path, "not gzip", 8, 0);
    }
    assert_dataset_loads(dir);
}

static void test_dataset_missing(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    join(path, root, "no-such-directory");
    assert_dataset_fails(path, path, "no such directory");
    /* A regular file is no directory. */
    make_dir(dir, "set-file");
    join(path, dir, "plain-file");
    write_file(path, "x", 1, 0);
    assert_dataset_fails(path, path, "no such directory");
    /* Each file missing in turn, neither plain nor compressed: the message names it. */
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "set-missing-%d", k);
        make_dataset(dir, name, 0x3);
        remove_both(dir, file_names[k]);
        assert_dataset_fails(dir, dir, file_names[k]);
    }
    /* An empty directory. */
    make_dir(dir, "set-empty");
    assert_dataset_fails(dir, dir, file_names[0]);
    /* Each file a FIFO in turn, under its plain or its .gz name (an alarm ends a wait on it). */
    for (int k = 0; k < 4; k++) {
        char name[32];
        snprintf(name, sizeof name, "set-fifo-%d", k);
        make_dataset(dir, name, 0x0);
        remove_both(dir, file_names[k]);
        snprintf(name, sizeof name, k % 2 ? "%s.gz" : "%s", file_names[k]);
        join(path, dir, name);
        assert_int_equal(mkfifo(path, 0600), 0);
        alarm(30);
        assert_dataset_fails(dir, path, "not a regular file");
        alarm(0);
    }
}

/* A bad file inside the directory: the message names its full path. */
static void test_dataset_bad_file(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE], name[PATH_SIZE];
    for (int k = 0; k < 4; k++) {
        for (int gz = 0; gz <= 1; gz++) {
            snprintf(name, sizeof name, "set-bad-%d-%d", k, gz);
            make_dataset(dir, name, 0x0);
            remove_both(dir, file_names[k]);
            snprintf(name, sizeof name, gz ? "%s.gz" : "%s", file_names[k]);
            join(path, dir, name);
            write_file(path, "\x00\x00\x08\x02\x00\x00\x00\x01", 8, gz); /* wrong magic */
            assert_dataset_fails(dir, path, "magic");
            /* Truncated. */
            if (k % 2 == 0)
                write_images(path, k == 0 ? TRAIN_COUNT : TEST_COUNT, 28, 28, -10, 1, gz);
            else
                write_idx(path, 0x08, 1, (const uint32_t[]){TRAIN_COUNT}, 3, 1, gz);
            assert_dataset_fails(dir, path, "truncated");
        }
    }
}

static void test_dataset_image_size(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    make_dataset(dir, "set-32", 0x0);
    put_images(dir, file_names[0], TRAIN_COUNT, 32, 32, 1, 0);
    assert_dataset_fails(dir, file_names[0], "32x32");
    put_images(dir, file_names[0], TRAIN_COUNT, 28, 28, 1, 1);
    put_images(dir, file_names[2], TEST_COUNT, 28, 14, 3, 1); /* the test images, compressed */
    assert_dataset_fails(dir, file_names[2], "28x14");
    put_images(dir, file_names[2], TEST_COUNT, 14, 28, 3, 0);
    assert_dataset_fails(dir, file_names[2], "14x28");
}

static void test_dataset_count_mismatch(void **state)
{
    (void)state;
    char dir[PATH_SIZE];
    make_dataset(dir, "set-counts", 0x0);
    put_labels(dir, file_names[1], TRAIN_COUNT - 1, 2, 0);
    assert_dataset_fails(dir, dir, "12 images");
    assert_dataset_fails(dir, dir, "11 labels");
    put_labels(dir, file_names[1], TRAIN_COUNT, 2, 1);
    put_labels(dir, file_names[3], TEST_COUNT + 1, 4, 1);
    assert_dataset_fails(dir, file_names[3], "8 labels");
}

static void test_dataset_label_range(void **state)
{
    (void)state;
    char dir[PATH_SIZE], path[PATH_SIZE];
    const uint8_t bad[] = {10, 11, 255};
    for (size_t b = 0; b < sizeof bad; b++) {
        for (int k = 1; k < 4; k += 2) {
            char name[32];
            snprintf(name, sizeof name, "set-label-%zu-%d", b, k);
            make_dataset(dir, name, 0x0);
            uint32_t count = k == 1 ? TRAIN_COUNT : TEST_COUNT;
            uint8_t labels[TRAIN_COUNT];
            for (uint32_t i = 0; i < count; i++)
                labels[i] = fixture_label(i, 2);
            labels[count - 1] = bad[b];
            remove_both(dir, file_names[k]);
            join(path, dir, file_names[k]);
            write_labels(path, labels, count, 0);
            char detail[64];
            snprintf(detail, sizeof detail, "label %u of item %u", bad[b], count - 1);
            assert_dataset_fails(dir, path, detail);
        }
    }
    /* 9 is a digit. */
    make_dataset(dir, "set-label-9", 0x0);
    uint8_t labels[TEST_COUNT];
    for (uint32_t i = 0; i < TEST_COUNT; i++)
        labels[i] = 9;
    join(path, dir, file_names[3]);
    write_labels(path, labels, TEST_COUNT, 0);
    dataset train, test;
    char error[ERROR_SIZE] = "";
    if (dataset_load(dir, &train, &test, error, sizeof error) != 0)
        fail_msg("%s", error);
    assert_int_equal(test.labels[TEST_COUNT - 1], 9);
    dataset_free(&train);
    dataset_free(&test);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_images_read_back_exactly),
        cmocka_unit_test(test_labels_read_back_exactly),
        cmocka_unit_test(test_large_file_read_back_exactly),
        cmocka_unit_test(test_missing_file_and_directory),
        cmocka_unit_test(test_not_a_regular_file),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_wrong_magic),
        cmocka_unit_test(test_wrong_type_byte),
        cmocka_unit_test(test_truncated_header),
        cmocka_unit_test(test_truncated_data),
        cmocka_unit_test(test_trailing_data),
        cmocka_unit_test(test_huge_count_in_tiny_file),
        cmocka_unit_test(test_plain_length_checked_first),
        cmocka_unit_test(test_decompression_bomb),
        cmocka_unit_test(test_dimension_product_overflow),
        cmocka_unit_test(test_zero_items),
        cmocka_unit_test(test_corrupt_gzip),
        cmocka_unit_test(test_gzip_trailer_and_trailing_garbage),
        cmocka_unit_test(test_gzip_concatenated_members),
        cmocka_unit_test(test_small_error_buffer),
        cmocka_unit_test(test_dataset_plain_and_mixed),
        cmocka_unit_test(test_dataset_gz_fallback),
        cmocka_unit_test(test_dataset_missing),
        cmocka_unit_test(test_dataset_bad_file),
        cmocka_unit_test(test_dataset_image_size),
        cmocka_unit_test(test_dataset_count_mismatch),
        cmocka_unit_test(test_dataset_label_range),
    };
    return cmocka_run_group_tests(tests, setup_root, teardown_root);
}
