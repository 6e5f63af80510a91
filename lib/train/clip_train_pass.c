/* The training forward and backward of DALLE-pytorch's CLIP
 * (clip_train.h): both towers on whole sequences keeping every activation
 * the backward needs, the contrastive loss, then the backward in reverse.
 *
 * The forward runs the inference operations in the inference order
 * (lib/clip_encoder.c, clip_dalle.c, clip_ctx.c: q scaled in place before
 * ops_attend, masked keys left out of the spans, the mean in double,
 * F.normalize with a float norm, the dot in double scaled after), so its
 * similarities are those of clip_score_masked for the same weights. The
 * backward uses ops_backward.h.
 *
 * Why not tf_train_pass.c's layer functions: they take DALLE's tf_train and
 * its activation layout, and their attention is DALLE's causal / sparse
 * spans with token shift; CLIP's layers are non-causal with a key-padding
 * mask and no shift. The layer below is the same sequence of operations and
 * backward passes over tf_train.h's tf_layer_ptrs, minus shift and rotary,
 * plus the mask.
 *
 * Threads: the products go through ops_gemm, row-wise passes through
 * tpool_for, attention through one task per sequence (each writes only its
 * own rows); reductions over rows (weight gradients, LayerNorm gain/bias)
 * run in one fixed order. The bits do not depend on the pool. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../threadpool.h"
#include "clip_train.h"
#include "ops_backward.h"

#define LN_EPS 1e-5f   /* nn.LayerNorm's default */
#define DIM_HEAD 64    /* as clip_train.c */
#define NORM_EPS 1e-12f /* F.normalize's eps */
#define ROWS_PER_TASK 16

/* What one layer's backward needs: rows R = batch · n. */
typedef struct layer_act {
    float *xa, *ha;        /* attention sublayer: input, LayerNorm of it */
    float *qkv;            /* [R][3 · inner], q scaled */
    float *K, *V;          /* [batch][heads][n][dim_head]: ops_attend's layout */
    float *att, *ya;       /* attention output before / after to_out */
    float *xf, *hf;        /* feed-forward sublayer: input, LayerNorm of it */
    float *ffh, *ffa, *yf; /* [R][2 · ffi], after GEGLU, after the last Linear */
} layer_act;

/* One tower (text or image): sizes, weights and its activations. */
typedef struct tower {
    int dim, depth, heads, inner, ffi, n;
    const tf_layer_ptrs *w;
    tf_layer_ptrs *g;
    const float *to_latent;
    float *g_to_latent;
    layer_act *L;
    const uint8_t *mask; /* [batch][n] or NULL (all positions) */
    float *x_out;        /* [R][dim] */
    float *pooled;       /* [batch][dim]: the (masked) mean */
    float *lat, *nrm;    /* [batch][dim_latent]: latents, normalised */
    float *norms;        /* [batch]: the norms the forward divided by */
    /* backward scratch */
    float *dx, *dy, *dsrc, *dffa, *dffh, *datt, *dqkv, *dK, *dV, *scores;
    float *dpooled, *dlat, *dnrm;
} tower;

typedef struct acts {
    float *block;
    void *bytes; /* ints and masks */
    layer_act *layers;
    tower text, image;
    int32_t *ids, *text_pos, *image_pos;
    uint8_t *mask;
    ops_span *spans;             /* [batch][longest sequence]: key runs */
    float *patches;              /* [batch · n_patches][patch_dim] */
    float *sim, *dsim;           /* [batch][batch]: similarities, d loss / d sim */
    float scale;                 /* expf(temperature) of the forward */
} acts;

/* ---- layout ------------------------------------------------------------------------ */

typedef struct cursor {
    float *base;
    int64_t used;
} cursor;

static float *take(cursor *c, int64_t n)
{
    float *p = c->base ? c->base + c->used : NULL;
    c->used += n;
    return p;
}

