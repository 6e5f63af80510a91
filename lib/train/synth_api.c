/* The public face of the synthetic world, its judge and the BPE learner
 * (include/dalle/train.h: dalle_synth_*, dalle_bpe_*): argument checks with
 * the public names in every message, the public structs converted to and
 * from the internal ones, and nothing else. The world itself is synth.c,
 * the judge judge.c, the folder writer dataset.c, the learner bpe_learn.c. */
#include "dalle/train.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "params.h"
#include "train/bpe_learn.h"
#include "train/dataset.h"
#include "train/synth.h"

/* The public enums are the internal ones. */
#define SAME(a, b) ((int)(a) == (int)(b))
_Static_assert(SAME(DALLE_SYNTH_N_COLORS, SYNTH_N_COLORS) && SAME(DALLE_SYNTH_BLACK, SYNTH_BLACK) &&
                   SAME(DALLE_SYNTH_PURPLE, SYNTH_PURPLE),
               "colours");
_Static_assert(SAME(DALLE_SYNTH_N_SHAPES, SYNTH_N_SHAPES) && SAME(DALLE_SYNTH_CROSS, SYNTH_CROSS) &&
                   SAME(DALLE_SYNTH_TRIANGLE, SYNTH_TRIANGLE),
               "shapes");
_Static_assert(SAME(DALLE_SYNTH_LARGE, SYNTH_LARGE) &&
                   SAME(DALLE_SYNTH_N_POSITIONS, SYNTH_N_POSITIONS),
               "sizes, positions");
_Static_assert(SAME(DALLE_SYNTH_N_RELATIONS, SYNTH_N_RELATIONS) &&
                   SAME(DALLE_SYNTH_RIGHT_OF, SYNTH_RIGHT_OF) &&
                   SAME(DALLE_SYNTH_LEFT_OF, SYNTH_LEFT_OF),
               "relations");
_Static_assert(SAME(DALLE_SYNTH_TRAIN, SYNTH_TRAIN) && SAME(DALLE_SYNTH_HELDOUT, SYNTH_HELDOUT) &&
                   SAME(DALLE_SYNTH_ANY, SYNTH_ANY),
               "splits");
_Static_assert(SAME(DALLE_SYNTH_SAYS_SIZE, SYNTH_SAYS_SIZE) &&
                   SAME(DALLE_SYNTH_SAYS_POSITION, SYNTH_SAYS_POSITION) &&
                   SAME(DALLE_SYNTH_SAYS_BACKGROUND, SYNTH_SAYS_BACKGROUND),
               "says");
_Static_assert(SAME(DALLE_SYNTH_MIN_SIZE, SYNTH_MIN_SIZE) &&
                   SAME(DALLE_SYNTH_MAX_SIZE, SYNTH_MAX_SIZE) &&
                   SAME(DALLE_SYNTH_CAPTION_CAP, SYNTH_CAPTION_CAP),
               "limits");
_Static_assert(DALLE_BPE_MAX_MERGES == BPE_LEARN_MAX_MERGES, "merges");

#define BAD(...) dalle_fail(DALLE_ERR_INVALID_ARGUMENT, __VA_ARGS__)
#define SAYS_ALL (DALLE_SYNTH_SAYS_SIZE | DALLE_SYNTH_SAYS_POSITION | DALLE_SYNTH_SAYS_BACKGROUND)
#define MAX_STRUCT ((size_t)1 << 16)

struct dalle_synth {
    synth_world world;
    synth_split split;
    uint64_t seed;
};

struct dalle_bpe_merges {
    char *text; /* the merges file, NUL-terminated */
    size_t len;
    int count;
};

/* Re-record the message of a failed internal call under the public name:
 * "synth_judge: x" becomes "fn: x"; a message without an internal prefix
 * (one naming a file) gets fn in front. */
static dalle_status as_public(dalle_status st, const char *fn)
{
    if (st == DALLE_OK)
        return st;
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", dalle_last_error());
    const char *rest = msg;
    size_t word = strspn(msg, "abcdefghijklmnopqrstuvwxyz_");
    if (word && msg[word] == ':' && msg[word + 1] == ' ' &&
        (!strncmp(msg, "synth", 5) || !strncmp(msg, "bpe_learn", 9)))
        rest = msg + word + 2;
    return dalle_fail(st, "%s: %s", fn, rest);
}

/* An output struct's struct_size (NULL is allowed where the output is
 * optional): at least the size of the version the struct came with. */
