/* Feeding a transformer one position at a time, for the tests that compare
 * the KV-cache path with upstream's logits (test_transformer on the CPU,
 * test_cuda_model on a device backend). Include after transformer_internal.h. */
#ifndef DALLE_TEST_TF_STEPS_H
#define DALLE_TEST_TF_STEPS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "transformer_internal.h"

/* The sequences the model reads, [B][text_len + image_seq_len]: each
 * caption as transformer_text_sequence makes it (<bos>, padding ids), then
 * its image tokens. The caller frees it. */
static inline int32_t *tf_steps_sequences(const transformer *tf, const int32_t *text,
                                          const int32_t *img, int B)
{
    const tf_hparams *hp = &tf->hp;
    const int64_t L = hp->text_len + hp->image_seq_len;
    int32_t *seq = malloc((size_t)B * L * sizeof *seq);
    for (int b = 0; b < B; b++) {
        int32_t *sq = seq + b * L;
        transformer_text_sequence(tf, text + (int64_t)b * hp->text_seq_len, sq);
        memcpy(sq + hp->text_len, img + (int64_t)b * hp->image_seq_len,
               (size_t)hp->image_seq_len * sizeof *sq);
    }
    return seq;
}

/* Positions 0 .. P-1 of seq (as above; B <= 64) through st, one token of
 * each sequence a step: the logits of position p of sequence b into
 * out[b][p][total_tokens]; row: scratch of B rows. Stops at the first
 * failure and returns it. */
static inline dalle_status tf_steps_feed(const transformer *tf, tf_state *st, const int32_t *seq,
                                         int B, int P, float *row, float *out)
{
    const int64_t L = tf->hp.text_len + tf->hp.image_seq_len, V = tf->hp.total_tokens;
    dalle_status s = DALLE_OK;
    int32_t tok[64];
    for (int p = 0; p < P && !s; p++) {
        for (int b = 0; b < B; b++)
            tok[b] = seq[b * L + p];
        s = tf_forward(tf, st, tok, 1, TF_LOGITS_LAST, row);
        for (int b = 0; b < B && !s; b++)
            memcpy(out + ((int64_t)b * P + p) * V, row + b * V, (size_t)V * sizeof *out);
    }
    return s;
}

#endif
