/* loss_dump: a fingerprint of everything kd_loss_compute* and kd_soft_targets* return over a
 * fixed grid of inputs and parameters, through the public API only. Built against one
 * libkd.so.1 and run against another (LD_LIBRARY_PATH), it shows whether two builds of the
 * library give bit-identical results, and which cases and rows differ:
 *
 *     loss_dump > before.txt            (with the old library)
 *     loss_dump > after.txt             (with the new one)
 *     diff before.txt after.txt         (no output: identical)
 *     loss_dump --rows CASE             (one hash per row of one case, to see which rows moved)
 *
 * The grid: the benchmark's shapes (KL at T = 4, alpha 0.5, MEAN, labels) on 1 and 2 threads,
 * every divergence at the two large shapes, and on small batches every divergence x teacher
 * kind (logits, probabilities, ensembles of 3 in both modes) x reduction x T from 1e-3 to 1e4 x
 * alpha x T^2 scaling, with masked classes, ignored rows, shifted and nearly one-hot students,
 * in place and not. Each line: a case number, its description, the status and a 64-bit FNV-1a
 * hash of the values and the gradient. Not part of ctest. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <kd.h>

/* splitmix64 */
static uint64_t next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform(uint64_t *state) { return (double)(next(state) >> 11) * 0x1p-53; }

static double normal(uint64_t *state)
{
    double u = uniform(state), v = uniform(state);
    return sqrt(-2.0 * log(u + 0x1p-60)) * cos(6.283185307179586 * v);
}

static uint64_t fnv(uint64_t h, const void *data, size_t n)
{
    const unsigned char *b = data;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001B3ull;
    return h;
}

static const uint64_t fnv_basis = 0xCBF29CE484222325ull;

/* One batch: student, up to 3 teacher members (logits), their probabilities at T, labels. */
typedef struct batch {
    size_t rows, classes;
    float *z, *v[3], *q[3], *grad, *values;
    int32_t *labels;
} batch;

enum { STUDENT_RANDOM, STUDENT_SHIFTED, STUDENT_ONE_HOT, STUDENT_KINDS };
static const char *const student_names[] = {"random", "shifted", "one-hot"};

static void *take(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p == NULL) {
        fprintf(stderr, "loss_dump: out of memory\n");
        exit(1);
    }
    return p;
}

static batch make_batch(size_t rows, size_t classes, int student, double scale, int masks,
                        uint64_t seed)
{
    batch b = {rows, classes, NULL, {NULL}, {NULL}, NULL, NULL, NULL};
    const size_t n = rows * classes;
    b.z = take(n, sizeof(float));
    b.grad = take(n, sizeof(float));
    b.values = take(rows * KD_LOSS_VALUE_COUNT, sizeof(float));
    b.labels = take(rows, sizeof(int32_t));
    for (int m = 0; m < 3; m++) {
        b.v[m] = take(n, sizeof(float));
        b.q[m] = take(n, sizeof(float));
    }
    uint64_t s = seed;
    for (size_t i = 0; i < n; i++)
        for (int m = 0; m < 3; m++)
            b.v[m][i] = (float)(scale * normal(&s));
    for (size_t r = 0; r < rows; r++) {
        b.labels[r] = (int32_t)(next(&s) % classes);
        if (r % 5 == 3)
            b.labels[r] = -100; /* ignored */
        for (size_t i = 0; i < classes; i++) {
            float *z = &b.z[r * classes + i];
            if (student == STUDENT_SHIFTED)
                *z = b.v[0][r * classes + i] + (float)(r % 7) * 37.5f - 60.0f;
            else if (student == STUDENT_ONE_HOT)
                *z = (size_t)b.labels[r] == i || (b.labels[r] < 0 && i == 0) ? 30.0f + (float)r
                                                                               : (float)normal(&s);
            else
                *z = (float)(scale * normal(&s));
        }
        /* Masks that fit every divergence: the same classes masked by student and teachers. */
        if (masks && classes > 3)
            for (size_t i = 1; i < classes; i += 3)
                if ((int32_t)i != b.labels[r] && !(b.labels[r] < 0 && i == 0)) {
                    b.z[r * classes + i] = -INFINITY;
                    for (int m = 0; m < 3; m++)
                        b.v[m][r * classes + i] = -INFINITY;
                }
    }
    return b;
}

static void free_batch(batch *b)
{
    free(b->z);
    free(b->grad);
    free(b->values);
    free(b->labels);
    for (int m = 0; m < 3; m++) {
        free(b->v[m]);
        free(b->q[m]);
    }
}

