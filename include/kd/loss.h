/*
 * libkd — the distillation loss and its gradient.
 *
 * A kd_loss handle holds the loss's parameters and its scratch memory. Per mini-batch, one
 * call computes, for student logits z, a teacher and (optionally) integer labels y:
 *
 *     total = alpha * S * soft + (1 - alpha) * hard,      S = T^2 (default) or 1
 *     soft  = D(q_T || p_T)   a divergence at temperature T (KL by default), where
 *             p_T = softmax(z / T) and q_T = the teacher's soft targets at T
 *     hard  = -log softmax(z)_y   cross-entropy at T = 1
 *
 * and the gradient of the reduced total with respect to z. docs/math.md derives each
 * divergence and gives the PyTorch expression it equals.
 *
 * Accuracy (float32 in, float32 out, double inside): for KL, cross-entropy and the combined
 * loss, values and gradients are within 1e-5 relative of a float64 evaluation on the same
 * inputs for every T in [1e-3, 1e4] and rows of up to 256,000 classes (KL is evaluated in a
 * form that does not cancel when it is tiny at high T). A gradient row is within 1e-5
 * norm-wise of the larger of its soft and hard parts: where the two nearly cancel (the
 * teacher against the label), the small sum keeps their absolute error. Reverse KL and
 * Jensen-Shannon meet the same bound up to T = 100.
 *
 * Threads: a handle is used by one thread at a time (kd_loss_set, kd_loss_get, kd_loss_reserve,
 * kd_loss_compute*, kd_loss_destroy); distinct handles may be used concurrently on distinct
 * threads. kd_loss_param_bounds() is thread-safe. A handle may itself run a call on several
 * threads (KD_LOSS_PARAM_THREADS): the call returns only when they have all finished.
 *
 * Speed: KL, cross-entropy and the hard loss with one logits teacher run fused float kernels
 * (AVX2 + FMA when the CPU has them, detected at run time, else portable C) within the
 * accuracy bounds above; docs/performance.md has the measurements.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_LOSS_H
#define KD_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "kd/allocator.h"
#include "kd/export.h"
#include "kd/soft_targets.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kd_loss kd_loss;

/* The soft term D(q || p) between the teacher's soft targets q and the student's p at T. */
typedef enum kd_divergence {
    /* KL(q || p) = sum_i q_i log(q_i / p_i); gradient (p - q) / T. Reads 0 on a perfect match. */
    KD_DIVERGENCE_KL = 0,
    /* -sum_i q_i log p_i = KL(q || p) + H(q): the paper's soft loss; same gradient as KL. */
    KD_DIVERGENCE_CROSS_ENTROPY = 1,
    /* Reverse KL(p || q) = sum_i p_i log(p_i / q_i) (mode-seeking). */
    KD_DIVERGENCE_REVERSE_KL = 2,
    /* Generalised Jensen-Shannon: beta KL(q || m) + (1 - beta) KL(p || m), with the mixture
     * m = beta q + (1 - beta) p and beta = KD_LOSS_PARAM_JSD_BETA. beta = 0.5 is the symmetric
     * JSD; beta = 0 and beta = 1 give exactly 0 (m equals p, resp. q), the formula's limits. */
    KD_DIVERGENCE_JENSEN_SHANNON = 3,
    /* Logit matching (Caruana): sum_i (z_i - v_i)^2 / (2 C T^2) over the C unmasked classes,
     * the high-temperature limit of KL for zero-mean logits; so alpha * T^2 * soft does not
     * depend on T. Needs a logits teacher. */
    KD_DIVERGENCE_LOGIT_MSE = 4
} kd_divergence;

/* How per-row losses are reduced over the batch. Rows whose label is the ignore label do not
 * count: they are not read, contribute 0, and get a zero gradient. */
typedef enum kd_reduction {
    /* Mean over counted rows (PyTorch's "batchmean" for the soft term, "mean" for the hard). */
    KD_REDUCTION_MEAN = 0,
    /* Sum over counted rows. */
    KD_REDUCTION_SUM = 1,
    /* Per-row values; the gradient is that of their sum. */
    KD_REDUCTION_NONE = 2
} kd_reduction;

/* What the `teacher` matrices passed to kd_loss_compute*() hold. */
typedef enum kd_teacher_kind {
    /* Teacher logits v; q = softmax(v / T). -INFINITY masks a class. */
    KD_TEACHER_LOGITS = 0,
    /* Soft targets already at the loss temperature (from kd_soft_targets*()): q itself,
     * validated (finite, >= 0, rows summing to 1 within KD_PROBABILITY_SUM_TOLERANCE) and
     * renormalised. 0 masks a class. */
    KD_TEACHER_PROBABILITIES = 1
} kd_teacher_kind;

