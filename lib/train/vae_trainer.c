/* The public VAE training API (dalle_vae_trainer_*, include/dalle/train.h)
 * over the DiscreteVAE trainer (vae_train.h), which holds the optimiser and
 * train_vae.py's temperature / learning-rate schedule itself.
 *
 * This file adds what a user of the library needs around it: checked
 * parameters, the data loop (dalle_image_data), and checkpoints that carry
 * every setting, so that resuming needs nothing but the file. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"
#include "../params.h"
#include "../threadpool.h"
#include "image_data.h"
#include "trainer_common.h"
#include "vae_train.h"

struct dalle_vae_trainer {
    dalle_vae_train_params p; /* the settings in force */
    vae_train *tr;
    tpool *pool;
    float *ibuf;              /* [batch][3][size][size] step_data's images */
};

void dalle_vae_train_params_init(dalle_vae_train_params *params, size_t struct_size)
{
    dalle_vae_train_params p;
    memset(&p, 0, sizeof p);
    /* train_vae.py's command-line defaults */
    p.image_size = 128;
    p.num_tokens = 8192;
    p.codebook_dim = 512;
    p.num_layers = 2;
    p.num_resnet_blocks = 2;
    p.hidden_dim = 256;
    p.temperature = 0.9; /* DiscreteVAE's own default */
    p.starting_temp = 1.0;
    p.temp_min = 0.5;
    p.anneal_rate = 1e-6;
    p.anneal_every = 100;
    p.batch = 8;
    p.lr = 1e-3;
    p.lr_decay = 0.98;
    params_fill(params, struct_size, &p, sizeof p);
}

void dalle_vae_train_stats_init(dalle_vae_train_stats *stats, size_t struct_size)
{
    dalle_vae_train_stats s;
    memset(&s, 0, sizeof s);
    params_fill(stats, struct_size, &s, sizeof s);
}

/* ---- checks ------------------------------------------------------------------ */

#define BAD(...) dalle_fail(DALLE_ERR_INVALID_ARGUMENT, __VA_ARGS__)

static dalle_status check_shape(const dalle_vae_train_params *p)
{
    const struct {
        const char *name;
        int v, lo, hi;
    } f[] = {{"num_tokens", p->num_tokens, 2, 1 << 20},
             {"codebook_dim", p->codebook_dim, 1, 1 << 16},
             {"num_layers", p->num_layers, 1, VAE_TRAIN_MAX_LAYERS},
             {"num_resnet_blocks", p->num_resnet_blocks, 0, VAE_TRAIN_MAX_RES},
             {"hidden_dim", p->hidden_dim, 1, 1 << 14}};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++)
        if (f[i].v < f[i].lo || f[i].v > f[i].hi)
            return BAD("dalle_vae_train_params.%s = %d (%d..%d)", f[i].name, f[i].v, f[i].lo,
                       f[i].hi);
    const int s = p->image_size;
    if (s < 2 || s > 4096 || (s & (s - 1)) || (s >> p->num_layers) < 1)
        return BAD("dalle_vae_train_params.image_size = %d: a power of 2 in 2..4096, at least "
                   "2^num_layers (%d)",
                   s, 1 << p->num_layers);
    if (!(p->temperature > 0.0 && p->temperature < 1e6) ||
        !(p->kl_div_loss_weight >= 0.0 && p->kl_div_loss_weight < 1e12))
        return BAD("dalle_vae_train_params: temperature = %g (> 0), kl_div_loss_weight = %g "
                   "(>= 0)",
                   p->temperature, p->kl_div_loss_weight);
    return DALLE_OK;
}

