/* The part of ftfy.fix_text (ftfy 6.3, default configuration) that changes
 * real captions; docs/tokenizer.md lists what is implemented and what is
 * left out. The order of the steps and the repeat-until-unchanged loop are
 * ftfy's (fix_and_explain): a step can expose work for an earlier one, as
 * "&amp;lt;" or mojibake inside an entity. */
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "tokenizer.h"

/* ftfy's loop always ends on real text; this bounds it on adversarial text
 * (each pass is O(n)), at the cost of leaving a fix undone. */
#define MAX_PASSES 16

/* Windows-1252 for bytes 0x80..0x9F; ftfy's "sloppy" variant keeps the
 * five undefined bytes as the same-numbered C1 code points. 0xA0..0xFF are
 * Latin-1. */
static const uint16_t cp1252_80[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
    0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
    0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
    0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
};

/* The byte a code point encodes to in sloppy-windows-1252, or -1. Byte 0x1A
 * is excluded, as ftfy's possible_encoding() does (it stands for U+FFFD in
 * the sloppy codecs, which this subset does not reproduce). */
static int sloppy1252_byte(uint32_t c)
{
    if (c < 0x80)
        return c == 0x1A ? -1 : (int)c;
    if (c >= 0xA0 && c <= 0xFF)
        return (int)c;
    for (int i = 0; i < 32; i++)
        if (cp1252_80[i] == c)
            return 0x80 + i;
    return -1;
}

/* ---- fix_encoding (subset) --------------------------------------------- */

/* A stand-in for ftfy's is_bad(): a C1 control, or a character that would
 * be a UTF-8 lead byte (C2..F4) followed by one that would be a
 * continuation byte (80..BF), both read as Latin-1 or Windows-1252. That
 * adjacency is what all of ftfy's UTF-8 mojibake patterns have in common. */
static int looks_bad(const cpbuf *t)
{
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        if (c >= 0x80 && c <= 0x9F)
            return 1;
        if (i + 1 < t->n) {
            int a = c <= 0xFF ? (int)c : sloppy1252_byte(c);
            uint32_t d = t->v[i + 1];
            int b = d <= 0xFF ? (int)d : sloppy1252_byte(d);
            if (a >= 0xC2 && a <= 0xF4 && b >= 0x80 && b <= 0xBF)
                return 1;
        }
    }
    return 0;
}

/* Encode in latin-1 (sloppy = 0) or sloppy-windows-1252 (1) and decode the
 * bytes as UTF-8. 1: replaced; 0: not possible; -1: out of memory. */
static int try_redecode(cpbuf *t, int sloppy)
{
    uint8_t *bytes = malloc(t->n ? t->n : 1);
    if (!bytes)
        return -1;
    for (size_t i = 0; i < t->n; i++) {
        uint32_t c = t->v[i];
        int b = sloppy ? sloppy1252_byte(c) : (c <= 0xFF ? (int)c : -1);
        if (b < 0) {
            free(bytes);
            return 0;
        }
        bytes[i] = (uint8_t)b;
    }
    if (utf8_decode(bytes, t->n, NULL, NULL) != t->n) {
        free(bytes);
        return 0;
    }
    size_t n = t->n;
    t->n = 0;
    int oom = 0;
    utf8_decode(bytes, n, t, &oom); /* fewer code points: room is there */
    free(bytes);
    return oom ? -1 : 1;
}

/* ftfy.fix_encoding: one step at a time until nothing changes. */
static int fix_encoding(cpbuf *t)
{
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        int ascii = 1;
        for (size_t i = 0; i < t->n && ascii; i++)
            ascii = t->v[i] < 0x80;
        if (ascii || !looks_bad(t))
            return 0;
        int r = try_redecode(t, 0);
        if (r == 0)
            r = try_redecode(t, 1);
        if (r <= 0)
            return r;
    }
    return 0;
}

