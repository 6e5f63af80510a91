/* dalle_generate_text: DALLE.generate_texts, continuing a caption.
 *
 * Upstream feeds the caption's token ids as they are from position 0 (no
 * <bos>; an empty caption starts from id 0) and samples text ids, padding
 * ids included, until text_seq_len tokens; text positions can only predict
 * text ids (the logits mask), so only the text part of each row competes. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sampler.h"
#include "transformer.h"

/* Gumbel streams of text generation, apart from those of images
 * (stream = image index < 2^20). */
#define TEXT_STREAM ((uint64_t)1 << 63)

dalle_status transformer_generate_text(const transformer *tf, const dalle_ctx_params *cp,
                                       const int32_t *prefix, int n_prefix,
                                       const dalle_sample_params *p, int32_t *out)
{
    (void)cp; /* n_threads: the context's pool comes with tf (transformer_set_pool) */
    const tf_hparams *hp = &tf->hp;
    const int n = hp->text_seq_len;
    static const int32_t start = 0;
    if (n_prefix == 0) {
        prefix = &start;
        n_prefix = 1;
    }
    if (n_prefix >= n) {
        memcpy(out, prefix, (size_t)n * sizeof *out);
        return DALLE_OK;
    }
    tf_state *st = NULL;
    sampler sm = {0};
    int32_t *res = malloc((size_t)n * sizeof *res);
    float *row = malloc((size_t)hp->total_tokens * sizeof *row);
    dalle_status s;
    if ((s = tf_state_create(tf, 1, n_prefix, &st)) ||
        (s = sampler_init(&sm, hp, p, hp->text_vocab)))
        goto done;
    if (!res || !row) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_generate_text: out of memory");
        goto done;
    }
    memcpy(res, prefix, (size_t)n_prefix * sizeof *res);
    if ((s = tf_forward(tf, st, res, n_prefix, TF_LOGITS_LAST, row)))
        goto done;
    for (int t = n_prefix; t < n; t++) {
        res[t] = sampler_pick(&sm, row, hp->text_vocab, TEXT_STREAM, (uint64_t)t);
        if (p->progress)
            p->progress(t - n_prefix + 1, n - n_prefix, p->user);
        if (t == n - 1)
            break;
        if (p->abort && p->abort(p->user)) {
            s = dalle_fail(DALLE_ERR_ABORTED, "dalle_generate_text: aborted after %d of %d tokens",
                           t - n_prefix + 1, n - n_prefix);
            goto done;
        }
        if ((s = tf_forward(tf, st, res + t, 1, TF_LOGITS_LAST, row)))
            goto done;
    }
    memcpy(out, res, (size_t)n * sizeof *out);
done:
    tf_state_free(st);
    sampler_free(&sm);
    free(res);
    free(row);
    return s;
}
