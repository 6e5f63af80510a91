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
 * We keep the shifted channels of the last fmap + 1 normed inputs (a ring,
 * tf_shift_ring / tf_shift_cols), so a new token reads its neighbours there:
 * the same values the full forward uses, at O(dim) per token and
 * O(fmap · dim) memory. Upstream's uncached forward skips the shift entirely
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
    const int R = tf_shift_ring(hp), C = tf_shift_cols(hp);
    for (int b = 0; b < st->batch; b++) {
        float *ring = hist + (int64_t)b * R * C;
        /* token by token, in position order: a token only reads earlier
         * positions (at most W back), recorded before it, whether in an
         * earlier chunk or earlier in this one; its own slot is written
         * after its reads, so a ring of W + 1 slots is never overrun */
        for (int i = 0; i < m; i++) {
            const int p = st->pos + i;
            const float *cur = h + ((int64_t)b * m + i) * d;
            const float *prev = ring + (int64_t)((p + R - 1) % R) * C;
            float *o = out + ((int64_t)b * m + i) * d;
            if (p < hp->text_len) {
                copy_or_zero(o, p > 0 ? prev : NULL, half);
                memcpy(o + half, cur + half, (size_t)(d - half) * sizeof *o);
            } else {
                int img = p - hp->text_len, r = img / W, c = img % W;
                const float *above = ring + (int64_t)((p - W) % R) * C;
                copy_or_zero(o, r > 0 ? above : NULL, q);
                copy_or_zero(o + q, c > 0 ? prev + q : NULL, left);
                memcpy(o + q + left, cur + q + left, (size_t)(d - q - left) * sizeof *o);
            }
            memcpy(ring + (int64_t)(p % R) * C, cur, (size_t)C * sizeof *cur);
        }
    }
}
