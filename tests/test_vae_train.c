/* Training the DiscreteVAE (issue 7: lib/train/conv_backward.c,
 * vae_train.c, vae_train_pass.c).
 *
 *  1. The batched convolutions (conv 4×4/2, 3×3/1, 1×1, 3×3/2 unpadded,
 *     transposed 4×4/2) against double loops and lib/conv.c, and their
 *     backward passes against central finite differences of those double
 *     loops (h = 1e-6 relative: the reference is linear in each input, so
 *     the differences are exact up to ~1e-10 round-off; the float backward
 *     is off by ~1e-7 relative, tolerance rel-L2 1e-5), with the column
 *     buffer whole and cut to one row per tile, and bit-identical on 1 and
 *     3 threads. ReLU and normalisation backward likewise.
 *  2. The whole model: d loss / d w of a tiny VAE (1 ResBlock, KL weight on)
 *     against central differences of the float forward, with the Gumbel
 *     noise fixed (same step, same seed). The float forward limits what
 *     differences can see: with h = 1e-3 along a unit direction the loss
 *     (~0.3, summed in double from float outputs with ~1e-7 relative error)
 *     gives derivatives good to ~2e-5 absolute, and a ReLU that switches
 *     inside ±h adds errors of that order (measured worst: 8e-5 absolute,
 *     1.3% relative). Each tensor is checked along its own gradient
 *     direction (where the signal is largest) and the whole model along 3
 *     random directions, to 2% relative + 2e-4 absolute. (A buffer overrun
 *     found this way during development was off by 8e-4 .. 2e-3.)
 *     Straight-through: the encoder's gradient is by design not the
 *     forward's (which is piecewise constant in it), so only the codebook
 *     and decoder are checked there.
 *  3. Round trip: a few steps, vae_train_write → dalle_ctx_create →
 *     dalle_encode / dalle_decode = the trainer's argmax encode / decode.
 *  4. Resume: checkpoint (weights + Adam + temperature + lr) after k steps;
 *     a new trainer resumed from it continues bit-identically, and a
 *     3-thread run equals the 1-thread run bit for bit.
 *  5. A tiny training run on the synthetic world (300 steps): the
 *     reconstruction loss must fall below 0.3× and the held-out
 *     encode → decode error below 0.5×.
 *
 *     test_vae_train [TMPDIR]
 *     test_vae_train demo OUTDIR [STEPS] [THREADS] [SIZE] [BATCH] [TOKENS] [DIM]
 * The second form is not a test: it trains the demo-size VAE on the
 * synthetic world, prints the time per step and writes originals /
 * reconstructions as PNGs every 100 steps.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv.h"
#include "dalle/dalle.h"
#include "fd_check.h"
#include "threadpool.h"
#include "train/conv_backward.h"
#include "train/synth.h"
#include "train/vae_train.h"

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* ---- 1. convolutions ------------------------------------------------------------- */

typedef struct cref {
    bconv c;
    const float *r; /* cotangent [cout][B][ho][wo] */
    int64_t nx, nw, nb;
} cref;

/* y in double from θ = x | W | b (CBHW layout, PyTorch weight layouts). */
static void ref_forward(const bconv *c, const double *x, const double *w, const double *b,
                        double *y)
{
    const int B = c->batch, k = c->k, s = c->stride, p = c->pad;
    const int64_t ihw = (int64_t)c->h * c->w, ohw = (int64_t)c->ho * c->wo;
    for (int o = 0; o < c->cout; o++)
        for (int64_t i = 0; i < B * ohw; i++)
            y[o * B * ohw + i] = b[o];
    for (int o = 0; o < c->cout; o++)
        for (int ci = 0; ci < c->cin; ci++)
            for (int bb = 0; bb < B; bb++)
                for (int ki = 0; ki < k; ki++)
                    for (int kj = 0; kj < k; kj++) {
                        double wv = c->transposed ? w[(((int64_t)ci * c->cout + o) * k + ki) * k + kj]
                                                  : w[(((int64_t)o * c->cin + ci) * k + ki) * k + kj];
                        if (!c->transposed) {
                            for (int i = 0; i < c->ho; i++)
                                for (int j = 0; j < c->wo; j++) {
                                    int iy = i * s - p + ki, ix = j * s - p + kj;
                                    if (iy < 0 || iy >= c->h || ix < 0 || ix >= c->w)
                                        continue;
                                    y[(o * B + bb) * ohw + (int64_t)i * c->wo + j] +=
                                        wv * x[(ci * B + bb) * ihw + (int64_t)iy * c->w + ix];
                                }
                        } else {
                            for (int i = 0; i < c->h; i++)
                                for (int j = 0; j < c->w; j++) {
                                    int oy = i * s - p + ki, ox = j * s - p + kj;
                                    if (oy < 0 || oy >= c->ho || ox < 0 || ox >= c->wo)
                                        continue;
                                    y[(o * B + bb) * ohw + (int64_t)oy * c->wo + ox] +=
                                        wv * x[(ci * B + bb) * ihw + (int64_t)i * c->w + j];
                                }
                        }
                    }
}

