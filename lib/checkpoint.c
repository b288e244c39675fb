/* Checkpoints of a dense network and its optimizer: the format is in
 * docs/checkpoint-format.md. SPDX-License-Identifier: MIT */
#define _POSIX_C_SOURCE 200809L

#include "kd/checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
#include "crc32.h"
#include "model_internal.h"
#include "optimizer_internal.h"

static const unsigned char magic[8] = {'K', 'D', 'C', 'K', 'P', 'T', '\r', '\n'};
enum {
    FORMAT_VERSION = 1,
    FLAG_OPTIMIZER = 1,
    MAX_LAYER_COUNT = 4096,
    /* Fixed-size parts, in bytes. */
    HEADER_BYTES = 8 + 4 + 4 + 8,    /* magic, version, flags, layer count */
    SETTINGS_BYTES = 3 * 8 + 4 * 8 + 8, /* model parameters, generator state, parameter count */
    OPTIMIZER_BYTES = 4 + 4 + KD_OPTIMIZER_PARAM_COUNT * 8 + 8, /* kind, reserved, params, steps */
    CRC_BYTES = 4
};
#define MAX_WIDTH ((uint64_t)1 << 28)
/* A temporary file's name: ".", up to NAME_PREFIX_MAX bytes of the file's, ".tmp-", 16 hex. */
enum { NAME_PREFIX_MAX = 32, TEMPORARY_NAME_MAX = 1 + NAME_PREFIX_MAX + 5 + 16 };
/* Symbolic links a save follows (Linux's own limit), and the longest target it reads. */
enum { MAX_LINKS = 40, LINK_TARGET_MAX = 4096 };

/* --- writing ------------------------------------------------------------------------------ */

typedef struct writer {
    FILE *file;
    uint32_t crc;
    int failed;
} writer;

static void put_bytes(writer *w, const void *data, size_t n)
{
    w->crc = kd_crc32(w->crc, data, n);
    if (!w->failed && fwrite(data, 1, n, w->file) != n)
        w->failed = 1;
}

