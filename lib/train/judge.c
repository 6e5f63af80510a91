/* The judge of the synthetic world: read a caption into the scene it asks
 * for, and read a scene back from pixels with plain image analysis, robust
 * to the blur, noise and colour drift of a VAE's output
 * (docs/synthetic-world.md explains each feature and its thresholds). */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "train/synth.h"

/* ---------------------------------------------------------------------- */
/* Captions                                                               */
/* ---------------------------------------------------------------------- */

enum { MAX_WORDS = 256, MAX_WORD = 24 };

static int word_index(const char *w, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (strcmp(w, list[i]) == 0)
            return i;
    return -1;
}

static int color_word(const char *w)
{
    for (int c = 0; c < SYNTH_N_COLORS; c++)
        if (strcmp(w, synth_color_name(c)) == 0)
            return c;
    return -1;
}

static int shape_word(const char *w)
{
    for (int s = 0; s < SYNTH_N_SHAPES; s++)
        if (strcmp(w, synth_shape_name(s)) == 0)
            return s;
    return -1;
}

/* Split into lower-case words of letters; anything else separates. */
static dalle_status split_words(const char *caption, char (*words)[MAX_WORD], int *n)
{
    int count = 0;
    const unsigned char *p = (const unsigned char *)caption;
    while (*p) {
        while (*p && !isalpha(*p))
            p++;
        if (!*p)
            break;
        if (count == MAX_WORDS)
            return dalle_fail(DALLE_ERR_TOO_LONG, "synth_parse_caption: more than %d words",
                              MAX_WORDS);
        int len = 0;
        while (isalpha(*p)) {
            if (len < MAX_WORD - 1) /* longer words match nothing anyway */
                words[count][len++] = (char)tolower(*p);
            p++;
        }
        words[count][len] = '\0';
        count++;
    }
    *n = count;
    return DALLE_OK;
}

dalle_status synth_parse_caption(const char *caption, synth_scene *scene)
{
    static const char *const sizes[] = {"small", "little", "tiny", "large", "big", "huge"};
    if (!caption || !scene)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_parse_caption: %s is NULL",
                          caption ? "scene" : "caption");
    char words[MAX_WORDS][MAX_WORD]; /* 6 KiB */
    int n;
    dalle_status st = split_words(caption, words, &n);
    if (st != DALLE_OK)
        return st;

    synth_scene s;
    memset(&s, 0, sizeof s);
    s.relation = -1;
    int color = -1, size = -1, row = -1, col = -1, centred = 0;
    for (int i = 0; i < n; i++) {
        const char *w = words[i], *next = i + 1 < n ? words[i + 1] : "";
        int k;
        if ((k = color_word(w)) >= 0) {
            if (strcmp(next, "background") == 0) {
                s.background = k;
                s.says |= SYNTH_SAYS_BACKGROUND;
                i++;
            } else {
                color = k;
            }
        } else if ((k = word_index(w, sizes, 6)) >= 0) {
            size = k >= 3 ? SYNTH_LARGE : SYNTH_SMALL;
        } else if ((k = shape_word(w)) >= 0) {
            if (s.n_objects == 2)
                return dalle_fail(DALLE_ERR_FORMAT, "synth_parse_caption: '%s' names more than "
                                  "two objects", caption);
            if (color < 0)
                return dalle_fail(DALLE_ERR_FORMAT, "synth_parse_caption: '%s': the %s has no "
                                  "colour", caption, w);
            synth_object *o = &s.objects[s.n_objects++];
            o->color = color;
            o->shape = k;
            o->size = size >= 0 ? size : SYNTH_SMALL;
            if (size >= 0 && s.n_objects == 1)
                s.says |= SYNTH_SAYS_SIZE;
            color = size = -1;
        } else if (!strcmp(w, "above") || !strcmp(w, "over")) {
            s.relation = SYNTH_ABOVE;
        } else if (!strcmp(w, "below") || !strcmp(w, "under") || !strcmp(w, "beneath")) {
            s.relation = SYNTH_BELOW;
        } else if ((!strcmp(w, "left") || !strcmp(w, "right")) && !strcmp(next, "of")) {
            s.relation = w[0] == 'l' ? SYNTH_LEFT_OF : SYNTH_RIGHT_OF;
            i++;
        } else if (!strcmp(w, "top") || !strcmp(w, "upper")) {
            row = 0;
        } else if (!strcmp(w, "bottom") || !strcmp(w, "lower")) {
            row = 2;
        } else if (!strcmp(w, "left")) {
            col = 0;
        } else if (!strcmp(w, "right")) {
            col = 2;
        } else if (!strcmp(w, "center") || !strcmp(w, "centre") || !strcmp(w, "middle")) {
            centred = 1;
        }
    }
    if (s.n_objects == 0)
        return dalle_fail(DALLE_ERR_FORMAT, "synth_parse_caption: '%s' names no object (a "
                          "colour then one of circle, square, triangle, cross)", caption);
    if (s.n_objects == 2 && s.relation < 0)
        return dalle_fail(DALLE_ERR_FORMAT, "synth_parse_caption: '%s' names two objects but "
                          "no relation (above, below, left of, right of)", caption);
    if (s.n_objects == 1 && s.relation >= 0)
        return dalle_fail(DALLE_ERR_FORMAT, "synth_parse_caption: '%s' has a relation but one "
                          "object", caption);
    if (s.n_objects == 2) {
        s.says |= SYNTH_SAYS_POSITION;
    } else {
        s.relation = 0;
        if (row >= 0 || col >= 0 || centred) {
            s.objects[0].position = (row >= 0 ? row : 1) * 3 + (col >= 0 ? col : 1);
            s.says |= SYNTH_SAYS_POSITION;
        }
    }
    *scene = s;
    return DALLE_OK;
}

