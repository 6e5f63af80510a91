/* The bundle writer: dalle_bundle_writer_* of include/dalle/dalle.h, writing
 * the format of docs/bundle-format.md.
 *
 * Metadata is encoded as it is set and tensors are copied (raw) or
 * compressed (zstd, with the content size and checksum in the frame) as they
 * are added; finish lays the file out and writes it to a temporary file next
 * to the destination, which is renamed into place only when complete. Every
 * argument is checked as the reader would check the file, so the writer
 * never produces a bundle the reader refuses; a call that fails changes
 * nothing in the writer.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "bundle_internal.h"
#include "crc32.h"
#include "error.h"

typedef struct wmeta {
    char *key;
    unsigned char *enc; /* the whole entry: key_len, key, type, value */
    size_t enc_size;
} wmeta;

typedef struct wtensor {
    char *name;
    unsigned dtype, ndim, codec;
    uint64_t dims[DALLE_MAX_DIMS];
    uint64_t numel, nbytes;
    unsigned char *payload; /* raw bytes or one zstd frame */
    uint64_t stored;
    uint32_t crc;
    uint32_t target;        /* alias */
    uint64_t element_offset;
} wtensor;

/* A string → index hash set (open addressing, power-of-two capacity). */
typedef struct name_set {
    const char **keys;
    int *idx;
    size_t cap, used;
} name_set;

struct dalle_bundle_writer {
    char *kind;
    wmeta *meta;
    int n_meta, cap_meta;
    name_set meta_set;
    wtensor *tensors;
    int n_tensors, cap_tensors;
    name_set tensor_set;
    ZSTD_CCtx *cctx;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 1099511628211u;
    return h;
}

static int set_find(const name_set *s, const char *key)
{
    if (!s->cap)
        return -1;
    for (size_t i = hash_str(key) & (s->cap - 1);; i = (i + 1) & (s->cap - 1)) {
        if (!s->keys[i])
            return -1;
        if (strcmp(s->keys[i], key) == 0)
            return s->idx[i];
    }
}

/* Make room for one more key (call before set_put, which cannot fail). */
static int set_reserve(name_set *s)
{
    if ((s->used + 1) * 2 <= s->cap)
        return 1;
    size_t cap = s->cap ? s->cap * 2 : 64;
    const char **keys = calloc(cap, sizeof *keys);
    int *idx = malloc(cap * sizeof *idx);
    if (!keys || !idx) {
        free(keys);
        free(idx);
        return 0;
    }
    for (size_t j = 0; j < s->cap; j++) {
        if (!s->keys[j])
            continue;
        size_t i = hash_str(s->keys[j]) & (cap - 1);
        while (keys[i])
            i = (i + 1) & (cap - 1);
        keys[i] = s->keys[j];
        idx[i] = s->idx[j];
    }
    free(s->keys);
    free(s->idx);
    s->keys = keys;
    s->idx = idx;
    s->cap = cap;
    return 1;
}

static void set_put(name_set *s, const char *key, int index)
{
    size_t i = hash_str(key) & (s->cap - 1);
    while (s->keys[i])
        i = (i + 1) & (s->cap - 1);
    s->keys[i] = key;
    s->idx[i] = index;
    s->used++;
}

static void set_free(name_set *s)
{
    free(s->keys);
    free(s->idx);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s);
    char *d = malloc(n + 1);
    if (d)
        memcpy(d, s, n + 1);
    return d;
}

static dalle_status oom(const char *what)
{
    return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "bundle writer: out of memory (%s)", what);
}

/* ------------------------------------------------------------------------ */
/* Creating, metadata                                                       */
/* ------------------------------------------------------------------------ */

static dalle_status add_meta(dalle_bundle_writer *w, const char *key, unsigned type,
                             const unsigned char *value, size_t value_size);

