/* Products with reduced-precision weights (ops_linear_w in lib/ops.h):
 * bfloat16, IEEE half and int8 with per-block scales, computed in float32.
 *
 * At batch 1 a generation step is a matrix-vector product per weight
 * matrix: it reads every weight once and does two flops with it, so its
 * speed is the memory bandwidth divided by the bytes per weight. Keeping
 * the weights in 2 (bf16, f16) or ~1.1 (int8 + a float scale per 32)
 * bytes instead of 4 is the whole point, so nothing is widened at load:
 *
 *   few rows    (<= OPS_LINEAR_W_FEW_ROWS, a decode step at batch 1 .. 8)
 *               a matrix-vector kernel widens 8 weights at a time in
 *               registers and accumulates in float32. Each output element
 *               is one fixed sequence of operations: 8 lanes, lane l
 *               summing elements i = l (mod 8) of [0, in8) in order
 *               (in8 = in rounded down to 8), the lanes added pairwise as
 *               ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)), then
 *               the last in - in8 elements one by one, then the bias. That
 *               sequence depends on `in` alone: not on the pool, the task
 *               split, the tile shape or the number of rows.
 *   many rows   (a prompt's prefix, teacher-forced logits) blocks of
 *               LOWP_TILE weight rows are widened into the taking thread's
 *               scratch and multiplied there by ops_gemm (single-threaded
 *               OpenBLAS on a partition fixed by the shape), so this is
 *               as fast as float32 sgemm plus one pass over the weights.
 *
 * The vector code is x86-64 AVX2 + FMA + F16C, compiled with a target
 * attribute and chosen at run time; elsewhere a plain C kernel with the same
 * lane structure (gcc -O3 vectorises it), without fused multiply-adds, so
 * the two differ in the last bits, as OpenBLAS's kernels differ per CPU. */
#include <stdatomic.h>
#include <string.h>

#include "cpu_simd.h"
#include "ops.h"
#include "threadpool.h"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define LOWP_X86 1
#include <immintrin.h>
#else
#define LOWP_X86 0
#endif

/* Weight rows per block of the many-row path: a block is one ops_gemm of
 * rows x LOWP_TILE x in, and 64 columns keep OpenBLAS near full speed
 * (docs/threads.md: BLOCK_MIN). */
#define LOWP_TILE 64
/* The few-row path hands each task at least this many weights (64 KiB of
 * bf16): below that a task costs more in hand-off than it streams. */
#define MV_TASK_WORK ((int64_t)1 << 15)
#define MV_TARGET_TASKS 32
/* How far ahead of the weights being read the few-row kernel prefetches. */
#define MV_PREFETCH 4096

/* ---- which kernels -------------------------------------------------------- */

/* -1: not decided yet; 0: plain C; 1: AVX2/FMA/F16C */
static atomic_int simd_state = -1;

int ops_lowp_simd(int want)
{
    return ops_simd_switch(&simd_state, want, OPS_CPU_AVX2 | OPS_CPU_FMA | OPS_CPU_F16C);
}

/* ---- widening rows ---------------------------------------------------------- */

static void widen_plain(const ops_weight *w, int64_t in, int64_t row, float *out)
{
    if (w->dtype == OPS_W_BF16) {
        const uint16_t *p = (const uint16_t *)w->data + row * in;
        for (int64_t i = 0; i < in; i++)
            out[i] = dalle_bf16_value(p[i]);
    } else if (w->dtype == OPS_W_F16) {
        const uint16_t *p = (const uint16_t *)w->data + row * in;
        for (int64_t i = 0; i < in; i++)
            out[i] = dalle_f16_value(p[i]);
    } else if (w->dtype == OPS_W_I8) {
        const int8_t *p = (const int8_t *)w->data + row * in;
        const float *s = w->scales + row * ops_weight_blocks(in, w->block);
        for (int64_t b0 = 0, k = 0; b0 < in; b0 += w->block, k++) {
            const int64_t b1 = b0 + w->block < in ? b0 + w->block : in;
            for (int64_t i = b0; i < b1; i++)
                out[i] = (float)p[i] * s[k];
        }
    } else {
        memcpy(out, (const float *)w->data + row * in, (size_t)in * sizeof *out);
    }
}

#if LOWP_X86
#define SIMD __attribute__((target("avx2,fma,f16c")))
#define SIMD_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) inline

