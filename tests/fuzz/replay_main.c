/* A main() for the fuzz targets outside libFuzzer: runs LLVMFuzzerTestOneInput on every file
 * named on the command line (directories: every file in them), so that ordinary builds (GCC,
 * sanitizers, valgrind, coverage) replay the committed corpora as tests.
 *   fuzz_replay_<target> <file or directory>... */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_support.h"

static size_t replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    FUZZ_CHECK(f != NULL, "cannot open %s", path);
    size_t capacity = 1 << 16, size = 0;
    uint8_t *data = malloc(capacity);
    FUZZ_CHECK(data != NULL, "out of memory");
    size_t got;
    while ((got = fread(data + size, 1, capacity - size, f)) > 0) {
        size += got;
        if (size == capacity) {
            capacity *= 2;
            data = realloc(data, capacity);
            FUZZ_CHECK(data != NULL, "out of memory");
        }
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 1;
}

static size_t replay(const char *path)
{
    struct stat info;
    FUZZ_CHECK(stat(path, &info) == 0, "cannot stat %s", path);
    if (!S_ISDIR(info.st_mode))
        return replay_file(path);
    DIR *d = opendir(path);
    FUZZ_CHECK(d != NULL, "cannot open %s", path);
    size_t count = 0;
    struct dirent *e;
    char name[4096];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(name, sizeof name, "%s/%s", path, e->d_name);
        count += replay(name);
    }
    closedir(d);
    return count;
}

int main(int argc, char **argv)
{
    LLVMFuzzerInitialize(&argc, &argv);
    size_t count = 0;
    for (int i = 1; i < argc; i++)
        count += replay(argv[i]);
    printf("%zu inputs replayed, every invariant held\n", count);
    return count > 0 ? 0 : 1;
}
