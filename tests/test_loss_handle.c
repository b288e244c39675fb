/* The kd_loss handle: life cycle, parameters, the allocator hook (counting, failure injection,
 * no allocation once reserved) and the argument checks of kd_loss_compute. The numerics of the
 * loss are tested in test_loss.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

#include "support.h"

/* ---- A counting allocator with failure injection ---------------------------------------- */

enum { max_blocks = 4096 };

typedef struct counting_allocator {
    size_t attempts;    /* calls to allocate */
    size_t allocations; /* successful ones */
    size_t releases;
    size_t fail_at;     /* 0: never fail; n: the n-th call to allocate returns NULL */
    size_t live;        /* blocks allocated and not yet released */
    int bad_release;    /* release of a block that is not live */
    int zero_request;   /* allocate(0) */
    void *blocks[max_blocks];
} counting_allocator;

static void *counting_allocate(void *user, size_t bytes)
{
    counting_allocator *c = user;
    c->attempts++;
    if (bytes == 0)
        c->zero_request = 1;
    if (c->fail_at != 0 && c->attempts == c->fail_at)
        return NULL;
    void *block = malloc(bytes ? bytes : 1);
    if (block == NULL)
        return NULL;
    for (size_t i = 0; i < max_blocks; i++)
        if (c->blocks[i] == NULL) {
            c->blocks[i] = block;
            c->allocations++;
            c->live++;
            return block;
        }
    free(block);
    return NULL; /* more live blocks than the table holds: counted as a failure below */
}

static void counting_release(void *user, void *block)
{
    counting_allocator *c = user;
    c->releases++;
    for (size_t i = 0; i < max_blocks; i++)
        if (block != NULL && c->blocks[i] == block) {
            c->blocks[i] = NULL;
            c->live--;
            free(block);
            return;
        }
    c->bad_release = 1;
}

static kd_allocator counting_hook(counting_allocator *c)
{
    kd_allocator a = {sizeof(kd_allocator), counting_allocate, counting_release, c};
    return a;
}

static counting_allocator *new_counter(size_t fail_at)
{
    counting_allocator *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fail_at = fail_at;
    return c;
}

/* Every allocation was given back, and only blocks that had been allocated. */
static void assert_balanced(const counting_allocator *c)
{
    assert_int_equal(c->live, 0);
    assert_int_equal(c->releases, c->allocations);
    assert_false(c->bad_release);
    assert_false(c->zero_request);
}

/* An allocator that must never be called. */
static void *poisoned_allocate(void *user, size_t bytes)
{
    (void)user;
    (void)bytes;
    fail_msg("the library called an allocator it was not given (or did not copy its own)");
    return NULL;
}

static void poisoned_release(void *user, void *block)
{
    (void)user;
    (void)block;
    fail_msg("the library called an allocator it was not given (or did not copy its own)");
}

/* ---- Parameters ------------------------------------------------------------------------ */

typedef struct param_info {
    kd_loss_param param;
    const char *name;
    double min, max, fallback; /* documented bounds and default */
    int whole;                 /* integer or enum parameter */
} param_info;

static const param_info params[] = {
    {KD_LOSS_PARAM_TEMPERATURE, "temperature", 1e-30, 1e30, 1.0, 0},
    {KD_LOSS_PARAM_ALPHA, "alpha", 0.0, 1.0, 0.5, 0},
    {KD_LOSS_PARAM_DIVERGENCE, "divergence", 0.0, 4.0, KD_DIVERGENCE_KL, 1},
    {KD_LOSS_PARAM_SCALE_T_SQUARED, "scale T^2", 0.0, 1.0, 1.0, 1},
    {KD_LOSS_PARAM_REDUCTION, "reduction", 0.0, 2.0, KD_REDUCTION_MEAN, 1},
    {KD_LOSS_PARAM_IGNORE_LABEL, "ignore label", (double)INT32_MIN, (double)INT32_MAX, -100.0, 1},
    {KD_LOSS_PARAM_JSD_BETA, "JSD beta", 0.0, 1.0, 0.5, 0},
    {KD_LOSS_PARAM_TEACHER_KIND, "teacher kind", 0.0, 1.0, KD_TEACHER_LOGITS, 1},
    {KD_LOSS_PARAM_ENSEMBLE_MODE, "ensemble mode", 0.0, 1.0, KD_ENSEMBLE_ARITHMETIC, 1},
    {KD_LOSS_PARAM_THREADS, "threads", 1.0, 256.0, 1.0, 1},
};
enum { param_count = sizeof params / sizeof params[0] };

static kd_loss *create_loss(void)
{
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, NULL), KD_OK);
    assert_non_null(loss);
    return loss;
}

static double get_param(const kd_loss *loss, kd_loss_param param)
{
    double value = -12345.0;
    assert_int_equal(kd_loss_get(loss, param, &value), KD_OK);
    return value;
}

static void set_param(kd_loss *loss, kd_loss_param param, double value)
{
    kd_status status = kd_loss_set(loss, param, value);
    if (status != KD_OK)
        fail_msg("kd_loss_set(%d, %.17g): status %d", (int)param, value, (int)status);
}

/* Every parameter except `skip` (or all, for skip = -1) holds its default. */
static void assert_defaults_except(const kd_loss *loss, int skip)
{
    for (size_t p = 0; p < param_count; p++) {
        if ((int)params[p].param == skip)
            continue;
        double value = get_param(loss, params[p].param);
        if (value != params[p].fallback)
            fail_msg("%s reads %.17g, want its default %.17g", params[p].name, value,
                     params[p].fallback);
    }
}

static void create_and_destroy(void **state)
{
    (void)state;
    assert_int_equal(kd_loss_create(NULL, NULL), KD_ERROR_NULL_POINTER);
    counting_allocator *c = new_counter(0);
    kd_allocator a = counting_hook(c);
    assert_int_equal(kd_loss_create(NULL, &a), KD_ERROR_NULL_POINTER);
    assert_int_equal(c->attempts, 0);

    kd_loss_destroy(NULL); /* a no-op */

    kd_loss *loss = create_loss();
    kd_loss_destroy(loss);

    /* Two handles are independent. */
    kd_loss *one = create_loss(), *two = create_loss();
    assert_ptr_not_equal(one, two);
    set_param(one, KD_LOSS_PARAM_ALPHA, 0.9);
    assert_true(get_param(two, KD_LOSS_PARAM_ALPHA) == 0.5);
    kd_loss_destroy(one);
    assert_true(get_param(two, KD_LOSS_PARAM_ALPHA) == 0.5);
    kd_loss_destroy(two);
    free(c);
}

