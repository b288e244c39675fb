/*
 * Benchmark (not a test, not registered with ctest): the combined distillation loss and its
 * gradient, kd_loss_compute with KL at T = 4, alpha = 0.5, reduction MEAN, labels, next to
 * three things measured in the same run on the same buffers and threads:
 *
 *   floor:     a plain C loop reading two float arrays and writing a third (c = a + b) over
 *              rows x classes floats, rows split across the threads: the physical floor of
 *              the loss (read student and teacher logits once, write the gradient once);
 *   three-pass: the textbook float implementation of the same loss (max; sums of expf;
 *              write p - q and p1 - onehot with expf again), rows split across the threads;
 *   exp:       the throughput of the library's own e^x kernel on an L1-resident buffer.
 *
 *   bench_loss [--json FILE] [--reps N] [--quick] [--temperature T]
 *
 * Effective GB/s counts 12 bytes per element (read 4 + 4, write 4). Ratios: floor time /
 * libkd time (1.0 = at the floor) and three-pass time / libkd time (a speed-up). Accuracy:
 * relative error of libkd's total loss and norm-wise relative error of its gradient against
 * a float64 evaluation of the same formulas on the same float inputs (and the same for the
 * three-pass code). Times are the best and the median of --reps repetitions (default: as many
 * as fit in ~0.6 s, at least 5), taken in 5 rounds in which the floor and the library at 1
 * and at 2 threads take turns (each after a warm-up call), so that the ratios compare times
 * taken under the same load; "x 1thr" is the best 1-thread time over the best time. --quick
 * runs the first three shapes. T = 4 (the default) is a power of two, where the library forms
 * the hard loss's e^(z - zmax) from the soft one's by squaring; --temperature 4.5 measures the
 * general case.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_clock.h"
#include "kd.h"
#include "loss_fast.h"

enum { MAX_REPS = 200, MAX_THREADS = 2, ROUNDS = 5 };
static double TEMPERATURE = 4.0; /* --temperature */
static const double ALPHA = 0.5;
static const size_t SHAPES[][2] = {{256, 10}, {128, 1000}, {1024, 1000}, {4096, 32000}, {512, 128256}};
static const size_t THREADS[] = {1, 2};

/* CPU time of the whole process (every thread), in seconds. */
static double cpu_now(void) { return bench_seconds(CLOCK_PROCESS_CPUTIME_ID); }

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The repetitions of one program at one thread count, gathered over the rounds. */
typedef struct samples {
    double times[MAX_REPS];
    int reps;
    double cpu; /* process CPU seconds over every repetition (libkd only) */
} samples;

typedef struct timing {
    double best, median;
    int reps;
    double cpu; /* mean process CPU seconds per repetition (libkd only) */
} timing;

/* Adds `reps` repetition times to *out (as many as it holds). */
static void add_samples(samples *out, const double *times, int reps)
{
    for (int rep = 0; rep < reps && out->reps < MAX_REPS; rep++)
        out->times[out->reps++] = times[rep];
}

static timing summarise(samples *s)
{
    const int reps = s->reps;
    double *times = s->times;
    qsort(times, (size_t)reps, sizeof *times, compare_doubles);
    timing t = {times[0], reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]),
                reps, s->cpu / reps};
    return t;
}

/* ---- A team of threads for the floor and the three-pass code ------------------------------ */

typedef void (*team_fn)(void *context, size_t index, size_t threads);

typedef struct team {
    team_fn fn;
    void *context;
    size_t threads;
    int reps;
    double times[MAX_REPS];
    pthread_barrier_t barrier;
} team;

typedef struct member {
    team *t;
    size_t index;
} member;

static void *team_loop(void *argument)
{
    member *m = argument;
    team *t = m->t;
    for (int rep = 0; rep <= t->reps; rep++) { /* rep 0 is the warm-up */
        pthread_barrier_wait(&t->barrier);
        double start = now();
        t->fn(t->context, m->index, t->threads);
        pthread_barrier_wait(&t->barrier);
        if (m->index == 0 && rep > 0)
            t->times[rep - 1] = now() - start;
    }
    return NULL;
}

/* Runs fn on `threads` threads `reps` times (after a warm-up) and adds each repetition's time
 * to *out. */
