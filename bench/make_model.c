/* Write a random-weight DALLE bundle of a reference workload (issue 8)
 * straight through the public bundle writer, with the converter's
 * conventions: tensor names are DALLE-pytorch state-dict keys, metadata
 * `dalle.*` / `vae.*` as docs/bundle-keys.md lists them.
 *
 *   bench_make_model S|XS out.dalle [seed]
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
 * upstream does). No tokenizer: the benchmark feeds token ids. */
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
static uint64_t total_bytes;

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
}

static void add_linear(const char *prefix, int64_t out, int64_t in, int bias)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", prefix);
    add(name, NORMAL, 1.0 / sqrt((double)in), 2, out, in, 0, 0);
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
        add_linear(n, 3 * inner, d, 0);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.fn.to_out.0", p);
        add_linear(n, d, inner, 1);
        /* feed-forward: PreNorm(CachedAs(PreShiftToken(FeedForward))) */
        snprintf(p, sizeof p, "transformer.layers.layers.%d.1", l);
        snprintf(n, sizeof n, "%s.scale", p);
        add(n, CONST, 0.1, 3, 1, 1, d, 0);
        snprintf(n, sizeof n, "%s.fn.norm", p);
        add_norm(n, d);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.net.0", p);
        add_linear(n, 2 * ffi, d, 1);
        snprintf(n, sizeof n, "%s.fn.fn.fn.fn.net.3", p);
        add_linear(n, d, ffi, 1);
    }
    add_norm("to_logits.0", d);
    add_linear("to_logits.1", total, d, 1);
    add("text_emb.weight", NORMAL, 1.0, 2, text_vocab, d, 0, 0);
    add("image_emb.weight", NORMAL, 1.0, 2, w->num_tokens, d, 0, 0);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_make_model S|XS out.dalle [seed]\n");
        return 2;
    }
    const workload *w = NULL;
    for (size_t i = 0; i < sizeof WORKLOADS / sizeof *WORKLOADS; i++)
        if (!strcmp(argv[1], WORKLOADS[i].name))
            w = &WORKLOADS[i];
    if (!w) {
        fprintf(stderr, "bench_make_model: unknown workload '%s' (S or XS)\n", argv[1]);
        return 2;
    }
    rng_state = argc > 3 ? strtoull(argv[3], NULL, 0) : 8;
    check(dalle_bundle_writer_create("dalle", &W), "writer");
    write_meta(w);
    write_vae(w);
    write_transformer(w);
    check(dalle_bundle_writer_finish(W, argv[2]), argv[2]);
    dalle_bundle_writer_free(W);
    free(buf);
    printf("%s: DALLE-%s, %.1f MB of float32 weights\n", argv[2], w->name, total_bytes / 1e6);
    return 0;
}
