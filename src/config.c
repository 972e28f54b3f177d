/*
 * config.c - builds the one validated, immutable struct gw_config from, in
 * rising precedence: built-in defaults, the conf file (INI, read with
 * inih), a .env file and the process environment.
 *
 * Every setting is one row of a table (struct opt): its key, the parser
 * that checks and stores it, where it lives, its bounds, its default and
 * the environment variable that overrides it. Defaults, the conf file, the
 * .env file and the environment all go through the same parsers, so a value
 * is checked the same way wherever it came from. The first error stops the
 * load and names its origin: "file:line: [section] key: reason",
 * "environment: VAR: reason" or ".env-path:line: VAR: reason".
 *
 * Gateway keys ([auth] and [key.NAME]) are kept only as SHA-256 hashes: the
 * conf file holds hashes, the plain admin key from LLMGW_ADMIN_KEY is hashed
 * while loading, and a presented key is hashed and compared in constant time
 * against every configured hash.
 *
 * inih is used through ini_parse_stream with our own line reader. The
 * reader counts lines (the library is built without handler line numbers),
 * rejects lines that would not fit inih's fixed line buffer instead of
 * letting it split them, strips leading blanks (so inih never sees a
 * multi-line continuation) and tracks the current section itself, since
 * inih silently truncates section names longer than 49 bytes.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Bounds on everything the conf file or the environment can grow. */
#define MAX_MODELS 1000
#define MAX_SERVICES 10000
#define MAX_ALIASES 32
#define MAX_MODEL_NAME 256
#define MAX_SERVICE_NAME 64
#define MAX_KEYS 10000
#define MAX_KEY_SERVICES 64
#define MAX_KEY_LEN 1024
#define SHA256_LEN 32
#define MAX_URL 2048
#define MAX_HOST 255
#define MAX_SECTION_KEYS 16
#define MAX_DOTENV_LINE 8192
#define MAX_DOTENV_VARS 10000
#define ERR_MAX 512
#define WHY_MAX 256
#define MAX_WORKERS 1024

#define KIB ((uint64_t)1024)
#define MIB (KIB * 1024)
#define USD(x) ((uint64_t)(x) * (uint64_t)GW_PUSD_PER_USD)
/* A price bound, in pico-dollars per token, from USD per million tokens. */
#define PRICE_USD_PER_M(x) ((uint64_t)(x) * 1000000)

struct load;
struct opt;

/*
 * Checks value v and stores it in the field o describes, inside base (a
 * struct gw_config, gw_provider_conf, gw_model_conf or gw_service_conf,
 * depending on the table). Returns 0, or -EINVAL with a reason in why.
 * A string field's previous value is freed.
 */
typedef int (*opt_parse_fn)(const struct opt *o, struct gw_config *c, void *base,
			    const char *v, char *why, size_t whylen);

struct opt {
	const char *name;    /* key in the conf section */
	opt_parse_fn parse;
	size_t off;          /* field offset inside base */
	uint64_t min, max;   /* bounds, in the stored unit (length for strings) */
	const char *def;     /* default, written as in the conf file; NULL: none */
	const char *env;     /* overriding variable; '*' is the provider's name */
};

#define FIELD(base, o, type) ((type *)(void *)((char *)(base) + (o)->off))

/* ------------------------------------------------------------------ */
/* Checked number parsing.                                            */

/*
 * Parses the leading decimal digits of s (at least one; no sign, no
 * blanks) into *out and points *end past them. Returns 0 or -EINVAL,
 * also on overflow.
 */
static int parse_digits(const char *s, uint64_t *out, const char **end)
{
	char *e;
	unsigned long long v;

	if (!isdigit((unsigned char)s[0]))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &e, 10);
	if (errno != 0 || e == s)
		return -EINVAL;
	*out = v;
	*end = e;
	return 0;
}

/* Parses a whole string of decimal digits. Returns 0 or -EINVAL. */
static int parse_u64(const char *s, uint64_t *out)
{
	const char *end;

	if (parse_digits(s, out, &end) < 0 || *end != '\0')
		return -EINVAL;
	return 0;
}

/*
 * Parses "<digits>[.<1..decimals digits>]" into the value times
 * 10^decimals, exactly. No sign, exponent or blanks. Returns 0 or -EINVAL,
 * also on overflow.
 */
static int parse_fixed(const char *s, unsigned decimals, uint64_t *out)
{
	uint64_t ip, frac = 0, scale = 1, v;
	unsigned nfrac = 0;
	const char *p;

	if (parse_digits(s, &ip, &p) < 0)
		return -EINVAL;
	if (*p == '.') {
		p++;
		if (!isdigit((unsigned char)*p))
			return -EINVAL;
		for (; isdigit((unsigned char)*p); p++) {
			if (nfrac == decimals)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*p - '0');
			nfrac++;
		}
	}
	if (*p != '\0')
		return -EINVAL;
	for (unsigned i = 0; i < decimals; i++)
		scale *= 10;
	for (; nfrac < decimals; nfrac++)
		frac *= 10;
	if (__builtin_mul_overflow(ip, scale, &v) || __builtin_add_overflow(v, frac, &v))
		return -EINVAL;
	*out = v;
	return 0;
}

int gw_config_parse_price(const char *s, gw_pusd *out)
{
	uint64_t v;

	/* USD per 1e6 tokens, 6 decimals: the fixed-point value is already
	 * 1e-12 USD per token. */
	if (!s || parse_fixed(s, 6, &v) < 0 || v > (uint64_t)INT64_MAX)
		return -EINVAL;
	*out = (gw_pusd)v;
	return 0;
}

/*
 * Parses a dollar amount with the price syntax (up to 6 decimals) into
 * pico-dollars, exactly. Returns 0 or -EINVAL, also on overflow.
 */
static int parse_usd(const char *s, gw_pusd *out)
{
	uint64_t micro, pico;

	if (!s || parse_fixed(s, 6, &micro) < 0 ||
	    __builtin_mul_overflow(micro, (uint64_t)1000000, &pico) || pico > (uint64_t)INT64_MAX)
		return -EINVAL;
	*out = (gw_pusd)pico;
	return 0;
}

/* "true"/"false" and the usual spellings, any case. */
static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "1", "yes", "on" };
	static const char *const no[] = { "false", "0", "no", "off" };

	for (size_t i = 0; i < ARRAY_SIZE(yes); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* CRITICAL, HIGH, MEDIUM, LOW (any case) or 1-4. */
static int parse_priority(const char *s, int *out)
{
	for (int i = 0; i < GW_PRIO_COUNT; i++) {
		if (strcasecmp(s, gw_priority_name((enum gw_priority)i)) == 0) {
			*out = i;
			return 0;
		}
	}
	if (s[0] >= '1' && s[0] <= '0' + GW_PRIO_COUNT && s[1] == '\0') {
		*out = s[0] - '1';
		return 0;
	}
	return -EINVAL;
}

/* Writes ms as seconds, without trailing zeros: 500 -> "0.5". */
static void fmt_seconds(char *buf, size_t len, uint64_t ms)
{
	unsigned frac = (unsigned)(ms % 1000);

	if (frac == 0) {
		snprintf(buf, len, "%llu", (unsigned long long)(ms / 1000));
		return;
	}
	int digits = 3;
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	snprintf(buf, len, "%llu.%0*u", (unsigned long long)(ms / 1000), digits, frac);
}

/* ------------------------------------------------------------------ */
/* Strings.                                                           */

enum text_class {
	TEXT_ANY,      /* printable, blanks allowed */
	TEXT_TOKEN,    /* printable ASCII, no blanks (keys, URLs) */
	TEXT_MODEL     /* a token without ',' (model names in lists) */
};

static bool text_ok(const char *s, enum text_class cls)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		if (cls != TEXT_ANY && (*p == ' ' || *p > 0x7e))
			return false;
		if (cls == TEXT_MODEL && *p == ',')
			return false;
	}
	return true;
}

/* Replaces *slot with a copy of the first len bytes of s. */
static int store_str(char **slot, const char *s, size_t len, char *why, size_t whylen)
{
	char *copy = strndup(s, len);

	if (!copy) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	free(*slot);
	*slot = copy;
	return 0;
}

static int check_text(const struct opt *o, const char *v, enum text_class cls,
		      char *why, size_t whylen)
{
	size_t len = strlen(v);

	if (len < o->min) {
		snprintf(why, whylen, "must not be empty");
		return -EINVAL;
	}
	if (len > o->max) {
		snprintf(why, whylen, "too long (at most %llu bytes)", (unsigned long long)o->max);
		return -EINVAL;
	}
	if (!text_ok(v, cls)) {
		snprintf(why, whylen, "%s",
			 cls == TEXT_ANY ? "must not contain control characters"
			 : cls == TEXT_TOKEN ? "must not contain blanks or control characters"
			 : "must be a model name (printable ASCII, no blanks or commas)");
		return -EINVAL;
	}
	return 0;
}

/* A text field; the empty string stores NULL when min is 0. */
static int set_text(const struct opt *o, void *base, const char *v, enum text_class cls,
		    char *why, size_t whylen)
{
	char **slot = FIELD(base, o, char *);

	if (check_text(o, v, cls, why, whylen) < 0)
		return -EINVAL;
	if (v[0] == '\0') {
		free(*slot);
		*slot = NULL;
		return 0;
	}
	return store_str(slot, v, strlen(v), why, whylen);
}

/* A service (or key) name: 1-64 characters of A-Z a-z 0-9 _ . - */
static bool service_name_ok(const char *s)
{
	size_t len = strlen(s);

	if (len < 1 || len > MAX_SERVICE_NAME)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!isalnum(ch) && ch != '_' && ch != '.' && ch != '-')
			return false;
	}
	return true;
}

