/* The DALL·E transformer through the backend operations table
 * (lib/backend_ops.h) on a backend that is not the CPU's.
 *
 * usage: test_cuda_model MODE GOLDEN_DIR FULL.dalle VARIANTS.dalle CFG.dalle SHARED_ATTN.dalle
 *                        [CASE_LOWP.dalle ...]
 *
 * MODE gpu: contexts with backend = cuda. Per golden case: teacher-forced
 *   logits (dalle_logits), the incremental path (one token at a time, and
 *   text then 3 image tokens a chunk, through tf_forward) against
 *   logits.npy at case.json's tolerance_rel_l2 (the CPU test's), masks
 *   exactly -FLT_MAX at the same places; guidance (dalle_cfg's three
 *   files); greedy generation = greedy_image_tokens.npy (dalle_full);
 *   sampling with a seed: the GPU picks the CPU's id wherever the CPU's
 *   best and second Gumbel scores are at least 1e-3 apart; a generation
 *   (with guidance) is the same bits twice; reduced-precision bundles
 *   (f16, bf16, int8, kept as stored on the device) within 1e-4 of the
 *   CPU's logits.
 *   Without a usable GPU (or without CUDA in the build): skips (77).
 *
 * MODE emulated: always runs, on any build. A CPU context whose
 *   transformer is moved (transformer_to_backend) onto a backend made of
 *   the CPU's operations but that says its memory is not the host's, so
 *   every device-path of the model code runs: weights copied (and widened)
 *   into backend allocations, logits kept in the state and downloaded,
 *   guidance and sampling through the table, the ids downloaded. Float32
 *   bundles must give the CPU context's bits exactly; reduced ones within
 *   1e-4 (float32 products of the widened weights instead of the
 *   reduced-weight kernels). Every allocation is given back.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "backend_ops.h"
#include "check.h"
#include "emu_backend.h"
#include "golden.h"
#include "context.h"
#include "error.h"
#include "dalle/dalle.h"
#include "npy.h"
#include "rng.h"
#include "sampler.h"
#include "transformer.h"
#include "transformer_internal.h"
#include "tf_steps.h"

static int gpu_mode;

/* ---- contexts ------------------------------------------------------------------ */

typedef struct model {
    dalle_ctx *ctx;
    backend emu; /* emulated mode: the backend the transformer moved to */
} model;

static int open_model(model *m, const char *path, int on_device, int max_batch)
{
    memset(m, 0, sizeof *m);
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = 2;
    cp.max_batch = max_batch;
    cp.backend = on_device && gpu_mode ? DALLE_BACKEND_CUDA : DALLE_BACKEND_CPU;
    int s = dalle_ctx_create(path, &cp, &m->ctx);
    CHECK(s == DALLE_OK, "open %s (%s backend): %s", path,
          cp.backend == DALLE_BACKEND_CUDA ? "cuda" : "cpu", s ? dalle_last_error() : "ok");
    if (s)
        return s;
    if (on_device && !gpu_mode) {
        emu_init(&m->emu, m->ctx->pool);
        s = transformer_to_backend(m->ctx->transformer, &m->emu);
        CHECK(s == DALLE_OK && m->ctx->transformer->be == &m->emu && emu_n > 0,
              "%s: weights copied to the emulated backend (%d allocations): %s", path, emu_n,
              s ? dalle_last_error() : "ok");
    }
    return s;
}

static void close_model(model *m)
{
    dalle_ctx_free(m->ctx);
    if (m->emu.op) {
        CHECK(emu_states == 0, "emulated backend: every state allocation given back (%d left)",
              emu_states);
        emu_release_all();
    }
}

/* ---- per-case checks ------------------------------------------------------------- */