static dalle_status check_out(const void *out, size_t ours, const char *fn, const char *what,
                              const char *init)
{
    if (!out)
        return DALLE_OK;
    size_t theirs;
    memcpy(&theirs, out, sizeof theirs);
    if (theirs < ours || theirs > MAX_STRUCT)
        return BAD("%s: %s->struct_size = %zu: initialise it with %s()", fn, what, theirs, init);
    return DALLE_OK;
}

/* Our struct into the caller's (theirs >= ours: check_out), keeping its size. */
static void put_out(void *dst, const void *src, size_t ours)
{
    size_t theirs;
    memcpy(&theirs, dst, sizeof theirs);
    memcpy(dst, src, ours);
    memcpy(dst, &theirs, sizeof theirs);
}

/* ---- scenes ----------------------------------------------------------------- */

void dalle_synth_scene_init(dalle_synth_scene *scene, size_t struct_size)
{
    dalle_synth_scene s;
    memset(&s, 0, sizeof s);
    params_fill(scene, struct_size, &s, sizeof s);
}

static void put_scene(dalle_synth_scene *dst, const synth_scene *s)
{
    if (!dst)
        return;
    dalle_synth_scene p;
    memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_objects = s->n_objects;
    p.background = s->background;
    p.relation = s->relation;
    p.says = s->says;
    for (int k = 0; k < s->n_objects && k < DALLE_SYNTH_MAX_OBJECTS; k++) {
        const synth_object *o = &s->objects[k];
        p.objects[k] = (dalle_synth_object){o->color, o->shape, o->size, o->position,
                                            o->cx, o->cy, o->extent};
    }
    put_out(dst, &p, sizeof p);
}

/* A caller's scene (what a caption asks for) as the judge's, every field
 * checked and named. */
static dalle_status get_scene(const dalle_synth_scene *w, const char *fn, synth_scene *s)
{
    dalle_status st = check_out(w, sizeof *w, fn, "want", "dalle_synth_default_scene");
    if (st != DALLE_OK)
        return st;
    if (w->n_objects < 1 || w->n_objects > DALLE_SYNTH_MAX_OBJECTS)
        return BAD("%s: want->n_objects = %d (1..2)", fn, w->n_objects);
    if (w->background < 0 || w->background >= DALLE_SYNTH_N_COLORS)
        return BAD("%s: want->background = %d (0..%d)", fn, w->background,
                   DALLE_SYNTH_N_COLORS - 1);
    if (w->n_objects == 2 && (w->relation < 0 || w->relation >= DALLE_SYNTH_N_RELATIONS))
        return BAD("%s: want->relation = %d (0..%d)", fn, w->relation,
                   DALLE_SYNTH_N_RELATIONS - 1);
    if (w->says & ~(unsigned)SAYS_ALL)
        return BAD("%s: want->says = %#x: unknown bits (DALLE_SYNTH_SAYS_* are %#x)", fn,
                   w->says, (unsigned)SAYS_ALL);
    memset(s, 0, sizeof *s);
    s->n_objects = w->n_objects;
    s->background = w->background;
    s->relation = w->n_objects == 2 ? w->relation : 0;
    s->says = w->says;
    for (int k = 0; k < w->n_objects; k++) {
        const dalle_synth_object *o = &w->objects[k];
        const struct {
            const char *name;
            int value, n;
        } f[] = {{"color", o->color, DALLE_SYNTH_N_COLORS},
                 {"shape", o->shape, DALLE_SYNTH_N_SHAPES},
                 {"size", o->size, 2},
                 {"position", o->position, DALLE_SYNTH_N_POSITIONS}};
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            if (f[i].value < 0 || f[i].value >= f[i].n)
                return BAD("%s: want->objects[%d].%s = %d (0..%d)", fn, k, f[i].name, f[i].value,
                           f[i].n - 1);
        s->objects[k].color = o->color;
        s->objects[k].shape = o->shape;
        s->objects[k].size = o->size;
        s->objects[k].position = o->position;
    }
    return DALLE_OK;
}

/* ---- generators ------------------------------------------------------------- */

void dalle_synth_params_init(dalle_synth_params *params, size_t struct_size)
{
    dalle_synth_params p;
    memset(&p, 0, sizeof p);
    const synth_world w = synth_world_default();
    p.colors = w.n_colors;
    p.shapes = w.n_shapes;
    p.max_objects = w.max_objects;
    p.layouts = w.layouts;
    p.split = DALLE_SYNTH_TRAIN;
    params_fill(params, struct_size, &p, sizeof p);
}

