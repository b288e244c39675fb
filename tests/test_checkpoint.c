/* kd_checkpoint_save / kd_checkpoint_load: round trips, the documented little-endian layout,
 * every kind of damaged or hostile file, and saving's failure modes (atomicity, no leftovers,
 * permissions). Files live in a fresh directory under /tmp, removed at the end. */
#define _XOPEN_SOURCE 700 /* POSIX 2008 with the pseudo-terminal functions */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <kd.h>

#include "support.h"

/* --- the scratch directory ------------------------------------------------------------------ */

static char directory[64];

static void path_of(char *out, size_t size, const char *name)
{
    int n = snprintf(out, size, "%s/%s", directory, name);
    assert_true(n > 0 && (size_t)n < size);
}

/* Removes every entry of a directory (one level of subdirectories), then the directory. */
static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat info;
        if (lstat(path, &info) == 0 && S_ISDIR(info.st_mode)) {
            chmod(path, 0700);
            remove_tree(path);
        } else {
            unlink(path);
        }
    }
    closedir(d);
    rmdir(dir);
}

static int setup_directory(void **state)
{
    (void)state;
    strcpy(directory, "/tmp/kd_test_checkpoint_XXXXXX");
    return mkdtemp(directory) == NULL ? -1 : 0;
}

static int remove_directory(void **state)
{
    (void)state;
    remove_tree(directory);
    return 0;
}

/* Entries of the scratch directory whose name contains ".tmp-" (a save's temporary files). */
static size_t temporary_files(void)
{
    DIR *d = opendir(directory);
    assert_non_null(d);
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        count += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return count;
}

static int exists(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0;
}

/* --- files as bytes -------------------------------------------------------------------------- */

typedef struct bytes {
    unsigned char *data;
    size_t size;
} bytes;

static bytes read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long size = ftell(f);
    assert_true(size >= 0);
    rewind(f);
    bytes b = {malloc((size_t)size + 1), (size_t)size};
    assert_non_null(b.data);
    assert_int_equal(fread(b.data, 1, b.size, f), b.size);
    fclose(f);
    return b;
}

static void write_all(const char *path, const unsigned char *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (size > 0)
        assert_int_equal(fwrite(data, 1, size, f), size);
    assert_int_equal(fclose(f), 0);
}

static bytes copy_of(bytes b, size_t extra)
{
    bytes c = {malloc(b.size + extra + 1), b.size};
    assert_non_null(c.data);
    memcpy(c.data, b.data, b.size);
    return c;
}

/* CRC-32 (reflected 0xEDB88320, initial and final complement), bit by bit. */
static uint32_t crc32_bitwise(const unsigned char *p, size_t n)
{
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const unsigned char *p)
{
    return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
}

static double get_f64(const unsigned char *p)
{
    uint64_t bits = get_u64(p);
    double v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static float get_f32(const unsigned char *p)
{
    uint32_t bits = get_u32(p);
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void put_f64(unsigned char *p, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u64(p, bits);
}

static void put_f32(unsigned char *p, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u32(p, bits);
}

/* Rewrites the trailing CRC so that only a deliberate change is wrong. */
static void fix_crc(bytes b)
{
    assert_true(b.size >= 4);
    put_u32(b.data + b.size - 4, crc32_bitwise(b.data, b.size - 4));
}

/* Offsets of the documented layout, for a file of `n` widths and P parameters. */
typedef struct layout {
    size_t n, p;
    size_t widths, input_dropout, hidden_dropout, max_norm, rng, parameter_count, parameters;
    size_t optimizer, kind, reserved, optimizer_params, steps, state;
} layout;

static layout layout_of(const bytes b)
{
    layout l;
    l.n = (size_t)get_u64(b.data + 16);
    l.widths = 24;
    l.input_dropout = l.widths + 8 * l.n;
    l.hidden_dropout = l.input_dropout + 8;
    l.max_norm = l.hidden_dropout + 8;
    l.rng = l.max_norm + 8;
    l.parameter_count = l.rng + 32;
    l.p = (size_t)get_u64(b.data + l.parameter_count);
    l.parameters = l.parameter_count + 8;
    l.optimizer = l.kind = l.parameters + 4 * l.p;
    l.reserved = l.kind + 4;
    l.optimizer_params = l.reserved + 4;
    l.steps = l.optimizer_params + 7 * 8;
    l.state = l.steps + 8;
    return l;
}

/* Sentinel handle values that a failed load must leave in place. */
static char sentinel_storage[2];
#define SENTINEL_MODEL ((kd_model *)(void *)&sentinel_storage[0])
#define SENTINEL_OPTIMIZER ((kd_optimizer *)(void *)&sentinel_storage[1])

/* Loads `path` expecting a failure: the status, handles untouched, nothing leaked. Also with
 * optimizer == NULL. Returns the largest allocation the attempt made. */
static size_t expect_load_failure(const char *path, kd_status expected, const char *what)
{
    size_t largest = 0;
    for (int with_optimizer = 0; with_optimizer < 2; with_optimizer++) {
        kd_test_allocator c = {0};
        kd_allocator a;
        kd_test_allocator_hook(&c, &a);
        kd_model *model = SENTINEL_MODEL;
        kd_optimizer *opt = SENTINEL_OPTIMIZER;
        kd_status status = kd_checkpoint_load(&model, with_optimizer ? &opt : NULL, path, &a);
        if (status == KD_OK) { /* wrongly accepted: give the handles back before failing */
            if (with_optimizer)
                kd_optimizer_destroy(opt);
            kd_model_destroy(model);
        }
        if (status != expected)
            fail_msg("%s: status %d (%s), want %d (%s)", what, (int)status,
                     kd_status_string(status), (int)expected, kd_status_string(expected));
        assert_ptr_equal(model, SENTINEL_MODEL);
        assert_ptr_equal(opt, SENTINEL_OPTIMIZER);
        if (!kd_test_allocator_clean(&c))
            fail_msg("%s: %zu blocks leaked (bad release %d, 0-byte request %d)", what, c.live,
                     c.bad_release, c.zero_request);
        largest = c.largest > largest ? c.largest : largest;
    }
    return largest;
}

/* Writes the bytes to a scratch file and expects that status from loading it. */
static size_t expect_bytes_failure(const unsigned char *data, size_t size, kd_status expected,
                                   const char *what)
{
    char path[256];
    path_of(path, sizeof path, "damaged.kdc");
    write_all(path, data, size);
    size_t largest = expect_load_failure(path, expected, what);
    unlink(path);
    return largest;
}

/* The status of loading these bytes (any), with the no-leak and untouched-handles checks. */
static kd_status load_bytes_status(const unsigned char *data, size_t size)
{
    char path[256];
    path_of(path, sizeof path, "probe.kdc");
    write_all(path, data, size);
    kd_test_allocator c = {0};
    kd_allocator a;
    kd_test_allocator_hook(&c, &a);
    kd_model *model = SENTINEL_MODEL;
    kd_optimizer *opt = SENTINEL_OPTIMIZER;
    kd_status status = kd_checkpoint_load(&model, &opt, path, &a);
    if (status == KD_OK) {
        kd_optimizer_destroy(opt);
        kd_model_destroy(model);
    } else {
        assert_ptr_equal(model, SENTINEL_MODEL);
        assert_ptr_equal(opt, SENTINEL_OPTIMIZER);
    }
    assert_true(kd_test_allocator_clean(&c));
    unlink(path);
    return status;
}

/* --- models to save -------------------------------------------------------------------------- */

static float *params_of(kd_model *model)
{
    float *p = NULL;
    assert_int_equal(kd_model_parameters(model, &p), KD_OK);
    return p;
}

static float *grads_of(kd_model *model)
{
    float *g = NULL;
    assert_int_equal(kd_model_gradients(model, &g), KD_OK);
    return g;
}

typedef struct batch {
    float x[16 * 8];
    int32_t labels[16];
    size_t rows;
} batch;

static void make_batch(batch *b, size_t inputs, size_t classes, uint64_t seed)
{
    kd_test_rng rng = {seed};
    b->rows = 16;
    assert_true(inputs <= 8);
    for (size_t i = 0; i < b->rows * inputs; i++)
        b->x[i] = (float)kd_test_normal(&rng);
    for (size_t r = 0; r < b->rows; r++)
        b->labels[r] = (int32_t)(kd_test_rng_next(&rng) % classes);
}

/* One trainer step of a model and optimizer on a batch (a new loss and trainer each time). */
static void train_step(kd_model *model, kd_optimizer *opt, const batch *b)
{
    kd_loss *loss = NULL;
    kd_trainer *trainer = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_int_equal(kd_trainer_create(&trainer, model, opt, loss, NULL), KD_OK);
    assert_int_equal(kd_trainer_step(trainer, b->x, b->rows, NULL, b->labels, NULL), KD_OK);
    kd_trainer_destroy(trainer);
    kd_loss_destroy(loss);
}

/* A dense model with every setting away from its default, trained a few steps. */
static void make_trained(const size_t *widths, size_t layer_count, kd_optimizer_kind kind,
                         kd_model **model, kd_optimizer **opt)
{
    assert_int_equal(kd_model_create_dense(model, widths, layer_count, 77, NULL), KD_OK);
    assert_int_equal(kd_model_set(*model, KD_MODEL_PARAM_INPUT_DROPOUT, 0.1), KD_OK);
    assert_int_equal(kd_model_set(*model, KD_MODEL_PARAM_HIDDEN_DROPOUT, 0.3), KD_OK);
    assert_int_equal(kd_model_set(*model, KD_MODEL_PARAM_MAX_NORM, 2.0), KD_OK);
    assert_int_equal(kd_optimizer_create(opt, kind, *model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.05), KD_OK);
    assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_WEIGHT_DECAY, 1e-3), KD_OK);
    if (kind == KD_OPTIMIZER_SGD) {
        assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_MOMENTUM, 0.9), KD_OK);
        assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_NESTEROV, 1.0), KD_OK);
    } else {
        assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_BETA1, 0.8), KD_OK);
        assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_BETA2, 0.99), KD_OK);
        assert_int_equal(kd_optimizer_set(*opt, KD_OPTIMIZER_PARAM_EPSILON, 1e-6), KD_OK);
    }
    batch b;
    for (uint64_t s = 0; s < 5; s++) {
        make_batch(&b, widths[0], widths[layer_count - 1], 1000 + s);
        train_step(*model, *opt, &b);
    }
}

