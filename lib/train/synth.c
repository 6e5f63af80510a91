/* The synthetic captioned world: scenes, their captions and their pixels
 * (docs/synthetic-world.md; the judge is lib/train/judge.c). */
#include "train/synth.h"

#include <stdio.h>
#include <string.h>

#include "error.h"
#include "rng.h"

/* rng streams, so that the world's draws never coincide with sampling's */
#define STREAM_SCENE 0x53796e7468536365ULL   /* "SynthSce" */
#define STREAM_CAPTION 0x53796e7468436170ULL /* "SynthCap" */
#define STREAM_SPLIT 0x53796e746853706cULL   /* "SynthSpl" */
#define LANE_CAPTION 1000                    /* past the scene's own lanes */

/* Far apart in RGB (the closest pair, purple and blue, is 0.52 apart), so
 * that the judge can tell them through a VAE's blur and colour drift. */
static const float palette[SYNTH_N_COLORS][3] = {
    {0.90f, 0.10f, 0.10f}, /* red */
    {0.10f, 0.70f, 0.15f}, /* green */
    {0.10f, 0.25f, 0.90f}, /* blue */
    {0.95f, 0.90f, 0.10f}, /* yellow */
    {0.60f, 0.15f, 0.80f}, /* purple */
    {0.10f, 0.85f, 0.90f}, /* cyan */
    {0.95f, 0.95f, 0.95f}, /* white */
    {0.05f, 0.05f, 0.05f}, /* black */
};
static const char *const color_names[SYNTH_N_COLORS] = {
    "red", "green", "blue", "yellow", "purple", "cyan", "white", "black"};
static const char *const shape_names[SYNTH_N_SHAPES] = {"circle", "square", "triangle",
                                                        "cross"};
static const char *const position_names[SYNTH_N_POSITIONS] = {
    "top left", "top", "top right", "left", "center", "right",
    "bottom left", "bottom", "bottom right"};
static const char *const relation_names[SYNTH_N_RELATIONS] = {"above", "below", "left of",
                                                              "right of"};

const char *synth_color_name(int c) { return c >= 0 && c < SYNTH_N_COLORS ? color_names[c] : NULL; }
const char *synth_shape_name(int s) { return s >= 0 && s < SYNTH_N_SHAPES ? shape_names[s] : NULL; }
const float *synth_palette(int c) { return c >= 0 && c < SYNTH_N_COLORS ? palette[c] : NULL; }
const char *synth_position_name(int p)
{
    return p >= 0 && p < SYNTH_N_POSITIONS ? position_names[p] : NULL;
}
const char *synth_relation_name(int r)
{
    return r >= 0 && r < SYNTH_N_RELATIONS ? relation_names[r] : NULL;
}

synth_world synth_world_default(void)
{
    synth_world w = {SYNTH_N_COLORS, SYNTH_N_SHAPES, 2, 1};
    return w;
}

/* The salt was chosen so that the README's "a green triangle on a yellow
 * background" is a training combination (the demo shows what was taught)
 * while every colour, shape and background keeps held-out combinations;
 * tests/test_synth.c checks both. */
#define SPLIT_SALT 1

int synth_is_heldout(int color, int shape, int background)
{
    if (color < 0 || color >= SYNTH_N_COLORS || shape < 0 || shape >= SYNTH_N_SHAPES ||
        background < 0 || background >= SYNTH_N_COLORS || color == background)
        return 0;
    uint64_t key = (uint64_t)(color * SYNTH_N_SHAPES + shape) * SYNTH_N_COLORS + background;
    return rng_u64(SPLIT_SALT, STREAM_SPLIT, key, 0) % 8 == 0;
}

/* Successive draws for one item: lane k of (seed, index). */
typedef struct draws {
    uint64_t seed, stream, counter, lane;
} draws;

static int pick(draws *d, int n)
{
    return (int)(rng_u64(d->seed, d->stream, d->counter, d->lane++) % (uint64_t)n);
}

