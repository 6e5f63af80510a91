/* The training forward and backward of the DALL·E transformer
 * (tf_train.h): DALLE.forward(text, image, return_loss=True) on whole
 * sequences, keeping every activation the backward needs, then the
 * backward layer by layer in reverse.
 *
 * The forward uses the inference operations in the inference order
 * (lib/transformer.c, attention.c), so its logits are those of
 * dalle_logits for the same weights; the backward uses ops_backward.h.
 * Every loop runs in a fixed order and the products go through ops_gemm
 * (same bits on any pool): gradients do not depend on the thread count. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../rng.h"
#include "ops_backward.h"
#include "tf_train.h"

#define LN_EPS 1e-5f /* nn.LayerNorm's default */
/* The dropout masks' stream: "Drop", then (layer << 1) | site */
#define DROP_STREAM 0x44726f7000000000ULL
enum { SITE_ATTN = 0, SITE_FF = 1 };

/* What one layer's backward needs: rows = batch · n_pos. */
typedef struct layer_act {
    float *xa, *src_a;  /* attention sublayer: input x, normed + shifted input */
    float *qkv;         /* [rows][3 · inner]: q rotated and scaled, k, v rotated */
    float *K, *V;       /* k, v as [batch][heads][n_pos][dim_head] (ops_attend's layout) */
    float *att, *ya;    /* attention output before / after to_out */
    float *xf, *src_f;  /* feed-forward sublayer: input, normed + shifted input */
    float *ffh, *ffa, *yf; /* [rows][2 · ff_inner], after GEGLU (and dropout), after
                              the last Linear */
    float *yan, *yfn;   /* sandwich_norm: norm_out of ya / yf (else NULL) */
} layer_act;

typedef struct acts {
    float *block;       /* every float buffer below */
    int32_t *ints;      /* seq, labels */
    layer_act *L;
    int32_t *seq, *labels; /* [batch][n_pos]: fed ids, target columns */
    float *x_out, *h_out, *logits; /* final stream, after to_logits.0, logits */
    float *hn;          /* scratch: normed input before the shift */
    float *xdm;         /* stable: x_out / its row maxima (DivideMax), else NULL */
    float *x1, *x2;     /* reversible: the embeddings (both streams' start), the
                           second stream after the last layer; else NULL */
    /* the dropout of the last forward, which its backward replays */
    int drop_on;
    uint64_t drop_seed;
    int64_t drop_step;
    /* gradients (scratch) */
    float *dx, *dy, *dsrc, *dh, *dffa, *dffh, *datt, *dqkv, *dK, *dV, *dlogits, *scores;
    float *dz;          /* sandwich_norm: the gradient of a norm_out's input */
    float *d2;          /* reversible: the second stream's gradient */
} acts;

static float *take(float **cursor, int64_t n)
{
    float *p = *cursor;
    *cursor += n;
    return p;
}

