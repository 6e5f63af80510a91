/* Writing images as PNG files (stb_image_write from Debian's libstb). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "error.h"

#define STBIW_ASSERT(x) ((void)0) /* never abort inside the library */
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

/* [0, 1] float to an 8-bit channel: clamp, NaN → 0, round to nearest. */
static uint8_t to_byte(float v)
{
    if (!(v > 0.0f))
        return 0;
    if (v >= 1.0f)
        return 255;
    return (uint8_t)lrintf(v * 255.0f);
}

dalle_status dalle_write_png(const char *path, const float *pixels, int batch, int height,
                             int width)
{
    if (!path || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_write_png: %s is NULL",
                          path ? "pixels" : "path");
    if (batch < 1 || batch > 4096 || height < 1 || width < 1 || height > 16384 || width > 16384)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "dalle_write_png: batch %d, %dx%d: expected 1..4096 images of at most "
                          "16384x16384",
                          batch, height, width);
    /* A near-square grid, images left to right then top to bottom. */
    int cols = (int)ceil(sqrt((double)batch));
    int rows = (batch + cols - 1) / cols;
    int64_t gw = (int64_t)cols * width, gh = (int64_t)rows * height;
    if (gw * gh * 3 > ((int64_t)1 << 31) - 1)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_write_png: grid of %lldx%lld is too large",
                          (long long)gw, (long long)gh);
    uint8_t *rgb = calloc((size_t)(gw * gh * 3), 1);
    if (!rgb)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dalle_write_png: out of memory");
    int64_t plane = (int64_t)height * width;
    for (int b = 0; b < batch; b++) {
        int64_t x0 = (int64_t)(b % cols) * width, y0 = (int64_t)(b / cols) * height;
        const float *img = pixels + (int64_t)b * 3 * plane;
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                for (int c = 0; c < 3; c++)
                    rgb[((y0 + y) * gw + x0 + x) * 3 + c] =
                        to_byte(img[c * plane + (int64_t)y * width + x]);
    }
    int ok = stbi_write_png(path, (int)gw, (int)gh, 3, rgb, (int)(gw * 3));
    free(rgb);
    if (!ok)
        return dalle_fail(DALLE_ERR_IO, "dalle_write_png: cannot write '%s'", path);
    return DALLE_OK;
}
