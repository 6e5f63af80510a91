/* AdamW, clip_grad_norm and the learning-rate schedule (adamw.h).
 *
 * The update follows torch.optim.AdamW's single-tensor CPU code operation
 * by operation: scalars are computed in double (Python floats) and applied
 * to float tensors as floats, in torch's order, so the bits can match
 * PyTorch's for the same inputs. */
#include "adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../error.h"

adamw_config adamw_default_config(void)
{
    adamw_config c = {0.9, 0.999, 1e-8, 0.0};
    return c;
}

dalle_status adamw_init(adamw *o, int64_t n, const adamw_config *cfg)
{
    memset(o, 0, sizeof *o);
    if (n < 1 || !cfg || !(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0) ||
        !(cfg->beta2 >= 0.0 && cfg->beta2 < 1.0) || !(cfg->eps >= 0.0) ||
        !(cfg->weight_decay >= 0.0))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "optimizer (Adam): %lld parameters, betas in [0, 1), eps and "
                          "weight_decay >= 0 expected",
                          (long long)n);
    o->cfg = *cfg;
    o->n = n;
    o->m = calloc((size_t)n, sizeof *o->m);
    o->v = calloc((size_t)n, sizeof *o->v);
    if (!o->m || !o->v) {
        adamw_free(o);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY,
                          "out of memory for the optimizer's state of %lld parameters",
                          (long long)n);
    }
    return DALLE_OK;
}

void adamw_free(adamw *o)
{
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void adamw_step(adamw *o, float *params, const float *grads, const uint8_t *decay, double lr)
{
    const adamw_config *c = &o->cfg;
    o->step++;
    const double bc1 = 1.0 - pow(c->beta1, (double)o->step);
    const double bc2 = 1.0 - pow(c->beta2, (double)o->step);
    const float keep = (float)(1.0 - lr * c->weight_decay);
    const float w1 = (float)(1.0 - c->beta1), b2 = (float)c->beta2, w2 = (float)(1.0 - c->beta2);
    const float bc2_sqrt = (float)sqrt(bc2), eps = (float)c->eps;
    const float neg_step = (float)(-(lr / bc1));
    for (int64_t i = 0; i < o->n; i++) {
        float g = grads[i], m = o->m[i];
        if (c->weight_decay != 0.0 && (!decay || decay[i]))
            params[i] *= keep;
        /* exp_avg.lerp_(grad, 1 - beta1): torch's two-sided lerp */
        m = w1 < 0.5f ? m + w1 * (g - m) : g - (g - m) * (1.0f - w1);
        o->m[i] = m;
        float v = o->v[i] * b2 + w2 * g * g;
        o->v[i] = v;
        float denom = sqrtf(v) / bc2_sqrt + eps;
        params[i] = params[i] + neg_step * m / denom;
    }
}

double clip_grad_norm(float *grads, int64_t n, double max_norm)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)grads[i] * grads[i];
    double norm = sqrt(ss);
    if (!isfinite(norm) || max_norm <= 0.0)
        return norm;
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) {
        float cf = (float)coef;
        for (int64_t i = 0; i < n; i++)
            grads[i] *= cf;
    }
    return norm;
}

/* ---- schedule ------------------------------------------------------------------ */

lr_schedule lr_schedule_default(void)
{
    lr_schedule s;
    memset(&s, 0, sizeof s);
    s.kind = LR_PLATEAU;
    s.base_lr = 3e-4;
    s.min_lr = 1e-6;
    s.factor = 0.5;
    s.threshold = 1e-4;
    s.patience = 10;
    s.cooldown = 10;
    s.plateau_lr = s.base_lr;
    s.best = INFINITY;
    return s;
}

double lr_schedule_at(const lr_schedule *s, int64_t step)
{
    double lr = s->base_lr;
    if (s->kind == LR_PLATEAU) {
        lr = s->plateau_lr;
    } else if (s->kind == LR_COSINE) {
        int64_t span = s->total_steps - s->warmup_steps, t = step - s->warmup_steps;
        if (span <= 0 || t >= span)
            lr = step < s->warmup_steps ? s->base_lr : s->min_lr;
        else if (t > 0)
            lr = s->min_lr + 0.5 * (s->base_lr - s->min_lr) *
                                 (1.0 + cos(3.14159265358979323846 * (double)t / (double)span));
    }
    if (step < s->warmup_steps)
        lr *= (double)(step + 1) / (double)s->warmup_steps;
    return lr;
}

void lr_schedule_observe(lr_schedule *s, double metric)
{
    if (s->kind != LR_PLATEAU)
        return;
    /* torch.optim.lr_scheduler.ReduceLROnPlateau.step, mode 'min',
     * threshold_mode 'rel' */
    s->observed++;
    if (metric < s->best * (1.0 - s->threshold)) {
        s->best = metric;
        s->num_bad = 0;
    } else {
        s->num_bad++;
    }
    if (s->cooldown_counter > 0) {
        s->cooldown_counter--;
        s->num_bad = 0;
    }
    if (s->num_bad > s->patience) {
        double lr = s->plateau_lr * s->factor;
        if (lr < s->min_lr)
            lr = s->min_lr;
        if (s->plateau_lr - lr > 1e-8) /* torch's eps */
            s->plateau_lr = lr;
        s->cooldown_counter = s->cooldown;
        s->num_bad = 0;
    }
}

/* ---- checkpoints ------------------------------------------------------------------ */

#define KEY(buf, prefix, name) snprintf(buf, sizeof buf, "%s%s", prefix, name)

