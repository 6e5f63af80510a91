/* Tests of the bundle reader and writer (lib/bundle_read.c, lib/bundle_write.c)
 * against docs/bundle-format.md: a round trip through every metadata type,
 * dtype and codec, every class of malformed file (each with its exact error
 * code and a piece of its message), and the writer's argument checks.
 *
 * Prints one line per check; exits 1 if any failed.
 *
 *     test_bundle                       run the tests
 *     test_bundle --write-corpus DIR    write the fuzzer's seed bundles to DIR
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "bundle.h"
#include "crc32.h"
#include "dalle/dalle.h"

static int n_checks, n_failed;
static char tmpdir[512];

static void check(int ok, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    n_checks++;
    if (!ok)
        n_failed++;
    printf("%s - ", ok ? "ok  " : "FAIL");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* status == want and the last error contains substr. */
static void check_status(dalle_status st, dalle_status want, const char *substr,
                         const char *label)
{
    const char *msg = st == DALLE_OK ? "" : dalle_last_error();
    int ok = st == want && (!substr || strstr(msg, substr) != NULL);
    check(ok, "%s: %s%s%s%s", label, dalle_strerror(st), *msg ? " (" : "", msg, *msg ? ")" : "");
    if (!ok)
        printf("       expected %s with message containing '%s'\n", dalle_strerror(want),
               substr ? substr : "");
}

static char *tmp_path(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 1024, "%s/%s", tmpdir, name);
    return p;
}

static unsigned char *read_all(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = (size_t)n;
    return buf;
}

static int write_all_file(const char *path, const void *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    int ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

/* ------------------------------------------------------------------------ */
/* Little-endian access and navigation inside a bundle                      */
/* ------------------------------------------------------------------------ */

static uint16_t get16(const unsigned char *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(unsigned char *p, uint16_t v)
{
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}
static void put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> 8 * i);
}
static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> 8 * i);
}

enum {
    H_FILE_SIZE = 16, H_META_OFF = 24, H_META_SIZE = 32, H_META_COUNT = 40, H_META_CRC = 44,
    H_DIR_OFF = 48, H_DIR_SIZE = 56, H_TCOUNT = 64, H_DIR_CRC = 68, H_DATA_OFF = 72,
    H_DATA_SIZE = 80, H_CRC = 124
};

/* Recompute the metadata, directory and header crc32s (where the sections
   lie inside size). */
static void fix_crcs(unsigned char *b, size_t size)
{
    if (size < 128)
        return;
    uint64_t mo = get64(b + H_META_OFF), ms = get64(b + H_META_SIZE);
    uint64_t dof = get64(b + H_DIR_OFF), ds = get64(b + H_DIR_SIZE);
    if (mo <= size && ms <= size - mo)
        put32(b + H_META_CRC, crc32_ieee(0, b + mo, (size_t)ms));
    if (dof <= size && ds <= size - dof)
        put32(b + H_DIR_CRC, crc32_ieee(0, b + dof, (size_t)ds));
    put32(b + H_CRC, crc32_ieee(0, b, 124));
}

typedef struct dir_loc {
    size_t start, name, dtype, ndim, codec, reserved, dims, loc, end;
} dir_loc;

/* The directory entry of tensor `name` in a well-formed bundle. */
static int find_dir(const unsigned char *b, const char *name, dir_loc *l)
{
    size_t p = (size_t)get64(b + H_DIR_OFF);
    uint32_t n = get32(b + H_TCOUNT);
    for (uint32_t i = 0; i < n; i++) {
        dir_loc e;
        e.start = p;
        size_t nl = get16(b + p);
        e.name = p + 2;
        e.dtype = e.name + nl;
        e.ndim = e.dtype + 1;
        e.codec = e.dtype + 2;
        e.reserved = e.dtype + 3;
        e.dims = e.dtype + 4;
        e.loc = e.dims + 8 * (size_t)b[e.ndim];
        e.end = e.loc + (b[e.codec] == 2 ? 12 : 20);
        if (nl == strlen(name) && memcmp(b + e.name, name, nl) == 0) {
            *l = e;
            return 1;
        }
        p = e.end;
    }
    return 0;
}

typedef struct meta_loc {
    size_t start, key, type, value;
} meta_loc;