static void layout_tower(cursor *c, tower *t, int64_t B, int64_t dl)
{
    const int64_t R = B * t->n, d = t->dim, in = t->inner, ffi = t->ffi;
    for (int l = 0; l < t->depth; l++) {
        layer_act *L = &t->L[l];
        L->xa = take(c, R * d);
        L->ha = take(c, R * d);
        L->qkv = take(c, R * 3 * in);
        L->K = take(c, R * in);
        L->V = take(c, R * in);
        L->att = take(c, R * in);
        L->ya = take(c, R * d);
        L->xf = take(c, R * d);
        L->hf = take(c, R * d);
        L->ffh = take(c, R * 2 * ffi);
        L->ffa = take(c, R * ffi);
        L->yf = take(c, R * d);
    }
    t->x_out = take(c, R * d);
    t->pooled = take(c, B * d);
    t->lat = take(c, B * dl);
    t->nrm = take(c, B * dl);
    t->norms = take(c, B);
    t->dx = take(c, R * d);
    t->dy = take(c, R * d);
    t->dsrc = take(c, R * d);
    t->dffa = take(c, R * ffi);
    t->dffh = take(c, R * 2 * ffi);
    t->datt = take(c, R * in);
    t->dqkv = take(c, R * 3 * in);
    t->dK = take(c, R * in);
    t->dV = take(c, R * in);
    t->scores = take(c, R);
    t->dpooled = take(c, B * d);
    t->dlat = take(c, B * dl);
    t->dnrm = take(c, B * dl);
}

static void layout(clip_train *tr, acts *a, float *base, int64_t *total)
{
    const int64_t B = tr->max_batch, dl = tr->cfg.dim_latent;
    cursor c = {base, 0};
    layout_tower(&c, &a->text, B, dl);
    layout_tower(&c, &a->image, B, dl);
    a->patches = take(&c, B * tr->n_patches * tr->patch_dim);
    a->sim = take(&c, B * B);
    a->dsim = take(&c, B * B);
    *total = c.used;
}

static void tower_init(tower *t, int dim, int depth, int heads, int n, const tf_layer_ptrs *w,
                       tf_layer_ptrs *g, const float *to_latent, float *g_to_latent,
                       layer_act *L)
{
    t->dim = dim;
    t->depth = depth;
    t->heads = heads;
    t->inner = heads * DIM_HEAD;
    t->ffi = 4 * dim;
    t->n = n;
    t->w = w;
    t->g = g;
    t->to_latent = to_latent;
    t->g_to_latent = g_to_latent;
    t->L = L;
}

dalle_status clip_train_acts_create(clip_train *tr)
{
    const clip_train_config *c = &tr->cfg;
    const int64_t B = tr->max_batch, L = c->text_seq_len, T = tr->n_patches;
    acts *a = calloc(1, sizeof *a);
    if (!a)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the CLIP's activations");
    tr->act = a;
    a->layers = calloc((size_t)(c->text_enc_depth + c->visual_enc_depth), sizeof *a->layers);
    if (!a->layers)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the CLIP's activations");
    tower_init(&a->text, c->dim_text, c->text_enc_depth, c->text_heads, c->text_seq_len,
               tr->pw.text_layers, tr->pg.text_layers, tr->pw.to_text_latent,
               tr->pg.to_text_latent, a->layers);
    tower_init(&a->image, c->dim_image, c->visual_enc_depth, c->visual_heads, tr->n_patches,
               tr->pw.visual_layers, tr->pg.visual_layers, tr->pw.to_visual_latent,
               tr->pg.to_visual_latent, a->layers + c->text_enc_depth);
    int64_t total;
    layout(tr, a, NULL, &total);
    const int64_t n_ints = 2 * B * L + B * T;
    const int64_t longest = L > T ? L : T;
    a->block = malloc((size_t)total * sizeof(float));
    a->bytes = malloc((size_t)n_ints * sizeof(int32_t) + (size_t)(B * L));
    a->spans = malloc((size_t)(B * longest) * sizeof *a->spans);
    if (!a->block || !a->bytes || !a->spans)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "out of memory for the CLIP's activations of %d pairs (%lld floats)",
                          tr->max_batch, (long long)total);
    layout(tr, a, a->block, &total);
    a->ids = a->bytes;
    a->text_pos = a->ids + B * L;
    a->image_pos = a->text_pos + B * L;
    a->mask = (uint8_t *)(a->image_pos + B * T);
    /* fixed index tables: the position of each row (the positional embeddings' ids) */
    for (int64_t r = 0; r < B * L; r++)
        a->text_pos[r] = (int32_t)(r % L);
    for (int64_t r = 0; r < B * T; r++)
        a->image_pos[r] = (int32_t)(r % T);
    return DALLE_OK;
}

