/* dalle tokenize: a caption's token ids, as the model sees them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle tokenize -m BUNDLE TEXT [--context-length N] [--truncate] [--raw]\n"
    "\n"
    "Print the token ids of TEXT on one line, as the model of BUNDLE sees\n"
    "them: padded with 0 to the model's caption length (dalle.text_seq_len,\n"
    "or CLIP's context), with <|startoftext|>/<|endoftext|> around them for an\n"
    "OpenAI CLIP bundle (clip.tokenize) and without them otherwise\n"
    "(DALLE-pytorch's tokenize). BUNDLE is any bundle converted with --bpe,\n"
    "or a merges file such as bpe_simple_vocab_16e6.txt.\n"
    "\n"
    "  -m, --model FILE       the bundle (or merges file)\n"
    "  --context-length N     pad or cut to N ids instead (1..65536)\n"
    "  --truncate             cut a caption that is too long (else an error)\n"
    "  --raw                  the ids alone: no padding, no start/end tokens\n";

/* The caption length the bundle's model takes (0 if none: a merges file
 * or a tokenizer-only bundle), and whether it is OpenAI's CLIP. */
static void model_layout(const char *path, int *len, int *openai)
{
    static const char *keys[] = {"dalle.text_seq_len", "clip.text_seq_len",
                                 "clip.context_length"};
    *len = 0;
    *openai = 0;
    dalle_bundle *b;
    if (dalle_bundle_open(path, &b) != DALLE_OK)
        return; /* a merges file; dalle_tokenizer_create reports real errors */
    *openai = !strcmp(dalle_bundle_kind(b), "openai_clip");
    for (size_t i = 0; i < sizeof keys / sizeof *keys && !*len; i++) {
        int64_t v;
        if (dalle_bundle_meta_i64(b, keys[i], &v) == DALLE_OK && v > 0 && v <= 65536)
            *len = (int)v;
    }
    dalle_bundle_close(b);
}

static int print_ids(const int32_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        printf(i ? " %d" : "%d", (int)ids[i]);
    printf("\n");
    return CLI_OK;
}

int cmd_tokenize(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, "tokenize", argc, argv);
    const char *model = NULL, *text = NULL;
    long long context = 0;
    int truncate = 0, raw = 0, rc = 0, kind;
    while (!rc && (kind = cli_next(&a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL) {
            if (text)
                return cli_usage(&a, "one text only: put it in quotes ('%s' is extra)", a.arg);
            text = a.arg;
        } else if (cli_is(&a, "-h", "--help")) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, "-m", "--model")) {
            rc = cli_value(&a, &model);
        } else if (cli_is(&a, NULL, "--context-length")) {
            rc = cli_int_value(&a, 1, 65536, &context);
        } else if (cli_is(&a, NULL, "--truncate")) {
            rc = cli_flag(&a);
            truncate = 1;
        } else if (cli_is(&a, NULL, "--raw")) {
            rc = cli_flag(&a);
            raw = 1;
        } else {
            return cli_unexpected(&a);
        }
    }
    if (rc)
        return rc;
    if (!model)
        return cli_usage(&a, "a tokenizer is needed: -m BUNDLE");
    if (!text)
        return cli_usage(&a, "a text is needed");
    if (raw && (context || truncate))
        return cli_usage(&a, "--raw takes no --context-length or --truncate");

    int len, openai;
    model_layout(model, &len, &openai);
    if (context)
        len = (int)context;
    dalle_tokenizer *tok;
    if (dalle_tokenizer_create(model, &tok) != DALLE_OK)
        return cli_lib_error();
    int32_t *ids = NULL;
    int n = 0;
    dalle_status s;
    if (raw || !len) {
        /* no caption length known: the ids alone */
        s = dalle_tokenizer_encode(tok, text, NULL, 0, &n);
        if (s == DALLE_OK && !(ids = malloc((size_t)(n ? n : 1) * sizeof *ids)))
            s = DALLE_ERR_OUT_OF_MEMORY;
        if (s == DALLE_OK)
            s = dalle_tokenizer_encode(tok, text, ids, n, &n);
    } else {
        n = len;
        if (!(ids = malloc((size_t)n * sizeof *ids)))
            s = DALLE_ERR_OUT_OF_MEMORY;
        else if (openai)
            s = dalle_tokenizer_tokenize_clip(tok, text, ids, n, truncate);
        else
            s = dalle_tokenizer_tokenize(tok, text, ids, n, truncate);
    }
    if (s == DALLE_ERR_OUT_OF_MEMORY && !ids)
        rc = cli_error("tokenize: out of memory");
    else if (s == DALLE_ERR_TOO_LONG)
        rc = cli_error("%s (--truncate cuts it)", dalle_last_error());
    else if (s != DALLE_OK)
        rc = cli_lib_error();
    else
        rc = print_ids(ids, n);
    free(ids);
    dalle_tokenizer_free(tok);
    return rc;
}
