#include "error.h"

#include <stdarg.h>
#include <stdio.h>

#define MESSAGE_CAP 1024

static _Thread_local char last_message[MESSAGE_CAP];

static dalle_log_fn log_fn;
static void *log_user;

const char *dalle_strerror(int status)
{
    switch (status) {
    case DALLE_OK: return "ok";
    case DALLE_ERR_INVALID_ARGUMENT: return "invalid argument";
    case DALLE_ERR_OUT_OF_MEMORY: return "out of memory";
    case DALLE_ERR_IO: return "input/output error";
    case DALLE_ERR_FORMAT: return "malformed file";
    case DALLE_ERR_VERSION: return "unsupported format version";
    case DALLE_ERR_CHECKSUM: return "checksum mismatch";
    case DALLE_ERR_NOT_FOUND: return "not found";
    case DALLE_ERR_MISMATCH: return "model mismatch";
    case DALLE_ERR_UNSUPPORTED: return "unsupported";
    case DALLE_ERR_ABORTED: return "aborted";
    case DALLE_ERR_BACKEND: return "backend failure";
    case DALLE_ERR_TOO_LONG: return "input too long";
    case DALLE_ERR_NOT_IMPLEMENTED: return "not implemented";
    default: return "unknown status";
    }
}

const char *dalle_last_error(void) { return last_message; }

dalle_status dalle_fail(dalle_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    if (log_fn)
        log_fn(DALLE_LOG_DEBUG, last_message, log_user);
    return status;
}

void dalle_set_log_callback(dalle_log_fn fn, void *user)
{
    /* Set before any context is used; documented as process-wide. */
    log_fn = fn;
    log_user = user;
}

void dalle_log(dalle_log_level level, const char *fmt, ...)
{
    if (!log_fn)
        return;
    char buf[MESSAGE_CAP];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    log_fn(level, buf, log_user);
}
