/* The transformer and sampling against the golden cases (../shared/golden),
 * made by DALLE-pytorch itself.
 *
 * usage: test_transformer GOLDEN_DIR FULL.dalle VARIANTS.dalle CFG.dalle SHARED_ATTN.dalle
 *
 * Per case: teacher-forced logits (dalle_logits) and the incremental path
 * (one token at a time through the KV cache, tf_forward) against logits.npy
 * within case.json's tolerance_rel_l2, masked entries exactly -FLT_MAX at
 * the same places; the recomputed rotary table against the stored one;
 * classifier-free guidance (dalle_cfg); greedy generation (dalle_full);
 * statistics and determinism of dalle_sample on the small dalle_cfg model.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "golden.h"
#include "context.h"
#include "dalle/dalle.h"
#include "npy.h"
#include "transformer.h"
#include "transformer_internal.h"
#include "tf_steps.h"

static dalle_ctx *open_ctx(const char *path, int n_threads, int max_batch)
{
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = n_threads;
    cp.max_batch = max_batch;
    dalle_ctx *ctx = NULL;
    int s = dalle_ctx_create(path, &cp, &ctx);
    CHECK(s == DALLE_OK, "open %s: %s", path, s ? dalle_last_error() : "ok");
    if (s)
        exit(check_summary() ? 1 : 1);
    return ctx;
}

/* ---- per-case checks ------------------------------------------------------ */

/* Teacher-forced logits of every case: one chunk through dalle_logits. */
static void check_teacher_forced(const char *cas, dalle_ctx *ctx, const int32_t *text,
                                 const int32_t *img, int B)
{
    npy want = golden_load(cas, "logits.npy");
    int S = dalle_image_seq_len(ctx);
    float *out = malloc((size_t)want.numel * sizeof *out);
    int s = dalle_logits(ctx, text, img, B, S, 1.0f, out);
    CHECK(s == DALLE_OK, "%s: dalle_logits: %s", cas, s ? dalle_last_error() : "ok");
    char what[256];
    snprintf(what, sizeof what, "%s: teacher-forced logits", cas);
    if (!s)
        golden_check_close(what, out, want.data, want.numel, golden_tolerance(cas, "logits.npy"));
    free(out);
    npy_free(&want);
}

/* The cache path: every token fed alone, each step's logits row compared
 * with the teacher-forced row of the same position. */
static void check_incremental(const char *cas, dalle_ctx *ctx, const int32_t *text,
                              const int32_t *img, int B, int has_cached_file)
{
    const transformer *tf = ctx->transformer;
    const tf_hparams *hp = &tf->hp;
    npy want = golden_load(cas, "logits.npy");
    const int P = hp->max_pos, V = hp->total_tokens, S = hp->image_seq_len;
    int32_t *seq = tf_steps_sequences(tf, text, img, B);
    tf_state *st;
    int s = tf_state_create(tf, B, 1, &st);
    CHECK(s == DALLE_OK, "%s: state", cas);
    float *out = malloc((size_t)B * P * V * sizeof *out), *row = malloc((size_t)B * V * 4);
    if (!s)
        s = tf_steps_feed(tf, st, seq, B, P, row, out);
    CHECK(s == DALLE_OK, "%s: incremental forward", cas);
    char what[256];
    snprintf(what, sizeof what, "%s: incremental logits, one token at a time (%d steps)", cas, P);
    golden_check_close(what, out, want.data, want.numel, golden_tolerance(cas, "logits.npy"));
    /* a step past the end is refused (any valid ids: the last ones) */
    int32_t tok[64];
    for (int b = 0; b < B; b++)
        tok[b] = seq[(int64_t)b * (hp->text_len + S) + P - 1];
    s = tf_forward(tf, st, tok, 1, TF_LOGITS_LAST, row);
    CHECK(s == DALLE_ERR_INVALID_ARGUMENT, "%s: feeding past the last position fails", cas);
    if (has_cached_file) {
        npy cached = golden_load(cas, "cached_step_logits.npy");
        float *steps = malloc((size_t)B * S * V * sizeof *steps);
        for (int b = 0; b < B; b++)
            memcpy(steps + (int64_t)b * S * V, out + ((int64_t)b * P + hp->text_seq_len) * V,
                   (size_t)S * V * 4);
        snprintf(what, sizeof what, "%s: cached generation steps vs cached_step_logits.npy", cas);
        golden_check_close(what, steps, cached.data, cached.numel,
                    golden_tolerance(cas, "cached_step_logits.npy"));
        free(steps);
        npy_free(&cached);
    }
    /* mixed chunk sizes: text in one chunk, then image tokens 3 at a time */
    tf_state_free(st);
    s = tf_state_create(tf, B, hp->text_len, &st);
    float *all = malloc((size_t)B * hp->text_len * V * sizeof *all);
    int32_t *chunk = malloc((size_t)B * hp->text_len * sizeof *chunk);
    double worst = 0;
    int64_t md_total = 0;
    for (int p = 0; p < P && !s;) {
        int m = p == 0 ? hp->text_len : (P - p < 3 ? P - p : 3);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < m; i++)
                chunk[b * m + i] = seq[(int64_t)b * (hp->text_len + S) + p + i];
        s = tf_forward(tf, st, chunk, m, TF_LOGITS_ALL, all);
        for (int b = 0; b < B; b++) {
            int64_t md;
            double r = golden_rel_l2(all + (int64_t)b * m * V,
                               (const float *)want.data + ((int64_t)b * P + p) * V,
                               (int64_t)m * V, &md);
            worst = r > worst ? r : worst;
            md_total += md;
        }
        p += m;
    }
    CHECK(s == DALLE_OK && md_total == 0 && worst <= golden_tolerance(cas, "logits.npy"),
          "%s: chunked incremental forward (text, then 3 image tokens a step): worst rel-L2 "
          "%.3g",
          cas, worst);
    free(all);
    free(chunk);
    tf_state_free(st);
    free(out);
    free(row);
    free(seq);
    npy_free(&want);
}

