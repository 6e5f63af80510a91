/* Subcommands of the `dalle` command and the helpers they share. Each
 * command takes the arguments after its name and returns the process exit
 * status: 0 ok, 1 failure, 2 usage error, 130 interrupted (SIGINT). */
#ifndef DALLE_CLI_COMMANDS_H
#define DALLE_CLI_COMMANDS_H

#include <dalle/dalle.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_encode(int argc, char **argv);
int cmd_decode(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_train_dalle(int argc, char **argv);
int cmd_train_bpe(int argc, char **argv);
int cmd_judge(int argc, char **argv);
int cmd_train_vae(int argc, char **argv);
int cmd_train_clip(int argc, char **argv);

/* Exit statuses. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2, CLI_INTERRUPTED = 130 };

/* Print "dalle: <message>" on stderr and return CLI_FAIL. Every error the
 * command reports is this one line. */
int cli_error(const char *fmt, ...) CLI_PRINTF(1, 2);

/* ---- argument parsing (cli_args.c) ---------------------------------------
 * Options and positional arguments may come in any order; "--long=value"
 * and "--long value" are the same; "--" ends the options (for a caption
 * that starts with '-'). A lone "-" is a positional argument (stdin). */

typedef struct cli_args {
    const char *cmd;    /* the subcommand, for messages */
    int argc;
    char **argv;
    int i;              /* index of the next argument */
    int only_positional;
    const char *arg;    /* the current argument as typed */
    char name[64];      /* the current option without its "=value" */
    const char *inline_value;
} cli_args;

enum { CLI_ARG_END, CLI_ARG_POSITIONAL, CLI_ARG_OPTION };

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv);
/* Step to the next argument: CLI_ARG_END, _POSITIONAL (a->arg) or _OPTION
 * (a->name). */
int cli_next(cli_args *a);
/* Whether the current option is `shortopt` or `longopt` (either may be NULL). */
int cli_is(const cli_args *a, const char *shortopt, const char *longopt);
/* A flag must not carry "=value": 0, or CLI_USAGE after the message. */
int cli_flag(cli_args *a);
/* The option's value (after '=' or the next argument): 0, or CLI_USAGE after
 * the message when it is missing. */
int cli_value(cli_args *a, const char **value);

/* Report a usage error "dalle: CMD: message" and return CLI_USAGE. */
int cli_usage(const cli_args *a, const char *fmt, ...) CLI_PRINTF(2, 3);
/* "unknown option" / "unexpected argument" for the current argument. */
int cli_unexpected(const cli_args *a);

/* Parse the current option's value completely, within [lo, hi]: 0, or
 * CLI_USAGE after a message naming the option and the value. */
int cli_int_value(cli_args *a, long long lo, long long hi, long long *out);
int cli_u64_value(cli_args *a, uint64_t *out);
/* lo_open / hi_open: whether the bound itself is excluded. */
int cli_float_value(cli_args *a, double lo, int lo_open, double hi, int hi_open, double *out);

/* Parse whitespace- or comma-separated integers (token ids) from text,
 * appending to *ids (a malloc'd array of *n, capacity *cap). `origin` names
 * the source in the message. 0, or CLI_USAGE (not a number) / CLI_FAIL (out
 * of memory) after the message. */
int cli_parse_ids(const char *cmd, const char *text, const char *origin, int32_t **ids,
                  size_t *n, size_t *cap);

/* The whole of a file ("-" is stdin), NUL-terminated: NULL after a message. */
char *cli_read_file(const char *cmd, const char *path);

/* Check that the folder a file is to be written in exists and is writable,
 * so a long run does not fail at its end: 0 or CLI_FAIL after a message. */
int cli_check_writable(const char *cmd, const char *path);

/* Check that each input file can be read, before a model is loaded:
 * 0 or CLI_FAIL after a message naming the first that cannot. */
int cli_check_readable(const char *cmd, char **paths, int n);

/* ---- models (cli_models.c) ------------------------------------------------ */

/* The kinds a command accepts. */
enum {
    CLI_KIND_DALLE = 1,
    CLI_KIND_VAE = 2,  /* dvae, openai_dvae, vqgan */
    CLI_KIND_CLIP = 4, /* clip, openai_clip */
};

/* Open the bundle at `path` just to check its kind against `kinds`: a
 * clearer message than the loader's for the common mistake of passing one
 * model where another is wanted. 0 or CLI_FAIL after the message; *kind
 * (optional) receives the kind in a static buffer. */
int cli_check_kind(const char *cmd, const char *option, const char *path, int kinds,
                   const char **kind);

/* Where a command's models compute: -t/--threads, --backend, --device. */
typedef struct cli_compute {
    long long threads; /* dalle_ctx_params.n_threads (0: all cores) */
    int backend;       /* DALLE_BACKEND_CPU (the default), _CUDA or _AUTO */
    long long device;  /* the GPU's index */
} cli_compute;