static void defaults(void **state)
{
    (void)state;
    kd_loss *loss = create_loss();
    assert_true(get_param(loss, KD_LOSS_PARAM_TEMPERATURE) == 1.0);
    assert_true(get_param(loss, KD_LOSS_PARAM_ALPHA) == 0.5);
    assert_true(get_param(loss, KD_LOSS_PARAM_DIVERGENCE) == KD_DIVERGENCE_KL);
    assert_true(get_param(loss, KD_LOSS_PARAM_SCALE_T_SQUARED) == 1.0);
    assert_true(get_param(loss, KD_LOSS_PARAM_REDUCTION) == KD_REDUCTION_MEAN);
    assert_true(get_param(loss, KD_LOSS_PARAM_IGNORE_LABEL) == -100.0);
    assert_true(get_param(loss, KD_LOSS_PARAM_JSD_BETA) == 0.5);
    assert_true(get_param(loss, KD_LOSS_PARAM_TEACHER_KIND) == KD_TEACHER_LOGITS);
    assert_true(get_param(loss, KD_LOSS_PARAM_ENSEMBLE_MODE) == KD_ENSEMBLE_ARITHMETIC);
    assert_true(get_param(loss, KD_LOSS_PARAM_THREADS) == 1.0);
    assert_defaults_except(loss, -1);

    /* kd_loss_get's own errors: the output stays as it was. */
    double value = 42.0;
    assert_int_equal(kd_loss_get(NULL, KD_LOSS_PARAM_ALPHA, &value), KD_ERROR_NULL_POINTER);
    assert_true(value == 42.0);
    assert_int_equal(kd_loss_get(loss, KD_LOSS_PARAM_ALPHA, NULL), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_loss_get(loss, (kd_loss_param)99, &value), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_get(loss, (kd_loss_param)10, &value), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_get(loss, (kd_loss_param)-1, &value), KD_ERROR_INVALID_ARGUMENT);
    assert_true(value == 42.0);
    kd_loss_destroy(loss);
}

static void param_bounds(void **state)
{
    (void)state;
    for (size_t p = 0; p < param_count; p++) {
        double min = NAN, max = NAN;
        assert_int_equal(kd_loss_param_bounds(params[p].param, &min, &max), KD_OK);
        if (min != params[p].min || max != params[p].max)
            fail_msg("%s: bounds [%.17g, %.17g], documented [%.17g, %.17g]", params[p].name, min,
                     max, params[p].min, params[p].max);
        assert_true(min <= params[p].fallback && params[p].fallback <= max);
        /* Either pointer may be NULL. */
        double only = NAN;
        assert_int_equal(kd_loss_param_bounds(params[p].param, &only, NULL), KD_OK);
        assert_true(only == min);
        assert_int_equal(kd_loss_param_bounds(params[p].param, NULL, &only), KD_OK);
        assert_true(only == max);
        assert_int_equal(kd_loss_param_bounds(params[p].param, NULL, NULL), KD_OK);
    }
    const int unknown[] = {10, 99, -1, 1000000};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++) {
        double min = 7.0, max = 8.0;
        assert_int_equal(kd_loss_param_bounds((kd_loss_param)unknown[k], &min, &max),
                         KD_ERROR_INVALID_ARGUMENT);
        assert_true(min == 7.0 && max == 8.0);
        assert_int_equal(kd_loss_param_bounds((kd_loss_param)unknown[k], NULL, NULL),
                         KD_ERROR_INVALID_ARGUMENT);
    }
}

/* Every valid value reads back exactly, and setting one parameter changes no other. */
static void set_get_round_trip(void **state)
{
    (void)state;
    const double temperatures[] = {1e-30, 1e-3, 0.1, 2.5, 20.0, 1e4, 1e30, 3.0000000001};
    const double fractions[] = {0.0, 1e-300, 0.1, 0.3, 0.5, 0.9999999999, 1.0};
    const double divergences[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY,
                                  KD_DIVERGENCE_REVERSE_KL, KD_DIVERGENCE_JENSEN_SHANNON,
                                  KD_DIVERGENCE_LOGIT_MSE};
    const double flags[] = {0.0, 1.0};
    const double reductions[] = {KD_REDUCTION_MEAN, KD_REDUCTION_SUM, KD_REDUCTION_NONE};
    const double labels[] = {-100.0, -1.0, 0.0, 7.0, 255.0, (double)INT32_MIN, (double)INT32_MAX};
    const double kinds[] = {KD_TEACHER_LOGITS, KD_TEACHER_PROBABILITIES};
    const double modes[] = {KD_ENSEMBLE_ARITHMETIC, KD_ENSEMBLE_GEOMETRIC};
    const struct {
        kd_loss_param param;
        const double *values;
        size_t count;
    } table[] = {
        {KD_LOSS_PARAM_TEMPERATURE, temperatures, sizeof temperatures / sizeof *temperatures},
        {KD_LOSS_PARAM_ALPHA, fractions, sizeof fractions / sizeof *fractions},
        {KD_LOSS_PARAM_DIVERGENCE, divergences, sizeof divergences / sizeof *divergences},
        {KD_LOSS_PARAM_SCALE_T_SQUARED, flags, 2},
        {KD_LOSS_PARAM_REDUCTION, reductions, 3},
        {KD_LOSS_PARAM_IGNORE_LABEL, labels, sizeof labels / sizeof *labels},
        {KD_LOSS_PARAM_JSD_BETA, fractions, sizeof fractions / sizeof *fractions},
        {KD_LOSS_PARAM_TEACHER_KIND, kinds, 2},
        {KD_LOSS_PARAM_ENSEMBLE_MODE, modes, 2},
    };
    for (size_t t = 0; t < sizeof table / sizeof table[0]; t++) {
        kd_loss *loss = create_loss();
        for (size_t k = 0; k < table[t].count; k++) {
            double value = table[t].values[k];
            set_param(loss, table[t].param, value);
            double got = get_param(loss, table[t].param);
            if (got != value)
                fail_msg("parameter %d: set %.17g, get %.17g", (int)table[t].param, value, got);
            assert_defaults_except(loss, (int)table[t].param);
        }
        /* The bounds themselves are accepted. */
        double min, max;
        assert_int_equal(kd_loss_param_bounds(table[t].param, &min, &max), KD_OK);
        set_param(loss, table[t].param, min);
        assert_true(get_param(loss, table[t].param) == min);
        set_param(loss, table[t].param, max);
        assert_true(get_param(loss, table[t].param) == max);
        kd_loss_destroy(loss);
    }
    assert_int_equal(kd_loss_set(NULL, KD_LOSS_PARAM_ALPHA, 0.5), KD_ERROR_NULL_POINTER);
}

/* Every value outside the bounds (or not whole, for an integer parameter) is rejected and the
 * parameter keeps its value. */