dalle_status tf_train_acts_create(tf_train *tr)
{
    const tf_hparams *hp = &tr->hp;
    const int64_t R = (int64_t)tr->max_batch * hp->max_pos, d = hp->dim, in = hp->inner;
    const int64_t ffi = hp->ff_inner, V = hp->total_tokens;
    const int sw = tr->cfg.sandwich_norm != 0, st = tr->cfg.stable != 0;
    const int rv = tr->cfg.reversible != 0;
    const int64_t per_layer = R * (6 * d + 6 * in + 3 * ffi + 2 * sw * d);
    const int64_t total = hp->depth * per_layer + R * (7 * d + 3 * ffi + 6 * in + 2 * V) +
                          hp->max_pos + R * d * (sw + st + 3 * rv);
    acts *a = calloc(1, sizeof *a);
    if (!a)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "out of memory for the DALL-E transformer's activations");
    tr->act = a;
    a->L = calloc((size_t)hp->depth, sizeof *a->L);
    a->block = malloc((size_t)total * sizeof(float));
    a->ints = malloc((size_t)(2 * R) * sizeof(int32_t));
    if (!a->L || !a->block || !a->ints)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "out of memory for the DALL-E transformer's activations of %d "
                          "sequences",
                          tr->max_batch);
    float *c = a->block;
    for (int l = 0; l < hp->depth; l++) {
        layer_act *L = &a->L[l];
        L->xa = take(&c, R * d);
        L->src_a = take(&c, R * d);
        L->qkv = take(&c, R * 3 * in);
        L->K = take(&c, R * in);
        L->V = take(&c, R * in);
        L->att = take(&c, R * in);
        L->ya = take(&c, R * d);
        L->xf = take(&c, R * d);
        L->src_f = take(&c, R * d);
        L->ffh = take(&c, R * 2 * ffi);
        L->ffa = take(&c, R * ffi);
        L->yf = take(&c, R * d);
        if (sw) {
            L->yan = take(&c, R * d);
            L->yfn = take(&c, R * d);
        }
    }
    a->x_out = take(&c, R * d);
    a->h_out = take(&c, R * d);
    a->logits = take(&c, R * V);
    a->hn = take(&c, R * d);
    a->dx = take(&c, R * d);
    a->dy = take(&c, R * d);
    a->dsrc = take(&c, R * d);
    a->dh = take(&c, R * d);
    a->dffa = take(&c, R * ffi);
    a->dffh = take(&c, R * 2 * ffi);
    a->datt = take(&c, R * in);
    a->dqkv = take(&c, R * 3 * in);
    a->dK = take(&c, R * in);
    a->dV = take(&c, R * in);
    a->dlogits = take(&c, R * V);
    a->scores = take(&c, hp->max_pos);
    if (sw)
        a->dz = take(&c, R * d);
    if (st)
        a->xdm = take(&c, R * d);
    if (rv) {
        a->x1 = take(&c, R * d);
        a->x2 = take(&c, R * d);
        a->d2 = take(&c, R * d);
    }
    a->seq = a->ints;
    a->labels = a->ints + R;
    return DALLE_OK;
}

void tf_train_acts_free(tf_train *tr)
{
    acts *a = tr->act;
    if (!a)
        return;
    free(a->L);
    free(a->block);
    free(a->ints);
    free(a);
    tr->act = NULL;
}

const float *tf_train_logits(const tf_train *tr) { return ((const acts *)tr->act)->logits; }

/* ---- forward ------------------------------------------------------------------ */

static void embed(const tf_train *tr, const acts *a, int batch, float *x)
{
    const tf_hparams *hp = &tr->hp;
    const tf_model_ptrs *w = &tr->pw;
    const int64_t d = hp->dim, N = hp->max_pos;
    for (int64_t r = 0; r < batch * N; r++) {
        int64_t p = r % N;
        int32_t id = a->seq[r];
        float *xr = x + r * d;
        if (p < hp->text_len) {
            memcpy(xr, w->text_emb + id * d, (size_t)d * sizeof *xr);
            if (!hp->rotary_emb)
                for (int64_t j = 0; j < d; j++)
                    xr[j] += w->text_pos_emb[p * d + j];
        } else {
            memcpy(xr, w->image_emb + id * d, (size_t)d * sizeof *xr);
            if (!hp->rotary_emb) {
                int64_t img = p - hp->text_len;
                const float *ar = w->axial_rows + (img / hp->fmap) * d;
                const float *ac = w->axial_cols + (img % hp->fmap) * d;
                for (int64_t j = 0; j < d; j++)
                    xr[j] += ar[j] + ac[j];
            }
        }
        if (tr->cfg.stable)
            /* tokens * 0.1 + tokens.detach() * 0.9: the value changes only
             * by rounding (as lib/transformer.c computes it) */
            for (int64_t j = 0; j < d; j++)
                xr[j] = xr[j] * 0.1f + xr[j] * 0.9f;
    }
}

/* nn.Dropout(p) in training on x [n] (in place), the mask of (layer, site)
 * of the forward's seed and step, element i keyed by its index: dropped
 * with probability p, the rest scaled by 1 / (1 - p). The same call on a
 * gradient is the backward (the same mask, the same scale). Nothing
 * without dropout. */
static void dropout(const acts *a, int layer, int site, double p, float *x, int64_t n)
{
    if (!a->drop_on || !(p > 0.0))
        return;
    const float scale = 1.0f / (float)(1.0 - p);
    const uint64_t stream = DROP_STREAM | ((uint64_t)layer << 1) | (uint64_t)site;
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_uniform(a->drop_seed, stream, (uint64_t)a->drop_step, (uint64_t)i) < p
                   ? 0.0f
                   : x[i] * scale;
}