typedef struct config {
    int divergence, teacher; /* teacher: 0 logits, 1 probabilities, 2 ensemble arith, 3 geom */
    int reduction, scale_t2, threads, in_place;
    double t, alpha;
} config;

static const char *const teacher_names[] = {"logits", "probabilities", "ensemble-arithmetic",
                                            "ensemble-geometric"};

static long case_number = 0;

/* Runs one configuration; prints its line, or (rows_of == this case) a hash per row. */
static void run(batch *b, const config *c, const char *what, long rows_of)
{
    const long id = case_number++;
    if (rows_of >= 0 && rows_of != id)
        return;
    kd_loss *loss;
    if (kd_loss_create(&loss, NULL) != KD_OK)
        exit(1);
    kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, c->t);
    kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, c->alpha);
    kd_loss_set(loss, KD_LOSS_PARAM_DIVERGENCE, c->divergence);
    kd_loss_set(loss, KD_LOSS_PARAM_REDUCTION, c->reduction);
    kd_loss_set(loss, KD_LOSS_PARAM_SCALE_T_SQUARED, c->scale_t2);
    kd_loss_set(loss, KD_LOSS_PARAM_THREADS, c->threads);
    kd_loss_set(loss, KD_LOSS_PARAM_ENSEMBLE_MODE,
                c->teacher == 3 ? KD_ENSEMBLE_GEOMETRIC : KD_ENSEMBLE_ARITHMETIC);
    kd_loss_set(loss, KD_LOSS_PARAM_TEACHER_KIND,
                c->teacher == 1 ? KD_TEACHER_PROBABILITIES : KD_TEACHER_LOGITS);
    const size_t n = b->rows * b->classes;
    float *grad = b->grad;
    float *saved = NULL;
    if (c->in_place) {
        saved = take(n, sizeof(float));
        memcpy(saved, b->z, n * sizeof(float));
        grad = b->z;
    }
    memset(b->values, 0, b->rows * KD_LOSS_VALUE_COUNT * sizeof(float));
    kd_status status;
    const float weights[3] = {0.5f, 0.3f, 0.2f};
    if (c->teacher >= 2) {
        const float *members[3] = {b->v[0], b->v[1], b->v[2]};
        status = kd_loss_compute_ensemble(loss, b->z, b->classes, members, 3, weights, b->classes,
                                          b->labels, b->rows, b->classes, b->values, grad,
                                          b->classes);
    } else {
        const float *teacher = c->teacher == 1 ? b->q[0] : b->v[0];
        status = kd_loss_compute(loss, b->z, b->classes, teacher, b->classes, b->labels, b->rows,
                                 b->classes, b->values, grad, b->classes);
    }
    const size_t value_count = c->reduction == KD_REDUCTION_NONE ? b->rows * KD_LOSS_VALUE_COUNT
                                                                 : KD_LOSS_VALUE_COUNT;
    if (rows_of >= 0) {
        for (size_t r = 0; r < b->rows; r++) {
            uint64_t h = fnv(fnv_basis, grad + r * b->classes, b->classes * sizeof(float));
            if (c->reduction == KD_REDUCTION_NONE)
                h = fnv(h, b->values + r * KD_LOSS_VALUE_COUNT, KD_LOSS_VALUE_COUNT * sizeof(float));
            printf("%ld row %zu %016llx\n", id, r, (unsigned long long)h);
        }
    } else {
        uint64_t h = fnv(fnv_basis, b->values, value_count * sizeof(float));
        h = fnv(h, grad, n * sizeof(float));
        printf("%ld %s div=%d teacher=%s red=%d t2=%d threads=%d inplace=%d T=%g alpha=%g: "
               "status %d %016llx\n",
               id, what, c->divergence, teacher_names[c->teacher], c->reduction, c->scale_t2,
               c->threads, c->in_place, c->t, c->alpha, (int)status, (unsigned long long)h);
    }
    if (saved != NULL) {
        memcpy(b->z, saved, n * sizeof(float));
        free(saved);
    }
    kd_loss_destroy(loss);
}

