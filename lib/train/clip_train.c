/* The trainable DALLE-pytorch CLIP: its named weights, their upstream
 * initialisation, and reading / writing them as a "clip" bundle. The
 * forward and backward passes are in clip_train_pass.c. */
#include "clip_train.h"

#include <stdlib.h>

#include "../error.h"

#define DIM_HEAD 64 /* DALLE-pytorch Transformer's default: CLIP passes none */
#define FF_MULT 4

clip_train_config clip_train_default_config(void)
{
    clip_train_config c = {
        .dim_text = 512, .dim_image = 512, .dim_latent = 512, .num_text_tokens = 10000,
        .text_enc_depth = 6, .text_seq_len = 256, .text_heads = 8, .num_visual_tokens = 512,
        .visual_enc_depth = 6, .visual_heads = 8, .visual_image_size = 256,
        .visual_patch_size = 32, .channels = 3, .seed = 0};
    return c;
}

#define DIMS(...) ((const int64_t[]){__VA_ARGS__})

/* Every tensor in upstream's state-dict order: CLIP's own parameter
 * (temperature) first, then the submodules as __init__ creates them; each
 * tower is DALLE-pytorch's Transformer(causal=False, rotary_emb=False),
 * whose state-dict paths lib/clip_dalle.c reads. */
static void register_all(clip_train *tr)
{
    const clip_train_config *c = &tr->cfg;
    param_table *t = &tr->pt;
    clip_model_ptrs *w = &tr->pw, *g = &tr->pg;
    const int64_t dt = c->dim_text, di = c->dim_image, dl = c->dim_latent, pd = tr->patch_dim;
    const param_init N = PARAM_INIT_NORMAL, U = PARAM_INIT_UNIFORM_FAN_IN;
    /* nn.Parameter(torch.tensor(1.)): a 0-d tensor */
    param_table_add(t, &w->temperature, &g->temperature, PARAM_INIT_CONST, 1.0, 0, 0, NULL,
                    "temperature");
    /* nn.Embedding: N(0, 1) */
    param_table_add(t, &w->text_emb, &g->text_emb, N, 0, 0, 2, DIMS(c->num_text_tokens, dt),
                    "text_emb.weight");
    param_table_add(t, &w->text_pos_emb, &g->text_pos_emb, N, 0, 0, 2,
                    DIMS(c->text_seq_len, dt), "text_pos_emb.weight");
    for (int l = 0; l < c->text_enc_depth; l++)
        tf_train_register_layer(t, &w->text_layers[l], &g->text_layers[l], "text_transformer",
                                l, dt, (int64_t)c->text_heads * DIM_HEAD, dt * FF_MULT,
                                "fn.fn.fn", "fn.fn.net");
    param_table_add(t, &w->to_text_latent, &g->to_text_latent, U, (double)dt, 1, 2,
                    DIMS(dl, dt), "to_text_latent.weight");
    param_table_add(t, &w->patch_w, &g->patch_w, U, (double)pd, 1, 2, DIMS(di, pd),
                    "to_visual_embedding.weight");
    param_table_add(t, &w->patch_b, &g->patch_b, U, (double)pd, 0, 1, DIMS(di),
                    "to_visual_embedding.bias");
    param_table_add(t, &w->visual_pos_emb, &g->visual_pos_emb, N, 0, 0, 2,
                    DIMS(tr->n_patches, di), "visual_pos_emb.weight");
    for (int l = 0; l < c->visual_enc_depth; l++)
        tf_train_register_layer(t, &w->visual_layers[l], &g->visual_layers[l],
                                "visual_transformer", l, di,
                                (int64_t)c->visual_heads * DIM_HEAD, di * FF_MULT, "fn.fn.fn",
                                "fn.fn.net");
    param_table_add(t, &w->to_visual_latent, &g->to_visual_latent, U, (double)di, 1, 2,
                    DIMS(dl, di), "to_visual_latent.weight");
}

