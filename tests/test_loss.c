/* kd_loss_compute and kd_loss_compute_ensemble: values and gradients against an independent
 * long double reference, gradients against central finite differences of that reference, the
 * identities the header and docs promise, masks, teachers without labels and labels without
 * teachers, aliasing and strides. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

#include "support.h"

/* ------------------------------------------------------------------------------------------ */
/* The reference.
 *
 * Everything is evaluated in long double (x87 extended precision on x86-64: a 64-bit
 * significand, about 1e-19 relative, and an exponent range to e^+-11356), from the float inputs
 * exactly as given (a float converts to long double exactly). It is written from the
 * definitions in include/kd/loss.h, not from the library's code:
 *
 *   log p = z / T - lse(z / T)        lse by the largest entry plus log1p of the rest, with the
 *                                     shift z_i - z_max done before dividing by T, so that
 *                                     log p of the dominant class is -log1p(tail) and keeps its
 *                                     relative accuracy even when the tail is 1e-300;
 *   d_i   = log q_i - log p_i.
 *
 * Why this is trustworthy where the quantities are tiny (high T, where KL ~ 1e-8 for unit
 * logits at T = 1e4, or p ~ q):
 *   - Because sum p = sum q = 1, KL(q||p) = sum_i q_i (d_i + e^{-d_i} - 1): every term is >= 0
 *     (no cancellation between terms), and for |d_i| < 1/2 it is computed as
 *     q_i (d_i + expm1(-d_i)), whose own cancellation costs only a factor 2/|d_i| of the
 *     1e-19 rounding: about 2e-15 relative at |d| = 1e-4.
 *   - That form is stationary in a common error of d: an error delta in lse(z/T) - lse(v/T)
 *     (the only large cancellation, between two numbers of size log C) changes the sum by
 *     delta + e^{-delta} - 1 = O(delta^2) instead of O(delta). So KL is correct to ~1e-14
 *     relative or better for every input used here.
 *   - Reverse KL uses the mirror form sum p_i (e_i + expm1(-e_i)), e = -d; Jensen-Shannon uses
 *     KL(q||m) = sum q_i (u_i - log1p(u_i)) with u_i = m_i/q_i - 1 = (1-beta) expm1(-d_i) and
 *     KL(p||m) = sum p_i (w_i - log1p(w_i)) with w_i = beta expm1(d_i), again sums of
 *     nonnegative terms; for |d| >= 1/2 (no cancellation to fear) the plain formulas are used.
 *   - Gradients: (p - q) / T is computed as q expm1(-d) / T, exact to relative 1e-18 whatever
 *     the size of d; the hard gradient at the label is expm1(log p_y) (no 1 - p_y cancellation);
 *     the reverse-KL and JSD factors c_j - sum_i p_i c_i are taken relative to the most probable
 *     class (centre_on_dominant_class), so a nearly one-hot p at low T does not cancel them.
 *   - Spot checks against mpmath at 60-80 digits (a tiny JSD at T = 0.1, a 1e-14 reverse-KL
 *     gradient at T = 1e-3) agreed to every printed digit.
 * The analytic reference gradients are themselves checked against central differences of the
 * reference values (finite_differences below), and the values are checked against closed forms
 * in the identity tests. The library promises 1e-5 relative (1e-3 for reverse KL and JSD above
 * T = 100); this reference is many orders of magnitude tighter than that. */

typedef long double ld;

#define LD_NEG_INF (-(ld)INFINITY)

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    assert_non_null(p);
    return p;
}

#define NEW(type, n) ((type *)xmalloc((size_t)(n) * sizeof(type)))

typedef struct loss_config {
    kd_divergence divergence;
    double temperature;
    double alpha;
    double beta;
    int scale_t_squared;
    kd_reduction reduction;
    int32_t ignore_label;
    kd_teacher_kind teacher_kind;
    kd_ensemble_mode ensemble_mode;
} loss_config;

static loss_config make_config(kd_divergence d, double t, double alpha, kd_reduction r)
{
    loss_config c = {d, t, alpha, 0.5, 1, r, -100, KD_TEACHER_LOGITS, KD_ENSEMBLE_ARITHMETIC};
    return c;
}

/* log(e^a + e^b), either may be -inf. */
static ld log_add_exp(ld a, ld b)
{
    if (a == LD_NEG_INF)
        return b;
    if (b == LD_NEG_INF)
        return a;
    ld hi = a > b ? a : b, lo = a > b ? b : a;
    return hi + log1pl(expl(lo - hi));
}

/* out_i = x_i / t - log sum_j exp(x_j / t); -inf (a mask) stays -inf. The shift by the largest
 * entry happens before the division, and the dominant term of the sum is taken out of the
 * logarithm (log1p of the rest). */
static void ref_log_softmax(const ld *x, size_t n, ld t, ld *out)
{
    size_t top = n;
    for (size_t i = 0; i < n; i++)
        if (x[i] != LD_NEG_INF && (top == n || x[i] > x[top]))
            top = i;
    assert_true(top < n);
    ld rest = 0.0L;
    for (size_t i = 0; i < n; i++) {
        out[i] = x[i] == LD_NEG_INF ? LD_NEG_INF : (x[i] - x[top]) / t;
        if (i != top && x[i] != LD_NEG_INF)
            rest += expl(out[i]);
    }
    ld tail = log1pl(rest);
    for (size_t i = 0; i < n; i++)
        if (out[i] != LD_NEG_INF)
            out[i] -= tail;
}

/* KL(q || p) and its gradient (p - q) / T with respect to z. */
static ld ref_kl(const ld *lq, const ld *lp, size_t n, ld t, ld *g)
{
    ld sum = 0.0L;
    for (size_t i = 0; i < n; i++) {
        g[i] = 0.0L;
        if (lp[i] == LD_NEG_INF)
            continue; /* masked in both */
        ld p = expl(lp[i]);
        if (lq[i] == LD_NEG_INF) { /* q_i = 0: the term q log(q/p) is 0, its (p - q) part is p */
            sum += p;
            g[i] = p / t;
            continue;
        }
        ld q = expl(lq[i]), d = lq[i] - lp[i];
        if (fabsl(d) < 0.5L) {
            ld e = expm1l(-d);
            sum += q * (d + e);
            g[i] = q * e / t;
        } else {
            sum += q * d + p - q;
            g[i] = (p - q) / t;
        }
    }
    return sum;
}

/* -sum q log p (a sum of nonnegative terms); the gradient is KL's. */
static ld ref_cross_entropy(const ld *lq, const ld *lp, size_t n, ld t, ld *g)
{
    (void)ref_kl(lq, lp, n, t, g);
    ld sum = 0.0L;
    for (size_t i = 0; i < n; i++)
        if (lq[i] != LD_NEG_INF)
            sum -= expl(lq[i]) * lp[i];
    return sum;
}

/* For a function sum_i p_i c_i of p = softmax(z / T), given c (in g): replaces g by the
 * gradient p_j (c_j - sum_i p_i c_i) / T. Written as p_j (b_j - sum_i p_i b_i) / T with
 * b_i = c_i - c_k for the most probable class k (equal since sum p = 1): when p is nearly
 * one-hot, c_k - sum_i p_i c_i is a tiny difference of two large numbers (|c| ~ |z - v| / T at
 * low T), while sum_i p_i b_i is a sum of small products computed to full relative accuracy. */
static void centre_on_dominant_class(const ld *lp, size_t n, ld t, ld *g)
{
    size_t k = n;
    for (size_t i = 0; i < n; i++)
        if (lp[i] != LD_NEG_INF && (k == n || lp[i] > lp[k]))
            k = i;
    ld c_k = g[k], mean = 0.0L;
    for (size_t i = 0; i < n; i++)
        if (lp[i] != LD_NEG_INF && i != k)
            mean += expl(lp[i]) * (g[i] - c_k);
    for (size_t i = 0; i < n; i++)
        g[i] = lp[i] == LD_NEG_INF ? 0.0L : expl(lp[i]) * ((i == k ? 0.0L : g[i] - c_k) - mean) / t;
}

/* KL(p || q); d/dz_j = p_j (log(p_j / q_j) - KL(p || q)) / T. */
static ld ref_reverse_kl(const ld *lq, const ld *lp, size_t n, ld t, ld *g)
{
    ld sum = 0.0L;
    for (size_t i = 0; i < n; i++) {
        g[i] = 0.0L;
        if (lp[i] == LD_NEG_INF)
            continue;
        assert_true(lq[i] != LD_NEG_INF);
        ld p = expl(lp[i]), q = expl(lq[i]), e = lp[i] - lq[i];
        sum += fabsl(e) < 0.5L ? p * (e + expm1l(-e)) : p * e + q - p;
        g[i] = e;
    }
    centre_on_dominant_class(lp, n, t, g);
    return sum;
}

/* beta KL(q || m) + (1 - beta) KL(p || m), m = beta q + (1 - beta) p. With
 * c_k = dJSD/dp_k = (1 - beta) log(p_k / m_k) (the other terms cancel since sum m = 1), the
 * gradient is d/dz_j = p_j (c_j - sum_k p_k c_k) / T. */
static ld ref_jensen_shannon(const ld *lq, const ld *lp, size_t n, ld t, ld beta, ld *g)
{
    for (size_t i = 0; i < n; i++)
        g[i] = 0.0L;
    if (beta == 0.0L || beta == 1.0L)
        return 0.0L;
    ld kl_qm = 0.0L, kl_pm = 0.0L;
    for (size_t i = 0; i < n; i++) {
        if (lp[i] == LD_NEG_INF && lq[i] == LD_NEG_INF)
            continue;
        ld p = lp[i] == LD_NEG_INF ? 0.0L : expl(lp[i]);
        ld q = lq[i] == LD_NEG_INF ? 0.0L : expl(lq[i]);
        if (lp[i] != LD_NEG_INF && lq[i] != LD_NEG_INF && fabsl(lq[i] - lp[i]) < 0.5L) {
            ld d = lq[i] - lp[i];
            ld u = (1.0L - beta) * expm1l(-d); /* m / q - 1 */
            ld w = beta * expm1l(d);           /* m / p - 1 */
            kl_qm += q * (u - log1pl(u));
            kl_pm += p * (w - log1pl(w));
            g[i] = -(1.0L - beta) * log1pl(w);
        } else {
            ld lm = log_add_exp(lq[i] == LD_NEG_INF ? LD_NEG_INF : logl(beta) + lq[i],
                                lp[i] == LD_NEG_INF ? LD_NEG_INF : logl(1.0L - beta) + lp[i]);
            ld m = expl(lm);
            kl_qm += (lq[i] == LD_NEG_INF ? 0.0L : q * (lq[i] - lm)) + m - q;
            kl_pm += (lp[i] == LD_NEG_INF ? 0.0L : p * (lp[i] - lm)) + m - p;
            g[i] = lp[i] == LD_NEG_INF ? 0.0L : (1.0L - beta) * (lp[i] - lm);
        }
    }
    centre_on_dominant_class(lp, n, t, g);
    return beta * kl_qm + (1.0L - beta) * kl_pm;
}

/* sum_i (z_i - v_i)^2 / (2 C T^2) over the C unmasked classes. */
static ld ref_logit_mse(const ld *z, const ld *v, size_t n, ld t, ld *g)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += z[i] != LD_NEG_INF;
    ld denominator = (ld)c * t * t, sum = 0.0L;
    for (size_t i = 0; i < n; i++) {
        g[i] = 0.0L;
        if (z[i] == LD_NEG_INF)
            continue;
        ld d = z[i] - v[i];
        sum += d * d;
        g[i] = d / denominator;
    }
    return sum / (2.0L * denominator);
}

