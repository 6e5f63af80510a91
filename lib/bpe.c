/* The CLIP byte-level BPE: the merges file, the vocabulary it implies, BPE
 * of one pre-token by merge rank, and a bounded cache.
 *
 * Upstream (SimpleTokenizer) works on strings: every byte is first mapped to
 * a printable character (bytes_to_unicode), a word is a tuple of such
 * strings with '</w>' glued to the last one, and the pair of lowest rank is
 * merged everywhere, left to right, until no pair has a rank. Here a symbol
 * is a vocabulary id and a pair is looked up by its two ids; the result is
 * the same (see bpe_word for why the heap order equals upstream's passes).
 */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tokenizer.h"

/* merges[1 : 49152 - 256 - 2 + 1] in upstream: at most 48894 merge lines. */
#define BPE_MAX_MERGES 48894
/* Cache: direct-mapped, only words up to CACHE_WORD bytes, so that at most
 * CACHE_SLOTS * (CACHE_WORD + 4 * CACHE_WORD + overhead) bytes are held,
 * whatever the text (upstream's dict grows without bound). */
#define CACHE_SLOTS 4096
#define CACHE_WORD 64

typedef struct vocab_entry {
    uint32_t off, len; /* bytes in pool (without the marker) */
    uint8_t word_end;  /* ends with '</w>' */
    uint8_t live;      /* 0 for the dead entry of a blank merges line */
} vocab_entry;

typedef struct cache_slot {
    uint8_t *key;  /* key bytes, then the ids (int32, unaligned copy) */
    uint32_t klen, nids;
} cache_slot;

struct bpe {
    int n_vocab;          /* 512 + merges + 2 */
    int n_merges;
    vocab_entry *vocab;
    uint8_t *pool;
    size_t pool_len, pool_cap;
    size_t max_len;       /* longest token, bytes, with "</w>" */
    /* vocabulary by (bytes, word_end): open addressing over ids + 1 */
    int32_t *vmap;
    uint32_t vmap_mask;
    /* merge rank by pair of ids */
    uint64_t *pkeys;
    int32_t *pranks;
    uint32_t pmap_mask;
    uint8_t byte_rank[256]; /* byte -> its index in bytes_to_unicode order */
    cache_slot cache[CACHE_SLOTS];
};

/* ---- bytes_to_unicode ---------------------------------------------------- */

/* Upstream orders the 256 byte symbols as: the printable bytes '!'..'~',
 * '¡'..'¬', '®'..'ÿ' (each shown as itself), then every other byte in
 * increasing order, shown as U+0100 + n. */
static int printable_byte(int b) { return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174; }

static void byte_order(uint8_t rank[256], uint8_t by_rank[256])
{
    int k = 0;
    for (int b = 0; b < 256; b++)
        if (printable_byte(b))
            by_rank[k++] = (uint8_t)b;
    for (int b = 0; b < 256; b++)
        if (!printable_byte(b))
            by_rank[k++] = (uint8_t)b;
    for (int i = 0; i < 256; i++)
        rank[by_rank[i]] = (uint8_t)i;
}

/* The byte a symbol character stands for, or -1 if it is none. */
static int char_to_byte(uint32_t c)
{
    if (c < 256)
        return printable_byte((int)c) ? (int)c : -1;
    if (c >= 256 + 68) /* 68 bytes are not printable */
        return -1;
    int n = (int)(c - 256);
    for (int b = 0; b < 256; b++)
        if (!printable_byte(b) && n-- == 0)
            return b;
    return -1;
}

uint32_t bpe_byte_char(uint8_t byte)
{
    if (printable_byte(byte))
        return byte;
    uint32_t n = 0;
    for (int b = 0; b < byte; b++)
        n += !printable_byte(b);
    return 256 + n;
}

/* ---- hashing --------------------------------------------------------------- */

