/* The kd_loss handle's layout, shared by the files that implement it.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_LOSS_INTERNAL_H
#define KD_LIB_LOSS_INTERNAL_H

#include <stddef.h>

#include "kd/loss.h"

enum { KD_LOSS_PARAM_COUNT = KD_LOSS_PARAM_ENSEMBLE_MODE + 1 };

struct kd_loss {
    kd_allocator allocator;
    /* Every parameter, indexed by kd_loss_param, as validated by kd_loss_set(). */
    double param[KD_LOSS_PARAM_COUNT];
    /* Two rows of `capacity` doubles: the teacher's row and a work row. */
    double *scratch;
    size_t capacity;
};

/* Makes the scratch hold rows of `classes` classes: KD_OK or KD_ERROR_OUT_OF_MEMORY (scratch
 * unchanged). Allocates only when it must grow. */
kd_status kd_loss_ensure_scratch(kd_loss *loss, size_t classes);

/* The hard loss alone (as if alpha were 0 and there were no teacher) on packed rows, for the
 * trainer's steps without a teacher; otherwise as kd_loss_compute. */
kd_status kd_loss_compute_hard(kd_loss *loss, const float *student_logits, const int32_t *labels,
                               size_t rows, size_t classes, float *values, float *grad);

#endif /* KD_LIB_LOSS_INTERNAL_H */
