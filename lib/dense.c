/* The built-in dense network: ReLU hidden layers, linear logits, dropout, max-norm, He
 * initialisation, all matrix products through CBLAS. SPDX-License-Identifier: MIT */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "model_internal.h"

/* Inference passes over larger batches run in chunks of this many rows (or of the reserved
 * capacity, if larger), so that they never grow the activation buffers without bound. */
enum { INFERENCE_CHUNK_ROWS = 256 };

static size_t layers(const kd_dense *d) { return d->layer_count - 1; }

/* Offset of layer l's weights (l = 1 .. L) in the parameter vector; its biases follow them. */
static size_t weight_offset(const kd_dense *d, size_t l)
{
    size_t offset = 0;
    for (size_t k = 1; k < l; k++)
        offset += d->widths[k] * (d->widths[k - 1] + 1);
    return offset;
}

kd_status kd_dense_init(kd_model *model, const size_t *widths, size_t layer_count, uint64_t seed)
{
    kd_dense *d = &model->dense;
    const kd_allocator *a = &model->allocator;
    d->layer_count = layer_count;
    d->widths = kd_alloc_array(a, layer_count, sizeof *d->widths);
    d->activation = kd_alloc_array(a, layer_count, sizeof *d->activation);
    d->parameters = kd_alloc_array(a, model->parameter_count, sizeof *d->parameters);
    d->gradients = kd_alloc_array(a, model->parameter_count, sizeof *d->gradients);
    if (d->widths == NULL || d->activation == NULL || d->parameters == NULL || d->gradients == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    memcpy(d->widths, widths, layer_count * sizeof *widths);
    d->max_width = 0;
    for (size_t l = 0; l < layer_count; l++)
        d->max_width = widths[l] > d->max_width ? widths[l] : d->max_width;
    d->hidden_scale = 1.0f;

    /* He initialisation: weights ~ N(0, 2 / fan_in), biases 0. */
    kd_rng_seed(&d->rng, seed);
    memset(d->gradients, 0, model->parameter_count * sizeof *d->gradients);
    float *p = d->parameters;
    for (size_t l = 1; l < layer_count; l++) {
        double sigma = sqrt(2.0 / (double)widths[l - 1]);
        size_t weights = widths[l] * widths[l - 1];
        for (size_t i = 0; i < weights; i++)
            *p++ = (float)(sigma * kd_rng_normal(&d->rng));
        for (size_t i = 0; i < widths[l]; i++)
            *p++ = 0.0f;
    }
    return KD_OK;
}

void kd_dense_release(kd_model *model)
{
    kd_dense *d = &model->dense;
    const kd_allocator *a = &model->allocator;
    kd_free(a, d->buffer);
    kd_free(a, d->gradients);
    kd_free(a, d->parameters);
    kd_free(a, d->activation);
    kd_free(a, d->widths);
}

kd_status kd_dense_reserve(kd_model *model, size_t rows)
{
    kd_dense *d = &model->dense;
    if (rows <= d->rows_capacity)
        return KD_OK;
    /* Activations of layers 0 .. L-1 and two deltas of max_width. The model's
     * creation bounded every width so that these products fit once rows passed check_batch. */
    size_t per_row = 2 * d->max_width;
    for (size_t l = 0; l < layers(d); l++)
        per_row += d->widths[l];
    if (rows > SIZE_MAX / sizeof(float) / per_row)
        return KD_ERROR_SIZE_OVERFLOW;
    float *buffer = kd_alloc_array(&model->allocator, rows * per_row, sizeof *buffer);
    if (buffer == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    kd_free(&model->allocator, d->buffer);
    d->buffer = buffer;
    d->rows_capacity = rows;
    for (size_t l = 0; l < layers(d); l++) {
        d->activation[l] = buffer;
        buffer += rows * d->widths[l];
    }
    d->delta[0] = buffer;
    d->delta[1] = buffer + rows * d->max_width;
    model->trained_rows = 0;
    return KD_OK;
}

/* Inverted dropout in place: each value is kept with probability 1 - rate and scaled by
 * 1 / (1 - rate), so expectations match inference. Each 64-bit draw decides four values, 16
 * bits each: a value is dropped when its bits fall below rate * 2^16 (rounded). The bits of a
 * block of values are drawn first, so that the masking loop vectorises. A dropped value is
 * multiplied by 0: NaN and infinities stay non-finite (NaN) rather than become 0. */
enum { DROPOUT_BLOCK = 256 }; /* a multiple of 4 */

static void dropout(kd_rng *rng, float *x, size_t n, double rate)
{
    const float scale = (float)(1.0 / (1.0 - rate));
    const uint16_t threshold = (uint16_t)lround(rate * 65536.0); /* rate <= 0.95 */
    uint16_t bits[DROPOUT_BLOCK];
    for (size_t start = 0; start < n; start += DROPOUT_BLOCK) {
        const size_t count = n - start < DROPOUT_BLOCK ? n - start : DROPOUT_BLOCK;
        for (size_t k = 0; k < count; k += 4) {
            const uint64_t draw = kd_rng_next(rng);
            for (int j = 0; j < 4; j++)
                bits[k + (size_t)j] = (uint16_t)(draw >> (16 * j));
        }
        float *y = x + start;
        for (size_t k = 0; k < count; k++) /* a factor, not a branch: vectorises */
            y[k] *= bits[k] < threshold ? 0.0f : scale;
    }
}

/* out (rows x widths[l]) = in (rows x widths[l-1]) W_l^T + b_l. */
static void affine(const kd_dense *d, size_t l, const float *in, size_t rows, float *out)
{
    const size_t n_in = d->widths[l - 1], n_out = d->widths[l];
    const float *w = d->parameters + weight_offset(d, l);
    const float *b = w + n_out * n_in;
    for (size_t r = 0; r < rows; r++)
        memcpy(out + r * n_out, b, n_out * sizeof *out);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)n_out, (int)n_in, 1.0f,
                in, (int)n_in, w, (int)n_in, 1.0f, out, (int)n_out);
}

