/* The public training API (include/dalle/train.h) through the shared
 * library only: argument errors; a short run on the synthetic world must
 * lower the loss; a saved model loads with dalle_ctx_create and its
 * dalle_logits are the trainer's; a resumed run and a run on another
 * thread count give the same bytes.
 *
 * usage: test_train_api TMPDIR [VAE_BUNDLE TOKENIZER_BUNDLE]
 * (the golden vae_resblocks and dalle_full bundles; skips without them) */
#include <dalle/dalle.h>
#include <dalle/train.h>
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "train_files.h"

static const char *vae, *tok;

/* A small model: what every test here trains. */
static dalle_train_params small_params(const dalle_token_data *d)
{
    dalle_train_params p = dalle_train_default_params();
    p.dim = 32;
    p.depth = 2;
    p.heads = 2;
    p.dim_head = 16;
    p.text_seq_len = dalle_token_data_text_seq_len(d);
    /* only the ids the captions use: a far smaller logits layer than the
     * 49408 of the CLIP vocabulary */
    p.num_text_tokens = dalle_token_data_max_text_id(d) + 1;
    p.batch = 4;
    p.lr = 2e-3;
    p.seed = 7;
    p.n_threads = 1;
    p.attn_types = "full,axial_row";
    return p;
}

static void argument_errors(void)
{
    dalle_trainer *t = NULL;
    dalle_token_data *d = NULL;
    dalle_train_params p = dalle_train_default_params();
    CHECK_FAILS(dalle_trainer_create(NULL, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "vae_bundle is NULL");
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "out is NULL");
    p.dim = 0;
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT, ".dim = 0");
    p = dalle_train_default_params();
    p.struct_size = 3;
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "struct_size = 3");
    p = dalle_train_default_params();
    p.attn_types = "full,sparse";
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_UNSUPPORTED, "'sparse'");
    p.attn_types = "full,diagonal";
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "'diagonal'");
    p = dalle_train_default_params();
    p.lr_schedule = DALLE_LR_COSINE;
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "total_steps");
    p = dalle_train_default_params();
    p.dim_head = 8; /* upstream's rotary embedding needs dim_head // 3 != 2 */
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "DALL-E transformer: dim_head = 8: upstream's rotary embedding");
    p = dalle_train_default_params();
    CHECK_FAILS(dalle_trainer_create(tmp("no_such.dalle"), NULL, &p, &t), DALLE_ERR_IO,
                "no_such.dalle");
    CHECK_FAILS(dalle_trainer_create(vae, tmp("no_such.txt"), &p, &t), DALLE_ERR_IO,
                "no_such.txt");
    CHECK_FAILS(dalle_trainer_resume(vae, NULL, &t), DALLE_ERR_MISMATCH, "kind 'dvae'");
    p = dalle_train_default_params();
    p.null_cond_prob = 1.5;
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "null_cond_prob = 1.5");
    p = dalle_train_default_params();
    p.ff_dropout = 1.0;
    CHECK_FAILS(dalle_trainer_create(vae, NULL, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "ff_dropout = 1");
    p = dalle_train_default_params();
    p.attn_types = "full,axial_row";
    p.shared_attn_ids = "a,a";
    CHECK_FAILS(dalle_trainer_create(vae, tok, &p, &t), DALLE_ERR_INVALID_ARGUMENT,
                "attn_types differ");
    CHECK(t == NULL, "failed calls leave *out alone");

    dalle_token_data_params dp = dalle_token_data_default_params();
    CHECK_FAILS(dalle_token_data_synthetic(vae, tok, 0, &dp, &d), DALLE_ERR_INVALID_ARGUMENT,
                "count = 0");
    dp.text_seq_len = 2;
    CHECK_FAILS(dalle_token_data_synthetic(vae, tok, 4, &dp, &d), DALLE_ERR_TOO_LONG,
                "synthetic item 0");
    dp.text_seq_len = 0;
    CHECK_FAILS(dalle_token_data_synthetic(vae, tok, 4, &dp, &d), DALLE_ERR_INVALID_ARGUMENT,
                "text_seq_len = 0");
    dp = dalle_token_data_default_params();
    CHECK_FAILS(dalle_token_data_folder(vae, tok, tmp("no_such_dir"), &dp, &d), DALLE_ERR_IO,
                "no_such_dir");
    CHECK(d == NULL && dalle_token_data_count(NULL) == 0 && dalle_trainer_steps(NULL) == 0,
          "NULL handles: counts 0");
    dalle_trainer_free(NULL);
    dalle_token_data_free(NULL);
}