void clip_train_acts_free(clip_train *tr)
{
    acts *a = tr->act;
    if (!a)
        return;
    free(a->layers);
    free(a->block);
    free(a->bytes);
    free(a->spans);
    free(a);
    tr->act = NULL;
}

const float *clip_train_sim(const clip_train *tr) { return ((const acts *)tr->act)->sim; }
const float *clip_train_text_latents(const clip_train *tr)
{
    return ((const acts *)tr->act)->text.nrm;
}
const float *clip_train_image_latents(const clip_train *tr)
{
    return ((const acts *)tr->act)->image.nrm;
}

/* ---- row-parallel helpers ------------------------------------------------------------ */

typedef struct rows_job {
    const float *x, *w, *b;
    float *y;
    int64_t dim;
} rows_job;

static void ln_range(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    ops_layer_norm(j->x + lo * j->dim, hi - lo, j->dim, j->w, j->b, LN_EPS, j->y + lo * j->dim);
}

static void layer_norm(struct tpool *pool, const float *x, int64_t rows, int64_t dim,
                       const float *w, const float *b, float *y)
{
    rows_job j = {x, w, b, y, dim};
    tpool_for(pool, rows, ROWS_PER_TASK, ln_range, &j);
}

/* dx rows only (independent per row); the gain / bias gradients, a sum over
 * rows, in one ordered pass */
static void ln_bw_range(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    bw_layer_norm(j->x + lo * j->dim, hi - lo, j->dim, j->w, LN_EPS, j->b + lo * j->dim,
                  j->y + lo * j->dim, NULL, NULL);
}

static void layer_norm_bw(struct tpool *pool, const float *x, int64_t rows, int64_t dim,
                          const float *gain, const float *dy, float *dx, float *dgain,
                          float *dbias)
{
    rows_job j = {x, gain, dy, dx, dim};
    tpool_for(pool, rows, ROWS_PER_TASK, ln_bw_range, &j);
    bw_layer_norm(x, rows, dim, gain, LN_EPS, dy, NULL, dgain, dbias);
}

static void geglu_range(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    ops_geglu(j->x + lo * 2 * j->dim, hi - lo, j->dim, j->y + lo * j->dim);
}

static void geglu_bw_range(void *arg, int64_t lo, int64_t hi)
{
    const rows_job *j = arg;
    bw_geglu(j->x + lo * 2 * j->dim, hi - lo, j->dim, j->b + lo * j->dim,
             j->y + lo * 2 * j->dim);
}

/* ---- the encoder layer --------------------------------------------------------------- */

/* The runs of allowed keys of one sequence (clip_encoder.c's key_spans). */
static int key_spans(const uint8_t *mask, int64_t n, ops_span *sp)
{
    if (!mask) {
        sp[0] = (ops_span){0, n, 1};
        return 1;
    }
    int count = 0;
    for (int64_t j = 0; j < n;) {
        if (!mask[j]) {
            j++;
            continue;
        }
        int64_t start = j;
        while (j < n && mask[j])
            j++;
        sp[count++] = (ops_span){start, j - start, 1};
    }
    return count;
}

typedef struct attn_job {
    const tower *t;
    const layer_act *L;
    ops_span *spans; /* [batch][n]: one sequence's key runs per task */
} attn_job;

