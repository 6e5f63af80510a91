/*
 * libdalle training API: train a DALL·E transformer on the CPU on top of an
 * existing VAE, as DALLE-pytorch's train_dalle.py does (docs/training.md),
 * and the VAE and CLIP beside it. The last sections hold the tools around
 * training that `dalle train-bpe` and `dalle judge` are made of: the
 * built-in synthetic world of captioned pictures (dalle_synth_*), its judge,
 * which reads a picture back and says whether it shows what its caption
 * says, and the learner of a small BPE vocabulary (dalle_bpe_*); see
 * docs/synthetic-world.md.
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
    /* Appended later (a caller built against an older header passes a
     * smaller struct_size and gets these defaults). */
    double null_cond_prob;  /* classifier-free guidance training, as
                               DALLE.forward(null_cond_prob=p): each pair's
                               caption is replaced, with probability p, by
                               the empty caption (all padding), in the input
                               and in the text labels alike; drawn per pair
                               from (seed, step, pair). 0..1 (0) */
    double attn_dropout;    /* DALLE's attn_dropout: dropout after each
                               attention's output projection (0); 0..<1 */
    double ff_dropout;      /* DALLE's ff_dropout: dropout after each
                               feed-forward's GEGLU (0); 0..<1. Both only in
                               training steps, masks drawn from (seed, step,
                               layer, element) */
    int stable;             /* DALLE's stable (train_dalle.py
                               --stable_softmax): the embeddings' gradient
                               scaled by 0.1, DivideMax before to_logits (0) */
    int sandwich_norm;      /* DALLE's sandwich_norm: a LayerNorm on every
                               attention and feed-forward output (0) */
    const char *shared_attn_ids; /* DALLE's shared_attn_ids: comma-separated
                               ids cycled over the layers; layers with equal
                               ids share one attention (they must have the
                               same attention type). NULL (default): none */
    const char *shared_ff_ids; /* the same for the feed-forwards (NULL) */
    int reversible;         /* DALLE's reversible: the layers as upstream's
                               ReversibleSequence (two streams, averaged at
                               the end), trained with that function's exact
                               gradient (0) */
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
 * attn_types, shared_attn_ids and shared_ff_ids point into the trainer). */
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
/* Training data: captioned images as pixels (CLIP and the VAE)             */
/* ------------------------------------------------------------------------ */

/* Images held in memory at one size, with their captions as text: what
 * the CLIP and VAE trainers read. Pixels are kept as 8 bits per channel
 * (what a PNG of them holds; a quarter of the memory of floats) and turned
 * into floats in [0, 1] per batch. Images are centre-cropped once, when
 * the set is made (train_vae.py's Resize + CenterCrop). */
typedef struct dalle_image_data dalle_image_data;

typedef struct dalle_image_data_params {
    size_t struct_size;
    int image_size;       /* pixels per side, 16..1024 (default 128, as
                             train_vae.py); must be the trainer's */
    int strict;           /* folder: fail on unpaired or empty files instead
                             of skipping them; default 0 */
    /* The synthetic world, as dalle_token_data_params (defaults: the whole
     * vocabulary, one or two objects, sizes and positions) */
    uint64_t world_seed;  /* which scenes: item i of this seed (default 0) */
    int world_colors;     /* the first n palette colours, 3..8 (default 8) */
    int world_shapes;     /* the first n shapes, 1..4 (default 4) */
    int world_max_objects; /* 1 or 2 (default 2) */
    int world_layouts;    /* 0: one large centred object; 1: sizes and
                             positions (default 1) */
    int world_heldout;    /* non-zero: the held-out split; default 0 */
    dalle_progress_fn progress; /* optional: done/total images read */
    dalle_abort_fn abort;       /* optional: polled between images */
    void *user;                 /* passed to progress and abort */
} dalle_image_data_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_image_data_params_init(dalle_image_data_params *params,
                                            size_t struct_size);

/* The default image data parameters (inline: fills your header's struct). */
static inline dalle_image_data_params dalle_image_data_default_params(void)
{
    dalle_image_data_params p;
    dalle_image_data_params_init(&p, sizeof p);
    return p;
}

/* The images of a folder in DALLE-pytorch's layout (as
 * dalle_token_data_folder: *.png / *.jpg / *.jpeg searched recursively,
 * sorted by path, each with a same-named .txt of captions, one per
 * non-empty line; at most 64 captions an image are kept), read at
 * params->image_size. params may be NULL. Errors: DALLE_ERR_IO,
 * _FORMAT (strict, or an unreadable image: the message names the file),
 * _NOT_FOUND (no pair), _INVALID_ARGUMENT, _ABORTED, _OUT_OF_MEMORY. */
DALLE_API dalle_status dalle_image_data_folder(const char *dir,
                                               const dalle_image_data_params *params,
                                               dalle_image_data **out);

/* `count` (1 .. 2^24) items of the built-in synthetic world
 * (docs/synthetic-world.md), world_seed's items 0 .. count - 1, with one
 * caption each. Errors as dalle_image_data_folder. */
