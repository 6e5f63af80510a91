/* CLIP's image preprocessing for raw 8-bit RGB of any size.
 *
 * OpenAI's clip.load() transform is torchvision's
 *     Resize(n_px, BICUBIC) → CenterCrop(n_px) → ToTensor() → Normalize(mean, std)
 * applied to a PIL image, so the resize is Pillow's Image.resize(BICUBIC)
 * on 8-bit data. This file reproduces that chain value for value:
 *
 *  - output size: the short side becomes n_px, the long side
 *    int(n_px * long / short) (torchvision's _compute_resized_output_size);
 *  - Pillow's separable resampling (libImaging/Resample.c): a horizontal
 *    pass, then a vertical one, each skipped when that side keeps its size;
 *    bicubic kernel with a = -0.5, support 2 stretched by the scale when
 *    shrinking (antialiasing), taps centred on (i + 0.5) * scale with
 *    Pillow's rounding of the window bounds, weights normalised to sum 1,
 *    then turned into 22-bit fixed point; every pass rounds (adds half,
 *    shifts) and clamps to 0..255, so the intermediate image is 8-bit as in
 *    Pillow;
 *  - CenterCrop: top = int(round((H - n_px) / 2)), Python's round (half to
 *    even), the same for left;
 *  - ToTensor / Normalize in float32: v / 255, then (v - mean) / std.
 *
 * Only the pixels inside the crop are computed: each output pixel of
 * Pillow's resize depends only on its own row's and column's taps, so this
 * changes nothing but the cost (and bounds the memory by the input's
 * height, not by the resized long side).
 */
#include <math.h>
#include <string.h>

#include "clip_model.h"
#include "error.h"

#define PRECISION_BITS 22 /* Pillow: 32 - 8 - 2 */
#define MAX_SIDE (1 << 16)
#define MAX_PIXELS ((int64_t)1 << 28)

static double bicubic(double x)
{
    const double a = -0.5;
    if (x < 0.0)
        x = -x;
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0)
        return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

/* Pillow's number of taps for a resize in_size → out_size */
static int taps(int in_size, int out_size)
{
    double filterscale = (double)in_size / out_size;
    if (filterscale < 1.0)
        filterscale = 1.0;
    return (int)ceil(2.0 * filterscale) * 2 + 1;
}

/* The fixed-point taps of outputs [first, first + count) of a resize
 * in_size → out_size: k [count][ksize], bounds [count][2] = (first input,
 * number of inputs). As Pillow's precompute_coeffs + normalize_coeffs_8bpc. */