/* Σ r ⊙ y(θ): the loss_fn of the finite differences (ctx: the cref). */
static double ref_loss(const double *t, const void *ctx)
{
    const cref *r = ctx;
    const int64_t ny = (int64_t)r->c.cout * r->c.batch * r->c.ho * r->c.wo;
    double *y = malloc((size_t)ny * sizeof *y), L = 0.0;
    ref_forward(&r->c, t, t + r->nx, t + r->nx + r->nw, y);
    for (int64_t i = 0; i < ny; i++)
        L += r->r[i] * y[i];
    free(y);
    return L;
}

static void test_conv(const char *what, int cin, int cout, int k, int s, int p, int tr, int B,
                      int h, tpool *pool)
{
    cref r;
    r.c = bconv_make(cin, cout, k, s, p, tr, B, h, h);
    const bconv *c = &r.c;
    r.nx = (int64_t)cin * B * h * h;
    r.nw = (int64_t)cin * cout * k * k;
    r.nb = cout;
    const int64_t ny = (int64_t)cout * B * c->ho * c->wo, n = r.nx + r.nw + r.nb;
    float *th = malloc((size_t)n * sizeof *th), *rr = malloc((size_t)ny * sizeof *rr);
    float *y = malloc((size_t)ny * sizeof *y), *g = malloc((size_t)n * sizeof *g);
    float *g2 = malloc((size_t)n * sizeof *g2), *g3 = malloc((size_t)n * sizeof *g3);
    double *t = malloc((size_t)n * sizeof *t), *yr = malloc((size_t)ny * sizeof *yr);
    double *fd = malloc((size_t)n * sizeof *fd);
    fill(th, n, -1, 1);
    fill(rr, ny, -1, 1);
    r.r = rr;
    const float *x = th, *w = th + r.nx, *b = w + r.nw;
    for (int64_t i = 0; i < n; i++)
        t[i] = th[i];
    /* forward: whole column buffer and one row per tile */
    int64_t need = bconv_col_need(c, (int64_t)1 << 30), one = bconv_col_need(c, 1);
    float *col = malloc((size_t)(need > 0 ? need : 1) * sizeof *col);
    ref_forward(c, t, t + r.nx, t + r.nx + r.nw, yr);
    bconv_forward(c, x, w, b, y, col, need, NULL);
    double e_whole = rel_l2(y, yr, ny);
    bconv_forward(c, x, w, b, y, col, one, NULL);
    double e_rows = rel_l2(y, yr, ny);
    double e_conv = 0.0;
    if (B == 1) { /* lib/conv.c computes the same single image */
        float *y1 = malloc((size_t)ny * sizeof *y1);
        if (tr) {
            int64_t cn = conv_transpose2d_col_need(cout, k, h, h, 1 << 22);
            float *c1 = malloc((size_t)cn * sizeof *c1);
            conv_transpose2d(cin, cout, k, s, p, x, h, h, w, b, y1, c1, cn, NULL);
            free(c1);
        } else {
            conv_geom cg = conv_geom_make(cin, cout, k, s, p);
            int64_t cn = conv2d_col_need(&cg, h, h, 1 << 22);
            float *c1 = malloc((size_t)(cn > 0 ? cn : 1) * sizeof *c1);
            conv2d(&cg, x, h, h, w, b, y1, c1, cn, NULL);
            free(c1);
        }
        double *y1d = malloc((size_t)ny * sizeof *y1d);
        for (int64_t i = 0; i < ny; i++)
            y1d[i] = y1[i];
        e_conv = rel_l2(y, y1d, ny);
        free(y1);
        free(y1d);
    }
    check(e_whole < 1e-6 && e_rows < 1e-6 && e_conv < 1e-6,
          "%s forward = double loops (rel-L2 %.1e whole, %.1e one row per tile)%s %.1e", what,
          e_whole, e_rows, B == 1 ? "; = lib/conv.c:" : "", e_conv);
    /* backward onto non-zero buffers (it accumulates): subtract them after */
    fd_grad(ref_loss, &r, t, n, fd);
    for (int pass = 0; pass < 3; pass++) {
        float *gg = pass == 0 ? g : pass == 1 ? g2 : g3;
        for (int64_t i = 0; i < n; i++)
            gg[i] = 0.5f;
        bconv_backward(c, x, w, rr, gg, gg + r.nx, gg + r.nx + r.nw, col, pass == 1 ? one : need,
                       pass == 2 ? pool : NULL);
        for (int64_t i = 0; i < n; i++)
            gg[i] -= 0.5f;
    }
    double ex = rel_l2(g, fd, r.nx), ew = rel_l2(g + r.nx, fd + r.nx, r.nw);
    double eb = rel_l2(g + r.nx + r.nw, fd + r.nx + r.nw, r.nb);
    double e1 = rel_l2(g2, fd, n);
    check(ex < 1e-5 && ew < 1e-5 && eb < 1e-5 && e1 < 1e-5,
          "%s backward vs finite differences: dx %.1e, dW %.1e, db %.1e (rel-L2); one row per "
          "tile %.1e",
          what, ex, ew, eb, e1);
    check(!memcmp(g, g3, (size_t)n * sizeof *g), "%s backward: 1 thread = %d threads bit for bit",
          what, tpool_threads(pool));
    free(th), free(rr), free(y), free(g), free(g2), free(g3), free(t), free(yr), free(fd);
    free(col);
}

