/*
 * libdalle training API: train a DALL·E transformer on the CPU on top of an
 * existing VAE, as DALLE-pytorch's train_dalle.py does (docs/training.md).
 *
 * Typical use:
 *
 *     dalle_train_params tp = dalle_train_default_params();
 *     tp.dim = 256; tp.depth = 4; tp.text_seq_len = 32; tp.batch = 8;
 *     dalle_token_data_params dp = dalle_token_data_default_params();
 *     dp.text_seq_len = tp.text_seq_len;
 *     dalle_token_data *data;
 *     dalle_trainer *t;
 *     if (dalle_token_data_folder("vae.dalle", NULL, "images/", &dp, &data) ||
 *         dalle_trainer_create("vae.dalle", NULL, &tp, &t)) {
 *         fprintf(stderr, "%s\n", dalle_last_error());
 *         return 1;
 *     }
 *     for (int i = 0; i < 1000; i++) {
 *         dalle_train_stats st = dalle_train_default_stats();
 *         if (dalle_trainer_step_data(t, data, &st)) break;
 *     }
 *     dalle_trainer_save(t, "model.dalle", 0);   // dalle_ctx_create loads it
 *
 * Conventions are those of dalle.h: dalle_status results, messages in
 * dalle_last_error(), *_params_init(ptr, sizeof) behind inline
 * *_default_params(), opaque handles used by one thread at a time. Every
 * result is the same for any n_threads: a seed gives the same weights, bit
 * for bit, whatever the thread count, and a run resumed from a checkpoint
 * continues with the same bits as one that never stopped.
 */
#ifndef DALLE_TRAIN_H
#define DALLE_TRAIN_H

#include "dalle/dalle.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Training data: (caption ids, image ids) pairs                            */
/* ------------------------------------------------------------------------ */

/* Training pairs held in memory as token ids: every caption tokenized and
 * every image encoded by the VAE once, when the set is made, so epochs
 * never encode again (unlike train_dalle.py, images are not randomly
 * cropped each epoch: the centre crop of dalle_read_image is encoded). */
typedef struct dalle_token_data dalle_token_data;

typedef struct dalle_token_data_params {
    size_t struct_size;
    int text_seq_len;     /* caption tokens per pair; must equal the trainer's
                             (default 256, as train_dalle.py) */
    int truncate;         /* non-zero: cut captions longer than text_seq_len
                             (train_dalle.py --truncate_captions); 0 (default):
                             such a caption is an error naming it */
    int strict;           /* folder: fail on unpaired or empty files instead
                             of skipping them (DALLE-pytorch skips); default 0 */
    int n_threads;        /* VAE encoding threads; 0 = the number of cores */
    /* The synthetic world (dalle_token_data_synthetic); defaults: the whole
     * vocabulary, one or two objects, sizes and positions */
    uint64_t world_seed;  /* which scenes: item i of this seed (default 0) */
    int world_colors;     /* the first n palette colours, 3..8 (default 8) */
    int world_shapes;     /* the first n shapes, 1..4 (default 4) */
    int world_max_objects; /* 1 or 2 (default 2) */
    int world_layouts;    /* 0: one large centred object; 1: sizes and
                             positions (default 1) */
    int world_heldout;    /* non-zero: the held-out split (colour, shape,
                             background combinations training never shows),
                             for evaluation; default 0: the training split */
    dalle_progress_fn progress; /* optional: done/total images encoded */
    dalle_abort_fn abort;       /* optional: polled between images */
    void *user;                 /* passed to progress and abort */
} dalle_token_data_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_token_data_params_init(dalle_token_data_params *params,
                                            size_t struct_size);

/* The default data parameters (inline: fills your header's struct). */
static inline dalle_token_data_params dalle_token_data_default_params(void)
{
    dalle_token_data_params p;
    dalle_token_data_params_init(&p, sizeof p);
    return p;
}