static const kd_optimizer_param all_optimizer_params[] = {
    KD_OPTIMIZER_PARAM_LEARNING_RATE, KD_OPTIMIZER_PARAM_MOMENTUM, KD_OPTIMIZER_PARAM_NESTEROV,
    KD_OPTIMIZER_PARAM_WEIGHT_DECAY,  KD_OPTIMIZER_PARAM_BETA1,    KD_OPTIMIZER_PARAM_BETA2,
    KD_OPTIMIZER_PARAM_EPSILON,
};

static void assert_same_model(kd_model *a, kd_model *b)
{
    assert_int_equal(kd_model_input_count(a), kd_model_input_count(b));
    assert_int_equal(kd_model_output_count(a), kd_model_output_count(b));
    const size_t p = kd_model_parameter_count(a);
    assert_int_equal(kd_model_parameter_count(b), p);
    assert_memory_equal(params_of(a), params_of(b), p * sizeof(float));
    for (int k = 0; k <= KD_MODEL_PARAM_MAX_NORM; k++) {
        double va = -1, vb = -2;
        assert_int_equal(kd_model_get(a, (kd_model_param)k, &va), KD_OK);
        assert_int_equal(kd_model_get(b, (kd_model_param)k, &vb), KD_OK);
        assert_true(va == vb);
    }
    /* Same inference logits, bit for bit. */
    const size_t in = kd_model_input_count(a), out = kd_model_output_count(a);
    float *x = malloc(10 * in * sizeof *x);
    float *za = malloc(10 * out * sizeof *za), *zb = malloc(10 * out * sizeof *zb);
    assert_true(x && za && zb);
    kd_test_rng rng = {5};
    for (size_t i = 0; i < 10 * in; i++)
        x[i] = (float)kd_test_normal(&rng);
    assert_int_equal(kd_model_forward(a, x, 10, KD_MODE_INFERENCE, za), KD_OK);
    assert_int_equal(kd_model_forward(b, x, 10, KD_MODE_INFERENCE, zb), KD_OK);
    assert_memory_equal(za, zb, 10 * out * sizeof *za);
    free(zb);
    free(za);
    free(x);
}

static void assert_same_optimizer(const kd_optimizer *a, const kd_optimizer *b)
{
    assert_int_equal(kd_optimizer_kind_of(a), kd_optimizer_kind_of(b));
    for (size_t k = 0; k < sizeof all_optimizer_params / sizeof all_optimizer_params[0]; k++) {
        double va = -1, vb = -2;
        kd_status sa = kd_optimizer_get(a, all_optimizer_params[k], &va);
        kd_status sb = kd_optimizer_get(b, all_optimizer_params[k], &vb);
        assert_int_equal(sa, sb);
        if (sa == KD_OK)
            assert_true(va == vb);
    }
}

/* --- 1. round trips --------------------------------------------------------------------------- */

static void check_round_trip(kd_optimizer_kind kind, const char *name)
{
    const size_t widths[] = {3, 8, 6, 2};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    make_trained(widths, 4, kind, &model, &opt);
    char path[256];
    path_of(path, sizeof path, name);
    assert_int_equal(kd_checkpoint_save(model, opt, path), KD_OK);

    kd_test_allocator c = {0};
    kd_allocator a;
    kd_test_allocator_hook(&c, &a);
    kd_model *loaded = NULL;
    kd_optimizer *loaded_opt = NULL;
    assert_int_equal(kd_checkpoint_load(&loaded, &loaded_opt, path, &a), KD_OK);
    assert_non_null(loaded);
    assert_non_null(loaded_opt);
    assert_true(c.live > 0); /* the new handles use the allocator given */
    assert_same_model(model, loaded);
    assert_same_optimizer(opt, loaded_opt);

    /* The optimizer state, step count and the model's generator state came back too: one more
     * training step (dropout on) gives the same parameters on both pairs, twice over. */
    for (uint64_t s = 0; s < 2; s++) {
        batch b;
        make_batch(&b, 3, 2, 2000 + s);
        train_step(model, opt, &b);
        train_step(loaded, loaded_opt, &b);
        assert_memory_equal(params_of(model), params_of(loaded),
                            kd_model_parameter_count(model) * sizeof(float));
    }
    /* ... which a fresh optimizer (zero state) would not reproduce. */
    kd_optimizer *fresh = NULL;
    assert_int_equal(kd_optimizer_create(&fresh, kind, loaded, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(fresh, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.05), KD_OK);
    kd_model *again = NULL;
    assert_int_equal(kd_checkpoint_load(&again, NULL, path, NULL), KD_OK);
    batch b;
    make_batch(&b, 3, 2, 2000);
    kd_model *reference = NULL;
    kd_optimizer *reference_opt = NULL;
    assert_int_equal(kd_checkpoint_load(&reference, &reference_opt, path, NULL), KD_OK);
    train_step(reference, reference_opt, &b);
    train_step(again, fresh, &b);
    assert_memory_not_equal(params_of(reference), params_of(again),
                            kd_model_parameter_count(model) * sizeof(float));

    kd_optimizer_destroy(reference_opt);
    kd_model_destroy(reference);
    kd_model_destroy(again);
    kd_optimizer_destroy(fresh);
    kd_optimizer_destroy(loaded_opt);
    kd_model_destroy(loaded);
    assert_true(kd_test_allocator_clean(&c));
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    unlink(path);
}

static void round_trip_sgd(void **state)
{
    (void)state;
    check_round_trip(KD_OPTIMIZER_SGD, "sgd.kdc");
}

static void round_trip_adam(void **state)
{
    (void)state;
    check_round_trip(KD_OPTIMIZER_ADAM, "adam.kdc");
}

static void round_trip_optional_optimizer(void **state)
{
    (void)state;
    const size_t widths[] = {4, 5, 3};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    make_trained(widths, 3, KD_OPTIMIZER_SGD, &model, &opt);
    char with[256], without[256];
    path_of(with, sizeof with, "with.kdc");
    path_of(without, sizeof without, "without.kdc");
    assert_int_equal(kd_checkpoint_save(model, opt, with), KD_OK);
    assert_int_equal(kd_checkpoint_save(model, NULL, without), KD_OK);

    /* A file with optimizer state, loaded without asking for the optimizer. */
    kd_model *loaded = NULL;
    assert_int_equal(kd_checkpoint_load(&loaded, NULL, with, NULL), KD_OK);
    assert_same_model(model, loaded);
    kd_model_destroy(loaded);

    /* A file without it, loaded asking for one: NULL. */
    loaded = NULL;
    kd_optimizer *loaded_opt = SENTINEL_OPTIMIZER;
    assert_int_equal(kd_checkpoint_load(&loaded, &loaded_opt, without, NULL), KD_OK);
    assert_null(loaded_opt);
    assert_same_model(model, loaded);
    kd_model_destroy(loaded);

    /* The two files differ exactly by the optimizer section and the flag. */
    bytes a = read_all(with), b = read_all(without);
    const size_t p = kd_model_parameter_count(model);
    assert_int_equal(a.size, b.size + 4 + 4 + 7 * 8 + 8 + 4 * p);
    layout l = layout_of(b);
    assert_int_equal(get_u32(a.data + 12), 1);
    assert_int_equal(get_u32(b.data + 12), 0);
    assert_memory_equal(a.data + 16, b.data + 16, l.optimizer - 16);
    free(a.data);
    free(b.data);

    /* Saving over an existing checkpoint replaces it. */
    assert_int_equal(kd_checkpoint_save(model, NULL, with), KD_OK);
    loaded_opt = SENTINEL_OPTIMIZER;
    assert_int_equal(kd_checkpoint_load(&loaded, &loaded_opt, with, NULL), KD_OK);
    assert_null(loaded_opt);
    kd_model_destroy(loaded);

    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    unlink(with);
    unlink(without);
    assert_int_equal(temporary_files(), 0);
}

/* Loading with an allocator that fails its n-th allocation, n = 1, 2, ...: OOM, nothing
 * returned, nothing leaked, until it fits. */
static void load_allocation_failures(void **state)
{
    (void)state;
    const size_t widths[] = {3, 4, 2};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    make_trained(widths, 3, KD_OPTIMIZER_ADAM, &model, &opt);
    char path[256];
    path_of(path, sizeof path, "oom.kdc");
    assert_int_equal(kd_checkpoint_save(model, opt, path), KD_OK);
    size_t n = 1;
    for (;; n++) {
        assert_true(n < 100);
        kd_test_allocator c = {.fail_at = n};
        kd_allocator a;
        kd_test_allocator_hook(&c, &a);
        kd_model *loaded = SENTINEL_MODEL;
        kd_optimizer *loaded_opt = SENTINEL_OPTIMIZER;
        kd_status status = kd_checkpoint_load(&loaded, &loaded_opt, path, &a);
        if (status == KD_OK) {
            assert_true(c.calls < n);
            c.fail_at = 0; /* the comparison's forward passes allocate too */
            assert_same_model(model, loaded);
            kd_optimizer_destroy(loaded_opt);
            kd_model_destroy(loaded);
            assert_true(kd_test_allocator_clean(&c));
            break;
        }
        assert_int_equal(status, KD_ERROR_OUT_OF_MEMORY);
        assert_ptr_equal(loaded, SENTINEL_MODEL);
        assert_ptr_equal(loaded_opt, SENTINEL_OPTIMIZER);
        assert_true(kd_test_allocator_clean(&c));
    }
    assert_true(n > 2); /* at least the model's and the optimizer's blocks */
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    unlink(path);
}

/* --- 4. the documented layout ------------------------------------------------------------------ */

static void file_layout_is_little_endian(void **state)
{
    (void)state;
    const size_t widths[] = {3, 5, 4, 2};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 4, 4, NULL), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_INPUT_DROPOUT, 0.125), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_HIDDEN_DROPOUT, 0.2), KD_OK);
    assert_int_equal(kd_model_set(model, KD_MODEL_PARAM_MAX_NORM, 2.5), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.01), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_MOMENTUM, 0.5), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_WEIGHT_DECAY, 0.25), KD_OK);
    const size_t p = kd_model_parameter_count(model);
    assert_int_equal(p, 5 * 4 + 4 * 6 + 2 * 5);

    /* Three steps with known gradients: the momentum buffer is then known too (the
     * parameters and hence the decay term are read back from the model after each step). */
    double momentum[64] = {0};
    float *w = params_of(model), *g = grads_of(model);
    kd_test_rng rng = {21};
    for (int t = 0; t < 3; t++) {
        for (size_t i = 0; i < p; i++) {
            g[i] = (float)kd_test_normal(&rng);
            momentum[i] = 0.5 * momentum[i] + (double)g[i] + 0.25 * (double)w[i];
        }
        assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
    }
    char path[256];
    path_of(path, sizeof path, "layout.kdc");
    assert_int_equal(kd_checkpoint_save(model, opt, path), KD_OK);
    bytes b = read_all(path);

    static const unsigned char magic[8] = {'K', 'D', 'C', 'K', 'P', 'T', '\r', '\n'};
    assert_memory_equal(b.data, magic, 8);
    const unsigned char version[4] = {1, 0, 0, 0}, flags[4] = {1, 0, 0, 0};
    const unsigned char count[8] = {4, 0, 0, 0, 0, 0, 0, 0};
    assert_memory_equal(b.data + 8, version, 4);
    assert_memory_equal(b.data + 12, flags, 4);
    assert_memory_equal(b.data + 16, count, 8);
    layout l = layout_of(b);
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(get_u64(b.data + l.widths + 8 * k), widths[k]);
    assert_true(get_f64(b.data + l.input_dropout) == 0.125);
    assert_true(get_f64(b.data + l.hidden_dropout) == 0.2);
    assert_true(get_f64(b.data + l.max_norm) == 2.5);
    uint64_t any = 0;
    for (size_t k = 0; k < 4; k++)
        any |= get_u64(b.data + l.rng + 8 * k);
    assert_true(any != 0);
    assert_int_equal(l.p, p);
    for (size_t i = 0; i < p; i++) {
        float v = get_f32(b.data + l.parameters + 4 * i);
        assert_memory_equal(&v, &w[i], sizeof v);
    }
    assert_int_equal(get_u32(b.data + l.kind), KD_OPTIMIZER_SGD);
    assert_int_equal(get_u32(b.data + l.reserved), 0);
    const double want_params[7] = {0.01, 0.5, 0.0, 0.25, 0.0, 0.0, 0.0};
    for (size_t k = 0; k < 7; k++)
        assert_true(get_f64(b.data + l.optimizer_params + 8 * k) == want_params[k]);
    assert_int_equal(get_u64(b.data + l.steps), 3);
    for (size_t i = 0; i < p; i++) {
        double v = get_f32(b.data + l.state + 4 * i);
        if (fabs(v - momentum[i]) > 1e-5 * (1.0 + fabs(momentum[i])))
            fail_msg("momentum[%zu]: file %.9g, want %.9g", i, v, momentum[i]);
    }
    assert_int_equal(b.size, l.state + 4 * p + 4);
    assert_int_equal(get_u32(b.data + b.size - 4), crc32_bitwise(b.data, b.size - 4));
    /* The CRC is zlib's: check the implementation on the standard vector. */
    assert_int_equal(crc32_bitwise((const unsigned char *)"123456789", 9), 0xCBF43926u);
    free(b.data);

    /* Adam: two state floats per parameter; without optimizer: no section, flag 0. */
    kd_optimizer *adam = NULL;
    assert_int_equal(kd_optimizer_create(&adam, KD_OPTIMIZER_ADAM, model, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(model, adam, path), KD_OK);
    b = read_all(path);
    l = layout_of(b);
    assert_int_equal(get_u32(b.data + l.kind), KD_OPTIMIZER_ADAM);
    const double adam_params[7] = {0.001, 0.0, 0.0, 0.0, 0.9, 0.999, 1e-8};
    for (size_t k = 0; k < 7; k++)
        assert_true(get_f64(b.data + l.optimizer_params + 8 * k) == adam_params[k]);
    assert_int_equal(get_u64(b.data + l.steps), 0);
    assert_int_equal(b.size, l.state + 8 * p + 4);
    assert_int_equal(get_u32(b.data + b.size - 4), crc32_bitwise(b.data, b.size - 4));
    free(b.data);
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_OK);
    b = read_all(path);
    l = layout_of(b);
    assert_int_equal(get_u32(b.data + 12), 0);
    assert_int_equal(b.size, l.optimizer + 4);
    assert_int_equal(get_u32(b.data + b.size - 4), crc32_bitwise(b.data, b.size - 4));
    free(b.data);

    kd_optimizer_destroy(adam);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    unlink(path);
}

