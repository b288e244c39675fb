/* The one place where libkd allocates memory: a handle's kd_allocator, or malloc/free.
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_ALLOC_H
#define KD_LIB_ALLOC_H

#include <stddef.h>

#include "kd/allocator.h"
#include "kd/status.h"

/* Resolves a host allocator (NULL: malloc/free) into *out, validating it:
 * KD_ERROR_INVALID_ARGUMENT for a struct_size too small or a NULL function. */
kd_status kd_allocator_resolve(const kd_allocator *host, kd_allocator *out);

/* The first step of every handle's creation: resolves the host allocator into *resolved and
 * allocates `size` zeroed bytes from it into *block. KD_ERROR_INVALID_ARGUMENT (allocator) or
 * KD_ERROR_OUT_OF_MEMORY, leaving *block untouched. */
kd_status kd_alloc_handle(const kd_allocator *host, size_t size, kd_allocator *resolved,
                          void **block);

/* `count` elements of `size` bytes from the allocator, or NULL (also on overflow or count 0). */
void *kd_alloc_array(const kd_allocator *allocator, size_t count, size_t size);

/* Gives a block back; NULL is a no-op. */
void kd_free(const kd_allocator *allocator, void *block);

#endif /* KD_LIB_ALLOC_H */
