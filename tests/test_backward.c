/* Training foundations (issue 7): every backward pass of lib/train/
 * ops_backward.c against central finite differences, AdamW / clipping /
 * schedule against hand-computed references, and the DALL·E transformer's
 * training step (lib/train/tf_train*.c): whole-model gradients against
 * finite differences, the checkpoint round trip into the inference side,
 * bit-exact resume, thread independence and a tiny training run.
 *
 * Finite differences of the operations are taken on small DOUBLE reference
 * forwards written here (fd_check.h: h = 1e-6, rel-L2 tolerance 1e-5, room
 * for float rounding only), after checking that each reference computes
 * what the float operation computes.
 *
 *     test_backward [TMPDIR]
 * Prints one line per check; exits 1 if any failed.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/dalle.h"
#include "fd_check.h"
#include "ops.h"
#include "threadpool.h"
#include "train/adamw.h"
#include "train/ops_backward.h"
#include "train/tf_train.h"
#include "transformer_internal.h"

/* ---- linear ------------------------------------------------------------------------ */

typedef struct lin_ctx {
    int64_t rows, in, out;
    const float *c; /* cotangent [rows][out] */
} lin_ctx;

static double lin_loss(const double *t, const void *vc)
{
    const lin_ctx *c = vc;
    const double *x = t, *w = x + c->rows * c->in, *b = w + c->out * c->in;
    double L = 0.0;
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t j = 0; j < c->out; j++) {
            double y = b[j];
            for (int64_t i = 0; i < c->in; i++)
                y += x[r * c->in + i] * w[j * c->in + i];
            L += c->c[r * c->out + j] * y;
        }
    return L;
}

static void test_linear(void)
{
    for (int variant = 0; variant < 2; variant++) {
        const int64_t rows = variant ? 1 : 5, in = 7, out = 6, ldy = out + 3;
        lin_ctx c = {rows, in, out, NULL};
        int64_t n = rows * in + out * in + out;
        float *theta = malloc((size_t)n * sizeof *theta), *g = calloc((size_t)n, sizeof *g);
        float *cy = malloc((size_t)(rows * out) * sizeof *cy);
        float *dy = calloc((size_t)(rows * ldy), sizeof *dy), *y = calloc((size_t)(rows * ldy), 4);
        fill(theta, n, -1, 1);
        fill(cy, rows * out, -1, 1);
        for (int64_t r = 0; r < rows; r++)
            memcpy(dy + r * ldy, cy + r * out, (size_t)out * sizeof *dy);
        c.c = cy;
        const float *x = theta, *w = x + rows * in, *b = w + out * in;
        /* the reference is ops_linear's function */
        ops_linear(x, rows, in, w, b, out, y, ldy);
        double L = 0.0, th[256];
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < out; j++)
                L += (double)cy[r * out + j] * y[r * ldy + j];
        for (int64_t i = 0; i < n; i++)
            th[i] = theta[i];
        check(fabs(L - lin_loss(th, &c)) < 1e-5, "linear (%lld rows): reference = ops_linear",
              (long long)rows);
        /* the gradients accumulate: start from a known value and subtract it */
        for (int64_t i = 0; i < n; i++)
            g[i] = 0.5f;
        bw_linear(NULL, x, rows, in, w, out, dy, ldy, g, g + rows * in, g + rows * in + out * in);
        for (int64_t i = 0; i < n; i++)
            g[i] -= 0.5f;
        check_fd(variant ? "linear, 1 row, dy stride 9 (dx, dw, db)"
                         : "linear, 5 rows, dy stride 9 (dx, dw, db)",
                 lin_loss, &c, theta, g, n);
        free(theta);
        free(g);
        free(cy);
        free(dy);
        free(y);
    }
}

/* ---- layer norm ---------------------------------------------------------------------- */

typedef struct ln_ctx {
    int64_t rows, dim;
    const float *c;
} ln_ctx;

static double ln_loss(const double *t, const void *vc)
{
    const ln_ctx *c = vc;
    const double *x = t, *gn = x + c->rows * c->dim, *bs = gn + c->dim;
    double L = 0.0;
    for (int64_t r = 0; r < c->rows; r++) {
        const double *xr = x + r * c->dim;
        double m = 0.0, v = 0.0;
        for (int64_t i = 0; i < c->dim; i++)
            m += xr[i];
        m /= (double)c->dim;
        for (int64_t i = 0; i < c->dim; i++)
            v += (xr[i] - m) * (xr[i] - m);
        v /= (double)c->dim;
        double rstd = 1.0 / sqrt(v + 1e-5);
        for (int64_t i = 0; i < c->dim; i++)
            L += c->c[r * c->dim + i] * ((xr[i] - m) * rstd * gn[i] + bs[i]);
    }
    return L;
}

static void test_layer_norm(void)
{
    const int64_t rows = 4, dim = 9, n = rows * dim + 2 * dim;
    float theta[64], g[64] = {0}, cy[64], y[64];
    fill(theta, n, -2, 2);
    fill(theta + rows * dim, dim, 0.5, 1.5); /* gains around 1 */
    fill(cy, rows * dim, -1, 1);
    theta[3] += 5.0f; /* a row with an off-centre value */
    ln_ctx c = {rows, dim, cy};
    const float *x = theta, *gn = x + rows * dim, *bs = gn + dim;
    ops_layer_norm(x, rows, dim, gn, bs, 1e-5f, y);
    double L = 0.0, th[64];
    for (int64_t i = 0; i < rows * dim; i++)
        L += (double)cy[i] * y[i];
    for (int64_t i = 0; i < n; i++)
        th[i] = theta[i];
    check(fabs(L - ln_loss(th, &c)) < 1e-5, "layer norm: reference = ops_layer_norm");
    bw_layer_norm(x, rows, dim, gn, 1e-5f, cy, g, g + rows * dim, g + rows * dim + dim);
    check_fd("layer norm (dx, dgain, dbias)", ln_loss, &c, theta, g, n);
}

/* ---- GEGLU -------------------------------------------------------------------------- */

typedef struct geglu_ctx {
    int64_t rows, inner;
    const float *c;
} geglu_ctx;

static double geglu_loss(const double *h, const void *vc)
{
    const geglu_ctx *c = vc;
    double L = 0.0;
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t i = 0; i < c->inner; i++) {
            double x = h[r * 2 * c->inner + i], gt = h[r * 2 * c->inner + c->inner + i];
            L += c->c[r * c->inner + i] * x * 0.5 * gt * (1.0 + erf(gt / sqrt(2.0)));
        }
    return L;
}