dalle_status dalle_bundle_writer_create(const char *kind, dalle_bundle_writer **out)
{
    if (!kind || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_writer_create: %s is NULL",
                          !kind ? "kind" : "out");
    if (!bnd_known_kind(kind, strlen(kind)))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_writer_create: unknown "
                          "kind '%.64s' (dalle, dvae, openai_dvae, vqgan, clip, openai_clip "
                          "or tokenizer)", kind);
    dalle_bundle_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->kind = dup_str(kind))) {
        free(w);
        return oom("writer");
    }
    size_t n = strlen(kind);
    unsigned char *v = malloc(4 + n);
    if (!v) {
        dalle_bundle_writer_free(w);
        return oom("writer");
    }
    bnd_put_u32(v, (uint32_t)n);
    memcpy(v + 4, kind, n);
    dalle_status st = add_meta(w, "general.kind", DALLE_META_STRING, v, 4 + n);
    free(v);
    if (st) {
        dalle_bundle_writer_free(w);
        return st;
    }
    *out = w;
    return DALLE_OK;
}

void dalle_bundle_writer_free(dalle_bundle_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta[i].key);
        free(w->meta[i].enc);
    }
    for (int i = 0; i < w->n_tensors; i++) {
        free(w->tensors[i].name);
        free(w->tensors[i].payload);
    }
    free(w->meta);
    free(w->tensors);
    set_free(&w->meta_set);
    set_free(&w->tensor_set);
    ZSTD_freeCCtx(w->cctx);
    free(w->kind);
    free(w);
}

static dalle_status check_key(const dalle_bundle_writer *w, const char *key, const char *fn)
{
    if (!w || !key)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !w ? "writer" : "key");
    size_t n = strlen(key);
    if (!bnd_valid_key(key, n))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%.64s' must be 1..255 bytes of "
                          "[A-Za-z0-9_.-]", fn, key);
    if (strcmp(key, "general.kind") == 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: 'general.kind' is set by "
                          "dalle_bundle_writer_create", fn);
    if (set_find(&w->meta_set, key) >= 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%s' is already set", fn, key);
    if (w->n_meta >= (int)BND_MAX_META)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: more than 65536 metadata keys", fn);
    return DALLE_OK;
}

/* Append an entry (key checked by the caller). */
static dalle_status add_meta(dalle_bundle_writer *w, const char *key, unsigned type,
                             const unsigned char *value, size_t value_size)
{
    size_t kn = strlen(key);
    if (value_size > SIZE_MAX - 3 - kn)
        return oom("metadata");
    if (w->n_meta == w->cap_meta) {
        int cap = w->cap_meta ? w->cap_meta * 2 : 16;
        wmeta *m = realloc(w->meta, (size_t)cap * sizeof *m);
        if (!m)
            return oom("metadata");
        w->meta = m;
        w->cap_meta = cap;
    }
    if (!set_reserve(&w->meta_set))
        return oom("metadata");
    wmeta *m = &w->meta[w->n_meta];
    m->enc_size = 2 + kn + 1 + value_size;
    m->enc = malloc(m->enc_size);
    m->key = dup_str(key);
    if (!m->enc || !m->key) {
        free(m->enc);
        free(m->key);
        return oom("metadata");
    }
    bnd_put_u16(m->enc, (uint16_t)kn);
    memcpy(m->enc + 2, key, kn);
    m->enc[2 + kn] = (unsigned char)type;
    if (value_size)
        memcpy(m->enc + 3 + kn, value, value_size);
    set_put(&w->meta_set, m->key, w->n_meta);
    w->n_meta++;
    return DALLE_OK;
}

dalle_status dalle_bundle_writer_set_i64(dalle_bundle_writer *w, const char *key, int64_t value)
{
    dalle_status st = check_key(w, key, "dalle_bundle_writer_set_i64");
    if (st)
        return st;
    unsigned char v[8];
    bnd_put_u64(v, (uint64_t)value);
    return add_meta(w, key, DALLE_META_I64, v, 8);
}

