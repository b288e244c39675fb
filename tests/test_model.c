/* kd_model (dense and host networks), kd_optimizer and kd_trainer: gradients against
 * double-precision finite differences, dropout, max-norm, the optimizers' update rules against
 * hand-computed PyTorch expectations, training to high accuracy, allocation behaviour and
 * every bad argument. */
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

/* --- a double-precision reference of the dense network ------------------------------------- */

#define MAX_LAYERS 8

static size_t parameter_count_of(const size_t *widths, size_t layer_count)
{
    size_t p = 0;
    for (size_t l = 1; l < layer_count; l++)
        p += widths[l] * (widths[l - 1] + 1);
    return p;
}

static size_t max_width_of(const size_t *widths, size_t layer_count)
{
    size_t m = 0;
    for (size_t l = 0; l < layer_count; l++)
        m = widths[l] > m ? widths[l] : m;
    return m;
}

/* logits (rows x widths[L-1]) of the network with parameters `params` (the documented flat
 * layout: per layer the weights, out x in row-major, then the biases) on `inputs`. masks: NULL,
 * or per layer 0 .. L-2 NULL or rows x widths[l] factors multiplying that layer's output (the
 * input for l = 0, the ReLU output otherwise), as inverted dropout does. */
static void reference_forward(const size_t *widths, size_t layer_count, const double *params,
                              const double *inputs, size_t rows, const double *const *masks,
                              double *logits)
{
    const size_t width = max_width_of(widths, layer_count);
    double *current = malloc(rows * width * sizeof *current);
    double *next = malloc(rows * width * sizeof *next);
    assert_non_null(current);
    assert_non_null(next);
    for (size_t i = 0; i < rows * widths[0]; i++)
        current[i] = inputs[i] * (masks != NULL && masks[0] != NULL ? masks[0][i] : 1.0);
    const double *w = params;
    for (size_t l = 1; l < layer_count; l++) {
        const size_t n_in = widths[l - 1], n_out = widths[l];
        const double *b = w + n_out * n_in;
        const int last = l == layer_count - 1;
        double *out = last ? logits : next;
        for (size_t r = 0; r < rows; r++) {
            for (size_t j = 0; j < n_out; j++) {
                double s = b[j];
                for (size_t i = 0; i < n_in; i++)
                    s += w[j * n_in + i] * current[r * n_in + i];
                if (!last) {
                    s = s > 0.0 ? s : 0.0;
                    if (masks != NULL && masks[l] != NULL)
                        s *= masks[l][r * n_out + j];
                }
                out[r * n_out + j] = s;
            }
        }
        if (!last) {
            double *t = current;
            current = next;
            next = t;
        }
        w = b + n_out;
    }
    free(next);
    free(current);
}

/* L = sum(G .* logits) of the reference network. */
static double reference_loss(const size_t *widths, size_t layer_count, const double *params,
                             const double *inputs, size_t rows, const double *const *masks,
                             const double *g)
{
    const size_t outputs = widths[layer_count - 1];
    double *logits = malloc(rows * outputs * sizeof *logits);
    assert_non_null(logits);
    reference_forward(widths, layer_count, params, inputs, rows, masks, logits);
    double loss = 0.0;
    for (size_t i = 0; i < rows * outputs; i++)
        loss += g[i] * logits[i];
    free(logits);
    return loss;
}

/* Central finite differences of reference_loss with respect to every parameter, in double.
 * The network is piecewise linear in each single parameter, so away from ReLU kinks these are
 * exact up to rounding. */
static void reference_gradient(const size_t *widths, size_t layer_count, const float *params,
                               const double *inputs, size_t rows, const double *const *masks,
                               const double *g, double *gradient)
{
    const size_t p = parameter_count_of(widths, layer_count);
    double *x = malloc(p * sizeof *x);
    assert_non_null(x);
    for (size_t i = 0; i < p; i++)
        x[i] = params[i];
    const double h = 1e-6;
    for (size_t i = 0; i < p; i++) {
        const double saved = x[i];
        x[i] = saved + h;
        double plus = reference_loss(widths, layer_count, x, inputs, rows, masks, g);
        x[i] = saved - h;
        double minus = reference_loss(widths, layer_count, x, inputs, rows, masks, g);
        x[i] = saved;
        gradient[i] = (plus - minus) / (2.0 * h);
    }
    free(x);
}

static void check_close_f(const float *got, const double *want, size_t n, double relative,
                          double absolute, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= absolute + relative * fabs(want[i])))
            fail_msg("%s[%zu]: got %.9g, want %.9g (error %g)", what, i, (double)got[i], want[i],
                     err);
    }
}

static void fill_normal_f(kd_test_rng *rng, float *x, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(scale * kd_test_normal(rng));
}

static void to_double(const float *x, double *y, size_t n)
{
    for (size_t i = 0; i < n; i++)
        y[i] = x[i];
}

static float *model_params(kd_model *model)
{
    float *p = NULL;
    assert_int_equal(kd_model_parameters(model, &p), KD_OK);
    assert_non_null(p);
    return p;
}

static float *model_grads(kd_model *model)
{
    float *g = NULL;
    assert_int_equal(kd_model_gradients(model, &g), KD_OK);
    assert_non_null(g);
    return g;
}

/* Gives the biases (left at 0 by the initialisation) random values too. */
static void randomise_biases(kd_model *model, const size_t *widths, size_t layer_count,
                             kd_test_rng *rng)
{
    float *p = model_params(model);
    for (size_t l = 1; l < layer_count; l++) {
        p += widths[l] * widths[l - 1];
        for (size_t j = 0; j < widths[l]; j++)
            *p++ = (float)(0.3 * kd_test_normal(rng));
    }
}

/* --- 1. dense gradients against finite differences ----------------------------------------- */

static void dense_gradients_match_finite_differences(void **state)
{
    (void)state;
    const size_t widths[] = {5, 7, 6, 3};
    const size_t layer_count = 4, rows = 4, outputs = 3;
    const size_t p = parameter_count_of(widths, layer_count);
    kd_test_rng rng = {101};

    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, layer_count, 7, NULL), KD_OK);
    assert_int_equal(kd_model_parameter_count(model), p);
    assert_int_equal(kd_model_input_count(model), 5);
    assert_int_equal(kd_model_output_count(model), 3);
    randomise_biases(model, widths, layer_count, &rng);

    float inputs_f[4 * 5], logits[4 * 3], g_f[4 * 3];
    double inputs[4 * 5], g[4 * 3], want_logits[4 * 3];
    fill_normal_f(&rng, inputs_f, rows * widths[0], 1.0);
    to_double(inputs_f, inputs, rows * widths[0]);
    fill_normal_f(&rng, g_f, rows * outputs, 1.0);
    to_double(g_f, g, rows * outputs);

    double *params = malloc(p * sizeof *params);
    double *want = malloc(p * sizeof *want);
    float *once = malloc(p * sizeof *once);
    assert_non_null(params);
    assert_non_null(want);
    assert_non_null(once);
    to_double(model_params(model), params, p);

    /* Forward, both modes (no dropout configured: they agree). */
    reference_forward(widths, layer_count, params, inputs, rows, NULL, want_logits);
    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_INFERENCE, logits), KD_OK);
    check_close_f(logits, want_logits, rows * outputs, 1e-5, 1e-5, "inference logits");
    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_TRAINING, logits), KD_OK);
    check_close_f(logits, want_logits, rows * outputs, 1e-5, 1e-5, "training logits");

    /* Backward against central differences of L = sum(G .* logits). */
    reference_gradient(widths, layer_count, model_params(model), inputs, rows, NULL, g, want);
    assert_int_equal(kd_model_zero_gradients(model), KD_OK);
    assert_int_equal(kd_model_backward(model, g_f, rows), KD_OK);
    float *grads = model_grads(model);
    check_close_f(grads, want, p, 1e-5, 1e-5, "gradient");
    size_t nonzero = 0;
    for (size_t i = 0; i < p; i++)
        nonzero += want[i] != 0.0;
    assert_true(nonzero > p / 2); /* the check covers real gradients, not zeros */

    /* Gradients accumulate: a second backward pass adds the same again. */
    memcpy(once, grads, p * sizeof *once);
    assert_int_equal(kd_model_backward(model, g_f, rows), KD_OK);
    for (size_t i = 0; i < p; i++)
        assert_float_equal(grads[i], 2.0f * once[i], 1e-6 * (1.0 + fabs(2.0 * once[i])));
    /* ... and kd_model_zero_gradients clears them. */
    assert_int_equal(kd_model_zero_gradients(model), KD_OK);
    for (size_t i = 0; i < p; i++)
        assert_true(grads[i] == 0.0f);
    /* Parameters are not touched by forward or backward passes. */
    for (size_t i = 0; i < p; i++)
        assert_true((double)model_params(model)[i] == params[i]);

    free(once);
    free(want);
    free(params);
    kd_model_destroy(model);
}

/* A deeper, wider net with a larger batch, so the BLAS takes its blocked paths. */
static void dense_gradients_larger_net(void **state)
{
    (void)state;
    const size_t widths[] = {9, 17, 13, 11, 4};
    const size_t layer_count = 5, rows = 19, outputs = 4;
    const size_t p = parameter_count_of(widths, layer_count);
    kd_test_rng rng = {202};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, layer_count, 99, NULL), KD_OK);
    randomise_biases(model, widths, layer_count, &rng);

    float *inputs_f = malloc(rows * widths[0] * sizeof *inputs_f);
    double *inputs = malloc(rows * widths[0] * sizeof *inputs);
    float *g_f = malloc(rows * outputs * sizeof *g_f);
    double *g = malloc(rows * outputs * sizeof *g);
    float *logits = malloc(rows * outputs * sizeof *logits);
    double *want_logits = malloc(rows * outputs * sizeof *want_logits);
    double *params = malloc(p * sizeof *params);
    double *want = malloc(p * sizeof *want);
    assert_true(inputs_f && inputs && g_f && g && logits && want_logits && params && want);
    fill_normal_f(&rng, inputs_f, rows * widths[0], 1.0);
    to_double(inputs_f, inputs, rows * widths[0]);
    fill_normal_f(&rng, g_f, rows * outputs, 1.0);
    to_double(g_f, g, rows * outputs);
    to_double(model_params(model), params, p);

    reference_forward(widths, layer_count, params, inputs, rows, NULL, want_logits);
    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_TRAINING, logits), KD_OK);
    check_close_f(logits, want_logits, rows * outputs, 1e-5, 1e-5, "logits");
    reference_gradient(widths, layer_count, model_params(model), inputs, rows, NULL, g, want);
    assert_int_equal(kd_model_backward(model, g_f, rows), KD_OK); /* gradients start at 0 */
    check_close_f(model_grads(model), want, p, 1e-5, 2e-5, "gradient");

    free(want);
    free(params);
    free(want_logits);
    free(logits);
    free(g);
    free(g_f);
    free(inputs);
    free(inputs_f);
    kd_model_destroy(model);
}

/* --- 2. dropout ----------------------------------------------------------------------------- */