/* --- 2. damaged and hostile files --------------------------------------------------------------- */

/* Small valid files: {2, 3, 2} without optimizer, with SGD, with Adam. */
static bytes small_file(kd_optimizer_kind kind, int with_optimizer)
{
    const size_t widths[] = {2, 3, 2};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    make_trained(widths, 3, kind, &model, &opt);
    char path[256];
    path_of(path, sizeof path, "small.kdc");
    assert_int_equal(kd_checkpoint_save(model, with_optimizer ? opt : NULL, path), KD_OK);
    bytes b = read_all(path);
    unlink(path);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    /* ... and the bytes load as they are. */
    assert_int_equal(load_bytes_status(b.data, b.size), KD_OK);
    return b;
}

static void every_truncation(void **state)
{
    (void)state;
    for (int variant = 0; variant < 3; variant++) {
        bytes b = small_file(variant == 2 ? KD_OPTIMIZER_ADAM : KD_OPTIMIZER_SGD, variant > 0);
        for (size_t length = 0; length < b.size; length++) {
            char what[128];
            snprintf(what, sizeof what, "variant %d cut to %zu of %zu bytes", variant, length,
                     b.size);
            expect_bytes_failure(b.data, length, KD_ERROR_FILE_TRUNCATED, what);
        }
        free(b.data);
    }
}

/* Each single byte changed, one at a time (three ways): never KD_OK. The version gives
 * FILE_VERSION; a changed flag, layer count or optimizer kind implies another length, so
 * TRUNCATED is possible there; everything else is CORRUPT. */
static void every_byte_flip(void **state)
{
    (void)state;
    const unsigned char masks[3] = {0x01, 0x80, 0xFF};
    for (int variant = 0; variant < 3; variant++) {
        bytes b = small_file(variant == 2 ? KD_OPTIMIZER_ADAM : KD_OPTIMIZER_SGD, variant > 0);
        layout l = layout_of(b);
        for (size_t i = 0; i < b.size; i++) {
            for (int m = 0; m < 3; m++) {
                b.data[i] ^= masks[m];
                kd_status status = load_bytes_status(b.data, b.size);
                b.data[i] ^= masks[m];
                int ok;
                if (i >= 8 && i < 12)
                    ok = status == KD_ERROR_FILE_VERSION;
                else if ((i >= 12 && i < 24) || (variant > 0 && i >= l.kind && i < l.kind + 4))
                    ok = status == KD_ERROR_FILE_CORRUPT || status == KD_ERROR_FILE_TRUNCATED;
                else
                    ok = status == KD_ERROR_FILE_CORRUPT;
                if (!ok)
                    fail_msg("variant %d, byte %zu of %zu ^ 0x%02x: status %d (%s)", variant, i,
                             b.size, masks[m], (int)status, kd_status_string(status));
            }
        }
        free(b.data);
    }
}

static void damaged_fields(void **state)
{
    (void)state;
    bytes sgd = small_file(KD_OPTIMIZER_SGD, 1);
    bytes adam = small_file(KD_OPTIMIZER_ADAM, 1);
    bytes none = small_file(KD_OPTIMIZER_SGD, 0);
    const layout l = layout_of(sgd);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.p, 17);
    bytes d;