/* The rotary table recomputed as upstream does vs the checkpoint's buffer. */
static void check_rotary(const char *cas, dalle_ctx *ctx)
{
    const tf_hparams *hp = &ctx->transformer->hp;
    if (!hp->rotary_emb)
        return;
    int64_t n = (int64_t)(hp->text_len + hp->image_seq_len) * hp->rot_cols;
    float *mine = malloc((size_t)n * sizeof *mine);
    rotary_compute_table(hp, mine);
    dalle_bundle *b = (dalle_bundle *)dalle_ctx_bundle(ctx);
    int idx = dalle_bundle_find_tensor(b, "transformer.pos_emb");
    float *stored = malloc((size_t)n * sizeof *stored);
    int s = idx >= 0 ? dalle_bundle_read_tensor(b, idx, stored, (size_t)n * 4) : -1;
    double worst = 0;
    for (int64_t i = 0; s == 0 && i < n; i++) {
        double d = fabs((double)mine[i] - stored[i]) / (fabs(stored[i]) + 1e-30);
        worst = d > worst ? d : worst;
    }
    CHECK(s == 0 && worst <= 1e-6, "%s: recomputed rotary table = stored (max rel diff %.3g)",
          cas, worst);
    free(mine);
    free(stored);
}

static void check_case(const char *cas, const char *bundle, int has_cached_file)
{
    dalle_ctx *ctx = open_ctx(bundle, 2, 8);
    npy t = golden_load(cas, "text.npy"), im = golden_load(cas, "image_tokens.npy");
    int32_t *text = npy_to_i32(&t), *img = npy_to_i32(&im);
    int B = (int)t.dims[0];
    CHECK(t.dims[1] == dalle_text_seq_len(ctx) && im.dims[1] == dalle_image_seq_len(ctx),
          "%s: shapes match the bundle", cas);
    check_teacher_forced(cas, ctx, text, img, B);
    check_incremental(cas, ctx, text, img, B, has_cached_file);
    check_rotary(cas, ctx);
    free(text);
    free(img);
    npy_free(&t);
    npy_free(&im);
    dalle_ctx_free(ctx);
}

/* ---- classifier-free guidance (dalle_cfg), greedy generation (dalle_full):
 * golden.h's checks, which test_cuda_model runs on a device backend too ---- */

static void check_cfg_and_greedy(const char *cfg_bundle, const char *full_bundle)
{
    dalle_ctx *ctx = open_ctx(cfg_bundle, 2, 8);
    golden_dalle_cfg(ctx, "cpu");
    dalle_ctx_free(ctx);
    ctx = open_ctx(full_bundle, 2, 8);
    golden_dalle_greedy(ctx, "cpu");
    dalle_ctx_free(ctx);
}

