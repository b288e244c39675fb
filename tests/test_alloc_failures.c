/* Allocation failures of the entry points that the other tests' walks do not reach (those walk
 * kd_loss_create/reserve/compute on one thread in test_loss_handle.c, the model-optimizer-
 * loss-trainer chain and its first step in test_model.c, kd_checkpoint_load in
 * test_checkpoint.c).
 *
 * The pattern (libuv's): for n = 1, 2, 3, ... a fresh fixture is built with a counting host
 * allocator, the allocator is told to refuse its n-th allocation from now on, and the operation
 * runs. Until n passes the operation's last allocation it must return KD_ERROR_OUT_OF_MEMORY,
 * leave what the caller can see as it was, and leak nothing (every block is given back once
 * the fixture is destroyed); the handles must still work afterwards. The walk ends at the first
 * n that the operation does not reach, which must then succeed. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <kd.h>

#include "support.h"

/* --- the walk ------------------------------------------------------------------------------ */

typedef struct scenario {
    const char *name;
    /* Builds the fixture with the allocator (never failing yet). */
    void (*setup)(void *fixture, const kd_allocator *allocator);
    /* The operation under test. */
    kd_status (*operation)(void *fixture);
    /* After a failed operation: asserts that nothing the caller can see changed, and that the
     * handles still work (the allocator no longer fails by then). */
    void (*check_unchanged)(void *fixture);
    void (*teardown)(void *fixture);
} scenario;

static void walk(const scenario *s, void *fixture)
{
    size_t n = 1;
    for (;; n++) {
        if (n > 1000)
            fail_msg("%s: the walk does not end", s->name);
        kd_test_allocator counter = {0};
        kd_allocator allocator;
        kd_test_allocator_hook(&counter, &allocator);
        s->setup(fixture, &allocator);
        counter.fail_at = counter.calls + n;
        kd_status status = s->operation(fixture);
        const int reached = counter.calls >= counter.fail_at;
        counter.fail_at = 0;
        if (status == KD_OK) {
            if (reached)
                fail_msg("%s: allocation %zu was refused, yet KD_OK", s->name, n);
        } else {
            if (status != KD_ERROR_OUT_OF_MEMORY || !reached)
                fail_msg("%s: allocation %zu failing: status %d (%s)", s->name, n, (int)status,
                         kd_status_string(status));
            s->check_unchanged(fixture);
        }
        s->teardown(fixture);
        if (counter.live != 0 || counter.bad_release)
            fail_msg("%s: allocation %zu failing: %zu blocks leaked%s", s->name, n, counter.live,
                     counter.bad_release ? ", a bad release" : "");
        if (status == KD_OK)
            break;
    }
    assert_true(n > 1); /* at least one allocation failed on the way */
    print_message("%s: %zu allocation failure(s), each KD_ERROR_OUT_OF_MEMORY\n", s->name, n - 1);
}

/* --- fixtures ------------------------------------------------------------------------------ */

enum { IN = 5, HIDDEN = 7, OUT = 3, SMALL = 4, LARGE = 64 };
static const size_t widths[] = {IN, HIDDEN, HIDDEN, OUT};

typedef struct fixture {
    kd_model *model;
    kd_optimizer *opt;
    kd_loss *loss;
    kd_trainer *trainer;
    kd_model *created; /* output of a create under test */
    kd_optimizer *created_opt;
    float x[LARGE * IN], logits[LARGE * OUT], before_logits[SMALL * OUT];
    int32_t labels[LARGE];
    float *before_params;
    char directory[64], path[128];
    unsigned char *before_file;
    size_t before_size;
} fixture;

static char sentinel_storage[2];
#define SENTINEL_MODEL ((kd_model *)(void *)&sentinel_storage[0])
#define SENTINEL_OPTIMIZER ((kd_optimizer *)(void *)&sentinel_storage[1])

static float *params_of(kd_model *model)
{
    float *p = NULL;
    assert_int_equal(kd_model_parameters(model, &p), KD_OK);
    return p;
}

