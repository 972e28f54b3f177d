/*
 * jscan.c - a JSON well-formedness check that builds nothing, reading a
 * few members on the way. See jscan.h.
 *
 * A recursive-descent walk over the bytes, following jansson's lexer rule
 * for rule so that "parses" means the same thing here and there. What to
 * read is a table of members per object (struct member), each naming
 * where in the caller's output struct its value goes. The chat scan at
 * the end reuses the lexer (strings, numbers, literals) but walks with
 * its own functions, since it checks rules per member and repeated keys.
 */
#include "jscan.h"

#include "request.h" /* the chat limits */

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 2048 /* jansson's JSON_PARSER_MAX_DEPTH */

/* What a member's value is to the caller, and what its target holds. */
enum role {
	R_NUM,      /* struct gw_jscan_num, when the value is a number */
	R_IS_ARRAY, /* bool: the value is an array */
	R_SPAN,     /* struct gw_jscan_span: where the value lies */
	R_OBJECT,   /* bool: the value is an object; its members by inner */
};

struct member {
	const char *name;
	enum role role;
	size_t off;                  /* of the target in the output struct */
	const struct member *inner;  /* R_OBJECT: its members, ending in { NULL } */
};

struct scan {
	const unsigned char *start;
	const unsigned char *p;
	const unsigned char *end;
	unsigned depth;
	void *out;
};

static void skip_ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int hex4(struct scan *s, unsigned *cp)
{
	if (s->end - s->p < 4)
		return -1;
	unsigned v = 0;
	for (int i = 0; i < 4; i++) {
		unsigned char c = s->p[i];
		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned)(c - 'A' + 10);
		else
			return -1;
	}
	s->p += 4;
	*cp = v;
	return 0;
}

/* One UTF-8 sequence starting at s->p (a byte >= 0x80). */
static int utf8_seq(struct scan *s)
{
	unsigned char c = *s->p;
	unsigned n, v;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
		v = c & 0x1F;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		v = c & 0x0F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		v = c & 0x07;
	} else {
		return -1; /* a continuation byte, an overlong lead, or past U+10FFFF */
	}
	if ((size_t)(s->end - s->p) < n)
		return -1;
	for (unsigned i = 1; i < n; i++) {
		unsigned char cc = s->p[i];
		if ((cc & 0xC0) != 0x80)
			return -1;
		v = (v << 6) | (cc & 0x3F);
	}
	if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF) || (n == 3 && v < 0x800) ||
	    (n == 4 && v < 0x10000))
		return -1;
	s->p += n;
	return 0;
}

/* Bytes a string holds as they are: printable ASCII but '"' and '\\'. */
static const bool plain_byte[256] = {
#define R4(b) [b] = 1, [b + 1] = 1, [b + 2] = 1, [b + 3] = 1
#define R8(b) R4(b), R4(b + 4)
	[0x20] = 1, [0x21] = 1, /* '"' is 0x22 */ [0x23] = 1, R4(0x24),
	R8(0x28), R8(0x30), R8(0x38), R8(0x40), R8(0x48), R8(0x50),
	R4(0x58), /* '\\' is 0x5c */ [0x5d] = 1, [0x5e] = 1, [0x5f] = 1,
	R8(0x60), R8(0x68), R8(0x70), R8(0x78),
#undef R8
#undef R4
};

