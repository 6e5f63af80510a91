/* dalle train-vae: train a DALLE-pytorch DiscreteVAE on images (or the
 * built-in synthetic world) as train_vae.py does, with the public training
 * API (include/dalle/train.h, docs/training.md). Its output is the --vae of
 * `dalle train-dalle`. */
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle train-vae (--data DIR | --synthetic N) -o OUT [options]\n"
    "       dalle train-vae --resume CKPT (--data DIR | --synthetic N) -o OUT [options]\n"
    "\n"
    "Train a discrete VAE (DALLE-pytorch's DiscreteVAE) as train_vae.py does:\n"
    "Gumbel-softmax whose temperature anneals every 100 steps, Adam whose learning\n"
    "rate decays by --lr-decay every 100 steps. OUT is a VAE bundle (kind dvae) for\n"
    "`dalle encode` / `decode` and `dalle train-dalle --vae`; checkpoints with the\n"
    "optimiser state go to OUT.ckpt (every --save-every steps, at the end and on\n"
    "Ctrl-C) and --resume continues from one bit for bit.\n"
    "\n"
    "data:\n"
    "  --data DIR             images (.png, .jpg; captions are not needed)\n"
    "  --synthetic N          N items of the built-in synthetic world instead\n"
    "output:\n"
    "  -o, --output FILE      the trained VAE\n"
    "  --checkpoint FILE      where checkpoints go (default OUT.ckpt)\n"
    "  --save-every K         write a checkpoint every K steps (default 1000; 0: never)\n"
    "  --resume CKPT          continue from a checkpoint (its model and settings)\n"
    "model (a new one; defaults: train_vae.py's):\n"
    "  --image-size N (128)  --num-tokens N (8192)  --codebook-dim N (512)\n"
    "  --num-layers N (2)  --num-resnet-blocks N (2)  --hidden-dim N (256)\n"
    "  --smooth-l1-loss       smooth L1 instead of MSE\n"
    "  --kl-loss-weight X     weight of the KL term (default 0)\n"
    "  --straight-through     hard Gumbel-softmax\n"
    "training:\n"
    "  --steps N              train until step N (default 1000)\n"
    "  --batch N              images per step (default 8)\n"
    "  --lr X                 learning rate (default 1e-3)\n"
    "  --lr-decay X           its decay every 100 steps (default 0.98)\n"
    "  --starting-temp X (1)  --temp-min X (0.5)  --anneal-rate X (1e-6)\n"
    "  --seed N               weights, Gumbel noise and data order (default 0)\n"
    "  -t, --threads N        worker threads (default: all cores; same result for any)\n"
    "  --log-every N          without a terminal: a progress line every N steps (default 10)\n";