static void make_inputs(fixture *f)
{
    kd_test_rng rng = {77};
    for (size_t i = 0; i < LARGE * IN; i++)
        f->x[i] = (float)kd_test_normal(&rng);
    for (size_t r = 0; r < LARGE; r++)
        f->labels[r] = (int32_t)(r % OUT);
}

/* A model whose buffers hold SMALL rows, and its logits on the first SMALL rows. */
static void setup_model(void *p, const kd_allocator *a)
{
    fixture *f = p;
    make_inputs(f);
    assert_int_equal(kd_model_create_dense(&f->model, widths, 4, 3, a), KD_OK);
    assert_int_equal(kd_model_reserve(f->model, SMALL), KD_OK);
    assert_int_equal(kd_model_forward(f->model, f->x, SMALL, KD_MODE_INFERENCE, f->before_logits), KD_OK);
    const size_t count = kd_model_parameter_count(f->model);
    f->before_params = malloc(count * sizeof(float));
    assert_non_null(f->before_params);
    memcpy(f->before_params, params_of(f->model), count * sizeof(float));
}

static void teardown_all(void *p)
{
    fixture *f = p;
    kd_trainer_destroy(f->trainer);
    kd_loss_destroy(f->loss);
    kd_optimizer_destroy(f->opt);
    kd_model_destroy(f->model);
    free(f->before_params);
    f->trainer = NULL;
    f->loss = NULL;
    f->opt = NULL;
    f->model = NULL;
    f->before_params = NULL;
}

static void assert_parameters_unchanged(fixture *f)
{
    assert_memory_equal(params_of(f->model), f->before_params,
                        kd_model_parameter_count(f->model) * sizeof(float));
}

/* The model computes what it did before, on SMALL rows, in both modes. */
static void assert_model_works(fixture *f)
{
    assert_parameters_unchanged(f);
    float logits[SMALL * OUT];
    assert_int_equal(kd_model_forward(f->model, f->x, SMALL, KD_MODE_INFERENCE, logits), KD_OK);
    assert_memory_equal(logits, f->before_logits, sizeof logits);
    assert_int_equal(kd_model_forward(f->model, f->x, SMALL, KD_MODE_TRAINING, logits), KD_OK);
    assert_int_equal(kd_model_backward(f->model, logits, SMALL), KD_OK);
}

/* --- kd_model_reserve growing the batch buffers -------------------------------------------- */

static kd_status reserve_model(void *p)
{
    fixture *f = p;
    return kd_model_reserve(f->model, LARGE);
}

static void model_still_works(void *p)
{
    fixture *f = p;
    assert_model_works(f);
    assert_int_equal(kd_model_reserve(f->model, LARGE), KD_OK);
    assert_int_equal(kd_model_forward(f->model, f->x, LARGE, KD_MODE_TRAINING, f->logits), KD_OK);
}

static void model_reserve_growth(void **state)
{
    (void)state;
    static fixture f;
    const scenario s = {"kd_model_reserve growth", setup_model, reserve_model, model_still_works,
                        teardown_all};
    walk(&s, &f);
}

/* --- kd_trainer_reserve: the model's, the loss's and the trainer's buffers ------------------ */

static void setup_trainer(void *p, const kd_allocator *a)
{
    fixture *f = p;
    setup_model(f, a);
    assert_int_equal(kd_optimizer_create(&f->opt, KD_OPTIMIZER_ADAM, f->model, a), KD_OK);
    assert_int_equal(kd_loss_create(&f->loss, a), KD_OK);
    assert_int_equal(kd_trainer_create(&f->trainer, f->model, f->opt, f->loss, a), KD_OK);
}

static kd_status reserve_trainer(void *p)
{
    fixture *f = p;
    return kd_trainer_reserve(f->trainer, LARGE);
}

static void trainer_still_works(void *p)
{
    fixture *f = p;
    assert_model_works(f);
    const float *last = NULL;
    assert_int_equal(kd_trainer_last_logits(f->trainer, &last, NULL), KD_ERROR_SHAPE_MISMATCH);
    float values[KD_LOSS_VALUE_COUNT];
    assert_int_equal(kd_trainer_step(f->trainer, f->x, LARGE, NULL, f->labels, values), KD_OK);
}

