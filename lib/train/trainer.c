/* The public training API (dalle_trainer_*, include/dalle/train.h) over the
 * transformer trainer (tf_train.h) and the optimiser (adamw.h).
 *
 * A trainer keeps the bundle it was built from open: the VAE's metadata and
 * tensors (vae.*) and the tokenizer's merges are copied from it into every
 * bundle it saves, so a saved model is complete — dalle_ctx_create loads it
 * and generates — and a checkpoint is all a resumed run needs. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"
#include "../params.h"
#include "../rng.h"
#include "../threadpool.h"
#include "merges_io.h"
#include "tf_train.h"
#include "token_data.h"
#include "trainer_common.h"

/* The stream of the null-caption draws: "NullCond" */
#define STREAM_NULL_COND 0x4e756c6c436f6e64ULL
#define IDS_CAP (TF_TRAIN_MAX_IDS * TF_TRAIN_ID_LEN)
/* dalle_train_params before null_cond_prob and the fields after it: a
 * caller built against that header passes this struct_size and gets the
 * new fields' defaults */
#define DALLE_TRAIN_PARAMS_V1_SIZE offsetof(dalle_train_params, null_cond_prob)

struct dalle_trainer {
    dalle_train_params p;  /* the settings in force (attn_types -> attn,
                              shared_*_ids -> attn_ids / ff_ids) */
    char attn[TF_TRAIN_MAX_TYPES * 12];
    char attn_ids[IDS_CAP], ff_ids[IDS_CAP];
    tf_train *tr;
    train_optim o;         /* AdamW, the schedule, the step counter */
    tpool *pool;
    dalle_bundle *src;     /* the VAE (and maybe tokenizer) bundle */
    uint8_t *merges;       /* the tokenizer's merges file, or NULL */
    size_t merges_size;
    int last_batch;        /* batch of the last forward (0: none yet) */
    int32_t *tbuf, *ibuf;  /* step_data's batch */
    int32_t *nbuf;         /* a step's captions after the null-caption draws */
};

void dalle_train_params_init(dalle_train_params *params, size_t struct_size)
{
    dalle_train_params p;
    memset(&p, 0, sizeof p);
    /* train_dalle.py's defaults; shift_tokens / rotary_emb as DALLE's */
    p.dim = 512;
    p.depth = 2;
    p.heads = 8;
    p.dim_head = 64;
    p.text_seq_len = 256;
    p.shift_tokens = 1;
    p.rotary_emb = 1;
    p.loss_img_weight = 7.0;
    train_optim_params o = train_optim_defaults(4);
    TRAIN_OPTIM_COPY(&p, &o);
    params_fill(params, struct_size, &p, sizeof p);
}

void dalle_train_stats_init(dalle_train_stats *stats, size_t struct_size)
{
    dalle_train_stats s;
    memset(&s, 0, sizeof s);
    params_fill(stats, struct_size, &s, sizeof s);
}

/* ---- checks ------------------------------------------------------------------ */

#define BAD(...) dalle_fail(DALLE_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static dalle_status check_shape(const dalle_train_params *p)
{
    if (p->dim < 2 || p->dim > 65536)
        return BAD("dalle_train_params.dim = %d (2..65536)", p->dim);
    if (p->depth < 1 || p->depth > 1024)
        return BAD("dalle_train_params.depth = %d (1..1024)", p->depth);
    if (p->heads < 1 || p->heads > 1024 || p->dim_head < 1 || p->dim_head > 4096)
        return BAD("dalle_train_params: heads = %d (1..1024), dim_head = %d (1..4096)", p->heads,
                   p->dim_head);
    if (p->text_seq_len < 1 || p->text_seq_len > 65536)
        return BAD("dalle_train_params.text_seq_len = %d (1..65536)", p->text_seq_len);
    if (p->num_text_tokens < 0 || p->num_text_tokens > (1 << 24))
        return BAD("dalle_train_params.num_text_tokens = %d (0..2^24)", p->num_text_tokens);
    if (!(p->loss_img_weight >= 0.0 && p->loss_img_weight <= 1e6))
        return BAD("dalle_train_params.loss_img_weight = %g (0..1e6)", p->loss_img_weight);
    if (!(p->attn_dropout >= 0.0 && p->attn_dropout < 1.0))
        return BAD("dalle_train_params.attn_dropout = %g ([0, 1))", p->attn_dropout);
    if (!(p->ff_dropout >= 0.0 && p->ff_dropout < 1.0))
        return BAD("dalle_train_params.ff_dropout = %g ([0, 1))", p->ff_dropout);
    return DALLE_OK;
}

