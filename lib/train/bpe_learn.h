/* Learning CLIP-format BPE merges from captions (lib/train/bpe_learn.c). */
#ifndef DALLE_BPE_LEARN_H
#define DALLE_BPE_LEARN_H

#include <stddef.h>
#include <stdint.h>

#include "dalle/dalle.h"

/* CLIP's own file has 48894 merges; more would not fit its id layout. */
#define BPE_LEARN_MAX_MERGES 48894

/* Learn up to max_merges merges from n_texts UTF-8 captions, merging only
 * pairs seen at least min_count times. *merges receives a malloc'ed
 * merges file (header line, then "left right" lines, NUL-terminated) of
 * *merges_len bytes, loadable by dalle_tokenizer_create or as --bpe;
 * *n_merges (may be NULL) how many merges it holds. The vocabulary it gives
 * is 512 + n_merges + 2 ids. */
dalle_status bpe_learn(const char *const *texts, int64_t n_texts, int max_merges,
                       int64_t min_count, char **merges, size_t *merges_len, int *n_merges);

#endif
