/* Fuzz target: kd_checkpoint_load on arbitrary files.
 *
 * Input: one control byte, then the file. Control bits:
 *   bit 0: rewrite the trailing CRC-32 so that the file passes the checksum (lets the fuzzer
 *          reach the field checks behind it; the CRC itself is covered by the bit clear);
 *   bit 1: ask for the optimizer too;
 *   bits 2-7: 0, or n: the allocator refuses its n-th call.
 *
 * Invariants: the status is one kd_checkpoint_load documents; on failure both handles are
 * untouched and nothing leaked; no single allocation while loading exceeds twice the file size
 * (plus 64 KiB): sizes are backed by the file, not by what its header claims; on
 * success the model has the sizes and finite parameters the file holds, its inference pass is
 * deterministic and finite wherever the parameters bound every layer's activations below
 * FLT_MAX, and saving it (with the optimizer, when the file had one and it was asked for)
 * gives back the same bytes: the format has one encoding per checkpoint. And what loads survives training: one
 * optimizer step (the file's optimizer, or a new Adam one for a file without), with zero
 * gradients and with small finite ones, succeeds; wherever the loaded magnitudes bound every
 * value the step computes below FLT_MAX, the parameters stay finite and the result saves; and
 * what saves loads again. */
#define _POSIX_C_SOURCE 200809L

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include <kd.h>

#include "fuzz_support.h"

static char input_path[512], output_path[512];

static void remove_scratch(void)
{
    unlink(input_path);
    unlink(output_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_scratch_path(input_path, sizeof input_path, "in.kdc");
    fuzz_scratch_path(output_path, sizeof output_path, "out.kdc");
    atexit(remove_scratch);
    return 0;
}

static int documented(kd_status s)
{
    return s == KD_OK || s == KD_ERROR_FILE_TRUNCATED || s == KD_ERROR_FILE_CORRUPT
           || s == KD_ERROR_FILE_VERSION || s == KD_ERROR_OUT_OF_MEMORY;
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Largest |value| of n floats. */
static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)x[i]));
    return m;
}

/* A bound on |activations| of every layer, the logits included, for inputs in [-1, 1], layer
 * by layer (ReLU never increases a bound), from the file's widths (header order) and the
 * loaded parameters: the largest layer's. Every layer counts, not only the logits': a hidden
 * activation that overflows to infinity makes a logit NaN through a zero weight. */
static double activation_bound(const uint8_t *file, size_t layer_count, const float *params)
{
    double bound = 1.0, largest = 0.0;
    size_t offset = 0;
    for (size_t l = 1; l < layer_count; l++) {
        size_t in = (size_t)le64(file + 24 + 8 * (l - 1)), out = (size_t)le64(file + 24 + 8 * l);
        double w = max_abs(params + offset, out * in), b = max_abs(params + offset + out * in, out);
        bound = (double)in * w * bound + b;
        largest = fmax(largest, bound);
        offset += out * (in + 1);
    }
    return largest;
}

/* Offset of the optimizer section in a file of that many widths and parameters. */
static size_t optimizer_section(size_t layer_count, size_t count)
{
    return 24 + 8 * layer_count + 24 + 32 + 8 + 4 * count;
}

/* Largest |value| of n little-endian floats in the file. */
static double max_abs_le(const uint8_t *p, size_t n)
{
    float *x = malloc(n * sizeof *x + 1);
    FUZZ_CHECK(x != NULL, "harness out of memory");
    for (size_t i = 0; i < n; i++) {
        const uint8_t *b = p + 4 * i;
        const uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16
                              | (uint32_t)b[3] << 24;
        memcpy(&x[i], &bits, sizeof bits);
    }
    const double m = max_abs(x, n);
    free(x);
    return m;
}

/* The magnitudes one optimizer step starts from: the largest |parameter|, |gradient|,
 * |momentum or first moment| and second moment; the step count. */
typedef struct step_start {
    double w, g, s1, s2;
    uint64_t steps;
} step_start;

