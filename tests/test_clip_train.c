/* Training DALLE-pytorch's CLIP (issue 7: lib/train/clip_train*.c):
 *
 *  - the pieces CLIP adds (masked mean, F.normalize, the contrastive loss
 *    with its temperature, the patch embedding) against central finite
 *    differences of DOUBLE reference forwards written here (fd_check.h:
 *    h = 1e-6, rel-L2 tolerance 1e-5, as tests/test_backward.c);
 *  - the whole model's gradients on a tiny CLIP (float forward, h = 1e-2);
 *  - with the golden case: the trainer loads the converted upstream
 *    checkpoint (every tensor name and shape, nothing left over) and its
 *    forward gives upstream's similarity.npy;
 *  - the round trip: a few AdamW steps → clip_train_write → clip_ctx_create
 *    → clip_score_masked = the trainer's similarities (1e-6); reloading the
 *    weights; gradients bit-identical on 1 and 3 threads;
 *  - a small training run on the synthetic world (captions through a
 *    word-level id mapping of the world's grammar: the CLIP BPE vocabulary
 *    would make text_emb 49408 rows for a 20-word grammar), which must cut
 *    the loss and rank the right caption first for most held-out images.
 *
 *     test_clip_train TMPDIR [GOLDEN_DIR CLIP_BUNDLE]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/dalle.h"
#include "fd_check.h"
#include "npy.h"
#include "ops.h"
#include "threadpool.h"
#include "train/adamw.h"
#include "train/clip_train.h"
#include "train/ops_backward.h"
#include "train/synth.h"

/* masked mean: θ = x [B][n][d]; loss = Σ c ⊙ mean */
typedef struct mm_ctx {
    int64_t B, n, d;
    const uint8_t *mask;
    const float *c;
} mm_ctx;

static double mm_ref(const double *x, const mm_ctx *k, int64_t b, int64_t j)
{
    double s = 0.0;
    int cnt = 0;
    for (int64_t i = 0; i < k->n; i++)
        if (!k->mask || k->mask[b * k->n + i]) {
            s += x[(b * k->n + i) * k->d + j];
            cnt++;
        }
    return s / cnt;
}

static double mm_loss(const double *x, const void *vc)
{
    const mm_ctx *k = vc;
    double L = 0.0;
    for (int64_t b = 0; b < k->B; b++)
        for (int64_t j = 0; j < k->d; j++)
            L += k->c[b * k->d + j] * mm_ref(x, k, b, j);
    return L;
}

static void test_masked_mean(void)
{
    enum { B = 3, N = 5, D = 4 };
    float x[B * N * D], c[B * D], out[B * D], dx[B * N * D];
    uint8_t mask[B * N] = {1, 1, 1, 0, 0, 1, 0, 1, 0, 1, 1, 1, 1, 1, 1};
    fill(x, B * N * D, -1, 1);
    fill(c, B * D, -1, 1);
    for (int pass = 0; pass < 2; pass++) {
        mm_ctx k = {B, N, D, pass ? NULL : mask, c};
        double theta[B * N * D], worst = 0.0;
        for (int i = 0; i < B * N * D; i++)
            theta[i] = x[i];
        ct_masked_mean(x, B, N, D, k.mask, out);
        for (int b = 0; b < B; b++)
            for (int j = 0; j < D; j++)
                worst = fmax(worst, fabs(out[b * D + j] - mm_ref(theta, &k, b, j)));
        check(worst < 1e-6, "ct_masked_mean %s = double reference (max diff %.1e)",
              pass ? "without a mask" : "with a mask", worst);
        ct_masked_mean_bw(c, B, N, D, k.mask, dx);
        check_fd(pass ? "ct_masked_mean_bw, no mask" : "ct_masked_mean_bw, text_mask", mm_loss,
                 &k, x, dx, B * N * D);
    }
}

/* normalisation: θ = v [R][d]; loss = Σ c ⊙ v / ‖v‖ */
typedef struct nz_ctx {
    int64_t R, d;
    const float *c;
} nz_ctx;

