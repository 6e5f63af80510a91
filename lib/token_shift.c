/* PreShiftToken (shift_tokens=True): before each attention and feed-forward
 * function, on the layer-normed input, some channels of a token are taken
 * from an earlier token.
 *   text positions (<bos> + caption, p < text_len): the first ceil(dim/2)
 *     channels come from position p - 1 (zeros at p = 0);
 *   image token (row r, column c): channels [0, q) from the token above
 *     (r - 1, c), channels [q, 2q) from the token to the left (r, c - 1),
 *     zeros at the top row / left column; q = ceil(dim/4) (torch.chunk).
 * The rest pass through. Image tokens never take text channels.
 *
 * We keep every normed input of the sequence (the history), so a new token
 * reads its neighbours there: the same values the full forward uses, at
 * O(dim) per token. Upstream's uncached forward skips the shift entirely
 * when the whole sequence is shorter than text_len; DALLE.forward always
 * feeds at least <bos> + caption, so that case never reaches the model. */
#include <string.h>

#include "transformer_internal.h"

static void copy_or_zero(float *dst, const float *src, int n)
{
    if (src)
        memcpy(dst, src, (size_t)n * sizeof *dst);
    else
        memset(dst, 0, (size_t)n * sizeof *dst);
}

void token_shift(const transformer *tf, const tf_state *st, float *hist, const float *h, int m,
                 float *out)
{
    const tf_hparams *hp = &tf->hp;
    const int d = hp->dim, W = hp->fmap;
    const int half = (d + 1) / 2, q = (d + 3) / 4;
    const int left = q < d - q ? q : d - q;
    for (int b = 0; b < st->batch; b++) {
        float *hb = hist + (int64_t)b * hp->max_pos * d;
        /* record the whole chunk first: tokens in it read each other */
        for (int i = 0; i < m; i++)
            memcpy(hb + (int64_t)(st->pos + i) * d, h + ((int64_t)b * m + i) * d,
                   (size_t)d * sizeof *h);
        for (int i = 0; i < m; i++) {
            int p = st->pos + i;
            const float *cur = hb + (int64_t)p * d;
            float *o = out + ((int64_t)b * m + i) * d;
            if (p < hp->text_len) {
                copy_or_zero(o, p > 0 ? cur - d : NULL, half);
                memcpy(o + half, cur + half, (size_t)(d - half) * sizeof *o);
            } else {
                int img = p - hp->text_len, r = img / W, c = img % W;
                copy_or_zero(o, r > 0 ? cur - (int64_t)W * d : NULL, q);
                copy_or_zero(o + q, c > 0 ? cur - d + q : NULL, left);
                memcpy(o + q + left, cur + q + left, (size_t)(d - q - left) * sizeof *o);
            }
        }
    }
}