static void set_rejects_out_of_bounds(void **state)
{
    (void)state;
    kd_loss *loss = create_loss();
    /* A valid non-default value for each parameter, to see that a rejection keeps it. */
    const double keep[param_count] = {3.0, 0.25, KD_DIVERGENCE_REVERSE_KL, 0.0,
                                      KD_REDUCTION_SUM, 17.0, 0.75, KD_TEACHER_PROBABILITIES,
                                      KD_ENSEMBLE_GEOMETRIC, 2.0};
    for (size_t p = 0; p < param_count; p++)
        set_param(loss, params[p].param, keep[p]);

    for (size_t p = 0; p < param_count; p++) {
        const param_info *info = &params[p];
        double bad[16];
        size_t n = 0;
        bad[n++] = NAN;
        bad[n++] = -NAN;
        bad[n++] = INFINITY;
        bad[n++] = -INFINITY;
        bad[n++] = nextafter(info->min, -INFINITY);
        bad[n++] = nextafter(info->max, INFINITY);
        bad[n++] = -DBL_MAX;
        bad[n++] = DBL_MAX;
        if (info->whole) {
            bad[n++] = info->min - 1.0;
            bad[n++] = info->max + 1.0;
            bad[n++] = info->min + 0.5;
            bad[n++] = 1.5;
            bad[n++] = nextafter(info->min, INFINITY); /* within bounds, but not whole */
            bad[n++] = 99.0 + 0.25;
        } else {
            bad[n++] = info->min * 0.5 - 0.1; /* below: -0.1 for alpha and beta */
            bad[n++] = info->max * 1.5;       /* above: 1.5 for alpha and beta */
        }
        for (size_t k = 0; k < n; k++) {
            kd_status status = kd_loss_set(loss, info->param, bad[k]);
            if (status != KD_ERROR_INVALID_ARGUMENT)
                fail_msg("%s = %.17g: status %d, want KD_ERROR_INVALID_ARGUMENT", info->name,
                         bad[k], (int)status);
            double got = get_param(loss, info->param);
            if (got != keep[p])
                fail_msg("%s changed to %.17g by a rejected set", info->name, got);
        }
    }

    /* The cases called out by name. */
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, 1.5), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, -0.1), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, 99.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, 5.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_REDUCTION, 3.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEACHER_KIND, 2.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_ENSEMBLE_MODE, 2.0),
                     KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_SCALE_T_SQUARED, 2.0),
                     KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, 1.5), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_IGNORE_LABEL, -100.5),
                     KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, 0.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, -1.0), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, 1e-31), KD_ERROR_INVALID_ARGUMENT);
    assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, 1e31), KD_ERROR_INVALID_ARGUMENT);

    /* Unknown parameters: rejected, and nothing changes. */
    const int unknown[] = {99, 10, -1};
    for (size_t k = 0; k < sizeof unknown / sizeof unknown[0]; k++)
        assert_int_equal(kd_loss_set(loss, (kd_loss_param)unknown[k], 0.0),
                         KD_ERROR_INVALID_ARGUMENT);
    for (size_t p = 0; p < param_count; p++)
        assert_true(get_param(loss, params[p].param) == keep[p]);
    kd_loss_destroy(loss);
}

/* ---- A batch ----------------------------------------------------------------------------- */

enum { big_rows = 16, big_classes = 1000 };
static float big_student[big_rows * big_classes], big_teacher[big_rows * big_classes],
    big_probabilities[big_rows * big_classes], big_teacher2[big_rows * big_classes];
static int32_t big_labels[big_rows];

/* Softmax at T = 1 in double, rounded to float. */
static void softmax_rows(const float *v, size_t rows, size_t classes, float *p)
{
    for (size_t r = 0; r < rows; r++) {
        const float *x = v + r * classes;
        double max = -INFINITY, sum = 0.0;
        for (size_t i = 0; i < classes; i++)
            max = fmax(max, x[i]);
        for (size_t i = 0; i < classes; i++)
            sum += exp((double)x[i] - max);
        for (size_t i = 0; i < classes; i++)
            p[r * classes + i] = (float)(exp((double)x[i] - max) / sum);
    }
}

static void fill_big_batch(void)
{
    kd_test_rng rng = {2024};
    for (size_t i = 0; i < big_rows * big_classes; i++) {
        big_student[i] = (float)(2.0 * kd_test_normal(&rng));
        big_teacher[i] = (float)(3.0 * kd_test_normal(&rng));
        big_teacher2[i] = (float)(1.5 * kd_test_normal(&rng));
    }
    softmax_rows(big_teacher, big_rows, big_classes, big_probabilities);
    for (size_t r = 0; r < big_rows; r++)
        big_labels[r] = (int32_t)((r * 379 + 3) % big_classes);
}

/* Configurations the allocation tests run through. */
typedef enum scenario {
    scenario_default,      /* KL, logits teacher, MEAN */
    scenario_reserve,      /* the same after kd_loss_reserve(1000) */
    scenario_jsd_probs,    /* JSD, probabilities teacher, NONE, T = 3 */
    scenario_ensemble,     /* two-member geometric ensemble of logits, SUM, T = 2 */
    scenario_count
} scenario;

static void configure(kd_loss *loss, scenario s)
{
    switch (s) {
    case scenario_jsd_probs:
        set_param(loss, KD_LOSS_PARAM_DIVERGENCE, KD_DIVERGENCE_JENSEN_SHANNON);
        set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, KD_TEACHER_PROBABILITIES);
        set_param(loss, KD_LOSS_PARAM_REDUCTION, KD_REDUCTION_NONE);
        set_param(loss, KD_LOSS_PARAM_TEMPERATURE, 3.0);
        break;
    case scenario_ensemble:
        set_param(loss, KD_LOSS_PARAM_ENSEMBLE_MODE, KD_ENSEMBLE_GEOMETRIC);
        set_param(loss, KD_LOSS_PARAM_REDUCTION, KD_REDUCTION_SUM);
        set_param(loss, KD_LOSS_PARAM_TEMPERATURE, 2.0);
        break;
    default:
        break;
    }
}

enum { batch_rows = 4, values_size = batch_rows * KD_LOSS_VALUE_COUNT };

/* The scenario's compute call on the first 4 rows of the big batch. */
static kd_status run(kd_loss *loss, scenario s, float *values, float *grad)
{
    if (s == scenario_ensemble) {
        const float *members[2] = {big_teacher, big_teacher2};
        const float weights[2] = {1.0f, 3.0f};
        return kd_loss_compute_ensemble(loss, big_student, big_classes, members, 2, weights,
                                        big_classes, big_labels, batch_rows, big_classes, values,
                                        grad, big_classes);
    }
    const float *teacher = s == scenario_jsd_probs ? big_probabilities : big_teacher;
    return kd_loss_compute(loss, big_student, big_classes, teacher, big_classes, big_labels,
                           batch_rows, big_classes, values, grad, big_classes);
}

static void allocator_sees_every_allocation(void **state)
{
    (void)state;
    fill_big_batch();
    counting_allocator *c = new_counter(0);
    kd_allocator hook = counting_hook(c);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, &hook), KD_OK);
    assert_non_null(loss);
    /* The handle itself comes from the allocator. */
    assert_true(c->allocations >= 1);
    assert_int_equal(c->live, c->allocations - c->releases);

    /* The library copied the struct: poisoning the host's copy changes nothing. */
    hook.allocate = poisoned_allocate;
    hook.release = poisoned_release;
    hook.user = NULL;
    hook.struct_size = 0;

    static float values[values_size], grad[batch_rows * big_classes];
    for (int s = 0; s < scenario_count; s++) {
        kd_loss_destroy(loss);
        assert_balanced(c);
        kd_allocator fresh = counting_hook(c);
        assert_int_equal(kd_loss_create(&loss, &fresh), KD_OK);
        configure(loss, (scenario)s);
        if (s == scenario_reserve)
            assert_int_equal(kd_loss_reserve(loss, big_classes), KD_OK);
        assert_int_equal(run(loss, (scenario)s, values, grad), KD_OK);
        assert_int_equal(kd_loss_reserve(loss, 5 * big_classes), KD_OK);
        assert_int_equal(run(loss, (scenario)s, values, grad), KD_OK);
    }
    kd_loss_destroy(loss);
    assert_balanced(c);
    assert_true(c->allocations >= 1 + scenario_count);
    free(c);
}