/* A string at s->p (on its opening quote); *plain: no escapes in it. */
static int scan_string(struct scan *s, const unsigned char **start, size_t *len, bool *plain)
{
	s->p++;
	*start = s->p;
	*plain = true;
	while (s->p < s->end) {
		/* Most of a text is printable ASCII other than '"' and '\\':
		 * skip it with a local pointer and a table, one test a byte. */
		const unsigned char *p = s->p, *end = s->end;
		while (p < end && plain_byte[*p])
			p++;
		s->p = p;
		if (p == end)
			break;
		unsigned char c = *p;
		if (c == '"') {
			*len = (size_t)(s->p - *start);
			s->p++;
			return 0;
		}
		if (c == '\\') {
			*plain = false;
			if (++s->p >= s->end)
				return -1;
			c = *s->p++;
			if (c == 'u') {
				unsigned cp, lo;
				if (hex4(s, &cp) < 0 || cp == 0)
					return -1;
				if (cp >= 0xDC00 && cp <= 0xDFFF)
					return -1; /* a low surrogate alone */
				if (cp >= 0xD800 && cp <= 0xDBFF) {
					if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
						return -1;
					s->p += 2;
					if (hex4(s, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF)
						return -1;
				}
			} else if (!strchr("\"\\/bfnrt", c) || c == '\0') {
				return -1;
			}
		} else if (c < 0x20) {
			return -1;
		} else if (c < 0x80) {
			s->p++;
		} else if (utf8_seq(s) < 0) {
			return -1;
		}
	}
	return -1;
}

static bool is_digit(const struct scan *s)
{
	return s->p < s->end && *s->p >= '0' && *s->p <= '9';
}

static int scan_number(struct scan *s, struct gw_jscan_num *num)
{
	const unsigned char *start = s->p;
	bool neg = false;
	uint64_t mag = 0;
	bool overflow = false;
	if (*s->p == '-') {
		neg = true;
		s->p++;
	}
	if (!is_digit(s))
		return -1;
	if (*s->p == '0') {
		s->p++;
		if (is_digit(s))
			return -1;
	} else {
		while (is_digit(s)) {
			unsigned d = (unsigned)(*s->p++ - '0');
			if (mag > (UINT64_MAX - d) / 10)
				overflow = true;
			else
				mag = mag * 10 + d;
		}
	}
	bool integer = true;
	if (s->p < s->end && *s->p == '.') {
		integer = false;
		s->p++;
		if (!is_digit(s))
			return -1;
		while (is_digit(s))
			s->p++;
	}
	if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
		integer = false;
		s->p++;
		if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!is_digit(s))
			return -1;
		while (is_digit(s))
			s->p++;
	}
	struct gw_jscan_num v = { .present = true, .integer = integer };
	if (integer) {
		uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
		if (overflow || mag > limit)
			return -1; /* jansson: "too big integer" */
		v.i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
		v.d = (double)v.i;
	} else {
		/* strtod needs a terminated copy; reals are rare in an answer. */
		size_t n = (size_t)(s->p - start);
		char small[64];
		char *buf = n < sizeof(small) ? small : malloc(n + 1);
		if (!buf)
			return -1;
		memcpy(buf, start, n);
		buf[n] = '\0';
		errno = 0;
		v.d = strtod(buf, NULL);
		bool huge = (v.d == HUGE_VAL || v.d == -HUGE_VAL) && errno == ERANGE;
		if (buf != small)
			free(buf);
		if (huge)
			return -1; /* jansson: "real number overflow" */
	}
	if (num)
		*num = v;
	return 0;
}

static int scan_literal(struct scan *s, const char *word)
{
	size_t n = strlen(word);
	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

/* The next character of a scanned string, escapes decoded; a character
 * past ASCII comes out as 0x80, which no member name we look for holds. */
static unsigned char next_char(const unsigned char **p)
{
	unsigned char c = *(*p)++;
	if (c != '\\')
		return c;
	c = *(*p)++;
	switch (c) {
	case 'b':
		return '\b';
	case 'f':
		return '\f';
	case 'n':
		return '\n';
	case 'r':
		return '\r';
	case 't':
		return '\t';
	case 'u': {
		struct scan hs = { .p = *p, .end = *p + 4 };
		unsigned cp = 0x80;
		hex4(&hs, &cp); /* checked by scan_string already */
		*p += 4;
		return cp < 0x80 ? (unsigned char)cp : 0x80;
	}
	default:
		return c; /* " \ / */
	}
}

static bool key_is(const unsigned char *k, size_t len, bool plain, const char *name)
{
	size_t n = strlen(name);
	if (plain)
		return len == n && memcmp(k, name, len) == 0;
	const unsigned char *p = k, *end = k + len;
	for (size_t i = 0; i < n; i++)
		if (p >= end || next_char(&p) != (unsigned char)name[i])
			return false;
	return p == end;
}

static int scan_value(struct scan *s, const struct member *m);

static void *target(struct scan *s, const struct member *m)
{
	return (char *)s->out + m->off;
}

/* A member seen again counts as its last occurrence: forget the first. */
static void reset(struct scan *s, const struct member *m)
{
	switch (m->role) {
	case R_NUM:
		*(struct gw_jscan_num *)target(s, m) = (struct gw_jscan_num){ 0 };
		break;
	case R_SPAN:
		*(struct gw_jscan_span *)target(s, m) = (struct gw_jscan_span){ 0 };
		break;
	case R_IS_ARRAY:
	case R_OBJECT:
		*(bool *)target(s, m) = false;
		for (const struct member *in = m->role == R_OBJECT ? m->inner : NULL; in && in->name; in++)
			reset(s, in);
		break;
	}
}

static const struct member *find_member(const struct member *table, const unsigned char *k,
					 size_t len, bool plain)
{
	for (; table && table->name; table++)
		if (key_is(k, len, plain, table->name))
			return table;
	return NULL;
}

/* After a member or element: 1 at a comma (another follows), 0 at the
 * closing bracket, -1 at anything else. */
static int after_item(struct scan *s, char close)
{
	skip_ws(s);
	if (s->p < s->end && (*s->p == ',' || *s->p == close))
		return *s->p++ == ',' ? 1 : 0;
	return -1;
}

static int scan_object(struct scan *s, const struct member *table)
{
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		const unsigned char *k;
		size_t klen;
		bool plain;
		skip_ws(s);
		if (s->p >= s->end || *s->p != '"' || scan_string(s, &k, &klen, &plain) < 0)
			return -1;
		skip_ws(s);
		if (s->p >= s->end || *s->p != ':')
			return -1;
		s->p++;
		if (scan_value(s, find_member(table, k, klen, plain)) < 0)
			return -1;
		int more = after_item(s, '}');
		if (more <= 0)
			return more;
	}
}