/* ---------------------------------------------------------------------- */
/* Pixels                                                                 */
/* ---------------------------------------------------------------------- */

/* A pixel is a candidate object pixel when it is this far (RGB distance)
 * from the background colour: under half the closest palette pair's
 * distance (0.52), and 4 σ of noise at σ = 0.05. */
#define SEED_DISTANCE 0.2f
#define LARGE_EXTENT 0.41f /* small objects span 0.24..0.32, large 0.50..0.60 */
#define MAX_BLUR 3         /* the widest box blur a template is tried with */

typedef struct region {
    int label;
    float mass;           /* Σ t: the object's area in pixels, blur or not */
    float mx, my;         /* centre of mass, pixels */
    float core[3];        /* median colour of its core */
    int color, shape;
    float cx, cy, extent; /* the fitted bounding square, image fractions */
} region;

static float clamp01(float v) { return v > 0.0f ? (v < 1.0f ? v : 1.0f) : 0.0f; } /* NaN → 0 */

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static float median(float *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

static int nearest_color(const float *rgb)
{
    int best = 0;
    float best_d = INFINITY;
    for (int c = 0; c < SYNTH_N_COLORS; c++) {
        const float *p = synth_palette(c);
        float d = 0.0f;
        for (int k = 0; k < 3; k++)
            d += (rgb[k] - p[k]) * (rgb[k] - p[k]);
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    return best;
}

/* The palette colour whose segment from the background passes closest to
 * `core`: a small object under heavy blur never reaches its own colour, but
 * a mix of it with the background still points the same way from there. */
static int object_color(const float *core, const float *bg)
{
    int best = nearest_color(core);
    float best_d = INFINITY;
    for (int c = 0; c < SYNTH_N_COLORS; c++) {
        const float *p = synth_palette(c);
        float axis[3], len2 = 0.0f, dot = 0.0f;
        for (int k = 0; k < 3; k++) {
            axis[k] = p[k] - bg[k];
            len2 += axis[k] * axis[k];
            dot += (core[k] - bg[k]) * axis[k];
        }
        if (len2 < 0.04f) /* the background's own colour */
            continue;
        float a = dot / len2, d = 0.0f;
        a = a < 0.4f ? 0.4f : a > 1.2f ? 1.2f : a; /* a faint mix is no evidence */
        for (int k = 0; k < 3; k++) {
            const float e = core[k] - bg[k] - a * axis[k];
            d += e * e;
        }
        if (d < best_d) {
            best_d = d;
            best = c;
        }
    }
    return best;
}

/* Working memory of one judgement. */
typedef struct scratch {
    int size;
    float *img;    /* [3][size²], clamped */
    float *dist;   /* distance to the background */
    int *label;    /* 0 background, k > 0 the k-th seed region */
    int *queue;
    float *values;
    float *t;      /* the object coordinate of every pixel, for one region */
    float *tmpl, *tmp; /* a template and a blur buffer, size² each */
    unsigned char *corner; /* a template's pixel corners, (size + 1)² */
} scratch;

static void pixel(const scratch *s, int i, float *rgb)
{
    const size_t plane = (size_t)s->size * s->size;
    for (int c = 0; c < 3; c++)
        rgb[c] = s->img[c * plane + i];
}

/* Label 8-connected regions of dist > SEED_DISTANCE; returns the count. */
static int label_regions(scratch *s)
{
    const int n = s->size, total = n * n;
    int regions = 0;
    memset(s->label, 0, sizeof(int) * (size_t)total);
    for (int start = 0; start < total; start++) {
        if (s->label[start] || !(s->dist[start] > SEED_DISTANCE))
            continue;
        regions++;
        int head = 0, tail = 0;
        s->queue[tail++] = start;
        s->label[start] = regions;
        while (head < tail) {
            const int i = s->queue[head++], x = i % n, y = i / n;
            for (int dy = -1; dy <= 1; dy++)
                for (int dx = -1; dx <= 1; dx++) {
                    const int xx = x + dx, yy = y + dy;
                    if (xx < 0 || yy < 0 || xx >= n || yy >= n)
                        continue;
                    const int j = yy * n + xx;
                    if (!s->label[j] && s->dist[j] > SEED_DISTANCE) {
                        s->label[j] = regions;
                        s->queue[tail++] = j;
                    }
                }
        }
    }
    return regions;
}

/* Area of each shape in its unit bounding square, and how far its centre of
 * mass lies below the square's centre (a fraction of the side). */
static const float shape_fill[SYNTH_N_SHAPES] = {0.78539816f, 1.0f, 0.5f, 5.0f / 9.0f};
static const float shape_drop[SYNTH_N_SHAPES] = {0.0f, 0.0f, 1.0f / 6.0f, 0.0f};

/* 3 × 3 box blur over the window [x0, x1] × [y0, y1] of buf, in place
 * (zero outside the window, which is wider than any object); two passes
 * through s->tmp. */
static void box_blur3(scratch *s, float *buf, int x0, int y0, int x1, int y1)
{
    const int n = s->size;
    const float third = 1.0f / 3.0f;
    for (int y = y0; y <= y1; y++) {
        const float *src = buf + (size_t)y * n;
        float *dst = s->tmp + (size_t)y * n;
        for (int x = x0; x <= x1; x++)
            dst[x] = ((x > x0 ? src[x - 1] : 0.0f) + src[x] + (x < x1 ? src[x + 1] : 0.0f)) * third;
    }
    for (int y = y0; y <= y1; y++) {
        const float *up = y > y0 ? s->tmp + (size_t)(y - 1) * n : NULL;
        const float *mid = s->tmp + (size_t)y * n;
        const float *down = y < y1 ? s->tmp + (size_t)(y + 1) * n : NULL;
        float *dst = buf + (size_t)y * n;
        for (int x = x0; x <= x1; x++)
            dst[x] = ((up ? up[x] : 0.0f) + mid[x] + (down ? down[x] : 0.0f)) * third;
    }
}

/* Anti-aliased coverage of `shape` (side `side`, centre cx, cy in pixels)
 * over the window, into s->tmpl. Pixels whose four corners agree are
 * wholly in or out (the shapes have no feature thinner than a third of
 * their side, so none fits between corners once the side is 3 pixels);
 * only the others are supersampled. */
static void render_template(scratch *s, int shape, float side, float cx, float cy, int x0,
                            int y0, int x1, int y1)
{
    const int n = s->size, gw = x1 - x0 + 2;
    const float inv = 2.0f / side;
    /* samples per pixel side: 4 where pixels are coarse against the shape,
     * 2 for big shapes, which have few edge pixels per pixel of area */
    const int ss = side < 24.0f ? 4 : 2;
    const int exact = side < 3.0f;
    for (int y = y0; y <= y1 + 1; y++)
        for (int x = x0; x <= x1 + 1; x++)
            s->corner[(y - y0) * gw + (x - x0)] = (unsigned char)synth_shape_covers(
                shape, ((float)x - cx) * inv, ((float)y - cy) * inv);
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++) {
            const unsigned char *c = s->corner + (y - y0) * gw + (x - x0);
            const int in = c[0] + c[1] + c[gw] + c[gw + 1];
            float v = in == 4 ? 1.0f : 0.0f;
            if (exact || (in > 0 && in < 4)) {
                int hits = 0;
                for (int sy = 0; sy < ss; sy++)
                    for (int sx = 0; sx < ss; sx++)
                        hits += synth_shape_covers(
                            shape, ((float)x + (sx + 0.5f) / (float)ss - cx) * inv,
                            ((float)y + (sy + 0.5f) / (float)ss - cy) * inv);
                v = (float)hits / (float)(ss * ss);
            }
            s->tmpl[(size_t)y * n + x] = v;
        }
}

/* Fit each shape to the region: the size that holds its mass, the place of
 * its centre of mass; render it (anti-aliased, then box-blurred by 0..3
 * pixels, since the image's own blur is unknown) and keep the shape whose
 * template is closest to t in squared error. Mass and centre of mass survive
 * blur and average out noise, so the fit stays put where edges do not. */
static void fit_shape(scratch *s, region *r)
{
    const int n = s->size;
    const float widest = sqrtf(r->mass / shape_fill[SYNTH_TRIANGLE]);
    const int margin = (int)(widest * 0.5f) + MAX_BLUR + 3;
    int x0 = (int)r->mx - margin, x1 = (int)r->mx + margin;
    int y0 = (int)r->my - margin, y1 = (int)r->my + margin;
    x0 = x0 < 0 ? 0 : x0;
    y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > n - 1 ? n - 1 : x1;
    y1 = y1 > n - 1 ? n - 1 : y1;
    float best = INFINITY;
    for (int shape = 0; shape < SYNTH_N_SHAPES; shape++) {
        const float side = sqrtf(r->mass / shape_fill[shape]);
        const float cx = r->mx, cy = r->my - shape_drop[shape] * side;
        render_template(s, shape, side, cx, cy, x0, y0, x1, y1);
        for (int blur = 0; blur <= MAX_BLUR; blur++) {
            if (blur > 0)
                box_blur3(s, s->tmpl, x0, y0, x1, y1); /* once more: about √blur wider */
            float err = 0.0f;
            for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++) {
                    const float d = s->t[y * n + x] - s->tmpl[y * n + x];
                    err += d * d;
                }
            if (err < best) {
                best = err;
                r->shape = shape;
                r->extent = side / (float)n;
                r->cx = cx / (float)n;
                r->cy = cy / (float)n;
            }
        }
    }
}

