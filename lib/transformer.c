/* tf_forward: one chunk of tokens through DALLE-pytorch's DALLE.forward.
 *
 *   embed        text_emb / image_emb (+ learned text positions and the axial
 *                image embedding when rotary is off); `stable` rounding: the
 *                backend's embed operation (lib/backend_cpu.c on the CPU)
 *   layers       x += LayerScale(norm_out(attn(shift(norm(x)))))
 *                x += LayerScale(norm_out(ff(shift(norm(x)))))
 *                (reversible: two streams, x1 += f(x2), x2 += g(x1), mean)
 *   head         DivideMax (stable), LayerNorm, Linear, logits mask
 *
 * The KV cache and the token-shift history make the state; the full
 * teacher-forced forward is just one chunk starting at position 0. Every
 * tensor operation goes through tf->be (lib/backend_ops.h), so this one
 * file runs on the CPU and on CUDA. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "threadpool.h"
#include "transformer_internal.h"

#define LN_EPS 1e-5f /* nn.LayerNorm's default */

/* ---- state ---------------------------------------------------------------- */

void transformer_set_pool(transformer *tf, struct tpool *pool) { tf->cpu.impl = pool; }

/* The state's buffers, in one list so that creating, freeing and sizing
 * them cannot disagree. */
enum {
    SB_K, SB_V, SB_SHIFT_HIST, SB_X1, SB_X2, SB_H, SB_HS, SB_Y, SB_QKV, SB_ATT, SB_FF_H, SB_FF_A,
    SB_SCORES, SB_LOWP_SCRATCH, SB_LOGITS, SB_IDS, SB_COUNT
};

/* Bytes of each buffer of a state for `batch` sequences and chunks of
 * max_chunk tokens on a backend with (host) or without host memory. */
static void state_sizes(const transformer *tf, int batch, int max_chunk, int host,
                        int64_t bytes[SB_COUNT])
{
    const tf_hparams *hp = &tf->hp;
    const int64_t rows = (int64_t)batch * max_chunk, d = hp->dim, f = (int64_t)sizeof(float);
    const int64_t cache = (int64_t)hp->depth * batch * hp->heads * hp->max_pos * hp->dim_head;
    memset(bytes, 0, SB_COUNT * sizeof *bytes);
    bytes[SB_K] = bytes[SB_V] = cache * f;
    if (hp->shift_tokens)
        bytes[SB_SHIFT_HIST] =
            (int64_t)hp->depth * 2 * batch * tf_shift_ring(hp) * tf_shift_cols(hp) * f;
    bytes[SB_X1] = rows * d * f;
    if (hp->reversible)
        bytes[SB_X2] = rows * d * f;
    bytes[SB_H] = bytes[SB_HS] = bytes[SB_Y] = rows * d * f;
    bytes[SB_QKV] = rows * 3 * hp->inner * f;
    bytes[SB_ATT] = rows * hp->inner * f;
    bytes[SB_FF_H] = rows * 2 * hp->ff_inner * f;
    bytes[SB_FF_A] = rows * hp->ff_inner * f;
    bytes[SB_SCORES] = (int64_t)batch * hp->heads * hp->max_pos * f;
    if (tf->lowp && rows > OPS_LINEAR_W_FEW_ROWS)
        /* one widening area per thread for the many-row products of
         * reduced weights (ops_linear_w), made here, never in the loop;
         * none where every product has few rows (a state shrunk to one
         * token: the matrix-vector kernel needs none) */
        bytes[SB_LOWP_SCRATCH] = tpool_threads((struct tpool *)tf->cpu.impl) *
                                 ops_linear_w_scratch(tf->lowp_in) * f;
    bytes[SB_LOGITS] = (int64_t)batch * (host ? 1 : max_chunk) * hp->total_tokens * f;
    bytes[SB_IDS] = rows * (int64_t)sizeof(int32_t);
}

