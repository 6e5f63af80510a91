/* The bundle reader: dalle_bundle_* of include/dalle/dalle.h and the model
 * calls of bundle.h. The format and the checks are those of
 * docs/bundle-format.md ("What a reader must check"), in that order.
 *
 * Opening reads only the header, the metadata and the directory (pread of
 * [0, data_offset)); payloads are read when a tensor is read. Everything read
 * is checked before it is used and every size before anything is allocated.
 * Any number of threads may read one bundle: file reads use pread, the f32
 * cache of bundle_tensor_f32 is filled under a mutex, and the rest of the
 * bundle is immutable after open.
 */
#define _FILE_OFFSET_BITS 64

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>
#include <zstd_errors.h>

#include "bundle.h"
#include "bundle_internal.h"
#include "crc32.h"
#include "error.h"
#include "half.h"

/* Fuzzing builds (tests/meson.build passes this define, as OSS-Fuzz does)
   skip the crc32 comparisons so that the fuzzer can reach the parsers behind
   them. Never define it in a build that reads real files. */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define CRC_MISMATCH(stored, computed) ((void)(stored), (void)(computed), 0)
#else
#define CRC_MISMATCH(stored, computed) ((stored) != (computed))
#endif

#define IO_CHUNK ((size_t)1 << 20)      /* scratch size for streamed reads */
#define RAW_READ_CHUNK ((size_t)64 << 20) /* pread size straight into a destination */

typedef struct meta_entry {
    char *key;
    dalle_meta_type type;
    int64_t count; /* 1 for scalars (strings included) */
    union {
        int64_t i;
        double f;
        int b;
        char *s;
        int64_t *ia;
        double *fa;
        char **sa; /* one block: count pointers, then the strings */
    } v;
} meta_entry;

typedef struct tensor_entry {
    dalle_tensor_info info; /* info.name points into dalle_bundle.names */
    uint64_t offset;        /* payload start relative to data_offset */
    uint32_t crc;
    float *f32;             /* bundle_tensor_f32 cache; aliases point into the target's */
    void *native;           /* bundle_tensor_typed cache of a f16/bf16/i8 tensor, the same */
} tensor_entry;

struct dalle_bundle {
    char *path;
    int fd;                   /* -1 for a bundle in memory */
    const unsigned char *mem; /* the caller's buffer, or NULL */
    uint64_t file_size;
    uint64_t data_offset;
    uint64_t data_size;
    int version_minor;

    int n_meta;
    meta_entry *meta;
    meta_entry **meta_sorted; /* by key */

    int n_tensors;
    tensor_entry *tensors;
    tensor_entry **sorted;    /* by name */
    char *names;              /* all tensor names, NUL-terminated */

    const char *kind;
    pthread_mutex_t lock;     /* guards tensors[].f32 and .native */
};

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */
/* ------------------------------------------------------------------------ */

const char *bundle_path(const dalle_bundle *b) { return b ? b->path : "<no bundle>"; }

static void *aligned_buffer(uint64_t bytes)
{
    if (bytes == 0)
        bytes = 1;
    if (bytes > SIZE_MAX - (BND_ALIGN - 1))
        return NULL;
    size_t n = ((size_t)bytes + (BND_ALIGN - 1)) & ~(size_t)(BND_ALIGN - 1);
    return aligned_alloc(BND_ALIGN, n);
}

/* Read n bytes at absolute offset off (already checked to lie in the file). */
static dalle_status read_at(const dalle_bundle *b, uint64_t off, void *dst, size_t n,
                            const char *what)
{
    if (b->mem) {
        memcpy(dst, b->mem + off, n);
        return DALLE_OK;
    }
    unsigned char *p = dst;
    while (n > 0) {
        size_t want = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t got = pread(b->fd, p, want, (off_t)off);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return dalle_fail(DALLE_ERR_IO, "%s: %s: read failed at offset %llu: %s", b->path,
                              what, (unsigned long long)off, strerror(errno));
        }
        if (got == 0)
            return dalle_fail(DALLE_ERR_IO, "%s: %s: unexpected end of file at offset %llu "
                              "(the file shrank while open?)", b->path, what,
                              (unsigned long long)off);
        p += got;
        off += (uint64_t)got;
        n -= (size_t)got;
    }
    return DALLE_OK;
}

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *dims)
{
    size_t len = 0;
    len += (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && len < cap; i++)
        len += (size_t)snprintf(buf + len, cap - len, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

/* ------------------------------------------------------------------------ */
/* Parsing the metadata and the directory                                   */
/* ------------------------------------------------------------------------ */

typedef struct cursor {
    const unsigned char *p;
    size_t size;
    size_t pos;
} cursor;

static int take(cursor *c, size_t n, const unsigned char **out)
{
    if (c->size - c->pos < n)
        return 0;
    *out = c->p + c->pos;
    c->pos += n;
    return 1;
}
static int take_u8(cursor *c, unsigned *v)
{
    const unsigned char *p;
    if (!take(c, 1, &p))
        return 0;
    *v = p[0];
    return 1;
}
static int take_u16(cursor *c, unsigned *v)
{
    const unsigned char *p;
    if (!take(c, 2, &p))
        return 0;
    *v = bnd_get_u16(p);
    return 1;
}
static int take_u32(cursor *c, uint32_t *v)
{
    const unsigned char *p;
    if (!take(c, 4, &p))
        return 0;
    *v = bnd_get_u32(p);
    return 1;
}
static int take_u64(cursor *c, uint64_t *v)
{
    const unsigned char *p;
    if (!take(c, 8, &p))
        return 0;
    *v = bnd_get_u64(p);
    return 1;
}

static char *dup_bytes(const unsigned char *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

static int cmp_meta(const void *a, const void *b)
{
    return strcmp((*(meta_entry *const *)a)->key, (*(meta_entry *const *)b)->key);
}
static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(tensor_entry *const *)a)->info.name, (*(tensor_entry *const *)b)->info.name);
}
static int cmp_tensor_offset(const void *a, const void *b)
{
    uint64_t x = (*(tensor_entry *const *)a)->offset, y = (*(tensor_entry *const *)b)->offset;
    return x < y ? -1 : x > y;
}

#define META_TRUNC(i) \
    dalle_fail(DALLE_ERR_FORMAT, "%s: metadata entry %d: runs past the end of the section", \
               b->path, (i))

/* One string value (u32 length, UTF-8 bytes) at c. */
static dalle_status parse_string(dalle_bundle *b, cursor *c, const char *key, int i,
                                 const unsigned char **s, uint32_t *len)
{
    if (!take_u32(c, len))
        return META_TRUNC(i);
    if (*len > BND_MAX_STRING)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s': string of %u bytes "
                          "(limit 16 MiB)", b->path, key, *len);
    if (!take(c, *len, s))
        return META_TRUNC(i);
    if (!bnd_valid_utf8(*s, *len))
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s': string is not valid "
                          "UTF-8 or contains a NUL byte", b->path, key);
    return DALLE_OK;
}

