/* What the train-dalle, train-vae and train-clip commands share beyond
 * commands.h's progress line: the options that mean the same in each, the
 * checks on them, the image data of train-vae / train-clip, and the training
 * loop with its checkpoints and Ctrl-C (train_common.c). */
#ifndef DALLE_CLI_TRAIN_COMMON_H
#define DALLE_CLI_TRAIN_COMMON_H

#include <dalle/train.h>

#include "commands.h"

/* Option groups a command takes besides those every train-* command takes
 * (--data, --synthetic, -o, --checkpoint, --save-every, --resume, --steps,
 * --batch, --lr, --seed, -t, --log-every and the synthetic world's). */
enum {
    CLI_TRAIN_TEXT = 1,     /* --bpe, --truncate-captions, --num-text-tokens */
    CLI_TRAIN_SCHEDULE = 2, /* --cosine, --warmup */
};

typedef struct cli_train_opts {
    unsigned groups;        /* CLI_TRAIN_* the command takes */
    const char *data, *out, *ckpt, *resume;
    const char *bpe, *ntt;  /* CLI_TRAIN_TEXT */
    long long synthetic;    /* -1: not given */
    long long steps, batch, threads, save_every, warmup, log_every;
    uint64_t seed;
    double lr;
    int truncate, cosine;
    cli_world world;
    char ckpt_buf[4096];    /* OUT.ckpt */
} cli_train_opts;

/* The defaults (--steps 1000, --save-every 1000, --log-every 10) with the
 * command's batch and learning rate. */
void cli_train_opts_init(cli_train_opts *o, unsigned groups, long long batch, double lr);

/* Step to the next option the command must handle itself (a->name): 1.
 * 0 at the end of the arguments or on a usage error (*rc), or after --help
 * printed `usage` and the synthetic world's options (*rc = -1). Shared
 * options are parsed on the way. */
int cli_train_next(cli_args *a, cli_train_opts *o, const char *usage, int *rc);

/* After parsing: -o given; have_source or --resume (else the usage error
 * `need`; NULL: nothing needed); one of --data and --synthetic. 0 or
 * CLI_USAGE after the message. */
int cli_train_check_io(const cli_args *a, const cli_train_opts *o, int have_source,
                       const char *need);
/* --cosine with --warmup below --steps; --num-text-tokens auto or a count. */
int cli_train_check_schedule(const cli_args *a, const cli_train_opts *o);

/* --num-text-tokens: the count given (0: auto or not given); whether auto. */
int cli_train_num_text_tokens(const cli_train_opts *o);
int cli_train_auto_vocab(const cli_train_opts *o);

/* Before a run: the checkpoint path (OUT.ckpt unless --checkpoint), and both
 * files' folders writable. 0 or CLI_FAIL after the message. */
int cli_train_prepare(cli_train_opts *o, const char *cmd);

/* --data or --synthetic as images of `size` px (train-vae, train-clip),
 * with the loading progress on a terminal; Ctrl-C stops it. */
dalle_status cli_train_load_images(const cli_train_opts *o, int size, dalle_image_data **out);

/* What one step of a trainer reports to the loop. */
typedef struct cli_train_step {
    int64_t step, epoch;
    double units;           /* tokens / images / pairs it processed */
    int skipped;
    char metrics[160];      /* "loss …  lr …" */
} cli_train_step;

/* A trainer as the loop drives it. */
typedef struct cli_trainer {
    const char *cmd;        /* "train-dalle": messages */
    const char *unit;       /* "tokens": the speed */
    void *trainer, *data;
    int64_t (*steps)(const void *trainer);
    dalle_status (*step)(void *trainer, void *data, cli_train_step *out);
    dalle_status (*save)(void *trainer, const char *path, int with_optimizer);
} cli_trainer;

/* Train until --steps: the progress line, a checkpoint every --save-every
 * steps, and at the end (or on Ctrl-C: CLI_INTERRUPTED) OUT and its
 * checkpoint. Returns the exit status. */
int cli_train_loop(const cli_trainer *t, const cli_train_opts *o);

#endif
