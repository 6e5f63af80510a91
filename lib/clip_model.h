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
 *                      normalisation, scores, logits, ranking; the move
 *                      onto a device backend
 *   clip_backend.c     the CPU's CLIP operations (lib/backend_ops.h's CLIP
 *                      section), the weights copied to a device backend
 *
 * Both models compute "features" (the unnormalised joint-space vectors:
 * DALLE-pytorch's to_*_latent outputs, OpenAI's encode_image/encode_text),
 * and a score is scale · cos(features); the models differ only in how the
 * features are made.
 *
 * Every tensor operation goes through the backend table of the workspace
 * (clip_work.be): the CPU's, or CUDA's with backend = cuda (docs/cuda.md).
 */
#ifndef DALLE_CLIP_MODEL_H
#define DALLE_CLIP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "dalle/dalle.h"
#include "ops.h"
#include "transformer_internal.h" /* tf_layer, tf_norm: the DALLE layer description */

/* ---- the workspace ---------------------------------------------------------- */

/* Named buffers, grown on demand and kept by the context, so a call
 * allocates nothing once the context has served a call of that size. The
 * tensors the model computes on live in the backend's memory (w->be: host
 * memory on the CPU, the GPU's with backend = cuda); the rest is host
 * memory. On a device backend every backend slot is reserved once, for
 * max_batch images and captions, when the context moves there
 * (clip_ctx_to_backend), and never grows after. */
typedef enum clip_slot {
    /* backend memory */
    CW_X,      /* residual stream [rows][dim] */
    CW_H,      /* normed input [rows][dim] */
    CW_QKV,    /* [rows][3 * inner] */
    CW_ATT,    /* attention output before to_out [rows][inner] */
    CW_Y,      /* sublayer output [rows][dim] */
    CW_FF_H,   /* first feed-forward linear [rows][fc1 width] */
    CW_FF_A,   /* activation [rows][ff_inner] */
    CW_IN,     /* flattened patches [rows][patch_dim] */
    CW_POOL,   /* pooled rows [batch][dim] */
    CW_FEAT,   /* a chunk's features [batch][embed] */
    CW_IMG,    /* device only: a chunk's images [batch][3][size][size] */
    CW_IDS,    /* device only: a chunk's ids [batch][text_len] (int32) */
    CW_MASK,   /* device only: a chunk's text mask [batch][text_len] (uint8) */
    CW_TXT,    /* device only: normalised text features [batch][embed] */
    CW_OUT,    /* device only: scores [batch][batch] */
    CW_BACKEND_SLOTS,
    /* host memory */
    CW_K = CW_BACKEND_SLOTS, /* the CPU's attention: one head's keys [len][dim_head] */
    CW_V,      /* one head's values [len][dim_head] */
    CW_SCORES, /* one query's attention weights [len] */
    CW_SPANS,  /* ops_span [2 * len]: the key runs, then one query's */
    CW_FEAT_A, /* normalised text features of a whole call [n][embed] */
    CW_SORT,   /* clip_rank's (score, index) pairs */
    CW_PRE_K,  /* clip_preprocess: coefficients and bounds */
    CW_PRE_T,  /* clip_preprocess: the horizontally resized rows (uint8) */
    CW_N
} clip_slot;

typedef struct clip_work {
    void *buf[CW_N];
    size_t cap[CW_N]; /* bytes */
    struct backend *be; /* where the backend slots (and the model's weights) live; NULL
                         * (only clip_preprocess_image's own tests): host slots only */
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

/* The bytes of each slot `batch` sequences of max_len tokens need, as the
 * maximum of bytes[] and that. */
void clip_encoder_sizes(const clip_encoder *e, int batch, size_t bytes[CW_N]);

/* The layers over x = CW_X [batch][n][dim], in place. key_mask: NULL or
 * [batch][n], non-zero where a key may be attended (DALLE-pytorch's
 * text_mask); every sequence must keep at least one key. */
void clip_encoder_forward(const clip_encoder *e, clip_work *w, int batch, int n,
                          const uint8_t *key_mask);

/* The CPU's clip_attention (backend_ops.h): per sequence, head and query,
 * the keys gathered into w's host scratch and ops_attend. */
void clip_attention_cpu(clip_work *w, float *qkv, int batch, int n, int heads, int64_t dim_head,
                        const uint8_t *key_mask, int causal, float scale, float *att);

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
    float *proj_t, *text_proj_t;        /* visual.proj, text_projection transposed to
                                           [embed][width]: owned (host), or the
                                           backend's copies (on_device) */
    int on_device;                      /* the pointers above are a device backend's */
} clip_model;