/* Sequence b of the attention: per head, copy the keys and values into
 * ops_attend's layout, scale q in place, attend. */
static void attn_task(void *arg, int64_t b)
{
    const attn_job *j = arg;
    const tower *t = j->t;
    const layer_act *L = j->L;
    const int64_t n = t->n, in = t->inner, dh = DIM_HEAD, st = 3 * in;
    const float scale = (float)pow((double)dh, -0.5);
    ops_span *sp = j->spans + b * n;
    const int n_sp = key_spans(t->mask ? t->mask + b * n : NULL, n, sp);
    float *seq = L->qkv + b * n * st;
    for (int64_t h = 0; h < t->heads; h++) {
        float *K = L->K + (b * t->heads + h) * n * dh, *V = L->V + (b * t->heads + h) * n * dh;
        for (int64_t p = 0; p < n; p++) {
            memcpy(K + p * dh, seq + p * st + in + h * dh, (size_t)dh * sizeof *K);
            memcpy(V + p * dh, seq + p * st + 2 * in + h * dh, (size_t)dh * sizeof *V);
        }
        for (int64_t i = 0; i < n; i++) {
            float *q = seq + i * st + h * dh;
            for (int64_t d = 0; d < dh; d++)
                q[d] *= scale;
            ops_attend(q, K, V, dh, sp, n_sp, t->scores + b * n, L->att + (b * n + i) * in + h * dh);
        }
    }
}

static void attn_bw_task(void *arg, int64_t b)
{
    const attn_job *j = arg;
    const tower *t = j->t;
    const layer_act *L = j->L;
    const int64_t n = t->n, in = t->inner, dh = DIM_HEAD, st = 3 * in;
    const float scale = (float)pow((double)dh, -0.5);
    ops_span *sp = j->spans + b * n;
    const int n_sp = key_spans(t->mask ? t->mask + b * n : NULL, n, sp);
    for (int64_t h = 0; h < t->heads; h++) {
        const int64_t at = (b * t->heads + h) * n * dh;
        memset(t->dK + at, 0, (size_t)(n * dh) * sizeof(float));
        memset(t->dV + at, 0, (size_t)(n * dh) * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
            const int64_t r = b * n + i;
            float *dq = t->dqkv + r * st + h * dh;
            memset(dq, 0, (size_t)dh * sizeof *dq);
            bw_attend(L->qkv + r * st + h * dh, L->K + at, L->V + at, dh, sp, n_sp,
                      t->datt + r * in + h * dh, t->scores + b * n, dq, t->dK + at,
                      t->dV + at);
            for (int64_t d = 0; d < dh; d++) /* through q *= scale */
                dq[d] *= scale;
        }
        /* back through the copies into the k and v columns of qkv */
        for (int64_t p = 0; p < n; p++) {
            float *row = t->dqkv + (b * n + p) * st;
            memcpy(row + in + h * dh, t->dK + at + p * dh, (size_t)dh * sizeof(float));
            memcpy(row + 2 * in + h * dh, t->dV + at + p * dh, (size_t)dh * sizeof(float));
        }
    }
}

static void layer_forward(struct tpool *pool, tower *t, int l, int64_t B, ops_span *spans,
                          float *x_next)
{
    const tf_layer_ptrs *w = &t->w[l];
    layer_act *L = &t->L[l];
    const int64_t R = B * t->n, d = t->dim, in = t->inner, ffi = t->ffi;
    layer_norm(pool, L->xa, R, d, w->attn_norm_w, w->attn_norm_b, L->ha);
    ops_linear_pool(pool, L->ha, R, d, w->to_qkv, NULL, 3 * in, L->qkv, 3 * in);
    attn_job aj = {t, L, spans};
    tpool_run(pool, B, attn_task, &aj);
    ops_linear_pool(pool, L->att, R, in, w->to_out_w, w->to_out_b, d, L->ya, d);
    memcpy(L->xf, L->xa, (size_t)(R * d) * sizeof(float));
    ops_add_scaled(L->xf, L->ya, w->attn_scale, R, d);

    layer_norm(pool, L->xf, R, d, w->ff_norm_w, w->ff_norm_b, L->hf);
    ops_linear_pool(pool, L->hf, R, d, w->ff_w1, w->ff_b1, 2 * ffi, L->ffh, 2 * ffi);
    rows_job gj = {L->ffh, NULL, NULL, L->ffa, ffi};
    tpool_for(pool, R, ROWS_PER_TASK, geglu_range, &gj);
    ops_linear_pool(pool, L->ffa, R, ffi, w->ff_w2, w->ff_b2, d, L->yf, d);
    memcpy(x_next, L->xf, (size_t)(R * d) * sizeof(float));
    ops_add_scaled(x_next, L->yf, w->ff_scale, R, d);
}

