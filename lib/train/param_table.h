/* The trainable weights of a model (issue 7): named float tensors laid out
 * back to back in ONE vector w, their gradients in g and the weight-decay
 * mask beside them. What the three trainable models (tf_train.h,
 * clip_train.h, vae_train.h) share:
 *
 *   - registration: each tensor under its state-dict name and shape, with
 *     its upstream initialisation and, optionally, the pointers into w and g
 *     to fill in once the vector exists;
 *   - initialisation from a seed with counter-based draws (lib/rng.h):
 *     tensor `index`, element i, so the same seed gives the same weights
 *     whatever else changes;
 *   - zeroing the gradients, global-norm clipping and the AdamW step
 *     (adamw.h sees one flat vector), skipped when not finite;
 *   - every tensor written to a bundle, and read back from one (every tensor
 *     checked first: a failure changes nothing).
 */
#ifndef DALLE_TRAIN_PARAM_TABLE_H
#define DALLE_TRAIN_PARAM_TABLE_H

#include <stdint.h>

#include "../error.h"
#include "adamw.h"
#include "dalle/dalle.h"

typedef enum param_init {
    PARAM_INIT_UNIFORM_FAN_IN, /* U(±1/√fan_in): nn.Linear's and nn.Conv2d's weight and bias */
    PARAM_INIT_NORMAL,         /* N(0, 1): nn.Embedding, upstream's randn parameters */
    PARAM_INIT_CONST           /* a constant: LayerNorm 1 / 0, LayerScale, temperature */
} param_init;

/* One named weight tensor: w + offset, numel floats. */
typedef struct train_param {
    char name[128];
    int ndim;
    int64_t dims[4];
    int64_t offset, numel;
    int decay;          /* a Linear weight: weight decay applies */
    param_init init;
    double init_value;  /* PARAM_INIT_CONST: the value; _UNIFORM_FAN_IN: the fan-in */
    float **wslot, **gslot; /* when not NULL: set to w + offset, g + offset */
} train_param;

typedef struct param_table {
    int n_params, cap;
    train_param *params;
    int64_t n_weights;
    float *w, *g;       /* weights, gradients [n_weights] */
    uint8_t *decay;     /* [n_weights]: 1 where weight decay applies */
    int oom;            /* registration ran out of memory (param_table_alloc says so) */
} param_table;

/* Register the next tensor, dims[0 .. ndim) (ndim 0: a scalar), named by
 * fmt. Its place in w is fixed here; its memory comes with
 * param_table_alloc. */
void param_table_add(param_table *t, float **wslot, float **gslot, param_init init, double value,
                     int decay, int ndim, const int64_t *dims, const char *fmt, ...)
    DALLE_PRINTF(9, 10);

/* After registration: w (initialised from seed), g (zero) and the decay
 * mask; every registered slot pointed at its tensor. `what` names the model
 * in the out-of-memory message. */
dalle_status param_table_alloc(param_table *t, uint64_t seed, const char *what);
void param_table_free(param_table *t);

/* The tensor `name`, or NULL. */
const train_param *param_table_find(const param_table *t, const char *name);
void param_table_zero_grad(param_table *t);

/* After a backward: clip_grad_norm(max_norm) (its norm in *grad_norm), then
 * AdamW at lr — with the decay mask when with_decay — unless the loss or
 * the norm is not finite (torch would carry a NaN into every weight).
 * Returns non-zero when the update was skipped. */
int param_table_adamw_step(param_table *t, adamw *opt, int with_decay, double loss,
                           double max_norm, double lr, double *grad_norm);

/* Every tensor, f32, under its name, into w. */
dalle_status param_table_write(const param_table *t, dalle_bundle_writer *w);

/* Find every tensor of the table in b with its shape (DALLE_ERR_MISMATCH
 * names a missing or mis-shaped one): *src (malloc'd, n_params pointers
 * into the bundle) on success; nothing of the table changes. */
dalle_status param_table_find_all(const param_table *t, dalle_bundle *b, const float ***src);
/* Copy what param_table_find_all found into w and free src. */
void param_table_copy(param_table *t, const float **src);
/* Both: every weight from b, or nothing. */
dalle_status param_table_load(param_table *t, dalle_bundle *b);

#endif
