/* Status codes are pinned and named; the run-time version matches the header and CMake. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include <kd.h>

static void status_values_are_pinned(void **state)
{
    (void)state;
    /* These numbers are ABI: they may never change. */
    assert_int_equal(KD_OK, 0);
    assert_int_equal(KD_ERROR_NULL_POINTER, 1);
    assert_int_equal(KD_ERROR_ZERO_SIZE, 2);
    assert_int_equal(KD_ERROR_SIZE_OVERFLOW, 3);
    assert_int_equal(KD_ERROR_INVALID_TEMPERATURE, 4);
    assert_int_equal(KD_ERROR_NONFINITE_INPUT, 5);
    assert_int_equal(KD_ERROR_ALL_MASKED, 6);
    assert_int_equal(KD_ERROR_INVALID_ARGUMENT, 7);
    assert_int_equal(KD_ERROR_OUT_OF_MEMORY, 8);
    assert_int_equal(KD_ERROR_INVALID_LABEL, 9);
    assert_int_equal(KD_ERROR_INVALID_PROBABILITIES, 10);
    assert_int_equal(KD_ERROR_SHAPE_MISMATCH, 11);
    assert_int_equal(KD_ERROR_IO, 12);
    assert_int_equal(KD_ERROR_FILE_TRUNCATED, 13);
    assert_int_equal(KD_ERROR_FILE_CORRUPT, 14);
    assert_int_equal(KD_ERROR_FILE_VERSION, 15);
    assert_int_equal(KD_ERROR_CALLBACK_FAILED, 16);
    assert_int_equal(KD_ERROR_UNSUPPORTED, 17);
}

static void every_status_has_its_own_name(void **state)
{
    (void)state;
    const char *unknown = kd_status_string((kd_status)-1);
    assert_string_equal(unknown, "unknown kd_status");
    assert_string_equal(kd_status_string((kd_status)(KD_ERROR_UNSUPPORTED + 1)), unknown);
    for (int a = KD_OK; a <= KD_ERROR_UNSUPPORTED; a++) {
        const char *name = kd_status_string((kd_status)a);
        assert_non_null(name);
        assert_true(strlen(name) > 0);
        assert_string_not_equal(name, unknown);
        for (int b = KD_OK; b < a; b++)
            assert_string_not_equal(name, kd_status_string((kd_status)b));
    }
}

static void version_agrees_everywhere(void **state)
{
    (void)state;
    char formatted[32];
    snprintf(formatted, sizeof formatted, "%d.%d.%d", KD_VERSION_MAJOR, KD_VERSION_MINOR, KD_VERSION_PATCH);
    assert_string_equal(formatted, KD_VERSION_STRING);
    assert_string_equal(kd_version_string(), KD_VERSION_STRING);
    assert_string_equal(kd_version_string(), KD_EXPECTED_VERSION); /* CMake's project version */
    assert_int_equal(kd_version_number(), KD_VERSION_NUMBER);
    assert_int_equal(KD_VERSION_NUMBER, KD_VERSION_MAJOR * 10000 + KD_VERSION_MINOR * 100 + KD_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(status_values_are_pinned),
        cmocka_unit_test(every_status_has_its_own_name),
        cmocka_unit_test(version_agrees_everywhere),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