/* t->dx holds d x_next on entry and d xa on return. */
static void layer_backward(struct tpool *pool, tower *t, int l, int64_t B, ops_span *spans)
{
    const tf_layer_ptrs *w = &t->w[l], *g = &t->g[l];
    const layer_act *L = &t->L[l];
    const int64_t R = B * t->n, d = t->dim, in = t->inner, ffi = t->ffi;
    const size_t rd = (size_t)(R * d) * sizeof(float);
    /* x_next = xf + ff_scale ⊙ yf: dx passes through and becomes d xf */
    memset(t->dy, 0, rd);
    bw_add_scaled(L->yf, w->ff_scale, R, d, t->dx, t->dy, g->ff_scale);
    memset(t->dffa, 0, (size_t)(R * ffi) * sizeof(float));
    bw_linear(pool, L->ffa, R, ffi, w->ff_w2, d, t->dy, d, t->dffa, g->ff_w2, g->ff_b2);
    memset(t->dffh, 0, (size_t)(R * 2 * ffi) * sizeof(float));
    rows_job gj = {L->ffh, NULL, t->dffa, t->dffh, ffi};
    tpool_for(pool, R, ROWS_PER_TASK, geglu_bw_range, &gj);
    memset(t->dsrc, 0, rd);
    bw_linear(pool, L->hf, R, d, w->ff_w1, 2 * ffi, t->dffh, 2 * ffi, t->dsrc, g->ff_w1,
              g->ff_b1);
    layer_norm_bw(pool, L->xf, R, d, w->ff_norm_w, t->dsrc, t->dx, g->ff_norm_w, g->ff_norm_b);

    /* xf = xa + attn_scale ⊙ ya: dx becomes d xa */
    memset(t->dy, 0, rd);
    bw_add_scaled(L->ya, w->attn_scale, R, d, t->dx, t->dy, g->attn_scale);
    memset(t->datt, 0, (size_t)(R * in) * sizeof(float));
    bw_linear(pool, L->att, R, in, w->to_out_w, d, t->dy, d, t->datt, g->to_out_w, g->to_out_b);
    attn_job aj = {t, L, spans};
    tpool_run(pool, B, attn_bw_task, &aj); /* writes every entry of dqkv */
    memset(t->dsrc, 0, rd);
    bw_linear(pool, L->ha, R, d, w->to_qkv, 3 * in, t->dqkv, 3 * in, t->dsrc, g->to_qkv, NULL);
    layer_norm_bw(pool, L->xa, R, d, w->attn_norm_w, t->dsrc, t->dx, g->attn_norm_w,
                  g->attn_norm_b);
}

/* ---- the pieces (clip_train.h) ---------------------------------------------------------- */

void ct_masked_mean(const float *x, int64_t batch, int64_t n, int64_t dim, const uint8_t *mask,
                    float *out)
{
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *m = mask ? mask + b * n : NULL;
        const float *xb = x + b * n * dim;
        int64_t count = 0;
        for (int64_t i = 0; i < n; i++)
            count += !m || m[i];
        for (int64_t j = 0; j < dim; j++) {
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++)
                if (!m || m[i])
                    sum += xb[i * dim + j];
            out[b * dim + j] = (float)(sum / (double)count);
        }
    }
}

