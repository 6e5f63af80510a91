/* taming-transformers' VQGAN (taming/models/vqgan.py VQModel / GumbelVQ,
 * taming/modules/diffusionmodules/model.py Encoder / Decoder,
 * taming/modules/vqvae/quantize.py; commit 3ba01b2), as DALLE-pytorch's
 * VQGanVAE drives it.
 *
 *   Encoder: conv_in 3×3; per level i (widths ch · ch_mult[i]):
 *            num_res_blocks ResnetBlocks, each followed by an AttnBlock when
 *            the level's resolution (counted from ddconfig.resolution) is in
 *            attn_resolutions; a Downsample (zero pad right/bottom, 3×3
 *            stride 2 conv, or 2×2 average pool) after every level but the
 *            last; mid: ResnetBlock, AttnBlock, ResnetBlock; GroupNorm,
 *            swish, conv_out 3×3 → z_channels.
 *   Decoder: the mirror image: conv_in 3×3, mid, per level from the last
 *            num_res_blocks + 1 ResnetBlocks (+ AttnBlocks), an Upsample
 *            (nearest 2×, 3×3 conv) after every level but level 0;
 *            GroupNorm, swish, conv_out 3×3 → out_ch.
 *   ResnetBlock: x' + conv2(swish(GN(conv1(swish(GN(x)))))), x' = x or a
 *            1×1 nin_shortcut when the width changes. GroupNorm(32, 1e-6).
 *   AttnBlock: x + proj_out(v · softmax(qᵀk / √c)ᵀ) over all positions.
 *
 * Encoding (VQGanVAE.get_codebook_indices): 2x - 1, encoder, quant_conv,
 * then VQModel: the nearest codebook vector (argmin |z|² + |e|² - 2 z·e);
 * GumbelVQ: the argmax of quantize.proj's logits (upstream adds Gumbel
 * noise even in eval mode; libdalle takes the noise-free argmax).
 * Decoding (VQGanVAE.decode): codebook rows → post_quant_conv → decoder,
 * then (clamp(x, -1, 1) + 1) / 2.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "error.h"
#include "vae.h"

#define MAX_LEVELS 8
#define MAX_BLOCKS 16

typedef struct resnet {
    vae_norm n1, n2;
    vae_conv c1, c2, nin;
    int has_nin;
} resnet;

typedef struct attn {
    vae_norm norm;
    vae_conv q, k, v, proj;
} attn;

typedef struct level {
    resnet block[MAX_BLOCKS + 1];
    attn at[MAX_BLOCKS + 1];
    int has_attn;
    vae_conv resample; /* Downsample / Upsample conv, when resamp_with_conv */
} level;

typedef struct half {
    vae_conv conv_in, conv_out;
    resnet mid1, mid2;
    attn mid_attn;
    level lv[MAX_LEVELS];
    vae_norm norm_out;
} half;

typedef struct vqgan {
    int n_levels, n_blocks, resamp_conv, gumbel;
    int embed_dim, n_embed, z_channels;
    half enc, dec;
    vae_conv quant_conv, post_quant_conv, proj;
    const float *codebook; /* [n_embed][embed_dim] */
    const float *code_sq;  /* |e_j|², computed at load (code_sq_host; a device copy after
                            * vae_to_backend) */
    float *code_sq_host;
} vqgan;

/* ---- loading ----------------------------------------------------------------- */

static dalle_status conv(dalle_bundle *b, const char *prefix, int cin, int cout, int k,
                         int stride, int pad, vae_conv *out)
{
    char wn[224], bn[224];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    return vae_load_conv(b, wn, bn, cin, cout, k, stride, pad, 0, out);
}

static dalle_status norm(dalle_bundle *b, const char *prefix, int c, vae_norm *out)
{
    if (c % 32)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: %s: GroupNorm(32) over %d channels (not a multiple of 32)",
                          bundle_path(b), prefix, c);
    return vae_load_norm(b, prefix, c, out);
}

