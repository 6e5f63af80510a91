/* dalle train-clip: train a DALLE-pytorch CLIP on captioned images (or the
 * built-in synthetic world) with the public training API
 * (include/dalle/train.h, docs/training.md). Its output is the --clip that
 * `dalle generate` reranks with and `dalle score` scores with. */
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

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
    const char *bpe, *data, *out, *ckpt, *resume, *ntt;
    long long synthetic, dim, dim_latent, depth, heads, image_size, patch, text_seq_len;
    long long steps, batch, threads, save_every, warmup, log_every;
    uint64_t seed;
    double lr;
    int truncate, mask_padding, cosine;
    cli_world world;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    o->dim = 512, o->depth = 6, o->heads = 8, o->image_size = 256, o->patch = 32;
    o->text_seq_len = 256, o->steps = 1000, o->batch = 8, o->save_every = 1000;
    o->log_every = 10, o->lr = 3e-4, o->synthetic = -1;
    cli_world_init(&o->world);
    cli_args_init(a, "train-clip", argc, argv);
    int rc = 0, kind;
    while (!rc && (kind = cli_next(a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL)
            return cli_unexpected(a);
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            fputs(cli_world_usage, stdout);
            return -1;
        }
        if (cli_world_option(a, &o->world, &rc)) continue;
        if (cli_is(a, NULL, "--bpe")) rc = cli_value(a, &o->bpe);
        else if (cli_is(a, NULL, "--data")) rc = cli_value(a, &o->data);
        else if (cli_is(a, NULL, "--synthetic")) rc = cli_int_value(a, 1, 1 << 24, &o->synthetic);
        else if (cli_is(a, NULL, "--truncate-captions")) rc = cli_flag(a), o->truncate = 1;
        else if (cli_is(a, "-o", "--output")) rc = cli_value(a, &o->out);
        else if (cli_is(a, NULL, "--checkpoint")) rc = cli_value(a, &o->ckpt);
        else if (cli_is(a, NULL, "--save-every")) rc = cli_int_value(a, 0, INT64_MAX, &o->save_every);
        else if (cli_is(a, NULL, "--resume")) rc = cli_value(a, &o->resume);
        else if (cli_is(a, NULL, "--dim")) rc = cli_int_value(a, 1, 65536, &o->dim);
        else if (cli_is(a, NULL, "--dim-latent")) rc = cli_int_value(a, 1, 65536, &o->dim_latent);
        else if (cli_is(a, NULL, "--depth")) rc = cli_int_value(a, 1, 4096, &o->depth);
        else if (cli_is(a, NULL, "--heads")) rc = cli_int_value(a, 1, 4096, &o->heads);
        else if (cli_is(a, NULL, "--image-size")) rc = cli_int_value(a, 16, 1024, &o->image_size);
        else if (cli_is(a, NULL, "--patch-size")) rc = cli_int_value(a, 1, 1024, &o->patch);
        else if (cli_is(a, NULL, "--text-seq-len")) rc = cli_int_value(a, 1, 65536, &o->text_seq_len);
        else if (cli_is(a, NULL, "--num-text-tokens")) rc = cli_value(a, &o->ntt);
        else if (cli_is(a, NULL, "--mask-padding")) rc = cli_flag(a), o->mask_padding = 1;
        else if (cli_is(a, NULL, "--steps")) rc = cli_int_value(a, 1, INT64_MAX, &o->steps);
        else if (cli_is(a, NULL, "--batch")) rc = cli_int_value(a, 1, 65536, &o->batch);
        else if (cli_is(a, NULL, "--lr")) rc = cli_float_value(a, 0, 1, 1, 0, &o->lr);
        else if (cli_is(a, NULL, "--cosine")) rc = cli_flag(a), o->cosine = 1;
        else if (cli_is(a, NULL, "--warmup")) rc = cli_int_value(a, 0, INT64_MAX, &o->warmup);
        else if (cli_is(a, NULL, "--seed")) rc = cli_u64_value(a, &o->seed);
        else if (cli_is(a, "-t", "--threads")) rc = cli_int_value(a, 0, 4096, &o->threads);
        else if (cli_is(a, NULL, "--log-every")) rc = cli_int_value(a, 1, INT64_MAX, &o->log_every);
        else return cli_unexpected(a);
    }
    if (rc)
        return rc;
    if (!o->out)
        return cli_usage(a, "an output file is needed: -o OUT.dalle");
    if (!o->bpe && !o->resume)
        return cli_usage(a, "a tokenizer is needed: --bpe MERGES (or --resume CKPT)");
    if (!o->data == (o->synthetic < 0))
        return cli_usage(a, "give the training data: --data DIR or --synthetic N (one of them)");
    if (o->image_size % o->patch)
        return cli_usage(a, "--image-size %lld is not a multiple of --patch-size %lld",
                         o->image_size, o->patch);
    if (o->cosine && o->warmup >= o->steps)
        return cli_usage(a, "--cosine needs --warmup below --steps");
    if (o->ntt && strcmp(o->ntt, "auto")) {
        char *end;
        long v = strtol(o->ntt, &end, 10);
        if (*end || v < 1 || v > (1 << 24))
            return cli_usage(a, "--num-text-tokens: '%s' is not auto or a count 1..16777216",
                             o->ntt);
    }
    return 0;
}

