/* CLIP through the backend operations table (lib/backend_ops.h) on a
 * backend that is not the CPU's.
 *
 * usage: test_cuda_clip MODE GOLDEN_DIR CLIP.dalle OPENAI.dalle OPENAI_JIT.dalle
 *
 * Every golden CLIP case (clip_dalle_pytorch: similarity with and without
 * text_mask; openai_clip from the state dict and the TorchScript bundle:
 * image_features, text_features, logits_per_image) through every public
 * call (clip_score, clip_score_masked, clip_encode_image / _text,
 * clip_logits_per_image, clip_rank) at max_batch 8, 3 and 1 (one chunk,
 * chunks with a short last one, one image or caption at a time), against a
 * CPU context on the same bundle with the same max_batch:
 *
 * MODE emulated: always runs, on any build. A CPU context moved
 *   (clip_ctx_to_backend) onto a backend made of the CPU's operations but
 *   that says its memory is not the host's, so every device path of the
 *   model code runs: weights copied, inputs uploaded a chunk at a time,
 *   features normalised and scored in backend memory, outputs downloaded
 *   (scores a row at a time where the captions come in chunks). Every
 *   output must be the CPU context's bits; every workspace allocation is
 *   given back when the context is freed.
 *
 * MODE gpu: contexts with backend = cuda: the golden outputs at their
 *   case.json tolerance (the CPU test's), the CPU context's outputs within
 *   1e-5 (rel-L2), the same bits twice, and clip_rank's order the CPU's
 *   where the CPU's scores are 1e-3 apart. Without a usable GPU (or
 *   without CUDA in the build): skips (77).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_ops.h"
#include "check.h"
#include "clip_model.h"
#include "dalle/dalle.h"
#include "error.h"
#include "golden.h"
#include "npy.h"

static int gpu_mode;

/* ---- the emulated device backend -------------------------------------------------- */

/* The CPU's operations over memory the model must treat as foreign: every
 * allocation is recorded (and filled with 0xa5: nothing may rely on zeroed
 * memory), so the test sees what comes back. */
static backend_ops fake_ops;
static struct {
    void *p[1024];
    int n;    /* live allocations */
    int work; /* of them, made after seal (the workspace) */
} fake;

static dalle_status fake_alloc(backend *be, size_t bytes, void **ptr)
{
    (void)be;
    *ptr = NULL;
    if (!bytes)
        return DALLE_OK;
    if (fake.n == 1024 || !(*ptr = malloc(bytes)))
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "fake device: out of memory");
    memset(*ptr, 0xa5, bytes);
    fake.p[fake.n++] = *ptr;
    fake.work++;
    return DALLE_OK;
}

static void fake_free(backend *be, void *ptr)
{
    (void)be;
    for (int i = 0; ptr && i < fake.n; i++)
        if (fake.p[i] == ptr) {
            fake.p[i] = fake.p[--fake.n];
            fake.work--;
            free(ptr);
            return;
        }
    CHECK(!ptr, "fake device: free of a pointer it never gave out");
}

static void fake_seal(backend *be)
{
    (void)be;
    fake.work = 0;
}

/* A context on bundle `path`: on the CPU (dev 0), or on the device: the
 * fake one (emulated mode) or CUDA (gpu mode). */
static clip_ctx *open_ctx(const char *path, int dev, int max_batch, backend *fake_be)
{
    clip_ctx *ctx = NULL;
    dalle_ctx_params p = dalle_ctx_default_params();
    p.max_batch = max_batch;
    p.n_threads = 2;
    p.backend = dev && gpu_mode ? DALLE_BACKEND_CUDA : DALLE_BACKEND_CPU;
    int rc = clip_ctx_create(path, &p, &ctx);
    CHECK(rc == DALLE_OK, "open %s (max_batch %d, %s): %s", path, max_batch,
          p.backend == DALLE_BACKEND_CUDA ? "cuda" : "cpu", rc ? dalle_last_error() : "ok");
    if (rc)
        return NULL;
    if (dev && !gpu_mode) {
        backend_cpu_init(fake_be, NULL);
        fake_ops = *fake_be->op;
        fake_ops.alloc = fake_alloc;
        fake_ops.free = fake_free;
        fake_ops.seal = fake_seal;
        fake_be->op = &fake_ops;
        fake_be->name = "emulated";
        fake_be->host_memory = 0;
        rc = clip_ctx_to_backend(ctx, fake_be);
        CHECK(rc == DALLE_OK && clip_ctx_backend(ctx) == fake_be && fake.n > fake.work,
              "%s: weights (%d) and workspace (%d) on the emulated backend: %s", path,
              fake.n - fake.work, fake.work, rc ? dalle_last_error() : "ok");
    } else if (dev) {
        CHECK(!strcmp(clip_ctx_backend(ctx)->name, "cuda"), "%s: the context computes on %s",
              path, clip_ctx_backend(ctx)->name);
    }
    return ctx;
}

