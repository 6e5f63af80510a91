/* dalle train-dalle: train a DALL-E transformer on captioned images (or the
 * built-in synthetic world) on top of a VAE, as train_dalle.py does, with
 * the public training API (include/dalle/train.h, docs/training.md). */
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"

static const char usage[] =
    "usage: dalle train-dalle --vae VAE (--data DIR | --synthetic N) -o OUT [options]\n"
    "       dalle train-dalle --resume CKPT (--data DIR | --synthetic N) -o OUT [options]\n"
    "\n"
    "Train a DALL-E transformer on the tokens of a trained VAE, as DALLE-pytorch's\n"
    "train_dalle.py: Adam, gradient clipping 0.5, loss_img_weight 7. Captions are\n"
    "tokenized and images encoded once, then every step draws a shuffled batch.\n"
    "OUT is a complete model (transformer + VAE + tokenizer) for `dalle generate`;\n"
    "checkpoints with the optimiser state go to OUT.ckpt (every --save-every steps,\n"
    "at the end and on Ctrl-C) and --resume continues from one bit for bit.\n"
    "\n"
    "data:\n"
    "  --vae FILE             the VAE bundle (dvae, openai_dvae, vqgan, or a dalle model)\n"
    "  --bpe FILE             tokenizer: a bundle holding the BPE merges, or a merges\n"
    "                         .txt (default: the one in the VAE bundle)\n"
    "  --data DIR             images with same-named .txt captions, one per line\n"
    "  --synthetic N          N items of the built-in synthetic world instead\n"
    "  --truncate-captions    cut captions longer than --text-seq-len (else an error)\n"
    "output:\n"
    "  -o, --output FILE      the trained model\n"
    "  --checkpoint FILE      where checkpoints go (default OUT.ckpt)\n"
    "  --save-every K         write a checkpoint every K steps (default 1000; 0: never)\n"
    "  --resume CKPT          continue from a checkpoint (its model and settings)\n"
    "model (a new one; defaults: train_dalle.py's):\n"
    "  --dim N (512)  --depth N (2)  --heads N (8)  --dim-head N (64)\n"
    "  --text-seq-len N (256) --attn-types LIST (full; also axial_row, axial_col, conv_like)\n"
    "  --num-text-tokens N|auto  text vocabulary: default the tokenizer's (49408 for\n"
    "                         CLIP's); auto: the largest caption id + 1, far smaller\n"
    "                         and faster, but then only those ids can be generated from\n"
    "  --attn-dropout X       dropout after each attention's output (default 0)\n"
    "  --ff-dropout X         dropout inside each feed-forward, after GEGLU (default 0)\n"
    "  --stable-softmax       DALLE(stable=True): embeddings' gradient x0.1, DivideMax\n"
    "  --sandwich-norm        a LayerNorm on every attention / feed-forward output\n"
    "  --reversible           the layers as upstream's ReversibleSequence\n"
    "  --shared-attn-ids LIST comma-separated ids cycled over the layers: layers with\n"
    "  --shared-ff-ids LIST   equal ids share one attention / feed-forward\n"
    "training:\n"
    "  --steps N              train until step N (default 1000)\n"
    "  --batch N              pairs per step (default 4)\n"
    "  --lr X                 learning rate (default 3e-4)\n"
    "  --lr-decay             halve it when an epoch brings no progress (ReduceLROnPlateau)\n"
    "  --cosine               cosine decay to 1e-6 at --steps instead\n"
    "  --warmup N             linear warm-up steps (default 0)\n"
    "  --null-cond-prob X     replace a caption by the empty one with probability X, to\n"
    "                         train for classifier-free guidance (default 0)\n"
    "  --seed N               weights, data order, dropout and null captions (default 0)\n"
    "  -t, --threads N        worker threads (default: all cores; same result for any)\n"
    "  --log-every N          without a terminal: a progress line every N steps (default 10)\n";

