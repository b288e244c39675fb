/* The AVX2 + FMA kernels of loss_fast.h: 8 floats at a time, the same formulas as the portable
 * kernels, with a polynomial e^x (Cephes' expf, about 2 ulp) and double or blocked double
 * accumulation. Compiled with -mavx2 -mfma; called only when the CPU has both.
 * SPDX-License-Identifier: MIT */
#include "loss_fast.h"

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define SPLAT(x) _mm256_set1_ps(x)
/* The per-vector steps must be inlined into their loops for the accumulators to stay in
 * registers and the teacher / label flags to be constants. */
#define INLINE static inline __attribute__((always_inline))

/* e^x per lane, for x <= 88; 0 below -87.3 (and for -INFINITY or NaN); exactly 1 at 0. The
 * integer n = round(x / ln 2) is formed by adding 1.5 * 2^23 + 127, whose low mantissa bits
 * then hold n + 127, the biased exponent of 2^n. */
INLINE __m256 exp8(__m256 x)
{
    const __m256 shifter = SPLAT(12582912.0f + 127.0f);
    __m256 in_range = _mm256_cmp_ps(x, SPLAT(-87.33654f), _CMP_GE_OQ);
    __m256 t = _mm256_fmadd_ps(x, SPLAT(1.44269504088896341f), shifter);
    __m256 n = _mm256_sub_ps(t, shifter);
    __m256 r = _mm256_fnmadd_ps(n, SPLAT(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, SPLAT(-2.12194440e-4f), r);
    __m256 y = SPLAT(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, r, SPLAT(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, r, SPLAT(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, r, SPLAT(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, r, SPLAT(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, r, SPLAT(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, SPLAT(1.0f)));
    __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(t), 23));
    return _mm256_and_ps(in_range, _mm256_mul_ps(y, scale));
}

/* (e^x - 1 - x) / x^2 per lane, for |x| < 1/2: the first KD_FAST_TAIL_TERMS terms. */
INLINE __m256 tail8(__m256 x)
{
    const float *c = kd_fast_tail_coefficients;
    __m256 y = _mm256_fmadd_ps(SPLAT(c[7]), x, SPLAT(c[6]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[5]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[4]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[3]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[2]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[1]));
    return _mm256_fmadd_ps(y, x, SPLAT(c[0]));
}

/* The same for |x| < 2: tail8(x) + x^8 times the next terms, up to 1/16!. */
INLINE __m256 long_tail8(__m256 x, __m256 short_tail)
{
    const float *c = kd_fast_tail_coefficients;
    __m256 y = _mm256_fmadd_ps(SPLAT(c[14]), x, SPLAT(c[13]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[12]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[11]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[10]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[9]));
    y = _mm256_fmadd_ps(y, x, SPLAT(c[8]));
    __m256 x2 = _mm256_mul_ps(x, x), x4 = _mm256_mul_ps(x2, x2);
    return _mm256_fmadd_ps(_mm256_mul_ps(x4, x4), y, short_tail);
}

INLINE __m256 abs8(__m256 x)
{
    return _mm256_andnot_ps(SPLAT(-0.0f), x);
}

/* A lane mask of |x| < 1/2 (false for NaN). */
INLINE __m256 small8(__m256 x)
{
    return _mm256_cmp_ps(abs8(x), SPLAT(0.5f), _CMP_LT_OQ);
}

INLINE float horizontal_max(__m256 x)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
    return _mm_cvtss_f32(m);
}

/* The lanes of the last n % 8 values of a row. */
INLINE __m256i tail_mask(size_t left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The last n % 8 values of a row, padded with -INFINITY (a masked class). */
INLINE __m256 load_tail(const float *x, size_t left)
{
    __m256i lanes = tail_mask(left);
    return _mm256_blendv_ps(SPLAT(-INFINITY), _mm256_maskload_ps(x, lanes),
                            _mm256_castsi256_ps(lanes));
}

/* The last n % 8 values of one of the store's rows, padded with 0. */
INLINE __m256 load_stored_tail(const float *x, size_t left)
{
    return _mm256_maskload_ps(x, tail_mask(left));
}

/* Per lane: the running maximum and the first index where it occurred; `index` holds the
 * lanes' indices. */
INLINE void max_step(__m256 x, __m256 *max, __m256i *where, __m256i index)
{
    __m256 above = _mm256_cmp_ps(x, *max, _CMP_GT_OQ);
    *where = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(*where),
                                                  _mm256_castsi256_ps(index), above));
    *max = _mm256_max_ps(*max, x);
}

/* The row's maximum and its first index, from the lanes'. */
INLINE float finish_max(__m256 max, __m256i where, size_t *first)
{
    float m = horizontal_max(max), lane_max[8];
    int32_t lane_where[8];
    _mm256_storeu_ps(lane_max, max);
    _mm256_storeu_si256((__m256i *)lane_where, where);
    int32_t best = INT32_MAX;
    for (int k = 0; k < 8; k++)
        if (lane_max[k] == m && lane_where[k] < best)
            best = lane_where[k];
    *first = (size_t)best;
    return m;
}

/* The first index of m in x[0..n) (for rows longer than the lanes' int32 indices hold). */
static size_t first_of(const float *x, size_t n, float m)
{
    size_t i = 0;
    while (i + 1 < n && x[i] != m)
        i++;
    return i;
}

/* One vector of the check: bad (NaN or +INFINITY: not below +INFINITY) and kept (above
 * -INFINITY) lanes are or-ed into the accumulators. */
INLINE __m256 check_step(__m256 x, __m256 *bad, __m256 *keep)
{
    *bad = _mm256_or_ps(*bad, _mm256_cmp_ps(x, SPLAT(INFINITY), _CMP_NLT_UQ));
    __m256 kept = _mm256_cmp_ps(x, SPLAT(-INFINITY), _CMP_GT_OQ);
    *keep = _mm256_or_ps(*keep, kept);
    return kept;
}

static unsigned avx2_check(const float *z, const float *v, size_t n, kd_fast_row_info *info)
{
    __m256 zbad = _mm256_setzero_ps(), zkeep = zbad, vbad = zbad, vkeep = zbad, misfit = zbad;
    __m256 zmax = SPLAT(-INFINITY), vmax = zmax, absmax = zbad;
    __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), zwhere = _mm256_setzero_si256();
    __m256i vwhere = zwhere;
    for (size_t i = 0; i < n; i += 8) {
        __m256 zi = i + 8 <= n ? _mm256_loadu_ps(z + i) : load_tail(z + i, n - i);
        __m256 zkept = check_step(zi, &zbad, &zkeep);
        max_step(zi, &zmax, &zwhere, index);
        /* |x| of a masked class is +INFINITY: not counted */
        absmax = _mm256_max_ps(absmax, _mm256_and_ps(abs8(zi), zkept));
        if (v != NULL) {
            __m256 vi = i + 8 <= n ? _mm256_loadu_ps(v + i) : load_tail(v + i, n - i);
            __m256 vkept = check_step(vi, &vbad, &vkeep);
            misfit = _mm256_or_ps(misfit, _mm256_andnot_ps(zkept, vkept));
            absmax = _mm256_max_ps(absmax, _mm256_and_ps(abs8(vi), vkept));
            max_step(vi, &vmax, &vwhere, index);
        }
        index = _mm256_add_epi32(index, _mm256_set1_epi32(8));
    }
    unsigned bits = 0;
    bits |= _mm256_movemask_ps(zbad) ? KD_FAST_STUDENT_NONFINITE : 0u;
    bits |= _mm256_movemask_ps(zkeep) ? 0u : KD_FAST_STUDENT_MASKED;
    if (v != NULL) {
        bits |= _mm256_movemask_ps(vbad) ? KD_FAST_TEACHER_NONFINITE : 0u;
        bits |= _mm256_movemask_ps(vkeep) ? 0u : KD_FAST_TEACHER_MASKED;
        bits |= _mm256_movemask_ps(misfit) ? KD_FAST_MASK_MISFIT : 0u;
    }
    if (bits == 0) {
        info->zmax = finish_max(zmax, zwhere, &info->zfirst);
        info->absmax = horizontal_max(absmax);
        if (v != NULL)
            info->vmax = finish_max(vmax, vwhere, &info->top);
        /* The lanes' int32 indices cannot hold the first maximum of a longer row. */
        if (n > INT32_MAX) {
            info->zfirst = first_of(z, n, info->zmax);
            if (v != NULL)
                info->top = first_of(v, n, info->vmax);
        }
    }
    return bits;
}

