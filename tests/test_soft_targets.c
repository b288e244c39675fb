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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