DALLE_API dalle_status dalle_image_data_synthetic(int64_t count,
                                                  const dalle_image_data_params *params,
                                                  dalle_image_data **out);

/* Release an image set (NULL is ignored). */
DALLE_API void dalle_image_data_free(dalle_image_data *data);

/* Number of images; 0 for NULL. */
DALLE_API int64_t dalle_image_data_count(const dalle_image_data *data);
/* Files a folder set passed over; 0 for a synthetic set or NULL. */
DALLE_API int64_t dalle_image_data_skipped(const dalle_image_data *data);
/* Pixels per side of every image; 0 for NULL. */
DALLE_API int dalle_image_data_image_size(const dalle_image_data *data);
/* Captions of image i (0 out of range), and caption k of image i (NULL out
 * of range; owned by the set). */
DALLE_API int dalle_image_data_caption_count(const dalle_image_data *data, int64_t i);
DALLE_API const char *dalle_image_data_caption(const dalle_image_data *data, int64_t i, int k);

/* The images (and captions) of training step `step` for `seed` and
 * `batch`, drawn as dalle_token_data_batch draws its pairs: each epoch a
 * fresh permutation (from seed and the epoch number) cut into count /
 * batch batches (drop_last), each image's caption drawn anew each epoch; a
 * pure function of its arguments, so a resumed run sees what the
 * uninterrupted one would have. pixels: [batch][3][size][size] in [0, 1];
 * captions (may be NULL): [batch] pointers into the set; indices (may be
 * NULL): [batch] the images' numbers. batch: 1 .. count. */
DALLE_API dalle_status dalle_image_data_batch(dalle_image_data *data, uint64_t seed,
                                              int64_t step, int batch, float *pixels,
                                              const char **captions, int64_t *indices);

/* ------------------------------------------------------------------------ */
/* Training CLIP                                                             */
/* ------------------------------------------------------------------------ */

/* A DALLE-pytorch CLIP being trained (the reranker of generated images),
 * with its optimiser and the tokenizer its captions go through (copied into
 * every bundle it saves, so the bundle tokenizes its own captions). */
typedef struct dalle_clip_trainer dalle_clip_trainer;

typedef struct dalle_clip_train_params {
    size_t struct_size;
    /* The model: CLIP's keyword arguments (a fresh one; a resumed trainer
     * has the checkpoint's). Defaults: upstream CLIP()'s, a large model;
     * set the sizes you want. dim_head is 64 as upstream. */
    int dim_text, dim_image, dim_latent; /* widths (512, 512, 512) */
    int text_enc_depth, visual_enc_depth; /* layers of each tower (6, 6) */
    int text_heads, visual_heads;        /* attention heads (8, 8) */
    int text_seq_len;       /* caption tokens (256) */
    int num_text_tokens;    /* text vocabulary; 0 (default): the tokenizer's */
    int visual_image_size;  /* pixels per side (256) */
    int visual_patch_size;  /* a divisor of visual_image_size (32) */
    /* Captions (dalle_clip_trainer_step_data) */
    int truncate;           /* non-zero: cut captions longer than text_seq_len;
                               0 (default): such a caption is an error */
    int mask_padding;       /* non-zero: text_mask = text != 0 (padding is
                               neither attended to nor averaged); 0 (default):
                               text_mask=None, as clip_score and DALLE-pytorch's
                               reranking compute scores */
    /* Optimisation (as dalle_train_params) */
    uint64_t seed;          /* weight initialisation and data order (0) */
    int batch;              /* pairs per step, at most (8; the contrastive
                               loss needs >= 2) */
    int n_threads;          /* worker threads; 0 (default) = the cores */
    double lr;              /* learning rate (3e-4) */
    dalle_lr_schedule lr_schedule; /* DALLE_LR_CONSTANT */
    double min_lr;          /* cosine end / plateau floor (1e-6) */
    int64_t warmup_steps;   /* linear warm-up steps (0) */
    int64_t total_steps;    /* cosine: the step where it reaches min_lr (0) */
    double plateau_factor;  /* plateau: lr *= factor (0.5) ... */
    int plateau_patience;   /* ... after this many epochs without a new best (10) */
    int plateau_cooldown;   /* epochs to wait after a reduction (10) */
    double beta1, beta2, eps; /* Adam (0.9, 0.999, 1e-8) */
    double weight_decay;    /* decoupled (AdamW) on the Linear weights (0) */
    double clip_grad_norm;  /* global 2-norm clipping (0.5); <= 0: none */
} dalle_clip_train_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_clip_train_params_init(dalle_clip_train_params *params,
                                            size_t struct_size);

/* The default CLIP training parameters (inline: fills your header's struct). */
static inline dalle_clip_train_params dalle_clip_train_default_params(void)
{
    dalle_clip_train_params p;
    dalle_clip_train_params_init(&p, sizeof p);
    return p;
}

