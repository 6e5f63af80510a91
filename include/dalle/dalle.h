/*
 * libdalle — DALL·E-style text-to-image generation in C.
 *
 * A DALL·E model is a transformer that writes image tokens after text tokens,
 * a discrete VAE that turns image tokens into pixels, and (beside them) CLIP,
 * which ranks the images. libdalle runs models converted from the PyTorch
 * checkpoints of lucidrains/DALLE-pytorch (DALLE, DiscreteVAE, CLIP), OpenAI's
 * released dVAE and CLIP, and taming-transformers' VQGAN.
 *
 * Typical use:
 *
 *     dalle_ctx *ctx;
 *     dalle_ctx_params cp = dalle_ctx_default_params();
 *     if (dalle_ctx_create("model.dalle", &cp, &ctx) != DALLE_OK) {
 *         fprintf(stderr, "%s\n", dalle_last_error());
 *         return 1;
 *     }
 *     int32_t text[64];
 *     dalle_tokenize(ctx, "a green triangle", text, dalle_text_seq_len(ctx), 0);
 *     int32_t *img = malloc(sizeof(int32_t) * dalle_image_seq_len(ctx));
 *     dalle_sample_params sp = dalle_sample_default_params();
 *     sp.seed = 42;
 *     dalle_sample(ctx, text, 1, &sp, img);
 *     float *pixels = malloc(sizeof(float) * 3 * dalle_image_size(ctx) * dalle_image_size(ctx));
 *     dalle_decode(ctx, img, 1, pixels);
 *     dalle_write_png("out.png", pixels, 1, dalle_image_size(ctx), dalle_image_size(ctx));
 *     dalle_ctx_free(ctx);
 *
 * Conventions
 *  - Every call that can fail returns a dalle_status: DALLE_OK (0) or a
 *    negative error code. dalle_strerror() names the code; dalle_last_error()
 *    gives the message of the last failure in the calling thread, saying what
 *    failed and which file, tensor or argument was at fault.
 *    A failed call leaves its output buffers untouched.
 *  - The library never prints, never exits and never aborts. Diagnostics go to
 *    the optional log callback (dalle_set_log_callback).
 *  - Arrays are C order. Token ids are int32_t. Images are float32 planar
 *    RGB in [0, 1], laid out [batch][3][height][width] (PyTorch's NCHW).
 *  - Parameter structs come from a *_default_params() function and carry
 *    their own size (first field), so fields added in later versions never
 *    break callers built against an older header: always start from the
 *    defaults and change what you need. The defaults functions are inline:
 *    they pass the caller's sizeof to *_params_init, so the library never
 *    writes past an older, smaller struct (no struct is returned by value
 *    across the ABI).
 *  - Thread safety: different handles may be used from different threads at
 *    the same time. One handle must not be used by two threads at once; the
 *    read-only dalle_bundle is the exception (any number of threads may read
 *    it). Each context runs its own worker threads (params.n_threads).
 *
 * Linking: pkg-config --cflags --libs dalle. The ABI is versioned by the
 * soname (libdalle.so.DALLE_VERSION_MAJOR); only dalle_* and clip_* symbols
 * are exported.
 */
#ifndef DALLE_DALLE_H
#define DALLE_DALLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(DALLE_BUILDING_LIBRARY)
#define DALLE_API __declspec(dllexport)
#elif defined(_WIN32) && !defined(DALLE_STATIC)
#define DALLE_API __declspec(dllimport)
#elif defined(__GNUC__)
#define DALLE_API __attribute__((visibility("default")))
#else
#define DALLE_API
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */
/* ------------------------------------------------------------------------ */

#define DALLE_VERSION_MAJOR 1 /* ABI major: changes only when the ABI breaks */
#define DALLE_VERSION_MINOR 0
#define DALLE_VERSION_PATCH 0
#define DALLE_VERSION_NUMBER \
    (DALLE_VERSION_MAJOR * 10000 + DALLE_VERSION_MINOR * 100 + DALLE_VERSION_PATCH)

/* The version of the library actually loaded, e.g. "1.0.0". */
DALLE_API const char *dalle_version(void);
/* The same as DALLE_VERSION_NUMBER of the loaded library. */
DALLE_API int dalle_version_number(void);

/* ------------------------------------------------------------------------ */
/* Errors and logging                                                       */
/* ------------------------------------------------------------------------ */

