/* Generation at the machine's limits (issue 8): for each DALLE bundle given,
 * image tokens per second at batch 1 and batch 8, VAE decode time, peak
 * resident memory, bundle load time, and each speed as a fraction of its
 * roofline, against the ceilings measured at the start of the same run.
 *
 *   bench_generate [options] MODEL.dalle ...
 *     --tokens N      image tokens per image in each measured window (64)
 *     --threads T     dalle_ctx_params.n_threads (0 = all cores, the default)
 *     --full N        also sample whole images (batch 1 and 8, no window)
 *                     for models of at most N image tokens (default 0: never)
 *     --sgemm-n N     size of the sgemm ceiling (2048)
 *     --read-mib M    buffer of the bandwidth ceiling (1024 MiB)
 *     --repeat R      windows of each kind; the best is kept (3)
 *
 * Method. A whole DALLE-S image is 1024 tokens; sampling whole images at
 * batch 8 would take many minutes here, so each speed comes from windows of
 * N tokens sampled through dalle_sample, stopped with the abort callback,
 * and timed with the progress callback (which fires once per token step,
 * after the token is picked):
 *   - the first callback comes after the prefix forward (<bos>, caption and
 *     any primed tokens) and the first pick: that is the prefix time;
 *   - the N - 1 steps after it are the token loop: one forward of one token
 *     per image through the KV cache plus the pick. A step's time is the
 *     median of the N - 1 intervals (robust to other processes' bursts on a
 *     shared machine; for a cost linear in position, the window's mean), and
 *     the best of --repeat windows is kept. Tokens/s counts image tokens of
 *     all images: batch / step time.
 * Two windows per batch size: "start" (no priming: image tokens 0 .. N-1)
 * and "mid" (primed with S/2 - N/2 random tokens, so the window is centred
 * on the middle of the image). The cost of a step is linear in its position
 * (the attention reads every earlier key), so the mid window's per-token
 * time is the mean over a whole image: it is the figure reported. The two
 * windows together split a step into a fixed part and a per-key part.
 * With --full, whole images are sampled too, to check the extrapolation.
 *
 * Each model runs in a fresh process (this program re-executes itself with
 * --worker), so that its peak resident memory (VmHWM) is its own; the peak
 * is reset between phases through /proc/self/clear_refs where the kernel
 * allows it, giving the peak of loading, of batch 1 and of batch 8.
 *
 * Rooflines (bytes per matrix element as the bundle stores them and the
 * library keeps them: 4 for f32, 2 for f16 / bf16, 1 + 4/32 for int8 with
 * its float32 scale per 32; vectors are float32):
 *   batch 1: a token reads every weight it needs once. Per layer: to_qkv,
 *     to_out, the two feed-forward matrices, their biases, two LayerNorms
 *     and two LayerScales; then the final LayerNorm, the image rows of
 *     to_logits.1 (num_image_tokens × dim, and their biases; the text rows
 *     are masked at image positions, so an ideal code never reads them) and
 *     one image_emb row. Roofline tokens/s = bandwidth(all threads) / those
 *     bytes. The KV cache read by the attention is reported beside it.
 *   batch 8: FLOPs per token = 2 × the matrix elements above + attention
 *     (4 × heads × dim_head × keys per layer: q·k and the weighted sum of v)
 *     at the mean number of keys of an image, text_len + S/2. Roofline
 *     tokens/s = sgemm peak(all threads) / FLOPs. The memory term (weights
 *     read once per step of 8 tokens) is printed beside it: when it is the
 *     larger of the two, the FLOP roofline cannot be reached on this
 *     machine and the table says so. */
#include <dalle/dalle.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ceilings.h"
#include "window.h"

#define TARGET_B1 0.65
#define TARGET_B8 0.50

/* ------------------------------------------------------------------------ */
/* Results passed from a worker to the parent as "key value" lines           */
/* ------------------------------------------------------------------------ */