static dalle_status check_optim(const dalle_vae_train_params *p)
{
    if (p->batch < 1 || p->batch > 65536)
        return BAD("dalle_vae_train_params.batch = %d (1..65536)", p->batch);
    if (p->n_threads < 0)
        return BAD("dalle_vae_train_params.n_threads = %d (>= 0)", p->n_threads);
    if (!(p->lr > 0.0 && p->lr < 1e3) || !(p->lr_decay > 0.0 && p->lr_decay <= 1.0))
        return BAD("dalle_vae_train_params: lr = %g (> 0), lr_decay = %g (0..1]", p->lr,
                   p->lr_decay);
    if (!(p->starting_temp > 0.0 && p->starting_temp < 1e6) ||
        !(p->temp_min > 0.0 && p->temp_min < 1e6) ||
        !(p->anneal_rate >= 0.0 && p->anneal_rate < 1e3) || p->anneal_every < 1)
        return BAD("dalle_vae_train_params: starting_temp = %g, temp_min = %g (> 0), "
                   "anneal_rate = %g (>= 0), anneal_every = %d (>= 1)",
                   p->starting_temp, p->temp_min, p->anneal_rate, p->anneal_every);
    if (p->steps_per_epoch < 0 || !(p->clip_grad_norm >= 0.0 && isfinite(p->clip_grad_norm)))
        return BAD("dalle_vae_train_params: steps_per_epoch = %lld, clip_grad_norm = %g "
                   "(>= 0)",
                   (long long)p->steps_per_epoch, p->clip_grad_norm);
    return DALLE_OK;
}

static dalle_status check_stats(const dalle_vae_train_stats *st, const char *fn)
{
    return train_check_stats(st, sizeof *st, fn, "dalle_vae_train_default_stats");
}

/* ---- creating and resuming ---------------------------------------------------------- */

void dalle_vae_trainer_free(dalle_vae_trainer *t)
{
    if (!t)
        return;
    vae_train_free(t->tr);
    tpool_free(t->pool);
    free(t->ibuf);
    free(t);
}

static vae_train_config config_from(const dalle_vae_train_params *p, int normalize,
                                    const double *mean, const double *std)
{
    vae_train_config c = vae_train_default_config();
    c.image_size = p->image_size;
    c.num_tokens = p->num_tokens;
    c.codebook_dim = p->codebook_dim;
    c.num_layers = p->num_layers;
    c.num_resnet_blocks = p->num_resnet_blocks;
    c.hidden_dim = p->hidden_dim;
    c.channels = 3; /* the inference side reads RGB only */
    c.smooth_l1_loss = p->smooth_l1_loss != 0;
    c.temperature = p->temperature;
    c.straight_through = p->straight_through != 0;
    c.kl_div_loss_weight = p->kl_div_loss_weight;
    c.normalize = normalize;
    if (mean && std)
        for (int i = 0; i < 3; i++)
            c.norm_mean[i] = mean[i], c.norm_std[i] = std[i];
    c.learning_rate = p->lr;
    c.lr_decay_rate = p->lr_decay;
    c.starting_temp = p->starting_temp;
    c.temp_min = p->temp_min;
    c.anneal_rate = p->anneal_rate;
    c.anneal_every = p->anneal_every;
    c.steps_per_epoch = p->steps_per_epoch;
    c.clip_grad_norm = p->clip_grad_norm;
    c.seed = p->seed;
    return c;
}

