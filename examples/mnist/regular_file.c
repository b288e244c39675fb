/* Opening regular files only, without blocking (see regular_file.h). */
#define _POSIX_C_SOURCE 200809L

#include "regular_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int open_regular(const char *path, off_t *size, char *why, size_t why_size)
{
    /* O_NONBLOCK: opening a FIFO returns at once instead of waiting for a writer. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "cannot open: %s", strerror(errno));
        return -1;
    }
    struct stat info;
    if (fstat(fd, &info) != 0) {
        snprintf(why, why_size, "cannot open: %s", strerror(errno));
    } else if (!S_ISREG(info.st_mode)) {
        snprintf(why, why_size, "not a regular file");
    } else {
        /* Reads of a regular file do not block anyway; the caller gets an ordinary descriptor. */
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0 && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0) {
            if (size != NULL)
                *size = info.st_size;
            return fd;
        }
        snprintf(why, why_size, "cannot open: %s", strerror(errno));
    }
    close(fd);
    return -1;
}
