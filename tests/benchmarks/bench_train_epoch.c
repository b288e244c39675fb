/*
 * Benchmark (not a test, not registered with ctest): one training epoch of the paper's
 * networks through kd_trainer_step, next to the time the same epoch's matrix products take
 * when called directly with cblas_sgemm on buffers of the same shapes, in the same run.
 *
 *   OPENBLAS_NUM_THREADS=2 bench_train_epoch [--json FILE] [--batches N] [--sgemm-reps N]
 *                                            [--epoch-reps N] [--phases] [--net NAME]
 *
 * Networks: the teacher 784-1200-1200-10 with the paper's regularisation (input dropout 0.2,
 * hidden dropout 0.5, max-norm 15), the same teacher without any, and the student
 * 784-800-800-10 without any. Epoch: 60,000 rows (600 batches of 100), SGD momentum 0.9,
 * learning rate 0.01, hard labels (cross-entropy), after one warm-up batch.
 *
 * The data are random: inputs uniform in [0, 1), labels uniform in 0..9, from a fixed seed.
 * They only need the right shapes and range for timing; nothing here measures learning.
 *
 * "sgemm only" replays exactly the cblas_sgemm calls the library's dense network makes per
 * batch (lib/dense.c), with the same shapes, transposes and beta, on buffers of the same
 * sizes: forward  C(rows x out) = A(rows x in) W^T, NoTrans/Trans, per layer;
 *           backward dW(out x in) += G^T A, Trans/NoTrans, per layer;
 *                    delta(rows x in) = G W, NoTrans/NoTrans, per layer except the first.
 * It is repeated --sgemm-reps times (default 3) and the best repetition is reported, with
 * every repetition in the JSON.
 * --sgemm-reps 0 skips it (to profile the epoch alone, e.g. under perf record).
 *
 * Profiling: with KD_BENCH_PERF_CTL_FD (and optionally KD_BENCH_PERF_ACK_FD) set to the
 * descriptors of `perf record -D -1 --control fd:CTL,ACK`, the benchmark enables the profile
 * only around the timed kd_trainer_step loop (tests/benchmarks/perf_train_epoch.sh does this).
 *
 * Noise: next to each wall time the benchmark records the main thread's CPU time over it. The
 * main thread computes or waits in OpenBLAS (which spins) the whole time, so on an otherwise
 * idle machine the two agree; a share clearly below 100% means other processes took the CPU.
 *
 * --phases runs one more epoch per network through the public API step by step (forward,
 * loss, zero gradients, backward, optimizer step: what kd_trainer_step does) and times each.
 *
 * SPDX-License-Identifier: MIT
 */
#define _POSIX_C_SOURCE 200809L

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_clock.h"
#include "kd.h"

/* OpenBLAS reports its kernel and thread count through these; weak, so that the benchmark also
 * links against another CBLAS (they are then NULL). */
#if defined(__GNUC__)
extern char *openblas_get_corename(void) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));
#define KD_BENCH_OPENBLAS_QUERY 1
#endif

enum {
    ROWS_TOTAL = 60000,
    BATCH = 100,
    CLASSES = 10,
    MAX_WIDTHS = 4,
    MAX_REPS = 16,
    PHASE_COUNT = 5
};

enum { KIND_FORWARD = 0, KIND_DW = 1, KIND_DELTA = 2, KIND_COUNT = 3 };

static const char *const kind_names[KIND_COUNT] = {"forward", "dW", "delta"};
static const char *const phase_names[PHASE_COUNT] = {"forward", "loss", "zero_gradients",
                                                     "backward", "optimizer_step"};

typedef struct net_spec {
    const char *name;
    size_t widths[MAX_WIDTHS];
    size_t width_count;
    double input_dropout, hidden_dropout, max_norm;
} net_spec;

static const net_spec nets[] = {
    {"teacher-dropout", {784, 1200, 1200, 10}, 4, 0.2, 0.5, 15.0},
    {"teacher", {784, 1200, 1200, 10}, 4, 0.0, 0.0, 0.0},
    {"student", {784, 800, 800, 10}, 4, 0.0, 0.0, 0.0},
};
enum { NET_COUNT = sizeof nets / sizeof nets[0] };