static uint32_t hash_bytes(const uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t h = 2166136261u ^ seed; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static uint32_t hash_pair(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return (uint32_t)k;
}

static int32_t vocab_find(const bpe *b, const uint8_t *p, size_t n, int word_end)
{
    uint32_t i = hash_bytes(p, n, (uint32_t)word_end) & b->vmap_mask;
    for (;; i = (i + 1) & b->vmap_mask) {
        int32_t id = b->vmap[i] - 1;
        if (id < 0)
            return -1;
        const vocab_entry *e = &b->vocab[id];
        if (e->len == n && e->word_end == word_end && !memcmp(b->pool + e->off, p, n))
            return id;
    }
}

static void vocab_insert(bpe *b, int32_t id)
{
    const vocab_entry *e = &b->vocab[id];
    uint32_t i = hash_bytes(b->pool + e->off, e->len, e->word_end) & b->vmap_mask;
    while (b->vmap[i])
        i = (i + 1) & b->vmap_mask;
    b->vmap[i] = id + 1;
}

static int32_t pair_rank(const bpe *b, int32_t l, int32_t r)
{
    uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    for (uint32_t i = hash_pair(k) & b->pmap_mask;; i = (i + 1) & b->pmap_mask) {
        if (b->pranks[i] < 0)
            return -1;
        if (b->pkeys[i] == k)
            return b->pranks[i];
    }
}

static void pair_insert(bpe *b, int32_t l, int32_t r, int32_t rank)
{
    uint64_t k = ((uint64_t)(uint32_t)l << 32) | (uint32_t)r;
    uint32_t i = hash_pair(k) & b->pmap_mask;
    while (b->pranks[i] >= 0)
        i = (i + 1) & b->pmap_mask;
    b->pkeys[i] = k;
    b->pranks[i] = rank;
}

static uint32_t pow2_above(size_t n)
{
    uint32_t p = 16;
    while (p < 2 * n)
        p <<= 1;
    return p;
}

/* ---- the merges file ------------------------------------------------------- */

/* Decode one code point of already validated UTF-8 at *i. */
static uint32_t next_cp(const uint8_t *s, size_t *i)
{
    uint32_t c = s[*i];
    int n = c < 0x80 ? 0 : c < 0xE0 ? 1 : c < 0xF0 ? 2 : 3;
    c &= n == 0 ? 0x7F : n == 1 ? 0x1F : n == 2 ? 0x0F : 0x07;
    (*i)++;
    while (n--)
        c = (c << 6) | (s[(*i)++] & 0x3F);
    return c;
}

/* Python's str.split() separators (str.isspace), none of which is a symbol
 * character, so a merge line splits the same way upstream's does. */
static int py_isspace(uint32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

typedef struct part {
    uint8_t bytes[4096];
    size_t len;
    int word_end;
} part;

/* One whitespace-separated field of a merge line, [s, e) of code points,
 * into bytes: every character must be a byte symbol, and a trailing "</w>"
 * (after at least one symbol) is the word-end marker. */
static int parse_part(const uint8_t *s, size_t i, size_t e, part *p)
{
    p->len = 0;
    p->word_end = 0;
    if (e - i > 4 && !memcmp(s + e - 4, "</w>", 4)) {
        p->word_end = 1;
        e -= 4;
    }
    while (i < e) {
        int byte = char_to_byte(next_cp(s, &i));
        if (byte < 0 || p->len == sizeof p->bytes)
            return -1;
        p->bytes[p->len++] = (uint8_t)byte;
    }
    return 0;
}

static dalle_status fail_line(const char *origin, int line, const char *why)
{
    return dalle_fail(DALLE_ERR_FORMAT, "%s: merges line %d: %s", origin, line + 1, why);
}

static int add_vocab(bpe *b, const uint8_t *p, size_t n, int word_end, int live)
{
    if (b->pool_len + n > b->pool_cap) {
        size_t cap = b->pool_cap * 2 > b->pool_len + n ? b->pool_cap * 2 : b->pool_len + n;
        uint8_t *np = realloc(b->pool, cap);
        if (!np)
            return -1;
        b->pool = np;
        b->pool_cap = cap;
    }
    if (n)
        memcpy(b->pool + b->pool_len, p, n);
    vocab_entry *e = &b->vocab[b->n_vocab++];
    e->off = (uint32_t)b->pool_len;
    e->len = (uint32_t)n;
    e->word_end = (uint8_t)word_end;
    e->live = (uint8_t)live;
    b->pool_len += n;
    size_t full = n + (word_end ? 4 : 0);
    if (full > b->max_len)
        b->max_len = full;
    return 0;
}

static dalle_status parse_merges(bpe *b, const uint8_t *s, size_t size, const char *origin)
{
    part *pl = malloc(sizeof *pl), *pr = malloc(sizeof *pr); /* big for a stack */
    dalle_status st = DALLE_OK;
    if (!pl || !pr) {
        st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
        goto done;
    }
    size_t pos = 0;
    int line = 0;
    /* upstream: text.split('\n')[1 : 48895]; the header line is skipped. */
    while (pos <= size && b->n_merges < BPE_MAX_MERGES) {
        const uint8_t *nl = memchr(s + pos, '\n', size - pos);
        size_t end = nl ? (size_t)(nl - s) : size;
        if (line > 0) {
            size_t f[3][2];
            int nf = 0;
            size_t i = pos;
            while (i < end) {
                size_t at = i;
                uint32_t c = next_cp(s, &i);
                if (py_isspace(c))
                    continue;
                size_t fs = at;
                size_t fe = i;
                while (i < end) {
                    size_t k = i;
                    if (py_isspace(next_cp(s, &k)))
                        break;
                    i = k;
                    fe = i;
                }
                if (nf < 3) {
                    f[nf][0] = fs;
                    f[nf][1] = fe;
                }
                nf++;
            }
            int rank = b->n_merges;
            if (nf == 0) {
                /* A blank line is an empty merge upstream: it takes an id
                   (the empty string) that no text can ever produce. */
                if (add_vocab(b, NULL, 0, 0, 0))
                    goto oom;
            } else if (nf != 2) {
                st = fail_line(origin, line, "expected two symbols");
                goto done;
            } else {
                if (parse_part(s, f[0][0], f[0][1], pl) || parse_part(s, f[1][0], f[1][1], pr)) {
                    st = fail_line(origin, line, "a symbol is not made of byte characters");
                    goto done;
                }
                if (pl->word_end) {
                    st = fail_line(origin, line, "'</w>' ends the left symbol");
                    goto done;
                }
                int32_t l = vocab_find(b, pl->bytes, pl->len, 0);
                int32_t r = vocab_find(b, pr->bytes, pr->len, pr->word_end);
                if (l < 0 || r < 0) {
                    st = fail_line(origin, line,
                                   "a symbol is neither a byte nor made by an earlier merge");
                    goto done;
                }
                if (pair_rank(b, l, r) >= 0) {
                    st = fail_line(origin, line, "the same merge appears twice");
                    goto done;
                }
                if (pl->len + pr->len > sizeof pl->bytes) {
                    st = fail_line(origin, line, "symbol too long");
                    goto done;
                }
                memcpy(pl->bytes + pl->len, pr->bytes, pr->len);
                if (vocab_find(b, pl->bytes, pl->len + pr->len, pr->word_end) >= 0) {
                    st = fail_line(origin, line, "the merge makes a symbol that already exists");
                    goto done;
                }
                if (add_vocab(b, pl->bytes, pl->len + pr->len, pr->word_end, 1))
                    goto oom;
                vocab_insert(b, b->n_vocab - 1);
                pair_insert(b, l, r, rank);
            }
            b->n_merges++;
        }
        if (!nl)
            break;
        pos = end + 1;
        line++;
    }
    goto done;
oom:
    st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
done:
    free(pl);
    free(pr);
    return st;
}

dalle_status bpe_load(const uint8_t *data, size_t size, const char *origin, bpe **out)
{
    if (size > ((size_t)1 << 30))
        return dalle_fail(DALLE_ERR_FORMAT, "%s: %zu bytes is too big for a merges file", origin,
                          size);
    /* upstream reads the file with read_text(encoding='utf8'): strict. */
    size_t ok = utf8_decode(data, size, NULL, NULL);
    if (ok != size)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: invalid UTF-8 at byte %zu", origin, ok);

    bpe *b = calloc(1, sizeof *b);
    if (!b)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
    size_t max_vocab = 512 + BPE_MAX_MERGES + 2;
    b->vocab = calloc(max_vocab, sizeof *b->vocab);
    b->pool_cap = (size_t)1 << 16;
    b->pool = malloc(b->pool_cap);
    b->vmap_mask = pow2_above(max_vocab) - 1;
    b->vmap = calloc((size_t)b->vmap_mask + 1, sizeof *b->vmap);
    b->pmap_mask = pow2_above(BPE_MAX_MERGES) - 1;
    b->pkeys = malloc(((size_t)b->pmap_mask + 1) * sizeof *b->pkeys);
    b->pranks = malloc(((size_t)b->pmap_mask + 1) * sizeof *b->pranks);
    dalle_status st;
    if (!b->vocab || !b->pool || !b->vmap || !b->pkeys || !b->pranks) {
        st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
        goto fail;
    }
    memset(b->pranks, 0xFF, ((size_t)b->pmap_mask + 1) * sizeof *b->pranks);

    uint8_t by_rank[256];
    byte_order(b->byte_rank, by_rank);
    for (int w = 0; w < 2; w++)
        for (int i = 0; i < 256; i++) {
            if (add_vocab(b, &by_rank[i], 1, w, 1)) {
                st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
                goto fail;
            }
            vocab_insert(b, b->n_vocab - 1);
        }
    if ((st = parse_merges(b, data, size, origin)))
        goto fail;
    /* <|startoftext|> and <|endoftext|>: plain text, no word-end marker, and
       not in the lookup table (only the pre-tokenizer produces them). */
    if (add_vocab(b, (const uint8_t *)"<|startoftext|>", 15, 0, 1) ||
        add_vocab(b, (const uint8_t *)"<|endoftext|>", 13, 0, 1)) {
        st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", origin);
        goto fail;
    }
    *out = b;
    return DALLE_OK;
fail:
    bpe_free(b);
    return st;
}

void bpe_free(bpe *b)
{
    if (!b)
        return;
    for (int i = 0; i < CACHE_SLOTS; i++)
        free(b->cache[i].key);
    free(b->vocab);
    free(b->pool);
    free(b->vmap);
    free(b->pkeys);
    free(b->pranks);
    free(b);
}

int bpe_vocab_size(const bpe *b) { return b->n_vocab; }
int32_t bpe_sot(const bpe *b) { return b->n_vocab - 2; }
int32_t bpe_eot(const bpe *b) { return b->n_vocab - 1; }
size_t bpe_max_token_bytes(const bpe *b) { return b->max_len; }

int bpe_token_bytes(const bpe *b, int32_t id, uint8_t *out)
{
    if (id < 0 || id >= b->n_vocab)
        return -1;
    const vocab_entry *e = &b->vocab[id];
    memcpy(out, b->pool + e->off, e->len);
    if (e->word_end)
        memcpy(out + e->len, "</w>", 4);
    return (int)(e->len + (e->word_end ? 4 : 0));
}

/* ---- BPE of one word ------------------------------------------------------ */

typedef struct heap_item {
    int32_t rank, left, right; /* positions of the two symbols */
} heap_item;

static int item_less(const heap_item *a, const heap_item *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->left < b->left;
}

static void heap_push(heap_item *h, size_t *n, heap_item it)
{
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!item_less(&it, &h[p]))
            break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static heap_item heap_pop(heap_item *h, size_t *n)
{
    heap_item top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && item_less(&h[c + 1], &h[c]))
            c++;
        if (!item_less(&h[c], &last))
            break;
        h[i] = h[c];
        i = c;
    }
    h[i] = last;
    return top;
}

