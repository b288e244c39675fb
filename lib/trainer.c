/* kd_trainer: forward, loss, backward and optimizer step in one call.
 * SPDX-License-Identifier: MIT */
#include "kd/trainer.h"

#include <stdint.h>

#include "alloc.h"
#include "loss_internal.h"
#include "model_internal.h"
#include "optimizer_internal.h"

struct kd_trainer {
    kd_allocator allocator;
    kd_model *student;
    kd_optimizer *optimizer;
    kd_loss *loss;
    size_t rows_capacity;
    size_t last_rows; /* rows of the last successful step, 0 before */
    float *buffer; /* logits and their gradient (rows x outputs each), per-row values */
    float *logits, *grad, *row_values;
};

kd_status kd_trainer_create(kd_trainer **trainer, kd_model *student, kd_optimizer *optimizer,
                            kd_loss *loss, const kd_allocator *allocator)
{
    if (trainer == NULL || student == NULL || optimizer == NULL || loss == NULL)
        return KD_ERROR_NULL_POINTER;
    if (optimizer->parameter_count != student->parameter_count)
        return KD_ERROR_SHAPE_MISMATCH;
    kd_allocator resolved;
    void *block;
    kd_status status = kd_alloc_handle(allocator, sizeof(kd_trainer), &resolved, &block);
    if (status != KD_OK)
        return status;
    kd_trainer *created = block;
    *created = (kd_trainer){resolved, student, optimizer, loss, 0, 0, NULL, NULL, NULL, NULL};
    *trainer = created;
    return KD_OK;
}

void kd_trainer_destroy(kd_trainer *trainer)
{
    if (trainer == NULL)
        return;
    kd_allocator allocator = trainer->allocator;
    kd_free(&allocator, trainer->buffer);
    kd_free(&allocator, trainer);
}

static kd_status grow(kd_trainer *trainer, size_t rows)
{
    if (rows <= trainer->rows_capacity)
        return KD_OK;
    const size_t outputs = trainer->student->outputs;
    const size_t per_row = 2 * outputs + KD_LOSS_VALUE_COUNT;
    if (rows > SIZE_MAX / sizeof(float) / per_row)
        return KD_ERROR_SIZE_OVERFLOW;
    float *buffer = kd_alloc_array(&trainer->allocator, rows * per_row, sizeof *buffer);
    if (buffer == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    kd_free(&trainer->allocator, trainer->buffer);
    trainer->buffer = buffer;
    trainer->logits = buffer;
    trainer->grad = buffer + rows * outputs;
    trainer->row_values = buffer + 2 * rows * outputs;
    trainer->rows_capacity = rows;
    return KD_OK;
}

kd_status kd_trainer_reserve(kd_trainer *trainer, size_t rows)
{
    if (trainer == NULL)
        return KD_ERROR_NULL_POINTER;
    kd_status status = kd_model_reserve(trainer->student, rows);
    if (status == KD_OK)
        status = kd_loss_reserve(trainer->loss, trainer->student->outputs);
    if (status == KD_OK)
        status = grow(trainer, rows);
    return status;
}

/* Backpropagates the loss gradient and takes the optimizer step: inside the backward pass, layer
 * by layer, when the optimizer allows it; else into the gradient array (overwritten for a
 * built-in network, zeroed then accumulated by a host network), then a separate step. */
static kd_status backward_and_step(kd_trainer *trainer, size_t rows)
{
    kd_model *student = trainer->student;
    kd_dense_sink sink;
    if (student->kind == KD_MODEL_DENSE) {
        if (kd_optimizer_fuse(trainer->optimizer, student, &sink)) {
            kd_dense_backward(student, trainer->grad, rows, &sink);
            return KD_OK;
        }
        sink = (kd_dense_sink){student->dense.gradients, 0.0f, 0.0f, 0.0f};
        kd_dense_backward(student, trainer->grad, rows, &sink);
    } else {
        kd_status status = kd_model_zero_gradients(student);
        if (status == KD_OK)
            status = kd_model_backward(student, trainer->grad, rows);
        if (status != KD_OK)
            return status;
    }
    return kd_optimizer_step(trainer->optimizer, student);
}

kd_status kd_trainer_step(kd_trainer *trainer, const float *inputs, size_t rows,
                          const float *teacher, const int32_t *labels, float *values)
{
    if (trainer == NULL || inputs == NULL)
        return KD_ERROR_NULL_POINTER;
    trainer->last_rows = 0;
    kd_status status = rows == 0 ? KD_ERROR_ZERO_SIZE : grow(trainer, rows);
    if (status == KD_OK)
        status = kd_model_forward(trainer->student, inputs, rows, KD_MODE_TRAINING, trainer->logits);
    if (status != KD_OK)
        return status;

    const size_t classes = trainer->student->outputs;
    double reduction;
    kd_loss_get(trainer->loss, KD_LOSS_PARAM_REDUCTION, &reduction);
    const int per_row = reduction == KD_REDUCTION_NONE;
    float *out = per_row ? trainer->row_values : values;
    status = teacher == NULL
                 ? kd_loss_compute_hard(trainer->loss, trainer->logits, labels, rows, classes, out,
                                        trainer->grad)
                 : kd_loss_compute(trainer->loss, trainer->logits, classes, teacher, classes, labels,
                                   rows, classes, out, trainer->grad, classes);
    if (status == KD_OK)
        status = backward_and_step(trainer, rows);
    if (status == KD_OK && per_row && values != NULL) {
        for (int k = 0; k < KD_LOSS_VALUE_COUNT; k++) {
            double sum = 0.0;
            for (size_t r = 0; r < rows; r++)
                sum += trainer->row_values[r * KD_LOSS_VALUE_COUNT + k];
            values[k] = (float)sum;
        }
    }
    if (status == KD_OK)
        trainer->last_rows = rows;
    return status;
}

kd_status kd_trainer_last_logits(const kd_trainer *trainer, const float **logits, size_t *rows)
{
    if (trainer == NULL || logits == NULL)
        return KD_ERROR_NULL_POINTER;
    if (trainer->last_rows == 0)
        return KD_ERROR_SHAPE_MISMATCH;
    *logits = trainer->logits;
    if (rows != NULL)
        *rows = trainer->last_rows;
    return KD_OK;
}