dalle_status dalle_bundle_writer_set_f64(dalle_bundle_writer *w, const char *key, double value)
{
    dalle_status st = check_key(w, key, "dalle_bundle_writer_set_f64");
    if (st)
        return st;
    uint64_t bits;
    memcpy(&bits, &value, 8);
    unsigned char v[8];
    bnd_put_u64(v, bits);
    return add_meta(w, key, DALLE_META_F64, v, 8);
}

dalle_status dalle_bundle_writer_set_bool(dalle_bundle_writer *w, const char *key, int value)
{
    dalle_status st = check_key(w, key, "dalle_bundle_writer_set_bool");
    if (st)
        return st;
    unsigned char v = value != 0;
    return add_meta(w, key, DALLE_META_BOOL, &v, 1);
}

static dalle_status check_string(const char *fn, const char *key, const char *s, int64_t index)
{
    char where[32] = "";
    if (index >= 0)
        snprintf(where, sizeof where, " [%lld]", (long long)index);
    if (!s)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%s': string%s is NULL", fn,
                          key, where);
    size_t n = strlen(s);
    if (n > BND_MAX_STRING)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%s': string%s of %zu bytes "
                          "(limit 16 MiB)", fn, key, where, n);
    if (!bnd_valid_utf8((const unsigned char *)s, n))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%s': string%s is not valid "
                          "UTF-8", fn, key, where);
    return DALLE_OK;
}

dalle_status dalle_bundle_writer_set_str(dalle_bundle_writer *w, const char *key,
                                         const char *value)
{
    const char *fn = "dalle_bundle_writer_set_str";
    dalle_status st = check_key(w, key, fn);
    if (!st)
        st = check_string(fn, key, value, -1);
    if (st)
        return st;
    size_t n = strlen(value);
    unsigned char *v = malloc(4 + n);
    if (!v)
        return oom("metadata");
    bnd_put_u32(v, (uint32_t)n);
    memcpy(v + 4, value, n);
    st = add_meta(w, key, DALLE_META_STRING, v, 4 + n);
    free(v);
    return st;
}

static dalle_status check_count(const char *fn, const char *key, const void *values,
                                int64_t count)
{
    if (count < 0 || count > (int64_t)BND_MAX_ARRAY)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%s': count %lld (must be "
                          "0..1048576)", fn, key, (long long)count);
    if (count > 0 && !values)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: key '%s': values is NULL", fn, key);
    return DALLE_OK;
}

static dalle_status set_array64(dalle_bundle_writer *w, const char *key, const void *values,
                                int64_t count, unsigned type, const char *fn)
{
    dalle_status st = check_key(w, key, fn);
    if (!st)
        st = check_count(fn, key, values, count);
    if (st)
        return st;
    size_t n = (size_t)count;
    unsigned char *v = malloc(4 + 8 * n);
    if (!v)
        return oom("metadata");
    bnd_put_u32(v, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        uint64_t bits;
        memcpy(&bits, (const unsigned char *)values + 8 * i, 8);
        bnd_put_u64(v + 4 + 8 * i, bits);
    }
    st = add_meta(w, key, type, v, 4 + 8 * n);
    free(v);
    return st;
}

dalle_status dalle_bundle_writer_set_i64_array(dalle_bundle_writer *w, const char *key,
                                               const int64_t *values, int64_t count)
{
    return set_array64(w, key, values, count, DALLE_META_I64_ARRAY,
                       "dalle_bundle_writer_set_i64_array");
}

dalle_status dalle_bundle_writer_set_f64_array(dalle_bundle_writer *w, const char *key,
                                               const double *values, int64_t count)
{
    return set_array64(w, key, values, count, DALLE_META_F64_ARRAY,
                       "dalle_bundle_writer_set_f64_array");
}

