/* The public API's contract: versions, errors, parameter structs, argument
 * validation and what each call does with bad input. Model math is tested
 * per model; this file checks the shapes of the calls.
 *
 * usage: test_api TMPDIR [DALLE_BUNDLE CLIP_BUNDLE]
 * (the bundles converted from ../shared/golden; without them those checks
 * are skipped and the rest still runs). */
#include <dalle/dalle.h>
#include <float.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define STBI_ONLY_PNG
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include "check.h"

static char tmpdir[512];

static const char *tmp(const char *name)
{
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    return path;
}

/* A bundle with only metadata (models refuse it, the bundle layer does not). */
static int write_meta_bundle(const char *path, const char *kind, int with_vae_shapes)
{
    dalle_bundle_writer *w;
    if (dalle_bundle_writer_create(kind, &w))
        return -1;
    dalle_bundle_writer_set_str(w, "general.source", "test_api");
    if (with_vae_shapes) {
        dalle_bundle_writer_set_i64(w, "vae.image_size", 30); /* not divisible by 2^2 */
        dalle_bundle_writer_set_i64(w, "vae.num_layers", 2);
        dalle_bundle_writer_set_i64(w, "vae.num_tokens", 16);
    }
    int rc = dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return rc;
}

static void test_version_and_errors(void)
{
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", DALLE_VERSION_MAJOR, DALLE_VERSION_MINOR,
             DALLE_VERSION_PATCH);
    CHECK(!strcmp(dalle_version(), want), "dalle_version() = %s", dalle_version());
    CHECK(dalle_version_number() == DALLE_VERSION_NUMBER, "dalle_version_number()");
    CHECK(!strcmp(dalle_strerror(DALLE_OK), "ok"), "strerror(OK)");
    for (int code = -1; code >= DALLE_ERR_NOT_IMPLEMENTED; code--)
        CHECK(strcmp(dalle_strerror(code), "unknown status") != 0, "strerror(%d) = %s", code,
              dalle_strerror(code));
    CHECK(!strcmp(dalle_strerror(12345), "unknown status"), "strerror(unknown)");
}

static int log_calls;
static void count_log(dalle_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)msg;
    *(int *)user += 1;
}

static void test_ctx_errors(void)
{
    dalle_ctx *ctx = (dalle_ctx *)0x1; /* must stay untouched on failure */
    CHECK_FAILS(dalle_ctx_create(NULL, NULL, &ctx), DALLE_ERR_INVALID_ARGUMENT, "path is NULL");
    CHECK_FAILS(dalle_ctx_create(tmp("missing.dalle"), NULL, &ctx), DALLE_ERR_IO,
                "missing.dalle");
    CHECK(ctx == (dalle_ctx *)0x1, "out untouched after failures");

    dalle_ctx_params p = dalle_ctx_default_params();
    CHECK(p.struct_size == sizeof p && p.n_threads == 0 && p.backend == DALLE_BACKEND_CPU,
          "default ctx params");
    p.struct_size = 3;
    CHECK_FAILS(dalle_ctx_create(tmp("x"), &p, &ctx), DALLE_ERR_INVALID_ARGUMENT, "struct_size");
    p = dalle_ctx_default_params();
    p.n_threads = -1;
    CHECK_FAILS(dalle_ctx_create(tmp("x"), &p, &ctx), DALLE_ERR_INVALID_ARGUMENT, "n_threads");
    p = dalle_ctx_default_params();
    p.backend = (dalle_backend)7;
    CHECK_FAILS(dalle_ctx_create(tmp("x"), &p, &ctx), DALLE_ERR_INVALID_ARGUMENT, "backend");
    p = dalle_ctx_default_params();
    p.backend = DALLE_BACKEND_CUDA;
    int rc = dalle_ctx_create(tmp("x"), &p, &ctx);
    /* Without a GPU (or without CUDA in the build) CUDA is refused up front. */
    CHECK(rc == DALLE_ERR_UNSUPPORTED || rc == DALLE_ERR_NOT_IMPLEMENTED,
          "backend cuda here: %d \"%s\"", rc, dalle_last_error());

    log_calls = 0;
    dalle_set_log_callback(count_log, &log_calls);
    p = dalle_ctx_default_params();
    p.backend = DALLE_BACKEND_AUTO;
    dalle_ctx_create(tmp("missing.dalle"), &p, &ctx);
    CHECK(log_calls >= 1, "backend auto says what it chose through the log callback (%d)",
          log_calls);
    dalle_set_log_callback(NULL, NULL);

    CHECK(write_meta_bundle(tmp("clip_meta.dalle"), "clip", 0) == DALLE_OK, "write clip bundle");
    CHECK_FAILS(dalle_ctx_create(tmp("clip_meta.dalle"), NULL, &ctx), DALLE_ERR_MISMATCH,
                "clip_ctx_create");
    CHECK(write_meta_bundle(tmp("dvae_bad.dalle"), "dvae", 1) == DALLE_OK, "write dvae bundle");
    CHECK_FAILS(dalle_ctx_create(tmp("dvae_bad.dalle"), NULL, &ctx), DALLE_ERR_MISMATCH,
                "not divisible");
    CHECK(write_meta_bundle(tmp("dvae_none.dalle"), "dvae", 0) == DALLE_OK, "write dvae bundle");
    CHECK_FAILS(dalle_ctx_create(tmp("dvae_none.dalle"), NULL, &ctx), DALLE_ERR_MISMATCH,
                "vae.image_size");
    CHECK(ctx == (dalle_ctx *)0x1, "out untouched after failures");

    clip_ctx *clip = NULL;
    CHECK_FAILS(clip_ctx_create(tmp("dvae_none.dalle"), NULL, &clip), DALLE_ERR_MISMATCH,
                "not a CLIP model");
    CHECK(clip == NULL, "clip out untouched");

    /* NULL handles are harmless everywhere. */
    dalle_ctx_free(NULL);
    clip_ctx_free(NULL);
    dalle_bundle_close(NULL);
    CHECK(dalle_text_seq_len(NULL) == 0 && !strcmp(dalle_ctx_last_error(NULL), ""),
          "queries on NULL");
}

