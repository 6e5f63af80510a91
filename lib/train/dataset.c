/* A folder of images with same-named .txt captions (DALLE-pytorch's
 * TextImageDataset layout), and the writer of the synthetic world into one.
 * Images are decoded by dalle_read_image (lib/image_io.c), so the reader
 * and dalle_encode see exactly the same pixels. */
#include "train/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "error.h"

#define MAX_DEPTH 32
#define MAX_CAPTION_FILE (1 << 20) /* a caption file is text, not data */

typedef struct pair {
    char *image;
    char **lines;
    int n_lines;
} pair;

struct dataset {
    int size;
    int64_t n, skipped;
    pair *pairs;
};

/* A file found while walking: its path, and its path without the extension
 * (the key that pairs an image with its caption). */
typedef struct entry {
    char *path;
    size_t key_len; /* path[0 .. key_len) is the key */
    int is_text;
} entry;

typedef struct listing {
    entry *items;
    size_t n, cap;
} listing;

static void free_listing(listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i].path);
    free(l->items);
}

static int has_ext(const char *name, const char *ext)
{
    size_t n = strlen(name), e = strlen(ext);
    return n > e && strcasecmp(name + n - e, ext) == 0;
}

static dalle_status add_entry(listing *l, const char *path, int is_text)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        entry *items = realloc(l->items, cap * sizeof *items);
        if (!items)
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
        l->items = items;
        l->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
    const char *dot = strrchr(copy, '.');
    l->items[l->n].path = copy;
    l->items[l->n].key_len = (size_t)(dot - copy);
    l->items[l->n].is_text = is_text;
    l->n++;
    return DALLE_OK;
}

static dalle_status walk(const char *dir, int depth, listing *l)
{
    DIR *d = opendir(dir);
    if (!d)
        return dalle_fail(DALLE_ERR_IO, "dataset_open: cannot open directory '%s': %s", dir,
                          strerror(errno));
    dalle_status st = DALLE_OK;
    struct dirent *e;
    while (st == DALLE_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *path = malloc(len);
        if (!path) {
            st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
            break;
        }
        snprintf(path, len, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(path, &sb) == 0) { /* dangling links are passed over */
            if (S_ISDIR(sb.st_mode)) {
                if (depth < MAX_DEPTH) /* deeper (or a link cycle) is not walked */
                    st = walk(path, depth + 1, l);
            } else if (S_ISREG(sb.st_mode)) {
                if (has_ext(e->d_name, ".txt"))
                    st = add_entry(l, path, 1);
                else if (has_ext(e->d_name, ".png") || has_ext(e->d_name, ".jpg") ||
                         has_ext(e->d_name, ".jpeg"))
                    st = add_entry(l, path, 0);
            }
        }
        free(path);
    }
    closedir(d);
    return st;
}

/* By key, then captions before images, then by path: a caption is followed
 * by the images of its name. */
static int cmp_entry(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    size_t n = a->key_len < b->key_len ? a->key_len : b->key_len;
    int c = memcmp(a->path, b->path, n);
    if (c)
        return c;
    if (a->key_len != b->key_len)
        return a->key_len < b->key_len ? -1 : 1;
    if (a->is_text != b->is_text)
        return a->is_text ? -1 : 1;
    return strcmp(a->path, b->path);
}

static int same_key(const entry *a, const entry *b)
{
    return a->key_len == b->key_len && memcmp(a->path, b->path, a->key_len) == 0;
}

/* The non-empty lines of a caption file, trimmed. */
static dalle_status read_captions(const char *path, pair *p)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "dataset_open: cannot open '%s': %s", path,
                          strerror(errno));
    char *text = malloc(MAX_CAPTION_FILE + 1);
    if (!text) {
        fclose(f);
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
    }
    size_t n = fread(text, 1, MAX_CAPTION_FILE + 1, f);
    int err = ferror(f);
    fclose(f);
    if (err || n > MAX_CAPTION_FILE) {
        free(text);
        return dalle_fail(err ? DALLE_ERR_IO : DALLE_ERR_FORMAT, "dataset_open: '%s': %s", path,
                          err ? "read error" : "larger than 1 MiB");
    }
    text[n] = '\0';
    dalle_status st = DALLE_OK;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        while (*line == ' ' || *line == '\t' || *line == '\r')
            line++;
        size_t len = strlen(line);
        while (len && (line[len - 1] == ' ' || line[len - 1] == '\t' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (!len)
            continue;
        char **lines = realloc(p->lines, sizeof(char *) * (size_t)(p->n_lines + 1));
        char *copy = lines ? strdup(line) : NULL;
        if (lines)
            p->lines = lines;
        if (!copy) {
            st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
            break;
        }
        p->lines[p->n_lines++] = copy;
    }
    free(text);
    return st;
}