typedef struct result {
    const net_spec *net;
    int ran;
    double epoch[MAX_REPS];
    double epoch_best;
    double epoch_cpu[MAX_REPS]; /* main-thread CPU seconds over each epoch */
    double epoch_best_cpu;
    float final_loss;
    double sgemm[MAX_REPS];
    double sgemm_best;
    double sgemm_best_cpu;
    double sgemm_kind[KIND_COUNT]; /* of the best repetition */
    double flops; /* per epoch, 2 m n k per sgemm */
    double kind_flops[KIND_COUNT];
    int has_phases;
    double phase[PHASE_COUNT];
    double phases_total;
} result;

typedef struct options {
    const char *json;
    const char *only;
    size_t batches;
    int sgemm_reps, epoch_reps, phases;
} options;

/* CPU time of the calling thread. */
static double thread_cpu(void) { return bench_seconds(CLOCK_THREAD_CPUTIME_ID); }

/* splitmix64: the benchmark's own data generator (fixed seed, reproducible). */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static float uniform01(uint64_t *state) { return (float)(next_random(state) >> 40) * 0x1.0p-24f; }

static void *xmalloc(size_t count, size_t size)
{
    void *p = count == 0 ? NULL : malloc(count * size);
    if (p == NULL) {
        fprintf(stderr, "bench_train_epoch: out of memory (%zu x %zu bytes)\n", count, size);
        exit(2);
    }
    return p;
}

static void fill(float *x, size_t n, float lo, float hi, uint64_t *state)
{
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * uniform01(state);
}

#define CHECK(call)                                                                             \
    do {                                                                                        \
        kd_status check_status_ = (call);                                                       \
        if (check_status_ != KD_OK) {                                                           \
            fprintf(stderr, "bench_train_epoch: %s failed: %s\n", #call,                        \
                    kd_status_string(check_status_));                                           \
            exit(2);                                                                            \
        }                                                                                       \
    } while (0)

typedef struct handles {
    kd_model *model;
    kd_optimizer *optimizer;
    kd_loss *loss;
    kd_trainer *trainer;
} handles;

static handles make_handles(const net_spec *net)
{
    handles h;
    CHECK(kd_model_create_dense(&h.model, net->widths, net->width_count, 42, NULL));
    CHECK(kd_model_set(h.model, KD_MODEL_PARAM_INPUT_DROPOUT, net->input_dropout));
    CHECK(kd_model_set(h.model, KD_MODEL_PARAM_HIDDEN_DROPOUT, net->hidden_dropout));
    CHECK(kd_model_set(h.model, KD_MODEL_PARAM_MAX_NORM, net->max_norm));
    CHECK(kd_optimizer_create(&h.optimizer, KD_OPTIMIZER_SGD, h.model, NULL));
    CHECK(kd_optimizer_set(h.optimizer, KD_OPTIMIZER_PARAM_LEARNING_RATE, 0.01));
    CHECK(kd_optimizer_set(h.optimizer, KD_OPTIMIZER_PARAM_MOMENTUM, 0.9));
    CHECK(kd_loss_create(&h.loss, NULL));
    CHECK(kd_loss_set(h.loss, KD_LOSS_PARAM_ALPHA, 0.0)); /* hard labels only */
    CHECK(kd_trainer_create(&h.trainer, h.model, h.optimizer, h.loss, NULL));
    CHECK(kd_trainer_reserve(h.trainer, BATCH));
    return h;
}

static void free_handles(handles *h)
{
    kd_trainer_destroy(h->trainer);
    kd_loss_destroy(h->loss);
    kd_optimizer_destroy(h->optimizer);
    kd_model_destroy(h->model);
}

/* perf's control descriptors (see the top of the file), or -1. */
static int perf_ctl_fd = -1, perf_ack_fd = -1;

static int env_fd(const char *name)
{
    const char *v = getenv(name);
    if (v == NULL || *v == '\0')
        return -1;
    char *end;
    long fd = strtol(v, &end, 10);
    return *end == '\0' && fd >= 0 && fd < 1024 ? (int)fd : -1;
}

