/* The trainable DALLE-pytorch CLIP: its named weights, their upstream
 * initialisation, and reading / writing them as a "clip" bundle. The
 * forward and backward passes are in clip_train_pass.c. */
#include "clip_train.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"
#include "../rng.h"

#define DIM_HEAD 64 /* DALLE-pytorch Transformer's default: CLIP passes none */
#define FF_MULT 4

clip_train_config clip_train_default_config(void)
{
    clip_train_config c = {
        .dim_text = 512, .dim_image = 512, .dim_latent = 512, .num_text_tokens = 10000,
        .text_enc_depth = 6, .text_seq_len = 256, .text_heads = 8, .num_visual_tokens = 512,
        .visual_enc_depth = 6, .visual_heads = 8, .visual_image_size = 256,
        .visual_patch_size = 32, .channels = 3, .seed = 0};
    return c;
}

typedef enum init_kind { INIT_UNIFORM_FAN_IN, INIT_NORMAL, INIT_CONST } init_kind;

/* Where registration records each tensor's pointer slots, resolved once
 * the vector is allocated (as tf_train.c). */
typedef struct slot {
    float **w, **g;
    init_kind init;
    double value; /* INIT_CONST: the value; INIT_UNIFORM_FAN_IN: the fan-in */
} slot;

typedef struct builder {
    clip_train *tr;
    slot *slots;
} builder;

static void reg(builder *bd, float **wslot, float **gslot, init_kind init, double value,
                int decay, int ndim, int64_t d0, int64_t d1, int64_t d2, const char *fmt, ...)
    DALLE_PRINTF(11, 12);

static void reg(builder *bd, float **wslot, float **gslot, init_kind init, double value,
                int decay, int ndim, int64_t d0, int64_t d1, int64_t d2, const char *fmt, ...)
{
    clip_train *tr = bd->tr;
    tf_param *p = &tr->params[tr->n_params];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    const int64_t dims[3] = {d0, d1, d2};
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->dims[i] = dims[i];
        p->numel *= dims[i];
    }
    p->offset = tr->n_weights;
    p->decay = decay;
    tr->n_weights += p->numel;
    bd->slots[tr->n_params] = (slot){wslot, gslot, init, value};
    tr->n_params++;
}

/* One tower: DALLE-pytorch's Transformer(causal=False, rotary_emb=False),
 * whose state-dict paths lib/clip_dalle.c reads. */
static void register_tower(builder *bd, const char *tower, int64_t d, int depth, int heads,
                           tf_layer_ptrs *w, tf_layer_ptrs *g)
{
    const int64_t inner = (int64_t)heads * DIM_HEAD, ffi = d * FF_MULT;
    for (int l = 0; l < depth; l++) {
        tf_layer_ptrs *W = &w[l], *G = &g[l];
        /* LayerScale(dim, ind + 1, ...): init_eps from the layer's depth */
        double eps = l + 1 <= 18 ? 0.1 : l + 1 <= 24 ? 1e-5 : 1e-6;
        char pre[96];
        snprintf(pre, sizeof pre, "%s.layers.layers.%d", tower, l);
        reg(bd, &W->attn_scale, &G->attn_scale, INIT_CONST, eps, 0, 3, 1, 1, d, "%s.0.scale",
            pre);
        reg(bd, &W->attn_norm_w, &G->attn_norm_w, INIT_CONST, 1.0, 0, 1, d, 0, 0,
            "%s.0.fn.norm.weight", pre);
        reg(bd, &W->attn_norm_b, &G->attn_norm_b, INIT_CONST, 0.0, 0, 1, d, 0, 0,
            "%s.0.fn.norm.bias", pre);
        reg(bd, &W->to_qkv, &G->to_qkv, INIT_UNIFORM_FAN_IN, (double)d, 1, 2, 3 * inner, d, 0,
            "%s.0.fn.fn.fn.to_qkv.weight", pre);
        reg(bd, &W->to_out_w, &G->to_out_w, INIT_UNIFORM_FAN_IN, (double)inner, 1, 2, d, inner,
            0, "%s.0.fn.fn.fn.to_out.0.weight", pre);
        reg(bd, &W->to_out_b, &G->to_out_b, INIT_UNIFORM_FAN_IN, (double)inner, 0, 1, d, 0, 0,
            "%s.0.fn.fn.fn.to_out.0.bias", pre);
        reg(bd, &W->ff_scale, &G->ff_scale, INIT_CONST, eps, 0, 3, 1, 1, d, "%s.1.scale", pre);
        reg(bd, &W->ff_norm_w, &G->ff_norm_w, INIT_CONST, 1.0, 0, 1, d, 0, 0,
            "%s.1.fn.norm.weight", pre);
        reg(bd, &W->ff_norm_b, &G->ff_norm_b, INIT_CONST, 0.0, 0, 1, d, 0, 0,
            "%s.1.fn.norm.bias", pre);
        reg(bd, &W->ff_w1, &G->ff_w1, INIT_UNIFORM_FAN_IN, (double)d, 1, 2, 2 * ffi, d, 0,
            "%s.1.fn.fn.net.0.weight", pre);
        reg(bd, &W->ff_b1, &G->ff_b1, INIT_UNIFORM_FAN_IN, (double)d, 0, 1, 2 * ffi, 0, 0,
            "%s.1.fn.fn.net.0.bias", pre);
        reg(bd, &W->ff_w2, &G->ff_w2, INIT_UNIFORM_FAN_IN, (double)ffi, 1, 2, d, ffi, 0,
            "%s.1.fn.fn.net.3.weight", pre);
        reg(bd, &W->ff_b2, &G->ff_b2, INIT_UNIFORM_FAN_IN, (double)ffi, 0, 1, d, 0, 0,
            "%s.1.fn.fn.net.3.bias", pre);
    }
}

