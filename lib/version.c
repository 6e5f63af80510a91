#include "dalle/dalle.h"

#define STR2(x) #x
#define STR(x) STR2(x)

const char *dalle_version(void)
{
    return STR(DALLE_VERSION_MAJOR) "." STR(DALLE_VERSION_MINOR) "." STR(DALLE_VERSION_PATCH);
}

int dalle_version_number(void) { return DALLE_VERSION_NUMBER; }