typedef enum dalle_status {
    DALLE_OK = 0,
    DALLE_ERR_INVALID_ARGUMENT = -1, /* a NULL pointer, a value out of range  */
    DALLE_ERR_OUT_OF_MEMORY = -2,
    DALLE_ERR_IO = -3,               /* a file could not be opened/read/written */
    DALLE_ERR_FORMAT = -4,           /* a malformed bundle, image or text file  */
    DALLE_ERR_VERSION = -5,          /* a bundle of an unsupported version      */
    DALLE_ERR_CHECKSUM = -6,         /* stored data does not match its checksum */
    DALLE_ERR_NOT_FOUND = -7,        /* a tensor or key the caller asked for    */
    DALLE_ERR_MISMATCH = -8,         /* wrong kind, dtype or shape for a model  */
    DALLE_ERR_UNSUPPORTED = -9,      /* valid, but not available in this build
                                        or for this model (e.g. no GPU)         */
    DALLE_ERR_ABORTED = -10,         /* the abort callback asked to stop        */
    DALLE_ERR_BACKEND = -11,         /* the compute backend failed (GPU error)  */
    DALLE_ERR_TOO_LONG = -12,        /* a caption longer than the model takes   */
    DALLE_ERR_NOT_IMPLEMENTED = -13  /* part of the API this version does not
                                        compute yet                             */
} dalle_status;

/* A short, static description of a status code ("invalid argument"). */
DALLE_API const char *dalle_strerror(int status);

/* The message of the last failure in the calling thread: what failed and
 * which file, tensor or argument was at fault. Valid until the next failing
 * call in this thread; "" if no call has failed. */
DALLE_API const char *dalle_last_error(void);

typedef enum dalle_log_level {
    DALLE_LOG_ERROR = 0,
    DALLE_LOG_WARN = 1,
    DALLE_LOG_INFO = 2,
    DALLE_LOG_DEBUG = 3
} dalle_log_level;

typedef void (*dalle_log_fn)(dalle_log_level level, const char *message, void *user);

/* Send the library's diagnostics to fn (NULL: discard them, the default).
 * Process-wide; the callback may be called from any thread. */
DALLE_API void dalle_set_log_callback(dalle_log_fn fn, void *user);

/* ------------------------------------------------------------------------ */
/* Bundles: the weight files (see docs/bundle-format.md)                    */
/* ------------------------------------------------------------------------ */

typedef struct dalle_bundle dalle_bundle;

typedef enum dalle_dtype {
    DALLE_DTYPE_F32 = 0,
    DALLE_DTYPE_F16 = 1,
    DALLE_DTYPE_BF16 = 2,
    DALLE_DTYPE_I8 = 3,
    DALLE_DTYPE_U8 = 4,
    DALLE_DTYPE_I32 = 5,
    DALLE_DTYPE_I64 = 6
} dalle_dtype;

#define DALLE_MAX_DIMS 8

typedef enum dalle_codec {
    DALLE_CODEC_RAW = 0,
    DALLE_CODEC_ZSTD = 1,
    DALLE_CODEC_ALIAS = 2 /* a view into another tensor's data */
} dalle_codec;

typedef struct dalle_tensor_info {
    const char *name;        /* owned by the bundle */
    dalle_dtype dtype;
    int ndim;
    int64_t dims[DALLE_MAX_DIMS];
    int64_t numel;
    uint64_t nbytes;         /* decoded size */
    uint64_t stored_bytes;   /* bytes in the file (0 for an alias) */
    dalle_codec codec;
    int alias_of;            /* index of the target tensor, or -1 */
    int64_t alias_offset;    /* first element in the target */
} dalle_tensor_info;

typedef enum dalle_meta_type {
    DALLE_META_I64 = 1,
    DALLE_META_F64 = 2,
    DALLE_META_BOOL = 3,
    DALLE_META_STRING = 4,
    DALLE_META_I64_ARRAY = 5,
    DALLE_META_F64_ARRAY = 6,
    DALLE_META_STRING_ARRAY = 7
} dalle_meta_type;

/* Open a bundle and validate its header, metadata and tensor directory
 * (not yet the payloads: see dalle_bundle_verify). */
DALLE_API dalle_status dalle_bundle_open(const char *path, dalle_bundle **out);
/* The same from a buffer in memory, which must outlive the bundle. */
DALLE_API dalle_status dalle_bundle_open_memory(const void *data, size_t size,
                                                dalle_bundle **out);

