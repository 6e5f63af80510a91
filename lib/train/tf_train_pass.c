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
#include "ops_backward.h"
#include "tf_train.h"

#define LN_EPS 1e-5f /* nn.LayerNorm's default */

/* What one layer's backward needs: rows = batch · n_pos. */
typedef struct layer_act {
    float *xa, *src_a;  /* attention sublayer: input x, normed + shifted input */
    float *qkv;         /* [rows][3 · inner]: q rotated and scaled, k, v rotated */
    float *K, *V;       /* k, v as [batch][heads][n_pos][dim_head] (ops_attend's layout) */
    float *att, *ya;    /* attention output before / after to_out */
    float *xf, *src_f;  /* feed-forward sublayer: input, normed + shifted input */
    float *ffh, *ffa, *yf; /* [rows][2 · ff_inner], after GEGLU, after the last Linear */
} layer_act;

typedef struct acts {
    float *block;       /* every float buffer below */
    int32_t *ints;      /* seq, labels */
    layer_act *L;
    int32_t *seq, *labels; /* [batch][n_pos]: fed ids, target columns */
    float *x_out, *h_out, *logits; /* final stream, after to_logits.0, logits */
    float *hn;          /* scratch: normed input before the shift */
    /* gradients (scratch) */
    float *dx, *dy, *dsrc, *dh, *dffa, *dffh, *datt, *dqkv, *dK, *dV, *dlogits, *scores;
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
    const int64_t per_layer = R * (6 * d + 6 * in + 3 * ffi);
    const int64_t total = hp->depth * per_layer + R * (7 * d + 3 * ffi + 6 * in + 2 * V) +
                          hp->max_pos;
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
    }
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

static void layer_forward(const tf_train *tr, acts *a, int l, int batch, float *x_next)
{
    const tf_hparams *hp = &tr->hp;
    const tf_layer_ptrs *w = &tr->pw.layers[l];
    layer_act *L = &a->L[l];
    const int64_t R = batch * (int64_t)hp->max_pos, d = hp->dim, ffi = hp->ff_inner;
    sublayer_input(tr, a, batch, L->xa, w->attn_norm_w, w->attn_norm_b, L->src_a);
    attention(tr, a, l, batch);
    memcpy(L->xf, L->xa, (size_t)(R * d) * sizeof(float));
    ops_add_scaled(L->xf, L->ya, w->attn_scale, R, d);

    sublayer_input(tr, a, batch, L->xf, w->ff_norm_w, w->ff_norm_b, L->src_f);
    ops_linear_pool(tr->pool, L->src_f, R, d, w->ff_w1, w->ff_b1, 2 * ffi, L->ffh, 2 * ffi);
    ops_geglu(L->ffh, R, ffi, L->ffa);
    ops_linear_pool(tr->pool, L->ffa, R, ffi, w->ff_w2, w->ff_b2, d, L->yf, d);
    memcpy(x_next, L->xf, (size_t)(R * d) * sizeof(float));
    ops_add_scaled(x_next, L->yf, w->ff_scale, R, d);
}

/* to_logits on every row; the masked half of a row is -FLT_MAX and not
 * computed (lib/transformer.c's logits_rows). */
static void head(const tf_train *tr, acts *a, int batch)
{
    const tf_hparams *hp = &tr->hp;
    const tf_model_ptrs *w = &tr->pw;
    const int64_t d = hp->dim, N = hp->max_pos, V = hp->total_tokens, T = hp->text_seq_len;
    const int64_t tv = hp->text_vocab;
    ops_layer_norm(a->x_out, batch * N, d, w->norm_w, w->norm_b, LN_EPS, a->h_out);
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
    embed(tr, a, batch, a->L[0].xa);
    for (int l = 0; l < hp->depth; l++)
        layer_forward(tr, a, l, batch, l + 1 < hp->depth ? a->L[l + 1].xa : a->x_out);
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
                              const float *nw, float *gnw, float *gnb)
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
    bw_layer_norm(x, R, d, nw, LN_EPS, dn, a->dx, gnw, gnb);
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

static void layer_backward(tf_train *tr, acts *a, int l, int batch)
{
    const tf_hparams *hp = &tr->hp;
    const tf_layer_ptrs *w = &tr->pw.layers[l], *g = &tr->pg.layers[l];
    const layer_act *L = &a->L[l];
    const int64_t R = batch * (int64_t)hp->max_pos, d = hp->dim, ffi = hp->ff_inner;
    const int64_t in = hp->inner;
    const size_t rd = (size_t)(R * d) * sizeof(float);
    /* x_next = xf + ff_scale ⊙ yf; dx holds d x_next and becomes d xf */
    memset(a->dy, 0, rd);
    bw_add_scaled(L->yf, w->ff_scale, R, d, a->dx, a->dy, g->ff_scale);
    memset(a->dffa, 0, (size_t)(R * ffi) * sizeof(float));
    bw_linear(tr->pool, L->ffa, R, ffi, w->ff_w2, d, a->dy, d, a->dffa, g->ff_w2, g->ff_b2);
    memset(a->dffh, 0, (size_t)(R * 2 * ffi) * sizeof(float));
    bw_geglu(L->ffh, R, ffi, a->dffa, a->dffh);
    memset(a->dsrc, 0, rd);
    bw_linear(tr->pool, L->src_f, R, d, w->ff_w1, 2 * ffi, a->dffh, 2 * ffi, a->dsrc, g->ff_w1,
              g->ff_b1);
    sublayer_input_bw(tr, a, batch, L->xf, w->ff_norm_w, g->ff_norm_w, g->ff_norm_b);

    /* xf = xa + attn_scale ⊙ ya; dx becomes d xa */
    memset(a->dy, 0, rd);
    bw_add_scaled(L->ya, w->attn_scale, R, d, a->dx, a->dy, g->attn_scale);
    memset(a->datt, 0, (size_t)(R * in) * sizeof(float));
    bw_linear(tr->pool, L->att, R, in, w->to_out_w, d, a->dy, d, a->datt, g->to_out_w, g->to_out_b);
    attention_bw(tr, a, l, batch);
    memset(a->dsrc, 0, rd);
    bw_linear(tr->pool, L->src_a, R, d, w->to_qkv, 3 * in, a->dqkv, 3 * in, a->dsrc, g->to_qkv,
              NULL);
    sublayer_input_bw(tr, a, batch, L->xa, w->attn_norm_w, g->attn_norm_w, g->attn_norm_b);
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
    bw_layer_norm(a->x_out, R, d, w->norm_w, LN_EPS, a->dh, a->dx, g->norm_w, g->norm_b);
    for (int l = hp->depth - 1; l >= 0; l--)
        layer_backward(tr, a, l, batch);
    embed_bw(tr, a, batch);
}
