/* kd_softmax and kd_log_softmax against independent references (double for the probabilities,
 * long double for the log-probabilities), strides, in place, masks and every bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

#include "support.h"

/* Both kernels share one signature, so most checks run over both. */
typedef kd_status (*kernel_fn)(const float *logits, size_t rows, size_t classes,
                               size_t logits_stride, float temperature, float *out,
                               size_t out_stride);

static const kernel_fn kernels[2] = {kd_softmax, kd_log_softmax};
static const char *const kernel_names[2] = {"kd_softmax", "kd_log_softmax"};

/* ---- References ------------------------------------------------------------------------ */

/* p_i = 1 / sum_j exp((x_j - x_i) / T) in double: no max shift, so it shares no formulation
 * with the library; terms that overflow give 1/inf = 0, which is the right limit. Masked
 * classes get 0. */
static void reference_softmax_row(const float *x, size_t n, double t, double *p)
{
    for (size_t i = 0; i < n; i++) {
        if (x[i] == -INFINITY) {
            p[i] = 0.0;
            continue;
        }
        double denominator = 0.0;
        for (size_t j = 0; j < n; j++)
            if (x[j] != -INFINITY)
                denominator += exp(((double)x[j] - (double)x[i]) / t);
        p[i] = 1.0 / denominator;
    }
}

/* log p_i = (x_i - m) / T - log sum_j exp((x_j - m) / T), m the row maximum, in long double.
 * Masked classes get -inf. */
static void reference_log_softmax_row(const float *x, size_t n, double t, long double *lp)
{
    long double m = -INFINITY;
    for (size_t j = 0; j < n; j++)
        if ((long double)x[j] > m)
            m = x[j];
    long double s = 0.0L;
    for (size_t j = 0; j < n; j++)
        if (x[j] != -INFINITY)
            s += expl(((long double)x[j] - m) / (long double)t);
    long double log_s = logl(s);
    for (size_t i = 0; i < n; i++)
        lp[i] = x[i] == -INFINITY ? -INFINITY : ((long double)x[i] - m) / (long double)t - log_s;
}

/* ---- Checks ---------------------------------------------------------------------------- */

/* Probabilities: within 4 float ulps relative of the reference, with an absolute floor at
 * the smallest normal float (below it float results are denormal); masked classes exactly 0;
 * the row sums to 1 within n float ulps. */
static void check_softmax_row(const float *got, const float *x, size_t n, float t,
                              const char *where)
{
    double *want = malloc(n * sizeof *want);
    assert_non_null(want);
    reference_softmax_row(x, n, t, want);
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            fail_msg("%s: NaN at class %zu", where, i);
        if (x[i] == -INFINITY && got[i] != 0.0f)
            fail_msg("%s: masked class %zu got %g", where, i, (double)got[i]);
        double err = fabs((double)got[i] - want[i]) / fmax(want[i], (double)FLT_MIN);
        if (err > 4 * FLT_EPSILON)
            fail_msg("%s, T = %g, class %zu: got %.9g want %.17g (relative error %g)", where,
                     (double)t, i, (double)got[i], want[i], err);
        sum += got[i];
    }
    if (fabs(sum - 1.0) > (double)n * FLT_EPSILON)
        fail_msg("%s, T = %g: row sums to %.17g", where, (double)t, sum);
    free(want);
}

/* Log-probabilities: masked classes exactly -inf; a reference below -FLT_MAX (the value itself
 * overflows float) must give -FLT_MAX or -inf; otherwise within 4 float ulps relative plus an
 * absolute (n + 8) double ulps. The absolute term covers the one place where a double
 * computation legitimately loses relative accuracy: log p of a near-certain class,
 * -log(1 + tiny), where the sum of n exponentials carries an absolute error of about n double
 * ulps. Everywhere else |log p| >= |log sum| and the shift (x_i - m) / T is exact to a double
 * ulp, so there is no cancellation. */
