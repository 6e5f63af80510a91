/* The order in which training reads its data (batch_order.h). */
#include "batch_order.h"

#include <stdlib.h>

#include "../error.h"
#include "../rng.h"

/* rng streams of the data order (the weights use streams 0 .. n_params) */
#define STREAM_PERM 0x7065726d00000000ULL    /* "perm" */
#define STREAM_CAPTION 0x6361707400000000ULL /* "capt" */

void batch_order_init(batch_order *o)
{
    o->perm = NULL;
    o->epoch = -1;
    o->seed = 0;
}

void batch_order_free(batch_order *o)
{
    free(o->perm);
    batch_order_init(o);
}

int64_t batch_order_steps_per_epoch(int64_t n, int batch)
{
    return batch > 0 && n >= batch ? n / batch : 0;
}

/* Fisher-Yates from counter-based draws: the permutation of (seed, epoch). */
static void permute(batch_order *o, int64_t n, uint64_t seed, int64_t epoch)
{
    if (o->epoch == epoch && o->seed == seed)
        return;
    for (int64_t i = 0; i < n; i++)
        o->perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        double u = rng_uniform(seed, STREAM_PERM, (uint64_t)epoch, (uint64_t)i);
        int64_t j = (int64_t)(u * (double)(i + 1)); /* u < 1: j <= i */
        if (j > i)
            j = i;
        int64_t t = o->perm[i];
        o->perm[i] = o->perm[j];
        o->perm[j] = t;
    }
    o->epoch = epoch;
    o->seed = seed;
}

dalle_status batch_order_start(batch_order *o, int64_t n, uint64_t seed, int64_t step, int batch,
                               const char *fn, const char *items, batch_pick *pick)
{
    if (batch < 1 || batch > n || step < 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: batch %d (1..%lld %s), step %lld (>= 0)",
                          fn, batch, (long long)n, items, (long long)step);
    if (!o->perm && !(o->perm = malloc((size_t)n * sizeof *o->perm)))
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    const int64_t spe = n / batch;
    pick->seed = seed;
    pick->epoch = step / spe;
    pick->first = (step % spe) * batch;
    permute(o, n, seed, pick->epoch);
    return DALLE_OK;
}

int64_t batch_order_item(const batch_order *o, const batch_pick *pick, int b,
                         const int64_t *first_cap, int64_t *caption)
{
    int64_t item = o->perm[pick->first + b];
    int64_t c0 = first_cap[item], nc = first_cap[item + 1] - c0;
    int64_t k = nc > 1 ? (int64_t)(rng_u64(pick->seed, STREAM_CAPTION, (uint64_t)pick->epoch,
                                           (uint64_t)item) %
                                   (uint64_t)nc)
                       : 0;
    *caption = c0 + k;
    return item;
}