/* Sends "enable" or "disable" to perf and waits for its acknowledgement. */
static void perf_control(const char *command)
{
    if (perf_ctl_fd < 0)
        return;
    char line[16];
    int n = snprintf(line, sizeof line, "%s\n", command);
    if (write(perf_ctl_fd, line, (size_t)n) != n) {
        perror("bench_train_epoch: perf control");
        return;
    }
    if (perf_ack_fd >= 0) {
        char ack[8];
        if (read(perf_ack_fd, ack, sizeof ack) <= 0)
            perror("bench_train_epoch: perf acknowledgement");
    }
}

/* One epoch of kd_trainer_step (after one warm-up batch); returns seconds, and the main
 * thread's CPU seconds in *cpu. */
static double time_epoch(kd_trainer *trainer, const float *x, const int32_t *y, size_t inputs,
                         size_t batches, float *last_loss, double *cpu)
{
    float values[KD_LOSS_VALUE_COUNT];
    CHECK(kd_trainer_step(trainer, x, BATCH, NULL, y, values));
    perf_control("enable");
    double c0 = thread_cpu(), t0 = now();
    for (size_t b = 0; b < batches; b++)
        CHECK(kd_trainer_step(trainer, x + b * BATCH * inputs, BATCH, NULL, y + b * BATCH, values));
    double t1 = now();
    *cpu = thread_cpu() - c0;
    perf_control("disable");
    *last_loss = values[KD_LOSS_VALUE_TOTAL];
    return t1 - t0;
}

/* The same work as kd_trainer_step through the public API, each phase timed. */
static void time_phases(handles *h, const float *x, const int32_t *y, size_t inputs,
                        size_t batches, double phase[PHASE_COUNT])
{
    float logits[BATCH * CLASSES], grad[BATCH * CLASSES], values[KD_LOSS_VALUE_COUNT];
    for (int p = 0; p < PHASE_COUNT; p++)
        phase[p] = 0.0;
    for (size_t b = 0; b <= batches; b++) {
        /* b == 0 is the warm-up batch, not counted. */
        const size_t i = b == 0 ? 0 : b - 1;
        const float *xb = x + i * BATCH * inputs;
        const int32_t *yb = y + i * BATCH;
        double t[PHASE_COUNT + 1];
        t[0] = now();
        CHECK(kd_model_forward(h->model, xb, BATCH, KD_MODE_TRAINING, logits));
        t[1] = now();
        CHECK(kd_loss_compute(h->loss, logits, CLASSES, NULL, CLASSES, yb, BATCH, CLASSES, values,
                              grad, CLASSES));
        t[2] = now();
        CHECK(kd_model_zero_gradients(h->model));
        t[3] = now();
        CHECK(kd_model_backward(h->model, grad, BATCH));
        t[4] = now();
        CHECK(kd_optimizer_step(h->optimizer, h->model));
        t[5] = now();
        if (b > 0)
            for (int p = 0; p < PHASE_COUNT; p++)
                phase[p] += t[p + 1] - t[p];
    }
}

/* Buffers shaped like the dense network's for the sgemm-only replay. Layer l = 1 .. L. */
typedef struct gemm_buffers {
    size_t layers;
    size_t n_in[MAX_WIDTHS], n_out[MAX_WIDTHS];
    float *w[MAX_WIDTHS], *dw[MAX_WIDTHS];
    float *act[MAX_WIDTHS];   /* act[l-1]: input of layer l (rows x n_in) */
    float *out[MAX_WIDTHS];   /* output of layer l (rows x n_out) */
    float *g[MAX_WIDTHS];     /* gradient at the output of layer l (rows x n_out) */
    float *delta[MAX_WIDTHS]; /* gradient at the input of layer l (rows x n_in) */
} gemm_buffers;

