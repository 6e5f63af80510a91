/* The trainable DALL·E transformer: its named weights, their upstream
 * initialisation, and reading / writing them as bundle tensors. The
 * forward and backward passes are in tf_train_pass.c. */
#include "tf_train.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"
#include "../rng.h"

typedef enum init_kind { INIT_UNIFORM_FAN_IN, INIT_NORMAL, INIT_CONST } init_kind;

/* Where registration records each tensor's pointer slots, resolved once
 * the vector is allocated. */
typedef struct slot {
    float **w, **g;
    init_kind init;
    double value; /* INIT_CONST: the value; INIT_UNIFORM_FAN_IN: the fan-in */
} slot;

typedef struct builder {
    tf_train *tr;
    slot *slots;
    int cap;
} builder;

static void reg(builder *bd, float **wslot, float **gslot, init_kind init, double value,
                int decay, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, ...) DALLE_PRINTF(12, 13);

static void reg(builder *bd, float **wslot, float **gslot, init_kind init, double value,
                int decay, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, ...)
{
    tf_train *tr = bd->tr;
    tf_param *p = &tr->params[tr->n_params];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    int64_t dims[4] = {d0, d1, d2, d3};
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

/* The tensors in the order (and with the names) of the bundle. */
static void register_all(builder *bd)
{
    tf_train *tr = bd->tr;
    const tf_hparams *hp = &tr->hp;
    const int64_t d = hp->dim, inner = hp->inner, ffi = hp->ff_inner;
    /* PreNorm.fn wraps as in lib/transformer_load.c */
    const char *attn_path = hp->shift_tokens ? "fn.fn.fn.fn.fn" : "fn.fn.fn";
    const char *ff_path = hp->shift_tokens ? "fn.fn.fn.fn.net" : "fn.fn.net";
    for (int l = 0; l < hp->depth; l++) {
        tf_layer_ptrs *w = &tr->pw.layers[l], *g = &tr->pg.layers[l];
        /* LayerScale(dim, ind + 1, ...): init_eps from the layer's depth */
        double eps = l + 1 <= 18 ? 0.1 : l + 1 <= 24 ? 1e-5 : 1e-6;
        const char *pre = "transformer.layers.layers";
        reg(bd, &w->attn_scale, &g->attn_scale, INIT_CONST, eps, 0, 3, 1, 1, d, 0, "%s.%d.0.scale",
            pre, l);
        reg(bd, &w->attn_norm_w, &g->attn_norm_w, INIT_CONST, 1.0, 0, 1, d, 0, 0, 0,
            "%s.%d.0.fn.norm.weight", pre, l);
        reg(bd, &w->attn_norm_b, &g->attn_norm_b, INIT_CONST, 0.0, 0, 1, d, 0, 0, 0,
            "%s.%d.0.fn.norm.bias", pre, l);
        reg(bd, &w->to_qkv, &g->to_qkv, INIT_UNIFORM_FAN_IN, (double)d, 1, 2, 3 * inner, d, 0, 0,
            "%s.%d.0.%s.to_qkv.weight", pre, l, attn_path);
        reg(bd, &w->to_out_w, &g->to_out_w, INIT_UNIFORM_FAN_IN, (double)inner, 1, 2, d, inner,
            0, 0, "%s.%d.0.%s.to_out.0.weight", pre, l, attn_path);
        reg(bd, &w->to_out_b, &g->to_out_b, INIT_UNIFORM_FAN_IN, (double)inner, 0, 1, d, 0, 0, 0,
            "%s.%d.0.%s.to_out.0.bias", pre, l, attn_path);
        reg(bd, &w->ff_scale, &g->ff_scale, INIT_CONST, eps, 0, 3, 1, 1, d, 0, "%s.%d.1.scale",
            pre, l);
        reg(bd, &w->ff_norm_w, &g->ff_norm_w, INIT_CONST, 1.0, 0, 1, d, 0, 0, 0,
            "%s.%d.1.fn.norm.weight", pre, l);
        reg(bd, &w->ff_norm_b, &g->ff_norm_b, INIT_CONST, 0.0, 0, 1, d, 0, 0, 0,
            "%s.%d.1.fn.norm.bias", pre, l);
        reg(bd, &w->ff_w1, &g->ff_w1, INIT_UNIFORM_FAN_IN, (double)d, 1, 2, 2 * ffi, d, 0, 0,
            "%s.%d.1.%s.0.weight", pre, l, ff_path);
        reg(bd, &w->ff_b1, &g->ff_b1, INIT_UNIFORM_FAN_IN, (double)d, 0, 1, 2 * ffi, 0, 0, 0,
            "%s.%d.1.%s.0.bias", pre, l, ff_path);
        reg(bd, &w->ff_w2, &g->ff_w2, INIT_UNIFORM_FAN_IN, (double)ffi, 1, 2, d, ffi, 0, 0,
            "%s.%d.1.%s.3.weight", pre, l, ff_path);
        reg(bd, &w->ff_b2, &g->ff_b2, INIT_UNIFORM_FAN_IN, (double)ffi, 0, 1, d, 0, 0, 0,
            "%s.%d.1.%s.3.bias", pre, l, ff_path);
    }
    tf_model_ptrs *w = &tr->pw, *g = &tr->pg;
    /* nn.Embedding: N(0, 1) */
    reg(bd, &w->text_emb, &g->text_emb, INIT_NORMAL, 0, 0, 2, hp->text_vocab, d, 0, 0,
        "text_emb.weight");
    reg(bd, &w->image_emb, &g->image_emb, INIT_NORMAL, 0, 0, 2, hp->num_image_tokens, d, 0, 0,
        "image_emb.weight");
    if (!hp->rotary_emb) {
        reg(bd, &w->text_pos_emb, &g->text_pos_emb, INIT_NORMAL, 0, 0, 2, hp->text_len, d, 0, 0,
            "text_pos_emb.weight");
        /* AxialPositionalEmbedding: zeros(...).normal_(0, 1) */
        reg(bd, &w->axial_rows, &g->axial_rows, INIT_NORMAL, 0, 0, 4, 1, hp->fmap, 1, d,
            "image_pos_emb.weights_0");
        reg(bd, &w->axial_cols, &g->axial_cols, INIT_NORMAL, 0, 0, 4, 1, 1, hp->fmap, d,
            "image_pos_emb.weights_1");
    }
    reg(bd, &w->norm_w, &g->norm_w, INIT_CONST, 1.0, 0, 1, d, 0, 0, 0, "to_logits.0.weight");
    reg(bd, &w->norm_b, &g->norm_b, INIT_CONST, 0.0, 0, 1, d, 0, 0, 0, "to_logits.0.bias");
    reg(bd, &w->logits_w, &g->logits_w, INIT_UNIFORM_FAN_IN, (double)d, 1, 2, hp->total_tokens,
        d, 0, 0, "to_logits.1.weight");
    reg(bd, &w->logits_b, &g->logits_b, INIT_UNIFORM_FAN_IN, (double)d, 0, 1, hp->total_tokens,
        0, 0, 0, "to_logits.1.bias");
}

static void init_tensor(const tf_train *tr, int index, const slot *s)
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
            /* nn.Linear: kaiming_uniform_(a=√5) for the weight and
             * U(±1/√fan_in) for the bias: both U(±1/√fan_in) */
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

static dalle_status check_config(const tf_train_config *c, int max_batch)
{
    if (c->dim < 2 || c->depth < 1 || c->heads < 1 || c->dim_head < 1 ||
        c->num_text_tokens < 1 || c->text_seq_len < 1 || c->num_image_tokens < 1 ||
        c->fmap < 1 || c->n_attn_types < 0 || c->n_attn_types > TF_TRAIN_MAX_TYPES ||
        max_batch < 1 || !(c->loss_img_weight >= 0.0))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "tf_train: dim %d, depth %d, heads %d, dim_head %d, text %d/%d, image "
                          "%d/%d, %d attn types, batch %d: a size is out of range",
                          c->dim, c->depth, c->heads, c->dim_head, c->num_text_tokens,
                          c->text_seq_len, c->num_image_tokens, c->fmap, c->n_attn_types,
                          max_batch);
    if ((int64_t)c->dim * 8 > (1 << 24) || (int64_t)c->heads * c->dim_head > (1 << 20) ||
        (int64_t)c->fmap * c->fmap + c->text_seq_len > (1 << 20) ||
        (int64_t)c->num_text_tokens + c->text_seq_len + c->num_image_tokens > (1 << 28))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "tf_train: model too large");
    if (c->rotary_emb && c->dim_head / 3 == 2)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "tf_train: dim_head = %d: upstream's rotary embedding cannot be built "
                          "for dim_head // 3 == 2",
                          c->dim_head);
    if (c->rotary_emb && (c->dim_head / 3) / 2 > 4096)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "tf_train: dim_head too large");
    return DALLE_OK;
}