static dalle_status check_null_cond(const dalle_train_params *p)
{
    if (!(p->null_cond_prob >= 0.0 && p->null_cond_prob <= 1.0))
        return BAD("dalle_train_params.null_cond_prob = %g (0..1)", p->null_cond_prob);
    return DALLE_OK;
}

/* "a, b,c" -> cfg's ids; the canonical spelling ("a,b,c", or NULL for
 * none) into out and *canon. */
static dalle_status parse_ids(const char *list, char ids[][TF_TRAIN_ID_LEN], int *n, char *out,
                              const char **canon, const char *what)
{
    dalle_status s = tf_train_parse_ids(list, ids, n, what);
    if (s)
        return s;
    out[0] = '\0';
    for (int i = 0; i < *n; i++) {
        size_t used = strlen(out);
        snprintf(out + used, IDS_CAP - used, "%s%s", i ? "," : "", ids[i]);
    }
    *canon = *n ? out : NULL;
    return DALLE_OK;
}

static dalle_status check_optim(const dalle_train_params *p)
{
    train_optim_params o;
    TRAIN_OPTIM_COPY(&o, p);
    return train_optim_check(&o, "dalle_train_params");
}

/* "full,axial_row" -> cfg->attn_types; the canonical spelling into out. */
static dalle_status parse_attn_types(const char *s, tf_train_config *cfg, char *out, size_t cap)
{
    static const char *const names[] = {"full", "axial_row", "axial_col", "conv_like"};
    cfg->n_attn_types = 0;
    out[0] = '\0';
    const char *p = s && *s ? s : "full";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (!len)
            break;
        int found = -1;
        for (int k = 0; k < 4; k++)
            if (strlen(names[k]) == len && !strncmp(p, names[k], len))
                found = k;
        if (found < 0 && len == 6 && !strncmp(p, "sparse", 6))
            return dalle_fail(DALLE_ERR_UNSUPPORTED,
                              "attn_types: 'sparse' (DeepSpeed) cannot be trained here; use "
                              "full, axial_row, axial_col or conv_like");
        if (found < 0)
            return BAD("attn_types: '%.*s' is not one of full, axial_row, axial_col, conv_like",
                       (int)(len > 40 ? 40 : len), p);
        if (cfg->n_attn_types == TF_TRAIN_MAX_TYPES)
            return BAD("attn_types: more than %d entries", TF_TRAIN_MAX_TYPES);
        cfg->attn_types[cfg->n_attn_types++] = (attn_type)found;
        size_t used = strlen(out);
        snprintf(out + used, cap - used, "%s%s", used ? "," : "", names[found]);
        p += len;
    }
    if (!cfg->n_attn_types)
        cfg->attn_types[cfg->n_attn_types++] = ATTN_FULL;
    return DALLE_OK;
}

static dalle_status check_stats(const dalle_train_stats *st, const char *fn)
{
    return train_check_stats(st, sizeof *st, fn, "dalle_train_default_stats");
}

/* ---- the VAE and the tokenizer --------------------------------------------------- */

/* The tokenizer at `path` (NULL: t->src's, if any): its merges, kept for
 * saving, and its vocabulary size (0 without a tokenizer). */
static dalle_status load_tokenizer(dalle_trainer *t, const char *path, const char *src_path,
                                   int *vocab)
{
    dalle_status s;
    *vocab = 0;
    if (path) {
        FILE *f = fopen(path, "rb");
        if (!f)
            return dalle_fail(DALLE_ERR_IO, "%s: cannot open the tokenizer", path);
        fclose(f);
        if ((s = merges_from_path(path, &t->merges, &t->merges_size)))
            return s;
    } else if ((s = merges_from_bundle(t->src, &t->merges, &t->merges_size))) {
        return s;
    }
    if (!t->merges) {
        if (path)
            return dalle_fail(DALLE_ERR_NOT_FOUND, "%s: no tensor 'tokenizer.bpe_merges'", path);
        return DALLE_OK;
    }
    /* through the public loader: the same checks and vocabulary as inference */
    dalle_tokenizer *tok;
    if ((s = dalle_tokenizer_create(path ? path : src_path, &tok)))
        return s;
    *vocab = dalle_tokenizer_vocab_size(tok);
    dalle_tokenizer_free(tok);
    return DALLE_OK;
}