/* The teachers' probabilities at T (kd_soft_targets), hashed as a case of their own. */
static void soft_targets(batch *b, double t, const char *what, long rows_of)
{
    const long id = case_number++;
    kd_status status = kd_soft_targets(b->v[0], b->rows, b->classes, (float)t, b->q[0]);
    const float *members[3] = {b->v[0], b->v[1], b->v[2]};
    const float weights[3] = {0.5f, 0.3f, 0.2f};
    uint64_t h = fnv(fnv_basis, b->q[0], b->rows * b->classes * sizeof(float));
    for (int mode = 0; mode <= 1; mode++) {
        kd_status s = kd_soft_targets_ensemble(members, 3, weights, (kd_ensemble_mode)mode, b->rows,
                                               b->classes, b->classes, (float)t, b->q[1 + mode],
                                               b->classes);
        status = status != KD_OK ? status : s;
        h = fnv(h, b->q[1 + mode], b->rows * b->classes * sizeof(float));
    }
    float *from_p = take(b->rows * b->classes, sizeof(float));
    kd_status s = kd_soft_targets_from_probabilities(b->q[0], b->rows, b->classes, b->classes,
                                                     2.0f, from_p, b->classes);
    status = status != KD_OK ? status : s;
    h = fnv(h, from_p, b->rows * b->classes * sizeof(float));
    free(from_p);
    if (rows_of < 0)
        printf("%ld %s soft targets T=%g: status %d %016llx\n", id, what, t, (int)status,
               (unsigned long long)h);
}

int main(int argc, char **argv)
{
    long rows_of = -1;
    if (argc == 3 && strcmp(argv[1], "--rows") == 0)
        rows_of = strtol(argv[2], NULL, 10);
    else if (argc != 1) {
        fprintf(stderr, "usage: loss_dump [--rows CASE]\n");
        return 2;
    }
    printf("libkd %s\n", kd_version_string());

    /* The benchmark's shapes and configuration, and every divergence on the large ones. */
    static const size_t shapes[][2] = {{256, 10}, {128, 1000}, {1024, 1000}, {4096, 32000},
                                       {512, 128256}};
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        batch b = make_batch(shapes[k][0], shapes[k][1], STUDENT_RANDOM, 2.0, 0, 1000 + k);
        char what[64];
        snprintf(what, sizeof what, "bench %zux%zu", shapes[k][0], shapes[k][1]);
        for (int threads = 1; threads <= 2; threads++)
            for (int d = 0; d <= (k >= 3 ? KD_DIVERGENCE_LOGIT_MSE : 0); d++) {
                config c = {d, 0, KD_REDUCTION_MEAN, 1, threads, 0, 4.0, 0.5};
                run(&b, &c, what, rows_of);
            }
        free_batch(&b);
    }

    /* The parameter grid on small batches. */
    static const double temperatures[] = {1e-3, 0.05, 0.5, 1.0, 2.0, 4.0, 8.0, 20.0, 100.0, 1e4};
    static const double alphas[] = {0.0, 0.3, 1.0};
    static const size_t small[][2] = {{7, 13}, {33, 300}};
    for (size_t k = 0; k < sizeof small / sizeof small[0]; k++)
        for (int student = 0; student < STUDENT_KINDS; student++)
            for (int masks = 0; masks <= 1; masks++)
                for (int si = 0; si < 2; si++) {
                    const double scale = si == 0 ? 1.0 : 10.0;
                    batch b = make_batch(small[k][0], small[k][1], student, scale, masks,
                                         (uint64_t)(k * 100 + (size_t)student * 10
                                                    + (size_t)masks * 2 + (size_t)si));
                    char what[96];
                    snprintf(what, sizeof what, "grid %zux%zu %s scale=%g masks=%d", small[k][0],
                             small[k][1], student_names[student], scale, masks);
                    for (size_t ti = 0; ti < sizeof temperatures / sizeof temperatures[0]; ti++) {
                        const double t = temperatures[ti];
                        soft_targets(&b, t, what, rows_of);
                        for (int d = 0; d <= KD_DIVERGENCE_LOGIT_MSE; d++)
                            for (int teacher = 0; teacher < 4; teacher++)
                                for (int red = 0; red <= KD_REDUCTION_NONE; red++)
                                    for (size_t ai = 0; ai < 3; ai++)
                                        for (int t2 = 0; t2 <= 1; t2++) {
                                            config c = {d, teacher, red, t2, 1 + (int)(ai == 1 && t2),
                                                        (int)(red == KD_REDUCTION_SUM && t2 == 0),
                                                        t, alphas[ai]};
                                            run(&b, &c, what, rows_of);
                                        }
                    }
                    free_batch(&b);
                }
    return 0;
}
