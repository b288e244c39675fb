/* kd-mnist: the paper's MNIST distillation experiments (Hinton, Vinyals & Dean 2015, section 3)
 * on real data, with libkd. See examples/mnist/README.md and docs/mnist.md. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kd.h>

#include "dataset.h"
#include "regular_file.h"
#include "report.h"
#include "train.h"

#define DEFAULT_DATA "/usr/share/datasets/fashion-mnist"

enum { QUICK_TRAIN_COUNT = 10000 };

/* OpenBLAS's thread control, when the BLAS libkd was linked with is OpenBLAS. */
extern void openblas_set_num_threads(int threads) __attribute__((weak));

typedef struct options {
    const char *data, *json, *teacher_file, *save_dir;
    int teacher_epochs, epochs, threads, quick, quiet, omit_class, ensemble, jitter;
    size_t teacher_hidden, hidden, batch;
    double temperature, alpha, transfer_fraction, learning_rate, teacher_learning_rate,
        learning_rate_decay;
    double input_dropout, hidden_dropout; /* the teacher's */
    uint64_t seed;
} options;

static void usage(FILE *to)
{
    fprintf(to,
            "usage: kd-mnist [options]\n"
            "Trains a teacher (784-1200-1200-10: dropout, max-norm, optional jitter), a small net\n"
            "on hard labels (784-800-800-10) and the same small net distilled from the teacher's\n"
            "soft targets, then prints their test errors (Hinton et al. 2015, section 3).\n"
            "N, K and S are plain decimal integers; T, A, R, D, P and F are numbers.\n\n"
            "  --data DIR              IDX files (plain or .gz) [" DEFAULT_DATA "]\n"
            "  --epochs N              epochs of the small nets [15]\n"
            "  --teacher-epochs N      epochs of the teacher [10/3 of --epochs: 50]\n"
            "  --hidden N              units per hidden layer of the small nets [800]\n"
            "  --teacher-hidden N      units per hidden layer of the teacher [1200]\n"
            "  --temperature T         distillation temperature [4; the paper's MNIST run: 20]\n"
            "  --alpha A               weight of the soft term, in [0, 1] [0.9]\n"
            "  --learning-rate R       the small nets' SGD rate of the first epoch (momentum 0.9)\n"
            "                          [0.02]\n"
            "  --teacher-learning-rate R   the teacher's [0.05]\n"
            "  --learning-rate-decay D every net's rate is multiplied by D after each epoch [0.95]\n"
            "  --batch N               mini-batch size [100]\n"
            "  --input-dropout P       the teacher's dropout rate on its inputs [0]\n"
            "  --hidden-dropout P      the teacher's dropout rate on its hidden units [0.2]\n"
            "  --jitter N              the teacher's inputs shift by up to N pixels [0]; the\n"
            "                          paper's 2, with --input-dropout 0.1 --hidden-dropout 0.3,\n"
            "                          makes a better teacher on small sets such as the npm digits\n"
            "  --omit-class K          no example of class K in the transfer set; report class K\n"
            "                          before and after the bias shift chosen on the training data\n"
            "  --transfer-fraction F   distil (and train the baseline) on a fraction F of the data\n"
            "  --ensemble N            the teacher is an ensemble of N networks\n"
            "  --teacher FILE          load the teacher from this checkpoint if it exists, else\n"
            "                          train it and save it there (ensembles: FILE.0, FILE.1, ...)\n"
            "  --save DIR              save every trained network into DIR\n"
            "  --seed S                seed of every random choice [1]\n"
            "  --threads N             BLAS threads (OpenBLAS) [the BLAS's default]\n"
            "  --quick                 a CI-sized run: 10000 training images, 3 epochs (teacher 6)\n"
            "  --json FILE             write every number of the table to FILE\n"
            "  --quiet                 no progress on stderr\n");
}