typedef struct opts {
    cli_train_opts t;       /* the options every train-* command takes */
    const char *vae, *attn, *shared_attn, *shared_ff;
    long long dim, depth, heads, dim_head, text_seq_len;
    int lr_decay, stable, sandwich, reversible;
    double null_cond, attn_dropout, ff_dropout;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    cli_train_opts_init(&o->t, CLI_TRAIN_TEXT | CLI_TRAIN_SCHEDULE, 4, 3e-4);
    o->dim = 512, o->depth = 2, o->heads = 8, o->dim_head = 64, o->text_seq_len = 256;
    cli_args_init(a, "train-dalle", argc, argv);
    int rc = 0;
    while (cli_train_next(a, &o->t, usage, &rc)) {
        if (cli_is(a, NULL, "--vae")) rc = cli_value(a, &o->vae);
        else if (cli_is(a, NULL, "--dim")) rc = cli_int_value(a, 2, 65536, &o->dim);
        else if (cli_is(a, NULL, "--depth")) rc = cli_int_value(a, 1, 1024, &o->depth);
        else if (cli_is(a, NULL, "--heads")) rc = cli_int_value(a, 1, 1024, &o->heads);
        else if (cli_is(a, NULL, "--dim-head")) rc = cli_int_value(a, 1, 4096, &o->dim_head);
        else if (cli_is(a, NULL, "--text-seq-len")) rc = cli_int_value(a, 1, 65536, &o->text_seq_len);
        else if (cli_is(a, NULL, "--attn-types")) rc = cli_value(a, &o->attn);
        else if (cli_is(a, NULL, "--lr-decay")) rc = cli_flag(a), o->lr_decay = 1;
        else if (cli_is(a, NULL, "--null-cond-prob"))
            rc = cli_float_value(a, 0, 0, 1, 0, &o->null_cond);
        else if (cli_is(a, NULL, "--attn-dropout"))
            rc = cli_float_value(a, 0, 0, 1, 1, &o->attn_dropout);
        else if (cli_is(a, NULL, "--ff-dropout"))
            rc = cli_float_value(a, 0, 0, 1, 1, &o->ff_dropout);
        else if (cli_is(a, NULL, "--stable-softmax")) rc = cli_flag(a), o->stable = 1;
        else if (cli_is(a, NULL, "--sandwich-norm")) rc = cli_flag(a), o->sandwich = 1;
        else if (cli_is(a, NULL, "--reversible")) rc = cli_flag(a), o->reversible = 1;
        else if (cli_is(a, NULL, "--shared-attn-ids"))
            rc = cli_value(a, &o->shared_attn);
        else if (cli_is(a, NULL, "--shared-ff-ids")) rc = cli_value(a, &o->shared_ff);
        else return cli_unexpected(a);
    }
    if (rc || (rc = cli_train_check_io(a, &o->t, o->vae != NULL,
                                       "a VAE is needed: --vae VAE.dalle (or --resume CKPT)")))
        return rc;
    if (o->lr_decay && o->t.cosine)
        return cli_usage(a, "--lr-decay and --cosine exclude each other");
    return cli_train_check_schedule(a, &o->t);
}

/* ---- the run ---------------------------------------------------------------- */

static dalle_status load_data(const cli_train_opts *o, const char *vae, int text_seq_len,
                              dalle_token_data **out)
{
    dalle_token_data_params dp = dalle_token_data_default_params();
    cli_train_load l;
    cli_train_load_init(&l, "encoding images");
    dp.text_seq_len = text_seq_len;
    dp.truncate = o->truncate;
    dp.n_threads = (int)o->threads;
    dp.abort = cli_abort_cb;
    dp.world_colors = (int)o->world.colors, dp.world_shapes = (int)o->world.shapes;
    dp.world_max_objects = (int)o->world.objects, dp.world_layouts = (int)o->world.layouts;
    if (l.enabled) {
        dp.progress = cli_train_load_progress;
        dp.user = &l;
    }
    dalle_status s = o->data ? dalle_token_data_folder(vae, o->bpe, o->data, &dp, out)
                             : dalle_token_data_synthetic(vae, o->bpe, o->synthetic, &dp, out);
    cli_train_load_end(&l);
    return s;
}

