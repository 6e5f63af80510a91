/* The CPU backend of lib/ops.h: plain loops for everything but the matrix
 * products (lib/ops_gemm.c). Reductions run in one fixed order per output
 * element (double accumulators where PyTorch keeps extra precision), so
 * results never depend on the thread count. */
#include "ops.h"

#include <math.h>

/* The matrix products (ops_gemm, ops_linear*) are in lib/ops_gemm.c, the
 * softmax and the attention kernel (ops_softmax, ops_attend) in
 * lib/ops_attend.c, GEGLU in lib/ops_geglu.c. */

void ops_layer_norm(const float *x, int64_t rows, int64_t dim, const float *gain,
                    const float *bias, float eps, float *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim;
        float *yr = y + r * dim;
        /* Two passes in double: mean, then the centred variance (PyTorch
         * uses a float Welford; both are exact to well under 1 ulp here). */
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < dim; i++)
            mean += xr[i];
        mean /= (double)dim;
        for (int64_t i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        var /= (double)dim;
        float rstd = (float)(1.0 / sqrt(var + (double)eps));
        float fmean = (float)mean;
        for (int64_t i = 0; i < dim; i++)
            yr[i] = (xr[i] - fmean) * rstd * gain[i] + bias[i];
    }
}

void ops_add_scaled(float *x, const float *y, const float *scale, int64_t rows, int64_t dim)
{
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * dim;
        const float *yr = y + r * dim;
        if (scale)
            for (int64_t i = 0; i < dim; i++)
                xr[i] += yr[i] * scale[i];
        else
            for (int64_t i = 0; i < dim; i++)
                xr[i] += yr[i];
    }
}

void ops_divide_max(float *x, int64_t rows, int64_t dim)
{
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * dim;
        float m = xr[0];
        for (int64_t i = 1; i < dim; i++)
            if (xr[i] > m)
                m = xr[i];
        for (int64_t i = 0; i < dim; i++)
            xr[i] /= m;
    }
}

void ops_rotary(float *t, const float *cos, const float *sin, int64_t n_cols)
{
    /* t*cos + rotate_half(t)*sin, rotate_half((a, b)) = (-b, a). */
    for (int64_t i = 0; i + 1 < n_cols; i += 2) {
        float a = t[i], b = t[i + 1];
        t[i] = a * cos[i] + (-b) * sin[i];
        t[i + 1] = b * cos[i + 1] + a * sin[i + 1];
    }
}

void ops_quick_gelu(float *x, int64_t n)
{
    /* in double, rounded once: within an ulp of PyTorch's float
     * x * torch.sigmoid(1.702 * x) */
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        x[i] = (float)(v / (1.0 + exp(-1.702 * v)));
    }
}
