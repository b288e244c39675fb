/*
 * libkd — model handles: a built-in dense network on CBLAS, or a host's own network.
 *
 * A kd_model is the student (or teacher) network as libkd sees it: a function from
 * `rows x inputs` floats to `rows x outputs` logits, with its parameters and their gradients as
 * flat float arrays. Two kinds stand behind the one handle type:
 *
 *   - the built-in dense network (kd_model_create_dense): any list of layer widths, ReLU hidden
 *     layers, linear output logits, dropout on the inputs and the hidden layers, an optional
 *     max-norm constraint on each unit's incoming weights, He initialisation from an explicit
 *     seed; all matrix work through cblas_sgemm / cblas_sgemv;
 *   - a host network (kd_model_create_host): the host's callbacks do the work.
 *
 * Everything in libkd that takes a model (optimizers, the trainer) works the same on both.
 *
 * Threads: a model is used by one thread at a time; the library starts no threads of its own
 * (the BLAS may use its own). Results are deterministic for a given seed, batch order and BLAS
 * thread count.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_MODEL_H
#define KD_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "kd/allocator.h"
#include "kd/export.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kd_model kd_model;

/* Forward pass mode. Dropout is applied only in training mode, which also keeps what
 * kd_model_backward() needs. */
typedef enum kd_mode {
    KD_MODE_INFERENCE = 0,
    KD_MODE_TRAINING = 1
} kd_mode;

/* Parameters of a built-in dense network, set one at a time (a host network has none). */
typedef enum kd_model_param {
    /* Probability of dropping each input in training mode: [0, 0.95]. Default 0. Both dropout
     * rates take effect rounded to a multiple of 2^-16. */
    KD_MODEL_PARAM_INPUT_DROPOUT = 0,
    /* Probability of dropping each hidden unit in training mode: [0, 0.95]. Default 0. */
    KD_MODEL_PARAM_HIDDEN_DROPOUT = 1,
    /* Largest L2 norm of each unit's incoming weight vector, enforced after every optimizer step
     * by rescaling; 0 turns the constraint off: [0, 1e30]. Default 0. */
    KD_MODEL_PARAM_MAX_NORM = 2
} kd_model_param;

/* The callbacks of a host network. Set struct_size to sizeof(kd_model_callbacks): later
 * versions may append callbacks and read only those a host's struct_size covers. Every
 * callback returns 0 on success; anything else makes the libkd call return
 * KD_ERROR_CALLBACK_FAILED. They are called only from the thread using the model. */
typedef struct kd_model_callbacks {
    size_t struct_size;
    /* logits (rows x outputs, row-major) = the network applied to inputs (rows x inputs).
     * In KD_MODE_TRAINING the host keeps what its backward pass needs. */
    int (*forward)(void *user, const float *inputs, size_t rows, kd_mode mode, float *logits);
    /* Adds to the host's parameter gradients the gradient of the loss, given grad_logits
     * (rows x outputs) = d loss / d logits of the last training-mode forward pass. */
    int (*backward)(void *user, const float *grad_logits, size_t rows);
    /* The host's parameters and gradients, each `parameter_count` contiguous floats that stay
     * valid and in place for the model's lifetime. */
    float *(*parameters)(void *user);
    float *(*gradients)(void *user);
} kd_model_callbacks;

/* Creates a dense network with layer_count layer widths: widths[0] inputs, widths[1] ...
 * widths[layer_count - 2] ReLU hidden units, widths[layer_count - 1] output logits
 * (layer_count >= 2, every width > 0). Weights are drawn from N(0, 2 / fan_in) (He) with the
 * model's own generator seeded by `seed`; biases start at 0. allocator: NULL for malloc/free.
 * Returns KD_OK (*model owns the handle), KD_ERROR_NULL_POINTER, KD_ERROR_ZERO_SIZE (a width
 * of 0, or layer_count < 2), KD_ERROR_SIZE_OVERFLOW, KD_ERROR_INVALID_ARGUMENT (allocator),
 * KD_ERROR_OUT_OF_MEMORY. */
KD_API kd_status kd_model_create_dense(kd_model **model, const size_t *widths, size_t layer_count,
                                       uint64_t seed, const kd_allocator *allocator);

