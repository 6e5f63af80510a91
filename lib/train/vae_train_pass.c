/* The DiscreteVAE's forward with its activations kept, the loss, and the
 * backward pass (vae_train.h). Every activation is [c][batch][h][w]
 * (conv_backward.h); the token axis of the logits is their channel axis,
 * so the Gumbel-softmax, the KL and the codebook product work on
 * [num_tokens][batch·g²] matrices, one column per token position. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../conv.h"
#include "../error.h"
#include "../ops.h"
#include "../rng.h"
#include "../threadpool.h"
#include "train/conv_backward.h"
#include "train/vae_train.h"

/* rng.h stream of the Gumbel noise (| the step): apart from the small
 * stream numbers (tensor indices) the initialisation uses. */
#define GUMBEL_STREAM ((uint64_t)1 << 62)
/* Column scratch for the convolutions: 4 Mi floats (16 MiB) at most, so a
 * large image does not need a huge im2col matrix. */
#define COL_CAP ((int64_t)1 << 22)
/* Token positions per task of the column-wise passes. */
#define COLS_PER_TASK 64

typedef struct res_acts {
    float *a1, *a2, *out; /* ReLU(conv3(x)), ReLU(conv3(a1)), conv1(a2) + x */
} res_acts;

typedef struct acts {
    int batch; /* of the last forward */
    float *x0; /* normalised input [C][B][S][S] */
    float *enc[VAE_TRAIN_MAX_LAYERS], *dec[VAE_TRAIN_MAX_LAYERS]; /* after ReLU */
    res_acts enc_res[VAE_TRAIN_MAX_RES], dec_res[VAE_TRAIN_MAX_RES];
    float *logits, *soft, *hard; /* [N][P]; hard: straight_through only */
    float *sampled, *dec_in;     /* [D][P], [hidden][P] */
    float *out;                  /* [C][B][S][S] */
    float *gbuf[3];              /* gradient buffers, max_act floats each */
    int64_t max_act;
    float *col;
    int64_t col_floats;
    double *colsum; /* [P] per-position KL */
    float *arena;
    int64_t used;
} acts;

static acts *A(const vae_train *tr) { return tr->act; }

/* ---- buffers ------------------------------------------------------------------- */

/* Bump allocation in the arena (64-byte aligned); while sizing (arena
 * NULL) only counts. */
static float *take(acts *a, int64_t n)
{
    float *p = a->arena ? a->arena + a->used : NULL;
    a->used += (n + 15) / 16 * 16;
    return p;
}

static void max_into(int64_t *m, int64_t v)
{
    if (v > *m)
        *m = v;
}

static void col_need(const vae_train *tr, const vae_tconv *cv, int side, int64_t *m)
{
    bconv c = bconv_make(cv->cin, cv->cout, cv->k, cv->stride, cv->pad, cv->transposed,
                         tr->max_batch, side, side);
    max_into(m, bconv_col_need(&c, COL_CAP));
}

static void layout(const vae_train *tr, acts *a)
{
    const vae_train_config *c = &tr->cfg;
    const int64_t B = tr->max_batch, S = c->image_size, h = c->hidden_dim, g = tr->grid;
    const int64_t P = B * g * g, L = c->num_layers, R = c->num_resnet_blocks;
    a->used = 0;
    a->max_act = 0;
    a->x0 = take(a, c->channels * B * S * S);
    a->out = take(a, c->channels * B * S * S);
    max_into(&a->max_act, c->channels * B * S * S);
    for (int i = 0; i < L; i++) {
        int64_t side = S >> (i + 1), n = h * B * side * side;
        const int64_t nd = h * B * (g << (i + 1)) * (g << (i + 1));
        a->enc[i] = take(a, n);
        a->dec[i] = take(a, nd); /* the last one, h × S × S, is the largest */
        max_into(&a->max_act, n);
        max_into(&a->max_act, nd);
    }
    for (int j = 0; j < R; j++) {
        res_acts *r[2] = {&a->enc_res[j], &a->dec_res[j]};
        for (int e = 0; e < 2; e++) {
            r[e]->a1 = take(a, h * P);
            r[e]->a2 = take(a, h * P);
            r[e]->out = take(a, h * P);
        }
    }
    a->logits = take(a, c->num_tokens * P);
    a->soft = take(a, c->num_tokens * P);
    a->hard = c->straight_through ? take(a, c->num_tokens * P) : NULL;
    a->sampled = take(a, c->codebook_dim * P);
    a->dec_in = R > 0 ? take(a, h * P) : NULL;
    max_into(&a->max_act, c->num_tokens * P);
    max_into(&a->max_act, c->codebook_dim * P);
    max_into(&a->max_act, h * P);
    for (int k = 0; k < 3; k++)
        a->gbuf[k] = take(a, a->max_act);
    int64_t col = 0;
    for (int i = 0; i < L; i++) {
        col_need(tr, &tr->enc_down[i], (int)(S >> i), &col);
        col_need(tr, &tr->dec_up[i], (int)(g << i), &col);
    }
    for (int j = 0; j < R; j++) {
        col_need(tr, &tr->enc_res[j].c0, (int)g, &col);
        col_need(tr, &tr->dec_res[j].c0, (int)g, &col);
    }
    a->col_floats = col;
    a->col = take(a, col > 0 ? col : 1);
}

