/* kd_soft_targets against an independent double-precision reference, and every bad input. */
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

/* Reference: q_i = 1 / sum_j exp((v_j - v_i) / T), in double, written independently of the
 * library's max-shift formulation. Masked (-inf) classes get 0. */
static void reference_row(const float *v, size_t n, double t, double *q)
{
    for (size_t i = 0; i < n; i++) {
        if (v[i] == -INFINITY) {
            q[i] = 0.0;
            continue;
        }
        double denominator = 0.0;
        for (size_t j = 0; j < n; j++)
            if (v[j] != -INFINITY)
                denominator += exp(((double)v[j] - (double)v[i]) / t);
        q[i] = 1.0 / denominator;
    }
}

/* Largest error of a row against the reference, relative to each value, with an absolute
 * floor at the smallest normal float (below it float results are denormal). */
static double row_error(const float *got, const double *want, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]) / fmax(want[i], (double)FLT_MIN);
        worst = fmax(worst, err);
    }
    return worst;
}

static void check_against_reference(const float *logits, size_t rows, size_t classes, float t)
{
    float *q = malloc(rows * classes * sizeof *q);
    double *want = malloc(classes * sizeof *want);
    assert_non_null(q);
    assert_non_null(want);
    assert_int_equal(kd_soft_targets(logits, rows, classes, t, q), KD_OK);
    for (size_t r = 0; r < rows; r++) {
        reference_row(logits + r * classes, classes, t, want);
        double err = row_error(q + r * classes, want, classes);
        if (err > 4 * FLT_EPSILON)
            fail_msg("T = %g, row %zu: relative error %g", (double)t, r, err);
        double sum = 0.0;
        for (size_t i = 0; i < classes; i++)
            sum += q[r * classes + i];
        assert_true(fabs(sum - 1.0) <= classes * FLT_EPSILON);
    }
    free(want);
    free(q);
}

static void paper_example(void **state)
{
    (void)state;
    /* Logits 1 and 10 (PAPER.md): T = 1 gives 0.00012339, T = 10 gives 0.28905 / 0.71095. */
    const float v[2] = {1.0f, 10.0f};
    float q[2];
    assert_int_equal(kd_soft_targets(v, 1, 2, 1.0f, q), KD_OK);
    assert_float_equal(q[0], 0.0001233945759862317, 1e-10);
    assert_float_equal(q[1], 0.9998766054240137, 1e-7);
    assert_int_equal(kd_soft_targets(v, 1, 2, 10.0f, q), KD_OK);
    assert_float_equal(q[0], 0.28905049737499605, 1e-7);
    assert_float_equal(q[1], 0.7109495026250039, 1e-7);
}

static void logits_that_overflow_naive_expf(void **state)
{
    (void)state;
    const float v[2] = {1000.0f, 1010.0f};
    float q[2];
    assert_int_equal(kd_soft_targets(v, 1, 2, 0.5f, q), KD_OK);
    double low = exp(-20.0) / (1.0 + exp(-20.0));
    assert_true(fabs(q[0] - low) <= 2 * FLT_EPSILON * low);
    assert_true(fabs(q[1] - (1.0 - low)) <= FLT_EPSILON);

    const float extreme[3] = {FLT_MAX, -FLT_MAX, 0.0f};
    check_against_reference(extreme, 1, 3, 1e-3f);
    check_against_reference(extreme, 1, 3, 1e4f);
}

static void random_logits_every_temperature(void **state)
{
    (void)state;
    enum { rows = 7, classes = 301 };
    static float v[rows * classes];
    kd_test_rng rng = {42};
    const float temperatures[] = {1e-3f, 0.01f, 0.5f, 1.0f, 2.5f, 20.0f, 100.0f, 1e3f, 1e4f};
    const double scales[] = {1e-3, 1.0, 30.0, 1e4};
    for (size_t s = 0; s < sizeof scales / sizeof scales[0]; s++) {
        for (size_t i = 0; i < rows * classes; i++)
            v[i] = (float)(scales[s] * kd_test_normal(&rng));
        for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++)
            check_against_reference(v, rows, classes, temperatures[k]);
    }
}

static void many_classes(void **state)
{
    (void)state;
    enum { classes = 256000 };
    float *v = malloc(classes * sizeof *v);
    assert_non_null(v);
    kd_test_rng rng = {7};
    for (size_t i = 0; i < classes; i++)
        v[i] = (float)(4.0 * kd_test_normal(&rng));
    float *q = malloc(classes * sizeof *q);
    assert_non_null(q);
    assert_int_equal(kd_soft_targets(v, 1, classes, 1.0f, q), KD_OK);
    /* Sum exactly in double, compare a few entries against the closed form. */
    double max = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < classes; i++)
        max = fmax(max, v[i]);
    for (size_t i = 0; i < classes; i++)
        sum += exp((double)v[i] - max);
    for (size_t i = 0; i < classes; i += 997) {
        double want = exp((double)v[i] - max) / sum;
        assert_true(fabs(q[i] - want) <= 2 * FLT_EPSILON * want);
    }
    free(q);
    free(v);
}

static void in_place_equals_out_of_place(void **state)
{
    (void)state;
    enum { rows = 5, classes = 33 };
    float v[rows * classes], q[rows * classes];
    kd_test_rng rng = {3};
    for (size_t i = 0; i < rows * classes; i++)
        v[i] = (float)(10.0 * kd_test_normal(&rng));
    assert_int_equal(kd_soft_targets(v, rows, classes, 3.0f, q), KD_OK);
    assert_int_equal(kd_soft_targets(v, rows, classes, 3.0f, v), KD_OK);
    assert_memory_equal(v, q, sizeof q);
}

static void masked_classes_get_zero(void **state)
{
    (void)state;
    const float v[2 * 4] = {-INFINITY, 2.0f, -INFINITY, 0.0f, 5.0f, -INFINITY, -INFINITY, -INFINITY};
    float q[8];
    assert_int_equal(kd_soft_targets(v, 2, 4, 2.0f, q), KD_OK);
    assert_true(q[0] == 0.0f && q[2] == 0.0f);
    assert_float_equal(q[1], 1.0 / (1.0 + exp(-1.0)), 1e-7);
    assert_float_equal(q[4], 1.0f, 0.0f);
    assert_true(q[5] == 0.0f && q[6] == 0.0f && q[7] == 0.0f);
    check_against_reference(v, 2, 4, 0.1f);
}

static void single_class_is_certain(void **state)
{
    (void)state;
    const float v[3] = {-3.0f, 1e30f, 7.0f};
    float q[3];
    assert_int_equal(kd_soft_targets(v, 3, 1, 1e-3f, q), KD_OK);
    assert_true(q[0] == 1.0f && q[1] == 1.0f && q[2] == 1.0f);
}

