/* A file's bytes, read from an open file descriptor: as they are, or inflated when the file
 * starts with the gzip magic number (1f 8b).
 *
 * Gzip is read strictly, with zlib's inflate rather than gzread (which passes over a missing
 * trailer and over whatever follows the last member): every member must end with its trailer
 * (CRC-32 and length, both checked), and the stream may hold several members one after
 * another (RFC 1952: they read as one), but nothing else may follow the last one. */
#ifndef KD_MNIST_BYTE_STREAM_H
#define KD_MNIST_BYTE_STREAM_H

#include <stddef.h>
#include <zlib.h>

enum { BYTE_STREAM_BUFFER = 1 << 14 };

typedef struct byte_stream {
    int fd;                /* the caller's: byte_stream_close does not close it */
    int compressed;        /* gzip, inflated as it is read */
    int ended;             /* gzip: the last member's trailer is read and nothing follows */
    z_stream inflater;     /* gzip */
    unsigned char *next;   /* the unread bytes of input[]: next[0 .. available) */
    size_t available;
    char problem[96];      /* why the last call failed: "truncated gzip stream", ... */
    unsigned char input[BYTE_STREAM_BUFFER];
} byte_stream;

/* Starts reading the file open on fd, at its current offset. Returns 0, or -1 with
 * s->problem set (then there is nothing to close). */
int byte_stream_open(byte_stream *s, int fd);

/* Reads up to n bytes into buffer: fewer only where the data ends, 0 once it has ended
 * (gzip: properly, with its trailer and nothing after it). Returns the count, or -1 with
 * s->problem set. */
long byte_stream_read(byte_stream *s, void *buffer, size_t n);

/* Frees what byte_stream_open allocated (not the file descriptor). */
void byte_stream_close(byte_stream *s);

#endif /* KD_MNIST_BYTE_STREAM_H */
