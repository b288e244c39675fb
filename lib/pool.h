/* A small persistent pool of worker threads owned by a handle: the caller's thread and
 * `threads - 1` workers run one job together, each with its own index.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_POOL_H
#define KD_LIB_POOL_H

#include <stddef.h>

#include "kd/allocator.h"
#include "kd/status.h"

typedef struct kd_pool kd_pool;

/* A job: called once with each index in [0, threads). */
typedef void (*kd_pool_job)(void *context, size_t index, size_t threads);

/* Starts threads - 1 workers (threads >= 2). KD_OK, or KD_ERROR_OUT_OF_MEMORY when memory or a
 * thread cannot be had (then nothing is left running and *pool is untouched). */
kd_status kd_pool_create(kd_pool **pool, const kd_allocator *allocator, size_t threads);

/* Stops and joins the workers and frees the pool. NULL is a no-op. */
void kd_pool_destroy(kd_pool *pool, const kd_allocator *allocator);

/* The number of threads a job runs on (workers + the caller). */
size_t kd_pool_threads(const kd_pool *pool);

/* Runs job(context, i, threads) for every i, index 0 on the caller's thread, and returns when
 * all have finished. One job at a time (the handle is used by one thread at a time). */
void kd_pool_run(kd_pool *pool, kd_pool_job job, void *context);

#endif /* KD_LIB_POOL_H */
