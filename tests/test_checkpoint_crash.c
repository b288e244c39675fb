/* Crash safety of kd_checkpoint_save: a process killed (SIGKILL) at random points while it
 * saves never leaves anything but a complete checkpoint under the real name, and what it
 * leaves behind does not stop the next save.
 *
 * Each round: this process saves model A under the name (the "previous checkpoint"); a forked
 * child then saves model B (with its optimizer, about 2.6 MB) under the same name over and over
 * and is killed a random 0-15 ms after it starts its first, second or third save. The
 * file under the name must then be, byte for byte, A's or B's file, and load. Rounds in which
 * the kill landed inside a save show up as the temporary file it left behind
 * (.<name prefix>.tmp-*): the test requires some of those, so that it is known to have killed
 * saves midway, not only between them. The write-failure case (a save that fails midway: the
 * file size limit) is save_is_atomic in test_checkpoint.c. */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <kd.h>

#include "support.h"

enum { ROUNDS = 60, MAX_DELAY_US = 15000 };

static char directory[64];

static int setup_directory(void **state)
{
    (void)state;
    strcpy(directory, "/tmp/kd_test_crash_XXXXXX");
    return mkdtemp(directory) == NULL ? -1 : 0;
}

/* Removes every file of the scratch directory (temporary files included), then the directory. */
static int remove_directory(void **state)
{
    (void)state;
    DIR *d = opendir(directory);
    if (d != NULL) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL)
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
                snprintf(path, sizeof path, "%s/%s", directory, e->d_name);
                unlink(path);
            }
        closedir(d);
    }
    rmdir(directory);
    return 0;
}

/* Temporary files of saves in the scratch directory. */
static size_t temporary_files(void)
{
    size_t count = kd_test_count_entries(directory, ".tmp-");
    assert_true(count != (size_t)-1);
    return count;
}

typedef struct bytes {
    unsigned char *data;
    size_t size;
} bytes;

static bytes read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct stat info;
    assert_int_equal(fstat(fileno(f), &info), 0);
    bytes b = {malloc((size_t)info.st_size + 1), (size_t)info.st_size};
    assert_non_null(b.data);
    assert_int_equal(fread(b.data, 1, b.size, f), b.size);
    fclose(f);
    return b;
}

static int same(bytes a, bytes b) { return a.size == b.size && memcmp(a.data, b.data, a.size) == 0; }

/* A model (and SGD optimizer) whose parameters depend on the seed. */
static void make_model(uint64_t seed, kd_model **model, kd_optimizer **opt)
{
    const size_t widths[] = {64, 512, 512, 64};
    assert_int_equal(kd_model_create_dense(model, widths, 4, seed, NULL), KD_OK);
    assert_int_equal(kd_optimizer_create(opt, KD_OPTIMIZER_SGD, *model, NULL), KD_OK);
}

/* The child: announces each save on the pipe, then saves, forever; exits 3 if a save fails. */
static void save_forever(const kd_model *model, const kd_optimizer *opt, const char *path, int fd)
{
    for (;;) {
        if (write(fd, "s", 1) != 1 || kd_checkpoint_save(model, opt, path) != KD_OK)
            _exit(3);
    }
}

static void killed_saves_leave_a_complete_checkpoint(void **state)
{
    (void)state;
    kd_model *a = NULL, *b = NULL;
    kd_optimizer *a_opt = NULL, *b_opt = NULL;
    make_model(1, &a, &a_opt);
    make_model(2, &b, &b_opt);
    char path[256], b_path[256];
    snprintf(path, sizeof path, "%s/model.kdc", directory);
    snprintf(b_path, sizeof b_path, "%s/b-reference.kdc", directory);
    assert_int_equal(kd_checkpoint_save(b, b_opt, b_path), KD_OK);
    const bytes b_file = read_all(b_path);
    unlink(b_path);

    kd_test_rng rng = {2024};
    size_t left_a = 0, left_b = 0, midway = 0;
    bytes a_file = {NULL, 0};
    for (int round = 0; round < ROUNDS; round++) {
        /* The previous checkpoint: saving works whatever earlier kills left behind. */
        const size_t leftovers = temporary_files();
        assert_int_equal(kd_checkpoint_save(a, a_opt, path), KD_OK);
        assert_int_equal(temporary_files(), leftovers);
        if (a_file.data == NULL)
            a_file = read_all(path);

        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            close(fds[0]);
            save_forever(b, b_opt, path, fds[1]);
        }
        close(fds[1]);
        /* Wait until the child starts its first, second or third save: kills then land in
         * the save that replaces A, or in one that replaces B by B. */
        const uint64_t saves = 1 + kd_test_rng_next(&rng) % 3;
        for (uint64_t k = 0; k < saves; k++) {
            char started;
            assert_int_equal(read(fds[0], &started, 1), 1);
        }
        const long delay_us = (long)(kd_test_rng_next(&rng) % (MAX_DELAY_US + 1));
        struct timespec delay = {0, delay_us * 1000};
        nanosleep(&delay, NULL);
        assert_int_equal(kill(child, SIGKILL), 0);
        int status = 0;
        assert_int_equal(waitpid(child, &status, 0), child);
        close(fds[0]);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("round %d: the saving child ended by itself (status %d)", round, status);

        /* Under the name: A's file or B's, complete, and it loads. */
        const bytes now = read_all(path);
        if (same(now, a_file))
            left_a++;
        else if (same(now, b_file))
            left_b++;
        else
            fail_msg("round %d (killed after %ld us): %zu bytes under the name are neither "
                     "checkpoint", round, delay_us, now.size);
        free(now.data);
        kd_model *loaded = NULL;
        kd_optimizer *loaded_opt = NULL;
        assert_int_equal(kd_checkpoint_load(&loaded, &loaded_opt, path, NULL), KD_OK);
        kd_optimizer_destroy(loaded_opt);
        kd_model_destroy(loaded);
        midway += temporary_files() > leftovers;
    }
    print_message("%d kills: %zu left the previous checkpoint, %zu the new one; %zu landed "
                  "inside a save (a temporary file left behind)\n",
                  ROUNDS, left_a, left_b, midway);
    assert_true(midway > 0);

    free(a_file.data);
    free(b_file.data);
    kd_optimizer_destroy(b_opt);
    kd_optimizer_destroy(a_opt);
    kd_model_destroy(b);
    kd_model_destroy(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(killed_saves_leave_a_complete_checkpoint),
    };
    return cmocka_run_group_tests(tests, setup_directory, remove_directory);
}
