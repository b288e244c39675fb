/* kd_softmax and kd_log_softmax: strided temperature softmax kernels.
 * SPDX-License-Identifier: MIT */
#include "kd/softmax.h"

#include "softmax_row.h"
#include "validate.h"

typedef void (*row_kernel)(const float *x, size_t n, double t, float *out);

static kd_status apply_rows(row_kernel kernel, const float *logits, size_t rows, size_t classes,
                            size_t logits_stride, float temperature, float *out, size_t out_stride)
{
    kd_status status = kd_check_row_call(logits, out, rows, classes, logits_stride, out_stride,
                                         temperature);
    if (status == KD_OK)
        status = kd_check_logits(logits, rows, classes, logits_stride);
    if (status != KD_OK)
        return status;
    for (size_t r = 0; r < rows; r++)
        kernel(logits + r * logits_stride, classes, temperature, out + r * out_stride);
    return KD_OK;
}

kd_status kd_softmax(const float *logits, size_t rows, size_t classes, size_t logits_stride,
                     float temperature, float *out, size_t out_stride)
{
    return apply_rows(kd_softmax_row, logits, rows, classes, logits_stride, temperature, out,
                      out_stride);
}

kd_status kd_log_softmax(const float *logits, size_t rows, size_t classes, size_t logits_stride,
                         float temperature, float *out, size_t out_stride)
{
    return apply_rows(kd_log_softmax_row, logits, rows, classes, logits_stride, temperature, out,
                      out_stride);
}