dalle_status dalle_bundle_writer_set_str_array(dalle_bundle_writer *w, const char *key,
                                               const char *const *values, int64_t count)
{
    const char *fn = "dalle_bundle_writer_set_str_array";
    dalle_status st = check_key(w, key, fn);
    if (!st)
        st = check_count(fn, key, values, count);
    if (st)
        return st;
    size_t total = 4;
    for (int64_t i = 0; i < count; i++) {
        if ((st = check_string(fn, key, values[i], i)))
            return st;
        size_t len = strlen(values[i]);
        if (total > SIZE_MAX - 4 - len)
            return oom("metadata");
        total += 4 + len;
    }
    unsigned char *v = malloc(total);
    if (!v)
        return oom("metadata");
    bnd_put_u32(v, (uint32_t)count);
    size_t pos = 4;
    for (int64_t i = 0; i < count; i++) {
        size_t len = strlen(values[i]);
        bnd_put_u32(v + pos, (uint32_t)len);
        memcpy(v + pos + 4, values[i], len);
        pos += 4 + len;
    }
    st = add_meta(w, key, DALLE_META_STRING_ARRAY, v, total);
    free(v);
    return st;
}

/* ------------------------------------------------------------------------ */
/* Tensors                                                                  */
/* ------------------------------------------------------------------------ */

/* Name, shape and room for one more tensor; fills t's name-independent
   shape fields. */
static dalle_status check_tensor(dalle_bundle_writer *w, const char *name, unsigned dtype,
                                 int ndim, const int64_t *dims, wtensor *t, const char *fn)
{
    if (!w || !name)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !w ? "writer" : "name");
    if (!bnd_valid_name(name, strlen(name)))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor name '%.64s' must be 1..255 "
                          "bytes of [A-Za-z0-9_.:/-]", fn, name);
    if (set_find(&w->tensor_set, name) >= 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s' is already added", fn,
                          name);
    if (w->n_tensors >= (int)BND_MAX_TENSORS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': more than 1048576 "
                          "tensors", fn, name);
    unsigned elem = bnd_dtype_size(dtype);
    if (!elem)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': unknown dtype %u", fn,
                          name, dtype);
    if (ndim < 0 || ndim > DALLE_MAX_DIMS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': ndim %d (must be "
                          "0..8)", fn, name, ndim);
    if (ndim > 0 && !dims)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': dims is NULL", fn,
                          name);
    memset(t, 0, sizeof *t);
    for (int i = 0; i < ndim; i++) {
        if (dims[i] < 1)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': dim %d is %lld "
                              "(must be >= 1)", fn, name, i, (long long)dims[i]);
        t->dims[i] = (uint64_t)dims[i];
    }
    if (!bnd_shape_size((unsigned)ndim, t->dims, elem, &t->numel, &t->nbytes))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': more than 2^40 bytes",
                          fn, name);
    if (t->nbytes > SIZE_MAX)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': too large for this "
                          "platform", fn, name);
    t->dtype = dtype;
    t->ndim = (unsigned)ndim;
    return DALLE_OK;
}

/* Append t (payload already owned by t) under name. */
static dalle_status push_tensor(dalle_bundle_writer *w, const char *name, wtensor *t)
{
    if (w->n_tensors == w->cap_tensors) {
        int cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *a = realloc(w->tensors, (size_t)cap * sizeof *a);
        if (!a)
            return oom("tensors");
        w->tensors = a;
        w->cap_tensors = cap;
    }
    if (!set_reserve(&w->tensor_set) || !(t->name = dup_str(name)))
        return oom("tensors");
    w->tensors[w->n_tensors] = *t;
    set_put(&w->tensor_set, w->tensors[w->n_tensors].name, w->n_tensors);
    w->n_tensors++;
    return DALLE_OK;
}