static void test_geglu(void)
{
    const int64_t rows = 3, inner = 5, n = rows * 2 * inner;
    float h[64], g[64] = {0}, cy[64], y[64];
    fill(h, n, -3, 3);
    fill(cy, rows * inner, -1, 1);
    geglu_ctx c = {rows, inner, cy};
    ops_geglu(h, rows, inner, y);
    double L = 0.0, th[64];
    for (int64_t i = 0; i < rows * inner; i++)
        L += (double)cy[i] * y[i];
    for (int64_t i = 0; i < n; i++)
        th[i] = h[i];
    check(fabs(L - geglu_loss(th, &c)) < 1e-5, "GEGLU: reference = ops_geglu");
    bw_geglu(h, rows, inner, cy, g);
    check_fd("GEGLU (dx, dgates)", geglu_loss, &c, h, g, n);
}

/* ---- LayerScale residual ----------------------------------------------------------------- */

typedef struct as_ctx {
    int64_t rows, dim;
    const float *c;
} as_ctx;

static double as_loss(const double *t, const void *vc)
{
    const as_ctx *c = vc;
    const double *x = t, *y = x + c->rows * c->dim, *s = y + c->rows * c->dim;
    double L = 0.0;
    for (int64_t r = 0; r < c->rows; r++)
        for (int64_t i = 0; i < c->dim; i++)
            L += c->c[r * c->dim + i] * (x[r * c->dim + i] + y[r * c->dim + i] * s[i]);
    return L;
}

static void test_add_scaled(void)
{
    const int64_t rows = 3, dim = 4, nx = rows * dim, n = 2 * nx + dim;
    float theta[64], g[64] = {0}, cy[64];
    fill(theta, n, -1, 1);
    fill(cy, nx, -1, 1);
    as_ctx c = {rows, dim, cy};
    /* the residual's gradient is the incoming one (identity) */
    memcpy(g, cy, (size_t)nx * sizeof *g);
    bw_add_scaled(theta + nx, theta + 2 * nx, rows, dim, cy, g + nx, g + 2 * nx);
    check_fd("LayerScale residual x + y·scale (dx, dy, dscale)", as_loss, &c, theta, g, n);
    float dy[16] = {0};
    bw_add_scaled(theta + nx, NULL, rows, dim, cy, dy, NULL);
    check(!memcmp(dy, cy, (size_t)nx * sizeof *dy), "plain residual add: dy = dx");
}

/* ---- softmax ---------------------------------------------------------------------- */

typedef struct sm_ctx {
    int64_t n;
    const float *c;
} sm_ctx;

static double sm_loss(const double *x, const void *vc)
{
    const sm_ctx *c = vc;
    double m = x[0], s = 0.0, L = 0.0;
    for (int64_t i = 1; i < c->n; i++)
        m = x[i] > m ? x[i] : m;
    for (int64_t i = 0; i < c->n; i++)
        s += exp(x[i] - m);
    for (int64_t i = 0; i < c->n; i++)
        L += c->c[i] * exp(x[i] - m) / s;
    return L;
}

static void test_softmax(void)
{
    const int64_t n = 11;
    float x[16], p[16], g[16] = {0}, cy[16];
    fill(x, n, -4, 4);
    fill(cy, n, -1, 1);
    memcpy(p, x, sizeof p);
    ops_softmax(p, n);
    sm_ctx c = {n, cy};
    bw_softmax(p, cy, n, g);
    check_fd("softmax", sm_loss, &c, x, g, n);
}

/* ---- rotary ---------------------------------------------------------------------------- */

typedef struct rot_ctx {
    int64_t dim, cols;
    const float *cs, *sn, *c;
} rot_ctx;

static double rot_loss(const double *t, const void *vc)
{
    const rot_ctx *c = vc;
    double L = 0.0;
    for (int64_t i = 0; i < c->dim; i++) {
        double y = t[i];
        if (i < c->cols)
            y = (i % 2 == 0) ? t[i] * c->cs[i] - t[i + 1] * c->sn[i]
                             : t[i] * c->cs[i] + t[i - 1] * c->sn[i];
        L += c->c[i] * y;
    }
    return L;
}

static void test_rotary(void)
{
    /* 8 of 11 channels rotated; every column its own cos / sin (the real
     * tables repeat each angle twice; the backward must not rely on it) */
    const int64_t dim = 11, cols = 8;
    float t[16], g[16], cs[16], sn[16], cy[16], y[16];
    fill(t, dim, -1, 1);
    fill(cy, dim, -1, 1);
    for (int64_t i = 0; i < cols; i++) {
        double a = frand(-3, 3);
        cs[i] = (float)cos(a);
        sn[i] = (float)sin(a);
    }
    rot_ctx c = {dim, cols, cs, sn, cy};
    memcpy(y, t, sizeof y);
    ops_rotary(y, cs, sn, cols);
    double L = 0.0, th[16];
    for (int64_t i = 0; i < dim; i++) {
        L += (double)cy[i] * y[i];
        th[i] = t[i];
    }
    check(fabs(L - rot_loss(th, &c)) < 1e-5, "rotary: reference = ops_rotary");
    memcpy(g, cy, sizeof g);
    bw_rotary(g, cs, sn, cols);
    check_fd("rotary (inverse rotation of the gradient)", rot_loss, &c, t, g, dim);
    /* with a real table (equal angles per pair) it is exactly the inverse */
    for (int64_t i = 0; i < cols; i += 2) {
        cs[i + 1] = cs[i];
        sn[i + 1] = sn[i];
    }
    memcpy(y, t, sizeof y);
    ops_rotary(y, cs, sn, cols);
    bw_rotary(y, cs, sn, cols);
    double err = 0.0;
    for (int64_t i = 0; i < dim; i++)
        err = fmax(err, fabs(y[i] - t[i]));
    check(err < 1e-6, "rotary: backward ∘ forward = identity for a paired table (%.1e)", err);
}

/* ---- attention ---------------------------------------------------------------------- */

typedef struct att_ctx {
    int64_t n, dh;
    const tf_hparams *hp;
    attn_type type;
    const float *c; /* [n][dh] */
} att_ctx;

static double att_loss(const double *t, const void *vc)
{
    const att_ctx *c = vc;
    const int64_t n = c->n, dh = c->dh;
    const double *Q = t, *K = Q + n * dh, *V = K + n * dh;
    double L = 0.0, s[64];
    ops_span sp[2 + 16];
    for (int64_t p = 0; p < n; p++) {
        int ns = attention_spans(c->hp, c->type, p, sp), m = 0;
        int64_t pos[64];
        for (int k = 0; k < ns; k++)
            for (int64_t j = 0; j < sp[k].count; j++)
                pos[m++] = sp[k].start + j * sp[k].stride;
        double mx = -1e300, sum = 0.0;
        for (int j = 0; j < m; j++) {
            s[j] = 0.0;
            for (int64_t d = 0; d < dh; d++)
                s[j] += Q[p * dh + d] * K[pos[j] * dh + d];
            mx = s[j] > mx ? s[j] : mx;
        }
        for (int j = 0; j < m; j++)
            sum += (s[j] = exp(s[j] - mx));
        for (int64_t d = 0; d < dh; d++) {
            double o = 0.0;
            for (int j = 0; j < m; j++)
                o += s[j] / sum * V[pos[j] * dh + d];
            L += c->c[p * dh + d] * o;
        }
    }
    return L;
}

