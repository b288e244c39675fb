/* Numerically stable softmax of one row at a temperature. SPDX-License-Identifier: MIT */
#ifndef KD_LIB_SOFTMAX_ROW_H
#define KD_LIB_SOFTMAX_ROW_H

#include <stddef.h>

/* out[i] = exp(in[i] / T) / sum_j exp(in[j] / T) for one row of n logits, in which
 * -INFINITY masks a class (probability 0). The row must hold at least one finite value and
 * no NaN or +INFINITY. Computed relative to the row maximum, in double precision; out may be
 * the same pointer as in. */
void kd_softmax_row(const float *in, size_t n, double temperature, float *out);

#endif /* KD_LIB_SOFTMAX_ROW_H */