/* Image size, tokens per image and codebook of the VAE in `path`. */
static dalle_status vae_shape(const char *path, int *image_seq_len, int *num_image_tokens)
{
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = 1;
    cp.max_batch = 1;
    dalle_ctx *ctx;
    dalle_status s = dalle_ctx_create(path, &cp, &ctx);
    if (s)
        return s;
    *image_seq_len = dalle_image_seq_len(ctx);
    *num_image_tokens = dalle_num_image_tokens(ctx);
    dalle_ctx_free(ctx);
    if (!*image_seq_len)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: the bundle has no VAE", path);
    return DALLE_OK;
}

/* ---- creating ---------------------------------------------------------------------- */

void dalle_trainer_free(dalle_trainer *t)
{
    if (!t)
        return;
    tf_train_free(t->tr);
    train_optim_free(&t->o);
    tpool_free(t->pool);
    dalle_bundle_close(t->src);
    free(t->merges);
    free(t->tbuf);
    free(t->ibuf);
    free(t->nbuf);
    free(t);
}

/* The DALLE kwargs of t->p into cfg (the attention types, the VAE's part
 * and the seed are set apart); the shared ids' canonical spelling into
 * t->p. */
static dalle_status model_config(dalle_trainer *t, tf_train_config *cfg)
{
    dalle_train_params *p = &t->p;
    dalle_status s;
    if ((s = parse_ids(p->shared_attn_ids, cfg->shared_attn_ids, &cfg->n_shared_attn,
                       t->attn_ids, &p->shared_attn_ids, "shared_attn_ids")) ||
        (s = parse_ids(p->shared_ff_ids, cfg->shared_ff_ids, &cfg->n_shared_ff, t->ff_ids,
                       &p->shared_ff_ids, "shared_ff_ids")))
        return s;
    p->stable = p->stable != 0;
    p->sandwich_norm = p->sandwich_norm != 0;
    p->reversible = p->reversible != 0;
    cfg->reversible = p->reversible;
    cfg->attn_dropout = p->attn_dropout;
    cfg->ff_dropout = p->ff_dropout;
    cfg->stable = p->stable;
    cfg->sandwich_norm = p->sandwich_norm;
    cfg->dim = p->dim;
    cfg->depth = p->depth;
    cfg->heads = p->heads;
    cfg->dim_head = p->dim_head;
    cfg->num_text_tokens = p->num_text_tokens;
    cfg->text_seq_len = p->text_seq_len;
    cfg->shift_tokens = p->shift_tokens != 0;
    cfg->rotary_emb = p->rotary_emb != 0;
    cfg->loss_img_weight = p->loss_img_weight;
    return DALLE_OK;
}

/* The model of cfg on t->src, a fresh optimiser from t->p, the pool. */
static dalle_status build(dalle_trainer *t, const tf_train_config *cfg)
{
    dalle_status s;
    train_optim_params op;
    TRAIN_OPTIM_COPY(&op, &t->p);
    if ((s = tf_train_create(cfg, t->p.batch, &t->tr)) ||
        (s = train_optim_init(&t->o, t->tr->pt.n_weights, &op)) ||
        (s = tpool_create(t->p.n_threads, &t->pool)))
        return s;
    t->tr->pool = t->pool;
    const size_t T = (size_t)cfg->text_seq_len, I = (size_t)cfg->fmap * cfg->fmap;
    t->tbuf = malloc((size_t)t->p.batch * T * sizeof *t->tbuf);
    t->ibuf = malloc((size_t)t->p.batch * I * sizeof *t->ibuf);
    t->nbuf = malloc((size_t)t->p.batch * T * sizeof *t->nbuf);
    if (!t->tbuf || !t->ibuf || !t->nbuf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_trainer: out of memory");
    return DALLE_OK;
}

static dalle_status open_source(dalle_trainer *t, const char *path, tf_train_config *cfg)
{
    int I = 0, n_img = 0;
    dalle_status s = vae_shape(path, &I, &n_img);
    if (s || (s = dalle_bundle_open(path, &t->src)))
        return s;
    int fmap = (int)lround(sqrt((double)I));
    if (fmap * fmap != I)
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: %d image tokens is not a square grid",
                          path, I);
    cfg->fmap = fmap;
    cfg->num_image_tokens = n_img;
    return DALLE_OK;
}

