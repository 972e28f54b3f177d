/*
 * provider.c - dialect dispatch and the parts every dialect shares:
 * which statuses fall back, and freeing requests and results.
 */
#include "provider.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_upstream_req_free(struct gw_upstream_req *r)
{
	free(r->url);
	for (size_t i = 0; i < r->n_headers; i++)
		free(r->headers[i]);
	free(r->body);
	memset(r, 0, sizeof(*r));
}

int gw_upstream_req_add_header(struct gw_upstream_req *r, const char *name, const char *value)
{
	if (r->n_headers >= GW_UPSTREAM_MAX_HEADERS)
		return -E2BIG;
	char *h;
	if (asprintf(&h, "%s: %s", name, value) < 0)
		return -ENOMEM;
	r->headers[r->n_headers++] = h;
	return 0;
}

void gw_up_result_free(struct gw_up_result *r)
{
	free(r->body);
	r->body = NULL;
	r->body_len = 0;
}

bool gw_status_retryable(int status)
{
	/*
	 * 400, 413, 415 and 422 describe the request itself: every provider
	 * would refuse it, so it goes back to the client. Auth and not-found
	 * errors are about this provider's key or catalogue, so the next
	 * provider may well succeed.
	 */
	switch (status) {
	case 400:
	case 413:
	case 415:
	case 422:
		return false;
	default:
		return status == 401 || status == 403 || status == 404 || status == 408 ||
		       status == 409 || status == 429 || status >= 500;
	}
}

int gw_provider_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		      const char *upstream_model, struct gw_upstream_req *out,
		      struct gw_error *err)
{
	memset(out, 0, sizeof(*out));
	if (pc->dialect == GW_DIALECT_ANTHROPIC)
		return gw_anthropic_build(pc, chat, upstream_model, out, err);
	return gw_openai_build(pc, chat, upstream_model, out, err);
}

int gw_provider_headers(const struct gw_provider_conf *pc, enum gw_provider_id id,
			struct gw_upstream_req *out)
{
	if (pc->dialect == GW_DIALECT_ANTHROPIC)
		return gw_anthropic_headers(pc, out);
	return gw_openai_headers(pc, id, out);
}

void gw_provider_parse(const struct gw_provider_conf *pc, enum gw_provider_id id,
		       int http_status, const char *body, size_t len, const char *client_model,
		       struct gw_up_result *out)
{
	(void)id;
	memset(out, 0, sizeof(*out));
	if (pc->dialect == GW_DIALECT_ANTHROPIC)
		gw_anthropic_parse(http_status, body, len, client_model, out);
	else
		gw_openai_parse(http_status, body, len, client_model, out);
}