static kd_model *dropout_model(const size_t *widths, size_t layer_count, uint64_t seed,
                               double input_rate, double hidden_rate)
{
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, layer_count, seed, NULL), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_INPUT_DROPOUT, input_rate), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_HIDDEN_DROPOUT, hidden_rate), KD_OK);
    return model;
}

/* In inference mode dropout is off: repeated passes agree bit for bit, and with the double
 * reference. */
static void dropout_off_in_inference(void **state)
{
    (void)state;
    const size_t widths[] = {5, 7, 6, 3};
    const size_t rows = 4, p = parameter_count_of(widths, 4);
    kd_test_rng rng = {303};
    kd_model *model = dropout_model(widths, 4, 11, 0.5, 0.5);
    randomise_biases(model, widths, 4, &rng);
    float inputs_f[4 * 5], a[4 * 3], b[4 * 3], c[4 * 3];
    double inputs[4 * 5], want[4 * 3], params[200];
    assert_true(p <= 200);
    fill_normal_f(&rng, inputs_f, rows * 5, 1.0);
    to_double(inputs_f, inputs, rows * 5);
    to_double(model_params(model), params, p);
    reference_forward(widths, 4, params, inputs, rows, NULL, want);

    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_INFERENCE, a), KD_OK);
    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_TRAINING, c), KD_OK);
    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_INFERENCE, b), KD_OK);
    check_close_f(a, want, rows * 3, 1e-5, 1e-5, "inference logits with dropout set");
    assert_memory_equal(a, b, sizeof a);
    /* ... while the training pass between them did drop units (at rate 0.5, all 4 x 3 logits
     * agreeing with inference would mean no dropout at all). */
    assert_memory_not_equal(a, c, sizeof a);
    kd_model_destroy(model);
}

/* Same seed, same calls: identical training passes, gradients included, on two fresh models;
 * another seed gives other masks. */
static void dropout_deterministic(void **state)
{
    (void)state;
    const size_t widths[] = {5, 7, 6, 3};
    const size_t rows = 4, p = parameter_count_of(widths, 4);
    kd_test_rng rng = {404};
    float inputs[4 * 5], g[4 * 3], la[4 * 3], lb[4 * 3], lc[4 * 3];
    fill_normal_f(&rng, inputs, rows * 5, 1.0);
    fill_normal_f(&rng, g, rows * 3, 1.0);

    kd_model *a = dropout_model(widths, 4, 5, 0.2, 0.5);
    kd_model *b = dropout_model(widths, 4, 5, 0.2, 0.5);
    kd_model *c = dropout_model(widths, 4, 6, 0.2, 0.5);
    float *pc = model_params(c);
    memcpy(pc, model_params(a), p * sizeof *pc); /* same parameters, other generator */
    for (int round = 0; round < 3; round++) {
        assert_int_equal(kd_model_forward(a, inputs, rows, KD_MODE_TRAINING, la), KD_OK);
        assert_int_equal(kd_model_forward(b, inputs, rows, KD_MODE_TRAINING, lb), KD_OK);
        assert_int_equal(kd_model_forward(c, inputs, rows, KD_MODE_TRAINING, lc), KD_OK);
        assert_memory_equal(la, lb, sizeof la);
        assert_memory_not_equal(la, lc, sizeof la);
        assert_int_equal(kd_model_backward(a, g, rows), KD_OK);
        assert_int_equal(kd_model_backward(b, g, rows), KD_OK);
        float *ga = model_grads(a), *gb = model_grads(b);
        assert_memory_equal(ga, gb, p * sizeof *ga);
        for (size_t i = 0; i < p; i++)
            assert_true(isfinite(ga[i]));
    }
    kd_model_destroy(c);
    kd_model_destroy(b);
    kd_model_destroy(a);
}

/* The dropout masks of the first training pass of a fresh model, recovered by black-box probes.
 * It relies on what the header promises (results are deterministic for a given seed and call
 * sequence) and on the masks not depending on the values: a fresh model with the same seed,
 * widths and rates draws the same masks on its first training pass of the same shape, whatever
 * its parameters and inputs. Each probe sets parameters that make the logits reveal one unit's
 * mask in every row. Network {5, 7, 6, 3}. */
typedef struct masks {
    double input[4 * 5], hidden1[4 * 7], hidden2[4 * 6]; /* 0 or the dropout scale */
} masks;

enum { PROBE_ROWS = 4 };

static void probe(uint64_t seed, double input_rate, double hidden_rate, const float *params,
                  float *logits)
{
    const size_t widths[] = {5, 7, 6, 3};
    kd_model *model = dropout_model(widths, 4, seed, input_rate, hidden_rate);
    memcpy(model_params(model), params, parameter_count_of(widths, 4) * sizeof *params);
    float ones[PROBE_ROWS * 5];
    for (size_t i = 0; i < PROBE_ROWS * 5; i++)
        ones[i] = 1.0f;
    assert_int_equal(kd_model_forward(model, ones, PROBE_ROWS, KD_MODE_TRAINING, logits), KD_OK);
    kd_model_destroy(model);
}

/* Offsets in the {5, 7, 6, 3} parameter vector. */
enum { W1 = 0, B1 = 35, W2 = 42, B2 = 84, W3 = 90, B3 = 108, P_5763 = 111 };

static void recover_masks(uint64_t seed, double input_rate, double hidden_rate, masks *m)
{
    const double s_in = (float)(1.0 / (1.0 - input_rate));
    const double s_h = (float)(1.0 / (1.0 - hidden_rate));
    float params[P_5763], logits[PROBE_ROWS * 3];
    size_t kept2[PROBE_ROWS] = {0}, kept1[PROBE_ROWS] = {0};

    /* Second hidden layer, unit u: h1 = 0, h2 = dropout(1), logits = h2[u]. */
    for (size_t u = 0; u < 6; u++) {
        memset(params, 0, sizeof params);
        for (size_t j = 0; j < 6; j++)
            params[B2 + j] = 1.0f;
        for (size_t c = 0; c < 3; c++)
            params[W3 + c * 6 + u] = 1.0f;
        probe(seed, input_rate, hidden_rate, params, logits);
        for (size_t r = 0; r < PROBE_ROWS; r++) {
            double z = logits[r * 3];
            assert_true(z == 0.0 || fabs(z - s_h) < 1e-6);
            m->hidden2[r * 6 + u] = z == 0.0 ? 0.0 : s_h;
            kept2[r] += z != 0.0;
        }
    }
    /* First hidden layer, unit u: h1 = dropout(1), every h2 = h1[u], logits = sum of h2. */
    for (size_t u = 0; u < 7; u++) {
        memset(params, 0, sizeof params);
        for (size_t j = 0; j < 7; j++)
            params[B1 + j] = 1.0f;
        for (size_t j = 0; j < 6; j++)
            params[W2 + j * 7 + u] = 1.0f;
        for (size_t i = 0; i < 3 * 6; i++)
            params[W3 + i] = 1.0f;
        probe(seed, input_rate, hidden_rate, params, logits);
        for (size_t r = 0; r < PROBE_ROWS; r++) {
            assert_true(kept2[r] > 0); /* else this seed cannot reveal the row: pick another */
            m->hidden1[r * 7 + u] = logits[r * 3] == 0.0f ? 0.0 : s_h;
            kept1[r] += logits[r * 3] != 0.0f;
        }
    }
    /* Inputs, unit u: every h1 = x[u] after dropout, every h2 = sum of h1, logits = sum of h2. */
    for (size_t u = 0; u < 5; u++) {
        memset(params, 0, sizeof params);
        for (size_t j = 0; j < 7; j++)
            params[W1 + j * 5 + u] = 1.0f;
        for (size_t i = 0; i < 6 * 7; i++)
            params[W2 + i] = 1.0f;
        for (size_t i = 0; i < 3 * 6; i++)
            params[W3 + i] = 1.0f;
        probe(seed, input_rate, hidden_rate, params, logits);
        for (size_t r = 0; r < PROBE_ROWS; r++) {
            assert_true(kept1[r] > 0);
            m->input[r * 5 + u] = logits[r * 3] == 0.0f ? 0.0 : s_in;
        }
    }
}

static size_t count_zero(const double *x, size_t n)
{
    size_t zero = 0;
    for (size_t i = 0; i < n; i++)
        zero += x[i] == 0.0;
    return zero;
}

/* With the masks reproduced, a training pass with input and hidden dropout matches the double
 * reference, and its backward pass the finite differences through the same masks. */
static void dropout_gradients_match_finite_differences(void **state)
{
    (void)state;
    const size_t widths[] = {5, 7, 6, 3};
    const size_t rows = PROBE_ROWS;
    const uint64_t seed = 12345;
    const double input_rate = 0.25, hidden_rate = 0.5;
    masks m;
    recover_masks(seed, input_rate, hidden_rate, &m);
    /* Dropout did happen, and not to everything. */
    size_t dropped_in = count_zero(m.input, rows * 5);
    size_t dropped_h = count_zero(m.hidden1, rows * 7) + count_zero(m.hidden2, rows * 6);
    assert_true(dropped_in > 0 && dropped_in < rows * 5);
    assert_true(dropped_h > 0 && dropped_h < rows * 13);

    kd_test_rng rng = {505};
    kd_model *model = dropout_model(widths, 4, seed, input_rate, hidden_rate);
    float *p = model_params(model);
    fill_normal_f(&rng, p, P_5763, 0.6);
    float inputs_f[PROBE_ROWS * 5], g_f[PROBE_ROWS * 3], logits[PROBE_ROWS * 3];
    double inputs[PROBE_ROWS * 5], g[PROBE_ROWS * 3], params[P_5763], want_logits[PROBE_ROWS * 3];
    double want[P_5763];
    fill_normal_f(&rng, inputs_f, rows * 5, 1.0);
    to_double(inputs_f, inputs, rows * 5);
    fill_normal_f(&rng, g_f, rows * 3, 1.0);
    to_double(g_f, g, rows * 3);
    to_double(p, params, P_5763);
    const double *const mask_list[3] = {m.input, m.hidden1, m.hidden2};

    assert_int_equal(kd_model_forward(model, inputs_f, rows, KD_MODE_TRAINING, logits), KD_OK);
    reference_forward(widths, 4, params, inputs, rows, mask_list, want_logits);
    check_close_f(logits, want_logits, rows * 3, 1e-5, 1e-5, "training logits with dropout");

    reference_gradient(widths, 4, p, inputs, rows, mask_list, g, want);
    assert_int_equal(kd_model_backward(model, g_f, rows), KD_OK);
    check_close_f(model_grads(model), want, P_5763, 1e-5, 1e-5, "gradient with dropout");
    kd_model_destroy(model);
}

/* Inverted dropout keeps expectations: averaged over many training passes, logits that are
 * linear in the dropped units equal the inference logits (network {5, 3} with input dropout,
 * {5, 8, 3} with hidden dropout: in both the dropped units feed the linear output layer). */