static void test_attention(attn_type type, const char *name)
{
    /* a sequence of <bos> + 3 text + 3x3 image positions minus the last */
    tf_hparams hp;
    memset(&hp, 0, sizeof hp);
    hp.text_seq_len = 3;
    hp.text_len = 4;
    hp.fmap = 3;
    hp.image_seq_len = 9;
    hp.max_pos = 12;
    hp.conv_kernel = 5;
    hp.conv_dilation = 1;
    const int64_t n = 12, dh = 5, nq = n * dh, total = 3 * nq;
    float *t = malloc((size_t)total * sizeof *t), *g = calloc((size_t)total, sizeof *g);
    float *cy = malloc((size_t)nq * sizeof *cy), out[8], scores[64];
    fill(t, total, -1.5, 1.5);
    fill(cy, nq, -1, 1);
    att_ctx c = {n, dh, &hp, type, cy};
    const float *Q = t, *K = t + nq, *V = t + 2 * nq;
    ops_span sp[2 + 16];
    double L = 0.0;
    for (int64_t p = 0; p < n; p++) {
        int ns = attention_spans(&hp, type, p, sp);
        ops_attend(Q + p * dh, K, V, dh, sp, ns, scores, out);
        for (int64_t d = 0; d < dh; d++)
            L += (double)cy[p * dh + d] * out[d];
        bw_attend(Q + p * dh, K, V, dh, sp, ns, cy + p * dh, scores, g + p * dh, g + nq,
                  g + 2 * nq);
    }
    double th[256];
    for (int64_t i = 0; i < total; i++)
        th[i] = t[i];
    char what[128];
    snprintf(what, sizeof what, "attention %s: reference = ops_attend", name);
    check(fabs(L - att_loss(th, &c)) < 1e-5, "%s", what);
    snprintf(what, sizeof what, "attention %s, 12 queries (dq, dk, dv)", name);
    check_fd(what, att_loss, &c, t, g, total);
    free(t);
    free(g);
    free(cy);
}

/* ---- embedding ---------------------------------------------------------------------- */

static void test_embedding(void)
{
    /* linear in the table: finite differences are exact, so compare the
     * scatter-add with Σ over rows directly */
    const int64_t V = 5, d = 3, rows = 7;
    const int32_t ids[7] = {0, 3, 3, 1, 4, 3, 0};
    float dy[21], dt[15] = {0};
    double ref[15] = {0};
    fill(dy, rows * d, -1, 1);
    bw_embedding(ids, rows, d, dy, dt);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < d; i++)
            ref[ids[r] * d + i] += dy[r * d + i];
    check(rel_l2(dt, ref, V * d) < 1e-7, "embedding: scatter-add of repeated ids");
}

/* ---- token shift ---------------------------------------------------------------------- */

static void test_token_shift(void)
{
    for (int dim = 5; dim <= 8; dim++) {
        /* the inference token_shift on a sequence fed as one chunk */
        transformer tf;
        memset(&tf, 0, sizeof tf);
        tf.hp.dim = dim;
        tf.hp.text_len = 4;
        tf.hp.fmap = 3;
        tf.hp.max_pos = 3 + 9;
        tf_state st;
        memset(&st, 0, sizeof st);
        st.batch = 1;
        st.max_chunk = tf.hp.max_pos;
        const int64_t N = tf.hp.max_pos, n = N * dim;
        float *h = malloc((size_t)n * 4), *hist = malloc((size_t)n * 4), *a = malloc((size_t)n * 4);
        float *b = malloc((size_t)n * 4), *c = malloc((size_t)n * 4), *g = calloc((size_t)n, 4);
        fill(h, n, -1, 1);
        fill(c, n, -1, 1);
        token_shift(&tf, &st, hist, h, (int)N, a);
        tshift_forward(h, N, dim, 4, 3, b);
        int same = !memcmp(a, b, (size_t)n * 4);
        /* the adjoint: <c, S h> = <Sᵀ c, h>, and Sᵀ c column by column */
        bw_token_shift(c, N, dim, 4, 3, g);
        double lhs = 0.0, rhs = 0.0;
        for (int64_t i = 0; i < n; i++) {
            lhs += (double)c[i] * b[i];
            rhs += (double)g[i] * h[i];
        }
        /* a finite difference on a selection is exact: check each entry */
        double worst = 0.0;
        for (int64_t i = 0; i < n; i++) {
            float keep = h[i];
            h[i] = keep + 1.0f;
            tshift_forward(h, N, dim, 4, 3, a);
            double fp = 0.0;
            for (int64_t j = 0; j < n; j++)
                fp += (double)c[j] * a[j];
            h[i] = keep;
            worst = fmax(worst, fabs(fp - lhs - g[i]));
        }
        check(same && fabs(lhs - rhs) < 1e-9 && worst < 1e-6,
              "token shift, dim %d: = token_shift(), adjoint |<c,Sh> - <Sᵀc,h>| = %.1e, "
              "finite differences max err %.1e",
              dim, fabs(lhs - rhs), worst);
        free(h);
        free(hist);
        free(a);
        free(b);
        free(c);
        free(g);
    }
}

/* ---- cross-entropy / DALLE loss ------------------------------------------------------------ */

typedef struct ce_ctx {
    int64_t batch, n_pos, T, tv, V;
    const int32_t *labels;
    double w;
} ce_ctx;

static double ce_loss_ref(const double *lg, const void *vc)
{
    const ce_ctx *c = vc;
    double lt = 0.0, li = 0.0;
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t p = 0; p < c->n_pos; p++) {
            const double *x = lg + (b * c->n_pos + p) * c->V;
            int64_t lo = p < c->T ? 0 : c->tv, hi = p < c->T ? c->tv : c->V;
            double m = -1e300, s = 0.0;
            for (int64_t j = lo; j < hi; j++)
                m = x[j] > m ? x[j] : m;
            for (int64_t j = lo; j < hi; j++)
                s += exp(x[j] - m);
            double l = m + log(s) - x[c->labels[b * c->n_pos + p]];
            if (p < c->T)
                lt += l;
            else
                li += l;
        }
    lt /= (double)(c->batch * c->T);
    li /= (double)(c->batch * (c->n_pos - c->T));
    return (lt + c->w * li) / (c->w + 1.0);
}

