/* The sampler (lib/sampler.c) against a straightforward reference: sort the
 * candidates by (logit descending, id ascending) with qsort, keep the first
 * k, take the first of those with the highest logit / temperature + Gumbel
 * score. That is what sampler_pick did before it learnt to select without
 * sorting; the picks must be the same ids on every row, ties included. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "check.h"
#include "rng.h"
#include "sampler.h"
#include "threadpool.h"

static const float *ref_row;

static int ref_cmp(const void *a, const void *b)
{
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float x = ref_row[i], y = ref_row[j];
    if (x != y)
        return x > y ? -1 : 1;
    return (i > j) - (i < j);
}

static int32_t ref_pick(const dalle_sample_params *p, int k_row, const float *logits, int n,
                        uint64_t stream, uint64_t counter, int32_t *order)
{
    const int k = k_row < n ? k_row : n;
    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    ref_row = logits;
    qsort(order, (size_t)n, sizeof *order, ref_cmp);
    int32_t best = -1;
    double best_score = -INFINITY;
    for (int c = 0; c < k; c++) {
        int32_t id = order[c];
        float scaled = logits[id] / p->temperature;
        double score = (double)scaled + rng_gumbel(p->seed, stream, counter, (uint64_t)id);
        if (best < 0 || score > best_score) {
            best = id;
            best_score = score;
        }
    }
    return best;
}

static uint64_t lcg_state = 0x9E3779B97F4A7C15ull;
static uint32_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(lcg_state >> 33);
}

/* Rows of several kinds: continuous values, a few levels (many ties, also
 * at the k-th value), a constant row, huge and masked (-FLT_MAX) values,
 * signed zeros, equal infinite scores from different logits. */
static void fill_row(float *row, int n, int kind)
{
    for (int i = 0; i < n; i++) {
        float u = (float)(lcg() % 1000000) / 1000000.0f;
        switch (kind) {
        case 0: row[i] = 8.0f * u - 4.0f; break;
        case 1: row[i] = (float)(lcg() % 5) - 2.0f; break;
        case 2: row[i] = 1.25f; break;
        case 3: row[i] = lcg() % 7 == 0 ? -FLT_MAX : (lcg() % 11 == 0 ? 3e38f : u); break;
        case 4: row[i] = lcg() % 2 ? 0.0f : -0.0f; break;
        default: /* scores of +inf (temperature < 1) from different logits */
            row[i] = lcg() % 3 == 0 ? 2e38f : (lcg() % 2 ? 3e38f : -FLT_MAX);
            break;
        }
    }
}

