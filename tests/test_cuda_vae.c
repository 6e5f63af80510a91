/* The VAEs (lib/vae*.c) through the backend operations table
 * (lib/backend_ops.h) on a backend that is not the CPU's.
 *
 * usage: test_cuda_vae MODE GOLDEN_DIR VAE_RESBLOCKS.dalle OPENAI_DVAE_64.dalle VQGAN.dalle
 *                      DALLE_FULL.dalle DALLE_VARIANTS.dalle DALLE_SHARED_ATTN.dalle
 *                      DALLE_CFG.dalle
 *
 * Every golden VAE case of tests/test_vae.c (DiscreteVAE with and without
 * ResBlocks, OpenAI's dVAE, VQGAN), on a context whose VAE runs on the
 * backend with max_batch 2 (so a batch of 3 images crosses in two parts):
 * dalle_decode's pixels, the raw decoder output (vae_decode_raw),
 * dalle_encode's ids and the encoder scores (vae_encode_scores).
 *
 * MODE emulated: always runs, on any build. A CPU context whose VAE is
 * moved (vae_to_backend) onto the CPU's operations behind a backend whose
 * memory is not the host's (tests/emu_backend.h), so every device path of
 * the VAE code runs: weights copied once, ids and pixels uploaded, the
 * workspace allocated from the backend and given back, outputs downloaded.
 * Every output must be the CPU context's bits. Injected failures (no room
 * for the workspace, an operation that fails) are reported with their
 * message, leave the outputs alone and give the workspace back.
 *
 * MODE gpu: contexts with backend = cuda (the VAE must be on the CUDA
 * backend). Raw output, pixels and scores against the golden files at
 * case.json's tolerance_rel_l2 (test_vae's checks), against the CPU
 * context's within the same, the ids as test_vae checks them (99% equal,
 * every mismatch at a near-tie), and the same bits twice. Without a usable
 * GPU (or without CUDA in the build): skips (77).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ops.h"
#include "check.h"
#include "context.h"
#include "dalle/dalle.h"
#include "emu_backend.h"
#include "golden.h"
#include "npy.h"
#include "vae.h"

static int gpu_mode;

typedef struct vae_case {
    const char *name, *bundle;
    const char *ids_in, *images_in;
    const char *decoded, *pixels, *scores, *ids; /* expected (NULL: none) */
} vae_case;

/* The outputs of one context for a case's inputs. */
typedef struct outputs {
    float *pixels, *raw, *scores;
    int32_t *ids;
    int rc;
} outputs;

typedef struct sizes {
    int batch, size, seq, tokens, rch;
    int64_t plane;
} sizes;

static outputs run_all(dalle_ctx *ctx, const sizes *z, const int32_t *ids, const float *images)
{
    outputs o;
    o.pixels = malloc(sizeof(float) * 3 * z->plane * z->batch);
    o.raw = malloc(sizeof(float) * z->rch * z->plane * z->batch);
    o.scores = malloc(sizeof(float) * z->tokens * z->seq * z->batch);
    o.ids = malloc(sizeof(int32_t) * z->seq * z->batch);
    o.rc = dalle_decode(ctx, ids, z->batch, o.pixels);
    if (!o.rc)
        o.rc = vae_decode_raw(ctx->vae, NULL, ids, z->batch, o.raw);
    if (!o.rc)
        o.rc = dalle_encode(ctx, images, z->batch, o.ids);
    if (!o.rc)
        o.rc = vae_encode_scores(ctx->vae, NULL, images, z->batch, o.scores);
    return o;
}

static void free_outputs(outputs *o)
{
    free(o->pixels);
    free(o->raw);
    free(o->scores);
    free(o->ids);
}

/* A context on `path` whose VAE runs on the device (gpu: backend = cuda;
 * emulated: moved onto `emu`), or on the CPU. */
static dalle_ctx *open_ctx(const char *path, int device, backend *emu)
{
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = 2;
    cp.max_batch = 2;
    cp.backend = device && gpu_mode ? DALLE_BACKEND_CUDA : DALLE_BACKEND_CPU;
    dalle_ctx *ctx = NULL;
    int s = dalle_ctx_create(path, &cp, &ctx);
    CHECK(s == DALLE_OK, "open %s (%s): %s", path, device ? "device" : "cpu",
          s ? dalle_last_error() : "ok");
    if (s || !device)
        return ctx;
    if (gpu_mode) {
        CHECK(vae_backend(ctx->vae) == ctx->device_backend && ctx->device_backend,
              "%s: the VAE runs on the CUDA backend", path);
        return ctx;
    }
    emu_init(emu, ctx->pool);
    s = vae_to_backend(ctx->vae, emu, cp.max_batch);
    CHECK(s == DALLE_OK && vae_backend(ctx->vae) == emu && emu_n > 0 && emu_states == 0,
          "%s: VAE weights copied to the emulated backend (%d allocations): %s", path, emu_n,
          s ? dalle_last_error() : "ok");
    if (s) {
        dalle_ctx_free(ctx);
        emu_release_all();
        return NULL;
    }
    return ctx;
}

