/* kd-soft-targets: what a temperature does to a teacher's predictions.
 *
 * Turns a few rows of teacher logits into soft targets with kd_soft_targets() at several
 * temperatures and prints each distribution with its entropy in bits, as in the paper's
 * example (logits 1 and 10) and on a row whose logits overflow a naive expf. */
#include <kd.h>

#include <math.h>
#include <stdio.h>

enum { CLASSES = 4 };

static double entropy_bits(const float *q, size_t n)
{
    double h = 0.0;
    for (size_t i = 0; i < n; i++)
        if (q[i] > 0.0f)
            h -= q[i] * log2(q[i]);
    return h;
}

static int show(const char *title, const float *logits, size_t classes)
{
    static const float temperatures[] = {0.5f, 1.0f, 4.0f, 20.0f};
    printf("%s: logits", title);
    for (size_t i = 0; i < classes; i++)
        printf(" %g", logits[i]);
    printf("\n");
    for (size_t k = 0; k < sizeof temperatures / sizeof temperatures[0]; k++) {
        float q[CLASSES];
        kd_status status = kd_soft_targets(logits, 1, classes, temperatures[k], q);
        if (status != KD_OK) {
            fprintf(stderr, "kd_soft_targets: %s\n", kd_status_string(status));
            return 1;
        }
        printf("  T = %-4g q =", temperatures[k]);
        for (size_t i = 0; i < classes; i++)
            printf(" %.6g", q[i]);
        printf("   entropy %.4f bits\n", entropy_bits(q, classes));
    }
    return 0;
}

int main(void)
{
    printf("libkd %s: soft targets q = softmax(logits / T)\n\n", kd_version_string());
    const float paper[2] = {1.0f, 10.0f};
    const float digit_two[CLASSES] = {9.0f, 3.0f, 1.0f, -4.0f}; /* a '2' that looks a bit like a '3' */
    const float huge[2] = {1000.0f, 1010.0f};
    if (show("two classes (the paper's example)", paper, 2) != 0
        || show("a teacher's row for an image of a 2 (classes 2, 3, 7, 1)", digit_two, CLASSES) != 0
        || show("logits that overflow a naive expf", huge, 2) != 0)
        return 1;

    float q[2];
    kd_status status = kd_soft_targets(paper, 1, 2, 0.0f, q);
    printf("\nT = 0 is rejected: %s (status %d)\n", kd_status_string(status), (int)status);
    return status == KD_ERROR_INVALID_TEMPERATURE ? 0 : 1;
}
