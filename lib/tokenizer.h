/* The CLIP byte-level BPE text tokenizer, as DALLE-pytorch's SimpleTokenizer
 * (docs/tokenizer.md). Internal interface between its parts:
 *
 *   tokenizer.c      the public dalle_tokenizer_* calls, decode, loading
 *   tokenizer_text.c cleaning, lower-casing and the split pattern
 *   utf8.c           code point buffers, strict UTF-8, NFC/NFKC
 *   ftfy.c           the subset of ftfy.fix_text that changes real captions
 *   html_unescape.c  Python's html.unescape and ftfy's stricter variant
 *   bpe.c            the merges file, the BPE itself and its cache
 *
 * Text travels between them as arrays of code points (cpbuf): the Python
 * code works on str, and several steps (NFC, case, regex classes) are
 * defined on code points, not bytes.
 */
#ifndef DALLE_TOKENIZER_H
#define DALLE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "dalle/dalle.h"

/* Longest text accepted (bytes of UTF-8). Far beyond any caption; it bounds
 * the time and memory adversarial text can cost, and it makes ftfy's
 * segmentation (lines, cut every 10^6 code points) equal to cutting at
 * line breaks only. */
#define TOKENIZER_MAX_TEXT_BYTES (1u << 20)

/* ---- code point buffers ------------------------------------------------ */

typedef struct cpbuf {
    uint32_t *v;
    size_t n, cap;
} cpbuf;

/* 0, or -1 when out of memory (the buffer is then left as it was). */
int cpbuf_reserve(cpbuf *b, size_t n);
int cpbuf_push(cpbuf *b, uint32_t c);
int cpbuf_append(cpbuf *b, const uint32_t *c, size_t n);
/* Append the code points of valid UTF-8 (as produced by this library). */
int cpbuf_append_utf8(cpbuf *b, const char *s, size_t n);
void cpbuf_free(cpbuf *b);

/* Strict UTF-8 decoding (no overlongs, surrogates or values > 10FFFF).
 * Returns the offset of the first invalid byte, or n when all is valid. */
size_t utf8_decode(const uint8_t *s, size_t n, cpbuf *out, int *oom);
/* Encode one code point; returns its length (1..4). */
int utf8_put(uint32_t c, uint8_t out[4]);

/* ---- text cleaning ------------------------------------------------------ */

/* ftfy.fix_text with its default configuration, for the fixes listed in
 * docs/tokenizer.md. In place. 0, or -1 when out of memory. */
int ftfy_fix_text(cpbuf *text);

/* Python's html.unescape(). 0 or -1 (out of memory). */
int html_unescape(cpbuf *text);
/* ftfy.fixes.unescape_html: only references ending in ';', plus all-caps
 * names. 0 or -1. */
int ftfy_unescape_html(cpbuf *text);

/* NFC (or NFKC when compat) through utf8proc. 0 or -1. */
int unicode_normalize(cpbuf *text, int compat);

/* whitespace_clean(basic_clean(text)).lower(), in place. 0 or -1 (OOM). */
int tokenizer_clean(cpbuf *text);

/* ---- BPE ------------------------------------------------------------------ */

typedef struct bpe bpe;

/* Parse a merges file (bpe_simple_vocab_16e6.txt layout: a header line, then
 * one "left right" merge per line, of which the first 48894 are used).
 * `origin` names the source in messages. */
dalle_status bpe_load(const uint8_t *data, size_t size, const char *origin, bpe **out);
void bpe_free(bpe *b);

int bpe_vocab_size(const bpe *b);
int32_t bpe_sot(const bpe *b); /* <|startoftext|> */
int32_t bpe_eot(const bpe *b); /* <|endoftext|> */

/* The ids of one pre-token (UTF-8 bytes, 1..any length), appended to *ids
 * (a growable array of *n, capacity *cap). 0, or -1 when out of memory. */
int bpe_word(bpe *b, const uint8_t *word, size_t len, int32_t **ids, size_t *n, size_t *cap);

/* The bytes a token id stands for, as upstream's decoder + byte_decoder give
 * them: the word-final marker comes back as the four bytes "</w>". Returns
 * the length written to out (at most bpe_max_token_bytes), or -1 for an id
 * outside the vocabulary. */
int bpe_token_bytes(const bpe *b, int32_t id, uint8_t *out);
size_t bpe_max_token_bytes(const bpe *b);

/* The character upstream's bytes_to_unicode shows a byte as. */
uint32_t bpe_byte_char(uint8_t byte);

/* re.findall(pat, text): each pre-token's UTF-8 bytes to `each`, or, for a
 * literal <|startoftext|> / <|endoftext|>, special = 1 / 2 and no bytes.
 * Stops at the first non-zero return of `each`, which it returns; -1 when
 * out of memory. */
int tokenizer_split(const cpbuf *text,
                    int (*each)(void *user, const uint8_t *word, size_t len, int special),
                    void *user);

/* re.findall(pat, text) and BPE of each match, appended to *ids. 0 or -1. */
int tokenizer_split_encode(bpe *b, const cpbuf *text, int32_t **ids, size_t *n, size_t *cap);

/* ---- for the DALL·E context ------------------------------------------------ */

/* The tokenizer stored in a bundle (tensor tokenizer.bpe_merges).
 * DALLE_ERR_NOT_FOUND when the bundle has none. */
dalle_status tokenizer_from_bundle(dalle_bundle *b, dalle_tokenizer **out);

#endif