/* What a CLIP step (or evaluation) measured. */
typedef struct dalle_clip_train_stats {
    size_t struct_size;
    int64_t step;           /* steps taken, this one included */
    int64_t epoch;          /* dalle_clip_trainer_step_data: this step's epoch */
    double loss;            /* (CE(sim) + CE(simᵀ)) / 2, CLIP(return_loss=True) */
    double accuracy;        /* fraction of the 2·batch rows of sim and simᵀ
                               whose largest entry is their own pair's */
    double scale;           /* exp(temperature) the step used */
    double grad_norm;       /* the gradients' 2-norm before clipping */
    double lr;              /* the learning rate the step used */
    int skipped;            /* non-zero: not finite, weights left unchanged */
} dalle_clip_train_stats;

/* Zeroes into a struct of `struct_size` bytes (struct_size set). */
DALLE_API void dalle_clip_train_stats_init(dalle_clip_train_stats *stats, size_t struct_size);

/* A zeroed CLIP stats struct with its size set (inline). */
static inline dalle_clip_train_stats dalle_clip_train_default_stats(void)
{
    dalle_clip_train_stats s;
    dalle_clip_train_stats_init(&s, sizeof s);
    return s;
}

/* A fresh CLIP initialised as upstream (from params->seed). `tokenizer`: a
 * bundle holding the BPE merges or a merges .txt (NULL: none; then
 * params->num_text_tokens must be set, dalle_clip_trainer_step_data cannot
 * be used and the saved bundle has no tokenizer). params may be NULL.
 * Errors: DALLE_ERR_INVALID_ARGUMENT (a parameter out of range: the message
 * names it), _UNSUPPORTED, and those of dalle_tokenizer_create. */
DALLE_API dalle_status dalle_clip_trainer_create(const char *tokenizer,
                                                 const dalle_clip_train_params *params,
                                                 dalle_clip_trainer **out);

/* Continue from a bundle dalle_clip_trainer_save wrote: with the optimiser
 * state, bit for bit as if the run had not stopped (of params, which may be
 * NULL, only n_threads is used); without it (or any DALLE-pytorch "clip"
 * bundle, e.g. a converted one), the weights with a new optimiser from
 * params (fine-tuning). The tokenizer is the checkpoint's. Errors as
 * dalle_clip_trainer_create, and DALLE_ERR_MISMATCH (a tensor or setting
 * missing or mis-shaped: the message names it). */
DALLE_API dalle_status dalle_clip_trainer_resume(const char *checkpoint,
                                                 const dalle_clip_train_params *params,
                                                 dalle_clip_trainer **out);

/* Release a CLIP trainer (NULL is ignored). */
DALLE_API void dalle_clip_trainer_free(dalle_clip_trainer *t);

/* One step: CLIP.forward(text, images, text_mask, return_loss=True),
 * backward, clip_grad_norm, Adam(W). text: [batch][text_seq_len] ids below
 * num_text_tokens (0 = padding); text_mask: [batch][text_seq_len] non-zero
 * for real tokens, each caption keeping one (NULL: as params->mask_padding
 * says); images: [batch][3][size][size] in [0, 1], finite; batch 1 ..
 * params batch (1 gives a loss of 0). stats may be NULL. */
DALLE_API dalle_status dalle_clip_trainer_step(dalle_clip_trainer *t, const int32_t *text,
                                               const uint8_t *text_mask, const float *images,
                                               int batch, dalle_clip_train_stats *stats);

/* The step dalle_image_data_batch draws for this trainer (its seed, step
 * counter and batch), the captions tokenized by its tokenizer: the usual
 * loop. The first call on a set tokenizes every caption of it (a caption
 * too long without truncate fails there, DALLE_ERR_TOO_LONG naming it).
 * The data's image size must be the model's (DALLE_ERR_MISMATCH). */
DALLE_API dalle_status dalle_clip_trainer_step_data(dalle_clip_trainer *t,
                                                    dalle_image_data *data,
                                                    dalle_clip_train_stats *stats);

/* The loss and accuracy of `batch` pairs (1 .. params batch) without
 * training (one contrastive batch); arguments as dalle_clip_trainer_step. */
DALLE_API dalle_status dalle_clip_trainer_eval(dalle_clip_trainer *t, const int32_t *text,
                                               const uint8_t *text_mask, const float *images,
                                               int batch, dalle_clip_train_stats *stats);

/* After a step or an evaluation: its similarity matrix sim[text i][image
 * j] = exp(temperature) · cos (batch² floats into out, cap floats; *batch
 * receives it). With a mask of all ones these are the scores
 * clip_ctx_create + clip_score give for the saved model. */
DALLE_API dalle_status dalle_clip_trainer_sim(const dalle_clip_trainer *t, float *out,
                                              size_t cap, int *batch);

/* Write the model as a bundle of kind "clip" (clip.* and the weights under
 * upstream's state-dict names) that clip_ctx_create loads as it is, with
 * the tokenizer's merges; with_optimizer adds Adam's state, the schedule
 * and the step counter (train.*) for dalle_clip_trainer_resume. Written
 * atomically. */
DALLE_API dalle_status dalle_clip_trainer_save(dalle_clip_trainer *t, const char *path,
                                               int with_optimizer);