static dalle_status parse_meta(dalle_bundle *b, const unsigned char *sec, uint64_t size,
                               uint32_t count)
{
    cursor c = {sec, (size_t)size, 0};
    b->meta = calloc(count ? count : 1, sizeof *b->meta);
    b->meta_sorted = malloc((count ? count : 1) * sizeof *b->meta_sorted);
    if (!b->meta || !b->meta_sorted)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata: out of memory", b->path);
    for (uint32_t n = 0; n < count; n++) {
        int i = (int)n;
        meta_entry *m = &b->meta[n];
        unsigned key_len, type;
        const unsigned char *key;
        if (!take_u16(&c, &key_len))
            return META_TRUNC(i);
        if (key_len < 1 || key_len > BND_MAX_NAME)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata entry %d: key length %u "
                              "(must be 1..255)", b->path, i, key_len);
        if (!take(&c, key_len, &key))
            return META_TRUNC(i);
        if (!bnd_valid_key((const char *)key, key_len))
            return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata entry %d: key has a byte "
                              "outside [A-Za-z0-9_.-]", b->path, i);
        if (!(m->key = dup_bytes(key, key_len)))
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata: out of memory", b->path);
        b->n_meta = i + 1; /* from here on, close() frees this entry */
        if (!take_u8(&c, &type))
            return META_TRUNC(i);
        m->count = 1;
        switch (type) {
        case DALLE_META_I64:
        case DALLE_META_F64: {
            uint64_t v;
            if (!take_u64(&c, &v))
                return META_TRUNC(i);
            if (type == DALLE_META_I64)
                m->v.i = (int64_t)v;
            else
                memcpy(&m->v.f, &v, 8);
            break;
        }
        case DALLE_META_BOOL: {
            unsigned v;
            if (!take_u8(&c, &v))
                return META_TRUNC(i);
            if (v > 1)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s': bool value %u "
                                  "(must be 0 or 1)", b->path, m->key, v);
            m->v.b = (int)v;
            break;
        }
        case DALLE_META_STRING: {
            const unsigned char *s;
            uint32_t len;
            dalle_status st = parse_string(b, &c, m->key, i, &s, &len);
            if (st)
                return st;
            if (!(m->v.s = dup_bytes(s, len)))
                return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata: out of memory",
                                  b->path);
            break;
        }
        case DALLE_META_I64_ARRAY:
        case DALLE_META_F64_ARRAY: {
            uint32_t k;
            const unsigned char *p;
            if (!take_u32(&c, &k))
                return META_TRUNC(i);
            if (k > BND_MAX_ARRAY)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s': array of %u "
                                  "elements (limit 1048576)", b->path, m->key, k);
            if (!take(&c, (size_t)k * 8, &p))
                return META_TRUNC(i);
            if (type == DALLE_META_I64_ARRAY) {
                int64_t *a = malloc(k ? (size_t)k * sizeof *a : 1);
                if (!a)
                    return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata: out of memory",
                                      b->path);
                for (uint32_t j = 0; j < k; j++)
                    a[j] = (int64_t)bnd_get_u64(p + 8 * (size_t)j);
                m->v.ia = a;
            } else {
                double *a = malloc(k ? (size_t)k * sizeof *a : 1);
                if (!a)
                    return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata: out of memory",
                                      b->path);
                for (uint32_t j = 0; j < k; j++) {
                    uint64_t bits = bnd_get_u64(p + 8 * (size_t)j);
                    memcpy(&a[j], &bits, 8);
                }
                m->v.fa = a;
            }
            m->count = k;
            break;
        }
        case DALLE_META_STRING_ARRAY: {
            uint32_t k;
            if (!take_u32(&c, &k))
                return META_TRUNC(i);
            if (k > BND_MAX_ARRAY)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s': array of %u "
                                  "elements (limit 1048576)", b->path, m->key, k);
            /* First pass: check every element and size the block. */
            size_t start = c.pos, total = 0;
            for (uint32_t j = 0; j < k; j++) {
                const unsigned char *s;
                uint32_t len;
                dalle_status st = parse_string(b, &c, m->key, i, &s, &len);
                if (st)
                    return st;
                total += (size_t)len + 1; /* ≤ the section size: no overflow */
            }
            size_t ptrs = (size_t)k * sizeof(char *);
            char **sa = malloc(ptrs + total + 1);
            if (!sa)
                return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata: out of memory",
                                  b->path);
            char *chars = (char *)sa + ptrs;
            c.pos = start;
            for (uint32_t j = 0; j < k; j++) { /* checked above: cannot fail */
                const unsigned char *s = NULL;
                uint32_t len = 0;
                take_u32(&c, &len);
                take(&c, len, &s);
                if (len)
                    memcpy(chars, s, len);
                chars[len] = 0;
                sa[j] = chars;
                chars += (size_t)len + 1;
            }
            m->v.sa = sa;
            m->count = k;
            break;
        }
        default:
            return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s': unknown value type %u",
                              b->path, m->key, type);
        }
        m->type = (dalle_meta_type)type;
    }
    if (c.pos != c.size)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata: %zu bytes left over after the %u "
                          "entries of meta_count", b->path, c.size - c.pos, count);
    for (int i = 0; i < b->n_meta; i++)
        b->meta_sorted[i] = &b->meta[i];
    qsort(b->meta_sorted, (size_t)b->n_meta, sizeof *b->meta_sorted, cmp_meta);
    for (int i = 1; i < b->n_meta; i++)
        if (strcmp(b->meta_sorted[i - 1]->key, b->meta_sorted[i]->key) == 0)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key '%s' appears more than once",
                              b->path, b->meta_sorted[i]->key);
    return DALLE_OK;
}

#define DIR_TRUNC(i) \
    dalle_fail(DALLE_ERR_FORMAT, "%s: tensor directory entry %d: runs past the end of the " \
               "section", b->path, (i))

