/* Reading the golden cases (../shared/golden: upstream's outputs as .npy,
 * tolerances in each case.json) for the C tests. Include after check.h;
 * the test sets `golden` to the folder. */
#ifndef DALLE_TEST_GOLDEN_H
#define DALLE_TEST_GOLDEN_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dalle/dalle.h"
#include "npy.h"

static const char *golden;

/* golden/<cas>/<file>, or the test stops with FAIL: a missing expected
 * output is a broken checkout, not a skip. */
static inline npy golden_load(const char *cas, const char *file)
{
    char path[1024], err[1200];
    npy a;
    snprintf(path, sizeof path, "%s/%s/%s", golden, cas, file);
    if (npy_load(path, &a, err, sizeof err)) {
        printf("FAIL %s\n", err);
        exit(1);
    }
    return a;
}

/* tolerance_rel_l2 of `file` in the case's case.json: the first one after
 * the file's key (a number grab, not a JSON parser; every golden case gives
 * each expected float file its own). 1e-4 where there is none. */
static inline double golden_tolerance(const char *cas, const char *file)
{
    char path[1024], key[256];
    snprintf(path, sizeof path, "%s/%s/case.json", golden, cas);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 1e-4;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    snprintf(key, sizeof key, "\"%s\": {", file);
    const char *p = strstr(buf, key);
    p = p ? strstr(p, "\"tolerance_rel_l2\":") : NULL;
    return p ? strtod(p + 19, NULL) : 1e-4;
}

/* rel-L2 over entries that upstream did not mask; masks must agree exactly
 * (-FLT_MAX in both at the same places): *mask_diff counts those that don't. */
static inline double golden_rel_l2(const float *ours, const float *want, int64_t n,
                                   int64_t *mask_diff)
{
    double num = 0, den = 0;
    *mask_diff = 0;
    for (int64_t i = 0; i < n; i++) {
        int mw = want[i] == -FLT_MAX, mo = ours[i] == -FLT_MAX;
        if (mw != mo) {
            (*mask_diff)++;
            continue;
        }
        if (mw)
            continue;
        double d = (double)ours[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline void golden_check_close(const char *what, const float *ours, const float *want, int64_t n,
                               double tol)
{
    int64_t md;
    double r = golden_rel_l2(ours, want, n, &md);
    CHECK(md == 0 && r <= tol, "%s: rel-L2 %.3g (tolerance %.3g), %lld mask mismatches", what, r,
          tol, (long long)md);
}

/* ids agreement: at least 99% equal and every mismatch a near-tie in our
 * own scores (the top two within `tie` of each other). */
static inline void golden_check_ids(const char *name, const int32_t *ours, const int64_t *want,
                                    int64_t n, const float *scores, int tokens, int64_t seq,
                                    double tie)
{
    int64_t same = 0, far = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ours[i] == want[i]) {
            same++;
            continue;
        }
        if (!scores) {
            far++;
            continue;
        }
        int64_t b = i / seq, p = i % seq;
        const float *s = scores + b * tokens * seq + p;
        double gap = fabs((double)s[ours[i] * seq] - s[want[i] * seq]);
        if (gap > tie)
            far++;
    }
    CHECK(same * 100 >= n * 99 && far == 0,
          "%s: encoded ids %lld/%lld equal (%.2f%%), %lld mismatches away from a tie", name,
          (long long)same, (long long)n, 100.0 * same / n, (long long)far);
}


/* ---- DALL·E golden checks shared by test_transformer (CPU) and
 * test_cuda_model (a device backend); `on` names the backend in messages */

/* dalle_cfg: upstream's forward(text, image[:, :5]) with cond_scale 3 and
 * both halves at 1 (ts + 1 + 5 rows, the last predicting image token 5);
 * the caller's caption is not modified (upstream zeroes it in place). */
static inline void golden_dalle_cfg(dalle_ctx *ctx, const char *on)
{
    const char *cas = "dalle_cfg";
    npy t = golden_load(cas, "text.npy"), im = golden_load(cas, "image_tokens.npy");
    int32_t *text = npy_to_i32(&t), *img = npy_to_i32(&im), *orig = npy_to_i32(&t);
    int B = (int)t.dims[0], S = dalle_image_seq_len(ctx), ts = dalle_text_seq_len(ctx);
    int V = dalle_total_tokens(ctx);
    const int k = 5, rows = ts + k + 1;
    int32_t *img6 = malloc((size_t)B * k * sizeof *img6);
    for (int b = 0; b < B; b++)
        memcpy(img6 + b * k, img + (int64_t)b * S, (size_t)k * 4);
    float *out = malloc((size_t)B * rows * V * sizeof *out);
    int32_t *zeros = calloc((size_t)B * ts, sizeof *zeros);
    struct {
        const char *file;
        const int32_t *text;
        float scale;
    } runs[] = {{"cond_scale_logits.npy", text, 3.0f},
                {"cfg_cond_logits.npy", text, 1.0f},
                {"cfg_null_logits.npy", zeros, 1.0f}};
    for (int r = 0; r < 3; r++) {
        npy want = golden_load(cas, runs[r].file);
        int s = dalle_logits(ctx, runs[r].text, img6, B, k, runs[r].scale, out);
        char what[256];
        snprintf(what, sizeof what, "dalle_cfg: %s (cond_scale %g) on %s", runs[r].file,
                 (double)runs[r].scale, on);
        CHECK(s == DALLE_OK && want.numel == (int64_t)B * rows * V, "%s: call", what);
        if (!s)
            golden_check_close(what, out, want.data, want.numel, golden_tolerance(cas, runs[r].file));
        npy_free(&want);
    }
    CHECK(!memcmp(text, orig, (size_t)B * ts * 4), "dalle_cfg: caption untouched by guidance on %s",
          on);
    free(orig);
    free(img6);
    free(out);
    free(zeros);
    free(text);
    free(img);
    npy_free(&t);
    npy_free(&im);
}

/* dalle_full: greedy generation = greedy_image_tokens.npy. Upstream's
 * generate_images(filter_thres=1.0) keeps k = 1 logit; ours takes thres <
 * 1, and any thres above 1 - 2/total_tokens also gives 1. */
static inline void golden_dalle_greedy(dalle_ctx *ctx, const char *on)
{
    const char *cas = "dalle_full";
    npy t = golden_load(cas, "text.npy"), g = golden_load(cas, "greedy_image_tokens.npy");
    int32_t *text = npy_to_i32(&t), *want = npy_to_i32(&g);
    int B = (int)t.dims[0], S = dalle_image_seq_len(ctx);
    int32_t *out = malloc((size_t)B * S * sizeof *out);
    dalle_sample_params sp = dalle_sample_default_params();
    sp.filter_thres = 0.999f;
    sp.seed = 12345;
    int s = dalle_sample(ctx, text, B, &sp, out);
    int first_diff = -1;
    for (int i = 0; s == DALLE_OK && i < B * S && first_diff < 0; i++)
        if (out[i] != want[i])
            first_diff = i;
    CHECK(s == DALLE_OK && first_diff < 0,
          "dalle_full: greedy generation on %s = greedy_image_tokens.npy (%s; first diff %d)", on,
          s ? dalle_last_error() : "ran", first_diff);
    free(out);
    free(text);
    free(want);
    npy_free(&t);
    npy_free(&g);
}

#endif
