/*
 * sse.c - the stream translator: reads an upstream server-sent-events
 * stream incrementally and writes the OpenAI chat.completion.chunk stream
 * the client gets, keeping the usage the stream reports for the ledger.
 *
 * Two layers. The SSE layer splits bytes into events (lines end with LF,
 * CRLF or CR; a blank line ends an event; "data:" lines are joined with
 * LF; "event:" names it; comments and other fields are dropped). It holds
 * at most one partial event, bounded by EVENT_MAX, because the upstream
 * controls how much arrives before a blank line. The dialect layer turns
 * each event into zero or more client events.
 *
 * Once the translator failed (-EPROTO, -E2BIG, -ENOMEM) it stays failed:
 * a client that got an error event must get nothing after it. Once the
 * stream completed, further bytes are ignored.
 */
#include "sse.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One event (its data lines as received, plus the line being read) may not
 * exceed this. */
#define EVENT_MAX ((size_t)1 << 20)
/* Event names we act on are short; longer ones match nothing anyway. */
#define EVENT_NAME_MAX 64

struct gw_sse_xlate {
	enum gw_dialect dialect;
	char *model;        /* client's model name, echoed in built chunks */
	char *id;           /* chunk id; Anthropic: NULL until message_start */
	bool include_usage; /* the client asked for the usage chunk */
	int64_t created;    /* one timestamp for every chunk of the stream */

	/* SSE layer */
	struct gw_buf line; /* the current, unterminated line */
	struct gw_buf data; /* the event's data lines, each followed by LF */
	bool has_data;
	size_t ev_bytes; /* raw bytes of the event's data lines so far */
	char event[EVENT_NAME_MAX];
	bool after_cr; /* the last byte was CR: a following LF ends nothing */

	bool complete;
	int err; /* sticky failure, 0 while healthy */
	struct gw_usage usage;

	/* Anthropic dialect */
	bool started;      /* message_start seen: the role chunk went out */
	int64_t in_tokens; /* prompt = input + cache writes + cache reads */
	int64_t cache_write;
	int64_t cache_read;
	int64_t tool_block; /* content block index of the open tool_use, -1: none */
	int tool_index;     /* its index among the tool calls (OpenAI's index) */
	int n_tools;        /* tool_use blocks seen so far */
};

/* ---- output ------------------------------------------------------------ */

/* Appends "data: <compact json>\n\n"; steals j. */
static int emit_json(struct gw_buf *out, json_t *j)
{
	if (!j)
		return -ENOMEM;
	char *s = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	if (!s)
		return -ENOMEM;
	int rc = gw_buf_printf(out, "data: %s\n\n", s);
	free(s);
	return rc;
}

static const char *chunk_id(struct gw_sse_xlate *x)
{
	return x->id ? x->id : "chatcmpl-llmgw";
}

/* Appends one chat.completion.chunk with choice 0; steals delta. */
static int emit_chunk(struct gw_sse_xlate *x, struct gw_buf *out, json_t *delta, const char *finish)
{
	if (!delta)
		return -ENOMEM;
	return emit_json(out, json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:o, s:o}]}", "id",
					chunk_id(x), "object", "chat.completion.chunk", "created",
					(json_int_t)x->created, "model", x->model, "choices",
					"index", 0, "delta", delta, "finish_reason",
					finish ? json_string(finish) : json_null()));
}

/*
 * Ends the stream for the client with one OpenAI-shaped error event and
 * makes the translator fail from now on. Returns code.
 */
static int fail(struct gw_sse_xlate *x, struct gw_buf *out, int code, const char *message,
		const char *type, json_t *ecode, json_t *param)
{
	x->err = code;
	/* Best effort: the caller learns of the failure from code either way. */
	emit_json(out, json_pack("{s:{s:s, s:s, s:o, s:o}}", "error", "message", message, "type",
				 type, "param", param ? param : json_null(), "code",
				 ecode ? ecode : json_null()));
	return code;
}

static int fail_invalid(struct gw_sse_xlate *x, struct gw_buf *out)
{
	return fail(x, out, -EPROTO, "upstream sent an invalid stream", "upstream_error", NULL,
		    NULL);
}

/* ---- OpenAI dialect ---------------------------------------------------- */

/* An upstream error member (object or string) in the OpenAI error shape. */
static int openai_error(struct gw_sse_xlate *x, struct gw_buf *out, json_t *e)
{
	const char *message = json_string_value(e);
	const char *type = NULL;
	json_t *code = NULL, *param = NULL;
	if (json_is_object(e)) {
		json_t *c = json_object_get(e, "code");
		json_t *p = json_object_get(e, "param");
		message = json_string_value(json_object_get(e, "message"));
		type = json_string_value(json_object_get(e, "type"));
		if (json_is_string(c)) {
			code = json_copy(c);
		} else if (json_is_integer(c)) {
			/* OpenRouter sends the HTTP status; SDKs expect a string. */
			char num[24];
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(c));
			code = json_string(num);
		}
		if (json_is_string(p))
			param = json_copy(p);
	}
	return fail(x, out, -EPROTO, message ? message : "upstream error",
		    type ? type : "upstream_error", code, param);
}