static void trainer_reserve(void **state)
{
    (void)state;
    static fixture f;
    const scenario s = {"kd_trainer_reserve", setup_trainer, reserve_trainer, trainer_still_works,
                        teardown_all};
    walk(&s, &f);
}

/* --- kd_optimizer_create and kd_model_create_host ------------------------------------------ */

static int host_forward(void *user, const float *inputs, size_t rows, kd_mode mode, float *logits)
{
    (void)user;
    (void)mode;
    memcpy(logits, inputs, rows * sizeof *logits);
    return 0;
}

static int host_backward(void *user, const float *grad, size_t rows)
{
    (void)user;
    (void)grad;
    (void)rows;
    return 0;
}

static float host_values[2];

static float *host_array(void *user)
{
    (void)user;
    return host_values;
}

/* The fixture's allocator, kept so that the creates under test can use it. */
static kd_allocator fixture_allocator;

static void setup_creates(void *p, const kd_allocator *a)
{
    setup_model(p, a);
    fixture_allocator = *a;
}

static kd_status create_with_allocator(void *p)
{
    fixture *f = p;
    f->created = SENTINEL_MODEL;
    f->created_opt = SENTINEL_OPTIMIZER;
    const kd_model_callbacks callbacks = {sizeof(kd_model_callbacks), host_forward, host_backward,
                                          host_array, host_array};
    kd_status status = kd_model_create_host(&f->created, &callbacks, NULL, 1, 1, 2,
                                            &fixture_allocator);
    if (status == KD_OK) {
        kd_model_destroy(f->created);
        f->created = SENTINEL_MODEL;
        status = kd_optimizer_create(&f->created_opt, KD_OPTIMIZER_ADAM, f->model,
                                     &fixture_allocator);
        if (status == KD_OK) {
            kd_optimizer_destroy(f->created_opt);
            f->created_opt = SENTINEL_OPTIMIZER;
        }
    }
    return status;
}

static void creates_left_outputs(void *p)
{
    fixture *f = p;
    assert_ptr_equal(f->created, SENTINEL_MODEL);
    assert_ptr_equal(f->created_opt, SENTINEL_OPTIMIZER);
    assert_model_works(f);
}

static void host_model_and_optimizer_creates(void **state)
{
    (void)state;
    static fixture f;
    const scenario s = {"kd_model_create_host, kd_optimizer_create", setup_creates,
                        create_with_allocator, creates_left_outputs, teardown_all};
    walk(&s, &f);
}

/* --- kd_loss_compute starting its worker threads (KD_LOSS_PARAM_THREADS) ------------------ */

enum { POOL_ROWS = 8, POOL_CLASSES = 4096, POOL_N = POOL_ROWS * POOL_CLASSES };

typedef struct pool_fixture {
    kd_loss *loss;
    float z[POOL_N], v[POOL_N], grad[POOL_N], values[KD_LOSS_VALUE_COUNT];
    int32_t labels[POOL_ROWS];
} pool_fixture;

/* A loss on 3 threads and a batch large enough to be split (32768 elements and more). */
static void setup_pool(void *p, const kd_allocator *a)
{
    pool_fixture *f = p;
    kd_test_rng rng = {5};
    for (size_t i = 0; i < POOL_N; i++) {
        f->z[i] = (float)kd_test_normal(&rng);
        f->v[i] = (float)kd_test_normal(&rng);
    }
    for (size_t r = 0; r < POOL_ROWS; r++)
        f->labels[r] = (int32_t)(r * 7);
    assert_int_equal(kd_loss_create(&f->loss, a), KD_OK);
    assert_int_equal(kd_loss_set(f->loss, KD_LOSS_PARAM_THREADS, 3.0), KD_OK);
    kd_test_fill_sentinel(f->grad, POOL_N);
    kd_test_fill_sentinel(f->values, KD_LOSS_VALUE_COUNT);
}