static int scan_array(struct scan *s)
{
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		if (scan_value(s, NULL) < 0)
			return -1;
		int more = after_item(s, ']');
		if (more <= 0)
			return more;
	}
}

/* One value; m says what to record of it (NULL: nothing). */
static int scan_value(struct scan *s, const struct member *m)
{
	int rc;
	skip_ws(s);
	if (s->p >= s->end || ++s->depth > MAX_DEPTH)
		return -1;
	unsigned char c = *s->p;
	const unsigned char *from = s->p;
	if (m) {
		reset(s, m);
		if (m->role == R_IS_ARRAY || m->role == R_OBJECT)
			*(bool *)target(s, m) = c == (m->role == R_OBJECT ? '{' : '[');
	}

	if (c == '{') {
		rc = scan_object(s, m && m->role == R_OBJECT ? m->inner : NULL);
	} else if (c == '[') {
		rc = scan_array(s);
	} else if (c == '"') {
		const unsigned char *str;
		size_t len;
		bool plain;
		rc = scan_string(s, &str, &len, &plain);
	} else if (c == '-' || (c >= '0' && c <= '9')) {
		rc = scan_number(s, m && m->role == R_NUM ? target(s, m) : NULL);
	} else if (c == 't') {
		rc = scan_literal(s, "true");
	} else if (c == 'f') {
		rc = scan_literal(s, "false");
	} else if (c == 'n') {
		rc = scan_literal(s, "null");
	} else {
		rc = -1;
	}
	if (rc == 0 && m && m->role == R_SPAN)
		*(struct gw_jscan_span *)target(s, m) = (struct gw_jscan_span){
			.object = c == '{',
			.off = (size_t)(from - s->start),
			.len = (size_t)(s->p - from),
		};
	s->depth--;
	return rc;
}

/* Scans a whole text (an object or array at the top) by the member
 * table of root, into out (size bytes, zeroed first and on failure). */
static int scan_text(const char *text, size_t len, const struct member *root, void *out,
		     size_t size)
{
	struct scan s = {
		.start = (const unsigned char *)text,
		.p = (const unsigned char *)text,
		.end = (const unsigned char *)text + len,
		.out = out,
	};
	memset(out, 0, size);
	skip_ws(&s);
	if (s.p >= s.end || (*s.p != '{' && *s.p != '['))
		goto bad;
	if (scan_value(&s, root) < 0)
		goto bad;
	skip_ws(&s);
	if (s.p != s.end)
		goto bad;
	return 0;
bad:
	memset(out, 0, size);
	return -EINVAL;
}

#define ANS(f) offsetof(struct gw_jscan_answer, f)
static const struct member answer_usage[] = {
	{ "prompt_tokens", R_NUM, ANS(prompt_tokens), NULL },
	{ "completion_tokens", R_NUM, ANS(completion_tokens), NULL },
	{ "cost", R_NUM, ANS(cost), NULL },
	{ NULL, R_NUM, 0, NULL },
};
static const struct member answer_top[] = {
	{ "choices", R_IS_ARRAY, ANS(choices_array), NULL },
	{ "usage", R_OBJECT, ANS(usage_object), answer_usage },
	{ NULL, R_NUM, 0, NULL },
};
static const struct member answer_root = { "", R_OBJECT, ANS(object), answer_top };

