/* bench/window.h: the sampling windows and a token's costs. */
#include "window.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ceilings.h"

typedef struct timing {
    double t0;                 /* dalle_sample called */
    double t[MAX_WINDOW + 1];  /* progress callbacks */
    int calls;
    int64_t limit;             /* abort once `done` reaches this */
    int64_t done;
} timing;

static void on_progress(int64_t done, int64_t total, void *user)
{
    timing *tm = user;
    (void)total;
    if (tm->calls <= MAX_WINDOW)
        tm->t[tm->calls] = bench_now();
    tm->calls++;
    tm->done = done;
}

static int on_abort(void *user)
{
    timing *tm = user;
    return tm->limit > 0 && tm->done >= tm->limit;
}

void bench_die(const char *what, dalle_status s)
{
    fprintf(stderr, "bench: %s: %s (%s)\n", what, dalle_strerror(s), dalle_last_error());
    exit(1);
}

static uint64_t lcg = 0x2545F4914F6CDD1Dull;
int bench_rand_below(int n)
{
    lcg = lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (int)((lcg >> 33) % (uint64_t)n);
}

/* Sample `window` tokens per image (0: the whole image) of `batch` images,
 * primed with n_prime random tokens. *prefix_s: call to first token;
 * *step_s: mean time of one later step (all images). Returns the number of
 * steps timed. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int bench_sample_window(dalle_ctx *ctx, int batch, int n_prime, int window, double *prefix_s,
                         double *step_s, double *total_s)
{
    const int T = dalle_text_seq_len(ctx), S = dalle_image_seq_len(ctx);
    const int nt = dalle_num_text_tokens(ctx), ni = dalle_num_image_tokens(ctx);
    int32_t *text = calloc((size_t)batch * T, sizeof *text);
    int32_t *prime = malloc(((size_t)batch * (n_prime ? n_prime : 1)) * sizeof *prime);
    int32_t *out = malloc((size_t)batch * S * sizeof *out);
    timing *tm = calloc(1, sizeof *tm);
    if (!text || !prime || !out || !tm) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (int b = 0; b < batch; b++)
        for (int i = 0; i < T && i < 12; i++) /* a 12-token caption, padded with 0 */
            text[(int64_t)b * T + i] = 1 + bench_rand_below(nt - 1);
    for (int64_t i = 0; i < (int64_t)batch * n_prime; i++)
        prime[i] = bench_rand_below(ni);
    dalle_sample_params sp = dalle_sample_default_params();
    sp.seed = 1234;
    sp.prime = n_prime ? prime : NULL;
    sp.n_prime = n_prime;
    sp.progress = on_progress;
    sp.abort = on_abort;
    sp.user = tm;
    int steps = window > 0 ? window : S - n_prime;
    if (steps > MAX_WINDOW)
        steps = MAX_WINDOW;
    tm->limit = window > 0 ? (int64_t)batch * window : 0;
    tm->t0 = bench_now();
    dalle_status s = dalle_sample(ctx, text, batch, &sp, out);
    double t_end = bench_now();
    if (s && s != DALLE_ERR_ABORTED)
        bench_die("dalle_sample", s);
    int n = tm->calls < steps ? tm->calls : steps;
    if (n < 2) {
        fprintf(stderr, "bench: only %d progress calls\n", tm->calls);
        exit(1);
    }
    *prefix_s = tm->t[0] - tm->t0;
    /* the median step: robust to the bursts of other processes on a shared
     * machine; for a step cost linear in position it is the window's mean */
    double *dt = malloc((size_t)(n - 1) * sizeof *dt);
    if (!dt) {
        fprintf(stderr, "bench: out of memory\n");
        exit(1);
    }
    for (int i = 1; i < n; i++)
        dt[i - 1] = tm->t[i] - tm->t[i - 1];
    qsort(dt, (size_t)(n - 1), sizeof *dt, cmp_double);
    *step_s = (n - 1) % 2 ? dt[(n - 1) / 2] : 0.5 * (dt[(n - 1) / 2 - 1] + dt[(n - 1) / 2]);
    free(dt);
    if (total_s)
        *total_s = t_end - tm->t0;
    free(text), free(prime), free(out), free(tm);
    return n - 1;
}

/* The best (lowest median step) of `repeat` windows; *prefix_s likewise. */
void bench_sample_best(dalle_ctx *ctx, int batch, int n_prime, int window, int repeat,
                        double *prefix_s, double *step_s)
{
    *prefix_s = *step_s = 1e30;
    for (int r = 0; r < repeat; r++) {
        double p, st;
        bench_sample_window(ctx, batch, n_prime, window, &p, &st, NULL);
        *prefix_s = p < *prefix_s ? p : *prefix_s;
        *step_s = st < *step_s ? st : *step_s;
    }
}

void bench_token_costs(double dim, double depth, double inner, double text_seq_len,
                       double image_seq_len, double num_image_tokens, double mat_bytes,
                       bench_token_cost *c)
{
    const double D = dim, ffi = 4 * D, L = depth;
    memset(c, 0, sizeof *c);
    c->text_len = text_seq_len + 1;
    c->keys_avg = c->text_len + image_seq_len / 2;
    const double layer_mat = 3 * inner * D + D * inner + 2 * ffi * D + D * ffi;
    const double layer_vec = D + 2 * ffi + D + 4 * D + 2 * D;
    const double logits_mat = num_image_tokens * D;
    const double logits_vec = num_image_tokens + 2 * D;
    c->mat_elems = L * layer_mat + logits_mat;
    c->w1_elems = L * (layer_mat + layer_vec) + logits_mat + logits_vec + D;
    c->weight_bytes = mat_bytes * c->mat_elems + 4 * (c->w1_elems - c->mat_elems);
    c->kv_bytes = 4 * 2 * L * inner * c->keys_avg;
    c->attn_flops = L * 4 * inner * c->keys_avg;
    c->flops = 2 * c->mat_elems + c->attn_flops;
    c->kv_cache_bytes = 4 * 2 * L * inner * (text_seq_len + image_seq_len);
}

int64_t bench_meta_i64(const dalle_bundle *b, const char *key, int64_t def)
{
    int64_t v;
    return dalle_bundle_meta_i64(b, key, &v) == DALLE_OK ? v : def;
}

double bench_matrix_bytes(const dalle_bundle *b, int *dtype)
{
    dalle_tensor_info ti;
    const int idx = dalle_bundle_find_tensor(b, "to_logits.1.weight");
    int dt = DALLE_DTYPE_F32;
    if (idx >= 0 && dalle_bundle_tensor_info(b, idx, &ti) == DALLE_OK)
        dt = ti.dtype;
    if (dtype)
        *dtype = dt;
    if (dt == DALLE_DTYPE_F16 || dt == DALLE_DTYPE_BF16)
        return 2.0;
    if (dt == DALLE_DTYPE_I8)
        return 1.0 + 4.0 / (double)bench_meta_i64(b, "weights.int8_block", 32);
    return 4.0;
}

const char *bench_workload(int dim, int depth, int image_seq_len)
{
    if (dim == 512 && depth == 8 && image_seq_len == 1024)
        return "DALLE-S";
    if (dim == 256 && depth == 4 && image_seq_len == 256)
        return "DALLE-XS";
    return NULL;
}
