/* Run-time version of the library. SPDX-License-Identifier: MIT */
#include "kd/version.h"

unsigned kd_version_number(void) { return KD_VERSION_NUMBER; }

const char *kd_version_string(void) { return KD_VERSION_STRING; }
