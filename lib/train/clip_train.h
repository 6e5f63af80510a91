/* Training DALLE-pytorch's CLIP (dalle_pytorch.CLIP at 58c1e1a):
 * CLIP.forward(text, image, text_mask, return_loss=True) with its
 * activations kept, the backward pass into one gradient per weight, and
 * the weights written as a bundle of kind "clip" that clip_ctx_create loads
 * as it is (the reranker of generated images).
 *
 *   text   text_emb(ids) + text_pos_emb → Transformer (key-padding mask)
 *          → masked mean → to_text_latent → F.normalize
 *   image  patches 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)' →
 *          to_visual_embedding + visual_pos_emb → Transformer → mean →
 *          to_visual_latent → F.normalize
 *   loss   sim = exp(temperature) · textᵀ image [batch][batch];
 *          (CE(sim, arange) + CE(simᵀ, arange)) / 2
 *
 * As tf_train.h, the weights are plain float tensors named and shaped as
 * upstream's state dict (what lib/clip_dalle.c reads), back to back in one
 * vector tr->pt.w with the gradients in tr->pt.g (param_table.h): the
 * optimizer (adamw.h) sees one flat vector and a checkpoint is a plain
 * "clip" bundle. The per-layer pointers and their registration reuse
 * tf_train.h's tf_layer_ptrs and tf_train_register_layer: both towers are
 * DALLE-pytorch's own Transformer layers.
 *
 * Both towers are dense, non-causal, no rotary, no token shift, dim_head 64
 * and ff_mult 4 (the defaults CLIP leaves alone); upstream has no dropout
 * here. Deterministic: the gradients are the same bits for any pool.
 */
#ifndef DALLE_TRAIN_CLIP_TRAIN_H
#define DALLE_TRAIN_CLIP_TRAIN_H

#include <stdint.h>

#include "dalle/dalle.h"
#include "param_table.h"
#include "tf_train.h" /* tf_layer_ptrs, tf_train_register_layer */

/* CLIP.__init__'s keyword arguments (clip_train_default_config: upstream's
 * defaults, which make a large model; set the sizes you want). */
typedef struct clip_train_config {
    int dim_text, dim_image, dim_latent;
    int num_text_tokens, text_enc_depth, text_seq_len, text_heads;
    int num_visual_tokens; /* unused upstream; written to the bundle */
    int visual_enc_depth, visual_heads, visual_image_size, visual_patch_size;
    int channels;  /* 3: the inference side reads RGB only */
    uint64_t seed; /* weight initialisation */
} clip_train_config;

clip_train_config clip_train_default_config(void);

typedef struct clip_model_ptrs {
    tf_layer_ptrs *text_layers, *visual_layers; /* [text_enc_depth], [visual_enc_depth] */
    float *text_emb, *text_pos_emb, *to_text_latent;
    float *patch_w, *patch_b, *visual_pos_emb, *to_visual_latent;
    float *temperature; /* one float: the scale is exp(temperature) */
} clip_model_ptrs;

typedef struct clip_train clip_train;
struct clip_train {
    clip_train_config cfg;
    int grid, n_patches, patch_dim; /* patches per side, in all, floats per patch */
    param_table pt;       /* weights pt.w, gradients pt.g, decay mask (Linear weights) */
    clip_model_ptrs pw, pg; /* the tensors of pt.w and of pt.g */
    int max_batch, batch;
    struct tpool *pool;   /* products and per-sequence attention run here (NULL:
                             calling thread); set by the caller, not owned */
    void *act;            /* activations and scratch (clip_train_pass.c) */
};

/* A fresh model initialised as upstream (nn.Linear's U(±1/√fan_in) for
 * weights and biases, N(0, 1) embeddings, LayerNorm 1 / 0, LayerScale by
 * depth, temperature 1), from cfg->seed. max_batch: pairs per step (≥ 2
 * for a meaningful contrastive loss; 1 is accepted, its loss is 0). All
 * memory of a step is allocated here. */
dalle_status clip_train_create(const clip_train_config *cfg, int max_batch, clip_train **out);
void clip_train_free(clip_train *tr);

/* The tensor `name`, or NULL. */
const train_param *clip_train_find(const clip_train *tr, const char *name);

