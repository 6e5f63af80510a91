/* The trainable DiscreteVAE: its named weights and their initialisation,
 * the optimizer step with train_vae.py's schedule, and bundles (weights for
 * the inference side, optimizer state for resuming). The passes are in
 * vae_train_pass.c. */
#include "train/vae_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"

vae_train_config vae_train_default_config(void)
{
    vae_train_config c;
    memset(&c, 0, sizeof c);
    c.image_size = 256;
    c.num_tokens = 512;
    c.codebook_dim = 512;
    c.num_layers = 3;
    c.num_resnet_blocks = 0;
    c.hidden_dim = 64;
    c.channels = 3;
    c.temperature = 0.9;
    c.normalize = 1;
    for (int i = 0; i < 4; i++) {
        c.norm_mean[i] = i < 3 ? 0.5 : 0.0;
        c.norm_std[i] = i < 3 ? 0.5 : 1.0;
    }
    c.learning_rate = 1e-3;
    c.lr_decay_rate = 0.98;
    c.starting_temp = 1.0;
    c.temp_min = 0.5;
    c.anneal_rate = 1e-6;
    c.anneal_every = 100;
    c.adam = adamw_default_config();
    c.seed = 0;
    return c;
}

/* ---- registration ------------------------------------------------------------ */

/* A convolution's weight then bias, U(±1/√fan_in) both; `cv` records its
 * geometry and receives the tensors' pointers once w exists. */
static void reg_conv(vae_train *tr, vae_tconv *cv, int cin, int cout, int k, int stride, int pad,
                     int transposed, const char *prefix)
{
    int64_t wd[4] = {transposed ? cin : cout, transposed ? cout : cin, k, k}, bd[1] = {cout};
    /* fan_in = weight.size(1)·k·k (torch's _calculate_fan_in_and_fan_out) */
    double fan_in = (double)wd[1] * k * k;
    *cv = (vae_tconv){NULL, NULL, NULL, NULL, cin, cout, k, stride, pad, transposed};
    param_table_add(&tr->pt, &cv->w, &cv->gw, PARAM_INIT_UNIFORM_FAN_IN, fan_in, 0, 4, wd,
                    "%s.weight", prefix);
    param_table_add(&tr->pt, &cv->b, &cv->gb, PARAM_INIT_UNIFORM_FAN_IN, fan_in, 0, 1, bd,
                    "%s.bias", prefix);
}

static void reg_res(vae_train *tr, vae_tres *rb, const char *seq, int index, int c)
{
    char p[64];
    snprintf(p, sizeof p, "vae.%s.%d.net.0", seq, index);
    reg_conv(tr, &rb->c0, c, c, 3, 1, 1, 0, p);
    snprintf(p, sizeof p, "vae.%s.%d.net.2", seq, index);
    reg_conv(tr, &rb->c2, c, c, 3, 1, 1, 0, p);
    snprintf(p, sizeof p, "vae.%s.%d.net.4", seq, index);
    reg_conv(tr, &rb->c4, c, c, 1, 1, 0, 0, p);
}

/* The state dict of DiscreteVAE, in its order: codebook (nn.Embedding,
 * N(0, 1)), encoder, decoder (nn.Sequential indices as lib/vae_dvae.c
 * reads them). */
static void register_all(vae_train *tr)
{
    const vae_train_config *c = &tr->cfg;
    const int L = c->num_layers, R = c->num_resnet_blocks, h = c->hidden_dim;
    int64_t cd[2] = {c->num_tokens, c->codebook_dim};
    char p[64];
    param_table_add(&tr->pt, &tr->codebook, &tr->gcodebook, PARAM_INIT_NORMAL, 0.0, 0, 2, cd,
                    "vae.codebook.weight");
    for (int i = 0; i < L; i++) {
        snprintf(p, sizeof p, "vae.encoder.%d.0", i);
        reg_conv(tr, &tr->enc_down[i], i ? h : c->channels, h, 4, 2, 1, 0, p);
    }
    for (int j = 0; j < R; j++)
        reg_res(tr, &tr->enc_res[j], "encoder", L + j, h);
    snprintf(p, sizeof p, "vae.encoder.%d", L + R);
    reg_conv(tr, &tr->enc_out, h, c->num_tokens, 1, 1, 0, 0, p);
    int d = 0;
    if (R > 0) {
        reg_conv(tr, &tr->dec_in, c->codebook_dim, h, 1, 1, 0, 0, "vae.decoder.0");
        d = 1;
    }
    for (int j = 0; j < R; j++)
        reg_res(tr, &tr->dec_res[j], "decoder", d + j, h);
    d += R;
    for (int i = 0; i < L; i++) {
        snprintf(p, sizeof p, "vae.decoder.%d.0", d + i);
        reg_conv(tr, &tr->dec_up[i], (i == 0 && R == 0) ? c->codebook_dim : h, h, 4, 2, 1, 1, p);
    }
    snprintf(p, sizeof p, "vae.decoder.%d", d + L);
    reg_conv(tr, &tr->dec_out, h, c->channels, 1, 1, 0, 0, p);
}

