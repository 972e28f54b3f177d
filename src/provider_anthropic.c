/*
 * provider_anthropic.c - the Anthropic Messages dialect.
 *
 * The client speaks OpenAI chat completions; Anthropic's Messages API
 * carries the same conversation in another shape. Building translates the
 * request: system and developer messages move to the top-level "system",
 * content parts become content blocks, tool calls and tool results become
 * tool_use and tool_result blocks, and consecutive turns of one role are
 * merged because Anthropic wants user and assistant turns to alternate.
 * Parsing translates the answer back into a chat.completion, or an
 * Anthropic error into the OpenAI error shape.
 *
 * A request this dialect cannot express faithfully (an audio part, a
 * legacy function call, n > 1, ...) fails the build with -EINVAL so the
 * worker skips this provider instead of sending something else than what
 * the client asked for. docs/streaming.md lists what is translated, what
 * is dropped and what is refused.
 */
#include "provider.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "buf.h"

#define ANTHROPIC_VERSION "2023-06-01"

/* The joined system text; the request body bound keeps it far smaller. */
#define SYSTEM_MAX ((size_t)64 << 20)

/* Image types the Messages API accepts in base64 sources. */
static const char *const image_types[] = { "image/jpeg", "image/png", "image/gif", "image/webp" };

const char *gw_anthropic_finish_reason(const char *stop_reason)
{
	if (!stop_reason)
		return "stop";
	if (strcmp(stop_reason, "max_tokens") == 0)
		return "length";
	if (strcmp(stop_reason, "tool_use") == 0)
		return "tool_calls";
	/* A refusal is the model declining on policy grounds: OpenAI's word
	 * for that outcome is content_filter. */
	if (strcmp(stop_reason, "refusal") == 0)
		return "content_filter";
	/* end_turn, stop_sequence, pause_turn and anything newer. */
	return "stop";
}

const char *gw_anthropic_error_type(const char *anthropic_type)
{
	static const struct {
		const char *anthropic;
		const char *openai;
	} map[] = {
		{ "invalid_request_error", "invalid_request_error" },
		/* A body over Anthropic's size limit is a fault of the request. */
		{ "request_too_large", "invalid_request_error" },
		{ "authentication_error", "authentication_error" },
		{ "permission_error", "permission_error" },
		{ "not_found_error", "not_found_error" },
		{ "rate_limit_error", "rate_limit_exceeded" },
	};
	if (!anthropic_type)
		return "api_error";
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(anthropic_type, map[i].anthropic) == 0)
			return map[i].openai;
	return "api_error";
}

/* ---- request translation ---------------------------------------------- */

/*
 * How many bytes of s (n long) to print so that at most max are printed
 * and a multi-byte UTF-8 character is never cut: the text ends up in JSON
 * error bodies, which must stay valid UTF-8.
 */
static int utf8_cut(const char *s, size_t n, size_t max)
{
	if (n <= max)
		return (int)n;
	while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
		max--;
	return (int)max;
}

static int refuse(struct gw_error *err, const char *param, const char *msg)
{
	gw_error_set(err, 400, "invalid_request_error", NULL, param, "%s", msg);
	return -EINVAL;
}

/* Appends one text block; empty text is skipped because the Messages API
 * rejects empty text blocks. */
static int add_text(json_t *blocks, json_t *text)
{
	if (json_string_length(text) == 0)
		return 0;
	json_t *b = json_pack("{s:s, s:O}", "type", "text", "text", text);
	if (!b || json_array_append_new(blocks, b) < 0)
		return -ENOMEM;
	return 0;
}

static bool image_type(const char *s, size_t n, const char **canonical)
{
	for (size_t i = 0; i < sizeof(image_types) / sizeof(image_types[0]); i++) {
		if (strlen(image_types[i]) == n && strncasecmp(s, image_types[i], n) == 0) {
			*canonical = image_types[i];
			return true;
		}
	}
	return false;
}

/*
 * An image_url part: a base64 data URL becomes a base64 source, an
 * http(s) URL a url source (Anthropic fetches it). Anything else cannot
 * be expressed.
 */
