/* kd_loss_compute and kd_loss_compute_ensemble: validation, the row loop and the reduction.
 * SPDX-License-Identifier: MIT */
#include <math.h>
#include <string.h>

#include "loss_internal.h"
#include "loss_row.h"
#include "loss_teacher.h"
#include "validate.h"

/* One call's arguments, once resolved. */
typedef struct batch {
    const float *student;
    size_t student_stride;
    const kd_teacher *teacher; /* NULL: no soft term */
    const int32_t *labels;     /* NULL: no hard term, every row counts */
    size_t rows, classes;
    double alpha; /* the loss's alpha, or 0 for the trainer's hard-only steps */
    float *values;
    float *grad;
    size_t grad_stride;
} batch;

static int ignored(const kd_loss *loss, const batch *b, size_t r)
{
    return b->labels != NULL && (double)b->labels[r] == loss->param[KD_LOSS_PARAM_IGNORE_LABEL];
}

static kd_divergence divergence_of(const kd_loss *loss)
{
    return (kd_divergence)loss->param[KD_LOSS_PARAM_DIVERGENCE];
}

/* Whether the student's and the teacher's masks fit the divergence at class i of row r. */
static int masks_fit(kd_divergence divergence, int student_masks, int teacher_masks)
{
    switch (divergence) {
    case KD_DIVERGENCE_KL:
    case KD_DIVERGENCE_CROSS_ENTROPY:
        return !student_masks || teacher_masks; /* else q log(q / 0) is infinite */
    case KD_DIVERGENCE_REVERSE_KL:
        return student_masks || !teacher_masks; /* else p log(p / 0) is infinite */
    case KD_DIVERGENCE_JENSEN_SHANNON:
        return 1;
    case KD_DIVERGENCE_LOGIT_MSE:
        return student_masks == teacher_masks;
    }
    return 0;
}

static kd_status check_row(const kd_loss *loss, const batch *b, size_t r)
{
    const float *z = b->student + r * b->student_stride;
    kd_status status = kd_check_logit_row(z, b->classes);
    if (status != KD_OK)
        return status;
    if (b->labels != NULL) {
        int32_t label = b->labels[r];
        if (label < 0 || (size_t)label >= b->classes || z[label] == -INFINITY)
            return KD_ERROR_INVALID_LABEL;
    }
    if (b->teacher == NULL)
        return KD_OK;
    status = kd_teacher_check_row(b->teacher, r, b->classes);
    if (status != KD_OK)
        return status;
    for (size_t i = 0; i < b->classes; i++)
        if (!masks_fit(divergence_of(loss), z[i] == -INFINITY, kd_teacher_masks(b->teacher, r, i)))
            return KD_ERROR_SHAPE_MISMATCH;
    return KD_OK;
}

/* Everything that can fail, before the first byte of output is written. */
static kd_status check_batch(kd_loss *loss, const batch *b, size_t *counted)
{
    kd_status status = kd_check_matrix(b->rows, b->classes, b->student_stride);
    if (status == KD_OK && b->teacher != NULL)
        status = kd_check_matrix(b->rows, b->classes, b->teacher->stride);
    if (status == KD_OK && b->grad != NULL)
        status = kd_check_matrix(b->rows, b->classes, b->grad_stride);
    if (status == KD_OK && b->teacher != NULL && divergence_of(loss) == KD_DIVERGENCE_LOGIT_MSE
        && b->teacher->kind == KD_TEACHER_PROBABILITIES)
        status = KD_ERROR_UNSUPPORTED;
    *counted = 0;
    for (size_t r = 0; status == KD_OK && r < b->rows; r++) {
        if (ignored(loss, b, r))
            continue;
        status = check_row(loss, b, r);
        ++*counted;
    }
    if (status == KD_OK)
        status = kd_loss_ensure_scratch(loss, b->classes);
    return status;
}