static void check_log_softmax_row(const float *got, const float *x, size_t n, float t,
                                  const char *where)
{
    long double *want = malloc(n * sizeof *want);
    assert_non_null(want);
    reference_log_softmax_row(x, n, t, want);
    for (size_t i = 0; i < n; i++) {
        if (isnan(got[i]))
            fail_msg("%s: NaN at class %zu", where, i);
        if (want[i] == -INFINITY) {
            if (got[i] != -INFINITY)
                fail_msg("%s: masked class %zu got %g", where, i, (double)got[i]);
            continue;
        }
        if (got[i] > 0.0f)
            fail_msg("%s: positive log-probability %g at class %zu", where, (double)got[i], i);
        if (want[i] < -(long double)FLT_MAX) {
            if (!(got[i] <= -FLT_MAX))
                fail_msg("%s: class %zu got %g, want %Lg (beyond float)", where, i,
                         (double)got[i], want[i]);
            continue;
        }
        long double err = fabsl((long double)got[i] - want[i]);
        long double tol = 4.0L * FLT_EPSILON * fabsl(want[i]) + (long double)(n + 8) * DBL_EPSILON;
        if (err > tol)
            fail_msg("%s, T = %g, class %zu: got %.9g want %.21Lg (error %Lg > %Lg)", where,
                     (double)t, i, (double)got[i], want[i], err, tol);
    }
    free(want);
}

static void check_row(size_t k, const float *got, const float *x, size_t n, float t,
                      const char *where)
{
    if (k == 0)
        check_softmax_row(got, x, n, t, where);
    else
        check_log_softmax_row(got, x, n, t, where);
}

/* Runs kernel k on a packed matrix and checks every row. */
static void check_packed(size_t k, const float *x, size_t rows, size_t classes, float t)
{
    float *out = malloc(rows * classes * sizeof *out);
    assert_non_null(out);
    assert_int_equal(kernels[k](x, rows, classes, classes, t, out, classes), KD_OK);
    for (size_t r = 0; r < rows; r++)
        check_row(k, out + r * classes, x + r * classes, classes, t, kernel_names[k]);
    free(out);
}

/* ---- Tests ----------------------------------------------------------------------------- */

static void paper_example(void **state)
{
    (void)state;
    const float v[2] = {1.0f, 10.0f};
    float p[2], lp[2];
    assert_int_equal(kd_softmax(v, 1, 2, 2, 10.0f, p, 2), KD_OK);
    assert_float_equal(p[0], 0.28905049737499605, 1e-7);
    assert_float_equal(p[1], 0.7109495026250039, 1e-7);
    assert_int_equal(kd_log_softmax(v, 1, 2, 2, 1.0f, lp, 2), KD_OK);
    /* log(1 / (1 + e^9)) and log(1 / (1 + e^-9)). */
    assert_float_equal(lp[0], -9.000123402189588, 4e-6);
    assert_float_equal(lp[1], -0.00012340218972333965, 1e-11);
}

static void random_logits_every_temperature(void **state)
{
    (void)state;
    enum { rows = 5, classes = 203 };
    static float v[rows * classes];
    kd_test_rng rng = {1234};
    const float temperatures[] = {1e-3f, 0.01f, 0.3f, 1.0f, 2.5f, 20.0f, 100.0f, 1e3f, 1e4f};
    const double scales[] = {1e-3, 1.0, 30.0, 1e4};
    for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
        for (size_t i = 0; i < rows * classes; i++)
            v[i] = (float)(scales[s] * kd_test_normal(&rng));
        for (size_t t = 0; t < sizeof temperatures / sizeof temperatures[0]; t++)
            for (size_t k = 0; k < 2; k++)
                check_packed(k, v, rows, classes, temperatures[t]);
    }
}

