/* Timing DALLE generation through the public API, shared by bench_generate
 * (the CPU) and bench_gpu (the CUDA backend): windows of sampled tokens
 * timed with the progress callback (bench_generate.c's header says how),
 * and what a token costs: the weight bytes it reads, its KV-cache bytes and
 * its FLOPs, from the model's sizes. */
#ifndef DALLE_BENCH_WINDOW_H
#define DALLE_BENCH_WINDOW_H

#include <dalle/dalle.h>

#define MAX_WINDOW 4096

/* Print what failed and exit(1) (a benchmark has nothing to recover). */
void bench_die(const char *what, dalle_status s);

/* A reproducible integer in [0, n). */
int bench_rand_below(int n);

/* Sample `window` image tokens per image (0: the whole image) of `batch`
 * images primed with n_prime random tokens: *prefix_s from the call to the
 * first pick, *step_s the median of the later steps (all images at once),
 * *total_s (if not NULL) the whole call. Returns the steps timed. */
int bench_sample_window(dalle_ctx *ctx, int batch, int n_prime, int window, double *prefix_s,
                        double *step_s, double *total_s);

/* The best (lowest) prefix and step times of `repeat` windows. */
void bench_sample_best(dalle_ctx *ctx, int batch, int n_prime, int window, int repeat,
                       double *prefix_s, double *step_s);

/* A bundle's integer metadata value, or def. */
int64_t bench_meta_i64(const dalle_bundle *b, const char *key, int64_t def);

/* Bytes an element of the transformer's matrices takes as the library
 * keeps them (to_logits.1.weight's type: 4 for float32, 2 for f16 / bf16,
 * 1 + 4 / block for int8 and its float32 scales); *dtype (if not NULL)
 * receives that dalle_dtype. */
double bench_matrix_bytes(const dalle_bundle *b, int *dtype);

/* "DALLE-S" or "DALLE-XS" (bench_make_model's workloads) for a model of
 * those sizes, else NULL. */
const char *bench_workload(int dim, int depth, int image_seq_len);

/* What one image token costs at the mean key count of an image
 * (text_len + image_seq_len / 2). Per layer: to_qkv, to_out and the two
 * feed-forward matrices, their biases, two LayerNorms, two LayerScales;
 * then the final LayerNorm, the image rows of to_logits (the text rows are
 * masked at image positions) and one image_emb row. */
typedef struct bench_token_cost {
    double text_len, keys_avg;
    double mat_elems;      /* matrix elements (2 FLOPs each) */
    double w1_elems;       /* matrix + vector elements a token reads */
    double weight_bytes;   /* at mat_bytes per matrix element, 4 per vector element */
    double kv_bytes;       /* the KV cache a token's attention reads (float32) */
    double attn_flops;     /* q·k and the weighted sum of v */
    double flops;          /* 2 × mat_elems + attn_flops */
    double kv_cache_bytes; /* one sequence's cache as the library sizes it */
} bench_token_cost;

void bench_token_costs(double dim, double depth, double inner, double text_seq_len,
                       double image_seq_len, double num_image_tokens, double mat_bytes,
                       bench_token_cost *c);

#endif
