/* The BPE merges a trainer keeps (to store them in the bundles it saves),
 * from a merges .txt file or from a bundle's tokenizer.bpe_merges tensor. */
#ifndef DALLE_TRAIN_MERGES_IO_H
#define DALLE_TRAIN_MERGES_IO_H

#include <stddef.h>
#include <stdint.h>

#include "dalle/dalle.h"

/* Non-zero when the file at path starts with the bundle magic. */
int merges_path_is_bundle(const char *path);

/* The merges bytes of an open bundle (*data stays NULL when it has none). */
dalle_status merges_from_bundle(dalle_bundle *b, uint8_t **data, size_t *size);

/* The merges of `path`: a bundle (*data NULL when it holds none) or the
 * whole file as it is (a merges .txt; dalle_tokenizer_create checks it). */
dalle_status merges_from_path(const char *path, uint8_t **data, size_t *size);

#endif
