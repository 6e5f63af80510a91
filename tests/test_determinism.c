/* Bit-identical results for any thread count (docs/threads.md).
 *
 *   test_determinism gemm
 *       ops_gemm / ops_linear_pool against a double-precision triple loop,
 *       and the same bytes with 1, 2, 3, 4 and 7 threads (and no pool) on
 *       shapes with awkward remainders; then prints (never asserts) the
 *       time of a 1024³ SGEMM: our helper on 1 and 2 threads, OpenBLAS
 *       alone on 2 threads.
 *
 *   test_determinism golden DIR dalle_full vae_resblocks openai_dvae_64 clip
 *       dalle_logits, dalle_sample (max_batch 1 and 8), dalle_decode (and
 *       its PNG file), dalle_encode and clip_score / clip_encode_* with
 *       n_threads = 1, 2, 3, 4: the same bytes (memcmp). Skips (77) without
 *       the bundles. Then dalle_sample's prefix in tiles of a few positions:
 *       the same tokens as in one chunk.
 */
#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "dalle/dalle.h"
#include "ops.h"
#include "threadpool.h"
#include "transformer.h" /* transformer_sample_prefix_tile */

static const int thread_counts[] = {1, 2, 3, 4};
#define N_COUNTS 4

static uint64_t rng_state = 0x9E3779B97F4A7C15u;

