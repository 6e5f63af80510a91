/* Code point buffers, strict UTF-8, and Unicode normalisation (utf8proc) for
 * the tokenizer. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer.h"

int cpbuf_reserve(cpbuf *b, size_t n)
{
    if (n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < n) {
        if (cap > SIZE_MAX / 2 / sizeof *b->v)
            return -1;
        cap *= 2;
    }
    uint32_t *v = realloc(b->v, cap * sizeof *v);
    if (!v)
        return -1;
    b->v = v;
    b->cap = cap;
    return 0;
}

int cpbuf_push(cpbuf *b, uint32_t c)
{
    if (b->n == b->cap && cpbuf_reserve(b, b->n + 1))
        return -1;
    b->v[b->n++] = c;
    return 0;
}

int cpbuf_append(cpbuf *b, const uint32_t *c, size_t n)
{
    if (cpbuf_reserve(b, b->n + n))
        return -1;
    if (n)
        memcpy(b->v + b->n, c, n * sizeof *c);
    b->n += n;
    return 0;
}

int cpbuf_append_utf8(cpbuf *b, const char *s, size_t n)
{
    int oom = 0;
    utf8_decode((const uint8_t *)s, n, b, &oom);
    return oom ? -1 : 0;
}

void cpbuf_free(cpbuf *b)
{
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

size_t utf8_decode(const uint8_t *s, size_t n, cpbuf *out, int *oom)
{
    size_t i = 0;
    if (out && cpbuf_reserve(out, out->n + n)) { /* never more code points than bytes */
        *oom = 1;
        return 0;
    }
    while (i < n) {
        uint32_t c = s[i];
        size_t len;
        uint32_t min;
        if (c < 0x80) {
            len = 1;
            min = 0;
        } else if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
            min = 0x80;
            c &= 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            min = 0x800;
            c &= 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            min = 0x10000;
            c &= 0x07;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return i;
            c = (c << 6) | (s[i + k] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return i;
        if (out)
            out->v[out->n++] = c;
        i += len;
    }
    return i;
}

int utf8_put(uint32_t c, uint8_t out[4])
{
    if (c < 0x80) {
        out[0] = (uint8_t)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (uint8_t)(0xC0 | (c >> 6));
        out[1] = (uint8_t)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (c >> 12));
        out[1] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | (c >> 18));
    out[1] = (uint8_t)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (c & 0x3F));
    return 4;
}

/* Python's unicodedata.normalize('NFC' / 'NFKC') through utf8proc_map
 * (decomposition, canonical ordering, composition). */
int unicode_normalize(cpbuf *text, int compat)
{
    utf8proc_option_t opt = UTF8PROC_STABLE | UTF8PROC_COMPOSE | (compat ? UTF8PROC_COMPAT : 0);
    if (text->n > SIZE_MAX / 4)
        return -1;
    uint8_t *u = malloc(text->n * 4 + 1);
    if (!u)
        return -1;
    size_t len = 0;
    for (size_t i = 0; i < text->n; i++)
        len += (size_t)utf8_put(text->v[i], u + len);
    utf8proc_uint8_t *dst = NULL;
    utf8proc_ssize_t n = utf8proc_map(u, (utf8proc_ssize_t)len, &dst, opt);
    free(u);
    if (n < 0)
        return -1;
    text->n = 0;
    int oom = 0;
    size_t ok = utf8_decode(dst, (size_t)n, text, &oom);
    free(dst);
    return oom || ok != (size_t)n ? -1 : 0;
}