size_t tf_state_backend_bytes(const transformer *tf, int batch, int max_chunk)
{
    int64_t bytes[SB_COUNT];
    state_sizes(tf, batch, max_chunk, 0, bytes);
    size_t total = 0;
    for (int i = 0; i < SB_COUNT; i++)
        total += ((size_t)bytes[i] + 511) & ~(size_t)255; /* alignment, generously */
    return total;
}

/* The state's field that holds buffer i. */
static void **state_buf(tf_state *st, int i)
{
    switch (i) {
    case SB_K: return (void **)&st->k;
    case SB_V: return (void **)&st->v;
    case SB_SHIFT_HIST: return (void **)&st->shift_hist;
    case SB_X1: return (void **)&st->x1;
    case SB_X2: return (void **)&st->x2;
    case SB_H: return (void **)&st->h;
    case SB_HS: return (void **)&st->hs;
    case SB_Y: return (void **)&st->y;
    case SB_QKV: return (void **)&st->qkv;
    case SB_ATT: return (void **)&st->att;
    case SB_FF_H: return (void **)&st->ff_h;
    case SB_FF_A: return (void **)&st->ff_a;
    case SB_SCORES: return (void **)&st->scores;
    case SB_LOWP_SCRATCH: return (void **)&st->lowp_scratch;
    case SB_LOGITS: return (void **)&st->logits;
    default: return (void **)&st->ids;
    }
}

dalle_status tf_state_create(const transformer *tf, int batch, int max_chunk, tf_state **out)
{
    const tf_hparams *hp = &tf->hp;
    if (batch < 1 || max_chunk < 1 || max_chunk > hp->max_pos)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "tf_state_create: batch %d / chunk %d: expected >= 1 / 1..%d", batch,
                          max_chunk, hp->max_pos);
    tf_state *st = calloc(1, sizeof *st);
    if (!st)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "transformer state: out of memory");
    backend *be = tf->be;
    st->be = be;
    st->batch = st->batch_cap = batch;
    st->max_chunk = max_chunk;
    int64_t bytes[SB_COUNT];
    state_sizes(tf, batch, max_chunk, be->host_memory, bytes);
    dalle_status s = DALLE_OK;
    for (int i = 0; i < SB_COUNT && !s; i++)
        s = be->op->alloc(be, (size_t)bytes[i], state_buf(st, i));
    st->lowp_slots = tf->lowp ? tpool_threads((struct tpool *)tf->cpu.impl) : 0;
    if (s) {
        char why[DALLE_MESSAGE_CAP];
        snprintf(why, sizeof why, "%s", dalle_last_error());
        tf_state_free(st);
        return dalle_fail(s, "transformer state for %d sequences (%s backend): %s", batch,
                          be->name, why);
    }
    *out = st;
    return DALLE_OK;
}

void tf_state_free(tf_state *st)
{
    if (!st)
        return;
    for (int i = 0; i < SB_COUNT; i++)
        st->be->op->free(st->be, *state_buf(st, i));
    free(st);
}

dalle_status tf_state_set_chunk(const transformer *tf, tf_state *st, int max_chunk)
{
    if (max_chunk < 1 || max_chunk > tf->hp.max_pos)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "tf_state_set_chunk: chunk %d: expected 1..%d", max_chunk,
                          tf->hp.max_pos);
    backend *be = st->be;
    if (max_chunk == st->max_chunk)
        return DALLE_OK;
    if (!be->host_memory) {
        /* a device arena gives memory back only as a whole: keep the
         * buffers, which hold any chunk up to the state's own */
        if (max_chunk < st->max_chunk)
            return DALLE_OK;
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "tf_state_set_chunk: chunk %d above the %d the state was made for",
                          max_chunk, st->max_chunk);
    }
    /* st->batch may be below the batch the state was made for (a last,
     * smaller group): size for the larger, as tf_state_create did */
    int64_t had[SB_COUNT], want[SB_COUNT];
    state_sizes(tf, st->batch_cap, st->max_chunk, 1, had);
    state_sizes(tf, st->batch_cap, max_chunk, 1, want);
    dalle_status s = DALLE_OK;
    for (int i = 0; i < SB_COUNT && !s; i++) {
        if (had[i] == want[i])
            continue;
        void **p = state_buf(st, i);
        be->op->free(be, *p);
        *p = NULL;
        s = be->op->alloc(be, (size_t)want[i], p);
    }
    if (s) /* the state is unusable now: tf_state_free still frees it */
        return s;
    st->max_chunk = max_chunk;
    return DALLE_OK;
}

