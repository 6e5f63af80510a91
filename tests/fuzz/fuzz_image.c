/* Fuzz target for image files (lib/image_io.c: dalle_read_image, through
 * its in-memory entry point image_read_memory; stb_image's PNG and JPEG
 * decoders, our size checks, the resize and centre crop).
 *
 * The input is the file; the output size (1..48 pixels a side) follows
 * from its length, so that one seed is read at several scales. A decoded
 * image must give pixels in [0, 1]; a refused one an error status with the
 * pixels untouched. Anything else, a crash, a sanitizer report, a leak or a
 * hang is a bug. Images declaring more than 4 Mpixels are skipped (their
 * memory is no bug, but would stop libFuzzer). Seeds: corpus_image/
 * (make_image_corpus.py).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/dalle.h"
#include "fuzz.h"
#include "image_io.h"

#define SENTINEL 12345.0f
#define MAX_PIXELS (4 << 20) /* the fuzzer's memory: the library takes 16384 x 16384 */

static uint32_t be(const uint8_t *p, int n)
{
    uint32_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The largest width x height the input declares (PNG IHDR, any JPEG SOF
 * marker): decoding a legitimately huge image costs gigabytes, which is no
 * bug but would stop libFuzzer (-rss_limit_mb), so such inputs are skipped. */
static uint64_t declared_pixels(const uint8_t *p, size_t n)
{
    uint64_t most = 0;
    if (n >= 24 && !memcmp(p, "\x89PNG", 4))
        most = (uint64_t)be(p + 16, 4) * be(p + 20, 4);
    for (size_t i = 0; i + 9 <= n; i++)
        if (p[i] == 0xFF && p[i + 1] >= 0xC0 && p[i + 1] <= 0xCF && p[i + 1] != 0xC4 &&
            p[i + 1] != 0xC8 && p[i + 1] != 0xCC) {
            uint64_t px = (uint64_t)be(p + i + 5, 2) * be(p + i + 7, 2);
            most = px > most ? px : most;
        }
    return most;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (declared_pixels(data, size) > MAX_PIXELS)
        return 0;
    const int out = 1 + (int)(size % 48);
    const size_t n = (size_t)3 * out * out;
    float *px = malloc(n * sizeof *px);
    if (!px)
        return 0;
    for (size_t i = 0; i < n; i++)
        px[i] = SENTINEL;
    dalle_status s = fuzz_note("image_read_memory", image_read_memory(data, size, "fuzz input", out, px));
    for (size_t i = 0; i < n; i++)
        if (s == DALLE_OK ? !(px[i] >= 0.0f && px[i] <= 1.0f) : px[i] != SENTINEL)
            FUZZ_BUG(); /* a pixel out of range, or written by a failed read */
    if (s != DALLE_OK && s != DALLE_ERR_FORMAT && s != DALLE_ERR_UNSUPPORTED &&
        s != DALLE_ERR_OUT_OF_MEMORY)
        FUZZ_BUG();
    free(px);
    return 0;
}
