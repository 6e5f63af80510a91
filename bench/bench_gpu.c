/* Generation on the CUDA backend (issue 9) against the GPU's own ceilings,
 * measured at the start of the same run:
 *
 *   bench_gpu [options] MODEL.dalle ...
 *     --batches LIST  batch sizes, comma-separated (1,8,64)
 *     --tokens N      image tokens per image in each measured window (32)
 *     --repeat R      windows of each kind; the best is kept (3)
 *     --device D      CUDA device index (0)
 *     --copy-mib M    buffer of the bandwidth ceiling (1024 MiB)
 *     --sgemm-n N     size of the matrix-product ceiling (8192)
 *
 * Ceilings (lib/cuda/ops_cuda.h, the operations the model runs on):
 *   bandwidth  cuda_ops_copy of M MiB device to device, best of 10, counting
 *              the bytes read and written (2M per copy), in GB/s;
 *   sgemm      cuda_gemm n × n × n in float32 with TF32 off (the backend's
 *              default), best of 5 after a warm-up, in GFLOP/s.
 * Speeds: bench/window.c's windows (the median step of a window centred on
 * the image's middle token, the best of R), batch × image tokens per step.
 * Rooflines per step of B tokens (bench_token_costs: weights as the GPU
 * keeps them, as stored: 4, 2 or 1 + 4/block bytes an element, plus each
 * sequence's KV cache):
 *   memory  (weight bytes + B × KV bytes) / bandwidth,
 *   FLOPs   B × FLOPs per token / sgemm,
 * roofline tokens/s = B / the larger; the table gives the fraction of each
 * ceiling alone too (bandwidth for batch 1, matrix throughput for large
 * batches: the terms) and names the bound. A VAE decode (batch 1 and
 * the largest batch) and the prefix time of batch 1 are reported beside. */
#include <dalle/dalle.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ceilings.h"
#include "cuda/ops_cuda.h"
#include "window.h"

#define MAX_BATCHES 8

typedef struct gpu_ceilings {
    double copy_gbps, sgemm_gflops;
    char device[384];
} gpu_ceilings;

static int measure_ceilings(int device, size_t copy_mib, int n, gpu_ceilings *g)
{
    cuda_ops_params p;
    cuda_ops_params_init(&p);
    p.device = device;
    const size_t copy_bytes = copy_mib << 20, mat = (size_t)n * n * sizeof(float);
    const size_t need = 2 * copy_bytes > 3 * mat ? 2 * copy_bytes : 3 * mat;
    p.arena_bytes = need + ((size_t)1 << 20);
    cuda_ops *c;
    if (cuda_ops_create(&p, &c)) {
        fprintf(stderr, "bench_gpu: %s\n", dalle_last_error());
        return -1;
    }
    snprintf(g->device, sizeof g->device, "%s", cuda_ops_describe(c));
    void *a, *b;
    float *x, *y, *z;
    if (cuda_ops_alloc(c, copy_bytes, &a) || cuda_ops_alloc(c, copy_bytes, &b) ||
        cuda_ops_zero(c, a, copy_bytes) || cuda_ops_sync(c))
        goto fail;
    g->copy_gbps = 0;
    for (int r = 0; r < 11; r++) {
        double t = bench_now();
        if (cuda_ops_copy(c, b, a, copy_bytes) || cuda_ops_sync(c))
            goto fail;
        t = bench_now() - t;
        const double gbps = 2.0 * (double)copy_bytes / t / 1e9;
        if (r > 0 && gbps > g->copy_gbps) /* the first is a warm-up */
            g->copy_gbps = gbps;
    }
    cuda_ops_arena_reset(c, 0);
    if (cuda_ops_alloc(c, mat, (void **)&x) || cuda_ops_alloc(c, mat, (void **)&y) ||
        cuda_ops_alloc(c, mat, (void **)&z) || cuda_ops_zero(c, x, mat) ||
        cuda_ops_zero(c, y, mat))
        goto fail;
    g->sgemm_gflops = 0;
    for (int r = 0; r < 6; r++) {
        double t = bench_now();
        if (cuda_gemm(c, 0, 0, n, n, n, 1.0f, x, n, y, n, 0.0f, z, n) || cuda_ops_sync(c))
            goto fail;
        t = bench_now() - t;
        const double gf = 2.0 * (double)n * n * n / t / 1e9;
        if (r > 0 && gf > g->sgemm_gflops) /* the first is a warm-up */
            g->sgemm_gflops = gf;
    }
    cuda_ops_destroy(c);
    return 0;
fail:
    fprintf(stderr, "bench_gpu: ceilings: %s\n", dalle_last_error());
    cuda_ops_destroy(c);
    return -1;
}

