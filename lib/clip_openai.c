/* OpenAI's CLIP with the ViT image tower (clip.model.CLIP at d05afc4).
 *
 *   image   conv1 (kernel = stride = patch, no bias) → [class_embedding,
 *           patches] + positional_embedding → ln_pre → resblocks →
 *           ln_post of the class token → @ proj
 *   text    token_embedding + positional_embedding → causal resblocks →
 *           ln_final → the row of the end-of-text token (the first argmax
 *           of the ids, as text.argmax(dim=-1)) → @ text_projection
 *   scores  exp(logit_scale) · cos (lib/clip_ctx.c)
 *
 * A resblock is x + attn(ln_1(x)), x + c_proj(QuickGELU(c_fc(ln_2(x)))) with
 * nn.MultiheadAttention's fused in_proj (q, k, v rows in that order, bias
 * included) and out_proj: lib/clip_encoder.c with the OpenAI switches.
 * The stride = kernel convolution is a matrix product over flattened
 * (channel, y, x) patches, the order of conv1.weight's [width][3][p][p].
 * Only the ViT tower: ModifiedResNet checkpoints are refused at load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ops.h"
#include "bundle.h"
#include "clip_model.h"
#include "error.h"

#define LN_EPS 1e-5f /* clip.model.LayerNorm: nn.LayerNorm's default */

static dalle_status norm(dalle_bundle *b, const char *pre, int64_t d, tf_norm *n)
{
    char name[400];
    dalle_status s;
    snprintf(name, sizeof name, "%s.weight", pre);
    if ((s = clip_tensor(b, name, 1, d, 0, 0, 0, &n->w)))
        return s;
    snprintf(name, sizeof name, "%s.bias", pre);
    return clip_tensor(b, name, 1, d, 0, 0, 0, &n->b);
}

static dalle_status load_layer(dalle_bundle *b, const char *tower, int64_t d, int l, clip_layer *L)
{
    char pre[200], name[320];
    dalle_status s;
    tf_layer *T = &L->tf;
    T->type = ATTN_FULL;
#define NAME(suffix) (snprintf(name, sizeof name, "%s.%s", pre, suffix), name)
    snprintf(pre, sizeof pre, "%sresblocks.%d", tower, l);
    if ((s = clip_weight(b, NAME("attn.in_proj_weight"), 3 * d, d, &T->to_qkv)) ||
        (s = clip_tensor(b, NAME("attn.in_proj_bias"), 1, 3 * d, 0, 0, 0, &L->qkv_b)) ||
        (s = clip_weight(b, NAME("attn.out_proj.weight"), d, d, &T->to_out_w)) ||
        (s = clip_tensor(b, NAME("attn.out_proj.bias"), 1, d, 0, 0, 0, &T->to_out_b)) ||
        (s = norm(b, NAME("ln_1"), d, &T->attn_norm)) ||
        (s = norm(b, NAME("ln_2"), d, &T->ff_norm)) ||
        (s = clip_weight(b, NAME("mlp.c_fc.weight"), 4 * d, d, &T->ff_w1)) ||
        (s = clip_tensor(b, NAME("mlp.c_fc.bias"), 1, 4 * d, 0, 0, 0, &T->ff_b1)) ||
        (s = clip_weight(b, NAME("mlp.c_proj.weight"), d, 4 * d, &T->ff_w2)) ||
        (s = clip_tensor(b, NAME("mlp.c_proj.bias"), 1, d, 0, 0, 0, &T->ff_b2)))
        return s;
#undef NAME
    /* no LayerScale, no sandwich norm: attn_scale, ff_scale, *_norm_out NULL */
    return DALLE_OK;
}

static dalle_status load_tower(dalle_bundle *b, const char *tower, clip_encoder *e, int width,
                               int layers, int heads, int len, int causal)
{
    if (width % heads)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: %sresblocks: width %d is not a multiple of "
                          "the %d heads", bundle_path(b), tower, width, heads);
    dalle_status s = clip_encoder_init(e, width, layers, heads, width / heads, 4 * width, len,
                                       causal, CLIP_ACT_QUICK_GELU);
    for (int l = 0; !s && l < layers; l++)
        s = load_layer(b, tower, width, l, &e->layers[l]);
    return s;
}