/* A caller built against an older header: its struct ends before the
 * fields added later. The library must not write past it, and must accept
 * it with the later fields at their defaults. */
static void test_old_callers(void)
{
    struct {
        dalle_sample_params p;
        unsigned char guard[64];
    } big;
    size_t old_size = offsetof(dalle_sample_params, first_image);
    memset(&big, 0xAB, sizeof big);
    dalle_sample_params_init(&big.p, old_size);
    int guard_ok = 1;
    for (size_t i = old_size; i < sizeof big.p; i++)
        guard_ok &= ((unsigned char *)&big.p)[i] == 0xAB;
    for (size_t i = 0; i < sizeof big.guard; i++)
        guard_ok &= big.guard[i] == 0xAB;
    CHECK(guard_ok && big.p.struct_size == old_size && big.p.temperature == 1.0f,
          "params_init writes only the caller's %zu bytes and records that size", old_size);
    dalle_ctx_params cp;
    memset(&cp, 0xCD, sizeof cp);
    dalle_ctx_params_init(&cp, 3); /* too small to hold struct_size: nothing written */
    CHECK(((unsigned char *)&cp)[0] == 0xCD, "params_init ignores a size below sizeof(size_t)");
}

static void test_dalle_calls(const char *bundle)
{
    dalle_ctx *ctx;
    int rc = dalle_ctx_create(bundle, NULL, &ctx);
    CHECK(rc == DALLE_OK, "open %s: %s", bundle, rc ? dalle_last_error() : "");
    if (rc)
        return;
    int tl = dalle_text_seq_len(ctx), il = dalle_image_seq_len(ctx);
    int nt = dalle_num_text_tokens(ctx), ni = dalle_num_image_tokens(ctx);
    CHECK(tl > 0 && il > 0 && nt > 0 && ni > 0 && dalle_image_size(ctx) > 0,
          "shapes: text %d (vocab %d), image %d (vocab %d), %d px", tl, nt, il, ni,
          dalle_image_size(ctx));
    CHECK(dalle_total_tokens(ctx) == nt + tl + ni, "total_tokens = %d", dalle_total_tokens(ctx));

    int32_t text[2 * 256] = {0}, out[2 * 4096];
    for (int i = 0; i < (int)(sizeof out / sizeof *out); i++)
        out[i] = -7;
    dalle_sample_params sp = dalle_sample_default_params();
    CHECK(sp.struct_size == sizeof sp && sp.filter_thres == 0.5f && sp.temperature == 1.0f &&
              sp.cond_scale == 1.0f && sp.n_prime == 0,
          "default sample params");
    CHECK_FAILS(dalle_sample(ctx, NULL, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "text is NULL");
    CHECK_FAILS(dalle_sample(ctx, text, 0, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "batch = 0");
    text[3] = nt;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "text[0][3]");
    text[3] = 0;
    text[tl + 1] = -1;
    CHECK_FAILS(dalle_sample(ctx, text, 2, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "text[1][1]");
    text[tl + 1] = 0;
    sp.filter_thres = 1.0f;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "filter_thres");
    sp = dalle_sample_default_params();
    sp.temperature = 0.0f;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "temperature");
    sp = dalle_sample_default_params();
    sp.cond_scale = NAN;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "cond_scale");
    sp = dalle_sample_default_params();
    sp.n_prime = il + 1;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "n_prime");
    sp.n_prime = 2;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "prime is NULL");
    int32_t prime[2] = {0, ni};
    sp.prime = prime;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "prime[0][1]");
    sp = dalle_sample_default_params();
    sp.struct_size = 1;
    CHECK_FAILS(dalle_sample(ctx, text, 1, &sp, out), DALLE_ERR_INVALID_ARGUMENT, "struct_size");
    CHECK(strstr(dalle_ctx_last_error(ctx), "struct_size") != NULL,
          "the context keeps its last error: \"%s\"", dalle_ctx_last_error(ctx));

    float logits_out[4];
    int32_t image[1] = {ni};
    CHECK_FAILS(dalle_logits(ctx, text, image, 1, il + 1, 1.0f, logits_out),
                DALLE_ERR_INVALID_ARGUMENT, "n_image");
    CHECK_FAILS(dalle_logits(ctx, text, NULL, 1, 1, 1.0f, logits_out),
                DALLE_ERR_INVALID_ARGUMENT, "image is NULL");
    CHECK_FAILS(dalle_logits(ctx, text, image, 1, 1, 1.0f, logits_out),
                DALLE_ERR_INVALID_ARGUMENT, "image[0][0]");
    CHECK_FAILS(dalle_logits(ctx, text, image, 1, 0, INFINITY, logits_out),
                DALLE_ERR_INVALID_ARGUMENT, "cond_scale");

    /* rows as upstream: <bos> + caption + given image tokens, less the last
     * token of a complete image */
    CHECK(dalle_logits_rows(ctx, 0) == tl + 1 && dalle_logits_rows(ctx, 3) == tl + 4 &&
              dalle_logits_rows(ctx, il) == tl + il && dalle_logits_rows(ctx, il + 1) == 0,
          "dalle_logits_rows");
    {
        /* the teacher-forced and the incremental path agree (3 image tokens, guided) */
        int rows = dalle_logits_rows(ctx, 3), V = dalle_total_tokens(ctx);
        int32_t cap[2 * 256] = {0}, img3[6] = {1, 2, 3, 4, 5, 6};
        for (int i = 0; i < 5; i++)
            cap[i] = 10 + i, cap[tl + i] = 20 + i;
        float *full = malloc(sizeof(float) * 2 * rows * V);
        float *inc = malloc(sizeof(float) * 2 * rows * V);
        int r1 = dalle_logits(ctx, cap, img3, 2, 3, 2.0f, full);
        int r2 = dalle_logits_incremental(ctx, cap, img3, 2, 3, 2.0f, inc);
        double num = 0, den = 0;
        int masks_same = 1;
        for (int i = 0; i < 2 * rows * V; i++) {
            masks_same &= (full[i] == -FLT_MAX) == (inc[i] == -FLT_MAX);
            if (full[i] != -FLT_MAX) {
                num += (double)(full[i] - inc[i]) * (full[i] - inc[i]);
                den += (double)full[i] * full[i];
            }
        }
        CHECK(r1 == DALLE_OK && r2 == DALLE_OK && masks_same && sqrt(num / den) < 1e-5,
              "dalle_logits_incremental = dalle_logits: rel-L2 %.2e", sqrt(num / den));
        free(full);
        free(inc);
    }

    float pixels[4];
    int32_t ids[4096] = {0};
    ids[il - 1] = ni;
    CHECK_FAILS(dalle_decode(ctx, ids, 1, pixels), DALLE_ERR_INVALID_ARGUMENT, "ids[0]");
    CHECK_FAILS(dalle_decode(ctx, ids, 1, NULL), DALLE_ERR_INVALID_ARGUMENT, "pixels is NULL");
    CHECK_FAILS(dalle_tokenize(ctx, "a cat", out, 0, 0), DALLE_ERR_INVALID_ARGUMENT,
                "context_length");
    int untouched = 1;
    for (int i = 0; i < (int)(sizeof out / sizeof *out); i++)
        untouched &= out[i] == -7;
    CHECK(untouched, "outputs untouched by every failed call");
    dalle_ctx_free(ctx);
}

