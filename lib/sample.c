/* dalle_sample: DALLE.generate_images' loop over image tokens, with the
 * upstream bugs left out (docs/transformer.md, "Sampling").
 *
 * Per image token: the logits row of the last position (with guidance:
 * null + (cond - null) * cond_scale, the null pass having its own cache),
 * top-k with k = max(int((1 - filter_thres) * total_tokens), 1), then
 * Gumbel-max: argmax over the kept tokens of logit / temperature + g,
 * g = -log(-log(u)). u comes from a counter-based generator keyed by
 * (seed, image index in the call, token position, token id), so the tokens
 * of an image do not depend on threads, on max_batch or on the other
 * images of the batch. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"
#include "transformer_internal.h"

/* The double a user most likely meant by a float (0.9f -> 0.9), so that
 * int((1 - thres) * total_tokens) truncates as Python does for the same
 * literal: the shortest decimal that reads back as the same float. */
static double float_as_decimal(float f)
{
    char buf[40];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, sizeof buf, "%.*g", digits, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f)
            return d;
    }
    return (double)f;
}

/* upstream's top_k(): how many logits survive */
static int top_k_count(const tf_hparams *hp, float filter_thres)
{
    double k = (1.0 - float_as_decimal(filter_thres)) * hp->total_tokens;
    int ik = k >= 1.0 ? (int)k : 1;
    return ik > hp->total_tokens ? hp->total_tokens : ik;
}

typedef struct sampler {
    const tf_hparams *hp;
    const dalle_sample_params *p;
    int k;          /* kept image logits: top-k, less the masked text entries */
    int32_t *order; /* [num_image_tokens] scratch for the top-k selection */
} sampler;

/* Descending logit, then ascending id: a fixed order for ties. qsort has
 * no user pointer, so the comparator reads the row through a thread-local. */
static _Thread_local const float *cmp_row;