typedef struct opts {
    const char *data, *out, *ckpt, *resume;
    long long synthetic, image_size, num_tokens, codebook_dim, num_layers, num_res, hidden;
    long long steps, batch, threads, save_every, log_every;
    uint64_t seed;
    double lr, lr_decay, klw, t0, tmin, anneal;
    int smooth_l1, straight;
    cli_world world;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    dalle_vae_train_params d = dalle_vae_train_default_params();
    o->image_size = d.image_size, o->num_tokens = d.num_tokens, o->codebook_dim = d.codebook_dim;
    o->num_layers = d.num_layers, o->num_res = d.num_resnet_blocks, o->hidden = d.hidden_dim;
    o->lr = d.lr, o->lr_decay = d.lr_decay, o->t0 = d.starting_temp, o->tmin = d.temp_min;
    o->anneal = d.anneal_rate, o->batch = d.batch;
    o->steps = 1000, o->save_every = 1000, o->log_every = 10, o->synthetic = -1;
    cli_world_init(&o->world);
    cli_args_init(a, "train-vae", argc, argv);
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
        if (cli_is(a, NULL, "--data")) rc = cli_value(a, &o->data);
        else if (cli_is(a, NULL, "--synthetic")) rc = cli_int_value(a, 1, 1 << 24, &o->synthetic);
        else if (cli_is(a, "-o", "--output")) rc = cli_value(a, &o->out);
        else if (cli_is(a, NULL, "--checkpoint")) rc = cli_value(a, &o->ckpt);
        else if (cli_is(a, NULL, "--save-every")) rc = cli_int_value(a, 0, INT64_MAX, &o->save_every);
        else if (cli_is(a, NULL, "--resume")) rc = cli_value(a, &o->resume);
        else if (cli_is(a, NULL, "--image-size")) rc = cli_int_value(a, 16, 1024, &o->image_size);
        else if (cli_is(a, NULL, "--num-tokens")) rc = cli_int_value(a, 2, 1 << 20, &o->num_tokens);
        else if (cli_is(a, NULL, "--codebook-dim")) rc = cli_int_value(a, 1, 65536, &o->codebook_dim);
        else if (cli_is(a, NULL, "--num-layers")) rc = cli_int_value(a, 1, 8, &o->num_layers);
        else if (cli_is(a, NULL, "--num-resnet-blocks")) rc = cli_int_value(a, 0, 16, &o->num_res);
        else if (cli_is(a, NULL, "--hidden-dim")) rc = cli_int_value(a, 1, 16384, &o->hidden);
        else if (cli_is(a, NULL, "--smooth-l1-loss")) rc = cli_flag(a), o->smooth_l1 = 1;
        else if (cli_is(a, NULL, "--kl-loss-weight")) rc = cli_float_value(a, 0, 0, 1e6, 0, &o->klw);
        else if (cli_is(a, NULL, "--straight-through")) rc = cli_flag(a), o->straight = 1;
        else if (cli_is(a, NULL, "--steps")) rc = cli_int_value(a, 1, INT64_MAX, &o->steps);
        else if (cli_is(a, NULL, "--batch")) rc = cli_int_value(a, 1, 65536, &o->batch);
        else if (cli_is(a, NULL, "--lr")) rc = cli_float_value(a, 0, 1, 1, 0, &o->lr);
        else if (cli_is(a, NULL, "--lr-decay")) rc = cli_float_value(a, 0, 1, 1, 0, &o->lr_decay);
        else if (cli_is(a, NULL, "--starting-temp")) rc = cli_float_value(a, 0, 1, 1e3, 0, &o->t0);
        else if (cli_is(a, NULL, "--temp-min")) rc = cli_float_value(a, 0, 1, 1e3, 0, &o->tmin);
        else if (cli_is(a, NULL, "--anneal-rate")) rc = cli_float_value(a, 0, 0, 1, 0, &o->anneal);
        else if (cli_is(a, NULL, "--seed")) rc = cli_u64_value(a, &o->seed);
        else if (cli_is(a, "-t", "--threads")) rc = cli_int_value(a, 0, 4096, &o->threads);
        else if (cli_is(a, NULL, "--log-every")) rc = cli_int_value(a, 1, INT64_MAX, &o->log_every);
        else return cli_unexpected(a);
    }
    if (rc)
        return rc;
    if (!o->out)
        return cli_usage(a, "an output file is needed: -o OUT.dalle");
    if (!o->data == (o->synthetic < 0))
        return cli_usage(a, "give the training data: --data DIR or --synthetic N (one of them)");
    if (o->image_size & (o->image_size - 1) || (o->image_size >> o->num_layers) < 1)
        return cli_usage(a, "--image-size %lld: a power of 2, at least 2^--num-layers",
                         o->image_size);
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

static int save_both(dalle_vae_trainer *t, const char *out, const char *ckpt)
{
    if (dalle_vae_trainer_save(t, ckpt, 1) || dalle_vae_trainer_save(t, out, 0))
        return cli_lib_error();
    return 0;
}

