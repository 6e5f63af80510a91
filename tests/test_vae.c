/* The image tokenizers (lib/vae*.c, lib/conv.c) and image files
 * (lib/image_io.c, lib/png.c).
 *
 * usage: test_vae TMPDIR [GOLDEN_DIR VAE_RESBLOCKS.dalle OPENAI_DVAE_64.dalle VQGAN.dalle
 *                         DALLE_FULL.dalle DALLE_VARIANTS.dalle DALLE_SHARED_ATTN.dalle
 *                         DALLE_CFG.dalle]
 *
 * Without the golden cases only the operation and image-file checks run.
 *  - conv.c against naive loops: convolutions of several geometries (with
 *    tiny im2col tiles too), transposed convolutions, GroupNorm, pooling.
 *  - per golden case: upstream's raw decoder output and encoder scores
 *    within case.json's tolerance_rel_l2, dalle_decode's [0, 1] pixels
 *    against the expected output mapped the same way, and dalle_encode's
 *    ids: at least 99% equal, every mismatch at a near-tie.
 *  - PNG round trip through dalle_write_png / dalle_read_image, resizing
 *    and cropping, and the errors for missing, non-image and truncated files.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "context.h"
#include "conv.h"
#include "dalle/dalle.h"
#include "golden.h"
#include "npy.h"
#include "vae.h"

static const char *golden, *tmpdir;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static uint32_t rng_state = 12345;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return (float)(rng_state >> 8) / (float)(1u << 23) - 1.0f;
}

static void fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = frand();
}

static double rel_l2(const float *a, const float *b, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* ---- conv.c against naive loops -------------------------------------------- */

static void naive_conv(const conv_geom *g, const float *x, int h, int w, const float *wt,
                       const float *b, float *y)
{
    int ho = conv_out_size(h, g->k, g->stride, g->pad_top, g->pad_bottom);
    int wo = conv_out_size(w, g->k, g->stride, g->pad_left, g->pad_right);
    for (int o = 0; o < g->cout; o++)
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                double acc = b ? b[o] : 0;
                for (int c = 0; c < g->cin; c++)
                    for (int ki = 0; ki < g->k; ki++)
                        for (int kj = 0; kj < g->k; kj++) {
                            int iy = i * g->stride - g->pad_top + ki;
                            int ix = j * g->stride - g->pad_left + kj;
                            if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                                acc += (double)wt[((o * g->cin + c) * g->k + ki) * g->k + kj] *
                                       x[(c * h + iy) * w + ix];
                        }
                y[(o * ho + i) * wo + j] = (float)acc;
            }
}

static void naive_deconv(int cin, int cout, int k, int s, int p, const float *x, int h, int w,
                         const float *wt, const float *b, float *y)
{
    int ho = (h - 1) * s - 2 * p + k, wo = (w - 1) * s - 2 * p + k;
    for (int o = 0; o < cout; o++)
        for (int i = 0; i < ho * wo; i++)
            y[o * ho * wo + i] = b[o];
    for (int c = 0; c < cin; c++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int o = 0; o < cout; o++)
                    for (int ki = 0; ki < k; ki++)
                        for (int kj = 0; kj < k; kj++) {
                            int oy = i * s - p + ki, ox = j * s - p + kj;
                            if (oy >= 0 && oy < ho && ox >= 0 && ox < wo)
                                y[(o * ho + oy) * wo + ox] +=
                                    wt[((c * cout + o) * k + ki) * k + kj] * x[(c * h + i) * w + j];
                        }
}

