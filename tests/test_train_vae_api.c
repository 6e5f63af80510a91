/* The public VAE training API (dalle_vae_trainer_*, dalle_image_data_*)
 * through the shared library only: argument errors; a short run on the
 * synthetic world must cut the encode → decode error below a quarter; a saved bundle
 * loads with dalle_ctx_create and encodes / decodes as the trainer does; a
 * resumed run and a run on another thread count give the same bytes.
 *
 * usage: test_train_vae_api TMPDIR */
#include <dalle/dalle.h>
#include <dalle/train.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_files.h"

enum { SIZE = 32, BATCH = 4, PX = 3 * SIZE * SIZE };

/* A tiny VAE: 32 px, 8 × 8 tokens of 64. */
static dalle_vae_train_params small(int threads)
{
    dalle_vae_train_params p = dalle_vae_train_default_params();
    p.image_size = SIZE;
    p.num_tokens = 64;
    p.codebook_dim = 32;
    p.num_layers = 2;
    p.num_resnet_blocks = 1;
    p.hidden_dim = 16;
    p.batch = BATCH;
    p.n_threads = threads;
    p.lr = 3e-3;
    p.seed = 7;
    return p;
}

static dalle_image_data *world(int64_t count)
{
    dalle_image_data_params dp = dalle_image_data_default_params();
    dp.image_size = SIZE;
    dp.world_colors = 3;
    dp.world_shapes = 2;
    dp.world_max_objects = 1;
    dp.world_layouts = 0;
    dalle_image_data *d = NULL;
    if (dalle_image_data_synthetic(count, &dp, &d))
        printf("dalle_image_data_synthetic: %s\n", dalle_last_error());
    return d;
}

