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
 * They differ only in which keys a query sees (attention_spans). The sparse
 * classes pad the sequence to text_len + image_seq_len and are causal by
 * construction, so every query sees only positions <= its own: the result
 * of a position never depends on later tokens, and a KV cache of the
 * rotated k and v reproduces the full forward exactly. `stable` swaps in
 * stable_softmax, which divides by 1024, subtracts the max and multiplies
 * by 1024 again: exact power-of-two scalings, hence the same numbers as the
 * plain max-subtracted softmax of ops_attend. */
#include <math.h>
#include <string.h>

#include "transformer_internal.h"

int attention_spans(const tf_hparams *hp, attn_type type, int64_t p, ops_span *sp)
{
    if (p < hp->text_len || type == ATTN_FULL) {
        /* causal: everything up to and including p */
        sp[0] = (ops_span){0, p + 1, 1};
        return 1;
    }
    const int64_t W = hp->fmap, base = hp->text_len;
    const int64_t i = p - base, r = i / W, c = i % W;
    int n = 0;
    sp[n++] = (ops_span){0, base, 1}; /* an image token sees all of <bos> + text */
    switch (type) {
    case ATTN_AXIAL_ROW: /* its own row, columns <= c */
        sp[n++] = (ops_span){base + r * W, c + 1, 1};
        break;
    case ATTN_AXIAL_COL: /* its own column, rows <= r */
        sp[n++] = (ops_span){base + c, r + 1, W};
        break;
    case ATTN_CONV_LIKE: {
        /* F.unfold over the image padded by (k-1)*dilation on the top and
         * left: the k x k window whose bottom-right corner is (r, c);
         * positions outside the image are masked. */
        const int k = hp->conv_kernel, dil = hp->conv_dilation;
        const int64_t reach = (int64_t)(k - 1) * dil;
        for (int ky = 0; ky < k; ky++) {
            int64_t rr = r - reach + (int64_t)ky * dil;
            if (rr < 0)
                continue;
            int kx0 = 0;
            while (kx0 < k && c - reach + (int64_t)kx0 * dil < 0)
                kx0++;
            sp[n++] = (ops_span){base + rr * W + c - reach + (int64_t)kx0 * dil, k - kx0, dil};
        }
        break;
    }
    case ATTN_FULL:
        break;
    }
    return n;
}

void attention_forward(const transformer *tf, tf_state *st, int l, const float *src, int m,
                       float *out)
{
    const tf_hparams *hp = &tf->hp;
    const tf_layer *L = &tf->layers[l];
    const int64_t rows = (int64_t)st->batch * m, dh = hp->dim_head, inner = hp->inner;
    const int64_t rc = hp->rot_cols, P = hp->max_pos;
    const float scale = (float)pow((double)dh, -0.5);
    /* this layer's cache: [batch][heads][max_pos][dim_head] */
    float *K = st->k + (int64_t)l * st->batch * hp->heads * P * dh;
    float *V = st->v + (int64_t)l * st->batch * hp->heads * P * dh;

    ops_linear_pool(tf->pool, src, rows, hp->dim, L->to_qkv, NULL, 3 * inner, st->qkv, 3 * inner);

    /* rotary on q, k, v; scale q; append k, v to the cache */
    for (int b = 0; b < st->batch; b++)
        for (int i = 0; i < m; i++) {
            int64_t p = st->pos + i;
            float *row = st->qkv + ((int64_t)b * m + i) * 3 * inner;
            for (int h = 0; h < hp->heads; h++) {
                float *q = row + h * dh, *k = row + inner + h * dh, *v = row + 2 * inner + h * dh;
                if (rc) {
                    const float *cs = tf->rot_cos + p * rc, *sn = tf->rot_sin + p * rc;
                    ops_rotary(q, cs, sn, rc);
                    ops_rotary(k, cs, sn, rc);
                    ops_rotary(v, cs, sn, rc);
                }
                for (int64_t d = 0; d < dh; d++)
                    q[d] *= scale;
                int64_t at = (((int64_t)b * hp->heads + h) * P + p) * dh;
                memcpy(K + at, k, (size_t)dh * sizeof *k);
                memcpy(V + at, v, (size_t)dh * sizeof *v);
            }
        }

    /* each (sequence, position, head) independently: any split of this loop
     * over threads gives the same bits */
    ops_span spans[2 + 16];
    for (int b = 0; b < st->batch; b++)
        for (int i = 0; i < m; i++) {
            int64_t p = st->pos + i;
            int n = attention_spans(hp, L->type, p, spans);
            const float *row = st->qkv + ((int64_t)b * m + i) * 3 * inner;
            float *o = st->att + ((int64_t)b * m + i) * inner;
            for (int h = 0; h < hp->heads; h++) {
                int64_t at = ((int64_t)b * hp->heads + h) * P * dh;
                ops_attend(row + h * dh, K + at, V + at, dh, spans, n, st->scores, o + h * dh);
            }
        }

    ops_linear_pool(tf->pool, st->att, rows, inner, L->to_out_w, L->to_out_b, hp->dim, out,
                    hp->dim);
}
