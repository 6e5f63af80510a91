/* The optimizer side of training: AdamW, global gradient-norm clipping and
 * the learning-rate schedule, with state that is saved into a bundle and
 * restored bit-exactly (a resumed run continues with the same bits as an
 * uninterrupted one).
 *
 * All parameters of a model are ONE flat float vector (param_table.h lays a
 * model's named tensors out back to back), so the optimizer never needs to know
 * the tensors: AdamW's moments are two more vectors of the same length.
 *
 * Upstream (DALLE-pytorch train_dalle.py): Adam(lr=3e-4) with no weight
 * decay, which is AdamW with weight_decay = 0; clip_grad_norm_(params, 0.5)
 * before every step; ReduceLROnPlateau(mode="min", factor=0.5,
 * patience=10, cooldown=10, min_lr=1e-6) stepped once per epoch with the
 * epoch's (last) loss.
 */
#ifndef DALLE_TRAIN_ADAMW_H
#define DALLE_TRAIN_ADAMW_H

#include <stdint.h>

#include "dalle/dalle.h"

/* ---- AdamW (torch.optim.AdamW, single-tensor CPU path) ------------------- */

typedef struct adamw_config {
    double beta1, beta2, eps; /* 0.9, 0.999, 1e-8 */
    double weight_decay;      /* decoupled: p *= 1 - lr·wd before the Adam step */
} adamw_config;

/* betas (0.9, 0.999), eps 1e-8 as torch; weight_decay 0, i.e. the Adam of
 * train_dalle.py (torch.optim.AdamW's own default would be 0.01). */
adamw_config adamw_default_config(void);

typedef struct adamw {
    adamw_config cfg;
    int64_t n;    /* parameters */
    int64_t step; /* steps taken (torch's state['step']) */
    float *m, *v; /* exp_avg, exp_avg_sq [n], owned */
} adamw;

/* Zero moments, step 0. DALLE_ERR_OUT_OF_MEMORY / _INVALID_ARGUMENT. */
dalle_status adamw_init(adamw *o, int64_t n, const adamw_config *cfg);
void adamw_free(adamw *o);

/* One step at learning rate lr on params[0 .. n) with gradients grads.
 * decay (may be NULL = every parameter decays) marks with non-zero the
 * parameters weight decay applies to (usual practice exempts biases,
 * norms and LayerScale; torch applies it to whatever is in the group). */
void adamw_step(adamw *o, float *params, const float *grads, const uint8_t *decay, double lr);

/* ---- clip_grad_norm_ -------------------------------------------------------- */

/* torch.nn.utils.clip_grad_norm_(max_norm, norm_type=2): the 2-norm of all
 * gradients together; when it exceeds max_norm, every gradient is
 * multiplied by max_norm / (norm + 1e-6). Returns the norm before clipping.
 * The sum of squares is accumulated in double in index order (torch: a
 * float norm per tensor, then the norm of those), so it can differ from
 * torch's in the last bits. A non-finite norm leaves the gradients as they
 * are (torch would multiply them by NaN): the caller sees it returned and
 * should skip the step. max_norm <= 0: only measure. */
double clip_grad_norm(float *grads, int64_t n, double max_norm);

/* ---- learning-rate schedule ---------------------------------------------------- */

typedef enum lr_kind {
    LR_CONSTANT = 0, /* base_lr (after the warm-up) */
    LR_COSINE = 1,   /* base_lr → min_lr along half a cosine over
                        [warmup_steps, total_steps), then min_lr */
    LR_PLATEAU = 2   /* torch ReduceLROnPlateau (mode min, threshold_mode rel),
                        fed by lr_schedule_observe */
} lr_kind;

typedef struct lr_schedule {
    lr_kind kind;
    double base_lr, min_lr;
    int64_t warmup_steps; /* linear warm-up: step s < warmup uses base·(s+1)/warmup */
    int64_t total_steps;  /* LR_COSINE */
    double factor, threshold; /* LR_PLATEAU: 0.5, 1e-4 */
    int64_t patience, cooldown; /* LR_PLATEAU: 10, 10 (train_dalle.py) */
    /* LR_PLATEAU state */
    double plateau_lr, best;
    int64_t num_bad, cooldown_counter, observed;
} lr_schedule;

/* train_dalle.py's defaults: plateau schedule from 3e-4, min 1e-6, no warm-up. */
lr_schedule lr_schedule_default(void);
/* The learning rate of step `step` (0-based). */
double lr_schedule_at(const lr_schedule *s, int64_t step);
/* LR_PLATEAU: report a metric (train_dalle.py: the loss, once per epoch).
 * Other kinds ignore it. */
void lr_schedule_observe(lr_schedule *s, double metric);

/* ---- checkpoints -------------------------------------------------------------- */

/* Store the optimizer and schedule under `prefix` (e.g. "train."): tensors
 * <prefix>adam.exp_avg / exp_avg_sq (f32 [n]), metadata <prefix>adam.* and
 * <prefix>lr.* (i64 / f64, which hold doubles exactly). */
dalle_status adamw_save(const adamw *o, const lr_schedule *s, dalle_bundle_writer *w,
                        const char *prefix);
/* Restore what adamw_save wrote into an adamw of the same n (initialised by
 * adamw_init) and a schedule. DALLE_ERR_MISMATCH names a missing or
 * mis-shaped entry; nothing is changed then. */
dalle_status adamw_load(adamw *o, lr_schedule *s, dalle_bundle *b, const char *prefix);

#endif