/* ---- sampling statistics and behaviour (dalle_cfg, a 4x4 model) --------------- */

static int count_calls;
static void progress_cb(int64_t done, int64_t total, void *user)
{
    (void)done;
    (void)total;
    (void)user;
    count_calls++;
}
static int abort_after;
static int abort_cb(void *user)
{
    (void)user;
    return --abort_after < 0;
}

/* Upper 0.1% quantile of chi-square with df degrees of freedom
 * (Wilson-Hilferty; accurate to a few % for df >= 3). */
static double chi2_crit(int df)
{
    const double z = 3.090232; /* N(0,1) 0.999 quantile */
    double a = 2.0 / (9.0 * df);
    double c = 1 - a + z * sqrt(a);
    return df * c * c * c;
}

/* Chi-square of N samples of the last image token (all others primed)
 * against softmax(top-k(logits) / T). */
static void check_distribution(dalle_ctx *ctx, const int32_t *text1, const int32_t *img1,
                               float thres, float temp, float cond_scale, int N)
{
    int S = dalle_image_seq_len(ctx), ts = dalle_text_seq_len(ctx), V = dalle_total_tokens(ctx);
    int NI = dalle_num_image_tokens(ctx), tv = V - NI;
    /* expected: the logits row that predicts the last image token */
    float *lg = malloc((size_t)(ts + S) * V * sizeof *lg);
    dalle_logits(ctx, text1, img1, 1, S, cond_scale, lg);
    const float *row = lg + (int64_t)(ts + S - 1) * V + tv;
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", (double)thres);
    int k = (int)((1.0 - strtod(buf, NULL)) * V);
    k = k < 1 ? 1 : k;
    k = k > NI ? NI : k;
    /* the k largest image logits */
    double *p = calloc((size_t)NI, sizeof *p);
    int *in_top = calloc((size_t)NI, sizeof *in_top);
    for (int c = 0; c < k; c++) {
        int best = -1;
        for (int i = 0; i < NI; i++)
            if (!in_top[i] && (best < 0 || row[i] > row[best]))
                best = i;
        in_top[best] = 1;
    }
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < NI; i++)
        if (in_top[i] && row[i] / temp > mx)
            mx = row[i] / temp;
    for (int i = 0; i < NI; i++)
        if (in_top[i])
            sum += p[i] = exp(row[i] / temp - mx);
    for (int i = 0; i < NI; i++)
        p[i] /= sum;

    int32_t *texts = malloc((size_t)N * ts * sizeof *texts);
    int32_t *prime = malloc((size_t)N * (S - 1) * sizeof *prime);
    for (int n = 0; n < N; n++) {
        memcpy(texts + (int64_t)n * ts, text1, (size_t)ts * 4);
        memcpy(prime + (int64_t)n * (S - 1), img1, (size_t)(S - 1) * 4);
    }
    int32_t *out = malloc((size_t)N * S * sizeof *out);
    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 777;
    sp.filter_thres = thres;
    sp.temperature = temp;
    sp.cond_scale = cond_scale;
    sp.prime = prime;
    sp.n_prime = S - 1;
    int s = dalle_sample(ctx, texts, N, &sp, out);
    int *cnt = calloc((size_t)NI, sizeof *cnt), outside = 0;
    for (int n = 0; n < N; n++) {
        int tok = out[(int64_t)n * S + S - 1];
        cnt[tok]++;
        outside += !in_top[tok];
    }
    /* chi-square, merging bins with expected count < 5 into one */
    double chi = 0, e_rest = 0, o_rest = 0;
    int df = -1;
    for (int i = 0; i < NI; i++) {
        if (!in_top[i])
            continue;
        double e = p[i] * N;
        if (e < 5) {
            e_rest += e;
            o_rest += cnt[i];
            continue;
        }
        chi += (cnt[i] - e) * (cnt[i] - e) / e;
        df++;
    }
    if (e_rest > 0) {
        chi += (o_rest - e_rest) * (o_rest - e_rest) / e_rest;
        df++;
    }
    if (df < 1) { /* a single dominant bin: every sample must be it */
        CHECK(s == DALLE_OK && outside == 0, "sampling k=%d T=%g: all samples in the top-k", k,
              (double)temp);
    } else {
        CHECK(s == DALLE_OK && outside == 0 && chi < chi2_crit(df),
              "sampling thres=%g (k=%d) T=%g cond_scale=%g: chi-square %.1f < %.1f (df %d, "
              "%d samples, %d outside the top-k)",
              (double)thres, k, (double)temp, (double)cond_scale, chi, chi2_crit(df), df, N,
              outside);
    }
    free(lg);
    free(p);
    free(in_top);
    free(texts);
    free(prime);
    free(out);
    free(cnt);
}

