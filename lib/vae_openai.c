/* OpenAI's dVAE (openai/DALL-E dall_e/encoder.py, decoder.py, utils.py,
 * commit 5be4b23), as DALLE-pytorch's OpenAIDiscreteVAE uses it.
 *
 *   encoder: Conv 7×7 input → n_hid; four groups of n_blk_per_group
 *            EncoderBlocks of widths 1, 2, 4, 8 × n_hid, a 2×2 max-pool after
 *            each of the first three; ReLU, Conv 1×1 → vocab_size logits.
 *   decoder: Conv 1×1 vocab_size → n_init (on the one-hot ids); four groups
 *            of DecoderBlocks of widths 8, 4, 2, 1 × n_hid, a nearest 2×
 *            upsampling after each of the first three; ReLU, Conv 1×1 →
 *            2 · output_channels (logit-Laplace means and log-scales).
 *   block:   id_path(x) + post_gain · res_path(x), post_gain = 1 / n_layers²
 *            (n_layers = group_count · n_blk_per_group); id_path is a 1×1
 *            conv when the width changes; res_path is ReLU-conv four times
 *            with n_out / 4 hidden channels (encoder: 3,3,3,1; decoder:
 *            1,3,3,3). dall_e convs pad (k - 1) / 2.
 *
 * Encoding: map_pixels (0.8 x + 0.1) then the argmax of the logits.
 * Decoding: unmap_pixels(sigmoid(stats[:3])) = clamp((σ - 0.1) / 0.8, 0, 1).
 */
#include <stdio.h>
#include <stdlib.h>

#include "bundle.h"
#include "error.h"
#include "vae.h"

#define GROUPS 4
#define MAX_BLOCKS 64

/* dall_e.utils.logit_laplace_eps */
#define LAPLACE_EPS 0.1f

typedef struct block {
    int has_id;
    vae_conv id, c1, c2, c3, c4;
} block;

typedef struct openai_vae {
    int n_hid, n_blk, vocab, n_init;
    float post_gain;
    vae_conv enc_in, enc_out, dec_in, dec_out;
    block enc[GROUPS][MAX_BLOCKS], dec[GROUPS][MAX_BLOCKS];
} openai_vae;

static dalle_status conv(dalle_bundle *b, const char *prefix, int cin, int cout, int k,
                         vae_conv *out)
{
    char wn[192], bn[192];
    snprintf(wn, sizeof wn, "%s.w", prefix);
    snprintf(bn, sizeof bn, "%s.b", prefix);
    return vae_load_conv(b, wn, bn, cin, cout, k, 1, (k - 1) / 2, 0, out);
}

static dalle_status load_block(dalle_bundle *b, const char *side, int g, int i, int n_in,
                               int n_out, const int ks[4], block *blk)
{
    char p[160];
    const int nh = n_out / 4;
    dalle_status s;
    blk->has_id = n_in != n_out;
    if (blk->has_id) {
        snprintf(p, sizeof p, "vae.%s.blocks.group_%d.block_%d.id_path", side, g + 1, i + 1);
        if ((s = conv(b, p, n_in, n_out, 1, &blk->id)))
            return s;
    }
    vae_conv *cs[4] = {&blk->c1, &blk->c2, &blk->c3, &blk->c4};
    const int cin[4] = {n_in, nh, nh, nh}, cout[4] = {nh, nh, nh, n_out};
    for (int j = 0; j < 4; j++) {
        snprintf(p, sizeof p, "vae.%s.blocks.group_%d.block_%d.res_path.conv_%d", side, g + 1,
                 i + 1, j + 1);
        if ((s = conv(b, p, cin[j], cout[j], ks[j], cs[j])))
            return s;
    }
    return DALLE_OK;
}