#define DAMAGE(source, edit, status, what)                                                       \
    do {                                                                                         \
        d = copy_of(source, 0);                                                                  \
        edit;                                                                                    \
        fix_crc(d);                                                                              \
        expect_bytes_failure(d.data, d.size, status, what);                                     \
        free(d.data);                                                                            \
    } while (0)

    /* Magic. */
    DAMAGE(sgd, d.data[0] = 'X', KD_ERROR_FILE_CORRUPT, "magic K -> X");
    DAMAGE(sgd, d.data[6] = '\n', KD_ERROR_FILE_CORRUPT, "magic \\r -> \\n");
    DAMAGE(sgd, memcpy(d.data, "kdckpt\r\n", 8), KD_ERROR_FILE_CORRUPT, "magic lower case");
    /* Version. */
    DAMAGE(sgd, put_u32(d.data + 8, 2), KD_ERROR_FILE_VERSION, "version 2");
    DAMAGE(sgd, put_u32(d.data + 8, 0), KD_ERROR_FILE_VERSION, "version 0");
    DAMAGE(sgd, put_u32(d.data + 8, 0x01000000u), KD_ERROR_FILE_VERSION, "version 1 big-endian");
    DAMAGE(none, put_u32(d.data + 8, 2), KD_ERROR_FILE_VERSION, "version 2, no optimizer");
    /* Flags. */
    DAMAGE(sgd, put_u32(d.data + 12, 3), KD_ERROR_FILE_CORRUPT, "flag bit 1");
    DAMAGE(none, put_u32(d.data + 12, 0x80000000u), KD_ERROR_FILE_CORRUPT, "flag bit 31");
    DAMAGE(sgd, put_u32(d.data + 12, 0), KD_ERROR_FILE_CORRUPT, "optimizer flag cleared");
    /* Layer count. */
    DAMAGE(sgd, put_u64(d.data + 16, 0), KD_ERROR_FILE_CORRUPT, "0 layers");
    DAMAGE(sgd, put_u64(d.data + 16, 1), KD_ERROR_FILE_CORRUPT, "1 layer");
    DAMAGE(sgd, put_u64(d.data + 16, 4097), KD_ERROR_FILE_CORRUPT, "4097 layers");
    DAMAGE(sgd, put_u64(d.data + 16, 5000), KD_ERROR_FILE_CORRUPT, "5000 layers");
    DAMAGE(sgd, put_u64(d.data + 16, UINT64_MAX), KD_ERROR_FILE_CORRUPT, "2^64 - 1 layers");
    /* Widths. */
    for (size_t k = 0; k < 3; k++) {
        DAMAGE(sgd, put_u64(d.data + l.widths + 8 * k, 0), KD_ERROR_FILE_CORRUPT, "a width 0");
        DAMAGE(sgd, put_u64(d.data + l.widths + 8 * k, ((uint64_t)1 << 28) + 1),
               KD_ERROR_FILE_CORRUPT, "a width 2^28 + 1");
        DAMAGE(sgd, put_u64(d.data + l.widths + 8 * k, (uint64_t)1 << 63), KD_ERROR_FILE_CORRUPT,
               "a width 2^63");
    }
    /* A width changed consistently with P elsewhere would need more data: the widths alone
     * changed make P disagree. */
    DAMAGE(sgd, put_u64(d.data + l.widths + 8, 4), KD_ERROR_FILE_CORRUPT, "width 3 -> 4");
    /* Parameter count. */
    DAMAGE(sgd, put_u64(d.data + l.parameter_count, 18), KD_ERROR_FILE_CORRUPT, "P + 1");
    DAMAGE(sgd, put_u64(d.data + l.parameter_count, 16), KD_ERROR_FILE_CORRUPT, "P - 1");
    DAMAGE(sgd, put_u64(d.data + l.parameter_count, 0), KD_ERROR_FILE_CORRUPT, "P = 0");
    DAMAGE(none, put_u64(d.data + l.parameter_count, (uint64_t)1 << 40), KD_ERROR_FILE_CORRUPT,
           "P = 2^40");
    /* Model settings. */
    DAMAGE(sgd, put_f64(d.data + l.input_dropout, 0.99), KD_ERROR_FILE_CORRUPT, "input dropout 0.99");
    DAMAGE(sgd, put_f64(d.data + l.hidden_dropout, 0.99), KD_ERROR_FILE_CORRUPT, "hidden dropout 0.99");
    DAMAGE(sgd, put_f64(d.data + l.input_dropout, -0.1), KD_ERROR_FILE_CORRUPT, "input dropout -0.1");
    DAMAGE(sgd, put_f64(d.data + l.hidden_dropout, NAN), KD_ERROR_FILE_CORRUPT, "hidden dropout NaN");
    DAMAGE(sgd, put_f64(d.data + l.max_norm, -1.0), KD_ERROR_FILE_CORRUPT, "max-norm -1");
    DAMAGE(sgd, put_f64(d.data + l.max_norm, INFINITY), KD_ERROR_FILE_CORRUPT, "max-norm inf");
    DAMAGE(sgd, put_f64(d.data + l.max_norm, 1e31), KD_ERROR_FILE_CORRUPT, "max-norm 1e31");
    /* Generator state all zero. */
    DAMAGE(sgd, memset(d.data + l.rng, 0, 32), KD_ERROR_FILE_CORRUPT, "generator state 0");
    /* Non-finite parameters and state. */
    DAMAGE(sgd, put_f32(d.data + l.parameters, NAN), KD_ERROR_FILE_CORRUPT, "NaN parameter 0");
    DAMAGE(sgd, put_f32(d.data + l.parameters + 4 * 16, NAN), KD_ERROR_FILE_CORRUPT,
           "NaN last parameter");
    DAMAGE(none, put_f32(d.data + l.parameters + 4 * 5, INFINITY), KD_ERROR_FILE_CORRUPT,
           "inf parameter");
    DAMAGE(none, put_f32(d.data + l.parameters + 4 * 7, -INFINITY), KD_ERROR_FILE_CORRUPT,
           "-inf parameter");
    DAMAGE(sgd, put_f32(d.data + l.state + 4 * 3, NAN), KD_ERROR_FILE_CORRUPT, "NaN momentum");
    DAMAGE(adam, put_f32(d.data + l.state + 4 * (17 + 2), INFINITY), KD_ERROR_FILE_CORRUPT,
           "inf second moment");
    /* Optimizer fields. */
    DAMAGE(sgd, put_u32(d.data + l.kind, 2), KD_ERROR_FILE_CORRUPT, "optimizer kind 2");
    DAMAGE(adam, put_u32(d.data + l.kind, 0), KD_ERROR_FILE_CORRUPT, "Adam-sized state, kind SGD");
    DAMAGE(sgd, put_u32(d.data + l.kind, 1), KD_ERROR_FILE_TRUNCATED, "SGD-sized state, kind Adam");
    DAMAGE(sgd, put_u32(d.data + l.reserved, 1), KD_ERROR_FILE_CORRUPT, "reserved 1");
    DAMAGE(sgd, put_f64(d.data + l.optimizer_params, -0.5), KD_ERROR_FILE_CORRUPT, "lr -0.5");
    DAMAGE(sgd, put_f64(d.data + l.optimizer_params, NAN), KD_ERROR_FILE_CORRUPT, "lr NaN");
    DAMAGE(sgd, put_f64(d.data + l.optimizer_params + 8, 1.5), KD_ERROR_FILE_CORRUPT, "momentum 1.5");
    DAMAGE(sgd, put_f64(d.data + l.optimizer_params + 24, 2e6), KD_ERROR_FILE_CORRUPT,
           "weight decay 2e6");
    DAMAGE(adam, put_f64(d.data + l.optimizer_params + 32, 1.0), KD_ERROR_FILE_CORRUPT, "beta1 1");
    DAMAGE(adam, put_f64(d.data + l.optimizer_params + 48, 2.0), KD_ERROR_FILE_CORRUPT, "epsilon 2");
    /* A stored CRC that is off. */
    d = copy_of(sgd, 0);
    d.data[d.size - 1] ^= 0x10;
    expect_bytes_failure(d.data, d.size, KD_ERROR_FILE_CORRUPT, "CRC off");
    free(d.data);
    d = copy_of(none, 0);
    d.data[l.parameters + 2] ^= 0x01; /* a parameter changed, CRC not fixed */
    expect_bytes_failure(d.data, d.size, KD_ERROR_FILE_CORRUPT, "parameter changed, CRC stale");
    free(d.data);

    /* Trailing garbage (with and without a CRC that covers it). */
    const size_t extras[] = {1, 4, 4 * 17};
    const bytes *sources[] = {&none, &sgd, &adam};
    for (size_t s = 0; s < 3; s++) {
        for (size_t e = 0; e < 3; e++) {
            d = copy_of(*sources[s], extras[e]);
            memset(d.data + d.size, 0, extras[e]);
            d.size += extras[e];
            expect_bytes_failure(d.data, d.size, KD_ERROR_FILE_CORRUPT, "trailing garbage");
            fix_crc(d);
            expect_bytes_failure(d.data, d.size, KD_ERROR_FILE_CORRUPT,
                                 "trailing garbage, CRC over it");
            free(d.data);
        }
    }
#undef DAMAGE
    free(none.data);
    free(adam.data);
    free(sgd.data);
}

/* The optimizer fields a loaded optimizer would use must be valid for its kind. The format
 * allows "each within its bounds, or 0 for one the kind does not use": Adam uses epsilon, whose
 * bounds are [1e-30, 1], so 0 is corrupt (kd_optimizer_set refuses it; an Adam step with it
 * divides 0 by 0 for parameters whose gradient has been 0). */
static void adam_epsilon_zero_is_corrupt(void **state)
{
    (void)state;
    static unsigned char data[1024]; /* static: nothing leaks if the check fails */
    bytes adam = small_file(KD_OPTIMIZER_ADAM, 1);
    assert_true(adam.size <= sizeof data);
    memcpy(data, adam.data, adam.size);
    const bytes d = {data, adam.size};
    free(adam.data);
    const layout l = layout_of(d);
    put_f64(d.data + l.optimizer_params + 8 * KD_OPTIMIZER_PARAM_EPSILON, 0.0);
    fix_crc(d);
    expect_bytes_failure(d.data, d.size, KD_ERROR_FILE_CORRUPT, "Adam epsilon 0");
}

