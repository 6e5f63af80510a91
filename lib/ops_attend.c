/* The attention kernel: one query over a list of cached keys (ops_attend,
 * ops_attend_weights) and the softmax it uses (ops_softmax). Generation
 * (lib/attention.c, over the KV cache), CLIP (lib/clip_encoder.c) and
 * training (lib/train/) all call it.
 *
 * out = softmax(q · k_j) · v_j over the listed keys j, in three passes:
 *
 *   - scores: eight keys at a time (a span's keys in groups of eight, the
 *     few left at a span's end grouped with the next span's first), key t
 *     of a group in its own register of 8 lanes, lane l accumulating
 *     q[d] k_t[d] for d = l (mod 8) in order with fused multiply-adds over
 *     [0, d8) (d8 = dim_head rounded down to 8); the eight registers are
 *     then reduced together by horizontal adds and one cross-half add (an
 *     in-register transpose), so lane t ends up holding key t's score:
 *         ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)),
 *     then the last dim_head - d8 elements one by one (fused multiply-add).
 *     Each key's score is that one sequence whatever group or lane it
 *     falls in;
 *   - the softmax, max-subtracted (upstream's `stable` variant is the same
 *     numbers: lib/attention.c's header): exp_plain() below (a polynomial,
 *     within 1 ulp of exp, the same bits in 8 lanes), the sum in double in
 *     8 lanes, lane l taking the elements i = l (mod 8) in order, added as
 *     ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)); each element times
 *     (float)(1 / sum): the weights, as upstream's softmax output;
 *   - the weighted sum: out[d] = Σ w_j v_j[d] accumulated over the keys in
 *     list order with fused multiply-adds, every column its own chain
 *     (vectorised across d, 64 columns a pass); for dim_head <= 32 two
 *     chains per column, the keys of even and of odd list index, then
 *     even + odd (ATT_TWO_MAX).
 *
 * So the bits of a result depend on dim_head and the key list only: not on
 * the thread count, the batch, which task runs it, or the code. The AVX2/FMA
 * code (chosen at run time where the CPU has it) and the plain C code
 * (fmaf in the same sequence) give the same bits (tests/test_ops_attend.c),
 * as lib/ops_few_rows.c does for the linear layers. A CPU without
 * AVX2/FMA runs the plain code, where fmaf may be a slow library routine
 * (an x86-64 CPU older than 2013).
 *
 * Memory: the listed K rows are streamed once by the scores, the V rows
 * once by the weighted sum, with software prefetches ATT_AHEAD keys ahead
 * (a strided span, an axial column, is a new page every key: the hardware
 * prefetchers do not follow it). Where the V rows are at most ATT_V_EARLY
 * bytes the scores pass prefetches them too, so two streams are in flight
 * and the sum reads V from L2 (5-9% less time per step out of cache in
 * bench/bench_attend.c; ~10% more when everything is in L2 already, which
 * generation, streaming every weight between two steps, does not see). In
 * generation at batch 8 reading the KV cache is the attention's floor
 * (docs/performance.md). */
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "cpu_simd.h"
#include "ops.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ATT_X86 1
#include <immintrin.h>
#else
#define ATT_X86 0
#endif

/* Keys per score group: one per lane. */
#define ATT_GROUP 8
/* How many keys ahead of the one being read the kernel prefetches (4 KiB
 * of a contiguous span at dim_head 64). */
#define ATT_AHEAD 16
/* Up to this many bytes of V rows are prefetched during the scores pass
 * (half of a 512 KiB L2, which the K rows pass through too): 1024 keys at
 * dim_head 64. */
#define ATT_V_EARLY ((int64_t)256 << 10)
/* Columns of out per pass of the weighted sum: 8 registers of accumulators. */
#define ATT_COLS 64

/* ---- exp ------------------------------------------------------------------- */

