/*
 * provider_openai.c - the OpenAI dialect, spoken by OpenAI and OpenRouter.
 *
 * The client already speaks this dialect, so the request goes upstream as
 * the client sent it with two changes: the provider's model name, and
 * stream_options.include_usage on streams (so usage is always known).
 * The answer goes back as the provider sent it.
 */
#include "provider.h"

#include "jscan.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int gw_openai_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		    const char *upstream_model, struct gw_upstream_req *out, struct gw_error *err)
{
	(void)err;
	int rc = -ENOMEM;
	json_t *root = NULL;
	if (!chat->stream && chat->raw && strcmp(upstream_model, chat->model) == 0) {
		/* The provider takes the request exactly as the client sent it. */
		out->body = malloc(chat->raw_len + 1);
		if (!out->body)
			goto out;
		memcpy(out->body, chat->raw, chat->raw_len);
		out->body[chat->raw_len] = '\0';
		out->body_len = chat->raw_len;
		goto url;
	}
	json_t *orig = gw_chat_root(chat);
	if (!orig)
		goto out;
	root = json_copy(orig); /* shallow: values are shared */
	if (!root)
		goto out;
	if (json_object_set_new(root, "model", json_string(upstream_model)) < 0)
		goto out;
	if (chat->stream) {
		json_t *so = json_object_get(root, "stream_options");
		json_t *nso = json_is_object(so) ? json_copy(so) : json_object();
		if (!nso || json_object_set_new(nso, "include_usage", json_true()) < 0 ||
		    json_object_set_new(root, "stream_options", nso) < 0)
			goto out;
	}
	out->body = json_dumps(root, JSON_COMPACT);
	if (!out->body)
		goto out;
	out->body_len = strlen(out->body);
url:
	if (asprintf(&out->url, "%s/chat/completions", pc->url) < 0) {
		out->url = NULL;
		goto out;
	}
	rc = 0;
out:
	json_decref(root);
	if (rc < 0)
		gw_upstream_req_free(out);
	return rc;
}

int gw_openai_headers(const struct gw_provider_conf *pc, enum gw_provider_id id,
		      struct gw_upstream_req *out)
{
	char auth[1024];
	int rc;
	snprintf(auth, sizeof(auth), "Bearer %s", pc->api_key ? pc->api_key : "");
	if ((rc = gw_upstream_req_add_header(out, "Authorization", auth)) < 0 ||
	    (rc = gw_upstream_req_add_header(out, "Content-Type", "application/json")) < 0)
		return rc;
	if (id == GW_PROV_OPENROUTER) {
		if (pc->referer &&
		    (rc = gw_upstream_req_add_header(out, "HTTP-Referer", pc->referer)) < 0)
			return rc;
		if (pc->title && (rc = gw_upstream_req_add_header(out, "X-Title", pc->title)) < 0)
			return rc;
	}
	return 0;
}

/*
 * The billing rules for an OpenAI usage object, whichever reader found
 * its numbers: token counts are integers >= 0, and a provider's cost a
 * number of dollars in [0, 1e6).
 */
static void usage_from(const struct gw_jscan_num *p, const struct gw_jscan_num *c,
		       const struct gw_jscan_num *cost, struct gw_usage *u)
{
	if (p->integer && p->i >= 0)
		u->prompt_tokens = p->i;
	if (c->integer && c->i >= 0)
		u->completion_tokens = c->i;
	if (cost->present && cost->d >= 0 && cost->d < 1e6) {
		u->has_cost = true;
		u->cost = (gw_pusd)llround(cost->d * (double)GW_PUSD_PER_USD);
	}
}

/* A jansson value in the scanner's terms. */
static struct gw_jscan_num num_of(json_t *v)
{
	struct gw_jscan_num n = { 0 };
	if (json_is_number(v)) {
		n.present = true;
		n.integer = json_is_integer(v);
		n.i = n.integer ? json_integer_value(v) : 0;
		n.d = json_number_value(v);
	}
	return n;
}

void gw_openai_read_usage(const void *usage_json, struct gw_usage *u)
{
	json_t *usage = (json_t *)usage_json;
	if (!json_is_object(usage))
		return;
	struct gw_jscan_num p = num_of(json_object_get(usage, "prompt_tokens"));
	struct gw_jscan_num c = num_of(json_object_get(usage, "completion_tokens"));
	struct gw_jscan_num cost = num_of(json_object_get(usage, "cost"));
	usage_from(&p, &c, &cost, u);
}

/* Short text for the attempt list: the upstream error message if any. */
static void upstream_reason(int status, json_t *root, char *reason, size_t n)
{
	json_t *e = json_object_get(root, "error");
	const char *msg = NULL;
	if (json_is_object(e))
		msg = json_string_value(json_object_get(e, "message"));
	else if (json_is_string(e))
		msg = json_string_value(e);
	if (msg)
		snprintf(reason, n, "HTTP %d (%.100s)", status, msg);
	else
		snprintf(reason, n, "HTTP %d", status);
}

static void wrap_error(struct gw_up_result *out, int status, const char *msg)
{
	json_t *root = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", msg, "type",
				 status == 400 ? "invalid_request_error" : "upstream_error",
				 "param", "code");
	out->body = root ? json_dumps(root, JSON_COMPACT) : NULL;
	out->body_len = out->body ? strlen(out->body) : 0;
	json_decref(root);
}

void gw_openai_parse(int http_status, const char *body, size_t len, const char *client_model,
		     struct gw_up_result *out)
{
	(void)client_model;
	json_t *root = NULL;
	out->status = http_status;
	if (http_status >= 200 && http_status < 300) {
		/* The answer goes back as it came: check it and read its usage
		 * without building it. */
		struct gw_jscan_answer a;
		if (gw_jscan_answer(body, len, &a) < 0 || !a.object || !a.choices_array) {
			out->verdict = GW_VERDICT_RETRY;
			snprintf(out->reason, sizeof(out->reason), "unparseable body");
			goto out;
		}
		usage_from(&a.prompt_tokens, &a.completion_tokens, &a.cost, &out->usage);
		out->verdict = GW_VERDICT_OK;
		out->body = malloc(len + 1);
		if (!out->body) {
			out->verdict = GW_VERDICT_RETRY;
			snprintf(out->reason, sizeof(out->reason), "out of memory");
			goto out;
		}
		memcpy(out->body, body, len);
		out->body[len] = '\0';
		out->body_len = len;
		goto out;
	}
	root = json_loadb(body, len, 0, NULL);
	upstream_reason(http_status, root, out->reason, sizeof(out->reason));
	if (gw_status_retryable(http_status)) {
		out->verdict = GW_VERDICT_RETRY;
		goto out;
	}
	out->verdict = GW_VERDICT_CLIENT_ERROR;
	if (json_is_object(root) && json_is_object(json_object_get(root, "error"))) {
		out->body = json_dumps(root, JSON_COMPACT);
		out->body_len = out->body ? strlen(out->body) : 0;
	} else {
		wrap_error(out, http_status, out->reason);
	}
out:
	json_decref(root);
}
