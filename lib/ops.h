/* The tensor operations the models are written against.
 *
 * Every operation takes plain float pointers and sizes, row-major, and never
 * allocates: the caller owns all memory. This is the whole contract a compute
 * backend has to meet; lib/ops_cpu.c is the CPU backend (OpenBLAS for the
 * matrix products, plain C loops for the rest). A GPU backend provides the
 * same functions over device pointers, so model code (lib/transformer.c,
 * lib/attention.c, ...) never calls BLAS or a GPU runtime itself.
 *
 * Determinism: each output element is computed by one fixed sequence of
 * floating-point operations that does not depend on the thread count, so a
 * result is bit-identical for any number of threads. The matrix products
 * get there by running OpenBLAS single-threaded and splitting each product
 * themselves into blocks chosen from its shape alone, which a context's
 * thread pool (lib/threadpool.h) shares out; docs/threads.md explains why
 * that is enough.
 */
#ifndef DALLE_OPS_H
#define DALLE_OPS_H

#include <stdint.h>

#include "half.h"    /* f16 / bf16 -> float32 */
#include "hostdev.h" /* DALLE_HOST_DEVICE: the CUDA kernels call the inline functions below */

struct tpool;

/* C = alpha · op(A) · op(B) + beta · C, row-major, as cblas_sgemm with
 * op(X) = Xᵀ where trans_x is non-zero: C [m][n], op(A) [m][k], op(B)
 * [k][n]. Runs on `pool` (NULL: the calling thread only); the result is the
 * same bits for any pool, a NULL one included. Allocates nothing. */
void ops_gemm(struct tpool *pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc);

/* y[r][j] = sum_i x[r][i] * w[j][i] + b[j] for r < rows, j < out: PyTorch's
 * nn.Linear with w as stored there ([out][in]). b may be NULL. Row r of y
 * starts at y + r * ldy (ldy >= out), so a result can land in part of a
 * wider row. Runs on `pool` as ops_gemm (same bits for any pool); up to
 * OPS_LINEAR_FEW_ROWS rows through the few-row kernel below (each row's
 * bits then independent of the other rows). */
void ops_linear_pool(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                     const float *w, const float *b, int64_t out, float *y, int64_t ldy);

/* ---- the few-row float32 kernel (lib/ops_few_rows.c) ------------------------ */

/* Up to this many rows ops_linear_pool runs its own kernel instead of
 * OpenBLAS (a generation step at batch 1 .. 16): each weight row is read
 * once for all rows; an output element is one fixed sequence of
 * operations that depends on `in` only (8 lanes of fused multiply-adds, a
 * fixed tree, the tail, the bias), so a row of y is the same bits whatever
 * the pool, the number of rows, or the code (AVX2/FMA or plain C). */
#define OPS_LINEAR_FEW_ROWS 16

/* Which code ops_linear_pool uses for few rows. */
enum {
    OPS_FEW_DEFAULT = -2, /* (want only) back to the default choice */
    OPS_FEW_OFF = 0,      /* OpenBLAS, as for more rows */
    OPS_FEW_PLAIN = 1,    /* the plain C kernel (fmaf) */
    OPS_FEW_SIMD = 2      /* the AVX2/FMA kernel (PLAIN where the CPU lacks it) */
};


/* Ask (want = -1) or set the few-row code; returns the code now in use.
 * The default is SIMD where the CPU has AVX2/FMA, else PLAIN where fmaf is
 * an instruction (__FP_FAST_FMAF), else OFF. For tests and the bench
 * (process-wide, not thread-safe against running products). */
int ops_few_rows_mode(int want);

/* y = x · wᵀ + b through the few-row kernel, as ops_linear_pool: returns
 * 0 (and does nothing) when rows > OPS_LINEAR_FEW_ROWS or the mode is
 * OPS_FEW_OFF, else 1. Allocates nothing. */
int ops_linear_few(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                   const float *w, const float *b, int64_t out, float *y, int64_t ldy);

/* ops_linear_pool on the calling thread only (the same bits). */
void ops_linear(const float *x, int64_t rows, int64_t in, const float *w, const float *b,
                int64_t out, float *y, int64_t ldy);