/* A bound on every magnitude one kd_optimizer_step computes from `start`: the gradient with
 * weight decay, the new state, the update and the new parameters (the sum of bounds on each,
 * in double). Below FLT_MAX / 2 it leaves room for the float rounding (2^-24 relative an
 * operation), so that nothing overflows. */
static double step_bound(const kd_optimizer *opt, const step_start *start)
{
    double p[KD_OPTIMIZER_PARAM_EPSILON + 1];
    for (int k = 0; k <= KD_OPTIMIZER_PARAM_EPSILON; k++)
        if (kd_optimizer_get(opt, (kd_optimizer_param)k, &p[k]) != KD_OK)
            p[k] = 0.0; /* not used by the kind */
    const double lr = p[KD_OPTIMIZER_PARAM_LEARNING_RATE];
    const double g = start->g + p[KD_OPTIMIZER_PARAM_WEIGHT_DECAY] * start->w;
    if (kd_optimizer_kind_of(opt) == KD_OPTIMIZER_SGD) {
        const double mu = p[KD_OPTIMIZER_PARAM_MOMENTUM], v = mu * start->s1 + g;
        const double update = p[KD_OPTIMIZER_PARAM_NESTEROV] != 0.0 ? g + mu * v : v;
        return 2.0 * start->w + g + v + 2.0 * update + 2.0 * lr * update;
    }
    const double t = (double)start->steps + 1.0;
    const double rate = lr / (1.0 - pow(p[KD_OPTIMIZER_PARAM_BETA1], t));
    const double correction = 1.0 / sqrt(1.0 - pow(p[KD_OPTIMIZER_PARAM_BETA2], t));
    const double m = start->s1 + g, v = start->s2 + g * g;
    const double update = rate * m / (double)(float)p[KD_OPTIMIZER_PARAM_EPSILON];
    return 2.0 * start->w + g + g * g + m + v + sqrt(v) * correction + 2.0 * update;
}

/* One optimizer step on the checkpoint in input_path (loaded again, with its optimizer or a
 * new Adam one), gradients `scale` x (-3 .. 3): it succeeds; where step_bound() stays below
 * FLT_MAX / 2 the parameters stay finite and the result saves; whatever saves loads again. */
static void check_step(const uint8_t *file, size_t layer_count, float scale)
{
    kd_model *model = NULL;
    kd_optimizer *opt = NULL;
    FUZZ_CHECK(kd_checkpoint_load(&model, &opt, input_path, NULL) == KD_OK, "a second load failed");
    const size_t count = kd_model_parameter_count(model);
    step_start start = {0.0, 3.0 * scale, 0.0, 0.0, 0};
    if (opt == NULL) {
        FUZZ_CHECK(kd_optimizer_create(&opt, KD_OPTIMIZER_ADAM, model, NULL) == KD_OK, "create");
    } else {
        const uint8_t *section = file + optimizer_section(layer_count, count);
        start.steps = le64(section + 64);
        start.s1 = max_abs_le(section + 72, count);
        if (kd_optimizer_kind_of(opt) == KD_OPTIMIZER_ADAM)
            start.s2 = max_abs_le(section + 72 + 4 * count, count);
    }
    float *params = NULL, *grads = NULL;
    FUZZ_CHECK(kd_model_parameters(model, &params) == KD_OK
                   && kd_model_gradients(model, &grads) == KD_OK,
               "no parameter or gradient array");
    for (size_t i = 0; i < count; i++)
        grads[i] = scale * (float)((int)(i % 7) - 3);
    start.w = max_abs(params, count);
    const double bound = step_bound(opt, &start);

    FUZZ_CHECK(kd_optimizer_step(opt, model) == KD_OK, "the step failed");
    const kd_status saved = kd_checkpoint_save(model, opt, output_path);
    if (bound < 0.5 * FLT_MAX) {
        for (size_t i = 0; i < count; i++)
            FUZZ_CHECK(isfinite(params[i]), "parameter %zu is %g after a step (gradients x %g) "
                       "although the state bounds the step by %g", i, (double)params[i],
                       (double)scale, bound);
        FUZZ_CHECK(saved == KD_OK, "saving after a step: %s", kd_status_string(saved));
    }
    FUZZ_CHECK(saved == KD_OK || saved == KD_ERROR_NONFINITE_INPUT, "saving after a step: %s",
               kd_status_string(saved));
    if (saved == KD_OK) {
        kd_model *again = NULL;
        kd_optimizer *again_opt = NULL;
        const kd_status status = kd_checkpoint_load(&again, &again_opt, output_path, NULL);
        FUZZ_CHECK(status == KD_OK, "the file saved after a step does not load: %s",
                   kd_status_string(status));
        kd_optimizer_destroy(again_opt);
        kd_model_destroy(again);
    }
    kd_optimizer_destroy(opt);
    kd_model_destroy(model);
}