/* The hyper-parameters exactly as transformer_load derives them. */
static void derive_hparams(const tf_train_config *c, tf_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->dim = c->dim;
    hp->depth = c->depth;
    hp->heads = c->heads;
    hp->dim_head = c->dim_head;
    hp->inner = c->heads * c->dim_head;
    hp->ff_inner = c->dim * 4;
    hp->num_text_tokens = c->num_text_tokens;
    hp->text_seq_len = c->text_seq_len;
    hp->text_vocab = c->num_text_tokens + c->text_seq_len;
    hp->num_image_tokens = c->num_image_tokens;
    hp->fmap = c->fmap;
    hp->image_seq_len = c->fmap * c->fmap;
    hp->total_tokens = hp->text_vocab + hp->num_image_tokens;
    hp->text_len = c->text_seq_len + 1;
    hp->max_pos = c->text_seq_len + hp->image_seq_len;
    hp->shift_tokens = c->shift_tokens;
    hp->rotary_emb = c->rotary_emb;
    hp->rot_cols = c->rotary_emb ? 6 * ((c->dim_head / 3) / 2) : 0;
    hp->conv_kernel = 5;
    hp->conv_dilation = 1;
}

/* The rotary table as rotary.c builds it (the bundle carries the angles
 * as transformer.pos_emb; inference takes cosf / sinf of them). */