/* -log softmax(z)_y at T = 1 and its gradient softmax(z) - onehot(y). */
static ld ref_hard(const ld *z, size_t n, int32_t label, ld *g, ld *scratch)
{
    ref_log_softmax(z, n, 1.0L, scratch);
    for (size_t i = 0; i < n; i++)
        g[i] = scratch[i] == LD_NEG_INF ? 0.0L : expl(scratch[i]);
    g[label] = expm1l(scratch[label]);
    return -scratch[label];
}

/* One row: out[TOTAL, SOFT, HARD] and g = d total / dz (unreduced). lq: log soft targets, or
 * NULL for no teacher; v: teacher logits (logit matching only). */
static void ref_row(const loss_config *c, const ld *z, const ld *lq, const ld *v, size_t n,
                    int has_label, int32_t label, ld *out, ld *g)
{
    ld t = (ld)c->temperature;
    ld soft_weight = (ld)c->alpha * (c->scale_t_squared ? t * t : 1.0L);
    ld hard_weight = 1.0L - (ld)c->alpha;
    ld *lp = NEW(ld, n), *gs = NEW(ld, n), *gh = NEW(ld, n);
    ld soft = 0.0L, hard = 0.0L;
    for (size_t i = 0; i < n; i++)
        gs[i] = gh[i] = 0.0L;
    if (lq != NULL) {
        ref_log_softmax(z, n, t, lp);
        switch (c->divergence) {
        case KD_DIVERGENCE_KL: soft = ref_kl(lq, lp, n, t, gs); break;
        case KD_DIVERGENCE_CROSS_ENTROPY: soft = ref_cross_entropy(lq, lp, n, t, gs); break;
        case KD_DIVERGENCE_REVERSE_KL: soft = ref_reverse_kl(lq, lp, n, t, gs); break;
        case KD_DIVERGENCE_JENSEN_SHANNON:
            soft = ref_jensen_shannon(lq, lp, n, t, (ld)c->beta, gs);
            break;
        case KD_DIVERGENCE_LOGIT_MSE:
            assert_non_null(v);
            soft = ref_logit_mse(z, v, n, t, gs);
            break;
        default: fail_msg("unknown divergence %d", (int)c->divergence);
        }
    }
    if (has_label)
        hard = ref_hard(z, n, label, gh, lp);
    out[KD_LOSS_VALUE_TOTAL] = soft_weight * soft + hard_weight * hard;
    out[KD_LOSS_VALUE_SOFT] = soft;
    out[KD_LOSS_VALUE_HARD] = hard;
    if (g != NULL)
        for (size_t i = 0; i < n; i++)
            g[i] = soft_weight * gs[i] + hard_weight * gh[i];
    free(gh);
    free(gs);
    free(lp);
}

static int row_counts(const loss_config *c, const int32_t *labels, size_t r)
{
    return labels == NULL || labels[r] != c->ignore_label;
}

static size_t counted_rows(const loss_config *c, const int32_t *labels, size_t rows)
{
    size_t n = 0;
    for (size_t r = 0; r < rows; r++)
        n += (size_t)row_counts(c, labels, r);
    return n;
}

static size_t value_count(const loss_config *c, size_t rows)
{
    return c->reduction == KD_REDUCTION_NONE ? rows * KD_LOSS_VALUE_COUNT : KD_LOSS_VALUE_COUNT;
}

/* The batch: values (3, or rows x 3 for NONE) and grad (rows x n packed, may be NULL). Rows
 * that do not count are not read. */
static void ref_batch(const loss_config *c, const ld *z, const ld *lq, const ld *v,
                      const int32_t *labels, size_t rows, size_t n, ld *values, ld *grad)
{
    size_t counted = counted_rows(c, labels, rows);
    ld scale = c->reduction == KD_REDUCTION_MEAN && counted > 0 ? 1.0L / (ld)counted : 1.0L;
    for (size_t k = 0; k < value_count(c, rows); k++)
        values[k] = 0.0L;
    for (size_t r = 0; r < rows; r++) {
        ld *g = grad != NULL ? grad + r * n : NULL;
        if (!row_counts(c, labels, r)) {
            for (size_t i = 0; g != NULL && i < n; i++)
                g[i] = 0.0L;
            continue;
        }
        ld row[KD_LOSS_VALUE_COUNT];
        ref_row(c, z + r * n, lq != NULL ? lq + r * n : NULL, v != NULL ? v + r * n : NULL, n,
                labels != NULL, labels != NULL ? labels[r] : 0, row, g);
        for (size_t i = 0; g != NULL && i < n; i++)
            g[i] *= scale;
        for (size_t k = 0; k < KD_LOSS_VALUE_COUNT; k++) {
            if (c->reduction == KD_REDUCTION_NONE)
                values[r * KD_LOSS_VALUE_COUNT + k] = row[k];
            else
                values[k] += row[k];
        }
    }
    if (c->reduction != KD_REDUCTION_NONE)
        for (size_t k = 0; k < KD_LOSS_VALUE_COUNT; k++)
            values[k] *= scale;
}

/* The reduced total as one number (NONE: the sum of the rows' totals, whose gradient the
 * library returns). */
static ld ref_total(const loss_config *c, const ld *z, const ld *lq, const ld *v,
                    const int32_t *labels, size_t rows, size_t n)
{
    ld *values = NEW(ld, value_count(c, rows));
    ref_batch(c, z, lq, v, labels, rows, n, values, NULL);
    ld total = 0.0L;
    if (c->reduction == KD_REDUCTION_NONE)
        for (size_t r = 0; r < rows; r++)
            total += values[r * KD_LOSS_VALUE_COUNT + KD_LOSS_VALUE_TOTAL];
    else
        total = values[KD_LOSS_VALUE_TOTAL];
    free(values);
    return total;
}

/* Inputs in long double, packed. */
static ld *to_ld(const float *x, size_t rows, size_t classes, size_t stride)
{
    ld *out = NEW(ld, rows * classes);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < classes; i++)
            out[r * classes + i] = (ld)x[r * stride + i];
    return out;
}

static ld *ref_log_targets_from_logits(const float *v, size_t rows, size_t classes,
                                       size_t stride, double t)
{
    ld *x = to_ld(v, rows, classes, stride), *out = NEW(ld, rows * classes);
    for (size_t r = 0; r < rows; r++)
        ref_log_softmax(x + r * classes, classes, (ld)t, out + r * classes);
    free(x);
    return out;
}

/* log(q_i / sum_j q_j): the library renormalises a probabilities teacher. 0 masks. */
static ld *ref_log_targets_from_probabilities(const float *q, size_t rows, size_t classes,
                                              size_t stride)
{
    ld *out = NEW(ld, rows * classes);
    for (size_t r = 0; r < rows; r++) {
        ld sum = 0.0L;
        for (size_t i = 0; i < classes; i++)
            sum += (ld)q[r * stride + i];
        for (size_t i = 0; i < classes; i++) {
            float x = q[r * stride + i];
            out[r * classes + i] = x == 0.0f ? LD_NEG_INF : logl((ld)x) - logl(sum);
        }
    }
    return out;
}

static ld *ref_log_targets(const loss_config *c, const float *teacher, size_t rows,
                           size_t classes, size_t stride)
{
    if (teacher == NULL)
        return NULL;
    if (c->teacher_kind == KD_TEACHER_LOGITS)
        return ref_log_targets_from_logits(teacher, rows, classes, stride, c->temperature);
    return ref_log_targets_from_probabilities(teacher, rows, classes, stride);
}

/* An ensemble's log soft targets. Arithmetic: log sum_m w_m q_m. Geometric: log softmax of
 * sum_m w_m l_m, with l_m = v_m / T for logits members and log q_m for probabilities members.
 * Members of weight 0 are not read. */
static ld *ref_log_targets_ensemble(const loss_config *c, const float *const *members,
                                    size_t count, const float *weights, size_t rows,
                                    size_t classes)
{
    ld *w = NEW(ld, count), sum = 0.0L;
    for (size_t m = 0; m < count; m++)
        sum += w[m] = weights != NULL ? (ld)weights[m] : 1.0L;
    for (size_t m = 0; m < count; m++)
        w[m] /= sum;
    ld *out = NEW(ld, rows * classes);
    int logits = c->teacher_kind == KD_TEACHER_LOGITS;
    if (c->ensemble_mode == KD_ENSEMBLE_ARITHMETIC) {
        for (size_t e = 0; e < rows * classes; e++)
            out[e] = LD_NEG_INF;
        for (size_t m = 0; m < count; m++) {
            if (w[m] == 0.0L)
                continue;
            ld *lq = ref_log_targets(c, members[m], rows, classes, classes);
            for (size_t e = 0; e < rows * classes; e++)
                if (lq[e] != LD_NEG_INF)
                    out[e] = log_add_exp(out[e], logl(w[m]) + lq[e]);
            free(lq);
        }
    } else {
        ld *mean = NEW(ld, rows * classes);
        for (size_t e = 0; e < rows * classes; e++)
            mean[e] = 0.0L;
        for (size_t m = 0; m < count; m++) {
            if (w[m] == 0.0L)
                continue;
            ld *l = logits ? to_ld(members[m], rows, classes, classes)
                           : ref_log_targets_from_probabilities(members[m], rows, classes, classes);
            for (size_t e = 0; e < rows * classes; e++)
                mean[e] = l[e] == LD_NEG_INF || mean[e] == LD_NEG_INF ? LD_NEG_INF
                                                                      : mean[e] + w[m] * l[e];
            free(l);
        }
        for (size_t r = 0; r < rows; r++)
            ref_log_softmax(mean + r * classes, classes, logits ? (ld)c->temperature : 1.0L,
                            out + r * classes);
        free(mean);
    }
    free(w);
    return out;
}

/* ------------------------------------------------------------------------------------------ */
/* The library side and comparisons. */

static const char *divergence_name(kd_divergence d)
{
    switch (d) {
    case KD_DIVERGENCE_KL: return "KL";
    case KD_DIVERGENCE_CROSS_ENTROPY: return "CE";
    case KD_DIVERGENCE_REVERSE_KL: return "reverse-KL";
    case KD_DIVERGENCE_JENSEN_SHANNON: return "JSD";
    case KD_DIVERGENCE_LOGIT_MSE: return "logit-MSE";
    default: return "?";
    }
}

static const char *reduction_name(kd_reduction r)
{
    return r == KD_REDUCTION_MEAN ? "MEAN" : r == KD_REDUCTION_SUM ? "SUM" : "NONE";
}

static void describe(char *buffer, size_t size, const loss_config *c, const char *what,
                     size_t rows, size_t classes)
{
    snprintf(buffer, size,
             "%s [%s beta=%g T=%g alpha=%g T^2-scaling=%d %s ignore=%d teacher=%s "
             "ensemble=%s rows=%zu classes=%zu]",
             what, divergence_name(c->divergence), c->beta, c->temperature, c->alpha,
             c->scale_t_squared, reduction_name(c->reduction), (int)c->ignore_label,
             c->teacher_kind == KD_TEACHER_LOGITS ? "logits" : "probabilities",
             c->ensemble_mode == KD_ENSEMBLE_ARITHMETIC ? "arithmetic" : "geometric", rows,
             classes);
}