/* ---- create / free ------------------------------------------------------------- */

static dalle_status check_config(const vae_train_config *c, int max_batch)
{
    if (c->num_layers < 1 || c->num_layers > VAE_TRAIN_MAX_LAYERS || c->num_resnet_blocks < 0 ||
        c->num_resnet_blocks > VAE_TRAIN_MAX_RES || c->num_tokens < 2 ||
        c->num_tokens > (1 << 20) || c->codebook_dim < 1 || c->codebook_dim > (1 << 16) ||
        c->hidden_dim < 1 || c->hidden_dim > (1 << 14) || c->channels < 1 || c->channels > 4 ||
        max_batch < 1 || max_batch > (1 << 16))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "VAE: num_layers %d (1..%d), num_resnet_blocks %d (0..%d), "
                          "num_tokens %d, codebook_dim %d, hidden_dim %d, channels %d (1..4), "
                          "batch %d: out of range",
                          c->num_layers, VAE_TRAIN_MAX_LAYERS, c->num_resnet_blocks,
                          VAE_TRAIN_MAX_RES, c->num_tokens, c->codebook_dim, c->hidden_dim,
                          c->channels, max_batch);
    const int s = c->image_size;
    if (s < 2 || s > 4096 || (s & (s - 1)) || (s >> c->num_layers) < 1)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "VAE: image_size %d must be a power of 2 in 2..4096 and at least "
                          "2^num_layers (%d)",
                          s, c->num_layers);
    if (!(c->temperature > 0.0) || !(c->starting_temp > 0.0) || !(c->temp_min > 0.0) ||
        !(c->anneal_rate >= 0.0) || c->anneal_every < 1 || c->steps_per_epoch < 0 ||
        !(c->learning_rate >= 0.0) || !(c->lr_decay_rate > 0.0) ||
        !(c->kl_div_loss_weight >= 0.0) || !(c->clip_grad_norm >= 0.0))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "VAE: temperatures must be > 0, rates, weights and the learning "
                          "rate >= 0, lr_decay_rate > 0, anneal_every >= 1");
    if (c->normalize)
        for (int i = 0; i < c->channels; i++)
            if (!(c->norm_std[i] != 0.0) || !isfinite(c->norm_std[i]) ||
                !isfinite(c->norm_mean[i]))
                return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                                  "VAE: normalization std[%d] = %g must be finite and "
                                  "non-zero",
                                  i, c->norm_std[i]);
    return DALLE_OK;
}

dalle_status vae_train_create(const vae_train_config *cfg, int max_batch, vae_train **out)
{
    dalle_status s;
    if (!cfg || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "VAE: %s is NULL",
                          cfg ? "the output" : "the configuration");
    *out = NULL;
    if ((s = check_config(cfg, max_batch)))
        return s;
    vae_train *tr = calloc(1, sizeof *tr);
    if (!tr)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the VAE");
    tr->cfg = *cfg;
    tr->max_batch = max_batch;
    tr->grid = cfg->image_size >> cfg->num_layers;
    register_all(tr);
    if ((s = param_table_alloc(&tr->pt, cfg->seed, "VAE")) ||
        (s = adamw_init(&tr->opt, tr->pt.n_weights, &cfg->adam)) ||
        (s = vae_train_acts_create(tr)))
        goto fail;
    tr->lr = cfg->learning_rate;
    tr->temp = cfg->starting_temp;
    *out = tr;
    return DALLE_OK;
fail:
    vae_train_free(tr);
    return s;
}

void vae_train_free(vae_train *tr)
{
    if (!tr)
        return;
    vae_train_acts_free(tr);
    adamw_free(&tr->opt);
    param_table_free(&tr->pt);
    free(tr);
}

const train_param *vae_train_find(const vae_train *tr, const char *name)
{
    return param_table_find(&tr->pt, name);
}

void vae_train_zero_grad(vae_train *tr) { param_table_zero_grad(&tr->pt); }

/* ---- the step ------------------------------------------------------------------ */

dalle_status vae_train_step(vae_train *tr, const float *pixels, int batch, vae_train_stats *stats)
{
    vae_train_stats st;
    dalle_status s;
    vae_train_zero_grad(tr);
    if ((s = vae_train_forward(tr, pixels, batch, &st)))
        return s;
    vae_train_backward(tr);
    st.lr = tr->lr;
    /* a non-finite loss or gradient leaves the weights and Adam as they are
     * (torch would write NaNs into both); the step still counts, as in
     * dalle_trainer_step */
    st.skipped = param_table_adamw_step(&tr->pt, &tr->opt, 0, st.loss, tr->cfg.clip_grad_norm,
                                        tr->lr, &st.grad_norm);
    /* train_vae.py: at in-epoch index i % 100 == 0, after the step, with
     * global_step = this step's index (incremented afterwards) */
    const vae_train_config *c = &tr->cfg;
    int64_t i = c->steps_per_epoch > 0 ? tr->step % c->steps_per_epoch : tr->step;
    if (i % c->anneal_every == 0) {
        double t = tr->temp * exp(-c->anneal_rate * (double)tr->step);
        tr->temp = t > c->temp_min ? t : c->temp_min;
        tr->lr *= c->lr_decay_rate; /* ExponentialLR's chained form */
    }
    tr->step++;
    if (stats)
        *stats = st;
    return DALLE_OK;
}