static uint32_t next_u32(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

static void fill(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(next_u32() % 20001) / 10000.0f - 1.0f;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the GEMM helper -------------------------------------------------------- */

typedef struct shape {
    int ta, tb;
    int64_t m, n, k;
    float alpha, beta;
} shape;

/* C = alpha op(A) op(B) + beta C in double, row-major. */
static void ref_gemm(const shape *s, const float *a, const float *b, const float *c0,
                     double *c)
{
    const int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    for (int64_t i = 0; i < s->m; i++)
        for (int64_t j = 0; j < s->n; j++) {
            double acc = 0.0;
            for (int64_t p = 0; p < s->k; p++) {
                double av = s->ta ? a[p * lda + i] : a[i * lda + p];
                double bv = s->tb ? b[j * ldb + p] : b[p * ldb + j];
                acc += av * bv;
            }
            c[i * s->n + j] = s->alpha * acc + s->beta * (double)c0[i * s->n + j];
        }
}

static void test_gemm_shape(const shape *s)
{
    const int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n;
    const int64_t na = s->m * s->k, nb = s->k * s->n, nc = s->m * s->n;
    float *a = malloc(sizeof(float) * na), *b = malloc(sizeof(float) * nb);
    float *c0 = malloc(sizeof(float) * nc), *c = malloc(sizeof(float) * nc);
    float *first = malloc(sizeof(float) * nc);
    double *ref = malloc(sizeof(double) * nc);
    fill(a, na);
    fill(b, nb);
    fill(c0, nc);
    ref_gemm(s, a, b, c0, ref);
    /* no pool, then pools of 1, 2, 3, 4 and 7 threads */
    const int counts[] = {0, 1, 2, 3, 4, 7};
    for (int t = 0; t < 6; t++) {
        tpool *pool = NULL;
        if (counts[t] && tpool_create(counts[t], &pool) != DALLE_OK) {
            CHECK(0, "tpool_create(%d)", counts[t]);
            continue;
        }
        memcpy(c, c0, sizeof(float) * nc);
        ops_gemm(pool, s->ta, s->tb, s->m, s->n, s->k, s->alpha, a, lda, b, ldb, s->beta, c,
                 s->n);
        if (t == 0) {
            /* |error| against the double result, relative to the norm of
             * the products summed (float accumulation of k terms) */
            double worst = 0.0;
            for (int64_t i = 0; i < nc; i++) {
                double e = fabs(c[i] - ref[i]) / (sqrt((double)s->k) + fabs(ref[i]));
                if (e > worst)
                    worst = e;
            }
            CHECK(worst < 1e-5, "ops_gemm %c%c %lldx%lldx%lld vs double loops: worst %.2e",
                  s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', (long long)s->m, (long long)s->n,
                  (long long)s->k, worst);
            memcpy(first, c, sizeof(float) * nc);
        } else {
            CHECK(!memcmp(c, first, sizeof(float) * nc),
                  "ops_gemm %c%c %lldx%lldx%lld: %d threads, the same bytes as no pool",
                  s->ta ? 'T' : 'N', s->tb ? 'T' : 'N', (long long)s->m, (long long)s->n,
                  (long long)s->k, tpool_threads(pool));
        }
        tpool_free(pool);
    }
    free(a);
    free(b);
    free(c0);
    free(c);
    free(first);
    free(ref);
}

/* ops_linear_pool: the GEMV path (one row) and the GEMM path, with bias and
 * a wider output row (ldy > out). */
static void test_linear(int64_t rows, int64_t in, int64_t out)
{
    const int64_t ldy = out + 3;
    float *x = malloc(sizeof(float) * rows * in), *w = malloc(sizeof(float) * out * in);
    float *bias = malloc(sizeof(float) * out);
    float *y = malloc(sizeof(float) * rows * ldy), *first = malloc(sizeof(float) * rows * ldy);
    fill(x, rows * in);
    fill(w, out * in);
    fill(bias, out);
    for (int t = 0; t < 5; t++) {
        tpool *pool = NULL;
        if (t && tpool_create(t, &pool) != DALLE_OK)
            continue;
        for (int64_t i = 0; i < rows * ldy; i++)
            y[i] = -7.0f; /* the gap past `out` must stay untouched */
        ops_linear_pool(pool, x, rows, in, w, bias, out, y, ldy);
        if (t == 0) {
            double worst = 0.0;
            int gap_ok = 1;
            for (int64_t r = 0; r < rows; r++) {
                for (int64_t j = 0; j < out; j++) {
                    double acc = bias[j];
                    for (int64_t i = 0; i < in; i++)
                        acc += (double)x[r * in + i] * w[j * in + i];
                    double e = fabs(y[r * ldy + j] - acc) / (sqrt((double)in) + fabs(acc));
                    if (e > worst)
                        worst = e;
                }
                for (int64_t j = out; j < ldy; j++)
                    gap_ok &= y[r * ldy + j] == -7.0f;
            }
            CHECK(worst < 1e-5 && gap_ok,
                  "ops_linear %lld rows x %lld -> %lld vs double loops: worst %.2e%s",
                  (long long)rows, (long long)in, (long long)out, worst,
                  gap_ok ? "" : ", wrote past out");
            memcpy(first, y, sizeof(float) * rows * ldy);
        } else {
            CHECK(!memcmp(y, first, sizeof(float) * rows * ldy),
                  "ops_linear %lld rows x %lld -> %lld: %d threads, the same bytes",
                  (long long)rows, (long long)in, (long long)out, t);
        }
        tpool_free(pool);
    }
    free(x);
    free(w);
    free(bias);
    free(y);
    free(first);
}

static void tpool_count_task(void *arg, int64_t t)
{
    int *hits = arg;
    hits[t]++; /* each task exactly once: no two threads touch one slot */
}

static void test_pool(void)
{
    tpool *pool = NULL;
    CHECK(tpool_create(4, &pool) == DALLE_OK && tpool_threads(pool) == 4,
          "tpool_create(4): 4 threads");
    static int hits[1000];
    int ok = 1;
    for (int rep = 0; rep < 200; rep++) { /* back-to-back jobs, as a generation step */
        int n = 1 + rep * 5;
        memset(hits, 0, sizeof hits);
        tpool_run(pool, n, tpool_count_task, hits);
        for (int i = 0; i < n; i++)
            ok &= hits[i] == 1;
    }
    CHECK(ok, "tpool_run: every task exactly once over 200 jobs of 1 .. 996 tasks");
    tpool_free(pool);
    tpool_free(NULL);
    CHECK(tpool_threads(NULL) == 1, "a NULL pool is the calling thread");
}

static double time_gemm(tpool *pool, int blas_threads, const float *a, const float *b, float *c,
                        int n)
{
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        if (blas_threads) {
            openblas_set_num_threads(blas_threads);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n,
                        0.0f, c, n);
            openblas_set_num_threads(1);
        } else {
            ops_gemm(pool, 0, 0, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        }
        double t = now() - t0;
        if (t < best)
            best = t;
    }
    return best;
}

static void bench_gemm(void)
{
    const int n = 1024;
    float *a = malloc(sizeof(float) * n * n), *b = malloc(sizeof(float) * n * n);
    float *c = malloc(sizeof(float) * n * n);
    fill(a, (int64_t)n * n);
    fill(b, (int64_t)n * n);
    tpool *p1 = NULL, *p2 = NULL;
    tpool_create(1, &p1);
    tpool_create(2, &p2);
    const double flop = 2.0 * n * n * n;
    double t_blas1 = time_gemm(NULL, 1, a, b, c, n);
    double t_blas2 = time_gemm(NULL, 2, a, b, c, n);
    double t1 = time_gemm(p1, 0, a, b, c, n), t2 = time_gemm(p2, 0, a, b, c, n);
    printf("timing 1024x1024x1024 sgemm (best of 5):\n");
    printf("  OpenBLAS alone, 1 thread   %7.2f ms  %6.1f GFLOP/s\n", t_blas1 * 1e3,
           flop / t_blas1 * 1e-9);
    printf("  OpenBLAS alone, 2 threads  %7.2f ms  %6.1f GFLOP/s\n", t_blas2 * 1e3,
           flop / t_blas2 * 1e-9);
    printf("  ops_gemm, 1 thread         %7.2f ms  %6.1f GFLOP/s\n", t1 * 1e3, flop / t1 * 1e-9);
    printf("  ops_gemm, 2 threads        %7.2f ms  %6.1f GFLOP/s\n", t2 * 1e3, flop / t2 * 1e-9);
    tpool_free(p1);
    tpool_free(p2);
    free(a);
    free(b);
    free(c);
}

static int run_gemm_tests(void)
{
    test_pool();
    const shape shapes[] = {
        {0, 0, 1000, 777, 333, 1.0f, 0.0f},  /* the awkward one: split over rows */
        {0, 1, 333, 1000, 777, 1.0f, 0.0f},  /* ops_linear's layout, split over columns */
        {1, 0, 257, 1023, 129, 0.5f, 1.0f},  /* Aᵀ, beta = 1 (conv's bias) */
        {1, 1, 600, 130, 300, 1.0f, -0.5f},  /* both transposed */
        {0, 0, 8, 3001, 512, 1.0f, 0.0f},    /* few rows (a batch of 8 steps) */
        {0, 0, 5, 7, 3, 1.0f, 0.0f},         /* tiny: one call */
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        test_gemm_shape(&shapes[i]);
    test_linear(1, 512, 10000);  /* GEMV, split */
    test_linear(1, 777, 333);    /* GEMV, remainders */
    test_linear(1, 16, 10);      /* GEMV, one call */
    test_linear(37, 300, 1111);  /* GEMM with bias */
    bench_gemm();
    return check_summary();
}

/* ---- the models ---------------------------------------------------------------- */

static dalle_ctx *open_ctx(const char *path, int n_threads, int max_batch)
{
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = n_threads;
    cp.max_batch = max_batch;
    dalle_ctx *ctx = NULL;
    if (dalle_ctx_create(path, &cp, &ctx) != DALLE_OK) {
        CHECK(0, "dalle_ctx_create(%s, %d threads): %s", path, n_threads, dalle_last_error());
        return NULL;
    }
    return ctx;
}

static int read_file(const char *path, unsigned char **data, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    *size = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)*size + 1);
    size_t got = fread(*data, 1, (size_t)*size, f);
    fclose(f);
    return got == (size_t)*size ? 0 : -1;
}

