/* Training pairs as token ids (the public dalle_token_data_* of
 * include/dalle/train.h): what the trainer reads from a data set. */
#ifndef DALLE_TRAIN_TOKEN_DATA_H
#define DALLE_TRAIN_TOKEN_DATA_H

#include <stdint.h>

#include "dalle/train.h"

/* Steps per epoch for `batch` (count / batch, drop_last as upstream), 0 if
 * the set holds fewer than `batch` pairs. */
int64_t token_data_steps_per_epoch(const dalle_token_data *d, int batch);

#endif