static void configure(kd_loss *loss, const loss_config *c)
{
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, c->temperature), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, c->alpha), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, (double)c->divergence), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_SCALE_T_SQUARED, (double)c->scale_t_squared),
                     KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_REDUCTION, (double)c->reduction), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_IGNORE_LABEL, (double)c->ignore_label),
                     KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_JSD_BETA, c->beta), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEACHER_KIND, (double)c->teacher_kind),
                     KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ENSEMBLE_MODE, (double)c->ensemble_mode),
                     KD_OK);
}

static kd_loss *new_loss(void)
{
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_non_null(loss);
    return loss;
}

static void expect_ok(kd_status status, const char *ctx)
{
    if (status != KD_OK)
        fail_msg("%s: status %d (%s)", ctx, (int)status, kd_status_string(status));
}

/* Mismatches against the reference are reported one by one (the first few dozen printed) and
 * fail the test at its end, so that one run shows every failing case. */
static int mismatches;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void mismatch(const char *format, ...)
{
    char message[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(message, sizeof message, format, args);
    va_end(args);
    if (mismatches < 40)
        print_error("MISMATCH: %s\n", message);
    mismatches++;
}

static int reset_mismatches(void **state)
{
    (void)state;
    mismatches = 0;
    return 0;
}

static void expect_no_mismatch(void)
{
    int count = mismatches;
    mismatches = 0;
    if (count > 0)
        fail_msg("%d mismatch(es) against the reference (the first ones listed above)", count);
}

/* The accuracy the header promises: 1e-5 relative, except reverse KL and JSD above T = 100. */
static double promised_tolerance(kd_divergence d, double t)
{
    int loose = (d == KD_DIVERGENCE_REVERSE_KL || d == KD_DIVERGENCE_JENSEN_SHANNON) && t > 100.0;
    return loose ? 1e-3 : 1e-5;
}

/* Norm-wise relative error of a gradient (grad_stride) against a packed reference, with an
 * absolute floor far below anything a float64 evaluation can resolve (1e-13 of the size of the
 * gradient of a unit mismatch), so that an exactly-cancelling row cannot demand more than
 * float64 does. */
static ld gradient_error(const loss_config *c, const float *grad, size_t grad_stride,
                         const ld *want, size_t rows, size_t classes, size_t counted,
                         ld *reference_norm, ld *floor)
{
    ld t = (ld)c->temperature;
    ld s = c->scale_t_squared ? t * t : 1.0L;
    ld unit = (ld)c->alpha * s / t + (1.0L - (ld)c->alpha);
    if (c->reduction == KD_REDUCTION_MEAN && counted > 0)
        unit /= (ld)counted;
    ld num = 0.0L, den = 0.0L;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < classes; i++) {
            ld d = (ld)grad[r * grad_stride + i] - want[r * classes + i];
            num += d * d;
            den += want[r * classes + i] * want[r * classes + i];
        }
    *reference_norm = sqrtl(den);
    *floor = 1e-13L * unit + 1e-37L;
    return sqrtl(num);
}

/* Compares the library's outputs with the reference: every value within tol relative, the
 * gradient within tol norm-wise, nothing NaN, and exactly 0 gradient in rows that do not count
 * and at classes the student masks. */
static void compare_outputs(const char *ctx, const loss_config *c, const ld *z,
                            const int32_t *labels, size_t rows, size_t classes,
                            const float *values, const ld *want_values, const float *grad,
                            size_t grad_stride, const ld *want_grad, double tol)
{
    static const char *const names[] = {"total", "soft", "hard"};
    if (values != NULL) {
        for (size_t k = 0; k < value_count(c, rows); k++) {
            float got = values[k];
            ld want = want_values[k];
            const char *name = names[k % KD_LOSS_VALUE_COUNT];
            size_t row = k / KD_LOSS_VALUE_COUNT;
            if (!isfinite(got))
                mismatch("%s: value %s (row %zu) is %g, want %.12Lg", ctx, name, row,
                         (double)got, want);
            ld err = fabsl((ld)got - want);
            if (err > (ld)tol * fabsl(want) + 1e-37L)
                mismatch("%s: value %s (row %zu): got %.9g, want %.15Lg (relative error %.3Lg, "
                         "allowed %g)",
                         ctx, name, row, (double)got, want, want != 0 ? err / fabsl(want) : err,
                         tol);
        }
    }
    if (grad != NULL) {
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < classes; i++) {
                float g = grad[r * grad_stride + i];
                if (!isfinite(g)) {
                    mismatch("%s: gradient [%zu][%zu] is %g", ctx, r, i, (double)g);
                    return;
                }
                if (!row_counts(c, labels, r) && g != 0.0f) {
                    mismatch("%s: gradient [%zu][%zu] = %g in a row that does not count", ctx, r,
                             i, (double)g);
                    return;
                }
                if (z[r * classes + i] == LD_NEG_INF && g != 0.0f) {
                    mismatch("%s: gradient [%zu][%zu] = %g at a masked class", ctx, r, i,
                             (double)g);
                    return;
                }
            }
        ld norm, floor;
        ld err = gradient_error(c, grad, grad_stride, want_grad, rows, classes,
                                counted_rows(c, labels, rows), &norm, &floor);
        if (err > (ld)tol * norm + floor)
            mismatch("%s: gradient relative error %.3Lg (|g_ref| = %.6Lg), allowed %g", ctx,
                     norm > 0 ? err / norm : err, norm, tol);
    }
}

typedef struct outputs {
    float *values;
    float *grad;
} outputs;

static outputs new_outputs(const loss_config *c, size_t rows, size_t classes)
{
    outputs o = {NEW(float, value_count(c, rows)), NEW(float, rows * classes)};
    kd_test_fill_sentinel(o.values, value_count(c, rows));
    kd_test_fill_sentinel(o.grad, rows * classes);
    return o;
}

static void free_outputs(outputs *o)
{
    free(o->values);
    free(o->grad);
}

/* kd_loss_compute on packed inputs, against the reference. teacher holds what c->teacher_kind
 * says, or is NULL. */
static void check_against_reference(kd_loss *loss, const loss_config *c, const float *z,
                                    const float *teacher, const int32_t *labels, size_t rows,
                                    size_t classes, double tol, const char *what)
{
    char ctx[512];
    describe(ctx, sizeof ctx, c, what, rows, classes);
    configure(loss, c);
    outputs o = new_outputs(c, rows, classes);
    expect_ok(kd_loss_compute(loss, z, classes, teacher, classes, labels, rows, classes, o.values,
                              o.grad, classes),
              ctx);

    ld *zl = to_ld(z, rows, classes, classes);
    ld *lq = ref_log_targets(c, teacher, rows, classes, classes);
    ld *vl = teacher != NULL && c->teacher_kind == KD_TEACHER_LOGITS
                 ? to_ld(teacher, rows, classes, classes)
                 : NULL;
    ld *want_values = NEW(ld, value_count(c, rows)), *want_grad = NEW(ld, rows * classes);
    ref_batch(c, zl, lq, vl, labels, rows, classes, want_values, want_grad);
    compare_outputs(ctx, c, zl, labels, rows, classes, o.values, want_values, o.grad, classes,
                    want_grad, tol);
    free(want_grad);
    free(want_values);
    free(vl);
    free(lq);
    free(zl);
    free_outputs(&o);
}

static void fill_normal(float *x, size_t n, double scale, kd_test_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * kd_test_normal(rng));
}

/* Rows with (nearly) zero mean, as the logit-matching limit assumes. */
static void fill_zero_mean(float *x, size_t rows, size_t classes, kd_test_rng *rng)
{
    double *row = NEW(double, classes);
    for (size_t r = 0; r < rows; r++) {
        double mean = 0.0;
        for (size_t i = 0; i < classes; i++)
            mean += row[i] = kd_test_normal(rng);
        mean /= (double)classes;
        for (size_t i = 0; i < classes; i++)
            x[r * classes + i] = (float)(row[i] - mean);
    }
    free(row);
}

static void fill_labels(int32_t *labels, size_t rows, size_t classes, kd_test_rng *rng)
{
    for (size_t r = 0; r < rows; r++)
        labels[r] = (int32_t)(kd_test_rng_next(rng) % classes);
}

static double norm_difference(const float *a, const float *b, size_t n, double *norm_b)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * (double)b[i];
    }
    *norm_b = sqrt(den);
    return sqrt(num);
}