static float uniform(draws *d, float lo, float hi)
{
    return lo + (hi - lo) * (float)rng_uniform(d->seed, d->stream, d->counter, d->lane++);
}

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

static int cell_of(float cx, float cy)
{
    int col = (int)(cx * 3.0f), row = (int)(cy * 3.0f);
    col = col < 0 ? 0 : col > 2 ? 2 : col;
    row = row < 0 ? 0 : row > 2 ? 2 : row;
    return row * 3 + col;
}

static dalle_status check_world(const synth_world *w)
{
    if (w->n_colors < 3 || w->n_colors > SYNTH_N_COLORS || w->n_shapes < 1 ||
        w->n_shapes > SYNTH_N_SHAPES || w->max_objects < 1 || w->max_objects > 2 ||
        w->layouts < 0 || w->layouts > 1)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "synth: world out of range (n_colors %d: 3..%d, n_shapes %d: 1..%d, "
                          "max_objects %d: 1..2, layouts %d: 0..1)",
                          w->n_colors, SYNTH_N_COLORS, w->n_shapes, SYNTH_N_SHAPES,
                          w->max_objects, w->layouts);
    return DALLE_OK;
}

static int allowed(synth_split split, int color, int shape, int bg)
{
    if (split == SYNTH_ANY)
        return 1;
    return synth_is_heldout(color, shape, bg) == (split == SYNTH_HELDOUT);
}

/* Place one object: large ones in the centre, small ones in a random cell,
 * jittered but always inside the image and inside their cell. */
static void place_single(const synth_world *w, draws *d, synth_object *o)
{
    o->size = w->layouts == 0 ? SYNTH_LARGE : pick(d, 2);
    if (o->size == SYNTH_LARGE) {
        o->extent = uniform(d, 0.50f, 0.60f);
        o->cx = 0.5f + uniform(d, -0.04f, 0.04f);
        o->cy = 0.5f + uniform(d, -0.04f, 0.04f);
    } else {
        o->extent = uniform(d, 0.26f, 0.32f);
        int cell = pick(d, SYNTH_N_POSITIONS);
        const float lo = o->extent / 2 + 0.03f, hi = 1.0f - lo;
        o->cx = clampf((cell % 3 + 0.5f) / 3.0f + uniform(d, -0.04f, 0.04f), lo, hi);
        o->cy = clampf((cell / 3 + 0.5f) / 3.0f + uniform(d, -0.04f, 0.04f), lo, hi);
    }
    o->position = cell_of(o->cx, o->cy);
}

/* Two small objects at opposite ends of one axis, in the same row or
 * column of the other, so that "above" or "left of" is never in doubt. */
static void place_pair(draws *d, synth_scene *s)
{
    const int rel = pick(d, SYNTH_N_RELATIONS);
    const int vertical = rel == SYNTH_ABOVE || rel == SYNTH_BELOW;
    const int first_low = rel == SYNTH_ABOVE || rel == SYNTH_LEFT_OF; /* objects[0] near 0 */
    const float across = (pick(d, 3) + 0.5f) / 3.0f;
    s->relation = rel;
    for (int k = 0; k < 2; k++) {
        synth_object *o = &s->objects[k];
        o->size = SYNTH_SMALL;
        o->extent = uniform(d, 0.24f, 0.28f);
        const float lo = o->extent / 2 + 0.03f, hi = 1.0f - lo;
        float along = ((k == 0) == first_low ? 0.2f : 0.8f) + uniform(d, -0.02f, 0.02f);
        float other = clampf(across + uniform(d, -0.02f, 0.02f), lo, hi);
        along = clampf(along, lo, hi);
        o->cx = vertical ? other : along;
        o->cy = vertical ? along : other;
        o->position = cell_of(o->cx, o->cy);
    }
}

