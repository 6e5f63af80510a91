/* Inside CLIP: the two models, the encoder they share, the workspace, and
 * which file computes what.
 *
 *   clip_encoder.c     the pre-norm transformer encoder both models use
 *                      (attention with a causal and/or key-padding mask,
 *                      GEGLU or QuickGELU feed-forward, LayerScale), and the
 *                      workspace
 *   clip_dalle.c       DALLE-pytorch's CLIP: loading, encode text / image
 *   clip_openai.c      OpenAI's CLIP (ViT): loading, encode text / image
 *   clip_preprocess.c  raw 8-bit RGB → the model's input (resize, crop,
 *                      normalise) as CLIP's torchvision/Pillow transform
 *   clip_ctx.c         the public clip_* calls: validation, batching,
 *                      normalisation, scores, logits, ranking
 *
 * Both models compute "features" (the unnormalised joint-space vectors:
 * DALLE-pytorch's to_*_latent outputs, OpenAI's encode_image/encode_text),
 * and a score is scale · cos(features); the models differ only in how the
 * features are made.
 */
#ifndef DALLE_CLIP_MODEL_H
#define DALLE_CLIP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dalle/dalle.h"
#include "ops.h"
#include "transformer_internal.h" /* tf_layer, tf_norm: the DALLE layer description */

/* ---- the workspace ---------------------------------------------------------- */

/* Named scratch buffers, grown on demand and kept by the context, so a call
 * allocates nothing once the context has served a call of that size. */
typedef enum clip_slot {
    CW_X,      /* residual stream [rows][dim] */
    CW_H,      /* normed input [rows][dim] */
    CW_QKV,    /* [rows][3 * inner] */
    CW_ATT,    /* attention output before to_out [rows][inner] */
    CW_Y,      /* sublayer output [rows][dim] */
    CW_FF_H,   /* first feed-forward linear [rows][fc1 width] */
    CW_FF_A,   /* activation [rows][ff_inner] */
    CW_K,      /* one head's keys [len][dim_head] */
    CW_V,      /* one head's values [len][dim_head] */
    CW_SCORES, /* one query's attention weights [len] */
    CW_SPANS,  /* ops_span [2 * len]: the key runs, then one query's */
    CW_IN,     /* flattened patches [rows][patch_dim] */
    CW_POOL,   /* pooled rows [batch][dim] */
    CW_FEAT_A, /* features [n][embed] */
    CW_FEAT_B, /* features [n][embed] */
    CW_SORT,   /* clip_rank's (score, index) pairs */
    CW_PRE_K,  /* clip_preprocess: coefficients and bounds */
    CW_PRE_T,  /* clip_preprocess: the horizontally resized rows (uint8) */
    CW_N
} clip_slot;

typedef struct clip_work {
    void *buf[CW_N];
    size_t cap[CW_N]; /* bytes */
    struct tpool *pool; /* the clip_ctx's thread pool (lib/threadpool.h); NULL: this thread */
} clip_work;

/* At least `bytes` in slot `s` (contents not kept when it grows). */
dalle_status clip_work_reserve(clip_work *w, clip_slot s, size_t bytes);
void clip_work_free(clip_work *w);
#define CW_F(w, s) ((float *)(w)->buf[s])

/* ---- the encoder ------------------------------------------------------------ */

typedef enum clip_act {
    CLIP_ACT_GEGLU,     /* DALLE-pytorch FeedForward: fc1 is [2 * ff_inner][dim] */
    CLIP_ACT_QUICK_GELU /* OpenAI mlp: fc1 (c_fc) is [ff_inner][dim] */
} clip_act;

/* One pre-norm layer, as DALLE-pytorch's (tf_layer: LayerScale(PreNorm(fn))
 * twice). OpenAI's ResidualAttentionBlock is the same with no LayerScale
 * (attn_scale / ff_scale NULL), ln_1 / ln_2 as the norms, the in_proj bias
 * below, and QuickGELU instead of GEGLU. `type` is unused (every CLIP
 * attention is dense). */
typedef struct clip_layer {
    tf_layer tf;
    const float *qkv_b; /* [3 * inner] or NULL (DALLE-pytorch has none) */
} clip_layer;

typedef struct clip_encoder {
    int dim, depth, heads, dim_head, inner, ff_inner;
    int max_len;  /* longest sequence: sizes the workspace */
    int causal;   /* OpenAI's text transformer */
    clip_act act;
    clip_layer *layers; /* owned, [depth] */
} clip_encoder;

/* Fill the sizes and allocate the layers (zeroed). */
dalle_status clip_encoder_init(clip_encoder *e, int dim, int depth, int heads, int dim_head,
                               int ff_inner, int max_len, int causal, clip_act act);
