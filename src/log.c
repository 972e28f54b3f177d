/*
 * log.c - leveled logging to stderr. One write per line so lines from
 * different threads never interleave; access-log lines may be batched per
 * thread, several whole lines in one write of at most PIPE_BUF bytes.
 */
#include "log.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

static enum gw_log_level min_level = GW_LOG_INFO;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

void gw_log_set_level(enum gw_log_level level)
{
	min_level = level;
}

int gw_log_parse_level(const char *s, enum gw_log_level *out)
{
	for (unsigned i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum gw_log_level)i;
			return 0;
		}
	}
	return -EINVAL;
}

static void emit(enum gw_log_level level, const char *suffix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void emit(enum gw_log_level level, const char *suffix, const char *fmt, va_list ap)
{
	char line[2048];
	int n = snprintf(line, sizeof(line), "llmgwd[%s]: ", level_names[level]);
	int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	size_t len = (size_t)n + (m > 0 ? (size_t)m : 0);
	if (len > sizeof(line) - 2)
		len = sizeof(line) - 2;
	if (suffix) {
		int k = snprintf(line + len, sizeof(line) - len, ": %s", suffix);
		len += k > 0 ? (size_t)k : 0;
		if (len > sizeof(line) - 2)
			len = sizeof(line) - 2;
	}
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}

void gw_log(enum gw_log_level level, const char *fmt, ...)
{
	if (level < min_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	emit(level, NULL, fmt, ap);
	va_end(ap);
}

void gw_log_warn(const char *fmt, ...)
{
	char buf[128];
	const char *err = strerror_r(errno, buf, sizeof(buf));
	if (GW_LOG_WARN < min_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	emit(GW_LOG_WARN, err, fmt, ap);
	va_end(ap);
}

/*
 * A thread's pending access-log lines. A write of at most PIPE_BUF bytes
 * to a pipe is never split by another thread's write (nor, being one
 * small message, one to the journal's stream socket), so a batch never
 * cuts through someone else's line.
 */
struct access_batch {
	bool on;
	size_t len;
	char buf[PIPE_BUF];
};

static _Thread_local struct access_batch batch;

static void write_all(const char *p, size_t len)
{
	ssize_t w = write(STDERR_FILENO, p, len);
	(void)w; /* a log that cannot be written is not worth failing a request */
}

void gw_log_access_batch(bool on)
{
	gw_log_access_flush();
	batch.on = on;
}

void gw_log_access_flush(void)
{
	if (batch.len > 0)
		write_all(batch.buf, batch.len);
	batch.len = 0;
}

void gw_log_access(const char *line, size_t len)
{
	if (len > sizeof(batch.buf) - 1)
		len = sizeof(batch.buf) - 1;
	if (batch.len + len + 1 > sizeof(batch.buf))
		gw_log_access_flush();
	memcpy(batch.buf + batch.len, line, len);
	batch.len += len;
	batch.buf[batch.len++] = '\n';
	if (!batch.on)
		gw_log_access_flush();
}
