/* DALLE-pytorch's DiscreteVAE (dalle_pytorch.py, commit 58c1e1a).
 *
 *   encoder: num_layers × [Conv2d(4, stride 2, pad 1), ReLU]   channels → hidden
 *            num_resnet_blocks × ResBlock(hidden)
 *            Conv2d(1) hidden → num_tokens                      (the logits)
 *   decoder: [Conv2d(1) codebook_dim → hidden, if there are ResBlocks]
 *            num_resnet_blocks × ResBlock(hidden)
 *            num_layers × [ConvTranspose2d(4, stride 2, pad 1), ReLU]
 *            Conv2d(1) hidden → channels
 *   ResBlock: x + Conv1(ReLU(Conv3(ReLU(Conv3(x)))))
 *
 * Encoding normalises the [0, 1] input with (x - mean) / std first and takes
 * the argmax of the logits; decoding looks the ids up in the codebook. The
 * decoder's output is in that normalised space (upstream returns it as is);
 * libdalle maps it back with x · std + mean and clamps to [0, 1].
 */
#include <stdio.h>
#include <stdlib.h>

#include "bundle.h"
#include "error.h"
#include "vae.h"

#define MAX_LAYERS 16
#define MAX_RES 64

typedef struct resblock {
    vae_conv c0, c2, c4; /* net.0 (3×3), net.2 (3×3), net.4 (1×1) */
} resblock;

typedef struct dvae {
    int num_layers, num_res, hidden, codebook_dim, num_tokens;
    const float *codebook; /* [num_tokens][codebook_dim] */
    float mean[3], std[3];
    int normalise;
    vae_conv enc_down[MAX_LAYERS], enc_out;
    resblock enc_res[MAX_RES], dec_res[MAX_RES];
    vae_conv dec_in, dec_up[MAX_LAYERS], dec_out;
} dvae;

static dalle_status load_conv(dalle_bundle *b, const char *prefix, int cin, int cout, int k,
                              int stride, int pad, int transposed, vae_conv *out)
{
    char wn[128], bn[128];
    snprintf(wn, sizeof wn, "%s.weight", prefix);
    snprintf(bn, sizeof bn, "%s.bias", prefix);
    return vae_load_conv(b, wn, bn, cin, cout, k, stride, pad, transposed, out);
}

static dalle_status load_resblock(dalle_bundle *b, const char *seq, int index, int c,
                                  resblock *rb)
{
    char p[96];
    dalle_status s;
    snprintf(p, sizeof p, "vae.%s.%d.net.0", seq, index);
    if ((s = load_conv(b, p, c, c, 3, 1, 1, 0, &rb->c0)))
        return s;
    snprintf(p, sizeof p, "vae.%s.%d.net.2", seq, index);
    if ((s = load_conv(b, p, c, c, 3, 1, 1, 0, &rb->c2)))
        return s;
    snprintf(p, sizeof p, "vae.%s.%d.net.4", seq, index);
    return load_conv(b, p, c, c, 1, 1, 0, 0, &rb->c4);
}

/* Mean/std per channel: f64 arrays, both present or both absent (no
 * normalisation, upstream's normalization=None). */
static dalle_status load_normalisation(dalle_bundle *b, dvae *n)
{
    double mean[3], std[3];
    int64_t nm = 0, ns = 0;
    dalle_status sm = dalle_bundle_meta_f64_array(b, "vae.normalization.mean", mean, 3, &nm);
    dalle_status ss = dalle_bundle_meta_f64_array(b, "vae.normalization.std", std, 3, &ns);
    if (sm == DALLE_ERR_NOT_FOUND && ss == DALLE_ERR_NOT_FOUND) {
        n->normalise = 0;
        return DALLE_OK;
    }
    if (sm || ss || nm != 3 || ns != 3)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: metadata 'vae.normalization.mean'/'.std' must both be f64 arrays "
                          "of 3 values",
                          bundle_path(b));
    for (int c = 0; c < 3; c++) {
        if (!(std[c] != 0.0) || mean[c] != mean[c])
            return dalle_fail(DALLE_ERR_MISMATCH,
                              "%s: metadata 'vae.normalization.std'[%d] = %g: must be non-zero",
                              bundle_path(b), c, std[c]);
        /* upstream moves the Python floats to the images' dtype, float32 */
        n->mean[c] = (float)mean[c];
        n->std[c] = (float)std[c];
    }
    n->normalise = 1;
    return DALLE_OK;
}

