#include "params.h"

#include <string.h>

#include "error.h"

dalle_status params_merge(const void *caller, size_t ours, size_t min_size, const char *name,
                          void *out)
{
    if (!caller)
        return DALLE_OK; /* NULL means the defaults */
    size_t theirs;
    memcpy(&theirs, caller, sizeof theirs); /* struct_size is always the first field */
    if (theirs < min_size || theirs > (size_t)1 << 16)
        return dalle_fail(DALLE_ERR_INVALID_ARGUMENT,
                          "%s.struct_size = %zu: initialise the struct with its "
                          "*_default_params() function", name, theirs);
    memcpy(out, caller, theirs < ours ? theirs : ours);
    memcpy(out, &ours, sizeof ours);
    return DALLE_OK;
}

void params_fill(void *out, size_t theirs, const void *defaults, size_t ours)
{
    if (!out || theirs < sizeof(size_t) || theirs > (size_t)1 << 16)
        return;
    memset(out, 0, theirs);
    memcpy(out, defaults, theirs < ours ? theirs : ours);
    memcpy(out, &theirs, sizeof theirs);
}
