/* The kd_loss handle's layout, shared by the files that implement it.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_LOSS_INTERNAL_H
#define KD_LIB_LOSS_INTERNAL_H

#include <stddef.h>

#include "kd/loss.h"
#include "loss_fast.h"
#include "pool.h"

enum {
    KD_LOSS_PARAM_COUNT = KD_LOSS_PARAM_THREADS + 1,
    KD_LOSS_MAX_THREADS = 256,
    /* Rows whose check findings are kept between the check and compute phases (32 bytes
     * each); larger batches find them again per row. */
    KD_LOSS_ROW_INFO_ROWS = 4096
};

struct kd_loss {
    kd_allocator allocator;
    /* Every parameter, indexed by kd_loss_param, as validated by kd_loss_set(). */
    double param[KD_LOSS_PARAM_COUNT];
    /* The fused kernels, chosen for this CPU when the handle was created. */
    const kd_fast_kernels *kernels;
    /* Per thread, two rows of `capacity` doubles: the teacher's row and a work row (the
     * general path); `slots` threads are served. */
    double *scratch;
    size_t capacity, slots;
    /* What the check phase finds of each row, for batches of up to KD_LOSS_ROW_INFO_ROWS
     * rows; NULL until the scratch is first made. */
    kd_fast_row_info *row_info;
    /* KD_LOSS_VALUE_COUNT doubles per row, for reductions over rows computed on several
     * threads (summed afterwards in row order). */
    double *row_values;
    size_t row_capacity;
    /* The workers, started by the first call that runs on more than one thread. */
    kd_pool *pool;
};

/* The number of threads KD_LOSS_PARAM_THREADS asks for. */
size_t kd_loss_threads(const kd_loss *loss);

/* Makes the scratch hold rows of `classes` classes for every thread (16 bytes per class and
 * thread), and the row findings (KD_LOSS_ROW_INFO_ROWS rows, made once): KD_OK or
 * KD_ERROR_OUT_OF_MEMORY (scratch unchanged). Allocates only when it must grow. */
kd_status kd_loss_ensure_scratch(kd_loss *loss, size_t classes);

/* Makes row_values hold `rows` rows; as kd_loss_ensure_scratch. */
kd_status kd_loss_ensure_row_values(kd_loss *loss, size_t rows);

/* Makes the pool run on `threads` threads (>= 2), restarting it if it has another size:
 * KD_OK or KD_ERROR_OUT_OF_MEMORY (then no pool is left). */
kd_status kd_loss_ensure_pool(kd_loss *loss, size_t threads);

/* Test hook, not exported: makes the handle use the given kernels (kd_fast_portable() or the
 * AVX2 ones) instead of those chosen for the CPU. */
void kd_loss_use_kernels(kd_loss *loss, const kd_fast_kernels *kernels);

/* The hard loss alone (as if alpha were 0 and there were no teacher) on packed rows, for the
 * trainer's steps without a teacher; otherwise as kd_loss_compute. */
kd_status kd_loss_compute_hard(kd_loss *loss, const float *student_logits, const int32_t *labels,
                               size_t rows, size_t classes, float *values, float *grad);

#endif /* KD_LIB_LOSS_INTERNAL_H */