static dalle_status parse_dir(dalle_bundle *b, const unsigned char *sec, uint64_t size,
                              uint32_t count)
{
    cursor c = {sec, (size_t)size, 0};
    /* Every name has a 2-byte length before it, so names and their NULs fit
       in size bytes. */
    b->tensors = calloc(count ? count : 1, sizeof *b->tensors);
    b->sorted = malloc((count ? count : 1) * sizeof *b->sorted);
    b->names = malloc(size ? (size_t)size : 1);
    if (!b->tensors || !b->sorted || !b->names)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor directory: out of memory",
                          b->path);
    char *names = b->names;
    for (uint32_t n = 0; n < count; n++) {
        int i = (int)n;
        tensor_entry *t = &b->tensors[n];
        dalle_tensor_info *info = &t->info;
        unsigned name_len, dtype, ndim, codec, reserved;
        const unsigned char *name;
        if (!take_u16(&c, &name_len))
            return DIR_TRUNC(i);
        if (name_len < 1 || name_len > BND_MAX_NAME)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor directory entry %d: name length "
                              "%u (must be 1..255)", b->path, i, name_len);
        if (!take(&c, name_len, &name))
            return DIR_TRUNC(i);
        if (!bnd_valid_name((const char *)name, name_len))
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor directory entry %d: name has a "
                              "byte outside [A-Za-z0-9_.:/-]", b->path, i);
        memcpy(names, name, name_len);
        names[name_len] = 0;
        info->name = names;
        names += name_len + 1;
        const char *nm = info->name;
        if (!take_u8(&c, &dtype) || !take_u8(&c, &ndim) || !take_u8(&c, &codec) ||
            !take_u8(&c, &reserved))
            return DIR_TRUNC(i);
        unsigned elem = bnd_dtype_size(dtype);
        if (!elem)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': unknown dtype code %u",
                              b->path, nm, dtype);
        if (ndim > DALLE_MAX_DIMS)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': ndim %u (at most 8)",
                              b->path, nm, ndim);
        if (codec > DALLE_CODEC_ALIAS)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': unknown codec %u",
                              b->path, nm, codec);
        if (reserved != 0)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': reserved byte is %u, not 0",
                              b->path, nm, reserved);
        uint64_t dims[DALLE_MAX_DIMS];
        for (unsigned d = 0; d < ndim; d++) {
            if (!take_u64(&c, &dims[d]))
                return DIR_TRUNC(i);
            if (dims[d] == 0)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': dim %u is 0", b->path,
                                  nm, d);
        }
        uint64_t numel, nbytes;
        if (!bnd_shape_size(ndim, dims, elem, &numel, &nbytes))
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': shape overflows or exceeds "
                              "2^40 bytes", b->path, nm);
        info->dtype = (dalle_dtype)dtype;
        info->ndim = (int)ndim;
        for (unsigned d = 0; d < ndim; d++)
            info->dims[d] = (int64_t)dims[d];
        info->numel = (int64_t)numel;
        info->nbytes = nbytes;
        info->codec = (dalle_codec)codec;
        info->alias_of = -1;
        info->alias_offset = 0;
        if (codec == DALLE_CODEC_ALIAS) {
            uint32_t target;
            uint64_t eoff;
            if (!take_u32(&c, &target) || !take_u64(&c, &eoff))
                return DIR_TRUNC(i);
            if (target >= n)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': alias target %u is not "
                                  "an earlier entry", b->path, nm, target);
            const tensor_entry *tg = &b->tensors[target];
            if (tg->info.codec == DALLE_CODEC_ALIAS)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': alias target '%s' is "
                                  "itself an alias", b->path, nm, tg->info.name);
            if (tg->info.dtype != info->dtype)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': dtype %s differs from "
                                  "its alias target '%s' (%s)", b->path, nm,
                                  bnd_dtype_name(dtype), tg->info.name,
                                  bnd_dtype_name(tg->info.dtype));
            uint64_t tn = (uint64_t)tg->info.numel;
            if (eoff > tn || numel > tn - eoff)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': view [%llu, +%llu) lies "
                                  "outside its alias target '%s' of %llu elements", b->path,
                                  nm, (unsigned long long)eoff, (unsigned long long)numel,
                                  tg->info.name, (unsigned long long)tn);
            info->alias_of = (int)target;
            info->alias_offset = (int64_t)eoff;
            info->stored_bytes = 0;
        } else {
            uint64_t off, stored;
            uint32_t crc;
            if (!take_u64(&c, &off) || !take_u64(&c, &stored) || !take_u32(&c, &crc))
                return DIR_TRUNC(i);
            if (off % BND_ALIGN)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': payload offset %llu is "
                                  "not a multiple of 64", b->path, nm, (unsigned long long)off);
            if (off > b->data_size || stored > b->data_size - off)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': payload [%llu, +%llu) "
                                  "lies outside the data area of %llu bytes", b->path, nm,
                                  (unsigned long long)off, (unsigned long long)stored,
                                  (unsigned long long)b->data_size);
            if (codec == DALLE_CODEC_RAW && stored != nbytes)
                return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': raw payload of %llu "
                                  "bytes, the shape needs %llu", b->path, nm,
                                  (unsigned long long)stored, (unsigned long long)nbytes);
            if (codec == DALLE_CODEC_ZSTD) {
                if (stored == 0)
                    return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': empty zstd payload",
                                      b->path, nm);
                if (stored < (UINT64_MAX - BND_ZSTD_SLACK) / BND_ZSTD_MAX_RATIO &&
                    nbytes > stored * BND_ZSTD_MAX_RATIO + BND_ZSTD_SLACK)
                    return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': %llu bytes cannot "
                                      "come from a zstd payload of %llu bytes", b->path, nm,
                                      (unsigned long long)nbytes, (unsigned long long)stored);
            }
            t->offset = off;
            t->crc = crc;
            info->stored_bytes = stored;
        }
        b->n_tensors = i + 1;
    }
    if (c.pos != c.size)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor directory: %zu bytes left over after "
                          "the %u entries of tensor_count", b->path, c.size - c.pos, count);

    /* Unique names. */
    for (int i = 0; i < b->n_tensors; i++)
        b->sorted[i] = &b->tensors[i];
    qsort(b->sorted, (size_t)b->n_tensors, sizeof *b->sorted, cmp_tensor_name);
    for (int i = 1; i < b->n_tensors; i++)
        if (strcmp(b->sorted[i - 1]->info.name, b->sorted[i]->info.name) == 0)
            return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s' appears more than once",
                              b->path, b->sorted[i]->info.name);

    /* Payloads must not overlap: sort them by offset (a scratch array). */
    size_t np = 0;
    tensor_entry **by_off = malloc((count ? count : 1) * sizeof *by_off);
    if (!by_off)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor directory: out of memory",
                          b->path);
    for (int i = 0; i < b->n_tensors; i++)
        if (b->tensors[i].info.codec != DALLE_CODEC_ALIAS && b->tensors[i].info.stored_bytes)
            by_off[np++] = &b->tensors[i];
    qsort(by_off, np, sizeof *by_off, cmp_tensor_offset);
    dalle_status st = DALLE_OK;
    for (size_t i = 1; i < np; i++) {
        const tensor_entry *p = by_off[i - 1], *q = by_off[i];
        if (p->offset + p->info.stored_bytes > q->offset) { /* both ≤ data_size */
            st = dalle_fail(DALLE_ERR_FORMAT, "%s: tensors '%s' and '%s' overlap in the data "
                            "area", b->path, p->info.name, q->info.name);
            break;
        }
    }
    free(by_off);
    return st;
}

static const meta_entry *find_meta(const dalle_bundle *b, const char *key)
{
    if (!b || !key || b->n_meta == 0)
        return NULL;
    meta_entry probe, *pp = &probe;
    probe.key = (char *)key;
    meta_entry **hit = bsearch(&pp, b->meta_sorted, (size_t)b->n_meta, sizeof *b->meta_sorted,
                               cmp_meta);
    return hit ? *hit : NULL;
}

