/* Write a random-weight DALLE bundle of a reference workload (issue 8)
 * straight through the public bundle writer, with the converter's
 * conventions: tensor names are DALLE-pytorch state-dict keys, metadata
 * `dalle.*` / `vae.*` as docs/bundle-keys.md lists them.
 *
 *   bench_make_model S|XS out.dalle [seed] [--dtype f32|f16|bf16|int8]
 *
 * Workloads (DALLE-pytorch DALLE + DiscreteVAE, rotary + token shift, full
 * attention, CLIP BPE text vocabulary 49408):
 *   S   DiscreteVAE 256 px, num_layers 3 (32×32 tokens), num_tokens 8192,
 *       codebook_dim 512, hidden_dim 64, num_resnet_blocks 1;
 *       transformer dim 512, depth 8, heads 8, dim_head 64, text_seq_len 64
 *   XS  DiscreteVAE 128 px, num_layers 3 (16×16 tokens), num_tokens 1024,
 *       codebook_dim 512, hidden_dim 64, num_resnet_blocks 1;
 *       transformer dim 256, depth 4, heads 8, dim_head 32, text_seq_len 32
 * (hidden_dim, codebook_dim for XS and num_resnet_blocks are our choice:
 * DALLE-pytorch's README DiscreteVAE.)
 *
 * Weights: normal(0, 1/sqrt(fan_in)) for linear and convolution weights,
 * normal(0, 1) for the embeddings and the codebook, normal(0, 0.02) for
 * biases, LayerNorm gain 1 / bias 0, LayerScale 0.1 (upstream's value for
 * depth <= 18). Every LayerNorm keeps activations O(1), so the logits are
 * finite and O(1). Stored raw (random floats do not compress); the rotary
 * table `transformer.pos_emb` is left out (the library computes it as
 * upstream does). No tokenizer: the benchmark feeds token ids.
 *
 * --dtype stores the transformer's matrices (to_qkv, to_out, the
 * feed-forward's two linears, to_logits, the token embeddings) as the
 * converter's --dtype does (docs/bundle-format.md, "Reduced-precision
 * weights"): f16 / bf16 rounded to nearest even, or int8 with one float32
 * scale per 32 elements of a row in `<name>:scale`. The random numbers are
 * drawn in the same order for every dtype, so a seed gives the same model
 * at each precision. */
#include <dalle/dalle.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct workload {
    const char *name;
    int image_size, vae_layers, num_tokens, codebook_dim, hidden_dim, resnet_blocks;
    int dim, depth, heads, dim_head, text_seq_len, num_text_tokens;
} workload;

static const workload WORKLOADS[] = {
    {"S", 256, 3, 8192, 512, 64, 1, 512, 8, 8, 64, 64, 49408},
    {"XS", 128, 3, 1024, 512, 64, 1, 256, 4, 8, 32, 32, 49408},
};

/* splitmix64 + Box-Muller: reproducible for a seed, fast enough for the
 * ~10^8 floats of DALLE-S */
static uint64_t rng_state;

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(void) { return ((double)(next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

static void fill_normal(float *x, int64_t n, double std)
{
    const double two_pi = 6.283185307179586476925;
    for (int64_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(uniform01())) * std, a = two_pi * uniform01();
        x[i] = (float)(r * cos(a));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(a));
    }
}

static dalle_bundle_writer *W;
static float *buf;
static int64_t buf_cap;
static uint64_t total_bytes, stored_bytes;

/* --dtype: 0 f32, 1 f16, 2 bf16, 3 int8 (the bundle's dtype codes, int8 = i8) */
static int mat_dtype;
#define INT8_BLOCK 32

static uint16_t round_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
        return (uint16_t)(u >> 16 | 0x40); /* NaN stays NaN */
    return (uint16_t)((u + 0x7FFFu + (u >> 16 & 1)) >> 16);
}

