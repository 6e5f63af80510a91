/* The public API of the synthetic world, its judge and the BPE learner
 * (dalle_synth_*, dalle_bpe_* of include/dalle/train.h) through the shared
 * library only: a drawn item judged by the public judge reads back its own
 * caption; the held-out split; a folder the public data sets read; merges a
 * tokenizer loads; every bad argument is an error naming it that leaves the
 * caller's buffers untouched.
 *
 * usage: test_synth_api TMPDIR */
#include <dalle/dalle.h>
#include <dalle/train.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

static const char *tmpdir;

static char *tmp(const char *name)
{
    static char buf[4][1024];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

enum { SIZE = 32, PX = 3 * SIZE * SIZE };

static dalle_synth *make(uint64_t seed, dalle_synth_split split)
{
    dalle_synth_params p = dalle_synth_default_params();
    p.split = split;
    dalle_synth *g = NULL;
    if (dalle_synth_create(seed, &p, &g) != DALLE_OK) {
        printf("dalle_synth_create: %s\n", dalle_last_error());
        exit(1);
    }
    return g;
}

/* ---- defaults, names, the palette, the held-out combinations ------------------ */

static void test_vocabulary(void)
{
    dalle_synth_params p = dalle_synth_default_params();
    CHECK(p.struct_size == sizeof p && p.colors == 8 && p.shapes == 4 && p.max_objects == 2 &&
              p.layouts == 1 && p.split == DALLE_SYNTH_TRAIN,
          "default world: 8 colours, 4 shapes, pairs, layouts, training split");
    CHECK(!strcmp(dalle_synth_color_name(DALLE_SYNTH_RED), "red") &&
              !strcmp(dalle_synth_color_name(DALLE_SYNTH_BLACK), "black") &&
              !dalle_synth_color_name(DALLE_SYNTH_N_COLORS) && !dalle_synth_color_name(-1),
          "colour names");
    CHECK(!strcmp(dalle_synth_shape_name(DALLE_SYNTH_TRIANGLE), "triangle") &&
              !dalle_synth_shape_name(DALLE_SYNTH_N_SHAPES),
          "shape names");
    CHECK(!strcmp(dalle_synth_position_name(0), "top left") &&
              !strcmp(dalle_synth_position_name(4), "center") &&
              !dalle_synth_position_name(DALLE_SYNTH_N_POSITIONS),
          "position names");
    CHECK(!strcmp(dalle_synth_relation_name(DALLE_SYNTH_LEFT_OF), "left of") &&
              !dalle_synth_relation_name(DALLE_SYNTH_N_RELATIONS),
          "relation names");

    float rgb[3] = {-1, -1, -1};
    CHECK(dalle_synth_palette(DALLE_SYNTH_GREEN, rgb) == DALLE_OK && rgb[0] == 0.10f &&
              rgb[1] == 0.70f && rgb[2] == 0.15f,
          "palette: green is (.10 .70 .15)");
    float keep[3] = {7, 7, 7};
    CHECK_FAILS(dalle_synth_palette(8, keep), DALLE_ERR_INVALID_ARGUMENT, "color = 8 (0..7)");
    CHECK(keep[0] == 7 && keep[2] == 7, "a refused palette call writes nothing");
    CHECK_FAILS(dalle_synth_palette(0, NULL), DALLE_ERR_INVALID_ARGUMENT, "rgb is NULL");

    int held = -1, total = 0;
    for (int c = 0; c < DALLE_SYNTH_N_COLORS; c++)
        for (int s = 0; s < DALLE_SYNTH_N_SHAPES; s++)
            for (int b = 0; b < DALLE_SYNTH_N_COLORS; b++)
                if (dalle_synth_is_heldout(c, s, b, &held) == DALLE_OK)
                    total += held;
    CHECK(total == 30, "30 held-out combinations (%d)", total);
    CHECK(dalle_synth_is_heldout(DALLE_SYNTH_RED, DALLE_SYNTH_SQUARE, DALLE_SYNTH_WHITE, &held) ==
                  DALLE_OK && held == 1,
          "a red square on white is held out");
    CHECK(dalle_synth_is_heldout(DALLE_SYNTH_GREEN, DALLE_SYNTH_TRIANGLE, DALLE_SYNTH_YELLOW,
                                 &held) == DALLE_OK && held == 0,
          "the README's green triangle on yellow is a training combination");
    held = 5;
    CHECK_FAILS(dalle_synth_is_heldout(0, 4, 0, &held), DALLE_ERR_INVALID_ARGUMENT,
                "shape = 4 (0..3)");
    CHECK_FAILS(dalle_synth_is_heldout(0, 0, -1, &held), DALLE_ERR_INVALID_ARGUMENT,
                "background = -1");
    CHECK(held == 5, "a refused is_heldout writes nothing");
    CHECK_FAILS(dalle_synth_is_heldout(0, 0, 1, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "heldout is NULL");
}

/* ---- generators ---------------------------------------------------------------- */

static void test_create(void)
{
    dalle_synth *g = NULL;
    CHECK(dalle_synth_create(42, NULL, &g) == DALLE_OK && g, "NULL params: the default world");
    dalle_synth_params got = dalle_synth_default_params();
    got.colors = 0;
    uint64_t seed = 0;
    CHECK(dalle_synth_get_params(g, &got, &seed) == DALLE_OK && got.colors == 8 &&
              got.shapes == 4 && got.split == DALLE_SYNTH_TRAIN && seed == 42,
          "get_params gives the world and the seed");
    dalle_synth_free(g);
    dalle_synth_free(NULL);

    dalle_synth *keep = (dalle_synth *)&got; /* a sentinel: never written over */
    const struct {
        int field, value;
        const char *needle;
    } bad[] = {{0, 2, "dalle_synth_params.colors = 2 (3..8)"},
               {1, 5, "dalle_synth_params.shapes = 5 (1..4)"},
               {2, 3, "dalle_synth_params.max_objects = 3"},
               {3, -1, "dalle_synth_params.layouts = -1"},
               {4, 9, "dalle_synth_params.split = 9"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        dalle_synth_params p = dalle_synth_default_params();
        int *f[] = {&p.colors, &p.shapes, &p.max_objects, &p.layouts, (int *)&p.split};
        *f[bad[i].field] = bad[i].value;
        g = keep;
        CHECK_FAILS(dalle_synth_create(0, &p, &g), DALLE_ERR_INVALID_ARGUMENT, bad[i].needle);
        CHECK(g == keep, "a refused create leaves *out alone");
    }
    dalle_synth_params p = dalle_synth_default_params();
    p.struct_size = 3;
    CHECK_FAILS(dalle_synth_create(0, &p, &g), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_synth_params.struct_size = 3");
    CHECK_FAILS(dalle_synth_create(0, NULL, NULL), DALLE_ERR_INVALID_ARGUMENT, "out is NULL");

    /* every world the parameters allow has items of every split (the
     * held-out 1 in 8 reaches into the smallest: a blue circle on green) */
    int all = 1;
    for (int c = 3; c <= DALLE_SYNTH_N_COLORS; c++)
        for (int s = 1; s <= DALLE_SYNTH_N_SHAPES; s++)
            for (int split = DALLE_SYNTH_TRAIN; split <= DALLE_SYNTH_ANY; split++) {
                p = dalle_synth_default_params();
                p.colors = c, p.shapes = s, p.split = (dalle_synth_split)split;
                g = NULL;
                all &= dalle_synth_create(0, &p, &g) == DALLE_OK;
                dalle_synth_free(g);
            }
    CHECK(all, "every world has items of every split");
}

static int same_scene(const dalle_synth_scene *a, const dalle_synth_scene *b)
{
    if (a->n_objects != b->n_objects || a->says != b->says)
        return 0;
    if ((a->says & DALLE_SYNTH_SAYS_BACKGROUND) && a->background != b->background)
        return 0;
    if (a->n_objects == 2 && a->relation != b->relation)
        return 0;
    for (int k = 0; k < a->n_objects; k++) {
        const dalle_synth_object *x = &a->objects[k], *y = &b->objects[k];
        if (x->color != y->color || x->shape != y->shape)
            return 0;
        if (a->n_objects == 1 && (a->says & DALLE_SYNTH_SAYS_SIZE) && x->size != y->size)
            return 0;
        if (a->n_objects == 1 && (a->says & DALLE_SYNTH_SAYS_POSITION) &&
            x->position != y->position)
            return 0;
    }
    return 1;
}

/* Items drawn and judged by the public judge read back their own captions. */
static void test_round_trip(void)
{
    enum { N = 300 };
    dalle_synth *g = make(7, DALLE_SYNTH_ANY);
    float *px = malloc(sizeof(float) * PX), *again = malloc(sizeof(float) * PX);
    int judged = 0, passed = 0, scene_passed = 0, parsed = 0, read_ok = 0, singles = 0;
    int deterministic = 1, asked_max = 0, pairs = 0;
    for (uint64_t i = 0; i < N; i++) {
        char caption[DALLE_SYNTH_CAPTION_CAP], c2[DALLE_SYNTH_CAPTION_CAP];
        dalle_synth_scene scene = dalle_synth_default_scene();
        if (dalle_synth_sample(g, i, SIZE, px, caption, sizeof caption, &scene) != DALLE_OK) {
            CHECK(0, "sample %llu: %s", (unsigned long long)i, dalle_last_error());
            break;
        }
        /* each output alone is the same as all three together */
        dalle_synth_scene s2 = dalle_synth_default_scene();
        deterministic &= dalle_synth_sample(g, i, SIZE, again, NULL, 0, NULL) == DALLE_OK &&
                         !memcmp(px, again, sizeof(float) * PX);
        deterministic &= dalle_synth_sample(g, i, 0, NULL, c2, sizeof c2, &s2) == DALLE_OK &&
                         !strcmp(caption, c2) && !memcmp(&scene, &s2, sizeof scene);
        pairs += scene.n_objects == 2;

        dalle_synth_verdict v = dalle_synth_default_verdict();
        dalle_synth_scene seen = dalle_synth_default_scene();
        judged++;
        if (dalle_synth_judge(px, SIZE, caption, &v, &seen) == DALLE_OK && v.asked >= 2 &&
            v.right == v.asked && seen.n_objects == scene.n_objects &&
            seen.background == scene.background)
            passed++;
        else
            printf("     item %llu '%s': %d of %d right\n", (unsigned long long)i, caption, v.right,
                   v.asked);
        asked_max = v.asked > asked_max ? v.asked : asked_max;

        dalle_synth_scene want = dalle_synth_default_scene();
        parsed += dalle_synth_parse_caption(caption, &want) == DALLE_OK && same_scene(&want, &scene);
        dalle_synth_verdict vs = dalle_synth_default_verdict();
        scene_passed += dalle_synth_judge_scene(px, SIZE, &scene, &vs, NULL) == DALLE_OK &&
                        vs.right == vs.asked;
        if (scene.n_objects == 1) {
            dalle_synth_scene r = dalle_synth_default_scene();
            singles++;
            read_ok += dalle_synth_read(px, SIZE, 1, &r) == DALLE_OK && r.n_objects == 1 &&
                       r.objects[0].color == scene.objects[0].color &&
                       r.objects[0].shape == scene.objects[0].shape &&
                       r.background == scene.background;
        }
    }
    CHECK(deterministic, "an item is the same whichever outputs are asked for");
    CHECK(pairs > N / 6 && pairs < N / 2, "about 30%% of the items are pairs (%d of %d)", pairs, N);
    CHECK(passed == judged, "the judge passes %d of %d clean %d px items against their captions",
          passed, judged, SIZE);
    CHECK(asked_max == 5, "some caption asks every attribute");
    CHECK(parsed == N, "parse_caption reads back what the scene says (%d of %d)", parsed, N);
    CHECK(scene_passed == N, "judge_scene against the drawn scene passes (%d of %d)", scene_passed,
          N);
    CHECK(read_ok == singles, "read finds the single object's colour, shape, background (%d of %d)",
          read_ok, singles);

    /* the judge says no: a blue circle is not a red square, on any background */
    dalle_synth_scene want = dalle_synth_default_scene();
    CHECK(dalle_synth_parse_caption("a red square", &want) == DALLE_OK && want.n_objects == 1 &&
              want.objects[0].color == DALLE_SYNTH_RED &&
              want.objects[0].shape == DALLE_SYNTH_SQUARE && want.says == 0,
          "parse: 'a red square'");
    CHECK(dalle_synth_parse_caption("A big GREEN triangle, upper left, on a black background!",
                                    &want) == DALLE_OK &&
              want.says == (DALLE_SYNTH_SAYS_SIZE | DALLE_SYNTH_SAYS_POSITION |
                            DALLE_SYNTH_SAYS_BACKGROUND) &&
              want.objects[0].size == DALLE_SYNTH_LARGE && want.objects[0].position == 0 &&
              want.background == DALLE_SYNTH_BLACK,
          "parse: looser text");
    dalle_synth_scene drawn = dalle_synth_default_scene();
    int wrong = 0, tried = 0;
    for (uint64_t i = 0; tried < 20 && i < 200; i++) {
        dalle_synth_sample(g, i, SIZE, px, NULL, 0, &drawn);
        if (drawn.n_objects != 1)
            continue;
        char lie[64];
        snprintf(lie, sizeof lie, "a %s %s",
                 dalle_synth_color_name((drawn.objects[0].color + 1) % DALLE_SYNTH_N_COLORS),
                 dalle_synth_shape_name(drawn.objects[0].shape));
        dalle_synth_verdict v = dalle_synth_default_verdict();
        tried++;
        wrong += dalle_synth_judge(px, SIZE, lie, &v, NULL) == DALLE_OK && v.color == 0 &&
                 v.shape == 1 && v.right == 1 && v.asked == 2 && v.position == -1 &&
                 v.size == -1 && v.background == -1;
    }
    CHECK(wrong == tried && tried == 20, "the wrong colour is wrong, the rest not asked (%d of %d)",
          wrong, tried);
    free(px);
    free(again);
    dalle_synth_free(g);
}

static void test_splits(void)
{
    dalle_synth *train = make(3, DALLE_SYNTH_TRAIN), *held = make(3, DALLE_SYNTH_HELDOUT);
    int train_ok = 1, held_ok = 1;
    for (uint64_t i = 0; i < 300; i++) {
        dalle_synth_scene s = dalle_synth_default_scene();
        int h = -1;
        dalle_synth_sample(train, i, 0, NULL, NULL, 0, &s);
        for (int k = 0; k < s.n_objects; k++)
            train_ok &= dalle_synth_is_heldout(s.objects[k].color, s.objects[k].shape,
                                               s.background, &h) == DALLE_OK && h == 0;
        char caption[DALLE_SYNTH_CAPTION_CAP];
        dalle_synth_sample(held, i, 0, NULL, caption, sizeof caption, &s);
        held_ok &= s.n_objects == 1 && (s.says & DALLE_SYNTH_SAYS_BACKGROUND) &&
                   strstr(caption, "background") &&
                   dalle_synth_is_heldout(s.objects[0].color, s.objects[0].shape, s.background,
                                          &h) == DALLE_OK && h == 1;
    }
    CHECK(train_ok, "training items never show a held-out combination");
    CHECK(held_ok, "held-out items show one and name the background");
    char a[DALLE_SYNTH_CAPTION_CAP], b[DALLE_SYNTH_CAPTION_CAP];
    dalle_synth_sample(held, 0, 0, NULL, a, sizeof a, NULL);
    dalle_synth *other = make(4, DALLE_SYNTH_HELDOUT);
    int differ = 0;
    for (uint64_t i = 0; i < 8; i++) {
        dalle_synth_sample(held, i, 0, NULL, a, sizeof a, NULL);
        dalle_synth_sample(other, i, 0, NULL, b, sizeof b, NULL);
        differ += strcmp(a, b) != 0;
    }
    CHECK(differ >= 4, "another seed, other captions (%d of 8 differ)", differ);
    dalle_synth_free(train);
    dalle_synth_free(held);
    dalle_synth_free(other);
}

/* ---- bad arguments leave the buffers untouched ------------------------------------ */

static int untouched(const float *px, int n)
{
    for (int i = 0; i < n; i++)
        if (px[i] != 42.0f)
            return 0;
    return 1;
}

static void test_bad_arguments(void)
{
    dalle_synth *g = make(1, DALLE_SYNTH_TRAIN);
    float *px = malloc(sizeof(float) * PX);
    for (int i = 0; i < PX; i++)
        px[i] = 42.0f;
    char caption[DALLE_SYNTH_CAPTION_CAP];
    memset(caption, 'x', sizeof caption);
    dalle_synth_scene scene = dalle_synth_default_scene();
    scene.n_objects = 77;

    CHECK_FAILS(dalle_synth_sample(NULL, 0, SIZE, px, caption, sizeof caption, &scene),
                DALLE_ERR_INVALID_ARGUMENT, "dalle_synth_sample: synth is NULL");
    CHECK_FAILS(dalle_synth_sample(g, 0, 8, px, caption, sizeof caption, &scene),
                DALLE_ERR_INVALID_ARGUMENT, "dalle_synth_sample: size = 8 (16..1024)");
    CHECK_FAILS(dalle_synth_sample(g, 0, 2048, px, caption, sizeof caption, &scene),
                DALLE_ERR_INVALID_ARGUMENT, "size = 2048");
    CHECK_FAILS(dalle_synth_sample(g, 0, SIZE, px, caption, 0, &scene), DALLE_ERR_INVALID_ARGUMENT,
                "cap = 0");
    CHECK_FAILS(dalle_synth_sample(g, 0, SIZE, px, caption, 5, &scene), DALLE_ERR_TOO_LONG,
                "the caption of item 0 needs");
    CHECK_FAILS(dalle_synth_sample(g, 0, SIZE, NULL, NULL, 0, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "nothing to write");
    dalle_synth_scene small = scene;
    small.struct_size = 8;
    CHECK_FAILS(dalle_synth_sample(g, 0, SIZE, px, caption, sizeof caption, &small),
                DALLE_ERR_INVALID_ARGUMENT,
                "scene->struct_size = 8: initialise it with dalle_synth_default_scene()");
    CHECK(untouched(px, PX) && caption[0] == 'x' && caption[5] == 'x' && scene.n_objects == 77 &&
              small.n_objects == 77,
          "refused samples wrote no pixel, caption or scene");

    /* a newer caller's larger scene: its own bytes past ours are kept */
    unsigned char big[sizeof(dalle_synth_scene) + 16];
    memset(big, 0x5a, sizeof big);
    dalle_synth_scene_init((dalle_synth_scene *)big, sizeof big);
    memset(big + sizeof(dalle_synth_scene), 0x5a, 16);
    dalle_synth_scene *bs = (dalle_synth_scene *)big;
    int tail_kept = 1;
    CHECK(dalle_synth_sample(g, 0, 0, NULL, NULL, 0, bs) == DALLE_OK && bs->n_objects >= 1 &&
              bs->struct_size == sizeof big,
          "a larger scene struct is filled, its size kept");
    for (size_t i = sizeof(dalle_synth_scene); i < sizeof big; i++)
        tail_kept &= big[i] == 0x5a;
    CHECK(tail_kept, "the bytes past our struct are untouched");

    /* the judge */
    for (int i = 0; i < PX; i++)
        px[i] = 0.5f;
    dalle_synth_verdict v = dalle_synth_default_verdict();
    v.asked = 99;
    dalle_synth_scene seen = dalle_synth_default_scene();
    seen.n_objects = 99;
    CHECK_FAILS(dalle_synth_judge(NULL, SIZE, "a red circle", &v, &seen),
                DALLE_ERR_INVALID_ARGUMENT, "dalle_synth_judge: pixels is NULL");
    CHECK_FAILS(dalle_synth_judge(px, 15, "a red circle", &v, &seen), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_synth_judge: size = 15 (16..1024)");
    CHECK_FAILS(dalle_synth_judge(px, SIZE, NULL, &v, &seen), DALLE_ERR_INVALID_ARGUMENT,
                "caption is NULL");
    CHECK_FAILS(dalle_synth_judge(px, SIZE, "a red circle", NULL, &seen),
                DALLE_ERR_INVALID_ARGUMENT, "verdict is NULL");
    CHECK_FAILS(dalle_synth_judge(px, SIZE, "a red", &v, &seen), DALLE_ERR_FORMAT,
                "dalle_synth_judge: 'a red' names no object");
    CHECK_FAILS(dalle_synth_judge(px, SIZE, "a circle", &v, &seen), DALLE_ERR_FORMAT,
                "has no colour");
    CHECK_FAILS(dalle_synth_judge(px, SIZE, "a red circle a blue square", &v, &seen),
                DALLE_ERR_FORMAT, "no relation");
    dalle_synth_verdict vbad = v;
    vbad.struct_size = 0;
    CHECK_FAILS(dalle_synth_judge(px, SIZE, "a red circle", &vbad, &seen),
                DALLE_ERR_INVALID_ARGUMENT,
                "verdict->struct_size = 0: initialise it with dalle_synth_default_verdict()");
    dalle_synth_scene sbad = seen;
    sbad.struct_size = 1 << 20;
    CHECK_FAILS(dalle_synth_judge(px, SIZE, "a red circle", &v, &sbad),
                DALLE_ERR_INVALID_ARGUMENT, "seen->struct_size = 1048576");

    dalle_synth_scene want = dalle_synth_default_scene();
    dalle_synth_parse_caption("a red circle above a blue square", &want);
    const struct {
        int *field, value;
        const char *needle;
    } bad[] = {{&want.n_objects, 3, "want->n_objects = 3 (1..2)"},
               {&want.background, 8, "want->background = 8 (0..7)"},
               {&want.relation, 4, "want->relation = 4 (0..3)"},
               {&want.objects[1].shape, 4, "want->objects[1].shape = 4 (0..3)"},
               {&want.objects[0].color, -1, "want->objects[0].color = -1 (0..7)"},
               {&want.objects[1].position, 9, "want->objects[1].position = 9 (0..8)"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int old = *bad[i].field;
        *bad[i].field = bad[i].value;
        CHECK_FAILS(dalle_synth_judge_scene(px, SIZE, &want, &v, &seen),
                    DALLE_ERR_INVALID_ARGUMENT, bad[i].needle);
        *bad[i].field = old;
    }
    want.says = 8;
    CHECK_FAILS(dalle_synth_judge_scene(px, SIZE, &want, &v, &seen), DALLE_ERR_INVALID_ARGUMENT,
                "want->says = 0x8: unknown bits");
    CHECK_FAILS(dalle_synth_judge_scene(px, SIZE, NULL, &v, &seen), DALLE_ERR_INVALID_ARGUMENT,
                "want is NULL");
    CHECK_FAILS(dalle_synth_read(px, SIZE, 3, &seen), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_synth_read: max_objects = 3 (1 or 2)");
    CHECK_FAILS(dalle_synth_read(px, SIZE, 1, NULL), DALLE_ERR_INVALID_ARGUMENT, "seen is NULL");
    CHECK(v.asked == 99 && seen.n_objects == 99, "refused judge calls wrote no verdict or scene");

    /* a blank picture: nothing there, so nothing is right */
    want.says = 0;
    CHECK(dalle_synth_judge_scene(px, SIZE, &want, &v, &seen) == DALLE_OK && seen.n_objects == 0 &&
              v.color == 0 && v.shape == 0 && v.right == 0,
          "a blank picture has no object");
    CHECK(dalle_synth_read(px, SIZE, 2, &seen) == DALLE_OK && seen.n_objects == 0,
          "read: a blank picture has no object");

    CHECK_FAILS(dalle_synth_parse_caption(NULL, &seen), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_synth_parse_caption: caption is NULL");
    CHECK_FAILS(dalle_synth_parse_caption("a red circle", NULL), DALLE_ERR_INVALID_ARGUMENT,
                "scene is NULL");
    CHECK_FAILS(dalle_synth_get_params(NULL, NULL, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "synth is NULL");
    free(px);
    dalle_synth_free(g);
}

/* ---- a folder the public data sets read ------------------------------------------- */

static void test_folder(void)
{
    dalle_synth *g = make(11, DALLE_SYNTH_TRAIN);
    const char *dir = tmp("synth_api_folder");
    CHECK(dalle_synth_write_folder(g, dir, 0, 5, SIZE, 3) == DALLE_OK, "write 5 items: %s",
          dalle_last_error());
    dalle_image_data_params dp = dalle_image_data_default_params();
    dp.image_size = SIZE;
    dp.strict = 1;
    dalle_image_data *d = NULL;
    CHECK(dalle_image_data_folder(dir, &dp, &d) == DALLE_OK && dalle_image_data_count(d) == 5,
          "dalle_image_data_folder reads them (strict)");
    int same = 1, several = 0;
    for (int64_t i = 0; d && i < 5; i++) {
        char caption[DALLE_SYNTH_CAPTION_CAP];
        dalle_synth_sample(g, (uint64_t)i, 0, NULL, caption, sizeof caption, NULL);
        const char *c0 = dalle_image_data_caption(d, i, 0);
        same &= c0 && !strcmp(c0, caption);
        several += dalle_image_data_caption_count(d, i) > 1;
    }
    CHECK(same, "each image's first caption is the item's");
    CHECK(several > 0, "other wordings follow");
    dalle_image_data_free(d);

    CHECK_FAILS(dalle_synth_write_folder(NULL, dir, 0, 1, SIZE, 1), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_synth_write_folder: synth is NULL");
    CHECK_FAILS(dalle_synth_write_folder(g, NULL, 0, 1, SIZE, 1), DALLE_ERR_INVALID_ARGUMENT,
                "dir is NULL");
    CHECK_FAILS(dalle_synth_write_folder(g, dir, 0, -1, SIZE, 1), DALLE_ERR_INVALID_ARGUMENT,
                "count = -1");
    CHECK_FAILS(dalle_synth_write_folder(g, dir, 0, 1, 12, 1), DALLE_ERR_INVALID_ARGUMENT,
                "size = 12");
    CHECK_FAILS(dalle_synth_write_folder(g, dir, 0, 1, SIZE, 17), DALLE_ERR_INVALID_ARGUMENT,
                "n_captions = 17 (1..16)");
    CHECK_FAILS(dalle_synth_write_folder(g, dir, UINT64_MAX, 2, SIZE, 1),
                DALLE_ERR_INVALID_ARGUMENT, "passes the last item index");
    CHECK_FAILS(dalle_synth_write_folder(g, tmp("no/such/folder"), 0, 1, SIZE, 1), DALLE_ERR_IO,
                "dalle_synth_write_folder: cannot create");
    dalle_synth_free(g);
}

/* ---- BPE ------------------------------------------------------------------------- */

static void test_bpe(void)
{
    enum { N = 200 };
    dalle_synth *g = make(0, DALLE_SYNTH_TRAIN);
    static char captions[N][DALLE_SYNTH_CAPTION_CAP];
    const char *texts[N];
    for (int i = 0; i < N; i++) {
        dalle_synth_sample(g, (uint64_t)i, 0, NULL, captions[i], sizeof captions[i], NULL);
        texts[i] = captions[i];
    }
    dalle_synth_free(g);

    dalle_bpe_learn_params p = dalle_bpe_learn_default_params();
    CHECK(p.struct_size == sizeof p && p.max_merges == 10000 && p.min_count == 1,
          "BPE defaults: 10000 merges, min_count 1");
    dalle_bpe_merges *m = NULL;
    CHECK(dalle_bpe_learn(texts, N, NULL, &m) == DALLE_OK && m, "learn from %d captions", N);
    int n = dalle_bpe_merges_count(m);
    size_t len = 0;
    const char *text = dalle_bpe_merges_text(m, &len);
    CHECK(n > 20 && dalle_bpe_merges_vocab_size(m) == 512 + n + 2, "%d merges, %d ids", n,
          dalle_bpe_merges_vocab_size(m));
    CHECK(text && len == strlen(text) && !strncmp(text, "#version", 8),
          "the merges file text (%zu bytes)", len);
    const char *path = tmp("synth_api_merges.txt");
    CHECK(dalle_bpe_merges_save(m, path) == DALLE_OK, "save: %s", dalle_last_error());
    dalle_tokenizer *tok = NULL;
    int32_t ids[8];
    int count = 0;
    CHECK(dalle_tokenizer_create(path, &tok) == DALLE_OK &&
              dalle_tokenizer_vocab_size(tok) == dalle_bpe_merges_vocab_size(m),
          "a tokenizer loads the saved merges with the vocabulary size announced");
    CHECK(tok && dalle_tokenizer_encode(tok, "a red circle on a blue background", ids, 8,
                                        &count) == DALLE_OK && count == 7,
          "every word of the world is one token (%d ids)", count);
    dalle_tokenizer_free(tok);

    dalle_bpe_learn_params few = dalle_bpe_learn_default_params();
    few.max_merges = 5;
    dalle_bpe_merges *m5 = NULL;
    CHECK(dalle_bpe_learn(texts, N, &few, &m5) == DALLE_OK && dalle_bpe_merges_count(m5) == 5 &&
              !strncmp(dalle_bpe_merges_text(m5, NULL), text, strlen(dalle_bpe_merges_text(m5, NULL))),
          "max_merges 5: the first five merges of the full run");
    dalle_bpe_merges_free(m5);

    dalle_bpe_merges *keep = m, *out = keep;
    few = dalle_bpe_learn_default_params();
    few.max_merges = DALLE_BPE_MAX_MERGES + 1;
    CHECK_FAILS(dalle_bpe_learn(texts, N, &few, &out), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_bpe_learn_params.max_merges = 48895 (0..48894)");
    few = dalle_bpe_learn_default_params();
    few.min_count = 0;
    CHECK_FAILS(dalle_bpe_learn(texts, N, &few, &out), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_bpe_learn_params.min_count = 0");
    CHECK_FAILS(dalle_bpe_learn(NULL, N, NULL, &out), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_bpe_learn: texts is NULL");
    CHECK_FAILS(dalle_bpe_learn(texts, 0, NULL, &out), DALLE_ERR_INVALID_ARGUMENT,
                "n_texts = 0");
    CHECK_FAILS(dalle_bpe_learn(texts, N, NULL, NULL), DALLE_ERR_INVALID_ARGUMENT,
                "out is NULL");
    const char *holes[3] = {"a red circle", NULL, "a blue square"};
    CHECK_FAILS(dalle_bpe_learn(holes, 3, NULL, &out), DALLE_ERR_INVALID_ARGUMENT,
                "dalle_bpe_learn: texts[1] is NULL");
    const char *bytes[2] = {"a red circle", "caf\xc3"};
    CHECK_FAILS(dalle_bpe_learn(bytes, 2, NULL, &out), DALLE_ERR_INVALID_ARGUMENT,
                "texts[1] is not valid UTF-8");
    CHECK(out == keep, "refused learns leave *out alone");
    CHECK_FAILS(dalle_bpe_merges_save(m, tmp("no/such/dir/m.txt")), DALLE_ERR_IO,
                "dalle_bpe_merges_save: cannot create");
    CHECK_FAILS(dalle_bpe_merges_save(NULL, path), DALLE_ERR_INVALID_ARGUMENT, "merges is NULL");
    CHECK(dalle_bpe_merges_count(NULL) == 0 && dalle_bpe_merges_vocab_size(NULL) == 0 &&
              dalle_bpe_merges_text(NULL, &len) == NULL && len == 0,
          "NULL merges: 0, 0, NULL");
    dalle_bpe_merges_free(m);
    dalle_bpe_merges_free(NULL);
}

int main(int argc, char **argv)
{
    tmpdir = argc > 1 ? argv[1] : ".";
    test_vocabulary();
    test_create();
    test_round_trip();
    test_splits();
    test_bad_arguments();
    test_folder();
    test_bpe();
    return check_summary();
}