#define KEYS(X)                                                                            \
    X(dim) X(depth) X(heads) X(dim_head) X(text_seq_len) X(num_text_tokens) X(image_seq_len)  \
    X(num_image_tokens) X(total_tokens) X(image_size) X(weight_bytes) X(tf_weight_bytes)      \
    X(load_s) X(rss_after_load_kb) X(hwm_load_kb) X(hwm_reset_ok) X(window)                   \
    X(b1_start_prefix_s) X(b1_start_step_s) X(b1_mid_prefix_s) X(b1_mid_step_s) X(b1_mid_prime) \
    X(b8_start_prefix_s) X(b8_start_step_s) X(b8_mid_prefix_s) X(b8_mid_step_s) X(b8_mid_prime) \
    X(hwm_b1_kb) X(hwm_b8_kb) X(decode_s) X(decode8_s) X(hwm_total_kb) X(full_b1_s)           \
    X(full_b1_step_s) X(full_b8_s) X(full_b8_step_s) X(threads) X(repeat) X(hwm_full_b1_kb)  \
    X(hwm_full_b8_kb) X(mat_bytes) X(mat_dtype) X(hwm_start_kb)

typedef struct result {
#define FIELD(k) double k;
    KEYS(FIELD)
#undef FIELD
    char label[64];
    char path[512];
} result;

static void result_print(FILE *f, const result *r)
{
#define PRINT(k) fprintf(f, "%s %.9g\n", #k, r->k);
    KEYS(PRINT)
#undef PRINT
    fflush(f);
}

static void result_parse_line(result *r, const char *line)
{
    char key[64];
    double v;
    if (sscanf(line, "%63s %lf", key, &v) != 2)
        return;
#define PARSE(k)              \
    if (!strcmp(key, #k)) {   \
        r->k = v;             \
        return;               \
    }
    KEYS(PARSE)
#undef PARSE
}

/* ------------------------------------------------------------------------ */
/* Memory                                                                   */
/* ------------------------------------------------------------------------ */

static double status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double v = -1;
    size_t n = strlen(field);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':') {
            v = atof(line + n + 1);
            break;
        }
    fclose(f);
    if (v < 0 && !strcmp(field, "VmHWM")) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        v = (double)ru.ru_maxrss;
    }
    return v;
}

/* Reset VmHWM to the current RSS (Linux >= 4.0). */
static int reset_hwm(void)
{
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd < 0)
        return 0;
    int ok = write(fd, "5", 1) == 1;
    close(fd);
    return ok;
}

/* ------------------------------------------------------------------------ */
/* The worker: one model in this process                                    */
/* ------------------------------------------------------------------------ */

