/*
 * libkd — knowledge distillation for C and C++ trainers.
 *
 * Umbrella header: include this one. Sections, in order:
 *   kd/version.h       version macros and run-time version
 *   kd/status.h        kd_status, returned by every fallible call
 *   kd/allocator.h     the optional host allocator taken by handles
 *   kd/softmax.h       temperature softmax and log-softmax kernels
 *   kd/soft_targets.h  soft targets from teacher logits, probabilities or ensembles
 *   kd/loss.h          the distillation loss handle: losses and gradients
 *   kd/model.h         model handles: the built-in dense network, host networks
 *   kd/optimizer.h     SGD and Adam
 *   kd/trainer.h       one-call training steps
 *   kd/checkpoint.h    saving and loading a dense network and its optimizer
 *
 * Conventions that hold for every function:
 *   - a fallible function returns kd_status; KD_OK (0) is success; on failure its outputs
 *     are untouched;
 *   - output parameters come first for constructors (kd_x_create(&x, ...)), last for kernels;
 *   - matrices are row-major float32; temperatures are dimensionless and must be > 0;
 *   - the library never prints, never exits, and holds no global mutable state.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_H
#define KD_H

#include "kd/version.h"
#include "kd/status.h"
#include "kd/allocator.h"
#include "kd/softmax.h"
#include "kd/soft_targets.h"
#include "kd/loss.h"
#include "kd/model.h"
#include "kd/optimizer.h"
#include "kd/trainer.h"
#include "kd/checkpoint.h"

#endif /* KD_H */
