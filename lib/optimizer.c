/* SGD (momentum, Nesterov, weight decay) and Adam, as PyTorch's torch.optim defines them.
 * SPDX-License-Identifier: MIT */
#include <math.h>
#include <string.h>

#include "alloc.h"
#include "model_internal.h"
#include "optimizer_internal.h"

typedef struct optimizer_param_spec {
    double min, max;
    double initial[2]; /* per kind: SGD, Adam */
    unsigned used_by;  /* bit k: kind k uses it */
    int whole;
} optimizer_param_spec;

#define SGD_BIT (1u << KD_OPTIMIZER_SGD)
#define ADAM_BIT (1u << KD_OPTIMIZER_ADAM)

static const optimizer_param_spec specs[KD_OPTIMIZER_PARAM_COUNT] = {
    [KD_OPTIMIZER_PARAM_LEARNING_RATE] = {0.0, 1e6, {0.01, 0.001}, SGD_BIT | ADAM_BIT, 0},
    [KD_OPTIMIZER_PARAM_MOMENTUM] = {0.0, 0.9999, {0.0, 0.0}, SGD_BIT, 0},
    [KD_OPTIMIZER_PARAM_NESTEROV] = {0.0, 1.0, {0.0, 0.0}, SGD_BIT, 1},
    [KD_OPTIMIZER_PARAM_WEIGHT_DECAY] = {0.0, 1e6, {0.0, 0.0}, SGD_BIT | ADAM_BIT, 0},
    [KD_OPTIMIZER_PARAM_BETA1] = {0.0, 0.9999999, {0.0, 0.9}, ADAM_BIT, 0},
    [KD_OPTIMIZER_PARAM_BETA2] = {0.0, 0.9999999, {0.0, 0.999}, ADAM_BIT, 0},
    [KD_OPTIMIZER_PARAM_EPSILON] = {1e-30, 1.0, {0.0, 1e-8}, ADAM_BIT, 0},
};

size_t kd_optimizer_state_width(kd_optimizer_kind kind) { return kind == KD_OPTIMIZER_ADAM ? 2 : 1; }

kd_status kd_optimizer_new(kd_optimizer **optimizer, kd_optimizer_kind kind,
                           size_t parameter_count, const kd_allocator *allocator)
{
    const size_t width = kd_optimizer_state_width(kind);
    if (parameter_count > SIZE_MAX / sizeof(float) / width)
        return KD_ERROR_SIZE_OVERFLOW;
    kd_allocator resolved;
    void *block;
    kd_status status = kd_alloc_handle(allocator, sizeof(kd_optimizer), &resolved, &block);
    if (status != KD_OK)
        return status;
    kd_optimizer *created = block;
    float *state = kd_alloc_array(&resolved, parameter_count * width, sizeof *state);
    if (state == NULL) {
        kd_free(&resolved, created);
        return KD_ERROR_OUT_OF_MEMORY;
    }
    memset(state, 0, parameter_count * width * sizeof *state);
    created->allocator = resolved;
    created->kind = kind;
    created->parameter_count = parameter_count;
    for (int p = 0; p < KD_OPTIMIZER_PARAM_COUNT; p++)
        created->param[p] = specs[p].initial[kind];
    created->steps = 0;
    created->state = state;
    *optimizer = created;
    return KD_OK;
}

kd_status kd_optimizer_create(kd_optimizer **optimizer, kd_optimizer_kind kind,
                              const kd_model *model, const kd_allocator *allocator)
{
    if (optimizer == NULL || model == NULL)
        return KD_ERROR_NULL_POINTER;
    if (kind != KD_OPTIMIZER_SGD && kind != KD_OPTIMIZER_ADAM)
        return KD_ERROR_INVALID_ARGUMENT;
    return kd_optimizer_new(optimizer, kind, model->parameter_count, allocator);
}

void kd_optimizer_destroy(kd_optimizer *optimizer)
{
    if (optimizer == NULL)
        return;
    kd_allocator allocator = optimizer->allocator;
    kd_free(&allocator, optimizer->state);
    kd_free(&allocator, optimizer);
}

int kd_optimizer_kind_of(const kd_optimizer *optimizer)
{
    return optimizer == NULL ? -1 : (int)optimizer->kind;
}

static int known_param(kd_optimizer_param param)
{
    return (int)param >= 0 && (int)param < KD_OPTIMIZER_PARAM_COUNT;
}