/* Colour, mass, centre and shape of seed region `label`. */
static void read_region(scratch *s, const float *bg, int label, region *r)
{
    const int n = s->size, total = n * n;
    memset(r, 0, sizeof *r);
    r->label = label;
    /* one pass for the region's box and its largest distance */
    float maxd = 0.0f;
    int bx0 = n, by0 = n, bx1 = -1, by1 = -1;
    for (int i = 0; i < total; i++)
        if (s->label[i] == label) {
            const int x = i % n, y = i / n;
            bx0 = x < bx0 ? x : bx0;
            bx1 = x > bx1 ? x : bx1;
            by0 = y < by0 ? y : by0;
            by1 = y > by1 ? y : by1;
            maxd = s->dist[i] > maxd ? s->dist[i] : maxd;
        }
    /* the core: pixels at least 0.6 of the region's largest distance from
     * the background, so that edges mixed with the background stay out */
    for (int c = 0; c < 3; c++) {
        int m = 0;
        for (int y = by0; y <= by1; y++)
            for (int x = bx0; x <= bx1; x++) {
                const int i = y * n + x;
                if (s->label[i] == label && s->dist[i] >= 0.6f * maxd)
                    s->values[m++] = s->img[(size_t)c * total + i];
            }
        r->core[c] = median(s->values, m);
    }
    r->color = object_color(r->core, bg);
    /* t: where a pixel lies on the line from the background (0) to the
     * object's palette colour (1), for the region and a ring around it wide
     * enough for blurred edges; pixels of other regions count as
     * background. The palette colour, not the core's: a heavily blurred
     * small object never reaches its colour, and Σ t must stay its area. */
    float axis[3], len2 = 0.0f;
    for (int c = 0; c < 3; c++) {
        axis[c] = synth_palette(r->color)[c] - bg[c];
        len2 += axis[c] * axis[c];
    }
    const int ring = MAX_BLUR + 1;
    memset(s->t, 0, sizeof(float) * (size_t)total);
    /* the region's box, plus the ring */
    bx0 = bx0 - ring < 0 ? 0 : bx0 - ring;
    by0 = by0 - ring < 0 ? 0 : by0 - ring;
    bx1 = bx1 + ring > n - 1 ? n - 1 : bx1 + ring;
    by1 = by1 + ring > n - 1 ? n - 1 : by1 + ring;
    float mass = 0.0f, sx = 0.0f, sy = 0.0f;
    for (int y = by0; y <= by1; y++)
        for (int x = bx0; x <= bx1; x++) {
            const int i = y * n + x;
            if (s->label[i] && s->label[i] != label)
                continue;
            int near = 0; /* within `ring` pixels of the region */
            for (int dy = -ring; dy <= ring && !near; dy++)
                for (int dx = -ring; dx <= ring && !near; dx++) {
                    const int xx = x + dx, yy = y + dy;
                    near = xx >= 0 && yy >= 0 && xx < n && yy < n && s->label[yy * n + xx] == label;
                }
            if (!near)
                continue;
            float rgb[3], t = 0.0f;
            pixel(s, i, rgb);
            for (int c = 0; c < 3; c++)
                t += (rgb[c] - bg[c]) * axis[c];
            t = len2 > 0.0f ? t / len2 : 0.0f;
            t = t < -0.5f ? -0.5f : t > 1.5f ? 1.5f : t; /* outliers; noise stays unbiased */
            s->t[i] = t;
            mass += t;
            sx += t * ((float)x + 0.5f);
            sy += t * ((float)y + 0.5f);
        }
    r->mass = mass;
    if (!(mass > 1.0f)) /* not even one pixel's worth: nothing to fit */
        return;
    r->mx = sx / mass;
    r->my = sy / mass;
    fit_shape(s, r);
}