static void test_dalle_loss(void)
{
    const int64_t B = 2, N = 5, T = 2, tv = 4, V = 7, n = B * N * V;
    int32_t labels[10];
    float lg[70], dl[70];
    fill(lg, n, -3, 3);
    for (int64_t b = 0; b < B; b++)
        for (int64_t p = 0; p < N; p++) {
            labels[b * N + p] =
                p < T ? (int32_t)(urand() * tv) : (int32_t)(tv + urand() * (V - tv));
            /* the logits mask, as the model writes it */
            for (int64_t j = p < T ? tv : 0; j < (p < T ? V : tv); j++)
                lg[(b * N + p) * V + j] = -FLT_MAX;
        }
    ce_ctx c = {B, N, T, tv, V, labels, 7.0};
    double parts[2];
    double L = dalle_loss(lg, B, N, T, tv, V, labels, 7.0, dl, &parts[0], &parts[1]);
    double th[70], *g_ref = calloc((size_t)n, sizeof *g_ref);
    for (int64_t i = 0; i < n; i++)
        th[i] = lg[i] == -FLT_MAX ? -1e300 : lg[i];
    check(fabs(L - ce_loss_ref(th, &c)) < 1e-12 &&
              fabs(L - (parts[0] + 7.0 * parts[1]) / 8.0) < 1e-12,
          "DALLE loss = (text + 7·image) / 8 of the masked cross-entropies (%.6f)", L);
    /* finite differences over the unmasked entries only */
    int masked_zero = 1;
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (lg[i] == -FLT_MAX) {
            masked_zero &= dl[i] == 0.0f;
            continue;
        }
        double t = th[i], h = 1e-6;
        th[i] = t + h;
        double fp = ce_loss_ref(th, &c);
        th[i] = t - h;
        double fm = ce_loss_ref(th, &c);
        th[i] = t;
        double fd = (fp - fm) / (2 * h);
        num += (dl[i] - fd) * (dl[i] - fd);
        den += fd * fd;
    }
    check(masked_zero && sqrt(num / den) < FD_TOL,
          "DALLE loss gradient vs finite differences: rel-L2 %.2e, masked entries 0",
          sqrt(num / den));
    /* uniform logits: log of each part's vocabulary */
    for (int64_t i = 0; i < n; i++)
        if (lg[i] != -FLT_MAX)
            lg[i] = 0.25f;
    L = dalle_loss(lg, B, N, T, tv, V, labels, 7.0, NULL, &parts[0], &parts[1]);
    check(fabs(parts[0] - log(4.0)) < 1e-12 && fabs(parts[1] - log(3.0)) < 1e-12 &&
              fabs(L - (log(4.0) + 7 * log(3.0)) / 8) < 1e-12,
          "uniform logits: text log 4, image log 3, loss (log 4 + 7 log 3) / 8");
    free(g_ref);
}

/* ---- AdamW / clipping / schedule ------------------------------------------------------------ */

static void test_adamw(void)
{
    /* torch.optim.AdamW, two steps, by hand in double */
    const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
    float p[3] = {0.5f, -1.0f, 2.0f};
    const float g1[3] = {0.1f, -0.2f, 0.3f}, g2[3] = {-0.05f, 0.4f, 0.0f};
    const uint8_t decay[3] = {1, 1, 0};
    double rp[3], m[3] = {0}, v[3] = {0};
    for (int i = 0; i < 3; i++)
        rp[i] = p[i];
    adamw_config cfg = {b1, b2, eps, wd};
    adamw o;
    check(adamw_init(&o, 3, &cfg) == DALLE_OK, "adamw_init");
    for (int s = 1; s <= 2; s++) {
        const float *g = s == 1 ? g1 : g2;
        for (int i = 0; i < 3; i++) {
            if (decay[i])
                rp[i] *= 1 - lr * wd;
            m[i] = b1 * m[i] + (1 - b1) * g[i];
            v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
            double mh = m[i] / (1 - pow(b1, s)), vh = v[i] / (1 - pow(b2, s));
            rp[i] -= lr * mh / (sqrt(vh) + eps);
        }
        adamw_step(&o, p, g, decay, lr);
    }
    double err = 0.0;
    for (int i = 0; i < 3; i++)
        err = fmax(err, fabs(p[i] - rp[i]) / fabs(rp[i]));
    /* the hand formula's sqrt(v̂) + eps is torch's sqrt(v) / sqrt(bc2) + eps */
    check(err < 1e-6 && o.step == 2, "AdamW two steps (wd 0.1 on two of three) vs hand: %.1e",
          err);
    /* step 1 of Adam moves every parameter by ~lr·sign(g) */
    float q[2] = {0, 0};
    const float gq[2] = {3.0f, -1e-3f};
    adamw o2;
    adamw_config c0 = adamw_default_config();
    adamw_init(&o2, 2, &c0);
    adamw_step(&o2, q, gq, NULL, 0.1);
    check(fabs(q[0] + 0.1) < 1e-6 && fabs(q[1] - 0.1) < 1e-5,
          "Adam first step = -lr·sign(g): %.7f %.7f", q[0], q[1]);
    adamw_free(&o2);

    /* save / restore through a bundle, bit-exactly */
    lr_schedule s = lr_schedule_default();
    lr_schedule_observe(&s, 2.0);
    lr_schedule_observe(&s, 2.5);
    char path[600];
    snprintf(path, sizeof path, "%s/test_backward_adamw.dalle", tmpdir);
    dalle_bundle_writer *w = NULL;
    dalle_status st = dalle_bundle_writer_create("dalle", &w);
    if (!st)
        st = adamw_save(&o, &s, w, "train.");
    if (!st)
        st = dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    adamw r;
    adamw_init(&r, 3, &c0);
    lr_schedule rs2 = lr_schedule_default();
    dalle_bundle *b = NULL;
    if (!st)
        st = dalle_bundle_open(path, &b);
    if (!st)
        st = adamw_load(&r, &rs2, b, "train.");
    check(!st && r.step == o.step && !memcmp(r.m, o.m, 12) && !memcmp(r.v, o.v, 12) &&
              !memcmp(&r.cfg, &o.cfg, sizeof r.cfg) && !memcmp(&rs2, &s, sizeof s),
          "AdamW + schedule state: save, load, bit-identical %s", st ? dalle_last_error() : "");
    adamw r3;
    adamw_init(&r3, 4, &c0);
    check(b && adamw_load(&r3, &rs2, b, "train.") == DALLE_ERR_MISMATCH && r3.step == 0,
          "adamw_load into another size: MISMATCH, unchanged");
    adamw_free(&r3);
    dalle_bundle_close(b);
    remove(path);
    adamw_free(&r);
    adamw_free(&o);
}

