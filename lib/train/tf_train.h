/* Training the DALL·E transformer: DALLE.forward(text, image,
 * return_loss=True) with its activations kept, and the backward pass into
 * one gradient per weight.
 *
 * Weights are plain float tensors named and shaped exactly as the bundle's
 * (the state-dict names lib/transformer_load.c reads), stored back to back
 * in one vector (tr->pt.w, param_table.h) with the gradients beside them
 * (tr->pt.g), so that
 *   - the optimizer (adamw.h) sees one flat vector;
 *   - a checkpoint is written with dalle_bundle_writer and the inference
 *     side (dalle_ctx_create) loads it as it is.
 *
 * The forward is written against the same operations as inference
 * (ops_linear, ops_layer_norm, ops_geglu, ops_rotary, ops_attend,
 * attention_spans, the rotary table), the backward against their backward
 * passes (ops_backward.h).
 *
 * Supported: full / axial_row / axial_col / conv_like attention (cycled
 * over the layers as attn_types), rotary or learned positions, token shift
 * on or off, attn_dropout / ff_dropout (training forwards only, see
 * tf_train_set_dropout), stable (DALLE(stable=True)), sandwich_norm,
 * shared attention / feed-forward layers (shared_attn_ids / shared_ff_ids)
 * and reversible. Not supported (tf_train has no field for them):
 * share_input_output_emb, sparse attention (docs/training.md says why).
 */
#ifndef DALLE_TRAIN_TF_TRAIN_H
#define DALLE_TRAIN_TF_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "../transformer_internal.h"
#include "dalle/dalle.h"
#include "param_table.h"

#define TF_TRAIN_MAX_TYPES 16
#define TF_TRAIN_MAX_IDS 64 /* shared_attn_ids / shared_ff_ids entries */
#define TF_TRAIN_ID_LEN 32  /* an id's characters, NUL included */

typedef struct tf_train_config {
    int dim, depth, heads, dim_head;
    int num_text_tokens, text_seq_len; /* DALLE's kwargs */
    int num_image_tokens, fmap;        /* the VAE's codebook, tokens per side */
    int shift_tokens, rotary_emb;      /* upstream defaults: 1, 1 */
    int n_attn_types;                  /* 0: ("full",) */
    attn_type attn_types[TF_TRAIN_MAX_TYPES];
    double loss_img_weight;            /* upstream default 7 */
    uint64_t seed;                     /* weight initialisation */
    /* Dropout probabilities in [0, 1): nn.Dropout after to_out (attention)
     * and after GEGLU (feed-forward), as upstream's Attention.to_out[1]
     * and FeedForward.net[2]; active only in forwards tf_train_set_dropout
     * switched on. */
    double attn_dropout, ff_dropout;
    int stable;         /* DALLE(stable=True): the 0.1 / 0.9 embedding split
                           and DivideMax before to_logits (the stable softmax
                           is the plain one bit for bit, attention.c) */
    int sandwich_norm;  /* PreNorm(sandwich=True): a LayerNorm (norm_out)
                           on every sublayer's output */
    int reversible;     /* ReversibleSequence: two streams, y1 = x1 + f(x2),
                           y2 = x2 + g(y1), their mean at the end; trained
                           with the exact gradient of that function */
    /* shared_attn_ids / shared_ff_ids: ids cycled over the layers; layers
     * with equal ids share one module (n_* = 0: no sharing) */
    int n_shared_attn, n_shared_ff;
    char shared_attn_ids[TF_TRAIN_MAX_IDS][TF_TRAIN_ID_LEN];
    char shared_ff_ids[TF_TRAIN_MAX_IDS][TF_TRAIN_ID_LEN];
} tf_train_config;

/* Pointers of one layer into w (or g). */
typedef struct tf_layer_ptrs {
    float *attn_scale, *attn_norm_w, *attn_norm_b, *to_qkv, *to_out_w, *to_out_b;
    float *ff_scale, *ff_norm_w, *ff_norm_b, *ff_w1, *ff_b1, *ff_w2, *ff_b2;
    float *attn_norm_out_w, *attn_norm_out_b, *ff_norm_out_w, *ff_norm_out_b; /* sandwich */
} tf_layer_ptrs;

typedef struct tf_model_ptrs {
    tf_layer_ptrs *layers;
    float *text_emb, *image_emb, *text_pos_emb, *axial_rows, *axial_cols;
    float *norm_w, *norm_b, *logits_w, *logits_b;
} tf_model_ptrs;