void tf_state_reset(tf_state *st) { st->pos = 0; }
int tf_state_pos(const tf_state *st) { return st->pos; }

/* ---- layers -------------------------------------------------------------- */

/* The normed (and shifted) input of sublayer `sub` of layer l. */
static const float *sublayer_input(const transformer *tf, tf_state *st, int l, int sub,
                                   const float *x, const tf_norm *norm, int m)
{
    const tf_hparams *hp = &tf->hp;
    int64_t rows = (int64_t)st->batch * m;
    backend *be = tf->be;
    be->op->layer_norm(be, x, rows, hp->dim, norm->w, norm->b, LN_EPS, st->h);
    if (!hp->shift_tokens)
        return st->h;
    float *hist = st->shift_hist +
                  ((int64_t)l * 2 + sub) * st->batch * tf_shift_ring(hp) * tf_shift_cols(hp);
    be->op->token_shift(be, tf, st, hist, st->h, m, st->hs);
    return st->hs;
}

/* x += scale * norm_out(y) */
static void residual(const transformer *tf, const tf_state *st, int m, float *x, float *y,
                     const tf_norm *norm_out, const float *scale)
{
    int64_t rows = (int64_t)st->batch * m;
    backend *be = tf->be;
    if (norm_out->w)
        be->op->layer_norm(be, y, rows, tf->hp.dim, norm_out->w, norm_out->b, LN_EPS, y);
    be->op->add_scaled(be, x, y, scale, rows, tf->hp.dim);
}

static void feed_forward(const transformer *tf, tf_state *st, const tf_layer *L,
                         const float *src, int m, float *out)
{
    const tf_hparams *hp = &tf->hp;
    int64_t rows = (int64_t)st->batch * m;
    tf_linear(tf, st, src, rows, hp->dim, &L->ff_w1, L->ff_b1, 2 * hp->ff_inner, st->ff_h,
              2 * hp->ff_inner);
    tf->be->op->geglu(tf->be, st->ff_h, rows, hp->ff_inner, st->ff_a);
    tf_linear(tf, st, st->ff_a, rows, hp->ff_inner, &L->ff_w2, L->ff_b2, hp->dim, out, hp->dim);
}

static void run_layers(const transformer *tf, tf_state *st, int m)
{
    const tf_hparams *hp = &tf->hp;
    /* Sequential: x1 += f(x1); x1 += g(x1). Reversible (ReversibleBlock,
     * the same function in eval mode as in training): x1 += f(x2);
     * x2 += g(x1), both streams starting as copies of the embeddings. */
    float *fx = hp->reversible ? st->x2 : st->x1;
    for (int l = 0; l < hp->depth; l++) {
        const tf_layer *L = &tf->layers[l];
        const float *src = sublayer_input(tf, st, l, 0, fx, &L->attn_norm, m);
        attention_forward(tf, st, l, src, m, st->y);
        residual(tf, st, m, st->x1, st->y, &L->attn_norm_out, L->attn_scale);

        src = sublayer_input(tf, st, l, 1, st->x1, &L->ff_norm, m);
        feed_forward(tf, st, L, src, m, st->y);
        residual(tf, st, m, fx, st->y, &L->ff_norm_out, L->ff_scale);
    }
    if (hp->reversible) {
        /* torch.stack(out.chunk(2, dim=-1)).mean(dim=0) */
        tf->be->op->mean2(tf->be, st->x1, st->x2, (int64_t)st->batch * m * hp->dim);
    }
}

