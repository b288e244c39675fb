/* The fused KL / cross-entropy / hard loss of one row, its portable kernels, and the run-time
 * choice of kernels. The formulation (docs/math.md, "KL divergence"): with w_i = e^u_i and
 * b_i = a_i - centre, where centre is a at the teacher's top class,
 *     KL = beta + lambda,   beta = sum w b / W,
 *     lambda = log1p(sum w phi(b) / W - beta) - log1p(-p_out),
 * and log q_i - log p_i = b_i + lambda, so p_i - q_i = q_i expm1(-(b_i + lambda)): every term
 * keeps its relative accuracy at high T although p and q are rounded to float.
 * SPDX-License-Identifier: MIT */
#include "loss_fast.h"

#include <math.h>

float kd_fast_exp(float x)
{
    return x < -87.33654f ? 0.0f : expf(x);
}

const float kd_fast_tail_coefficients[KD_FAST_TAIL_TERMS] = {
    1.0f / 2,   1.0f / 6,    1.0f / 24,    1.0f / 120,
    1.0f / 720, 1.0f / 5040, 1.0f / 40320, 1.0f / 362880};

/* (e^x - 1 - x) / x^2 for |x| <= 1/2, by its Taylor series. */
static float expm1_tail(float x)
{
    float y = kd_fast_tail_coefficients[KD_FAST_TAIL_TERMS - 1];
    for (int k = KD_FAST_TAIL_TERMS - 2; k >= 0; k--)
        y = y * x + kd_fast_tail_coefficients[k];
    return y;
}

float kd_fast_phi(float b)
{
    if (fabsf(b) < 0.5f)
        return b * b * expm1_tail(-b); /* e^-b - 1 + b would cancel */
    return kd_fast_exp(-b) - 1.0f + b;
}

float kd_fast_difference(float p, float q, float d)
{
    return fabsf(d) < 0.5f ? q * expm1f(-d) : p - q;
}

/* The largest of n values, and where it first occurs. */
static float max_and_first(const float *x, size_t n, size_t *first)
{
    float max = -INFINITY;
    *first = 0;
    for (size_t i = 0; i < n; i++) {
        if (x[i] > max) {
            max = x[i];
            *first = i;
        }
    }
    return max;
}

static unsigned portable_check(const float *z, const float *v, size_t n, kd_fast_row_info *info)
{
    unsigned bits = KD_FAST_STUDENT_MASKED | (v != NULL ? KD_FAST_TEACHER_MASKED : 0u);
    for (size_t i = 0; i < n; i++) {
        if (isnan(z[i]) || z[i] == INFINITY)
            bits |= KD_FAST_STUDENT_NONFINITE;
        if (z[i] != -INFINITY)
            bits &= ~(unsigned)KD_FAST_STUDENT_MASKED;
        if (v == NULL)
            continue;
        if (isnan(v[i]) || v[i] == INFINITY)
            bits |= KD_FAST_TEACHER_NONFINITE;
        if (v[i] != -INFINITY)
            bits &= ~(unsigned)KD_FAST_TEACHER_MASKED;
        if (z[i] == -INFINITY && v[i] != -INFINITY)
            bits |= KD_FAST_MASK_MISFIT;
    }
    if (bits == 0) {
        info->zmax = max_and_first(z, n, &info->zfirst);
        if (v != NULL)
            info->vmax = max_and_first(v, n, &info->top);
        info->absmax = 0.0f;
        for (size_t i = 0; i < n; i++) {
            if (z[i] != -INFINITY)
                info->absmax = fmaxf(info->absmax, fabsf(z[i]));
            if (v != NULL && v[i] != -INFINITY)
                info->absmax = fmaxf(info->absmax, fabsf(v[i]));
        }
    }
    return bits;
}

int kd_fast_row_fits(const kd_fast_row_info *info, double t)
{
    return (double)info->absmax <= 0x1p16 * fmin(t, 1.0);
}