static int worker(const char *path, int window, int threads, int full_max, int repeat)
{
    result r;
    memset(&r, 0, sizeof r);
    r.window = window;
    r.threads = threads;
    r.repeat = repeat;
    /* the process's floor: this program with libdalle, OpenBLAS and the C
     * library mapped and initialised, before any model (any process that
     * uses the library has it) */
    r.hwm_start_kb = status_kb("VmHWM");
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = threads;
    cp.max_batch = 8;
    dalle_ctx *ctx;
    double t = bench_now();
    dalle_status s = dalle_ctx_create(path, &cp, &ctx);
    r.load_s = bench_now() - t;
    if (s)
        bench_die(path, s);
    r.rss_after_load_kb = status_kb("VmRSS");
    r.hwm_load_kb = status_kb("VmHWM");

    const dalle_bundle *b = dalle_ctx_bundle(ctx);
    r.dim = (double)bench_meta_i64(b, "dalle.dim", 0);
    r.depth = (double)bench_meta_i64(b, "dalle.depth", 0);
    r.heads = (double)bench_meta_i64(b, "dalle.heads", 8);
    r.dim_head = (double)bench_meta_i64(b, "dalle.dim_head", 64);
    r.text_seq_len = dalle_text_seq_len(ctx);
    r.num_text_tokens = dalle_num_text_tokens(ctx);
    r.image_seq_len = dalle_image_seq_len(ctx);
    r.num_image_tokens = dalle_num_image_tokens(ctx);
    r.total_tokens = dalle_total_tokens(ctx);
    r.image_size = dalle_image_size(ctx);
    for (int i = 0; i < dalle_bundle_n_tensors(b); i++) {
        dalle_tensor_info ti;
        if (dalle_bundle_tensor_info(b, i, &ti) == DALLE_OK && ti.codec != DALLE_CODEC_ALIAS) {
            /* the transformer keeps its matrices as stored (f32, f16, bf16,
             * int8 + scales); the VAE widens any f16/bf16 to float32 */
            const int vae = !strncmp(ti.name, "vae.", 4);
            const double bytes = vae ? (double)ti.numel * 4 : (double)ti.nbytes;
            r.weight_bytes += bytes;
            if (!vae && strncmp(ti.name, "tokenizer.", 10))
                r.tf_weight_bytes += bytes;
        }
    }
    {
        int dt; /* bytes per element of the matrices as the library keeps them */
        r.mat_bytes = bench_matrix_bytes(b, &dt);
        r.mat_dtype = dt;
    }
    const int S = (int)r.image_seq_len;
    if (window > S / 2)
        window = S / 2;
    if (window < 2)
        window = 2;
    r.window = window;

    /* warm-up: threads started, buffers touched */
    double p_, s_;
    bench_sample_window(ctx, 1, 0, 4, &p_, &s_, NULL);

    r.hwm_reset_ok = reset_hwm();
    const int mid = S / 2 - window / 2;
    bench_sample_best(ctx, 1, 0, window, repeat, &r.b1_start_prefix_s, &r.b1_start_step_s);
    bench_sample_best(ctx, 1, mid, window, repeat, &r.b1_mid_prefix_s, &r.b1_mid_step_s);
    r.b1_mid_prime = mid;
    r.hwm_b1_kb = status_kb("VmHWM");

    if (r.hwm_reset_ok)
        reset_hwm();
    bench_sample_best(ctx, 8, 0, window, repeat, &r.b8_start_prefix_s, &r.b8_start_step_s);
    bench_sample_best(ctx, 8, mid, window, repeat, &r.b8_mid_prefix_s, &r.b8_mid_step_s);
    r.b8_mid_prime = mid;
    r.hwm_b8_kb = status_kb("VmHWM");

    /* VAE decode of random tokens: best of 3 at batch 1, then one batch 8 */
    int32_t *ids = malloc((size_t)8 * S * sizeof *ids);
    float *px = malloc((size_t)8 * 3 * r.image_size * r.image_size * sizeof *px);
    if (!ids || !px) {
        fprintf(stderr, "bench_generate: out of memory\n");
        return 1;
    }
    for (int64_t i = 0; i < (int64_t)8 * S; i++)
        ids[i] = bench_rand_below((int)r.num_image_tokens);
    if ((s = dalle_decode(ctx, ids, 1, px)))
        bench_die("dalle_decode", s);
    r.decode_s = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        t = bench_now();
        if ((s = dalle_decode(ctx, ids, 1, px)))
            bench_die("dalle_decode", s);
        t = bench_now() - t;
        r.decode_s = t < r.decode_s ? t : r.decode_s;
    }
    t = bench_now();
    if ((s = dalle_decode(ctx, ids, 8, px)))
        bench_die("dalle_decode", s);
    r.decode8_s = (bench_now() - t) / 8;
    free(ids), free(px);

    if (full_max > 0 && S <= full_max) {
        /* whole images, once each: checks the windows' extrapolation, and
         * the peak memory of a whole image (a window touches only the KV
         * cache and token-shift history of the positions it reaches) */
        if (r.hwm_reset_ok)
            reset_hwm();
        bench_sample_window(ctx, 1, 0, 0, &p_, &r.full_b1_step_s, &r.full_b1_s);
        r.hwm_full_b1_kb = status_kb("VmHWM");
        if (r.hwm_reset_ok)
            reset_hwm();
        bench_sample_window(ctx, 8, 0, 0, &p_, &r.full_b8_step_s, &r.full_b8_s);
        r.hwm_full_b8_kb = status_kb("VmHWM");
    }
    r.hwm_total_kb = status_kb("VmHWM");
    {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        if ((double)ru.ru_maxrss > r.hwm_total_kb || !r.hwm_reset_ok)
            r.hwm_total_kb = (double)ru.ru_maxrss;
    }
    dalle_ctx_free(ctx);
    result_print(stdout, &r);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* The parent: ceilings, one worker per model, the tables                    */
/* ------------------------------------------------------------------------ */

