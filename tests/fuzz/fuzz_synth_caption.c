/* Fuzz target for the synthetic world's caption parser
 * (dalle_synth_parse_caption, lib/train/judge.c synth_parse_caption) and the
 * judge that reads a picture against a parsed caption (dalle_synth_judge).
 *
 * The input, up to its first NUL, is a caption. A caption that parses must
 * give a scene of 1 or 2 objects whose colours, shapes, size, relation and
 * background are in range; one that does not, DALLE_ERR_FORMAT or
 * DALLE_ERR_TOO_LONG with the caller's scene untouched. The judge then
 * reads a fixed picture of the world against it. Anything else, a crash, a
 * sanitizer report, a leak or a hang is a bug. Seeds: corpus_synth_caption/.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/train.h"
#include "fuzz.h"

#define SIZE 32

static float picture[3 * SIZE * SIZE];
static int have_picture;

static int in(int v, int n) { return v >= 0 && v < n; }

static void check_scene(const dalle_synth_scene *s)
{
    if (s->n_objects < 1 || s->n_objects > 2 || !in(s->background, DALLE_SYNTH_N_COLORS))
        FUZZ_BUG();
    for (int k = 0; k < s->n_objects; k++)
        if (!in(s->objects[k].color, DALLE_SYNTH_N_COLORS) ||
            !in(s->objects[k].shape, DALLE_SYNTH_N_SHAPES))
            FUZZ_BUG();
    if (s->n_objects == 2 && !in(s->relation, DALLE_SYNTH_N_RELATIONS))
        FUZZ_BUG();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!have_picture) {
        dalle_synth *w;
        if (dalle_synth_create(7, NULL, &w) != DALLE_OK)
            return 0;
        char caption[256];
        have_picture = dalle_synth_sample(w, 3, SIZE, picture, caption, sizeof caption, NULL) ==
                       DALLE_OK;
        dalle_synth_free(w);
    }
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    dalle_synth_scene scene = dalle_synth_default_scene(), before;
    memset(&scene.objects, 0x5a, sizeof scene.objects);
    before = scene;
    dalle_status s = fuzz_note("dalle_synth_parse_caption", dalle_synth_parse_caption(text, &scene));
    if (s == DALLE_OK) {
        check_scene(&scene);
        dalle_synth_verdict v = dalle_synth_default_verdict();
        dalle_synth_scene seen = dalle_synth_default_scene();
        if (have_picture && (dalle_synth_judge(picture, SIZE, text, &v, &seen) != DALLE_OK ||
                             v.asked < 2 || v.asked > 5 || v.right < 0 || v.right > v.asked))
            FUZZ_BUG();
    } else if ((s != DALLE_ERR_FORMAT && s != DALLE_ERR_TOO_LONG) ||
               memcmp(&scene, &before, sizeof scene)) {
        FUZZ_BUG();
    }
    free(text);
    return 0;
}