/* ---- the character-level fixers ------------------------------------------ */

/* fix_c1_controls: a C1 control is read as its Windows-1252 character. */
static uint32_t fix_c1(uint32_t c) { return c >= 0x80 && c <= 0x9F ? cp1252_80[c - 0x80] : c; }

/* fix_latin_ligatures: ftfy's list (Latin only; other scripts' ligatures
 * are meaningful). Returns the replacement, or NULL. */
static const char *latin_ligature(uint32_t c)
{
    switch (c) {
    case 0x0132: return "IJ";
    case 0x0133: return "ij";
    case 0x0149: return "\xCA\xBCn"; /* U+02BC n */
    case 0x01F1: return "DZ";
    case 0x01F2: return "Dz";
    case 0x01F3: return "dz";
    case 0x01C4: return "D\xC5\xBD"; /* DŽ */
    case 0x01C5: return "D\xC5\xBE"; /* Dž */
    case 0x01C6: return "d\xC5\xBE"; /* dž */
    case 0x01C7: return "LJ";
    case 0x01C8: return "Lj";
    case 0x01C9: return "lj";
    case 0x01CA: return "NJ";
    case 0x01CB: return "Nj";
    case 0x01CC: return "nj";
    case 0xFB00: return "ff";
    case 0xFB01: return "fi";
    case 0xFB02: return "fl";
    case 0xFB03: return "ffi";
    case 0xFB04: return "ffl";
    case 0xFB05: return "\xC5\xBFt"; /* ſt */
    case 0xFB06: return "st";
    default: return NULL;
    }
}

/* fix_character_width: U+3000 and the halfwidth/fullwidth forms
 * U+FF01..U+FFEF become their NFKC form. 1 if c was replaced. */
static int fix_width(uint32_t c, cpbuf *out, int *oom)
{
    if (c == 0x3000)
        return *oom |= cpbuf_push(out, ' '), 1;
    if (c < 0xFF01 || c > 0xFFEF)
        return 0;
    cpbuf one = {0};
    if (cpbuf_push(&one, c) || unicode_normalize(&one, 1)) {
        cpbuf_free(&one);
        *oom = 1;
        return 1;
    }
    *oom |= cpbuf_append(out, one.v, one.n);
    cpbuf_free(&one);
    return 1;
}

/* uncurl_quotes */
static uint32_t uncurl(uint32_t c)
{
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B))
        return '\'';
    if (c >= 0x201C && c <= 0x201F)
        return '"';
    return c;
}

/* remove_control_chars: the controls ftfy drops (it keeps \t \n \f \r, the
 * C1 range, joiners, bidi controls and tags). */