void ct_masked_mean_bw(const float *dout, int64_t batch, int64_t n, int64_t dim,
                       const uint8_t *mask, float *dx)
{
    for (int64_t b = 0; b < batch; b++) {
        const uint8_t *m = mask ? mask + b * n : NULL;
        int64_t count = 0;
        for (int64_t i = 0; i < n; i++)
            count += !m || m[i];
        for (int64_t i = 0; i < n; i++) {
            float *d = dx + (b * n + i) * dim;
            for (int64_t j = 0; j < dim; j++)
                d[j] = !m || m[i] ? (float)((double)dout[b * dim + j] / (double)count) : 0.0f;
        }
    }
}

void ct_normalize(const float *v, int64_t rows, int64_t dim, float *y, float *norms)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *vr = v + r * dim;
        double ss = 0.0;
        for (int64_t k = 0; k < dim; k++)
            ss += (double)vr[k] * vr[k];
        float norm = (float)sqrt(ss);
        norms[r] = norm;
        if (norm < NORM_EPS)
            norm = NORM_EPS;
        for (int64_t k = 0; k < dim; k++)
            y[r * dim + k] = vr[k] / norm;
    }
}

void ct_normalize_bw(const float *y, const float *norms, int64_t rows, int64_t dim,
                     const float *dy, float *dv)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *yr = y + r * dim, *dyr = dy + r * dim;
        float *d = dv + r * dim;
        const double norm = norms[r];
        if (norm < NORM_EPS) { /* the clamp holds the divisor constant */
            for (int64_t k = 0; k < dim; k++)
                d[k] = (float)(dyr[k] / (double)NORM_EPS);
            continue;
        }
        /* y = v / ‖v‖: dv = (dy - y (y · dy)) / ‖v‖ */
        double yd = 0.0;
        for (int64_t k = 0; k < dim; k++)
            yd += (double)yr[k] * dyr[k];
        for (int64_t k = 0; k < dim; k++)
            d[k] = (float)((dyr[k] - yr[k] * yd) / norm);
    }
}

double ct_contrastive(const float *tn, const float *in, int64_t batch, int64_t dim, float scale,
                      float *sim, float *dsim)
{
    const int64_t B = batch;
    for (int64_t i = 0; i < B; i++)
        for (int64_t j = 0; j < B; j++) {
            /* clip_ctx.c's pair_score: the dot in double, then the scale */
            double dot = 0.0;
            for (int64_t k = 0; k < dim; k++)
                dot += (double)in[j * dim + k] * tn[i * dim + k];
            sim[i * B + j] = (float)dot * scale;
        }
    /* F.cross_entropy(sim, arange) over rows, then over columns; each the
     * mean over B, the two averaged: d sim gets (p - 1[i == j]) / 2B from each */
    const double w = 0.5 / (double)B;
    double total = 0.0;
    if (dsim)
        memset(dsim, 0, (size_t)(B * B) * sizeof *dsim);
    for (int pass = 0; pass < 2; pass++)
        for (int64_t i = 0; i < B; i++) {
            /* pass 0: row i (text i against every image); 1: column i */
            const int64_t sj = pass ? B : 1, at = pass ? i : i * B;
            double m = sim[at];
            for (int64_t j = 1; j < B; j++)
                if (sim[at + j * sj] > m)
                    m = sim[at + j * sj];
            double sum = 0.0;
            for (int64_t j = 0; j < B; j++)
                sum += exp((double)sim[at + j * sj] - m);
            const double lse = m + log(sum);
            total += lse - (double)sim[i * B + i];
            if (dsim)
                for (int64_t j = 0; j < B; j++)
                    dsim[at + j * sj] +=
                        (float)(w * (exp((double)sim[at + j * sj] - lse) - (j == i ? 1.0 : 0.0)));
        }
    return total * w;
}

