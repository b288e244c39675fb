/* Numerically stable softmax of one row at a temperature. SPDX-License-Identifier: MIT */
#include "softmax_row.h"

#include <math.h>

void kd_softmax_row(const float *in, size_t n, double temperature, float *out)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        max = in[i] > max ? in[i] : max;

    /* Every exponent is <= 0 and the maximum's is exactly 0, so the sum lies in [1, n]. */
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = exp(((double)in[i] - (double)max) / temperature);
        out[i] = (float)e;
        sum += e;
    }
    double scale = 1.0 / sum;
    for (size_t i = 0; i < n; i++)
        out[i] = (float)((double)out[i] * scale);
}
