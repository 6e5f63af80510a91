/* Training pairs as token ids (dalle_token_data_*, include/dalle/train.h).
 *
 * Every caption is tokenized and every image encoded once, when the set is
 * made: an epoch then costs nothing but the transformer. The price is that
 * train_dalle.py's per-epoch RandomResizedCrop is not reproduced (a crop
 * would need the VAE again every epoch); the centre crop is encoded.
 *
 * Batches are a pure function of (seed, step, batch) — a shuffled epoch
 * drawn from counter-based random numbers (batch_order.h) — so a trainer
 * that stores only its step counter resumes on exactly the batches it would
 * have seen. */
#include "token_data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../params.h"
#include "batch_order.h"
#include "dataset.h"
#include "synth.h"

enum { ENCODE_CHUNK = 8, MAX_CAPTIONS = 64 };

struct dalle_token_data {
    int64_t n;           /* pairs (images) */
    int T, I;            /* caption / image tokens per pair */
    int32_t *image;      /* [n][I] */
    int64_t *first_cap;  /* [n + 1]: captions of item i are first_cap[i] .. first_cap[i+1]-1 */
    int32_t *text;       /* [captions][T] */
    int64_t n_caps, cap_caps;
    int max_text_id;
    int64_t skipped;
    batch_order order;   /* the shuffled epochs the batches come from */
};

void dalle_token_data_params_init(dalle_token_data_params *params, size_t struct_size)
{
    dalle_token_data_params p;
    memset(&p, 0, sizeof p);
    synth_world w = synth_world_default();
    p.text_seq_len = 256;
    p.world_colors = w.n_colors;
    p.world_shapes = w.n_shapes;
    p.world_max_objects = w.max_objects;
    p.world_layouts = w.layouts;
    params_fill(params, struct_size, &p, sizeof p);
}

void dalle_token_data_free(dalle_token_data *d)
{
    if (!d)
        return;
    free(d->image);
    free(d->first_cap);
    free(d->text);
    batch_order_free(&d->order);
    free(d);
}

int64_t dalle_token_data_count(const dalle_token_data *d) { return d ? d->n : 0; }
int64_t dalle_token_data_skipped(const dalle_token_data *d) { return d ? d->skipped : 0; }
int dalle_token_data_text_seq_len(const dalle_token_data *d) { return d ? d->T : 0; }
int dalle_token_data_image_seq_len(const dalle_token_data *d) { return d ? d->I : 0; }
int dalle_token_data_max_text_id(const dalle_token_data *d) { return d ? d->max_text_id : 0; }

int64_t token_data_steps_per_epoch(const dalle_token_data *d, int batch)
{
    return batch_order_steps_per_epoch(d->n, batch);
}

/* ---- building ------------------------------------------------------------ */

/* What making a set needs besides the set: the VAE, the tokenizer, and
 * images waiting to be encoded together. */
typedef struct builder {
    dalle_token_data *d;
    dalle_ctx *vae;
    dalle_tokenizer *tok;
    const dalle_token_data_params *p;
    int size;               /* VAE image size */
    float *pixels;          /* [ENCODE_CHUNK][3][size][size] */
    int pending;            /* images in pixels not yet encoded */
    int64_t done, total;    /* for progress */
} builder;

static dalle_status builder_open(builder *b, dalle_token_data *d, const char *vae,
                                 const char *tokenizer, const dalle_token_data_params *p)
{
    memset(b, 0, sizeof *b);
    b->d = d;
    b->p = p;
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = p->n_threads;
    cp.max_batch = ENCODE_CHUNK;
    dalle_status s = dalle_ctx_create(vae, &cp, &b->vae);
    if (s)
        return s;
    if (!dalle_image_seq_len(b->vae))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: the bundle has no VAE to encode images with",
                          vae);
    if ((s = dalle_tokenizer_create(tokenizer ? tokenizer : vae, &b->tok)))
        return s;
    b->size = dalle_image_size(b->vae);
    d->I = dalle_image_seq_len(b->vae);
    d->T = p->text_seq_len;
    b->pixels = malloc(sizeof(float) * ENCODE_CHUNK * 3 * (size_t)b->size * b->size);
    if (!b->pixels)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_token_data: out of memory");
    return DALLE_OK;
}

