/* Descriptions of kd_status values. SPDX-License-Identifier: MIT */
#include "kd/status.h"

const char *kd_status_string(kd_status status)
{
    switch (status) {
    case KD_OK:
        return "success";
    case KD_ERROR_NULL_POINTER:
        return "a required pointer argument is NULL";
    case KD_ERROR_ZERO_SIZE:
        return "a size argument is zero";
    case KD_ERROR_SIZE_OVERFLOW:
        return "sizes too large to address";
    case KD_ERROR_INVALID_TEMPERATURE:
        return "temperature must be finite and > 0";
    case KD_ERROR_NONFINITE_INPUT:
        return "input contains NaN or infinity";
    case KD_ERROR_ALL_MASKED:
        return "every class of a row is masked with -inf";
    case KD_ERROR_INVALID_ARGUMENT:
        return "argument outside its documented range";
    case KD_ERROR_OUT_OF_MEMORY:
        return "out of memory";
    case KD_ERROR_INVALID_LABEL:
        return "class label out of range";
    case KD_ERROR_INVALID_PROBABILITIES:
        return "probabilities negative or not summing to 1";
    case KD_ERROR_SHAPE_MISMATCH:
        return "shapes do not fit together";
    case KD_ERROR_IO:
        return "input/output error";
    case KD_ERROR_FILE_TRUNCATED:
        return "file is truncated";
    case KD_ERROR_FILE_CORRUPT:
        return "file is corrupt";
    case KD_ERROR_FILE_VERSION:
        return "file format version not supported";
    case KD_ERROR_CALLBACK_FAILED:
        return "a host callback reported failure";
    case KD_ERROR_UNSUPPORTED:
        return "operation not supported for this object";
    }
    return "unknown kd_status";
}