dalle_status vae_train_acts_create(vae_train *tr)
{
    acts *a = calloc(1, sizeof *a);
    if (!a)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the VAE's activations");
    tr->act = a;
    layout(tr, a);
    const int64_t floats = a->used, P = (int64_t)tr->max_batch * tr->grid * tr->grid;
    a->arena = aligned_alloc(64, (size_t)floats * sizeof(float));
    a->colsum = malloc((size_t)P * sizeof(double));
    if (!a->arena || !a->colsum)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "out of memory for the VAE's activations (%lld floats)",
                          (long long)floats);
    memset(a->arena, 0, (size_t)floats * sizeof(float));
    layout(tr, a);
    return DALLE_OK;
}

void vae_train_acts_free(vae_train *tr)
{
    acts *a = tr ? tr->act : NULL;
    if (!a)
        return;
    free(a->arena);
    free(a->colsum);
    free(a);
    tr->act = NULL;
}

/* ---- layers -------------------------------------------------------------------- */

static bconv geo(const vae_tconv *cv, int batch, int side)
{
    return bconv_make(cv->cin, cv->cout, cv->k, cv->stride, cv->pad, cv->transposed, batch, side,
                      side);
}

static void conv_fwd(const vae_train *tr, const vae_tconv *cv, int batch, int side,
                     const float *x, float *y)
{
    bconv c = geo(cv, batch, side);
    bconv_forward(&c, x, cv->w, cv->b, y, A(tr)->col, A(tr)->col_floats, tr->pool);
}

/* dx (may be NULL) += ∂/∂x; the weight gradients go into tr->pt.g. */
static void conv_bwd(const vae_train *tr, const vae_tconv *cv, int batch, int side,
                     const float *x, const float *dy, float *dx)
{
    bconv c = geo(cv, batch, side);
    bconv_backward(&c, x, cv->w, dy, dx, cv->gw, cv->gb, A(tr)->col, A(tr)->col_floats,
                   tr->pool);
}

static void zero(float *x, int64_t n) { memset(x, 0, (size_t)n * sizeof *x); }

static void res_fwd(const vae_train *tr, const vae_tres *rb, int batch, int side,
                    const float *x, const res_acts *r)
{
    const int64_t n = (int64_t)rb->c0.cout * batch * side * side;
    conv_fwd(tr, &rb->c0, batch, side, x, r->a1);
    conv_relu(r->a1, r->a1, n);
    conv_fwd(tr, &rb->c2, batch, side, r->a1, r->a2);
    conv_relu(r->a2, r->a2, n);
    conv_fwd(tr, &rb->c4, batch, side, r->a2, r->out);
    for (int64_t i = 0; i < n; i++) /* self.net(x) + x */
        r->out[i] += x[i];
}

/* gbuf[*cur] holds d out on entry and d x on return (the identity branch
 * is already there; the net's gradient is added onto it). */