static void check_logits(const char *cas, dalle_ctx *ctx, dalle_ctx *cpu, const int32_t *text,
                         const int32_t *img, int B)
{
    npy want = golden_load(cas, "logits.npy");
    const transformer *tf = ctx->transformer;
    const tf_hparams *hp = &tf->hp;
    const int S = hp->image_seq_len, P = hp->max_pos, V = hp->total_tokens;
    const double tol = golden_tolerance(cas, "logits.npy");
    char what[256];
    float *out = malloc((size_t)want.numel * sizeof *out);
    float *ref = malloc((size_t)want.numel * sizeof *ref);

    /* teacher-forced, one chunk */
    int s = dalle_logits(ctx, text, img, B, S, 1.0f, out);
    CHECK(s == DALLE_OK, "%s: dalle_logits: %s", cas, s ? dalle_last_error() : "ok");
    snprintf(what, sizeof what, "%s: teacher-forced logits on %s", cas, tf->be->name);
    if (!s)
        golden_check_close(what, out, want.data, want.numel, tol);
    if (!s && !gpu_mode && !dalle_logits(cpu, text, img, B, S, 1.0f, ref))
        CHECK(!memcmp(out, ref, (size_t)want.numel * 4),
              "%s: teacher-forced logits: the CPU context's bits", cas);

    /* one token at a time through the KV cache */
    int32_t *seq = tf_steps_sequences(tf, text, img, B);
    tf_state *st = NULL;
    s = tf_state_create(tf, B, hp->text_len, &st);
    CHECK(s == DALLE_OK, "%s: state on %s: %s", cas, tf->be->name, s ? dalle_last_error() : "ok");
    float *row = malloc((size_t)B * V * sizeof *row);
    if (!s)
        s = tf_steps_feed(tf, st, seq, B, P, row, out);
    CHECK(s == DALLE_OK, "%s: incremental forward: %s", cas, s ? dalle_last_error() : "ok");
    snprintf(what, sizeof what, "%s: incremental logits, one token at a time (%d steps)", cas, P);
    if (!s)
        golden_check_close(what, out, want.data, want.numel, tol);

    /* text in one chunk, then image tokens 3 at a time, on the same state */
    tf_state_reset(st);
    float *all = malloc((size_t)B * hp->text_len * V * sizeof *all);
    int32_t *chunk = malloc((size_t)B * hp->text_len * sizeof *chunk);
    for (int p = 0; p < P && !s;) {
        int m = p == 0 ? hp->text_len : (P - p < 3 ? P - p : 3);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < m; i++)
                chunk[b * m + i] = seq[(int64_t)b * (hp->text_len + S) + p + i];
        s = tf_forward(tf, st, chunk, m, TF_LOGITS_ALL, all);
        for (int b = 0; b < B; b++)
            memcpy(out + ((int64_t)b * P + p) * V, all + (int64_t)b * m * V,
                   (size_t)m * V * 4);
        p += m;
    }
    CHECK(s == DALLE_OK, "%s: chunked forward: %s", cas, s ? dalle_last_error() : "ok");
    snprintf(what, sizeof what, "%s: chunked incremental logits (text, then 3 image tokens)", cas);
    if (!s)
        golden_check_close(what, out, want.data, want.numel, tol);
    tf_state_free(st);
    free(all);
    free(chunk);
    free(row);
    free(seq);
    free(out);
    free(ref);
    npy_free(&want);
}

static void check_case(const char *cas, const char *bundle)
{
    model m, cpu;
    if (open_model(&m, bundle, 1, 8) || open_model(&cpu, bundle, 0, 8))
        return;
    npy t = golden_load(cas, "text.npy"), im = golden_load(cas, "image_tokens.npy");
    int32_t *text = npy_to_i32(&t), *img = npy_to_i32(&im);
    check_logits(cas, m.ctx, cpu.ctx, text, img, (int)t.dims[0]);
    free(text);
    free(img);
    npy_free(&t);
    npy_free(&im);
    close_model(&m);
    close_model(&cpu);
}