static dalle_status check_config(const clip_train_config *c, int max_batch)
{
    if (c->dim_text < 1 || c->dim_image < 1 || c->dim_latent < 1 || c->num_text_tokens < 1 ||
        c->text_enc_depth < 1 || c->text_seq_len < 1 || c->text_heads < 1 ||
        c->visual_enc_depth < 1 || c->visual_heads < 1 || c->visual_image_size < 1 ||
        c->visual_patch_size < 1 || c->num_visual_tokens < 0 || max_batch < 1 ||
        max_batch > (1 << 16))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "CLIP of dims %d/%d/%d, text %d tokens x %d, depths %d/%d, heads "
                          "%d/%d, image %d / patch %d, batch %d: a size is out of range",
                          c->dim_text, c->dim_image, c->dim_latent, c->num_text_tokens,
                          c->text_seq_len, c->text_enc_depth, c->visual_enc_depth,
                          c->text_heads, c->visual_heads, c->visual_image_size,
                          c->visual_patch_size, max_batch);
    if (c->channels != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED,
                          "CLIP: channels = %d: only RGB (3) CLIP models are supported",
                          c->channels);
    if (c->visual_image_size % c->visual_patch_size)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "CLIP: visual_image_size %d is not a multiple of visual_patch_size %d",
                          c->visual_image_size, c->visual_patch_size);
    /* the inference side's limits (clip_dalle.c) and int-sized activations */
    const int64_t grid = c->visual_image_size / c->visual_patch_size;
    if (c->dim_text > (1 << 16) || c->dim_image > (1 << 16) || c->dim_latent > (1 << 16) ||
        c->text_enc_depth > 4096 || c->visual_enc_depth > 4096 || c->text_heads > 4096 ||
        c->visual_heads > 4096 || c->text_seq_len > (1 << 16) || grid * grid > (1 << 16) ||
        3LL * c->visual_patch_size * c->visual_patch_size > (1 << 24) ||
        (int64_t)c->num_text_tokens * c->dim_text > (1LL << 31))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "CLIP: the model is too large");
    return DALLE_OK;
}

dalle_status clip_train_create(const clip_train_config *cfg, int max_batch, clip_train **out)
{
    dalle_status s;
    if (!cfg || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "CLIP: %s is NULL",
                          cfg ? "the output" : "the configuration");
    if ((s = check_config(cfg, max_batch)))
        return s;
    clip_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the CLIP");
    tr->cfg = *cfg;
    tr->max_batch = max_batch;
    tr->grid = cfg->visual_image_size / cfg->visual_patch_size;
    tr->n_patches = tr->grid * tr->grid;
    tr->patch_dim = 3 * cfg->visual_patch_size * cfg->visual_patch_size;
    tr->pw.text_layers = calloc((size_t)cfg->text_enc_depth, sizeof(tf_layer_ptrs));
    tr->pg.text_layers = calloc((size_t)cfg->text_enc_depth, sizeof(tf_layer_ptrs));
    tr->pw.visual_layers = calloc((size_t)cfg->visual_enc_depth, sizeof(tf_layer_ptrs));
    tr->pg.visual_layers = calloc((size_t)cfg->visual_enc_depth, sizeof(tf_layer_ptrs));
    if (!tr->pw.text_layers || !tr->pg.text_layers || !tr->pw.visual_layers ||
        !tr->pg.visual_layers) {
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the CLIP");
        goto fail;
    }
    register_all(tr);
    if ((s = param_table_alloc(&tr->pt, cfg->seed, "CLIP")) || (s = clip_train_acts_create(tr)))
        goto fail;
    *out = tr;
    return DALLE_OK;
fail:
    clip_train_free(tr);
    return s;
}

void clip_train_free(clip_train *tr)
{
    if (!tr)
        return;
    clip_train_acts_free(tr);
    param_table_free(&tr->pt);
    free(tr->pw.text_layers);
    free(tr->pg.text_layers);
    free(tr->pw.visual_layers);
    free(tr->pg.visual_layers);
    free(tr);
}

const train_param *clip_train_find(const clip_train *tr, const char *name)
{
    return param_table_find(&tr->pt, name);
}

void clip_train_zero_grad(clip_train *tr) { param_table_zero_grad(&tr->pt); }

/* ---- bundles ----------------------------------------------------------------- */

dalle_status clip_train_write(const clip_train *tr, dalle_bundle_writer *w)
{
    const clip_train_config *c = &tr->cfg;
    dalle_status s;
    /* every CLIP kwarg, as the converter writes them (docs/bundle-keys.md) */
    const struct {
        const char *key;
        int64_t v;
    } ints[] = {{"clip.dim_text", c->dim_text},
                {"clip.dim_image", c->dim_image},
                {"clip.dim_latent", c->dim_latent},
                {"clip.num_text_tokens", c->num_text_tokens},
                {"clip.text_enc_depth", c->text_enc_depth},
                {"clip.text_seq_len", c->text_seq_len},
                {"clip.text_heads", c->text_heads},
                {"clip.num_visual_tokens", c->num_visual_tokens},
                {"clip.visual_enc_depth", c->visual_enc_depth},
                {"clip.visual_heads", c->visual_heads},
                {"clip.visual_image_size", c->visual_image_size},
                {"clip.visual_patch_size", c->visual_patch_size},
                {"clip.channels", c->channels}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if ((s = dalle_bundle_writer_set_i64(w, ints[i].key, ints[i].v)))
            return s;
    return param_table_write(&tr->pt, w);
}

dalle_status clip_train_load_weights(clip_train *tr, dalle_bundle *b)
{
    return param_table_load(&tr->pt, b);
}