static dalle_status draw_scene(const synth_world *w, draws *d, synth_split split,
                               synth_scene *s)
{
    /* The first object and the background come from the split's own list of
     * combinations, so that every draw succeeds (no rejection loop). */
    int triples[SYNTH_N_COLORS * SYNTH_N_SHAPES * SYNTH_N_COLORS][3];
    int n = 0;
    for (int c = 0; c < w->n_colors; c++)
        for (int sh = 0; sh < w->n_shapes; sh++)
            for (int bg = 0; bg < w->n_colors; bg++)
                if (bg != c && allowed(split, c, sh, bg)) {
                    triples[n][0] = c;
                    triples[n][1] = sh;
                    triples[n][2] = bg;
                    n++;
                }
    if (n == 0)
        return dalle_fail(DALLE_ERR_NOT_FOUND, "synth: this world (%d colours, %d shapes) has "
                          "no %s combination", w->n_colors, w->n_shapes,
                          split == SYNTH_HELDOUT ? "held-out" : "training");
    memset(s, 0, sizeof *s);
    const int *t = triples[pick(d, n)];
    s->background = t[2];
    s->objects[0].color = t[0];
    s->objects[0].shape = t[1];
    s->n_objects = 1;

    /* Held-out items are single objects: the test is one new combination. */
    if (w->max_objects == 2 && w->layouts == 1 && split != SYNTH_HELDOUT &&
        uniform(d, 0.0f, 1.0f) < 0.3f) {
        int second[SYNTH_N_COLORS * SYNTH_N_SHAPES][2], m = 0;
        for (int c = 0; c < w->n_colors; c++)
            for (int sh = 0; sh < w->n_shapes; sh++)
                if (c != t[0] && c != t[2] && allowed(split, c, sh, t[2])) {
                    second[m][0] = c;
                    second[m][1] = sh;
                    m++;
                }
        if (m > 0) {
            const int *u = second[pick(d, m)];
            s->objects[1].color = u[0];
            s->objects[1].shape = u[1];
            s->n_objects = 2;
        }
    }

    if (s->n_objects == 2) {
        place_pair(d, s);
        s->says = SYNTH_SAYS_POSITION; /* the relation is the point of the caption */
    } else {
        place_single(w, d, &s->objects[0]);
        if (w->layouts == 1) {
            if (pick(d, 2))
                s->says |= SYNTH_SAYS_SIZE;
            if (pick(d, 2))
                s->says |= SYNTH_SAYS_POSITION;
        }
    }
    /* A held-out caption must name the background: that is what is new. */
    if (split == SYNTH_HELDOUT || pick(d, 2))
        s->says |= SYNTH_SAYS_BACKGROUND;
    return DALLE_OK;
}

dalle_status synth_sample(const synth_world *world, uint64_t seed, uint64_t index,
                          synth_split split, int size, float *pixels, char *caption,
                          size_t cap, synth_scene *scene)
{
    synth_world w = world ? *world : synth_world_default();
    dalle_status st = check_world(&w);
    if (st != DALLE_OK)
        return st;
    if (split != SYNTH_TRAIN && split != SYNTH_HELDOUT && split != SYNTH_ANY)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_sample: unknown split %d",
                          (int)split);
    if (pixels && (size < SYNTH_MIN_SIZE || size > SYNTH_MAX_SIZE))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_sample: size %d outside %d..%d",
                          size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    if (caption && cap == 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_sample: caption buffer of 0 bytes");
    /* The split is part of the key: item i of the held-out stream is not
     * a filtered item i of the training stream. */
    draws d = {seed, STREAM_SCENE + (uint64_t)split, index, 0};
    synth_scene s;
    if ((st = draw_scene(&w, &d, split, &s)) != DALLE_OK)
        return st;
    if (caption &&
        (st = synth_caption(&s, rng_u64(seed, STREAM_SCENE + (uint64_t)split, index,
                                        LANE_CAPTION), caption, cap)) != DALLE_OK)
        return st;
    if (pixels && (st = synth_render(&s, size, pixels)) != DALLE_OK)
        return st;
    if (scene)
        *scene = s;
    return DALLE_OK;
}

