/* dalle_sample: DALLE.generate_images' loop over image tokens, with the
 * upstream bugs left out (docs/transformer.md, "Sampling").
 *
 * Per image token: the logits row of the last position (with guidance:
 * null + (cond - null) * cond_scale, the null pass having its own cache),
 * top-k with k = max(int((1 - filter_thres) * total_tokens), 1), then
 * Gumbel-max: argmax over the kept tokens of logit / temperature + g,
 * g = -log(-log(u)). u comes from a counter-based generator keyed by
 * (seed, image index in the call, token position, token id), so the tokens
 * of an image do not depend on threads, on max_batch or on the other
 * images of the batch. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "sampler.h"
#include "transformer_internal.h"

/* Rows (sequences x positions) of the prefix (<bos>, caption, primed
 * tokens) fed per forward, at most. A state's workspace grows with its
 * rows (DALLE-S: 40 KB a row; 480 primed tokens at batch 8 at once took
 * 170 MB, more than the KV cache of the window after them), so the prefix
 * goes in tiles of positions, as even as possible (65 positions at batch
 * 8: 22 + 22 + 21), each still large enough for the GEMM path. A caption
 * alone at batch 1 stays one chunk. */
#define PREFIX_ROWS 256

static int prefix_tile; /* transformer_sample_prefix_tile; 0: from PREFIX_ROWS */

int transformer_sample_prefix_tile(int want)
{
    if (want >= 0)
        prefix_tile = want;
    return prefix_tile;
}

/* Positions per tile at most, for states of `batch` sequences. */
static int tile_max(int batch)
{
    if (prefix_tile > 0)
        return prefix_tile;
    return PREFIX_ROWS / batch > 1 ? PREFIX_ROWS / batch : 1;
}

/* A prefix of n positions in the fewest tiles of at most tile_max(batch),
 * as even as possible: tile t has n / tiles positions, one more for t <
 * n % tiles. */
static int prefix_tiles(int n, int batch) { return (n + tile_max(batch) - 1) / tile_max(batch); }
static int longest_tile(int n, int batch)
{
    return (n + prefix_tiles(n, batch) - 1) / prefix_tiles(n, batch);
}

typedef struct run {
    const transformer *tf;
    tf_state *cond, *null; /* their logits stay in the state, on the backend */
    int chunk;         /* sequences the states were made for */
    int32_t *tile;     /* [2][chunk][longest tile]: a tile of both prefixes */
    int32_t *seq;      /* [chunk][prefix] */
    int32_t *zeros;    /* the all-padding caption */
    int32_t *step;     /* [chunk]: the tokens just picked (host) */
} run;

/* Feed tokens [nb][m] to both passes; leaves the guided image logits of
 * each sequence's last position in r->cond->logits (backend memory). */
static dalle_status feed(run *r, const int32_t *tokens_cond, const int32_t *tokens_null, int m,
                         float cond_scale)
{
    dalle_status s = tf_forward(r->tf, r->cond, tokens_cond, m, TF_LOGITS_LAST, NULL);
    if (s || !r->null)
        return s;
    if ((s = tf_forward(r->tf, r->null, tokens_null, m, TF_LOGITS_LAST, NULL)))
        return s;
    /* forward_with_cond_scale: null + (cond - null) * cond_scale */
    const tf_hparams *hp = &r->tf->hp;
    backend *be = r->tf->be;
    be->op->guidance(be, r->cond->logits + hp->text_vocab, r->null->logits + hp->text_vocab,
                     r->cond->batch, hp->total_tokens, hp->num_image_tokens, cond_scale);
    return backend_status(be);
}

/* The first positions of each sequence: <bos>, caption (or the null
 * caption), primed image tokens. */
static void build_prefix(const run *r, const int32_t *text, const dalle_sample_params *p,
                         int b0, int nb, int null_caption, int prefix)
{
    const tf_hparams *hp = &r->tf->hp;
    for (int b = 0; b < nb; b++) {
        int32_t *s = r->seq + (int64_t)b * prefix;
        transformer_text_sequence(
            r->tf, null_caption ? r->zeros : text + (int64_t)(b0 + b) * hp->text_seq_len, s);
        for (int i = 0; i < p->n_prime; i++)
            s[hp->text_len + i] = p->prime[(int64_t)(b0 + b) * p->n_prime + i];
    }
}

/* tf_state_set_chunk on both states */
static dalle_status set_chunk(run *r, int max_chunk)
{
    dalle_status s = tf_state_set_chunk(r->tf, r->cond, max_chunk);
    if (!s && r->null)
        s = tf_state_set_chunk(r->tf, r->null, max_chunk);
    return s;
}

/* The prefixes of nb sequences, [nb][prefix] at seq (and seq_null), tile
 * by tile; the last tile leaves the guided logits of the last position, as
 * feed. */
static dalle_status feed_prefix(run *r, const int32_t *seq, const int32_t *seq_null, int nb,
                                int prefix, float cond_scale)
{
    dalle_status s = DALLE_OK;
    const int tiles = prefix_tiles(prefix, r->chunk);
    for (int t = 0, p0 = 0; t < tiles && !s; t++) {
        const int m = prefix / tiles + (t < prefix % tiles);
        int32_t *tc = r->tile, *tn = r->tile + (int64_t)nb * m;
        for (int b = 0; b < nb; b++) {
            memcpy(tc + (int64_t)b * m, seq + (int64_t)b * prefix + p0, (size_t)m * sizeof *tc);
            if (r->null)
                memcpy(tn + (int64_t)b * m, seq_null + (int64_t)b * prefix + p0,
                       (size_t)m * sizeof *tn);
        }
        if (t == tiles - 1)
            s = feed(r, tc, tn, m, cond_scale);
        else if (!(s = tf_forward(r->tf, r->cond, tc, m, TF_LOGITS_NONE, NULL)) && r->null)
            s = tf_forward(r->tf, r->null, tn, m, TF_LOGITS_NONE, NULL);
        p0 += m;
    }
    return s;
}

