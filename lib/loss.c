/* The kd_loss handle: creation, parameters and scratch memory. SPDX-License-Identifier: MIT */
#include <math.h>
#include <stdint.h>

#include "alloc.h"
#include "loss_internal.h"

typedef struct param_spec {
    double min, max, initial;
    int whole; /* integer or enum parameter */
} param_spec;

static const param_spec param_specs[KD_LOSS_PARAM_COUNT] = {
    [KD_LOSS_PARAM_TEMPERATURE] = {1e-30, 1e30, 1.0, 0},
    [KD_LOSS_PARAM_ALPHA] = {0.0, 1.0, 0.5, 0},
    [KD_LOSS_PARAM_DIVERGENCE] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_LOGIT_MSE, KD_DIVERGENCE_KL, 1},
    [KD_LOSS_PARAM_SCALE_T_SQUARED] = {0.0, 1.0, 1.0, 1},
    [KD_LOSS_PARAM_REDUCTION] = {KD_REDUCTION_MEAN, KD_REDUCTION_NONE, KD_REDUCTION_MEAN, 1},
    [KD_LOSS_PARAM_IGNORE_LABEL] = {INT32_MIN, INT32_MAX, -100.0, 1},
    [KD_LOSS_PARAM_JSD_BETA] = {0.0, 1.0, 0.5, 0},
    [KD_LOSS_PARAM_TEACHER_KIND] = {KD_TEACHER_LOGITS, KD_TEACHER_PROBABILITIES, KD_TEACHER_LOGITS, 1},
    [KD_LOSS_PARAM_ENSEMBLE_MODE] = {KD_ENSEMBLE_ARITHMETIC, KD_ENSEMBLE_GEOMETRIC,
                                     KD_ENSEMBLE_ARITHMETIC, 1},
    [KD_LOSS_PARAM_THREADS] = {1.0, KD_LOSS_MAX_THREADS, 1.0, 1},
};

static int known_param(kd_loss_param param)
{
    return (int)param >= 0 && (int)param < KD_LOSS_PARAM_COUNT;
}

kd_status kd_loss_create(kd_loss **loss, const kd_allocator *allocator)
{
    if (loss == NULL)
        return KD_ERROR_NULL_POINTER;
    kd_allocator resolved;
    kd_status status = kd_allocator_resolve(allocator, &resolved);
    if (status != KD_OK)
        return status;
    kd_loss *created = kd_alloc_array(&resolved, 1, sizeof *created);
    if (created == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    created->allocator = resolved;
    for (int p = 0; p < KD_LOSS_PARAM_COUNT; p++)
        created->param[p] = param_specs[p].initial;
    created->kernels = kd_fast_best();
    created->scratch = NULL;
    created->capacity = 0;
    created->slots = 0;
    created->row_info = NULL;
    created->row_values = NULL;
    created->row_capacity = 0;
    created->pool = NULL;
    *loss = created;
    return KD_OK;
}

void kd_loss_destroy(kd_loss *loss)
{
    if (loss == NULL)
        return;
    kd_allocator allocator = loss->allocator;
    kd_pool_destroy(loss->pool, &allocator);
    kd_free(&allocator, loss->row_values);
    kd_free(&allocator, loss->row_info);
    kd_free(&allocator, loss->scratch);
    kd_free(&allocator, loss);
}

kd_status kd_loss_param_bounds(kd_loss_param param, double *min, double *max)
{
    if (!known_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    if (min != NULL)
        *min = param_specs[param].min;
    if (max != NULL)
        *max = param_specs[param].max;
    return KD_OK;
}

kd_status kd_loss_set(kd_loss *loss, kd_loss_param param, double value)
{
    if (loss == NULL)
        return KD_ERROR_NULL_POINTER;
    if (!known_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    const param_spec *spec = &param_specs[param];
    if (!(value >= spec->min && value <= spec->max) || (spec->whole && value != floor(value)))
        return KD_ERROR_INVALID_ARGUMENT;
    loss->param[param] = value;
    return KD_OK;
}

kd_status kd_loss_get(const kd_loss *loss, kd_loss_param param, double *value)
{
    if (loss == NULL || value == NULL)
        return KD_ERROR_NULL_POINTER;
    if (!known_param(param))
        return KD_ERROR_INVALID_ARGUMENT;
    *value = loss->param[param];
    return KD_OK;
}

size_t kd_loss_threads(const kd_loss *loss)
{
    return (size_t)loss->param[KD_LOSS_PARAM_THREADS];
}

kd_status kd_loss_ensure_scratch(kd_loss *loss, size_t classes)
{
    const size_t slots = kd_loss_threads(loss);
    if (classes <= loss->capacity && slots <= loss->slots)
        return KD_OK;
    classes = classes > loss->capacity ? classes : loss->capacity;
    if (classes > SIZE_MAX / 2 / slots)
        return KD_ERROR_OUT_OF_MEMORY;
    double *grown = kd_alloc_array(&loss->allocator, 2 * classes * slots, sizeof *grown);
    if (grown == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    if (loss->row_info == NULL) {
        loss->row_info = kd_alloc_array(&loss->allocator, KD_LOSS_ROW_INFO_ROWS,
                                        sizeof *loss->row_info);
        if (loss->row_info == NULL) {
            kd_free(&loss->allocator, grown);
            return KD_ERROR_OUT_OF_MEMORY;
        }
    }
    kd_free(&loss->allocator, loss->scratch);
    loss->scratch = grown;
    loss->capacity = classes;
    loss->slots = slots;
    return KD_OK;
}

kd_status kd_loss_ensure_row_values(kd_loss *loss, size_t rows)
{
    if (rows <= loss->row_capacity)
        return KD_OK;
    double *grown = kd_alloc_array(&loss->allocator, rows, KD_LOSS_VALUE_COUNT * sizeof *grown);
    if (grown == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    kd_free(&loss->allocator, loss->row_values);
    loss->row_values = grown;
    loss->row_capacity = rows;
    return KD_OK;
}

kd_status kd_loss_ensure_pool(kd_loss *loss, size_t threads)
{
    if (loss->pool != NULL && kd_pool_threads(loss->pool) == threads)
        return KD_OK;
    kd_pool_destroy(loss->pool, &loss->allocator);
    loss->pool = NULL;
    return kd_pool_create(&loss->pool, &loss->allocator, threads);
}

void kd_loss_use_kernels(kd_loss *loss, const kd_fast_kernels *kernels)
{
    loss->kernels = kernels;
}

kd_status kd_loss_reserve(kd_loss *loss, size_t classes)
{
    if (loss == NULL)
        return KD_ERROR_NULL_POINTER;
    if (classes == 0)
        return KD_ERROR_ZERO_SIZE;
    if (classes > SIZE_MAX / 2 / sizeof(double))
        return KD_ERROR_SIZE_OVERFLOW;
    return kd_loss_ensure_scratch(loss, classes);
}
