/* Private to bundle_read.c and bundle_write.c: the constants of
 * docs/bundle-format.md and the checks both the reader and the writer apply,
 * so that the writer never produces a file the reader refuses. */
#ifndef DALLE_BUNDLE_INTERNAL_H
#define DALLE_BUNDLE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "dalle/dalle.h"

#define BND_MAGIC "DALLEBND"
#define BND_VERSION_MAJOR 1
#define BND_VERSION_MINOR 0
#define BND_HEADER_SIZE 128u
#define BND_HEADER_CRC_AT 124u
#define BND_RESERVED_AT 88u
#define BND_ALIGN 64u

#define BND_MAX_META 65536u
#define BND_MAX_TENSORS 1048576u
#define BND_MAX_NAME 255u
#define BND_MAX_STRING (16u << 20)     /* bytes of one metadata string */
#define BND_MAX_ARRAY (1u << 20)       /* elements of one metadata array */
#define BND_MAX_TENSOR_BYTES (UINT64_C(1) << 40)
#define BND_ZSTD_MAX_RATIO UINT64_C(32768)
#define BND_ZSTD_SLACK (UINT64_C(1) << 20)

/* Known dtypes: bytes per element, 0 for unknown codes. */
static inline unsigned bnd_dtype_size(unsigned dtype)
{
    switch (dtype) {
    case DALLE_DTYPE_F32: return 4;
    case DALLE_DTYPE_F16: return 2;
    case DALLE_DTYPE_BF16: return 2;
    case DALLE_DTYPE_I8: return 1;
    case DALLE_DTYPE_U8: return 1;
    case DALLE_DTYPE_I32: return 4;
    case DALLE_DTYPE_I64: return 8;
    default: return 0;
    }
}

static inline const char *bnd_dtype_name(unsigned dtype)
{
    static const char *const names[] = {"f32", "f16", "bf16", "i8", "u8", "i32", "i64"};
    return dtype < sizeof names / sizeof names[0] ? names[dtype] : "unknown";
}

static inline const char *bnd_meta_type_name(unsigned type)
{
    static const char *const names[] = {"?", "i64", "f64", "bool", "string",
                                        "i64 array", "f64 array", "string array"};
    return type < sizeof names / sizeof names[0] ? names[type] : "unknown";
}

static inline int bnd_known_kind(const char *s, size_t n)
{
    static const char *const kinds[] = {"dalle", "dvae", "openai_dvae", "vqgan",
                                        "clip", "openai_clip", "tokenizer"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (strlen(kinds[i]) == n && memcmp(kinds[i], s, n) == 0)
            return 1;
    return 0;
}

/* Metadata keys: 1..255 bytes of [A-Za-z0-9_.-]. */
static inline int bnd_valid_key(const char *s, size_t n)
{
    if (n < 1 || n > BND_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return 0;
    }
    return 1;
}

/* Tensor names: 1..255 bytes of [A-Za-z0-9_.:/-]. */
static inline int bnd_valid_name(const char *s, size_t n)
{
    if (n < 1 || n > BND_MAX_NAME)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-' || c == ':' || c == '/'))
            return 0;
    }
    return 1;
}

/* Well-formed UTF-8 (no overlongs, no surrogates, ≤ U+10FFFF) without NUL. */
static inline int bnd_valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c == 0)
            return 0;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            len = 2;
        else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else
            return 0;
        if (n - i < len)
            return 0;
        if (s[i + 1] < lo || s[i + 1] > hi)
            return 0;
        for (size_t k = 2; k < len; k++)
            if (s[i + k] < 0x80 || s[i + k] > 0xBF)
                return 0;
        i += len;
    }
    return 1;
}

/* numel and decoded bytes of a shape, checked against overflow and the 2^40
 * byte limit. dims[i] must already be ≥ 1. Returns 0 when too large. */
static inline int bnd_shape_size(unsigned ndim, const uint64_t *dims, unsigned elem,
                                 uint64_t *numel, uint64_t *nbytes)
{
    uint64_t n = 1;
    uint64_t limit = BND_MAX_TENSOR_BYTES / elem;
    for (unsigned i = 0; i < ndim; i++) {
        if (dims[i] > limit || n > limit / dims[i])
            return 0;
        n *= dims[i];
    }
    *numel = n;
    *nbytes = n * elem;
    return 1;
}

/* Little-endian stores and loads. */
static inline void bnd_put_u16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static inline void bnd_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline void bnd_put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint16_t bnd_get_u16(const unsigned char *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}
static inline uint32_t bnd_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t bnd_get_u64(const unsigned char *p)
{
    return (uint64_t)bnd_get_u32(p) | (uint64_t)bnd_get_u32(p + 4) << 32;
}

#endif
