/* The trainable DALL·E transformer: its named weights, their upstream
 * initialisation, and reading / writing them as bundle tensors. The
 * forward and backward passes are in tf_train_pass.c. */
#include "tf_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

/* One layer's tensors in the state dict's order (PreNorm registers norm,
 * norm_out, then fn); own_attn / own_ff 0: the module is an earlier
 * layer's (shared ids), its tensors are not registered again. */
static void register_layer(param_table *t, tf_layer_ptrs *w, tf_layer_ptrs *g, const char *pa,
                           const char *pf, int l, int64_t d, int64_t inner, int64_t ffi,
                           const char *attn_path, const char *ff_path, int sandwich, int own_attn,
                           int own_ff)
{
    const param_init C = PARAM_INIT_CONST, U = PARAM_INIT_UNIFORM_FAN_IN;
    /* LayerScale(dim, ind + 1, ...): init_eps from the layer's depth */
    double eps = l + 1 <= 18 ? 0.1 : l + 1 <= 24 ? 1e-5 : 1e-6;
    param_table_add(t, &w->attn_scale, &g->attn_scale, C, eps, 0, 3, DIMS(1, 1, d),
                    "%s.scale", pa);
    param_table_add(t, &w->attn_norm_w, &g->attn_norm_w, C, 1.0, 0, 1, DIMS(d),
                    "%s.fn.norm.weight", pa);
    param_table_add(t, &w->attn_norm_b, &g->attn_norm_b, C, 0.0, 0, 1, DIMS(d),
                    "%s.fn.norm.bias", pa);
    if (sandwich) {
        param_table_add(t, &w->attn_norm_out_w, &g->attn_norm_out_w, C, 1.0, 0, 1, DIMS(d),
                        "%s.fn.norm_out.weight", pa);
        param_table_add(t, &w->attn_norm_out_b, &g->attn_norm_out_b, C, 0.0, 0, 1, DIMS(d),
                        "%s.fn.norm_out.bias", pa);
    }
    if (own_attn) {
        param_table_add(t, &w->to_qkv, &g->to_qkv, U, (double)d, 1, 2, DIMS(3 * inner, d),
                        "%s.%s.to_qkv.weight", pa, attn_path);
        param_table_add(t, &w->to_out_w, &g->to_out_w, U, (double)inner, 1, 2, DIMS(d, inner),
                        "%s.%s.to_out.0.weight", pa, attn_path);
        param_table_add(t, &w->to_out_b, &g->to_out_b, U, (double)inner, 0, 1, DIMS(d),
                        "%s.%s.to_out.0.bias", pa, attn_path);
    }
    param_table_add(t, &w->ff_scale, &g->ff_scale, C, eps, 0, 3, DIMS(1, 1, d),
                    "%s.scale", pf);
    param_table_add(t, &w->ff_norm_w, &g->ff_norm_w, C, 1.0, 0, 1, DIMS(d),
                    "%s.fn.norm.weight", pf);
    param_table_add(t, &w->ff_norm_b, &g->ff_norm_b, C, 0.0, 0, 1, DIMS(d),
                    "%s.fn.norm.bias", pf);
    if (sandwich) {
        param_table_add(t, &w->ff_norm_out_w, &g->ff_norm_out_w, C, 1.0, 0, 1, DIMS(d),
                        "%s.fn.norm_out.weight", pf);
        param_table_add(t, &w->ff_norm_out_b, &g->ff_norm_out_b, C, 0.0, 0, 1, DIMS(d),
                        "%s.fn.norm_out.bias", pf);
    }
    if (own_ff) {
        param_table_add(t, &w->ff_w1, &g->ff_w1, U, (double)d, 1, 2, DIMS(2 * ffi, d),
                        "%s.%s.0.weight", pf, ff_path);
        param_table_add(t, &w->ff_b1, &g->ff_b1, U, (double)d, 0, 1, DIMS(2 * ffi),
                        "%s.%s.0.bias", pf, ff_path);
        param_table_add(t, &w->ff_w2, &g->ff_w2, U, (double)ffi, 1, 2, DIMS(d, ffi),
                        "%s.%s.3.weight", pf, ff_path);
        param_table_add(t, &w->ff_b2, &g->ff_b2, U, (double)ffi, 0, 1, DIMS(d),
                        "%s.%s.3.bias", pf, ff_path);
    }
}

