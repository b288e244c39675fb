/* kd_model: the entry points common to dense and host networks. SPDX-License-Identifier: MIT */
#include <stdint.h>
#include <string.h>

#include "alloc.h"
#include "model_internal.h"

static const struct {
    double min, max, initial;
} model_param_specs[KD_MODEL_PARAM_COUNT] = {
    [KD_MODEL_PARAM_INPUT_DROPOUT] = {0.0, 0.95, 0.0},
    [KD_MODEL_PARAM_HIDDEN_DROPOUT] = {0.0, 0.95, 0.0},
    [KD_MODEL_PARAM_MAX_NORM] = {0.0, 1e30, 0.0},
};

static kd_status new_model(kd_model **out, const kd_allocator *allocator, kd_model_kind kind)
{
    kd_allocator resolved;
    void *block;
    kd_status status = kd_alloc_handle(allocator, sizeof(kd_model), &resolved, &block);
    if (status != KD_OK)
        return status;
    kd_model *model = block;
    model->allocator = resolved;
    model->kind = kind;
    *out = model;
    return KD_OK;
}

kd_status kd_model_create_dense(kd_model **model, const size_t *widths, size_t layer_count,
                                uint64_t seed, const kd_allocator *allocator)
{
    if (model == NULL || widths == NULL)
        return KD_ERROR_NULL_POINTER;
    if (layer_count < 2)
        return KD_ERROR_ZERO_SIZE;
    /* Every size the network derives from its widths must fit, counted in floats. */
    const size_t limit = (size_t)PTRDIFF_MAX / sizeof(float);
    size_t parameters = 0;
    for (size_t l = 0; l < layer_count; l++) {
        if (widths[l] == 0)
            return KD_ERROR_ZERO_SIZE;
        if (widths[l] > limit / 4)
            return KD_ERROR_SIZE_OVERFLOW;
        if (l == 0)
            continue;
        size_t fan_in = widths[l - 1] + 1;
        if (widths[l] > (limit - parameters) / fan_in)
            return KD_ERROR_SIZE_OVERFLOW;
        parameters += widths[l] * fan_in;
    }
    kd_model *created;
    kd_status status = new_model(&created, allocator, KD_MODEL_DENSE);
    if (status != KD_OK)
        return status;
    created->inputs = widths[0];
    created->outputs = widths[layer_count - 1];
    created->parameter_count = parameters;
    for (int p = 0; p < KD_MODEL_PARAM_COUNT; p++)
        created->dense.param[p] = model_param_specs[p].initial;
    status = kd_dense_init(created, widths, layer_count, seed);
    if (status != KD_OK) {
        kd_model_destroy(created);
        return status;
    }
    *model = created;
    return KD_OK;
}

kd_status kd_model_create_host(kd_model **model, const kd_model_callbacks *callbacks, void *user,
                               size_t inputs, size_t outputs, size_t parameter_count,
                               const kd_allocator *allocator)
{
    if (model == NULL || callbacks == NULL)
        return KD_ERROR_NULL_POINTER;
    if (inputs == 0 || outputs == 0 || parameter_count == 0)
        return KD_ERROR_ZERO_SIZE;
    if (callbacks->struct_size < sizeof(kd_model_callbacks) || callbacks->forward == NULL
        || callbacks->backward == NULL || callbacks->parameters == NULL
        || callbacks->gradients == NULL)
        return KD_ERROR_INVALID_ARGUMENT;
    kd_model *created;
    kd_status status = new_model(&created, allocator, KD_MODEL_HOST);
    if (status != KD_OK)
        return status;
    created->inputs = inputs;
    created->outputs = outputs;
    created->parameter_count = parameter_count;
    created->host.callbacks = *callbacks;
    created->host.callbacks.struct_size = sizeof(kd_model_callbacks);
    created->host.user = user;
    *model = created;
    return KD_OK;
}

void kd_model_destroy(kd_model *model)
{
    if (model == NULL)
        return;
    if (model->kind == KD_MODEL_DENSE)
        kd_dense_release(model);
    kd_allocator allocator = model->allocator;
    kd_free(&allocator, model);
}

size_t kd_model_input_count(const kd_model *model) { return model == NULL ? 0 : model->inputs; }

size_t kd_model_output_count(const kd_model *model) { return model == NULL ? 0 : model->outputs; }

size_t kd_model_parameter_count(const kd_model *model)
{
    return model == NULL ? 0 : model->parameter_count;
}

static int known_model_param(kd_model_param param)
{
    return (int)param >= 0 && (int)param < KD_MODEL_PARAM_COUNT;
}