/* A call that must fail with `want` and leave the output exactly as it was. */
static void expect_rejected(const float *v, size_t rows, size_t classes, float t, kd_status want)
{
    float out[8];
    kd_test_fill_sentinel(out, 8);
    assert_int_equal(kd_soft_targets(v, rows, classes, t, out), want);
    assert_true(kd_test_is_sentinel(out, 8));
}

static void bad_inputs_leave_output_untouched(void **state)
{
    (void)state;
    const float ok[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    float out[4];
    assert_int_equal(kd_soft_targets(NULL, 1, 4, 1.0f, out), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_soft_targets(ok, 1, 4, 1.0f, NULL), KD_ERROR_NULL_POINTER);

    expect_rejected(ok, 0, 4, 1.0f, KD_ERROR_ZERO_SIZE);
    expect_rejected(ok, 1, 0, 1.0f, KD_ERROR_ZERO_SIZE);
    expect_rejected(ok, SIZE_MAX / 2, 4, 1.0f, KD_ERROR_SIZE_OVERFLOW);
    expect_rejected(ok, 4, SIZE_MAX / 2, 1.0f, KD_ERROR_SIZE_OVERFLOW);
    expect_rejected(ok, (size_t)1 << 32, (size_t)1 << 32, 1.0f, KD_ERROR_SIZE_OVERFLOW);

    const float temperatures[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++)
        expect_rejected(ok, 1, 4, temperatures[k], KD_ERROR_INVALID_TEMPERATURE);

    const float with_nan[4] = {1.0f, NAN, 3.0f, 4.0f};
    const float with_inf[4] = {1.0f, 2.0f, INFINITY, 4.0f};
    const float all_masked[4] = {1.0f, 2.0f, -INFINITY, -INFINITY};
    expect_rejected(with_nan, 2, 2, 1.0f, KD_ERROR_NONFINITE_INPUT);
    expect_rejected(with_inf, 2, 2, 1.0f, KD_ERROR_NONFINITE_INPUT);
    expect_rejected(all_masked, 2, 2, 1.0f, KD_ERROR_ALL_MASKED);

    /* In place: a rejected call leaves the logits themselves intact. */
    float in_place[4] = {1.0f, 2.0f, NAN, 4.0f};
    assert_int_equal(kd_soft_targets(in_place, 1, 4, 1.0f, in_place), KD_ERROR_NONFINITE_INPUT);
    assert_true(in_place[0] == 1.0f && in_place[1] == 2.0f && isnan(in_place[2]) && in_place[3] == 4.0f);
}

/* ==== kd_soft_targets_strided ============================================================= */

/* Random logits, with a few masked classes (never a whole row). */
static void random_logits(float *v, size_t n, size_t classes, double scale, uint64_t seed)
{
    kd_test_rng rng = {seed};
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(scale * kd_test_normal(&rng));
    for (size_t i = 3; i < n; i += 11)
        if (i % classes != 0)
            v[i] = -INFINITY;
}

/* Copies a packed rows x classes matrix into column `col` of a matrix of row stride `stride`
 * whose other elements are `fill`. The result has rows + 1 rows (one extra row of padding). */
static float *embed(const float *packed, size_t rows, size_t classes, size_t stride, size_t col,
                    float fill)
{
    assert_true(col + classes <= stride);
    float *big = malloc((rows + 1) * stride * sizeof *big);
    assert_non_null(big);
    for (size_t i = 0; i < (rows + 1) * stride; i++)
        big[i] = fill;
    for (size_t r = 0; r < rows; r++)
        memcpy(big + r * stride + col, packed + r * classes, classes * sizeof(float));
    return big;
}

/* True when every element of a (rows + 1) x stride output matrix outside the rows x classes
 * block at column `col` still holds its sentinel. */
static int outside_is_sentinel(const float *big, size_t rows, size_t classes, size_t stride,
                               size_t col)
{
    size_t n = (rows + 1) * stride;
    float *reference = malloc(n * sizeof *reference);
    assert_non_null(reference);
    kd_test_fill_sentinel(reference, n);
    int ok = 1;
    for (size_t i = 0; i < n; i++) {
        size_t r = i / stride, c = i % stride;
        int inside = r < rows && c >= col && c < col + classes;
        if (!inside && memcmp(&big[i], &reference[i], sizeof(float)) != 0)
            ok = 0;
    }
    free(reference);
    return ok;
}

static void strided_equals_packed(void **state)
{
    (void)state;
    enum { rows = 6, classes = 37 };
    static float v[rows * classes], q[rows * classes], out[rows * classes];
    random_logits(v, rows * classes, classes, 6.0, 101);
    const float temperatures[] = {1e-3f, 0.5f, 1.0f, 4.0f, 1e4f};
    for (size_t t = 0; t < sizeof temperatures / sizeof temperatures[0]; t++) {
        float temperature = temperatures[t];
        assert_int_equal(kd_soft_targets(v, rows, classes, temperature, q), KD_OK);

        /* Packed strides: exactly kd_soft_targets. */
        assert_int_equal(kd_soft_targets_strided(v, rows, classes, classes, temperature, out,
                                                 classes),
                         KD_OK);
        assert_memory_equal(out, q, sizeof q);

        /* A sub-matrix of a bigger matrix padded with NaN (never read), into a sub-matrix of
         * a bigger output (nothing outside it written). */
        const size_t in_stride = 50, in_col = 7, out_stride = 41, out_col = 2;
        float *in = embed(v, rows, classes, in_stride, in_col, NAN);
        size_t out_n = (rows + 1) * out_stride;
        float *big = malloc(out_n * sizeof *big);
        assert_non_null(big);
        kd_test_fill_sentinel(big, out_n);
        assert_int_equal(kd_soft_targets_strided(in + in_col, rows, classes, in_stride,
                                                 temperature, big + out_col, out_stride),
                         KD_OK);
        for (size_t r = 0; r < rows; r++)
            assert_memory_equal(big + r * out_stride + out_col, q + r * classes,
                                classes * sizeof(float));
        assert_true(outside_is_sentinel(big, rows, classes, out_stride, out_col));

        /* In place on the sub-matrix: same pointer, same stride; the NaN padding stays. */
        assert_int_equal(kd_soft_targets_strided(in + in_col, rows, classes, in_stride,
                                                 temperature, in + in_col, in_stride),
                         KD_OK);
        for (size_t r = 0; r < rows + 1; r++)
            for (size_t c = 0; c < in_stride; c++) {
                float got = in[r * in_stride + c];
                if (r < rows && c >= in_col && c < in_col + classes)
                    assert_memory_equal(&got, &q[r * classes + c - in_col], sizeof got);
                else
                    assert_true(isnan(got));
            }
        free(big);
        free(in);
    }
}

/* kd_soft_targets_strided must fail with `want` and leave the output untouched. */
static void expect_strided_rejected(const float *v, size_t rows, size_t classes, size_t in_stride,
                                    float t, size_t out_stride, kd_status want)
{
    float out[32];
    kd_test_fill_sentinel(out, 32);
    kd_status got = kd_soft_targets_strided(v, rows, classes, in_stride, t, out, out_stride);
    if (got != want)
        fail_msg("kd_soft_targets_strided(rows %zu, classes %zu, strides %zu/%zu, T %g): "
                 "status %d, want %d",
                 rows, classes, in_stride, out_stride, (double)t, (int)got, (int)want);
    assert_true(kd_test_is_sentinel(out, 32));
}

static void strided_bad_inputs_leave_output_untouched(void **state)
{
    (void)state;
    const float ok[8] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f};
    float out[8];
    kd_test_fill_sentinel(out, 8);
    assert_int_equal(kd_soft_targets_strided(NULL, 2, 4, 4, 1.0f, out, 4), KD_ERROR_NULL_POINTER);
    assert_true(kd_test_is_sentinel(out, 8));
    assert_int_equal(kd_soft_targets_strided(ok, 2, 4, 4, 1.0f, NULL, 4), KD_ERROR_NULL_POINTER);

    expect_strided_rejected(ok, 0, 4, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
    expect_strided_rejected(ok, 2, 0, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
    expect_strided_rejected(ok, 2, 4, 3, 1.0f, 4, KD_ERROR_SHAPE_MISMATCH);
    expect_strided_rejected(ok, 2, 4, 4, 1.0f, 3, KD_ERROR_SHAPE_MISMATCH);
    expect_strided_rejected(ok, 2, 4, 0, 1.0f, 4, KD_ERROR_SHAPE_MISMATCH);
    expect_strided_rejected(ok, SIZE_MAX / 2, 4, 4, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
    expect_strided_rejected(ok, 2, 4, SIZE_MAX / 2, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
    expect_strided_rejected(ok, 2, 4, 4, 1.0f, SIZE_MAX / 2, KD_ERROR_SIZE_OVERFLOW);
    expect_strided_rejected(ok, 1, SIZE_MAX / 2, SIZE_MAX / 2, 1.0f, SIZE_MAX / 2,
                            KD_ERROR_SIZE_OVERFLOW);
    const float temperatures[] = {0.0f, -0.0f, -2.0f, NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++)
        expect_strided_rejected(ok, 2, 4, 4, temperatures[k], 4, KD_ERROR_INVALID_TEMPERATURE);

    /* Row 1 of a 2 x 3 view with stride 4 holds the bad values (elements 4..6). */
    const float with_nan[8] = {1.0f, 2.0f, 3.0f, 0.0f, 1.0f, NAN, 3.0f, 0.0f};
    const float with_inf[8] = {1.0f, 2.0f, 3.0f, 0.0f, INFINITY, 2.0f, 3.0f, 0.0f};
    const float all_masked[8] = {1.0f, 2.0f, 3.0f, 0.0f, -INFINITY, -INFINITY, -INFINITY, 0.0f};
    expect_strided_rejected(with_nan, 2, 3, 4, 1.0f, 3, KD_ERROR_NONFINITE_INPUT);
    expect_strided_rejected(with_inf, 2, 3, 4, 1.0f, 3, KD_ERROR_NONFINITE_INPUT);
    expect_strided_rejected(all_masked, 2, 3, 4, 1.0f, 3, KD_ERROR_ALL_MASKED);

    /* Padding columns are not part of the matrix: NaN there is fine. */
    const float nan_padding[8] = {1.0f, 2.0f, 3.0f, NAN, 1.0f, 2.0f, 3.0f, NAN};
    float q[6];
    assert_int_equal(kd_soft_targets_strided(nan_padding, 2, 3, 4, 1.0f, q, 3), KD_OK);
    float packed[6];
    const float v[6] = {1.0f, 2.0f, 3.0f, 1.0f, 2.0f, 3.0f};
    assert_int_equal(kd_soft_targets(v, 2, 3, 1.0f, packed), KD_OK);
    assert_memory_equal(q, packed, sizeof q);
}

/* ==== kd_soft_targets_from_probabilities ================================================= */

/* q_i = p_i^(1/T) / sum_j p_j^(1/T) = 1 / sum_j exp((log p_j - log p_i) / T) in double; a zero
 * probability stays 0. */
static void reference_from_probabilities(const float *p, size_t n, double t, double *q)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == 0.0f) {
            q[i] = 0.0;
            continue;
        }
        double denominator = 0.0;
        for (size_t j = 0; j < n; j++)
            if (p[j] != 0.0f)
                denominator += exp((log((double)p[j]) - log((double)p[i])) / t);
        q[i] = 1.0 / denominator;
    }
}

/* Softmax of a float row at T = 1 computed in double, then rounded to float: what a teacher run
 * would have saved. */
static void probabilities_from_logits(const float *v, size_t n, float *p)
{
    double *exact = malloc(n * sizeof *exact);
    assert_non_null(exact);
    reference_row(v, n, 1.0, exact);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)exact[i];
    free(exact);
}

