/* Fuzz target for BPE merges files (lib/bpe.c bpe_load, lib/tokenizer.c's
 * file reading, lib/train/merges_io.c's merges_from_path).
 *
 * The input is a merges .txt. It is written to a temporary file and loaded
 * with dalle_tokenizer_create (which tells a bundle from text by its magic)
 * and with the trainers' merges_from_path, which must hand back the file's
 * bytes. A tokenizer that loads must then encode a few captions into ids
 * below its vocabulary size, and decode every id. Anything else, a crash, a
 * sanitizer report, a leak or a hang is a bug. Seeds: corpus_merges/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/dalle.h"
#include "fuzz.h"
#include "train/merges_io.h"

static void use(dalle_tokenizer *tok)
{
    static const char *const texts[] = {"a red circle above a blue square", "The thing's <b>",
                                        "héllo wörld 123 !!", "   ", "<|startoftext|>x"};
    const int vocab = dalle_tokenizer_vocab_size(tok);
    if (vocab < 514) /* 512 byte tokens and the two specials at least */
        FUZZ_BUG();
    for (size_t k = 0; k < sizeof texts / sizeof *texts; k++) {
        int32_t ids[128];
        int n = 0;
        if (dalle_tokenizer_encode(tok, texts[k], ids, 128, &n) != DALLE_OK)
            FUZZ_BUG();
        for (int i = 0; i < n && i < 128; i++)
            if (ids[i] < 0 || ids[i] >= vocab)
                FUZZ_BUG();
        int32_t row[16];
        (void)dalle_tokenizer_tokenize(tok, texts[k], row, 16, 1);
    }
    int32_t id[64];
    for (int first = 0; first < vocab; first += 64) {
        int n = vocab - first < 64 ? vocab - first : 64;
        for (int i = 0; i < n; i++)
            id[i] = first + i;
        size_t len, len2;
        if (dalle_tokenizer_decode(tok, id, n, NULL, 0, &len) != DALLE_OK)
            FUZZ_BUG();
        char *buf = malloc(len + 1);
        if (buf && (dalle_tokenizer_decode(tok, id, n, buf, len + 1, &len2) != DALLE_OK ||
                    len2 != len))
            FUZZ_BUG();
        free(buf);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("merges.txt", data, size);
    if (!path)
        return 0;
    dalle_tokenizer *tok = NULL;
    if (fuzz_note("dalle_tokenizer_create", dalle_tokenizer_create(path, &tok)) == DALLE_OK) {
        use(tok);
        dalle_tokenizer_free(tok);
    } else if (tok) {
        FUZZ_BUG(); /* a failed load wrote the caller's pointer */
    }
    uint8_t *got = NULL;
    size_t n = 0;
    if (merges_from_path(path, &got, &n) == DALLE_OK && !merges_path_is_bundle(path) &&
        (n != size || (n && memcmp(got, data, n))))
        FUZZ_BUG(); /* a text file comes back as it is */
    free(got);
    return 0;
}