static dalle_status generate_chunk(run *r, sampler *sm, const int32_t *text,
                                   const dalle_sample_params *p, int b0, int nb, int32_t *res,
                                   int64_t *done, int64_t total)
{
    const tf_hparams *hp = &r->tf->hp;
    const int S = hp->image_seq_len, prefix = hp->text_len + p->n_prime;
    dalle_status s;
    r->cond->batch = nb;
    tf_state_reset(r->cond);
    if (r->null) {
        r->null->batch = nb;
        tf_state_reset(r->null);
    }
    /* the null pass's prefix goes after the conditional one in seq */
    int32_t *seq_null = r->seq + (int64_t)nb * prefix;
    build_prefix(r, text, p, b0, nb, 0, prefix);
    if (r->null) {
        int32_t *save = r->seq;
        r->seq = seq_null;
        build_prefix(r, text, p, b0, nb, 1, prefix);
        r->seq = save;
    }
    if (p->abort && p->abort(p->user))
        return dalle_fail(DALLE_ERR_ABORTED, "dalle_sample: aborted after %lld of %lld tokens",
                          (long long)*done, (long long)total);
    /* the prefix's workspace, then one token's: it is given back before
     * the KV cache fills up (tf_state_set_chunk) */
    if ((s = set_chunk(r, longest_tile(prefix, r->chunk))) ||
        (s = feed_prefix(r, r->seq, seq_null, nb, prefix, p->cond_scale)) ||
        (s = set_chunk(r, 1)))
        return s;
    backend *be = r->tf->be;
    for (int t = p->n_prime; t < S; t++) {
        /* image b's noise: stream first_image + b0 + b, counter t; the ids
         * come back to the host, the only copy of a token step */
        be->op->sample(be, sm, r->cond->logits + hp->text_vocab, hp->total_tokens, nb,
                       hp->num_image_tokens, p->first_image + (uint64_t)b0, (uint64_t)t,
                       r->cond->ids);
        if ((s = be->op->download(be, r->step, r->cond->ids, (size_t)nb * sizeof *r->step)))
            return s;
        for (int b = 0; b < nb; b++)
            res[(int64_t)(b0 + b) * S + t] = r->step[b];
        *done += nb;
        if (p->progress)
            p->progress(*done, total, p->user);
        if (t == S - 1)
            break;
        if (p->abort && p->abort(p->user))
            return dalle_fail(DALLE_ERR_ABORTED,
                              "dalle_sample: aborted after %lld of %lld tokens",
                              (long long)*done, (long long)total);
        if ((s = feed(r, r->step, r->step, 1, p->cond_scale)))
            return s;
    }
    return DALLE_OK;
}

dalle_status transformer_sample(const transformer *tf, const dalle_ctx_params *cp,
                                const int32_t *text, int batch, const dalle_sample_params *p,
                                int32_t *out)
{
    const tf_hparams *hp = &tf->hp;
    const int S = hp->image_seq_len;
    if (p->n_prime >= S) {
        /* primed with the whole image: nothing left to sample */
        memcpy(out, p->prime, (size_t)batch * S * sizeof *out);
        return DALLE_OK;
    }
    const int chunk = batch < cp->max_batch ? batch : cp->max_batch;
    const int prefix = hp->text_len + p->n_prime;
    const int guided = p->cond_scale != 1.0f;
    run r = {.tf = tf};
    sampler sm = {0};
    int32_t *res = NULL;
    dalle_status s;
    const int tile = longest_tile(prefix, chunk);
    r.chunk = chunk;
    if ((s = tf_state_create(tf, chunk, tile, &r.cond)) ||
        (guided && (s = tf_state_create(tf, chunk, tile, &r.null))))
        goto done;
    r.tile = malloc((size_t)2 * chunk * tile * sizeof *r.tile);
    r.seq = malloc((size_t)2 * chunk * prefix * sizeof *r.seq);
    r.zeros = calloc((size_t)hp->text_seq_len, sizeof *r.zeros);
    r.step = malloc((size_t)chunk * sizeof *r.step);
    res = malloc((size_t)batch * S * sizeof *res);
    if ((s = sampler_init_rows(&sm, hp, p, hp->num_image_tokens, chunk)))
        goto done;
    if (!r.tile || !r.seq || !r.zeros || !r.step || !res) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_sample: out of memory");
        goto done;
    }
    int64_t done_tokens = 0, total = (int64_t)batch * (S - p->n_prime);
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < p->n_prime; t++)
            res[(int64_t)b * S + t] = p->prime[(int64_t)b * p->n_prime + t];
    for (int b0 = 0; b0 < batch && !s; b0 += chunk) {
        int nb = batch - b0 < chunk ? batch - b0 : chunk;
        s = generate_chunk(&r, &sm, text, p, b0, nb, res, &done_tokens, total);
    }
    if (!s)
        memcpy(out, res, (size_t)batch * S * sizeof *out);
done:
    tf_state_free(r.cond);
    tf_state_free(r.null);
    free(r.tile);
    free(r.seq);
    free(r.zeros);
    free(r.step);
    sampler_free(&sm);
    free(res);
    return s;
}
