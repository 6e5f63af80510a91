/* dalle generate: caption → images, optionally primed and reranked by CLIP. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle generate -m MODEL.dalle CAPTION [options]\n"
    "\n"
    "Sample images for a caption, decode them with the model's VAE and write\n"
    "them as PNG files (best first when a CLIP model reranks them). Prints the\n"
    "seed, then one line per file written (with its CLIP score when reranked).\n"
    "\n"
    "  -m, --model FILE       DALL-E bundle (kind dalle), with its tokenizer\n"
    "  -n, --num-images N     images to make (default 1)\n"
    "  -b, --batch B          images sampled together (default 8); image i\n"
    "                         depends only on --seed and i\n"
    "  --seed S               random seed, 0..2^64-1 (default: from the clock)\n"
    "  --filter-thres F       top-k filter: keep the (1 - F) share of logits,\n"
    "                         0 <= F < 1 (default 0.5)\n"
    "  --temperature T        > 0 (default 1)\n"
    "  --cond-scale C         classifier-free guidance, 1 = off (default 1)\n"
    "  --prime IMAGE          start every image from this PNG/JPEG's tokens\n"
    "  --prime-tokens K       how many of its tokens (default 0.4375 of the\n"
    "                         image tokens, as DALLE-pytorch)\n"
    "  --clip FILE            CLIP bundle: score the images, write best first\n"
    "  -o, --output PREFIX    write PREFIX-000.png, PREFIX-001.png, ...\n"
    "                         (default 'dalle' unless --grid is given)\n"
    "  --grid FILE.png        also (or only) write all images as one grid\n"
    CLI_COMPUTE_HELP
    "\n"
    "A progress bar is drawn on stderr when it is a terminal. Ctrl-C stops\n"
    "sampling between tokens: the images of the batches already finished\n"
    "are still written, and the exit status is then 130.\n";

typedef struct gen_opts {
    const char *model, *caption, *prime, *clip, *prefix, *grid;
    long long n, batch, prime_tokens;
    cli_compute compute; /* -t, --backend, --device: the model and its CLIP */
    uint64_t seed;
    int seed_given;
    double filter_thres, temperature, cond_scale;
} gen_opts;