/* Release a bundle and every tensor decoded from it (NULL is ignored). */
DALLE_API void dalle_bundle_close(dalle_bundle *bundle);

/* The model kind: "dalle", "dvae", "openai_dvae", "vqgan", "clip",
 * "openai_clip" or "tokenizer". */
DALLE_API const char *dalle_bundle_kind(const dalle_bundle *bundle);

/* The file's format minor version (the major is always 1). */
DALLE_API int dalle_bundle_version_minor(const dalle_bundle *bundle);

/* Number of tensors; they are indexed 0 .. n-1 in file order. */
DALLE_API int dalle_bundle_n_tensors(const dalle_bundle *bundle);

/* Name, dtype, shape, sizes and codec of tensor `index` (strings owned by
 * the bundle). Index out of range: DALLE_ERR_INVALID_ARGUMENT. */
DALLE_API dalle_status dalle_bundle_tensor_info(const dalle_bundle *bundle, int index,
                                                dalle_tensor_info *info);
/* Index of the tensor called name, or -1. */
DALLE_API int dalle_bundle_find_tensor(const dalle_bundle *bundle, const char *name);
/* Decode tensor `index` into dst (capacity dst_bytes ≥ its nbytes), checking
 * its checksums. Raw bytes in the tensor's own dtype. */
DALLE_API dalle_status dalle_bundle_read_tensor(dalle_bundle *bundle, int index,
                                                void *dst, size_t dst_bytes);
/* Decode every tensor once and check every checksum. */
DALLE_API dalle_status dalle_bundle_verify(dalle_bundle *bundle);

/* Number of metadata entries, indexed 0 .. n-1 in file order. */
DALLE_API int dalle_bundle_n_meta(const dalle_bundle *bundle);

/* Key, type and element count (1 for scalars) of metadata entry `index`. */
DALLE_API dalle_status dalle_bundle_meta_info(const dalle_bundle *bundle, int index,
                                              const char **key, dalle_meta_type *type,
                                              int64_t *count);
/* Typed look-ups by key. DALLE_ERR_NOT_FOUND when the key is absent,
 * DALLE_ERR_MISMATCH when it holds another type. get_i64 also reads a bool;
 * get_f64 also reads an i64. Array getters copy at most `cap` elements and
 * set *count to the full length. Strings are owned by the bundle. */
DALLE_API dalle_status dalle_bundle_meta_i64(const dalle_bundle *bundle, const char *key,
                                             int64_t *value);
DALLE_API dalle_status dalle_bundle_meta_f64(const dalle_bundle *bundle, const char *key,
                                             double *value);
DALLE_API dalle_status dalle_bundle_meta_str(const dalle_bundle *bundle, const char *key,
                                             const char **value);
DALLE_API dalle_status dalle_bundle_meta_i64_array(const dalle_bundle *bundle,
                                                   const char *key, int64_t *values,
                                                   int64_t cap, int64_t *count);
DALLE_API dalle_status dalle_bundle_meta_f64_array(const dalle_bundle *bundle,
                                                   const char *key, double *values,
                                                   int64_t cap, int64_t *count);
DALLE_API dalle_status dalle_bundle_meta_str_array(const dalle_bundle *bundle,
                                                   const char *key, const char **values,
                                                   int64_t cap, int64_t *count);

/* Writing bundles (the converter's format, for your own models and for
 * training checkpoints). Metadata and tensors are buffered in memory (tensors
 * compressed as they are added) and the file is written by finish. */
typedef struct dalle_bundle_writer dalle_bundle_writer;

/* A writer for a bundle of `kind`, one of the kinds listed at
 * dalle_bundle_kind (stored as general.kind). */
DALLE_API dalle_status dalle_bundle_writer_create(const char *kind,
                                                  dalle_bundle_writer **out);

/* Metadata entries: keys from [A-Za-z0-9_.-], each set once
 * (DALLE_ERR_INVALID_ARGUMENT for a repeated or malformed key, a string that
 * is not UTF-8, counts above the format's limits). */
DALLE_API dalle_status dalle_bundle_writer_set_i64(dalle_bundle_writer *w, const char *key,
                                                   int64_t value);
DALLE_API dalle_status dalle_bundle_writer_set_f64(dalle_bundle_writer *w, const char *key,
                                                   double value);
DALLE_API dalle_status dalle_bundle_writer_set_bool(dalle_bundle_writer *w, const char *key,
                                                    int value);