void ct_contrastive_bw(struct tpool *pool, const float *tn, const float *in, int64_t batch,
                       int64_t dim, float scale, const float *sim, const float *dsim, float *dtn,
                       float *din, float *dtemp)
{
    const int64_t B = batch;
    /* sim = e^t · cos: d t = Σ d sim ⊙ sim */
    double dt = 0.0;
    for (int64_t i = 0; i < B * B; i++)
        dt += (double)dsim[i] * sim[i];
    *dtemp += (float)dt;
    /* d text_i = e^t Σ_j dsim_ij image_j; d image_j = e^t Σ_i dsim_ij text_i */
    ops_gemm(pool, 0, 0, B, dim, B, scale, dsim, B, in, dim, 0.0f, dtn, dim);
    ops_gemm(pool, 1, 0, B, dim, B, scale, dsim, B, tn, dim, 0.0f, din, dim);
}

void ct_patchify(const float *images, int64_t batch, int64_t size, int64_t patch, float *out)
{
    const int64_t p = patch, g = size / patch, S = size, T = g * g, P = 3 * p * p;
    for (int64_t b = 0; b < batch; b++)
        for (int64_t gh = 0; gh < g; gh++)
            for (int64_t gw = 0; gw < g; gw++) {
                float *row = out + (b * T + gh * g + gw) * P;
                for (int64_t p1 = 0; p1 < p; p1++)
                    for (int64_t p2 = 0; p2 < p; p2++)
                        for (int64_t c = 0; c < 3; c++)
                            row[(p1 * p + p2) * 3 + c] =
                                images[((b * 3 + c) * S + gh * p + p1) * S + gw * p + p2];
            }
}

/* ---- tower ends ------------------------------------------------------------------------ */

/* The layers from L[0].xa, the (masked) mean, to_latent, F.normalize. */
static void tower_forward(struct tpool *pool, tower *t, int64_t B, ops_span *spans, int dl)
{
    for (int l = 0; l < t->depth; l++)
        layer_forward(pool, t, l, B, spans, l + 1 < t->depth ? t->L[l + 1].xa : t->x_out);
    ct_masked_mean(t->x_out, B, t->n, t->dim, t->mask, t->pooled);
    ops_linear_pool(pool, t->pooled, B, t->dim, t->to_latent, NULL, dl, t->lat, dl);
    ct_normalize(t->lat, B, dl, t->nrm, t->norms);
}

/* From t->dnrm (d loss / d normalised latents) to the gradients of the
 * layers; t->dx ends as d(the tower's input). */
static void tower_backward(struct tpool *pool, tower *t, int64_t B, ops_span *spans, int dl)
{
    ct_normalize_bw(t->nrm, t->norms, B, dl, t->dnrm, t->dlat);
    memset(t->dpooled, 0, (size_t)(B * t->dim) * sizeof(float));
    bw_linear(pool, t->pooled, B, t->dim, t->to_latent, dl, t->dlat, dl, t->dpooled,
              t->g_to_latent, NULL);
    ct_masked_mean_bw(t->dpooled, B, t->n, t->dim, t->mask, t->dx);
    for (int l = t->depth - 1; l >= 0; l--)
        layer_backward(pool, t, l, B, spans);
}

/* ---- the whole model ------------------------------------------------------------------ */

static dalle_status check_inputs(const clip_train *tr, const int32_t *text,
                                 const uint8_t *text_mask, const float *images, int batch)
{
    const int64_t L = tr->cfg.text_seq_len, S = tr->cfg.visual_image_size;
    if (!text || !images)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s is NULL", !text ? "text" : "images");
    if (batch < 1 || batch > tr->max_batch)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "batch = %d: expected 1..%d pairs", batch,
                          tr->max_batch);
    for (int64_t b = 0; b < batch; b++) {
        int kept = 0;
        for (int64_t i = 0; i < L; i++) {
            int32_t id = text[b * L + i];
            if (id < 0 || id >= tr->cfg.num_text_tokens)
                return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                                  "caption tokens: text[%lld] = %d: expected [0, %d)",
                                  (long long)(b * L + i), (int)id, tr->cfg.num_text_tokens);
            kept += text_mask ? text_mask[b * L + i] != 0 : id != 0;
        }
        if (!kept)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "caption %lld keeps no token (the masked mean would divide by "
                              "zero)",
                              (long long)b);
    }
    for (int64_t i = 0; i < batch * 3 * S * S; i++)
        if (!isfinite(images[i]))
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "images[%lld] is not finite", (long long)i);
    return DALLE_OK;
}

