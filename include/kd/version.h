/*
 * libkd — version of the library.
 *
 * This header is the single source of truth for the version: CMake reads the three
 * KD_VERSION_* lines below to set the project version, the shared library's version,
 * the pkg-config file and the CMake package version.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_VERSION_H
#define KD_VERSION_H

#include "kd/export.h"

#define KD_VERSION_MAJOR 1
#define KD_VERSION_MINOR 0
#define KD_VERSION_PATCH 0

/* MAJOR * 10000 + MINOR * 100 + PATCH, e.g. 10000 for 1.0.0; compare with kd_version_number(). */
#define KD_VERSION_NUMBER (KD_VERSION_MAJOR * 10000 + KD_VERSION_MINOR * 100 + KD_VERSION_PATCH)

#define KD_VERSION_STRINGIFY_(x) #x
#define KD_VERSION_STRINGIFY(x) KD_VERSION_STRINGIFY_(x)
/* "MAJOR.MINOR.PATCH", e.g. "1.0.0". */
#define KD_VERSION_STRING                                                                          \
    KD_VERSION_STRINGIFY(KD_VERSION_MAJOR)                                                         \
    "." KD_VERSION_STRINGIFY(KD_VERSION_MINOR) "." KD_VERSION_STRINGIFY(KD_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the library actually loaded at run time, as KD_VERSION_NUMBER would give it.
 * Compare with KD_VERSION_NUMBER to detect a header/library mismatch. Thread-safe. */
KD_API unsigned kd_version_number(void);

/* Version of the library loaded at run time as "MAJOR.MINOR.PATCH". The string is static:
 * never free it. Thread-safe. */
KD_API const char *kd_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* KD_VERSION_H */
