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
/* How far ahead (in floats) the passes that stream a row from memory prefetch it. */
#define PREFETCH 512
/* The per-vector steps must be inlined into their loops for the accumulators to stay in
 * registers and the teacher / label flags to be constants. Unoptimised builds (debug,
 * sanitizers, coverage) call them instead, with the same results: gcov then counts each
 * branch of the source once, not once per inlined copy, where a constant flag's other side
 * can never be taken. */
#ifdef __OPTIMIZE__
#define INLINE static inline __attribute__((always_inline))
#else
#define INLINE static inline
#endif

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

/* One vector of the check: bad (NaN or +INFINITY: not below +INFINITY) lanes are or-ed into
 * `bad`; the running maximum (still -INFINITY if every class is masked), its first index and
 * the largest |x| of the kept (above -INFINITY) lanes are updated. */
INLINE __m256 check_step(__m256 x, __m256 *bad, __m256 *max, __m256i *where, __m256i index,
                         __m256 *absmax)
{
    *bad = _mm256_or_ps(*bad, _mm256_cmp_ps(x, SPLAT(INFINITY), _CMP_NLT_UQ));
    __m256 kept = _mm256_cmp_ps(x, SPLAT(-INFINITY), _CMP_GT_OQ);
    max_step(x, max, where, index);
    /* |x| of a masked class is +INFINITY: not counted */
    *absmax = _mm256_max_ps(*absmax, _mm256_and_ps(abs8(x), kept));
    return kept;
}

/* The check's running state. */
typedef struct check_state {
    __m256 bad, misfit, absmax, zmax, vmax;
    __m256i zwhere, vwhere;
} check_state;

INLINE void check_pair(check_state *s, __m256 zi, __m256 vi, __m256i index, int teacher)
{
    __m256 zkept = check_step(zi, &s->bad, &s->zmax, &s->zwhere, index, &s->absmax);
    if (teacher) {
        __m256 vkept = check_step(vi, &s->bad, &s->vmax, &s->vwhere, index, &s->absmax);
        s->misfit = _mm256_or_ps(s->misfit, _mm256_andnot_ps(zkept, vkept));
    }
}

/* The check of a row with (teacher) or without a teacher's row v. Invalid rows are rare: the
 * loop keeps one flag for every kind of fault, and the portable check then says which. */
INLINE unsigned check_loop(const float *z, const float *v, size_t n, kd_fast_row_info *info,
                           int teacher)
{
    const __m256 zero = _mm256_setzero_ps(), minus_inf = SPLAT(-INFINITY);
    const __m256i none = _mm256_setzero_si256();
    check_state s = {zero, zero, zero, minus_inf, minus_inf, none, none};
    __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm_prefetch((const char *)(z + i + PREFETCH), _MM_HINT_T0);
        if (teacher)
            _mm_prefetch((const char *)(v + i + PREFETCH), _MM_HINT_T0);
        check_pair(&s, _mm256_loadu_ps(z + i), teacher ? _mm256_loadu_ps(v + i) : zero, index,
                   teacher);
        index = _mm256_add_epi32(index, _mm256_set1_epi32(8));
    }
    if (i < n)
        check_pair(&s, load_tail(z + i, n - i), teacher ? load_tail(v + i, n - i) : zero, index,
                   teacher);
    info->zmax = finish_max(s.zmax, s.zwhere, &info->zfirst);
    if (teacher)
        info->vmax = finish_max(s.vmax, s.vwhere, &info->top);
    int faults = _mm256_movemask_ps(s.bad) | _mm256_movemask_ps(s.misfit)
                 | (info->zmax == -INFINITY) | (teacher && info->vmax == -INFINITY);
    if (faults)
        return kd_fast_portable()->check(z, v, n, info);
    info->absmax = horizontal_max(s.absmax);
    /* The lanes' int32 indices cannot hold the first maximum of a longer row. */
    if (n > INT32_MAX) {
        info->zfirst = first_of(z, n, info->zmax);
        if (teacher)
            info->top = first_of(v, n, info->vmax);
    }
    return 0;
}

