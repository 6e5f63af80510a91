/* What the public trainers share (trainer_common.h). */
#include "trainer_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"
#include "../params.h"

#define BAD(...) dalle_fail(DALLE_ERR_INVALID_ARGUMENT, __VA_ARGS__)

/* ---- optimiser settings ----------------------------------------------------- */

train_optim_params train_optim_defaults(int batch)
{
    train_optim_params p;
    memset(&p, 0, sizeof p);
    p.batch = batch;
    p.lr = 3e-4;
    p.lr_schedule = DALLE_LR_CONSTANT;
    p.min_lr = 1e-6;
    p.plateau_factor = 0.5;
    p.plateau_patience = 10;
    p.plateau_cooldown = 10;
    p.beta1 = 0.9;
    p.beta2 = 0.999;
    p.eps = 1e-8;
    p.clip_grad_norm = 0.5;
    return p;
}

dalle_status train_optim_check(const train_optim_params *p, const char *what)
{
    if (p->batch < 1 || p->batch > 65536)
        return BAD("%s.batch = %d (1..65536)", what, p->batch);
    if (p->n_threads < 0)
        return BAD("%s.n_threads = %d (>= 0)", what, p->n_threads);
    if (!(p->lr > 0.0 && p->lr < 1e3) || !(p->min_lr >= 0.0 && p->min_lr < 1e3))
        return BAD("%s: lr = %g, min_lr = %g (lr > 0, min_lr >= 0)", what, p->lr, p->min_lr);
    if ((int)p->lr_schedule < 0 || (int)p->lr_schedule > 2)
        return BAD("%s.lr_schedule = %d (0..2)", what, (int)p->lr_schedule);
    if (p->warmup_steps < 0 || p->total_steps < 0 ||
        (p->lr_schedule == DALLE_LR_COSINE && p->total_steps <= p->warmup_steps))
        return BAD("%s: warmup_steps = %lld, total_steps = %lld (>= 0; the cosine schedule "
                   "needs total_steps > warmup_steps)",
                   what, (long long)p->warmup_steps, (long long)p->total_steps);
    if (!(p->plateau_factor > 0.0 && p->plateau_factor < 1.0) || p->plateau_patience < 0 ||
        p->plateau_cooldown < 0)
        return BAD("%s: plateau_factor = %g (0..1, open), patience %d, cooldown %d (>= 0)", what,
                   p->plateau_factor, p->plateau_patience, p->plateau_cooldown);
    if (!(p->beta1 >= 0.0 && p->beta1 < 1.0) || !(p->beta2 >= 0.0 && p->beta2 < 1.0) ||
        !(p->eps >= 0.0 && p->eps < 1.0))
        return BAD("%s: beta1 = %g, beta2 = %g ([0, 1)), eps = %g", what, p->beta1, p->beta2,
                   p->eps);
    if (!(p->weight_decay >= 0.0 && p->weight_decay < 1e3) || !isfinite(p->clip_grad_norm))
        return BAD("%s: weight_decay = %g (>= 0), clip_grad_norm = %g (finite)", what,
                   p->weight_decay, p->clip_grad_norm);
    return DALLE_OK;
}

/* ---- optimiser state ------------------------------------------------------------- */

dalle_status train_optim_init(train_optim *o, int64_t n_weights, const train_optim_params *p)
{
    adamw_config ac = {p->beta1, p->beta2, p->eps, p->weight_decay};
    lr_schedule s = lr_schedule_default();
    s.kind = (lr_kind)p->lr_schedule;
    s.base_lr = s.plateau_lr = p->lr;
    s.min_lr = p->min_lr;
    s.warmup_steps = p->warmup_steps;
    s.total_steps = p->total_steps;
    s.factor = p->plateau_factor;
    s.patience = p->plateau_patience;
    s.cooldown = p->plateau_cooldown;
    o->sched = s;
    return adamw_init(&o->opt, n_weights, &ac);
}