static int same_bits(const void *a, const void *b, size_t bytes) { return !memcmp(a, b, bytes); }

/* emulated: every output the CPU's bits */
static void check_emulated(const vae_case *c, const sizes *z, const outputs *d, const outputs *r)
{
    CHECK(same_bits(d->pixels, r->pixels, sizeof(float) * 3 * z->plane * z->batch),
          "%s: dalle_decode pixels on the emulated backend: the CPU's bits", c->name);
    CHECK(same_bits(d->raw, r->raw, sizeof(float) * z->rch * z->plane * z->batch),
          "%s: raw decoder output on the emulated backend: the CPU's bits", c->name);
    CHECK(same_bits(d->ids, r->ids, sizeof(int32_t) * z->seq * z->batch),
          "%s: dalle_encode ids on the emulated backend: the CPU's", c->name);
    CHECK(same_bits(d->scores, r->scores, sizeof(float) * z->tokens * z->seq * z->batch),
          "%s: encoder scores on the emulated backend: the CPU's bits", c->name);
    CHECK(emu_states == 0, "%s: every workspace allocation given back (%d left)", c->name,
          emu_states);
}

/* emulated: a device failure is reported with its message, leaves the
 * caller's outputs alone, gives the workspace back, and the next call works */
static void check_failures_reported(const vae_case *c, dalle_ctx *dev, const sizes *z,
                                    const int32_t *ids, const float *images, const outputs *r)
{
    const size_t npix = 3 * (size_t)z->plane * z->batch;
    float *pixels = malloc(sizeof(float) * npix);
    int32_t *enc = malloc(sizeof(int32_t) * z->seq * z->batch);
    pixels[0] = -7.0f;
    emu_fail_alloc = 1;
    int s = dalle_decode(dev, ids, z->batch, pixels);
    CHECK(s == DALLE_ERR_OUT_OF_MEMORY && strstr(dalle_last_error(), "VAE workspace") &&
              strstr(dalle_last_error(), "injected") && pixels[0] == -7.0f && emu_states == 0,
          "%s: no room for the workspace: refused, pixels untouched (%s)", c->name,
          dalle_last_error());
    emu_fail_op = 1;
    s = dalle_decode(dev, ids, z->batch, pixels);
    CHECK(s == DALLE_ERR_BACKEND && strstr(dalle_last_error(), "pixel_map failed") &&
              pixels[0] == -7.0f && emu_states == 0,
          "%s: a failed operation is reported by dalle_decode, pixels untouched, the workspace "
          "given back (%s)",
          c->name, dalle_last_error());
    enc[0] = -7;
    emu_fail_op = 1;
    s = dalle_encode(dev, images, z->batch, enc);
    CHECK(s == DALLE_ERR_BACKEND && enc[0] == -7 && emu_states == 0,
          "%s: a failed operation is reported by dalle_encode, ids untouched (%s)", c->name,
          dalle_last_error());
    s = dalle_decode(dev, ids, z->batch, pixels);
    CHECK(s == DALLE_OK && same_bits(pixels, r->pixels, sizeof(float) * npix),
          "%s: the next dalle_decode works: the CPU's bits", c->name);
    free(pixels);
    free(enc);
}

static void check_against(const char *what, const char *cas, const char *file, const float *ours,
                          int64_t n)
{
    npy want = golden_load(cas, file);
    char line[256];
    snprintf(line, sizeof line, "%s: %s vs %s", cas, what, file);
    CHECK(want.numel == n, "%s: %lld values (want %lld)", line, (long long)n,
          (long long)want.numel);
    if (want.numel == n)
        golden_check_close(line, ours, want.data, n, golden_tolerance(cas, file));
    npy_free(&want);
}

/* gpu: the goldens at their tolerances, the CPU within the same, the ids
 * as test_vae, the same bits twice */
static void check_gpu(const vae_case *c, dalle_ctx *dev, const sizes *z, const outputs *d,
                      const outputs *r, const int32_t *ids, const float *images)
{
    const int64_t npix = 3 * z->plane * z->batch, nraw = z->rch * z->plane * z->batch;
    const int64_t nsc = (int64_t)z->tokens * z->seq * z->batch;
    const char *tol_file = c->decoded ? c->decoded : c->pixels;
    const double tol = golden_tolerance(c->name, tol_file);
    char what[256];
    if (c->decoded)
        check_against("raw decoder output on the GPU", c->name, c->decoded, d->raw, nraw);
    if (c->pixels)
        check_against("dalle_decode pixels on the GPU", c->name, c->pixels, d->pixels, npix);
    if (c->scores)
        check_against("encoder scores on the GPU", c->name, c->scores, d->scores, nsc);
    snprintf(what, sizeof what, "%s: GPU pixels vs the CPU's", c->name);
    golden_check_close(what, d->pixels, r->pixels, npix, tol);
    snprintf(what, sizeof what, "%s: GPU raw output vs the CPU's", c->name);
    golden_check_close(what, d->raw, r->raw, nraw, tol);
    snprintf(what, sizeof what, "%s: GPU encoder scores vs the CPU's", c->name);
    golden_check_close(what, d->scores, r->scores, nsc,
                       c->scores ? golden_tolerance(c->name, c->scores) : tol);
    npy want = golden_load(c->name, c->ids);
    double amp = 0;
    for (int64_t i = 0; i < nsc; i++)
        amp = fmax(amp, fabs(d->scores[i]));
    snprintf(what, sizeof what, "%s (GPU)", c->name);
    golden_check_ids(what, d->ids, want.data, (int64_t)z->seq * z->batch, d->scores, z->tokens,
                     z->seq, 1e-5 * amp);
    npy_free(&want);
    outputs again = run_all(dev, z, ids, images);
    CHECK(again.rc == DALLE_OK && same_bits(again.pixels, d->pixels, sizeof(float) * npix) &&
              same_bits(again.ids, d->ids, sizeof(int32_t) * z->seq * z->batch) &&
              same_bits(again.scores, d->scores, sizeof(float) * nsc),
          "%s: the GPU's pixels, ids and scores are the same bits twice", c->name);
    free_outputs(&again);
}

