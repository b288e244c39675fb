/* Edge cases that the coverage report (docs/reliability.md) found no other test exercising:
 * trainer outputs and overflowing batches, overflowing optimizer and batch-buffer sizes, a
 * checkpoint saved under a relative name, ensembles whose members mask different classes or
 * have weight 0 and ensemble argument errors, and rejections and threads on a batch large
 * enough for the fused kernels. Each checks the documented result, not only that it runs. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kd.h>

#include "support.h"

static float *params_of(kd_model *model)
{
    float *p = NULL;
    assert_int_equal(kd_model_parameters(model, &p), KD_OK);
    return p;
}

/* kd_trainer_last_logits after a step: the step's training-mode logits and row count; an
 * overflowing batch is refused before anything changes. */
static void trainer_last_logits_and_overflow(void **state)
{
    (void)state;
    enum { ROWS = 6, IN = 3, OUT = 4 };
    const size_t widths[] = {IN, 8, OUT};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    kd_loss *loss = NULL;
    kd_trainer *trainer = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 5, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.0), KD_OK);
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, loss, NULL), KD_OK);
    float x[ROWS * IN], expected[ROWS * OUT];
    int32_t labels[ROWS];
    kd_test_rng rng = {8};
    for (size_t i = 0; i < ROWS * IN; i++)
        x[i] = (float)kd_test_normal(&rng);
    for (size_t r = 0; r < ROWS; r++)
        labels[r] = (int32_t)(r % OUT);

    const float *logits = NULL;
    assert_int_equal(kd_trainer_last_logits(NULL, &logits, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_last_logits(trainer, NULL, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_step(trainer, x, ROWS, NULL, labels, NULL), KD_OK);
    size_t rows = 0;
    assert_int_equal(kd_trainer_last_logits(trainer, &logits, &rows), KD_OK);
    assert_int_equal(rows, ROWS);
    /* No dropout and a learning rate of 0: the training logits are the inference logits. */
    assert_int_equal(kd_model_forward(model, x, ROWS, KD_MODE_INFERENCE, expected), KD_OK);
    assert_memory_equal(logits, expected, sizeof expected);
    const float *again = NULL;
    assert_int_equal(kd_trainer_last_logits(trainer, &again, NULL), KD_OK);
    assert_ptr_equal(again, logits);

    /* A batch whose buffers cannot be addressed: refused, parameters as they were, and the
     * last logits are gone (the failed step is the last one). */
    const size_t count = kd_model_parameter_count(model);
    float *before = malloc(count * sizeof *before);
    assert_non_null(before);
    memcpy(before, params_of(model), count * sizeof *before);
    assert_int_equal(kd_trainer_step(trainer, x, SIZE_MAX / 8, NULL, labels, NULL),
                     KD_ERROR_SIZE_OVERFLOW);
    assert_memory_equal(params_of(model), before, count * sizeof *before);
    assert_int_equal(kd_trainer_last_logits(trainer, &logits, &rows), KD_ERROR_SHAPE_MISMATCH);
    free(before);

    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

static int host_forward(void *user, const float *inputs, size_t rows, kd_mode mode, float *logits)
{
    (void)user;
    (void)inputs;
    (void)rows;
    (void)mode;
    (void)logits;
    return 0;
}

static int host_backward(void *user, const float *grad, size_t rows)
{
    (void)user;
    (void)grad;
    (void)rows;
    return 0;
}

static float *host_array(void *user)
{
    (void)user;
    return NULL;
}

/* Sizes that cannot be addressed: an Adam state for a host network claiming SIZE_MAX / 4
 * parameters, and the batch buffers of a network for as many rows as its widest layer allows
 * (each layer's activations fit, their sum does not). */
static void overflowing_state_and_buffers(void **state)
{
    (void)state;
    const kd_model_callbacks callbacks = {sizeof(kd_model_callbacks), host_forward, host_backward,
                                          host_array, host_array};
    kd_model *host = NULL;
    assert_int_equal(kd_model_create_host(&host, &callbacks, NULL, 1, 1, SIZE_MAX / 4, NULL), KD_OK);
    kd_optimizer *opt = (kd_optimizer *)(void *)&host; /* a sentinel: must stay */
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_ADAM, host, NULL), KD_ERROR_SIZE_OVERFLOW);
    assert_ptr_equal(opt, (kd_optimizer *)(void *)&host);
    kd_model_destroy(host);

    /* The most rows a 1-1024-1 network accepts (rows x 1024 floats addressable): its buffers
     * need 3 x 1024 + 2 floats a row, which is more than can be addressed. */
    const size_t widths[] = {1, 1024, 1};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, NULL), KD_OK);
    const size_t rows = (size_t)PTRDIFF_MAX / sizeof(float) / 1024;
    assert_int_equal(kd_model_reserve(model, rows), KD_ERROR_SIZE_OVERFLOW);
    assert_int_equal(kd_model_reserve(model, rows + 1), KD_ERROR_SIZE_OVERFLOW);
    float x[2] = {1.0f, -1.0f}, logits[2];
    assert_int_equal(kd_model_forward(model, x, 2, KD_MODE_INFERENCE, logits), KD_OK);
    assert_true(isfinite(logits[0]) && isfinite(logits[1]));
    kd_model_destroy(model);
}