/* r_i of the row: (v - z) - delta, in double (v - z exact) and rounded once. */
static float log_ratio(const kd_fast_row_consts *c, float z, float v)
{
    return (float)(((double)v - (double)z) - c->delta);
}

/* Whether e^(z - zmax) has its own row in the store, rather than being (e^s)^T. */
static int hard_exp_stored(const kd_fast_row_consts *c)
{
    return !c->teacher || c->squarings < 0;
}

/* e^(z - zmax) = (e^s)^T by c->squarings squarings when T = 2^squarings. */
static float squared(const kd_fast_row_consts *c, float es)
{
    for (int k = 0; k < c->squarings; k++)
        es *= es;
    return es;
}

static void portable_sums(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                          kd_fast_row_sums *out, float *store)
{
    kd_fast_row_sums s = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const int stored_e1 = hard_exp_stored(c);
    for (size_t i = 0; i < n; i++) {
        /* Every class but the first maximum's counts in the rest sums. */
        const int zrest = i != c->zfirst, vrest = i != c->vfirst;
        float dz = z[i] - c->zmax;
        float es = c->teacher ? kd_fast_exp(dz * c->inv_t) : 0.0f;
        if (c->label) {
            float e1 = stored_e1 ? kd_fast_exp(dz) : squared(c, es);
            if (stored_e1)
                store[3 * n + i] = e1;
            s.hard_rest += zrest ? e1 : 0.0f;
        }
        if (!c->teacher)
            continue;
        float u = (v[i] - c->vmax) * c->inv_t, r = log_ratio(c, z[i], v[i]);
        float w = store[n + i] = kd_fast_exp(u);
        store[i] = es;
        store[2 * n + i] = r;
        s.student_rest += zrest ? es : 0.0f;
        s.teacher_rest += vrest ? w : 0.0f;
        if (w > 0.0f) {
            s.wb += (double)(w * (r * c->inv_t - c->centre));
            s.wu += c->entropy ? (double)(w * u) : 0.0;
        } else {
            s.outside += es;
        }
    }
    *out = s;
}

static double portable_phi(size_t n, float inv_t, float centre, const float *store,
                           int *overflow)
{
    double sum = 0.0;
    *overflow = 0;
    for (size_t i = 0; i < n; i++) {
        float w = store[n + i];
        if (w > 0.0f) {
            float b = store[2 * n + i] * inv_t - centre;
            *overflow |= b < -KD_FAST_PHI_LIMIT;
            sum += (double)(w * kd_fast_phi(b));
        }
    }
    return sum;
}

/* The soft part (p_i - q_i) of element i, from the store. */
static float soft_difference(const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                             const float *store, size_t n, size_t i)
{
    return kd_fast_difference(store[i] * g->inv_zs, store[n + i] * g->inv_zq,
                              store[2 * n + i] * c->inv_t - g->shift);
}

/* p1_i (unnormalised) from the store. */
static float hard_exp(const kd_fast_row_consts *c, const float *store, size_t n, size_t i)
{
    return hard_exp_stored(c) ? store[3 * n + i] : squared(c, store[i]);
}

static void portable_grad(size_t n, const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                          const float *store, float *grad)
{
    for (size_t i = 0; i < n; i++) {
        float x = 0.0f;
        if (c->teacher)
            x = g->soft * soft_difference(c, g, store, n, i);
        if (c->label)
            x += g->hard * (hard_exp(c, store, n, i) * g->inv_z1);
        grad[i] = x;
    }
}

static void portable_exp(const float *x, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = kd_fast_exp(x[i]);
}

const kd_fast_kernels *kd_fast_portable(void)
{
    static const kd_fast_kernels kernels = {"portable",    portable_check, portable_sums,
                                            portable_phi,  portable_grad,  portable_exp};
    return &kernels;
}

const kd_fast_kernels *kd_fast_best(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        return kd_fast_avx2();
#endif
    return kd_fast_portable();
}