/* Steps taken (skipped ones included); 0 for NULL. */
DALLE_API int64_t dalle_clip_trainer_steps(const dalle_clip_trainer *t);
/* Trainable weights (floats); 0 for NULL. */
DALLE_API int64_t dalle_clip_trainer_num_params(const dalle_clip_trainer *t);
/* The settings in force (num_text_tokens resolved), into *params
 * (struct_size as the caller's). */
DALLE_API dalle_status dalle_clip_trainer_get_params(const dalle_clip_trainer *t,
                                                     dalle_clip_train_params *params);

/* ------------------------------------------------------------------------ */
/* Training the VAE                                                          */
/* ------------------------------------------------------------------------ */

/* A DALLE-pytorch DiscreteVAE being trained as train_vae.py trains it:
 * Gumbel-softmax with an annealed temperature, Adam with an exponentially
 * decaying learning rate. */
typedef struct dalle_vae_trainer dalle_vae_trainer;

typedef struct dalle_vae_train_params {
    size_t struct_size;
    /* The model: DiscreteVAE's keyword arguments (a fresh one; a resumed
     * trainer has the checkpoint's). Defaults: train_vae.py's. */
    int image_size;          /* a power of 2, 2^num_layers .. 4096 (128) */
    int num_tokens;          /* codebook entries (8192) */
    int codebook_dim;        /* (512) */
    int num_layers;          /* down-samplings: image_size / 2^num_layers
                                tokens per side (2) */
    int num_resnet_blocks;   /* (2) */
    int hidden_dim;          /* (256) */
    int smooth_l1_loss;      /* 0: MSE (default) */
    double kl_div_loss_weight; /* (0) */
    int straight_through;    /* hard Gumbel-softmax (0) */
    double temperature;      /* the module's temperature, written to the
                                bundle (0.9); training uses the annealed one */
    /* The schedule of train_vae.py: every anneal_every in-epoch steps
     * (i % 100 == 0, i = 0 included), temp = max(temp · exp(-anneal_rate ·
     * global_step), temp_min) and lr *= lr_decay */
    double starting_temp;    /* (1.0) */
    double temp_min;         /* (0.5) */
    double anneal_rate;      /* (1e-6) */
    int anneal_every;        /* (100) */
    /* Optimisation */
    uint64_t seed;           /* weights, Gumbel noise and data order (0) */
    int batch;               /* images per step, at most (8) */
    int n_threads;           /* worker threads; 0 (default) = the cores */
    double lr;               /* learning rate (1e-3) */
    double lr_decay;         /* ExponentialLR gamma (0.98) */
    int64_t steps_per_epoch; /* dalle_vae_trainer_step: the epoch length that
                                resets train_vae.py's in-epoch index; 0
                                (default): one endless epoch. step_data uses
                                the data's count / batch */
    double clip_grad_norm;   /* global 2-norm clipping; 0 (default): none,
                                as train_vae.py */
} dalle_vae_train_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_vae_train_params_init(dalle_vae_train_params *params, size_t struct_size);

/* The default VAE training parameters (inline: fills your header's struct). */
static inline dalle_vae_train_params dalle_vae_train_default_params(void)
{
    dalle_vae_train_params p;
    dalle_vae_train_params_init(&p, sizeof p);
    return p;
}

/* What a VAE step (or evaluation) measured. */
typedef struct dalle_vae_train_stats {
    size_t struct_size;
    int64_t step;           /* steps taken, this one included */
    int64_t epoch;          /* dalle_vae_trainer_step_data: this step's epoch */
    double loss;            /* recon + kl_div_loss_weight · kl */
    double recon;           /* MSE (or smooth L1) of the normalised pixels */
    double kl;              /* the KL term, summed as upstream */
    double temperature;     /* the Gumbel temperature the step used */
    double lr;              /* the learning rate the step used */
    double grad_norm;       /* the gradients' 2-norm before clipping */
    int skipped;            /* non-zero: not finite, weights left unchanged */
} dalle_vae_train_stats;

/* Zeroes into a struct of `struct_size` bytes (struct_size set). */
DALLE_API void dalle_vae_train_stats_init(dalle_vae_train_stats *stats, size_t struct_size);

/* A zeroed VAE stats struct with its size set (inline). */
static inline dalle_vae_train_stats dalle_vae_train_default_stats(void)
{
    dalle_vae_train_stats s;
    dalle_vae_train_stats_init(&s, sizeof s);
    return s;
}

/* A fresh DiscreteVAE initialised as PyTorch does (from params->seed).
 * params may be NULL. Errors: DALLE_ERR_INVALID_ARGUMENT (a parameter out
 * of range: the message names it), _OUT_OF_MEMORY. */
DALLE_API dalle_status dalle_vae_trainer_create(const dalle_vae_train_params *params,
                                                dalle_vae_trainer **out);

/* Continue from a bundle dalle_vae_trainer_save wrote: with the optimiser
 * state, bit for bit (of params, which may be NULL, only n_threads is
 * used); without it (or any "dvae" bundle of DALLE-pytorch's DiscreteVAE),
 * the weights with a new optimiser and schedule from params. Errors as
 * dalle_vae_trainer_create, and DALLE_ERR_MISMATCH (a tensor or setting
 * missing or mis-shaped: the message names it), _UNSUPPORTED (reinmax). */