dalle_status dalle_trainer_create(const char *vae_bundle, const char *tokenizer,
                                  const dalle_train_params *params, dalle_trainer **out)
{
    if (!vae_bundle || !out)
        return BAD("dalle_trainer_create: %s is NULL", vae_bundle ? "out" : "vae_bundle");
    dalle_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_trainer_create: out of memory");
    dalle_train_params_init(&t->p, sizeof t->p);
    tf_train_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int vocab = 0;
    dalle_status s = params_merge(params, sizeof t->p, DALLE_TRAIN_PARAMS_V1_SIZE,
                                  "dalle_train_params", &t->p);
    if (s || (s = check_shape(&t->p)) || (s = check_optim(&t->p)) ||
        (s = check_null_cond(&t->p)) ||
        (s = parse_attn_types(t->p.attn_types, &cfg, t->attn, sizeof t->attn)) ||
        (s = open_source(t, vae_bundle, &cfg)) ||
        (s = load_tokenizer(t, tokenizer, vae_bundle, &vocab)))
        goto fail;
    t->p.attn_types = t->attn;
    if (!t->p.num_text_tokens)
        t->p.num_text_tokens = vocab;
    if (!t->p.num_text_tokens) {
        s = BAD("dalle_trainer_create: %s holds no tokenizer: give one, or set num_text_tokens",
                vae_bundle);
        goto fail;
    }
    if ((s = model_config(t, &cfg)))
        goto fail;
    cfg.seed = t->p.seed;
    if ((s = build(t, &cfg)))
        goto fail;
    *out = t;
    return DALLE_OK;
fail:
    dalle_trainer_free(t);
    return s;
}

/* ---- resuming ------------------------------------------------------------------------ */

/* The DALLE kwargs of a "dalle" bundle into t->p and cfg; refuses what
 * tf_train cannot train. */
static dalle_status read_model(dalle_trainer *t, dalle_bundle *b, tf_train_config *cfg)
{
    int64_t v[6];
    const char *keys[6] = {"dalle.dim",          "dalle.depth",   "dalle.heads",
                           "dalle.dim_head",     "dalle.text_seq_len",
                           "dalle.num_text_tokens"};
    const int64_t def[6] = {-1, -1, 8, 64, 256, 10000};
    dalle_status s;
    for (int i = 0; i < 6; i++) {
        if ((s = bundle_int(b, keys[i], def[i], &v[i])))
            return s;
        if (v[i] < 1 || v[i] > (1 << 24))
            return dalle_fail(DALLE_ERR_MISMATCH, "%s: '%s' missing or out of range",
                              bundle_path(b), keys[i]);
    }
    static const char *const refused[] = {"dalle.sparse_attn", "dalle.share_input_output_emb"};
    for (int i = 0; i < 2; i++) {
        int on = 0;
        if ((s = bundle_bool(b, refused[i], 0, &on)))
            return s;
        if (on)
            return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: %s is set: the trainer cannot train it",
                              bundle_path(b), refused[i]);
    }
    /* shared ids: string lists, joined "a,b" as the parameters spell them */
    const char *shared[2] = {"dalle.shared_attn_ids", "dalle.shared_ff_ids"};
    char *joined_ids[2] = {t->attn_ids, t->ff_ids};
    for (int i = 0; i < 2; i++) {
        const char *ids[TF_TRAIN_MAX_IDS];
        int64_t n_ids = 0;
        joined_ids[i][0] = '\0';
        s = dalle_bundle_meta_str_array(b, shared[i], ids, TF_TRAIN_MAX_IDS, &n_ids);
        if (s == DALLE_ERR_NOT_FOUND)
            continue;
        if (s || n_ids > TF_TRAIN_MAX_IDS)
            return dalle_fail(s ? DALLE_ERR_MISMATCH : DALLE_ERR_UNSUPPORTED,
                              "%s: '%s' is not a list of at most %d strings", bundle_path(b),
                              shared[i], TF_TRAIN_MAX_IDS);
        for (int64_t k = 0; k < n_ids; k++) {
            size_t used = strlen(joined_ids[i]), len = strlen(ids[k]);
            if (len >= TF_TRAIN_ID_LEN || strchr(ids[k], ',') || strchr(ids[k], ' ') || !len)
                return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: %s: the id '%.40s' cannot be "
                                  "trained here (1..%d characters, no comma or space)",
                                  bundle_path(b), shared[i], ids[k], TF_TRAIN_ID_LEN - 1);
            snprintf(joined_ids[i] + used, IDS_CAP - used, "%s%s", k ? "," : "", ids[k]);
        }
    }
    int shift = 1, rotary = 1, stable = 0, sandwich = 0, reversible = 0;
    double liw = 7.0, attn_drop = 0.0, ff_drop = 0.0;
    if ((s = bundle_bool(b, "dalle.shift_tokens", 1, &shift)) ||
        (s = bundle_bool(b, "dalle.rotary_emb", 1, &rotary)) ||
        (s = bundle_bool(b, "dalle.stable", 0, &stable)) ||
        (s = bundle_bool(b, "dalle.sandwich_norm", 0, &sandwich)) ||
        (s = bundle_bool(b, "dalle.reversible", 0, &reversible)) ||
        (s = bundle_float(b, "dalle.loss_img_weight", 7.0, &liw)) ||
        (s = bundle_float(b, "dalle.attn_dropout", 0.0, &attn_drop)) ||
        (s = bundle_float(b, "dalle.ff_dropout", 0.0, &ff_drop)))
        return s;
    const char *types[TF_TRAIN_MAX_TYPES];
    int64_t n_types = 0;
    char joined[TF_TRAIN_MAX_TYPES * 16] = "";
    if (!dalle_bundle_meta_str_array(b, "dalle.attn_types", types, TF_TRAIN_MAX_TYPES,
                                     &n_types)) {
        if (n_types > TF_TRAIN_MAX_TYPES)
            return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: more than %d attn_types",
                              bundle_path(b), TF_TRAIN_MAX_TYPES);
        for (int64_t i = 0; i < n_types; i++) {
            size_t used = strlen(joined);
            snprintf(joined + used, sizeof joined - used, "%s%.14s", i ? "," : "", types[i]);
        }
    }
    t->p.dim = (int)v[0];
    t->p.depth = (int)v[1];
    t->p.heads = (int)v[2];
    t->p.dim_head = (int)v[3];
    t->p.text_seq_len = (int)v[4];
    t->p.num_text_tokens = (int)v[5];
    t->p.shift_tokens = shift;
    t->p.rotary_emb = rotary;
    t->p.loss_img_weight = liw;
    t->p.stable = stable;
    t->p.sandwich_norm = sandwich;
    t->p.reversible = reversible;
    t->p.attn_dropout = attn_drop;
    t->p.ff_dropout = ff_drop;
    /* parse_ids rewrites the buffers it reads from: parse copies */
    char ids_copy[2][IDS_CAP];
    memcpy(ids_copy[0], t->attn_ids, IDS_CAP);
    memcpy(ids_copy[1], t->ff_ids, IDS_CAP);
    t->p.shared_attn_ids = ids_copy[0];
    t->p.shared_ff_ids = ids_copy[1];
    if ((s = check_shape(&t->p)) ||
        (s = parse_attn_types(joined, cfg, t->attn, sizeof t->attn)))
        return s;
    t->p.attn_types = t->attn;
    return model_config(t, cfg);
}