/* ------------------------------------------------------------------ */
/* Key hashes.                                                        */

/* SHA-256 of the empty string: no key that can be presented has it. */
static const unsigned char empty_sha256[SHA256_LEN] = {
	0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
	0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
};

/* out = SHA-256 of the bytes of s. Returns 0 or -EIO. */
static int sha256_text(const char *s, unsigned char out[SHA256_LEN])
{
	unsigned int len = 0;

	if (EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL) != 1 || len != SHA256_LEN)
		return -EIO;
	return 0;
}

/*
 * Parses a key hash as the conf file writes it: exactly 64 hex digits, any
 * case (what sha256sum prints). The hash of the empty string is refused:
 * it is what hashing an unset shell variable gives. Returns 0 or -EINVAL
 * with a reason in why; out is written only on success.
 */
static int parse_key_hash(const char *s, unsigned char out[SHA256_LEN], char *why, size_t whylen)
{
	unsigned char h[SHA256_LEN];

	for (size_t i = 0; i < SHA256_LEN; i++) {
		/* s[2 * i] is checked first, so a short string ends the loop at its NUL */
		int hi = gw_hex_digit(s[2 * i]);
		int lo = hi < 0 ? -1 : gw_hex_digit(s[2 * i + 1]);
		if (lo < 0)
			goto bad;
		h[i] = (unsigned char)(hi << 4 | lo);
	}
	if (s[2 * SHA256_LEN] != '\0')
		goto bad;
	if (memcmp(h, empty_sha256, SHA256_LEN) == 0) {
		snprintf(why, whylen, "is the SHA-256 of an empty key");
		return -EINVAL;
	}
	memcpy(out, h, SHA256_LEN);
	return 0;
bad:
	snprintf(why, whylen, "must be 64 hex digits (the SHA-256 of the key)");
	return -EINVAL;
}

/* ------------------------------------------------------------------ */
/* Option parsers, one per kind of value.                             */

/* An integer within the option's bounds (and at most cap), or why not. */
static int bounded_int(const struct opt *o, const char *v, uint64_t cap, uint64_t *n, char *why,
		       size_t whylen)
{
	if (parse_u64(v, n) < 0 || *n < o->min || *n > o->max || *n > cap) {
		snprintf(why, whylen, "must be an integer %llu..%llu",
			 (unsigned long long)o->min, (unsigned long long)o->max);
		return -EINVAL;
	}
	return 0;
}

static int opt_uint(const struct opt *o, struct gw_config *c, void *base, const char *v,
		    char *why, size_t whylen)
{
	uint64_t n;

	(void)c;
	if (bounded_int(o, v, UINT_MAX, &n, why, whylen) < 0)
		return -EINVAL;
	*FIELD(base, o, unsigned) = (unsigned)n;
	return 0;
}

static int opt_size(const struct opt *o, struct gw_config *c, void *base, const char *v,
		    char *why, size_t whylen)
{
	uint64_t n;

	(void)c;
	if (bounded_int(o, v, SIZE_MAX, &n, why, whylen) < 0)
		return -EINVAL;
	*FIELD(base, o, size_t) = (size_t)n;
	return 0;
}

/* An int field that is -1 until set. */
static int opt_int(const struct opt *o, struct gw_config *c, void *base, const char *v,
		   char *why, size_t whylen)
{
	uint64_t n;

	(void)c;
	if (bounded_int(o, v, INT_MAX, &n, why, whylen) < 0)
		return -EINVAL;
	*FIELD(base, o, int) = (int)n;
	return 0;
}

/* Decimal seconds, stored as unsigned milliseconds; bounds in ms. */
static int opt_seconds(const struct opt *o, struct gw_config *c, void *base, const char *v,
		       char *why, size_t whylen)
{
	uint64_t ms;

	(void)c;
	if (parse_fixed(v, 3, &ms) < 0 || ms < o->min || ms > o->max) {
		char lo[32], hi[32];
		fmt_seconds(lo, sizeof(lo), o->min);
		fmt_seconds(hi, sizeof(hi), o->max);
		snprintf(why, whylen, "must be a number of seconds %s..%s (up to 3 decimals)", lo, hi);
		return -EINVAL;
	}
	*FIELD(base, o, unsigned) = (unsigned)ms;
	return 0;
}

static int opt_bool(const struct opt *o, struct gw_config *c, void *base, const char *v,
		    char *why, size_t whylen)
{
	(void)c;
	if (parse_bool(v, FIELD(base, o, bool)) < 0) {
		snprintf(why, whylen, "must be true or false");
		return -EINVAL;
	}
	return 0;
}

static int opt_text(const struct opt *o, struct gw_config *c, void *base, const char *v,
		    char *why, size_t whylen)
{
	(void)c;
	return set_text(o, base, v, TEXT_ANY, why, whylen);
}

/* [cache] scope: who shares answers: everyone, each service, each key. */
static int opt_scope(const struct opt *o, struct gw_config *c, void *base, const char *v,
		     char *why, size_t whylen)
{
	static const char *const names[] = { "global", "service", "key" };
	(void)c;
	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		if (strcmp(v, names[i]) == 0) {
			*FIELD(base, o, enum gw_cache_scope) = (enum gw_cache_scope)i;
			return 0;
		}
	}
	snprintf(why, whylen, "must be global, service or key");
	return -EINVAL;
}

static int opt_token(const struct opt *o, struct gw_config *c, void *base, const char *v,
		     char *why, size_t whylen)
{
	(void)c;
	return set_text(o, base, v, TEXT_TOKEN, why, whylen);
}

static int opt_model(const struct opt *o, struct gw_config *c, void *base, const char *v,
		     char *why, size_t whylen)
{
	(void)c;
	return set_text(o, base, v, TEXT_MODEL, why, whylen);
}

/* Dollars with up to 6 decimals, stored as gw_pusd; bounds in pico-dollars. */
static int opt_usd(const struct opt *o, struct gw_config *c, void *base, const char *v,
		   char *why, size_t whylen)
{
	gw_pusd p;

	(void)c;
	if (parse_usd(v, &p) < 0 || (uint64_t)p < o->min || (uint64_t)p > o->max) {
		snprintf(why, whylen, "must be a dollar amount %llu..%llu (up to 6 decimals)",
			 (unsigned long long)(o->min / GW_PUSD_PER_USD),
			 (unsigned long long)(o->max / GW_PUSD_PER_USD));
		return -EINVAL;
	}
	*FIELD(base, o, gw_pusd) = p;
	return 0;
}

/* USD per million tokens, stored as pico-dollars per token. */
static int opt_price(const struct opt *o, struct gw_config *c, void *base, const char *v,
		     char *why, size_t whylen)
{
	gw_pusd p;

	(void)c;
	if (gw_config_parse_price(v, &p) < 0 || (uint64_t)p > o->max) {
		snprintf(why, whylen,
			 "must be USD per 1M tokens, 0..%llu with up to 6 decimals (e.g. 0.15)",
			 (unsigned long long)(o->max / 1000000));
		return -EINVAL;
	}
	*FIELD(base, o, gw_pusd) = p;
	return 0;
}

static int opt_priority(const struct opt *o, struct gw_config *c, void *base, const char *v,
			char *why, size_t whylen)
{
	(void)c;
	if (parse_priority(v, FIELD(base, o, int)) < 0) {
		snprintf(why, whylen, "must be CRITICAL, HIGH, MEDIUM, LOW or 1-4");
		return -EINVAL;
	}
	return 0;
}

static bool host_char(unsigned char ch)
{
	return isalnum(ch) || ch == '.' || ch == '-' || ch == '_';
}

static bool ipv6_char(unsigned char ch)
{
	return isxdigit(ch) || ch == ':' || ch == '.' || ch == '%' || isalnum(ch);
}

/*
 * Splits "host:port" or "[v6]:port" (or, when port_optional, no port).
 * Stores the host without brackets in host[] and the port (0 when absent).
 * *rest points past what was parsed. Returns 0 or -EINVAL.
 */
static int parse_hostport(const char *s, char host[MAX_HOST + 1], uint64_t *port,
			  bool port_optional, const char **rest)
{
	const char *h = s, *end;
	size_t len;

	if (*s == '[') {
		h = s + 1;
		end = strchr(h, ']');
		if (!end)
			return -EINVAL;
		for (const char *p = h; p < end; p++) {
			if (!ipv6_char((unsigned char)*p))
				return -EINVAL;
		}
		len = (size_t)(end - h);
		end++;
	} else {
		for (end = h; host_char((unsigned char)*end); end++)
			;
		len = (size_t)(end - h);
	}
	if (len == 0 || len > MAX_HOST)
		return -EINVAL;
	memcpy(host, h, len);
	host[len] = '\0';

	*port = 0;
	if (*end == ':') {
		if (parse_digits(end + 1, port, &end) < 0 || *port < 1 || *port > 65535)
			return -EINVAL;
	} else if (!port_optional) {
		return -EINVAL;
	}
	*rest = end;
	return 0;
}

/* [gateway] listen: fills listen_host and listen_port of c. */
static int opt_listen(const struct opt *o, struct gw_config *c, void *base, const char *v,
		      char *why, size_t whylen)
{
	char host[MAX_HOST + 1];
	uint64_t port;
	const char *rest;

	(void)o;
	(void)base;
	if (parse_hostport(v, host, &port, false, &rest) < 0 || *rest != '\0') {
		snprintf(why, whylen, "must be host:port with port 1..65535 (IPv6 as [addr]:port)");
		return -EINVAL;
	}
	if (store_str(&c->listen_host, host, strlen(host), why, whylen) < 0)
		return -ENOMEM;
	c->listen_port = (uint16_t)port;
	return 0;
}

