/* Backward passes of lib/ops.h (CPU): ops_gemm for the matrix products,
 * plain loops in one fixed order for the rest, double accumulators where
 * a reduction is long (LayerNorm rows, biases, softmax sums), so results
 * never depend on the thread count. ops_backward.h states the contract. */
#include "ops_backward.h"

#include <math.h>
#include <string.h>

void bw_linear(struct tpool *pool, const float *x, int64_t rows, int64_t in, const float *w,
               int64_t out, const float *dy, int64_t ldy, float *dx, float *dw, float *db)
{
    if (rows <= 0 || out <= 0 || in <= 0)
        return;
    if (dx) /* dx[rows][in] += dy[rows][out] · w[out][in] */
        ops_gemm(pool, 0, 0, rows, in, out, 1.0f, dy, ldy, w, in, 1.0f, dx, in);
    if (dw) /* dw[out][in] += dyᵀ · x (a reduction over rows: ops_gemm never
             * splits k, so the bits do not depend on the pool) */
        ops_gemm(pool, 1, 0, out, in, rows, 1.0f, dy, ldy, x, in, 1.0f, dw, in);
    if (db)
        for (int64_t j = 0; j < out; j++) {
            double s = 0.0;
            for (int64_t r = 0; r < rows; r++)
                s += dy[r * ldy + j];
            db[j] += (float)s;
        }
}

void bw_layer_norm(const float *x, int64_t rows, int64_t dim, const float *gain, float eps,
                   const float *dy, float *dx, float *dgain, float *dbias)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * dim, *dyr = dy + r * dim;
        /* the forward's statistics, computed the same way (ops_cpu.c) */
        double mean = 0.0, var = 0.0;
        for (int64_t i = 0; i < dim; i++)
            mean += xr[i];
        mean /= (double)dim;
        for (int64_t i = 0; i < dim; i++) {
            double d = xr[i] - mean;
            var += d * d;
        }
        var /= (double)dim;
        double rstd = 1.0 / sqrt(var + (double)eps);
        /* dx = rstd · (g·dy - mean(g·dy) - x̂ · mean(g·dy·x̂)) */
        double m1 = 0.0, m2 = 0.0;
        for (int64_t i = 0; i < dim; i++) {
            double xh = (xr[i] - mean) * rstd, gdy = (double)gain[i] * dyr[i];
            m1 += gdy;
            m2 += gdy * xh;
            if (dgain)
                dgain[i] += (float)(dyr[i] * xh);
            if (dbias)
                dbias[i] += dyr[i];
        }
        m1 /= (double)dim;
        m2 /= (double)dim;
        if (dx) {
            float *dxr = dx + r * dim;
            for (int64_t i = 0; i < dim; i++) {
                double xh = (xr[i] - mean) * rstd, gdy = (double)gain[i] * dyr[i];
                dxr[i] += (float)(rstd * (gdy - m1 - xh * m2));
            }
        }
    }
}

void bw_geglu(const float *h, int64_t rows, int64_t inner, const float *dy, float *dh)
{
    const double inv_sqrt2 = 0.70710678118654752440, inv_sqrt2pi = 0.39894228040143267794;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = h + r * 2 * inner, *gr = xr + inner, *dyr = dy + r * inner;
        float *dxr = dh + r * 2 * inner, *dgr = dxr + inner;
        for (int64_t i = 0; i < inner; i++) {
            double g = gr[i];
            double cdf = 0.5 * (1.0 + erf(g * inv_sqrt2));
            double pdf = inv_sqrt2pi * exp(-0.5 * g * g);
            /* y = x · g·Φ(g): dy/dx = gelu(g), dy/dg = x · (Φ(g) + g·φ(g)) */
            dxr[i] += (float)(dyr[i] * g * cdf);
            dgr[i] += (float)((double)dyr[i] * xr[i] * (cdf + g * pdf));
        }
    }
}