void train_optim_free(train_optim *o) { adamw_free(&o->opt); }

double train_optim_lr(const train_optim *o) { return lr_schedule_at(&o->sched, o->step); }

int train_optim_update(train_optim *o, param_table *pt, double loss, double max_norm,
                       double *grad_norm)
{
    int skipped = param_table_adamw_step(pt, &o->opt, 1, loss, max_norm, train_optim_lr(o),
                                         grad_norm);
    o->step++;
    return skipped;
}

int64_t train_optim_epoch(train_optim *o, int64_t step, int64_t spe, double loss, int skipped)
{
    if (!skipped) {
        o->epoch_loss += loss;
        o->epoch_n++;
    }
    if ((step + 1) % spe == 0) {
        if (o->epoch_n)
            lr_schedule_observe(&o->sched, o->epoch_loss / (double)o->epoch_n);
        o->epoch_loss = 0.0;
        o->epoch_n = 0;
    }
    return step / spe;
}

/* ---- checkpoints ------------------------------------------------------------------- */

int train_optim_in_bundle(dalle_bundle *b)
{
    int64_t step;
    return !dalle_bundle_meta_i64(b, "train.adam.step", &step);
}

dalle_status train_optim_save(const train_optim *o, const train_optim_params *p,
                              const train_state_extra *extra, int n_extra,
                              dalle_bundle_writer *w)
{
    dalle_status s;
    if ((s = dalle_bundle_writer_set_i64(w, "train.step", o->step)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.seed", (int64_t)p->seed)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.batch", p->batch)) ||
        (s = dalle_bundle_writer_set_i64(w, "train.epoch_n", o->epoch_n)))
        return s;
    for (int i = 0; i < n_extra; i++)
        if ((s = dalle_bundle_writer_set_i64(w, extra[i].key, extra[i].value)))
            return s;
    if ((s = dalle_bundle_writer_set_f64(w, "train.clip_grad_norm", p->clip_grad_norm)) ||
        (s = dalle_bundle_writer_set_f64(w, "train.epoch_loss", o->epoch_loss)))
        return s;
    return adamw_save(&o->opt, &o->sched, w, "train.");
}

dalle_status train_optim_read_state(train_optim *o, train_optim_params *p, dalle_bundle *b,
                                    train_state_extra *extra, int n_extra)
{
    int64_t step, seed, batch, epoch_n;
    double clip, epoch_loss;
    const char *path = bundle_path(b);
    int missing = dalle_bundle_meta_i64(b, "train.step", &step) ||
                  dalle_bundle_meta_i64(b, "train.seed", &seed) ||
                  dalle_bundle_meta_i64(b, "train.batch", &batch) ||
                  dalle_bundle_meta_i64(b, "train.epoch_n", &epoch_n);
    for (int i = 0; i < n_extra && !missing; i++)
        missing = dalle_bundle_meta_i64(b, extra[i].key, &extra[i].value) != DALLE_OK;
    missing = missing || dalle_bundle_meta_f64(b, "train.clip_grad_norm", &clip) ||
              dalle_bundle_meta_f64(b, "train.epoch_loss", &epoch_loss);
    if (missing) {
        char keys[512] = "train.step / seed / batch / epoch_n";
        for (int i = 0; i < n_extra; i++) {
            size_t used = strlen(keys);
            const char *k = extra[i].key;
            snprintf(keys + used, sizeof keys - used, " / %s",
                     strncmp(k, "train.", 6) ? k : k + 6);
        }
        return dalle_fail(DALLE_ERR_MISMATCH,
                          "%s: %s / clip_grad_norm / epoch_loss missing or mistyped", path, keys);
    }
    if (step < 0 || batch < 1 || batch > 65536 || epoch_n < 0)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: train.step %lld / batch %lld invalid", path,
                          (long long)step, (long long)batch);
    o->step = step;
    o->epoch_n = epoch_n;
    o->epoch_loss = epoch_loss;
    p->seed = (uint64_t)seed;
    p->batch = (int)batch;
    p->clip_grad_norm = clip;
    return DALLE_OK;
}