void tf_train_register_layer(param_table *t, tf_layer_ptrs *w, tf_layer_ptrs *g,
                             const char *prefix, int layer, int64_t dim, int64_t inner,
                             int64_t ff_inner, const char *attn_path, const char *ff_path)
{
    char pa[160], pf[160];
    snprintf(pa, sizeof pa, "%s.layers.layers.%d.0", prefix, layer);
    snprintf(pf, sizeof pf, "%s.layers.layers.%d.1", prefix, layer);
    register_layer(t, w, g, pa, pf, layer, dim, inner, ff_inner, attn_path, ff_path, 0, 1, 1);
}

dalle_status tf_train_parse_ids(const char *list, char ids[][TF_TRAIN_ID_LEN], int *n,
                                const char *what)
{
    *n = 0;
    const char *p = list ? list : "";
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t len = strcspn(p, ", ");
        if (!len)
            break;
        if (*n == TF_TRAIN_MAX_IDS)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: more than %d ids", what,
                              TF_TRAIN_MAX_IDS);
        if (len >= TF_TRAIN_ID_LEN)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: the id '%.*s' is longer than %d "
                              "characters", what, (int)(len > 40 ? 40 : len), p,
                              TF_TRAIN_ID_LEN - 1);
        memcpy(ids[*n], p, len);
        ids[*n][len] = '\0';
        (*n)++;
        p += len;
    }
    return DALLE_OK;
}

void tf_train_sublayer_prefix(const tf_train *tr, int l, int sub, char *buf, size_t cap)
{
    /* SequentialSequence's layers.L.S; ReversibleSequence's blocks.L.f / g,
     * each wrapped in Deterministic (.net), as lib/transformer_load.c reads */
    if (tr->cfg.reversible)
        snprintf(buf, cap, "transformer.layers.blocks.%d.%c.net", l, sub ? 'g' : 'f');
    else
        snprintf(buf, cap, "transformer.layers.layers.%d.%d", l, sub);
}

/* The tensors in the order (and with the names) of the bundle. */
static void register_all(tf_train *tr)
{
    const tf_hparams *hp = &tr->hp;
    param_table *t = &tr->pt;
    const int64_t d = hp->dim;
    /* PreNorm.fn wraps as in lib/transformer_load.c */
    const char *attn_path = hp->shift_tokens ? "fn.fn.fn.fn.fn" : "fn.fn.fn";
    const char *ff_path = hp->shift_tokens ? "fn.fn.fn.fn.net" : "fn.fn.net";
    for (int l = 0; l < hp->depth; l++) {
        char pa[96], pf[96];
        tf_train_sublayer_prefix(tr, l, 0, pa, sizeof pa);
        tf_train_sublayer_prefix(tr, l, 1, pf, sizeof pf);
        register_layer(t, &tr->pw.layers[l], &tr->pg.layers[l], pa, pf, l, d, hp->inner,
                       hp->ff_inner, attn_path, ff_path, tr->cfg.sandwich_norm,
                       tr->attn_owner[l] == l, tr->ff_owner[l] == l);
    }
    tf_model_ptrs *w = &tr->pw, *g = &tr->pg;
    const param_init N = PARAM_INIT_NORMAL, C = PARAM_INIT_CONST, U = PARAM_INIT_UNIFORM_FAN_IN;
    /* nn.Embedding: N(0, 1) */
    param_table_add(t, &w->text_emb, &g->text_emb, N, 0, 0, 2, DIMS(hp->text_vocab, d),
                    "text_emb.weight");
    param_table_add(t, &w->image_emb, &g->image_emb, N, 0, 0, 2, DIMS(hp->num_image_tokens, d),
                    "image_emb.weight");
    if (!hp->rotary_emb) {
        param_table_add(t, &w->text_pos_emb, &g->text_pos_emb, N, 0, 0, 2,
                        DIMS(hp->text_len, d), "text_pos_emb.weight");
        /* AxialPositionalEmbedding: zeros(...).normal_(0, 1) */
        param_table_add(t, &w->axial_rows, &g->axial_rows, N, 0, 0, 4, DIMS(1, hp->fmap, 1, d),
                        "image_pos_emb.weights_0");
        param_table_add(t, &w->axial_cols, &g->axial_cols, N, 0, 0, 4, DIMS(1, 1, hp->fmap, d),
                        "image_pos_emb.weights_1");
    }
    param_table_add(t, &w->norm_w, &g->norm_w, C, 1.0, 0, 1, DIMS(d), "to_logits.0.weight");
    param_table_add(t, &w->norm_b, &g->norm_b, C, 0.0, 0, 1, DIMS(d), "to_logits.0.bias");
    param_table_add(t, &w->logits_w, &g->logits_w, U, (double)d, 1, 2,
                    DIMS(hp->total_tokens, d), "to_logits.1.weight");
    param_table_add(t, &w->logits_b, &g->logits_b, U, (double)d, 0, 1, DIMS(hp->total_tokens),
                    "to_logits.1.bias");
}