typedef struct tf_train tf_train;
struct tf_train {
    tf_train_config cfg;
    tf_hparams hp;      /* as transformer_load would derive it */
    attn_type *types;   /* [depth] */
    param_table pt;     /* the weights pt.w, gradients pt.g and decay mask */
    tf_model_ptrs pw, pg; /* the tensors of pt.w and of pt.g */
    float *rot_cos, *rot_sin, *rot_table; /* [n_pos][rot_cols] */
    int max_batch, batch;
    struct tpool *pool; /* the matrix products run here (NULL: calling thread);
                           set by the caller, not owned; same bits for any */
    void *act;          /* activations and scratch (tf_train_pass.c) */
    int *attn_owner, *ff_owner; /* [depth]: the layer whose attention /
                                   feed-forward tensors layer l uses (l
                                   itself unless shared) */
    /* Dropout of the next forwards (tf_train_set_dropout): off after
     * tf_train_create. */
    int drop_on;
    uint64_t drop_seed;
    int64_t drop_step;
};

/* A fresh model initialised as upstream does (nn.Linear's uniform,
 * N(0, 1) embeddings, LayerNorm 1/0, LayerScale by depth), from cfg->seed.
 * max_batch: sequences per step. */
dalle_status tf_train_create(const tf_train_config *cfg, int max_batch, tf_train **out);
void tf_train_free(tf_train *tr);

/* The tensor `name`, or NULL. */
const train_param *tf_train_find(const tf_train *tr, const char *name);

/* Register the 13 tensors of layer `layer` of a DALLE-pytorch Transformer
 * (LayerScale, PreNorm, attention, GEGLU feed-forward) under
 * "<prefix>.layers.layers.<layer>.…", attention and feed-forward wrapped as
 * attn_path / ff_path say, with upstream's initialisation; their pointers
 * go to *w and *g. Shared by the DALL·E transformer and both CLIP towers. */
void tf_train_register_layer(param_table *t, tf_layer_ptrs *w, tf_layer_ptrs *g,
                             const char *prefix, int layer, int64_t dim, int64_t inner,
                             int64_t ff_inner, const char *attn_path, const char *ff_path);

/* The state-dict prefix of sublayer `sub` (0 attention, 1 feed-forward)
 * of layer l: "transformer.layers.layers.<l>.<sub>", or with reversible
 * "transformer.layers.blocks.<l>.<f|g>.net". */
void tf_train_sublayer_prefix(const tf_train *tr, int l, int sub, char *buf, size_t cap);

/* Parse "a,b,c" (NULL or "": none) into at most TF_TRAIN_MAX_IDS ids of
 * fewer than TF_TRAIN_ID_LEN characters; `what` names the list in errors. */
dalle_status tf_train_parse_ids(const char *list, char ids[][TF_TRAIN_ID_LEN], int *n,
                                const char *what);

/* Forward over `batch` (1..max_batch) training pairs: text [batch][text_seq_len]
 * caption ids (0 = padding), image [batch][fmap²] image ids. Keeps the
 * activations for tf_train_backward and returns the loss of
 * DALLE.forward(return_loss=True) (lossparts, when not NULL: text, image).
 * Logits [batch][n_pos][total_tokens] are readable at tf_train_logits
 * afterwards (masked entries -FLT_MAX, as dalle_logits). */
dalle_status tf_train_forward(tf_train *tr, const int32_t *text, const int32_t *image, int batch,
                              double *loss, double lossparts[2]);
const float *tf_train_logits(const tf_train *tr);

/* Dropout of the forwards that follow (and of their backwards): on = 0
 * (evaluation, the default) computes without dropout; on != 0 draws every
 * mask from the counter-based lib/rng.h keyed by (seed, step, layer, site,
 * element), so a forward is a pure function of its arguments and the
 * backward recomputes the forward's masks. Without dropout probabilities
 * it changes nothing. */
void tf_train_set_dropout(tf_train *tr, int on, uint64_t seed, int64_t step);

/* Backward of the last forward: ADDS d loss / d w into tr->pt.g (zero it
 * with tf_train_zero_grad first). */
void tf_train_backward(tf_train *tr);
void tf_train_zero_grad(tf_train *tr);

/* dalle.* metadata and every weight tensor (+ transformer.pos_emb with
 * rotary, as upstream's state dict carries it) into a writer of kind
 * "dalle". The caller adds the VAE (vae.* metadata and tensors). */
dalle_status tf_train_write(const tf_train *tr, dalle_bundle_writer *w);
/* Copy every weight from a bundle (e.g. a checkpoint tf_train_write made):
 * every tensor is checked first (DALLE_ERR_MISMATCH names a missing or
 * mis-shaped one) and nothing is copied on failure. */
dalle_status tf_train_load_weights(tf_train *tr, dalle_bundle *b);

/* Between tf_train.c and tf_train_pass.c: the activation buffers for
 * max_batch sequences. */
dalle_status tf_train_acts_create(tf_train *tr);
void tf_train_acts_free(tf_train *tr);

#endif
