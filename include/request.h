/*
 * request.h - the client side of the wire: header semantics, the chat
 * request body (parsed and validated with jansson), and OpenAI-shaped
 * error bodies.
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

/* A validated chat completion request. */
struct gw_chat {
	void *root;             /* json_t object, owned */
	char *raw;              /* the body as received, owned; NULL once the model changed */
	size_t raw_len;
	const char *model;      /* points into root */
	bool stream;
	bool include_usage;     /* stream_options.include_usage */
	int64_t max_tokens;     /* -1 when absent */
	unsigned n_messages;
};

/*
 * Parses and validates a chat completion body. On success fills chat
 * (free with gw_chat_free) and returns 0; on failure fills err with a 400
 * and returns -EINVAL.
 */
int gw_chat_parse(const char *body, size_t len, struct gw_chat *chat, struct gw_error *err);

/* Replaces the model (e.g. "default" resolved); returns 0 or -ENOMEM. */
int gw_chat_set_model(struct gw_chat *chat, const char *model);

void gw_chat_free(struct gw_chat *chat);

#endif