/* Nesterov is a flag that kd_optimizer_set takes as 0 or 1 only: 0.5 in a file is not a valid
 * optimizer field. */
static void nesterov_half_is_corrupt(void **state)
{
    (void)state;
    static unsigned char data[1024];
    bytes sgd = small_file(KD_OPTIMIZER_SGD, 1);
    assert_true(sgd.size <= sizeof data);
    memcpy(data, sgd.data, sgd.size);
    const bytes d = {data, sgd.size};
    free(sgd.data);
    const layout l = layout_of(d);
    put_f64(d.data + l.optimizer_params + 8 * KD_OPTIMIZER_PARAM_NESTEROV, 0.5);
    fix_crc(d);
    expect_bytes_failure(d.data, d.size, KD_ERROR_FILE_CORRUPT, "Nesterov 0.5");
}

/* Loads bytes with a fixed CRC expecting `status`; frees them. */
static void expect_fixed_failure(bytes d, kd_status status, const char *what)
{
    fix_crc(d);
    expect_bytes_failure(d.data, d.size, status, what);
    free(d.data);
}

/* Loads bytes with a fixed CRC that must load, takes one optimizer step with zero gradients and
 * checks that the parameters stay finite and that the result saves; frees the bytes. */
static void expect_loads_and_steps(bytes d, const char *what)
{
    fix_crc(d);
    char path[256];
    path_of(path, sizeof path, "reachable.kdc");
    write_all(path, d.data, d.size);
    free(d.data);
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    const kd_status status = kd_checkpoint_load(&model, &opt, path, NULL);
    if (status != KD_OK)
        fail_msg("%s: status %d (%s), want KD_OK", what, (int)status, kd_status_string(status));
    const size_t p = kd_model_parameter_count(model);
    memset(grads_of(model), 0, p * sizeof(float));
    assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
    const float *w = params_of(model);
    for (size_t i = 0; i < p; i++)
        if (!isfinite(w[i]))
            fail_msg("%s: parameter %zu is %g after a step", what, i, (double)w[i]);
    assert_int_equal(kd_checkpoint_save(model, opt, path), KD_OK);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    unlink(path);
}

/* Optimizer states that no sequence of steps produces are corrupt, with a valid CRC: Adam's
 * second moments are sums of beta2 v and (1 - beta2) g^2, never negative nor -0.0; before the
 * first step (a step count of 0) the state is the +0.0 everywhere that creation sets. The
 * neighbouring states that steps do reach load, and a step keeps them finite. */
static void unreachable_optimizer_states_are_corrupt(void **state)
{
    (void)state;
    const bytes sgd = small_file(KD_OPTIMIZER_SGD, 1), adam = small_file(KD_OPTIMIZER_ADAM, 1);
    const layout l = layout_of(sgd);
    const size_t p = l.p, m2 = l.state + 4 * (p + 2), m3 = l.state + 4 * (p + 3);
    assert_true(get_f32(adam.data + m2) > 0.0f && get_f32(adam.data + l.state + 4 * 3) != 0.0f);
    assert_true(get_f32(sgd.data + l.state + 4 * 3) != 0.0f);
    bytes d;

    /* Adam's second moments. */
    d = copy_of(adam, 0);
    put_f32(d.data + m2, -get_f32(d.data + m2));
    expect_fixed_failure(d, KD_ERROR_FILE_CORRUPT, "a negative second moment");
    d = copy_of(adam, 0);
    put_f32(d.data + m2, -0.0f);
    expect_fixed_failure(d, KD_ERROR_FILE_CORRUPT, "a second moment of -0.0");
    /* Reachable: negative first moments and momentum; a second moment of 0 (g^2 underflows)
     * under a non-zero first moment. */
    d = copy_of(adam, 0);
    put_f32(d.data + l.state + 4 * 2, -1.5f);
    put_f32(d.data + m3, 0.0f);
    expect_loads_and_steps(d, "Adam: a negative first moment, a zero second moment");
    d = copy_of(sgd, 0);
    put_f32(d.data + l.state + 4 * 2, -1.5f);
    put_f32(d.data + l.state + 4 * 4, -0.0f);
    expect_loads_and_steps(d, "SGD: a negative momentum and a -0.0 one");

    /* A step count of 0 with the state of trained optimizers; with a zero state but one -0.0;
     * with the all-zero state of a new optimizer, which loads. */
    const bytes *trained[2] = {&sgd, &adam};
    for (size_t k = 0; k < 2; k++) {
        const size_t floats = (trained[k]->size - 4 - l.state) / 4;
        d = copy_of(*trained[k], 0);
        put_u64(d.data + l.steps, 0);
        expect_fixed_failure(d, KD_ERROR_FILE_CORRUPT, "steps 0, a trained state");
        d = copy_of(*trained[k], 0);
        put_u64(d.data + l.steps, 0);
        memset(d.data + l.state, 0, 4 * floats);
        put_f32(d.data + l.state + 4 * (floats - 1), -0.0f);
        expect_fixed_failure(d, KD_ERROR_FILE_CORRUPT, "steps 0, a zero state but one -0.0");
        d = copy_of(*trained[k], 0);
        put_u64(d.data + l.steps, 0);
        memset(d.data + l.state, 0, 4 * floats);
        expect_loads_and_steps(d, "steps 0, a zero state");
    }
    free(adam.data);
    free(sgd.data);
}

/* The step count saturates at 2^64 - 1 instead of wrapping. A checkpoint one step short of it
 * loads; its next step reaches the saturated count, which saves and loads again; a step from
 * there leaves the count where it is. */
static void saturated_step_count_loads(void **state)
{
    (void)state;
    bytes d = small_file(KD_OPTIMIZER_ADAM, 1);
    const layout l = layout_of(d);
    put_u64(d.data + l.steps, UINT64_MAX - 1);
    fix_crc(d);
    char path[256];
    path_of(path, sizeof path, "saturated.kdc");
    write_all(path, d.data, d.size);
    free(d.data);
    for (int round = 0; round < 2; round++) {
        kd_model *model = NULL;
        kd_optimizer *opt = NULL;
        const kd_status status = kd_checkpoint_load(&model, &opt, path, NULL);
        if (status != KD_OK)
            fail_msg("round %d: loading a step count of 2^64 - %d: %s", round, 2 - round,
                     kd_status_string(status));
        assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
        assert_int_equal(kd_checkpoint_save(model, opt, path), KD_OK);
        kd_optimizer_destroy(opt);
        kd_model_destroy(model);
        bytes saved = read_all(path);
        assert_true(get_u64(saved.data + l.steps) == UINT64_MAX);
        free(saved.data);
    }
    unlink(path);
}

/* A valid-looking header claiming a huge network in a small file: TRUNCATED, and no large
 * allocation (none at all, in fact) before the length check. */
static void lying_header(void **state)
{
    (void)state;
    unsigned char h[256];
    memset(h, 0, sizeof h);
    memcpy(h, "KDCKPT\r\n", 8);
    put_u32(h + 8, 1);
    put_u32(h + 12, 0);
    put_u64(h + 16, 2);
    const uint64_t big = (uint64_t)1 << 28;
    put_u64(h + 24, big);
    put_u64(h + 32, big);
    /* dropouts and max-norm 0 at 40 .. 63 */
    put_u64(h + 64, 1);
    put_u64(h + 72, 2);
    put_u64(h + 80, 3);
    put_u64(h + 88, 4);
    put_u64(h + 96, big * (big + 1)); /* consistent P */
    const size_t size = 104 + 4 * 16 + 4;
    for (size_t i = 0; i < 16; i++)
        put_f32(h + 104 + 4 * i, 0.5f);
    put_u32(h + size - 4, crc32_bitwise(h, size - 4));
    size_t largest = expect_bytes_failure(h, size, KD_ERROR_FILE_TRUNCATED, "2^28 x 2^28 header");
    assert_true(largest < ((size_t)1 << 20));
    /* Same with the optimizer flag (both state sizes are too large for the file). */
    put_u32(h + 12, 1);
    put_u32(h + size - 4, crc32_bitwise(h, size - 4));
    largest = expect_bytes_failure(h, size, KD_ERROR_FILE_TRUNCATED, "2^28 x 2^28 header, optimizer");
    assert_true(largest < ((size_t)1 << 20));

    /* 4096 layers announced, the file ending inside the width list. */
    put_u32(h + 12, 0);
    put_u64(h + 16, 4096);
    for (size_t k = 0; k < 20; k++)
        put_u64(h + 24 + 8 * k, 1);
    largest = expect_bytes_failure(h, 24 + 8 * 20, KD_ERROR_FILE_TRUNCATED, "4096 layers, 20 given");
    assert_true(largest < ((size_t)1 << 20));
}

/* A header whose widths make the parameter count overflow 64 bits and wrap to the P the file
 * stores: 257 widths of 2^28 - 1 then one of 256, i.e. 256 layers of (2^28 - 1) x 2^28 weights
 * and biases and one of 256 x 2^28: P = 256 (2^56 - 2^28) + 2^36 = 2^64, stored as 0. The
 * format says P must match the widths: FILE_CORRUPT. */