int gw_jscan_answer(const char *text, size_t len, struct gw_jscan_answer *out)
{
	return scan_text(text, len, &answer_root, out, sizeof(*out));
}

#define ENV(f) offsetof(struct gw_jscan_envelope, f)
static const struct member envelope_usage[] = {
	{ "prompt_tokens", R_NUM, ENV(prompt_tokens), NULL },
	{ "completion_tokens", R_NUM, ENV(completion_tokens), NULL },
	{ NULL, R_NUM, 0, NULL },
};
static const struct member envelope_top[] = {
	{ "v", R_NUM, ENV(v), NULL },
	{ "completion", R_SPAN, ENV(completion), NULL },
	{ "usage", R_OBJECT, ENV(usage_object), envelope_usage },
	{ "cost_pusd", R_NUM, ENV(cost_pusd), NULL },
	{ NULL, R_NUM, 0, NULL },
};
static const struct member envelope_root = { "", R_OBJECT, ENV(object), envelope_top };

int gw_jscan_envelope(const char *text, size_t len, struct gw_jscan_envelope *out)
{
	return scan_text(text, len, &envelope_root, out, sizeof(*out));
}

/* ---------------------------------------------------------------------
 * A chat request: valid, or not sure
 *
 * The rules are request.c's validate(), mirrored member by member; any
 * doubt returns -1, and the caller hands the text to jansson. So a
 * mistake here can only cost speed as long as every accepted text is one
 * validate() accepts too, which is what the unit tests hold it to.
 * ------------------------------------------------------------------- */

/*
 * Past these the scan is not sure rather than growing: repeated keys are
 * found by comparing each key with those before it in its object, which
 * stays cheap only for a few, and jansson's hash copes with the rest.
 */
#define CHAT_MAX_DEPTH 64   /* objects and arrays open at once (jansson: 2048) */
#define CHAT_MAX_KEYS 256   /* keys of all the open objects together */
#define CHAT_MAX_MEMBERS 64 /* keys of one object */

/* A string's bytes in the text, between its quotes. */
struct str {
	const unsigned char *p;
	size_t len;
};

#define STR_IS(v, lit) ((v)->len == sizeof(lit) - 1 && memcmp((v)->p, lit, sizeof(lit) - 1) == 0)

struct chat_scan {
	struct scan s;
	unsigned nkeys;
	struct str keys[CHAT_MAX_KEYS]; /* of the open objects, outermost first */
};

/* Read a value at s.p (past blanks, not at the end): a member's, given
 * its key, or an array element's. */
typedef int (*member_fn)(struct chat_scan *c, const struct str *key, void *ctx);
typedef int (*element_fn)(struct chat_scan *c, void *ctx);

static int chat_value(struct chat_scan *c);

/* A member's key: escape-free, and new in its object (keys[base..]). */
static int chat_key(struct chat_scan *c, unsigned base, struct str *k)
{
	bool plain;
	if (c->s.p >= c->s.end || *c->s.p != '"' || scan_string(&c->s, &k->p, &k->len, &plain) < 0)
		return -1;
	/* An escape can spell one key two ways; jansson compares them decoded. */
	if (!plain || c->nkeys - base >= CHAT_MAX_MEMBERS || c->nkeys >= CHAT_MAX_KEYS)
		return -1;
	for (unsigned i = base; i < c->nkeys; i++)
		if (c->keys[i].len == k->len && memcmp(c->keys[i].p, k->p, k->len) == 0)
			return -1;
	c->keys[c->nkeys++] = *k;
	return 0;
}

/*
 * An object; fn reads each member's value (NULL: any value). A failure
 * ends the whole scan, so what it leaves in c does not matter.
 */
static int chat_object(struct chat_scan *c, member_fn fn, void *ctx)
{
	struct scan *s = &c->s;
	unsigned base = c->nkeys;
	int more = 1;
	if (*s->p != '{' || s->depth >= CHAT_MAX_DEPTH)
		return -1;
	s->depth++;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		more = 0;
	}
	while (more > 0) {
		struct str k;
		skip_ws(s);
		if (chat_key(c, base, &k) < 0)
			return -1;
		skip_ws(s);
		if (s->p >= s->end || *s->p != ':')
			return -1;
		s->p++;
		skip_ws(s);
		if (s->p >= s->end || (fn ? fn(c, &k, ctx) : chat_value(c)) < 0)
			return -1;
		more = after_item(s, '}');
	}
	c->nkeys = base;
	s->depth--;
	return more;
}