static void res_bwd(const vae_train *tr, const vae_tres *rb, int batch, int side,
                    const float *x, const res_acts *r, int cur)
{
    float *const *G = A(tr)->gbuf;
    const int q = (cur + 1) % 3, s = (cur + 2) % 3;
    const int64_t n = (int64_t)rb->c0.cout * batch * side * side;
    zero(G[q], n);
    conv_bwd(tr, &rb->c4, batch, side, r->a2, G[cur], G[q]);
    bw_relu_mask(r->a2, G[q], n);
    zero(G[s], n);
    conv_bwd(tr, &rb->c2, batch, side, r->a1, G[q], G[s]);
    bw_relu_mask(r->a1, G[s], n);
    conv_bwd(tr, &rb->c0, batch, side, x, G[s], G[cur]);
}

/* ---- networks ------------------------------------------------------------------ */

/* x0 → logits. */
static void encoder_fwd(const vae_train *tr, int batch)
{
    acts *a = A(tr);
    const vae_train_config *c = &tr->cfg;
    const float *x = a->x0;
    int side = c->image_size;
    for (int i = 0; i < c->num_layers; i++) {
        conv_fwd(tr, &tr->enc_down[i], batch, side, x, a->enc[i]);
        side /= 2;
        conv_relu(a->enc[i], a->enc[i], (int64_t)c->hidden_dim * batch * side * side);
        x = a->enc[i];
    }
    for (int j = 0; j < c->num_resnet_blocks; j++) {
        res_fwd(tr, &tr->enc_res[j], batch, side, x, &a->enc_res[j]);
        x = a->enc_res[j].out;
    }
    conv_fwd(tr, &tr->enc_out, batch, side, x, a->logits);
}

/* The input of decoder layer dec_up[0]. */
static const float *decoder_body_in(const vae_train *tr)
{
    const int R = tr->cfg.num_resnet_blocks;
    return R > 0 ? A(tr)->dec_res[R - 1].out : A(tr)->sampled;
}

/* sampled → out. */
static void decoder_fwd(const vae_train *tr, int batch)
{
    acts *a = A(tr);
    const vae_train_config *c = &tr->cfg;
    const float *x = a->sampled;
    int side = tr->grid;
    if (c->num_resnet_blocks > 0) {
        conv_fwd(tr, &tr->dec_in, batch, side, x, a->dec_in);
        x = a->dec_in;
    }
    for (int j = 0; j < c->num_resnet_blocks; j++) {
        res_fwd(tr, &tr->dec_res[j], batch, side, x, &a->dec_res[j]);
        x = a->dec_res[j].out;
    }
    for (int i = 0; i < c->num_layers; i++) {
        conv_fwd(tr, &tr->dec_up[i], batch, side, x, a->dec[i]);
        side *= 2;
        conv_relu(a->dec[i], a->dec[i], (int64_t)c->hidden_dim * batch * side * side);
        x = a->dec[i];
    }
    conv_fwd(tr, &tr->dec_out, batch, side, x, a->out);
}

/* ---- Gumbel-softmax and KL, column ranges on the pool -------------------------- */

typedef struct col_args {
    const vae_train *tr;
    int64_t P;    /* columns: batch · g² */
    float tau;
    const float *dsoft; /* backward: d loss / d (one_hot) */
    float *dlogits;     /* backward: written */
} col_args;

/* y_soft = softmax((logits + gumbel) / tau) over the token axis; the hard
 * one-hot as F.gumbel_softmax forms it, y_hard - y_soft.detach() + y_soft,
 * in float (so a 1 may be a 1 ± 1 ulp, as upstream's). */
