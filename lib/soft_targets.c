/* kd_soft_targets: soft targets from teacher logits. SPDX-License-Identifier: MIT */
#include "kd/soft_targets.h"

#include "softmax_row.h"
#include "validate.h"

kd_status kd_soft_targets(const float *teacher_logits, size_t rows, size_t classes,
                          float temperature, float *targets)
{
    if (teacher_logits == NULL || targets == NULL)
        return KD_ERROR_NULL_POINTER;
    kd_status status = kd_check_matrix_size(rows, classes);
    if (status == KD_OK)
        status = kd_check_temperature(temperature);
    if (status == KD_OK)
        status = kd_check_masked_logits(teacher_logits, rows, classes);
    if (status != KD_OK)
        return status;

    for (size_t r = 0; r < rows; r++)
        kd_softmax_row(teacher_logits + r * classes, classes, temperature, targets + r * classes);
    return KD_OK;
}
