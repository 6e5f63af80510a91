/* cuemu's cuBLAS: the six entries lib/cuda/ops_cuda.cu resolves with
 * dlsym, built as libcublas.so.13 in the build's tests/cuemu/ folder (the
 * cuemu tests put it first on LD_LIBRARY_PATH).
 *
 * cublasSgemm_v2 checks its arguments as cuBLAS documents them
 * (CUBLAS_STATUS_INVALID_VALUE for a negative size, a leading dimension
 * below its minimum, an unknown operation), checks that each matrix lies in
 * device memory as far as its shape and leading dimension reach, then
 * computes the column-major product with OpenBLAS. With
 * CUBLAS_TF32_TENSOR_OP_MATH it rounds A and B to TF32 (10 fraction bits)
 * first, as tensor cores would; otherwise it is FP32. */
#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct CUstream_st *cudaStream_t;
int cuemu_is_device(const void *ptr, size_t bytes);
int cuemu_is_stream(cudaStream_t stream);
void cuemu_device_work_begin(void);
void cuemu_device_work_end(void);

enum {
    STATUS_SUCCESS = 0,
    STATUS_NOT_INITIALIZED = 1,
    STATUS_ALLOC_FAILED = 3,
    STATUS_INVALID_VALUE = 7,
    STATUS_EXECUTION_FAILED = 13,
};
enum { OP_N = 0, OP_T = 1, OP_C = 2 };
enum { DEFAULT_MATH = 0, TENSOR_OP_MATH = 1, PEDANTIC_MATH = 2, TF32_TENSOR_OP_MATH = 3 };
#define DISALLOW_REDUCED_PRECISION_REDUCTION 16

#define MAGIC 0x6375626cu /* "cubl" */

typedef struct cublasContext {
    uint32_t magic;
    cudaStream_t stream;
    int math_mode;
} *cublasHandle_t;

static int bad(const char *what, const char *why)
{
    fprintf(stderr, "cuemu cuBLAS: %s: %s -> CUBLAS_STATUS_INVALID_VALUE\n", what, why);
    return STATUS_INVALID_VALUE;
}

int cublasCreate_v2(cublasHandle_t *handle)
{
    if (!handle)
        return STATUS_INVALID_VALUE;
    cublasHandle_t h = calloc(1, sizeof *h);
    if (!h)
        return STATUS_ALLOC_FAILED;
    h->magic = MAGIC;
    *handle = h;
    return STATUS_SUCCESS;
}

static int live(cublasHandle_t h) { return h && h->magic == MAGIC; }

int cublasDestroy_v2(cublasHandle_t h)
{
    if (!live(h))
        return STATUS_NOT_INITIALIZED;
    h->magic = 0;
    free(h);
    return STATUS_SUCCESS;
}

int cublasSetStream_v2(cublasHandle_t h, cudaStream_t stream)
{
    if (!live(h))
        return STATUS_NOT_INITIALIZED;
    if (!cuemu_is_stream(stream))
        return bad("cublasSetStream_v2", "not a live stream");
    h->stream = stream;
    return STATUS_SUCCESS;
}

int cublasSetMathMode(cublasHandle_t h, int mode)
{
    if (!live(h))
        return STATUS_NOT_INITIALIZED;
    const int base = mode & ~DISALLOW_REDUCED_PRECISION_REDUCTION;
    if (base < DEFAULT_MATH || base > TF32_TENSOR_OP_MATH)
        return bad("cublasSetMathMode", "unknown mode");
    h->math_mode = base;
    return STATUS_SUCCESS;
}

int cublasSetWorkspace_v2(cublasHandle_t h, void *workspace, size_t bytes)
{
    if (!live(h))
        return STATUS_NOT_INITIALIZED;
    if (bytes && (!workspace || !cuemu_is_device(workspace, bytes)))
        return bad("cublasSetWorkspace_v2", "the workspace is not device memory of that size");
    if ((uintptr_t)workspace % 256)
        return bad("cublasSetWorkspace_v2", "the workspace is not 256-byte aligned");
    return STATUS_SUCCESS;
}