/* An array of at most max elements, each read by fn (NULL: any value);
 * *count (when not NULL): how many there were. */
static int chat_array(struct chat_scan *c, element_fn fn, void *ctx, size_t max, size_t *count)
{
	struct scan *s = &c->s;
	size_t n = 0;
	int more = 1;
	if (*s->p != '[' || s->depth >= CHAT_MAX_DEPTH)
		return -1;
	s->depth++;
	s->p++;
	skip_ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		more = 0;
	}
	while (more > 0) {
		skip_ws(s);
		if (++n > max || s->p >= s->end || (fn ? fn(c, ctx) : chat_value(c)) < 0)
			return -1;
		more = after_item(s, ']');
	}
	s->depth--;
	if (count)
		*count = n;
	return more;
}

/* Any value, its objects checked for repeated keys too. */
static int chat_value(struct chat_scan *c)
{
	struct scan *s = &c->s;
	struct str v;
	bool plain;
	switch (*s->p) {
	case '{':
		return chat_object(c, NULL, NULL);
	case '[':
		return chat_array(c, NULL, NULL, SIZE_MAX, NULL);
	case '"':
		return scan_string(s, &v.p, &v.len, &plain);
	case 't':
		return scan_literal(s, "true");
	case 'f':
		return scan_literal(s, "false");
	case 'n':
		return scan_literal(s, "null");
	default:
		return scan_number(s, NULL);
	}
}

static int chat_string(struct chat_scan *c, struct str *v, bool *plain)
{
	return *c->s.p == '"' ? scan_string(&c->s, &v->p, &v->len, plain) : -1;
}

static int chat_null(struct chat_scan *c)
{
	return scan_literal(&c->s, "null");
}

/* true or false, or null when null_ok; *v: it was true. */
static int chat_bool(struct chat_scan *c, bool null_ok, bool *v)
{
	struct scan *s = &c->s;
	*v = *s->p == 't';
	if (*s->p == 't')
		return scan_literal(s, "true");
	if (*s->p == 'f')
		return scan_literal(s, "false");
	return null_ok ? chat_null(c) : -1;
}

/* null, or an integer lo..hi into *v (as validate's check_int). */
static int chat_int(struct chat_scan *c, int64_t lo, int64_t hi, int64_t *v)
{
	struct gw_jscan_num num;
	if (*c->s.p == 'n')
		return chat_null(c);
	if (scan_number(&c->s, &num) < 0 || !num.integer || num.i < lo || num.i > hi)
		return -1;
	*v = num.i;
	return 0;
}

/* null, or a number lo..hi, integer or real (as validate's check_number:
 * both compare the double jansson would hold, made by the same strtod). */
static int chat_real(struct chat_scan *c, double lo, double hi)
{
	struct gw_jscan_num num;
	if (*c->s.p == 'n')
		return chat_null(c);
	if (scan_number(&c->s, &num) < 0 || num.d < lo || num.d > hi)
		return -1;
	return 0;
}

static bool role_known(const struct str *v)
{
	return STR_IS(v, "user") || STR_IS(v, "assistant") || STR_IS(v, "system") ||
	       STR_IS(v, "tool") || STR_IS(v, "developer") || STR_IS(v, "function");
}

/* A content part's members; ctx: a bool, set when "type" is seen. */
static int chat_part_member(struct chat_scan *c, const struct str *k, void *ctx)
{
	struct str v;
	bool plain;
	if (!STR_IS(k, "type"))
		return chat_value(c);
	*(bool *)ctx = true;
	return chat_string(c, &v, &plain);
}

/* A content part: an object with a string "type". */
static int chat_part(struct chat_scan *c, void *ctx)
{
	bool type = false;
	(void)ctx;
	return chat_object(c, chat_part_member, &type) < 0 || !type ? -1 : 0;
}

struct chat_message {
	bool role;    /* seen, and known */
	bool content; /* seen, and a string or an array of parts */
};

static int chat_message_member(struct chat_scan *c, const struct str *k, void *ctx)
{
	struct chat_message *m = ctx;
	struct str v;
	bool plain;
	if (STR_IS(k, "role")) {
		m->role = true;
		return chat_string(c, &v, &plain) < 0 || !plain || !role_known(&v) ? -1 : 0;
	}
	if (STR_IS(k, "content")) {
		/* Not null: whether null content is allowed depends on the
		 * role and tool calls, a rare case left to validate(). */
		m->content = true;
		if (*c->s.p == '[')
			return chat_array(c, chat_part, NULL, SIZE_MAX, NULL);
		return chat_string(c, &v, &plain);
	}
	return chat_value(c);
}