static void check_dropout_expectation(const size_t *widths, size_t layer_count, double input_rate,
                                      double hidden_rate, uint64_t seed)
{
    enum { N = 20000 };
    const size_t in = widths[0], out = widths[layer_count - 1];
    kd_test_rng rng = {seed};
    kd_model *model = dropout_model(widths, layer_count, seed, input_rate, hidden_rate);
    randomise_biases(model, widths, layer_count, &rng);
    float x[8], inference[8];
    fill_normal_f(&rng, x, in, 1.0);
    float *inputs = malloc((size_t)N * in * sizeof *inputs);
    float *logits = malloc((size_t)N * out * sizeof *logits);
    assert_non_null(inputs);
    assert_non_null(logits);
    for (size_t r = 0; r < N; r++)
        memcpy(inputs + r * in, x, in * sizeof *x);
    assert_int_equal(kd_model_forward(model, x, 1, KD_MODE_INFERENCE, inference), KD_OK);
    assert_int_equal(kd_model_forward(model, inputs, N, KD_MODE_TRAINING, logits), KD_OK);
    for (size_t c = 0; c < out; c++) {
        double sum = 0.0, sum2 = 0.0;
        size_t differ = 0;
        for (size_t r = 0; r < N; r++) {
            double z = logits[r * out + c];
            sum += z;
            sum2 += z * z;
            differ += logits[r * out + c] != inference[c];
        }
        double mean = sum / N, sd = sqrt(fmax(sum2 / N - mean * mean, 0.0));
        assert_true(sd > 1e-3);    /* the passes did vary */
        assert_true(differ > N / 2); /* most rows had some unit dropped */
        if (fabs(mean - inference[c]) > 5.0 * sd / sqrt((double)N) + 1e-5)
            fail_msg("class %zu: mean training logit %g, inference %g, sd %g", c, mean,
                     (double)inference[c], sd);
    }
    free(logits);
    free(inputs);
    kd_model_destroy(model);
}

static void dropout_expectation_matches_inference(void **state)
{
    (void)state;
    const size_t linear[] = {5, 3};
    check_dropout_expectation(linear, 2, 0.3, 0.0, 606);
    const size_t hidden[] = {5, 8, 3};
    check_dropout_expectation(hidden, 3, 0.0, 0.5, 707);
}

/* --- 3. max-norm ----------------------------------------------------------------------------- */

static void max_norm_constrains_rows_not_biases(void **state)
{
    (void)state;
    const size_t widths[] = {4, 16, 16, 3};
    const size_t p = parameter_count_of(widths, 4);
    const double max_norm = 0.5, lr = 10.0;
    kd_test_rng rng = {808};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 4, 3, NULL), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_MAX_NORM, max_norm), KD_OK);
    kd_optimizer *opt = NULL;
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, lr), KD_OK);

    /* Even rows: small weights and no gradient (stay under the limit, must not change); odd
     * rows: a large gradient (pushed far over it). Biases: a large gradient too. */
    float *w = model_params(model), *g = model_grads(model);
    float *before = malloc(p * sizeof *before);
    assert_non_null(before);
    size_t offset = 0;
    for (size_t l = 1; l < 4; l++) {
        const size_t n_in = widths[l - 1], n_out = widths[l];
        for (size_t j = 0; j < n_out; j++) {
            for (size_t i = 0; i < n_in; i++) {
                size_t k = offset + j * n_in + i;
                if (j % 2 == 0) {
                    w[k] = (float)(0.05 * kd_test_normal(&rng));
                    g[k] = 0.0f;
                } else {
                    g[k] = (float)kd_test_normal(&rng);
                }
            }
        }
        offset += n_out * n_in;
        for (size_t j = 0; j < n_out; j++)
            g[offset + j] = (float)(3.0 * kd_test_normal(&rng));
        offset += n_out;
    }
    memcpy(before, w, p * sizeof *before);
    assert_int_equal(kd_optimizer_step(opt, model), KD_OK);

    offset = 0;
    size_t rescaled = 0;
    for (size_t l = 1; l < 4; l++) {
        const size_t n_in = widths[l - 1], n_out = widths[l];
        for (size_t j = 0; j < n_out; j++) {
            const size_t row = offset + j * n_in;
            double norm2 = 0.0, free_norm2 = 0.0;
            for (size_t i = 0; i < n_in; i++) {
                double unconstrained = (double)before[row + i] - lr * g[row + i];
                norm2 += (double)w[row + i] * w[row + i];
                free_norm2 += unconstrained * unconstrained;
            }
            if (sqrt(norm2) > max_norm * (1.0 + 1e-5))
                fail_msg("layer %zu unit %zu: norm %.9g over %g", l, j, sqrt(norm2), max_norm);
            if (sqrt(free_norm2) <= max_norm * (1.0 - 1e-4)) {
                /* Under the limit: the plain SGD update (here: none). */
                for (size_t i = 0; i < n_in; i++)
                    assert_float_equal(w[row + i], before[row + i] - lr * g[row + i], 1e-6);
            } else {
                /* Over it: rescaled along the same direction onto the limit. */
                rescaled++;
                assert_true(sqrt(norm2) >= max_norm * (1.0 - 1e-5));
                double scale = max_norm / sqrt(free_norm2);
                for (size_t i = 0; i < n_in; i++) {
                    double want = ((double)before[row + i] - lr * g[row + i]) * scale;
                    assert_float_equal(w[row + i], want, 1e-5 * max_norm);
                }
            }
        }
        offset += n_out * n_in;
        for (size_t j = 0; j < n_out; j++, offset++) {
            /* Biases: the plain update, far beyond max_norm and left there. */
            float want = before[offset] - (float)lr * g[offset];
            assert_float_equal(w[offset], want, 1e-5 * (1.0 + fabs(want)));
        }
    }
    assert_int_equal(rescaled, (16 + 16 + 3) / 2);
    int any_large_bias = 0;
    for (size_t j = 0; j < 3; j++)
        any_large_bias |= fabs(w[p - 1 - j]) > max_norm;
    assert_true(any_large_bias);

    free(before);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

/* --- 4. optimizer update rules --------------------------------------------------------------- */

typedef struct optimizer_case {
    kd_optimizer_kind kind;
    double lr, momentum, nesterov, decay, beta1, beta2, eps;
} optimizer_case;

/* Three steps on a {2, 2} model (6 parameters) with other gradients each step, against
 * torch.optim.SGD / torch.optim.Adam written out in double. */
static void check_optimizer_case(const optimizer_case *c)
{
    const size_t widths[] = {2, 2};
    enum { P = 6 };
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 2, 1, NULL), KD_OK);
    assert_int_equal(kd_model_parameter_count(model), P);
    kd_optimizer *opt = NULL;
    assert_int_equal(kd_optimizer_create(&opt, c->kind, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_kind_of(opt), (int)c->kind);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, c->lr), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_WEIGHT_DECAY, c->decay), KD_OK);
    if (c->kind == KD_OPTIMIZER_SGD) {
        assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_MOMENTUM, c->momentum), KD_OK);
        assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_NESTEROV, c->nesterov), KD_OK);
    } else {
        assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_BETA1, c->beta1), KD_OK);
        assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_BETA2, c->beta2), KD_OK);
        assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_EPSILON, c->eps), KD_OK);
    }
    const float w0[P] = {0.5f, -0.25f, 0.75f, 0.125f, 0.2f, -0.4f};
    const float grads[3][P] = {
        {0.1f, -0.2f, 0.3f, 0.05f, -0.15f, 0.0f},
        {-0.3f, 0.1f, 0.2f, 0.4f, 0.0f, -0.05f},
        {0.25f, 0.25f, -0.1f, -0.2f, 0.35f, 0.1f},
    };
    float *w = model_params(model), *g = model_grads(model);
    memcpy(w, w0, sizeof w0);
    double want[P], buf[P] = {0}, m1[P] = {0}, m2[P] = {0};
    for (size_t i = 0; i < P; i++)
        want[i] = w0[i];
    for (int t = 1; t <= 3; t++) {
        memcpy(g, grads[t - 1], sizeof grads[0]);
        assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
        assert_memory_equal(g, grads[t - 1], sizeof grads[0]); /* gradients left as they are */
        for (size_t i = 0; i < P; i++) {
            double d = (double)grads[t - 1][i] + c->decay * want[i];
            if (c->kind == KD_OPTIMIZER_SGD) {
                if (c->momentum != 0.0) {
                    buf[i] = t == 1 ? d : c->momentum * buf[i] + d;
                    d = c->nesterov != 0.0 ? d + c->momentum * buf[i] : buf[i];
                }
                want[i] -= c->lr * d;
            } else {
                m1[i] = c->beta1 * m1[i] + (1.0 - c->beta1) * d;
                m2[i] = c->beta2 * m2[i] + (1.0 - c->beta2) * d * d;
                double bc1 = 1.0 - pow(c->beta1, t), bc2 = 1.0 - pow(c->beta2, t);
                want[i] -= c->lr / bc1 * m1[i] / (sqrt(m2[i]) / sqrt(bc2) + c->eps);
            }
        }
        for (size_t i = 0; i < P; i++)
            if (fabs(w[i] - want[i]) > 1e-6 + 2e-6 * fabs(want[i]))
                fail_msg("kind %d lr %g momentum %g nesterov %g decay %g: step %d, w[%zu] = %.9g, "
                         "want %.9g",
                         (int)c->kind, c->lr, c->momentum, c->nesterov, c->decay, t, i,
                         (double)w[i], want[i]);
    }
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

static void optimizer_update_rules(void **state)
{
    (void)state;
    const optimizer_case cases[] = {
        {KD_OPTIMIZER_SGD, 0.1, 0.0, 0.0, 0.0, 0, 0, 0},     /* plain */
        {KD_OPTIMIZER_SGD, 0.1, 0.9, 0.0, 0.0, 0, 0, 0},     /* momentum */
        {KD_OPTIMIZER_SGD, 0.1, 0.9, 1.0, 0.0, 0, 0, 0},     /* Nesterov */
        {KD_OPTIMIZER_SGD, 0.1, 0.0, 0.0, 0.05, 0, 0, 0},    /* weight decay */
        {KD_OPTIMIZER_SGD, 0.05, 0.8, 1.0, 0.1, 0, 0, 0},    /* all of them */
        {KD_OPTIMIZER_ADAM, 0.01, 0, 0, 0.0, 0.9, 0.999, 1e-8},
        {KD_OPTIMIZER_ADAM, 0.1, 0, 0, 0.0, 0.5, 0.9, 1e-3},
        {KD_OPTIMIZER_ADAM, 0.01, 0, 0, 0.2, 0.9, 0.999, 1e-8}, /* L2 weight decay */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_optimizer_case(&cases[i]);
}

/* Adam with its defaults (lr 0.001, betas 0.9 / 0.999, eps 1e-8): the first step moves every
 * parameter with a non-zero gradient by lr against its gradient's sign, whatever its size. */
static void adam_defaults_first_step(void **state)
{
    (void)state;
    const size_t widths[] = {2, 2};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 2, 1, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_ADAM, model, NULL), KD_OK);
    float *w = model_params(model), *g = model_grads(model);
    const float gs[6] = {1e-3f, -2.0f, 50.0f, -1e-2f, 0.5f, -7.0f};
    memcpy(g, gs, sizeof gs);
    float before[6];
    memcpy(before, w, sizeof before);
    assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
    for (size_t i = 0; i < 6; i++)
        assert_float_equal(w[i], before[i] - 0.001 * (gs[i] > 0 ? 1.0 : -1.0), 1e-7);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