static dalle_status build(dalle_vae_trainer *t, const vae_train_config *c)
{
    dalle_status s;
    if ((s = vae_train_create(c, t->p.batch, &t->tr)) ||
        (s = tpool_create(t->p.n_threads, &t->pool)))
        return s;
    t->tr->pool = t->pool;
    t->ibuf = malloc((size_t)t->p.batch * 3 * t->p.image_size * t->p.image_size *
                     sizeof *t->ibuf);
    if (!t->ibuf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_vae_trainer: out of memory");
    return DALLE_OK;
}

dalle_status dalle_vae_trainer_create(const dalle_vae_train_params *params,
                                      dalle_vae_trainer **out)
{
    if (!out)
        return BAD("dalle_vae_trainer_create: out is NULL");
    dalle_vae_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_vae_trainer_create: out of memory");
    dalle_vae_train_params_init(&t->p, sizeof t->p);
    dalle_status s =
        params_merge(params, sizeof t->p, sizeof t->p, "dalle_vae_train_params", &t->p);
    if (!s && !(s = check_shape(&t->p)) && !(s = check_optim(&t->p))) {
        vae_train_config c = config_from(&t->p, 1, NULL, NULL);
        s = build(t, &c);
    }
    if (s) {
        dalle_vae_trainer_free(t);
        return s;
    }
    *out = t;
    return DALLE_OK;
}

/* DiscreteVAE's kwargs of a "dvae" bundle into t->p; *normalize and
 * mean / std as its normalization (both arrays absent: None). */
static dalle_status read_model(dalle_vae_trainer *t, dalle_bundle *b, int *normalize,
                               double *mean, double *std)
{
    const char *keys[7] = {"vae.image_size", "vae.num_tokens",        "vae.codebook_dim",
                           "vae.num_layers", "vae.num_resnet_blocks", "vae.hidden_dim",
                           "vae.channels"};
    const int64_t def[7] = {256, 512, 512, 3, 0, 64, 3}; /* DiscreteVAE()'s */
    int64_t v[7];
    dalle_status s;
    for (int i = 0; i < 7; i++)
        if ((s = bundle_int(b, keys[i], def[i], &v[i])))
            return s;
        else if (v[i] < 0 || v[i] > (1 << 24))
            return dalle_fail(DALLE_ERR_MISMATCH, "%s: '%s' = %lld is out of range",
                              bundle_path(b), keys[i], (long long)v[i]);
    if (v[6] != 3)
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: vae.channels = %lld: only RGB (3)",
                          bundle_path(b), (long long)v[6]);
    int sl1 = 0, st = 0, reinmax = 0;
    double temp = 0.9, klw = 0.0;
    if ((s = bundle_bool(b, "vae.smooth_l1_loss", 0, &sl1)) ||
        (s = bundle_bool(b, "vae.straight_through", 0, &st)) ||
        (s = bundle_bool(b, "vae.reinmax", 0, &reinmax)) ||
        (s = bundle_float(b, "vae.temperature", 0.9, &temp)) ||
        (s = bundle_float(b, "vae.kl_div_loss_weight", 0.0, &klw)))
        return s;
    if (reinmax)
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: vae.reinmax is set: the trainer cannot "
                          "train it", bundle_path(b));
    int64_t nm = 0, ns = 0;
    dalle_status sm = dalle_bundle_meta_f64_array(b, "vae.normalization.mean", mean, 3, &nm);
    dalle_status ss = dalle_bundle_meta_f64_array(b, "vae.normalization.std", std, 3, &ns);
    *normalize = !(sm == DALLE_ERR_NOT_FOUND && ss == DALLE_ERR_NOT_FOUND);
    if (*normalize && (sm || ss || nm != 3 || ns != 3))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: 'vae.normalization.mean' / '.std' must both "
                          "be f64 arrays of 3 values", bundle_path(b));
    t->p.image_size = (int)v[0];
    t->p.num_tokens = (int)v[1];
    t->p.codebook_dim = (int)v[2];
    t->p.num_layers = (int)v[3];
    t->p.num_resnet_blocks = (int)v[4];
    t->p.hidden_dim = (int)v[5];
    t->p.smooth_l1_loss = sl1;
    t->p.straight_through = st;
    t->p.temperature = temp;
    t->p.kl_div_loss_weight = klw;
    if ((s = check_shape(&t->p)))
        return train_fail_in(bundle_path(b), DALLE_ERR_MISMATCH);
    return DALLE_OK;
}

