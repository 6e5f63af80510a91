/* Fuzz target for training data folders (lib/train/dataset.c: the folder
 * walk, the pairing of images with same-named .txt captions and the caption
 * file reader; lib/train/image_data.c, which keeps what it read).
 *
 * The first byte of the input lays out the folder, the rest is the caption
 * file:
 *   bit 0  strict (dalle_image_data_params.strict)
 *   bit 1  no image beside the caption file
 *   bit 2  a second image of the same name (.jpg)
 *   bit 3  the pair in a sub-folder
 *   bit 4  the caption file twice (a second pair, b.txt / b.png)
 *   bit 5  an image without a caption file
 *   bit 6  a hidden file (.x.txt) holding the caption too
 * The images are one small valid PNG. dalle_image_data_folder must then
 * either succeed, with every caption non-empty, on one line and trimmed, at
 * most 64 an image, or fail with the caller's pointer untouched. Anything
 * else, a crash, a sanitizer report, a leak or a hang is a bug. Seeds:
 * corpus_captions/.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/train.h"
#include "fuzz.h"

#define SIZE 16

static uint8_t *png; /* a SIZE × SIZE PNG, made once */
static size_t png_size;

static int make_png(void)
{
    float px[3 * SIZE * SIZE];
    for (int i = 0; i < 3 * SIZE * SIZE; i++)
        px[i] = (float)(i % 7) / 6.0f;
    char path[4200];
    const char *dir = fuzz_temp_dir();
    if (!dir)
        return -1;
    snprintf(path, sizeof path, "%s/seed.png", dir);
    if (dalle_write_png(path, px, 1, SIZE, SIZE) != DALLE_OK)
        return -1;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    png = malloc(1 << 16);
    png_size = png ? fread(png, 1, 1 << 16, f) : 0;
    fclose(f);
    return png_size ? 0 : -1;
}

static int put(const char *name, const void *data, size_t size)
{
    char rel[256];
    snprintf(rel, sizeof rel, "data/%s", name);
    return fuzz_write_file(rel, data, size) ? 0 : -1;
}

static int trimmed_line(const char *c)
{
    size_t n = strlen(c);
    return n > 0 && !strchr(c, '\n') && !strchr(" \t\r", c[0]) && !strchr(" \t\r", c[n - 1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || (!png && make_png()))
        return 0;
    const unsigned flags = data[0];
    const uint8_t *text = data + 1;
    const size_t n = size - 1;
    char dir[4200];
    const char *d = fuzz_fresh_dir("data");
    if (!d)
        return 0;
    snprintf(dir, sizeof dir, "%s", d);
    const char *sub = flags & 8 ? "sub/" : "";
    char name[64];
    if (flags & 8) {
        if (!fuzz_fresh_dir("data/sub"))
            return 0;
    }
    int bad = 0;
    snprintf(name, sizeof name, "%sa.txt", sub);
    bad |= put(name, text, n);
    if (!(flags & 2)) {
        snprintf(name, sizeof name, "%sa.png", sub);
        bad |= put(name, png, png_size);
    }
    if (flags & 4) {
        snprintf(name, sizeof name, "%sa.JPG", sub);
        bad |= put(name, png, png_size);
    }
    if (flags & 16)
        bad |= put("b.txt", text, n) | put("b.png", png, png_size);
    if (flags & 32)
        bad |= put("c.jpeg", png, png_size);
    if (flags & 64)
        bad |= put(".x.txt", text, n) | put(".x.png", png, png_size);
    if (bad)
        return 0;

    dalle_image_data_params p = dalle_image_data_default_params();
    p.image_size = SIZE;
    p.strict = (int)(flags & 1);
    dalle_image_data *sentinel = (dalle_image_data *)&p, *set = sentinel;
    dalle_status s = fuzz_note("dalle_image_data_folder", dalle_image_data_folder(dir, &p, &set));
    if (s != DALLE_OK) {
        if (set != sentinel)
            FUZZ_BUG();
        return 0;
    }
    const int64_t count = dalle_image_data_count(set);
    if (count < 1 || count > 2 || dalle_image_data_image_size(set) != SIZE)
        FUZZ_BUG();
    for (int64_t i = 0; i < count; i++) {
        const int nc = dalle_image_data_caption_count(set, i);
        if (nc < 1 || nc > 64)
            FUZZ_BUG();
        for (int k = 0; k < nc; k++)
            if (!trimmed_line(dalle_image_data_caption(set, i, k)))
                FUZZ_BUG();
    }
    float px[2][3 * SIZE * SIZE];
    const char *caps[2];
    if (dalle_image_data_batch(set, 1, 0, (int)count, px[0], caps, NULL) != DALLE_OK)
        FUZZ_BUG();
    dalle_image_data_free(set);
    return 0;
}

int fuzz_replay_end(void)
{
    free(png);
    png = NULL;
    return 0;
}
