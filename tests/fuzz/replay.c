/* The replay driver of every fuzz target (README.md): without libFuzzer,
 * main() runs LLVMFuzzerTestOneInput on every file named on the command
 * line, or on every regular file of a folder named there, each from an
 * exact-size heap copy so that AddressSanitizer catches a read one byte past
 * the end. Exit status 0 when every input ran (a crash ends the process,
 * which is the failure this catches), 1 when a path could not be read, when
 * nothing ran, or when the target's fuzz_replay_end reports a failure. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#pragma weak fuzz_replay_end

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return 1;
    }
    size_t cap = 4096, n = 0, k;
    unsigned char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb)
                free(buf);
            buf = nb;
        }
    }
    int err = ferror(f);
    fclose(f);
    unsigned char *exact = buf && !err ? malloc(n ? n : 1) : NULL;
    if (!exact) {
        fprintf(stderr, "cannot read %s\n", path);
        free(buf);
        return 1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    printf("ran %s (%zu bytes)\n", path, n);
    return 0;
}

/* The regular files of a folder, in name order (the same order on every
 * machine, so a failure replays the same way). */
static int run_dir(const char *dir, int *ran)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "cannot list %s\n", dir);
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < n; i++) {
        char p[4096];
        struct stat st;
        int len = snprintf(p, sizeof p, "%s/%s", dir, names[i]->d_name);
        if (len > 0 && (size_t)len < sizeof p && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
            bad |= run_file(p);
            (*ran)++;
        }
        free(names[i]);
    }
    free(names);
    return bad;
}

int main(int argc, char **argv)
{
    int bad = 0, ran = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "cannot stat %s\n", argv[i]);
            bad = 1;
        } else if (S_ISDIR(st.st_mode)) {
            bad |= run_dir(argv[i], &ran);
        } else {
            bad |= run_file(argv[i]);
            ran++;
        }
    }
    if (fuzz_replay_end)
        bad |= fuzz_replay_end() != 0;
    printf("%d inputs replayed\n", ran);
    return bad || ran == 0;
}