/* dalle_cfg (the guided logits and both halves) and dalle_full (greedy
 * generation) on the backend: golden.h's checks, as test_transformer's */
static void check_cfg_and_greedy(const char *cfg_bundle, const char *full_bundle)
{
    model m;
    if (!open_model(&m, cfg_bundle, 1, 8)) {
        golden_dalle_cfg(m.ctx, m.ctx->transformer->be->name);
        close_model(&m);
    }
    if (!open_model(&m, full_bundle, 1, 8)) {
        golden_dalle_greedy(m.ctx, m.ctx->transformer->be->name);
        close_model(&m);
    }
}

/* Sampling with a seed against the CPU (dalle_cfg, 4x4). The last image
 * token of N images, the rest primed, so that each pick depends on one
 * logits row only; where the CPU's best and second Gumbel scores are at
 * least `gap` apart, the backend must pick the CPU's id. Then a whole
 * generation with guidance: the same bits twice (and, emulated, the CPU's
 * bits). */
static void check_sampling(const char *bundle)
{
    const char *cas = "dalle_cfg";
    model m, cpu;
    if (open_model(&m, bundle, 1, 4) || open_model(&cpu, bundle, 0, 4))
        return;
    npy t = golden_load(cas, "text.npy"), im = golden_load(cas, "image_tokens.npy");
    int32_t *text1 = npy_to_i32(&t), *img1 = npy_to_i32(&im);
    const int S = dalle_image_seq_len(cpu.ctx), ts = dalle_text_seq_len(cpu.ctx);
    const int V = dalle_total_tokens(cpu.ctx), NI = dalle_num_image_tokens(cpu.ctx);
    const int N = 48;
    int32_t *texts = malloc((size_t)N * ts * 4), *prime = malloc((size_t)N * (S - 1) * 4);
    for (int n = 0; n < N; n++) {
        memcpy(texts + (int64_t)n * ts, text1, (size_t)ts * 4);
        memcpy(prime + (int64_t)n * (S - 1), img1, (size_t)(S - 1) * 4);
    }
    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 777;
    sp.filter_thres = 0.5f;
    sp.temperature = 1.0f;
    sp.prime = prime;
    sp.n_prime = S - 1;
    int32_t *a = malloc((size_t)N * S * 4), *b = malloc((size_t)N * S * 4);
    int s1 = dalle_sample(m.ctx, texts, N, &sp, a), s2 = dalle_sample(cpu.ctx, texts, N, &sp, b);
    CHECK(s1 == DALLE_OK && s2 == DALLE_OK, "sampling the last token of %d images: %s", N,
          s1 || s2 ? dalle_last_error() : "ok");
    /* the CPU's scores of that token: the row that predicts it */
    float *lg = malloc((size_t)(ts + S) * V * sizeof *lg);
    int separated = 0, agree = 0;
    if (!s1 && !s2 && !dalle_logits(cpu.ctx, text1, img1, 1, S, 1.0f, lg)) {
        const float *row = lg + (int64_t)(ts + S - 1) * V + (V - NI);
        sampler sm = {0};
        tf_hparams *hp = &cpu.ctx->transformer->hp;
        sampler_init(&sm, hp, &sp, NI);
        for (int n = 0; n < N; n++) {
            /* best and second score over the top-k, as sampler_pick */
            double best = -INFINITY, second = -INFINITY;
            float kth;
            {
                float *v = malloc((size_t)NI * sizeof *v);
                memcpy(v, row, (size_t)NI * sizeof *v);
                for (int i = 0; i < sm.k; i++) /* partial selection: the k-th largest */
                    for (int j = i + 1; j < NI; j++)
                        if (v[j] > v[i]) {
                            float x = v[i];
                            v[i] = v[j];
                            v[j] = x;
                        }
                kth = v[sm.k - 1];
                free(v);
            }
            for (int i = 0; i < NI; i++) {
                if (row[i] < kth)
                    continue;
                double sc = (double)(row[i] / sp.temperature) +
                            rng_gumbel(sp.seed, (uint64_t)n, (uint64_t)(S - 1), (uint64_t)i);
                if (sc > best) {
                    second = best;
                    best = sc;
                } else if (sc > second) {
                    second = sc;
                }
            }
            if (best - second >= 1e-3) {
                separated++;
                agree += a[(int64_t)n * S + S - 1] == b[(int64_t)n * S + S - 1];
            }
        }
        sampler_free(&sm);
    }
    CHECK(separated >= N / 2 && agree == separated,
          "sampling on %s: the CPU's id for %d of %d well-separated picks (%d images)",
          m.ctx->transformer->be->name, agree, separated, N);
    if (!gpu_mode)
        CHECK(!s1 && !s2 && !memcmp(a, b, (size_t)N * S * 4),
              "sampling on the emulated backend: the CPU's ids, every image");

    /* a whole generation with guidance, twice */
    dalle_sample_params g = dalle_sample_default_params();
    g.seed = 99;
    g.cond_scale = 3.0f;
    g.temperature = 0.8f;
    const int NB = 6;
    s1 = dalle_sample(m.ctx, texts, NB, &g, a);
    s2 = dalle_sample(m.ctx, texts, NB, &g, b);
    CHECK(s1 == DALLE_OK && s2 == DALLE_OK && !memcmp(a, b, (size_t)NB * S * 4),
          "a guided generation of %d images on %s: the same ids twice (%s)", NB,
          m.ctx->transformer->be->name, s1 || s2 ? dalle_last_error() : "ok");
    if (!gpu_mode) {
        s2 = dalle_sample(cpu.ctx, texts, NB, &g, b);
        CHECK(s2 == DALLE_OK && !memcmp(a, b, (size_t)NB * S * 4),
              "a guided generation on the emulated backend: the CPU's ids");
    }
    free(lg);
    free(a);
    free(b);
    free(texts);
    free(prime);
    free(text1);
    free(img1);
    npy_free(&t);
    npy_free(&im);
    close_model(&m);
    close_model(&cpu);
}