dalle_status adamw_save(const adamw *o, const lr_schedule *s, dalle_bundle_writer *w,
                        const char *prefix)
{
    char k[256];
    dalle_status st;
    int64_t dims[1] = {o->n};
    const struct {
        const char *name;
        int64_t v;
    } ints[] = {{"adam.step", o->step},
                {"lr.kind", s->kind},
                {"lr.warmup_steps", s->warmup_steps},
                {"lr.total_steps", s->total_steps},
                {"lr.patience", s->patience},
                {"lr.cooldown", s->cooldown},
                {"lr.num_bad", s->num_bad},
                {"lr.cooldown_counter", s->cooldown_counter},
                {"lr.observed", s->observed}};
    const struct {
        const char *name;
        double v;
    } dbls[] = {{"adam.beta1", o->cfg.beta1},   {"adam.beta2", o->cfg.beta2},
                {"adam.eps", o->cfg.eps},       {"adam.weight_decay", o->cfg.weight_decay},
                {"lr.base_lr", s->base_lr},     {"lr.min_lr", s->min_lr},
                {"lr.factor", s->factor},       {"lr.threshold", s->threshold},
                {"lr.plateau_lr", s->plateau_lr}, {"lr.best", s->best}};
    for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
        if (KEY(k, prefix, ints[i].name), (st = dalle_bundle_writer_set_i64(w, k, ints[i].v)))
            return st;
    for (size_t i = 0; i < sizeof dbls / sizeof *dbls; i++)
        if (KEY(k, prefix, dbls[i].name), (st = dalle_bundle_writer_set_f64(w, k, dbls[i].v)))
            return st;
    KEY(k, prefix, "adam.exp_avg");
    if ((st = dalle_bundle_writer_add_tensor(w, k, DALLE_DTYPE_F32, 1, dims, o->m, 1)))
        return st;
    KEY(k, prefix, "adam.exp_avg_sq");
    return dalle_bundle_writer_add_tensor(w, k, DALLE_DTYPE_F32, 1, dims, o->v, 1);
}

static dalle_status get_i64(dalle_bundle *b, const char *prefix, const char *name, int64_t *out)
{
    char k[256];
    KEY(k, prefix, name);
    if (dalle_bundle_meta_i64(b, k, out))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' missing or not an integer",
                          bundle_path(b), k);
    return DALLE_OK;
}

static dalle_status get_f64(dalle_bundle *b, const char *prefix, const char *name, double *out)
{
    char k[256];
    KEY(k, prefix, name);
    if (dalle_bundle_meta_f64(b, k, out))
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata '%s' missing or not a float",
                          bundle_path(b), k);
    return DALLE_OK;
}

dalle_status adamw_load(adamw *o, lr_schedule *s, dalle_bundle *b, const char *prefix)
{
    /* read everything into copies first: a failure changes nothing */
    adamw_config c;
    lr_schedule ls = *s;
    int64_t step, kind;
    const float *m, *v;
    char k[256];
    int64_t dims[1] = {o->n};
    dalle_status st;
    if ((st = get_i64(b, prefix, "adam.step", &step)) ||
        (st = get_f64(b, prefix, "adam.beta1", &c.beta1)) ||
        (st = get_f64(b, prefix, "adam.beta2", &c.beta2)) ||
        (st = get_f64(b, prefix, "adam.eps", &c.eps)) ||
        (st = get_f64(b, prefix, "adam.weight_decay", &c.weight_decay)) ||
        (st = get_i64(b, prefix, "lr.kind", &kind)) ||
        (st = get_i64(b, prefix, "lr.warmup_steps", &ls.warmup_steps)) ||
        (st = get_i64(b, prefix, "lr.total_steps", &ls.total_steps)) ||
        (st = get_i64(b, prefix, "lr.patience", &ls.patience)) ||
        (st = get_i64(b, prefix, "lr.cooldown", &ls.cooldown)) ||
        (st = get_i64(b, prefix, "lr.num_bad", &ls.num_bad)) ||
        (st = get_i64(b, prefix, "lr.cooldown_counter", &ls.cooldown_counter)) ||
        (st = get_i64(b, prefix, "lr.observed", &ls.observed)) ||
        (st = get_f64(b, prefix, "lr.base_lr", &ls.base_lr)) ||
        (st = get_f64(b, prefix, "lr.min_lr", &ls.min_lr)) ||
        (st = get_f64(b, prefix, "lr.factor", &ls.factor)) ||
        (st = get_f64(b, prefix, "lr.threshold", &ls.threshold)) ||
        (st = get_f64(b, prefix, "lr.plateau_lr", &ls.plateau_lr)) ||
        (st = get_f64(b, prefix, "lr.best", &ls.best)))
        return st;
    if (kind < LR_CONSTANT || kind > LR_PLATEAU || step < 0)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: %slr.kind = %lld / adam.step = %lld invalid",
                          bundle_path(b), prefix, (long long)kind, (long long)step);
    KEY(k, prefix, "adam.exp_avg");
    if ((st = bundle_tensor_f32(b, k, 1, dims, &m)))
        return st;
    KEY(k, prefix, "adam.exp_avg_sq");
    if ((st = bundle_tensor_f32(b, k, 1, dims, &v)))
        return st;
    ls.kind = (lr_kind)kind;
    o->cfg = c;
    o->step = step;
    memcpy(o->m, m, (size_t)o->n * sizeof *m);
    memcpy(o->v, v, (size_t)o->n * sizeof *v);
    *s = ls;
    return DALLE_OK;
}