/* x @ P with P stored [in][out] (a bare nn.Parameter, not an nn.Linear):
 * transposed once into the [out][in] layout ops_linear takes. */
static dalle_status transposed(dalle_bundle *b, const char *name, int64_t in, int64_t out,
                               float **dst)
{
    const float *p;
    dalle_status s = clip_tensor(b, name, 2, in, out, 0, 0, &p);
    if (s)
        return s;
    float *t = malloc((size_t)(in * out) * sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
    for (int64_t i = 0; i < in; i++)
        for (int64_t o = 0; o < out; o++)
            t[o * in + i] = p[i * out + o];
    *dst = t;
    return DALLE_OK;
}

dalle_status clip_openai_load(dalle_bundle *b, clip_model *m)
{
    int v_layers, v_width, v_heads, t_width, t_heads, t_layers;
    const int64_t big = 1 << 16;
    dalle_status s;
    const char *vision = NULL;
    if (dalle_bundle_meta_str(b, "clip.vision", &vision) == DALLE_OK && strcmp(vision, "vit"))
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: clip.vision = '%s': only the ViT image tower is supported",
                          bundle_path(b), vision);
    /* all derived from the state dict by the converter: required */
    if ((s = clip_hparam(b, "clip.embed_dim", -1, 1, big, &m->embed_dim)) ||
        (s = clip_hparam(b, "clip.image_resolution", -1, 1, 1 << 14, &m->image_size)) ||
        (s = clip_hparam(b, "clip.vision_layers", -1, 1, 4096, &v_layers)) ||
        (s = clip_hparam(b, "clip.vision_width", -1, 1, big, &v_width)) ||
        (s = clip_hparam(b, "clip.vision_patch_size", -1, 1, 1 << 14, &m->patch)) ||
        (s = clip_hparam(b, "clip.vision_heads", -1, 1, 4096, &v_heads)) ||
        (s = clip_hparam(b, "clip.context_length", -1, 1, 1 << 16, &m->text_len)) ||
        (s = clip_hparam(b, "clip.vocab_size", -1, 1, 1 << 24, &m->vocab)) ||
        (s = clip_hparam(b, "clip.transformer_width", -1, 1, big, &t_width)) ||
        (s = clip_hparam(b, "clip.transformer_heads", -1, 1, 4096, &t_heads)) ||
        (s = clip_hparam(b, "clip.transformer_layers", -1, 1, 4096, &t_layers)))
        return s;
    if (m->image_size % m->patch)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: clip.image_resolution %d is not a multiple of "
                          "clip.vision_patch_size %d",
                          bundle_path(b), m->image_size, m->patch);
    m->grid = m->image_size / m->patch;
    const int64_t n_patches = (int64_t)m->grid * m->grid, p = m->patch;
    if (n_patches + 1 > (1 << 16) || 3 * p * p > (1 << 24))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: %lld patches of %lld values: too large",
                          bundle_path(b), (long long)n_patches, (long long)(3 * p * p));
    if ((s = clip_tensor(b, "token_embedding.weight", 2, m->vocab, t_width, 0, 0, &m->tok_emb)) ||
        (s = clip_tensor(b, "positional_embedding", 2, m->text_len, t_width, 0, 0,
                         &m->pos_emb)) ||
        (s = norm(b, "ln_final", t_width, &m->ln_final)) ||
        (s = clip_tensor(b, "visual.conv1.weight", 4, v_width, 3, p, p, &m->conv_w)) ||
        (s = clip_tensor(b, "visual.class_embedding", 1, v_width, 0, 0, 0, &m->class_emb)) ||
        (s = clip_tensor(b, "visual.positional_embedding", 2, n_patches + 1, v_width, 0, 0,
                         &m->vis_pos)) ||
        (s = norm(b, "visual.ln_pre", v_width, &m->ln_pre)) ||
        (s = norm(b, "visual.ln_post", v_width, &m->ln_post)) ||
        (s = clip_scale(b, "logit_scale", &m->scale)) ||
        (s = transposed(b, "visual.proj", v_width, m->embed_dim, &m->proj_t)) ||
        (s = transposed(b, "text_projection", t_width, m->embed_dim, &m->text_proj_t)) ||
        (s = load_tower(b, "visual.transformer.", &m->vision, v_width, v_layers, v_heads,
                        (int)n_patches + 1, 0)) ||
        (s = load_tower(b, "transformer.", &m->text, t_width, t_layers, t_heads, m->text_len, 1)))
        return s;
    return DALLE_OK;
}

