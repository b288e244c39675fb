/* The teacher side of the loss: one teacher or an ensemble, as logits or probabilities,
 * validated and turned into one row of log-probabilities at a time.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_LOSS_TEACHER_H
#define KD_LIB_LOSS_TEACHER_H

#include <stddef.h>

#include "kd/loss.h"

typedef struct kd_teacher {
    const float *const *members; /* `count` matrices of `stride`-strided rows */
    size_t count;
    const float *weights; /* NULL: equal */
    double weight_total;  /* sum of the weights (count when NULL) */
    size_t stride;
    kd_teacher_kind kind;
    kd_ensemble_mode mode; /* KD_ENSEMBLE_ARITHMETIC whenever count == 1 */
} kd_teacher;

/* Normalised weight of member m (0 for members that are not read). */
double kd_teacher_weight(const kd_teacher *teacher, size_t m);

/* Validates row r of every member of weight > 0 (finite logits with an unmasked class, or valid
 * probabilities), and that the combined row has an unmasked class. */
kd_status kd_teacher_check_row(const kd_teacher *teacher, size_t r, size_t classes);

/* Whether the combined teacher masks class i of row r (probability exactly 0). */
int kd_teacher_masks(const kd_teacher *teacher, size_t r, size_t i);

/* The combined teacher's row r at temperature t as log-weights: log q_i = u[i] - *log_norm,
 * with u[i] = -INFINITY for masked classes. The split keeps u free of the large constant
 * log_norm, so differences of u with the student's shifted logits stay exact at high t.
 * (Probabilities are soft targets already at t: t is not applied to them.) */
void kd_teacher_log_weights(const kd_teacher *teacher, size_t r, size_t classes, double t,
                            double *u, double *log_norm);

/* The weighted mean of the members' logits for row r (logit matching). Logits teachers only. */
void kd_teacher_mean_logits(const kd_teacher *teacher, size_t r, size_t classes, double *v);

#endif /* KD_LIB_LOSS_TEACHER_H */