kd_status kd_model_param_bounds(kd_model_param param, double *min, double *max)
{
    if (!known_model_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    if (min != NULL)
        *min = model_param_specs[param].min;
    if (max != NULL)
        *max = model_param_specs[param].max;
    return KD_OK;
}

kd_status kd_model_set(kd_model *model, kd_model_param param, double value)
{
    if (model == NULL)
        return KD_ERROR_NULL_POINTER;
    if (!known_model_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    if (model->kind != KD_MODEL_DENSE)
        return KD_ERROR_UNSUPPORTED;
    if (!(value >= model_param_specs[param].min && value <= model_param_specs[param].max))
        return KD_ERROR_INVALID_ARGUMENT;
    model->dense.param[param] = value;
    return KD_OK;
}

kd_status kd_model_get(const kd_model *model, kd_model_param param, double *value)
{
    if (model == NULL || value == NULL)
        return KD_ERROR_NULL_POINTER;
    if (!known_model_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    if (model->kind != KD_MODEL_DENSE)
        return KD_ERROR_UNSUPPORTED;
    *value = model->dense.param[param];
    return KD_OK;
}

/* Rows x width floats of a batch must be addressable. */
static kd_status check_batch(const kd_model *model, size_t rows)
{
    if (rows == 0)
        return KD_ERROR_ZERO_SIZE;
    size_t width = model->inputs > model->outputs ? model->inputs : model->outputs;
    if (model->kind == KD_MODEL_DENSE && model->dense.max_width > width)
        width = model->dense.max_width;
    if (rows > (size_t)PTRDIFF_MAX / sizeof(float) / width)
        return KD_ERROR_SIZE_OVERFLOW;
    return KD_OK;
}

kd_status kd_model_reserve(kd_model *model, size_t rows)
{
    if (model == NULL)
        return KD_ERROR_NULL_POINTER;
    kd_status status = check_batch(model, rows);
    if (status != KD_OK || model->kind != KD_MODEL_DENSE)
        return status;
    return kd_dense_reserve(model, rows);
}

kd_status kd_model_forward(kd_model *model, const float *inputs, size_t rows, kd_mode mode,
                           float *logits)
{
    if (model == NULL || inputs == NULL || logits == NULL)
        return KD_ERROR_NULL_POINTER;
    if (mode != KD_MODE_INFERENCE && mode != KD_MODE_TRAINING)
        return KD_ERROR_INVALID_ARGUMENT;
    kd_status status = check_batch(model, rows);
    if (status != KD_OK)
        return status;
    if (model->kind == KD_MODEL_DENSE)
        status = kd_dense_forward(model, inputs, rows, mode, logits);
    else if (model->host.callbacks.forward(model->host.user, inputs, rows, mode, logits) != 0)
        status = KD_ERROR_CALLBACK_FAILED;
    model->trained_rows = status == KD_OK && mode == KD_MODE_TRAINING ? rows : 0;
    return status;
}

kd_status kd_model_backward(kd_model *model, const float *grad_logits, size_t rows)
{
    if (model == NULL || grad_logits == NULL)
        return KD_ERROR_NULL_POINTER;
    if (rows == 0 || rows != model->trained_rows)
        return KD_ERROR_SHAPE_MISMATCH;
    if (model->kind == KD_MODEL_DENSE) {
        const kd_dense_sink accumulate = {model->dense.gradients, 1.0f, 0.0f, 0.0f};
        kd_dense_backward(model, grad_logits, rows, &accumulate);
        return KD_OK;
    }
    return model->host.callbacks.backward(model->host.user, grad_logits, rows) == 0
               ? KD_OK
               : KD_ERROR_CALLBACK_FAILED;
}

float *kd_model_parameter_array(kd_model *model)
{
    return model->kind == KD_MODEL_DENSE ? model->dense.parameters
                                         : model->host.callbacks.parameters(model->host.user);
}

float *kd_model_gradient_array(kd_model *model)
{
    return model->kind == KD_MODEL_DENSE ? model->dense.gradients
                                         : model->host.callbacks.gradients(model->host.user);
}

kd_status kd_model_zero_gradients(kd_model *model)
{
    if (model == NULL)
        return KD_ERROR_NULL_POINTER;
    float *gradients = kd_model_gradient_array(model);
    if (gradients == NULL)
        return KD_ERROR_CALLBACK_FAILED;
    memset(gradients, 0, model->parameter_count * sizeof *gradients);
    return KD_OK;
}

/* Hands out one of the model's arrays through `getter`. */
static kd_status give_array(kd_model *model, float **out, float *(*getter)(kd_model *))
{
    if (model == NULL || out == NULL)
        return KD_ERROR_NULL_POINTER;
    float *array = getter(model);
    if (array == NULL)
        return KD_ERROR_CALLBACK_FAILED;
    *out = array;
    return KD_OK;
}

kd_status kd_model_parameters(kd_model *model, float **parameters)
{
    return give_array(model, parameters, kd_model_parameter_array);
}

kd_status kd_model_gradients(kd_model *model, float **gradients)
{
    return give_array(model, gradients, kd_model_gradient_array);
}
