/*
 * libkd — memory allocation hook.
 *
 * Every handle (kd_loss, ...) takes an optional kd_allocator when it is created; every byte
 * the handle ever allocates comes from it, and goes back to it when the handle is destroyed.
 * NULL means the C library's malloc and free.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_ALLOCATOR_H
#define KD_ALLOCATOR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A host allocator. Set struct_size to sizeof(kd_allocator): later versions of libkd may append
 * fields, and read only those that a host's struct_size covers. The library copies the struct,
 * so it need not outlive the create call; `user` must outlive the handle.
 *
 *   allocate(user, bytes): returns a block of at least `bytes` bytes aligned for any type, or
 *                          NULL on failure (the library then returns KD_ERROR_OUT_OF_MEMORY
 *                          and leaves everything as it was). `bytes` is never 0.
 *   release(user, block):  gives back a block from allocate; never called with NULL.
 *
 * Both are called only from the thread using the handle at the time. */
typedef struct kd_allocator {
    size_t struct_size;
    void *(*allocate)(void *user, size_t bytes);
    void (*release)(void *user, void *block);
    void *user;
} kd_allocator;

#ifdef __cplusplus
}
#endif

#endif /* KD_ALLOCATOR_H */
