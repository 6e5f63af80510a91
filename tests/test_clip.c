/* CLIP (issue 5) against the golden cases (../shared/golden), made by
 * DALLE-pytorch's CLIP and OpenAI's clip.model.CLIP themselves.
 *
 * usage: test_clip [GOLDEN_DIR CLIP.dalle OPENAI.dalle OPENAI_JIT.dalle]
 *
 *  - clip_dalle_pytorch: similarity (with text_mask) and similarity_no_mask;
 *  - openai_clip, from the state-dict bundle and from the TorchScript one:
 *    image_features, text_features, logits_per_image;
 *    each within its case.json tolerance_rel_l2, and the calls that must
 *    agree with them (scores vs logits, max_batch chunking, ranking);
 *  - argument errors (outputs untouched);
 *  - preprocessing, which needs no golden file: checked against Pillow 9.4
 *    output recorded below, a constant image, a linear ramp, the centre-crop
 *    geometry (round half to even) and the identity at the model's size.
 * The preprocessing checks run first; without the golden cases the test
 * then exits 77 (skipped) if they passed.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "golden.h"
#include "clip_model.h"
#include "dalle/dalle.h"
#include "npy.h"

static double rel_l2(const float *ours, const float *want, int64_t n)
{
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)ours[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void check_close(const char *what, const float *ours, const npy *want, double tol)
{
    double r = rel_l2(ours, want->data, want->numel);
    CHECK(r <= tol, "%s: rel-L2 %.3g (tolerance %.3g)", what, r, tol);
}

static clip_ctx *open_ctx(const char *path, int max_batch)
{
    clip_ctx *ctx = NULL;
    dalle_ctx_params p = dalle_ctx_default_params();
    p.max_batch = max_batch;
    int rc = clip_ctx_create(path, &p, &ctx);
    CHECK(rc == DALLE_OK, "open %s (max_batch %d): %s", path, max_batch,
          rc ? dalle_last_error() : "ok");
    return rc ? NULL : ctx;
}

/* ---- DALLE-pytorch CLIP -------------------------------------------------------- */