static dalle_status load_resnet(dalle_bundle *b, const char *prefix, int cin, int cout,
                                resnet *r)
{
    char p[192];
    dalle_status s;
    snprintf(p, sizeof p, "%s.norm1", prefix);
    if ((s = norm(b, p, cin, &r->n1)))
        return s;
    snprintf(p, sizeof p, "%s.conv1", prefix);
    if ((s = conv(b, p, cin, cout, 3, 1, 1, &r->c1)))
        return s;
    snprintf(p, sizeof p, "%s.norm2", prefix);
    if ((s = norm(b, p, cout, &r->n2)))
        return s;
    snprintf(p, sizeof p, "%s.conv2", prefix);
    if ((s = conv(b, p, cout, cout, 3, 1, 1, &r->c2)))
        return s;
    r->has_nin = cin != cout;
    if (!r->has_nin)
        return DALLE_OK;
    snprintf(p, sizeof p, "%s.nin_shortcut", prefix);
    return conv(b, p, cin, cout, 1, 1, 0, &r->nin);
}

static dalle_status load_attn(dalle_bundle *b, const char *prefix, int c, attn *a)
{
    char p[192];
    dalle_status s;
    snprintf(p, sizeof p, "%s.norm", prefix);
    if ((s = norm(b, p, c, &a->norm)))
        return s;
    const char *names[4] = {"q", "k", "v", "proj_out"};
    vae_conv *cs[4] = {&a->q, &a->k, &a->v, &a->proj};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s.%s", prefix, names[i]);
        if ((s = conv(b, p, c, c, 1, 1, 0, cs[i])))
            return s;
    }
    return DALLE_OK;
}

typedef struct ddconfig {
    int ch, n_levels, mult[MAX_LEVELS], n_blocks, resolution, z_channels, in_ch, out_ch;
    int double_z, resamp_conv;
    int64_t attn_res[64];
    int64_t n_attn;
} ddconfig;

static int in_attn(const ddconfig *d, int64_t res)
{
    for (int64_t i = 0; i < d->n_attn; i++)
        if (d->attn_res[i] == res)
            return 1;
    return 0;
}

static dalle_status load_encoder(dalle_bundle *b, const ddconfig *d, half *e)
{
    char p[192];
    dalle_status s;
    if ((s = conv(b, "vae.model.encoder.conv_in", d->in_ch, d->ch, 3, 1, 1, &e->conv_in)))
        return s;
    int64_t res = d->resolution;
    int c = d->ch;
    for (int i = 0; i < d->n_levels; i++) {
        level *lv = &e->lv[i];
        int out = d->ch * d->mult[i];
        lv->has_attn = in_attn(d, res);
        for (int j = 0; j < d->n_blocks; j++) {
            snprintf(p, sizeof p, "vae.model.encoder.down.%d.block.%d", i, j);
            if ((s = load_resnet(b, p, c, out, &lv->block[j])))
                return s;
            c = out;
            snprintf(p, sizeof p, "vae.model.encoder.down.%d.attn.%d", i, j);
            if (lv->has_attn && (s = load_attn(b, p, c, &lv->at[j])))
                return s;
        }
        if (i != d->n_levels - 1) {
            snprintf(p, sizeof p, "vae.model.encoder.down.%d.downsample.conv", i);
            if (d->resamp_conv && (s = conv(b, p, c, c, 3, 2, 0, &lv->resample)))
                return s;
            /* F.pad(x, (0, 1, 0, 1)): right and bottom only */
            lv->resample.g.pad_bottom = lv->resample.g.pad_right = 1;
            res /= 2;
        }
    }
    if ((s = load_resnet(b, "vae.model.encoder.mid.block_1", c, c, &e->mid1)) ||
        (s = load_attn(b, "vae.model.encoder.mid.attn_1", c, &e->mid_attn)) ||
        (s = load_resnet(b, "vae.model.encoder.mid.block_2", c, c, &e->mid2)) ||
        (s = norm(b, "vae.model.encoder.norm_out", c, &e->norm_out)))
        return s;
    return conv(b, "vae.model.encoder.conv_out", c, (d->double_z ? 2 : 1) * d->z_channels, 3, 1,
                1, &e->conv_out);
}

