/* A minimal check harness for the C tests: one line per check, a summary,
 * and the exit status meson expects (0 pass, 1 fail, 77 skip). */
#ifndef DALLE_TEST_CHECK_H
#define DALLE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dalle/dalle.h"

static int check_failures, check_count;

#define CHECK(cond, ...)                                                       \
    do {                                                                       \
        check_count++;                                                         \
        if (cond) {                                                            \
            printf("ok   ");                                                   \
        } else {                                                               \
            check_failures++;                                                  \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                        \
        }                                                                      \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
    } while (0)

/* A call that must fail with `code` and a message containing `needle`. */
#define CHECK_FAILS(call, code, needle)                                        \
    do {                                                                       \
        int check_rc_ = (call);                                                \
        const char *check_msg_ = dalle_last_error();                           \
        CHECK(check_rc_ == (code) && strstr(check_msg_, (needle)) != NULL,     \
              "%s -> %d (want %d), \"%s\" (want \"%s\")", #call, check_rc_,   \
              (int)(code), check_msg_, (needle));                              \
    } while (0)

static int check_summary(void)
{
    printf("%d checks, %d failed\n", check_count, check_failures);
    return check_failures ? 1 : 0;
}

/* The library's log lines between check_log_start() and check_log_stop(),
 * one per line, in check_log() (for tests that check what a call said). */
static inline char *check_log(void)
{
    static char text[4096];
    return text;
}

static inline void check_log_keep(dalle_log_level level, const char *msg, void *user)
{
    (void)level;
    (void)user;
    size_t n = strlen(check_log());
    snprintf(check_log() + n, 4096 - n, "%s\n", msg);
}

static inline void check_log_start(void)
{
    check_log()[0] = 0;
    dalle_set_log_callback(check_log_keep, NULL);
}

static inline void check_log_stop(void) { dalle_set_log_callback(NULL, NULL); }

#define SKIP(...)                                                              \
    do {                                                                       \
        printf("SKIP: ");                                                      \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
        exit(77);                                                              \
    } while (0)

#endif