static double nz_loss(const double *v, const void *vc)
{
    const nz_ctx *k = vc;
    double L = 0.0;
    for (int64_t r = 0; r < k->R; r++) {
        double ss = 0.0;
        for (int64_t i = 0; i < k->d; i++)
            ss += v[r * k->d + i] * v[r * k->d + i];
        double n = fmax(sqrt(ss), 1e-12);
        for (int64_t i = 0; i < k->d; i++)
            L += k->c[r * k->d + i] * v[r * k->d + i] / n;
    }
    return L;
}

static void test_normalize(void)
{
    enum { R = 4, D = 6 };
    float v[R * D], c[R * D], y[R * D], norms[R], dv[R * D];
    fill(v, R * D, -2, 2);
    for (int i = 0; i < D; i++)
        v[D + i] *= 1e-3f; /* a short vector: the same formula */
    fill(c, R * D, -1, 1);
    nz_ctx k = {R, D, c};
    ct_normalize(v, R, D, y, norms);
    double worst = 0.0;
    for (int r = 0; r < R; r++) {
        double ss = 0.0;
        for (int i = 0; i < D; i++)
            ss += (double)y[r * D + i] * y[r * D + i];
        worst = fmax(worst, fabs(sqrt(ss) - 1.0));
    }
    check(worst < 1e-6, "ct_normalize: unit rows (max |‖y‖ - 1| %.1e)", worst);
    ct_normalize_bw(y, norms, R, D, c, dv);
    check_fd("ct_normalize_bw (F.normalize)", nz_loss, &k, v, dv, R * D);
    /* a zero row: upstream's clamp makes y = 0 and the divisor constant */
    float z[D] = {0}, yz[D], nzr[1], dz[D];
    ct_normalize(z, 1, D, yz, nzr);
    ct_normalize_bw(yz, nzr, 1, D, c, dz);
    int ok = 1;
    for (int i = 0; i < D; i++)
        ok &= yz[i] == 0.0f && dz[i] == (float)(c[i] / 1e-12);
    check(ok, "ct_normalize of a zero row: 0, gradient dy / 1e-12 (the clamped divisor)");
}

/* contrastive loss: θ = (tn [B][E], in [B][E], temperature) */
typedef struct cl_ctx {
    int64_t B, E;
} cl_ctx;

static double cl_loss(const double *t, const void *vc)
{
    const cl_ctx *k = vc;
    const int64_t B = k->B, E = k->E;
    const double *tn = t, *in = t + B * E, s = exp(t[2 * B * E]);
    double sim[64], L = 0.0;
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++) {
            double d = 0.0;
            for (int64_t e = 0; e < E; e++)
                d += tn[i * E + e] * in[j * E + e];
            sim[i * B + j] = s * d;
        }
    for (int64_t i = 0; i < B; i++) { /* F.cross_entropy(sim) and (sim.t()) */
        double sr = 0.0, sc = 0.0;
        for (int64_t j = 0; j < B; j++) {
            sr += exp(sim[i * B + j]);
            sc += exp(sim[j * B + i]);
        }
        L += (log(sr) - sim[i * B + i]) + (log(sc) - sim[i * B + i]);
    }
    return L / (2.0 * B);
}

static void test_contrastive(void)
{
    enum { B = 5, E = 4, N = 2 * B * E + 1 };
    float th[N], sim[B * B], dsim[B * B], g[N];
    fill(th, N, -1, 1);
    th[N - 1] = 0.7f; /* temperature */
    cl_ctx k = {B, E};
    double theta[N];
    for (int i = 0; i < N; i++)
        theta[i] = th[i];
    const float scale = expf(th[N - 1]);
    double L = ct_contrastive(th, th + B * E, B, E, scale, sim, dsim);
    double ref = cl_loss(theta, &k);
    check(fabs(L - ref) < 1e-6 * fabs(ref), "ct_contrastive: loss %.8f = double reference %.8f",
          L, ref);
    g[N - 1] = 0.0f;
    ct_contrastive_bw(NULL, th, th + B * E, B, E, scale, sim, dsim, g, g + B * E, &g[N - 1]);
    check_fd("ct_contrastive_bw (text, image latents, temperature)", cl_loss, &k, th, g, N);
    /* batch 1: sim has one entry, CE of one class is 0 */
    float s1, d1;
    double L1 = ct_contrastive(th, th + E, 1, E, scale, &s1, &d1);
    check(L1 == 0.0 && d1 == 0.0f, "ct_contrastive with batch 1: loss 0, no gradient");
}

