/* The 16-bit weight formats widened to float32, exactly: IEEE binary16
 * (f16: subnormals, infinities and NaN payloads kept) and bfloat16 (the top
 * half of a float32). One definition for the bundle reader, the CPU's
 * reduced-precision kernels (lib/ops_lowp.c) and the CUDA kernels, so every
 * path multiplies with the same values. */
#ifndef DALLE_HALF_H
#define DALLE_HALF_H

#include <stdint.h>
#include <string.h>

#include "hostdev.h"

static inline DALLE_HOST_DEVICE float dalle_bf16_value(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline DALLE_HOST_DEVICE float dalle_f16_value(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
    uint32_t u;
    if (exp == 0x1F) {
        u = sign | 0x7F800000u | man << 13; /* inf, NaN */
    } else if (exp != 0) {
        u = sign | (exp + 112u) << 23 | man << 13;
    } else if (man == 0) {
        u = sign;
    } else { /* subnormal: man * 2^-24, exact in float */
        const float f = (float)man * 5.9604644775390625e-8f;
        memcpy(&u, &f, sizeof u);
        u |= sign;
    }
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#endif