/* Forward over `batch` (1..max_batch) pairs: text [batch][text_seq_len] ids
 * in [0, num_text_tokens), text_mask [batch][text_seq_len] non-zero where a
 * token is real (NULL: text != 0, the usual choice; every caption must keep
 * one token; an all-ones mask is upstream's text_mask=None), images
 * [batch][channels][size][size] as the model takes them (upstream normalises
 * nothing; libdalle feeds [0, 1]). Keeps the activations for
 * clip_train_backward and returns the loss of return_loss=True. */
dalle_status clip_train_forward(clip_train *tr, const int32_t *text, const uint8_t *text_mask,
                                const float *images, int batch, double *loss);

/* After a forward: sim [batch][batch], sim[i][j] = exp(temperature) ·
 * cos(text i, image j), computed in the order clip_score_masked computes
 * it; and the normalised latents [batch][dim_latent]. */
const float *clip_train_sim(const clip_train *tr);
const float *clip_train_text_latents(const clip_train *tr);
const float *clip_train_image_latents(const clip_train *tr);

/* Backward of the last forward: ADDS d loss / d w into tr->pt.g (zero it
 * with clip_train_zero_grad first). */
void clip_train_backward(clip_train *tr);
void clip_train_zero_grad(clip_train *tr);

/* clip.* metadata (every CLIP kwarg, docs/bundle-keys.md) and every weight
 * tensor into a writer of kind "clip": clip_ctx_create loads the finished
 * file as it is. The caller may add more (train.* optimizer state, a
 * tokenizer). */
dalle_status clip_train_write(const clip_train *tr, dalle_bundle_writer *w);
/* Copy every weight from a bundle (a checkpoint clip_train_write made, or a
 * converted DALLE-pytorch CLIP of the same sizes): every tensor is checked
 * first (DALLE_ERR_MISMATCH names a missing or mis-shaped one) and nothing
 * is copied on failure. */
dalle_status clip_train_load_weights(clip_train *tr, dalle_bundle *b);

/* ---- the pieces CLIP adds to ops_backward.h (clip_train_pass.c) -------------
 * Same contract as ops_backward.h (plain floats, row-major, nothing
 * allocated), except that the backward passes here WRITE their input
 * gradients (each is the only user of its input) unless stated. */

/* Mean over the n positions of each of `batch` sequences x [batch][n][dim]
 * where mask [batch][n] is non-zero (NULL: all): upstream's masked_mean /
 * mean(dim=1), summed in double. Every sequence must keep a position. */
void ct_masked_mean(const float *x, int64_t batch, int64_t n, int64_t dim, const uint8_t *mask,
                    float *out);
void ct_masked_mean_bw(const float *dout, int64_t batch, int64_t n, int64_t dim,
                       const uint8_t *mask, float *dx);

/* F.normalize(p=2, dim=-1): y = v / max(‖v‖, 1e-12) per row, as clip_ctx.c
 * (the norm from a double sum, rounded to float); norms[rows] keeps ‖v‖. */
void ct_normalize(const float *v, int64_t rows, int64_t dim, float *y, float *norms);
void ct_normalize_bw(const float *y, const float *norms, int64_t rows, int64_t dim,
                     const float *dy, float *dv);

/* The loss of return_loss=True from normalised latents tn, in
 * [batch][dim]: sim[i][j] = scale · <tn_i, in_j> (scale = exp(temperature);
 * the dot in double, as clip_ctx.c), loss = (CE(sim, arange) +
 * CE(simᵀ, arange)) / 2. Writes dsim = d loss / d sim when not NULL. */
double ct_contrastive(const float *tn, const float *in, int64_t batch, int64_t dim, float scale,
                      float *sim, float *dsim);
/* From dsim: dtn, din [batch][dim] (written) and *dtemp += d loss /
 * d temperature. */
void ct_contrastive_bw(struct tpool *pool, const float *tn, const float *in, int64_t batch,
                       int64_t dim, float scale, const float *sim, const float *dsim, float *dtn,
                       float *din, float *dtemp);

/* rearrange(images, 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'): images
 * [batch][3][size][size] → out [batch][(size/patch)²][patch · patch · 3].
 * The patch embedding is ops_linear of these rows (its backward bw_linear
 * with no dx: the images are not trained). */
void ct_patchify(const float *images, int64_t batch, int64_t size, int64_t patch, float *out);

/* Between clip_train.c and clip_train_pass.c. */
dalle_status clip_train_acts_create(clip_train *tr);
void clip_train_acts_free(clip_train *tr);

#endif