static void extreme_logits_and_temperatures(void **state)
{
    (void)state;
    const float rows[][4] = {
        {FLT_MAX, -FLT_MAX, 0.0f, 1.0f},
        {FLT_MAX, FLT_MAX, -FLT_MAX, -FLT_MAX},
        {-FLT_MAX, -FLT_MAX, -FLT_MAX, -FLT_MAX},
        {FLT_MAX, nextafterf(FLT_MAX, 0.0f), 3e38f, -3e38f},
        {1e-30f, -1e-30f, 0.0f, FLT_MIN},
        {-1e30f, 1e30f, -INFINITY, 0.0f},
    };
    const float temperatures[] = {0x1p-149f, 1e-30f, 1e-3f, 1.0f, 1e4f, 1e30f, FLT_MAX};
    for (size_t r = 0; r < sizeof rows / sizeof rows[0]; r++)
        for (size_t t = 0; t < sizeof temperatures / sizeof temperatures[0]; t++)
            for (size_t k = 0; k < 2; k++)
                check_packed(k, rows[r], 1, 4, temperatures[t]);
}

static void log_softmax_accurate_where_softmax_underflows(void **state)
{
    (void)state;
    float p[2], lp[2];

    /* exp(-200) = 1.4e-87 underflows float: softmax gives 0, log-softmax gives -200. */
    const float v[2] = {0.0f, -200.0f};
    assert_int_equal(kd_softmax(v, 1, 2, 2, 1.0f, p, 2), KD_OK);
    assert_true(p[0] == 1.0f && p[1] == 0.0f);
    assert_int_equal(kd_log_softmax(v, 1, 2, 2, 1.0f, lp, 2), KD_OK);
    assert_true(lp[0] == 0.0f); /* -1.4e-87 rounds to (minus) zero */
    assert_true(fabsf(lp[1] + 200.0f) <= 200.0f * FLT_EPSILON);

    /* The same at a low temperature: -200 / 0.01 = -20000. */
    assert_int_equal(kd_log_softmax(v, 1, 2, 2, 0.01f, lp, 2), KD_OK);
    assert_true(fabs((double)lp[1] + 200.0 / (double)0.01f) <= 2e4 * FLT_EPSILON);

    /* And far beyond any exponent: -1e30. */
    const float w[3] = {0.0f, -1e30f, 5.0f};
    float lw[3];
    assert_int_equal(kd_log_softmax(w, 1, 3, 3, 1.0f, lw, 3), KD_OK);
    assert_true(fabs((double)lw[1] + 1e30) <= 1e30 * FLT_EPSILON);
    check_log_softmax_row(lw, w, 3, 1.0f, "1e30");

    /* Many classes far below the maximum: every probability but one underflows. */
    enum { classes = 64 };
    float x[classes], out[classes];
    for (size_t i = 0; i < classes; i++)
        x[i] = -150.0f - (float)i;
    x[17] = 0.0f;
    assert_int_equal(kd_log_softmax(x, 1, classes, classes, 1.0f, out, classes), KD_OK);
    check_log_softmax_row(out, x, classes, 1.0f, "underflow row");
    for (size_t i = 0; i < classes; i++)
        if (i != 17)
            assert_true(fabsf(out[i] - x[i]) <= fabsf(x[i]) * FLT_EPSILON);
}

/* A rows x classes sub-matrix at (row0, in_col) of a bigger input matrix whose other elements
 * are NaN (so a kernel that reads or validates them fails), written into the sub-matrix at
 * (row0 + 1, out_col) of a bigger output whose other elements must keep their sentinel. */
