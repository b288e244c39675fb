/* Training and evaluating networks on MNIST-format data with libkd. */
#ifndef KD_MNIST_TRAIN_H
#define KD_MNIST_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include <kd.h>

#include "dataset.h"

typedef struct train_config {
    const char *name;         /* for progress lines */
    size_t hidden[2];         /* two hidden layers */
    int epochs;
    size_t batch;
    double learning_rate;     /* first epoch's */
    double learning_rate_decay; /* multiplies the rate after each epoch */
    double momentum;
    double input_dropout, hidden_dropout, max_norm;
    int jitter;               /* pixels */
    int jitter_epochs;        /* the first this many epochs are jittered; the rest are not */
    uint64_t seed;
    /* Distillation: NULL for hard labels only. Else one row of CLASS_COUNT per example of the
     * training set: teacher logits, or soft targets already at the temperature. */
    const float *teacher;
    int teacher_is_probabilities;
    double temperature, alpha;
    int quiet;
} train_config;

/* Trains a 784-h1-h2-10 network. Returns a libkd status; *seconds gets the training time. */
kd_status train_network(const train_config *config, const dataset *train, kd_model **model,
                        double *seconds);

/* Logits of `model` for every example of `set` (count x CLASS_COUNT, malloc'd), or NULL. */
float *network_logits(kd_model *model, const dataset *set);

/* The class with the largest logit, after adding `shift` to class shifted_class's (-1: none). */
int predicted_class(const float *logits, int shifted_class, double shift);

/* Errors of logits against the set's labels, in all and for one class (class_errors may be
 * NULL). A class bias `shift` is added to class `shifted_class`'s logit first (0: none). */
size_t count_errors(const float *logits, const dataset *set, int shifted_class, double shift,
                    size_t *class_errors);

#endif /* KD_MNIST_TRAIN_H */