static void test_clip_and_schedule(void)
{
    float g[4] = {3.0f, 0.0f, -4.0f, 0.0f};
    double nrm = clip_grad_norm(g, 4, 10.0);
    check(nrm == 5.0 && g[0] == 3.0f && g[2] == -4.0f, "clip_grad_norm below max: unchanged");
    nrm = clip_grad_norm(g, 4, 1.0);
    float cf = (float)(1.0 / (5.0 + 1e-6));
    check(nrm == 5.0 && g[0] == 3.0f * cf && g[2] == -4.0f * cf,
          "clip_grad_norm above max: scaled by max / (norm + 1e-6), norm %.1f returned", nrm);
    float h[2] = {1.0f, INFINITY};
    nrm = clip_grad_norm(h, 2, 1.0);
    check(isinf(nrm) && h[0] == 1.0f, "clip_grad_norm non-finite: returned, grads untouched");

    lr_schedule s = lr_schedule_default();
    s.kind = LR_COSINE;
    s.base_lr = 1.0;
    s.min_lr = 0.1;
    s.warmup_steps = 4;
    s.total_steps = 14;
    check(fabs(lr_schedule_at(&s, 0) - 0.25) < 1e-15 && fabs(lr_schedule_at(&s, 3) - 1.0) < 1e-15 &&
              fabs(lr_schedule_at(&s, 4) - 1.0) < 1e-15 &&
              fabs(lr_schedule_at(&s, 9) - 0.55) < 1e-12 &&
              fabs(lr_schedule_at(&s, 14) - 0.1) < 1e-15 &&
              fabs(lr_schedule_at(&s, 100) - 0.1) < 1e-15,
          "cosine schedule with warm-up: 0.25, 1, 1, 0.55 (midway), 0.1, 0.1");
    s.kind = LR_CONSTANT;
    check(lr_schedule_at(&s, 1) == 0.5 && lr_schedule_at(&s, 50) == 1.0, "constant with warm-up");

    /* ReduceLROnPlateau(factor 0.5, patience 2, cooldown 1, min_lr 0.3), by
     * hand: best 1.0 at epoch 1; epochs 2-4 bad, the third exceeds the
     * patience -> 0.5 and a cooldown of 1 that swallows epoch 5's count;
     * epochs 6-8 bad -> 0.25, clamped to min_lr 0.3; never lower after */
    lr_schedule p = lr_schedule_default();
    p.base_lr = p.plateau_lr = 1.0;
    p.patience = 2;
    p.cooldown = 1;
    p.min_lr = 0.3;
    const double metrics[] = {1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0};
    const double want[] = {1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.3, 0.3, 0.3, 0.3};
    int ok = 1;
    for (int i = 0; i < 11; i++) {
        lr_schedule_observe(&p, metrics[i]);
        ok &= fabs(lr_schedule_at(&p, 0) - want[i]) < 1e-15;
    }
    lr_schedule_observe(&p, 0.5); /* an improvement resets the count */
    ok &= p.num_bad == 0 && p.best == 0.5;
    check(ok, "ReduceLROnPlateau: patience, cooldown, min_lr, improvement (torch semantics)");
}

/* The transformer's training step: below main. */
static void test_tf_train(void);

int main(int argc, char **argv)
{
    if (argc > 1)
        tmpdir = argv[1];
    test_linear();
    test_layer_norm();
    test_geglu();
    test_add_scaled();
    test_softmax();
    test_rotary();
    test_attention(ATTN_FULL, "full (causal)");
    test_attention(ATTN_AXIAL_ROW, "axial_row");
    test_attention(ATTN_AXIAL_COL, "axial_col");
    test_attention(ATTN_CONV_LIKE, "conv_like");
    test_embedding();
    test_token_shift();
    test_dalle_loss();
    test_adamw();
    test_clip_and_schedule();
    test_tf_train();
    return check_summary(NULL);
}

/* ---- the DALL·E transformer's training step ------------------------------------------------ */

static tf_train_config tiny_config(int rotary, int shift, attn_type type)
{
    tf_train_config c;
    memset(&c, 0, sizeof c);
    c.dim = 16;
    c.depth = 2;
    c.heads = 2;
    c.dim_head = 12; /* rotary: dim_head // 3 = 4, all 12 channels rotated */
    c.num_text_tokens = 10;
    c.text_seq_len = 4;
    c.num_image_tokens = 6;
    c.fmap = 3;
    c.shift_tokens = shift;
    c.rotary_emb = rotary;
    c.n_attn_types = 1;
    c.attn_types[0] = type;
    c.loss_img_weight = 7.0;
    c.seed = 1234;
    return c;
}

static void random_pairs(const tf_train_config *c, int batch, int32_t *text, int32_t *image)
{
    for (int i = 0; i < batch * c->text_seq_len; i++)
        /* trailing padding in some captions */
        text[i] = (i % c->text_seq_len) >= 3 && (i / c->text_seq_len) % 2
                      ? 0
                      : 1 + (int32_t)(urand() * (c->num_text_tokens - 1));
    for (int i = 0; i < batch * c->fmap * c->fmap; i++)
        image[i] = (int32_t)(urand() * c->num_image_tokens);
}

static double loss_of(tf_train *tr, const int32_t *text, const int32_t *image, int batch)
{
    double L = 0.0;
    tf_train_forward(tr, text, image, batch, &L, NULL);
    return L;
}

typedef struct pairs_ctx {
    tf_train *tr;
    const int32_t *text, *image;
    int batch;
} pairs_ctx;

static double pairs_loss(void *ctx)
{
    const pairs_ctx *k = ctx;
    return loss_of(k->tr, k->text, k->image, k->batch);
}

/* Gradients of the whole model against central differences of the loss
 * (check_model_fd: three weights of every tensor, h = 1e-2 on the float
 * forward). drop: the forwards run with dropout on (fixed seed and step:
 * the same masks in every forward, so the loss is a function of the
 * weights). With stable, the trained gradient of the embeddings is a tenth
 * of the derivative of the loss (upstream detaches 0.9 of them: tokens *
 * 0.1 + tokens.detach() * 0.9 has the value of tokens); they are scaled by
 * 10 before the comparison, which so checks the factor too. */
static void tf_grad_check_ex(const char *what, tf_train_config c, int drop)
{
    tf_train *tr = NULL;
    const int B = 2;
    int32_t text[16], image[32];
    if (tf_train_create(&c, B, &tr)) {
        check(0, "%s: tf_train_create: %s", what, dalle_last_error());
        return;
    }
    /* move every weight off its initial value (LayerNorm 1/0, equal scales) */
    for (int64_t i = 0; i < tr->pt.n_weights; i++)
        tr->pt.w[i] += frand(-0.05, 0.05);
    random_pairs(&c, B, text, image);
    if (drop)
        tf_train_set_dropout(tr, 1, 42, 3);
    tf_train_zero_grad(tr);
    tf_train_forward(tr, text, image, B, NULL, NULL);
    tf_train_backward(tr);
    if (c.stable) {
        static const char *const emb[] = {"text_emb.weight", "image_emb.weight",
                                          "text_pos_emb.weight", "image_pos_emb.weights_0",
                                          "image_pos_emb.weights_1"};
        for (int e = 0; e < 5; e++) {
            const train_param *p = tf_train_find(tr, emb[e]);
            for (int64_t i = 0; p && i < p->numel; i++)
                tr->pt.g[p->offset + i] *= 10.0f;
        }
    }
    pairs_ctx k = {tr, text, image, B};
    check_model_fd(what, &tr->pt, pairs_loss, &k);
    tf_train_free(tr);
}