/* 8 widened weights of a row at element i (scale: the block's, int8). */
static SIMD_INLINE __m256 load8(int dt, const void *row, int64_t i, __m256 scale)
{
    if (dt == OPS_W_BF16) {
        __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    }
    if (dt == OPS_W_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    __m128i q = _mm_loadl_epi64((const __m128i *)((const int8_t *)row + i));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), scale);
}

static SIMD void widen_simd(const ops_weight *w, int64_t in, int64_t row, float *out)
{
    const int dt = w->dtype;
    const int64_t in8 = in & ~(int64_t)7;
    const size_t esz = dt == OPS_W_I8 ? 1 : 2;
    const void *p = (const char *)w->data + (size_t)(row * in) * esz;
    const int64_t seg = dt == OPS_W_I8 ? w->block : (in8 > 0 ? in8 : 1);
    const float *s = dt == OPS_W_I8 ? w->scales + row * ops_weight_blocks(in, w->block) : NULL;
    for (int64_t b0 = 0, k = 0; b0 < in8; b0 += seg, k++) {
        const int64_t b1 = b0 + seg < in8 ? b0 + seg : in8;
        const __m256 sc = _mm256_set1_ps(s ? s[k] : 1.0f);
        for (int64_t i = b0; i < b1; i += 8)
            _mm256_storeu_ps(out + i, load8(dt, p, i, sc));
    }
    for (int64_t i = in8; i < in; i++)
        out[i] = ops_weight_value(w, in, row, i);
}
#endif

ops_weight ops_weight_rows(const ops_weight *w, int64_t in, int64_t row0)
{
    ops_weight r = *w;
    switch (w->dtype) {
    case OPS_W_BF16:
    case OPS_W_F16: r.data = (const uint16_t *)w->data + row0 * in; break;
    case OPS_W_I8:
        r.data = (const int8_t *)w->data + row0 * in;
        r.scales = w->scales + row0 * ops_weight_blocks(in, w->block);
        break;
    default: r.data = (const float *)w->data + row0 * in; break;
    }
    return r;
}

void ops_weight_row(const ops_weight *w, int64_t in, int64_t row, float *out)
{
#if LOWP_X86
    if (w->dtype != OPS_W_F32 && ops_lowp_simd(-1)) {
        widen_simd(w, in, row, out);
        return;
    }
#endif
    widen_plain(w, in, row, out);
}

/* ---- the few-row kernel ---------------------------------------------------- */

typedef struct mv_job {
    const ops_weight *w;
    const float *x, *bias;
    int64_t rows, in, out, ldy, per_task;
    float *y;
} mv_job;

/* Plain C: output elements [j0, j1) of every row. A weight row is widened
 * once per chunk of MV_CHUNK elements and used for all rows. */
#define MV_CHUNK 256
#define MV_MAX_ROWS 8

static void mv_plain(const mv_job *j, int64_t j0, int64_t j1)
{
    const ops_weight *w = j->w;
    const int64_t in = j->in, in8 = in & ~(int64_t)7;
    float wbuf[MV_CHUNK];
    for (int64_t r0 = 0; r0 < j->rows; r0 += MV_MAX_ROWS) {
        const int64_t nr = j->rows - r0 < MV_MAX_ROWS ? j->rows - r0 : MV_MAX_ROWS;
        const float *x = j->x + r0 * in;
        for (int64_t o = j0; o < j1; o++) {
            float acc[MV_MAX_ROWS][8] = {{0}};
            for (int64_t c0 = 0; c0 < in8; c0 += MV_CHUNK) {
                const int64_t c1 = c0 + MV_CHUNK < in8 ? c0 + MV_CHUNK : in8;
                for (int64_t i = c0; i < c1; i++)
                    wbuf[i - c0] = ops_weight_value(w, in, o, i);
                for (int64_t r = 0; r < nr; r++)
                    for (int64_t i = c0; i < c1; i += 8)
                        for (int l = 0; l < 8; l++)
                            acc[r][l] += wbuf[i - c0 + l] * x[r * in + i + l];
            }
            for (int64_t r = 0; r < nr; r++) {
                const float *a = acc[r];
                float s = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
                for (int64_t i = in8; i < in; i++)
                    s += ops_weight_value(w, in, o, i) * x[r * in + i];
                if (j->bias)
                    s += j->bias[o];
                j->y[(r0 + r) * j->ldy + o] = s;
            }
        }
    }
}

