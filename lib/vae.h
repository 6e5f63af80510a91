/* The image tokenizers: token ids ⇄ pixels for the three VAEs a
 * DALLE-pytorch model can use (docs/vae.md):
 *
 *   kind "dvae"         DALLE-pytorch DiscreteVAE          lib/vae_dvae.c
 *   kind "openai_dvae"  OpenAI dall_e Encoder + Decoder    lib/vae_openai.c
 *   kind "vqgan"        taming-transformers VQModel /      lib/vae_vqgan.c
 *                       GumbelVQ
 *
 * lib/vae.c loads the right one (the bundle's general.kind, or vae.kind in a
 * "dalle" bundle), owns the workspace and runs the per-image networks that
 * the family files describe with the small "runner" below.
 *
 * Thread safety: a struct vae keeps one workspace that every call reuses, so
 * one vae (one dalle_ctx) must not be used by two threads at once; use one
 * context per thread. The weights are read-only and owned by the bundle.
 */
#ifndef DALLE_VAE_H
#define DALLE_VAE_H

#include <stdint.h>

#include "backend_ops.h"
#include "context.h"
#include "conv.h"
#include "dalle/dalle.h"

struct vae;

/* Build the VAE of a "dalle" / "dvae" / "openai_dvae" / "vqgan" bundle;
 * every tensor is shape-checked against the metadata, and the token grid
 * the network produces must agree with `shapes` (image_size,
 * image_fmap_size, num_image_tokens). No workspace is allocated yet. */
dalle_status vae_load(dalle_bundle *b, const model_shapes *shapes, struct vae **out);
void vae_free(struct vae *v);

/* The VAE onto a backend with its own memory (CUDA): every weight copied
 * once into it, then `seal`; later calls run there, their workspace and
 * the ids / pixels of up to max_batch images at a time allocated from the
 * backend per call and given back. Nothing happens for a host-memory
 * backend. vae_backend_bytes: the device memory of the weights, and in
 * *work that of a call (workspace, ids and pixels of max_batch images). */
size_t vae_backend_bytes(struct vae *v, int max_batch, size_t *work);
dalle_status vae_to_backend(struct vae *v, backend *be, int max_batch);
/* the backend the VAE runs on: NULL for the CPU */
const backend *vae_backend(const struct vae *v);

/* ids [batch][grid²] (already range-checked) → pixels [batch][3][size][size]
 * in [0, 1]. pool: the context's thread pool (NULL: the calling thread), for
 * the CPU; on a device backend (vae_to_backend) the call runs there. */
dalle_status vae_decode(struct vae *v, struct tpool *pool, const int32_t *ids, int batch,
                        float *pixels);
/* pixels [batch][3][size][size] in [0, 1] (finite) → ids [batch][grid²]. */
dalle_status vae_encode(struct vae *v, struct tpool *pool, const float *pixels, int batch,
                        int32_t *ids);

/* Upstream's own intermediate outputs, for the tests (tests/test_vae.c):
 *  - vae_decode_raw: what the decoder network returns before libdalle maps
 *    it to [0, 1]: DiscreteVAE.decode (normalised space), the dall_e
 *    decoder's 2·3 logit-Laplace statistics, the VQGAN decoder before the
 *    clamp. out [batch][vae_raw_channels][size][size].
 *  - vae_encode_scores: the per-token scores whose argmax is the id:
 *    encoder logits (DiscreteVAE, dall_e, GumbelVQ), or minus the squared
 *    distance to each codebook vector (VQModel). out [batch][num_tokens][grid][grid]. */
int vae_raw_channels(const struct vae *v);
dalle_status vae_decode_raw(struct vae *v, struct tpool *pool, const int32_t *ids, int batch,
                            float *out);
dalle_status vae_encode_scores(struct vae *v, struct tpool *pool, const float *pixels, int batch,
                               float *out);

/* ---- for the family files ------------------------------------------------ */

/* An activation: one image [c][h][w] in workspace slot `slot`. While the
 * runner measures (see below) d is NULL. */
typedef struct vae_act {
    float *d;
    int slot, c, h, w;
} vae_act;

#define VAE_SLOTS 6

/* Runs a network one image at a time over a fixed set of equally sized
 * activation slots, an im2col buffer and an auxiliary buffer (attention
 * scores, distances). The same family code runs twice: once with
 * measure = 1, where every operation only records the sizes it would need
 * (at load time, no data touched), and then for real. So the workspace is
 * sized by the very code that uses it.
 *
 * Every operation goes through the backend's table (lib/backend_ops.h):
 * the CPU's (lib/conv.c on the context's pool) or a device's, where the
 * slots, the weights (vae_to_backend) and the ids are device memory. The
 * family code never touches an activation's data itself. */
