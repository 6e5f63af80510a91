/* DALLE-pytorch's CLIP (dalle_pytorch.CLIP at 58c1e1a).
 *
 *   text    text_emb(ids) + text_pos_emb → Transformer(causal=False), the
 *           text_mask as key-padding mask → mean over the masked-in
 *           positions (all positions without a mask) → to_text_latent
 *   image   'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' → to_visual_embedding
 *           + visual_pos_emb → Transformer(causal=False) → mean over the
 *           patches → to_visual_latent
 *   score   exp(temperature) · <normalize(text), normalize(image)>
 *           (lib/clip_ctx.c)
 *
 * Both Transformers are DALLE-pytorch's own class with its defaults as CLIP
 * leaves them: dim_head 64, ff_mult 4 (GEGLU), LayerScale + PreNorm, no
 * rotary, no token shift, no sandwich norm, not reversible. Images are fed
 * as given (upstream normalises nothing).
 */
#include <stdio.h>
#include <string.h>

#include "backend_ops.h"
#include "bundle.h"
#include "clip_model.h"
#include "error.h"

#define DIM_HEAD 64 /* Transformer's default; CLIP does not pass one */
#define FF_MULT 4

/* The LayerScale and PreNorm parts of the sublayer at `pre` */
static dalle_status load_common(dalle_bundle *b, const char *pre, int64_t d, const float **scale,
                                tf_norm *norm)
{
    char name[320];
    dalle_status s;
    snprintf(name, sizeof name, "%s.scale", pre);
    if ((s = clip_tensor(b, name, 3, 1, 1, d, 0, scale)))
        return s;
    snprintf(name, sizeof name, "%s.fn.norm.weight", pre);
    if ((s = clip_tensor(b, name, 1, d, 0, 0, 0, &norm->w)))
        return s;
    snprintf(name, sizeof name, "%s.fn.norm.bias", pre);
    return clip_tensor(b, name, 1, d, 0, 0, 0, &norm->b);
}

/* One layer of DALLE-pytorch's SequentialSequence: layers.L.0 is
 * LayerScale(PreNorm(CachedAs(Attention))), layers.L.1 is
 * LayerScale(PreNorm(FeedForward)) — hence the fn.fn.fn / fn.fn.net paths. */
