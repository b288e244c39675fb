/* The loss of one row and its gradient with respect to the student's logits.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_LOSS_ROW_H
#define KD_LIB_LOSS_ROW_H

#include <stddef.h>
#include <stdint.h>

#include "kd/loss.h"

typedef struct kd_row_spec {
    kd_divergence divergence;
    double t;           /* temperature */
    double beta;        /* Jensen-Shannon mixing weight */
    int has_teacher;    /* compute the soft term */
    int has_label;      /* compute the hard term */
    double soft_weight; /* d total / d soft, times the reduction's row scale */
    double hard_weight; /* d total / d hard, times the reduction's row scale */
} kd_row_spec;

/* One row of n student logits z (-INFINITY masks a class).
 *
 * teacher: for logit matching the teacher's logits; otherwise its log-weights u with
 *          log q_i = u[i] - teacher_log_norm (see kd_teacher_log_weights).
 * work:    n doubles of scratch.
 * label:   the row's class, when spec->has_label.
 * soft, hard: receive the row's divergence at t and cross-entropy at 1 (0 when not computed).
 * grad:    NULL, or n floats receiving soft_weight * d soft/dz + hard_weight * d hard/dz; may
 *          be z itself. */
void kd_loss_row(const kd_row_spec *spec, const float *z, size_t n, const double *teacher,
                 double teacher_log_norm, int32_t label, double *work, double *soft, double *hard,
                 float *grad);

#endif /* KD_LIB_LOSS_ROW_H */
