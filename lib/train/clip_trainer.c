/* The public CLIP training API (dalle_clip_trainer_*, include/dalle/train.h)
 * over the CLIP trainer (clip_train.h) and the optimiser (adamw.h).
 *
 * The trainer keeps the tokenizer's merges and writes them into every
 * bundle it saves: a trained CLIP then tokenizes its own captions, which is
 * what `dalle generate --clip` and `dalle score` expect of a CLIP bundle. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"
#include "../params.h"
#include "../threadpool.h"
#include "clip_train.h"
#include "image_data.h"
#include "merges_io.h"
#include "trainer_common.h"

struct dalle_clip_trainer {
    dalle_clip_train_params p; /* the settings in force */
    clip_train *tr;
    train_optim o;             /* AdamW, the schedule, the step counter */
    tpool *pool;
    dalle_tokenizer *tok;      /* NULL without a tokenizer */
    uint8_t *merges;           /* its merges file, written into saved bundles */
    size_t merges_size;
    int last_batch;            /* batch of the last forward (0: none yet) */
    int32_t *tbuf;             /* [batch][T] step_data's captions */
    uint8_t *mbuf;             /* [batch][T] the mask handed to the forward */
    float *ibuf;               /* [batch][3][size][size] step_data's images */
    int64_t *cbuf;             /* [batch] caption numbers */
    /* the captions of the last data set step_data saw, tokenized once */
    uint64_t cache_serial;
    int32_t *cache;            /* [captions][T] */
};

void dalle_clip_train_params_init(dalle_clip_train_params *params, size_t struct_size)
{
    dalle_clip_train_params p;
    memset(&p, 0, sizeof p);
    /* CLIP()'s defaults (dalle_pytorch.CLIP) */
    p.dim_text = p.dim_image = p.dim_latent = 512;
    p.text_enc_depth = p.visual_enc_depth = 6;
    p.text_heads = p.visual_heads = 8;
    p.text_seq_len = 256;
    p.visual_image_size = 256;
    p.visual_patch_size = 32;
    /* the optimiser of train_dalle.py (upstream has no CLIP training script) */
    train_optim_params o = train_optim_defaults(8);
    TRAIN_OPTIM_COPY(&p, &o);
    params_fill(params, struct_size, &p, sizeof p);
}

void dalle_clip_train_stats_init(dalle_clip_train_stats *stats, size_t struct_size)
{
    dalle_clip_train_stats s;
    memset(&s, 0, sizeof s);
    params_fill(stats, struct_size, &s, sizeof s);
}

/* ---- checks ------------------------------------------------------------------ */

#define BAD(...) dalle_fail(DALLE_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static dalle_status check_shape(const dalle_clip_train_params *p)
{
    const struct {
        const char *name;
        int v, lo, hi;
    } f[] = {{"dim_text", p->dim_text, 1, 65536},
             {"dim_image", p->dim_image, 1, 65536},
             {"dim_latent", p->dim_latent, 1, 65536},
             {"text_enc_depth", p->text_enc_depth, 1, 4096},
             {"visual_enc_depth", p->visual_enc_depth, 1, 4096},
             {"text_heads", p->text_heads, 1, 4096},
             {"visual_heads", p->visual_heads, 1, 4096},
             {"text_seq_len", p->text_seq_len, 1, 65536},
             {"num_text_tokens", p->num_text_tokens, 0, 1 << 24},
             {"visual_image_size", p->visual_image_size, 1, 4096},
             {"visual_patch_size", p->visual_patch_size, 1, 4096}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].hi)
            return BAD("dalle_clip_train_params.%s = %d (%d..%d)", f[i].name, f[i].v, f[i].lo,
                       f[i].hi);
    if (p->visual_image_size % p->visual_patch_size)
        return BAD("dalle_clip_train_params: visual_image_size %d is not a multiple of "
                   "visual_patch_size %d",
                   p->visual_image_size, p->visual_patch_size);
    return DALLE_OK;
}

static dalle_status check_optim(const dalle_clip_train_params *p)
{
    train_optim_params o;
    TRAIN_OPTIM_COPY(&o, p);
    return train_optim_check(&o, "dalle_clip_train_params");
}

static dalle_status check_stats(const dalle_clip_train_stats *st, const char *fn)
{
    return train_check_stats(st, sizeof *st, fn, "dalle_clip_train_default_stats");
}

/* ---- the tokenizer ------------------------------------------------------------- */

/* The tokenizer at `path` (a bundle or a merges .txt): opened for
 * step_data, its merges kept for saving, its vocabulary size in *vocab.
 * `required`: a bundle without merges is an error (else: no tokenizer). */
