/*
 * answer.c - cache envelopes and the conversion between a chat.completion
 * and its event-stream form. See answer.h.
 */
#include "answer.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jscan.h"

char *gw_answer_pack(const char *completion, size_t len, const struct gw_usage *u, gw_pusd cost,
		     size_t *outlen)
{
	json_t *c = json_loadb(completion, len, 0, NULL);
	if (!json_is_object(c)) {
		json_decref(c);
		return NULL;
	}
	json_t *env = json_pack("{s:i, s:o, s:{s:I, s:I}, s:I}", "v", 1, "completion", c, "usage",
				"prompt_tokens", (json_int_t)u->prompt_tokens, "completion_tokens",
				(json_int_t)u->completion_tokens, "cost_pusd", (json_int_t)cost);
	char *s = env ? json_dumps(env, JSON_COMPACT) : NULL;
	json_decref(env);
	if (s && outlen)
		*outlen = strlen(s);
	return s;
}

/*
 * Read on every cache hit, so without a jansson tree: the envelope is
 * checked by a scan and the completion's bytes copied out as stored (as
 * gw_answer_pack wrote them, compact).
 */
int gw_answer_unpack(const char *env, size_t len, char **completion, size_t *clen,
		     struct gw_usage *u, gw_pusd *cost)
{
	struct gw_jscan_envelope e;
	if (gw_jscan_envelope(env, len, &e) < 0 || !e.object || !e.v.integer || e.v.i != 1 ||
	    !e.completion.object || !e.usage_object || !e.prompt_tokens.integer ||
	    !e.completion_tokens.integer || !e.cost_pusd.integer || e.prompt_tokens.i < 0 ||
	    e.completion_tokens.i < 0 || e.cost_pusd.i < 0)
		return -EINVAL;
	*completion = malloc(e.completion.len + 1);
	if (!*completion)
		return -ENOMEM;
	memcpy(*completion, env + e.completion.off, e.completion.len);
	(*completion)[e.completion.len] = '\0';
	*clen = e.completion.len;
	memset(u, 0, sizeof(*u));
	u->prompt_tokens = e.prompt_tokens.i;
	u->completion_tokens = e.completion_tokens.i;
	*cost = e.cost_pusd.i;
	return 0;
}

/* Merges one streamed tool-call delta into the assembled list. */
static void merge_tool_call(json_t *calls, json_t *d)
{
	json_t *idx = json_object_get(d, "index");
	size_t i = json_is_integer(idx) ? (size_t)json_integer_value(idx) : 0;
	if (i > 128)
		return;
	while (json_array_size(calls) <= i)
		json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", "", "type",
						       "function", "function", "name", "",
						       "arguments", ""));
	json_t *call = json_array_get(calls, i);
	json_t *fn = json_object_get(call, "function");
	const char *id = json_string_value(json_object_get(d, "id"));
	if (id)
		json_object_set_new(call, "id", json_string(id));
	json_t *dfn = json_object_get(d, "function");
	const char *name = json_string_value(json_object_get(dfn, "name"));
	if (name && name[0])
		json_object_set_new(fn, "name", json_string(name));
	const char *args = json_string_value(json_object_get(dfn, "arguments"));
	if (args && args[0]) {
		const char *old = json_string_value(json_object_get(fn, "arguments"));
		size_t n = strlen(old) + strlen(args);
		char *cat = malloc(n + 1);
		if (!cat)
			return;
		memcpy(cat, old, strlen(old));
		memcpy(cat + strlen(old), args, strlen(args) + 1);
		json_object_set_new(fn, "arguments", json_string(cat));
		free(cat);
	}
}

/* A static copy of a finish reason (the chunk holding it is freed). */
static const char *finish_reason(const char *fr)
{
	static const char *const known[] = { "length", "tool_calls", "content_filter" };
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(fr, known[i]) == 0)
			return known[i];
	return "stop";
}