static void test_conv_ops(void)
{
    static float x[8 * 13 * 11], wt[16 * 8 * 7 * 7], b[16], y[16 * 40 * 40], ref[16 * 40 * 40],
        col[1 << 16];
    fill(x, sizeof x / sizeof *x);
    fill(wt, sizeof wt / sizeof *wt);
    fill(b, 16);
    struct {
        int cin, cout, k, s, pt, pb, pl, pr;
    } cases[] = {{8, 16, 3, 1, 1, 1, 1, 1}, {8, 5, 4, 2, 1, 1, 1, 1}, {8, 16, 1, 1, 0, 0, 0, 0},
                 {3, 8, 7, 1, 3, 3, 3, 3}, {8, 8, 3, 2, 0, 1, 0, 1}, {8, 6, 1, 2, 0, 0, 0, 0}};
    const int h = 13, w = 11;
    for (size_t t = 0; t < sizeof cases / sizeof *cases; t++) {
        conv_geom g = {cases[t].cin, cases[t].cout, cases[t].k, cases[t].s,
                       cases[t].pt, cases[t].pb, cases[t].pl, cases[t].pr};
        int ho = conv_out_size(h, g.k, g.stride, g.pad_top, g.pad_bottom);
        int wo = conv_out_size(w, g.k, g.stride, g.pad_left, g.pad_right);
        naive_conv(&g, x, h, w, wt, b, ref);
        /* whole im2col, then the smallest tiles (one output row) */
        for (int tiny = 0; tiny < 2; tiny++) {
            int64_t need = conv2d_col_need(&g, h, w, tiny ? 1 : (int64_t)1 << 16);
            conv2d(&g, x, h, w, wt, b, y, col, need, NULL);
            double e = rel_l2(y, ref, (int64_t)g.cout * ho * wo);
            CHECK(e < 1e-6, "conv2d cin %d cout %d k %d stride %d pad %d,%d,%d,%d%s: rel-L2 %.2e",
                  g.cin, g.cout, g.k, g.stride, g.pad_top, g.pad_bottom, g.pad_left, g.pad_right,
                  tiny ? " (row tiles)" : "", e);
        }
    }
    for (int tiny = 0; tiny < 2; tiny++) {
        const int cin = 8, cout = 6, k = 4, s = 2, p = 1, hh = 13, ww = 11;
        int ho = (hh - 1) * s - 2 * p + k, wo = (ww - 1) * s - 2 * p + k;
        naive_deconv(cin, cout, k, s, p, x, hh, ww, wt, b, ref);
        int64_t need = conv_transpose2d_col_need(cout, k, hh, ww, tiny ? 1 : (int64_t)1 << 16);
        conv_transpose2d(cin, cout, k, s, p, x, hh, ww, wt, b, y, col, need, NULL);
        double e = rel_l2(y, ref, (int64_t)cout * ho * wo);
        CHECK(e < 1e-6, "conv_transpose2d k 4 stride 2 pad 1%s: rel-L2 %.2e",
              tiny ? " (row tiles)" : "", e);
    }
    /* GroupNorm(32) over 64 channels of 5×3, with swish */
    {
        static float gx[64 * 15], gy[64 * 15], gain[64], gbias[64];
        fill(gx, 64 * 15);
        fill(gain, 64);
        fill(gbias, 64);
        conv_group_norm(gx, 64, 15, 32, 1e-6f, gain, gbias, 1, gy, NULL);
        double worst = 0;
        for (int g = 0; g < 32; g++) {
            double m = 0, v = 0;
            for (int i = 0; i < 30; i++)
                m += gx[g * 30 + i];
            m /= 30;
            for (int i = 0; i < 30; i++)
                v += (gx[g * 30 + i] - m) * (gx[g * 30 + i] - m);
            v /= 30;
            for (int i = 0; i < 30; i++) {
                int c = (g * 30 + i) / 15;
                double n = (gx[g * 30 + i] - m) / sqrt(v + 1e-6) * gain[c] + gbias[c];
                double want = n / (1 + exp(-n));
                worst = fmax(worst, fabs(want - gy[g * 30 + i]));
            }
        }
        CHECK(worst < 1e-5, "group_norm + swish: max abs error %.2e", worst);
    }
    {
        float px[2 * 4 * 6], pmax[2 * 2 * 3], pavg[2 * 2 * 3], up[2 * 8 * 12];
        fill(px, 48);
        conv_max_pool2(px, 2, 4, 6, pmax);
        conv_avg_pool2(px, 2, 4, 6, pavg);
        conv_upsample2(px, 2, 4, 6, up);
        int ok = 1;
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 3; j++) {
                    const float *q = px + c * 24 + 2 * i * 6 + 2 * j;
                    float m = fmaxf(fmaxf(q[0], q[1]), fmaxf(q[6], q[7]));
                    ok &= pmax[c * 6 + i * 3 + j] == m;
                    ok &= fabsf(pavg[c * 6 + i * 3 + j] - (q[0] + q[1] + q[6] + q[7]) / 4) < 1e-6f;
                }
        for (int c = 0; c < 2; c++)
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 12; j++)
                    ok &= up[c * 96 + i * 12 + j] == px[c * 24 + (i / 2) * 6 + j / 2];
        CHECK(ok, "max pool, average pool, nearest upsampling");
    }
}

/* ---- golden cases ------------------------------------------------------------ */

static int load_npy(const char *cas, const char *file, npy *a)
{
    char path[1024], err[1200];
    snprintf(path, sizeof path, "%s/%s/%s", golden, cas, file);
    if (npy_load(path, a, err, sizeof err)) {
        CHECK(0, "%s", err);
        return -1;
    }
    return 0;
}

