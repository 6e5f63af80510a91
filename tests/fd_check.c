/* Checks, random numbers and finite differences for the training tests
 * (fd_check.h). */
#include "fd_check.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int n_checks, n_failed;
const char *tmpdir = "/tmp";

void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    n_checks++;
    if (!ok)
        n_failed++;
    printf("%s - ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
}

int check_summary(const char *suffix)
{
    printf("%d checks, %d failed%s\n", n_checks, n_failed, suffix ? suffix : "");
    return n_failed ? 1 : 0;
}

double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- random numbers ------------------------------------------------------------------ */

static uint64_t rs = 0x9e3779b97f4a7c15ull;

void rng_seed(uint64_t seed) { rs = seed; }

double urand(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return (double)(rs >> 11) / 9007199254740992.0;
}

float frand(double lo, double hi) { return (float)(lo + (hi - lo) * urand()); }

void fill(float *x, int64_t n, double lo, double hi)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(lo, hi);
}

/* ---- finite differences ------------------------------------------------------------------ */

double rel_l2(const float *g, const double *ref, int64_t n)
{
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        num += (g[i] - ref[i]) * (g[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

void fd_grad(loss_fn f, const void *ctx, double *theta, int64_t n, double *g)
{
    for (int64_t i = 0; i < n; i++) {
        double t = theta[i], h = 1e-6 * (fabs(t) > 1.0 ? fabs(t) : 1.0);
        theta[i] = t + h;
        double fp = f(theta, ctx);
        theta[i] = t - h;
        double fm = f(theta, ctx);
        theta[i] = t;
        g[i] = (fp - fm) / (2.0 * h);
    }
}

void check_fd(const char *what, loss_fn f, const void *ctx, const float *inputs, const float *g,
              int64_t n)
{
    double *theta = malloc((size_t)n * sizeof *theta), *ref = calloc((size_t)n, sizeof *ref);
    for (int64_t i = 0; i < n; i++)
        theta[i] = inputs[i];
    fd_grad(f, ctx, theta, n, ref);
    double worst = 0.0;
    for (int64_t i = 0; i < n; i++)
        worst = fmax(worst, fabs(g[i] - ref[i]));
    double r = rel_l2(g, ref, n);
    check(r < FD_TOL, "%s: %lld gradients vs finite differences: rel-L2 %.2e, max abs %.2e", what,
          (long long)n, r, worst);
    free(theta);
    free(ref);
}

void check_model_fd(const char *what, param_table *pt, double (*loss)(void *ctx), void *ctx)
{
    double worst = 0.0, num = 0.0, den = 0.0;
    int n = 0, bad = 0;
    char worst_name[200] = "";
    for (int t = 0; t < pt->n_params; t++) {
        const train_param *p = &pt->params[t];
        const float *g = pt->g + p->offset;
        int64_t pick[3] = {0, (int64_t)(urand() * p->numel), (int64_t)(urand() * p->numel)};
        for (int64_t i = 1; i < p->numel; i++)
            if (fabsf(g[i]) > fabsf(g[pick[0]]))
                pick[0] = i;
        for (int k = 0; k < 3; k++) {
            float *wp = pt->w + p->offset + pick[k], keep = *wp;
            const double h = 1e-2;
            *wp = (float)(keep + h);
            double fp = loss(ctx);
            *wp = (float)(keep - h);
            double fm = loss(ctx);
            *wp = keep;
            double fd = (fp - fm) / ((double)(float)(keep + h) - (double)(float)(keep - h));
            double e = fabs(g[pick[k]] - fd);
            num += e * e;
            den += fd * fd;
            n++;
            if (e > 1e-2 * fabs(fd) + 3e-5)
                bad++;
            if (e / (fabs(fd) + 1e-3) > worst) {
                worst = e / (fabs(fd) + 1e-3);
                snprintf(worst_name, sizeof worst_name, "%s[%lld] g %.3e fd %.3e", p->name,
                         (long long)pick[k], (double)g[pick[k]], fd);
            }
        }
    }
    check(bad == 0,
          "%s: %d weights of %d tensors vs finite differences: rel-L2 %.2e, %d out of "
          "tolerance; worst %s",
          what, n, pt->n_params, sqrt(num / den), bad, worst_name);
}