DALLE_API dalle_status dalle_bundle_writer_set_str(dalle_bundle_writer *w, const char *key,
                                                   const char *value);
DALLE_API dalle_status dalle_bundle_writer_set_i64_array(dalle_bundle_writer *w,
                                                         const char *key,
                                                         const int64_t *values,
                                                         int64_t count);
DALLE_API dalle_status dalle_bundle_writer_set_f64_array(dalle_bundle_writer *w,
                                                         const char *key,
                                                         const double *values,
                                                         int64_t count);
DALLE_API dalle_status dalle_bundle_writer_set_str_array(dalle_bundle_writer *w,
                                                         const char *key,
                                                         const char *const *values,
                                                         int64_t count);
/* Add a tensor; data (numel × dtype size bytes) is copied and compressed
 * with zstd at `level` (0: store raw). */
DALLE_API dalle_status dalle_bundle_writer_add_tensor(dalle_bundle_writer *w,
                                                      const char *name, dalle_dtype dtype,
                                                      int ndim, const int64_t *dims,
                                                      const void *data, int level);
/* Add a view of `numel(dims)` elements starting at element_offset of the
 * earlier tensor `target` (same dtype). */
DALLE_API dalle_status dalle_bundle_writer_add_alias(dalle_bundle_writer *w,
                                                     const char *name, const char *target,
                                                     int ndim, const int64_t *dims,
                                                     int64_t element_offset);
/* Write the file (atomically: a temporary file renamed into place). */
DALLE_API dalle_status dalle_bundle_writer_finish(dalle_bundle_writer *w, const char *path);

/* Release a writer, finished or not (NULL is ignored). */
DALLE_API void dalle_bundle_writer_free(dalle_bundle_writer *w);

/* ------------------------------------------------------------------------ */
/* Callbacks for long calls                                                 */
/* ------------------------------------------------------------------------ */

/* Called after each unit of work (an image token, a VAE image, ...):
 * `done` of `total`. */
typedef void (*dalle_progress_fn)(int64_t done, int64_t total, void *user);
/* Polled between units of work; return non-zero to stop the call, which then
 * returns DALLE_ERR_ABORTED. What was finished is reported by the call. */
typedef int (*dalle_abort_fn)(void *user);

/* ------------------------------------------------------------------------ */
/* DALL·E contexts: a transformer with its VAE, or a VAE alone              */
/* ------------------------------------------------------------------------ */

typedef struct dalle_ctx dalle_ctx;

typedef enum dalle_backend {
    DALLE_BACKEND_CPU = 0,
    DALLE_BACKEND_CUDA = 1,
    DALLE_BACKEND_AUTO = 2 /* CUDA when built with it and a GPU is present, else CPU */
} dalle_backend;

typedef struct dalle_ctx_params {
    size_t struct_size;    /* sizeof(dalle_ctx_params), set by the defaults */
    int n_threads;         /* worker threads; 0 = the number of cores */
    dalle_backend backend; /* default DALLE_BACKEND_CPU */
    int device;            /* GPU index for the CUDA backend */
    int max_batch;         /* images computed together; default 8 */
} dalle_ctx_params;

/* Fill *params (a struct of `struct_size` bytes, as the caller's header
 * declares it) with the defaults. Use dalle_ctx_default_params(), which
 * passes your sizeof: the library never writes past the struct you have. */
DALLE_API void dalle_ctx_params_init(dalle_ctx_params *params, size_t struct_size);

/* The default context parameters (inline: fills your header's struct). */
static inline dalle_ctx_params dalle_ctx_default_params(void)
{
    dalle_ctx_params p;
    dalle_ctx_params_init(&p, sizeof p);
    return p;
}

/* Load a bundle of kind "dalle" (transformer + VAE) or of a VAE kind
 * ("dvae", "openai_dvae", "vqgan": decode/encode only). params may be NULL
 * for the defaults. Errors: DALLE_ERR_IO, _FORMAT, _VERSION, _CHECKSUM,
 * _MISMATCH (a tensor missing or of the wrong shape, a bundle of another
 * kind), _UNSUPPORTED (backend not built or no device), _OUT_OF_MEMORY. */
DALLE_API dalle_status dalle_ctx_create(const char *path, const dalle_ctx_params *params,
                                        dalle_ctx **out);

/* Release a context and its models (NULL is ignored). */
DALLE_API void dalle_ctx_free(dalle_ctx *ctx);

