/* A C host program using the installed libkd: prints the library version, then checks soft
 * targets on logits that overflow a naive expf and a bad-input status. */
#include <kd.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
    const float logits[2] = {1000.0f, 1010.0f};
    float q[2] = {-1.0f, -1.0f};
    kd_status status = kd_soft_targets(logits, 1, 2, 0.5f, q);
    /* exp(-20) / (1 + exp(-20)) and 1 / (1 + exp(-20)) */
    double low = exp(-20.0) / (1.0 + exp(-20.0));
    if (status != KD_OK || fabs(q[0] - low) > 1e-6 * low || fabs(q[1] - (1.0 - low)) > 1e-7) {
        fprintf(stderr, "kd_soft_targets: %s, %g %g\n", kd_status_string(status), q[0], q[1]);
        return 1;
    }
    float before[2];
    memcpy(before, q, sizeof q);
    if (kd_soft_targets(logits, 1, 2, 0.0f, q) != KD_ERROR_INVALID_TEMPERATURE
        || memcmp(before, q, sizeof q) != 0) {
        fprintf(stderr, "T = 0 was not rejected cleanly\n");
        return 1;
    }
    printf("%s\n", kd_version_string());
    return 0;
}