static dalle_status load_net(dalle_bundle *b, const model_shapes *m, dvae *n)
{
    dalle_status s;
    int channels;
    if ((s = vae_meta_int(b, "vae.num_layers", 3, 1, MAX_LAYERS, &n->num_layers)) ||
        (s = vae_meta_int(b, "vae.num_resnet_blocks", 0, 0, MAX_RES, &n->num_res)) ||
        (s = vae_meta_int(b, "vae.hidden_dim", 64, 1, 1 << 16, &n->hidden)) ||
        (s = vae_meta_int(b, "vae.codebook_dim", 512, 1, 1 << 16, &n->codebook_dim)) ||
        (s = vae_meta_int(b, "vae.num_tokens", 512, 1, 1 << 24, &n->num_tokens)) ||
        (s = vae_meta_int(b, "vae.channels", 3, 1, 1 << 16, &channels)))
        return s;
    if (channels != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "%s: a DiscreteVAE of %d channels: libdalle handles RGB (3) only",
                          bundle_path(b), channels);
    if (n->num_tokens != m->num_image_tokens)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: vae.num_tokens %d disagrees with %d",
                          bundle_path(b), n->num_tokens, m->num_image_tokens);
    if ((s = load_normalisation(b, n)))
        return s;
    int64_t cd[2] = {n->num_tokens, n->codebook_dim};
    if ((s = bundle_tensor_f32(b, "vae.codebook.weight", 2, cd, &n->codebook)))
        return s;

    const int L = n->num_layers, R = n->num_res, h = n->hidden;
    char p[96];
    for (int i = 0; i < L; i++) {
        snprintf(p, sizeof p, "vae.encoder.%d.0", i);
        if ((s = load_conv(b, p, i ? h : 3, h, 4, 2, 1, 0, &n->enc_down[i])))
            return s;
    }
    for (int j = 0; j < R; j++)
        if ((s = load_resblock(b, "encoder", L + j, h, &n->enc_res[j])))
            return s;
    snprintf(p, sizeof p, "vae.encoder.%d", L + R);
    if ((s = load_conv(b, p, h, n->num_tokens, 1, 1, 0, 0, &n->enc_out)))
        return s;

    /* With ResBlocks a 1×1 convolution brings the codebook vectors to the
     * hidden width first; without, the first ConvTranspose2d takes them. */
    int d = 0;
    if (R > 0 && (s = load_conv(b, "vae.decoder.0", n->codebook_dim, h, 1, 1, 0, 0, &n->dec_in)))
        return s;
    if (R > 0)
        d = 1;
    for (int j = 0; j < R; j++)
        if ((s = load_resblock(b, "decoder", d + j, h, &n->dec_res[j])))
            return s;
    d += R;
    for (int i = 0; i < L; i++) {
        snprintf(p, sizeof p, "vae.decoder.%d.0", d + i);
        int cin = (i == 0 && R == 0) ? n->codebook_dim : h;
        if ((s = load_conv(b, p, cin, h, 4, 2, 1, 1, &n->dec_up[i])))
            return s;
    }
    snprintf(p, sizeof p, "vae.decoder.%d", d + L);
    return load_conv(b, p, h, 3, 1, 1, 0, 0, &n->dec_out);
}

/* Slots other than `a`: the two scratch slots of a block. */
static void others(int a, int *b, int *c)
{
    *b = (a + 1) % 3;
    *c = (a + 2) % 3;
}