static void team_run(team_fn fn, void *context, size_t threads, int reps, samples *out)
{
    team t;
    t.fn = fn;
    t.context = context;
    t.threads = threads;
    t.reps = reps;
    pthread_barrier_init(&t.barrier, NULL, (unsigned)threads);
    pthread_t ids[MAX_THREADS];
    member members[MAX_THREADS];
    for (size_t k = 0; k < threads; k++)
        members[k] = (member){&t, k};
    for (size_t k = 1; k < threads; k++)
        pthread_create(&ids[k], NULL, team_loop, &members[k]);
    team_loop(&members[0]);
    for (size_t k = 1; k < threads; k++)
        pthread_join(ids[k], NULL);
    pthread_barrier_destroy(&t.barrier);
    add_samples(out, t.times, reps);
}

static void share(size_t n, size_t index, size_t threads, size_t *first, size_t *last)
{
    *first = n * index / threads;
    *last = n * (index + 1) / threads;
}

/* ---- The floor and the three-pass implementation ----------------------------------------- */

typedef struct problem {
    size_t rows, classes;
    float *z, *v, *grad;
    int32_t *labels;
    double loss; /* the three-pass code's total */
    double row_loss[MAX_THREADS];
} problem;

static void stream(void *context, size_t index, size_t threads)
{
    problem *p = context;
    size_t first, last;
    share(p->rows * p->classes, index, threads, &first, &last);
    const float *a = p->z, *b = p->v;
    float *c = p->grad;
    for (size_t i = first; i < last; i++)
        c[i] = a[i] + b[i];
}

/* The textbook combined loss: alpha T^2 KL(q || p) + (1 - alpha) CE, batch mean, in float. */
static void three_pass(void *context, size_t index, size_t threads)
{
    problem *p = context;
    size_t first, last;
    share(p->rows, index, threads, &first, &last);
    const float inv_t = (float)(1.0 / TEMPERATURE), scale = 1.0f / (float)p->rows;
    const float soft = (float)(ALPHA * TEMPERATURE) * scale, hard = (float)(1.0 - ALPHA) * scale;
    double total = 0.0;
    for (size_t r = first; r < last; r++) {
        const float *z = p->z + r * p->classes, *v = p->v + r * p->classes;
        float *g = p->grad + r * p->classes;
        float zm = z[0], vm = v[0];
        for (size_t i = 1; i < p->classes; i++) {
            zm = z[i] > zm ? z[i] : zm;
            vm = v[i] > vm ? v[i] : vm;
        }
        float zs = 0.0f, vs = 0.0f, z1 = 0.0f;
        for (size_t i = 0; i < p->classes; i++) {
            zs += expf((z[i] - zm) * inv_t);
            vs += expf((v[i] - vm) * inv_t);
            z1 += expf(z[i] - zm);
        }
        const float lzs = logf(zs), lvs = logf(vs);
        const size_t y = (size_t)p->labels[r];
        float kl = 0.0f;
        const float ce = logf(z1) - (z[y] - zm);
        for (size_t i = 0; i < p->classes; i++) {
            float lp = (z[i] - zm) * inv_t - lzs, lq = (v[i] - vm) * inv_t - lvs;
            float q = expf(lq);
            kl += q * (lq - lp);
            g[i] = soft * (expf(lp) - q) + hard * (expf(z[i] - zm) / z1 - (i == y ? 1.0f : 0.0f));
        }
        total += (ALPHA * TEMPERATURE * TEMPERATURE * kl + (1.0 - ALPHA) * ce) * scale;
    }
    p->row_loss[index] = total;
}

/* ---- Accuracy against float64 ------------------------------------------------------------ */

typedef struct accuracy {
    double loss, grad; /* relative error of the total, norm-wise of the gradient */
} accuracy;

/* The same loss in double on the same float inputs: the total, and the gradient's error
 * sum((g - g_ref)^2) and sum(g_ref^2) against `grad`. */
