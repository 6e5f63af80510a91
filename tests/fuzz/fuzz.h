/* What the fuzz targets share (README.md in this directory).
 *
 * Each target fuzz_<name>.c defines LLVMFuzzerTestOneInput. Built with
 * -DDALLE_LIBFUZZER it is linked with libFuzzer; otherwise with replay.c,
 * whose main() runs the inputs named on the command line (the meson tests
 * fuzz_<name>_corpus replay the seed corpora that way). fuzz_util.c gives
 * the targets whose parser reads a path a private temporary folder.
 */
#ifndef DALLE_FUZZ_H
#define DALLE_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Optional: a target that keeps state across inputs defines it; replay.c
 * calls it once after the last input, and a nonzero result fails the run. */
int fuzz_replay_end(void);

/* A contract of the code under test broken: stop here, loudly (libFuzzer
 * saves the input; the replay dies, which fails its test). */
#define FUZZ_BUG() __builtin_trap()

/* This process's temporary folder (made on first use, removed at exit with
 * all it holds), or NULL when it cannot be made. */
const char *fuzz_temp_dir(void);

/* Write `size` bytes to the file `name` (a relative path; its folders must
 * exist) of the temporary folder; returns its full path (valid until the
 * next call), or NULL on an I/O error. */
const char *fuzz_write_file(const char *name, const void *data, size_t size);

/* Remove everything under the folder `name` of the temporary folder and
 * (re)create it empty; returns its full path (valid until the next call)
 * or NULL. */
const char *fuzz_fresh_dir(const char *name);

/* With DALLE_FUZZ_VERBOSE set in the environment, print what a call
 * returned (and its message), to see which seeds get how far; returns s. */
int fuzz_note(const char *call, int s);

#endif
