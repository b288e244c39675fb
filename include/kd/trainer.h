/*
 * libkd — one-call training steps.
 *
 * For hosts that want libkd to run the step: a kd_trainer ties a student model, an optimizer
 * and a loss handle together and, for one mini-batch, runs the student forward (training mode),
 * computes the loss against the teacher (or the hard loss alone), backpropagates and takes an
 * optimizer step. The trainer borrows the three handles: they must outlive it, and the trainer
 * is used by one thread at a time together with them.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_TRAINER_H
#define KD_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "kd/allocator.h"
#include "kd/export.h"
#include "kd/loss.h"
#include "kd/model.h"
#include "kd/optimizer.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kd_trainer kd_trainer;

/* Creates a trainer for the given handles (borrowed, not owned). Returns KD_OK,
 * KD_ERROR_NULL_POINTER, KD_ERROR_SHAPE_MISMATCH (optimizer sized for another model),
 * KD_ERROR_INVALID_ARGUMENT (allocator), KD_ERROR_OUT_OF_MEMORY. */
KD_API kd_status kd_trainer_create(kd_trainer **trainer, kd_model *student,
                                   kd_optimizer *optimizer, kd_loss *loss,
                                   const kd_allocator *allocator);

/* Destroys a trainer (not the handles it borrows). NULL is a no-op. */
KD_API void kd_trainer_destroy(kd_trainer *trainer);

/* Sizes every buffer the steps need (the trainer's, the model's, the loss's) for batches of up
 * to `rows` rows now. Without it they grow on the first step of a larger batch. After it, steps
 * of at most `rows` rows allocate nothing. KD_ERROR_NULL_POINTER, KD_ERROR_ZERO_SIZE,
 * KD_ERROR_SIZE_OVERFLOW, KD_ERROR_OUT_OF_MEMORY. */
KD_API kd_status kd_trainer_reserve(kd_trainer *trainer, size_t rows);

/* One training step on a mini-batch:
 *   inputs:  rows x inputs of the student;
 *   teacher: rows x outputs teacher logits (or soft targets, as the loss's
 *            KD_LOSS_PARAM_TEACHER_KIND says), or NULL to train on the hard loss alone;
 *   labels:  rows labels (the loss's ignore label marks padding), or NULL when the loss's alpha
 *            is 1 and a teacher is given;
 *   values:  NULL or KD_LOSS_VALUE_COUNT floats: the batch's total, soft and hard loss, reduced
 *            as the loss handle says (MEAN or SUM; NONE reports sums).
 * Earlier gradients do not carry over. With a built-in network and SGD (plain or momentum, not
 * Nesterov) the optimizer's step runs inside the backward pass, layer by layer while each is in
 * cache, and the model's gradient array is left holding unspecified values; otherwise the
 * gradient array is set to this batch's gradient, then the optimizer steps.
 * Returns KD_OK or the first failing status of the forward pass, the loss (its validation runs
 * before any parameter changes) or the backward pass; on failure the model's parameters are
 * unchanged. */
KD_API kd_status kd_trainer_step(kd_trainer *trainer, const float *inputs, size_t rows,
                                 const float *teacher, const int32_t *labels, float *values);

/* The student's logits from the last successful step's forward pass (training mode: with
 * dropout), rows x outputs, so that hosts can follow training accuracy without a second
 * forward pass. Owned by the trainer, valid until its next step or destruction. *rows gets the
 * row count (may be NULL). KD_ERROR_NULL_POINTER, KD_ERROR_SHAPE_MISMATCH (no step yet). */
KD_API kd_status kd_trainer_last_logits(const kd_trainer *trainer, const float **logits,
                                        size_t *rows);

#ifdef __cplusplus
}
#endif

#endif /* KD_TRAINER_H */
