/* A tiny JSON reader for the tests (strings.json of the golden tokenizer
 * case): objects, arrays, strings (with \u escapes and surrogate pairs),
 * integers, true/false/null. Not for untrusted input beyond the tests. */
#ifndef DALLE_TESTS_JSON_MINI_H
#define DALLE_TESTS_JSON_MINI_H

#include <stddef.h>

typedef enum json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json {
    json_type type;
    double number;        /* JSON_NUMBER, JSON_BOOL */
    char *string;         /* JSON_STRING: UTF-8, NUL-terminated; object keys */
    size_t len;           /* string length in bytes, or number of items */
    struct json *items;   /* JSON_ARRAY / JSON_OBJECT values */
    char **keys;          /* JSON_OBJECT */
} json;

/* Parse a whole file; NULL on error. */
json *json_load(const char *path);
void json_free(json *j);
/* Member of an object, or NULL. */
const json *json_get(const json *obj, const char *key);

#endif