static void gumbel_part(void *arg, int64_t c0, int64_t c1)
{
    const col_args *ca = arg;
    const vae_train *tr = ca->tr;
    acts *a = A(tr);
    const int64_t N = tr->cfg.num_tokens, P = ca->P;
    const uint64_t stream = GUMBEL_STREAM | (uint64_t)tr->step;
    for (int64_t p0 = c0 * COLS_PER_TASK; p0 < c1 * COLS_PER_TASK && p0 < P; p0 += COLS_PER_TASK) {
        const int64_t p1 = p0 + COLS_PER_TASK < P ? p0 + COLS_PER_TASK : P, w = p1 - p0;
        float mx[COLS_PER_TASK];
        double sum[COLS_PER_TASK];
        int64_t arg_mx[COLS_PER_TASK];
        for (int64_t j = 0; j < w; j++) {
            mx[j] = -INFINITY;
            sum[j] = 0.0;
        }
        for (int64_t n = 0; n < N; n++) {
            const float *l = a->logits + n * P + p0;
            float *z = a->soft + n * P + p0;
            for (int64_t j = 0; j < w; j++) {
                float gn = (float)rng_gumbel(tr->cfg.seed, stream, (uint64_t)(p0 + j), (uint64_t)n);
                z[j] = (l[j] + gn) / ca->tau;
                if (z[j] > mx[j])
                    mx[j] = z[j];
            }
        }
        for (int64_t n = 0; n < N; n++) {
            float *z = a->soft + n * P + p0;
            for (int64_t j = 0; j < w; j++) {
                z[j] = expf(z[j] - mx[j]);
                sum[j] += z[j];
            }
        }
        for (int64_t j = 0; j < w; j++) {
            mx[j] = (float)sum[j]; /* reuse: the float sum */
            arg_mx[j] = 0;
        }
        for (int64_t n = 0; n < N; n++) {
            float *z = a->soft + n * P + p0;
            for (int64_t j = 0; j < w; j++) {
                z[j] /= mx[j];
                if (n && z[j] > a->soft[arg_mx[j] * P + p0 + j])
                    arg_mx[j] = n; /* first maximum, as torch's argmax */
            }
        }
        if (a->hard)
            for (int64_t n = 0; n < N; n++) {
                const float *z = a->soft + n * P + p0;
                float *hd = a->hard + n * P + p0;
                for (int64_t j = 0; j < w; j++)
                    hd[j] = ((n == arg_mx[j] ? 1.0f : 0.0f) - z[j]) + z[j];
            }
    }
}

/* Per position: Σ_n q (log q - log(1/N)), q = softmax(logits); with
 * dlogits set, also adds weight · q_n (a_n - Σ q a), a_n = log q_n - log(1/N)
 * (its gradient; the constant cancels) into dlogits. */
static void kl_part(void *arg, int64_t c0, int64_t c1)
{
    const col_args *ca = arg;
    const vae_train *tr = ca->tr;
    acts *a = A(tr);
    const int64_t N = tr->cfg.num_tokens, P = ca->P;
    /* torch.log(torch.tensor([1. / num_tokens])): a float32 */
    const double lu = (double)logf((float)(1.0 / (double)N));
    const float wkl = (float)tr->cfg.kl_div_loss_weight;
    for (int64_t p0 = c0 * COLS_PER_TASK; p0 < c1 * COLS_PER_TASK && p0 < P; p0 += COLS_PER_TASK) {
        const int64_t p1 = p0 + COLS_PER_TASK < P ? p0 + COLS_PER_TASK : P, w = p1 - p0;
        double mx[COLS_PER_TASK], lse[COLS_PER_TASK], qa[COLS_PER_TASK];
        for (int64_t j = 0; j < w; j++) {
            mx[j] = -INFINITY;
            lse[j] = qa[j] = 0.0;
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < w; j++)
                if (a->logits[n * P + p0 + j] > mx[j])
                    mx[j] = a->logits[n * P + p0 + j];
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < w; j++)
                lse[j] += exp(a->logits[n * P + p0 + j] - mx[j]);
        for (int64_t j = 0; j < w; j++)
            lse[j] = mx[j] + log(lse[j]);
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < w; j++) {
                double lq = a->logits[n * P + p0 + j] - lse[j];
                qa[j] += exp(lq) * (lq - lu);
            }
        for (int64_t j = 0; j < w; j++)
            a->colsum[p0 + j] = qa[j];
        if (ca->dlogits && wkl != 0.0f)
            for (int64_t n = 0; n < N; n++)
                for (int64_t j = 0; j < w; j++) {
                    double lq = a->logits[n * P + p0 + j] - lse[j];
                    ca->dlogits[n * P + p0 + j] += wkl * (float)(exp(lq) * ((lq - lu) - qa[j]));
                }
    }
}