/* Wraps a host network of the given sizes (all > 0) behind a kd_model. The callbacks are
 * copied; `user` is passed to each and must outlive the model. Returns KD_OK,
 * KD_ERROR_NULL_POINTER, KD_ERROR_ZERO_SIZE, KD_ERROR_INVALID_ARGUMENT (a struct_size too small
 * or a NULL callback), KD_ERROR_OUT_OF_MEMORY. */
KD_API kd_status kd_model_create_host(kd_model **model, const kd_model_callbacks *callbacks,
                                      void *user, size_t inputs, size_t outputs,
                                      size_t parameter_count, const kd_allocator *allocator);

/* Destroys a model and everything it allocated. NULL is a no-op. */
KD_API void kd_model_destroy(kd_model *model);

/* Sizes of a model: inputs per row, output logits per row, parameters. 0 for NULL. */
KD_API size_t kd_model_input_count(const kd_model *model);
KD_API size_t kd_model_output_count(const kd_model *model);
KD_API size_t kd_model_parameter_count(const kd_model *model);

/* Sets / reads one parameter of a dense network. KD_ERROR_INVALID_ARGUMENT for an unknown
 * parameter or a value out of its bounds (parameter unchanged), KD_ERROR_UNSUPPORTED on a host
 * network, KD_ERROR_NULL_POINTER. */
KD_API kd_status kd_model_set(kd_model *model, kd_model_param param, double value);
KD_API kd_status kd_model_get(const kd_model *model, kd_model_param param, double *value);

/* The bounds kd_model_set() accepts (either pointer may be NULL). Thread-safe. */
KD_API kd_status kd_model_param_bounds(kd_model_param param, double *min, double *max);

/* logits (rows x outputs) = the model applied to inputs (rows x inputs), row-major, packed.
 * Training mode applies dropout and keeps the activations for kd_model_backward(). The model's
 * buffers grow to the largest batch seen (or reserved with kd_model_reserve): later calls of
 * at most that many rows allocate nothing. Returns KD_OK, KD_ERROR_NULL_POINTER,
 * KD_ERROR_ZERO_SIZE, KD_ERROR_SIZE_OVERFLOW, KD_ERROR_INVALID_ARGUMENT (mode),
 * KD_ERROR_OUT_OF_MEMORY, KD_ERROR_CALLBACK_FAILED; logits untouched on failure. Inputs are
 * not checked for NaN (they flow through as IEEE arithmetic does). */
KD_API kd_status kd_model_forward(kd_model *model, const float *inputs, size_t rows, kd_mode mode,
                                  float *logits);

/* Adds to the model's gradients the gradient of a loss given grad_logits = d loss / d logits
 * (rows x outputs) for the batch of the last training-mode forward pass, whose row count `rows`
 * must repeat. Returns KD_OK, KD_ERROR_NULL_POINTER, KD_ERROR_SHAPE_MISMATCH (no training
 * forward pass before, or another row count), KD_ERROR_CALLBACK_FAILED. */
KD_API kd_status kd_model_backward(kd_model *model, const float *grad_logits, size_t rows);

/* Sets every gradient to 0. KD_ERROR_NULL_POINTER, KD_ERROR_CALLBACK_FAILED. */
KD_API kd_status kd_model_zero_gradients(kd_model *model);

/* The model's parameters / gradients as one flat array of kd_model_parameter_count() floats,
 * owned by the model and valid until it is destroyed: hosts may read and write them (e.g. to
 * all-reduce gradients across processes or run their own optimizer). For a dense network the
 * layout is, layer after layer, the weights (out x in, row-major) then the biases.
 * KD_ERROR_NULL_POINTER, KD_ERROR_CALLBACK_FAILED (a host callback returned NULL). */
KD_API kd_status kd_model_parameters(kd_model *model, float **parameters);
KD_API kd_status kd_model_gradients(kd_model *model, float **gradients);

/* Grows the model's batch buffers to `rows` rows now, so that forward and backward passes of up
 * to that many rows never allocate. KD_ERROR_NULL_POINTER, KD_ERROR_ZERO_SIZE,
 * KD_ERROR_SIZE_OVERFLOW, KD_ERROR_OUT_OF_MEMORY. A no-op for host networks. */
KD_API kd_status kd_model_reserve(kd_model *model, size_t rows);

#ifdef __cplusplus
}
#endif

#endif /* KD_MODEL_H */