static uint16_t round_f16(float f)
{
    uint32_t u, sign, a;
    memcpy(&u, &f, 4);
    sign = u >> 16 & 0x8000u;
    a = u & 0x7FFFFFFFu;
    if (a > 0x7F800000u)
        return (uint16_t)(sign | 0x7E00u);
    if (a >= 0x477FF000u) /* 65520 and up round to infinity */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) { /* subnormal half: units of 2^-24 */
        float v;
        memcpy(&v, &a, 4);
        return (uint16_t)(sign | (uint32_t)nearbyintf(v * 16777216.0f));
    }
    a -= 0x38000000u; /* rebias the exponent (127 - 15) << 23 */
    return (uint16_t)(sign | (a + 0xFFFu + (a >> 13 & 1)) >> 13);
}

static void die(const char *what, dalle_status s)
{
    fprintf(stderr, "bench_make_model: %s: %s (%s)\n", what, dalle_strerror(s),
            dalle_last_error());
    exit(1);
}

enum fill { NORMAL, CONST };

/* Add tensor `name` of shape dims[ndim]: normal(0, v) or the constant v. */
static void add(const char *name, enum fill f, double v, int ndim, int64_t d0, int64_t d1,
                int64_t d2, int64_t d3)
{
    int64_t dims[4] = {d0, d1, d2, d3}, n = 1;
    for (int i = 0; i < ndim; i++)
        n *= dims[i];
    if (n > buf_cap) {
        free(buf);
        buf = malloc((size_t)n * sizeof *buf);
        buf_cap = n;
        if (!buf) {
            fprintf(stderr, "bench_make_model: out of memory\n");
            exit(1);
        }
    }
    if (f == NORMAL)
        fill_normal(buf, n, v);
    else
        for (int64_t i = 0; i < n; i++)
            buf[i] = (float)v;
    dalle_status s = dalle_bundle_writer_add_tensor(W, name, DALLE_DTYPE_F32, ndim, dims, buf, 0);
    if (s)
        die(name, s);
    total_bytes += (uint64_t)n * 4;
    stored_bytes += (uint64_t)n * 4;
}

/* A transformer matrix [out][in], normal(0, std), stored as --dtype says. */
static void add_matrix(const char *name, double std, int64_t out, int64_t in)
{
    if (mat_dtype == DALLE_DTYPE_F32) {
        add(name, NORMAL, std, 2, out, in, 0, 0);
        return;
    }
    const int64_t n = out * in, dims[2] = {out, in};
    float *w = malloc((size_t)n * sizeof *w);
    if (!w) {
        fprintf(stderr, "bench_make_model: out of memory\n");
        exit(1);
    }
    fill_normal(w, n, std);
    total_bytes += (uint64_t)n * 4;
    dalle_status s;
    if (mat_dtype == DALLE_DTYPE_F16 || mat_dtype == DALLE_DTYPE_BF16) {
        uint16_t *h = (uint16_t *)w; /* in place: element i is read before it is overwritten */
        for (int64_t i = 0; i < n; i++)
            h[i] = mat_dtype == DALLE_DTYPE_BF16 ? round_bf16(w[i]) : round_f16(w[i]);
        s = dalle_bundle_writer_add_tensor(W, name, (dalle_dtype)mat_dtype, 2, dims, h, 0);
        stored_bytes += (uint64_t)n * 2;
    } else {
        const int64_t nb = (in + INT8_BLOCK - 1) / INT8_BLOCK, sdims[2] = {out, nb};
        int8_t *q = malloc((size_t)n);
        float *sc = malloc((size_t)(out * nb) * sizeof *sc);
        if (!q || !sc) {
            fprintf(stderr, "bench_make_model: out of memory\n");
            exit(1);
        }
        for (int64_t r = 0; r < out; r++)
            for (int64_t b = 0; b < nb; b++) {
                const int64_t i0 = r * in + b * INT8_BLOCK;
                const int64_t i1 = i0 + INT8_BLOCK < (r + 1) * in ? i0 + INT8_BLOCK : (r + 1) * in;
                float amax = 0.0f;
                for (int64_t i = i0; i < i1; i++)
                    amax = fmaxf(amax, fabsf(w[i]));
                const float scale = (float)(amax / 127.0);
                sc[r * nb + b] = scale;
                for (int64_t i = i0; i < i1; i++) {
                    double k = scale > 0.0f ? nearbyint(w[i] / (double)scale) : 0.0;
                    q[i] = (int8_t)(k > 127 ? 127 : k < -127 ? -127 : k);
                }
            }
        char sname[600];
        snprintf(sname, sizeof sname, "%s:scale", name);
        s = dalle_bundle_writer_add_tensor(W, name, DALLE_DTYPE_I8, 2, dims, q, 0);
        if (!s)
            s = dalle_bundle_writer_add_tensor(W, sname, DALLE_DTYPE_F32, 2, sdims, sc, 0);
        stored_bytes += (uint64_t)n + (uint64_t)(out * nb) * 4;
        free(q);
        free(sc);
    }
    free(w);
    if (s)
        die(name, s);
}