/* The message of this context's last failure ("" if none). */
DALLE_API const char *dalle_ctx_last_error(const dalle_ctx *ctx);
/* The bundle the context was loaded from (owned by the context). */
DALLE_API const dalle_bundle *dalle_ctx_bundle(const dalle_ctx *ctx);

/* Model shapes (0 when the context has no transformer / no VAE). */
DALLE_API int dalle_text_seq_len(const dalle_ctx *ctx);     /* caption tokens */
DALLE_API int dalle_num_text_tokens(const dalle_ctx *ctx);  /* text vocabulary */
DALLE_API int dalle_image_seq_len(const dalle_ctx *ctx);    /* image tokens */
DALLE_API int dalle_num_image_tokens(const dalle_ctx *ctx); /* VAE codebook size */
DALLE_API int dalle_image_size(const dalle_ctx *ctx);       /* pixels per side */
/* Width of a logits row: text vocabulary (incl. one padding id per text
 * position) + image vocabulary, as upstream's total_tokens. */
DALLE_API int dalle_total_tokens(const dalle_ctx *ctx);

/* Tokenize a UTF-8 caption with the bundle's tokenizer into out[0 ..
 * context_length), padded with 0 as DALLE-pytorch's tokenize(). A caption
 * that needs more than context_length tokens is an error
 * (DALLE_ERR_TOO_LONG) unless truncate is non-zero. Invalid UTF-8:
 * DALLE_ERR_INVALID_ARGUMENT. No tokenizer in the bundle: _UNSUPPORTED. */
DALLE_API dalle_status dalle_tokenize(dalle_ctx *ctx, const char *text, int32_t *out,
                                      int context_length, int truncate);

typedef struct dalle_sample_params {
    size_t struct_size;
    uint64_t seed;             /* same seed, same tokens: any thread count */
    float filter_thres;        /* top-k keeps max(int((1 - thres) * total_tokens), 1)
                                  logits, as upstream; default 0.5 */
    float temperature;         /* default 1.0; > 0 */
    float cond_scale;          /* classifier-free guidance; 1.0 = off */
    const int32_t *prime;      /* optional image tokens to start from: n_prime
                                  per image, [batch][n_prime], or NULL */
    int n_prime;               /* 0 .. image_seq_len */
    dalle_progress_fn progress; /* optional: done/total image tokens */
    dalle_abort_fn abort;       /* optional */
    void *user;                 /* passed to progress and abort */
    uint64_t first_image;       /* index of out[0] in a longer run: image i of a
                                   call draws the random stream of image
                                   first_image + i, so N images made in several
                                   calls equal those of one call (default 0) */
} dalle_sample_params;

/* Defaults into a struct of `struct_size` bytes; see dalle_ctx_params_init. */
DALLE_API void dalle_sample_params_init(dalle_sample_params *params, size_t struct_size);

/* The default sampling parameters (inline: fills your header's struct). */
static inline dalle_sample_params dalle_sample_default_params(void)
{
    dalle_sample_params p;
    dalle_sample_params_init(&p, sizeof p);
    return p;
}

/* Sample `batch` images' tokens. text: [batch][text_seq_len] caption ids
 * (0 = padding, as dalle_tokenize writes them). out: [batch][image_seq_len]
 * image ids in [0, num_image_tokens). params may be NULL for the defaults. */
DALLE_API dalle_status dalle_sample(dalle_ctx *ctx, const int32_t *text, int batch,
                                    const dalle_sample_params *params, int32_t *out);

/* Continue a caption, as DALLE.generate_texts: prefix holds n_prefix
 * (0 .. text_seq_len) text ids as the tokenizer writes them (upstream feeds
 * them without <bos>; an empty prefix starts from id 0). out[text_seq_len]
 * receives the prefix followed by sampled text ids, which may include the
 * padding ids num_text_tokens + i (drop them before decoding, as upstream).
 * Uses seed, filter_thres, temperature, progress and abort of params;
 * cond_scale must be 1 and n_prime 0. */
DALLE_API dalle_status dalle_generate_text(dalle_ctx *ctx, const int32_t *prefix, int n_prefix,
                                           const dalle_sample_params *params, int32_t *out);