/* clip_dalle.c / clip_openai.c: read the hyper-parameters and every tensor
 * (shapes checked) of a bundle of kind "clip" / "openai_clip". */
dalle_status clip_dalle_load(dalle_bundle *b, clip_model *m);
dalle_status clip_openai_load(dalle_bundle *b, clip_model *m);
void clip_model_free(clip_model *m);

/* The bytes of every slot a call encoding up to n_images images and
 * n_texts captions at a time needs (the backend slots; host_memory: the
 * backend's memory is the host's, so the device-only slots need none). */
void clip_model_sizes(const clip_model *m, int host_memory, int n_images, int n_texts,
                      size_t bytes[CW_N]);
/* Those slots reserved in w (on w->be). */
dalle_status clip_model_reserve(const clip_model *m, clip_work *w, int n_images, int n_texts);

/* lib/clip_backend.c: the weights of m copied into be's memory, once, and
 * m's pointers replaced by the copies (the bundle keeps the originals);
 * with count set, nothing is copied and *count gets the bytes it would
 * take (256-byte pieces, as the CUDA arena hands them out). */
dalle_status clip_model_to_backend(clip_model *m, struct backend *be, size_t *count);

/* lib/clip_ctx.c: move a context's model and workspace onto `be` (what
 * clip_ctx_create does with backend = cuda; tests pass an emulated device
 * backend; after a failure the context is only fit to be freed), and the
 * backend a context computes on. */
dalle_status clip_ctx_to_backend(clip_ctx *ctx, struct backend *be);
struct backend *clip_ctx_backend(const clip_ctx *ctx);

/* lib/clip_backend.c: the CPU's CLIP operations, lib/backend_cpu.c's table
 * entries (backend_ops.h says what each computes). */
void clip_cpu_quick_gelu(struct backend *be, float *x, int64_t n);
void clip_cpu_gather_rows(struct backend *be, const float *table, const int32_t *ids,
                          int64_t rows, int64_t dim, float *out);
void clip_cpu_patches(struct backend *be, const float *images, int n, int size, int patch,
                      int channels_last, float *out);
void clip_cpu_attention(struct backend *be, clip_work *w, float *qkv, int batch, int n, int heads,
                        int64_t dim_head, const uint8_t *key_mask, int causal, float scale,
                        float *att);
void clip_cpu_mean_rows(struct backend *be, const float *x, int batch, int n, int64_t dim,
                        const uint8_t *mask, float *out);
void clip_cpu_l2_normalize(struct backend *be, float *x, int64_t rows, int64_t dim);
void clip_cpu_scores(struct backend *be, const float *img, int n_img, const float *txt, int n_txt,
                     int64_t dim, float scale, int scale_first, float *out, int64_t ld);

/* Features [n][embed_dim] (w->be memory) of n images [n][3][size][size]
 * (validated; w->be memory). */
void clip_dalle_encode_image(const clip_model *m, clip_work *w, const float *images, int n,
                             float *features);
void clip_openai_encode_image(const clip_model *m, clip_work *w, const float *images, int n,
                              float *features);
/* Features [n][embed_dim] of n captions [n][text_len] (ids validated);
 * everything w->be memory. mask: [n][text_len] or NULL (DALLE-pytorch
 * only: masked mean); text_host: the ids in host memory (OpenAI reads the
 * end-of-text position there). */
void clip_dalle_encode_text(const clip_model *m, clip_work *w, const int32_t *text,
                            const uint8_t *mask, int n, float *features);
void clip_openai_encode_text(const clip_model *m, clip_work *w, const int32_t *text,
                             const int32_t *text_host, int n, float *features);

/* clip_preprocess.c: 8-bit interleaved RGB [height][width][3] → planar
 * float [3][size][size]: Pillow's BICUBIC resize of the short side to size,
 * torchvision's centre crop, v / 255, then (v - mean) / std per channel
 * when mean/std are non-NULL. Validates height and width. */
dalle_status clip_preprocess_image(clip_work *w, const uint8_t *rgb, int height, int width,
                                   int size, const float *mean, const float *std, float *out);

#endif