static unsigned avx2_check(const float *z, const float *v, size_t n, kd_fast_row_info *info)
{
    return v != NULL ? check_loop(z, v, n, info, 1) : check_loop(z, NULL, n, info, 0);
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
 * which the gradient's log-ratio rests, goes to double every vector. The per-vector state is
 * in local variables (registers), the row's constants loaded once: stores to the row store
 * could otherwise alias them. */
enum { BLOCK = 4 };

/* What the sums pass needs of kd_fast_row_consts, as vectors. */
typedef struct sums_consts {
    __m256 zmax, vmax, inv_t, centre;
    __m256 delta_hi, delta_lo; /* delta = delta_hi + delta_lo */
    int entropy, squarings;
} sums_consts;

/* One block's float sums. */
typedef struct block_sums {
    __m256 student, teacher, hard, outside, minus_wu;
} block_sums;

/* The row's double sums. */
typedef struct row_totals {
    __m256d student, teacher, hard, outside, minus_wu, wb;
} row_totals;

/* (e^x - 1 - x) / x^2 for |x| <= 2: its degree-10 Chebyshev fit on [-2, 2] (mpmath
 * chebyfit; 1e-9 relative in exact arithmetic, 1.0e-7 evaluated in float, against 1.5e-7 for
 * the Taylor series to 1/16! in float). */
INLINE __m256 wide_tail8(__m256 x)
{
    __m256 y = _mm256_fmadd_ps(SPLAT(2.217603754e-09f), x, SPLAT(2.687874207e-08f));
    y = _mm256_fmadd_ps(y, x, SPLAT(2.750486157e-07f));
    y = _mm256_fmadd_ps(y, x, SPLAT(2.748347288e-06f));
    y = _mm256_fmadd_ps(y, x, SPLAT(2.480250925e-05f));
    y = _mm256_fmadd_ps(y, x, SPLAT(1.984256848e-04f));
    y = _mm256_fmadd_ps(y, x, SPLAT(1.388888229e-03f));
    y = _mm256_fmadd_ps(y, x, SPLAT(8.333324035e-03f));
    y = _mm256_fmadd_ps(y, x, SPLAT(4.166666680e-02f));
    y = _mm256_fmadd_ps(y, x, SPLAT(1.666666685e-01f));
    return _mm256_fmadd_ps(y, x, SPLAT(0.5f));
}

/* phi(b) = e^-b - 1 + b per lane (b >= -KD_FAST_PHI_LIMIT where kept): b^2 wide_tail8(-b)
 * for |b| < 2, else directly. */
INLINE __m256 phi8(__m256 b, __m256 kept)
{
    __m256 x = _mm256_sub_ps(_mm256_setzero_ps(), b);
    __m256 phi = _mm256_mul_ps(_mm256_mul_ps(b, b), wide_tail8(x));
    __m256 far = _mm256_and_ps(kept, _mm256_cmp_ps(abs8(b), SPLAT(2.0f), _CMP_GE_OQ));
    if (_mm256_movemask_ps(far)) {
        __m256 direct = _mm256_add_ps(_mm256_sub_ps(exp8(_mm256_min_ps(x, SPLAT(KD_FAST_PHI_LIMIT))),
                                                    SPLAT(1.0f)), b);
        phi = _mm256_blendv_ps(phi, direct, far);
    }
    return phi;
}

/* r = (v - z) - delta per lane within about one rounding of r: v - z as an exact float pair
 * s + e (Knuth's two-sum), then s - delta_hi (exact when s and delta_hi are close, the case
 * where r is small), + e - delta_lo. */
INLINE __m256 log_ratio8(sums_consts k, __m256 zi, __m256 vi)
{
    __m256 s = _mm256_sub_ps(vi, zi);
    __m256 z_part = _mm256_sub_ps(s, vi); /* the rounded -z */
    __m256 e = _mm256_sub_ps(_mm256_sub_ps(vi, _mm256_sub_ps(s, z_part)),
                             _mm256_add_ps(zi, z_part));
    return _mm256_sub_ps(_mm256_add_ps(_mm256_sub_ps(s, k.delta_hi), e), k.delta_lo);
}

/* Adds x to a rest sum: all lanes, or (masked) those of `rest`. */
INLINE __m256 add_rest(__m256 sum, __m256 x, __m256 rest, int masked)
{
    return _mm256_add_ps(sum, masked ? _mm256_and_ps(rest, x) : x);
}

/* One vector of the sums pass; what the later passes need goes to out[0], out[n], out[2n]
 * and out[3n] (KD_FAST_STORE_ROWS). When `masked`, the rest sums take only the lanes of zrest
 * and vrest (the first maxima are left out); else every lane. */
INLINE void sums_step(sums_consts k, __m256 zi, __m256 vi, block_sums *s, __m256d *wb,
                      int teacher, int label, int masked, __m256 zrest, __m256 vrest, float *out,
                      size_t n)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 dz = _mm256_sub_ps(zi, k.zmax);
    __m256 es = teacher ? exp8(_mm256_mul_ps(dz, k.inv_t)) : zero;
    if (label) {
        /* e^dz = (e^(dz / T))^T by squaring when T = 2^j, j = k.squarings < 4 (a constant
         * of the loop: every value has its own) */
        const int stored = !teacher || k.squarings < 0;
        __m256 e1 = stored ? exp8(dz) : es;
        for (int j = 0; !stored && j < k.squarings; j++)
            e1 = _mm256_mul_ps(e1, e1);
        if (stored)
            _mm256_storeu_ps(out + 3 * n, e1);
        s->hard = add_rest(s->hard, e1, zrest, masked);
    }
    if (!teacher)
        return;
    __m256 u = _mm256_mul_ps(_mm256_sub_ps(vi, k.vmax), k.inv_t);
    __m256 w = exp8(u);
    __m256 r = log_ratio8(k, zi, vi);
    _mm256_storeu_ps(out, es);
    _mm256_storeu_ps(out + n, w);
    _mm256_storeu_ps(out + 2 * n, r);
    s->student = add_rest(s->student, es, zrest, masked);
    s->teacher = add_rest(s->teacher, w, vrest, masked);
    __m256 kept = _mm256_cmp_ps(w, zero, _CMP_GT_OQ);
    s->outside = _mm256_add_ps(s->outside, _mm256_andnot_ps(kept, es));
    __m256 b = _mm256_fmsub_ps(r, k.inv_t, k.centre);
    *wb = add_double(*wb, _mm256_mul_ps(w, _mm256_and_ps(kept, b)));
    if (k.entropy)
        s->minus_wu = _mm256_fnmadd_ps(w, _mm256_and_ps(kept, u), s->minus_wu);
}