static dalle_status build_rotary(tf_train *tr)
{
    const tf_hparams *hp = &tr->hp;
    if (!hp->rot_cols)
        return DALLE_OK;
    int64_t n = (int64_t)(hp->text_len + hp->image_seq_len) * hp->rot_cols;
    tr->rot_table = malloc((size_t)n * sizeof(float));
    tr->rot_cos = malloc((size_t)n * sizeof(float));
    tr->rot_sin = malloc((size_t)n * sizeof(float));
    if (!tr->rot_table || !tr->rot_cos || !tr->rot_sin)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "tf_train: out of memory (rotary table)");
    rotary_compute_table(hp, tr->rot_table);
    for (int64_t i = 0; i < n; i++) {
        tr->rot_cos[i] = cosf(tr->rot_table[i]);
        tr->rot_sin[i] = sinf(tr->rot_table[i]);
    }
    return DALLE_OK;
}

dalle_status tf_train_create(const tf_train_config *cfg, int max_batch, tf_train **out)
{
    dalle_status s;
    if (!cfg || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "tf_train_create: NULL argument");
    if ((s = check_config(cfg, max_batch)))
        return s;
    tf_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "tf_train: out of memory");
    tr->cfg = *cfg;
    tr->max_batch = max_batch;
    derive_hparams(cfg, &tr->hp);
    const int depth = cfg->depth, cap = depth * 13 + 16;
    builder bd = {tr, calloc((size_t)cap, sizeof(slot)), cap};
    tr->types = calloc((size_t)depth, sizeof *tr->types);
    tr->params = calloc((size_t)cap, sizeof *tr->params);
    tr->pw.layers = calloc((size_t)depth, sizeof *tr->pw.layers);
    tr->pg.layers = calloc((size_t)depth, sizeof *tr->pg.layers);
    if (!bd.slots || !tr->types || !tr->params || !tr->pw.layers || !tr->pg.layers) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "tf_train: out of memory");
        goto fail;
    }
    for (int l = 0; l < depth; l++)
        tr->types[l] = cfg->n_attn_types ? cfg->attn_types[l % cfg->n_attn_types] : ATTN_FULL;
    register_all(&bd);
    tr->w = malloc((size_t)tr->n_weights * sizeof *tr->w);
    tr->g = calloc((size_t)tr->n_weights, sizeof *tr->g);
    tr->decay = calloc((size_t)tr->n_weights, 1);
    if (!tr->w || !tr->g || !tr->decay) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "tf_train: out of memory for %lld weights",
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
    if ((s = build_rotary(tr)) || (s = tf_train_acts_create(tr)))
        goto fail;
    free(bd.slots);
    *out = tr;
    return DALLE_OK;