static dalle_status check_config(const tf_train_config *c, int max_batch)
{
    if (c->dim < 2 || c->depth < 1 || c->heads < 1 || c->dim_head < 1 ||
        c->num_text_tokens < 1 || c->text_seq_len < 1 || c->num_image_tokens < 1 ||
        c->fmap < 1 || c->n_attn_types < 0 || c->n_attn_types > TF_TRAIN_MAX_TYPES ||
        max_batch < 1 || !(c->loss_img_weight >= 0.0))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "DALL-E transformer of dim %d, depth %d, heads %d, dim_head %d, text "
                          "%d/%d, image %d/%d, %d attn types, batch %d: a size is out of range",
                          c->dim, c->depth, c->heads, c->dim_head, c->num_text_tokens,
                          c->text_seq_len, c->num_image_tokens, c->fmap, c->n_attn_types,
                          max_batch);
    if ((int64_t)c->dim * 8 > (1 << 24) || (int64_t)c->heads * c->dim_head > (1 << 20) ||
        (int64_t)c->fmap * c->fmap + c->text_seq_len > (1 << 20) ||
        (int64_t)c->num_text_tokens + c->text_seq_len + c->num_image_tokens > (1 << 28))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "DALL-E transformer: the model is too large");
    if (c->rotary_emb && c->dim_head / 3 == 2)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "DALL-E transformer: dim_head = %d: upstream's rotary embedding "
                          "cannot be built for dim_head // 3 == 2",
                          c->dim_head);
    if (c->rotary_emb && (c->dim_head / 3) / 2 > 4096)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "DALL-E transformer: dim_head is too large");
    if (!(c->attn_dropout >= 0.0 && c->attn_dropout < 1.0) ||
        !(c->ff_dropout >= 0.0 && c->ff_dropout < 1.0))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "DALL-E transformer: attn_dropout = %g, ff_dropout = %g: expected "
                          "[0, 1)",
                          c->attn_dropout, c->ff_dropout);
    if (c->n_shared_attn < 0 || c->n_shared_attn > TF_TRAIN_MAX_IDS || c->n_shared_ff < 0 ||
        c->n_shared_ff > TF_TRAIN_MAX_IDS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "DALL-E transformer: shared ids: 0..%d entries", TF_TRAIN_MAX_IDS);
    return DALLE_OK;
}

/* Layer l's attention type, as cycled from attn_types. */
static attn_type layer_type(const tf_train_config *c, int l)
{
    return c->n_attn_types ? c->attn_types[l % c->n_attn_types] : ATTN_FULL;
}

/* owner[l]: the first layer whose id (ids cycled over the layers, as
 * upstream's cycle(shared_ids)) equals layer l's; l without ids. */
static void find_owners(int depth, const char ids[][TF_TRAIN_ID_LEN], int n, int *owner)
{
    for (int l = 0; l < depth; l++) {
        owner[l] = l;
        for (int e = 0; n > 0 && e < l; e++)
            if (!strcmp(ids[l % n], ids[e % n])) {
                owner[l] = e;
                break;
            }
    }
}

/* Upstream raises ValueError when a shared attention joins layers of two
 * attention types. */