/* A real number in [min, max] (strtod's syntax). Returns 0, or -1 if text is not one. */
static int parse_number(const char *text, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

/* A plain decimal integer in [min, max]: digits only, no sign, space, fraction, exponent or
 * hexadecimal prefix. Returns 0, or -1 if text is not one. */
static int parse_integer(const char *text, uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (*text == '\0')
        return -1;
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < '0' || *c > '9')
            return -1;
        const uint64_t digit = (uint64_t)(*c - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1; /* it would not fit in 64 bits */
        v = v * 10 + digit;
        if (v > max)
            return -1;
    }
    if (v < min)
        return -1;
    *out = v;
    return 0;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.data = DEFAULT_DATA,
                   .teacher_epochs = -1,
                   .epochs = 15,
                   .omit_class = -1,
                   .ensemble = 1,
                   .teacher_hidden = 1200,
                   .hidden = 800,
                   .batch = 100,
                   .temperature = 4.0,
                   .alpha = 0.9,
                   .transfer_fraction = 1.0,
                   .learning_rate = 0.02,
                   .teacher_learning_rate = 0.05,
                   .learning_rate_decay = 0.95,
                   .input_dropout = 0.0,
                   .hidden_dropout = 0.2,
                   .jitter = 0,
                   .seed = 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        double x = 0.0, low = 0.0, high = 0.0;
        uint64_t n = 0;
        int bad = 0;
        const char *kind = ""; /* what the value must be, from low to high */
        /* OPTION: `name VALUE`, where `parsed` is 0 if VALUE is `what` in [min, max]; then
         * `target`. */
#define OPTION(name, what, min, max, parsed, target)                                               \
    else if (strcmp(a, name) == 0) {                                                               \
        bad = v == NULL || (parsed) != 0;                                                          \
        kind = what;                                                                               \
        low = min;                                                                                 \
        high = max;                                                                                \
        if (!bad)                                                                                  \
            target;                                                                                \
        i++;                                                                                       \
    }
#define NUMBER(name, min, max, target)                                                             \
    OPTION(name, "a number", min, max, parse_number(v, min, max, &x), target)
#define INTEGER(name, min, max, target)                                                            \
    OPTION(name, "a decimal integer", min, max, parse_integer(v, min, max, &n), target)
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "--quick") == 0) {
            o->quick = 1;
        } else if (strcmp(a, "--quiet") == 0) {
            o->quiet = 1;
        } else if (strcmp(a, "--data") == 0 || strcmp(a, "--json") == 0
                   || strcmp(a, "--teacher") == 0 || strcmp(a, "--save") == 0) {
            bad = v == NULL;
            const char **target = a[2] == 'd' ? &o->data : a[2] == 'j' ? &o->json
                                 : a[2] == 't' ? &o->teacher_file : &o->save_dir;
            *target = v;
            i++;
        }
        INTEGER("--epochs", 1, 100000, o->epochs = (int)n)
        INTEGER("--teacher-epochs", 1, 100000, o->teacher_epochs = (int)n)
        INTEGER("--hidden", 1, 100000, o->hidden = (size_t)n)
        INTEGER("--teacher-hidden", 1, 100000, o->teacher_hidden = (size_t)n)
        NUMBER("--temperature", 1e-3, 1e4, o->temperature = x)
        NUMBER("--alpha", 0, 1, o->alpha = x)
        NUMBER("--learning-rate", 0, 10, o->learning_rate = x)
        NUMBER("--teacher-learning-rate", 0, 10, o->teacher_learning_rate = x)
        NUMBER("--learning-rate-decay", 0, 1, o->learning_rate_decay = x)
        INTEGER("--batch", 1, 60000, o->batch = (size_t)n)
        NUMBER("--input-dropout", 0, 0.9, o->input_dropout = x)
        INTEGER("--jitter", 0, 8, o->jitter = (int)n)
        NUMBER("--hidden-dropout", 0, 0.9, o->hidden_dropout = x)
        INTEGER("--omit-class", 0, 9, o->omit_class = (int)n)
        NUMBER("--transfer-fraction", 1e-4, 1, o->transfer_fraction = x)
        INTEGER("--ensemble", 1, 100, o->ensemble = (int)n)
        INTEGER("--seed", 0, 9007199254740992u, o->seed = n)
        INTEGER("--threads", 1, 1024, o->threads = (int)n)
        else {
            fprintf(stderr, "kd-mnist: unknown option '%s' (see --help)\n", a);
            return -1;
        }