/* Adds a block's sums to the row's. */
INLINE void flush(row_totals *t, block_sums s)
{
    t->student = add_double(t->student, s.student);
    t->teacher = add_double(t->teacher, s.teacher);
    t->hard = add_double(t->hard, s.hard);
    t->outside = add_double(t->outside, s.outside);
    t->minus_wu = add_double(t->minus_wu, s.minus_wu);
}

INLINE block_sums no_sums(void)
{
    const __m256 zero = _mm256_setzero_ps();
    return (block_sums){zero, zero, zero, zero, zero};
}

/* The full vectors [from, to) of a row, every lane in the rest sums. */
INLINE void sums_range(const float *z, const float *v, size_t n, sums_consts k, row_totals *t,
                       float *store, int teacher, int label, size_t from, size_t to)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256d wb = t->wb;
    for (size_t i = from; i < to;) {
        block_sums s = no_sums();
        const size_t end = to - i > 8 * BLOCK ? i + 8 * BLOCK : to;
        for (; i < end; i += 8) {
            _mm_prefetch((const char *)(z + i + PREFETCH), _MM_HINT_T0);
            if (teacher)
                _mm_prefetch((const char *)(v + i + PREFETCH), _MM_HINT_T0);
            sums_step(k, _mm256_loadu_ps(z + i), teacher ? _mm256_loadu_ps(v + i) : zero, &s,
                      &wb, teacher, label, 0, zero, zero, store + i, n);
        }
        flush(t, s);
    }
    t->wb = wb;
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
                         sums_consts k, row_totals *t, float *store, int teacher, int label,
                         size_t i)
{
    const __m256 zero = _mm256_setzero_ps();
    /* lane j is class i + j: the lanes other than the first maxima's */
    const __m256 zrest = other_lanes(c->zfirst - i), vrest = other_lanes(c->vfirst - i);
    block_sums s = no_sums();
    if (i + 8 <= n) {
        sums_step(k, _mm256_loadu_ps(z + i), teacher ? _mm256_loadu_ps(v + i) : zero, &s, &t->wb,
                  teacher, label, 1, zrest, vrest, store + i, n);
    } else {
        const size_t left = n - i;
        float tail[KD_FAST_STORE_ROWS * 8] = {0.0f};
        sums_step(k, load_tail(z + i, left), teacher ? load_tail(v + i, left) : zero, &s, &t->wb,
                  teacher, label, 1, zrest, vrest, tail, 8);
        for (size_t row = 0; row < KD_FAST_STORE_ROWS; row++)
            _mm256_maskstore_ps(store + row * n + i, tail_mask(left),
                                _mm256_loadu_ps(tail + 8 * row));
    }
    flush(t, s);
}

