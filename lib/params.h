/* Parameter structs from callers built against any header version.
 *
 * A caller's struct may be older (smaller) or newer (larger) than ours. We
 * start from our defaults and take the caller's bytes for the fields both
 * know, so fields added later keep their defaults for old callers.
 */
#ifndef DALLE_PARAMS_H
#define DALLE_PARAMS_H

#include <stddef.h>

#include "dalle/dalle.h"

/* Copy the caller's struct over `defaults` (already in *out). `name` names the
 * struct in messages; `min_size` is the size of its first published version. */
dalle_status params_merge(const void *caller, size_t ours, size_t min_size, const char *name,
                          void *out);

/* Write `defaults` (ours bytes, struct_size field ignored) into a caller's
 * struct of `theirs` bytes: the fields both know, zero for the rest, and
 * struct_size = theirs. Nothing is written for NULL or a size too small to
 * hold struct_size. */
void params_fill(void *out, size_t theirs, const void *defaults, size_t ours);

#endif