dalle_status dalle_bundle_writer_add_tensor(dalle_bundle_writer *w, const char *name,
                                            dalle_dtype dtype, int ndim, const int64_t *dims,
                                            const void *data, int level)
{
    const char *fn = "dalle_bundle_writer_add_tensor";
    wtensor t;
    dalle_status st = check_tensor(w, name, (unsigned)dtype, ndim, dims, &t, fn);
    if (st)
        return st;
    if (!data)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': data is NULL", fn,
                          name);
    if (level != 0 && (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel()))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': zstd level %d (0 for "
                          "raw, else %d..%d)", fn, name, level, ZSTD_minCLevel(),
                          ZSTD_maxCLevel());
    size_t n = (size_t)t.nbytes;
    t.crc = crc32_ieee(0, data, n);
    if (level == 0) {
        t.codec = DALLE_CODEC_RAW;
        if (!(t.payload = malloc(n)))
            return oom(name);
        memcpy(t.payload, data, n);
        t.stored = n;
    } else {
        t.codec = DALLE_CODEC_ZSTD;
        if (!w->cctx && !(w->cctx = ZSTD_createCCtx()))
            return oom("zstd");
        size_t bound = ZSTD_compressBound(n);
        if (ZSTD_isError(bound) || !(t.payload = malloc(bound)))
            return oom(name);
        ZSTD_CCtx_reset(w->cctx, ZSTD_reset_session_and_parameters);
        size_t r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_compressionLevel, level);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_contentSizeFlag, 1);
        if (!ZSTD_isError(r))
            r = ZSTD_CCtx_setParameter(w->cctx, ZSTD_c_checksumFlag, 1);
        if (!ZSTD_isError(r))
            r = ZSTD_compress2(w->cctx, t.payload, bound, data, n);
        if (ZSTD_isError(r)) {
            free(t.payload);
            return dalle_fail(ZSTD_getErrorCode(r) == ZSTD_error_memory_allocation
                                  ? DALLE_ERR_OUT_OF_MEMORY : DALLE_ERR_INVALID_ARGUMENT,
                              "%s: tensor '%s': zstd compression failed: %s", fn, name,
                              ZSTD_getErrorName(r));
        }
        unsigned char *shrunk = realloc(t.payload, r ? r : 1);
        if (shrunk)
            t.payload = shrunk;
        t.stored = r;
    }
    if ((st = push_tensor(w, name, &t)))
        free(t.payload);
    return st;
}

dalle_status dalle_bundle_writer_add_alias(dalle_bundle_writer *w, const char *name,
                                           const char *target, int ndim, const int64_t *dims,
                                           int64_t element_offset)
{
    const char *fn = "dalle_bundle_writer_add_alias";
    if (!w || !name || !target)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !w ? "writer" : !name ? "name" : "target");
    int ti = set_find(&w->tensor_set, target);
    if (ti < 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%.255s': alias target "
                          "'%.255s' has not been added", fn, name, target);
    const wtensor *tg = &w->tensors[ti];
    if (tg->codec == DALLE_CODEC_ALIAS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%.255s': alias target '%s' "
                          "is itself an alias", fn, name, target);
    wtensor t;
    dalle_status st = check_tensor(w, name, tg->dtype, ndim, dims, &t, fn);
    if (st)
        return st;
    if (element_offset < 0 || (uint64_t)element_offset > tg->numel ||
        t.numel > tg->numel - (uint64_t)element_offset)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': view [%lld, +%llu) "
                          "lies outside '%s' of %llu elements", fn, name,
                          (long long)element_offset, (unsigned long long)t.numel, target,
                          (unsigned long long)tg->numel);
    t.codec = DALLE_CODEC_ALIAS;
    t.target = (uint32_t)ti;
    t.element_offset = (uint64_t)element_offset;
    return push_tensor(w, name, &t);
}

/* ------------------------------------------------------------------------ */
/* Writing the file                                                         */
/* ------------------------------------------------------------------------ */

