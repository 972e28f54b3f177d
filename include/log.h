/*
 * log.h - leveled logging to stderr (journald keeps it) and the access log.
 *
 * gw_log_warn appends strerror(errno); gw_log_warnx does not. A function
 * either logs an error or returns it, never both. Secrets and prompt
 * bodies are never passed here.
 */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum gw_log_level {
	GW_LOG_DEBUG = 0,
	GW_LOG_INFO,
	GW_LOG_WARN,
	GW_LOG_ERROR
};

void gw_log_set_level(enum gw_log_level level);
/* Parses "debug", "info", "warn", "error". Returns 0 or -EINVAL. */
int gw_log_parse_level(const char *s, enum gw_log_level *out);

void gw_log(enum gw_log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define gw_log_debug(...) gw_log(GW_LOG_DEBUG, __VA_ARGS__)
#define gw_log_info(...) gw_log(GW_LOG_INFO, __VA_ARGS__)
#define gw_log_warnx(...) gw_log(GW_LOG_WARN, __VA_ARGS__)
#define gw_log_errorx(...) gw_log(GW_LOG_ERROR, __VA_ARGS__)

/* Like gw_log_warnx, with ": strerror(errno)" appended. */
void gw_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Writes one already-formatted JSON access-log line (no newline; cut at
 * PIPE_BUF - 1 bytes). On a thread that turned batching on, lines wait
 * until gw_log_access_flush, which such a thread calls at the end of each
 * pass of its event loop, or until the next line would not fit.
 */
void gw_log_access(const char *line, size_t len);
void gw_log_access_batch(bool on);
void gw_log_access_flush(void);

#endif