static void test_elementwise(void)
{
    enum { N = 64 };
    float y[N], dy[N], dx[N], m[N], sd[2] = {0.5f, 0.25f};
    fill(y, N, -1, 1);
    fill(dy, N, -1, 1);
    memcpy(m, dy, sizeof m);
    memset(dx, 0, sizeof dx);
    bw_relu(y, dy, N, dx);
    bw_relu_mask(y, m, N);
    int ok = 1;
    for (int i = 0; i < N; i++) /* d relu(x)/dx = [x > 0] = [relu(x) > 0] */
        ok &= dx[i] == (y[i] > 0 ? dy[i] : 0.0f) && m[i] == dx[i];
    check(ok, "ReLU backward: dx = dy·[y > 0], accumulating and in place");
    memset(dx, 0, sizeof dx);
    bw_image_norm(dy, 2, N / 2, sd, dx);
    double worst = 0;
    for (int i = 0; i < N; i++) {
        /* d/dx of (x - mean)/std by central differences in double */
        double s = sd[i / (N / 2)], x0 = 0.3, h = 1e-6;
        double fd = dy[i] * (((x0 + h) - 0.5) / s - ((x0 - h) - 0.5) / s) / (2 * h);
        worst = fmax(worst, fabs(dx[i] - fd) / (fabs(fd) + 1e-12));
    }
    check(worst < 1e-6, "normalisation backward vs finite differences: max rel %.1e", worst);
}

/* ---- 2. the whole model -------------------------------------------------------------- */

static vae_train_config tiny_config(void)
{
    vae_train_config c = vae_train_default_config();
    c.image_size = 8;
    c.num_layers = 2;
    c.num_tokens = 8;
    c.codebook_dim = 6;
    c.hidden_dim = 5;
    c.num_resnet_blocks = 1;
    c.kl_div_loss_weight = 0.05;
    c.seed = 7;
    return c;
}

static double loss_at(vae_train *tr, const float *px, int B)
{
    vae_train_stats st;
    vae_train_forward(tr, px, B, &st);
    return st.loss;
}

