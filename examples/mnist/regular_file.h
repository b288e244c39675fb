/* Opening a file for reading only if it is a regular file, without ever blocking: open() and
 * the first read wait forever on a FIFO without a writer (and devices are no data files). */
#ifndef KD_MNIST_REGULAR_FILE_H
#define KD_MNIST_REGULAR_FILE_H

#include <stddef.h>
#include <sys/types.h>

/* Opens `path` read-only (close-on-exec, blocking reads) if it names a regular file, and
 * stores its length in *size (if size is not NULL). Returns the file descriptor, or -1 with a
 * reason in why[] ("not a regular file", "cannot open: ...") that does not repeat the path. */
int open_regular(const char *path, off_t *size, char *why, size_t why_size);

#endif /* KD_MNIST_REGULAR_FILE_H */