static void test_clip_calls(const char *bundle)
{
    clip_ctx *ctx;
    int rc = clip_ctx_create(bundle, NULL, &ctx);
    CHECK(rc == DALLE_OK, "open %s: %s", bundle, rc ? dalle_last_error() : "");
    if (rc)
        return;
    int tl = clip_text_seq_len(ctx), size = clip_image_size(ctx);
    CHECK(tl > 0 && size > 0, "clip shapes: text %d, image %d px", tl, size);
    int32_t text[256] = {0};
    static float images[3 * 512 * 512];
    float score = -7.0f;
    text[1] = -3;
    CHECK_FAILS(clip_score(ctx, text, images, 1, &score), DALLE_ERR_INVALID_ARGUMENT, "text[1]");
    text[1] = 0;
    images[5] = NAN;
    CHECK_FAILS(clip_score(ctx, text, images, 1, &score), DALLE_ERR_INVALID_ARGUMENT,
                "images[5]");
    images[5] = 0;
    CHECK_FAILS(clip_score(ctx, text, images, 0, &score), DALLE_ERR_INVALID_ARGUMENT, "batch");
    CHECK(score == -7.0f, "score untouched");
    CHECK(strstr(clip_ctx_last_error(ctx), "batch") != NULL, "clip context keeps its error");
    clip_ctx_free(ctx);
}

