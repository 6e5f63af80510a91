/* The files of the public training-API tests (test_train_api.c,
 * test_train_clip_api.c, test_train_vae_api.c): paths in the test folder
 * and byte-for-byte comparisons of the bundles they save. */
#ifndef DALLE_TESTS_TRAIN_FILES_H
#define DALLE_TESTS_TRAIN_FILES_H

/* The folder tmp() names files in (argv[1] of the tests). */
extern const char *tmpdir;

/* "<tmpdir>/<name>" in one of four rotating static buffers. */
char *tmp(const char *name);

/* Both files exist, are not empty and hold the same bytes. */
int same_file(const char *a, const char *b);

#endif
