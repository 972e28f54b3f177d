/*
 * log.c - leveled logging to stderr. One write per line so lines from
 * different threads never interleave.
 */
#include "log.h"

#include <errno.h>
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

void gw_log_access(const char *json_line)
{
	size_t len = strlen(json_line);
	char line[4096];
	if (len > sizeof(line) - 1)
		len = sizeof(line) - 1;
	memcpy(line, json_line, len);
	line[len++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, len);
	(void)w;
}