static dalle_status load_decoder(dalle_bundle *b, const ddconfig *d, half *e)
{
    char p[192];
    dalle_status s;
    int c = d->ch * d->mult[d->n_levels - 1];
    int64_t res = d->resolution >> (d->n_levels - 1);
    if ((s = conv(b, "vae.model.decoder.conv_in", d->z_channels, c, 3, 1, 1, &e->conv_in)) ||
        (s = load_resnet(b, "vae.model.decoder.mid.block_1", c, c, &e->mid1)) ||
        (s = load_attn(b, "vae.model.decoder.mid.attn_1", c, &e->mid_attn)) ||
        (s = load_resnet(b, "vae.model.decoder.mid.block_2", c, c, &e->mid2)))
        return s;
    for (int i = d->n_levels - 1; i >= 0; i--) {
        level *lv = &e->lv[i];
        int out = d->ch * d->mult[i];
        lv->has_attn = in_attn(d, res);
        for (int j = 0; j <= d->n_blocks; j++) {
            snprintf(p, sizeof p, "vae.model.decoder.up.%d.block.%d", i, j);
            if ((s = load_resnet(b, p, c, out, &lv->block[j])))
                return s;
            c = out;
            snprintf(p, sizeof p, "vae.model.decoder.up.%d.attn.%d", i, j);
            if (lv->has_attn && (s = load_attn(b, p, c, &lv->at[j])))
                return s;
        }
        if (i != 0) {
            snprintf(p, sizeof p, "vae.model.decoder.up.%d.upsample.conv", i);
            if (d->resamp_conv && (s = conv(b, p, c, c, 3, 1, 1, &lv->resample)))
                return s;
            res *= 2;
        }
    }
    if ((s = norm(b, "vae.model.decoder.norm_out", c, &e->norm_out)))
        return s;
    return conv(b, "vae.model.decoder.conv_out", c, d->out_ch, 3, 1, 1, &e->conv_out);
}

static dalle_status read_ddconfig(dalle_bundle *b, ddconfig *d)
{
    dalle_status s;
    int64_t mult[MAX_LEVELS + 1], n = 0;
    int give_pre_end;
    if ((s = vae_meta_int(b, "vae.ddconfig.ch", -1, 1, 1 << 14, &d->ch)) ||
        (s = vae_meta_int(b, "vae.ddconfig.num_res_blocks", -1, 1, MAX_BLOCKS, &d->n_blocks)) ||
        (s = vae_meta_int(b, "vae.ddconfig.resolution", -1, 1, 1 << 16, &d->resolution)) ||
        (s = vae_meta_int(b, "vae.ddconfig.z_channels", -1, 1, 1 << 16, &d->z_channels)) ||
        (s = vae_meta_int(b, "vae.ddconfig.in_channels", -1, 1, 64, &d->in_ch)) ||
        (s = vae_meta_int(b, "vae.ddconfig.out_ch", -1, 1, 64, &d->out_ch)))
        return s;
    if ((s = bundle_bool(b, "vae.ddconfig.double_z", 1, &d->double_z)) || /* Encoder's default */
        (s = bundle_bool(b, "vae.ddconfig.resamp_with_conv", 1, &d->resamp_conv)) ||
        (s = bundle_bool(b, "vae.ddconfig.give_pre_end", 0, &give_pre_end)))
        return s;
    s = dalle_bundle_meta_i64_array(b, "vae.ddconfig.ch_mult", mult, MAX_LEVELS + 1, &n);
    if (s || n < 1 || n > MAX_LEVELS)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: metadata 'vae.ddconfig.ch_mult': expected 1..%d integers",
                          bundle_path(b), MAX_LEVELS);
    d->n_levels = (int)n;
    for (int i = 0; i < d->n_levels; i++) {
        if (mult[i] < 1 || mult[i] > 64)
            return dalle_fail(DALLE_ERR_MISMATCH, "%s: vae.ddconfig.ch_mult[%d] = %lld",
                              bundle_path(b), i, (long long)mult[i]);
        d->mult[i] = (int)mult[i];
    }
    s = dalle_bundle_meta_i64_array(b, "vae.ddconfig.attn_resolutions", d->attn_res, 64,
                                    &d->n_attn);
    if (s == DALLE_ERR_NOT_FOUND)
        d->n_attn = 0;
    else if (s || d->n_attn > 64)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: metadata 'vae.ddconfig.attn_resolutions': expected up to 64 "
                          "integers",
                          bundle_path(b));
    if (d->in_ch != 3 || d->out_ch != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: a VQGAN of %d input / %d output channels: libdalle handles RGB "
                          "(3) only",
                          bundle_path(b), d->in_ch, d->out_ch);
    if (give_pre_end)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: vae.ddconfig.give_pre_end: a decoder without its output layers",
                          bundle_path(b));
    if (d->double_z)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: vae.ddconfig.double_z is true: the encoder's 2·z_channels "
                          "outputs do not fit quant_conv (upstream fails too)",
                          bundle_path(b));
    return DALLE_OK;
}