static void grad_check(const char *what, vae_train_config c, int decoder_only)
{
    const int B = 2;
    vae_train *tr = NULL;
    if (vae_train_create(&c, B, &tr)) {
        check(0, "%s: create: %s", what, dalle_last_error());
        return;
    }
    const int64_t np = (int64_t)B * 3 * c.image_size * c.image_size;
    float *px = malloc((size_t)np * sizeof *px);
    fill(px, np, 0, 1);
    tr->temp = 0.9;
    vae_train_zero_grad(tr);
    vae_train_stats st;
    vae_train_forward(tr, px, B, &st);
    vae_train_backward(tr);
    const int64_t nw = tr->pt.n_weights;
    float *g = malloc((size_t)nw * sizeof *g), *v = malloc((size_t)nw * 4);
    memcpy(g, tr->pt.g, (size_t)tr->pt.n_weights * sizeof *g);
    const double h = 1e-3;
    int bad = 0, checked = 0;
    double worst = 0.0;
    char worst_name[160] = "";
    for (int t = -3; t < tr->pt.n_params; t++) {
        /* t < 0: a random direction over every (checked) tensor */
        memset(v, 0, (size_t)tr->pt.n_weights * sizeof *v);
        double norm = 0.0;
        for (int q = 0; q < tr->pt.n_params; q++) {
            const train_param *p = &tr->pt.params[q];
            if ((t >= 0 && q != t) || (decoder_only && strstr(p->name, "encoder")))
                continue;
            for (int64_t i = 0; i < p->numel; i++) {
                float d = t >= 0 ? g[p->offset + i] : (float)(urand() - 0.5);
                v[p->offset + i] = d;
                norm += (double)d * d;
            }
        }
        if (norm == 0.0)
            continue;
        double dot = 0.0;
        for (int64_t i = 0; i < tr->pt.n_weights; i++) {
            v[i] = (float)(v[i] / sqrt(norm));
            dot += (double)v[i] * g[i];
        }
        float *w0 = malloc((size_t)tr->pt.n_weights * sizeof *w0);
        memcpy(w0, tr->pt.w, (size_t)tr->pt.n_weights * sizeof *w0);
        for (int64_t i = 0; i < tr->pt.n_weights; i++)
            tr->pt.w[i] = w0[i] + (float)h * v[i];
        double lp = loss_at(tr, px, B);
        for (int64_t i = 0; i < tr->pt.n_weights; i++)
            tr->pt.w[i] = w0[i] - (float)h * v[i];
        double lm = loss_at(tr, px, B);
        memcpy(tr->pt.w, w0, (size_t)tr->pt.n_weights * sizeof *w0);
        free(w0);
        double fd = (lp - lm) / (2 * h), err = fabs(fd - dot) / (0.02 * fabs(dot) + 2e-4);
        checked++;
        if (getenv("VT_DEBUG"))
            printf("    %s: fd %.6f grad %.6f\n", t < 0 ? "random" : tr->pt.params[t].name, fd,
                   dot);
        if (fabs(fd - dot) > 0.02 * fabs(dot) + 2e-4)
            bad++;
        if (err > worst) {
            worst = err;
            snprintf(worst_name, sizeof worst_name, "%s (fd %.5f, grad %.5f)",
                     t < 0 ? "random direction" : tr->pt.params[t].name, fd, dot);
        }
    }
    check(bad == 0,
          "%s: d loss/d w along %d directions (each tensor's gradient, 3 random) vs central "
          "differences, loss %.4f: %d outside 2%% + 2e-4; worst %s",
          what, checked, st.loss, bad, worst_name);
    free(g);
    free(v);
    free(px);
    vae_train_free(tr);
}

/* ---- synthetic images ----------------------------------------------------------------- */

static void synth_batch(const synth_world *w, uint64_t first, int B, int size, float *px)
{
    for (int b = 0; b < B; b++)
        synth_sample(w, 1234, first + (uint64_t)b, SYNTH_TRAIN, size,
                     px + (int64_t)b * 3 * size * size, NULL, 0, NULL);
}

/* ---- 3. round trip -------------------------------------------------------------------- */

static dalle_status write_bundle(const vae_train *tr, int with_state, const char *path)
{
    dalle_bundle_writer *w = NULL;
    dalle_status s = dalle_bundle_writer_create("dvae", &w);
    if (!s)
        s = vae_train_write(tr, w);
    if (!s && with_state)
        s = vae_train_save_state(tr, w);
    if (!s)
        s = dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return s;
}