dalle_status dalle_synth_create(uint64_t seed, const dalle_synth_params *params,
                                dalle_synth **out)
{
    const char *fn = "dalle_synth_create";
    if (!out)
        return BAD("%s: out is NULL", fn);
    dalle_synth_params p;
    dalle_synth_params_init(&p, sizeof p);
    dalle_status st = params_merge(params, sizeof p, sizeof p, "dalle_synth_params", &p);
    if (st != DALLE_OK)
        return st;
    if (p.colors < 3 || p.colors > DALLE_SYNTH_N_COLORS)
        return BAD("dalle_synth_params.colors = %d (3..%d)", p.colors, DALLE_SYNTH_N_COLORS);
    if (p.shapes < 1 || p.shapes > DALLE_SYNTH_N_SHAPES)
        return BAD("dalle_synth_params.shapes = %d (1..%d)", p.shapes, DALLE_SYNTH_N_SHAPES);
    if (p.max_objects < 1 || p.max_objects > DALLE_SYNTH_MAX_OBJECTS)
        return BAD("dalle_synth_params.max_objects = %d (1..2)", p.max_objects);
    if (p.layouts < 0 || p.layouts > 1)
        return BAD("dalle_synth_params.layouts = %d (0 or 1)", p.layouts);
    if ((int)p.split < DALLE_SYNTH_TRAIN || (int)p.split > DALLE_SYNTH_ANY)
        return BAD("dalle_synth_params.split = %d (DALLE_SYNTH_TRAIN, _HELDOUT or _ANY)",
                   (int)p.split);
    const synth_world w = {p.colors, p.shapes, p.max_objects, p.layouts};
    /* A world without an item of the split fails here, not at the first
     * sample: drawing item 0's scene finds out. */
    st = synth_sample(&w, seed, 0, (synth_split)p.split, 0, NULL, NULL, 0, NULL);
    if (st != DALLE_OK)
        return as_public(st, fn);
    dalle_synth *g = malloc(sizeof *g);
    if (!g)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    g->world = w;
    g->split = (synth_split)p.split;
    g->seed = seed;
    *out = g;
    return DALLE_OK;
}

void dalle_synth_free(dalle_synth *synth) { free(synth); }

dalle_status dalle_synth_get_params(const dalle_synth *synth, dalle_synth_params *params,
                                    uint64_t *seed)
{
    if (!synth)
        return BAD("dalle_synth_get_params: synth is NULL");
    if (params && (params->struct_size < sizeof(size_t) || params->struct_size > MAX_STRUCT))
        return BAD("dalle_synth_get_params: params->struct_size = %zu: initialise it with "
                   "dalle_synth_default_params()", params->struct_size);
    if (params) {
        dalle_synth_params p;
        memset(&p, 0, sizeof p);
        p.colors = synth->world.n_colors;
        p.shapes = synth->world.n_shapes;
        p.max_objects = synth->world.max_objects;
        p.layouts = synth->world.layouts;
        p.split = (dalle_synth_split)synth->split;
        params_fill(params, params->struct_size, &p, sizeof p);
    }
    if (seed)
        *seed = synth->seed;
    return DALLE_OK;
}

dalle_status dalle_synth_sample(const dalle_synth *synth, uint64_t index, int size,
                                float *pixels, char *caption, size_t cap,
                                dalle_synth_scene *scene)
{
    const char *fn = "dalle_synth_sample";
    if (!synth)
        return BAD("%s: synth is NULL", fn);
    if (!pixels && !caption && !scene)
        return BAD("%s: pixels, caption and scene are all NULL (nothing to write)", fn);
    if (pixels && (size < DALLE_SYNTH_MIN_SIZE || size > DALLE_SYNTH_MAX_SIZE))
        return BAD("%s: size = %d (%d..%d)", fn, size, DALLE_SYNTH_MIN_SIZE,
                   DALLE_SYNTH_MAX_SIZE);
    if (caption && cap == 0)
        return BAD("%s: cap = 0 (%d bytes always suffice)", fn, DALLE_SYNTH_CAPTION_CAP);
    dalle_status st = check_out(scene, sizeof *scene, fn, "scene", "dalle_synth_default_scene");
    if (st != DALLE_OK)
        return st;
    /* The caption and the scene first, into our own buffers; the pixels are
     * the scene's rendering, as synth_sample draws them. Nothing is written
     * until nothing can fail. */
    char text[SYNTH_CAPTION_CAP];
    synth_scene s;
    st = synth_sample(&synth->world, synth->seed, index, synth->split, 0, NULL, text,
                      sizeof text, &s);
    if (st != DALLE_OK)
        return as_public(st, fn);
    const size_t len = strlen(text);
    if (caption && len >= cap)
        return dalle_fail(DALLE_ERR_TOO_LONG, "%s: the caption of item %llu needs %zu bytes, "
                          "cap = %zu", fn, (unsigned long long)index, len + 1, cap);
    if (pixels && (st = synth_render(&s, size, pixels)) != DALLE_OK)
        return as_public(st, fn);
    if (caption)
        memcpy(caption, text, len + 1);
    put_scene(scene, &s);
    return DALLE_OK;
}