static dalle_status load_net(dalle_bundle *b, const model_shapes *m, vqgan *n)
{
    dalle_status s;
    ddconfig d;
    memset(&d, 0, sizeof d);
    if ((s = read_ddconfig(b, &d)) ||
        (s = vae_meta_int(b, "vae.embed_dim", -1, 1, 1 << 16, &n->embed_dim)) ||
        (s = vae_meta_int(b, "vae.n_embed", -1, 1, 1 << 24, &n->n_embed)) ||
        (s = bundle_bool(b, "vae.is_gumbel", 0, &n->gumbel)))
        return s;
    if (dalle_bundle_find_tensor(b, "vae.model.quantize.used") >= 0 ||
        dalle_bundle_meta_str(b, "vae.remap", &(const char *){NULL}) == DALLE_OK)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: a VQGAN quantizer with index remapping (remap) is not supported",
                          bundle_path(b));
    if (n->n_embed != m->num_image_tokens)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: vae.n_embed %d disagrees with vae.num_tokens %d",
                          bundle_path(b), n->n_embed, m->num_image_tokens);
    /* VQGanVAE derives num_layers (hence the token grid) from
     * resolution / attn_resolutions[0]; the network's own factor is
     * 2^(levels - 1). They must agree or the sequence length is wrong. */
    if (m->image_fmap_size << (d.n_levels - 1) != m->image_size)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: the encoder halves the image %d times (len(ch_mult) - 1) but "
                          "vae.num_layers gives %d tokens per side for %d px",
                          bundle_path(b), d.n_levels - 1, m->image_fmap_size, m->image_size);
    n->n_levels = d.n_levels;
    n->n_blocks = d.n_blocks;
    n->resamp_conv = d.resamp_conv;
    n->z_channels = d.z_channels;
    if ((s = load_encoder(b, &d, &n->enc)) || (s = load_decoder(b, &d, &n->dec)) ||
        (s = conv(b, "vae.model.quant_conv", d.z_channels, n->embed_dim, 1, 1, 0,
                  &n->quant_conv)) ||
        (s = conv(b, "vae.model.post_quant_conv", n->embed_dim, d.z_channels, 1, 1, 0,
                  &n->post_quant_conv)))
        return s;
    int64_t cd[2] = {n->n_embed, n->embed_dim};
    if (n->gumbel) {
        /* GumbelQuantize(num_hiddens = z_channels): its proj sees quant_conv's
         * embed_dim outputs, so upstream only runs when the two agree */
        if ((s = bundle_tensor_f32(b, "vae.model.quantize.embed.weight", 2, cd, &n->codebook)) ||
            (s = conv(b, "vae.model.quantize.proj", n->embed_dim, n->n_embed, 1, 1, 0,
                      &n->proj)))
            return s;
        return DALLE_OK;
    }
    if ((s = bundle_tensor_f32(b, "vae.model.quantize.embedding.weight", 2, cd, &n->codebook)))
        return s;
    n->code_sq = n->code_sq_host = malloc(sizeof(float) * (size_t)n->n_embed);
    if (!n->code_sq_host)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
    for (int j = 0; j < n->n_embed; j++) {
        const float *e = n->codebook + (int64_t)j * n->embed_dim;
        float acc = 0.0f;
        for (int i = 0; i < n->embed_dim; i++)
            acc += e[i] * e[i];
        n->code_sq_host[j] = acc;
    }
    return DALLE_OK;
}

/* ---- the networks --------------------------------------------------------- */

static int slot_after(vae_act x, int k) { return (x.slot + k) % VAE_SLOTS; }