/* Every tensor in upstream's state-dict order: CLIP's own parameter
 * (temperature) first, then the submodules as __init__ creates them. */
static void register_all(builder *bd)
{
    clip_train *tr = bd->tr;
    const clip_train_config *c = &tr->cfg;
    clip_model_ptrs *w = &tr->pw, *g = &tr->pg;
    const int64_t dt = c->dim_text, di = c->dim_image, dl = c->dim_latent;
    /* nn.Parameter(torch.tensor(1.)): a 0-d tensor */
    reg(bd, &w->temperature, &g->temperature, INIT_CONST, 1.0, 0, 0, 0, 0, 0, "temperature");
    /* nn.Embedding: N(0, 1) */
    reg(bd, &w->text_emb, &g->text_emb, INIT_NORMAL, 0, 0, 2, c->num_text_tokens, dt, 0,
        "text_emb.weight");
    reg(bd, &w->text_pos_emb, &g->text_pos_emb, INIT_NORMAL, 0, 0, 2, c->text_seq_len, dt, 0,
        "text_pos_emb.weight");
    register_tower(bd, "text_transformer", dt, c->text_enc_depth, c->text_heads, w->text_layers,
                   g->text_layers);
    reg(bd, &w->to_text_latent, &g->to_text_latent, INIT_UNIFORM_FAN_IN, (double)dt, 1, 2, dl,
        dt, 0, "to_text_latent.weight");
    reg(bd, &w->patch_w, &g->patch_w, INIT_UNIFORM_FAN_IN, (double)tr->patch_dim, 1, 2, di,
        tr->patch_dim, 0, "to_visual_embedding.weight");
    reg(bd, &w->patch_b, &g->patch_b, INIT_UNIFORM_FAN_IN, (double)tr->patch_dim, 0, 1, di, 0,
        0, "to_visual_embedding.bias");
    reg(bd, &w->visual_pos_emb, &g->visual_pos_emb, INIT_NORMAL, 0, 0, 2, tr->n_patches, di, 0,
        "visual_pos_emb.weight");
    register_tower(bd, "visual_transformer", di, c->visual_enc_depth, c->visual_heads,
                   w->visual_layers, g->visual_layers);
    reg(bd, &w->to_visual_latent, &g->to_visual_latent, INIT_UNIFORM_FAN_IN, (double)di, 1, 2,
        dl, di, 0, "to_visual_latent.weight");
}