static dalle_status load_layer(dalle_bundle *b, const char *tower, const clip_encoder *e, int l,
                               clip_layer *L)
{
    char pre[200], name[320];
    const int64_t d = e->dim, inner = e->inner, ffi = e->ff_inner;
    dalle_status s;
    tf_layer *T = &L->tf;
    T->type = ATTN_FULL;
    snprintf(pre, sizeof pre, "%s.layers.layers.%d.0", tower, l);
    if ((s = load_common(b, pre, d, &T->attn_scale, &T->attn_norm)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.fn.to_qkv.weight", pre);
    if ((s = clip_weight(b, name, 3 * inner, d, &T->to_qkv)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.fn.to_out.0.weight", pre);
    if ((s = clip_weight(b, name, d, inner, &T->to_out_w)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.fn.to_out.0.bias", pre);
    if ((s = clip_tensor(b, name, 1, d, 0, 0, 0, &T->to_out_b)))
        return s;

    snprintf(pre, sizeof pre, "%s.layers.layers.%d.1", tower, l);
    if ((s = load_common(b, pre, d, &T->ff_scale, &T->ff_norm)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.net.0.weight", pre);
    if ((s = clip_weight(b, name, 2 * ffi, d, &T->ff_w1)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.net.0.bias", pre);
    if ((s = clip_tensor(b, name, 1, 2 * ffi, 0, 0, 0, &T->ff_b1)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.net.3.weight", pre);
    if ((s = clip_weight(b, name, d, ffi, &T->ff_w2)))
        return s;
    snprintf(name, sizeof name, "%s.fn.fn.net.3.bias", pre);
    return clip_tensor(b, name, 1, d, 0, 0, 0, &T->ff_b2);
    /* attn_norm_out / ff_norm_out stay NULL: no sandwich norm; qkv_b NULL */
}

static dalle_status load_tower(dalle_bundle *b, const char *tower, clip_encoder *e, int dim,
                               int depth, int heads, int len)
{
    dalle_status s = clip_encoder_init(e, dim, depth, heads, DIM_HEAD, dim * FF_MULT, len, 0,
                                       CLIP_ACT_GEGLU);
    for (int l = 0; !s && l < depth; l++)
        s = load_layer(b, tower, e, l, &e->layers[l]);
    return s;
}

dalle_status clip_dalle_load(dalle_bundle *b, clip_model *m)
{
    int dim_text, dim_image, depth_t, depth_v, heads_t, heads_v, channels;
    dalle_status s;
    const int64_t big = 1 << 16;
    /* CLIP.__init__'s defaults where the converter left a key out */
    if ((s = clip_hparam(b, "clip.dim_text", 512, 1, big, &dim_text)) ||
        (s = clip_hparam(b, "clip.dim_image", 512, 1, big, &dim_image)) ||
        (s = clip_hparam(b, "clip.dim_latent", 512, 1, big, &m->embed_dim)) ||
        (s = clip_hparam(b, "clip.num_text_tokens", 10000, 1, 1 << 24, &m->vocab)) ||
        (s = clip_hparam(b, "clip.text_enc_depth", 6, 1, 4096, &depth_t)) ||
        (s = clip_hparam(b, "clip.text_seq_len", 256, 1, 1 << 16, &m->text_len)) ||
        (s = clip_hparam(b, "clip.text_heads", 8, 1, 4096, &heads_t)) ||
        (s = clip_hparam(b, "clip.visual_enc_depth", 6, 1, 4096, &depth_v)) ||
        (s = clip_hparam(b, "clip.visual_heads", 8, 1, 4096, &heads_v)) ||
        (s = clip_hparam(b, "clip.visual_image_size", 256, 1, 1 << 14, &m->image_size)) ||
        (s = clip_hparam(b, "clip.visual_patch_size", 32, 1, 1 << 14, &m->patch)) ||
        (s = clip_hparam(b, "clip.channels", 3, 1, 64, &channels)))
        return s;
    if (channels != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: clip.channels = %d: only RGB (3-channel) CLIP models are supported",
                          bundle_path(b), channels);
    if (m->image_size % m->patch)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: clip.visual_image_size %d is not a multiple of "
                          "clip.visual_patch_size %d",
                          bundle_path(b), m->image_size, m->patch);
    m->grid = m->image_size / m->patch;
    const int64_t n_patches = (int64_t)m->grid * m->grid, patch_dim = 3LL * m->patch * m->patch;
    if (n_patches > (1 << 16) || patch_dim > (1 << 24))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: %lld patches of %lld values: too large",
                          bundle_path(b), (long long)n_patches, (long long)patch_dim);
    if ((s = clip_tensor(b, "text_emb.weight", 2, m->vocab, dim_text, 0, 0, &m->text_emb)) ||
        (s = clip_tensor(b, "text_pos_emb.weight", 2, m->text_len, dim_text, 0, 0,
                         &m->text_pos)) ||
        (s = clip_tensor(b, "to_text_latent.weight", 2, m->embed_dim, dim_text, 0, 0,
                         &m->to_text_latent)) ||
        (s = clip_tensor(b, "to_visual_embedding.weight", 2, dim_image, patch_dim, 0, 0,
                         &m->patch_w)) ||
        (s = clip_tensor(b, "to_visual_embedding.bias", 1, dim_image, 0, 0, 0, &m->patch_b)) ||
        (s = clip_tensor(b, "visual_pos_emb.weight", 2, n_patches, dim_image, 0, 0,
                         &m->visual_pos)) ||
        (s = clip_tensor(b, "to_visual_latent.weight", 2, m->embed_dim, dim_image, 0, 0,
                         &m->to_visual_latent)) ||
        (s = clip_scale(b, "temperature", &m->scale)) ||
        (s = load_tower(b, "text_transformer", &m->text, dim_text, depth_t, heads_t,
                        m->text_len)) ||
        (s = load_tower(b, "visual_transformer", &m->vision, dim_image, depth_v, heads_v,
                        (int)n_patches)))
        return s;
    return DALLE_OK;
}

void clip_dalle_encode_image(const clip_model *m, clip_work *w, const float *images, int n,
                             float *features)
{
    backend *be = w->be;
    const int p = m->patch, D = m->vision.dim;
    const int64_t T = (int64_t)m->grid * m->grid, P = 3LL * p * p;
    const ops_weight patch = ops_weight_f32(m->patch_w), latent = ops_weight_f32(m->to_visual_latent);
    float *in = CW_F(w, CW_IN), *x = CW_F(w, CW_X), *pool = CW_F(w, CW_POOL);
    /* rearrange 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' */
    be->op->patches(be, images, n, m->image_size, p, 1, in);
    be->op->linear(be, in, n * T, P, &patch, m->patch_b, D, x, D, NULL, 0);
    for (int b = 0; b < n; b++)
        be->op->add_scaled(be, x + (int64_t)b * T * D, m->visual_pos, NULL, T, D);
    clip_encoder_forward(&m->vision, w, n, (int)T, NULL);
    /* upstream's mean(dim=1), accumulated in double */
    be->op->mean_rows(be, x, n, (int)T, D, NULL, pool);
    be->op->linear(be, pool, n, D, &latent, NULL, m->embed_dim, features, m->embed_dim, NULL, 0);
}

void clip_dalle_encode_text(const clip_model *m, clip_work *w, const int32_t *text,
                            const uint8_t *mask, int n, float *features)
{
    backend *be = w->be;
    const int L = m->text_len, D = m->text.dim;
    const ops_weight latent = ops_weight_f32(m->to_text_latent);
    float *x = CW_F(w, CW_X), *pool = CW_F(w, CW_POOL);
    be->op->gather_rows(be, m->text_emb, text, (int64_t)n * L, D, x);
    for (int b = 0; b < n; b++)
        be->op->add_scaled(be, x + (int64_t)b * L * D, m->text_pos, NULL, L, D);
    clip_encoder_forward(&m->text, w, n, L, mask);
    /* the mean over the masked-in positions (upstream's masked_mean) */
    be->op->mean_rows(be, x, n, L, D, mask, pool);
    be->op->linear(be, pool, n, D, &latent, NULL, m->embed_dim, features, m->embed_dim, NULL, 0);
}
