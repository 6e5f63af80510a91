/* Reading the golden cases (../shared/golden: upstream's outputs as .npy,
 * tolerances in each case.json) for the C tests. Include after check.h;
 * the test sets `golden` to the folder. */
#ifndef DALLE_TEST_GOLDEN_H
#define DALLE_TEST_GOLDEN_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "npy.h"

static const char *golden;

/* golden/<cas>/<file>, or the test stops with FAIL: a missing expected
 * output is a broken checkout, not a skip. */
static inline npy golden_load(const char *cas, const char *file)
{
    char path[1024], err[1200];
    npy a;
    snprintf(path, sizeof path, "%s/%s/%s", golden, cas, file);
    if (npy_load(path, &a, err, sizeof err)) {
        printf("FAIL %s\n", err);
        exit(1);
    }
    return a;
}

/* tolerance_rel_l2 of `file` in the case's case.json: the first one after
 * the file's key (a number grab, not a JSON parser; every golden case gives
 * each expected float file its own). 1e-4 where there is none. */
static inline double golden_tolerance(const char *cas, const char *file)
{
    char path[1024], key[256];
    snprintf(path, sizeof path, "%s/%s/case.json", golden, cas);
    FILE *f = fopen(path, "rb");
    if (!f)
        return 1e-4;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    snprintf(key, sizeof key, "\"%s\": {", file);
    const char *p = strstr(buf, key);
    p = p ? strstr(p, "\"tolerance_rel_l2\":") : NULL;
    return p ? strtod(p + 19, NULL) : 1e-4;
}

/* rel-L2 over entries that upstream did not mask; masks must agree exactly
 * (-FLT_MAX in both at the same places): *mask_diff counts those that don't. */
static inline double golden_rel_l2(const float *ours, const float *want, int64_t n,
                                   int64_t *mask_diff)
{
    double num = 0, den = 0;
    *mask_diff = 0;
    for (int64_t i = 0; i < n; i++) {
        int mw = want[i] == -FLT_MAX, mo = ours[i] == -FLT_MAX;
        if (mw != mo) {
            (*mask_diff)++;
            continue;
        }
        if (mw)
            continue;
        double d = (double)ours[i] - want[i];
        num += d * d;
        den += (double)want[i] * want[i];
    }
    return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline void golden_check_close(const char *what, const float *ours, const float *want, int64_t n,
                               double tol)
{
    int64_t md;
    double r = golden_rel_l2(ours, want, n, &md);
    CHECK(md == 0 && r <= tol, "%s: rel-L2 %.3g (tolerance %.3g), %lld mask mismatches", what, r,
          tol, (long long)md);
}

/* ids agreement: at least 99% equal and every mismatch a near-tie in our
 * own scores (the top two within `tie` of each other). */
static inline void golden_check_ids(const char *name, const int32_t *ours, const int64_t *want,
                                    int64_t n, const float *scores, int tokens, int64_t seq,
                                    double tie)
{
    int64_t same = 0, far = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ours[i] == want[i]) {
            same++;
            continue;
        }
        if (!scores) {
            far++;
            continue;
        }
        int64_t b = i / seq, p = i % seq;
        const float *s = scores + b * tokens * seq + p;
        double gap = fabs((double)s[ours[i] * seq] - s[want[i] * seq]);
        if (gap > tie)
            far++;
    }
    CHECK(same * 100 >= n * 99 && far == 0,
          "%s: encoded ids %lld/%lld equal (%.2f%%), %lld mismatches away from a tie", name,
          (long long)same, (long long)n, 100.0 * same / n, (long long)far);
}

#endif
