/* What the public trainers (trainer.c: dalle_trainer_*, clip_trainer.c:
 * dalle_clip_trainer_*, vae_trainer.c: dalle_vae_trainer_*) share:
 *
 *   - the optimiser settings that dalle_train_params and
 *     dalle_clip_train_params both carry under the same names (seed ..
 *     clip_grad_norm): their defaults, their checks, the AdamW and schedule
 *     they make, and reading them back from a loaded optimiser;
 *   - the optimiser's state (AdamW, the schedule, the step counter, the
 *     epoch's mean loss for the plateau schedule): one update, the epoch
 *     bookkeeping of step_data, and the train.* entries of a checkpoint;
 *   - the versioned stats / params structs (struct_size first) and the
 *     bundles they save (general.source, the tokenizer's merges).
 */
#ifndef DALLE_TRAIN_TRAINER_COMMON_H
#define DALLE_TRAIN_TRAINER_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "adamw.h"
#include "dalle/train.h"
#include "param_table.h"

/* ---- optimiser settings ----------------------------------------------------- */

typedef struct train_optim_params {
    uint64_t seed;      /* weight initialisation and data order */
    int batch, n_threads;
    double lr;
    dalle_lr_schedule lr_schedule;
    double min_lr;
    int64_t warmup_steps, total_steps;
    double plateau_factor;
    int plateau_patience, plateau_cooldown;
    double beta1, beta2, eps, weight_decay;
    double clip_grad_norm;
} train_optim_params;

/* Copy those fields between structs that have them all (dalle_train_params,
 * dalle_clip_train_params, train_optim_params). */
#define TRAIN_OPTIM_COPY(dst, src)                                                          \
    do {                                                                                    \
        (dst)->seed = (src)->seed;                                                          \
        (dst)->batch = (src)->batch;                                                        \
        (dst)->n_threads = (src)->n_threads;                                                \
        (dst)->lr = (src)->lr;                                                              \
        (dst)->lr_schedule = (src)->lr_schedule;                                            \
        (dst)->min_lr = (src)->min_lr;                                                      \
        (dst)->warmup_steps = (src)->warmup_steps;                                          \
        (dst)->total_steps = (src)->total_steps;                                            \
        (dst)->plateau_factor = (src)->plateau_factor;                                      \
        (dst)->plateau_patience = (src)->plateau_patience;                                  \
        (dst)->plateau_cooldown = (src)->plateau_cooldown;                                  \
        (dst)->beta1 = (src)->beta1;                                                        \
        (dst)->beta2 = (src)->beta2;                                                        \
        (dst)->eps = (src)->eps;                                                            \
        (dst)->weight_decay = (src)->weight_decay;                                          \
        (dst)->clip_grad_norm = (src)->clip_grad_norm;                                      \
    } while (0)

/* train_dalle.py's optimiser (Adam 3e-4, clipping 0.5; the schedules'
 * settings as ReduceLROnPlateau's) with `batch`. */
train_optim_params train_optim_defaults(int batch);

/* Every setting in range: DALLE_ERR_INVALID_ARGUMENT naming `what`.field. */
dalle_status train_optim_check(const train_optim_params *p, const char *what);

/* ---- optimiser state ------------------------------------------------------------- */

typedef struct train_optim {
    adamw opt;
    lr_schedule sched;
    int64_t step;       /* steps taken, skipped ones included */
    double epoch_loss;  /* step_data: sum and count of this epoch's losses */
    int64_t epoch_n;
} train_optim;

/* A fresh AdamW for n_weights and the schedule of p; step and the epoch's
 * loss are left as they are (a resumed trainer has read them already). */
dalle_status train_optim_init(train_optim *o, int64_t n_weights, const train_optim_params *p);
void train_optim_free(train_optim *o);

/* The learning rate of the next step. */
double train_optim_lr(const train_optim *o);

/* After a backward into pt->g: clip to max_norm, AdamW at train_optim_lr
 * with pt's decay mask unless not finite, count the step. Returns non-zero
 * when the update was skipped; the norm before clipping in *grad_norm. */
int train_optim_update(train_optim *o, param_table *pt, double loss, double max_norm,
                       double *grad_norm);

/* step_data after step `step` (0-based) of epochs of spe steps with this
 * loss: the epoch's mean loss feeds the plateau schedule at each epoch's
 * end. Returns the step's epoch. */
int64_t train_optim_epoch(train_optim *o, int64_t step, int64_t spe, double loss, int skipped);

/* ---- checkpoints ------------------------------------------------------------------- */

/* Extra integer entries a trainer keeps beside the common ones. */
typedef struct train_state_extra {
    const char *key;    /* e.g. "train.clip.truncate" */
    int64_t value;
} train_state_extra;

/* Whether b holds an optimiser state (train.adam.*). */
int train_optim_in_bundle(dalle_bundle *b);

/* train.step, .seed, .batch, .epoch_n, the extras, .clip_grad_norm,
 * .epoch_loss, then AdamW and the schedule (adamw_save, "train."). */
dalle_status train_optim_save(const train_optim *o, const train_optim_params *p,
                              const train_state_extra *extra, int n_extra,
                              dalle_bundle_writer *w);

/* What train_optim_save wrote before AdamW: the step, the epoch's loss and,
 * into p, seed, batch and clip_grad_norm; the extras' values.
 * DALLE_ERR_MISMATCH when an entry is missing or invalid. */
dalle_status train_optim_read_state(train_optim *o, train_optim_params *p, dalle_bundle *b,
                                    train_state_extra *extra, int n_extra);

/* AdamW and the schedule from b (into an initialised o), and the settings
 * they hold back into p. */
dalle_status train_optim_load(train_optim *o, train_optim_params *p, dalle_bundle *b);

/* ---- versioned structs and saved bundles ------------------------------------------------ */

/* A caller's stats struct (struct_size first; NULL is fine) must be at
 * least ours: else DALLE_ERR_INVALID_ARGUMENT naming fn and init_fn. */
dalle_status train_check_stats(const void *stats, size_t ours, const char *fn,
                               const char *init_fn);
/* Our stats into the caller's (checked) struct, its struct_size kept. */
void train_put_stats(void *dst, const void *src, size_t ours);
/* Our params into the caller's struct of its own struct_size (the
 * *_get_params functions). have_trainer: the trainer was not NULL. */
dalle_status train_get_params(int have_trainer, void *params, const void *ours, size_t size,
                              const char *fn, const char *init_fn);

/* The last error again, as "<where>: <message>" (a library call failed
 * inside fn, or a bundle's settings failed a check); returns s. */
dalle_status train_fail_in(const char *where, dalle_status s);

/* A bundle writer of `kind` whose general.source says "libdalle VERSION
 * who, step N". */
dalle_status train_writer_create(const char *kind, const char *who, int64_t step,
                                 dalle_bundle_writer **w);
/* The tokenizer (tokenizer.kind clip_bpe, tokenizer.bpe_merges); nothing
 * when merges is NULL. */
dalle_status train_write_merges(dalle_bundle_writer *w, const uint8_t *merges, size_t size);
/* Write the bundle to path unless s is already an error; free w. */
dalle_status train_writer_finish(dalle_bundle_writer *w, dalle_status s, const char *path);

#endif