static void parameter_count_overflow(void **state)
{
    (void)state;
    enum { n = 258, size = 24 + 8 * n + 24 + 32 + 8 + 4 };
    static unsigned char h[size]; /* static: nothing leaks if the check fails */
    memset(h, 0, sizeof h);
    memcpy(h, "KDCKPT\r\n", 8);
    put_u32(h + 8, 1);
    put_u64(h + 16, n);
    for (size_t k = 0; k < n - 1; k++)
        put_u64(h + 24 + 8 * k, ((uint64_t)1 << 28) - 1);
    put_u64(h + 24 + 8 * (n - 1), 256);
    const size_t settings = 24 + 8 * n;
    put_u64(h + settings + 24, 1); /* generator state not all zero */
    put_u64(h + settings + 56, 0); /* P: the true count mod 2^64 */
    put_u32(h + size - 4, crc32_bitwise(h, size - 4));
    size_t largest = expect_bytes_failure(h, size, KD_ERROR_FILE_CORRUPT, "P wrapping to 0");
    assert_true(largest < ((size_t)1 << 20));
}

static void bad_paths_and_arguments(void **state)
{
    (void)state;
    char path[256];
    path_of(path, sizeof path, "does-not-exist.kdc");
    expect_load_failure(path, KD_ERROR_IO, "nonexistent path");
    path_of(path, sizeof path, "no-such-dir/file.kdc");
    expect_load_failure(path, KD_ERROR_IO, "nonexistent directory");
    path_of(path, sizeof path, "a-directory");
    assert_int_equal(mkdir(path, 0700), 0);
    expect_load_failure(path, KD_ERROR_IO, "a directory");
    expect_load_failure(directory, KD_ERROR_IO, "the scratch directory");
    rmdir(path);
    /* An empty file is truncated (it ends before the magic). */
    expect_bytes_failure((const unsigned char *)"", 0, KD_ERROR_FILE_TRUNCATED, "empty file");
    expect_bytes_failure((const unsigned char *)"KDC", 3, KD_ERROR_FILE_TRUNCATED, "3 bytes of magic");
    expect_bytes_failure((const unsigned char *)"XYZ", 3, KD_ERROR_FILE_TRUNCATED,
                         "3 bytes, not the magic");
    expect_bytes_failure((const unsigned char *)"NOT A CHECKPOINT FILE AT ALL, REALLY", 36,
                         KD_ERROR_FILE_CORRUPT, "text");

    bytes b = small_file(KD_OPTIMIZER_SGD, 1);
    path_of(path, sizeof path, "valid.kdc");
    write_all(path, b.data, b.size);
    free(b.data);
    kd_model *model = SENTINEL_MODEL;
    kd_optimizer *opt = SENTINEL_OPTIMIZER;
    assert_int_equal(kd_checkpoint_load(NULL, &opt, path, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_checkpoint_load(&model, &opt, NULL, NULL), KD_ERROR_NULL_POINTER);
    kd_allocator bad = {sizeof(kd_allocator) - 1, kd_test_allocate, kd_test_release, NULL};
    assert_int_equal(kd_checkpoint_load(&model, &opt, path, &bad), KD_ERROR_INVALID_ARGUMENT);
    kd_allocator no_release = {sizeof(kd_allocator), kd_test_allocate, NULL, NULL};
    assert_int_equal(kd_checkpoint_load(&model, &opt, path, &no_release), KD_ERROR_INVALID_ARGUMENT);
    assert_ptr_equal(model, SENTINEL_MODEL);
    assert_ptr_equal(opt, SENTINEL_OPTIMIZER);
    assert_int_equal(kd_checkpoint_load(&model, &opt, path, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(NULL, opt, path), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_checkpoint_save(model, opt, NULL), KD_ERROR_NULL_POINTER);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    unlink(path);
}

/* Runs kd_checkpoint_load(path) in a child process, a session leader without a controlling
 * terminal, that alarm() kills after 10 s, so that a load that blocks fails the test instead
 * of hanging it. Returns the load's status; a failed load must leave the handles alone, and no
 * load may give the process a controlling terminal. */
static kd_status load_status_in_child(const char *path)
{
    fflush(NULL);
    const pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        alarm(10);
        if (setsid() < 0)
            _exit(253);
        kd_model *model = SENTINEL_MODEL;
        kd_optimizer *opt = SENTINEL_OPTIMIZER;
        const kd_status status = kd_checkpoint_load(&model, &opt, path, NULL);
        const int untouched = model == SENTINEL_MODEL && opt == SENTINEL_OPTIMIZER;
        if (open("/dev/tty", O_RDONLY | O_NOCTTY) >= 0)
            _exit(254);
        _exit(status == KD_OK || untouched ? (int)status : 255);
    }
    int wait_status = 0;
    assert_int_equal(waitpid(child, &wait_status, 0), child);
    if (WIFSIGNALED(wait_status))
        fail_msg("loading %s: killed by signal %d (%d is SIGALRM: the load blocked)", path,
                 WTERMSIG(wait_status), SIGALRM);
    assert_true(WIFEXITED(wait_status));
    const int code = WEXITSTATUS(wait_status);
    if (code >= 253)
        fail_msg("loading %s: %s", path,
                 code == 253   ? "setsid failed"
                 : code == 254 ? "the terminal became the process's controlling terminal"
                               : "a failed load wrote the handles");
    return (kd_status)code;
}

/* A FIFO is not a regular file: KD_ERROR_IO at once, whether or not a writer has it open
 * (opening it for reading alone would block until one does). */
static void fifo_is_refused_without_blocking(void **state)
{
    (void)state;
    char path[256];
    path_of(path, sizeof path, "fifo.kdc");
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_int_equal(load_status_in_child(path), KD_ERROR_IO);
    /* With a writer (non-blocking, so that this process does not wait for a reader). */
    const int writer = open(path, O_RDWR | O_NONBLOCK);
    assert_true(writer >= 0);
    assert_int_equal(load_status_in_child(path), KD_ERROR_IO);
    close(writer);
    unlink(path);
}

/* A terminal is not a regular file either: KD_ERROR_IO, and opening it to find out does not
 * make it the controlling terminal of a process that has none (the child is a session leader
 * without one). Skipped where no pseudo-terminal can be had. */
static void terminal_is_refused_without_becoming_controlling(void **state)
{
    (void)state;
    const int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0 || ptsname(master) == NULL) {
        print_message("no pseudo-terminal: skipped\n");
        if (master >= 0)
            close(master);
        return;
    }
    char path[256];
    snprintf(path, sizeof path, "%s", ptsname(master));
    assert_int_equal(load_status_in_child(path), KD_ERROR_IO);
    close(master);
}

/* --- 3. saving --------------------------------------------------------------------------------- */

static int host_forward(void *user, const float *inputs, size_t rows, kd_mode mode, float *logits)
{
    (void)user, (void)inputs, (void)mode;
    memset(logits, 0, rows * 2 * sizeof *logits);
    return 0;
}

static int host_backward(void *user, const float *grad_logits, size_t rows)
{
    (void)user, (void)grad_logits, (void)rows;
    return 0;
}

static float host_storage[2][6];
static float *host_parameters(void *user)
{
    (void)user;
    return host_storage[0];
}

static float *host_gradients(void *user)
{
    (void)user;
    return host_storage[1];
}

static void save_refusals(void **state)
{
    (void)state;
    char path[256];
    path_of(path, sizeof path, "refused.kdc");

    /* A host network cannot be saved. */
    kd_model_callbacks cb = {sizeof(kd_model_callbacks), host_forward, host_backward,
                             host_parameters, host_gradients};
    kd_model *host = NULL;
    assert_int_equal(kd_model_create_host(&host, &cb, NULL, 2, 2, 6, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(host, NULL, path), KD_ERROR_UNSUPPORTED);
    assert_false(exists(path));

    /* An optimizer for another model size. */
    const size_t widths[] = {2, 3, 2}, other_widths[] = {2, 4, 2};
    kd_model *model = NULL, *other = NULL;
    kd_optimizer *other_opt = NULL, *host_opt = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, NULL), KD_OK);
    assert_int_equal(kd_model_create_dense(&other, other_widths, 3, 1, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&other_opt, KD_OPTIMIZER_ADAM, other, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&host_opt, KD_OPTIMIZER_SGD, host, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(model, other_opt, path), KD_ERROR_SHAPE_MISMATCH);
    assert_int_equal(kd_checkpoint_save(model, host_opt, path), KD_ERROR_SHAPE_MISMATCH);
    assert_false(exists(path));

    /* Non-finite parameters: refused, no file, and an existing file under the name stays. */
    float *w = params_of(model);
    const float saved = w[4];
    w[4] = NAN;
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_ERROR_NONFINITE_INPUT);
    assert_false(exists(path));
    w[4] = INFINITY;
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_ERROR_NONFINITE_INPUT);
    assert_false(exists(path));
    w[4] = saved;
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_OK);
    bytes before = read_all(path);
    w[16] = -INFINITY;
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_ERROR_NONFINITE_INPUT);
    bytes after = read_all(path);
    assert_int_equal(before.size, after.size);
    assert_memory_equal(before.data, after.data, before.size);
    free(after.data);
    free(before.data);
    w[16] = 0.0f;
    unlink(path);

    /* Directories that do not exist, a parent that is a regular file, a path that is a
     * directory. */
    char bad[300];
    path_of(bad, sizeof bad, "missing/dir/model.kdc");
    assert_int_equal(kd_checkpoint_save(model, NULL, bad), KD_ERROR_IO);
    char file[256];
    path_of(file, sizeof file, "plain-file");
    write_all(file, (const unsigned char *)"x", 1);
    snprintf(bad, sizeof bad, "%s/model.kdc", file);
    assert_int_equal(kd_checkpoint_save(model, NULL, bad), KD_ERROR_IO);
    char dir_path[256];
    path_of(dir_path, sizeof dir_path, "a-dir");
    assert_int_equal(mkdir(dir_path, 0700), 0);
    assert_int_equal(kd_checkpoint_save(model, NULL, dir_path), KD_ERROR_IO);
    rmdir(dir_path);
    unlink(file);
    assert_int_equal(temporary_files(), 0);

    kd_optimizer_destroy(host_opt);
    kd_optimizer_destroy(other_opt);
    kd_model_destroy(other);
    kd_model_destroy(model);
    kd_model_destroy(host);
}

