/* The worker pool: a generation counter announces each job; workers run their share and count
 * down `pending`; the caller waits for zero. SPDX-License-Identifier: MIT */
#include "pool.h"

#include <pthread.h>

#include "alloc.h"

typedef struct worker {
    kd_pool *pool;
    size_t index;
    pthread_t thread;
} worker;

struct kd_pool {
    pthread_mutex_t lock;
    pthread_cond_t start, done;
    size_t threads;
    unsigned long generation; /* incremented for every job */
    size_t pending;           /* workers still running the current job */
    int stopping;
    kd_pool_job job;
    void *context;
    worker *workers; /* threads - 1 */
};

/* A worker's loop: waits for a new generation, runs its share, reports. */
static void *work(void *argument)
{
    worker *self = argument;
    kd_pool *pool = self->pool;
    unsigned long seen = 0;
    pthread_mutex_lock(&pool->lock);
    for (;;) {
        while (!pool->stopping && pool->generation == seen)
            pthread_cond_wait(&pool->start, &pool->lock);
        if (pool->stopping)
            break;
        seen = pool->generation;
        kd_pool_job job = pool->job;
        void *context = pool->context;
        pthread_mutex_unlock(&pool->lock);
        job(context, self->index, pool->threads);
        pthread_mutex_lock(&pool->lock);
        if (--pool->pending == 0)
            pthread_cond_signal(&pool->done);
    }
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Stops and joins the first `started` workers. */
static void stop(kd_pool *pool, size_t started)
{
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->lock);
    for (size_t k = 0; k < started; k++)
        pthread_join(pool->workers[k].thread, NULL);
}

static void release(kd_pool *pool, const kd_allocator *allocator)
{
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->start);
    pthread_mutex_destroy(&pool->lock);
    kd_free(allocator, pool->workers);
    kd_free(allocator, pool);
}

kd_status kd_pool_create(kd_pool **pool, const kd_allocator *allocator, size_t threads)
{
    kd_pool *created = kd_alloc_array(allocator, 1, sizeof *created);
    if (created == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    created->workers = kd_alloc_array(allocator, threads - 1, sizeof *created->workers);
    if (created->workers == NULL) {
        kd_free(allocator, created);
        return KD_ERROR_OUT_OF_MEMORY;
    }
    if (pthread_mutex_init(&created->lock, NULL) != 0) {
        kd_free(allocator, created->workers);
        kd_free(allocator, created);
        return KD_ERROR_OUT_OF_MEMORY;
    }
    int start_ok = pthread_cond_init(&created->start, NULL) == 0;
    int done_ok = pthread_cond_init(&created->done, NULL) == 0;
    if (!start_ok || !done_ok) {
        if (start_ok)
            pthread_cond_destroy(&created->start);
        if (done_ok)
            pthread_cond_destroy(&created->done);
        pthread_mutex_destroy(&created->lock);
        kd_free(allocator, created->workers);
        kd_free(allocator, created);
        return KD_ERROR_OUT_OF_MEMORY;
    }
    created->threads = threads;
    created->generation = 0;
    created->pending = 0;
    created->stopping = 0;
    created->job = NULL;
    created->context = NULL;
    for (size_t k = 0; k + 1 < threads; k++) {
        created->workers[k].pool = created;
        created->workers[k].index = k + 1;
        if (pthread_create(&created->workers[k].thread, NULL, work, &created->workers[k]) != 0) {
            stop(created, k);
            release(created, allocator);
            return KD_ERROR_OUT_OF_MEMORY;
        }
    }
    *pool = created;
    return KD_OK;
}

void kd_pool_destroy(kd_pool *pool, const kd_allocator *allocator)
{
    if (pool == NULL)
        return;
    stop(pool, pool->threads - 1);
    release(pool, allocator);
}

size_t kd_pool_threads(const kd_pool *pool)
{
    return pool->threads;
}

void kd_pool_run(kd_pool *pool, kd_pool_job job, void *context)
{
    pthread_mutex_lock(&pool->lock);
    pool->job = job;
    pool->context = context;
    pool->pending = pool->threads - 1;
    pool->generation++;
    pthread_cond_broadcast(&pool->start);
    pthread_mutex_unlock(&pool->lock);
    job(context, 0, pool->threads);
    pthread_mutex_lock(&pool->lock);
    while (pool->pending > 0)
        pthread_cond_wait(&pool->done, &pool->lock);
    pthread_mutex_unlock(&pool->lock);
}