/* train.* of a checkpoint: the step and the settings adamw_save leaves out. */
static dalle_status read_train_state(dalle_trainer *t, dalle_bundle *b)
{
    train_optim_params op;
    TRAIN_OPTIM_COPY(&op, &t->p);
    dalle_status s = train_optim_read_state(&t->o, &op, b, NULL, 0);
    if (!s)
        TRAIN_OPTIM_COPY(&t->p, &op);
    /* absent in checkpoints written before null_cond_prob existed: 0 */
    double ncp = 0.0;
    if (!s && !(s = bundle_float(b, "train.null_cond_prob", 0.0, &ncp))) {
        t->p.null_cond_prob = ncp;
        if (!(ncp >= 0.0 && ncp <= 1.0))
            s = dalle_fail(DALLE_ERR_MISMATCH, "%s: train.null_cond_prob = %g (0..1)",
                           bundle_path(b), ncp);
    }
    return s;
}

/* AdamW and the schedule of a checkpoint, and the settings they hold. */
static dalle_status load_optimizer(dalle_trainer *t)
{
    train_optim_params op;
    TRAIN_OPTIM_COPY(&op, &t->p);
    dalle_status s = train_optim_load(&t->o, &op, t->src);
    if (!s)
        TRAIN_OPTIM_COPY(&t->p, &op);
    return s;
}

dalle_status dalle_trainer_resume(const char *checkpoint, const dalle_train_params *params,
                                  dalle_trainer **out)
{
    if (!checkpoint || !out)
        return BAD("dalle_trainer_resume: %s is NULL", checkpoint ? "out" : "checkpoint");
    dalle_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_trainer_resume: out of memory");
    dalle_train_params_init(&t->p, sizeof t->p);
    tf_train_config cfg;
    memset(&cfg, 0, sizeof cfg);
    int vocab = 0;
    dalle_status s = params_merge(params, sizeof t->p, DALLE_TRAIN_PARAMS_V1_SIZE,
                                  "dalle_train_params", &t->p);
    if (s || (s = check_optim(&t->p)) || (s = check_null_cond(&t->p)) ||
        (s = open_source(t, checkpoint, &cfg)))
        goto fail;
    if (strcmp(dalle_bundle_kind(t->src), "dalle")) {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: a bundle of kind '%s'; resuming needs a DALL-E "
                       "model (kind dalle)", checkpoint, dalle_bundle_kind(t->src));
        goto fail;
    }
    const int with_opt = train_optim_in_bundle(t->src);
    if ((s = read_model(t, t->src, &cfg)) ||
        (with_opt && (s = read_train_state(t, t->src))) ||
        (s = load_tokenizer(t, NULL, checkpoint, &vocab)))
        goto fail;
    cfg.seed = t->p.seed;
    if ((s = build(t, &cfg)) || (s = tf_train_load_weights(t->tr, t->src)) ||
        (with_opt && (s = load_optimizer(t))))
        goto fail;
    *out = t;
    return DALLE_OK;