/* Teacher-forced logits of (text, image) sequences, as DALLE.forward
 * computes them. The sequence is <bos>, the caption (its 0s replaced by
 * per-position padding ids, as upstream), then n_image (0 .. image_seq_len)
 * given image tokens; row p holds the logits that predict token p + 1.
 * out: [batch][dalle_logits_rows(ctx, n_image)][total_tokens], where rows =
 * text_seq_len + 1 + n_image, except for a complete image, whose last token
 * predicts nothing (text_seq_len + image_seq_len rows). Masked entries are
 * -FLT_MAX exactly, as upstream. cond_scale != 1 applies classifier-free
 * guidance: null + (cond - null) * cond_scale, the null pass with an
 * all-padding caption. */
DALLE_API dalle_status dalle_logits(dalle_ctx *ctx, const int32_t *text,
                                    const int32_t *image, int batch, int n_image,
                                    float cond_scale, float *out);
/* The same logits computed the way generation computes them: one token at a
 * time through the KV cache (slower; equal to dalle_logits within float
 * rounding, for every attention type). */
DALLE_API dalle_status dalle_logits_incremental(dalle_ctx *ctx, const int32_t *text,
                                                const int32_t *image, int batch, int n_image,
                                                float cond_scale, float *out);
/* Rows per sequence of dalle_logits for n_image given image tokens (0 for a
 * context without a transformer or n_image out of range). */
DALLE_API int dalle_logits_rows(const dalle_ctx *ctx, int n_image);

/* Image tokens → pixels: ids [batch][image_seq_len] → [batch][3][size][size]
 * in [0, 1]. */
DALLE_API dalle_status dalle_decode(dalle_ctx *ctx, const int32_t *ids, int batch,
                                    float *pixels);
/* Pixels → image tokens: [batch][3][size][size] in [0, 1] → ids
 * [batch][image_seq_len]. */
DALLE_API dalle_status dalle_encode(dalle_ctx *ctx, const float *pixels, int batch,
                                    int32_t *ids);

/* ------------------------------------------------------------------------ */
/* Image files                                                              */
/* ------------------------------------------------------------------------ */

/* Write `batch` images [batch][3][h][w] in [0, 1] as one PNG (a grid when
 * batch > 1). */
DALLE_API dalle_status dalle_write_png(const char *path, const float *pixels, int batch,
                                       int height, int width);

/* Read a PNG or JPEG file as one image for dalle_encode (or priming):
 * pixels [3][size][size] in [0, 1], size usually dalle_image_size(ctx).
 * The image is scaled so that its shorter side is `size` (antialiased
 * bilinear, like torchvision's Resize on a PIL image) and the centre
 * size × size square is kept (CenterCrop); an image already size × size is
 * taken pixel for pixel. Grey images fill all three channels; alpha is
 * ignored; 16-bit PNGs are read at 8 bits. Errors: DALLE_ERR_IO (cannot
 * open or read the file), DALLE_ERR_FORMAT (empty, not a PNG or JPEG,
 * truncated or corrupt: the message says why), DALLE_ERR_UNSUPPORTED (more
 * than 16384 pixels a side, or a file over 1 GiB),
 * DALLE_ERR_INVALID_ARGUMENT (NULL pointers, size outside 1..16384). */
DALLE_API dalle_status dalle_read_image(const char *path, int size, float *pixels);

/* ------------------------------------------------------------------------ */
/* Tokenizer: captions to token ids (docs/tokenizer.md)                     */
/* ------------------------------------------------------------------------ */

/* The CLIP byte-level BPE tokenizer exactly as DALLE-pytorch's
 * SimpleTokenizer: ftfy-style text fixing (the subset in docs/tokenizer.md),
 * HTML unescaping, whitespace clean-up, lower-casing, then BPE of each piece
 * of the split pattern. Text is UTF-8; invalid UTF-8 (and text over 1 MiB)
 * is refused with DALLE_ERR_INVALID_ARGUMENT naming the byte at fault.
 * A handle keeps a bounded cache, so encode/tokenize must not run on one
 * handle from two threads at once. */
typedef struct dalle_tokenizer dalle_tokenizer;

/* Load from a bundle holding the tensor tokenizer.bpe_merges (converted
 * with --bpe) or from a merges file such as bpe_simple_vocab_16e6.txt; the
 * two are told apart by content. Errors: DALLE_ERR_IO, _FORMAT (a malformed
 * merges file: the message names the line), _NOT_FOUND (a bundle without a
 * tokenizer), _MISMATCH, _UNSUPPORTED (another tokenizer.kind). */
DALLE_API dalle_status dalle_tokenizer_create(const char *path, dalle_tokenizer **out);

