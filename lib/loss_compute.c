/* kd_loss_compute and kd_loss_compute_ensemble: validation, the row loop and the reduction.
 * SPDX-License-Identifier: MIT */
#include <math.h>
#include <string.h>

#include "loss_fast.h"
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
    default: /* kd_loss_set admits no other value */
        return student_masks == teacher_masks;
    }
}

/* Whether rows of this call take the fused float kernels: KL or cross-entropy against one
 * logits teacher, or the hard loss alone. */
static int fast_path(const kd_loss *loss, const batch *b)
{
    if (b->teacher == NULL)
        return 1;
    kd_divergence d = divergence_of(loss);
    return (d == KD_DIVERGENCE_KL || d == KD_DIVERGENCE_CROSS_ENTROPY) && b->teacher->count == 1
           && b->teacher->kind == KD_TEACHER_LOGITS;
}

static const float *teacher_row(const batch *b, size_t r)
{
    return b->teacher == NULL ? NULL : b->teacher->members[0] + r * b->teacher->stride;
}

static kd_status check_label(const batch *b, size_t r, const float *z)
{
    if (b->labels == NULL)
        return KD_OK;
    int32_t label = b->labels[r];
    if (label < 0 || (size_t)label >= b->classes || z[label] == -INFINITY)
        return KD_ERROR_INVALID_LABEL;
    return KD_OK;
}

/* The fused kernels' check of row r, with the statuses in the order of check_row's; *info
 * receives what the check finds of a valid row. */
static kd_status check_fast_row(const kd_loss *loss, const batch *b, size_t r,
                                kd_fast_row_info *info)
{
    const float *z = b->student + r * b->student_stride;
    unsigned bits = loss->kernels->check(z, teacher_row(b, r), b->classes, info);
    if (bits & KD_FAST_STUDENT_NONFINITE)
        return KD_ERROR_NONFINITE_INPUT;
    if (bits & KD_FAST_STUDENT_MASKED)
        return KD_ERROR_ALL_MASKED;
    kd_status status = check_label(b, r, z);
    if (status != KD_OK)
        return status;
    if (bits & KD_FAST_TEACHER_NONFINITE)
        return KD_ERROR_NONFINITE_INPUT;
    if (bits & KD_FAST_TEACHER_MASKED)
        return KD_ERROR_ALL_MASKED;
    return (bits & KD_FAST_MASK_MISFIT) ? KD_ERROR_SHAPE_MISMATCH : KD_OK;
}

static kd_status check_row(const kd_loss *loss, const batch *b, size_t r)
{
    const float *z = b->student + r * b->student_stride;
    kd_status status = kd_check_logit_row(z, b->classes);
    if (status == KD_OK)
        status = check_label(b, r, z);
    if (status != KD_OK || b->teacher == NULL)
        return status;
    status = kd_teacher_check_row(b->teacher, r, b->classes);
    if (status != KD_OK)
        return status;
    for (size_t i = 0; i < b->classes; i++)
        if (!masks_fit(divergence_of(loss), z[i] == -INFINITY, kd_teacher_masks(b->teacher, r, i)))
            return KD_ERROR_SHAPE_MISMATCH;
    return KD_OK;
}

/* One call's work, shared by the threads that run it. */
typedef struct job {
    kd_loss *loss;
    const batch *b;
    int fast;
    int stream;             /* the gradient is larger than the caches */
    kd_fast_row_info *info; /* per row, from the check; NULL: found again per row */
    kd_row_spec spec;
    double soft_scale;
    double *row_values; /* per-row values when several threads reduce; else NULL */
    double sum[KD_LOSS_VALUE_COUNT];
    /* The check: per thread, rows counted and the first failing row's status. */
    size_t counted[KD_LOSS_MAX_THREADS];
    kd_status status[KD_LOSS_MAX_THREADS];
} job;

/* Rows [*first, *last) of thread `index` of `threads`: contiguous, in order. */
static void share(size_t rows, size_t index, size_t threads, size_t *first, size_t *last)
{
    *first = rows * index / threads;
    *last = rows * (index + 1) / threads;
}

