/* From a caption to token ids, as SimpleTokenizer.encode:
 *
 *   text = whitespace_clean(basic_clean(text)).lower()
 *   for token in re.findall(pat, text): ids += bpe(bytes of token)
 *
 * basic_clean = ftfy.fix_text, html.unescape twice, strip();
 * whitespace_clean = re.sub(r'\s+', ' ', text).strip(), where `re` is the
 * `regex` module; pat (IGNORECASE) =
 *   <\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|
 *   [\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+
 */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer.h"

/* str.isspace(), used by str.strip(). */
static int py_isspace(uint32_t c)
{
    return (c >= 9 && c <= 13) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

/* The regex module's \s: str.isspace() without U+001C..U+001F. */
static int re_space(uint32_t c) { return py_isspace(c) && !(c >= 0x1C && c <= 0x1F); }

static void strip(cpbuf *t)
{
    size_t a = 0, b = t->n;
    while (a < b && py_isspace(t->v[a]))
        a++;
    while (b > a && py_isspace(t->v[b - 1]))
        b--;
    if (a > 0)
        memmove(t->v, t->v + a, (b - a) * sizeof *t->v);
    t->n = b - a;
}

static void whitespace_clean(cpbuf *t)
{
    size_t w = 0;
    for (size_t i = 0; i < t->n;) {
        if (re_space(t->v[i])) {
            while (i < t->n && re_space(t->v[i]))
                i++;
            t->v[w++] = ' ';
        } else {
            t->v[w++] = t->v[i++];
        }
    }
    t->n = w;
    strip(t);
}

/* ---- str.lower() ---------------------------------------------------------- */

static int category(uint32_t c) { return utf8proc_category((utf8proc_int32_t)c); }

/* Python's Cased: Lu, Ll, Lt, and (approximately) Other_Lowercase /
 * Other_Uppercase through "has a case mapping". */
static int cased(uint32_t c)
{
    int k = category(c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL ||
           k == UTF8PROC_CATEGORY_LT ||
           (uint32_t)utf8proc_tolower((utf8proc_int32_t)c) != c ||
           (uint32_t)utf8proc_toupper((utf8proc_int32_t)c) != c;
}

/* Case_Ignorable: Mn, Me, Cf, Lm, Sk, and Word_Break MidLetter, MidNumLet,
 * Single_Quote. */
static int case_ignorable(uint32_t c)
{
    int k = category(c);
    if (k == UTF8PROC_CATEGORY_MN || k == UTF8PROC_CATEGORY_ME || k == UTF8PROC_CATEGORY_CF ||
        k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_SK)
        return 1;
    static const uint32_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,
                                   0x5F4,  0x2018, 0x2019, 0x2024, 0x2027, 0xFE13,
                                   0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
        if (mid[i] == c)
            return 1;
    return 0;
}

/* Python lowers capital sigma to final sigma after a cased letter and not
 * before one (skipping case-ignorable characters both ways). */
static int final_sigma(const uint32_t *t, size_t n, size_t i)
{
    size_t j = i;
    while (j > 0 && case_ignorable(t[j - 1]))
        j--;
    if (j == 0 || !cased(t[j - 1]))
        return 0;
    j = i + 1;
    while (j < n && case_ignorable(t[j]))
        j++;
    return j == n || !cased(t[j]);
}

/* str.lower(): full lower-case mapping. Only U+0130 lowers to two
 * characters; the rest is utf8proc's simple mapping. */
static int lower(cpbuf *t)
{
    cpbuf out = {0};
    if (cpbuf_reserve(&out, t->n + 8))
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        int oom;
        if (c == 0x130)
            oom = cpbuf_push(&out, 'i') || cpbuf_push(&out, 0x307);
        else if (c == 0x3A3)
            oom = cpbuf_push(&out, final_sigma(t->v, t->n, i) ? 0x3C2 : 0x3C3);
        else
            oom = cpbuf_push(&out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)c));
        if (oom) {
            cpbuf_free(&out);
            return -1;
        }
    }
    cpbuf_free(t);
    *t = out;
    return 0;
}

