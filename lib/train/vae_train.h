/* Training DALLE-pytorch's DiscreteVAE (dalle_pytorch.py, commit 58c1e1a)
 * the way its train_vae.py does, on the CPU.
 *
 * The model: DiscreteVAE(image_size, num_tokens, codebook_dim, num_layers,
 * num_resnet_blocks, hidden_dim, channels, smooth_l1_loss, temperature,
 * straight_through, kl_div_loss_weight, normalization) with the network of
 * lib/vae_dvae.c. One training step is DiscreteVAE.forward(img,
 * return_loss=True, temp=temp):
 *   img' = (img - mean) / std                     (normalization; None: as is)
 *   logits = encoder(img')                        [B][num_tokens][g][g]
 *   one_hot = gumbel_softmax(logits, tau=temp, dim=1, hard=straight_through)
 *   sampled = einsum('b n h w, n d -> b d h w', one_hot, codebook)
 *   out = decoder(sampled)
 *   loss = mse(img', out) (or smooth_l1, beta 1; means over every element)
 *        + kl_div_loss_weight · KL
 * with KL = F.kl_div(log(1/num_tokens), log_softmax(logits), 'batchmean',
 * log_target=True). Upstream passes a ONE-element input, so 'batchmean'
 * divides by 1: the KL is the SUM over images and positions of
 * Σ_n q·(log q - log(1/num_tokens)). We reproduce that.
 * Then Adam (train_vae.py: lr 1e-3, no weight decay), and the schedule of
 * train_vae.py's loop, which does both at in-epoch steps i % 100 == 0
 * (i = 0 included), after the optimizer step:
 *   temp = max(temp · exp(-anneal_rate · global_step), temp_min)
 *   ExponentialLR.step(): lr *= lr_decay_rate
 * (so the learning rate decays every 100 steps, not once per epoch).
 *
 * Gumbel noise comes from the counter-based lib/rng.h: the noise of step s,
 * image b of the batch, position p, token n is
 * rng_gumbel(seed, GUMBEL_STREAM | s, b·g² + p, n) — the same for any
 * thread count and any resume point. torch draws -log(Exp(1)), the same
 * distribution as -log(-log U).
 *
 * Initialisation as PyTorch's defaults: nn.Conv2d / nn.ConvTranspose2d
 * weights kaiming_uniform_(a=√5), i.e. U(±1/√fan_in), and biases
 * U(±1/√fan_in), with fan_in = weight.size(1)·k·k: cin·k² for a
 * convolution, cout·k² for a transposed one (PyTorch takes dim 1 of the
 * [cin][cout][k][k] weight); the codebook (nn.Embedding) N(0, 1). The
 * values are drawn from lib/rng.h (not torch's generator), keyed by
 * (seed, tensor index, element).
 *
 * Weights are one flat vector (tr->pt, param_table.h) in the state-dict
 * order and under the state dict's names (prefixed "vae."), so the
 * optimizer sees one vector and vae_train_write gives a bundle of kind
 * "dvae" that dalle_ctx_create loads as it is.
 *
 * Activations are kept channel-major over the batch, [c][batch][h][w]
 * (lib/train/conv_backward.h). Everything is allocated by vae_train_create;
 * a step allocates nothing. Results are bit-identical for any thread count.
 *
 * Not supported: reinmax (refused); channels other than 3 train but give a
 * bundle the inference side refuses (RGB only).
 */
#ifndef DALLE_TRAIN_VAE_TRAIN_H
#define DALLE_TRAIN_VAE_TRAIN_H

#include <stdint.h>

#include "dalle/dalle.h"
#include "train/adamw.h"
#include "train/param_table.h"

#define VAE_TRAIN_MAX_LAYERS 8
#define VAE_TRAIN_MAX_RES 16

typedef struct vae_train_config {
    /* DiscreteVAE's keyword arguments (upstream defaults in comments) */
    int image_size;          /* 256 */
    int num_tokens;          /* 512 */
    int codebook_dim;        /* 512 */
    int num_layers;          /* 3 */
    int num_resnet_blocks;   /* 0 */
    int hidden_dim;          /* 64 */
    int channels;            /* 3 (1..4) */
    int smooth_l1_loss;      /* 0 */
    double temperature;      /* 0.9: the module's default temp, written to the
                                bundle; training uses the annealed temp below */
    int straight_through;    /* 0 */
    double kl_div_loss_weight; /* 0 */
    int normalize;           /* 1; 0 = normalization=None */
    double norm_mean[4], norm_std[4]; /* (0.5, 0.5, 0.5, 0), (0.5, 0.5, 0.5, 1) */
    /* train_vae.py */
    double learning_rate;    /* 1e-3 */
    double lr_decay_rate;    /* 0.98 */
    double starting_temp;    /* 1.0 */
    double temp_min;         /* 0.5 */
    double anneal_rate;      /* 1e-6 */
    int anneal_every;        /* 100: in-epoch steps between anneal + lr decay */
    int64_t steps_per_epoch; /* 0: one endless epoch (i = the global step) */
    double clip_grad_norm;   /* 0: off (train_vae.py does not clip) */
    adamw_config adam;       /* Adam: betas (0.9, 0.999), eps 1e-8, wd 0 */
    uint64_t seed;           /* initialisation and Gumbel noise */
} vae_train_config;