/* nn.LayerNorm over the last dimension (biased variance, eps inside the
 * square root). In place allowed (y == x). */
void ops_layer_norm(const float *x, int64_t rows, int64_t dim, const float *gain,
                    const float *bias, float eps, float *y);

/* GEGLU: h is [rows][2 * inner] = [x | gates]; y[r][i] = x * gelu(gates)
 * with the exact (erf) GELU, as F.gelu's default: gelu rounded to float
 * within ~0.5 ulp of the exact value, then one float product
 * (lib/ops_geglu.c). Every element is computed alone: the same bits for any
 * split of the rows, and for the AVX2 and the plain C code. */
void ops_geglu(const float *h, int64_t rows, int64_t inner, float *y);
/* ops_geglu on `pool`: the elements split into ranges (the same bits). */
void ops_geglu_pool(struct tpool *pool, const float *h, int64_t rows, int64_t inner, float *y);

/* Whether ops_geglu uses the AVX2 code. want < 0: only ask; 0: plain C from
 * now on; 1: AVX2 where the CPU has it (the default). For tests and the
 * bench (process-wide, not thread-safe against running calls). */
int ops_geglu_simd(int want);

/* x[r][i] += y[r][i] * scale[i]: a residual add through LayerScale
 * (scale NULL: plain add). */
void ops_add_scaled(float *x, const float *y, const float *scale, int64_t rows, int64_t dim);

/* DivideMax: each row divided by its own maximum (not the abs maximum). */
void ops_divide_max(float *x, int64_t rows, int64_t dim);

/* Softmax of x[0 .. n) in place (n <= 0: nothing), max-subtracted; lib/
 * ops_attend.c (the attention kernel's softmax: its exp is within 1 ulp of
 * expf, the sum in double in a fixed order; the same bits from the AVX2/FMA
 * and the plain C code). */
void ops_softmax(float *x, int64_t n);

/* Rotary embedding of one head vector t[0 .. n_cols): pairs (t[2i], t[2i+1])
 * rotate by the angle whose cos/sin are cos[2i], sin[2i] (tables repeat each
 * angle twice, as rotary-embedding-torch does). Columns past n_cols are left
 * alone. n_cols is even. */
void ops_rotary(float *t, const float *cos, const float *sin, int64_t n_cols);

/* A set of key positions: start, start + stride, ..., count of them. */
typedef struct ops_span {
    int64_t start;
    int64_t count;
    int64_t stride;
} ops_span;

/* ---- the attention kernel (lib/ops_attend.c) ---------------------------------- */

/* One query attending to the keys listed in spans: k and v hold one vector
 * of dim_head floats per position, position p at k + p * dim_head.
 * out = softmax(q · k_j) · v_j over the listed j (q already scaled); no
 * key listed: zeros. scores: scratch for the number of listed keys (left
 * holding the softmax weights). Every output is one fixed sequence of
 * operations that depends on dim_head and the key list only, the same
 * bits from the AVX2/FMA code and the plain C code; the K and V rows are
 * each streamed once. Generation, CLIP and training all call this. */
void ops_attend(const float *q, const float *k, const float *v, int64_t dim_head,
                const ops_span *spans, int n_spans, float *scores, float *out);

/* ops_attend's first half: scores[j] = its softmax weight of listed key j
 * (the same bits); returns the number of listed keys. For the backward. */
int64_t ops_attend_weights(const float *q, const float *k, int64_t dim_head,
                           const ops_span *spans, int n_spans, float *scores);

/* Whether ops_attend and ops_softmax use the CPU's AVX2/FMA code (the same
 * bits as the plain C code). want < 0: only ask; 0: plain C from now on;
 * 1: the vector code where the CPU has it (the default). For tests and the
 * bench (process-wide, not thread-safe against running calls). */
int ops_attend_simd(int want);

/* QuickGELU in place over x[0 .. n): x * sigmoid(1.702 x), the activation
 * of OpenAI CLIP's MLPs (appended for CLIP; see lib/clip_encoder.c). */
void ops_quick_gelu(float *x, int64_t n);

/* ---- reduced-precision weights (lib/ops_lowp.c, docs/performance.md) -------- */

/* How a weight matrix is stored; the codes are the bundle's dtype codes
 * (DALLE_DTYPE_F32, _F16, _BF16, _I8). */