static int run_worker(const char *self, const char *path, int window, int threads, int full_max,
                      int repeat, result *r)
{
    int fds[2];
    if (pipe(fds))
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        char w[32], th[32], fm[32], rp[32];
        snprintf(w, sizeof w, "%d", window);
        snprintf(th, sizeof th, "%d", threads);
        snprintf(fm, sizeof fm, "%d", full_max);
        snprintf(rp, sizeof rp, "%d", repeat);
        dup2(fds[1], 1);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, "--worker", path, w, th, fm, rp, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    FILE *f = fdopen(fds[0], "r");
    char line[256];
    memset(r, 0, sizeof *r);
    snprintf(r->path, sizeof r->path, "%s", path);
    while (f && fgets(line, sizeof line, f))
        result_parse_line(r, line);
    if (f)
        fclose(f);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}

typedef struct derived {
    double text_len, keys_avg;
    double w1_elems;      /* matrix + vector weights one token reads */
    double mat_elems;     /* matrix weights (FLOPs: 2 per element) */
    double bytes_b1;      /* weight bytes per token */
    double kv_bytes_tok;  /* KV-cache bytes a token reads at keys_avg */
    double flops_tok;     /* batch-8 FLOPs per token at keys_avg */
    double attn_flops_tok;
    double kv_cache_b1, kv_cache_b8; /* bytes of the cache as the library sizes it */
    double tps_b1, tps_b8;           /* measured, mid window */
    double roof_b1, roof_b8;         /* tokens/s */
    double roof_b8_mem;              /* tokens/s if weight streaming bound (batch 8) */
    /* tokens/s if every byte a token must read came from DRAM: its share of
     * the weights (all at batch 1, an eighth at batch 8) plus its own KV
     * cache, which no batch shares */
    double roof_b1_memkv, roof_b8_memkv;
    double frac_b1, frac_b8;
    double pytorch_b1, pytorch_b8;   /* 0 when not given */
} derived;

static void derive(result *r, const ceilings *c, derived *d)
{
    memset(d, 0, sizeof *d);
    bench_token_cost tc;
    bench_token_costs(r->dim, r->depth, r->heads * r->dim_head, r->text_seq_len,
                      r->image_seq_len, r->num_image_tokens, r->mat_bytes, &tc);
    d->text_len = tc.text_len;
    d->keys_avg = tc.keys_avg;
    d->mat_elems = tc.mat_elems;
    d->w1_elems = tc.w1_elems;
    d->bytes_b1 = tc.weight_bytes;
    d->kv_bytes_tok = tc.kv_bytes;
    d->attn_flops_tok = tc.attn_flops;
    d->flops_tok = tc.flops;
    d->kv_cache_b1 = tc.kv_cache_bytes;
    d->kv_cache_b8 = 8 * d->kv_cache_b1;
    d->tps_b1 = 1.0 / r->b1_mid_step_s;
    d->tps_b8 = 8.0 / r->b8_mid_step_s;
    d->roof_b1 = c->read_all * 1e9 / d->bytes_b1;
    d->roof_b8 = c->sgemm_all * 1e9 / d->flops_tok;
    d->roof_b8_mem = 8 * c->read_all * 1e9 / d->bytes_b1;
    d->roof_b1_memkv = c->read_all * 1e9 / (d->bytes_b1 + d->kv_bytes_tok);
    d->roof_b8_memkv = c->read_all * 1e9 / (d->bytes_b1 / 8 + d->kv_bytes_tok);
    d->frac_b1 = d->tps_b1 / d->roof_b1;
    d->frac_b8 = d->tps_b8 / d->roof_b8;
    /* PyTorch 2 threads, upstream code, KV cache on (issue 8) */
    const char *name = bench_workload((int)r->dim, (int)r->depth, (int)r->image_seq_len);
    if (name) {
        snprintf(r->label, sizeof r->label, "%s", name);
        if (!strcmp(name, "DALLE-S")) {
            d->pytorch_b1 = 8;
        } else { /* DALLE-XS */
            d->pytorch_b1 = 38;
            d->pytorch_b8 = 104;
        }
    } else {
        const char *base = strrchr(r->path, '/');
        snprintf(r->label, sizeof r->label, "%.60s", base ? base + 1 : r->path);
    }
    static const char *const dtypes[] = {"f32", "f16", "bf16", "int8"};
    if (r->mat_dtype >= 1 && r->mat_dtype <= 3 && strlen(r->label) < 40) {
        /* reduced-precision weights (lowp): no PyTorch reference */
        strcat(r->label, " ");
        strcat(r->label, dtypes[(int)r->mat_dtype]);
        d->pytorch_b1 = d->pytorch_b8 = 0;
    }
}