static int find_index(const dalle_bundle *b, const char *name)
{
    if (!b || !name || b->n_tensors == 0)
        return -1;
    tensor_entry probe, *pp = &probe;
    probe.info.name = name;
    tensor_entry **hit = bsearch(&pp, b->sorted, (size_t)b->n_tensors, sizeof *b->sorted,
                                 cmp_tensor_name);
    return hit ? (int)(*hit - b->tensors) : -1;
}

/* ------------------------------------------------------------------------ */
/* Opening                                                                  */
/* ------------------------------------------------------------------------ */

static dalle_status open_common(dalle_bundle *b, uint64_t real_size)
{
    unsigned char h[BND_HEADER_SIZE];
    dalle_status st;
    if (real_size < BND_HEADER_SIZE)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: the file is %llu bytes, shorter than "
                          "the 128-byte header", b->path, (unsigned long long)real_size);
    if ((st = read_at(b, 0, h, sizeof h, "header")))
        return st;
    if (memcmp(h, BND_MAGIC, 8) != 0)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: bad magic (not a libdalle bundle)",
                          b->path);
    unsigned major = bnd_get_u16(h + 8), minor = bnd_get_u16(h + 10);
    if (major != BND_VERSION_MAJOR)
        return dalle_fail(DALLE_ERR_VERSION, "%s: header: format version %u.%u, this reader "
                          "reads version 1.x", b->path, major, minor);
    if (bnd_get_u32(h + 12) != BND_HEADER_SIZE)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: header_size %u (must be 128)",
                          b->path, bnd_get_u32(h + 12));
    uint32_t hcrc = crc32_ieee(0, h, BND_HEADER_CRC_AT);
    if (CRC_MISMATCH(bnd_get_u32(h + BND_HEADER_CRC_AT), hcrc))
        return dalle_fail(DALLE_ERR_CHECKSUM, "%s: header: crc32 mismatch (stored 0x%08x, "
                          "computed 0x%08x)", b->path, bnd_get_u32(h + BND_HEADER_CRC_AT), hcrc);
    if (minor == 0) /* later minor versions may give the reserved bytes a meaning */
        for (unsigned k = BND_RESERVED_AT; k < BND_HEADER_CRC_AT; k++)
            if (h[k])
                return dalle_fail(DALLE_ERR_FORMAT, "%s: header: reserved byte %u is not zero",
                                  b->path, k);
    b->version_minor = (int)minor;

    uint64_t file_size = bnd_get_u64(h + 16);
    uint64_t meta_offset = bnd_get_u64(h + 24), meta_size = bnd_get_u64(h + 32);
    uint32_t meta_count = bnd_get_u32(h + 40), meta_crc = bnd_get_u32(h + 44);
    uint64_t dir_offset = bnd_get_u64(h + 48), dir_size = bnd_get_u64(h + 56);
    uint32_t tensor_count = bnd_get_u32(h + 64), dir_crc = bnd_get_u32(h + 68);
    uint64_t data_offset = bnd_get_u64(h + 72), data_size = bnd_get_u64(h + 80);

    if (file_size != real_size)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: file_size is %llu but the file has "
                          "%llu bytes (truncated or extended)", b->path,
                          (unsigned long long)file_size, (unsigned long long)real_size);
    if (meta_offset != BND_HEADER_SIZE)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: meta_offset %llu (must be 128, right "
                          "after the header)", b->path, (unsigned long long)meta_offset);
    if (meta_size > file_size - meta_offset)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: metadata section [%llu, +%llu) runs "
                          "past the end of the file", b->path, (unsigned long long)meta_offset,
                          (unsigned long long)meta_size);
    if (dir_offset != meta_offset + meta_size)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: dir_offset %llu (must be %llu, right "
                          "after the metadata)", b->path, (unsigned long long)dir_offset,
                          (unsigned long long)(meta_offset + meta_size));
    if (dir_size > file_size - dir_offset)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: tensor directory [%llu, +%llu) runs "
                          "past the end of the file", b->path, (unsigned long long)dir_offset,
                          (unsigned long long)dir_size);
    uint64_t dir_end = dir_offset + dir_size; /* ≤ file_size */
    uint64_t want_data = (dir_end + (BND_ALIGN - 1)) & ~(uint64_t)(BND_ALIGN - 1);
    if (data_offset % BND_ALIGN)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: data_offset %llu is not a multiple "
                          "of 64", b->path, (unsigned long long)data_offset);
    if (data_offset != want_data)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: data_offset %llu (must be %llu, the "
                          "first multiple of 64 after the directory)", b->path,
                          (unsigned long long)data_offset, (unsigned long long)want_data);
    if (data_offset > file_size || data_size != file_size - data_offset)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: data area [%llu, +%llu) does not end "
                          "at the end of the file (%llu)", b->path,
                          (unsigned long long)data_offset, (unsigned long long)data_size,
                          (unsigned long long)file_size);
    if (meta_count > BND_MAX_META)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: meta_count %u (limit 65536)", b->path,
                          meta_count);
    if (tensor_count > BND_MAX_TENSORS)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: header: tensor_count %u (limit 1048576)",
                          b->path, tensor_count);
    b->file_size = file_size;
    b->data_offset = data_offset;
    b->data_size = data_size;

    /* Metadata, directory and the padding before the data: [128, data_offset). */
    uint64_t span = data_offset - meta_offset;
    if (span > SIZE_MAX)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata and directory of %llu bytes "
                          "do not fit in memory", b->path, (unsigned long long)span);
    const unsigned char *sec;
    unsigned char *owned = NULL;
    if (b->mem) {
        sec = b->mem + meta_offset;
    } else {
        owned = malloc(span ? (size_t)span : 1);
        if (!owned)
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: metadata and directory: out of "
                              "memory (%llu bytes)", b->path, (unsigned long long)span);
        if ((st = read_at(b, meta_offset, owned, (size_t)span, "metadata"))) {
            free(owned);
            return st;
        }
        sec = owned;
    }
    const unsigned char *meta = sec, *dir = sec + meta_size;
    uint32_t c;
    st = DALLE_OK;
    for (uint64_t k = dir_end; k < data_offset; k++)
        if (sec[k - meta_offset]) {
            st = dalle_fail(DALLE_ERR_FORMAT, "%s: padding before the data area is not zero",
                            b->path);
            break;
        }
    if (!st && CRC_MISMATCH(meta_crc, c = crc32_ieee(0, meta, (size_t)meta_size)))
        st = dalle_fail(DALLE_ERR_CHECKSUM, "%s: metadata: crc32 mismatch (stored 0x%08x, "
                        "computed 0x%08x)", b->path, meta_crc, c);
    if (!st && CRC_MISMATCH(dir_crc, c = crc32_ieee(0, dir, (size_t)dir_size)))
        st = dalle_fail(DALLE_ERR_CHECKSUM, "%s: tensor directory: crc32 mismatch (stored "
                        "0x%08x, computed 0x%08x)", b->path, dir_crc, c);
    if (!st)
        st = parse_meta(b, meta, meta_size, meta_count);
    if (!st)
        st = parse_dir(b, dir, dir_size, tensor_count);
    free(owned);
    if (st)
        return st;

    const meta_entry *kind = find_meta(b, "general.kind");
    if (!kind)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata: required key 'general.kind' is "
                          "missing", b->path);
    if (kind->type != DALLE_META_STRING)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key 'general.kind': type %s, not "
                          "string", b->path, bnd_meta_type_name(kind->type));
    if (!bnd_known_kind(kind->v.s, strlen(kind->v.s)))
        return dalle_fail(DALLE_ERR_FORMAT, "%s: metadata key 'general.kind': unknown kind "
                          "'%.64s'", b->path, kind->v.s);
    b->kind = kind->v.s;
    return DALLE_OK;
}