/* exp(x) for x <= 0 (a softmax's x - max), within 0.94 ulp of the exact
 * value over [EXP_MIN, 0] (checked against expl on every float there):
 * x = n ln 2 + r with |r| <= ln 2 / 2 (n rounded by adding 1.5 * 2^23; r
 * in two fused steps, ln 2 split in a high part whose products with n are
 * exact and a low part), e^r by its Taylor polynomial of degree 7 (the
 * first term left out is below 2^-27 e^r), scaled by 2^n through the
 * exponent bits. Below EXP_MIN (ln FLT_MIN) it returns 0 where expf returns
 * a subnormal under 1.2e-38: a softmax's largest term is exp(0) = 1, so such
 * a weight is 2^-126 of the sum or less. NaN gives 0 too. The vector code
 * exp8() is the same sequence lane by lane. */
#define EXP_MIN (-87.33654f)
#define EXP_LOG2E 1.44269504088896341f
#define EXP_SHIFTER 12582912.0f /* 1.5 * 2^23: x + it rounds x to an integer */
#define EXP_LN2_HI 0x1.62e43p-1f
#define EXP_LN2_LO (-0x1.05c61p-29f)
#define EXP_C2 (1.0f / 2.0f)
#define EXP_C3 (1.0f / 6.0f)
#define EXP_C4 (1.0f / 24.0f)
#define EXP_C5 (1.0f / 120.0f)
#define EXP_C6 (1.0f / 720.0f)
#define EXP_C7 (1.0f / 5040.0f)
/* The bits of EXP_SHIFTER, less the exponent bias: t's bits - this = n + 127. */
#define EXP_BIAS_BITS (0x4B400000u - 127u)

static float exp_plain(float x)
{
    if (!(x >= EXP_MIN))
        return 0.0f;
    const float t = fmaf(x, EXP_LOG2E, EXP_SHIFTER), n = t - EXP_SHIFTER;
    float r = fmaf(-n, EXP_LN2_HI, x);
    r = fmaf(-n, EXP_LN2_LO, r);
    float p = EXP_C7;
    p = fmaf(p, r, EXP_C6);
    p = fmaf(p, r, EXP_C5);
    p = fmaf(p, r, EXP_C4);
    p = fmaf(p, r, EXP_C3);
    p = fmaf(p, r, EXP_C2);
    p = fmaf(p, r, 1.0f);
    p = fmaf(p, r, 1.0f);
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - EXP_BIAS_BITS) << 23; /* 2^n */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* ---- which code -------------------------------------------------------------- */

/* -1: not decided yet; 0: plain C; 1: AVX2/FMA */
static atomic_int att_simd = -1;

int ops_attend_simd(int want)
{
    return ops_simd_switch(&att_simd, want, OPS_CPU_AVX2 | OPS_CPU_FMA);
}

/* ---- plain C ------------------------------------------------------------------ */

static float score_plain(const float *q, const float *k, int64_t dh)
{
    const int64_t d8 = dh & ~(int64_t)7;
    float a[8] = {0};
    for (int64_t i = 0; i < d8; i += 8)
        for (int l = 0; l < 8; l++)
            a[l] = fmaf(q[i + l], k[i + l], a[l]);
    float s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (int64_t i = d8; i < dh; i++)
        s = fmaf(q[i], k[i], s);
    return s;
}

static int64_t scores_plain(const float *q, const float *k, int64_t dh, const ops_span *sp,
                            int n_sp, float *scores)
{
    int64_t n = 0;
    for (int s = 0; s < n_sp; s++) {
        const float *kp = k + sp[s].start * dh;
        for (int64_t j = 0; j < sp[s].count; j++, kp += sp[s].stride * dh)
            scores[n++] = score_plain(q, kp, dh);
    }
    return n;
}