static vae_act run_resnet(vae_run *r, const resnet *rb, vae_act x)
{
    const int s1 = slot_after(x, 1), s2 = slot_after(x, 2);
    vae_act h = vae_norm_run(r, &rb->n1, x, 1, s1);
    h = vae_conv_run(r, &rb->c1, h, s2);
    h = vae_norm_run(r, &rb->n2, h, 1, s2);
    /* dropout: identity in eval mode */
    h = vae_conv_run(r, &rb->c2, h, s1);
    if (rb->has_nin) {
        vae_act sc = vae_conv_run(r, &rb->nin, x, s2);
        vae_residual_run(r, sc, h, 1.0f);
    } else {
        vae_residual_run(r, x, h, 1.0f);
    }
    return h;
}

static vae_act run_attn(vae_run *r, const attn *a, vae_act x)
{
    const int n = x.h * x.w, c = x.c;
    vae_act h = vae_norm_run(r, &a->norm, x, 0, slot_after(x, 1));
    vae_act q = vae_conv_run(r, &a->q, h, slot_after(x, 2));
    vae_act k = vae_conv_run(r, &a->k, h, slot_after(x, 3));
    vae_act v = vae_conv_run(r, &a->v, h, slot_after(x, 4));
    float *w = vae_aux(r, (int64_t)n * n);
    vae_act o = vae_new(r, slot_after(x, 1), c, x.h, x.w);
    if (!r->measure) {
        backend *be = r->be;
        /* w[i][j] = softmax_j(q_i · k_j · c^-0.5) over positions */
        be->op->gemm(be, 1, 0, n, n, c, 1.0f, q.d, n, k.d, n, 0.0f, w, n);
        be->op->softmax_scaled(be, w, n, n, (float)(1.0 / sqrt((double)c)));
        /* o[c][i] = Σ_j v[c][j] · w[i][j] */
        be->op->gemm(be, 0, 1, c, n, n, 1.0f, v.d, n, w, n, 0.0f, o.d, n);
    }
    vae_act y = vae_conv_run(r, &a->proj, o, slot_after(x, 2));
    vae_residual_run(r, x, y, 1.0f);
    return y;
}

static vae_act run_tail(vae_run *r, const half *e, vae_act x)
{
    x = vae_norm_run(r, &e->norm_out, x, 1, x.slot);
    return vae_conv_run(r, &e->conv_out, x, slot_after(x, 1));
}

static vae_act decode_net(const void *net, vae_run *r, const int32_t *ids, int grid)
{
    const vqgan *n = net;
    const int E = n->embed_dim;
    /* one_hot @ codebook: exact rows, 'b (h w) c -> b c h w' */
    vae_act x = vae_gather_run(r, n->codebook, E, 1, NULL, ids, E, grid, 0);
    x = vae_conv_run(r, &n->post_quant_conv, x, 1);
    const half *d = &n->dec;
    x = vae_conv_run(r, &d->conv_in, x, slot_after(x, 1));
    x = run_resnet(r, &d->mid1, x);
    x = run_attn(r, &d->mid_attn, x);
    x = run_resnet(r, &d->mid2, x);
    for (int i = n->n_levels - 1; i >= 0; i--) {
        const level *lv = &d->lv[i];
        for (int j = 0; j <= n->n_blocks; j++) {
            x = run_resnet(r, &lv->block[j], x);
            if (lv->has_attn)
                x = run_attn(r, &lv->at[j], x);
        }
        if (i != 0) {
            x = vae_upsample_run(r, x, slot_after(x, 1));
            if (n->resamp_conv)
                x = vae_conv_run(r, &lv->resample, x, slot_after(x, 1));
        }
    }
    return run_tail(r, d, x);
}

/* Minus the squared distance of every position's z to every codebook
 * vector, in upstream's order of operations: (|z|² + |e|²) - 2 z·e. */
static vae_act nearest_scores(const vqgan *n, vae_run *r, vae_act z)
{
    const int np = z.h * z.w;
    vae_act s = vae_new(r, slot_after(z, 1), n->n_embed, z.h, z.w);
    float *zz = vae_aux(r, np);
    if (!r->measure)
        r->be->op->vq_scores(r->be, z.d, n->embed_dim, np, n->codebook, n->code_sq, n->n_embed,
                             zz, s.d);
    return s;
}

