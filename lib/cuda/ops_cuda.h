/* The CUDA backend's operations: lib/ops.h over device pointers.
 *
 * Plain C (no CUDA header needed to include it); lib/cuda/ops_cuda.cu is
 * the implementation, compiled by nvcc. A `cuda_ops` holds what the
 * operations run with: the device, one compute stream, a cuBLAS handle
 * (cuBLAS is loaded with dlopen when the backend starts, never linked),
 * cuBLAS's workspace and a device-memory arena. Every pointer an
 * operation takes is device memory (from cuda_ops_alloc) unless its name
 * says host. Operations are queued on the stream in call order and return
 * as soon as they are queued; cuda_ops_sync / cuda_ops_download wait.
 *
 * Errors: every entry returns a dalle_status and records the message with
 * dalle_fail (error.h): DALLE_ERR_UNSUPPORTED where CUDA cannot run here
 * (no GPU, a driver too old, cuBLAS missing, no kernel image for the GPU),
 * DALLE_ERR_OUT_OF_MEMORY when device memory or the arena runs out,
 * DALLE_ERR_INVALID_ARGUMENT for sizes the operation cannot take,
 * DALLE_ERR_BACKEND for any other CUDA or cuBLAS failure. An error of a
 * kernel that already ran (an illegal address, say) is reported by the next
 * call that checks the stream; after one the context is best destroyed.
 * Nothing here prints or exits.
 *
 * Numerics follow lib/ops_cpu.c: the same double accumulators, the same
 * max-subtracted softmax, no fused multiply-adds where the CPU rounds twice,
 * the same counter-based RNG (lib/rng.c) for the sampling noise. Each
 * kernel reduces in a fixed order, so a result is the same bits from run
 * to run on one GPU; it is not bit-identical to the CPU (summation orders
 * differ): tests/test_cuda_ops.c states the tolerances.
 *
 * A cuda_ops is used by one thread at a time. Each entry makes its device
 * current for the call and restores the caller's current device after.
 */
#ifndef DALLE_OPS_CUDA_H
#define DALLE_OPS_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "../attention_spans.h"
#include "../conv.h"
#include "../ops.h"
#include "dalle/dalle.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cuda_ops cuda_ops;

/* Most key spans of one query cuda_attend takes: ATTN_MAX_SPANS(conv_kernel)
 * = 6 for upstream's conv_like. */
#define CUDA_OPS_MAX_SPANS 32

typedef struct cuda_ops_params {
    int device;                  /* CUDA device index */
    int allow_tf32;              /* non-zero: FP32 products may run on TF32 tensor cores
                                  * (about 1e-3 relative error); 0 (default): full FP32 */
    int pedantic;                /* non-zero: CUBLAS_PEDANTIC_MATH (no reduced-precision
                                  * shortcuts at all; slower). Ignored with allow_tf32 */
    size_t arena_bytes;          /* device memory reserved for cuda_ops_alloc */
    size_t blas_workspace_bytes; /* cuBLAS's workspace; 0: 32 MiB */
    const char *cublas_library;  /* NULL: "libcublas.so.<the CUDA major libdalle was built
                                  * with>"; a test points it at a bogus name */
} cuda_ops_params;

/* Defaults: device 0, no TF32, not pedantic, a 64 MiB arena. */
void cuda_ops_params_init(cuda_ops_params *p);

/* The number of CUDA devices (0 with *why saying why: no driver, driver
 * too old, no GPU). Allocates nothing; safe without a GPU. */
int cuda_ops_device_count(const char **why);

/* The library name cuda_ops_create loads when params->cublas_library is NULL. */
const char *cuda_ops_default_cublas(void);

/* Start the backend: load cuBLAS (first, so that a missing library is
 * reported even where there is no GPU), check the device, create the
 * stream and the cuBLAS handle, reserve the workspace and the arena, and
 * run one probe kernel (a driver that cannot load this build's kernels
 * fails here, not in the token loop). On failure *out is NULL and
 * everything taken is given back. */
dalle_status cuda_ops_create(const cuda_ops_params *p, cuda_ops **out);

/* Wait for the queued work, then free everything (NULL is fine). */
void cuda_ops_destroy(cuda_ops *c);

/* The device this context runs on, and a one-line description of it
 * ("NVIDIA H100 80GB HBM3, sm_90, 79 GiB, driver 13.0") for the log. */
int cuda_ops_device(const cuda_ops *c);
const char *cuda_ops_describe(const cuda_ops *c);

/* Wait for everything queued; reports any error of the queued kernels. */
dalle_status cuda_ops_sync(cuda_ops *c);

/* --- device memory: the arena ------------------------------------------- */
/* One device allocation made by cuda_ops_create; cuda_ops_alloc hands out
 * 256-byte aligned pieces of it, so nothing calls cudaMalloc once a model
 * is set up. A mark / reset pair frees everything allocated in between
 * (scratch of one call). */