/* Compare `bytes` at `got` with the first thread count's copy in `first`. */
static void same(const char *what, const char *model, int threads, const void *got,
                 void *first, size_t bytes, int is_first)
{
    if (is_first) {
        memcpy(first, got, bytes);
        return;
    }
    CHECK(!memcmp(got, first, bytes), "%s: %s with %d threads: the same %zu bytes as 1 thread",
          model, what, threads, bytes);
}

/* Two contexts with different thread counts at the same time, each in its
 * own thread: neither may disturb the other (no shared thread setting). */
typedef struct logits_job {
    const char *path;
    int n_threads, batch, n_img;
    const int32_t *text, *img;
    float *out;
    int rc;
} logits_job;

static void *logits_thread(void *vp)
{
    logits_job *j = vp;
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = j->n_threads;
    cp.max_batch = 1; /* as the reference: batching changes the GEMM shapes */
    dalle_ctx *ctx = NULL;
    j->rc = dalle_ctx_create(j->path, &cp, &ctx);
    for (int rep = 0; rep < 3 && !j->rc; rep++)
        j->rc = dalle_logits(ctx, j->text, j->img, j->batch, j->n_img, 1.0f, j->out);
    dalle_ctx_free(ctx);
    return NULL;
}

static void test_concurrent(const char *path, const int32_t *text, const int32_t *img, int batch,
                            int n_img, const float *want, size_t n)
{
    logits_job jobs[2];
    pthread_t th[2];
    int started[2];
    for (int i = 0; i < 2; i++) {
        jobs[i] = (logits_job){path, i ? 3 : 1, batch, n_img, text, img,
                               malloc(sizeof(float) * n), -1};
        /* the thread owns jobs[i] until joined: remember here whether it runs */
        started[i] = !pthread_create(&th[i], NULL, logits_thread, &jobs[i]);
    }
    for (int i = 0; i < 2; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        CHECK(jobs[i].rc == DALLE_OK && !memcmp(jobs[i].out, want, sizeof(float) * n),
              "%s: dalle_logits on %d threads while another context runs on %d: the same bytes",
              path, jobs[i].n_threads, jobs[!i].n_threads);
        free(jobs[i].out);
    }
}