/* nn.Linear of the transformer: the weight reduced by --dtype, the bias f32 */
static void add_tf_linear(const char *prefix, int64_t out, int64_t in, int bias)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_matrix(name, 1.0 / sqrt((double)in), out, in);
    if (bias) {
        snprintf(name, sizeof name, "%s.bias", prefix);
        add(name, NORMAL, 0.02, 1, out, 0, 0, 0);
    }
}

static void add_norm(const char *prefix, int64_t d)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(name, CONST, 1.0, 1, d, 0, 0, 0);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add(name, CONST, 0.0, 1, d, 0, 0, 0);
}

/* Conv2d weight [cout][cin][k][k], ConvTranspose2d weight [cin][cout][k][k] */
static void add_conv(const char *prefix, int64_t cin, int64_t cout, int64_t k, int transposed)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    double std = 1.0 / sqrt((double)(cin * k * k));
    if (transposed)
        add(name, NORMAL, std, 4, cin, cout, k, k);
    else
        add(name, NORMAL, std, 4, cout, cin, k, k);
    snprintf(name, sizeof name, "%s.bias", prefix);
    add(name, NORMAL, 0.02, 1, cout, 0, 0, 0);
}

static void add_resblock(const char *seq, int index, int64_t h)
{
    char p[128];
    snprintf(p, sizeof p, "vae.%s.%d.net.0", seq, index);
    add_conv(p, h, h, 3, 0);
    snprintf(p, sizeof p, "vae.%s.%d.net.2", seq, index);
    add_conv(p, h, h, 3, 0);
    snprintf(p, sizeof p, "vae.%s.%d.net.4", seq, index);
    add_conv(p, h, h, 1, 0);
}

static void check(dalle_status s, const char *what)
{
    if (s)
        die(what, s);
}