static void from_probabilities_at_one_renormalises(void **state)
{
    (void)state;
    enum { rows = 4, classes = 57 };
    static float p[rows * classes], q[rows * classes];
    static double want[classes];
    kd_test_rng rng = {202};
    /* Rows summing to 1, 1 + 4e-4, 1 - 4e-4 and 1 + 9e-4: all within the tolerance. */
    const double scale[rows] = {1.0, 1.0004, 0.9996, 1.0009};
    for (size_t r = 0; r < rows; r++) {
        double u[classes], sum = 0.0;
        for (size_t i = 0; i < classes; i++) {
            u[i] = kd_test_uniform(&rng, 0.01, 1.0);
            /* Some zeros, which must stay zero. */
            if ((r == 0 && i == 5) || (r == 1 && i == 9) || (r == 2 && i == 1))
                u[i] = 0.0;
            sum += u[i];
        }
        for (size_t i = 0; i < classes; i++)
            p[r * classes + i] = (float)(u[i] / sum * scale[r]);
    }
    p[2 * classes + 1] = -0.0f; /* -0 is >= 0: a zero too */
    assert_int_equal(kd_soft_targets_from_probabilities(p, rows, classes, classes, 1.0f, q,
                                                        classes),
                     KD_OK);
    for (size_t r = 0; r < rows; r++) {
        double sum = 0.0;
        for (size_t i = 0; i < classes; i++)
            sum += p[r * classes + i];
        for (size_t i = 0; i < classes; i++)
            want[i] = p[r * classes + i] / sum;
        double err = row_error(q + r * classes, want, classes);
        if (err > 4 * FLT_EPSILON)
            fail_msg("row %zu: relative error %g after renormalising", r, err);
        double got_sum = 0.0;
        for (size_t i = 0; i < classes; i++)
            got_sum += q[r * classes + i];
        assert_true(fabs(got_sum - 1.0) <= classes * FLT_EPSILON);
    }
    assert_true(q[5] == 0.0f && q[classes + 9] == 0.0f && q[2 * classes + 1] == 0.0f);
}