static void optimizer_parameters(void **state)
{
    (void)state;
    const size_t widths[] = {3, 2};
    const size_t other_widths[] = {3, 3};
    kd_model *model = NULL, *other = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 2, 1, NULL), KD_OK);
    assert_int_equal(kd_model_create_dense(&other, other_widths, 2, 1, NULL), KD_OK);
    kd_optimizer *sgd = NULL, *adam = NULL;
    assert_int_equal(kd_optimizer_create(&sgd, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&adam, KD_OPTIMIZER_ADAM, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_kind_of(sgd), KD_OPTIMIZER_SGD);
    assert_int_equal(kd_optimizer_kind_of(adam), KD_OPTIMIZER_ADAM);
    assert_int_equal(kd_optimizer_kind_of(NULL), -1);

    /* Defaults. */
    double v;
    const struct {
        kd_optimizer *o;
        kd_optimizer_param p;
        double value;
    } defaults[] = {
        {sgd, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.01}, {sgd, KD_OPTIMIZER_PARAM_MOMENTUM, 0.0},
        {sgd, KD_OPTIMIZER_PARAM_NESTEROV, 0.0},       {sgd, KD_OPTIMIZER_PARAM_WEIGHT_DECAY, 0.0},
        {adam, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.001}, {adam, KD_OPTIMIZER_PARAM_WEIGHT_DECAY, 0.0},
        {adam, KD_OPTIMIZER_PARAM_BETA1, 0.9},         {adam, KD_OPTIMIZER_PARAM_BETA2, 0.999},
        {adam, KD_OPTIMIZER_PARAM_EPSILON, 1e-8},
    };
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; i++) {
        assert_int_equal(kd_optimizer_get(defaults[i].o, defaults[i].p, &v), KD_OK);
        assert_true(v == defaults[i].value);
    }

    /* Bounds as documented. */
    const struct {
        kd_optimizer_param p;
        double min, max;
    } bounds[] = {
        {KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.0, 1e6}, {KD_OPTIMIZER_PARAM_MOMENTUM, 0.0, 0.9999},
        {KD_OPTIMIZER_PARAM_NESTEROV, 0.0, 1.0},      {KD_OPTIMIZER_PARAM_WEIGHT_DECAY, 0.0, 1e6},
        {KD_OPTIMIZER_PARAM_BETA1, 0.0, 0.9999999},   {KD_OPTIMIZER_PARAM_BETA2, 0.0, 0.9999999},
        {KD_OPTIMIZER_PARAM_EPSILON, 1e-30, 1.0},
    };
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        double lo = -1, hi = -1;
        assert_int_equal(kd_optimizer_param_bounds(bounds[i].p, &lo, &hi), KD_OK);
        assert_true(lo == bounds[i].min && hi == bounds[i].max);
        assert_int_equal(kd_optimizer_param_bounds(bounds[i].p, NULL, NULL), KD_OK);
        /* Both ends are accepted by a kind that uses the parameter, and read back. */
        kd_optimizer *o = bounds[i].p == KD_OPTIMIZER_PARAM_BETA1 || bounds[i].p == KD_OPTIMIZER_PARAM_BETA2
                                  || bounds[i].p == KD_OPTIMIZER_PARAM_EPSILON
                              ? adam
                              : sgd;
        assert_int_equal(kd_optimizer_set(o, bounds[i].p, lo), KD_OK);
        assert_int_equal(kd_optimizer_get(o, bounds[i].p, &v), KD_OK);
        assert_true(v == lo);
        assert_int_equal(kd_optimizer_set(o, bounds[i].p, hi), KD_OK);
        assert_int_equal(kd_optimizer_get(o, bounds[i].p, &v), KD_OK);
        assert_true(v == hi);
        /* Just outside, NaN and infinities are rejected; the value stays. */
        const double bad[] = {lo - fmax(fabs(lo) * 1e-6, 1e-300), hi + fmax(hi * 1e-6, 1e-300),
                              NAN, INFINITY, -INFINITY};
        for (size_t k = 0; k < 5; k++) {
            assert_int_equal(kd_optimizer_set(o, bounds[i].p, bad[k]), KD_ERROR_INVALID_ARGUMENT);
            assert_int_equal(kd_optimizer_get(o, bounds[i].p, &v), KD_OK);
            assert_true(v == hi);
        }
    }
    assert_int_equal(kd_optimizer_set(adam, KD_OPTIMIZER_PARAM_EPSILON, 0.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_optimizer_set(adam, KD_OPTIMIZER_PARAM_EPSILON, 1e-31), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_optimizer_set(sgd, KD_OPTIMIZER_PARAM_MOMENTUM, 1.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_optimizer_set(sgd, KD_OPTIMIZER_PARAM_LEARNING_RATE, -0.1), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_optimizer_set(adam, KD_OPTIMIZER_PARAM_BETA1, 1.0), KD_ERROR_INVALID_ARGUMENT);
    /* Nesterov is a flag: 0 or 1 only. */
    assert_int_equal(kd_optimizer_set(sgd, KD_OPTIMIZER_PARAM_NESTEROV, 0.0), KD_OK);
    assert_int_equal(kd_optimizer_set(sgd, KD_OPTIMIZER_PARAM_NESTEROV, 0.5), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_optimizer_get(sgd, KD_OPTIMIZER_PARAM_NESTEROV, &v), KD_OK);
    assert_true(v == 0.0);

    /* Parameters the kind does not use. */
    const kd_optimizer_param adam_only[] = {KD_OPTIMIZER_PARAM_BETA1, KD_OPTIMIZER_PARAM_BETA2,
                                            KD_OPTIMIZER_PARAM_EPSILON};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(kd_optimizer_set(sgd, adam_only[i], 0.5), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_optimizer_get(sgd, adam_only[i], &v), KD_ERROR_INVALID_ARGUMENT);
    }
    const kd_optimizer_param sgd_only[] = {KD_OPTIMIZER_PARAM_MOMENTUM, KD_OPTIMIZER_PARAM_NESTEROV};
    for (size_t i = 0; i < 2; i++) {
        assert_int_equal(kd_optimizer_set(adam, sgd_only[i], 0.0), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_optimizer_get(adam, sgd_only[i], &v), KD_ERROR_INVALID_ARGUMENT);
    }
    /* Unknown parameters. */
    const int unknown[] = {-1, 7, 8, 1000};
    for (size_t i = 0; i < 4; i++) {
        kd_optimizer_param p = (kd_optimizer_param)unknown[i];
        assert_int_equal(kd_optimizer_set(sgd, p, 0.0), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_optimizer_set(adam, p, 0.0), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_optimizer_get(adam, p, &v), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_optimizer_param_bounds(p, NULL, NULL), KD_ERROR_INVALID_ARGUMENT);
    }
    /* NULL pointers. */
    assert_int_equal(kd_optimizer_set(NULL, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.1), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_optimizer_get(NULL, KD_OPTIMIZER_PARAM_LEARNING_RATE, &v), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_optimizer_get(sgd, KD_OPTIMIZER_PARAM_LEARNING_RATE, NULL), KD_ERROR_NULL_POINTER);

    /* Creation errors leave *optimizer alone. */
    kd_optimizer *untouched = sgd;
    assert_int_equal(kd_optimizer_create(NULL, KD_OPTIMIZER_SGD, model, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_optimizer_create(&untouched, KD_OPTIMIZER_SGD, NULL, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_optimizer_create(&untouched, (kd_optimizer_kind)2, model, NULL),
                     KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_optimizer_create(&untouched, (kd_optimizer_kind)-1, model, NULL),
                     KD_ERROR_INVALID_ARGUMENT);
    kd_allocator bad_allocator = {sizeof(kd_allocator) - 1, kd_test_allocate, kd_test_release, NULL};
    assert_int_equal(kd_optimizer_create(&untouched, KD_OPTIMIZER_SGD, model, &bad_allocator),
                     KD_ERROR_INVALID_ARGUMENT);
    assert_ptr_equal(untouched, sgd);

    /* A step on a model of another size: refused, nothing changes. */
    float *w_other = model_params(other);
    float copy[12];
    memcpy(copy, w_other, sizeof copy);
    float *g_other = model_grads(other);
    for (size_t i = 0; i < 12; i++)
        g_other[i] = 1.0f;
    assert_int_equal(kd_optimizer_step(sgd, other), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(kd_optimizer_step(adam, other), KD_ERROR_SHAPE_MISMATCH);
    assert_memory_equal(copy, w_other, sizeof copy);
    assert_int_equal(kd_optimizer_step(NULL, model), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_optimizer_step(sgd, NULL), KD_ERROR_NULL_POINTER);
    kd_optimizer_destroy(NULL);

    kd_optimizer_destroy(adam);
    kd_optimizer_destroy(sgd);
    kd_model_destroy(other);
    kd_model_destroy(model);
}

static void model_parameters_get_set(void **state)
{
    (void)state;
    const size_t widths[] = {3, 4, 2};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, NULL), KD_OK);
    const kd_model_param params[] = {KD_MODEL_PARAM_INPUT_DROPOUT, KD_MODEL_PARAM_HIDDEN_DROPOUT,
                                     KD_MODEL_PARAM_MAX_NORM};
    const double max[] = {0.95, 0.95, 1e30};
    for (size_t i = 0; i < 3; i++) {
        double v = -1, lo = -1, hi = -1;
        assert_int_equal(kd_model_get(model, params[i], &v), KD_OK);
        assert_true(v == 0.0); /* default */
        assert_int_equal(kd_model_param_bounds(params[i], &lo, &hi), KD_OK);
        assert_true(lo == 0.0 && hi == max[i]);
        assert_int_equal(kd_model_param_bounds(params[i], NULL, NULL), KD_OK);
        assert_int_equal(kd_model_set(model, params[i], hi), KD_OK);
        assert_int_equal(kd_model_get(model, params[i], &v), KD_OK);
        assert_true(v == hi);
        assert_int_equal(kd_model_set(model, params[i], 0.25), KD_OK);
        const double bad[] = {-1.0, -1e-9, hi * 1.01, NAN, INFINITY};
        for (size_t k = 0; k < 5; k++) {
            assert_int_equal(kd_model_set(model, params[i], bad[k]), KD_ERROR_INVALID_ARGUMENT);
            assert_int_equal(kd_model_get(model, params[i], &v), KD_OK);
            assert_true(v == 0.25);
        }
    }
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_INPUT_DROPOUT, 0.96), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_HIDDEN_DROPOUT, 0.96), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_MAX_NORM, -1.0), KD_ERROR_INVALID_ARGUMENT);
    double v;
    const int unknown[] = {-1, 3, 100};
    for (size_t i = 0; i < 3; i++) {
        kd_model_param p = (kd_model_param)unknown[i];
        assert_int_equal(kd_model_set(model, p, 0.0), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_model_get(model, p, &v), KD_ERROR_INVALID_ARGUMENT);
        assert_int_equal(kd_model_param_bounds(p, NULL, NULL), KD_ERROR_INVALID_ARGUMENT);
    }
    assert_int_equal(kd_model_set(NULL, KD_MODEL_PARAM_MAX_NORM, 1.0), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_get(NULL, KD_MODEL_PARAM_MAX_NORM, &v), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_get(model, KD_MODEL_PARAM_MAX_NORM, NULL), KD_ERROR_NULL_POINTER);
    kd_model_destroy(model);
}