#undef INTEGER
#undef NUMBER
#undef OPTION
        if (bad && v == NULL) {
            fprintf(stderr, "kd-mnist: %s needs a value\n", a);
            return -1;
        }
        if (bad) {
            fprintf(stderr, "kd-mnist: %s needs a valid value: %s from %.16g to %.16g (see --help)\n",
                    a, kind, low, high);
            return -1;
        }
    }
    /* The teacher is regularised (dropout, max-norm, maybe jitter) and learns more slowly than the
     * small nets: it trains 10/3 as long (50 epochs to their 15) unless told otherwise. */
    if (o->teacher_epochs < 0)
        o->teacher_epochs = (10 * o->epochs + 2) / 3;
    return 0;
}

static train_config base_config(const options *o, const char *name, size_t hidden, int epochs,
                                uint64_t seed)
{
    return (train_config){.name = name,
                          .hidden = {hidden, hidden},
                          .epochs = epochs,
                          .batch = o->batch,
                          .learning_rate = o->learning_rate,
                          .learning_rate_decay = o->learning_rate_decay,
                          .momentum = 0.9,
                          .seed = seed,
                          .temperature = o->temperature,
                          .alpha = o->alpha,
                          .quiet = o->quiet};
}

static int fail(const char *what, kd_status status)
{
    fprintf(stderr, "kd-mnist: %s: %s\n", what, kd_status_string(status));
    return 1;
}

static int file_exists(const char *path)
{
    struct stat info;
    return stat(path, &info) == 0;
}

/* The checkpoint of teacher `member` under --teacher FILE: FILE, or FILE.<member> for an
 * ensemble; "" without --teacher. */
static void teacher_path(const options *o, int member, char *path, size_t size)
{
    path[0] = '\0';
    if (o->teacher_file != NULL)
        snprintf(path, size, o->ensemble > 1 ? "%s.%d" : "%s", o->teacher_file, member);
}

/* Loads the teacher checkpoint at `path` into *model, which must be a network from the 784
 * pixels to the 10 classes. Returns 0, or -1 with one line on stderr and *model NULL. */
static int load_teacher(const char *path, kd_model **model)
{
    char why[160];
    /* kd_checkpoint_load would wait forever on a FIFO: only a regular file is read. */
    int fd = open_regular(path, NULL, why, sizeof why);
    kd_status s = KD_ERROR_IO;
    if (fd >= 0) {
        close(fd);
        if ((s = kd_checkpoint_load(model, NULL, path, NULL)) != KD_OK)
            snprintf(why, sizeof why, "%s", kd_status_string(s));
    }
    if (s == KD_OK) {
        const size_t inputs = kd_model_input_count(*model), outputs = kd_model_output_count(*model);
        if (inputs == IMAGE_PIXELS && outputs == CLASS_COUNT)
            return 0;
        snprintf(why, sizeof why, "its network maps %zu inputs to %zu outputs, not %d to %d", inputs,
                 outputs, IMAGE_PIXELS, CLASS_COUNT);
        kd_model_destroy(*model);
        *model = NULL;
    }
    fprintf(stderr, "kd-mnist: %s: cannot load the teacher: %s\n", path, why);
    return -1;
}

/* Trains teacher network `member` and saves it under --teacher, unless it was loaded (*model
 * set by load_teachers). */