/* ---- logits ---------------------------------------------------------------- */

/* Logits rows from the final hidden rows x [n_rows][dim], row r at
 * position p0 + r * pstep (pstep 1: consecutive positions of one
 * sequence; 0: the same position of every sequence). Only the unmasked
 * half is computed, the other is -FLT_MAX as upstream's masked_fill_ writes
 * it (text positions p < text_seq_len predict text, the rest predict image
 * tokens); skip_fill: leave the masked half alone (see head). */
static void logits_rows(const transformer *tf, const tf_state *st, const float *x,
                        int64_t n_rows, int p0, int pstep, int skip_fill, float *out)
{
    const tf_hparams *hp = &tf->hp;
    const int64_t V = hp->total_tokens, d = hp->dim;
    /* split the rows into the run of text positions and the run of image
     * positions, one product each */
    int64_t n_text = 0;
    while (n_text < n_rows && p0 + n_text * pstep < hp->text_seq_len)
        n_text++;
    backend *be = tf->be;
    if (n_text && !skip_fill)
        be->op->fill(be, out, n_text, V, hp->text_vocab, V - hp->text_vocab, -FLT_MAX);
    if (n_rows > n_text && !skip_fill)
        be->op->fill(be, out + n_text * V, n_rows - n_text, V, 0, hp->text_vocab, -FLT_MAX);
    if (n_text)
        tf_linear(tf, st, x, n_text, d, &tf->logits_w, tf->logits_b, hp->text_vocab, out, V);
    if (n_rows > n_text) {
        const ops_weight img = ops_weight_rows(&tf->logits_w, d, hp->text_vocab);
        tf_linear(tf, st, x + n_text * d, n_rows - n_text, d, &img, tf->logits_b + hp->text_vocab,
                  hp->num_image_tokens, out + n_text * V + hp->text_vocab, V);
    }
}

/* DivideMax (stable) and the final LayerNorm of rows x, in place. */
static void head_norm(const transformer *tf, float *x, int64_t rows)
{
    const int64_t d = tf->hp.dim;
    if (tf->hp.stable)
        tf->be->op->divide_max(tf->be, x, rows, d);
    tf->be->op->layer_norm(tf->be, x, rows, d, tf->logits_norm.w, tf->logits_norm.b, LN_EPS, x);
}

/* keep: the logits stay in the state for the sampler (tf_forward's logits
 * NULL), which reads only their unmasked half: the other is never written
 * (nor, on the CPU, ever brought into memory). */
static void head(const transformer *tf, tf_state *st, int m, tf_logits_mode mode, float *logits,
                 int keep)
{
    const tf_hparams *hp = &tf->hp;
    const int64_t d = hp->dim, V = hp->total_tokens;
    if (mode == TF_LOGITS_ALL) {
        /* [batch][m] rows: each sequence's run of consecutive positions */
        head_norm(tf, st->x1, (int64_t)st->batch * m);
        for (int b = 0; b < st->batch; b++)
            logits_rows(tf, st, st->x1 + (int64_t)b * m * d, m, st->pos, 1, 0,
                        logits + (int64_t)b * m * V);
        return;
    }
    /* The last position of every sequence: one product for the whole
     * batch, so the to_logits matrix (the largest of the model) is
     * streamed once per step, not once per sequence. The rows are x1's
     * rows b * m + m - 1: contiguous when m = 1, else gathered into h (free
     * by now). A row's bits do not depend on the rows beside it (the
     * few-row kernels, lib/ops.h). */
    float *x = st->x1;
    if (m > 1) {
        x = st->h;
        for (int b = 0; b < st->batch; b++)
            tf->be->op->copy(tf->be, x + b * d, st->x1 + ((int64_t)b * m + m - 1) * d,
                             (size_t)d * sizeof *x);
    }
    head_norm(tf, x, st->batch);
    logits_rows(tf, st, x, st->batch, st->pos + m - 1, 0, keep, logits);
}

