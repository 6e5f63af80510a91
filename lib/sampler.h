/* Picking one token from a logits row as upstream's top_k + gumbel_sample
 * do, shared by image sampling (lib/sample.c) and text generation
 * (lib/sample_text.c). */
#ifndef DALLE_SAMPLER_H
#define DALLE_SAMPLER_H

#include <stdint.h>

#include "dalle/dalle.h"
#include "transformer_internal.h"

struct tpool;

typedef struct sampler {
    const dalle_sample_params *p;
    int k;        /* top-k of the whole row (upstream's k), capped at max_n */
    int max_n, rows;
    float *vals;  /* [rows][max_n] scratch for the top-k selection, one per row
                   * picked at once (sampler_pick_rows) */
} sampler;

/* For rows of at most max_n candidate logits. A zeroed sampler may be freed. */
dalle_status sampler_init(sampler *s, const tf_hparams *hp, const dalle_sample_params *p,
                          int max_n);
/* The same, with scratch for `rows` rows picked at once (sampler_pick_rows
 * shares them out to a pool; sampler_init's sampler picks one at a time). */
dalle_status sampler_init_rows(sampler *s, const tf_hparams *hp, const dalle_sample_params *p,
                               int max_n, int rows);
void sampler_free(sampler *s);

/* One token id in [0, n) from logits[0 .. n): the part of a row that is not
 * masked at this position. The Gumbel noise of candidate `id` is
 * rng_gumbel(seed, stream, counter, id): a pure function of where the token
 * is, never of threads or batching.
 *
 * The pick is defined as if the row were sorted by (logit descending, id
 * ascending), the first k kept, and the first of those with the highest
 * score taken; it is computed without sorting (a linear-time selection of
 * the k-th value, none at all when k >= n). Logits must not be NaN. */
int32_t sampler_pick(sampler *s, const float *logits, int n, uint64_t stream, uint64_t counter);

/* ids[r] = sampler_pick(s, logits + r * ld, n, stream0 + r, counter) for
 * r < rows, the rows shared out to `pool` (each row alone: the same ids
 * for any pool). rows <= the sampler's rows. */
void sampler_pick_rows(sampler *s, struct tpool *pool, const float *logits, int64_t ld, int rows,
                       int n, uint64_t stream0, uint64_t counter, int32_t *ids);

#endif