static int openai_event(struct gw_sse_xlate *x, const char *d, size_t n, struct gw_buf *out)
{
	if (n == 6 && memcmp(d, "[DONE]", 6) == 0) {
		x->complete = true;
		return gw_buf_append(out, "data: [DONE]\n\n", 14);
	}
	int rc = 0;
	json_t *j = json_loadb(d, n, 0, NULL);
	if (!json_is_object(j)) {
		rc = fail_invalid(x, out);
		goto out;
	}
	json_t *e = json_object_get(j, "error");
	if (e && !json_is_null(e)) {
		rc = openai_error(x, out, e);
		goto out;
	}
	json_t *usage = json_object_get(j, "usage");
	gw_openai_read_usage(usage, &x->usage);
	/* The gateway always asks for usage; the client may not have. */
	bool usage_only =
		json_array_size(json_object_get(j, "choices")) == 0 && json_is_object(usage);
	if (usage_only && !x->include_usage)
		goto out;
	if (memchr(d, '\n', n)) {
		/* Multi-line data would not survive as one data line: re-encode. */
		rc = emit_json(out, json_incref(j));
		goto out;
	}
	rc = gw_buf_append(out, "data: ", 6);
	if (rc == 0)
		rc = gw_buf_append(out, d, n);
	if (rc == 0)
		rc = gw_buf_append(out, "\n\n", 2);
out:
	json_decref(j);
	return rc;
}

/* ---- Anthropic dialect ------------------------------------------------- */

static void anthropic_usage(struct gw_sse_xlate *x, json_t *usage)
{
	json_t *v;
	if (!json_is_object(usage))
		return;
	/* message_delta counts are cumulative, so each value replaces the last. */
	if (json_is_integer(v = json_object_get(usage, "input_tokens")) &&
	    json_integer_value(v) >= 0)
		x->in_tokens = json_integer_value(v);
	if (json_is_integer(v = json_object_get(usage, "cache_creation_input_tokens")) &&
	    json_integer_value(v) >= 0)
		x->cache_write = json_integer_value(v);
	if (json_is_integer(v = json_object_get(usage, "cache_read_input_tokens")) &&
	    json_integer_value(v) >= 0)
		x->cache_read = json_integer_value(v);
	if (json_is_integer(v = json_object_get(usage, "output_tokens")) &&
	    json_integer_value(v) >= 0)
		x->usage.completion_tokens = json_integer_value(v);
	x->usage.prompt_tokens = x->in_tokens + x->cache_write + x->cache_read;
}

static int anthropic_start(struct gw_sse_xlate *x, json_t *j, struct gw_buf *out)
{
	json_t *m = json_object_get(j, "message");
	if (!x->id) {
		const char *mid = json_string_value(json_object_get(m, "id"));
		if (asprintf(&x->id, "chatcmpl-%s", mid ? mid : "llmgw") < 0) {
			x->id = NULL;
			return -ENOMEM;
		}
	}
	anthropic_usage(x, json_object_get(m, "usage"));
	if (x->started)
		return 0;
	x->started = true;
	return emit_chunk(x, out, json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
			  NULL);
}

static int tool_delta(struct gw_sse_xlate *x, struct gw_buf *out, json_t *call)
{
	if (!call)
		return -ENOMEM;
	return emit_chunk(x, out, json_pack("{s:[o]}", "tool_calls", call), NULL);
}

static int anthropic_block_start(struct gw_sse_xlate *x, json_t *j, struct gw_buf *out)
{
	json_t *cb = json_object_get(j, "content_block");
	json_t *idx = json_object_get(j, "index");
	const char *type = json_string_value(json_object_get(cb, "type"));
	x->tool_block = -1;
	if (!type)
		return 0;
	if (strcmp(type, "text") == 0) {
		json_t *t = json_object_get(cb, "text");
		if (json_string_length(t) == 0)
			return 0;
		return emit_chunk(x, out, json_pack("{s:O}", "content", t), NULL);
	}
	if (strcmp(type, "tool_use") != 0)
		return 0; /* thinking and server tools have no chunk twin */
	const char *id = json_string_value(json_object_get(cb, "id"));
	const char *name = json_string_value(json_object_get(cb, "name"));
	json_t *input = json_object_get(cb, "input");
	x->tool_block = json_is_integer(idx) ? json_integer_value(idx) : -1;
	x->tool_index = x->n_tools++;
	/* Input normally streams as input_json_delta after an empty {}. */
	char *args = json_object_size(input) > 0 ? json_dumps(input, JSON_COMPACT) : strdup("");
	if (!args)
		return -ENOMEM;
	json_t *call = json_pack("{s:i, s:s, s:s, s:{s:s, s:s}}", "index", x->tool_index, "id",
				 id ? id : "", "type", "function", "function", "name",
				 name ? name : "", "arguments", args);
	free(args);
	return tool_delta(x, out, call);
}