static void tf_grad_check(const char *what, tf_train_config c)
{
    tf_grad_check_ex(what, c, 0);
}

/* A DiscreteVAE of the right codebook and grid (random weights): a
 * "dalle" bundle needs one to load. */
static dalle_status add_tiny_dvae(dalle_bundle_writer *w, int num_tokens, int fmap)
{
    dalle_status s;
    const int cd = 4, hd = 4;
    float buf[4096];
    fill(buf, 4096, -0.3, 0.3);
    struct {
        const char *name;
        int ndim;
        int64_t dims[4];
    } t[] = {{"vae.codebook.weight", 2, {num_tokens, cd, 0, 0}},
             {"vae.encoder.0.0.weight", 4, {hd, 3, 4, 4}},
             {"vae.encoder.0.0.bias", 1, {hd, 0, 0, 0}},
             {"vae.encoder.1.weight", 4, {num_tokens, hd, 1, 1}},
             {"vae.encoder.1.bias", 1, {num_tokens, 0, 0, 0}},
             {"vae.decoder.0.0.weight", 4, {cd, hd, 4, 4}},
             {"vae.decoder.0.0.bias", 1, {hd, 0, 0, 0}},
             {"vae.decoder.1.weight", 4, {3, hd, 1, 1}},
             {"vae.decoder.1.bias", 1, {3, 0, 0, 0}}};
    if ((s = dalle_bundle_writer_set_str(w, "vae.kind", "dvae")) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.image_size", 2 * fmap)) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.num_layers", 1)) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.num_tokens", num_tokens)) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.codebook_dim", cd)) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.hidden_dim", hd)) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.num_resnet_blocks", 0)) ||
        (s = dalle_bundle_writer_set_i64(w, "vae.channels", 3)))
        return s;
    for (size_t i = 0; i < sizeof t / sizeof *t; i++)
        if ((s = dalle_bundle_writer_add_tensor(w, t[i].name, DALLE_DTYPE_F32, t[i].ndim,
                                                t[i].dims, buf, 0)))
            return s;
    return DALLE_OK;
}

static dalle_status write_checkpoint(const tf_train *tr, const adamw *o, const lr_schedule *s,
                                     const char *path)
{
    dalle_bundle_writer *w = NULL;
    dalle_status st = dalle_bundle_writer_create("dalle", &w);
    if (!st)
        st = tf_train_write(tr, w);
    if (!st)
        st = add_tiny_dvae(w, tr->cfg.num_image_tokens, tr->cfg.fmap);
    if (!st && o)
        st = adamw_save(o, s, w, "train.");
    if (!st)
        st = dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return st;
}

/* Non-zero: train_step runs with dropout on (seed 77, the optimiser's step). */
static int train_dropout;

/* One optimizer step as train_dalle.py takes it: clip to 0.5, Adam. */
static double train_step(tf_train *tr, adamw *o, const lr_schedule *s, const int32_t *text,
                         const int32_t *image, int batch)
{
    double L = 0.0;
    tf_train_zero_grad(tr);
    tf_train_set_dropout(tr, train_dropout, 77, o->step);
    tf_train_forward(tr, text, image, batch, &L, NULL);
    tf_train_backward(tr);
    tf_train_set_dropout(tr, 0, 0, 0);
    clip_grad_norm(tr->pt.g, tr->pt.n_weights, 0.5);
    adamw_step(o, tr->pt.w, tr->pt.g, tr->pt.decay, lr_schedule_at(s, o->step));
    return L;
}

/* Train a few steps, write the bundle, load it with dalle_ctx_create: the
 * inference logits must be the training forward's. */