/* ---- the forward ------------------------------------------------------------ */

dalle_status tf_forward(const transformer *tf, tf_state *st, const int32_t *tokens, int m,
                        tf_logits_mode mode, float *logits)
{
    const tf_hparams *hp = &tf->hp;
    if (m < 1 || m > st->max_chunk || st->pos + m > hp->max_pos)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "transformer: %d tokens at position %d: expected 1..%d tokens and at "
                          "most %d positions",
                          m, st->pos, st->max_chunk, hp->max_pos);
    if (mode == TF_LOGITS_ALL && !logits)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "transformer: logits is NULL");
    for (int b = 0; b < st->batch; b++)
        for (int i = 0; i < m; i++) {
            int p = st->pos + i;
            int32_t id = tokens[(int64_t)b * m + i];
            int32_t lim = p < hp->text_len ? hp->text_vocab : hp->num_image_tokens;
            if (id < 0 || id >= lim)
                return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                                  "transformer: token %d of sequence %d (position %d) = %d: "
                                  "expected a %s id in [0, %d)",
                                  i, b, p, (int)id, p < hp->text_len ? "text" : "image",
                                  (int)lim);
        }
    backend *be = tf->be;
    /* the logits go straight to the caller's buffer on the CPU; a device
     * backend computes them in the state and downloads them at the end */
    float *out = logits && be->host_memory ? logits : st->logits;
    be->op->embed(be, tf, st, tokens, m, st->x1);
    if (hp->reversible)
        be->op->copy(be, st->x2, st->x1, (size_t)st->batch * m * hp->dim * sizeof(float));
    run_layers(tf, st, m);
    if (mode != TF_LOGITS_NONE)
        head(tf, st, m, mode, out, !logits);
    st->pos += m;
    if (mode != TF_LOGITS_NONE && logits && out != logits) {
        int64_t rows = (int64_t)st->batch * (mode == TF_LOGITS_LAST ? 1 : m);
        return be->op->download(be, logits, out, (size_t)rows * hp->total_tokens * sizeof(float));
    }
    return backend_status(be);
}

/* ---- dalle_logits ------------------------------------------------------------ */

/* The sequences [bos, text, image[0 .. n_image - 1)] of `batch` captions
 * (null: the all-padding caption) into seq [batch][n_pos]. */
static void build_sequences(const transformer *tf, const int32_t *text, const int32_t *image,
                            int batch, int n_image, int n_pos, int null_caption, int32_t *seq,
                            int32_t *zeros)
{
    const tf_hparams *hp = &tf->hp;
    for (int b = 0; b < batch; b++) {
        int32_t *s = seq + (int64_t)b * n_pos;
        transformer_text_sequence(tf, null_caption ? zeros : text + (int64_t)b * hp->text_seq_len,
                                  s);
        for (int i = hp->text_len; i < n_pos; i++)
            s[i] = image[(int64_t)b * n_image + (i - hp->text_len)];
    }
}

int transformer_logits_rows(const transformer *tf, int n_image)
{
    int rows = tf->hp.text_len + n_image;
    return rows < transformer_max_positions(tf) ? rows : transformer_max_positions(tf);
}

/* Feed sequences of n_pos tokens in chunks of `step` (n_pos: the
 * teacher-forced forward; 1: as generation does, through the KV cache),
 * writing the logits of every position. */
