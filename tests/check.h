/* A minimal check harness for the C tests: one line per check, a summary,
 * and the exit status meson expects (0 pass, 1 fail, 77 skip). */
#ifndef DALLE_TEST_CHECK_H
#define DALLE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define SKIP(...)                                                              \
    do {                                                                       \
        printf("SKIP: ");                                                      \
        printf(__VA_ARGS__);                                                   \
        printf("\n");                                                          \
        exit(77);                                                              \
    } while (0)

#endif
