/* The synthetic world, its judge and the folder dataset (lib/train/synth.c,
 * judge.c, dataset.c; docs/synthetic-world.md): determinism, captions that
 * say what the scene is, the judge on clean, blurred and noisy images, the
 * held-out split, a folder round trip and the error paths. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "dalle/dalle.h"
#include "train/dataset.h"
#include "train/synth.h"

#define SEED 0x5eed2024ULL

/* Under AddressSanitizer (usually also -O0) the judge's statistics run on an
 * eighth of the samples: the sanitizer checks memory, not accuracy, and the
 * whole test stays within seconds. */
#if defined(__SANITIZE_ADDRESS__)
#define SAMPLES(n) ((n) / 8)
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SAMPLES(n) ((n) / 8)
#endif
#endif
#ifndef SAMPLES
#define SAMPLES(n) (n)
#endif

/* ------------------------------------------------------------------ */
/* Degradations for the judge                                          */
/* ------------------------------------------------------------------ */

/* Box blur of radius r, separable, edges clamped. */
static void box_blur(float *p, int n, int r)
{
    float *t = malloc(sizeof(float) * 3 * n * n);
    for (int pass = 0; pass < 2; pass++) {
        const float *src = pass ? t : p;
        float *dst = pass ? p : t;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++) {
                    float s = 0.0f;
                    for (int k = -r; k <= r; k++) {
                        int q = (pass ? y : x) + k;
                        q = q < 0 ? 0 : q >= n ? n - 1 : q;
                        s += src[c * n * n + (pass ? q * n + x : y * n + q)];
                    }
                    dst[c * n * n + y * n + x] = s / (float)(2 * r + 1);
                }
    }
    free(t);
}

static uint64_t lcg = 12345;
static double uniform01(void)
{
    lcg = lcg * 6364136223846793005ULL + 1442695040888963407ULL;
    return ((double)(lcg >> 11) + 0.5) / 9007199254740992.0;
}

static void add_noise(float *p, int n, float sigma)
{
    for (int i = 0; i < 3 * n * n; i++) /* Box–Muller; values may leave [0, 1] */
        p[i] += sigma * (float)(sqrt(-2.0 * log(uniform01())) * cos(6.283185307 * uniform01()));
}

/* ------------------------------------------------------------------ */

static int same_scene_asked(const synth_scene *a, const synth_scene *b)
{
    if (a->n_objects != b->n_objects || a->says != b->says)
        return 0;
    if ((a->says & SYNTH_SAYS_BACKGROUND) && a->background != b->background)
        return 0;
    for (int k = 0; k < a->n_objects; k++) {
        const synth_object *x = &a->objects[k], *y = &b->objects[k];
        if (x->color != y->color || x->shape != y->shape)
            return 0;
        if (a->n_objects == 1 && (a->says & SYNTH_SAYS_SIZE) && x->size != y->size)
            return 0;
        if (a->n_objects == 1 && (a->says & SYNTH_SAYS_POSITION) && x->position != y->position)
            return 0;
    }
    return a->n_objects == 1 || a->relation == b->relation;
}