/* --- 5. host network adapter ----------------------------------------------------------------- */

enum { HOST_IN = 4, HOST_OUT = 3, HOST_P = HOST_OUT * (HOST_IN + 1), HOST_MAX_ROWS = 600 };

/* A linear model: logits = x W^T + b, W (outputs x inputs) then b in one parameter array. */
typedef struct host_linear {
    float params[HOST_P], grads[HOST_P];
    float saved[HOST_MAX_ROWS * HOST_IN];
    size_t saved_rows;
    int fail_forward, fail_backward, null_parameters, null_gradients;
    size_t forward_calls, backward_calls;
} host_linear;

static int host_forward(void *user, const float *inputs, size_t rows, kd_mode mode, float *logits)
{
    host_linear *h = user;
    h->forward_calls++;
    if (h->fail_forward || rows > HOST_MAX_ROWS)
        return -1;
    const float *w = h->params, *b = h->params + HOST_OUT * HOST_IN;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < HOST_OUT; j++) {
            float s = b[j];
            for (size_t i = 0; i < HOST_IN; i++)
                s += w[j * HOST_IN + i] * inputs[r * HOST_IN + i];
            logits[r * HOST_OUT + j] = s;
        }
    if (mode == KD_MODE_TRAINING) {
        memcpy(h->saved, inputs, rows * HOST_IN * sizeof *inputs);
        h->saved_rows = rows;
    }
    return 0;
}

static int host_backward(void *user, const float *grad_logits, size_t rows)
{
    host_linear *h = user;
    h->backward_calls++;
    if (h->fail_backward || rows != h->saved_rows)
        return 1;
    float *dw = h->grads, *db = h->grads + HOST_OUT * HOST_IN;
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < HOST_OUT; j++) {
            float gj = grad_logits[r * HOST_OUT + j];
            for (size_t i = 0; i < HOST_IN; i++)
                dw[j * HOST_IN + i] += gj * h->saved[r * HOST_IN + i];
            db[j] += gj;
        }
    return 0;
}

static float *host_parameters(void *user)
{
    host_linear *h = user;
    return h->null_parameters ? NULL : h->params;
}

static float *host_gradients(void *user)
{
    host_linear *h = user;
    return h->null_gradients ? NULL : h->grads;
}

static kd_model_callbacks host_callbacks(void)
{
    kd_model_callbacks cb = {sizeof(kd_model_callbacks), host_forward, host_backward,
                             host_parameters, host_gradients};
    return cb;
}

/* Points x ~ N(0, I) in 4 dimensions labelled by argmax(V x + c) for a random V, c, keeping
 * only those with a margin of at least 0.5 (linearly separable), as many of each class. */
static void make_linear_problem(float *x, int32_t *labels, size_t n, uint64_t seed)
{
    kd_test_rng rng = {seed};
    double v[HOST_OUT][HOST_IN], c[HOST_OUT];
    for (size_t j = 0; j < HOST_OUT; j++) {
        for (size_t i = 0; i < HOST_IN; i++)
            v[j][i] = kd_test_normal(&rng);
        c[j] = 0.3 * kd_test_normal(&rng);
    }
    size_t made = 0;
    size_t per_class[HOST_OUT] = {0};
    while (made < n) {
        double p[HOST_IN], s[HOST_OUT];
        for (size_t i = 0; i < HOST_IN; i++)
            p[i] = kd_test_normal(&rng);
        size_t best = 0;
        for (size_t j = 0; j < HOST_OUT; j++) {
            s[j] = c[j];
            for (size_t i = 0; i < HOST_IN; i++)
                s[j] += v[j][i] * p[i];
            if (s[j] > s[best])
                best = j;
        }
        double margin = INFINITY;
        for (size_t j = 0; j < HOST_OUT; j++)
            if (j != best)
                margin = fmin(margin, s[best] - s[j]);
        if (margin < 0.5 || per_class[best] >= (n + HOST_OUT - 1) / HOST_OUT)
            continue; /* too close to a boundary, or the class is full */
        for (size_t i = 0; i < HOST_IN; i++)
            x[made * HOST_IN + i] = (float)p[i];
        labels[made] = (int32_t)best;
        per_class[best]++;
        made++;
    }
    for (size_t j = 0; j < HOST_OUT; j++)
        assert_true(per_class[j] >= n / 10); /* every class is really there */
}

static size_t argmax(const float *z, size_t n)
{
    size_t best = 0;
    for (size_t j = 1; j < n; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

/* Fraction of points whose argmax logit is their label (or the reference's argmax). */
static double accuracy(kd_model *model, const float *x, size_t n, const int32_t *labels,
                       const float *reference_logits)
{
    const size_t out = kd_model_output_count(model);
    float *logits = malloc(n * out * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(kd_model_forward(model, x, n, KD_MODE_INFERENCE, logits), KD_OK);
    size_t right = 0;
    for (size_t r = 0; r < n; r++) {
        size_t want = labels != NULL ? (size_t)labels[r] : argmax(reference_logits + r * out, out);
        right += argmax(logits + r * out, out) == want;
    }
    free(logits);
    return (double)right / (double)n;
}

/* One epoch of mini-batches in a seeded random order. teacher: n x outputs, or NULL. */
static void train_epoch(kd_trainer *trainer, const float *x, size_t in, const float *teacher,
                        size_t out, const int32_t *labels, size_t n, size_t batch,
                        kd_test_rng *rng)
{
    size_t *order = malloc(n * sizeof *order);
    float *bx = malloc(batch * in * sizeof *bx);
    float *bt = malloc(batch * out * sizeof *bt);
    int32_t *by = malloc(batch * sizeof *by);
    assert_true(order && bx && bt && by);
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)(kd_test_rng_next(rng) % (i + 1));
        size_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t start = 0; start < n; start += batch) {
        size_t rows = n - start < batch ? n - start : batch;
        for (size_t r = 0; r < rows; r++) {
            size_t k = order[start + r];
            memcpy(bx + r * in, x + k * in, in * sizeof *x);
            if (teacher != NULL)
                memcpy(bt + r * out, teacher + k * out, out * sizeof *teacher);
            if (labels != NULL)
                by[r] = labels[k];
        }
        float values[KD_LOSS_VALUE_COUNT];
        assert_int_equal(kd_trainer_step(trainer, bx, rows, teacher != NULL ? bt : NULL,
                                         labels != NULL ? by : NULL, values),
                         KD_OK);
        assert_true(isfinite(values[KD_LOSS_VALUE_TOTAL]));
    }
    free(by);
    free(bt);
    free(bx);
    free(order);
}

static void host_model_trains_through_trainer(void **state)
{
    (void)state;
    enum { N = 600 };
    static host_linear h; /* large: not on the stack */
    memset(&h, 0, sizeof h);
    kd_model_callbacks cb = host_callbacks();
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_host(&model, &cb, &h, HOST_IN, HOST_OUT, HOST_P, NULL), KD_OK);
    assert_int_equal(kd_model_input_count(model), HOST_IN);
    assert_int_equal(kd_model_output_count(model), HOST_OUT);
    assert_int_equal(kd_model_parameter_count(model), HOST_P);
    assert_ptr_equal(model_params(model), h.params);
    assert_ptr_equal(model_grads(model), h.grads);
    assert_int_equal(kd_model_reserve(model, 10), KD_OK);

    static float x[N * HOST_IN];
    static int32_t labels[N];
    make_linear_problem(x, labels, N, 2024);

    kd_optimizer *opt = NULL;
    kd_loss *loss = NULL;
    kd_trainer *trainer = NULL;
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.5), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_MOMENTUM, 0.9), KD_OK);
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, loss, NULL), KD_OK);
    kd_test_rng rng = {77};
    double before = accuracy(model, x, N, labels, NULL);
    assert_true(before < 0.9); /* all-zero parameters: one class for everything */
    for (int epoch = 0; epoch < 30; epoch++)
        train_epoch(trainer, x, HOST_IN, NULL, HOST_OUT, labels, N, 50, &rng);
    double after = accuracy(model, x, N, labels, NULL);
    if (after < 0.95)
        fail_msg("host linear model: training accuracy %g", after);
    assert_true(h.backward_calls == 30 * (N / 50));

    /* A failing callback fails the call, and the trainer's step leaves the parameters as
     * they were. */
    float logits[3 * HOST_OUT], saved[HOST_P];
    size_t calls;
    memcpy(saved, h.params, sizeof saved);
    h.fail_forward = 1;
    assert_int_equal(kd_model_forward(model, x, 2, KD_MODE_INFERENCE, logits), KD_ERROR_CALLBACK_FAILED);
    assert_int_equal(kd_trainer_step(trainer, x, 2, NULL, labels, NULL), KD_ERROR_CALLBACK_FAILED);
    h.fail_forward = 0;
    assert_int_equal(kd_model_forward(model, x, 2, KD_MODE_TRAINING, logits), KD_OK);
    h.fail_backward = 1;
    assert_int_equal(kd_model_backward(model, logits, 2), KD_ERROR_CALLBACK_FAILED);
    assert_int_equal(kd_trainer_step(trainer, x, 2, NULL, labels, NULL), KD_ERROR_CALLBACK_FAILED);
    assert_memory_equal(saved, h.params, sizeof saved);
    h.fail_backward = 0;
    h.null_parameters = 1;
    float *pointer = NULL;
    assert_int_equal(kd_model_parameters(model, &pointer), KD_ERROR_CALLBACK_FAILED);
    assert_null(pointer);
    assert_int_equal(kd_optimizer_step(opt, model), KD_ERROR_CALLBACK_FAILED);
    h.null_parameters = 0;
    h.null_gradients = 1;
    assert_int_equal(kd_model_gradients(model, &pointer), KD_ERROR_CALLBACK_FAILED);
    assert_null(pointer);
    assert_int_equal(kd_model_zero_gradients(model), KD_ERROR_CALLBACK_FAILED);
    assert_int_equal(kd_optimizer_step(opt, model), KD_ERROR_CALLBACK_FAILED);
    calls = h.backward_calls;
    assert_int_equal(kd_trainer_step(trainer, x, 2, NULL, labels, NULL), KD_ERROR_CALLBACK_FAILED);
    assert_int_equal(h.backward_calls, calls); /* nothing to accumulate into: no backward */
    h.null_gradients = 0;
    assert_memory_equal(saved, h.params, sizeof saved);

    /* Backward needs a training forward pass of the same rows, for host networks too. */
    assert_int_equal(kd_model_forward(model, x, 3, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_model_backward(model, logits, 2), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(kd_model_forward(model, x, 2, KD_MODE_INFERENCE, logits), KD_OK);
    calls = h.backward_calls;
    assert_int_equal(kd_model_backward(model, logits, 2), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(h.backward_calls, calls);

    /* A host network has no dense parameters. */
    double v;
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_MAX_NORM, 1.0), KD_ERROR_UNSUPPORTED);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_INPUT_DROPOUT, 0.1), KD_ERROR_UNSUPPORTED);
    assert_int_equal(kd_model_get(model, KD_MODEL_PARAM_MAX_NORM, &v), KD_ERROR_UNSUPPORTED);

    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