#if LOWP_X86
static SIMD_INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

/* JT weight rows [o, o + JT) times R rows of x [r0, r0 + R): JT * R
 * accumulators in registers, each weight widened once. dt, JT and R are
 * constants where this is inlined. */
static SIMD_INLINE void mv_tile(int dt, int JT, int R, const mv_job *j, int64_t o, int64_t r0)
{
    const ops_weight *w = j->w;
    const int64_t in = j->in, in8 = in & ~(int64_t)7;
    const size_t esz = dt == OPS_W_I8 ? 1 : 2;
    const int64_t nblk = dt == OPS_W_I8 ? ops_weight_blocks(in, w->block) : 0;
    const int64_t seg = dt == OPS_W_I8 ? w->block : (in8 > 0 ? in8 : 1);
    const float *x = j->x + r0 * in;
    const void *row[4];
    const float *sc[4];
    __m256 acc[4][4];
    /* an address only (it may lie past the matrix: a prefetch never faults) */
    const uintptr_t pf = (uintptr_t)w->data + (uintptr_t)(o * in) * esz + MV_PREFETCH;
    for (int t = 0; t < JT; t++) {
        row[t] = (const char *)w->data + (size_t)((o + t) * in) * esz;
        sc[t] = dt == OPS_W_I8 ? w->scales + (o + t) * nblk : NULL;
        for (int r = 0; r < R; r++)
            acc[t][r] = _mm256_setzero_ps();
    }
    for (int64_t b0 = 0, k = 0; b0 < in8; b0 += seg, k++) {
        const int64_t b1 = b0 + seg < in8 ? b0 + seg : in8;
        __m256 s[4];
        for (int t = 0; t < JT; t++)
            s[t] = _mm256_set1_ps(dt == OPS_W_I8 ? sc[t][k] : 1.0f);
        for (int64_t i = b0; i < b1; i += 8) {
            /* the tile's bytes are contiguous and consumed at JT * 8
             * elements a step: prefetch that far into what follows, so
             * the next tile streams in while this one is computed (the
             * hardware prefetcher alone ramps up poorly over JT
             * interleaved rows of a few KiB) */
            _mm_prefetch((const char *)(pf + (uintptr_t)i * esz * JT), _MM_HINT_T0);
            __m256 wv[4];
            for (int t = 0; t < JT; t++)
                wv[t] = load8(dt, row[t], i, s[t]);
            for (int r = 0; r < R; r++) {
                const __m256 xv = _mm256_loadu_ps(x + r * in + i);
                for (int t = 0; t < JT; t++)
                    acc[t][r] = _mm256_fmadd_ps(wv[t], xv, acc[t][r]);
            }
        }
    }
    for (int t = 0; t < JT; t++)
        for (int r = 0; r < R; r++) {
            float s = hsum8(acc[t][r]);
            for (int64_t i = in8; i < in; i++)
                s += ops_weight_value(w, in, o + t, i) * x[r * in + i];
            if (j->bias)
                s += j->bias[o + t];
            j->y[(r0 + r) * j->ldy + o + t] = s;
        }
}

/* Output elements [j0, j1) of every row, rows in groups of at most 4. */
static SIMD_INLINE void mv_simd_dt(int dt, const mv_job *j, int64_t j0, int64_t j1)
{
    for (int64_t r0 = 0; r0 < j->rows; r0 += 4) {
        const int R = j->rows - r0 < 4 ? (int)(j->rows - r0) : 4;
        int64_t o = j0;
        switch (R) {
        case 1: for (; o + 4 <= j1; o += 4) mv_tile(dt, 4, 1, j, o, r0); break;
        case 2: for (; o + 4 <= j1; o += 4) mv_tile(dt, 4, 2, j, o, r0); break;
        case 3: for (; o + 2 <= j1; o += 2) mv_tile(dt, 2, 3, j, o, r0); break;
        default: for (; o + 2 <= j1; o += 2) mv_tile(dt, 2, 4, j, o, r0); break;
        }
        for (; o < j1; o++)
            switch (R) {
            case 1: mv_tile(dt, 1, 1, j, o, r0); break;
            case 2: mv_tile(dt, 1, 2, j, o, r0); break;
            case 3: mv_tile(dt, 1, 3, j, o, r0); break;
            default: mv_tile(dt, 1, 4, j, o, r0); break;
            }
    }
}

