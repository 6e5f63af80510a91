/* Learning BPE merges (lib/train/bpe_learn.c): the merges load as a
 * tokenizer, every frequent word of the captions becomes one token, text
 * round-trips, and the result depends only on the captions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dalle/dalle.h"
#include "train/bpe_learn.h"

static const char *captions[] = {
    "a red circle",
    "a green triangle on a yellow background",
    "A small blue square in the top left corner",
    "a red circle above a blue square",
    "a big green circle to the left of a small red triangle",
    "a yellow square on a purple background",
    "&amp; a cyan cross, below a white square!",
};
enum { N = sizeof captions / sizeof *captions };

static dalle_tokenizer *load(const char *path, const char *merges, size_t len)
{
    FILE *f = fopen(path, "wb");
    fwrite(merges, 1, len, f);
    fclose(f);
    dalle_tokenizer *tok = NULL;
    int rc = dalle_tokenizer_create(path, &tok);
    CHECK(rc == DALLE_OK, "learned merges load as a tokenizer: %s", rc ? dalle_last_error() : "");
    return tok;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : ".";
    char path[1024];
    snprintf(path, sizeof path, "%s/learned_merges.txt", dir);

    char *m1 = NULL, *m2 = NULL;
    size_t l1 = 0, l2 = 0;
    int n1 = 0, n2 = 0;
    CHECK(bpe_learn(captions, N, 1000, 1, &m1, &l1, &n1) == DALLE_OK, "learn: %d merges", n1);
    CHECK(bpe_learn(captions, N, 1000, 1, &m2, &l2, &n2) == DALLE_OK && l1 == l2 &&
              !memcmp(m1, m2, l1),
          "the same captions give the same bytes");
    CHECK(!strncmp(m1, "#version", 8), "a CLIP-style header line");

    dalle_tokenizer *tok = load(path, m1, l1);
    if (tok) {
        CHECK(dalle_tokenizer_vocab_size(tok) == 512 + n1 + 2, "vocabulary = 512 + %d merges + 2 = %d",
              n1, dalle_tokenizer_vocab_size(tok));
        /* with min_count 1 every word of the captions is one token */
        const char *words[] = {"red", "circle", "triangle", "background", "corner", "purple", "a"};
        for (size_t i = 0; i < sizeof words / sizeof *words; i++) {
            int32_t ids[16];
            int n = 0;
            int rc = dalle_tokenizer_encode(tok, words[i], ids, 16, &n);
            CHECK(rc == DALLE_OK && n == 1, "'%s' is one token (%d)", words[i], n);
        }
        for (int c = 0; c < N; c++) {
            int32_t ids[64];
            int n = 0;
            char back[256];
            size_t bl = 0;
            int rc = dalle_tokenizer_encode(tok, captions[c], ids, 64, &n);
            rc = rc ? rc : dalle_tokenizer_decode(tok, ids, n, back, sizeof back, &bl);
            CHECK(rc == DALLE_OK && n <= 14, "caption %d: %d tokens, decodes to \"%s\"", c, n,
                  rc ? dalle_last_error() : back);
        }
        int32_t ids[64];
        int n = 0, rc = dalle_tokenizer_encode(tok, "a red circle above a blue square", ids, 64, &n);
        char back[256];
        size_t bl = 0;
        rc = rc ? rc : dalle_tokenizer_decode(tok, ids, n, back, sizeof back, &bl);
        /* upstream's decode ends every word with a space, the last too */
        CHECK(rc == DALLE_OK && !strcmp(back, "a red circle above a blue square "),
              "round trip: \"%s\"", back);
        /* an unseen word still encodes (byte symbols), in more tokens */
        rc = dalle_tokenizer_encode(tok, "zebra", ids, 64, &n);
        CHECK(rc == DALLE_OK && n > 1, "an unseen word falls back to smaller pieces (%d)", n);
        dalle_tokenizer_free(tok);
    }

    /* min_count 2 merges only what repeats; max_merges caps */
    char *m3 = NULL;
    size_t l3 = 0;
    int n3 = 0;
    CHECK(bpe_learn(captions, N, 5, 1, &m3, &l3, &n3) == DALLE_OK && n3 == 5, "max_merges caps (%d)",
          n3);
    free(m3);
    m3 = NULL;
    CHECK(bpe_learn(captions, N, 1000, 2, &m3, &l3, &n3) == DALLE_OK && n3 < n1,
          "min_count 2: fewer merges (%d < %d)", n3, n1);
    free(m3);

    const char *bad[] = {"ok", "\xff\xfe"};
    CHECK_FAILS(bpe_learn(bad, 2, 10, 1, &m3, &l3, NULL), DALLE_ERR_INVALID_ARGUMENT, "texts[1]");
    CHECK_FAILS(bpe_learn(captions, N, -1, 1, &m3, &l3, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "max_merges");
    CHECK_FAILS(bpe_learn(NULL, 0, 10, 1, &m3, &l3, NULL), DALLE_ERR_INVALID_ARGUMENT, "no texts");
    free(m1);
    free(m2);
    return check_summary();
}