static void allocator_rejected(void **state)
{
    (void)state;
    counting_allocator *c = new_counter(0);
    kd_loss *const untouched = (kd_loss *)(void *)c; /* any recognisable non-NULL value */
    kd_allocator bad[5];
    for (size_t k = 0; k < 5; k++)
        bad[k] = counting_hook(c);
    bad[0].struct_size = 0;
    bad[1].struct_size = 1;
    bad[2].allocate = NULL;
    bad[3].release = NULL;
    bad[4].allocate = NULL;
    bad[4].release = NULL;
    for (size_t k = 0; k < 5; k++) {
        kd_loss *loss = untouched;
        kd_status status = kd_loss_create(&loss, &bad[k]);
        if (status != KD_ERROR_INVALID_ARGUMENT)
            fail_msg("bad allocator %zu: status %d, want KD_ERROR_INVALID_ARGUMENT", k,
                     (int)status);
        assert_ptr_equal(loss, untouched);
    }
    assert_int_equal(c->attempts, 0);
    assert_int_equal(c->releases, 0);
    free(c);
}

/* Fails the n-th allocation for n = 1, 2, 3, ... through create (+ reserve) + compute until a
 * run sees no failure. Every failure must be KD_ERROR_OUT_OF_MEMORY, leave the outputs (and
 * *loss) as they were, leak nothing, and leave the handle usable. The successful results
 * equal those of a handle on malloc. */
static void walk_failures(scenario s)
{
    static float want_values[values_size], want_grad[batch_rows * big_classes];
    static float values[values_size], grad[batch_rows * big_classes];
    kd_test_fill_sentinel(want_values, values_size);
    kd_test_fill_sentinel(want_grad, batch_rows * big_classes);
    kd_loss *reference = create_loss();
    configure(reference, s);
    assert_int_equal(run(reference, s, want_values, want_grad), KD_OK);
    kd_loss_destroy(reference);

    int finished = 0;
    size_t failures = 0;
    for (size_t n = 1; n <= 1000 && !finished; n++) {
        counting_allocator *c = new_counter(n);
        kd_allocator hook = counting_hook(c);
        kd_loss *const marker = (kd_loss *)(void *)c;
        kd_loss *loss = marker;
        kd_status status = kd_loss_create(&loss, &hook);
        if (status != KD_OK) {
            if (status != KD_ERROR_OUT_OF_MEMORY)
                fail_msg("scenario %d, allocation %zu failing: create returned %d", (int)s, n,
                         (int)status);
            assert_true(c->attempts >= n); /* it failed because of us */
            assert_ptr_equal(loss, marker);
            assert_balanced(c);
            failures++;
            free(c);
            continue;
        }
        configure(loss, s);
        if (s == scenario_reserve) {
            size_t live = c->live;
            status = kd_loss_reserve(loss, big_classes);
            if (status != KD_OK) {
                if (status != KD_ERROR_OUT_OF_MEMORY)
                    fail_msg("scenario %d, allocation %zu failing: reserve returned %d", (int)s,
                             n, (int)status);
                assert_int_equal(c->live, live);
                failures++;
                c->fail_at = 0; /* the handle still works */
                assert_int_equal(kd_loss_reserve(loss, big_classes), KD_OK);
            }
        }
        kd_test_fill_sentinel(values, values_size);
        kd_test_fill_sentinel(grad, batch_rows * big_classes);
        size_t live = c->live;
        status = run(loss, s, values, grad);
        if (status != KD_OK) {
            if (status != KD_ERROR_OUT_OF_MEMORY)
                fail_msg("scenario %d, allocation %zu failing: compute returned %d", (int)s, n,
                         (int)status);
            assert_true(kd_test_is_sentinel(values, values_size));
            assert_true(kd_test_is_sentinel(grad, batch_rows * big_classes));
            assert_int_equal(c->live, live);
            failures++;
            c->fail_at = 0; /* the handle still works */
            status = run(loss, s, values, grad);
            assert_int_equal(status, KD_OK);
        } else if (c->attempts < n) {
            finished = 1; /* no allocation failed: the walk is over */
        }
        assert_memory_equal(values, want_values, sizeof values);
        assert_memory_equal(grad, want_grad, sizeof grad);
        kd_loss_destroy(loss);
        assert_balanced(c);
        free(c);
    }
    assert_true(finished);
    assert_true(failures >= 1); /* at least the handle's own allocation */
}

static void failure_injection_default(void **state)
{
    (void)state;
    fill_big_batch();
    walk_failures(scenario_default);
}

static void failure_injection_reserve(void **state)
{
    (void)state;
    fill_big_batch();
    walk_failures(scenario_reserve);
}

static void failure_injection_jsd_probabilities(void **state)
{
    (void)state;
    fill_big_batch();
    walk_failures(scenario_jsd_probs);
}

static void failure_injection_ensemble(void **state)
{
    (void)state;
    fill_big_batch();
    walk_failures(scenario_ensemble);
}

/* One compute call with every kind of output, on rows x classes of the big batch (row stride
 * big_classes), labels r % classes-safe. */
static kd_status compute_sub(kd_loss *loss, size_t rows, size_t classes, int probabilities)
{
    static float values[big_rows * KD_LOSS_VALUE_COUNT], grad[big_rows * big_classes];
    if (probabilities && classes != big_classes)
        return KD_OK; /* a sub-matrix of probabilities does not sum to 1: nothing to run */
    int32_t labels[big_rows];
    for (size_t r = 0; r < rows; r++)
        labels[r] = (int32_t)((size_t)big_labels[r] % classes);
    const float *teacher = probabilities ? big_probabilities : big_teacher;
    return kd_loss_compute(loss, big_student, big_classes, teacher, big_classes, labels, rows,
                           classes, values, grad, big_classes);
}

static void no_allocation_after_reserve(void **state)
{
    (void)state;
    fill_big_batch();
    counting_allocator *c = new_counter(0);
    kd_allocator hook = counting_hook(c);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, &hook), KD_OK);
    assert_int_equal(kd_loss_reserve(loss, big_classes), KD_OK);
    size_t attempts = c->attempts;

    const size_t shapes[][2] = {{4, 1000}, {16, 1000}, {1, 1000}, {4, 999}, {16, 10}, {3, 1}};
    for (int divergence = 0; divergence <= KD_DIVERGENCE_LOGIT_MSE; divergence++)
        for (int kind = 0; kind <= 1; kind++)
            for (int reduction = 0; reduction <= 2; reduction++) {
                if (divergence == KD_DIVERGENCE_LOGIT_MSE && kind == KD_TEACHER_PROBABILITIES)
                    continue;
                set_param(loss, KD_LOSS_PARAM_DIVERGENCE, divergence);
                set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, kind);
                set_param(loss, KD_LOSS_PARAM_REDUCTION, reduction);
                for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
                    kd_status status = compute_sub(loss, shapes[k][0], shapes[k][1], kind);
                    if (status != KD_OK)
                        fail_msg("divergence %d, kind %d, reduction %d, %zu x %zu: status %d",
                                 divergence, kind, reduction, shapes[k][0], shapes[k][1],
                                 (int)status);
                    if (c->attempts != attempts)
                        fail_msg("divergence %d, kind %d, reduction %d, %zu x %zu: %zu "
                                 "allocation(s) after kd_loss_reserve(%d)",
                                 divergence, kind, reduction, shapes[k][0], shapes[k][1],
                                 c->attempts - attempts, big_classes);
                }
            }
    /* Reserving less, or as much again, allocates nothing either. */
    assert_int_equal(kd_loss_reserve(loss, 10), KD_OK);
    assert_int_equal(kd_loss_reserve(loss, big_classes), KD_OK);
    assert_int_equal(c->attempts, attempts);

    /* More classes than reserved: grows (at least one allocation), then settles again. */
    static float wide_student[2 * 3000], wide_teacher[2 * 3000], wide_grad[2 * 3000];
    for (size_t i = 0; i < 2 * 3000; i++) {
        wide_student[i] = (float)(i % 13) * 0.25f;
        wide_teacher[i] = (float)(i % 7) * 0.5f;
    }
    const int32_t wide_labels[2] = {5, 2999};
    set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, KD_TEACHER_LOGITS);
    float values[2 * KD_LOSS_VALUE_COUNT];
    assert_int_equal(kd_loss_compute(loss, wide_student, 3000, wide_teacher, 3000, wide_labels, 2,
                                     3000, values, wide_grad, 3000),
                     KD_OK);
    assert_true(c->attempts > attempts);
    attempts = c->attempts;
    assert_int_equal(kd_loss_compute(loss, wide_student, 3000, wide_teacher, 3000, wide_labels, 2,
                                     3000, values, wide_grad, 3000),
                     KD_OK);
    assert_int_equal(compute_sub(loss, 4, 1000, 0), KD_OK);
    assert_int_equal(c->attempts, attempts);
    kd_loss_destroy(loss);
    assert_balanced(c);
    free(c);
}