int tokenizer_clean(cpbuf *t)
{
    if (ftfy_fix_text(t) || html_unescape(t) || html_unescape(t))
        return -1;
    strip(t);
    whitespace_clean(t);
    return lower(t);
}

/* ---- the split pattern ---------------------------------------------------- */

static int is_letter(uint32_t c)
{
    int k = category(c);
    return k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
}

static int is_number(uint32_t c)
{
    int k = category(c);
    return k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO;
}

/* A letter of a contraction under IGNORECASE (simple case folding): the
 * text is lower-case already, but U+017F (long s) still folds to 's'. */
static int folds_to(uint32_t c, char want) { return c == (uint32_t)want || (want == 's' && c == 0x17F); }

static int starts_with(const uint32_t *t, size_t n, size_t i, const char *lit)
{
    for (size_t k = 0; lit[k]; k++)
        if (i + k >= n || t[i + k] != (uint32_t)(unsigned char)lit[k])
            return 0;
    return 1;
}

/* Length of the match at t[i], 0 if nothing matches there (whitespace);
 * *special = 1 or 2 for the two special tokens. */
static size_t match_at(const uint32_t *t, size_t n, size_t i, int *special)
{
    *special = 0;
    if (starts_with(t, n, i, "<|startoftext|>")) {
        *special = 1;
        return 15;
    }
    if (starts_with(t, n, i, "<|endoftext|>")) {
        *special = 2;
        return 13;
    }
    if (t[i] == '\'' && i + 1 < n) {
        uint32_t a = t[i + 1];
        if (folds_to(a, 's') || folds_to(a, 't') || folds_to(a, 'm') || folds_to(a, 'd'))
            return 2;
        if (i + 2 < n && ((folds_to(a, 'r') && folds_to(t[i + 2], 'e')) ||
                          (folds_to(a, 'v') && folds_to(t[i + 2], 'e')) ||
                          (folds_to(a, 'l') && folds_to(t[i + 2], 'l'))))
            return 3;
    }
    if (is_letter(t[i])) {
        size_t k = i;
        while (k < n && is_letter(t[k]))
            k++;
        return k - i;
    }
    if (is_number(t[i]))
        return 1;
    /* [^\s\p{L}\p{N}]+ under IGNORECASE: U+0345 (Mn) is excluded, because
       its case variants (U+0399, U+03B9) are letters. */
    size_t k = i;
    while (k < n && !re_space(t[k]) && !is_letter(t[k]) && !is_number(t[k]) && t[k] != 0x345)
        k++;
    return k - i;
}

int tokenizer_split(const cpbuf *t,
                    int (*each)(void *user, const uint8_t *word, size_t len, int special),
                    void *user)
{
    uint8_t *word = malloc(t->n * 4 + 1);
    if (!word)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < t->n && !rc;) {
        int special;
        size_t len = match_at(t->v, t->n, i, &special);
        if (len == 0) {
            i++;
            continue;
        }
        size_t wl = 0;
        if (!special)
            for (size_t k = i; k < i + len; k++)
                wl += (size_t)utf8_put(t->v[k], word + wl);
        rc = each(user, word, wl, special);
        i += len;
    }
    free(word);
    return rc;
}

typedef struct encode_state {
    bpe *b;
    int32_t **ids;
    size_t *n, *cap;
} encode_state;

static int encode_one(void *user, const uint8_t *word, size_t len, int special)
{
    encode_state *e = user;
    if (!special)
        return bpe_word(e->b, word, len, e->ids, e->n, e->cap);
    if (*e->n == *e->cap) {
        size_t nc = *e->cap ? *e->cap * 2 : 64;
        int32_t *p = realloc(*e->ids, nc * sizeof *p);
        if (!p)
            return -1;
        *e->ids = p;
        *e->cap = nc;
    }
    (*e->ids)[(*e->n)++] = special == 1 ? bpe_sot(e->b) : bpe_eot(e->b);
    return 0;
}

int tokenizer_split_encode(bpe *b, const cpbuf *t, int32_t **ids, size_t *n, size_t *cap)
{
    encode_state e = {b, ids, n, cap};
    return tokenizer_split(t, encode_one, &e);
}