DALLE_API dalle_status dalle_vae_trainer_resume(const char *checkpoint,
                                                const dalle_vae_train_params *params,
                                                dalle_vae_trainer **out);

/* Release a VAE trainer (NULL is ignored). */
DALLE_API void dalle_vae_trainer_free(dalle_vae_trainer *t);

/* One step of train_vae.py: DiscreteVAE.forward(images, return_loss=True,
 * temp), backward, (clipping), Adam, then the anneal / decay. pixels:
 * [batch][3][image_size][image_size] in [0, 1], finite; batch 1 .. params
 * batch. stats may be NULL. */
DALLE_API dalle_status dalle_vae_trainer_step(dalle_vae_trainer *t, const float *pixels,
                                              int batch, dalle_vae_train_stats *stats);

/* The step dalle_image_data_batch draws for this trainer (its seed, step
 * counter and batch). The data's image size must be the model's
 * (DALLE_ERR_MISMATCH). */
DALLE_API dalle_status dalle_vae_trainer_step_data(dalle_vae_trainer *t,
                                                   dalle_image_data *data,
                                                   dalle_vae_train_stats *stats);

/* The loss of `batch` images (1 .. params batch) at the current
 * temperature without training (the Gumbel noise of the current step; the
 * weights, optimiser and schedule are untouched). */
DALLE_API dalle_status dalle_vae_trainer_eval(dalle_vae_trainer *t, const float *pixels,
                                              int batch, dalle_vae_train_stats *stats);

/* Inference with the current weights, as dalle_encode / dalle_decode
 * compute it for the saved bundle: ids [batch][(image_size / 2^num_layers)²]
 * of pixels, and pixels of ids; batch 1 .. params batch. */
DALLE_API dalle_status dalle_vae_trainer_encode(dalle_vae_trainer *t, const float *pixels,
                                                int batch, int32_t *ids);
DALLE_API dalle_status dalle_vae_trainer_decode(dalle_vae_trainer *t, const int32_t *ids,
                                                int batch, float *pixels);

/* Write the model as a bundle of kind "dvae" that dalle_ctx_create loads
 * (dalle_encode / dalle_decode, and dalle_trainer_create's VAE);
 * with_optimizer adds Adam's state, the temperature, the learning rate and
 * the step counter (train.*) for dalle_vae_trainer_resume. Written
 * atomically. */
DALLE_API dalle_status dalle_vae_trainer_save(dalle_vae_trainer *t, const char *path,
                                              int with_optimizer);

/* Steps taken (skipped ones included); 0 for NULL. */
DALLE_API int64_t dalle_vae_trainer_steps(const dalle_vae_trainer *t);
/* Trainable weights (floats); 0 for NULL. */
DALLE_API int64_t dalle_vae_trainer_num_params(const dalle_vae_trainer *t);
/* The settings in force (the model, and lr / starting_temp as the values
 * the next step will use), into *params (struct_size as the caller's). */
DALLE_API dalle_status dalle_vae_trainer_get_params(const dalle_vae_trainer *t,
                                                    dalle_vae_train_params *params);

/* ------------------------------------------------------------------------ */
/* The synthetic world: captioned pictures of coloured shapes               */
/* ------------------------------------------------------------------------ */

/* The built-in synthetic world (docs/synthetic-world.md): coloured shapes
 * on coloured backgrounds with captions in a small grammar ("a red circle
 * above a blue square", "a small green triangle in the top left corner on
 * a yellow background"), the data dalle_token_data_synthetic and
 * dalle_image_data_synthetic hold. A generator is a seed, a world (which
 * colours, shapes and layouts) and a split; its item `index` is a pure
 * function of them: the same scene, caption and pixels on every machine,
 * in any order of calls. A generator never changes after it is made, so
 * any number of threads may use one at once (unlike other handles). */
typedef struct dalle_synth dalle_synth;

/* The vocabulary, in palette and list order: a world of n colours (shapes)
 * uses the first n. The names are dalle_synth_color_name's. */
typedef enum dalle_synth_color {
    DALLE_SYNTH_RED = 0,
    DALLE_SYNTH_GREEN = 1,
    DALLE_SYNTH_BLUE = 2,
    DALLE_SYNTH_YELLOW = 3,
    DALLE_SYNTH_PURPLE = 4,
    DALLE_SYNTH_CYAN = 5,
    DALLE_SYNTH_WHITE = 6,
    DALLE_SYNTH_BLACK = 7,
    DALLE_SYNTH_N_COLORS = 8
} dalle_synth_color;

typedef enum dalle_synth_shape {
    DALLE_SYNTH_CIRCLE = 0,
    DALLE_SYNTH_SQUARE = 1,
    DALLE_SYNTH_TRIANGLE = 2, /* apex up */
    DALLE_SYNTH_CROSS = 3,    /* a plus sign */
    DALLE_SYNTH_N_SHAPES = 4
} dalle_synth_shape;