static void test_round_trip(int straight_through, int normalize)
{
    vae_train_config c = vae_train_default_config();
    c.image_size = 16;
    c.num_layers = 2;
    c.num_tokens = 32;
    c.codebook_dim = 12;
    c.hidden_dim = 16;
    c.num_resnet_blocks = straight_through ? 1 : 0;
    c.straight_through = straight_through;
    c.normalize = normalize;
    c.seed = 3;
    const int B = 4, S = c.image_size, G = S >> c.num_layers;
    vae_train *tr = NULL;
    dalle_ctx *ctx = NULL;
    char path[600];
    snprintf(path, sizeof path, "%s/test_vae_train_rt.dalle", tmpdir);
    float *px = malloc((size_t)B * 3 * S * S * sizeof *px);
    float *p1 = malloc((size_t)B * 3 * S * S * sizeof *p1);
    float *p2 = malloc((size_t)B * 3 * S * S * sizeof *p2);
    int32_t ids1[64], ids2[64];
    dalle_status s = vae_train_create(&c, B, &tr);
    synth_batch(NULL, 0, B, S, px);
    for (int i = 0; i < 3 && !s; i++)
        s = vae_train_step(tr, px, B, NULL);
    if (!s)
        s = write_bundle(tr, 0, path);
    if (!s)
        s = dalle_ctx_create(path, NULL, &ctx);
    if (!s)
        s = dalle_encode(ctx, px, B, ids1);
    if (!s)
        s = vae_train_encode(tr, px, B, ids2);
    if (s) {
        check(0, "round trip: %s", dalle_last_error());
    } else {
        check(dalle_image_size(ctx) == S && dalle_image_seq_len(ctx) == G * G &&
                  dalle_num_image_tokens(ctx) == c.num_tokens &&
                  !memcmp(ids1, ids2, sizeof(int32_t) * (size_t)(B * G * G)),
              "round trip (straight_through %d, %d ResBlocks, normalization %s): 3 steps → "
              "bundle 'dvae' → dalle_ctx_create → dalle_encode = the trainer's argmax (%d ids)",
              straight_through, c.num_resnet_blocks, normalize ? "0.5/0.5" : "None", B * G * G);
        for (int i = 0; i < B * G * G; i++) /* every id, not only the encoded ones */
            ids1[i] = (i * 7 + 3) % c.num_tokens;
        s = dalle_decode(ctx, ids1, B, p1);
        if (!s)
            s = vae_train_decode(tr, ids1, B, p2);
        double worst = 0.0;
        for (int64_t i = 0; i < (int64_t)B * 3 * S * S; i++)
            worst = fmax(worst, fabs(p1[i] - p2[i]));
        check(!s && worst <= 1e-6, "  dalle_decode = the trainer's decode: max |diff| %.2e (≤ 1e-6)",
              worst);
    }
    dalle_bundle *bun = NULL;
    if (!dalle_bundle_open(path, &bun)) {
        const char *kind = "";
        double mean[3] = {0};
        int64_t nm = 0, L = 0;
        dalle_bundle_meta_str(bun, "general.kind", &kind);
        dalle_bundle_meta_i64(bun, "vae.num_layers", &L);
        dalle_status ms = dalle_bundle_meta_f64_array(bun, "vae.normalization.mean", mean, 3, &nm);
        check(!strcmp(kind, "dvae") && L == 2 &&
                  (normalize ? (!ms && nm == 3 && mean[0] == 0.5) : ms == DALLE_ERR_NOT_FOUND),
              "  bundle: general.kind '%s', vae.num_layers %lld, normalization %s", kind,
              (long long)L, normalize ? "[0.5, 0.5, 0.5]" : "absent");
        dalle_bundle_close(bun);
    }
    dalle_ctx_free(ctx);
    remove(path);
    vae_train_free(tr);
    free(px), free(p1), free(p2);
}

/* ---- 4. resume and threads ------------------------------------------------------------- */