/* The loss's parameters, set one at a time. Every value is passed as a double; integer and
 * enum parameters take whole numbers. kd_loss_param_bounds() gives each one's range. */
typedef enum kd_loss_param {
    /* T: finite, in [1e-30, 1e30]. Default 1. */
    KD_LOSS_PARAM_TEMPERATURE = 0,
    /* alpha, the weight of the soft term: [0, 1]. Default 0.5. */
    KD_LOSS_PARAM_ALPHA = 1,
    /* A kd_divergence. Default KD_DIVERGENCE_KL. */
    KD_LOSS_PARAM_DIVERGENCE = 2,
    /* 1: scale the soft term by T^2, as the paper does; 0: do not. Default 1. */
    KD_LOSS_PARAM_SCALE_T_SQUARED = 3,
    /* A kd_reduction. Default KD_REDUCTION_MEAN. */
    KD_LOSS_PARAM_REDUCTION = 4,
    /* The label of padding rows, any int32 value. Default -100 (as PyTorch). */
    KD_LOSS_PARAM_IGNORE_LABEL = 5,
    /* beta of KD_DIVERGENCE_JENSEN_SHANNON: [0, 1]. Default 0.5. */
    KD_LOSS_PARAM_JSD_BETA = 6,
    /* A kd_teacher_kind. Default KD_TEACHER_LOGITS. */
    KD_LOSS_PARAM_TEACHER_KIND = 7,
    /* A kd_ensemble_mode, for kd_loss_compute_ensemble(). Default KD_ENSEMBLE_ARITHMETIC. */
    KD_LOSS_PARAM_ENSEMBLE_MODE = 8,
    /* The number of threads kd_loss_compute*() splits a batch's rows over: [1, 256]. Default 1
     * (the caller's thread only: a library does not oversubscribe a host's own thread pool).
     * Above 1, the handle starts threads - 1 worker threads (pthreads) at the first call that
     * needs them and keeps them until kd_loss_destroy(); small batches still run on the
     * caller's thread. Results are bit-identical for every thread count. */
    KD_LOSS_PARAM_THREADS = 9
} kd_loss_param;

/* Index of each value in the `values` output of kd_loss_compute*(). */
typedef enum kd_loss_value {
    KD_LOSS_VALUE_TOTAL = 0, /* alpha * S * soft + (1 - alpha) * hard */
    KD_LOSS_VALUE_SOFT = 1,  /* the divergence at T, unweighted, unscaled */
    KD_LOSS_VALUE_HARD = 2,  /* cross-entropy against the labels at T = 1, unweighted */
    KD_LOSS_VALUE_COUNT = 3
} kd_loss_value;

/* Creates a loss handle with the default parameters. allocator: NULL for malloc/free, or a host
 * allocator (copied) that serves every allocation of this handle. On success *loss owns the
 * handle: give it back with kd_loss_destroy(). Returns KD_OK, KD_ERROR_NULL_POINTER (loss),
 * KD_ERROR_INVALID_ARGUMENT (an allocator with a bad struct_size or NULL function) or
 * KD_ERROR_OUT_OF_MEMORY (then *loss is untouched). Starts no thread. */
KD_API kd_status kd_loss_create(kd_loss **loss, const kd_allocator *allocator);

/* Destroys a handle and its scratch memory, and joins its worker threads. NULL is a no-op. */
KD_API void kd_loss_destroy(kd_loss *loss);

/* Sets one parameter. KD_ERROR_INVALID_ARGUMENT (parameter unchanged) for an unknown parameter
 * or a value outside its bounds or not whole for an integer parameter; KD_ERROR_NULL_POINTER. */
KD_API kd_status kd_loss_set(kd_loss *loss, kd_loss_param param, double value);

/* Reads one parameter into *value. KD_ERROR_NULL_POINTER, KD_ERROR_INVALID_ARGUMENT. */
KD_API kd_status kd_loss_get(const kd_loss *loss, kd_loss_param param, double *value);

/* The smallest and largest value kd_loss_set() accepts for a parameter (either pointer may be
 * NULL). KD_ERROR_INVALID_ARGUMENT for an unknown parameter. Thread-safe. */
KD_API kd_status kd_loss_param_bounds(kd_loss_param param, double *min, double *max);

