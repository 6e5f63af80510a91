/* Building the transformer from a bundle: every DALLE.__init__ kwarg the
 * converter stored as `dalle.<kwarg>` (upstream defaults when absent), every
 * tensor under its state-dict name with the shape the hyper-parameters
 * imply. Shared layers (shared_attn_ids / shared_ff_ids,
 * share_input_output_emb) are aliases in the bundle, so each layer simply
 * loads its own names. */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "error.h"
#include "transformer_internal.h"

#define MAX_ATTN_TYPES 4096
/* weights.int8_block when absent: the converter's block (docs/bundle-format.md) */
#define DEFAULT_INT8_BLOCK 32

static dalle_status req_int(const dalle_bundle *b, const char *key, int64_t lo, int64_t hi,
                            int *out)
{
    int64_t v;
    dalle_status s = dalle_bundle_meta_i64(b, key, &v);
    if (s == DALLE_ERR_NOT_FOUND)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' missing", bundle_path(b), key);
    if (s)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' is not an integer",
                          bundle_path(b), key);
    if (v < lo || v > hi)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' = %lld: expected %lld..%lld",
                          bundle_path(b), key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return DALLE_OK;
}

static dalle_status opt_int(const dalle_bundle *b, const char *key, int64_t def, int64_t lo,
                            int64_t hi, int *out)
{
    int64_t v;
    dalle_status s = bundle_int(b, key, def, &v);
    if (s)
        return s;
    if (v < lo || v > hi)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' = %lld: expected %lld..%lld",
                          bundle_path(b), key, (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return DALLE_OK;
}

/* A string array, or a lone string read as one element. */
static dalle_status str_list(const dalle_bundle *b, const char *key, const char **vals, int cap,
                             int *count)
{
    int64_t n = 0;
    dalle_status s = dalle_bundle_meta_str_array(b, key, vals, cap, &n);
    if (s == DALLE_ERR_MISMATCH) {
        s = dalle_bundle_meta_str(b, key, &vals[0]);
        n = 1;
    }
    if (s == DALLE_ERR_NOT_FOUND) {
        *count = 0;
        return DALLE_OK;
    }
    if (s)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' is not a string array",
                          bundle_path(b), key);
    if (n < 1 || n > cap)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' has %lld entries: expected 1..%d",
                          bundle_path(b), key, (long long)n, cap);
    *count = (int)n;
    return DALLE_OK;
}

static dalle_status parse_attn_type(const dalle_bundle *b, const char *name, attn_type *t)
{
    if (!strcmp(name, "full"))
        *t = ATTN_FULL;
    else if (!strcmp(name, "axial_row"))
        *t = ATTN_AXIAL_ROW;
    else if (!strcmp(name, "axial_col"))
        *t = ATTN_AXIAL_COL;
    else if (!strcmp(name, "conv_like"))
        *t = ATTN_CONV_LIKE;
    else if (!strcmp(name, "sparse"))
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: dalle.attn_types: 'sparse' (DeepSpeed block-sparse attention) is "
                          "not supported",
                          bundle_path(b));
    else
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: dalle.attn_types: unknown attention type '%s'",
                          bundle_path(b), name);
    return DALLE_OK;
}