static void make_gemm_buffers(gemm_buffers *gb, const net_spec *net, uint64_t *state)
{
    memset(gb, 0, sizeof *gb);
    gb->layers = net->width_count - 1;
    for (size_t l = 1; l <= gb->layers; l++) {
        const size_t n_in = net->widths[l - 1], n_out = net->widths[l];
        gb->n_in[l] = n_in;
        gb->n_out[l] = n_out;
        gb->w[l] = xmalloc(n_out * n_in, sizeof(float));
        gb->dw[l] = xmalloc(n_out * n_in, sizeof(float));
        gb->act[l - 1] = xmalloc(BATCH * n_in, sizeof(float));
        gb->out[l] = xmalloc(BATCH * n_out, sizeof(float));
        gb->g[l] = xmalloc(BATCH * n_out, sizeof(float));
        gb->delta[l] = xmalloc(BATCH * n_in, sizeof(float));
        fill(gb->w[l], n_out * n_in, -0.05f, 0.05f, state);
        memset(gb->dw[l], 0, n_out * n_in * sizeof(float));
        fill(gb->act[l - 1], BATCH * n_in, 0.0f, 1.0f, state);
        memset(gb->out[l], 0, BATCH * n_out * sizeof(float));
        fill(gb->g[l], BATCH * n_out, -0.01f, 0.01f, state);
        memset(gb->delta[l], 0, BATCH * n_in * sizeof(float));
    }
}

static void free_gemm_buffers(gemm_buffers *gb)
{
    for (size_t l = 1; l <= gb->layers; l++) {
        free(gb->w[l]);
        free(gb->dw[l]);
        free(gb->act[l - 1]);
        free(gb->out[l]);
        free(gb->g[l]);
        free(gb->delta[l]);
    }
}

/* The sgemm calls of one batch, as lib/dense.c makes them; adds each call's time to kind[]. */
static void gemm_batch(const gemm_buffers *gb, double kind[KIND_COUNT])
{
    const int rows = BATCH;
    for (size_t l = 1; l <= gb->layers; l++) {
        const int n_in = (int)gb->n_in[l], n_out = (int)gb->n_out[l];
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, n_out, n_in, 1.0f, gb->act[l - 1],
                    n_in, gb->w[l], n_in, 1.0f, gb->out[l], n_out);
        kind[KIND_FORWARD] += now() - t0;
    }
    for (size_t l = gb->layers; l >= 1; l--) {
        const int n_in = (int)gb->n_in[l], n_out = (int)gb->n_out[l];
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, rows, 1.0f, gb->g[l], n_out,
                    gb->act[l - 1], n_in, 1.0f, gb->dw[l], n_in);
        double t1 = now();
        kind[KIND_DW] += t1 - t0;
        if (l == 1)
            break;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, n_in, n_out, 1.0f, gb->g[l],
                    n_out, gb->w[l], n_in, 0.0f, gb->delta[l], n_in);
        kind[KIND_DELTA] += now() - t1;
    }
}

static void time_sgemm(result *res, const net_spec *net, size_t batches, int reps)
{
    uint64_t state = 7;
    gemm_buffers gb;
    make_gemm_buffers(&gb, net, &state);
    res->flops = 0.0;
    for (int k = 0; k < KIND_COUNT; k++)
        res->kind_flops[k] = 0.0;
    for (size_t l = 1; l <= gb.layers; l++) {
        const double mnk = 2.0 * BATCH * (double)gb.n_in[l] * (double)gb.n_out[l] * (double)batches;
        res->kind_flops[KIND_FORWARD] += mnk;
        res->kind_flops[KIND_DW] += mnk;
        if (l > 1)
            res->kind_flops[KIND_DELTA] += mnk;
    }
    for (int k = 0; k < KIND_COUNT; k++)
        res->flops += res->kind_flops[k];

    double scratch[KIND_COUNT] = {0.0, 0.0, 0.0};
    gemm_batch(&gb, scratch); /* warm-up */
    res->sgemm_best = INFINITY;
    for (int rep = 0; rep < reps; rep++) {
        double kind[KIND_COUNT] = {0.0, 0.0, 0.0};
        double c0 = thread_cpu(), t0 = now();
        for (size_t b = 0; b < batches; b++)
            gemm_batch(&gb, kind);
        res->sgemm[rep] = now() - t0;
        double cpu = thread_cpu() - c0;
        if (res->sgemm[rep] < res->sgemm_best) {
            res->sgemm_best = res->sgemm[rep];
            res->sgemm_best_cpu = cpu;
            memcpy(res->sgemm_kind, kind, sizeof kind);
        }
    }
    free_gemm_buffers(&gb);
}