void kd_fast_row(const kd_fast_kernels *k, const kd_row_spec *spec, const float *z,
                 const float *v, size_t n, int32_t label, const kd_fast_row_info *info,
                 float *store, int stream, double *soft, double *hard, float *grad)
{
    kd_fast_row_consts c = {0.0f, 0.0f, (float)(1.0 / spec->t), 0.0f, 0.0, 0, 0,
                            spec->has_teacher, spec->has_label,
                            spec->divergence == KD_DIVERGENCE_CROSS_ENTROPY, -1};
    for (int power = 0; power < 4; power++)
        if (spec->t == (double)(1 << power))
            c.squarings = power;
    c.zmax = info->zmax;
    c.zfirst = info->zfirst;
    if (c.teacher) {
        c.vmax = info->vmax;
        c.vfirst = info->top;
        c.delta = (double)c.vmax - (double)c.zmax;
        c.centre = log_ratio(&c, z[info->top], v[info->top]) * c.inv_t;
    }
    kd_fast_row_sums s;
    k->sums(z, v, n, &c, &s, store);

    kd_fast_grad_consts g = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, stream};
    *soft = 0.0;
    if (c.teacher) {
        const double zs = 1.0 + s.student_rest, w = 1.0 + s.teacher_rest;
        const double p_out = s.outside / zs, beta = s.wb / w;
        /* log q_i - log p_i = b_i + lambda */
        /* log(Zs / Zq) = log1p((Zs - Zq) / Zq), one logarithm */
        double lambda = (double)c.centre + log1p((s.student_rest - s.teacher_rest) / w);
        double centre = c.centre, kl = beta + lambda;
        if (kl < KD_FAST_DIRECT_KL && p_out <= 0.5) {
            /* The phi form about the q-weighted mean of a (any centre is exact; one near the
             * mean keeps the b_i, and the cancellation in beta + lambda, small). */
            const float mean = (float)((double)c.centre + beta);
            int overflow = 0;
            double wphi = k->phi(n, c.inv_t, mean, store, &overflow);
            if (!overflow) {
                const double beta_mean = beta - ((double)mean - (double)c.centre);
                centre = mean;
                lambda = log1p(wphi / w - beta_mean) - (p_out > 0.0 ? log1p(-p_out) : 0.0);
                kl = beta_mean + lambda;
            }
        }
        *soft = fmax(kl, 0.0);
        if (spec->divergence == KD_DIVERGENCE_CROSS_ENTROPY)
            *soft += log1p(s.teacher_rest) - s.wu / w; /* + H(q) */
        g.inv_zs = (float)(1.0 / zs);
        g.inv_zq = (float)(1.0 / w);
        g.shift = (float)(centre - lambda);
        g.soft = (float)(spec->soft_weight / spec->t);
    }
    const double z1 = 1.0 + s.hard_rest;
    *hard = 0.0;
    float z_label = 0.0f;
    if (c.label) {
        z_label = z[label];
        *hard = log1p(s.hard_rest) - ((double)z_label - (double)c.zmax);
        g.inv_z1 = (float)(1.0 / z1);
        g.hard = (float)spec->hard_weight;
    }
    if (grad == NULL)
        return;
    k->grad(n, &c, &g, store, grad); /* may overwrite z: the label's logit was kept */
    if (c.label && spec->hard_weight != 0.0) {
        /* p1_y - 1 without cancellation: -(Z1 - 1) / Z1 when y is a top class. */
        double p1_minus_1 = z_label == c.zmax ? -s.hard_rest / z1
                                              : exp((double)z_label - (double)c.zmax) / z1 - 1.0;
        double x = spec->hard_weight * p1_minus_1;
        if (c.teacher)
            x += (double)g.soft * (double)soft_difference(&c, &g, store, n, (size_t)label);
        grad[label] = (float)x;
    }
}