static void test_png(void)
{
    enum { B = 3, H = 5, W = 7 };
    float px[B * 3 * H * W];
    for (int i = 0; i < B * 3 * H * W; i++)
        px[i] = (float)((i * 37) % 256) / 255.0f;
    px[0] = -1.0f; /* clamped */
    px[1] = 2.0f;
    px[2] = NAN;
    CHECK(dalle_write_png(tmp("grid.png"), px, B, H, W) == DALLE_OK, "write a grid PNG");
    int w, h, n;
    unsigned char *rgb = stbi_load(tmp("grid.png"), &w, &h, &n, 3);
    CHECK(rgb && w == 2 * W && h == 2 * H, "grid of 3 images is 2x2: %dx%d", w, h);
    int same = rgb != NULL;
    for (int b = 0; same && b < B; b++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++) {
                    float v = px[((b * 3 + c) * H + y) * W + x];
                    int want = !(v > 0) ? 0 : v >= 1 ? 255 : (int)lrintf(v * 255.0f);
                    int gx = (b % 2) * W + x, gy = (b / 2) * H + y;
                    same &= rgb[(gy * w + gx) * 3 + c] == want;
                }
    CHECK(same, "PNG pixels equal the clamped, rounded input");
    stbi_image_free(rgb);
    CHECK_FAILS(dalle_write_png(tmp("no/such/dir/x.png"), px, 1, H, W), DALLE_ERR_IO, "x.png");
    CHECK_FAILS(dalle_write_png(tmp("x.png"), px, 1, 0, W), DALLE_ERR_INVALID_ARGUMENT, "0x7");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_api TMPDIR [DALLE_BUNDLE CLIP_BUNDLE]\n");
        return 2;
    }
    snprintf(tmpdir, sizeof tmpdir, "%s", argv[1]);
    test_version_and_errors();
    test_ctx_errors();
    test_png();
    test_old_callers();
    if (argc >= 4) {
        test_dalle_calls(argv[2]);
        test_clip_calls(argv[3]);
    } else {
        printf("note: golden bundles not given; model-bundle checks skipped\n");
    }
    return check_summary();
}