/* Probabilities saved at T = 1 (softmax(v) in double, rounded to float), re-tempered to T,
 * against softmax(v / T) in double.
 *
 * Tolerance: each saved p_i carries a relative rounding error of at most 2^-24, so log p_i is
 * off by at most 2^-24 and log p_i / T by delta = 2^-24 / T. Perturbing every exponent of a
 * softmax by at most delta moves each output by a factor within exp(+-2 delta), i.e. a relative
 * error of at most 2 delta (1 + 2 delta) ~ 2^-23 / T. On top comes the library's own rounding,
 * the "few float ulps" of kd_soft_targets (4 ulps, as the tests above use). Logits of scale 3
 * over 50 classes keep every p_i a normal float (>= ~1e-10), so the 2^-24 bound holds. */
static void from_probabilities_equals_logits_path(void **state)
{
    (void)state;
    enum { rows = 4, classes = 50 };
    static float v[rows * classes], p[rows * classes], q[rows * classes], q_logits[rows * classes];
    static double want[classes];
    kd_test_rng rng = {303};
    for (size_t i = 0; i < rows * classes; i++)
        v[i] = (float)(3.0 * kd_test_normal(&rng));
    v[7] = -INFINITY; /* a masked logit gives probability 0, which masks again */
    for (size_t r = 0; r < rows; r++)
        probabilities_from_logits(v + r * classes, classes, p + r * classes);
    assert_true(p[7] == 0.0f);
    const float temperatures[] = {0.05f, 0.3f, 1.0f, 2.0f, 7.0f, 100.0f, 1e4f};
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++) {
        float t = temperatures[k];
        double tolerance = 0x1p-23 / (double)t * 1.01 + 4 * FLT_EPSILON;
        assert_int_equal(kd_soft_targets_from_probabilities(p, rows, classes, classes, t, q,
                                                            classes),
                         KD_OK);
        assert_int_equal(kd_soft_targets(v, rows, classes, t, q_logits), KD_OK);
        for (size_t r = 0; r < rows; r++) {
            reference_row(v + r * classes, classes, t, want);
            double err = row_error(q + r * classes, want, classes);
            if (err > tolerance)
                fail_msg("T = %g, row %zu: relative error %g > %g", (double)t, r, err, tolerance);
            /* And the same as the logits path, within both paths' errors. */
            for (size_t i = 0; i < classes; i++) {
                double a = q[r * classes + i], b = q_logits[r * classes + i];
                assert_true(fabs(a - b) <= (tolerance + 4 * FLT_EPSILON) * 1.01 * fmax(b, FLT_MIN));
            }
        }
        assert_true(q[7] == 0.0f);
    }
}

static void from_probabilities_zeros_stay_zero(void **state)
{
    (void)state;
    const float p[2 * 5] = {0.5f, 0.0f, 0.25f, 0.0f, 0.25f, 0.0f, 0.0f, 1.0f, 0.0f, 0.0f};
    float q[10];
    double want[5];
    const float temperatures[] = {1e-3f, 0.1f, 1.0f, 3.0f, 1e4f};
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++) {
        float t = temperatures[k];
        assert_int_equal(kd_soft_targets_from_probabilities(p, 2, 5, 5, t, q, 5), KD_OK);
        for (size_t i = 0; i < 10; i++) {
            assert_false(isnan(q[i]));
            if (p[i] == 0.0f)
                assert_true(q[i] == 0.0f);
        }
        assert_true(q[7] == 1.0f);
        reference_from_probabilities(p, 5, t, want);
        assert_true(row_error(q, want, 5) <= 4 * FLT_EPSILON);
        /* 0.25^(1/T) / (0.5^(1/T) + 2 * 0.25^(1/T)) = 1 / (2^(1/T) + 2). */
        assert_float_equal(q[2], 1.0 / (pow(2.0, 1.0 / t) + 2.0), 4 * FLT_EPSILON);
    }
}

static void from_probabilities_strided_and_in_place(void **state)
{
    (void)state;
    enum { rows = 5, classes = 19 };
    static float v[rows * classes], p[rows * classes], q[rows * classes];
    random_logits(v, rows * classes, classes, 2.0, 404);
    for (size_t r = 0; r < rows; r++)
        probabilities_from_logits(v + r * classes, classes, p + r * classes);
    assert_int_equal(kd_soft_targets_from_probabilities(p, rows, classes, classes, 2.5f, q,
                                                        classes),
                     KD_OK);

    const size_t in_stride = 30, in_col = 4, out_stride = 22, out_col = 3;
    float *in = embed(p, rows, classes, in_stride, in_col, NAN);
    size_t out_n = (rows + 1) * out_stride;
    float *big = malloc(out_n * sizeof *big);
    assert_non_null(big);
    kd_test_fill_sentinel(big, out_n);
    assert_int_equal(kd_soft_targets_from_probabilities(in + in_col, rows, classes, in_stride,
                                                        2.5f, big + out_col, out_stride),
                     KD_OK);
    for (size_t r = 0; r < rows; r++)
        assert_memory_equal(big + r * out_stride + out_col, q + r * classes,
                            classes * sizeof(float));
    assert_true(outside_is_sentinel(big, rows, classes, out_stride, out_col));

    /* In place, strided. */
    assert_int_equal(kd_soft_targets_from_probabilities(in + in_col, rows, classes, in_stride,
                                                        2.5f, in + in_col, in_stride),
                     KD_OK);
    for (size_t r = 0; r < rows; r++) {
        assert_memory_equal(in + r * in_stride + in_col, q + r * classes, classes * sizeof(float));
        for (size_t c = 0; c < in_stride; c++)
            if (c < in_col || c >= in_col + classes)
                assert_true(isnan(in[r * in_stride + c]));
    }
    free(big);
    free(in);
}

/* kd_soft_targets_from_probabilities must fail with `want` and leave the output untouched. */
static void expect_probabilities_rejected(const float *p, size_t rows, size_t classes,
                                          size_t in_stride, float t, size_t out_stride,
                                          kd_status want)
{
    float out[32];
    kd_test_fill_sentinel(out, 32);
    kd_status got = kd_soft_targets_from_probabilities(p, rows, classes, in_stride, t, out,
                                                       out_stride);
    if (got != want)
        fail_msg("kd_soft_targets_from_probabilities(rows %zu, classes %zu, strides %zu/%zu, "
                 "T %g): status %d, want %d",
                 rows, classes, in_stride, out_stride, (double)t, (int)got, (int)want);
    assert_true(kd_test_is_sentinel(out, 32));
}