/* dlogits = (soft ⊙ (dsoft - Σ_n soft·dsoft)) / tau: the softmax backward
 * (the straight-through estimator passes d one_hot to y_soft unchanged). */
static void gumbel_bwd_part(void *arg, int64_t c0, int64_t c1)
{
    const col_args *ca = arg;
    const vae_train *tr = ca->tr;
    acts *a = A(tr);
    const int64_t N = tr->cfg.num_tokens, P = ca->P;
    for (int64_t p0 = c0 * COLS_PER_TASK; p0 < c1 * COLS_PER_TASK && p0 < P; p0 += COLS_PER_TASK) {
        const int64_t p1 = p0 + COLS_PER_TASK < P ? p0 + COLS_PER_TASK : P, w = p1 - p0;
        double dot[COLS_PER_TASK];
        for (int64_t j = 0; j < w; j++)
            dot[j] = 0.0;
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < w; j++)
                dot[j] += (double)a->soft[n * P + p0 + j] * ca->dsoft[n * P + p0 + j];
        for (int64_t n = 0; n < N; n++)
            for (int64_t j = 0; j < w; j++) {
                const int64_t i = n * P + p0 + j;
                ca->dlogits[i] = a->soft[i] * (ca->dsoft[i] - (float)dot[j]) / ca->tau;
            }
    }
}

static void run_cols(const vae_train *tr, col_args *ca, tpool_range fn)
{
    int64_t tasks = (ca->P + COLS_PER_TASK - 1) / COLS_PER_TASK;
    tpool_for(tr->pool, tasks, 1, fn, ca);
}

/* ---- forward / backward -------------------------------------------------------- */

/* pixels [B][C][S][S] → x0 [C][B][S][S], normalised as DiscreteVAE.norm
 * (float32 means and stds, subtract then divide). */
static void load_input(const vae_train *tr, const float *pixels, int batch)
{
    const vae_train_config *c = &tr->cfg;
    const int64_t np = (int64_t)c->image_size * c->image_size;
    for (int ch = 0; ch < c->channels; ch++) {
        const float m = (float)c->norm_mean[ch], s = (float)c->norm_std[ch];
        for (int b = 0; b < batch; b++) {
            const float *src = pixels + ((int64_t)b * c->channels + ch) * np;
            float *dst = A(tr)->x0 + ((int64_t)ch * batch + b) * np;
            for (int64_t i = 0; i < np; i++)
                dst[i] = c->normalize ? (src[i] - m) / s : src[i];
        }
    }
}

/* `what` names the array p in the message. */
static dalle_status check_batch(const vae_train *tr, int batch, const void *p, const char *what)
{
    if (!p)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s is NULL", what);
    if (batch < 1 || batch > tr->max_batch)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "batch = %d: expected 1..%d images", batch,
                          tr->max_batch);
    return DALLE_OK;
}

dalle_status vae_train_forward(vae_train *tr, const float *pixels, int batch,
                               vae_train_stats *stats)
{
    dalle_status s;
    if ((s = check_batch(tr, batch, pixels, "pixels")))
        return s;
    acts *a = A(tr);
    const vae_train_config *c = &tr->cfg;
    const int64_t P = (int64_t)batch * tr->grid * tr->grid;
    a->batch = batch;
    load_input(tr, pixels, batch);
    encoder_fwd(tr, batch);
    col_args ca = {tr, P, (float)tr->temp, NULL, NULL};
    run_cols(tr, &ca, gumbel_part);
    /* sampled [D][P] = codebookᵀ [D][N] · one_hot [N][P] */
    ops_gemm(tr->pool, 1, 0, c->codebook_dim, P, c->num_tokens, 1.0f, tr->codebook,
             c->codebook_dim, a->hard ? a->hard : a->soft, P, 0.0f, a->sampled, P);
    decoder_fwd(tr, batch);
    /* the loss, in double, in index order */
    const int64_t n = (int64_t)c->channels * batch * c->image_size * c->image_size;
    double recon = 0.0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a->out[i] - a->x0[i];
        if (!c->smooth_l1_loss)
            recon += d * d;
        else
            recon += fabs(d) < 1.0 ? 0.5 * d * d : fabs(d) - 0.5;
    }
    recon /= (double)n;
    run_cols(tr, &ca, kl_part);
    double kl = 0.0;
    for (int64_t p = 0; p < P; p++)
        kl += a->colsum[p];
    if (stats) {
        memset(stats, 0, sizeof *stats);
        stats->recon = recon;
        stats->kl = kl;
        stats->loss = recon + c->kl_div_loss_weight * kl;
        stats->temp = tr->temp;
        stats->lr = tr->lr;
    }
    return DALLE_OK;
}