/* The check of one thread's rows; stops at its first failing row. */
static void check_rows(void *context, size_t index, size_t threads)
{
    job *j = context;
    size_t first, last;
    share(j->b->rows, index, threads, &first, &last);
    size_t counted = 0; /* kept locally: the threads' slots share cache lines */
    kd_status status = KD_OK;
    for (size_t r = first; r < last && status == KD_OK; r++) {
        if (ignored(j->loss, j->b, r))
            continue;
        kd_fast_row_info unused;
        status = !j->fast          ? check_row(j->loss, j->b, r)
                 : j->info != NULL ? check_fast_row(j->loss, j->b, r, &j->info[r])
                                   : check_fast_row(j->loss, j->b, r, &unused);
        counted += status == KD_OK;
    }
    j->counted[index] = counted;
    j->status[index] = status;
}

/* The loss of row r (not ignored) into part[], and its gradient. */
static void compute_row(const job *j, size_t r, size_t index, double *part, float *grad)
{
    const batch *b = j->b;
    kd_loss *loss = j->loss;
    const float *z = b->student + r * b->student_stride;
    const int32_t label = b->labels == NULL ? 0 : b->labels[r];
    double *teacher = loss->scratch + 2 * index * loss->capacity, *work = teacher + loss->capacity;
    kd_fast_row_info found;
    const kd_fast_row_info *info = j->info == NULL ? NULL : &j->info[r];
    if (j->fast && info == NULL) {
        (void)loss->kernels->check(z, teacher_row(b, r), b->classes, &found); /* a valid row */
        info = &found;
    }
    if (j->fast && kd_fast_row_fits(info, j->spec.t)) {
        /* The thread's two scratch rows of doubles hold the kernels' 3 rows of floats. */
        kd_fast_row(loss->kernels, &j->spec, z, teacher_row(b, r), b->classes, label, info,
                    (float *)teacher, j->stream, &part[KD_LOSS_VALUE_SOFT],
                    &part[KD_LOSS_VALUE_HARD], grad);
    } else {
        double log_norm = 0.0;
        if (b->teacher != NULL && j->spec.divergence == KD_DIVERGENCE_LOGIT_MSE)
            kd_teacher_mean_logits(b->teacher, r, b->classes, teacher);
        else if (b->teacher != NULL)
            kd_teacher_log_weights(b->teacher, r, b->classes, j->spec.t, teacher, &log_norm);
        kd_loss_row(&j->spec, z, b->classes, teacher, log_norm, label, work,
                    &part[KD_LOSS_VALUE_SOFT], &part[KD_LOSS_VALUE_HARD], grad);
    }
    part[KD_LOSS_VALUE_TOTAL] = b->alpha * j->soft_scale * part[KD_LOSS_VALUE_SOFT]
                                + (1.0 - b->alpha) * part[KD_LOSS_VALUE_HARD];
}

/* The rows of one thread: gradients, per-row values, and (one thread) the running sum. */
static void compute_rows(void *context, size_t index, size_t threads)
{
    job *j = context;
    const batch *b = j->b;
    const int per_row = (kd_reduction)j->loss->param[KD_LOSS_PARAM_REDUCTION] == KD_REDUCTION_NONE;
    size_t first, last;
    share(b->rows, index, threads, &first, &last);
    for (size_t r = first; r < last; r++) {
        float *grad = b->grad == NULL ? NULL : b->grad + r * b->grad_stride;
        double part[KD_LOSS_VALUE_COUNT] = {0.0, 0.0, 0.0};
        if (!ignored(j->loss, b, r))
            compute_row(j, r, index, part, grad);
        else if (grad != NULL)
            memset(grad, 0, b->classes * sizeof *grad);
        for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++) {
            if (b->values != NULL && per_row)
                b->values[r * KD_LOSS_VALUE_COUNT + k] = (float)part[k];
            if (j->row_values != NULL)
                j->row_values[r * KD_LOSS_VALUE_COUNT + k] = part[k];
            else
                j->sum[k] += part[k];
        }
    }
}

/* Gradients above this many elements (16 MiB) are written past the caches. */
enum { KD_LOSS_STREAM_ELEMENTS = 1 << 22 };

