/* A model's trainable weights as one table (param_table.h). */
#include "param_table.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bundle.h"
#include "../rng.h"

void param_table_add(param_table *t, float **wslot, float **gslot, param_init init, double value,
                     int decay, int ndim, const int64_t *dims, const char *fmt, ...)
{
    if (t->oom)
        return;
    if (t->n_params == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        train_param *m = realloc(t->params, (size_t)cap * sizeof *m);
        if (!m) {
            t->oom = 1;
            return;
        }
        t->params = m;
        t->cap = cap;
    }
    train_param *p = &t->params[t->n_params++];
    memset(p, 0, sizeof *p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) {
        p->dims[i] = dims[i];
        p->numel *= dims[i];
    }
    p->offset = t->n_weights;
    p->decay = decay;
    p->init = init;
    p->init_value = value;
    p->wslot = wslot;
    p->gslot = gslot;
    t->n_weights += p->numel;
}

/* Tensor `index` from its counter-based draws (seed, index, element). */
static void init_tensor(param_table *t, int index, uint64_t seed)
{
    const train_param *p = &t->params[index];
    float *x = t->w + p->offset;
    for (int64_t i = 0; i < p->numel; i++) {
        switch (p->init) {
        case PARAM_INIT_CONST:
            x[i] = (float)p->init_value;
            break;
        case PARAM_INIT_UNIFORM_FAN_IN: {
            /* kaiming_uniform_(a=√5) for the weight and the bias rule:
             * both U(±1/√fan_in) */
            double bound = 1.0 / sqrt(p->init_value);
            x[i] = (float)((2.0 * rng_uniform(seed, (uint64_t)index, (uint64_t)i, 0) - 1.0) *
                           bound);
            break;
        }
        case PARAM_INIT_NORMAL: { /* Box-Muller */
            double u1 = rng_uniform(seed, (uint64_t)index, (uint64_t)i, 0);
            double u2 = rng_uniform(seed, (uint64_t)index, (uint64_t)i, 1);
            x[i] = (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586477 * u2));
            break;
        }
        }
    }
}

dalle_status param_table_alloc(param_table *t, uint64_t seed, const char *what)
{
    if (t->oom)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the %s's tensors", what);
    t->w = malloc((size_t)t->n_weights * sizeof *t->w);
    t->g = calloc((size_t)t->n_weights, sizeof *t->g);
    t->decay = calloc((size_t)t->n_weights, 1);
    if (!t->w || !t->g || !t->decay)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "out of memory for the %s's %lld weights",
                          what, (long long)t->n_weights);
    for (int i = 0; i < t->n_params; i++) {
        const train_param *p = &t->params[i];
        if (p->wslot)
            *p->wslot = t->w + p->offset;
        if (p->gslot)
            *p->gslot = t->g + p->offset;
        if (p->decay)
            memset(t->decay + p->offset, 1, (size_t)p->numel);
        init_tensor(t, i, seed);
    }
    return DALLE_OK;
}

void param_table_free(param_table *t)
{
    free(t->params);
    free(t->w);
    free(t->g);
    free(t->decay);
    memset(t, 0, sizeof *t);
}

const train_param *param_table_find(const param_table *t, const char *name)
{
    for (int i = 0; i < t->n_params; i++)
        if (!strcmp(t->params[i].name, name))
            return &t->params[i];
    return NULL;
}

void param_table_zero_grad(param_table *t)
{
    memset(t->g, 0, (size_t)t->n_weights * sizeof *t->g);
}

int param_table_adamw_step(param_table *t, adamw *opt, int with_decay, double loss,
                           double max_norm, double lr, double *grad_norm)
{
    *grad_norm = clip_grad_norm(t->g, t->n_weights, max_norm);
    int skipped = !isfinite(loss) || !isfinite(*grad_norm);
    if (!skipped)
        adamw_step(opt, t->w, t->g, with_decay ? t->decay : NULL, lr);
    return skipped;
}

dalle_status param_table_write(const param_table *t, dalle_bundle_writer *w)
{
    for (int i = 0; i < t->n_params; i++) {
        const train_param *p = &t->params[i];
        dalle_status s = dalle_bundle_writer_add_tensor(w, p->name, DALLE_DTYPE_F32, p->ndim,
                                                        p->dims, t->w + p->offset, 3);
        if (s)
            return s;
    }
    return DALLE_OK;
}

dalle_status param_table_find_all(const param_table *t, dalle_bundle *b, const float ***src)
{
    const float **p = calloc((size_t)(t->n_params ? t->n_params : 1), sizeof *p);
    if (!p)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory reading the weights",
                          bundle_path(b));
    dalle_status s = DALLE_OK;
    for (int i = 0; i < t->n_params && !s; i++)
        s = bundle_tensor_f32(b, t->params[i].name, t->params[i].ndim, t->params[i].dims, &p[i]);
    if (s) {
        free(p);
        return s;
    }
    *src = p;
    return DALLE_OK;
}

void param_table_copy(param_table *t, const float **src)
{
    for (int i = 0; i < t->n_params; i++)
        memcpy(t->w + t->params[i].offset, src[i], (size_t)t->params[i].numel * sizeof(float));
    free(src);
}

dalle_status param_table_load(param_table *t, dalle_bundle *b)
{
    const float **src;
    dalle_status s = param_table_find_all(t, b, &src);
    if (!s)
        param_table_copy(t, src);
    return s;
}