static void from_probabilities_bad_inputs(void **state)
{
    (void)state;
    const float ok[8] = {0.25f, 0.25f, 0.5f, 0.0f, 0.1f, 0.2f, 0.3f, 0.4f};
    float out[8];
    kd_test_fill_sentinel(out, 8);
    assert_int_equal(kd_soft_targets_from_probabilities(NULL, 2, 4, 4, 1.0f, out, 4),
                     KD_ERROR_NULL_POINTER);
    assert_true(kd_test_is_sentinel(out, 8));
    assert_int_equal(kd_soft_targets_from_probabilities(ok, 2, 4, 4, 1.0f, NULL, 4),
                     KD_ERROR_NULL_POINTER);
    expect_probabilities_rejected(ok, 0, 4, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
    expect_probabilities_rejected(ok, 2, 0, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
    expect_probabilities_rejected(ok, 2, 4, 3, 1.0f, 4, KD_ERROR_SHAPE_MISMATCH);
    expect_probabilities_rejected(ok, 2, 4, 4, 1.0f, 2, KD_ERROR_SHAPE_MISMATCH);
    expect_probabilities_rejected(ok, SIZE_MAX / 2, 4, 4, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
    expect_probabilities_rejected(ok, 2, 4, SIZE_MAX / 2, 1.0f, 4, KD_ERROR_SIZE_OVERFLOW);
    const float temperatures[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY};
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++)
        expect_probabilities_rejected(ok, 2, 4, 4, temperatures[k], 4,
                                      KD_ERROR_INVALID_TEMPERATURE);

    /* Every bad row is the second row, after a valid first row {0.25, 0.25, 0.5, 0}. */
    const float bad_rows[][4] = {
        {0.5f, 0.6f, -0.1f, 0.0f},     /* negative, though the row sums to 1 */
        {-1e-30f, 1.0f, 0.0f, 0.0f},   /* negative, tiny */
        {0.5f, 0.502f, 0.0f, 0.0f},    /* sums to 1.002 */
        {0.5f, 0.498f, 0.0f, 0.0f},    /* sums to 0.998 */
        {0.25f, 0.25f, 0.25f, 0.0f},   /* sums to 0.75 */
        {1.0f, 1.0f, 0.0f, 0.0f},      /* sums to 2 */
        /* Every class zero: the row sums to 0, not 1 (ALL_MASKED is documented for logits). */
        {0.0f, 0.0f, 0.0f, 0.0f},
    };
    for (size_t k = 0; k < sizeof bad_rows / sizeof bad_rows[0]; k++) {
        float p[8] = {0.25f, 0.25f, 0.5f, 0.0f};
        memcpy(p + 4, bad_rows[k], sizeof bad_rows[k]);
        expect_probabilities_rejected(p, 2, 4, 4, 1.0f, 4, KD_ERROR_INVALID_PROBABILITIES);
        expect_probabilities_rejected(p, 2, 4, 4, 3.0f, 4, KD_ERROR_INVALID_PROBABILITIES);
    }
    const float nonfinite_rows[][4] = {
        {0.5f, NAN, 0.5f, 0.0f},
        {INFINITY, 0.0f, 0.0f, 0.0f},
        {-INFINITY, 1.0f, 0.0f, 0.0f},
    };
    for (size_t k = 0; k < sizeof nonfinite_rows / sizeof nonfinite_rows[0]; k++) {
        float p[8] = {0.25f, 0.25f, 0.5f, 0.0f};
        memcpy(p + 4, nonfinite_rows[k], sizeof nonfinite_rows[k]);
        expect_probabilities_rejected(p, 2, 4, 4, 1.0f, 4, KD_ERROR_NONFINITE_INPUT);
    }

    /* Sums just inside the tolerance are accepted. */
    const float inside[8] = {0.5f, 0.5009f, 0.0f, 0.0f, 0.3f, 0.6992f, 0.0f, 0.0f};
    float q[8];
    assert_int_equal(kd_soft_targets_from_probabilities(inside, 2, 4, 4, 1.0f, q, 4), KD_OK);

    /* In place: a rejected call leaves the probabilities intact. */
    float in_place[8] = {0.25f, 0.25f, 0.5f, 0.0f, 0.5f, 0.6f, -0.1f, 0.0f};
    float copy[8];
    memcpy(copy, in_place, sizeof copy);
    assert_int_equal(kd_soft_targets_from_probabilities(in_place, 2, 4, 4, 2.0f, in_place, 4),
                     KD_ERROR_INVALID_PROBABILITIES);
    assert_memory_equal(in_place, copy, sizeof copy);
}

/* ==== kd_soft_targets_ensemble ============================================================ */

/* q_i = 1 / sum_j exp((z_j - z_i) / T) for double logits, -inf masking. */
static void reference_row_double(const double *z, size_t n, double t, double *q)
{
    for (size_t i = 0; i < n; i++) {
        if (z[i] == -INFINITY) {
            q[i] = 0.0;
            continue;
        }
        double denominator = 0.0;
        for (size_t j = 0; j < n; j++)
            if (z[j] != -INFINITY)
                denominator += exp((z[j] - z[i]) / t);
        q[i] = 1.0 / denominator;
    }
}

/* The ensemble's row r, in double, from the definitions in the header. weights NULL: equal. */
static void reference_ensemble_row(const float *const *members, size_t count,
                                   const float *weights, kd_ensemble_mode mode, size_t r,
                                   size_t classes, size_t stride, double t, double *q)
{
    double total = 0.0;
    for (size_t m = 0; m < count; m++)
        total += weights ? (double)weights[m] : 1.0;
    double *acc = calloc(classes, sizeof *acc), *member_q = malloc(classes * sizeof *member_q);
    assert_non_null(acc);
    assert_non_null(member_q);
    for (size_t m = 0; m < count; m++) {
        double w = (weights ? (double)weights[m] : 1.0) / total;
        if (w == 0.0)
            continue;
        const float *v = members[m] + r * stride;
        if (mode == KD_ENSEMBLE_ARITHMETIC) {
            reference_row(v, classes, t, member_q);
            for (size_t i = 0; i < classes; i++)
                acc[i] += w * member_q[i];
        } else {
            for (size_t i = 0; i < classes; i++)
                acc[i] = (v[i] == -INFINITY || acc[i] == -INFINITY) ? -INFINITY
                                                                    : acc[i] + w * (double)v[i];
        }
    }
    if (mode == KD_ENSEMBLE_ARITHMETIC)
        memcpy(q, acc, classes * sizeof *q);
    else
        reference_row_double(acc, classes, t, q);
    free(member_q);
    free(acc);
}

/* Ensemble results within 8 float ulps (relative, floor FLT_MIN) of the reference: the header
 * promises kd_soft_targets' numerics ("a few float ulps", 4 in the tests above) for each member
 * softmax, or for the softmax of the double-precision mean of logits; the weighted mean of
 * member softmaxes adds the rounding of the normalised weights and of the accumulation. Masks
 * are exact: a reference 0 must read exactly 0. */
static void check_ensemble(const float *const *members, size_t count, const float *weights,
                           kd_ensemble_mode mode, size_t rows, size_t classes, size_t stride,
                           float t, const float *got, size_t got_stride)
{
    double *want = malloc(classes * sizeof *want);
    assert_non_null(want);
    for (size_t r = 0; r < rows; r++) {
        reference_ensemble_row(members, count, weights, mode, r, classes, stride, t, want);
        const float *row = got + r * got_stride;
        for (size_t i = 0; i < classes; i++) {
            assert_false(isnan(row[i]));
            if (want[i] == 0.0 && row[i] != 0.0f)
                fail_msg("mode %d, row %zu, class %zu: want exactly 0, got %g", (int)mode, r, i,
                         (double)row[i]);
        }
        double err = row_error(row, want, classes);
        if (err > 8 * FLT_EPSILON)
            fail_msg("mode %d, T = %g, row %zu: relative error %g", (int)mode, (double)t, r, err);
        double sum = 0.0;
        for (size_t i = 0; i < classes; i++)
            sum += row[i];
        assert_true(fabs(sum - 1.0) <= 2 * classes * FLT_EPSILON);
    }
    free(want);
}

enum { ens_rows = 4, ens_classes = 29 };
static float ens_a[ens_rows * ens_classes], ens_b[ens_rows * ens_classes],
    ens_c[ens_rows * ens_classes];

static void fill_ensemble_members(void)
{
    random_logits(ens_a, ens_rows * ens_classes, ens_classes, 3.0, 501);
    random_logits(ens_b, ens_rows * ens_classes, ens_classes, 5.0, 502);
    random_logits(ens_c, ens_rows * ens_classes, ens_classes, 1.0, 503);
    /* Different masks per member: b unmasks some of a's masked classes and masks others. */
    for (size_t i = 3; i < ens_rows * ens_classes; i += 11)
        if (i % 2 == 0 && i % ens_classes != 1)
            ens_b[i] = 1.5f;
    for (size_t i = 5; i < ens_rows * ens_classes; i += 13)
        if (i % ens_classes != 0 && i % ens_classes != 1)
            ens_b[i] = -INFINITY;
}

static void ensemble_matches_reference(void **state)
{
    (void)state;
    fill_ensemble_members();
    const float *members[3] = {ens_a, ens_b, ens_c};
    const float weights[3] = {0.2f, 0.5f, 0.3f};
    const float temperatures[] = {0.05f, 1.0f, 4.0f, 100.0f};
    const kd_ensemble_mode modes[2] = {KD_ENSEMBLE_ARITHMETIC, KD_ENSEMBLE_GEOMETRIC};
    float q[ens_rows * ens_classes];
    for (size_t m = 0; m < 2; m++)
        for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++) {
            float t = temperatures[k];
            assert_int_equal(kd_soft_targets_ensemble(members, 3, weights, modes[m], ens_rows,
                                                      ens_classes, ens_classes, t, q,
                                                      ens_classes),
                             KD_OK);
            check_ensemble(members, 3, weights, modes[m], ens_rows, ens_classes, ens_classes, t,
                           q, ens_classes);
            /* NULL weights: equal weights, as are {1, 1, 1}. */
            assert_int_equal(kd_soft_targets_ensemble(members, 3, NULL, modes[m], ens_rows,
                                                      ens_classes, ens_classes, t, q,
                                                      ens_classes),
                             KD_OK);
            check_ensemble(members, 3, NULL, modes[m], ens_rows, ens_classes, ens_classes, t, q,
                           ens_classes);
            const float ones[3] = {1.0f, 1.0f, 1.0f};
            assert_int_equal(kd_soft_targets_ensemble(members, 3, ones, modes[m], ens_rows,
                                                      ens_classes, ens_classes, t, q,
                                                      ens_classes),
                             KD_OK);
            check_ensemble(members, 3, NULL, modes[m], ens_rows, ens_classes, ens_classes, t, q,
                           ens_classes);
        }
}

static void ensemble_weights_are_normalised(void **state)
{
    (void)state;
    fill_ensemble_members();
    const float *members[2] = {ens_a, ens_b};
    /* Weights that differ by a power of two normalise to exactly the same values. */
    const float sets[][2] = {{1.0f, 1.0f}, {2.0f, 2.0f}, {0.25f, 0.25f}, {1024.0f, 1024.0f}};
    const float skewed[][2] = {{3.0f, 1.0f}, {0.75f, 0.25f}, {6.0f, 2.0f}};
    for (int mode = 0; mode < 2; mode++) {
        float first[ens_rows * ens_classes], q[ens_rows * ens_classes];
        for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
            assert_int_equal(kd_soft_targets_ensemble(members, 2, sets[s], (kd_ensemble_mode)mode,
                                                      ens_rows, ens_classes, ens_classes, 2.0f,
                                                      s == 0 ? first : q, ens_classes),
                             KD_OK);
            if (s > 0)
                assert_memory_equal(q, first, sizeof q);
        }
        check_ensemble(members, 2, sets[0], (kd_ensemble_mode)mode, ens_rows, ens_classes,
                       ens_classes, 2.0f, first, ens_classes);
        for (size_t s = 0; s < sizeof skewed / sizeof skewed[0]; s++) {
            assert_int_equal(kd_soft_targets_ensemble(members, 2, skewed[s],
                                                      (kd_ensemble_mode)mode, ens_rows,
                                                      ens_classes, ens_classes, 2.0f,
                                                      s == 0 ? first : q, ens_classes),
                             KD_OK);
            if (s > 0)
                assert_memory_equal(q, first, sizeof q);
        }
        check_ensemble(members, 2, skewed[0], (kd_ensemble_mode)mode, ens_rows, ens_classes,
                       ens_classes, 2.0f, first, ens_classes);
    }
}

