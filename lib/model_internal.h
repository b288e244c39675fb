/* The kd_model handle's layout, shared by the files that implement models, optimizers,
 * trainers and checkpoints. SPDX-License-Identifier: MIT */
#ifndef KD_LIB_MODEL_INTERNAL_H
#define KD_LIB_MODEL_INTERNAL_H

#include <stddef.h>

#include "kd/model.h"
#include "rng.h"

typedef enum kd_model_kind {
    KD_MODEL_DENSE = 0,
    KD_MODEL_HOST = 1
} kd_model_kind;

enum { KD_MODEL_PARAM_COUNT = KD_MODEL_PARAM_MAX_NORM + 1 };

/* The built-in dense network. */
typedef struct kd_dense {
    size_t layer_count; /* number of widths: layers of weights are 1 .. layer_count - 1 */
    size_t *widths;
    size_t max_width;
    double param[KD_MODEL_PARAM_COUNT];
    kd_rng rng;
    float *parameters, *gradients;
    /* Batch buffers for up to rows_capacity rows: the activations of layers 0 .. L-1 (layer 0
     * is the input after dropout) and two delta buffers for the backward pass. */
    size_t rows_capacity;
    float *buffer;
    float **activation;
    float *delta[2];
    float hidden_scale; /* 1 / (1 - dropout) of the last training forward pass, or 1 */
} kd_dense;

typedef struct kd_host {
    kd_model_callbacks callbacks;
    void *user;
} kd_host;

struct kd_model {
    kd_allocator allocator;
    kd_model_kind kind;
    size_t inputs, outputs, parameter_count;
    size_t trained_rows; /* rows of the last training-mode forward pass; 0 if none since */
    kd_dense dense;
    kd_host host;
};

/* Dense network operations behind the kd_model_* entry points (arguments validated). */
kd_status kd_dense_init(kd_model *model, const size_t *widths, size_t layer_count, uint64_t seed);
void kd_dense_release(kd_model *model);
kd_status kd_dense_reserve(kd_model *model, size_t rows);
kd_status kd_dense_forward(kd_model *model, const float *inputs, size_t rows, kd_mode mode,
                           float *logits);
/* Where a backward pass puts each layer's gradient G (weights and biases), and whether it then
 * takes a plain or momentum SGD step on that layer right away, while the layer is in cache:
 *   target = beta * target + G            (target: parameter_count floats, the parameters'
 *                                          layout; beta 1 accumulates, 0 overwrites)
 *   target += decay * parameters          (if step is not 0; decay may be 0)
 *   parameters -= step * target, then the max-norm constraint (if step is not 0). */
typedef struct kd_dense_sink {
    float *target;
    float beta, decay, step;
} kd_dense_sink;

void kd_dense_backward(kd_model *model, const float *grad_logits, size_t rows,
                       const kd_dense_sink *sink);
/* Rescales each unit's incoming weights to the max-norm, if one is set. */
void kd_dense_constrain(kd_model *model);

/* The model's parameter and gradient arrays, or NULL if a host callback returned NULL. */
float *kd_model_parameter_array(kd_model *model);
float *kd_model_gradient_array(kd_model *model);

#endif /* KD_LIB_MODEL_INTERNAL_H */