/* LayerNorm, then (shift_tokens) the shift, of the stream x into src. */
static void sublayer_input(const tf_train *tr, acts *a, int batch, const float *x,
                           const float *nw, const float *nb, float *src)
{
    const tf_hparams *hp = &tr->hp;
    const int64_t d = hp->dim, N = hp->max_pos;
    if (!hp->shift_tokens) {
        ops_layer_norm(x, batch * N, d, nw, nb, LN_EPS, src);
        return;
    }
    ops_layer_norm(x, batch * N, d, nw, nb, LN_EPS, a->hn);
    for (int b = 0; b < batch; b++)
        tshift_forward(a->hn + b * N * d, N, d, hp->text_len, hp->fmap, src + b * N * d);
}

static void attention(const tf_train *tr, acts *a, int l, int batch)
{
    const tf_hparams *hp = &tr->hp;
    const tf_layer_ptrs *w = &tr->pw.layers[l];
    layer_act *L = &a->L[l];
    const int64_t N = hp->max_pos, H = hp->heads, dh = hp->dim_head, in = hp->inner;
    const int64_t rc = hp->rot_cols;
    const float scale = (float)pow((double)dh, -0.5);
    ops_linear_pool(tr->pool, L->src_a, batch * N, hp->dim, w->to_qkv, NULL, 3 * in, L->qkv,
                    3 * in);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t p = 0; p < N; p++) {
            float *row = L->qkv + (b * N + p) * 3 * in;
            for (int64_t h = 0; h < H; h++) {
                float *q = row + h * dh, *k = row + in + h * dh, *v = row + 2 * in + h * dh;
                if (rc) {
                    const float *cs = tr->rot_cos + p * rc, *sn = tr->rot_sin + p * rc;
                    ops_rotary(q, cs, sn, rc);
                    ops_rotary(k, cs, sn, rc);
                    ops_rotary(v, cs, sn, rc);
                }
                for (int64_t i = 0; i < dh; i++)
                    q[i] *= scale;
                int64_t at = ((b * H + h) * N + p) * dh;
                memcpy(L->K + at, k, (size_t)dh * sizeof *k);
                memcpy(L->V + at, v, (size_t)dh * sizeof *v);
            }
        }
    ops_span spans[2 + 16];
    for (int64_t b = 0; b < batch; b++)
        for (int64_t p = 0; p < N; p++) {
            int n = attention_spans(hp, tr->types[l], p, spans);
            const float *row = L->qkv + (b * N + p) * 3 * in;
            float *o = L->att + (b * N + p) * in;
            for (int64_t h = 0; h < H; h++) {
                int64_t at = (b * H + h) * N * dh;
                ops_attend(row + h * dh, L->K + at, L->V + at, dh, spans, n, a->scores,
                           o + h * dh);
            }
        }
    ops_linear_pool(tr->pool, L->att, batch * N, in, w->to_out_w, w->to_out_b, hp->dim, L->ya,
                    hp->dim);
}

/* Layer l on its attention input L->xa: xf = res_a + f(xa), x_next =
 * res_f + g(xf), f and g the LayerScale(PreNorm(...)) sublayers.
 * Sequential: res_a = xa, res_f = xf. Reversible (ReversibleBlock, x1 and
 * x2 the streams): y1 = x1 + f(x2), y2 = x2 + g(y1), so xa = x2, res_a = x1,
 * xf = y1, res_f = x2 and x_next = y2. */