static dalle_status check_shared_types(const tf_train *tr)
{
    const tf_train_config *c = &tr->cfg;
    for (int l = 0; l < c->depth; l++)
        if (tr->types[tr->attn_owner[l]] != tr->types[l])
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "shared_attn_ids: layer %d shares attention '%s' with layer %d but "
                              "their attn_types differ",
                              l, c->shared_attn_ids[l % c->n_shared_attn], tr->attn_owner[l]);
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
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "out of memory for the DALL-E transformer's rotary table");
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
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "DALL-E transformer: %s is NULL",
                          cfg ? "the output" : "the configuration");
    if ((s = check_config(cfg, max_batch)))
        return s;
    tf_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the DALL-E transformer");
    tr->cfg = *cfg;
    tr->max_batch = max_batch;
    derive_hparams(cfg, &tr->hp);
    const int depth = cfg->depth;
    tr->types = calloc((size_t)depth, sizeof *tr->types);
    tr->pw.layers = calloc((size_t)depth, sizeof *tr->pw.layers);
    tr->pg.layers = calloc((size_t)depth, sizeof *tr->pg.layers);
    tr->attn_owner = calloc((size_t)depth, sizeof *tr->attn_owner);
    tr->ff_owner = calloc((size_t)depth, sizeof *tr->ff_owner);
    if (!tr->types || !tr->pw.layers || !tr->pg.layers || !tr->attn_owner || !tr->ff_owner) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the DALL-E transformer");
        goto fail;
    }
    for (int l = 0; l < depth; l++)
        tr->types[l] = layer_type(cfg, l);
    find_owners(depth, cfg->shared_attn_ids, cfg->n_shared_attn, tr->attn_owner);
    find_owners(depth, cfg->shared_ff_ids, cfg->n_shared_ff, tr->ff_owner);
    if ((s = check_shared_types(tr)))
        goto fail;
    register_all(tr);
    if ((s = param_table_alloc(&tr->pt, cfg->seed, "DALL-E transformer")))
        goto fail;
    /* a shared module: the owner's tensors (and gradients, which the
     * backward of every layer using them accumulates) */
    for (int l = 0; l < depth; l++) {
        tf_layer_ptrs *w = &tr->pw.layers[l], *g = &tr->pg.layers[l];
        const tf_layer_ptrs *wa = &tr->pw.layers[tr->attn_owner[l]];
        const tf_layer_ptrs *ga = &tr->pg.layers[tr->attn_owner[l]];
        const tf_layer_ptrs *wf = &tr->pw.layers[tr->ff_owner[l]];
        const tf_layer_ptrs *gf = &tr->pg.layers[tr->ff_owner[l]];
        w->to_qkv = wa->to_qkv, w->to_out_w = wa->to_out_w, w->to_out_b = wa->to_out_b;
        g->to_qkv = ga->to_qkv, g->to_out_w = ga->to_out_w, g->to_out_b = ga->to_out_b;
        w->ff_w1 = wf->ff_w1, w->ff_b1 = wf->ff_b1, w->ff_w2 = wf->ff_w2, w->ff_b2 = wf->ff_b2;
        g->ff_w1 = gf->ff_w1, g->ff_b1 = gf->ff_b1, g->ff_w2 = gf->ff_w2, g->ff_b2 = gf->ff_b2;
    }
    if ((s = build_rotary(tr)) || (s = tf_train_acts_create(tr)))
        goto fail;
    *out = tr;
    return DALLE_OK;
fail:
    tf_train_free(tr);
    return s;
}

void tf_train_free(tf_train *tr)
{
    if (!tr)
        return;
    tf_train_acts_free(tr);
    free(tr->types);
    free(tr->attn_owner);
    free(tr->ff_owner);
    param_table_free(&tr->pt);
    free(tr->pw.layers);
    free(tr->pg.layers);
    free(tr->rot_table);
    free(tr->rot_cos);
    free(tr->rot_sin);
    free(tr);
}

const train_param *tf_train_find(const tf_train *tr, const char *name)
{
    return param_table_find(&tr->pt, name);
}

void tf_train_zero_grad(tf_train *tr) { param_table_zero_grad(&tr->pt); }