static void ensemble_of_one_is_soft_targets(void **state)
{
    (void)state;
    fill_ensemble_members();
    const float *members[1] = {ens_b};
    /* Weights a power of two away from 1 normalise to exactly 1 under any formulation. */
    const float weight_sets[][1] = {{1.0f}, {2.0f}, {0.25f}};
    const float other_weights[][1] = {{0.3f}, {7.0f}};
    const float temperatures[] = {1e-3f, 0.5f, 1.0f, 3.0f, 1e4f};
    float q[ens_rows * ens_classes], want[ens_rows * ens_classes];
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++) {
        float t = temperatures[k];
        assert_int_equal(kd_soft_targets(ens_b, ens_rows, ens_classes, t, want), KD_OK);
        for (int mode = 0; mode < 2; mode++) {
            assert_int_equal(kd_soft_targets_ensemble(members, 1, NULL, (kd_ensemble_mode)mode,
                                                      ens_rows, ens_classes, ens_classes, t, q,
                                                      ens_classes),
                             KD_OK);
            assert_memory_equal(q, want, sizeof q);
            for (size_t w = 0; w < sizeof weight_sets / sizeof weight_sets[0]; w++) {
                assert_int_equal(kd_soft_targets_ensemble(members, 1, weight_sets[w],
                                                          (kd_ensemble_mode)mode, ens_rows,
                                                          ens_classes, ens_classes, t, q,
                                                          ens_classes),
                                 KD_OK);
                assert_memory_equal(q, want, sizeof q);
            }
            for (size_t w = 0; w < sizeof other_weights / sizeof other_weights[0]; w++) {
                assert_int_equal(kd_soft_targets_ensemble(members, 1, other_weights[w],
                                                          (kd_ensemble_mode)mode, ens_rows,
                                                          ens_classes, ens_classes, t, q,
                                                          ens_classes),
                                 KD_OK);
                check_ensemble(members, 1, NULL, (kd_ensemble_mode)mode, ens_rows, ens_classes,
                               ens_classes, t, q, ens_classes);
            }
        }
    }
}