static void softmax_plain(float *x, int64_t n)
{
    float m = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        m = x[i] > m ? x[i] : m;
    double a[8] = {0};
    for (int64_t i = 0; i < n; i++) {
        x[i] = exp_plain(x[i] - m);
        a[i & 7] += x[i];
    }
    const double sum = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

/* Partial sums per column of the weighted sum: 2 up to dim_head
 * ATT_TWO_MAX, keys of even and odd list index apart (a sum over the keys is
 * a chain of dependent fused multiply-adds per column; with 32 columns or
 * fewer one chain per column leaves the FMA units idle half the time), then
 * even + odd; 1 above. */
#define ATT_TWO_MAX 32

static void wsum_plain(const float *w, const float *v, int64_t dh, const ops_span *sp, int n_sp,
                       float *out)
{
    float odd[ATT_TWO_MAX];
    const int two = dh <= ATT_TWO_MAX;
    for (int64_t d = 0; d < dh; d++)
        out[d] = 0.0f;
    for (int64_t d = 0; two && d < dh; d++)
        odd[d] = 0.0f;
    int64_t n = 0;
    for (int s = 0; s < n_sp; s++) {
        const float *vp = v + sp[s].start * dh;
        for (int64_t j = 0; j < sp[s].count; j++, vp += sp[s].stride * dh, n++) {
            float *acc = two && (n & 1) ? odd : out;
            for (int64_t d = 0; d < dh; d++)
                acc[d] = fmaf(w[n], vp[d], acc[d]);
        }
    }
    for (int64_t d = 0; two && d < dh; d++)
        out[d] = out[d] + odd[d];
}

/* ---- AVX2/FMA ------------------------------------------------------------------- */

#if ATT_X86
#define ATT_SIMD __attribute__((target("avx2,fma")))
#define ATT_INLINE __attribute__((target("avx2,fma"), always_inline)) inline

/* Prefetch the row of `bytes` at p (an address only: never faults). A
 * row that does not start on a line may end on one more. */
static ATT_INLINE void prefetch_row(const float *p, int64_t bytes)
{
    const char *c = (const char *)p;
    for (int64_t o = 0; o < bytes; o += 64)
        _mm_prefetch(c + o, _MM_HINT_T0);
    _mm_prefetch(c + bytes - 1, _MM_HINT_T0);
}

/* The scores of 8 keys (rows r[0..7]): lane t = key t, in the sequence of
 * score_plain. */
static ATT_INLINE __m256 score8(const float *q, const float *const *r, int64_t dh)
{
    const int64_t d8 = dh & ~(int64_t)7;
    __m256 a[8];
    for (int t = 0; t < 8; t++)
        a[t] = _mm256_setzero_ps();
    for (int64_t i = 0; i < d8; i += 8) {
        const __m256 qv = _mm256_loadu_ps(q + i);
        for (int t = 0; t < 8; t++)
            a[t] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(r[t] + i), a[t]);
    }
    /* the transpose: hadd pairs lanes (0 + 1, 2 + 3) of two keys per 128-bit
     * half, twice; then each key's low half plus its high half */
    const __m256 t01 = _mm256_hadd_ps(a[0], a[1]), t23 = _mm256_hadd_ps(a[2], a[3]);
    const __m256 t45 = _mm256_hadd_ps(a[4], a[5]), t67 = _mm256_hadd_ps(a[6], a[7]);
    const __m256 u0 = _mm256_hadd_ps(t01, t23), u1 = _mm256_hadd_ps(t45, t67);
    __m256 s = _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                             _mm256_permute2f128_ps(u0, u1, 0x31));
    for (int64_t i = d8; i < dh; i++)
        s = _mm256_fmadd_ps(_mm256_set1_ps(q[i]),
                            _mm256_set_ps(r[7][i], r[6][i], r[5][i], r[4][i], r[3][i], r[2][i],
                                          r[1][i], r[0][i]),
                            s);
    return s;
}

/* Prefetch the rows of the keys ATT_AHEAD further along a span from the
 * `n` keys at r (j: the first's index in the span). */
