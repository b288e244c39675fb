/* MNIST-format data sets: the four IDX files of a directory, validated, and mini-batches. */
#ifndef KD_MNIST_DATASET_H
#define KD_MNIST_DATASET_H

#include <stddef.h>
#include <stdint.h>

enum { IMAGE_SIDE = 28, IMAGE_PIXELS = IMAGE_SIDE * IMAGE_SIDE, CLASS_COUNT = 10 };

/* `count` 28x28 images (bytes, row-major) and their labels (0-9). */
typedef struct dataset {
    size_t count;
    uint8_t *pixels;
    uint8_t *labels;
} dataset;

/* Loads <dir>/train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and
 * t10k-labels-idx1-ubyte, each plain or with .gz appended. Checks magic numbers, sizes,
 * 28x28 images, matching image and label counts, labels 0-9. Returns 0, or -1 with a one-line
 * message in error[]. */
int dataset_load(const char *dir, dataset *train, dataset *test, char *error, size_t error_size);

void dataset_free(dataset *set);

/* The examples of `set` selected by `index` (n indices), as a new data set. -1 if out of memory. */
int dataset_subset(const dataset *set, const size_t *index, size_t n, dataset *out);

/* Converts images index[0..n) of `set` to floats in [0, 1] (rows of IMAGE_PIXELS), shifted by
 * up to `jitter` pixels in each direction (drawn from *rng state; 0: no shift; uncovered pixels
 * are 0), and copies their labels as int32. */
void dataset_batch(const dataset *set, const size_t *index, size_t n, int jitter, uint64_t *rng,
                   float *inputs, int32_t *labels);

/* A small seeded generator for the example's own choices (shuffles, jitter, subsets). */
uint64_t example_random(uint64_t *state);

/* Fisher-Yates shuffle of n indices. */
void shuffle(size_t *index, size_t n, uint64_t *rng);

#endif /* KD_MNIST_DATASET_H */