static kd_status teacher_network(const options *o, int member, const dataset *train,
                                 kd_model **model, double *seconds, int *loaded)
{
    *seconds = 0.0;
    *loaded = *model != NULL;
    if (*loaded)
        return KD_OK;
    char path[4096];
    teacher_path(o, member, path, sizeof path);
    char name[32];
    snprintf(name, sizeof name, o->ensemble > 1 ? "teacher %d" : "teacher", member);
    train_config c = base_config(o, name, o->teacher_hidden, o->teacher_epochs,
                                 o->seed + 1000u * (uint64_t)member);
    c.learning_rate = o->teacher_learning_rate;
    c.input_dropout = o->input_dropout;
    c.hidden_dropout = o->hidden_dropout;
    c.max_norm = 3.5;
    c.jitter = o->jitter;
    /* The last quarter of the epochs (at least one) sees the images as the test set does. */
    c.jitter_epochs = o->teacher_epochs - (o->teacher_epochs + 3) / 4;
    kd_status s = train_network(&c, train, model, seconds);
    if (s == KD_OK && path[0] != '\0')
        s = kd_checkpoint_save(*model, NULL, path);
    return s;
}

static kd_status save_into(const options *o, const kd_model *model, const char *name)
{
    if (o->save_dir == NULL)
        return KD_OK;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.kdc", o->save_dir, name);
    return kd_checkpoint_save(model, NULL, path);
}

/* Indices of the transfer set: every training example, less class omit_class, then a random
 * fraction of what is left. */
static size_t transfer_indices(const options *o, const dataset *train, size_t *index)
{
    size_t n = 0;
    for (size_t i = 0; i < train->count; i++)
        if ((int)train->labels[i] != o->omit_class)
            index[n++] = i;
    if (o->transfer_fraction < 1.0) {
        uint64_t rng = o->seed ^ 0x7472616E73666572ull;
        shuffle(index, n, &rng);
        size_t keep = (size_t)ceil(o->transfer_fraction * (double)n);
        n = keep < 1 ? 1 : keep;
    }
    return n;
}

/* The class-shift that minimises errors on the (full) training set, searched over [0, 20]. */
static double best_shift(const float *train_logits, const dataset *train, int cls)
{
    double best = 0.0;
    size_t fewest = SIZE_MAX;
    for (int step = 0; step <= 200; step++) {
        double shift = 0.1 * step;
        size_t errors = count_errors(train_logits, train, cls, shift, NULL);
        if (errors < fewest) {
            fewest = errors;
            best = shift;
        }
    }
    return best;
}

/* --quick: a random subset of 10,000 training images, 3 epochs for the small nets, 6 for the
 * teacher. */
static int make_quick(options *o, dataset *train)
{
    o->epochs = 3;
    o->teacher_epochs = 6;
    if (train->count <= QUICK_TRAIN_COUNT)
        return 0;
    size_t *pick = malloc(train->count * sizeof *pick);
    if (pick == NULL)
        return -1;
    for (size_t i = 0; i < train->count; i++)
        pick[i] = i;
    uint64_t rng = o->seed;
    shuffle(pick, train->count, &rng);
    dataset small;
    int result = dataset_subset(train, pick, QUICK_TRAIN_COUNT, &small);
    free(pick);
    if (result == 0) {
        dataset_free(train);
        *train = small;
    }
    return result;
}

/* The teacher networks (one, or an ensemble) and what the students need from them. */
typedef struct teachers {
    kd_model *member[REPORT_MAX_MEMBERS];
    float *train_logits[REPORT_MAX_MEMBERS];
    float *test_probabilities; /* the ensemble's mean prediction at T = 1 on the test set */
    float *soft;               /* ensembles: soft targets at T for every training example */
} teachers;

static void teachers_free(teachers *t, int count)
{
    for (int m = 0; m < count; m++) {
        free(t->train_logits[m]);
        kd_model_destroy(t->member[m]);
    }
    free(t->test_probabilities);
    free(t->soft);
}