static SIMD void mv_simd(const mv_job *j, int64_t j0, int64_t j1)
{
    switch (j->w->dtype) {
    case OPS_W_BF16: mv_simd_dt(OPS_W_BF16, j, j0, j1); break;
    case OPS_W_F16: mv_simd_dt(OPS_W_F16, j, j0, j1); break;
    default: mv_simd_dt(OPS_W_I8, j, j0, j1); break;
    }
}
#endif

static void mv_task(void *arg, int64_t t)
{
    const mv_job *j = arg;
    const int64_t j0 = t * j->per_task;
    const int64_t j1 = j0 + j->per_task < j->out ? j0 + j->per_task : j->out;
#if LOWP_X86
    if (ops_lowp_simd(-1)) {
        mv_simd(j, j0, j1);
        return;
    }
#endif
    mv_plain(j, j0, j1);
}

static void linear_few(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                       const ops_weight *w, const float *b, int64_t out, float *y, int64_t ldy)
{
    /* a split of the output columns chosen from the shape (and, as argued
     * above, any split gives the same bits) */
    int64_t per = (out + MV_TARGET_TASKS - 1) / MV_TARGET_TASKS;
    const int64_t min_per = (MV_TASK_WORK + in - 1) / in;
    if (per < min_per)
        per = min_per;
    per = (per + 15) / 16 * 16;
    mv_job j = {.w = w, .x = x, .bias = b, .rows = rows, .in = in, .out = out, .ldy = ldy,
                .per_task = per, .y = y};
    tpool_run(pool, (out + per - 1) / per, mv_task, &j);
}

/* ---- the many-row path -------------------------------------------------------- */

typedef struct tile_job {
    const ops_weight *w;
    const float *x, *bias;
    int64_t rows, in, out, ldy, n_tiles;
    float *y, *scratch;
    atomic_llong next; /* the next tile to take */
} tile_job;

/* Task t is one thread's share: it owns scratch area t and takes tiles
 * until none is left. A tile's result does not depend on who takes it. */
static void tile_task(void *arg, int64_t t)
{
    tile_job *j = arg;
    float *buf = j->scratch + t * ops_linear_w_scratch(j->in);
    for (;;) {
        const int64_t k = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed);
        if (k >= j->n_tiles)
            return;
        const int64_t o0 = k * LOWP_TILE, n = j->out - o0 < LOWP_TILE ? j->out - o0 : LOWP_TILE;
        for (int64_t o = 0; o < n; o++)
            ops_weight_row(j->w, j->in, o0 + o, buf + o * j->in);
        ops_gemm(NULL, 0, 1, j->rows, n, j->in, 1.0f, j->x, j->in, buf, j->in, 0.0f,
                 j->y + o0, j->ldy);
        if (j->bias)
            for (int64_t r = 0; r < j->rows; r++)
                for (int64_t o = 0; o < n; o++)
                    j->y[r * j->ldy + o0 + o] += j->bias[o0 + o];
    }
}

int64_t ops_linear_w_scratch(int64_t in) { return (int64_t)LOWP_TILE * in; }

void ops_linear_w(struct tpool *pool, const float *x, int64_t rows, int64_t in,
                  const ops_weight *w, const float *b, int64_t out, float *y, int64_t ldy,
                  float *scratch, int slots)
{
    if (w->dtype == OPS_W_F32) {
        ops_linear_pool(pool, x, rows, in, (const float *)w->data, b, out, y, ldy);
        return;
    }
    if (rows <= 0 || out <= 0)
        return;
    if (rows <= OPS_LINEAR_W_FEW_ROWS || !scratch || slots < 1) {
        linear_few(pool, x, rows, in, w, b, out, y, ldy);
        return;
    }
    tile_job j = {.w = w, .x = x, .bias = b, .rows = rows, .in = in, .out = out, .ldy = ldy,
                  .n_tiles = (out + LOWP_TILE - 1) / LOWP_TILE, .y = y, .scratch = scratch};
    atomic_init(&j.next, 0);
    int64_t workers = tpool_threads(pool);
    if (workers > slots)
        workers = slots;
    if (workers > j.n_tiles)
        workers = j.n_tiles;
    tpool_run(pool, workers, tile_task, &j);
}
