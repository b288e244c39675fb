/* Numerically stable softmax pieces for one row. SPDX-License-Identifier: MIT */
#include "softmax_row.h"

#include <math.h>

float kd_row_max(const float *x, size_t n)
{
    float max = -INFINITY;
    for (size_t i = 0; i < n; i++)
        max = x[i] > max ? x[i] : max;
    return max;
}

double kd_row_log_sum_exp(const float *x, size_t n, double shift, double t)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += exp(((double)x[i] - shift) / t);
    return log(sum);
}

double kd_log_add_exp(double a, double b)
{
    if (a == -INFINITY)
        return b;
    if (b == -INFINITY)
        return a;
    double hi = fmax(a, b), lo = fmin(a, b);
    return hi + log1p(exp(lo - hi));
}

void kd_row_normalize(float *weights, size_t n, double sum)
{
    double scale = 1.0 / sum;
    for (size_t i = 0; i < n; i++)
        weights[i] = (float)((double)weights[i] * scale);
}

void kd_softmax_row(const float *x, size_t n, double t, float *out)
{
    double max = kd_row_max(x, n);
    /* Every exponent is <= 0 and the maximum's is exactly 0, so the sum lies in [1, n]. Each
     * term is stored rounded to float and scaled once: two roundings in all. */
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double e = exp(((double)x[i] - max) / t);
        out[i] = (float)e;
        sum += e;
    }
    kd_row_normalize(out, n, sum);
}

void kd_log_softmax_row(const float *x, size_t n, double t, float *out)
{
    double max = kd_row_max(x, n);
    double log_sum = kd_row_log_sum_exp(x, n, max, t);
    for (size_t i = 0; i < n; i++)
        out[i] = (float)(((double)x[i] - max) / t - log_sum);
}
