/*
 * libkd — temperature softmax and log-softmax kernels.
 *
 * Stateless: no handle, no allocation. Thread-safe: concurrent calls are fine as long as their
 * output buffers do not overlap anything another call reads or writes.
 *
 * Layout: `rows` rows of `classes` floats; row r of a matrix starts at r * stride floats from its
 * first element, so a host can pass a sub-matrix (stride >= classes). Output may be the input
 * itself (same pointer and same stride: in place); any other overlap is not allowed.
 *
 * Masks: a logit of -INFINITY masks its class: probability exactly 0 (log-probability
 * -INFINITY). Every row needs at least one class that is not masked.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_SOFTMAX_H
#define KD_SOFTMAX_H

#include <stddef.h>

#include "kd/export.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[r][i] = exp(x[r][i] / T) / sum_j exp(x[r][j] / T).
 *
 * Accurate to a few float ulps for any finite logits and any finite T > 0 (shifts and sums in
 * double precision, relative to each row's maximum: nothing overflows).
 *
 * Returns KD_OK, or, leaving `out` untouched:
 *   KD_ERROR_NULL_POINTER         logits or out is NULL;
 *   KD_ERROR_ZERO_SIZE            rows or classes is 0;
 *   KD_ERROR_SHAPE_MISMATCH       a stride is below classes;
 *   KD_ERROR_SIZE_OVERFLOW        a matrix's extent cannot be addressed;
 *   KD_ERROR_INVALID_TEMPERATURE  T is NaN, infinite or <= 0;
 *   KD_ERROR_NONFINITE_INPUT      a logit is NaN or +INFINITY;
 *   KD_ERROR_ALL_MASKED           every logit of some row is -INFINITY. */
KD_API kd_status kd_softmax(const float *logits, size_t rows, size_t classes, size_t logits_stride,
                            float temperature, float *out, size_t out_stride);

/* out[r][i] = x[r][i] / T - log sum_j exp(x[r][j] / T): the logarithm of kd_softmax, computed
 * directly (never log of a rounded probability), so it stays accurate where the probability
 * underflows. Masked classes give -INFINITY. Same arguments and statuses as kd_softmax. */
KD_API kd_status kd_log_softmax(const float *logits, size_t rows, size_t classes,
                                size_t logits_stride, float temperature, float *out,
                                size_t out_stride);

#ifdef __cplusplus
}
#endif

#endif /* KD_SOFTMAX_H */