static void test_resume(void)
{
    vae_train_config c = tiny_config();
    c.image_size = 16;
    c.straight_through = 1;
    c.anneal_every = 2; /* the schedule moves inside the checked window */
    c.anneal_rate = 0.05;
    c.steps_per_epoch = 5;
    const int B = 3, S = c.image_size;
    float *px = malloc((size_t)B * 3 * S * S * sizeof *px);
    vae_train *a = NULL, *b = NULL, *t3 = NULL;
    tpool *pool = NULL;
    tpool_create(3, &pool);
    char path[600];
    snprintf(path, sizeof path, "%s/test_vae_train_ckpt.dalle", tmpdir);
    dalle_status s = vae_train_create(&c, B, &a);
    if (!s)
        s = vae_train_create(&c, B, &t3);
    if (t3)
        t3->pool = pool;
    for (int i = 0; i < 4 && !s; i++) {
        synth_batch(NULL, (uint64_t)i * B, B, S, px);
        s = vae_train_step(a, px, B, NULL);
        if (!s)
            s = vae_train_step(t3, px, B, NULL);
    }
    if (!s)
        s = write_bundle(a, 1, path);
    for (int i = 4; i < 8 && !s; i++) {
        synth_batch(NULL, (uint64_t)i * B, B, S, px);
        s = vae_train_step(a, px, B, NULL);
        if (!s)
            s = vae_train_step(t3, px, B, NULL);
    }
    c.seed = 99; /* another initialisation, replaced by the checkpoint's */
    if (!s)
        s = vae_train_create(&c, B, &b);
    dalle_bundle *bun = NULL;
    if (!s)
        s = dalle_bundle_open(path, &bun);
    if (!s)
        s = vae_train_resume(b, bun);
    dalle_bundle_close(bun);
    for (int i = 4; i < 8 && !s; i++) {
        synth_batch(NULL, (uint64_t)i * B, B, S, px);
        s = vae_train_step(b, px, B, NULL);
    }
    if (s) {
        check(0, "resume: %s", dalle_last_error());
    } else {
        size_t nb = (size_t)a->pt.n_weights * sizeof(float);
        check(!memcmp(a->pt.w, b->pt.w, nb) && !memcmp(a->opt.m, b->opt.m, nb) &&
                  !memcmp(a->opt.v, b->opt.v, nb) && a->opt.step == b->opt.step &&
                  a->temp == b->temp && a->lr == b->lr && a->step == b->step,
              "checkpoint after 4 steps (weights, Adam, temp %.4f, lr %.3g), resume, 4 more: "
              "bit-identical to the uninterrupted run",
              a->temp, a->lr);
        check(!memcmp(a->pt.w, t3->pt.w, nb) && !memcmp(a->opt.v, t3->opt.v, nb),
              "8 steps on 1 thread and on %d threads: bit-identical weights and moments",
              tpool_threads(pool));
    }
    remove(path);
    vae_train_free(a);
    vae_train_free(b);
    vae_train_free(t3);
    tpool_free(pool);
    free(px);
}

/* ---- 5. a tiny training run -------------------------------------------------------------- */

/* Mean squared error in pixel space of encode → decode (the hard
 * reconstruction the inference side gives) over a fixed batch. */
static double hard_mse(vae_train *tr, const float *px, int B)
{
    const int S = tr->cfg.image_size, G = tr->grid;
    int32_t *ids = malloc((size_t)B * G * G * sizeof *ids);
    float *out = malloc((size_t)B * 3 * S * S * sizeof *out);
    vae_train_encode(tr, px, B, ids);
    vae_train_decode(tr, ids, B, out);
    double e = 0.0;
    for (int64_t i = 0; i < (int64_t)B * 3 * S * S; i++)
        e += (out[i] - px[i]) * (out[i] - px[i]);
    free(ids);
    free(out);
    return e / ((double)B * 3 * S * S);
}

