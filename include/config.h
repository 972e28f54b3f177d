/*
 * config.h - the one validated, immutable configuration of a running llmgw.
 *
 * Sources, lowest precedence first: built-in defaults, the conf file
 * (INI, see conf/llmgw.conf), a .env file, the process environment.
 * A loaded config is never modified; a reload builds a new one and swaps
 * the pointer (gw_config_ref/unref keep an old one alive while jobs that
 * started under it still run).
 */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include "gw.h"

struct gw_provider_conf {
	bool usable;                 /* has an API key: can be tried at all */
	enum gw_dialect dialect;
	char *url;                   /* base URL, no trailing slash */
	char *api_key;               /* NULL when unset; never logged */
	unsigned rpm;                /* requests per minute, >= 1 */
	unsigned burst;              /* bucket size, resolved: >= 1 */
	unsigned concurrent;         /* concurrency slots, >= 1 */
	unsigned timeout_ms;         /* whole upstream call */
	unsigned connect_timeout_ms;
	unsigned cooldown_ms;        /* after a 429 that has no Retry-After */
	bool pass_unknown_models;    /* send models missing from the table as is */
	unsigned max_tokens_default; /* Anthropic requires max_tokens */
	char *referer;               /* OpenRouter HTTP-Referer, or NULL */
	char *title;                 /* OpenRouter X-Title, or NULL */
};

struct gw_model_conf {
	char *name;                      /* what clients send */
	char **aliases;                  /* other names clients may send */
	size_t n_aliases;
	char *upstream[GW_PROV_COUNT];   /* provider's name; NULL: unmapped */
	gw_pusd price_in;                /* per prompt token; -1: unknown */
	gw_pusd price_out;               /* per completion token; -1: unknown */
};

struct gw_service_conf {
	char *name;
	int priority;                /* enum gw_priority, or -1: not set */
	int cache_ttl_s;             /* -1: not set */
	char *model;                 /* default model, or NULL */
	gw_pusd budget_daily;        /* 0: no budget */
	gw_pusd budget_monthly;      /* 0: no budget */
};

/* A gateway key: who may call, and as which services. */
struct gw_key_conf {
	char *name;                  /* [key.NAME]; also the cache scope "k:NAME" */
	unsigned char sha256[32];    /* SHA-256 of the key; the key itself is never stored */
	char **services;             /* services it may book under; n_services 0: any */
	size_t n_services;
	char *default_service;       /* when X-Service-Name is absent; NULL: "default" */
};

struct gw_config {
	char *source;                /* conf file path, or NULL */

	/* [gateway] */
	char *listen_host;
	uint16_t listen_port;
	unsigned workers;            /* resolved: >= 1 */
	unsigned http_threads;       /* HTTP front threads; 0: the workers serve clients */
	size_t max_body_bytes;
	size_t upstream_max_body_bytes;
	unsigned max_connections;
	char *default_model;
	unsigned shutdown_grace_ms;
	enum gw_provider_id order[GW_PROV_COUNT];
	unsigned n_order;
	char *state_dir;

	/* [queue] */
	unsigned queue_max[GW_PRIO_COUNT];
	unsigned deadline_ms[GW_PRIO_COUNT]; /* 0: no default deadline */
	unsigned aging_ms;

	/* [cache] */
	bool cache_enabled;
	char *redis_url;
	unsigned cache_ttl_s;
	enum gw_cache_scope {
		GW_SCOPE_GLOBAL = 0,     /* one answer for everyone */
		GW_SCOPE_SERVICE,        /* services never share answers */
		GW_SCOPE_KEY             /* gateway keys never share answers */
	} cache_scope;

	/* [budget] */
	gw_pusd budget_daily;        /* global, 0: none */
	gw_pusd budget_monthly;
	bool budget_critical_exempt; /* CRITICAL passes a spent budget */
	unsigned budget_alert_percent; /* one alert when spend crosses this share */
	char *budget_webhook_url;    /* alerts are POSTed here too; NULL: none */

	/* [async] */
	unsigned async_retention_s;  /* results kept this long in Redis */

	/* [auth] and [key.NAME] */
	bool auth_enabled;           /* chat requests need a gateway key */
	bool has_admin_key;
	unsigned char admin_sha256[32]; /* /stats, /metrics, /dashboard need this key */
	struct gw_key_conf *keys;
	size_t n_keys;

	struct gw_provider_conf prov[GW_PROV_COUNT];
	struct gw_model_conf *models;
	size_t n_models;
	struct gw_service_conf *services;
	size_t n_services;

	int refs;                    /* private to config.c: atomic refcount */
};

/*
 * Loads a configuration. conf_path may be NULL (then LLMGW_CONFIG is used
 * when set, else defaults only). dotenv_path may be NULL (no .env). Real
 * environment variables win over .env, which wins over the conf file.
 * On error returns NULL and writes "where: reason" into err, where is
 * "path:line" when the error is tied to a line of a file.
 * The result has a reference count of 1.
 */
struct gw_config *gw_config_load(const char *conf_path, const char *dotenv_path,
				 char *err, size_t errlen);

/* Reference counting; both accept NULL. The last unref frees. */
struct gw_config *gw_config_ref(struct gw_config *c);
void gw_config_unref(struct gw_config *c);

/* Model entry by name or alias, or NULL. */
const struct gw_model_conf *gw_config_model(const struct gw_config *c, const char *name);

/* Service entry by name, or NULL. */
const struct gw_service_conf *gw_config_service(const struct gw_config *c, const char *name);

/*
 * Upstream model name for provider p, or NULL when p cannot serve it:
 * the table's mapping when the model is listed, else the name as is when
 * the provider passes unknown models through.
 */
const char *gw_config_map_model(const struct gw_config *c, const char *model,
				enum gw_provider_id p);

/*
 * The gateway key whose SHA-256 matches key (constant-time comparison over
 * every configured key), or NULL.
 */
const struct gw_key_conf *gw_config_key(const struct gw_config *c, const char *key);

/* True when key may book under service (its list, or any when empty). */
bool gw_config_key_allows(const struct gw_key_conf *k, const char *service);

/* True when key is the admin key (constant time). False when none is set. */
bool gw_config_is_admin(const struct gw_config *c, const char *key);

/* True when at least one provider is usable. */
bool gw_config_any_usable(const struct gw_config *c);

/*
 * Parses "<digits>[.<up to 6 digits>]" dollars per million tokens into
 * pico-dollars per token (exact). Returns 0 or -EINVAL.
 */
int gw_config_parse_price(const char *s, gw_pusd *out);

#endif
