/* The public tokenizer calls (include/dalle/dalle.h, "Tokenizer"): loading
 * from a merges file or a bundle, encode, decode, and the two tokenize()
 * layouts (DALLE-pytorch's and OpenAI CLIP's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "error.h"
#include "tokenizer.h"

/* Merges files are ~1.3 MB; this only refuses absurd inputs early. */
#define MAX_MERGES_BYTES ((size_t)64 << 20)

struct dalle_tokenizer {
    bpe *bpe;
};

/* DALLE-pytorch's decode(remove_start_end=True) drops these ids: 49406 is
 * <|startoftext|>, 40407 is upstream's typo for 49407 (so <|endoftext|>
 * survives and the ordinary token 40407 'berwick</w>' vanishes), 0 is
 * padding and also the byte token '!'. Reproduced as is. */
static int dropped_by_decode(int32_t id) { return id == 49406 || id == 40407 || id == 0; }

/* ---- loading ---------------------------------------------------------------- */

static dalle_status from_merges(const uint8_t *data, size_t size, const char *origin,
                                dalle_tokenizer **out)
{
    dalle_tokenizer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
    dalle_status s = bpe_load(data, size, origin, &t->bpe);
    if (s) {
        free(t);
        return s;
    }
    *out = t;
    return DALLE_OK;
}

dalle_status tokenizer_from_bundle(dalle_bundle *b, dalle_tokenizer **out)
{
    const char *path = bundle_path(b);
    int idx = dalle_bundle_find_tensor(b, "tokenizer.bpe_merges");
    if (idx < 0)
        return dalle_fail(DALLE_ERR_NOT_FOUND,
                          "%s: no tensor 'tokenizer.bpe_merges' (convert with --bpe MERGES.txt)",
                          path);
    const char *kind;
    dalle_status s = dalle_bundle_meta_str(b, "tokenizer.kind", &kind);
    if (s == DALLE_OK && strcmp(kind, "clip_bpe"))
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: tokenizer.kind '%s': only 'clip_bpe' is known",
                          path, kind);
    if (s != DALLE_OK && s != DALLE_ERR_NOT_FOUND)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata 'tokenizer.kind' is not a string", path);
    dalle_tensor_info info;
    if ((s = dalle_bundle_tensor_info(b, idx, &info)))
        return s;
    if (info.dtype != DALLE_DTYPE_U8 || info.ndim != 1)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: tensor 'tokenizer.bpe_merges': expected a 1-D u8 tensor", path);
    if (info.nbytes > MAX_MERGES_BYTES)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor 'tokenizer.bpe_merges': %llu bytes is "
                          "too big for a merges file", path, (unsigned long long)info.nbytes);
    uint8_t *data = malloc(info.nbytes ? (size_t)info.nbytes : 1);
    if (!data)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (!(s = dalle_bundle_read_tensor(b, idx, data, (size_t)info.nbytes)))
        s = from_merges(data, (size_t)info.nbytes, path, out);
    free(data);
    return s;
}

static dalle_status read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "%s: cannot open", path);
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    dalle_status s = DALLE_OK;
    while (buf) {
        if (n == cap) {
            if (cap >= MAX_MERGES_BYTES) {
                s = dalle_fail(DALLE_ERR_FORMAT, "%s: more than %zu bytes: not a merges file",
                               path, MAX_MERGES_BYTES);
                break;
            }
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb)
                break;
            buf = nb;
            cap *= 2;
        }
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) {
            if (ferror(f))
                s = dalle_fail(DALLE_ERR_IO, "%s: read error", path);
            break;
        }
    }
    fclose(f);
    if (!buf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    if (s) {
        free(buf);
        return s;
    }
    *data = buf;
    *size = n;
    return DALLE_OK;
}