static void write_meta(const workload *w)
{
    static const char *const attn_types[] = {"full"};
    const double half[3] = {0.5, 0.5, 0.5};
    check(dalle_bundle_writer_set_i64(W, "dalle.dim", w->dim), "meta");
    check(dalle_bundle_writer_set_i64(W, "dalle.num_text_tokens", w->num_text_tokens), "meta");
    check(dalle_bundle_writer_set_i64(W, "dalle.text_seq_len", w->text_seq_len), "meta");
    check(dalle_bundle_writer_set_i64(W, "dalle.depth", w->depth), "meta");
    check(dalle_bundle_writer_set_i64(W, "dalle.heads", w->heads), "meta");
    check(dalle_bundle_writer_set_i64(W, "dalle.dim_head", w->dim_head), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.reversible", 0), "meta");
    check(dalle_bundle_writer_set_f64(W, "dalle.attn_dropout", 0.0), "meta");
    check(dalle_bundle_writer_set_f64(W, "dalle.ff_dropout", 0.0), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.sparse_attn", 0), "meta");
    check(dalle_bundle_writer_set_f64(W, "dalle.loss_img_weight", 7.0), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.stable", 0), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.sandwich_norm", 0), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.shift_tokens", 1), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.rotary_emb", 1), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.share_input_output_emb", 0), "meta");
    check(dalle_bundle_writer_set_bool(W, "dalle.optimize_for_inference", 0), "meta");
    check(dalle_bundle_writer_set_str_array(W, "dalle.attn_types", attn_types, 1), "meta");
    check(dalle_bundle_writer_set_str(W, "vae.kind", "dvae"), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.image_size", w->image_size), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.num_tokens", w->num_tokens), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.codebook_dim", w->codebook_dim), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.num_layers", w->vae_layers), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.num_resnet_blocks", w->resnet_blocks), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.hidden_dim", w->hidden_dim), "meta");
    check(dalle_bundle_writer_set_i64(W, "vae.channels", 3), "meta");
    check(dalle_bundle_writer_set_bool(W, "vae.smooth_l1_loss", 0), "meta");
    check(dalle_bundle_writer_set_f64(W, "vae.temperature", 0.9), "meta");
    check(dalle_bundle_writer_set_bool(W, "vae.straight_through", 0), "meta");
    check(dalle_bundle_writer_set_bool(W, "vae.reinmax", 0), "meta");
    check(dalle_bundle_writer_set_f64(W, "vae.kl_div_loss_weight", 0.0), "meta");
    check(dalle_bundle_writer_set_f64_array(W, "vae.normalization.mean", half, 3), "meta");
    check(dalle_bundle_writer_set_f64_array(W, "vae.normalization.std", half, 3), "meta");
    char src[256];
    snprintf(src, sizeof src,
             "bench_make_model DALLE-%s (random weights; DALLE-pytorch DALLE + DiscreteVAE "
             "layout)",
             w->name);
    check(dalle_bundle_writer_set_str(W, "general.source", src), "meta");
    check(dalle_bundle_writer_set_str(W, "general.converter", "bench_make_model 1"), "meta");
    static const char *const dtypes[] = {"f32", "f16", "bf16", "int8"};
    if (mat_dtype != DALLE_DTYPE_F32)
        check(dalle_bundle_writer_set_str(W, "weights.dtype", dtypes[mat_dtype]), "meta");
    if (mat_dtype == DALLE_DTYPE_I8)
        check(dalle_bundle_writer_set_i64(W, "weights.int8_block", INT8_BLOCK), "meta");
}

static void write_vae(const workload *w)
{
    const int L = w->vae_layers, R = w->resnet_blocks;
    const int64_t h = w->hidden_dim;
    char p[128];
    add("vae.codebook.weight", NORMAL, 1.0, 2, w->num_tokens, w->codebook_dim, 0, 0);
    for (int i = 0; i < L; i++) {
        snprintf(p, sizeof p, "vae.encoder.%d.0", i);
        add_conv(p, i ? h : 3, h, 4, 0);
    }
    for (int j = 0; j < R; j++)
        add_resblock("encoder", L + j, h);
    snprintf(p, sizeof p, "vae.encoder.%d", L + R);
    add_conv(p, h, w->num_tokens, 1, 0);
    int d = 0;
    if (R > 0) {
        add_conv("vae.decoder.0", w->codebook_dim, h, 1, 0);
        d = 1;
    }
    for (int j = 0; j < R; j++)
        add_resblock("decoder", d + j, h);
    d += R;
    for (int i = 0; i < L; i++) {
        snprintf(p, sizeof p, "vae.decoder.%d.0", d + i);
        add_conv(p, (i == 0 && R == 0) ? w->codebook_dim : h, h, 4, 1);
    }
    snprintf(p, sizeof p, "vae.decoder.%d", d + L);
    add_conv(p, h, 3, 1, 0);
}

