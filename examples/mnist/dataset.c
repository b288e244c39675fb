/* MNIST-format data sets: loading, subsets and mini-batches. */
#include "dataset.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "idx.h"

/* Reads <dir>/<name> or, if that does not exist, <dir>/<name>.gz. */
static int read_named(const char *dir, const char *name, unsigned dims, idx_file *out,
                      char *error, size_t error_size)
{
    char path[4096];
    struct stat info;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (stat(path, &info) != 0) {
        snprintf(path, sizeof path, "%s/%s.gz", dir, name);
        if (stat(path, &info) != 0) {
            snprintf(error, error_size, "%s: neither %s nor %s.gz found", dir, name, name);
            return -1;
        }
    }
    return idx_read(path, dims, out, error, error_size);
}

static int load_pair(const char *dir, const char *images_name, const char *labels_name,
                     dataset *out, char *error, size_t error_size)
{
    idx_file images, labels;
    if (read_named(dir, images_name, 3, &images, error, error_size) != 0)
        return -1;
    if (read_named(dir, labels_name, 1, &labels, error, error_size) != 0) {
        idx_free(&images);
        return -1;
    }
    int ok = 0;
    if (images.dims[1] != IMAGE_SIDE || images.dims[2] != IMAGE_SIDE)
        snprintf(error, error_size, "%s/%s: images are %ux%u, this program needs %dx%d", dir,
                 images_name, images.dims[1], images.dims[2], IMAGE_SIDE, IMAGE_SIDE);
    else if (images.dims[0] != labels.dims[0])
        snprintf(error, error_size, "%s: %u images in %s but %u labels in %s", dir, images.dims[0],
                 images_name, labels.dims[0], labels_name);
    else
        ok = 1;
    for (uint32_t i = 0; ok && i < labels.dims[0]; i++) {
        if (labels.data[i] >= CLASS_COUNT) {
            snprintf(error, error_size, "%s/%s: label %u of item %u is not a digit 0-9", dir,
                     labels_name, labels.data[i], i);
            ok = 0;
        }
    }
    if (!ok) {
        idx_free(&images);
        idx_free(&labels);
        return -1;
    }
    *out = (dataset){images.dims[0], images.data, labels.data};
    return 0;
}

int dataset_load(const char *dir, dataset *train, dataset *test, char *error, size_t error_size)
{
    struct stat info;
    if (stat(dir, &info) != 0 || !S_ISDIR(info.st_mode)) {
        snprintf(error, error_size, "%s: no such directory (Fashion-MNIST: apt-get install dataset-fashion-mnist)", dir);
        return -1;
    }
    if (load_pair(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte", train, error,
                  error_size) != 0)
        return -1;
    if (load_pair(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test, error,
                  error_size) != 0) {
        dataset_free(train);
        return -1;
    }
    return 0;
}

void dataset_free(dataset *set)
{
    free(set->pixels);
    free(set->labels);
    set->pixels = NULL;
    set->labels = NULL;
    set->count = 0;
}

int dataset_subset(const dataset *set, const size_t *index, size_t n, dataset *out)
{
    uint8_t *pixels = malloc(n * IMAGE_PIXELS + 1);
    uint8_t *labels = malloc(n + 1);
    if (pixels == NULL || labels == NULL) {
        free(pixels);
        free(labels);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(pixels + i * IMAGE_PIXELS, set->pixels + index[i] * IMAGE_PIXELS, IMAGE_PIXELS);
        labels[i] = set->labels[index[i]];
    }
    *out = (dataset){n, pixels, labels};
    return 0;
}

uint64_t example_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void shuffle(size_t *index, size_t n, uint64_t *rng)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(example_random(rng) % i);
        size_t t = index[i - 1];
        index[i - 1] = index[j];
        index[j] = t;
    }
}

void dataset_batch(const dataset *set, const size_t *index, size_t n, int jitter, uint64_t *rng,
                   float *inputs, int32_t *labels)
{
    for (size_t b = 0; b < n; b++) {
        const uint8_t *image = set->pixels + index[b] * IMAGE_PIXELS;
        float *row = inputs + b * IMAGE_PIXELS;
        int dx = 0, dy = 0;
        if (jitter > 0) {
            uint64_t r = example_random(rng);
            dx = (int)(r % (uint64_t)(2 * jitter + 1)) - jitter;
            dy = (int)((r >> 32) % (uint64_t)(2 * jitter + 1)) - jitter;
        }
        for (int y = 0; y < IMAGE_SIDE; y++) {
            int sy = y - dy;
            for (int x = 0; x < IMAGE_SIDE; x++) {
                int sx = x - dx;
                int inside = sy >= 0 && sy < IMAGE_SIDE && sx >= 0 && sx < IMAGE_SIDE;
                row[y * IMAGE_SIDE + x] = inside ? image[sy * IMAGE_SIDE + sx] * (1.0f / 255.0f) : 0.0f;
            }
        }
        labels[b] = set->labels[index[b]];
    }
}
