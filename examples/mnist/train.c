/* Training and evaluating networks on MNIST-format data with libkd. */
#include "train.h"

#include <math.h>
#include <stdlib.h>

#include "progress.h"

/* Everything a training run allocates, released together. */
typedef struct run {
    kd_model *model;
    kd_optimizer *optimizer;
    kd_loss *loss;
    kd_trainer *trainer;
    size_t *order;
    float *inputs, *teacher;
    int32_t *labels;
} run;

static void run_free(run *r, int keep_model)
{
    kd_trainer_destroy(r->trainer);
    kd_loss_destroy(r->loss);
    kd_optimizer_destroy(r->optimizer);
    if (!keep_model)
        kd_model_destroy(r->model);
    free(r->order);
    free(r->inputs);
    free(r->teacher);
    free(r->labels);
}

static kd_status configure(const train_config *c, run *r)
{
    const size_t widths[4] = {IMAGE_PIXELS, c->hidden[0], c->hidden[1], CLASS_COUNT};
    kd_status s = kd_model_create_dense(&r->model, widths, 4, c->seed, NULL);
    if (s == KD_OK)
        s = kd_model_set(r->model, KD_MODEL_PARAM_INPUT_DROPOUT, c->input_dropout);
    if (s == KD_OK)
        s = kd_model_set(r->model, KD_MODEL_PARAM_HIDDEN_DROPOUT, c->hidden_dropout);
    if (s == KD_OK)
        s = kd_model_set(r->model, KD_MODEL_PARAM_MAX_NORM, c->max_norm);
    if (s == KD_OK)
        s = kd_optimizer_create(&r->optimizer, KD_OPTIMIZER_SGD, r->model, NULL);
    if (s == KD_OK)
        s = kd_optimizer_set(r->optimizer, KD_OPTIMIZER_PARAM_MOMENTUM, c->momentum);
    if (s == KD_OK)
        s = kd_loss_create(&r->loss, NULL);
    if (s == KD_OK && c->teacher != NULL) {
        s = kd_loss_set(r->loss, KD_LOSS_PARAM_TEMPERATURE, c->temperature);
        if (s == KD_OK)
            s = kd_loss_set(r->loss, KD_LOSS_PARAM_ALPHA, c->alpha);
        if (s == KD_OK)
            s = kd_loss_set(r->loss, KD_LOSS_PARAM_TEACHER_KIND,
                            c->teacher_is_probabilities ? KD_TEACHER_PROBABILITIES : KD_TEACHER_LOGITS);
    }
    if (s == KD_OK)
        s = kd_trainer_create(&r->trainer, r->model, r->optimizer, r->loss, NULL);
    if (s == KD_OK)
        s = kd_trainer_reserve(r->trainer, c->batch);
    return s;
}

kd_status train_network(const train_config *c, const dataset *train, kd_model **model,
                        double *seconds)
{
    run r = {0};
    r.order = malloc(train->count * sizeof *r.order);
    r.inputs = malloc(c->batch * IMAGE_PIXELS * sizeof *r.inputs);
    r.teacher = malloc(c->batch * CLASS_COUNT * sizeof *r.teacher);
    r.labels = malloc(c->batch * sizeof *r.labels);
    kd_status s = (r.order && r.inputs && r.teacher && r.labels) ? configure(c, &r)
                                                                 : KD_ERROR_OUT_OF_MEMORY;
    if (s != KD_OK) {
        run_free(&r, 0);
        return s;
    }
    for (size_t i = 0; i < train->count; i++)
        r.order[i] = i;
    uint64_t rng = c->seed ^ 0x6B64u;
    progress p;
    progress_start(&p, c->name, c->epochs, c->quiet);
    const size_t batches = (train->count + c->batch - 1) / c->batch;
    double rate = c->learning_rate;
    for (int epoch = 1; epoch <= c->epochs && s == KD_OK; epoch++) {
        kd_optimizer_set(r.optimizer, KD_OPTIMIZER_PARAM_LEARNING_RATE, rate);
        shuffle(r.order, train->count, &rng);
        double loss_sum = 0.0;
        size_t seen = 0, right = 0;
        for (size_t b = 0; b < batches && s == KD_OK; b++) {
            const size_t *index = r.order + b * c->batch;
            size_t n = train->count - b * c->batch < c->batch ? train->count - b * c->batch : c->batch;
            dataset_batch(train, index, n, epoch <= c->jitter_epochs ? c->jitter : 0, &rng, r.inputs,
                          r.labels);
            if (c->teacher != NULL)
                for (size_t i = 0; i < n; i++)
                    for (int k = 0; k < CLASS_COUNT; k++)
                        r.teacher[i * CLASS_COUNT + k] = c->teacher[index[i] * CLASS_COUNT + k];
            float values[KD_LOSS_VALUE_COUNT];
            s = kd_trainer_step(r.trainer, r.inputs, n, c->teacher != NULL ? r.teacher : NULL,
                                r.labels, values);
            if (s != KD_OK)
                break;
            const float *logits;
            kd_trainer_last_logits(r.trainer, &logits, NULL);
            for (size_t i = 0; i < n; i++)
                right += predicted_class(logits + i * CLASS_COUNT, -1, 0.0) == r.labels[i];
            loss_sum += values[KD_LOSS_VALUE_TOTAL] * (double)n;
            seen += n;
            if ((b + 1) % 50 == 0 || b + 1 == batches)
                progress_update(&p, epoch, (double)(b + 1) / (double)batches, loss_sum / (double)seen,
                                (double)right / (double)seen);
        }
        rate *= c->learning_rate_decay;
    }
    *seconds = progress_finish(&p);
    if (s == KD_OK)
        *model = r.model;
    run_free(&r, s == KD_OK);
    return s;
}

float *network_logits(kd_model *model, const dataset *set)
{
    enum { CHUNK = 1000 };
    float *logits = malloc(set->count * CLASS_COUNT * sizeof *logits);
    float *inputs = malloc(CHUNK * IMAGE_PIXELS * sizeof *inputs);
    int32_t labels[CHUNK];
    size_t index[CHUNK];
    int ok = logits != NULL && inputs != NULL;
    for (size_t start = 0; ok && start < set->count; start += CHUNK) {
        size_t n = set->count - start < CHUNK ? set->count - start : CHUNK;
        for (size_t i = 0; i < n; i++)
            index[i] = start + i;
        dataset_batch(set, index, n, 0, NULL, inputs, labels);
        ok = kd_model_forward(model, inputs, n, KD_MODE_INFERENCE, logits + start * CLASS_COUNT) == KD_OK;
    }
    free(inputs);
    if (!ok) {
        free(logits);
        return NULL;
    }
    return logits;
}

int predicted_class(const float *logits, int shifted_class, double shift)
{
    int best = 0;
    double best_value = -HUGE_VAL;
    for (int k = 0; k < CLASS_COUNT; k++) {
        double v = logits[k] + (k == shifted_class ? shift : 0.0);
        if (v > best_value) {
            best_value = v;
            best = k;
        }
    }
    return best;
}

size_t count_errors(const float *logits, const dataset *set, int shifted_class, double shift,
                    size_t *class_errors)
{
    size_t errors = 0;
    if (class_errors != NULL)
        *class_errors = 0;
    for (size_t i = 0; i < set->count; i++) {
        int wrong = predicted_class(logits + i * CLASS_COUNT, shifted_class, shift) != set->labels[i];
        errors += (size_t)wrong;
        if (class_errors != NULL && set->labels[i] == shifted_class)
            *class_errors += (size_t)wrong;
    }
    return errors;
}