static ATT_INLINE void prefetch_ahead(const float *r, int64_t j, int64_t n, int64_t count,
                                      int64_t step, int64_t dh)
{
    const int64_t bytes = dh * (int64_t)sizeof(float);
    if (j + n + ATT_AHEAD > count)
        n = count - j - ATT_AHEAD;
    if (n <= 0)
        return;
    const float *a = r + ATT_AHEAD * step;
    if (step == dh) { /* contiguous: one block */
        const char *c = (const char *)a;
        for (int64_t o = 0; o < n * bytes; o += 64)
            _mm_prefetch(c + o, _MM_HINT_T0);
        return;
    }
    for (int64_t t = 0; t < n; t++)
        prefetch_row(a + t * step, bytes);
}

/* v_early: the V rows to prefetch along with the K rows (NULL: none). */
static ATT_SIMD int64_t scores_simd(const float *q, const float *k, const float *v_early,
                                    int64_t dh, const ops_span *sp, int n_sp, float *scores)
{
    /* A span's keys go eight at a time; the few left at its end wait in
     * `pend` for the next span's first keys (short spans: conv_like). */
    const float *pend[ATT_GROUP], *rows[ATT_GROUP];
    int np = 0;
    int64_t n = 0; /* keys scored, in list order (the pending ones follow) */
    for (int s = 0; s < n_sp; s++) {
        const int64_t step = sp[s].stride * dh, count = sp[s].count;
        const float *r = k + sp[s].start * dh;
        int64_t j = 0;
        if (np > 0) {
            for (; np < ATT_GROUP && j < count; j++, r += step)
                pend[np++] = r;
            if (np < ATT_GROUP)
                continue;
            _mm256_storeu_ps(scores + n, score8(q, pend, dh));
            n += ATT_GROUP;
            np = 0;
        }
        for (; j + ATT_GROUP <= count; j += ATT_GROUP, r += ATT_GROUP * step) {
            prefetch_ahead(r, j, ATT_GROUP, count, step, dh);
            if (v_early)
                prefetch_ahead(v_early + (r - k), j, ATT_GROUP, count, step, dh);
            for (int t = 0; t < ATT_GROUP; t++)
                rows[t] = r + t * step;
            _mm256_storeu_ps(scores + n, score8(q, rows, dh));
            n += ATT_GROUP;
        }
        for (; j < count; j++, r += step)
            pend[np++] = r;
    }
    if (np > 0) {
        /* the last, partial group: the missing lanes repeat a listed row
         * (each lane is its own computation) and are dropped */
        for (int t = np; t < ATT_GROUP; t++)
            pend[t] = pend[0];
        float tmp[ATT_GROUP];
        _mm256_storeu_ps(tmp, score8(q, pend, dh));
        memcpy(scores + n, tmp, sizeof(float) * (size_t)np);
        n += np;
    }
    return n;
}

/* exp_plain in 8 lanes. */
static ATT_INLINE __m256 exp8(__m256 x)
{
    const __m256 t = _mm256_fmadd_ps(x, _mm256_set1_ps(EXP_LOG2E), _mm256_set1_ps(EXP_SHIFTER));
    const __m256 n = _mm256_sub_ps(t, _mm256_set1_ps(EXP_SHIFTER));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_HI), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(EXP_LN2_LO), r);
    __m256 p = _mm256_set1_ps(EXP_C7);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C6));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C5));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C4));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C3));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EXP_C2));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    const __m256i bits = _mm256_slli_epi32(
        _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_set1_epi32((int)EXP_BIAS_BITS)), 23);
    const __m256 keep = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_MIN), _CMP_GE_OQ);
    return _mm256_and_ps(_mm256_mul_ps(p, _mm256_castsi256_ps(bits)), keep);
}

