/* Captioned images in memory (the public dalle_image_data_* of
 * include/dalle/train.h): what the CLIP and VAE trainers read. */
#ifndef DALLE_TRAIN_IMAGE_DATA_H
#define DALLE_TRAIN_IMAGE_DATA_H

#include <stdint.h>

#include "dalle/train.h"

/* Steps per epoch for `batch` (count / batch, drop_last as upstream), 0 if
 * the set holds fewer than `batch` images. */
int64_t image_data_steps_per_epoch(const dalle_image_data *d, int batch);

/* Every caption of the set, numbered 0 .. image_data_n_captions - 1 in
 * image order (the captions of image i are consecutive). */
int64_t image_data_n_captions(const dalle_image_data *d);
const char *image_data_caption_at(const dalle_image_data *d, int64_t c);

/* dalle_image_data_batch with the drawn captions as numbers (caption_ids
 * [batch], may be NULL) instead of pointers. */
dalle_status image_data_batch(dalle_image_data *d, uint64_t seed, int64_t step, int batch,
                              float *pixels, int64_t *caption_ids, int64_t *indices);

/* A number that differs between sets alive at the same time and between a
 * set and a later one at the same address: what a trainer keys a cache of
 * the set's tokenized captions on. */
uint64_t image_data_serial(const dalle_image_data *d);

#endif