static dalle_status load_data(const opts *o, int size, dalle_image_data **out)
{
    dalle_image_data_params dp = dalle_image_data_default_params();
    cli_train_load l;
    cli_train_load_init(&l, "reading images");
    dp.image_size = size;
    dp.abort = cli_abort_cb;
    dp.world_colors = (int)o->world.colors, dp.world_shapes = (int)o->world.shapes;
    dp.world_max_objects = (int)o->world.objects, dp.world_layouts = (int)o->world.layouts;
    if (l.enabled) {
        dp.progress = cli_train_load_progress;
        dp.user = &l;
    }
    dalle_status s = o->data ? dalle_image_data_folder(o->data, &dp, out)
                             : dalle_image_data_synthetic(o->synthetic, &dp, out);
    cli_train_load_end(&l);
    return s;
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

static int save_both(dalle_clip_trainer *t, const char *out, const char *ckpt)
{
    if (dalle_clip_trainer_save(t, ckpt, 1) || dalle_clip_trainer_save(t, out, 0))
        return cli_lib_error();
    return 0;
}

int cmd_train_clip(int argc, char **argv)
{
    opts o;
    cli_args a;
    int rc = parse(argc, argv, &o, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    char ckpt_buf[4096];
    if (!o.ckpt) {
        snprintf(ckpt_buf, sizeof ckpt_buf, "%s.ckpt", o.out);
        o.ckpt = ckpt_buf;
    }
    if (cli_check_writable("train-clip", o.out) || cli_check_writable("train-clip", o.ckpt))
        return CLI_FAIL;
    cli_catch_sigint();

    dalle_clip_train_params tp = dalle_clip_train_default_params();
    tp.dim_text = tp.dim_image = (int)o.dim;
    tp.dim_latent = (int)(o.dim_latent ? o.dim_latent : o.dim);
    tp.text_enc_depth = tp.visual_enc_depth = (int)o.depth;
    tp.text_heads = tp.visual_heads = (int)o.heads;
    tp.visual_image_size = (int)o.image_size, tp.visual_patch_size = (int)o.patch;
    tp.text_seq_len = (int)o.text_seq_len, tp.truncate = o.truncate;
    tp.mask_padding = o.mask_padding, tp.seed = o.seed, tp.batch = (int)o.batch;
    tp.n_threads = (int)o.threads, tp.lr = o.lr;
    tp.warmup_steps = o.warmup, tp.total_steps = o.steps;
    tp.lr_schedule = o.cosine ? DALLE_LR_COSINE : DALLE_LR_CONSTANT;
    if (o.ntt && strcmp(o.ntt, "auto"))
        tp.num_text_tokens = atoi(o.ntt);

    dalle_clip_trainer *t = NULL;
    dalle_image_data *d = NULL;
    if (o.resume) {
        /* the checkpoint's model and tokenizer; the data is read at its size */
        if (dalle_clip_trainer_resume(o.resume, &tp, &t) ||
            dalle_clip_trainer_get_params(t, &tp) || load_data(&o, tp.visual_image_size, &d))
            rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    } else if (cli_check_readable("train-clip", (char **)&o.bpe, 1)) {
        rc = CLI_FAIL;
    } else if (load_data(&o, tp.visual_image_size, &d)) {
        rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    } else {
        const int fit = o.ntt && !strcmp(o.ntt, "auto");
        if (fit)
            tp.num_text_tokens = max_caption_id(o.bpe, d, tp.text_seq_len, tp.truncate);
        if ((fit && !tp.num_text_tokens) || dalle_clip_trainer_create(o.bpe, &tp, &t) ||
            dalle_clip_trainer_get_params(t, &tp))
            rc = cli_lib_error();
    }
    if (!rc && dalle_image_data_count(d) < tp.batch)
        rc = cli_error("train-clip: %lld images, fewer than the batch of %d",
                       (long long)dalle_image_data_count(d), tp.batch);
    if (!rc)
        fprintf(stderr, "train-clip: %lld images (%lld files skipped), %lld weights, dim %d, "
                "depth %d, %d px in %d px patches, %d caption tokens of %d, batch %d, from step "
                "%lld to %lld\n",
                (long long)dalle_image_data_count(d), (long long)dalle_image_data_skipped(d),
                (long long)dalle_clip_trainer_num_params(t), tp.dim_text, tp.text_enc_depth,
                tp.visual_image_size, tp.visual_patch_size, tp.text_seq_len, tp.num_text_tokens,
                tp.batch, (long long)dalle_clip_trainer_steps(t), o.steps);
    cli_train_progress p;
    cli_train_progress_init(&p, dalle_clip_trainer_steps(t), o.steps, o.log_every, "pairs");
    while (!rc && dalle_clip_trainer_steps(t) < o.steps) {
        dalle_clip_train_stats st = dalle_clip_train_default_stats();
        if (dalle_clip_trainer_step_data(t, d, &st)) {
            cli_train_progress_end(&p);
            rc = cli_lib_error();
            break;
        }
        char metrics[160];
        snprintf(metrics, sizeof metrics, "loss %.4f  accuracy %.2f  scale %.3g  lr %.2g",
                 st.loss, st.accuracy, st.scale, st.lr);
        cli_train_progress_report(&p, st.step, st.epoch, tp.batch, metrics, st.skipped);
        if (cli_interrupted()) {
            cli_train_progress_end(&p);
            rc = save_both(t, o.out, o.ckpt);
            if (!rc)
                fprintf(stderr, "train-clip: interrupted at step %lld; checkpoint '%s' "
                        "(continue with --resume)\n", (long long)st.step, o.ckpt);
            rc = rc ? rc : CLI_INTERRUPTED;
        } else if (o.save_every && st.step % o.save_every == 0 && st.step < o.steps &&
                   dalle_clip_trainer_save(t, o.ckpt, 1)) {
            cli_train_progress_end(&p);
            rc = cli_lib_error();
        }
    }
    cli_train_progress_end(&p);
    if (!rc) {
        rc = save_both(t, o.out, o.ckpt);
        if (!rc)
            fprintf(stderr, "train-clip: wrote '%s' (checkpoint '%s')\n", o.out, o.ckpt);
    }
    dalle_image_data_free(d);
    dalle_clip_trainer_free(t);
    return rc;
}
