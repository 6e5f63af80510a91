/* The matrix products of lib/ops.h: single-threaded OpenBLAS calls on
 * blocks of a fixed partition, shared out by the context's thread pool.
 *
 * Why a fixed partition: OpenBLAS's result for an element depends on the
 * call it is computed in (which micro-kernel, or which tail kernel, covers
 * it, and for a threaded call how its threads split the matrix), so the
 * same product differs in the last bits between 1 and 2 OpenBLAS threads.
 * Here the blocks are chosen from the shape alone, each block is one
 * single-threaded call with the same arguments whichever thread runs it,
 * and so every element comes out the same for any number of threads.
 * docs/threads.md has the details. */
#include <cblas.h>

#include "ops.h"
#include "threadpool.h"

/* Products of fewer multiply-adds run as one call: below that a block
 * would cost more in hand-off than it gains. GEMV is memory-bound, so it is
 * worth splitting much earlier (256 KiB of weights). */
#define GEMM_SPLIT_MIN ((int64_t)1 << 20)
#define GEMV_SPLIT_MIN ((int64_t)1 << 16)
/* A block keeps at least this many multiply-adds (~10 µs of one core),
 * and a split side at least BLOCK_MIN rows or columns: every block packs
 * its slices of A and B again, and below ~64 that copying starts to show
 * next to the arithmetic. */
#define GEMM_BLOCK_WORK ((int64_t)1 << 18)
#define GEMV_BLOCK_WORK ((int64_t)1 << 15)
#define BLOCK_MIN 64
/* Block sides are multiples of this: OpenBLAS's kernels handle 4 to 16
 * rows or columns at a time, so only a product's last block has a tail. */
#define BLOCK_ALIGN 16
/* A large product is cut into about this many blocks: enough to balance
 * 16 threads, few enough that each block stays large. */
#define TARGET_BLOCKS 32

/* OpenBLAS must not split our calls with its own threads (that would bring
 * the thread-count dependence back), so its count is 1. The setting is
 * process-wide; 1 is what every libdalle caller wants, and it is checked
 * again on each product in case the host program changed it. */
static void blas_serial(void)
{
#ifdef OPENBLAS_VERSION
    if (openblas_get_num_threads() != 1)
        openblas_set_num_threads(1);
#endif
}

static int64_t blocks_of(int64_t len, int64_t blk) { return (len + blk - 1) / blk; }

static int64_t half_of(int64_t blk)
{
    return ((blk + 1) / 2 + BLOCK_ALIGN - 1) / BLOCK_ALIGN * BLOCK_ALIGN;
}

/* The block sides *mb x *nb of an m x n x k product: start from the whole
 * product and halve the longer side (n on a tie) while there are fewer than
 * TARGET_BLOCKS blocks, the halves keep BLOCK_MIN and a block keeps
 * block_work. A function of the shape alone: this is what makes the
 * result independent of the thread count. */
static void plan(int64_t m, int64_t n, int64_t k, int64_t split_min, int64_t block_work,
                 int64_t *mb, int64_t *nb)
{
    *mb = m;
    *nb = n;
    if (m * n * k < split_min)
        return;
    while (blocks_of(m, *mb) * blocks_of(n, *nb) < TARGET_BLOCKS) {
        int split_n = *nb >= *mb;
        int64_t cur = split_n ? *nb : *mb;
        int64_t half = half_of(cur), other = split_n ? *mb : *nb;
        if (half < BLOCK_MIN || half >= cur || half * other * k < block_work) {
            /* the longer side cannot be halved: try the shorter one */
            split_n = !split_n;
            cur = split_n ? *nb : *mb;
            half = half_of(cur);
            other = split_n ? *mb : *nb;
            if (half < BLOCK_MIN || half >= cur || half * other * k < block_work)
                return;
        }
        *(split_n ? nb : mb) = half;
    }
}

/* One product, its partition and (for ops_linear) its bias. */
typedef struct gemm_job {
    int ta, tb, gemv;
    int64_t m, n, k, mb, nb; /* blocks of mb rows x nb columns of C */
    float alpha, beta;
    const float *a, *b, *bias;
    int64_t lda, ldb, ldc;
    float *c;
} gemm_job;