fail:
    dalle_trainer_free(t);
    return s;
}

/* ---- training ------------------------------------------------------------------------- */

static dalle_status check_batch(const dalle_trainer *t, const int32_t *text,
                                const int32_t *image, int batch, int max, const char *fn)
{
    if (!t || !text || !image)
        return BAD("%s: %s is NULL", fn, !t ? "trainer" : !text ? "text" : "image");
    if (batch < 1 || batch > max)
        return BAD("%s: batch = %d (1..%d)", fn, batch, max);
    return DALLE_OK;
}

dalle_status dalle_trainer_step(dalle_trainer *t, const int32_t *text, const int32_t *image,
                                int batch, dalle_train_stats *stats)
{
    dalle_status s = check_batch(t, text, image, batch, t ? t->p.batch : 0, "dalle_trainer_step");
    if (s || (s = check_stats(stats, "dalle_trainer_step")))
        return s;
    tf_train *tr = t->tr;
    double loss = 0.0, parts[2] = {0.0, 0.0};
    const uint64_t step = (uint64_t)t->o.step;
    const double ncp = t->p.null_cond_prob;
    if (ncp > 0.0) {
        /* DALLE.forward: null_mask = prob_mask_like((batch,), p); text *=
         * ~null_mask, before the padding ids are made unique, so a nulled
         * caption is all padding in the input and in the text labels */
        const int64_t T = tr->hp.text_seq_len;
        memcpy(t->nbuf, text, (size_t)(batch * T) * sizeof *t->nbuf);
        for (int b = 0; b < batch; b++)
            if (rng_uniform(t->p.seed, STREAM_NULL_COND, step, (uint64_t)b) < ncp)
                memset(t->nbuf + b * T, 0, (size_t)T * sizeof *t->nbuf);
        text = t->nbuf;
    }
    tf_train_zero_grad(tr);
    tf_train_set_dropout(tr, 1, t->p.seed, (int64_t)step);
    s = tf_train_forward(tr, text, image, batch, &loss, parts);
    if (!s)
        tf_train_backward(tr);
    tf_train_set_dropout(tr, 0, 0, 0);
    if (s)
        return train_fail_in("dalle_trainer_step", s);
    t->last_batch = batch;
    dalle_train_stats st;
    dalle_train_stats_init(&st, sizeof st);
    st.lr = train_optim_lr(&t->o);
    st.skipped = train_optim_update(&t->o, &tr->pt, loss, t->p.clip_grad_norm, &st.grad_norm);
    st.step = t->o.step;
    st.loss = loss;
    st.loss_text = parts[0];
    st.loss_img = parts[1];
    st.tokens = (int64_t)batch * tr->hp.max_pos;
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_trainer_step_data(dalle_trainer *t, dalle_token_data *data,
                                     dalle_train_stats *stats)
{
    if (!t || !data)
        return BAD("dalle_trainer_step_data: %s is NULL", t ? "data" : "trainer");
    dalle_status s = check_stats(stats, "dalle_trainer_step_data");
    if (s)
        return s;
    if (dalle_token_data_text_seq_len(data) != t->tr->hp.text_seq_len ||
        dalle_token_data_image_seq_len(data) != t->tr->hp.image_seq_len)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "dalle_trainer_step_data: the data has %d caption and %d image tokens "
                          "per pair, the model %d and %d",
                          dalle_token_data_text_seq_len(data),
                          dalle_token_data_image_seq_len(data), t->tr->hp.text_seq_len,
                          t->tr->hp.image_seq_len);
    const int64_t spe = token_data_steps_per_epoch(data, t->p.batch);
    if (!spe)
        return BAD("dalle_trainer_step_data: %lld pairs, fewer than the batch of %d",
                   (long long)dalle_token_data_count(data), t->p.batch);
    const int64_t step = t->o.step;
    if ((s = dalle_token_data_batch(data, t->p.seed, step, t->p.batch, t->tbuf, t->ibuf)))
        return s;
    dalle_train_stats st;
    dalle_train_stats_init(&st, sizeof st);
    if ((s = dalle_trainer_step(t, t->tbuf, t->ibuf, t->p.batch, &st)))
        return s;
    st.epoch = train_optim_epoch(&t->o, step, spe, st.loss, st.skipped);
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_trainer_eval(dalle_trainer *t, const int32_t *text, const int32_t *image,
                                int batch, dalle_train_stats *stats)
{
    dalle_status s = check_batch(t, text, image, batch, 1 << 30, "dalle_trainer_eval");
    if (s || (s = check_stats(stats, "dalle_trainer_eval")))
        return s;
    const tf_hparams *hp = &t->tr->hp;
    double sum[3] = {0.0, 0.0, 0.0};
    /* chunks of at most the trainer's batch; every pair has the same token
     * counts, so the mean over pairs is the size-weighted mean of chunks */
    for (int done = 0; done < batch;) {
        int n = batch - done < t->p.batch ? batch - done : t->p.batch;
        double loss, parts[2];
        if ((s = tf_train_forward(t->tr, text + (int64_t)done * hp->text_seq_len,
                                  image + (int64_t)done * hp->image_seq_len, n, &loss, parts)))
            return train_fail_in("dalle_trainer_eval", s);
        t->last_batch = n;
        sum[0] += loss * n;
        sum[1] += parts[0] * n;
        sum[2] += parts[1] * n;
        done += n;
    }
    dalle_train_stats st;
    dalle_train_stats_init(&st, sizeof st);
    st.step = t->o.step;
    st.loss = sum[0] / batch;
    st.loss_text = sum[1] / batch;
    st.loss_img = sum[2] / batch;
    st.lr = train_optim_lr(&t->o);
    st.tokens = (int64_t)batch * hp->max_pos;
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_trainer_epoch_end(dalle_trainer *t, double loss)
{
    if (!t)
        return BAD("dalle_trainer_epoch_end: trainer is NULL");
    if (!isfinite(loss))
        return BAD("dalle_trainer_epoch_end: loss = %g is not finite", loss);
    lr_schedule_observe(&t->o.sched, loss);
    return DALLE_OK;
}

/* ---- queries ---------------------------------------------------------------------------- */

int64_t dalle_trainer_steps(const dalle_trainer *t) { return t ? t->o.step : 0; }
int64_t dalle_trainer_num_params(const dalle_trainer *t) { return t ? t->tr->pt.n_weights : 0; }
double dalle_trainer_lr(const dalle_trainer *t) { return t ? train_optim_lr(&t->o) : 0.0; }

dalle_status dalle_trainer_get_params(const dalle_trainer *t, dalle_train_params *params)
{
    return train_get_params(t != NULL, params, t ? &t->p : NULL, sizeof t->p,
                            "dalle_trainer_get_params", "dalle_train_default_params");
}

dalle_status dalle_trainer_logits(const dalle_trainer *t, float *out, size_t cap, int *batch)
{
    if (!t || !out)
        return BAD("dalle_trainer_logits: %s is NULL", t ? "out" : "trainer");
    if (!t->last_batch)
        return BAD("dalle_trainer_logits: no forward yet (take a step or evaluate first)");
    const tf_hparams *hp = &t->tr->hp;
    size_t n = (size_t)t->last_batch * hp->max_pos * hp->total_tokens;
    if (cap < n)
        return BAD("dalle_trainer_logits: cap = %zu floats, %zu needed", cap, n);
    memcpy(out, tf_train_logits(t->tr), n * sizeof *out);
    if (batch)
        *batch = t->last_batch;
    return DALLE_OK;
}

/* ---- saving -------------------------------------------------------------------------------- */

/* One metadata entry of src into w, whatever its type. */
static dalle_status copy_meta(dalle_bundle *src, int k, dalle_bundle_writer *w)
{
    const char *key;
    dalle_meta_type ty;
    int64_t n;
    dalle_status s = dalle_bundle_meta_info(src, k, &key, &ty, &n);
    if (s)
        return s;
    switch (ty) {
    case DALLE_META_I64: {
        int64_t v;
        return (s = dalle_bundle_meta_i64(src, key, &v)) ? s
                                                          : dalle_bundle_writer_set_i64(w, key, v);
    }
    case DALLE_META_BOOL: {
        int64_t v;
        return (s = dalle_bundle_meta_i64(src, key, &v))
                   ? s
                   : dalle_bundle_writer_set_bool(w, key, v != 0);
    }
    case DALLE_META_F64: {
        double v;
        return (s = dalle_bundle_meta_f64(src, key, &v)) ? s
                                                          : dalle_bundle_writer_set_f64(w, key, v);
    }
    case DALLE_META_STRING: {
        const char *v;
        return (s = dalle_bundle_meta_str(src, key, &v)) ? s
                                                          : dalle_bundle_writer_set_str(w, key, v);
    }
    default:
        break;
    }
    /* arrays */
    size_t el = ty == DALLE_META_STRING_ARRAY ? sizeof(char *) : 8;
    void *buf = malloc((size_t)(n ? n : 1) * el);
    if (!buf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_trainer_save: out of memory");
    int64_t got;
    if (ty == DALLE_META_I64_ARRAY) {
        if (!(s = dalle_bundle_meta_i64_array(src, key, buf, n, &got)))
            s = dalle_bundle_writer_set_i64_array(w, key, buf, n);
    } else if (ty == DALLE_META_F64_ARRAY) {
        if (!(s = dalle_bundle_meta_f64_array(src, key, buf, n, &got)))
            s = dalle_bundle_writer_set_f64_array(w, key, buf, n);
    } else {
        if (!(s = dalle_bundle_meta_str_array(src, key, buf, n, &got)))
            s = dalle_bundle_writer_set_str_array(w, key, (const char *const *)buf, n);
    }
    free(buf);
    return s;
}

/* vae.* metadata and tensors of t->src into w (and vae.kind, which a
 * standalone VAE bundle states as its general.kind). */
static dalle_status copy_vae(const dalle_trainer *t, dalle_bundle_writer *w)
{
    dalle_bundle *src = t->src;
    dalle_status s;
    int has_kind = 0;
    for (int k = 0; k < dalle_bundle_n_meta(src); k++) {
        const char *key;
        dalle_meta_type ty;
        int64_t n;
        if ((s = dalle_bundle_meta_info(src, k, &key, &ty, &n)))
            return s;
        if (strncmp(key, "vae.", 4))
            continue;
        has_kind |= !strcmp(key, "vae.kind");
        if ((s = copy_meta(src, k, w)))
            return s;
    }
    if (!has_kind && (s = dalle_bundle_writer_set_str(w, "vae.kind", dalle_bundle_kind(src))))
        return s;
    void *buf = NULL;
    size_t cap = 0;
    for (int i = 0; i < dalle_bundle_n_tensors(src) && !s; i++) {
        dalle_tensor_info info;
        if ((s = dalle_bundle_tensor_info(src, i, &info)))
            break;
        if (strncmp(info.name, "vae.", 4))
            continue;
        dalle_tensor_info target;
        if (info.codec == DALLE_CODEC_ALIAS && info.alias_of < i &&
            !dalle_bundle_tensor_info(src, info.alias_of, &target) &&
            !strncmp(target.name, "vae.", 4)) {
            s = dalle_bundle_writer_add_alias(w, info.name, target.name, info.ndim, info.dims,
                                              info.alias_offset);
            continue;
        }
        if (info.nbytes > cap) {
            void *m = realloc(buf, (size_t)info.nbytes);
            if (!m) {
                s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_trainer_save: out of memory");
                break;
            }
            buf = m;
            cap = (size_t)info.nbytes;
        }
        if (!(s = dalle_bundle_read_tensor(src, i, buf, cap)))
            s = dalle_bundle_writer_add_tensor(w, info.name, info.dtype, info.ndim, info.dims,
                                               buf, 3);
    }
    free(buf);
    return s;
}

dalle_status dalle_trainer_save(dalle_trainer *t, const char *path, int with_optimizer)
{
    if (!t || !path)
        return BAD("dalle_trainer_save: %s is NULL", t ? "path" : "trainer");
    dalle_bundle_writer *w;
    dalle_status s = train_writer_create("dalle", "dalle_trainer", t->o.step, &w);
    if (!s)
        s = tf_train_write(t->tr, w);
    if (!s)
        s = copy_vae(t, w);
    if (!s)
        s = train_write_merges(w, t->merges, t->merges_size);
    if (!s && with_optimizer) {
        train_optim_params op;
        TRAIN_OPTIM_COPY(&op, &t->p);
        s = train_optim_save(&t->o, &op, NULL, 0, w);
        if (!s)
            s = dalle_bundle_writer_set_f64(w, "train.null_cond_prob", t->p.null_cond_prob);
    }
    return train_writer_finish(w, s, path);
}