/* Release a tokenizer (NULL is ignored). */
DALLE_API void dalle_tokenizer_free(dalle_tokenizer *tok);

/* 49408 for the CLIP merges: 256 bytes, 256 word-final bytes, the merges,
 * <|startoftext|> (vocab_size - 2) and <|endoftext|> (vocab_size - 1). */
DALLE_API int dalle_tokenizer_vocab_size(const dalle_tokenizer *tok);

/* SimpleTokenizer.encode: the ids of a caption, without start/end tokens.
 * Writes *n ids to ids[0 .. cap); with ids NULL and cap 0 it only sets *n.
 * More ids than cap: DALLE_ERR_INVALID_ARGUMENT. */
DALLE_API dalle_status dalle_tokenizer_encode(dalle_tokenizer *tok, const char *text,
                                              int32_t *ids, int cap, int *n);

/* SimpleTokenizer.decode(ids) with upstream's remove_start_end=True, which
 * drops the ids 49406, 40407 and 0 (40407 is upstream's typo for 49407: so
 * <|endoftext|> stays, and the tokens 'berwick' and '!' vanish); word ends
 * become spaces; byte sequences that are not UTF-8 become U+FFFD. Writes
 * the text and a NUL to buf (cap bytes) and its length without the NUL to
 * *len; with buf NULL and cap 0 it only sets *len. Ids outside the
 * vocabulary, or a buf too small: DALLE_ERR_INVALID_ARGUMENT. */
DALLE_API dalle_status dalle_tokenizer_decode(const dalle_tokenizer *tok, const int32_t *ids,
                                              int n, char *buf, size_t cap, size_t *len);

/* DALLE-pytorch's tokenize(text, context_length, truncate_text): the ids
 * (no start/end tokens) in out[0 .. context_length), padded with 0. More
 * ids than context_length (1..65536): DALLE_ERR_TOO_LONG, whose message
 * gives the text's token count, unless truncate is non-zero (then cut). */
DALLE_API dalle_status dalle_tokenizer_tokenize(dalle_tokenizer *tok, const char *text,
                                                int32_t *out, int context_length,
                                                int truncate);

/* OpenAI CLIP's clip.tokenize: <|startoftext|> + ids + <|endoftext|>,
 * padded with 0; when truncated, the last kept id is <|endoftext|>. */
DALLE_API dalle_status dalle_tokenizer_tokenize_clip(dalle_tokenizer *tok, const char *text,
                                                     int32_t *out, int context_length,
                                                     int truncate);

/* ------------------------------------------------------------------------ */
/* CLIP: score how well images match a caption                              */
/* ------------------------------------------------------------------------ */

typedef struct clip_ctx clip_ctx;

/* Load a bundle of kind "clip" (DALLE-pytorch's CLIP) or "openai_clip"
 * (OpenAI's CLIP with the ViT image tower; ModifiedResNet checkpoints give
 * DALLE_ERR_UNSUPPORTED). params may be NULL; n_threads, max_batch
 * (images or captions encoded together), backend and device are used: with
 * DALLE_BACKEND_CUDA (or AUTO and a GPU) the weights go to the GPU once,
 * here, with a workspace for max_batch, and CLIP computes there. Errors as
 * dalle_ctx_create. See docs/clip.md. */
DALLE_API dalle_status clip_ctx_create(const char *path, const dalle_ctx_params *params,
                                       clip_ctx **out);

/* Release a CLIP context (NULL is ignored). */
DALLE_API void clip_ctx_free(clip_ctx *ctx);

/* The message of this context's last failure ("" if none). */
DALLE_API const char *clip_ctx_last_error(const clip_ctx *ctx);
/* The bundle the context was loaded from (owned by the context); its
 * dalle_bundle_kind tells the two models apart. */
DALLE_API const dalle_bundle *clip_ctx_bundle(const clip_ctx *ctx);

/* Model shapes (0 for a NULL ctx). */
DALLE_API int clip_text_seq_len(const clip_ctx *ctx);    /* caption tokens per text */
DALLE_API int clip_num_text_tokens(const clip_ctx *ctx); /* ids are 0 .. this - 1 */
DALLE_API int clip_image_size(const clip_ctx *ctx);      /* pixels per side */
DALLE_API int clip_embed_dim(const clip_ctx *ctx);       /* width of a feature vector */