/* patch embedding: θ = (W [Di][P], b [Di], pos [T][Di]); loss = Σ c ⊙
 * (W · patch + b + pos), patches read from the image by upstream's rearrange
 * 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' written out here */
typedef struct pe_ctx {
    int64_t B, S, p, Di;
    const float *img, *c;
} pe_ctx;

static double pe_loss(const double *t, const void *vc)
{
    const pe_ctx *k = vc;
    const int64_t g = k->S / k->p, T = g * g, P = 3 * k->p * k->p, Di = k->Di;
    const double *W = t, *bias = t + Di * P, *pos = bias + Di;
    double L = 0.0;
    for (int64_t b = 0; b < k->B; b++)
        for (int64_t h = 0; h < g; h++)
            for (int64_t w = 0; w < g; w++)
                for (int64_t o = 0; o < Di; o++) {
                    double y = bias[o] + pos[(h * g + w) * Di + o];
                    for (int64_t p1 = 0; p1 < k->p; p1++)
                        for (int64_t p2 = 0; p2 < k->p; p2++)
                            for (int64_t c = 0; c < 3; c++)
                                y += W[o * P + (p1 * k->p + p2) * 3 + c] *
                                     k->img[((b * 3 + c) * k->S + h * k->p + p1) * k->S +
                                            w * k->p + p2];
                    L += k->c[((b * T) + h * g + w) * Di + o] * y;
                }
    return L;
}

static void test_patch_embedding(void)
{
    enum { B = 2, S = 8, P1 = 4, T = 4, P = 48, DI = 5, N = DI * P + DI + T * DI };
    float img[B * 3 * S * S], c[B * T * DI], th[N], g[N], patches[B * T * P];
    fill(img, B * 3 * S * S, 0, 1);
    fill(c, B * T * DI, -1, 1);
    fill(th, N, -0.3, 0.3);
    memset(g, 0, sizeof g);
    ct_patchify(img, B, S, P1, patches);
    /* the gradients as clip_train_backward takes them */
    int32_t pos_ids[B * T];
    for (int i = 0; i < B * T; i++)
        pos_ids[i] = i % T;
    bw_linear(NULL, patches, B * T, P, th, DI, c, DI, NULL, g, g + DI * P);
    bw_embedding(pos_ids, B * T, DI, c, g + DI * P + DI);
    pe_ctx k = {B, S, P1, DI, img, c};
    check_fd("patch embedding (rearrange, to_visual_embedding, visual_pos_emb)", pe_loss, &k, th,
             g, N);
}

/* ---- tiny CLIP ------------------------------------------------------------------------ */

static clip_train_config tiny_config(void)
{
    clip_train_config c = clip_train_default_config();
    c.dim_text = 8;
    c.dim_image = 12;
    c.dim_latent = 6;
    c.num_text_tokens = 9;
    c.text_enc_depth = 2;
    c.text_seq_len = 5;
    c.text_heads = 1;
    c.visual_enc_depth = 1;
    c.visual_heads = 2;
    c.visual_image_size = 8;
    c.visual_patch_size = 4;
    c.seed = 7;
    return c;
}

/* captions with 1..L real tokens then padding 0 */
static void random_batch(const clip_train_config *c, int B, int32_t *text, float *images)
{
    const int L = c->text_seq_len, S = c->visual_image_size;
    for (int b = 0; b < B; b++) {
        int len = 1 + (int)(urand() * L);
        for (int i = 0; i < L; i++)
            text[b * L + i] = i < len ? 1 + (int32_t)(urand() * (c->num_text_tokens - 1)) : 0;
    }
    fill(images, (int64_t)B * 3 * S * S, 0, 1);
}

static double loss_of(clip_train *tr, const int32_t *text, const float *images, int B)
{
    double L = 0.0;
    clip_train_forward(tr, text, NULL, images, B, &L);
    return L;
}

typedef struct batch_ctx {
    clip_train *tr;
    const int32_t *text;
    const float *images;
    int batch;
} batch_ctx;

static double batch_loss(void *ctx)
{
    const batch_ctx *k = ctx;
    return loss_of(k->tr, k->text, k->images, k->batch);
}

/* Every tensor: its largest gradient and two random entries against a
 * central difference of the float forward (check_model_fd). */