static void no_allocation_after_first_compute(void **state)
{
    (void)state;
    fill_big_batch();
    counting_allocator *c = new_counter(0);
    kd_allocator hook = counting_hook(c);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, &hook), KD_OK);
    assert_int_equal(compute_sub(loss, 4, 1000, 0), KD_OK);
    size_t attempts = c->attempts;
    const size_t shapes[][2] = {{4, 1000}, {16, 1000}, {1, 1000}, {4, 500}, {2, 1}};
    for (int repeat = 0; repeat < 3; repeat++)
        for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
            assert_int_equal(compute_sub(loss, shapes[k][0], shapes[k][1], 0), KD_OK);
            if (c->attempts != attempts)
                fail_msg("%zu x %zu: %zu allocation(s) after a first 4 x 1000 compute",
                         shapes[k][0], shapes[k][1], c->attempts - attempts);
        }
    kd_loss_destroy(loss);
    assert_balanced(c);
    free(c);
}

static void reserve_covers_ensembles(void **state)
{
    (void)state;
    fill_big_batch();
    counting_allocator *c = new_counter(0);
    kd_allocator hook = counting_hook(c);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, &hook), KD_OK);
    assert_int_equal(kd_loss_reserve(loss, big_classes), KD_OK);
    size_t attempts = c->attempts;
    const float *members[3] = {big_teacher, big_teacher2, big_student};
    const float weights[3] = {0.5f, 0.25f, 0.25f};
    static float values[big_rows * KD_LOSS_VALUE_COUNT], grad[big_rows * big_classes];
    for (int mode = 0; mode <= 1; mode++)
        for (int divergence = 0; divergence <= KD_DIVERGENCE_LOGIT_MSE; divergence++) {
            set_param(loss, KD_LOSS_PARAM_ENSEMBLE_MODE, mode);
            set_param(loss, KD_LOSS_PARAM_DIVERGENCE, divergence);
            for (size_t count = 1; count <= 3; count++) {
                assert_int_equal(kd_loss_compute_ensemble(loss, big_student, big_classes, members,
                                                          count, count == 3 ? weights : NULL,
                                                          big_classes, big_labels, big_rows,
                                                          big_classes, values, grad, big_classes),
                                 KD_OK);
                if (c->attempts != attempts)
                    fail_msg("ensemble of %zu, mode %d, divergence %d: %zu allocation(s) after "
                             "kd_loss_reserve",
                             count, mode, divergence, c->attempts - attempts);
            }
        }
    kd_loss_destroy(loss);
    assert_balanced(c);
    free(c);
}

static void reserve_bad_inputs(void **state)
{
    (void)state;
    counting_allocator *c = new_counter(0);
    kd_allocator hook = counting_hook(c);
    kd_loss *loss = NULL;
    assert_int_equal(kd_loss_create(&loss, &hook), KD_OK);
    size_t attempts = c->attempts;
    assert_int_equal(kd_loss_reserve(NULL, 10), KD_ERROR_NULL_POINTER);
    assert_int_equal(kd_loss_reserve(loss, 0), KD_ERROR_ZERO_SIZE);
    assert_int_equal(kd_loss_reserve(loss, SIZE_MAX), KD_ERROR_SIZE_OVERFLOW);
    assert_int_equal(kd_loss_reserve(loss, SIZE_MAX / 2), KD_ERROR_SIZE_OVERFLOW);
    assert_int_equal(kd_loss_reserve(loss, SIZE_MAX / sizeof(float) + 1), KD_ERROR_SIZE_OVERFLOW);
    assert_int_equal(c->attempts, attempts);
    /* An allocation failure is reported and changes nothing. */
    size_t live = c->live;
    c->fail_at = c->attempts + 1;
    assert_int_equal(kd_loss_reserve(loss, 100000), KD_ERROR_OUT_OF_MEMORY);
    assert_int_equal(c->live, live);
    c->fail_at = 0;
    assert_int_equal(kd_loss_reserve(loss, 100000), KD_OK);
    kd_loss_destroy(loss);
    assert_balanced(c);
    free(c);
}

/* The scratch of a very wide row is what the header states: 16 bytes per class and thread plus
 * 128 KiB for the row findings, whether reserved or grown by the first compute, and however
 * many classes there are (it once reserved findings for as many rows as classes: 48 bytes
 * per class). */
static void wide_row_scratch_bytes(void **state)
{
    (void)state;
    enum { wide = 1 << 20 };
    const size_t findings = 128 * 1024;
    float *student = malloc(3 * (size_t)wide * sizeof *student);
    assert_non_null(student);
    float *teacher = student + wide, *grad = teacher + wide;
    for (size_t i = 0; i < wide; i++) {
        student[i] = (float)(i % 101) * 0.01f;
        teacher[i] = (float)(i % 37) * 0.02f;
    }
    const int32_t label = 12345;
    for (int threads = 1; threads <= 2; threads++)
        for (int reserved = 0; reserved <= 1; reserved++) {
            kd_test_allocator counter = {0};
            kd_allocator hook;
            kd_test_allocator_hook(&counter, &hook);
            kd_loss *loss = NULL;
            assert_int_equal(kd_loss_create(&loss, &hook), KD_OK);
            assert_int_equal(kd_loss_set(loss, KD_LOSS_PARAM_THREADS, threads), KD_OK);
            const size_t handle = counter.live_bytes;
            if (reserved)
                assert_int_equal(kd_loss_reserve(loss, wide), KD_OK);
            float values[KD_LOSS_VALUE_COUNT];
            assert_int_equal(kd_loss_compute(loss, student, wide, teacher, wide, &label, 1, wide,
                                             values, grad, wide),
                             KD_OK);
            const size_t scratch = counter.peak_bytes - handle;
            if (scratch > 16 * (size_t)wide * (size_t)threads + findings)
                fail_msg("%d thread(s), %s: %zu bytes of scratch for one row of %d classes",
                         threads, reserved ? "reserved" : "grown", scratch, (int)wide);
            assert_true(scratch >= 16 * (size_t)wide); /* the general path's two double rows */
            kd_loss_destroy(loss);
            assert_true(kd_test_allocator_clean(&counter));
        }
    free(student);
}

/* ---- kd_loss_compute's argument checks ------------------------------------------------- */

enum { rows3 = 3, classes5 = 5, stride8 = 8 };