INLINE void sums_loop(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                      row_totals *t, float *store, int teacher, int label, int squarings,
                      int entropy)
{
    const float delta_hi = (float)c->delta;
    const sums_consts k = {SPLAT(c->zmax),
                           SPLAT(c->vmax),
                           SPLAT(c->inv_t),
                           SPLAT(c->centre),
                           SPLAT(delta_hi),
                           SPLAT((float)(c->delta - (double)delta_hi)),
                           entropy,
                           squarings};
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
    for (int j = 0; j < 3; j++) {
        if (cut[j] < from)
            continue; /* the same vector as the previous cut */
        sums_range(z, v, n, k, t, store, teacher, label, from, cut[j]);
        if (cut[j] < n)
            sums_special(z, v, n, c, k, t, store, teacher, label, cut[j]);
        from = cut[j] + 8;
    }
}

static void avx2_sums(const float *z, const float *v, size_t n, const kd_fast_row_consts *c,
                      kd_fast_row_sums *out, float *store)
{
    const __m256d zero = _mm256_setzero_pd();
    row_totals t = {zero, zero, zero, zero, zero, zero};
    /* Each T = 2^j and each teacher / label combination has its own loop; the entropy flag is a
     * constant of the loop too for T = 4 and for T not a power of two, and a run-time flag for
     * the rarer T = 1, 2, 8 (fewer copies of the loop). */
    const int e = c->entropy;
    if (c->teacher && c->label) {
        switch (c->squarings) {
        case 0: sums_loop(z, v, n, c, &t, store, 1, 1, 0, e); break;
        case 1: sums_loop(z, v, n, c, &t, store, 1, 1, 1, e); break;
        case 2:
            if (e)
                sums_loop(z, v, n, c, &t, store, 1, 1, 2, 1);
            else
                sums_loop(z, v, n, c, &t, store, 1, 1, 2, 0);
            break;
        case 3: sums_loop(z, v, n, c, &t, store, 1, 1, 3, e); break;
        default:
            if (e)
                sums_loop(z, v, n, c, &t, store, 1, 1, -1, 1);
            else
                sums_loop(z, v, n, c, &t, store, 1, 1, -1, 0);
            break;
        }
    } else if (c->teacher) {
        if (e)
            sums_loop(z, v, n, c, &t, store, 1, 0, -1, 1);
        else
            sums_loop(z, v, n, c, &t, store, 1, 0, -1, 0);
    } else {
        sums_loop(z, v, n, c, &t, store, 0, 1, -1, 0);
    }
    out->student_rest = total(t.student);
    out->teacher_rest = total(t.teacher);
    out->hard_rest = total(t.hard);
    out->outside = total(t.outside);
    out->wb = total(t.wb);
    out->wu = -total(t.minus_wu);
}

/* One vector of the phi pass: adds w phi(b) where w > 0. */
INLINE void phi_step(__m256 r, __m256 w, __m256 inv_t, __m256 centre, __m256 *sum,
                     __m256 *overflow)
{
    __m256 kept = _mm256_cmp_ps(w, _mm256_setzero_ps(), _CMP_GT_OQ);
    __m256 b = _mm256_and_ps(kept, _mm256_fmsub_ps(r, inv_t, centre));
    *overflow = _mm256_or_ps(*overflow, _mm256_cmp_ps(b, SPLAT(-KD_FAST_PHI_LIMIT), _CMP_LT_OQ));
    *sum = _mm256_fmadd_ps(w, phi8(b, kept), *sum);
}