/* ---- bundles ------------------------------------------------------------------- */

dalle_status vae_train_write(const vae_train *tr, dalle_bundle_writer *w)
{
    const vae_train_config *c = &tr->cfg;
    dalle_status s;
    const struct {
        const char *key;
        int64_t v;
    } ints[] = {{"vae.image_size", c->image_size},
                {"vae.num_tokens", c->num_tokens},
                {"vae.codebook_dim", c->codebook_dim},
                {"vae.num_layers", c->num_layers},
                {"vae.num_resnet_blocks", c->num_resnet_blocks},
                {"vae.hidden_dim", c->hidden_dim},
                {"vae.channels", c->channels}};
    const struct {
        const char *key;
        int v;
    } bools[] = {{"vae.smooth_l1_loss", c->smooth_l1_loss},
                 {"vae.straight_through", c->straight_through},
                 {"vae.reinmax", 0}};
    /* a "dalle" writer carries the VAE's kind; in a "dvae" bundle
     * general.kind says it (vae.kind would be ignored, and is harmless) */
    if ((s = dalle_bundle_writer_set_str(w, "vae.kind", "dvae")))
        return s;
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if ((s = dalle_bundle_writer_set_i64(w, ints[i].key, ints[i].v)))
            return s;
    for (size_t i = 0; i < sizeof bools / sizeof *bools; i++)
        if ((s = dalle_bundle_writer_set_bool(w, bools[i].key, bools[i].v)))
            return s;
    if ((s = dalle_bundle_writer_set_f64(w, "vae.temperature", c->temperature)) ||
        (s = dalle_bundle_writer_set_f64(w, "vae.kl_div_loss_weight", c->kl_div_loss_weight)))
        return s;
    if (c->normalize &&
        ((s = dalle_bundle_writer_set_f64_array(w, "vae.normalization.mean", c->norm_mean,
                                                c->channels)) ||
         (s = dalle_bundle_writer_set_f64_array(w, "vae.normalization.std", c->norm_std,
                                                c->channels))))
        return s;
    return param_table_write(&tr->pt, w);
}

/* The Adam state goes through adamw_save with a constant schedule whose
 * base_lr is the current (decayed) learning rate: f64 metadata holds the
 * double exactly, so a resumed run continues with the same bits. */
dalle_status vae_train_save_state(const vae_train *tr, dalle_bundle_writer *w)
{
    lr_schedule ls;
    memset(&ls, 0, sizeof ls);
    ls.kind = LR_CONSTANT;
    ls.base_lr = tr->lr;
    dalle_status s;
    if ((s = adamw_save(&tr->opt, &ls, w, "train.")) ||
        (s = dalle_bundle_writer_set_f64(w, "train.vae.temp", tr->temp)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.vae.step", tr->step)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.vae.seed", (int64_t)tr->cfg.seed)))
        return s;
    return DALLE_OK;
}

dalle_status vae_train_resume(vae_train *tr, dalle_bundle *b)
{
    /* check every tensor first, then copy: a failure changes nothing */
    const float **src;
    dalle_status s = param_table_find_all(&tr->pt, b, &src);
    if (s)
        return s;
    double temp = tr->temp;
    int64_t step = tr->step, seed = 0;
    int has_state = dalle_bundle_meta_i64(b, "train.vae.step", &step) == DALLE_OK;
    if (has_state &&
        (dalle_bundle_meta_f64(b, "train.vae.temp", &temp) ||
         dalle_bundle_meta_i64(b, "train.vae.seed", &seed) || step < 0))
        s = dalle_fail(DALLE_ERR_MISMATCH,
                       "%s: 'train.vae.temp' / 'train.vae.seed' missing or 'train.vae.step' < 0",
                       bundle_path(b));
    lr_schedule ls;
    memset(&ls, 0, sizeof ls);
    if (!s && has_state) /* changes tr->opt only on success */
        s = adamw_load(&tr->opt, &ls, b, "train.");
    if (s) {
        free(src);
        return s;
    }
    param_table_copy(&tr->pt, src);
    if (has_state) {
        tr->lr = ls.base_lr;
        tr->temp = temp;
        tr->step = step;
        tr->cfg.seed = (uint64_t)seed; /* the Gumbel noise continues its stream */
    }
    return DALLE_OK;
}
