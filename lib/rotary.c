/* The rotary table of DALLE-pytorch's Transformer (rotary_emb=True).
 *
 * Upstream registers it as the buffer `transformer.pos_emb` [1][rows][cols],
 * rows = <bos> + text + image positions (text_len + image_seq_len), and the
 * checkpoint carries it: we use it as stored. Without it we recompute it the
 * way Transformer.__init__ does (rotary-embedding-torch 3f2fa50d), in float32
 * like PyTorch. Columns, with rot = dim_head // 3 and n = rot // 2:
 *   [0, 2n)   'lang' angles t * 10000^(-2j/rot): text row t at position t,
 *             image rows all at position 8192 ("far away from text")
 *   [2n, 4n)  'pixel' angles x * linspace(1, 5, n) * pi for the image row
 *             coordinate x = linspace(-1, 1, fmap)[row]; text rows at x = -10
 *   [4n, 6n)  the same for the image column coordinate
 * each angle repeated twice (pairs of channels rotate together). The first
 * 6n channels of every head of q, k AND v are rotated (attention.c). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "error.h"
#include "transformer_internal.h"

/* torch.linspace for float32 on the CPU: the first half counts up from
 * start, the second half down from end. */
static float linspace_at(float start, float end, int steps, int i)
{
    if (steps == 1)
        return start;
    float step = (end - start) / (float)(steps - 1);
    return i < steps / 2 ? start + step * (float)i : end - step * (float)(steps - i - 1);
}

void rotary_compute_table(const tf_hparams *hp, float *table)
{
    int rot = hp->dim_head / 3, n = rot / 2, cols = hp->rot_cols;
    const float pi = (float)3.14159265358979323846;
    float lang[4096], pixel[4096];
    for (int j = 0; j < n; j++) {
        float e = (float)(2 * j) / (float)rot;
        lang[j] = 1.0f / powf(10000.0f, e);
        pixel[j] = linspace_at(1.0f, 5.0f, n, j) * pi; /* max_freq / 2 = 5 */
    }
    int rows = hp->text_len + hp->image_seq_len;
    for (int p = 0; p < rows; p++) {
        float *row = table + (int64_t)p * cols;
        float t, x, y;
        if (p < hp->text_len) {
            t = (float)p;
            x = y = -10.0f;
        } else {
            int i = p - hp->text_len;
            t = 8192.0f;
            x = linspace_at(-1.0f, 1.0f, hp->fmap, i / hp->fmap);
            y = linspace_at(-1.0f, 1.0f, hp->fmap, i % hp->fmap);
        }
        for (int j = 0; j < n; j++) {
            row[2 * j] = row[2 * j + 1] = t * lang[j];
            row[2 * n + 2 * j] = row[2 * n + 2 * j + 1] = x * pixel[j];
            row[4 * n + 2 * j] = row[4 * n + 2 * j + 1] = y * pixel[j];
        }
    }
}

dalle_status rotary_build(transformer *tf, dalle_bundle *b)
{
    const tf_hparams *hp = &tf->hp;
    if (!hp->rotary_emb || hp->rot_cols == 0)
        return DALLE_OK;
    if (hp->rot_cols / 6 > 4096)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: dalle.dim_head = %d is too large",
                          bundle_path(b), hp->dim_head);
    int64_t rows = hp->text_len + hp->image_seq_len, n = rows * hp->rot_cols;
    tf->rot_cos = malloc((size_t)n * sizeof(float));
    tf->rot_sin = malloc((size_t)n * sizeof(float));
    float *computed = NULL;
    if (!tf->rot_cos || !tf->rot_sin)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory (rotary table)",
                          bundle_path(b));
    const float *table;
    if (dalle_bundle_find_tensor(b, "transformer.pos_emb") >= 0) {
        int64_t dims[3] = {1, rows, hp->rot_cols};
        dalle_status s = bundle_tensor_f32(b, "transformer.pos_emb", 3, dims, &table);
        if (s)
            return s;
    } else {
        computed = malloc((size_t)n * sizeof(float));
        if (!computed)
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory (rotary table)",
                              bundle_path(b));
        rotary_compute_table(hp, computed);
        table = computed;
    }
    for (int64_t i = 0; i < n; i++) {
        tf->rot_cos[i] = cosf(table[i]);
        tf->rot_sin[i] = sinf(table[i]);
    }
    free(computed);
    return DALLE_OK;
}
