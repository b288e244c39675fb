/* The public header compiles as strict C99 (-std=c99 -pedantic-errors), and every function it
 * declares resolves from libkd.so.1. */
#include <kd.h>

#include <stdio.h>

typedef void (*kd_any_function)(void);

#define KD_FUNCTION(name) (kd_any_function)name,
static const kd_any_function declared[] = {
#include "declared_functions.inc"
};
#undef KD_FUNCTION

int main(void)
{
    size_t count = sizeof declared / sizeof declared[0];
    size_t i;
    if (count != KD_DECLARED_FUNCTION_COUNT) {
        fprintf(stderr, "expected %d functions, have %zu\n", KD_DECLARED_FUNCTION_COUNT, count);
        return 1;
    }
    for (i = 0; i < count; i++) {
        if (declared[i] == NULL) {
            fprintf(stderr, "function %zu has no address\n", i);
            return 1;
        }
    }
    if (kd_version_number() != KD_VERSION_NUMBER) {
        fprintf(stderr, "header %d, library %u\n", KD_VERSION_NUMBER, kd_version_number());
        return 1;
    }
    printf("%zu public functions resolved (C99)\n", count);
    return 0;
}