static void run_case(const vae_case *c)
{
    backend emu;
    memset(&emu, 0, sizeof emu);
    dalle_ctx *dev = open_ctx(c->bundle, 1, &emu), *cpu = open_ctx(c->bundle, 0, NULL);
    if (dev && cpu) {
        npy ids_in = golden_load(c->name, c->ids_in), images = golden_load(c->name, c->images_in);
        sizes z = {(int)ids_in.dims[0], dalle_image_size(cpu), dalle_image_seq_len(cpu),
                   dalle_num_image_tokens(cpu), vae_raw_channels(cpu->vae), 0};
        z.plane = (int64_t)z.size * z.size;
        int32_t *ids = npy_to_i32(&ids_in);
        outputs d = run_all(dev, &z, ids, images.data), r = run_all(cpu, &z, ids, images.data);
        CHECK(d.rc == DALLE_OK && r.rc == DALLE_OK,
              "%s: decode, raw decode, encode and scores of %d images on both: %s", c->name,
              z.batch, d.rc || r.rc ? dalle_last_error() : "ok");
        if (!d.rc && !r.rc) {
            if (gpu_mode)
                check_gpu(c, dev, &z, &d, &r, ids, images.data);
            else {
                check_emulated(c, &z, &d, &r);
                check_failures_reported(c, dev, &z, ids, images.data, &r);
            }
        }
        free_outputs(&d);
        free_outputs(&r);
        free(ids);
        npy_free(&ids_in);
        npy_free(&images);
    }
    dalle_ctx_free(dev);
    dalle_ctx_free(cpu);
    if (emu.op)
        emu_release_all();
}

int main(int argc, char **argv)
{
    if (argc < 10 || (strcmp(argv[1], "gpu") && strcmp(argv[1], "emulated"))) {
        printf("usage: test_cuda_vae gpu|emulated GOLDEN_DIR VAE_RESBLOCKS OPENAI_DVAE_64 VQGAN "
               "DALLE_FULL DALLE_VARIANTS DALLE_SHARED_ATTN DALLE_CFG\n"
               "(skipped: the golden cases are not there)\n");
        return 77;
    }
    gpu_mode = !strcmp(argv[1], "gpu");
    golden = argv[2];
    char **b = argv + 3;
    if (gpu_mode) {
        dalle_ctx_params cp = dalle_ctx_default_params();
        cp.backend = DALLE_BACKEND_CUDA;
        dalle_ctx *ctx = NULL;
        int s = dalle_ctx_create(b[0], &cp, &ctx);
        if (s == DALLE_ERR_UNSUPPORTED) {
            printf("skip: no CUDA backend here: %s\n", dalle_last_error());
            return 77;
        }
        dalle_ctx_free(ctx);
    }
    const vae_case cases[] = {
        {"vae_resblocks", b[0], "image_tokens.npy", "vae_input_images.npy", "vae_decoded.npy",
         NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy"},
        {"openai_dvae", b[1], "image_tokens.npy", "images.npy", "decoder_stats.npy",
         "decoded.npy", "encoder_logits.npy", "codebook_indices.npy"},
        {"vqgan", b[2], "image_tokens.npy", "images.npy", NULL, "decoded.npy", NULL,
         "codebook_indices.npy"},
        {"dalle_full", b[3], "image_tokens.npy", "vae_input_images.npy", "vae_decoded.npy", NULL,
         "vae_encoder_logits.npy", "vae_codebook_indices.npy"},
        {"dalle_variants", b[4], "image_tokens.npy", "vae_input_images.npy", "vae_decoded.npy",
         NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy"},
        {"dalle_shared_attn", b[5], "image_tokens.npy", "vae_input_images.npy",
         "vae_decoded.npy", NULL, "vae_encoder_logits.npy", "vae_codebook_indices.npy"},
        {"dalle_cfg", b[6], "image_tokens.npy", "vae_input_images.npy", "vae_decoded.npy", NULL,
         "vae_encoder_logits.npy", "vae_codebook_indices.npy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
        run_case(&cases[i]);
    return check_summary();
}
