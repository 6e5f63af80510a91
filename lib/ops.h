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
 * wider row. Runs on `pool` as ops_gemm (same bits for any pool). */
void ops_linear_pool(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                     const float *w, const float *b, int64_t out, float *y, int64_t ldy);

/* ops_linear_pool on the calling thread only (the same bits). */
void ops_linear(const float *x, int64_t rows, int64_t in, const float *w, const float *b,
                int64_t out, float *y, int64_t ldy);

/* nn.LayerNorm over the last dimension (biased variance, eps inside the
 * square root). In place allowed (y == x). */
void ops_layer_norm(const float *x, int64_t rows, int64_t dim, const float *gain,
                    const float *bias, float eps, float *y);

/* GEGLU: h is [rows][2 * inner] = [x | gates]; y[r][i] = x * gelu(gates)
 * with the exact (erf) GELU, as F.gelu's default. */
void ops_geglu(const float *h, int64_t rows, int64_t inner, float *y);

/* x[r][i] += y[r][i] * scale[i]: a residual add through LayerScale
 * (scale NULL: plain add). */
void ops_add_scaled(float *x, const float *y, const float *scale, int64_t rows, int64_t dim);

/* DivideMax: each row divided by its own maximum (not the abs maximum). */
void ops_divide_max(float *x, int64_t rows, int64_t dim);

/* Softmax of x[0 .. n) in place (n >= 1). */
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

/* One query attending to the keys listed in spans: k and v hold one vector
 * of dim_head floats per position, position p at k + p * dim_head.
 * out = softmax(q · k_j) · v_j over the listed j (q already scaled).
 * scores: scratch for the number of listed keys. */
void ops_attend(const float *q, const float *k, const float *v, int64_t dim_head,
                const ops_span *spans, int n_spans, float *scores, float *out);

/* QuickGELU in place over x[0 .. n): x * sigmoid(1.702 x), the activation
 * of OpenAI CLIP's MLPs (appended for CLIP; see lib/clip_encoder.c). */
void ops_quick_gelu(float *x, int64_t n);

#endif
