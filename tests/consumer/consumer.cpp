// A C++ host program using the installed libkd through its C API.
#include <kd.h>

#include <cmath>
#include <cstdio>
#include <vector>

int main()
{
    std::vector<float> logits = {1000.0f, 1010.0f};
    std::vector<float> q(logits.size());
    const kd_status status = kd_soft_targets(logits.data(), 1, logits.size(), 0.5f, q.data());
    const double low = std::exp(-20.0) / (1.0 + std::exp(-20.0));
    if (status != KD_OK || std::fabs(q[0] - low) > 1e-6 * low) {
        std::fprintf(stderr, "kd_soft_targets: %s\n", kd_status_string(status));
        return 1;
    }
    std::printf("%s\n", kd_version_string());
    return 0;
}