enum { OPS_W_F32 = 0, OPS_W_F16 = 1, OPS_W_BF16 = 2, OPS_W_I8 = 3 };

/* A weight matrix [out][in] (nn.Linear's layout, row-major) kept as the
 * bundle stores it: float32, IEEE binary16, bfloat16, or int8 with one
 * float32 scale per block of `block` consecutive elements of a row (the
 * element is q * scale, rounded to float32; a row's last block may be
 * shorter). Everything is computed in float32. */
typedef struct ops_weight {
    int dtype;           /* OPS_W_* */
    const void *data;    /* [out][in] elements of dtype */
    const float *scales; /* OPS_W_I8: [out][ops_weight_blocks(in, block)]; else NULL */
    int block;           /* OPS_W_I8: a multiple of 8; else 0 */
} ops_weight;

static inline ops_weight ops_weight_f32(const float *w)
{
    ops_weight r = {OPS_W_F32, w, 0, 0};
    return r;
}

/* Scale blocks of one row of `in` elements. */
static inline DALLE_HOST_DEVICE int64_t ops_weight_blocks(int64_t in, int block)
{
    return (in + block - 1) / block;
}

/* Element i of row `row` of w (rows of `in` elements) as float32: the value
 * every product multiplies with, on the CPU (lib/ops_lowp.c) and the GPU
 * (lib/cuda/ops_cuda.cu); int8 is q * its block's scale, one rounding. */
static inline DALLE_HOST_DEVICE float ops_weight_value(const ops_weight *w, int64_t in,
                                                       int64_t row, int64_t i)
{
    switch (w->dtype) {
    case OPS_W_BF16: return dalle_bf16_value(((const uint16_t *)w->data)[row * in + i]);
    case OPS_W_F16: return dalle_f16_value(((const uint16_t *)w->data)[row * in + i]);
    case OPS_W_I8:
        return (float)((const int8_t *)w->data)[row * in + i] *
               w->scales[row * ops_weight_blocks(in, w->block) + i / w->block];
    default: return ((const float *)w->data)[row * in + i];
    }
}

/* The rows [row0, ...) of w, rows of `in` elements, as a weight of their own. */
ops_weight ops_weight_rows(const ops_weight *w, int64_t in, int64_t row0);

/* Row `row` of w widened to float32 (the values the products use): an
 * embedding look-up. */
void ops_weight_row(const ops_weight *w, int64_t in, int64_t row, float *out);

/* Up to this many rows a reduced-precision product runs as a
 * matrix-vector kernel (a generation step at batch 1 .. 8). */
#define OPS_LINEAR_W_FEW_ROWS 8

/* Floats of scratch one thread needs for the many-row path of
 * ops_linear_w with rows of `in` elements. */
int64_t ops_linear_w_scratch(int64_t in);

/* ops_linear_pool with a typed weight: y[r][j] = sum_i x[r][i] * w[j][i] +
 * b[j]. A float32 weight is exactly ops_linear_pool (the same call, the
 * same bits). A reduced one:
 *   - rows <= OPS_LINEAR_W_FEW_ROWS, or no scratch: a matrix-vector kernel
 *     that widens each weight as it streams it and accumulates in float32
 *     (AVX2/FMA/F16C where the CPU has them, plain C otherwise). Every
 *     element is one fixed sequence of operations that depends on `in`
 *     only: the same bits for any pool, any split and any number of rows;
 *   - more rows: blocks of weight rows are widened into the scratch of the
 *     thread that takes them (`scratch`: `slots` areas of
 *     ops_linear_w_scratch(in) floats each, allocated by the caller once),
 *     then multiplied by ops_gemm on that thread: a fixed partition, the
 *     same bits for any pool.
 * Allocates nothing. */
void ops_linear_w(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                  const ops_weight *w, const float *b, int64_t out, float *y, int64_t ldy,
                  float *scratch, int slots);

/* Whether the reduced-precision kernels use the CPU's AVX2/FMA/F16C code.
 * want < 0: only ask; 0: use plain C from now on; 1: use the vector code
 * where the CPU has it. For tests (process-wide, not thread-safe against
 * running products). */
int ops_lowp_simd(int want);

#endif