static dalle_bundle *new_bundle(const char *path)
{
    dalle_bundle *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->fd = -1;
    b->path = dup_bytes((const unsigned char *)path, strlen(path));
    if (!b->path || pthread_mutex_init(&b->lock, NULL) != 0) {
        free(b->path);
        free(b);
        return NULL;
    }
    return b;
}

dalle_status dalle_bundle_open(const char *path, dalle_bundle **out)
{
    if (!path || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_open: %s is NULL",
                          !path ? "path" : "out");
    dalle_bundle *b = new_bundle(path);
    if (!b)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    int fd;
    do
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block */
    while (fd < 0 && errno == EINTR);
    if (fd < 0) {
        dalle_status st = dalle_fail(DALLE_ERR_IO, "%s: cannot open: %s", path,
                                     strerror(errno));
        dalle_bundle_close(b);
        return st;
    }
    b->fd = fd;
    struct stat sb;
    const char *why = NULL;
    if (fstat(fd, &sb) != 0)
        why = strerror(errno);
    else if (S_ISDIR(sb.st_mode))
        why = "is a directory";
    else if (!S_ISREG(sb.st_mode))
        why = "not a regular file";
    if (why) {
        dalle_status st = dalle_fail(DALLE_ERR_IO, "%s: cannot read: %s", path, why);
        dalle_bundle_close(b);
        return st;
    }
    dalle_status st = open_common(b, (uint64_t)sb.st_size);
    if (st) {
        dalle_bundle_close(b);
        return st;
    }
    *out = b;
    return DALLE_OK;
}

dalle_status dalle_bundle_open_memory(const void *data, size_t size, dalle_bundle **out)
{
    if (!out || (!data && size))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_open_memory: %s is NULL",
                          !out ? "out" : "data");
    dalle_bundle *b = new_bundle("<memory>");
    if (!b)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "<memory>: out of memory");
    static const unsigned char empty[1];
    b->mem = data ? data : empty;
    dalle_status st = open_common(b, (uint64_t)size);
    if (st) {
        dalle_bundle_close(b);
        return st;
    }
    *out = b;
    return DALLE_OK;
}

void dalle_bundle_close(dalle_bundle *b)
{
    if (!b)
        return;
    for (int i = 0; i < b->n_meta; i++) {
        meta_entry *m = &b->meta[i];
        free(m->key);
        switch (m->type) {
        case DALLE_META_STRING: free(m->v.s); break;
        case DALLE_META_I64_ARRAY: free(m->v.ia); break;
        case DALLE_META_F64_ARRAY: free(m->v.fa); break;
        case DALLE_META_STRING_ARRAY: free(m->v.sa); break;
        default: break;
        }
    }
    if (b->tensors)
        for (int i = 0; i < b->n_tensors; i++)
            if (b->tensors[i].info.codec != DALLE_CODEC_ALIAS) {
                free(b->tensors[i].f32);
                free(b->tensors[i].native);
            }
    free(b->meta);
    free(b->meta_sorted);
    free(b->tensors);
    free(b->sorted);
    free(b->names);
    if (b->fd >= 0)
        close(b->fd);
    pthread_mutex_destroy(&b->lock);
    free(b->path);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Decoding payloads                                                        */
/* ------------------------------------------------------------------------ */

static dalle_status zstd_error(const dalle_bundle *b, const tensor_entry *t, size_t ret)
{
    if (ZSTD_getErrorCode(ret) == ZSTD_error_checksum_wrong)
        return dalle_fail(DALLE_ERR_CHECKSUM, "%s: tensor '%s': zstd frame checksum mismatch",
                          b->path, t->info.name);
    return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': corrupt zstd frame: %s", b->path,
                      t->info.name, ZSTD_getErrorName(ret));
}

static dalle_status check_crc(const dalle_bundle *b, const tensor_entry *t, uint32_t crc)
{
    if (CRC_MISMATCH(t->crc, crc))
        return dalle_fail(DALLE_ERR_CHECKSUM, "%s: tensor '%s': crc32 mismatch (directory "
                          "0x%08x, decoded data 0x%08x)", b->path, t->info.name, t->crc, crc);
    return DALLE_OK;
}

static dalle_status decode_raw(const dalle_bundle *b, const tensor_entry *t, unsigned char *dst)
{
    uint64_t base = b->data_offset + t->offset, n = t->info.nbytes;
    if (b->mem) {
        uint32_t crc = crc32_ieee(0, b->mem + base, (size_t)n);
        dalle_status st = check_crc(b, t, crc);
        if (!st && dst)
            memcpy(dst, b->mem + base, (size_t)n);
        return st;
    }
    unsigned char *scratch = NULL;
    size_t chunk = RAW_READ_CHUNK;
    if (!dst) {
        chunk = IO_CHUNK;
        if (!(scratch = malloc(chunk)))
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory",
                              b->path, t->info.name);
    }
    uint32_t crc = 0;
    dalle_status st = DALLE_OK;
    for (uint64_t done = 0; done < n && !st;) {
        size_t k = n - done < chunk ? (size_t)(n - done) : chunk;
        unsigned char *p = dst ? dst + done : scratch;
        st = read_at(b, base + done, p, k, t->info.name);
        if (!st)
            crc = crc32_ieee(crc, p, k);
        done += k;
    }
    free(scratch);
    return st ? st : check_crc(b, t, crc);
}

