/* Learning BPE merges from captions, in the CLIP merges-file format.
 *
 * A model trained on a small caption language (the synthetic world, a
 * user's own captions) does not need CLIP's 49408-token vocabulary: every
 * text embedding row and every text logit costs weights. Upstream lets
 * train_dalle.py take another tokenizer (--bpe_path); this learns one in the
 * format our tokenizer (and DALLE-pytorch's SimpleTokenizer) reads, so the
 * rest of the pipeline is unchanged: the vocabulary is the 512 byte symbols,
 * one symbol per merge, <|startoftext|> and <|endoftext|>.
 *
 * The algorithm is Sennrich et al.'s: words as they come out of the
 * tokenizer's own cleaning and split pattern, bytes shown through
 * bytes_to_unicode, "</w>" on the last symbol; repeatedly merge the most
 * frequent adjacent pair. Ties go to the pair whose strings sort first, so
 * the result depends only on the captions. A pair whose concatenation is
 * already a symbol is skipped: the merges file must never make a symbol
 * twice (our loader refuses it).
 */
#include "bpe_learn.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../error.h"
#include "../tokenizer.h"

typedef struct word {
    uint8_t *bytes; /* the pre-token, UTF-8 */
    size_t len;
    int64_t count;
    int32_t *sym; /* current symbols */
    int n_sym;
} word;

typedef struct symbol {
    char *s; /* UTF-8, with "</w>" when word-final */
    size_t len;
} symbol;

typedef struct learner {
    word *words;
    size_t n_words, cap_words;
    size_t *slots; /* open addressing over words: index + 1, 0 = empty */
    size_t n_slots;
    symbol *syms;
    int32_t n_syms, cap_syms;
    int oom;
} learner;

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int grow_slots(learner *L)
{
    size_t n = L->n_slots ? L->n_slots * 2 : 1024;
    size_t *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (size_t w = 0; w < L->n_words; w++) {
        size_t i = hash_bytes(L->words[w].bytes, L->words[w].len) & (n - 1);
        while (slots[i])
            i = (i + 1) & (n - 1);
        slots[i] = w + 1;
    }
    free(L->slots);
    L->slots = slots;
    L->n_slots = n;
    return 0;
}

/* Count one pre-token (tokenizer_split's callback). */
static int add_word(void *user, const uint8_t *bytes, size_t len, int special)
{
    learner *L = user;
    if (special || len == 0)
        return 0; /* <|startoftext|> / <|endoftext|> are whole tokens already */
    if (2 * (L->n_words + 1) > L->n_slots && grow_slots(L))
        return -1;
    size_t i = hash_bytes(bytes, len) & (L->n_slots - 1);
    for (; L->slots[i]; i = (i + 1) & (L->n_slots - 1)) {
        word *w = &L->words[L->slots[i] - 1];
        if (w->len == len && !memcmp(w->bytes, bytes, len)) {
            w->count++;
            return 0;
        }
    }
    if (L->n_words == L->cap_words) {
        size_t nc = L->cap_words ? L->cap_words * 2 : 256;
        word *p = realloc(L->words, nc * sizeof *p);
        if (!p)
            return -1;
        L->words = p;
        L->cap_words = nc;
    }
    word *w = &L->words[L->n_words];
    memset(w, 0, sizeof *w);
    w->bytes = malloc(len);
    if (!w->bytes)
        return -1;
    memcpy(w->bytes, bytes, len);
    w->len = len;
    w->count = 1;
    L->slots[i] = ++L->n_words;
    return 0;
}

static int32_t add_symbol(learner *L, char *s, size_t len)
{
    if (L->n_syms == L->cap_syms) {
        int32_t nc = L->cap_syms ? L->cap_syms * 2 : 1024;
        symbol *p = realloc(L->syms, (size_t)nc * sizeof *p);
        if (!p) {
            free(s);
            return -1;
        }
        L->syms = p;
        L->cap_syms = nc;
    }
    L->syms[L->n_syms].s = s;
    L->syms[L->n_syms].len = len;
    return L->n_syms++;
}

/* Symbols 0..255: each byte as bytes_to_unicode shows it; 256..511: the
 * same, word-final. */