/* /proc/loadavg's first three fields: how busy the machine was. */
static void print_load(const char *when)
{
    char buf[128] = "unknown";
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (!fgets(buf, sizeof buf, f))
            snprintf(buf, sizeof buf, "unknown");
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = 0;
    printf("load average %s: %s\n", when, buf);
}

static void print_machine(const ceilings *c, int threads)
{
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *p = strchr(line, ':');
            if (p) {
                p++;
                while (*p == ' ' || *p == '\t')
                    p++;
                p[strcspn(p, "\n")] = 0;
                snprintf(model, sizeof model, "%s", p);
            }
            break;
        }
    if (f)
        fclose(f);
    struct utsname u;
    uname(&u);
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M %Z", localtime(&now));
    printf("machine:  %s, %d cores online, %s %s, %s\n", model, bench_cores(), u.sysname,
           u.release, date);
    printf("OpenBLAS: %s (core %s); libdalle %s, n_threads %d (0 = all)\n", ceil_blas_config(),
           ceil_blas_core(), dalle_version(), threads);
    printf("ceilings: sgemm %d^3 %.1f GFLOP/s (1 thread), %.1f GFLOP/s (%d threads)\n", c->sgemm_n,
           c->sgemm_1, c->sgemm_all, c->threads);
    printf("          streaming read of %zu MiB %.1f GB/s (1 thread), %.1f GB/s (%d threads)\n",
           c->read_mib, c->read_1, c->read_all, c->threads);
}

static double l3_bytes(void)
{
    double v = 0;
    char unit = 0;
    FILE *f = fopen("/sys/devices/system/cpu/cpu0/cache/index3/size", "r");
    if (f) {
        if (fscanf(f, "%lf%c", &v, &unit) < 1)
            v = 0;
        fclose(f);
    }
    return unit == 'K' ? v * 1024 : unit == 'M' ? v * 1048576 : v;
}

