/* The public CLIP training API (dalle_clip_trainer_*) through the shared
 * library only: argument errors; a short run on the synthetic world must
 * lower the contrastive loss by a stated margin; a saved bundle loads with
 * clip_ctx_create, tokenizes its own captions and scores as the trainer
 * does; a resumed run and a run on another thread count give the same
 * bytes.
 *
 * usage: test_train_clip_api TMPDIR MERGES (CLIP's bpe_simple_vocab_16e6.txt;
 * skips without it) */
#include <dalle/dalle.h>
#include <dalle/train.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_files.h"

static const char *merges;

enum { SIZE = 32, BATCH = 8, T = 16, PX = 3 * SIZE * SIZE };

static dalle_clip_train_params small(int threads)
{
    dalle_clip_train_params p = dalle_clip_train_default_params();
    p.dim_text = p.dim_image = p.dim_latent = 32;
    p.text_enc_depth = p.visual_enc_depth = 1;
    p.text_heads = p.visual_heads = 2;
    p.text_seq_len = T;
    p.visual_image_size = SIZE;
    p.visual_patch_size = 8;
    p.batch = BATCH;
    p.n_threads = threads;
    p.lr = 2e-3;
    p.seed = 3;
    return p;
}

static dalle_image_data *world(int64_t count, uint64_t seed)
{
    dalle_image_data_params dp = dalle_image_data_default_params();
    dp.image_size = SIZE;
    dp.world_seed = seed;
    dp.world_colors = 4;
    dp.world_shapes = 2;
    dp.world_max_objects = 1;
    dp.world_layouts = 0;
    dalle_image_data *d = NULL;
    if (dalle_image_data_synthetic(count, &dp, &d))
        printf("dalle_image_data_synthetic: %s\n", dalle_last_error());
    return d;
}

/* A batch of d tokenized with `tok` (the trainer's own tokenizer). */
static int batch_of(dalle_image_data *d, dalle_tokenizer *tok, int64_t step, int32_t *text,
                    float *images)
{
    const char *caps[BATCH];
    if (dalle_image_data_batch(d, 11, step, BATCH, images, caps, NULL))
        return 1;
    for (int b = 0; b < BATCH; b++)
        if (dalle_tokenizer_tokenize(tok, caps[b], text + b * T, T, 1))
            return 1;
    return 0;
}