dalle_status cuda_ops_alloc(cuda_ops *c, size_t bytes, void **ptr);
size_t cuda_ops_arena_mark(const cuda_ops *c);
void cuda_ops_arena_reset(cuda_ops *c, size_t mark);
size_t cuda_ops_arena_size(const cuda_ops *c);

/* Copies, queued on the stream. upload may return before the copy ends,
 * but `host` can be reused as soon as it returns. download waits for the
 * copy (and everything queued before it). */
dalle_status cuda_ops_upload(cuda_ops *c, void *dev, const void *host, size_t bytes);
dalle_status cuda_ops_download(cuda_ops *c, void *host, const void *dev, size_t bytes);
dalle_status cuda_ops_copy(cuda_ops *c, void *dst, const void *src, size_t bytes);
dalle_status cuda_ops_zero(cuda_ops *c, void *dev, size_t bytes);

/* --- matrix products (cuBLAS) ------------------------------------------- */
/* ops_gemm: C = alpha · op(A) · op(B) + beta · C, row-major. Sizes and
 * leading dimensions must fit an int (cuBLAS's 32-bit interface). */
dalle_status cuda_gemm(cuda_ops *c, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb,
                       float beta, float *cm, int64_t ldc);

/* ops_linear: y[r][j] = sum_i x[r][i] · w[j][i] (+ b[j], added after the
 * product as the CPU does); b may be NULL; ldy >= out. */
dalle_status cuda_linear(cuda_ops *c, const float *x, int64_t rows, int64_t in, const float *w,
                         const float *b, int64_t out, float *y, int64_t ldy);

/* cuda_linear with a typed weight w [out][in] (device pointers: data, and
 * int8's scales): OPS_W_F32 is cuda_linear; f16, bf16 and int8 (+ scales
 * of blocks a multiple of 8) stay as stored in device memory and are
 * widened in the kernel exactly as the CPU widens them (lib/half.h; q *
 * scale), the products and sums in float32 (a warp per output column, rows
 * 8 at a time: within 1e-5 of the CPU's sum of |x w|). */
dalle_status cuda_linear_w(cuda_ops *c, const float *x, int64_t rows, int64_t in,
                           const ops_weight *w, const float *b, int64_t out, float *y,
                           int64_t ldy);

/* --- row-wise and elementwise operations (as lib/ops.h) ------------------ */
dalle_status cuda_layer_norm(cuda_ops *c, const float *x, int64_t rows, int64_t dim,
                             const float *gain, const float *bias, float eps, float *y);
dalle_status cuda_geglu(cuda_ops *c, const float *h, int64_t rows, int64_t inner, float *y);
dalle_status cuda_add_scaled(cuda_ops *c, float *x, const float *y, const float *scale,
                             int64_t rows, int64_t dim);
dalle_status cuda_divide_max(cuda_ops *c, float *x, int64_t rows, int64_t dim);
/* ops_softmax of each of `rows` rows of n values (row r at x + r * n). */
dalle_status cuda_softmax(cuda_ops *c, float *x, int64_t rows, int64_t n);
dalle_status cuda_quick_gelu(cuda_ops *c, float *x, int64_t n);

/* attention.c's preparation of a chunk's qkv rows [batch * m][3 * inner]
 * (row ld; inner = heads * dim_head; the row of sequence b, chunk row i is
 * b * m + i, at position pos0 + i), in one launch: every q, k and v head
 * vector rotated over its first rot_cols columns by the cos/sin table row of
 * its position (ops_rotary; tables [positions][table_ld]; rot_cols 0: no
 * rotary), q then multiplied by scale in place, k and v (rotated) written to
 * the caches at cache + ((b * heads + h) * max_pos + pos0 + i) * dim_head.
 * The k and v parts of qkv are left as they came. */
dalle_status cuda_attn_prep(cuda_ops *c, float *qkv, int batch, int m, int64_t ld, int heads,
                            int64_t dim_head, int64_t rot_cols, const float *cos,
                            const float *sin, int64_t table_ld, int64_t pos0, float scale,
                            float *k_cache, float *v_cache, int64_t max_pos);

/* Scale a set of head vectors in place: row r of x (at x + r * ld) holds
 * n_vec vectors, vector v at + v * vec_stride, each scaled over its first
 * n_cols columns. */
dalle_status cuda_scale_vectors(cuda_ops *c, float *x, int64_t rows, int64_t ld, int n_vec,
                                int64_t vec_stride, int64_t n_cols, float scale);