static ATT_SIMD void softmax_simd(float *x, int64_t n)
{
    const int64_t n8 = n & ~(int64_t)7;
    /* the max ignores NaN as softmax_plain does: max_ps returns its
     * second operand when either is NaN */
    __m256 mv = _mm256_set1_ps(-INFINITY);
    for (int64_t i = 0; i < n8; i += 8)
        mv = _mm256_max_ps(_mm256_loadu_ps(x + i), mv);
    float lanes[8];
    _mm256_storeu_ps(lanes, mv);
    float m = -INFINITY;
    for (int l = 0; l < 8; l++)
        m = lanes[l] > m ? lanes[l] : m;
    for (int64_t i = n8; i < n; i++)
        m = x[i] > m ? x[i] : m;

    const __m256 mm = _mm256_set1_ps(m);
    __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
    for (int64_t i = 0; i < n8; i += 8) {
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), mm));
        _mm256_storeu_ps(x + i, e);
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    if (n8 < n) {
        /* the tail padded with -inf: exp gives 0, and x + 0.0 = x */
        float t[8];
        for (int l = 0; l < 8; l++)
            t[l] = n8 + l < n ? x[n8 + l] : -INFINITY;
        const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(t), mm));
        _mm256_storeu_ps(t, e);
        memcpy(x + n8, t, sizeof(float) * (size_t)(n - n8));
        lo = _mm256_add_pd(lo, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        hi = _mm256_add_pd(hi, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    /* lanes (l, l + 4), then (0 + 2, 1 + 3), then the two */
    const __m256d s4 = _mm256_add_pd(lo, hi);
    const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
    const double sum = _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
    const float inv = (float)(1.0 / sum);
    const __m256 iv = _mm256_set1_ps(inv);
    for (int64_t i = 0; i < n8; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), iv));
    for (int64_t i = n8; i < n; i++)
        x[i] *= inv;
}

/* Columns [d0, d0 + 8 DV) of the weighted sum: DV accumulators per key
 * stream, TWO streams or one (DV, TWO constants where this is inlined);
 * pf: prefetch the rows (the first pass). */
static ATT_INLINE void wsum_cols(int DV, int TWO, const float *w, const float *v, int64_t dh,
                                 int64_t d0, const ops_span *sp, int n_sp, float *out, int pf)
{
    __m256 even[ATT_COLS / 8], odd[ATT_COLS / 8];
    for (int t = 0; t < DV; t++)
        even[t] = odd[t] = _mm256_setzero_ps();
    int64_t n = 0;
    for (int s = 0; s < n_sp; s++) {
        const int64_t step = sp[s].stride * dh, count = sp[s].count;
        const float *vp = v + sp[s].start * dh + d0;
        int64_t j = 0;
        if (TWO && (n & 1) && count > 0) { /* the span starts on an odd key */
            const __m256 wj = _mm256_broadcast_ss(w + n);
            for (int t = 0; t < DV; t++)
                odd[t] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vp + 8 * t), odd[t]);
            j++, n++, vp += step;
        }
        for (; TWO && j + 2 <= count; j += 2, n += 2, vp += 2 * step) {
            if (pf)
                prefetch_ahead(vp - d0, j, 2, count, step, dh);
            const __m256 w0 = _mm256_broadcast_ss(w + n), w1 = _mm256_broadcast_ss(w + n + 1);
            for (int t = 0; t < DV; t++) {
                even[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(vp + 8 * t), even[t]);
                odd[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(vp + step + 8 * t), odd[t]);
            }
        }
        for (; j < count; j++, n++, vp += step) { /* one stream, or TWO's last even key */
            if (pf)
                prefetch_ahead(vp - d0, j, 1, count, step, dh);
            const __m256 wj = _mm256_broadcast_ss(w + n);
            for (int t = 0; t < DV; t++)
                even[t] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(vp + 8 * t), even[t]);
        }
    }
    for (int t = 0; t < DV; t++)
        _mm256_storeu_ps(out + d0 + 8 * t, TWO ? _mm256_add_ps(even[t], odd[t]) : even[t]);
}

