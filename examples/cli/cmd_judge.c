/* dalle judge: the proof that a model trained on the synthetic world draws
 * what it is told. Held-out captions (colour, shape, background
 * combinations that training never shows) are generated S times each, the
 * first sample and the CLIP-best are read back from the pixels by the
 * world's judge (dalle_synth_judge_scene of <dalle/train.h>: plain image
 * analysis, no network) and the accuracy per attribute is printed. With
 * --image it judges one PNG against one caption instead and fails unless
 * every stated attribute is right: a check for scripts (.ci/demo). */
#include <dalle/dalle.h>
#include <dalle/train.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle judge -m MODEL [--clip CLIP] [-n N] [-s S] [--seed SEED] [world options]\n"
    "       dalle judge --image PNG --caption TEXT [--size PIXELS]\n"
    "\n"
    "Measure how well a model trained on the built-in synthetic world draws what a\n"
    "caption says. It takes N captions of the world's HELD-OUT split (item 0 .. N-1\n"
    "of --seed: each names an object colour, shape and background that training\n"
    "never showed together), generates S images for each, and reads back from the\n"
    "pixels, with the world's judge (plain image analysis: background = the palette\n"
    "colour nearest the border's median, objects = the regions far from it, their\n"
    "colour, shape and grid cell), whether each attribute the caption states is\n"
    "right. It reports the accuracy of the FIRST sample and, with --clip, of the\n"
    "sample CLIP ranks best among the S (the reranking of `dalle generate --clip`):\n"
    "  colour      every object has the colour the caption names\n"
    "  shape       every object has the shape the caption names\n"
    "  position    the object's cell (or the two objects' relation); only captions\n"
    "              that state one count\n"
    "  background  the background colour\n"
    "  all         every attribute the caption states is right\n"
    "\n"
    "  -m, --model FILE       the DALL-E model (trained on the synthetic world)\n"
    "  --clip FILE            a CLIP bundle to rerank the S samples\n"
    "  -n, --captions N       held-out captions to judge (default 100)\n"
    "  -s, --samples S        images per caption (default 8)\n"
    "  --seed N               which captions, and the sampling seed (default 0)\n"
    "  --filter-thres F       top-k filter, as generate (default 0.5)\n"
    "  --temperature X        sampling temperature (default 1)\n"
    "  -v, --verbose          one line per caption: what the judge read\n"
    "  -t, --threads N        worker threads (default: all cores)\n"
    "  (the world options below must be those the model was trained with)\n"
    "one image:\n"
    "  --image PNG            judge this image instead; exit status 1 unless every\n"
    "  --caption TEXT         attribute the caption states is right\n"
    "  --size N               pixels per side to judge it at (default 64)\n"
    "\n";

typedef struct opts {
    const char *model, *clip, *image, *caption;
    long long n, samples, threads, size;
    cli_world world;
    uint64_t seed;
    double thres, temperature;
    int verbose;
} opts;