/* Pairs from a folder in DALLE-pytorch's layout: images (*.png, *.jpg,
 * *.jpeg, searched recursively, sorted by path) each with a same-named .txt
 * whose non-empty lines are its captions (a step uses one of them, drawn at
 * random as upstream). `vae`: a VAE bundle (or a dalle bundle, e.g. a
 * checkpoint) whose encoder turns the images into tokens; `tokenizer`: a
 * bundle holding the BPE merges or a merges .txt (NULL: the one in `vae`).
 * params may be NULL for the defaults. Errors: DALLE_ERR_IO (folder or
 * file), _FORMAT (strict, or an unreadable image: the message names the
 * file), _TOO_LONG (a caption longer than text_seq_len without truncate:
 * the message names the file and line), _NOT_FOUND (no pair), _ABORTED,
 * and those of dalle_ctx_create / dalle_tokenizer_create. */
DALLE_API dalle_status dalle_token_data_folder(const char *vae, const char *tokenizer,
                                               const char *dir,
                                               const dalle_token_data_params *params,
                                               dalle_token_data **out);

/* `count` (1 .. 2^24) items of the built-in synthetic world
 * (docs/synthetic-world.md: coloured shapes with captions such as "a red
 * circle above a blue square"), rendered at the VAE's image size (16 ..
 * 1024 pixels), one caption each. Items are world_seed's 0 .. count - 1:
 * the same on every machine. Arguments and errors as
 * dalle_token_data_folder. */
DALLE_API dalle_status dalle_token_data_synthetic(const char *vae, const char *tokenizer,
                                                  int64_t count,
                                                  const dalle_token_data_params *params,
                                                  dalle_token_data **out);

/* Release a data set (NULL is ignored). */
DALLE_API void dalle_token_data_free(dalle_token_data *data);

/* Number of pairs (images; an image with several captions counts once). */
DALLE_API int64_t dalle_token_data_count(const dalle_token_data *data);
/* Files a folder set passed over (unpaired images or captions, empty
 * caption files); 0 for a synthetic set. */
DALLE_API int64_t dalle_token_data_skipped(const dalle_token_data *data);
/* Caption tokens per pair, image tokens per pair, and the largest caption
 * id of any caption (a model needs num_text_tokens above it); 0 for NULL. */
DALLE_API int dalle_token_data_text_seq_len(const dalle_token_data *data);
DALLE_API int dalle_token_data_image_seq_len(const dalle_token_data *data);
DALLE_API int dalle_token_data_max_text_id(const dalle_token_data *data);

/* The pairs of training step `step` (0-based) for `seed` and `batch`: as a
 * DataLoader with shuffle=True, drop_last=True, each epoch is a fresh
 * permutation of the items (drawn from seed and the epoch number) cut into
 * count / batch batches, and each item's caption is drawn among its
 * captions anew each epoch. A pure function of its arguments, so a resumed
 * run draws what the uninterrupted one would have. text: [batch]
 * [text_seq_len], image: [batch][image_seq_len]. batch: 1 .. count. */
DALLE_API dalle_status dalle_token_data_batch(dalle_token_data *data, uint64_t seed,
                                              int64_t step, int batch, int32_t *text,
                                              int32_t *image);

/* ------------------------------------------------------------------------ */
/* Training the DALL·E transformer                                           */
/* ------------------------------------------------------------------------ */

/* A DALL·E transformer being trained, with its optimiser, the VAE it was
 * built on and the tokenizer (both copied into every bundle it saves). */
typedef struct dalle_trainer dalle_trainer;

/* Learning-rate schedules. */
typedef enum dalle_lr_schedule {
    DALLE_LR_CONSTANT = 0, /* lr after the warm-up (train_dalle.py without --lr_decay) */
    DALLE_LR_COSINE = 1,   /* lr → min_lr along half a cosine from warmup_steps
                              to total_steps, then min_lr */
    DALLE_LR_PLATEAU = 2   /* ReduceLROnPlateau(factor, patience, cooldown,
                              min_lr) fed once per epoch (train_dalle.py
                              --lr_decay) */
} dalle_lr_schedule;