static double relative_difference(const float *a, const float *b, size_t n)
{
    double norm_b;
    double diff = norm_difference(a, b, n, &norm_b);
    return norm_b > 0.0 ? diff / norm_b : diff;
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static const double every_temperature[] = {1e-3, 0.1, 1.0, 4.0, 20.0, 100.0, 1e3, 1e4};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ------------------------------------------------------------------------------------------ */
/* 1-2. Values and gradients against the reference. */

static void random_logits_every_temperature(void **state)
{
    (void)state;
    static const size_t shapes[][2] = {{4, 2}, {5, 7}, {3, 100}, {2, 1000}};
    static const double scales[] = {1.0, 10.0};
    static const struct {
        kd_divergence divergence;
        double beta;
    } divergences[] = {
        {KD_DIVERGENCE_KL, 0.5},
        {KD_DIVERGENCE_CROSS_ENTROPY, 0.5},
        {KD_DIVERGENCE_REVERSE_KL, 0.5},
        {KD_DIVERGENCE_JENSEN_SHANNON, 0.5},
        {KD_DIVERGENCE_JENSEN_SHANNON, 0.3},
        {KD_DIVERGENCE_LOGIT_MSE, 0.5},
    };
    /* Soft only (no labels); the combined loss with an ignored row; SUM without T^2; NONE. */
    static const struct {
        double alpha;
        kd_reduction reduction;
        int scale_t_squared;
        int with_labels;
    } setups[] = {
        {1.0, KD_REDUCTION_MEAN, 1, 0},
        {0.5, KD_REDUCTION_MEAN, 1, 1},
        {0.3, KD_REDUCTION_SUM, 0, 1},
        {0.7, KD_REDUCTION_NONE, 1, 1},
    };
    kd_loss *loss = new_loss();
    kd_test_rng rng = {20240601};
    for (size_t s = 0; s < COUNT(shapes); s++) {
        size_t rows = shapes[s][0], classes = shapes[s][1];
        float *z = NEW(float, rows * classes), *v = NEW(float, rows * classes);
        int32_t *labels = NEW(int32_t, rows);
        for (size_t k = 0; k < COUNT(scales); k++) {
            fill_normal(z, rows * classes, scales[k], &rng);
            fill_normal(v, rows * classes, scales[k], &rng);
            fill_labels(labels, rows, classes, &rng);
            if (rows >= 3)
                labels[1] = -100;
            char what[64];
            snprintf(what, sizeof what, "random logits, scale %g", scales[k]);
            for (size_t ti = 0; ti < COUNT(every_temperature); ti++)
                for (size_t d = 0; d < COUNT(divergences); d++)
                    for (size_t u = 0; u < COUNT(setups); u++) {
                        loss_config c = make_config(divergences[d].divergence,
                                                    every_temperature[ti], setups[u].alpha,
                                                    setups[u].reduction);
                        c.beta = divergences[d].beta;
                        c.scale_t_squared = setups[u].scale_t_squared;
                        check_against_reference(
                            loss, &c, z, v, setups[u].with_labels ? labels : NULL, rows, classes,
                            promised_tolerance(c.divergence, c.temperature), what);
                    }
        }
        free(labels);
        free(v);
        free(z);
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

static void many_classes(void **state)
{
    (void)state;
    enum { rows = 2, classes = 256000 };
    float *z = NEW(float, rows * classes), *v = NEW(float, rows * classes);
    kd_test_rng rng = {256000};
    fill_normal(z, rows * classes, 1.0, &rng);
    fill_normal(v, rows * classes, 1.0, &rng);
    int32_t labels[rows] = {12345, 255999};
    static const double temperatures[] = {1e-3, 1.0, 1e4};
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++) {
        loss_config soft = make_config(KD_DIVERGENCE_KL, temperatures[ti], 1.0, KD_REDUCTION_MEAN);
        check_against_reference(loss, &soft, z, v, NULL, rows, classes, 1e-5, "256k classes");
        loss_config combined =
            make_config(KD_DIVERGENCE_KL, temperatures[ti], 0.5, KD_REDUCTION_NONE);
        check_against_reference(loss, &combined, z, v, labels, rows, classes, 1e-5,
                                "256k classes");
    }
    loss_config ce = make_config(KD_DIVERGENCE_CROSS_ENTROPY, 1e4, 0.9, KD_REDUCTION_SUM);
    check_against_reference(loss, &ce, z, v, labels, rows, classes, 1e-5, "256k classes");
    kd_loss_destroy(loss);
    free(v);
    free(z);
    expect_no_mismatch();
}

/* ------------------------------------------------------------------------------------------ */
/* 3. Gradients against central differences of the reference loss. */

static void finite_differences(void **state)
{
    (void)state;
    enum { rows = 3, classes = 5 };
    static const struct {
        kd_divergence divergence;
        double beta;
    } divergences[] = {
        {KD_DIVERGENCE_KL, 0.5},
        {KD_DIVERGENCE_CROSS_ENTROPY, 0.5},
        {KD_DIVERGENCE_REVERSE_KL, 0.5},
        {KD_DIVERGENCE_JENSEN_SHANNON, 0.5},
        {KD_DIVERGENCE_JENSEN_SHANNON, 0.2},
        {KD_DIVERGENCE_LOGIT_MSE, 0.5},
    };
    static const double temperatures[] = {0.25, 1.0, 4.0, 50.0};
    static const kd_reduction reductions[] = {KD_REDUCTION_MEAN, KD_REDUCTION_SUM,
                                              KD_REDUCTION_NONE};
    static const double alphas[] = {0.0, 0.3, 1.0};
    const int32_t all_count[rows] = {2, 0, 4};
    const int32_t one_ignored[rows] = {2, -100, 4};
    float z[rows * classes], v[rows * classes];
    kd_test_rng rng = {31337};
    fill_normal(z, rows * classes, 1.5, &rng);
    fill_normal(v, rows * classes, 1.5, &rng);
    /* Class 3 of row 2 masked in both. */
    z[2 * classes + 3] = -INFINITY;
    v[2 * classes + 3] = -INFINITY;

    kd_loss *loss = new_loss();
    ld *zl = to_ld(z, rows, classes, classes), *vl = to_ld(v, rows, classes, classes);
    ld *fd = NEW(ld, rows * classes), *want_grad = NEW(ld, rows * classes);
    ld *want_values = NEW(ld, rows * KD_LOSS_VALUE_COUNT);
    for (size_t d = 0; d < COUNT(divergences); d++)
        for (size_t ti = 0; ti < COUNT(temperatures); ti++)
            for (size_t ri = 0; ri < COUNT(reductions); ri++)
                for (size_t ai = 0; ai < COUNT(alphas); ai++)
                    for (int ignored = 0; ignored <= 1; ignored++) {
                        const int32_t *labels = ignored ? one_ignored : all_count;
                        loss_config c = make_config(divergences[d].divergence, temperatures[ti],
                                                    alphas[ai], reductions[ri]);
                        c.beta = divergences[d].beta;
                        char ctx[512];
                        describe(ctx, sizeof ctx, &c,
                                 ignored ? "finite differences, an ignored row"
                                         : "finite differences",
                                 rows, classes);
                        configure(loss, &c);
                        outputs o = new_outputs(&c, rows, classes);
                        expect_ok(kd_loss_compute(loss, z, classes, v, classes, labels, rows,
                                                  classes, o.values, o.grad, classes),
                                  ctx);
                        ld *lq = ref_log_targets(&c, v, rows, classes, classes);
                        ref_batch(&c, zl, lq, vl, labels, rows, classes, want_values, want_grad);
                        compare_outputs(ctx, &c, zl, labels, rows, classes, o.values,
                                        want_values, NULL, classes, NULL, 1e-5);

                        /* The soft term depends on z / T and the hard one on z: a step small
                         * against both, h = 1e-5 min(T, 1), makes the O((h/T)^2) truncation
                         * ~1e-10 relative, while long double keeps the rounding of the
                         * difference quotient near 1e-19 |L| / h ~ 1e-13. */
                        ld h = 1e-5L * fminl((ld)c.temperature, 1.0L);
                        for (size_t e = 0; e < rows * classes; e++) {
                            fd[e] = 0.0L;
                            if (zl[e] == LD_NEG_INF)
                                continue;
                            ld keep = zl[e];
                            zl[e] = keep + h;
                            ld up_step = zl[e] - keep;
                            ld up = ref_total(&c, zl, lq, vl, labels, rows, classes);
                            zl[e] = keep - h;
                            ld down_step = keep - zl[e];
                            ld down = ref_total(&c, zl, lq, vl, labels, rows, classes);
                            zl[e] = keep;
                            fd[e] = (up - down) / (up_step + down_step);
                        }
                        ld norm, floor;
                        ld err = gradient_error(&c, o.grad, classes, fd, rows, classes,
                                                counted_rows(&c, labels, rows), &norm, &floor);
                        if (err > 1e-5L * norm + floor)
                            mismatch("%s: library gradient vs central differences: relative "
                                     "error %.3Lg (|fd| = %.6Lg)",
                                     ctx, norm > 0 ? err / norm : err, norm);
                        for (size_t r = 0; r < rows; r++)
                            for (size_t i = 0; i < classes; i++)
                                if ((!row_counts(&c, labels, r) || z[r * classes + i] == -INFINITY)
                                    && o.grad[r * classes + i] != 0.0f)
                                    mismatch("%s: gradient [%zu][%zu] = %g, want exactly 0", ctx,
                                             r, i, (double)o.grad[r * classes + i]);
                        /* The analytic reference gradient (used everywhere else) agrees with the
                         * reference's own central differences, far below the tolerances. */
                        ld num = 0.0L;
                        for (size_t e = 0; e < rows * classes; e++)
                            num += (want_grad[e] - fd[e]) * (want_grad[e] - fd[e]);
                        if (sqrtl(num) > 1e-8L * norm + floor)
                            mismatch("%s: reference gradient vs central differences: %.3Lg", ctx,
                                     sqrtl(num) / norm);
                        free(lq);
                        free_outputs(&o);
                    }
    free(want_values);
    free(want_grad);
    free(fd);
    free(vl);
    free(zl);
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* ------------------------------------------------------------------------------------------ */
/* 4. Identities. */

/* Runs one packed call and returns its status; o receives values and gradient. */
static kd_status run(kd_loss *loss, const loss_config *c, const float *z, const float *teacher,
                     const int32_t *labels, size_t rows, size_t classes, outputs *o)
{
    configure(loss, c);
    return kd_loss_compute(loss, z, classes, teacher, classes, labels, rows, classes, o->values,
                           o->grad, classes);
}

static double vector_norm(const float *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * (double)x[i];
    return sqrt(s);
}

/* (a) With T^2 scaling, alpha T^2 (p - q) / T tends to alpha (z - v) / C: the soft gradient
 * stops depending on T at high T. Without the scaling it shrinks as 1/T^2. */
static void t_squared_keeps_the_gradient_scale(void **state)
{
    (void)state;
    enum { rows = 4, classes = 10, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {11};
    fill_zero_mean(z, rows, classes, &rng);
    fill_zero_mean(v, rows, classes, &rng);
    kd_loss *loss = new_loss();
    loss_config c = make_config(KD_DIVERGENCE_KL, 1e3, 1.0, KD_REDUCTION_MEAN);
    float g3[n], g4[n], values[KD_LOSS_VALUE_COUNT];
    outputs o3 = {values, g3}, o4 = {values, g4};
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o3), KD_OK);
    c.temperature = 1e4;
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o4), KD_OK);
    double rel = relative_difference(g3, g4, n);
    if (!(rel < 1e-2))
        fail_msg("T^2-scaled gradients at T = 1e3 and 1e4 differ by %g relative", rel);
    /* ... and they are the logit-matching gradient (z - v) / (C rows). */
    float limit[n];
    for (size_t e = 0; e < n; e++)
        limit[e] = (float)(((double)z[e] - (double)v[e]) / (classes * rows));
    rel = relative_difference(g4, limit, n);
    if (!(rel < 1e-3))
        fail_msg("T^2-scaled gradient at T = 1e4 is %g from (z - v) / (C N)", rel);

    c.scale_t_squared = 0;
    c.temperature = 1e3;
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o3), KD_OK);
    c.temperature = 1e4;
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o4), KD_OK);
    double ratio = vector_norm(g3, n) / vector_norm(g4, n);
    if (!(fabs(ratio / 100.0 - 1.0) < 1e-2))
        fail_msg("unscaled gradients at T = 1e3 and 1e4: norm ratio %g, want ~100", ratio);
    kd_loss_destroy(loss);
}

/* (b) Logit matching is the high-temperature limit of KL for zero-mean logits. */
static void logit_matching_is_the_high_temperature_kl(void **state)
{
    (void)state;
    enum { rows = 4, classes = 10, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {12};
    fill_zero_mean(z, rows, classes, &rng);
    fill_zero_mean(v, rows, classes, &rng);
    kd_loss *loss = new_loss();
    float g_kl[n], g_mse[n], values_kl[KD_LOSS_VALUE_COUNT], values_mse[KD_LOSS_VALUE_COUNT];
    outputs o_kl = {values_kl, g_kl}, o_mse = {values_mse, g_mse};
    loss_config c = make_config(KD_DIVERGENCE_KL, 1e4, 1.0, KD_REDUCTION_MEAN);
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o_kl), KD_OK);
    c.divergence = KD_DIVERGENCE_LOGIT_MSE;
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o_mse), KD_OK);
    double rel = relative_difference(g_kl, g_mse, n);
    if (!(rel < 1e-3))
        fail_msg("T = 1e4: T^2 grad KL vs T^2 grad logit-MSE differ by %g relative", rel);
    double total_rel = fabs((double)values_kl[KD_LOSS_VALUE_TOTAL] -
                            (double)values_mse[KD_LOSS_VALUE_TOTAL]) /
                       (double)values_mse[KD_LOSS_VALUE_TOTAL];
    if (!(total_rel < 1e-3))
        fail_msg("T = 1e4: T^2 KL = %.9g vs T^2 logit-MSE = %.9g",
                 (double)values_kl[KD_LOSS_VALUE_TOTAL], (double)values_mse[KD_LOSS_VALUE_TOTAL]);
    /* At T = 1 they are different losses: the comparison above can fail. */
    c.temperature = 1.0;
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o_mse), KD_OK);
    c.divergence = KD_DIVERGENCE_KL;
    assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o_kl), KD_OK);
    assert_true(relative_difference(g_kl, g_mse, n) > 1e-2);
    kd_loss_destroy(loss);
}