static void write_transformer(const workload *w)
{
    const int64_t d = w->dim, inner = (int64_t)w->heads * w->dim_head, ffi = 4 * d;
    const int64_t fmap = w->image_size >> w->vae_layers;
    const int64_t text_vocab = w->num_text_tokens + w->text_seq_len;
    const int64_t total = text_vocab + w->num_tokens;
    char p[256], n[320];
    (void)fmap;
    for (int l = 0; l < w->depth; l++) {
        /* attention: PreNorm(CachedAs(PreShiftToken(CachedAs(Attention)))) */
        snprintf(p, sizeof p, "transformer.layers.layers.%d.0", l);
        snprintf(n, sizeof n, "%s.scale", p);
        add(n, CONST, 0.1, 3, 1, 1, d, 0);
        snprintf(n, sizeof n, "%s.fn.norm", p);
        add_norm(n, d);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.fn.to_qkv", p);
        add_tf_linear(n, 3 * inner, d, 0);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.fn.to_out.0", p);
        add_tf_linear(n, d, inner, 1);
        /* feed-forward: PreNorm(CachedAs(PreShiftToken(FeedForward))) */
        snprintf(p, sizeof p, "transformer.layers.layers.%d.1", l);
        snprintf(n, sizeof n, "%s.scale", p);
        add(n, CONST, 0.1, 3, 1, 1, d, 0);
        snprintf(n, sizeof n, "%s.fn.norm", p);
        add_norm(n, d);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.net.0", p);
        add_tf_linear(n, 2 * ffi, d, 1);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.net.3", p);
        add_tf_linear(n, d, ffi, 1);
    }
    add_norm("to_logits.0", d);
    add_tf_linear("to_logits.1", total, d, 1);
    add_matrix("text_emb.weight", 1.0, text_vocab, d);
    add_matrix("image_emb.weight", 1.0, w->num_tokens, d);
}

int main(int argc, char **argv)
{
    static const char *const dtypes[] = {"f32", "f16", "bf16", "int8"};
    const char *pos[3] = {NULL, NULL, NULL};
    int n_pos = 0;
    mat_dtype = -1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dtype") && i + 1 < argc) {
            for (int k = 0; k < 4; k++)
                if (!strcmp(argv[i + 1], dtypes[k]))
                    mat_dtype = k;
            if (mat_dtype < 0) {
                fprintf(stderr, "bench_make_model: --dtype %s: f32, f16, bf16 or int8\n",
                        argv[i + 1]);
                return 2;
            }
            i++;
        } else if (n_pos < 3) {
            pos[n_pos++] = argv[i];
        } else {
            n_pos = 0;
            break;
        }
    }
    if (mat_dtype < 0)
        mat_dtype = DALLE_DTYPE_F32;
    if (n_pos < 2) {
        fprintf(stderr,
                "usage: bench_make_model S|XS out.dalle [seed] [--dtype f32|f16|bf16|int8]\n");
        return 2;
    }
    const workload *w = NULL;
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof *WORKLOADS; i++)
        if (!strcmp(pos[0], WORKLOADS[i].name))
            w = &WORKLOADS[i];
    if (!w) {
        fprintf(stderr, "bench_make_model: unknown workload '%s' (S or XS)\n", pos[0]);
        return 2;
    }
    rng_state = pos[2] ? strtoull(pos[2], NULL, 0) : 8;
    check(dalle_bundle_writer_create("dalle", &W), "writer");
    write_meta(w);
    write_vae(w);
    write_transformer(w);
    check(dalle_bundle_writer_finish(W, pos[1]), pos[1]);
    dalle_bundle_writer_free(W);
    free(buf);
    printf("%s: DALLE-%s, %.1f MB of float32 weights, %.1f MB stored (matrices %s)\n", pos[1],
           w->name, total_bytes / 1e6, stored_bytes / 1e6, dtypes[mat_dtype]);
    return 0;
}