static dalle_status load_net(dalle_bundle *b, const model_shapes *m, openai_vae *n)
{
    dalle_status s;
    int groups, in_ch, out_ch, num_layers;
    if ((s = vae_meta_int(b, "vae.group_count", 4, 1, 64, &groups)) ||
        (s = vae_meta_int(b, "vae.n_hid", 256, 4, 1 << 14, &n->n_hid)) ||
        (s = vae_meta_int(b, "vae.n_blk_per_group", 2, 1, MAX_BLOCKS, &n->n_blk)) ||
        (s = vae_meta_int(b, "vae.vocab_size", 8192, 1, 1 << 24, &n->vocab)) ||
        (s = vae_meta_int(b, "vae.n_init", 128, 1, 1 << 16, &n->n_init)) ||
        (s = vae_meta_int(b, "vae.input_channels", 3, 1, 64, &in_ch)) ||
        (s = vae_meta_int(b, "vae.output_channels", 3, 1, 64, &out_ch)) ||
        (s = vae_meta_int(b, "vae.num_layers", 3, 0, 64, &num_layers)))
        return s;
    /* dall_e hard-codes the four groups (three poolings), whatever the
     * group_count class attribute says */
    if (groups != GROUPS || num_layers != 3)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: vae.group_count %d, vae.num_layers %d: dall_e has 4 groups and "
                          "3 poolings",
                          bundle_path(b), groups, num_layers);
    if (in_ch != 3 || out_ch != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: a dall_e model of %d input / %d output channels: libdalle "
                          "handles RGB (3) only",
                          bundle_path(b), in_ch, out_ch);
    if (n->vocab != m->num_image_tokens)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: vae.vocab_size %d disagrees with vae.num_tokens %d",
                          bundle_path(b), n->vocab, m->num_image_tokens);
    const int nl = GROUPS * n->n_blk;
    n->post_gain = (float)(1.0 / ((double)nl * nl));

    const int h = n->n_hid;
    const int enc_w[GROUPS] = {h, 2 * h, 4 * h, 8 * h}, dec_w[GROUPS] = {8 * h, 4 * h, 2 * h, h};
    const int enc_k[4] = {3, 3, 3, 1}, dec_k[4] = {1, 3, 3, 3};
    if ((s = conv(b, "vae.enc.blocks.input", 3, h, 7, &n->enc_in)))
        return s;
    int c = h;
    for (int g = 0; g < GROUPS; g++)
        for (int i = 0; i < n->n_blk; i++) {
            if ((s = load_block(b, "enc", g, i, c, enc_w[g], enc_k, &n->enc[g][i])))
                return s;
            c = enc_w[g];
        }
    if ((s = conv(b, "vae.enc.blocks.output.conv", 8 * h, n->vocab, 1, &n->enc_out)))
        return s;

    if ((s = conv(b, "vae.dec.blocks.input", n->vocab, n->n_init, 1, &n->dec_in)))
        return s;
    c = n->n_init;
    for (int g = 0; g < GROUPS; g++)
        for (int i = 0; i < n->n_blk; i++) {
            if ((s = load_block(b, "dec", g, i, c, dec_w[g], dec_k, &n->dec[g][i])))
                return s;
            c = dec_w[g];
        }
    return conv(b, "vae.dec.blocks.output.conv", h, 2 * out_ch, 1, &n->dec_out);
}

/* id_path(x) + post_gain · res_path(x), x in its slot; result in another. */
static vae_act run_block(vae_run *r, const block *blk, float post_gain, vae_act x)
{
    const int s0 = x.slot, s1 = (s0 + 1) % 3, s2 = (s0 + 2) % 3;
    vae_act h = vae_relu_run(r, x, s1);
    h = vae_conv_run(r, &blk->c1, h, s2);
    h = vae_relu_run(r, h, s2);
    h = vae_conv_run(r, &blk->c2, h, s1);
    h = vae_relu_run(r, h, s1);
    h = vae_conv_run(r, &blk->c3, h, s2);
    h = vae_relu_run(r, h, s2);
    vae_act res = vae_conv_run(r, &blk->c4, h, s1);
    if (blk->has_id) {
        vae_act id = vae_conv_run(r, &blk->id, x, s2);
        vae_residual_run(r, id, res, post_gain);
    } else {
        vae_residual_run(r, x, res, post_gain);
    }
    return res;
}