/* train.* settings of a checkpoint that vae_train_save_state leaves out. */
static dalle_status read_train_state(dalle_vae_trainer *t, dalle_bundle *b)
{
    int64_t batch, every, spe;
    double lr0, decay, t0, tmin, rate, clip;
    if (dalle_bundle_meta_i64(b, "train.batch", &batch) ||
        dalle_bundle_meta_i64(b, "train.vae.anneal_every", &every) ||
        dalle_bundle_meta_i64(b, "train.vae.steps_per_epoch", &spe) ||
        dalle_bundle_meta_f64(b, "train.vae.learning_rate", &lr0) ||
        dalle_bundle_meta_f64(b, "train.vae.lr_decay", &decay) ||
        dalle_bundle_meta_f64(b, "train.vae.starting_temp", &t0) ||
        dalle_bundle_meta_f64(b, "train.vae.temp_min", &tmin) ||
        dalle_bundle_meta_f64(b, "train.vae.anneal_rate", &rate) ||
        dalle_bundle_meta_f64(b, "train.clip_grad_norm", &clip))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: train.batch / vae.anneal_every / "
                          "vae.steps_per_epoch / vae.learning_rate / vae.lr_decay / "
                          "vae.starting_temp / vae.temp_min / vae.anneal_rate / clip_grad_norm "
                          "missing or mistyped", bundle_path(b));
    if (batch < 1 || batch > 65536 || every < 1 || every > INT32_MAX)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: train.batch %lld / anneal_every %lld invalid",
                          bundle_path(b), (long long)batch, (long long)every);
    t->p.batch = (int)batch;
    t->p.anneal_every = (int)every;
    t->p.steps_per_epoch = spe;
    t->p.lr = lr0;
    t->p.lr_decay = decay;
    t->p.starting_temp = t0;
    t->p.temp_min = tmin;
    t->p.anneal_rate = rate;
    t->p.clip_grad_norm = clip;
    return check_optim(&t->p) ? train_fail_in(bundle_path(b), DALLE_ERR_MISMATCH) : DALLE_OK;
}

dalle_status dalle_vae_trainer_resume(const char *checkpoint,
                                      const dalle_vae_train_params *params,
                                      dalle_vae_trainer **out)
{
    if (!checkpoint || !out)
        return BAD("dalle_vae_trainer_resume: %s is NULL", checkpoint ? "out" : "checkpoint");
    dalle_vae_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_vae_trainer_resume: out of memory");
    dalle_vae_train_params_init(&t->p, sizeof t->p);
    dalle_bundle *b = NULL;
    int64_t dummy;
    int normalize = 1;
    double mean[3] = {0.5, 0.5, 0.5}, std[3] = {0.5, 0.5, 0.5};
    dalle_status s =
        params_merge(params, sizeof t->p, sizeof t->p, "dalle_vae_train_params", &t->p);
    if (s || (s = check_optim(&t->p)) || (s = dalle_bundle_open(checkpoint, &b)))
        goto fail;
    if (strcmp(dalle_bundle_kind(b), "dvae")) {
        s = dalle_fail(DALLE_ERR_MISMATCH, "%s: a bundle of kind '%s'; resuming needs a "
                       "DALLE-pytorch DiscreteVAE (kind dvae)", checkpoint, dalle_bundle_kind(b));
        goto fail;
    }
    const int with_opt = !dalle_bundle_meta_i64(b, "train.vae.step", &dummy);
    if ((s = read_model(t, b, &normalize, mean, std)) ||
        (with_opt && (s = read_train_state(t, b))))
        goto fail;
    vae_train_config c = config_from(&t->p, normalize, mean, std);
    if ((s = build(t, &c)) || (s = vae_train_resume(t->tr, b)))
        goto fail;
    if (with_opt)
        t->p.seed = t->tr->cfg.seed; /* the checkpoint's: noise and data order go on */
    dalle_bundle_close(b);
    *out = t;
    return DALLE_OK;
fail:
    dalle_bundle_close(b);
    dalle_vae_trainer_free(t);
    return s;
}