static void test_determinism(void)
{
    const int n = 32;
    float *a = malloc(sizeof(float) * 3 * n * n), *b = malloc(sizeof(float) * 3 * n * n);
    char ca[SYNTH_CAPTION_CAP], cb[SYNTH_CAPTION_CAP];
    synth_scene sa, sb;
    int same = 1, differ = 0, seeds_differ = 0;
    for (uint64_t i = 0; i < 200; i++) {
        synth_sample(NULL, SEED, i, SYNTH_ANY, n, a, ca, sizeof ca, &sa);
        /* in between: other items, so that no state carries over */
        synth_sample(NULL, SEED + 1, i * 7 + 3, SYNTH_TRAIN, n, b, cb, sizeof cb, &sb);
        synth_sample(NULL, SEED, i, SYNTH_ANY, n, b, cb, sizeof cb, &sb);
        same &= !memcmp(a, b, sizeof(float) * 3 * n * n) && !strcmp(ca, cb) &&
                !memcmp(&sa, &sb, sizeof sa);
        synth_sample(NULL, SEED, i + 1, SYNTH_ANY, n, b, cb, sizeof cb, NULL);
        differ += memcmp(a, b, sizeof(float) * 3 * n * n) != 0;
        synth_sample(NULL, SEED ^ 1, i, SYNTH_ANY, n, b, cb, sizeof cb, NULL);
        seeds_differ += memcmp(a, b, sizeof(float) * 3 * n * n) != 0;
    }
    CHECK(same, "same seed and index: identical pixels, caption and scene");
    CHECK(differ == 200, "neighbouring indices give different images (%d/200)", differ);
    CHECK(seeds_differ == 200, "neighbouring seeds give different images (%d/200)", seeds_differ);
    /* outputs are optional and independent: the caption alone is the same */
    synth_sample(NULL, SEED, 77, SYNTH_ANY, n, a, ca, sizeof ca, &sa);
    synth_sample(NULL, SEED, 77, SYNTH_ANY, 0, NULL, cb, sizeof cb, NULL);
    CHECK(!strcmp(ca, cb), "the caption does not depend on asking for pixels");
    float lo = 1.0f, hi = 0.0f;
    for (int i = 0; i < 3 * n * n; i++) {
        lo = a[i] < lo ? a[i] : lo;
        hi = a[i] > hi ? a[i] : hi;
    }
    CHECK(lo >= 0.0f && hi <= 1.0f, "pixels in [0, 1] (%g .. %g)", lo, hi);
    free(a);
    free(b);
}

static void test_captions(void)
{
    int consistent = 0, pairs = 0, kinds[8] = {0};
    char first_bad[SYNTH_CAPTION_CAP] = "";
    const int N = 3000;
    for (uint64_t i = 0; i < (uint64_t)N; i++) {
        char cap[SYNTH_CAPTION_CAP];
        synth_scene s, p;
        synth_sample(NULL, SEED, i, SYNTH_ANY, 0, NULL, cap, sizeof cap, &s);
        int ok = synth_parse_caption(cap, &p) == DALLE_OK && same_scene_asked(&s, &p);
        consistent += ok;
        if (!ok && !first_bad[0])
            strcpy(first_bad, cap);
        pairs += s.n_objects == 2;
        kinds[s.says & 7]++;
    }
    CHECK(consistent == N, "every caption parses back to its scene (%d/%d; first bad: '%s')",
          consistent, N, first_bad);
    CHECK(pairs > N / 5 && pairs < N / 2, "about 30%% two-object scenes (%d/%d)", pairs, N);
    int all_kinds = 1; /* every combination of size, position, background */
    for (int k = 0; k < 8; k++)
        all_kinds &= kinds[k] > 0;
    CHECK(all_kinds, "captions state every combination of size, position and background "
          "(%d %d %d %d %d %d %d %d)", kinds[0], kinds[1], kinds[2], kinds[3], kinds[4], kinds[5],
          kinds[6], kinds[7]);

    synth_scene p;
    CHECK(synth_parse_caption("A Green triangle, on a YELLOW background!", &p) == DALLE_OK &&
              p.n_objects == 1 && p.objects[0].color == SYNTH_GREEN &&
              p.objects[0].shape == SYNTH_TRIANGLE && p.background == SYNTH_YELLOW &&
              p.says == SYNTH_SAYS_BACKGROUND,
          "parse: the README's caption, any case and punctuation");
    CHECK(synth_parse_caption("a picture of a big blue square in the upper right", &p) ==
                  DALLE_OK &&
              p.objects[0].size == SYNTH_LARGE && p.objects[0].position == 2 &&
              p.says == (SYNTH_SAYS_SIZE | SYNTH_SAYS_POSITION),
          "parse: extra words skipped, size and position");
    CHECK(synth_parse_caption("a red circle to the left of a white cross on a black background",
                              &p) == DALLE_OK &&
              p.n_objects == 2 && p.relation == SYNTH_LEFT_OF &&
              p.objects[1].shape == SYNTH_CROSS && p.background == SYNTH_BLACK,
          "parse: a relation");
    CHECK_FAILS(synth_parse_caption("a circle", &p), DALLE_ERR_FORMAT, "has no colour");
    CHECK_FAILS(synth_parse_caption("hello world", &p), DALLE_ERR_FORMAT, "names no object");
    CHECK_FAILS(synth_parse_caption("a red circle and a blue square", &p), DALLE_ERR_FORMAT,
                "no relation");
    CHECK_FAILS(synth_parse_caption("a red circle above a blue square above a red cross", &p),
                DALLE_ERR_FORMAT, "more than two");
    CHECK_FAILS(synth_parse_caption(NULL, &p), DALLE_ERR_INVALID_ARGUMENT, "caption is NULL");

    char small[12];
    synth_scene s;
    synth_sample(NULL, SEED, 5, SYNTH_ANY, 0, NULL, NULL, 0, &s);
    s.says = SYNTH_SAYS_BACKGROUND;
    CHECK_FAILS(synth_caption(&s, 1, small, sizeof small), DALLE_ERR_TOO_LONG, "more than 12");
    CHECK(small[0] == '\0', "a caption that does not fit leaves an empty string");
}

