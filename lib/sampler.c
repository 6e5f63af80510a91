/* Upstream's top_k(logits, thres) then gumbel_sample(logits, temperature):
 * keep the k = max(int((1 - thres) * total_tokens), 1) largest logits, then
 * argmax of logit / temperature + Gumbel noise. */
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "error.h"
#include "rng.h"

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

dalle_status sampler_init(sampler *s, const tf_hparams *hp, const dalle_sample_params *p,
                          int max_n)
{
    s->p = p;
    int k = top_k_count(hp, p->filter_thres);
    s->k = k < max_n ? k : max_n;
    s->order = malloc((size_t)max_n * sizeof *s->order);
    if (!s->order)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "sampling: out of memory");
    return DALLE_OK;
}

void sampler_free(sampler *s)
{
    free(s->order);
    s->order = NULL;
}

/* The masked part of upstream's row is -FLT_MAX: topk may keep some of
 * those entries when k exceeds the unmasked part, but they can never win the
 * Gumbel argmax against a finite logit, so only the unmasked logits compete
 * (and k is capped at their number). */
int32_t sampler_pick(sampler *s, const float *logits, int n, uint64_t stream, uint64_t counter)
{
    const int k = s->k < n ? s->k : n;
    if (k == 1) {
        /* top-1: the noise cannot change the pick (greedy) */
        int32_t best = 0;
        for (int32_t i = 1; i < n; i++)
            if (logits[i] > logits[best])
                best = i;
        return best;
    }
    for (int32_t i = 0; i < n; i++)
        s->order[i] = i;
    cmp_row = logits;
    qsort(s->order, (size_t)n, sizeof *s->order, cmp_desc);
    int32_t best = -1;
    double best_score = -INFINITY;
    for (int c = 0; c < k; c++) {
        int32_t id = s->order[c];
        /* gumbel_sample: (t / temperature) + noise, in float32 then noise */
        float scaled = logits[id] / s->p->temperature;
        double score = (double)scaled + rng_gumbel(s->p->seed, stream, counter, (uint64_t)id);
        if (best < 0 || score > best_score) {
            best = id;
            best_score = score;
        }
    }
    return best;
}

