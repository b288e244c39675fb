/* Numerically stable softmax pieces for one row of logits at a temperature.
 * Rows hold at least one finite value and no NaN or +INFINITY; -INFINITY masks a class.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_SOFTMAX_ROW_H
#define KD_LIB_SOFTMAX_ROW_H

#include <stddef.h>

/* The largest of n values. */
float kd_row_max(const float *x, size_t n);

/* log sum_i exp((x_i - max) / t), in double, where max = kd_row_max(x, n): every term lies in
 * [0, 1] and the maximum's is 1, so the result is log1p of the others' sum, accurate even when
 * it is tiny. */
double kd_row_log_sum_exp(const float *x, size_t n, double max, double t);

/* log sum_i exp(u_i) for values u_i <= 0 of which one is exactly 0, as log1p of the others. */
double kd_log_sum_exp_nonpositive(const double *u, size_t n);

/* out_i = softmax(x / t)_i; out may be x. */
void kd_softmax_row(const float *x, size_t n, double t, float *out);

/* out_i = log softmax(x / t)_i = (x_i - max) / t - log sum_j exp((x_j - max) / t); out may be x. */
void kd_log_softmax_row(const float *x, size_t n, double t, float *out);

/* log(e^a + e^b) without overflow; exact when either is -INFINITY. */
double kd_log_add_exp(double a, double b);

/* Divides n stored non-negative weights by their sum, given in double. */
void kd_row_normalize(float *weights, size_t n, double sum);

#endif /* KD_LIB_SOFTMAX_ROW_H */