dalle_status dalle_synth_write_folder(const dalle_synth *synth, const char *dir, uint64_t first,
                                      int64_t count, int size, int n_captions)
{
    const char *fn = "dalle_synth_write_folder";
    if (!synth || !dir)
        return BAD("%s: %s is NULL", fn, synth ? "dir" : "synth");
    if (count < 0 || count > (int64_t)1 << 24)
        return BAD("%s: count = %lld (0..2^24)", fn, (long long)count);
    if (count > 0 && first > UINT64_MAX - (uint64_t)(count - 1))
        return BAD("%s: first = %llu + count = %lld passes the last item index", fn,
                   (unsigned long long)first, (long long)count);
    if (size < DALLE_SYNTH_MIN_SIZE || size > DALLE_SYNTH_MAX_SIZE)
        return BAD("%s: size = %d (%d..%d)", fn, size, DALLE_SYNTH_MIN_SIZE,
                   DALLE_SYNTH_MAX_SIZE);
    if (n_captions < 1 || n_captions > 16)
        return BAD("%s: n_captions = %d (1..16)", fn, n_captions);
    return as_public(synth_write_folder(dir, &synth->world, synth->seed, first, count,
                                        synth->split, size, n_captions),
                     fn);
}

const char *dalle_synth_color_name(int color) { return synth_color_name(color); }
const char *dalle_synth_shape_name(int shape) { return synth_shape_name(shape); }
const char *dalle_synth_position_name(int position) { return synth_position_name(position); }
const char *dalle_synth_relation_name(int relation) { return synth_relation_name(relation); }

dalle_status dalle_synth_palette(int color, float *rgb)
{
    const float *p = synth_palette(color);
    if (!p)
        return BAD("dalle_synth_palette: color = %d (0..%d)", color, DALLE_SYNTH_N_COLORS - 1);
    if (!rgb)
        return BAD("dalle_synth_palette: rgb is NULL");
    memcpy(rgb, p, 3 * sizeof *rgb);
    return DALLE_OK;
}

dalle_status dalle_synth_is_heldout(int color, int shape, int background, int *heldout)
{
    const char *fn = "dalle_synth_is_heldout";
    if (color < 0 || color >= DALLE_SYNTH_N_COLORS)
        return BAD("%s: color = %d (0..%d)", fn, color, DALLE_SYNTH_N_COLORS - 1);
    if (shape < 0 || shape >= DALLE_SYNTH_N_SHAPES)
        return BAD("%s: shape = %d (0..%d)", fn, shape, DALLE_SYNTH_N_SHAPES - 1);
    if (background < 0 || background >= DALLE_SYNTH_N_COLORS)
        return BAD("%s: background = %d (0..%d)", fn, background, DALLE_SYNTH_N_COLORS - 1);
    if (!heldout)
        return BAD("%s: heldout is NULL", fn);
    *heldout = synth_is_heldout(color, shape, background);
    return DALLE_OK;
}

dalle_status dalle_synth_parse_caption(const char *caption, dalle_synth_scene *scene)
{
    const char *fn = "dalle_synth_parse_caption";
    if (!caption || !scene)
        return BAD("%s: %s is NULL", fn, caption ? "scene" : "caption");
    dalle_status st = check_out(scene, sizeof *scene, fn, "scene", "dalle_synth_default_scene");
    if (st != DALLE_OK)
        return st;
    synth_scene s;
    if ((st = synth_parse_caption(caption, &s)) != DALLE_OK)
        return as_public(st, fn);
    put_scene(scene, &s);
    return DALLE_OK;
}

/* ---- the judge ---------------------------------------------------------------- */