static vae_act run_resblock(vae_run *r, const resblock *rb, vae_act x)
{
    int s1, s2;
    others(x.slot, &s1, &s2);
    vae_act h = vae_conv_run(r, &rb->c0, x, s1);
    h = vae_relu_run(r, h, s1);
    vae_act h2 = vae_conv_run(r, &rb->c2, h, s2);
    h2 = vae_relu_run(r, h2, s2);
    h = vae_conv_run(r, &rb->c4, h2, s1);
    vae_residual_run(r, h, x, 1.0f); /* x = net(x) + x */
    return x;
}

static vae_act decode_net(const void *net, vae_run *r, const int32_t *ids, int grid)
{
    const dvae *n = net;
    const int D = n->codebook_dim;
    /* codebook(ids), 'b (h w) d -> b d h w' */
    vae_act x = vae_gather_run(r, n->codebook, D, 1, NULL, ids, D, grid, 0);
    if (n->num_res > 0)
        x = vae_conv_run(r, &n->dec_in, x, 1);
    for (int j = 0; j < n->num_res; j++)
        x = run_resblock(r, &n->dec_res[j], x);
    for (int i = 0; i < n->num_layers; i++) {
        x = vae_deconv_run(r, &n->dec_up[i], x, (x.slot + 1) % 3);
        x = vae_relu_run(r, x, x.slot);
    }
    return vae_conv_run(r, &n->dec_out, x, (x.slot + 1) % 3);
}

/* x: the normalised image (maps) */
static vae_act encode_net(const void *net, vae_run *r, vae_act x)
{
    const dvae *n = net;
    for (int i = 0; i < n->num_layers; i++) {
        x = vae_conv_run(r, &n->enc_down[i], x, (x.slot + 1) % 3);
        x = vae_relu_run(r, x, x.slot);
    }
    for (int j = 0; j < n->num_res; j++)
        x = run_resblock(r, &n->enc_res[j], x);
    return vae_conv_run(r, &n->enc_out, x, (x.slot + 1) % 3);
}

/* In: (x - mean) / std (or as is); out: x · std + mean (or as is), clamped
 * to [0, 1], NaN to 0. */
static void maps(const void *net, conv_map *in, conv_map *out)
{
    const dvae *n = net;
    *in = (conv_map){n->normalise ? CONV_MAP_NORMALISE : CONV_MAP_COPY, {0}, {0}};
    *out = (conv_map){n->normalise ? CONV_MAP_AFFINE_CLAMP : CONV_MAP_CLAMP, {0}, {0}};
    for (int c = 0; c < 3; c++) {
        in->a[c] = n->mean[c];
        in->b[c] = n->std[c];
        out->a[c] = n->std[c];
        out->b[c] = n->mean[c];
    }
}

static void up_resblock(vae_upload *u, resblock *rb)
{
    vae_up_conv(u, &rb->c0);
    vae_up_conv(u, &rb->c2);
    vae_up_conv(u, &rb->c4);
}

static void upload(void *net, vae_upload *u)
{
    dvae *n = net;
    vae_up(u, &n->codebook, (int64_t)n->num_tokens * n->codebook_dim);
    for (int i = 0; i < n->num_layers; i++) {
        vae_up_conv(u, &n->enc_down[i]);
        vae_up_conv(u, &n->dec_up[i]);
    }
    for (int j = 0; j < n->num_res; j++) {
        up_resblock(u, &n->enc_res[j]);
        up_resblock(u, &n->dec_res[j]);
    }
    vae_up_conv(u, &n->enc_out);
    vae_up_conv(u, &n->dec_in); /* NULL without ResBlocks: passed over */
    vae_up_conv(u, &n->dec_out);
}

static const vae_family family = {"DiscreteVAE", 3, decode_net, encode_net, maps, upload, free};

dalle_status vae_dvae_load(dalle_bundle *b, const model_shapes *shapes, void **net,
                           const vae_family **fam)
{
    dvae *n = calloc(1, sizeof *n);
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