static int anthropic_block_delta(struct gw_sse_xlate *x, json_t *j, struct gw_buf *out)
{
	json_t *delta = json_object_get(j, "delta");
	json_t *idx = json_object_get(j, "index");
	const char *type = json_string_value(json_object_get(delta, "type"));
	if (!type)
		return 0;
	if (strcmp(type, "text_delta") == 0) {
		json_t *t = json_object_get(delta, "text");
		if (json_string_length(t) == 0)
			return 0;
		return emit_chunk(x, out, json_pack("{s:O}", "content", t), NULL);
	}
	if (strcmp(type, "input_json_delta") == 0) {
		json_t *pj = json_object_get(delta, "partial_json");
		/* Blocks stream one after another, so the open tool block is the
		 * one this delta belongs to; anything else is not a tool call. */
		if (json_string_length(pj) == 0 || x->tool_block < 0 || !json_is_integer(idx) ||
		    json_integer_value(idx) != x->tool_block)
			return 0;
		return tool_delta(x, out,
				  json_pack("{s:i, s:{s:O}}", "index", x->tool_index, "function",
					    "arguments", pj));
	}
	return 0; /* thinking_delta, signature_delta, citations_delta, ... */
}

static int anthropic_message_delta(struct gw_sse_xlate *x, json_t *j, struct gw_buf *out)
{
	anthropic_usage(x, json_object_get(j, "usage"));
	const char *stop =
		json_string_value(json_object_get(json_object_get(j, "delta"), "stop_reason"));
	if (!stop)
		return 0;
	return emit_chunk(x, out, json_object(), gw_anthropic_finish_reason(stop));
}

static int anthropic_stop(struct gw_sse_xlate *x, struct gw_buf *out)
{
	int rc = 0;
	if (x->include_usage) {
		const struct gw_usage *u = &x->usage;
		rc = emit_json(out,
			       json_pack("{s:s, s:s, s:I, s:s, s:[], s:{s:I, s:I, s:I}}", "id",
					 chunk_id(x), "object", "chat.completion.chunk", "created",
					 (json_int_t)x->created, "model", x->model, "choices",
					 "usage", "prompt_tokens", (json_int_t)u->prompt_tokens,
					 "completion_tokens", (json_int_t)u->completion_tokens,
					 "total_tokens",
					 (json_int_t)(u->prompt_tokens + u->completion_tokens)));
		if (rc < 0)
			return rc;
	}
	x->complete = true;
	return gw_buf_append(out, "data: [DONE]\n\n", 14);
}

static int anthropic_error(struct gw_sse_xlate *x, json_t *j, struct gw_buf *out)
{
	json_t *e = json_object_get(j, "error");
	const char *type = json_string_value(json_object_get(e, "type"));
	const char *message = json_string_value(json_object_get(e, "message"));
	return fail(x, out, -EPROTO, message ? message : "upstream error",
		    gw_anthropic_error_type(type), type ? json_string(type) : NULL, NULL);
}

static int anthropic_event(struct gw_sse_xlate *x, const char *d, size_t n, struct gw_buf *out)
{
	int rc = 0;
	json_t *j = json_loadb(d, n, 0, NULL);
	if (!json_is_object(j)) {
		rc = fail_invalid(x, out);
		goto out;
	}
	/* The data names its own type; the event: line is the fallback. */
	const char *type = json_string_value(json_object_get(j, "type"));
	if (!type)
		type = x->event;
	if (strcmp(type, "message_start") == 0)
		rc = anthropic_start(x, j, out);
	else if (strcmp(type, "content_block_start") == 0)
		rc = anthropic_block_start(x, j, out);
	else if (strcmp(type, "content_block_delta") == 0)
		rc = anthropic_block_delta(x, j, out);
	else if (strcmp(type, "content_block_stop") == 0)
		x->tool_block = -1;
	else if (strcmp(type, "message_delta") == 0)
		rc = anthropic_message_delta(x, j, out);
	else if (strcmp(type, "message_stop") == 0)
		rc = anthropic_stop(x, out);
	else if (strcmp(type, "error") == 0)
		rc = anthropic_error(x, j, out);
	/* ping and event types added later carry nothing for the client. */
out:
	json_decref(j);
	return rc;
}