static dalle_status read_hparams(const dalle_bundle *b, const model_shapes *m, tf_hparams *hp)
{
    dalle_status s;
    int sparse_attn = 0, optimize = 0;
    if ((s = req_int(b, "dalle.dim", 2, 1 << 16, &hp->dim)) ||
        (s = req_int(b, "dalle.depth", 1, 4096, &hp->depth)) ||
        (s = opt_int(b, "dalle.heads", 8, 1, 4096, &hp->heads)) ||
        (s = opt_int(b, "dalle.dim_head", 64, 1, 1 << 16, &hp->dim_head)) ||
        (s = bundle_bool(b, "dalle.reversible", 0, &hp->reversible)) ||
        (s = bundle_bool(b, "dalle.sparse_attn", 0, &sparse_attn)) ||
        (s = bundle_bool(b, "dalle.stable", 0, &hp->stable)) ||
        (s = bundle_bool(b, "dalle.sandwich_norm", 0, &hp->sandwich_norm)) ||
        (s = bundle_bool(b, "dalle.shift_tokens", 1, &hp->shift_tokens)) ||
        (s = bundle_bool(b, "dalle.rotary_emb", 1, &hp->rotary_emb)) ||
        (s = bundle_bool(b, "dalle.share_input_output_emb", 0, &hp->share_io)) ||
        (s = bundle_bool(b, "dalle.optimize_for_inference", 0, &optimize)))
        return s;
    /* At the golden commit sparse_attn selects nothing (Transformer picks the
     * attention class from attn_types only) and optimize_for_inference
     * swaps in an equivalent masked attention: both compute the same
     * function, so both are accepted. */
    (void)sparse_attn;
    (void)optimize;
    if ((int64_t)hp->heads * hp->dim_head > (1 << 20))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: dalle.heads * dalle.dim_head is too large",
                          bundle_path(b));
    hp->inner = hp->heads * hp->dim_head;
    hp->ff_inner = hp->dim * 4;
    hp->num_text_tokens = m->num_text_tokens;
    hp->text_seq_len = m->text_seq_len;
    hp->text_vocab = m->num_text_tokens + m->text_seq_len;
    hp->num_image_tokens = m->num_image_tokens;
    hp->fmap = m->image_fmap_size;
    hp->image_seq_len = m->image_seq_len;
    hp->total_tokens = hp->text_vocab + hp->num_image_tokens;
    hp->text_len = hp->text_seq_len + 1;
    hp->max_pos = hp->text_seq_len + hp->image_seq_len;
    hp->conv_kernel = 5;
    hp->conv_dilation = 1;
    if (hp->rotary_emb) {
        int rot = hp->dim_head / 3;
        /* RotaryEmbedding(dim = rot): rot // 2 frequencies, each used twice;
         * text ('lang') takes 2 of them, the image axes ('pixel') 4. */
        hp->rot_cols = 6 * (rot / 2);
        if (rot == 2) /* upstream divides by rot - 2 (theta_rescale_factor) */
            return dalle_fail(DALLE_ERR_MISMATCH,
                              "%s: dalle.dim_head = %d: upstream's rotary embedding cannot be "
                              "built for dim_head // 3 == 2",
                              bundle_path(b), hp->dim_head);
    }
    return DALLE_OK;
}

/* attn_types cycled over the layers; shared_attn_ids may only join layers
 * of one type (upstream raises ValueError otherwise). */
static dalle_status read_layer_types(const dalle_bundle *b, transformer *tf)
{
    const char **names = calloc(MAX_ATTN_TYPES, sizeof *names);
    const char **ids = calloc(MAX_ATTN_TYPES, sizeof *ids);
    dalle_status s = DALLE_OK;
    int n_types = 0, n_ids = 0;
    if (!names || !ids) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
        goto done;
    }
    if ((s = str_list(b, "dalle.attn_types", names, MAX_ATTN_TYPES, &n_types)) ||
        (s = str_list(b, "dalle.shared_attn_ids", ids, MAX_ATTN_TYPES, &n_ids)))
        goto done;
    if (n_types == 0) {
        names[0] = "full";
        n_types = 1;
    }
    for (int l = 0; l < tf->hp.depth; l++)
        if ((s = parse_attn_type(b, names[l % n_types], &tf->layers[l].type)))
            goto done;
    for (int l = 0; n_ids > 0 && l < tf->hp.depth; l++)
        for (int e = 0; e < l; e++)
            if (!strcmp(ids[l % n_ids], ids[e % n_ids]) &&
                tf->layers[l].type != tf->layers[e].type) {
                s = dalle_fail(DALLE_ERR_MISMATCH,
                               "%s: dalle.shared_attn_ids: layer %d shares attention '%s' with "
                               "layer %d but their attn_types differ ('%s' vs '%s')",
                               bundle_path(b), l, ids[l % n_ids], e, names[l % n_types],
                               names[e % n_types]);
                goto done;
            }
done:
    free(names);
    free(ids);
    return s;
}

static dalle_status tensor(dalle_bundle *b, const char *name, int ndim, int64_t d0, int64_t d1,
                           int64_t d2, int64_t d3, const float **out)
{
    int64_t dims[4] = {d0, d1, d2, d3};
    return bundle_tensor_f32(b, name, ndim, dims, out);
}

/* A weight matrix [out][in] as the bundle stores it (docs/bundle-format.md,
 * "Reduced-precision weights"): f32, f16 and bf16 are used as they are; an
 * i8 matrix comes with its scales, the f32 tensor `<name>:scale` of shape
 * [out][ceil(in / block)], block = weights.int8_block. Reduced matrices
 * stay reduced in memory (lib/ops_lowp.c computes with them). */