/* The transformer: logits (with and without guidance), sampling. */
static void test_dalle(const char *path, const char *tmp)
{
    dalle_ctx *c0 = open_ctx(path, 1, 8);
    if (!c0)
        return;
    const int T = dalle_text_seq_len(c0), S = dalle_image_seq_len(c0);
    const int NT = dalle_num_text_tokens(c0), NI = dalle_num_image_tokens(c0);
    const int V = dalle_total_tokens(c0), size = dalle_image_size(c0);
    const int B = 3, n_img = S / 2, rows = dalle_logits_rows(c0, n_img);
    dalle_ctx_free(c0);
    int32_t *text = malloc(sizeof(int32_t) * B * T), *img = malloc(sizeof(int32_t) * B * S);
    for (int i = 0; i < B * T; i++)
        text[i] = i % T < T - 2 ? 1 + (int32_t)(next_u32() % (uint32_t)(NT - 1)) : 0;
    for (int i = 0; i < B * S; i++)
        img[i] = (int32_t)(next_u32() % (uint32_t)NI);
    const size_t n_logits = (size_t)B * rows * V, n_px = (size_t)B * 3 * size * size;
    float *logits = malloc(sizeof(float) * n_logits), *logits1 = malloc(sizeof(float) * n_logits);
    float *guided = malloc(sizeof(float) * n_logits), *guided1 = malloc(sizeof(float) * n_logits);
    int32_t *tok = malloc(sizeof(int32_t) * B * S), *tok1 = malloc(sizeof(int32_t) * B * S);
    int32_t *ids = malloc(sizeof(int32_t) * B * S), *ids1 = malloc(sizeof(int32_t) * B * S);
    float *px = malloc(sizeof(float) * n_px), *px1 = malloc(sizeof(float) * n_px);
    unsigned char *png1 = NULL;
    long png1_size = 0;
    char png_path[4096];
    snprintf(png_path, sizeof png_path, "%s/determinism.png", tmp);

    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 1234;
    for (int t = 0; t < N_COUNTS; t++) {
        const int nt = thread_counts[t], is_first = t == 0;
        for (int mb = 0; mb < 2; mb++) {
            const int max_batch = mb ? 8 : 1;
            dalle_ctx *ctx = open_ctx(path, nt, max_batch);
            if (!ctx)
                continue;
            int ok = dalle_sample(ctx, text, B, &sp, tok) == DALLE_OK;
            CHECK(ok, "dalle_sample, %d threads, max_batch %d", nt, max_batch);
            /* the reference is 1 thread with max_batch 1 */
            if (ok)
                same(mb ? "sampled tokens, max_batch 8" : "sampled tokens, max_batch 1", path,
                     nt, tok, tok1, sizeof(int32_t) * B * S, is_first && mb == 0);
            if (mb == 1) {
                dalle_ctx_free(ctx);
                continue;
            }
            ok = dalle_logits(ctx, text, img, B, n_img, 1.0f, logits) == DALLE_OK &&
                 dalle_logits(ctx, text, img, B, n_img, 3.0f, guided) == DALLE_OK;
            CHECK(ok, "dalle_logits, %d threads", nt);
            if (ok) {
                same("dalle_logits", path, nt, logits, logits1, sizeof(float) * n_logits,
                     is_first);
                same("dalle_logits with cond_scale 3", path, nt, guided, guided1,
                     sizeof(float) * n_logits, is_first);
            }
            ok = dalle_decode(ctx, img, B, px) == DALLE_OK;
            CHECK(ok, "dalle_decode, %d threads", nt);
            if (ok) {
                same("dalle_decode pixels", path, nt, px, px1, sizeof(float) * n_px, is_first);
                unsigned char *png = NULL;
                long png_size = 0;
                ok = dalle_write_png(png_path, px, B, size, size) == DALLE_OK &&
                     !read_file(png_path, &png, &png_size);
                CHECK(ok, "dalle_write_png, %d threads", nt);
                if (ok && is_first) {
                    png1 = png;
                    png1_size = png_size;
                    png = NULL;
                } else if (ok) {
                    CHECK(png_size == png1_size && !memcmp(png, png1, (size_t)png_size),
                          "%s: PNG with %d threads: the same %ld bytes as 1 thread", path, nt,
                          png_size);
                }
                free(png);
            }
            ok = dalle_encode(ctx, px1, B, ids) == DALLE_OK;
            CHECK(ok, "dalle_encode, %d threads", nt);
            if (ok)
                same("dalle_encode ids", path, nt, ids, ids1, sizeof(int32_t) * B * S, is_first);
            dalle_ctx_free(ctx);
        }
    }
    remove(png_path);
    test_concurrent(path, text, img, B, n_img, logits1, n_logits);
    free(text);
    free(img);
    free(logits);
    free(logits1);
    free(guided);
    free(guided1);
    free(tok);
    free(tok1);
    free(ids);
    free(ids1);
    free(px);
    free(px1);
    free(png1);
}

