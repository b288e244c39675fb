/*
 * libkd — optimizers: SGD with momentum (optionally Nesterov) and weight decay, and Adam.
 *
 * An optimizer holds its state (momentum, Adam moments, step count) for one model's parameter
 * vector and updates that model from its gradients. Both follow PyTorch's torch.optim.SGD and
 * torch.optim.Adam update rules (weight decay adds decay * w to the gradient). The learning
 * rate can be changed between steps, so hosts can schedule it. After updating a dense network
 * the step enforces the network's max-norm constraint, if set.
 *
 * Threads: an optimizer is used by one thread at a time, with its model.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_OPTIMIZER_H
#define KD_OPTIMIZER_H

#include <stddef.h>

#include "kd/allocator.h"
#include "kd/export.h"
#include "kd/model.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kd_optimizer kd_optimizer;

typedef enum kd_optimizer_kind {
    /* v = momentum v + g;  w -= lr (nesterov ? g + momentum v : v),  g = grad + decay w */
    KD_OPTIMIZER_SGD = 0,
    /* Adam with bias correction: m, v moments with beta1, beta2; w -= lr m^ / (sqrt(v^) + eps) */
    KD_OPTIMIZER_ADAM = 1
} kd_optimizer_kind;

/* Parameters, set one at a time as doubles; kd_optimizer_param_bounds() gives the ranges. */
typedef enum kd_optimizer_param {
    /* [0, 1e6]. Default 0.01 for SGD, 0.001 for Adam. */
    KD_OPTIMIZER_PARAM_LEARNING_RATE = 0,
    /* SGD momentum: [0, 0.9999]. Default 0. */
    KD_OPTIMIZER_PARAM_MOMENTUM = 1,
    /* SGD: 1 for Nesterov momentum, 0 for classical. Default 0. */
    KD_OPTIMIZER_PARAM_NESTEROV = 2,
    /* L2 weight decay added to the gradient: [0, 1e6]. Default 0. */
    KD_OPTIMIZER_PARAM_WEIGHT_DECAY = 3,
    /* Adam beta1, beta2: [0, 0.9999999]. Defaults 0.9, 0.999. */
    KD_OPTIMIZER_PARAM_BETA1 = 4,
    KD_OPTIMIZER_PARAM_BETA2 = 5,
    /* Adam epsilon: [1e-30, 1]. Default 1e-8. */
    KD_OPTIMIZER_PARAM_EPSILON = 6
} kd_optimizer_param;

/* Creates an optimizer of the given kind for `model`'s parameter vector (its state starts at
 * zero). The model is not kept: pass it to every kd_optimizer_step(). Returns KD_OK (*optimizer
 * owns the handle), KD_ERROR_NULL_POINTER, KD_ERROR_INVALID_ARGUMENT (kind or allocator),
 * KD_ERROR_SIZE_OVERFLOW (state too large to address), KD_ERROR_OUT_OF_MEMORY. */
KD_API kd_status kd_optimizer_create(kd_optimizer **optimizer, kd_optimizer_kind kind,
                                     const kd_model *model, const kd_allocator *allocator);

/* Destroys an optimizer. NULL is a no-op. */
KD_API void kd_optimizer_destroy(kd_optimizer *optimizer);

/* Sets / reads a parameter. KD_ERROR_INVALID_ARGUMENT for an unknown parameter, one that the
 * kind does not use, or a value out of bounds (parameter unchanged); KD_ERROR_NULL_POINTER. */
KD_API kd_status kd_optimizer_set(kd_optimizer *optimizer, kd_optimizer_param param, double value);
KD_API kd_status kd_optimizer_get(const kd_optimizer *optimizer, kd_optimizer_param param,
                                  double *value);

/* The bounds kd_optimizer_set() accepts (either pointer may be NULL). Thread-safe. */
KD_API kd_status kd_optimizer_param_bounds(kd_optimizer_param param, double *min, double *max);

/* The optimizer's kind, or -1 for NULL. */
KD_API int kd_optimizer_kind_of(const kd_optimizer *optimizer);

/* One update of the model's parameters from its current gradients (which are left as they
 * are), then the model's max-norm constraint. Returns KD_OK, KD_ERROR_NULL_POINTER,
 * KD_ERROR_SHAPE_MISMATCH (a model with another parameter count), KD_ERROR_CALLBACK_FAILED.
 * Allocates nothing. */
KD_API kd_status kd_optimizer_step(kd_optimizer *optimizer, kd_model *model);

#ifdef __cplusplus
}
#endif

#endif /* KD_OPTIMIZER_H */
