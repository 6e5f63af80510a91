/* Fuzz target for the text tokenizer (lib/tokenizer*.c, bpe.c, ftfy.c,
 * html_unescape.c, utf8.c; docs/tokenizer.md).
 *
 * Each input is used twice: as a caption (bytes up to the first NUL) for
 * encode, tokenize (both layouts, with and without truncation) and decode of
 * the ids; and as a list of token ids (little-endian int32, folded into the
 * vocabulary, padding ids included) for decode. Invalid UTF-8 may only give
 * DALLE_ERR_INVALID_ARGUMENT and the long-text error DALLE_ERR_TOO_LONG;
 * anything else, a crash, a sanitizer report, a leak or a hang is a bug.
 *
 * The merges file is DALLE_FUZZ_VOCAB (the build passes
 * ../shared/vocab/bpe_simple_vocab_16e6.txt), or $DALLE_VOCAB; without one a
 * small built-in merges list is used so the target still runs.
 *
 * Built with -DDALLE_LIBFUZZER it is a libFuzzer target; without it,
 * replay.c's main() replays the files (or the files of the directories)
 * named on the command line.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/dalle.h"
#include "fuzz.h"

#ifndef DALLE_FUZZ_VOCAB
#define DALLE_FUZZ_VOCAB ""
#endif

static dalle_tokenizer *tok; /* loaded once, kept for the process */

static const char small_merges[] = "#version: 0.2\ni n\nt h\na n\nr e\nin g</w>\nth e</w>\n"
                                   "e r\nan d</w>\no n\n";

static dalle_tokenizer *load(void)
{
    const char *paths[2] = {getenv("DALLE_VOCAB"), DALLE_FUZZ_VOCAB};
    dalle_tokenizer *t = NULL;
    for (int i = 0; i < 2 && !t; i++)
        if (paths[i] && *paths[i] && dalle_tokenizer_create(paths[i], &t) != DALLE_OK)
            t = NULL;
    if (t)
        return t;
    const char *path = fuzz_write_file("merges.txt", small_merges, sizeof small_merges - 1);
    if (!path || dalle_tokenizer_create(path, &t) != DALLE_OK)
        t = NULL;
    return t;
}

static void as_text(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return;
    memcpy(text, data, size);
    text[size] = '\0';
    int n = 0;
    dalle_status s = dalle_tokenizer_encode(tok, text, NULL, 0, &n);
    if (s != DALLE_OK && s != DALLE_ERR_INVALID_ARGUMENT)
        FUZZ_BUG();
    if (s == DALLE_OK) {
        int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
        int m = -1;
        if (ids && dalle_tokenizer_encode(tok, text, ids, n, &m) == DALLE_OK) {
            if (m != n)
                FUZZ_BUG(); /* the cache must not change the result */
            size_t len;
            if (dalle_tokenizer_decode(tok, ids, n, NULL, 0, &len) != DALLE_OK)
                FUZZ_BUG();
            char *buf = malloc(len + 1);
            size_t len2;
            if (buf && (dalle_tokenizer_decode(tok, ids, n, buf, len + 1, &len2) != DALLE_OK ||
                        len2 != len || strlen(buf) > len))
                FUZZ_BUG();
            free(buf);
        }
        free(ids);
    }
    int32_t row[77];
    for (int clip = 0; clip < 2; clip++)
        for (int truncate = 0; truncate < 2; truncate++) {
            s = clip ? dalle_tokenizer_tokenize_clip(tok, text, row, 77, truncate)
                     : dalle_tokenizer_tokenize(tok, text, row, 77, truncate);
            if (s != DALLE_OK && s != DALLE_ERR_INVALID_ARGUMENT &&
                !(s == DALLE_ERR_TOO_LONG && !truncate))
                FUZZ_BUG();
        }
    free(text);
}

static void as_ids(const uint8_t *data, size_t size)
{
    int n = (int)(size / 4);
    if (n > 4096)
        n = 4096;
    int32_t *ids = malloc(sizeof *ids * (size_t)(n ? n : 1));
    if (!ids)
        return;
    int vocab = dalle_tokenizer_vocab_size(tok);
    for (int i = 0; i < n; i++) {
        uint32_t v = (uint32_t)data[4 * i] | (uint32_t)data[4 * i + 1] << 8 |
                     (uint32_t)data[4 * i + 2] << 16 | (uint32_t)data[4 * i + 3] << 24;
        ids[i] = (int32_t)(v % (uint32_t)vocab);
    }
    size_t len;
    if (dalle_tokenizer_decode(tok, ids, n, NULL, 0, &len) != DALLE_OK)
        FUZZ_BUG();
    char *buf = malloc(len + 1);
    if (buf && dalle_tokenizer_decode(tok, ids, n, buf, len + 1, &len) != DALLE_OK)
        FUZZ_BUG();
    free(buf);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!tok && !(tok = load()))
        return 0;
    as_text(data, size);
    as_ids(data, size);
    return 0;
}

int fuzz_replay_end(void)
{
    if (!tok)
        fprintf(stderr, "no tokenizer could be loaded\n");
    int bad = !tok;
    dalle_tokenizer_free(tok);
    tok = NULL;
    return bad;
}