static dalle_status load_tokenizer(dalle_clip_trainer *t, const char *path, int required,
                                   int *vocab)
{
    *vocab = 0;
    dalle_status s;
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "%s: cannot open the tokenizer", path);
    fclose(f);
    s = merges_from_path(path, &t->merges, &t->merges_size);
    if (s)
        return s;
    if (!t->merges)
        return required ? dalle_fail(DALLE_ERR_NOT_FOUND,
                                     "%s: no tensor 'tokenizer.bpe_merges'", path)
                        : DALLE_OK;
    /* through the public loader: the same checks and vocabulary as inference */
    if ((s = dalle_tokenizer_create(path, &t->tok)))
        return s;
    *vocab = dalle_tokenizer_vocab_size(t->tok);
    return DALLE_OK;
}

/* ---- creating -------------------------------------------------------------------- */

void dalle_clip_trainer_free(dalle_clip_trainer *t)
{
    if (!t)
        return;
    clip_train_free(t->tr);
    train_optim_free(&t->o);
    tpool_free(t->pool);
    dalle_tokenizer_free(t->tok);
    free(t->merges);
    free(t->tbuf);
    free(t->mbuf);
    free(t->ibuf);
    free(t->cbuf);
    free(t->cache);
    free(t);
}

/* The model of t->p, a fresh optimiser, the pool and the step buffers. */
static dalle_status build(dalle_clip_trainer *t)
{
    const dalle_clip_train_params *p = &t->p;
    clip_train_config c = clip_train_default_config();
    c.dim_text = p->dim_text;
    c.dim_image = p->dim_image;
    c.dim_latent = p->dim_latent;
    c.num_text_tokens = p->num_text_tokens;
    c.text_enc_depth = p->text_enc_depth;
    c.text_seq_len = p->text_seq_len;
    c.text_heads = p->text_heads;
    c.visual_enc_depth = p->visual_enc_depth;
    c.visual_heads = p->visual_heads;
    c.visual_image_size = p->visual_image_size;
    c.visual_patch_size = p->visual_patch_size;
    c.seed = p->seed;
    train_optim_params op;
    TRAIN_OPTIM_COPY(&op, p);
    dalle_status s;
    if ((s = clip_train_create(&c, p->batch, &t->tr)) ||
        (s = train_optim_init(&t->o, t->tr->pt.n_weights, &op)) ||
        (s = tpool_create(p->n_threads, &t->pool)))
        return s;
    t->tr->pool = t->pool;
    const size_t B = (size_t)p->batch, T = (size_t)p->text_seq_len,
                 px = (size_t)3 * p->visual_image_size * p->visual_image_size;
    t->tbuf = malloc(B * T * sizeof *t->tbuf);
    t->mbuf = malloc(B * T);
    t->ibuf = malloc(B * px * sizeof *t->ibuf);
    t->cbuf = malloc(B * sizeof *t->cbuf);
    if (!t->tbuf || !t->mbuf || !t->ibuf || !t->cbuf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_clip_trainer: out of memory");
    return DALLE_OK;
}

dalle_status dalle_clip_trainer_create(const char *tokenizer,
                                       const dalle_clip_train_params *params,
                                       dalle_clip_trainer **out)
{
    if (!out)
        return BAD("dalle_clip_trainer_create: out is NULL");
    dalle_clip_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_clip_trainer_create: out of memory");
    dalle_clip_train_params_init(&t->p, sizeof t->p);
    int vocab = 0;
    dalle_status s =
        params_merge(params, sizeof t->p, sizeof t->p, "dalle_clip_train_params", &t->p);
    if (s || (s = check_shape(&t->p)) || (s = check_optim(&t->p)) ||
        (tokenizer && (s = load_tokenizer(t, tokenizer, 1, &vocab))))
        goto fail;
    if (!t->p.num_text_tokens)
        t->p.num_text_tokens = vocab;
    if (!t->p.num_text_tokens) {
        s = BAD("dalle_clip_trainer_create: no tokenizer: give one, or set num_text_tokens");
        goto fail;
    }
    if ((s = build(t)))
        goto fail;
    *out = t;
    return DALLE_OK;
fail:
    dalle_clip_trainer_free(t);
    return s;
}

/* ---- resuming ------------------------------------------------------------------------ */

/* clip.* of a bundle into t->p. */
static dalle_status read_model(dalle_clip_trainer *t, dalle_bundle *b)
{
    const char *keys[11] = {"clip.dim_text",         "clip.dim_image",
                            "clip.dim_latent",       "clip.text_enc_depth",
                            "clip.visual_enc_depth", "clip.text_heads",
                            "clip.visual_heads",     "clip.text_seq_len",
                            "clip.num_text_tokens",  "clip.visual_image_size",
                            "clip.visual_patch_size"};
    int *dst[11] = {&t->p.dim_text,       &t->p.dim_image,         &t->p.dim_latent,
                    &t->p.text_enc_depth, &t->p.visual_enc_depth,  &t->p.text_heads,
                    &t->p.visual_heads,   &t->p.text_seq_len,      &t->p.num_text_tokens,
                    &t->p.visual_image_size, &t->p.visual_patch_size};
    /* the keys upstream's CLIP() leaves at their defaults may be absent */
    const int64_t def[11] = {512, 512, 512, 6, 6, 8, 8, 256, 10000, 256, 32};
    for (int i = 0; i < 11; i++) {
        int64_t v;
        dalle_status s = bundle_int(b, keys[i], def[i], &v);
        if (s)
            return s;
        if (v < 1 || v > (1 << 24))
            return dalle_fail(DALLE_ERR_MISMATCH, "%s: '%s' = %lld is out of range",
                              bundle_path(b), keys[i], (long long)v);
        *dst[i] = (int)v;
    }
    int64_t ch = 3;
    dalle_status s = bundle_int(b, "clip.channels", 3, &ch);
    if (s)
        return s;
    if (ch != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: clip.channels = %lld: only RGB (3)",
                          bundle_path(b), (long long)ch);
    if ((s = check_shape(&t->p)))
        return train_fail_in(bundle_path(b), DALLE_ERR_MISMATCH);
    return DALLE_OK;
}

/* train.* of a checkpoint: the step and the settings adamw_save leaves out. */
static dalle_status read_train_state(dalle_clip_trainer *t, dalle_bundle *b)
{
    train_optim_params op;
    train_state_extra extra[2] = {{"train.clip.truncate", 0}, {"train.clip.mask_padding", 0}};
    TRAIN_OPTIM_COPY(&op, &t->p);
    dalle_status s = train_optim_read_state(&t->o, &op, b, extra, 2);
    if (s)
        return s;
    TRAIN_OPTIM_COPY(&t->p, &op);
    t->p.truncate = extra[0].value != 0;
    t->p.mask_padding = extra[1].value != 0;
    return DALLE_OK;
}

/* AdamW and the schedule of a checkpoint, and the settings they hold. */
static dalle_status load_optimizer(dalle_clip_trainer *t, dalle_bundle *b)
{
    train_optim_params op;
    TRAIN_OPTIM_COPY(&op, &t->p);
    dalle_status s = train_optim_load(&t->o, &op, b);
    if (!s)
        TRAIN_OPTIM_COPY(&t->p, &op);
    return s;
}

dalle_status dalle_clip_trainer_resume(const char *checkpoint,
                                       const dalle_clip_train_params *params,
                                       dalle_clip_trainer **out)
{
    if (!checkpoint || !out)
        return BAD("dalle_clip_trainer_resume: %s is NULL", checkpoint ? "out" : "checkpoint");
    dalle_clip_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_clip_trainer_resume: out of memory");
    dalle_clip_train_params_init(&t->p, sizeof t->p);
    dalle_bundle *b = NULL;
    int vocab = 0;
    dalle_status s =
        params_merge(params, sizeof t->p, sizeof t->p, "dalle_clip_train_params", &t->p);
    if (s || (s = check_optim(&t->p)) || (s = dalle_bundle_open(checkpoint, &b)))
        goto fail;
    if (strcmp(dalle_bundle_kind(b), "clip")) {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: a bundle of kind '%s'; resuming needs a "
                       "DALLE-pytorch CLIP (kind clip)", checkpoint, dalle_bundle_kind(b));
        goto fail;
    }
    const int with_opt = train_optim_in_bundle(b);
    if ((s = read_model(t, b)) || (with_opt && (s = read_train_state(t, b))) ||
        (s = load_tokenizer(t, checkpoint, 0, &vocab)) || (s = build(t)) ||
        (s = clip_train_load_weights(t->tr, b)) || (with_opt && (s = load_optimizer(t, b))))
        goto fail;
    dalle_bundle_close(b);
    *out = t;
    return DALLE_OK;
fail:
    dalle_bundle_close(b);
    dalle_clip_trainer_free(t);
    return s;
}

