/* The AVX2 + FMA kernels of loss_fast.h: 8 floats at a time, the same formulas as the portable
 * kernels, with a polynomial e^x (Cephes' expf, about 2 ulp) and double or blocked double
 * accumulation. Compiled with -mavx2 -mfma; called only when the CPU has both.
 * SPDX-License-Identifier: MIT */
#include "loss_fast.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define SPLAT(x) _mm256_set1_ps(x)

/* e^x per lane; 0 below -87.3 (and for -INFINITY); exactly 1 at 0. */
static inline __m256 exp8(__m256 x)
{
    const __m256 lo = SPLAT(-87.33654f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, SPLAT(88.37626f)), lo);
    __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, SPLAT(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(fx, SPLAT(0.693359375f), x);
    r = _mm256_fnmadd_ps(fx, SPLAT(-2.12194440e-4f), r);
    __m256 y = SPLAT(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, SPLAT(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, SPLAT(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, SPLAT(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, SPLAT(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, SPLAT(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, SPLAT(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

/* (e^x - 1 - x) / x^2 per lane, for |x| < 1/2. */
static inline __m256 tail8(__m256 x)
{
    __m256 y = SPLAT(kd_fast_tail_coefficients[KD_FAST_TAIL_TERMS - 1]);
    for (int k = KD_FAST_TAIL_TERMS - 2; k >= 0; k--)
        y = _mm256_fmadd_ps(y, x, SPLAT(kd_fast_tail_coefficients[k]));
    return y;
}

static inline __m256 abs8(__m256 x)
{
    return _mm256_andnot_ps(SPLAT(-0.0f), x);
}

/* A lane mask of |x| < 1/2 (false for NaN). */
static inline __m256 small8(__m256 x)
{
    return _mm256_cmp_ps(abs8(x), SPLAT(0.5f), _CMP_LT_OQ);
}

static inline float horizontal_max(__m256 x)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* The last n % 8 values of a row, padded with -INFINITY (a masked class). */
static inline __m256 load_tail(const float *x, size_t left)
{
    float buffer[8];
    for (size_t i = 0; i < 8; i++)
        buffer[i] = i < left ? x[i] : -INFINITY;
    return _mm256_loadu_ps(buffer);
}

static unsigned avx2_check(const float *z, const float *v, size_t n)
{
    const __m256 inf = SPLAT(INFINITY), ninf = SPLAT(-INFINITY);
    __m256 zbad = _mm256_setzero_ps(), zkeep = zbad, vbad = zbad, vkeep = zbad, misfit = zbad;
    for (size_t i = 0; i < n; i += 8) {
        __m256 zi = i + 8 <= n ? _mm256_loadu_ps(z + i) : load_tail(z + i, n - i);
        zbad = _mm256_or_ps(zbad, _mm256_or_ps(_mm256_cmp_ps(zi, zi, _CMP_UNORD_Q),
                                               _mm256_cmp_ps(zi, inf, _CMP_EQ_OQ)));
        __m256 zmasked = _mm256_cmp_ps(zi, ninf, _CMP_EQ_OQ);
        zkeep = _mm256_or_ps(zkeep, _mm256_cmp_ps(zi, ninf, _CMP_NEQ_UQ));
        if (v == NULL)
            continue;
        __m256 vi = i + 8 <= n ? _mm256_loadu_ps(v + i) : load_tail(v + i, n - i);
        vbad = _mm256_or_ps(vbad, _mm256_or_ps(_mm256_cmp_ps(vi, vi, _CMP_UNORD_Q),
                                               _mm256_cmp_ps(vi, inf, _CMP_EQ_OQ)));
        __m256 vmasked = _mm256_cmp_ps(vi, ninf, _CMP_EQ_OQ);
        vkeep = _mm256_or_ps(vkeep, _mm256_cmp_ps(vi, ninf, _CMP_NEQ_UQ));
        misfit = _mm256_or_ps(misfit, _mm256_andnot_ps(vmasked, zmasked));
    }
    unsigned bits = 0;
    bits |= _mm256_movemask_ps(zbad) ? KD_FAST_STUDENT_NONFINITE : 0u;
    bits |= _mm256_movemask_ps(zkeep) ? 0u : KD_FAST_STUDENT_MASKED;
    if (v != NULL) {
        bits |= _mm256_movemask_ps(vbad) ? KD_FAST_TEACHER_NONFINITE : 0u;
        bits |= _mm256_movemask_ps(vkeep) ? 0u : KD_FAST_TEACHER_MASKED;
        bits |= _mm256_movemask_ps(misfit) ? KD_FAST_MASK_MISFIT : 0u;
    }
    return bits;
}

static void avx2_max(const float *z, const float *v, size_t n, float *zmax, float *vmax)
{
    __m256 zm = SPLAT(-INFINITY), vm = zm;
    for (size_t i = 0; i < n; i += 8) {
        int full = i + 8 <= n;
        zm = _mm256_max_ps(zm, full ? _mm256_loadu_ps(z + i) : load_tail(z + i, n - i));
        if (v != NULL)
            vm = _mm256_max_ps(vm, full ? _mm256_loadu_ps(v + i) : load_tail(v + i, n - i));
    }
    *zmax = horizontal_max(zm);
    *vmax = horizontal_max(vm);
}

static size_t avx2_find(const float *x, size_t n, float value)
{
    const __m256 target = SPLAT(value);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        int hits = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + i), target, _CMP_EQ_OQ));
        if (hits)
            return i + (size_t)__builtin_ctz((unsigned)hits);
    }
    for (; i < n; i++)
        if (x[i] == value)
            return i;
    return 0;
}

/* Double accumulators, two per sum (low and high four lanes). */
typedef struct dsum {
    __m256d lo, hi;
} dsum;

static inline void add_double(dsum *acc, __m256 x)
{
    acc->lo = _mm256_add_pd(acc->lo, _mm256_cvtps_pd(_mm256_castps256_ps128(x)));
    acc->hi = _mm256_add_pd(acc->hi, _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
}

static inline double total(const dsum *acc)
{
    __m256d s = _mm256_add_pd(acc->lo, acc->hi);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* The row sums. Sums of non-negative terms (the exponentials, their counts of exact ones, and
 * sum w u <= 0) are kept in float for a block of four vectors and then added in double; the
 * signed sum w b and sum w phi(b), on which the divergence rests, go to double every vector. */
enum { SUM_RESTS = 7, BLOCK = 4 };
typedef struct row_acc {
    __m256 block[SUM_RESTS]; /* student rest, ones; teacher rest, ones; hard rest, ones; outside */
    __m256 wu, overflow;
    dsum rest[SUM_RESTS], wb, wphi, wu_total;
} row_acc;

/* Adds e^x to a rest sum where x < 0 and counts a one where x = 0. */
static inline void add_rest(__m256 *rest, __m256 *ones, __m256 x, __m256 e)
{
    __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
    *rest = _mm256_add_ps(*rest, _mm256_and_ps(negative, e));
    *ones = _mm256_add_ps(*ones, _mm256_andnot_ps(negative, SPLAT(1.0f)));
}

static inline void sums_step(const kd_fast_row_consts *c, __m256 zi, __m256 vi, row_acc *a,
                             int teacher, int label)
{
    __m256 dz = _mm256_sub_ps(zi, SPLAT(c->zmax));
    if (label)
        add_rest(&a->block[4], &a->block[5], dz, exp8(dz));
    if (!teacher)
        return;
    const __m256 inv_t = SPLAT(c->inv_t);
    __m256 s = _mm256_mul_ps(dz, inv_t);
    __m256 u = _mm256_mul_ps(_mm256_sub_ps(vi, SPLAT(c->vmax)), inv_t);
    __m256 es = exp8(s), w = exp8(u);
    add_rest(&a->block[0], &a->block[1], s, es);
    add_rest(&a->block[2], &a->block[3], u, w);
    __m256 kept = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_GT_OQ);
    a->block[6] = _mm256_add_ps(a->block[6], _mm256_andnot_ps(kept, es));
    __m256 b = _mm256_fmsub_ps(_mm256_sub_ps(_mm256_sub_ps(vi, zi), SPLAT(c->delta)), inv_t,
                               SPLAT(c->centre));
    b = _mm256_and_ps(kept, b);
    a->overflow = _mm256_or_ps(a->overflow, _mm256_cmp_ps(b, SPLAT(-KD_FAST_PHI_LIMIT), _CMP_LT_OQ));
    __m256 small = small8(b);
    __m256 phi = _mm256_mul_ps(_mm256_mul_ps(b, b), tail8(_mm256_sub_ps(_mm256_setzero_ps(), b)));
    if (_mm256_movemask_ps(_mm256_andnot_ps(small, kept))) {
        __m256 nb = _mm256_min_ps(_mm256_sub_ps(_mm256_setzero_ps(), b), SPLAT(KD_FAST_PHI_LIMIT));
        __m256 large = _mm256_add_ps(_mm256_sub_ps(exp8(nb), SPLAT(1.0f)), b);
        phi = _mm256_blendv_ps(large, phi, small);
    }
    add_double(&a->wb, _mm256_mul_ps(w, b));
    add_double(&a->wphi, _mm256_mul_ps(w, phi));
    a->wu = _mm256_add_ps(a->wu, _mm256_mul_ps(w, _mm256_and_ps(kept, u)));
}

static inline void flush(row_acc *a)
{
    for (int k = 0; k < SUM_RESTS; k++) {
        add_double(&a->rest[k], a->block[k]);
        a->block[k] = _mm256_setzero_ps();
    }
    add_double(&a->wu_total, a->wu);
    a->wu = _mm256_setzero_ps();
}

static inline void sums_loop(const float *z, const float *v, size_t n,
                             const kd_fast_row_consts *c, row_acc *a, int teacher, int label)
{
    size_t i = 0, steps = 0;
    for (; i + 8 <= n; i += 8) {
        sums_step(c, _mm256_loadu_ps(z + i), teacher ? _mm256_loadu_ps(v + i) : _mm256_setzero_ps(),
                  a, teacher, label);
        if (++steps % BLOCK == 0)
            flush(a);
    }
    if (i < n)
        sums_step(c, load_tail(z + i, n - i),
                  teacher ? load_tail(v + i, n - i) : _mm256_setzero_ps(), a, teacher, label);
    flush(a);
}

static void avx2_sums(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                      kd_fast_row_sums *out)
{
    row_acc a;
    memset(&a, 0, sizeof a);
    if (c->teacher && c->label)
        sums_loop(z, v, n, c, &a, 1, 1);
    else if (c->teacher)
        sums_loop(z, v, n, c, &a, 1, 0);
    else
        sums_loop(z, v, n, c, &a, 0, 1);
    out->student_rest = total(&a.rest[0]) + (total(&a.rest[1]) - 1.0);
    out->teacher_rest = total(&a.rest[2]) + (total(&a.rest[3]) - 1.0);
    out->hard_rest = total(&a.rest[4]) + (total(&a.rest[5]) - 1.0);
    out->outside = total(&a.rest[6]);
    out->wb = total(&a.wb);
    out->wphi = total(&a.wphi);
    out->wu = total(&a.wu_total);
    out->overflow = _mm256_movemask_ps(a.overflow) != 0;
}

static inline __m256 grad_step(const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                               __m256 zi, __m256 vi, int teacher, int label)
{
    __m256 dz = _mm256_sub_ps(zi, SPLAT(c->zmax)), x = _mm256_setzero_ps();
    if (teacher) {
        const __m256 inv_t = SPLAT(c->inv_t);
        __m256 p = _mm256_mul_ps(exp8(_mm256_mul_ps(dz, inv_t)), SPLAT(g->inv_zs));
        __m256 q = _mm256_mul_ps(exp8(_mm256_mul_ps(_mm256_sub_ps(vi, SPLAT(c->vmax)), inv_t)),
                                 SPLAT(g->inv_zq));
        __m256 d = _mm256_fmsub_ps(_mm256_sub_ps(_mm256_sub_ps(vi, zi), SPLAT(c->delta)), inv_t,
                                   SPLAT(g->shift));
        __m256 m = _mm256_sub_ps(_mm256_setzero_ps(), d); /* expm1(m) = m + m^2 tail(m) */
        __m256 near = _mm256_mul_ps(q, _mm256_fmadd_ps(_mm256_mul_ps(m, m), tail8(m), m));
        x = _mm256_mul_ps(SPLAT(g->soft), _mm256_blendv_ps(_mm256_sub_ps(p, q), near, small8(d)));
    }
    if (label)
        x = _mm256_fmadd_ps(SPLAT(g->hard), _mm256_mul_ps(exp8(dz), SPLAT(g->inv_z1)), x);
    return x;
}

static inline void grad_loop(const float *z, const float *v, size_t n,
                             const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                             float *grad, int teacher, int label)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(grad + i, grad_step(c, g, _mm256_loadu_ps(z + i),
                                             teacher ? _mm256_loadu_ps(v + i) : _mm256_setzero_ps(),
                                             teacher, label));
    if (i < n) {
        float buffer[8];
        _mm256_storeu_ps(buffer, grad_step(c, g, load_tail(z + i, n - i),
                                           teacher ? load_tail(v + i, n - i) : _mm256_setzero_ps(),
                                           teacher, label));
        memcpy(grad + i, buffer, (n - i) * sizeof *grad);
    }
}

static void avx2_grad(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                      const kd_fast_grad_consts *g, float *grad)
{
    if (c->teacher && c->label)
        grad_loop(z, v, n, c, g, grad, 1, 1);
    else if (c->teacher)
        grad_loop(z, v, n, c, g, grad, 1, 0);
    else
        grad_loop(z, v, n, c, g, grad, 0, 1);
}

static void avx2_exp(const float *x, size_t n, float *out)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, exp8(_mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        out[i] = kd_fast_exp(x[i]);
}

const kd_fast_kernels *kd_fast_avx2(void)
{
    static const kd_fast_kernels kernels = {"avx2",    avx2_check, avx2_max, avx2_find,
                                            avx2_sums, avx2_grad,  avx2_exp};
    return &kernels;
}