/* Judge N items of `size` px after blur r and noise sigma; the scene asks
 * for everything it has. ok[] per attribute: colour, shape, position,
 * size, background; n[] how many were asked. */
static void judge_run(int size, int r, float sigma, int N, int ok[5], int n[5])
{
    float *px = malloc(sizeof(float) * 3 * size * size);
    memset(ok, 0, 5 * sizeof(int));
    memset(n, 0, 5 * sizeof(int));
    for (uint64_t i = 0; i < (uint64_t)N; i++) {
        synth_scene s;
        synth_verdict v;
        synth_sample(NULL, SEED, i, SYNTH_ANY, size, px, NULL, 0, &s);
        if (r)
            box_blur(px, size, r);
        if (sigma > 0)
            add_noise(px, size, sigma);
        s.says = SYNTH_SAYS_POSITION | SYNTH_SAYS_BACKGROUND |
                 (s.n_objects == 1 ? SYNTH_SAYS_SIZE : 0);
        if (synth_judge(px, size, &s, &v) != DALLE_OK)
            continue;
        const int a[5] = {v.color, v.shape, v.position, v.size, v.background};
        for (int k = 0; k < 5; k++)
            if (a[k] >= 0) {
                n[k]++;
                ok[k] += a[k];
            }
    }
    free(px);
}

static void report(const char *what, int size, int r, float sigma, int N, double floor_pct)
{
    static const char *names[5] = {"colour", "shape", "position", "size", "background"};
    int ok[5], n[5];
    judge_run(size, r, sigma, N, ok, n);
    for (int k = 0; k < 5; k++) {
        const double pct = n[k] ? 100.0 * ok[k] / n[k] : 0.0;
        CHECK(n[k] > 0 && pct >= floor_pct, "judge, %s (%d px, blur %dx%d, noise %.2f): %s %.2f%% "
              "of %d (floor %.0f%%)", what, size, 2 * r + 1, 2 * r + 1, sigma, names[k], pct, n[k],
              floor_pct);
    }
}