static void check_submatrix(size_t k, size_t rows, size_t classes, size_t in_stride,
                            size_t in_col, size_t out_stride, size_t out_col, size_t row0,
                            float t, uint64_t seed)
{
    assert_true(in_col + classes <= in_stride && out_col + classes <= out_stride);
    size_t in_rows = row0 + rows + 2, out_rows = row0 + rows + 3;
    size_t in_n = in_rows * in_stride, out_n = out_rows * out_stride;
    float *in = malloc(in_n * sizeof *in), *out = malloc(out_n * sizeof *out);
    float *packed = malloc(rows * classes * sizeof *packed);
    assert_non_null(in);
    assert_non_null(out);
    assert_non_null(packed);
    for (size_t i = 0; i < in_n; i++)
        in[i] = NAN;
    kd_test_rng rng = {seed};
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < classes; c++) {
            float value = (float)(5.0 * kd_test_normal(&rng));
            if (c == 3 && r % 2 == 0)
                value = -INFINITY;
            in[(row0 + r) * in_stride + in_col + c] = value;
            packed[r * classes + c] = value;
        }
    kd_test_fill_sentinel(out, out_n);
    const float *sub_in = in + row0 * in_stride + in_col;
    float *sub_out = out + (row0 + 1) * out_stride + out_col;
    assert_int_equal(kernels[k](sub_in, rows, classes, in_stride, t, sub_out, out_stride), KD_OK);

    float *expected = malloc(rows * classes * sizeof *expected);
    assert_non_null(expected);
    assert_int_equal(kernels[k](packed, rows, classes, classes, t, expected, classes), KD_OK);
    for (size_t r = 0; r < rows; r++) {
        check_row(k, sub_out + r * out_stride, packed + r * classes, classes, t, "sub-matrix");
        /* A row does not depend on where it sits in memory. */
        assert_memory_equal(sub_out + r * out_stride, expected + r * classes,
                            classes * sizeof(float));
    }
    /* Everything outside the output sub-matrix is untouched. */
    float *reference = malloc(out_n * sizeof *reference);
    assert_non_null(reference);
    kd_test_fill_sentinel(reference, out_n);
    for (size_t i = 0; i < out_n; i++) {
        size_t r = i / out_stride, c = i % out_stride;
        int inside = r >= row0 + 1 && r < row0 + 1 + rows && c >= out_col && c < out_col + classes;
        if (!inside && memcmp(&out[i], &reference[i], sizeof(float)) != 0)
            fail_msg("%s wrote outside the sub-matrix at row %zu column %zu", kernel_names[k], r,
                     c);
    }
    free(reference);
    free(expected);
    free(packed);
    free(out);
    free(in);
}

static void strided_input_and_output(void **state)
{
    (void)state;
    for (size_t k = 0; k < 2; k++) {
        /* (rows, classes, in stride, in column, out stride, out column, first row) */
        check_submatrix(k, 5, 17, 40, 3, 23, 5, 2, 1.0f, 11);  /* out stride < in stride */
        check_submatrix(k, 4, 9, 10, 1, 31, 20, 1, 0.25f, 12); /* out stride > in stride */
        check_submatrix(k, 3, 8, 8, 0, 8, 0, 0, 7.0f, 13);     /* packed, inside bigger buffers */
        check_submatrix(k, 2, 6, 600, 500, 1000, 7, 3, 2.0f, 14); /* large strides */
        check_submatrix(k, 6, 1, 5, 4, 2, 1, 1, 3.0f, 15);     /* one class per row */
    }
}

static void in_place(void **state)
{
    (void)state;
    enum { rows = 4, classes = 13, stride = 20 };
    float original[rows * stride], buffer[rows * stride], out[rows * stride];
    kd_test_rng rng = {77};
    for (size_t i = 0; i < rows * stride; i++)
        original[i] = (float)(8.0 * kd_test_normal(&rng));
    original[5] = -INFINITY;
    original[stride + 12] = -INFINITY;
    for (size_t k = 0; k < 2; k++) {
        /* Packed. */
        memcpy(buffer, original, sizeof buffer);
        assert_int_equal(kernels[k](buffer, rows, classes, classes, 0.7f, out, classes), KD_OK);
        assert_int_equal(kernels[k](buffer, rows, classes, classes, 0.7f, buffer, classes), KD_OK);
        assert_memory_equal(buffer, out, rows * classes * sizeof(float));

        /* Strided: the padding between rows stays as it was. */
        memcpy(buffer, original, sizeof buffer);
        kd_test_fill_sentinel(out, rows * stride);
        assert_int_equal(kernels[k](buffer, rows, classes, stride, 3.0f, out, stride), KD_OK);
        assert_int_equal(kernels[k](buffer, rows, classes, stride, 3.0f, buffer, stride), KD_OK);
        for (size_t r = 0; r < rows; r++) {
            assert_memory_equal(buffer + r * stride, out + r * stride, classes * sizeof(float));
            assert_memory_equal(buffer + r * stride + classes, original + r * stride + classes,
                                (stride - classes) * sizeof(float));
            check_row(k, buffer + r * stride, original + r * stride, classes, 3.0f, "in place");
        }
    }
}