static int add_image(json_t *blocks, json_t *part, size_t mi, size_t pi, struct gw_error *err)
{
	json_t *iu = json_object_get(part, "image_url");
	const char *url = json_is_string(iu) ? json_string_value(iu)
					     : json_string_value(json_object_get(iu, "url"));
	json_t *b = NULL;
	if (!url) {
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "messages[%zu].content[%zu].image_url.url must be a string", mi, pi);
		return -EINVAL;
	}
	if (strncasecmp(url, "data:", 5) == 0) {
		/* data:<media type>[;param...];base64,<data> */
		const char *mt = url + 5;
		const char *comma = strchr(mt, ',');
		size_t hlen = comma ? (size_t)(comma - mt) : 0;
		if (!comma || hlen < 7 || strncasecmp(comma - 7, ";base64", 7) != 0 ||
		    comma[1] == '\0') {
			gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
				     "messages[%zu].content[%zu]: the Anthropic dialect takes "
				     "only base64 data URLs (data:image/png;base64,...)",
				     mi, pi);
			return -EINVAL;
		}
		size_t mtlen = strcspn(mt, ";,");
		const char *canonical;
		if (!image_type(mt, mtlen, &canonical)) {
			gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
				     "messages[%zu].content[%zu]: image type '%.*s' is not "
				     "supported by the Anthropic dialect (image/jpeg, image/png, "
				     "image/gif, image/webp)",
				     mi, pi, utf8_cut(mt, mtlen, 64), mt);
			return -EINVAL;
		}
		b = json_pack("{s:s, s:{s:s, s:s, s:s}}", "type", "image", "source", "type",
			      "base64", "media_type", canonical, "data", comma + 1);
	} else if (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0) {
		b = json_pack("{s:s, s:{s:s, s:s}}", "type", "image", "source", "type", "url",
			      "url", url);
	} else {
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "messages[%zu].content[%zu]: image URLs must be http(s) or base64 "
			     "data URLs",
			     mi, pi);
		return -EINVAL;
	}
	if (!b || json_array_append_new(blocks, b) < 0)
		return -ENOMEM;
	return 0;
}

/*
 * Appends the blocks for one OpenAI content value (string, array of
 * parts, or null). images says whether image_url parts are allowed here.
 */
static int add_content(json_t *blocks, json_t *content, size_t mi, bool images,
		       struct gw_error *err)
{
	if (!content || json_is_null(content))
		return 0;
	if (json_is_string(content))
		return add_text(blocks, content);
	if (!json_is_array(content)) {
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "messages[%zu].content must be a string or an array of parts", mi);
		return -EINVAL;
	}
	size_t pi;
	json_t *part;
	json_array_foreach(content, pi, part)
	{
		const char *type = json_string_value(json_object_get(part, "type"));
		int rc;
		if (type && strcmp(type, "text") == 0) {
			json_t *text = json_object_get(part, "text");
			if (!json_is_string(text)) {
				gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
					     "messages[%zu].content[%zu].text must be a string", mi,
					     pi);
				return -EINVAL;
			}
			rc = add_text(blocks, text);
		} else if (type && images && strcmp(type, "image_url") == 0) {
			rc = add_image(blocks, part, mi, pi, err);
		} else {
			gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
				     "messages[%zu].content[%zu]: content part type '%.*s' is not "
				     "supported by the Anthropic dialect",
				     mi, pi, type ? utf8_cut(type, strlen(type), 40) : 6,
				     type ? type : "(none)");
			return -EINVAL;
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Appends system or developer text to the joined system prompt. */
static int add_system_text(struct gw_buf *sys, json_t *text)
{
	size_t n = json_string_length(text);
	if (n == 0)
		return 0;
	if (sys->len > 0 && gw_buf_append(sys, "\n\n", 2) < 0)
		return -ENOMEM;
	return gw_buf_append(sys, json_string_value(text), n) < 0 ? -ENOMEM : 0;
}