static dalle_status decode_zstd(const dalle_bundle *b, const tensor_entry *t, unsigned char *dst)
{
    const char *nm = t->info.name;
    uint64_t base = b->data_offset + t->offset, stored = t->info.stored_bytes;
    uint64_t nbytes = t->info.nbytes;

    /* The frame header first: its content size must be the decoded size. */
    unsigned char head[18];
    size_t hn = stored < sizeof head ? (size_t)stored : sizeof head;
    dalle_status st = read_at(b, base, head, hn, nm);
    if (st)
        return st;
    unsigned long long fcs = ZSTD_getFrameContentSize(head, hn);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': payload does not start with a "
                          "zstd frame header", b->path, nm);
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': zstd frame without a content "
                          "size", b->path, nm);
    if (fcs != nbytes)
        return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': zstd frame holds %llu bytes, "
                          "the shape needs %llu", b->path, nm, fcs, (unsigned long long)nbytes);

    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    size_t in_cap = b->mem ? 0 : IO_CHUNK;
    size_t scratch_cap = dst ? 0 : IO_CHUNK;
    unsigned char *buf = (in_cap + scratch_cap) ? malloc(in_cap + scratch_cap) : NULL;
    if (!dctx || ((in_cap + scratch_cap) && !buf)) {
        ZSTD_freeDCtx(dctx);
        free(buf);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory", b->path,
                          nm);
    }
    unsigned char *inbuf = buf, *scratch = buf ? buf + in_cap : NULL;

    ZSTD_inBuffer in = {NULL, 0, 0};
    uint64_t remaining = stored; /* file bytes not yet handed to zstd */
    if (b->mem) {
        in.src = b->mem + base;
        in.size = (size_t)stored;
        remaining = 0;
    }
    uint64_t produced = 0; /* decoded bytes so far */
    uint32_t crc = 0;
    for (;;) {
        if (in.pos == in.size && remaining > 0) {
            size_t k = remaining < in_cap ? (size_t)remaining : in_cap;
            if ((st = read_at(b, base + (stored - remaining), inbuf, k, nm)))
                break;
            in.src = inbuf;
            in.size = k;
            in.pos = 0;
            remaining -= k;
        }
        ZSTD_outBuffer out;
        if (dst) {
            out.dst = dst + produced;
            out.size = (size_t)(nbytes - produced);
        } else {
            out.dst = scratch;
            out.size = nbytes - produced < scratch_cap ? (size_t)(nbytes - produced)
                                                       : scratch_cap;
        }
        out.pos = 0;
        size_t in_before = in.pos;
        size_t ret = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(ret)) {
            st = zstd_error(b, t, ret);
            break;
        }
        crc = crc32_ieee(crc, out.dst, out.pos);
        produced += out.pos;
        if (ret == 0) { /* the frame is complete */
            if (produced != nbytes)
                st = dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': zstd frame decodes to "
                                "%llu bytes, the shape needs %llu", b->path, nm,
                                (unsigned long long)produced, (unsigned long long)nbytes);
            else if (in.pos != in.size || remaining > 0)
                st = dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': bytes after the zstd "
                                "frame in its payload", b->path, nm);
            break;
        }
        if (in.pos == in_before && out.pos == 0) { /* no progress */
            int more = 0;
            if (produced == nbytes) { /* does the frame hold more than the shape? */
                unsigned char extra;
                ZSTD_outBuffer probe = {&extra, 1, 0};
                size_t r = ZSTD_decompressStream(dctx, &probe, &in);
                if (ZSTD_isError(r)) {
                    st = zstd_error(b, t, r);
                    break;
                }
                more = probe.pos > 0;
            }
            if (more)
                st = dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': zstd frame decodes to "
                                "more than the %llu bytes of its shape", b->path, nm,
                                (unsigned long long)nbytes);
            else if (in.pos == in.size && remaining == 0)
                st = dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': zstd frame is truncated",
                                b->path, nm);
            else
                st = dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': zstd decoder stalled",
                                b->path, nm);
            break;
        }
    }
    ZSTD_freeDCtx(dctx);
    free(buf);
    return st ? st : check_crc(b, t, crc);
}

/* Decode non-alias tensor t into dst (nbytes; NULL: only check), checking
   every checksum. dst's content is unspecified on failure. */
static dalle_status decode_tensor(const dalle_bundle *b, const tensor_entry *t,
                                  unsigned char *dst)
{
    if (t->info.codec == DALLE_CODEC_RAW)
        return decode_raw(b, t, dst);
    return decode_zstd(b, t, dst);
}

/* ------------------------------------------------------------------------ */
/* Public reading calls                                                     */
/* ------------------------------------------------------------------------ */

const char *dalle_bundle_kind(const dalle_bundle *b) { return b ? b->kind : NULL; }
int dalle_bundle_version_minor(const dalle_bundle *b) { return b ? b->version_minor : -1; }
int dalle_bundle_n_tensors(const dalle_bundle *b) { return b ? b->n_tensors : 0; }
int dalle_bundle_find_tensor(const dalle_bundle *b, const char *name)
{
    return find_index(b, name);
}

dalle_status dalle_bundle_tensor_info(const dalle_bundle *b, int index, dalle_tensor_info *info)
{
    if (!b || !info)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_tensor_info: %s is NULL",
                          !b ? "bundle" : "info");
    if (index < 0 || index >= b->n_tensors)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor index %d out of range "
                          "(%d tensors)", b->path, index, b->n_tensors);
    *info = b->tensors[index].info;
    return DALLE_OK;
}

dalle_status dalle_bundle_read_tensor(dalle_bundle *b, int index, void *dst, size_t dst_bytes)
{
    if (!b || !dst)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_read_tensor: %s is NULL",
                          !b ? "bundle" : "dst");
    if (index < 0 || index >= b->n_tensors)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor index %d out of range "
                          "(%d tensors)", b->path, index, b->n_tensors);
    const tensor_entry *t = &b->tensors[index];
    if (dst_bytes < t->info.nbytes)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: tensor '%s': destination of %zu "
                          "bytes, the tensor has %llu", b->path, t->info.name, dst_bytes,
                          (unsigned long long)t->info.nbytes);
    const tensor_entry *src = t;
    uint64_t skip = 0;
    if (t->info.codec == DALLE_CODEC_ALIAS) {
        src = &b->tensors[t->info.alias_of];
        skip = (uint64_t)t->info.alias_offset * bnd_dtype_size(t->info.dtype);
    }
    size_t n = (size_t)t->info.nbytes;
    /* A raw payload in memory is checked in place, then copied. */
    if (b->mem && src->info.codec == DALLE_CODEC_RAW) {
        dalle_status st = decode_raw(b, src, NULL);
        if (!st)
            memcpy(dst, b->mem + b->data_offset + src->offset + skip, n);
        return st;
    }
    /* An f32 tensor already decoded (and checked) by bundle_tensor_f32. */
    if (src->info.dtype == DALLE_DTYPE_F32) {
        pthread_mutex_lock(&b->lock);
        const float *cached = src->f32;
        pthread_mutex_unlock(&b->lock);
        if (cached) {
            memcpy(dst, (const unsigned char *)cached + skip, n);
            return DALLE_OK;
        }
    }
    /* Otherwise decode into a scratch buffer, so that a failure leaves dst
       untouched. */
    if (src->info.nbytes > SIZE_MAX)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor '%s': too large for memory",
                          b->path, src->info.name);
    unsigned char *tmp = malloc((size_t)src->info.nbytes);
    if (!tmp)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory (%llu "
                          "bytes)", b->path, src->info.name,
                          (unsigned long long)src->info.nbytes);
    dalle_status st = decode_tensor(b, src, tmp);
    if (!st)
        memcpy(dst, tmp + skip, n);
    free(tmp);
    return st;
}

dalle_status dalle_bundle_verify(dalle_bundle *b)
{
    if (!b)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_verify: bundle is NULL");
    for (int i = 0; i < b->n_tensors; i++) {
        const tensor_entry *t = &b->tensors[i];
        if (t->info.codec == DALLE_CODEC_ALIAS)
            continue; /* its view was checked at open; its target is checked here */
        dalle_status st = decode_tensor(b, t, NULL);
        if (st)
            return st;
    }
    return DALLE_OK;
}