static int dropped_control(uint32_t c)
{
    return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F ||
           (c >= 0x206A && c <= 0x206F) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

static int is_decimal(uint32_t c)
{
    return utf8proc_category((utf8proc_int32_t)c) == UTF8PROC_CATEGORY_ND;
}

/* remove_terminal_escapes: ESC '[' (\d|;)* [a-zA-Z], \d being any decimal
 * digit as in Python's re. Returns the length of the escape at t[i], or 0. */
static size_t terminal_escape(const uint32_t *t, size_t n, size_t i)
{
    if (t[i] != 0x1B || i + 1 >= n || t[i + 1] != '[')
        return 0;
    size_t k = i + 2;
    while (k < n && (t[k] == ';' || is_decimal(t[k])))
        k++;
    if (k < n && ((t[k] >= 'a' && t[k] <= 'z') || (t[k] >= 'A' && t[k] <= 'Z')))
        return k + 1 - i;
    return 0;
}

/* One pass of the fixers after fix_encoding, in ftfy's order. Each is a
 * separate sweep because each sees the output of the one before. */
static int apply_char_fixers(cpbuf *t)
{
    cpbuf out = {0};
    int oom = 0;
    /* fix_c1_controls, fix_latin_ligatures, fix_character_width, uncurl_quotes:
       character to characters. What one gives, the later ones of this group
       only change through uncurl (c1 gives curly quotes, 'ŉ' gives U+02BC),
       so one sweep with uncurl last equals ftfy's four sweeps. */
    for (size_t i = 0; i < t->n && !oom; i++) {
        uint32_t c = fix_c1(t->v[i]);
        const char *lig = latin_ligature(c);
        size_t before = out.n;
        if (lig)
            oom |= cpbuf_append_utf8(&out, lig, strlen(lig));
        else if (!fix_width(c, &out, &oom))
            oom |= cpbuf_push(&out, c);
        for (size_t k = before; k < out.n; k++)
            out.v[k] = uncurl(out.v[k]); /* "ŉ" gives U+02BC, straightened */
    }
    if (oom) {
        cpbuf_free(&out);
        return -1;
    }
    /* fix_line_breaks, then remove_terminal_escapes, then
       remove_control_chars (escapes first: ESC is itself a dropped control) */
    size_t w = 0;
    for (size_t i = 0; i < out.n; i++) {
        uint32_t c = out.v[i];
        if (c == '\r' && i + 1 < out.n && out.v[i + 1] == '\n')
            continue; /* \r\n -> \n: drop the \r */
        if (c == '\r' || c == 0x2028 || c == 0x2029 || c == 0x85)
            c = '\n';
        out.v[w++] = c;
    }
    out.n = w;
    w = 0;
    for (size_t i = 0; i < out.n;) {
        size_t esc = terminal_escape(out.v, out.n, i);
        if (esc) {
            i += esc;
            continue;
        }
        out.v[w++] = out.v[i++];
    }
    out.n = w;
    w = 0;
    for (size_t i = 0; i < out.n; i++)
        if (!dropped_control(out.v[i]))
            out.v[w++] = out.v[i];
    out.n = w;
    cpbuf_free(t);
    *t = out;
    return 0;
}

static int same(const cpbuf *a, const cpbuf *b)
{
    return a->n == b->n && (a->n == 0 || !memcmp(a->v, b->v, a->n * sizeof *a->v));
}

/* fix_and_explain on one segment. */
static int fix_segment(cpbuf *t, int unescape)
{
    cpbuf orig = {0};
    int rc = 0;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        orig.n = 0;
        if (cpbuf_append(&orig, t->v, t->n)) {
            rc = -1;
            break;
        }
        if ((unescape && ftfy_unescape_html(t)) || fix_encoding(t) < 0 ||
            apply_char_fixers(t) || unicode_normalize(t, 0)) {
            rc = -1;
            break;
        }
        if (same(t, &orig))
            break;
    }
    cpbuf_free(&orig);
    return rc;
}

int ftfy_fix_text(cpbuf *text)
{
    cpbuf out = {0}, seg = {0};
    int unescape = 1, rc = 0;
    size_t pos = 0;
    while (pos < text->n) {
        /* segments end after each '\n' (TOKENIZER_MAX_TEXT_BYTES keeps
           every segment under ftfy's 10^6 code point cut) */
        size_t end = pos;
        while (end < text->n && text->v[end] != '\n')
            end++;
        if (end < text->n)
            end++;
        seg.n = 0;
        if (cpbuf_append(&seg, text->v + pos, end - pos)) {
            rc = -1;
            break;
        }
        /* unescape_html="auto": off from the first segment holding '<' on,
           for that segment and every later one */
        for (size_t i = 0; i < seg.n && unescape; i++)
            if (seg.v[i] == '<')
                unescape = 0;
        if (fix_segment(&seg, unescape) || cpbuf_append(&out, seg.v, seg.n)) {
            rc = -1;
            break;
        }
        pos = end;
    }
    cpbuf_free(&seg);
    if (rc) {
        cpbuf_free(&out);
        return -1;
    }
    cpbuf_free(text);
    *text = out;
    return 0;
}