static void bench_model(const char *path, const int *batches, int n_batches, int window,
                        int repeat, int device, const gpu_ceilings *g)
{
    int max_batch = 1;
    for (int i = 0; i < n_batches; i++)
        max_batch = batches[i] > max_batch ? batches[i] : max_batch;
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.backend = DALLE_BACKEND_CUDA;
    cp.device = device;
    cp.max_batch = max_batch;
    dalle_ctx *ctx;
    double t = bench_now();
    dalle_status s = dalle_ctx_create(path, &cp, &ctx);
    const double load_s = bench_now() - t;
    if (s) {
        printf("%s: cannot open on the CUDA backend: %s\n", path, dalle_last_error());
        return;
    }
    const dalle_bundle *b = dalle_ctx_bundle(ctx);
    const int dim = (int)bench_meta_i64(b, "dalle.dim", 0);
    const int depth = (int)bench_meta_i64(b, "dalle.depth", 0);
    const int heads = (int)bench_meta_i64(b, "dalle.heads", 8);
    const int dim_head = (int)bench_meta_i64(b, "dalle.dim_head", 64);
    const int S = dalle_image_seq_len(ctx);
    /* the GPU keeps the matrices as stored (lib/transformer_backend.c) */
    const double mat_bytes = bench_matrix_bytes(b, NULL);
    bench_token_cost tc;
    bench_token_costs(dim, depth, (double)heads * dim_head, dalle_text_seq_len(ctx), S,
                      dalle_num_image_tokens(ctx), mat_bytes, &tc);
    const char *base = strrchr(path, '/'), *name = bench_workload(dim, depth, S);
    const char *label = name ? name : base ? base + 1 : path;
    if (window > S / 2)
        window = S / 2;
    if (window < 2)
        window = 2;
    const int mid = S / 2 - window / 2;
    double p_, s_;
    bench_sample_window(ctx, 1, 0, 4, &p_, &s_, NULL); /* warm-up */
    printf("\n%s (%s): dim %d, depth %d, %d image tokens; opened in %.2f s; window %d tokens "
           "centred on token %d, best of %d\n",
           label, path, dim, depth, S, load_s, window, mid + window / 2, repeat);
    printf("  weights %.1f MB/token (matrices at %.3g bytes an element on the GPU), KV cache "
           "%.2f MB/token at %.0f keys, %.2f GFLOP/token\n",
           tc.weight_bytes / 1e6, mat_bytes, tc.kv_bytes / 1e6, tc.keys_avg, tc.flops / 1e9);
    printf("  %5s %11s %9s %11s %8s %9s %9s  %s\n", "batch", "tokens/s", "ms/step", "roofline",
           "of roof", "of BW", "of FLOP", "bound");
    for (int i = 0; i < n_batches; i++) {
        const int B = batches[i];
        double prefix_s, step_s;
        bench_sample_best(ctx, B, mid, window, repeat, &prefix_s, &step_s);
        const double tps = B / step_s;
        const double t_mem = (tc.weight_bytes + B * tc.kv_bytes) / (g->copy_gbps * 1e9);
        const double t_flop = B * tc.flops / (g->sgemm_gflops * 1e9);
        const double roof = B / (t_mem > t_flop ? t_mem : t_flop);
        printf("  %5d %11.1f %9.3f %11.1f %7.1f%% %8.1f%% %8.1f%%  %s\n", B, tps, step_s * 1e3,
               roof, 100 * tps / roof, 100 * tps / (B / t_mem), 100 * tps / (B / t_flop),
               t_mem > t_flop ? "memory" : "FLOPs");
        if (B == 1)
            printf("        prefix (<bos> + caption + %d primed tokens) %.2f ms at batch 1\n", mid,
                   prefix_s * 1e3);
    }
    /* the VAE: random tokens, batch 1 (best of 3) and the largest batch */
    int32_t *ids = malloc((size_t)max_batch * S * sizeof *ids);
    const int px = dalle_image_size(ctx);
    float *pix = malloc((size_t)max_batch * 3 * px * px * sizeof *pix);
    if (!ids || !pix) {
        fprintf(stderr, "bench_gpu: out of memory\n");
        exit(1);
    }
    for (int64_t i = 0; i < (int64_t)max_batch * S; i++)
        ids[i] = bench_rand_below(dalle_num_image_tokens(ctx));
    if ((s = dalle_decode(ctx, ids, 1, pix)))
        bench_die("dalle_decode", s);
    double best = 1e30;
    for (int r = 0; r < 3; r++) {
        t = bench_now();
        if ((s = dalle_decode(ctx, ids, 1, pix)))
            bench_die("dalle_decode", s);
        t = bench_now() - t;
        best = t < best ? t : best;
    }
    t = bench_now();
    if ((s = dalle_decode(ctx, ids, max_batch, pix)))
        bench_die("dalle_decode", s);
    t = bench_now() - t;
    printf("  VAE decode (%d px): %.2f ms at batch 1, %.2f ms an image at batch %d\n", px,
           best * 1e3, t * 1e3 / max_batch, max_batch);
    free(ids), free(pix);
    dalle_ctx_free(ctx);
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_gpu [--batches 1,8,64] [--tokens N] [--repeat R] [--device D] "
                    "[--copy-mib M] [--sgemm-n N] MODEL.dalle ...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int batches[MAX_BATCHES] = {1, 8, 64}, n_batches = 3, window = 32, repeat = 3, device = 0;
    int sgemm_n = 8192;
    size_t copy_mib = 1024;
    const char *models[64];
    int n_models = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--batches") && i + 1 < argc) {
            n_batches = 0;
            for (char *tok = strtok(argv[++i], ","); tok && n_batches < MAX_BATCHES;
                 tok = strtok(NULL, ","))
                batches[n_batches++] = atoi(tok);
        } else if (!strcmp(a, "--tokens") && i + 1 < argc) {
            window = atoi(argv[++i]);
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (!strcmp(a, "--device") && i + 1 < argc) {
            device = atoi(argv[++i]);
        } else if (!strcmp(a, "--copy-mib") && i + 1 < argc) {
            copy_mib = (size_t)atol(argv[++i]);
        } else if (!strcmp(a, "--sgemm-n") && i + 1 < argc) {
            sgemm_n = atoi(argv[++i]);
        } else if (a[0] == '-' || n_models == 64) {
            usage();
        } else {
            models[n_models++] = a;
        }
    }
    for (int i = 0; i < n_batches; i++)
        if (batches[i] < 1 || batches[i] > 4096)
            usage();
    if (!n_models || n_batches < 1 || window < 2 || window > MAX_WINDOW || repeat < 1 ||
        copy_mib < 1 || sgemm_n < 16)
        usage();
    gpu_ceilings g;
    if (measure_ceilings(device, copy_mib, sgemm_n, &g))
        return 1;
    printf("# bench_gpu: %s (%s)\n", g.device, dalle_version());
    printf("# ceilings: device-to-device copy %.1f GB/s (read + written, %zu MiB), "
           "cuBLAS sgemm (TF32 off) %.1f GFLOP/s at n = %d\n",
           g.copy_gbps, copy_mib, g.sgemm_gflops, sgemm_n);
    for (int m = 0; m < n_models; m++)
        bench_model(models[m], batches, n_batches, window, repeat, device, &g);
    return 0;
}