static void check_dalle_pytorch(const char *bundle)
{
    const char *cas = "clip_dalle_pytorch";
    clip_ctx *ctx = open_ctx(bundle, 8);
    if (!ctx)
        return;
    npy text = golden_load(cas, "text.npy"), mask = golden_load(cas, "text_mask.npy"),
        images = golden_load(cas, "images.npy"), sim = golden_load(cas, "similarity.npy"),
        sim_nm = golden_load(cas, "similarity_no_mask.npy");
    const int B = (int)text.dims[0], L = (int)text.dims[1], S = (int)images.dims[2];
    CHECK(clip_text_seq_len(ctx) == L && clip_image_size(ctx) == S && clip_embed_dim(ctx) == 32 &&
              clip_num_text_tokens(ctx) == 500,
          "shapes: text %d, image %d, embed %d, vocab %d", clip_text_seq_len(ctx),
          clip_image_size(ctx), clip_embed_dim(ctx), clip_num_text_tokens(ctx));
    CHECK(!strcmp(dalle_bundle_kind(clip_ctx_bundle(ctx)), "clip"), "bundle kind clip");
    int32_t *ids = npy_to_i32(&text);
    uint8_t *m = malloc((size_t)B * L);
    for (int64_t i = 0; i < (int64_t)B * L; i++)
        m[i] = ((const int64_t *)mask.data)[i] != 0;
    const float *img = images.data;
    const int64_t per = 3LL * S * S;

    /* upstream scores pair b (text b, image b): one caption per call */
    float got[16], got_nm[16], logits[16 * 16];
    int ok = 1;
    for (int b = 0; b < B; b++) {
        ok &= clip_score_masked(ctx, ids + b * L, m + b * L, img + b * per, 1, &got[b]) == DALLE_OK;
        ok &= clip_score(ctx, ids + b * L, img + b * per, 1, &got_nm[b]) == DALLE_OK;
    }
    CHECK(ok, "clip_score_masked / clip_score: %s", ok ? "ok" : dalle_last_error());
    check_close("clip_dalle_pytorch similarity (text_mask)", got, &sim,
                golden_tolerance(cas, "similarity.npy"));
    check_close("clip_dalle_pytorch similarity_no_mask", got_nm, &sim_nm,
                golden_tolerance(cas, "similarity_no_mask.npy"));
    float nm_again[16];
    for (int b = 0; b < B; b++)
        clip_score_masked(ctx, ids + b * L, NULL, img + b * per, 1, &nm_again[b]);
    CHECK(!memcmp(nm_again, got_nm, (size_t)B * sizeof *got_nm),
          "clip_score_masked(text_mask NULL) == clip_score");

    /* the all-pairs matrix: its diagonal is the per-pair score */
    CHECK(clip_logits_per_image(ctx, img, B, ids, B, logits) == DALLE_OK, "logits_per_image");
    float diag[16];
    for (int b = 0; b < B; b++)
        diag[b] = logits[b * B + b];
    check_close("clip_dalle_pytorch logits diagonal vs similarity_no_mask", diag, &sim_nm,
                golden_tolerance(cas, "similarity_no_mask.npy"));

    /* features: normalised, scaled dot products reproduce the scores */
    float fi[16 * 32], ft[16 * 32];
    CHECK(clip_encode_image(ctx, img, B, fi) == DALLE_OK &&
              clip_encode_text(ctx, ids, B, ft) == DALLE_OK,
          "clip_encode_image / clip_encode_text");
    double worst = 0;
    for (int b = 0; b < B; b++) {
        double ni = 0, nt = 0, dot = 0;
        for (int k = 0; k < 32; k++) {
            ni += (double)fi[b * 32 + k] * fi[b * 32 + k];
            nt += (double)ft[b * 32 + k] * ft[b * 32 + k];
            dot += (double)fi[b * 32 + k] * ft[b * 32 + k];
        }
        double cos = dot / sqrt(ni * nt), want = ((const float *)sim_nm.data)[b];
        double e = fabs(cos * exp(1.9) - want) / fabs(want);
        worst = e > worst ? e : worst;
    }
    CHECK(worst < 1e-4, "exp(1.9) · cos(encode_text, encode_image) = similarity_no_mask "
          "(worst rel. error %.2g)", worst);

    /* argument errors: outputs untouched */
    float keep = -7.0f;
    uint8_t none[64] = {0};
    CHECK_FAILS(clip_score_masked(ctx, ids, none, img, 1, &keep), DALLE_ERR_INVALID_ARGUMENT,
                "keeps no token");
    ids[3] = 500;
    CHECK_FAILS(clip_score(ctx, ids, img, 1, &keep), DALLE_ERR_INVALID_ARGUMENT,
                "text[3] = 500");
    ids[3] = (int32_t)((const int64_t *)text.data)[3];
    CHECK(keep == -7.0f, "score untouched by failed calls");
    clip_ctx_free(ctx);
    free(ids);
    free(m);
    npy_free(&text);
    npy_free(&mask);
    npy_free(&images);
    npy_free(&sim);
    npy_free(&sim_nm);
}

/* ---- OpenAI CLIP ------------------------------------------------------------------- */

static void check_rank(clip_ctx *ctx, const int32_t *ids, const float *img, int64_t per,
                       int must_tie)
{
    /* images 0, 1, 2, 0, 1: the order must be best first, ties in input
     * order; the duplicates tie for sure when each image is its own chunk
     * (must_tie), else maybe not (GEMM rounding may differ by row) */
    float *five = malloc((size_t)(5 * per) * sizeof *five);
    const int src[5] = {0, 1, 2, 0, 1};
    for (int i = 0; i < 5; i++)
        memcpy(five + i * per, img + src[i] * per, (size_t)per * sizeof *five);
    float scores[5], direct[5];
    int order[5];
    int rc = clip_rank(ctx, ids, five, 5, scores, order);
    CHECK(rc == DALLE_OK, "clip_rank: %s", rc ? dalle_last_error() : "ok");
    clip_score(ctx, ids, five, 5, direct);
    CHECK(!memcmp(scores, direct, sizeof scores), "clip_rank scores == clip_score");
    int seen = 0, sorted = 1, stable = 1, ties = 0;
    for (int k = 0; k < 5; k++)
        seen |= 1 << order[k];
    for (int k = 0; k + 1 < 5; k++) {
        float a = scores[order[k]], b = scores[order[k + 1]];
        sorted &= a >= b;
        if (a == b) {
            ties++;
            stable &= order[k] < order[k + 1];
        }
    }
    CHECK(seen == 31 && sorted && stable && (!must_tie || ties == 2),
          "clip_rank order %d %d %d %d %d: a permutation, best first, %d ties in input order",
          order[0], order[1], order[2], order[3], order[4], ties);
    float best = scores[0];
    int arg = 0;
    for (int i = 1; i < 5; i++)
        if (scores[i] > best)
            best = scores[i], arg = i;
    CHECK(order[0] == arg, "clip_rank best = the argmax of the scores (%d)", arg);
    free(five);
}