static void test_whole_model(void)
{
    clip_train_config c = tiny_config();
    clip_train *tr = NULL;
    enum { B = 3 };
    int32_t text[B * 5];
    float images[B * 3 * 64];
    if (clip_train_create(&c, B, &tr)) {
        check(0, "clip_train_create: %s", dalle_last_error());
        return;
    }
    for (int64_t i = 0; i < tr->pt.n_weights; i++) /* off LayerNorm 1/0, equal scales */
        tr->pt.w[i] += frand(-0.05, 0.05);
    tr->pw.temperature[0] = 1.3f;
    random_batch(&c, B, text, images);
    text[2 * 5 + 0] = 4; /* caption 2: padding in the middle too */
    text[2 * 5 + 1] = 0;
    text[2 * 5 + 2] = 6;
    clip_train_zero_grad(tr);
    double L0 = 0.0;
    dalle_status st = clip_train_forward(tr, text, NULL, images, B, &L0);
    clip_train_backward(tr);
    check(!st && isfinite(L0), "tiny CLIP (%lld weights, %d tensors): forward loss %.4f",
          (long long)tr->pt.n_weights, tr->pt.n_params, L0);
    batch_ctx k = {tr, text, images, B};
    check_model_fd("tiny CLIP", &tr->pt, batch_loss, &k);
    /* padding (id 0, masked out) is neither attended to nor averaged: no
     * gradient reaches its embedding row */
    const train_param *emb = clip_train_find(tr, "text_emb.weight");
    int zero = 1;
    for (int i = 0; i < c.dim_text; i++)
        zero &= tr->pt.g[emb->offset + i] == 0.0f;
    check(zero, "text mask: the padding id's embedding row gets exactly no gradient");
    clip_train_free(tr);
}

/* ---- golden: upstream's checkpoint in the trainer --------------------------------------- */

static void test_golden(const char *golden_dir, const char *bundle_path)
{
    dalle_bundle *b = NULL;
    dalle_status st = dalle_bundle_open(bundle_path, &b);
    if (st) {
        check(0, "open %s: %s", bundle_path, dalle_last_error());
        return;
    }
    clip_train_config c = clip_train_default_config();
    struct {
        const char *key;
        int *v;
    } keys[] = {{"clip.dim_text", &c.dim_text},
                {"clip.dim_image", &c.dim_image},
                {"clip.dim_latent", &c.dim_latent},
                {"clip.num_text_tokens", &c.num_text_tokens},
                {"clip.text_enc_depth", &c.text_enc_depth},
                {"clip.text_seq_len", &c.text_seq_len},
                {"clip.text_heads", &c.text_heads},
                {"clip.num_visual_tokens", &c.num_visual_tokens},
                {"clip.visual_enc_depth", &c.visual_enc_depth},
                {"clip.visual_heads", &c.visual_heads},
                {"clip.visual_image_size", &c.visual_image_size},
                {"clip.visual_patch_size", &c.visual_patch_size},
                {"clip.channels", &c.channels}};
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
        int64_t v;
        if (!dalle_bundle_meta_i64(b, keys[i].key, &v))
            *keys[i].v = (int)v;
    }
    char path[1200], err[256];
    npy text = {0}, mask = {0}, images = {0}, sim = {0};
    int ok = 1;
    const char *names[4] = {"text", "text_mask", "images", "similarity"};
    npy *arrs[4] = {&text, &mask, &images, &sim};
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/clip_dalle_pytorch/%s.npy", golden_dir, names[i]);
        if (npy_load(path, arrs[i], err, sizeof err)) {
            check(0, "golden %s: %s", names[i], err);
            ok = 0;
        }
    }
    const int B = ok ? (int)text.dims[0] : 0;
    clip_train *tr = NULL;
    if (ok && (st = clip_train_create(&c, B, &tr)))
        check(0, "clip_train_create from the golden metadata: %s", dalle_last_error());
    if (ok && tr) {
        st = clip_train_load_weights(tr, b);
        /* the converter adds the tokenizer (tokenizer.bpe_merges); every
         * other tensor must be one of the trainer's */
        int n_model = 0, unknown = 0;
        char first_unknown[160] = "";
        for (int i = 0; i < dalle_bundle_n_tensors(b); i++) {
            dalle_tensor_info info;
            if (dalle_bundle_tensor_info(b, i, &info) || !strncmp(info.name, "tokenizer.", 10))
                continue;
            n_model++;
            if (!clip_train_find(tr, info.name) && !unknown++)
                snprintf(first_unknown, sizeof first_unknown, "%s", info.name);
        }
        check(!st && n_model == tr->pt.n_params && !unknown,
              "golden clip.pt: the trainer's %d tensors are the converted state dict's %d "
              "(names and shapes), none unknown%s%s %s",
              tr->pt.n_params, n_model, unknown ? ", first unknown: " : "", first_unknown,
              st ? dalle_last_error() : "");
        int32_t *ids = npy_to_i32(&text), *m32 = npy_to_i32(&mask);
        uint8_t *m8 = malloc((size_t)mask.numel);
        for (int64_t i = 0; i < mask.numel; i++)
            m8[i] = m32[i] != 0;
        double L = 0.0;
        st = clip_train_forward(tr, ids, m8, images.data, B, &L);
        const float *s = clip_train_sim(tr), *want = sim.data;
        double num = 0.0, den = 0.0;
        for (int i = 0; i < B; i++) {
            num += (s[i * B + i] - want[i]) * (double)(s[i * B + i] - want[i]);
            den += (double)want[i] * want[i];
        }
        check(!st && sqrt(num / den) < 1e-4,
              "trainer forward on upstream's weights: diag(sim) = similarity.npy "
              "(clip(text, images, text_mask), %d pairs): rel-L2 %.2e; loss %.4f",
              B, sqrt(num / den), L);
        free(ids);
        free(m32);
        free(m8);
    }
    for (int i = 0; i < 4; i++)
        npy_free(arrs[i]);
    clip_train_free(tr);
    dalle_bundle_close(b);
}

