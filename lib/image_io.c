/* Reading images for dalle_encode: PNG / JPEG through stb_image (Debian's
 * libstb), scaled and centre-cropped to the model's size.
 *
 * The crop follows what torchvision does to a PIL image with
 * Resize(size) + CenterCrop(size): the shorter side becomes `size` (the
 * longer one int(size · long / short)), resampled with PIL's antialiased
 * bilinear (triangle) filter, then the centre size × size square is kept,
 * its offset int(round((side - size) / 2)) with Python's round-half-even.
 * PIL rounds to 8 bits between its two passes; libdalle keeps floats, so
 * values can differ from PIL by about one level in 255.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

#define MAX_SIDE 16384
#define MAX_FILE_BYTES ((long)1 << 30)

#define STBI_ASSERT(x) ((void)0) /* never abort inside the library */
#define STBI_NO_STDIO            /* files are read here, to tell I/O from format errors */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_MAX_DIMENSIONS MAX_SIDE
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
/* stb declares static functions that the ONLY_PNG/JPEG build never defines */
#pragma GCC diagnostic ignored "-Wunused-function"
#endif

static const char *fn = "dalle_read_image";

static dalle_status read_file(const char *path, unsigned char **data, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "%s: cannot open '%s': %s", fn, path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return dalle_fail(DALLE_ERR_IO, "%s: cannot read '%s': not a regular file", fn, path);
    }
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return dalle_fail(DALLE_ERR_IO, "%s: cannot read '%s'", fn, path);
    }
    if (n == 0 || n > MAX_FILE_BYTES) {
        fclose(f);
        return dalle_fail(n ? DALLE_ERR_UNSUPPORTED : DALLE_ERR_FORMAT,
                          "%s: '%s' is %s", fn, path, n ? "larger than 1 GiB" : "empty");
    }
    unsigned char *buf = malloc((size_t)n);
    if (!buf) {
        fclose(f);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory reading '%s'", fn, path);
    }
    size_t got = fread(buf, 1, (size_t)n, f);
    int err = ferror(f);
    fclose(f);
    if (got != (size_t)n || err) {
        free(buf);
        return dalle_fail(DALLE_ERR_IO, "%s: cannot read '%s'", fn, path);
    }
    *data = buf;
    *size = n;
    return DALLE_OK;
}

/* PIL's resampling weights for one output coordinate: the taps
 * [*first, *first + *count) of the source axis, normalised to sum 1. */
static void taps(int x, double scale, int in, float *w, int *first, int *count)
{
    const double fscale = scale > 1.0 ? scale : 1.0; /* antialias when shrinking */
    const double support = 1.0 * fscale;             /* the triangle filter's support is 1 */
    const double center = (x + 0.5) * scale;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    if (lo < 0)
        lo = 0;
    if (hi > in)
        hi = in;
    double sum = 0.0;
    int n = hi - lo;
    for (int j = 0; j < n; j++) {
        double t = (j + lo - center + 0.5) / fscale;
        double v = t < 0 ? 1.0 + t : 1.0 - t;
        w[j] = v > 0.0 ? (float)v : 0.0f;
        sum += v > 0.0 ? v : 0.0;
    }
    for (int j = 0; j < n; j++)
        w[j] = sum > 0.0 ? (float)(w[j] / sum) : 0.0f;
    *first = lo;
    *count = n;
}

/* int(round(d / 2)) with Python's round-half-even. */
static int centre_offset(int d)
{
    int k = d / 2;
    return (d % 2 == 0 || k % 2 == 0) ? k : k + 1;
}

/* Resize the 8-bit RGB image (iw × ih) so its shorter side is `size`, and
 * write the centre size × size crop as planar floats in [0, 1]. */
static dalle_status resize_crop(const unsigned char *rgb, int iw, int ih, int size, float *out)
{
    const int64_t plane = (int64_t)size * size;
    if (iw == size && ih == size) {
        for (int64_t i = 0; i < plane; i++)
            for (int c = 0; c < 3; c++)
                out[c * plane + i] = rgb[i * 3 + c] / 255.0f;
        return DALLE_OK;
    }
    int ow, oh; /* the resized image, before the crop */
    if (iw <= ih) {
        ow = size;
        oh = (int)((int64_t)size * ih / iw);
    } else {
        oh = size;
        ow = (int)((int64_t)size * iw / ih);
    }
    const int left = centre_offset(ow - size), top = centre_offset(oh - size);
    const double sx = (double)iw / ow, sy = (double)ih / oh;
    const int maxw = 2 * (int)(sx > 1 ? sx + 1 : 2) + 2, maxh = 2 * (int)(sy > 1 ? sy + 1 : 2) + 2;
    /* horizontal pass over every source row, for the crop's columns only */
    float *tmp = malloc(sizeof(float) * ((size_t)3 * ih * size + (size_t)maxw + (size_t)maxh));
    if (!tmp)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    float *w = tmp + (size_t)3 * ih * size;
    for (int x = 0; x < size; x++) {
        int first, n;
        taps(left + x, sx, iw, w, &first, &n);
        for (int y = 0; y < ih; y++) {
            const unsigned char *row = rgb + ((int64_t)y * iw + first) * 3;
            for (int c = 0; c < 3; c++) {
                float acc = 0.0f;
                for (int j = 0; j < n; j++)
                    acc += w[j] * row[j * 3 + c];
                tmp[((int64_t)c * ih + y) * size + x] = acc;
            }
        }
    }
    /* vertical pass for the crop's rows */
    for (int y = 0; y < size; y++) {
        int first, n;
        taps(top + y, sy, ih, w, &first, &n);
        for (int c = 0; c < 3; c++)
            for (int x = 0; x < size; x++) {
                float acc = 0.0f;
                for (int j = 0; j < n; j++)
                    acc += w[j] * tmp[((int64_t)c * ih + first + j) * size + x];
                acc /= 255.0f;
                out[c * plane + (int64_t)y * size + x] = acc < 0.0f ? 0.0f : acc > 1.0f ? 1.0f : acc;
            }
    }
    free(tmp);
    return DALLE_OK;
}

dalle_status dalle_read_image(const char *path, int size, float *pixels)
{
    if (!path || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          path ? "pixels" : "path");
    if (size < 1 || size > MAX_SIDE)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: size = %d: expected 1..%d", fn, size,
                          MAX_SIDE);
    unsigned char *file = NULL;
    long n = 0;
    dalle_status s = read_file(path, &file, &n);
    if (s)
        return s;
    int iw, ih, comp;
    if (n > INT32_MAX || !stbi_info_from_memory(file, (int)n, &iw, &ih, &comp)) {
        free(file);
        return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s' is not a PNG or JPEG image", fn, path);
    }
    if (iw < 1 || ih < 1 || iw > MAX_SIDE || ih > MAX_SIDE) {
        free(file);
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: '%s' is %dx%d: at most %dx%d supported", fn,
                          path, iw, ih, MAX_SIDE, MAX_SIDE);
    }
    unsigned char *rgb = stbi_load_from_memory(file, (int)n, &iw, &ih, &comp, 3);
    free(file);
    if (!rgb)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s': cannot decode (%s)", fn, path,
                          stbi_failure_reason());
    s = resize_crop(rgb, iw, ih, size, pixels);
    stbi_image_free(rgb);
    return s;
}