static void check_openai(const char *bundle, const char *label)
{
    const char *cas = "openai_clip";
    clip_ctx *ctx = open_ctx(bundle, 8);
    if (!ctx)
        return;
    npy images = golden_load(cas, "images.npy"), text = golden_load(cas, "text.npy"),
        want_i = golden_load(cas, "image_features.npy"), want_t = golden_load(cas, "text_features.npy"),
        want_l = golden_load(cas, "logits_per_image.npy");
    const int N = (int)images.dims[0], T = (int)text.dims[0], L = (int)text.dims[1];
    const int S = (int)images.dims[2], E = (int)want_i.dims[1];
    CHECK(clip_text_seq_len(ctx) == L && clip_image_size(ctx) == S && clip_embed_dim(ctx) == E,
          "%s shapes: text %d, image %d, embed %d", label, clip_text_seq_len(ctx),
          clip_image_size(ctx), clip_embed_dim(ctx));
    int32_t *ids = npy_to_i32(&text);
    const float *img = images.data;
    const int64_t per = 3LL * S * S;
    char what[200];

    float fi[8 * 64], ft[8 * 64], logits[64], col[8];
    int rc = clip_encode_image(ctx, img, N, fi);
    CHECK(rc == DALLE_OK, "%s clip_encode_image: %s", label, rc ? dalle_last_error() : "ok");
    snprintf(what, sizeof what, "%s image_features", label);
    check_close(what, fi, &want_i, golden_tolerance(cas, "image_features.npy"));
    rc = clip_encode_text(ctx, ids, T, ft);
    CHECK(rc == DALLE_OK, "%s clip_encode_text: %s", label, rc ? dalle_last_error() : "ok");
    snprintf(what, sizeof what, "%s text_features", label);
    check_close(what, ft, &want_t, golden_tolerance(cas, "text_features.npy"));
    rc = clip_logits_per_image(ctx, img, N, ids, T, logits);
    CHECK(rc == DALLE_OK, "%s clip_logits_per_image: %s", label, rc ? dalle_last_error() : "ok");
    snprintf(what, sizeof what, "%s logits_per_image", label);
    check_close(what, logits, &want_l, golden_tolerance(cas, "logits_per_image.npy"));

    /* clip_score of caption j over all images = column j. One caption's
     * features go through GEMV, several through GEMM: equal up to float
     * rounding, not bit for bit. A logit is logit_scale * (u · w) of two
     * unit vectors: the rounding of that sum (and of the encoders before
     * it) scales with the magnitude of its terms, logit_scale * Σ|u_k w_k|,
     * not with the result, which can cancel to near 0 (one golden logit
     * does: with the attention kernel's rounding an error of 7e-7 of its
     * row read 1.4e-5 relative to that logit). So the error is measured
     * against the row's scale, its largest |logit| (image i against every
     * caption; at most logit_scale, as |u · w| <= 1), held to the same
     * 1e-5. */
    double worst = 0;
    for (int j = 0; j < T; j++) {
        clip_score(ctx, ids + j * L, img, N, col);
        for (int i = 0; i < N; i++) {
            double row_scale = 0;
            for (int jj = 0; jj < T; jj++)
                row_scale = fmax(row_scale, fabs(logits[i * T + jj]));
            double e = fabs(col[i] - logits[i * T + j]) / row_scale;
            worst = e > worst ? e : worst;
        }
    }
    CHECK(worst < 1e-5,
          "%s clip_score = columns of logits_per_image (worst error %.2g of the row's max |logit|)",
          label, worst);

    /* chunks of one image / caption at a time give the same numbers */
    clip_ctx *one = open_ctx(bundle, 1);
    if (one) {
        float l1[64];
        clip_logits_per_image(one, img, N, ids, T, l1);
        double r = rel_l2(l1, logits, (int64_t)N * T);
        CHECK(r < 1e-5, "%s max_batch 1 vs 8: rel-L2 %.2g", label, r);
        /* one image per chunk: equal images get bit-equal scores, so the
         * duplicates below do tie */
        check_rank(one, ids, img, per, 1);
        clip_ctx_free(one);
    }
    check_rank(ctx, ids, img, per, 0);

    /* argument errors */
    float keep[64];
    for (int i = 0; i < 64; i++)
        keep[i] = -7.0f;
    uint8_t mask[64];
    memset(mask, 1, sizeof mask);
    CHECK_FAILS(clip_score_masked(ctx, ids, mask, img, 1, keep), DALLE_ERR_UNSUPPORTED,
                "OpenAI CLIP takes no mask");
    CHECK_FAILS(clip_encode_image(ctx, img, 0, keep), DALLE_ERR_INVALID_ARGUMENT, "batch = 0");
    CHECK_FAILS(clip_encode_text(ctx, NULL, 1, keep), DALLE_ERR_INVALID_ARGUMENT, "text is NULL");
    CHECK_FAILS(clip_logits_per_image(ctx, img, N, ids, 0, keep), DALLE_ERR_INVALID_ARGUMENT,
                "n_texts = 0");
    CHECK_FAILS(clip_rank(ctx, ids, img, 2, keep, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "order is NULL");
    int32_t bad = ids[L + 2];
    ids[L + 2] = -1;
    CHECK_FAILS(clip_encode_text(ctx, ids, T, keep), DALLE_ERR_INVALID_ARGUMENT,
                "text[18] = -1");
    ids[L + 2] = bad;
    float *nan_img = malloc((size_t)(N * per) * sizeof *nan_img);
    memcpy(nan_img, img, (size_t)(N * per) * sizeof *nan_img);
    nan_img[per + 9] = INFINITY;
    char needle[64];
    snprintf(needle, sizeof needle, "images[%lld] is not finite", (long long)(per + 9));
    CHECK_FAILS(clip_logits_per_image(ctx, nan_img, N, ids, T, keep), DALLE_ERR_INVALID_ARGUMENT,
                needle);
    free(nan_img);
    CHECK_FAILS(clip_score(NULL, ids, img, 1, keep), DALLE_ERR_INVALID_ARGUMENT, "ctx is NULL");
    int untouched = 1;
    for (int i = 0; i < 64; i++)
        untouched &= keep[i] == -7.0f;
    CHECK(untouched, "%s: outputs untouched by every failed call", label);
    CHECK(strstr(clip_ctx_last_error(ctx), "images[") != NULL, "the context keeps its error");

    clip_ctx_free(ctx);
    free(ids);
    npy_free(&images);
    npy_free(&text);
    npy_free(&want_i);
    npy_free(&want_t);
    npy_free(&want_l);
}

/* ---- preprocessing ------------------------------------------------------------- */

static void lcg_image(uint8_t *out, int h, int w, uint32_t seed)
{
    uint64_t x = seed;
    for (int64_t i = 0; i < (int64_t)h * w * 3; i++) {
        x = (x * 1103515245u + 12345u) % (1u << 31);
        out[i] = (uint8_t)((x >> 16) & 255);
    }
}

/* Pillow 9.4: np.array(Image.fromarray(a).resize((rw, rh), Image.BICUBIC))
 * cropped as torchvision's CenterCrop, [size][size][3] as hex, for the
 * lcg_image above (generator: Python's int arithmetic, the same LCG). */
static const struct {
    int h, w, size;
    uint32_t seed;
    const char *hex;
} pillow[] = {
    {17, 23, 5, 1,
     "998f7f648b7280718a8876897770735e82648376766c6f8085817f6b7481827c7a8b956b89658584869f8789"
     "86936e5f91704e7a6678818192668586849b6b6c907685b0767865719e7a83"},
    {4, 3, 7, 2,
     "7b1de27c3de1828bdd7ed5c85edf8d3ad3522cd03a2664613f65697a6680b26e88b88b5dafa72cacb31905a6"
     "092b8c1a854746df1564f9443ffc860dff9f0083c53a96a14dc54282ee009fe3375ccb8c09c2ad00f6d18ef4"
     "ab9ef54acce803deb443837e9d1b68bf00a8c2c7aaa8c8b966d0ba37c98b669457a65b42bf4b1fa7f22c9ee2"
     "5d87bb827899688f9a41ada632b8aa"},
    {9, 32, 6, 3,
     "65ad784f8bc2d88e52557d7880756186b26fd07a836d558c7e74693db95b799320467a44c680a2a57d6dbba7"
     "7771756a49798f54779683af599cb72c96945d9db19e5b24a35c51674da04d7f85857a5b22596a7da4ac7198"
     "956868b17b7246895d6a90a59d43859541884e90"},
    {40, 13, 8, 4,
     "8547c49b70a97b8d5d8c3d9e6a777c8696575c87504f8999b36641536c707a5e59a5943882e85158b6788a48"
     "9da37fbdaa91b4939a9d4d6c66a68970ada26494af88928bae5f8d6a87715a996d4a4e84b980879975755d7f"
     "e69a6d857b718f827a9c7941c6736f989cad77acc98fb66fa2ac3758565f6a5f684a625da28892af796496a9"
     "549bd05e3c7c5b7b80e6b731867c279785949fab9b449b3f246d7974814f92856fac766b3c5a5f829a8bc5ad"
     "899b945f637386936f8bb3817eac607c"},
};

/* out [3][size][size] of an unnormalised preprocess back to 8-bit */
static int byte_at(const float *out, int size, int r, int c, int ch)
{
    return (int)lrintf(out[(int64_t)ch * size * size + (int64_t)r * size + c] * 255.0f);
}

static void check_preprocess(void)
{
    clip_work w;
    memset(&w, 0, sizeof w);
    static uint8_t img[64 * 64 * 3];
    static float out[3 * 64 * 64];

    /* Pillow's own output */
    for (size_t t = 0; t < sizeof pillow / sizeof *pillow; t++) {
        int h = pillow[t].h, wd = pillow[t].w, n = pillow[t].size, diff = 0;
        lcg_image(img, h, wd, pillow[t].seed);
        int rc = clip_preprocess_image(&w, img, h, wd, n, NULL, NULL, out);
        for (int r = 0; r < n && !rc; r++)
            for (int c = 0; c < n; c++)
                for (int ch = 0; ch < 3; ch++) {
                    unsigned want;
                    sscanf(pillow[t].hex + 2 * ((r * n + c) * 3 + ch), "%2x", &want);
                    diff += byte_at(out, n, r, c, ch) != (int)want;
                }
        CHECK(rc == 0 && diff == 0, "preprocess %dx%d -> %d: equal to Pillow's BICUBIC + crop "
              "(%d values differ)", h, wd, n, diff);
    }

    /* a constant image stays constant through any resize: exactly v / 255,
     * then (v / 255 - mean) / std in float32 */
    memset(img, 200, 37 * 53 * 3);
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    int rc = clip_preprocess_image(&w, img, 37, 53, 16, mean, sd, out), bad = 0;
    for (int ch = 0; ch < 3; ch++) {
        float want = (200.0f / 255.0f - mean[ch]) / sd[ch];
        for (int i = 0; i < 16 * 16; i++)
            bad += out[ch * 256 + i] != want;
    }
    CHECK(rc == 0 && bad == 0, "constant 37x53 image -> 16: every value (200/255 - mean) / std");

    /* a linear ramp v = 20 x upscaled 2x: the bicubic kernel reproduces
     * straight lines, so away from the borders out[o] = 20 ((o + 0.5) / 2 -
     * 0.5) = 10 o - 5 exactly */
    for (int y = 0; y < 8; y++)
        for (int x = 0; x < 8; x++)
            for (int ch = 0; ch < 3; ch++)
                img[(y * 8 + x) * 3 + ch] = (uint8_t)(20 * x);
    rc = clip_preprocess_image(&w, img, 8, 8, 16, NULL, NULL, out);
    bad = 0;
    for (int r = 0; r < 16; r++)
        for (int o = 3; o <= 12; o++)
            bad += byte_at(out, 16, r, o, 1) != 10 * o - 5;
    CHECK(rc == 0 && bad == 0, "ramp 8 -> 16: interior columns = 10 o - 5 (%d differ)", bad);

    /* centre crop without resize (short side already the size): columns
     * start at round((W - size) / 2), half to even: W - size = 5 -> 2,
     * 7 -> 4 (3.5 rounds up to even), 9 -> 4 (4.5 rounds down to even);
     * the same for rows of a tall image */
    const int extra[3] = {5, 7, 9}, start[3] = {2, 4, 4};
    for (int t = 0; t < 3; t++) {
        int wd = 8 + extra[t];
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < wd; x++)
                for (int ch = 0; ch < 3; ch++)
                    img[(y * wd + x) * 3 + ch] = (uint8_t)(x * 10 + y + ch);
        rc = clip_preprocess_image(&w, img, 8, wd, 8, NULL, NULL, out);
        bad = 0;
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++)
                for (int ch = 0; ch < 3; ch++)
                    bad += byte_at(out, 8, r, c, ch) != (c + start[t]) * 10 + r + ch;
        /* transposed: a tall image crops rows */
        for (int y = 0; y < wd; y++)
            for (int x = 0; x < 8; x++)
                for (int ch = 0; ch < 3; ch++)
                    img[(y * 8 + x) * 3 + ch] = (uint8_t)(y * 10 + x + ch);
        rc |= clip_preprocess_image(&w, img, wd, 8, 8, NULL, NULL, out);
        for (int r = 0; r < 8; r++)
            for (int c = 0; c < 8; c++)
                for (int ch = 0; ch < 3; ch++)
                    bad += byte_at(out, 8, r, c, ch) != (r + start[t]) * 10 + c + ch;
        CHECK(rc == 0 && bad == 0, "centre crop of 8x%d and %dx8: offset %d (%d differ)", wd, wd,
              start[t], bad);
    }

    /* argument checks */
    out[0] = -7.0f;
    CHECK_FAILS(clip_preprocess_image(&w, img, 0, 8, 8, NULL, NULL, out),
                DALLE_ERR_INVALID_ARGUMENT, "0 x 8 pixels");
    CHECK_FAILS(clip_preprocess_image(&w, img, 8, 70000, 8, NULL, NULL, out),
                DALLE_ERR_INVALID_ARGUMENT, "8 x 70000 pixels");
    CHECK(out[0] == -7.0f, "preprocess output untouched on failure");
    clip_work_free(&w);
}

