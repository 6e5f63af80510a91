/* dalle train-vae: train a DALLE-pytorch DiscreteVAE on images (or the
 * built-in synthetic world) as train_vae.py does, with the public training
 * API (include/dalle/train.h, docs/training.md). Its output is the --vae of
 * `dalle train-dalle`. */
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train_common.h"

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
    cli_train_opts t;       /* the options every train-* command takes */
    long long image_size, num_tokens, codebook_dim, num_layers, num_res, hidden;
    double lr_decay, klw, t0, tmin, anneal;
    int smooth_l1, straight;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    dalle_vae_train_params d = dalle_vae_train_default_params();
    cli_train_opts_init(&o->t, 0, d.batch, d.lr);
    o->image_size = d.image_size, o->num_tokens = d.num_tokens, o->codebook_dim = d.codebook_dim;
    o->num_layers = d.num_layers, o->num_res = d.num_resnet_blocks, o->hidden = d.hidden_dim;
    o->lr_decay = d.lr_decay, o->t0 = d.starting_temp, o->tmin = d.temp_min;
    o->anneal = d.anneal_rate;
    cli_args_init(a, "train-vae", argc, argv);
    int rc = 0;
    while (cli_train_next(a, &o->t, usage, &rc)) {
        if (cli_is(a, NULL, "--image-size")) rc = cli_int_value(a, 16, 1024, &o->image_size);
        else if (cli_is(a, NULL, "--num-tokens")) rc = cli_int_value(a, 2, 1 << 20, &o->num_tokens);
        else if (cli_is(a, NULL, "--codebook-dim")) rc = cli_int_value(a, 1, 65536, &o->codebook_dim);
        else if (cli_is(a, NULL, "--num-layers")) rc = cli_int_value(a, 1, 8, &o->num_layers);
        else if (cli_is(a, NULL, "--num-resnet-blocks")) rc = cli_int_value(a, 0, 16, &o->num_res);
        else if (cli_is(a, NULL, "--hidden-dim")) rc = cli_int_value(a, 1, 16384, &o->hidden);
        else if (cli_is(a, NULL, "--smooth-l1-loss")) rc = cli_flag(a), o->smooth_l1 = 1;
        else if (cli_is(a, NULL, "--kl-loss-weight")) rc = cli_float_value(a, 0, 0, 1e6, 0, &o->klw);
        else if (cli_is(a, NULL, "--straight-through")) rc = cli_flag(a), o->straight = 1;
        else if (cli_is(a, NULL, "--lr-decay")) rc = cli_float_value(a, 0, 1, 1, 0, &o->lr_decay);
        else if (cli_is(a, NULL, "--starting-temp")) rc = cli_float_value(a, 0, 1, 1e3, 0, &o->t0);
        else if (cli_is(a, NULL, "--temp-min")) rc = cli_float_value(a, 0, 1, 1e3, 0, &o->tmin);
        else if (cli_is(a, NULL, "--anneal-rate")) rc = cli_float_value(a, 0, 0, 1, 0, &o->anneal);
        else return cli_unexpected(a);
    }
    if (rc || (rc = cli_train_check_io(a, &o->t, 0, NULL)))
        return rc;
    if (o->image_size & (o->image_size - 1) || (o->image_size >> o->num_layers) < 1)
        return cli_usage(a, "--image-size %lld: a power of 2, at least 2^--num-layers",
                         o->image_size);
    return 0;
}

/* The trainer as cli_train_loop drives it, on this data. */
typedef struct step_data {
    dalle_image_data *d;
    int batch; /* images a step */
} step_data;

static int64_t steps(const void *t) { return dalle_vae_trainer_steps(t); }
static dalle_status save(void *t, const char *path, int with_opt)
{
    return dalle_vae_trainer_save(t, path, with_opt);
}
static dalle_status step(void *t, void *data, cli_train_step *out)
{
    const step_data *b = data;
    dalle_vae_train_stats st = dalle_vae_train_default_stats();
    dalle_status s = dalle_vae_trainer_step_data(t, b->d, &st);
    snprintf(out->metrics, sizeof out->metrics,
             "loss %.4f (recon %.4f, kl %.3g)  temp %.3f  lr %.2g", st.loss, st.recon, st.kl,
             st.temperature, st.lr);
    out->step = st.step, out->epoch = st.epoch, out->units = b->batch;
    out->skipped = st.skipped;
    return s;
}

int cmd_train_vae(int argc, char **argv)
{
    opts o;
    cli_args a;
    int rc = parse(argc, argv, &o, &a);
    if (rc)
        return rc < 0 ? CLI_OK : rc;
    const cli_train_opts *c = &o.t;
    if (cli_train_prepare(&o.t, "train-vae"))
        return CLI_FAIL;
    cli_catch_sigint();

    dalle_vae_train_params tp = dalle_vae_train_default_params();
    tp.image_size = (int)o.image_size, tp.num_tokens = (int)o.num_tokens;
    tp.codebook_dim = (int)o.codebook_dim, tp.num_layers = (int)o.num_layers;
    tp.num_resnet_blocks = (int)o.num_res, tp.hidden_dim = (int)o.hidden;
    tp.smooth_l1_loss = o.smooth_l1, tp.kl_div_loss_weight = o.klw;
    tp.straight_through = o.straight, tp.starting_temp = o.t0, tp.temp_min = o.tmin;
    tp.anneal_rate = o.anneal, tp.seed = c->seed, tp.batch = (int)c->batch;
    tp.n_threads = (int)c->threads, tp.lr = c->lr, tp.lr_decay = o.lr_decay;

    dalle_vae_trainer *t = NULL;
    dalle_image_data *d = NULL;
    /* a checkpoint brings its own model: the data is read at its size */
    if ((c->resume ? dalle_vae_trainer_resume(c->resume, &tp, &t)
                   : dalle_vae_trainer_create(&tp, &t)) ||
        dalle_vae_trainer_get_params(t, &tp) || cli_train_load_images(c, tp.image_size, &d))
        rc = cli_interrupted() ? CLI_INTERRUPTED : cli_lib_error();
    if (!rc && dalle_image_data_count(d) < tp.batch)
        rc = cli_error("train-vae: %lld images, fewer than the batch of %d",
                       (long long)dalle_image_data_count(d), tp.batch);
    if (!rc) {
        fprintf(stderr, "train-vae: %lld images (%lld files skipped), %lld weights, %d px, "
                "%d tokens of %d (%d x %d a picture), batch %d, from step %lld to %lld\n",
                (long long)dalle_image_data_count(d), (long long)dalle_image_data_skipped(d),
                (long long)dalle_vae_trainer_num_params(t), tp.image_size, tp.num_tokens,
                tp.codebook_dim, tp.image_size >> tp.num_layers, tp.image_size >> tp.num_layers,
                tp.batch, (long long)dalle_vae_trainer_steps(t), c->steps);
        step_data b = {d, tp.batch};
        const cli_trainer run = {"train-vae", "images", t, &b, steps, step, save};
        rc = cli_train_loop(&run, c);
    }
    dalle_image_data_free(d);
    dalle_vae_trainer_free(t);
    return rc;
}
