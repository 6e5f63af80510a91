/* Error reporting and logging inside the library.
 *
 * Every failing path calls dalle_fail(), which records a message in the
 * calling thread's buffer (read back with dalle_last_error()) and returns the
 * status, so a failure reads as one line:
 *
 *     return dalle_fail(DALLE_ERR_FORMAT, "%s: tensor '%s': offset past the end", path, name);
 */
#ifndef DALLE_ERROR_H
#define DALLE_ERROR_H

#include "dalle/dalle.h"

#if defined(__GNUC__)
#define DALLE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DALLE_PRINTF(a, b)
#endif

/* Record the message for `status` and return `status`. */
dalle_status dalle_fail(dalle_status status, const char *fmt, ...) DALLE_PRINTF(2, 3);

/* Send a message to the user's log callback, if any. */
void dalle_log(dalle_log_level level, const char *fmt, ...) DALLE_PRINTF(2, 3);

#endif