/* Conventions of the calls below:
 *  - text: captions of clip_text_seq_len ids each, [n][text_seq_len], ids in
 *    [0, clip_num_text_tokens). DALLE-pytorch CLIP: 0 = padding, as
 *    dalle_tokenize writes. OpenAI CLIP: as clip.tokenize writes, with
 *    <start_of_text> and <end_of_text>; the features are read at the
 *    largest id of each caption (the end-of-text token; the first one if
 *    the largest occurs twice), as upstream.
 *  - images: [n][3][size][size] float32 in the model's own input range:
 *    OpenAI CLIP takes normalised images (clip_preprocess writes them);
 *    DALLE-pytorch CLIP takes images as given (upstream normalises nothing;
 *    DALLE-pytorch feeds it its generated images in [0, 1]). Every value
 *    must be finite.
 *  - A score is scale · cos(text features, image features), scale =
 *    exp(temperature) (DALLE-pytorch) or exp(logit_scale) (OpenAI), i.e. an
 *    entry of upstream's logits.
 *  - Counts (batch, n, n_images, n_texts) are 1 .. 2^20. A failed call
 *    leaves every output untouched. */

/* Scores of `batch` images against one caption text[text_seq_len]:
 * out[batch]. DALLE-pytorch CLIP without a text mask, as upstream's
 * DALLE.generate_images calls it (the mean runs over every position,
 * padding included); see clip_score_masked. */
DALLE_API dalle_status clip_score(clip_ctx *ctx, const int32_t *text, const float *images,
                                  int batch, float *out);

/* clip_score with DALLE-pytorch CLIP's text_mask[text_seq_len] (non-zero =
 * a real token; upstream's `text_mask = text != 0` is the usual choice):
 * masked tokens are neither attended to nor averaged. The mask must keep at
 * least one token (else upstream divides by zero): DALLE_ERR_INVALID_ARGUMENT.
 * text_mask NULL is clip_score. OpenAI CLIP takes no mask: a non-NULL mask
 * gives DALLE_ERR_UNSUPPORTED. */
DALLE_API dalle_status clip_score_masked(clip_ctx *ctx, const int32_t *text,
                                         const uint8_t *text_mask, const float *images,
                                         int batch, float *out);

/* Image features, unnormalised: features[batch][clip_embed_dim]. OpenAI:
 * model.encode_image(images); DALLE-pytorch: to_visual_latent(mean of the
 * visual transformer's outputs), before F.normalize. */
DALLE_API dalle_status clip_encode_image(clip_ctx *ctx, const float *images, int batch,
                                         float *features);

/* Text features, unnormalised: features[n_texts][clip_embed_dim]. OpenAI:
 * model.encode_text(text); DALLE-pytorch: to_text_latent(mean over all
 * positions) (no mask, as clip_score), before F.normalize. */
DALLE_API dalle_status clip_encode_text(clip_ctx *ctx, const int32_t *text, int n_texts,
                                        float *features);

/* Every image against every caption: out[n_images][n_texts] = score.
 * OpenAI: logits_per_image of model(images, text) (logits_per_text is its
 * transpose); DALLE-pytorch: the sim matrix of CLIP(..., return_loss=True),
 * transposed, text without a mask. */
DALLE_API dalle_status clip_logits_per_image(clip_ctx *ctx, const float *images, int n_images,
                                             const int32_t *text, int n_texts, float *out);

/* One raw image → the model's input: rgb is 8-bit interleaved RGB
 * [height][width][3] of any size (sides 1 .. 65536, at most 2^28 pixels);
 * out[3][size][size], size = clip_image_size. As clip.load()'s transform:
 * Pillow's BICUBIC resize of the short side to size (bit-exact for 8-bit
 * RGB), torchvision's CenterCrop, ToTensor, and for OpenAI CLIP Normalize
 * with CLIP's mean (0.48145466, 0.4578275, 0.40821073) and std
 * (0.26862954, 0.26130258, 0.27577711); DALLE-pytorch CLIP gets the
 * cropped image in [0, 1]. */
DALLE_API dalle_status clip_preprocess(clip_ctx *ctx, const uint8_t *rgb, int height,
                                       int width, float *out);

/* Rerank n images (say, a batch of generated ones) by one caption:
 * scores[n] as clip_score, order[n] the image indices best first (equal
 * scores keep their input order). */
DALLE_API dalle_status clip_rank(clip_ctx *ctx, const int32_t *text, const float *images,
                                 int n, float *scores, int *order);

#ifdef __cplusplus
}
#endif

#endif /* DALLE_DALLE_H */