static dalle_status weight(dalle_bundle *b, transformer *tf, const char *name, int64_t out,
                           int64_t in, ops_weight *w)
{
    const int64_t dims[2] = {out, in};
    dalle_dtype dt;
    const void *p;
    dalle_status s = bundle_tensor_typed(b, name, 2, dims, &dt, &p);
    if (s)
        return s;
    *w = (ops_weight){.dtype = (int)dt, .data = p};
    if (dt == DALLE_DTYPE_I8) {
        char sname[600];
        const int64_t nb = ops_weight_blocks(in, tf->int8_block);
        const int64_t sdims[2] = {out, nb};
        const float *sc;
        snprintf(sname, sizeof sname, "%s:scale", name);
        if (dalle_bundle_find_tensor(b, sname) < 0)
            return dalle_fail(DALLE_ERR_MISMATCH,
                              "%s: tensor '%s' is int8 but its scales '%s' are missing",
                              bundle_path(b), name, sname);
        if ((s = bundle_tensor_f32(b, sname, 2, sdims, &sc)))
            return s;
        for (int64_t i = 0; i < out * nb; i++)
            if (!(sc[i] >= 0.0f) || isinf(sc[i]))
                return dalle_fail(DALLE_ERR_MISMATCH,
                                  "%s: tensor '%s': scale %lld is %g: expected a finite value "
                                  ">= 0",
                                  bundle_path(b), sname, (long long)i, (double)sc[i]);
        w->scales = sc;
        w->block = tf->int8_block;
    }
    if (dt != DALLE_DTYPE_F32) {
        tf->lowp = 1;
        if (in > tf->lowp_in)
            tf->lowp_in = in;
    }
    return DALLE_OK;
}

/* The state-dict prefix of sublayer `sub` (0 attention, 1 feed-forward) of
 * layer l: SequentialSequence's layers.L.S, or ReversibleSequence's
 * blocks.L.f/g wrapped in Deterministic (.net). */
static void sublayer_prefix(const tf_hparams *hp, int l, int sub, char *buf, size_t cap)
{
    if (hp->reversible)
        snprintf(buf, cap, "transformer.layers.blocks.%d.%c.net", l, sub ? 'g' : 'f');
    else
        snprintf(buf, cap, "transformer.layers.layers.%d.%d", l, sub);
}

static dalle_status load_sublayer_common(dalle_bundle *b, const tf_hparams *hp,
                                         const char *prefix, const float **scale, tf_norm *norm,
                                         tf_norm *norm_out)
{
    char name[512];
    dalle_status s;
    int64_t d = hp->dim;
    snprintf(name, sizeof name, "%s.scale", prefix);
    if ((s = tensor(b, name, 3, 1, 1, d, 0, scale)))
        return s;
    snprintf(name, sizeof name, "%s.fn.norm.weight", prefix);
    if ((s = tensor(b, name, 1, d, 0, 0, 0, &norm->w)))
        return s;
    snprintf(name, sizeof name, "%s.fn.norm.bias", prefix);
    if ((s = tensor(b, name, 1, d, 0, 0, 0, &norm->b)))
        return s;
    if (!hp->sandwich_norm) {
        norm_out->w = norm_out->b = NULL;
        return DALLE_OK;
    }
    snprintf(name, sizeof name, "%s.fn.norm_out.weight", prefix);
    if ((s = tensor(b, name, 1, d, 0, 0, 0, &norm_out->w)))
        return s;
    snprintf(name, sizeof name, "%s.fn.norm_out.bias", prefix);
    return tensor(b, name, 1, d, 0, 0, 0, &norm_out->b);
}

static dalle_status load_layer(dalle_bundle *b, transformer *tf, int l, tf_layer *L)
{
    const tf_hparams *hp = &tf->hp;
    char pre[256], name[512];
    dalle_status s;
    int64_t d = hp->dim, inner = hp->inner, ffi = hp->ff_inner;
    /* PreNorm.fn is CachedAs/NonCached(attention) or, with shift_tokens,
     * CachedAs(PreShiftToken(CachedAs/NonCached(attention))); the
     * feed-forward is wrapped only by the shift. */
    const char *attn_path = hp->shift_tokens ? "fn.fn.fn.fn.fn" : "fn.fn.fn";
    const char *ff_path = hp->shift_tokens ? "fn.fn.fn.fn.net" : "fn.fn.net";

    sublayer_prefix(hp, l, 0, pre, sizeof pre);
    if ((s = load_sublayer_common(b, hp, pre, &L->attn_scale, &L->attn_norm, &L->attn_norm_out)))
        return s;
    snprintf(name, sizeof name, "%s.%s.to_qkv.weight", pre, attn_path);
    if ((s = weight(b, tf, name, 3 * inner, d, &L->to_qkv)))
        return s;
    snprintf(name, sizeof name, "%s.%s.to_out.0.weight", pre, attn_path);
    if ((s = weight(b, tf, name, d, inner, &L->to_out_w)))
        return s;
    snprintf(name, sizeof name, "%s.%s.to_out.0.bias", pre, attn_path);
    if ((s = tensor(b, name, 1, d, 0, 0, 0, &L->to_out_b)))
        return s;

    sublayer_prefix(hp, l, 1, pre, sizeof pre);
    if ((s = load_sublayer_common(b, hp, pre, &L->ff_scale, &L->ff_norm, &L->ff_norm_out)))
        return s;
    snprintf(name, sizeof name, "%s.%s.0.weight", pre, ff_path);
    if ((s = weight(b, tf, name, 2 * ffi, d, &L->ff_w1)))
        return s;
    snprintf(name, sizeof name, "%s.%s.0.bias", pre, ff_path);
    if ((s = tensor(b, name, 1, 2 * ffi, 0, 0, 0, &L->ff_b1)))
        return s;
    snprintf(name, sizeof name, "%s.%s.3.weight", pre, ff_path);
    if ((s = weight(b, tf, name, d, ffi, &L->ff_w2)))
        return s;
    snprintf(name, sizeof name, "%s.%s.3.bias", pre, ff_path);
    return tensor(b, name, 1, d, 0, 0, 0, &L->ff_b2);
}

