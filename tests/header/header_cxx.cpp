// The public header compiles as C++ (extern "C" linkage), and every function it declares
// resolves from libkd.so.1 under its C name.
#include <kd.h>

#include <cmath>
#include <cstdio>
#include <cstring>

typedef void (*kd_any_function)();

#define KD_FUNCTION(name) reinterpret_cast<kd_any_function>(&name),
static const kd_any_function declared[] = {
#include "declared_functions.inc"
};
#undef KD_FUNCTION

int main()
{
    const std::size_t count = sizeof declared / sizeof declared[0];
    if (count != KD_DECLARED_FUNCTION_COUNT) {
        std::fprintf(stderr, "expected %d functions, have %zu\n", KD_DECLARED_FUNCTION_COUNT, count);
        return 1;
    }
    for (std::size_t i = 0; i < count; i++) {
        if (declared[i] == nullptr) {
            std::fprintf(stderr, "function %zu has no address\n", i);
            return 1;
        }
    }
    if (std::strcmp(kd_version_string(), KD_VERSION_STRING) != 0) {
        std::fprintf(stderr, "header %s, library %s\n", KD_VERSION_STRING, kd_version_string());
        return 1;
    }
    const float logits[2] = {1.0f, 10.0f};
    float q[2];
    if (kd_soft_targets(logits, 1, 2, 10.0f, q) != KD_OK || std::fabs(q[1] - 0.71094950f) > 1e-6f) {
        std::fprintf(stderr, "kd_soft_targets from C++ gave %g\n", static_cast<double>(q[1]));
        return 1;
    }
    std::printf("%zu public functions resolved (C++)\n", count);
    return 0;
}