/* A provider base URL: http(s)://host..., stored without trailing slashes. */
static int opt_url(const struct opt *o, struct gw_config *c, void *base, const char *v,
		   char *why, size_t whylen)
{
	size_t len = strlen(v), skip;

	(void)c;
	if (strncasecmp(v, "https://", 8) == 0)
		skip = 8;
	else if (strncasecmp(v, "http://", 7) == 0)
		skip = 7;
	else
		skip = 0;
	if (skip == 0 || len > MAX_URL || !text_ok(v, TEXT_TOKEN) ||
	    (!host_char((unsigned char)v[skip]) && v[skip] != '[')) {
		snprintf(why, whylen, "must be an http:// or https:// URL with a host");
		return -EINVAL;
	}
	while (len > skip && v[len - 1] == '/')
		len--;
	return store_str(FIELD(base, o, char *), v, len, why, whylen);
}

/* redis://host[:port][/db] */
static int opt_redis_url(const struct opt *o, struct gw_config *c, void *base, const char *v,
			 char *why, size_t whylen)
{
	static const char scheme[] = "redis://";
	char host[MAX_HOST + 1];
	uint64_t port, db;
	const char *rest;

	(void)c;
	if (strncmp(v, scheme, sizeof(scheme) - 1) != 0 ||
	    parse_hostport(v + sizeof(scheme) - 1, host, &port, true, &rest) < 0)
		goto bad;
	if (*rest == '/' && (parse_digits(rest + 1, &db, &rest) < 0 || db > 65535))
		goto bad;
	if (*rest != '\0')
		goto bad;
	return store_str(FIELD(base, o, char *), v, strlen(v), why, whylen);
bad:
	snprintf(why, whylen, "must be redis://host[:port][/db]");
	return -EINVAL;
}