/* A reduced-precision bundle on the backend: f16, bf16 and int8 (+ scales)
 * matrices kept as stored (the backend computes with them); the logits
 * within 1e-4 of the CPU's reduced-weight kernels. */
static void check_lowp(const char *bundle)
{
    model m, cpu;
    if (open_model(&m, bundle, 1, 8) || open_model(&cpu, bundle, 0, 8))
        return;
    const int ts = dalle_text_seq_len(cpu.ctx), S = dalle_image_seq_len(cpu.ctx);
    const int V = dalle_total_tokens(cpu.ctx), NI = dalle_num_image_tokens(cpu.ctx);
    const int B = 2, rows = dalle_logits_rows(cpu.ctx, S);
    int32_t *text = malloc((size_t)B * ts * 4), *img = malloc((size_t)B * S * 4);
    for (int i = 0; i < B * ts; i++)
        text[i] = (i * 7 + 3) % dalle_num_text_tokens(cpu.ctx);
    for (int i = 0; i < B * S; i++)
        img[i] = (i * 13 + 1) % NI;
    float *a = malloc((size_t)B * rows * V * 4), *b = malloc((size_t)B * rows * V * 4);
    int s1 = dalle_logits(m.ctx, text, img, B, S, 1.0f, a);
    int s2 = dalle_logits(cpu.ctx, text, img, B, S, 1.0f, b);
    int64_t md = 0;
    double r = s1 || s2 ? 1 : golden_rel_l2(a, b, (int64_t)B * rows * V, &md);
    const transformer *ht = cpu.ctx->transformer, *dt = m.ctx->transformer;
    const int stored = ht->logits_w.dtype, kept = dt->logits_w.dtype;
    const int want = stored; /* every dtype stays as stored on the backend */
    static const char *const names[] = {"float32", "f16", "bf16", "int8"};
    CHECK(!s1 && !s2 && md == 0 && r <= 1e-4 && kept == want &&
              dt->layers[0].ff_w1.dtype == want && dt->text_emb.dtype == want,
          "%s on %s (%s matrices kept as %s) vs the CPU: rel-L2 %.3g", bundle, dt->be->name,
          names[stored & 3], names[kept & 3], r);
    free(a);
    free(b);
    free(text);
    free(img);
    close_model(&m);
    close_model(&cpu);
}

