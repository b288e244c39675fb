/* A file's bytes, plain or strictly inflated gzip (see byte_stream.h). */
#define _POSIX_C_SOURCE 200809L

#include "byte_stream.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* Records why a call failed; returns -1. */
static int problem(byte_stream *s, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(s->problem, sizeof s->problem, format, args);
    va_end(args);
    return -1;
}

/* Reads more of the file until at least `want` unread bytes are buffered or the file ends.
 * Returns 0, or -1 on a read error. */
static int buffer_at_least(byte_stream *s, size_t want)
{
    if (s->available >= want)
        return 0;
    memmove(s->input, s->next, s->available);
    s->next = s->input;
    while (s->available < want) {
        ssize_t got = read(s->fd, s->input + s->available, sizeof s->input - s->available);
        if (got == 0)
            break;
        if (got > 0)
            s->available += (size_t)got;
        else if (errno != EINTR)
            return problem(s, "read error: %s", strerror(errno));
    }
    return 0;
}

/* Whether the unread bytes start with the gzip magic number. */
static int at_gzip_magic(const byte_stream *s)
{
    return s->available >= 2 && s->next[0] == 0x1f && s->next[1] == 0x8b;
}

int byte_stream_open(byte_stream *s, int fd)
{
    s->fd = fd;
    s->compressed = 0;
    s->ended = 0;
    s->next = s->input;
    s->available = 0;
    s->problem[0] = '\0';
    if (buffer_at_least(s, 2) != 0)
        return -1;
    if (!at_gzip_magic(s))
        return 0;
    memset(&s->inflater, 0, sizeof s->inflater); /* zlib's own allocator */
    if (inflateInit2(&s->inflater, 16 + MAX_WBITS) != Z_OK) /* 16: the gzip wrapper only */
        return problem(s, "out of memory");
    s->compressed = 1;
    return 0;
}

/* Plain: copies up to n buffered bytes, refilling the buffer as it empties. */
static long read_plain(byte_stream *s, unsigned char *out, size_t n)
{
    size_t done = 0;
    while (done < n) {
        if (buffer_at_least(s, 1) != 0)
            return -1;
        if (s->available == 0)
            break;
        size_t chunk = s->available < n - done ? s->available : n - done;
        memcpy(out + done, s->next, chunk);
        s->next += chunk;
        s->available -= chunk;
        done += chunk;
    }
    return (long)done;
}

/* Gzip, after a member's trailer: the end of the file, or another member. */
static int member_ended(byte_stream *s)
{
    if (buffer_at_least(s, 2) != 0)
        return -1;
    if (s->available == 0) {
        s->ended = 1;
        return 0;
    }
    if (!at_gzip_magic(s))
        return problem(s, "trailing garbage after the gzip stream");
    return inflateReset(&s->inflater) == Z_OK ? 0 : problem(s, "corrupt gzip stream");
}

/* Gzip: inflates up to n bytes; the input must not end before the last member's trailer. */
static long read_gzip(byte_stream *s, unsigned char *out, size_t n)
{
    z_stream *z = &s->inflater;
    size_t done = 0;
    while (done < n && !s->ended) {
        if (buffer_at_least(s, 1) != 0)
            return -1;
        if (s->available == 0)
            return problem(s, "truncated gzip stream: it ends before its trailer");
        z->next_in = s->next;
        z->avail_in = (uInt)s->available; /* at most BYTE_STREAM_BUFFER */
        z->next_out = out + done;
        z->avail_out = n - done < UINT_MAX ? (uInt)(n - done) : UINT_MAX;
        const uInt room = z->avail_out;
        int status = inflate(z, Z_NO_FLUSH);
        s->next = z->next_in;
        s->available = z->avail_in;
        done += room - z->avail_out;
        if (status == Z_STREAM_END) {
            if (member_ended(s) != 0)
                return -1;
        } else if (status == Z_MEM_ERROR) {
            return problem(s, "out of memory");
        } else if (status != Z_OK) {
            return problem(s, "corrupt gzip stream (%s)", z->msg != NULL ? z->msg : "bad data");
        }
    }
    return (long)done;
}

long byte_stream_read(byte_stream *s, void *buffer, size_t n)
{
    return s->compressed ? read_gzip(s, buffer, n) : read_plain(s, buffer, n);
}

void byte_stream_close(byte_stream *s)
{
    if (s->compressed)
        inflateEnd(&s->inflater);
    s->compressed = 0;
}
