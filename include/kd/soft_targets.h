/*
 * libkd — soft targets from teacher logits.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_SOFT_TARGETS_H
#define KD_SOFT_TARGETS_H

#include <stddef.h>

#include "kd/export.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Soft targets q = softmax(v / T), row by row, as in Hinton et al. (2015):
 *
 *     targets[r*classes + i] = exp(v_ri / T) / sum_j exp(v_rj / T)
 *
 * teacher_logits: rows x classes floats, row-major (row r starts at r * classes).
 * temperature:    T, finite and > 0 (dimensionless). Results are accurate to a few float ulps
 *                 for any finite logits and any T; intermediate values are computed in double
 *                 precision relative to each row's maximum, so nothing overflows.
 * targets:        rows x classes floats written by the call; may be the same pointer as
 *                 teacher_logits (in place). Each row sums to 1.
 *
 * A logit of -INFINITY masks its class: it gets probability exactly 0.
 *
 * Returns KD_OK, or (outputs untouched):
 *   KD_ERROR_NULL_POINTER         teacher_logits or targets is NULL;
 *   KD_ERROR_ZERO_SIZE            rows or classes is 0;
 *   KD_ERROR_SIZE_OVERFLOW        rows * classes floats cannot be addressed;
 *   KD_ERROR_INVALID_TEMPERATURE  temperature is NaN, infinite or <= 0;
 *   KD_ERROR_NONFINITE_INPUT      a logit is NaN or +INFINITY;
 *   KD_ERROR_ALL_MASKED           every logit of some row is -INFINITY.
 *
 * Allocates nothing. Thread-safe: calls on distinct output buffers may run concurrently. */
KD_API kd_status kd_soft_targets(const float *teacher_logits, size_t rows, size_t classes,
                                 float temperature, float *targets);

#ifdef __cplusplus
}
#endif

#endif /* KD_SOFT_TARGETS_H */