static void test_training(void)
{
    vae_train_config c = vae_train_default_config();
    c.image_size = 16;
    c.num_layers = 2;
    c.num_tokens = 64;
    c.codebook_dim = 32;
    c.hidden_dim = 32;
    c.num_resnet_blocks = 1;
    c.seed = 1;
    /* measured (seed 1): recon 0.629 → 0.135 (0.21×) and held-out hard MSE
     * 0.122 → 0.030 (0.25×) in 300 steps. Under ASan (~20× slower) 60 steps
     * only, where the soft loss has fallen (~0.8×) but the hard
     * reconstruction has not started to improve yet. */
    const int B = 8, S = 16, steps = UNDER_ASAN ? 60 : 300;
    const double want = UNDER_ASAN ? 0.9 : 0.3, want_hard = UNDER_ASAN ? 10.0 : 0.5;
    synth_world w = synth_world_default();
    vae_train *tr = NULL;
    if (vae_train_create(&c, B, &tr)) {
        check(0, "training: %s", dalle_last_error());
        return;
    }
    float *px = malloc((size_t)B * 3 * S * S * sizeof *px);
    float *held = malloc((size_t)B * 3 * S * S * sizeof *held);
    synth_batch(&w, 1000000, B, S, held);
    double first = 0.0, last = 0.0, mse0 = hard_mse(tr, held, B), t0 = now();
    vae_train_stats st;
    for (int i = 0; i < steps; i++) {
        synth_batch(&w, (uint64_t)i * B, B, S, px);
        if (vae_train_step(tr, px, B, &st)) {
            check(0, "training step %d: %s", i, dalle_last_error());
            break;
        }
        if (i < 10)
            first += st.recon / 10;
        if (i >= steps - 10)
            last += st.recon / 10;
    }
    double dt = now() - t0, mse1 = hard_mse(tr, held, B);
    check(last < want * first && mse1 < want_hard * mse0,
          "synthetic world, 16 px, 2 layers, 64 tokens, 1 ResBlock, batch %d, %d steps (%.1f ms "
          "a step): recon loss (mean of 10 steps) %.4f → %.4f (must fall below %.2f×); held-out "
          "hard reconstruction MSE (pixels) %.4f → %.4f (below %.2f×); temp %.4f, lr %.2e",
          B, steps, 1e3 * dt / steps, first, last, want, mse0, mse1, want_hard, tr->temp,
          tr->lr);
    free(px);
    free(held);
    vae_train_free(tr);
}

static void test_errors(void)
{
    vae_train_config c = tiny_config();
    vae_train *tr = NULL;
    c.image_size = 12;
    check(vae_train_create(&c, 2, &tr) == DALLE_ERR_INVALID_ARGUMENT && !tr &&
              strstr(dalle_last_error(), "power of 2"),
          "image_size 12 refused: %s", dalle_last_error());
    c = tiny_config();
    c.num_layers = 4; /* 8 px >> 4 = 0 */
    check(vae_train_create(&c, 2, &tr) == DALLE_ERR_INVALID_ARGUMENT,
          "8 px with 4 layers refused: %s", dalle_last_error());
    c = tiny_config();
    vae_train_create(&c, 2, &tr);
    float px[3 * 8 * 8 * 3] = {0};
    check(vae_train_forward(tr, px, 3, NULL) == DALLE_ERR_INVALID_ARGUMENT,
          "batch above max_batch refused: %s", dalle_last_error());
    int32_t ids[16] = {0};
    ids[2] = 8; /* 8 px, 2 layers: 2×2 ids */
    check(vae_train_decode(tr, ids, 1, px) == DALLE_ERR_INVALID_ARGUMENT,
          "decode of id 8 of 8 refused: %s", dalle_last_error());
    const train_param *p = vae_train_find(tr, "vae.decoder.3.0.weight");
    check(p && p->ndim == 4 && p->dims[0] == 5 && p->dims[1] == 5 && p->dims[2] == 4 &&
              vae_train_find(tr, "vae.decoder.0.weight") &&
              vae_train_find(tr, "vae.encoder.2.net.4.bias") &&
              vae_train_find(tr, "vae.encoder.3.weight") &&
              vae_train_find(tr, "vae.decoder.4.weight"),
          "state-dict names: decoder.0 (1×1 in), encoder.2.net.*, encoder.3, decoder.2/3.0 "
          "(transposed [cin][cout][4][4]), decoder.4");
    vae_train_free(tr);
}

/* ---- the demo run (not a test) ------------------------------------------------------- */