/* A VAE-only bundle: decode random ids, encode the result. */
static void test_vae(const char *path)
{
    dalle_ctx *c0 = open_ctx(path, 1, 8);
    if (!c0)
        return;
    const int S = dalle_image_seq_len(c0), NI = dalle_num_image_tokens(c0);
    const int size = dalle_image_size(c0), B = 2;
    dalle_ctx_free(c0);
    const size_t n_px = (size_t)B * 3 * size * size;
    int32_t *img = malloc(sizeof(int32_t) * B * S);
    int32_t *ids = malloc(sizeof(int32_t) * B * S), *ids1 = malloc(sizeof(int32_t) * B * S);
    float *px = malloc(sizeof(float) * n_px), *px1 = malloc(sizeof(float) * n_px);
    for (int i = 0; i < B * S; i++)
        img[i] = (int32_t)(next_u32() % (uint32_t)NI);
    for (int t = 0; t < N_COUNTS; t++) {
        const int nt = thread_counts[t];
        dalle_ctx *ctx = open_ctx(path, nt, 8);
        if (!ctx)
            continue;
        int ok = dalle_decode(ctx, img, B, px) == DALLE_OK;
        CHECK(ok, "%s: dalle_decode, %d threads", path, nt);
        if (ok)
            same("dalle_decode pixels", path, nt, px, px1, sizeof(float) * n_px, t == 0);
        ok = dalle_encode(ctx, px1, B, ids) == DALLE_OK;
        CHECK(ok, "%s: dalle_encode, %d threads", path, nt);
        if (ok)
            same("dalle_encode ids", path, nt, ids, ids1, sizeof(int32_t) * B * S, t == 0);
        dalle_ctx_free(ctx);
    }
    free(img);
    free(ids);
    free(ids1);
    free(px);
    free(px1);
}