typedef struct dalle_train_params {
    size_t struct_size;
    /* The model (a fresh one; a resumed trainer has the checkpoint's).
     * Defaults: train_dalle.py's. */
    int dim;                /* model width (512) */
    int depth;              /* layers (2) */
    int heads;              /* attention heads (8) */
    int dim_head;           /* width of a head (64) */
    int text_seq_len;       /* caption tokens (256) */
    int num_text_tokens;    /* text vocabulary; 0 (default): the tokenizer's
                               vocabulary size, as train_dalle.py */
    int shift_tokens;       /* token shift (1, DALLE's default) */
    int rotary_emb;         /* rotary positions (1, DALLE's default); 0:
                               learned positions */
    const char *attn_types; /* comma-separated, cycled over the layers:
                               full, axial_row, axial_col, conv_like; NULL
                               (default) is "full" */
    double loss_img_weight; /* image loss weight (7) */
    /* Optimisation */
    uint64_t seed;          /* weight initialisation and data order (0) */
    int batch;              /* sequences per step, at most (4) */
    int n_threads;          /* worker threads; 0 (default) = the cores */
    double lr;              /* learning rate (3e-4) */
    dalle_lr_schedule lr_schedule; /* DALLE_LR_CONSTANT */
    double min_lr;          /* cosine end / plateau floor (1e-6) */
    int64_t warmup_steps;   /* linear warm-up: step s < warmup_steps uses
                               lr · (s + 1) / warmup_steps (0) */
    int64_t total_steps;    /* cosine: the step where it reaches min_lr (0) */
    double plateau_factor;  /* plateau: lr *= factor (0.5) ... */
    int plateau_patience;   /* ... after this many epochs without a new best (10) */
    int plateau_cooldown;   /* epochs to wait after a reduction (10) */
    double beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8) */
    double weight_decay;    /* decoupled (AdamW) on the Linear weights; 0 */
    double clip_grad_norm;  /* the gradients' global 2-norm is clipped to
                               this (0.5); <= 0: no clipping */
} dalle_train_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_train_params_init(dalle_train_params *params, size_t struct_size);

/* The default training parameters (inline: fills your header's struct). */
static inline dalle_train_params dalle_train_default_params(void)
{
    dalle_train_params p;
    dalle_train_params_init(&p, sizeof p);
    return p;
}

/* What a step (or an evaluation) measured. */
typedef struct dalle_train_stats {
    size_t struct_size;
    int64_t step;           /* steps taken, this one included */
    int64_t epoch;          /* dalle_trainer_step_data: the epoch of this step */
    double loss;            /* (loss_text + loss_img_weight · loss_img) /
                               (1 + loss_img_weight), as DALLE.forward */
    double loss_text, loss_img; /* the cross-entropies */
    double grad_norm;       /* the gradients' 2-norm before clipping */
    double lr;              /* the learning rate the step used */
    int64_t tokens;         /* tokens in the batch: batch · (text + image) */
    int skipped;            /* non-zero: the loss or the gradients were not
                               finite and the weights were left unchanged */
} dalle_train_stats;

/* Zeroes into a struct of `struct_size` bytes (struct_size set). */
DALLE_API void dalle_train_stats_init(dalle_train_stats *stats, size_t struct_size);

/* A zeroed stats struct with its size set (inline: fills your header's struct). */
static inline dalle_train_stats dalle_train_default_stats(void)
{
    dalle_train_stats s;
    dalle_train_stats_init(&s, sizeof s);
    return s;
}

/* A fresh model initialised as upstream does (from params->seed) on top of
 * the VAE in `vae_bundle` (any VAE kind; or a dalle bundle, whose VAE is
 * taken): the VAE defines image_size, image_seq_len and num_image_tokens.
 * `tokenizer`: a bundle holding the BPE merges or a merges .txt (NULL: the
 * VAE bundle's, if it has one); its vocabulary size is num_text_tokens
 * unless params set it. Without any tokenizer params->num_text_tokens must
 * be set (the saved bundle then has no tokenizer). params may be NULL.
 * Errors: DALLE_ERR_INVALID_ARGUMENT (a parameter out of range: the message
 * names it), _UNSUPPORTED (an attention type this trainer lacks, e.g.
 * sparse), and those of dalle_ctx_create / dalle_tokenizer_create. */
DALLE_API dalle_status dalle_trainer_create(const char *vae_bundle, const char *tokenizer,
                                            const dalle_train_params *params,
                                            dalle_trainer **out);

/* Continue from a bundle dalle_trainer_save wrote. With the optimiser
 * (with_optimizer): the weights, Adam's moments, the schedule, the step
 * counter and the settings are the checkpoint's, so the run continues bit
 * for bit as if it had not stopped; of params (may be NULL) only n_threads
 * is used. Without (or any "dalle" bundle this trainer supports): the
 * weights are loaded and a new optimiser starts at step 0 with params'
 * settings (fine-tuning). The VAE and tokenizer are the checkpoint's.
 * Errors as dalle_trainer_create, and DALLE_ERR_MISMATCH (a tensor or
 * setting missing or mis-shaped: the message names it). */
