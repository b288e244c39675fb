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

#include "alloc.h"
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

/* The student becomes the teacher plus a constant (rounded to float): a tiny divergence. */
static void shift_student(inputs *in, float offset)
{
    for (size_t e = 0; e < in->rows * in->classes; e++)
        in->z[e] = in->v[e] + offset;
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
 * 1e-5 norm-wise; exact zeros at masked classes and ignored rows in both. Independent student
 * and teacher logits, and (scale 10, rows of 1000 classes or more) a student that is the
 * teacher shifted by 1000, whose divergence is only float rounding. */
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
        for (int variant = 0; variant < 3; variant++) { /* scale 1, 10, 10 shifted */
            if (variant == 2 && shapes[s][1] < 1000)
                continue;
            inputs in = make_inputs(shapes[s][0], shapes[s][1], variant ? 10.0 : 1.0, 7 + s);
            if (variant == 2)
                shift_student(&in, 1000.0f);
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

/* The kernel sets this CPU runs: the portable one, and AVX2 + FMA when the CPU has both. */
static size_t kernel_sets(const kd_fast_kernels *sets[2])
{
    size_t count = 0;
    sets[count++] = kd_fast_portable();
#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        sets[count++] = kd_fast_avx2();
#endif
    return count;
}

/* The first of a check's KD_FAST_* bits in the order the loss reports them (the bits' own
 * order): the one that decides the status. Later bits may differ between kernel sets (the AVX2
 * check also counts a NaN student logit as a class the student masks). */
static unsigned first_bit(unsigned bits) { return bits & (0u - bits); }

/* The row check of every kernel set reports the documented KD_FAST_* bit for each kind of bad
 * row first, with the bad value in a full vector (class 1) or in the tail (class n - 1), and on
 * valid rows (bits 0) finds the maxima, the first classes where they occur and max |x|. */
static void kernels_check_rows(void **state)
{
    (void)state;
    enum { MASK_ONE_STUDENT, MASK_BOTH, MASK_ONE_TEACHER, NAN_STUDENT, INF_STUDENT, ALL_STUDENT,
           NAN_TEACHER, INF_TEACHER, ALL_TEACHER, CASES };
    const unsigned expected[CASES] = {
        KD_FAST_MASK_MISFIT, 0, 0, KD_FAST_STUDENT_NONFINITE, KD_FAST_STUDENT_NONFINITE,
        KD_FAST_STUDENT_MASKED | KD_FAST_MASK_MISFIT, KD_FAST_TEACHER_NONFINITE,
        KD_FAST_TEACHER_NONFINITE, KD_FAST_TEACHER_MASKED};
    /* Without a teacher only the student's bits exist. */
    const unsigned expected_alone[CASES] = {0, 0, 0, KD_FAST_STUDENT_NONFINITE,
                                            KD_FAST_STUDENT_NONFINITE, KD_FAST_STUDENT_MASKED,
                                            0, 0, 0};
    static const size_t lengths[] = {3, 11, 16};
    const kd_fast_kernels *sets[2];
    const size_t set_count = kernel_sets(sets);
    for (size_t li = 0; li < COUNT(lengths); li++) {
        const size_t n = lengths[li];
        for (size_t at = 1; at < n; at += n - 2) {
            for (int c = 0; c < CASES; c++) {
                float z[16], v[16];
                for (size_t i = 0; i < n; i++) {
                    z[i] = 0.5f * (float)i - 2.0f;
                    v[i] = 1.0f - 0.25f * (float)i;
                }
                switch (c) {
                case MASK_ONE_STUDENT: z[at] = -INFINITY; break;
                case MASK_BOTH: z[at] = v[at] = -INFINITY; break;
                case MASK_ONE_TEACHER: v[at] = -INFINITY; break;
                case NAN_STUDENT: z[at] = NAN; break;
                case INF_STUDENT: z[at] = INFINITY; break;
                case ALL_STUDENT: for (size_t i = 0; i < n; i++) z[i] = -INFINITY; break;
                case NAN_TEACHER: v[at] = NAN; break;
                case INF_TEACHER: v[at] = INFINITY; break;
                case ALL_TEACHER: for (size_t i = 0; i < n; i++) v[i] = -INFINITY; break;
                }
                for (size_t k = 0; k < set_count; k++) {
                    kd_fast_row_info info;
                    unsigned bits = first_bit(sets[k]->check(z, v, n, &info));
                    if (bits != first_bit(expected[c]))
                        fail_msg("%s, n %zu, class %zu, case %d: bits %u, want %u", sets[k]->name,
                                 n, at, c, bits, expected[c]);
                    bits = first_bit(sets[k]->check(z, NULL, n, &info));
                    if (bits != expected_alone[c])
                        fail_msg("%s, n %zu, class %zu, case %d without a teacher: bits %u, want %u",
                                 sets[k]->name, n, at, c, bits, expected_alone[c]);
                }
            }
        }
        /* A valid row with tied maxima, and a teacher whose maximum occurs twice: the first
         * occurrence of each maximum is the one reported. */
        float z[16], v[16];
        for (size_t i = 0; i < n; i++) {
            z[i] = (float)(i % 5) - 1.5f;
            v[i] = -(float)(i % 4);
        }
        z[0] = v[0] = -INFINITY;
        v[2] = -9.5f; /* the largest |x| when n > 3, in the teacher */
        v[n - 1] = v[1] = 7.0f;
        float zmax = -INFINITY, vmax = -INFINITY, absmax = 0.0f;
        size_t zfirst = n, top = n, vties = 0;
        for (size_t i = 0; i < n; i++) {
            zmax = fmaxf(zmax, z[i]);
            vmax = fmaxf(vmax, v[i]);
        }
        for (size_t i = 0; i < n; i++) {
            if (z[i] == zmax && zfirst == n)
                zfirst = i;
            vties += v[i] == vmax;
            if (v[i] == vmax && top == n)
                top = i;
            if (z[i] != -INFINITY)
                absmax = fmaxf(absmax, fabsf(z[i]));
            if (v[i] != -INFINITY)
                absmax = fmaxf(absmax, fabsf(v[i]));
        }
        assert_true(vties == 2 && top == 1 && absmax == (n > 3 ? 9.5f : 7.0f));
        for (size_t k = 0; k < set_count; k++) {
            kd_fast_row_info info;
            assert_int_equal(sets[k]->check(z, v, n, &info), 0);
            assert_true(info.zmax == zmax && info.vmax == vmax && info.absmax == absmax);
            assert_int_equal(info.zfirst, zfirst);
            assert_int_equal(info.top, top);
        }
    }
}

/* The kernels' e^x (what the benchmark measures): within 4 float ulp of e^x in double, exactly
 * 1 at 0, and exactly 0 below -87.33654 (and for -INFINITY), for lengths with and without a
 * tail. */
static void kernels_exp_matches_double(void **state)
{
    (void)state;
    enum { N = 203 };
    float x[N], out[N];
    for (size_t i = 0; i < N; i++)
        x[i] = -100.0f + 188.0f * (float)i / (float)(N - 1); /* -100 ... 88 */
    x[5] = 0.0f;
    x[6] = -INFINITY;
    x[7] = -87.4f;
    x[8] = -87.3f;
    const kd_fast_kernels *sets[2];
    const size_t set_count = kernel_sets(sets);
    for (size_t k = 0; k < set_count; k++)
        for (size_t n = N - 8; n <= N; n += 3) { /* 195 (no tail), 198, 201 */
            float fresh[N];
            kd_test_fill_sentinel(out, N);
            kd_test_fill_sentinel(fresh, N);
            sets[k]->exp(x, n, out);
            assert_memory_equal(out + n, fresh + n, (N - n) * sizeof(float));
            for (size_t i = 0; i < n; i++) {
                if (x[i] < -87.33654f) {
                    if (out[i] != 0.0f)
                        fail_msg("%s: e^%.9g = %.9g, want 0", sets[k]->name, (double)x[i],
                                 (double)out[i]);
                    continue;
                }
                double want = exp((double)x[i]);
                if (!(fabs((double)out[i] - want) <= 4.0 * 0x1p-23 * want))
                    fail_msg("%s: e^%.9g = %.9g, want %.9g", sets[k]->name, (double)x[i],
                             (double)out[i], want);
            }
            assert_true(out[5] == 1.0f);
        }
}

/* Loss and gradient of rows in double, for the kernel tests: with a teacher (z, v at T) the KL
 * part, with labels the hard part, as include/kd/loss.h defines them (mean over rows, S = T^2). */
static void reference_loss(const float *z, const float *v, const int32_t *labels, size_t rows,
                           size_t n, double t, double alpha, double values[3], double *grad)
{
    values[0] = values[1] = values[2] = 0.0;
    for (size_t r = 0; r < rows; r++) {
        const float *zr = z + r * n, *vr = v == NULL ? NULL : v + r * n;
        double zmax = -INFINITY, vmax = -INFINITY, zs = 0.0, vs = 0.0, z1 = 0.0;
        for (size_t i = 0; i < n; i++) {
            zmax = fmax(zmax, zr[i]);
            vmax = vr == NULL ? 0.0 : fmax(vmax, vr[i]);
        }
        for (size_t i = 0; i < n; i++) {
            zs += exp((zr[i] - zmax) / t);
            z1 += exp(zr[i] - zmax);
            vs += vr == NULL ? 0.0 : exp((vr[i] - vmax) / t);
        }
        double kl = 0.0;
        for (size_t i = 0; i < n; i++) {
            double g = 0.0;
            if (vr != NULL) {
                double log_p = (zr[i] - zmax) / t - log(zs), log_q = (vr[i] - vmax) / t - log(vs);
                kl += exp(log_q) * (log_q - log_p);
                g += alpha * t * (exp(log_p) - exp(log_q)); /* alpha T^2 / T */
            }
            if (labels != NULL)
                g += (1.0 - alpha) * (exp(zr[i] - zmax) / z1 - (i == (size_t)labels[r]));
            grad[r * n + i] = g / (double)rows;
        }
        double hard = labels == NULL ? 0.0 : log(z1) - (zr[labels[r]] - zmax);
        values[1] += kl / (double)rows;
        values[2] += hard / (double)rows;
    }
    values[0] = alpha * t * t * values[1] + (1.0 - alpha) * values[2];
}

/* Each kernel set on rows of its three kinds: the hard loss alone (no teacher), the soft loss
 * alone (no labels) and both, at lengths with and without a tail and beyond a block of four
 * vectors: values within 1e-5 of the double reference, gradients within 1e-5 relative + 1e-7. */
static void kernels_on_each_kind_of_row(void **state)
{
    (void)state;
    enum { ROWS = 3 };
    static const size_t lengths[] = {5, 8, 37, 64};
    static const double alphas[] = {0.0, 0.6, 1.0};
    static const double row_temperatures[] = {1.0, 3.0, 8.0}; /* 8: three squarings */
    const kd_fast_kernels *sets[2];
    const size_t set_count = kernel_sets(sets);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    for (size_t li = 0; li < COUNT(lengths); li++) {
        const size_t n = lengths[li];
        inputs in = make_inputs(ROWS, n, 2.0, 40 + li);
        for (size_t r = 0; r < ROWS; r++) /* no masks, no ignored row */
            for (size_t i = 0; i < n; i++) {
                in.z[r * n + i] = isinf(in.z[r * n + i]) ? 0.5f : in.z[r * n + i];
                in.v[r * n + i] = isinf(in.v[r * n + i]) ? -0.5f : in.v[r * n + i];
            }
        in.labels[1] = 0;
        for (size_t a = 0; a < COUNT(alphas); a++)
            for (size_t ti = 0; ti < COUNT(row_temperatures); ti++) {
                const double alpha = alphas[a], t = row_temperatures[ti];
                const float *teacher = alpha > 0.0 ? in.v : NULL;
                const int32_t *labels = alpha < 1.0 ? in.labels : NULL;
                double want[3], want_grad[ROWS * 64];
                reference_loss(in.z, teacher, labels, ROWS, n, t, alpha, want, want_grad);
                set(loss, KD_LOSS_PARAM_ALPHA, alpha);
                set(loss, KD_LOSS_PARAM_TEMPERATURE, t);
                for (size_t k = 0; k < set_count; k++) {
                    kd_loss_use_kernels(loss, sets[k]);
                    float values[3], grad[ROWS * 64];
                    assert_int_equal(kd_loss_compute(loss, in.z, n, teacher, n, labels, ROWS, n,
                                                     values, grad, n),
                                     KD_OK);
                    for (int v = 0; v < 3; v++)
                        if (!(fabs(values[v] - want[v]) <= 1e-5 * fabs(want[v]) + 1e-7))
                            fail_msg("%s n %zu alpha %g T %g: value %d %.9g, want %.9g",
                                     sets[k]->name, n, alpha, t, v, (double)values[v], want[v]);
                    for (size_t e = 0; e < ROWS * n; e++)
                        if (!(fabs(grad[e] - want_grad[e]) <= 1e-5 * fabs(want_grad[e]) + 1e-7))
                            fail_msg("%s n %zu alpha %g T %g: gradient %zu %.9g, want %.9g",
                                     sets[k]->name, n, alpha, t, e, (double)grad[e],
                                     want_grad[e]);
                }
            }
        free_inputs(&in);
    }
    kd_loss_destroy(loss);
}

/* Streaming stores (batches beyond the caches) write the same gradient bits as ordinary
 * stores, whether the gradient is 32-byte aligned (the AVX2 kernels then stream) or not. */
static void streaming_stores_give_the_same_bits(void **state)
{
    (void)state;
    enum { N = 1000 };
    inputs in = make_inputs(1, N, 3.0, 11);
    float *store = xmalloc(KD_FAST_STORE_ROWS * N * sizeof(float));
    float *grad[2] = {aligned_alloc(32, (N + 8) * sizeof(float)),
                      aligned_alloc(32, (N + 8) * sizeof(float))};
    assert_true(grad[0] != NULL && grad[1] != NULL);
    const kd_fast_kernels *sets[2];
    const size_t set_count = kernel_sets(sets);
    for (size_t k = 0; k < set_count; k++)
        for (int kind = 0; kind < 3; kind++) { /* both terms, soft only, hard only */
            const int has_teacher = kind != 2, has_label = kind != 1;
            const kd_row_spec spec = {KD_DIVERGENCE_KL, 2.0, 0.5, has_teacher, has_label,
                                      has_teacher ? 0.7 * 4.0 : 0.0, has_label ? 0.3 : 0.0};
            const float *v = has_teacher ? in.v : NULL;
            kd_fast_row_info info;
            assert_int_equal(sets[k]->check(in.z, v, N, &info), 0);
            for (size_t offset = 0; offset <= 1; offset++) {
                double soft[2], hard[2];
                float fresh[N + 8];
                kd_test_fill_sentinel(fresh, N + 8);
                for (int stream = 0; stream <= 1; stream++) {
                    kd_test_fill_sentinel(grad[stream], N + 8);
                    kd_fast_row(sets[k], &spec, in.z, v, N, in.labels[0], &info, store, stream,
                                &soft[stream], &hard[stream], grad[stream] + offset);
                    assert_memory_equal(grad[stream] + offset + N, fresh + offset + N,
                                        (8 - offset) * sizeof(float));
                }
                assert_memory_equal(grad[0], grad[1], (N + 8) * sizeof(float));
                assert_true(soft[0] == soft[1] && hard[0] == hard[1]);
                assert_true(has_teacher ? soft[0] > 0.0 : soft[0] == 0.0);
                assert_true(has_label ? hard[0] > 0.0 : hard[0] == 0.0);
            }
        }
    free(grad[0]);
    free(grad[1]);
    free(store);
    free_inputs(&in);
}

/* The trainer's hard-loss entry point rejects missing arguments and writes nothing. */
static void hard_loss_null_arguments(void **state)
{
    (void)state;
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    const float z[2] = {1.0f, 2.0f};
    const int32_t labels[1] = {1};
    float values[KD_LOSS_VALUE_COUNT], grad[2];
    kd_test_fill_sentinel(values, KD_LOSS_VALUE_COUNT);
    kd_test_fill_sentinel(grad, 2);
    assert_int_equal(kd_loss_compute_hard(NULL, z, labels, 1, 2, values, grad), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_loss_compute_hard(loss, NULL, labels, 1, 2, values, grad), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_loss_compute_hard(loss, z, NULL, 1, 2, values, grad), KD_ERROR_NULL_POINTER);
    assert_true(kd_test_is_sentinel(values, KD_LOSS_VALUE_COUNT) && kd_test_is_sentinel(grad, 2));
    assert_int_equal(kd_loss_compute_hard(loss, z, labels, 1, 2, values, grad), KD_OK);
    assert_float_equal(values[KD_LOSS_VALUE_HARD], log1p(exp(-1.0)), 1e-6);
    kd_loss_destroy(loss);
}

/* kd_alloc_array refuses zero sizes and products beyond SIZE_MAX without asking the allocator. */
static void alloc_array_refuses_bad_sizes(void **state)
{
    (void)state;
    kd_test_allocator counter = {0};
    kd_allocator hook;
    kd_test_allocator_hook(&counter, &hook);
    assert_null(kd_alloc_array(&hook, 0, 4));
    assert_null(kd_alloc_array(&hook, 4, 0));
    assert_null(kd_alloc_array(&hook, SIZE_MAX / 4 + 1, 4));
    assert_null(kd_alloc_array(&hook, 3, SIZE_MAX / 2));
    assert_int_equal(counter.calls, 0);
    void *block = kd_alloc_array(&hook, 3, 4);
    assert_non_null(block);
    assert_int_equal(counter.calls, 1);
    kd_free(&hook, block);
    assert_int_equal(counter.live, 0);
    assert_false(counter.bad_release);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(portable_and_avx2_agree),
        cmocka_unit_test(threads_are_bit_identical),
        cmocka_unit_test(threads_report_the_first_bad_row),
        cmocka_unit_test(batches_beyond_the_row_findings),
        cmocka_unit_test(kernels_check_rows),
        cmocka_unit_test(kernels_exp_matches_double),
        cmocka_unit_test(kernels_on_each_kind_of_row),
        cmocka_unit_test(streaming_stores_give_the_same_bits),
        cmocka_unit_test(hard_loss_null_arguments),
        cmocka_unit_test(alloc_array_refuses_bad_sizes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