/* A checkpoint saved under a name without a directory (the current one) loads back. */
static void checkpoint_relative_name(void **state)
{
    (void)state;
    char directory[] = "/tmp/kd_test_edge_XXXXXX", previous[4096];
    assert_non_null(mkdtemp(directory));
    assert_non_null(getcwd(previous, sizeof previous));
    assert_int_equal(chdir(directory), 0);
    const size_t widths[] = {2, 3, 2};
    kd_model *model = NULL, *loaded = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 4, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(model, NULL, "relative.kdc"), KD_OK);
    assert_int_equal(kd_checkpoint_load(&loaded, NULL, "relative.kdc", NULL), KD_OK);
    assert_memory_equal(params_of(loaded), params_of(model),
                        kd_model_parameter_count(model) * sizeof(float));
    assert_int_equal(kd_test_count_entries(".", ".tmp-"), 0);
    kd_model_destroy(loaded);
    kd_model_destroy(model);
    assert_int_equal(unlink("relative.kdc"), 0);
    assert_int_equal(chdir(previous), 0);
    assert_int_equal(rmdir(directory), 0);
}

/* Ensembles of two logits teachers whose members mask different classes. Arithmetic mean: a
 * class masked by one member only keeps the other's probability; geometric mean: it is masked,
 * and two members masking complementary classes mask the whole row. Logit matching against an
 * ensemble skips members of weight 0 (their logits may be anything, even NaN). */
static void ensembles_with_masks_and_zero_weights(void **state)
{
    (void)state;
    enum { C = 3 };
    const float z[C] = {0.5f, -0.25f, 1.0f};
    const float a[C] = {-INFINITY, 1.0f, 2.0f}, b[C] = {0.0f, 1.0f, -1.0f};
    const float *members[2] = {a, b};
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 1.0), KD_OK);
    float values[KD_LOSS_VALUE_COUNT], grad[C];

    /* Arithmetic: q = (softmax(a) + softmax(b)) / 2; KL's gradient is p - q. */
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, members, 2, NULL, C, NULL, 1, C, values,
                                              grad, C),
                     KD_OK);
    double p[C], qa[C], qb[C], sz = 0, sa = 0, sb = 0;
    for (int i = 0; i < C; i++) {
        sz += p[i] = exp(z[i]);
        sa += qa[i] = exp(a[i]);
        sb += qb[i] = exp(b[i]);
    }
    for (int i = 0; i < C; i++) {
        const double q = 0.5 * (qa[i] / sa + qb[i] / sb);
        assert_true(fabs(grad[i] - (p[i] / sz - q)) <= 1e-6);
    }

    /* Geometric: a masks class 0 and c classes 1 and 2: the mean masks the whole row. */
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ENSEMBLE_MODE, KD_ENSEMBLE_GEOMETRIC), KD_OK);
    const float c[C] = {0.0f, -INFINITY, -INFINITY};
    const float *complementary[2] = {a, c};
    kd_test_fill_sentinel(grad, C);
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, complementary, 2, NULL, C, NULL, 1, C,
                                              values, grad, C),
                     KD_ERROR_ALL_MASKED);
    assert_true(kd_test_is_sentinel(grad, C));

    /* Logit matching against the weighted mean logits; the weight-0 member is not read. */
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, KD_DIVERGENCE_LOGIT_MSE), KD_OK);
    const float nan_member[C] = {NAN, NAN, NAN};
    const float *weighted[2] = {b, nan_member};
    const float weights[2] = {2.0f, 0.0f};
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, weighted, 2, weights, C, NULL, 1, C,
                                              values, grad, C),
                     KD_OK);
    double mse = 0.0;
    for (int i = 0; i < C; i++)
        mse += ((double)z[i] - b[i]) * ((double)z[i] - b[i]);
    mse /= 2.0 * C;
    assert_true(fabs(values[KD_LOSS_VALUE_SOFT] - mse) <= 1e-6 * mse);
    kd_loss_destroy(loss);
}