DALLE_API dalle_status dalle_trainer_resume(const char *checkpoint,
                                            const dalle_train_params *params,
                                            dalle_trainer **out);

/* Release a trainer (NULL is ignored). */
DALLE_API void dalle_trainer_free(dalle_trainer *t);

/* One optimiser step as train_dalle.py takes it: DALLE.forward(text, image,
 * return_loss=True), backward, clip_grad_norm, Adam(W) at the schedule's
 * learning rate. text: [batch][text_seq_len] caption ids (0 = padding, as
 * dalle_tokenize writes them; ids below num_text_tokens), image:
 * [batch][image_seq_len] ids below num_image_tokens; batch 1 .. params
 * batch. stats may be NULL. A non-finite loss or gradient norm skips the
 * update (stats->skipped) but counts the step. */
DALLE_API dalle_status dalle_trainer_step(dalle_trainer *t, const int32_t *text,
                                          const int32_t *image, int batch,
                                          dalle_train_stats *stats);

/* The step dalle_token_data_batch draws for this trainer (its seed, its
 * step counter and batch): the usual training loop. At the last step of an
 * epoch the epoch's mean loss feeds the plateau schedule (upstream feeds
 * the last batch's). The data's text_seq_len and image_seq_len must be the
 * model's (DALLE_ERR_MISMATCH). */
DALLE_API dalle_status dalle_trainer_step_data(dalle_trainer *t, dalle_token_data *data,
                                               dalle_train_stats *stats);

/* The loss of `batch` (any number ≥ 1) pairs without training: stats'
 * loss, loss_text and loss_img (means over the pairs); the weights and the
 * optimiser are untouched. */
DALLE_API dalle_status dalle_trainer_eval(dalle_trainer *t, const int32_t *text,
                                          const int32_t *image, int batch,
                                          dalle_train_stats *stats);

/* Feed an epoch's loss to the plateau schedule (ReduceLROnPlateau.step);
 * other schedules ignore it. dalle_trainer_step_data calls it itself. */
DALLE_API dalle_status dalle_trainer_epoch_end(dalle_trainer *t, double loss);

/* Write the model as a bundle of kind "dalle": the transformer (dalle.*),
 * the VAE's metadata and tensors (vae.*) and the tokenizer, so that
 * dalle_ctx_create loads it and generates at once; with_optimizer non-zero
 * adds Adam's state, the schedule and the step counter (train.*) for
 * dalle_trainer_resume. Written atomically (a temporary file renamed). */
DALLE_API dalle_status dalle_trainer_save(dalle_trainer *t, const char *path,
                                          int with_optimizer);

/* Steps taken (skipped ones included); 0 for NULL. */
DALLE_API int64_t dalle_trainer_steps(const dalle_trainer *t);
/* Trainable weights (floats); 0 for NULL. */
DALLE_API int64_t dalle_trainer_num_params(const dalle_trainer *t);
/* The settings in force: the model shape (num_text_tokens resolved) and
 * the optimisation, copied into *params (struct_size as the caller's;
 * attn_types points into the trainer). */
DALLE_API dalle_status dalle_trainer_get_params(const dalle_trainer *t,
                                                dalle_train_params *params);
/* The learning rate the next step will use; 0 for NULL. */
DALLE_API double dalle_trainer_lr(const dalle_trainer *t);
/* Teacher-forced logits of the last step or evaluation chunk, laid out as
 * dalle_logits for a complete image: [batch][text_seq_len + image_seq_len]
 * [total_tokens] floats into out (cap floats); batch is that of the last
 * forward (at most params batch). DALLE_ERR_INVALID_ARGUMENT before any
 * forward or for a cap too small. */
DALLE_API dalle_status dalle_trainer_logits(const dalle_trainer *t, float *out, size_t cap,
                                            int *batch);

/* ------------------------------------------------------------------------ */
/* Training the VAE                                                          */
/* ------------------------------------------------------------------------ */

/* (Reserved: the dalle_vae_trainer_* API of train_vae.py goes here.) */

#ifdef __cplusplus
}
#endif

#endif /* DALLE_TRAIN_H */