/* Every query of a chunk over the KV cache, in one launch: the query of
 * sequence b, head h at position pos0 + i (i < m) sees the keys
 * attn_key_spans(keys, pos0 + i) lists (lib/attention_spans.h, the CPU's
 * rule, evaluated on the device), as ops_attend with
 *   q   = q   + b * q_seq_ld + i * q_row_ld + h * dim_head   (already scaled),
 *   k,v = k/v + (b * heads + h) * kv_head_ld   (position p at + p * dim_head),
 *   out = out + b * out_seq_ld + i * out_row_ld + h * dim_head.
 * Keys at positions up to pos0 + m - 1 must be in the cache. One block per
 * (sequence, head, query); the scores live in shared memory, so a query's
 * keys are bounded by the GPU's shared memory per block (about 50 000 on an
 * H100; DALL·E's longest sequence is a few thousand). */
dalle_status cuda_attend(cuda_ops *c, const float *q, int64_t q_row_ld, int64_t q_seq_ld,
                         const float *k, const float *v, int64_t kv_head_ld, int batch, int heads,
                         int64_t dim_head, const attn_keys *keys, int64_t pos0, int m,
                         float *out, int64_t out_row_ld, int64_t out_seq_ld);

/* token_shift.c's PreShiftToken over a chunk: h, out [batch * m][dim] at
 * positions pos0 .. pos0 + m - 1; hist [batch][fmap + 1][hist_cols] the
 * ring (tf_shift_ring / tf_shift_cols), read and updated as the CPU does. */
dalle_status cuda_token_shift(cuda_ops *c, float *hist, int64_t hist_cols, const float *h,
                              float *out, int batch, int m, int64_t dim, int64_t pos0,
                              int text_len, int fmap);

/* --- the transformer's embedding, logits mask and guidance --------------- */
/* The embedding of a chunk (lib/backend_cpu.c's embed): x [batch * m][dim],
 * row (b, i) at position pos0 + i from the id ids[b * m + i] (device
 * memory, already checked): a row of text_emb ([text ids][dim]) below
 * text_len, of image_emb ([image ids][dim]) after, each table an ops_weight
 * of device pointers of its own dtype (float32, f16, bf16 or int8 + scales,
 * widened as the CPU widens them); with `positions` (rotary
 * off) + text_pos [text_len][dim], or + (axial_rows [fmap][dim] row part +
 * axial_cols [fmap][dim] column part); `stable`: v * 0.1 + v * 0.9. */
dalle_status cuda_embed(cuda_ops *c, float *x, const int32_t *ids, int batch, int m, int64_t dim,
                        int64_t pos0, int text_len, int fmap, const ops_weight *text_emb,
                        const ops_weight *image_emb, int positions, const float *text_pos,
                        const float *axial_rows, const float *axial_cols, int stable);

/* x[r * ld + col0 + j] = value for r < rows, j < n (the logits mask). */
dalle_status cuda_fill(cuda_ops *c, float *x, int64_t rows, int64_t ld, int64_t col0, int64_t n,
                       float value);

/* Classifier-free guidance, as lib/backend_cpu.c: cond[r * ld + i] =
 * uncond[..] + (cond[..] - uncond[..]) * scale for r < rows, i < n. */
dalle_status cuda_guidance(cuda_ops *c, float *cond, const float *uncond, int64_t rows,
                           int64_t ld, int64_t n, float scale);

/* --- sampling ------------------------------------------------------------ */
/* sampler_pick (lib/sampler.c) for `rows` rows at once: row r is
 * logits + r * ld [0 .. n), its noise rng_gumbel(seed, stream0 + r,
 * counter, id); k as the sampler's (s->k), temperature > 0. The ids go
 * to ids_dev[r] (device memory); the same ids as the CPU for the same
 * seed, but for a score tie within the last bits of the noise (the GPU's
 * log is within 1 ulp of glibc's). */
dalle_status cuda_sample_topk(cuda_ops *c, const float *logits, int64_t ld, int rows, int n,
                              int k, float temperature, uint64_t seed, uint64_t stream0,
                              uint64_t counter, int32_t *ids_dev);

/* The RNG of lib/rng.c on the device, for its test: bits[i] =
 * rng_u64(seed, stream, counter, lane0 + i), gumbel[i] = rng_gumbel(...).
 * Either output may be NULL. */
dalle_status cuda_rng_fill(cuda_ops *c, uint64_t seed, uint64_t stream, uint64_t counter,
                           uint64_t lane0, int64_t n, uint64_t *bits, double *gumbel);

/* --- the VAEs' image operations (lib/conv.h; ops_cuda_conv.cu) ------------
 * One image [c][h][w] at a time, as lib/conv.c. Convolutions are im2col +
 * cuBLAS SGEMM over the same tiles of output rows as the CPU (col: scratch
 * of col_floats >= conv2d_col_need / conv_transpose2d_col_need); the
 * transposed convolution's col2im adds the taps of each output pixel in the
 * CPU's order. GroupNorm sums in double as the CPU. The elementwise ones,
 * the look-ups, |z|² and the argmax give the CPU's bits (expf aside). */
