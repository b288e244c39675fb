/* The loss's fast paths: the portable and the AVX2 + FMA kernels give the same answers within
 * the accuracy bounds of include/kd/loss.h, and results are bit-identical for every thread
 * count (KD_LOSS_PARAM_THREADS). Linked against libkd.a: it uses the internal test hook
 * kd_loss_use_kernels to run both kernel sets on the same handle. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

#include "loss_internal.h"
#include "support.h"

static void *xmalloc(size_t bytes)
{
    void *p = malloc(bytes);
    assert_non_null(p);
    return p;
}

typedef struct inputs {
    size_t rows, classes;
    float *z, *v;
    int32_t *labels;
} inputs;

/* Random N(0, scale^2) logits; every third row masks two classes in both, one row is ignored. */
static inputs make_inputs(size_t rows, size_t classes, double scale, uint64_t seed)
{
    inputs in = {rows, classes, xmalloc(rows * classes * sizeof(float)),
                 xmalloc(rows * classes * sizeof(float)), xmalloc(rows * sizeof(int32_t))};
    kd_test_rng rng = {seed};
    for (size_t e = 0; e < rows * classes; e++) {
        in.z[e] = (float)(scale * kd_test_normal(&rng));
        in.v[e] = (float)(scale * kd_test_normal(&rng));
    }
    for (size_t r = 0; r < rows; r++) {
        in.labels[r] = (int32_t)(kd_test_rng_next(&rng) % classes);
        if (r % 3 == 2 && classes > 4) {
            size_t masked = (size_t)(in.labels[r] + 1) % classes;
            in.z[r * classes + masked] = in.v[r * classes + masked] = -INFINITY;
            in.v[r * classes + (masked + 1) % classes] = -INFINITY; /* the teacher only */
            if ((size_t)in.labels[r] == (masked + 1) % classes)
                in.labels[r] = (int32_t)((masked + 2) % classes);
        }
    }
    if (rows > 2)
        in.labels[1] = -100;
    return in;
}

static void free_inputs(inputs *in)
{
    free(in->z);
    free(in->v);
    free(in->labels);
}

typedef struct result {
    float *values, *grad;
    size_t value_count;
} result;

static result compute(kd_loss *loss, const inputs *in)
{
    double reduction;
    assert_int_equal(kd_loss_get(loss, KD_LOSS_PARAM_REDUCTION, &reduction), KD_OK);
    result out;
    out.value_count = reduction == KD_REDUCTION_NONE ? in->rows * KD_LOSS_VALUE_COUNT
                                                     : KD_LOSS_VALUE_COUNT;
    out.values = xmalloc(out.value_count * sizeof(float));
    out.grad = xmalloc(in->rows * in->classes * sizeof(float));
    assert_int_equal(kd_loss_compute(loss, in->z, in->classes, in->v, in->classes, in->labels,
                                     in->rows, in->classes, out.values, out.grad, in->classes),
                     KD_OK);
    return out;
}

static void free_result(result *r)
{
    free(r->values);
    free(r->grad);
}

