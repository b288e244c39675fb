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

/* `count` elements of `size` bytes from the allocator, or NULL (also on overflow or count 0). */
void *kd_alloc_array(const kd_allocator *allocator, size_t count, size_t size);

/* Gives a block back; NULL is a no-op. */
void kd_free(const kd_allocator *allocator, void *block);

#endif /* KD_LIB_ALLOC_H */