/* (c) KL(q || q) = 0 with zero gradient; cross-entropy then reads H(q). */
static void kl_of_a_distribution_with_itself_is_zero(void **state)
{
    (void)state;
    enum { rows = 3, classes = 11, n = rows * classes };
    float z[n];
    kd_test_rng rng = {13};
    fill_normal(z, n, 3.0, &rng);
    z[1 * classes + 4] = -INFINITY;
    z[1 * classes + 7] = -INFINITY;
    static const double temperatures[] = {1e-3, 1.0, 4.0, 1e4};
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++) {
        double t = temperatures[ti];
        float g[n], values[KD_LOSS_VALUE_COUNT];
        outputs o = {values, g};
        loss_config c = make_config(KD_DIVERGENCE_KL, t, 1.0, KD_REDUCTION_MEAN);
        assert_int_equal(run(loss, &c, z, z, NULL, rows, classes, &o), KD_OK);
        /* The scale of a gradient entry for a unit mismatch is alpha T^2 / T. */
        double bound = 1e-12 * fmax(1.0, t);
        if (!(fabs(values[KD_LOSS_VALUE_SOFT]) <= 1e-12) ||
            !(fabs(values[KD_LOSS_VALUE_TOTAL]) <= 1e-12 * fmax(1.0, t * t)))
            fail_msg("T = %g: KL(q||q) = %g (total %g), want 0", t,
                     (double)values[KD_LOSS_VALUE_SOFT], (double)values[KD_LOSS_VALUE_TOTAL]);
        for (size_t e = 0; e < n; e++)
            if (!(fabs(g[e]) <= bound))
                fail_msg("T = %g: gradient of KL(q||q) [%zu] = %g, want ~0", t, e, (double)g[e]);

        c.divergence = KD_DIVERGENCE_CROSS_ENTROPY;
        assert_int_equal(run(loss, &c, z, z, NULL, rows, classes, &o), KD_OK);
        ld *lq = ref_log_targets_from_logits(z, rows, classes, classes, t);
        ld entropy = 0.0L;
        for (size_t e = 0; e < n; e++)
            if (lq[e] != LD_NEG_INF)
                entropy -= expl(lq[e]) * lq[e];
        entropy /= rows;
        free(lq);
        if (!(fabsl((ld)values[KD_LOSS_VALUE_SOFT] - entropy) <= 1e-5L * entropy + 1e-30L))
            fail_msg("T = %g: CE(q||q) = %.9g, want H(q) = %.12Lg", t,
                     (double)values[KD_LOSS_VALUE_SOFT], entropy);
        for (size_t e = 0; e < n; e++)
            if (!(fabs(g[e]) <= bound))
                fail_msg("T = %g: gradient of CE(q||q) [%zu] = %g, want ~0", t, e, (double)g[e]);
    }
    kd_loss_destroy(loss);
}

/* (d) JSD at beta = 1/2 is symmetric. */
static void jensen_shannon_is_symmetric_at_one_half(void **state)
{
    (void)state;
    enum { rows = 4, classes = 9, n = rows * classes };
    float a[n], b[n];
    kd_test_rng rng = {14};
    fill_normal(a, n, 2.0, &rng);
    fill_normal(b, n, 2.0, &rng);
    static const double temperatures[] = {1e-3, 0.5, 1.0, 4.0, 20.0, 100.0};
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++) {
        float g[n], ab[rows * KD_LOSS_VALUE_COUNT], ba[rows * KD_LOSS_VALUE_COUNT];
        outputs o_ab = {ab, g}, o_ba = {ba, g};
        loss_config c = make_config(KD_DIVERGENCE_JENSEN_SHANNON, temperatures[ti], 1.0,
                                    KD_REDUCTION_NONE);
        assert_int_equal(run(loss, &c, a, b, NULL, rows, classes, &o_ab), KD_OK);
        assert_int_equal(run(loss, &c, b, a, NULL, rows, classes, &o_ba), KD_OK);
        for (size_t r = 0; r < rows; r++) {
            double x = ab[r * KD_LOSS_VALUE_COUNT + KD_LOSS_VALUE_SOFT];
            double y = ba[r * KD_LOSS_VALUE_COUNT + KD_LOSS_VALUE_SOFT];
            if (!(x >= 0.0) || !(fabs(x - y) <= 1e-5 * x + 1e-37))
                fail_msg("T = %g, row %zu: JSD(a, b) = %.9g but JSD(b, a) = %.9g",
                         temperatures[ti], r, x, y);
        }
    }
    kd_loss_destroy(loss);
}

/* (e) beta = 0 and beta = 1: m is p, resp. q; the value and gradient are exactly 0, even where
 * the teacher masks a class the student keeps. */
static void jensen_shannon_limits_are_exactly_zero(void **state)
{
    (void)state;
    enum { rows = 3, classes = 6, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {15};
    fill_normal(z, n, 3.0, &rng);
    fill_normal(v, n, 3.0, &rng);
    z[0 * classes + 2] = v[0 * classes + 2] = -INFINITY; /* masked in both */
    v[2 * classes + 5] = -INFINITY;                      /* masked by the teacher only */
    static const double temperatures[] = {1e-3, 1.0, 1e4};
    static const double betas[] = {0.0, 1.0};
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++)
        for (size_t bi = 0; bi < COUNT(betas); bi++)
            for (int red = 0; red <= 2; red++) {
                float g[n], values[rows * KD_LOSS_VALUE_COUNT];
                outputs o = {values, g};
                loss_config c = make_config(KD_DIVERGENCE_JENSEN_SHANNON, temperatures[ti], 1.0,
                                            (kd_reduction)red);
                c.beta = betas[bi];
                assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o), KD_OK);
                for (size_t k = 0; k < value_count(&c, rows); k++)
                    if (values[k] != 0.0f)
                        fail_msg("T = %g, beta = %g, %s: value[%zu] = %g, want exactly 0",
                                 c.temperature, c.beta, reduction_name(c.reduction), k,
                                 (double)values[k]);
                for (size_t e = 0; e < n; e++)
                    if (g[e] != 0.0f)
                        fail_msg("T = %g, beta = %g: gradient [%zu] = %g, want exactly 0",
                                 c.temperature, c.beta, e, (double)g[e]);
            }
    kd_loss_destroy(loss);
}

/* (h) CE = KL + H(q), with the same gradient. */
static void cross_entropy_is_kl_plus_entropy(void **state)
{
    (void)state;
    enum { rows = 3, classes = 50, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {16};
    fill_normal(z, n, 2.0, &rng);
    fill_normal(v, n, 2.0, &rng);
    static const double temperatures[] = {0.1, 1.0, 4.0, 100.0, 1e4};
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++) {
        double t = temperatures[ti];
        float g_kl[n], g_ce[n], kl[KD_LOSS_VALUE_COUNT], ce[KD_LOSS_VALUE_COUNT];
        outputs o_kl = {kl, g_kl}, o_ce = {ce, g_ce};
        loss_config c = make_config(KD_DIVERGENCE_KL, t, 1.0, KD_REDUCTION_MEAN);
        assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o_kl), KD_OK);
        c.divergence = KD_DIVERGENCE_CROSS_ENTROPY;
        assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o_ce), KD_OK);
        ld *lq = ref_log_targets_from_logits(v, rows, classes, classes, t);
        ld entropy = 0.0L;
        for (size_t e = 0; e < n; e++)
            entropy -= expl(lq[e]) * lq[e];
        entropy /= rows;
        free(lq);
        ld sum = (ld)kl[KD_LOSS_VALUE_SOFT] + entropy;
        if (!(fabsl((ld)ce[KD_LOSS_VALUE_SOFT] - sum) <= 1e-5L * (ld)ce[KD_LOSS_VALUE_SOFT]))
            fail_msg("T = %g: CE = %.9g but KL + H(q) = %.12Lg", t,
                     (double)ce[KD_LOSS_VALUE_SOFT], sum);
        double rel = relative_difference(g_ce, g_kl, n);
        if (!(rel <= 1e-6))
            fail_msg("T = %g: CE and KL gradients differ by %g relative", t, rel);
    }
    kd_loss_destroy(loss);
}

/* (f) An ensemble of one member is kd_loss_compute, bit for bit, in both modes. */
static void ensemble_of_one_is_plain_compute(void **state)
{
    (void)state;
    enum { rows = 3, classes = 7, n = rows * classes };
    float z[n], v[n], q[n];
    kd_test_rng rng = {17};
    fill_normal(z, n, 2.0, &rng);
    fill_normal(v, n, 2.0, &rng);
    z[1 * classes + 4] = v[1 * classes + 4] = -INFINITY;
    int32_t labels[rows] = {0, -100, 6};
    static const kd_divergence divergences[] = {
        KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY, KD_DIVERGENCE_REVERSE_KL,
        KD_DIVERGENCE_JENSEN_SHANNON, KD_DIVERGENCE_LOGIT_MSE};
    static const double temperatures[] = {0.5, 1e3};
    const float weight = 3.0f;
    kd_loss *loss = new_loss();
    for (int kind = 0; kind <= 1; kind++)
        for (int mode = 0; mode <= 1; mode++)
            for (int weighted = 0; weighted <= 1; weighted++)
                for (size_t d = 0; d < COUNT(divergences); d++)
                    for (size_t ti = 0; ti < COUNT(temperatures); ti++)
                        for (int red = 0; red <= 2; red += 2) {
                            if (kind == KD_TEACHER_PROBABILITIES &&
                                divergences[d] == KD_DIVERGENCE_LOGIT_MSE)
                                continue;
                            loss_config c = make_config(divergences[d], temperatures[ti], 0.6,
                                                        (kd_reduction)red);
                            c.teacher_kind = (kd_teacher_kind)kind;
                            c.ensemble_mode = (kd_ensemble_mode)mode;
                            char ctx[512];
                            describe(ctx, sizeof ctx, &c, "ensemble of one", rows, classes);
                            const float *teacher = v;
                            if (kind == KD_TEACHER_PROBABILITIES) {
                                assert_int_equal(
                                    kd_soft_targets(v, rows, classes, (float)c.temperature, q),
                                    KD_OK);
                                teacher = q;
                            }
                            const float *members[1] = {teacher};
                            outputs plain = new_outputs(&c, rows, classes);
                            outputs ens = new_outputs(&c, rows, classes);
                            configure(loss, &c);
                            expect_ok(kd_loss_compute(loss, z, classes, teacher, classes, labels,
                                                      rows, classes, plain.values, plain.grad,
                                                      classes),
                                      ctx);
                            expect_ok(kd_loss_compute_ensemble(
                                          loss, z, classes, members, 1, weighted ? &weight : NULL,
                                          classes, labels, rows, classes, ens.values, ens.grad,
                                          classes),
                                      ctx);
                            if (memcmp(plain.values, ens.values,
                                       value_count(&c, rows) * sizeof(float)) != 0)
                                fail_msg("%s: values differ from kd_loss_compute", ctx);
                            if (memcmp(plain.grad, ens.grad, n * sizeof(float)) != 0)
                                fail_msg("%s: gradient differs from kd_loss_compute", ctx);
                            free_outputs(&ens);
                            free_outputs(&plain);
                        }
    kd_loss_destroy(loss);
}

/* (g) Ensembles of several members against the reference mean of the members' soft targets
 * (arithmetic) or softmax of the mean of their logits (geometric). */
