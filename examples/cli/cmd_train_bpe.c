/* dalle train-bpe: learn CLIP-format BPE merges from captions, so that a
 * small caption language (the synthetic world's, or a folder's) gets a small
 * text vocabulary: a model trained with it needs a far smaller text
 * embedding than with CLIP's 49408 ids (dalle_bpe_learn of <dalle/train.h>). */
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle train-bpe (--synthetic N [world options] | --captions FILE | --data DIR)\n"
    "                       -o MERGES.txt [--merges K] [--min-count C]\n"
    "\n"
    "Learn byte-pair-encoding merges from captions and write them as a CLIP-format\n"
    "merges file, loadable wherever a tokenizer is taken (--bpe of the train-*\n"
    "commands). The vocabulary it gives is 512 + merges + 2 ids; with --min-count 1\n"
    "every word seen becomes one token.\n"
    "\n"
    "captions:\n"
    "  --synthetic N          the captions of N items of the built-in synthetic world\n"
    "                         (training split, as train-dalle --synthetic N draws them)\n"
    "  --world-seed S         which items (default 0)\n"
    "  --captions FILE        one caption a non-empty line\n"
    "  --data DIR             the .txt captions of an image folder (DALLE-pytorch layout)\n"
    "output:\n"
    "  -o, --output FILE      the merges file\n"
    "  --merges K             at most K merges (default 10000)\n"
    "  --min-count C          merge only pairs seen at least C times (default 1)\n";

typedef struct opts {
    const char *out, *captions, *data;
    long long synthetic, merges, min_count;
    uint64_t world_seed;
    cli_world world;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    o->synthetic = -1, o->merges = 10000, o->min_count = 1;
    cli_world_init(&o->world);
    cli_args_init(a, "train-bpe", argc, argv);
    int rc = 0, kind;
    while (!rc && (kind = cli_next(a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL)
            return cli_unexpected(a);
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            fputs(cli_world_usage, stdout);
            return -1;
        }
        if (cli_world_option(a, &o->world, &rc)) continue;
        if (cli_is(a, "-o", "--output")) rc = cli_value(a, &o->out);
        else if (cli_is(a, NULL, "--synthetic")) rc = cli_int_value(a, 1, 1 << 24, &o->synthetic);
        else if (cli_is(a, NULL, "--captions")) rc = cli_value(a, &o->captions);
        else if (cli_is(a, NULL, "--data")) rc = cli_value(a, &o->data);
        else if (cli_is(a, NULL, "--merges")) rc = cli_int_value(a, 0, DALLE_BPE_MAX_MERGES, &o->merges);
        else if (cli_is(a, NULL, "--min-count")) rc = cli_int_value(a, 1, INT64_MAX, &o->min_count);
        else if (cli_is(a, NULL, "--world-seed")) rc = cli_u64_value(a, &o->world_seed);
        else return cli_unexpected(a);
    }
    if (rc)
        return rc;
    if (!o->out)
        return cli_usage(a, "an output file is needed: -o MERGES.txt");
    if ((o->synthetic >= 0) + !!o->captions + !!o->data != 1)
        return cli_usage(a, "give the captions: --synthetic N, --captions FILE or --data DIR "
                            "(one of them)");
    return 0;
}

/* A growing list of caption pointers (into buffers it owns). */
typedef struct texts {
    char **v;
    int64_t n, cap;
} texts;

static int texts_add(texts *t, const char *s, size_t len)
{
    if (t->n == t->cap) {
        int64_t cap = t->cap ? 2 * t->cap : 1024;
        char **v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v)
            return cli_error("train-bpe: out of memory");
        t->v = v, t->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c)
        return cli_error("train-bpe: out of memory");
    memcpy(c, s, len);
    c[len] = 0;
    t->v[t->n++] = c;
    return 0;
}

static void texts_free(texts *t)
{
    for (int64_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
}

/* Every non-empty line of a file (CR stripped). */
static int from_file(const char *path, texts *t)
{
    char *all = cli_read_file("train-bpe", path);
    if (!all)
        return CLI_FAIL;
    int rc = 0;
    for (char *p = all; *p && !rc;) {
        char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        size_t l = len;
        while (l && (p[l - 1] == '\r' || p[l - 1] == ' ' || p[l - 1] == '\t'))
            l--;
        if (l)
            rc = texts_add(t, p, l);
        p += len + (e != NULL);
    }
    free(all);
    return rc;
}

/* The captions of a data set of the public training API: a folder, or the
 * synthetic world (whose images are rendered at the smallest size, since
 * only the captions are used). */
static int from_image_data(const opts *o, texts *t)
{
    dalle_image_data_params p = dalle_image_data_default_params();
    p.image_size = 16;
    p.world_seed = o->world_seed;
    p.world_colors = (int)o->world.colors, p.world_shapes = (int)o->world.shapes;
    p.world_max_objects = (int)o->world.objects, p.world_layouts = (int)o->world.layouts;
    dalle_image_data *d;
    dalle_status s = o->data ? dalle_image_data_folder(o->data, &p, &d)
                             : dalle_image_data_synthetic(o->synthetic, &p, &d);
    if (s)
        return cli_error("train-bpe: %s", dalle_last_error());
    int rc = 0;
    for (int64_t i = 0; i < dalle_image_data_count(d) && !rc; i++)
        for (int k = 0; k < dalle_image_data_caption_count(d, i) && !rc; k++) {
            const char *c = dalle_image_data_caption(d, i, k);
            rc = texts_add(t, c, strlen(c));
        }
    dalle_image_data_free(d);
    return rc;
}

int cmd_train_bpe(int argc, char **argv)
{
    opts o;
    cli_args a;
    int rc = parse(argc, argv, &o, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (cli_check_writable("train-bpe", o.out))
        return CLI_FAIL;
    texts t = {0};
    rc = o.captions ? from_file(o.captions, &t) : from_image_data(&o, &t);
    if (!rc && !t.n)
        rc = cli_error("train-bpe: no caption found");
    dalle_bpe_learn_params lp = dalle_bpe_learn_default_params();
    lp.max_merges = (int)o.merges;
    lp.min_count = o.min_count;
    dalle_bpe_merges *merges = NULL;
    if (!rc && (dalle_bpe_learn((const char *const *)t.v, t.n, &lp, &merges) ||
                dalle_bpe_merges_save(merges, o.out)))
        rc = cli_error("train-bpe: %s", dalle_last_error());
    if (!rc)
        printf("%lld captions -> %d merges, a vocabulary of %d ids: %s\n", (long long)t.n,
               dalle_bpe_merges_count(merges), dalle_bpe_merges_vocab_size(merges), o.out);
    dalle_bpe_merges_free(merges);
    texts_free(&t);
    return rc;
}