void bw_add_scaled(const float *y, const float *scale, int64_t rows, int64_t dim,
                   const float *dx, float *dy, float *dscale)
{
    for (int64_t r = 0; r < rows; r++) {
        const float *dxr = dx + r * dim;
        float *dyr = dy + r * dim;
        if (scale)
            for (int64_t i = 0; i < dim; i++)
                dyr[i] += dxr[i] * scale[i];
        else
            for (int64_t i = 0; i < dim; i++)
                dyr[i] += dxr[i];
    }
    if (scale && dscale)
        for (int64_t i = 0; i < dim; i++) {
            double s = 0.0;
            for (int64_t r = 0; r < rows; r++)
                s += (double)dx[r * dim + i] * y[r * dim + i];
            dscale[i] += (float)s;
        }
}

void bw_softmax(const float *p, const float *dp, int64_t n, float *dx)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += (double)p[i] * dp[i];
    for (int64_t i = 0; i < n; i++)
        dx[i] += (float)(p[i] * (dp[i] - s));
}

void bw_rotary(float *dt, const float *cos, const float *sin, int64_t n_cols)
{
    /* forward: a' = a·c0 - b·s0, b' = b·c1 + a·s1; the transpose:
     * da = c0·da' + s1·db', db = -s0·da' + c1·db' */
    for (int64_t i = 0; i + 1 < n_cols; i += 2) {
        float ga = dt[i], gb = dt[i + 1];
        dt[i] = ga * cos[i] + gb * sin[i + 1];
        dt[i + 1] = gb * cos[i + 1] - ga * sin[i];
    }
}

static float dot(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void bw_attend(const float *q, const float *k, const float *v, int64_t dim_head,
               const ops_span *spans, int n_spans, const float *dout, float *scores, float *dq,
               float *dk, float *dv)
{
    /* the forward's weights, recomputed by the forward's own code: its bits */
    int64_t n = ops_attend_weights(q, k, dim_head, spans, n_spans, scores);
    if (n == 0)
        return; /* the forward wrote zeros: no dependence on anything */
    /* Σ_j p_j (dout · v_j): the softmax's correction term */
    double corr = 0.0;
    n = 0;
    for (int s = 0; s < n_spans; s++)
        for (int64_t j = 0; j < spans[s].count; j++) {
            int64_t p = spans[s].start + j * spans[s].stride;
            corr += (double)scores[n++] * dot(dout, v + p * dim_head, dim_head);
        }
    n = 0;
    for (int s = 0; s < n_spans; s++)
        for (int64_t j = 0; j < spans[s].count; j++) {
            int64_t p = spans[s].start + j * spans[s].stride;
            const float *kp = k + p * dim_head, *vp = v + p * dim_head;
            float *dkp = dk + p * dim_head, *dvp = dv + p * dim_head;
            float w = scores[n++];
            float ds = (float)(w * ((double)dot(dout, vp, dim_head) - corr));
            for (int64_t d = 0; d < dim_head; d++) {
                dq[d] += ds * kp[d];
                dkp[d] += ds * q[d];
                dvp[d] += w * dout[d];
            }
        }
}

void bw_embedding(const int32_t *ids, int64_t rows, int64_t dim, const float *dy, float *dtable)
{
    for (int64_t r = 0; r < rows; r++) {
        float *t = dtable + (int64_t)ids[r] * dim;
        const float *g = dy + r * dim;
        for (int64_t i = 0; i < dim; i++)
            t[i] += g[i];
    }
}

/* The source of each channel block of position p under PreShiftToken
 * (token_shift.c): [0, n0) from position s0 (or zeros when s0 < 0),
 * [n0, n0 + n1) from s1 (zeros when < 0), the rest from p itself. */
typedef struct shift_plan {
    int64_t n0, s0, n1, s1;
} shift_plan;

static shift_plan plan_of(int64_t p, int64_t dim, int64_t text_len, int64_t fmap)
{
    const int64_t half = (dim + 1) / 2, q = (dim + 3) / 4;
    const int64_t left = q < dim - q ? q : dim - q;
    shift_plan s;
    if (p < text_len) {
        s.n0 = half;
        s.s0 = p - 1;
        s.n1 = 0;
        s.s1 = -1;
    } else {
        int64_t img = p - text_len, r = img / fmap, c = img % fmap;
        s.n0 = q;
        s.s0 = r > 0 ? p - fmap : -1;
        s.n1 = left;
        s.s1 = c > 0 ? p - 1 : -1;
    }
    return s;
}

void tshift_forward(const float *h, int64_t n_pos, int64_t dim, int64_t text_len, int64_t fmap,
                    float *out)
{
    for (int64_t p = 0; p < n_pos; p++) {
        shift_plan s = plan_of(p, dim, text_len, fmap);
        float *o = out + p * dim;
        for (int64_t i = 0; i < dim; i++) {
            int64_t src = i < s.n0 ? s.s0 : i < s.n0 + s.n1 ? s.s1 : p;
            o[i] = src < 0 ? 0.0f : h[src * dim + i];
        }
    }
}

void bw_token_shift(const float *dout, int64_t n_pos, int64_t dim, int64_t text_len,
                    int64_t fmap, float *dh)
{
    /* each output channel reads exactly one input channel (or none): send
     * its gradient back there */
    for (int64_t p = 0; p < n_pos; p++) {
        shift_plan s = plan_of(p, dim, text_len, fmap);
        const float *g = dout + p * dim;
        for (int64_t i = 0; i < dim; i++) {
            int64_t src = i < s.n0 ? s.s0 : i < s.n0 + s.n1 ? s.s1 : p;
            if (src >= 0)
                dh[src * dim + i] += g[i];
        }
    }
}

double ce_rows(const float *logits, int64_t rows, int64_t ld, int64_t lo, int64_t n,
               const int32_t *targets, float scale, float *dlogits)
{
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *x = logits + r * ld + lo;
        int64_t t = (int64_t)targets[r] - lo;
        double m = x[0];
        for (int64_t j = 1; j < n; j++)
            if (x[j] > m)
                m = x[j];
        double sum = 0.0;
        for (int64_t j = 0; j < n; j++)
            sum += exp((double)x[j] - m);
        double lse = m + log(sum);
        total += lse - (double)x[t];
        if (dlogits) {
            float *d = dlogits + r * ld + lo;
            for (int64_t j = 0; j < n; j++)
                d[j] = (float)(scale * (exp((double)x[j] - lse) - (j == t ? 1.0 : 0.0)));
        }
    }
    return total;
}

