/* Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/), so that they are
 * real files of each format rather than hand-made bytes:
 *
 *   fuzz_seeds <corpus dir> [<Fashion-MNIST dir>]
 *
 * checkpoint/: checkpoints written by kd_checkpoint_save (several shapes, no optimizer, SGD,
 *              Adam, trained a step so that the state is not zero), each behind a control byte
 *              with and without the CRC fix-up;
 * idx/:        IDX label and image files (plain and gzip) made of the first items of the real
 *              data set when its directory is given (else synthetic ones), as idx_read inputs
 *              and as data set slots;
 * loss/:       byte strings that drive each entry point of fuzz_loss with ordinary values. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include <kd.h>

#include "dataset.h"
#include "fuzz_support.h"
#include "idx.h"

static const char *corpus;

static void seed(const char *target, const char *name, uint8_t control, const uint8_t *data,
                 size_t size)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", corpus, target, name);
    uint8_t *bytes = malloc(size + 1);
    FUZZ_CHECK(bytes != NULL, "out of memory");
    bytes[0] = control;
    memcpy(bytes + 1, data, size);
    fuzz_write_file(path, bytes, size + 1);
    free(bytes);
}

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    FUZZ_CHECK(f != NULL, "cannot open %s", path);
    uint8_t *data = malloc(1 << 20);
    FUZZ_CHECK(data != NULL, "out of memory");
    *size = fread(data, 1, 1 << 20, f);
    fclose(f);
    return data;
}

static void checkpoints(void)
{
    static const size_t shapes[4][4] = {{2, 3, 2}, {3, 4, 2}, {2, 2}, {1, 2, 2, 1}};
    static const size_t counts[4] = {3, 3, 2, 4};
    char path[1024];
    fuzz_scratch_path(path, sizeof path, "seed.kdc");
    for (int k = 0; k < 4; k++) {
        kd_model *model = NULL;
        kd_optimizer *opt = NULL;
        FUZZ_CHECK(kd_model_create_dense(&model, shapes[k], counts[k], (uint64_t)k + 1, NULL) == KD_OK, "model");
        if (k > 0)
            FUZZ_CHECK(kd_optimizer_create(&opt, k == 2 ? KD_OPTIMIZER_SGD : KD_OPTIMIZER_ADAM, model, NULL) == KD_OK, "optimizer");
        if (k == 3) {
            FUZZ_CHECK(kd_model_set(model, KD_MODEL_PARAM_HIDDEN_DROPOUT, 0.25) == KD_OK, "set");
            FUZZ_CHECK(kd_model_set(model, KD_MODEL_PARAM_MAX_NORM, 3.0) == KD_OK, "set");
        }
        if (opt != NULL) { /* one step, so that the optimizer state is not all zero */
            kd_loss *loss = NULL;
            kd_trainer *trainer = NULL;
            float x[4] = {0.5f, -1.0f, 0.25f, 2.0f};
            int32_t labels[2] = {0, 0};
            FUZZ_CHECK(kd_loss_create(&loss, NULL) == KD_OK, "loss");
            FUZZ_CHECK(kd_trainer_create(&trainer, model, opt, loss, NULL) == KD_OK, "trainer");
            kd_status s = kd_trainer_step(trainer, x, shapes[k][0] == 1 ? 2 : 1, NULL, labels, NULL);
            FUZZ_CHECK(s == KD_OK, "step: %s", kd_status_string(s));
            kd_trainer_destroy(trainer);
            kd_loss_destroy(loss);
        }
        FUZZ_CHECK(kd_checkpoint_save(model, opt, path) == KD_OK, "save");
        size_t size;
        uint8_t *file = read_file(path, &size);
        char name[64];
        snprintf(name, sizeof name, "model-%d", k);
        seed("checkpoint", name, opt != NULL ? 2 : 0, file, size);
        snprintf(name, sizeof name, "model-%d-crc-fixed", k);
        seed("checkpoint", name, opt != NULL ? 3 : 1, file, size);
        free(file);
        kd_optimizer_destroy(opt);
        kd_model_destroy(model);
    }
    remove(path);
}

/* An IDX file of `count` items of `item` bytes (labels: 1 dimension; images: 3 of 28 x 28). */
static size_t idx_bytes(uint8_t *out, int images, uint32_t count, const uint8_t *items)
{
    const size_t header = images ? 16 : 8, item = images ? IMAGE_PIXELS : 1;
    const uint32_t dims[3] = {count, IMAGE_SIDE, IMAGE_SIDE};
    out[0] = out[1] = 0;
    out[2] = 0x08;
    out[3] = images ? 3 : 1;
    for (unsigned d = 0; d < (images ? 3u : 1u); d++)
        for (int b = 0; b < 4; b++)
            out[4 + 4 * d + (unsigned)b] = (uint8_t)(dims[d] >> (24 - 8 * b));
    memcpy(out + header, items, count * item);
    return header + count * item;
}