static int argmax_image(const float *row, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (row[i] > row[best])
            best = i;
    return best;
}

/* Greedy tokens must be the argmax of the (guided) teacher-forced logits of
 * the sequence they form: guidance acts at every step, each pass with its
 * own cache, and the cache path agrees with the full forward. */
static void check_greedy_consistency(dalle_ctx *ctx, const int32_t *text, int B,
                                     float cond_scale)
{
    int S = dalle_image_seq_len(ctx), ts = dalle_text_seq_len(ctx), V = dalle_total_tokens(ctx);
    int NI = dalle_num_image_tokens(ctx);
    int32_t *out = malloc((size_t)B * S * 4);
    dalle_sample_params sp = dalle_sample_default_params();
    sp.filter_thres = 0.999f;
    sp.cond_scale = cond_scale;
    int s = dalle_sample(ctx, text, B, &sp, out);
    float *lg = malloc((size_t)B * (ts + S) * V * sizeof *lg);
    s = s ? s : dalle_logits(ctx, text, out, B, S, cond_scale, lg);
    int bad = 0;
    for (int b = 0; !s && b < B; b++)
        for (int t = 0; t < S; t++)
            bad += argmax_image(lg + ((int64_t)b * (ts + S) + ts + t) * V + V - NI, NI) !=
                   out[b * S + t];
    CHECK(s == DALLE_OK && bad == 0,
          "greedy sampling with cond_scale %g = argmax of the guided teacher-forced logits at "
          "every step (%d mismatches)",
          (double)cond_scale, bad);
    free(out);
    free(lg);
}