fail:
    free(bd.slots);
    tf_train_free(tr);
    return s;
}

void tf_train_free(tf_train *tr)
{
    if (!tr)
        return;
    tf_train_acts_free(tr);
    free(tr->types);
    free(tr->params);
    free(tr->pw.layers);
    free(tr->pg.layers);
    free(tr->w);
    free(tr->g);
    free(tr->decay);
    free(tr->rot_table);
    free(tr->rot_cos);
    free(tr->rot_sin);
    free(tr);
}

const tf_param *tf_train_find(const tf_train *tr, const char *name)
{
    for (int i = 0; i < tr->n_params; i++)
        if (!strcmp(tr->params[i].name, name))
            return &tr->params[i];
    return NULL;
}

void tf_train_zero_grad(tf_train *tr)
{
    memset(tr->g, 0, (size_t)tr->n_weights * sizeof *tr->g);
}

/* ---- bundles ----------------------------------------------------------------- */

static const char *type_name(attn_type t)
{
    switch (t) {
    case ATTN_AXIAL_ROW:
        return "axial_row";
    case ATTN_AXIAL_COL:
        return "axial_col";
    case ATTN_CONV_LIKE:
        return "conv_like";
    case ATTN_FULL:
        break;
    }
    return "full";
}

dalle_status tf_train_write(const tf_train *tr, dalle_bundle_writer *w)
{
    const tf_train_config *c = &tr->cfg;
    dalle_status s;
    const char *types[TF_TRAIN_MAX_TYPES];
    int n_types = c->n_attn_types ? c->n_attn_types : 1;
    for (int i = 0; i < n_types; i++)
        types[i] = type_name(c->n_attn_types ? c->attn_types[i] : ATTN_FULL);
    /* every DALLE kwarg, as the converter writes them (docs/bundle-keys.md) */
    const struct {
        const char *key;
        int64_t v;
    } ints[] = {{"dalle.dim", c->dim},
                {"dalle.num_text_tokens", c->num_text_tokens},
                {"dalle.text_seq_len", c->text_seq_len},
                {"dalle.depth", c->depth},
                {"dalle.heads", c->heads},
                {"dalle.dim_head", c->dim_head}};
    const struct {
        const char *key;
        int v;
    } bools[] = {{"dalle.reversible", 0},   {"dalle.sparse_attn", 0},
                 {"dalle.stable", 0},       {"dalle.sandwich_norm", 0},
                 {"dalle.shift_tokens", c->shift_tokens},
                 {"dalle.rotary_emb", c->rotary_emb},
                 {"dalle.share_input_output_emb", 0},
                 {"dalle.optimize_for_inference", 0}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if ((s = dalle_bundle_writer_set_i64(w, ints[i].key, ints[i].v)))
            return s;
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
        if ((s = dalle_bundle_writer_set_bool(w, bools[i].key, bools[i].v)))
            return s;
    if ((s = dalle_bundle_writer_set_f64(w, "dalle.attn_dropout", 0.0)) ||
        (s = dalle_bundle_writer_set_f64(w, "dalle.ff_dropout", 0.0)) ||
        (s = dalle_bundle_writer_set_f64(w, "dalle.loss_img_weight", c->loss_img_weight)) ||
        (s = dalle_bundle_writer_set_str_array(w, "dalle.attn_types", types, n_types)))
        return s;
    for (int i = 0; i < tr->n_params; i++) {
        const tf_param *p = &tr->params[i];
        if ((s = dalle_bundle_writer_add_tensor(w, p->name, DALLE_DTYPE_F32, p->ndim, p->dims,
                                                tr->w + p->offset, 3)))
            return s;
    }
    if (tr->hp.rot_cols) {
        int64_t dims[3] = {1, tr->hp.text_len + tr->hp.image_seq_len, tr->hp.rot_cols};
        if ((s = dalle_bundle_writer_add_tensor(w, "transformer.pos_emb", DALLE_DTYPE_F32, 3,
                                                dims, tr->rot_table, 3)))
            return s;
    }
    return DALLE_OK;
}

dalle_status tf_train_load_weights(tf_train *tr, dalle_bundle *b)
{
    /* check every tensor first, then copy: a failure changes nothing */
    const float **src = calloc((size_t)tr->n_params, sizeof *src);
    if (!src)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "tf_train: out of memory");
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