static accuracy float64_error(const problem *p, const float *grad, double total)
{
    const double t = TEMPERATURE, n = (double)p->rows;
    double ref = 0.0, num = 0.0, den = 0.0;
    for (size_t r = 0; r < p->rows; r++) {
        const float *z = p->z + r * p->classes, *v = p->v + r * p->classes;
        const float *g = grad + r * p->classes;
        double zm = -INFINITY, vm = -INFINITY, zs = 0.0, vs = 0.0, z1 = 0.0;
        for (size_t i = 0; i < p->classes; i++) {
            zm = fmax(zm, z[i]);
            vm = fmax(vm, v[i]);
        }
        for (size_t i = 0; i < p->classes; i++) {
            zs += exp((z[i] - zm) / t);
            vs += exp((v[i] - vm) / t);
            z1 += exp(z[i] - zm);
        }
        const size_t y = (size_t)p->labels[r];
        double kl = 0.0;
        for (size_t i = 0; i < p->classes; i++) {
            double lp = (z[i] - zm) / t - log(zs), lq = (v[i] - vm) / t - log(vs), q = exp(lq);
            kl += q * (lq - lp);
            double want = ALPHA * t * (exp(lp) - q) / n
                          + (1.0 - ALPHA) * (exp(z[i] - zm) / z1 - (i == y ? 1.0 : 0.0)) / n;
            num += (g[i] - want) * (g[i] - want);
            den += want * want;
        }
        ref += (ALPHA * t * t * kl + (1.0 - ALPHA) * (log(z1) - (z[y] - zm))) / n;
    }
    return (accuracy){fabs(total - ref) / fabs(ref), sqrt(num / den)};
}

/* ---- The library -------------------------------------------------------------------------- */

/* Times `reps` calls (after a warm-up) into *out. */
static void time_libkd(kd_loss *loss, problem *p, int reps, float *values, samples *out)
{
    double times[MAX_REPS], cpu_start = 0.0;
    for (int rep = -1; rep < reps; rep++) {
        if (rep == 0)
            cpu_start = cpu_now();
        double start = now();
        kd_status status = kd_loss_compute(loss, p->z, p->classes, p->v, p->classes, p->labels,
                                           p->rows, p->classes, values, p->grad, p->classes);
        if (status != KD_OK) {
            fprintf(stderr, "kd_loss_compute: %s\n", kd_status_string(status));
            exit(1);
        }
        if (rep >= 0)
            times[rep] = now() - start;
    }
    out->cpu += cpu_now() - cpu_start;
    add_samples(out, times, reps);
}

typedef struct exp_job {
    const kd_fast_kernels *kernels;
    float in[MAX_THREADS][4096], out[MAX_THREADS][4096];
    int rounds;
} exp_job;

static void exp_rounds(void *context, size_t index, size_t threads)
{
    (void)threads;
    exp_job *j = context;
    for (int k = 0; k < j->rounds; k++)
        j->kernels->exp(j->in[index], 4096, j->out[index]);
}

/* e^x evaluations per second (all threads together), best of 7. */
static double exp_rate(size_t threads)
{
    samples s = {{0.0}, 0, 0.0};
    static exp_job job;
    job.kernels = kd_fast_best();
    job.rounds = 2000;
    for (size_t k = 0; k < MAX_THREADS; k++)
        for (size_t i = 0; i < 4096; i++)
            job.in[k][i] = -20.0f * (float)i / 4096.0f;
    team_run(exp_rounds, &job, threads, 7, &s);
    return 4096.0 * job.rounds * (double)threads / summarise(&s).best;
}

/* ---- Driver ------------------------------------------------------------------------------- */

static uint64_t next(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15u);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
    return z ^ (z >> 31);
}

/* Approximately N(0, scale^2): the sum of four uniforms, rescaled. */
static float logit(uint64_t *state, double scale)
{
    double s = 0.0;
    for (int k = 0; k < 4; k++)
        s += (double)(next(state) >> 11) * 0x1.0p-53;
    return (float)(scale * (s - 2.0) * sqrt(3.0));
}

static int reps_for(double seconds_per_call, int fixed)
{
    if (fixed > 0)
        return fixed < MAX_REPS ? fixed : MAX_REPS;
    int reps = (int)(0.6 / (seconds_per_call + 1e-9));
    return reps < 5 ? 5 : reps > MAX_REPS ? MAX_REPS : reps;
}

