/*
 * request.c - client-side wire rules: header values, the chat request
 * body, and OpenAI-shaped error bodies. Every rejection names what was
 * wrong and what is accepted, so a caller can fix the call without
 * reading our source.
 */
#include "request.h"

#include "jscan.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void gw_error_set(struct gw_error *e, int status, const char *type, const char *code,
		  const char *param, const char *fmt, ...)
{
	va_list ap;
	e->status = status;
	e->type = type;
	e->code = code;
	e->param = param;
	e->retry_after_s = 0;
	e->no_retry = false;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

char *gw_error_body(const struct gw_error *e, size_t *len)
{
	json_t *err = json_pack("{s:s, s:s, s:o, s:o}", "message", e->message, "type",
				e->type ? e->type : "api_error", "param",
				e->param ? json_string(e->param) : json_null(), "code",
				e->code ? json_string(e->code) : json_null());
	if (!err)
		return NULL;
	json_t *root = json_pack("{s:o}", "error", err);
	if (!root)
		return NULL;
	char *s = json_dumps(root, JSON_COMPACT);
	json_decref(root);
	if (s && len)
		*len = strlen(s);
	return s;
}

/* A 400 naming the header, what it accepts, and what was sent. */
static int bad_header(struct gw_error *err, const char *name, const char *accepts, const char *v)
{
	gw_error_set(err, 400, "invalid_request_error", "invalid_header", name,
		     "%s must be %s; got '%.64s'", name, accepts, v);
	return -EINVAL;
}

int gw_hdr_priority(const char *v, enum gw_priority *out, struct gw_error *err)
{
	static const char *const names[] = { "CRITICAL", "HIGH", "MEDIUM", "LOW" };
	for (int i = 0; i < GW_PRIO_COUNT; i++) {
		if (strcasecmp(v, names[i]) == 0) {
			*out = (enum gw_priority)i;
			return 0;
		}
	}
	if (v[0] >= '1' && v[0] <= '4' && v[1] == '\0') {
		*out = (enum gw_priority)(v[0] - '1');
		return 0;
	}
	return bad_header(err, "X-Priority", "CRITICAL, HIGH, MEDIUM or LOW (any case) or 1-4", v);
}

static bool service_char(unsigned char c)
{
	return isalnum(c) || c == '_' || c == '.' || c == '-';
}

int gw_hdr_service(const char *v, char out[GW_SERVICE_MAX + 1], struct gw_error *err)
{
	size_t n = strlen(v);
	if (n == 0 || n > GW_SERVICE_MAX)
		goto bad;
	for (size_t i = 0; i < n; i++)
		if (!service_char((unsigned char)v[i]))
			goto bad;
	memcpy(out, v, n + 1);
	return 0;
bad:
	return bad_header(err, "X-Service-Name", "1-64 characters of A-Z a-z 0-9 _ . -", v);
}

int gw_hdr_request_id(const char *v, char out[GW_REQUEST_ID_MAX + 1], struct gw_error *err)
{
	size_t n = strlen(v);
	if (n == 0 || n > GW_REQUEST_ID_MAX)
		goto bad;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];
		if (!(service_char(c) || c == ':'))
			goto bad;
	}
	memcpy(out, v, n + 1);
	return 0;
bad:
	return bad_header(err, "X-Request-Id", "1-64 characters of A-Z a-z 0-9 _ . - :", v);
}

/* A decimal integer lo..hi, digits only. */
static int bounded_uint(const char *v, unsigned long long lo, unsigned long long hi,
			unsigned long long *out)
{
	char *end;
	errno = 0;
	if (!isdigit((unsigned char)v[0]))
		return -EINVAL;
	unsigned long long x = strtoull(v, &end, 10);
	if (errno || *end != '\0' || x < lo || x > hi)
		return -EINVAL;
	*out = x;
	return 0;
}

int gw_hdr_deadline_ms(const char *v, int64_t *out, struct gw_error *err)
{
	unsigned long long x;
	if (bounded_uint(v, 1, 86400000ULL, &x) < 0)
		return bad_header(err, "X-Deadline-Ms",
				  "an integer number of milliseconds, 1-86400000", v);
	*out = (int64_t)x;
	return 0;
}

int gw_hdr_cache_ttl(const char *v, unsigned *out, struct gw_error *err)
{
	unsigned long long x;
	if (bounded_uint(v, 1, 2592000ULL, &x) < 0)
		return bad_header(err, "X-Cache-TTL", "a number of seconds, 1-2592000", v);
	*out = (unsigned)x;
	return 0;
}

int gw_hdr_cache_key(const char *v, char *out, size_t outsize, struct gw_error *err)
{
	size_t n = strlen(v);
	bool ok = n > 0 && n < outsize;
	for (size_t i = 0; ok && i < n; i++)
		ok = v[i] > 0x20 && v[i] < 0x7f;
	if (!ok) {
		gw_error_set(err, 400, "invalid_request_error", "invalid_header", "X-Cache-Key",
			     "X-Cache-Key must be 1-%zu printable characters without blanks",
			     outsize - 1);
		return -EINVAL;
	}
	memcpy(out, v, n + 1);
	return 0;
}

