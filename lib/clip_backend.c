/* CLIP on a backend (lib/backend_ops.h): the CPU's CLIP operations, and the
 * weights copied once into a device backend's memory.
 *
 * The CPU operations are the loops lib/clip_*.c ran inline before the
 * table existed, moved here unchanged, so a CPU context computes the same
 * bits as before; lib/backend_cpu.c's table points at them. CUDA's are
 * lib/cuda/ops_cuda.cu's CLIP section, through backend_cuda_ops.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend_ops.h"
#include "clip_model.h"
#include "error.h"
#include "train/clip_train.h" /* ct_masked_mean */

/* ---- the CPU's operations ------------------------------------------------------ */

void clip_cpu_quick_gelu(backend *be, float *x, int64_t n)
{
    (void)be;
    ops_quick_gelu(x, n);
}

void clip_cpu_gather_rows(backend *be, const float *table, const int32_t *ids, int64_t rows,
                          int64_t dim, float *out)
{
    (void)be;
    for (int64_t r = 0; r < rows; r++)
        memcpy(out + r * dim, table + (int64_t)ids[r] * dim, (size_t)dim * sizeof *out);
}

void clip_cpu_patches(backend *be, const float *images, int n, int size, int patch,
                      int channels_last, float *out)
{
    (void)be;
    const int p = patch, g = size / patch, S = size;
    const int64_t T = (int64_t)g * g, P = 3LL * p * p;
    for (int b = 0; b < n; b++)
        for (int gh = 0; gh < g; gh++)
            for (int gw = 0; gw < g; gw++) {
                float *row = out + ((int64_t)b * T + (int64_t)gh * g + gw) * P;
                const float *img = images + (int64_t)b * 3 * S * S + (int64_t)gh * p * S +
                                   (int64_t)gw * p;
                if (channels_last) {
                    for (int p1 = 0; p1 < p; p1++)
                        for (int p2 = 0; p2 < p; p2++)
                            for (int c = 0; c < 3; c++)
                                row[((int64_t)p1 * p + p2) * 3 + c] =
                                    img[((int64_t)c * S + p1) * S + p2];
                } else {
                    for (int c = 0; c < 3; c++)
                        for (int py = 0; py < p; py++)
                            memcpy(row + ((int64_t)c * p + py) * p, img + ((int64_t)c * S + py) * S,
                                   (size_t)p * sizeof *row);
                }
            }
}

void clip_cpu_attention(backend *be, clip_work *w, float *qkv, int batch, int n, int heads,
                        int64_t dim_head, const uint8_t *key_mask, int causal, float scale,
                        float *att)
{
    (void)be;
    clip_attention_cpu(w, qkv, batch, n, heads, dim_head, key_mask, causal, scale, att);
}

/* the training forward's masked mean (lib/train/clip_train_pass.c): the
 * same loop the inference code had, in double */
void clip_cpu_mean_rows(backend *be, const float *x, int batch, int n, int64_t dim,
                        const uint8_t *mask, float *out)
{
    (void)be;
    ct_masked_mean(x, batch, n, dim, mask, out);
}

/* v / max(||v||, 1e-12): F.normalize (DALLE-pytorch); OpenAI divides by the
 * bare norm, the same for any non-zero vector */
void clip_cpu_l2_normalize(backend *be, float *x, int64_t rows, int64_t dim)
{
    (void)be;
    for (int64_t r = 0; r < rows; r++) {
        float *v = x + r * dim;
        double ss = 0.0;
        for (int64_t i = 0; i < dim; i++)
            ss += (double)v[i] * v[i];
        float norm = (float)sqrt(ss);
        if (norm < 1e-12f)
            norm = 1e-12f;
        for (int64_t i = 0; i < dim; i++)
            v[i] /= norm;
    }
}

/* DALLE-pytorch scales the dot product, OpenAI's forward scales the image
 * features first (logit_scale * image_features @ text.t()) */
void clip_cpu_scores(backend *be, const float *img, int n_img, const float *txt, int n_txt,
                     int64_t dim, float scale, int scale_first, float *out, int64_t ld)
{
    (void)be;
    for (int i = 0; i < n_img; i++)
        for (int j = 0; j < n_txt; j++) {
            const float *a = img + (int64_t)i * dim, *t = txt + (int64_t)j * dim;
            double dot = 0.0;
            if (scale_first) {
                for (int64_t k = 0; k < dim; k++)
                    dot += (double)(scale * a[k]) * t[k];
                out[(int64_t)i * ld + j] = (float)dot;
            } else {
                for (int64_t k = 0; k < dim; k++)
                    dot += (double)a[k] * t[k];
                out[(int64_t)i * ld + j] = (float)dot * scale;
            }
        }
}

