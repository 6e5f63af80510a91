// The VAEs' image operations on the GPU (lib/cuda/ops_cuda.h, "the VAEs'
// image operations"): lib/conv.c over device pointers, one image at a time.
//
// Convolutions are lib/conv.c's im2col + SGEMM, the same tiles of output
// rows (the caller's col_floats), with cuBLAS for the products; a
// transposed convolution is one product per tile of input rows and a col2im
// that gathers, for each output pixel, the taps that land on it in the
// CPU's order (tile, then kernel row, then kernel column), so only the
// products' summation order differs from the CPU. GroupNorm keeps the CPU's
// double mean and centred variance. The elementwise kernels round as the
// CPU does (__fmul_rn / __fadd_rn: no fused multiply-adds), so they are the
// CPU's bits where expf is not involved. Every kernel reduces in a fixed
// order: the same bits from run to run. Every kernel is launched once by
// cuda_conv_warm (ops_cuda.cu's warm_kernels): a new kernel gets a line there.
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

extern "C" {
#include "../conv.h"
}
#include "ops_cuda.h"
#include "ops_cuda_internal.cuh"

// ---------------------------------------------------------------------------
// Kernels (grid-stride loops over their outputs; every size may be 0).

#define GROUP_NORM_THREADS 1024

__global__ void k_fill_bias(float *y, const float *bias, int64_t c, int64_t hw)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < c * hw;
         t += (int64_t)gridDim.x * blockDim.x)
        y[t] = bias ? bias[t / hw] : 0.0f;
}

// col[(ci·k + ki)·k + kj][i] for output positions i of rows r0.. (n of them,
// wo a row): the input pixel under tap (ki, kj), 0 in the padding.
__global__ void k_im2col(const float *x, int h, int w, int k, int s, int pad_top, int pad_left,
                         int wo, int r0, int64_t n, int64_t rows, float *col)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < rows * n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t row = t / n, i = t - row * n;
        const int ci = (int)(row / (k * k)), kk = (int)(row % (k * k));
        const int ki = kk / k, kj = kk % k;
        const int r = r0 + (int)(i / wo), cc = (int)(i % wo);
        const int iy = r * s - pad_top + ki, ix = cc * s - pad_left + kj;
        col[t] = iy >= 0 && iy < h && ix >= 0 && ix < w ? x[((int64_t)ci * h + iy) * w + ix]
                                                        : 0.0f;
    }
}

// y[co][oy][ox] += the taps of input rows [r0, r1) that land on it, in
// lib/conv.c's col2im order (kernel row, then column).
__global__ void k_col2im(const float *col, int cout, int k, int s, int pad, int w, int ho, int wo,
                         int r0, int r1, float *y)
{
    const int64_t ohw = (int64_t)ho * wo, n = (int64_t)(r1 - r0) * w;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < cout * ohw;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int co = (int)(t / ohw), oy = (int)(t % ohw / wo), ox = (int)(t % wo);
        float acc = y[t];
        for (int ki = 0; ki < k; ki++) {
            const int ty = oy + pad - ki;
            if (ty < 0 || ty % s)
                continue;
            const int i = ty / s;
            if (i < r0 || i >= r1)
                continue;
            for (int kj = 0; kj < k; kj++) {
                const int tx = ox + pad - kj;
                if (tx < 0 || tx % s || tx / s >= w)
                    continue;
                acc = __fadd_rn(acc, col[(((int64_t)co * k + ki) * k + kj) * n +
                                         (int64_t)(i - r0) * w + tx / s]);
            }
        }
        y[t] = acc;
    }
}

__global__ void k_relu(const float *x, float *y, int64_t n)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x)
        y[t] = x[t] > 0.0f ? x[t] : 0.0f;
}

__global__ void k_residual(const float *x, float *y, float scale, int64_t n)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
         t += (int64_t)gridDim.x * blockDim.x)
        y[t] = __fadd_rn(x[t], __fmul_rn(scale, y[t]));
}

__device__ __forceinline__ float d_swish(float v) { return v / __fadd_rn(1.0f, expf(-v)); }