int gw_hdr_bool(const char *name, const char *v, bool *out, struct gw_error *err)
{
	if (strcasecmp(v, "true") == 0 || strcmp(v, "1") == 0) {
		*out = true;
		return 0;
	}
	if (strcasecmp(v, "false") == 0 || strcmp(v, "0") == 0) {
		*out = false;
		return 0;
	}
	return bad_header(err, name, "true or false", v);
}

static int bad_param(struct gw_error *err, const char *param, const char *msg)
{
	gw_error_set(err, 400, "invalid_request_error", NULL, param, "%s", msg);
	return -EINVAL;
}

static bool role_known(const char *r)
{
	static const char *const roles[] = { "system", "developer", "user",
					     "assistant", "tool", "function" };
	for (size_t i = 0; i < sizeof(roles) / sizeof(roles[0]); i++)
		if (strcmp(r, roles[i]) == 0)
			return true;
	return false;
}

static int check_message(json_t *m, size_t idx, struct gw_error *err)
{
	char where[64];
	if (!json_is_object(m)) {
		snprintf(where, sizeof(where), "messages[%zu]", idx);
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "%s must be an object with 'role' and 'content'", where);
		return -EINVAL;
	}
	json_t *role = json_object_get(m, "role");
	if (!json_is_string(role) || !role_known(json_string_value(role))) {
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "messages[%zu].role must be one of system, developer, user, "
			     "assistant, tool",
			     idx);
		return -EINVAL;
	}
	const char *r = json_string_value(role);
	json_t *content = json_object_get(m, "content");
	bool may_be_empty = strcmp(r, "assistant") == 0 &&
			    (json_object_get(m, "tool_calls") || json_object_get(m, "function_call"));
	if (json_is_string(content))
		return 0;
	if (json_is_array(content)) {
		size_t i;
		json_t *part;
		json_array_foreach(content, i, part) {
			if (!json_is_object(part) || !json_is_string(json_object_get(part, "type"))) {
				gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
					     "messages[%zu].content[%zu] must be an object with a "
					     "'type'",
					     idx, i);
				return -EINVAL;
			}
		}
		return 0;
	}
	if ((content == NULL || json_is_null(content)) && may_be_empty)
		return 0;
	gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
		     "messages[%zu].content must be a string or an array of content parts", idx);
	return -EINVAL;
}

static int check_number(json_t *root, const char *key, double lo, double hi,
			struct gw_error *err)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || json_number_value(v) < lo || json_number_value(v) > hi) {
		gw_error_set(err, 400, "invalid_request_error", NULL, key,
			     "'%s' must be a number from %g to %g", key, lo, hi);
		return -EINVAL;
	}
	return 0;
}

static int check_int(json_t *root, const char *key, json_int_t lo, json_int_t hi,
		     int64_t *out, struct gw_error *err)
{
	json_t *v = json_object_get(root, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
		gw_error_set(err, 400, "invalid_request_error", NULL, key,
			     "'%s' must be an integer from %lld to %lld", key, (long long)lo,
			     (long long)hi);
		return -EINVAL;
	}
	if (out)
		*out = json_integer_value(v);
	return 0;
}