static int demo(int argc, char **argv)
{
    const char *out = argv[2];
    int steps = argc > 3 ? atoi(argv[3]) : 500, threads = argc > 4 ? atoi(argv[4]) : 2;
    int size = argc > 5 ? atoi(argv[5]) : 32, B = argc > 6 ? atoi(argv[6]) : 32;
    int tokens = argc > 7 ? atoi(argv[7]) : 512, cbd = argc > 8 ? atoi(argv[8]) : 64;
    vae_train_config c = vae_train_default_config();
    c.image_size = size;
    c.num_layers = 2;
    c.num_tokens = tokens;
    c.codebook_dim = cbd;
    c.hidden_dim = 64;
    c.num_resnet_blocks = 1;
    c.seed = 1;
    synth_world w = synth_world_default();
    vae_train *tr = NULL;
    tpool *pool = NULL;
    tpool_create(threads, &pool);
    if (vae_train_create(&c, B, &tr)) {
        fprintf(stderr, "%s\n", dalle_last_error());
        return 1;
    }
    tr->pool = pool;
    const int64_t n = (int64_t)B * 3 * size * size;
    float *px = malloc((size_t)n * sizeof *px), *held = malloc((size_t)n * sizeof *held);
    float *grid = malloc((size_t)2 * 8 * 3 * size * size * sizeof *grid);
    int32_t *ids = malloc((size_t)B * tr->grid * tr->grid * sizeof *ids);
    synth_batch(&w, 1000000, B, size, held);
    printf("demo: %d px, %lld weights, batch %d, %d threads\n", size, (long long)tr->pt.n_weights,
           B, tpool_threads(pool));
    double t0 = now(), acc = 0;
    for (int i = 0; i <= steps; i++) {
        if (i % 100 == 0 || i == steps) {
            /* 8 originals over their hard reconstructions */
            vae_train_encode(tr, held, 8 < B ? 8 : B, ids);
            vae_train_decode(tr, ids, 8 < B ? 8 : B, grid + 8 * 3 * size * size);
            memcpy(grid, held, (size_t)8 * 3 * size * size * sizeof *grid);
            char path[700];
            snprintf(path, sizeof path, "%s/vae_recons_%05d.png", out, i);
            dalle_write_png(path, grid, 16, size, size);
            printf("step %d: hard MSE %.5f, %.1f ms/step\n", i, hard_mse(tr, held, 8),
                   i ? 1e3 * acc / i : 0.0);
            fflush(stdout);
        }
        if (i == steps)
            break;
        synth_batch(&w, (uint64_t)i * B, B, size, px);
        vae_train_stats st;
        double ts = now();
        vae_train_step(tr, px, B, &st);
        acc += now() - ts;
        if (i % 20 == 0)
            printf("  %d: loss %.5f recon %.5f kl %.1f temp %.4f lr %.2e\n", i, st.loss, st.recon,
                   st.kl, st.temp, st.lr);
    }
    printf("total %.1f s\n", now() - t0);
    vae_train_free(tr);
    tpool_free(pool);
    free(px), free(held), free(grid), free(ids);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 2 && !strcmp(argv[1], "demo"))
        return demo(argc, argv);
    if (argc > 1)
        tmpdir = argv[1];
    double t0 = now();
    tpool *pool = NULL;
    tpool_create(3, &pool);
    test_conv("conv 4×4/2 pad 1", 3, 4, 4, 2, 1, 0, 2, 6, pool);
    test_conv("conv 4×4/2 pad 1 (1 image)", 3, 4, 4, 2, 1, 0, 1, 8, pool);
    test_conv("conv 3×3/1 pad 1", 4, 3, 3, 1, 1, 0, 3, 5, pool);
    test_conv("conv 1×1", 5, 4, 1, 1, 0, 0, 2, 4, pool);
    test_conv("conv 3×3/2 unpadded", 2, 3, 3, 2, 0, 0, 2, 7, pool);
    test_conv("transposed 4×4/2 pad 1", 4, 3, 4, 2, 1, 1, 2, 4, pool);
    test_conv("transposed 4×4/2 pad 1 (1 image)", 3, 2, 4, 2, 1, 1, 1, 5, pool);
    tpool_free(pool);
    test_elementwise();

    vae_train_config c = tiny_config();
    grad_check("tiny VAE (8 px, 2 layers, 1 ResBlock, soft Gumbel, mse, KL 0.05)", c, 0);
    c.num_resnet_blocks = 0;
    c.smooth_l1_loss = 1;
    c.normalize = 0;
    grad_check("tiny VAE (no ResBlock, smooth_l1, normalization None)", c, 0);
    c = tiny_config();
    c.straight_through = 1;
    grad_check("tiny VAE, straight_through (codebook + decoder)", c, 1);

    test_errors();
    test_round_trip(0, 1);
    test_round_trip(1, 0);
    test_resume();
    test_training();
    char took[32];
    snprintf(took, sizeof took, " (%.1f s)", now() - t0);
    return check_summary(took);
}