dalle_status clip_train_forward(clip_train *tr, const int32_t *text, const uint8_t *text_mask,
                                const float *images, int batch, double *loss)
{
    dalle_status s = check_inputs(tr, text, text_mask, images, batch);
    if (s)
        return s;
    acts *a = tr->act;
    const clip_model_ptrs *w = &tr->pw;
    const int64_t B = batch, L = tr->cfg.text_seq_len, T = tr->n_patches, dl = tr->cfg.dim_latent;
    const int64_t dt = a->text.dim, di = a->image.dim;
    tr->batch = batch;
    memcpy(a->ids, text, (size_t)(B * L) * sizeof *a->ids);
    for (int64_t i = 0; i < B * L; i++)
        a->mask[i] = text_mask ? text_mask[i] != 0 : text[i] != 0;
    a->text.mask = a->mask;
    a->image.mask = NULL;

    /* text: embeddings + positions (the sum in this order, as inference) */
    float *x = a->text.L[0].xa;
    for (int64_t r = 0; r < B * L; r++) {
        memcpy(x + r * dt, w->text_emb + (int64_t)a->ids[r] * dt, (size_t)dt * sizeof *x);
        ops_add_scaled(x + r * dt, w->text_pos_emb + (r % L) * dt, NULL, 1, dt);
    }
    tower_forward(tr->pool, &a->text, B, a->spans, (int)dl);

    /* image: patches → to_visual_embedding + positions */
    ct_patchify(images, B, tr->cfg.visual_image_size, tr->cfg.visual_patch_size, a->patches);
    x = a->image.L[0].xa;
    ops_linear_pool(tr->pool, a->patches, B * T, tr->patch_dim, w->patch_w, w->patch_b, di, x,
                    di);
    for (int64_t b = 0; b < B; b++)
        ops_add_scaled(x + b * T * di, w->visual_pos_emb, NULL, T, di);
    tower_forward(tr->pool, &a->image, B, a->spans, (int)dl);

    a->scale = expf(w->temperature[0]);
    double v = ct_contrastive(a->text.nrm, a->image.nrm, B, dl, a->scale, a->sim, a->dsim);
    if (loss)
        *loss = v;
    return DALLE_OK;
}

void clip_train_backward(clip_train *tr)
{
    acts *a = tr->act;
    const clip_model_ptrs *g = &tr->pg;
    const int64_t B = tr->batch, L = tr->cfg.text_seq_len, T = tr->n_patches;
    const int64_t dl = tr->cfg.dim_latent, dt = a->text.dim, di = a->image.dim;
    ct_contrastive_bw(tr->pool, a->text.nrm, a->image.nrm, B, dl, a->scale, a->sim, a->dsim,
                      a->text.dnrm, a->image.dnrm, g->temperature);

    tower_backward(tr->pool, &a->text, B, a->spans, (int)dl);
    bw_embedding(a->ids, B * L, dt, a->text.dx, g->text_emb);
    bw_embedding(a->text_pos, B * L, dt, a->text.dx, g->text_pos_emb);

    tower_backward(tr->pool, &a->image, B, a->spans, (int)dl);
    bw_linear(tr->pool, a->patches, B * T, tr->patch_dim, tr->pw.patch_w, di, a->image.dx, di,
              NULL, g->patch_w, g->patch_b);
    bw_embedding(a->image_pos, B * T, di, a->image.dx, g->visual_pos_emb);
}