/* pf: prefetch the V rows (not done along with the scores). */
static ATT_SIMD void wsum_simd(const float *w, const float *v, int64_t dh, const ops_span *sp,
                               int n_sp, float *out, int pf_v)
{
    const int64_t d8 = dh & ~(int64_t)7;
    const int two = dh <= ATT_TWO_MAX;
    for (int64_t d0 = 0; d0 < d8; d0 += ATT_COLS) {
        const int dv = (int)((d8 - d0 < ATT_COLS ? d8 - d0 : ATT_COLS) / 8);
        const int pf = pf_v && d0 == 0;
#define ATT_CASE(c)                                                          \
    case c:                                                                  \
        if (two)                                                             \
            wsum_cols(c, 1, w, v, dh, d0, sp, n_sp, out, pf);                \
        else                                                                 \
            wsum_cols(c, 0, w, v, dh, d0, sp, n_sp, out, pf);                \
        break;
        switch (dv) {
            ATT_CASE(1) ATT_CASE(2) ATT_CASE(3) ATT_CASE(4)
            ATT_CASE(5) ATT_CASE(6) ATT_CASE(7) ATT_CASE(8)
        default: break;
        }
#undef ATT_CASE
    }
    /* the last dh - d8 columns, each its own chain(s) as in wsum_plain */
    for (int64_t d = d8; d < dh; d++) {
        float o[2] = {0.0f, 0.0f};
        int64_t n = 0;
        for (int s = 0; s < n_sp; s++) {
            const float *vp = v + sp[s].start * dh + d;
            for (int64_t j = 0; j < sp[s].count; j++, vp += sp[s].stride * dh, n++)
                o[two & n] = fmaf(w[n], *vp, o[two & n]);
        }
        out[d] = two ? o[0] + o[1] : o[0];
    }
}
#endif

/* ---- the operations --------------------------------------------------------------- */

void ops_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
#if ATT_X86
    if (ops_attend_simd(-1)) {
        softmax_simd(x, n);
        return;
    }
#endif
    softmax_plain(x, n);
}

/* ops_attend_weights, prefetching the V rows too where v_early is set. */
static int64_t attend_weights(const float *q, const float *k, const float *v_early,
                              int64_t dim_head, const ops_span *spans, int n_spans,
                              float *scores)
{
    int64_t n;
#if ATT_X86
    if (ops_attend_simd(-1))
        n = scores_simd(q, k, v_early, dim_head, spans, n_spans, scores);
    else
#endif
        n = scores_plain(q, k, dim_head, spans, n_spans, scores);
    (void)v_early;
    ops_softmax(scores, n);
    return n;
}

int64_t ops_attend_weights(const float *q, const float *k, int64_t dim_head,
                           const ops_span *spans, int n_spans, float *scores)
{
    return attend_weights(q, k, NULL, dim_head, spans, n_spans, scores);
}

void ops_attend(const float *q, const float *k, const float *v, int64_t dim_head,
                const ops_span *spans, int n_spans, float *scores, float *out)
{
    /* Where the listed V rows fit in ATT_V_EARLY bytes, the scores pass
     * prefetches them along with the K rows: two streams in flight instead
     * of one, and the weighted sum finds V in L2. Longer lists would push
     * their first V rows out of L2 before the sum reads them. */
    int64_t keys = 0;
    for (int s = 0; s < n_spans; s++)
        keys += spans[s].count;
    const int early = keys * dim_head * (int64_t)sizeof(float) <= ATT_V_EARLY;
    if (attend_weights(q, k, early ? v : NULL, dim_head, spans, n_spans, scores) == 0) {
        for (int64_t d = 0; d < dim_head; d++)
            out[d] = 0.0f;
        return;
    }
#if ATT_X86
    if (ops_attend_simd(-1)) {
        wsum_simd(scores, v, dim_head, spans, n_spans, out, !early);
        return;
    }
#endif
    wsum_plain(scores, v, dim_head, spans, n_spans, out);
}