/* The device context (*dev) and a CPU one (*cpu) on bundle at max_batch:
 * 0 when both opened. */
static int open_pair(const char *bundle, int max_batch, backend *fake_be, clip_ctx **dev,
                     clip_ctx **cpu)
{
    *dev = open_ctx(bundle, 1, max_batch, fake_be);
    *cpu = open_ctx(bundle, 0, max_batch, NULL);
    return !*dev || !*cpu;
}

static void close_ctx(clip_ctx *ctx, int dev)
{
    clip_ctx_free(ctx);
    if (dev && !gpu_mode) {
        CHECK(fake.work == 0, "emulated backend: the workspace given back (%d left)", fake.work);
        while (fake.n) /* the weights live as long as the backend */
            free(fake.p[--fake.n]);
    }
}

/* ---- comparing --------------------------------------------------------------------- */

/* rel-L2 of a to b (golden.h's, no masked entries here) */
static double rel_l2(const float *a, const float *b, int64_t n)
{
    int64_t mask_diff;
    return golden_rel_l2(a, b, n, &mask_diff);
}

/* The device's output `got` against the CPU's `cpu`: the same bits
 * (emulated) or within 1e-5 (gpu); and against golden `want` (NULL: none)
 * at tol. */
static void compare(const char *what, const float *got, const float *cpu, const float *want,
                    int64_t n, double tol)
{
    if (gpu_mode) {
        double r = rel_l2(got, cpu, n);
        CHECK(r <= 1e-5, "%s: GPU vs CPU rel-L2 %.3g", what, r);
    } else {
        CHECK(!memcmp(got, cpu, (size_t)n * sizeof *got), "%s: the CPU's bits", what);
    }
    if (want) {
        double r = rel_l2(got, want, n);
        CHECK(r <= tol, "%s: rel-L2 %.3g to the golden output (tolerance %.3g)", what, r, tol);
    }
}

/* clip_rank on both: emulated, the same order; gpu, the CPU's order
 * wherever the CPU's neighbouring scores are 1e-3 apart */
static void compare_rank(const char *what, clip_ctx *dev, clip_ctx *cpu, const int32_t *ids,
                         const float *img, int n)
{
    float sd[16], sc[16];
    int od[16], oc[16];
    int a = clip_rank(dev, ids, img, n, sd, od), b = clip_rank(cpu, ids, img, n, sc, oc);
    CHECK(a == DALLE_OK && b == DALLE_OK, "%s: clip_rank: %s", what,
          a || b ? dalle_last_error() : "ok");
    compare(what, sd, sc, NULL, n, 0);
    int same = 1;
    for (int k = 0; k < n; k++)
        if (!gpu_mode || ((k == 0 || sc[oc[k - 1]] - sc[oc[k]] >= 1e-3) &&
                          (k == n - 1 || sc[oc[k]] - sc[oc[k + 1]] >= 1e-3)))
            same &= od[k] == oc[k];
    CHECK(same, "%s: clip_rank order %d %d %d ... the CPU's", what, od[0], od[1], od[2]);
}

/* ---- the cases ----------------------------------------------------------------------- */

