/* A program with one deliberate memory or UB error per mode, to show that a checker run really
 * stops (ASan, UBSan with halt_on_error) or fails (valgrind --error-exitcode) on one: after the
 * error it prints "survived" and exits 0, which a working checker never lets it reach.
 *   sanitizer_canary heap | undefined | leak */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    volatile int sink = 0;
    if (strcmp(argv[1], "heap") == 0) {
        int *block = malloc(4 * sizeof *block);
        if (block == NULL)
            return 2;
        memset(block, 0, 4 * sizeof *block);
        volatile size_t index = 4;
        sink = block[index]; /* one past the end */
        free(block);
    } else if (strcmp(argv[1], "undefined") == 0) {
        volatile int big = INT_MAX;
        sink = big + 1; /* signed overflow */
    } else if (strcmp(argv[1], "leak") == 0) {
        int *volatile block = malloc(64);
        sink = block != NULL;
        block = NULL; /* definitely lost */
    } else {
        return 2;
    }
    printf("survived (%d)\n", sink);
    return 0;
}
