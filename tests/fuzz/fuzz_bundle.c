/* Fuzz target for the bundle reader (see README.md in this directory).
 *
 * LLVMFuzzerTestOneInput opens the input with dalle_bundle_open_memory, walks
 * every metadata entry and tensor info, verifies the bundle and reads every
 * tensor (those up to 1 MiB), through dalle_bundle_read_tensor,
 * bundle_tensor_f32 and bundle_tensor_typed, then closes it. Any crash, sanitizer report, leak or
 * hang is a bug: malformed input must only ever give an error status.
 *
 * Built with -DDALLE_LIBFUZZER it is a libFuzzer target; without it,
 * replay.c's main() replays the files (or the files of the directories)
 * named on the command line, which is how every build runs the seed corpus
 * as a test.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bundle.h"
#include "dalle/dalle.h"
#include "fuzz.h"

#define MAX_TENSOR_BYTES ((uint64_t)1 << 20)

static volatile uint64_t sink; /* keeps the reads from being optimised away */

static void walk_meta(dalle_bundle *b)
{
    int n = dalle_bundle_n_meta(b);
    for (int i = 0; i < n; i++) {
        const char *key;
        dalle_meta_type type;
        int64_t count;
        if (dalle_bundle_meta_info(b, i, &key, &type, &count) != DALLE_OK)
            continue;
        sink += strlen(key) + (uint64_t)count;
        int64_t iv;
        double fv;
        const char *sv;
        int bv;
        int64_t ia[4];
        double fa[4];
        const char *sa[4];
        switch (type) {
        case DALLE_META_I64:
        case DALLE_META_BOOL:
            if (dalle_bundle_meta_i64(b, key, &iv) == DALLE_OK)
                sink += (uint64_t)iv;
            if (bundle_bool(b, key, 0, &bv) == DALLE_OK)
                sink += (uint64_t)bv;
            break;
        case DALLE_META_F64:
            if (dalle_bundle_meta_f64(b, key, &fv) == DALLE_OK)
                sink += fv == fv;
            if (bundle_float(b, key, 0.0, &fv) == DALLE_OK)
                sink += fv == fv;
            break;
        case DALLE_META_STRING:
            if (dalle_bundle_meta_str(b, key, &sv) == DALLE_OK)
                sink += strlen(sv);
            break;
        case DALLE_META_I64_ARRAY:
            if (dalle_bundle_meta_i64_array(b, key, ia, 4, &count) == DALLE_OK && count > 0)
                sink += (uint64_t)ia[0];
            break;
        case DALLE_META_F64_ARRAY:
            if (dalle_bundle_meta_f64_array(b, key, fa, 4, &count) == DALLE_OK && count > 0)
                sink += fa[0] == fa[0];
            break;
        case DALLE_META_STRING_ARRAY:
            if (dalle_bundle_meta_str_array(b, key, sa, 4, &count) == DALLE_OK)
                for (int64_t k = 0; k < count && k < 4; k++)
                    sink += strlen(sa[k]);
            break;
        }
        /* The wrong getters must fail cleanly. */
        (void)dalle_bundle_meta_str(b, key, &sv);
        (void)dalle_bundle_meta_i64(b, key, &iv);
        (void)bundle_int(b, key, 0, &iv);
    }
    (void)dalle_bundle_meta_i64(b, "absent.key", &(int64_t){0});
}

static void walk_tensors(dalle_bundle *b)
{
    int n = dalle_bundle_n_tensors(b);
    for (int i = 0; i < n; i++) {
        dalle_tensor_info info;
        if (dalle_bundle_tensor_info(b, i, &info) != DALLE_OK)
            continue;
        if (dalle_bundle_find_tensor(b, info.name) != i)
            FUZZ_BUG(); /* names are unique: find must return the entry */
        dalle_tensor_info shape;
        if (bundle_tensor_shape(b, info.name, &shape) != DALLE_OK)
            FUZZ_BUG();
        uint64_t stored = info.stored_bytes;
        if (info.codec == DALLE_CODEC_ALIAS) {
            dalle_tensor_info target;
            if (dalle_bundle_tensor_info(b, info.alias_of, &target) != DALLE_OK)
                FUZZ_BUG();
            stored = target.stored_bytes;
        }
        /* Bounded work: skip big tensors (and huge declared expansions). */
        if (info.nbytes > MAX_TENSOR_BYTES || stored > MAX_TENSOR_BYTES)
            continue;
        unsigned char *buf = malloc((size_t)info.nbytes);
        if (!buf)
            continue;
        if (dalle_bundle_read_tensor(b, i, buf, (size_t)info.nbytes) == DALLE_OK)
            sink += buf[0] + buf[info.nbytes - 1];
        free(buf);
        const float *f;
        if (bundle_tensor_f32(b, info.name, info.ndim, info.dims, &f) == DALLE_OK)
            sink += f[0] == f[0];
        /* the typed path of reduced-precision weights (f16/bf16/i8 kept) */
        const void *raw;
        dalle_dtype dt;
        if (bundle_tensor_typed(b, info.name, info.ndim, info.dims, &dt, &raw) == DALLE_OK)
            sink += ((const unsigned char *)raw)[0] + (unsigned)dt;
    }
    (void)dalle_bundle_find_tensor(b, "absent");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dalle_bundle *b;
    if (dalle_bundle_open_memory(data, size, &b) != DALLE_OK)
        return 0;
    (void)dalle_bundle_kind(b);
    (void)dalle_bundle_version_minor(b);
    (void)bundle_path(b);
    walk_meta(b);
    /* verify only when it is cheap: payloads bounded like the reads. */
    int small = 1;
    for (int i = 0; i < dalle_bundle_n_tensors(b) && small; i++) {
        dalle_tensor_info info;
        if (dalle_bundle_tensor_info(b, i, &info) == DALLE_OK && info.codec != DALLE_CODEC_ALIAS)
            small = info.nbytes <= MAX_TENSOR_BYTES;
    }
    if (small)
        (void)dalle_bundle_verify(b);
    walk_tensors(b);
    dalle_bundle_close(b);
    return 0;
}