/* One pass over at most rows_capacity rows. */
static void forward_rows(kd_model *model, const float *inputs, size_t rows, kd_mode mode,
                         float *logits)
{
    kd_dense *d = &model->dense;
    const int training = mode == KD_MODE_TRAINING;
    const double input_rate = training ? d->param[KD_MODEL_PARAM_INPUT_DROPOUT] : 0.0;
    const double hidden_rate = training ? d->param[KD_MODEL_PARAM_HIDDEN_DROPOUT] : 0.0;

    memcpy(d->activation[0], inputs, rows * d->widths[0] * sizeof *inputs);
    if (input_rate > 0.0)
        dropout(&d->rng, d->activation[0], rows * d->widths[0], input_rate);
    for (size_t l = 1; l <= layers(d); l++) {
        float *out = l == layers(d) ? logits : d->activation[l];
        affine(d, l, d->activation[l - 1], rows, out);
        if (l == layers(d))
            break;
        size_t n = rows * d->widths[l];
        for (size_t i = 0; i < n; i++) /* ReLU; NaN propagates */
            out[i] = out[i] < 0.0f ? 0.0f : out[i];
        if (hidden_rate > 0.0)
            dropout(&d->rng, out, n, hidden_rate);
    }
    if (training)
        d->hidden_scale = (float)(1.0 / (1.0 - hidden_rate));
}

kd_status kd_dense_forward(kd_model *model, const float *inputs, size_t rows, kd_mode mode,
                           float *logits)
{
    kd_dense *d = &model->dense;
    size_t need = rows;
    if (mode == KD_MODE_INFERENCE && rows > d->rows_capacity) {
        if (d->rows_capacity >= INFERENCE_CHUNK_ROWS)
            need = d->rows_capacity;
        else if (rows > INFERENCE_CHUNK_ROWS)
            need = INFERENCE_CHUNK_ROWS;
    }
    kd_status status = kd_dense_reserve(model, need);
    if (status != KD_OK)
        return status;
    const size_t chunk = d->rows_capacity;
    for (size_t start = 0; start < rows; start += chunk) {
        size_t count = rows - start < chunk ? rows - start : chunk;
        forward_rows(model, inputs + start * model->inputs, count, mode,
                     logits + start * model->outputs);
    }
    return KD_OK;
}