/* Step / eval arguments on a live trainer. */
static void step_errors(dalle_trainer *t, const dalle_token_data *d)
{
    const int T = dalle_token_data_text_seq_len(d), I = dalle_token_data_image_seq_len(d);
    int32_t *text = calloc((size_t)5 * T, sizeof *text), *image = calloc((size_t)5 * I, 4);
    dalle_train_stats st = dalle_train_default_stats();
    CHECK_FAILS(dalle_trainer_step(t, text, image, 5, &st), DALLE_ERR_INVALID_ARGUMENT,
                "batch = 5 (1..4)");
    CHECK_FAILS(dalle_trainer_step(t, NULL, image, 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "text is NULL");
    image[3] = 100000;
    CHECK_FAILS(dalle_trainer_step(t, text, image, 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_trainer_step: image tokens: image[3] = 100000");
    image[3] = 0;
    text[1] = -1;
    CHECK_FAILS(dalle_trainer_eval(t, text, image, 5, &st), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_trainer_eval: caption tokens: text[1] = -1");
    text[1] = 0;
    st.struct_size = 0;
    CHECK_FAILS(dalle_trainer_step(t, text, image, 1, &st), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_train_default_stats");
    float one;
    CHECK_FAILS(dalle_trainer_logits(t, &one, 1, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "no forward yet");
    CHECK(dalle_trainer_steps(t) == 0, "failed steps are not counted");
    CHECK_FAILS(dalle_trainer_epoch_end(t, NAN), DALLE_ERR_INVALID_ARGUMENT, "not finite");
    free(text);
    free(image);
}

/* Mean loss of the whole set, as eval computes it. */
static double eval_all(dalle_trainer *t, const dalle_token_data *dc, int32_t *text,
                       int32_t *image)
{
    dalle_token_data *d = (dalle_token_data *)dc;
    const int n = (int)dalle_token_data_count(d);
    dalle_train_stats st = dalle_train_default_stats();
    /* one "step" of batch n is the whole set (epoch 0, shuffled) */
    if (dalle_token_data_batch(d, 1, 0, n, text, image) ||
        dalle_trainer_eval(t, text, image, n, &st))
        return NAN;
    return st.loss;
}

static void training_run(dalle_token_data *d)
{
    dalle_train_params p = small_params(d);
    dalle_trainer *t = NULL;
    dalle_status s = dalle_trainer_create(vae, tok, &p, &t);
    CHECK(!s, "create on the golden VAE: %lld weights %s", (long long)dalle_trainer_num_params(t),
          s ? dalle_last_error() : "");
    if (s)
        return;
    step_errors(t, d);
    const int n = (int)dalle_token_data_count(d), T = p.text_seq_len;
    const int I = dalle_token_data_image_seq_len(d);
    int32_t *text = malloc((size_t)n * T * sizeof *text), *image = malloc((size_t)n * I * 4);
    const double before = eval_all(t, d, text, image);
    dalle_train_stats st = dalle_train_default_stats();
    const int steps = 60;
    for (int i = 0; i < steps && !s; i++)
        s = dalle_trainer_step_data(t, d, &st);
    const double after = eval_all(t, d, text, image);
    CHECK(!s && st.step == steps && st.epoch == (steps - 1) / (n / 4) && !st.skipped &&
              st.tokens == 4 * (T + I) && st.grad_norm > 0 && st.lr == p.lr,
          "%d steps: stats step %lld, epoch %lld, %lld tokens, lr %g %s", steps,
          (long long)st.step, (long long)st.epoch, (long long)st.tokens, st.lr,
          s ? dalle_last_error() : "");
    /* the stated margin: the mean loss over the set falls by at least 40% */
    CHECK(after < 0.6 * before, "%d steps of batch 4 on %d synthetic pairs: loss %.3f -> %.3f "
          "(must fall below 60%%)", steps, n, before, after);

    /* save -> dalle_ctx_create -> dalle_logits = the trainer's forward */
    const char *path = tmp("test_train_api_model.dalle");
    const int B = 3;
    s = dalle_trainer_save(t, path, 0);
    dalle_ctx *ctx = NULL;
    if (!s)
        s = dalle_ctx_create(path, NULL, &ctx);
    dalle_train_stats es = dalle_train_default_stats();
    if (!s)
        s = dalle_trainer_eval(t, text, image, B, &es);
    const size_t V = (size_t)dalle_total_tokens(ctx), N = (size_t)(T + I);
    float *mine = malloc(B * N * (V ? V : 1) * sizeof *mine);
    float *theirs = malloc(B * N * (V ? V : 1) * sizeof *theirs);
    int got_batch = 0;
    if (!s)
        s = dalle_trainer_logits(t, mine, B * N * V, &got_batch);
    if (!s)
        s = dalle_logits(ctx, text, image, B, I, 1.0f, theirs);
    if (s) {
        CHECK(0, "save / load / logits: %s", dalle_last_error());
    } else {
        double worst = 0, scale = 0;
        int masks = got_batch == B && dalle_logits_rows(ctx, I) == (int)N;
        for (size_t i = 0; i < B * N * V; i++) {
            if ((mine[i] == -FLT_MAX) != (theirs[i] == -FLT_MAX))
                masks = 0;
            else if (mine[i] != -FLT_MAX) {
                worst = fmax(worst, fabs(mine[i] - theirs[i]));
                scale = fmax(scale, fabs(theirs[i]));
            }
        }
        CHECK(masks && worst <= 1e-5 * scale,
              "saved model -> dalle_ctx_create -> dalle_logits = trainer logits (max |diff| "
              "%.2e of %.2f)", worst, scale);
        CHECK(dalle_num_text_tokens(ctx) == p.num_text_tokens &&
                  dalle_text_seq_len(ctx) == T && dalle_image_seq_len(ctx) == I,
              "the bundle's shapes are the trainer's");
        /* it generates at once: its own tokenizer and VAE */
        int32_t cap_ids[64] = {0}, img[1024];
        float *px = malloc(sizeof(float) * 3 * 64 * 64);
        dalle_sample_params sp = dalle_sample_default_params();
        sp.seed = 3;
        s = dalle_tokenize(ctx, "a red circle", cap_ids, T, 0);
        if (!s)
            s = dalle_sample(ctx, cap_ids, 1, &sp, img);
        if (!s)
            s = dalle_decode(ctx, img, 1, px);
        CHECK(!s && dalle_image_size(ctx) == 64, "the saved model tokenizes, samples and decodes %s",
              s ? dalle_last_error() : "");
        free(px);
    }
    free(mine);
    free(theirs);
    dalle_ctx_free(ctx);
    remove(path);
    free(text);
    free(image);
    dalle_trainer_free(t);
}

/* Run `steps` steps of step_data; save with the optimiser at `save_at`
 * (when >= 0) to ckpt; finally save to `final`. */
static dalle_status run(dalle_trainer *t, dalle_token_data *d, int steps, int save_at,
                        const char *ckpt, const char *final)
{
    dalle_status s = DALLE_OK;
    for (int i = 0; i < steps && !s; i++) {
        if (i == save_at)
            s = dalle_trainer_save(t, ckpt, 1);
        /* a bad epoch by hand: the plateau schedule (patience 0) halves lr,
         * a change the checkpoint must carry */
        if (!s && dalle_trainer_steps(t) == 2)
            s = dalle_trainer_epoch_end(t, 100.0);
        if (!s)
            s = dalle_trainer_step_data(t, d, NULL);
    }
    return s ? s : dalle_trainer_save(t, final, 1);
}

/* The trainer's logits of its last evaluation against dalle_logits of the
 * model saved at `path`: the same within float rounding. */
static int logits_match(dalle_trainer *t, const char *path, const int32_t *text,
                        const int32_t *image, int B, double *worst_out)
{
    dalle_ctx *ctx = NULL;
    dalle_train_stats es = dalle_train_default_stats();
    dalle_status s = dalle_ctx_create(path, NULL, &ctx);
    if (!s)
        s = dalle_trainer_eval(t, text, image, B, &es);
    const size_t V = s ? 1 : (size_t)dalle_total_tokens(ctx);
    const int I = s ? 1 : dalle_image_seq_len(ctx);
    const size_t N = s ? 1 : (size_t)(dalle_text_seq_len(ctx) + I);
    float *mine = malloc(B * N * V * sizeof *mine), *theirs = malloc(B * N * V * sizeof *mine);
    if (!s)
        s = dalle_trainer_logits(t, mine, B * N * V, NULL);
    if (!s)
        s = dalle_logits(ctx, text, image, B, I, 1.0f, theirs);
    double worst = 0.0, scale = 0.0;
    int ok = !s;
    for (size_t i = 0; ok && i < B * N * V; i++) {
        if ((mine[i] == -FLT_MAX) != (theirs[i] == -FLT_MAX))
            ok = 0;
        else if (mine[i] != -FLT_MAX) {
            worst = fmax(worst, fabs(mine[i] - theirs[i]));
            scale = fmax(scale, fabs(theirs[i]));
        }
    }
    if (s)
        fprintf(stderr, "logits_match: %s\n", dalle_last_error());
    *worst_out = worst;
    free(mine);
    free(theirs);
    dalle_ctx_free(ctx);
    return ok && worst <= 1e-5 * scale;
}

/* null_cond_prob, dropout, stable, sandwich_norm and shared layers through
 * the public API: old callers' struct_size, training lowers the loss, a
 * resume gives the bits of the uninterrupted run, the saved model loads in
 * inference with these hyper-parameters. */
static void options_run(dalle_token_data *d, dalle_token_data *small)
{
    /* a caller built before the new fields: their defaults */
    dalle_train_params old = dalle_train_default_params();
    old.struct_size = offsetof(dalle_train_params, null_cond_prob);
    old.num_text_tokens = dalle_token_data_max_text_id(d) + 1;
    old.dim = 32, old.depth = 1, old.heads = 2, old.dim_head = 16, old.text_seq_len = 24;
    dalle_trainer *t = NULL;
    dalle_status s = dalle_trainer_create(vae, tok, &old, &t);
    dalle_train_params got = dalle_train_default_params();
    if (!s)
        s = dalle_trainer_get_params(t, &got);
    CHECK(!s && got.null_cond_prob == 0.0 && got.attn_dropout == 0.0 && !got.stable &&
              !got.sandwich_norm && !got.shared_attn_ids,
          "an older caller's dalle_train_params (struct_size %zu) is accepted; the new "
          "fields are their defaults %s",
          old.struct_size, s ? dalle_last_error() : "");
    dalle_trainer_free(t);
    t = NULL;

    /* null_cond_prob 1: every caption is the empty one, in the input and
     * the labels alike: the step's loss is that of empty captions */
    {
        dalle_train_params q = small_params(d);
        q.null_cond_prob = 1.0;
        dalle_trainer *u = NULL;
        int32_t tx[4 * 24], im[4 * 64], none[4 * 24] = {0};
        dalle_train_stats e0 = dalle_train_default_stats(), s0 = dalle_train_default_stats();
        s = dalle_trainer_create(vae, tok, &q, &u);
        if (!s)
            s = dalle_token_data_batch(d, 1, 0, 4, tx, im);
        if (!s)
            s = dalle_trainer_eval(u, none, im, 4, &e0);
        if (!s)
            s = dalle_trainer_step(u, tx, im, 4, &s0);
        CHECK(!s && s0.loss == e0.loss && s0.loss_text == e0.loss_text,
              "null_cond_prob 1: the step's loss %.6f (text %.6f) is the loss of empty captions "
              "%.6f (text %.6f) %s",
              s0.loss, s0.loss_text, e0.loss, e0.loss_text, s ? dalle_last_error() : "");
        dalle_trainer_free(u);
    }

    /* classifier-free guidance training still learns */
    dalle_train_params p = small_params(d);
    p.null_cond_prob = 0.2;
    p.attn_dropout = 0.1;
    p.ff_dropout = 0.1;
    s = dalle_trainer_create(vae, tok, &p, &t);
    const int n = (int)dalle_token_data_count(d), T = p.text_seq_len;
    const int I = dalle_token_data_image_seq_len(d);
    int32_t *text = malloc((size_t)n * T * sizeof *text), *image = malloc((size_t)n * I * 4);
    const double before = s ? NAN : eval_all(t, d, text, image);
    dalle_train_stats st = dalle_train_default_stats();
    for (int i = 0; i < 60 && !s; i++)
        s = dalle_trainer_step_data(t, d, &st);
    const double after = s ? NAN : eval_all(t, d, text, image);
    /* the unconditional loss: every caption empty */
    int32_t *empty = calloc((size_t)n * T, sizeof *empty);
    dalle_train_stats es = dalle_train_default_stats();
    if (!s)
        s = dalle_trainer_eval(t, empty, image, n, &es);
    CHECK(!s && after < 0.6 * before,
          "60 steps with null_cond_prob 0.2, attn/ff dropout 0.1: loss %.3f -> %.3f (must fall "
          "below 60%%); with empty captions %.3f %s",
          before, after, es.loss, s ? dalle_last_error() : "");
    free(empty);
    dalle_trainer_free(t);
    t = NULL;

    /* resume: dropout, null captions, stable, sandwich_norm, shared
     * feed-forwards; the checkpoint carries them all */
    p = small_params(small);
    p.null_cond_prob = 0.5;
    p.attn_dropout = 0.2;
    p.ff_dropout = 0.3;
    p.stable = 1;
    p.sandwich_norm = 1;
    p.shared_ff_ids = "0, 0";
    p.shared_attn_ids = "a,b";
    p.reversible = 1;
    dalle_trainer *a = NULL, *b = NULL, *c = NULL;
    const char *ckpt = tmp("test_train_api_opt_ckpt.dalle");
    const char *fa = tmp("test_train_api_opt_a.dalle");
    const char *fb = tmp("test_train_api_opt_b.dalle"), *fc = tmp("test_train_api_opt_c.dalle");
    s = dalle_trainer_create(vae, tok, &p, &a);
    if (!s)
        s = run(a, small, 8, 3, ckpt, fa);
    dalle_train_params rp = dalle_train_default_params();
    rp.n_threads = 2;
    if (!s)
        s = dalle_trainer_resume(ckpt, &rp, &b);
    got = dalle_train_default_params();
    if (!s)
        s = dalle_trainer_get_params(b, &got);
    if (!s)
        s = run(b, small, 5, -1, NULL, fb);
    CHECK(!s && got.null_cond_prob == 0.5 && got.attn_dropout == 0.2 && got.ff_dropout == 0.3 &&
              got.stable == 1 && got.sandwich_norm == 1 && got.reversible == 1 &&
              got.shared_ff_ids &&
              !strcmp(got.shared_ff_ids, "0,0") && got.shared_attn_ids &&
              !strcmp(got.shared_attn_ids, "a,b"),
          "resume: null_cond_prob %g, dropout %g / %g, stable %d, sandwich_norm %d, reversible, "
          "shared_ff_ids %s from the checkpoint %s",
          got.null_cond_prob, got.attn_dropout, got.ff_dropout, got.stable, got.sandwich_norm,
          got.shared_ff_ids ? got.shared_ff_ids : "(none)", s ? dalle_last_error() : "");
    CHECK(!s && same_file(fa, fb),
          "with dropout, null captions, stable, sandwich_norm, reversible, shared feed-forwards: "
          "8 steps = 3 steps, checkpoint, resume on 2 threads, 5 steps: the same bytes");
    /* the options act: without null captions and dropout, other bytes */
    p.null_cond_prob = 0.0;
    p.attn_dropout = p.ff_dropout = 0.0;
    if (!s)
        s = dalle_trainer_create(vae, tok, &p, &c);
    if (!s)
        s = run(c, small, 8, -1, NULL, fc);
    CHECK(!s && !same_file(fa, fc), "without null captions and dropout the run differs %s",
          s ? dalle_last_error() : "");
    /* the saved model loads in inference with its hyper-parameters */
    double worst = -1.0;
    int32_t t4[4 * 24], i4[4 * 64];
    if (!s)
        s = dalle_token_data_batch(small, 1, 0, 4, t4, i4);
    CHECK(!s && logits_match(b, fb, t4, i4, 4, &worst),
          "the model trained with them -> dalle_ctx_create -> dalle_logits = trainer logits "
          "(max |diff| %.2e)", worst);
    dalle_bundle *bun = NULL;
    int64_t sw = 0, stb = 0, rev = 0;
    double ad = -1, fd = -1;
    const char *ids[4] = {NULL};
    int64_t n_ids = 0;
    if (!s)
        s = dalle_bundle_open(fb, &bun);
    if (!s)
        s = dalle_bundle_meta_i64(bun, "dalle.sandwich_norm", &sw);
    if (!s)
        s = dalle_bundle_meta_i64(bun, "dalle.stable", &stb);
    if (!s)
        s = dalle_bundle_meta_i64(bun, "dalle.reversible", &rev);
    if (!s)
        s = dalle_bundle_meta_f64(bun, "dalle.attn_dropout", &ad);
    if (!s)
        s = dalle_bundle_meta_f64(bun, "dalle.ff_dropout", &fd);
    if (!s)
        s = dalle_bundle_meta_str_array(bun, "dalle.shared_ff_ids", ids, 4, &n_ids);
    CHECK(!s && sw == 1 && stb == 1 && rev == 1 && ad == 0.2 && fd == 0.3 && n_ids == 2 &&
              !strcmp(ids[0], "0") && !strcmp(ids[1], "0"),
          "the bundle records sandwich_norm, stable, reversible, attn_dropout, ff_dropout and "
          "shared_ff_ids %s",
          s ? dalle_last_error() : "");
    dalle_bundle_close(bun);
    free(text);
    free(image);
    remove(ckpt);
    remove(fa);
    remove(fb);
    remove(fc);
    dalle_trainer_free(a);
    dalle_trainer_free(b);
    dalle_trainer_free(c);
}

static void resume_and_threads(dalle_token_data *d)
{
    dalle_train_params p = small_params(d);
    /* everything a resume must restore: decay, warm-up, the plateau state
     * (8 pairs / batch 4: an epoch every 2 steps, patience 0) */
    p.weight_decay = 0.01;
    p.warmup_steps = 2;
    p.lr_schedule = DALLE_LR_PLATEAU;
    p.plateau_patience = 0;
    p.plateau_cooldown = 1;
    dalle_trainer *a = NULL, *b = NULL, *c = NULL;
    const char *ckpt = tmp("test_train_api_ckpt.dalle"), *fa = tmp("test_train_api_a.dalle");
    const char *fb = tmp("test_train_api_b.dalle"), *fc = tmp("test_train_api_c.dalle");
    dalle_status s = dalle_trainer_create(vae, tok, &p, &a);
    if (!s)
        s = run(a, d, 8, 3, ckpt, fa);
    dalle_train_params rp = dalle_train_default_params();
    rp.n_threads = 2; /* and on another thread count */
    if (!s)
        s = dalle_trainer_resume(ckpt, &rp, &b);
    int64_t resumed_at = dalle_trainer_steps(b);
    dalle_train_params got = dalle_train_default_params();
    if (!s)
        s = dalle_trainer_get_params(b, &got);
    if (!s)
        s = run(b, d, 5, -1, NULL, fb);
    CHECK(!s && resumed_at == 3 && got.seed == p.seed && got.batch == 4 &&
              got.weight_decay == 0.01 && got.lr_schedule == DALLE_LR_PLATEAU &&
              !strcmp(got.attn_types, "full,axial_row") && got.n_threads == 2,
          "resume: step %lld, the checkpoint's settings %s", (long long)resumed_at,
          s ? dalle_last_error() : "");
    CHECK(!s && same_file(fa, fb),
          "8 steps = 3 steps, checkpoint, resume on 2 threads, 5 steps: the same bytes "
          "(weights, Adam, schedule, step)");
    CHECK(dalle_trainer_lr(a) <= 0.5 * p.lr && dalle_trainer_lr(b) == dalle_trainer_lr(a),
          "the plateau schedule lowered the learning rate: %g, in the resumed run too",
          dalle_trainer_lr(a));

    /* same seed, 1 and 3 threads: the same model */
    p.n_threads = 3;
    s = dalle_trainer_create(vae, tok, &p, &c);
    if (!s)
        s = run(c, d, 8, -1, NULL, fc);
    CHECK(!s && same_file(fa, fc), "same seed on 1 and 3 threads: the same bytes %s",
          s ? dalle_last_error() : "");

    /* fine-tuning: a checkpoint without optimiser restarts the optimiser */
    dalle_trainer *f = NULL;
    if (!s)
        s = dalle_trainer_save(a, fb, 0);
    if (!s)
        s = dalle_trainer_resume(fb, NULL, &f);
    CHECK(!s && dalle_trainer_steps(f) == 0 && dalle_trainer_num_params(f) ==
                                                   dalle_trainer_num_params(a),
          "a model without optimiser state resumes at step 0 (fine-tuning) %s",
          s ? dalle_last_error() : "");
    dalle_trainer_free(f);
    remove(ckpt);
    remove(fa);
    remove(fb);
    remove(fc);
    dalle_trainer_free(a);
    dalle_trainer_free(b);
    dalle_trainer_free(c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s TMPDIR [VAE TOKENIZER]\n", argv[0]);
        return 2;
    }
    tmpdir = argv[1];
    if (argc < 4)
        SKIP("no golden bundles (../shared/golden absent)");
    vae = argv[2];
    tok = argv[3];
    argument_errors();

    dalle_token_data_params dp = dalle_token_data_default_params();
    dp.text_seq_len = 24;
    dp.n_threads = 2;
    dp.world_colors = 3;
    dp.world_shapes = 2;
    dp.world_max_objects = 1;
    dp.world_layouts = 0;
    dalle_token_data *d = NULL, *small = NULL;
    dalle_status s = dalle_token_data_synthetic(vae, tok, 32, &dp, &d);
    if (!s)
        s = dalle_token_data_synthetic(vae, tok, 8, &dp, &small);
    CHECK(!s && dalle_token_data_count(d) == 32 && dalle_token_data_image_seq_len(d) == 64 &&
              dalle_token_data_text_seq_len(d) == 24 && dalle_token_data_max_text_id(d) > 0,
          "32 synthetic pairs encoded by the VAE (max caption id %d) %s",
          dalle_token_data_max_text_id(d), s ? dalle_last_error() : "");
    if (s)
        return check_summary();
    int32_t t1[4 * 24], i1[4 * 64], t2[4 * 24], i2[4 * 64];
    s = dalle_token_data_batch(d, 5, 9, 4, t1, i1);
    if (!s)
        s = dalle_token_data_batch(d, 5, 2, 4, t2, i2); /* another epoch in between */
    if (!s)
        s = dalle_token_data_batch(d, 5, 9, 4, t2, i2);
    CHECK(!s && !memcmp(t1, t2, sizeof t1) && !memcmp(i1, i2, sizeof i1),
          "a batch is a function of (seed, step, batch) alone");
    CHECK_FAILS(dalle_token_data_batch(d, 5, 0, 33, t1, i1), DALLE_ERR_INVALID_ARGUMENT,
                "batch 33");

    training_run(d);
    resume_and_threads(small);
    options_run(d, small);
    dalle_token_data_free(d);
    dalle_token_data_free(small);
    return check_summary();
}