/* ---- training ------------------------------------------------------------------------- */

/* The mask the forward gets: the caller's, or all ones (text_mask=None,
 * as clip_score), or NULL (text != 0) as params say. */
static const uint8_t *mask_for(dalle_clip_trainer *t, const uint8_t *text_mask, int batch)
{
    if (text_mask || t->p.mask_padding)
        return text_mask;
    memset(t->mbuf, 1, (size_t)batch * t->p.text_seq_len);
    return t->mbuf;
}

/* Rows of sim and of simᵀ whose largest entry is on the diagonal, over 2·batch. */
static double accuracy(const float *sim, int batch)
{
    int64_t right = 0;
    for (int i = 0; i < batch; i++) {
        int br = 0, bc = 0;
        for (int j = 1; j < batch; j++) {
            if (sim[(int64_t)i * batch + j] > sim[(int64_t)i * batch + br])
                br = j;
            if (sim[(int64_t)j * batch + i] > sim[(int64_t)bc * batch + i])
                bc = j;
        }
        right += (br == i) + (bc == i);
    }
    return (double)right / (2.0 * batch);
}

static dalle_status forward(dalle_clip_trainer *t, const int32_t *text,
                            const uint8_t *text_mask, const float *images, int batch,
                            dalle_clip_train_stats *stats, const char *fn, double *loss)
{
    if (!t || !text || !images)
        return BAD("%s: %s is NULL", fn, !t ? "trainer" : !text ? "text" : "images");
    if (batch < 1 || batch > t->p.batch)
        return BAD("%s: batch = %d (1..%d)", fn, batch, t->p.batch);
    dalle_status s;
    const float scale = expf(t->tr->pw.temperature[0]);
    if ((s = clip_train_forward(t->tr, text, mask_for(t, text_mask, batch), images, batch,
                                loss)))
        return train_fail_in(fn, s);
    t->last_batch = batch;
    dalle_clip_train_stats_init(stats, sizeof *stats);
    stats->loss = *loss;
    stats->scale = scale;
    stats->accuracy = accuracy(clip_train_sim(t->tr), batch);
    stats->lr = train_optim_lr(&t->o);
    return DALLE_OK;
}