static void check_sampling(const char *bundle)
{
    const char *cas = "dalle_cfg";
    dalle_ctx *ctx = open_ctx(bundle, 2, 64);
    npy t = golden_load(cas, "text.npy"), im = golden_load(cas, "image_tokens.npy");
    int32_t *text = npy_to_i32(&t), *img = npy_to_i32(&im);
    int B = (int)t.dims[0], S = dalle_image_seq_len(ctx), ts = dalle_text_seq_len(ctx);

    check_distribution(ctx, text, img, 0.5f, 1.0f, 1.0f, 2000);
    check_distribution(ctx, text, img, 0.975f, 1.5f, 1.0f, 2000);
    check_distribution(ctx, text, img, 0.9f, 0.7f, 3.0f, 2000);

    check_greedy_consistency(ctx, text, B, 1.0f);
    check_greedy_consistency(ctx, text, B, 3.0f);

    dalle_sample_params sp = dalle_sample_default_params();
    int32_t *a = malloc((size_t)4 * S * 4), *b = malloc((size_t)4 * S * 4);
    int32_t *texts = malloc((size_t)4 * ts * 4);
    for (int i = 0; i < 4; i++)
        memcpy(texts + i * ts, text + (i % B) * ts, (size_t)ts * 4);

    /* seeds: same seed same tokens; another seed other tokens */
    sp.seed = 42;
    int s1 = dalle_sample(ctx, texts, 4, &sp, a);
    int s2 = dalle_sample(ctx, texts, 4, &sp, b);
    CHECK(!s1 && !s2 && !memcmp(a, b, (size_t)4 * S * 4), "same seed, same tokens");
    sp.seed = 43;
    dalle_sample(ctx, texts, 4, &sp, b);
    CHECK(memcmp(a, b, (size_t)4 * S * 4) != 0, "another seed, other tokens");

    /* threads and batch composition: 1 thread, max_batch 1 vs 2 threads */
    dalle_ctx *one = open_ctx(bundle, 1, 1);
    sp.seed = 42;
    s1 = dalle_sample(one, texts, 4, &sp, b);
    CHECK(!s1 && !memcmp(a, b, (size_t)4 * S * 4),
          "seed 42: bit-identical tokens with 1 thread / max_batch 1 and 2 threads / batch 4");
    int32_t single[64];
    s1 = dalle_sample(one, texts, 1, &sp, single);
    CHECK(!s1 && !memcmp(a, single, (size_t)S * 4), "image 0 alone = image 0 of a batch of 4");
    int32_t single2[64];
    s1 = dalle_sample(ctx, texts, 1, &sp, single2);
    CHECK(!s1 && !memcmp(single, single2, (size_t)S * 4),
          "one image: bit-identical tokens with 1 and 2 threads");
    dalle_ctx_free(one);

    /* filter_thres: k = 1 ignores the seed; a low temperature approaches it */
    int32_t *g1 = malloc((size_t)4 * S * 4), *g2 = malloc((size_t)4 * S * 4);
    sp.filter_thres = 0.999f;
    sp.seed = 1;
    dalle_sample(ctx, texts, 4, &sp, g1);
    sp.seed = 2;
    dalle_sample(ctx, texts, 4, &sp, g2);
    CHECK(!memcmp(g1, g2, (size_t)4 * S * 4), "filter_thres 0.999 (k = 1): seed-independent");
    sp.filter_thres = 0.5f;
    sp.temperature = 1e-4f;
    dalle_sample(ctx, texts, 4, &sp, g2);
    CHECK(!memcmp(g1, g2, (size_t)4 * S * 4), "temperature 1e-4 = greedy");
    sp.temperature = 1.0f;

    /* cond_scale changes the tokens */
    sp.filter_thres = 0.999f;
    sp.cond_scale = 3.0f;
    dalle_sample(ctx, texts, 4, &sp, g2);
    CHECK(memcmp(g1, g2, (size_t)4 * S * 4) != 0, "cond_scale 3 changes greedy tokens");
    sp.cond_scale = 1.0f;

    /* priming: the first n_prime tokens are the prime, the rest follow it */
    int32_t prime[4 * 7];
    for (int i = 0; i < 4; i++)
        memcpy(prime + i * 7, img + (i % B) * S, 7 * 4);
    sp.prime = prime;
    sp.n_prime = 7;
    dalle_sample(ctx, texts, 4, &sp, g2);
    int kept = 1;
    for (int i = 0; i < 4; i++)
        kept &= !memcmp(g2 + i * S, prime + i * 7, 7 * 4);
    CHECK(kept && memcmp(g1, g2, (size_t)4 * S * 4) != 0,
          "priming: the prime is kept and the rest changes");
    sp.prime = NULL;
    sp.n_prime = 0;
    sp.filter_thres = 0.5f;

    /* callbacks: progress per token; abort stops, out untouched */
    count_calls = 0;
    sp.progress = progress_cb;
    dalle_sample(ctx, texts, 4, &sp, g2);
    CHECK(count_calls == S, "progress: %d calls for %d steps of 4 images", count_calls, S);
    memset(g2, 0x7f, (size_t)4 * S * 4);
    abort_after = 3;
    sp.abort = abort_cb;
    int s = dalle_sample(ctx, texts, 4, &sp, g2);
    int untouched = 1;
    for (int i = 0; i < 4 * S; i++)
        untouched &= g2[i] == 0x7f7f7f7f;
    CHECK(s == DALLE_ERR_ABORTED && untouched, "abort: DALLE_ERR_ABORTED, output untouched");
    sp.abort = NULL;
    sp.progress = NULL;

    /* validation */
    sp.filter_thres = 1.0f;
    CHECK_FAILS(dalle_sample(ctx, texts, 4, &sp, g2), DALLE_ERR_INVALID_ARGUMENT, "filter_thres");
    sp.filter_thres = 0.5f;
    sp.temperature = 0.0f;
    CHECK_FAILS(dalle_sample(ctx, texts, 4, &sp, g2), DALLE_ERR_INVALID_ARGUMENT, "temperature");
    sp.temperature = 1.0f;
    texts[3] = 1 << 20;
    CHECK_FAILS(dalle_sample(ctx, texts, 4, &sp, g2), DALLE_ERR_INVALID_ARGUMENT, "text");
    CHECK_FAILS(dalle_logits(ctx, text, img, B, S + 1, 1.0f, (float *)g2),
                DALLE_ERR_INVALID_ARGUMENT, "n_image");

    free(a);
    free(b);
    free(g1);
    free(g2);
    free(texts);
    free(text);
    free(img);
    npy_free(&t);
    npy_free(&im);
    dalle_ctx_free(ctx);
}

