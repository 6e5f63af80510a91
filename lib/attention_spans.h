/* Which keys a query sees: each attention type's mask (upstream's Attention,
 * SparseAxialCausalAttention, SparseConvCausalAttention) as spans of the KV
 * cache. One function for both backends: lib/attention.c lists the keys on
 * the CPU, and the CUDA attention kernel (lib/cuda/ops_cuda.cu) lists each
 * query's keys on the device, so a chunk of queries needs no upload.
 * Plain C that nvcc and C++ compile too. */
#ifndef DALLE_ATTENTION_SPANS_H
#define DALLE_ATTENTION_SPANS_H

#include <stdint.h>

#include "hostdev.h"
#include "ops.h"

typedef enum attn_type { ATTN_FULL, ATTN_AXIAL_ROW, ATTN_AXIAL_COL, ATTN_CONV_LIKE } attn_type;

/* What a query's keys depend on besides its position. */
typedef struct attn_keys {
    int type;                       /* an attn_type */
    int conv_kernel, conv_dilation; /* conv_like: 5 and 1, fixed upstream */
    int64_t text_len;               /* <bos> + text positions */
    int64_t fmap;                   /* image tokens per side */
} attn_keys;

/* The most spans attn_key_spans gives: the text, then a row of the conv
 * window each. */
#define ATTN_MAX_SPANS(conv_kernel) (1 + (conv_kernel))

static inline DALLE_HOST_DEVICE ops_span attn_span(int64_t start, int64_t count, int64_t stride)
{
    ops_span s;
    s.start = start;
    s.count = count;
    s.stride = stride;
    return s;
}

/* The keys position p sees, into sp (ATTN_MAX_SPANS of them at most), in
 * increasing position order; returns how many spans. */
static inline DALLE_HOST_DEVICE int attn_key_spans(const attn_keys *g, int64_t p, ops_span *sp)
{
    if (p < g->text_len || g->type == ATTN_FULL) {
        /* causal: everything up to and including p */
        sp[0] = attn_span(0, p + 1, 1);
        return 1;
    }
    const int64_t W = g->fmap, base = g->text_len;
    const int64_t i = p - base, r = i / W, c = i % W;
    int n = 0;
    sp[n++] = attn_span(0, base, 1); /* an image token sees all of <bos> + text */
    if (g->type == ATTN_AXIAL_ROW) {  /* its own row, columns <= c */
        sp[n++] = attn_span(base + r * W, c + 1, 1);
    } else if (g->type == ATTN_AXIAL_COL) { /* its own column, rows <= r */
        sp[n++] = attn_span(base + c, r + 1, W);
    } else if (g->type == ATTN_CONV_LIKE) {
        /* F.unfold over the image padded by (k-1)*dilation on the top and
         * left: the k x k window whose bottom-right corner is (r, c);
         * positions outside the image are masked. */
        const int k = g->conv_kernel, dil = g->conv_dilation;
        const int64_t reach = (int64_t)(k - 1) * dil;
        for (int ky = 0; ky < k; ky++) {
            const int64_t rr = r - reach + (int64_t)ky * dil;
            if (rr < 0)
                continue;
            int kx0 = 0;
            while (kx0 < k && c - reach + (int64_t)kx0 * dil < 0)
                kx0++;
            sp[n++] = attn_span(base + rr * W + c - reach + (int64_t)kx0 * dil, k - kx0, dil);
        }
    }
    return n;
}

#endif
