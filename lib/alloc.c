/* The one place where libkd allocates memory. SPDX-License-Identifier: MIT */
#include "alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void *default_allocate(void *user, size_t bytes)
{
    (void)user;
    return malloc(bytes);
}

static void default_release(void *user, void *block)
{
    (void)user;
    free(block);
}

kd_status kd_allocator_resolve(const kd_allocator *host, kd_allocator *out)
{
    if (host == NULL) {
        *out = (kd_allocator){sizeof(kd_allocator), default_allocate, default_release, NULL};
        return KD_OK;
    }
    if (host->struct_size < sizeof(kd_allocator) || host->allocate == NULL || host->release == NULL)
        return KD_ERROR_INVALID_ARGUMENT;
    *out = (kd_allocator){sizeof(kd_allocator), host->allocate, host->release, host->user};
    return KD_OK;
}

kd_status kd_alloc_handle(const kd_allocator *host, size_t size, kd_allocator *resolved,
                          void **block)
{
    kd_status status = kd_allocator_resolve(host, resolved);
    if (status != KD_OK)
        return status;
    void *allocated = kd_alloc_array(resolved, 1, size);
    if (allocated == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    memset(allocated, 0, size);
    *block = allocated;
    return KD_OK;
}

void *kd_alloc_array(const kd_allocator *allocator, size_t count, size_t size)
{
    if (count == 0 || size == 0 || count > SIZE_MAX / size)
        return NULL;
    return allocator->allocate(allocator->user, count * size);
}

void kd_free(const kd_allocator *allocator, void *block)
{
    if (block != NULL)
        allocator->release(allocator->user, block);
}
