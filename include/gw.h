/*
 * gw.h - vocabulary shared by every llmgw module: priorities, providers,
 * money units and the monotonic clock. Nothing here touches a third-party
 * library.
 */
#ifndef GW_H
#define GW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define GW_VERSION "0.1.0"

/* Priorities, highest first. The numeric value is the queue index. */
enum gw_priority {
	GW_PRIO_CRITICAL = 0,
	GW_PRIO_HIGH,
	GW_PRIO_MEDIUM,
	GW_PRIO_LOW,
	GW_PRIO_COUNT
};

/* The providers llmgw knows. Order here is only an index; the fallback
 * order comes from the configuration. */
enum gw_provider_id {
	GW_PROV_OPENROUTER = 0,
	GW_PROV_ANTHROPIC,
	GW_PROV_OPENAI,
	GW_PROV_COUNT
};

/* Wire dialect a provider speaks. */
enum gw_dialect {
	GW_DIALECT_OPENAI = 0,
	GW_DIALECT_ANTHROPIC
};

/*
 * Money is integer pico-dollars (1e-12 USD). A price of $0.15 per million
 * tokens is 150000 pico-dollars per token, so every cost the price table
 * can produce is exact; int64 holds about 9.2 million dollars.
 */
typedef int64_t gw_pusd;
#define GW_PUSD_PER_USD INT64_C(1000000000000)

const char *gw_priority_name(enum gw_priority p);
const char *gw_provider_name(enum gw_provider_id id);
/* Returns the id for a provider name, or -1. */
int gw_provider_from_name(const char *name);

/* Monotonic microseconds. */
static inline int64_t gw_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The value of a hex digit, or -1. */
static inline int gw_hex_digit(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The lower-case hex digit of v's low four bits (gw_hex_digit's inverse). */
static inline char gw_hex_char(unsigned v)
{
	return "0123456789abcdef"[v & 15];
}

/*
 * Decimal digits of v at out (at most 20 and a NUL); returns their count.
 * For the per-request paths, where snprintf's format parsing costs more
 * than the rest of the field.
 */
static inline size_t gw_fmt_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;
	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[n - 1 - i];
	out[n] = '\0';
	return n;
}

/* The same for a signed value (at most 21 characters and a NUL). */
static inline size_t gw_fmt_i64(char *out, int64_t v)
{
	if (v >= 0)
		return gw_fmt_u64(out, (uint64_t)v);
	out[0] = '-';
	return 1 + gw_fmt_u64(out + 1, (uint64_t)0 - (uint64_t)v);
}

/* Wall-clock seconds since the epoch. */
static inline int64_t gw_wall_s(void)
{
	return (int64_t)time(NULL);
}

#endif
