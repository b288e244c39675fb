/* The results table of kd-mnist, printed and as JSON. */
#include "report.h"

#include <math.h>
#include <string.h>

#include <kd.h>

static const char *const model_names[REPORT_MODELS] = {"teacher", "baseline", "distilled"};

void report_init(report *r, const char *data, size_t train_count, size_t test_count)
{
    memset(r, 0, sizeof *r);
    r->data = data;
    r->train_count = train_count;
    r->test_count = test_count;
    r->transfer_count = train_count;
    r->omit_class = -1;
    r->ensemble = 1;
    r->transfer_fraction = 1.0;
}

void report_model(report *r, int which, size_t inputs, size_t hidden, int epochs, size_t errors,
                  double seconds, int loaded)
{
    r->model[which] = (report_entry){1, inputs, hidden, epochs, errors, seconds, loaded};
}

void report_member(report *r, int member, size_t errors) { r->member_errors[member] = errors; }

void report_omitted(report *r, size_t class_count, size_t baseline_class_errors, size_t before,
                    size_t before_class, double shift, size_t after, size_t after_class)
{
    r->has_omitted = 1;
    r->class_count = class_count;
    r->baseline_class_errors = baseline_class_errors;
    r->before = before;
    r->before_class = before_class;
    r->shift = shift;
    r->after = after;
    r->after_class = after_class;
}

double report_gap_recovered(const report *r)
{
    double teacher = (double)r->model[REPORT_TEACHER].errors;
    double baseline = (double)r->model[REPORT_BASELINE].errors;
    double distilled = (double)r->model[REPORT_DISTILLED].errors;
    return baseline > teacher ? (baseline - distilled) / (baseline - teacher) : NAN;
}

static double accuracy(const report *r, size_t errors)
{
    return 100.0 * (1.0 - (double)errors / (double)r->test_count);
}

void report_print(const report *r, FILE *out)
{
    fprintf(out, "kd-mnist, libkd %s: %s\n", kd_version_string(), r->data);
    fprintf(out, "training images %zu (transfer set %zu), test images %zu; seed %llu, T %g, alpha %g\n\n",
            r->train_count, r->transfer_count, r->test_count, (unsigned long long)r->seed,
            r->temperature, r->alpha);
    fprintf(out, "%-36s %12s %9s %7s %11s\n", "model", "test errors", "accuracy", "epochs", "train time");
    for (int m = 0; m < REPORT_MODELS; m++) {
        const report_entry *e = &r->model[m];
        if (!e->present)
            continue;
        char label[64], time[32];
        snprintf(label, sizeof label, "%s %zu-%zu-%zu-10%s", model_names[m], e->inputs, e->hidden,
                 e->hidden, m == REPORT_TEACHER && r->ensemble > 1 ? " (ensemble)" : "");
        if (e->loaded)
            snprintf(time, sizeof time, "loaded");
        else
            snprintf(time, sizeof time, "%.1f s", e->seconds);
        char epochs[16] = "-"; /* unknown for a loaded network */
        if (!e->loaded)
            snprintf(epochs, sizeof epochs, "%d", e->epochs);
        fprintf(out, "%-36s %12zu %8.2f%% %7s %11s\n", label, e->errors, accuracy(r, e->errors),
                epochs, time);
    }
    for (int m = 0; r->ensemble > 1 && m < r->ensemble; m++)
        fprintf(out, "  ensemble member %-19d %12zu %8.2f%%\n", m, r->member_errors[m],
                accuracy(r, r->member_errors[m]));
    double gap = report_gap_recovered(r);
    if (isnan(gap))
        fprintf(out, "\nthe baseline is not worse than the teacher: no gap to recover\n");
    else
        fprintf(out, "\ndistillation recovered %.1f%% of the teacher-baseline gap\n", 100.0 * gap);
    fprintf(out, "(the paper, on MNIST: teacher 67, baseline 146, distilled 74 test errors: 91%%)\n");
    if (r->has_omitted) {
        fprintf(out, "\nclass %d omitted from the transfer set (%zu test images of it):\n",
                r->omit_class, r->class_count);
        fprintf(out, "  baseline:  %zu of them wrong\n", r->baseline_class_errors);
        fprintf(out, "  distilled: %zu test errors, %zu of them on class %d (%.1f%% of it right)\n",
                r->before, r->before_class, r->omit_class,
                100.0 * (1.0 - (double)r->before_class / (double)r->class_count));
        fprintf(out, "  distilled, class %d bias +%.1f (chosen on the training data): %zu test errors, "
                     "%zu on class %d (%.1f%% of it right)\n",
                r->omit_class, r->shift, r->after, r->after_class, r->omit_class,
                100.0 * (1.0 - (double)r->after_class / (double)r->class_count));
        fprintf(out, "  (the paper, digit 3 on MNIST: 206 errors, 133 on 3s; bias +3.5: 109 errors, 14 on 3s, 98.6%%)\n");
    }
}

/* Writes a JSON string (the data path) with the characters JSON needs escaped. */
static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s != '\0'; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int report_write_json(const report *r, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "{\n  \"libkd_version\": \"%s\",\n  \"data\": ", kd_version_string());
    json_string(f, r->data);
    fprintf(f, ",\n  \"train_count\": %zu,\n  \"transfer_count\": %zu,\n  \"test_count\": %zu,\n",
            r->train_count, r->transfer_count, r->test_count);
    fprintf(f, "  \"seed\": %llu,\n  \"temperature\": %.17g,\n  \"alpha\": %.17g,\n",
            (unsigned long long)r->seed, r->temperature, r->alpha);
    fprintf(f, "  \"transfer_fraction\": %.17g,\n  \"ensemble\": %d,\n  \"models\": {\n",
            r->transfer_fraction, r->ensemble);
    for (int m = 0; m < REPORT_MODELS; m++) {
        const report_entry *e = &r->model[m];
        char epochs[16] = "null"; /* unknown for a loaded network */
        if (!e->loaded)
            snprintf(epochs, sizeof epochs, "%d", e->epochs);
        fprintf(f, "    \"%s\": {\"widths\": [%zu, %zu, %zu, 10], \"epochs\": %s, \"test_errors\": %zu, "
                   "\"accuracy\": %.6f, \"train_seconds\": %.3f, \"loaded\": %s}%s\n",
                model_names[m], e->inputs, e->hidden, e->hidden, epochs, e->errors,
                accuracy(r, e->errors) / 100.0, e->seconds, e->loaded ? "true" : "false",
                m + 1 < REPORT_MODELS ? "," : "");
    }
    fprintf(f, "  },\n  \"ensemble_member_test_errors\": [");
    for (int m = 0; r->ensemble > 1 && m < r->ensemble; m++)
        fprintf(f, "%s%zu", m > 0 ? ", " : "", r->member_errors[m]);
    double gap = report_gap_recovered(r);
    fprintf(f, "],\n  \"gap_recovered\": ");
    if (isnan(gap))
        fprintf(f, "null");
    else
        fprintf(f, "%.6f", gap);
    if (r->has_omitted)
        fprintf(f, ",\n  \"omitted_class\": {\"class\": %d, \"test_count\": %zu, \"baseline_class_errors\": %zu, "
                   "\"errors_before\": %zu, \"class_errors_before\": %zu, \"bias_shift\": %.2f, "
                   "\"errors_after\": %zu, \"class_errors_after\": %zu}",
                r->omit_class, r->class_count, r->baseline_class_errors, r->before, r->before_class,
                r->shift, r->after, r->after_class);
    fprintf(f, "\n}\n");
    return fclose(f) == 0 ? 0 : -1;
}
