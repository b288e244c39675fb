/* The results table of kd-mnist, printed and as JSON. */
#ifndef KD_MNIST_REPORT_H
#define KD_MNIST_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { REPORT_TEACHER, REPORT_BASELINE, REPORT_DISTILLED, REPORT_MODELS, REPORT_MAX_MEMBERS = 100 };

typedef struct report_entry {
    int present;
    size_t inputs, hidden;
    int epochs;
    size_t errors;
    double seconds;
    int loaded; /* read from a checkpoint rather than trained */
} report_entry;

typedef struct report {
    const char *data;
    size_t train_count, test_count, transfer_count;
    uint64_t seed;
    double temperature, alpha, transfer_fraction;
    int omit_class, ensemble;
    report_entry model[REPORT_MODELS];
    size_t member_errors[REPORT_MAX_MEMBERS];
    /* --omit-class */
    int has_omitted;
    size_t class_count, baseline_class_errors, before, before_class, after, after_class;
    double shift;
} report;

void report_init(report *r, const char *data, size_t train_count, size_t test_count);
void report_model(report *r, int which, size_t inputs, size_t hidden, int epochs, size_t errors,
                  double seconds, int loaded);
void report_member(report *r, int member, size_t errors);
void report_omitted(report *r, size_t class_count, size_t baseline_class_errors, size_t before,
                    size_t before_class, double shift, size_t after, size_t after_class);

/* The fraction of the teacher-baseline gap that distillation recovered (NaN without a gap). */
double report_gap_recovered(const report *r);

void report_print(const report *r, FILE *out);

/* Writes every number as JSON; returns 0, or -1 with errno set. */
int report_write_json(const report *r, const char *path);

#endif /* KD_MNIST_REPORT_H */