static int add_system(struct gw_buf *sys, json_t *content, size_t mi, struct gw_error *err)
{
	if (!content || json_is_null(content))
		return 0;
	if (json_is_string(content))
		return add_system_text(sys, content);
	if (json_is_array(content)) {
		size_t pi;
		json_t *part;
		json_array_foreach(content, pi, part)
		{
			const char *type = json_string_value(json_object_get(part, "type"));
			json_t *text = json_object_get(part, "text");
			if (!type || strcmp(type, "text") != 0 || !json_is_string(text)) {
				gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
					     "messages[%zu].content[%zu]: system and developer "
					     "messages may hold only text parts with the Anthropic "
					     "dialect",
					     mi, pi);
				return -EINVAL;
			}
			int rc = add_system_text(sys, text);
			if (rc < 0)
				return rc;
		}
		return 0;
	}
	gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
		     "messages[%zu].content must be a string or an array of parts", mi);
	return -EINVAL;
}

/* An assistant message's tool_calls become tool_use blocks. */
static int add_tool_calls(json_t *blocks, json_t *calls, size_t mi, struct gw_error *err)
{
	if (!calls || json_is_null(calls))
		return 0;
	if (!json_is_array(calls))
		return refuse(err, "messages", "tool_calls must be an array");
	size_t ci;
	json_t *call;
	json_array_foreach(calls, ci, call)
	{
		json_t *fn = json_object_get(call, "function");
		const char *type = json_string_value(json_object_get(call, "type"));
		const char *id = json_string_value(json_object_get(call, "id"));
		const char *name = json_string_value(json_object_get(fn, "name"));
		json_t *args = json_object_get(fn, "arguments");
		if ((type && strcmp(type, "function") != 0) || !id || !name ||
		    (args && !json_is_string(args))) {
			gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
				     "messages[%zu].tool_calls[%zu] must be a function call with "
				     "id, function.name and function.arguments (a string)",
				     mi, ci);
			return -EINVAL;
		}
		json_t *input;
		const char *a = args ? json_string_value(args) : "";
		if (a[strspn(a, " \t\r\n")] == '\0') {
			/* No arguments at all: a tool that takes none. */
			input = json_object();
		} else {
			input = json_loadb(a, json_string_length(args), 0, NULL);
			if (!json_is_object(input)) {
				json_decref(input);
				gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
					     "messages[%zu].tool_calls[%zu].function.arguments is "
					     "not a JSON object; the Anthropic dialect needs one",
					     mi, ci);
				return -EINVAL;
			}
		}
		if (!input)
			return -ENOMEM;
		json_t *b = json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", id, "name",
				      name, "input", input);
		if (!b || json_array_append_new(blocks, b) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* A tool message becomes a tool_result block (sent in a user turn). */
static int add_tool_result(json_t *blocks, json_t *m, size_t mi, struct gw_error *err)
{
	const char *id = json_string_value(json_object_get(m, "tool_call_id"));
	if (!id) {
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "messages[%zu].tool_call_id must be a string", mi);
		return -EINVAL;
	}
	json_t *b = json_pack("{s:s, s:s}", "type", "tool_result", "tool_use_id", id);
	if (!b)
		return -ENOMEM;
	int rc = 0;
	json_t *content = json_object_get(m, "content");
	json_t *value = NULL;
	if (json_is_string(content)) {
		if (json_string_length(content) > 0)
			value = json_incref(content);
	} else if (json_is_array(content)) {
		/* Text parts stay separate text blocks: no separator is invented. */
		value = json_array();
		if (!value) {
			rc = -ENOMEM;
			goto out;
		}
		rc = add_content(value, content, mi, false, err);
		if (rc < 0)
			goto out;
		if (json_array_size(value) == 0) {
			json_decref(value);
			value = NULL;
		}
	} else if (content && !json_is_null(content)) {
		gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
			     "messages[%zu].content must be a string or an array of parts", mi);
		rc = -EINVAL;
		goto out;
	}
	if (value && json_object_set_new(b, "content", value) < 0) {
		value = NULL;
		rc = -ENOMEM;
		goto out;
	}
	value = NULL;
	if (json_array_append(blocks, b) < 0)
		rc = -ENOMEM;
out:
	json_decref(value);
	json_decref(b);
	return rc;
}

/*
 * Adds one turn's blocks to the Messages list, merging with the previous
 * turn when it has the same role. A turn with no blocks adds nothing.
 */