static void print_tables(const result *rs, const derived *ds, int n, const ceilings *c)
{
    printf("\n== image tokens per second (mid-image window: the mean over a whole image) ==\n");
    printf("%-13s %5s %10s %9s %10s %9s %7s %8s %8s  %s\n", "workload", "batch", "tokens/s",
           "ms/token", "roofline", "fraction", "target", "PyTorch", "speed-up", "roofline term");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        const derived *d = &ds[i];
        char pt[32], su[32];
        for (int bsel = 0; bsel < 2; bsel++) {
            double tps = bsel ? d->tps_b8 : d->tps_b1, roof = bsel ? d->roof_b8 : d->roof_b1;
            double frac = bsel ? d->frac_b8 : d->frac_b1, tgt = bsel ? TARGET_B8 : TARGET_B1;
            double ptv = bsel ? d->pytorch_b8 : d->pytorch_b1;
            if (ptv > 0) {
                snprintf(pt, sizeof pt, "%.0f", ptv);
                snprintf(su, sizeof su, "%.1fx", tps / ptv);
            } else {
                snprintf(pt, sizeof pt, "-");
                snprintf(su, sizeof su, "-");
            }
            char term[160];
            if (!bsel)
                snprintf(term, sizeof term, "%.1f MB weights/token / %.1f GB/s", d->bytes_b1 / 1e6,
                         c->read_all);
            else
                snprintf(term, sizeof term, "%.1f MFLOP/token / %.1f GFLOP/s", d->flops_tok / 1e6,
                         c->sgemm_all);
            printf("%-13s %5d %10.1f %9.2f %10.1f %8.1f%% %6.0f%% %8s %8s  %s%s\n", r->label,
                   bsel ? 8 : 1, tps, 1e3 / tps, roof, 100 * frac, 100 * tgt, pt, su, term,
                   frac >= tgt ? "" : "  BELOW TARGET");
        }
    }

    printf("\n== load, VAE, memory ==\n");
    printf("%-13s %8s %10s %10s %10s %9s %9s %9s %9s %9s  %s\n", "workload", "load s",
           "decode ms", "weights MB", "(transf.)", "KV b1 MB", "KV b8 MB", "peak b1", "peak b8",
           "budget b8", "peak <= weights + KV + 10%?");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        const derived *d = &ds[i];
        /* whole-image peaks where measured (--full), else the windows' */
        int whole = r->hwm_full_b1_kb > 0 && r->hwm_reset_ok;
        double pk1 = (whole ? r->hwm_full_b1_kb : r->hwm_b1_kb) * 1024 / 1e6;
        double pk8 = (whole ? r->hwm_full_b8_kb : r->hwm_b8_kb) * 1024 / 1e6;
        double bud1 = 1.1 * (r->weight_bytes + d->kv_cache_b1) / 1e6;
        double bud8 = 1.1 * (r->weight_bytes + d->kv_cache_b8) / 1e6;
        printf("%-13s %8.2f %10.1f %10.1f %10.1f %9.1f %9.1f %8.1f%s %8.1f%s %9.1f  b1 %s "
               "(budget %.1f), b8 %s\n",
               r->label, r->load_s, 1e3 * r->decode_s, r->weight_bytes / 1e6,
               r->tf_weight_bytes / 1e6, d->kv_cache_b1 / 1e6, d->kv_cache_b8 / 1e6, pk1,
               whole ? " " : "*", pk8, whole ? " " : "*", bud8, pk1 <= bud1 ? "yes" : "NO", bud1,
               pk8 <= bud8 ? "yes" : "NO");
        /* a small model's 10% can be less than what any process linking the
         * library holds before it loads anything: say what is above that */
        const double floor_mb = r->hwm_start_kb * 1024 / 1e6;
        if (pk1 > bud1 || pk8 > bud8)
            printf("%-13s   above the process's floor (%.1f MB before loading): b1 %.1f of %.1f "
                   "(%s), b8 %.1f of %.1f (%s)\n",
                   r->label, floor_mb, pk1 - floor_mb, bud1, pk1 - floor_mb <= bud1 ? "yes" : "NO",
                   pk8 - floor_mb, bud8, pk8 - floor_mb <= bud8 ? "yes" : "NO");
    }
    printf("(MB = 10^6 bytes; peaks: VmHWM while sampling whole images%s; * = only the "
           "windows were\n sampled, which touch the KV cache up to the middle of the image: a "
           "lower bound; decode: best of 3\n at batch 1; whole-process peak:",
           rs[0].hwm_reset_ok ? " (reset after loading)" : " (not resettable: whole process)");
    for (int i = 0; i < n; i++)
        printf(" %s %.1f MB%s", rs[i].label, rs[i].hwm_total_kb * 1024 / 1e6,
               i + 1 < n ? "," : ")\n");

    printf("\n== where the time goes (per token; fixed part and per-key part from the start "
           "and mid windows) ==\n");
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        const derived *d = &ds[i];
        const double inner = r->heads * r->dim_head;
        for (int bsel = 0; bsel < 2; bsel++) {
            int B = bsel ? 8 : 1;
            double ts = (bsel ? r->b8_start_step_s : r->b1_start_step_s) / B;
            double tm = (bsel ? r->b8_mid_step_s : r->b1_mid_step_s) / B;
            double prime = bsel ? r->b8_mid_prime : r->b1_mid_prime;
            double ks = d->text_len + r->window / 2.0;
            double km = d->text_len + prime + r->window / 2.0;
            double slope = (tm - ts) / (km - ks); /* s per key */
            double fixed = tm - slope * km;
            double attn = slope * d->keys_avg;
            /* ideals of the two parts */
            double w_ideal = bsel ? fmax(2 * d->mat_elems / (c->sgemm_all * 1e9),
                                         d->bytes_b1 / 8 / (c->read_all * 1e9))
                                  : d->bytes_b1 / (c->read_all * 1e9);
            double a_ideal = bsel ? fmax(d->attn_flops_tok / (c->sgemm_all * 1e9),
                                         d->kv_bytes_tok / (c->read_all * 1e9))
                                  : d->kv_bytes_tok / (c->read_all * 1e9);
            printf("%-13s b%d: %7.3f ms/token at key %5.0f, %7.3f ms at key %5.0f", r->label, B,
                   1e3 * ts, ks, 1e3 * tm, km);
            if (tm > ts)
                printf("  =>  fixed %7.3f ms (ideal %6.3f, %4.0f%%) + attention %6.3f ms at %4.0f "
                       "keys (ideal %6.3f, %4.0f%%)\n",
                       1e3 * fixed, 1e3 * w_ideal, 100 * w_ideal / fixed, 1e3 * attn, d->keys_avg,
                       1e3 * a_ideal, 100 * a_ideal / attn);
            else
                printf("  =>  no split: the later window was not slower (noise)\n");
            (void)inner;
        }
        printf("%-13s     prefix (<bos> + %d caption tokens, no priming): %.1f ms at batch 1, "
               "%.1f ms at batch 8\n",
               r->label, (int)r->text_seq_len, 1e3 * r->b1_start_prefix_s,
               1e3 * r->b8_start_prefix_s);
        printf("%-13s     whole image (prefix + %d tokens at the mean cost), estimated: %.2f s "
               "at batch 1, %.2f s per batch of 8\n",
               r->label, (int)r->image_seq_len,
               r->b1_start_prefix_s + r->image_seq_len * r->b1_mid_step_s,
               r->b8_start_prefix_s + r->image_seq_len * r->b8_mid_step_s);
        if (r->full_b1_s > 0)
            printf("%-13s     whole image, measured: %.2f s at batch 1 (%.1f tokens/s in the "
                   "loop; window estimate %.1f), %.2f s at batch 8 (%.1f tokens/s; estimate "
                   "%.1f)\n",
                   r->label, r->full_b1_s, 1 / r->full_b1_step_s, d->tps_b1, r->full_b8_s,
                   8 / r->full_b8_step_s, d->tps_b8);
    }

    printf("\n== verdict ==\n");
    /* the L3 this machine shows (sysfs: what a virtual machine is given;
     * sysconf's _SC_LEVEL3_CACHE_SIZE reads the CPU's own, 8x more on this
     * EPYC); 0 if unknown */
    const double l3 = l3_bytes();
    for (int i = 0; i < n; i++) {
        const result *r = &rs[i];
        const derived *d = &ds[i];
        printf("%s batch 1: %.1f%% of the bandwidth roofline (%.1f tokens/s of %.1f): %s", r->label,
               100 * d->frac_b1, d->tps_b1, d->roof_b1,
               d->frac_b1 >= TARGET_B1 ? "meets the 65% target.\n" : "below 65%");
        if (d->frac_b1 < TARGET_B1)
            printf(": a token takes %.2f ms where streaming its %.1f MB of weights takes %.2f ms "
                   "(+%.2f ms for %.1f MB of KV cache at the mean position).\n",
                   1e3 / d->tps_b1, d->bytes_b1 / 1e6, 1e3 * d->bytes_b1 / (c->read_all * 1e9),
                   1e3 * d->kv_bytes_tok / (c->read_all * 1e9), d->kv_bytes_tok / 1e6);
        printf("%s batch 1, counting the KV cache read too (%.1f MB/token at the mean "
               "position): %.1f%% of %.1f tokens/s.\n",
               r->label, d->kv_bytes_tok / 1e6, 100 * d->tps_b1 / d->roof_b1_memkv,
               d->roof_b1_memkv);
        double t_flop = 1.0 / d->roof_b8, t_mem = 1.0 / d->roof_b8_mem;
        printf("%s batch 8: %.1f%% of the FLOP roofline (%.1f tokens/s of %.1f): %s", r->label,
               100 * d->frac_b8, d->tps_b8, d->roof_b8,
               d->frac_b8 >= TARGET_B8 ? "meets the 50% target" : "below 50%");
        printf("; per token %.3f ms of FLOPs vs %.3f ms to stream the weights once per step of "
               "8: %s dominates the roofline here (%.1f%% of max(FLOP, memory) roofline %.1f "
               "tokens/s).\n",
               1e3 * t_flop, 1e3 * t_mem, t_mem > t_flop ? "MEMORY" : "COMPUTE",
               100 * d->tps_b8 * fmax(t_flop, t_mem), 1.0 / fmax(t_flop, t_mem));
        /* the weights are shared by the 8 sequences, their KV caches are not:
         * each token also reads its own keys and values */
        const double t_memkv = 1.0 / d->roof_b8_memkv;
        printf("%s batch 8, counting each token's KV cache read too (%.3f ms/token of memory "
               "traffic): %.1f%% of max(FLOP, memory) = %.1f tokens/s%s.\n",
               r->label, 1e3 * t_memkv, 100 * d->tps_b8 * fmax(t_flop, t_memkv),
               1.0 / fmax(t_flop, t_memkv),
               l3 > 0 && d->bytes_b1 + 8 * d->kv_bytes_tok < l3
                   ? " (weights and the caches read fit in the L3 here: DRAM is a loose bound)"
                   : "");
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: bench_generate [--tokens N] [--threads T] [--full N] [--sgemm-n N] "
                    "[--read-mib M] [--repeat R] MODEL.dalle ...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc >= 7 && !strcmp(argv[1], "--worker"))
        return worker(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    int window = 64, threads = 0, full_max = 0, sgemm_n = 2048, read_mib = 1024, repeat = 3;
    const char *models[16];
    int n_models = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc)
            window = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
            repeat = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--full") && i + 1 < argc)
            full_max = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--sgemm-n") && i + 1 < argc)
            sgemm_n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--read-mib") && i + 1 < argc)
            read_mib = atoi(argv[++i]);
        else if (argv[i][0] == '-' || n_models == 16)
            usage();
        else
            models[n_models++] = argv[i];
    }
    if (n_models == 0 || window < 2 || window > MAX_WINDOW || sgemm_n < 16 || read_mib < 1 ||
        repeat < 1)
        usage();

    char self[4096];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        fprintf(stderr, "bench_generate: cannot find /proc/self/exe\n");
        return 1;
    }
    self[len] = 0;

    print_load("at the start");
    ceilings c;
    ceilings_measure(&c, sgemm_n, (size_t)read_mib, threads);
    print_machine(&c, threads);
    fflush(stdout);

    result rs[16];
    derived ds[16];
    for (int i = 0; i < n_models; i++) {
        fprintf(stderr, "bench_generate: %s ...\n", models[i]);
        if (run_worker(self, models[i], window, threads, full_max, repeat, &rs[i])) {
            fprintf(stderr, "bench_generate: the worker for %s failed\n", models[i]);
            return 1;
        }
        /* the ceilings again after each workload: on a shared machine the
         * best of the measurements is the machine's, as for the speeds */
        ceilings again;
        ceilings_measure(&again, sgemm_n, (size_t)read_mib, threads);
        c.sgemm_1 = fmax(c.sgemm_1, again.sgemm_1);
        c.sgemm_all = fmax(c.sgemm_all, again.sgemm_all);
        c.read_1 = fmax(c.read_1, again.read_1);
        c.read_all = fmax(c.read_all, again.read_all);
    }
    for (int i = 0; i < n_models; i++)
        derive(&rs[i], &c, &ds[i]);
    printf("ceilings, best of %d measurements (at the start and after each workload):\n",
           n_models + 1);
    printf("          sgemm %.1f GFLOP/s (1 thread), %.1f GFLOP/s (%d threads); read %.1f GB/s (1 "
           "thread), %.1f GB/s (%d threads)\n",
           c.sgemm_1, c.sgemm_all, c.threads, c.read_1, c.read_all, c.threads);
    printf("\nmethod: %d-token windows per image through dalle_sample (abort callback), timed by "
           "the progress callback\n        (median step, best of %d windows); reported speed = "
           "the window centred on the middle of\n        the image (mean cost of a whole image).\n",
           rs[0].window > 0 ? (int)rs[0].window : window, repeat);
    print_tables(rs, ds, n_models, &c);
    printf("\n");
    print_load("at the end");
    return 0;
}