static int parse(int argc, char **argv, opts *o, cli_args *a)
{
    memset(o, 0, sizeof *o);
    o->n = 100, o->samples = 8, o->size = 64, o->thres = 0.5, o->temperature = 1.0;
    cli_world_init(&o->world);
    cli_args_init(a, "judge", argc, argv);
    int rc = 0, kind;
    while (!rc && (kind = cli_next(a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL)
            return cli_unexpected(a);
        if (cli_is(a, "-h", "--help")) {
            fputs(usage, stdout);
            fputs(cli_world_usage, stdout);
            return -1;
        }
        if (cli_world_option(a, &o->world, &rc)) continue;
        if (cli_is(a, "-m", "--model")) rc = cli_value(a, &o->model);
        else if (cli_is(a, NULL, "--clip")) rc = cli_value(a, &o->clip);
        else if (cli_is(a, "-n", "--captions")) rc = cli_int_value(a, 1, 1 << 20, &o->n);
        else if (cli_is(a, "-s", "--samples")) rc = cli_int_value(a, 1, 1024, &o->samples);
        else if (cli_is(a, NULL, "--seed")) rc = cli_u64_value(a, &o->seed);
        else if (cli_is(a, NULL, "--filter-thres")) rc = cli_float_value(a, 0, 0, 1, 1, &o->thres);
        else if (cli_is(a, NULL, "--temperature")) rc = cli_float_value(a, 0, 1, 100, 0, &o->temperature);
        else if (cli_is(a, "-v", "--verbose")) rc = cli_flag(a), o->verbose = 1;
        else if (cli_is(a, "-t", "--threads")) rc = cli_int_value(a, 0, 4096, &o->threads);
        else if (cli_is(a, NULL, "--image")) rc = cli_value(a, &o->image);
        else if (cli_is(a, NULL, "--caption")) rc = cli_value(a, &o->caption);
        else if (cli_is(a, NULL, "--size")) rc = cli_int_value(a, DALLE_SYNTH_MIN_SIZE, DALLE_SYNTH_MAX_SIZE, &o->size);
        else return cli_unexpected(a);
    }
    if (rc)
        return rc;
    if (o->image || o->caption) {
        if (!o->image || !o->caption)
            return cli_usage(a, "--image and --caption go together");
        return 0;
    }
    if (!o->model)
        return cli_usage(a, "a model is needed: -m MODEL.dalle (or --image PNG --caption TEXT)");
    return 0;
}

/* ---- tallies ------------------------------------------------------------------ */

enum { A_COLOR, A_SHAPE, A_POSITION, A_BACKGROUND, A_ALL, N_ATTR };
static const char *const attr_name[N_ATTR] = {"colour", "shape", "position", "background", "all"};

typedef struct tally {
    int right[N_ATTR], asked[N_ATTR];
} tally;

/* Count a verdict; returns whether everything asked was right. */
static int tally_add(tally *t, const dalle_synth_verdict *v)
{
    const int got[4] = {v->color, v->shape, v->position, v->background};
    int all = 1;
    for (int k = 0; k < 4; k++) {
        if (got[k] < 0)
            continue;
        t->asked[k]++;
        t->right[k] += got[k] == 1;
        all &= got[k] == 1;
    }
    t->asked[A_ALL]++;
    t->right[A_ALL] += all;
    return all;
}

/* One column of the table; the last one is not padded (no trailing blanks). */
static void print_cell(const tally *t, int k, int last)
{
    if (!t->asked[k])
        printf(last ? "  %s" : "  %-16s", "not asked");
    else
        printf("  %4d/%-4d %5.1f%%", t->right[k], t->asked[k], 100.0 * t->right[k] / t->asked[k]);
}

static const char *name_or(const char *s) { return s ? s : "?"; }

static void describe(const dalle_synth_scene *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (int i = 0; i < s->n_objects && i < 2 && n < cap; i++)
        n += (size_t)snprintf(buf + n, cap - n, "%s%s %s@%s", i ? ", " : "",
                              name_or(dalle_synth_color_name(s->objects[i].color)),
                              name_or(dalle_synth_shape_name(s->objects[i].shape)),
                              name_or(dalle_synth_position_name(s->objects[i].position)));
    if (n < cap)
        snprintf(buf + n, cap - n, "%s on %s", s->n_objects ? "" : "nothing",
                 name_or(dalle_synth_color_name(s->background)));
}

/* ---- one image ------------------------------------------------------------------ */

static int judge_image(const opts *o)
{
    dalle_synth_scene want = dalle_synth_default_scene();
    if (dalle_synth_parse_caption(o->caption, &want))
        return cli_error("judge: %s", dalle_last_error());
    size_t n = (size_t)(3 * o->size * o->size);
    float *px = malloc(n * sizeof *px);
    if (!px)
        return cli_error("judge: out of memory");
    dalle_synth_verdict v = dalle_synth_default_verdict();
    dalle_synth_scene seen = dalle_synth_default_scene();
    if (dalle_read_image(o->image, (int)o->size, px) ||
        dalle_synth_judge_scene(px, (int)o->size, &want, &v, &seen)) {
        free(px);
        return cli_error("judge: %s", dalle_last_error());
    }
    free(px);
    tally t = {0};
    int ok = tally_add(&t, &v);
    char read[256];
    describe(&seen, read, sizeof read);
    printf("%s: %s  (read: %s)\n", o->image, ok ? "PASS" : "FAIL", read);
    for (int k = 0; k < A_ALL; k++)
        if (t.asked[k])
            printf("  %-10s %s\n", attr_name[k], t.right[k] ? "right" : "WRONG");
    return ok ? 0 : CLI_FAIL;
}

/* ---- held-out captions ---------------------------------------------------------- */

static int run(const opts *o)
{
    /* The held-out captions are items 0 .. n - 1 of the world's held-out
     * split; the generator is made before the model is loaded, so that a
     * world it refuses costs nothing. */
    dalle_synth_params wp = dalle_synth_default_params();
    wp.colors = (int)o->world.colors, wp.shapes = (int)o->world.shapes;
    wp.max_objects = (int)o->world.objects, wp.layouts = (int)o->world.layouts;
    wp.split = DALLE_SYNTH_HELDOUT;
    dalle_synth *world = NULL;
    if (dalle_synth_create(o->seed, &wp, &world))
        return cli_error("judge: %s", dalle_last_error());
    dalle_ctx_params cp = dalle_ctx_default_params();
    cp.n_threads = (int)o->threads;
    cp.max_batch = (int)o->samples;
    dalle_ctx *ctx = NULL;
    if (dalle_ctx_create(o->model, &cp, &ctx)) {
        dalle_synth_free(world);
        return cli_error("judge: %s", dalle_last_error());
    }
    int S = (int)o->samples, size = dalle_image_size(ctx), tl = dalle_text_seq_len(ctx);
    int il = dalle_image_seq_len(ctx);
    size_t img = (size_t)3 * size * size;
    int32_t *text = malloc((size_t)S * tl * sizeof *text);
    int32_t *ids = malloc((size_t)S * il * sizeof *ids);
    float *px = malloc((size_t)S * img * sizeof *px);
    float *scores = malloc((size_t)S * sizeof *scores);
    int *order = malloc((size_t)S * sizeof *order);
    cli_clip clip = {0};
    int have_clip = 0, rc = 0;
    tally first = {0}, best = {0};
    if (!text || !ids || !px || !scores || !order) {
        rc = cli_error("judge: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < o->n && !rc; i++) {
        char caption[DALLE_SYNTH_CAPTION_CAP];
        dalle_synth_scene want = dalle_synth_default_scene();
        if (dalle_synth_sample(world, (uint64_t)i, 0, NULL, caption, sizeof caption, NULL) ||
            dalle_synth_parse_caption(caption, &want)) {
            rc = cli_error("judge: %s", dalle_last_error());
            break;
        }
        /* The same caption S times: the S images draw the random streams of
         * images i·S .. i·S + S - 1, so every run of this command is the same. */
        for (int b = 0; b < S; b++)
            if (dalle_tokenize(ctx, caption, text + (size_t)b * tl, tl, 0)) {
                rc = cli_error("judge: '%s': %s", caption, dalle_last_error());
                goto done;
            }
        dalle_sample_params sp = dalle_sample_default_params();
        sp.seed = o->seed;
        sp.first_image = (uint64_t)i * (uint64_t)S;
        sp.filter_thres = (float)o->thres;
        sp.temperature = (float)o->temperature;
        if (dalle_sample(ctx, text, S, &sp, ids) || dalle_decode(ctx, ids, S, px)) {
            rc = cli_error("judge: %s", dalle_last_error());
            break;
        }
        int pick = 0;
        if (o->clip) {
            if (!have_clip) {
                const cli_compute cc = {o->threads, DALLE_BACKEND_CPU, 0};
                if (cli_clip_open(&clip, "judge", o->clip, caption, &cc)) {
                    rc = CLI_FAIL;
                    break;
                }
                have_clip = 1;
            } else if ((clip.openai ? dalle_tokenizer_tokenize_clip(clip.tok, caption, clip.text,
                                                                    clip.text_len, 1)
                                    : dalle_tokenizer_tokenize(clip.tok, caption, clip.text,
                                                               clip.text_len, 1))) {
                rc = cli_error("judge: %s", dalle_last_error());
                break;
            }
            if (cli_clip_rank(&clip, px, S, size, scores, order)) {
                rc = CLI_FAIL;
                break;
            }
            pick = order[0];
        }
        dalle_synth_verdict v0 = dalle_synth_default_verdict(), vb = v0;
        dalle_synth_scene seen0 = dalle_synth_default_scene(), seenb = seen0;
        if (dalle_synth_judge_scene(px, size, &want, &v0, &seen0) ||
            dalle_synth_judge_scene(px + (size_t)pick * img, size, &want, &vb, &seenb)) {
            rc = cli_error("judge: %s", dalle_last_error());
            break;
        }
        int ok0 = tally_add(&first, &v0), okb = o->clip ? tally_add(&best, &vb) : ok0;
        if (o->verbose) {
            char s0[256], sb[256];
            describe(&seen0, s0, sizeof s0);
            describe(&seenb, sb, sizeof sb);
            printf("%3lld  %-48s first: %s %s", (long long)i, caption, ok0 ? "ok  " : "MISS", s0);
            if (o->clip)
                printf(" | best #%d: %s %s", pick, okb ? "ok  " : "MISS", sb);
            printf("\n");
        }
    }
    if (!rc) {
        printf("judged %lld held-out captions of the synthetic world (seed %llu; %d colours, "
               "%d shapes, up to %d object%s, layouts %d), %d sample%s each, %dx%d pixels\n",
               (long long)o->n, (unsigned long long)o->seed, wp.colors, wp.shapes,
               wp.max_objects, wp.max_objects > 1 ? "s" : "", wp.layouts, S,
               S > 1 ? "s" : "", size, size);
        printf(o->clip ? "%-12s  %-16s" : "%-12s  %s", "attribute", "first sample");
        if (o->clip)
            printf("  CLIP-best of %d", S);
        printf("\n");
        for (int k = 0; k < N_ATTR; k++) {
            printf("%-12s", attr_name[k]);
            print_cell(&first, k, !o->clip);
            if (o->clip)
                print_cell(&best, k, 1);
            printf("\n");
        }
    }
done:
    if (have_clip)
        cli_clip_close(&clip);
    free(text), free(ids), free(px), free(scores), free(order);
    dalle_ctx_free(ctx);
    dalle_synth_free(world);
    return rc;
}

int cmd_judge(int argc, char **argv)
{
    opts o;
    cli_args a;
    int rc = parse(argc, argv, &o, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    return o.image ? judge_image(&o) : run(&o);
}