/* The same counter-based draws as tf_train.c: tensor `index`, element i. */
static void init_tensor(const clip_train *tr, int index, const slot *s)
{
    const tf_param *p = &tr->params[index];
    float *x = tr->w + p->offset;
    const uint64_t seed = tr->cfg.seed;
    for (int64_t i = 0; i < p->numel; i++) {
        switch (s->init) {
        case INIT_CONST:
            x[i] = (float)s->value;
            break;
        case INIT_UNIFORM_FAN_IN: {
            /* kaiming_uniform_(a=√5) and the bias rule: both U(±1/√fan_in) */
            double bound = 1.0 / sqrt(s->value);
            x[i] = (float)((2.0 * rng_uniform(seed, (uint64_t)index, (uint64_t)i, 0) - 1.0) *
                           bound);
            break;
        }
        case INIT_NORMAL: { /* Box-Muller */
            double u1 = rng_uniform(seed, (uint64_t)index, (uint64_t)i, 0);
            double u2 = rng_uniform(seed, (uint64_t)index, (uint64_t)i, 1);
            x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586477 * u2));
            break;
        }
        }
    }
}

static dalle_status check_config(const clip_train_config *c, int max_batch)
{
    if (c->dim_text < 1 || c->dim_image < 1 || c->dim_latent < 1 || c->num_text_tokens < 1 ||
        c->text_enc_depth < 1 || c->text_seq_len < 1 || c->text_heads < 1 ||
        c->visual_enc_depth < 1 || c->visual_heads < 1 || c->visual_image_size < 1 ||
        c->visual_patch_size < 1 || c->num_visual_tokens < 0 || max_batch < 1 ||
        max_batch > (1 << 16))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "clip_train: dims %d/%d/%d, text %d tokens x %d, depths %d/%d, heads "
                          "%d/%d, image %d / patch %d, batch %d: a size is out of range",
                          c->dim_text, c->dim_image, c->dim_latent, c->num_text_tokens,
                          c->text_seq_len, c->text_enc_depth, c->visual_enc_depth,
                          c->text_heads, c->visual_heads, c->visual_image_size,
                          c->visual_patch_size, max_batch);
    if (c->channels != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "clip_train: channels = %d: only RGB (3) CLIP models are supported",
                          c->channels);
    if (c->visual_image_size % c->visual_patch_size)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "clip_train: visual_image_size %d is not a multiple of "
                          "visual_patch_size %d",
                          c->visual_image_size, c->visual_patch_size);
    /* the inference side's limits (clip_dalle.c) and int-sized activations */
    const int64_t grid = c->visual_image_size / c->visual_patch_size;
    if (c->dim_text > (1 << 16) || c->dim_image > (1 << 16) || c->dim_latent > (1 << 16) ||
        c->text_enc_depth > 4096 || c->visual_enc_depth > 4096 || c->text_heads > 4096 ||
        c->visual_heads > 4096 || c->text_seq_len > (1 << 16) || grid * grid > (1 << 16) ||
        3LL * c->visual_patch_size * c->visual_patch_size > (1 << 24) ||
        (int64_t)c->num_text_tokens * c->dim_text > (1LL << 31))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_train: model too large");
    return DALLE_OK;
}

dalle_status clip_train_create(const clip_train_config *cfg, int max_batch, clip_train **out)
{
    dalle_status s;
    if (!cfg || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "clip_train_create: NULL argument");
    if ((s = check_config(cfg, max_batch)))
        return s;
    clip_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "clip_train: out of memory");
    tr->cfg = *cfg;
    tr->max_batch = max_batch;
    tr->grid = cfg->visual_image_size / cfg->visual_patch_size;
    tr->n_patches = tr->grid * tr->grid;
    tr->patch_dim = 3 * cfg->visual_patch_size * cfg->visual_patch_size;
    const int cap = 13 * (cfg->text_enc_depth + cfg->visual_enc_depth) + 16;
    builder bd = {tr, calloc((size_t)cap, sizeof(slot))};
    tr->params = calloc((size_t)cap, sizeof *tr->params);
    tr->pw.text_layers = calloc((size_t)cfg->text_enc_depth, sizeof(tf_layer_ptrs));
    tr->pg.text_layers = calloc((size_t)cfg->text_enc_depth, sizeof(tf_layer_ptrs));
    tr->pw.visual_layers = calloc((size_t)cfg->visual_enc_depth, sizeof(tf_layer_ptrs));
    tr->pg.visual_layers = calloc((size_t)cfg->visual_enc_depth, sizeof(tf_layer_ptrs));
    if (!bd.slots || !tr->params || !tr->pw.text_layers || !tr->pg.text_layers ||
        !tr->pw.visual_layers || !tr->pg.visual_layers) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "clip_train: out of memory");
        goto fail;
    }
    register_all(&bd);
    tr->w = malloc((size_t)tr->n_weights * sizeof *tr->w);
    tr->g = calloc((size_t)tr->n_weights, sizeof *tr->g);
    tr->decay = calloc((size_t)tr->n_weights, 1);
    if (!tr->w || !tr->g || !tr->decay) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "clip_train: out of memory for %lld weights",
                       (long long)tr->n_weights);
        goto fail;
    }
    for (int i = 0; i < tr->n_params; i++) {
        const tf_param *p = &tr->params[i];
        *bd.slots[i].w = tr->w + p->offset;
        *bd.slots[i].g = tr->g + p->offset;
        if (p->decay)
            memset(tr->decay + p->offset, 1, (size_t)p->numel);
        init_tensor(tr, i, &bd.slots[i]);
    }
    if ((s = clip_train_acts_create(tr)))
        goto fail;
    free(bd.slots);
    *out = tr;
    return DALLE_OK;
