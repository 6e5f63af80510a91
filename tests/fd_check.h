/* What the white-box training tests (test_backward.c, test_clip_train.c,
 * test_vae_train.c) share: one line per check, a reproducible random
 * stream, and gradients against central finite differences.
 *
 * Operations are checked against DOUBLE reference forwards (h = 1e-6
 * relative: truncation O(h²) and round-off O(1e-16 / h) are both far below
 * the float error of the backward passes, ~1e-7 relative); the error is
 * rel-L2 = |g - g_fd| / |g_fd| over all entries, tolerance FD_TOL. Whole
 * models are checked against their own float forward (check_model_fd). */
#ifndef DALLE_TESTS_FD_CHECK_H
#define DALLE_TESTS_FD_CHECK_H

#include <stdint.h>

#include "train/param_table.h"

/* ---- checks ------------------------------------------------------------------------ */

/* "ok   - message" or "FAIL - message", counted. */
void check(int ok, const char *fmt, ...) DALLE_PRINTF(2, 3);
/* "N checks, M failed<suffix>" and the exit status (1 if any failed). */
int check_summary(const char *suffix);

/* Where the tests write their files (argv[1]; default /tmp). */
extern const char *tmpdir;

/* Monotonic seconds. */
double now(void);

/* ---- random numbers ------------------------------------------------------------------ */

/* The xorshift stream every draw below takes from; each test starts it
 * from its own seed. */
void rng_seed(uint64_t seed);
double urand(void); /* [0, 1) */
float frand(double lo, double hi);
void fill(float *x, int64_t n, double lo, double hi);

/* ---- finite differences ------------------------------------------------------------------ */

#define FD_TOL 1e-5

/* A scalar function of a parameter vector (an operation's inputs,
 * concatenated): typically Σ c ⊙ forward(θ), in double. */
typedef double (*loss_fn)(const double *theta, const void *ctx);

/* |g - ref| / |ref| (|g - ref| when ref is 0). */
double rel_l2(const float *g, const double *ref, int64_t n);
/* Central differences of f at θ (n entries, restored), h = 1e-6·max(|θ_i|, 1). */
void fd_grad(loss_fn f, const void *ctx, double *theta, int64_t n, double *g);
/* One check: the float gradient g (n entries of the packed θ) against
 * finite differences of f at θ = the float inputs, rel-L2 < FD_TOL. */
void check_fd(const char *what, loss_fn f, const void *ctx, const float *inputs, const float *g,
              int64_t n);

/* One check of a whole model whose backward left its gradients in pt->g:
 * for every tensor its largest gradient and two random entries against
 * central differences of the float forward `loss(ctx)` with h = 1e-2 (the
 * rounding noise of the loss, ~1e-7, over h stays below 1e-5; the O(h²)
 * truncation near 1e-4 relative); a weight passes at
 * |g - fd| <= 1e-2·|fd| + 3e-5. The weights are restored. */
void check_model_fd(const char *what, param_table *pt, double (*loss)(void *ctx), void *ctx);

#endif
