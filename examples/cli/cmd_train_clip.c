/* dalle train-clip: train a DALLE-pytorch CLIP on captioned images (or the
 * built-in synthetic world) with the public training API
 * (include/dalle/train.h, docs/training.md). Its output is the --clip that
 * `dalle generate` reranks with and `dalle score` scores with. */
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"

static const char usage[] =
    "usage: dalle train-clip --bpe MERGES (--data DIR | --synthetic N) -o OUT [options]\n"
    "       dalle train-clip --resume CKPT (--data DIR | --synthetic N) -o OUT [options]\n"
    "\n"
    "Train a CLIP (DALLE-pytorch's) on captioned images: CLIP(text, images,\n"
    "return_loss=True), the symmetric contrastive loss over each batch, Adam with\n"
    "gradient clipping 0.5. OUT is a CLIP bundle with its tokenizer, for `dalle\n"
    "generate --clip` and `dalle score`; checkpoints with the optimiser state go to\n"
    "OUT.ckpt (every --save-every steps, at the end and on Ctrl-C) and --resume\n"
    "continues from one bit for bit.\n"
    "\n"
    "data:\n"
    "  --bpe FILE             tokenizer: a merges .txt or a bundle holding BPE merges\n"
    "  --data DIR             images with same-named .txt captions, one per line\n"
    "  --synthetic N          N items of the built-in synthetic world instead\n"
    "  --truncate-captions    cut captions longer than --text-seq-len (else an error)\n"
    "output:\n"
    "  -o, --output FILE      the trained CLIP\n"
    "  --checkpoint FILE      where checkpoints go (default OUT.ckpt)\n"
    "  --save-every K         write a checkpoint every K steps (default 1000; 0: never)\n"
    "  --resume CKPT          continue from a checkpoint (its model, settings, tokenizer)\n"
    "model (a new one; defaults: CLIP()'s):\n"
    "  --dim N (512)          width of both towers and of the shared latent\n"
    "  --dim-latent N         width of the latent alone (default --dim)\n"
    "  --depth N (6)  --heads N (8)   of both towers\n"
    "  --image-size N (256)  --patch-size N (32)  --text-seq-len N (256)\n"
    "  --num-text-tokens N|auto  text vocabulary: default the tokenizer's; auto: the\n"
    "                         largest caption id + 1 (smaller, but then captions with\n"
    "                         other words cannot be scored)\n"
    "  --mask-padding         mask caption padding (text_mask = text != 0); default no\n"
    "                         mask, as `dalle generate` and `dalle score` score\n"
    "training:\n"
    "  --steps N              train until step N (default 1000)\n"
    "  --batch N              pairs per step: the contrastive batch (default 8)\n"
    "  --lr X                 learning rate (default 3e-4)\n"
    "  --cosine               cosine decay to 1e-6 at --steps\n"
    "  --warmup N             linear warm-up steps (default 0)\n"
    "  --seed N               weights and data order (default 0)\n"
    "  -t, --threads N        worker threads (default: all cores; same result for any)\n"
    "  --log-every N          without a terminal: a progress line every N steps (default 10)\n";

typedef struct opts {
    cli_train_opts t;       /* the options every train-* command takes */
    long long dim, dim_latent, depth, heads, image_size, patch, text_seq_len;
    int mask_padding;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    cli_train_opts_init(&o->t, CLI_TRAIN_TEXT | CLI_TRAIN_SCHEDULE, 8, 3e-4);
    o->dim = 512, o->depth = 6, o->heads = 8, o->image_size = 256, o->patch = 32;
    o->text_seq_len = 256;
    cli_args_init(a, "train-clip", argc, argv);
    int rc = 0;
    while (cli_train_next(a, &o->t, usage, &rc)) {
        if (cli_is(a, NULL, "--dim")) rc = cli_int_value(a, 1, 65536, &o->dim);
        else if (cli_is(a, NULL, "--dim-latent")) rc = cli_int_value(a, 1, 65536, &o->dim_latent);
        else if (cli_is(a, NULL, "--depth")) rc = cli_int_value(a, 1, 4096, &o->depth);
        else if (cli_is(a, NULL, "--heads")) rc = cli_int_value(a, 1, 4096, &o->heads);
        else if (cli_is(a, NULL, "--image-size")) rc = cli_int_value(a, 16, 1024, &o->image_size);
        else if (cli_is(a, NULL, "--patch-size")) rc = cli_int_value(a, 1, 1024, &o->patch);
        else if (cli_is(a, NULL, "--text-seq-len")) rc = cli_int_value(a, 1, 65536, &o->text_seq_len);
        else if (cli_is(a, NULL, "--mask-padding")) rc = cli_flag(a), o->mask_padding = 1;
        else return cli_unexpected(a);
    }
    if (rc || (rc = cli_train_check_io(a, &o->t, o->t.bpe != NULL,
                                       "a tokenizer is needed: --bpe MERGES (or --resume CKPT)")))
        return rc;
    if (o->image_size % o->patch)
        return cli_usage(a, "--image-size %lld is not a multiple of --patch-size %lld",
                         o->image_size, o->patch);
    return cli_train_check_schedule(a, &o->t);
}

/* --num-text-tokens auto: the largest id of any caption + 1; 0 when the
 * tokenizer cannot be loaded (its message is dalle_last_error). */
