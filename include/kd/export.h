/*
 * libkd — symbol visibility.
 *
 * The library is built with -fvisibility=hidden; every public function is marked KD_API so
 * that it, and nothing else, is exported from libkd.so.1 (the linker version script then binds
 * it to the version node LIBKD_1.0).
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_EXPORT_H
#define KD_EXPORT_H

#if defined(__GNUC__) || defined(__clang__)
#define KD_API __attribute__((visibility("default")))
#else
#define KD_API
#endif

#endif /* KD_EXPORT_H */