/* Batches below this many elements run on the caller's thread. */
enum { KD_LOSS_PARALLEL_ELEMENTS = 1 << 15 };

/* How many threads a call runs on. */
static size_t threads_for(const kd_loss *loss, const batch *b)
{
    size_t threads = kd_loss_threads(loss);
    if (threads > b->rows)
        threads = b->rows;
    if (b->rows * b->classes < KD_LOSS_PARALLEL_ELEMENTS)
        threads = 1;
    return threads;
}

/* Runs one phase of the job on `threads` threads. */
static void run_phase(kd_loss *loss, size_t threads, kd_pool_job phase, job *j)
{
    if (threads == 1)
        phase(j, 0, 1);
    else
        kd_pool_run(loss->pool, phase, j);
}

static kd_status run(kd_loss *loss, const batch *b)
{
    kd_status status = kd_check_matrix(b->rows, b->classes, b->student_stride);
    if (status == KD_OK && b->teacher != NULL)
        status = kd_check_matrix(b->rows, b->classes, b->teacher->stride);
    if (status == KD_OK && b->grad != NULL)
        status = kd_check_matrix(b->rows, b->classes, b->grad_stride);
    if (status == KD_OK && b->teacher != NULL && divergence_of(loss) == KD_DIVERGENCE_LOGIT_MSE
        && b->teacher->kind == KD_TEACHER_PROBABILITIES)
        status = KD_ERROR_UNSUPPORTED;
    const size_t threads = status == KD_OK ? threads_for(loss, b) : 1;
    if (status == KD_OK && threads > 1)
        status = kd_loss_ensure_pool(loss, threads);
    if (status != KD_OK)
        return status;

    const double t = loss->param[KD_LOSS_PARAM_TEMPERATURE];
    const kd_reduction reduction = (kd_reduction)loss->param[KD_LOSS_PARAM_REDUCTION];
    job j;
    j.loss = loss;
    j.b = b;
    j.fast = fast_path(loss, b);
    j.stream = b->rows * b->classes > KD_LOSS_STREAM_ELEMENTS;
    j.info = b->rows <= KD_LOSS_ROW_INFO_ROWS ? loss->row_info : NULL;
    j.soft_scale = loss->param[KD_LOSS_PARAM_SCALE_T_SQUARED] != 0.0 ? t * t : 1.0;
    j.row_values = NULL;
    run_phase(loss, threads, check_rows, &j);
    size_t counted = 0;
    for (size_t k = 0; k < threads; k++) {
        if (j.status[k] != KD_OK)
            return j.status[k];
        counted += j.counted[k];
    }
    status = kd_loss_ensure_scratch(loss, b->classes);
    if (status == KD_OK && threads > 1 && reduction != KD_REDUCTION_NONE)
        status = kd_loss_ensure_row_values(loss, b->rows);
    if (status != KD_OK)
        return status;

    const double row_scale = reduction == KD_REDUCTION_MEAN && counted > 0 ? 1.0 / (double)counted : 1.0;
    j.spec = (kd_row_spec){
        .divergence = divergence_of(loss),
        .t = t,
        .beta = loss->param[KD_LOSS_PARAM_JSD_BETA],
        .has_teacher = b->teacher != NULL,
        .has_label = b->labels != NULL,
        .soft_weight = b->alpha * j.soft_scale * row_scale,
        .hard_weight = (1.0 - b->alpha) * row_scale,
    };
    j.row_values = threads > 1 && reduction != KD_REDUCTION_NONE ? loss->row_values : NULL;
    for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++)
        j.sum[k] = 0.0;
    run_phase(loss, threads, compute_rows, &j);
    for (size_t r = 0; j.row_values != NULL && r < b->rows; r++)
        for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++)
            j.sum[k] += j.row_values[r * KD_LOSS_VALUE_COUNT + k];
    if (b->values != NULL && reduction != KD_REDUCTION_NONE)
        for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++)
            b->values[k] = (float)(j.sum[k] * (reduction == KD_REDUCTION_MEAN ? row_scale : 1.0));
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