// One block per group of cg channels × hw: the mean, then the centred
// variance, both summed in double; then each value as lib/conv.c's gn_part.
__global__ void __launch_bounds__(GROUP_NORM_THREADS)
    k_group_norm(const float *x, int cg, int64_t hw, float eps, const float *gain,
                 const float *bias, int swish, float *y)
{
    __shared__ double scratch[32];
    const int64_t n = (int64_t)cg * hw, g = blockIdx.x;
    const float *xg = x + g * n;
    float *yg = y + g * n;
    double sum = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        sum = __dadd_rn(sum, (double)xg[i]);
    const double mean = block_reduce(sum, add_d(), scratch) / (double)n;
    double var = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double d = __dsub_rn((double)xg[i], mean);
        var = __dadd_rn(var, __dmul_rn(d, d));
    }
    var = block_reduce(var, add_d(), scratch) / (double)n;
    const float rstd = (float)(1.0 / sqrt(var + (double)eps)), fmean = (float)mean;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        const int64_t ch = g * cg + i / hw;
        const float sc = __fmul_rn(rstd, gain[ch]), sh = __fsub_rn(bias[ch], __fmul_rn(fmean, sc));
        const float v = __fadd_rn(__fmul_rn(xg[i], sc), sh);
        yg[i] = swish ? d_swish(v) : v;
    }
}

__global__ void k_pool2(const float *x, int c, int h, int w, int max, float *y)
{
    const int ho = h / 2, wo = w / 2;
    const int64_t total = (int64_t)c * ho * wo;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ch = t / ((int64_t)ho * wo);
        const int i = (int)(t / wo % ho), j = (int)(t % wo);
        const float *r0 = x + (ch * h + 2 * i) * w + 2 * j, *r1 = r0 + w;
        float m;
        if (max) { // lib/conv.c's order of comparisons
            m = r0[0];
            if (r0[1] > m) m = r0[1];
            if (r1[0] > m) m = r1[0];
            if (r1[1] > m) m = r1[1];
        } else {
            m = __fmul_rn(__fadd_rn(__fadd_rn(__fadd_rn(r0[0], r0[1]), r1[0]), r1[1]), 0.25f);
        }
        y[t] = m;
    }
}

__global__ void k_upsample2(const float *x, int c, int h, int w, float *y)
{
    const int64_t total = (int64_t)c * 4 * h * w;
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t ch = t / (4 * (int64_t)h * w);
        const int oy = (int)(t / (2 * w) % (2 * h)), ox = (int)(t % (2 * w));
        y[t] = x[(ch * h + oy / 2) * w + ox / 2];
    }
}

__global__ void k_gather_ids(const float *table, int64_t id_stride, int64_t c_stride,
                             const float *bias, const int32_t *ids, int64_t n, int channels,
                             float *x)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < channels * n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t c = t / n, p = t - c * n;
        const float v = table[ids[p] * id_stride + c * c_stride];
        x[t] = bias ? __fadd_rn(v, bias[c]) : v;
    }
}

__device__ __forceinline__ float d_clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; }

__global__ void k_pixel_map(conv_map m, const float *x, int64_t n, float *y)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < 3 * n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(t / n);
        // selected, not indexed: a parameter indexed at run time would be
        // copied to local memory first
        const float a = c == 0 ? m.a[0] : c == 1 ? m.a[1] : m.a[2];
        const float b = c == 0 ? m.b[0] : c == 1 ? m.b[1] : m.b[2];
        float v = x[t];
        switch (m.kind) {
        case CONV_MAP_COPY: break;
        case CONV_MAP_NORMALISE: v = __fdiv_rn(__fsub_rn(v, a), b); break;
        case CONV_MAP_AFFINE: v = __fadd_rn(__fmul_rn(a, v), b); break;
        case CONV_MAP_AFFINE_CLAMP: v = d_clamp01(__fadd_rn(__fmul_rn(v, a), b)); break;
        case CONV_MAP_CLAMP: v = d_clamp01(v); break;
        case CONV_MAP_LAPLACE:
            v = d_clamp01(__fdiv_rn(__fsub_rn(__fdiv_rn(1.0f, __fadd_rn(1.0f, expf(-v))), a), b));
            break;
        case CONV_MAP_SYMMETRIC:
            v = v > -1.0f ? (v < 1.0f ? v : 1.0f) : -1.0f; // NaN → -1
            v = __fmul_rn(__fadd_rn(v, 1.0f), 0.5f);
            break;
        }
        y[t] = v;
    }
}

