/* Image files (lib/image_io.c): the internal entry point behind
 * dalle_read_image, for data already in memory (the fuzz target reads
 * images this way; tests/fuzz/fuzz_image.c). */
#ifndef DALLE_IMAGE_IO_H
#define DALLE_IMAGE_IO_H

#include <stddef.h>

#include "dalle/dalle.h"

/* dalle_read_image on the n bytes at data; `name` names them in messages.
 * pixels ([3][size][size]) is written only on success. */
dalle_status image_read_memory(const void *data, size_t n, const char *name, int size,
                               float *pixels);

#endif