/* A valid 3 x 5 batch with row stride 8 (the padding holds NaN, which must not be read). */
typedef struct small_batch {
    float student[rows3 * stride8];
    float teacher[rows3 * stride8];
    float probabilities[rows3 * stride8];
    int32_t labels[rows3];
} small_batch;

static void fill_small_batch(small_batch *b)
{
    kd_test_rng rng = {99};
    for (size_t i = 0; i < rows3 * stride8; i++) {
        int padding = i % stride8 >= classes5;
        b->student[i] = padding ? NAN : (float)kd_test_normal(&rng);
        b->teacher[i] = padding ? NAN : (float)(2.0 * kd_test_normal(&rng));
        b->probabilities[i] = NAN;
    }
    for (size_t r = 0; r < rows3; r++) {
        /* Probabilities that sum to 1 exactly in binary: 1/2, 1/4, 1/8, 1/16, 1/16. */
        const float p[classes5] = {0.5f, 0.25f, 0.125f, 0.0625f, 0.0625f};
        memcpy(b->probabilities + r * stride8, p, sizeof p);
    }
    b->labels[0] = 0;
    b->labels[1] = 4;
    b->labels[2] = 2;
}

/* Printed with a failure: which divergence (or other loop variable) a check ran under. */
static int check_context = -1;

/* A compute call that must fail with `want` and leave values and grad untouched. */
static void expect_rejected_at(int line, kd_loss *loss, const float *student, size_t student_stride,
                               const float *teacher, size_t teacher_stride,
                               const int32_t *labels, size_t rows, size_t classes,
                               size_t grad_stride, kd_status want)
{
    float values[64], grad[256];
    kd_test_fill_sentinel(values, 64);
    kd_test_fill_sentinel(grad, 256);
    kd_status got = kd_loss_compute(loss, student, student_stride, teacher, teacher_stride, labels,
                                    rows, classes, values, grad, grad_stride);
    if (got != want)
        fail_msg("line %d (context %d): status %d (%s), want %d (%s)", line, check_context,
                 (int)got, kd_status_string(got), (int)want, kd_status_string(want));
    if (!kd_test_is_sentinel(values, 64) || !kd_test_is_sentinel(grad, 256))
        fail_msg("line %d: a rejected call wrote its outputs", line);
}
#define expect_rejected(...) expect_rejected_at(__LINE__, __VA_ARGS__)

/* The same call must succeed (so the rejection above was about what the test changed). */
static void expect_ok_at(int line, kd_loss *loss, const float *student, size_t student_stride,
                         const float *teacher, size_t teacher_stride, const int32_t *labels,
                         size_t rows, size_t classes, size_t grad_stride)
{
    float values[64], grad[256];
    kd_status got = kd_loss_compute(loss, student, student_stride, teacher, teacher_stride, labels,
                                    rows, classes, values, grad, grad_stride);
    if (got != KD_OK)
        fail_msg("line %d (context %d): status %d (%s), want KD_OK", line, check_context,
                 (int)got, kd_status_string(got));
}
#define expect_ok(...) expect_ok_at(__LINE__, __VA_ARGS__)

static void compute_null_and_size_errors(void **state)
{
    (void)state;
    small_batch b;
    fill_small_batch(&b);
    kd_loss *loss = create_loss();
    expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5, stride8);

    expect_rejected(NULL, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                    stride8, KD_ERROR_NULL_POINTER);
    expect_rejected(loss, NULL, stride8, b.teacher, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_NULL_POINTER);
    /* A teacher is needed unless alpha = 0, labels unless alpha = 1. */
    expect_rejected(loss, b.student, stride8, NULL, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_NULL_POINTER);
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, NULL, rows3, classes5, stride8,
                    KD_ERROR_NULL_POINTER);
    set_param(loss, KD_LOSS_PARAM_ALPHA, 1.0);
    expect_rejected(loss, b.student, stride8, NULL, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_NULL_POINTER);
    expect_ok(loss, b.student, stride8, b.teacher, stride8, NULL, rows3, classes5, stride8);
    set_param(loss, KD_LOSS_PARAM_ALPHA, 0.0);
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, NULL, rows3, classes5, stride8,
                    KD_ERROR_NULL_POINTER);
    expect_ok(loss, b.student, stride8, NULL, stride8, b.labels, rows3, classes5, stride8);
    set_param(loss, KD_LOSS_PARAM_ALPHA, 0.5);
    /* NULL values and grad are fine. */
    assert_int_equal(kd_loss_compute(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3,
                                     classes5, NULL, NULL, stride8),
                     KD_OK);

    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, 0, classes5, stride8,
                    KD_ERROR_ZERO_SIZE);
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, 0, stride8,
                    KD_ERROR_ZERO_SIZE);

    expect_rejected(loss, b.student, 4, b.teacher, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_SHAPE_MISMATCH);
    expect_rejected(loss, b.student, stride8, b.teacher, 4, b.labels, rows3, classes5, stride8,
                    KD_ERROR_SHAPE_MISMATCH);
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5, 4,
                    KD_ERROR_SHAPE_MISMATCH);
    expect_rejected(loss, b.student, 0, b.teacher, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_SHAPE_MISMATCH);

    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, SIZE_MAX / 2,
                    classes5, stride8, KD_ERROR_SIZE_OVERFLOW);
    expect_rejected(loss, b.student, SIZE_MAX / 2, b.teacher, stride8, b.labels, 2, classes5,
                    stride8, KD_ERROR_SIZE_OVERFLOW);
    expect_rejected(loss, b.student, stride8, b.teacher, SIZE_MAX / 2, b.labels, 2, classes5,
                    stride8, KD_ERROR_SIZE_OVERFLOW);
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, 2, classes5,
                    SIZE_MAX / 2, KD_ERROR_SIZE_OVERFLOW);
    expect_rejected(loss, b.student, SIZE_MAX / 2, b.teacher, SIZE_MAX / 2, b.labels, 1,
                    SIZE_MAX / 2, SIZE_MAX / 2, KD_ERROR_SIZE_OVERFLOW);

    /* The handle still works, with the same results as a fresh one. */
    float v1[3], v2[3], g1[rows3 * classes5], g2[rows3 * classes5];
    assert_int_equal(kd_loss_compute(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3,
                                     classes5, v1, g1, classes5),
                     KD_OK);
    kd_loss *fresh = create_loss();
    assert_int_equal(kd_loss_compute(fresh, b.student, stride8, b.teacher, stride8, b.labels,
                                     rows3, classes5, v2, g2, classes5),
                     KD_OK);
    assert_memory_equal(v1, v2, sizeof v1);
    assert_memory_equal(g1, g2, sizeof g1);
    kd_loss_destroy(fresh);
    kd_loss_destroy(loss);
}