dalle_status train_optim_load(train_optim *o, train_optim_params *p, dalle_bundle *b)
{
    dalle_status s = adamw_load(&o->opt, &o->sched, b, "train.");
    if (s)
        return s;
    const lr_schedule *ls = &o->sched;
    p->beta1 = o->opt.cfg.beta1;
    p->beta2 = o->opt.cfg.beta2;
    p->eps = o->opt.cfg.eps;
    p->weight_decay = o->opt.cfg.weight_decay;
    p->lr_schedule = (dalle_lr_schedule)ls->kind;
    p->lr = ls->base_lr;
    p->min_lr = ls->min_lr;
    p->warmup_steps = ls->warmup_steps;
    p->total_steps = ls->total_steps;
    p->plateau_factor = ls->factor;
    p->plateau_patience = (int)ls->patience;
    p->plateau_cooldown = (int)ls->cooldown;
    return DALLE_OK;
}

/* ---- versioned structs and saved bundles ------------------------------------------------ */

dalle_status train_check_stats(const void *stats, size_t ours, const char *fn,
                               const char *init_fn)
{
    /* struct_size is the first field of every stats struct */
    const size_t theirs = stats ? *(const size_t *)stats : ours;
    if (theirs < ours || theirs > (size_t)1 << 16)
        return BAD("%s: stats->struct_size = %zu: initialise it with %s()", fn, theirs, init_fn);
    return DALLE_OK;
}

void train_put_stats(void *dst, const void *src, size_t ours)
{
    if (!dst)
        return;
    size_t theirs = *(size_t *)dst;
    memcpy(dst, src, ours); /* theirs >= ours: train_check_stats */
    *(size_t *)dst = theirs;
}

dalle_status train_get_params(int have_trainer, void *params, const void *ours, size_t size,
                              const char *fn, const char *init_fn)
{
    if (!have_trainer || !params)
        return BAD("%s: %s is NULL", fn, have_trainer ? "params" : "trainer");
    size_t theirs = *(size_t *)params;
    if (theirs < sizeof(size_t) || theirs > (size_t)1 << 16)
        return BAD("%s: params->struct_size = %zu: initialise it with %s()", fn, theirs, init_fn);
    params_fill(params, theirs, ours, size);
    return DALLE_OK;
}

dalle_status train_fail_in(const char *where, dalle_status s)
{
    char msg[1024]; /* dalle_fail writes the buffer dalle_last_error reads */
    snprintf(msg, sizeof msg, "%s", dalle_last_error());
    return dalle_fail(s, "%s: %s", where, msg);
}

dalle_status train_writer_create(const char *kind, const char *who, int64_t step,
                                 dalle_bundle_writer **w)
{
    char source[160];
    snprintf(source, sizeof source, "libdalle %s %s, step %lld", dalle_version(), who,
             (long long)step);
    *w = NULL;
    dalle_status s = dalle_bundle_writer_create(kind, w);
    if (!s)
        s = dalle_bundle_writer_set_str(*w, "general.source", source);
    return s;
}

dalle_status train_write_merges(dalle_bundle_writer *w, const uint8_t *merges, size_t size)
{
    if (!merges)
        return DALLE_OK;
    int64_t dims[1] = {(int64_t)size};
    dalle_status s = dalle_bundle_writer_set_str(w, "tokenizer.kind", "clip_bpe");
    if (!s)
        s = dalle_bundle_writer_add_tensor(w, "tokenizer.bpe_merges", DALLE_DTYPE_U8, 1, dims,
                                           merges, 3);
    return s;
}

dalle_status train_writer_finish(dalle_bundle_writer *w, dalle_status s, const char *path)
{
    if (!s)
        s = dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return s;
}