static void ensemble_zero_weight_members_not_read(void **state)
{
    (void)state;
    fill_ensemble_members();
    static float nan_member[ens_rows * ens_classes], masked_member[ens_rows * ens_classes];
    for (size_t i = 0; i < ens_rows * ens_classes; i++) {
        nan_member[i] = NAN;
        masked_member[i] = -INFINITY; /* every row all-masked: invalid if it were read */
    }
    masked_member[0] = INFINITY;
    const float *members[4] = {ens_a, nan_member, ens_c, masked_member};
    const float weights[4] = {1.0f, 0.0f, 3.0f, 0.0f};
    const float *live[2] = {ens_a, ens_c};
    const float live_weights[2] = {1.0f, 3.0f};
    float q[ens_rows * ens_classes];
    for (int mode = 0; mode < 2; mode++) {
        assert_int_equal(kd_soft_targets_ensemble(members, 4, weights, (kd_ensemble_mode)mode,
                                                  ens_rows, ens_classes, ens_classes, 1.5f, q,
                                                  ens_classes),
                         KD_OK);
        check_ensemble(live, 2, live_weights, (kd_ensemble_mode)mode, ens_rows, ens_classes,
                       ens_classes, 1.5f, q, ens_classes);
    }
}

static void ensemble_masks(void **state)
{
    (void)state;
    /* a masks class 1; b masks classes 1 and 2. */
    const float a[5] = {1.0f, -INFINITY, 2.0f, 0.5f, -1.0f};
    const float b[5] = {0.0f, -INFINITY, -INFINITY, 3.0f, 1.0f};
    const float *members[2] = {a, b};
    float q[5];
    /* Arithmetic: only class 1 (masked by both) is 0; class 2 gets half of a's probability. */
    assert_int_equal(kd_soft_targets_ensemble(members, 2, NULL, KD_ENSEMBLE_ARITHMETIC, 1, 5, 5,
                                              1.0f, q, 5),
                     KD_OK);
    assert_true(q[1] == 0.0f);
    assert_true(q[2] > 0.0f);
    double qa[5];
    reference_row(a, 5, 1.0, qa);
    assert_float_equal(q[2], 0.5 * qa[2], 4 * FLT_EPSILON * qa[2]);
    check_ensemble(members, 2, NULL, KD_ENSEMBLE_ARITHMETIC, 1, 5, 5, 1.0f, q, 5);
    /* Geometric: classes 1 and 2 (masked by either) are 0; the rest softmax((a + b) / 2). */
    assert_int_equal(kd_soft_targets_ensemble(members, 2, NULL, KD_ENSEMBLE_GEOMETRIC, 1, 5, 5,
                                              1.0f, q, 5),
                     KD_OK);
    assert_true(q[1] == 0.0f && q[2] == 0.0f);
    const float mean[5] = {0.5f, -INFINITY, -INFINITY, 1.75f, 0.0f};
    double want[5];
    reference_row(mean, 5, 1.0, want);
    assert_true(row_error(q, want, 5) <= 8 * FLT_EPSILON);

    /* A weight-0 member's masks do not count. */
    const float c[5] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, 0.0f};
    const float *three[3] = {a, b, c};
    const float weights[3] = {1.0f, 1.0f, 0.0f};
    float q3[5];
    assert_int_equal(kd_soft_targets_ensemble(three, 3, weights, KD_ENSEMBLE_GEOMETRIC, 1, 5, 5,
                                              1.0f, q3, 5),
                     KD_OK);
    assert_true(row_error(q3, want, 5) <= 8 * FLT_EPSILON);

    /* Members whose masks together cover every class: fine arithmetically, but the geometric
     * mean masks every class. */
    const float x[4] = {-INFINITY, -INFINITY, 1.0f, 2.0f};
    const float y[4] = {1.0f, 2.0f, -INFINITY, -INFINITY};
    const float *disjoint[2] = {x, y};
    float out[4];
    assert_int_equal(kd_soft_targets_ensemble(disjoint, 2, NULL, KD_ENSEMBLE_ARITHMETIC, 1, 4, 4,
                                              1.0f, out, 4),
                     KD_OK);
    check_ensemble(disjoint, 2, NULL, KD_ENSEMBLE_ARITHMETIC, 1, 4, 4, 1.0f, out, 4);
    kd_test_fill_sentinel(out, 4);
    assert_int_equal(kd_soft_targets_ensemble(disjoint, 2, NULL, KD_ENSEMBLE_GEOMETRIC, 1, 4, 4,
                                              1.0f, out, 4),
                     KD_ERROR_ALL_MASKED);
    assert_true(kd_test_is_sentinel(out, 4));
}

static void ensemble_strided(void **state)
{
    (void)state;
    fill_ensemble_members();
    const size_t stride = 40, col = 6, out_stride = 33, out_col = 1;
    float *a = embed(ens_a, ens_rows, ens_classes, stride, col, NAN);
    float *b = embed(ens_b, ens_rows, ens_classes, stride, col, NAN);
    const float *packed[2] = {ens_a, ens_b};
    const float *sub[2] = {a + col, b + col};
    const float weights[2] = {0.4f, 0.6f};
    size_t out_n = (ens_rows + 1) * out_stride;
    float *big = malloc(out_n * sizeof *big);
    assert_non_null(big);
    float want[ens_rows * ens_classes];
    for (int mode = 0; mode < 2; mode++) {
        assert_int_equal(kd_soft_targets_ensemble(packed, 2, weights, (kd_ensemble_mode)mode,
                                                  ens_rows, ens_classes, ens_classes, 0.8f, want,
                                                  ens_classes),
                         KD_OK);
        kd_test_fill_sentinel(big, out_n);
        assert_int_equal(kd_soft_targets_ensemble(sub, 2, weights, (kd_ensemble_mode)mode,
                                                  ens_rows, ens_classes, stride, 0.8f,
                                                  big + out_col, out_stride),
                         KD_OK);
        for (size_t r = 0; r < ens_rows; r++)
            assert_memory_equal(big + r * out_stride + out_col, want + r * ens_classes,
                                ens_classes * sizeof(float));
        assert_true(outside_is_sentinel(big, ens_rows, ens_classes, out_stride, out_col));
        check_ensemble(sub, 2, weights, (kd_ensemble_mode)mode, ens_rows, ens_classes, stride,
                       0.8f, big + out_col, out_stride);
    }
    free(big);
    free(b);
    free(a);
}