static void compute_nonfinite_and_labels(void **state)
{
    (void)state;
    small_batch b;
    kd_loss *loss = create_loss();
    const float bad[] = {NAN, INFINITY};
    for (size_t k = 0; k < 2; k++) {
        fill_small_batch(&b);
        b.student[2 * stride8 + 1] = bad[k];
        expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                        stride8, KD_ERROR_NONFINITE_INPUT);
        fill_small_batch(&b);
        b.teacher[1 * stride8 + 3] = bad[k];
        expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                        stride8, KD_ERROR_NONFINITE_INPUT);
    }

    /* Labels out of range; -1 is not the (default, -100) ignore label. */
    const int32_t bad_labels[] = {5, 6, -1, -99, -101, INT32_MAX, INT32_MIN};
    for (size_t k = 0; k < sizeof bad_labels / sizeof bad_labels[0]; k++) {
        fill_small_batch(&b);
        b.labels[1] = bad_labels[k];
        expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                        stride8, KD_ERROR_INVALID_LABEL);
    }
    /* With ignore label -1, -1 is fine and -100 is not. */
    set_param(loss, KD_LOSS_PARAM_IGNORE_LABEL, -1.0);
    fill_small_batch(&b);
    b.labels[1] = -1;
    expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5, stride8);
    b.labels[1] = -100;
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                    stride8, KD_ERROR_INVALID_LABEL);
    /* An ignore label inside [0, classes) makes that class unusable as a label. */
    set_param(loss, KD_LOSS_PARAM_IGNORE_LABEL, 4.0);
    b.labels[1] = 4;
    expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5, stride8);
    set_param(loss, KD_LOSS_PARAM_IGNORE_LABEL, -100.0);

    /* A label at a class the student masks (the teacher masks it too, so only the label is
     * wrong); the same batch with another label is fine. */
    fill_small_batch(&b);
    b.student[1 * stride8 + 2] = -INFINITY;
    b.teacher[1 * stride8 + 2] = -INFINITY;
    b.labels[1] = 2;
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                    stride8, KD_ERROR_INVALID_LABEL);
    b.labels[1] = 3;
    expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5, stride8);
    /* Labels are checked even when only the hard term needs them (alpha = 0, no teacher). */
    set_param(loss, KD_LOSS_PARAM_ALPHA, 0.0);
    b.labels[1] = 2;
    expect_rejected(loss, b.student, stride8, NULL, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_INVALID_LABEL);
    b.labels[1] = 5;
    expect_rejected(loss, b.student, stride8, NULL, stride8, b.labels, rows3, classes5, stride8,
                    KD_ERROR_INVALID_LABEL);
    kd_loss_destroy(loss);
}

static void compute_masks(void **state)
{
    (void)state;
    small_batch b;
    kd_loss *loss = create_loss();

    /* A student row with every class masked (alpha = 1, no labels; the teacher row is masked
     * too, so masks agree). */
    fill_small_batch(&b);
    for (size_t i = 0; i < classes5; i++)
        b.student[1 * stride8 + i] = b.teacher[1 * stride8 + i] = -INFINITY;
    set_param(loss, KD_LOSS_PARAM_ALPHA, 1.0);
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, NULL, rows3, classes5, stride8,
                    KD_ERROR_ALL_MASKED);
    set_param(loss, KD_LOSS_PARAM_ALPHA, 0.5);
    /* A teacher row with every class masked, the student's fine. */
    fill_small_batch(&b);
    for (size_t i = 0; i < classes5; i++)
        b.teacher[2 * stride8 + i] = -INFINITY;
    expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                    stride8, KD_ERROR_ALL_MASKED);

    /* The student masks a class the teacher does not: KL and cross-entropy (q log(q / 0)) and
     * logit matching (not the same classes) need the teacher to mask it too. (Reverse KL and
     * JSD stay finite here; the header's "the teacher must mask it too" can be read as applying
     * to them as well, so they are left out: see the report.) */
    const int strict[] = {KD_DIVERGENCE_KL, KD_DIVERGENCE_CROSS_ENTROPY, KD_DIVERGENCE_LOGIT_MSE};
    for (size_t k = 0; k < sizeof strict / sizeof strict[0]; k++) {
        int divergence = strict[k];
        check_context = divergence;
        set_param(loss, KD_LOSS_PARAM_DIVERGENCE, divergence);
        fill_small_batch(&b);
        b.student[0 * stride8 + 3] = -INFINITY;
        expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                        stride8, KD_ERROR_SHAPE_MISMATCH);
        b.teacher[0 * stride8 + 3] = -INFINITY;
        expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                  stride8);
    }
    /* The teacher masks a class the student does not: fine for KL, cross-entropy and JSD; not
     * for reverse KL (infinite) or logit matching (the same classes). */
    for (int divergence = 0; divergence <= KD_DIVERGENCE_LOGIT_MSE; divergence++) {
        check_context = divergence;
        set_param(loss, KD_LOSS_PARAM_DIVERGENCE, divergence);
        fill_small_batch(&b);
        b.teacher[2 * stride8 + 4] = -INFINITY;
        if (divergence == KD_DIVERGENCE_REVERSE_KL || divergence == KD_DIVERGENCE_LOGIT_MSE)
            expect_rejected(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3,
                            classes5, stride8, KD_ERROR_SHAPE_MISMATCH);
        else
            expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5,
                      stride8);
    }

    check_context = -1;

    /* Probabilities teacher: a class the student masks needs probability 0. */
    set_param(loss, KD_LOSS_PARAM_DIVERGENCE, KD_DIVERGENCE_KL);
    set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, KD_TEACHER_PROBABILITIES);
    fill_small_batch(&b);
    b.student[1 * stride8 + 3] = -INFINITY;
    expect_rejected(loss, b.student, stride8, b.probabilities, stride8, b.labels, rows3, classes5,
                    stride8, KD_ERROR_SHAPE_MISMATCH);
    b.probabilities[1 * stride8 + 3] = 0.0f;
    b.probabilities[1 * stride8 + 4] = 0.125f;
    expect_ok(loss, b.student, stride8, b.probabilities, stride8, b.labels, rows3, classes5,
              stride8);
    kd_loss_destroy(loss);
}

static void compute_probabilities_teacher(void **state)
{
    (void)state;
    small_batch b;
    kd_loss *loss = create_loss();
    set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, KD_TEACHER_PROBABILITIES);
    fill_small_batch(&b);
    expect_ok(loss, b.student, stride8, b.probabilities, stride8, b.labels, rows3, classes5,
              stride8);

    const struct {
        float p[classes5];
        kd_status want;
    } bad[] = {
        {{0.5f, 0.25f, 0.125f, 0.0625f, 0.0725f}, KD_ERROR_INVALID_PROBABILITIES}, /* 1.01 */
        {{0.5f, 0.25f, 0.125f, 0.0625f, 0.0525f}, KD_ERROR_INVALID_PROBABILITIES}, /* 0.99 */
        {{1.0f, 0.25f, 0.125f, 0.0625f, 0.0625f}, KD_ERROR_INVALID_PROBABILITIES}, /* 1.5 */
        {{0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, KD_ERROR_INVALID_PROBABILITIES},          /* 0 */
        {{0.6f, 0.25f, 0.125f, 0.125f, -0.1f}, KD_ERROR_INVALID_PROBABILITIES},    /* < 0 */
        {{0.5f, 0.25f, 0.125f, NAN, 0.0625f}, KD_ERROR_NONFINITE_INPUT},
        {{0.5f, 0.25f, INFINITY, 0.0625f, 0.0625f}, KD_ERROR_NONFINITE_INPUT},
        {{1.0f, -INFINITY, 0.0f, 0.0f, 0.0f}, KD_ERROR_NONFINITE_INPUT},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        fill_small_batch(&b);
        memcpy(b.probabilities + 2 * stride8, bad[k].p, sizeof bad[k].p);
        expect_rejected(loss, b.student, stride8, b.probabilities, stride8, b.labels, rows3,
                        classes5, stride8, bad[k].want);
    }
    /* Within KD_PROBABILITY_SUM_TOLERANCE is accepted. */
    fill_small_batch(&b);
    b.probabilities[2 * stride8 + 4] = 0.0625f + 0.0008f;
    expect_ok(loss, b.student, stride8, b.probabilities, stride8, b.labels, rows3, classes5,
              stride8);

    /* Logit matching needs logits. */
    set_param(loss, KD_LOSS_PARAM_DIVERGENCE, KD_DIVERGENCE_LOGIT_MSE);
    fill_small_batch(&b);
    expect_rejected(loss, b.student, stride8, b.probabilities, stride8, b.labels, rows3, classes5,
                    stride8, KD_ERROR_UNSUPPORTED);
    set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, KD_TEACHER_LOGITS);
    expect_ok(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3, classes5, stride8);
    kd_loss_destroy(loss);
}