static void layer_forward(const tf_train *tr, acts *a, int l, int batch, const float *res_a,
                          const float *res_f_or_null, float *x_next)
{
    const tf_hparams *hp = &tr->hp;
    const tf_layer_ptrs *w = &tr->pw.layers[l];
    layer_act *L = &a->L[l];
    const int64_t R = batch * (int64_t)hp->max_pos, d = hp->dim, ffi = hp->ff_inner;
    const float *y;
    sublayer_input(tr, a, batch, L->xa, w->attn_norm_w, w->attn_norm_b, L->src_a);
    attention(tr, a, l, batch);
    dropout(a, l, SITE_ATTN, tr->cfg.attn_dropout, L->ya, R * d);
    y = L->ya;
    if (L->yan) {
        ops_layer_norm(L->ya, R, d, w->attn_norm_out_w, w->attn_norm_out_b, LN_EPS, L->yan);
        y = L->yan;
    }
    memcpy(L->xf, res_a, (size_t)(R * d) * sizeof(float));
    ops_add_scaled(L->xf, y, w->attn_scale, R, d);
    const float *res_f = res_f_or_null ? res_f_or_null : L->xf;

    sublayer_input(tr, a, batch, L->xf, w->ff_norm_w, w->ff_norm_b, L->src_f);
    ops_linear_pool(tr->pool, L->src_f, R, d, w->ff_w1, w->ff_b1, 2 * ffi, L->ffh, 2 * ffi);
    ops_geglu(L->ffh, R, ffi, L->ffa);
    dropout(a, l, SITE_FF, tr->cfg.ff_dropout, L->ffa, R * ffi);
    ops_linear_pool(tr->pool, L->ffa, R, ffi, w->ff_w2, w->ff_b2, d, L->yf, d);
    y = L->yf;
    if (L->yfn) {
        ops_layer_norm(L->yf, R, d, w->ff_norm_out_w, w->ff_norm_out_b, LN_EPS, L->yfn);
        y = L->yfn;
    }
    memcpy(x_next, res_f, (size_t)(R * d) * sizeof(float));
    ops_add_scaled(x_next, y, w->ff_scale, R, d);
}

/* to_logits on every row; the masked half of a row is -FLT_MAX and not
 * computed (lib/transformer.c's logits_rows). */
static void head(const tf_train *tr, acts *a, int batch)
{
    const tf_hparams *hp = &tr->hp;
    const tf_model_ptrs *w = &tr->pw;
    const int64_t d = hp->dim, N = hp->max_pos, V = hp->total_tokens, T = hp->text_seq_len;
    const int64_t tv = hp->text_vocab;
    const float *x = a->x_out;
    if (a->xdm) {
        /* DivideMax: x / amax(x, dim=-1).detach() */
        memcpy(a->xdm, a->x_out, (size_t)(batch * N * d) * sizeof(float));
        ops_divide_max(a->xdm, batch * N, d);
        x = a->xdm;
    }
    ops_layer_norm(x, batch * N, d, w->norm_w, w->norm_b, LN_EPS, a->h_out);
    for (int64_t b = 0; b < batch; b++) {
        float *o = a->logits + b * N * V;
        const float *h = a->h_out + b * N * d;
        for (int64_t r = 0; r < N; r++)
            for (int64_t j = r < T ? tv : 0; j < (r < T ? V : tv); j++)
                o[r * V + j] = -FLT_MAX;
        ops_linear_pool(tr->pool, h, T, d, w->logits_w, w->logits_b, tv, o, V);
        ops_linear_pool(tr->pool, h + T * d, N - T, d, w->logits_w + tv * d, w->logits_b + tv,
                        hp->num_image_tokens, o + T * V + tv, V);
    }
}

