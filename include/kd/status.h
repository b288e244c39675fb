/*
 * libkd — status codes.
 *
 * Every libkd function that can fail returns a kd_status. KD_OK (0) is success; every other
 * value names one kind of failure. The numeric values are part of the ABI: a value, once
 * released, never changes meaning, and new values are only ever appended.
 *
 * On any status other than KD_OK, a libkd function has left its outputs (buffers, handles,
 * files) exactly as they were.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_STATUS_H
#define KD_STATUS_H

#include "kd/export.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum kd_status {
    /* Success. */
    KD_OK = 0,
    /* A pointer argument that must not be NULL was NULL. */
    KD_ERROR_NULL_POINTER = 1,
    /* A size argument (rows, classes, count, ...) was 0. */
    KD_ERROR_ZERO_SIZE = 2,
    /* Sizes whose product, in bytes, cannot be addressed (would overflow size_t/ptrdiff_t). */
    KD_ERROR_SIZE_OVERFLOW = 3,
    /* A temperature that is not finite or not > 0. */
    KD_ERROR_INVALID_TEMPERATURE = 4,
    /* A NaN or +inf in an input array (or -inf where masking is not allowed). */
    KD_ERROR_NONFINITE_INPUT = 5,
    /* A row of logits in which every class is masked with -inf. */
    KD_ERROR_ALL_MASKED = 6,
    /* Any other argument outside its documented range (an enum value, a weight, alpha, ...). */
    KD_ERROR_INVALID_ARGUMENT = 7,
    /* A memory allocation failed. */
    KD_ERROR_OUT_OF_MEMORY = 8,
    /* A class label outside [0, classes) that is not the configured ignore label. */
    KD_ERROR_INVALID_LABEL = 9,
    /* Probabilities that are negative or whose rows do not sum to 1 within the tolerance. */
    KD_ERROR_INVALID_PROBABILITIES = 10,
    /* Shapes that do not fit together (a row stride below the row length, model sizes, ...). */
    KD_ERROR_SHAPE_MISMATCH = 11,
    /* The operating system reported an error reading or writing a file. */
    KD_ERROR_IO = 12,
    /* A file ended before the data its header announced. */
    KD_ERROR_FILE_TRUNCATED = 13,
    /* A file whose contents are inconsistent: bad magic, checksum, field or size. */
    KD_ERROR_FILE_CORRUPT = 14,
    /* A well-formed file of a format version this library cannot read. */
    KD_ERROR_FILE_VERSION = 15,
    /* A callback supplied by the host returned a failure. */
    KD_ERROR_CALLBACK_FAILED = 16,
    /* The operation is not available for this object (e.g. on this kind of model). */
    KD_ERROR_UNSUPPORTED = 17
} kd_status;

/* A short, static, English description of a status, e.g. "temperature must be finite and > 0".
 * Never returns NULL: an unknown value gives "unknown kd_status". Never free the result.
 * Thread-safe. */
KD_API const char *kd_status_string(kd_status status);

#ifdef __cplusplus
}
#endif

#endif /* KD_STATUS_H */