/* Loads, before any training, every teacher network whose checkpoint exists under --teacher
 * into t->member[]. Returns 0, or -1 with one line on stderr. */
static int load_teachers(const options *o, teachers *t)
{
    char path[4096];
    for (int m = 0; m < o->ensemble; m++) {
        teacher_path(o, m, path, sizeof path);
        if (path[0] != '\0' && file_exists(path) && load_teacher(path, &t->member[m]) != 0)
            return -1;
    }
    return 0;
}

/* The hidden width h of a 784-h-h-10 network, from its parameter count
 * (784 h + h + h h + h + 10 h + 10), or 0 if it has another shape. */
static size_t hidden_width(const kd_model *model)
{
    const size_t p = kd_model_parameter_count(model);
    for (size_t h = 1; h * h <= p; h++)
        if ((IMAGE_PIXELS + 1) * h + (h + 1) * h + (h + 1) * CLASS_COUNT == p)
            return h;
    return 0;
}

/* 1. The teacher (or ensemble), trained on all the training data with its regularisers, or
 * loaded. Fills the report's teacher line. */
static kd_status prepare_teachers(const options *o, const dataset *train, const dataset *test,
                                  teachers *t, report *rep)
{
    double seconds_total = 0.0;
    int loaded_all = 1;
    t->test_probabilities = calloc(test->count * CLASS_COUNT, sizeof *t->test_probabilities);
    if (t->test_probabilities == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    for (int m = 0; m < o->ensemble; m++) {
        double seconds;
        int loaded;
        kd_status s = teacher_network(o, m, train, &t->member[m], &seconds, &loaded);
        if (s != KD_OK)
            return s;
        seconds_total += seconds;
        loaded_all &= loaded;
        char name[32];
        snprintf(name, sizeof name, o->ensemble > 1 ? "teacher-%d" : "teacher", m);
        if ((s = save_into(o, t->member[m], name)) != KD_OK)
            return s;
        t->train_logits[m] = network_logits(t->member[m], train);
        float *member_test = network_logits(t->member[m], test);
        if (t->train_logits[m] == NULL || member_test == NULL) {
            free(member_test);
            return KD_ERROR_OUT_OF_MEMORY;
        }
        if (o->ensemble > 1)
            report_member(rep, m, count_errors(member_test, test, -1, 0.0, NULL));
        /* The ensemble's own prediction: the mean of its members' probabilities at T = 1. */
        float q[CLASS_COUNT];
        for (size_t i = 0; i < test->count; i++) {
            kd_soft_targets(member_test + i * CLASS_COUNT, 1, CLASS_COUNT, 1.0f, q);
            for (int k = 0; k < CLASS_COUNT; k++)
                t->test_probabilities[i * CLASS_COUNT + k] += q[k] / (float)o->ensemble;
        }
        free(member_test);
    }
    report_model(rep, REPORT_TEACHER, IMAGE_PIXELS, hidden_width(t->member[0]), o->teacher_epochs,
                 count_errors(t->test_probabilities, test, -1, 0.0, NULL), seconds_total, loaded_all);
    if (o->ensemble == 1)
        return KD_OK;
    t->soft = malloc(train->count * CLASS_COUNT * sizeof *t->soft);
    if (t->soft == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    return kd_soft_targets_ensemble((const float *const *)t->train_logits, (size_t)o->ensemble, NULL,
                                    KD_ENSEMBLE_ARITHMETIC, train->count, CLASS_COUNT, CLASS_COUNT,
                                    (float)o->temperature, t->soft, CLASS_COUNT);
}

/* The small nets' results, kept for the omitted-class report. */
typedef struct students {
    kd_model *baseline, *distilled;
    float *baseline_test, *distilled_test;
} students;

static void students_free(students *st)
{
    free(st->distilled_test);
    free(st->baseline_test);
    kd_model_destroy(st->distilled);
    kd_model_destroy(st->baseline);
}

static kd_status train_student(const train_config *c, const dataset *transfer, const dataset *test,
                               kd_model **model, float **test_logits, double *seconds)
{
    kd_status s = train_network(c, transfer, model, seconds);
    if (s == KD_OK && (*test_logits = network_logits(*model, test)) == NULL)
        s = KD_ERROR_OUT_OF_MEMORY;
    return s;
}

/* 2.-4. The transfer set; the small net on its hard labels; the same net distilled from the
 * teacher's view of it. With a fraction of the data both take as many steps as a full run. */
static kd_status run_students(const options *o, const dataset *train, const dataset *test,
                              const teachers *t, students *st, report *rep)
{
    size_t *index = malloc(train->count * sizeof *index);
    float *teacher_rows = malloc(train->count * CLASS_COUNT * sizeof *teacher_rows);
    dataset transfer = {0, NULL, NULL};
    size_t n = index == NULL ? 0 : transfer_indices(o, train, index);
    kd_status s = KD_ERROR_OUT_OF_MEMORY;
    if (teacher_rows != NULL && n > 0 && dataset_subset(train, index, n, &transfer) == 0) {
        const float *source = o->ensemble > 1 ? t->soft : t->train_logits[0];
        for (size_t i = 0; i < n; i++)
            memcpy(teacher_rows + i * CLASS_COUNT, source + index[i] * CLASS_COUNT,
                   CLASS_COUNT * sizeof *source);
        rep->transfer_count = n;
        int epochs = o->epochs;
        if (n < train->count)
            epochs = (int)ceil((double)o->epochs * (double)train->count / (double)n);
        double seconds;
        train_config c = base_config(o, "baseline", o->hidden, epochs, o->seed + 1);
        s = train_student(&c, &transfer, test, &st->baseline, &st->baseline_test, &seconds);
        if (s == KD_OK) {
            report_model(rep, REPORT_BASELINE, IMAGE_PIXELS, o->hidden, epochs,
                         count_errors(st->baseline_test, test, -1, 0.0, NULL), seconds, 0);
            c.name = "distilled";
            c.teacher = teacher_rows;
            c.teacher_is_probabilities = o->ensemble > 1;
            s = train_student(&c, &transfer, test, &st->distilled, &st->distilled_test, &seconds);
        }
        if (s == KD_OK)
            report_model(rep, REPORT_DISTILLED, IMAGE_PIXELS, o->hidden, epochs,
                         count_errors(st->distilled_test, test, -1, 0.0, NULL), seconds, 0);
        if (s == KD_OK)
            s = save_into(o, st->baseline, "baseline");
        if (s == KD_OK)
            s = save_into(o, st->distilled, "distilled");
    }
    dataset_free(&transfer);
    free(teacher_rows);
    free(index);
    return s;
}

/* 5. The omitted class: errors on it before and after raising its bias, the shift chosen on
 * the training data (which has the class; the transfer set did not). */
static kd_status report_omitted_class(const options *o, const dataset *train, const dataset *test,
                                      const students *st, report *rep)
{
    float *student_train = network_logits(st->distilled, train);
    if (student_train == NULL)
        return KD_ERROR_OUT_OF_MEMORY;
    const int k = o->omit_class;
    double shift = best_shift(student_train, train, k);
    free(student_train);
    size_t before_class, after_class, baseline_class, class_count = 0;
    for (size_t i = 0; i < test->count; i++)
        class_count += test->labels[i] == k;
    size_t before = count_errors(st->distilled_test, test, k, 0.0, &before_class);
    size_t after = count_errors(st->distilled_test, test, k, shift, &after_class);
    count_errors(st->baseline_test, test, k, 0.0, &baseline_class);
    report_omitted(rep, class_count, baseline_class, before, before_class, shift, after, after_class);
    return KD_OK;
}

/* The teacher (or ensemble), the students and the omitted class; prints the table (and writes
 * the JSON). Returns the exit status: 0, or 1 after one line on stderr. */
static int experiment(const options *o, const dataset *train, const dataset *test, teachers *t,
                      students *st, report *rep)
{
    kd_status s = prepare_teachers(o, train, test, t, rep);
    if (s != KD_OK)
        return fail("teacher", s);
    if ((s = run_students(o, train, test, t, st, rep)) != KD_OK)
        return fail("students", s);
    if (o->omit_class >= 0 && (s = report_omitted_class(o, train, test, st, rep)) != KD_OK)
        return fail("omitted class", s);
    report_print(rep, stdout);
    if (o->json != NULL && report_write_json(rep, o->json) != 0) {
        fprintf(stderr, "kd-mnist: %s: cannot write: %s\n", o->json, strerror(errno));
        return 1;
    }
    return 0;
}

/* --omit-class K on a training set of class K alone would leave no transfer set. Returns 0, or
 * -1 with one line on stderr. */
static int check_transfer_set(const options *o, const dataset *train)
{
    if (o->omit_class < 0)
        return 0;
    for (size_t i = 0; i < train->count; i++)
        if (train->labels[i] != o->omit_class)
            return 0;
    fprintf(stderr, "kd-mnist: --omit-class %d: every training image is of class %d, the transfer set would be empty\n",
            o->omit_class, o->omit_class);
    return -1;
}

/* Debian's OpenBLAS 0.3.21 does not recognise some recent x86-64 processors (e.g. Sapphire
 * Rapids under KVM) and falls back to its SSE3 "Prescott" kernels, several times slower than
 * the AVX2 ones those processors run. OpenBLAS picks its kernels when it is loaded, before
 * main(), from OPENBLAS_CORETYPE: when that is unset and the CPU has AVX2 and FMA, run again
 * with OPENBLAS_CORETYPE=Haswell (the AVX2 + FMA kernels). A value the user set is kept. */
static void prefer_avx2_blas(char **argv)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (getenv("OPENBLAS_CORETYPE") != NULL || getenv("KD_MNIST_NO_REEXEC") != NULL)
        return;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return;
    if (setenv("OPENBLAS_CORETYPE", "Haswell", 1) == 0 && setenv("KD_MNIST_NO_REEXEC", "1", 1) == 0)
        execv("/proc/self/exe", argv);
    /* exec failed: carry on with the kernels OpenBLAS chose */
#else
    (void)argv;
#endif
}

int main(int argc, char **argv)
{
    prefer_avx2_blas(argv);
    options o;
    if (parse_options(argc, argv, &o) != 0)
        return 2;
    if (o.threads > 0 && openblas_set_num_threads != NULL)
        openblas_set_num_threads(o.threads);

    dataset train, test;
    char error[512];
    if (dataset_load(o.data, &train, &test, error, sizeof error) != 0) {
        fprintf(stderr, "kd-mnist: %s\n", error);
        return 1;
    }
    if (o.quick && make_quick(&o, &train) != 0) {
        fprintf(stderr, "kd-mnist: out of memory\n");
        return 1;
    }
    report rep;
    report_init(&rep, o.data, train.count, test.count);
    rep.seed = o.seed;
    rep.temperature = o.temperature;
    rep.alpha = o.alpha;
    rep.omit_class = o.omit_class;
    rep.transfer_fraction = o.transfer_fraction;
    rep.ensemble = o.ensemble;

    teachers t = {{NULL}, {NULL}, NULL, NULL};
    students st = {NULL, NULL, NULL, NULL};
    int status = check_transfer_set(&o, &train) == 0 && load_teachers(&o, &t) == 0
                     ? experiment(&o, &train, &test, &t, &st, &rep)
                     : 1;
    students_free(&st);
    teachers_free(&t, o.ensemble);
    dataset_free(&train);
    dataset_free(&test);
    return status;
}