/* ---- the weights on a device ---------------------------------------------------- */

typedef struct uploader {
    backend *be;
    size_t *count; /* counting only */
    dalle_status s;
} uploader;

/* n floats at *p (NULL stays NULL) into backend memory; *p becomes the copy */
static void up(uploader *u, const float **p, int64_t n)
{
    if (u->s || !*p || n <= 0)
        return;
    const size_t bytes = (size_t)n * sizeof(float);
    if (u->count) {
        *u->count += (bytes + 255) / 256 * 256;
        return;
    }
    void *dev = NULL;
    if ((u->s = u->be->op->alloc(u->be, bytes, &dev)))
        return;
    u->be->op->upload(u->be, dev, *p, bytes);
    *p = dev;
}

static void up_w(uploader *u, ops_weight *w, int64_t n)
{
    const float *p = w->data;
    up(u, &p, n);
    *w = ops_weight_f32(p);
}

static void up_norm(uploader *u, tf_norm *nm, int64_t d)
{
    up(u, &nm->w, d);
    up(u, &nm->b, d);
}

static void up_encoder(uploader *u, clip_encoder *e)
{
    const int64_t d = e->dim, inner = e->inner, ffi = e->ff_inner;
    const int64_t fc1 = e->act == CLIP_ACT_GEGLU ? 2 * ffi : ffi;
    for (int l = 0; l < e->depth; l++) {
        clip_layer *L = &e->layers[l];
        tf_layer *T = &L->tf;
        up(u, &T->attn_scale, d);
        up_norm(u, &T->attn_norm, d);
        up_norm(u, &T->attn_norm_out, d);
        up_w(u, &T->to_qkv, 3 * inner * d);
        up(u, &L->qkv_b, 3 * inner);
        up_w(u, &T->to_out_w, d * inner);
        up(u, &T->to_out_b, d);
        up(u, &T->ff_scale, d);
        up_norm(u, &T->ff_norm, d);
        up_norm(u, &T->ff_norm_out, d);
        up_w(u, &T->ff_w1, fc1 * d);
        up(u, &T->ff_b1, fc1);
        up_w(u, &T->ff_w2, d * ffi);
        up(u, &T->ff_b2, d);
    }
}

dalle_status clip_model_to_backend(clip_model *m, backend *be, size_t *count)
{
    if (count)
        *count = 0;
    else if (be->host_memory)
        return DALLE_OK;
    uploader u = {be, count, DALLE_OK};
    const int64_t E = m->embed_dim, dt = m->text.dim, dv = m->vision.dim;
    const int64_t T = (int64_t)m->grid * m->grid, P = 3LL * m->patch * m->patch;
    /* a model's copy must not be freed as host memory: work on a copy of
     * the owned pointers and put them back only when all went up */
    const float *proj = m->proj_t, *text_proj = m->text_proj_t;
    up_encoder(&u, &m->text);
    up_encoder(&u, &m->vision);
    if (m->openai) {
        up(&u, &m->tok_emb, (int64_t)m->vocab * dt);
        up(&u, &m->pos_emb, (int64_t)m->text_len * dt);
        up(&u, &m->conv_w, dv * P);
        up(&u, &m->class_emb, dv);
        up(&u, &m->vis_pos, (T + 1) * dv);
        up_norm(&u, &m->ln_pre, dv);
        up_norm(&u, &m->ln_post, dv);
        up_norm(&u, &m->ln_final, dt);
        up(&u, &proj, E * dv);
        up(&u, &text_proj, E * dt);
    } else {
        up(&u, &m->text_emb, (int64_t)m->vocab * dt);
        up(&u, &m->text_pos, (int64_t)m->text_len * dt);
        up(&u, &m->to_text_latent, E * dt);
        up(&u, &m->patch_w, dv * P);
        up(&u, &m->patch_b, dv);
        up(&u, &m->visual_pos, T * dv);
        up(&u, &m->to_visual_latent, E * dv);
    }
    if (count)
        return DALLE_OK;
    dalle_status s = backend_uploaded(be, u.s, "CLIP");
    if (s)
        return s;
    if (m->openai) {
        free(m->proj_t);
        free(m->text_proj_t);
        m->proj_t = (float *)proj;
        m->text_proj_t = (float *)text_proj;
    }
    m->on_device = 1;
    be->op->seal(be); /* the weights stay; the workspace comes after */
    return DALLE_OK;
}
