/* Fuzz target for learning BPE merges from captions (dalle_bpe_learn,
 * lib/train/bpe_learn.c: the captions are cleaned and split into words as
 * the tokenizer does) and the round trip of what it learns.
 *
 * The input's lines are the captions. Learning (at most 64 merges) must
 * either fail with DALLE_ERR_INVALID_ARGUMENT (invalid UTF-8) and leave the
 * caller's pointer alone, or give merges whose file dalle_tokenizer_create
 * loads, with the vocabulary size dalle_bpe_merges_vocab_size announced,
 * and that tokenizer must encode every caption into ids below it. Anything
 * else, a crash, a sanitizer report, a leak or a hang is a bug. Seeds:
 * corpus_bpe_learn/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/train.h"
#include "fuzz.h"

#define MAX_TEXTS 256

static void round_trip(const dalle_bpe_merges *m, char **texts, int n)
{
    size_t len = 0;
    const char *text = dalle_bpe_merges_text(m, &len);
    const char *path = text ? fuzz_write_file("learnt.txt", text, len) : NULL;
    if (!text || strlen(text) != len || dalle_bpe_merges_count(m) > 64)
        FUZZ_BUG();
    dalle_tokenizer *tok;
    if (!path)
        return;
    if (fuzz_note("dalle_tokenizer_create", dalle_tokenizer_create(path, &tok)) != DALLE_OK)
        FUZZ_BUG(); /* learnt merges must load */
    const int vocab = dalle_tokenizer_vocab_size(tok);
    if (vocab != dalle_bpe_merges_vocab_size(m))
        FUZZ_BUG();
    for (int i = 0; i < n; i++) {
        int count = 0;
        if (dalle_tokenizer_encode(tok, texts[i], NULL, 0, &count) != DALLE_OK)
            FUZZ_BUG();
        int32_t *ids = malloc(sizeof *ids * (size_t)(count ? count : 1));
        int got = 0;
        if (ids && dalle_tokenizer_encode(tok, texts[i], ids, count, &got) == DALLE_OK)
            for (int k = 0; k < got; k++)
                if (ids[k] < 0 || ids[k] >= vocab)
                    FUZZ_BUG();
        free(ids);
    }
    dalle_tokenizer_free(tok);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *copy = malloc(size + 1);
    char *texts[MAX_TEXTS];
    int n = 0;
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    copy[size] = '\0';
    for (char *line = copy; n < MAX_TEXTS;) {
        texts[n++] = line;
        char *nl = memchr(line, '\n', size - (size_t)(line - copy));
        if (!nl)
            break;
        *nl = '\0';
        line = nl + 1;
    }
    dalle_bpe_learn_params p = dalle_bpe_learn_default_params();
    p.max_merges = 64;
    dalle_bpe_merges *sentinel = (dalle_bpe_merges *)&p, *m = sentinel;
    dalle_status s = fuzz_note("dalle_bpe_learn",
                               dalle_bpe_learn((const char *const *)texts, n, &p, &m));
    if (s == DALLE_OK) {
        round_trip(m, texts, n);
        dalle_bpe_merges_free(m);
    } else if (s != DALLE_ERR_INVALID_ARGUMENT || m != sentinel) {
        FUZZ_BUG();
    }
    free(copy);
    return 0;
}
