/* See json_mini.h. Recursive descent; errors make json_load return NULL. */
#include "json_mini.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct parser {
    const char *s, *end;
    int bad;
} parser;

static void skip_ws(parser *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t'))
        p->s++;
}

static void put_utf8(char *out, size_t *n, unsigned c)
{
    if (c < 0x80) {
        out[(*n)++] = (char)c;
    } else if (c < 0x800) {
        out[(*n)++] = (char)(0xC0 | (c >> 6));
        out[(*n)++] = (char)(0x80 | (c & 0x3F));
    } else if (c < 0x10000) {
        out[(*n)++] = (char)(0xE0 | (c >> 12));
        out[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (c & 0x3F));
    } else {
        out[(*n)++] = (char)(0xF0 | (c >> 18));
        out[(*n)++] = (char)(0x80 | ((c >> 12) & 0x3F));
        out[(*n)++] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[(*n)++] = (char)(0x80 | (c & 0x3F));
    }
}

static int hex4(parser *p, unsigned *v)
{
    if (p->end - p->s < 4)
        return -1;
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = *p->s++;
        *v = *v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    return 0;
}

static char *parse_string(parser *p, size_t *len)
{
    if (p->s >= p->end || *p->s != '"')
        return p->bad = 1, NULL;
    p->s++;
    char *out = malloc((size_t)(p->end - p->s) + 1); /* escapes never grow */
    size_t n = 0;
    while (out && p->s < p->end && *p->s != '"') {
        char c = *p->s++;
        if (c != '\\') {
            out[n++] = c;
            continue;
        }
        if (p->s >= p->end)
            break;
        c = *p->s++;
        unsigned u, lo;
        switch (c) {
        case 'n': out[n++] = '\n'; break;
        case 't': out[n++] = '\t'; break;
        case 'r': out[n++] = '\r'; break;
        case 'b': out[n++] = '\b'; break;
        case 'f': out[n++] = '\f'; break;
        case 'u':
            if (hex4(p, &u))
                goto bad;
            if (u >= 0xD800 && u < 0xDC00 && p->end - p->s >= 6 && p->s[0] == '\\' &&
                p->s[1] == 'u') {
                p->s += 2;
                if (hex4(p, &lo))
                    goto bad;
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
            }
            put_utf8(out, &n, u);
            break;
        default: out[n++] = c;
        }
    }
    if (!out || p->s >= p->end)
        goto bad;
    p->s++;
    out[n] = '\0';
    *len = n;
    return out;
bad:
    free(out);
    p->bad = 1;
    return NULL;
}

static void parse_value(parser *p, json *j);

static void parse_list(parser *p, json *j, int object)
{
    char close = object ? '}' : ']';
    size_t cap = 0;
    p->s++;
    skip_ws(p);
    if (p->s < p->end && *p->s == close) {
        p->s++;
        return;
    }
    while (!p->bad) {
        if (j->len == cap) {
            cap = cap ? cap * 2 : 8;
            json *ni = realloc(j->items, cap * sizeof *ni);
            if (ni)
                j->items = ni;
            char **nk = object && ni ? realloc(j->keys, cap * sizeof *nk) : NULL;
            if (nk)
                j->keys = nk;
            if (!ni || (object && !nk)) {
                p->bad = 1;
                return;
            }
        }
        json *item = &j->items[j->len];
        memset(item, 0, sizeof *item);
        skip_ws(p);
        if (object) {
            size_t kl;
            j->keys[j->len] = parse_string(p, &kl);
            skip_ws(p);
            if (p->bad || p->s >= p->end || *p->s != ':') {
                p->bad = 1;
                j->len += j->keys[j->len] != NULL;
                return;
            }
            p->s++;
        }
        j->len++;
        parse_value(p, item);
        skip_ws(p);
        if (p->s < p->end && *p->s == ',') {
            p->s++;
            continue;
        }
        if (p->s < p->end && *p->s == close) {
            p->s++;
            return;
        }
        p->bad = 1;
    }
}

static void parse_value(parser *p, json *j)
{
    skip_ws(p);
    if (p->s >= p->end) {
        p->bad = 1;
        return;
    }
    char c = *p->s;
    if (c == '{' || c == '[') {
        j->type = c == '{' ? JSON_OBJECT : JSON_ARRAY;
        parse_list(p, j, c == '{');
    } else if (c == '"') {
        j->type = JSON_STRING;
        j->string = parse_string(p, &j->len);
    } else if (!strncmp(p->s, "true", 4) || !strncmp(p->s, "false", 5)) {
        j->type = JSON_BOOL;
        j->number = c == 't';
        p->s += c == 't' ? 4 : 5;
    } else if (!strncmp(p->s, "null", 4)) {
        j->type = JSON_NULL;
        p->s += 4;
    } else {
        char *e;
        j->type = JSON_NUMBER;
        j->number = strtod(p->s, &e);
        if (e == p->s)
            p->bad = 1;
        p->s = e;
    }
}

static void free_inner(json *j)
{
    for (size_t i = 0; (j->type == JSON_ARRAY || j->type == JSON_OBJECT) && i < j->len; i++) {
        free_inner(&j->items[i]);
        if (j->keys)
            free(j->keys[i]);
    }
    free(j->items);
    free(j->keys);
    free(j->string);
}

json *json_load(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    parser p = {buf, buf + size, 0};
    json *j = calloc(1, sizeof *j);
    if (j)
        parse_value(&p, j);
    free(buf);
    if (j && p.bad) {
        json_free(j);
        return NULL;
    }
    return j;
}

void json_free(json *j)
{
    if (!j)
        return;
    free_inner(j);
    free(j);
}

const json *json_get(const json *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (obj->keys[i] && !strcmp(obj->keys[i], key))
            return &obj->items[i];
    return NULL;
}
