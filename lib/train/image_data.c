/* Captioned images in memory (dalle_image_data_*, include/dalle/train.h).
 *
 * Every image is read (or rendered) once, at the trainer's size, and kept
 * as 8-bit RGB: the synthetic world at 64 px is 12 KB an image instead of
 * 48 KB as floats, and a folder's PNGs lose nothing (they hold 8 bits).
 *
 * Batches are a pure function of (seed, step, batch), drawn by
 * batch_order.h exactly as token_data.c draws its pairs, so a trainer that
 * stores only its step counter resumes on the batches it would have seen. */
#include "image_data.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../params.h"
#include "batch_order.h"
#include "dataset.h"
#include "synth.h"

enum { MAX_CAPTIONS = 64 };

struct dalle_image_data {
    int64_t n;          /* images */
    int size;
    uint8_t *rgb;       /* [n][3][size][size] */
    int64_t *first_cap; /* [n + 1]: captions of image i are first_cap[i] .. first_cap[i+1]-1 */
    char **caps;        /* [n_caps] */
    int64_t n_caps, cap_caps;
    int64_t skipped;
    uint64_t serial;
    batch_order order;  /* the shuffled epochs the batches come from */
};

static atomic_uint_fast64_t next_serial = 1;

void dalle_image_data_params_init(dalle_image_data_params *params, size_t struct_size)
{
    dalle_image_data_params p;
    memset(&p, 0, sizeof p);
    synth_world w = synth_world_default();
    p.image_size = 128;
    p.world_colors = w.n_colors;
    p.world_shapes = w.n_shapes;
    p.world_max_objects = w.max_objects;
    p.world_layouts = w.layouts;
    params_fill(params, struct_size, &p, sizeof p);
}

void dalle_image_data_free(dalle_image_data *d)
{
    if (!d)
        return;
    for (int64_t i = 0; i < d->n_caps; i++)
        free(d->caps[i]);
    free(d->caps);
    free(d->rgb);
    free(d->first_cap);
    batch_order_free(&d->order);
    free(d);
}

int64_t dalle_image_data_count(const dalle_image_data *d) { return d ? d->n : 0; }
int64_t dalle_image_data_skipped(const dalle_image_data *d) { return d ? d->skipped : 0; }
int dalle_image_data_image_size(const dalle_image_data *d) { return d ? d->size : 0; }
uint64_t image_data_serial(const dalle_image_data *d) { return d->serial; }
int64_t image_data_n_captions(const dalle_image_data *d) { return d->n_caps; }

const char *image_data_caption_at(const dalle_image_data *d, int64_t c)
{
    return c >= 0 && c < d->n_caps ? d->caps[c] : NULL;
}

int64_t image_data_steps_per_epoch(const dalle_image_data *d, int batch)
{
    return batch_order_steps_per_epoch(d->n, batch);
}

int dalle_image_data_caption_count(const dalle_image_data *d, int64_t i)
{
    if (!d || i < 0 || i >= d->n)
        return 0;
    return (int)(d->first_cap[i + 1] - d->first_cap[i]);
}

const char *dalle_image_data_caption(const dalle_image_data *d, int64_t i, int k)
{
    if (k < 0 || k >= dalle_image_data_caption_count(d, i))
        return NULL;
    return d->caps[d->first_cap[i] + k];
}

/* ---- building ------------------------------------------------------------ */

static dalle_status add_caption(dalle_image_data *d, const char *text)
{
    if (d->n_caps == d->cap_caps) {
        int64_t c = d->cap_caps ? d->cap_caps * 2 : 1024;
        char **m = realloc(d->caps, (size_t)c * sizeof *m);
        if (!m)
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_image_data: out of memory");
        d->caps = m;
        d->cap_caps = c;
    }
    size_t len = strlen(text);
    char *copy = malloc(len + 1);
    if (!copy)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_image_data: out of memory");
    memcpy(copy, text, len + 1);
    d->caps[d->n_caps++] = copy;
    return DALLE_OK;
}

/* [3][size][size] floats → image i, rounded as dalle_write_png rounds. */
static void store(dalle_image_data *d, int64_t i, const float *px)
{
    const size_t n = (size_t)3 * d->size * d->size;
    uint8_t *out = d->rgb + (size_t)i * n;
    for (size_t k = 0; k < n; k++) {
        float v = px[k];
        out[k] = !(v > 0.0f) ? 0 : v >= 1.0f ? 255 : (uint8_t)lrintf(v * 255.0f);
    }
}

static dalle_status alloc_items(dalle_image_data *d, int64_t n)
{
    d->n = n;
    d->rgb = malloc((size_t)n * 3 * d->size * d->size);
    d->first_cap = calloc((size_t)n + 1, sizeof *d->first_cap);
    if (!d->rgb || !d->first_cap)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "dalle_image_data: out of memory for %lld images of %d px",
                          (long long)n, d->size);
    return DALLE_OK;
}

/* Progress and abort after image i (0-based) of n. */
static dalle_status tick(const dalle_image_data_params *p, int64_t i, int64_t n)
{
    if (p->progress && ((i + 1) % 64 == 0 || i + 1 == n))
        p->progress(i + 1, n, p->user);
    if (p->abort && p->abort(p->user))
        return dalle_fail(DALLE_ERR_ABORTED, "dalle_image_data: stopped by the abort callback "
                          "after %lld of %lld images", (long long)(i + 1), (long long)n);
    return DALLE_OK;
}