static int cell_of(float cx, float cy)
{
    int col = (int)(cx * 3.0f), row = (int)(cy * 3.0f);
    col = col < 0 ? 0 : col > 2 ? 2 : col;
    row = row < 0 ? 0 : row > 2 ? 2 : row;
    return row * 3 + col;
}

/* The relation of a to b that their centres show, -1 if none is clear:
 * the larger offset decides, and must be a tenth of the image. */
static int relation_of(const region *a, const region *b)
{
    const float dx = a->cx - b->cx, dy = a->cy - b->cy;
    if (fabsf(dy) >= fabsf(dx))
        return dy <= -0.1f ? SYNTH_ABOVE : dy >= 0.1f ? SYNTH_BELOW : -1;
    return dx <= -0.1f ? SYNTH_LEFT_OF : dx >= 0.1f ? SYNTH_RIGHT_OF : -1;
}

static dalle_status check_want(const synth_scene *w)
{
    if (w->n_objects < 1 || w->n_objects > 2 || w->background < 0 ||
        w->background >= SYNTH_N_COLORS ||
        (w->n_objects == 2 && (w->relation < 0 || w->relation >= SYNTH_N_RELATIONS)))
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_judge: scene out of range");
    for (int k = 0; k < w->n_objects; k++) {
        const synth_object *o = &w->objects[k];
        if (o->color < 0 || o->color >= SYNTH_N_COLORS || o->shape < 0 ||
            o->shape >= SYNTH_N_SHAPES || o->size < 0 || o->size > 1 || o->position < 0 ||
            o->position >= SYNTH_N_POSITIONS)
            return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_judge: object %d out of range",
                              k);
    }
    return DALLE_OK;
}