static vae_act decode_net(const void *net, vae_run *r, const int32_t *ids, int grid)
{
    const openai_vae *n = net;
    /* The input conv on one-hot ids is a column look-up: w[:, id] + b, the
     * same sum PyTorch's GEMM forms (every other term is an exact 0). */
    vae_act x = vae_gather_run(r, n->dec_in.w, 1, n->vocab, n->dec_in.b, ids, n->n_init, grid, 0);
    for (int g = 0; g < GROUPS; g++) {
        for (int i = 0; i < n->n_blk; i++)
            x = run_block(r, &n->dec[g][i], n->post_gain, x);
        if (g < GROUPS - 1)
            x = vae_upsample_run(r, x, (x.slot + 1) % 3);
    }
    x = vae_relu_run(r, x, x.slot);
    return vae_conv_run(r, &n->dec_out, x, (x.slot + 1) % 3);
}

/* x: the image after map_pixels (maps) */
static vae_act encode_net(const void *net, vae_run *r, vae_act x)
{
    const openai_vae *n = net;
    x = vae_conv_run(r, &n->enc_in, x, 1);
    for (int g = 0; g < GROUPS; g++) {
        for (int i = 0; i < n->n_blk; i++)
            x = run_block(r, &n->enc[g][i], n->post_gain, x);
        if (g < GROUPS - 1)
            x = vae_pool_run(r, x, 1, (x.slot + 1) % 3);
    }
    x = vae_relu_run(r, x, x.slot);
    return vae_conv_run(r, &n->enc_out, x, (x.slot + 1) % 3);
}

/* In: map_pixels, (1 - 2 eps) x + eps; out: unmap_pixels(sigmoid(x)),
 * clamp((σ - eps) / (1 - 2 eps), 0, 1). */
static void maps(const void *net, conv_map *in, conv_map *out)
{
    (void)net;
    const float scale = 1.0f - 2.0f * LAPLACE_EPS;
    *in = (conv_map){CONV_MAP_AFFINE, {scale, scale, scale},
                     {LAPLACE_EPS, LAPLACE_EPS, LAPLACE_EPS}};
    *out = (conv_map){CONV_MAP_LAPLACE, {LAPLACE_EPS, LAPLACE_EPS, LAPLACE_EPS},
                      {scale, scale, scale}};
}

static void up_block(vae_upload *u, block *blk)
{
    vae_up_conv(u, &blk->id); /* NULL without an id_path: passed over */
    vae_up_conv(u, &blk->c1);
    vae_up_conv(u, &blk->c2);
    vae_up_conv(u, &blk->c3);
    vae_up_conv(u, &blk->c4);
}

static void upload(void *net, vae_upload *u)
{
    openai_vae *n = net;
    vae_up_conv(u, &n->enc_in);
    vae_up_conv(u, &n->enc_out);
    vae_up_conv(u, &n->dec_in);
    vae_up_conv(u, &n->dec_out);
    for (int g = 0; g < GROUPS; g++)
        for (int i = 0; i < n->n_blk; i++) {
            up_block(u, &n->enc[g][i]);
            up_block(u, &n->dec[g][i]);
        }
}

static const vae_family family = {"dall_e dVAE", 6, decode_net, encode_net, maps, upload, free};

dalle_status vae_openai_load(dalle_bundle *b, const model_shapes *shapes, void **net,
                             const vae_family **fam)
{
    openai_vae *n = calloc(1, sizeof *n);
    if (!n)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", bundle_path(b));
    dalle_status s = load_net(b, shapes, n);
    if (s) {
        free(n);
        return s;
    }
    *net = n;
    *fam = &family;
    return DALLE_OK;
}