/* kd_loss_compute_ensemble's argument checks: no members, a NULL member, a negative weight, a
 * NaN student logit; and kd_loss_reserve's scratch for 256 threads beyond any allocation. */
static void ensemble_argument_errors(void **state)
{
    (void)state;
    enum { C = 2 };
    const float z[C] = {0.0f, 1.0f}, v[C] = {1.0f, 0.0f};
    const float *members[2] = {v, NULL};
    const float bad_weights[1] = {-1.0f};
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 1.0), KD_OK);
    float values[KD_LOSS_VALUE_COUNT];
    kd_test_fill_sentinel(values, KD_LOSS_VALUE_COUNT);
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, members, 0, NULL, C, NULL, 1, C, values, NULL, C),
                     KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, members, 2, NULL, C, NULL, 1, C, values, NULL, C),
                     KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, members, 1, bad_weights, C, NULL, 1, C, values,
                                              NULL, C),
                     KD_ERROR_INVALID_ARGUMENT);
    /* The student's rows are checked on the ensemble path too. */
    const float nan_row[C] = {NAN, 0.0f};
    assert_int_equal(kd_loss_compute_ensemble(loss, nan_row, C, members, 1, NULL, C, NULL, 1, C, values,
                                              NULL, C),
                     KD_ERROR_NONFINITE_INPUT);
    assert_true(kd_test_is_sentinel(values, KD_LOSS_VALUE_COUNT));
    /* Scratch for 256 threads' rows of SIZE_MAX / 64 classes cannot be allocated. */
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_THREADS, 256.0), KD_OK);
    assert_int_equal(kd_loss_reserve(loss, SIZE_MAX / 64), KD_ERROR_OUT_OF_MEMORY);
    kd_loss_destroy(loss);
}

/* A batch large enough for the fused kernels and the worker threads (2 rows of 16384 classes):
 * more threads than rows gives the one-thread bits; a NaN or +INFINITY logit of the student or
 * the teacher, or a class the student masks and the teacher keeps, is refused with the outputs
 * untouched. */