static int push_ids(int32_t **ids, size_t *n, size_t *cap, const int32_t *src, size_t k)
{
    if (*n + k > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < *n + k)
            nc *= 2;
        int32_t *p = realloc(*ids, nc * sizeof *p);
        if (!p)
            return -1;
        *ids = p;
        *cap = nc;
    }
    memcpy(*ids + *n, src, k * sizeof *src);
    *n += k;
    return 0;
}

/* Upstream merges, pass after pass, every occurrence (left to right, without
 * overlap) of the pair of lowest rank. The loader guarantees that a merge's
 * symbols come from merges of lower rank and that no two merges make the
 * same symbol, so a merge only creates pairs of higher rank: the passes run
 * in increasing rank, and popping (rank, position) from a heap visits the
 * same occurrences in the same order, in O(n log n) rather than O(n^2). */
static int bpe_compute(const bpe *b, const uint8_t *w, size_t len, int32_t **out, size_t *nout)
{
    int32_t *id = malloc(len * sizeof *id);
    int32_t *next = malloc(len * sizeof *next);
    int32_t *prev = malloc(len * sizeof *prev);
    heap_item *h = malloc(3 * len * sizeof *h);
    int rc = -1;
    if (!id || !next || !prev || !h)
        goto done;
    for (size_t i = 0; i < len; i++) {
        id[i] = b->byte_rank[w[i]] + (i + 1 == len ? 256 : 0);
        next[i] = i + 1 < len ? (int32_t)i + 1 : -1;
        prev[i] = (int32_t)i - 1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < len; i++) {
        int32_t r = pair_rank(b, id[i], id[i + 1]);
        if (r >= 0)
            heap_push(h, &hn, (heap_item){r, (int32_t)i, (int32_t)i + 1});
    }
    while (hn) {
        heap_item it = heap_pop(h, &hn);
        int32_t l = it.left, r = it.right;
        /* stale: a symbol was merged away or changed since the push */
        if (id[l] < 0 || id[r] < 0 || next[l] != r || pair_rank(b, id[l], id[r]) != it.rank)
            continue;
        id[l] = 512 + it.rank;
        id[r] = -1;
        next[l] = next[r];
        if (next[l] >= 0)
            prev[next[l]] = l;
        if (prev[l] >= 0) {
            int32_t k = pair_rank(b, id[prev[l]], id[l]);
            if (k >= 0)
                heap_push(h, &hn, (heap_item){k, prev[l], l});
        }
        if (next[l] >= 0) {
            int32_t k = pair_rank(b, id[l], id[next[l]]);
            if (k >= 0)
                heap_push(h, &hn, (heap_item){k, l, next[l]});
        }
    }
    size_t k = 0;
    for (int32_t i = 0; i >= 0; i = next[i])
        id[k++] = id[i];
    *out = id;
    *nout = k;
    id = NULL;
    rc = 0;
done:
    free(id);
    free(next);
    free(prev);
    free(h);
    return rc;
}