/* A save whose optimizer state is not finite (NaN gradients went through a step) must not
 * produce a file that kd_checkpoint_load then refuses: it either fails (no file) or the file
 * loads. */
static void save_nonfinite_optimizer_state(void **state)
{
    (void)state;
    const size_t widths[] = {2, 3, 2};
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 1, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(&opt, KD_OPTIMIZER_SGD, model, NULL), KD_OK);
    assert_int_equal(kd_optimizer_set(opt, KD_OPTIMIZER_PARAM_MOMENTUM, 0.9), KD_OK);
    float *w = params_of(model), *g = grads_of(model);
    float copy[17];
    memcpy(copy, w, sizeof copy);
    g[0] = NAN;
    assert_int_equal(kd_optimizer_step(opt, model), KD_OK);
    memcpy(w, copy, sizeof copy); /* the host restores its parameters; the momentum stays NaN */
    char path[256];
    path_of(path, sizeof path, "nan-state.kdc");
    kd_status saved = kd_checkpoint_save(model, opt, path);
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
    if (saved == KD_OK) {
        kd_model *loaded = NULL;
        kd_optimizer *loaded_opt = NULL;
        kd_status status = kd_checkpoint_load(&loaded, &loaded_opt, path, NULL);
        unlink(path);
        if (status == KD_OK) {
            kd_optimizer_destroy(loaded_opt);
            kd_model_destroy(loaded);
        } else {
            fail_msg("save accepted a NaN momentum buffer (KD_OK) and load refuses the file: %s",
                     kd_status_string(status));
        }
    } else {
        assert_false(exists(path));
    }
}

/* A save that fails while writing or when flushing its buffered file (the file size limit,
 * which root cannot bypass, makes the write fail with EFBIG) leaves the previous checkpoint
 * under the name intact, and no temporary file. */
static void save_is_atomic(void **state)
{
    (void)state;
    const size_t widths_a[] = {2, 3, 2}, widths_b[] = {8, 64, 64, 8};
    kd_model *a = NULL, *b = NULL;
    assert_int_equal(kd_model_create_dense(&a, widths_a, 3, 1, NULL), KD_OK);
    assert_int_equal(kd_model_create_dense(&b, widths_b, 4, 2, NULL), KD_OK);
    char path[256];
    path_of(path, sizeof path, "atomic.kdc");
    assert_int_equal(kd_checkpoint_save(a, NULL, path), KD_OK);
    bytes before = read_all(path);
    assert_true(before.size < 1024);

    /* b's file is ~ 20 KiB: writing it fails midway. a's own file is held in the stream's
     * buffer until the flush, which fails. */
    const struct {
        const kd_model *model;
        rlim_t limit;
    } failing[] = {{b, 1024}, {a, 16}};
    for (size_t k = 0; k < sizeof failing / sizeof failing[0]; k++) {
        struct rlimit old_limit, limit;
        assert_int_equal(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
        void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
        limit = old_limit;
        limit.rlim_cur = failing[k].limit;
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &limit), 0);
        kd_status status = kd_checkpoint_save(failing[k].model, NULL, path);
        assert_int_equal(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
        signal(SIGXFSZ, old_handler);
        assert_int_equal(status, KD_ERROR_IO);
        bytes after = read_all(path);
        assert_int_equal(after.size, before.size);
        assert_memory_equal(after.data, before.data, before.size);
        free(after.data);
        assert_int_equal(temporary_files(), 0);
    }
    kd_model *loaded = NULL;
    assert_int_equal(kd_checkpoint_load(&loaded, NULL, path, NULL), KD_OK);
    assert_int_equal(kd_model_parameter_count(loaded), kd_model_parameter_count(a));
    assert_memory_equal(params_of(loaded), params_of(a), kd_model_parameter_count(a) * sizeof(float));
    kd_model_destroy(loaded);

    /* Without the limit the same save goes through. */
    assert_int_equal(kd_checkpoint_save(b, NULL, path), KD_OK);
    assert_int_equal(kd_checkpoint_load(&loaded, NULL, path, NULL), KD_OK);
    assert_int_equal(kd_model_parameter_count(loaded), kd_model_parameter_count(b));
    kd_model_destroy(loaded);
    assert_int_equal(temporary_files(), 0);

    free(before.data);
    kd_model_destroy(b);
    kd_model_destroy(a);
    unlink(path);
}

/* The permission bits (and owner and group) of a file. */
static void assert_mode_and_owner(const char *path, mode_t mode, uid_t uid, gid_t gid)
{
    struct stat info;
    assert_int_equal(stat(path, &info), 0);
    if ((info.st_mode & 07777) != mode || info.st_uid != uid || info.st_gid != gid)
        fail_msg("%s: mode %04o owner %u:%u, want %04o %u:%u", path,
                 (unsigned)(info.st_mode & 07777), (unsigned)info.st_uid, (unsigned)info.st_gid,
                 (unsigned)mode, (unsigned)uid, (unsigned)gid);
}

/* A new file's mode is 0666 less the umask. Replacing a checkpoint keeps its permission bits
 * whatever the umask, and its owner and group (checked as root, who may set any). A process
 * that may not give the new file the old owner and group (an unprivileged child replacing
 * root's file in a directory open to all) keeps its own, and of the old permissions only the
 * owner's. */
static void saved_file_mode_and_owner(void **state)
{
    (void)state;
    const size_t widths[] = {2, 2};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 2, 1, NULL), KD_OK);
    char path[256];
    path_of(path, sizeof path, "mode.kdc");
    const mode_t previous_mask = umask(022);
    const mode_t new_masks[3] = {022, 077, 002}, new_modes[3] = {0644, 0600, 0664};
    for (int i = 0; i < 3; i++) {
        umask(new_masks[i]);
        unlink(path);
        assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_OK);
        assert_mode_and_owner(path, new_modes[i], geteuid(), getegid());
    }
    const mode_t masks[5] = {022, 077, 000, 022, 027}, modes[5] = {0600, 0644, 0640, 0400, 0755};
    for (int k = 0; k < 5; k++) {
        assert_int_equal(chmod(path, modes[k]), 0);
        umask(masks[k]);
        assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_OK);
        assert_mode_and_owner(path, modes[k], geteuid(), getegid());
    }
    umask(previous_mask);
    if (geteuid() != 0) {
        print_message("not root: owner and group not checked\n");
    } else {
        const uid_t uid = 4242;
        const gid_t gid = 4343;
        assert_int_equal(chown(path, uid, gid), 0);
        assert_int_equal(chmod(path, 0640), 0);
        assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_OK);
        assert_mode_and_owner(path, 0640, uid, gid);

        char shared[] = "/tmp/kd_test_owner_XXXXXX", root_file[64];
        assert_non_null(mkdtemp(shared));
        assert_int_equal(chmod(shared, 0777), 0);
        snprintf(root_file, sizeof root_file, "%s/root.kdc", shared);
        assert_int_equal(kd_checkpoint_save(model, NULL, root_file), KD_OK);
        assert_int_equal(chmod(root_file, 0664), 0);
        fflush(NULL);
        const pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0)
            _exit(setgid(gid) == 0 && setuid(uid) == 0
                          && kd_checkpoint_save(model, NULL, root_file) == KD_OK
                      ? 0
                      : 1);
        int status = 0;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        assert_mode_and_owner(root_file, 0600, uid, gid);
        assert_int_equal(kd_test_count_entries(shared, ".tmp-"), 0);
        assert_int_equal(unlink(root_file), 0);
        assert_int_equal(rmdir(shared), 0);
    }
    assert_int_equal(temporary_files(), 0);
    assert_int_equal(unlink(path), 0);
    kd_model_destroy(model);
}

/* A small model saved and loaded back under `path`: KD_OK both ways, the same parameters, and
 * no temporary file left in the scratch directory. */
static void expect_saves_and_loads(const char *path)
{
    const size_t widths[] = {2, 3, 2};
    kd_model *model = NULL, *loaded = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 8, NULL), KD_OK);
    const kd_status status = kd_checkpoint_save(model, NULL, path);
    if (status != KD_OK)
        fail_msg("saving a %zu-byte name: %s", strlen(path) - strlen(directory) - 1,
                 kd_status_string(status));
    assert_int_equal(kd_checkpoint_load(&loaded, NULL, path, NULL), KD_OK);
    assert_same_model(model, loaded);
    kd_model_destroy(loaded);
    kd_model_destroy(model);
    assert_int_equal(temporary_files(), 0);
}

/* A name of `length` bytes: `first`, then `rest` repeated while it fits, then 'z's. */
static void long_name(char *out, size_t size, const char *first, const char *rest, size_t length)
{
    path_of(out, size, first);
    size_t n = strlen(out);
    const size_t end = strlen(directory) + 1 + length;
    assert_true(end < size);
    while (n + strlen(rest) <= end) {
        memcpy(out + n, rest, strlen(rest));
        n += strlen(rest);
    }
    while (n < end)
        out[n++] = 'z';
    out[n] = '\0';
}

/* Every name the file system takes (NAME_MAX = 255 bytes) can be saved under: the temporary
 * file's name does not grow with it. One byte more is the file system's refusal, KD_ERROR_IO. */
