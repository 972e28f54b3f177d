/*
 * names.c - the printable names of priorities and providers, shared by the
 * config, the headers, /stats and the logs. Provider names are the ones
 * used in conf section names, model mappings and fallback_order.
 */
#include "gw.h"

#include <string.h>

static const char *const priority_names[GW_PRIO_COUNT] = {
	[GW_PRIO_CRITICAL] = "CRITICAL",
	[GW_PRIO_HIGH] = "HIGH",
	[GW_PRIO_MEDIUM] = "MEDIUM",
	[GW_PRIO_LOW] = "LOW",
};

static const char *const provider_names[GW_PROV_COUNT] = {
	[GW_PROV_OPENROUTER] = "openrouter",
	[GW_PROV_ANTHROPIC] = "anthropic",
	[GW_PROV_OPENAI] = "openai",
};

/* Returns "CRITICAL" .. "LOW", or "UNKNOWN" for a value out of range. */
const char *gw_priority_name(enum gw_priority p)
{
	if ((unsigned)p >= GW_PRIO_COUNT)
		return "UNKNOWN";
	return priority_names[p];
}

/* Returns "openrouter", "anthropic", "openai", or "unknown". */
const char *gw_provider_name(enum gw_provider_id id)
{
	if ((unsigned)id >= GW_PROV_COUNT)
		return "unknown";
	return provider_names[id];
}

/* Exact, lower-case match; returns the id or -1. */
int gw_provider_from_name(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < GW_PROV_COUNT; i++) {
		if (strcmp(name, provider_names[i]) == 0)
			return i;
	}
	return -1;
}