/* ---- training ------------------------------------------------------------------------- */

static dalle_status check_input(const dalle_vae_trainer *t, const void *data, int batch,
                                const char *what, const char *fn)
{
    if (!t || !data)
        return BAD("%s: %s is NULL", fn, !t ? "trainer" : what);
    if (batch < 1 || batch > t->p.batch)
        return BAD("%s: batch = %d (1..%d)", fn, batch, t->p.batch);
    return DALLE_OK;
}

static dalle_status check_pixels(const dalle_vae_trainer *t, const float *pixels, int batch,
                                 const char *fn)
{
    dalle_status s = check_input(t, pixels, batch, "pixels", fn);
    if (s)
        return s;
    const int64_t n = (int64_t)batch * 3 * t->p.image_size * t->p.image_size;
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(pixels[i]))
            return BAD("%s: pixels[%lld] is not finite", fn, (long long)i);
    return DALLE_OK;
}

static void stats_from(const vae_train_stats *v, int64_t step, dalle_vae_train_stats *st)
{
    dalle_vae_train_stats_init(st, sizeof *st);
    st->step = step;
    st->loss = v->loss;
    st->recon = v->recon;
    st->kl = v->kl;
    st->temperature = v->temp;
    st->lr = v->lr;
    st->grad_norm = v->grad_norm;
    st->skipped = v->skipped;
}

/* The step with the in-epoch index of an epoch of `spe` steps (0: endless). */
static dalle_status step(dalle_vae_trainer *t, const float *pixels, int batch, int64_t spe,
                         dalle_vae_train_stats *stats, const char *fn)
{
    vae_train_stats v;
    t->tr->cfg.steps_per_epoch = spe;
    dalle_status s = vae_train_step(t->tr, pixels, batch, &v);
    if (s)
        return train_fail_in(fn, s);
    stats_from(&v, t->tr->step, stats);
    return DALLE_OK;
}