dalle_status dalle_tokenizer_create(const char *path, dalle_tokenizer **out)
{
    if (!path || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_tokenizer_create: %s is NULL",
                          path ? "out" : "path");
    /* a bundle starts with its magic; anything else is read as merges */
    char magic[8] = {0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "%s: cannot open", path);
    size_t got = fread(magic, 1, sizeof magic, f);
    fclose(f);
    dalle_status s;
    if (got == sizeof magic && !memcmp(magic, "DALLEBND", 8)) {
        dalle_bundle *b;
        if ((s = dalle_bundle_open(path, &b)))
            return s;
        s = tokenizer_from_bundle(b, out);
        dalle_bundle_close(b);
        return s;
    }
    uint8_t *data = NULL;
    size_t size = 0;
    if ((s = read_file(path, &data, &size)))
        return s;
    s = from_merges(data, size, path, out);
    free(data);
    return s;
}

void dalle_tokenizer_free(dalle_tokenizer *tok)
{
    if (!tok)
        return;
    bpe_free(tok->bpe);
    free(tok);
}

int dalle_tokenizer_vocab_size(const dalle_tokenizer *tok) { return tok ? bpe_vocab_size(tok->bpe) : 0; }

/* ---- encode ----------------------------------------------------------------- */

/* All ids of a caption, malloc'ed into *ids (NULL when there are none). */
static dalle_status encode_all(dalle_tokenizer *tok, const char *text, const char *fn,
                               int32_t **ids, size_t *n)
{
    if (!tok)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tok is NULL", fn);
    if (!text)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: text is NULL", fn);
    size_t len = strnlen(text, TOKENIZER_MAX_TEXT_BYTES + 1);
    if (len > TOKENIZER_MAX_TEXT_BYTES)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: text is longer than %u bytes", fn,
                          TOKENIZER_MAX_TEXT_BYTES);
    cpbuf t = {0};
    int oom = 0;
    size_t ok = utf8_decode((const uint8_t *)text, len, &t, &oom);
    if (!oom && ok != len) {
        cpbuf_free(&t);
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: text is not valid UTF-8 (byte %zu, 0x%02X)",
                          fn, ok, (unsigned)(unsigned char)text[ok]);
    }
    size_t cap = 0;
    *ids = NULL;
    *n = 0;
    if (oom || tokenizer_clean(&t) || tokenizer_split_encode(tok->bpe, &t, ids, n, &cap)) {
        cpbuf_free(&t);
        free(*ids);
        *ids = NULL;
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    cpbuf_free(&t);
    return DALLE_OK;
}

dalle_status dalle_tokenizer_encode(dalle_tokenizer *tok, const char *text, int32_t *ids, int cap,
                                    int *n)
{
    const char *fn = "dalle_tokenizer_encode";
    if (!n)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: n is NULL", fn);
    if (cap < 0 || (cap > 0 && !ids))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: cap = %d with ids %s", fn, cap,
                          ids ? "given" : "NULL");
    int32_t *all;
    size_t count;
    dalle_status s = encode_all(tok, text, fn, &all, &count);
    if (s)
        return s;
    if (count > (size_t)cap && !(ids == NULL && cap == 0)) {
        free(all);
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: ids has room for %d ids, the text has %zu",
                          fn, cap, count);
    }
    if (ids && count)
        memcpy(ids, all, count * sizeof *all);
    *n = (int)count;
    free(all);
    return DALLE_OK;
}

static dalle_status tokenize_layout(dalle_tokenizer *tok, const char *text, int32_t *out,
                                    int context_length, int truncate, int clip, const char *fn)
{
    if (!out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    if (context_length < 1 || context_length > (1 << 16))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: context_length = %d: expected 1..65536",
                          fn, context_length);
    int32_t *all;
    size_t count;
    dalle_status s = encode_all(tok, text, fn, &all, &count);
    if (s)
        return s;
    size_t total = count + (clip ? 2 : 0);
    if (total > (size_t)context_length && !truncate) {
        free(all);
        return dalle_fail(DALLE_ERR_TOO_LONG,
                          "%s: the text is %zu tokens%s, more than context_length %d "
                          "(pass truncate to cut it)",
                          fn, total, clip ? " with start and end" : "", context_length);
    }
    size_t k = 0;
    if (clip)
        out[k++] = bpe_sot(tok->bpe);
    for (size_t i = 0; i < count && k < (size_t)context_length; i++)
        out[k++] = all[i];
    if (clip) {
        /* OpenAI: [sot] + ids + [eot]; when cut, the last kept id becomes eot */
        if (k < (size_t)context_length)
            out[k++] = bpe_eot(tok->bpe);
        else
            out[k - 1] = bpe_eot(tok->bpe);
    }
    for (; k < (size_t)context_length; k++)
        out[k] = 0;
    free(all);
    return DALLE_OK;
}