static void check_dalle_pytorch(const char *bundle, int max_batch)
{
    const char *cas = "clip_dalle_pytorch";
    backend fake_be;
    clip_ctx *dev, *cpu;
    if (open_pair(bundle, max_batch, &fake_be, &dev, &cpu))
        return;
    npy text = golden_load(cas, "text.npy"), mask = golden_load(cas, "text_mask.npy"),
        images = golden_load(cas, "images.npy"), sim = golden_load(cas, "similarity.npy"),
        sim_nm = golden_load(cas, "similarity_no_mask.npy");
    const int B = (int)text.dims[0], L = (int)text.dims[1], S = (int)images.dims[2];
    const int E = clip_embed_dim(cpu);
    const int64_t per = 3LL * S * S;
    int32_t *ids = npy_to_i32(&text);
    uint8_t *m = malloc((size_t)B * L);
    for (int64_t i = 0; i < (int64_t)B * L; i++)
        m[i] = ((const int64_t *)mask.data)[i] != 0;
    const float *img = images.data;
    char what[256];
    float d[4][64 * 64], c[4][64 * 64];
    int ok = 1;
    for (int b = 0; b < B; b++) {
        ok &= !clip_score_masked(dev, ids + b * L, m + b * L, img + b * per, 1, &d[0][b]);
        ok &= !clip_score_masked(cpu, ids + b * L, m + b * L, img + b * per, 1, &c[0][b]);
        ok &= !clip_score(dev, ids + b * L, img + b * per, 1, &d[1][b]);
        ok &= !clip_score(cpu, ids + b * L, img + b * per, 1, &c[1][b]);
    }
    CHECK(ok, "%s: the scores: %s", cas, ok ? "ok" : dalle_last_error());
    snprintf(what, sizeof what, "%s (max_batch %d) similarity, text_mask", cas, max_batch);
    compare(what, d[0], c[0], sim.data, B, golden_tolerance(cas, "similarity.npy"));
    snprintf(what, sizeof what, "%s (max_batch %d) similarity_no_mask", cas, max_batch);
    compare(what, d[1], c[1], sim_nm.data, B, golden_tolerance(cas, "similarity_no_mask.npy"));

    /* a masked caption against all images at once, then the whole matrix */
    ok = !clip_score_masked(dev, ids, m, img, B, d[0]) && !clip_score_masked(cpu, ids, m, img, B, c[0]) &&
         !clip_logits_per_image(dev, img, B, ids, B, d[1]) &&
         !clip_logits_per_image(cpu, img, B, ids, B, c[1]) &&
         !clip_encode_image(dev, img, B, d[2]) && !clip_encode_image(cpu, img, B, c[2]) &&
         !clip_encode_text(dev, ids, B, d[3]) && !clip_encode_text(cpu, ids, B, c[3]);
    CHECK(ok, "%s: batched calls: %s", cas, ok ? "ok" : dalle_last_error());
    snprintf(what, sizeof what, "%s (max_batch %d) one masked caption, %d images", cas,
             max_batch, B);
    compare(what, d[0], c[0], NULL, B, 0);
    snprintf(what, sizeof what, "%s (max_batch %d) logits_per_image %dx%d", cas, max_batch, B, B);
    compare(what, d[1], c[1], NULL, (int64_t)B * B, 0);
    float diag[16];
    for (int b = 0; b < B; b++)
        diag[b] = d[1][b * B + b];
    snprintf(what, sizeof what, "%s (max_batch %d) logits diagonal", cas, max_batch);
    compare(what, diag, diag, sim_nm.data, B, golden_tolerance(cas, "similarity_no_mask.npy"));
    snprintf(what, sizeof what, "%s (max_batch %d) image features", cas, max_batch);
    compare(what, d[2], c[2], NULL, (int64_t)B * E, 0);
    snprintf(what, sizeof what, "%s (max_batch %d) text features", cas, max_batch);
    compare(what, d[3], c[3], NULL, (int64_t)B * E, 0);
    snprintf(what, sizeof what, "%s (max_batch %d)", cas, max_batch);
    compare_rank(what, dev, cpu, ids, img, B);

    if (gpu_mode) { /* the same bits twice on one GPU */
        float again[64 * 64];
        clip_logits_per_image(dev, img, B, ids, B, again);
        CHECK(!memcmp(again, d[1], (size_t)B * B * sizeof *again),
              "%s: logits_per_image on the GPU: the same bits twice", cas);
    }
    close_ctx(dev, 1);
    close_ctx(cpu, 0);
    free(ids);
    free(m);
    npy_free(&text);
    npy_free(&mask);
    npy_free(&images);
    npy_free(&sim);
    npy_free(&sim_nm);
}

