/* The text tokenizer (issue 5) against ../shared/golden/tokenizer, made by
 * DALLE-pytorch's SimpleTokenizer with the real ftfy and by OpenAI's
 * clip.tokenize: for every string, encode ids, decode text, tokenize(32,
 * truncate) and clip tokenize(77, truncate), all exact; the same from a
 * bundle carrying the merges; then errors (too long, invalid UTF-8, small
 * buffers, bad ids, malformed merges files).
 *
 * usage: test_tokenizer MERGES.txt GOLDEN_DIR [BUNDLE_WITH_TOKENIZER] [TMPDIR]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dalle/dalle.h"
#include "json_mini.h"
#include "npy.h"

typedef struct golden {
    const json *strings, *encode, *decode;
    int32_t *tok32, *clip77;
    int n;
} golden;

static int same_ids(const int32_t *a, int na, const json *want)
{
    if (!want || want->type != JSON_ARRAY || (size_t)na != want->len)
        return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != (int32_t)want->items[i].number)
            return 0;
    return 1;
}

/* Every golden string through one tokenizer; returns how many were exact. */
static int check_strings(dalle_tokenizer *tok, const golden *g, const char *label)
{
    int exact = 0;
    for (int i = 0; i < g->n; i++) {
        const char *s = g->strings->items[i].string;
        int32_t ids[1024], row[77];
        int n = -1;
        int ok = dalle_tokenizer_encode(tok, s, ids, 1024, &n) == DALLE_OK &&
                 same_ids(ids, n, &g->encode->items[i]);
        char text[8192];
        size_t len = 0;
        int dok = ok && dalle_tokenizer_decode(tok, ids, n, text, sizeof text, &len) == DALLE_OK &&
                  len == g->decode->items[i].len && !strcmp(text, g->decode->items[i].string);
        int tok_ok = dalle_tokenizer_tokenize(tok, s, row, 32, 1) == DALLE_OK &&
                     !memcmp(row, g->tok32 + 32 * i, 32 * sizeof *row);
        int clip_ok = dalle_tokenizer_tokenize_clip(tok, s, row, 77, 1) == DALLE_OK &&
                      !memcmp(row, g->clip77 + 77 * i, 77 * sizeof *row);
        if (!(ok && dok && tok_ok && clip_ok))
            CHECK(0, "%s: string %d \"%.40s\": encode %s, decode %s, tokenize_32 %s, clip_77 %s",
                  label, i, s, ok ? "ok" : "WRONG", dok ? "ok" : "WRONG", tok_ok ? "ok" : "WRONG",
                  clip_ok ? "ok" : "WRONG");
        exact += ok && dok && tok_ok && clip_ok;
    }
    CHECK(exact == g->n, "%s: %d of %d strings exact (encode, decode, tokenize_32, clip_77)",
          label, exact, g->n);
    return exact;
}