void vae_train_backward(vae_train *tr)
{
    acts *a = A(tr);
    const vae_train_config *c = &tr->cfg;
    const int B = a->batch, L = c->num_layers, R = c->num_resnet_blocks, S = c->image_size;
    const int64_t h = c->hidden_dim, g = tr->grid, P = (int64_t)B * g * g;
    float *const *G = a->gbuf;
    /* d recon / d out: mse 2(out - x)/n, smooth_l1 clamp(out - x, ±1)/n */
    const int64_t n = (int64_t)c->channels * B * S * S;
    const float inv = (float)(1.0 / (double)n);
    for (int64_t i = 0; i < n; i++) {
        float d = a->out[i] - a->x0[i];
        if (!c->smooth_l1_loss)
            G[0][i] = 2.0f * d * inv;
        else
            G[0][i] = (d < -1.0f ? -1.0f : d > 1.0f ? 1.0f : d) * inv;
    }
    int cur = 0, side = S;
    zero(G[1], h * B * side * side);
    conv_bwd(tr, &tr->dec_out, B, side, a->dec[L - 1], G[0], G[1]);
    cur = 1;
    for (int i = L - 1; i >= 0; i--) {
        bw_relu_mask(a->dec[i], G[cur], h * B * side * side);
        side /= 2;
        const vae_tconv *cv = &tr->dec_up[i];
        const float *x = i > 0 ? a->dec[i - 1] : decoder_body_in(tr);
        const int nxt = (cur + 1) % 3;
        zero(G[nxt], (int64_t)cv->cin * B * side * side);
        conv_bwd(tr, cv, B, side, x, G[cur], G[nxt]);
        cur = nxt;
    }
    for (int j = R - 1; j >= 0; j--)
        res_bwd(tr, &tr->dec_res[j], B, (int)g, j > 0 ? a->dec_res[j - 1].out : a->dec_in,
                &a->dec_res[j], cur);
    if (R > 0) {
        const int nxt = (cur + 1) % 3;
        zero(G[nxt], (int64_t)c->codebook_dim * P);
        conv_bwd(tr, &tr->dec_in, B, (int)g, a->sampled, G[cur], G[nxt]);
        cur = nxt;
    }
    /* sampled = codebookᵀ · one_hot: d codebook [N][D] += one_hot · d sampledᵀ,
     * d one_hot [N][P] = codebook · d sampled */
    const float *oh = a->hard ? a->hard : a->soft;
    ops_gemm(tr->pool, 0, 1, c->num_tokens, c->codebook_dim, P, 1.0f, oh, P, G[cur], P, 1.0f,
             tr->gcodebook, c->codebook_dim);
    const int d1 = (cur + 1) % 3, d2 = (cur + 2) % 3;
    ops_gemm(tr->pool, 0, 0, c->num_tokens, P, c->codebook_dim, 1.0f, tr->codebook,
             c->codebook_dim, G[cur], P, 0.0f, G[d1], P);
    col_args ca = {tr, P, (float)tr->temp, G[d1], G[d2]};
    run_cols(tr, &ca, gumbel_bwd_part);
    if (c->kl_div_loss_weight != 0.0)
        run_cols(tr, &ca, kl_part); /* adds the KL's gradient into G[d2] */
    cur = d2;
    /* encoder */
    const float *x = R > 0 ? a->enc_res[R - 1].out : a->enc[L - 1];
    int nxt = (cur + 1) % 3;
    zero(G[nxt], h * P);
    conv_bwd(tr, &tr->enc_out, B, (int)g, x, G[cur], G[nxt]);
    cur = nxt;
    for (int j = R - 1; j >= 0; j--)
        res_bwd(tr, &tr->enc_res[j], B, (int)g, j > 0 ? a->enc_res[j - 1].out : a->enc[L - 1],
                &a->enc_res[j], cur);
    side = (int)g;
    for (int i = L - 1; i >= 0; i--) {
        bw_relu_mask(a->enc[i], G[cur], h * B * side * side);
        side *= 2;
        const vae_tconv *cv = &tr->enc_down[i];
        const float *xin = i > 0 ? a->enc[i - 1] : a->x0;
        nxt = (cur + 1) % 3;
        if (i > 0)
            zero(G[nxt], (int64_t)cv->cin * B * side * side);
        /* the first layer's input is data: no gradient wanted */
        conv_bwd(tr, cv, B, side, xin, G[cur], i > 0 ? G[nxt] : NULL);
        cur = nxt;
    }
}