static kd_status run(kd_loss *loss, const batch *b)
{
    size_t counted;
    kd_status status = check_batch(loss, b, &counted);
    if (status != KD_OK)
        return status;

    const double t = loss->param[KD_LOSS_PARAM_TEMPERATURE];
    const double alpha = b->alpha;
    const double soft_scale = loss->param[KD_LOSS_PARAM_SCALE_T_SQUARED] != 0.0 ? t * t : 1.0;
    const kd_reduction reduction = (kd_reduction)loss->param[KD_LOSS_PARAM_REDUCTION];
    const double row_scale = reduction == KD_REDUCTION_MEAN && counted > 0 ? 1.0 / (double)counted : 1.0;
    const kd_row_spec spec = {
        .divergence = divergence_of(loss),
        .t = t,
        .beta = loss->param[KD_LOSS_PARAM_JSD_BETA],
        .has_teacher = b->teacher != NULL,
        .has_label = b->labels != NULL,
        .soft_weight = alpha * soft_scale * row_scale,
        .hard_weight = (1.0 - alpha) * row_scale,
    };
    double *teacher_row = loss->scratch, *work = loss->scratch + loss->capacity;
    double sum[KD_LOSS_VALUE_COUNT] = {0.0, 0.0, 0.0};

    for (size_t r = 0; r < b->rows; r++) {
        float *grad = b->grad == NULL ? NULL : b->grad + r * b->grad_stride;
        double part[KD_LOSS_VALUE_COUNT] = {0.0, 0.0, 0.0};
        if (ignored(loss, b, r)) {
            if (grad != NULL)
                memset(grad, 0, b->classes * sizeof *grad);
        } else {
            double log_norm = 0.0;
            if (b->teacher != NULL && spec.divergence == KD_DIVERGENCE_LOGIT_MSE)
                kd_teacher_mean_logits(b->teacher, r, b->classes, teacher_row);
            else if (b->teacher != NULL)
                kd_teacher_log_weights(b->teacher, r, b->classes, t, teacher_row, &log_norm);
            kd_loss_row(&spec, b->student + r * b->student_stride, b->classes, teacher_row, log_norm,
                        b->labels == NULL ? 0 : b->labels[r], work, &part[KD_LOSS_VALUE_SOFT],
                        &part[KD_LOSS_VALUE_HARD], grad);
            part[KD_LOSS_VALUE_TOTAL] = alpha * soft_scale * part[KD_LOSS_VALUE_SOFT]
                                        + (1.0 - alpha) * part[KD_LOSS_VALUE_HARD];
        }
        for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++) {
            sum[k] += part[k];
            if (b->values != NULL && reduction == KD_REDUCTION_NONE)
                b->values[r * KD_LOSS_VALUE_COUNT + k] = (float)part[k];
        }
    }
    if (b->values != NULL && reduction != KD_REDUCTION_NONE)
        for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++)
            b->values[k] = (float)(sum[k] * (reduction == KD_REDUCTION_MEAN ? row_scale : 1.0));
    return KD_OK;
}

/* The checks common to both entry points that do not depend on the teacher's form. */
static kd_status check_presence(const kd_loss *loss, const float *student, int has_teacher,
                                const int32_t *labels)
{
    if (loss == NULL || student == NULL)
        return KD_ERROR_NULL_POINTER;
    const double alpha = loss->param[KD_LOSS_PARAM_ALPHA];
    if ((!has_teacher && alpha > 0.0) || (labels == NULL && alpha < 1.0))
        return KD_ERROR_NULL_POINTER;
    return KD_OK;
}

static kd_teacher make_teacher(const kd_loss *loss, const float *const *members, size_t count,
                               const float *weights, double weight_total, size_t stride)
{
    kd_ensemble_mode mode = (kd_ensemble_mode)loss->param[KD_LOSS_PARAM_ENSEMBLE_MODE];
    /* One member: both means are the member itself. Logit matching matches the mean logits,
     * which mask a class wherever one member does, as the geometric mean. */
    if (count == 1)
        mode = KD_ENSEMBLE_ARITHMETIC;
    if (divergence_of(loss) == KD_DIVERGENCE_LOGIT_MSE)
        mode = KD_ENSEMBLE_GEOMETRIC;
    return (kd_teacher){members, count, weights, weight_total, stride,
                        (kd_teacher_kind)loss->param[KD_LOSS_PARAM_TEACHER_KIND], mode};
}

kd_status kd_loss_compute(kd_loss *loss, const float *student_logits, size_t student_stride,
                          const float *teacher, size_t teacher_stride, const int32_t *labels,
                          size_t rows, size_t classes, float *values, float *grad,
                          size_t grad_stride)
{
    kd_status status = check_presence(loss, student_logits, teacher != NULL, labels);
    if (status != KD_OK)
        return status;
    const float *const members[1] = {teacher};
    kd_teacher single = make_teacher(loss, members, 1, NULL, 1.0, teacher_stride);
    batch b = {student_logits, student_stride, teacher == NULL ? NULL : &single, labels, rows,
               classes, loss->param[KD_LOSS_PARAM_ALPHA], values, grad, grad_stride};
    return run(loss, &b);
}

kd_status kd_loss_compute_ensemble(kd_loss *loss, const float *student_logits,
                                   size_t student_stride, const float *const *members,
                                   size_t member_count, const float *member_weights,
                                   size_t member_stride, const int32_t *labels, size_t rows,
                                   size_t classes, float *values, float *grad, size_t grad_stride)
{
    kd_status status = check_presence(loss, student_logits, members != NULL, labels);
    if (status != KD_OK)
        return status;
    double weight_total = 0.0;
    if (members != NULL) {
        if (member_count == 0)
            return KD_ERROR_ZERO_SIZE;
        for (size_t m = 0; m < member_count; m++)
            if (members[m] == NULL)
                return KD_ERROR_NULL_POINTER;
        status = kd_check_weights(member_weights, member_count, &weight_total);
        if (status != KD_OK)
            return status;
    }
    kd_teacher ensemble = make_teacher(loss, members, member_count, member_weights, weight_total,
                                       member_stride);
    batch b = {student_logits, student_stride, members == NULL ? NULL : &ensemble, labels, rows,
               classes, loss->param[KD_LOSS_PARAM_ALPHA], values, grad, grad_stride};
    return run(loss, &b);
}

kd_status kd_loss_compute_hard(kd_loss *loss, const float *student_logits, const int32_t *labels,
                               size_t rows, size_t classes, float *values, float *grad)
{
    if (loss == NULL || student_logits == NULL || labels == NULL)
        return KD_ERROR_NULL_POINTER;
    batch b = {student_logits, classes, NULL, labels, rows, classes, 0.0, values, grad, classes};
    return run(loss, &b);
}