void clip_encoder_free(clip_encoder *e);

/* Workspace for `batch` sequences of max_len tokens. */
dalle_status clip_encoder_reserve(const clip_encoder *e, clip_work *w, int batch);

/* The layers over x = CW_X [batch][n][dim], in place. key_mask: NULL or
 * [batch][n], non-zero where a key may be attended (DALLE-pytorch's
 * text_mask); every sequence must keep at least one key. */
void clip_encoder_forward(const clip_encoder *e, clip_work *w, int batch, int n,
                          const uint8_t *key_mask);

/* ---- loading helpers (clip_encoder.c) ---------------------------------------- */

/* Integer metadata `key` in [lo, hi]; def < 0: required. */
dalle_status clip_hparam(const dalle_bundle *b, const char *key, int64_t def, int64_t lo,
                         int64_t hi, int *out);
/* bundle_tensor_f32 with the shape spelled out (ndim <= 4). */
dalle_status clip_tensor(dalle_bundle *b, const char *name, int ndim, int64_t d0, int64_t d1,
                         int64_t d2, int64_t d3, const float **out);
/* A weight matrix [out][in] for tf_layer: always float32 in CLIP (a bundle's
 * f16/bf16 matrices are widened at load by bundle_tensor_f32). */
dalle_status clip_weight(dalle_bundle *b, const char *name, int64_t out, int64_t in,
                         ops_weight *w);
/* exp() of the scalar tensor `name` (temperature / logit_scale), finite. */
dalle_status clip_scale(dalle_bundle *b, const char *name, float *out);

/* ---- the models --------------------------------------------------------------- */

typedef struct clip_model {
    int openai;
    int embed_dim;       /* feature width: dim_latent / embed_dim */
    int text_len;        /* text_seq_len / context_length */
    int vocab;           /* num_text_tokens / vocab_size */
    int image_size;      /* pixels per side */
    int patch, grid;     /* patch side, patches per side */
    float scale;         /* exp(temperature) / exp(logit_scale), as float32 */
    clip_encoder text, vision;

    /* DALLE-pytorch CLIP */
    const float *text_emb, *text_pos;   /* [vocab][dim_text], [text_len][dim_text] */
    const float *to_text_latent;        /* [embed][dim_text] */
    const float *patch_w, *patch_b;     /* to_visual_embedding [dim_image][p*p*3] */
    const float *visual_pos;            /* [grid²][dim_image] */
    const float *to_visual_latent;      /* [embed][dim_image] */

    /* OpenAI CLIP */
    const float *tok_emb, *pos_emb;     /* [vocab][width], [context][width] */
    const float *conv_w;                /* visual.conv1 as [width][3*p*p] */
    const float *class_emb, *vis_pos;   /* [vwidth], [grid² + 1][vwidth] */
    tf_norm ln_pre, ln_post, ln_final;
    float *proj_t, *text_proj_t;        /* owned: visual.proj, text_projection
                                           transposed to [embed][width] */
} clip_model;

/* clip_dalle.c / clip_openai.c: read the hyper-parameters and every tensor
 * (shapes checked) of a bundle of kind "clip" / "openai_clip". */
dalle_status clip_dalle_load(dalle_bundle *b, clip_model *m);
dalle_status clip_openai_load(dalle_bundle *b, clip_model *m);
void clip_model_free(clip_model *m);

/* Workspace for encoding up to n_images images and n_texts captions per
 * call of the encoders below. */
dalle_status clip_model_reserve(const clip_model *m, clip_work *w, int n_images, int n_texts);

/* Features [n][embed_dim] of n images [n][3][size][size] (validated). */
void clip_dalle_encode_image(const clip_model *m, clip_work *w, const float *images, int n,
                             float *features);
void clip_openai_encode_image(const clip_model *m, clip_work *w, const float *images, int n,
                              float *features);
/* Features [n][embed_dim] of n captions [n][text_len] (ids validated).
 * mask: [n][text_len] or NULL (DALLE-pytorch only: masked mean). */
void clip_dalle_encode_text(const clip_model *m, clip_work *w, const int32_t *text,
                            const uint8_t *mask, int n, float *features);
void clip_openai_encode_text(const clip_model *m, clip_work *w, const int32_t *text, int n,
                             float *features);

/* clip_preprocess.c: 8-bit interleaved RGB [height][width][3] → planar
 * float [3][size][size]: Pillow's BICUBIC resize of the short side to size,
 * torchvision's centre crop, v / 255, then (v - mean) / std per channel
 * when mean/std are non-NULL. Validates height and width. */
dalle_status clip_preprocess_image(clip_work *w, const uint8_t *rgb, int height, int width,
                                   int size, const float *mean, const float *std, float *out);

#endif
