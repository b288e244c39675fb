/* The teacher side of the loss. SPDX-License-Identifier: MIT */
#include "loss_teacher.h"

#include <math.h>

#include "softmax_row.h"
#include "validate.h"

double kd_teacher_weight(const kd_teacher *teacher, size_t m)
{
    double w = teacher->weights == NULL ? 1.0 : (double)teacher->weights[m];
    return w / teacher->weight_total;
}

static const float *member_row(const kd_teacher *teacher, size_t m, size_t r)
{
    return teacher->members[m] + r * teacher->stride;
}

static int member_masks(const kd_teacher *teacher, size_t m, size_t r, size_t i)
{
    float x = member_row(teacher, m, r)[i];
    return teacher->kind == KD_TEACHER_LOGITS ? x == -INFINITY : x == 0.0f;
}

int kd_teacher_masks(const kd_teacher *teacher, size_t r, size_t i)
{
    /* Arithmetic mean: masked where every member masks; geometric: where any member does. */
    int any = teacher->mode == KD_ENSEMBLE_GEOMETRIC;
    for (size_t m = 0; m < teacher->count; m++)
        if (kd_teacher_weight(teacher, m) > 0.0 && member_masks(teacher, m, r, i) == any)
            return any;
    return !any;
}

kd_status kd_teacher_check_row(const kd_teacher *teacher, size_t r, size_t classes)
{
    for (size_t m = 0; m < teacher->count; m++) {
        if (kd_teacher_weight(teacher, m) == 0.0)
            continue;
        double sum;
        kd_status status = teacher->kind == KD_TEACHER_LOGITS
                               ? kd_check_logit_row(member_row(teacher, m, r), classes)
                               : kd_check_probability_row(member_row(teacher, m, r), classes, &sum);
        if (status != KD_OK)
            return status;
    }
    for (size_t i = 0; i < classes; i++)
        if (!kd_teacher_masks(teacher, r, i))
            return KD_OK;
    return KD_ERROR_ALL_MASKED;
}

static double member_log_sum(const kd_teacher *teacher, size_t m, size_t r, size_t classes)
{
    const float *x = member_row(teacher, m, r);
    double sum = 0.0;
    for (size_t i = 0; i < classes; i++)
        sum += x[i];
    return log(sum);
}

/* Arithmetic mean of softmax(v_m / t): u_i = log sum_m w_m exp(u_mi - (c_m - c_first)), where
 * u_mi = (v_mi - max_m) / t and c_m = log sum_i exp(u_mi); log_norm = c_first. A single member
 * of weight 1 gives u_i = u_1i exactly. */
static void arithmetic_logits(const kd_teacher *teacher, size_t r, size_t classes, double t,
                              double *u, double *log_norm)
{
    int first = 1;
    double c_first = 0.0;
    for (size_t m = 0; m < teacher->count; m++) {
        double w = kd_teacher_weight(teacher, m);
        if (w == 0.0)
            continue;
        const float *v = member_row(teacher, m, r);
        double max = kd_row_max(v, classes);
        double c = kd_row_log_sum_exp(v, classes, max, t);
        if (first)
            c_first = c;
        double offset = log(w) - (c - c_first);
        for (size_t i = 0; i < classes; i++) {
            double term = ((double)v[i] - max) / t + offset;
            u[i] = first ? term : kd_log_add_exp(u[i], term);
        }
        first = 0;
    }
    *log_norm = c_first;
}

/* Arithmetic mean of (renormalised) probabilities, accumulated linearly in double. */
static void arithmetic_probabilities(const kd_teacher *teacher, size_t r, size_t classes,
                                     double *u, double *log_norm)
{
    int first = 1;
    for (size_t m = 0; m < teacher->count; m++) {
        double w = kd_teacher_weight(teacher, m);
        if (w == 0.0)
            continue;
        const float *q = member_row(teacher, m, r);
        double scale = w / exp(member_log_sum(teacher, m, r, classes));
        for (size_t i = 0; i < classes; i++)
            u[i] = (first ? 0.0 : u[i]) + scale * (double)q[i];
        first = 0;
    }
    for (size_t i = 0; i < classes; i++)
        u[i] = log(u[i]);
    *log_norm = 0.0;
}

/* Geometric mean: u_i = (g_i - max g) / t_scale with g the weighted mean of the members' logits
 * (or of their log-probabilities), log_norm = log sum_i exp(u_i). */
static void geometric(const kd_teacher *teacher, size_t r, size_t classes, double t, double *u,
                      double *log_norm)
{
    const int logits = teacher->kind == KD_TEACHER_LOGITS;
    for (size_t i = 0; i < classes; i++)
        u[i] = 0.0;
    for (size_t m = 0; m < teacher->count; m++) {
        double w = kd_teacher_weight(teacher, m);
        if (w == 0.0)
            continue;
        const float *x = member_row(teacher, m, r);
        double shift = logits ? 0.0 : member_log_sum(teacher, m, r, classes);
        for (size_t i = 0; i < classes; i++)
            u[i] += w * (logits ? (double)x[i] : log((double)x[i]) - shift);
    }
    double max = -INFINITY;
    for (size_t i = 0; i < classes; i++)
        max = fmax(max, u[i]);
    double scale = logits ? t : 1.0;
    for (size_t i = 0; i < classes; i++)
        u[i] = (u[i] - max) / scale;
    *log_norm = kd_log_sum_exp_nonpositive(u, classes);
}

void kd_teacher_log_weights(const kd_teacher *teacher, size_t r, size_t classes, double t,
                            double *u, double *log_norm)
{
    if (teacher->mode == KD_ENSEMBLE_GEOMETRIC)
        geometric(teacher, r, classes, t, u, log_norm);
    else if (teacher->kind == KD_TEACHER_LOGITS)
        arithmetic_logits(teacher, r, classes, t, u, log_norm);
    else
        arithmetic_probabilities(teacher, r, classes, u, log_norm);
}

void kd_teacher_mean_logits(const kd_teacher *teacher, size_t r, size_t classes, double *v)
{
    for (size_t i = 0; i < classes; i++)
        v[i] = 0.0;
    for (size_t m = 0; m < teacher->count; m++) {
        double w = kd_teacher_weight(teacher, m);
        if (w == 0.0)
            continue;
        const float *x = member_row(teacher, m, r);
        for (size_t i = 0; i < classes; i++)
            v[i] += w * (double)x[i];
    }
}

