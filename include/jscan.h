/*
 * jscan.h - checks a JSON text without building it, and reads the few
 * values the gateway needs of it: the usage an OpenAI-dialect answer is
 * billed by, the parts of a cached answer's envelope, and whether a chat
 * request is valid (with the fields request.c keeps of it).
 *
 * A non-streamed OpenAI answer goes back to the client byte for byte, and
 * a cached one as it was stored, so building a tree of them (an
 * allocation per value, a copy of every string) only to read three
 * numbers costs more than the rest of the request's handling. The scan
 * accepts exactly the texts jansson's json_loadb accepts with flags 0
 * (RFC 8259 with a top-level object or array, UTF-8 checked, no "\u0000",
 * integers within int64, reals that do not overflow, nesting up to 2048
 * values deep), which the unit tests check against jansson itself.
 *
 * The chat scan is narrower on purpose: it answers "valid" or "not sure",
 * never "invalid". It says "valid" only when jansson with
 * JSON_REJECT_DUPLICATES would load the text and request.c's rules would
 * pass it; for anything it does not handle cheaply (an escape in a key,
 * an object of many members, deep nesting, any broken rule) it says "not
 * sure" and the caller asks jansson, whose answer words the error.
 */
#ifndef GW_JSCAN_H
#define GW_JSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A member's scalar value, when it was a number. */
struct gw_jscan_num {
	bool present;      /* the member exists and is a number */
	bool integer;      /* written without fraction or exponent */
	int64_t i;         /* when integer */
	double d;          /* always */
};

struct gw_jscan_answer {
	bool object;                 /* the top-level value is an object */
	bool choices_array;          /* its "choices" member is an array */
	bool usage_object;           /* its "usage" member is an object */
	struct gw_jscan_num prompt_tokens;     /* usage.prompt_tokens */
	struct gw_jscan_num completion_tokens; /* usage.completion_tokens */
	struct gw_jscan_num cost;              /* usage.cost */
};

/*
 * Scans text[0..len). Returns 0 and fills *out when the text is a
 * well-formed JSON document; -EINVAL otherwise. A repeated member counts
 * as its last occurrence, as in jansson.
 */
int gw_jscan_answer(const char *text, size_t len, struct gw_jscan_answer *out);

/* Where a member's value lies in the text. */
struct gw_jscan_span {
	bool object;       /* the member exists and its value is an object */
	size_t off;        /* of its first byte */
	size_t len;
};

/* The members of answer.c's cache envelope. */
struct gw_jscan_envelope {
	bool object;                  /* the top-level value is an object */
	struct gw_jscan_num v;
	struct gw_jscan_span completion;
	bool usage_object;
	struct gw_jscan_num prompt_tokens;     /* usage.prompt_tokens */
	struct gw_jscan_num completion_tokens; /* usage.completion_tokens */
	struct gw_jscan_num cost_pusd;
};

/* The same check for a cache envelope; the completion's bytes are left
 * where they are, text + completion.off. */
int gw_jscan_envelope(const char *text, size_t len, struct gw_jscan_envelope *out);

/* What request.c keeps of a chat request the scan found valid. */
struct gw_jscan_chat {
	size_t model_off;       /* "model": its bytes, text + model_off, no escapes */
	size_t model_len;       /* 1..GW_CHAT_MODEL_MAX */
	bool stream;
	bool include_usage;     /* stream_options.include_usage */
	int64_t max_tokens;     /* max_completion_tokens, else max_tokens, else -1 */
	unsigned n_messages;
};

/*
 * Scans a chat completion request. Returns 0 and fills *out when the text
 * is valid JSON with no member repeated in any object and passes every
 * rule of request.c's validate(); -EINVAL when not sure (which includes
 * every invalid text, and some valid ones).
 */
int gw_jscan_chat(const char *text, size_t len, struct gw_jscan_chat *out);

#endif