static void check_errors(dalle_tokenizer *tok, const golden *g)
{
    int32_t out[32], keep[32];
    for (int i = 0; i < 32; i++)
        out[i] = keep[i] = 7777;
    /* the long caption: 108 tokens in upstream */
    const char *longest = NULL;
    size_t longest_n = 0;
    int longest_i = 0;
    for (int i = 0; i < g->n; i++)
        if (g->encode->items[i].len > longest_n) {
            longest_n = g->encode->items[i].len;
            longest = g->strings->items[i].string;
            longest_i = i;
        }
    char need[64];
    snprintf(need, sizeof need, "is %zu tokens", longest_n);
    CHECK_FAILS(dalle_tokenizer_tokenize(tok, longest, out, 32, 0), DALLE_ERR_TOO_LONG, need);
    CHECK(!memcmp(out, keep, sizeof out), "too long: out untouched");
    CHECK(dalle_tokenizer_tokenize(tok, longest, out, 32, 1) == DALLE_OK &&
              !memcmp(out, g->tok32 + 32 * longest_i, sizeof out),
          "too long with truncate: the first 32 ids");
    CHECK_FAILS(dalle_tokenizer_tokenize_clip(tok, longest, out, 32, 0), DALLE_ERR_TOO_LONG,
                "with start and end");

    /* invalid UTF-8 is refused, naming the byte */
    static const char *bad[] = {"abc\xff", "\xc3(", "\xe2\x82", "\xed\xa0\x80 surrogate",
                                "\xc0\xaf overlong", "\xf4\x90\x80\x80 > 10FFFF"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int n = 99;
        CHECK_FAILS(dalle_tokenizer_encode(tok, bad[i], out, 32, &n), DALLE_ERR_INVALID_ARGUMENT,
                    "not valid UTF-8");
        CHECK(n == 99, "invalid UTF-8 %zu: n untouched", i);
    }
    CHECK_FAILS(dalle_tokenizer_tokenize(tok, "ok \xff", keep, 32, 1), DALLE_ERR_INVALID_ARGUMENT,
                "byte 3");

    /* arguments */
    int n = 0;
    CHECK_FAILS(dalle_tokenizer_encode(NULL, "a", out, 32, &n), DALLE_ERR_INVALID_ARGUMENT, "tok");
    CHECK_FAILS(dalle_tokenizer_encode(tok, NULL, out, 32, &n), DALLE_ERR_INVALID_ARGUMENT, "text");
    CHECK_FAILS(dalle_tokenizer_encode(tok, "a b c", out, 2, &n), DALLE_ERR_INVALID_ARGUMENT,
                "room for 2");
    CHECK(dalle_tokenizer_encode(tok, "a b c", NULL, 0, &n) == DALLE_OK && n == 3,
          "encode with ids NULL counts: %d", n);
    CHECK_FAILS(dalle_tokenizer_tokenize(tok, "a", out, 0, 0), DALLE_ERR_INVALID_ARGUMENT,
                "context_length = 0");
    int32_t ids[3] = {320, 99999, 1};
    char buf[8];
    size_t len = 1234;
    CHECK_FAILS(dalle_tokenizer_decode(tok, ids, 3, buf, sizeof buf, &len),
                DALLE_ERR_INVALID_ARGUMENT, "ids[1] = 99999");
    CHECK(len == 1234, "decode failure leaves len");
    int32_t hello[2];
    CHECK(dalle_tokenizer_encode(tok, "hello world", hello, 2, &n) == DALLE_OK && n == 2,
          "hello world: 2 ids");
    CHECK(dalle_tokenizer_decode(tok, hello, 2, NULL, 0, &len) == DALLE_OK && len == 12,
          "decode length query: %zu", len);
    CHECK_FAILS(dalle_tokenizer_decode(tok, hello, 2, buf, sizeof buf, &len),
                DALLE_ERR_INVALID_ARGUMENT, "needs 13");
    /* bytes that are not UTF-8 decode to U+FFFD, as errors='replace' */
    int32_t lone[2] = {127, 127}; /* 'Ã' then 'Ã': two lead bytes C3 C3 */
    char rep[32];
    CHECK(dalle_tokenizer_decode(tok, lone, 2, rep, sizeof rep, &len) == DALLE_OK &&
              !strcmp(rep, "\xef\xbf\xbd\xef\xbf\xbd"),
          "bad byte sequences decode to U+FFFD");
    CHECK(dalle_tokenizer_vocab_size(tok) == 49408, "vocab size %d",
          dalle_tokenizer_vocab_size(tok));
}

/* Malformed merges files: each refused with DALLE_ERR_FORMAT and its line. */
static void check_bad_merges(const char *tmpdir)
{
    static const struct {
        const char *text, *needle;
    } cases[] = {
        {"#version\na b c\n", "line 2: expected two symbols"},
        {"#version\ni n\nin q\u4e00\n", "line 3: a symbol is not made of byte"},
        {"#version\nab c\n", "line 2: a symbol is neither a byte nor made by an earlier merge"},
        {"#version\ni n\ni n\n", "line 3: the same merge appears twice"},
        {"#version\n\xff\n", "invalid UTF-8 at byte 9"},
    };
    char path[4096];
    snprintf(path, sizeof path, "%s/bad_merges.txt", tmpdir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        FILE *f = fopen(path, "wb");
        if (!f) {
            CHECK(0, "cannot write %s", path);
            return;
        }
        fputs(cases[i].text, f);
        fclose(f);
        dalle_tokenizer *t = NULL;
        CHECK_FAILS(dalle_tokenizer_create(path, &t), DALLE_ERR_FORMAT, cases[i].needle);
        CHECK(t == NULL, "out untouched");
    }
    /* a small valid file: 2 merges, specials right after them (no final
       newline: upstream would count the empty last line as a merge) */
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs("#version: 0.2\ni n\nin g</w>", f);
        fclose(f);
        dalle_tokenizer *t = NULL;
        int32_t ids[8];
        int n = 0;
        CHECK(dalle_tokenizer_create(path, &t) == DALLE_OK && dalle_tokenizer_vocab_size(t) == 516,
              "small merges file: vocab 516");
        CHECK(t && dalle_tokenizer_encode(t, "ring <|endoftext|>", ids, 8, &n) == DALLE_OK &&
                  n == 3 && ids[0] == 81 && ids[1] == 513 && ids[2] == 515,
              "small merges file: 'ring' = r + ing</w>, then <|endoftext|>");
        dalle_tokenizer_free(t);
    }
    remove(path);
    dalle_tokenizer *t = NULL;
    CHECK_FAILS(dalle_tokenizer_create("/nonexistent/merges.txt", &t), DALLE_ERR_IO,
                "/nonexistent/merges.txt");
    CHECK_FAILS(dalle_tokenizer_create(NULL, &t), DALLE_ERR_INVALID_ARGUMENT, "path");
}