static void test_judge(void)
{
    report("clean", 32, 0, 0.0f, SAMPLES(3000), 100.0);
    report("clean", 64, 0, 0.0f, SAMPLES(1000), 100.0);
    report("blurred", 32, 1, 0.0f, SAMPLES(1000), 95.0);
    report("noisy", 32, 0, 0.08f, SAMPLES(1000), 95.0);
    report("blurred + noisy", 32, 1, 0.05f, SAMPLES(1000), 95.0);
    report("blurred + noisy", 64, 2, 0.08f, SAMPLES(500), 95.0);

    /* it must also say no: the same clean image against other asks */
    const int size = 32;
    float *px = malloc(sizeof(float) * 3 * size * size);
    int caught[4] = {0}, N = SAMPLES(400);
    for (uint64_t i = 0; i < (uint64_t)N; i++) {
        synth_scene s, w;
        synth_verdict v;
        synth_sample(NULL, SEED, i, SYNTH_ANY, size, px, NULL, 0, &s);
        s.says = SYNTH_SAYS_POSITION | SYNTH_SAYS_BACKGROUND;
        w = s;
        w.objects[0].color = (s.objects[0].color + 1) % SYNTH_N_COLORS;
        synth_judge(px, size, &w, &v);
        caught[0] += v.color == 0;
        w = s;
        w.objects[0].shape = (s.objects[0].shape + 1 + (int)(i % 3)) % SYNTH_N_SHAPES;
        synth_judge(px, size, &w, &v);
        caught[1] += v.shape == 0;
        w = s;
        if (s.n_objects == 1)
            w.objects[0].position = (s.objects[0].position + 1) % SYNTH_N_POSITIONS;
        else
            w.relation = s.relation ^ 1; /* above <-> below, left <-> right */
        synth_judge(px, size, &w, &v);
        caught[2] += v.position == 0;
        w = s;
        w.background = (s.background + 1) % SYNTH_N_COLORS;
        synth_judge(px, size, &w, &v);
        caught[3] += v.background == 0;
    }
    CHECK(caught[0] == N && caught[1] == N && caught[2] == N && caught[3] == N,
          "judge rejects a wrong colour, shape, position or relation, background "
          "(%d %d %d %d of %d)", caught[0], caught[1], caught[2], caught[3], N);

    /* a blank image: no object, so colour and shape fail, background holds */
    synth_scene s;
    synth_verdict v;
    synth_sample(NULL, SEED, 1, SYNTH_ANY, size, px, NULL, 0, &s);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < size * size; i++)
            px[c * size * size + i] = synth_palette(s.background)[c];
    s.says = SYNTH_SAYS_BACKGROUND;
    CHECK(synth_judge(px, size, &s, &v) == DALLE_OK && v.color == 0 && v.shape == 0 &&
              v.background == 1 && v.seen.n_objects == 0,
          "judge: a blank image has no object");
    CHECK_FAILS(synth_judge(px, 8, &s, &v), DALLE_ERR_INVALID_ARGUMENT, "size 8");
    s.n_objects = 3;
    CHECK_FAILS(synth_judge(px, size, &s, &v), DALLE_ERR_INVALID_ARGUMENT, "out of range");
    free(px);
}