static int max_caption_id(const char *bpe, dalle_image_data *d, int T, int truncate)
{
    dalle_tokenizer *tok;
    int32_t *ids = malloc((size_t)T * sizeof *ids);
    int best = -1;
    if (!ids || dalle_tokenizer_create(bpe, &tok)) {
        free(ids);
        return 0;
    }
    for (int64_t i = 0; i < dalle_image_data_count(d) && best != -2; i++)
        for (int k = 0; k < dalle_image_data_caption_count(d, i); k++) {
            if (dalle_tokenizer_tokenize(tok, dalle_image_data_caption(d, i, k), ids, T,
                                         truncate)) {
                best = -2; /* the trainer names the caption at its first step */
                break;
            }
            for (int j = 0; j < T; j++)
                best = ids[j] > best ? ids[j] : best;
        }
    dalle_tokenizer_free(tok);
    free(ids);
    /* a caption that does not fit: any count will do, the first step names it */
    return best >= 0 ? best + 1 : 1;
}

/* The trainer as cli_train_loop drives it, on this data. */
typedef struct step_data {
    dalle_image_data *d;
    int batch; /* pairs a step */
} step_data;

static int64_t steps(const void *t) { return dalle_clip_trainer_steps(t); }
static dalle_status save(void *t, const char *path, int with_opt)
{
    return dalle_clip_trainer_save(t, path, with_opt);
}
static dalle_status step(void *t, void *data, cli_train_step *out)
{
    const step_data *b = data;
    dalle_clip_train_stats st = dalle_clip_train_default_stats();
    dalle_status s = dalle_clip_trainer_step_data(t, b->d, &st);
    snprintf(out->metrics, sizeof out->metrics, "loss %.4f  accuracy %.2f  scale %.3g  lr %.2g",
             st.loss, st.accuracy, st.scale, st.lr);
    out->step = st.step, out->epoch = st.epoch, out->units = b->batch;
    out->skipped = st.skipped;
    return s;
}

int cmd_train_clip(int argc, char **argv)
{
    opts o;
    cli_args a;
    int rc = parse(argc, argv, &o, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    cli_train_opts *c = &o.t;
    if (cli_train_prepare(c, "train-clip"))
        return CLI_FAIL;
    cli_catch_sigint();

    dalle_clip_train_params tp = dalle_clip_train_default_params();
    tp.dim_text = tp.dim_image = (int)o.dim;
    tp.dim_latent = (int)(o.dim_latent ? o.dim_latent : o.dim);
    tp.text_enc_depth = tp.visual_enc_depth = (int)o.depth;
    tp.text_heads = tp.visual_heads = (int)o.heads;
    tp.visual_image_size = (int)o.image_size, tp.visual_patch_size = (int)o.patch;
    tp.text_seq_len = (int)o.text_seq_len, tp.truncate = c->truncate;
    tp.mask_padding = o.mask_padding, tp.seed = c->seed, tp.batch = (int)c->batch;
    tp.n_threads = (int)c->threads, tp.lr = c->lr;
    tp.warmup_steps = c->warmup, tp.total_steps = c->steps;
    tp.lr_schedule = c->cosine ? DALLE_LR_COSINE : DALLE_LR_CONSTANT;
    tp.num_text_tokens = cli_train_num_text_tokens(c);

    dalle_clip_trainer *t = NULL;
    dalle_image_data *d = NULL;
    if (c->resume) {
        /* the checkpoint's model and tokenizer; the data is read at its size */
        if (dalle_clip_trainer_resume(c->resume, &tp, &t) ||
            dalle_clip_trainer_get_params(t, &tp) ||
            cli_train_load_images(c, tp.visual_image_size, &d))
            rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    } else if (cli_check_readable("train-clip", (char **)&c->bpe, 1)) {
        rc = CLI_FAIL;
    } else if (cli_train_load_images(c, tp.visual_image_size, &d)) {
        rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    } else {
        const int fit = cli_train_auto_vocab(c);
        if (fit)
            tp.num_text_tokens = max_caption_id(c->bpe, d, tp.text_seq_len, tp.truncate);
        if ((fit && !tp.num_text_tokens) || dalle_clip_trainer_create(c->bpe, &tp, &t) ||
            dalle_clip_trainer_get_params(t, &tp))
            rc = cli_lib_error();
    }
    if (!rc && dalle_image_data_count(d) < tp.batch)
        rc = cli_error("train-clip: %lld images, fewer than the batch of %d",
                       (long long)dalle_image_data_count(d), tp.batch);
    if (!rc) {
        fprintf(stderr, "train-clip: %lld images (%lld files skipped), %lld weights, dim %d, "
                "depth %d, %d px in %d px patches, %d caption tokens of %d, batch %d, from step "
                "%lld to %lld\n",
                (long long)dalle_image_data_count(d), (long long)dalle_image_data_skipped(d),
                (long long)dalle_clip_trainer_num_params(t), tp.dim_text, tp.text_enc_depth,
                tp.visual_image_size, tp.visual_patch_size, tp.text_seq_len, tp.num_text_tokens,
                tp.batch, (long long)dalle_clip_trainer_steps(t), c->steps);
        step_data b = {d, tp.batch};
        const cli_trainer run = {"train-clip", "pairs", t, &b, steps, step, save};
        rc = cli_train_loop(&run, c);
    }
    dalle_image_data_free(d);
    dalle_clip_trainer_free(t);
    return rc;
}