int cmd_train_vae(int argc, char **argv)
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
    if (cli_check_writable("train-vae", o.out) || cli_check_writable("train-vae", o.ckpt))
        return CLI_FAIL;
    cli_catch_sigint();

    dalle_vae_train_params tp = dalle_vae_train_default_params();
    tp.image_size = (int)o.image_size, tp.num_tokens = (int)o.num_tokens;
    tp.codebook_dim = (int)o.codebook_dim, tp.num_layers = (int)o.num_layers;
    tp.num_resnet_blocks = (int)o.num_res, tp.hidden_dim = (int)o.hidden;
    tp.smooth_l1_loss = o.smooth_l1, tp.kl_div_loss_weight = o.klw;
    tp.straight_through = o.straight, tp.starting_temp = o.t0, tp.temp_min = o.tmin;
    tp.anneal_rate = o.anneal, tp.seed = o.seed, tp.batch = (int)o.batch;
    tp.n_threads = (int)o.threads, tp.lr = o.lr, tp.lr_decay = o.lr_decay;

    dalle_vae_trainer *t = NULL;
    dalle_image_data *d = NULL;
    /* a checkpoint brings its own model: the data is read at its size */
    if ((o.resume ? dalle_vae_trainer_resume(o.resume, &tp, &t)
                  : dalle_vae_trainer_create(&tp, &t)) ||
        dalle_vae_trainer_get_params(t, &tp) || load_data(&o, tp.image_size, &d))
        rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    if (!rc && dalle_image_data_count(d) < tp.batch)
        rc = cli_error("train-vae: %lld images, fewer than the batch of %d",
                       (long long)dalle_image_data_count(d), tp.batch);
    if (!rc)
        fprintf(stderr, "train-vae: %lld images (%lld files skipped), %lld weights, %d px, "
                "%d tokens of %d (%d x %d a picture), batch %d, from step %lld to %lld\n",
                (long long)dalle_image_data_count(d), (long long)dalle_image_data_skipped(d),
                (long long)dalle_vae_trainer_num_params(t), tp.image_size, tp.num_tokens,
                tp.codebook_dim, tp.image_size >> tp.num_layers, tp.image_size >> tp.num_layers,
                tp.batch, (long long)dalle_vae_trainer_steps(t), o.steps);
    cli_train_progress p;
    cli_train_progress_init(&p, dalle_vae_trainer_steps(t), o.steps, o.log_every, "images");
    while (!rc && dalle_vae_trainer_steps(t) < o.steps) {
        dalle_vae_train_stats st = dalle_vae_train_default_stats();
        if (dalle_vae_trainer_step_data(t, d, &st)) {
            cli_train_progress_end(&p);
            rc = cli_lib_error();
            break;
        }
        char metrics[160];
        snprintf(metrics, sizeof metrics, "loss %.4f (recon %.4f, kl %.3g)  temp %.3f  lr %.2g",
                 st.loss, st.recon, st.kl, st.temperature, st.lr);
        cli_train_progress_report(&p, st.step, st.epoch, tp.batch, metrics, st.skipped);
        if (cli_interrupted()) {
            cli_train_progress_end(&p);
            rc = save_both(t, o.out, o.ckpt);
            if (!rc)
                fprintf(stderr, "train-vae: interrupted at step %lld; checkpoint '%s' "
                        "(continue with --resume)\n", (long long)st.step, o.ckpt);
            rc = rc ? rc : CLI_INTERRUPTED;
        } else if (o.save_every && st.step % o.save_every == 0 && st.step < o.steps &&
                   dalle_vae_trainer_save(t, o.ckpt, 1)) {
            cli_train_progress_end(&p);
            rc = cli_lib_error();
        }
    }
    cli_train_progress_end(&p);
    if (!rc) {
        rc = save_both(t, o.out, o.ckpt);
        if (!rc)
            fprintf(stderr, "train-vae: wrote '%s' (checkpoint '%s')\n", o.out, o.ckpt);
    }
    dalle_image_data_free(d);
    dalle_vae_trainer_free(t);
    return rc;
}