/* ---- SSE layer --------------------------------------------------------- */

/* A blank line: hand the event to the dialect, then start a new one. */
static int dispatch(struct gw_sse_xlate *x, struct gw_buf *out)
{
	int rc = 0;
	if (x->has_data) {
		/* Every data line added an LF; the last one is not part of the data. */
		size_t n = x->data.len - 1;
		if (x->dialect == GW_DIALECT_ANTHROPIC)
			rc = anthropic_event(x, x->data.data, n, out);
		else
			rc = openai_event(x, x->data.data, n, out);
	}
	gw_buf_consume(&x->data, x->data.len);
	x->has_data = false;
	x->ev_bytes = 0;
	x->event[0] = '\0';
	return rc;
}

static int on_line(struct gw_sse_xlate *x, struct gw_buf *out)
{
	const char *l = x->line.data;
	size_t n = x->line.len;
	int rc = 0;
	if (n == 0)
		return dispatch(x, out);
	if (l[0] == ':')
		goto out; /* comment, e.g. OpenRouter's keep-alive */
	const char *colon = memchr(l, ':', n);
	size_t flen = colon ? (size_t)(colon - l) : n;
	const char *v = colon ? colon + 1 : l + n;
	size_t vlen = n - (size_t)(v - l);
	if (vlen > 0 && v[0] == ' ') {
		v++;
		vlen--;
	}
	if (flen == 4 && memcmp(l, "data", 4) == 0) {
		rc = gw_buf_append(&x->data, v, vlen);
		if (rc == 0)
			rc = gw_buf_append(&x->data, "\n", 1);
		x->has_data = true;
		x->ev_bytes += n + 1; /* with its line end */
	} else if (flen == 5 && memcmp(l, "event", 5) == 0) {
		size_t k = vlen < EVENT_NAME_MAX - 1 ? vlen : EVENT_NAME_MAX - 1;
		memcpy(x->event, v, k);
		x->event[k] = '\0';
	}
	/* id: and retry: mean nothing to a translator that never reconnects. */
out:
	gw_buf_consume(&x->line, x->line.len);
	return rc;
}

struct gw_sse_xlate *gw_sse_xlate_new(enum gw_dialect dialect, const char *client_model,
				      const char *id, bool include_usage)
{
	struct gw_sse_xlate *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->dialect = dialect;
	x->include_usage = include_usage;
	x->created = gw_wall_s();
	x->tool_block = -1;
	gw_buf_init(&x->line, EVENT_MAX);
	gw_buf_init(&x->data, EVENT_MAX + 1);
	x->model = strdup(client_model ? client_model : "");
	if (!x->model)
		goto fail;
	if (id && !(x->id = strdup(id)))
		goto fail;
	return x;
fail:
	gw_sse_xlate_free(x);
	return NULL;
}

int gw_sse_xlate_feed(struct gw_sse_xlate *x, const char *data, size_t len, struct gw_buf *out)
{
	if (x->err)
		return x->err;
	size_t i = 0;
	while (i < len && !x->complete) {
		if (x->after_cr) {
			x->after_cr = false;
			if (data[i] == '\n') {
				i++; /* the LF of a CRLF */
				continue;
			}
		}
		size_t j = i;
		while (j < len && data[j] != '\n' && data[j] != '\r')
			j++;
		if (j > i) {
			/* Comments and ignored fields do not count: a keep-alive
			 * that never sends a blank line must not trip the bound. */
			size_t used = x->ev_bytes + x->line.len;
			if (used > EVENT_MAX || j - i > EVENT_MAX - used)
				return fail(x, out, -E2BIG,
					    "upstream sent a stream event over 1 MiB",
					    "upstream_error", NULL, NULL);
			if (gw_buf_append(&x->line, data + i, j - i) < 0)
				return fail(x, out, -ENOMEM, "out of memory", "api_error", NULL,
					    NULL);
		}
		if (j == len)
			break;
		x->after_cr = data[j] == '\r';
		i = j + 1;
		int rc = on_line(x, out);
		if (rc < 0) {
			/* -EPROTO already wrote its error event and set err. */
			if (!x->err)
				x->err = rc;
			return rc;
		}
	}
	return 0;
}

bool gw_sse_xlate_complete(const struct gw_sse_xlate *x)
{
	return x->complete;
}

const struct gw_usage *gw_sse_xlate_usage(const struct gw_sse_xlate *x)
{
	return &x->usage;
}

void gw_sse_xlate_free(struct gw_sse_xlate *x)
{
	if (!x)
		return;
	gw_buf_free(&x->line);
	gw_buf_free(&x->data);
	free(x->model);
	free(x->id);
	free(x);
}