static void tf_round_trip(const char *what, tf_train_config c)
{
    tf_train *tr = NULL;
    const int B = 3, I = c.fmap * c.fmap;
    int32_t text[12], image[27];
    adamw o;
    adamw_config ac = adamw_default_config();
    lr_schedule s = lr_schedule_default();
    s.kind = LR_CONSTANT;
    s.base_lr = 1e-2;
    if (tf_train_create(&c, B, &tr) || adamw_init(&o, tr->pt.n_weights, &ac)) {
        check(0, "%s: create: %s", what, dalle_last_error());
        return;
    }
    random_pairs(&c, B, text, image);
    for (int i = 0; i < 3; i++)
        train_step(tr, &o, &s, text, image, B);
    random_pairs(&c, B, text, image);
    tf_train_forward(tr, text, image, B, NULL, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/test_backward_model.dalle", tmpdir);
    dalle_ctx *ctx = NULL;
    dalle_status st = write_checkpoint(tr, NULL, NULL, path);
    if (!st)
        st = dalle_ctx_create(path, NULL, &ctx);
    const int64_t N = c.text_seq_len + I;
    const int64_t V = c.num_text_tokens + c.text_seq_len + c.num_image_tokens;
    float *out = malloc((size_t)(B * N * V) * sizeof *out);
    if (!st)
        st = dalle_logits(ctx, text, image, B, I, 1.0f, out);
    if (st) {
        check(0, "%s: write / load / dalle_logits: %s", what, dalle_last_error());
    } else {
        const float *mine = tf_train_logits(tr);
        double worst = 0.0, scale = 0.0;
        int masks_same = dalle_logits_rows(ctx, I) == N;
        for (int64_t i = 0; i < B * N * V; i++) {
            if ((mine[i] == -FLT_MAX) != (out[i] == -FLT_MAX)) {
                masks_same = 0;
                continue;
            }
            if (mine[i] == -FLT_MAX)
                continue;
            worst = fmax(worst, fabs(mine[i] - out[i]));
            scale = fmax(scale, fabs(out[i]));
        }
        check(masks_same && worst <= 1e-5 * scale,
              "%s: after 3 steps, bundle -> dalle_ctx_create -> dalle_logits = training logits "
              "(max |diff| %.2e of max |logit| %.2f; masks identical)",
              what, worst, scale);
    }
    free(out);
    dalle_ctx_free(ctx);
    remove(path);
    adamw_free(&o);
    tf_train_free(tr);
}

/* Checkpoint after k steps and resume in a new trainer: the next steps
 * give the same bits as the uninterrupted run. Also: 1 vs 4 threads. */
static void tf_resume_and_threads(void)
{
    tf_train_config c = tiny_config(1, 1, ATTN_FULL);
    const int B = 2;
    int32_t text[8], image[18];
    random_pairs(&c, B, text, image);
    adamw_config ac = adamw_default_config();
    ac.weight_decay = 0.01;
    lr_schedule s = lr_schedule_default();
    s.kind = LR_COSINE;
    s.warmup_steps = 2;
    s.total_steps = 10;
    tf_train *a = NULL, *b = NULL;
    adamw oa, ob;
    tf_train_create(&c, B, &a);
    adamw_init(&oa, a->pt.n_weights, &ac);
    for (int i = 0; i < 4; i++)
        train_step(a, &oa, &s, text, image, B);
    char path[600];
    snprintf(path, sizeof path, "%s/test_backward_ckpt.dalle", tmpdir);
    dalle_status st = write_checkpoint(a, &oa, &s, path);
    for (int i = 0; i < 4; i++)
        train_step(a, &oa, &s, text, image, B);

    c.seed = 999; /* a different initialisation, overwritten by the load */
    tf_train_create(&c, B, &b);
    adamw_init(&ob, b->pt.n_weights, &ac);
    lr_schedule sb = lr_schedule_default();
    dalle_bundle *bun = NULL;
    if (!st)
        st = dalle_bundle_open(path, &bun);
    if (!st)
        st = tf_train_load_weights(b, bun);
    if (!st)
        st = adamw_load(&ob, &sb, bun, "train.");
    dalle_bundle_close(bun);
    for (int i = 0; i < 4 && !st; i++)
        train_step(b, &ob, &sb, text, image, B);
    check(!st && !memcmp(a->pt.w, b->pt.w, (size_t)a->pt.n_weights * sizeof *a->pt.w) &&
              !memcmp(oa.m, ob.m, (size_t)a->pt.n_weights * 4) && oa.step == ob.step,
          "checkpoint after 4 steps (weights + AdamW + schedule), resume, 4 more: bit-identical "
          "to the uninterrupted run %s",
          st ? dalle_last_error() : "");
    remove(path);

    /* thread count: gradients bit-identical on no pool and a 4-thread one */
    float *g1 = malloc((size_t)a->pt.n_weights * sizeof *g1);
    tpool *pool = NULL;
    tf_train_zero_grad(a);
    tf_train_forward(a, text, image, B, NULL, NULL);
    tf_train_backward(a);
    memcpy(g1, a->pt.g, (size_t)a->pt.n_weights * sizeof *g1);
    st = tpool_create(4, &pool);
    a->pool = pool;
    tf_train_zero_grad(a);
    tf_train_forward(a, text, image, B, NULL, NULL);
    tf_train_backward(a);
    check(!st && !memcmp(g1, a->pt.g, (size_t)a->pt.n_weights * sizeof *g1),
          "gradients on the calling thread and on a %d-thread pool: bit-identical",
          tpool_threads(pool));
    a->pool = NULL;
    tpool_free(pool);
    free(g1);
    adamw_free(&oa);
    adamw_free(&ob);
    tf_train_free(a);
    tf_train_free(b);
}

/* 200 steps on 4 fixed (caption, image) pairs, Adam + clipping as
 * train_dalle.py: the model must learn them. */
static void tf_training_run(void)
{
    tf_train_config c = tiny_config(1, 1, ATTN_FULL);
    c.dim = 32;
    c.heads = 4;
    c.num_image_tokens = 8;
    const int B = 4, I = c.fmap * c.fmap;
    int32_t text[16], image[36];
    for (int b = 0; b < B; b++) {
        /* caption "b+1 b+5 0 0"; image: a pattern determined by the caption */
        text[b * 4 + 0] = 1 + b;
        text[b * 4 + 1] = 5 + b;
        text[b * 4 + 2] = text[b * 4 + 3] = 0;
        for (int i = 0; i < I; i++)
            image[b * I + i] = (b * 3 + i * (b + 1)) % c.num_image_tokens;
    }
    tf_train *tr = NULL;
    adamw o;
    adamw_config ac = adamw_default_config();
    lr_schedule s = lr_schedule_default();
    s.kind = LR_CONSTANT;
    s.base_lr = 1e-3;
    s.warmup_steps = 10;
    tf_train_create(&c, B, &tr);
    adamw_init(&o, tr->pt.n_weights, &ac);
    double first = 0.0, last = 0.0, parts[2];
    for (int i = 0; i < 200; i++) {
        double L = train_step(tr, &o, &s, text, image, B);
        if (i == 0)
            first = L;
    }
    tf_train_forward(tr, text, image, B, &last, parts);
    check(last < 0.1 * first,
          "training 200 steps (Adam 1e-3, 10 warm-up, clip 0.5) on 4 fixed pairs: loss %.4f -> "
          "%.4f (text %.4f, image %.4f); must fall below a tenth",
          first, last, parts[0], parts[1]);
    adamw_free(&o);
    tf_train_free(tr);
}

/* The loss and logits of one forward. */
static double forward_logits(tf_train *tr, const int32_t *text, const int32_t *image, int B,
                             float *logits, size_t n)
{
    double L = 0.0;
    tf_train_forward(tr, text, image, B, &L, NULL);
    memcpy(logits, tf_train_logits(tr), n * sizeof *logits);
    return L;
}

/* Dropout's switches: with probabilities 0, or switched off, the forward is
 * the one without dropout, bit for bit; on, it is a function of (seed,
 * step); the dropped fraction is p. */
static void tf_dropout_switches(void)
{
    tf_train_config c = tiny_config(1, 1, ATTN_FULL), cd = c;
    cd.attn_dropout = 0.25;
    cd.ff_dropout = 0.5;
    const int B = 2;
    int32_t text[8], image[18];
    random_pairs(&c, B, text, image);
    tf_train *a = NULL, *b = NULL;
    tf_train_create(&c, B, &a);
    tf_train_create(&cd, B, &b);
    const size_t n = (size_t)B * a->hp.max_pos * a->hp.total_tokens;
    float *la = malloc(n * sizeof *la), *lb = malloc(n * sizeof *lb);
    double L0 = forward_logits(a, text, image, B, la, n);
    double L1 = forward_logits(b, text, image, B, lb, n);
    check(L0 == L1 && !memcmp(la, lb, n * sizeof *la),
          "dropout 0.25 / 0.5 switched off (evaluation): the same bits as no dropout");
    tf_train_set_dropout(a, 1, 5, 9);
    L1 = forward_logits(a, text, image, B, lb, n);
    check(L0 == L1 && !memcmp(la, lb, n * sizeof *la),
          "dropout switched on with probabilities 0: the same bits as off");
    tf_train_set_dropout(b, 1, 5, 9);
    double D1 = forward_logits(b, text, image, B, la, n);
    double D2 = forward_logits(b, text, image, B, lb, n);
    tf_train_set_dropout(b, 1, 5, 10);
    double D3 = loss_of(b, text, image, B);
    tf_train_set_dropout(b, 1, 6, 9);
    double D4 = loss_of(b, text, image, B);
    check(D1 == D2 && !memcmp(la, lb, n * sizeof *la) && D1 != L0 && D3 != D1 && D4 != D1,
          "dropout on: the same (seed, step) gives the same bits (loss %.6f), another step "
          "(%.6f) or seed (%.6f) other masks; off: %.6f",
          D1, D3, D4, L0);
    free(la);
    free(lb);
    tf_train_free(a);
    tf_train_free(b);
}

/* The options of issue 7: gradients against finite differences, the
 * bundle round trip into dalle_ctx_create (the hyper-parameters recorded,
 * shared layers as aliases). */
static void tf_options(void)
{
    tf_train_config c = tiny_config(1, 1, ATTN_FULL);
    c.sandwich_norm = 1;
    tf_grad_check("tf_train sandwich_norm", c);
    tf_round_trip("round trip sandwich_norm", c);

    c = tiny_config(0, 1, ATTN_FULL);
    c.stable = 1;
    tf_grad_check("tf_train stable (learned positions; embeddings x10)", c);
    tf_round_trip("round trip stable", c);

    /* layers 0 and 1 share an attention, 0 and 2 a feed-forward */
    c = tiny_config(1, 1, ATTN_FULL);
    c.depth = 3;
    c.n_shared_attn = 3;
    strcpy(c.shared_attn_ids[0], "0");
    strcpy(c.shared_attn_ids[1], "0");
    strcpy(c.shared_attn_ids[2], "1");
    c.n_shared_ff = 2;
    strcpy(c.shared_ff_ids[0], "x");
    strcpy(c.shared_ff_ids[1], "y");
    tf_train *tr = NULL;
    dalle_status st = tf_train_create(&c, 1, &tr);
    tf_train_config plain = c;
    plain.n_shared_attn = plain.n_shared_ff = 0;
    tf_train *tp = NULL;
    if (!st)
        st = tf_train_create(&plain, 1, &tp);
    check(!st && tr->attn_owner[1] == 0 && tr->attn_owner[2] == 2 && tr->ff_owner[2] == 0 &&
              tr->ff_owner[1] == 1 && tr->pw.layers[1].to_qkv == tr->pw.layers[0].to_qkv &&
              tr->pg.layers[2].ff_w2 == tr->pg.layers[0].ff_w2 &&
              tp->pt.n_weights - tr->pt.n_weights ==
                  (int64_t)3 * c.heads * c.dim_head * c.dim +
                      (int64_t)c.dim * c.heads * c.dim_head + c.dim +
                      (int64_t)2 * 4 * c.dim * c.dim + 2 * 4 * c.dim +
                      (int64_t)4 * c.dim * c.dim + c.dim,
          "shared_attn_ids 0,0,1 / shared_ff_ids x,y: layer 1 uses layer 0's attention, "
          "layer 2 its feed-forward; %lld weights instead of %lld %s",
          tr ? (long long)tr->pt.n_weights : 0LL, tp ? (long long)tp->pt.n_weights : 0LL,
          st ? dalle_last_error() : "");
    tf_train_free(tr);
    tf_train_free(tp);
    tf_grad_check("tf_train shared attention (layers 0, 1) and feed-forward (0, 2)", c);
    tf_round_trip("round trip shared layers (aliases)", c);
    tf_train_config bad = tiny_config(1, 1, ATTN_FULL);
    bad.n_attn_types = 2;
    bad.attn_types[1] = ATTN_AXIAL_ROW;
    bad.n_shared_attn = 1;
    strcpy(bad.shared_attn_ids[0], "same");
    tr = NULL;
    st = tf_train_create(&bad, 1, &tr);
    check(st == DALLE_ERR_INVALID_ARGUMENT && !tr &&
              strstr(dalle_last_error(), "attn_types differ"),
          "a shared attention over full and axial_row layers is refused (upstream's "
          "ValueError): %s",
          dalle_last_error());

    c = tiny_config(1, 1, ATTN_CONV_LIKE);
    c.attn_dropout = 0.3;
    c.ff_dropout = 0.4;
    tf_grad_check_ex("tf_train attn_dropout 0.3, ff_dropout 0.4 (dropout on)", c, 1);
    c.sandwich_norm = 1;
    c.stable = 1;
    c.rotary_emb = 0;
    tf_grad_check_ex("tf_train dropout + sandwich_norm + stable (embeddings x10)", c, 1);
    train_dropout = 1;
    tf_round_trip("round trip after 3 steps with dropout + sandwich_norm + stable", c);
    train_dropout = 0;
    tf_dropout_switches();

    c = tiny_config(1, 1, ATTN_FULL);
    c.reversible = 1;
    c.depth = 3;
    tf_grad_check("tf_train reversible, 3 layers", c);
    tf_round_trip("round trip reversible", c);
    c = tiny_config(0, 0, ATTN_AXIAL_ROW);
    c.reversible = 1;
    c.sandwich_norm = 1;
    c.attn_dropout = 0.2;
    c.ff_dropout = 0.2;
    c.n_shared_ff = 1;
    strcpy(c.shared_ff_ids[0], "all");
    tf_grad_check_ex("tf_train reversible + sandwich_norm + dropout + one shared feed-forward", c,
                     1);
    train_dropout = 1;
    tf_round_trip("round trip reversible + sandwich_norm + shared feed-forward, after dropout "
                  "steps",
                  c);
    train_dropout = 0;
}

static void test_tf_train(void)
{
    tf_grad_check("tf_train rotary + token shift, full", tiny_config(1, 1, ATTN_FULL));
    tf_grad_check("tf_train learned positions, no shift", tiny_config(0, 0, ATTN_FULL));
    tf_grad_check("tf_train rotary + shift, axial_row", tiny_config(1, 1, ATTN_AXIAL_ROW));
    tf_grad_check("tf_train rotary + shift, axial_col", tiny_config(1, 1, ATTN_AXIAL_COL));
    tf_grad_check("tf_train rotary + shift, conv_like", tiny_config(1, 1, ATTN_CONV_LIKE));
    tf_round_trip("round trip rotary + shift, full", tiny_config(1, 1, ATTN_FULL));
    tf_round_trip("round trip learned positions, no shift", tiny_config(0, 0, ATTN_FULL));
    tf_train_config mixed = tiny_config(1, 1, ATTN_AXIAL_ROW);
    mixed.n_attn_types = 3;
    mixed.attn_types[1] = ATTN_AXIAL_COL;
    mixed.attn_types[2] = ATTN_CONV_LIKE;
    mixed.depth = 3;
    tf_round_trip("round trip attn_types axial_row, axial_col, conv_like", mixed);
    tf_resume_and_threads();
    tf_training_run();
    tf_options();
}