/* x: the image as 2x - 1 (maps) */
static vae_act encode_net(const void *net, vae_run *r, vae_act x)
{
    const vqgan *n = net;
    const half *e = &n->enc;
    x = vae_conv_run(r, &e->conv_in, x, 1);
    for (int i = 0; i < n->n_levels; i++) {
        const level *lv = &e->lv[i];
        for (int j = 0; j < n->n_blocks; j++) {
            x = run_resnet(r, &lv->block[j], x);
            if (lv->has_attn)
                x = run_attn(r, &lv->at[j], x);
        }
        if (i != n->n_levels - 1)
            x = n->resamp_conv ? vae_conv_run(r, &lv->resample, x, slot_after(x, 1))
                               : vae_pool_run(r, x, 0, slot_after(x, 1));
    }
    x = run_resnet(r, &e->mid1, x);
    x = run_attn(r, &e->mid_attn, x);
    x = run_resnet(r, &e->mid2, x);
    x = run_tail(r, e, x);
    x = vae_conv_run(r, &n->quant_conv, x, slot_after(x, 1));
    if (n->gumbel)
        return vae_conv_run(r, &n->proj, x, slot_after(x, 1));
    return nearest_scores(n, r, x);
}

/* In: 2x - 1; out: (clamp(x, -1, 1) + 1) / 2. */
static void maps(const void *net, conv_map *in, conv_map *out)
{
    (void)net;
    *in = (conv_map){CONV_MAP_AFFINE, {2.0f, 2.0f, 2.0f}, {-1.0f, -1.0f, -1.0f}};
    *out = (conv_map){CONV_MAP_SYMMETRIC, {0}, {0}};
}

static void up_resnet(vae_upload *u, resnet *rb)
{
    vae_up_norm(u, &rb->n1);
    vae_up_norm(u, &rb->n2);
    vae_up_conv(u, &rb->c1);
    vae_up_conv(u, &rb->c2);
    vae_up_conv(u, &rb->nin);
}

static void up_attn(vae_upload *u, attn *a)
{
    vae_up_norm(u, &a->norm);
    vae_up_conv(u, &a->q);
    vae_up_conv(u, &a->k);
    vae_up_conv(u, &a->v);
    vae_up_conv(u, &a->proj);
}

/* blocks: per level, the encoder's or the decoder's (one more). Tensors a
 * network does not have (no attention at a level, no resampling conv) are
 * NULL, which vae_up passes over. */
static void up_half(vae_upload *u, half *h, int n_levels, int blocks)
{
    vae_up_conv(u, &h->conv_in);
    vae_up_conv(u, &h->conv_out);
    up_resnet(u, &h->mid1);
    up_attn(u, &h->mid_attn);
    up_resnet(u, &h->mid2);
    vae_up_norm(u, &h->norm_out);
    for (int i = 0; i < n_levels; i++) {
        level *lv = &h->lv[i];
        for (int j = 0; j < blocks; j++) {
            up_resnet(u, &lv->block[j]);
            up_attn(u, &lv->at[j]);
        }
        vae_up_conv(u, &lv->resample);
    }
}

static void upload(void *net, vae_upload *u)
{
    vqgan *n = net;
    up_half(u, &n->enc, n->n_levels, n->n_blocks);
    up_half(u, &n->dec, n->n_levels, n->n_blocks + 1);
    vae_up_conv(u, &n->quant_conv);
    vae_up_conv(u, &n->post_quant_conv);
    vae_up(u, &n->codebook, (int64_t)n->n_embed * n->embed_dim);
    vae_up_conv(u, &n->proj);            /* GumbelVQ */
    vae_up(u, &n->code_sq, n->n_embed);  /* VQModel */
}

static void free_net(void *net)
{
    vqgan *n = net;
    if (n)
        free(n->code_sq_host);
    free(n);
}

static const vae_family family = {"VQGAN", 3, decode_net, encode_net, maps, upload, free_net};

dalle_status vae_vqgan_load(dalle_bundle *b, const model_shapes *shapes, void **net,
                            const vae_family **fam)
{
    vqgan *n = calloc(1, sizeof *n);
    if (!n)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
    dalle_status s = load_net(b, shapes, n);
    if (s) {
        free_net(n);
        return s;
    }
    *net = n;
    *fam = &family;
    return DALLE_OK;
}