static int find_meta_entry(const unsigned char *b, const char *key, meta_loc *l)
{
    size_t p = (size_t)get64(b + H_META_OFF);
    uint32_t n = get32(b + H_META_COUNT);
    for (uint32_t i = 0; i < n; i++) {
        meta_loc e;
        e.start = p;
        size_t kl = get16(b + p);
        e.key = p + 2;
        e.type = e.key + kl;
        e.value = e.type + 1;
        size_t vs = 0;
        switch (b[e.type]) {
        case 1: case 2: vs = 8; break;
        case 3: vs = 1; break;
        case 4: vs = 4 + get32(b + e.value); break;
        case 5: case 6: vs = 4 + 8 * (size_t)get32(b + e.value); break;
        case 7: {
            uint32_t c = get32(b + e.value);
            vs = 4;
            for (uint32_t k = 0; k < c; k++)
                vs += 4 + get32(b + e.value + vs);
            break;
        }
        }
        if (kl == strlen(key) && memcmp(b + e.key, key, kl) == 0) {
            *l = e;
            return 1;
        }
        p = e.value + vs;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Test bundles                                                             */
/* ------------------------------------------------------------------------ */

static const float small_a[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.5f, 1e-3f};
static const uint16_t small_b[4] = {0x3C00, 0xC000, 0x3555, 0x0001}; /* f16 */
static const int32_t small_s = -123456;

/* A small bundle: kind dvae, a few keys, 'a' f32 [2,3] raw, 'b' f16 [4]
   zstd, 'c' alias of 'a' [2] at element 1, 'd' alias of 'a' [1] at 5, 's' an
   i32 scalar raw, 'z' u8 [8] zstd. */
static int make_small(const char *path)
{
    dalle_bundle_writer *w;
    if (dalle_bundle_writer_create("dvae", &w))
        return 0;
    int64_t da[2] = {2, 3}, db[1] = {4}, dc[1] = {2}, dd[1] = {1}, dz[1] = {8};
    static const unsigned char z[8] = {1, 1, 1, 1, 2, 2, 2, 2};
    int ok = !dalle_bundle_writer_set_i64(w, "vae.k1", 7) &&
             !dalle_bundle_writer_set_i64(w, "vae.k2", 8) &&
             !dalle_bundle_writer_set_bool(w, "vae.flag", 1) &&
             !dalle_bundle_writer_set_str(w, "vae.name", "hello") &&
             !dalle_bundle_writer_add_tensor(w, "a", DALLE_DTYPE_F32, 2, da, small_a, 0) &&
             !dalle_bundle_writer_add_tensor(w, "b", DALLE_DTYPE_F16, 1, db, small_b, 3) &&
             !dalle_bundle_writer_add_alias(w, "c", "a", 1, dc, 1) &&
             !dalle_bundle_writer_add_alias(w, "d", "a", 1, dd, 5) &&
             !dalle_bundle_writer_add_tensor(w, "s", DALLE_DTYPE_I32, 0, NULL, &small_s, 0) &&
             !dalle_bundle_writer_add_tensor(w, "z", DALLE_DTYPE_U8, 1, dz, z, 1) &&
             !dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return ok;
}

/* Every metadata type (for the round trip and the fuzzer's corpus). */
static int set_all_meta(dalle_bundle_writer *w)
{
    static const int64_t ia[3] = {1, -2, INT64_MAX};
    static const double fa[2] = {0.5, -1e300};
    static const char *const sa[3] = {"a", "", "\xc3\xbc\xe2\x9c\x93"};
    return !dalle_bundle_writer_set_str(w, "general.source", "test_bundle.c") &&
           !dalle_bundle_writer_set_i64(w, "dalle.dim", 512) &&
           !dalle_bundle_writer_set_i64(w, "dalle.neg", INT64_MIN) &&
           !dalle_bundle_writer_set_f64(w, "dalle.attn_dropout", 0.125) &&
           !dalle_bundle_writer_set_bool(w, "dalle.reversible", 0) &&
           !dalle_bundle_writer_set_bool(w, "dalle.shift_tokens", 1) &&
           !dalle_bundle_writer_set_str(w, "vae.kind", "dvae") &&
           !dalle_bundle_writer_set_str(w, "dalle.empty", "") &&
           !dalle_bundle_writer_set_str(w, "dalle.utf8", "h\xc3\xa9llo \xe2\x9c\x93") &&
           !dalle_bundle_writer_set_i64_array(w, "dalle.attn_types", ia, 3) &&
           !dalle_bundle_writer_set_i64_array(w, "dalle.none", NULL, 0) &&
           !dalle_bundle_writer_set_f64_array(w, "dalle.f64s", fa, 2) &&
           !dalle_bundle_writer_set_str_array(w, "dalle.strs", sa, 3) &&
           !dalle_bundle_writer_set_i64(w, "dalle.as_float", 3);
}

/* ------------------------------------------------------------------------ */
/* Round trip                                                               */
/* ------------------------------------------------------------------------ */

#define BIG_N ((size_t)3 << 20)

typedef struct rt_tensor {
    const char *name;
    dalle_dtype dtype;
    int ndim;
    int64_t dims[8];
    int level;        /* -1: alias */
    const char *target;
    int64_t offset;
    const void *data; /* for non-aliases */
    size_t elem;
} rt_tensor;

static float f32_data[15];
static uint16_t f16_data[10] = {0x3C00, 0xC000, 0x3555, 0x0001, 0x7BFF,
                                0x7C00, 0xFC00, 0x8000, 0x0400, 0x03FF};
static const float f16_expect[10] = {1.0f, -2.0f, 0.333251953125f, 5.9604644775390625e-08f,
                                     65504.0f, INFINITY, -INFINITY, -0.0f,
                                     6.103515625e-05f, 6.097555160522461e-05f};
static uint16_t bf16_data[4] = {0x3F80, 0xC0A0, 0x3E80, 0x4049};
static const float bf16_expect[4] = {1.0f, -5.0f, 0.25f, 3.140625f};
static int8_t i8_data[7] = {-128, -1, 0, 1, 2, 127, 5};
static uint8_t u8_data[1000];
static int32_t i32_scalar = 0x7FFFFFFF;
static int64_t i64_data[8] = {INT64_MIN, -1, 0, 1, 2, 3, INT64_MAX, 42};
static float f32_8d[16];
static unsigned char *big_rand;
static float *big_f32;

static rt_tensor rt_tensors[] = {
    {"tok_emb.weight", DALLE_DTYPE_F32, 2, {3, 5}, 0, NULL, 0, f32_data, 4},
    {"layers/0:attn.w", DALLE_DTYPE_F32, 2, {3, 5}, 5, NULL, 0, f32_data, 4},
    {"half", DALLE_DTYPE_F16, 1, {10}, 0, NULL, 0, f16_data, 2},
    {"brain", DALLE_DTYPE_BF16, 2, {2, 2}, 9, NULL, 0, bf16_data, 2},
    {"i8", DALLE_DTYPE_I8, 1, {7}, 0, NULL, 0, i8_data, 1},
    {"u8.z", DALLE_DTYPE_U8, 1, {1000}, 19, NULL, 0, u8_data, 1},
    {"scalar", DALLE_DTYPE_I32, 0, {0}, 0, NULL, 0, &i32_scalar, 4},
    {"i64-z", DALLE_DTYPE_I64, 3, {2, 2, 2}, 1, NULL, 0, i64_data, 8},
    {"eight", DALLE_DTYPE_F32, 8, {1, 2, 1, 2, 1, 2, 1, 2}, 0, NULL, 0, f32_8d, 4},
    {"to_logits.weight", DALLE_DTYPE_F32, 2, {2, 5}, -1, "tok_emb.weight", 5, NULL, 4},
    {"half.view", DALLE_DTYPE_F16, 1, {3}, -1, "half", 2, NULL, 2},
    {"brain.view", DALLE_DTYPE_BF16, 0, {0}, -1, "brain", 3, NULL, 2},
    {"layers/0:attn.w.alias", DALLE_DTYPE_F32, 1, {15}, -1, "layers/0:attn.w", 0, NULL, 4},
    {"big.rand", DALLE_DTYPE_U8, 1, {(int64_t)BIG_N}, 1, NULL, 0, NULL, 1},
    {"big.f32", DALLE_DTYPE_F32, 2, {1024, 768}, 0, NULL, 0, NULL, 4},
};
#define N_RT ((int)(sizeof rt_tensors / sizeof rt_tensors[0]))

static const void *rt_data(int i)
{
    const rt_tensor *t = &rt_tensors[i];
    if (t->target) {
        for (int k = 0; k < N_RT; k++)
            if (strcmp(rt_tensors[k].name, t->target) == 0)
                return (const unsigned char *)rt_data(k) + t->offset * (int64_t)t->elem;
    }
    return t->data;
}

static int64_t rt_numel(const rt_tensor *t)
{
    int64_t n = 1;
    for (int d = 0; d < t->ndim; d++)
        n *= t->dims[d];
    return n;
}

static void init_rt_data(void)
{
    for (int i = 0; i < 15; i++)
        f32_data[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 1000; i++)
        u8_data[i] = (uint8_t)(i % 7);
    for (int i = 0; i < 16; i++)
        f32_8d[i] = (float)(i * i) - 3.5f;
    big_rand = malloc(BIG_N);
    big_f32 = malloc(1024 * 768 * sizeof(float));
    uint64_t x = 88172645463325252u;
    for (size_t i = 0; i < BIG_N; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        big_rand[i] = (unsigned char)x;
    }
    for (size_t i = 0; i < 1024 * 768; i++)
        big_f32[i] = (float)((i * 2654435761u) % 1000) / 7.0f;
    rt_tensors[13].data = big_rand;
    rt_tensors[14].data = big_f32;
}

static int write_round_trip(const char *path)
{
    dalle_bundle_writer *w;
    if (dalle_bundle_writer_create("dalle", &w))
        return 0;
    int ok = set_all_meta(w);
    for (int i = 0; ok && i < N_RT; i++) {
        const rt_tensor *t = &rt_tensors[i];
        dalle_status st = t->level < 0
            ? dalle_bundle_writer_add_alias(w, t->name, t->target, t->ndim, t->dims, t->offset)
            : dalle_bundle_writer_add_tensor(w, t->name, t->dtype, t->ndim, t->dims, t->data,
                                             t->level);
        if (st) {
            printf("       add '%s': %s\n", t->name, dalle_last_error());
            ok = 0;
        }
    }
    ok = ok && !dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    return ok;
}

typedef struct thread_arg {
    dalle_bundle *b;
    int ok;
} thread_arg;

static void *reader_thread(void *p)
{
    thread_arg *a = p;
    a->ok = 1;
    static const char *const names[] = {"big.f32", "half", "to_logits.weight", "brain.view"};
    for (int rep = 0; rep < 3; rep++)
        for (int k = 0; k < 4; k++) {
            const float *f;
            if (bundle_tensor_f32(a->b, names[k], -1, NULL, &f))
                a->ok = 0;
        }
    unsigned char *buf = malloc(BIG_N);
    int idx = dalle_bundle_find_tensor(a->b, "big.rand");
    if (!buf || dalle_bundle_read_tensor(a->b, idx, buf, BIG_N) || memcmp(buf, big_rand, BIG_N))
        a->ok = 0;
    free(buf);
    return NULL;
}

static void check_round_trip(dalle_bundle *b, const char *how)
{
    char l[256];
    check(strcmp(dalle_bundle_kind(b), "dalle") == 0, "%s: kind is dalle", how);
    check(dalle_bundle_version_minor(b) == 0, "%s: version minor 0", how);
    check(dalle_bundle_n_tensors(b) == N_RT, "%s: %d tensors", how, N_RT);

    /* Metadata: general.kind first, then what was set, in order. */
    check(dalle_bundle_n_meta(b) == 15, "%s: 15 metadata entries (got %d)", how,
          dalle_bundle_n_meta(b));
    const char *key;
    dalle_meta_type type;
    int64_t count;
    dalle_status st = dalle_bundle_meta_info(b, 0, &key, &type, &count);
    check(!st && strcmp(key, "general.kind") == 0 && type == DALLE_META_STRING && count == 1,
          "%s: meta_info 0 is general.kind, string", how);
    st = dalle_bundle_meta_info(b, 10, &key, &type, &count);
    check(!st && strcmp(key, "dalle.attn_types") == 0 && type == DALLE_META_I64_ARRAY &&
          count == 3, "%s: meta_info 10 is dalle.attn_types, i64 array of 3", how);
    snprintf(l, sizeof l, "%s: meta_info index out of range", how);
    check_status(dalle_bundle_meta_info(b, 15, &key, &type, &count),
                 DALLE_ERR_INVALID_ARGUMENT, "out of range", l);

    int64_t i = 0;
    double f = 0;
    const char *s = NULL;
    check(!dalle_bundle_meta_i64(b, "dalle.dim", &i) && i == 512, "%s: i64 dalle.dim", how);
    check(!dalle_bundle_meta_i64(b, "dalle.neg", &i) && i == INT64_MIN, "%s: i64 INT64_MIN", how);
    check(!dalle_bundle_meta_f64(b, "dalle.attn_dropout", &f) && f == 0.125, "%s: f64", how);
    check(!dalle_bundle_meta_f64(b, "dalle.as_float", &f) && f == 3.0,
          "%s: f64 getter reads an i64", how);
    check(!dalle_bundle_meta_i64(b, "dalle.shift_tokens", &i) && i == 1,
          "%s: i64 getter reads a bool", how);
    check(!dalle_bundle_meta_str(b, "general.source", &s) && strcmp(s, "test_bundle.c") == 0,
          "%s: string general.source", how);
    check(!dalle_bundle_meta_str(b, "dalle.empty", &s) && strcmp(s, "") == 0,
          "%s: empty string", how);
    check(!dalle_bundle_meta_str(b, "dalle.utf8", &s) &&
          strcmp(s, "h\xc3\xa9llo \xe2\x9c\x93") == 0, "%s: UTF-8 string", how);
    int64_t ia[3] = {0, 0, 0}, n = -1;
    check(!dalle_bundle_meta_i64_array(b, "dalle.attn_types", ia, 3, &n) && n == 3 &&
          ia[0] == 1 && ia[1] == -2 && ia[2] == INT64_MAX, "%s: i64 array", how);
    ia[1] = 99;
    check(!dalle_bundle_meta_i64_array(b, "dalle.attn_types", ia, 1, &n) && n == 3 &&
          ia[0] == 1 && ia[1] == 99, "%s: i64 array with cap 1 copies 1, counts 3", how);
    check(!dalle_bundle_meta_i64_array(b, "dalle.none", NULL, 0, &n) && n == 0,
          "%s: empty i64 array", how);
    double fa[3] = {0, 0, 0};
    check(!dalle_bundle_meta_f64_array(b, "dalle.f64s", fa, 3, &n) && n == 2 && fa[0] == 0.5 &&
          fa[1] == -1e300 && fa[2] == 0, "%s: f64 array", how);
    check(!dalle_bundle_meta_f64_array(b, "dalle.attn_types", fa, 2, &n) && n == 3 &&
          fa[0] == 1.0 && fa[1] == -2.0, "%s: f64 array getter reads an i64 array", how);
    const char *sa[3] = {0};
    check(!dalle_bundle_meta_str_array(b, "dalle.strs", sa, 3, &n) && n == 3 &&
          strcmp(sa[0], "a") == 0 && strcmp(sa[1], "") == 0 &&
          strcmp(sa[2], "\xc3\xbc\xe2\x9c\x93") == 0, "%s: string array", how);
    i = 77;
    snprintf(l, sizeof l, "%s: absent key", how);
    check_status(dalle_bundle_meta_i64(b, "dalle.nope", &i), DALLE_ERR_NOT_FOUND, "dalle.nope", l);
    check(i == 77, "%s: absent key leaves the output untouched", how);
    snprintf(l, sizeof l, "%s: string read as i64", how);
    check_status(dalle_bundle_meta_i64(b, "dalle.utf8", &i), DALLE_ERR_MISMATCH, "dalle.utf8", l);
    snprintf(l, sizeof l, "%s: f64 read as i64", how);
    check_status(dalle_bundle_meta_i64(b, "dalle.attn_dropout", &i), DALLE_ERR_MISMATCH,
                 "is f64, not i64", l);
    snprintf(l, sizeof l, "%s: i64 read as string", how);
    check_status(dalle_bundle_meta_str(b, "dalle.dim", &s), DALLE_ERR_MISMATCH, "dalle.dim", l);
    snprintf(l, sizeof l, "%s: i64 array read as string array", how);
    check_status(dalle_bundle_meta_str_array(b, "dalle.attn_types", sa, 3, &n),
                 DALLE_ERR_MISMATCH, "dalle.attn_types", l);
    snprintf(l, sizeof l, "%s: negative cap", how);
    check_status(dalle_bundle_meta_i64_array(b, "dalle.attn_types", ia, -1, &n),
                 DALLE_ERR_INVALID_ARGUMENT, "cap", l);

    /* bundle.h look-ups with defaults. */
    int bv = -1;
    check(!bundle_int(b, "dalle.dim", 5, &i) && i == 512, "%s: bundle_int present", how);
    check(!bundle_int(b, "dalle.depth", 5, &i) && i == 5, "%s: bundle_int default", how);
    check(!bundle_float(b, "dalle.as_float", 0.5, &f) && f == 3.0, "%s: bundle_float of i64", how);
    check(!bundle_float(b, "dalle.nope", 0.5, &f) && f == 0.5, "%s: bundle_float default", how);
    check(!bundle_bool(b, "dalle.reversible", 1, &bv) && bv == 0, "%s: bundle_bool", how);
    check(!bundle_bool(b, "dalle.nope", 1, &bv) && bv == 1, "%s: bundle_bool default", how);
    snprintf(l, sizeof l, "%s: bundle_bool of a string", how);
    check_status(bundle_bool(b, "dalle.utf8", 1, &bv), DALLE_ERR_MISMATCH, "dalle.utf8", l);
    snprintf(l, sizeof l, "%s: bundle_int of an f64", how);
    check_status(bundle_int(b, "dalle.attn_dropout", 1, &i), DALLE_ERR_MISMATCH,
                 "dalle.attn_dropout", l);

    /* Tensor infos and bytes. */
    for (int k = 0; k < N_RT; k++) {
        const rt_tensor *t = &rt_tensors[k];
        dalle_tensor_info info;
        int idx = dalle_bundle_find_tensor(b, t->name);
        st = idx == k ? dalle_bundle_tensor_info(b, idx, &info) : DALLE_ERR_NOT_FOUND;
        int64_t numel = rt_numel(t);
        int ok = !st && strcmp(info.name, t->name) == 0 && info.dtype == t->dtype &&
                 info.ndim == t->ndim && info.numel == numel &&
                 info.nbytes == (uint64_t)numel * t->elem;
        for (int d = 0; ok && d < t->ndim; d++)
            ok = info.dims[d] == t->dims[d];
        if (ok && t->level < 0)
            ok = info.codec == DALLE_CODEC_ALIAS && info.stored_bytes == 0 &&
                 info.alias_of == dalle_bundle_find_tensor(b, t->target) &&
                 info.alias_offset == t->offset;
        else if (ok)
            ok = info.codec == (t->level ? DALLE_CODEC_ZSTD : DALLE_CODEC_RAW) &&
                 info.alias_of == -1 && info.alias_offset == 0 &&
                 (t->level || info.stored_bytes == info.nbytes);
        check(ok, "%s: tensor info of '%s'", how, t->name);
        size_t nb = (size_t)numel * t->elem;
        unsigned char *buf = malloc(nb + 1);
        buf[nb] = 0xEE;
        st = dalle_bundle_read_tensor(b, idx, buf, nb + 1);
        check(!st && memcmp(buf, rt_data(k), nb) == 0 && buf[nb] == 0xEE,
              "%s: read_tensor '%s' is bit-exact", how, t->name);
        free(buf);
    }
    unsigned char small[4] = {9, 9, 9, 9};
    snprintf(l, sizeof l, "%s: read_tensor into a too small buffer", how);
    check_status(dalle_bundle_read_tensor(b, 0, small, 4), DALLE_ERR_INVALID_ARGUMENT,
                 "destination of 4 bytes", l);
    check(small[0] == 9 && small[3] == 9, "%s: too small buffer untouched", how);
    snprintf(l, sizeof l, "%s: read_tensor index -1", how);
    check_status(dalle_bundle_read_tensor(b, -1, small, 4), DALLE_ERR_INVALID_ARGUMENT,
                 "out of range", l);
    snprintf(l, sizeof l, "%s: tensor_info index n", how);
    dalle_tensor_info info;
    check_status(dalle_bundle_tensor_info(b, N_RT, &info), DALLE_ERR_INVALID_ARGUMENT,
                 "out of range", l);
    check(dalle_bundle_find_tensor(b, "nope") == -1, "%s: find_tensor of an absent name", how);

    /* bundle_tensor_f32. */
    const float *p = NULL, *q = NULL;
    int64_t d35[2] = {3, 5}, d25[2] = {2, 5}, d10[1] = {10}, d3[1] = {3};
    st = bundle_tensor_f32(b, "tok_emb.weight", 2, d35, &p);
    check(!st && memcmp(p, f32_data, sizeof f32_data) == 0 && ((uintptr_t)p & 63) == 0,
          "%s: f32 of an f32 tensor, 64-byte aligned", how);
    st = bundle_tensor_f32(b, "to_logits.weight", 2, d25, &q);
    check(!st && q == p + 5, "%s: an alias points into its target's data", how);
    st = bundle_tensor_f32(b, "layers/0:attn.w.alias", -1, NULL, &q);
    check(!st && memcmp(q, f32_data, sizeof f32_data) == 0, "%s: alias of a zstd f32 tensor", how);
    st = bundle_tensor_f32(b, "half", 1, d10, &p);
    int ok = !st;
    for (int k = 0; ok && k < 10; k++)
        ok = memcmp(&p[k], &f16_expect[k], 4) == 0;
    check(ok, "%s: f16 -> f32 (normal, subnormal, max, inf, -0)", how);
    st = bundle_tensor_f32(b, "half.view", 1, d3, &q);
    check(!st && q == p + 2 && q[0] == 0.333251953125f, "%s: alias of an f16 tensor", how);
    st = bundle_tensor_f32(b, "brain.view", 0, NULL, &q);
    check(!st && q[0] == 3.140625f, "%s: bf16 scalar alias -> f32", how);
    st = bundle_tensor_f32(b, "brain", -1, NULL, &p);
    ok = !st;
    for (int k = 0; ok && k < 4; k++)
        ok = p[k] == bf16_expect[k];
    check(ok && q == p + 3, "%s: bf16 -> f32", how);
    st = bundle_tensor_f32(b, "eight", 8, rt_tensors[8].dims, &p);
    check(!st && memcmp(p, f32_8d, sizeof f32_8d) == 0, "%s: 8-d f32 tensor", how);
    const float *keep = (const float *)0x1;
    snprintf(l, sizeof l, "%s: bundle_tensor_f32 with the wrong shape", how);
    check_status(bundle_tensor_f32(b, "tok_emb.weight", 2, d25, &keep), DALLE_ERR_MISMATCH,
                 "'tok_emb.weight': expected shape [2, 5], found [3, 5]", l);
    snprintf(l, sizeof l, "%s: bundle_tensor_f32 with the wrong ndim", how);
    check_status(bundle_tensor_f32(b, "tok_emb.weight", 1, d10, &keep), DALLE_ERR_MISMATCH,
                 "expected shape [10], found [3, 5]", l);
    snprintf(l, sizeof l, "%s: bundle_tensor_f32 of a missing tensor", how);
    check_status(bundle_tensor_f32(b, "missing.weight", -1, NULL, &keep), DALLE_ERR_MISMATCH,
                 "'missing.weight' is missing", l);
    snprintf(l, sizeof l, "%s: bundle_tensor_f32 of an i8 tensor", how);
    check_status(bundle_tensor_f32(b, "i8", -1, NULL, &keep), DALLE_ERR_MISMATCH, "dtype i8", l);
    check(keep == (const float *)0x1, "%s: failed bundle_tensor_f32 leaves *out untouched", how);
    dalle_tensor_info shape;
    check(!bundle_tensor_shape(b, "eight", &shape) && shape.ndim == 8 && shape.dims[7] == 2,
          "%s: bundle_tensor_shape", how);
    snprintf(l, sizeof l, "%s: bundle_tensor_shape of a missing tensor", how);
    check_status(bundle_tensor_shape(b, "x", &shape), DALLE_ERR_MISMATCH, "'x' is missing", l);

    check_status(dalle_bundle_verify(b), DALLE_OK, NULL, how);
}

static void test_round_trip(void)
{
    init_rt_data();
    const char *path = tmp_path("round_trip.dalle");
    check(write_round_trip(path), "round trip: write a bundle with every metadata type, "
          "dtype and codec");

    dalle_bundle *b = NULL;
    check_status(dalle_bundle_open(path, &b), DALLE_OK, NULL, "round trip: open the file");
    if (b) {
        check(strcmp(bundle_path(b), path) == 0, "round trip: bundle_path is the path");
        check_round_trip(b, "file");
        /* Several threads reading the same bundle at once. */
        dalle_bundle *b2;
        if (!dalle_bundle_open(path, &b2)) {
            pthread_t th[4];
            thread_arg args[4];
            for (int k = 0; k < 4; k++) {
                args[k].b = b2;
                pthread_create(&th[k], NULL, reader_thread, &args[k]);
            }
            int ok = 1;
            for (int k = 0; k < 4; k++) {
                pthread_join(th[k], NULL);
                ok = ok && args[k].ok;
            }
            const float *p;
            ok = ok && !bundle_tensor_f32(b2, "big.f32", -1, NULL, &p) &&
                 memcmp(p, big_f32, 1024 * 768 * 4) == 0;
            check(ok, "file: 4 threads reading tensors of one bundle at once");
            dalle_bundle_close(b2);
        }
        dalle_bundle_close(b);
    }
    size_t size;
    unsigned char *buf = read_all(path, &size);
    b = NULL;
    check_status(dalle_bundle_open_memory(buf, size, &b), DALLE_OK, NULL,
                 "round trip: open from memory");
    if (b) {
        check(strcmp(bundle_path(b), "<memory>") == 0, "round trip: bundle_path is <memory>");
        check_round_trip(b, "memory");
        dalle_bundle_close(b);
    }
    /* Layout rules of the spec, as written. */
    int ok = size >= 128 && get64(buf + H_DATA_OFF) % 64 == 0 &&
             get64(buf + H_DATA_OFF) + get64(buf + H_DATA_SIZE) == size &&
             get64(buf + H_FILE_SIZE) == size;
    for (int k = 0; ok && k < N_RT; k++) {
        dir_loc e;
        ok = find_dir(buf, rt_tensors[k].name, &e);
        if (ok && buf[e.codec] != 2)
            ok = get64(buf + e.loc) % 64 == 0;
    }
    check(ok, "round trip: data_offset and payload offsets are multiples of 64");
    free(buf);
}

/* ------------------------------------------------------------------------ */
/* Malformed files                                                          */
/* ------------------------------------------------------------------------ */

static unsigned char *base;   /* the small bundle */
static size_t base_size;

static unsigned char *copy_base(void)
{
    unsigned char *b = malloc(base_size);
    memcpy(b, base, base_size);
    return b;
}

/* Opening buf must fail with want and a message containing substr. */
static void expect_open(const unsigned char *buf, size_t size, dalle_status want,
                        const char *substr, const char *label)
{
    dalle_bundle *b = (dalle_bundle *)0x1;
    dalle_status st = dalle_bundle_open_memory(buf, size, &b);
    check_status(st, want, substr, label);
    if (st == DALLE_OK) {
        if (want != DALLE_OK)
            check(0, "%s: (opened a bad file)", label);
        dalle_bundle_close(b);
    } else {
        check(b == (dalle_bundle *)0x1, "%s: *out untouched", label);
    }
}

/* Patch, fix the crcs, expect. */
#define PATCHED(code, want, substr, label)            \
    do {                                              \
        unsigned char *m = copy_base();               \
        code;                                         \
        fix_crcs(m, base_size);                       \
        expect_open(m, base_size, want, substr, label); \
        free(m);                                      \
    } while (0)

/* Opening must succeed; reading tensor `name` and verify must fail. */
static void expect_read(const unsigned char *buf, size_t size, const char *name,
                        dalle_status want, const char *substr, const char *label)
{
    dalle_bundle *b = NULL;
    dalle_status st = dalle_bundle_open_memory(buf, size, &b);
    char l[256];
    snprintf(l, sizeof l, "%s: opens", label);
    check_status(st, DALLE_OK, NULL, l);
    if (st)
        return;
    int idx = dalle_bundle_find_tensor(b, name);
    dalle_tensor_info info;
    dalle_bundle_tensor_info(b, idx, &info);
    unsigned char *dst = malloc(info.nbytes);
    memset(dst, 0xAB, info.nbytes);
    snprintf(l, sizeof l, "%s: read_tensor", label);
    st = dalle_bundle_read_tensor(b, idx, dst, info.nbytes);
    if (want == DALLE_ERR_CHECKSUM && st == DALLE_ERR_FORMAT)
        want = DALLE_ERR_FORMAT; /* callers pass CHECKSUM|FORMAT as CHECKSUM */
    check_status(st, want, substr, l);
    int untouched = 1;
    for (uint64_t k = 0; k < info.nbytes; k++)
        untouched = untouched && dst[k] == 0xAB;
    check(untouched, "%s: failed read leaves dst untouched", label);
    free(dst);
    dalle_status vs = dalle_bundle_verify(b);
    snprintf(l, sizeof l, "%s: verify", label);
    check_status(vs, st, substr, l);
    /* The same through a file. */
    dalle_bundle_close(b);
    const char *path = tmp_path("bad_payload.dalle");
    write_all_file(path, buf, size);
    b = NULL;
    if (!dalle_bundle_open(path, &b)) {
        snprintf(l, sizeof l, "%s: verify (file)", label);
        check_status(dalle_bundle_verify(b), st, substr, l);
        dalle_bundle_close(b);
    }
}

static void test_truncation(void)
{
    /* Every prefix of the small bundle fails cleanly. */
    int all_ok = 1;
    for (size_t n = 0; n < base_size; n++) {
        unsigned char *m = malloc(n ? n : 1);
        memcpy(m, base, n);
        dalle_bundle *b = NULL;
        dalle_status st = dalle_bundle_open_memory(m, n, &b);
        const char *want = n < 128 ? "shorter than the 128-byte header" : "file_size";
        if (st != DALLE_ERR_FORMAT || !strstr(dalle_last_error(), want)) {
            all_ok = 0;
            printf("       length %zu: %s (%s)\n", n, dalle_strerror(st), dalle_last_error());
        }
        if (!st)
            dalle_bundle_close(b);
        free(m);
    }
    check(all_ok, "truncation: every length 0..%zu fails with FORMAT", base_size - 1);

    /* Prefixes whose header is patched to claim that length (file_size,
       data_size, crcs): they fail on the sections themselves. */
    int opened = 0, crashes_none = 1;
    for (size_t n = 128; n < base_size; n++) {
        unsigned char *m = malloc(n);
        memcpy(m, base, n);
        put64(m + H_FILE_SIZE, n);
        uint64_t doff = get64(m + H_DATA_OFF);
        if (n >= doff)
            put64(m + H_DATA_SIZE, n - doff);
        fix_crcs(m, n);
        dalle_bundle *b = NULL;
        dalle_status st = dalle_bundle_open_memory(m, n, &b);
        if (!st) {
            opened++;
            crashes_none = crashes_none && dalle_bundle_verify(b) != DALLE_OK;
            dalle_bundle_close(b);
        } else if (st != DALLE_ERR_FORMAT && st != DALLE_ERR_CHECKSUM) {
            crashes_none = 0;
            printf("       length %zu: %s (%s)\n", n, dalle_strerror(st), dalle_last_error());
        }
        free(m);
    }
    check(crashes_none && opened == 0, "truncation with a consistent header: every length "
          "128..%zu fails at open (%d opened)", base_size - 1, opened);

    unsigned char *m = copy_base();
    uint64_t doff = get64(m + H_DATA_OFF);
    put64(m + H_FILE_SIZE, doff + 64);
    put64(m + H_DATA_SIZE, 64);
    fix_crcs(m, base_size);
    expect_open(m, (size_t)doff + 64, DALLE_ERR_FORMAT, "outside the data area",
                "truncated data area, header consistent");
    expect_open(m, 100, DALLE_ERR_FORMAT, "shorter than the 128-byte header", "truncated header");
    expect_open(base, (size_t)get64(base + H_DIR_OFF) + 3, DALLE_ERR_FORMAT, "file_size",
                "truncated in the directory");
    expect_open(base, 140, DALLE_ERR_FORMAT, "file_size", "truncated in the metadata");
    free(m);
}

static void test_header(void)
{
    PATCHED(m[0] = 'X', DALLE_ERR_FORMAT, "bad magic", "bad magic");
    PATCHED(put16(m + 8, 2), DALLE_ERR_VERSION, "version 2.0", "major version 2");
    PATCHED(put16(m + 8, 0), DALLE_ERR_VERSION, "version 0.0", "major version 0");
    {
        unsigned char *m = copy_base();
        put16(m + 10, 7);
        m[100] = 0x5A; /* a reserved byte that a 1.7 file may use */
        fix_crcs(m, base_size);
        dalle_bundle *b = NULL;
        check_status(dalle_bundle_open_memory(m, base_size, &b), DALLE_OK, NULL,
                     "minor version 7 with a non-zero reserved byte is accepted");
        check(b && dalle_bundle_version_minor(b) == 7, "dalle_bundle_version_minor is 7");
        dalle_bundle_close(b);
        free(m);
    }
    PATCHED(m[100] = 1, DALLE_ERR_FORMAT, "reserved byte 100", "1.0 with a reserved byte set");
    PATCHED(put32(m + 12, 64), DALLE_ERR_FORMAT, "header_size 64", "header_size 64");
    {
        unsigned char *m = copy_base();
        m[H_CRC] ^= 1;
        expect_open(m, base_size, DALLE_ERR_CHECKSUM, "header: crc32 mismatch", "header crc");
        memcpy(m, base, base_size);
        m[H_META_SIZE + 7] ^= 0x40; /* any header field, crc not fixed */
        expect_open(m, base_size, DALLE_ERR_CHECKSUM, "header: crc32 mismatch",
                    "header field changed without its crc");
        memcpy(m, base, base_size);
        m[get64(base + H_META_OFF) + 3] ^= 1;
        put32(m + H_CRC, crc32_ieee(0, m, 124));
        expect_open(m, base_size, DALLE_ERR_CHECKSUM, "metadata: crc32 mismatch", "metadata crc");
        memcpy(m, base, base_size);
        m[get64(base + H_DIR_OFF) + 3] ^= 1;
        put32(m + H_CRC, crc32_ieee(0, m, 124));
        expect_open(m, base_size, DALLE_ERR_CHECKSUM, "tensor directory: crc32 mismatch",
                    "directory crc");
        free(m);
    }
    PATCHED(put64(m + H_FILE_SIZE, base_size + 1), DALLE_ERR_FORMAT,
            "file_size is", "file_size field larger than the file");
    PATCHED(put64(m + H_FILE_SIZE, base_size - 1), DALLE_ERR_FORMAT,
            "file_size is", "file_size field smaller than the file");
    {
        unsigned char *m = malloc(base_size + 10);
        memcpy(m, base, base_size);
        memset(m + base_size, 0x77, 10);
        expect_open(m, base_size + 10, DALLE_ERR_FORMAT, "truncated or extended",
                    "trailing garbage");
        free(m);
    }
    PATCHED(put64(m + H_META_OFF, 192), DALLE_ERR_FORMAT, "meta_offset 192", "meta_offset 192");
    PATCHED(put64(m + H_META_SIZE, base_size), DALLE_ERR_FORMAT,
            "metadata section [128, +", "metadata section past the end");
    PATCHED(put64(m + H_DIR_OFF, get64(m + H_DIR_OFF) + 1), DALLE_ERR_FORMAT,
            "dir_offset", "directory not right after the metadata");
    PATCHED(put64(m + H_DIR_SIZE, UINT64_MAX - 5), DALLE_ERR_FORMAT,
            "tensor directory [", "directory size huge (overflow)");
    PATCHED(put64(m + H_DATA_OFF, get64(m + H_DATA_OFF) + 8), DALLE_ERR_FORMAT,
            "not a multiple of 64", "misaligned data_offset");
    PATCHED((put64(m + H_DATA_OFF, get64(m + H_DATA_OFF) + 64),
             put64(m + H_DATA_SIZE, get64(m + H_DATA_SIZE) - 64)),
            DALLE_ERR_FORMAT, "the first multiple of 64", "data_offset past its place");
    PATCHED(put64(m + H_DATA_SIZE, get64(m + H_DATA_SIZE) - 1), DALLE_ERR_FORMAT,
            "does not end at the end of the file", "data_size one short");
    PATCHED(put32(m + H_META_COUNT, 70000), DALLE_ERR_FORMAT, "meta_count 70000",
            "meta_count over the limit");
    PATCHED(put32(m + H_TCOUNT, 2000000), DALLE_ERR_FORMAT, "tensor_count 2000000",
            "tensor_count over the limit");
    PATCHED(put32(m + H_META_COUNT, get32(m + H_META_COUNT) + 1), DALLE_ERR_FORMAT,
            "runs past the end of the section", "meta_count one too many");
    PATCHED(put32(m + H_META_COUNT, get32(m + H_META_COUNT) - 1), DALLE_ERR_FORMAT,
            "left over", "meta_count one too few");
    PATCHED(put32(m + H_TCOUNT, get32(m + H_TCOUNT) + 1), DALLE_ERR_FORMAT,
            "tensor directory entry 6: runs past", "tensor_count one too many");
    PATCHED(put32(m + H_TCOUNT, get32(m + H_TCOUNT) - 1), DALLE_ERR_FORMAT,
            "left over", "tensor_count one too few");
    {
        /* Non-zero padding between the directory and the data area. */
        uint64_t end = get64(base + H_DIR_OFF) + get64(base + H_DIR_SIZE);
        if (end < get64(base + H_DATA_OFF))
            PATCHED(m[end] = 1, DALLE_ERR_FORMAT, "padding", "non-zero padding");
        else
            check(0, "the small bundle has padding before its data");
    }
}

static void test_metadata(void)
{
    meta_loc e;
    find_meta_entry(base, "vae.k2", &e);
    PATCHED(m[e.key + 5] = '1', DALLE_ERR_FORMAT, "metadata key 'vae.k1' appears more than once",
            "duplicate metadata keys");
    PATCHED(m[e.type] = 9, DALLE_ERR_FORMAT, "metadata key 'vae.k2': unknown value type 9",
            "unknown metadata type");
    PATCHED(m[e.type] = 0, DALLE_ERR_FORMAT, "unknown value type 0", "metadata type 0");
    PATCHED(m[e.key + 3] = ' ', DALLE_ERR_FORMAT, "key has a byte outside",
            "metadata key with a space");
    PATCHED(put16(m + e.start, 0), DALLE_ERR_FORMAT, "key length 0", "metadata key length 0");
    PATCHED(put16(m + e.start, 60000), DALLE_ERR_FORMAT, "key length 60000",
            "metadata key length 60000");
    find_meta_entry(base, "vae.flag", &e);
    PATCHED(m[e.value] = 2, DALLE_ERR_FORMAT, "bool value 2", "bool 2");
    find_meta_entry(base, "vae.name", &e);
    PATCHED(m[e.value + 4] = 0xFF, DALLE_ERR_FORMAT, "not valid UTF-8", "invalid UTF-8 string");
    PATCHED(m[e.value + 5] = 0, DALLE_ERR_FORMAT, "NUL", "string with a NUL byte");
    PATCHED(put32(m + e.value, 17u << 20), DALLE_ERR_FORMAT, "limit 16 MiB",
            "string length over 16 MiB");
    PATCHED(put32(m + e.value, 1000), DALLE_ERR_FORMAT, "runs past the end of the section",
            "string length past the section");
    find_meta_entry(base, "general.kind", &e);
    PATCHED(m[e.key + 11] = 'e', DALLE_ERR_FORMAT, "required key 'general.kind' is missing",
            "missing general.kind");
    PATCHED(m[e.value + 4 + 3] = 'f', DALLE_ERR_FORMAT, "unknown kind 'dvaf'", "unknown kind");
}

static void test_directory(void)
{
    dir_loc a, b, c, d, s, z;
    find_dir(base, "a", &a);
    find_dir(base, "b", &b);
    find_dir(base, "c", &c);
    find_dir(base, "d", &d);
    find_dir(base, "s", &s);
    find_dir(base, "z", &z);
    PATCHED(m[b.name] = 'a', DALLE_ERR_FORMAT, "tensor 'a' appears more than once",
            "duplicate tensor names");
    PATCHED(m[a.dtype] = 7, DALLE_ERR_FORMAT, "tensor 'a': unknown dtype code 7",
            "unknown dtype 7");
    PATCHED(m[a.dtype] = 255, DALLE_ERR_FORMAT, "tensor 'a': unknown dtype code 255",
            "unknown dtype 255");
    PATCHED(m[a.codec] = 3, DALLE_ERR_FORMAT, "tensor 'a': unknown codec 3", "unknown codec");
    PATCHED(m[a.reserved] = 1, DALLE_ERR_FORMAT, "tensor 'a': reserved byte", "reserved byte");
    PATCHED(m[a.ndim] = 9, DALLE_ERR_FORMAT, "tensor 'a': ndim 9", "ndim 9");
    PATCHED(put64(m + a.dims + 8, 0), DALLE_ERR_FORMAT, "tensor 'a': dim 1 is 0", "dim 0");
    PATCHED((put64(m + a.dims, 1ull << 32), put64(m + a.dims + 8, 1ull << 32)),
            DALLE_ERR_FORMAT, "tensor 'a': shape overflows or exceeds 2^40 bytes",
            "shape of 2^64 elements (overflow)");
    PATCHED((put64(m + a.dims, UINT64_MAX), put64(m + a.dims + 8, 3)), DALLE_ERR_FORMAT,
            "exceeds 2^40 bytes", "dim 2^64-1");
    PATCHED(put64(m + a.dims, (1ull << 38) / 3 + 1), DALLE_ERR_FORMAT, "exceeds 2^40 bytes",
            "just over 2^40 bytes");
    PATCHED(put64(m + a.dims, 3), DALLE_ERR_FORMAT, "raw payload of 24 bytes, the shape needs 36",
            "raw stored size differs from the shape");
    PATCHED(put16(m + a.start, 0), DALLE_ERR_FORMAT, "entry 0: name length 0", "name length 0");
    PATCHED(m[a.name] = '#', DALLE_ERR_FORMAT, "entry 0: name has a byte outside",
            "name with '#'");
    uint64_t dsize = get64(base + H_DATA_SIZE);
    PATCHED(put64(m + a.loc, (dsize + 64) & ~63ull), DALLE_ERR_FORMAT,
            "tensor 'a': payload [", "offset past the end");
    PATCHED(put64(m + a.loc, UINT64_MAX - 63), DALLE_ERR_FORMAT,
            "lies outside the data area", "offset 2^64-64");
    PATCHED(put64(m + b.loc + 8, UINT64_MAX), DALLE_ERR_FORMAT,
            "tensor 'b': payload [", "stored size 2^64-1");
    PATCHED(put64(m + a.loc, 8), DALLE_ERR_FORMAT, "tensor 'a': payload offset 8 is not a "
            "multiple of 64", "misaligned offset");
    PATCHED(put64(m + b.loc, get64(m + a.loc)), DALLE_ERR_FORMAT, "overlap",
            "overlapping payloads");
    PATCHED(put64(m + b.loc + 8, 0), DALLE_ERR_FORMAT, "empty zstd payload", "empty zstd payload");
    PATCHED(put64(m + b.dims, 1ull << 39), DALLE_ERR_FORMAT,
            "cannot come from a zstd payload", "zstd expansion bound");
    /* Aliases: c (index 2) and d (index 3) view a (index 0); b is index 1. */
    PATCHED(put32(m + c.loc, 2), DALLE_ERR_FORMAT, "tensor 'c': alias target 2 is not an "
            "earlier entry", "alias to itself");
    PATCHED(put32(m + c.loc, 4), DALLE_ERR_FORMAT, "alias target 4 is not an earlier entry",
            "alias to a later tensor");
    PATCHED(put32(m + c.loc, 0xFFFFFFFF), DALLE_ERR_FORMAT, "alias target 4294967295",
            "alias target out of range");
    PATCHED(put32(m + d.loc, 2), DALLE_ERR_FORMAT, "tensor 'd': alias target 'c' is itself "
            "an alias", "alias to an alias");
    PATCHED(put32(m + c.loc, 1), DALLE_ERR_FORMAT, "tensor 'c': dtype f32 differs from its "
            "alias target 'b' (f16)", "alias of another dtype");
    PATCHED(put64(m + c.loc + 4, 5), DALLE_ERR_FORMAT, "view [5, +2) lies outside",
            "alias view past the end of its target");
    PATCHED(put64(m + c.loc + 4, UINT64_MAX), DALLE_ERR_FORMAT, "lies outside",
            "alias element offset 2^64-1");
    PATCHED(m[s.ndim] = 1, DALLE_ERR_FORMAT, NULL, "scalar given a dim (entries shift)");
}

/* A zstd frame of `content` (n bytes) made by hand, with or without its
   content size. */
static size_t make_frame(unsigned char *dst, size_t cap, const void *content, size_t n,
                         int with_size)
{
    ZSTD_CCtx *c = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, with_size);
    ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 1);
    size_t r;
    if (with_size) {
        r = ZSTD_compress2(c, dst, cap, content, n);
    } else {
        ZSTD_outBuffer out = {dst, cap, 0};
        ZSTD_inBuffer in = {content, n, 0};
        r = ZSTD_compressStream2(c, &out, &in, ZSTD_e_end);
        r = r == 0 ? out.pos : 0;
    }
    ZSTD_freeCCtx(c);
    return ZSTD_isError(r) ? 0 : r;
}