static void coefficients(int in_size, int out_size, int first, int count, int ksize, int32_t *k,
                         int *bounds)
{
    const double scale = (double)in_size / out_size;
    const double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 2.0 * filterscale, ss = 1.0 / filterscale;
    for (int o = 0; o < count; o++) {
        const double center = (first + o + 0.5) * scale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        /* the weights twice (sum, then each): no buffer, the same values */
        double ww = 0.0;
        for (int x = 0; x < xmax; x++)
            ww += bicubic((x + xmin - center + 0.5) * ss);
        int32_t *kr = k + (int64_t)o * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = 0.0;
            if (x < xmax) {
                v = bicubic((x + xmin - center + 0.5) * ss);
                if (ww != 0.0)
                    v /= ww;
            }
            kr[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                          : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        bounds[2 * o] = xmin;
        bounds[2 * o + 1] = xmax;
    }
}

/* Pillow's clip8: round (the half was added up front), shift, clamp */
static uint8_t clip8(int64_t acc)
{
    if (acc < 0)
        return 0;
    acc >>= PRECISION_BITS;
    return acc > 255 ? 255 : (uint8_t)acc;
}

/* torchvision's CenterCrop offset: int(round(d / 2)), ties to even */
static int crop_start(int resized, int size)
{
    int d = resized - size, half = d / 2;
    if (d % 2 == 0)
        return half;
    return half % 2 == 0 ? half : half + 1;
}

dalle_status clip_preprocess_image(clip_work *w, const uint8_t *rgb, int height, int width,
                                   int size, const float *mean, const float *std, float *out)
{
    if (height < 1 || width < 1 || height > MAX_SIDE || width > MAX_SIDE ||
        (int64_t)height * width > MAX_PIXELS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "clip_preprocess: %d x %d pixels: expected sides 1..%d and at most "
                          "%lld pixels",
                          height, width, MAX_SIDE, (long long)MAX_PIXELS);
    /* torchvision Resize(size): the short side to size */
    int rh, rw;
    if (width <= height) {
        rw = size;
        rh = (int)((double)size * height / width);
    } else {
        rh = size;
        rw = (int)((double)size * width / height);
    }
    const int need_h = rw != width, need_v = rh != height;
    const int top = crop_start(rh, size), left = crop_start(rw, size);
    const int ksh = need_h ? taps(width, rw) : 0, ksv = need_v ? taps(height, rh) : 0;

    size_t kbytes = (size_t)size * ((size_t)ksh + ksv) * sizeof(int32_t) +
                    (size_t)size * 4 * sizeof(int);
    dalle_status s = clip_work_reserve(w, CW_PRE_K, kbytes);
    if (s)
        return s;
    int32_t *kh = w->buf[CW_PRE_K], *kv = kh + (size_t)size * ksh;
    int *bh = (int *)(kv + (size_t)size * ksv), *bv = bh + 2 * size;
    if (need_h)
        coefficients(width, rw, left, size, ksh, kh, bh);
    if (need_v)
        coefficients(height, rh, top, size, ksv, kv, bv);
    /* the input rows the vertical pass reads */
    const int y0 = need_v ? bv[0] : top;
    const int y1 = need_v ? bv[2 * (size - 1)] + bv[2 * (size - 1) + 1] : top + size;
    if ((s = clip_work_reserve(w, CW_PRE_T, (size_t)(y1 - y0) * size * 3)))
        return s;
    uint8_t *tmp = w->buf[CW_PRE_T];

    /* horizontal pass (or the plain column window) into tmp [y1-y0][size][3] */
    for (int y = y0; y < y1; y++) {
        const uint8_t *src = rgb + (int64_t)y * width * 3;
        uint8_t *dst = tmp + (int64_t)(y - y0) * size * 3;
        if (!need_h) {
            memcpy(dst, src + (int64_t)left * 3, (size_t)size * 3);
            continue;
        }
        for (int o = 0; o < size; o++) {
            const int32_t *k = kh + (int64_t)o * ksh;
            const uint8_t *p = src + (int64_t)bh[2 * o] * 3;
            for (int c = 0; c < 3; c++) {
                int64_t acc = 1 << (PRECISION_BITS - 1);
                for (int x = 0; x < bh[2 * o + 1]; x++)
                    acc += (int64_t)p[x * 3 + c] * k[x];
                dst[o * 3 + c] = clip8(acc);
            }
        }
    }

    /* vertical pass, ToTensor, Normalize */
    const int64_t plane = (int64_t)size * size;
    for (int r = 0; r < size; r++)
        for (int o = 0; o < size; o++)
            for (int c = 0; c < 3; c++) {
                uint8_t v;
                if (need_v) {
                    const int32_t *k = kv + (int64_t)r * ksv;
                    int64_t acc = 1 << (PRECISION_BITS - 1);
                    for (int y = 0; y < bv[2 * r + 1]; y++)
                        acc += (int64_t)tmp[((int64_t)(bv[2 * r] + y - y0) * size + o) * 3 + c] *
                               k[y];
                    v = clip8(acc);
                } else {
                    v = tmp[((int64_t)(top + r - y0) * size + o) * 3 + c];
                }
                float f = (float)v / 255.0f;
                if (mean)
                    f = (f - mean[c]) / std[c];
                out[c * plane + (int64_t)r * size + o] = f;
            }
    return DALLE_OK;
}