/* Double accumulation of float vectors: the eight lanes' sum goes to four double lanes. */
INLINE __m256d add_double(__m256d acc, __m256 x)
{
    __m256d pair = _mm256_add_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)),
                                 _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)));
    return _mm256_add_pd(acc, pair);
}

INLINE double total(__m256d s)
{
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* The row sums. Sums of non-negative terms (the exponentials, sum w phi(b) and -sum w u) are
 * kept in float for a block of four vectors and then added in double; the signed sum w b, on
 * which the gradient's log-ratio rests, goes to double every vector. */
enum { SUM_BLOCKS = 5, BLOCK = 4 };
/* The block sums, in this order. */
enum { STUDENT_REST, TEACHER_REST, HARD_REST, OUTSIDE, MINUS_WU, WPHI = 0 };
typedef struct row_acc {
    __m256 block[SUM_BLOCKS];
    __m256 overflow;
    __m256d total[SUM_BLOCKS], wb;
} row_acc;

/* phi(b) = e^-b - 1 + b per lane (b >= -KD_FAST_PHI_LIMIT where kept): by the Taylor series
 * of the tail for |b| < 2 (its short form when every lane is below 1/2), else directly. */
INLINE __m256 phi8(__m256 b, __m256 kept)
{
    __m256 x = _mm256_sub_ps(_mm256_setzero_ps(), b), size = abs8(b);
    __m256 tail = tail8(x);
    if (_mm256_movemask_ps(_mm256_and_ps(kept, _mm256_cmp_ps(size, SPLAT(0.5f), _CMP_GE_OQ))))
        tail = long_tail8(x, tail);
    __m256 phi = _mm256_mul_ps(_mm256_mul_ps(b, b), tail);
    __m256 far = _mm256_and_ps(kept, _mm256_cmp_ps(size, SPLAT(2.0f), _CMP_GE_OQ));
    if (_mm256_movemask_ps(far)) {
        __m256 direct = _mm256_add_ps(_mm256_sub_ps(exp8(_mm256_min_ps(x, SPLAT(KD_FAST_PHI_LIMIT))),
                                                    SPLAT(1.0f)), b);
        phi = _mm256_blendv_ps(phi, direct, far);
    }
    return phi;
}

/* Adds x to a rest sum: all lanes, or (masked) those of `rest`. */
INLINE __m256 add_rest(__m256 sum, __m256 x, __m256 rest, int masked)
{
    return _mm256_add_ps(sum, masked ? _mm256_and_ps(rest, x) : x);
}

/* One vector of the sums pass; what the later passes need goes to out[0], out[n], out[2n]
 * and out[3n] (KD_FAST_STORE_ROWS). When `masked`, the rest sums take only the lanes of zrest
 * and vrest (the first maxima are left out); else every lane. */
INLINE void sums_step(const kd_fast_row_consts *c, __m256 zi, __m256 vi, row_acc *a,
                      int teacher, int label, int masked, __m256 zrest, __m256 vrest,
                      float *out, size_t n)
{
    const __m256 zero = _mm256_setzero_ps(), inv_t = SPLAT(c->inv_t);
    __m256 dz = _mm256_sub_ps(zi, SPLAT(c->zmax));
    __m256 es = teacher ? exp8(_mm256_mul_ps(dz, inv_t)) : zero;
    if (label) {
        /* e^dz = (e^(dz / T))^T by squaring when T = 2^k, k = c->squarings < 4 */
        const int stored = !teacher || c->squarings < 0;
        __m256 e1 = stored ? exp8(dz) : es;
        for (int k = 0; !stored && k < c->squarings; k++)
            e1 = _mm256_mul_ps(e1, e1);
        if (stored)
            _mm256_storeu_ps(out + 3 * n, e1);
        a->block[HARD_REST] = add_rest(a->block[HARD_REST], e1, zrest, masked);
    }
    if (!teacher)
        return;
    __m256 u = _mm256_mul_ps(_mm256_sub_ps(vi, SPLAT(c->vmax)), inv_t);
    __m256 w = exp8(u);
    __m256 r = _mm256_sub_ps(_mm256_sub_ps(vi, zi), SPLAT(c->delta));
    _mm256_storeu_ps(out, es);
    _mm256_storeu_ps(out + n, w);
    _mm256_storeu_ps(out + 2 * n, r);
    a->block[STUDENT_REST] = add_rest(a->block[STUDENT_REST], es, zrest, masked);
    a->block[TEACHER_REST] = add_rest(a->block[TEACHER_REST], w, vrest, masked);
    __m256 kept = _mm256_cmp_ps(w, zero, _CMP_GT_OQ);
    a->block[OUTSIDE] = _mm256_add_ps(a->block[OUTSIDE], _mm256_andnot_ps(kept, es));
    __m256 b = _mm256_fmsub_ps(r, inv_t, SPLAT(c->centre));
    a->wb = add_double(a->wb, _mm256_mul_ps(w, _mm256_and_ps(kept, b)));
    if (c->entropy)
        a->block[MINUS_WU] = _mm256_fnmadd_ps(w, _mm256_and_ps(kept, u), a->block[MINUS_WU]);
}

INLINE void flush(row_acc *a, int blocks)
{
    for (int k = 0; k < blocks; k++) {
        a->total[k] = add_double(a->total[k], a->block[k]);
        a->block[k] = _mm256_setzero_ps();
    }
}

/* The full vectors [from, to) of a row, every lane in the rest sums. */
INLINE void sums_range(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                       row_acc *a, float *store, int teacher, int label, size_t from, size_t to)
{
    const __m256 zero = _mm256_setzero_ps();
    size_t steps = 0;
    for (size_t i = from; i < to; i += 8) {
        sums_step(c, _mm256_loadu_ps(z + i), teacher ? _mm256_loadu_ps(v + i) : zero, a,
                  teacher, label, 0, zero, zero, store + i, n);
        if (++steps % BLOCK == 0)
            flush(a, SUM_BLOCKS);
    }
    flush(a, SUM_BLOCKS);
}

/* A lane mask of every lane but `lane` (none left out when lane >= 8). */
INLINE __m256 other_lanes(size_t lane)
{
    const __m256i one = _mm256_set1_epi32(lane < 8 ? (int)lane : -1);
    __m256i hit = _mm256_cmpeq_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), one);
    return _mm256_castsi256_ps(_mm256_xor_si256(hit, _mm256_set1_epi32(-1)));
}