void dalle_synth_verdict_init(dalle_synth_verdict *verdict, size_t struct_size)
{
    dalle_synth_verdict v;
    memset(&v, 0, sizeof v);
    params_fill(verdict, struct_size, &v, sizeof v);
}

static dalle_status check_picture(const float *pixels, int size, const char *fn)
{
    if (!pixels)
        return BAD("%s: pixels is NULL", fn);
    if (size < DALLE_SYNTH_MIN_SIZE || size > DALLE_SYNTH_MAX_SIZE)
        return BAD("%s: size = %d (%d..%d)", fn, size, DALLE_SYNTH_MIN_SIZE,
                   DALLE_SYNTH_MAX_SIZE);
    return DALLE_OK;
}

/* Judge against `want` and write the caller's outputs. */
static dalle_status judge(const float *pixels, int size, const synth_scene *want,
                          dalle_synth_verdict *verdict, dalle_synth_scene *seen, const char *fn)
{
    synth_verdict v;
    dalle_status st = synth_judge(pixels, size, want, &v);
    if (st != DALLE_OK)
        return as_public(st, fn);
    if (verdict) {
        dalle_synth_verdict p;
        memset(&p, 0, sizeof p);
        p.struct_size = sizeof p;
        const int got[5] = {v.color, v.shape, v.position, v.size, v.background};
        p.color = got[0], p.shape = got[1], p.position = got[2], p.size = got[3];
        p.background = got[4];
        for (int k = 0; k < 5; k++) {
            p.asked += got[k] >= 0;
            p.right += got[k] == 1;
        }
        put_out(verdict, &p, sizeof p);
    }
    put_scene(seen, &v.seen);
    return DALLE_OK;
}

static dalle_status check_judge_outputs(const dalle_synth_verdict *verdict,
                                        const dalle_synth_scene *seen, const char *fn)
{
    if (!verdict)
        return BAD("%s: verdict is NULL", fn);
    dalle_status st =
        check_out(verdict, sizeof *verdict, fn, "verdict", "dalle_synth_default_verdict");
    if (st == DALLE_OK)
        st = check_out(seen, sizeof *seen, fn, "seen", "dalle_synth_default_scene");
    return st;
}

dalle_status dalle_synth_judge(const float *pixels, int size, const char *caption,
                               dalle_synth_verdict *verdict, dalle_synth_scene *seen)
{
    const char *fn = "dalle_synth_judge";
    dalle_status st = check_picture(pixels, size, fn);
    if (st == DALLE_OK && !caption)
        st = BAD("%s: caption is NULL", fn);
    if (st == DALLE_OK)
        st = check_judge_outputs(verdict, seen, fn);
    if (st != DALLE_OK)
        return st;
    synth_scene want;
    if ((st = synth_parse_caption(caption, &want)) != DALLE_OK)
        return as_public(st, fn);
    return judge(pixels, size, &want, verdict, seen, fn);
}

dalle_status dalle_synth_judge_scene(const float *pixels, int size, const dalle_synth_scene *want,
                                     dalle_synth_verdict *verdict, dalle_synth_scene *seen)
{
    const char *fn = "dalle_synth_judge_scene";
    dalle_status st = check_picture(pixels, size, fn);
    if (st == DALLE_OK && !want)
        st = BAD("%s: want is NULL", fn);
    if (st == DALLE_OK)
        st = check_judge_outputs(verdict, seen, fn);
    synth_scene w;
    if (st == DALLE_OK)
        st = get_scene(want, fn, &w);
    if (st != DALLE_OK)
        return st;
    return judge(pixels, size, &w, verdict, seen, fn);
}

dalle_status dalle_synth_read(const float *pixels, int size, int max_objects,
                              dalle_synth_scene *seen)
{
    const char *fn = "dalle_synth_read";
    dalle_status st = check_picture(pixels, size, fn);
    if (st != DALLE_OK)
        return st;
    if (max_objects < 1 || max_objects > DALLE_SYNTH_MAX_OBJECTS)
        return BAD("%s: max_objects = %d (1 or 2)", fn, max_objects);
    if (!seen)
        return BAD("%s: seen is NULL", fn);
    if ((st = check_out(seen, sizeof *seen, fn, "seen", "dalle_synth_default_scene")) != DALLE_OK)
        return st;
    /* The judge reads what is there whatever it is asked; a request for
     * max_objects objects of one description (it then keeps the regions in
     * their size order) with nothing else asked. */
    synth_scene want;
    memset(&want, 0, sizeof want);
    want.n_objects = max_objects;
    return judge(pixels, size, &want, NULL, seen, fn);
}

