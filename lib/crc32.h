/* CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320; the one zlib and PNG use).
 * SPDX-License-Identifier: MIT */
#ifndef KD_LIB_CRC32_H
#define KD_LIB_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Continues a CRC over n more bytes: start from crc = 0; crc("123456789") = 0xCBF43926. */
uint32_t kd_crc32(uint32_t crc, const void *data, size_t n);

#endif /* KD_LIB_CRC32_H */