void clip_openai_encode_image(const clip_model *m, clip_work *w, const float *images, int n,
                              float *features)
{
    backend *be = w->be;
    const int p = m->patch, D = m->vision.dim;
    const int64_t T = (int64_t)m->grid * m->grid, L = T + 1, P = 3LL * p * p;
    const ops_weight conv = ops_weight_f32(m->conv_w), proj = ops_weight_f32(m->proj_t);
    float *in = CW_F(w, CW_IN), *x = CW_F(w, CW_X), *pool = CW_F(w, CW_POOL);
    /* patches flattened as (channel, y, x), conv1.weight's order */
    be->op->patches(be, images, n, m->image_size, p, 0, in);
    for (int b = 0; b < n; b++) {
        float *xs = x + (int64_t)b * L * D;
        be->op->copy(be, xs, m->class_emb, (size_t)D * sizeof *xs);
        be->op->linear(be, in + (int64_t)b * T * P, T, P, &conv, NULL, D, xs + D, D, NULL, 0);
        be->op->add_scaled(be, xs, m->vis_pos, NULL, L, D);
    }
    be->op->layer_norm(be, x, n * L, D, m->ln_pre.w, m->ln_pre.b, LN_EPS, x);
    clip_encoder_forward(&m->vision, w, n, (int)L, NULL);
    for (int b = 0; b < n; b++)
        be->op->layer_norm(be, x + (int64_t)b * L * D, 1, D, m->ln_post.w, m->ln_post.b, LN_EPS,
                           pool + (int64_t)b * D);
    be->op->linear(be, pool, n, D, &proj, NULL, m->embed_dim, features, m->embed_dim, NULL, 0);
}

void clip_openai_encode_text(const clip_model *m, clip_work *w, const int32_t *text,
                             const int32_t *text_host, int n, float *features)
{
    backend *be = w->be;
    const int L = m->text_len, D = m->text.dim;
    const ops_weight proj = ops_weight_f32(m->text_proj_t);
    float *x = CW_F(w, CW_X), *pool = CW_F(w, CW_POOL);
    be->op->gather_rows(be, m->tok_emb, text, (int64_t)n * L, D, x);
    for (int b = 0; b < n; b++)
        be->op->add_scaled(be, x + (int64_t)b * L * D, m->pos_emb, NULL, L, D);
    clip_encoder_forward(&m->text, w, n, L, NULL);
    for (int b = 0; b < n; b++) {
        /* the end-of-text token has the largest id; torch.argmax returns the
         * first of equal maxima */
        const int32_t *t = text_host + (int64_t)b * L;
        int eot = 0;
        for (int i = 1; i < L; i++)
            if (t[i] > t[eot])
                eot = i;
        /* LayerNorm is per row: only the row that is kept needs it */
        be->op->layer_norm(be, x + ((int64_t)b * L + eot) * D, 1, D, m->ln_final.w,
                           m->ln_final.b, LN_EPS, pool + (int64_t)b * D);
    }
    be->op->linear(be, pool, n, D, &proj, NULL, m->embed_dim, features, m->embed_dim, NULL, 0);
}