/* The vector at i (a full one, or the row's last n % 8 classes), without the first maxima in
 * the rest sums. */
INLINE void sums_special(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                         row_acc *a, float *store, int teacher, int label, size_t i)
{
    const __m256 zero = _mm256_setzero_ps();
    /* lane k is class i + k: the lanes other than the first maxima's */
    const __m256 zrest = other_lanes(c->zfirst - i), vrest = other_lanes(c->vfirst - i);
    if (i + 8 <= n) {
        sums_step(c, _mm256_loadu_ps(z + i), teacher ? _mm256_loadu_ps(v + i) : zero, a, teacher,
                  label, 1, zrest, vrest, store + i, n);
    } else {
        const size_t left = n - i;
        float tail[KD_FAST_STORE_ROWS * 8] = {0.0f};
        sums_step(c, load_tail(z + i, left), teacher ? load_tail(v + i, left) : zero, a, teacher,
                  label, 1, zrest, vrest, tail, 8);
        for (size_t k = 0; k < KD_FAST_STORE_ROWS; k++)
            _mm256_maskstore_ps(store + k * n + i, tail_mask(left), _mm256_loadu_ps(tail + 8 * k));
    }
    flush(a, SUM_BLOCKS);
}

INLINE void sums_loop(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                      row_acc *a, float *store, int teacher, int label)
{
    /* The vectors holding the first maxima (and the partial last one) are special: every
     * other vector adds all its lanes to the rest sums. */
    const size_t full = n / 8 * 8;
    size_t cut[3] = {c->zfirst / 8 * 8, teacher ? c->vfirst / 8 * 8 : full, full};
    if (cut[0] > cut[1]) {
        size_t swap = cut[0];
        cut[0] = cut[1];
        cut[1] = swap;
    }
    size_t from = 0;
    for (int k = 0; k < 3; k++) {
        if (cut[k] < from)
            continue; /* the same vector as the previous cut */
        sums_range(z, v, n, c, a, store, teacher, label, from, cut[k]);
        if (cut[k] < n)
            sums_special(z, v, n, c, a, store, teacher, label, cut[k]);
        from = cut[k] + 8;
    }
}