static void check_openai(const char *bundle, const char *label, int max_batch)
{
    const char *cas = "openai_clip";
    backend fake_be;
    clip_ctx *dev, *cpu;
    if (open_pair(bundle, max_batch, &fake_be, &dev, &cpu))
        return;
    npy images = golden_load(cas, "images.npy"), text = golden_load(cas, "text.npy"),
        want_i = golden_load(cas, "image_features.npy"),
        want_t = golden_load(cas, "text_features.npy"),
        want_l = golden_load(cas, "logits_per_image.npy");
    const int N = (int)images.dims[0], T = (int)text.dims[0], L = (int)text.dims[1];
    const int S = (int)images.dims[2], E = (int)want_i.dims[1];
    const int64_t per = 3LL * S * S;
    int32_t *ids = npy_to_i32(&text);
    const float *img = images.data;
    char what[256];
    float d[3][64 * 64], c[3][64 * 64];
    int ok = !clip_encode_image(dev, img, N, d[0]) && !clip_encode_image(cpu, img, N, c[0]) &&
             !clip_encode_text(dev, ids, T, d[1]) && !clip_encode_text(cpu, ids, T, c[1]) &&
             !clip_logits_per_image(dev, img, N, ids, T, d[2]) &&
             !clip_logits_per_image(cpu, img, N, ids, T, c[2]);
    CHECK(ok, "%s: %s", label, ok ? "ok" : dalle_last_error());
    snprintf(what, sizeof what, "%s (max_batch %d) image_features", label, max_batch);
    compare(what, d[0], c[0], want_i.data, (int64_t)N * E,
            golden_tolerance(cas, "image_features.npy"));
    snprintf(what, sizeof what, "%s (max_batch %d) text_features", label, max_batch);
    compare(what, d[1], c[1], want_t.data, (int64_t)T * E,
            golden_tolerance(cas, "text_features.npy"));
    snprintf(what, sizeof what, "%s (max_batch %d) logits_per_image", label, max_batch);
    compare(what, d[2], c[2], want_l.data, (int64_t)N * T,
            golden_tolerance(cas, "logits_per_image.npy"));
    /* clip_score of each caption over all images */
    for (int j = 0; j < T; j++) {
        ok = !clip_score(dev, ids + j * L, img, N, d[0]) && !clip_score(cpu, ids + j * L, img, N, c[0]);
        snprintf(what, sizeof what, "%s (max_batch %d) clip_score of caption %d", label,
                 max_batch, j);
        CHECK(ok, "%s: %s", what, ok ? "ok" : dalle_last_error());
        compare(what, d[0], c[0], NULL, N, 0);
    }
    snprintf(what, sizeof what, "%s (max_batch %d)", label, max_batch);
    compare_rank(what, dev, cpu, ids, img, N);
    (void)per;
    close_ctx(dev, 1);
    close_ctx(cpu, 0);
    free(ids);
    npy_free(&images);
    npy_free(&text);
    npy_free(&want_i);
    npy_free(&want_t);
    npy_free(&want_l);
}

/* backend = cuda without a GPU: a clear refusal; auto: the CPU, said
 * through the log */
static void check_selection(const char *bundle)
{
    const char *why = "";
    if (backend_cuda_device_count(&why) > 0)
        return;
    dalle_ctx_params p = dalle_ctx_default_params();
    p.backend = DALLE_BACKEND_CUDA;
    clip_ctx *ctx = (clip_ctx *)0x1;
    int rc = clip_ctx_create(bundle, &p, &ctx);
    CHECK(rc == DALLE_ERR_UNSUPPORTED && strstr(dalle_last_error(), "backend cuda") &&
              ctx == (clip_ctx *)0x1,
          "CLIP with backend cuda and no GPU: refused (%s)", dalle_last_error());
    p.backend = DALLE_BACKEND_AUTO;
    check_log_start();
    rc = clip_ctx_create(bundle, &p, &ctx);
    check_log_stop();
    CHECK(rc == DALLE_OK && !strcmp(clip_ctx_backend(ctx)->name, "cpu") &&
              strstr(check_log(), "using the CPU"),
          "CLIP with backend auto and no GPU: the CPU, said through the log: %s", check_log());
    if (rc == DALLE_OK)
        clip_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    if (argc < 6 || (strcmp(argv[1], "gpu") && strcmp(argv[1], "emulated"))) {
        printf("usage: test_cuda_clip gpu|emulated GOLDEN_DIR CLIP OPENAI OPENAI_JIT\n"
               "(skipped: the golden cases are not there)\n");
        return 77;
    }
    gpu_mode = !strcmp(argv[1], "gpu");
    golden = argv[2];
    if (gpu_mode) {
        dalle_ctx_params p = dalle_ctx_default_params();
        p.backend = DALLE_BACKEND_CUDA;
        clip_ctx *ctx = NULL;
        int rc = clip_ctx_create(argv[3], &p, &ctx);
        if (rc == DALLE_ERR_UNSUPPORTED) {
            printf("skip: no CUDA backend here: %s\n", dalle_last_error());
            return 77;
        }
        CHECK(rc == DALLE_OK, "CLIP with backend cuda: %s", rc ? dalle_last_error() : "ok");
        clip_ctx_free(ctx);
        if (rc)
            return check_summary();
    } else {
        check_selection(argv[3]);
    }
    const int batches[3] = {8, 3, 1};
    for (int i = 0; i < 3; i++) {
        check_dalle_pytorch(argv[3], batches[i]);
        check_openai(argv[4], "openai_clip (state dict)", batches[i]);
        check_openai(argv[5], "openai_clip (TorchScript)", batches[i]);
    }
    return check_summary();
}
