/*
 * provider_anthropic.c - the Anthropic Messages dialect. Placeholder until
 * the translation lands: the provider is skipped with a clear reason.
 */
#include "provider.h"

#include <errno.h>

int gw_anthropic_build(const struct gw_provider_conf *pc, const struct gw_chat *chat,
		       const char *upstream_model, struct gw_upstream_req *out,
		       struct gw_error *err)
{
	(void)pc;
	(void)chat;
	(void)upstream_model;
	(void)out;
	gw_error_set(err, 400, "invalid_request_error", NULL, NULL,
		     "the Anthropic dialect is not available in this build");
	return -EINVAL;
}

void gw_anthropic_parse(int http_status, const char *body, size_t len, const char *client_model,
			struct gw_up_result *out)
{
	(void)body;
	(void)len;
	(void)client_model;
	out->verdict = GW_VERDICT_RETRY;
	out->status = http_status;
}