int bpe_word(bpe *b, const uint8_t *word, size_t len, int32_t **ids, size_t *n, size_t *cap)
{
    if (len == 0)
        return 0;
    cache_slot *slot = NULL;
    if (len <= CACHE_WORD) {
        slot = &b->cache[hash_bytes(word, len, 0) % CACHE_SLOTS];
        if (slot->key && slot->klen == len && !memcmp(slot->key, word, len)) {
            int32_t tmp[CACHE_WORD];
            memcpy(tmp, slot->key + len, slot->nids * sizeof *tmp);
            return push_ids(ids, n, cap, tmp, slot->nids);
        }
    }
    int32_t *res;
    size_t nres;
    if (bpe_compute(b, word, len, &res, &nres))
        return -1;
    int rc = push_ids(ids, n, cap, res, nres);
    if (rc == 0 && slot) {
        /* at most len ids (each symbol holds >= 1 byte): fits CACHE_WORD */
        uint8_t *k = malloc(len + nres * sizeof *res);
        if (k) { /* a failed cache insert only costs time */
            memcpy(k, word, len);
            memcpy(k + len, res, nres * sizeof *res);
            free(slot->key);
            slot->key = k;
            slot->klen = (uint32_t)len;
            slot->nids = (uint32_t)nres;
        }
    }
    free(res);
    return rc;
}