/* A bundle whose tensor 'p' is the given payload stored as zstd, declared
   u8 [decoded_n] with the crc of `decoded`. Built by writing the payload
   raw and patching the codec, dims and crc. */
static unsigned char *zstd_bundle(const void *payload, size_t pn, const void *decoded,
                                  size_t decoded_n, size_t *size)
{
    dalle_bundle_writer *w;
    dalle_bundle_writer_create("tokenizer", &w);
    int64_t d[1] = {(int64_t)pn};
    dalle_bundle_writer_add_tensor(w, "p", DALLE_DTYPE_U8, 1, d, payload, 0);
    const char *path = tmp_path("zstd_case.dalle");
    dalle_bundle_writer_finish(w, path);
    dalle_bundle_writer_free(w);
    unsigned char *m = read_all(path, size);
    dir_loc e;
    find_dir(m, "p", &e);
    m[e.codec] = 1;
    put64(m + e.dims, decoded_n);
    put32(m + e.loc + 16, crc32_ieee(0, decoded, decoded_n));
    fix_crcs(m, *size);
    return m;
}

static void test_payloads(void)
{
    dir_loc a, b, z;
    find_dir(base, "a", &a);
    find_dir(base, "b", &b);
    find_dir(base, "z", &z);
    uint64_t doff = get64(base + H_DATA_OFF);
    unsigned char *m = copy_base();
    m[doff + get64(base + a.loc) + 5] ^= 0x10;
    expect_read(m, base_size, "a", DALLE_ERR_CHECKSUM, "tensor 'a': crc32 mismatch",
                "flipped byte in a raw payload");
    expect_read(m, base_size, "c", DALLE_ERR_CHECKSUM, "tensor 'a': crc32 mismatch",
                "alias of a corrupted raw payload");
    {
        dalle_bundle *bb = NULL;
        const float *f = NULL;
        if (!dalle_bundle_open_memory(m, base_size, &bb)) {
            check_status(bundle_tensor_f32(bb, "d", -1, NULL, &f), DALLE_ERR_CHECKSUM,
                         "tensor 'a': crc32", "bundle_tensor_f32 of an alias of a corrupted "
                         "tensor");
            check(f == NULL, "failed bundle_tensor_f32 leaves *out untouched");
            dalle_bundle_close(bb);
        }
    }
    memcpy(m, base, base_size);
    /* Every byte of the zstd payload flipped in turn: CHECKSUM or FORMAT,
       never success, never a crash. */
    uint64_t zoff = doff + get64(base + b.loc), zsize = get64(base + b.loc + 8);
    int all = 1;
    for (uint64_t k = 0; k < zsize; k++) {
        memcpy(m, base, base_size);
        m[zoff + k] ^= 0x01;
        dalle_bundle *bb;
        if (dalle_bundle_open_memory(m, base_size, &bb)) {
            all = 0;
            continue;
        }
        unsigned char dst[8];
        dalle_status st = dalle_bundle_read_tensor(bb, 1, dst, sizeof dst);
        if ((st != DALLE_ERR_CHECKSUM && st != DALLE_ERR_FORMAT) ||
            !strstr(dalle_last_error(), "tensor 'b'") || dalle_bundle_verify(bb) != st) {
            all = 0;
            printf("       byte %llu: %s (%s)\n", (unsigned long long)k, dalle_strerror(st),
                   dalle_last_error());
        }
        dalle_bundle_close(bb);
    }
    check(all, "each of the %llu bytes of a zstd payload flipped: CHECKSUM or FORMAT naming "
          "the tensor", (unsigned long long)zsize);
    memcpy(m, base, base_size);
    m[zoff + zsize - 1] ^= 0x01; /* the frame's own checksum */
    expect_read(m, base_size, "b", DALLE_ERR_CHECKSUM, "zstd frame checksum mismatch",
                "zstd frame checksum");
    memcpy(m, base, base_size);
    {
        dir_loc e;
        find_dir(m, "b", &e);
        m[e.loc + 16] ^= 1; /* the directory's crc of the decoded bytes */
        fix_crcs(m, base_size);
        expect_read(m, base_size, "b", DALLE_ERR_CHECKSUM, "tensor 'b': crc32 mismatch",
                    "directory crc32 of a zstd tensor");
    }
    memcpy(m, base, base_size);
    put64(m + b.dims, 3);
    fix_crcs(m, base_size);
    expect_read(m, base_size, "b", DALLE_ERR_FORMAT, "zstd frame holds 8 bytes, the shape "
                "needs 6", "zstd content size differs from the shape");
    free(m);

    unsigned char content[300], frame[600];
    for (int i = 0; i < 300; i++)
        content[i] = (unsigned char)(i * 7 % 13);
    size_t fn = make_frame(frame, sizeof frame, content, 300, 0);
    size_t size;
    m = zstd_bundle(frame, fn, content, 300, &size);
    expect_read(m, size, "p", DALLE_ERR_FORMAT, "zstd frame without a content size",
                "zstd frame without content size");
    free(m);
    fn = make_frame(frame, sizeof frame, content, 300, 1);
    m = zstd_bundle(frame, fn, content, 300, &size);
    {
        dalle_bundle *bb;
        unsigned char out[300];
        int ok = !dalle_bundle_open_memory(m, size, &bb);
        ok = ok && !dalle_bundle_read_tensor(bb, 0, out, 300) && memcmp(out, content, 300) == 0;
        check(ok, "a hand-made zstd frame decodes (control)");
        if (ok)
            dalle_bundle_close(bb);
    }
    free(m);
    m = zstd_bundle(frame, fn - 3, content, 300, &size);
    expect_read(m, size, "p", DALLE_ERR_FORMAT, "truncated", "truncated zstd frame");
    free(m);
    memcpy(frame + fn, "junk", 4);
    m = zstd_bundle(frame, fn + 4, content, 300, &size);
    expect_read(m, size, "p", DALLE_ERR_FORMAT, "bytes after the zstd frame",
                "bytes after the zstd frame");
    free(m);
    /* Two frames back to back: only one is allowed. */
    memcpy(frame + fn, frame, fn);
    m = zstd_bundle(frame, 2 * fn, content, 300, &size);
    expect_read(m, size, "p", DALLE_ERR_FORMAT, "bytes after the zstd frame", "two zstd frames");
    free(m);
    /* A frame whose header claims fewer bytes than it holds. */
    unsigned char fake[8] = {0};
    fn = make_frame(frame, sizeof frame, content, 300, 1);
    {
        unsigned char small_frame[64];
        size_t sn = make_frame(small_frame, sizeof small_frame, fake, 8, 1);
        m = zstd_bundle(small_frame, sn, content, 300, &size);
        expect_read(m, size, "p", DALLE_ERR_FORMAT, "zstd frame holds 8 bytes, the shape "
                    "needs 300", "zstd frame content size smaller than the shape");
        free(m);
    }
    /* Not a zstd frame at all. */
    m = zstd_bundle(content, 64, content, 300, &size);
    expect_read(m, size, "p", DALLE_ERR_FORMAT, "zstd frame", "payload is not a zstd frame");
    free(m);
    m = zstd_bundle(frame, 5, content, 300, &size);
    expect_read(m, size, "p", DALLE_ERR_FORMAT, "zstd frame header", "payload of 5 bytes");
    free(m);
}