/* A DALL·E context loads the bundle's tokenizer on first dalle_tokenize. */
static void check_context(const char *bundle, const golden *g)
{
    dalle_ctx *ctx;
    if (dalle_ctx_create(bundle, NULL, &ctx) != DALLE_OK) {
        printf("note: dalle_ctx_create(%s) failed (%s): context tokenize not checked\n", bundle,
               dalle_last_error());
        return;
    }
    int exact = 0;
    for (int i = 0; i < g->n; i++) {
        int32_t row[32];
        exact += dalle_tokenize(ctx, g->strings->items[i].string, row, 32, 1) == DALLE_OK &&
                 !memcmp(row, g->tok32 + 32 * i, sizeof row);
    }
    CHECK(exact == g->n, "dalle_tokenize: %d of %d rows equal tokenize_32", exact, g->n);
    int32_t row[4];
    CHECK_FAILS(dalle_tokenize(ctx, "a long caption that keeps going", row, 4, 0),
                DALLE_ERR_TOO_LONG, "6 tokens");
    dalle_ctx_free(ctx);
}

static int32_t *load_ids(const char *dir, const char *name, int rows, int cols)
{
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/tokenizer/%s", dir, name);
    npy a;
    if (npy_load(path, &a, err, sizeof err)) {
        CHECK(0, "%s: %s", path, err);
        return NULL;
    }
    int32_t *ids = NULL;
    if (a.ndim == 2 && a.dims[0] == rows && a.dims[1] == cols)
        ids = npy_to_i32(&a);
    CHECK(ids != NULL, "%s: %d x %d ids", name, rows, cols);
    npy_free(&a);
    return ids;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        SKIP("usage: test_tokenizer MERGES.txt GOLDEN_DIR [BUNDLE] [TMPDIR]");
    const char *merges = argv[1], *golden_dir = argv[2];
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer/strings.json", golden_dir);
    FILE *probe = fopen(path, "rb");
    FILE *probe2 = fopen(merges, "rb");
    if (!probe || !probe2) {
        if (probe)
            fclose(probe);
        if (probe2)
            fclose(probe2);
        SKIP("golden tokenizer case or merges file absent (%s, %s)", path, merges);
    }
    fclose(probe);
    fclose(probe2);

    json *doc = json_load(path);
    CHECK(doc != NULL, "parse %s", path);
    if (!doc)
        return check_summary();
    golden g = {json_get(doc, "strings"), json_get(doc, "encode"), json_get(doc, "decode"), NULL,
                NULL, 0};
    CHECK(g.strings && g.encode && g.decode && g.strings->len == g.encode->len &&
              g.strings->len == g.decode->len,
          "strings.json: strings, encode, decode of one length");
    if (!g.strings || !g.encode || !g.decode) {
        json_free(doc);
        return check_summary();
    }
    g.n = (int)g.strings->len;
    g.tok32 = load_ids(golden_dir, "tokenize_32.npy", g.n, 32);
    g.clip77 = load_ids(golden_dir, "clip_tokenize_77.npy", g.n, 77);
    if (!g.tok32 || !g.clip77)
        goto done;

    dalle_tokenizer *tok = NULL;
    CHECK(dalle_tokenizer_create(merges, &tok) == DALLE_OK, "load %s: %s", merges,
          tok ? "ok" : dalle_last_error());
    if (tok) {
        check_strings(tok, &g, "merges file");
        check_errors(tok, &g);
        dalle_tokenizer_free(tok);
    }
    if (argc > 3) {
        dalle_tokenizer *bt = NULL;
        CHECK(dalle_tokenizer_create(argv[3], &bt) == DALLE_OK, "load tokenizer from bundle %s%s%s",
              argv[3], bt ? "" : ": ", bt ? "" : dalle_last_error());
        if (bt) {
            check_strings(bt, &g, "bundle");
            dalle_tokenizer_free(bt);
        }
        check_context(argv[3], &g);
    }
    check_bad_merges(argc > 4 ? argv[4] : ".");
done:
    free(g.tok32);
    free(g.clip77);
    json_free(doc);
    return check_summary();
}