static dalle_status fill_folder(dalle_image_data *d, const char *dir,
                                const dalle_image_data_params *p, float *px)
{
    dataset *ds = NULL;
    dalle_status s = dataset_open(dir, d->size, p->strict ? DATASET_STRICT : 0, &ds);
    if (!s)
        s = alloc_items(d, dataset_count(ds));
    if (!s)
        d->skipped = dataset_skipped(ds);
    for (int64_t i = 0; !s && i < d->n; i++) {
        d->first_cap[i] = d->n_caps;
        int nc = dataset_caption_count(ds, i);
        if (nc < 1) /* dataset_open never lists a pair without a caption */
            s = dalle_fail(DALLE_ERR_FORMAT, "'%s': no caption", dataset_image_path(ds, i));
        if (nc > MAX_CAPTIONS)
            nc = MAX_CAPTIONS; /* bounds the memory a huge caption file can take */
        for (int k = 0; !s && k < nc; k++)
            s = add_caption(d, dataset_caption(ds, i, k));
        if (!s && !(s = dataset_image(ds, i, px)))
            store(d, i, px);
        if (!s)
            s = tick(p, i, d->n);
    }
    if (d->first_cap)
        d->first_cap[d->n] = d->n_caps;
    dataset_close(ds);
    return s;
}

static dalle_status fill_synthetic(dalle_image_data *d, int64_t count,
                                   const dalle_image_data_params *p, float *px)
{
    synth_world w = {p->world_colors, p->world_shapes, p->world_max_objects, p->world_layouts};
    const synth_split split = p->world_heldout ? SYNTH_HELDOUT : SYNTH_TRAIN;
    char caption[SYNTH_CAPTION_CAP];
    dalle_status s = alloc_items(d, count);
    for (int64_t i = 0; !s && i < count; i++) {
        d->first_cap[i] = d->n_caps;
        s = synth_sample(&w, p->world_seed, (uint64_t)i, split, d->size, px, caption,
                         sizeof caption, NULL);
        if (!s)
            s = add_caption(d, caption);
        if (!s) {
            store(d, i, px);
            s = tick(p, i, count);
        }
    }
    if (d->first_cap)
        d->first_cap[d->n] = d->n_caps;
    return s;
}

static dalle_status make(const char *dir, int64_t count, const dalle_image_data_params *params,
                         dalle_image_data **out, const char *fn)
{
    dalle_image_data_params p = dalle_image_data_default_params();
    dalle_status s = params_merge(params, sizeof p, sizeof p, "dalle_image_data_params", &p);
    if (s)
        return s;
    if (!out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
    if (p.image_size < SYNTH_MIN_SIZE || p.image_size > SYNTH_MAX_SIZE)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: image_size = %d (%d..%d)", fn,
                          p.image_size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    dalle_image_data *d = calloc(1, sizeof *d);
    float *px = malloc(sizeof(float) * 3 * (size_t)p.image_size * p.image_size);
    if (!d || !px) {
        free(d);
        free(px);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    d->size = p.image_size;
    batch_order_init(&d->order);
    d->serial = atomic_fetch_add(&next_serial, 1);
    s = dir ? fill_folder(d, dir, &p, px) : fill_synthetic(d, count, &p, px);
    free(px);
    if (s) {
        dalle_image_data_free(d);
        return s;
    }
    *out = d;
    return DALLE_OK;
}

dalle_status dalle_image_data_folder(const char *dir, const dalle_image_data_params *params,
                                     dalle_image_data **out)
{
    if (!dir)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_image_data_folder: dir is NULL");
    return make(dir, 0, params, out, "dalle_image_data_folder");
}

dalle_status dalle_image_data_synthetic(int64_t count, const dalle_image_data_params *params,
                                        dalle_image_data **out)
{
    if (count < 1 || count > ((int64_t)1 << 24))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "dalle_image_data_synthetic: count = %lld (1..16777216)",
                          (long long)count);
    return make(NULL, count, params, out, "dalle_image_data_synthetic");
}

/* ---- batches --------------------------------------------------------------- */

dalle_status image_data_batch(dalle_image_data *d, uint64_t seed, int64_t step, int batch,
                              float *pixels, int64_t *caption_ids, int64_t *indices)
{
    if (!d || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_image_data_batch: %s is NULL",
                          !d ? "data" : "pixels");
    batch_pick pick;
    dalle_status s = batch_order_start(&d->order, d->n, seed, step, batch,
                                       "dalle_image_data_batch", "images", &pick);
    if (s)
        return s;
    const size_t img = (size_t)3 * d->size * d->size;
    for (int b = 0; b < batch; b++) {
        int64_t cap, item = batch_order_item(&d->order, &pick, b, d->first_cap, &cap);
        const uint8_t *src = d->rgb + (size_t)item * img;
        float *dst = pixels + (size_t)b * img;
        for (size_t i = 0; i < img; i++)
            dst[i] = (float)src[i] / 255.0f; /* as dalle_read_image reads a PNG */
        if (caption_ids)
            caption_ids[b] = cap;
        if (indices)
            indices[b] = item;
    }
    return DALLE_OK;
}

dalle_status dalle_image_data_batch(dalle_image_data *d, uint64_t seed, int64_t step, int batch,
                                    float *pixels, const char **captions, int64_t *indices)
{
    int64_t stack[64], *ids = stack;
    if (captions && batch > 64 && batch <= (d ? d->n : 0) &&
        !(ids = malloc((size_t)batch * sizeof *ids)))
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_image_data_batch: out of memory");
    dalle_status s = image_data_batch(d, seed, step, batch, pixels, captions ? ids : NULL,
                                      indices);
    if (!s && captions)
        for (int b = 0; b < batch; b++)
            captions[b] = d->caps[ids[b]];
    if (ids != stack)
        free(ids);
    return s;
}