/* The trainer as cli_train_loop drives it. */
static int64_t steps(const void *t) { return dalle_trainer_steps(t); }
static dalle_status save(void *t, const char *path, int with_opt)
{
    return dalle_trainer_save(t, path, with_opt);
}
static dalle_status step(void *t, void *d, cli_train_step *out)
{
    dalle_train_stats st = dalle_train_default_stats();
    dalle_status s = dalle_trainer_step_data(t, d, &st);
    snprintf(out->metrics, sizeof out->metrics, "loss %.4f (text %.3f, image %.3f)  lr %.2g",
             st.loss, st.loss_text, st.loss_img, st.lr);
    out->step = st.step, out->epoch = st.epoch, out->units = (double)st.tokens;
    out->skipped = st.skipped;
    return s;
}

int cmd_train_dalle(int argc, char **argv)
{
    opts o;
    cli_args a;
    int rc = parse(argc, argv, &o, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    const cli_train_opts *c = &o.t;
    if (cli_train_prepare(&o.t, "train-dalle"))
        return CLI_FAIL;
    if (o.vae && !c->resume &&
        cli_check_kind("train-dalle", "--vae", o.vae, CLI_KIND_VAE | CLI_KIND_DALLE, NULL))
        return CLI_FAIL;
    cli_catch_sigint();

    dalle_train_params tp = dalle_train_default_params();
    tp.dim = (int)o.dim, tp.depth = (int)o.depth, tp.heads = (int)o.heads;
    tp.dim_head = (int)o.dim_head, tp.text_seq_len = (int)o.text_seq_len;
    tp.attn_types = o.attn;
    tp.null_cond_prob = o.null_cond, tp.attn_dropout = o.attn_dropout;
    tp.ff_dropout = o.ff_dropout, tp.stable = o.stable, tp.sandwich_norm = o.sandwich;
    tp.shared_attn_ids = o.shared_attn, tp.shared_ff_ids = o.shared_ff;
    tp.reversible = o.reversible;
    tp.batch = (int)c->batch, tp.n_threads = (int)c->threads, tp.seed = c->seed, tp.lr = c->lr;
    tp.warmup_steps = c->warmup, tp.total_steps = c->steps;
    tp.lr_schedule = o.lr_decay  ? DALLE_LR_PLATEAU
                     : c->cosine ? DALLE_LR_COSINE
                                 : DALLE_LR_CONSTANT;
    tp.num_text_tokens = cli_train_num_text_tokens(c);

    dalle_trainer *t = NULL;
    dalle_token_data *d = NULL;
    if (c->resume) {
        /* the checkpoint's model, VAE and tokenizer; the data must match it */
        if (dalle_trainer_resume(c->resume, &tp, &t) ||
            dalle_trainer_get_params(t, &tp) || load_data(c, c->resume, tp.text_seq_len, &d))
            rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    } else {
        if (load_data(c, o.vae, tp.text_seq_len, &d)) {
            rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
        } else {
            int max_id = dalle_token_data_max_text_id(d);
            if (cli_train_auto_vocab(c))
                tp.num_text_tokens = max_id + 1;
            if (dalle_trainer_create(o.vae, c->bpe, &tp, &t) || dalle_trainer_get_params(t, &tp))
                rc = cli_lib_error();
        }
    }
    if (!rc && dalle_token_data_max_text_id(d) >= tp.num_text_tokens)
        rc = cli_error("train-dalle: the captions use token id %d; the model's %d text tokens "
                       "cannot take it (--num-text-tokens auto fits the data)",
                       dalle_token_data_max_text_id(d), tp.num_text_tokens);
    if (!rc && dalle_token_data_count(d) < tp.batch)
        rc = cli_error("train-dalle: %lld training pairs, fewer than the batch of %d",
                       (long long)dalle_token_data_count(d), tp.batch);
    if (!rc) {
        fprintf(stderr, "train-dalle: %lld pairs (%lld files skipped), %lld weights, dim %d, "
                "depth %d, text %d + image %d tokens, batch %d, from step %lld to %lld\n",
                (long long)dalle_token_data_count(d), (long long)dalle_token_data_skipped(d),
                (long long)dalle_trainer_num_params(t), tp.dim, tp.depth, tp.text_seq_len,
                dalle_token_data_image_seq_len(d), tp.batch, (long long)dalle_trainer_steps(t),
                c->steps);
        const cli_trainer run = {"train-dalle", "tokens", t, d, steps, step, save};
        rc = cli_train_loop(&run, c);
    }
    dalle_token_data_free(d);
    dalle_trainer_free(t);
    return rc;
}
