/* The fused float kernels of the KL / cross-entropy loss (one logits teacher) and of the hard
 * loss: a portable C implementation and an AVX2 + FMA one, chosen at run time.
 * docs/math.md and docs/performance.md describe the formulation.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_LOSS_FAST_H
#define KD_LIB_LOSS_FAST_H

#include <stddef.h>
#include <stdint.h>

#include "kd/status.h"
#include "loss_row.h"

/* Bits reported by a kernel's check of one row (0: the row is valid). */
enum {
    KD_FAST_STUDENT_NONFINITE = 1, /* NaN or +INFINITY in the student's row */
    KD_FAST_STUDENT_MASKED = 2,    /* every class masked by the student */
    KD_FAST_TEACHER_NONFINITE = 4,
    KD_FAST_TEACHER_MASKED = 8,
    KD_FAST_MASK_MISFIT = 16 /* a class the student masks and the teacher keeps */
};

/* What the per-element passes need of one row. s_i = (z_i - zmax) inv_t, u_i = (v_i - vmax)
 * inv_t, a_i = ((v_i - z_i) - delta) inv_t = log q_i - log p_i up to a row constant, and
 * b_i = a_i - centre. */
typedef struct kd_fast_row_consts {
    float zmax, vmax, inv_t, delta, centre;
    int teacher, label; /* which terms the row computes */
} kd_fast_row_consts;

/* Sums over one row, in double. "rest" sums are sum_i e^x_i - 1 over the row's terms (the
 * maximum's own term, exactly 1, taken out so that a nearly one-hot row keeps its accuracy).
 * Teacher sums run over the classes with e^u_i > 0 (w_i = e^u_i). */
typedef struct kd_fast_row_sums {
    double student_rest; /* sum e^s - 1 */
    double teacher_rest; /* sum e^u - 1 */
    double hard_rest;    /* sum e^(z - zmax) - 1 */
    double wb;           /* sum w_i b_i */
    double wphi;         /* sum w_i phi(b_i), phi(b) = e^-b - 1 + b */
    double wu;           /* sum w_i u_i */
    double outside;      /* sum of e^s over the classes where w_i = 0 */
    int overflow;        /* some w_i > 0 has b_i < -KD_FAST_PHI_LIMIT */
} kd_fast_row_sums;

/* Below -KD_FAST_PHI_LIMIT, e^-b is not formed (float range); the row then takes the direct
 * formula. */
#define KD_FAST_PHI_LIMIT 80.0f

/* The gradient pass: g_i = soft (p_i - q_i) + hard p1_i with p_i = e^s_i inv_zs,
 * q_i = e^u_i inv_zq, p1_i = e^(z_i - zmax) inv_z1, and p - q formed as q expm1(-d_i) with
 * d_i = a_i - shift = log q_i - log p_i where |d_i| < 1/2. */
typedef struct kd_fast_grad_consts {
    float inv_zs, inv_zq, inv_z1, shift;
    float soft, hard; /* weights: soft_weight / t and hard_weight */
} kd_fast_grad_consts;

/* One implementation of the per-element passes. */
typedef struct kd_fast_kernels {
    const char *name;
    /* KD_FAST_* bits for a row of n student logits z and (v non-NULL) teacher logits v. */
    unsigned (*check)(const float *z, const float *v, size_t n);
    /* The largest z (and v when non-NULL); every row has an unmasked class. */
    void (*max)(const float *z, const float *v, size_t n, float *zmax, float *vmax);
    /* The first index i with x_i == value (which occurs). */
    size_t (*find)(const float *x, size_t n, float value);
    void (*sums)(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                 kd_fast_row_sums *out);
    /* Writes n gradient entries (grad may be z); v is read only when c->teacher. */
    void (*grad)(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                 const kd_fast_grad_consts *g, float *grad);
    /* out_i = e^x_i as the passes compute it (the benchmark measures its throughput). */
    void (*exp)(const float *x, size_t n, float *out);
} kd_fast_kernels;

/* The portable kernels, and the best ones this CPU runs (AVX2 + FMA on x86-64 if present). */
const kd_fast_kernels *kd_fast_portable(void);
const kd_fast_kernels *kd_fast_best(void);
#if defined(__x86_64__)
const kd_fast_kernels *kd_fast_avx2(void);
#endif

/* Scalar element functions shared by both implementations. */
/* The Taylor coefficients 1/k!, k = 2..9, of (e^x - 1 - x) / x^2, used for |x| < 1/2. */
enum { KD_FAST_TAIL_TERMS = 8 };
extern const float kd_fast_tail_coefficients[KD_FAST_TAIL_TERMS];
/* e^x in float, 0 below the float range (-87.3). */
float kd_fast_exp(float x);
/* phi(b) = e^-b - 1 + b >= 0 for b >= -KD_FAST_PHI_LIMIT. */
float kd_fast_phi(float b);
/* p - q = q expm1(-d) where |d| < 1/2, p - q otherwise (p, q >= 0). */
float kd_fast_difference(float p, float q, float d);

/* The row's loss (as kd_loss_row) with the given kernels: spec->divergence is KL or
 * cross-entropy; v the teacher's logits (NULL when !spec->has_teacher). */
void kd_fast_row(const kd_fast_kernels *k, const kd_row_spec *spec, const float *z,
                 const float *v, size_t n, int32_t label, double *soft, double *hard,
                 float *grad);

#endif /* KD_LIB_LOSS_FAST_H */
