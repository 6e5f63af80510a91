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

#endif