static void avx2_sums(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                      kd_fast_row_sums *out, float *store)
{
    row_acc a;
    memset(&a, 0, sizeof a);
    if (c->teacher && c->label)
        sums_loop(z, v, n, c, &a, store, 1, 1);
    else if (c->teacher)
        sums_loop(z, v, n, c, &a, store, 1, 0);
    else
        sums_loop(z, v, n, c, &a, store, 0, 1);
    out->student_rest = total(a.total[STUDENT_REST]);
    out->teacher_rest = total(a.total[TEACHER_REST]);
    out->hard_rest = total(a.total[HARD_REST]);
    out->outside = total(a.total[OUTSIDE]);
    out->wb = total(a.wb);
    out->wu = -total(a.total[MINUS_WU]);
}

/* One vector of the phi pass: adds w phi(b) where w > 0. */
INLINE void phi_step(__m256 r, __m256 w, __m256 inv_t, __m256 centre, row_acc *a)
{
    __m256 kept = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_GT_OQ);
    __m256 b = _mm256_and_ps(kept, _mm256_fmsub_ps(r, inv_t, centre));
    a->overflow = _mm256_or_ps(a->overflow, _mm256_cmp_ps(b, SPLAT(-KD_FAST_PHI_LIMIT), _CMP_LT_OQ));
    a->block[WPHI] = _mm256_fmadd_ps(w, phi8(b, kept), a->block[WPHI]);
}