typedef enum dalle_synth_size { DALLE_SYNTH_SMALL = 0, DALLE_SYNTH_LARGE = 1 } dalle_synth_size;

/* Two-object scenes: objects[0] <relation> objects[1]. */
typedef enum dalle_synth_relation {
    DALLE_SYNTH_ABOVE = 0,
    DALLE_SYNTH_BELOW = 1,
    DALLE_SYNTH_LEFT_OF = 2,
    DALLE_SYNTH_RIGHT_OF = 3,
    DALLE_SYNTH_N_RELATIONS = 4
} dalle_synth_relation;

/* Which items a generator draws. Training items never show a held-out
 * (object colour, shape, background) combination, not even as the second
 * object of a pair; held-out items are single objects that always show
 * one, and their captions always name the background: the captions a model
 * trained on DALLE_SYNTH_TRAIN has never seen (what `dalle judge` draws). */
typedef enum dalle_synth_split {
    DALLE_SYNTH_TRAIN = 0,
    DALLE_SYNTH_HELDOUT = 1,
    DALLE_SYNTH_ANY = 2
} dalle_synth_split;

enum {
    /* Positions are the cells of a 3 × 3 grid, row-major: 0 top left,
     * 1 top, 2 top right, 3 left, 4 center, 5 right, 6 bottom left,
     * 7 bottom, 8 bottom right. */
    DALLE_SYNTH_N_POSITIONS = 9,
    DALLE_SYNTH_MAX_OBJECTS = 2,    /* objects in a scene */
    DALLE_SYNTH_MIN_SIZE = 16,      /* pixels per side of a picture */
    DALLE_SYNTH_MAX_SIZE = 1024,
    DALLE_SYNTH_CAPTION_CAP = 128   /* always enough for a caption and its NUL */
};

/* What a caption states besides every object's colour and shape (which it
 * always states): dalle_synth_scene.says. */
enum {
    DALLE_SYNTH_SAYS_SIZE = 1,       /* one object: small or large */
    DALLE_SYNTH_SAYS_POSITION = 2,   /* one object: its cell; two: their relation */
    DALLE_SYNTH_SAYS_BACKGROUND = 4  /* the background colour */
};

typedef struct dalle_synth_params {
    size_t struct_size;
    int colors;              /* the first n palette colours, 3..8 (default 8) */
    int shapes;              /* the first n shapes, 1..4 (default 4) */
    int max_objects;         /* 1, or 2 (default) for pairs such as "a red
                                circle above a blue square" */
    int layouts;             /* 0: one large centred object (size and position
                                never vary); 1 (default): sizes and the nine
                                positions */
    dalle_synth_split split; /* default DALLE_SYNTH_TRAIN */
} dalle_synth_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init.
 * The defaults are the world of dalle_token_data_params' world_* defaults. */
DALLE_API void dalle_synth_params_init(dalle_synth_params *params, size_t struct_size);

/* The default world parameters (inline: fills your header's struct). */
static inline dalle_synth_params dalle_synth_default_params(void)
{
    dalle_synth_params p;
    dalle_synth_params_init(&p, sizeof p);
    return p;
}

/* One object of a scene. */
typedef struct dalle_synth_object {
    int color;    /* dalle_synth_color */
    int shape;    /* dalle_synth_shape */
    int size;     /* dalle_synth_size */
    int position; /* 0..8: the grid cell holding the centre */
    float cx, cy; /* the centre of its bounding square, as fractions of the
                     picture's side (x to the right, y down) */
    float extent; /* the side of that square, as a fraction of the picture's */
} dalle_synth_object;

/* A scene: what a picture shows, or what a caption asks for. */
typedef struct dalle_synth_scene {
    size_t struct_size;
    int n_objects;  /* 1 or 2 (a scene the judge read: 0 .. 2) */
    int background; /* dalle_synth_color */
    int relation;   /* dalle_synth_relation: objects[0] <relation> objects[1]
                       (two objects; 0 otherwise) */
    unsigned says;  /* DALLE_SYNTH_SAYS_*: what the caption states (0 in a
                       scene the judge read) */
    dalle_synth_object objects[DALLE_SYNTH_MAX_OBJECTS]; /* the first n_objects */
} dalle_synth_scene;

/* An empty scene (zeroes) into a struct of `struct_size` bytes
 * (struct_size set), for the calls that write one. */
DALLE_API void dalle_synth_scene_init(dalle_synth_scene *scene, size_t struct_size);

/* An empty scene with its size set (inline: fills your header's struct). */
static inline dalle_synth_scene dalle_synth_default_scene(void)
{
    dalle_synth_scene s;
    dalle_synth_scene_init(&s, sizeof s);
    return s;
}

/* A generator of the items of `seed` in the world params describes (NULL:
 * the defaults). Errors: DALLE_ERR_INVALID_ARGUMENT (out NULL, a parameter
 * out of range: the message names it), DALLE_ERR_NOT_FOUND (a world with
 * no combination of the split; every world the parameters allow has items
 * of every split), DALLE_ERR_OUT_OF_MEMORY. */