static void test_files(void)
{
    dalle_bundle *b = (dalle_bundle *)0x1;
    check_status(dalle_bundle_open(tmp_path("does-not-exist.dalle"), &b), DALLE_ERR_IO,
                 "does-not-exist.dalle: cannot open", "open a missing file");
    check_status(dalle_bundle_open(tmpdir, &b), DALLE_ERR_IO, "directory", "open a directory");
    check(b == (dalle_bundle *)0x1, "failed open leaves *out untouched");
    check_status(dalle_bundle_open(NULL, &b), DALLE_ERR_INVALID_ARGUMENT, "NULL", "open NULL");
    check_status(dalle_bundle_open_memory(NULL, 10, &b), DALLE_ERR_INVALID_ARGUMENT, "NULL",
                 "open_memory NULL");
    const char *path = tmp_path("trailing.dalle");
    unsigned char *m = malloc(base_size + 1);
    memcpy(m, base, base_size);
    m[base_size] = 0;
    write_all_file(path, m, base_size + 1);
    check_status(dalle_bundle_open(path, &b), DALLE_ERR_FORMAT, "trailing.dalle: header: "
                 "file_size", "a file with a trailing byte names the file");
    write_all_file(path, m, 77);
    check_status(dalle_bundle_open(path, &b), DALLE_ERR_FORMAT, "shorter than the 128-byte",
                 "a 77-byte file");
    m[0] = 'Y';
    write_all_file(path, m, base_size);
    check_status(dalle_bundle_open(path, &b), DALLE_ERR_FORMAT, "trailing.dalle: header: bad "
                 "magic", "bad magic through a file");
    free(m);
    dalle_bundle_close(NULL);
}