static void free_pair(pair *p)
{
    free(p->image);
    for (int k = 0; k < p->n_lines; k++)
        free(p->lines[k]);
    free(p->lines);
}

void dataset_close(dataset *ds)
{
    if (!ds)
        return;
    for (int64_t i = 0; i < ds->n; i++)
        free_pair(&ds->pairs[i]);
    free(ds->pairs);
    free(ds);
}

/* Pair the sorted entries; strict: the first offending file is an error. */
static dalle_status pair_up(const listing *l, unsigned flags, dataset *ds)
{
    const int strict = (flags & DATASET_STRICT) != 0;
    ds->pairs = calloc(l->n ? l->n : 1, sizeof *ds->pairs);
    if (!ds->pairs)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
    for (size_t i = 0; i < l->n;) {
        size_t j = i + 1;
        while (j < l->n && same_key(&l->items[i], &l->items[j]))
            j++;
        /* the group [i, j): at most one caption, first */
        const entry *text = l->items[i].is_text ? &l->items[i] : NULL;
        const size_t images = j - i - (text ? 1 : 0);
        const entry *image = images ? &l->items[text ? i + 1 : i] : NULL;
        if (!text || !image) {
            if (strict)
                return dalle_fail(DALLE_ERR_FORMAT, "dataset_open: '%s' has no %s", l->items[i].path,
                                  text ? "image of the same name (.png, .jpg, .jpeg)"
                                       : "caption file of the same name (.txt)");
            ds->skipped += (int64_t)(j - i);
            i = j;
            continue;
        }
        if (images > 1) {
            if (strict)
                return dalle_fail(DALLE_ERR_FORMAT, "dataset_open: '%s' and '%s' share the caption "
                                  "'%s'", image->path, image[1].path, text->path);
            ds->skipped += (int64_t)images - 1;
        }
        pair *p = &ds->pairs[ds->n];
        dalle_status st = read_captions(text->path, p);
        if (st == DALLE_OK && p->n_lines == 0 && strict)
            st = dalle_fail(DALLE_ERR_FORMAT, "dataset_open: '%s' holds no caption", text->path);
        if (st != DALLE_OK) {
            free_pair(p);
            return st;
        }
        if (p->n_lines == 0) {
            free_pair(p);
            memset(p, 0, sizeof *p);
            ds->skipped += (int64_t)images + 1;
        } else if (!(p->image = strdup(image->path))) {
            free_pair(p);
            return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
        } else {
            ds->n++;
        }
        i = j;
    }
    return DALLE_OK;
}

dalle_status dataset_open(const char *dir, int size, unsigned flags, dataset **out)
{
    if (!dir || !out)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dataset_open: %s is NULL",
                          dir ? "out" : "dir");
    *out = NULL;
    if (size < 1 || size > 16384)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dataset_open: size %d outside 1..16384",
                          size);
    if (flags & ~(unsigned)DATASET_STRICT)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dataset_open: unknown flags 0x%x", flags);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return dalle_fail(DALLE_ERR_IO, "dataset_open: cannot open directory '%s': %s", dir,
                          strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return dalle_fail(DALLE_ERR_IO, "dataset_open: '%s' is not a directory", dir);
    listing l = {NULL, 0, 0};
    dalle_status st = walk(dir, 0, &l);
    dataset *ds = NULL;
    if (st == DALLE_OK) {
        if (l.n > 1)
            qsort(l.items, l.n, sizeof *l.items, cmp_entry);
        ds = calloc(1, sizeof *ds);
        st = ds ? pair_up(&l, flags, ds)
                : dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "dataset_open: out of memory");
    }
    if (st == DALLE_OK && ds->n == 0)
        st = dalle_fail(DALLE_ERR_NOT_FOUND, "dataset_open: no image with a same-named .txt "
                        "caption under '%s'", dir);
    free_listing(&l);
    if (st != DALLE_OK) {
        dataset_close(ds);
        return st;
    }
    ds->size = size;
    *out = ds;
    return DALLE_OK;
}

int64_t dataset_count(const dataset *ds) { return ds ? ds->n : 0; }
int64_t dataset_skipped(const dataset *ds) { return ds ? ds->skipped : 0; }

const char *dataset_image_path(const dataset *ds, int64_t i)
{
    return ds && i >= 0 && i < ds->n ? ds->pairs[i].image : NULL;
}

int dataset_caption_count(const dataset *ds, int64_t i)
{
    return ds && i >= 0 && i < ds->n ? ds->pairs[i].n_lines : 0;
}

const char *dataset_caption(const dataset *ds, int64_t i, int k)
{
    if (!ds || i < 0 || i >= ds->n || k < 0 || k >= ds->pairs[i].n_lines)
        return NULL;
    return ds->pairs[i].lines[k];
}