static dalle_status feed(const transformer *tf, tf_state *st, const int32_t *seq, int n_pos,
                         int step, float *logits)
{
    if (step >= n_pos)
        return tf_forward(tf, st, seq, n_pos, TF_LOGITS_ALL, logits);
    const int nb = st->batch;
    const int64_t V = tf->hp.total_tokens;
    int32_t *tok = malloc((size_t)nb * sizeof *tok);
    float *row = malloc((size_t)nb * V * sizeof *row);
    dalle_status s = DALLE_OK;
    if (!tok || !row)
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_logits: out of memory");
    for (int p = 0; p < n_pos && !s; p++) {
        for (int b = 0; b < nb; b++)
            tok[b] = seq[(int64_t)b * n_pos + p];
        if ((s = tf_forward(tf, st, tok, 1, TF_LOGITS_ALL, row)))
            break;
        for (int b = 0; b < nb; b++)
            memcpy(logits + ((int64_t)b * n_pos + p) * V, row + b * V, (size_t)V * sizeof *row);
    }
    free(tok);
    free(row);
    return s;
}

dalle_status transformer_logits(const transformer *tf, const dalle_ctx_params *cp,
                                const int32_t *text, const int32_t *image, int batch,
                                int n_image, float cond_scale, int incremental, float *out)
{
    const tf_hparams *hp = &tf->hp;
    const int step = incremental ? 1 : transformer_logits_rows(tf, n_image);
    /* Row p predicts token p + 1 of [bos, text, image]. As DALLE.forward,
     * every given token is fed except the last image token of a complete
     * image, which predicts nothing. */
    const int n_pos = transformer_logits_rows(tf, n_image);
    const int64_t V = hp->total_tokens;
    const int guided = cond_scale != 1.0f;
    const int chunk = batch < cp->max_batch ? batch : cp->max_batch;
    tf_state *st = NULL, *st_null = NULL;
    int32_t *seq = NULL, *zeros = NULL;
    float *buf_null = NULL;
    dalle_status s;
    /* every allocation before the first write to out: a failure leaves it
     * untouched (tf_forward cannot fail on arguments checked by context.c) */
    if ((s = tf_state_create(tf, chunk, n_pos, &st)) ||
        (guided && (s = tf_state_create(tf, chunk, n_pos, &st_null))))
        goto done;
    seq = malloc((size_t)chunk * n_pos * sizeof *seq);
    zeros = calloc((size_t)hp->text_seq_len, sizeof *zeros);
    if (guided)
        buf_null = malloc((size_t)chunk * n_pos * V * sizeof *buf_null);
    if (!seq || !zeros || (guided && !buf_null)) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_logits: out of memory");
        goto done;
    }
    for (int b0 = 0; b0 < batch && !s; b0 += chunk) {
        int nb = batch - b0 < chunk ? batch - b0 : chunk;
        const int32_t *img = image ? image + (int64_t)b0 * n_image : NULL;
        float *o = out + (int64_t)b0 * n_pos * V;
        /* a smaller last chunk uses the front of the state's buffers */
        st->batch = nb;
        tf_state_reset(st);
        build_sequences(tf, text + (int64_t)b0 * hp->text_seq_len, img, nb, n_image, n_pos, 0,
                        seq, zeros);
        if ((s = feed(tf, st, seq, n_pos, step, o)) || !guided)
            continue;
        st_null->batch = nb;
        tf_state_reset(st_null);
        build_sequences(tf, NULL, img, nb, n_image, n_pos, 1, seq, zeros);
        if ((s = feed(tf, st_null, seq, n_pos, step, buf_null)))
            continue;
        /* forward_with_cond_scale: null + (cond - null) * cond_scale;
         * masked entries are -FLT_MAX in both and stay so */
        for (int64_t i = 0; i < (int64_t)nb * n_pos * V; i++)
            if (o[i] != -FLT_MAX)
                o[i] = buf_null[i] + (o[i] - buf_null[i]) * cond_scale;
    }
done:
    tf_state_free(st);
    tf_state_free(st_null);
    free(seq);
    free(zeros);
    free(buf_null);
    return s;
}