static int push_turn(json_t *msgs, const char *role, json_t *blocks)
{
	if (json_array_size(blocks) == 0)
		return 0;
	size_t n = json_array_size(msgs);
	json_t *last = n ? json_array_get(msgs, n - 1) : NULL;
	if (last && strcmp(json_string_value(json_object_get(last, "role")), role) == 0)
		return json_array_extend(json_object_get(last, "content"), blocks) < 0 ? -ENOMEM
										       : 0;
	json_t *turn = json_pack("{s:s, s:O}", "role", role, "content", blocks);
	if (!turn || json_array_append_new(msgs, turn) < 0)
		return -ENOMEM;
	return 0;
}

static int translate_messages(json_t *src, json_t *msgs, struct gw_buf *sys, struct gw_error *err)
{
	size_t mi;
	json_t *m;
	int rc = 0;
	json_array_foreach(src, mi, m)
	{
		const char *role = json_string_value(json_object_get(m, "role"));
		json_t *content = json_object_get(m, "content");
		if (!role)
			return refuse(err, "messages", "every message needs a role");
		if (strcmp(role, "system") == 0 || strcmp(role, "developer") == 0) {
			rc = add_system(sys, content, mi, err);
			if (rc < 0)
				return rc;
			continue;
		}
		const char *turn_role;
		json_t *blocks = json_array();
		if (!blocks)
			return -ENOMEM;
		if (strcmp(role, "user") == 0) {
			turn_role = "user";
			rc = add_content(blocks, content, mi, true, err);
		} else if (strcmp(role, "assistant") == 0) {
			turn_role = "assistant";
			if (json_object_get(m, "function_call")) {
				rc = refuse(
					err, "messages",
					"legacy function_call messages are not supported by the "
					"Anthropic dialect; use tool_calls");
			} else {
				rc = add_content(blocks, content, mi, false, err);
				if (rc == 0)
					rc = add_tool_calls(
						blocks, json_object_get(m, "tool_calls"), mi, err);
			}
		} else if (strcmp(role, "tool") == 0) {
			/* Anthropic carries tool results in the user's turn. */
			turn_role = "user";
			rc = add_tool_result(blocks, m, mi, err);
		} else {
			turn_role = "user";
			gw_error_set(err, 400, "invalid_request_error", NULL, "messages",
				     "messages[%zu]: role '%.*s' is not supported by the Anthropic "
				     "dialect",
				     mi, utf8_cut(role, strlen(role), 20), role);
			rc = -EINVAL;
		}
		if (rc == 0)
			rc = push_turn(msgs, turn_role, blocks);
		json_decref(blocks);
		if (rc < 0)
			return rc;
	}
	if (json_array_size(msgs) == 0)
		return refuse(err, "messages",
			      "Anthropic needs at least one non-empty user message");
	const char *first = json_string_value(json_object_get(json_array_get(msgs, 0), "role"));
	if (strcmp(first, "user") != 0)
		return refuse(err, "messages",
			      "Anthropic needs the first non-system message to be from the user");
	return 0;
}