/* backend = auto: on the GPU where there is one (gpu mode), else on the CPU,
 * said through the log callback; backend = cuda without a GPU: a clear
 * refusal. */
static void check_auto(const char *bundle)
{
    const char *why = "";
    const int gpus = backend_cuda_device_count(&why);
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.backend = DALLE_BACKEND_AUTO;
    dalle_ctx *ctx = NULL;
    check_log_start();
    int s = dalle_ctx_create(bundle, &cp, &ctx);
    check_log_stop();
    CHECK(s == DALLE_OK, "backend auto opens %s: %s", bundle, s ? dalle_last_error() : "ok");
    if (s)
        return;
    const transformer *tf = ctx->transformer;
    if (gpu_mode)
        CHECK(tf->be == ctx->device_backend && strstr(check_log(), "backend cuda:"),
              "backend auto with a GPU: the transformer on the CUDA backend; log: %s", check_log());
    else if (gpus == 0)
        CHECK(tf->be == &tf->cpu && !ctx->device_backend && strstr(check_log(), "using the CPU"),
              "backend auto without a GPU: the CPU, said through the log: %s", check_log());
    dalle_ctx_free(ctx);
    if (gpus == 0) {
        cp.backend = DALLE_BACKEND_CUDA;
        ctx = (dalle_ctx *)0x1;
        s = dalle_ctx_create(bundle, &cp, &ctx);
        CHECK(s == DALLE_ERR_UNSUPPORTED && strstr(dalle_last_error(), "backend cuda") &&
                  ctx == (dalle_ctx *)0x1,
              "backend cuda without a GPU: refused (%s)", dalle_last_error());
    }
}

int main(int argc, char **argv)
{
    if (argc < 7 || (strcmp(argv[1], "gpu") && strcmp(argv[1], "emulated"))) {
        printf("usage: test_cuda_model gpu|emulated GOLDEN_DIR FULL VARIANTS CFG SHARED_ATTN "
               "[LOWP.dalle ...]\n(skipped: the golden cases are not there)\n");
        return 77;
    }
    gpu_mode = !strcmp(argv[1], "gpu");
    golden = argv[2];
    if (gpu_mode) {
        dalle_ctx_params cp = dalle_ctx_default_params();
        cp.backend = DALLE_BACKEND_CUDA;
        dalle_ctx *ctx = NULL;
        int s = dalle_ctx_create(argv[3], &cp, &ctx);
        if (s == DALLE_ERR_UNSUPPORTED) {
            printf("skip: no CUDA backend here: %s\n", dalle_last_error());
            return 77;
        }
        CHECK(s == DALLE_OK && ctx->device_backend && ctx->transformer->be == ctx->device_backend,
              "backend cuda: the transformer runs on the CUDA backend (%s)",
              s ? dalle_last_error() : "ok");
        dalle_ctx_free(ctx);
        if (s)
            return check_summary();
    }
    check_auto(argv[3]);
    const char *cases[] = {"dalle_full", "dalle_variants", "dalle_cfg", "dalle_shared_attn"};
    for (int i = 0; i < 4; i++)
        check_case(cases[i], argv[3 + i]);
    check_cfg_and_greedy(argv[5], argv[3]);
    check_sampling(argv[5]);
    for (int i = 7; i < argc; i++)
        check_lowp(argv[i]);
    return check_summary();
}