dalle_status dalle_vae_trainer_step(dalle_vae_trainer *t, const float *pixels, int batch,
                                    dalle_vae_train_stats *stats)
{
    dalle_status s = check_pixels(t, pixels, batch, "dalle_vae_trainer_step");
    if (s || (s = check_stats(stats, "dalle_vae_trainer_step")))
        return s;
    dalle_vae_train_stats st;
    if ((s = step(t, pixels, batch, t->p.steps_per_epoch, &st, "dalle_vae_trainer_step")))
        return s;
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_vae_trainer_step_data(dalle_vae_trainer *t, dalle_image_data *data,
                                         dalle_vae_train_stats *stats)
{
    if (!t || !data)
        return BAD("dalle_vae_trainer_step_data: %s is NULL", t ? "data" : "trainer");
    dalle_status s = check_stats(stats, "dalle_vae_trainer_step_data");
    if (s)
        return s;
    if (dalle_image_data_image_size(data) != t->p.image_size)
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "dalle_vae_trainer_step_data: the images are %d px, the model "
                          "takes %d",
                          dalle_image_data_image_size(data), t->p.image_size);
    const int64_t spe = image_data_steps_per_epoch(data, t->p.batch);
    if (!spe)
        return BAD("dalle_vae_trainer_step_data: %lld images, fewer than the batch of %d",
                   (long long)dalle_image_data_count(data), t->p.batch);
    const int64_t at = t->tr->step;
    if ((s = image_data_batch(data, t->p.seed, at, t->p.batch, t->ibuf, NULL, NULL)))
        return s;
    dalle_vae_train_stats st;
    /* train_vae.py's in-epoch index restarts with each pass over the data */
    if ((s = step(t, t->ibuf, t->p.batch, spe, &st, "dalle_vae_trainer_step_data")))
        return s;
    st.epoch = at / spe;
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_vae_trainer_eval(dalle_vae_trainer *t, const float *pixels, int batch,
                                    dalle_vae_train_stats *stats)
{
    dalle_status s = check_pixels(t, pixels, batch, "dalle_vae_trainer_eval");
    if (s || (s = check_stats(stats, "dalle_vae_trainer_eval")))
        return s;
    vae_train_stats v;
    if ((s = vae_train_forward(t->tr, pixels, batch, &v)))
        return train_fail_in("dalle_vae_trainer_eval", s);
    v.grad_norm = 0.0;
    v.skipped = 0;
    dalle_vae_train_stats st;
    stats_from(&v, t->tr->step, &st);
    train_put_stats(stats, &st, sizeof st);
    return DALLE_OK;
}

dalle_status dalle_vae_trainer_encode(dalle_vae_trainer *t, const float *pixels, int batch,
                                      int32_t *ids)
{
    dalle_status s = check_pixels(t, pixels, batch, "dalle_vae_trainer_encode");
    if (s || (s = check_input(t, ids, batch, "ids", "dalle_vae_trainer_encode")))
        return s;
    if ((s = vae_train_encode(t->tr, pixels, batch, ids)))
        return train_fail_in("dalle_vae_trainer_encode", s);
    return DALLE_OK;
}

dalle_status dalle_vae_trainer_decode(dalle_vae_trainer *t, const int32_t *ids, int batch,
                                      float *pixels)
{
    dalle_status s = check_input(t, ids, batch, "ids", "dalle_vae_trainer_decode");
    if (s || (s = check_input(t, pixels, batch, "pixels", "dalle_vae_trainer_decode")))
        return s;
    if ((s = vae_train_decode(t->tr, ids, batch, pixels)))
        return train_fail_in("dalle_vae_trainer_decode", s);
    return DALLE_OK;
}

/* ---- queries and saving ---------------------------------------------------------------- */

int64_t dalle_vae_trainer_steps(const dalle_vae_trainer *t) { return t ? t->tr->step : 0; }
int64_t dalle_vae_trainer_num_params(const dalle_vae_trainer *t)
{
    return t ? t->tr->pt.n_weights : 0;
}

dalle_status dalle_vae_trainer_get_params(const dalle_vae_trainer *t,
                                          dalle_vae_train_params *params)
{
    /* the settings in force: the decayed learning rate, the annealed temperature */
    dalle_vae_train_params p = t ? t->p : (dalle_vae_train_params){0};
    if (t) {
        p.lr = t->tr->lr;
        p.starting_temp = t->tr->temp;
    }
    return train_get_params(t != NULL, params, &p, sizeof p, "dalle_vae_trainer_get_params",
                            "dalle_vae_train_default_params");
}

static dalle_status write_settings(const dalle_vae_trainer *t, dalle_bundle_writer *w)
{
    const dalle_vae_train_params *p = &t->p;
    dalle_status s;
    if ((s = dalle_bundle_writer_set_i64(w, "train.batch", p->batch)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.vae.anneal_every", p->anneal_every)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.vae.steps_per_epoch", p->steps_per_epoch)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.vae.learning_rate", p->lr)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.vae.lr_decay", p->lr_decay)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.vae.starting_temp", p->starting_temp)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.vae.temp_min", p->temp_min)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.vae.anneal_rate", p->anneal_rate)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.clip_grad_norm", p->clip_grad_norm)))
        return s;
    return vae_train_save_state(t->tr, w);
}

dalle_status dalle_vae_trainer_save(dalle_vae_trainer *t, const char *path, int with_optimizer)
{
    if (!t || !path)
        return BAD("dalle_vae_trainer_save: %s is NULL", t ? "path" : "trainer");
    dalle_bundle_writer *w;
    dalle_status s = train_writer_create("dvae", "dalle_vae_trainer", t->tr->step, &w);
    if (!s)
        s = vae_train_write(t->tr, w);
    if (!s && with_optimizer)
        s = write_settings(t, w);
    return train_writer_finish(w, s, path);
}