/* Allocates the scratch memory for rows of up to `classes` classes now, so that later
 * kd_loss_compute*() calls allocate nothing (they otherwise grow it on first need). The
 * scratch is 16 bytes per class for each of the KD_LOSS_PARAM_THREADS threads (as set when
 * it is made or grown), plus 128 KiB, made once, for what the check of up to 4096 rows finds.
 * KD_ERROR_NULL_POINTER, KD_ERROR_ZERO_SIZE, KD_ERROR_SIZE_OVERFLOW, KD_ERROR_OUT_OF_MEMORY. */
KD_API kd_status kd_loss_reserve(kd_loss *loss, size_t classes);

/* The loss of a batch and its gradient.
 *
 * student_logits: rows x classes, row stride student_stride (>= classes). -INFINITY masks a
 *                 class. Masks must keep the divergence finite: for KL and cross-entropy every
 *                 class the student masks is masked by the teacher too; for reverse KL every
 *                 class the teacher masks is masked by the student; Jensen-Shannon takes any
 *                 masks; logit matching needs exactly the same masked classes. Otherwise
 *                 KD_ERROR_SHAPE_MISMATCH.
 * teacher:        rows x classes of the kind set by KD_LOSS_PARAM_TEACHER_KIND, row stride
 *                 teacher_stride; may be NULL only when alpha = 0 (hard loss alone).
 * labels:         rows class indices in [0, classes), or the ignore label for rows that do not
 *                 count; may be NULL only when alpha = 1 (then every row counts).
 * values:         NULL, or KD_LOSS_VALUE_COUNT floats (indexed by kd_loss_value) for the MEAN
 *                 and SUM reductions, rows x KD_LOSS_VALUE_COUNT for NONE. A part that was not
 *                 computed (soft without teacher, hard without labels) reads 0. With no
 *                 counted row, every value and the gradient are 0.
 * grad:           NULL, or rows x classes (row stride grad_stride) receiving d total / d z;
 *                 may be student_logits itself with the same stride.
 *
 * Returns KD_OK, or, leaving values and grad untouched: KD_ERROR_NULL_POINTER,
 * KD_ERROR_ZERO_SIZE, KD_ERROR_SHAPE_MISMATCH (a stride below classes, or masks that do not
 * fit as above), KD_ERROR_SIZE_OVERFLOW, KD_ERROR_NONFINITE_INPUT (NaN, +INFINITY, or -INFINITY
 * in a teacher's probabilities), KD_ERROR_ALL_MASKED, KD_ERROR_INVALID_LABEL (out of range, or
 * a class the student masks), KD_ERROR_INVALID_PROBABILITIES, KD_ERROR_UNSUPPORTED (logit
 * matching with a probabilities teacher), KD_ERROR_OUT_OF_MEMORY (first use of a larger row,
 * or, with KD_LOSS_PARAM_THREADS above 1, the worker threads could not be started).
 * Allocates nothing once the scratch is large enough (see kd_loss_reserve). With
 * KD_LOSS_PARAM_THREADS above 1, the first call that uses more threads starts the workers,
 * and a MEAN or SUM call also keeps 24 bytes per row (grown when a larger batch first
 * appears). */
KD_API kd_status kd_loss_compute(kd_loss *loss, const float *student_logits, size_t student_stride,
                                 const float *teacher, size_t teacher_stride,
                                 const int32_t *labels, size_t rows, size_t classes, float *values,
                                 float *grad, size_t grad_stride);

/* As kd_loss_compute, with the teacher an ensemble combined as KD_LOSS_PARAM_ENSEMBLE_MODE
 * says (see kd_ensemble_mode): member_count matrices of the teacher kind, passed as an array of
 * pointers (row stride member_stride each), with weights as in kd_soft_targets_ensemble()
 * (NULL: equal). An ensemble of one member gives exactly kd_loss_compute's results. Further
 * statuses: KD_ERROR_ZERO_SIZE (no members), KD_ERROR_INVALID_ARGUMENT (a bad weight). */
KD_API kd_status kd_loss_compute_ensemble(kd_loss *loss, const float *student_logits,
                                          size_t student_stride, const float *const *members,
                                          size_t member_count, const float *member_weights,
                                          size_t member_stride, const int32_t *labels,
                                          size_t rows, size_t classes, float *values, float *grad,
                                          size_t grad_stride);

#ifdef __cplusplus
}
#endif

#endif /* KD_LOSS_H */