static void verdict_from(const synth_scene *want, const region *found, int n_found, int bg,
                         synth_verdict *v)
{
    const int n = want->n_objects;
    /* match found regions to wanted objects: colours first, then shapes */
    int order[2] = {0, 1};
    if (n == 2 && n_found == 2) {
        int keep = 0, swap = 0;
        for (int k = 0; k < 2; k++) {
            keep += 2 * (found[k].color == want->objects[k].color) +
                    (found[k].shape == want->objects[k].shape);
            swap += 2 * (found[1 - k].color == want->objects[k].color) +
                    (found[1 - k].shape == want->objects[k].shape);
        }
        if (swap > keep) {
            order[0] = 1;
            order[1] = 0;
        }
    }
    int colors = 1, shapes = 1;
    for (int k = 0; k < n; k++) {
        if (order[k] >= n_found) {
            colors = shapes = 0;
            continue;
        }
        const region *r = &found[order[k]];
        colors &= r->color == want->objects[k].color;
        shapes &= r->shape == want->objects[k].shape;
    }
    v->color = colors;
    v->shape = shapes;
    v->background = (want->says & SYNTH_SAYS_BACKGROUND) ? bg == want->background : -1;
    v->size = -1;
    v->position = -1;
    if (n == 1 && (want->says & SYNTH_SAYS_SIZE))
        v->size = n_found >= 1 &&
                  (found[0].extent > LARGE_EXTENT ? SYNTH_LARGE : SYNTH_SMALL) ==
                      want->objects[0].size;
    if (want->says & SYNTH_SAYS_POSITION) {
        if (n == 1)
            v->position = n_found >= 1 &&
                          cell_of(found[0].cx, found[0].cy) == want->objects[0].position;
        else
            v->position = n_found == 2 &&
                          relation_of(&found[order[0]], &found[order[1]]) == want->relation;
    }

    synth_scene *seen = &v->seen;
    memset(seen, 0, sizeof *seen);
    seen->background = bg;
    seen->n_objects = n_found;
    for (int k = 0; k < n_found; k++) {
        const region *r = &found[n == 2 && n_found == 2 ? order[k] : k];
        synth_object *o = &seen->objects[k];
        o->color = r->color;
        o->shape = r->shape;
        o->size = r->extent > LARGE_EXTENT ? SYNTH_LARGE : SYNTH_SMALL;
        o->position = cell_of(r->cx, r->cy);
        o->cx = r->cx;
        o->cy = r->cy;
        o->extent = r->extent;
    }
    if (n_found == 2) {
        const int rel = relation_of(&found[order[0]], &found[order[1]]);
        seen->relation = rel < 0 ? 0 : rel;
    }
}