static int translate_tools(json_t *root, json_t *req, struct gw_error *err)
{
	json_t *tools = json_object_get(root, "tools");
	json_t *choice = json_object_get(root, "tool_choice");
	json_t *parallel = json_object_get(root, "parallel_tool_calls");
	if (!json_is_array(tools) || json_array_size(tools) == 0)
		return 0; /* tool_choice without tools has nothing to steer */

	json_t *tc = NULL;
	if (json_is_string(choice)) {
		const char *c = json_string_value(choice);
		if (strcmp(c, "none") == 0)
			return 0; /* no tool may be called: send none */
		if (strcmp(c, "auto") == 0)
			tc = json_pack("{s:s}", "type", "auto");
		else if (strcmp(c, "required") == 0)
			tc = json_pack("{s:s}", "type", "any");
		else
			return refuse(err, "tool_choice",
				      "tool_choice must be none, auto, required or a function");
		if (!tc)
			return -ENOMEM;
	} else if (json_is_object(choice)) {
		const char *type = json_string_value(json_object_get(choice, "type"));
		const char *name = json_string_value(
			json_object_get(json_object_get(choice, "function"), "name"));
		if (!type || strcmp(type, "function") != 0 || !name)
			return refuse(err, "tool_choice",
				      "tool_choice must be none, auto, required or "
				      "{\"type\":\"function\",\"function\":{\"name\":...}}");
		tc = json_pack("{s:s, s:s}", "type", "tool", "name", name);
		if (!tc)
			return -ENOMEM;
	} else if (choice && !json_is_null(choice)) {
		return refuse(err, "tool_choice",
			      "tool_choice must be none, auto, required or a function");
	}

	int rc = -ENOMEM;
	json_t *out = json_array();
	if (!out)
		goto out;
	size_t i;
	json_t *t;
	json_array_foreach(tools, i, t)
	{
		json_t *fn = json_object_get(t, "function");
		const char *type = json_string_value(json_object_get(t, "type"));
		const char *name = json_string_value(json_object_get(fn, "name"));
		json_t *desc = json_object_get(fn, "description");
		json_t *params = json_object_get(fn, "parameters");
		if (!type || strcmp(type, "function") != 0 || !name) {
			gw_error_set(err, 400, "invalid_request_error", NULL, "tools",
				     "tools[%zu]: the Anthropic dialect takes only function tools "
				     "with a name",
				     i);
			rc = -EINVAL;
			goto out;
		}
		json_t *a = json_pack("{s:s}", "name", name);
		if (!a || json_array_append_new(out, a) < 0)
			goto out;
		if (json_is_string(desc) && json_object_set(a, "description", desc) < 0)
			goto out;
		json_t *schema = json_is_object(params) ? json_incref(params)
							: json_pack("{s:s}", "type", "object");
		if (!schema || json_object_set_new(a, "input_schema", schema) < 0)
			goto out;
	}
	/* parallel_tool_calls:false is Anthropic's disable_parallel_tool_use. */
	if (json_is_false(parallel)) {
		if (!tc && !(tc = json_pack("{s:s}", "type", "auto")))
			goto out;
		if (json_object_set_new(tc, "disable_parallel_tool_use", json_true()) < 0)
			goto out;
	}
	if (json_object_set(req, "tools", out) < 0)
		goto out;
	if (tc && json_object_set(req, "tool_choice", tc) < 0)
		goto out;
	rc = 0;
out:
	json_decref(out);
	json_decref(tc);
	return rc;
}

/* The sampling and bookkeeping parameters that have an Anthropic twin. */
static int translate_params(const struct gw_provider_conf *pc, json_t *root, json_t *req,
			    struct gw_error *err)
{
	json_t *v;
	json_int_t max_tokens = pc->max_tokens_default ? pc->max_tokens_default : 4096;
	/* max_completion_tokens is the newer name and wins, as in request.c. */
	v = json_object_get(root, "max_completion_tokens");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		v = json_object_get(root, "max_tokens");
	if (json_is_integer(v) && json_integer_value(v) > 0)
		max_tokens = json_integer_value(v);
	if (json_object_set_new(req, "max_tokens", json_integer(max_tokens)) < 0)
		return -ENOMEM;

	v = json_object_get(root, "n");
	if (json_is_integer(v) && json_integer_value(v) > 1)
		return refuse(err, "n", "the Anthropic dialect returns one choice only (n > 1)");

	v = json_object_get(root, "temperature");
	if (json_is_number(v)) {
		/* OpenAI allows 0..2, Anthropic 0..1: clamp, keep the low end. */
		double t = json_number_value(v);
		t = t < 0 ? 0 : t > 1 ? 1 : t;
		if (json_object_set_new(req, "temperature", json_real(t)) < 0)
			return -ENOMEM;
	}
	v = json_object_get(root, "top_p");
	if (json_is_number(v) && json_object_set(req, "top_p", v) < 0)
		return -ENOMEM;

	v = json_object_get(root, "stop");
	json_t *stops = json_array();
	if (!stops)
		return -ENOMEM;
	if (json_is_string(v) && json_string_length(v) > 0 && json_array_append(stops, v) < 0)
		goto nomem;
	if (json_is_array(v)) {
		size_t i;
		json_t *s;
		json_array_foreach(v, i, s)
		{
			if (json_is_string(s) && json_string_length(s) > 0 &&
			    json_array_append(stops, s) < 0)
				goto nomem;
		}
	}
	if (json_array_size(stops) > 0 && json_object_set(req, "stop_sequences", stops) < 0)
		goto nomem;
	json_decref(stops);

	if (json_is_true(json_object_get(root, "stream")) &&
	    json_object_set_new(req, "stream", json_true()) < 0)
		return -ENOMEM;