static void test_errors(dalle_image_data *d)
{
    dalle_clip_trainer *t = NULL;
    dalle_clip_train_params p = small(1);
    CHECK_FAILS(dalle_clip_trainer_create(merges, &p, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "out is NULL");
    p.visual_patch_size = 5;
    CHECK_FAILS(dalle_clip_trainer_create(merges, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "not a multiple of visual_patch_size 5");
    p = small(1);
    p.dim_text = 0;
    CHECK_FAILS(dalle_clip_trainer_create(merges, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "dim_text = 0");
    p = small(1);
    p.lr_schedule = DALLE_LR_COSINE;
    CHECK_FAILS(dalle_clip_trainer_create(merges, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "total_steps");
    p = small(1);
    CHECK_FAILS(dalle_clip_trainer_create(NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "no tokenizer");
    CHECK_FAILS(dalle_clip_trainer_create(tmp("missing.txt"), &p, &t), DALLE_ERR_IO,
                "missing.txt");
    CHECK(t == NULL, "no trainer after a failed create");
    dalle_bundle_writer *w = NULL;
    if (!dalle_bundle_writer_create("dvae", &w) && !dalle_bundle_writer_finish(w, tmp("k.dalle")))
        CHECK_FAILS(dalle_clip_trainer_resume(tmp("k.dalle"), NULL, &t), DALLE_ERR_MISMATCH,
                    "kind 'dvae'");
    dalle_bundle_writer_free(w);

    /* no tokenizer: explicit ids work, captions cannot be read */
    p.num_text_tokens = 100;
    if (dalle_clip_trainer_create(NULL, &p, &t)) {
        CHECK(0, "create without a tokenizer: %s", dalle_last_error());
        return;
    }
    int32_t text[BATCH * T] = {0};
    uint8_t mask[BATCH * T];
    float *img = calloc((size_t)(BATCH + 1) * PX, sizeof *img);
    for (int b = 0; b < BATCH; b++)
        text[b * T] = 1 + b;
    dalle_clip_train_stats st = dalle_clip_train_default_stats();
    CHECK_FAILS(dalle_clip_trainer_step(t, NULL, NULL, img, 2, &st), DALLE_ERR_INVALID_ARGUMENT,
                "text is NULL");
    CHECK_FAILS(dalle_clip_trainer_step(t, text, NULL, img, BATCH + 1, &st),
                DALLE_ERR_INVALID_ARGUMENT, "batch = 9");
    text[3] = 100;
    CHECK_FAILS(dalle_clip_trainer_step(t, text, NULL, img, 2, &st), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_clip_trainer_step: caption tokens: text[3] = 100: expected [0, 100)");
    text[3] = 0;
    memset(mask, 0, sizeof mask);
    CHECK_FAILS(dalle_clip_trainer_step(t, text, mask, img, 2, &st), DALLE_ERR_INVALID_ARGUMENT,
                "keeps no token");
    img[5] = INFINITY;
    CHECK_FAILS(dalle_clip_trainer_step(t, text, NULL, img, 2, &st), DALLE_ERR_INVALID_ARGUMENT,
                "not finite");
    img[5] = 0;
    st.struct_size = 1;
    CHECK_FAILS(dalle_clip_trainer_step(t, text, NULL, img, 2, &st), DALLE_ERR_INVALID_ARGUMENT,
                "struct_size");
    float sim[4];
    CHECK_FAILS(dalle_clip_trainer_sim(t, sim, 4, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "no forward yet");
    CHECK_FAILS(dalle_clip_trainer_step_data(t, d, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "no tokenizer");
    CHECK(dalle_clip_trainer_steps(t) == 0, "refused steps are not counted");
    st = dalle_clip_train_default_stats();
    CHECK(!dalle_clip_trainer_step(t, text, NULL, img, 1, &st) && st.loss == 0.0 &&
              st.step == 1,
          "a batch of 1 is a loss of 0");
    CHECK_FAILS(dalle_clip_trainer_sim(t, sim, 0, NULL), DALLE_ERR_INVALID_ARGUMENT, "cap = 0");
    free(img);
    dalle_clip_trainer_free(t);

    /* a caption longer than text_seq_len is named at the first step */
    p = small(1);
    p.text_seq_len = 2;
    if (!dalle_clip_trainer_create(merges, &p, &t))
        CHECK_FAILS(dalle_clip_trainer_step_data(t, d, NULL), DALLE_ERR_TOO_LONG, "caption \"");
    dalle_clip_trainer_free(t);
    t = NULL;
    p = small(1);
    p.visual_image_size = 64;
    if (!dalle_clip_trainer_create(merges, &p, &t))
        CHECK_FAILS(dalle_clip_trainer_step_data(t, d, NULL), DALLE_ERR_MISMATCH,
                    "the images are 32 px, the model takes 64");
    dalle_clip_trainer_free(t);
}

static void test_training(dalle_image_data *d, dalle_image_data *held)
{
    dalle_clip_train_params p = small(2);
    dalle_clip_trainer *t = NULL;
    dalle_tokenizer *tok = NULL;
    if (dalle_clip_trainer_create(merges, &p, &t) || dalle_tokenizer_create(merges, &tok)) {
        CHECK(0, "create: %s", dalle_last_error());
        return;
    }
    int32_t text[BATCH * T];
    float *img = malloc(sizeof(float) * BATCH * PX);
    dalle_clip_train_stats e0 = dalle_clip_train_default_stats(), e1 = e0, st = e0;
    int ok = !batch_of(held, tok, 0, text, img) &&
             !dalle_clip_trainer_eval(t, text, NULL, img, BATCH, &e0);
    for (int i = 0; ok && i < 240; i++)
        ok = !dalle_clip_trainer_step_data(t, d, &st);
    ok = ok && !dalle_clip_trainer_eval(t, text, NULL, img, BATCH, &e1);
    CHECK(ok && e1.loss < 0.67 * e0.loss,
          "240 steps: the loss of a batch never trained on %.4f -> %.4f (must fall by a third), accuracy "
          "%.2f -> %.2f; last step loss %.4f",
          e0.loss, e1.loss, e0.accuracy, e1.accuracy, st.loss);
    CHECK(dalle_clip_trainer_steps(t) == 240 && st.step == 240 && st.epoch == 239 / 8,
          "steps and epochs counted (step %lld, epoch %lld)", (long long)st.step,
          (long long)st.epoch);
    dalle_clip_train_params got = dalle_clip_train_default_params();
    CHECK(!dalle_clip_trainer_get_params(t, &got) && got.num_text_tokens == 49408 &&
              got.text_seq_len == T,
          "num_text_tokens resolved to the tokenizer's vocabulary (%d)", got.num_text_tokens);

    /* the saved bundle tokenizes and scores as the trainer does */
    float sim[BATCH * BATCH], lpi[BATCH * BATCH];
    int nb = 0;
    ok = ok && !dalle_clip_trainer_sim(t, sim, BATCH * BATCH, &nb) && nb == BATCH &&
         !dalle_clip_trainer_save(t, tmp("clip.dalle"), 0);
    CHECK(ok, "save the trained CLIP");
    clip_ctx *ctx = NULL;
    dalle_tokenizer *own = NULL;
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = 1;
    if (!ok || clip_ctx_create(tmp("clip.dalle"), &cp, &ctx) ||
        dalle_tokenizer_create(tmp("clip.dalle"), &own)) {
        CHECK(0, "clip_ctx_create / dalle_tokenizer_create: %s", dalle_last_error());
    } else {
        int32_t again[T];
        const char *cap = dalle_image_data_caption(held, 0, 0);
        CHECK(!dalle_tokenizer_tokenize(own, cap, again, T, 1) &&
                  !dalle_tokenizer_tokenize(tok, cap, text, T, 1) &&
                  !memcmp(again, text, sizeof again),
              "the bundle's own tokenizer reads \"%s\" as the merges file does", cap);
        batch_of(held, tok, 0, text, img);
        double diff = 0;
        ok = clip_image_size(ctx) == SIZE && clip_text_seq_len(ctx) == T &&
             !clip_logits_per_image(ctx, img, BATCH, text, BATCH, lpi);
        for (int i = 0; ok && i < BATCH; i++)
            for (int j = 0; j < BATCH; j++)
                diff = fmax(diff, fabs((double)sim[i * BATCH + j] - lpi[j * BATCH + i]));
        CHECK(ok && diff <= 1e-4,
              "clip_logits_per_image of the saved CLIP = the trainer's sim, transposed (max "
              "diff %.3g)",
              diff);
    }
    clip_ctx_free(ctx);
    dalle_tokenizer_free(own);
    dalle_tokenizer_free(tok);
    free(img);
    dalle_clip_trainer_free(t);
}

static int run(dalle_clip_trainer *t, dalle_image_data *d, int64_t until)
{
    while (dalle_clip_trainer_steps(t) < until)
        if (dalle_clip_trainer_step_data(t, d, NULL)) {
            printf("step: %s\n", dalle_last_error());
            return 1;
        }
    return 0;
}

static void test_resume_and_threads(dalle_image_data *d)
{
    dalle_clip_trainer *t = NULL, *u = NULL;
    dalle_clip_train_params p = small(1);
    p.lr_schedule = DALLE_LR_COSINE; /* the schedule moves within the test */
    p.warmup_steps = 2;
    p.total_steps = 20;
    p.weight_decay = 0.01;
    if (dalle_clip_trainer_create(merges, &p, &t) || run(t, d, 5) ||
        dalle_clip_trainer_save(t, tmp("clip.ckpt"), 1) || run(t, d, 10) ||
        dalle_clip_trainer_save(t, tmp("clip_a.dalle"), 1)) {
        CHECK(0, "uninterrupted run: %s", dalle_last_error());
        dalle_clip_trainer_free(t);
        return;
    }
    dalle_clip_trainer_free(t);
    dalle_clip_train_params rp = dalle_clip_train_default_params();
    rp.n_threads = 2;
    int ok = !dalle_clip_trainer_resume(tmp("clip.ckpt"), &rp, &u);
    CHECK(ok && dalle_clip_trainer_steps(u) == 5, "resume at step 5%s%s", ok ? "" : ": ",
          ok ? "" : dalle_last_error());
    ok = ok && !run(u, d, 10) && !dalle_clip_trainer_save(u, tmp("clip_b.dalle"), 1);
    CHECK(ok && same_file(tmp("clip_a.dalle"), tmp("clip_b.dalle")),
          "5 steps, checkpoint, resume (2 threads), 5 steps = 10 steps on 1 thread: same bytes");
    dalle_clip_trainer_free(u);
    u = NULL;
    rp = small(1);
    rp.lr = 5e-5;
    ok = !dalle_clip_trainer_resume(tmp("clip.dalle"), &rp, &u);
    dalle_clip_train_params got = dalle_clip_train_default_params();
    CHECK(ok && dalle_clip_trainer_steps(u) == 0 && !dalle_clip_trainer_get_params(u, &got) &&
              got.lr == 5e-5 && got.dim_latent == 32 && !run(u, d, 1),
          "resume from weights only (fine-tuning): step 0, the caller's lr, steps on");
    dalle_clip_trainer_free(u);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: test_train_clip_api TMPDIR MERGES\n");
        return 2;
    }
    tmpdir = argv[1];
    merges = argv[2];
    FILE *f = fopen(merges, "rb");
    if (!f)
        SKIP("no merges file at %s", merges);
    fclose(f);
    dalle_image_data *d = world(64, 0), *held = world(BATCH, 1000);
    CHECK(d && held && dalle_image_data_count(d) == 64, "64 synthetic images of 32 px");
    if (d && held) {
        test_errors(d);
        test_training(d, held);
        test_resume_and_threads(d);
    }
    dalle_image_data_free(d);
    dalle_image_data_free(held);
    return check_summary();
}