dalle_status synth_judge(const float *pixels, int size, const synth_scene *want,
                         synth_verdict *verdict)
{
    if (!pixels || !want || !verdict)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_judge: %s is NULL",
                          !pixels ? "pixels" : !want ? "want" : "verdict");
    if (size < SYNTH_MIN_SIZE || size > SYNTH_MAX_SIZE)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT, "synth_judge: size %d outside %d..%d", size,
                          SYNTH_MIN_SIZE, SYNTH_MAX_SIZE);
    dalle_status st = check_want(want);
    if (st != DALLE_OK)
        return st;
    const int total = size * size;
    scratch s = {size, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    s.img = malloc(sizeof(float) * (size_t)total * 3);
    s.dist = malloc(sizeof(float) * (size_t)total);
    s.label = malloc(sizeof(int) * (size_t)total);
    s.queue = malloc(sizeof(int) * (size_t)total);
    s.values = malloc(sizeof(float) * (size_t)total);
    s.t = malloc(sizeof(float) * (size_t)total);
    s.tmpl = malloc(sizeof(float) * (size_t)total);
    s.tmp = malloc(sizeof(float) * (size_t)total);
    s.corner = malloc((size_t)(size + 1) * (size + 1));
    if (!s.img || !s.dist || !s.label || !s.queue || !s.values || !s.t || !s.tmpl || !s.tmp ||
        !s.corner) {
        st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "synth_judge: out of memory (%d px)", size);
        goto done;
    }
    for (size_t i = 0; i < (size_t)total * 3; i++)
        s.img[i] = clamp01(pixels[i]);

    /* Background: the median of the outermost ring, which objects never
     * reach by more than a blurred edge. */
    float bg[3];
    for (int c = 0; c < 3; c++) {
        int m = 0;
        for (int k = 0; k < size; k++) {
            s.values[m++] = s.img[(size_t)c * total + k];                         /* top */
            s.values[m++] = s.img[(size_t)c * total + (size_t)(size - 1) * size + k]; /* bottom */
        }
        for (int k = 1; k < size - 1; k++) {
            s.values[m++] = s.img[(size_t)c * total + (size_t)k * size];            /* left */
            s.values[m++] = s.img[(size_t)c * total + (size_t)k * size + size - 1]; /* right */
        }
        bg[c] = median(s.values, m);
    }
    const int bg_color = nearest_color(bg);
    /* The seed distance is taken after a 3 × 3 box filter: noise that
     * would speckle the background and split objects averages out, and the
     * objects' own pixels (fitted later from the raw image) lose nothing. */
    memset(s.dist, 0, sizeof(float) * (size_t)total);
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < total; i++)
            s.tmpl[i] = s.img[(size_t)c * total + i] - bg[c];
        box_blur3(&s, s.tmpl, 0, 0, size - 1, size - 1);
        for (int i = 0; i < total; i++)
            s.dist[i] += s.tmpl[i] * s.tmpl[i];
    }
    for (int i = 0; i < total; i++)
        s.dist[i] = sqrtf(s.dist[i]);
    const int regions = label_regions(&s);

    /* The (up to) two largest seed regions are the objects; specks of noise
     * are far smaller. */
    int best[2] = {0, 0}, best_area[2] = {0, 0};
    {
        int *area = calloc((size_t)regions + 1, sizeof(int));
        if (!area) {
            st = dalle_fail(DALLE_ERR_OUT_OF_MEMORY, "synth_judge: out of memory");
            goto done;
        }
        for (int i = 0; i < total; i++)
            area[s.label[i]]++;
        for (int k = 1; k <= regions; k++) {
            if (area[k] > best_area[0]) {
                best[1] = best[0];
                best_area[1] = best_area[0];
                best[0] = k;
                best_area[0] = area[k];
            } else if (area[k] > best_area[1]) {
                best[1] = k;
                best_area[1] = area[k];
            }
        }
        free(area);
    }
    region found[2];
    int n_found = 0;
    const int min_area = total / 400 > 3 ? total / 400 : 3; /* ¼ of a 1/20-side square */
    for (int k = 0; k < 2; k++) {
        if (!best[k] || best_area[k] < min_area || best_area[k] * 8 < best_area[0])
            continue;
        read_region(&s, bg, best[k], &found[n_found]);
        if (found[n_found].mass > 1.0f)
            n_found++;
    }
    /* a single wanted object: the largest region only; two: the pair in
     * left-to-right reading order does not matter (matched by colour) */
    if (want->n_objects == 1 && n_found > 1)
        n_found = 1;
    memset(verdict, 0, sizeof *verdict);
    verdict_from(want, found, n_found, bg_color, verdict);
done:
    free(s.img);
    free(s.dist);
    free(s.label);
    free(s.queue);
    free(s.values);
    free(s.t);
    free(s.tmpl);
    free(s.tmp);
    free(s.corner);
    return st;
}
