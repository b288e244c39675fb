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

/* kd_soft_targets for sub-matrices: row r of the logits starts at r * logits_stride floats,
 * row r of the targets at r * targets_stride (both >= classes). In place needs the same
 * pointer and the same stride. Statuses as kd_soft_targets, plus KD_ERROR_SHAPE_MISMATCH for a
 * stride below classes. Thread-safe, allocates nothing. */
KD_API kd_status kd_soft_targets_strided(const float *teacher_logits, size_t rows, size_t classes,
                                         size_t logits_stride, float temperature, float *targets,
                                         size_t targets_stride);

/* How far a row of probabilities may sum from 1 and still be accepted (absolute). */
#define KD_PROBABILITY_SUM_TOLERANCE 1e-3

/* Soft targets from a teacher given as probabilities rather than logits, e.g. softmax outputs
 * saved from a teacher run at temperature 1:
 *
 *     targets[r][i] = p_ri^(1/T) / sum_j p_rj^(1/T)     (= softmax(log p / T))
 *
 * which equals kd_soft_targets() on the logits that produced p. With T = 1 this validates
 * precomputed soft targets and renormalises each row to sum to 1 exactly (to float rounding).
 * A probability of 0 masks its class (it stays 0).
 *
 * teacher_probabilities must be finite and >= 0, each row summing to 1 within
 * KD_PROBABILITY_SUM_TOLERANCE; otherwise KD_ERROR_INVALID_PROBABILITIES (NaN or infinity:
 * KD_ERROR_NONFINITE_INPUT). Other statuses, strides and in-place rules as
 * kd_soft_targets_strided. Thread-safe, allocates nothing. */
KD_API kd_status kd_soft_targets_from_probabilities(const float *teacher_probabilities, size_t rows,
                                                    size_t classes, size_t probabilities_stride,
                                                    float temperature, float *targets,
                                                    size_t targets_stride);

/* How the members of an ensemble of teachers are combined. */
typedef enum kd_ensemble_mode {
    /* Weighted arithmetic mean of the members' soft targets at T: sum_m w_m softmax(v_m / T).
     * A class is masked only where every member (of weight > 0) masks it. */
    KD_ENSEMBLE_ARITHMETIC = 0,
    /* Weighted geometric mean, renormalised: softmax(sum_m w_m v_m / T) (the mean of the logits).
     * A class is masked where any member (of weight > 0) masks it. */
    KD_ENSEMBLE_GEOMETRIC = 1
} kd_ensemble_mode;

/* Soft targets of an ensemble of `member_count` teachers, all of the same shape.
 *
 * member_logits:  array of member_count pointers, one rows x classes matrix (row stride
 *                 member_stride) of logits per member; the host's own buffers, not copied.
 * member_weights: member_count weights, finite and >= 0 with a positive sum (normalised by the
 *                 library), or NULL for equal weights. Members of weight 0 are not read.
 * mode:           KD_ENSEMBLE_ARITHMETIC or KD_ENSEMBLE_GEOMETRIC.
 * targets:        rows x classes soft targets (row stride targets_stride); must not overlap any
 *                 member.
 *
 * Numerics as kd_soft_targets: the geometric mean of logits is formed in double precision.
 * Returns the statuses of kd_soft_targets_strided (checked over every member of weight > 0),
 * plus KD_ERROR_ZERO_SIZE for no members, KD_ERROR_NULL_POINTER for a NULL member, and
 * KD_ERROR_INVALID_ARGUMENT for a bad weight or mode. Thread-safe, allocates nothing. */
KD_API kd_status kd_soft_targets_ensemble(const float *const *member_logits, size_t member_count,
                                          const float *member_weights, kd_ensemble_mode mode,
                                          size_t rows, size_t classes, size_t member_stride,
                                          float temperature, float *targets,
                                          size_t targets_stride);

#ifdef __cplusplus
}
#endif

#endif /* KD_SOFT_TARGETS_H */