/* A message: an object with a known role and content. */
static int chat_message(struct chat_scan *c, void *ctx)
{
	struct chat_message m = { false, false };
	(void)ctx;
	if (chat_object(c, chat_message_member, &m) < 0 || !m.role || !m.content)
		return -1;
	return 0;
}

static int chat_stop(struct chat_scan *c, void *ctx)
{
	struct str v;
	bool plain;
	(void)ctx;
	return chat_string(c, &v, &plain);
}

/* stream_options' members; ctx: include_usage. */
static int chat_stream_option(struct chat_scan *c, const struct str *k, void *ctx)
{
	if (STR_IS(k, "include_usage"))
		return chat_bool(c, false, ctx);
	return chat_value(c);
}

struct chat_top {
	struct gw_jscan_chat *out;
	bool model;
	bool messages;
	int64_t max_tokens;            /* -1: absent or null */
	int64_t max_completion_tokens; /* -1: absent or null */
};

static int chat_top_member(struct chat_scan *c, const struct str *k, void *ctx)
{
	struct chat_top *t = ctx;
	struct gw_jscan_chat *out = t->out;
	struct scan *s = &c->s;
	struct str v;
	bool plain;
	size_t n;
	int64_t unused;

	if (STR_IS(k, "model")) {
		if (chat_string(c, &v, &plain) < 0 || !plain || v.len == 0 ||
		    v.len > GW_CHAT_MODEL_MAX)
			return -1;
		out->model_off = (size_t)(v.p - s->start);
		out->model_len = v.len;
		t->model = true;
		return 0;
	}
	if (STR_IS(k, "messages")) {
		if (chat_array(c, chat_message, NULL, GW_CHAT_MESSAGES_MAX, &n) < 0 || n == 0)
			return -1;
		out->n_messages = (unsigned)n;
		t->messages = true;
		return 0;
	}
	if (STR_IS(k, "stream"))
		return chat_bool(c, true, &out->stream);
	if (STR_IS(k, "stream_options"))
		return *s->p == 'n' ? chat_null(c)
				    : chat_object(c, chat_stream_option, &out->include_usage);
	if (STR_IS(k, "max_tokens"))
		return chat_int(c, 1, INT32_MAX, &t->max_tokens);
	if (STR_IS(k, "max_completion_tokens"))
		return chat_int(c, 1, INT32_MAX, &t->max_completion_tokens);
	if (STR_IS(k, "n"))
		return chat_int(c, 1, 128, &unused);
	if (STR_IS(k, "temperature"))
		return chat_real(c, 0, 2);
	if (STR_IS(k, "top_p"))
		return chat_real(c, 0, 1);
	if (STR_IS(k, "presence_penalty") || STR_IS(k, "frequency_penalty"))
		return chat_real(c, -2, 2);
	if (STR_IS(k, "stop")) {
		if (*s->p == '[')
			return chat_array(c, chat_stop, NULL, 4, NULL);
		return *s->p == 'n' ? chat_null(c) : chat_string(c, &v, &plain);
	}
	if (STR_IS(k, "tools"))
		return *s->p == 'n' ? chat_null(c) : chat_array(c, NULL, NULL, SIZE_MAX, NULL);
	return chat_value(c);
}

int gw_jscan_chat(const char *text, size_t len, struct gw_jscan_chat *out)
{
	/* keys is not cleared: only the nkeys first are ever read. */
	struct chat_scan c;
	struct chat_top t = { .out = out, .max_tokens = -1, .max_completion_tokens = -1 };
	c.s = (struct scan){
		.start = (const unsigned char *)text,
		.p = (const unsigned char *)text,
		.end = (const unsigned char *)text + len,
	};
	c.nkeys = 0;
	memset(out, 0, sizeof(*out));
	skip_ws(&c.s);
	if (c.s.p >= c.s.end || chat_object(&c, chat_top_member, &t) < 0 || !t.model ||
	    !t.messages)
		return -EINVAL;
	skip_ws(&c.s);
	if (c.s.p != c.s.end)
		return -EINVAL;
	/* As validate(): max_completion_tokens, when given, wins. */
	out->max_tokens = t.max_completion_tokens >= 0 ? t.max_completion_tokens : t.max_tokens;
	return 0;
}