static size_t gzip_bytes(const uint8_t *in, size_t size, uint8_t *out, size_t capacity)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    FUZZ_CHECK(deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) == Z_OK, "deflateInit2");
    z.next_in = (Bytef *)(uintptr_t)in;
    z.avail_in = (uInt)size;
    z.next_out = out;
    z.avail_out = (uInt)capacity;
    FUZZ_CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END, "deflate");
    size_t n = z.total_out;
    deflateEnd(&z);
    return n;
}

static void idx_seeds(const char *data_dir)
{
    /* Two images and two labels: the real first items of the test set, or a synthetic pattern. */
    uint8_t pixels[2 * IMAGE_PIXELS], labels[2] = {9, 2};
    for (size_t i = 0; i < sizeof pixels; i++)
        pixels[i] = (uint8_t)(i * 37);
    if (data_dir != NULL) {
        dataset train, test;
        char error[256];
        FUZZ_CHECK(dataset_load(data_dir, &train, &test, error, sizeof error) == 0, "%s", error);
        memcpy(pixels, test.pixels, sizeof pixels);
        memcpy(labels, test.labels, sizeof labels);
        dataset_free(&train);
        dataset_free(&test);
    }
    static uint8_t file[16 + 2 * IMAGE_PIXELS], gz[4096 + 2 * IMAGE_PIXELS];
    for (int images = 0; images < 2; images++) {
        const size_t size = idx_bytes(file, images, 2, images ? pixels : labels);
        const size_t gz_size = gzip_bytes(file, size, gz, sizeof gz);
        char name[64];
        /* control: bits 0-1 reader (0 labels, 1 images, 2 data set), 2-3 slot, 4 *.gz, 5-7
         * error buffer size */
        for (int slot = images ? 0 : 1; slot < 4; slot += 2) {
            snprintf(name, sizeof name, "set-slot-%d", slot);
            seed("idx", name, (uint8_t)(2 | slot << 2 | 7 << 5), file, size);
            snprintf(name, sizeof name, "set-slot-%d-gz", slot);
            seed("idx", name, (uint8_t)(2 | slot << 2 | 1 << 4 | 7 << 5), gz, gz_size);
        }
        snprintf(name, sizeof name, "%s", images ? "images" : "labels");
        seed("idx", name, (uint8_t)(images | 7 << 5), file, size);
        snprintf(name, sizeof name, "%s-gz", images ? "images" : "labels");
        seed("idx", name, (uint8_t)(images | 3 << 5), gz, gz_size);
        snprintf(name, sizeof name, "%s-truncated", images ? "images" : "labels");
        seed("idx", name, (uint8_t)(images | 7 << 5), file, size - 1);
    }
}

/* fuzz_loss inputs of ordinary values, one per entry point: (for the loss) an allocator byte
 * that never fails and two kd_loss_set calls, T = 20 and alpha = 0.5; then the shape (3 rows,
 * 5 classes, packed, no anomaly), (for the kernels) a temperature of 2.25, then values from the
 * "small ordinary" class. */
static void loss_seeds(void)
{
    uint8_t bytes[512];
    uint64_t state = 12345;
    for (int entry = 0; entry < 8; entry++) {
        size_t n = 0;
        if (entry >= 6) {
            const uint8_t loss_head[6] = {1, 2, 0, 15, 1, 5};
            memcpy(bytes, loss_head, sizeof loss_head);
            n = sizeof loss_head;
        }
        const uint8_t shape[5] = {2, 4, 0, 0, 5};
        memcpy(bytes + n, shape, sizeof shape);
        n += sizeof shape;
        if (entry < 6) {
            bytes[n++] = 12;
            bytes[n++] = 16;
        }
        while (n + 2 <= sizeof bytes) {
            uint64_t r = example_random(&state);
            bytes[n++] = (uint8_t)(14 + r % 10);
            bytes[n++] = (uint8_t)(r >> 8);
        }
        char name[64];
        snprintf(name, sizeof name, "entry-%d", entry);
        seed("loss", name, (uint8_t)entry, bytes, n);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s <corpus dir> [<Fashion-MNIST dir>]\n", argv[0]);
        return 2;
    }
    corpus = argv[1];
    checkpoints();
    idx_seeds(argc > 2 ? argv[2] : NULL);
    loss_seeds();
    return 0;
}