static void large_batch_rejections_and_threads(void **state)
{
    (void)state;
    enum { ROWS = 2, C = 16384, N = ROWS * C };
    float *z = malloc(N * sizeof *z), *v = malloc(N * sizeof *v), *g1 = malloc(N * sizeof *g1),
          *g3 = malloc(N * sizeof *g3);
    assert_true(z && v && g1 && g3);
    kd_test_rng rng = {16};
    for (size_t i = 0; i < N; i++) {
        z[i] = (float)kd_test_normal(&rng);
        v[i] = (float)kd_test_normal(&rng);
    }
    const int32_t labels[ROWS] = {3, 9000};
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    float values1[KD_LOSS_VALUE_COUNT], values3[KD_LOSS_VALUE_COUNT];
    assert_int_equal(kd_loss_compute(loss, z, C, v, C, labels, ROWS, C, values1, g1, C), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_THREADS, 3.0), KD_OK);
    assert_int_equal(kd_loss_compute(loss, z, C, v, C, labels, ROWS, C, values3, g3, C), KD_OK);
    assert_memory_equal(values1, values3, sizeof values1);
    assert_memory_equal(g1, g3, N * sizeof *g1);

    struct {
        float *array;
        size_t index;
        float value;
        kd_status want;
    } cases[] = {
        {z, C + 77, NAN, KD_ERROR_NONFINITE_INPUT},
        {z, 5, INFINITY, KD_ERROR_NONFINITE_INPUT},
        {v, C + 100, NAN, KD_ERROR_NONFINITE_INPUT},
        {v, 6, INFINITY, KD_ERROR_NONFINITE_INPUT},
        {z, C + 4000, -INFINITY, KD_ERROR_SHAPE_MISMATCH}, /* the teacher keeps that class */
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const float saved = cases[k].array[cases[k].index];
        cases[k].array[cases[k].index] = cases[k].value;
        kd_test_fill_sentinel(g3, N);
        kd_test_fill_sentinel(values3, KD_LOSS_VALUE_COUNT);
        assert_int_equal(kd_loss_compute(loss, z, C, v, C, labels, ROWS, C, values3, g3, C),
                         cases[k].want);
        assert_true(kd_test_is_sentinel(g3, N) && kd_test_is_sentinel(values3, KD_LOSS_VALUE_COUNT));
        cases[k].array[cases[k].index] = saved;
    }
    kd_loss_destroy(loss);
    free(g3);
    free(g1);
    free(v);
    free(z);
}

/* Rows that take the general (double-precision) path are checked there: a NaN or +INFINITY
 * student logit, a fully masked student row and a bad label give their statuses, whatever the
 * divergence (reverse KL, Jensen-Shannon, logit matching, KL against a 2-member ensemble), and
 * nothing is written. */
static void general_path_row_errors(void **state)
{
    (void)state;
    enum { ROWS = 2, C = 3 };
    const float good[C] = {0.5f, -1.0f, 2.0f}, teacher[ROWS * C] = {1, 0, -1, 0.5f, 0.25f, 0};
    const float *members[2] = {teacher, teacher};
    static const kd_divergence divergences[] = {KD_DIVERGENCE_REVERSE_KL,
                                                KD_DIVERGENCE_JENSEN_SHANNON,
                                                KD_DIVERGENCE_LOGIT_MSE, KD_DIVERGENCE_KL};
    struct {
        float row[C];
        int32_t label;
        kd_status want;
    } cases[] = {
        {{NAN, 0.0f, 1.0f}, 0, KD_ERROR_NONFINITE_INPUT},
        {{0.0f, INFINITY, 1.0f}, 0, KD_ERROR_NONFINITE_INPUT},
        {{-INFINITY, -INFINITY, -INFINITY}, 0, KD_ERROR_ALL_MASKED},
        {{0.0f, 1.0f, 2.0f}, C, KD_ERROR_INVALID_LABEL},
        {{0.0f, 1.0f, 2.0f}, -2, KD_ERROR_INVALID_LABEL},
    };
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 0.5), KD_OK);
    for (size_t d = 0; d < sizeof divergences / sizeof divergences[0]; d++) {
        assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, divergences[d]), KD_OK);
        const size_t member_count = divergences[d] == KD_DIVERGENCE_KL ? 2 : 1;
        for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
            float z[ROWS * C], values[KD_LOSS_VALUE_COUNT], grad[ROWS * C];
            memcpy(z, good, sizeof good);
            memcpy(z + C, cases[k].row, sizeof cases[k].row);
            const int32_t labels[ROWS] = {1, cases[k].label};
            kd_test_fill_sentinel(values, KD_LOSS_VALUE_COUNT);
            kd_test_fill_sentinel(grad, ROWS * C);
            assert_int_equal(kd_loss_compute_ensemble(loss, z, C, members, member_count, NULL, C,
                                                      labels, ROWS, C, values, grad, C),
                             cases[k].want);
            assert_true(kd_test_is_sentinel(values, KD_LOSS_VALUE_COUNT));
            assert_true(kd_test_is_sentinel(grad, ROWS * C));
        }
    }
    kd_loss_destroy(loss);
}