/* Upstream's defaults (DiscreteVAE() and train_vae.py). */
vae_train_config vae_train_default_config(void);

/* A convolution's tensors inside pt.w (and pt.g). */
typedef struct vae_tconv {
    float *w, *b, *gw, *gb;
    int cin, cout, k, stride, pad, transposed;
} vae_tconv;

typedef struct vae_tres {
    vae_tconv c0, c2, c4; /* net.0 (3×3), net.2 (3×3), net.4 (1×1) */
} vae_tres;

/* What a step measured. */
typedef struct vae_train_stats {
    double loss, recon, kl; /* loss = recon + kl_div_loss_weight · kl */
    double temp, lr;        /* the temperature and learning rate it used */
    double grad_norm;       /* before clipping */
    int skipped;            /* the loss or gradient was not finite: no update */
} vae_train_stats;

typedef struct vae_train vae_train;
struct vae_train {
    vae_train_config cfg;
    int grid; /* tokens per side: image_size / 2^num_layers */
    param_table pt; /* weights pt.w, gradients pt.g (U(±1/√fan_in); the codebook N(0, 1)) */
    float *codebook, *gcodebook;
    vae_tconv enc_down[VAE_TRAIN_MAX_LAYERS], enc_out;
    vae_tres enc_res[VAE_TRAIN_MAX_RES], dec_res[VAE_TRAIN_MAX_RES];
    vae_tconv dec_in, dec_up[VAE_TRAIN_MAX_LAYERS], dec_out;
    adamw opt;
    double lr, temp; /* the current learning rate and temperature */
    int64_t step;    /* optimizer steps taken (train_vae.py's global_step) */
    int max_batch;
    struct tpool *pool; /* set by the caller, not owned (NULL: calling thread) */
    void *act;          /* activations and scratch (vae_train_pass.c) */
};

/* A fresh model (upstream's init from cfg->seed) with its optimizer and
 * every buffer for steps of up to max_batch images. */
dalle_status vae_train_create(const vae_train_config *cfg, int max_batch, vae_train **out);
void vae_train_free(vae_train *tr);
const train_param *vae_train_find(const vae_train *tr, const char *name);

/* DiscreteVAE.forward(pixels, return_loss=True, temp=tr->temp) over
 * pixels [batch][channels][size][size] in [0, 1], with the Gumbel noise of
 * step tr->step; keeps the activations. stats (may be NULL): loss parts. */
dalle_status vae_train_forward(vae_train *tr, const float *pixels, int batch,
                               vae_train_stats *stats);
/* ADDS d loss / d w of the last forward into tr->pt.g. */
void vae_train_backward(vae_train *tr);
void vae_train_zero_grad(vae_train *tr);

/* One whole training step: zero_grad, forward, backward, (clip), Adam at
 * tr->lr, then train_vae.py's anneal / decay; tr->step advances. A
 * non-finite loss or gradient skips the update (stats->skipped) but counts
 * the step. */
dalle_status vae_train_step(vae_train *tr, const float *pixels, int batch,
                            vae_train_stats *stats);

/* The last forward's reconstruction [batch][channels][size][size] mapped
 * back to pixels (x·std + mean, clamped to [0, 1]) as dalle_decode does. */
void vae_train_recons(const vae_train *tr, float *pixels);

/* Inference with the current weights, as the inference side computes it:
 * encode = argmax of the encoder's logits → ids [batch][grid²]; decode =
 * codebook rows → decoder → pixels in [0, 1]. Reuse the training buffers
 * (the last forward's activations are overwritten). batch ≤ max_batch. */
dalle_status vae_train_encode(vae_train *tr, const float *pixels, int batch, int32_t *ids);
dalle_status vae_train_decode(vae_train *tr, const int32_t *ids, int batch, float *pixels);

/* vae.* metadata (every DiscreteVAE kwarg, docs/bundle-keys.md) and every
 * weight under its state-dict name, into a writer of kind "dvae" (or
 * "dalle", whose transformer the caller adds; vae.kind is then written). */
dalle_status vae_train_write(const vae_train *tr, dalle_bundle_writer *w);
/* The optimizer and schedule state (train.adam.*, train.lr.* via
 * adamw_save; train.vae.temp, .step, .seed), for checkpoints that resume
 * bit-exactly: write vae_train_write + vae_train_save_state, then
 * vae_train_resume on a trainer of the same config. */
dalle_status vae_train_save_state(const vae_train *tr, dalle_bundle_writer *w);
/* Weights and, when present, the optimizer state from a checkpoint (the
 * seed too: the Gumbel noise goes on with the checkpoint's stream); every
 * tensor is checked first and nothing changes on failure. */
dalle_status vae_train_resume(vae_train *tr, dalle_bundle *b);

/* Between vae_train.c and vae_train_pass.c. */
dalle_status vae_train_acts_create(vae_train *tr);
void vae_train_acts_free(vae_train *tr);

#endif
