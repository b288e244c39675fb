/* Argument checks shared by the public entry points. SPDX-License-Identifier: MIT */
#include "validate.h"

#include <math.h>
#include <stdint.h>

#include "kd/soft_targets.h"

kd_status kd_check_matrix(size_t rows, size_t cols, size_t stride)
{
    if (rows == 0 || cols == 0)
        return KD_ERROR_ZERO_SIZE;
    if (stride < cols)
        return KD_ERROR_SHAPE_MISMATCH;
    const size_t max_floats = (size_t)PTRDIFF_MAX / sizeof(float);
    if (cols > max_floats || rows - 1 > (max_floats - cols) / stride)
        return KD_ERROR_SIZE_OVERFLOW;
    return KD_OK;
}

kd_status kd_check_temperature(double temperature)
{
    return (isfinite(temperature) && temperature > 0.0) ? KD_OK : KD_ERROR_INVALID_TEMPERATURE;
}

kd_status kd_check_row_call(const void *input, const float *output, size_t rows, size_t cols,
                            size_t input_stride, size_t output_stride, double temperature)
{
    if (input == NULL || output == NULL)
        return KD_ERROR_NULL_POINTER;
    kd_status status = kd_check_matrix(rows, cols, input_stride);
    if (status == KD_OK)
        status = kd_check_matrix(rows, cols, output_stride);
    if (status == KD_OK)
        status = kd_check_temperature(temperature);
    return status;
}

kd_status kd_check_logit_row(const float *row, size_t n)
{
    size_t masked = 0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(row[i]) || row[i] == INFINITY)
            return KD_ERROR_NONFINITE_INPUT;
        masked += row[i] == -INFINITY;
    }
    return masked == n ? KD_ERROR_ALL_MASKED : KD_OK;
}

kd_status kd_check_logits(const float *logits, size_t rows, size_t cols, size_t stride)
{
    for (size_t r = 0; r < rows; r++) {
        kd_status status = kd_check_logit_row(logits + r * stride, cols);
        if (status != KD_OK)
            return status;
    }
    return KD_OK;
}

kd_status kd_check_probability_row(const float *row, size_t n, double *sum)
{
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(row[i]))
            return KD_ERROR_NONFINITE_INPUT;
        if (row[i] < 0.0f)
            return KD_ERROR_INVALID_PROBABILITIES;
        total += row[i];
    }
    if (!(fabs(total - 1.0) <= KD_PROBABILITY_SUM_TOLERANCE))
        return KD_ERROR_INVALID_PROBABILITIES;
    *sum = total;
    return KD_OK;
}

kd_status kd_check_weights(const float *weights, size_t count, double *total)
{
    if (weights == NULL) {
        *total = (double)count;
        return KD_OK;
    }
    double sum = 0.0;
    for (size_t m = 0; m < count; m++) {
        if (!isfinite(weights[m]) || weights[m] < 0.0f)
            return KD_ERROR_INVALID_ARGUMENT;
        sum += weights[m];
    }
    /* A double sum of finite floats cannot overflow (SIZE_MAX FLT_MAX < DBL_MAX). */
    if (!(sum > 0.0))
        return KD_ERROR_INVALID_ARGUMENT;
    *total = sum;
    return KD_OK;
}