static void builder_close(builder *b)
{
    dalle_ctx_free(b->vae);
    dalle_tokenizer_free(b->tok);
    free(b->pixels);
}

/* Encode the pending images into items done .. done + pending - 1. */
static dalle_status flush(builder *b)
{
    if (!b->pending)
        return DALLE_OK;
    dalle_status s = dalle_encode(b->vae, b->pixels, b->pending,
                                  b->d->image + b->done * (int64_t)b->d->I);
    if (s)
        return s;
    b->done += b->pending;
    b->pending = 0;
    if (b->p->progress)
        b->p->progress(b->done, b->total, b->p->user);
    if (b->p->abort && b->p->abort(b->p->user))
        return dalle_fail(DALLE_ERR_ABORTED, "dalle_token_data: stopped by the abort callback "
                          "after %lld of %lld images", (long long)b->done, (long long)b->total);
    return DALLE_OK;
}

/* Tokenize one caption of the current item; `where` names it in messages. */
static dalle_status add_caption(builder *b, const char *caption, const char *where)
{
    dalle_token_data *d = b->d;
    if (d->n_caps == d->cap_caps) {
        int64_t c = d->cap_caps ? d->cap_caps * 2 : 1024;
        int32_t *m = realloc(d->text, (size_t)c * d->T * sizeof *m);
        if (!m)
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_token_data: out of memory");
        d->text = m;
        d->cap_caps = c;
    }
    int32_t *out = d->text + d->n_caps * d->T;
    dalle_status s = dalle_tokenizer_tokenize(b->tok, caption, out, d->T, b->p->truncate);
    if (s) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", dalle_last_error());
        return dalle_fail(s, "%s: %s%s", where, msg,
                          s == DALLE_ERR_TOO_LONG ? " (raise text_seq_len or truncate)" : "");
    }
    for (int i = 0; i < d->T; i++)
        if (out[i] > d->max_text_id)
            d->max_text_id = out[i];
    d->n_caps++;
    return DALLE_OK;
}

static dalle_status alloc_items(dalle_token_data *d, int64_t n)
{
    d->n = n;
    d->image = malloc((size_t)n * d->I * sizeof *d->image);
    d->first_cap = calloc((size_t)n + 1, sizeof *d->first_cap);
    if (!d->image || !d->first_cap)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "dalle_token_data: out of memory for %lld pairs", (long long)n);
    return DALLE_OK;
}

static dalle_status check_common(const dalle_token_data_params *p, const char *vae,
                                 dalle_token_data **out, const char *fn)
{
    if (!vae || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn, vae ? "out" : "vae");
    if (p->text_seq_len < 1 || p->text_seq_len > 65536)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: text_seq_len = %d (1..65536)", fn,
                          p->text_seq_len);
    if (p->n_threads < 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: n_threads = %d (>= 0)", fn,
                          p->n_threads);
    return DALLE_OK;
}

static dalle_status fill_folder(builder *b, const char *dir)
{
    dalle_token_data *d = b->d;
    dataset *ds = NULL;
    dalle_status s = dataset_open(dir, b->size, b->p->strict ? DATASET_STRICT : 0, &ds);
    if (!s)
        s = alloc_items(d, dataset_count(ds));
    if (!s) {
        d->skipped = dataset_skipped(ds);
        b->total = d->n;
    }
    const int64_t px = 3 * (int64_t)b->size * b->size;
    for (int64_t i = 0; !s && i < d->n; i++) {
        d->first_cap[i] = d->n_caps;
        int nc = dataset_caption_count(ds, i);
        if (nc < 1) /* dataset_open never lists a pair without a caption */
            s = dalle_fail(DALLE_ERR_FORMAT, "'%s': no caption", dataset_image_path(ds, i));
        if (nc > MAX_CAPTIONS)
            nc = MAX_CAPTIONS; /* bounds the memory a huge caption file can take */
        for (int k = 0; !s && k < nc; k++) {
            char where[600];
            snprintf(where, sizeof where, "caption %d of '%s'", k + 1, dataset_image_path(ds, i));
            s = add_caption(b, dataset_caption(ds, i, k), where);
        }
        if (!s)
            s = dataset_image(ds, i, b->pixels + b->pending * px);
        if (!s && ++b->pending == ENCODE_CHUNK)
            s = flush(b);
    }
    if (!s)
        s = flush(b);
    if (d->first_cap)
        d->first_cap[d->n] = d->n_caps;
    dataset_close(ds);
    return s;
}