static void masks(void **state)
{
    (void)state;
    enum { rows = 4, classes = 6 };
    const float v[rows * classes] = {
        -INFINITY, 2.0f,      -INFINITY, 0.0f,      -INFINITY, 1.0f,
        5.0f,      -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
        -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -FLT_MAX,
        FLT_MAX,   -INFINITY, 3.0f,      -INFINITY, -FLT_MAX,  -INFINITY,
    };
    const float temperatures[] = {1e-3f, 0.5f, 1.0f, 40.0f, 1e4f};
    float p[rows * classes], lp[rows * classes];
    for (size_t t = 0; t < sizeof temperatures / sizeof temperatures[0]; t++) {
        float temperature = temperatures[t];
        assert_int_equal(kd_softmax(v, rows, classes, classes, temperature, p, classes), KD_OK);
        assert_int_equal(kd_log_softmax(v, rows, classes, classes, temperature, lp, classes),
                         KD_OK);
        for (size_t i = 0; i < rows * classes; i++) {
            assert_false(isnan(p[i]));
            assert_false(isnan(lp[i]));
            if (v[i] == -INFINITY) {
                assert_true(p[i] == 0.0f);
                assert_true(lp[i] == -INFINITY);
            }
        }
        /* A row with one class left is certain. */
        assert_true(p[6] == 1.0f && lp[6] == 0.0f);
        assert_true(p[17] == 1.0f && lp[17] == 0.0f);
        for (size_t r = 0; r < rows; r++) {
            check_softmax_row(p + r * classes, v + r * classes, classes, temperature, "masks");
            check_log_softmax_row(lp + r * classes, v + r * classes, classes, temperature,
                                  "masks");
        }
    }
}

/* A call that must fail with `want` and leave the output exactly as it was. */
static void expect_rejected(size_t k, const float *x, size_t rows, size_t classes,
                            size_t in_stride, float t, size_t out_stride, kd_status want)
{
    float out[64];
    kd_test_fill_sentinel(out, 64);
    kd_status got = kernels[k](x, rows, classes, in_stride, t, out, out_stride);
    if (got != want)
        fail_msg("%s(rows %zu, classes %zu, strides %zu/%zu, T %g): status %d, want %d",
                 kernel_names[k], rows, classes, in_stride, out_stride, (double)t, (int)got,
                 (int)want);
    if (!kd_test_is_sentinel(out, 64))
        fail_msg("%s wrote its output on a rejected call (status %d)", kernel_names[k], (int)want);
}