/* kd_soft_targets_ensemble must fail with `want` and leave the output untouched. */
static void expect_ensemble_rejected(const float *const *members, size_t count,
                                     const float *weights, kd_ensemble_mode mode, size_t rows,
                                     size_t classes, size_t stride, float t, size_t out_stride,
                                     kd_status want)
{
    float out[32];
    kd_test_fill_sentinel(out, 32);
    kd_status got = kd_soft_targets_ensemble(members, count, weights, mode, rows, classes, stride,
                                             t, out, out_stride);
    if (got != want)
        fail_msg("kd_soft_targets_ensemble(count %zu, mode %d, rows %zu, classes %zu, strides "
                 "%zu/%zu, T %g): status %d, want %d",
                 count, (int)mode, rows, classes, stride, out_stride, (double)t, (int)got,
                 (int)want);
    assert_true(kd_test_is_sentinel(out, 32));
}

static void ensemble_bad_inputs_leave_output_untouched(void **state)
{
    (void)state;
    const float a[8] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f};
    const float b[8] = {0.0f, -1.0f, 2.0f, 0.5f, 1.0f, 1.0f, -INFINITY, 3.0f};
    const float *members[2] = {a, b};
    const float *with_null[2] = {a, NULL};
    const float w[2] = {1.0f, 2.0f};
    for (int m = 0; m < 2; m++) {
        kd_ensemble_mode mode = (kd_ensemble_mode)m;
        assert_int_equal(kd_soft_targets_ensemble(members, 2, w, mode, 2, 4, 4, 1.0f, NULL, 4),
                         KD_ERROR_NULL_POINTER);
        expect_ensemble_rejected(NULL, 2, w, mode, 2, 4, 4, 1.0f, 4, KD_ERROR_NULL_POINTER);
        expect_ensemble_rejected(with_null, 2, w, mode, 2, 4, 4, 1.0f, 4, KD_ERROR_NULL_POINTER);
        expect_ensemble_rejected(members, 0, w, mode, 2, 4, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
        expect_ensemble_rejected(members, 2, w, mode, 0, 4, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
        expect_ensemble_rejected(members, 2, w, mode, 2, 0, 4, 1.0f, 4, KD_ERROR_ZERO_SIZE);
        expect_ensemble_rejected(members, 2, w, mode, 2, 4, 3, 1.0f, 4, KD_ERROR_SHAPE_MISMATCH);
        expect_ensemble_rejected(members, 2, w, mode, 2, 4, 4, 1.0f, 3, KD_ERROR_SHAPE_MISMATCH);
        expect_ensemble_rejected(members, 2, w, mode, SIZE_MAX / 2, 4, 4, 1.0f, 4,
                                 KD_ERROR_SIZE_OVERFLOW);
        expect_ensemble_rejected(members, 2, w, mode, 2, 4, SIZE_MAX / 2, 1.0f, 4,
                                 KD_ERROR_SIZE_OVERFLOW);
        const float temperatures[] = {0.0f, -0.0f, -1.0f, NAN, INFINITY, -INFINITY};
        for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++)
            expect_ensemble_rejected(members, 2, w, mode, 2, 4, 4, temperatures[k], 4,
                                     KD_ERROR_INVALID_TEMPERATURE);

        const float bad_weights[][2] = {
            {1.0f, -1.0f}, {-0.5f, 1.0f}, {1.0f, NAN}, {1.0f, INFINITY}, {0.0f, 0.0f},
            {-0.0f, 0.0f}, {-1.0f, 2.0f},
        };
        for (size_t k = 0; k < sizeof bad_weights / sizeof bad_weights[0]; k++)
            expect_ensemble_rejected(members, 2, bad_weights[k], mode, 2, 4, 4, 1.0f, 4,
                                     KD_ERROR_INVALID_ARGUMENT);

        /* A bad logit in a member of weight > 0 (the second member, second row). */
        const float nan_logit[8] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, NAN, 7.0f, 8.0f};
        const float inf_logit[8] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, INFINITY};
        const float masked_row[8] = {1.0f, 2.0f, 3.0f, 4.0f,
                                     -INFINITY, -INFINITY, -INFINITY, -INFINITY};
        const float *bad_nan[2] = {a, nan_logit};
        const float *bad_inf[2] = {a, inf_logit};
        const float *bad_masked[2] = {a, masked_row};
        expect_ensemble_rejected(bad_nan, 2, w, mode, 2, 4, 4, 1.0f, 4, KD_ERROR_NONFINITE_INPUT);
        expect_ensemble_rejected(bad_inf, 2, NULL, mode, 2, 4, 4, 1.0f, 4,
                                 KD_ERROR_NONFINITE_INPUT);
        expect_ensemble_rejected(bad_masked, 2, w, mode, 2, 4, 4, 1.0f, 4, KD_ERROR_ALL_MASKED);
    }
    const int bad_modes[] = {2, 3, -1, 1000};
    for (size_t k = 0; k < sizeof bad_modes / sizeof bad_modes[0]; k++)
        expect_ensemble_rejected(members, 2, w, (kd_ensemble_mode)bad_modes[k], 2, 4, 4, 1.0f, 4,
                                 KD_ERROR_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(paper_example),
        cmocka_unit_test(logits_that_overflow_naive_expf),
        cmocka_unit_test(random_logits_every_temperature),
        cmocka_unit_test(many_classes),
        cmocka_unit_test(in_place_equals_out_of_place),
        cmocka_unit_test(masked_classes_get_zero),
        cmocka_unit_test(single_class_is_certain),
        cmocka_unit_test(bad_inputs_leave_output_untouched),
        cmocka_unit_test(strided_equals_packed),
        cmocka_unit_test(strided_bad_inputs_leave_output_untouched),
        cmocka_unit_test(from_probabilities_at_one_renormalises),
        cmocka_unit_test(from_probabilities_equals_logits_path),
        cmocka_unit_test(from_probabilities_zeros_stay_zero),
        cmocka_unit_test(from_probabilities_strided_and_in_place),
        cmocka_unit_test(from_probabilities_bad_inputs),
        cmocka_unit_test(ensemble_matches_reference),
        cmocka_unit_test(ensemble_weights_are_normalised),
        cmocka_unit_test(ensemble_of_one_is_soft_targets),
        cmocka_unit_test(ensemble_zero_weight_members_not_read),
        cmocka_unit_test(ensemble_masks),
        cmocka_unit_test(ensemble_strided),
        cmocka_unit_test(ensemble_bad_inputs_leave_output_untouched),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