dalle_status dalle_clip_trainer_step(dalle_clip_trainer *t, const int32_t *text,
                                     const uint8_t *text_mask, const float *images, int batch,
                                     dalle_clip_train_stats *stats)
{
    dalle_clip_train_stats st;
    double loss = 0.0;
    dalle_status s = check_stats(stats, "dalle_clip_trainer_step");
    if (s)
        return s;
    if (t)
        clip_train_zero_grad(t->tr);
    if ((s = forward(t, text, text_mask, images, batch, &st, "dalle_clip_trainer_step", &loss)))
        return s;
    clip_train_backward(t->tr);
    st.skipped = train_optim_update(&t->o, &t->tr->pt, loss, t->p.clip_grad_norm, &st.grad_norm);
    st.step = t->o.step;
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

/* Tokenize every caption of d once (the cache keyed by the set's serial). */
static dalle_status tokenize_all(dalle_clip_trainer *t, dalle_image_data *d)
{
    if (t->cache && t->cache_serial == image_data_serial(d))
        return DALLE_OK;
    free(t->cache);
    t->cache = NULL;
    const int64_t n = image_data_n_captions(d), T = t->p.text_seq_len;
    int32_t *c = malloc((size_t)(n ? n : 1) * T * sizeof *c);
    if (!c)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_clip_trainer_step_data: out of memory");
    for (int64_t k = 0; k < n; k++) {
        const char *text = image_data_caption_at(d, k);
        int32_t *ids = c + k * T;
        dalle_status s = dalle_tokenizer_tokenize(t->tok, text, ids, (int)T, t->p.truncate);
        int bad = -1;
        for (int64_t i = 0; !s && i < T && bad < 0; i++)
            if (ids[i] >= t->p.num_text_tokens)
                bad = ids[i];
        if (s || bad >= 0) {
            char msg[512];
            snprintf(msg, sizeof msg, "%s", s ? dalle_last_error() : "");
            free(c);
            if (s)
                return dalle_fail(s, "caption \"%.200s\": %s", text, msg);
            return dalle_fail(DALLE_ERR_MISMATCH,
                              "caption \"%.200s\": token id %d, but the model has %d text "
                              "tokens",
                              text, bad, t->p.num_text_tokens);
        }
    }
    t->cache = c;
    t->cache_serial = image_data_serial(d);
    return DALLE_OK;
}

dalle_status dalle_clip_trainer_step_data(dalle_clip_trainer *t, dalle_image_data *data,
                                          dalle_clip_train_stats *stats)
{
    if (!t || !data)
        return BAD("dalle_clip_trainer_step_data: %s is NULL", t ? "data" : "trainer");
    dalle_status s = check_stats(stats, "dalle_clip_trainer_step_data");
    if (s)
        return s;
    if (!t->tok)
        return BAD("dalle_clip_trainer_step_data: the trainer has no tokenizer for captions");
    if (dalle_image_data_image_size(data) != t->p.visual_image_size)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "dalle_clip_trainer_step_data: the images are %d px, the model "
                          "takes %d",
                          dalle_image_data_image_size(data), t->p.visual_image_size);
    const int64_t spe = image_data_steps_per_epoch(data, t->p.batch);
    if (!spe)
        return BAD("dalle_clip_trainer_step_data: %lld images, fewer than the batch of %d",
                   (long long)dalle_image_data_count(data), t->p.batch);
    if ((s = tokenize_all(t, data)))
        return s;
    const int64_t step = t->o.step, T = t->p.text_seq_len;
    if ((s = image_data_batch(data, t->p.seed, step, t->p.batch, t->ibuf, t->cbuf, NULL)))
        return s;
    for (int b = 0; b < t->p.batch; b++)
        memcpy(t->tbuf + b * T, t->cache + t->cbuf[b] * T, (size_t)T * sizeof *t->tbuf);
    dalle_clip_train_stats st;
    dalle_clip_train_stats_init(&st, sizeof st);
    if ((s = dalle_clip_trainer_step(t, t->tbuf, NULL, t->ibuf, t->p.batch, &st)))
        return s;
    st.epoch = train_optim_epoch(&t->o, step, spe, st.loss, st.skipped);
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_clip_trainer_eval(dalle_clip_trainer *t, const int32_t *text,
                                     const uint8_t *text_mask, const float *images, int batch,
                                     dalle_clip_train_stats *stats)
{
    dalle_clip_train_stats st;
    double loss;
    dalle_status s = check_stats(stats, "dalle_clip_trainer_eval");
    if (s || (s = forward(t, text, text_mask, images, batch, &st, "dalle_clip_trainer_eval",
                          &loss)))
        return s;
    st.step = t->o.step;
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_clip_trainer_sim(const dalle_clip_trainer *t, float *out, size_t cap,
                                    int *batch)
{
    if (!t || !out)
        return BAD("dalle_clip_trainer_sim: %s is NULL", t ? "out" : "trainer");
    if (!t->last_batch)
        return BAD("dalle_clip_trainer_sim: no forward yet (take a step or evaluate first)");
    size_t n = (size_t)t->last_batch * t->last_batch;
    if (cap < n)
        return BAD("dalle_clip_trainer_sim: cap = %zu floats, %zu needed", cap, n);
    memcpy(out, clip_train_sim(t->tr), n * sizeof *out);
    if (batch)
        *batch = t->last_batch;
    return DALLE_OK;
}

/* ---- queries and saving ---------------------------------------------------------------- */

int64_t dalle_clip_trainer_steps(const dalle_clip_trainer *t) { return t ? t->o.step : 0; }
int64_t dalle_clip_trainer_num_params(const dalle_clip_trainer *t)
{
    return t ? t->tr->pt.n_weights : 0;
}

dalle_status dalle_clip_trainer_get_params(const dalle_clip_trainer *t,
                                           dalle_clip_train_params *params)
{
    return train_get_params(t != NULL, params, t ? &t->p : NULL, sizeof t->p,
                            "dalle_clip_trainer_get_params", "dalle_clip_train_default_params");
}

dalle_status dalle_clip_trainer_save(dalle_clip_trainer *t, const char *path, int with_optimizer)
{
    if (!t || !path)
        return BAD("dalle_clip_trainer_save: %s is NULL", t ? "path" : "trainer");
    dalle_bundle_writer *w;
    dalle_status s = train_writer_create("clip", "dalle_clip_trainer", t->o.step, &w);
    if (!s)
        s = clip_train_write(t->tr, w);
    if (!s)
        s = train_write_merges(w, t->merges, t->merges_size);
    if (!s && with_optimizer) {
        train_optim_params op;
        const train_state_extra extra[2] = {{"train.clip.truncate", t->p.truncate != 0},
                                            {"train.clip.mask_padding", t->p.mask_padding != 0}};
        TRAIN_OPTIM_COPY(&op, &t->p);
        s = train_optim_save(&t->o, &op, extra, 2, w);
    }
    return train_writer_finish(w, s, path);
}