fail:
    free(bd.slots);
    clip_train_free(tr);
    return s;
}

void clip_train_free(clip_train *tr)
{
    if (!tr)
        return;
    clip_train_acts_free(tr);
    free(tr->params);
    free(tr->pw.text_layers);
    free(tr->pg.text_layers);
    free(tr->pw.visual_layers);
    free(tr->pg.visual_layers);
    free(tr->w);
    free(tr->g);
    free(tr->decay);
    free(tr);
}

const tf_param *clip_train_find(const clip_train *tr, const char *name)
{
    for (int i = 0; i < tr->n_params; i++)
        if (!strcmp(tr->params[i].name, name))
            return &tr->params[i];
    return NULL;
}

void clip_train_zero_grad(clip_train *tr)
{
    memset(tr->g, 0, (size_t)tr->n_weights * sizeof *tr->g);
}

/* ---- bundles ----------------------------------------------------------------- */

dalle_status clip_train_write(const clip_train *tr, dalle_bundle_writer *w)
{
    const clip_train_config *c = &tr->cfg;
    dalle_status s;
    /* every CLIP kwarg, as the converter writes them (docs/bundle-keys.md) */
    const struct {
        const char *key;
        int64_t v;
    } ints[] = {{"clip.dim_text", c->dim_text},
                {"clip.dim_image", c->dim_image},
                {"clip.dim_latent", c->dim_latent},
                {"clip.num_text_tokens", c->num_text_tokens},
                {"clip.text_enc_depth", c->text_enc_depth},
                {"clip.text_seq_len", c->text_seq_len},
                {"clip.text_heads", c->text_heads},
                {"clip.num_visual_tokens", c->num_visual_tokens},
                {"clip.visual_enc_depth", c->visual_enc_depth},
                {"clip.visual_heads", c->visual_heads},
                {"clip.visual_image_size", c->visual_image_size},
                {"clip.visual_patch_size", c->visual_patch_size},
                {"clip.channels", c->channels}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if ((s = dalle_bundle_writer_set_i64(w, ints[i].key, ints[i].v)))
            return s;
    for (int i = 0; i < tr->n_params; i++) {
        const tf_param *p = &tr->params[i];
        if ((s = dalle_bundle_writer_add_tensor(w, p->name, DALLE_DTYPE_F32, p->ndim, p->dims,
                                                tr->w + p->offset, 3)))
            return s;
    }
    return DALLE_OK;
}

dalle_status clip_train_load_weights(clip_train *tr, dalle_bundle *b)
{
    /* check every tensor first, then copy: a failure changes nothing */
    const float **src = calloc((size_t)tr->n_params, sizeof *src);
    if (!src)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "clip_train: out of memory");
    dalle_status s = DALLE_OK;
    for (int i = 0; i < tr->n_params && !s; i++)
        s = bundle_tensor_f32(b, tr->params[i].name, tr->params[i].ndim, tr->params[i].dims,
                              &src[i]);
    for (int i = 0; i < tr->n_params && !s; i++)
        memcpy(tr->w + tr->params[i].offset, src[i],
               (size_t)tr->params[i].numel * sizeof(float));
    free(src);
    return s;
}