static dalle_status write_all(int fd, const void *data, size_t n, const char *path)
{
    const unsigned char *p = data;
    while (n > 0) {
        size_t want = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t k = write(fd, p, want);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return dalle_fail(DALLE_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        }
        p += k;
        n -= (size_t)k;
    }
    return DALLE_OK;
}

static dalle_status write_zeros(int fd, uint64_t n, const char *path)
{
    static const unsigned char zeros[BND_ALIGN];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        dalle_status st = write_all(fd, zeros, k, path);
        if (st)
            return st;
        n -= k;
    }
    return DALLE_OK;
}

static uint64_t align64(uint64_t x) { return (x + (BND_ALIGN - 1)) & ~(uint64_t)(BND_ALIGN - 1); }

dalle_status dalle_bundle_writer_finish(dalle_bundle_writer *w, const char *path)
{
    if (!w || !path)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_writer_finish: %s is NULL",
                          !w ? "writer" : "path");
    /* general.source is required; say who wrote the file if the caller did
       not. It is added to the encoded metadata only, not to the writer. */
    static const char default_source[] = "libdalle dalle_bundle_writer";
    int add_source = set_find(&w->meta_set, "general.source") < 0;
    uint32_t meta_count = (uint32_t)w->n_meta + (add_source ? 1u : 0u);
    if (meta_count > BND_MAX_META)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: more than 65536 metadata keys "
                          "(general.source included)", path);
    unsigned char source_enc[2 + 14 + 1 + 4 + sizeof default_source];
    size_t source_size = 0;
    if (add_source) {
        size_t sn = sizeof default_source - 1;
        bnd_put_u16(source_enc, 14);
        memcpy(source_enc + 2, "general.source", 14);
        source_enc[16] = DALLE_META_STRING;
        bnd_put_u32(source_enc + 17, (uint32_t)sn);
        memcpy(source_enc + 21, default_source, sn);
        source_size = 21 + sn;
    }

    /* Sizes and layout. */
    uint64_t meta_size = source_size;
    for (int i = 0; i < w->n_meta; i++)
        meta_size += w->meta[i].enc_size;
    uint64_t dir_size = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        dir_size += 2 + strlen(t->name) + 4 + 8 * (uint64_t)t->ndim +
                    (t->codec == DALLE_CODEC_ALIAS ? 12 : 20);
    }
    uint64_t meta_offset = BND_HEADER_SIZE;
    uint64_t dir_offset = meta_offset + meta_size;
    uint64_t data_offset = align64(dir_offset + dir_size);
    uint64_t data_size = 0;
    uint64_t *offsets = malloc((w->n_tensors ? (size_t)w->n_tensors : 1) * sizeof *offsets);
    unsigned char *meta = malloc(meta_size ? (size_t)meta_size : 1);
    unsigned char *dir = malloc(dir_size ? (size_t)dir_size : 1);
    if (!offsets || !meta || !dir) {
        free(offsets);
        free(meta);
        free(dir);
        return oom("finish");
    }
    for (int i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->codec == DALLE_CODEC_ALIAS)
            continue;
        offsets[i] = align64(data_size);
        data_size = offsets[i] + t->stored;
    }

    /* Metadata: general.kind (entry 0), general.source, the rest in order. */
    size_t pos = 0;
    memcpy(meta, w->meta[0].enc, w->meta[0].enc_size);
    pos += w->meta[0].enc_size;
    if (add_source) {
        memcpy(meta + pos, source_enc, source_size);
        pos += source_size;
    }
    for (int i = 1; i < w->n_meta; i++) {
        memcpy(meta + pos, w->meta[i].enc, w->meta[i].enc_size);
        pos += w->meta[i].enc_size;
    }

    /* Directory. */
    pos = 0;
    for (int i = 0; i < w->n_tensors; i++) {
        const wtensor *t = &w->tensors[i];
        size_t nl = strlen(t->name);
        bnd_put_u16(dir + pos, (uint16_t)nl);
        memcpy(dir + pos + 2, t->name, nl);
        pos += 2 + nl;
        dir[pos++] = (unsigned char)t->dtype;
        dir[pos++] = (unsigned char)t->ndim;
        dir[pos++] = (unsigned char)t->codec;
        dir[pos++] = 0;
        for (unsigned d = 0; d < t->ndim; d++, pos += 8)
            bnd_put_u64(dir + pos, t->dims[d]);
        if (t->codec == DALLE_CODEC_ALIAS) {
            bnd_put_u32(dir + pos, t->target);
            bnd_put_u64(dir + pos + 4, t->element_offset);
            pos += 12;
        } else {
            bnd_put_u64(dir + pos, offsets[i]);
            bnd_put_u64(dir + pos + 8, t->stored);
            bnd_put_u32(dir + pos + 16, t->crc);
            pos += 20;
        }
    }

    /* Header. */
    unsigned char h[BND_HEADER_SIZE] = {0};
    memcpy(h, BND_MAGIC, 8);
    bnd_put_u16(h + 8, BND_VERSION_MAJOR);
    bnd_put_u16(h + 10, BND_VERSION_MINOR);
    bnd_put_u32(h + 12, BND_HEADER_SIZE);
    bnd_put_u64(h + 16, data_offset + data_size);
    bnd_put_u64(h + 24, meta_offset);
    bnd_put_u64(h + 32, meta_size);
    bnd_put_u32(h + 40, meta_count);
    bnd_put_u32(h + 44, crc32_ieee(0, meta, (size_t)meta_size));
    bnd_put_u64(h + 48, dir_offset);
    bnd_put_u64(h + 56, dir_size);
    bnd_put_u32(h + 64, (uint32_t)w->n_tensors);
    bnd_put_u32(h + 68, crc32_ieee(0, dir, (size_t)dir_size));
    bnd_put_u64(h + 72, data_offset);
    bnd_put_u64(h + 80, data_size);
    bnd_put_u32(h + BND_HEADER_CRC_AT, crc32_ieee(0, h, BND_HEADER_CRC_AT));

    /* A temporary file beside the destination, renamed into place. */
    static atomic_uint counter;
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 64);
    dalle_status st = DALLE_OK;
    int fd = -1;
    if (!tmp) {
        st = oom("finish");
    } else {
        for (int attempt = 0; attempt < 100; attempt++) {
            snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(),
                     atomic_fetch_add(&counter, 1u));
            fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
            if (fd >= 0 || errno != EEXIST)
                break;
        }
        if (fd < 0)
            st = dalle_fail(DALLE_ERR_IO, "%s: cannot create temporary file '%s': %s", path,
                            tmp, strerror(errno));
    }
    if (!st)
        st = write_all(fd, h, sizeof h, path);
    if (!st)
        st = write_all(fd, meta, (size_t)meta_size, path);
    if (!st)
        st = write_all(fd, dir, (size_t)dir_size, path);
    if (!st)
        st = write_zeros(fd, data_offset - (dir_offset + dir_size), path);
    uint64_t at = 0; /* relative to data_offset */
    for (int i = 0; i < w->n_tensors && !st; i++) {
        const wtensor *t = &w->tensors[i];
        if (t->codec == DALLE_CODEC_ALIAS)
            continue;
        st = write_zeros(fd, offsets[i] - at, path);
        if (!st)
            st = write_all(fd, t->payload, (size_t)t->stored, path);
        at = offsets[i] + t->stored;
    }
    if (!st && fsync(fd) != 0)
        st = dalle_fail(DALLE_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (fd >= 0 && close(fd) != 0 && !st)
        st = dalle_fail(DALLE_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0)
        st = dalle_fail(DALLE_ERR_IO, "%s: cannot rename '%s' into place: %s", path, tmp,
                        strerror(errno));
    if (st && fd >= 0)
        unlink(tmp);
    free(tmp);
    free(offsets);
    free(meta);
    free(dir);
    return st;
}
