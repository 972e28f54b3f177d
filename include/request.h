/*
 * request.h - the client side of the wire: header semantics, the chat
 * request body, and OpenAI-shaped error bodies.
 *
 * A chat body is checked first by a scan that builds nothing
 * (gw_jscan_chat): most bodies pass it, and then no jansson tree exists
 * until someone asks for one (gw_chat_root), which a pass-through OpenAI
 * upstream never does. Anything the scan is not sure of - invalid JSON, a
 * broken rule, an escape in a key, deep nesting - goes to jansson and the
 * full validation, which words every rejection; the scan only ever
 * accepts what that path accepts too.
 */
#ifndef GW_REQUEST_H
#define GW_REQUEST_H

#include "gw.h"

#define GW_SERVICE_MAX 64
#define GW_REQUEST_ID_MAX 64

/* An error answered to the client in the OpenAI shape. */
struct gw_error {
	int status;             /* HTTP status */
	const char *type;       /* "invalid_request_error", ... (static) */
	const char *code;       /* "queue_full", ... or NULL (static) */
	const char *param;      /* offending parameter or header, or NULL (static) */
	int retry_after_s;      /* > 0: send Retry-After */
	bool no_retry;          /* retrying soon cannot help: tell SDKs not to (x-should-retry) */
	char message[512];
};

/* Fills e; message is printf-formatted. */
void gw_error_set(struct gw_error *e, int status, const char *type, const char *code,
		  const char *param, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* The OpenAI error JSON for e, malloc'd, or NULL on allocation failure. */
char *gw_error_body(const struct gw_error *e, size_t *len);

/*
 * Header values. Each returns 0, or -EINVAL after filling err with a 400
 * that names the header and what it accepts.
 */
int gw_hdr_priority(const char *v, enum gw_priority *out, struct gw_error *err);
int gw_hdr_service(const char *v, char out[GW_SERVICE_MAX + 1], struct gw_error *err);
int gw_hdr_request_id(const char *v, char out[GW_REQUEST_ID_MAX + 1], struct gw_error *err);
int gw_hdr_deadline_ms(const char *v, int64_t *out, struct gw_error *err);
int gw_hdr_bool(const char *name, const char *v, bool *out, struct gw_error *err);
int gw_hdr_cache_ttl(const char *v, unsigned *out, struct gw_error *err);
/* Copies a valid X-Cache-Key into out (at most outsize - 1 characters). */
int gw_hdr_cache_key(const char *v, char *out, size_t outsize, struct gw_error *err);

#define GW_CHAT_MODEL_MAX 256      /* bytes of "model" */
#define GW_CHAT_MESSAGES_MAX 10000 /* entries of "messages" */

/*
 * A validated chat completion request. The tree (root) is built on first
 * use, from raw when the caller handed the body over, else from src; after
 * a successful parse and the caller setting raw, at least one of root and
 * raw is present.
 */
struct gw_chat {
	void *root;             /* json_t object, owned; NULL until gw_chat_root builds it */
	char *raw;              /* the body as received, owned, set by the caller after
				 * gw_chat_parse; NULL once the model changed */
	size_t raw_len;
	const char *src;        /* the body gw_chat_parse read, borrowed; NULL once root exists */
	size_t src_len;
	const char *model;      /* model_buf, or into root; valid for the chat's life */
	char model_buf[GW_CHAT_MODEL_MAX + 1];
	bool stream;
	bool include_usage;     /* stream_options.include_usage */
	int64_t max_tokens;     /* -1 when absent */
	unsigned n_messages;
};

/*
 * Parses and validates a chat completion body. On success fills chat
 * (free with gw_chat_free) and returns 0; on failure fills err with a 400
 * and returns -EINVAL. On success the chat may still read body later, to
 * build its tree: keep body alive until you hand it over (chat->raw =
 * body, a malloc'd buffer the chat then frees), or gw_chat_root has been
 * called, or the chat is freed.
 */
int gw_chat_parse(const char *body, size_t len, struct gw_chat *chat, struct gw_error *err);

/*
 * The jansson path alone (json_loadb, then every rule), which gw_chat_parse
 * falls back to; the same contract, but the tree is always built. For the
 * tests that hold the scan to it.
 */
int gw_chat_parse_slow(const char *body, size_t len, struct gw_chat *chat,
		       struct gw_error *err);

/*
 * The request as a json_t object, built from the body on first call and
 * kept in the chat (which is why a const chat will do); NULL when it
 * cannot be built (no memory). The chat still owns it.
 */
void *gw_chat_root(const struct gw_chat *chat);

/* Replaces the model (e.g. "default" resolved) in the tree, which from
 * then on is the request (raw is freed); returns 0 or -ENOMEM. */
int gw_chat_set_model(struct gw_chat *chat, const char *model);

void gw_chat_free(struct gw_chat *chat);

#endif