/* ---- round trip, reload, threads -------------------------------------------------------- */

static double train_step(clip_train *tr, adamw *o, double lr, const int32_t *text,
                         const uint8_t *mask, const float *images, int B)
{
    double L = 0.0;
    clip_train_zero_grad(tr);
    clip_train_forward(tr, text, mask, images, B, &L);
    clip_train_backward(tr);
    clip_grad_norm(tr->pt.g, tr->pt.n_weights, 0.5);
    adamw_step(o, tr->pt.w, tr->pt.g, tr->pt.decay, lr);
    return L;
}

static dalle_status write_bundle(const clip_train *tr, const char *path)
{
    dalle_bundle_writer *w = NULL;
    dalle_status st = dalle_bundle_writer_create("clip", &w);
    if (!st)
        st = clip_train_write(tr, w);
    if (!st)
        st = dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return st;
}

static void test_round_trip(void)
{
    clip_train_config c = tiny_config();
    c.dim_text = 16;
    c.dim_image = 16;
    c.dim_latent = 8;
    c.visual_image_size = 16;
    c.visual_patch_size = 8;
    c.num_text_tokens = 20;
    c.text_seq_len = 6;
    enum { B = 4 };
    int32_t text[B * 6];
    uint8_t mask[B * 6];
    float images[B * 3 * 256];
    clip_train *tr = NULL, *tr2 = NULL;
    adamw o;
    adamw_config ac = adamw_default_config();
    ac.weight_decay = 0.01;
    if (clip_train_create(&c, B, &tr) || adamw_init(&o, tr->pt.n_weights, &ac)) {
        check(0, "round trip: create: %s", dalle_last_error());
        return;
    }
    random_batch(&c, B, text, images);
    for (int i = 0; i < 3; i++)
        train_step(tr, &o, 1e-2, text, NULL, images, B);
    random_batch(&c, B, text, images);
    for (int i = 0; i < B * 6; i++)
        mask[i] = text[i] != 0;
    mask[3] = 1; /* a mask that keeps one padding position: not text != 0 */
    double L = 0.0;
    clip_train_forward(tr, text, mask, images, B, &L);
    char path[600];
    snprintf(path, sizeof path, "%s/test_clip_train.dalle", tmpdir);
    clip_ctx *ctx = NULL;
    dalle_status st = write_bundle(tr, path);
    if (!st)
        st = clip_ctx_create(path, NULL, &ctx);
    float out[B];
    double worst = 0.0, big = 0.0;
    const float *sim = clip_train_sim(tr);
    for (int i = 0; i < B && !st; i++) {
        st = clip_score_masked(ctx, text + i * 6, mask + i * 6, images, B, out);
        for (int j = 0; j < B && !st; j++) {
            worst = fmax(worst, fabs(out[j] - sim[i * B + j]));
            big = fmax(big, fabs(out[j]));
        }
    }
    check(!st && worst <= 1e-6,
          "after 3 AdamW steps: clip_train_write -> clip_ctx_create -> clip_score_masked = the "
          "trainer's sim (%d x %d, max |diff| %.2e, max |score| %.3f) %s",
          B, B, worst, big, st ? dalle_last_error() : "");
    clip_ctx_free(ctx);

    /* reload into a trainer of another seed: the same forward, bit for bit */
    c.seed = 99;
    dalle_bundle *bun = NULL;
    if (!st)
        st = dalle_bundle_open(path, &bun);
    if (!st)
        st = clip_train_create(&c, B, &tr2);
    if (!st)
        st = clip_train_load_weights(tr2, bun);
    double L2 = -1.0;
    if (!st)
        st = clip_train_forward(tr2, text, mask, images, B, &L2);
    check(!st && L2 == L && !memcmp(clip_train_sim(tr2), sim, sizeof(float) * B * B),
          "clip_train_load_weights of the written bundle: loss %.6f and sim bit-identical %s", L2,
          st ? dalle_last_error() : "");
    dalle_bundle_close(bun);
    remove(path);

    /* thread count */
    float *g1 = malloc((size_t)tr->pt.n_weights * sizeof *g1);
    clip_train_zero_grad(tr);
    clip_train_forward(tr, text, NULL, images, B, NULL);
    clip_train_backward(tr);
    memcpy(g1, tr->pt.g, (size_t)tr->pt.n_weights * sizeof *g1);
    tpool *pool = NULL;
    st = tpool_create(3, &pool);
    tr->pool = pool;
    clip_train_zero_grad(tr);
    clip_train_forward(tr, text, NULL, images, B, NULL);
    clip_train_backward(tr);
    check(!st && !memcmp(g1, tr->pt.g, (size_t)tr->pt.n_weights * sizeof *g1),
          "gradients on the calling thread and on a %d-thread pool: bit-identical",
          tpool_threads(pool));
    tr->pool = NULL;
    tpool_free(pool);
    free(g1);

    /* argument checks */
    int32_t bad[B * 6];
    memcpy(bad, text, sizeof bad);
    bad[5] = c.num_text_tokens;
    check(clip_train_forward(tr, bad, NULL, images, B, NULL) == DALLE_ERR_INVALID_ARGUMENT &&
              strstr(dalle_last_error(), "text[5]"),
          "an id out of range is refused: %s", dalle_last_error());
    memset(bad, 0, sizeof bad);
    bad[0] = 3;
    check(clip_train_forward(tr, bad, NULL, images, 2, NULL) == DALLE_ERR_INVALID_ARGUMENT &&
              strstr(dalle_last_error(), "caption 1 keeps no token"),
          "an all-padding caption is refused: %s", dalle_last_error());
    check(clip_train_forward(tr, text, NULL, images, B + 1, NULL) == DALLE_ERR_INVALID_ARGUMENT,
          "batch above max_batch is refused: %s", dalle_last_error());
    clip_train_config odd = c;
    odd.visual_patch_size = 5;
    clip_train *none = NULL;
    check(clip_train_create(&odd, 2, &none) == DALLE_ERR_INVALID_ARGUMENT && !none,
          "image size not a multiple of the patch is refused: %s", dalle_last_error());
    adamw_free(&o);
    clip_train_free(tr);
    clip_train_free(tr2);
}