dalle_status tf_train_forward(tf_train *tr, const int32_t *text, const int32_t *image, int batch,
                              double *loss, double lossparts[2])
{
    const tf_hparams *hp = &tr->hp;
    acts *a = tr->act;
    const int64_t N = hp->max_pos, T = hp->text_seq_len, I = hp->image_seq_len;
    if (!text || !image)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s is NULL", !text ? "text" : "image");
    if (batch < 1 || batch > tr->max_batch)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "batch = %d: expected 1..%d pairs", batch,
                          tr->max_batch);
    for (int64_t i = 0; i < batch * T; i++)
        if (text[i] < 0 || text[i] >= hp->num_text_tokens)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "caption tokens: text[%lld] = %d: expected [0, %d)",
                              (long long)i, (int)text[i], hp->num_text_tokens);
    for (int64_t i = 0; i < batch * I; i++)
        if (image[i] < 0 || image[i] >= hp->num_image_tokens)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                              "image tokens: image[%lld] = %d: expected [0, %d)",
                              (long long)i, (int)image[i], hp->num_image_tokens);
    /* DALLE.forward: padding 0 at caption position i becomes
     * num_text_tokens + i, <bos> = 0 in front, the image after, its last
     * token not fed; labels = (text[1:], image + text_vocab) */
    for (int64_t b = 0; b < batch; b++) {
        int32_t *s = a->seq + b * N, *lb = a->labels + b * N;
        const int32_t *tx = text + b * T, *im = image + b * I;
        s[0] = 0;
        for (int64_t i = 0; i < T; i++)
            s[1 + i] = tx[i] == 0 ? (int32_t)(hp->num_text_tokens + i) : tx[i];
        for (int64_t p = hp->text_len; p < N; p++)
            s[p] = im[p - hp->text_len];
        for (int64_t p = 0; p < T; p++)
            lb[p] = s[p + 1];
        for (int64_t p = T; p < N; p++)
            lb[p] = im[p - T] + hp->text_vocab;
    }
    tr->batch = batch;
    a->drop_on = tr->drop_on;
    a->drop_seed = tr->drop_seed;
    a->drop_step = tr->drop_step;
    embed(tr, a, batch, a->L[0].xa);
    const int D = hp->depth;
    if (!a->x1) {
        for (int l = 0; l < D; l++)
            layer_forward(tr, a, l, batch, a->L[l].xa, NULL, l + 1 < D ? a->L[l + 1].xa : a->x_out);
    } else {
        /* torch.cat([x, x], dim=-1): both streams start as the embeddings */
        const int64_t n = batch * N * hp->dim;
        memcpy(a->x1, a->L[0].xa, (size_t)n * sizeof(float));
        for (int l = 0; l < D; l++)
            layer_forward(tr, a, l, batch, l ? a->L[l - 1].xf : a->x1, a->L[l].xa,
                          l + 1 < D ? a->L[l + 1].xa : a->x2);
        /* torch.stack(out.chunk(2, dim=-1)).mean(dim=0) */
        const float *y1 = a->L[D - 1].xf;
        for (int64_t i = 0; i < n; i++)
            a->x_out[i] = (y1[i] + a->x2[i]) / 2.0f;
    }
    head(tr, a, batch);
    double parts[2];
    double v = dalle_loss(a->logits, batch, N, T, hp->text_vocab, hp->total_tokens, a->labels,
                          tr->cfg.loss_img_weight, a->dlogits, &parts[0], &parts[1]);
    if (loss)
        *loss = v;
    if (lossparts) {
        lossparts[0] = parts[0];
        lossparts[1] = parts[1];
    }
    return DALLE_OK;
}

/* ---- backward ------------------------------------------------------------------ */

/* The backward of sublayer_input: dsrc -> (shift) -> LayerNorm, adding
 * into dx (which already holds the residual's gradient). */
static void sublayer_input_bw(const tf_train *tr, acts *a, int batch, const float *x,
                              const float *nw, float *gnw, float *gnb, float *dx)
{
    const tf_hparams *hp = &tr->hp;
    const int64_t d = hp->dim, N = hp->max_pos, R = batch * N;
    const float *dn = a->dsrc;
    if (hp->shift_tokens) {
        memset(a->dh, 0, (size_t)(R * d) * sizeof(float));
        for (int64_t b = 0; b < batch; b++)
            bw_token_shift(a->dsrc + b * N * d, N, d, hp->text_len, hp->fmap, a->dh + b * N * d);
        dn = a->dh;
    }
    bw_layer_norm(x, R, d, nw, LN_EPS, dn, dx, gnw, gnb);
}

