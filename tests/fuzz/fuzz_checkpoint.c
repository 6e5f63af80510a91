/* Fuzz target for the trainers' checkpoints (dalle_trainer_resume,
 * dalle_vae_trainer_resume, dalle_clip_trainer_resume: lib/train/trainer.c,
 * vae_trainer.c, clip_trainer.c, trainer_common.c's optimiser state,
 * merges_io.c, and the model settings they parse: attention types, shared
 * layer ids, schedules).
 *
 * The input is a bundle, written to a temporary file and resumed by each
 * trainer. A resume must either give a trainer that reports its step and
 * parameters, or an error status with the caller's pointer untouched.
 * Anything else, a crash, a sanitizer report, a leak or a hang is a bug.
 * Seeds: corpus_checkpoint/ (make_corpus writes them: one checkpoint of
 * each trainer, with and without the optimiser). In the libFuzzer build the
 * bundle's crc32s are not checked (README.md).
 */
#include <stdint.h>
#include <stdlib.h>

#include "dalle/train.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("checkpoint.dalle", data, size);
    if (!path)
        return 0;

    dalle_train_params tp = dalle_train_default_params();
    tp.n_threads = 1;
    dalle_trainer *t = NULL;
    if (fuzz_note("dalle_trainer_resume", dalle_trainer_resume(path, &tp, &t)) == DALLE_OK) {
        dalle_train_params got = dalle_train_default_params();
        if (dalle_trainer_get_params(t, &got) != DALLE_OK || dalle_trainer_steps(t) < 0 ||
            dalle_trainer_num_params(t) < 1)
            FUZZ_BUG();
        dalle_trainer_free(t);
    } else if (t) {
        FUZZ_BUG(); /* a failed resume wrote the caller's pointer */
    }

    dalle_vae_train_params vp = dalle_vae_train_default_params();
    vp.n_threads = 1;
    dalle_vae_trainer *v = NULL;
    if (fuzz_note("dalle_vae_trainer_resume", dalle_vae_trainer_resume(path, &vp, &v)) == DALLE_OK) {
        dalle_vae_train_params got = dalle_vae_train_default_params();
        if (dalle_vae_trainer_get_params(v, &got) != DALLE_OK || dalle_vae_trainer_steps(v) < 0 ||
            dalle_vae_trainer_num_params(v) < 1)
            FUZZ_BUG();
        dalle_vae_trainer_free(v);
    } else if (v) {
        FUZZ_BUG();
    }

    dalle_clip_train_params cp = dalle_clip_train_default_params();
    cp.n_threads = 1;
    dalle_clip_trainer *c = NULL;
    if (fuzz_note("dalle_clip_trainer_resume", dalle_clip_trainer_resume(path, &cp, &c)) == DALLE_OK) {
        dalle_clip_train_params got = dalle_clip_train_default_params();
        if (dalle_clip_trainer_get_params(c, &got) != DALLE_OK ||
            dalle_clip_trainer_steps(c) < 0 || dalle_clip_trainer_num_params(c) < 1)
            FUZZ_BUG();
        dalle_clip_trainer_free(c);
    } else if (c) {
        FUZZ_BUG();
    }
    return 0;
}
