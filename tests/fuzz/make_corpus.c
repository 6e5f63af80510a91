/* Writes the seed bundles of fuzz_model and fuzz_checkpoint (README.md):
 *
 *   make_corpus TESTS_FUZZ_DIR
 *
 * corpus_model/: a tiny DiscreteVAE, a DALL·E transformer on it (with the
 * tokenizer) and a CLIP, as the trainers save them without their optimiser;
 * corpus_checkpoint/: the same three with the optimiser state (what a
 * resume reads). Every model is as small as the trainers allow, so that the
 * seeds stay a few KB and the fuzzers run them fast. Not a test: run it
 * after a change of the bundle layout or of a trainer's checkpoint.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/train.h"

/* A merges file of a few merges (the 512 byte tokens are implicit). */
static const char merges[] = "#version: 0.2\nr e\nre d</w>\nc i\nci r\ncir c\ncirc l\n"
                             "circl e</w>\n";

static char out_dir[4096];

static const char *at(const char *sub, const char *name)
{
    static char buf[4][4200];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s/%s", out_dir, sub, name);
    return buf[k];
}

static int fail(const char *what)
{
    fprintf(stderr, "make_corpus: %s: %s\n", what, dalle_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus TESTS_FUZZ_DIR\n");
        return 2;
    }
    snprintf(out_dir, sizeof out_dir, "%s", argv[1]);
    const char *merges_path = at("corpus_merges", "small.txt");
    FILE *f = fopen(merges_path, "wb");
    if (!f || fwrite(merges, 1, sizeof merges - 1, f) != sizeof merges - 1 || fclose(f))
        return fail(merges_path);

    dalle_vae_train_params vp = dalle_vae_train_default_params();
    vp.image_size = 8;
    vp.num_layers = 1;
    vp.num_tokens = 4;
    vp.codebook_dim = 4;
    vp.num_resnet_blocks = 1;
    vp.hidden_dim = 4;
    vp.batch = 1;
    vp.n_threads = 1;
    dalle_vae_trainer *vae;
    if (dalle_vae_trainer_create(&vp, &vae) ||
        dalle_vae_trainer_save(vae, at("corpus_model", "vae.dalle"), 0) ||
        dalle_vae_trainer_save(vae, at("corpus_checkpoint", "vae.dalle"), 1))
        return fail("the VAE");
    dalle_vae_trainer_free(vae);

    dalle_train_params tp = dalle_train_default_params();
    tp.dim = 8;
    tp.depth = 2;
    tp.heads = 1;
    tp.dim_head = 12;
    tp.text_seq_len = 4;
    tp.num_text_tokens = 16;
    tp.attn_types = "full,axial_row";
    tp.shared_ff_ids = "a,a";
    tp.batch = 1;
    tp.n_threads = 1;
    dalle_trainer *tr;
    if (dalle_trainer_create(at("corpus_model", "vae.dalle"), merges_path, &tp, &tr) ||
        dalle_trainer_save(tr, at("corpus_model", "dalle.dalle"), 0) ||
        dalle_trainer_save(tr, at("corpus_checkpoint", "dalle.dalle"), 1))
        return fail("the transformer");
    dalle_trainer_free(tr);

    dalle_clip_train_params cp = dalle_clip_train_default_params();
    cp.dim_text = cp.dim_image = cp.dim_latent = 8;
    cp.text_enc_depth = cp.visual_enc_depth = 1;
    cp.text_heads = cp.visual_heads = 1;
    cp.text_seq_len = 4;
    cp.num_text_tokens = 16;
    cp.visual_image_size = 8;
    cp.visual_patch_size = 4;
    cp.batch = 2;
    cp.n_threads = 1;
    dalle_clip_trainer *clip;
    if (dalle_clip_trainer_create(merges_path, &cp, &clip) ||
        dalle_clip_trainer_save(clip, at("corpus_model", "clip.dalle"), 0) ||
        dalle_clip_trainer_save(clip, at("corpus_checkpoint", "clip.dalle"), 1))
        return fail("CLIP");
    dalle_clip_trainer_free(clip);
    printf("make_corpus: seeds written under %s\n", out_dir);
    return 0;
}
