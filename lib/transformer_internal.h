/* Inside the transformer: the model, the per-call state, and which file
 * computes what.
 *
 *   transformer_load.c  hyper-parameters, tensor names and shapes
 *   transformer_backend.c  the weights copied to a device backend (CUDA)
 *   rotary.c            the rotary table (stored in the checkpoint or recomputed)
 *   transformer.c       tf_forward: embeddings, the layer loop (residuals,
 *                       PreNorm, sandwich norm, LayerScale, reversible
 *                       streams), feed-forward, DivideMax, logits + mask;
 *                       the state; dalle_logits
 *   token_shift.c       PreShiftToken
 *   attention.c         q/k/v, rotary, KV cache, the masks of full /
 *                       axial_row / axial_col / conv_like, to_out
 *   sample.c            dalle_sample: top-k, temperature, Gumbel, guidance
 *
 * Every tensor operation goes through the context's backend table, tf->be
 * (lib/backend_ops.h): the CPU's is lib/backend_cpu.c (the embedding
 * look-up is there; attention's and token shift's CPU code stays in
 * attention.c and token_shift.c), CUDA's lib/cuda/backend_cuda_ops.c. The weight and state pointers below are that
 * backend's memory (host or device); the model only does arithmetic on
 * them. On CUDA every weight is float32 (widened at upload,
 * transformer_to_backend).
 */
#ifndef DALLE_TRANSFORMER_INTERNAL_H
#define DALLE_TRANSFORMER_INTERNAL_H

#include <stdint.h>

#include "attention_spans.h" /* attn_type, the keys of each type */
#include "backend_ops.h"
#include "ops.h"
#include "transformer.h"

/* Sizes and switches, named as upstream where it has a name. */
typedef struct tf_hparams {
    int dim, depth, heads, dim_head;
    int inner;            /* heads * dim_head */
    int ff_inner;         /* dim * 4 (FeedForward's mult; DALLE never changes it) */
    int num_text_tokens;  /* the caption vocabulary (the kwarg) */
    int text_seq_len;
    int text_vocab;       /* num_text_tokens + text_seq_len: incl. one padding id per position */
    int num_image_tokens;
    int fmap;             /* image_fmap_size: image tokens per side */
    int image_seq_len;    /* fmap² */
    int total_tokens;     /* text_vocab + num_image_tokens: a logits row */
    int text_len;         /* <bos> + text = text_seq_len + 1 positions */
    int max_pos;          /* text_seq_len + image_seq_len: positions ever fed */
    int reversible, stable, sandwich_norm, shift_tokens, rotary_emb, share_io;
    int rot_cols;         /* rotated columns of each head (0 without rotary) */
    int conv_kernel, conv_dilation; /* conv_like: 5 and 1, fixed upstream */
} tf_hparams;

typedef struct tf_norm {
    const float *w, *b;
} tf_norm;

/* One layer: attention and feed-forward sublayers, each
 * LayerScale(PreNorm(fn)). Shared layers point at the same weights. The
 * four matrices are typed (lib/ops.h ops_weight): float32, or the bf16 /
 * f16 / int8 the bundle stores, kept reduced in memory; CLIP's layers
 * (lib/clip_model.h) are always float32. Norms, biases and scales are
 * float32. */
typedef struct tf_layer {
    attn_type type;
    const float *attn_scale;
    tf_norm attn_norm, attn_norm_out; /* norm_out.w NULL without sandwich_norm */
    ops_weight to_qkv;                /* [3 * inner][dim], no bias */
    ops_weight to_out_w;              /* [dim][inner] */
    const float *to_out_b;            /* [dim] */
    const float *ff_scale;
    tf_norm ff_norm, ff_norm_out;
    ops_weight ff_w1;                 /* [2 * ff_inner][dim]: GEGLU's [x | gates] */
    const float *ff_b1;
    ops_weight ff_w2;                 /* [dim][ff_inner] */
    const float *ff_b2;
} tf_layer;

struct transformer {
    tf_hparams hp;
    tf_layer *layers;
    ops_weight text_emb;       /* [text_vocab][dim] (rows of to_logits.1.weight when shared) */
    ops_weight image_emb;      /* [num_image_tokens][dim] */
    const float *text_pos_emb; /* [text_len][dim], rotary off only */
    const float *axial_rows;   /* image_pos_emb.weights_0: [fmap][dim], rotary off only */
    const float *axial_cols;   /* image_pos_emb.weights_1: [fmap][dim] */
    float *rot_cos, *rot_sin;  /* [max_pos + 1][rot_cols], owned */
    tf_norm logits_norm;       /* to_logits.0 */
    ops_weight logits_w;       /* to_logits.1.weight: [total_tokens][dim] */
    const float *logits_b;     /* [total_tokens] */
    int lowp;                  /* some matrix is reduced (bf16, f16, int8): states get
                                * ops_linear_w scratch for their many-row products */
    int64_t lowp_in;           /* the longest row of a reduced matrix (its `in`) */
    int int8_block;            /* weights.int8_block: elements per int8 scale */
    backend cpu;               /* the CPU backend on the owning context's thread pool
                                * (transformer_set_pool; NULL pool: the caller's thread) */
    backend *be;               /* the backend every operation runs on: &cpu, or the
                                * context's CUDA backend after transformer_to_backend */
    int on_device;             /* the weights above are device copies (in be's arena;
                                * rot_cos / rot_sin are not owned then) */
};