DALLE_API dalle_status dalle_synth_create(uint64_t seed, const dalle_synth_params *params,
                                          dalle_synth **out);

/* Release a generator (NULL is ignored). */
DALLE_API void dalle_synth_free(dalle_synth *synth);

/* The settings of a generator, into *params (struct_size as the caller's),
 * and its seed into *seed; either may be NULL. */
DALLE_API dalle_status dalle_synth_get_params(const dalle_synth *synth,
                                              dalle_synth_params *params, uint64_t *seed);

/* Item `index` (any value): its picture, pixels[3][size][size] in [0, 1]
 * (anti-aliased; size 16..1024), its caption, NUL-terminated in
 * caption[cap] (DALLE_SYNTH_CAPTION_CAP bytes always suffice; a smaller cap
 * may give DALLE_ERR_TOO_LONG), and its scene (geometry and says included;
 * struct_size set by dalle_synth_default_scene). Any of the three outputs
 * may be NULL, not all of them; size is ignored without pixels. The
 * held-out captions of `dalle judge -n N --seed S` are items 0 .. N - 1 of
 * a DALLE_SYNTH_HELDOUT generator of seed S (with the model's world). */
DALLE_API dalle_status dalle_synth_sample(const dalle_synth *synth, uint64_t index, int size,
                                          float *pixels, char *caption, size_t cap,
                                          dalle_synth_scene *scene);

/* Write items first .. first + count - 1 (count 0 .. 2^24) into the folder
 * `dir` (created if missing; its parent must exist) in DALLE-pytorch's
 * layout, which dalle_token_data_folder, dalle_image_data_folder and
 * upstream's TextImageDataset read: %08llu.png (size × size pixels) and
 * %08llu.txt holding the item's caption (dalle_synth_sample's) then up to
 * n_captions - 1 (n_captions 1..16) other distinct captions of its scene
 * (other wordings, stating more or less). Errors:
 * DALLE_ERR_INVALID_ARGUMENT, DALLE_ERR_IO (naming the file), those of
 * dalle_write_png. */
DALLE_API dalle_status dalle_synth_write_folder(const dalle_synth *synth, const char *dir,
                                                uint64_t first, int64_t count, int size,
                                                int n_captions);

/* The words captions use: "red", "circle", "top left", "left of"; NULL for
 * a value out of range. Static strings. */
DALLE_API const char *dalle_synth_color_name(int color);
DALLE_API const char *dalle_synth_shape_name(int shape);
DALLE_API const char *dalle_synth_position_name(int position);
DALLE_API const char *dalle_synth_relation_name(int relation);

/* The palette: colour `color` (0..7) as RGB in [0, 1] into rgb[3]. */
DALLE_API dalle_status dalle_synth_palette(int color, float *rgb);

/* Whether (object colour, shape, background) is one of the held-out
 * combinations (a fixed 1 in 8, listed in docs/synthetic-world.md): *heldout
 * = 1 or 0 (0 when the colour is the background's: such a scene never
 * occurs). Values out of range: DALLE_ERR_INVALID_ARGUMENT. */
DALLE_API dalle_status dalle_synth_is_heldout(int color, int shape, int background,
                                              int *heldout);

/* Read a caption in the world's grammar into the scene it asks for: the
 * objects in caption order with their colour and shape, the size, position
 * (one object) or relation (two) and background when it states them, and
 * says; geometry is 0. Looser text is read too: any case, punctuation and
 * extra words ("a picture of"), "upper" / "lower", "centre", "huge" /
 * "tiny", "over" / "beneath". Errors: DALLE_ERR_FORMAT with the reason (no
 * object, more than two, an object without a colour, two objects without a
 * relation), DALLE_ERR_TOO_LONG (more than 256 words),
 * DALLE_ERR_INVALID_ARGUMENT. */
DALLE_API dalle_status dalle_synth_parse_caption(const char *caption, dalle_synth_scene *scene);

/* ------------------------------------------------------------------------ */
/* The judge: reading a picture of the synthetic world back                 */
/* ------------------------------------------------------------------------ */

/* Whether a picture shows what a caption says, attribute by attribute:
 * 1 right, 0 wrong, -1 not asked. */
typedef struct dalle_synth_verdict {
    size_t struct_size;
    int color;      /* every object's colour (always asked) */
    int shape;      /* every object's shape (always asked) */
    int position;   /* one object: its cell; two: their relation */
    int size;       /* one object: small or large */
    int background; /* the background colour */
    int asked;      /* attributes asked, 2..5 */
    int right;      /* of them right; right == asked: the picture passes */
} dalle_synth_verdict;

/* A zeroed verdict into a struct of `struct_size` bytes (struct_size set). */
DALLE_API void dalle_synth_verdict_init(dalle_synth_verdict *verdict, size_t struct_size);

/* A zeroed verdict with its size set (inline: fills your header's struct). */
static inline dalle_synth_verdict dalle_synth_default_verdict(void)
{
    dalle_synth_verdict v;
    dalle_synth_verdict_init(&v, sizeof v);
    return v;
}