static void longest_names_save(void **state)
{
    (void)state;
    char path[512];
    const size_t lengths[] = {200, 240, 250, 254, 255};
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        long_name(path, sizeof path, "n", "a", lengths[k]);
        expect_saves_and_loads(path);
        unlink(path);
    }
    long_name(path, sizeof path, "u", "\xc3\xa9", 255); /* "ué...é": two bytes a character */
    expect_saves_and_loads(path);
    unlink(path);
    long_name(path, sizeof path, "n", "a", 256);
    const size_t widths[] = {2, 2};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 2, 8, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_ERROR_IO);
    kd_model_destroy(model);
    assert_int_equal(temporary_files(), 0);
}

/* The single entry of the scratch directory whose name holds `part`, copied into `out`. */
static void only_entry_with(const char *part, char *out, size_t size)
{
    DIR *d = opendir(directory);
    assert_non_null(d);
    size_t count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, part) != NULL && count++ == 0)
            snprintf(out, size, "%s", e->d_name);
    closedir(d);
    assert_int_equal(count, 1);
}

/* 1 if the bytes are UTF-8: whole characters only. */
static int whole_utf8(const unsigned char *s, size_t n)
{
    for (size_t i = 0; i < n;) {
        const size_t len = s[i] < 0x80 ? 1 : (s[i] & 0xE0) == 0xC0 ? 2 : (s[i] & 0xF0) == 0xE0 ? 3
                                         : (s[i] & 0xF8) == 0xF0 ? 4 : 0;
        if (len == 0 || i + len > n)
            return 0;
        for (size_t k = 1; k < len; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += len;
    }
    return 1;
}

/* The temporary file itself, caught by killing a save midway (SIGXFSZ from a 16-byte file
 * size limit) in a child: it sits in the checkpoint's directory, its name is short, starts
 * with "." and a prefix of the checkpoint's name cut at a character boundary, and is UTF-8
 * when the name is. */
static void temporary_name_is_short(void **state)
{
    (void)state;
    char path[512];
    long_name(path, sizeof path, "u", "\xc3\xa9", 255); /* "ué...é" */
    const char *name = path + strlen(directory) + 1;
    const size_t widths[] = {8, 64, 8};
    kd_model *model = NULL;
    assert_int_equal(kd_model_create_dense(&model, widths, 3, 8, NULL), KD_OK);
    fflush(NULL);
    const pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        const struct rlimit no_core = {0, 0}, small = {16, 16};
        setrlimit(RLIMIT_CORE, &no_core);
        signal(SIGXFSZ, SIG_DFL);
        setrlimit(RLIMIT_FSIZE, &small);
        _exit(kd_checkpoint_save(model, NULL, path) == KD_OK ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    kd_model_destroy(model);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGXFSZ)
        fail_msg("the save was not killed by SIGXFSZ (status %d)", status);
    char temporary[300];
    only_entry_with(".tmp-", temporary, sizeof temporary);
    const size_t length = strlen(temporary);
    print_message("temporary file of a 255-byte name: %s (%zu bytes)\n", temporary, length);
    assert_true(length <= 64);
    assert_int_equal(temporary[0], '.');
    const size_t prefix = (size_t)(strstr(temporary, ".tmp-") - temporary) - 1;
    assert_true(prefix > 0);
    assert_memory_equal(temporary + 1, name, prefix);
    assert_true(whole_utf8((const unsigned char *)temporary, length));
    char leftover[600];
    path_of(leftover, sizeof leftover, temporary);
    assert_int_equal(unlink(leftover), 0);
    assert_false(exists(path));
}

/* The bytes of a model's checkpoint (no optimizer), saved under a scratch name. */
static bytes checkpoint_bytes(const kd_model *model)
{
    char path[256];
    path_of(path, sizeof path, "reference.kdc");
    assert_int_equal(kd_checkpoint_save(model, NULL, path), KD_OK);
    bytes b = read_all(path);
    unlink(path);
    return b;
}

/* The file at `path` holds exactly `expected`. */
static void assert_file_holds(const char *path, bytes expected)
{
    bytes now = read_all(path);
    assert_int_equal(now.size, expected.size);
    assert_memory_equal(now.data, expected.data, now.size);
    free(now.data);
}

/* `path` is still a symbolic link to `target`. */
static void assert_link_to(const char *path, const char *target)
{
    struct stat info;
    assert_int_equal(lstat(path, &info), 0);
    assert_true(S_ISLNK(info.st_mode));
    char got[512];
    const ssize_t n = readlink(path, got, sizeof got - 1);
    assert_true(n > 0);
    got[n] = '\0';
    assert_string_equal(got, target);
}

/* Saving through a symbolic link replaces the file the link (or chain of links, relative
 * targets read from each link's directory) finally names, and keeps the links; a dangling link
 * gets its target created. A loop of links, and a link to (or a path of) something that is not
 * a regular file, are KD_ERROR_IO with nothing changed. */
static void save_follows_symbolic_links(void **state)
{
    (void)state;
    const size_t widths[] = {2, 3, 2};
    kd_model *a = NULL, *b = NULL;
    assert_int_equal(kd_model_create_dense(&a, widths, 3, 1, NULL), KD_OK);
    assert_int_equal(kd_model_create_dense(&b, widths, 3, 2, NULL), KD_OK);
    const bytes a_file = checkpoint_bytes(a), b_file = checkpoint_bytes(b);
    enum { REAL, SUB, FIFO, LINK, SUB_LINK, ABSOLUTE, DANGLING, LOOP_A, LOOP_B, TO_FIFO, TO_DIR,
           CREATED, PATHS };
    static const char *const names[PATHS] = {
        "real.kdc", "sub", "fifo", "link.kdc", "sub/link.kdc", "absolute.kdc", "dangling.kdc",
        "loop-a", "loop-b", "to-fifo.kdc", "to-dir.kdc", "sub/created.kdc"};
    /* What each link (from LINK on) points to; ABSOLUTE's is the full path of REAL. */
    static const char *const targets[PATHS] = {
        [LINK] = "real.kdc", [SUB_LINK] = "../link.kdc", [DANGLING] = "sub/created.kdc",
        [LOOP_A] = "loop-b", [LOOP_B] = "loop-a", [TO_FIFO] = "fifo", [TO_DIR] = "sub"};
    char path[PATHS][256];
    for (int k = 0; k < PATHS; k++)
        path_of(path[k], sizeof path[k], names[k]);
    assert_int_equal(kd_checkpoint_save(a, NULL, path[REAL]), KD_OK);
    assert_int_equal(mkdir(path[SUB], 0700), 0);
    assert_int_equal(mkfifo(path[FIFO], 0600), 0);
    for (int k = LINK; k < CREATED; k++)
        assert_int_equal(symlink(k == ABSOLUTE ? path[REAL] : targets[k], path[k]), 0);

    /* Through one link, a chain of two (the second relative to its own directory), an
     * absolute link: the target changes, every link stays. */
    const int through[3] = {LINK, SUB_LINK, ABSOLUTE};
    for (int k = 0; k < 3; k++) {
        const bytes expected = k % 2 == 0 ? b_file : a_file;
        assert_int_equal(kd_checkpoint_save(k % 2 == 0 ? b : a, NULL, path[through[k]]), KD_OK);
        assert_file_holds(path[REAL], expected);
    }
    assert_int_equal(kd_test_count_entries(path[SUB], ".tmp-"), 0);
    /* A dangling link: its target is created. */
    assert_int_equal(kd_checkpoint_save(a, NULL, path[DANGLING]), KD_OK);
    assert_file_holds(path[CREATED], a_file);
    /* A loop; links to a FIFO and to a directory; a FIFO itself: refused, nothing changes. */
    const int refused[4] = {LOOP_A, TO_FIFO, TO_DIR, FIFO};
    for (int k = 0; k < 4; k++)
        assert_int_equal(kd_checkpoint_save(a, NULL, path[refused[k]]), KD_ERROR_IO);
    struct stat info;
    assert_int_equal(lstat(path[FIFO], &info), 0);
    assert_true(S_ISFIFO(info.st_mode));
    for (int k = LINK; k < CREATED; k++)
        assert_link_to(path[k], k == ABSOLUTE ? path[REAL] : targets[k]);
    assert_int_equal(temporary_files(), 0);

    for (int k = PATHS - 1; k >= 0; k--)
        assert_int_equal(k == SUB ? rmdir(path[k]) : unlink(path[k]), 0);
    free(b_file.data);
    free(a_file.data);
    kd_model_destroy(b);
    kd_model_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(round_trip_sgd),
        cmocka_unit_test(round_trip_adam),
        cmocka_unit_test(round_trip_optional_optimizer),
        cmocka_unit_test(load_allocation_failures),
        cmocka_unit_test(file_layout_is_little_endian),
        cmocka_unit_test(every_truncation),
        cmocka_unit_test(every_byte_flip),
        cmocka_unit_test(damaged_fields),
        cmocka_unit_test(adam_epsilon_zero_is_corrupt),
        cmocka_unit_test(nesterov_half_is_corrupt),
        cmocka_unit_test(unreachable_optimizer_states_are_corrupt),
        cmocka_unit_test(saturated_step_count_loads),
        cmocka_unit_test(lying_header),
        cmocka_unit_test(parameter_count_overflow),
        cmocka_unit_test(bad_paths_and_arguments),
        cmocka_unit_test(fifo_is_refused_without_blocking),
        cmocka_unit_test(terminal_is_refused_without_becoming_controlling),
        cmocka_unit_test(save_refusals),
        cmocka_unit_test(save_nonfinite_optimizer_state),
        cmocka_unit_test(save_is_atomic),
        cmocka_unit_test(saved_file_mode_and_owner),
        cmocka_unit_test(longest_names_save),
        cmocka_unit_test(temporary_name_is_short),
        cmocka_unit_test(save_follows_symbolic_links),
    };
    return cmocka_run_group_tests(tests, setup_directory, remove_directory);
}