int main(void)
{
    enum { MAX_N = 8192 };
    float *row = malloc(MAX_N * sizeof *row);
    int32_t *order = malloc(MAX_N * sizeof *order);
    if (!row || !order)
        return 1;
    /* k = max(int((1 - thres) * total_tokens), 1): from greedy to all */
    const float thres[] = {0.0f, 0.5f, 0.9f, 0.99f, 0.999f, 0.9995f, 0.99999f};
    const float temps[] = {1.0f, 0.5f, 1.7f};
    const int sizes[] = {1, 2, 3, 17, 100, 1000, 8192};
    tf_hparams hp = {0};
    hp.total_tokens = 10000;
    long rows = 0, mismatches = 0;
    for (size_t ti = 0; ti < sizeof thres / sizeof *thres; ti++)
        for (size_t te = 0; te < sizeof temps / sizeof *temps; te++) {
            dalle_sample_params p = {0};
            p.filter_thres = thres[ti];
            p.temperature = temps[te];
            p.seed = 1234 + ti * 10 + te;
            sampler s = {0};
            if (sampler_init(&s, &hp, &p, MAX_N) != DALLE_OK)
                return 1;
            for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
                for (int kind = 0; kind < 6; kind++)
                    for (int rep = 0; rep < 4; rep++) {
                        int n = sizes[si];
                        fill_row(row, n, kind);
                        uint64_t stream = (uint64_t)rep, counter = (uint64_t)(kind * 100 + si);
                        int32_t want = ref_pick(&p, s.k, row, n, stream, counter, order);
                        int32_t got = sampler_pick(&s, row, n, stream, counter);
                        rows++;
                        if (got != want) {
                            mismatches++;
                            printf("mismatch: thres %g temp %g n %d kind %d rep %d: %d, want %d\n",
                                   (double)p.filter_thres, (double)p.temperature, n, kind, rep,
                                   (int)got, (int)want);
                        }
                    }
            sampler_free(&s);
        }
    CHECK(mismatches == 0, "sampler_pick = the sorting reference on %ld rows (%ld differ)", rows,
          mismatches);

    /* k below n on a row where every logit ties: the k lowest ids compete */
    {
        dalle_sample_params p = {0};
        p.filter_thres = 0.999f; /* k = 10 of total_tokens 10000 */
        p.temperature = 1.0f;
        p.seed = 7;
        sampler s = {0};
        if (sampler_init(&s, &hp, &p, MAX_N) != DALLE_OK)
            return 1;
        for (int i = 0; i < 1000; i++)
            row[i] = 0.5f;
        int ok = 1;
        for (uint64_t c = 0; c < 200; c++)
            ok &= sampler_pick(&s, row, 1000, 0, c) < s.k;
        CHECK(s.k == 10 && ok, "all-equal row, k = %d: the pick is always among the first k ids",
              s.k);
        sampler_free(&s);
    }
    /* rows picked at once on a pool: each row's id is sampler_pick's for
     * that row alone (its own scratch, its own stream), any thread count */
    {
        enum { ROWS = 8, N = 5000 };
        dalle_sample_params p = {0};
        p.filter_thres = 0.9f; /* k = 1000 < N: the selection scratch is used */
        p.temperature = 0.7f;
        p.seed = 99;
        sampler s = {0}, one = {0};
        float *rows_ = malloc(sizeof(float) * ROWS * N);
        if (!rows_ || sampler_init_rows(&s, &hp, &p, N, ROWS) != DALLE_OK ||
            sampler_init(&one, &hp, &p, N) != DALLE_OK)
            return 1;
        for (int r = 0; r < ROWS; r++)
            fill_row(rows_ + r * N, N, r % 6);
        int ok = 1;
        for (int t = 0; t <= 3; t++) {
            tpool *pool = NULL;
            if (t && tpool_create(t, &pool) != DALLE_OK)
                return 1;
            for (uint64_t c = 0; c < 20; c++) {
                int32_t ids[ROWS];
                sampler_pick_rows(&s, pool, rows_, N, ROWS, N, 40, c, ids);
                for (int r = 0; r < ROWS; r++)
                    ok &= ids[r] == sampler_pick(&one, rows_ + r * N, N, 40 + (uint64_t)r, c);
            }
            tpool_free(pool);
        }
        CHECK(ok, "sampler_pick_rows (no pool, 1, 2, 3 threads) = sampler_pick row by row");
        sampler_free(&s);
        sampler_free(&one);
        free(rows_);
    }
    /* the hoisted key: the same numbers as the four-word calls */
    {
        int ok = 1;
        for (uint64_t i = 0; i < 1000; i++) {
            const uint64_t seed = i * 7919, st = i % 13, c = i / 3, lane = i * 31;
            const uint64_t key = rng_key(seed, st, c);
            ok &= rng_u64_at(key, lane) == rng_u64(seed, st, c, lane) &&
                  rng_uniform_at(key, lane) == rng_uniform(seed, st, c, lane) &&
                  rng_gumbel_at(key, lane) == rng_gumbel(seed, st, c, lane);
        }
        CHECK(ok, "rng_*_at(rng_key(seed, stream, counter), lane) = rng_*(seed, stream, counter, lane)");
        /* and the values themselves are the generator's (SplitMix64's
         * finaliser chained over the words), independent of the code above */
        const uint64_t words[4] = {5, 1, 2, 3}; /* seed, stream, counter, lane */
        uint64_t z = 0;
        for (int w = 0; w < 4; w++) {
            z ^= words[w];
            z += 0x9e3779b97f4a7c15ULL;
            z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
            z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
            z ^= z >> 31;
        }
        CHECK(rng_u64(5, 1, 2, 3) == z, "rng_u64(5, 1, 2, 3) = the chained finaliser");
    }
    free(row);
    free(order);
    return check_summary();
}