static dalle_status fill_synthetic(builder *b, int64_t count)
{
    dalle_token_data *d = b->d;
    const dalle_token_data_params *p = b->p;
    synth_world w = {p->world_colors, p->world_shapes, p->world_max_objects, p->world_layouts};
    if (b->size < SYNTH_MIN_SIZE || b->size > SYNTH_MAX_SIZE)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "dalle_token_data_synthetic: the VAE's images are %d pixels; the "
                          "synthetic world draws %d..%d",
                          b->size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    dalle_status s = alloc_items(d, count);
    b->total = count;
    const int64_t px = 3 * (int64_t)b->size * b->size;
    const synth_split split = p->world_heldout ? SYNTH_HELDOUT : SYNTH_TRAIN;
    char caption[SYNTH_CAPTION_CAP];
    for (int64_t i = 0; !s && i < count; i++) {
        d->first_cap[i] = d->n_caps;
        s = synth_sample(&w, p->world_seed, (uint64_t)i, split, b->size,
                         b->pixels + b->pending * px, caption, sizeof caption, NULL);
        if (!s) {
            char where[64 + SYNTH_CAPTION_CAP];
            snprintf(where, sizeof where, "synthetic item %lld \"%s\"", (long long)i, caption);
            s = add_caption(b, caption, where);
        }
        if (!s && ++b->pending == ENCODE_CHUNK)
            s = flush(b);
    }
    if (!s)
        s = flush(b);
    if (d->first_cap)
        d->first_cap[d->n] = d->n_caps;
    return s;
}

static dalle_status make(const char *vae, const char *tokenizer, const char *dir, int64_t count,
                         const dalle_token_data_params *params, dalle_token_data **out,
                         const char *fn)
{
    dalle_token_data_params p = dalle_token_data_default_params();
    dalle_status s = params_merge(params, sizeof p, sizeof p, "dalle_token_data_params", &p);
    if (s || (s = check_common(&p, vae, out, fn)))
        return s;
    dalle_token_data *d = calloc(1, sizeof *d);
    if (!d)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    batch_order_init(&d->order);
    builder b;
    s = builder_open(&b, d, vae, tokenizer, &p);
    if (!s)
        s = dir ? fill_folder(&b, dir) : fill_synthetic(&b, count);
    builder_close(&b);
    if (s) {
        dalle_token_data_free(d);
        return s;
    }
    *out = d;
    return DALLE_OK;
}

dalle_status dalle_token_data_folder(const char *vae, const char *tokenizer, const char *dir,
                                     const dalle_token_data_params *params,
                                     dalle_token_data **out)
{
    if (!dir)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_token_data_folder: dir is NULL");
    return make(vae, tokenizer, dir, 0, params, out, "dalle_token_data_folder");
}

dalle_status dalle_token_data_synthetic(const char *vae, const char *tokenizer, int64_t count,
                                        const dalle_token_data_params *params,
                                        dalle_token_data **out)
{
    if (count < 1 || count > ((int64_t)1 << 24))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "dalle_token_data_synthetic: count = %lld (1..16777216)",
                          (long long)count);
    return make(vae, tokenizer, NULL, count, params, out, "dalle_token_data_synthetic");
}

/* ---- batches --------------------------------------------------------------- */

dalle_status dalle_token_data_batch(dalle_token_data *d, uint64_t seed, int64_t step, int batch,
                                    int32_t *text, int32_t *image)
{
    if (!d || !text || !image)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_token_data_batch: %s is NULL",
                          !d ? "data" : !text ? "text" : "image");
    batch_pick pick;
    dalle_status s = batch_order_start(&d->order, d->n, seed, step, batch,
                                       "dalle_token_data_batch", "pairs", &pick);
    if (s)
        return s;
    for (int b = 0; b < batch; b++) {
        int64_t cap, item = batch_order_item(&d->order, &pick, b, d->first_cap, &cap);
        memcpy(text + (int64_t)b * d->T, d->text + cap * d->T, (size_t)d->T * sizeof *text);
        memcpy(image + (int64_t)b * d->I, d->image + item * d->I, (size_t)d->I * sizeof *image);
    }
    return DALLE_OK;
}