/* [gateway] fallback_order: a comma list of distinct provider names. */
static int opt_order(const struct opt *o, struct gw_config *c, void *base, const char *v,
		     char *why, size_t whylen)
{
	enum gw_provider_id order[GW_PROV_COUNT];
	unsigned n = 0;
	const char *p = v;

	(void)base;
	for (;;) {
		const char *start, *end;
		char name[32];
		int id;

		while (*p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (end == start) {
			snprintf(why, whylen, "empty entry (expected a comma list of openrouter, "
				 "anthropic, openai)");
			return -EINVAL;
		}
		if (n == o->max) {
			snprintf(why, whylen, "at most %llu providers", (unsigned long long)o->max);
			return -EINVAL;
		}
		if ((size_t)(end - start) >= sizeof(name))
			id = -1;
		else {
			memcpy(name, start, (size_t)(end - start));
			name[end - start] = '\0';
			id = gw_provider_from_name(name);
		}
		if (id < 0) {
			snprintf(why, whylen, "unknown provider \"%.*s\" (known: openrouter, "
				 "anthropic, openai)", (int)(end - start > 64 ? 64 : end - start), start);
			return -EINVAL;
		}
		for (unsigned i = 0; i < n; i++) {
			if (order[i] == (enum gw_provider_id)id) {
				snprintf(why, whylen, "provider \"%s\" listed twice", name);
				return -EINVAL;
			}
		}
		order[n++] = (enum gw_provider_id)id;
		if (*p == '\0')
			break;
		p++;
	}
	memcpy(c->order, order, n * sizeof(order[0]));
	c->n_order = n;
	return 0;
}

static const struct gw_model_conf *model_by_name(const struct gw_config *c, const char *name,
						 const struct gw_model_conf *skip);

/*
 * [model.*] aliases: a comma list of other names for the model, each
 * unique across every model's name and aliases. base is the model.
 */
static int opt_aliases(const struct opt *o, struct gw_config *c, void *base, const char *v,
		       char *why, size_t whylen)
{
	struct gw_model_conf *m = base;
	char **list = NULL;
	size_t n = 0;
	const char *p = v;
	int rc = -EINVAL;

	list = calloc(o->max, sizeof(*list));
	if (!list) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	while (*p) {
		const char *start, *end;
		const struct gw_model_conf *owner;
		char *alias;

		while (*p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		end = p;
		while (*p == ' ' || *p == '\t')
			p++;
		if (end == start) {
			snprintf(why, whylen, "empty entry in the list");
			goto out;
		}
		if (*p && *p != ',') {
			snprintf(why, whylen, "must be a comma list of model names");
			goto out;
		}
		if ((size_t)(end - start) > MAX_MODEL_NAME) {
			snprintf(why, whylen, "name too long (at most %d bytes)", MAX_MODEL_NAME);
			goto out;
		}
		if (n == o->max) {
			snprintf(why, whylen, "at most %llu aliases", (unsigned long long)o->max);
			goto out;
		}
		alias = strndup(start, (size_t)(end - start));
		if (!alias) {
			snprintf(why, whylen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		if (!text_ok(alias, TEXT_MODEL)) {
			snprintf(why, whylen, "\"%.64s\" is not a model name", alias);
			free(alias);
			goto out;
		}
		owner = model_by_name(c, alias, m);
		for (size_t i = 0; !owner && i < n; i++) {
			if (strcmp(list[i], alias) == 0)
				owner = m;
		}
		if (owner || strcmp(alias, m->name) == 0) {
			snprintf(why, whylen, "\"%.64s\" is already a name of [model.%.64s]", alias,
				 owner ? owner->name : m->name);
			free(alias);
			goto out;
		}
		list[n++] = alias;
		if (*p == '\0')
			break;
		p++; /* past the comma: an entry must follow */
		if (*p == '\0') {
			snprintf(why, whylen, "empty entry in the list");
			goto out;
		}
	}
	rc = 0;
out:
	if (rc == 0) {
		for (size_t i = 0; i < m->n_aliases; i++)
			free(m->aliases[i]);
		free(m->aliases);
		if (n == 0) {
			free(list);
			list = NULL;
		}
		m->aliases = list;
		m->n_aliases = n;
	} else {
		for (size_t i = 0; i < n; i++)
			free(list[i]);
		free(list);
	}
	return rc;
}

/* A service name, e.g. [key.*] default_service. */
static int opt_service(const struct opt *o, struct gw_config *c, void *base, const char *v,
		       char *why, size_t whylen)
{
	(void)c;
	if (!service_name_ok(v)) {
		snprintf(why, whylen, "must be a service name (1-%d characters of A-Z a-z 0-9 _ . -)",
			 MAX_SERVICE_NAME);
		return -EINVAL;
	}
	return store_str(FIELD(base, o, char *), v, strlen(v), why, whylen);
}

/* [auth] admin_key_sha256: fills admin_sha256 and has_admin_key; empty: no admin key. */
static int opt_admin_hash(const struct opt *o, struct gw_config *c, void *base, const char *v,
			  char *why, size_t whylen)
{
	(void)o;
	(void)base;
	if (v[0] == '\0') {
		memset(c->admin_sha256, 0, sizeof(c->admin_sha256));
		c->has_admin_key = false;
		return 0;
	}
	if (parse_key_hash(v, c->admin_sha256, why, whylen) < 0)
		return -EINVAL;
	c->has_admin_key = true;
	return 0;
}

/*
 * [key.*] sha256; base is the key. Two keys may not share a hash: the
 * gateway could not tell which of them was presented.
 */
static int opt_key_hash(const struct opt *o, struct gw_config *c, void *base, const char *v,
			char *why, size_t whylen)
{
	struct gw_key_conf *k = base;
	unsigned char h[SHA256_LEN];

	(void)o;
	if (parse_key_hash(v, h, why, whylen) < 0)
		return -EINVAL;
	/* every other key is complete: finish_section() requires its hash */
	for (size_t i = 0; i < c->n_keys; i++) {
		const struct gw_key_conf *other = &c->keys[i];
		if (other != k && memcmp(other->sha256, h, SHA256_LEN) == 0) {
			snprintf(why, whylen, "the same hash as [key.%s] (every key must differ)",
				 other->name);
			return -EINVAL;
		}
	}
	memcpy(k->sha256, h, SHA256_LEN);
	return 0;
}

/*
 * [key.*] services: a comma list of distinct service names the key may
 * book under; empty: any service. base is the key.
 */
static int opt_key_services(const struct opt *o, struct gw_config *c, void *base, const char *v,
			    char *why, size_t whylen)
{
	struct gw_key_conf *k = base;
	char **list, **shrunk;
	size_t n = 0;
	const char *p = v;
	int rc = -EINVAL;

	(void)c;
	list = calloc(o->max, sizeof(*list));
	if (!list) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	while (*p == ' ' || *p == '\t')
		p++;
	while (*p) {
		const char *start, *end;
		char *name;

		while (*p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',' && *p != ' ' && *p != '\t')
			p++;
		end = p;
		while (*p == ' ' || *p == '\t')
			p++;
		if (end == start) {
			snprintf(why, whylen, "empty entry in the list");
			goto out;
		}
		if (*p && *p != ',') {
			snprintf(why, whylen, "must be a comma list of service names");
			goto out;
		}
		if (n == o->max) {
			snprintf(why, whylen, "at most %llu services", (unsigned long long)o->max);
			goto out;
		}
		name = strndup(start, (size_t)(end - start));
		if (!name) {
			snprintf(why, whylen, "out of memory");
			rc = -ENOMEM;
			goto out;
		}
		if (!service_name_ok(name)) {
			snprintf(why, whylen, "\"%.64s\" is not a service name (1-%d characters of "
				 "A-Z a-z 0-9 _ . -)", name, MAX_SERVICE_NAME);
			free(name);
			goto out;
		}
		for (size_t i = 0; i < n; i++) {
			if (strcmp(list[i], name) == 0) {
				snprintf(why, whylen, "service \"%s\" listed twice", name);
				free(name);
				goto out;
			}
		}
		list[n++] = name;
		if (*p == '\0')
			break;
		p++; /* past the comma: an entry must follow */
		if (*p == '\0') {
			snprintf(why, whylen, "empty entry in the list");
			goto out;
		}
	}
	rc = 0;
out:
	if (rc == 0) {
		for (size_t i = 0; i < k->n_services; i++)
			free(k->services[i]);
		free(k->services);
		if (n == 0) {
			free(list);
			list = NULL;
		} else {
			shrunk = realloc(list, n * sizeof(*list));
			if (shrunk)
				list = shrunk;
		}
		k->services = list;
		k->n_services = n;
	} else {
		for (size_t i = 0; i < n; i++)
			free(list[i]);
		free(list);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* The tables. Columns: key, parser, field, min, max, default, env.   */

#define GOFF(f) offsetof(struct gw_config, f)
#define POFF(f) offsetof(struct gw_provider_conf, f)
#define MOFF(f) offsetof(struct gw_model_conf, f)
#define SOFF(f) offsetof(struct gw_service_conf, f)
#define KOFF(f) offsetof(struct gw_key_conf, f)

static const struct opt gateway_opts[] = {
	{ "listen", opt_listen, 0, 0, 0, "127.0.0.1:8400", "LLMGW_LISTEN" },
	/* 0: one worker per online core, resolved after loading */
	{ "workers", opt_uint, GOFF(workers), 0, MAX_WORKERS, "0", "LLMGW_WORKERS" },
	{ "http_threads", opt_uint, GOFF(http_threads), 0, 64, "0", "LLMGW_HTTP_THREADS" },
	{ "max_body_bytes", opt_size, GOFF(max_body_bytes), KIB, 64 * MIB, "1048576", NULL },
	{ "upstream_max_body_bytes", opt_size, GOFF(upstream_max_body_bytes), KIB, 256 * MIB,
	  "8388608", NULL },
	{ "max_connections", opt_uint, GOFF(max_connections), 1, 1000000, "10000", NULL },
	/* any model name: OpenRouter also serves models missing from the table */
	{ "default_model", opt_model, GOFF(default_model), 1, MAX_MODEL_NAME,
	  "openai/gpt-4o-mini", "LLM_DEFAULT_MODEL" },
	{ "fallback_order", opt_order, 0, 1, GW_PROV_COUNT, "openrouter, anthropic, openai", NULL },
	{ "shutdown_grace_s", opt_seconds, GOFF(shutdown_grace_ms), 0, 3600000, "30", NULL },
	/* STATE_DIRECTORY (systemd) wins over LLMGW_STATE_DIR, see apply_env() */
	{ "state_dir", opt_text, GOFF(state_dir), 1, 4096, "./state", "LLMGW_STATE_DIR" },
};

static const struct opt queue_opts[] = {
	{ "critical_max", opt_uint, GOFF(queue_max[GW_PRIO_CRITICAL]), 1, 1000000, "1000", NULL },
	{ "high_max", opt_uint, GOFF(queue_max[GW_PRIO_HIGH]), 1, 1000000, "1000", NULL },
	{ "medium_max", opt_uint, GOFF(queue_max[GW_PRIO_MEDIUM]), 1, 1000000, "1000", NULL },
	{ "low_max", opt_uint, GOFF(queue_max[GW_PRIO_LOW]), 1, 1000000, "1000", NULL },
	/* 0: no default deadline for that priority */
	{ "critical_deadline_ms", opt_uint, GOFF(deadline_ms[GW_PRIO_CRITICAL]), 0, 86400000,
	  "30000", NULL },
	{ "high_deadline_ms", opt_uint, GOFF(deadline_ms[GW_PRIO_HIGH]), 0, 86400000, "60000", NULL },
	{ "medium_deadline_ms", opt_uint, GOFF(deadline_ms[GW_PRIO_MEDIUM]), 0, 86400000,
	  "120000", NULL },
	{ "low_deadline_ms", opt_uint, GOFF(deadline_ms[GW_PRIO_LOW]), 0, 86400000, "600000", NULL },
	{ "aging_ms", opt_uint, GOFF(aging_ms), 1, 86400000, "10000", NULL },
};

static const struct opt cache_opts[] = {
	{ "enabled", opt_bool, GOFF(cache_enabled), 0, 0, "true", "LLM_ENABLE_CACHE" },
	{ "redis_url", opt_redis_url, GOFF(redis_url), 0, 0, "redis://127.0.0.1:6379/0",
	  "LLMGW_REDIS_URL" },
	{ "default_ttl_s", opt_uint, GOFF(cache_ttl_s), 1, 2592000, "300", NULL },
	{ "scope", opt_scope, GOFF(cache_scope), 0, 0, "global", NULL },
};

static const struct opt budget_opts[] = {
	{ "daily_usd", opt_usd, GOFF(budget_daily), 0, USD(1000000), "0", NULL },
	{ "monthly_usd", opt_usd, GOFF(budget_monthly), 0, USD(1000000), "0", NULL },
	{ "critical_exempt", opt_bool, GOFF(budget_critical_exempt), 0, 0, "true", NULL },
	{ "alert_percent", opt_uint, GOFF(budget_alert_percent), 1, 100, "80", NULL },
	{ "webhook_url", opt_text, GOFF(budget_webhook_url), 0, 2048, "", "LLMGW_BUDGET_WEBHOOK_URL" },
};

static const struct opt async_opts[] = {
	/* how long an X-Async result stays in Redis for polling */
	{ "retention_s", opt_uint, GOFF(async_retention_s), 1, 2592000, "3600", NULL },
};

static const struct opt auth_opts[] = {
	{ "enabled", opt_bool, GOFF(auth_enabled), 0, 0, "false", NULL },
	/* LLMGW_ADMIN_KEY (the key itself, hashed) wins over this, see apply_env() */
	{ "admin_key_sha256", opt_admin_hash, GOFF(admin_sha256), 0, 0, "", NULL },
};

/* url and pass_unknown_models defaults differ per provider: prov_info. */
static const struct opt provider_opts[] = {
	{ "url", opt_url, POFF(url), 0, 0, NULL, "LLMGW_*_URL" },
	{ "api_key", opt_token, POFF(api_key), 0, 1024, "", "*_API_KEY" },
	{ "rpm", opt_uint, POFF(rpm), 1, 6000000, "60", "*_RPM" },
	/* 0: max(1, rpm / 60), one second's worth, resolved after loading */
	{ "burst", opt_uint, POFF(burst), 0, 1000000, "0", NULL },
	{ "concurrent", opt_uint, POFF(concurrent), 1, 10000, "3", "*_CONCURRENT" },
	{ "timeout_s", opt_seconds, POFF(timeout_ms), 1, 3600000, "120", "*_TIMEOUT" },
	{ "connect_timeout_ms", opt_uint, POFF(connect_timeout_ms), 1, 300000, "5000", NULL },
	{ "cooldown_s", opt_seconds, POFF(cooldown_ms), 0, 3600000, "5", NULL },
	{ "pass_unknown_models", opt_bool, POFF(pass_unknown_models), 0, 0, NULL, NULL },
	{ "max_tokens_default", opt_uint, POFF(max_tokens_default), 1, 1000000, "4096", NULL },
	{ "referer", opt_text, POFF(referer), 0, 1024, "", NULL },
	{ "title", opt_text, POFF(title), 0, 1024, "", NULL },
};

/* Provider keys must spell gw_provider_name(); a unit test checks it. */
static const struct opt model_opts[] = {
	{ "aliases", opt_aliases, MOFF(aliases), 0, MAX_ALIASES, NULL, NULL },
	{ "openrouter", opt_model, MOFF(upstream[GW_PROV_OPENROUTER]), 1, MAX_MODEL_NAME, NULL,
	  NULL },
	{ "anthropic", opt_model, MOFF(upstream[GW_PROV_ANTHROPIC]), 1, MAX_MODEL_NAME, NULL, NULL },
	{ "openai", opt_model, MOFF(upstream[GW_PROV_OPENAI]), 1, MAX_MODEL_NAME, NULL, NULL },
	{ "price_in", opt_price, MOFF(price_in), 0, PRICE_USD_PER_M(10000), NULL, NULL },
	{ "price_out", opt_price, MOFF(price_out), 0, PRICE_USD_PER_M(10000), NULL, NULL },
};

/* Unset fields stay -1 / NULL / 0, see add_service(). */
static const struct opt service_opts[] = {
	{ "priority", opt_priority, SOFF(priority), 0, 0, NULL, NULL },
	{ "cache_ttl_s", opt_int, SOFF(cache_ttl_s), 1, 2592000, NULL, NULL },
	{ "model", opt_model, SOFF(model), 1, MAX_MODEL_NAME, NULL, NULL },
	{ "budget_daily_usd", opt_usd, SOFF(budget_daily), 0, USD(1000000), NULL, NULL },
	{ "budget_monthly_usd", opt_usd, SOFF(budget_monthly), 0, USD(1000000), NULL, NULL },
};

/* sha256 is required, see finish_key(); unset fields stay NULL / 0. */
static const struct opt key_opts[] = {
	{ "sha256", opt_key_hash, KOFF(sha256), 0, 0, NULL, NULL },
	{ "services", opt_key_services, KOFF(services), 0, MAX_KEY_SERVICES, NULL, NULL },
	{ "default_service", opt_service, KOFF(default_service), 1, MAX_SERVICE_NAME, NULL, NULL },
};

/* What is fixed per provider. */
static const struct prov_info {
	const char *env;          /* replaces '*' in the env column */
	enum gw_dialect dialect;
	const char *url;          /* default url */
	const char *pass_unknown; /* default pass_unknown_models */
} prov_info[GW_PROV_COUNT] = {
	[GW_PROV_OPENROUTER] = { "OPENROUTER", GW_DIALECT_OPENAI, "https://openrouter.ai/api/v1",
				 "true" },
	[GW_PROV_ANTHROPIC] = { "ANTHROPIC", GW_DIALECT_ANTHROPIC, "https://api.anthropic.com",
				"false" },
	[GW_PROV_OPENAI] = { "OPENAI", GW_DIALECT_OPENAI, "https://api.openai.com/v1", "false" },
};

/*
 * The model table used when the conf file has no [model.*] section: the
 * DESIGN.md pricing reference. Written as conf values and loaded through
 * the same parsers as the file.
 */
static const struct builtin_model {
	const char *name;
	const char *aliases;
	const char *upstream[GW_PROV_COUNT];
	const char *price_in;
	const char *price_out;
} builtin_models[] = {
	{ "openai/gpt-4o-mini", "gpt-4o-mini",
	  { "openai/gpt-4o-mini", "claude-3-haiku-20240307", "gpt-4o-mini" }, "0.15", "0.60" },
	{ "openai/gpt-4o", "gpt-4o",
	  { "openai/gpt-4o", "claude-3-5-sonnet-20241022", "gpt-4o" }, "2.50", "10.00" },
	{ "anthropic/claude-3-haiku", "claude-3-haiku, claude-3-haiku-20240307",
	  { "anthropic/claude-3-haiku", "claude-3-haiku-20240307", "gpt-4o-mini" }, "0.25", "1.25" },
	{ "anthropic/claude-3.5-sonnet", "claude-3.5-sonnet, claude-3-5-sonnet-20241022",
	  { "anthropic/claude-3.5-sonnet", "claude-3-5-sonnet-20241022", "gpt-4o" }, "3.00",
	  "15.00" },
	{ "meta-llama/llama-3.1-70b", "llama-3.1-70b, meta-llama/llama-3.1-70b-instruct",
	  { "meta-llama/llama-3.1-70b-instruct", NULL, NULL }, "0.35", "0.40" },
};

enum sec_kind {
	SEC_GLOBAL,    /* fields of struct gw_config itself */
	SEC_PROVIDER,
	SEC_MODEL,
	SEC_SERVICE,
	SEC_KEY
};

/* Conf sections. A name ending in '.' is a prefix: [provider.openai]. */
static const struct section {
	const char *name;
	enum sec_kind kind;
	const struct opt *opts;
	size_t n_opts;
} sections[] = {
	{ "gateway", SEC_GLOBAL, gateway_opts, ARRAY_SIZE(gateway_opts) },
	{ "queue", SEC_GLOBAL, queue_opts, ARRAY_SIZE(queue_opts) },
	{ "cache", SEC_GLOBAL, cache_opts, ARRAY_SIZE(cache_opts) },
	{ "budget", SEC_GLOBAL, budget_opts, ARRAY_SIZE(budget_opts) },
	{ "async", SEC_GLOBAL, async_opts, ARRAY_SIZE(async_opts) },
	{ "auth", SEC_GLOBAL, auth_opts, ARRAY_SIZE(auth_opts) },
	{ "provider.", SEC_PROVIDER, provider_opts, ARRAY_SIZE(provider_opts) },
	{ "model.", SEC_MODEL, model_opts, ARRAY_SIZE(model_opts) },
	{ "service.", SEC_SERVICE, service_opts, ARRAY_SIZE(service_opts) },
	{ "key.", SEC_KEY, key_opts, ARRAY_SIZE(key_opts) },
};

_Static_assert(ARRAY_SIZE(gateway_opts) <= MAX_SECTION_KEYS, "key_line too small");
_Static_assert(ARRAY_SIZE(queue_opts) <= MAX_SECTION_KEYS, "key_line too small");
_Static_assert(ARRAY_SIZE(provider_opts) <= MAX_SECTION_KEYS, "key_line too small");
_Static_assert(ARRAY_SIZE(key_opts) <= MAX_SECTION_KEYS, "key_line too small");

/* ------------------------------------------------------------------ */
/* Loading state and errors.                                          */

struct dotenv_var {
	char *key;
	char *value;
	int line;
};

struct load {
	struct gw_config *c;
	const char *src;              /* origin of keys: conf path, built-ins */

	/* conf file */
	FILE *fp;
	char *buf;
	size_t cap;
	int lineno;
	const struct section *sec;    /* current section; NULL before the first */
	char sec_name[MAX_MODEL_NAME + 16];
	int sec_index;                /* provider id, model, service or key index */
	int sec_line;
	int key_line[MAX_SECTION_KEYS];          /* 0: key not set yet */
	int global_line[ARRAY_SIZE(sections)];   /* where a [gateway]... opened */
	/* where each key of a [gateway]... was set, for checks of the whole */
	int global_key_line[ARRAY_SIZE(sections)][MAX_SECTION_KEYS];
	size_t keys_cap;              /* room in c->keys */
	int prov_line[GW_PROV_COUNT];

	/* .env */
	const char *dotenv_path;
	struct dotenv_var *vars;
	size_t n_vars;

	/* the first error */
	bool failed;
	int err_line;
	char err[ERR_MAX];
};

/*
 * Records the first error as "file:line: message" (line 0: "file: ").
 * Later errors are dropped: they are usually consequences.
 */
static void failf(struct load *ld, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void failf(struct load *ld, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ld->failed)
		return;
	ld->failed = true;
	ld->err_line = line;
	if (line > 0)
		n = snprintf(ld->err, sizeof(ld->err), "%s:%d: ", file, line);
	else
		n = snprintf(ld->err, sizeof(ld->err), "%s: ", file);
	if (n < 0 || (size_t)n >= sizeof(ld->err))
		return;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, sizeof(ld->err) - (size_t)n, fmt, ap);
	va_end(ap);
}

static const struct opt *find_opt(const struct opt *opts, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(opts[i].name, name) == 0)
			return &opts[i];
	}
	return NULL;
}

static void *section_base(struct load *ld)
{
	switch (ld->sec->kind) {
	case SEC_GLOBAL:
		return ld->c;
	case SEC_PROVIDER:
		return &ld->c->prov[ld->sec_index];
	case SEC_MODEL:
		return &ld->c->models[ld->sec_index];
	case SEC_SERVICE:
		return &ld->c->services[ld->sec_index];
	case SEC_KEY:
		return &ld->c->keys[ld->sec_index];
	}
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Sections and keys.                                                 */

/* The model called name (by its name or an alias), skipping skip. */
static const struct gw_model_conf *model_by_name(const struct gw_config *c, const char *name,
						 const struct gw_model_conf *skip)
{
	for (size_t i = 0; i < c->n_models; i++) {
		const struct gw_model_conf *m = &c->models[i];
		if (m == skip)
			continue;
		if (strcmp(m->name, name) == 0)
			return m;
		for (size_t j = 0; j < m->n_aliases; j++) {
			if (strcmp(m->aliases[j], name) == 0)
				return m;
		}
	}
	return NULL;
}

static int add_model(struct load *ld, const char *name)
{
	struct gw_config *c = ld->c;
	const struct gw_model_conf *owner;
	struct gw_model_conf *grown, *m;
	size_t len = strlen(name);

	if (len < 1 || len > MAX_MODEL_NAME || !text_ok(name, TEXT_MODEL)) {
		failf(ld, ld->src, ld->sec_line, "[%s] is not a model name (printable ASCII, "
		      "no blanks or commas, at most %d bytes)", ld->sec_name, MAX_MODEL_NAME);
		return -EINVAL;
	}
	owner = model_by_name(c, name, NULL);
	if (owner) {
		failf(ld, ld->src, ld->sec_line, "[%s] \"%s\" is already a name of [model.%s]",
		      ld->sec_name, name, owner->name);
		return -EINVAL;
	}
	if (c->n_models == MAX_MODELS) {
		failf(ld, ld->src, ld->sec_line, "[%s] too many models (at most %d)", ld->sec_name,
		      MAX_MODELS);
		return -EINVAL;
	}
	grown = realloc(c->models, (c->n_models + 1) * sizeof(*grown));
	if (!grown)
		goto oom;
	c->models = grown;
	m = &c->models[c->n_models];
	memset(m, 0, sizeof(*m));
	m->price_in = -1;
	m->price_out = -1;
	m->name = strdup(name);
	if (!m->name)
		goto oom;
	ld->sec_index = (int)c->n_models++;
	return 0;
oom:
	failf(ld, ld->src, ld->sec_line, "out of memory");
	return -ENOMEM;
}

static int add_service(struct load *ld, const char *name)
{
	struct gw_config *c = ld->c;
	struct gw_service_conf *grown, *s;

	if (!service_name_ok(name)) {
		failf(ld, ld->src, ld->sec_line, "[%s] service names are 1-%d characters of "
		      "A-Z a-z 0-9 _ . -", ld->sec_name, MAX_SERVICE_NAME);
		return -EINVAL;
	}
	if (gw_config_service(c, name)) {
		failf(ld, ld->src, ld->sec_line, "section [%s] appears twice", ld->sec_name);
		return -EINVAL;
	}
	if (c->n_services == MAX_SERVICES) {
		failf(ld, ld->src, ld->sec_line, "[%s] too many services (at most %d)",
		      ld->sec_name, MAX_SERVICES);
		return -EINVAL;
	}
	grown = realloc(c->services, (c->n_services + 1) * sizeof(*grown));
	if (!grown)
		goto oom;
	c->services = grown;
	s = &c->services[c->n_services];
	memset(s, 0, sizeof(*s));
	s->priority = -1;
	s->cache_ttl_s = -1;
	s->name = strdup(name);
	if (!s->name)
		goto oom;
	ld->sec_index = (int)c->n_services++;
	return 0;
oom:
	failf(ld, ld->src, ld->sec_line, "out of memory");
	return -ENOMEM;
}

static const struct gw_key_conf *key_by_name(const struct gw_config *c, const char *name)
{
	for (size_t i = 0; i < c->n_keys; i++) {
		if (strcmp(c->keys[i].name, name) == 0)
			return &c->keys[i];
	}
	return NULL;
}

static int add_key(struct load *ld, const char *name)
{
	struct gw_config *c = ld->c;
	struct gw_key_conf *grown, *k;

	if (!service_name_ok(name)) {
		failf(ld, ld->src, ld->sec_line, "[%s] key names are 1-%d characters of "
		      "A-Z a-z 0-9 _ . -", ld->sec_name, MAX_SERVICE_NAME);
		return -EINVAL;
	}
	if (key_by_name(c, name)) {
		failf(ld, ld->src, ld->sec_line, "section [%s] appears twice", ld->sec_name);
		return -EINVAL;
	}
	if (c->n_keys == MAX_KEYS) {
		failf(ld, ld->src, ld->sec_line, "[%s] too many keys (at most %d)", ld->sec_name,
		      MAX_KEYS);
		return -EINVAL;
	}
	if (c->n_keys == ld->keys_cap) {
		/* doubling: thousands of keys are a normal configuration */
		size_t cap = ld->keys_cap ? 2 * ld->keys_cap : 16;
		if (cap > MAX_KEYS)
			cap = MAX_KEYS;
		grown = realloc(c->keys, cap * sizeof(*grown));
		if (!grown)
			goto oom;
		c->keys = grown;
		ld->keys_cap = cap;
	}
	k = &c->keys[c->n_keys];
	memset(k, 0, sizeof(*k));
	k->name = strdup(name);
	if (!k->name)
		goto oom;
	ld->sec_index = (int)c->n_keys++;
	return 0;
oom:
	failf(ld, ld->src, ld->sec_line, "out of memory");
	return -ENOMEM;
}

/* The line where key of the current section was set; 0: not set. */
static int key_line_of(const struct load *ld, const char *key)
{
	const struct opt *o = find_opt(ld->sec->opts, ld->sec->n_opts, key);

	return o ? ld->key_line[o - ld->sec->opts] : 0;
}

static void finish_model(struct load *ld)
{
	const struct gw_model_conf *m = &ld->c->models[ld->sec_index];

	for (int p = 0; p < GW_PROV_COUNT; p++) {
		if (m->upstream[p])
			return;
	}
	failf(ld, ld->src, ld->sec_line, "[%s] maps the model to no provider "
	      "(set openrouter, anthropic and/or openai)", ld->sec_name);
}

/* A key needs its hash, and its default service must be one it may use. */
static void finish_key(struct load *ld)
{
	const struct gw_key_conf *k = &ld->c->keys[ld->sec_index];

	if (key_line_of(ld, "sha256") == 0) {
		failf(ld, ld->src, ld->sec_line, "[%s] has no sha256 (the SHA-256 of the key, "
		      "64 hex digits)", ld->sec_name);
		return;
	}
	if (k->default_service && !gw_config_key_allows(k, k->default_service))
		failf(ld, ld->src, key_line_of(ld, "default_service"),
		      "[%s] default_service: \"%s\" is not in services", ld->sec_name,
		      k->default_service);
}

/* Checks what a whole section must hold, once its last key was read. */
static void finish_section(struct load *ld)
{
	if (!ld->sec || ld->failed)
		return;
	switch (ld->sec->kind) {
	case SEC_MODEL:
		finish_model(ld);
		break;
	case SEC_KEY:
		finish_key(ld);
		break;
	case SEC_GLOBAL:
	case SEC_PROVIDER:
	case SEC_SERVICE:
		break;
	}
}

/* Opens section name (len bytes) found at line. */
static int begin_section(struct load *ld, const char *name, size_t len, int line)
{
	const struct section *found = NULL;
	const char *arg = "";
	size_t idx = 0;

	finish_section(ld);
	if (ld->failed)
		return -EINVAL;
	ld->sec = NULL;
	ld->sec_line = line;
	memset(ld->key_line, 0, sizeof(ld->key_line));
	if (len >= sizeof(ld->sec_name)) {
		failf(ld, ld->src, line, "section name too long");
		return -EINVAL;
	}
	memcpy(ld->sec_name, name, len);
	ld->sec_name[len] = '\0';

	for (idx = 0; idx < ARRAY_SIZE(sections); idx++) {
		const struct section *s = &sections[idx];
		size_t plen = strlen(s->name);
		if (s->name[plen - 1] == '.') {
			if (strncmp(ld->sec_name, s->name, plen) == 0) {
				found = s;
				arg = ld->sec_name + plen;
				break;
			}
		} else if (strcmp(ld->sec_name, s->name) == 0) {
			found = s;
			break;
		}
	}
	if (!found) {
		failf(ld, ld->src, line, "unknown section [%s] (known: gateway, queue, cache, "
		      "budget, async, auth, provider.NAME, model.NAME, service.NAME, key.NAME)",
		      ld->sec_name);
		return -EINVAL;
	}

	switch (found->kind) {
	case SEC_GLOBAL:
		if (ld->global_line[idx]) {
			failf(ld, ld->src, line, "section [%s] appears twice (first at line %d)",
			      ld->sec_name, ld->global_line[idx]);
			return -EINVAL;
		}
		ld->global_line[idx] = line;
		break;
	case SEC_PROVIDER: {
		int p = gw_provider_from_name(arg);
		if (p < 0) {
			failf(ld, ld->src, line, "unknown provider in [%s] (known: openrouter, "
			      "anthropic, openai)", ld->sec_name);
			return -EINVAL;
		}
		if (ld->prov_line[p]) {
			failf(ld, ld->src, line, "section [%s] appears twice (first at line %d)",
			      ld->sec_name, ld->prov_line[p]);
			return -EINVAL;
		}
		ld->prov_line[p] = line;
		ld->sec_index = p;
		break;
	}
	case SEC_MODEL:
		if (add_model(ld, arg) < 0)
			return -EINVAL;
		break;
	case SEC_SERVICE:
		if (add_service(ld, arg) < 0)
			return -EINVAL;
		break;
	case SEC_KEY:
		if (add_key(ld, arg) < 0)
			return -EINVAL;
		break;
	}
	ld->sec = found;
	return 0;
}

/* Sets key of the current section from a conf value, at ld->lineno. */
static int set_key(struct load *ld, const char *key, const char *value)
{
	const struct opt *o;
	char why[WHY_MAX];
	size_t i;

	if (ld->failed)
		return -EINVAL;
	if (!ld->sec) {
		failf(ld, ld->src, ld->lineno, "key \"%.64s\" is outside of any [section]", key);
		return -EINVAL;
	}
	o = find_opt(ld->sec->opts, ld->sec->n_opts, key);
	if (!o) {
		failf(ld, ld->src, ld->lineno, "[%s] unknown key \"%.64s\"", ld->sec_name, key);
		return -EINVAL;
	}
	i = (size_t)(o - ld->sec->opts);
	if (ld->key_line[i]) {
		failf(ld, ld->src, ld->lineno, "[%s] %s: set twice (first at line %d)",
		      ld->sec_name, key, ld->key_line[i]);
		return -EINVAL;
	}
	ld->key_line[i] = ld->lineno > 0 ? ld->lineno : -1;
	if (ld->sec->kind == SEC_GLOBAL)
		ld->global_key_line[ld->sec - sections][i] = ld->key_line[i];
	if (o->parse(o, ld->c, section_base(ld), value, why, sizeof(why)) < 0) {
		failf(ld, ld->src, ld->lineno, "[%s] %s: %s", ld->sec_name, key, why);
		return -EINVAL;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* The conf file.                                                     */

/*
 * A header line: finds the closing ']' the way inih does (an inline ';'
 * comment after a blank ends the search) and opens the section.
 */
static int header_line(struct load *ld, const char *p)
{
	const char *q = p + 1;
	bool was_space = false;

	while (*q && *q != ']' && !(was_space && *q == ';')) {
		was_space = isspace((unsigned char)*q);
		q++;
	}
	if (*q != ']') {
		failf(ld, ld->src, ld->lineno, "syntax error: no ']' closes the section name");
		return -EINVAL;
	}
	return begin_section(ld, p + 1, (size_t)(q - p - 1), ld->lineno);
}

/* inih's fgets-style reader; see the comment at the top of the file. */
static char *conf_reader(char *str, int num, void *stream)
{
	struct load *ld = stream;
	ssize_t n;
	char *p;
	size_t len;

	if (ld->failed)
		return NULL;
	errno = 0;
	n = getline(&ld->buf, &ld->cap, ld->fp);
	if (n < 0) {
		if (ferror(ld->fp))
			failf(ld, ld->src, 0, "read error: %s", strerror(errno ? errno : EIO));
		return NULL;
	}
	ld->lineno++;
	if (memchr(ld->buf, '\0', (size_t)n)) {
		failf(ld, ld->src, ld->lineno, "NUL byte in line");
		return NULL;
	}
	while (n > 0 && (ld->buf[n - 1] == '\n' || ld->buf[n - 1] == '\r'))
		ld->buf[--n] = '\0';
	p = ld->buf;
	if (ld->lineno == 1 && n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* UTF-8 byte order mark */
	while (isspace((unsigned char)*p))
		p++;
	len = strlen(p);
	if (num < 4 || len > (size_t)num - 3) {
		failf(ld, ld->src, ld->lineno, "line too long (at most %d characters)", num - 3);
		return NULL;
	}
	if (*p == '[' && header_line(ld, p) < 0)
		return NULL;
	memcpy(str, p, len + 1);
	return str;
}

static int conf_handler(void *user, const char *section, const char *name, const char *value)
{
	struct load *ld = user;

	(void)section; /* may be truncated by inih; the reader tracks ld->sec */
	return set_key(ld, name, value) == 0;
}

static int conf_read(struct load *ld, const char *path)
{
	int ret;

	ld->fp = fopen(path, "re");
	if (!ld->fp) {
		failf(ld, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	ld->c->source = strdup(path);
	if (!ld->c->source) {
		failf(ld, path, 0, "out of memory");
		goto out;
	}
	ld->src = path;
	ld->lineno = 0;
	ret = ini_parse_stream(conf_reader, ld, conf_handler, ld);
	if (ret == 0)
		finish_section(ld);
	else if (ret > 0 && (!ld->failed || ret < ld->err_line)) {
		/* inih's own complaint came first: a line it could not split */
		ld->failed = false;
		failf(ld, path, ret, "syntax error (expected [section] or key = value)");
	} else if (ret < 0) {
		failf(ld, path, 0, "out of memory");
	}
out:
	fclose(ld->fp);
	ld->fp = NULL;
	ld->sec = NULL;
	return ld->failed ? -1 : 0;
}

static int install_builtin_models(struct load *ld)
{
	char name[MAX_MODEL_NAME + 16];

	ld->src = "built-in model table";
	ld->lineno = 0;
	for (size_t i = 0; i < ARRAY_SIZE(builtin_models); i++) {
		const struct builtin_model *b = &builtin_models[i];
		int n = snprintf(name, sizeof(name), "model.%s", b->name);
		if (begin_section(ld, name, (size_t)n, 0) < 0)
			return -1;
		set_key(ld, "aliases", b->aliases);
		for (int p = 0; p < GW_PROV_COUNT; p++) {
			if (b->upstream[p])
				set_key(ld, gw_provider_name((enum gw_provider_id)p), b->upstream[p]);
		}
		set_key(ld, "price_in", b->price_in);
		set_key(ld, "price_out", b->price_out);
		finish_section(ld);
	}
	ld->sec = NULL;
	return ld->failed ? -1 : 0;
}

static void table_defaults(struct load *ld, const char *sec, const struct opt *opts, size_t n,
			   void *base)
{
	char why[WHY_MAX];

	for (size_t i = 0; i < n; i++) {
		if (opts[i].def && opts[i].parse(&opts[i], ld->c, base, opts[i].def, why,
						 sizeof(why)) < 0)
			failf(ld, "built-in defaults", 0, "[%s] %s: %s", sec, opts[i].name, why);
	}
}

static int apply_defaults(struct load *ld)
{
	struct {
		const char *key;
		const char *value;
	} per_prov[2];
	char why[WHY_MAX];

	for (size_t i = 0; i < ARRAY_SIZE(sections); i++) {
		if (sections[i].kind == SEC_GLOBAL)
			table_defaults(ld, sections[i].name, sections[i].opts, sections[i].n_opts, ld->c);
	}
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		struct gw_provider_conf *pc = &ld->c->prov[p];
		table_defaults(ld, gw_provider_name((enum gw_provider_id)p), provider_opts,
			       ARRAY_SIZE(provider_opts), pc);
		per_prov[0].key = "url";
		per_prov[0].value = prov_info[p].url;
		per_prov[1].key = "pass_unknown_models";
		per_prov[1].value = prov_info[p].pass_unknown;
		for (size_t i = 0; i < ARRAY_SIZE(per_prov); i++) {
			const struct opt *o = find_opt(provider_opts, ARRAY_SIZE(provider_opts),
						       per_prov[i].key);
			if (o && o->parse(o, ld->c, pc, per_prov[i].value, why, sizeof(why)) < 0)
				failf(ld, "built-in defaults", 0, "[provider] %s: %s", o->name, why);
		}
	}
	return ld->failed ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* .env and the environment.                                          */

/*
 * Parses the value part of a .env line in place: 'single' (literal),
 * "double" (\\ \" \$ \` \n escapes) or bare (up to a " #" comment).
 * Returns the value, or NULL with a reason in *why.
 */
static char *dotenv_value(char *p, const char **why)
{
	char *value, *rest;

	if (*p == '"') {
		char *src = p + 1, *dst = p + 1;
		value = p + 1;
		while (*src && *src != '"') {
			if (src[0] == '\\' && src[1] && strchr("\\\"$`n", src[1])) {
				*dst++ = src[1] == 'n' ? '\n' : src[1];
				src += 2;
			} else {
				*dst++ = *src++;
			}
		}
		if (*src != '"') {
			*why = "unterminated double quote";
			return NULL;
		}
		rest = src + 1;
		*dst = '\0';
	} else if (*p == '\'') {
		value = p + 1;
		rest = strchr(value, '\'');
		if (!rest) {
			*why = "unterminated single quote";
			return NULL;
		}
		*rest++ = '\0';
	} else {
		char *end;
		value = p;
		for (end = p; *end; end++) {
			if (*end == '#' && end > p && isspace((unsigned char)end[-1]))
				break;
		}
		*end = '\0';
		while (end > value && isspace((unsigned char)end[-1]))
			*--end = '\0';
		return value;
	}
	while (isspace((unsigned char)*rest))
		rest++;
	if (*rest && *rest != '#') {
		*why = "unexpected text after the closing quote";
		return NULL;
	}
	return value;
}

/* Reads KEY=VALUE lines; a missing file is not an error. */
static int dotenv_read(struct load *ld, const char *path)
{
	FILE *fp;
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	int lineno = 0;

	ld->dotenv_path = path;
	fp = fopen(path, "re");
	if (!fp) {
		if (errno == ENOENT)
			return 0;
		failf(ld, path, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	errno = 0;
	while ((n = getline(&line, &cap, fp)) >= 0) {
		const char *why = NULL;
		char *p = line, *key, *value;
		struct dotenv_var *grown;
		size_t klen;

		lineno++;
		if (n > MAX_DOTENV_LINE || memchr(line, '\0', (size_t)n)) {
			failf(ld, path, lineno, n > MAX_DOTENV_LINE ? "line too long" : "NUL byte in line");
			goto out;
		}
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (strncmp(p, "export", 6) == 0 && (p[6] == ' ' || p[6] == '\t')) {
			p += 6;
			while (isspace((unsigned char)*p))
				p++;
		}
		key = p;
		if (!isalpha((unsigned char)*p) && *p != '_')
			goto syntax;
		while (isalnum((unsigned char)*p) || *p == '_')
			p++;
		klen = (size_t)(p - key);
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p != '=')
			goto syntax;
		p++;
		while (*p == ' ' || *p == '\t')
			p++;
		value = dotenv_value(p, &why);
		if (!value) {
			failf(ld, path, lineno, "%s", why);
			goto out;
		}
		if (ld->n_vars == MAX_DOTENV_VARS) {
			failf(ld, path, lineno, "too many variables (at most %d)", MAX_DOTENV_VARS);
			goto out;
		}
		grown = realloc(ld->vars, (ld->n_vars + 1) * sizeof(*grown));
		if (!grown)
			goto oom;
		ld->vars = grown;
		grown = &ld->vars[ld->n_vars];
		grown->key = strndup(key, klen);
		grown->value = strdup(value);
		grown->line = lineno;
		ld->n_vars++;
		if (!grown->key || !grown->value)
			goto oom;
		continue;
syntax:
		failf(ld, path, lineno, "expected KEY=VALUE");
		goto out;
	}
	if (ferror(fp))
		failf(ld, path, 0, "read error: %s", strerror(errno ? errno : EIO));
	goto out;
oom:
	failf(ld, path, lineno, "out of memory");
out:
	free(line);
	fclose(fp);
	return ld->failed ? -1 : 0;
}

/*
 * The value of variable name: the process environment first, then the
 * .env file (its last assignment). An empty value counts as unset.
 * *line is 0 for the environment, else the .env line.
 */
static const char *env_lookup(struct load *ld, const char *name, int *line)
{
	const char *v = getenv(name);

	*line = 0;
	if (v && *v)
		return v;
	for (size_t i = ld->n_vars; i-- > 0;) {
		if (strcmp(ld->vars[i].key, name) == 0) {
			*line = ld->vars[i].line;
			return ld->vars[i].value[0] ? ld->vars[i].value : NULL;
		}
	}
	return NULL;
}

/* Reports a bad value of variable var from env_lookup() (line 0: the environment). */
static void env_fail(struct load *ld, const char *var, int line, const char *why)
{
	if (line == 0)
		failf(ld, "environment", 0, "%s: %s", var, why);
	else
		failf(ld, ld->dotenv_path, line, "%s: %s", var, why);
}

/* Overrides option o of base from variable var when it is set. */
static void env_set(struct load *ld, const struct opt *o, void *base, const char *var,
		    const char *value_override)
{
	char why[WHY_MAX];
	int line;
	const char *v = env_lookup(ld, var, &line);

	if (!v)
		return;
	if (value_override)
		v = value_override;
	if (o->parse(o, ld->c, base, v, why, sizeof(why)) < 0)
		env_fail(ld, var, line, why);
}

/*
 * LLMGW_ADMIN_KEY holds the admin key itself, not a hash: it is hashed
 * here and only the hash is kept. It wins over [auth] admin_key_sha256.
 */
static void env_admin_key(struct load *ld)
{
	static const char var[] = "LLMGW_ADMIN_KEY";
	char why[WHY_MAX];
	int line;
	const char *v = env_lookup(ld, var, &line);

	if (!v)
		return;
	if (strlen(v) > MAX_KEY_LEN || !text_ok(v, TEXT_TOKEN)) {
		snprintf(why, sizeof(why), "must be at most %d printable characters without blanks",
			 MAX_KEY_LEN);
		env_fail(ld, var, line, why);
		return;
	}
	if (sha256_text(v, ld->c->admin_sha256) < 0) {
		env_fail(ld, var, line, "cannot hash the key (OpenSSL SHA-256 failed)");
		return;
	}
	ld->c->has_admin_key = true;
}

static int apply_env(struct load *ld)
{
	const struct opt *state_dir = find_opt(gateway_opts, ARRAY_SIZE(gateway_opts), "state_dir");
	const char *v;
	int line;

	for (size_t i = 0; i < ARRAY_SIZE(sections); i++) {
		const struct section *s = &sections[i];
		if (s->kind != SEC_GLOBAL)
			continue;
		for (size_t j = 0; j < s->n_opts; j++) {
			if (s->opts[j].env)
				env_set(ld, &s->opts[j], ld->c, s->opts[j].env, NULL);
		}
	}
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		for (size_t j = 0; j < ARRAY_SIZE(provider_opts); j++) {
			const struct opt *o = &provider_opts[j];
			const char *star;
			char var[64];
			if (!o->env)
				continue;
			star = strchr(o->env, '*');
			if (star)
				snprintf(var, sizeof(var), "%.*s%s%s", (int)(star - o->env), o->env,
					 prov_info[p].env, star + 1);
			else
				snprintf(var, sizeof(var), "%s", o->env);
			env_set(ld, o, &ld->c->prov[p], var, NULL);
		}
	}

	/* systemd's StateDirectory= may list several; the first is ours. */
	v = env_lookup(ld, "STATE_DIRECTORY", &line);
	if (state_dir && v && v[0] != ':') {
		char *first = strndup(v, strcspn(v, ":"));
		if (!first) {
			failf(ld, "environment", 0, "out of memory");
			return -1;
		}
		env_set(ld, state_dir, ld->c, "STATE_DIRECTORY", first);
		free(first);
	}
	env_admin_key(ld);
	return ld->failed ? -1 : 0;
}

/* The conf line where [sec] key (a global section) was set; 0: not set. */
static int global_key_line(const struct load *ld, const char *sec, const char *key)
{
	for (size_t i = 0; i < ARRAY_SIZE(sections); i++) {
		const struct opt *o;
		if (sections[i].kind != SEC_GLOBAL || strcmp(sections[i].name, sec) != 0)
			continue;
		o = find_opt(sections[i].opts, sections[i].n_opts, key);
		if (o && ld->global_key_line[i][o - sections[i].opts] > 0)
			return ld->global_key_line[i][o - sections[i].opts];
		return 0;
	}
	return 0;
}

/* Checks what holds across sections, once every source was applied. */
static int check_whole(struct load *ld)
{
	const struct gw_config *c = ld->c;

	if (c->auth_enabled && c->n_keys == 0)
		failf(ld, c->source ? c->source : "configuration",
		      global_key_line(ld, "auth", "enabled"),
		      "auth is enabled but no [key.NAME] is configured");
	return ld->failed ? -1 : 0;
}

/* Fills the fields that are derived from others. */
static void resolve(struct gw_config *c)
{
	if (c->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		c->workers = n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (unsigned)n;
	}
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		struct gw_provider_conf *pc = &c->prov[p];
		pc->dialect = prov_info[p].dialect;
		if (pc->burst == 0)
			pc->burst = pc->rpm / 60 > 1 ? pc->rpm / 60 : 1;
		pc->usable = pc->api_key && pc->api_key[0];
	}
}

/* ------------------------------------------------------------------ */
/* Public API.                                                        */

static void config_free(struct gw_config *c)
{
	if (!c)
		return;
	free(c->source);
	free(c->listen_host);
	free(c->default_model);
	free(c->state_dir);
	free(c->redis_url);
	free(c->budget_webhook_url);
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		free(c->prov[p].url);
		free(c->prov[p].api_key);
		free(c->prov[p].referer);
		free(c->prov[p].title);
	}
	for (size_t i = 0; i < c->n_models; i++) {
		struct gw_model_conf *m = &c->models[i];
		free(m->name);
		for (size_t j = 0; j < m->n_aliases; j++)
			free(m->aliases[j]);
		free(m->aliases);
		for (int p = 0; p < GW_PROV_COUNT; p++)
			free(m->upstream[p]);
	}
	free(c->models);
	for (size_t i = 0; i < c->n_services; i++) {
		free(c->services[i].name);
		free(c->services[i].model);
	}
	free(c->services);
	for (size_t i = 0; i < c->n_keys; i++) {
		struct gw_key_conf *k = &c->keys[i];
		free(k->name);
		for (size_t j = 0; j < k->n_services; j++)
			free(k->services[j]);
		free(k->services);
		free(k->default_service);
	}
	free(c->keys);
	free(c);
}

struct gw_config *gw_config_load(const char *conf_path, const char *dotenv_path, char *err,
				 size_t errlen)
{
	struct load ld;
	struct gw_config *c;
	const char *path = conf_path;
	int line;

	memset(&ld, 0, sizeof(ld));
	c = calloc(1, sizeof(*c));
	if (!c) {
		failf(&ld, "config", 0, "out of memory");
		goto out;
	}
	c->refs = 1;
	ld.c = c;
	if (apply_defaults(&ld) < 0)
		goto out;
	if (dotenv_path && dotenv_read(&ld, dotenv_path) < 0)
		goto out;
	if (!path)
		path = env_lookup(&ld, "LLMGW_CONFIG", &line);
	if (path && conf_read(&ld, path) < 0)
		goto out;
	if (c->n_models == 0 && install_builtin_models(&ld) < 0)
		goto out;
	if (apply_env(&ld) < 0)
		goto out;
	if (check_whole(&ld) < 0)
		goto out;
	resolve(c);
out:
	for (size_t i = 0; i < ld.n_vars; i++) {
		free(ld.vars[i].key);
		/* .env holds keys (LLMGW_ADMIN_KEY, provider keys): no copy outlives the load */
		if (ld.vars[i].value)
			OPENSSL_cleanse(ld.vars[i].value, strlen(ld.vars[i].value));
		free(ld.vars[i].value);
	}
	free(ld.vars);
	free(ld.buf);
	if (ld.failed) {
		config_free(c);
		c = NULL;
		if (err && errlen)
			snprintf(err, errlen, "%s", ld.err);
	} else if (err && errlen) {
		err[0] = '\0';
	}
	return c;
}

struct gw_config *gw_config_ref(struct gw_config *c)
{
	if (c)
		__atomic_add_fetch(&c->refs, 1, __ATOMIC_RELAXED);
	return c;
}

void gw_config_unref(struct gw_config *c)
{
	/* acq_rel: the freeing thread sees every other holder's last reads */
	if (c && __atomic_sub_fetch(&c->refs, 1, __ATOMIC_ACQ_REL) == 0)
		config_free(c);
}

const struct gw_model_conf *gw_config_model(const struct gw_config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	return model_by_name(c, name, NULL);
}

const struct gw_service_conf *gw_config_service(const struct gw_config *c, const char *name)
{
	if (!c || !name)
		return NULL;
	for (size_t i = 0; i < c->n_services; i++) {
		if (strcmp(c->services[i].name, name) == 0)
			return &c->services[i];
	}
	return NULL;
}

const char *gw_config_map_model(const struct gw_config *c, const char *model,
				enum gw_provider_id p)
{
	const struct gw_model_conf *m;

	if (!c || !model || (unsigned)p >= GW_PROV_COUNT)
		return NULL;
	m = model_by_name(c, model, NULL);
	if (m)
		return m->upstream[p];
	return c->prov[p].pass_unknown_models ? model : NULL;
}

/* Only providers in the fallback order count: the others are never tried. */
bool gw_config_any_usable(const struct gw_config *c)
{
	if (!c)
		return false;
	for (unsigned i = 0; i < c->n_order; i++) {
		if (c->prov[c->order[i]].usable)
			return true;
	}
	return false;
}

const struct gw_key_conf *gw_config_key(const struct gw_config *c, const char *key)
{
	unsigned char h[SHA256_LEN];
	size_t match = 0; /* index + 1 of the matching key; 0: none */

	if (!c || !key || key[0] == '\0' || sha256_text(key, h) < 0)
		return NULL;
	/*
	 * Every hash is compared, with no early exit and no branch on the
	 * result, so the time taken tells neither whether nor which key
	 * matched. Hashes are unique (opt_key_hash), so at most one matches.
	 */
	for (size_t i = 0; i < c->n_keys; i++) {
		size_t hit = (size_t)(CRYPTO_memcmp(h, c->keys[i].sha256, SHA256_LEN) == 0);
		match |= (i + 1) & ((size_t)0 - hit);
	}
	return match ? &c->keys[match - 1] : NULL;
}

bool gw_config_key_allows(const struct gw_key_conf *k, const char *service)
{
	if (!k)
		return false;
	if (k->n_services == 0)
		return true;
	if (!service)
		return false;
	for (size_t i = 0; i < k->n_services; i++) {
		if (strcmp(k->services[i], service) == 0)
			return true;
	}
	return false;
}

bool gw_config_is_admin(const struct gw_config *c, const char *key)
{
	unsigned char h[SHA256_LEN];

	if (!c || !c->has_admin_key || !key || key[0] == '\0' || sha256_text(key, h) < 0)
		return false;
	return CRYPTO_memcmp(h, c->admin_sha256, SHA256_LEN) == 0;
}