static void host_model_bad_callbacks(void **state)
{
    (void)state;
    host_linear *h = calloc(1, sizeof *h);
    assert_non_null(h);
    kd_model *sentinel = (kd_model *)(void *)h, *model = sentinel;
    kd_model_callbacks cb = host_callbacks();
    cb.struct_size = sizeof(kd_model_callbacks) - 1;
    assert_int_equal(kd_model_create_host(&model, &cb, h, 4, 3, 15, NULL), KD_ERROR_INVALID_ARGUMENT);
    cb.struct_size = 0;
    assert_int_equal(kd_model_create_host(&model, &cb, h, 4, 3, 15, NULL), KD_ERROR_INVALID_ARGUMENT);
    for (int which = 0; which < 4; which++) {
        cb = host_callbacks();
        if (which == 0)
            cb.forward = NULL;
        else if (which == 1)
            cb.backward = NULL;
        else if (which == 2)
            cb.parameters = NULL;
        else
            cb.gradients = NULL;
        assert_int_equal(kd_model_create_host(&model, &cb, h, 4, 3, 15, NULL),
                         KD_ERROR_INVALID_ARGUMENT);
    }
    cb = host_callbacks();
    assert_int_equal(kd_model_create_host(NULL, &cb, h, 4, 3, 15, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_create_host(&model, NULL, h, 4, 3, 15, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_create_host(&model, &cb, h, 0, 3, 15, NULL), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_create_host(&model, &cb, h, 4, 0, 15, NULL), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_create_host(&model, &cb, h, 4, 3, 0, NULL), KD_ERROR_ZERO_SIZE);
    kd_allocator bad = {sizeof(kd_allocator), NULL, kd_test_release, NULL};
    assert_int_equal(kd_model_create_host(&model, &cb, h, 4, 3, 15, &bad), KD_ERROR_INVALID_ARGUMENT);
    assert_ptr_equal(model, sentinel);

    /* A larger struct_size (a host built against a later header) is fine; the copy is used. */
    struct {
        kd_model_callbacks cb;
        void *later;
    } bigger = {host_callbacks(), NULL};
    bigger.cb.struct_size = sizeof bigger;
    assert_int_equal(kd_model_create_host(&model, &bigger.cb, h, 4, 3, 15, NULL), KD_OK);
    bigger.cb.forward = NULL; /* copied at creation: later changes do not matter */
    float x[4] = {1, 2, 3, 4}, z[3];
    assert_int_equal(kd_model_forward(model, x, 1, KD_MODE_INFERENCE, z), KD_OK);
    assert_int_equal(h->forward_calls, 1);
    kd_model_destroy(model);
    free(h);
}

/* --- 6. the dense network learns; distillation ---------------------------------------------- */

/* Three interleaved spiral arms, one and a half turns each, radius 0.1 to 1, with a little angular noise:
 * separable, far from linearly. */
static void make_spirals(float *x, int32_t *labels, size_t n, uint64_t seed)
{
    kd_test_rng rng = {seed};
    for (size_t i = 0; i < n; i++) {
        int32_t c = (int32_t)(i % 3);
        double r = kd_test_uniform(&rng, 0.1, 1.0);
        double angle = 2.0943951023931953 * c + 9.42477796076938 * r
                       + kd_test_uniform(&rng, -0.15, 0.15);
        x[2 * i] = (float)(r * cos(angle));
        x[2 * i + 1] = (float)(r * sin(angle));
        labels[i] = c;
    }
}

static void dense_learns_and_distils(void **state)
{
    (void)state;
    enum { N = 1000, C = 3 };
    static float x[2 * N], teacher_logits[N * C];
    static int32_t labels[N];
    make_spirals(x, labels, N, 4242);

    const size_t widths[] = {2, 32, 32, C};
    kd_model *teacher = NULL;
    kd_optimizer *opt = NULL;
    kd_loss *loss = NULL;
    kd_trainer *trainer = NULL;
    assert_int_equal(kd_model_create_dense(&teacher, widths, 4, 31337, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, teacher, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.05), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_MOMENTUM, 0.9), KD_OK);
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, teacher, opt, loss, NULL), KD_OK);
    kd_test_rng rng = {1};
    double acc = accuracy(teacher, x, N, labels, NULL);
    assert_true(acc < 0.8);
    int epoch = 0;
    for (; epoch < 200 && acc < 0.97; epoch++) {
        train_epoch(trainer, x, 2, NULL, C, labels, N, 32, &rng);
        if (epoch % 5 == 4)
            acc = accuracy(teacher, x, N, labels, NULL);
    }
    if (acc < 0.95)
        fail_msg("dense {2, 32, 32, 3} on spirals: %g after %d epochs", acc, epoch);
    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(opt);

    /* Distillation: a smaller student trained on the teacher's logits alone (alpha = 1, no
     * labels) agrees with the teacher's decisions. */
    assert_int_equal(kd_model_forward(teacher, x, N, KD_MODE_INFERENCE, teacher_logits), KD_OK);
    const size_t student_widths[] = {2, 16, 16, C};
    kd_model *student = NULL;
    assert_int_equal(kd_model_create_dense(&student, student_widths, 4, 99, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_ADAM, student, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.01), KD_OK);
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 1.0), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, 2.0), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, student, opt, loss, NULL), KD_OK);
    double agree = accuracy(student, x, N, NULL, teacher_logits);
    for (epoch = 0; epoch < 200 && agree < 0.95; epoch++) {
        train_epoch(trainer, x, 2, teacher_logits, C, NULL, N, 32, &rng);
        if (epoch % 5 == 4)
            agree = accuracy(student, x, N, NULL, teacher_logits);
    }
    if (agree < 0.90)
        fail_msg("student agrees with teacher on %g after %d epochs", agree, epoch);
    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(opt);
    kd_model_destroy(student);
    kd_model_destroy(teacher);
}

/* kd_trainer_step is forward (training), loss, zeroed gradients, backward and an optimizer
 * step: on twin models (same seed, dropout on) it gives exactly what those calls give by hand,
 * whatever the gradients held before, and reports the loss's values. */
static void trainer_step_equals_manual_pipeline(void **state)
{
    (void)state;
    enum { ROWS = 12, C = 4 };
    const size_t widths[] = {5, 9, C};
    kd_model *a = dropout_model(widths, 3, 21, 0.1, 0.3);
    kd_model *b = dropout_model(widths, 3, 21, 0.1, 0.3);
    const size_t p = kd_model_parameter_count(a);
    kd_optimizer *oa = NULL, *ob = NULL;
    assert_int_equal(kd_optimizer_create(&oa, KD_OPTIMIZER_ADAM, a, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&ob, KD_OPTIMIZER_ADAM, b, NULL), KD_OK);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, 3.0), KD_OK);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 0.7), KD_OK);
    kd_trainer *trainer = NULL;
    assert_int_equal(kd_trainer_create(&trainer, a, oa, loss, NULL), KD_OK);

    kd_test_rng rng = {31};
    float x[ROWS * 5], teacher[ROWS * C], logits[ROWS * C], grad[ROWS * C];
    int32_t labels[ROWS];
    for (int step = 0; step < 3; step++) {
        fill_normal_f(&rng, x, ROWS * 5, 1.0);
        fill_normal_f(&rng, teacher, ROWS * C, 2.0);
        for (size_t r = 0; r < ROWS; r++)
            labels[r] = (int32_t)(kd_test_rng_next(&rng) % C);
        /* Leftover gradients in the trainer's model must not matter. */
        fill_normal_f(&rng, model_grads(a), p, 5.0);
        float values[KD_LOSS_VALUE_COUNT], want_values[KD_LOSS_VALUE_COUNT];
        assert_int_equal(kd_trainer_step(trainer, x, ROWS, teacher, labels, values), KD_OK);

        assert_int_equal(kd_model_forward(b, x, ROWS, KD_MODE_TRAINING, logits), KD_OK);
        assert_int_equal(kd_loss_compute(loss, logits, C, teacher, C, labels, ROWS, C, want_values,
                                         grad, C),
                         KD_OK);
        assert_int_equal(kd_model_zero_gradients(b), KD_OK);
        assert_int_equal(kd_model_backward(b, grad, ROWS), KD_OK);
        assert_int_equal(kd_optimizer_step(ob, b), KD_OK);

        assert_memory_equal(model_params(a), model_params(b), p * sizeof(float));
        assert_memory_equal(model_grads(a), model_grads(b), p * sizeof(float));
        assert_memory_equal(values, want_values, sizeof values);
    }
    float *before = malloc(p * sizeof(float));
    assert_non_null(before);
    /* With per-row losses (reduction NONE) the trainer reports their sums. */
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_REDUCTION, KD_REDUCTION_NONE), KD_OK);
    float values[KD_LOSS_VALUE_COUNT], rows_values[ROWS * KD_LOSS_VALUE_COUNT];
    assert_int_equal(kd_trainer_step(trainer, x, ROWS, teacher, labels, values), KD_OK);
    assert_int_equal(kd_model_forward(b, x, ROWS, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_loss_compute(loss, logits, C, teacher, C, labels, ROWS, C, rows_values,
                                     NULL, 0),
                     KD_OK);
    for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++) {
        double sum = 0.0;
        for (size_t r = 0; r < ROWS; r++)
            sum += rows_values[r * KD_LOSS_VALUE_COUNT + (size_t)k];
        assert_float_equal(values[k], sum, 1e-5 * (1.0 + fabs(sum)));
    }
    /* values may be NULL with per-row losses too; the step still happens. */
    memcpy(before, model_params(a), p * sizeof(float));
    assert_int_equal(kd_trainer_step(trainer, x, ROWS, teacher, labels, NULL), KD_OK);
    assert_true(memcmp(before, model_params(a), p * sizeof(float)) != 0);
    free(before);

    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(ob);
    kd_optimizer_destroy(oa);
    kd_model_destroy(b);
    kd_model_destroy(a);
}