/* A column-major rows × cols matrix with leading dimension ld, in device
 * memory as far as its last element. */
static int in_device(const float *p, int rows, int cols, int ld)
{
    if (rows == 0 || cols == 0)
        return 1;
    const size_t floats = (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
    return p && cuemu_is_device(p, floats * sizeof(float));
}

/* x rounded to TF32: 10 fraction bits, to nearest, ties away (cvt.rna). */
static float tf32(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) != 0x7f800000u) /* finite */
        u = (u + 0x1000u) & ~0x1fffu;
    memcpy(&x, &u, 4);
    return x;
}

static float *tf32_copy(const float *p, int rows, int cols, int ld)
{
    float *q = malloc((size_t)ld * (size_t)cols * sizeof(float) + sizeof(float));
    if (!q)
        return NULL;
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++)
            q[(size_t)c * ld + r] = tf32(p[(size_t)c * ld + r]);
    return q;
}

int cublasSgemm_v2(cublasHandle_t h, int transa, int transb, int m, int n, int k,
                   const float *alpha, const float *A, int lda, const float *B, int ldb,
                   const float *beta, float *C, int ldc)
{
    if (!live(h))
        return STATUS_NOT_INITIALIZED;
    if (transa < OP_N || transa > OP_C || transb < OP_N || transb > OP_C)
        return bad("cublasSgemm_v2", "unknown operation");
    if (m < 0 || n < 0 || k < 0)
        return bad("cublasSgemm_v2", "a negative size");
    const int a_rows = transa == OP_N ? m : k, a_cols = transa == OP_N ? k : m;
    const int b_rows = transb == OP_N ? k : n, b_cols = transb == OP_N ? n : k;
    if (lda < (a_rows > 1 ? a_rows : 1))
        return bad("cublasSgemm_v2", "lda below the rows of A");
    if (ldb < (b_rows > 1 ? b_rows : 1))
        return bad("cublasSgemm_v2", "ldb below the rows of B");
    if (ldc < (m > 1 ? m : 1))
        return bad("cublasSgemm_v2", "ldc below m");
    if (!alpha || !beta)
        return bad("cublasSgemm_v2", "alpha or beta is NULL");
    if (m == 0 || n == 0)
        return STATUS_SUCCESS;
    if (!in_device(C, m, n, ldc) || (k > 0 && (!in_device(A, a_rows, a_cols, lda) ||
                                               !in_device(B, b_rows, b_cols, ldb)))) {
        fprintf(stderr, "cuemu cuBLAS: cublasSgemm_v2(m %d, n %d, k %d, lda %d, ldb %d, ldc %d): "
                "a matrix is not device memory or runs past its allocation\n",
                m, n, k, lda, ldb, ldc);
        return STATUS_EXECUTION_FAILED;
    }
    int status = STATUS_SUCCESS;
    cuemu_device_work_begin();
    if (k == 0) { /* C = beta C, as cuBLAS */
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                C[(size_t)j * ldc + i] = *beta == 0.0f ? 0.0f : *beta * C[(size_t)j * ldc + i];
    } else {
        const float *a = A, *b = B;
        float *ta = NULL, *tb = NULL;
        if (h->math_mode == TF32_TENSOR_OP_MATH) {
            ta = tf32_copy(A, a_rows, a_cols, lda);
            tb = tf32_copy(B, b_rows, b_cols, ldb);
            a = ta;
            b = tb;
        }
        if (a && b) {
            if (*beta == 0.0f) /* cuBLAS does not read C when beta is 0 (it may be NaN) */
                for (int j = 0; j < n; j++)
                    memset(C + (size_t)j * ldc, 0, (size_t)m * sizeof(float));
            cblas_sgemm(CblasColMajor, transa == OP_N ? CblasNoTrans : CblasTrans,
                        transb == OP_N ? CblasNoTrans : CblasTrans, m, n, k, *alpha, a, lda, b,
                        ldb, *beta, C, ldc);
        } else {
            status = STATUS_ALLOC_FAILED;
        }
        free(ta);
        free(tb);
    }
    cuemu_device_work_end();
    return status;
}
