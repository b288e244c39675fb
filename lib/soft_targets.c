/* Soft targets from teacher logits, teacher probabilities and ensembles of teachers.
 * SPDX-License-Identifier: MIT */
#include "kd/soft_targets.h"

#include <math.h>

#include "kd/softmax.h"
#include "softmax_row.h"
#include "validate.h"

kd_status kd_soft_targets(const float *teacher_logits, size_t rows, size_t classes,
                          float temperature, float *targets)
{
    return kd_softmax(teacher_logits, rows, classes, classes, temperature, targets, classes);
}

kd_status kd_soft_targets_strided(const float *teacher_logits, size_t rows, size_t classes,
                                  size_t logits_stride, float temperature, float *targets,
                                  size_t targets_stride)
{
    return kd_softmax(teacher_logits, rows, classes, logits_stride, temperature, targets,
                      targets_stride);
}

kd_status kd_soft_targets_from_probabilities(const float *teacher_probabilities, size_t rows,
                                             size_t classes, size_t probabilities_stride,
                                             float temperature, float *targets,
                                             size_t targets_stride)
{
    kd_status status = kd_check_row_call(teacher_probabilities, targets, rows, classes,
                                  probabilities_stride, targets_stride, temperature);
    for (size_t r = 0; status == KD_OK && r < rows; r++) {
        double sum;
        /* A row it accepts sums to 1 within KD_PROBABILITY_SUM_TOLERANCE: never to 0. */
        status = kd_check_probability_row(teacher_probabilities + r * probabilities_stride,
                                          classes, &sum);
    }
    if (status != KD_OK)
        return status;

    const double t = temperature;
    for (size_t r = 0; r < rows; r++) {
        const float *p = teacher_probabilities + r * probabilities_stride;
        float *q = targets + r * targets_stride;
        /* q_i = (p_i / p_max)^(1/T), renormalised: every power lies in [0, 1]. */
        double log_max = log((double)kd_row_max(p, classes));
        double sum = 0.0;
        for (size_t i = 0; i < classes; i++) {
            double e = p[i] > 0.0f ? exp((log((double)p[i]) - log_max) / t) : 0.0;
            q[i] = (float)e;
            sum += e;
        }
        kd_row_normalize(q, classes, sum);
    }
    return KD_OK;
}

/* Validates an ensemble's members (those of weight > 0) and mode; `members` is not NULL
 * (kd_check_row_call refused that). */
static kd_status check_ensemble(const float *const *members, size_t count, const float *weights,
                                kd_ensemble_mode mode, size_t rows, size_t classes, size_t stride,
                                double *weight_total)
{
    if (count == 0)
        return KD_ERROR_ZERO_SIZE;
    if (mode != KD_ENSEMBLE_ARITHMETIC && mode != KD_ENSEMBLE_GEOMETRIC)
        return KD_ERROR_INVALID_ARGUMENT;
    kd_status status = kd_check_weights(weights, count, weight_total);
    for (size_t m = 0; status == KD_OK && m < count; m++)
        if (members[m] == NULL)
            status = KD_ERROR_NULL_POINTER;
    for (size_t m = 0; status == KD_OK && m < count; m++) {
        if (weights != NULL && weights[m] == 0.0f)
            continue;
        status = kd_check_logits(members[m], rows, classes, stride);
    }
    return status;
}

static double member_weight(const float *weights, size_t m, double total)
{
    return (weights == NULL ? 1.0 : (double)weights[m]) / total;
}

/* The weighted mean of the members' logits for class i of row r; -INFINITY if a member of
 * weight > 0 masks it. */
static double mean_logit(const float *const *members, size_t count, const float *weights,
                         double total, size_t offset)
{
    double mean = 0.0;
    for (size_t m = 0; m < count; m++) {
        double w = member_weight(weights, m, total);
        if (w > 0.0)
            mean += w * (double)members[m][offset];
    }
    return mean;
}

static void geometric_row(const float *const *members, size_t count, const float *weights,
                          double total, size_t offset, size_t classes, double t, float *q)
{
    double max = -INFINITY;
    for (size_t i = 0; i < classes; i++)
        max = fmax(max, mean_logit(members, count, weights, total, offset + i));
    double sum = 0.0;
    for (size_t i = 0; i < classes; i++) {
        double e = exp((mean_logit(members, count, weights, total, offset + i) - max) / t);
        q[i] = (float)e;
        sum += e;
    }
    kd_row_normalize(q, classes, sum);
}

static void arithmetic_row(const float *const *members, size_t count, const float *weights,
                           double total, size_t offset, size_t classes, double t, float *q)
{
    int first = 1;
    for (size_t m = 0; m < count; m++) {
        double w = member_weight(weights, m, total);
        if (w == 0.0)
            continue;
        const float *v = members[m] + offset;
        double max = kd_row_max(v, classes);
        double log_scale = log(w) - kd_row_log_sum_exp(v, classes, max, t);
        for (size_t i = 0; i < classes; i++) {
            float term = (float)exp(((double)v[i] - max) / t + log_scale);
            q[i] = first ? term : q[i] + term;
        }
        first = 0;
    }
}

kd_status kd_soft_targets_ensemble(const float *const *member_logits, size_t member_count,
                                   const float *member_weights, kd_ensemble_mode mode,
                                   size_t rows, size_t classes, size_t member_stride,
                                   float temperature, float *targets, size_t targets_stride)
{
    kd_status status = kd_check_row_call(member_logits, targets, rows, classes, member_stride,
                                  targets_stride, temperature);
    double total = 0.0;
    if (status == KD_OK)
        status = check_ensemble(member_logits, member_count, member_weights, mode, rows, classes,
                                member_stride, &total);
    if (status != KD_OK)
        return status;
    /* One member: both means are the member itself. */
    if (member_count == 1)
        return kd_softmax(member_logits[0], rows, classes, member_stride, temperature, targets,
                          targets_stride);

    if (mode == KD_ENSEMBLE_GEOMETRIC) {
        /* A class masked by one member is masked in the mean, so a row of the mean can be
         * fully masked although no member's row is; found before any output is written. */
        for (size_t r = 0; r < rows; r++) {
            int any = 0;
            for (size_t i = 0; i < classes && !any; i++)
                any = mean_logit(member_logits, member_count, member_weights, total,
                                 r * member_stride + i) != -INFINITY;
            if (!any)
                return KD_ERROR_ALL_MASKED;
        }
        for (size_t r = 0; r < rows; r++)
            geometric_row(member_logits, member_count, member_weights, total, r * member_stride,
                          classes, temperature, targets + r * targets_stride);
        return KD_OK;
    }
    for (size_t r = 0; r < rows; r++)
        arithmetic_row(member_logits, member_count, member_weights, total, r * member_stride,
                       classes, temperature, targets + r * targets_stride);
    return KD_OK;
}