/* ---- BPE ---------------------------------------------------------------------- */

void dalle_bpe_learn_params_init(dalle_bpe_learn_params *params, size_t struct_size)
{
    dalle_bpe_learn_params p;
    memset(&p, 0, sizeof p);
    p.max_merges = 10000;
    p.min_count = 1;
    params_fill(params, struct_size, &p, sizeof p);
}

dalle_status dalle_bpe_learn(const char *const *texts, int64_t n_texts,
                             const dalle_bpe_learn_params *params, dalle_bpe_merges **out)
{
    const char *fn = "dalle_bpe_learn";
    if (!texts || !out)
        return BAD("%s: %s is NULL", fn, texts ? "out" : "texts");
    if (n_texts < 1)
        return BAD("%s: n_texts = %lld (at least 1)", fn, (long long)n_texts);
    dalle_bpe_learn_params p;
    dalle_bpe_learn_params_init(&p, sizeof p);
    dalle_status st = params_merge(params, sizeof p, sizeof p, "dalle_bpe_learn_params", &p);
    if (st != DALLE_OK)
        return st;
    if (p.max_merges < 0 || p.max_merges > DALLE_BPE_MAX_MERGES)
        return BAD("dalle_bpe_learn_params.max_merges = %d (0..%d)", p.max_merges,
                   DALLE_BPE_MAX_MERGES);
    if (p.min_count < 1)
        return BAD("dalle_bpe_learn_params.min_count = %lld (at least 1)",
                   (long long)p.min_count);
    dalle_bpe_merges *m = calloc(1, sizeof *m);
    if (!m)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    st = bpe_learn(texts, n_texts, p.max_merges, p.min_count, &m->text, &m->len, &m->count);
    if (st != DALLE_OK) {
        free(m);
        return as_public(st, fn);
    }
    *out = m;
    return DALLE_OK;
}

void dalle_bpe_merges_free(dalle_bpe_merges *merges)
{
    if (!merges)
        return;
    free(merges->text);
    free(merges);
}

int dalle_bpe_merges_count(const dalle_bpe_merges *merges) { return merges ? merges->count : 0; }

int dalle_bpe_merges_vocab_size(const dalle_bpe_merges *merges)
{
    return merges ? 512 + merges->count + 2 : 0;
}

const char *dalle_bpe_merges_text(const dalle_bpe_merges *merges, size_t *len)
{
    if (len)
        *len = merges ? merges->len : 0;
    return merges ? merges->text : NULL;
}

dalle_status dalle_bpe_merges_save(const dalle_bpe_merges *merges, const char *path)
{
    const char *fn = "dalle_bpe_merges_save";
    if (!merges || !path)
        return BAD("%s: %s is NULL", fn, merges ? "path" : "merges");
    if (!*path)
        return BAD("%s: path is empty", fn);
    /* A temporary file beside the destination, renamed into place. */
    static atomic_uint counter;
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 64);
    if (!tmp)
        return dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "%s: out of memory", fn);
    int fd = -1;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, plen + 64, "%s.tmp.%ld.%u", path, (long)getpid(),
                 atomic_fetch_add(&counter, 1u));
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd < 0 && errno != EEXIST)
            break;
    }
    dalle_status st = DALLE_OK;
    if (fd < 0) {
        st = dalle_fail(DALLE_ERR_IO, "%s: cannot create '%s': %s", fn, path, strerror(errno));
        free(tmp);
        return st;
    }
    for (size_t done = 0; done < merges->len && st == DALLE_OK;) {
        ssize_t n = write(fd, merges->text + done, merges->len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            st = dalle_fail(DALLE_ERR_IO, "%s: cannot write '%s': %s", fn, path,
                            n < 0 ? strerror(errno) : "nothing written");
        else
            done += (size_t)n;
    }
    if (close(fd) != 0 && st == DALLE_OK)
        st = dalle_fail(DALLE_ERR_IO, "%s: cannot write '%s': %s", fn, path, strerror(errno));
    if (st == DALLE_OK && rename(tmp, path) != 0)
        st = dalle_fail(DALLE_ERR_IO, "%s: cannot rename '%s' into place: %s", fn, path,
                        strerror(errno));
    if (st != DALLE_OK)
        unlink(tmp);
    free(tmp);
    return st;
}