static void test_errors(dalle_image_data *d)
{
    dalle_vae_trainer *t = NULL;
    dalle_vae_train_params p = small(1);
    CHECK_FAILS(dalle_vae_trainer_create(&p, NULL), DALLE_ERR_INVALID_ARGUMENT, "out is NULL");
    p.image_size = 48;
    CHECK_FAILS(dalle_vae_trainer_create(&p, &t), DALLE_ERR_INVALID_ARGUMENT, "image_size = 48");
    p = small(1);
    p.num_tokens = 1;
    CHECK_FAILS(dalle_vae_trainer_create(&p, &t), DALLE_ERR_INVALID_ARGUMENT, "num_tokens = 1");
    p = small(1);
    p.batch = 0;
    CHECK_FAILS(dalle_vae_trainer_create(&p, &t), DALLE_ERR_INVALID_ARGUMENT, "batch = 0");
    p = small(1);
    p.lr_decay = 1.5;
    CHECK_FAILS(dalle_vae_trainer_create(&p, &t), DALLE_ERR_INVALID_ARGUMENT, "lr_decay");
    p = small(1);
    p.struct_size = 3;
    CHECK_FAILS(dalle_vae_trainer_create(&p, &t), DALLE_ERR_INVALID_ARGUMENT, "struct_size");
    CHECK(t == NULL, "no trainer after a failed create");
    CHECK_FAILS(dalle_vae_trainer_resume(tmp("missing.dalle"), NULL, &t), DALLE_ERR_IO,
                "missing.dalle");

    dalle_image_data *bad = NULL;
    dalle_image_data_params dp = dalle_image_data_default_params();
    CHECK_FAILS(dalle_image_data_synthetic(0, &dp, &bad), DALLE_ERR_INVALID_ARGUMENT,
                "count = 0");
    dp.image_size = 8;
    CHECK_FAILS(dalle_image_data_synthetic(4, &dp, &bad), DALLE_ERR_INVALID_ARGUMENT,
                "image_size = 8");
    dp = dalle_image_data_default_params();
    CHECK_FAILS(dalle_image_data_folder(tmp("no-such-dir"), &dp, &bad), DALLE_ERR_IO,
                "no-such-dir");
    CHECK(dalle_image_data_count(NULL) == 0 && dalle_image_data_caption(d, -1, 0) == NULL &&
              dalle_image_data_caption(d, 0, 1) == NULL &&
              dalle_image_data_caption_count(d, 0) == 1,
          "image data queries out of range");
    float px[2 * PX];
    const char *caps[2];
    CHECK_FAILS(dalle_image_data_batch(d, 0, 0, 0, px, caps, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "batch 0");
    CHECK_FAILS(dalle_image_data_batch(d, 0, -1, 2, px, caps, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "step -1");

    p = small(1);
    if (dalle_vae_trainer_create(&p, &t)) {
        CHECK(0, "create: %s", dalle_last_error());
        return;
    }
    float *pix = calloc((size_t)(BATCH + 1) * PX, sizeof *pix);
    dalle_vae_train_stats st = dalle_vae_train_default_stats();
    CHECK_FAILS(dalle_vae_trainer_step(t, NULL, 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "pixels is NULL");
    CHECK_FAILS(dalle_vae_trainer_step(t, pix, BATCH + 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "batch = 5");
    pix[17] = NAN;
    CHECK_FAILS(dalle_vae_trainer_step(t, pix, 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "pixels[17] is not finite");
    pix[17] = 0;
    st.struct_size = 0;
    CHECK_FAILS(dalle_vae_trainer_step(t, pix, 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "struct_size");
    CHECK(dalle_vae_trainer_steps(t) == 0, "a refused step is not counted");
    int32_t ids[64];
    ids[0] = 64;
    CHECK_FAILS(dalle_vae_trainer_decode(t, ids, 1, pix), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_vae_trainer_decode: ids[0] = 64 is outside [0, 64)");
    dalle_image_data_params dp64 = dalle_image_data_default_params();
    dp64.image_size = 64;
    dalle_image_data *d64 = NULL;
    if (!dalle_image_data_synthetic(8, &dp64, &d64))
        CHECK_FAILS(dalle_vae_trainer_step_data(t, d64, NULL), DALLE_ERR_MISMATCH,
                    "the images are 64 px, the model takes 32");
    dalle_image_data_free(d64);
    /* a bundle of another kind is not a VAE checkpoint */
    dalle_bundle_writer *w = NULL;
    if (!dalle_bundle_writer_create("clip", &w) && !dalle_bundle_writer_finish(w, tmp("k.dalle")))
        CHECK_FAILS(dalle_vae_trainer_resume(tmp("k.dalle"), NULL, &t), DALLE_ERR_MISMATCH,
                    "kind 'clip'");
    dalle_bundle_writer_free(w);
    free(pix);
    dalle_vae_trainer_free(t);
}

/* Mean squared error of encode → decode over n images of d. */
static double recon_error(dalle_vae_trainer *t, dalle_image_data *d, int n)
{
    float *in = malloc(sizeof(float) * BATCH * PX), *out = malloc(sizeof(float) * BATCH * PX);
    int32_t ids[BATCH * 64];
    double sum = 0;
    for (int s = 0; s < n / BATCH; s++) {
        dalle_image_data_batch(d, 99, s, BATCH, in, NULL, NULL);
        if (dalle_vae_trainer_encode(t, in, BATCH, ids) ||
            dalle_vae_trainer_decode(t, ids, BATCH, out)) {
            sum = INFINITY;
            break;
        }
        for (int i = 0; i < BATCH * PX; i++)
            sum += ((double)out[i] - in[i]) * ((double)out[i] - in[i]);
    }
    free(in);
    free(out);
    return sum / ((double)(n / BATCH) * BATCH * PX);
}

/* Train `steps` steps from a fresh trainer (or continue t). */
static int run(dalle_vae_trainer *t, dalle_image_data *d, int64_t until, double *last_loss)
{
    while (dalle_vae_trainer_steps(t) < until) {
        dalle_vae_train_stats st = dalle_vae_train_default_stats();
        if (dalle_vae_trainer_step_data(t, d, &st)) {
            printf("step: %s\n", dalle_last_error());
            return 1;
        }
        if (last_loss)
            *last_loss = st.loss;
    }
    return 0;
}

static void test_training(dalle_image_data *d)
{
    dalle_vae_train_params p = small(2);
    dalle_vae_trainer *t = NULL;
    if (dalle_vae_trainer_create(&p, &t)) {
        CHECK(0, "create: %s", dalle_last_error());
        return;
    }
    double before = recon_error(t, d, 16), loss = 0;
    int rc = run(t, d, 150, &loss);
    double after = recon_error(t, d, 16);
    CHECK(!rc && after < 0.25 * before,
          "150 steps: encode/decode MSE %.4f -> %.4f (must fall below a quarter), last loss %.4f", before, after,
          loss);
    dalle_vae_train_params got = dalle_vae_train_default_params();
    CHECK(!dalle_vae_trainer_get_params(t, &got) && got.image_size == SIZE && got.lr < p.lr &&
              got.starting_temp < 1.0,
          "get_params: lr %.6g decayed, temperature %.6g annealed", got.lr, got.starting_temp);

    /* the saved bundle encodes and decodes as the trainer does */
    CHECK(!dalle_vae_trainer_save(t, tmp("vae.dalle"), 0), "save the trained VAE");
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = 1;
    cp.max_batch = BATCH;
    dalle_ctx *ctx = NULL;
    if (dalle_ctx_create(tmp("vae.dalle"), &cp, &ctx)) {
        CHECK(0, "dalle_ctx_create: %s", dalle_last_error());
    } else {
        float *in = malloc(sizeof(float) * BATCH * PX), *a = malloc(sizeof(float) * BATCH * PX),
              *b = malloc(sizeof(float) * BATCH * PX);
        int32_t ia[BATCH * 64], ib[BATCH * 64];
        dalle_image_data_batch(d, 5, 0, BATCH, in, NULL, NULL);
        int ok = dalle_image_seq_len(ctx) == 64 && dalle_num_image_tokens(ctx) == 64 &&
                 dalle_image_size(ctx) == SIZE && !dalle_vae_trainer_encode(t, in, BATCH, ia) &&
                 !dalle_encode(ctx, in, BATCH, ib);
        CHECK(ok && !memcmp(ia, ib, sizeof ia), "dalle_encode of the saved VAE = the trainer's");
        double diff = 0;
        ok = ok && !dalle_vae_trainer_decode(t, ia, BATCH, a) && !dalle_decode(ctx, ia, BATCH, b);
        for (int i = 0; ok && i < BATCH * PX; i++)
            diff = fmax(diff, fabs((double)a[i] - b[i]));
        CHECK(ok && diff <= 1e-5, "dalle_decode of the saved VAE = the trainer's (max diff %.3g)",
              diff);
        free(in);
        free(a);
        free(b);
        dalle_ctx_free(ctx);
    }
    dalle_vae_trainer_free(t);
}

static void test_resume_and_threads(dalle_image_data *d)
{
    dalle_vae_trainer *t = NULL, *u = NULL;
    dalle_vae_train_params p = small(1);
    p.anneal_every = 3; /* the schedule moves within the test */
    p.anneal_rate = 1e-2;
    if (dalle_vae_trainer_create(&p, &t) || run(t, d, 7, NULL) ||
        dalle_vae_trainer_save(t, tmp("vae.ckpt"), 1) || run(t, d, 14, NULL) ||
        dalle_vae_trainer_save(t, tmp("vae_a.dalle"), 1)) {
        CHECK(0, "uninterrupted run: %s", dalle_last_error());
        dalle_vae_trainer_free(t);
        return;
    }
    dalle_vae_trainer_free(t);
    dalle_vae_train_params rp = dalle_vae_train_default_params();
    rp.n_threads = 2;
    int ok = !dalle_vae_trainer_resume(tmp("vae.ckpt"), &rp, &u);
    CHECK(ok && dalle_vae_trainer_steps(u) == 7, "resume at step 7: %s",
          ok ? "" : dalle_last_error());
    ok = ok && !run(u, d, 14, NULL) && !dalle_vae_trainer_save(u, tmp("vae_b.dalle"), 1);
    CHECK(ok && same_file(tmp("vae_a.dalle"), tmp("vae_b.dalle")),
          "7 steps, checkpoint, resume (2 threads), 7 steps = 14 steps on 1 thread: same bytes");
    dalle_vae_trainer_free(u);
    /* fine-tuning: a checkpoint without optimiser state takes params' settings */
    u = NULL;
    ok = !dalle_vae_trainer_save(t = NULL, tmp("x"), 0); /* NULL trainer: refused */
    CHECK(!ok, "save(NULL) refused");
    rp = small(1);
    rp.lr = 1e-4;
    ok = !dalle_vae_trainer_resume(tmp("vae.dalle"), &rp, &u);
    dalle_vae_train_params got = dalle_vae_train_default_params();
    CHECK(ok && dalle_vae_trainer_steps(u) == 0 && !dalle_vae_trainer_get_params(u, &got) &&
              got.lr == 1e-4 && got.num_resnet_blocks == 1,
          "resume from weights only: step 0, the caller's lr");
    dalle_vae_trainer_free(u);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_train_vae_api TMPDIR\n");
        return 2;
    }
    tmpdir = argv[1];
    dalle_image_data *d = world(64);
    CHECK(d && dalle_image_data_count(d) == 64 && dalle_image_data_image_size(d) == SIZE,
          "64 synthetic images of 32 px");
    if (!d)
        return check_summary();
    test_errors(d);
    test_training(d);
    test_resume_and_threads(d);
    dalle_image_data_free(d);
    return check_summary();
}