typedef struct vae_run {
    int measure;
    backend *be;                          /* set by each call */
    int64_t need_act[VAE_SLOTS];          /* floats per slot, recorded while measuring */
    int64_t need_col, need_aux;           /* floats, recorded while measuring */
    int need_slots;                       /* slots used, recorded while measuring */
    float *slot[VAE_SLOTS];
    float *col;
    int64_t col_cap;
    float *aux;
    int64_t aux_cap;
} vae_run;

/* A convolution's weights with its geometry; w/b point into the bundle. */
typedef struct vae_conv {
    const float *w, *b;
    conv_geom g;
} vae_conv;

/* GroupNorm(32 groups) gain/bias over c channels. */
typedef struct vae_norm {
    const float *gain, *bias;
    int c;
} vae_norm;

/* Load weight (`wname`, [cout][cin][k][k]) and bias (`bname`, [cout]) of a
 * convolution; `transposed` expects PyTorch's [cin][cout][k][k]. Errors name
 * the tensor. */
dalle_status vae_load_conv(dalle_bundle *b, const char *wname, const char *bname, int cin,
                           int cout, int k, int stride, int pad, int transposed, vae_conv *out);
/* Integer metadata `key` within [lo, hi] (def when absent; def < lo makes it
 * required). Errors name the bundle and the key. */
dalle_status vae_meta_int(const dalle_bundle *b, const char *key, int64_t def, int64_t lo,
                          int64_t hi, int *out);
dalle_status vae_load_norm(dalle_bundle *b, const char *prefix, int c, vae_norm *out);

/* A new activation of c×h×w in `slot`, for family code that fills it
 * itself through the table: write only when !r->measure. */
vae_act vae_new(vae_run *r, int slot, int c, int h, int w);
/* channels × grid × grid from ids (backend memory; NULL while measuring)
 * into `slot`: conv_gather_ids of a codebook or of one-hot columns. */
vae_act vae_gather_run(vae_run *r, const float *table, int64_t id_stride, int64_t c_stride,
                       const float *bias, const int32_t *ids, int channels, int grid, int slot);
/* Convolution / transposed convolution of x into `slot` (≠ x.slot). */
vae_act vae_conv_run(vae_run *r, const vae_conv *cv, vae_act x, int slot);
vae_act vae_deconv_run(vae_run *r, const vae_conv *cv, vae_act x, int slot);
/* ReLU / GroupNorm(+swish) of x into `slot` (may be x.slot: in place). */
vae_act vae_relu_run(vae_run *r, vae_act x, int slot);
vae_act vae_norm_run(vae_run *r, const vae_norm *n, vae_act x, int swish, int slot);
/* 2×2 max / average pooling, nearest 2× upsampling into `slot` (≠ x.slot). */
vae_act vae_pool_run(vae_run *r, vae_act x, int max, int slot);
vae_act vae_upsample_run(vae_run *r, vae_act x, int slot);
/* y = x + scale · y, elementwise (same shapes). */
void vae_residual_run(vae_run *r, vae_act x, vae_act y, float scale);
/* Floats of the auxiliary buffer a step needs (recorded while measuring);
 * returns the buffer (NULL while measuring). */
float *vae_aux(vae_run *r, int64_t floats);

/* Moving a family's weights to a backend with its own memory: the family's
 * `upload` passes every tensor pointer of its network here, once; the
 * pointer is replaced by the backend's copy (or, while counting, only its
 * bytes are added up). Errors are kept in the uploader. */
typedef struct vae_upload vae_upload;
void vae_up(vae_upload *u, const float **p, int64_t n);
void vae_up_conv(vae_upload *u, vae_conv *cv);
void vae_up_norm(vae_upload *u, vae_norm *n);

/* One VAE family: its networks for one image, the maps of its input and
 * output pixels, and its tensors. */
typedef struct vae_family {
    const char *name;
    int raw_channels;
    /* ids [grid²] (backend memory) → raw output [raw_channels][size][size]
     * (returned act). */
    vae_act (*decode_net)(const void *net, vae_run *r, const int32_t *ids, int grid);
    /* x: the image [3][size][size] after the input map, in slot 0 →
     * scores [num_tokens][grid][grid]. */
    vae_act (*encode_net)(const void *net, vae_run *r, vae_act x);
    /* in: pixels in [0, 1] → the encoder's input; out: the raw output's
     * first 3 channels → pixels in [0, 1] (lib/conv.h's conv_map). */
    void (*maps)(const void *net, conv_map *in, conv_map *out);
    /* every tensor of the network through vae_up* */
    void (*upload)(void *net, vae_upload *u);
    void (*free_net)(void *net);
} vae_family;

/* Each family file's loader: checks the bundle's metadata and tensors and
 * returns its network. `shapes` gives the token grid the context expects. */
dalle_status vae_dvae_load(dalle_bundle *b, const model_shapes *shapes, void **net,
                           const vae_family **fam);
dalle_status vae_openai_load(dalle_bundle *b, const model_shapes *shapes, void **net,
                             const vae_family **fam);
dalle_status vae_vqgan_load(dalle_bundle *b, const model_shapes *shapes, void **net,
                            const vae_family **fam);

#endif