/* ---- training on the synthetic world ----------------------------------------------------- */

enum { SW_SIZE = 16, SW_LEN = 8, SW_VOCAB = 48 };
static char vocab[SW_VOCAB][16];
static int n_vocab = 1; /* id 0 is padding */

/* Word-level ids of the world's grammar, assigned in order of appearance
 * (deterministic: the items are). 0 = padding. */
static int tokenize_words(const char *caption, int32_t *ids)
{
    char buf[SYNTH_CAPTION_CAP];
    snprintf(buf, sizeof buf, "%s", caption);
    int n = 0;
    memset(ids, 0, SW_LEN * sizeof *ids);
    for (char *w = strtok(buf, " "); w; w = strtok(NULL, " ")) {
        int id = 0;
        for (int v = 1; v < n_vocab && !id; v++)
            if (!strcmp(vocab[v], w))
                id = v;
        if (!id) {
            if (n_vocab == SW_VOCAB)
                return -1;
            snprintf(vocab[n_vocab], sizeof vocab[0], "%s", w);
            id = n_vocab++;
        }
        if (n < SW_LEN)
            ids[n++] = id;
    }
    return n;
}

typedef struct items {
    int n;
    float *images;
    int32_t *text;
    synth_scene *scenes;
} items;

static int make_items(const synth_world *w, uint64_t first, int n, synth_split split, items *it)
{
    it->n = n;
    it->images = malloc((size_t)n * 3 * SW_SIZE * SW_SIZE * sizeof(float));
    it->text = malloc((size_t)n * SW_LEN * sizeof(int32_t));
    it->scenes = malloc((size_t)n * sizeof(synth_scene));
    for (int i = 0; i < n; i++) {
        char cap[SYNTH_CAPTION_CAP];
        if (synth_sample(w, 5, first + (uint64_t)i, split, SW_SIZE,
                         it->images + (int64_t)i * 3 * SW_SIZE * SW_SIZE, cap, sizeof cap,
                         &it->scenes[i]) ||
            tokenize_words(cap, it->text + (int64_t)i * SW_LEN) < 1)
            return -1;
    }
    return 0;
}