int main(int argc, char **argv)
{
    const char *json_path = NULL;
    int fixed_reps = 0;
    size_t shape_count = sizeof SHAPES / sizeof SHAPES[0];
    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "--json") == 0 && a + 1 < argc)
            json_path = argv[++a];
        else if (strcmp(argv[a], "--reps") == 0 && a + 1 < argc)
            fixed_reps = atoi(argv[++a]);
        else if (strcmp(argv[a], "--quick") == 0)
            shape_count = 3;
        else if (strcmp(argv[a], "--temperature") == 0 && a + 1 < argc)
            TEMPERATURE = atof(argv[++a]);
        else {
            fprintf(stderr, "usage: %s [--json FILE] [--reps N] [--quick] [--temperature T]\n",
                    argv[0]);
            return 2;
        }
    }
    FILE *json = json_path != NULL ? fopen(json_path, "w") : NULL;
    if (json_path != NULL && json == NULL) {
        perror(json_path);
        return 1;
    }
    const double exp1 = exp_rate(1), exp2 = exp_rate(2);
    printf("libkd %s, kernels: %s; KL, T = %g, alpha = %g, MEAN, labels\n", kd_version_string(),
           kd_fast_best()->name, TEMPERATURE, ALPHA);
    printf("exp throughput (kernel e^x on an L1-resident buffer): %.2f G/s on 1 thread, %.2f G/s "
           "on 2\n\n", exp1 * 1e-9, exp2 * 1e-9);
    printf("%-12s %3s | %9s %9s %7s %6s %6s | %9s %7s %6s | %9s %7s | %8s %8s | %9s %9s\n",
           "shape", "thr", "libkd ms", "median", "GB/s", "cpu ns", "x 1thr", "floor ms", "GB/s",
           "x 1thr", "3pass ms", "GB/s",
           "of floor", "x 3pass", "err loss", "err grad");
    if (json != NULL)
        fprintf(json, "{\n  \"library\": \"%s\", \"kernels\": \"%s\", \"temperature\": %g, "
                      "\"alpha\": %g, \"bytes_per_element\": 12,\n  \"exp_per_second\": "
                      "{\"1\": %.6g, \"2\": %.6g},\n  \"results\": [",
                kd_version_string(), kd_fast_best()->name, TEMPERATURE, ALPHA, exp1, exp2);
    int first_json = 1;
    for (size_t s = 0; s < shape_count; s++) {
        problem p;
        p.rows = SHAPES[s][0];
        p.classes = SHAPES[s][1];
        const size_t n = p.rows * p.classes;
        const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
        p.z = aligned_alloc(64, bytes);
        p.v = aligned_alloc(64, bytes);
        p.grad = aligned_alloc(64, bytes);
        p.labels = malloc(p.rows * sizeof *p.labels);
        if (!p.z || !p.v || !p.grad || !p.labels) {
            fprintf(stderr, "out of memory\n");
            return 1;
        }
        uint64_t state = 2026 + s;
        for (size_t i = 0; i < n; i++) {
            p.z[i] = logit(&state, 2.0);
            p.v[i] = logit(&state, 2.0);
        }
        for (size_t r = 0; r < p.rows; r++)
            p.labels[r] = (int32_t)(next(&state) % p.classes);
        kd_loss *loss = NULL;
        if (kd_loss_create(&loss, NULL) != KD_OK)
            return 1;
        kd_loss_set(loss, KD_LOSS_PARAM_TEMPERATURE, TEMPERATURE);
        kd_loss_set(loss, KD_LOSS_PARAM_ALPHA, ALPHA);
        kd_loss_reserve(loss, p.classes);

        /* Accuracy: one call on 1 thread, then the three-pass code, both against float64. */
        float values[KD_LOSS_VALUE_COUNT];
        double start = now();
        kd_loss_compute(loss, p.z, p.classes, p.v, p.classes, p.labels, p.rows, p.classes,
                        values, p.grad, p.classes);
        const double one_call = now() - start;
        accuracy acc = float64_error(&p, p.grad, values[KD_LOSS_VALUE_TOTAL]);
        three_pass(&p, 0, 1);
        accuracy naive_acc = float64_error(&p, p.grad, p.row_loss[0]);

        /* The floor and the library at every thread count take turns, ROUNDS times: the
         * machine's load drifts, and each ratio (of floor, 1 -> 2 threads) should compare
         * times taken under the same conditions. */
        enum { THREAD_COUNTS = sizeof THREADS / sizeof THREADS[0] };
        samples floor_s[THREAD_COUNTS], kd_s[THREAD_COUNTS];
        float threaded[THREAD_COUNTS][KD_LOSS_VALUE_COUNT];
        int reps[THREAD_COUNTS];
        for (size_t k = 0; k < THREAD_COUNTS; k++) {
            floor_s[k] = kd_s[k] = (samples){{0.0}, 0, 0.0};
            reps[k] = (reps_for(one_call / (double)THREADS[k], fixed_reps) + ROUNDS - 1) / ROUNDS;
        }
        for (int round = 0; round < ROUNDS; round++) {
            for (size_t k = 0; k < THREAD_COUNTS; k++) {
                kd_loss_set(loss, KD_LOSS_PARAM_THREADS, (double)THREADS[k]);
                team_run(stream, &p, THREADS[k], reps[k], &floor_s[k]);
                time_libkd(loss, &p, reps[k], threaded[k], &kd_s[k]);
            }
        }
        double best[THREAD_COUNTS], floor_best[THREAD_COUNTS];
        for (size_t k = 0; k < THREAD_COUNTS; k++) {
            const size_t threads = THREADS[k];
            const timing floor_t = summarise(&floor_s[k]), kd_t = summarise(&kd_s[k]);
            best[k] = kd_t.best;
            floor_best[k] = floor_t.best;
            samples naive_s = {{0.0}, 0, 0.0};
            team_run(three_pass, &p, threads, reps[k] * ROUNDS < 5 ? reps[k] * ROUNDS : 5,
                     &naive_s);
            const timing naive_t = summarise(&naive_s);
            const double gb = 12.0 * (double)n * 1e-9;
            const int identical = memcmp(values, threaded[k], sizeof values) == 0;
            const double speedup = best[0] / kd_t.best;
            const double floor_speedup = floor_best[0] / floor_t.best;
            printf("%5zux%-6zu %3zu | %9.3f %9.3f %7.2f %6.2f %5.2fx | %9.3f %7.2f %5.2fx | "
                   "%9.3f %7.2f | %8.3f %8.2f | %9.1e %9.1e%s\n",
                   p.rows, p.classes, threads, kd_t.best * 1e3, kd_t.median * 1e3, gb / kd_t.best,
                   kd_t.cpu * 1e9 / (double)n, speedup, floor_t.best * 1e3, gb / floor_t.best,
                   floor_speedup, naive_t.best * 1e3, gb / naive_t.best,
                   floor_t.best / kd_t.best, naive_t.best / kd_t.best, acc.loss, acc.grad,
                   identical ? "" : "  (values differ from 1 thread!)");
            fflush(stdout);
            if (json != NULL) {
                fprintf(json,
                        "%s\n    {\"rows\": %zu, \"classes\": %zu, \"threads\": %zu, \"reps\": %d,"
                        " \"libkd_s\": {\"best\": %.6e, \"median\": %.6e}, \"libkd_gbps\": %.4f,"
                        " \"libkd_cpu_ns_per_element\": %.4f, \"libkd_speedup_vs_1_thread\": %.4f,"
                        " \"floor_speedup_vs_1_thread\": %.4f,"
                        " \"floor_s\": {\"best\": %.6e, \"median\": %.6e}, \"floor_gbps\": %.4f,"
                        " \"three_pass_s\": {\"best\": %.6e, \"median\": %.6e},"
                        " \"three_pass_gbps\": %.4f, \"fraction_of_floor\": %.4f,"
                        " \"speedup_vs_three_pass\": %.4f, \"libkd_loss\": %.9g,"
                        " \"libkd_error_loss\": %.3e, \"libkd_error_grad\": %.3e,"
                        " \"three_pass_error_loss\": %.3e, \"three_pass_error_grad\": %.3e,"
                        " \"bit_identical_to_1_thread\": %s}",
                        first_json ? "" : ",", p.rows, p.classes, threads, kd_t.reps, kd_t.best,
                        kd_t.median, gb / kd_t.best, kd_t.cpu * 1e9 / (double)n, speedup,
                        floor_speedup, floor_t.best, floor_t.median,
                        gb / floor_t.best, naive_t.best, naive_t.median, gb / naive_t.best,
                        floor_t.best / kd_t.best, naive_t.best / kd_t.best,
                        (double)values[KD_LOSS_VALUE_TOTAL], acc.loss, acc.grad, naive_acc.loss,
                        naive_acc.grad, identical ? "true" : "false");
                first_json = 0;
            }
        }
        kd_loss_destroy(loss);
        free(p.labels);
        free(p.grad);
        free(p.v);
        free(p.z);
    }
    if (json != NULL) {
        fprintf(json, "\n  ]\n}\n");
        fclose(json);
    }
    printf("\nfloor: c[i] = a[i] + b[i] over rows x classes floats; 3pass: the textbook float "
           "code; of floor = floor time / libkd time; x 3pass = 3pass time / libkd time;\n"
           "cpu ns: libkd's process CPU time per element (all threads), the work whatever the "
           "machine's load;\nx 1thr: best 1-thread time / best time; the floor and libkd take "
           "turns at each thread count, %d rounds; err: libkd against float64 (loss: relative; "
           "grad: norm-wise)\n",
           ROUNDS);
    return 0;
}