double dalle_loss(const float *logits, int64_t batch, int64_t n_pos, int64_t text_seq_len,
                  int64_t text_vocab, int64_t V, const int32_t *labels, double loss_img_weight,
                  float *dlogits, double *loss_text, double *loss_img)
{
    const int64_t n_img = n_pos - text_seq_len, n_iv = V - text_vocab;
    const double w = loss_img_weight;
    /* d loss / d (a row's CE): 1/(w+1) / rows of that part */
    const float st = (float)(1.0 / (w + 1.0) / (double)(batch * text_seq_len));
    const float si = n_img > 0 ? (float)(w / (w + 1.0) / (double)(batch * n_img)) : 0.0f;
    double lt = 0.0, li = 0.0;
    for (int64_t b = 0; b < batch; b++) {
        const float *lg = logits + b * n_pos * V;
        const int32_t *lb = labels + b * n_pos;
        float *dl = dlogits ? dlogits + b * n_pos * V : NULL;
        if (dl)
            /* the masked half of every row has no gradient */
            memset(dl, 0, (size_t)(n_pos * V) * sizeof *dl);
        lt += ce_rows(lg, text_seq_len, V, 0, text_vocab, lb, st, dl);
        if (n_img > 0)
            li += ce_rows(lg + text_seq_len * V, n_img, V, text_vocab, n_iv, lb + text_seq_len,
                          si, dl ? dl + text_seq_len * V : NULL);
    }
    lt /= (double)(batch * text_seq_len);
    if (n_img > 0)
        li /= (double)(batch * n_img);
    if (loss_text)
        *loss_text = lt;
    if (loss_img)
        *loss_img = li;
    return (lt + w * li) / (w + 1.0);
}