static double avx2_phi(size_t n, float inv_t, float centre, const float *store, int *overflow)
{
    row_acc a;
    memset(&a, 0, sizeof a);
    const float *w = store + n, *r = store + 2 * n;
    const __m256 inv = SPLAT(inv_t), mean = SPLAT(centre);
    size_t i = 0, steps = 0;
    for (; i + 8 <= n; i += 8) {
        phi_step(_mm256_loadu_ps(r + i), _mm256_loadu_ps(w + i), inv, mean, &a);
        if (++steps % BLOCK == 0)
            flush(&a, 1);
    }
    if (i < n) /* w = 0 in the padding */
        phi_step(load_stored_tail(r + i, n - i), load_stored_tail(w + i, n - i), inv, mean, &a);
    flush(&a, 1);
    *overflow = _mm256_movemask_ps(a.overflow) != 0;
    return total(a.total[WPHI]);
}

/* One vector of the gradient, from the store's es, eq and r (e1: its stored e^(z - zmax), or
 * es squared). */
INLINE __m256 grad_step(const kd_fast_row_consts *c, const kd_fast_grad_consts *g, __m256 es,
                        __m256 eq, __m256 r, __m256 e1, int teacher, int label)
{
    __m256 x = _mm256_setzero_ps();
    if (teacher) {
        __m256 p = _mm256_mul_ps(es, SPLAT(g->inv_zs));
        __m256 q = _mm256_mul_ps(eq, SPLAT(g->inv_zq));
        __m256 d = _mm256_fmsub_ps(r, SPLAT(c->inv_t), SPLAT(g->shift));
        __m256 m = _mm256_sub_ps(_mm256_setzero_ps(), d); /* expm1(m) = m + m^2 tail(m) */
        __m256 near = _mm256_mul_ps(q, _mm256_fmadd_ps(_mm256_mul_ps(m, m), tail8(m), m));
        x = _mm256_mul_ps(SPLAT(g->soft), _mm256_blendv_ps(_mm256_sub_ps(p, q), near, small8(d)));
    }
    if (label) {
        const int stored = !teacher || c->squarings < 0;
        for (int k = 0; !stored && k < c->squarings; k++)
            e1 = _mm256_mul_ps(e1, e1);
        x = _mm256_fmadd_ps(SPLAT(g->hard), _mm256_mul_ps(e1, SPLAT(g->inv_z1)), x);
    }
    return x;
}

INLINE void grad_loop(size_t n, const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                      const float *store, float *grad, int teacher, int label)
{
    const float *es = store, *eq = store + n, *r = store + 2 * n;
    const float *e1 = teacher && c->squarings >= 0 ? es : store + 3 * n;
    const __m256 zero = _mm256_setzero_ps();
    const int stream = g->stream && (uintptr_t)grad % 32 == 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = grad_step(c, g, teacher ? _mm256_loadu_ps(es + i) : zero,
                             teacher ? _mm256_loadu_ps(eq + i) : zero,
                             teacher ? _mm256_loadu_ps(r + i) : zero,
                             label ? _mm256_loadu_ps(e1 + i) : zero, teacher, label);
        if (stream)
            _mm256_stream_ps(grad + i, x); /* a large batch: past the caches */
        else
            _mm256_storeu_ps(grad + i, x);
    }
    if (stream)
        _mm_sfence();
    if (i < n) {
        const size_t left = n - i;
        _mm256_maskstore_ps(grad + i, tail_mask(left),
                            grad_step(c, g, teacher ? load_stored_tail(es + i, left) : zero,
                                      teacher ? load_stored_tail(eq + i, left) : zero,
                                      teacher ? load_stored_tail(r + i, left) : zero,
                                      label ? load_stored_tail(e1 + i, left) : zero, teacher,
                                      label));
    }
}

static void avx2_grad(size_t n, const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                      const float *store, float *grad)
{
    if (c->teacher && c->label)
        grad_loop(n, c, g, store, grad, 1, 1);
    else if (c->teacher)
        grad_loop(n, c, g, store, grad, 1, 0);
    else
        grad_loop(n, c, g, store, grad, 0, 1);
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
    static const kd_fast_kernels kernels = {"avx2",    avx2_check, avx2_sums,
                                            avx2_phi,  avx2_grad,  avx2_exp};
    return &kernels;
}