/* ------------------------------------------------------------------------ */
/* Metadata                                                                 */
/* ------------------------------------------------------------------------ */

int dalle_bundle_n_meta(const dalle_bundle *b) { return b ? b->n_meta : 0; }

dalle_status dalle_bundle_meta_info(const dalle_bundle *b, int index, const char **key,
                                    dalle_meta_type *type, int64_t *count)
{
    if (!b)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dalle_bundle_meta_info: bundle is NULL");
    if (index < 0 || index >= b->n_meta)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: metadata index %d out of range "
                          "(%d entries)", b->path, index, b->n_meta);
    const meta_entry *m = &b->meta[index];
    if (key)
        *key = m->key;
    if (type)
        *type = m->type;
    if (count)
        *count = m->count;
    return DALLE_OK;
}

/* The entry for key, or a failure: NULL arguments, absent key. */
static dalle_status meta_lookup(const dalle_bundle *b, const char *key, const void *out,
                                const char *fn, const meta_entry **m)
{
    if (!b || !key || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s is NULL", fn,
                          !b ? "bundle" : !key ? "key" : "output");
    if (!(*m = find_meta(b, key)))
        return dalle_fail(DALLE_ERR_NOT_FOUND, "%s: metadata key '%s' not found", b->path, key);
    return DALLE_OK;
}

static dalle_status type_mismatch(const dalle_bundle *b, const meta_entry *m, const char *want)
{
    return dalle_fail(DALLE_ERR_MISMATCH, "%s: metadata key '%s' is %s, not %s", b->path,
                      m->key, bnd_meta_type_name(m->type), want);
}

dalle_status dalle_bundle_meta_i64(const dalle_bundle *b, const char *key, int64_t *value)
{
    const meta_entry *m;
    dalle_status st = meta_lookup(b, key, value, "dalle_bundle_meta_i64", &m);
    if (st)
        return st;
    if (m->type == DALLE_META_I64)
        *value = m->v.i;
    else if (m->type == DALLE_META_BOOL)
        *value = m->v.b;
    else
        return type_mismatch(b, m, "i64");
    return DALLE_OK;
}

dalle_status dalle_bundle_meta_f64(const dalle_bundle *b, const char *key, double *value)
{
    const meta_entry *m;
    dalle_status st = meta_lookup(b, key, value, "dalle_bundle_meta_f64", &m);
    if (st)
        return st;
    if (m->type == DALLE_META_F64)
        *value = m->v.f;
    else if (m->type == DALLE_META_I64)
        *value = (double)m->v.i;
    else
        return type_mismatch(b, m, "f64");
    return DALLE_OK;
}

dalle_status dalle_bundle_meta_str(const dalle_bundle *b, const char *key, const char **value)
{
    const meta_entry *m;
    dalle_status st = meta_lookup(b, key, value, "dalle_bundle_meta_str", &m);
    if (st)
        return st;
    if (m->type != DALLE_META_STRING)
        return type_mismatch(b, m, "string");
    *value = m->v.s;
    return DALLE_OK;
}

static dalle_status array_args(const dalle_bundle *b, const char *key, const void *values,
                               int64_t cap, const int64_t *count, const char *fn,
                               const meta_entry **m)
{
    dalle_status st = meta_lookup(b, key, count, fn, m);
    if (st)
        return st;
    if (cap < 0 || (cap > 0 && !values))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %s", fn,
                          cap < 0 ? "cap is negative" : "values is NULL with cap > 0");
    return DALLE_OK;
}

dalle_status dalle_bundle_meta_i64_array(const dalle_bundle *b, const char *key,
                                         int64_t *values, int64_t cap, int64_t *count)
{
    const meta_entry *m;
    dalle_status st = array_args(b, key, values, cap, count, "dalle_bundle_meta_i64_array", &m);
    if (st)
        return st;
    if (m->type != DALLE_META_I64_ARRAY)
        return type_mismatch(b, m, "i64 array");
    for (int64_t i = 0; i < m->count && i < cap; i++)
        values[i] = m->v.ia[i];
    *count = m->count;
    return DALLE_OK;
}

dalle_status dalle_bundle_meta_f64_array(const dalle_bundle *b, const char *key,
                                         double *values, int64_t cap, int64_t *count)
{
    const meta_entry *m;
    dalle_status st = array_args(b, key, values, cap, count, "dalle_bundle_meta_f64_array", &m);
    if (st)
        return st;
    if (m->type == DALLE_META_F64_ARRAY) {
        for (int64_t i = 0; i < m->count && i < cap; i++)
            values[i] = m->v.fa[i];
    } else if (m->type == DALLE_META_I64_ARRAY) {
        for (int64_t i = 0; i < m->count && i < cap; i++)
            values[i] = (double)m->v.ia[i];
    } else {
        return type_mismatch(b, m, "f64 array");
    }
    *count = m->count;
    return DALLE_OK;
}

dalle_status dalle_bundle_meta_str_array(const dalle_bundle *b, const char *key,
                                         const char **values, int64_t cap, int64_t *count)
{
    const meta_entry *m;
    dalle_status st = array_args(b, key, values, cap, count, "dalle_bundle_meta_str_array", &m);
    if (st)
        return st;
    if (m->type != DALLE_META_STRING_ARRAY)
        return type_mismatch(b, m, "string array");
    for (int64_t i = 0; i < m->count && i < cap; i++)
        values[i] = m->v.sa[i];
    *count = m->count;
    return DALLE_OK;
}

/* ------------------------------------------------------------------------ */
/* The model calls of bundle.h                                              */
/* ------------------------------------------------------------------------ */

