/* CRC-32 of zlib / PNG / IEEE 802.3 (reflected polynomial 0xEDB88320, initial
 * value and final xor 0xFFFFFFFF), as the bundle format uses it.
 *
 * Chained like zlib's crc32(): start from 0 and feed the previous result,
 *     uint32_t c = crc32_ieee(0, a, na);
 *     c = crc32_ieee(c, b, nb);      == crc32_ieee(0, a||b, na + nb)
 * Thread-safe (the tables are built once, under pthread_once).
 */
#ifndef DALLE_CRC32_H
#define DALLE_CRC32_H

#include <stddef.h>
#include <stdint.h>

uint32_t crc32_ieee(uint32_t crc, const void *data, size_t size);

#endif