static void describe(const net_spec *net, char *buf, size_t size)
{
    int n = snprintf(buf, size, "%zu", net->widths[0]);
    for (size_t i = 1; i < net->width_count && n > 0 && (size_t)n < size; i++)
        n += snprintf(buf + n, size - (size_t)n, "-%zu", net->widths[i]);
}

static void print_result(const result *r, int sgemm_reps, int epoch_reps)
{
    char shape[64];
    describe(r->net, shape, sizeof shape);
    printf("\n%s %s (input dropout %.2g, hidden dropout %.2g, max-norm %.3g)\n", r->net->name,
           shape, r->net->input_dropout, r->net->hidden_dropout, r->net->max_norm);
    printf("  epoch, kd_trainer_step:  %8.3f s", r->epoch_best);
    if (epoch_reps > 1) {
        printf("  (best of");
        for (int i = 0; i < epoch_reps; i++)
            printf(" %.3f", r->epoch[i]);
        printf(")");
    }
    printf("   last batch loss %.4f; main thread on CPU %.0f%% of it\n", (double)r->final_loss,
           100.0 * r->epoch_best_cpu / r->epoch_best);
    if (sgemm_reps == 0) {
        if (r->has_phases) {
            printf("  phases (public API, one more epoch, total %.3f s):\n", r->phases_total);
            for (int p = 0; p < PHASE_COUNT; p++)
                printf("    %-15s %8.3f s\n", phase_names[p], r->phase[p]);
        }
        return;
    }
    printf("  sgemm only:              %8.3f s  (best of", r->sgemm_best);
    for (int i = 0; i < sgemm_reps; i++)
        printf(" %.3f", r->sgemm[i]);
    printf(")  %.1f GFLOP/s on %.1f GFLOP; main thread on CPU %.0f%%\n",
           r->flops / r->sgemm_best * 1e-9, r->flops * 1e-9, 100.0 * r->sgemm_best_cpu / r->sgemm_best);
    for (int k = 0; k < KIND_COUNT; k++)
        printf("    %-8s %8.3f s  %6.1f GFLOP/s\n", kind_names[k], r->sgemm_kind[k],
               r->kind_flops[k] / r->sgemm_kind[k] * 1e-9);
    printf("  ratio epoch / sgemm:     %8.2f\n", r->epoch_best / r->sgemm_best);
    if (r->has_phases) {
        printf("  phases (public API, one more epoch, total %.3f s):\n", r->phases_total);
        for (int p = 0; p < PHASE_COUNT; p++)
            printf("    %-15s %8.3f s\n", phase_names[p], r->phase[p]);
        printf("    forward - its sgemm:  %8.3f s\n", r->phase[0] - r->sgemm_kind[KIND_FORWARD]);
        printf("    backward - its sgemm: %8.3f s\n",
               r->phase[3] - r->sgemm_kind[KIND_DW] - r->sgemm_kind[KIND_DELTA]);
    }
}

static void json_array(FILE *f, const double *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++)
        fprintf(f, "%s%.6f", i ? ", " : "", v[i]);
    fputc(']', f);
}

static void json_sgemm(FILE *f, const result *r, int reps)
{
    fprintf(f, ",\n     \"sgemm_seconds\": %.6f, \"sgemm_seconds_all\": ", r->sgemm_best);
    json_array(f, r->sgemm, reps);
    fprintf(f, ", \"sgemm_main_thread_cpu_seconds\": %.6f", r->sgemm_best_cpu);
    fprintf(f, ", \"sgemm_gflop\": %.4f, \"sgemm_gflops\": %.3f,\n", r->flops * 1e-9,
            r->flops / r->sgemm_best * 1e-9);
    fprintf(f, "     \"sgemm_by_kind\": {");
    for (int k = 0; k < KIND_COUNT; k++)
        fprintf(f, "%s\"%s\": {\"seconds\": %.6f, \"gflop\": %.4f, \"gflops\": %.3f}",
                k ? ", " : "", kind_names[k], r->sgemm_kind[k], r->kind_flops[k] * 1e-9,
                r->kind_flops[k] / r->sgemm_kind[k] * 1e-9);
    fprintf(f, "},\n     \"ratio_epoch_over_sgemm\": %.4f", r->epoch_best / r->sgemm_best);
}