static void check_ensemble(kd_loss *loss, const loss_config *c, const float *z,
                           const float *const *members, size_t count, const float *weights,
                           const float *const *reference_members, size_t reference_count,
                           const float *reference_weights, const int32_t *labels, size_t rows,
                           size_t classes, const char *what)
{
    char ctx[512];
    describe(ctx, sizeof ctx, c, what, rows, classes);
    configure(loss, c);
    outputs o = new_outputs(c, rows, classes);
    expect_ok(kd_loss_compute_ensemble(loss, z, classes, members, count, weights, classes, labels,
                                       rows, classes, o.values, o.grad, classes),
              ctx);
    ld *zl = to_ld(z, rows, classes, classes);
    ld *lq = ref_log_targets_ensemble(c, reference_members, reference_count, reference_weights,
                                      rows, classes);
    ld *want_values = NEW(ld, value_count(c, rows)), *want_grad = NEW(ld, rows * classes);
    ref_batch(c, zl, lq, NULL, labels, rows, classes, want_values, want_grad);
    compare_outputs(ctx, c, zl, labels, rows, classes, o.values, want_values, o.grad, classes,
                    want_grad, promised_tolerance(c->divergence, c->temperature));
    free(want_grad);
    free(want_values);
    free(lq);
    free(zl);
    free_outputs(&o);
}