dalle_status cuda_conv2d(cuda_ops *c, const conv_geom *g, const float *x, int h, int w,
                         const float *wt, const float *bias, float *y, float *col,
                         int64_t col_floats);
/* nn.ConvTranspose2d of g->cin → g->cout, kernel g->k, stride g->stride,
 * padding g->pad_top on every side */
dalle_status cuda_conv_transpose2d(cuda_ops *c, const conv_geom *g, const float *x, int h, int w,
                                   const float *wt, const float *bias, float *y, float *col,
                                   int64_t col_floats);
dalle_status cuda_relu(cuda_ops *c, const float *x, float *y, int64_t n);
/* y = x + scale · y */
dalle_status cuda_residual(cuda_ops *c, const float *x, float *y, float scale, int64_t n);
dalle_status cuda_group_norm(cuda_ops *c, const float *x, int ch, int64_t hw, int groups,
                             float eps, const float *gain, const float *bias, int swish, float *y);
/* 2×2 max (max ≠ 0) / average pooling; nearest 2× upsampling */
dalle_status cuda_pool2(cuda_ops *c, const float *x, int ch, int h, int w, int max, float *y);
dalle_status cuda_upsample2(cuda_ops *c, const float *x, int ch, int h, int w, float *y);
/* conv_gather_ids; ids device memory, in range */
dalle_status cuda_gather_ids(cuda_ops *c, const float *table, int64_t id_stride,
                             int64_t c_stride, const float *bias, const int32_t *ids, int64_t n,
                             int channels, float *x);
/* conv_map_pixels of [3][n] */
dalle_status cuda_pixel_map(cuda_ops *c, const conv_map *m, const float *x, int64_t n, float *y);
/* conv_vq_scores: |z|² (zz, n floats of scratch), one product, the rest */
dalle_status cuda_vq_scores(cuda_ops *c, const float *z, int dim, int64_t n,
                            const float *codebook, const float *code_sq, int k, float *zz,
                            float *scores);
/* conv_argmax_channels; ids device memory */
dalle_status cuda_argmax_channels(cuda_ops *c, const float *scores, int t, int64_t n,
                                  int32_t *ids);
/* --- CLIP's operations (lib/backend_ops.h's CLIP section; the CPU's are
 * lib/clip_backend.c) ------------------------------------------------------ */
/* out[r] = table[ids[r]], rows of dim floats; ids device memory, checked. */
dalle_status cuda_gather_rows(cuda_ops *c, const float *table, const int32_t *ids, int64_t rows,
                              int64_t dim, float *out);
/* A stride = kernel convolution's input as rows (backend_ops.h's patches):
 * images [n][3][size][size] -> out [n][(size / patch)²][3 patch²], values
 * in (channel, y, x) order, or (y, x, channel) with channels_last. */
dalle_status cuda_patches(cuda_ops *c, const float *images, int n, int size, int patch,
                          int channels_last, float *out);
/* CLIP's self-attention (backend_ops.h's clip_attention) over qkv [batch *
 * n][3 * heads * dim_head], one block per query: q times scale (qkv is
 * only read), the keys j with key_mask[b][j] != 0 (device memory; NULL:
 * all) and, causal, j <= i, into att [batch * n][heads * dim_head]. The
 * scores live in shared memory: n + dim_head <= 12 032. */
dalle_status cuda_clip_attend(cuda_ops *c, const float *qkv, int batch, int n, int heads,
                              int64_t dim_head, const uint8_t *key_mask, int causal, float scale,
                              float *att);
/* out[b][j] = mean over rows i of x[b] ([batch][n][dim]) with mask[b][i]
 * != 0 (device memory; NULL: all), summed in double in row order. */
dalle_status cuda_mean_rows(cuda_ops *c, const float *x, int batch, int n, int64_t dim,
                            const uint8_t *mask, float *out);
/* Each row of x [rows][dim] divided by max(its L2 norm, 1e-12). */
dalle_status cuda_l2_normalize(cuda_ops *c, float *x, int64_t rows, int64_t dim);
/* out[i * ld + j] = scale · <img[i], txt[j]>, the dot in double in index
 * order; scale_first: (scale · img[i]) · txt[j] (OpenAI), else the dot
 * times scale (DALLE-pytorch). */
dalle_status cuda_clip_scores(cuda_ops *c, const float *img, int n_img, const float *txt,
                              int n_txt, int64_t dim, float scale, int scale_first, float *out,
                              int64_t ld);
/* --- end of CLIP's operations --- */

#ifdef __cplusplus
}
#endif

#endif