/* The public clip_preprocess on the OpenAI bundle: an image already at the
 * model's size is taken pixel for pixel, then normalised. */
static void check_preprocess_api(const char *bundle)
{
    clip_ctx *ctx = open_ctx(bundle, 8);
    if (!ctx)
        return;
    const int S = clip_image_size(ctx);
    uint8_t *rgb = malloc((size_t)S * S * 3);
    float *out = malloc(sizeof(float) * 3 * S * S);
    lcg_image(rgb, S, S, 9);
    int rc = clip_preprocess(ctx, rgb, S, S, out), bad = 0;
    const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
    const float sd[3] = {0.26862954f, 0.26130258f, 0.27577711f};
    for (int r = 0; r < S; r++)
        for (int c = 0; c < S; c++)
            for (int ch = 0; ch < 3; ch++)
                bad += out[(ch * S + r) * S + c] !=
                       ((float)rgb[(r * S + c) * 3 + ch] / 255.0f - mean[ch]) / sd[ch];
    CHECK(rc == DALLE_OK && bad == 0, "clip_preprocess %dx%d: identity + Normalize (%d differ)",
          S, S, bad);
    CHECK_FAILS(clip_preprocess(ctx, NULL, S, S, out), DALLE_ERR_INVALID_ARGUMENT, "rgb is NULL");
    /* a preprocessed raw image scores like any other */
    float score;
    int32_t text[64] = {0};
    text[0] = 3;
    CHECK(clip_score(ctx, text, out, 1, &score) == DALLE_OK && isfinite(score),
          "score of a preprocessed image: %g", score);
    free(rgb);
    free(out);
    clip_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    check_preprocess();
    if (argc < 5) {
        if (check_failures)
            return check_summary();
        SKIP("golden cases absent (usage: %s GOLDEN_DIR CLIP OPENAI OPENAI_JIT): only the "
             "preprocessing was checked",
             argv[0]);
    }
    golden = argv[1];
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/openai_clip/logits_per_image.npy", golden);
    FILE *f = fopen(probe, "rb");
    if (!f) {
        if (check_failures)
            return check_summary();
        SKIP("golden cases not found at %s: only the preprocessing was checked", golden);
    }
    fclose(f);
    check_dalle_pytorch(argv[2]);
    check_openai(argv[3], "openai_clip (state dict)");
    check_openai(argv[4], "openai_clip (TorchScript)");
    check_preprocess_api(argv[3]);
    return check_summary();
}
