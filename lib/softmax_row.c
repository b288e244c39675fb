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

double kd_row_log_sum_exp(const float *x, size_t n, double max, double t)
{
    /* The maximum's own term is exactly 1: summing the others and taking log1p keeps the
     * relative accuracy of a normaliser close to 0 (a nearly one-hot row). */
    double rest = 0.0;
    int skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (!skipped && (double)x[i] == max)
            skipped = 1;
        else
            rest += exp(((double)x[i] - max) / t);
    }
    return log1p(rest);
}

double kd_log_sum_exp_nonpositive(const double *u, size_t n)
{
    double rest = 0.0;
    int skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (!skipped && u[i] == 0.0)
            skipped = 1;
        else
            rest += exp(u[i]);
    }
    return log1p(rest);
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
