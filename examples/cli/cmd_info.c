/* dalle info BUNDLE: what a bundle holds. */
#include <dalle/dalle.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const char usage[] =
    "usage: dalle info [--verify] BUNDLE\n"
    "\n"
    "Print the kind, the metadata (hyper-parameters) and every tensor of a bundle:\n"
    "name, dtype, shape, stored and decoded size.\n"
    "  --verify   also decode every tensor and check its checksums\n";

static const char *dtype_name(dalle_dtype t)
{
    static const char *names[] = {"f32", "f16", "bf16", "i8", "u8", "i32", "i64"};
    return (unsigned)t < sizeof names / sizeof *names ? names[t] : "?";
}

static void print_meta(const dalle_bundle *b, int i)
{
    const char *key;
    dalle_meta_type type;
    int64_t n;
    dalle_bundle_meta_info(b, i, &key, &type, &n);
    printf("  %-36s ", key);
    switch (type) {
    case DALLE_META_I64:
    case DALLE_META_BOOL: {
        int64_t v;
        dalle_bundle_meta_i64(b, key, &v);
        if (type == DALLE_META_BOOL)
            printf("%s", v ? "true" : "false");
        else
            printf("%lld", (long long)v);
        break;
    }
    case DALLE_META_F64: {
        double v;
        dalle_bundle_meta_f64(b, key, &v);
        printf("%g", v);
        break;
    }
    case DALLE_META_STRING: {
        const char *v;
        dalle_bundle_meta_str(b, key, &v);
        printf("\"%s\"", v);
        break;
    }
    case DALLE_META_I64_ARRAY:
    case DALLE_META_F64_ARRAY:
    case DALLE_META_STRING_ARRAY:
        for (int64_t k = 0; k < n && k < 16; k++) {
            int64_t count;
            if (type == DALLE_META_I64_ARRAY) {
                int64_t v[16];
                dalle_bundle_meta_i64_array(b, key, v, 16, &count);
                printf(k ? ", %lld" : "[%lld", (long long)v[k]);
            } else if (type == DALLE_META_F64_ARRAY) {
                double v[16];
                dalle_bundle_meta_f64_array(b, key, v, 16, &count);
                printf(k ? ", %g" : "[%g", v[k]);
            } else {
                const char *v[16];
                dalle_bundle_meta_str_array(b, key, v, 16, &count);
                printf(k ? ", \"%s\"" : "[\"%s\"", v[k]);
            }
        }
        printf(n > 16 ? ", ...]" : n ? "]" : "[]");
        break;
    }
    printf("\n");
}

int cmd_info(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, "info", argc, argv);
    int verify = 0, rc = 0, kind;
    const char *path = NULL;
    while (!rc && (kind = cli_next(&a)) != CLI_ARG_END) {
        if (kind == CLI_ARG_POSITIONAL && !path) {
            path = a.arg;
        } else if (cli_is(&a, "-h", "--help")) {
            fputs(usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, NULL, "--verify")) {
            rc = cli_flag(&a);
            verify = 1;
        } else {
            return cli_unexpected(&a);
        }
    }
    if (rc)
        return rc;
    if (!path)
        return cli_usage(&a, "a bundle is needed (see dalle info --help)");
    dalle_bundle *b;
    if (dalle_bundle_open(path, &b) != DALLE_OK)
        return cli_error("%s", dalle_last_error());
    if (verify && dalle_bundle_verify(b) != DALLE_OK) {
        cli_error("%s", dalle_last_error());
        dalle_bundle_close(b);
        return 1;
    }
    printf("%s: kind %s, format 1.%d, %d tensors%s\n", path, dalle_bundle_kind(b),
           dalle_bundle_version_minor(b), dalle_bundle_n_tensors(b),
           verify ? ", all checksums verified" : "");
    printf("metadata:\n");
    for (int i = 0; i < dalle_bundle_n_meta(b); i++)
        print_meta(b, i);
    printf("tensors:\n");
    uint64_t stored = 0, decoded = 0;
    for (int i = 0; i < dalle_bundle_n_tensors(b); i++) {
        dalle_tensor_info t;
        dalle_bundle_tensor_info(b, i, &t);
        char shape[128] = "[";
        for (int d = 0; d < t.ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? ", %lld" : "%lld",
                     (long long)t.dims[d]);
        strncat(shape, "]", sizeof shape - strlen(shape) - 1);
        printf("  %-56s %-5s %-20s", t.name, dtype_name(t.dtype), shape);
        if (t.codec == DALLE_CODEC_ALIAS) {
            dalle_tensor_info target;
            dalle_bundle_tensor_info(b, t.alias_of, &target);
            printf(" alias of %s +%lld\n", target.name, (long long)t.alias_offset);
        } else {
            printf(" %10llu bytes (%s %llu)\n", (unsigned long long)t.nbytes,
                   t.codec == DALLE_CODEC_ZSTD ? "zstd" : "raw",
                   (unsigned long long)t.stored_bytes);
            stored += t.stored_bytes;
            decoded += t.nbytes;
        }
    }
    printf("total: %llu bytes of tensors, %llu stored\n", (unsigned long long)decoded,
           (unsigned long long)stored);
    dalle_bundle_close(b);
    return 0;
}