// |z_p|², summed in float in d order, as lib/conv.c: the CPU's bits.
__global__ void k_col_sqnorm(const float *z, int dim, int64_t n, float *zz)
{
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < n;
         p += (int64_t)gridDim.x * blockDim.x) {
        float acc = 0.0f;
        for (int d = 0; d < dim; d++) {
            const float v = z[(int64_t)d * n + p];
            acc = __fadd_rn(acc, __fmul_rn(v, v));
        }
        zz[p] = acc;
    }
}

// scores[j][p] (= z_p·e_j on entry) = -((|z_p|² + |e_j|²) - 2 z_p·e_j)
__global__ void k_vq_finish(float *scores, const float *zz, const float *code_sq, int k, int64_t n)
{
    for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < k * n;
         t += (int64_t)gridDim.x * blockDim.x) {
        const int64_t j = t / n, p = t - j * n;
        scores[t] = -__fsub_rn(__fadd_rn(zz[p], code_sq[j]), __fmul_rn(2.0f, scores[t]));
    }
}

// The first maximum over the channel axis (torch.argmax), a thread a position.
__global__ void k_argmax_channels(const float *scores, int t, int64_t n, int32_t *ids)
{
    for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < n;
         p += (int64_t)gridDim.x * blockDim.x) {
        int best = 0;
        float bv = scores[p];
        for (int j = 1; j < t; j++) {
            const float s = scores[(int64_t)j * n + p];
            if (s > bv) {
                bv = s;
                best = j;
            }
        }
        ids[p] = best;
    }
}

void cuda_conv_warm(cudaStream_t s)
{
    conv_map m = {CONV_MAP_COPY, {0, 0, 0}, {0, 0, 0}};
    LAUNCH(k_fill_bias, 1, 32, 0, s)(nullptr, nullptr, 0, 1);
    LAUNCH(k_im2col, 1, 32, 0, s)(nullptr, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, nullptr);
    LAUNCH(k_col2im, 1, 32, 0, s)(nullptr, 0, 1, 1, 0, 0, 0, 1, 0, 0, nullptr);
    LAUNCH(k_relu, 1, 32, 0, s)(nullptr, nullptr, 0);
    LAUNCH(k_residual, 1, 32, 0, s)(nullptr, nullptr, 1.0f, 0);
    LAUNCH(k_group_norm, 1, 32, 0, s)(nullptr, 0, 0, 1e-6f, nullptr, nullptr, 0, nullptr);
    LAUNCH(k_pool2, 1, 32, 0, s)(nullptr, 0, 0, 0, 1, nullptr);
    LAUNCH(k_upsample2, 1, 32, 0, s)(nullptr, 0, 0, 0, nullptr);
    LAUNCH(k_gather_ids, 1, 32, 0, s)(nullptr, 0, 0, nullptr, nullptr, 0, 0, nullptr);
    LAUNCH(k_pixel_map, 1, 32, 0, s)(m, nullptr, 0, nullptr);
    LAUNCH(k_col_sqnorm, 1, 32, 0, s)(nullptr, 0, 0, nullptr);
    LAUNCH(k_vq_finish, 1, 32, 0, s)(nullptr, nullptr, nullptr, 0, 0);
    LAUNCH(k_argmax_channels, 1, 32, 0, s)(nullptr, 0, 0, nullptr);
}

// ---------------------------------------------------------------------------
// The operations.

// A grid-stride kernel over `total` outputs; `what` names the operation in
// errors. Sizes below 0 are refused, 0 queues nothing.
template <typename... P, typename... A>
static dalle_status launch(cuda_ops *c, const char *what, int64_t total, void (*kernel)(P...),
                           A... args)
{
    if (total < 0)
        return bad_size(what, "size", (long long)total);
    if (total == 0)
        return DALLE_OK;
    device_scope scope(cuda_ops_device(c));
    LAUNCH(kernel, grid_for(total), 256, 0, cuda_ops_stream(c))(args...);
    LAUNCHED(what);
    return DALLE_OK;
}