/* The memory of one batch of sequences (see tf_state_create). */
struct tf_state {
    int batch, max_chunk, pos;
    int batch_cap;       /* the batch it was made for (batch may be set lower) */
    float *k, *v;        /* [depth][batch][heads][max_pos][dim_head], rotated */
    float *shift_hist;   /* [depth][2][batch][tf_shift_ring][tf_shift_cols]: the shifted
                          * channels of the last normed sublayer inputs (token_shift.c) */
    /* workspace, rows = batch * max_chunk */
    float *x1, *x2;      /* the residual stream(s) [rows][dim] */
    float *h, *hs;       /* normed input, shifted input [rows][dim] */
    float *y;            /* sublayer output [rows][dim] */
    float *qkv;          /* [rows][3 * inner] */
    float *att;          /* [rows][inner] */
    float *ff_h;         /* [rows][2 * ff_inner] */
    float *ff_a;         /* [rows][ff_inner] */
    float *scores;       /* [batch * heads][max_pos]: attention weights, one row per
                          * (sequence, head) task of attention.c */
    float *lowp_scratch; /* tf->lowp only: lowp_slots areas of ops_linear_w_scratch(lowp_in) */
    int lowp_slots;      /* the pool's threads when the state was made */
    float *logits;       /* logits left in the state (tf_forward with logits NULL):
                          * [batch][total_tokens], only the unmasked half written
                          * (the sampler reads nothing else); on a device backend
                          * [batch][max_chunk][total_tokens], where every mode's
                          * logits are computed before their download */
    int32_t *ids;        /* [batch * max_chunk]: the chunk's ids on the backend
                          * (device embeddings read them; sampling writes here) */
    backend *be;         /* the backend its memory came from */
};

/* A product of the model's typed weights with the state's scratch. */
static inline void tf_linear(const transformer *tf, const tf_state *st, const float *x,
                             int64_t rows, int64_t in, const ops_weight *w, const float *b,
                             int64_t out, float *y, int64_t ldy)
{
    tf->be->op->linear(tf->be, x, rows, in, w, b, out, y, ldy, st->lowp_scratch,
                       st->lowp_slots);
}

/* transformer_load.c: copy every weight (and the rotary table) into `be`'s
 * memory, float32, and run on it from now on. Reduced weights (f16, bf16,
 * int8) are widened to float32 on the way: ops_weight_row's values, the
 * same the CPU multiplies with. Weights shared between layers (or with
 * to_logits) are copied once. */
dalle_status transformer_to_backend(transformer *tf, backend *be);
/* Bytes of backend memory transformer_to_backend needs (an upper bound). */
size_t transformer_backend_bytes(const transformer *tf);
/* Bytes of backend memory tf_state_create(tf, batch, max_chunk) takes on a
 * device backend (an upper bound, alignment included). */
size_t tf_state_backend_bytes(const transformer *tf, int batch, int max_chunk);

/* rotary.c: fill tf->rot_cos/rot_sin from the checkpoint's table or compute
 * it as upstream does. */
dalle_status rotary_build(transformer *tf, dalle_bundle *b);
/* The table as upstream computes it: [text_len + image_seq_len][rot_cols]
 * angles (exposed for the test that compares it with the stored one). */
void rotary_compute_table(const tf_hparams *hp, float *table);

/* Token shift reads at most fmap positions back (the token above), and only
 * the channels that move: ceil(dim/2) for text, 2·ceil(dim/4) (capped at
 * dim) for image tokens. So the history is a ring of the last fmap + 1
 * positions (slot = position mod ring) of that many channels, not every
 * position of the sequence. */
static inline int tf_shift_ring(const tf_hparams *hp) { return hp->fmap + 1; }
static inline int tf_shift_cols(const tf_hparams *hp)
{
    const int half = (hp->dim + 1) / 2, q = (hp->dim + 3) / 4;
    const int img = 2 * q < hp->dim ? 2 * q : hp->dim;
    return half > img ? half : img;
}

/* token_shift.c: write the shifted rows of the normed inputs h (rows of
 * `st`'s chunk) to out, and record them in the history ring `hist`
 * ([batch][tf_shift_ring][tf_shift_cols]). */
void token_shift(const transformer *tf, const tf_state *st, float *hist, const float *h, int m,
                 float *out);

/* attention.c: the attention function of layer l on the (normed, shifted)
 * inputs src [batch * m][dim] at positions [st->pos, st->pos + m); appends
 * to the layer's KV cache; result [batch * m][dim] in out (before
 * norm_out / LayerScale). */
void attention_forward(const transformer *tf, tf_state *st, int l, const float *src, int m,
                       float *out);

/* attention.c: the CPU's attention operation (backend_ops.attention) on
 * `pool`: one task per (sequence, head). */
void attention_chunk_cpu(struct tpool *pool, const transformer *tf, tf_state *st, int l, int m);

/* The keys a query at position p may see under `type` (upstream's masks),
 * as at most ATTN_MAX_SPANS(conv_kernel) spans (attn_key_spans of
 * attention_keys(hp, type)). Returns the span count. */
attn_keys attention_keys(const tf_hparams *hp, attn_type type);
int attention_spans(const tf_hparams *hp, attn_type type, int64_t p, ops_span *spans);

#endif
