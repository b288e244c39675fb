/* Argument checks shared by the public entry points. SPDX-License-Identifier: MIT */
#ifndef KD_LIB_VALIDATE_H
#define KD_LIB_VALIDATE_H

#include <stddef.h>

#include "kd/status.h"

/* KD_ERROR_ZERO_SIZE if rows or cols is 0, KD_ERROR_SIZE_OVERFLOW if a rows x cols float
 * matrix cannot be addressed, else KD_OK. */
kd_status kd_check_matrix_size(size_t rows, size_t cols);

/* KD_ERROR_INVALID_TEMPERATURE unless temperature is finite and > 0. */
kd_status kd_check_temperature(float temperature);

/* Checks a rows x cols row-major matrix of logits in which -INFINITY masks a class:
 * KD_ERROR_NONFINITE_INPUT on any NaN or +INFINITY, KD_ERROR_ALL_MASKED if every entry of
 * some row is -INFINITY, else KD_OK. */
kd_status kd_check_masked_logits(const float *logits, size_t rows, size_t cols);

#endif /* KD_LIB_VALIDATE_H */
