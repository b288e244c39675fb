/* Argument checks shared by the public entry points. SPDX-License-Identifier: MIT */
#include "validate.h"

#include <math.h>
#include <stdint.h>

kd_status kd_check_matrix_size(size_t rows, size_t cols)
{
    if (rows == 0 || cols == 0)
        return KD_ERROR_ZERO_SIZE;
    if (rows > (size_t)PTRDIFF_MAX / sizeof(float) / cols)
        return KD_ERROR_SIZE_OVERFLOW;
    return KD_OK;
}

kd_status kd_check_temperature(float temperature)
{
    return (isfinite(temperature) && temperature > 0.0f) ? KD_OK : KD_ERROR_INVALID_TEMPERATURE;
}

kd_status kd_check_masked_logits(const float *logits, size_t rows, size_t cols)
{
    for (size_t r = 0; r < rows; r++) {
        const float *row = logits + r * cols;
        size_t masked = 0;
        for (size_t i = 0; i < cols; i++) {
            if (isnan(row[i]) || row[i] == INFINITY)
                return KD_ERROR_NONFINITE_INPUT;
            masked += row[i] == -INFINITY;
        }
        if (masked == cols)
            return KD_ERROR_ALL_MASKED;
    }
    return KD_OK;
}