/* case.json's tolerance_rel_l2 for `file` (a number grab within the file's
 * own entry, not a parser); 1e-4 when absent. */
static double tolerance(const char *cas, const char *file)
{
    char path[1024], key[256];
    static char buf[1 << 20];
    snprintf(path, sizeof path, "%s/%s/case.json", golden, cas);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 1e-4;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    snprintf(key, sizeof key, "\"%s\": {", file);
    const char *p = strstr(buf, key), *end = p ? strchr(p, '}') : NULL;
    const char *t = p ? strstr(p, "\"tolerance_rel_l2\":") : NULL;
    return t && t < end ? strtod(t + 19, NULL) : 1e-4;
}

/* What libdalle's dalle_decode makes of upstream's decoder output. */
typedef enum { MAP_DVAE, MAP_NONE } pixel_map;

typedef struct vae_case {
    const char *name, *bundle;
    const char *ids_in, *images_in;              /* inputs */
    const char *decoded, *pixels, *scores, *ids; /* expected (NULL: none) */
    pixel_map map; /* how `decoded` becomes [0, 1] pixels when `pixels` is NULL */
} vae_case;

static void run_case(const vae_case *c)
{
    dalle_ctx *ctx;
    int rc = dalle_ctx_create(c->bundle, NULL, &ctx);
    CHECK(rc == DALLE_OK, "%s: open %s: %s", c->name, c->bundle, rc ? dalle_last_error() : "");
    if (rc)
        return;
    struct vae *v = ctx->vae;
    const int size = dalle_image_size(ctx), seq = dalle_image_seq_len(ctx),
              tokens = dalle_num_image_tokens(ctx);
    const int64_t plane = (int64_t)size * size;
    npy ids_in, images;
    if (load_npy(c->name, c->ids_in, &ids_in) || load_npy(c->name, c->images_in, &images))
        goto done;
    const int batch = (int)ids_in.dims[0];
    CHECK(ids_in.dims[1] == seq && images.dims[2] == size,
          "%s: golden shapes match the bundle (%d tokens, %d px)", c->name, seq, size);
    int32_t *ids = npy_to_i32(&ids_in);

    /* decoding */
    float *pixels = malloc(sizeof(float) * 3 * plane * batch);
    double t0 = now();
    rc = dalle_decode(ctx, ids, batch, pixels);
    double t_dec = now() - t0;
    CHECK(rc == DALLE_OK, "%s: dalle_decode of %d images: %s (%.1f ms/image)", c->name, batch,
          rc ? dalle_last_error() : "ok", 1e3 * t_dec / batch);
    npy dec;
    if (c->decoded && !load_npy(c->name, c->decoded, &dec)) {
        int rch = vae_raw_channels(v);
        float *raw = malloc(sizeof(float) * rch * plane * batch);
        CHECK(dec.dims[1] == rch, "%s: %s has the raw output's %d channels", c->name, c->decoded,
              rch);
        vae_decode_raw(v, NULL, ids, batch, raw);
        double e = rel_l2(raw, dec.data, dec.numel), tol = tolerance(c->name, c->decoded);
        CHECK(e <= tol, "%s: raw decoder output vs %s: rel-L2 %.3g (tolerance %g)", c->name,
              c->decoded, e, tol);
        if (!c->pixels) { /* expected [0, 1] pixels: the same mapping as ours */
            float *want = malloc(sizeof(float) * 3 * plane * batch);
            const float *d = dec.data;
            for (int64_t i = 0; i < 3 * plane * batch; i++) {
                float x = d[i] * 0.5f + 0.5f; /* the golden DiscreteVAEs normalise with 0.5 */
                want[i] = x < 0 ? 0 : x > 1 ? 1 : x;
            }
            e = rel_l2(pixels, want, 3 * plane * batch);
            CHECK(e <= tol, "%s: dalle_decode pixels vs clamp(%s * 0.5 + 0.5): rel-L2 %.3g",
                  c->name, c->decoded, e);
            free(want);
        }
        free(raw);
        npy_free(&dec);
    }
    if (c->pixels && !load_npy(c->name, c->pixels, &dec)) {
        double e = rel_l2(pixels, dec.data, dec.numel), tol = tolerance(c->name, c->pixels);
        CHECK(e <= tol, "%s: dalle_decode pixels vs %s: rel-L2 %.3g (tolerance %g)", c->name,
              c->pixels, e, tol);
        npy_free(&dec);
    }
    float mn = 1, mx = 0;
    for (int64_t i = 0; i < 3 * plane * batch; i++) {
        mn = fminf(mn, pixels[i]);
        mx = fmaxf(mx, pixels[i]);
    }
    CHECK(mn >= 0 && mx <= 1, "%s: dalle_decode pixels within [0, 1] (%.3f .. %.3f)", c->name,
          mn, mx);

    /* encoding */
    int32_t *enc = malloc(sizeof(int32_t) * seq * batch);
    float *scores = malloc(sizeof(float) * tokens * seq * batch);
    t0 = now();
    rc = dalle_encode(ctx, images.data, batch, enc);
    double t_enc = now() - t0;
    CHECK(rc == DALLE_OK, "%s: dalle_encode of %d images: %s (%.1f ms/image)", c->name, batch,
          rc ? dalle_last_error() : "ok", 1e3 * t_enc / batch);
    vae_encode_scores(v, NULL, images.data, batch, scores);
    if (c->scores && !load_npy(c->name, c->scores, &dec)) {
        double e = rel_l2(scores, dec.data, dec.numel), tol = tolerance(c->name, c->scores);
        CHECK(dec.numel == (int64_t)tokens * seq * batch && e <= tol,
              "%s: encoder scores vs %s: rel-L2 %.3g (tolerance %g)", c->name, c->scores, e, tol);
        npy_free(&dec);
    }
    if (!load_npy(c->name, c->ids, &dec)) {
        double amp = 0;
        for (int64_t i = 0; i < (int64_t)tokens * seq * batch; i++)
            amp = fmax(amp, fabs(scores[i]));
        golden_check_ids(c->name, enc, dec.data, (int64_t)seq * batch, scores, tokens, seq,
                         1e-5 * amp);
        npy_free(&dec);
    }
    printf("     %s: %d px, %d tokens: decode %.2f ms/image, encode %.2f ms/image\n", c->name,
           size, seq, 1e3 * t_dec / batch, 1e3 * t_enc / batch);

    /* failed calls leave outputs alone */
    for (int i = 0; i < seq; i++)
        enc[i] = -7;
    ids[1] = tokens;
    pixels[0] = -7;
    CHECK(dalle_decode(ctx, ids, 1, pixels) == DALLE_ERR_INVALID_ARGUMENT && pixels[0] == -7,
          "%s: an id out of range is refused, pixels untouched", c->name);
    ((float *)images.data)[5] = NAN;
    CHECK(dalle_encode(ctx, images.data, 1, enc) == DALLE_ERR_INVALID_ARGUMENT && enc[0] == -7,
          "%s: a NaN pixel is refused, ids untouched", c->name);
    free(scores);
    free(enc);
    free(pixels);
    free(ids);
    npy_free(&images);
done:
    npy_free(&ids_in);
    dalle_ctx_free(ctx);
}