static int parse(int argc, char **argv, gen_opts *o)
{
    cli_args a;
    cli_args_init(&a, "generate", argc, argv);
    memset(o, 0, sizeof *o);
    o->n = 1;
    o->batch = 8;
    o->prime_tokens = -1;
    dalle_sample_params d = dalle_sample_default_params();
    o->filter_thres = d.filter_thres;
    o->temperature = d.temperature;
    o->cond_scale = d.cond_scale;
    int rc = 0, kind;
    while (!rc && (kind = cli_next(&a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL) {
            if (o->caption)
                return cli_usage(&a, "one caption only: put it in quotes ('%s' is extra)", a.arg);
            o->caption = a.arg;
        } else if (cli_is(&a, "-h", "--help")) {
            fputs(usage, stdout);
            return -1;
        } else if (cli_is(&a, "-m", "--model")) {
            rc = cli_value(&a, &o->model);
        } else if (cli_is(&a, "-n", "--num-images")) {
            rc = cli_int_value(&a, 1, 1000000, &o->n);
        } else if (cli_is(&a, "-b", "--batch")) {
            rc = cli_int_value(&a, 1, 4096, &o->batch);
        } else if (cli_compute_option(&a, &o->compute, &rc)) {
        } else if (cli_is(&a, NULL, "--seed")) {
            rc = cli_u64_value(&a, &o->seed);
            o->seed_given = 1;
        } else if (cli_is(&a, NULL, "--filter-thres")) {
            rc = cli_float_value(&a, 0.0, 0, 1.0, 1, &o->filter_thres);
        } else if (cli_is(&a, NULL, "--temperature")) {
            rc = cli_float_value(&a, 0.0, 1, 1e6, 0, &o->temperature);
        } else if (cli_is(&a, NULL, "--cond-scale")) {
            rc = cli_float_value(&a, -1e6, 0, 1e6, 0, &o->cond_scale);
        } else if (cli_is(&a, NULL, "--prime")) {
            rc = cli_value(&a, &o->prime);
        } else if (cli_is(&a, NULL, "--prime-tokens")) {
            rc = cli_int_value(&a, 0, 1 << 20, &o->prime_tokens);
        } else if (cli_is(&a, NULL, "--clip")) {
            rc = cli_value(&a, &o->clip);
        } else if (cli_is(&a, "-o", "--output")) {
            rc = cli_value(&a, &o->prefix);
        } else if (cli_is(&a, NULL, "--grid")) {
            rc = cli_value(&a, &o->grid);
        } else {
            return cli_unexpected(&a);
        }
    }
    if (rc)
        return rc;
    if (!o->model)
        return cli_usage(&a, "a model is needed: -m MODEL.dalle");
    if (!o->caption)
        return cli_usage(&a, "a caption is needed");
    if (o->prime_tokens >= 0 && !o->prime)
        return cli_usage(&a, "--prime-tokens needs --prime IMAGE");
    if (o->grid && o->n > 4096)
        return cli_usage(&a, "--grid takes at most 4096 images (-n %lld)", o->n);
    if (!o->prefix && !o->grid)
        o->prefix = "dalle";
    if (o->batch > o->n)
        o->batch = o->n;
    return 0;
}

/* splitmix64's finaliser: a well-mixed seed from the clock. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t clock_seed(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return mix64((uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^
                 ((uint64_t)getpid() << 32));
}

/* The image tokens of --prime: the first k tokens of the image encoded by
 * the model's VAE, repeated for each image of a batch. */
static int prime_tokens(dalle_ctx *ctx, const char *path, int k, int batch, int32_t **out)
{
    int size = dalle_image_size(ctx), seq = dalle_image_seq_len(ctx);
    float *pixels = malloc((size_t)3 * size * size * sizeof *pixels);
    int32_t *ids = malloc((size_t)seq * sizeof *ids);
    int32_t *prime = malloc((size_t)batch * (k ? k : 1) * sizeof *prime);
    int rc = 0;
    if (!pixels || !ids || !prime)
        rc = cli_error("generate: out of memory");
    else if (dalle_read_image(path, size, pixels) != DALLE_OK ||
             dalle_encode(ctx, pixels, 1, ids) != DALLE_OK)
        rc = cli_lib_error();
    else
        for (int b = 0; b < batch; b++)
            memcpy(prime + (size_t)b * k, ids, (size_t)k * sizeof *ids);
    free(pixels);
    free(ids);
    if (rc)
        free(prime);
    else
        *out = prime;
    return rc;
}

typedef struct run {
    gen_opts *o;
    dalle_ctx *ctx;
    cli_clip clip;
    int have_clip;
    int32_t *text;   /* [batch][text_seq_len] */
    int32_t *prime;  /* [batch][k] or NULL */
    int32_t *ids;    /* [n][image_seq_len] */
    float *pixels;   /* [n][3][size][size] */
    float *scores;   /* [n] */
    int *order;      /* [n] */
    int k;           /* prime tokens per image */
    int n_done;      /* images sampled */
} run;

/* Sample the images in batches; stop at Ctrl-C, keeping the finished
 * batches. 0, or CLI_FAIL after the message. */
static int sample_all(run *r)
{
    gen_opts *o = r->o;
    int k = r->k;
    int seq = dalle_image_seq_len(r->ctx);
    cli_progress bar;
    cli_progress_init(&bar, (int64_t)o->n * (seq - k));
    dalle_sample_params sp = dalle_sample_default_params();
    sp.filter_thres = (float)o->filter_thres;
    sp.temperature = (float)o->temperature;
    sp.cond_scale = (float)o->cond_scale;
    sp.prime = r->prime;
    sp.n_prime = k;
    sp.progress = cli_progress_cb;
    sp.abort = cli_abort_cb;
    sp.user = &bar;
    int rc = 0;
    for (long long b0 = 0; b0 < o->n && !rc && !cli_interrupted(); b0 += o->batch) {
        int nb = (int)(o->n - b0 < o->batch ? o->n - b0 : o->batch);
        /* one seed; each batch continues the image numbering, so the images
         * do not depend on --batch */
        sp.seed = o->seed;
        sp.first_image = (uint64_t)b0;
        dalle_status s = dalle_sample(r->ctx, r->text, nb, &sp, r->ids + (size_t)b0 * seq);
        if (s == DALLE_OK) {
            r->n_done += nb;
            bar.base += (int64_t)nb * (seq - k);
        } else if (s != DALLE_ERR_ABORTED) {
            cli_progress_end(&bar);
            rc = cli_lib_error();
        }
    }
    cli_progress_end(&bar);
    return rc;
}

static int write_images(run *r)
{
    gen_opts *o = r->o;
    int size = dalle_image_size(r->ctx), n = r->n_done;
    size_t img = (size_t)3 * size * size;
    /* digits enough for the last index, at least three */
    unsigned width = 3;
    for (long long m = 1000; m <= n - 1 && width < 9; m *= 10)
        width++;
    if (o->prefix) {
        size_t cap = strlen(o->prefix) + 32;
        char *path = malloc(cap);
        if (!path)
            return cli_error("generate: out of memory");
        for (int i = 0; i < n; i++) {
            int j = r->order[i];
            snprintf(path, cap, "%s-%0*d.png", o->prefix, (int)(width % 10), i);
            if (dalle_write_png(path, r->pixels + (size_t)j * img, 1, size, size) != DALLE_OK) {
                free(path);
                return cli_lib_error();
            }
            if (r->have_clip)
                printf("%s\t%.4f\n", path, (double)r->scores[j]);
            else
                printf("%s\n", path);
        }
        free(path);
    }
    if (o->grid) {
        float *grid = malloc((size_t)n * img * sizeof *grid);
        if (!grid)
            return cli_error("generate: out of memory");
        for (int i = 0; i < n; i++)
            memcpy(grid + (size_t)i * img, r->pixels + (size_t)r->order[i] * img,
                   img * sizeof *grid);
        dalle_status s = dalle_write_png(o->grid, grid, n, size, size);
        free(grid);
        if (s != DALLE_OK)
            return cli_lib_error();
        printf("%s\n", o->grid);
    }
    fflush(stdout);
    return 0;
}

/* After sampling: decode what was finished, rerank, write. */
static int finish(run *r)
{
    gen_opts *o = r->o;
    int size = dalle_image_size(r->ctx), seq = dalle_image_seq_len(r->ctx);
    size_t img = (size_t)3 * size * size;
    for (int b0 = 0; b0 < r->n_done; b0 += (int)o->batch) {
        int nb = r->n_done - b0 < o->batch ? r->n_done - b0 : (int)o->batch;
        if (dalle_decode(r->ctx, r->ids + (size_t)b0 * seq, nb, r->pixels + (size_t)b0 * img) !=
            DALLE_OK)
            return cli_lib_error();
    }
    for (int i = 0; i < r->n_done; i++)
        r->order[i] = i;
    if (r->have_clip &&
        cli_clip_rank(&r->clip, r->pixels, r->n_done, size, r->scores, r->order))
        return CLI_FAIL;
    return write_images(r);
}

static int setup(run *r)
{
    gen_opts *o = r->o;
    if (!(r->ctx = cli_load_dalle(o->model, &o->compute, (int)o->batch)))
        return CLI_FAIL;
    int tlen = dalle_text_seq_len(r->ctx), seq = dalle_image_seq_len(r->ctx);
    int size = dalle_image_size(r->ctx);
    int k = 0;
    if (o->prime) {
        /* upstream: num_init_img_tokens = int(0.4375 * image_seq_len) */
        k = o->prime_tokens >= 0 ? (int)o->prime_tokens : (int)(0.4375 * seq);
        if (k > seq)
            return cli_error("generate: --prime-tokens %d: the model has only %d image tokens", k,
                             seq);
    }
    r->k = k;
    r->text = malloc((size_t)o->batch * tlen * sizeof *r->text);
    r->ids = malloc((size_t)o->n * seq * sizeof *r->ids);
    r->pixels = malloc((size_t)o->n * 3 * size * size * sizeof *r->pixels);
    r->scores = calloc((size_t)o->n, sizeof *r->scores);
    r->order = malloc((size_t)o->n * sizeof *r->order);
    if (!r->text || !r->ids || !r->pixels || !r->scores || !r->order)
        return cli_error("generate: out of memory for %lld images", o->n);
    if (dalle_tokenize(r->ctx, o->caption, r->text, tlen, 0) != DALLE_OK)
        return cli_lib_error();
    /* a model trained with a smaller vocabulary than the bundle's tokenizer
     * would only fail inside dalle_sample; say which token, and why */
    for (int i = 0; i < tlen; i++)
        if (r->text[i] >= dalle_num_text_tokens(r->ctx))
            return cli_error("generate: the caption's token %d (position %d) is outside the "
                             "text vocabulary of %s (%d tokens)",
                             (int)r->text[i], i, o->model, dalle_num_text_tokens(r->ctx));
    for (long long b = 1; b < o->batch; b++)
        memcpy(r->text + (size_t)b * tlen, r->text, (size_t)tlen * sizeof *r->text);
    /* CLIP is loaded before sampling, so a bad --clip fails in a second,
     * not after minutes of sampling */
    if (o->clip) {
        if (cli_clip_open(&r->clip, "generate", o->clip, o->caption, &o->compute))
            return CLI_FAIL;
        r->have_clip = 1;
    }
    if (o->prime && prime_tokens(r->ctx, o->prime, k, (int)o->batch, &r->prime))
        return CLI_FAIL;
    return 0;
}

int cmd_generate(int argc, char **argv)
{
    gen_opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    /* files are checked before loading: a typo must not cost a run */
    if (cli_check_kind("generate", "-m", o.model, CLI_KIND_DALLE, NULL) ||
        (o.clip && cli_check_kind("generate", "--clip", o.clip, CLI_KIND_CLIP, NULL)))
        return CLI_FAIL;
    if (o.prime && access(o.prime, R_OK) != 0)
        return cli_error("generate: cannot read --prime image '%s'", o.prime);
    if ((o.prefix && cli_check_writable("generate", o.prefix)) ||
        (o.grid && cli_check_writable("generate", o.grid)))
        return CLI_FAIL;
    if (!o.seed_given)
        o.seed = clock_seed();

    run r;
    memset(&r, 0, sizeof r);
    r.o = &o;
    rc = setup(&r);
    if (!rc) {
        printf("seed %llu\n", (unsigned long long)o.seed);
        fflush(stdout);
        cli_catch_sigint();
        rc = sample_all(&r);
        if (!rc && r.n_done > 0)
            rc = finish(&r);
        if (!rc && cli_interrupted()) {
            if (r.n_done)
                cli_error("generate: interrupted: wrote the %d of %lld images finished", r.n_done,
                          o.n);
            else
                cli_error("generate: interrupted before any image was finished");
            rc = CLI_INTERRUPTED;
        }
    }
    if (r.have_clip)
        cli_clip_close(&r.clip);
    dalle_ctx_free(r.ctx);
    free(r.text);
    free(r.prime);
    free(r.ids);
    free(r.pixels);
    free(r.scores);
    free(r.order);
    return rc;
}