static int write_json(const char *path, const result *results, const options *o,
                      const char *threads, const char *blas, const char *coretype)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        perror(path);
        return 1;
    }
    fprintf(f, "{\n  \"benchmark\": \"train_epoch\",\n  \"implementation\": \"libkd %s\",\n",
            kd_version_string());
    fprintf(f, "  \"openblas_num_threads\": \"%s\",\n", threads);
    fprintf(f, "  \"blas\": \"%s\",\n  \"openblas_coretype\": \"%s\",\n", blas,
            coretype != NULL ? coretype : "unset");
    fprintf(f, "  \"rows_per_epoch\": %zu,\n  \"batch\": %d,\n  \"batches\": %zu,\n",
            o->batches * BATCH, BATCH, o->batches);
    fprintf(f, "  \"data\": \"random: inputs uniform [0,1), labels uniform 0..9\",\n");
    fprintf(f, "  \"optimizer\": \"SGD lr 0.01 momentum 0.9\",\n  \"loss\": \"cross-entropy\",\n");
    fprintf(f, "  \"networks\": [");
    int first = 1;
    for (int n = 0; n < NET_COUNT; n++) {
        const result *r = &results[n];
        if (!r->ran)
            continue;
        char shape[64];
        describe(r->net, shape, sizeof shape);
        fprintf(f, "%s\n    {\"name\": \"%s\", \"widths\": \"%s\", \"input_dropout\": %g, "
                   "\"hidden_dropout\": %g, \"max_norm\": %g,\n",
                first ? "" : ",", r->net->name, shape, r->net->input_dropout,
                r->net->hidden_dropout, r->net->max_norm);
        first = 0;
        fprintf(f, "     \"epoch_seconds\": %.6f, \"epoch_seconds_all\": ", r->epoch_best);
        json_array(f, r->epoch, o->epoch_reps);
        fprintf(f, ", \"epoch_main_thread_cpu_seconds\": %.6f", r->epoch_best_cpu);
        fprintf(f, ", \"last_batch_loss\": %.6f", (double)r->final_loss);
        if (o->sgemm_reps > 0)
            json_sgemm(f, r, o->sgemm_reps);
        if (r->has_phases) {
            fprintf(f, ",\n     \"phases_seconds\": {");
            for (int p = 0; p < PHASE_COUNT; p++)
                fprintf(f, "%s\"%s\": %.6f", p ? ", " : "", phase_names[p], r->phase[p]);
            fprintf(f, ", \"total\": %.6f}", r->phases_total);
        }
        fprintf(f, "}");
    }
    fprintf(f, "\n  ]\n}\n");
    if (fclose(f) != 0) {
        perror(path);
        return 1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_train_epoch [--json FILE] [--batches N (600)] [--sgemm-reps N (3)] "
                    "[--epoch-reps N (1)] [--phases] [--net teacher-dropout|teacher|student]\n"
                    "OpenBLAS threads: set OPENBLAS_NUM_THREADS.\n");
    exit(2);
}