/* ------------------------------------------------------------------------ */
/* Writer arguments                                                         */
/* ------------------------------------------------------------------------ */

static void test_writer_args(void)
{
    dalle_bundle_writer *w = NULL;
    check_status(dalle_bundle_writer_create(NULL, &w), DALLE_ERR_INVALID_ARGUMENT, "kind",
                 "writer: NULL kind");
    check_status(dalle_bundle_writer_create("gan", &w), DALLE_ERR_INVALID_ARGUMENT,
                 "unknown kind 'gan'", "writer: unknown kind");
    check_status(dalle_bundle_writer_create("clip", &w), DALLE_OK, NULL, "writer: kind clip");
    if (!w)
        return;
    char long_key[257];
    memset(long_key, 'k', 256);
    long_key[256] = 0;
    check_status(dalle_bundle_writer_set_i64(w, "", 1), DALLE_ERR_INVALID_ARGUMENT,
                 "must be 1..255 bytes", "writer: empty key");
    check_status(dalle_bundle_writer_set_i64(w, "bad key", 1), DALLE_ERR_INVALID_ARGUMENT,
                 "'bad key'", "writer: key with a space");
    check_status(dalle_bundle_writer_set_i64(w, "a/b", 1), DALLE_ERR_INVALID_ARGUMENT,
                 "'a/b'", "writer: key with '/'");
    check_status(dalle_bundle_writer_set_i64(w, long_key, 1), DALLE_ERR_INVALID_ARGUMENT,
                 "must be 1..255", "writer: 256-byte key");
    check_status(dalle_bundle_writer_set_i64(w, long_key + 1, 1), DALLE_OK, NULL,
                 "writer: 255-byte key");
    check_status(dalle_bundle_writer_set_i64(w, NULL, 1), DALLE_ERR_INVALID_ARGUMENT, "key",
                 "writer: NULL key");
    check_status(dalle_bundle_writer_set_str(w, "general.kind", "dalle"),
                 DALLE_ERR_INVALID_ARGUMENT, "general.kind", "writer: general.kind");
    check_status(dalle_bundle_writer_set_i64(w, "clip.dim", 1), DALLE_OK, NULL, "writer: set");
    check_status(dalle_bundle_writer_set_f64(w, "clip.dim", 1), DALLE_ERR_INVALID_ARGUMENT,
                 "'clip.dim' is already set", "writer: duplicate key");
    check_status(dalle_bundle_writer_set_str(w, "clip.s", NULL), DALLE_ERR_INVALID_ARGUMENT,
                 "NULL", "writer: NULL string");
    check_status(dalle_bundle_writer_set_str(w, "clip.s", "\xff"), DALLE_ERR_INVALID_ARGUMENT,
                 "UTF-8", "writer: invalid UTF-8");
    check_status(dalle_bundle_writer_set_str(w, "clip.s", "\xc0\x80"),
                 DALLE_ERR_INVALID_ARGUMENT, "UTF-8", "writer: overlong UTF-8");
    check_status(dalle_bundle_writer_set_i64_array(w, "clip.a", NULL, 2),
                 DALLE_ERR_INVALID_ARGUMENT, "values is NULL", "writer: NULL array");
    int64_t v[2] = {1, 2};
    check_status(dalle_bundle_writer_set_i64_array(w, "clip.a", v, -1),
                 DALLE_ERR_INVALID_ARGUMENT, "count -1", "writer: count -1");
    check_status(dalle_bundle_writer_set_f64_array(w, "clip.a", (const double *)v, 2000000),
                 DALLE_ERR_INVALID_ARGUMENT, "count 2000000", "writer: count over 1 Mi");
    const char *sv[2] = {"x", NULL};
    check_status(dalle_bundle_writer_set_str_array(w, "clip.a", sv, 2),
                 DALLE_ERR_INVALID_ARGUMENT, "[1] is NULL", "writer: NULL string in an array");

    int64_t d2[2] = {2, 2}, d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    float data[4] = {1, 2, 3, 4};
    check_status(dalle_bundle_writer_add_tensor(w, "", DALLE_DTYPE_F32, 2, d2, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "must be 1..255 bytes", "writer: empty name");
    check_status(dalle_bundle_writer_add_tensor(w, "a b", DALLE_DTYPE_F32, 2, d2, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "'a b'", "writer: name with a space");
    check_status(dalle_bundle_writer_add_tensor(w, "caf\xc3\xa9", DALLE_DTYPE_F32, 2, d2, data,
                                                0),
                 DALLE_ERR_INVALID_ARGUMENT, "[A-Za-z0-9_.:/-]", "writer: non-ASCII name");
    check_status(dalle_bundle_writer_add_tensor(w, long_key, DALLE_DTYPE_F32, 2, d2, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "1..255", "writer: 256-byte name");
    check_status(dalle_bundle_writer_add_tensor(w, NULL, DALLE_DTYPE_F32, 2, d2, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "name", "writer: NULL name");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, d2, NULL, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "'t': data is NULL", "writer: NULL data");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 9, d9, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "ndim 9", "writer: ndim 9");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, -1, d2, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "ndim -1", "writer: ndim -1");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, NULL, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "dims is NULL", "writer: NULL dims");
    int64_t d0[2] = {2, 0}, dn[2] = {-2, 2}, dbig[2] = {1LL << 20, 1LL << 19};
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, d0, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "dim 1 is 0", "writer: dim 0");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, dn, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "dim 0 is -2", "writer: negative dim");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, dbig, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "2^40", "writer: 2^41 bytes");
    check_status(dalle_bundle_writer_add_tensor(w, "t", (dalle_dtype)7, 2, d2, data, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "unknown dtype 7", "writer: dtype 7");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, d2, data, 1000),
                 DALLE_ERR_INVALID_ARGUMENT, "zstd level 1000", "writer: zstd level 1000");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, d2, data, 3),
                 DALLE_OK, NULL, "writer: add t");
    check_status(dalle_bundle_writer_add_tensor(w, "t", DALLE_DTYPE_F32, 2, d2, data, 3),
                 DALLE_ERR_INVALID_ARGUMENT, "'t' is already added", "writer: duplicate name");
    int64_t d1[1] = {2}, d5[1] = {5};
    check_status(dalle_bundle_writer_add_alias(w, "v", "nope", 1, d1, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "alias target 'nope' has not been added",
                 "writer: alias to an unknown tensor");
    check_status(dalle_bundle_writer_add_alias(w, "v", NULL, 1, d1, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "target", "writer: alias to NULL");
    check_status(dalle_bundle_writer_add_alias(w, "v", "t", 1, d1, 3),
                 DALLE_ERR_INVALID_ARGUMENT, "view [3, +2) lies outside 't'",
                 "writer: alias past the end of its target");
    check_status(dalle_bundle_writer_add_alias(w, "v", "t", 1, d5, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "lies outside", "writer: alias larger than target");
    check_status(dalle_bundle_writer_add_alias(w, "v", "t", 1, d1, -1),
                 DALLE_ERR_INVALID_ARGUMENT, "lies outside", "writer: negative element offset");
    check_status(dalle_bundle_writer_add_alias(w, "t", "t", 1, d1, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "already added", "writer: alias with a taken name");
    check_status(dalle_bundle_writer_add_alias(w, "v", "t", 1, d1, 2), DALLE_OK, NULL,
                 "writer: alias v");
    check_status(dalle_bundle_writer_add_alias(w, "v2", "v", 1, d1, 0),
                 DALLE_ERR_INVALID_ARGUMENT, "itself an alias", "writer: alias to an alias");
    check_status(dalle_bundle_writer_finish(w, tmp_path("no/such/dir/x.dalle")), DALLE_ERR_IO,
                 "x.dalle", "writer: finish into a missing directory");
    check_status(dalle_bundle_writer_finish(NULL, "x"), DALLE_ERR_INVALID_ARGUMENT, "writer",
                 "writer: finish NULL");
    const char *path = tmp_path("after_errors.dalle");
    check_status(dalle_bundle_writer_finish(w, path), DALLE_OK, NULL,
                 "writer: finish after failed calls");
    dalle_bundle_writer_free(w);
    dalle_bundle *b = NULL;
    check_status(dalle_bundle_open(path, &b), DALLE_OK, NULL, "writer: the file opens");
    if (b) {
        const char *src = NULL;
        check(dalle_bundle_n_tensors(b) == 2 && dalle_bundle_n_meta(b) == 4 &&
              !dalle_bundle_meta_str(b, "general.source", &src) && strlen(src) > 0 &&
              strcmp(dalle_bundle_kind(b), "clip") == 0,
              "writer: failed calls added nothing; general.source defaulted");
        check_status(dalle_bundle_verify(b), DALLE_OK, NULL, "writer: verify");
        dalle_bundle_close(b);
    }
    /* No temporary files left behind. */
    DIR *dir = opendir(tmpdir);
    int leftovers = 0;
    struct dirent *de;
    while (dir && (de = readdir(dir)))
        leftovers += strstr(de->d_name, ".tmp.") != NULL;
    if (dir)
        closedir(dir);
    check(leftovers == 0, "writer: no temporary files left behind");

    /* An empty bundle (no tensors). */
    dalle_bundle_writer_create("tokenizer", &w);
    path = tmp_path("empty.dalle");
    check_status(dalle_bundle_writer_finish(w, path), DALLE_OK, NULL, "writer: empty bundle");
    dalle_bundle_writer_free(w);
    b = NULL;
    check_status(dalle_bundle_open(path, &b), DALLE_OK, NULL, "empty bundle opens");
    if (b) {
        check(dalle_bundle_n_tensors(b) == 0 && !dalle_bundle_verify(b) &&
              dalle_bundle_find_tensor(b, "x") == -1, "empty bundle: no tensors, verifies");
        dalle_bundle_close(b);
    }
    dalle_bundle_writer_free(NULL);
}

/* ------------------------------------------------------------------------ */

static int write_corpus(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/small.dalle", dir);
    if (!make_small(path))
        return 1;
    dalle_bundle_writer *w;
    dalle_bundle_writer_create("dalle", &w);
    static const uint16_t h[3] = {0x3C00, 0x7C00, 0x0001};
    static const int64_t i64s[2] = {-1, 1};
    static const int8_t i8s[3] = {-1, 0, 1};
    int64_t d3[1] = {3}, d2[1] = {2}, d1[1] = {1}, d22[2] = {1, 3};
    set_all_meta(w);
    dalle_bundle_writer_add_tensor(w, "h", DALLE_DTYPE_F16, 1, d3, h, 0);
    dalle_bundle_writer_add_tensor(w, "bf", DALLE_DTYPE_BF16, 1, d3, h, 1);
    dalle_bundle_writer_add_tensor(w, "q", DALLE_DTYPE_I64, 1, d2, i64s, 1);
    dalle_bundle_writer_add_tensor(w, "i", DALLE_DTYPE_I8, 1, d3, i8s, 0);
    dalle_bundle_writer_add_alias(w, "h.v", "h", 2, d22, 0);
    dalle_bundle_writer_add_alias(w, "bf.v", "bf", 1, d1, 2);
    snprintf(path, sizeof path, "%s/all_types.dalle", dir);
    int bad = dalle_bundle_writer_finish(w, path) != DALLE_OK;
    dalle_bundle_writer_free(w);
    dalle_bundle_writer_create("tokenizer", &w);
    snprintf(path, sizeof path, "%s/empty.dalle", dir);
    bad |= dalle_bundle_writer_finish(w, path) != DALLE_OK;
    dalle_bundle_writer_free(w);
    return bad;
}

static void remove_tree(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[1024];
    while (d && (de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        remove(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "--write-corpus") == 0)
        return write_corpus(argv[2]);
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *t = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/test_bundle.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmpdir)) {
        printf("FAIL - cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    const char *small = tmp_path("small.dalle");
    check(make_small(small), "write the small test bundle");
    base = read_all(small, &base_size);
    if (!base)
        return 1;
    check(base_size < 1024, "the small bundle is %zu bytes", base_size);
    expect_open(base, base_size, DALLE_OK, NULL, "the small bundle opens");

    test_round_trip();
    test_truncation();
    test_header();
    test_metadata();
    test_directory();
    test_payloads();
    test_files();
    test_writer_args();

    free(base);
    free(big_rand);
    free(big_f32);
    remove_tree(tmpdir);
    printf("%d checks, %d failed\n", n_checks, n_failed);
    return n_failed ? 1 : 0;
}
