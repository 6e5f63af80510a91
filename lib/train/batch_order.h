/* Which items a training step reads (token_data.c's pairs, image_data.c's
 * images): shuffled epochs drawn from counter-based random numbers, so a
 * batch is a pure function of (seed, step, batch) and a trainer that stores
 * only its step counter resumes on exactly the batches it would have seen.
 *
 * Epoch e is a Fisher-Yates permutation of the n items from the draws
 * (seed, "perm", e, i); step s of batches of B reads positions
 * (s mod n/B)·B .. +B of epoch s / (n/B) (drop_last, as upstream); an item
 * with several captions gets the caption (seed, "capt", e, item) picks,
 * as upstream draws a caption line each time an item is fetched. */
#ifndef DALLE_TRAIN_BATCH_ORDER_H
#define DALLE_TRAIN_BATCH_ORDER_H

#include <stdint.h>

#include "dalle/dalle.h"

typedef struct batch_order {
    int64_t *perm;   /* the permutation of the last epoch asked for (lazily allocated) */
    int64_t epoch;   /* -1: none yet */
    uint64_t seed;
} batch_order;

void batch_order_init(batch_order *o);
void batch_order_free(batch_order *o);

/* Steps per epoch of n items in batches of `batch` (n / batch, drop_last),
 * 0 when there are fewer than `batch`. */
int64_t batch_order_steps_per_epoch(int64_t n, int batch);

/* One step's batch, after batch_order_start. */
typedef struct batch_pick {
    uint64_t seed;
    int64_t epoch, first; /* the epoch; the position in its permutation of entry 0 */
} batch_pick;

/* Step `step` of batches of `batch` over n items: batch in 1..n and step
 * >= 0 are checked (DALLE_ERR_INVALID_ARGUMENT "fn: batch B (1..n <items>),
 * step S (>= 0)"), the epoch's permutation made. */
dalle_status batch_order_start(batch_order *o, int64_t n, uint64_t seed, int64_t step, int batch,
                               const char *fn, const char *items, batch_pick *pick);

/* Entry b of the batch: the item, and in *caption the caption drawn among
 * its first_cap[item] .. first_cap[item + 1] - 1. */
int64_t batch_order_item(const batch_order *o, const batch_pick *pick, int b,
                         const int64_t *first_cap, int64_t *caption);

#endif