static int cmp_desc(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = cmp_row[i], y = cmp_row[j];
    if (x != y)
        return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

/* One image token from the image half of a logits row (num_image_tokens
 * entries). The masked text half of upstream's row is -FLT_MAX: topk may
 * keep some of those entries when k exceeds the image vocabulary, but they
 * can never win the Gumbel argmax against a finite logit, so only image
 * logits compete. */
static int32_t pick(sampler *s, const float *img_logits, uint64_t image, uint64_t t)
{
    const tf_hparams *hp = s->hp;
    const int n = hp->num_image_tokens;
    if (s->k == 1) {
        /* top-1: the noise cannot change the pick (greedy) */
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (img_logits[i] > img_logits[best])
                best = i;
        return best;
    }
    for (int32_t i = 0; i < n; i++)
        s->order[i] = i;
    cmp_row = img_logits;
    qsort(s->order, (size_t)n, sizeof *s->order, cmp_desc);
    int32_t best = -1;
    double best_score = -INFINITY;
    for (int c = 0; c < s->k; c++) {
        int32_t id = s->order[c];
        /* gumbel_sample: (t / temperature) + noise, in float32 then noise */
        float scaled = img_logits[id] / s->p->temperature;
        double score = (double)scaled + rng_gumbel(s->p->seed, image, t, (uint64_t)id);
        if (best < 0 || score > best_score) {
            best = id;
            best_score = score;
        }
    }
    return best;
}

typedef struct run {
    const transformer *tf;
    tf_state *cond, *null;
    int32_t *seq;      /* [chunk][prefix] */
    int32_t *zeros;    /* the all-padding caption */
    float *logits;     /* [chunk][total_tokens] */
    float *logits_null;
    int32_t *step;     /* [chunk]: the tokens just picked */
} run;

/* Feed tokens [nb][m] to both passes; leaves the guided image logits of
 * each sequence's last position in r->logits. */
static dalle_status feed(run *r, const int32_t *tokens_cond, const int32_t *tokens_null, int m,
                         float cond_scale)
{
    dalle_status s = tf_forward(r->tf, r->cond, tokens_cond, m, TF_LOGITS_LAST, r->logits);
    if (s || !r->null)
        return s;
    if ((s = tf_forward(r->tf, r->null, tokens_null, m, TF_LOGITS_LAST, r->logits_null)))
        return s;
    const tf_hparams *hp = &r->tf->hp;
    for (int b = 0; b < r->cond->batch; b++) {
        float *c = r->logits + (int64_t)b * hp->total_tokens + hp->text_vocab;
        const float *u = r->logits_null + (int64_t)b * hp->total_tokens + hp->text_vocab;
        for (int i = 0; i < hp->num_image_tokens; i++)
            c[i] = u[i] + (c[i] - u[i]) * cond_scale;
    }
    return DALLE_OK;
}

/* The first positions of each sequence: <bos>, caption (or the null
 * caption), primed image tokens. */
static void build_prefix(const run *r, const int32_t *text, const dalle_sample_params *p,
                         int b0, int nb, int null_caption, int prefix)
{
    const tf_hparams *hp = &r->tf->hp;
    for (int b = 0; b < nb; b++) {
        int32_t *s = r->seq + (int64_t)b * prefix;
        transformer_text_sequence(
            r->tf, null_caption ? r->zeros : text + (int64_t)(b0 + b) * hp->text_seq_len, s);
        for (int i = 0; i < p->n_prime; i++)
            s[hp->text_len + i] = p->prime[(int64_t)(b0 + b) * p->n_prime + i];
    }
}

static dalle_status generate_chunk(run *r, sampler *sm, const int32_t *text,
                                   const dalle_sample_params *p, int b0, int nb, int32_t *res,
                                   int64_t *done, int64_t total)
{
    const tf_hparams *hp = &r->tf->hp;
    const int S = hp->image_seq_len, prefix = hp->text_len + p->n_prime;
    dalle_status s;
    r->cond->batch = nb;
    tf_state_reset(r->cond);
    if (r->null) {
        r->null->batch = nb;
        tf_state_reset(r->null);
    }
    /* the null pass's prefix goes after the conditional one in seq */
    int32_t *seq_null = r->seq + (int64_t)nb * prefix;
    build_prefix(r, text, p, b0, nb, 0, prefix);
    if (r->null) {
        int32_t *save = r->seq;
        r->seq = seq_null;
        build_prefix(r, text, p, b0, nb, 1, prefix);
        r->seq = save;
    }
    if (p->abort && p->abort(p->user))
        return dalle_fail(DALLE_ERR_ABORTED, "dalle_sample: aborted after %lld of %lld tokens",
                          (long long)*done, (long long)total);
    if ((s = feed(r, r->seq, seq_null, prefix, p->cond_scale)))
        return s;
    for (int t = p->n_prime; t < S; t++) {
        for (int b = 0; b < nb; b++) {
            const float *row = r->logits + (int64_t)b * hp->total_tokens + hp->text_vocab;
            r->step[b] = pick(sm, row, (uint64_t)(b0 + b), (uint64_t)t);
            res[(int64_t)(b0 + b) * S + t] = r->step[b];
        }
        *done += nb;
        if (p->progress)
            p->progress(*done, total, p->user);
        if (t == S - 1)
            break;
        if (p->abort && p->abort(p->user))
            return dalle_fail(DALLE_ERR_ABORTED,
                              "dalle_sample: aborted after %lld of %lld tokens",
                              (long long)*done, (long long)total);
        if ((s = feed(r, r->step, r->step, 1, p->cond_scale)))
            return s;
    }
    return DALLE_OK;
}

dalle_status transformer_sample(const transformer *tf, const dalle_ctx_params *cp,
                                const int32_t *text, int batch, const dalle_sample_params *p,
                                int32_t *out)
{
    const tf_hparams *hp = &tf->hp;
    const int S = hp->image_seq_len;
    if (p->n_prime >= S) {
        /* primed with the whole image: nothing left to sample */
        memcpy(out, p->prime, (size_t)batch * S * sizeof *out);
        return DALLE_OK;
    }
    const int chunk = batch < cp->max_batch ? batch : cp->max_batch;
    const int prefix = hp->text_len + p->n_prime;
    const int guided = p->cond_scale != 1.0f;
    run r = {.tf = tf};
    sampler sm = {.hp = hp, .p = p};
    int32_t *res = NULL;
    dalle_status s;
    if ((s = tf_state_create(tf, chunk, prefix, &r.cond)) ||
        (guided && (s = tf_state_create(tf, chunk, prefix, &r.null))))
        goto done;
    r.seq = malloc((size_t)2 * chunk * prefix * sizeof *r.seq);
    r.zeros = calloc((size_t)hp->text_seq_len, sizeof *r.zeros);
    r.logits = malloc((size_t)chunk * hp->total_tokens * sizeof *r.logits);
    r.logits_null = malloc((size_t)chunk * hp->total_tokens * sizeof *r.logits_null);
    r.step = malloc((size_t)chunk * sizeof *r.step);
    sm.order = malloc((size_t)hp->num_image_tokens * sizeof *sm.order);
    res = malloc((size_t)batch * S * sizeof *res);
    if (!r.seq || !r.zeros || !r.logits || !r.logits_null || !r.step || !sm.order || !res) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_sample: out of memory");
        goto done;
    }
    int k = top_k_count(hp, p->filter_thres);
    sm.k = k < hp->num_image_tokens ? k : hp->num_image_tokens;
    ops_set_threads(cp->n_threads);
    int64_t done_tokens = 0, total = (int64_t)batch * (S - p->n_prime);
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < p->n_prime; t++)
            res[(int64_t)b * S + t] = p->prime[(int64_t)b * p->n_prime + t];
    for (int b0 = 0; b0 < batch && !s; b0 += chunk) {
        int nb = batch - b0 < chunk ? batch - b0 : chunk;
        s = generate_chunk(&r, &sm, text, p, b0, nb, res, &done_tokens, total);
    }
    if (!s)
        memcpy(out, res, (size_t)batch * S * sizeof *out);
done:
    tf_state_free(r.cond);
    tf_state_free(r.null);
    free(r.seq);
    free(r.zeros);
    free(r.logits);
    free(r.logits_null);
    free(r.step);
    free(sm.order);
    free(res);
    return s;
}