/* -log softmax(z)_label and its gradient softmax(z) - onehot, in double. */
static double reference_hard(const float *z, size_t n, int32_t label, double *grad)
{
    double max = -INFINITY, sum = 0.0;
    for (size_t i = 0; i < n; i++)
        max = fmax(max, z[i]);
    for (size_t i = 0; i < n; i++)
        sum += exp(z[i] - max);
    for (size_t i = 0; i < n; i++)
        grad[i] = exp(z[i] - max) / sum - (i == (size_t)label);
    return log(sum) - (z[label] - max);
}

/* The hard loss alone (alpha 0): through kd_loss_compute_ensemble without members it gives
 * kd_loss_compute's bits without a teacher; a row of logits too large for the float kernels
 * (|z| > 2^64) takes the general path and still matches the double reference; so does a
 * reverse-KL call with a teacher and alpha 0 (the soft part then has no gradient). */
static void hard_loss_alone_on_every_path(void **state)
{
    (void)state;
    enum { ROWS = 2, C = 4 };
    const float z[ROWS * C] = {0.5f, -1.0f, 2.0f, 0.0f, 3e20f, -1.0f, -3e20f, 2e20f};
    const float teacher[ROWS * C] = {1, 0, -1, 0, 0.5f, 0.25f, 0, 2};
    const int32_t labels[ROWS] = {2, 3};
    double want_grad[ROWS * C], want = 0.0;
    for (size_t r = 0; r < ROWS; r++)
        want += reference_hard(z + r * C, C, labels[r], want_grad + r * C) / ROWS;
    assert_true(want > 5e19); /* the second row's loss is 1e20 */
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 0.0), KD_OK);
    float values[3][KD_LOSS_VALUE_COUNT], grad[3][ROWS * C];
    assert_int_equal(kd_loss_compute(loss, z, C, NULL, C, labels, ROWS, C, values[0], grad[0], C),
                     KD_OK);
    assert_int_equal(kd_loss_compute_ensemble(loss, z, C, NULL, 0, NULL, C, labels, ROWS, C,
                                              values[1], grad[1], C),
                     KD_OK);
    assert_memory_equal(values[0], values[1], sizeof values[0]);
    assert_memory_equal(grad[0], grad[1], sizeof grad[0]);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, KD_DIVERGENCE_REVERSE_KL), KD_OK);
    assert_int_equal(kd_loss_compute(loss, z, C, teacher, C, labels, ROWS, C, values[2], grad[2], C),
                     KD_OK);
    for (int k = 0; k < 3; k++) {
        assert_true(fabs(values[k][KD_LOSS_VALUE_HARD] - want) <= 1e-6 * want);
        assert_true(values[k][KD_LOSS_VALUE_TOTAL] == values[k][KD_LOSS_VALUE_HARD]);
        for (size_t e = 0; e < ROWS * C; e++)
            if (!(fabs(grad[k][e] - want_grad[e] / ROWS) <= 1e-6))
                fail_msg("call %d gradient %zu: %.9g, want %.9g", k, e, (double)grad[k][e],
                         want_grad[e] / ROWS);
    }
    assert_true(values[0][KD_LOSS_VALUE_SOFT] == 0.0f && values[2][KD_LOSS_VALUE_SOFT] > 0.0f);
    kd_loss_destroy(loss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(trainer_last_logits_and_overflow),
        cmocka_unit_test(overflowing_state_and_buffers),
        cmocka_unit_test(checkpoint_relative_name),
        cmocka_unit_test(ensembles_with_masks_and_zero_weights),
        cmocka_unit_test(ensemble_argument_errors),
        cmocka_unit_test(large_batch_rejections_and_threads),
        cmocka_unit_test(general_path_row_errors),
        cmocka_unit_test(hard_loss_alone_on_every_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