#define CLI_COMPUTE_HELP                                                                       \
    "  -t, --threads N        worker threads (default: all cores)\n"                            \
    "  --backend B            cpu (default), cuda, or auto (the GPU where one works,\n"         \
    "                         else the CPU)\n"                                                  \
    "  --device N             the GPU for cuda and auto (default 0)\n"

/* If a is one of those options, parse its value into *c (*rc: 0 or the
 * usage error) and return 1; else 0. */
int cli_compute_option(cli_args *a, cli_compute *c, int *rc);

/* A DALL-E or VAE context (dalle_ctx_create): NULL after the message. */
dalle_ctx *cli_load_dalle(const char *path, const cli_compute *c, int max_batch);

/* Report a failed library call: its message (dalle_last_error) as the one
 * line. Returns CLI_FAIL. */
int cli_lib_error(void);

/* CLIP with its tokenizer, as generate (reranking) and score use it. */
typedef struct cli_clip {
    clip_ctx *ctx;
    dalle_tokenizer *tok;
    int openai;      /* OpenAI CLIP: clip.tokenize's layout */
    int size;        /* input pixels per side */
    int text_len;
    int32_t *text;   /* the caption's ids [text_len] */
} cli_clip;

/* Load the CLIP bundle and tokenize the caption for it: 0 or CLI_FAIL after
 * the message (the struct is then freed). */
int cli_clip_open(cli_clip *c, const char *cmd, const char *path, const char *caption,
                  const cli_compute *compute);
/* Rerank n images [n][3][size][size] in [0, 1] by the caption: scores[n]
 * (CLIP's logits) and order[n], the indices best first. 0 or CLI_FAIL after
 * the message. */
int cli_clip_rank(cli_clip *c, const float *pixels, int n, int size, float *scores, int *order);
void cli_clip_close(cli_clip *c);

/* ---- progress and Ctrl-C (progress.c) ------------------------------------ */

/* Catch SIGINT: the first one sets the flag cli_interrupted() reads (and
 * that the abort callbacks return); a second one kills as usual. */
void cli_catch_sigint(void);
int cli_interrupted(void);
/* A dalle_abort_fn that returns cli_interrupted(). */
int cli_abort_cb(void *user);

/* A progress bar on stderr: "tokens done/total, tokens/s, ETA", drawn only
 * when stderr is a terminal, at most ten times a second. */
typedef struct cli_progress {
    int enabled, drawn;
    int64_t total;  /* tokens in the whole run */
    int64_t base;   /* tokens finished by earlier calls */
    double t0, last;
} cli_progress;

void cli_progress_init(cli_progress *p, int64_t total);
/* A dalle_progress_fn: `done` of the current call, added to p->base. */
void cli_progress_cb(int64_t done, int64_t total, void *user);
/* End the line (when something was drawn). */
void cli_progress_end(cli_progress *p);
/* Seconds as "1:05" or "1:02:03" ("--:--" when negative, NaN or over 100
 * hours): the ETA of progress lines. */
void cli_format_duration(double s, char *buf, size_t cap);

/* ---- the train-* commands (train_common.c) ------------------------------- */

/* Monotonic seconds. */
double cli_now(void);

/* "reading images 40/100" while a data set loads, on a terminal only. */
typedef struct cli_train_load {
    const char *what;
    int enabled, drawn;
    double last;
} cli_train_load;
void cli_train_load_init(cli_train_load *l, const char *what);
/* A dalle_progress_fn; user is the cli_train_load (pass it when enabled). */
void cli_train_load_progress(int64_t done, int64_t total, void *user);
void cli_train_load_end(cli_train_load *l);

/* The status line "step s/N  epoch e  <metrics>  <rate> <unit>/s  ETA m:ss":
 * redrawn in place on a terminal (at most ten times a second), else one
 * line every log_every steps, for log files. */
typedef struct cli_train_progress {
    int tty, drawn;
    int64_t first_step, target, log_every;
    const char *unit; /* "tokens", "images", "pairs" */
    double t0, last, units;
} cli_train_progress;
void cli_train_progress_init(cli_train_progress *p, int64_t first_step, int64_t target,
                             int64_t log_every, const char *unit);
/* After step `step`, which processed `units` units. */
void cli_train_progress_report(cli_train_progress *p, int64_t step, int64_t epoch, double units,
                               const char *metrics, int skipped);
void cli_train_progress_end(cli_train_progress *p);

/* The synthetic world's options, shared by every train-* command. */
typedef struct cli_world {
    long long colors, shapes, objects, layouts;
} cli_world;
extern const char cli_world_usage[]; /* their help lines */
void cli_world_init(cli_world *w);
/* Whether the current option is one of them (then *rc: its parse result). */
int cli_world_option(cli_args *a, cli_world *w, int *rc);

#endif