/* ---- text generation (generate_texts) ------------------------------------ */

/* Greedy continuation of a caption computed independently: the whole
 * sequence through one teacher-forced chunk per step (no cache reuse),
 * argmax over the text part of the last row. */
static void greedy_text_reference(dalle_ctx *ctx, const int32_t *prefix, int n_prefix,
                                  int32_t *out)
{
    const transformer *tf = ctx->transformer;
    const tf_hparams *hp = &tf->hp;
    int n = hp->text_seq_len;
    float *row = malloc((size_t)hp->total_tokens * sizeof *row);
    tf_state *st;
    tf_state_create(tf, 1, n, &st);
    memcpy(out, prefix, (size_t)n_prefix * sizeof *out);
    for (int t = n_prefix; t < n; t++) {
        tf_state_reset(st);
        tf_forward(tf, st, out, t, TF_LOGITS_LAST, row);
        int best = 0;
        for (int i = 1; i < hp->text_vocab; i++)
            if (row[i] > row[best])
                best = i;
        out[t] = best;
    }
    tf_state_free(st);
    free(row);
}

static void check_generate_text(const char *bundle)
{
    dalle_ctx *ctx = open_ctx(bundle, 1, 8);
    if (!ctx)
        return;
    int n = dalle_text_seq_len(ctx);
    int32_t prefix[3] = {17, 250, 3}, got[256], want[256], again[256];
    dalle_sample_params p = dalle_sample_default_params();
    p.filter_thres = 0.999f; /* k = 1: greedy */
    int s = dalle_generate_text(ctx, prefix, 3, &p, got);
    greedy_text_reference(ctx, prefix, 3, want);
    CHECK(s == DALLE_OK && !memcmp(got, want, (size_t)n * sizeof *got),
          "generate_text greedy = argmax of the full forward at every step (%d tokens)", n);
    p = dalle_sample_default_params();
    p.seed = 7;
    int s1 = dalle_generate_text(ctx, prefix, 3, &p, got);
    int s2 = dalle_generate_text(ctx, prefix, 3, &p, again);
    int in_range = 1;
    for (int i = 0; i < n; i++)
        in_range &= got[i] >= 0 && got[i] < dalle_num_text_tokens(ctx) + n;
    CHECK(s1 == DALLE_OK && s2 == DALLE_OK && !memcmp(got, again, (size_t)n * sizeof *got) &&
              !memcmp(got, prefix, sizeof prefix) && in_range,
          "generate_text: a seed repeats, the prefix is kept, ids are text ids");
    p.seed = 8;
    dalle_generate_text(ctx, NULL, 0, &p, again);
    CHECK(again[0] == 0, "generate_text: an empty prefix starts from id 0, as upstream");
    p.cond_scale = 2.0f;
    CHECK_FAILS(dalle_generate_text(ctx, prefix, 3, &p, got), DALLE_ERR_INVALID_ARGUMENT,
                "cond_scale");
    p = dalle_sample_default_params();
    prefix[1] = dalle_num_text_tokens(ctx) + n;
    CHECK_FAILS(dalle_generate_text(ctx, prefix, 3, &p, got), DALLE_ERR_INVALID_ARGUMENT,
                "prefix[0][1]");
    CHECK_FAILS(dalle_generate_text(ctx, prefix, n + 1, &p, got), DALLE_ERR_INVALID_ARGUMENT,
                "n_prefix");
    dalle_ctx_free(ctx);
}

int main(int argc, char **argv)
{
    if (argc < 6)
        SKIP("usage: %s GOLDEN_DIR FULL VARIANTS CFG SHARED_ATTN (golden cases absent?)",
             argv[0]);
    golden = argv[1];
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/dalle_full/logits.npy", golden);
    FILE *f = fopen(probe, "rb");
    if (!f)
        SKIP("golden cases not found at %s", golden);
    fclose(f);
    check_case("dalle_full", argv[2], 1);
    check_case("dalle_variants", argv[3], 0);
    check_case("dalle_cfg", argv[4], 1);
    check_case("dalle_shared_attn", argv[5], 0);
    check_cfg_and_greedy(argv[4], argv[2]);
    check_sampling(argv[4]);
    check_generate_text(argv[2]);
    return check_summary();
}
