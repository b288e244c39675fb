/* The kd_optimizer handle's layout, shared with the checkpoint code.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_OPTIMIZER_INTERNAL_H
#define KD_LIB_OPTIMIZER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "kd/optimizer.h"
#include "model_internal.h"

enum { KD_OPTIMIZER_PARAM_COUNT = KD_OPTIMIZER_PARAM_EPSILON + 1 };

struct kd_optimizer {
    kd_allocator allocator;
    kd_optimizer_kind kind;
    size_t parameter_count;
    double param[KD_OPTIMIZER_PARAM_COUNT];
    uint64_t steps;
    /* SGD: the momentum buffer (parameter_count floats); Adam: the first then the second
     * moments (2 x parameter_count). */
    float *state;
};

/* Floats of state per parameter for a kind (1 or 2). */
size_t kd_optimizer_state_width(kd_optimizer_kind kind);

/* Creates an optimizer for a parameter vector of the given size, with default parameters and
 * zero state. kind must be valid. */
kd_status kd_optimizer_new(kd_optimizer **optimizer, kd_optimizer_kind kind,
                           size_t parameter_count, const kd_allocator *allocator);

/* Sets every parameter and the step count from a checkpoint, as kd_optimizer_set() would
 * (parameters the kind does not use must hold their defaults); any step count is one that
 * steps reach (the count saturates at UINT64_MAX). KD_ERROR_INVALID_ARGUMENT (the optimizer's
 * parameters are then partly set) if a parameter is invalid. */
kd_status kd_optimizer_restore(kd_optimizer *optimizer, const double *params, uint64_t steps);

/* 1 if the state (momentum or moments) is one that steps from a new optimizer can reach with
 * the step count it has: every value finite; all +0.0 while the step count is 0; Adam's second
 * moments with the sign bit clear. 0 otherwise. */
int kd_optimizer_state_is_reachable(const kd_optimizer *optimizer);

/* If this optimizer's next step on `model` (a built-in network of its size) can run inside the
 * backward pass (SGD, plain or with momentum, not Nesterov): fills *sink so that
 * kd_dense_backward() takes exactly that step, counts the step, and returns 1. Otherwise
 * returns 0 and changes nothing. */
int kd_optimizer_fuse(kd_optimizer *optimizer, kd_model *model, kd_dense_sink *sink);

#endif /* KD_LIB_OPTIMIZER_INTERNAL_H */
