/* Attention of one layer, over the KV cache.
 *
 * Upstream has one class per attention type (Attention for 'full',
 * SparseAxialCausalAttention for 'axial_row' / 'axial_col',
 * SparseConvCausalAttention for 'conv_like'); all compute
 *   q, k, v = to_qkv(x) split into heads; rotary on q, k and v (the first
 *   rot_cols channels of each head); q *= dim_head ** -0.5;
 *   softmax over the allowed keys (masked scores are -FLT_MAX, whose
 *   exponentials are exactly 0, so leaving them out is the same sum);
 *   out = to_out(concat of heads).
 * They differ only in which keys a query sees (attention_spans, over
 * lib/attention_spans.h's attn_key_spans). The sparse
 * classes pad the sequence to text_len + image_seq_len and are causal by
 * construction, so every query sees only positions <= its own: the result
 * of a position never depends on later tokens, and a KV cache of the
 * rotated k and v reproduces the full forward exactly. `stable` swaps in
 * stable_softmax, which divides by 1024, subtracts the max and multiplies
 * by 1024 again: exact power-of-two scalings, hence the same numbers as the
 * plain max-subtracted softmax of ops_attend (lib/ops_attend.c, the kernel
 * CLIP and training call too). */
#include <math.h>
#include <string.h>

#include "threadpool.h"
#include "transformer_internal.h"

attn_keys attention_keys(const tf_hparams *hp, attn_type type)
{
    attn_keys g = {type, hp->conv_kernel, hp->conv_dilation, hp->text_len, hp->fmap};
    return g;
}

int attention_spans(const tf_hparams *hp, attn_type type, int64_t p, ops_span *sp)
{
    const attn_keys g = attention_keys(hp, type);
    return attn_key_spans(&g, p, sp);
}

/* The part of a layer's attention between to_qkv and to_out, as one pool
 * job: task t = (sequence b, head h) does all of it for that pair (rotary,
 * the cache append, every query of the chunk), writing only its own cache
 * rows, its head's columns of att and its own scores scratch. So any
 * thread count computes the same bits. */
typedef struct attn_job {
    const transformer *tf;
    tf_state *st;
    const tf_layer *L;
    float *K, *V; /* this layer's cache: [batch][heads][max_pos][dim_head] */
    int m;
    float scale;
} attn_job;

static void attn_task(void *arg, int64_t t)
{
    const attn_job *j = arg;
    const transformer *tf = j->tf;
    const tf_hparams *hp = &tf->hp;
    tf_state *st = j->st;
    const int m = j->m, b = (int)(t / hp->heads), h = (int)(t % hp->heads);
    const int64_t dh = hp->dim_head, inner = hp->inner, rc = hp->rot_cols, P = hp->max_pos;
    float *K = j->K + t * P * dh, *V = j->V + t * P * dh;
    float *scores = st->scores + t * P;

    /* rotary on q, k, v; scale q; append k, v to the cache */
    for (int i = 0; i < m; i++) {
        const int64_t p = st->pos + i;
        float *row = st->qkv + ((int64_t)b * m + i) * 3 * inner;
        float *q = row + h * dh, *k = row + inner + h * dh, *v = row + 2 * inner + h * dh;
        if (rc) {
            const float *cs = tf->rot_cos + p * rc, *sn = tf->rot_sin + p * rc;
            ops_rotary(q, cs, sn, rc);
            ops_rotary(k, cs, sn, rc);
            ops_rotary(v, cs, sn, rc);
        }
        for (int64_t d = 0; d < dh; d++)
            q[d] *= j->scale;
        memcpy(K + p * dh, k, (size_t)dh * sizeof *k);
        memcpy(V + p * dh, v, (size_t)dh * sizeof *v);
    }
    /* the chunk's queries read keys of the chunk up to their own position:
     * all of them are in the cache now */
    ops_span spans[2 + 16];
    for (int i = 0; i < m; i++) {
        const int64_t p = st->pos + i;
        int n = attention_spans(hp, j->L->type, p, spans);
        const float *q = st->qkv + ((int64_t)b * m + i) * 3 * inner + h * dh;
        float *o = st->att + ((int64_t)b * m + i) * inner + h * dh;
        ops_attend(q, K, V, dh, spans, n, scores, o);
    }
}

/* The CPU's backend_ops.attention: everything between to_qkv and to_out as
 * one pool job over the (sequence, head) pairs. */
void attention_chunk_cpu(struct tpool *pool, const transformer *tf, tf_state *st, int l, int m)
{
    const tf_hparams *hp = &tf->hp;
    const int64_t dh = hp->dim_head, P = hp->max_pos;
    attn_job j = {
        .tf = tf,
        .st = st,
        .L = &tf->layers[l],
        .K = st->k + (int64_t)l * st->batch * hp->heads * P * dh,
        .V = st->v + (int64_t)l * st->batch * hp->heads * P * dh,
        .m = m,
        .scale = (float)pow((double)dh, -0.5),
    };
    tpool_run(pool, (int64_t)st->batch * hp->heads, attn_task, &j);
}

/* Layer l's attention: q, k, v = to_qkv(src); the backend's attention
 * operation (rotary, the KV cache, the masks: attn_task above on the CPU,
 * lib/cuda/backend_cuda_ops.c on CUDA); out = to_out(heads). */
void attention_forward(const transformer *tf, tf_state *st, int l, const float *src, int m,
                       float *out)
{
    const tf_hparams *hp = &tf->hp;
    const tf_layer *L = &tf->layers[l];
    const int64_t rows = (int64_t)st->batch * m, inner = hp->inner;

    tf_linear(tf, st, src, rows, hp->dim, &L->to_qkv, NULL, 3 * inner, st->qkv, 3 * inner);
    tf->be->op->attention(tf->be, tf, st, l, m);
    tf_linear(tf, st, st->att, rows, inner, &L->to_out_w, L->to_out_b, hp->dim, out, hp->dim);
}