static void test_split(void)
{
    int held = 0, total = 0, color_both[SYNTH_N_COLORS][2] = {{0}},
        shape_both[SYNTH_N_SHAPES][2] = {{0}}, bg_both[SYNTH_N_COLORS][2] = {{0}};
    for (int c = 0; c < SYNTH_N_COLORS; c++)
        for (int sh = 0; sh < SYNTH_N_SHAPES; sh++)
            for (int bg = 0; bg < SYNTH_N_COLORS; bg++) {
                if (bg == c)
                    continue;
                const int h = synth_is_heldout(c, sh, bg);
                held += h;
                total++;
                color_both[c][h]++;
                shape_both[sh][h]++;
                bg_both[bg][h]++;
            }
    int covered = 1;
    for (int c = 0; c < SYNTH_N_COLORS; c++)
        covered &= color_both[c][0] && color_both[c][1] && bg_both[c][0] && bg_both[c][1];
    for (int sh = 0; sh < SYNTH_N_SHAPES; sh++)
        covered &= shape_both[sh][0] && shape_both[sh][1];
    CHECK(held * 12 > total && held * 6 < total, "%d of %d combinations held out", held, total);
    CHECK(covered, "every colour, shape and background is in both splits");
    CHECK(!synth_is_heldout(SYNTH_GREEN, SYNTH_TRIANGLE, SYNTH_YELLOW),
          "the README's green triangle on yellow is a training combination");

    int leaks = 0, wrong_heldout = 0, says_bg = 0;
    for (uint64_t i = 0; i < 3000; i++) {
        synth_scene s;
        synth_sample(NULL, SEED, i, SYNTH_TRAIN, 0, NULL, NULL, 0, &s);
        for (int k = 0; k < s.n_objects; k++)
            leaks += synth_is_heldout(s.objects[k].color, s.objects[k].shape, s.background);
    }
    int seen[SYNTH_N_COLORS * SYNTH_N_SHAPES * SYNTH_N_COLORS] = {0}, distinct = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        char cap[SYNTH_CAPTION_CAP];
        synth_scene s, p;
        synth_sample(NULL, SEED, i, SYNTH_HELDOUT, 0, NULL, cap, sizeof cap, &s);
        wrong_heldout += s.n_objects != 1 ||
                         !synth_is_heldout(s.objects[0].color, s.objects[0].shape, s.background);
        says_bg += synth_parse_caption(cap, &p) == DALLE_OK &&
                   (p.says & SYNTH_SAYS_BACKGROUND) && p.background == s.background;
        int key = (s.objects[0].color * SYNTH_N_SHAPES + s.objects[0].shape) * SYNTH_N_COLORS +
                  s.background;
        distinct += !seen[key]++;
    }
    CHECK(leaks == 0, "3000 training items show no held-out combination (%d leaks)", leaks);
    CHECK(wrong_heldout == 0, "1000 held-out items each show one held-out object (%d wrong)",
          wrong_heldout);
    CHECK(says_bg == 1000, "held-out captions all name their background (%d/1000)", says_bg);
    CHECK(distinct == held, "held-out items cover all %d held-out combinations (%d)", held,
          distinct);

    /* smaller worlds */
    synth_world w = {4, 3, 1, 0};
    synth_scene s;
    int ok = 1, n_train = 0;
    for (uint64_t i = 0; i < 300; i++) {
        dalle_status st = synth_sample(&w, SEED, i, SYNTH_TRAIN, 0, NULL, NULL, 0, &s);
        ok &= st == DALLE_OK && s.n_objects == 1 && s.objects[0].color < 4 &&
              s.background < 4 && s.objects[0].shape < 3 && s.objects[0].size == SYNTH_LARGE &&
              s.objects[0].position == SYNTH_CENTER;
        n_train += st == DALLE_OK;
    }
    CHECK(ok, "a world of 4 colours, 3 shapes, centred large objects keeps to them (%d)",
          n_train);
    w = (synth_world){3, 1, 1, 0};
    int any_held = 0;
    for (int c = 0; c < 3; c++)
        for (int bg = 0; bg < 3; bg++)
            any_held |= synth_is_heldout(c, 0, bg);
    if (any_held)
        CHECK(synth_sample(&w, SEED, 0, SYNTH_HELDOUT, 0, NULL, NULL, 0, &s) == DALLE_OK,
              "a tiny world with a held-out combination draws it");
    else
        CHECK_FAILS(synth_sample(&w, SEED, 0, SYNTH_HELDOUT, 0, NULL, NULL, 0, &s),
                    DALLE_ERR_NOT_FOUND, "no held-out combination");
    w.n_colors = 2;
    CHECK_FAILS(synth_sample(&w, SEED, 0, SYNTH_TRAIN, 32, NULL, NULL, 0, &s),
                DALLE_ERR_INVALID_ARGUMENT, "n_colors 2");
    float px[3 * 8 * 8];
    CHECK_FAILS(synth_sample(NULL, SEED, 0, SYNTH_TRAIN, 8, px, NULL, 0, NULL),
                DALLE_ERR_INVALID_ARGUMENT, "size 8 outside");
}

static int write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    fputs(text, f);
    return fclose(f);
}

static void remove_tree(const char *dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        printf("note: could not remove %s\n", dir);
}