static double gradient_difference(const result *a, const result *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a->grad[i] - (double)b->grad[i];
        num += d * d;
        den += (double)b->grad[i] * (double)b->grad[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void set(kd_loss *loss, kd_loss_param param, double value)
{
    assert_int_equal(kd_loss_set(loss, param, value), KD_OK);
}

static const double temperatures[] = {1e-3, 0.1, 1.0, 4.0, 20.0, 100.0, 1e3, 1e4};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* Portable and AVX2 kernels: values within 1e-5 relative (each is within 1e-5 of the exact
 * value, test_loss.c checks the default set against a long-double reference), gradients within
 * 1e-5 norm-wise; exact zeros at masked classes and ignored rows in both. */
static void portable_and_avx2_agree(void **state)
{
    (void)state;
#if defined(__x86_64__) && defined(__GNUC__)
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        skip();
    static const size_t shapes[][2] = {{5, 7}, {4, 1000}, {3, 32001}};
    static const kd_divergence divergences[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY};
    static const double alphas[] = {0.0, 0.5, 1.0};
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    for (size_t s = 0; s < COUNT(shapes); s++)
        for (int scale = 1; scale <= 10; scale += 9) {
            inputs in = make_inputs(shapes[s][0], shapes[s][1], scale, 7 + s);
            for (size_t ti = 0; ti < COUNT(temperatures); ti++)
                for (size_t d = 0; d < COUNT(divergences); d++)
                    for (size_t a = 0; a < COUNT(alphas); a++) {
                        set(loss, KD_LOSS_PARAM_TEMPERATURE, temperatures[ti]);
                        set(loss, KD_LOSS_PARAM_DIVERGENCE, divergences[d]);
                        set(loss, KD_LOSS_PARAM_ALPHA, alphas[a]);
                        set(loss, KD_LOSS_PARAM_REDUCTION,
                            a == 1 ? KD_REDUCTION_NONE : KD_REDUCTION_MEAN);
                        kd_loss_use_kernels(loss, kd_fast_portable());
                        result portable = compute(loss, &in);
                        kd_loss_use_kernels(loss, kd_fast_avx2());
                        result avx2 = compute(loss, &in);
                        for (size_t k = 0; k < avx2.value_count; k++) {
                            double x = portable.values[k], y = avx2.values[k];
                            if (!(fabs(x - y) <= 2e-5 * fabs(y) + 1e-30))
                                fail_msg("%zux%zu T=%g divergence %d alpha %g: value %zu "
                                         "portable %.9g, avx2 %.9g",
                                         in.rows, in.classes, temperatures[ti], (int)divergences[d],
                                         alphas[a], k, x, y);
                        }
                        size_t n = in.rows * in.classes;
                        double rel = gradient_difference(&portable, &avx2, n);
                        if (!(rel <= 2e-5))
                            fail_msg("%zux%zu T=%g divergence %d alpha %g: gradients differ by "
                                     "%g", in.rows, in.classes, temperatures[ti],
                                     (int)divergences[d], alphas[a], rel);
                        for (size_t e = 0; e < n; e++)
                            if ((in.z[e] == -INFINITY || in.labels[e / in.classes] == -100)
                                && (portable.grad[e] != 0.0f || avx2.grad[e] != 0.0f))
                                fail_msg("gradient [%zu] not exactly 0", e);
                        free_result(&avx2);
                        free_result(&portable);
                    }
            free_inputs(&in);
        }
    kd_loss_destroy(loss);
#else
    skip();
#endif
}

/* The same call on 1, 2, 3, 4 and 7 threads: values and gradients bit for bit, for every
 * divergence (fast and general paths) and reduction, and for an ensemble. */
static void threads_are_bit_identical(void **state)
{
    (void)state;
    enum { rows = 37, classes = 2000 };
    static const double threads[] = {2, 3, 4, 7};
    static const kd_divergence divergences[] = {
        KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY, KD_DIVERGENCE_REVERSE_KL,
        KD_DIVERGENCE_JENSEN_SHANNON, KD_DIVERGENCE_LOGIT_MSE};
    inputs in = make_inputs(rows, classes, 3.0, 99);
    /* Reverse KL and logit matching need the student to mask what the teacher masks. */
    float *v_same_masks = xmalloc(rows * classes * sizeof(float));
    for (size_t e = 0; e < rows * classes; e++)
        v_same_masks[e] = in.z[e] == -INFINITY ? -INFINITY : in.v[e];
    for (size_t e = 0; e < rows * classes; e++)
        if (v_same_masks[e] == -INFINITY)
            in.z[e] = -INFINITY;
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    set(loss, KD_LOSS_PARAM_TEMPERATURE, 3.0);
    for (size_t d = 0; d < COUNT(divergences); d++)
        for (int red = 0; red <= 2; red++) {
            set(loss, KD_LOSS_PARAM_DIVERGENCE, divergences[d]);
            set(loss, KD_LOSS_PARAM_REDUCTION, red);
            set(loss, KD_LOSS_PARAM_THREADS, 1);
            result one = compute(loss, &in);
            for (size_t k = 0; k < COUNT(threads); k++) {
                set(loss, KD_LOSS_PARAM_THREADS, threads[k]);
                result many = compute(loss, &in);
                if (memcmp(one.values, many.values, one.value_count * sizeof(float)) != 0 ||
                    memcmp(one.grad, many.grad, rows * classes * sizeof(float)) != 0)
                    fail_msg("divergence %d reduction %d: %g threads differ from 1",
                             (int)divergences[d], red, threads[k]);
                free_result(&many);
            }
            free_result(&one);
        }
    /* A geometric ensemble of two members (the general path). */
    const float *members[2] = {in.v, v_same_masks};
    set(loss, KD_LOSS_PARAM_DIVERGENCE, KD_DIVERGENCE_KL);
    set(loss, KD_LOSS_PARAM_ENSEMBLE_MODE, KD_ENSEMBLE_GEOMETRIC);
    float values[2][KD_LOSS_VALUE_COUNT];
    float *grad[2] = {xmalloc(rows * classes * sizeof(float)), xmalloc(rows * classes * sizeof(float))};
    for (int k = 0; k < 2; k++) {
        set(loss, KD_LOSS_PARAM_THREADS, k == 0 ? 1 : 2);
        set(loss, KD_LOSS_PARAM_REDUCTION, KD_REDUCTION_MEAN);
        assert_int_equal(kd_loss_compute_ensemble(loss, in.z, classes, members, 2, NULL, classes,
                                                  in.labels, rows, classes, values[k], grad[k],
                                                  classes),
                         KD_OK);
    }
    assert_memory_equal(values[0], values[1], sizeof values[0]);
    assert_memory_equal(grad[0], grad[1], rows * classes * sizeof(float));
    free(grad[0]);
    free(grad[1]);
    free(v_same_masks);
    kd_loss_destroy(loss);
    free_inputs(&in);
}

/* With several threads, a bad row in any thread's share gives the status one thread gives (the
 * first bad row's), and the outputs stay untouched. */
static void threads_report_the_first_bad_row(void **state)
{
    (void)state;
    enum { rows = 40, classes = 1500 };
    inputs in = make_inputs(rows, classes, 1.0, 5);
    in.z[35 * classes + 3] = NAN;                 /* the last thread's share */
    in.v[30 * classes + 1] = INFINITY;            /* earlier: reported first */
    in.z[20 * classes + 9] = -INFINITY;           /* earlier still: the teacher keeps it */
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    float *grad = xmalloc(rows * classes * sizeof(float));
    float values[KD_LOSS_VALUE_COUNT];
    for (int t = 1; t <= 4; t++) {
        set(loss, KD_LOSS_PARAM_THREADS, t);
        kd_test_fill_sentinel(grad, rows * classes);
        kd_test_fill_sentinel(values, KD_LOSS_VALUE_COUNT);
        assert_int_equal(kd_loss_compute(loss, in.z, classes, in.v, classes, in.labels, rows,
                                         classes, values, grad, classes),
                         KD_ERROR_SHAPE_MISMATCH);
        assert_true(kd_test_is_sentinel(grad, rows * classes));
        assert_true(kd_test_is_sentinel(values, KD_LOSS_VALUE_COUNT));
    }
    in.z[20 * classes + 9] = 0.0f;
    set(loss, KD_LOSS_PARAM_THREADS, 3);
    assert_int_equal(kd_loss_compute(loss, in.z, classes, in.v, classes, in.labels, rows, classes,
                                     values, grad, classes),
                     KD_ERROR_NONFINITE_INPUT);
    assert_true(kd_test_is_sentinel(grad, rows * classes));
    free(grad);
    kd_loss_destroy(loss);
    free_inputs(&in);
}

/* A batch with more rows than the handle keeps check findings for (max(classes, 4096)) finds
 * them again per row: the same results, bit for bit, as the same rows in smaller batches. */
static void batches_beyond_the_row_findings(void **state)
{
    (void)state;
    enum { rows = 5000, classes = 3, chunk = 1000 };
    inputs in = make_inputs(rows, classes, 2.0, 123);
    kd_loss *whole = NULL, *parts = NULL;
    assert_int_equal(kd_loss_create(&whole, NULL), KD_OK);
    assert_int_equal(kd_loss_create(&parts, NULL), KD_OK);
    for (int k = 0; k < 2; k++) {
        kd_loss *loss = k == 0 ? whole : parts;
        set(loss, KD_LOSS_PARAM_REDUCTION, KD_REDUCTION_NONE);
        set(loss, KD_LOSS_PARAM_TEMPERATURE, 2.5);
        assert_int_equal(kd_loss_reserve(loss, classes), KD_OK);
    }
    result all = compute(whole, &in);
    float *values = xmalloc(rows * KD_LOSS_VALUE_COUNT * sizeof(float));
    float *grad = xmalloc(rows * classes * sizeof(float));
    for (size_t r = 0; r < rows; r += chunk)
        assert_int_equal(kd_loss_compute(parts, in.z + r * classes, classes, in.v + r * classes,
                                         classes, in.labels + r, chunk, classes,
                                         values + r * KD_LOSS_VALUE_COUNT, grad + r * classes,
                                         classes),
                         KD_OK);
    assert_memory_equal(all.values, values, rows * KD_LOSS_VALUE_COUNT * sizeof(float));
    assert_memory_equal(all.grad, grad, rows * classes * sizeof(float));
    free(grad);
    free(values);
    free_result(&all);
    kd_loss_destroy(parts);
    kd_loss_destroy(whole);
    free_inputs(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(portable_and_avx2_agree),
        cmocka_unit_test(threads_are_bit_identical),
        cmocka_unit_test(threads_report_the_first_bad_row),
        cmocka_unit_test(batches_beyond_the_row_findings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
