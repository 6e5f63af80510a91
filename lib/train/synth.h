/* The synthetic captioned world (docs/synthetic-world.md): coloured shapes
 * on coloured backgrounds, rendered from a 64-bit seed and an item index,
 * with a caption in a small fixed grammar; and the judge that reads a scene
 * back from pixels (lib/train/judge.c).
 *
 * Everything here is counter-based: item `index` of `seed` in a given world
 * is always the same scene, caption and image, whatever was asked before and
 * on whichever thread, so a training run can fetch items in any order.
 */
#ifndef DALLE_TRAIN_SYNTH_H
#define DALLE_TRAIN_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "dalle/dalle.h"

/* The vocabulary. The enum order is the order of the palette and of the
 * shape list: a world with n_colors = 5 uses the first five colours. */
typedef enum synth_color {
    SYNTH_RED, SYNTH_GREEN, SYNTH_BLUE, SYNTH_YELLOW,
    SYNTH_PURPLE, SYNTH_CYAN, SYNTH_WHITE, SYNTH_BLACK,
    SYNTH_N_COLORS
} synth_color;

typedef enum synth_shape {
    SYNTH_CIRCLE, SYNTH_SQUARE, SYNTH_TRIANGLE, SYNTH_CROSS,
    SYNTH_N_SHAPES
} synth_shape;

typedef enum synth_size { SYNTH_SMALL, SYNTH_LARGE } synth_size;

/* Positions are the cells of a 3 × 3 grid, row-major: 0 top left, 1 top,
 * 2 top right, 3 left, 4 center, 5 right, 6 bottom left, 7 bottom,
 * 8 bottom right. */
enum { SYNTH_N_POSITIONS = 9, SYNTH_CENTER = 4 };

/* Two-object scenes: objects[0] <relation> objects[1]. */
typedef enum synth_relation {
    SYNTH_ABOVE, SYNTH_BELOW, SYNTH_LEFT_OF, SYNTH_RIGHT_OF, SYNTH_N_RELATIONS
} synth_relation;

/* What a caption states besides colour and shape, which it always states. */
enum {
    SYNTH_SAYS_SIZE = 1,
    SYNTH_SAYS_POSITION = 2,   /* one object: its cell; two: the relation */
    SYNTH_SAYS_BACKGROUND = 4
};

typedef struct synth_object {
    int color;    /* synth_color */
    int shape;    /* synth_shape */
    int size;     /* synth_size */
    int position; /* 0..8, the cell that holds the centre */
    /* Geometry as fractions of the image side: the centre of the bounding
     * square and its side. */
    float cx, cy, extent;
} synth_object;

typedef struct synth_scene {
    int n_objects;  /* 1, or 2 related by `relation` */
    int background; /* synth_color */
    int relation;   /* synth_relation; two objects only */
    unsigned says;  /* SYNTH_SAYS_* of the caption that goes with it */
    synth_object objects[2];
} synth_scene;

/* Which scenes a world holds. Smaller worlds train faster; the defaults
 * (synth_world_default) use the whole vocabulary. */
typedef struct synth_world {
    int n_colors;    /* the first n palette colours, 3..SYNTH_N_COLORS */
    int n_shapes;    /* the first n shapes, 1..SYNTH_N_SHAPES */
    int max_objects; /* 1, or 2 to add "a red circle above a blue square" */
    int layouts;     /* 0: one large object in the centre (sizes and positions
                        never vary); 1: sizes and nine positions */
} synth_world;

/* Which items a call draws: training scenes never show a held-out
 * (object colour, shape, background) combination; held-out ones always
 * show one and their captions state colour, shape and background. */
typedef enum synth_split { SYNTH_TRAIN, SYNTH_HELDOUT, SYNTH_ANY } synth_split;

enum {
    SYNTH_MIN_SIZE = 16,   /* pixels per side */
    SYNTH_MAX_SIZE = 1024,
    SYNTH_CAPTION_CAP = 128 /* always enough for a caption and its NUL */
};

/* The whole vocabulary, one or two objects, sizes and positions. */
synth_world synth_world_default(void);

/* Names ("red", "circle", "top left", "above") and the palette (RGB in
 * [0, 1]); NULL for an index out of range. */
const char *synth_color_name(int color);
const char *synth_shape_name(int shape);
const char *synth_position_name(int position);
const char *synth_relation_name(int relation);
const float *synth_palette(int color);

/* Whether (object colour, shape, background) is held out: a fixed hash
 * selects 1 combination in 8 (docs/synthetic-world.md lists them). */
int synth_is_heldout(int color, int shape, int background);

/* Item `index` of `seed` in `world` (NULL: the default world), restricted
 * to `split`. Writes any of: pixels [3][size][size] in [0, 1] (anti-
 * aliased), the caption (NUL-terminated; cap ≥ SYNTH_CAPTION_CAP is always
 * enough, a smaller one may give DALLE_ERR_TOO_LONG), the scene. NULL
 * outputs are skipped. Errors: DALLE_ERR_INVALID_ARGUMENT (size outside
 * 16..1024, a world out of range), DALLE_ERR_NOT_FOUND (a world too small to
 * have a held-out combination, or whose every combination is held out). */
dalle_status synth_sample(const synth_world *world, uint64_t seed, uint64_t index,
                          synth_split split, int size, float *pixels, char *caption,
                          size_t cap, synth_scene *scene);

/* Whether point (u, v) of an object's bounding square, [-1, 1]² with v
 * down, is inside `shape` (the triangle's apex is up). */
int synth_shape_covers(int shape, float u, float v);

/* Draw `scene` into pixels [3][size][size]. */
dalle_status synth_render(const synth_scene *scene, int size, float *pixels);

/* A caption for `scene` that states what scene->says asks, its wording
 * (word order, synonyms) picked by `variant`. */
dalle_status synth_caption(const synth_scene *scene, uint64_t variant, char *caption,
                           size_t cap);

/* ---------------------------------------------------------------------- */
/* The judge (lib/train/judge.c)                                          */
/* ---------------------------------------------------------------------- */

/* Read a caption in the world's grammar into the scene it asks for: the
 * objects in caption order, their colour and shape, and what else it says
 * (size, position or relation, background); geometry is left at 0.
 * Case-insensitive, punctuation ignored, extra words such as "a picture of"
 * skipped. DALLE_ERR_FORMAT with the reason if it names no object, more
 * than two, an object without a colour, or two objects without a relation. */
dalle_status synth_parse_caption(const char *caption, synth_scene *scene);

/* A verdict per attribute: 1 right, 0 wrong, -1 not asked. */
typedef struct synth_verdict {
    int color;      /* every object's colour */
    int shape;      /* every object's shape */
    int position;   /* one object: its cell; two: the relation */
    int size;       /* small / large */
    int background;
    synth_scene seen; /* what the judge read (up to two objects) */
} synth_verdict;

/* Judge pixels [3][size][size] (values outside [0, 1] are clamped) against
 * the scene a caption asked for (`want`; only colour, shape and what
 * want->says names are judged, so a scene from synth_parse_caption serves).
 * The background is the palette colour nearest the median border colour;
 * objects are the connected regions far from it, read back with colour =
 * the palette entry nearest their core's median colour, shape = fill,
 * profile and diagonal features of the region rescaled to a square grid,
 * position = the cell of the bounding-box centre. */
dalle_status synth_judge(const float *pixels, int size, const synth_scene *want,
                         synth_verdict *verdict);

#endif