static void ensemble_against_reference(void **state)
{
    (void)state;
    enum { rows = 4, classes = 8, n = rows * classes, count = 3 };
    float z[n], logits[count][n], probabilities[count][n], poison[n];
    kd_test_rng rng = {18};
    fill_normal(z, n, 2.0, &rng);
    for (size_t m = 0; m < count; m++)
        fill_normal(logits[m], n, 2.0, &rng);
    logits[1][0 * classes + 2] = -INFINITY; /* one member masks a class the student keeps */
    for (size_t e = 0; e < n; e++)
        poison[e] = NAN;
    int32_t labels[rows];
    fill_labels(labels, rows, classes, &rng);
    const float weights[count] = {0.2f, 0.5f, 0.3f};
    static const double temperatures[] = {0.5, 2.0, 1e3};
    static const kd_divergence divergences[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_JENSEN_SHANNON};
    kd_loss *loss = new_loss();
    for (int kind = 0; kind <= 1; kind++)
        for (int mode = 0; mode <= 1; mode++)
            for (size_t ti = 0; ti < COUNT(temperatures); ti++)
                for (size_t d = 0; d < COUNT(divergences); d++) {
                    loss_config c = make_config(divergences[d], temperatures[ti], 0.5,
                                                KD_REDUCTION_MEAN);
                    c.teacher_kind = (kd_teacher_kind)kind;
                    c.ensemble_mode = (kd_ensemble_mode)mode;
                    const float *members[count];
                    for (size_t m = 0; m < count; m++) {
                        members[m] = logits[m];
                        if (kind == KD_TEACHER_PROBABILITIES) {
                            assert_int_equal(kd_soft_targets(logits[m], rows, classes,
                                                             (float)c.temperature,
                                                             probabilities[m]),
                                             KD_OK);
                            members[m] = probabilities[m];
                        }
                    }
                    check_ensemble(loss, &c, z, members, count, weights, members, count, weights,
                                   labels, rows, classes, "ensemble, weighted");
                    check_ensemble(loss, &c, z, members, count, NULL, members, count, NULL,
                                   labels, rows, classes, "ensemble, equal weights (NULL)");
                    /* A member of weight 0 is not read: NaN there changes nothing. */
                    const float *with_poison[count] = {members[0], poison, members[2]};
                    const float poison_weights[count] = {0.4f, 0.0f, 0.6f};
                    const float *without[2] = {members[0], members[2]};
                    const float without_weights[2] = {0.4f, 0.6f};
                    check_ensemble(loss, &c, z, with_poison, count, poison_weights, without, 2,
                                   without_weights, labels, rows, classes,
                                   "ensemble, a NaN member of weight 0");
                }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* ------------------------------------------------------------------------------------------ */
/* 5. Masks. */

/* -inf at the same classes of student and teacher: exactly 0 gradient there, and the values
 * and the other gradients of the same rows with the masked classes removed. */
static void masked_classes_are_removed(void **state)
{
    (void)state;
    enum { rows = 4, classes = 9, n = rows * classes };
    /* Row masks (1 = masked); row 3 keeps only classes 0, 1, 5, 8. */
    static const int mask[rows][classes] = {
        {0, 1, 0, 0, 0, 1, 0, 0, 0},
        {0, 0, 0, 0, 0, 0, 0, 0, 0},
        {1, 0, 0, 0, 0, 0, 0, 0, 1},
        {0, 0, 1, 1, 1, 0, 1, 1, 0},
    };
    const int32_t labels[rows] = {2, 8, 4, 5};
    float z[n], v[n];
    kd_test_rng rng = {19};
    fill_normal(z, n, 2.0, &rng);
    fill_normal(v, n, 2.0, &rng);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < classes; i++)
            if (mask[r][i])
                z[r * classes + i] = v[r * classes + i] = -INFINITY;
    static const kd_divergence divergences[] = {
        KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY, KD_DIVERGENCE_REVERSE_KL,
        KD_DIVERGENCE_JENSEN_SHANNON, KD_DIVERGENCE_LOGIT_MSE};
    static const double temperatures[] = {0.5, 4.0, 1e3};
    static const double alphas[] = {1.0, 0.5};
    kd_loss *loss = new_loss();
    ld zc[classes], vc[classes], lqc[classes], gc[classes], row_values[KD_LOSS_VALUE_COUNT];
    ld want_grad[n], want_values[rows * KD_LOSS_VALUE_COUNT];
    for (size_t d = 0; d < COUNT(divergences); d++)
        for (size_t ti = 0; ti < COUNT(temperatures); ti++)
            for (size_t ai = 0; ai < COUNT(alphas); ai++)
                for (int red = 0; red <= 2; red += 2) {
                    loss_config c = make_config(divergences[d], temperatures[ti], alphas[ai],
                                                (kd_reduction)red);
                    char ctx[512];
                    describe(ctx, sizeof ctx, &c, "masked classes", rows, classes);
                    const int32_t *lab = alphas[ai] < 1.0 ? labels : NULL;
                    outputs o = new_outputs(&c, rows, classes);
                    expect_ok(run(loss, &c, z, v, lab, rows, classes, &o), ctx);
                    /* Reference: each row compacted to its unmasked classes. */
                    for (size_t k = 0; k < value_count(&c, rows); k++)
                        want_values[k] = 0.0L;
                    for (size_t r = 0; r < rows; r++) {
                        size_t m = 0, label_c = 0;
                        for (size_t i = 0; i < classes; i++)
                            if (!mask[r][i]) {
                                if (lab != NULL && (int32_t)i == lab[r])
                                    label_c = m;
                                zc[m] = z[r * classes + i];
                                vc[m] = v[r * classes + i];
                                m++;
                            }
                        ref_log_softmax(vc, m, (ld)c.temperature, lqc);
                        ref_row(&c, zc, lqc, vc, m, lab != NULL, (int32_t)label_c, row_values, gc);
                        ld scale = red == KD_REDUCTION_MEAN ? 1.0L / rows : 1.0L;
                        for (size_t i = 0, j = 0; i < classes; i++)
                            want_grad[r * classes + i] = mask[r][i] ? 0.0L : scale * gc[j++];
                        for (size_t k = 0; k < KD_LOSS_VALUE_COUNT; k++) {
                            if (red == KD_REDUCTION_NONE)
                                want_values[r * KD_LOSS_VALUE_COUNT + k] = row_values[k];
                            else
                                want_values[k] += scale * row_values[k];
                        }
                    }
                    ld *zl = to_ld(z, rows, classes, classes);
                    compare_outputs(ctx, &c, zl, lab, rows, classes, o.values, want_values, o.grad,
                                    classes, want_grad,
                                    promised_tolerance(c.divergence, c.temperature));
                    free(zl);
                    free_outputs(&o);
                }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* A teacher may mask classes the student keeps (q = 0 there) for KL, CE and JSD; the KL
 * gradient there is p_i / T (times alpha T^2). Reverse KL would be infinite and logit matching
 * needs the same masks: both are shape mismatches, and so is a student mask the teacher lacks. */
static void teacher_masks_classes_the_student_keeps(void **state)
{
    (void)state;
    enum { rows = 3, classes = 6, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {20};
    fill_normal(z, n, 2.0, &rng);
    fill_normal(v, n, 2.0, &rng);
    v[0 * classes + 1] = -INFINITY;                      /* teacher only */
    v[2 * classes + 0] = v[2 * classes + 4] = -INFINITY; /* teacher only */
    z[2 * classes + 5] = v[2 * classes + 5] = -INFINITY; /* both */
    static const double temperatures[] = {0.5, 2.0, 30.0};
    static const struct {
        kd_divergence divergence;
        double beta;
    } divergences[] = {
        {KD_DIVERGENCE_KL, 0.5},
        {KD_DIVERGENCE_CROSS_ENTROPY, 0.5},
        {KD_DIVERGENCE_JENSEN_SHANNON, 0.5},
        {KD_DIVERGENCE_JENSEN_SHANNON, 0.3},
    };
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++) {
        double t = temperatures[ti];
        for (size_t d = 0; d < COUNT(divergences); d++) {
            loss_config c = make_config(divergences[d].divergence, t, 1.0, KD_REDUCTION_SUM);
            c.beta = divergences[d].beta;
            check_against_reference(loss, &c, z, v, NULL, rows, classes, 1e-5,
                                    "teacher masks more");
        }
        /* The KL gradient at a class only the teacher masks: alpha T^2 p_i / T. */
        loss_config c = make_config(KD_DIVERGENCE_KL, t, 1.0, KD_REDUCTION_SUM);
        float g[n];
        outputs o = {NULL, g};
        assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o), KD_OK);
        ld *zl = to_ld(z, rows, classes, classes), lp[classes];
        static const size_t spots[][2] = {{0, 1}, {2, 0}, {2, 4}};
        for (size_t k = 0; k < COUNT(spots); k++) {
            size_t r = spots[k][0], i = spots[k][1];
            ref_log_softmax(zl + r * classes, classes, (ld)t, lp);
            ld want = (ld)t * expl(lp[i]);
            if (!(fabsl((ld)g[r * classes + i] - want) <= 1e-6L * want))
                fail_msg("T = %g: KL gradient at [%zu][%zu] (teacher-masked) = %.9g, want "
                         "T^2 p / T = %.12Lg",
                         t, r, i, (double)g[r * classes + i], want);
        }
        free(zl);
    }

    /* Reverse KL and logit matching reject a teacher-only mask, outputs untouched. */
    static const kd_divergence rejecting[] = {KD_DIVERGENCE_REVERSE_KL, KD_DIVERGENCE_LOGIT_MSE};
    for (size_t d = 0; d < COUNT(rejecting); d++) {
        loss_config c = make_config(rejecting[d], 2.0, 1.0, KD_REDUCTION_MEAN);
        outputs o = new_outputs(&c, rows, classes);
        assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o), KD_ERROR_SHAPE_MISMATCH);
        assert_true(kd_test_is_sentinel(o.values, KD_LOSS_VALUE_COUNT));
        assert_true(kd_test_is_sentinel(o.grad, n));
        free_outputs(&o);
    }
    /* A student mask the teacher does not share: an infinite divergence for KL and
     * cross-entropy, a mismatch for logit matching, rejected; finite for reverse KL and JSD
     * (the header's rule), where the masked class gets a zero gradient. */
    float zs[n];
    memcpy(zs, z, sizeof zs);
    fill_normal(v, n, 2.0, &rng);
    zs[1 * classes + 3] = -INFINITY;
    for (int d = KD_DIVERGENCE_KL; d <= KD_DIVERGENCE_LOGIT_MSE; d++) {
        loss_config c = make_config((kd_divergence)d, 2.0, 1.0, KD_REDUCTION_MEAN);
        outputs o = new_outputs(&c, rows, classes);
        kd_status status = run(loss, &c, zs, v, NULL, rows, classes, &o);
        if (d == KD_DIVERGENCE_REVERSE_KL || d == KD_DIVERGENCE_JENSEN_SHANNON) {
            if (status != KD_OK || !isfinite(o.values[KD_LOSS_VALUE_SOFT])
                || o.grad[1 * classes + 3] != 0.0f)
                mismatch("%s: a class masked by the student alone gave status %d, soft %g, "
                         "gradient %g there; want success, finite, 0",
                         divergence_name(c.divergence), (int)status,
                         (double)o.values[KD_LOSS_VALUE_SOFT], (double)o.grad[1 * classes + 3]);
        } else if (status != KD_ERROR_SHAPE_MISMATCH)
            mismatch("%s: a class masked by the student but not the teacher gave status %d (%s), "
                     "want KD_ERROR_SHAPE_MISMATCH",
                     divergence_name(c.divergence), (int)status, kd_status_string(status));
        else if (!kd_test_is_sentinel(o.values, KD_LOSS_VALUE_COUNT) ||
                 !kd_test_is_sentinel(o.grad, n))
            mismatch("%s: rejected call wrote its outputs", divergence_name(c.divergence));
        free_outputs(&o);
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* A probabilities teacher (soft targets from kd_soft_targets at the loss temperature) gives
 * the reference's results on those probabilities at every T, and the logits teacher's results
 * where the float rounding of q is negligible against p - q (up to T = 20 here: rounding of
 * 6e-8 relative in q moves (p - q) / T by 6e-8 / |d| and KL by ~6e-8 |d| against KL ~ d^2). */
static void probabilities_teacher(void **state)
{
    (void)state;
    enum { rows = 4, classes = 12, n = rows * classes };
    float z[n], v[n], q[n];
    kd_test_rng rng = {21};
    fill_normal(z, n, 1.0, &rng);
    fill_normal(v, n, 1.0, &rng);
    z[3 * classes + 7] = v[3 * classes + 7] = -INFINITY;
    int32_t labels[rows];
    fill_labels(labels, rows, classes, &rng);
    labels[3] = 0;
    static const double temperatures[] = {0.5, 1.0, 4.0, 20.0, 100.0, 1e3, 1e4};
    static const kd_divergence divergences[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY,
                                                KD_DIVERGENCE_REVERSE_KL,
                                                KD_DIVERGENCE_JENSEN_SHANNON};
    kd_loss *loss = new_loss();
    for (size_t ti = 0; ti < COUNT(temperatures); ti++) {
        double t = temperatures[ti];
        assert_int_equal(kd_soft_targets(v, rows, classes, (float)t, q), KD_OK);
        assert_true(q[3 * classes + 7] == 0.0f);
        for (size_t d = 0; d < COUNT(divergences); d++) {
            loss_config c = make_config(divergences[d], t, 0.6, KD_REDUCTION_MEAN);
            c.teacher_kind = KD_TEACHER_PROBABILITIES;
            check_against_reference(loss, &c, z, q, labels, rows, classes,
                                    promised_tolerance(c.divergence, t), "probabilities teacher");
            if (t > 20.0)
                continue;
            outputs from_q = new_outputs(&c, rows, classes);
            assert_int_equal(run(loss, &c, z, q, labels, rows, classes, &from_q), KD_OK);
            c.teacher_kind = KD_TEACHER_LOGITS;
            outputs from_v = new_outputs(&c, rows, classes);
            assert_int_equal(run(loss, &c, z, v, labels, rows, classes, &from_v), KD_OK);
            for (size_t k = 0; k < KD_LOSS_VALUE_COUNT; k++)
                if (!(fabs((double)from_q.values[k] - (double)from_v.values[k]) <=
                      1e-5 * fabs((double)from_v.values[k])))
                    fail_msg("%s, T = %g: value %zu from probabilities %.9g, from logits %.9g",
                             divergence_name(c.divergence), t, k, (double)from_q.values[k],
                             (double)from_v.values[k]);
            double rel = relative_difference(from_q.grad, from_v.grad, n);
            if (!(rel <= 1e-5))
                fail_msg("%s, T = %g: gradients from probabilities and logits differ by %g",
                         divergence_name(c.divergence), t, rel);
            free_outputs(&from_v);
            free_outputs(&from_q);
        }
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* ------------------------------------------------------------------------------------------ */
/* 6. A part alone: no teacher at alpha = 0, no labels at alpha = 1; rows that do not count. */

static void hard_loss_without_teacher(void **state)
{
    (void)state;
    enum { rows = 5, classes = 7, n = rows * classes };
    float z[n];
    kd_test_rng rng = {22};
    fill_normal(z, n, 3.0, &rng);
    z[4 * classes + 1] = -INFINITY; /* a student mask needs no teacher here */
    int32_t labels[rows];
    fill_labels(labels, rows, classes, &rng);
    labels[2] = -100;
    labels[4] = 6;
    kd_loss *loss = new_loss();
    for (int red = 0; red <= 2; red++) {
        loss_config c = make_config(KD_DIVERGENCE_KL, 4.0, 0.0, (kd_reduction)red);
        check_against_reference(loss, &c, z, NULL, labels, rows, classes, 1e-5,
                                "hard loss, no teacher");
        outputs o = new_outputs(&c, rows, classes);
        assert_int_equal(run(loss, &c, z, NULL, labels, rows, classes, &o), KD_OK);
        for (size_t k = KD_LOSS_VALUE_SOFT; k < value_count(&c, rows); k += KD_LOSS_VALUE_COUNT)
            assert_true(o.values[k] == 0.0f);
        free_outputs(&o);
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

static void soft_loss_without_labels(void **state)
{
    (void)state;
    enum { rows = 5, classes = 7, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {23};
    fill_normal(z, n, 3.0, &rng);
    fill_normal(v, n, 3.0, &rng);
    kd_loss *loss = new_loss();
    for (int red = 0; red <= 2; red++) {
        loss_config c = make_config(KD_DIVERGENCE_KL, 4.0, 1.0, (kd_reduction)red);
        /* Every row counts: MEAN divides by all 5 (the reference does). */
        check_against_reference(loss, &c, z, v, NULL, rows, classes, 1e-5,
                                "soft loss, no labels");
        outputs o = new_outputs(&c, rows, classes);
        assert_int_equal(run(loss, &c, z, v, NULL, rows, classes, &o), KD_OK);
        for (size_t k = KD_LOSS_VALUE_HARD; k < value_count(&c, rows); k += KD_LOSS_VALUE_COUNT)
            assert_true(o.values[k] == 0.0f);
        free_outputs(&o);
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* Rows with the ignore label are not read (NaN there is fine), count for nothing and get 0;
 * any int32 can be the ignore label; with no counted row everything is 0. */
static void ignored_rows_are_not_read(void **state)
{
    (void)state;
    enum { rows = 4, classes = 6, n = rows * classes };
    float z[n], v[n];
    kd_test_rng rng = {24};
    fill_normal(z, n, 2.0, &rng);
    fill_normal(v, n, 2.0, &rng);
    for (size_t i = 0; i < classes; i++)
        z[1 * classes + i] = v[1 * classes + i] = z[3 * classes + i] = v[3 * classes + i] = NAN;
    const int32_t default_ignored[rows] = {1, -100, 5, -100};
    const int32_t three_ignored[rows] = {1, 3, 0, 3};
    kd_loss *loss = new_loss();
    for (int red = 0; red <= 2; red++) {
        loss_config c = make_config(KD_DIVERGENCE_JENSEN_SHANNON, 2.0, 0.5, (kd_reduction)red);
        check_against_reference(loss, &c, z, v, default_ignored, rows, classes, 1e-5,
                                "ignored rows hold NaN");
        c.ignore_label = 3;
        check_against_reference(loss, &c, z, v, three_ignored, rows, classes, 1e-5,
                                "ignore label 3, ignored rows hold NaN");
        /* Nothing counts. */
        const int32_t none[rows] = {3, 3, 3, 3};
        outputs o = new_outputs(&c, rows, classes);
        assert_int_equal(run(loss, &c, z, v, none, rows, classes, &o), KD_OK);
        for (size_t k = 0; k < value_count(&c, rows); k++)
            assert_true(o.values[k] == 0.0f);
        for (size_t e = 0; e < n; e++)
            assert_true(o.grad[e] == 0.0f);
        free_outputs(&o);
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

/* ------------------------------------------------------------------------------------------ */
/* 7. Aliasing and strides. */

static void gradient_may_alias_student_logits(void **state)
{
    (void)state;
    enum { rows = 5, classes = 9, max_stride = 12 };
    static const size_t strides[] = {classes, max_stride};
    static const kd_divergence divergences[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_REVERSE_KL,
                                                KD_DIVERGENCE_JENSEN_SHANNON,
                                                KD_DIVERGENCE_LOGIT_MSE};
    float z[rows * max_stride], v[rows * classes], separate[rows * max_stride],
        in_place[rows * max_stride];
    kd_test_rng rng = {25};
    fill_normal(z, rows * max_stride, 2.0, &rng);
    fill_normal(v, rows * classes, 2.0, &rng);
    int32_t labels[rows];
    fill_labels(labels, rows, classes, &rng);
    labels[3] = -100;
    kd_loss *loss = new_loss();
    for (size_t s = 0; s < COUNT(strides); s++) {
        size_t stride = strides[s];
        /* z with this stride (the gap holds other data), teacher packed */
        float zs[rows * max_stride];
        for (size_t r = 0; r < rows; r++)
            for (size_t i = 0; i < stride; i++)
                zs[r * stride + i] = i < classes ? z[r * classes + i] : 777.0f + (float)i;
        zs[2 * stride + 4] = -INFINITY;
        float vs[rows * classes];
        memcpy(vs, v, sizeof vs);
        vs[2 * classes + 4] = -INFINITY;
        for (size_t d = 0; d < COUNT(divergences); d++)
            for (int red = 0; red <= 2; red += 2) {
                loss_config c = make_config(divergences[d], 3.0, 0.5, (kd_reduction)red);
                configure(loss, &c);
                float values_a[rows * KD_LOSS_VALUE_COUNT], values_b[rows * KD_LOSS_VALUE_COUNT];
                kd_test_fill_sentinel(separate, rows * stride);
                assert_int_equal(kd_loss_compute(loss, zs, stride, vs, classes, labels, rows,
                                                 classes, values_a, separate, stride),
                                 KD_OK);
                memcpy(in_place, zs, rows * stride * sizeof(float));
                assert_int_equal(kd_loss_compute(loss, in_place, stride, vs, classes, labels, rows,
                                                 classes, values_b, in_place, stride),
                                 KD_OK);
                assert_memory_equal(values_a, values_b, value_count(&c, rows) * sizeof(float));
                for (size_t r = 0; r < rows; r++) {
                    assert_memory_equal(separate + r * stride, in_place + r * stride,
                                        classes * sizeof(float));
                    /* the gap between rows is not the gradient's: left alone */
                    for (size_t i = classes; i < stride; i++)
                        assert_true(in_place[r * stride + i] == zs[r * stride + i]);
                }
            }
    }
    kd_loss_destroy(loss);
}

static void strided_equals_packed(void **state)
{
    (void)state;
    enum {
        rows = 4,
        classes = 9,
        n = rows * classes,
        z_stride = 13,
        v_stride = 10,
        g_stride = 16,
        members = 2
    };
    float z[n], v[members][n], zs[rows * z_stride], vs[members][rows * v_stride];
    kd_test_rng rng = {26};
    fill_normal(z, n, 2.0, &rng);
    fill_normal(v[0], n, 2.0, &rng);
    fill_normal(v[1], n, 2.0, &rng);
    z[1 * classes + 2] = v[0][1 * classes + 2] = v[1][1 * classes + 2] = -INFINITY;
    /* The gaps hold NaN: they are not part of the matrices, so not read. */
    for (size_t e = 0; e < rows * z_stride; e++)
        zs[e] = NAN;
    for (size_t m = 0; m < members; m++)
        for (size_t e = 0; e < rows * v_stride; e++)
            vs[m][e] = NAN;
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < classes; i++) {
            zs[r * z_stride + i] = z[r * classes + i];
            for (size_t m = 0; m < members; m++)
                vs[m][r * v_stride + i] = v[m][r * classes + i];
        }
    int32_t labels[rows];
    fill_labels(labels, rows, classes, &rng);
    labels[1] = 0;
    labels[2] = -100;
    const float *packed_members[members] = {v[0], v[1]};
    const float *strided_members[members] = {vs[0], vs[1]};
    static const kd_divergence divergences[] = {
        KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY, KD_DIVERGENCE_REVERSE_KL,
        KD_DIVERGENCE_JENSEN_SHANNON, KD_DIVERGENCE_LOGIT_MSE};
    kd_loss *loss = new_loss();
    for (size_t d = 0; d < COUNT(divergences); d++)
        for (int red = 0; red <= 2; red++) {
            loss_config c = make_config(divergences[d], 2.5, 0.4, (kd_reduction)red);
            c.ensemble_mode = KD_ENSEMBLE_GEOMETRIC;
            configure(loss, &c);
            char ctx[512];
            describe(ctx, sizeof ctx, &c, "strided vs packed", rows, classes);
            float values_p[rows * KD_LOSS_VALUE_COUNT], values_s[rows * KD_LOSS_VALUE_COUNT];
            float grad_p[n], grad_s[rows * g_stride];
            size_t nv = value_count(&c, rows);
            for (int ensemble = 0; ensemble <= 1; ensemble++) {
                kd_test_fill_sentinel(grad_s, rows * g_stride);
                if (ensemble) {
                    expect_ok(kd_loss_compute_ensemble(loss, z, classes, packed_members, members,
                                                       NULL, classes, labels, rows, classes,
                                                       values_p, grad_p, classes),
                              ctx);
                    expect_ok(kd_loss_compute_ensemble(loss, zs, z_stride, strided_members,
                                                       members, NULL, v_stride, labels, rows,
                                                       classes, values_s, grad_s, g_stride),
                              ctx);
                } else {
                    expect_ok(kd_loss_compute(loss, z, classes, v[0], classes, labels, rows,
                                              classes, values_p, grad_p, classes),
                              ctx);
                    expect_ok(kd_loss_compute(loss, zs, z_stride, vs[0], v_stride, labels, rows,
                                              classes, values_s, grad_s, g_stride),
                              ctx);
                }
                if (memcmp(values_p, values_s, nv * sizeof(float)) != 0)
                    fail_msg("%s%s: values differ", ctx, ensemble ? " (ensemble)" : "");
                for (size_t r = 0; r < rows; r++) {
                    if (memcmp(grad_p + r * classes, grad_s + r * g_stride,
                               classes * sizeof(float)) != 0)
                        fail_msg("%s%s: gradient row %zu differs", ctx,
                                 ensemble ? " (ensemble)" : "", r);
                    if (!all_finite(grad_s + r * g_stride, classes))
                        fail_msg("%s: bad gradient row %zu", ctx, r);
                }
                /* The gaps of the gradient are not written: sentinel pattern intact. */
                float expected[rows * g_stride];
                kd_test_fill_sentinel(expected, rows * g_stride);
                for (size_t r = 0; r < rows; r++)
                    for (size_t i = classes; i < g_stride; i++)
                        if (memcmp(&grad_s[r * g_stride + i], &expected[r * g_stride + i],
                                   sizeof(float)) != 0)
                            fail_msg("%s: gradient gap [%zu][%zu] was written", ctx, r, i);
            }
            /* values NULL or grad NULL: the other output is unchanged. */
            float values_n[rows * KD_LOSS_VALUE_COUNT], grad_n[n];
            expect_ok(kd_loss_compute(loss, z, classes, v[0], classes, labels, rows, classes,
                                      NULL, grad_n, classes),
                      ctx);
            expect_ok(kd_loss_compute(loss, z, classes, v[0], classes, labels, rows, classes,
                                      values_n, NULL, classes),
                      ctx);
            expect_ok(kd_loss_compute(loss, z, classes, v[0], classes, labels, rows, classes,
                                      values_p, grad_p, classes),
                      ctx);
            assert_memory_equal(values_n, values_p, nv * sizeof(float));
            assert_memory_equal(grad_n, grad_p, sizeof grad_n);
        }
    kd_loss_destroy(loss);
}

/* Logits near FLT_MAX, or huge against T, are outside what float kernels can difference:
 * such rows must still get the exact loss and gradient (found by the loss fuzzer). */
static void huge_logits_keep_exact_gradients(void **state)
{
    (void)state;
    kd_loss *loss;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 1.0), KD_OK);
    const float tiny = 0x1p-149f;
    const float z1[5] = {FLT_MAX, tiny, tiny, tiny, tiny};
    const float v1[5] = {2.125f, 5.5f, -4.6875f, 5.875f, -2.625f};
    const float z2[2] = {-1000.0f, -0.0625f}, v2[2] = {FLT_MAX, -5.0f};
    float values[KD_LOSS_VALUE_COUNT], g[5];

    /* Student one-hot on class 0: the gradient is p - q = onehot - softmax(v). */
    assert_int_equal(kd_loss_compute(loss, z1, 5, v1, 5, NULL, 1, 5, values, g, 5), KD_OK);
    double vmax = 5.875, sum = 0.0;
    for (int i = 0; i < 5; i++)
        sum += exp((double)v1[i] - vmax);
    for (int i = 0; i < 5; i++) {
        double want = (i == 0 ? 1.0 : 0.0) - exp((double)v1[i] - vmax) / sum;
        if (fabs((double)g[i] - want) > 1e-6)
            fail_msg("class %d: gradient %g, want %g", i, (double)g[i], want);
    }
    /* Teacher one-hot on class 0, where the student has e^-999.9375: KL = 999.9375. */
    assert_int_equal(kd_loss_compute(loss, z2, 2, v2, 2, NULL, 1, 2, values, g, 2), KD_OK);
    assert_true(fabs(values[KD_LOSS_VALUE_SOFT] - 999.9375) <= 1e-5 * 999.9375);
    assert_true(g[0] == -1.0f && g[1] == 1.0f);
    kd_loss_destroy(loss);
}

/* A student whose logits are the teacher's plus a constant (rounded to float): the divergence
 * is only the rounding of the shifted logits, 1e-14 to 1e-6, and must keep its relative
 * accuracy. (v - z) - (vmax - zmax) formed in float lost it entirely: loss and gradient 0. */
static void shifted_student_keeps_tiny_divergences(void **state)
{
    (void)state;
    static const size_t shapes[][2] = {{3, 10}, {2, 1000}, {1, 32000}};
    static const float offsets[] = {-3.0f, 0.7f, 10.0f, 1000.0f, 60000.0f};
    static const double temperatures[] = {1.0, 4.0, 20.0};
    static const kd_divergence divergences[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY};
    static const double alphas[] = {1.0, 0.7};
    kd_loss *loss = new_loss();
    kd_test_rng rng = {20261128};
    for (size_t s = 0; s < COUNT(shapes); s++) {
        const size_t rows = shapes[s][0], classes = shapes[s][1];
        float *z = NEW(float, rows * classes), *v = NEW(float, rows * classes);
        int32_t *labels = NEW(int32_t, rows);
        fill_normal(v, rows * classes, 1.0 + (double)s, &rng);
        fill_labels(labels, rows, classes, &rng);
        for (size_t o = 0; o < COUNT(offsets); o++) {
            for (size_t i = 0; i < rows * classes; i++)
                z[i] = v[i] + offsets[o];
            char what[64];
            snprintf(what, sizeof what, "student = teacher + %g", (double)offsets[o]);
            for (size_t t = 0; t < COUNT(temperatures); t++)
                for (size_t d = 0; d < COUNT(divergences); d++)
                    for (size_t a = 0; a < COUNT(alphas); a++) {
                        loss_config c = make_config(divergences[d], temperatures[t], alphas[a],
                                                    KD_REDUCTION_NONE);
                        check_against_reference(loss, &c, z, v, alphas[a] < 1.0 ? labels : NULL,
                                                rows, classes, 1e-5, what);
                    }
        }
        free(labels);
        free(v);
        free(z);
    }
    kd_loss_destroy(loss);
    expect_no_mismatch();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(random_logits_every_temperature, reset_mismatches),
        cmocka_unit_test_setup(many_classes, reset_mismatches),
        cmocka_unit_test_setup(finite_differences, reset_mismatches),
        cmocka_unit_test_setup(t_squared_keeps_the_gradient_scale, reset_mismatches),
        cmocka_unit_test_setup(logit_matching_is_the_high_temperature_kl, reset_mismatches),
        cmocka_unit_test_setup(kl_of_a_distribution_with_itself_is_zero, reset_mismatches),
        cmocka_unit_test_setup(jensen_shannon_is_symmetric_at_one_half, reset_mismatches),
        cmocka_unit_test_setup(jensen_shannon_limits_are_exactly_zero, reset_mismatches),
        cmocka_unit_test_setup(cross_entropy_is_kl_plus_entropy, reset_mismatches),
        cmocka_unit_test_setup(ensemble_of_one_is_plain_compute, reset_mismatches),
        cmocka_unit_test_setup(ensemble_against_reference, reset_mismatches),
        cmocka_unit_test_setup(masked_classes_are_removed, reset_mismatches),
        cmocka_unit_test_setup(teacher_masks_classes_the_student_keeps, reset_mismatches),
        cmocka_unit_test_setup(probabilities_teacher, reset_mismatches),
        cmocka_unit_test_setup(hard_loss_without_teacher, reset_mismatches),
        cmocka_unit_test_setup(soft_loss_without_labels, reset_mismatches),
        cmocka_unit_test_setup(ignored_rows_are_not_read, reset_mismatches),
        cmocka_unit_test_setup(gradient_may_alias_student_logits, reset_mismatches),
        cmocka_unit_test_setup(strided_equals_packed, reset_mismatches),
        cmocka_unit_test(huge_logits_keep_exact_gradients),
        cmocka_unit_test_setup(shifted_student_keeps_tiny_divergences, reset_mismatches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