dalle_status dalle_tokenizer_tokenize(dalle_tokenizer *tok, const char *text, int32_t *out,
                                      int context_length, int truncate)
{
    return tokenize_layout(tok, text, out, context_length, truncate, 0,
                           "dalle_tokenizer_tokenize");
}

dalle_status dalle_tokenizer_tokenize_clip(dalle_tokenizer *tok, const char *text, int32_t *out,
                                           int context_length, int truncate)
{
    return tokenize_layout(tok, text, out, context_length, truncate, 1,
                           "dalle_tokenizer_tokenize_clip");
}

/* ---- decode ----------------------------------------------------------------- */

/* bytes.decode('utf-8', errors='replace') as CPython does it: each maximal
 * prefix of a valid sequence that cannot be completed becomes one U+FFFD
 * (a lone bad byte too). Writes at most 3 bytes per input byte. */
static size_t decode_replace(const uint8_t *s, size_t n, uint8_t *out)
{
    size_t i = 0, w = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t need;
        uint8_t lo = 0x80, hi = 0xBF; /* range of the second byte */
        if (c < 0x80) {
            out[w++] = c;
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0;
            if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90;
            if (c == 0xF4)
                hi = 0x8F;
        } else {
            need = 0; /* never valid */
        }
        size_t k = 1;
        while (need && k <= need && i + k < n) {
            uint8_t d = s[i + k];
            if (k == 1 ? (d < lo || d > hi) : (d & 0xC0) != 0x80)
                break;
            k++;
        }
        if (need && k == need + 1) {
            memcpy(out + w, s + i, k);
            w += k;
        } else {
            memcpy(out + w, "\xEF\xBF\xBD", 3);
            w += 3;
        }
        i += k;
    }
    return w;
}

dalle_status dalle_tokenizer_decode(const dalle_tokenizer *tok, const int32_t *ids, int n,
                                    char *buf, size_t cap, size_t *len)
{
    const char *fn = "dalle_tokenizer_decode";
    if (!tok || !len || (n > 0 && !ids) || (cap > 0 && !buf))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !tok ? "tok" : !len ? "len" : (n > 0 && !ids) ? "ids" : "buf");
    if (n < 0 || n > (1 << 24))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: n = %d: expected 0..%d", fn, n, 1 << 24);
    int vocab = bpe_vocab_size(tok->bpe);
    for (int i = 0; i < n; i++)
        if (!dropped_by_decode(ids[i]) && (ids[i] < 0 || ids[i] >= vocab))
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: ids[%d] = %d is out of range [0, %d)",
                              fn, i, (int)ids[i], vocab);
    size_t maxb = bpe_max_token_bytes(tok->bpe);
    uint8_t *raw = malloc((size_t)n * maxb + 1);
    if (!raw)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    size_t rn = 0;
    for (int i = 0; i < n; i++)
        if (!dropped_by_decode(ids[i]))
            rn += (size_t)bpe_token_bytes(tok->bpe, ids[i], raw + rn);
    uint8_t *text = malloc(rn * 3 + 1);
    if (!text) {
        free(raw);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    size_t tn = decode_replace(raw, rn, text);
    free(raw);
    /* .replace('</w>', ' '): leftmost, without overlap; in place, as the
       text only shrinks */
    size_t w = 0;
    for (size_t i = 0; i < tn;) {
        if (i + 4 <= tn && !memcmp(text + i, "</w>", 4)) {
            text[w++] = ' ';
            i += 4;
        } else {
            text[w++] = text[i++];
        }
    }
    if (buf && w + 1 > cap) {
        free(text);
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "%s: buf has %zu bytes, the text needs %zu (with its NUL)", fn, cap,
                          w + 1);
    }
    if (buf) {
        memcpy(buf, text, w);
        buf[w] = '\0';
    }
    *len = w;
    free(text);
    return DALLE_OK;
}