/* With SGD (plain or momentum, weight decay, max-norm) the trainer takes the optimizer's step
 * inside the backward pass; the parameters must follow the separate calls (forward, loss,
 * backward, kd_optimizer_step) to float rounding over several steps, and so must the momentum
 * buffer, seen through the next steps. Nesterov momentum is not fused and must match exactly. */
static void trainer_sgd_step_equals_manual_pipeline(void **state)
{
    (void)state;
    enum { ROWS = 16, C = 5, STEPS = 4 };
    const struct {
        double momentum, decay, nesterov, max_norm;
    } cases[] = {{0.9, 0.0, 0, 0.0}, {0.9, 1e-3, 0, 0.8}, {0.0, 0.0, 0, 0.0}, {0.0, 1e-2, 0, 0.8},
                 {0.9, 1e-3, 1, 0.8}};
    const size_t widths[] = {6, 11, 7, C};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        kd_model *m[2];
        kd_optimizer *o[2];
        for (int i = 0; i < 2; i++) {
            m[i] = dropout_model(widths, 4, 5, 0.1, 0.2);
            assert_int_equal(kd_model_set(m[i], KD_MODEL_PARAM_MAX_NORM, cases[k].max_norm), KD_OK);
            assert_int_equal(kd_optimizer_create(&o[i], KD_OPTIMIZER_SGD, m[i], NULL), KD_OK);
            assert_int_equal(kd_optimizer_set(o[i], KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.2), KD_OK);
            assert_int_equal(kd_optimizer_set(o[i], KD_OPTIMIZER_PARAM_MOMENTUM, cases[k].momentum),
                             KD_OK);
            assert_int_equal(kd_optimizer_set(o[i], KD_OPTIMIZER_PARAM_WEIGHT_DECAY, cases[k].decay),
                             KD_OK);
            assert_int_equal(kd_optimizer_set(o[i], KD_OPTIMIZER_PARAM_NESTEROV, cases[k].nesterov),
                             KD_OK);
        }
        kd_loss *loss = NULL;
        assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
        assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, 4.0), KD_OK);
        kd_trainer *trainer = NULL;
        assert_int_equal(kd_trainer_create(&trainer, m[0], o[0], loss, NULL), KD_OK);
        const size_t p = kd_model_parameter_count(m[0]);
        kd_test_rng rng = {77 + k};
        float x[ROWS * 6], teacher[ROWS * C], logits[ROWS * C], grad[ROWS * C];
        int32_t labels[ROWS];
        double moved = 0.0;
        for (int step = 0; step < STEPS; step++) {
            fill_normal_f(&rng, x, ROWS * 6, 1.0);
            fill_normal_f(&rng, teacher, ROWS * C, 3.0);
            for (size_t r = 0; r < ROWS; r++)
                labels[r] = (int32_t)(kd_test_rng_next(&rng) % C);
            float before = model_params(m[0])[0];
            assert_int_equal(kd_trainer_step(trainer, x, ROWS, teacher, labels, NULL), KD_OK);
            moved += fabs((double)model_params(m[0])[0] - before);
            assert_int_equal(kd_model_forward(m[1], x, ROWS, KD_MODE_TRAINING, logits), KD_OK);
            assert_int_equal(kd_loss_compute(loss, logits, C, teacher, C, labels, ROWS, C, NULL,
                                             grad, C),
                             KD_OK);
            assert_int_equal(kd_model_zero_gradients(m[1]), KD_OK);
            assert_int_equal(kd_model_backward(m[1], grad, ROWS), KD_OK);
            assert_int_equal(kd_optimizer_step(o[1], m[1]), KD_OK);
            const float *pa = model_params(m[0]), *pb = model_params(m[1]);
            if (cases[k].nesterov != 0)
                assert_memory_equal(pa, pb, p * sizeof(float));
            for (size_t i = 0; i < p; i++)
                if (fabsf(pa[i] - pb[i]) > 1e-5f * (1.0f + fabsf(pb[i])))
                    fail_msg("case %zu step %d parameter %zu: trainer %.9g, by hand %.9g", k, step,
                             i, (double)pa[i], (double)pb[i]);
        }
        assert_true(moved > 1e-4); /* the steps did change the parameters */
        if (cases[k].max_norm > 0.0) {
            /* Every unit's incoming weights obey the max-norm after the fused steps. */
            const float *w = model_params(m[0]);
            for (size_t l = 1; l < 4; l++) {
                for (size_t j = 0; j < widths[l]; j++, w += widths[l - 1]) {
                    double norm2 = 0.0;
                    for (size_t i = 0; i < widths[l - 1]; i++)
                        norm2 += (double)w[i] * w[i];
                    assert_true(sqrt(norm2) <= cases[k].max_norm * (1.0 + 1e-5));
                }
                w += widths[l];
            }
        }
        kd_trainer_destroy(trainer);
        kd_loss_destroy(loss);
        for (int i = 0; i < 2; i++) {
            kd_optimizer_destroy(o[i]);
            kd_model_destroy(m[i]);
        }
    }
}

/* --- 7. allocations ------------------------------------------------------------------------ */

static void no_allocation_per_step(void **state)
{
    (void)state;
    enum { ROWS = 64, C = 3 };
    kd_test_allocator c = {0};
    kd_allocator a;
    kd_test_allocator_hook(&c, &a);
    const size_t widths[] = {2, 32, 32, C};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    kd_loss *loss = NULL;
    kd_trainer *trainer = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 4, 5, &a), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_HIDDEN_DROPOUT, 0.2), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_MAX_NORM, 3.0), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_ADAM, model, &a), KD_OK);
    assert_int_equal(kd_loss_create(&loss, &a), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, loss, &a), KD_OK);
    assert_true(c.calls > 0); /* the allocator is really used */
    assert_int_equal(kd_trainer_reserve(trainer, ROWS), KD_OK);

    static float x[ROWS * 2], teacher[ROWS * C], logits[ROWS * C];
    static int32_t labels[ROWS];
    kd_test_rng rng = {9};
    fill_normal_f(&rng, x, ROWS * 2, 1.0);
    fill_normal_f(&rng, teacher, ROWS * C, 2.0);
    for (size_t i = 0; i < ROWS; i++)
        labels[i] = (int32_t)(i % C);
    const size_t allocations = c.calls, live = c.live;
    const size_t rows[10] = {64, 1, 17, 64, 33, 2, 64, 63, 8, 64};
    for (int s = 0; s < 10; s++) {
        float values[KD_LOSS_VALUE_COUNT];
        const float *t = s % 2 == 0 ? teacher : NULL; /* with and without a teacher */
        assert_int_equal(kd_trainer_step(trainer, x, rows[s], t, labels, values), KD_OK);
    }
    assert_int_equal(kd_model_forward(model, x, ROWS, KD_MODE_INFERENCE, logits), KD_OK);
    assert_int_equal(kd_model_forward(model, x, ROWS, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_model_backward(model, logits, ROWS), KD_OK);
    assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
    assert_int_equal(c.calls, allocations);
    assert_int_equal(c.live, live);

    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    assert_true(kd_test_allocator_clean(&c));
}

/* Failing the n-th allocation, for n = 1, 2, ...: each failure is KD_ERROR_OUT_OF_MEMORY from
 * the call that met it, with nothing leaked, until the whole sequence fits. */
static void allocation_failures(void **state)
{
    (void)state;
    enum { ROWS = 8, C = 3 };
    const size_t widths[] = {2, 6, 5, C};
    float x[ROWS * 2], teacher[ROWS * C], logits[ROWS * C];
    int32_t labels[ROWS];
    kd_test_rng rng = {10};
    fill_normal_f(&rng, x, ROWS * 2, 1.0);
    fill_normal_f(&rng, teacher, ROWS * C, 1.0);
    for (size_t i = 0; i < ROWS; i++)
        labels[i] = (int32_t)(i % C);
    size_t n = 1;
    for (;; n++) {
        assert_true(n < 1000); /* the walk ends */
        kd_test_allocator c = {.fail_at = n};
        kd_allocator a;
        kd_test_allocator_hook(&c, &a);
        kd_model *model = NULL;
        kd_optimizer *opt = NULL;
        kd_loss *loss = NULL;
        kd_trainer *trainer = NULL;
        kd_status status = kd_model_create_dense(&model, widths, 4, 1, &a);
        assert_true(status == KD_OK ? model != NULL : model == NULL);
        if (status == KD_OK) {
            status = kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, &a);
            assert_true(status == KD_OK ? opt != NULL : opt == NULL);
        }
        if (status == KD_OK) {
            status = kd_loss_create(&loss, &a);
            assert_true(status == KD_OK ? loss != NULL : loss == NULL);
        }
        if (status == KD_OK) {
            status = kd_trainer_create(&trainer, model, opt, loss, &a);
            assert_true(status == KD_OK ? trainer != NULL : trainer == NULL);
        }
        float before[128];
        if (status == KD_OK) {
            assert_true(kd_model_parameter_count(model) <= 128);
            memcpy(before, model_params(model), kd_model_parameter_count(model) * sizeof *before);
            status = kd_trainer_step(trainer, x, ROWS, teacher, labels, NULL);
            if (status != KD_OK) /* the step failed: parameters as they were */
                assert_memory_equal(before, model_params(model),
                                    kd_model_parameter_count(model) * sizeof *before);
        }
        kd_trainer_destroy(trainer);
        kd_loss_destroy(loss);
        kd_optimizer_destroy(opt);
        kd_model_destroy(model);
        if (!kd_test_allocator_clean(&c))
            fail_msg("allocation %zu failing: %zu blocks leaked (bad release %d, 0-byte request %d)",
                     n, c.live, c.bad_release, c.zero_request);
        if (status == KD_OK) {
            assert_true(c.calls < n); /* the failure point was never reached */
            break;
        }
        if (status != KD_ERROR_OUT_OF_MEMORY)
            fail_msg("allocation %zu failing: status %d", n, (int)status);
        assert_true(c.calls >= n);
    }
    assert_true(n > 6); /* model, optimizer, loss, trainer and the step's buffers */

    /* A forward pass that cannot grow its buffers: OOM, logits untouched, and no backward. */
    kd_test_allocator c = {0};
    kd_allocator a;
    kd_test_allocator_hook(&c, &a);
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 4, 1, &a), KD_OK);
    c.fail_at = c.calls + 1;
    kd_test_fill_sentinel(logits, ROWS * C);
    assert_int_equal(kd_model_forward(model, x, ROWS, KD_MODE_TRAINING, logits), KD_ERROR_OUT_OF_MEMORY);
    assert_true(kd_test_is_sentinel(logits, ROWS * C));
    assert_int_equal(kd_model_backward(model, logits, ROWS), KD_ERROR_SHAPE_MISMATCH);
    c.fail_at = c.calls + 1;
    assert_int_equal(kd_model_reserve(model, ROWS), KD_ERROR_OUT_OF_MEMORY);
    assert_int_equal(kd_model_forward(model, x, ROWS, KD_MODE_TRAINING, logits), KD_OK);
    kd_model_destroy(model);
    assert_true(kd_test_allocator_clean(&c));
}

/* --- 8. bad arguments ----------------------------------------------------------------------- */