static dalle_status load_embeddings(dalle_bundle *b, transformer *tf)
{
    const tf_hparams *hp = &tf->hp;
    int64_t d = hp->dim;
    dalle_status s;
    if ((s = tensor(b, "to_logits.0.weight", 1, d, 0, 0, 0, &tf->logits_norm.w)) ||
        (s = tensor(b, "to_logits.0.bias", 1, d, 0, 0, 0, &tf->logits_norm.b)) ||
        (s = weight(b, tf, "to_logits.1.weight", hp->total_tokens, d, &tf->logits_w)) ||
        (s = tensor(b, "to_logits.1.bias", 1, hp->total_tokens, 0, 0, 0, &tf->logits_b)))
        return s;
    if (hp->share_io) {
        /* SharedEmbedding: text ids are rows [0, text_vocab) of the output
         * projection's weight, image ids the rows after them. */
        tf->text_emb = tf->logits_w;
        tf->image_emb = ops_weight_rows(&tf->logits_w, d, hp->text_vocab);
    } else if ((s = weight(b, tf, "text_emb.weight", hp->text_vocab, d, &tf->text_emb)) ||
               (s = weight(b, tf, "image_emb.weight", hp->num_image_tokens, d,
                           &tf->image_emb))) {
        return s;
    }
    if (hp->rotary_emb)
        return DALLE_OK;
    if ((s = tensor(b, "text_pos_emb.weight", 2, hp->text_len, d, 0, 0, &tf->text_pos_emb)) ||
        (s = tensor(b, "image_pos_emb.weights_0", 4, 1, hp->fmap, 1, d, &tf->axial_rows)) ||
        (s = tensor(b, "image_pos_emb.weights_1", 4, 1, 1, hp->fmap, d, &tf->axial_cols)))
        return s;
    return DALLE_OK;
}

dalle_status transformer_load(dalle_bundle *b, const model_shapes *shapes, transformer **out)
{
    transformer *tf = calloc(1, sizeof *tf);
    dalle_status s;
    if (!tf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
    /* the CPU until a context moves it (transformer_to_backend) */
    backend_cpu_init(&tf->cpu, NULL);
    tf->be = &tf->cpu;
    if ((s = read_hparams(b, shapes, &tf->hp)))
        goto fail;
    if ((int64_t)tf->hp.total_tokens > INT_MAX / 2 || tf->hp.max_pos > (1 << 20)) {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: the model's vocabulary or sequence is too large",
                       bundle_path(b));
        goto fail;
    }
    tf->layers = calloc((size_t)tf->hp.depth, sizeof *tf->layers);
    if (!tf->layers) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
        goto fail;
    }
    if ((s = read_layer_types(b, tf)) ||
        (s = opt_int(b, "weights.int8_block", DEFAULT_INT8_BLOCK, 8, 1 << 16, &tf->int8_block)))
        goto fail;
    if (tf->int8_block % 8) {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata 'weights.int8_block' = %d: expected a "
                       "multiple of 8", bundle_path(b), tf->int8_block);
        goto fail;
    }
    for (int l = 0; l < tf->hp.depth; l++)
        if ((s = load_layer(b, tf, l, &tf->layers[l])))
            goto fail;
    if ((s = load_embeddings(b, tf)) || (s = rotary_build(tf, b)))
        goto fail;
    *out = tf;
    return DALLE_OK;
fail:
    transformer_free(tf);
    return s;
}

void transformer_free(transformer *tf)
{
    if (!tf)
        return;
    free(tf->layers);
    if (!tf->on_device) { /* else the backend's arena holds them */
        free(tf->rot_cos);
        free(tf->rot_sin);
    }
    free(tf);
}

int transformer_max_positions(const transformer *tf) { return tf->hp.max_pos; }
int transformer_text_len(const transformer *tf) { return tf->hp.text_len; }

void transformer_text_sequence(const transformer *tf, const int32_t *text, int32_t *seq)
{
    seq[0] = 0; /* <bos> */
    for (int i = 0; i < tf->hp.text_seq_len; i++)
        seq[1 + i] = text[i] == 0 ? tf->hp.num_text_tokens + i : text[i];
}