static long parse_count(const char *s, long min, long max)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < min || v > max)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    options o = {NULL, NULL, ROWS_TOTAL / BATCH, 3, 1, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--phases") == 0)
            o.phases = 1;
        else if (i + 1 >= argc)
            usage();
        else if (strcmp(a, "--json") == 0)
            o.json = argv[++i];
        else if (strcmp(a, "--net") == 0)
            o.only = argv[++i];
        else if (strcmp(a, "--batches") == 0)
            o.batches = (size_t)parse_count(argv[++i], 1, ROWS_TOTAL / BATCH);
        else if (strcmp(a, "--sgemm-reps") == 0)
            o.sgemm_reps = (int)parse_count(argv[++i], 0, MAX_REPS);
        else if (strcmp(a, "--epoch-reps") == 0)
            o.epoch_reps = (int)parse_count(argv[++i], 1, MAX_REPS);
        else
            usage();
    }

    perf_ctl_fd = env_fd("KD_BENCH_PERF_CTL_FD");
    perf_ack_fd = env_fd("KD_BENCH_PERF_ACK_FD");
    const char *env = getenv("OPENBLAS_NUM_THREADS");
    char threads[64];
    if (env != NULL && *env != '\0')
        snprintf(threads, sizeof threads, "%s", env);
    else
        snprintf(threads, sizeof threads, "unset (OpenBLAS default: %ld online CPUs)",
                 sysconf(_SC_NPROCESSORS_ONLN));
    printf("libkd %s training-epoch benchmark\n", kd_version_string());
    printf("OPENBLAS_NUM_THREADS=%s\n", threads);
    const char *coretype = getenv("OPENBLAS_CORETYPE");
    char blas[128];
    snprintf(blas, sizeof blas, "not OpenBLAS, or unknown");
#ifdef KD_BENCH_OPENBLAS_QUERY
    if (openblas_get_corename != NULL && openblas_get_num_threads != NULL)
        snprintf(blas, sizeof blas, "OpenBLAS, kernel %s, %d threads", openblas_get_corename(),
                 openblas_get_num_threads());
#endif
    printf("BLAS: %s; OPENBLAS_CORETYPE=%s\n", blas, coretype != NULL ? coretype : "unset");
    printf("%zu rows (%zu batches of %d), SGD lr 0.01 momentum 0.9, cross-entropy on hard labels\n",
           o.batches * BATCH, o.batches, BATCH);
    printf("data: random inputs uniform [0,1), random labels 0..9 (timing only)\n");
    fflush(stdout);

    /* Every network takes 784 inputs: one data set serves them all. */
    const size_t inputs = nets[0].widths[0];
    const size_t rows = o.batches * BATCH;
    float *x = xmalloc(rows * inputs, sizeof *x);
    int32_t *y = xmalloc(rows, sizeof *y);
    uint64_t state = 12345;
    fill(x, rows * inputs, 0.0f, 1.0f, &state);
    for (size_t r = 0; r < rows; r++)
        y[r] = (int32_t)(next_random(&state) % CLASSES);

    result results[NET_COUNT];
    memset(results, 0, sizeof results);
    for (int n = 0; n < NET_COUNT; n++) {
        const net_spec *net = &nets[n];
        result *r = &results[n];
        r->net = net;
        if (o.only != NULL && strcmp(o.only, net->name) != 0)
            continue;
        r->ran = 1;

        handles h = make_handles(net);
        r->epoch_best = INFINITY;
        for (int rep = 0; rep < o.epoch_reps; rep++) {
            r->epoch[rep] = time_epoch(h.trainer, x, y, inputs, o.batches, &r->final_loss,
                                       &r->epoch_cpu[rep]);
            if (r->epoch[rep] < r->epoch_best) {
                r->epoch_best = r->epoch[rep];
                r->epoch_best_cpu = r->epoch_cpu[rep];
            }
        }
        free_handles(&h);

        if (o.sgemm_reps > 0)
            time_sgemm(r, net, o.batches, o.sgemm_reps);

        if (o.phases) {
            handles p = make_handles(net);
            time_phases(&p, x, y, inputs, o.batches, r->phase);
            free_handles(&p);
            r->has_phases = 1;
            r->phases_total = 0.0;
            for (int k = 0; k < PHASE_COUNT; k++)
                r->phases_total += r->phase[k];
        }
        print_result(r, o.sgemm_reps, o.epoch_reps);
        fflush(stdout);
    }

    int status = 0;
    if (o.json != NULL)
        status = write_json(o.json, results, &o, threads, blas, coretype);
    free(x);
    free(y);
    return status;
}