static void test_clip(const char *path)
{
    const int B = 3;
    float score1[3];
    float *img_feat1 = NULL, *txt_feat1 = NULL, *images = NULL;
    int32_t *text = NULL;
    int E = 0;
    for (int t = 0; t < N_COUNTS; t++) {
        const int nt = thread_counts[t];
        dalle_ctx_params cp = dalle_ctx_default_params();
        cp.n_threads = nt;
        clip_ctx *ctx = NULL;
        if (clip_ctx_create(path, &cp, &ctx) != DALLE_OK) {
            CHECK(0, "clip_ctx_create(%s, %d threads): %s", path, nt, dalle_last_error());
            continue;
        }
        const int T = clip_text_seq_len(ctx), size = clip_image_size(ctx);
        if (!images) {
            E = clip_embed_dim(ctx);
            images = malloc(sizeof(float) * B * 3 * size * size);
            text = malloc(sizeof(int32_t) * T);
            img_feat1 = malloc(sizeof(float) * B * E);
            txt_feat1 = malloc(sizeof(float) * E);
            for (int64_t i = 0; i < (int64_t)B * 3 * size * size; i++)
                images[i] = (float)(next_u32() % 1001) / 1000.0f;
            for (int i = 0; i < T; i++)
                text[i] = i < T - 3 ? 1 + (int32_t)(next_u32() %
                                                   (uint32_t)(clip_num_text_tokens(ctx) - 1))
                                    : 0;
        }
        float score[3], *img_feat = malloc(sizeof(float) * B * E);
        float *txt_feat = malloc(sizeof(float) * E);
        int ok = clip_score(ctx, text, images, B, score) == DALLE_OK &&
                 clip_encode_image(ctx, images, B, img_feat) == DALLE_OK &&
                 clip_encode_text(ctx, text, 1, txt_feat) == DALLE_OK;
        CHECK(ok, "%s: clip_score / clip_encode_*, %d threads", path, nt);
        if (ok) {
            same("clip_score", path, nt, score, score1, sizeof score, t == 0);
            same("clip_encode_image", path, nt, img_feat, img_feat1, sizeof(float) * B * E,
                 t == 0);
            same("clip_encode_text", path, nt, txt_feat, txt_feat1, sizeof(float) * E, t == 0);
        }
        free(img_feat);
        free(txt_feat);
        clip_ctx_free(ctx);
    }
    free(images);
    free(text);
    free(img_feat1);
    free(txt_feat1);
}

/* dalle_sample's prefix fed in tiles (lib/sample.c, for a long priming):
 * tiles of 3 and 7 positions against the whole prefix at once, primed and
 * guided, max_batch 8 with 1 and 2 threads: the same tokens. (The tiles
 * change the shapes of the prefix's products, not the function: a token
 * could flip only on a near-tie of two Gumbel scores; none does here.) */
static void test_prefix_tiles(const char *path)
{
    enum { B = 3 };
    dalle_ctx *ctx = open_ctx(path, 1, 8);
    if (!ctx)
        return;
    const int T = dalle_text_seq_len(ctx), S = dalle_image_seq_len(ctx);
    const int NT = dalle_num_text_tokens(ctx), NI = dalle_num_image_tokens(ctx);
    const int n_prime = S / 2;
    int32_t *text = calloc((size_t)B * T, sizeof *text), *prime = malloc(sizeof(int32_t) * B * S);
    int32_t *want = malloc(sizeof(int32_t) * B * S), *got = malloc(sizeof(int32_t) * B * S);
    for (int i = 0; i < B * T; i++)
        text[i] = i % T < T / 2 ? 1 + (int32_t)(next_u32() % (uint32_t)(NT - 1)) : 0;
    for (int i = 0; i < B * n_prime; i++)
        prime[i] = (int32_t)(next_u32() % (uint32_t)NI);
    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 77;
    sp.prime = prime;
    sp.n_prime = n_prime;
    sp.cond_scale = 3.0f;
    transformer_sample_prefix_tile(T + 1 + n_prime);
    int ok = dalle_sample(ctx, text, B, &sp, want) == DALLE_OK;
    CHECK(ok, "dalle_sample primed with %d tokens in one prefix chunk", n_prime);
    dalle_ctx_free(ctx);
    const int tiles[] = {3, 7};
    for (int ti = 0; ti < 2 && ok; ti++)
        for (int nt = 1; nt <= 2; nt++) {
            transformer_sample_prefix_tile(tiles[ti]);
            dalle_ctx *c = open_ctx(path, nt, 8);
            const int run = c && dalle_sample(c, text, B, &sp, got) == DALLE_OK;
            CHECK(run && !memcmp(want, got, sizeof(int32_t) * B * S),
                  "prefix in tiles of %d positions, %d threads: the same tokens", tiles[ti], nt);
            dalle_ctx_free(c);
        }
    transformer_sample_prefix_tile(0);
    free(text), free(prime), free(want), free(got);
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "gemm"))
        return run_gemm_tests();
    if (argc < 7 || strcmp(argv[1], "golden"))
        SKIP("no golden bundles (usage: %s golden TMP dalle_full vae_resblocks "
             "openai_dvae_64 clip_dalle_pytorch)",
             argv[0]);
    test_dalle(argv[3], argv[2]);
    test_prefix_tiles(argv[3]);
    test_vae(argv[4]);
    test_vae(argv[5]);
    test_clip(argv[6]);
    return check_summary();
}
