/* Upstream's top_k(logits, thres) then gumbel_sample(logits, temperature):
 * keep the k = max(int((1 - thres) * total_tokens), 1) largest logits, then
 * argmax of logit / temperature + Gumbel noise. */
#include "sampler.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "rng.h"
#include "threadpool.h"

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

/* The k-th largest of v[0 .. n) (1 <= k <= n); reorders v. Quickselect
 * with a three-way partition, so runs of equal values cost one pass; the
 * value found is the same whatever the pivots, so the pick never depends
 * on them. Expected linear time; a range still large after 2·log2(n)
 * rounds (a pathological input) is finished by a sort. */
static int cmp_float_desc(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x < y) - (x > y);
}

static float kth_largest(float *v, int n, int k)
{
    int lo = 0, hi = n;
    const int want = k - 1;
    int rounds = 2;
    for (int m = n; m > 1; m >>= 1)
        rounds += 2;
    while (hi - lo > 1) {
        if (--rounds == 0) {
            qsort(v + lo, (size_t)(hi - lo), sizeof *v, cmp_float_desc);
            break;
        }
        /* median of the first, middle and last values */
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
        float piv = a > b ? (b > c ? b : (a > c ? c : a)) : (a > c ? a : (b > c ? c : b));
        /* [lo, gt) > piv, [gt, i) == piv, [lt, hi) < piv */
        int gt = lo, i = lo, lt = hi;
        while (i < lt) {
            float x = v[i];
            if (x > piv) {
                v[i++] = v[gt];
                v[gt++] = x;
            } else if (x < piv) {
                v[i] = v[--lt];
                v[lt] = x;
            } else {
                i++;
            }
        }
        if (want < gt)
            hi = gt;
        else if (want < lt)
            return piv;
        else
            lo = lt;
    }
    return v[want];
}

/* An upper bound of the Gumbel noise -log(-log u) that costs no logarithm,
 * so that most candidates can be ruled out without computing their noise
 * (two logs each: most of a pick's time over 8192 image tokens otherwise).
 * -log u >= 1 - u gives g <= -log(1 - u); writing 1 - u = m·2^e with
 * 1 <= m < 2, log2(m) >= m - 1 (a chord of a concave function) gives
 * -log(1 - u) <= -(e + m - 1)·ln 2. Tight (within 0.06) where the noise is
 * large, which is where it can win. The slack covers the rounding of this
 * bound and of the logs; u too close to 1 (where rng_gumbel may round to
 * +inf) is never ruled out. */
static double gumbel_bound(double u)
{
    const double y = 1.0 - u;
    if (!(y >= 0x1p-50))
        return INFINITY;
    uint64_t bits;
    memcpy(&bits, &y, sizeof bits);
    const int e = (int)((bits >> 52) & 0x7ff) - 1023;
    bits = (bits & (((uint64_t)1 << 52) - 1)) | ((uint64_t)1023 << 52);
    double m;
    memcpy(&m, &bits, sizeof m);
    return -((double)e + (m - 1.0)) * 0.69314718055994531 + 1e-9;
}

dalle_status sampler_init_rows(sampler *s, const tf_hparams *hp, const dalle_sample_params *p,
                               int max_n, int rows)
{
    s->p = p;
    int k = top_k_count(hp, p->filter_thres);
    s->k = k < max_n ? k : max_n;
    s->max_n = max_n;
    s->rows = rows;
    s->vals = malloc((size_t)max_n * (size_t)rows * sizeof *s->vals);
    if (!s->vals)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "sampling: out of memory");
    return DALLE_OK;
}

dalle_status sampler_init(sampler *s, const tf_hparams *hp, const dalle_sample_params *p,
                          int max_n)
{
    return sampler_init_rows(s, hp, p, max_n, 1);
}

void sampler_free(sampler *s)
{
    free(s->vals);
    s->vals = NULL;
}

/* The masked part of upstream's row is -FLT_MAX: topk may keep some of
 * those entries when k exceeds the unmasked part, but they can never win the
 * Gumbel argmax against a finite logit, so only the unmasked logits compete
 * (and k is capped at their number).
 *
 * Upstream's top-k keeps the k largest logits; ties at the k-th value are
 * broken by the lower id (our fixed order: descending logit, then ascending
 * id). So the kept set is every logit above the k-th largest value `thr`
 * plus the lowest ids among those equal to it, which one pass in id order
 * finds once thr is known: no sort. The winner is the highest score; equal
 * scores go to the earlier candidate in that fixed order (higher logit,
 * then lower id), as a scan of the sorted candidates would. */
/* sampler_pick with the selection scratch `vals` */
static int32_t pick(const sampler *s, float *vals, const float *logits, int n, uint64_t stream,
                    uint64_t counter)
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
    const int all = k >= n; /* every candidate competes: nothing to select */
    float thr = 0.0f;
    int ties = 0; /* candidates equal to thr still to keep */
    if (!all) {
        memcpy(vals, logits, (size_t)n * sizeof *vals);
        thr = kth_largest(vals, n, k);
        int above = 0;
        for (int32_t i = 0; i < n; i++)
            above += logits[i] > thr;
        ties = k - above;
    }
    const float temperature = s->p->temperature;
    /* the noise's key words are the row's: mixed once, not per id */
    const uint64_t key = rng_key(s->p->seed, stream, counter);
    int32_t best = -1;
    double best_score = -INFINITY;
    float best_logit = 0.0f;
    for (int32_t id = 0; id < n; id++) {
        const float x = logits[id];
        if (!all && !(x > thr)) {
            if (x < thr || ties == 0)
                continue;
            ties--;
        }
        /* gumbel_sample: (t / temperature) + noise, in float32 then noise */
        const float scaled = x / temperature;
        /* a candidate whose score cannot even reach the best so far cannot
         * win, nor tie: skip its logs (the same pick, exactly) */
        if (best >= 0 &&
            (double)scaled + gumbel_bound(rng_uniform_at(key, (uint64_t)id)) < best_score)
            continue;
        double score = (double)scaled + rng_gumbel_at(key, (uint64_t)id);
        if (best < 0 || score > best_score || (score == best_score && x > best_logit)) {
            best = id;
            best_score = score;
            best_logit = x;
        }
    }
    return best;
}

int32_t sampler_pick(sampler *s, const float *logits, int n, uint64_t stream, uint64_t counter)
{
    return pick(s, s->vals, logits, n, stream, counter);
}

typedef struct pick_job {
    const sampler *s;
    const float *logits;
    int64_t ld;
    int n;
    uint64_t stream0, counter;
    int32_t *ids;
} pick_job;

static void pick_task(void *arg, int64_t r)
{
    const pick_job *j = arg;
    j->ids[r] = pick(j->s, j->s->vals + r * j->s->max_n, j->logits + r * j->ld, j->n,
                     j->stream0 + (uint64_t)r, j->counter);
}

void sampler_pick_rows(sampler *s, struct tpool *pool, const float *logits, int64_t ld, int rows,
                       int n, uint64_t stream0, uint64_t counter, int32_t *ids)
{
    pick_job j = {s, logits, ld, n, stream0, counter, ids};
    /* more rows than scratch areas: one at a time in the first */
    if (rows > s->rows) {
        for (int r = 0; r < rows; r++)
            ids[r] = pick(s, s->vals, logits + r * ld, n, stream0 + (uint64_t)r, counter);
        return;
    }
    tpool_run(pool, rows, pick_task, &j);
}
