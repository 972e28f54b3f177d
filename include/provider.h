/*
 * provider.h - provider dialects: build the upstream HTTP request for one
 * attempt and turn the upstream answer into what the client gets (an
 * OpenAI chat.completion body, or an OpenAI-shaped error) plus a verdict
 * for the fallback state machine.
 *
 * These functions do no I/O; the worker owns the transfer.
 */
#ifndef GW_PROVIDER_H
#define GW_PROVIDER_H

#include "config.h"
#include "request.h"

#define GW_UPSTREAM_MAX_HEADERS 8

/* An upstream HTTP request. Everything is owned; free with gw_upstream_req_free. */
struct gw_upstream_req {
	char *url;
	char *headers[GW_UPSTREAM_MAX_HEADERS];  /* "Name: value" */
	size_t n_headers;
	char *body;
	size_t body_len;
};

void gw_upstream_req_free(struct gw_upstream_req *r);

/* Adds "name: value"; -E2BIG past GW_UPSTREAM_MAX_HEADERS, or -ENOMEM. */
int gw_upstream_req_add_header(struct gw_upstream_req *r, const char *name, const char *value);

/* Token usage of one call, and the provider's own cost when it reported one. */
struct gw_usage {
	int64_t prompt_tokens;
	int64_t completion_tokens;
	bool has_cost;
	gw_pusd cost;            /* provider-reported (OpenRouter usage.cost) */
};

/* What an attempt's outcome means for the job. */
enum gw_verdict {
	GW_VERDICT_OK = 0,       /* answer the client with body/status */
	GW_VERDICT_RETRY,        /* try the next provider; reason says why */
	GW_VERDICT_CLIENT_ERROR  /* another provider would refuse too: answer as is */
};

struct gw_up_result {
	enum gw_verdict verdict;
	int status;              /* for the client (OK, CLIENT_ERROR) */
	char *body;              /* owned; OpenAI JSON for the client */
	size_t body_len;
	struct gw_usage usage;
	char reason[160];        /* RETRY: "HTTP 500", "unparseable body", ... */
};

void gw_up_result_free(struct gw_up_result *r);

/*
 * Builds the URL and body of the request for provider pc (speaking dialect
 * pc->dialect) to run chat as upstream_model. Returns 0, or -EINVAL with
 * err filled (a request this dialect cannot express; the caller skips the
 * provider), or -ENOMEM.
 */
int gw_provider_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		      const char *upstream_model, struct gw_upstream_req *out,
		      struct gw_error *err);

/*
 * Adds provider id's request headers (its key, content type, ...) to out.
 * They depend on pc and the provider only, never on a request, so
 * workers build them once per provider and configuration. Returns 0,
 * -E2BIG or -ENOMEM.
 */
int gw_provider_headers(const struct gw_provider_conf *pc, enum gw_provider_id id,
			struct gw_upstream_req *out);

/*
 * Classifies a complete, non-streamed upstream answer. client_model is
 * the model name the client asked for (echoed in the body).
 */
void gw_provider_parse(const struct gw_provider_conf *pc, enum gw_provider_id id,
		       int http_status, const char *body, size_t len, const char *client_model,
		       struct gw_up_result *out);

/* Per-dialect halves, called by the functions above. */
int gw_openai_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		    const char *upstream_model, struct gw_upstream_req *out, struct gw_error *err);
int gw_openai_headers(const struct gw_provider_conf *pc, enum gw_provider_id id,
		      struct gw_upstream_req *out);
void gw_openai_parse(int http_status, const char *body, size_t len, const char *client_model,
		     struct gw_up_result *out);
int gw_anthropic_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		       const char *upstream_model, struct gw_upstream_req *out,
		       struct gw_error *err);
int gw_anthropic_headers(const struct gw_provider_conf *pc, struct gw_upstream_req *out);
void gw_anthropic_parse(int http_status, const char *body, size_t len, const char *client_model,
			struct gw_up_result *out);

/*
 * Anthropic vocabulary shared by the dialect and the stream translator.
 * Both return static strings and accept NULL. finish_reason maps a
 * stop_reason (end_turn, max_tokens, ...) to OpenAI's finish_reason;
 * error_type maps an Anthropic error type (overloaded_error, ...) to the
 * OpenAI error type the client sees.
 */
const char *gw_anthropic_finish_reason(const char *stop_reason);
const char *gw_anthropic_error_type(const char *anthropic_type);

/*
 * Reads an OpenAI usage object (a json_t *) into u: prompt and completion
 * tokens, and OpenRouter's usage.cost in dollars when present. Fields that
 * are missing or out of range are left as they were.
 */
void gw_openai_read_usage(const void *usage_json, struct gw_usage *u);

/* True for statuses that send the job to the next provider. */
bool gw_status_retryable(int status);

#endif
