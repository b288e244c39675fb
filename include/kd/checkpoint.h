/*
 * libkd — checkpoints of a dense network and its optimizer.
 *
 * The file format (docs/checkpoint-format.md) is versioned, little-endian on every machine,
 * and ends with a CRC-32 of everything before it. Saving is atomic: the file is written under a
 * short temporary name in the same directory (the directory of the file a symbolic link names),
 * flushed to disk, then renamed over it, so a crash leaves either the old checkpoint or the new
 * one under the real name, never half of one.
 * Loading validates every field and every size against the file's actual length before it
 * allocates anything, so a truncated, corrupt or hostile file gets a status, not a crash or a
 * huge allocation.
 *
 * Threads: a model (and optimizer) being saved must not be used by another thread meanwhile.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef KD_CHECKPOINT_H
#define KD_CHECKPOINT_H

#include "kd/allocator.h"
#include "kd/export.h"
#include "kd/model.h"
#include "kd/optimizer.h"
#include "kd/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Saves a dense network (its widths, dropout rates, max-norm, random generator state and
 * parameters) and, if optimizer is not NULL, the optimizer's kind, parameters and state.
 * Returns KD_OK, KD_ERROR_NULL_POINTER, KD_ERROR_UNSUPPORTED (a host network),
 * KD_ERROR_SHAPE_MISMATCH (an optimizer sized for another model), KD_ERROR_NONFINITE_INPUT (a
 * NaN or infinite parameter or optimizer state: nothing is written), KD_ERROR_OUT_OF_MEMORY, or
 * KD_ERROR_IO (the previous file under `path`, if any, is then intact). A symbolic link (or a
 * chain of them) at `path` is followed: the file it finally names is replaced, or created if
 * the link dangles, and the links stay. That file must be a regular one or not exist yet: a
 * directory, FIFO, socket or device, a loop of links or a path ending in '/' is KD_ERROR_IO.
 * A new file gets mode 0666 less the umask; a replaced one keeps its permission bits (0777),
 * owner and group, or where the process may not set that owner and group, gets the process's
 * and only the owner's permission bits (docs/checkpoint-format.md). */
KD_API kd_status kd_checkpoint_save(const kd_model *model, const kd_optimizer *optimizer,
                                    const char *path);

/* Loads a checkpoint into a new model (and, if optimizer is not NULL, a new optimizer: NULL
 * when the file holds no optimizer state). allocator: for the new handles, NULL for malloc.
 * Returns KD_OK, KD_ERROR_NULL_POINTER, KD_ERROR_IO (cannot open or read, or `path` is not a
 * regular file after following links: a directory, FIFO, socket or device is refused at once,
 * without waiting for a writer or making a terminal the process's controlling one),
 * KD_ERROR_FILE_TRUNCATED,
 * KD_ERROR_FILE_CORRUPT (bad magic, checksum, field or size, or an optimizer state that no
 * sequence of steps reaches, such as a negative Adam second moment or a non-zero state before
 * the first step: docs/checkpoint-format.md lists the rules), KD_ERROR_FILE_VERSION,
 * KD_ERROR_INVALID_ARGUMENT (allocator), KD_ERROR_OUT_OF_MEMORY; on failure *model and
 * *optimizer are untouched. */
KD_API kd_status kd_checkpoint_load(kd_model **model, kd_optimizer **optimizer, const char *path,
                                    const kd_allocator *allocator);

#ifdef __cplusplus
}
#endif

#endif /* KD_CHECKPOINT_H */