	v = json_object_get(root, "user");
	if (json_is_string(v) && json_string_length(v) > 0) {
		json_t *md = json_pack("{s:O}", "user_id", v);
		if (!md || json_object_set_new(req, "metadata", md) < 0)
			return -ENOMEM;
	}
	return 0;
nomem:
	json_decref(stops);
	return -ENOMEM;
}

int gw_anthropic_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		       const char *upstream_model, struct gw_upstream_req *out,
		       struct gw_error *err)
{
	int rc = -ENOMEM;
	json_t *root = gw_chat_root(chat);
	struct gw_buf sys;
	gw_buf_init(&sys, SYSTEM_MAX);
	json_t *msgs = json_array();
	json_t *req = json_object();
	if (!root || !msgs || !req)
		goto out;
	if (json_object_set_new(req, "model", json_string(upstream_model)) < 0)
		goto out;
	rc = translate_messages(json_object_get(root, "messages"), msgs, &sys, err);
	if (rc < 0)
		goto out;
	rc = -ENOMEM;
	if (sys.len > 0 && json_object_set_new(req, "system", json_stringn(sys.data, sys.len)) < 0)
		goto out;
	if (json_object_set(req, "messages", msgs) < 0)
		goto out;
	rc = translate_params(pc, root, req, err);
	if (rc < 0)
		goto out;
	rc = translate_tools(root, req, err);
	if (rc < 0)
		goto out;

	rc = -ENOMEM;
	out->body = json_dumps(req, JSON_COMPACT);
	if (!out->body)
		goto out;
	out->body_len = strlen(out->body);
	if (asprintf(&out->url, "%s/v1/messages", pc->url) < 0) {
		out->url = NULL;
		goto out;
	}
	rc = 0;
out:
	gw_buf_free(&sys);
	json_decref(msgs);
	json_decref(req);
	if (rc < 0)
		gw_upstream_req_free(out);
	return rc;
}

int gw_anthropic_headers(const struct gw_provider_conf *pc, struct gw_upstream_req *out)
{
	int rc;
	if ((rc = gw_upstream_req_add_header(out, "x-api-key", pc->api_key ? pc->api_key : "")) < 0 ||
	    (rc = gw_upstream_req_add_header(out, "anthropic-version", ANTHROPIC_VERSION)) < 0 ||
	    (rc = gw_upstream_req_add_header(out, "content-type", "application/json")) < 0)
		return rc;
	return 0;
}

/* ---- answer translation ----------------------------------------------- */

static json_int_t usage_field(json_t *usage, const char *key)
{
	json_t *v = json_object_get(usage, key);
	return json_is_integer(v) && json_integer_value(v) > 0 ? json_integer_value(v) : 0;
}

/*
 * Turns a Messages answer into a chat.completion body. Returns 0, -EINVAL
 * when root is not a message, or -ENOMEM.
 */
static int to_completion(json_t *root, size_t len, const char *client_model,
			 struct gw_up_result *out)
{
	json_t *content = json_object_get(root, "content");
	const char *type = json_string_value(json_object_get(root, "type"));
	if (!json_is_object(root) || !json_is_array(content) ||
	    (type && strcmp(type, "message") != 0))
		return -EINVAL;
	const char *id = json_string_value(json_object_get(root, "id"));
	const char *stop = json_string_value(json_object_get(root, "stop_reason"));
	json_t *usage = json_object_get(root, "usage");