kd_status kd_optimizer_param_bounds(kd_optimizer_param param, double *min, double *max)
{
    if (!known_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    if (min != NULL)
        *min = specs[param].min;
    if (max != NULL)
        *max = specs[param].max;
    return KD_OK;
}

static int usable(const kd_optimizer *optimizer, kd_optimizer_param param)
{
    return known_param(param) && (specs[param].used_by & (1u << optimizer->kind)) != 0;
}

kd_status kd_optimizer_set(kd_optimizer *optimizer, kd_optimizer_param param, double value)
{
    if (optimizer == NULL)
        return KD_ERROR_NULL_POINTER;
    if (!usable(optimizer, param))
        return KD_ERROR_INVALID_ARGUMENT;
    const optimizer_param_spec *spec = &specs[param];
    if (!(value >= spec->min && value <= spec->max) || (spec->whole && value != floor(value)))
        return KD_ERROR_INVALID_ARGUMENT;
    optimizer->param[param] = value;
    return KD_OK;
}

kd_status kd_optimizer_get(const kd_optimizer *optimizer, kd_optimizer_param param, double *value)
{
    if (optimizer == NULL || value == NULL)
        return KD_ERROR_NULL_POINTER;
    if (!usable(optimizer, param))
        return KD_ERROR_INVALID_ARGUMENT;
    *value = optimizer->param[param];
    return KD_OK;
}

static void sgd_step(kd_optimizer *o, float *w, const float *grad)
{
    const float lr = (float)o->param[KD_OPTIMIZER_PARAM_LEARNING_RATE];
    const float momentum = (float)o->param[KD_OPTIMIZER_PARAM_MOMENTUM];
    const float decay = (float)o->param[KD_OPTIMIZER_PARAM_WEIGHT_DECAY];
    const int nesterov = o->param[KD_OPTIMIZER_PARAM_NESTEROV] != 0.0;
    float *v = o->state;
    for (size_t i = 0; i < o->parameter_count; i++) {
        float g = grad[i] + decay * w[i];
        if (momentum != 0.0f) {
            v[i] = momentum * v[i] + g;
            g = nesterov ? g + momentum * v[i] : v[i];
        }
        w[i] -= lr * g;
    }
}

static void adam_step(kd_optimizer *o, float *w, const float *grad)
{
    const double beta1 = o->param[KD_OPTIMIZER_PARAM_BETA1];
    const double beta2 = o->param[KD_OPTIMIZER_PARAM_BETA2];
    const double t = (double)o->steps;
    const float step_size = (float)(o->param[KD_OPTIMIZER_PARAM_LEARNING_RATE] / (1.0 - pow(beta1, t)));
    const float inv_sqrt_bc2 = (float)(1.0 / sqrt(1.0 - pow(beta2, t)));
    const float decay = (float)o->param[KD_OPTIMIZER_PARAM_WEIGHT_DECAY];
    const float eps = (float)o->param[KD_OPTIMIZER_PARAM_EPSILON];
    const float b1 = (float)beta1, b2 = (float)beta2;
    float *m = o->state, *v = o->state + o->parameter_count;
    for (size_t i = 0; i < o->parameter_count; i++) {
        float g = grad[i] + decay * w[i];
        m[i] = b1 * m[i] + (1.0f - b1) * g;
        v[i] = b2 * v[i] + (1.0f - b2) * g * g;
        w[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

kd_status kd_optimizer_restore(kd_optimizer *optimizer, const double *params, uint64_t steps)
{
    for (int p = 0; p < KD_OPTIMIZER_PARAM_COUNT; p++) {
        if (usable(optimizer, (kd_optimizer_param)p)) {
            if (kd_optimizer_set(optimizer, (kd_optimizer_param)p, params[p]) != KD_OK)
                return KD_ERROR_INVALID_ARGUMENT;
        } else if (params[p] != specs[p].initial[optimizer->kind]) {
            return KD_ERROR_INVALID_ARGUMENT;
        }
    }
    optimizer->steps = steps;
    return KD_OK;
}

int kd_optimizer_state_is_reachable(const kd_optimizer *optimizer)
{
    const size_t n = optimizer->parameter_count;
    const int adam = optimizer->kind == KD_OPTIMIZER_ADAM, fresh = optimizer->steps == 0;
    for (size_t i = 0; i < n * kd_optimizer_state_width(optimizer->kind); i++) {
        const float x = optimizer->state[i];
        /* Before the first step: kd_optimizer_new()'s +0.0. Adam's second moments (from i = n)
         * are beta2 v + (1 - beta2) g^2 from +0.0: never negative, never -0.0. */
        const int sign_clear = fresh || (adam && i >= n);
        if (!isfinite(x) || (sign_clear && signbit(x)) || (fresh && x != 0.0f))
            return 0;
    }
    return 1;
}

static void count_step(kd_optimizer *optimizer)
{
    if (optimizer->steps < UINT64_MAX)
        optimizer->steps++;
}

int kd_optimizer_fuse(kd_optimizer *optimizer, kd_model *model, kd_dense_sink *sink)
{
    if (optimizer->kind != KD_OPTIMIZER_SGD || optimizer->param[KD_OPTIMIZER_PARAM_NESTEROV] != 0.0)
        return 0;
    const double momentum = optimizer->param[KD_OPTIMIZER_PARAM_MOMENTUM];
    /* Without momentum the gradient array holds the decayed gradient; with it, the momentum
     * buffer takes the gradient directly (v = momentum v + g + decay w, w -= rate v). */
    sink->target = momentum != 0.0 ? optimizer->state : model->dense.gradients;
    sink->beta = (float)momentum;
    sink->decay = (float)optimizer->param[KD_OPTIMIZER_PARAM_WEIGHT_DECAY];
    sink->step = (float)optimizer->param[KD_OPTIMIZER_PARAM_LEARNING_RATE];
    count_step(optimizer);
    return 1;
}

kd_status kd_optimizer_step(kd_optimizer *optimizer, kd_model *model)
{
    if (optimizer == NULL || model == NULL)
        return KD_ERROR_NULL_POINTER;
    if (model->parameter_count != optimizer->parameter_count)
        return KD_ERROR_SHAPE_MISMATCH;
    float *w = kd_model_parameter_array(model);
    const float *grad = kd_model_gradient_array(model);
    if (w == NULL || grad == NULL)
        return KD_ERROR_CALLBACK_FAILED;
    count_step(optimizer);
    if (optimizer->kind == KD_OPTIMIZER_ADAM)
        adam_step(optimizer, w, grad);
    else
        sgd_step(optimizer, w, grad);
    if (model->kind == KD_MODEL_DENSE)
        kd_dense_constrain(model);
    return KD_OK;
}
