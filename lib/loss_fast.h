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

/* What the check pass finds of one row: the maxima, and the first classes where the student's
 * (zfirst) and the teacher's (top) maxima occur. */
typedef struct kd_fast_row_info {
    float zmax, vmax;
    size_t zfirst, top;
    float absmax; /* the largest |x| over the unmasked logits of both rows */
} kd_fast_row_info;

/* Whether the float kernels can represent a row at temperature t: every unmasked logit,
 * divided by min(t, 1), within 2^16 of 0. Other rows (logits huge against t: their softmax is
 * saturated) take the double-precision path. A bound of 2^64 let a row with a student logit of
 * 5.6e10 at T = 1 through, whose KL gradient came out wrong (tests/fuzz/corpus/loss/
 * regression-kl-gradient-2e10). */
int kd_fast_row_fits(const kd_fast_row_info *info, double t);

/* What the per-element passes need of one row. s_i = (z_i - zmax) inv_t, u_i = (v_i - vmax)
 * inv_t, r_i = (v_i - z_i) - delta (rounded once: the float v_i - z_i alone may round away
 * the whole difference between p and q when the student's logits are the teacher's plus a
 * constant), a_i = r_i inv_t = log q_i - log p_i up to a row constant, and b_i = a_i - centre. */
typedef struct kd_fast_row_consts {
    float zmax, vmax, inv_t, centre;
    double delta; /* vmax - zmax (exact: two floats' difference within 2^-53) */
    size_t zfirst, vfirst; /* the first classes where z_i = zmax and v_i = vmax */
    int teacher, label;  /* which terms the row computes */
    int entropy;         /* also sum w u (cross-entropy's H(q)) */
    /* T = 2^squarings (0..3), so that e^(z - zmax) = (e^s)^T is squarings products away; -1
     * for any other T (then it is an exponential of its own) */
    int squarings;
} kd_fast_row_consts;

/* Sums over one row, in double. "rest" sums are sum_i e^x_i - 1 over the row's terms (the
 * maximum's own term, exactly 1, taken out so that a nearly one-hot row keeps its accuracy):
 * the sum over every class but the first where the maximum occurs (its ties count 1 each).
 * Teacher sums run over the classes with e^u_i > 0 (w_i = e^u_i). */
typedef struct kd_fast_row_sums {
    double student_rest; /* sum e^s - 1 */
    double teacher_rest; /* sum e^u - 1 */
    double hard_rest;    /* sum e^(z - zmax) - 1 */
    double wb;           /* sum w_i b_i */
    double wu;           /* sum w_i u_i (when consts.entropy) */
    double outside;      /* sum of e^s over the classes where w_i = 0 */
} kd_fast_row_sums;

/* Below -KD_FAST_PHI_LIMIT, e^-b is not formed (float range); the row then takes the direct
 * formula. Rows whose divergence the direct formula puts at KD_FAST_DIRECT_KL or more take
 * it anyway (its error, a few 1e-7 absolute from the float exponentials in the normalisers,
 * is then below 1e-5 relative); smaller ones take the phi form, whose terms never cancel. */
#define KD_FAST_DIRECT_KL 0.25
#define KD_FAST_PHI_LIMIT 80.0f

/* The gradient pass: g_i = soft (p_i - q_i) + hard p1_i with p_i = e^s_i inv_zs,
 * q_i = e^u_i inv_zq, p1_i = e^(z_i - zmax) inv_z1, and p - q formed as q expm1(-d_i) with
 * d_i = r_i inv_t - shift = log q_i - log p_i where |d_i| < 1/2. The sums pass keeps what the
 * later passes need in a store of 4 rows of n floats: e^s, e^u and r at offsets 0, n and 2n
 * (with a teacher), and e^(z - zmax) at 3n unless it is (e^s)^T by squarings. The later
 * passes read only the store (the row's logits may already be overwritten). */
enum { KD_FAST_STORE_ROWS = 4 };
typedef struct kd_fast_grad_consts {
    float inv_zs, inv_zq, inv_z1, shift;
    float soft, hard; /* weights: soft_weight / t and hard_weight */
    int stream;       /* the batch is larger than the caches: stores may bypass them */
} kd_fast_grad_consts;

/* One implementation of the per-element passes. */
typedef struct kd_fast_kernels {
    const char *name;
    /* KD_FAST_* bits for a row of n student logits z and (v non-NULL) teacher logits v; for a
     * valid row, *info (the teacher's part only when v is non-NULL). */
    unsigned (*check)(const float *z, const float *v, size_t n, kd_fast_row_info *info);
    /* The sums; fills `store` (KD_FAST_STORE_ROWS n floats). */
    void (*sums)(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                 kd_fast_row_sums *out, float *store);
    /* sum w_i phi(b_i), phi(b) = e^-b - 1 + b, b_i = r_i inv_t - centre, over the classes with
     * w_i > 0 (w and r from the store); *overflow: some such b_i < -KD_FAST_PHI_LIMIT (the sum
     * is then not used). */
    double (*phi)(size_t n, float inv_t, float centre, const float *store, int *overflow);
    /* Writes n gradient entries (grad may be z) from the store the sums pass filled. */
    void (*grad)(size_t n, const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                 const float *store, float *grad);
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
/* The Taylor coefficients 1/k!, k = 2..9, of (e^x - 1 - x) / x^2, enough for |x| < 1/2. */
enum { KD_FAST_TAIL_TERMS = 8 };
extern const float kd_fast_tail_coefficients[KD_FAST_TAIL_TERMS];
/* e^x in float, 0 below the float range (-87.3). */
float kd_fast_exp(float x);
/* phi(b) = e^-b - 1 + b >= 0 for b >= -KD_FAST_PHI_LIMIT. */
float kd_fast_phi(float b);
/* p - q = q expm1(-d) where |d| < 1/2, p - q otherwise (p, q >= 0). */
float kd_fast_difference(float p, float q, float d);

/* The row's loss (as kd_loss_row) with the given kernels: spec->divergence is KL or
 * cross-entropy; v the teacher's logits (NULL when !spec->has_teacher); info: the row's check
 * results, for which kd_fast_row_fits() holds; store: KD_FAST_STORE_ROWS n floats of scratch;
 * stream: the batch is larger than the caches. */
void kd_fast_row(const kd_fast_kernels *k, const kd_row_spec *spec, const float *z,
                 const float *v, size_t n, int32_t label, const kd_fast_row_info *info,
                 float *store, int stream, double *soft, double *hard, float *grad);

#endif /* KD_LIB_LOSS_FAST_H */
