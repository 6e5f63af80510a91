/* The DALL·E context: a bundle, the models built from it, and the state a
 * call needs. Model code lives elsewhere (transformer, VAE); this file only
 * holds them together and checks what callers pass in. */
#ifndef DALLE_CONTEXT_H
#define DALLE_CONTEXT_H

#include "dalle/dalle.h"

#define DALLE_MESSAGE_CAP 1024

/* The sizes a DALLE-pytorch model is made of, read from the bundle's
 * metadata (docs/bundle-keys.md). Zero where the bundle has no such part. */
typedef struct model_shapes {
    int text_seq_len;      /* dalle.text_seq_len */
    int num_text_tokens;   /* dalle.num_text_tokens (without the padding ids) */
    int image_size;        /* vae.image_size */
    int image_fmap_size;   /* image_size >> vae.num_layers */
    int image_seq_len;     /* image_fmap_size² */
    int num_image_tokens;  /* vae.num_tokens */
    int total_tokens;      /* num_text_tokens + text_seq_len + num_image_tokens */
} model_shapes;

struct dalle_ctx {
    dalle_bundle *bundle;
    dalle_ctx_params params;
    dalle_backend backend;
    int has_transformer;
    int has_vae;
    model_shapes shapes;
    struct transformer *transformer; /* lib/transformer.h; NULL without one */
    struct vae *vae;                 /* lib/vae.h; NULL without one */
    struct dalle_tokenizer *tokenizer; /* lib/tokenizer.h; loaded on first dalle_tokenize */
    struct tpool *pool;              /* lib/threadpool.h: params.n_threads threads */
    struct backend *device_backend;  /* lib/backend_ops.h: the CUDA backend the transformer
                                      * runs on (backend cuda); NULL on the CPU */
    char last_error[DALLE_MESSAGE_CAP];
};

#endif