/* An unsigned integer of `size` bytes (4 or 8), little-endian. */
static void put_le(writer *w, uint64_t v, int size)
{
    unsigned char b[8];
    for (int i = 0; i < size; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    put_bytes(w, b, (size_t)size);
}

static void put_u32(writer *w, uint32_t v) { put_le(w, v, 4); }

static void put_u64(writer *w, uint64_t v) { put_le(w, v, 8); }

static void put_f64(writer *w, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u64(w, bits);
}

static void put_floats(writer *w, const float *x, size_t n)
{
    unsigned char b[4096];
    while (n > 0) {
        size_t chunk = n < sizeof b / 4 ? n : sizeof b / 4;
        for (size_t i = 0; i < chunk; i++) {
            uint32_t bits;
            memcpy(&bits, &x[i], sizeof bits);
            for (int k = 0; k < 4; k++)
                b[4 * i + (size_t)k] = (unsigned char)(bits >> (8 * k));
        }
        put_bytes(w, b, 4 * chunk);
        x += chunk;
        n -= chunk;
    }
}

static int all_finite(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return 0;
    return 1;
}

static void write_checkpoint(writer *w, const kd_model *model, const kd_optimizer *optimizer)
{
    const kd_dense *d = &model->dense;
    put_bytes(w, magic, sizeof magic);
    put_u32(w, FORMAT_VERSION);
    put_u32(w, optimizer != NULL ? FLAG_OPTIMIZER : 0);
    put_u64(w, d->layer_count);
    for (size_t l = 0; l < d->layer_count; l++)
        put_u64(w, d->widths[l]);
    for (int p = 0; p < KD_MODEL_PARAM_COUNT; p++)
        put_f64(w, d->param[p]);
    for (int i = 0; i < 4; i++)
        put_u64(w, d->rng.s[i]);
    put_u64(w, model->parameter_count);
    put_floats(w, d->parameters, model->parameter_count);
    if (optimizer != NULL) {
        put_u32(w, (uint32_t)optimizer->kind);
        put_u32(w, 0);
        for (int p = 0; p < KD_OPTIMIZER_PARAM_COUNT; p++)
            put_f64(w, optimizer->param[p]);
        put_u64(w, optimizer->steps);
        put_floats(w, optimizer->state,
                   optimizer->parameter_count * kd_optimizer_state_width(optimizer->kind));
    }
    put_u32(w, w->crc);
}

/* Length of a path's directory part, up to and including its last '/' (0 if it has none). */
static size_t directory_length(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash == NULL ? 0 : (size_t)(slash - path) + 1;
}

/* The file a save replaces or creates: its path with symbolic links followed. */
typedef struct destination {
    char *path;       /* allocated with the model's allocator */
    size_t directory; /* the length of its directory part */
    int exists;       /* a regular file is there, described by `info` */
    struct stat info;
} destination;

/* The path a symbolic link (described by `info`) names, a relative target read from the link's
 * directory: a new string in *next. KD_ERROR_IO if the link cannot be read. */
static kd_status follow_link(const kd_allocator *allocator, const char *link,
                             const struct stat *info, char **next)
{
    const size_t directory = directory_length(link);
    /* st_size is the target's length, but some file systems report 0 for links. */
    const size_t room = info->st_size > 0 && info->st_size < LINK_TARGET_MAX
                            ? (size_t)info->st_size + 1
                            : LINK_TARGET_MAX;
    char *target = kd_alloc_array(allocator, directory + room, 1);
    if (target == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    const ssize_t n = readlink(link, target + directory, room);
    if (n <= 0 || (size_t)n >= room) {
        kd_free(allocator, target);
        return KD_ERROR_IO;
    }
    target[directory + (size_t)n] = '\0';
    if (target[directory] == '/')
        memmove(target, target + directory, (size_t)n + 1);
    else
        memcpy(target, link, directory);
    *next = target;
    return KD_OK;
}

/* Follows `path`'s symbolic links (at most MAX_LINKS) to the file a save replaces: a regular
 * file, or nothing yet (a new file, or a dangling link's target). KD_ERROR_IO for anything else
 * there (a directory, FIFO, socket or device), a loop, a path without a file name or one that
 * cannot be examined; KD_ERROR_OUT_OF_MEMORY. */
static kd_status resolve_destination(const kd_allocator *allocator, const char *path,
                                     destination *out)
{
    const size_t length = strlen(path);
    char *current = kd_alloc_array(allocator, length + 1, 1);
    if (current == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    memcpy(current, path, length + 1);
    kd_status status = KD_OK;
    for (int links = 0; status == KD_OK; links++) {
        out->exists = lstat(current, &out->info) == 0;
        if (!out->exists || !S_ISLNK(out->info.st_mode))
            break;
        char *next = NULL;
        status = links < MAX_LINKS ? follow_link(allocator, current, &out->info, &next)
                                   : KD_ERROR_IO;
        if (status == KD_OK) {
            kd_free(allocator, current);
            current = next;
        }
    }
    out->directory = directory_length(current);
    const int usable = out->exists ? S_ISREG(out->info.st_mode) : errno == ENOENT;
    if (status == KD_OK && (!usable || current[out->directory] == '\0'))
        status = KD_ERROR_IO;
    if (status != KD_OK) {
        kd_free(allocator, current);
        return status;
    }
    out->path = current;
    return KD_OK;
}

/* Flushes to disk the entry of a file renamed into a directory: the first `directory` bytes
 * of `name`, which is overwritten (it has room for "."). Best effort. */
static void sync_directory(char *name, size_t directory)
{
    if (directory == 0)
        strcpy(name, ".");
    else
        name[directory] = '\0';
    int fd = open(name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Gives a new file the permission bits, owner and group of the file it is to replace. Where the
 * process may not set that owner and group, the file keeps the process's, and of the old
 * permission bits only the owner's: the others were granted by another owner. Best effort: on
 * a file system without owners or permissions the file keeps those it was created with. */
static void keep_mode_and_owner(int fd, const struct stat *replaced)
{
    mode_t mode = replaced->st_mode & 0777;
    if (fchown(fd, replaced->st_uid, replaced->st_gid) != 0)
        mode &= 0700;
    fchmod(fd, mode);
}

/* Creates and opens a new file `.<prefix>.tmp-<16 hex digits>` in the destination's directory,
 * writing its path into `name` (room for the directory part and TEMPORARY_NAME_MAX + 1 bytes).
 * The prefix is the start of the file name, at most NAME_PREFIX_MAX bytes cut at a UTF-8
 * character boundary, so the temporary name fits wherever the name does, even at NAME_MAX.
 * Permissions: those of the file it replaces (created 0600, so that no one else can open it
 * before they are set), or for a new file 0666 less the umask. Returns the descriptor or -1. */
static int open_temporary(const destination *target, char *name)
{
    const char *base = target->path + target->directory;
    size_t prefix = strnlen(base, NAME_PREFIX_MAX);
    while (prefix > 0 && ((unsigned char)base[prefix] & 0xC0) == 0x80)
        prefix--;
    memcpy(name, target->path, target->directory);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t n = (uint64_t)now.tv_nsec ^ (uint64_t)now.tv_sec << 30 ^ (uint64_t)getpid() << 40;
    for (int attempt = 0; attempt < 100;
         attempt++, n = n * 6364136223846793005u + 1442695040888963407u) {
        snprintf(name + target->directory, TEMPORARY_NAME_MAX + 1, ".%.*s.tmp-%016" PRIx64,
                 (int)prefix, base, n);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, target->exists ? 0600 : 0666);
        if (fd >= 0 && target->exists)
            keep_mode_and_owner(fd, &target->info);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

kd_status kd_checkpoint_save(const kd_model *model, const kd_optimizer *optimizer, const char *path)
{
    if (model == NULL || path == NULL)
        return KD_ERROR_NULL_POINTER;
    if (model->kind != KD_MODEL_DENSE)
        return KD_ERROR_UNSUPPORTED;
    if (optimizer != NULL && optimizer->parameter_count != model->parameter_count)
        return KD_ERROR_SHAPE_MISMATCH;
    if (!all_finite(model->dense.parameters, model->parameter_count)
        || (optimizer != NULL
            && !all_finite(optimizer->state,
                           optimizer->parameter_count * kd_optimizer_state_width(optimizer->kind))))
        return KD_ERROR_NONFINITE_INPUT;

    destination target;
    kd_status status = resolve_destination(&model->allocator, path, &target);
    if (status != KD_OK)
        return status;
    /* A temporary file in the same directory, so that rename() replaces atomically. */
    char *temporary =
        kd_alloc_array(&model->allocator, target.directory + TEMPORARY_NAME_MAX + 1, 1);
    if (temporary == NULL) {
        kd_free(&model->allocator, target.path);
        return KD_ERROR_OUT_OF_MEMORY;
    }
    status = KD_ERROR_IO;
    int fd = open_temporary(&target, temporary);
    if (fd >= 0) {
        FILE *file = fdopen(fd, "wb");
        if (file == NULL) {
            close(fd);
        } else {
            writer w = {file, 0, 0};
            write_checkpoint(&w, model, optimizer);
            int ok = !w.failed && fflush(file) == 0 && fsync(fd) == 0;
            ok = fclose(file) == 0 && ok;
            if (ok && rename(temporary, target.path) == 0) {
                sync_directory(temporary, target.directory);
                status = KD_OK;
            }
        }
        if (status != KD_OK)
            unlink(temporary);
    }
    kd_free(&model->allocator, temporary);
    kd_free(&model->allocator, target.path);
    return status;
}

/* --- reading ------------------------------------------------------------------------------ */

typedef struct reader {
    FILE *file;
    uint32_t crc;
    kd_status status; /* the first failure */
} reader;

static void get_bytes(reader *r, void *data, size_t n)
{
    if (r->status != KD_OK) {
        memset(data, 0, n);
        return;
    }
    size_t got = fread(data, 1, n, r->file);
    if (got != n) {
        memset(data, 0, n);
        r->status = ferror(r->file) ? KD_ERROR_IO : KD_ERROR_FILE_TRUNCATED;
        return;
    }
    r->crc = kd_crc32(r->crc, data, n);
}

/* An unsigned integer of `size` bytes (4 or 8), little-endian. */
static uint64_t get_le(reader *r, int size)
{
    unsigned char b[8];
    get_bytes(r, b, (size_t)size);
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; i--)
        v = (v << 8) | b[i];
    return v;
}

static uint32_t get_u32(reader *r) { return (uint32_t)get_le(r, 4); }

static uint64_t get_u64(reader *r) { return get_le(r, 8); }

static double get_f64(reader *r)
{
    uint64_t bits = get_u64(r);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void get_floats(reader *r, float *x, size_t n)
{
    unsigned char b[4096];
    while (n > 0 && r->status == KD_OK) {
        size_t chunk = n < sizeof b / 4 ? n : sizeof b / 4;
        get_bytes(r, b, 4 * chunk);
        for (size_t i = 0; i < chunk; i++) {
            uint32_t bits = (uint32_t)b[4 * i] | (uint32_t)b[4 * i + 1] << 8
                            | (uint32_t)b[4 * i + 2] << 16 | (uint32_t)b[4 * i + 3] << 24;
            memcpy(&x[i], &bits, sizeof bits);
        }
        x += chunk;
        n -= chunk;
    }
}

static void fail(reader *r, kd_status status)
{
    if (r->status == KD_OK)
        r->status = status;
}

/* The header's layer widths, read and validated; the parameter count they give. */
static size_t read_widths(reader *r, size_t *widths, size_t layer_count)
{
    /* No real file holds 2^60 floats; anything claiming more is corrupt, and the cap keeps the
     * sum (each layer adds at most 2^28 * (2^28 + 1) < 2^57) from overflowing. */
    const uint64_t limit = (uint64_t)1 << 60;
    uint64_t parameters = 0;
    for (size_t l = 0; l < layer_count; l++) {
        uint64_t width = get_u64(r);
        if (width == 0 || width > MAX_WIDTH)
            fail(r, KD_ERROR_FILE_CORRUPT);
        widths[l] = (size_t)width;
        if (l > 0 && r->status == KD_OK) {
            parameters += width * (widths[l - 1] + 1);
            if (parameters > limit)
                fail(r, KD_ERROR_FILE_CORRUPT);
        }
    }
    return (size_t)parameters;
}

/* Bytes a file of this shape must hold, or 0 if it cannot be (overflow). */
static uint64_t expected_size(size_t layer_count, uint64_t parameters, int has_optimizer,
                              size_t state_width)
{
    uint64_t floats = parameters + (has_optimizer ? parameters * state_width : 0);
    if (floats > (UINT64_MAX - 65536 - 8 * (uint64_t)layer_count) / 4)
        return 0;
    return HEADER_BYTES + 8 * (uint64_t)layer_count + SETTINGS_BYTES + 4 * floats
           + (has_optimizer ? OPTIMIZER_BYTES : 0) + CRC_BYTES;
}

static int in_bounds(double value, double min, double max) { return value >= min && value <= max; }

static kd_status read_checkpoint(reader *r, uint64_t file_size, kd_model **model_out,
                                 kd_optimizer **optimizer_out, const kd_allocator *allocator)
{
    unsigned char head[sizeof magic];
    get_bytes(r, head, sizeof head);
    if (r->status != KD_OK)
        return r->status;
    if (memcmp(head, magic, sizeof magic) != 0)
        return KD_ERROR_FILE_CORRUPT;
    uint32_t version = get_u32(r);
    uint32_t flags = get_u32(r);
    uint64_t layer_count = get_u64(r);
    if (r->status != KD_OK)
        return r->status;
    if (version != FORMAT_VERSION)
        return KD_ERROR_FILE_VERSION;
    if ((flags & ~(uint32_t)FLAG_OPTIMIZER) != 0 || layer_count < 2 || layer_count > MAX_LAYER_COUNT)
        return KD_ERROR_FILE_CORRUPT;
    const int has_optimizer = (flags & FLAG_OPTIMIZER) != 0;

    size_t widths[MAX_LAYER_COUNT];
    size_t parameters = read_widths(r, widths, (size_t)layer_count);
    double settings[KD_MODEL_PARAM_COUNT];
    for (int p = 0; p < KD_MODEL_PARAM_COUNT; p++)
        settings[p] = get_f64(r);
    kd_rng rng;
    for (int i = 0; i < 4; i++)
        rng.s[i] = get_u64(r);
    uint64_t stored_parameters = get_u64(r);
    if (r->status != KD_OK)
        return r->status;
    if (stored_parameters != parameters || (rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) == 0)
        return KD_ERROR_FILE_CORRUPT;
    for (int p = 0; p < KD_MODEL_PARAM_COUNT; p++) {
        double min, max;
        kd_model_param_bounds((kd_model_param)p, &min, &max);
        if (!in_bounds(settings[p], min, max))
            return KD_ERROR_FILE_CORRUPT;
    }
    /* The optimizer's kind decides the state's size: peek at it through the file size. Both
     * possible sizes are computed; the file must have exactly one of them. */
    if (!has_optimizer) {
        uint64_t expected = expected_size((size_t)layer_count, parameters, 0, 0);
        if (file_size < expected)
            return KD_ERROR_FILE_TRUNCATED;
        if (file_size > expected)
            return KD_ERROR_FILE_CORRUPT;
    } else if (file_size < expected_size((size_t)layer_count, parameters, 1, 1)) {
        return KD_ERROR_FILE_TRUNCATED;
    } else if (file_size > expected_size((size_t)layer_count, parameters, 1, 2)) {
        return KD_ERROR_FILE_CORRUPT;
    }

    /* Sizes are now backed by the file's real length: allocating them is safe. */
    kd_model *model;
    kd_status status = kd_model_create_dense(&model, widths, (size_t)layer_count, 0, allocator);
    if (status != KD_OK)
        return status;
    kd_dense *d = &model->dense;
    memcpy(d->param, settings, sizeof settings);
    d->rng = rng;
    get_floats(r, d->parameters, parameters);
    if (r->status == KD_OK && !all_finite(d->parameters, parameters))
        fail(r, KD_ERROR_FILE_CORRUPT);

    kd_optimizer *optimizer = NULL;
    if (has_optimizer && r->status == KD_OK) {
        uint32_t kind = get_u32(r);
        uint32_t reserved = get_u32(r);
        double params[KD_OPTIMIZER_PARAM_COUNT];
        for (int p = 0; p < KD_OPTIMIZER_PARAM_COUNT; p++)
            params[p] = get_f64(r);
        uint64_t steps = get_u64(r);
        if (r->status == KD_OK && (kind > KD_OPTIMIZER_ADAM || reserved != 0))
            fail(r, KD_ERROR_FILE_CORRUPT);
        if (r->status == KD_OK
            && file_size != expected_size((size_t)layer_count, parameters, 1,
                                          kd_optimizer_state_width((kd_optimizer_kind)kind)))
            fail(r, file_size < expected_size((size_t)layer_count, parameters, 1,
                                              kd_optimizer_state_width((kd_optimizer_kind)kind))
                        ? KD_ERROR_FILE_TRUNCATED
                        : KD_ERROR_FILE_CORRUPT);
        if (r->status == KD_OK) {
            status = kd_optimizer_new(&optimizer, (kd_optimizer_kind)kind, parameters, allocator);
            if (status != KD_OK)
                fail(r, status);
            else if (kd_optimizer_restore(optimizer, params, steps) != KD_OK)
                fail(r, KD_ERROR_FILE_CORRUPT);
        }
        if (optimizer != NULL) {
            get_floats(r, optimizer->state, parameters * kd_optimizer_state_width(optimizer->kind));
            if (r->status == KD_OK && !kd_optimizer_state_is_reachable(optimizer))
                fail(r, KD_ERROR_FILE_CORRUPT);
        }
    }
    uint32_t computed = r->crc;
    uint32_t stored = get_u32(r);
    if (r->status == KD_OK && stored != computed)
        fail(r, KD_ERROR_FILE_CORRUPT);
    if (r->status != KD_OK) {
        kd_optimizer_destroy(optimizer);
        kd_model_destroy(model);
        return r->status;
    }
    *model_out = model;
    if (optimizer_out != NULL)
        *optimizer_out = optimizer;
    else
        kd_optimizer_destroy(optimizer);
    return KD_OK;
}

/* Opens `path` for reading if it is a regular file (following links) and gives its size; else
 * returns NULL. The open does not block (a FIFO without a writer is refused, not waited for)
 * and does not make a terminal the process's controlling one. */
static FILE *open_regular_file(const char *path, uint64_t *size)
{
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat info;
    const int flags = fcntl(fd, F_GETFL);
    FILE *file = NULL;
    if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && flags != -1
        && fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == 0)
        file = fdopen(fd, "rb");
    if (file == NULL)
        close(fd);
    else
        *size = (uint64_t)info.st_size;
    return file;
}

kd_status kd_checkpoint_load(kd_model **model, kd_optimizer **optimizer, const char *path,
                             const kd_allocator *allocator)
{
    if (model == NULL || path == NULL)
        return KD_ERROR_NULL_POINTER;
    kd_allocator resolved;
    kd_status status = kd_allocator_resolve(allocator, &resolved);
    if (status != KD_OK)
        return status;
    uint64_t size;
    FILE *file = open_regular_file(path, &size);
    if (file == NULL)
        return KD_ERROR_IO;
    reader r = {file, 0, KD_OK};
    status = read_checkpoint(&r, size, model, optimizer, allocator);
    fclose(file);
    return status;
}