static dalle_status fill_bias(cuda_ops *c, float *y, const float *bias, int cout, int64_t hw)
{
    return launch(c, "conv2d (bias)", (int64_t)cout * hw, k_fill_bias, y, bias, cout, hw);
}

extern "C" dalle_status cuda_conv2d(cuda_ops *c, const conv_geom *g, const float *x, int h, int w,
                                    const float *wt, const float *bias, float *y, float *col,
                                    int64_t col_floats)
{
    const int ho = conv_out_size(h, g->k, g->stride, g->pad_top, g->pad_bottom);
    const int wo = conv_out_size(w, g->k, g->stride, g->pad_left, g->pad_right);
    if (ho < 1 || wo < 1)
        return DALLE_OK;
    const int64_t hw = (int64_t)ho * wo;
    // the bias first, then the products accumulate onto it (beta = 1)
    dalle_status st = fill_bias(c, y, bias, g->cout, hw);
    if (st != DALLE_OK)
        return st;
    if (g->k == 1 && g->stride == 1 && !g->pad_top && !g->pad_bottom && !g->pad_left &&
        !g->pad_right) // pointwise: the image is the column matrix
        return cuda_gemm(c, 0, 0, g->cout, hw, g->cin, 1.0f, wt, g->cin, x, hw, 1.0f, y, hw);
    const int64_t kk = (int64_t)g->cin * g->k * g->k, row = kk * wo;
    int64_t tile = col_floats / row;
    if (tile < 1)
        return bad_size("conv2d", "col_floats", (long long)col_floats);
    for (int r0 = 0; r0 < ho && st == DALLE_OK; r0 += (int)tile) {
        const int r1 = r0 + tile < ho ? r0 + (int)tile : ho;
        const int64_t n = (int64_t)(r1 - r0) * wo;
        {
            device_scope scope(cuda_ops_device(c));
            LAUNCH(k_im2col, grid_for(kk * n), 256, 0, cuda_ops_stream(c))(
                x, h, w, g->k, g->stride, g->pad_top, g->pad_left, wo, r0, n, kk, col);
            LAUNCHED("conv2d (im2col)");
        }
        st = cuda_gemm(c, 0, 0, g->cout, n, kk, 1.0f, wt, kk, col, n, 1.0f, y + (int64_t)r0 * wo,
                       hw);
    }
    return st;
}

extern "C" dalle_status cuda_conv_transpose2d(cuda_ops *c, const conv_geom *g, const float *x,
                                              int h, int w, const float *wt, const float *bias,
                                              float *y, float *col, int64_t col_floats)
{
    const int k = g->k, s = g->stride, pad = g->pad_top;
    const int ho = (h - 1) * s - 2 * pad + k, wo = (w - 1) * s - 2 * pad + k;
    if (ho < 1 || wo < 1 || h < 1 || w < 1)
        return DALLE_OK;
    dalle_status st = fill_bias(c, y, bias, g->cout, (int64_t)ho * wo);
    if (st != DALLE_OK)
        return st;
    const int64_t m = (int64_t)g->cout * k * k, row = m * w;
    int64_t tile = col_floats / row;
    if (tile < 1)
        return bad_size("conv_transpose2d", "col_floats", (long long)col_floats);
    // per tile of input rows: col = Wᵀ · x_tile (W as [cin][cout·k·k]), then
    // every tap's contribution added into place
    for (int r0 = 0; r0 < h && st == DALLE_OK; r0 += (int)tile) {
        const int r1 = r0 + tile < h ? r0 + (int)tile : h;
        const int64_t n = (int64_t)(r1 - r0) * w;
        st = cuda_gemm(c, 1, 0, m, n, g->cin, 1.0f, wt, m, x + (int64_t)r0 * w, (int64_t)h * w,
                       0.0f, col, n);
        if (st != DALLE_OK)
            break;
        device_scope scope(cuda_ops_device(c));
        LAUNCH(k_col2im, grid_for((int64_t)g->cout * ho * wo), 256, 0, cuda_ops_stream(c))(
            col, g->cout, k, s, pad, w, ho, wo, r0, r1, y);
        LAUNCHED("conv_transpose2d (col2im)");
    }
    return st;
}

