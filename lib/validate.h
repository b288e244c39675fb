/* Argument checks shared by the public entry points. SPDX-License-Identifier: MIT */
#ifndef KD_LIB_VALIDATE_H
#define KD_LIB_VALIDATE_H

#include <stddef.h>

#include "kd/status.h"

/* A rows x cols float matrix with row stride `stride`: KD_ERROR_ZERO_SIZE if rows or cols is 0,
 * KD_ERROR_SHAPE_MISMATCH if stride < cols, KD_ERROR_SIZE_OVERFLOW if its extent
 * ((rows - 1) * stride + cols floats) cannot be addressed, else KD_OK. */
kd_status kd_check_matrix(size_t rows, size_t cols, size_t stride);

/* The checks every stateless row kernel starts with: input and output not NULL, both a
 * rows x cols matrix with their strides, temperature finite and > 0. */
kd_status kd_check_row_call(const void *input, const float *output, size_t rows, size_t cols,
                            size_t input_stride, size_t output_stride, double temperature);

/* KD_ERROR_INVALID_TEMPERATURE unless temperature is finite and > 0. */
kd_status kd_check_temperature(double temperature);

/* One row of n logits in which -INFINITY masks a class: KD_ERROR_NONFINITE_INPUT on NaN or
 * +INFINITY, KD_ERROR_ALL_MASKED if every entry is -INFINITY, else KD_OK. */
kd_status kd_check_logit_row(const float *row, size_t n);

/* kd_check_logit_row over every row of a strided matrix. */
kd_status kd_check_logits(const float *logits, size_t rows, size_t cols, size_t stride);

/* One row of n probabilities: KD_ERROR_NONFINITE_INPUT on NaN or infinity,
 * KD_ERROR_INVALID_PROBABILITIES if negative or not summing to 1 within
 * KD_PROBABILITY_SUM_TOLERANCE; else KD_OK, with the row's sum (in double) in *sum. */
kd_status kd_check_probability_row(const float *row, size_t n, double *sum);

/* Member weights of an ensemble: NULL (equal) or `count` finite values >= 0 with a positive
 * sum. KD_ERROR_INVALID_ARGUMENT otherwise; on success *total is their sum (count for NULL). */
kd_status kd_check_weights(const float *weights, size_t count, double *total);

#endif /* KD_LIB_VALIDATE_H */