/* Judge a picture, pixels[3][size][size] (size 16..1024; values outside
 * [0, 1] are clamped, NaN read as 0), against a caption of the world
 * (read as dalle_synth_parse_caption reads it): colour and shape are always
 * judged, size, position and background when the caption states them.
 * Plain image analysis, no network (docs/synthetic-world.md): the
 * background is the palette colour nearest the border's median, objects
 * are the regions far from it, their colour, shape, size and cell are
 * fitted to each region; it reads a VAE's blurred, noisy output. seen (may
 * be NULL) receives what was read, objects matched to the caption's order.
 * Errors: those of dalle_synth_parse_caption, DALLE_ERR_INVALID_ARGUMENT,
 * DALLE_ERR_OUT_OF_MEMORY. */
DALLE_API dalle_status dalle_synth_judge(const float *pixels, int size, const char *caption,
                                         dalle_synth_verdict *verdict, dalle_synth_scene *seen);

/* The same against a scene (dalle_synth_parse_caption's, or
 * dalle_synth_sample's): want's objects, background, relation, sizes and
 * positions are judged as its says asks; its geometry is ignored. */
DALLE_API dalle_status dalle_synth_judge_scene(const float *pixels, int size,
                                               const dalle_synth_scene *want,
                                               dalle_synth_verdict *verdict,
                                               dalle_synth_scene *seen);

/* Read a picture without a caption: its background and its largest
 * max_objects (1 or 2) objects, largest first (with two, their relation),
 * into *seen (n_objects 0 when it finds none). */
DALLE_API dalle_status dalle_synth_read(const float *pixels, int size, int max_objects,
                                        dalle_synth_scene *seen);

/* ------------------------------------------------------------------------ */
/* Learning a BPE vocabulary from captions                                   */
/* ------------------------------------------------------------------------ */

/* CLIP-format BPE merges learnt from captions (what `dalle train-bpe`
 * writes): a small caption language gets a small text vocabulary, so a
 * model trained with it needs a far smaller text embedding than with
 * CLIP's 49408 ids. */
typedef struct dalle_bpe_merges dalle_bpe_merges;

/* CLIP's own file has 48894 merges; more would not fit its id layout. */
#define DALLE_BPE_MAX_MERGES 48894

typedef struct dalle_bpe_learn_params {
    size_t struct_size;
    int max_merges;    /* at most this many merges, 0..DALLE_BPE_MAX_MERGES
                          (default 10000) */
    int64_t min_count; /* merge only pairs seen at least this often, >= 1
                          (default 1: every word seen becomes one token) */
} dalle_bpe_learn_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_bpe_learn_params_init(dalle_bpe_learn_params *params, size_t struct_size);

/* The default BPE learning parameters (inline: fills your header's struct). */
static inline dalle_bpe_learn_params dalle_bpe_learn_default_params(void)
{
    dalle_bpe_learn_params p;
    dalle_bpe_learn_params_init(&p, sizeof p);
    return p;
}

/* Learn merges from texts[n_texts] (n_texts >= 1), UTF-8 captions of at
 * most 1 MiB each, cleaned and split into words as the tokenizer does; the
 * most frequent pair of symbols is merged first (ties broken by the
 * symbols, so the result depends only on the texts). params may be NULL.
 * Errors: DALLE_ERR_INVALID_ARGUMENT (a NULL text, invalid UTF-8: the
 * message names the text and byte; a parameter out of range),
 * DALLE_ERR_OUT_OF_MEMORY. */
DALLE_API dalle_status dalle_bpe_learn(const char *const *texts, int64_t n_texts,
                                       const dalle_bpe_learn_params *params,
                                       dalle_bpe_merges **out);

/* Release learnt merges (NULL is ignored). */
DALLE_API void dalle_bpe_merges_free(dalle_bpe_merges *merges);

/* The number of merges learnt (at most max_merges: fewer when no pair is
 * seen min_count times); 0 for NULL. */
DALLE_API int dalle_bpe_merges_count(const dalle_bpe_merges *merges);

/* The vocabulary size of a tokenizer made from them: 512 + count + 2 (the
 * 256 bytes, their word-final forms, the merges, <|startoftext|> and
 * <|endoftext|>); 0 for NULL. */
DALLE_API int dalle_bpe_merges_vocab_size(const dalle_bpe_merges *merges);

/* The merges file: a "#version" line, then one "left right" line a merge,
 * NUL-terminated, owned by merges; *len (may be NULL) receives its length.
 * NULL for NULL. */
DALLE_API const char *dalle_bpe_merges_text(const dalle_bpe_merges *merges, size_t *len);

/* Write the merges file to `path` (atomically: a temporary file renamed),
 * loadable by dalle_tokenizer_create and as the tokenizer of the trainers.
 * Errors: DALLE_ERR_IO naming the file, DALLE_ERR_INVALID_ARGUMENT. */
DALLE_API dalle_status dalle_bpe_merges_save(const dalle_bpe_merges *merges, const char *path);

#ifdef __cplusplus
}
#endif

#endif /* DALLE_TRAIN_H */