/* db = beta db + the column sums of G (rows x n); beta 0 overwrites whatever db held. A plain
 * loop: BLAS's sgemv against a column of ones spends more time waking its threads than adding. */
static void add_column_sums(const float *g, size_t rows, size_t n, float beta, float *db)
{
    for (size_t j = 0; j < n; j++)
        db[j] = beta == 0.0f ? 0.0f : beta * db[j];
    for (size_t r = 0; r < rows; r++, g += n)
        for (size_t j = 0; j < n; j++)
            db[j] += g[j];
}

/* Rescales each unit's incoming weights of layer l (n_out rows of n_in at w) to the max-norm. */
static void constrain_layer(const kd_dense *d, size_t l, float *w)
{
    const double max_norm = d->param[KD_MODEL_PARAM_MAX_NORM];
    const size_t n_in = d->widths[l - 1], n_out = d->widths[l];
    for (size_t j = 0; j < n_out; j++, w += n_in) {
        const double norm2 = cblas_sdot((int)n_in, w, 1, w, 1);
        if (norm2 > max_norm * max_norm)
            cblas_sscal((int)n_in, (float)(max_norm / sqrt(norm2)), w, 1);
    }
}

void kd_dense_backward(kd_model *model, const float *grad_logits, size_t rows,
                       const kd_dense_sink *sink)
{
    kd_dense *d = &model->dense;
    const float *g = grad_logits;
    for (size_t l = layers(d); l >= 1; l--) {
        const size_t n_in = d->widths[l - 1], n_out = d->widths[l];
        const size_t offset = weight_offset(d, l);
        float *w = d->parameters + offset;
        float *dw = sink->target + offset;
        float *db = dw + n_out * n_in;
        const float *a = d->activation[l - 1];
        const float *g_layer = g;
        if (l > 1) {
            /* The previous layer's delta, (G W) through ReLU and dropout, from the weights
             * before any update. A unit's activation is positive exactly when it was active
             * and kept; its derivative is then the dropout scale. */
            float *delta = d->delta[l % 2];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)n_in,
                        (int)n_out, 1.0f, g, (int)n_out, w, (int)n_in, 0.0f, delta, (int)n_in);
            const size_t n = rows * n_in;
            const float scale = d->hidden_scale;
            for (size_t i = 0; i < n; i++)
                delta[i] *= a[i] > 0.0f ? scale : 0.0f;
            g = delta;
        }
        /* dW = beta dW + G^T A,  db = beta db + G^T 1 */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_out, (int)n_in, (int)rows,
                    1.0f, g_layer, (int)n_out, a, (int)n_in, sink->beta, dw, (int)n_in);
        add_column_sums(g_layer, rows, n_out, sink->beta, db);
        if (sink->step == 0.0f)
            continue;
        const int layer_size = (int)(n_out * (n_in + 1));
        if (sink->decay != 0.0f)
            cblas_saxpy(layer_size, sink->decay, w, 1, dw, 1);
        cblas_saxpy(layer_size, -sink->step, dw, 1, w, 1);
        if (d->param[KD_MODEL_PARAM_MAX_NORM] > 0.0)
            constrain_layer(d, l, w);
    }
}

void kd_dense_constrain(kd_model *model)
{
    kd_dense *d = &model->dense;
    if (d->param[KD_MODEL_PARAM_MAX_NORM] <= 0.0)
        return;
    for (size_t l = 1; l <= layers(d); l++)
        constrain_layer(d, l, d->parameters + weight_offset(d, l));
}
