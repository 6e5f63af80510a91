/* The DALL·E transformer of lucidrains/DALLE-pytorch (DALLE + Transformer),
 * as the rest of the library calls it. docs/transformer.md describes the
 * computation; lib/transformer_internal.h maps each part to its file.
 *
 * One code path computes everything: tf_forward feeds a chunk of m new
 * tokens per sequence at positions [pos, pos + m) on top of a state (KV
 * cache + token-shift history) holding positions [0, pos). The
 * teacher-forced forward is one chunk from position 0; generation feeds one
 * token at a time. Both therefore agree for every attention type.
 */
#ifndef DALLE_TRANSFORMER_H
#define DALLE_TRANSFORMER_H

#include <stdint.h>

#include "context.h"
#include "dalle/dalle.h"

typedef struct transformer transformer;
typedef struct tf_state tf_state;

/* Build the model from a bundle of kind "dalle": validates every
 * hyper-parameter and tensor shape (DALLE_ERR_MISMATCH naming the key or
 * tensor), refuses DeepSpeed sparse attention (DALLE_ERR_UNSUPPORTED).
 * Weights stay owned by the bundle, which must outlive the model. */
dalle_status transformer_load(dalle_bundle *b, const model_shapes *shapes, transformer **out);
void transformer_free(transformer *tf);

/* The thread pool the model computes on (lib/threadpool.h): the owning
 * context's, set once after loading. NULL (the default) is the calling
 * thread only; results are the same bits either way. */
void transformer_set_pool(transformer *tf, struct tpool *pool);

/* Positions a sequence can have: <bos> + text + image - 1 (the last image
 * token is never fed). */
int transformer_max_positions(const transformer *tf);
/* <bos> + text: the number of text positions. */
int transformer_text_len(const transformer *tf);

/* Caption ids text[text_seq_len] (0 = padding) -> the text positions of a
 * sequence, seq[text_len]: <bos> = 0, then each 0 at caption position i
 * replaced by the padding id num_text_tokens + i, as DALLE.forward does. */
void transformer_text_sequence(const transformer *tf, const int32_t *text, int32_t *seq);

/* A state for `batch` sequences that takes chunks of up to max_chunk
 * tokens. All memory of a generation is allocated here, once. */
dalle_status tf_state_create(const transformer *tf, int batch, int max_chunk, tf_state **out);
void tf_state_free(tf_state *st);
/* Forget every position (keeps the memory). */
void tf_state_reset(tf_state *st);
/* Chunks of up to max_chunk tokens from now on: the workspace (every buffer
 * sized by the chunk) is made again at that size, the KV cache and the
 * positions kept. After a long prefix a generation needs one token per
 * step: shrinking gives the prefix's workspace back before the cache fills
 * up, so the two never add up in the peak. A backend without host memory
 * keeps its buffers (a device arena frees only as a whole) and accepts
 * only chunks up to the state's own. On an allocation failure the state
 * may only be freed. */
dalle_status tf_state_set_chunk(const transformer *tf, tf_state *st, int max_chunk);
int tf_state_pos(const tf_state *st);

typedef enum tf_logits_mode {
    TF_LOGITS_NONE = 0, /* only advance the cache */
    TF_LOGITS_ALL = 1,  /* logits [batch][m][total_tokens] */
    TF_LOGITS_LAST = 2  /* logits [batch][total_tokens] of the last new position */
} tf_logits_mode;

/* Feed tokens [batch][m] (row b at tokens + b * m) at positions [pos, pos+m).
 * logits: a host buffer; NULL with TF_LOGITS_LAST leaves them in the
 * state, in the backend's memory (st->logits, transformer_internal.h), for
 * the sampler to read there: their unmasked half only (the masked half of
 * the state's rows is left unwritten).
 * A token at a text position (< text_len) is a text id incl. the padding ids
 * (< num_text_tokens + text_seq_len); at an image position an image id
 * (< num_image_tokens). Masked logits are -FLT_MAX exactly, as upstream.
 * Errors (nothing changed): m out of range, positions past the end, ids out
 * of range. */
dalle_status tf_forward(const transformer *tf, tf_state *st, const int32_t *tokens, int m,
                        tf_logits_mode mode, float *logits);

/* Positions of dalle_sample's prefix fed per forward, at most (lib/sample.c):
 * want > 0 sets it, 0 restores the default (256 rows: 256 / batch
 * positions), < 0 only asks (0: the default). For tests (process-wide, not
 * thread-safe against running calls). */
int transformer_sample_prefix_tile(int want);

/* Rows of dalle_logits for n_image given image tokens. */
int transformer_logits_rows(const transformer *tf, int n_image);

/* dalle_logits, or with `incremental` dalle_logits_incremental (arguments
 * already validated by lib/context.c). */
dalle_status transformer_logits(const transformer *tf, const dalle_ctx_params *cp,
                                const int32_t *text, const int32_t *image, int batch,
                                int n_image, float cond_scale, int incremental, float *out);

/* dalle_sample (arguments already validated by lib/context.c). lib/sample.c */
dalle_status transformer_sample(const transformer *tf, const dalle_ctx_params *cp,
                                const int32_t *text, int batch, const dalle_sample_params *p,
                                int32_t *out);

/* dalle_generate_text (arguments already validated). lib/sample_text.c */
dalle_status transformer_generate_text(const transformer *tf, const dalle_ctx_params *cp,
                                       const int32_t *prefix, int n_prefix,
                                       const dalle_sample_params *p, int32_t *out);

#endif