static kd_status compute_on_threads(void *p)
{
    pool_fixture *f = p;
    return kd_loss_compute(f->loss, f->z, POOL_CLASSES, f->v, POOL_CLASSES, f->labels, POOL_ROWS,
                           POOL_CLASSES, f->values, f->grad, POOL_CLASSES);
}

static void outputs_untouched_then_computed(void *p)
{
    pool_fixture *f = p;
    assert_true(kd_test_is_sentinel(f->grad, POOL_N));
    assert_true(kd_test_is_sentinel(f->values, KD_LOSS_VALUE_COUNT));
    assert_int_equal(compute_on_threads(f), KD_OK);
    assert_true(f->values[KD_LOSS_VALUE_TOTAL] > 0.0f);
}

static void teardown_pool(void *p)
{
    pool_fixture *f = p;
    kd_loss_destroy(f->loss);
    f->loss = NULL;
}

static void loss_worker_threads(void **state)
{
    (void)state;
    static pool_fixture f;
    const scenario s = {"kd_loss_compute on 3 threads", setup_pool, compute_on_threads,
                        outputs_untouched_then_computed, teardown_pool};
    walk(&s, &f);
}

/* --- kd_checkpoint_save's paths: the link it follows, the temporary name ---------------------- */

static size_t temporary_files(const char *dir)
{
    size_t count = kd_test_count_entries(dir, ".tmp-");
    assert_true(count != (size_t)-1);
    return count;
}

static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    unsigned char *data = malloc(1 << 16);
    assert_non_null(data);
    *size = fread(data, 1, 1 << 16, file);
    fclose(file);
    return data;
}

/* A previous checkpoint (of another model) under the name, saved to through a symbolic link
 * (following it allocates too), then the model to save. */
static void setup_save(void *p, const kd_allocator *a)
{
    fixture *f = p;
    strcpy(f->directory, "/tmp/kd_test_alloc_XXXXXX");
    assert_non_null(mkdtemp(f->directory));
    snprintf(f->path, sizeof f->path, "%s/link.kdc", f->directory);
    assert_int_equal(symlink("model.kdc", f->path), 0);
    kd_model *previous = NULL;
    const size_t other[] = {2, 2};
    assert_int_equal(kd_model_create_dense(&previous, other, 2, 9, NULL), KD_OK);
    assert_int_equal(kd_checkpoint_save(previous, NULL, f->path), KD_OK);
    kd_model_destroy(previous);
    f->before_file = read_file(f->path, &f->before_size);
    setup_model(f, a);
    assert_int_equal(kd_optimizer_create(&f->opt, KD_OPTIMIZER_SGD, f->model, a), KD_OK);
}

static kd_status save(void *p)
{
    fixture *f = p;
    return kd_checkpoint_save(f->model, f->opt, f->path);
}

static void previous_checkpoint_intact(void *p)
{
    fixture *f = p;
    size_t size;
    unsigned char *now = read_file(f->path, &size);
    assert_int_equal(size, f->before_size);
    assert_memory_equal(now, f->before_file, size);
    free(now);
    assert_int_equal(temporary_files(f->directory), 0);
    assert_model_works(f);
}

static void teardown_save(void *p)
{
    fixture *f = p;
    char target[sizeof f->path];
    snprintf(target, sizeof target, "%s/model.kdc", f->directory);
    unlink(target);
    unlink(f->path);
    assert_int_equal(temporary_files(f->directory), 0);
    rmdir(f->directory);
    free(f->before_file);
    f->before_file = NULL;
    teardown_all(f);
}

static void checkpoint_save_paths(void **state)
{
    (void)state;
    static fixture f;
    const scenario s = {"kd_checkpoint_save", setup_save, save, previous_checkpoint_intact,
                        teardown_save};
    walk(&s, &f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(model_reserve_growth),
        cmocka_unit_test(trainer_reserve),
        cmocka_unit_test(host_model_and_optimizer_creates),
        cmocka_unit_test(checkpoint_save_paths),
        cmocka_unit_test(loss_worker_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