/* A rejected call with the gradient written in place leaves the logits as they were. */
static void compute_rejected_in_place(void **state)
{
    (void)state;
    small_batch b;
    fill_small_batch(&b);
    b.labels[2] = 77;
    float copy[rows3 * stride8];
    memcpy(copy, b.student, sizeof copy);
    kd_loss *loss = create_loss();
    float values[3];
    kd_test_fill_sentinel(values, 3);
    assert_int_equal(kd_loss_compute(loss, b.student, stride8, b.teacher, stride8, b.labels, rows3,
                                     classes5, values, b.student, stride8),
                     KD_ERROR_INVALID_LABEL);
    assert_memory_equal(b.student, copy, sizeof copy);
    assert_true(kd_test_is_sentinel(values, 3));
    kd_loss_destroy(loss);
}

/* Rows whose label is the ignore label are not read: NaN there is fine, their gradient rows
 * are 0 and (for NONE) their values 0; the gradient's padding is never written. */
static void ignored_rows_not_read(void **state)
{
    (void)state;
    enum { rows = 4, classes = 6, stride = 9 };
    float student[rows * stride], teacher[rows * stride], probabilities[rows * stride];
    float values[rows * KD_LOSS_VALUE_COUNT], grad[rows * stride], sentinel[rows * stride];
    kd_test_fill_sentinel(sentinel, rows * stride);
    kd_test_rng rng = {5};
    for (size_t i = 0; i < rows * stride; i++) {
        int padding = i % stride >= classes;
        student[i] = padding ? NAN : (float)kd_test_normal(&rng);
        teacher[i] = padding ? NAN : (float)kd_test_normal(&rng);
        probabilities[i] = padding ? NAN : 1.0f / 8.0f;
    }
    for (size_t r = 0; r < rows; r++) {
        probabilities[r * stride + 0] = 0.25f;
        probabilities[r * stride + 1] = 0.25f; /* 0.25 + 0.25 + 4 / 8 = 1 */
    }
    for (size_t i = 0; i < stride; i++) {
        student[1 * stride + i] = teacher[1 * stride + i] = probabilities[1 * stride + i] = NAN;
        student[3 * stride + i] = teacher[3 * stride + i] = probabilities[3 * stride + i] = NAN;
    }
    const int32_t labels[rows] = {1, -100, 5, -100};
    const int32_t all_ignored[rows] = {-100, -100, -100, -100};
    const double alphas[] = {0.0, 0.3, 1.0};

    kd_loss *loss = create_loss();
    for (int divergence = 0; divergence <= KD_DIVERGENCE_LOGIT_MSE; divergence++)
        for (int kind = 0; kind <= 1; kind++)
            for (int reduction = 0; reduction <= 2; reduction++)
                for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
                    if (divergence == KD_DIVERGENCE_LOGIT_MSE && kind == KD_TEACHER_PROBABILITIES)
                        continue;
                    set_param(loss, KD_LOSS_PARAM_DIVERGENCE, divergence);
                    set_param(loss, KD_LOSS_PARAM_TEACHER_KIND, kind);
                    set_param(loss, KD_LOSS_PARAM_REDUCTION, reduction);
                    set_param(loss, KD_LOSS_PARAM_ALPHA, alphas[a]);
                    const float *t = kind == KD_TEACHER_PROBABILITIES ? probabilities : teacher;
                    size_t value_count = reduction == KD_REDUCTION_NONE
                                             ? rows * KD_LOSS_VALUE_COUNT
                                             : KD_LOSS_VALUE_COUNT;
                    for (int pass = 0; pass < 2; pass++) {
                        const int32_t *l = pass == 0 ? labels : all_ignored;
                        kd_test_fill_sentinel(values, rows * KD_LOSS_VALUE_COUNT);
                        kd_test_fill_sentinel(grad, rows * stride);
                        kd_status status = kd_loss_compute(loss, student, stride, t, stride, l,
                                                           rows, classes, values, grad, stride);
                        if (status != KD_OK)
                            fail_msg("divergence %d, kind %d, reduction %d, alpha %g, pass %d: "
                                     "status %d",
                                     divergence, kind, reduction, alphas[a], pass, (int)status);
                        for (size_t r = 0; r < rows; r++) {
                            int ignored = l[r] == -100;
                            for (size_t i = 0; i < classes; i++) {
                                float g = grad[r * stride + i];
                                if (ignored ? g != 0.0f : !isfinite(g))
                                    fail_msg("divergence %d, kind %d, reduction %d, alpha %g, "
                                             "pass %d: grad[%zu][%zu] = %g",
                                             divergence, kind, reduction, alphas[a], pass, r, i,
                                             (double)g);
                            }
                            /* The padding after each gradient row keeps its sentinel. */
                            for (size_t i = classes; i < stride; i++)
                                if (memcmp(&grad[r * stride + i], &sentinel[r * stride + i],
                                           sizeof(float)) != 0)
                                    fail_msg("grad padding [%zu][%zu] written", r, i);
                        }
                        for (size_t i = 0; i < value_count; i++) {
                            int ignored_row = reduction == KD_REDUCTION_NONE &&
                                              l[i / KD_LOSS_VALUE_COUNT] == -100;
                            if (!isfinite(values[i]) ||
                                ((pass == 1 || ignored_row) && values[i] != 0.0f))
                                fail_msg("divergence %d, kind %d, reduction %d, alpha %g, pass "
                                         "%d: values[%zu] = %g",
                                         divergence, kind, reduction, alphas[a], pass, i,
                                         (double)values[i]);
                        }
                    }
                }
    kd_loss_destroy(loss);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_and_destroy),
        cmocka_unit_test(defaults),
        cmocka_unit_test(param_bounds),
        cmocka_unit_test(set_get_round_trip),
        cmocka_unit_test(set_rejects_out_of_bounds),
        cmocka_unit_test(allocator_sees_every_allocation),
        cmocka_unit_test(allocator_rejected),
        cmocka_unit_test(failure_injection_default),
        cmocka_unit_test(failure_injection_reserve),
        cmocka_unit_test(failure_injection_jsd_probabilities),
        cmocka_unit_test(failure_injection_ensemble),
        cmocka_unit_test(no_allocation_after_reserve),
        cmocka_unit_test(no_allocation_after_first_compute),
        cmocka_unit_test(reserve_covers_ensembles),
        cmocka_unit_test(reserve_bad_inputs),
        cmocka_unit_test(wide_row_scratch_bytes),
        cmocka_unit_test(compute_null_and_size_errors),
        cmocka_unit_test(compute_nonfinite_and_labels),
        cmocka_unit_test(compute_masks),
        cmocka_unit_test(compute_probabilities_teacher),
        cmocka_unit_test(compute_rejected_in_place),
        cmocka_unit_test(ignored_rows_not_read),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