/* Fill t->f32 (lock held). */
static dalle_status ensure_f32(dalle_bundle *b, tensor_entry *t)
{
    if (t->f32)
        return DALLE_OK;
    if (t->info.codec == DALLE_CODEC_ALIAS) {
        tensor_entry *tg = &b->tensors[t->info.alias_of];
        dalle_status st = ensure_f32(b, tg);
        if (st)
            return st;
        t->f32 = tg->f32 + t->info.alias_offset;
        return DALLE_OK;
    }
    uint64_t numel = (uint64_t)t->info.numel;
    float *buf = aligned_buffer(numel * 4); /* numel ≤ 2^40: no overflow */
    if (!buf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory (%llu "
                          "bytes)", b->path, t->info.name, (unsigned long long)(numel * 4));
    /* f16/bf16 are decoded into the upper half and widened in place, front
       to back: element i is written to bytes [4i, 4i+4), at or before the
       half-precision element i+1 at 2n + 2(i+1), so nothing unread is lost. */
    unsigned char *raw = (unsigned char *)buf;
    if (t->info.dtype != DALLE_DTYPE_F32)
        raw += (size_t)numel * 2;
    dalle_status st = decode_tensor(b, t, raw);
    if (st) {
        free(buf);
        return st;
    }
    if (t->info.dtype != DALLE_DTYPE_F32) {
        int bf = t->info.dtype == DALLE_DTYPE_BF16;
        for (size_t i = 0; i < (size_t)numel; i++) {
            uint16_t h = bnd_get_u16(raw + 2 * i);
            buf[i] = bf ? dalle_bf16_value(h) : dalle_f16_value(h);
        }
    } else {
        /* The payload is little-endian; on a big-endian host swap here. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        for (size_t i = 0; i < (size_t)numel; i++) {
            uint32_t v = bnd_get_u32(raw + 4 * i);
            memcpy(&buf[i], &v, 4);
        }
#endif
    }
    t->f32 = buf;
    return DALLE_OK;
}

/* Fill t->native (lock held) for a f16, bf16 or i8 tensor: its decoded
   bytes, 64-byte aligned, in the host's byte order. */
static dalle_status ensure_native(dalle_bundle *b, tensor_entry *t)
{
    if (t->native)
        return DALLE_OK;
    const unsigned esz = bnd_dtype_size(t->info.dtype);
    if (t->info.codec == DALLE_CODEC_ALIAS) {
        tensor_entry *tg = &b->tensors[t->info.alias_of];
        dalle_status st = ensure_native(b, tg);
        if (st)
            return st;
        t->native = (unsigned char *)tg->native + (size_t)t->info.alias_offset * esz;
        return DALLE_OK;
    }
    unsigned char *buf = aligned_buffer(t->info.nbytes);
    if (!buf)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: tensor '%s': out of memory (%llu "
                          "bytes)", b->path, t->info.name, (unsigned long long)t->info.nbytes);
    dalle_status st = decode_tensor(b, t, buf);
    if (st) {
        free(buf);
        return st;
    }
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    if (esz == 2)
        for (size_t i = 0; i < (size_t)t->info.numel; i++) {
            uint16_t v = bnd_get_u16(buf + 2 * i);
            memcpy(buf + 2 * i, &v, 2);
        }
#endif
    t->native = buf;
    return DALLE_OK;
}

/* The entry of tensor `name` with exactly the shape dims[ndim] (ndim < 0:
   any shape). */
static dalle_status shaped_entry(dalle_bundle *b, const char *name, int ndim,
                                 const int64_t *dims, tensor_entry **out)
{
    int idx = find_index(b, name);
    if (idx < 0)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: tensor '%s' is missing", b->path, name);
    tensor_entry *t = &b->tensors[idx];
    if (ndim >= 0) {
        int same = ndim == t->info.ndim;
        for (int i = 0; same && i < ndim; i++)
            same = dims[i] == t->info.dims[i];
        if (!same) {
            char want[200], got[200];
            format_shape(want, sizeof want, ndim > DALLE_MAX_DIMS ? DALLE_MAX_DIMS : ndim, dims);
            format_shape(got, sizeof got, t->info.ndim, t->info.dims);
            return dalle_fail(DALLE_ERR_MISMATCH, "%s: tensor '%s': expected shape %s%s, "
                              "found %s", b->path, name, want,
                              ndim > DALLE_MAX_DIMS ? "..." : "", got);
        }
    }
    *out = t;
    return DALLE_OK;
}

dalle_status bundle_tensor_typed(dalle_bundle *b, const char *name, int ndim,
                                 const int64_t *dims, dalle_dtype *dtype, const void **out)
{
    if (!b || !name || !out || !dtype || (ndim > 0 && !dims))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "bundle_tensor_typed: NULL argument");
    tensor_entry *t;
    dalle_status st = shaped_entry(b, name, ndim, dims, &t);
    if (st)
        return st;
    if (t->info.dtype == DALLE_DTYPE_F32) {
        const float *p;
        if ((st = bundle_tensor_f32(b, name, -1, NULL, &p)))
            return st;
        *dtype = DALLE_DTYPE_F32;
        *out = p;
        return DALLE_OK;
    }
    if (t->info.dtype != DALLE_DTYPE_F16 && t->info.dtype != DALLE_DTYPE_BF16 &&
        t->info.dtype != DALLE_DTYPE_I8)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: tensor '%s': dtype %s, expected f32, f16, "
                          "bf16 or i8", b->path, name, bnd_dtype_name(t->info.dtype));
    pthread_mutex_lock(&b->lock);
    st = ensure_native(b, t);
    const void *p = t->native;
    pthread_mutex_unlock(&b->lock);
    if (st)
        return st;
    *dtype = t->info.dtype;
    *out = p;
    return DALLE_OK;
}

dalle_status bundle_tensor_f32(dalle_bundle *b, const char *name, int ndim, const int64_t *dims,
                               const float **out)
{
    if (!b || !name || !out || (ndim > 0 && !dims))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "bundle_tensor_f32: NULL argument");
    tensor_entry *t;
    dalle_status shape_st = shaped_entry(b, name, ndim, dims, &t);
    if (shape_st)
        return shape_st;
    if (t->info.dtype != DALLE_DTYPE_F32 && t->info.dtype != DALLE_DTYPE_F16 &&
        t->info.dtype != DALLE_DTYPE_BF16)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: tensor '%s': dtype %s, expected a float "
                          "type (f32, f16 or bf16)", b->path, name,
                          bnd_dtype_name(t->info.dtype));
    pthread_mutex_lock(&b->lock);
    dalle_status st = ensure_f32(b, t);
    const float *p = t->f32;
    pthread_mutex_unlock(&b->lock);
    if (st)
        return st;
    *out = p;
    return DALLE_OK;
}

dalle_status bundle_tensor_shape(const dalle_bundle *b, const char *name, dalle_tensor_info *info)
{
    if (!b || !name || !info)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "bundle_tensor_shape: NULL argument");
    int idx = find_index(b, name);
    if (idx < 0)
        return dalle_fail(DALLE_ERR_MISMATCH, "%s: tensor '%s' is missing", b->path, name);
    *info = b->tensors[idx].info;
    return DALLE_OK;
}

dalle_status bundle_int(const dalle_bundle *b, const char *key, int64_t def, int64_t *out)
{
    if (!b || !key || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "bundle_int: NULL argument");
    if (!find_meta(b, key)) {
        *out = def;
        return DALLE_OK;
    }
    return dalle_bundle_meta_i64(b, key, out);
}

dalle_status bundle_float(const dalle_bundle *b, const char *key, double def, double *out)
{
    if (!b || !key || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "bundle_float: NULL argument");
    const meta_entry *m = find_meta(b, key);
    if (!m) {
        *out = def;
        return DALLE_OK;
    }
    return dalle_bundle_meta_f64(b, key, out);
}

dalle_status bundle_bool(const dalle_bundle *b, const char *key, int def, int *out)
{
    if (!b || !key || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "bundle_bool: NULL argument");
    const meta_entry *m = find_meta(b, key);
    if (!m) {
        *out = def;
        return DALLE_OK;
    }
    if (m->type != DALLE_META_BOOL)
        return type_mismatch(b, m, "bool");
    *out = m->v.b;
    return DALLE_OK;
}
