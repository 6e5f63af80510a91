/* Training data on disk in DALLE-pytorch's layout (docs/synthetic-world.md):
 * a folder (searched recursively) of images, each with a same-named .txt
 * beside it whose non-empty lines are captions of that image; and the
 * writer that puts the synthetic world into such a folder. */
#ifndef DALLE_TRAIN_DATASET_H
#define DALLE_TRAIN_DATASET_H

#include <stdint.h>

#include "dalle/dalle.h"
#include "train/synth.h"

typedef struct dataset dataset;

enum {
    /* Fail on an image without a caption file, a caption file without an
     * image, a caption file with no caption, or two images of one name,
     * instead of skipping them (DALLE-pytorch skips). */
    DATASET_STRICT = 1
};

/* List the pairs under `dir`: images *.png, *.jpg, *.jpeg (any case),
 * paired with the .txt of the same name in the same folder, sorted by path
 * so that item i is the same on every machine; hidden entries (".x") are
 * skipped; folders nest at most 32 deep. Images are read later, one at a
 * time (dataset_image), at `size` × `size`. Errors: DALLE_ERR_IO (dir
 * missing, not a folder, unreadable), DALLE_ERR_FORMAT (strict: the first
 * offending file), DALLE_ERR_NOT_FOUND (no pair at all),
 * DALLE_ERR_INVALID_ARGUMENT, DALLE_ERR_OUT_OF_MEMORY. */
dalle_status dataset_open(const char *dir, int size, unsigned flags, dataset **out);
void dataset_close(dataset *ds);

int64_t dataset_count(const dataset *ds);
/* Files passed over (not strict): unpaired images and captions, empty
 * caption files, second images of one name. */
int64_t dataset_skipped(const dataset *ds);
const char *dataset_image_path(const dataset *ds, int64_t i); /* NULL out of range */
/* Captions of pair i: every non-empty line, without its line ending or
 * surrounding blanks; upstream picks one at random per step. */
int dataset_caption_count(const dataset *ds, int64_t i); /* 0 out of range */
const char *dataset_caption(const dataset *ds, int64_t i, int k);

/* Image of pair i as pixels [3][size][size] in [0, 1]: dalle_read_image's
 * resize of the shorter side and centre crop (its errors name the file). */
dalle_status dataset_image(const dataset *ds, int64_t i, float *pixels);

/* Write items first .. first + count - 1 of the synthetic world to `dir`
 * (created if missing; its parent must exist) as %08llu.png (size px) and
 * %08llu.txt: the item's own caption (synth_sample's), then up to
 * n_captions - 1 other captions of the same scene (other wordings, stating
 * more or less of it), all distinct. Held-out items' captions always state
 * the background. Errors as synth_sample, and DALLE_ERR_IO naming the file. */
dalle_status synth_write_folder(const char *dir, const synth_world *world, uint64_t seed,
                                uint64_t first, int64_t count, synth_split split, int size,
                                int n_captions);

#endif