static void test_golden(char **bundles)
{
    const vae_case cases[] = {
        {"vae_resblocks", bundles[0], "image_tokens.npy", "vae_input_images.npy",
         "vae_decoded.npy", NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy", MAP_DVAE},
        {"openai_dvae", bundles[1], "image_tokens.npy", "images.npy", "decoder_stats.npy",
         "decoded.npy", "encoder_logits.npy", "codebook_indices.npy", MAP_NONE},
        {"vqgan", bundles[2], "image_tokens.npy", "images.npy", NULL, "decoded.npy", NULL,
         "codebook_indices.npy", MAP_NONE},
        {"dalle_full", bundles[3], "image_tokens.npy", "vae_input_images.npy", "vae_decoded.npy",
         NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy", MAP_DVAE},
        {"dalle_variants", bundles[4], "image_tokens.npy", "vae_input_images.npy",
         "vae_decoded.npy", NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy", MAP_DVAE},
        {"dalle_shared_attn", bundles[5], "image_tokens.npy", "vae_input_images.npy",
         "vae_decoded.npy", NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy", MAP_DVAE},
        {"dalle_cfg", bundles[6], "image_tokens.npy", "vae_input_images.npy", "vae_decoded.npy",
         NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy", MAP_DVAE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(&cases[i]);
}

/* ---- image files -------------------------------------------------------------- */

static const char *tmp(const char *name)
{
    static char buf[4][1024];
    static int next;
    char *b = buf[next++ % 4];
    snprintf(b, 1024, "%s/%s", tmpdir, name);
    return b;
}

static uint8_t to_byte(float v)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)lrintf(v * 255.0f);
}

static void test_image_files(void)
{
    enum { S = 24 };
    static float img[3 * S * S], back[3 * S * S];
    for (int i = 0; i < 3 * S * S; i++)
        img[i] = (frand() + 1) * 0.5f;
    CHECK(dalle_write_png(tmp("vae_rt.png"), img, 1, S, S) == DALLE_OK, "write %dx%d PNG", S, S);
    int rc = dalle_read_image(tmp("vae_rt.png"), S, back);
    int same = 1;
    for (int i = 0; i < 3 * S * S; i++)
        same &= to_byte(img[i]) == to_byte(back[i]) && back[i] * 255.0f == (float)to_byte(img[i]);
    CHECK(rc == DALLE_OK && same, "PNG round trip: every byte read back as written (%s)",
          rc ? dalle_last_error() : "ok");

    /* 2S × S (wide), read at S/2: scaled by 1/2 to S × S/2, the centre
     * S/2 × S/2 kept. Red is a horizontal ramp over the source columns, so
     * output column x is the triangle-filtered ramp around source column
     * 2x + S/2 + 0.5; green is constant, blue 0, and every row the same. */
    static float wide[3 * S * 2 * S], got[3 * S * S];
    for (int c = 0; c < 3; c++)
        for (int y = 0; y < S; y++)
            for (int x = 0; x < 2 * S; x++)
                wide[(c * S + y) * 2 * S + x] = c == 0 ? x / (2.0f * S - 1) : c == 1 ? 0.5f : 0.0f;
    CHECK(dalle_write_png(tmp("vae_wide.png"), wide, 1, S, 2 * S) == DALLE_OK, "write wide PNG");
    rc = dalle_read_image(tmp("vae_wide.png"), S / 2, got);
    int ok = rc == DALLE_OK;
    const int h = S / 2;
    for (int y = 0; y < h && ok; y++)
        for (int x = 0; x < h; x++) {
            float want = (2 * x + S / 2 + 0.5f) / (2.0f * S - 1);
            ok &= fabsf(got[y * h + x] - want) < 0.02f && fabsf(got[h * h + y * h + x] - 0.5f) < 0.01f &&
                  got[2 * h * h + y * h + x] == 0.0f && got[y * h + x] == got[x];
        }
    CHECK(ok, "a 2:1 image is scaled (shorter side %d) and centre-cropped: %s", h,
          rc ? dalle_last_error() : "values as expected");

    /* errors, outputs untouched */
    back[0] = -7;
    CHECK_FAILS(dalle_read_image(tmp("does_not_exist.png"), S, back), DALLE_ERR_IO,
                "cannot open");
    FILE *f = fopen(tmp("vae_text.png"), "wb");
    fputs("this is not an image, only text with a .png name\n", f);
    fclose(f);
    CHECK_FAILS(dalle_read_image(tmp("vae_text.png"), S, back), DALLE_ERR_FORMAT,
                "not a PNG or JPEG");
    /* truncated: the first half of a real PNG */
    f = fopen(tmp("vae_rt.png"), "rb");
    static unsigned char bytes[1 << 16];
    size_t n = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    f = fopen(tmp("vae_trunc.png"), "wb");
    fwrite(bytes, 1, n / 2, f);
    fclose(f);
    CHECK_FAILS(dalle_read_image(tmp("vae_trunc.png"), S, back), DALLE_ERR_FORMAT,
                "cannot decode");
    f = fopen(tmp("vae_empty.png"), "wb");
    fclose(f);
    CHECK_FAILS(dalle_read_image(tmp("vae_empty.png"), S, back), DALLE_ERR_FORMAT, "empty");
    CHECK_FAILS(dalle_read_image(tmpdir, S, back), DALLE_ERR_IO, "cannot");
    CHECK_FAILS(dalle_read_image(tmp("vae_rt.png"), 0, back), DALLE_ERR_INVALID_ARGUMENT,
                "size");
    CHECK_FAILS(dalle_read_image(NULL, S, back), DALLE_ERR_INVALID_ARGUMENT, "path is NULL");
    CHECK(back[0] == -7, "pixels untouched by every failed read");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_vae TMPDIR [GOLDEN_DIR BUNDLES...]\n");
        return 1;
    }
    tmpdir = argv[1];
    test_conv_ops();
    test_image_files();
    if (argc < 10) {
        printf("golden cases absent: skipping the VAE checks\n");
        return check_failures ? 1 : 77;
    }
    golden = argv[2];
    test_golden(argv + 3);
    return check_summary();
}