extern "C" dalle_status cuda_relu(cuda_ops *c, const float *x, float *y, int64_t n)
{
    return launch(c, "relu", n, k_relu, x, y, n);
}

extern "C" dalle_status cuda_residual(cuda_ops *c, const float *x, float *y, float scale,
                                      int64_t n)
{
    return launch(c, "residual", n, k_residual, x, y, scale, n);
}

extern "C" dalle_status cuda_group_norm(cuda_ops *c, const float *x, int ch, int64_t hw,
                                        int groups, float eps, const float *gain,
                                        const float *bias, int swish, float *y)
{
    if (groups < 1 || ch % groups)
        return bad_size("group_norm", "groups", groups);
    if (hw < 0)
        return bad_size("group_norm", "hw", (long long)hw);
    if (hw == 0 || ch == 0)
        return DALLE_OK;
    device_scope scope(cuda_ops_device(c));
    LAUNCH(k_group_norm, (unsigned)groups, GROUP_NORM_THREADS, 0, cuda_ops_stream(c))(
        x, ch / groups, hw, eps, gain, bias, swish, y);
    LAUNCHED("group_norm");
    return DALLE_OK;
}

extern "C" dalle_status cuda_pool2(cuda_ops *c, const float *x, int ch, int h, int w, int max,
                                   float *y)
{
    return launch(c, max ? "max_pool2" : "avg_pool2", (int64_t)ch * (h / 2) * (w / 2), k_pool2, x, ch,
                h, w, max, y);
}

extern "C" dalle_status cuda_upsample2(cuda_ops *c, const float *x, int ch, int h, int w,
                                       float *y)
{
    return launch(c, "upsample2", (int64_t)ch * 4 * h * w, k_upsample2, x, ch, h, w, y);
}

extern "C" dalle_status cuda_gather_ids(cuda_ops *c, const float *table, int64_t id_stride,
                                        int64_t c_stride, const float *bias, const int32_t *ids,
                                        int64_t n, int channels, float *x)
{
    return launch(c, "gather_ids", (int64_t)channels * n, k_gather_ids, table, id_stride, c_stride,
                bias, ids, n, channels, x);
}

extern "C" dalle_status cuda_pixel_map(cuda_ops *c, const conv_map *m, const float *x, int64_t n,
                                       float *y)
{
    return launch(c, "pixel_map", 3 * n, k_pixel_map, *m, x, n, y);
}

extern "C" dalle_status cuda_vq_scores(cuda_ops *c, const float *z, int dim, int64_t n,
                                       const float *codebook, const float *code_sq, int k,
                                       float *zz, float *scores)
{
    if (n < 0 || dim < 0 || k < 0)
        return bad_size("vq_scores", "n", (long long)n);
    if (n == 0 || k == 0)
        return DALLE_OK;
    {
        device_scope scope(cuda_ops_device(c));
        LAUNCH(k_col_sqnorm, grid_for(n), 256, 0, cuda_ops_stream(c))(z, dim, n, zz);
        LAUNCHED("vq_scores (|z|²)");
    }
    dalle_status st = cuda_gemm(c, 0, 0, k, n, dim, 1.0f, codebook, dim, z, n, 0.0f, scores, n);
    if (st != DALLE_OK)
        return st;
    return launch(c, "vq_scores", (int64_t)k * n, k_vq_finish, scores, zz, code_sq, k, n);
}

extern "C" dalle_status cuda_argmax_channels(cuda_ops *c, const float *scores, int t, int64_t n,
                                             int32_t *ids)
{
    if (t < 1)
        return bad_size("argmax_channels", "channels", t);
    return launch(c, "argmax_channels", n, k_argmax_channels, scores, t, n, ids);
}