static void test_folder(const char *tmp_root)
{
    char root[512], dir[600], path[700];
    snprintf(root, sizeof root, "%s/test_synth_XXXXXX", tmp_root);
    if (!mkdtemp(root)) {
        CHECK(0, "mkdtemp in %s", tmp_root);
        return;
    }
    snprintf(dir, sizeof dir, "%s/world", root);
    const int size = 32, N = 24;
    CHECK(synth_write_folder(dir, NULL, SEED, 100, N, SYNTH_TRAIN, size, 4) == DALLE_OK,
          "write %d items of the synthetic world to a folder (%s)", N, dalle_last_error());

    dataset *ds = NULL;
    CHECK(dataset_open(dir, size, DATASET_STRICT, &ds) == DALLE_OK && dataset_count(ds) == N,
          "read the folder back: %lld pairs (%s)", (long long)dataset_count(ds),
          dalle_last_error());
    float *a = malloc(sizeof(float) * 3 * size * size), *b = malloc(sizeof(float) * 3 * size * size);
    int pixels_ok = 1, first_ok = 1, lines_ok = 1, judged_ok = 1, multi = 0;
    for (int64_t i = 0; ds && i < dataset_count(ds); i++) {
        char cap[SYNTH_CAPTION_CAP];
        synth_sample(NULL, SEED, 100 + (uint64_t)i, SYNTH_TRAIN, size, a, cap, sizeof cap, NULL);
        if (dataset_image(ds, i, b) != DALLE_OK) {
            pixels_ok = 0;
            continue;
        }
        for (int k = 0; k < 3 * size * size; k++)
            pixels_ok &= fabsf(a[k] - b[k]) <= 0.5f / 255.0f + 1e-6f; /* 8-bit PNG */
        first_ok &= dataset_caption(ds, i, 0) && !strcmp(dataset_caption(ds, i, 0), cap);
        const int nc = dataset_caption_count(ds, i);
        multi += nc > 1;
        lines_ok &= nc >= 1 && nc <= 4;
        for (int k = 0; k < nc; k++) { /* every line is true of the image */
            synth_scene want;
            synth_verdict v;
            if (synth_parse_caption(dataset_caption(ds, i, k), &want) != DALLE_OK ||
                synth_judge(b, size, &want, &v) != DALLE_OK) {
                judged_ok = 0;
                continue;
            }
            judged_ok &= v.color && v.shape && v.position && v.size && v.background;
        }
    }
    CHECK(pixels_ok, "images read back equal the generator's to 8 bits");
    CHECK(first_ok, "the first caption line is the item's caption");
    CHECK(lines_ok && multi > N / 2, "1..4 distinct captions per image (%d of %d have several)",
          multi, N);
    CHECK(judged_ok, "the judge accepts every caption line against its read-back image");
    CHECK(dataset_image_path(ds, 0) && strstr(dataset_image_path(ds, 0), "00000100.png"),
          "pairs sorted by path: %s", dataset_image_path(ds, 0));
    CHECK(dataset_caption(ds, 0, 99) == NULL && dataset_caption(ds, N, 0) == NULL &&
              dataset_image_path(ds, -1) == NULL,
          "out-of-range queries give NULL");
    CHECK_FAILS(dataset_image(ds, N, a), DALLE_ERR_INVALID_ARGUMENT, "item 24 of 24");
    dataset_close(ds);

    /* a different size: resized by dalle_read_image */
    ds = NULL;
    float *big = malloc(sizeof(float) * 3 * 48 * 48);
    CHECK(dataset_open(dir, 48, 0, &ds) == DALLE_OK && dataset_image(ds, 3, big) == DALLE_OK,
          "read at another size (48 px)");
    dataset_close(ds);
    free(big);

    /* nested folders, captions with blank lines and CRLF, unpaired files */
    snprintf(path, sizeof path, "%s/world/sub", root);
    mkdir(path, 0777);
    snprintf(path, sizeof path, "%s/world/sub/extra.txt", root);
    write_text(path, "\r\n  a red circle \r\n\n\ta blue square on a white background\r\n");
    snprintf(path, sizeof path, "%s/world/00000100.png", root);
    char dst[700];
    snprintf(dst, sizeof dst, "%s/world/sub/extra.PNG", root);
    FILE *in = fopen(path, "rb"), *out = fopen(dst, "wb");
    int ch;
    while (in && out && (ch = fgetc(in)) != EOF)
        fputc(ch, out);
    if (in)
        fclose(in);
    if (out)
        fclose(out);
    ds = NULL;
    CHECK(dataset_open(dir, size, DATASET_STRICT, &ds) == DALLE_OK && dataset_count(ds) == N + 1,
          "a nested folder and an upper-case extension are found (%lld)",
          (long long)dataset_count(ds));
    int64_t last = dataset_count(ds) - 1;
    CHECK(dataset_caption_count(ds, last) == 2 &&
              !strcmp(dataset_caption(ds, last, 0), "a red circle") &&
              !strcmp(dataset_caption(ds, last, 1), "a blue square on a white background"),
          "caption lines trimmed, blank lines dropped");
    dataset_close(ds);

    /* errors */
    snprintf(path, sizeof path, "%s/missing", root);
    ds = (dataset *)1;
    CHECK_FAILS(dataset_open(path, size, 0, &ds), DALLE_ERR_IO, "cannot open directory");
    CHECK(ds == NULL, "a failed open leaves *out NULL");
    snprintf(path, sizeof path, "%s/world/00000101.txt", root);
    CHECK_FAILS(dataset_open(path, size, 0, &ds), DALLE_ERR_IO, "is not a directory");
    CHECK_FAILS(dataset_open(dir, 0, 0, &ds), DALLE_ERR_INVALID_ARGUMENT, "size 0");

    snprintf(path, sizeof path, "%s/empty", root);
    mkdir(path, 0777);
    CHECK_FAILS(dataset_open(path, size, 0, &ds), DALLE_ERR_NOT_FOUND, "no image with");

    snprintf(path, sizeof path, "%s/world/lonely.png", root);
    write_text(path, "not really a png");
    CHECK_FAILS(dataset_open(dir, size, DATASET_STRICT, &ds), DALLE_ERR_FORMAT,
                "has no caption file");
    ds = NULL;
    CHECK(dataset_open(dir, size, 0, &ds) == DALLE_OK && dataset_count(ds) == N + 1 &&
              dataset_skipped(ds) == 1,
          "not strict: the image without a caption is skipped (%lld skipped)",
          (long long)dataset_skipped(ds));
    dataset_close(ds);

    snprintf(path, sizeof path, "%s/world/lonely.txt", root);
    write_text(path, "a red circle\n");
    ds = NULL;
    CHECK(dataset_open(dir, size, DATASET_STRICT, &ds) == DALLE_OK, "a corrupt image opens");
    int64_t lonely = -1;
    for (int64_t i = 0; ds && i < dataset_count(ds); i++)
        if (strstr(dataset_image_path(ds, i), "lonely.png"))
            lonely = i;
    CHECK_FAILS(dataset_image(ds, lonely, a), DALLE_ERR_FORMAT, "lonely.png' is not a PNG");
    dataset_close(ds);

    write_text(path, "\n  \n");
    CHECK_FAILS(dataset_open(dir, size, DATASET_STRICT, &ds), DALLE_ERR_FORMAT,
                "holds no caption");
    snprintf(path, sizeof path, "%s/world/lonely.png", root);
    remove(path);
    snprintf(path, sizeof path, "%s/world/lonely.txt", root);
    remove(path);

    snprintf(path, sizeof path, "%s/world/orphan.txt", root);
    write_text(path, "a red circle\n");
    CHECK_FAILS(dataset_open(dir, size, DATASET_STRICT, &ds), DALLE_ERR_FORMAT,
                "orphan.txt' has no image");
    remove(path);

    snprintf(path, sizeof path, "%s/world/00000100.jpg", root);
    write_text(path, "x");
    CHECK_FAILS(dataset_open(dir, size, DATASET_STRICT, &ds), DALLE_ERR_FORMAT,
                "share the caption");
    remove(path);

    snprintf(path, sizeof path, "%s/nope/deeper", root);
    CHECK_FAILS(synth_write_folder(path, NULL, SEED, 0, 1, SYNTH_TRAIN, size, 1), DALLE_ERR_IO,
                "cannot create");
    CHECK_FAILS(synth_write_folder(dir, NULL, SEED, 0, 1, SYNTH_TRAIN, size, 0),
                DALLE_ERR_INVALID_ARGUMENT, "n_captions 0");

    free(a);
    free(b);
    remove_tree(root);
}

int main(int argc, char **argv)
{
    const char *tmp = argc > 1 ? argv[1] : "/tmp";
    test_determinism();
    test_captions();
    test_judge();
    test_split();
    test_folder(tmp);
    return check_summary();
}