static void free_items(items *it)
{
    free(it->images);
    free(it->text);
    free(it->scenes);
}

/* Whether caption (scene) `cap` is a true description of image scene `img`:
 * the same colour and shape, and the same background if it names one. */
static int describes(const synth_scene *cap, const synth_scene *img)
{
    return cap->objects[0].color == img->objects[0].color &&
           cap->objects[0].shape == img->objects[0].shape &&
           (!(cap->says & SYNTH_SAYS_BACKGROUND) || cap->background == img->background);
}

/* Image → caption retrieval over a batch: for each image the caption of
 * highest sim; exact = its own caption, true = a caption true of it. */
static void retrieval(const float *sim, const items *it, int first, int B, int *exact,
                      int *truthful)
{
    for (int j = 0; j < B; j++) {
        int best = 0;
        for (int i = 1; i < B; i++)
            if (sim[i * B + j] > sim[best * B + j])
                best = i;
        *exact += best == j;
        *truthful += describes(&it->scenes[first + best], &it->scenes[first + j]);
    }
}

static void test_training_run(void)
{
    const synth_world world = {.n_colors = 4, .n_shapes = 3, .max_objects = 1, .layouts = 0};
    enum { N_TRAIN = 512, B = 32, STEPS = 400, N_EVAL = 128 };
    items tr_items, ev_items;
    if (make_items(&world, 0, N_TRAIN, SYNTH_TRAIN, &tr_items) ||
        make_items(&world, 100000, N_EVAL, SYNTH_TRAIN, &ev_items)) {
        check(0, "synthetic world items: %s", dalle_last_error());
        return;
    }
    clip_train_config c = clip_train_default_config();
    c.dim_text = 32;
    c.dim_image = 32;
    c.dim_latent = 32;
    c.num_text_tokens = SW_VOCAB;
    c.text_enc_depth = 1;
    c.text_seq_len = SW_LEN;
    c.text_heads = 1;
    c.visual_enc_depth = 1;
    c.visual_heads = 1;
    c.visual_image_size = SW_SIZE;
    c.visual_patch_size = 4;
    c.seed = 1;
    clip_train *tr = NULL;
    adamw o;
    adamw_config ac = adamw_default_config();
    if (clip_train_create(&c, B, &tr) || adamw_init(&o, tr->pt.n_weights, &ac)) {
        check(0, "training run: create: %s", dalle_last_error());
        return;
    }
    /* the loss before and after on the same fixed evaluation batches */
    double before = 0.0, after = 0.0;
    int ex0 = 0, tr0 = 0, ex1 = 0, tr1 = 0;
    for (int e = 0; e < N_EVAL; e += B) {
        double L;
        clip_train_forward(tr, ev_items.text + e * SW_LEN, NULL,
                           ev_items.images + (int64_t)e * 3 * SW_SIZE * SW_SIZE, B, &L);
        before += L * B / N_EVAL;
        retrieval(clip_train_sim(tr), &ev_items, e, B, &ex0, &tr0);
    }
    double t0 = now(), first = 0.0, last = 0.0;
    for (int s = 0; s < STEPS; s++) {
        const int at = (s * B) % N_TRAIN;
        /* linear warm-up over 20 steps, then 5e-3; clipping 0.5 as train_dalle.py */
        double lr = 5e-3 * (s < 20 ? (s + 1) / 20.0 : 1.0);
        double L = train_step(tr, &o, lr, tr_items.text + at * SW_LEN, NULL,
                              tr_items.images + (int64_t)at * 3 * SW_SIZE * SW_SIZE, B);
        if (s == 0)
            first = L;
        last = L;
    }
    double secs = now() - t0;
    for (int e = 0; e < N_EVAL; e += B) {
        double L;
        clip_train_forward(tr, ev_items.text + e * SW_LEN, NULL,
                           ev_items.images + (int64_t)e * 3 * SW_SIZE * SW_SIZE, B, &L);
        after += L * B / N_EVAL;
        retrieval(clip_train_sim(tr), &ev_items, e, B, &ex1, &tr1);
    }
    /* the same images in batches of 8, where a caption is rarely true of
     * two images: is the image's own caption first? */
    int ex8 = 0, tr8 = 0;
    for (int e = 0; e < N_EVAL; e += 8) {
        clip_train_forward(tr, ev_items.text + e * SW_LEN, NULL,
                           ev_items.images + (int64_t)e * 3 * SW_SIZE * SW_SIZE, 8, NULL);
        retrieval(clip_train_sim(tr), &ev_items, e, 8, &ex8, &tr8);
    }
    /* unseen (colour, shape, background) combinations: reported only */
    items ho;
    int exh = 0, trh = 0;
    if (!make_items(&world, 0, B, SYNTH_HELDOUT, &ho)) {
        clip_train_forward(tr, ho.text, NULL, ho.images, B, NULL);
        retrieval(clip_train_sim(tr), &ho, 0, B, &exh, &trh);
    }
    free_items(&ho);
    printf("# synthetic world (4 colours, 3 shapes, one centred object, %d px, %d words): "
           "%lld weights, %d steps of %d in %.2f s (%.1f ms/step); train loss %.3f -> %.3f, "
           "temperature %.3f; unseen combinations: top caption true for %d of %d, own %d\n",
           SW_SIZE, n_vocab - 1, (long long)tr->pt.n_weights, STEPS, B, secs, 1e3 * secs / STEPS,
           first, last, tr->pw.temperature[0], trh, B, exh);
    check(after < 0.5 * before,
          "CLIP on the synthetic world, %d steps: held-out loss %.3f -> %.3f (must halve; "
          "chance is ln %d = %.3f)",
          STEPS, before, after, B, log((double)B));
    check(tr1 >= N_EVAL * 3 / 4,
          "held-out images (%d, batches of %d): top caption true of the image %d -> %d (must "
          "be 3 in 4; its own caption %d -> %d)",
          N_EVAL, B, tr0, tr1, ex0, ex1);
    check(ex8 > N_EVAL / 2,
          "held-out images in batches of 8: the image's own caption first for %d of %d (must "
          "be most; a true caption %d)",
          ex8, N_EVAL, tr8);
    adamw_free(&o);
    clip_train_free(tr);
    free_items(&tr_items);
    free_items(&ev_items);
}

int main(int argc, char **argv)
{
    rng_seed(0x2545f4914f6cdd1dull);
    if (argc > 1)
        tmpdir = argv[1];
    test_masked_mean();
    test_normalize();
    test_contrastive();
    test_patch_embedding();
    test_whole_model();
    test_round_trip();
    if (argc > 3)
        test_golden(argv[2], argv[3]);
    else
        printf("# golden case not given: the upstream-checkpoint check is skipped\n");
    test_training_run();
    return check_summary(NULL);
}