/* ---------------------------------------------------------------------- */
/* Rendering                                                              */
/* ---------------------------------------------------------------------- */

int synth_shape_covers(int shape, float u, float v)
{
    const float au = u < 0 ? -u : u, av = v < 0 ? -v : v;
    switch (shape) {
    case SYNTH_CIRCLE: return u * u + v * v <= 1.0f;
    case SYNTH_SQUARE: return au <= 1.0f && av <= 1.0f;
    case SYNTH_TRIANGLE: return v <= 1.0f && au <= (v + 1.0f) * 0.5f; /* apex up */
    case SYNTH_CROSS:
        return (au <= 1.0f / 3 && av <= 1.0f) || (av <= 1.0f / 3 && au <= 1.0f);
    default: return 0;
    }
}

static dalle_status check_scene(const synth_scene *s, const char *fn)
{
    if (s->n_objects < 1 || s->n_objects > 2)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: %d objects (1 or 2)", fn,
                          s->n_objects);
    if (s->background < 0 || s->background >= SYNTH_N_COLORS)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: background %d out of range", fn,
                          s->background);
    if (s->n_objects == 2 && (s->relation < 0 || s->relation >= SYNTH_N_RELATIONS))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: relation %d out of range", fn,
                          s->relation);
    for (int k = 0; k < s->n_objects; k++) {
        const synth_object *o = &s->objects[k];
        if (o->color < 0 || o->color >= SYNTH_N_COLORS || o->shape < 0 ||
            o->shape >= SYNTH_N_SHAPES || o->size < 0 || o->size > 1 || o->position < 0 ||
            o->position >= SYNTH_N_POSITIONS)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: object %d out of range", fn, k);
        if (!(o->extent > 0.0f && o->extent <= 1.0f && o->cx >= 0.0f && o->cx <= 1.0f &&
              o->cy >= 0.0f && o->cy <= 1.0f))
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "%s: object %d geometry out of range",
                              fn, k);
    }
    return DALLE_OK;
}

dalle_status synth_render(const synth_scene *s, int size, float *pixels)
{
    if (!s || !pixels)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_render: %s is NULL",
                          s ? "pixels" : "scene");
    if (size < SYNTH_MIN_SIZE || size > SYNTH_MAX_SIZE)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_render: size %d outside %d..%d",
                          size, SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    dalle_status st = check_scene(s, "synth_render");
    if (st != DALLE_OK)
        return st;
    const size_t plane = (size_t)size * size;
    for (int c = 0; c < 3; c++)
        for (size_t i = 0; i < plane; i++)
            pixels[c * plane + i] = palette[s->background][c];
    /* 4 × 4 samples a pixel: edges are anti-aliased, like a photograph of
     * the scene would be, and a 1-pixel shift changes the image smoothly. */
    enum { SS = 4 };
    for (int k = 0; k < s->n_objects; k++) {
        const synth_object *o = &s->objects[k];
        const float half = o->extent * 0.5f * (float)size;
        const float cx = o->cx * (float)size, cy = o->cy * (float)size;
        int x0 = (int)(cx - half) - 1, x1 = (int)(cx + half) + 1;
        int y0 = (int)(cy - half) - 1, y1 = (int)(cy + half) + 1;
        x0 = x0 < 0 ? 0 : x0;
        y0 = y0 < 0 ? 0 : y0;
        x1 = x1 > size - 1 ? size - 1 : x1;
        y1 = y1 > size - 1 ? size - 1 : y1;
        for (int y = y0; y <= y1; y++)
            for (int x = x0; x <= x1; x++) {
                int hits = 0;
                for (int sy = 0; sy < SS; sy++)
                    for (int sx = 0; sx < SS; sx++) {
                        float u = ((float)x + (sx + 0.5f) / SS - cx) / half;
                        float v = ((float)y + (sy + 0.5f) / SS - cy) / half;
                        hits += synth_shape_covers(o->shape, u, v);
                    }
                if (!hits)
                    continue;
                const float a = (float)hits / (SS * SS);
                const size_t i = (size_t)y * size + x;
                for (int c = 0; c < 3; c++)
                    pixels[c * plane + i] = (1.0f - a) * pixels[c * plane + i] +
                                            a * palette[o->color][c];
            }
    }
    return DALLE_OK;
}