void tf_train_set_dropout(tf_train *tr, int on, uint64_t seed, int64_t step)
{
    tr->drop_on = on != 0;
    tr->drop_seed = seed;
    tr->drop_step = step;
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

/* A shared module's tensors under every later layer's names, as aliases
 * of the owner's (upstream's state dict lists them under each layer; the
 * converter writes such duplicates as aliases, transformer_load.c loads
 * each layer's own names). */
static dalle_status write_shared_aliases(const tf_train *tr, dalle_bundle_writer *w)
{
    const tf_hparams *hp = &tr->hp;
    const char *attn_path = hp->shift_tokens ? "fn.fn.fn.fn.fn" : "fn.fn.fn";
    const char *ff_path = hp->shift_tokens ? "fn.fn.fn.fn.net" : "fn.fn.net";
    static const char *const attn_t[3] = {"to_qkv.weight", "to_out.0.weight", "to_out.0.bias"};
    static const char *const ff_t[4] = {"0.weight", "0.bias", "3.weight", "3.bias"};
    char name[256], target[256], pl[96], po[96];
    dalle_status s;
    for (int l = 0; l < hp->depth; l++) {
        tf_train_sublayer_prefix(tr, l, 0, pl, sizeof pl);
        tf_train_sublayer_prefix(tr, tr->attn_owner[l], 0, po, sizeof po);
        for (int k = 0; k < 3 && tr->attn_owner[l] != l; k++) {
            snprintf(target, sizeof target, "%s.%s.%s", po, attn_path, attn_t[k]);
            snprintf(name, sizeof name, "%s.%s.%s", pl, attn_path, attn_t[k]);
            const train_param *p = param_table_find(&tr->pt, target);
            if (!p || (s = dalle_bundle_writer_add_alias(w, name, target, p->ndim, p->dims, 0)))
                return p ? s : dalle_fail(DALLE_ERR_MISMATCH, "%s: not registered", target);
        }
        tf_train_sublayer_prefix(tr, l, 1, pl, sizeof pl);
        tf_train_sublayer_prefix(tr, tr->ff_owner[l], 1, po, sizeof po);
        for (int k = 0; k < 4 && tr->ff_owner[l] != l; k++) {
            snprintf(target, sizeof target, "%s.%s.%s", po, ff_path, ff_t[k]);
            snprintf(name, sizeof name, "%s.%s.%s", pl, ff_path, ff_t[k]);
            const train_param *p = param_table_find(&tr->pt, target);
            if (!p || (s = dalle_bundle_writer_add_alias(w, name, target, p->ndim, p->dims, 0)))
                return p ? s : dalle_fail(DALLE_ERR_MISMATCH, "%s: not registered", target);
        }
    }
    return DALLE_OK;
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
    } bools[] = {{"dalle.reversible", c->reversible != 0},
                 {"dalle.sparse_attn", 0},
                 {"dalle.stable", c->stable != 0},
                 {"dalle.sandwich_norm", c->sandwich_norm != 0},
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
    if ((s = dalle_bundle_writer_set_f64(w, "dalle.attn_dropout", c->attn_dropout)) ||
        (s = dalle_bundle_writer_set_f64(w, "dalle.ff_dropout", c->ff_dropout)) ||
        (s = dalle_bundle_writer_set_f64(w, "dalle.loss_img_weight", c->loss_img_weight)) ||
        (s = dalle_bundle_writer_set_str_array(w, "dalle.attn_types", types, n_types)))
        return s;
    /* shared ids as the converter stores them: str(id) each, absent for None */
    const char *ids[TF_TRAIN_MAX_IDS];
    for (int i = 0; i < c->n_shared_attn; i++)
        ids[i] = c->shared_attn_ids[i];
    if (c->n_shared_attn &&
        (s = dalle_bundle_writer_set_str_array(w, "dalle.shared_attn_ids", ids,
                                               c->n_shared_attn)))
        return s;
    for (int i = 0; i < c->n_shared_ff; i++)
        ids[i] = c->shared_ff_ids[i];
    if (c->n_shared_ff &&
        (s = dalle_bundle_writer_set_str_array(w, "dalle.shared_ff_ids", ids, c->n_shared_ff)))
        return s;
    if ((s = param_table_write(&tr->pt, w)) || (s = write_shared_aliases(tr, w)))
        return s;
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
    return param_table_load(&tr->pt, b);
}