static void add_bias(const gemm_job *j, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    for (int64_t r = i0; r < i1; r++) {
        float *cr = j->c + r * j->ldc;
        for (int64_t c = j0; c < j1; c++)
            cr[c] += j->bias[c];
    }
}

/* Block t: rows [i0, i1) x columns [j0, j1) of C, row of blocks first. */
static void gemm_block(void *vp, int64_t t)
{
    const gemm_job *j = vp;
    const int64_t per_row = blocks_of(j->n, j->nb);
    const int64_t i0 = t / per_row * j->mb, j0 = t % per_row * j->nb;
    const int64_t i1 = i0 + j->mb < j->m ? i0 + j->mb : j->m;
    const int64_t j1 = j0 + j->nb < j->n ? j0 + j->nb : j->n;
    if (j->gemv) {
        /* one row of x: y[j0 .. j1) = w[j0 .. j1) · x, streaming the
         * weights once (GEMM would first copy them into packed panels) */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(j1 - j0), (int)j->k, j->alpha,
                    j->b + j0 * j->ldb, (int)j->ldb, j->a, 1, j->beta, j->c + j0, 1);
    } else {
        const float *a = j->a + (j->ta ? i0 : i0 * j->lda);
        const float *b = j->b + (j->tb ? j0 * j->ldb : j0);
        cblas_sgemm(CblasRowMajor, j->ta ? CblasTrans : CblasNoTrans,
                    j->tb ? CblasTrans : CblasNoTrans, (int)(i1 - i0), (int)(j1 - j0), (int)j->k,
                    j->alpha, a, (int)j->lda, b, (int)j->ldb, j->beta,
                    j->c + i0 * j->ldc + j0, (int)j->ldc);
    }
    if (j->bias)
        add_bias(j, i0, i1, j0, j1);
}

/* Partition j (its shape only) and run its blocks on the pool. */
static void run_job(tpool *pool, gemm_job *j)
{
    blas_serial();
    if (j->gemv)  /* one row: split the weights' rows (C's columns) only */
        plan(1, j->n, j->k, GEMV_SPLIT_MIN, GEMV_BLOCK_WORK, &j->mb, &j->nb);
    else
        plan(j->m, j->n, j->k, GEMM_SPLIT_MIN, GEMM_BLOCK_WORK, &j->mb, &j->nb);
    tpool_run(pool, blocks_of(j->m, j->mb) * blocks_of(j->n, j->nb), gemm_block, j);
}

void ops_gemm(tpool *pool, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
              float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
              float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    gemm_job j = {.ta = trans_a != 0, .tb = trans_b != 0, .m = m, .n = n, .k = k,
                  .alpha = alpha, .beta = beta, .a = a, .b = b, .lda = lda, .ldb = ldb,
                  .ldc = ldc, .c = c};
    run_job(pool, &j);
}

void ops_linear_pool(tpool *pool, const float *x, int64_t rows, int64_t in, const float *w,
                     const float *b, int64_t out, float *y, int64_t ldy)
{
    if (rows <= 0 || out <= 0)
        return;
    /* a few rows (a generation step): lib/ops_few_rows.c */
    if (ops_linear_few(pool, x, rows, in, w, b, out, y, ldy))
        return;
    /* y = x · wᵀ: w is [out][in] row-major, i.e. the transposed operand */
    gemm_job j = {.ta = 0, .tb = 1, .gemv = rows == 1, .m = rows, .n = out, .k = in,
                  .alpha = 1.0f, .beta = 0.0f, .a = x, .b = w, .bias = b, .lda = in, .ldb = in,
                  .ldc = ldy, .c = y};
    run_job(pool, &j);
}

void ops_linear(const float *x, int64_t rows, int64_t in, const float *w, const float *b,
                int64_t out, float *y, int64_t ldy)
{
    ops_linear_pool(NULL, x, rows, in, w, b, out, y, ldy);
}