static void attention_bw(const tf_train *tr, acts *a, int l, int batch)
{
    const tf_hparams *hp = &tr->hp;
    const layer_act *L = &a->L[l];
    const int64_t N = hp->max_pos, H = hp->heads, dh = hp->dim_head, in = hp->inner;
    const int64_t R = batch * N, rc = hp->rot_cols;
    const float scale = (float)pow((double)dh, -0.5);
    memset(a->dqkv, 0, (size_t)(R * 3 * in) * sizeof(float));
    memset(a->dK, 0, (size_t)(R * in) * sizeof(float));
    memset(a->dV, 0, (size_t)(R * in) * sizeof(float));
    ops_span spans[2 + 16];
    for (int64_t b = 0; b < batch; b++)
        for (int64_t p = 0; p < N; p++) {
            int n = attention_spans(hp, tr->types[l], p, spans);
            const float *row = L->qkv + (b * N + p) * 3 * in;
            float *drow = a->dqkv + (b * N + p) * 3 * in;
            const float *dout = a->datt + (b * N + p) * in;
            for (int64_t h = 0; h < H; h++) {
                int64_t at = (b * H + h) * N * dh;
                bw_attend(row + h * dh, L->K + at, L->V + at, dh, spans, n, dout + h * dh,
                          a->scores, drow + h * dh, a->dK + at, a->dV + at);
            }
        }
    /* back through the cache copies, the q scaling and the rotations */
    for (int64_t b = 0; b < batch; b++)
        for (int64_t p = 0; p < N; p++) {
            float *drow = a->dqkv + (b * N + p) * 3 * in;
            for (int64_t h = 0; h < H; h++) {
                float *dq = drow + h * dh, *dk = drow + in + h * dh, *dv = drow + 2 * in + h * dh;
                int64_t at = ((b * H + h) * N + p) * dh;
                for (int64_t i = 0; i < dh; i++) {
                    dq[i] *= scale;
                    dk[i] += a->dK[at + i];
                    dv[i] += a->dV[at + i];
                }
                if (rc) {
                    const float *cs = tr->rot_cos + p * rc, *sn = tr->rot_sin + p * rc;
                    bw_rotary(dq, cs, sn, rc);
                    bw_rotary(dk, cs, sn, rc);
                    bw_rotary(dv, cs, sn, rc);
                }
            }
        }
}

/* The backward of layer_forward. Sequential: dx holds d x_next and
 * becomes d xa (dr = dx). Reversible: dx holds d y1, dr d y2; they become
 * d x1 = d y1 + gᵀ d y2 and d x2 = d y2 + fᵀ (d x1). */
static void layer_backward(tf_train *tr, acts *a, int l, int batch, float *dr)
{
    const tf_hparams *hp = &tr->hp;
    const tf_layer_ptrs *w = &tr->pw.layers[l], *g = &tr->pg.layers[l];
    const layer_act *L = &a->L[l];
    const int64_t R = batch * (int64_t)hp->max_pos, d = hp->dim, ffi = hp->ff_inner;
    const int64_t in = hp->inner;
    const size_t rd = (size_t)(R * d) * sizeof(float);
    /* x_next = xf + ff_scale ⊙ yf (⊙ norm_out(yf)); dx holds d x_next and
     * becomes d xf */
    memset(a->dy, 0, rd);
    bw_add_scaled(L->yfn ? L->yfn : L->yf, w->ff_scale, R, d, dr, a->dy, g->ff_scale);
    const float *dyf = a->dy;
    if (L->yfn) {
        memset(a->dz, 0, rd);
        bw_layer_norm(L->yf, R, d, w->ff_norm_out_w, LN_EPS, a->dy, a->dz, g->ff_norm_out_w,
                      g->ff_norm_out_b);
        dyf = a->dz;
    }
    memset(a->dffa, 0, (size_t)(R * ffi) * sizeof(float));
    bw_linear(tr->pool, L->ffa, R, ffi, w->ff_w2, d, dyf, d, a->dffa, g->ff_w2, g->ff_b2);
    dropout(a, l, SITE_FF, tr->cfg.ff_dropout, a->dffa, R * ffi);
    memset(a->dffh, 0, (size_t)(R * 2 * ffi) * sizeof(float));
    bw_geglu(L->ffh, R, ffi, a->dffa, a->dffh);
    memset(a->dsrc, 0, rd);
    bw_linear(tr->pool, L->src_f, R, d, w->ff_w1, 2 * ffi, a->dffh, 2 * ffi, a->dsrc, g->ff_w1,
              g->ff_b1);
    sublayer_input_bw(tr, a, batch, L->xf, w->ff_norm_w, g->ff_norm_w, g->ff_norm_b, a->dx);

    /* xf = xa + attn_scale ⊙ ya (⊙ norm_out(ya)); dx becomes d xa */
    memset(a->dy, 0, rd);
    bw_add_scaled(L->yan ? L->yan : L->ya, w->attn_scale, R, d, a->dx, a->dy, g->attn_scale);
    float *dya = a->dy;
    if (L->yan) {
        memset(a->dz, 0, rd);
        bw_layer_norm(L->ya, R, d, w->attn_norm_out_w, LN_EPS, a->dy, a->dz, g->attn_norm_out_w,
                      g->attn_norm_out_b);
        dya = a->dz;
    }
    dropout(a, l, SITE_ATTN, tr->cfg.attn_dropout, dya, R * d);
    memset(a->datt, 0, (size_t)(R * in) * sizeof(float));
    bw_linear(tr->pool, L->att, R, in, w->to_out_w, d, dya, d, a->datt, g->to_out_w, g->to_out_b);
    attention_bw(tr, a, l, batch);
    memset(a->dsrc, 0, rd);
    bw_linear(tr->pool, L->src_a, R, d, w->to_qkv, 3 * in, a->dqkv, 3 * in, a->dsrc, g->to_qkv,
              NULL);
    sublayer_input_bw(tr, a, batch, L->xa, w->attn_norm_w, g->attn_norm_w, g->attn_norm_b, dr);
}