static void bad_inputs_leave_output_untouched(void **state)
{
    (void)state;
    const float ok[8] = {1.0f, 2.0f, 3.0f, 4.0f, -1.0f, 0.0f, 0.5f, 8.0f};
    for (size_t k = 0; k < 2; k++) {
        float out[8];
        kd_test_fill_sentinel(out, 8);
        assert_int_equal(kernels[k](NULL, 1, 4, 4, 1.0f, out, 4), KD_ERROR_NULL_POINTER);
        assert_true(kd_test_is_sentinel(out, 8));
        assert_int_equal(kernels[k](ok, 1, 4, 4, 1.0f, NULL, 4), KD_ERROR_NULL_POINTER);

        expect_rejected(k, ok, 0, 4, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
        expect_rejected(k, ok, 2, 0, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);

        expect_rejected(k, ok, 2, 4, 3, 1.0f, 4, KD_ERROR_SHAPE_MISMATCH);
        expect_rejected(k, ok, 2, 4, 4, 1.0f, 3, KD_ERROR_SHAPE_MISMATCH);
        expect_rejected(k, ok, 2, 4, 0, 1.0f, 4, KD_ERROR_SHAPE_MISMATCH);
        expect_rejected(k, ok, 1, 4, 4, 1.0f, 0, KD_ERROR_SHAPE_MISMATCH);

        /* Extents that cannot be addressed, through rows, classes or either stride. */
        expect_rejected(k, ok, SIZE_MAX / 2, 4, 4, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
        expect_rejected(k, ok, 1, SIZE_MAX / 2, SIZE_MAX / 2, 1.0f, SIZE_MAX / 2,
                        KD_ERROR_SIZE_OVERFLOW);
        expect_rejected(k, ok, 2, 4, SIZE_MAX / 2, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
        expect_rejected(k, ok, 2, 4, 4, 1.0f, SIZE_MAX / 2, KD_ERROR_SIZE_OVERFLOW);
        expect_rejected(k, ok, 3, 4, SIZE_MAX / 8, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
        expect_rejected(k, ok, (size_t)1 << 32, (size_t)1 << 32, (size_t)1 << 32, 1.0f,
                        (size_t)1 << 32, KD_ERROR_SIZE_OVERFLOW);
        /* More bytes than PTRDIFF_MAX, though fewer than SIZE_MAX. */
        expect_rejected(k, ok, (size_t)PTRDIFF_MAX / sizeof(float) + 1, 1, 1, 1.0f, 1,
                        KD_ERROR_SIZE_OVERFLOW);

        const float temperatures[] = {0.0f, -0.0f, -1.0f, -0x1p-149f, -FLT_MAX, NAN, -NAN,
                                      INFINITY, -INFINITY};
        for (size_t t = 0; t < sizeof temperatures / sizeof temperatures[0]; t++)
            expect_rejected(k, ok, 2, 4, 4, temperatures[t], 4, KD_ERROR_INVALID_TEMPERATURE);

        /* The bad value sits in the second row, and after a valid first row. */
        const float with_nan[8] = {1.0f, 2.0f, 3.0f, 4.0f, 1.0f, NAN, 3.0f, 4.0f};
        const float with_inf[8] = {1.0f, 2.0f, 3.0f, 4.0f, 1.0f, 2.0f, 3.0f, INFINITY};
        const float all_masked[8] = {1.0f, 2.0f, -INFINITY, 4.0f,
                                     -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        expect_rejected(k, with_nan, 2, 4, 4, 1.0f, 4, KD_ERROR_NONFINITE_INPUT);
        expect_rejected(k, with_inf, 2, 4, 4, 1.0f, 4, KD_ERROR_NONFINITE_INPUT);
        expect_rejected(k, all_masked, 2, 4, 4, 1.0f, 4, KD_ERROR_ALL_MASKED);
        /* Strided: the bad row is the second row of a stride-4 view of 3 columns. */
        const float strided_nan[8] = {1.0f, 2.0f, 3.0f, 9.0f, NAN, 2.0f, 3.0f, 9.0f};
        expect_rejected(k, strided_nan, 2, 3, 4, 1.0f, 3, KD_ERROR_NONFINITE_INPUT);

        /* In place: a rejected call leaves the logits themselves intact. */
        float in_place[8];
        memcpy(in_place, with_nan, sizeof in_place);
        assert_int_equal(kernels[k](in_place, 2, 4, 4, 1.0f, in_place, 4),
                         KD_ERROR_NONFINITE_INPUT);
        assert_memory_equal(in_place, with_nan, sizeof in_place);
        memcpy(in_place, all_masked, sizeof in_place);
        assert_int_equal(kernels[k](in_place, 2, 4, 4, 1.0f, in_place, 4), KD_ERROR_ALL_MASKED);
        assert_memory_equal(in_place, all_masked, sizeof in_place);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(paper_example),
        cmocka_unit_test(random_logits_every_temperature),
        cmocka_unit_test(extreme_logits_and_temperatures),
        cmocka_unit_test(log_softmax_accurate_where_softmax_underflows),
        cmocka_unit_test(strided_input_and_output),
        cmocka_unit_test(in_place),
        cmocka_unit_test(masks),
        cmocka_unit_test(bad_inputs_leave_output_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