/* ---------------------------------------------------------------------- */
/* Captions                                                               */
/* ---------------------------------------------------------------------- */

/* Wordings: each entry lists synonyms; the variant picks one. The parser
 * in judge.c knows every word used here. */
static const char *const size_words[2][2] = {{"small", "little"}, {"large", "big"}};
static const char *const position_phrases[SYNTH_N_POSITIONS][2] = {
    {"in the top left corner", "in the top left"}, {"at the top", "at the top"},
    {"in the top right corner", "in the top right"}, {"on the left", "on the left"},
    {"in the center", "in the middle"}, {"on the right", "on the right"},
    {"in the bottom left corner", "in the bottom left"}, {"at the bottom", "at the bottom"},
    {"in the bottom right corner", "in the bottom right"}};
static const char *const relation_phrases[SYNTH_N_RELATIONS][2] = {
    {"above", "above"}, {"below", "under"}, {"to the left of", "left of"},
    {"to the right of", "right of"}};

typedef struct text {
    char *buf;
    size_t cap, len;
    int overflow;
} text;

static void put(text *t, const char *s)
{
    size_t n = strlen(s);
    if (t->len + n + 1 > t->cap) {
        t->overflow = 1;
        return;
    }
    memcpy(t->buf + t->len, s, n + 1);
    t->len += n;
}

static void put_object(text *t, const synth_object *o, int say_size, draws *d)
{
    put(t, "a ");
    if (say_size) {
        put(t, size_words[o->size][pick(d, 2)]);
        put(t, " ");
    }
    put(t, color_names[o->color]);
    put(t, " ");
    put(t, shape_names[o->shape]);
}

dalle_status synth_caption(const synth_scene *s, uint64_t variant, char *caption, size_t cap)
{
    if (!s || !caption || cap == 0)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_caption: %s",
                          !s ? "scene is NULL" : !caption ? "caption is NULL" : "cap is 0");
    dalle_status st = check_scene(s, "synth_caption");
    if (st != DALLE_OK)
        return st;
    draws d = {variant, STREAM_CAPTION, 0, 0};
    text t = {caption, cap, 0, 0};
    caption[0] = '\0';
    const int say_bg = (s->says & SYNTH_SAYS_BACKGROUND) != 0;
    /* "a yellow background with ..." one time in three, else "... on a
     * yellow background": the background is not always the last words. */
    const int bg_first = say_bg && pick(&d, 3) == 0;
    if (bg_first) {
        put(&t, "a ");
        put(&t, color_names[s->background]);
        put(&t, " background with ");
    }
    put_object(&t, &s->objects[0], s->n_objects == 1 && (s->says & SYNTH_SAYS_SIZE), &d);
    if (s->n_objects == 2) {
        put(&t, " ");
        put(&t, relation_phrases[s->relation][pick(&d, 2)]);
        put(&t, " ");
        put_object(&t, &s->objects[1], 0, &d);
    } else if (s->says & SYNTH_SAYS_POSITION) {
        put(&t, " ");
        put(&t, position_phrases[s->objects[0].position][pick(&d, 2)]);
    }
    if (say_bg && !bg_first) {
        put(&t, " on a ");
        put(&t, color_names[s->background]);
        put(&t, " background");
    }
    if (t.overflow) {
        caption[0] = '\0';
        return dalle_fail(DALLE_ERR_TOO_LONG, "synth_caption: the caption needs more than %zu "
                          "bytes", cap);
    }
    return DALLE_OK;
}