static int base_symbols(learner *L)
{
    for (int end = 0; end < 2; end++)
        for (int b = 0; b < 256; b++) {
            uint8_t u[4];
            int n = utf8_put(bpe_byte_char((uint8_t)b), u);
            char *s = malloc((size_t)n + 5);
            if (!s)
                return -1;
            memcpy(s, u, (size_t)n);
            memcpy(s + n, "</w>", 5);
            if (add_symbol(L, s, (size_t)n + (end ? 4 : 0)) < 0)
                return -1;
        }
    return 0;
}

static int split_words(learner *L)
{
    for (size_t w = 0; w < L->n_words; w++) {
        word *x = &L->words[w];
        x->sym = malloc(x->len * sizeof *x->sym);
        if (!x->sym)
            return -1;
        for (size_t i = 0; i < x->len; i++)
            x->sym[i] = x->bytes[i] + (i + 1 == x->len ? 256 : 0);
        x->n_sym = (int)x->len;
    }
    return 0;
}

typedef struct pair_count {
    uint64_t key; /* left << 32 | right, + 1 so that 0 means empty */
    int64_t count;
} pair_count;

static int cmp_symbols(const learner *L, int32_t a, int32_t b)
{
    const symbol *x = &L->syms[a], *y = &L->syms[b];
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* Is the concatenation of a and b already a symbol? */
static int exists(const learner *L, int32_t a, int32_t b)
{
    size_t la = L->syms[a].len, lb = L->syms[b].len;
    for (int32_t s = 0; s < L->n_syms; s++)
        if (L->syms[s].len == la + lb && !memcmp(L->syms[s].s, L->syms[a].s, la) &&
            !memcmp(L->syms[s].s + la, L->syms[b].s, lb))
            return 1;
    return 0;
}

/* The most frequent pair (count ≥ min_count) whose merge makes a new
 * symbol; 0 when there is none, -1 when out of memory. */
static int best_pair(learner *L, int64_t min_count, int32_t *left, int32_t *right)
{
    size_t total = 0;
    for (size_t w = 0; w < L->n_words; w++)
        total += (size_t)L->words[w].n_sym;
    size_t n = 16;
    while (n < 2 * total + 16)
        n *= 2;
    pair_count *t = calloc(n, sizeof *t);
    if (!t)
        return -1;
    for (size_t w = 0; w < L->n_words; w++) {
        const word *x = &L->words[w];
        for (int i = 0; i + 1 < x->n_sym; i++) {
            uint64_t key = ((uint64_t)(uint32_t)x->sym[i] << 32 | (uint32_t)x->sym[i + 1]) + 1;
            size_t h = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (n - 1);
            while (t[h].key && t[h].key != key)
                h = (h + 1) & (n - 1);
            t[h].key = key;
            t[h].count += x->count;
        }
    }
    int found = 0;
    int64_t best = 0;
    for (size_t h = 0; h < n; h++) {
        if (!t[h].key || t[h].count < min_count || t[h].count < best)
            continue;
        int32_t a = (int32_t)((t[h].key - 1) >> 32), b = (int32_t)((t[h].key - 1) & 0xFFFFFFFFu);
        if (found && t[h].count == best) {
            int c = cmp_symbols(L, a, *left);
            if (c > 0 || (c == 0 && cmp_symbols(L, b, *right) >= 0))
                continue;
        }
        if (exists(L, a, b))
            continue;
        found = 1;
        best = t[h].count;
        *left = a;
        *right = b;
    }
    free(t);
    return found;
}

static void apply_merge(learner *L, int32_t a, int32_t b, int32_t merged)
{
    for (size_t w = 0; w < L->n_words; w++) {
        word *x = &L->words[w];
        int k = 0;
        for (int i = 0; i < x->n_sym; i++) {
            if (i + 1 < x->n_sym && x->sym[i] == a && x->sym[i + 1] == b) {
                x->sym[k++] = merged;
                i++;
            } else {
                x->sym[k++] = x->sym[i];
            }
        }
        x->n_sym = k;
    }
}

static void learner_free(learner *L)
{
    for (size_t w = 0; w < L->n_words; w++) {
        free(L->words[w].bytes);
        free(L->words[w].sym);
    }
    free(L->words);
    free(L->slots);
    for (int32_t s = 0; s < L->n_syms; s++)
        free(L->syms[s].s);
    free(L->syms);
}

/* Append "\nleft right" to the output buffer: no newline after the last
 * line, since upstream splits the file on '\n' and a trailing one would add
 * an empty merge (and an id). */
static int emit(char **buf, size_t *len, size_t *cap, const symbol *l, const symbol *r)
{
    size_t need = *len + l->len + r->len + 2 + 1;
    if (need > *cap) {
        size_t nc = *cap * 2 > need ? *cap * 2 : need;
        char *p = realloc(*buf, nc);
        if (!p)
            return -1;
        *buf = p;
        *cap = nc;
    }
    (*buf)[(*len)++] = '\n';
    memcpy(*buf + *len, l->s, l->len);
    *len += l->len;
    (*buf)[(*len)++] = ' ';
    memcpy(*buf + *len, r->s, r->len);
    *len += r->len;
    (*buf)[*len] = 0;
    return 0;
}

dalle_status bpe_learn(const char *const *texts, int64_t n_texts, int max_merges,
                       int64_t min_count, char **merges, size_t *merges_len, int *n_merges)
{
    const char *fn = "bpe_learn";
    if (!texts || n_texts < 1 || !merges || !merges_len)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: no texts or no output", fn);
    if (max_merges < 0 || max_merges > BPE_LEARN_MAX_MERGES || min_count < 1)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "%s: max_merges = %d (0..%d), min_count = %lld (>= 1)", fn, max_merges,
                          BPE_LEARN_MAX_MERGES, (long long)min_count);
    learner L = {0};
    dalle_status s = DALLE_OK;
    cpbuf t = {0};
    for (int64_t i = 0; i < n_texts && !s; i++) {
        if (!texts[i]) {
            s = dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: texts[%lld] is NULL", fn, (long long)i);
            break;
        }
        size_t len = strnlen(texts[i], TOKENIZER_MAX_TEXT_BYTES + 1);
        if (len > TOKENIZER_MAX_TEXT_BYTES) {
            s = dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: texts[%lld] is longer than %u bytes",
                           fn, (long long)i, TOKENIZER_MAX_TEXT_BYTES);
            break;
        }
        int oom = 0;
        t.n = 0;
        size_t ok = utf8_decode((const uint8_t *)texts[i], len, &t, &oom);
        if (!oom && ok != len) {
            s = dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                           "%s: texts[%lld] is not valid UTF-8 (byte %zu)", fn, (long long)i, ok);
            break;
        }
        if (oom || tokenizer_clean(&t) || tokenizer_split(&t, add_word, &L))
            s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    }
    cpbuf_free(&t);
    char *buf = NULL;
    size_t len = 0, cap = 64;
    int done = 0;
    if (!s && (base_symbols(&L) || split_words(&L) || !(buf = malloc(cap))))
        s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    if (!s)
        len = (size_t)snprintf(buf, cap, "#version: 0.2 (libdalle bpe_learn)");
    while (!s && done < max_merges) {
        int32_t a = 0, b = 0;
        int found = best_pair(&L, min_count, &a, &b);
        if (found <= 0) {
            if (found < 0)
                s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            break;
        }
        size_t la = L.syms[a].len, lb = L.syms[b].len;
        char *m = malloc(la + lb + 1);
        int32_t merged = -1;
        if (m) {
            memcpy(m, L.syms[a].s, la);
            memcpy(m + la, L.syms[b].s, lb);
            m[la + lb] = 0;
            merged = add_symbol(&L, m, la + lb);
        }
        if (merged < 0 || emit(&buf, &len, &cap, &L.syms[a], &L.syms[b])) {
            s = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
            break;
        }
        apply_merge(&L, a, b, merged);
        done++;
    }
    learner_free(&L);
    if (s) {
        free(buf);
        return s;
    }
    *merges = buf;
    *merges_len = len;
    if (n_merges)
        *n_merges = done;
    return DALLE_OK;
}