/* ---- inference with the training weights ------------------------------------------ */

static float to_pixel(const vae_train_config *c, int ch, float v)
{
    if (c->normalize)
        v = v * (float)c->norm_std[ch] + (float)c->norm_mean[ch];
    return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; /* NaN → 0, as lib/vae_dvae.c */
}

/* out [C][B][S][S] → pixels [B][C][S][S] in [0, 1]. */
static void out_to_pixels(const vae_train *tr, int batch, float *pixels)
{
    const vae_train_config *c = &tr->cfg;
    const int64_t np = (int64_t)c->image_size * c->image_size;
    for (int ch = 0; ch < c->channels; ch++)
        for (int b = 0; b < batch; b++) {
            const float *src = A(tr)->out + ((int64_t)ch * batch + b) * np;
            float *dst = pixels + ((int64_t)b * c->channels + ch) * np;
            for (int64_t i = 0; i < np; i++)
                dst[i] = to_pixel(c, ch, src[i]);
        }
}

void vae_train_recons(const vae_train *tr, float *pixels)
{
    out_to_pixels(tr, A(tr)->batch, pixels);
}

dalle_status vae_train_encode(vae_train *tr, const float *pixels, int batch, int32_t *ids)
{
    dalle_status s;
    if ((s = check_batch(tr, batch, pixels, "pixels")) ||
        (s = check_batch(tr, batch, ids, "ids")))
        return s;
    acts *a = A(tr);
    const int64_t N = tr->cfg.num_tokens, P = (int64_t)batch * tr->grid * tr->grid;
    a->batch = batch;
    load_input(tr, pixels, batch);
    encoder_fwd(tr, batch);
    /* argmax over the token axis, first maximum; column p = b·g² + position */
    for (int64_t p = 0; p < P; p++) {
        int32_t best = 0;
        for (int64_t n = 1; n < N; n++)
            if (a->logits[n * P + p] > a->logits[best * P + p])
                best = (int32_t)n;
        ids[p] = best;
    }
    return DALLE_OK;
}

dalle_status vae_train_decode(vae_train *tr, const int32_t *ids, int batch, float *pixels)
{
    dalle_status s;
    if ((s = check_batch(tr, batch, ids, "ids")) ||
        (s = check_batch(tr, batch, pixels, "pixels")))
        return s;
    acts *a = A(tr);
    const int64_t D = tr->cfg.codebook_dim, P = (int64_t)batch * tr->grid * tr->grid;
    for (int64_t p = 0; p < P; p++)
        if (ids[p] < 0 || ids[p] >= tr->cfg.num_tokens)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "ids[%lld] = %d is outside [0, %d)",
                              (long long)p, ids[p], tr->cfg.num_tokens);
    a->batch = batch;
    /* codebook(ids), 'b (h w) d -> d b h w' */
    for (int64_t p = 0; p < P; p++) {
        const float *e = tr->codebook + (int64_t)ids[p] * D;
        for (int64_t d = 0; d < D; d++)
            a->sampled[d * P + p] = e[d];
    }
    decoder_fwd(tr, batch);
    out_to_pixels(tr, batch, pixels);
    return DALLE_OK;
}