char *gw_answer_from_sse(const char *sse, size_t len, size_t *outlen)
{
	struct gw_buf text;
	gw_buf_init(&text, len + 1);
	json_t *calls = json_array();
	json_t *usage = NULL, *id = NULL, *model = NULL, *created = NULL;
	const char *finish = NULL;
	bool done = false, bad = false;
	char *result = NULL;

	const char *p = sse, *end = sse + len;
	while (p < end && !done && !bad) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		const char *le = nl ? nl : end;
		if ((size_t)(le - p) > 6 && strncmp(p, "data: ", 6) == 0) {
			const char *d = p + 6;
			size_t dl = (size_t)(le - d);
			if (dl == 6 && strncmp(d, "[DONE]", 6) == 0) {
				done = true;
			} else {
				json_t *ch = json_loadb(d, dl, 0, NULL);
				if (!json_is_object(ch) || json_object_get(ch, "error")) {
					bad = true;
				} else {
					if (!id)
						id = json_incref(json_object_get(ch, "id"));
					if (!model)
						model = json_incref(json_object_get(ch, "model"));
					if (!created)
						created = json_incref(json_object_get(ch, "created"));
					if (json_is_object(json_object_get(ch, "usage"))) {
						json_decref(usage);
						usage = json_incref(json_object_get(ch, "usage"));
					}
					json_t *c0 = json_array_get(json_object_get(ch, "choices"), 0);
					json_t *delta = json_object_get(c0, "delta");
					const char *t = json_string_value(json_object_get(delta, "content"));
					if (t && gw_buf_append(&text, t, strlen(t)) < 0)
						bad = true;
					size_t k;
					json_t *tc;
					json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
						merge_tool_call(calls, tc);
					const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
					if (fr)
						finish = finish_reason(fr);
				}
				json_decref(ch);
			}
		}
		p = nl ? nl + 1 : end;
	}
	if (!done || bad || !finish)
		goto out;
	json_t *msg = json_pack("{s:s, s:o}", "role", "assistant", "content",
				text.len || json_array_size(calls) == 0 ? json_stringn(text.data ? text.data : "", text.len)
									: json_null());
	if (json_array_size(calls))
		json_object_set(msg, "tool_calls", calls);
	json_t *root = json_pack("{s:O, s:s, s:O, s:O, s:[{s:i, s:o, s:s}]}", "id",
				 id ? id : json_string("chatcmpl-cached"), "object", "chat.completion",
				 "created", created ? created : json_integer(0), "model",
				 model ? model : json_string(""), "choices", "index", 0, "message", msg,
				 "finish_reason", finish);
	if (root && usage)
		json_object_set(root, "usage", usage);
	result = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (result && outlen)
		*outlen = strlen(result);
out:
	gw_buf_free(&text);
	json_decref(calls);
	json_decref(usage);
	json_decref(id);
	json_decref(model);
	json_decref(created);
	return result;
}

/* Appends one chunk event with the given choices array and optional usage. */
static int emit_chunk(struct gw_buf *out, json_t *base, json_t *choices, json_t *usage)
{
	json_t *ch = json_copy(base);
	if (!ch)
		return -ENOMEM;
	json_object_set_new(ch, "choices", choices);
	if (usage)
		json_object_set(ch, "usage", usage);
	char *s = json_dumps(ch, JSON_COMPACT);
	json_decref(ch);
	if (!s)
		return -ENOMEM;
	int rc = gw_buf_printf(out, "data: %s\n\n", s);
	free(s);
	return rc;
}

char *gw_answer_to_sse(const char *completion, size_t len, bool include_usage, size_t *outlen)
{
	json_t *root = json_loadb(completion, len, 0, NULL);
	struct gw_buf out;
	gw_buf_init(&out, 4 * len + 4096);
	char *result = NULL;
	json_t *c0 = json_array_get(json_object_get(root, "choices"), 0);
	json_t *msg = json_object_get(c0, "message");
	if (!json_is_object(msg))
		goto out;
	json_t *base = json_pack("{s:O, s:s, s:O, s:O}", "id",
				 json_object_get(root, "id") ? json_object_get(root, "id") : json_string("chatcmpl-cached"),
				 "object", "chat.completion.chunk", "created",
				 json_object_get(root, "created") ? json_object_get(root, "created") : json_integer(0),
				 "model", json_object_get(root, "model") ? json_object_get(root, "model") : json_string(""));
	if (!base)
		goto out;
	int rc = emit_chunk(&out, base,
			    json_pack("[{s:i, s:{s:s, s:s}, s:n}]", "index", 0, "delta", "role",
				      "assistant", "content", "", "finish_reason"),
			    NULL);
	const char *text = json_string_value(json_object_get(msg, "content"));
	if (rc == 0 && text && text[0])
		rc = emit_chunk(&out, base,
				json_pack("[{s:i, s:{s:s}, s:n}]", "index", 0, "delta", "content", text,
					  "finish_reason"),
				NULL);
	json_t *calls = json_object_get(msg, "tool_calls");
	size_t i;
	json_t *call;
	json_array_foreach(calls, i, call) {
		if (rc < 0)
			break;
		json_t *tc = json_deep_copy(call);
		json_object_set_new(tc, "index", json_integer((json_int_t)i));
		rc = emit_chunk(&out, base,
				json_pack("[{s:i, s:{s:[o]}, s:n}]", "index", 0, "delta", "tool_calls",
					  tc, "finish_reason"),
				NULL);
	}
	const char *fr = json_string_value(json_object_get(c0, "finish_reason"));
	if (rc == 0)
		rc = emit_chunk(&out, base,
				json_pack("[{s:i, s:{}, s:s}]", "index", 0, "delta", "finish_reason",
					  fr ? fr : "stop"),
				NULL);
	json_t *usage = json_object_get(root, "usage");
	if (rc == 0 && include_usage && json_is_object(usage))
		rc = emit_chunk(&out, base, json_array(), usage);
	if (rc == 0)
		rc = gw_buf_printf(&out, "data: [DONE]\n\n");
	json_decref(base);
	if (rc == 0)
		result = gw_buf_steal(&out, outlen);
out:
	gw_buf_free(&out);
	json_decref(root);
	return result;
}