dalle_status dataset_image(const dataset *ds, int64_t i, float *pixels)
{
    if (!ds || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dataset_image: %s is NULL",
                          ds ? "pixels" : "dataset");
    if (i < 0 || i >= ds->n)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "dataset_image: item %lld of %lld",
                          (long long)i, (long long)ds->n);
    return dalle_read_image(ds->pairs[i].image, ds->size, pixels);
}

/* ---------------------------------------------------------------------- */
/* Writing the synthetic world                                            */
/* ---------------------------------------------------------------------- */

/* Another caption of the same scene: what it states varies (a held-out
 * scene's always names the background, a pair's always its relation). */
static dalle_status other_caption(const synth_scene *scene, synth_split split, uint64_t variant,
                                  char *buf, size_t cap)
{
    synth_scene s = *scene;
    const uint64_t bits = variant >> 40; /* the low bits pick the wording */
    s.says = (unsigned)(bits & 7u);
    if (s.n_objects == 2)
        s.says = (s.says & SYNTH_SAYS_BACKGROUND) | SYNTH_SAYS_POSITION;
    if (split == SYNTH_HELDOUT)
        s.says |= SYNTH_SAYS_BACKGROUND;
    return synth_caption(&s, variant, buf, cap);
}

static dalle_status write_item(const char *dir, const synth_world *world, uint64_t seed,
                               uint64_t index, synth_split split, int size, int n_captions,
                               float *pixels, char (*lines)[SYNTH_CAPTION_CAP])
{
    synth_scene scene;
    dalle_status st = synth_sample(world, seed, index, split, size, pixels, lines[0],
                                   SYNTH_CAPTION_CAP, &scene);
    if (st != DALLE_OK)
        return st;
    int n = 1;
    /* distinct wordings: a scene has at least a few, so a bounded number of
     * tries finds what there is */
    for (uint64_t v = 0; n < n_captions && v < (uint64_t)n_captions * 8; v++) {
        const uint64_t variant = (index * 0x9e3779b97f4a7c15ULL) ^ (v * 0xd1b54a32d192ed03ULL) ^ seed;
        if ((st = other_caption(&scene, split, variant, lines[n], SYNTH_CAPTION_CAP)) != DALLE_OK)
            return st;
        int dup = 0;
        for (int k = 0; k < n && !dup; k++)
            dup = strcmp(lines[k], lines[n]) == 0;
        n += !dup;
    }
    char path[4096];
    int len = snprintf(path, sizeof path, "%s/%08llu.png", dir, (unsigned long long)index);
    if (len < 0 || (size_t)len >= sizeof path)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_write_folder: path too long");
    if ((st = dalle_write_png(path, pixels, 1, size, size)) != DALLE_OK)
        return st;
    path[len - 3] = 't';
    path[len - 2] = 'x';
    path[len - 1] = 't';
    FILE *f = fopen(path, "wb");
    if (!f)
        return dalle_fail(DALLE_ERR_IO, "synth_write_folder: cannot create '%s': %s", path,
                          strerror(errno));
    for (int k = 0; k < n; k++)
        fprintf(f, "%s\n", lines[k]);
    if (fclose(f) != 0)
        return dalle_fail(DALLE_ERR_IO, "synth_write_folder: cannot write '%s'", path);
    return DALLE_OK;
}

dalle_status synth_write_folder(const char *dir, const synth_world *world, uint64_t seed,
                                uint64_t first, int64_t count, synth_split split, int size,
                                int n_captions)
{
    if (!dir)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_write_folder: dir is NULL");
    if (count < 0 || n_captions < 1 || n_captions > 16)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_write_folder: count %lld (≥ 0), "
                          "n_captions %d (1..16)", (long long)count, n_captions);
    if (size < SYNTH_MIN_SIZE || size > SYNTH_MAX_SIZE)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_write_folder: size %d outside %d..%d",
                          size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return dalle_fail(DALLE_ERR_IO, "synth_write_folder: cannot create '%s': %s", dir,
                          strerror(errno));
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return dalle_fail(DALLE_ERR_IO, "synth_write_folder: '%s' is not a directory", dir);
    float *pixels = malloc(sizeof(float) * 3 * (size_t)size * size);
    char (*lines)[SYNTH_CAPTION_CAP] = malloc(sizeof *lines * (size_t)n_captions);
    dalle_status st = DALLE_OK;
    if (!pixels || !lines)
        st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "synth_write_folder: out of memory");
    for (int64_t k = 0; st == DALLE_OK && k < count; k++)
        st = write_item(dir, world, seed, first + (uint64_t)k, split, size, n_captions, pixels,
                        lines);
    free(pixels);
    free(lines);
    return st;
}