	int rc = -ENOMEM;
	struct gw_buf text;
	gw_buf_init(&text, len + 1); /* the text came out of the body */
	bool has_text = false;
	json_t *calls = json_array();
	json_t *msg = NULL, *res = NULL;
	if (!calls)
		goto out;
	size_t i;
	json_t *b;
	json_array_foreach(content, i, b)
	{
		const char *bt = json_string_value(json_object_get(b, "type"));
		if (!bt)
			continue;
		if (strcmp(bt, "text") == 0) {
			json_t *t = json_object_get(b, "text");
			if (!json_is_string(t))
				continue;
			has_text = true;
			if (gw_buf_append(&text, json_string_value(t), json_string_length(t)) < 0)
				goto out;
		} else if (strcmp(bt, "tool_use") == 0) {
			const char *tid = json_string_value(json_object_get(b, "id"));
			const char *name = json_string_value(json_object_get(b, "name"));
			json_t *input = json_object_get(b, "input");
			if (!tid || !name) {
				rc = -EINVAL;
				goto out;
			}
			char *args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY)
					   : strdup("{}");
			if (!args)
				goto out;
			json_t *c =
				json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", tid, "type", "function",
					  "function", "name", name, "arguments", args);
			free(args);
			if (!c || json_array_append_new(calls, c) < 0)
				goto out;
		}
		/* thinking and server-tool blocks have no chat.completion twin. */
	}

	out->usage.prompt_tokens = usage_field(usage, "input_tokens") +
				   usage_field(usage, "cache_creation_input_tokens") +
				   usage_field(usage, "cache_read_input_tokens");
	out->usage.completion_tokens = usage_field(usage, "output_tokens");

	msg = json_pack("{s:s, s:o}", "role", "assistant", "content",
			has_text ? json_stringn(text.data ? text.data : "", text.len)
				 : json_null());
	if (!msg)
		goto out;
	if (json_array_size(calls) > 0 && json_object_set(msg, "tool_calls", calls) < 0)
		goto out;
	res = json_pack("{s:s, s:s, s:I, s:s, s:[{s:i, s:O, s:s}], s:{s:I, s:I, s:I}}", "id",
			id ? id : "chatcmpl-anthropic", "object", "chat.completion", "created",
			(json_int_t)gw_wall_s(), "model", client_model ? client_model : "",
			"choices", "index", 0, "message", msg, "finish_reason",
			gw_anthropic_finish_reason(stop), "usage", "prompt_tokens",
			(json_int_t)out->usage.prompt_tokens, "completion_tokens",
			(json_int_t)out->usage.completion_tokens, "total_tokens",
			(json_int_t)(out->usage.prompt_tokens + out->usage.completion_tokens));
	if (!res)
		goto out;
	out->body = json_dumps(res, JSON_COMPACT);
	if (!out->body)
		goto out;
	out->body_len = strlen(out->body);
	rc = 0;
out:
	gw_buf_free(&text);
	json_decref(calls);
	json_decref(msg);
	json_decref(res);
	return rc;
}

void gw_anthropic_parse(int http_status, const char *body, size_t len, const char *client_model,
			struct gw_up_result *out)
{
	memset(out, 0, sizeof(*out));
	out->status = http_status;
	json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
	json_t *res = NULL;

	if (http_status >= 200 && http_status < 300) {
		int rc = to_completion(root, len, client_model, out);
		if (rc == 0) {
			out->verdict = GW_VERDICT_OK;
			out->status = 200;
		} else {
			out->verdict = GW_VERDICT_RETRY;
			memset(&out->usage, 0, sizeof(out->usage));
			snprintf(out->reason, sizeof(out->reason), "%s",
				 rc == -ENOMEM ? "out of memory" : "unparseable body");
		}
		goto out;
	}

	/* {"type":"error","error":{"type":"overloaded_error","message":"..."}} */
	json_t *e = json_object_get(root, "error");
	const char *etype = json_string_value(json_object_get(e, "type"));
	const char *msg = json_string_value(json_object_get(e, "message"));
	if (msg)
		snprintf(out->reason, sizeof(out->reason), "HTTP %d (%.*s)", http_status,
			 utf8_cut(msg, strlen(msg), 100), msg);
	else
		snprintf(out->reason, sizeof(out->reason), "HTTP %d", http_status);
	if (gw_status_retryable(http_status)) {
		out->verdict = GW_VERDICT_RETRY;
		goto out;
	}
	out->verdict = GW_VERDICT_CLIENT_ERROR;
	const char *otype;
	if (etype)
		otype = gw_anthropic_error_type(etype);
	else if (http_status == 400 || http_status == 413 || http_status == 415 ||
		 http_status == 422)
		otype = "invalid_request_error";
	else
		otype = "api_error";
	res = json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", msg ? msg : out->reason,
			"type", otype, "param", "code", etype ? json_string(etype) : json_null());
	out->body = res ? json_dumps(res, JSON_COMPACT) : NULL;
	out->body_len = out->body ? strlen(out->body) : 0;
out:
	json_decref(res);
	json_decref(root);
}