static int validate(json_t *root, struct gw_chat *chat, struct gw_error *err)
{
	if (!json_is_object(root))
		return bad_param(err, NULL, "the request body must be a JSON object");

	json_t *model = json_object_get(root, "model");
	if (!model)
		return bad_param(err, "model", "you must provide a model parameter");
	if (!json_is_string(model) || json_string_length(model) == 0 ||
	    json_string_length(model) > GW_CHAT_MODEL_MAX)
		return bad_param(err, "model", "'model' must be a non-empty string");
	chat->model = json_string_value(model);

	json_t *msgs = json_object_get(root, "messages");
	if (!msgs)
		return bad_param(err, "messages", "you must provide a messages parameter");
	if (!json_is_array(msgs) || json_array_size(msgs) == 0)
		return bad_param(err, "messages", "'messages' must be a non-empty array");
	if (json_array_size(msgs) > GW_CHAT_MESSAGES_MAX)
		return bad_param(err, "messages", "'messages' has more than 10000 entries");
	size_t i;
	json_t *m;
	json_array_foreach(msgs, i, m) {
		if (check_message(m, i, err) < 0)
			return -EINVAL;
	}
	chat->n_messages = (unsigned)json_array_size(msgs);

	json_t *stream = json_object_get(root, "stream");
	if (stream && !json_is_null(stream) && !json_is_boolean(stream))
		return bad_param(err, "stream", "'stream' must be a boolean");
	chat->stream = json_is_true(stream);

	json_t *so = json_object_get(root, "stream_options");
	if (so && !json_is_null(so)) {
		if (!json_is_object(so))
			return bad_param(err, "stream_options", "'stream_options' must be an object");
		json_t *iu = json_object_get(so, "include_usage");
		if (iu && !json_is_boolean(iu))
			return bad_param(err, "stream_options",
					 "'stream_options.include_usage' must be a boolean");
		chat->include_usage = json_is_true(iu);
	}

	chat->max_tokens = -1;
	if (check_int(root, "max_tokens", 1, INT32_MAX, &chat->max_tokens, err) < 0 ||
	    check_int(root, "max_completion_tokens", 1, INT32_MAX, &chat->max_tokens, err) < 0 ||
	    check_int(root, "n", 1, 128, NULL, err) < 0 ||
	    check_number(root, "temperature", 0, 2, err) < 0 ||
	    check_number(root, "top_p", 0, 1, err) < 0 ||
	    check_number(root, "presence_penalty", -2, 2, err) < 0 ||
	    check_number(root, "frequency_penalty", -2, 2, err) < 0)
		return -EINVAL;

	json_t *stop = json_object_get(root, "stop");
	if (stop && !json_is_null(stop) && !json_is_string(stop)) {
		if (!json_is_array(stop) || json_array_size(stop) > 4)
			return bad_param(err, "stop", "'stop' must be a string or up to 4 strings");
		json_t *s;
		json_array_foreach(stop, i, s) {
			if (!json_is_string(s))
				return bad_param(err, "stop",
						 "'stop' must be a string or up to 4 strings");
		}
	}
	json_t *tools = json_object_get(root, "tools");
	if (tools && !json_is_null(tools) && !json_is_array(tools))
		return bad_param(err, "tools", "'tools' must be an array");
	return 0;
}

int gw_chat_parse_slow(const char *body, size_t len, struct gw_chat *chat,
		       struct gw_error *err)
{
	json_error_t jerr;
	memset(chat, 0, sizeof(*chat));
	chat->max_tokens = -1;
	if (len == 0) {
		gw_error_set(err, 400, "invalid_request_error", NULL, NULL,
			     "the request body is empty; send a JSON chat completion request");
		return -EINVAL;
	}
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!root) {
		gw_error_set(err, 400, "invalid_request_error", NULL, NULL,
			     "the request body is not valid JSON: %s (line %d, column %d)",
			     jerr.text, jerr.line, jerr.column);
		return -EINVAL;
	}
	chat->root = root;
	if (validate(root, chat, err) < 0) {
		gw_chat_free(chat);
		return -EINVAL;
	}
	return 0;
}

/*
 * Most bodies are valid and go upstream as they came, so a scan that only
 * says "valid" spares building a tree nobody reads; whatever it is not sure
 * of takes the jansson path, which alone words the errors.
 */
int gw_chat_parse(const char *body, size_t len, struct gw_chat *chat, struct gw_error *err)
{
	struct gw_jscan_chat c;
	if (gw_jscan_chat(body, len, &c) < 0)
		return gw_chat_parse_slow(body, len, chat, err);
	memset(chat, 0, sizeof(*chat));
	/* Copied: body may go once the tree is built; the model may not. */
	memcpy(chat->model_buf, body + c.model_off, c.model_len);
	chat->model_buf[c.model_len] = '\0';
	chat->model = chat->model_buf;
	chat->src = body;
	chat->src_len = len;
	chat->stream = c.stream;
	chat->include_usage = c.include_usage;
	chat->max_tokens = c.max_tokens;
	chat->n_messages = c.n_messages;
	return 0;
}

void *gw_chat_root(const struct gw_chat *chat)
{
	/* A chat belongs to one thread at a time (the front, then a worker,
	 * handed over through a locked queue), so filling in the cache behind
	 * a const pointer races with nobody. */
	struct gw_chat *c = (struct gw_chat *)chat;
	if (c->root)
		return c->root;
	const char *text = c->raw ? c->raw : c->src;
	size_t len = c->raw ? c->raw_len : c->src_len;
	if (!text)
		return NULL;
	/* The scan accepted this text, so only memory can make this fail. */
	c->root = json_loadb(text, len, JSON_REJECT_DUPLICATES, NULL);
	if (c->root) {
		c->src = NULL;
		c->src_len = 0;
	}
	return c->root;
}

int gw_chat_set_model(struct gw_chat *chat, const char *model)
{
	json_t *root = gw_chat_root(chat);
	if (!root || json_object_set_new(root, "model", json_string(model)) < 0)
		return -ENOMEM;
	free(chat->raw);
	chat->raw = NULL;
	chat->raw_len = 0;
	chat->model = json_string_value(json_object_get(root, "model"));
	return 0;
}

void gw_chat_free(struct gw_chat *chat)
{
	if (chat->root)
		json_decref((json_t *)chat->root);
	chat->root = NULL;
	free(chat->raw);
	chat->raw = NULL;
	chat->raw_len = 0;
	chat->src = NULL;
	chat->src_len = 0;
	chat->model = NULL;
}