static double avx2_phi(size_t n, float inv_t, float centre, const float *store, int *overflow)
{
    const float *w = store + n, *r = store + 2 * n;
    const __m256 inv = SPLAT(inv_t), mean = SPLAT(centre);
    __m256 over = _mm256_setzero_ps();
    __m256d sum = _mm256_setzero_pd();
    size_t i = 0;
    while (i + 8 <= n) {
        __m256 block = _mm256_setzero_ps();
        const size_t end = n - i >= 8 * BLOCK ? i + 8 * BLOCK : n / 8 * 8;
        for (; i < end; i += 8)
            phi_step(_mm256_loadu_ps(r + i), _mm256_loadu_ps(w + i), inv, mean, &block, &over);
        sum = add_double(sum, block);
    }
    if (i < n) { /* w = 0 in the padding */
        __m256 block = _mm256_setzero_ps();
        phi_step(load_stored_tail(r + i, n - i), load_stored_tail(w + i, n - i), inv, mean,
                 &block, &over);
        sum = add_double(sum, block);
    }
    *overflow = _mm256_movemask_ps(over) != 0;
    return total(sum);
}

/* What the gradient pass needs of the row's constants, as vectors (loaded once). */
typedef struct grad_consts {
    __m256 inv_zs, inv_zq, inv_t, shift, soft, hard, inv_z1;
    int squarings; /* of es into e1, or -1: e1 is stored */
} grad_consts;

/* One vector of the gradient, from the store's es, eq and r (e1: its stored e^(z - zmax), or
 * es squared). */
INLINE __m256 grad_step(grad_consts k, __m256 es, __m256 eq, __m256 r, __m256 e1, int teacher,
                        int label)
{
    __m256 x = _mm256_setzero_ps();
    if (teacher) {
        __m256 p = _mm256_mul_ps(es, k.inv_zs);
        __m256 q = _mm256_mul_ps(eq, k.inv_zq);
        /* m = -d = shift - r inv_t, exactly the negation of d (one rounding either way) */
        __m256 m = _mm256_fnmadd_ps(r, k.inv_t, k.shift); /* expm1(m) = m + m^2 tail(m) */
        __m256 near = _mm256_mul_ps(q, _mm256_fmadd_ps(_mm256_mul_ps(m, m), tail8(m), m));
        x = _mm256_mul_ps(k.soft, _mm256_blendv_ps(_mm256_sub_ps(p, q), near, small8(m)));
    }
    if (label) {
        for (int j = 0; j < k.squarings; j++)
            e1 = _mm256_mul_ps(e1, e1);
        x = _mm256_fmadd_ps(k.hard, _mm256_mul_ps(e1, k.inv_z1), x);
    }
    return x;
}

/* squarings: as c->squarings with a teacher, else -1 (a constant of the loop) */
INLINE void grad_loop(size_t n, const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                      const float *store, float *grad, int teacher, int label, int squarings)
{
    const float *es = store, *eq = store + n, *r = store + 2 * n;
    const float *e1 = squarings >= 0 ? es : store + 3 * n;
    const grad_consts k = {SPLAT(g->inv_zs), SPLAT(g->inv_zq), SPLAT(c->inv_t), SPLAT(g->shift),
                           SPLAT(g->soft),   SPLAT(g->hard),   SPLAT(g->inv_z1), squarings};
    const __m256 zero = _mm256_setzero_ps();
    const int stream = g->stream && (uintptr_t)grad % 32 == 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 x = grad_step(k, teacher ? _mm256_loadu_ps(es + i) : zero,
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
                            grad_step(k, teacher ? load_stored_tail(es + i, left) : zero,
                                      teacher ? load_stored_tail(eq + i, left) : zero,
                                      teacher ? load_stored_tail(r + i, left) : zero,
                                      label ? load_stored_tail(e1 + i, left) : zero, teacher,
                                      label));
    }
}

static void avx2_grad(size_t n, const kd_fast_row_consts *c, const kd_fast_grad_consts *g,
                      const float *store, float *grad)
{
    if (c->teacher && c->label) {
        switch (c->squarings) {
        case 0: grad_loop(n, c, g, store, grad, 1, 1, 0); break;
        case 1: grad_loop(n, c, g, store, grad, 1, 1, 1); break;
        case 2: grad_loop(n, c, g, store, grad, 1, 1, 2); break;
        case 3: grad_loop(n, c, g, store, grad, 1, 1, 3); break;
        default: grad_loop(n, c, g, store, grad, 1, 1, -1); break;
        }
    } else if (c->teacher) {
        grad_loop(n, c, g, store, grad, 1, 0, -1);
    } else {
        grad_loop(n, c, g, store, grad, 0, 1, -1);
    }
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