static void check_loaded(const uint8_t *file, size_t size, kd_model *model, kd_optimizer *opt,
                         int asked_optimizer)
{
    const size_t layer_count = (size_t)le64(file + 16);
    const size_t inputs = kd_model_input_count(model), outputs = kd_model_output_count(model);
    const size_t count = kd_model_parameter_count(model);
    FUZZ_CHECK(inputs == le64(file + 24) && outputs == le64(file + 24 + 8 * (layer_count - 1)),
               "sizes %zu -> %zu differ from the header", inputs, outputs);
    FUZZ_CHECK(count > 0 && 4 * count < size, "%zu parameters from a %zu-byte file", count, size);
    float *params = NULL;
    FUZZ_CHECK(kd_model_parameters(model, &params) == KD_OK && params != NULL, "no parameters");
    for (size_t i = 0; i < count; i++)
        FUZZ_CHECK(isfinite(params[i]), "parameter %zu is %g", i, (double)params[i]);
    for (int p = 0; p <= KD_MODEL_PARAM_MAX_NORM; p++) {
        double value, min, max;
        FUZZ_CHECK(kd_model_get(model, (kd_model_param)p, &value) == KD_OK, "get %d", p);
        FUZZ_CHECK(kd_model_param_bounds((kd_model_param)p, &min, &max) == KD_OK, "bounds %d", p);
        FUZZ_CHECK(value >= min && value <= max, "model parameter %d = %g out of bounds", p, value);
    }
    const int file_has_optimizer = (file[12] & 1) != 0;
    if (asked_optimizer) {
        FUZZ_CHECK((opt != NULL) == file_has_optimizer, "optimizer %p, file flag %d", (void *)opt,
                   file_has_optimizer);
        if (opt != NULL)
            FUZZ_CHECK(kd_optimizer_kind_of(opt) == KD_OPTIMIZER_SGD
                           || kd_optimizer_kind_of(opt) == KD_OPTIMIZER_ADAM,
                       "optimizer kind %d", kd_optimizer_kind_of(opt));
    }

    /* Inference on inputs in [-1, 1]: deterministic, and finite where the bound says so. */
    enum { ROWS = 3 };
    float *x = malloc(ROWS * inputs * sizeof *x), *z1 = malloc(ROWS * outputs * sizeof *z1),
          *z2 = malloc(ROWS * outputs * sizeof *z2);
    FUZZ_CHECK(x != NULL && z1 != NULL && z2 != NULL, "harness out of memory");
    for (size_t i = 0; i < ROWS * inputs; i++)
        x[i] = (float)((int)(i % 5) - 2) / 2.0f;
    FUZZ_CHECK(kd_model_forward(model, x, ROWS, KD_MODE_INFERENCE, z1) == KD_OK, "forward failed");
    FUZZ_CHECK(kd_model_forward(model, x, ROWS, KD_MODE_INFERENCE, z2) == KD_OK, "forward failed");
    FUZZ_CHECK(memcmp(z1, z2, ROWS * outputs * sizeof *z1) == 0, "inference is not deterministic");
    if (activation_bound(file, layer_count, params) < 0.5 * FLT_MAX)
        for (size_t i = 0; i < ROWS * outputs; i++)
            FUZZ_CHECK(isfinite(z1[i]),
                       "logit %zu is %g although the parameters bound every layer", i,
                       (double)z1[i]);
    free(z2);
    free(z1);
    free(x);

    /* Saving what was loaded gives back the file, byte for byte, but for one freedom of the
     * format: an optimizer parameter that the kind does not use must read 0, and -0.0 does;
     * it is saved back as +0.0. */
    if (asked_optimizer || !file_has_optimizer) {
        uint8_t *expected = malloc(size);
        FUZZ_CHECK(expected != NULL, "harness out of memory");
        memcpy(expected, file, size);
        if (file_has_optimizer) {
            const size_t section = optimizer_section(layer_count, count);
            const unsigned used = expected[section] == KD_OPTIMIZER_SGD ? 0x0Fu : 0x79u;
            for (size_t p = 0; p < 7; p++)
                if (!(used >> p & 1u) && le64(expected + section + 8 + 8 * p) == (uint64_t)1 << 63)
                    memset(expected + section + 8 + 8 * p, 0, 8);
            uint32_t crc = (uint32_t)crc32(0L, expected, (uInt)(size - 4));
            for (int i = 0; i < 4; i++)
                expected[size - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
        }
        FUZZ_CHECK(kd_checkpoint_save(model, opt, output_path) == KD_OK, "re-save failed");
        FILE *f = fopen(output_path, "rb");
        FUZZ_CHECK(f != NULL, "cannot open %s", output_path);
        uint8_t *again = malloc(size + 1);
        FUZZ_CHECK(again != NULL, "harness out of memory");
        size_t got = fread(again, 1, size + 1, f);
        fclose(f);
        FUZZ_CHECK(got == size && memcmp(again, expected, size) == 0,
                   "re-saved file differs (%zu bytes, loaded %zu)", got, size);
        free(again);
        free(expected);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t control = data[0];
    size--;
    uint8_t *file = malloc(size + 1);
    FUZZ_CHECK(file != NULL, "harness out of memory");
    memcpy(file, data + 1, size);
    if ((control & 1) && size >= 4) {
        uint32_t crc = (uint32_t)crc32(0L, file, (uInt)(size - 4));
        for (int i = 0; i < 4; i++)
            file[size - 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    }
    fuzz_write_file(input_path, file, size);

    const int asked_optimizer = (control & 2) != 0;
    fuzz_allocator counter = {0, 0, (size_t)(control >> 2), 2 * size + 65536, 0, 0};
    kd_allocator hook = fuzz_allocator_hook(&counter);
    static char sentinel[2];
    kd_model *model = (kd_model *)(void *)&sentinel[0];
    kd_optimizer *opt = (kd_optimizer *)(void *)&sentinel[1];
    kd_status status = kd_checkpoint_load(&model, asked_optimizer ? &opt : NULL, input_path, &hook);
    FUZZ_CHECK(documented(status), "undocumented status %d", (int)status);
    FUZZ_CHECK(!counter.over_limit, "an allocation above twice the file size (%zu bytes)", size);
    FUZZ_CHECK(status != KD_ERROR_OUT_OF_MEMORY || counter.injected,
               "out of memory although no allocation failed");
    if (status != KD_OK) {
        FUZZ_CHECK(model == (kd_model *)(void *)&sentinel[0], "model written on failure");
        FUZZ_CHECK(opt == (kd_optimizer *)(void *)&sentinel[1], "optimizer written on failure");
        FUZZ_CHECK(counter.live == 0, "%zu blocks leaked by a failed load", counter.live);
    } else {
        FUZZ_CHECK(model != NULL, "KD_OK without a model");
        counter.fail_at = counter.limit = 0; /* the checks' forward passes allocate too */
        check_loaded(file, size, model, asked_optimizer ? opt : NULL, asked_optimizer);
        if (asked_optimizer)
            kd_optimizer_destroy(opt);
        kd_model_destroy(model);
        check_step(file, (size_t)le64(file + 16), 0.0f);
        check_step(file, (size_t)le64(file + 16), 0.5f);
        FUZZ_CHECK(counter.live == 0, "%zu blocks leaked after destroy", counter.live);
    }
    free(file);
    return 0;
}
