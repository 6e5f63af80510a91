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
#include "image_io.h"

#define MAX_SIDE 16384
#define MAX_FILE_BYTES ((long)1 << 30)

#define STBI_ASSERT(x) ((void)0) /* never abort inside the library */
/* stb 2.27 decodes a JPEG scan with a Huffman table no DHT defined, from the
 * uninitialised memory of its decoder; zeroed, such a table decodes nothing
 * but zeros, within bounds. So stb's allocations are zeroed. */
#define STBI_MALLOC(sz) calloc(1, sz)
#define STBI_REALLOC(p, newsz) realloc(p, newsz)
#define STBI_FREE(p) free(p)
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

static dalle_status check_size(int size)
{
    if (size < 1 || size > MAX_SIDE)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: size = %d: expected 1..%d", fn, size,
                          MAX_SIDE);
    return DALLE_OK;
}

/* stb_image 2.27 (Debian's libstb) trusts the code counts of a JPEG
 * Huffman table: a DHT segment declaring more than 256 codes makes it write
 * past its tables (heap memory). Every FF C4 of the file is read here as the
 * start of a DHT exactly as stb would read one (bytes past the end count as
 * 0, as stb's reader returns), and a table of more than 256 codes is refused
 * before stb sees the file. Checking every FF C4, not only those of a
 * walk of the segments, cannot miss one that stb reaches; a valid JPEG has
 * FF C4 only at its DHT markers (0xFF is stuffed as FF 00 in scans). */
static int jpeg_huffman_ok(const unsigned char *p, size_t n)
{
    size_t soi = 0; /* stb reads a JPEG (even for stbi_info) when FF..FF D8 starts the file */
    while (soi < n && p[soi] == 0xFF)
        soi++;
    if (soi == 0 || soi == n || p[soi] != 0xD8)
        return 1; /* not a JPEG */
    for (size_t i = soi + 1; i + 1 < n; i++) {
        if (p[i] != 0xFF || p[i + 1] != 0xC4)
            continue;
        size_t at = i + 2;
        long left = at + 1 < n ? ((long)p[at] << 8 | p[at + 1]) - 2 : -2;
        at += 2;
        while (left > 0 && at < n) {
            long codes = 0;
            for (size_t b = at + 1; b < at + 17 && b < n; b++)
                codes += p[b];
            if (codes > 256)
                return 0;
            left -= 17 + codes;
            at += 17 + (size_t)codes;
        }
    }
    return 1;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Two things stb 2.27 does with the IDAT chunks of a PNG, which the chunks
 * are checked for first (walked as stb walks them: length, type, data, crc
 * from byte 8 on, up to IEND):
 *  - it grows its buffer to hold an IDAT's declared length before it reads
 *    the data, so a 60-byte file declaring a 2 GiB chunk allocates 2 GiB:
 *    a chunk that runs past the end of the file is refused;
 *  - it copies an empty IDAT that comes before any image data into its
 *    still NULL buffer (memcpy(NULL, p, 0): undefined behaviour, which the
 *    sanitizers stop at): empty IDATs hold nothing, so they are left out of
 *    a copy of the file (*copy, *copy_n), which is decoded instead.
 * *copy stays NULL when the file is not a PNG or has no empty IDAT. */
static dalle_status png_chunks(const unsigned char *p, size_t n, const char *name,
                               unsigned char **copy, size_t *copy_n)
{
    static const unsigned char sig[8] = {137, 'P', 'N', 'G', 13, 10, 26, 10};
    *copy = NULL;
    if (n < 8 || memcmp(p, sig, 8))
        return DALLE_OK;
    size_t pos = 8, from = 0, to = 0; /* p[from, pos) still to copy, at *copy + to */
    while (n - pos >= 8) {
        const uint32_t len = be32(p + pos);
        const unsigned char *type = p + pos + 4;
        if (!memcmp(type, "IEND", 4))
            break;
        if (!memcmp(type, "IDAT", 4) && len > n - pos - 8) {
            free(*copy);
            *copy = NULL;
            return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s': cannot decode (the PNG IDAT chunk "
                              "at byte %zu, of %lu bytes, runs past the end of the file: %zu "
                              "bytes)", fn, name, pos, (unsigned long)len, n);
        }
        if (!memcmp(type, "IDAT", 4) && len == 0) {
            if (!*copy && !(*copy = malloc(n)))
                return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory reading '%s'", fn,
                                  name);
            memcpy(*copy + to, p + from, pos - from);
            to += pos - from;
            from = pos + 12 < n ? pos + 12 : n;
        }
        if (len > n - pos - 8 || n - pos - 8 - len < 4)
            break; /* the last chunk (stb fails on it, or reads its crc as 0) */
        pos += 12 + (size_t)len;
    }
    if (*copy) {
        memcpy(*copy + to, p + from, n - from);
        *copy_n = to + (n - from);
    }
    return DALLE_OK;
}

static dalle_status decode_png_or_jpeg(const unsigned char *file, size_t n, const char *name,
                                       int size, float *pixels)
{
    int iw, ih, comp;
    if (!jpeg_huffman_ok(file, n)) /* before stb reads the headers, which it does for info */
        return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s': cannot decode (a JPEG Huffman table, "
                          "DHT, of more than 256 codes)", fn, name);
    if (n > INT32_MAX || !stbi_info_from_memory(file, (int)n, &iw, &ih, &comp))
        return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s' is not a PNG or JPEG image", fn, name);
    if (iw < 1 || ih < 1 || iw > MAX_SIDE || ih > MAX_SIDE)
        return dalle_fail(DALLE_ERR_UNSUPPORTED, "%s: '%s' is %dx%d: at most %dx%d supported", fn,
                          name, iw, ih, MAX_SIDE, MAX_SIDE);
    stbi__g_failure_reason = NULL; /* some failures leave no reason: not an old one then */
    unsigned char *rgb = stbi_load_from_memory(file, (int)n, &iw, &ih, &comp, 3);
    if (!rgb) {
        const char *why = stbi_failure_reason();
        return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s': cannot decode (%s)", fn, name,
                          why && *why ? why : "corrupt data");
    }
    dalle_status s = resize_crop(rgb, iw, ih, size, pixels);
    stbi_image_free(rgb);
    return s;
}

static dalle_status decode(const unsigned char *file, size_t n, const char *name, int size,
                           float *pixels)
{
    size_t copy_n = 0;
    unsigned char *copy;
    dalle_status s = png_chunks(file, n, name, &copy, &copy_n);
    if (s)
        return s;
    s = copy ? decode_png_or_jpeg(copy, copy_n, name, size, pixels)
             : decode_png_or_jpeg(file, n, name, size, pixels);
    free(copy);
    return s;
}

dalle_status image_read_memory(const void *data, size_t n, const char *name, int size,
                               float *pixels)
{
    if (!data || !name || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !data ? "data" : !name ? "name" : "pixels");
    dalle_status s = check_size(size);
    if (s)
        return s;
    if (!n)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: '%s' is empty", fn, name);
    return decode(data, n, name, size, pixels);
}

dalle_status dalle_read_image(const char *path, int size, float *pixels)
{
    if (!path || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          path ? "pixels" : "path");
    dalle_status s = check_size(size);
    if (s)
        return s;
    unsigned char *file = NULL;
    long n = 0;
    if ((s = read_file(path, &file, &n)))
        return s;
    s = decode(file, (size_t)n, path, size, pixels);
    free(file);
    return s;
}