static void bad_arguments(void **state)
{
    (void)state;
    const size_t widths[] = {3, 4, 2};
    kd_model *sentinel = (kd_model *)(void *)&sentinel, *model = sentinel;

    /* Creation. */
    assert_int_equal(kd_model_create_dense(NULL, widths, 3, 1, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_create_dense(&model, NULL, 3, 1, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_create_dense(&model, widths, 1, 1, NULL), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_create_dense(&model, widths, 0, 1, NULL), KD_ERROR_ZERO_SIZE);
    const size_t zero_first[] = {0, 4, 2}, zero_middle[] = {3, 0, 2}, zero_last[] = {3, 4, 0};
    assert_int_equal(kd_model_create_dense(&model, zero_first, 3, 1, NULL), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_create_dense(&model, zero_middle, 3, 1, NULL), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_create_dense(&model, zero_last, 3, 1, NULL), KD_ERROR_ZERO_SIZE);
    const size_t huge[] = {SIZE_MAX / 2, SIZE_MAX / 2};
    assert_int_equal(kd_model_create_dense(&model, huge, 2, 1, NULL), KD_ERROR_SIZE_OVERFLOW);
    const size_t max_in[] = {SIZE_MAX, 1};
    assert_int_equal(kd_model_create_dense(&model, max_in, 2, 1, NULL), KD_ERROR_SIZE_OVERFLOW);
    /* Each width fine, the product not: 2^32 x 2^32 weights. */
    const size_t product[] = {(size_t)1 << 32, (size_t)1 << 32};
    assert_int_equal(kd_model_create_dense(&model, product, 2, 1, NULL), KD_ERROR_SIZE_OVERFLOW);
    kd_allocator bad_size = {sizeof(kd_allocator) - 1, kd_test_allocate, kd_test_release, NULL};
    kd_allocator bad_release = {sizeof(kd_allocator), kd_test_allocate, NULL, NULL};
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, &bad_size), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, &bad_release), KD_ERROR_INVALID_ARGUMENT);
    assert_ptr_equal(model, sentinel);

    /* NULL handles: counts are 0, destroy is a no-op. */
    assert_int_equal(kd_model_input_count(NULL), 0);
    assert_int_equal(kd_model_output_count(NULL), 0);
    assert_int_equal(kd_model_parameter_count(NULL), 0);
    kd_model_destroy(NULL);
    kd_trainer_destroy(NULL);
    kd_optimizer_destroy(NULL);

    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, NULL), KD_OK);
    float x[5 * 3] = {0.5f, -1, 2, 1, 1, 1, -2, 0.25f, 3, 0, 0, 1, 2, 2, -1};
    float logits[5 * 2], g[5 * 2] = {1, 0, 0, 1, 1, 1, -1, 0, 0, -1};
    float *pointer = (float *)(void *)&pointer;

    /* Forward: errors leave the logits alone. */
    kd_test_fill_sentinel(logits, 10);
    assert_int_equal(kd_model_forward(NULL, x, 5, KD_MODE_INFERENCE, logits), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_forward(model, NULL, 5, KD_MODE_INFERENCE, logits), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_forward(model, x, 5, KD_MODE_INFERENCE, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_forward(model, x, 0, KD_MODE_INFERENCE, logits), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_forward(model, x, 0, KD_MODE_TRAINING, logits), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_forward(model, x, 5, (kd_mode)7, logits), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_model_forward(model, x, 5, (kd_mode)-1, logits), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_model_forward(model, x, SIZE_MAX, KD_MODE_TRAINING, logits), KD_ERROR_SIZE_OVERFLOW);
    assert_int_equal(kd_model_forward(model, x, SIZE_MAX / 8, KD_MODE_INFERENCE, logits),
                     KD_ERROR_SIZE_OVERFLOW);
    assert_true(kd_test_is_sentinel(logits, 10));

    /* Backward needs a training forward pass of the same rows, the last forward pass. */
    assert_int_equal(kd_model_backward(model, g, 5), KD_ERROR_SHAPE_MISMATCH); /* none yet */
    assert_int_equal(kd_model_forward(model, x, 5, KD_MODE_INFERENCE, logits), KD_OK);
    assert_int_equal(kd_model_backward(model, g, 5), KD_ERROR_SHAPE_MISMATCH); /* inference only */
    assert_int_equal(kd_model_forward(model, x, 5, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_model_backward(NULL, g, 5), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_backward(model, NULL, 5), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_backward(model, g, 4), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(kd_model_backward(model, g, 6), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(kd_model_backward(model, g, 0), KD_ERROR_SHAPE_MISMATCH);
    float *grads = model_grads(model);
    for (size_t i = 0; i < kd_model_parameter_count(model); i++)
        assert_true(grads[i] == 0.0f); /* the refused calls added nothing */
    assert_int_equal(kd_model_backward(model, g, 5), KD_OK);
    assert_int_equal(kd_model_backward(model, g, 5), KD_OK); /* may repeat (accumulating) */
    /* An inference pass (even of fewer rows) ends what the training pass kept... */
    assert_int_equal(kd_model_forward(model, x, 2, KD_MODE_INFERENCE, logits), KD_OK);
    assert_int_equal(kd_model_backward(model, g, 5), KD_ERROR_SHAPE_MISMATCH);
    /* ... and a training pass of other rows replaces it. */
    assert_int_equal(kd_model_forward(model, x, 5, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_model_forward(model, x, 3, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_model_backward(model, g, 5), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(kd_model_backward(model, g, 3), KD_OK);

    /* Parameters, gradients, zeroing, reserve. */
    assert_int_equal(kd_model_parameters(NULL, &pointer), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_parameters(model, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_gradients(NULL, &pointer), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_gradients(model, NULL), KD_ERROR_NULL_POINTER);
    assert_ptr_equal(pointer, (float *)(void *)&pointer);
    assert_int_equal(kd_model_zero_gradients(NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_reserve(NULL, 4), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_model_reserve(model, 0), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_model_reserve(model, SIZE_MAX), KD_ERROR_SIZE_OVERFLOW);
    assert_int_equal(kd_model_reserve(model, 100), KD_OK);

    /* Trainer. */
    kd_optimizer *opt = NULL;
    kd_loss *loss = NULL;
    kd_trainer *trainer = (kd_trainer *)(void *)&trainer, *trainer_sentinel = trainer;
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_trainer_create(NULL, model, opt, loss, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_create(&trainer, NULL, opt, loss, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_create(&trainer, model, NULL, loss, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, NULL, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, loss, &bad_size), KD_ERROR_INVALID_ARGUMENT);
    const size_t other_widths[] = {3, 5, 2};
    kd_model *other = NULL;
    kd_optimizer *other_opt = NULL;
    assert_int_equal(kd_model_create_dense(&other, other_widths, 3, 1, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&other_opt, KD_OPTIMIZER_SGD, other, NULL), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, model, other_opt, loss, NULL), KD_ERROR_SHAPE_MISMATCH);
    assert_ptr_equal(trainer, trainer_sentinel);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, loss, NULL), KD_OK);

    const int32_t labels[5] = {0, 1, 1, 0, 1}, bad_labels[5] = {0, 1, 2, 0, 1};
    const size_t p = kd_model_parameter_count(model);
    float before[64];
    assert_true(p <= 64);
    memcpy(before, model_params(model), p * sizeof *before);
    float values[KD_LOSS_VALUE_COUNT];
    assert_int_equal(kd_trainer_step(NULL, x, 5, NULL, labels, values), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_step(trainer, NULL, 5, NULL, labels, values), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_step(trainer, x, 0, NULL, labels, values), KD_ERROR_ZERO_SIZE);
    /* No teacher and no labels: nothing to learn from. */
    assert_int_equal(kd_trainer_step(trainer, x, 5, NULL, NULL, values), KD_ERROR_NULL_POINTER);
    /* A teacher but no labels while alpha < 1. */
    assert_int_equal(kd_trainer_step(trainer, x, 5, g, NULL, values), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_step(trainer, x, 5, NULL, bad_labels, values), KD_ERROR_INVALID_LABEL);
    float nan_teacher[10];
    memcpy(nan_teacher, g, sizeof nan_teacher);
    nan_teacher[3] = NAN;
    assert_int_equal(kd_trainer_step(trainer, x, 5, nan_teacher, labels, values), KD_ERROR_NONFINITE_INPUT);
    assert_memory_equal(before, model_params(model), p * sizeof *before);
    assert_int_equal(kd_trainer_reserve(NULL, 4), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_trainer_reserve(trainer, 0), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_trainer_reserve(trainer, SIZE_MAX), KD_ERROR_SIZE_OVERFLOW);
    /* And a good step does change them. */
    assert_int_equal(kd_trainer_step(trainer, x, 5, NULL, labels, values), KD_OK);
    assert_memory_not_equal(before, model_params(model), p * sizeof *before);

    kd_trainer_destroy(trainer);
    kd_optimizer_destroy(other_opt);
    kd_model_destroy(other);
    kd_loss_destroy(loss);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

/* Large inference batches go through in chunks; results match row-at-a-time passes. */
static void inference_in_chunks(void **state)
{
    (void)state;
    enum { N = 700 };
    const size_t widths[] = {3, 8, 2};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 8, NULL), KD_OK);
    static float x[N * 3], all[N * 2];
    kd_test_rng rng = {11};
    fill_normal_f(&rng, x, N * 3, 1.0);
    randomise_biases(model, widths, 3, &rng);
    assert_int_equal(kd_model_forward(model, x, N, KD_MODE_INFERENCE, all), KD_OK);
    double params[64], want[2];
    to_double(model_params(model), params, kd_model_parameter_count(model));
    for (size_t r = 0; r < N; r++) {
        double in[3];
        to_double(x + r * 3, in, 3);
        reference_forward(widths, 3, params, in, 1, NULL, want);
        check_close_f(all + r * 2, want, 2, 1e-5, 1e-5, "chunked logits");
    }
    kd_model_destroy(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dense_gradients_match_finite_differences),
        cmocka_unit_test(dense_gradients_larger_net),
        cmocka_unit_test(dropout_off_in_inference),
        cmocka_unit_test(dropout_deterministic),
        cmocka_unit_test(dropout_gradients_match_finite_differences),
        cmocka_unit_test(dropout_expectation_matches_inference),
        cmocka_unit_test(max_norm_constrains_rows_not_biases),
        cmocka_unit_test(optimizer_update_rules),
        cmocka_unit_test(adam_defaults_first_step),
        cmocka_unit_test(optimizer_parameters),
        cmocka_unit_test(model_parameters_get_set),
        cmocka_unit_test(host_model_trains_through_trainer),
        cmocka_unit_test(host_model_bad_callbacks),
        cmocka_unit_test(dense_learns_and_distils),
        cmocka_unit_test(trainer_step_equals_manual_pipeline),
        cmocka_unit_test(trainer_sgd_step_equals_manual_pipeline),
        cmocka_unit_test(no_allocation_per_step),
        cmocka_unit_test(allocation_failures),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(inference_in_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