static void embed_bw(tf_train *tr, acts *a, int batch)
{
    const tf_hparams *hp = &tr->hp;
    const tf_model_ptrs *g = &tr->pg;
    const int64_t d = hp->dim, N = hp->max_pos;
    for (int64_t r = 0; r < batch * N; r++) {
        int32_t p = (int32_t)(r % N);
        const float *dr = a->dx + r * d;
        if (p < hp->text_len) {
            bw_embedding(&a->seq[r], 1, d, dr, g->text_emb);
            if (!hp->rotary_emb)
                bw_embedding(&p, 1, d, dr, g->text_pos_emb);
        } else {
            bw_embedding(&a->seq[r], 1, d, dr, g->image_emb);
            if (!hp->rotary_emb) {
                int32_t img = p - hp->text_len, row = img / hp->fmap, col = img % hp->fmap;
                bw_embedding(&row, 1, d, dr, g->axial_rows);
                bw_embedding(&col, 1, d, dr, g->axial_cols);
            }
        }
    }
}

void tf_train_backward(tf_train *tr)
{
    const tf_hparams *hp = &tr->hp;
    acts *a = tr->act;
    const int batch = tr->batch;
    const tf_model_ptrs *w = &tr->pw, *g = &tr->pg;
    const int64_t d = hp->dim, N = hp->max_pos, V = hp->total_tokens, T = hp->text_seq_len;
    const int64_t tv = hp->text_vocab, R = batch * N;
    /* to_logits.1, text rows against the text columns, image rows against
     * the image columns (the masked halves have no gradient) */
    memset(a->dh, 0, (size_t)(R * d) * sizeof(float));
    for (int64_t b = 0; b < batch; b++) {
        const float *h = a->h_out + b * N * d, *dl = a->dlogits + b * N * V;
        float *dh = a->dh + b * N * d;
        bw_linear(tr->pool, h, T, d, w->logits_w, tv, dl, V, dh, g->logits_w, g->logits_b);
        bw_linear(tr->pool, h + T * d, N - T, d, w->logits_w + tv * d, hp->num_image_tokens,
                  dl + T * V + tv, V, dh + T * d, g->logits_w + tv * d, g->logits_b + tv);
    }
    memset(a->dx, 0, (size_t)(R * d) * sizeof(float));
    bw_layer_norm(a->xdm ? a->xdm : a->x_out, R, d, w->norm_w, LN_EPS, a->dh, a->dx, g->norm_w,
                  g->norm_b);
    if (a->xdm)
        /* DivideMax: the row maximum is detached, d x = d (x / m) / m */
        for (int64_t r = 0; r < R; r++) {
            const float *xr = a->x_out + r * d;
            float *dr = a->dx + r * d, m = xr[0];
            for (int64_t i = 1; i < d; i++)
                if (xr[i] > m)
                    m = xr[i];
            for (int64_t i = 0; i < d; i++)
                dr[i] /= m;
        }
    if (a->d2)
        /* the mean of the two streams */
        for (int64_t i = 0; i < R * d; i++)
            a->d2[i] = a->dx[i] = a->dx[i] * 0.5f;
    for (int l = hp->depth - 1; l >= 0; l--)
        layer_backward(tr, a, l, batch, a->d2 ? a->d2 : a->dx);
    if (a->d2)
        /* both streams started as the embeddings */
        for (int64_t i = 0; i < R * d; i++)
            a->dx[i] += a->d2[i];
    if (tr->cfg.stable)
        /* tokens * 0.1 + tokens.detach() * 0.9: a tenth of the gradient */
        for (int64_t i = 0; i < R * d; i++)
            a->dx[i] *= 0.1f;
    embed_bw(tr, a, batch);
}
