/*
 * check_config.c - unit tests of the configuration loader (src/config.c)
 * and the shared names (src/names.c): defaults, the shipped conf file,
 * precedence of the conf file, .env and the environment, error messages
 * with file:line, value parsing (prices, budgets, decimal seconds), model
 * mapping, and gateway keys (hashes, lookup, services, the admin key).
 *
 * Every test starts from an environment without any variable the loader
 * reads (checked fixture), so tests are independent in fork and no-fork
 * mode. Temporary files are made with mkstemp and removed by the test.
 */
#include "config.h"

#include <check.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef LLMGW_SRCDIR
#define LLMGW_SRCDIR "."
#endif

Suite *config_suite(void);

#define USD(x) ((gw_pusd)(x) * GW_PUSD_PER_USD)

/* What `printf %s KEY | sha256sum` prints for the keys the tests use. */
#define H_ALPHA "677509799af78b2efa2f2af71d0f906e0a0c50c048efd3b515625f788e92b99a"
#define H_BETA_UPPER "7A3D637BC601F7000CC2C33141C8C8A7554E02E319FA8B293A0C88C613B77620"
#define H_GAMMA "36c2c0e2d54b8df7e21c9f9afc50a206f2595fc23531fe933e4788e699e0e59d"
#define H_ADMIN "69a5265506c94c77b787a7d7377b7685a0eff82e33920a71e7ee22cd6154953e"
#define H_EMPTY "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const char *const env_vars[] = {
	"OPENROUTER_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY",
	"LLM_DEFAULT_MODEL", "LLM_ENABLE_CACHE",
	"OPENROUTER_RPM", "ANTHROPIC_RPM", "OPENAI_RPM",
	"OPENROUTER_CONCURRENT", "ANTHROPIC_CONCURRENT", "OPENAI_CONCURRENT",
	"OPENROUTER_TIMEOUT", "ANTHROPIC_TIMEOUT", "OPENAI_TIMEOUT",
	"LLMGW_CONFIG", "LLMGW_LISTEN", "LLMGW_REDIS_URL", "LLMGW_WORKERS", "LLMGW_HTTP_THREADS",
	"LLMGW_OPENROUTER_URL", "LLMGW_ANTHROPIC_URL", "LLMGW_OPENAI_URL",
	"LLMGW_STATE_DIR", "STATE_DIRECTORY", "LLMGW_ADMIN_KEY",
};

static void clear_env(void)
{
	for (size_t i = 0; i < sizeof(env_vars) / sizeof(env_vars[0]); i++)
		unsetenv(env_vars[i]);
}

/* Temporary files of the running test, removed by rm_tmp(). */
static char tmp_paths[4][64];
static int n_tmp;

static const char *write_tmp(const char *content)
{
	char *path;
	int fd;
	size_t len = strlen(content);

	ck_assert_int_lt(n_tmp, 4);
	path = tmp_paths[n_tmp++];
	snprintf(path, sizeof(tmp_paths[0]), "/tmp/check_config_XXXXXX");
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, content, len), (ssize_t)len);
	close(fd);
	return path;
}

static void rm_tmp(void)
{
	for (int i = 0; i < n_tmp; i++)
		unlink(tmp_paths[i]);
	n_tmp = 0;
}

/* Loads conf text (NULL: no file) and .env text (NULL: no file). */
static struct gw_config *load_text(const char *conf, const char *dotenv, char *err, size_t errlen,
				   const char **conf_path, const char **env_path)
{
	const char *cp = conf ? write_tmp(conf) : NULL;
	const char *ep = dotenv ? write_tmp(dotenv) : NULL;

	if (conf_path)
		*conf_path = cp;
	if (env_path)
		*env_path = ep;
	return gw_config_load(cp, ep, err, errlen);
}

static struct gw_config *load_ok(const char *conf, const char *dotenv)
{
	char err[512] = "";
	struct gw_config *c = load_text(conf, dotenv, err, sizeof(err), NULL, NULL);

	ck_assert_msg(c != NULL, "load failed: %s", err);
	ck_assert_str_eq(err, "");
	return c;
}

/* Expects the load to fail with "<conf path>:<line>: <msg>" exactly. */
static void expect_conf_error(const char *conf, int line, const char *msg)
{
	char err[512], want[512];
	const char *path;
	struct gw_config *c = load_text(conf, NULL, err, sizeof(err), &path, NULL);

	ck_assert_msg(c == NULL, "conf loaded but should fail: %s", conf);
	snprintf(want, sizeof(want), "%s:%d: %s", path, line, msg);
	ck_assert_str_eq(err, want);
	rm_tmp();
}

static void expect_env_error(const char *var, const char *value, const char *msg)
{
	char err[512], want[512];

	setenv(var, value, 1);
	ck_assert_ptr_null(gw_config_load(NULL, NULL, err, sizeof(err)));
	snprintf(want, sizeof(want), "environment: %s: %s", var, msg);
	ck_assert_str_eq(err, want);
	unsetenv(var);
}

/* ------------------------------------------------------------------ */

START_TEST(test_defaults_without_file)
{
	struct gw_config *c = load_ok(NULL, NULL);
	static const unsigned qmax[GW_PRIO_COUNT] = { 1000, 1000, 1000, 1000 };
	static const unsigned dl[GW_PRIO_COUNT] = { 30000, 60000, 120000, 600000 };

	ck_assert_ptr_null(c->source);
	ck_assert_str_eq(c->listen_host, "127.0.0.1");
	ck_assert_uint_eq(c->listen_port, 8400);
	ck_assert_uint_ge(c->workers, 1);
	ck_assert_uint_eq(c->workers, (unsigned)(sysconf(_SC_NPROCESSORS_ONLN) > 1024 ? 1024
				: sysconf(_SC_NPROCESSORS_ONLN)));
	ck_assert_uint_eq(c->http_threads, 0);
	ck_assert_uint_eq(c->max_body_bytes, 1048576);
	ck_assert_uint_eq(c->upstream_max_body_bytes, 8388608);
	ck_assert_uint_eq(c->max_connections, 10000);
	ck_assert_str_eq(c->default_model, "openai/gpt-4o-mini");
	ck_assert_uint_eq(c->shutdown_grace_ms, 30000);
	ck_assert_uint_eq(c->n_order, 3);
	ck_assert_int_eq(c->order[0], GW_PROV_OPENROUTER);
	ck_assert_int_eq(c->order[1], GW_PROV_ANTHROPIC);
	ck_assert_int_eq(c->order[2], GW_PROV_OPENAI);
	ck_assert_str_eq(c->state_dir, "./state");
	for (int i = 0; i < GW_PRIO_COUNT; i++) {
		ck_assert_uint_eq(c->queue_max[i], qmax[i]);
		ck_assert_uint_eq(c->deadline_ms[i], dl[i]);
	}
	ck_assert_uint_eq(c->aging_ms, 10000);
	ck_assert(c->cache_enabled);
	ck_assert_str_eq(c->redis_url, "redis://127.0.0.1:6379/0");
	ck_assert_uint_eq(c->cache_ttl_s, 300);
	ck_assert_int_eq(c->budget_daily, 0);
	ck_assert_int_eq(c->budget_monthly, 0);
	ck_assert_uint_eq(c->async_retention_s, 3600);
	ck_assert(!c->auth_enabled);
	ck_assert(!c->has_admin_key);
	ck_assert_uint_eq(c->n_keys, 0);
	ck_assert_ptr_null(c->keys);

	ck_assert_str_eq(c->prov[GW_PROV_OPENROUTER].url, "https://openrouter.ai/api/v1");
	ck_assert_str_eq(c->prov[GW_PROV_ANTHROPIC].url, "https://api.anthropic.com");
	ck_assert_str_eq(c->prov[GW_PROV_OPENAI].url, "https://api.openai.com/v1");
	ck_assert(c->prov[GW_PROV_OPENROUTER].pass_unknown_models);
	ck_assert(!c->prov[GW_PROV_ANTHROPIC].pass_unknown_models);
	ck_assert(!c->prov[GW_PROV_OPENAI].pass_unknown_models);
	ck_assert_int_eq(c->prov[GW_PROV_ANTHROPIC].dialect, GW_DIALECT_ANTHROPIC);
	ck_assert_int_eq(c->prov[GW_PROV_OPENAI].dialect, GW_DIALECT_OPENAI);
	ck_assert_int_eq(c->prov[GW_PROV_OPENROUTER].dialect, GW_DIALECT_OPENAI);
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		const struct gw_provider_conf *pc = &c->prov[p];
		ck_assert(!pc->usable);
		ck_assert_ptr_null(pc->api_key);
		ck_assert_uint_eq(pc->rpm, 60);
		ck_assert_uint_eq(pc->burst, 1);
		ck_assert_uint_eq(pc->concurrent, 3);
		ck_assert_uint_eq(pc->timeout_ms, 120000);
		ck_assert_uint_eq(pc->connect_timeout_ms, 5000);
		ck_assert_uint_eq(pc->cooldown_ms, 5000);
		ck_assert_uint_eq(pc->max_tokens_default, 4096);
		ck_assert_ptr_null(pc->referer);
		ck_assert_ptr_null(pc->title);
	}
	ck_assert(!gw_config_any_usable(c));

	/* the pricing reference of DESIGN.md is built in */
	ck_assert_uint_eq(c->n_models, 5);
	ck_assert_int_eq(gw_config_model(c, "openai/gpt-4o-mini")->price_in, 150000);
	ck_assert_int_eq(gw_config_model(c, "openai/gpt-4o-mini")->price_out, 600000);
	ck_assert_int_eq(gw_config_model(c, "openai/gpt-4o")->price_in, 2500000);
	ck_assert_int_eq(gw_config_model(c, "openai/gpt-4o")->price_out, 10000000);
	ck_assert_int_eq(gw_config_model(c, "anthropic/claude-3-haiku")->price_in, 250000);
	ck_assert_int_eq(gw_config_model(c, "anthropic/claude-3-haiku")->price_out, 1250000);
	ck_assert_int_eq(gw_config_model(c, "anthropic/claude-3.5-sonnet")->price_in, 3000000);
	ck_assert_int_eq(gw_config_model(c, "anthropic/claude-3.5-sonnet")->price_out, 15000000);
	ck_assert_int_eq(gw_config_model(c, "meta-llama/llama-3.1-70b")->price_in, 350000);
	ck_assert_int_eq(gw_config_model(c, "meta-llama/llama-3.1-70b")->price_out, 400000);
	ck_assert_uint_eq(c->n_services, 0);
	gw_config_unref(c);
}
END_TEST

/* The shipped file loads and restates every built-in default. */
START_TEST(test_shipped_conf)
{
	char err[512];
	struct gw_config *d = load_ok(NULL, NULL);
	struct gw_config *c = gw_config_load(LLMGW_SRCDIR "/conf/llmgw.conf", NULL, err, sizeof(err));
	const struct gw_service_conf *s;

	ck_assert_msg(c != NULL, "%s", err);
	ck_assert_str_eq(c->source, LLMGW_SRCDIR "/conf/llmgw.conf");
	ck_assert_str_eq(c->listen_host, d->listen_host);
	ck_assert_uint_eq(c->listen_port, d->listen_port);
	ck_assert_uint_eq(c->workers, d->workers);
	ck_assert_uint_eq(c->http_threads, d->http_threads);
	ck_assert_uint_eq(c->max_body_bytes, d->max_body_bytes);
	ck_assert_uint_eq(c->upstream_max_body_bytes, d->upstream_max_body_bytes);
	ck_assert_uint_eq(c->max_connections, d->max_connections);
	ck_assert_str_eq(c->default_model, d->default_model);
	ck_assert_uint_eq(c->shutdown_grace_ms, d->shutdown_grace_ms);
	ck_assert_mem_eq(c->order, d->order, sizeof(c->order));
	ck_assert_uint_eq(c->n_order, d->n_order);
	ck_assert_str_eq(c->state_dir, d->state_dir);
	ck_assert_mem_eq(c->queue_max, d->queue_max, sizeof(c->queue_max));
	ck_assert_mem_eq(c->deadline_ms, d->deadline_ms, sizeof(c->deadline_ms));
	ck_assert_uint_eq(c->aging_ms, d->aging_ms);
	ck_assert_int_eq(c->cache_enabled, d->cache_enabled);
	ck_assert_str_eq(c->redis_url, d->redis_url);
	ck_assert_uint_eq(c->cache_ttl_s, d->cache_ttl_s);
	ck_assert_int_eq(c->budget_daily, d->budget_daily);
	ck_assert_int_eq(c->budget_monthly, d->budget_monthly);
	ck_assert_int_eq(c->budget_critical_exempt, d->budget_critical_exempt);
	ck_assert_uint_eq(c->budget_alert_percent, d->budget_alert_percent);
	ck_assert_ptr_null(c->budget_webhook_url);
	ck_assert_ptr_null(d->budget_webhook_url);
	ck_assert_uint_eq(c->async_retention_s, d->async_retention_s);
	ck_assert_int_eq(c->auth_enabled, d->auth_enabled);
	ck_assert_int_eq(c->has_admin_key, d->has_admin_key);
	ck_assert_mem_eq(c->admin_sha256, d->admin_sha256, sizeof(c->admin_sha256));
	/* the [key.trading] example is commented out: auth stays off */
	ck_assert_uint_eq(c->n_keys, 0);
	ck_assert_uint_eq(d->n_keys, 0);
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		const struct gw_provider_conf *a = &c->prov[p], *b = &d->prov[p];
		ck_assert_str_eq(a->url, b->url);
		ck_assert_ptr_null(a->api_key);
		ck_assert_uint_eq(a->rpm, b->rpm);
		ck_assert_uint_eq(a->burst, b->burst);
		ck_assert_uint_eq(a->concurrent, b->concurrent);
		ck_assert_uint_eq(a->timeout_ms, b->timeout_ms);
		ck_assert_uint_eq(a->connect_timeout_ms, b->connect_timeout_ms);
		ck_assert_uint_eq(a->cooldown_ms, b->cooldown_ms);
		ck_assert_int_eq(a->pass_unknown_models, b->pass_unknown_models);
		ck_assert_uint_eq(a->max_tokens_default, b->max_tokens_default);
		ck_assert_int_eq(a->dialect, b->dialect);
	}
	/* the same model table as the built-in one */
	ck_assert_uint_eq(c->n_models, d->n_models);
	for (size_t i = 0; i < d->n_models; i++) {
		const struct gw_model_conf *a = &c->models[i], *b = &d->models[i];
		ck_assert_str_eq(a->name, b->name);
		ck_assert_uint_eq(a->n_aliases, b->n_aliases);
		for (size_t j = 0; j < a->n_aliases; j++)
			ck_assert_str_eq(a->aliases[j], b->aliases[j]);
		for (int p = 0; p < GW_PROV_COUNT; p++) {
			if (b->upstream[p])
				ck_assert_str_eq(a->upstream[p], b->upstream[p]);
			else
				ck_assert_ptr_null(a->upstream[p]);
		}
		ck_assert_int_eq(a->price_in, b->price_in);
		ck_assert_int_eq(a->price_out, b->price_out);
	}
	/* the two example services */
	ck_assert_uint_eq(c->n_services, 2);
	s = gw_config_service(c, "trade_validator");
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->priority, GW_PRIO_CRITICAL);
	ck_assert_int_eq(s->cache_ttl_s, -1);
	ck_assert_str_eq(s->model, "openai/gpt-4o-mini");
	ck_assert_int_eq(s->budget_daily, 0);
	s = gw_config_service(c, "news_sentiment");
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->priority, GW_PRIO_LOW);
	ck_assert_int_eq(s->cache_ttl_s, 900);
	ck_assert_int_eq(s->budget_daily, USD(5));
	ck_assert_int_eq(s->budget_monthly, USD(100));
	ck_assert_ptr_null(gw_config_service(c, "nobody"));
	gw_config_unref(c);
	gw_config_unref(d);
}
END_TEST

START_TEST(test_env_wins_over_file)
{
	struct gw_config *c;

	setenv("OPENAI_RPM", "7", 1);
	setenv("OPENAI_API_KEY", "sk-env", 1);
	setenv("LLMGW_OPENAI_URL", "http://127.0.0.1:9999/v1/", 1);
	setenv("LLMGW_LISTEN", "[::1]:9000", 1);
	setenv("LLM_DEFAULT_MODEL", "anthropic/claude-3-haiku", 1);
	setenv("LLMGW_REDIS_URL", "redis://cache.local:6380/2", 1);
	setenv("LLMGW_WORKERS", "3", 1);
	setenv("LLMGW_HTTP_THREADS", "4", 1);
	setenv("OPENROUTER_CONCURRENT", "8", 1);
	c = load_ok("[gateway]\nlisten = 0.0.0.0:1\ndefault_model = x\nworkers = 1\n"
		    "[provider.openai]\nrpm = 5\napi_key = sk-file\nurl = https://a.example/v1\n"
		    "[provider.openrouter]\nconcurrent = 2\n",
		    NULL);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].rpm, 7);
	ck_assert_str_eq(c->prov[GW_PROV_OPENAI].api_key, "sk-env");
	ck_assert(c->prov[GW_PROV_OPENAI].usable);
	ck_assert(!c->prov[GW_PROV_ANTHROPIC].usable);
	ck_assert(gw_config_any_usable(c));
	ck_assert_str_eq(c->prov[GW_PROV_OPENAI].url, "http://127.0.0.1:9999/v1");
	ck_assert_str_eq(c->listen_host, "::1");
	ck_assert_uint_eq(c->listen_port, 9000);
	ck_assert_str_eq(c->default_model, "anthropic/claude-3-haiku");
	ck_assert_str_eq(c->redis_url, "redis://cache.local:6380/2");
	ck_assert_uint_eq(c->workers, 3);
	ck_assert_uint_eq(c->http_threads, 4);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENROUTER].concurrent, 8);
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

/* .env is above the file and below the environment. */
START_TEST(test_dotenv_precedence)
{
	const char *conf = "[provider.openai]\nrpm = 5\nconcurrent = 4\n[provider.anthropic]\nrpm = 9\n";
	const char *dotenv = "# comment\n"
			     "\n"
			     "export OPENAI_RPM=6\n"
			     "OPENAI_CONCURRENT = \"11\"   # trailing comment\n"
			     "ANTHROPIC_API_KEY='sk-ant#1'  # quoted\n"
			     "OPENROUTER_API_KEY=sk-or-1 # comment\n"
			     "UNRELATED_APP_SETTING=whatever\n"
			     "OPENAI_RPM=12\n";
	struct gw_config *c;

	c = load_ok(conf, dotenv);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].rpm, 12); /* last assignment wins */
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].concurrent, 11);
	ck_assert_uint_eq(c->prov[GW_PROV_ANTHROPIC].rpm, 9);
	ck_assert_str_eq(c->prov[GW_PROV_ANTHROPIC].api_key, "sk-ant#1");
	ck_assert_str_eq(c->prov[GW_PROV_OPENROUTER].api_key, "sk-or-1");
	gw_config_unref(c);
	rm_tmp();

	setenv("OPENAI_RPM", "13", 1);
	c = load_ok(conf, dotenv);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].rpm, 13);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].concurrent, 11);
	gw_config_unref(c);
	rm_tmp();

	/* an empty value counts as unset, in .env and in the environment */
	setenv("OPENAI_RPM", "", 1);
	c = load_ok(conf, "OPENAI_RPM=\nOPENAI_API_KEY=\n");
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].rpm, 5);
	ck_assert(!c->prov[GW_PROV_OPENAI].usable);
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

START_TEST(test_dotenv_missing_and_errors)
{
	char err[512], want[512];
	const char *ep;
	struct gw_config *c;

	c = gw_config_load(NULL, "/nonexistent/dir/.env", err, sizeof(err));
	ck_assert_ptr_nonnull(c);
	gw_config_unref(c);

	ck_assert_ptr_null(load_text(NULL, "# rpm\nOPENROUTER_RPM=0\n", err, sizeof(err), NULL, &ep));
	snprintf(want, sizeof(want), "%s:2: OPENROUTER_RPM: must be an integer 1..6000000", ep);
	ck_assert_str_eq(err, want);
	rm_tmp();

	ck_assert_ptr_null(load_text(NULL, "A=1\nthis is not an assignment\n", err, sizeof(err),
				     NULL, &ep));
	snprintf(want, sizeof(want), "%s:2: expected KEY=VALUE", ep);
	ck_assert_str_eq(err, want);
	rm_tmp();

	ck_assert_ptr_null(load_text(NULL, "A=\"open\n", err, sizeof(err), NULL, &ep));
	snprintf(want, sizeof(want), "%s:1: unterminated double quote", ep);
	ck_assert_str_eq(err, want);
	rm_tmp();

	/* a bad value in .env that the environment overrides is never read */
	setenv("OPENAI_RPM", "20", 1);
	c = load_ok(NULL, "OPENAI_RPM=zero\n");
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].rpm, 20);
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

START_TEST(test_unknown_key_line)
{
	expect_conf_error("# llmgw\n"
			  "\n"
			  "[gateway]\n"
			  "listen = 127.0.0.1:8400   ; inline comment\n"
			  "  bogus = 1\n",
			  5, "[gateway] unknown key \"bogus\"");
	expect_conf_error("[gateway]\n; comment\n[gatway]\nlisten = 127.0.0.1:1\n", 3,
			  "unknown section [gatway] (known: gateway, queue, cache, budget, async, "
			  "auth, provider.NAME, model.NAME, service.NAME, key.NAME)");
	expect_conf_error("listen = 127.0.0.1:1\n", 1,
			  "key \"listen\" is outside of any [section]");
	expect_conf_error("[model.a]\nopenai = x\nmistral = y\n", 3,
			  "[model.a] unknown key \"mistral\"");
	expect_conf_error("[provider.mistral]\nrpm = 1\n", 1,
			  "unknown provider in [provider.mistral] (known: openrouter, anthropic, openai)");
}
END_TEST

static const struct bad_case {
	const char *conf;
	int line;
	const char *msg;
} bad_cases[] = {
	{ "[provider.openai]\nrpm = 0\n", 2,
	  "[provider.openai] rpm: must be an integer 1..6000000" },
	{ "[provider.openai]\nrpm = abc\n", 2,
	  "[provider.openai] rpm: must be an integer 1..6000000" },
	{ "[provider.openai]\nrpm = -5\n", 2,
	  "[provider.openai] rpm: must be an integer 1..6000000" },
	{ "[provider.openai]\nrpm = 6000001\n", 2,
	  "[provider.openai] rpm: must be an integer 1..6000000" },
	{ "[provider.openai]\nrpm = 99999999999999999999999\n", 2,
	  "[provider.openai] rpm: must be an integer 1..6000000" },
	{ "[provider.openai]\nrpm = 60 # not a comment\n", 2,
	  "[provider.openai] rpm: must be an integer 1..6000000" },
	{ "[provider.openai]\nconcurrent = 0\n", 2,
	  "[provider.openai] concurrent: must be an integer 1..10000" },
	{ "[provider.openai]\ntimeout_s = 0.0005\n", 2,
	  "[provider.openai] timeout_s: must be a number of seconds 0.001..3600 (up to 3 decimals)" },
	{ "[provider.openai]\ntimeout_s = 1e3\n", 2,
	  "[provider.openai] timeout_s: must be a number of seconds 0.001..3600 (up to 3 decimals)" },
	{ "[provider.openai]\nurl = ftp://example.com\n", 2,
	  "[provider.openai] url: must be an http:// or https:// URL with a host" },
	{ "[provider.openai]\nurl = https:///v1\n", 2,
	  "[provider.openai] url: must be an http:// or https:// URL with a host" },
	{ "[provider.openai]\npass_unknown_models = maybe\n", 2,
	  "[provider.openai] pass_unknown_models: must be true or false" },
	{ "[provider.openai]\napi_key = sk bad\n", 2,
	  "[provider.openai] api_key: must not contain blanks or control characters" },
	{ "[gateway]\nlisten = 127.0.0.1\n", 2,
	  "[gateway] listen: must be host:port with port 1..65535 (IPv6 as [addr]:port)" },
	{ "[gateway]\nlisten = 127.0.0.1:70000\n", 2,
	  "[gateway] listen: must be host:port with port 1..65535 (IPv6 as [addr]:port)" },
	{ "[gateway]\nlisten = ::1:8400\n", 2,
	  "[gateway] listen: must be host:port with port 1..65535 (IPv6 as [addr]:port)" },
	{ "[gateway]\nlisten = :8400\n", 2,
	  "[gateway] listen: must be host:port with port 1..65535 (IPv6 as [addr]:port)" },
	{ "[gateway]\nlisten = host:80x\n", 2,
	  "[gateway] listen: must be host:port with port 1..65535 (IPv6 as [addr]:port)" },
	{ "[gateway]\nfallback_order = openai, mistral\n", 2,
	  "[gateway] fallback_order: unknown provider \"mistral\" (known: openrouter, anthropic, "
	  "openai)" },
	{ "[gateway]\nfallback_order = openai, anthropic, openai\n", 2,
	  "[gateway] fallback_order: provider \"openai\" listed twice" },
	{ "[gateway]\nfallback_order =\n", 2,
	  "[gateway] fallback_order: empty entry (expected a comma list of openrouter, anthropic, "
	  "openai)" },
	{ "[gateway]\nfallback_order = openai,,anthropic\n", 2,
	  "[gateway] fallback_order: empty entry (expected a comma list of openrouter, anthropic, "
	  "openai)" },
	{ "[gateway]\nmax_body_bytes = 1023\n", 2,
	  "[gateway] max_body_bytes: must be an integer 1024..67108864" },
	{ "[gateway]\nworkers = 1025\n", 2, "[gateway] workers: must be an integer 0..1024" },
	{ "[gateway]\nhttp_threads = 65\n", 2, "[gateway] http_threads: must be an integer 0..64" },
	{ "[gateway]\ndefault_model =\n", 2, "[gateway] default_model: must not be empty" },
	{ "[gateway]\nstate_dir =\n", 2, "[gateway] state_dir: must not be empty" },
	{ "[queue]\nlow_max = 0\n", 2, "[queue] low_max: must be an integer 1..1000000" },
	{ "[queue]\naging_ms = 0\n", 2, "[queue] aging_ms: must be an integer 1..86400000" },
	{ "[cache]\nenabled = sometimes\n", 2, "[cache] enabled: must be true or false" },
	{ "[cache]\nredis_url = http://127.0.0.1:6379\n", 2,
	  "[cache] redis_url: must be redis://host[:port][/db]" },
	{ "[cache]\nredis_url = redis://:6379/0\n", 2,
	  "[cache] redis_url: must be redis://host[:port][/db]" },
	{ "[cache]\nredis_url = redis://h:6379/x\n", 2,
	  "[cache] redis_url: must be redis://host[:port][/db]" },
	{ "[cache]\ndefault_ttl_s = 0\n", 2, "[cache] default_ttl_s: must be an integer 1..2592000" },
	{ "[budget]\ndaily_usd = -1\n", 2,
	  "[budget] daily_usd: must be a dollar amount 0..1000000 (up to 6 decimals)" },
	{ "[budget]\nmonthly_usd = 1.0000001\n", 2,
	  "[budget] monthly_usd: must be a dollar amount 0..1000000 (up to 6 decimals)" },
	{ "[service.x]\npriority = urgent\n", 2,
	  "[service.x] priority: must be CRITICAL, HIGH, MEDIUM, LOW or 1-4" },
	{ "[service.x]\npriority = 5\n", 2,
	  "[service.x] priority: must be CRITICAL, HIGH, MEDIUM, LOW or 1-4" },
	{ "[service.x]\ncache_ttl_s = 0\n", 2,
	  "[service.x] cache_ttl_s: must be an integer 1..2592000" },
	{ "[service.x]\nbudget_daily_usd = 5$\n", 2,
	  "[service.x] budget_daily_usd: must be a dollar amount 0..1000000 (up to 6 decimals)" },
	{ "[service.bad name]\n", 1,
	  "[service.bad name] service names are 1-64 characters of A-Z a-z 0-9 _ . -" },
	{ "[service.x]\n[service.x]\n", 2, "section [service.x] appears twice" },
	{ "[model.m]\nopenai = x\nprice_in = -1\n", 3,
	  "[model.m] price_in: must be USD per 1M tokens, 0..10000 with up to 6 decimals (e.g. 0.15)" },
	{ "[model.m]\nopenai = x\nprice_out = 0.1234567\n", 3,
	  "[model.m] price_out: must be USD per 1M tokens, 0..10000 with up to 6 decimals (e.g. 0.15)" },
	{ "[model.m]\nopenai = two words\n", 2,
	  "[model.m] openai: must be a model name (printable ASCII, no blanks or commas)" },
	{ "[model.m]\nprice_in = 1\n\n[model.n]\nopenai = y\n", 1,
	  "[model.m] maps the model to no provider (set openrouter, anthropic and/or openai)" },
	{ "[model.m]\nprice_in = 1\n", 1,
	  "[model.m] maps the model to no provider (set openrouter, anthropic and/or openai)" },
	{ "[model.a]\nopenai = x\naliases = b, c\n[model.c]\nopenai = y\n", 4,
	  "[model.c] \"c\" is already a name of [model.a]" },
	{ "[model.a]\nopenai = x\n[model.b]\nopenai = y\naliases = z, a\n", 5,
	  "[model.b] aliases: \"a\" is already a name of [model.a]" },
	{ "[model.a]\nopenai = x\naliases = b, b\n", 3,
	  "[model.a] aliases: \"b\" is already a name of [model.a]" },
	{ "[model.a]\nopenai = x\naliases = a\n", 3,
	  "[model.a] aliases: \"a\" is already a name of [model.a]" },
	{ "[model.a]\nopenai = x\n[model.a]\nopenai = y\n", 3,
	  "[model.a] \"a\" is already a name of [model.a]" },
	{ "[model.a]\nopenai = x\naliases = b c\n", 3,
	  "[model.a] aliases: must be a comma list of model names" },
	{ "[model.a]\nopenai = x\naliases = b,\n", 3, "[model.a] aliases: empty entry in the list" },
	{ "[model.a]\nopenai = x\naliases = b, ,c\n", 3,
	  "[model.a] aliases: empty entry in the list" },
	{ "[model.bad name]\nopenai = x\n", 1,
	  "[model.bad name] is not a model name (printable ASCII, no blanks or commas, at most "
	  "256 bytes)" },
	{ "[provider.openai]\nrpm = 5\nrpm = 6\n", 3,
	  "[provider.openai] rpm: set twice (first at line 2)" },
	{ "[gateway]\nworkers = 1\n[queue]\n[gateway]\n", 4,
	  "section [gateway] appears twice (first at line 1)" },
	{ "[provider.openai]\n[provider.anthropic]\n[provider.openai]\n", 3,
	  "section [provider.openai] appears twice (first at line 1)" },
	{ "[gateway\nworkers = 1\n", 1, "syntax error: no ']' closes the section name" },
	{ "[async]\nretention_s = 0\n", 2, "[async] retention_s: must be an integer 1..2592000" },
	{ "[async]\nretention_s = 2592001\n", 2,
	  "[async] retention_s: must be an integer 1..2592000" },
	{ "[async]\nretention_s = 1h\n", 2, "[async] retention_s: must be an integer 1..2592000" },
	{ "[auth]\nenabled = maybe\n", 2, "[auth] enabled: must be true or false" },
	{ "[auth]\nadmin_key_sha256 = admin-key\n", 2,
	  "[auth] admin_key_sha256: must be 64 hex digits (the SHA-256 of the key)" },
	{ "[auth]\nadmin_key_sha256 = " H_EMPTY "\n", 2,
	  "[auth] admin_key_sha256: is the SHA-256 of an empty key" },
	/* 63 digits, 65 digits, a non-hex digit, a blank inside */
	{ "[key.a]\nsha256 = " H_ALPHA "\n[key.b]\nsha256 = 7a3d637bc601f7000cc2c33141c8c8a7554e02e3"
	  "19fa8b293a0c88c613b7762\n", 4,
	  "[key.b] sha256: must be 64 hex digits (the SHA-256 of the key)" },
	{ "[key.a]\nsha256 = " H_ALPHA "0\n", 2,
	  "[key.a] sha256: must be 64 hex digits (the SHA-256 of the key)" },
	{ "[key.a]\nsha256 = g77509799af78b2efa2f2af71d0f906e0a0c50c048efd3b515625f788e92b99a\n", 2,
	  "[key.a] sha256: must be 64 hex digits (the SHA-256 of the key)" },
	{ "[key.a]\nsha256 = 677509799af78b2efa2f2af71d0f906e 0a0c50c048efd3b515625f788e92b99a\n", 2,
	  "[key.a] sha256: must be 64 hex digits (the SHA-256 of the key)" },
	{ "[key.a]\nsha256 =\n", 2, "[key.a] sha256: must be 64 hex digits (the SHA-256 of the key)" },
	{ "[key.a]\nsha256 = " H_EMPTY "\n", 2, "[key.a] sha256: is the SHA-256 of an empty key" },
	{ "[key.a]\nservices = x\n", 1,
	  "[key.a] has no sha256 (the SHA-256 of the key, 64 hex digits)" },
	{ "[key.a]\nservices = x\n[key.b]\nsha256 = " H_ALPHA "\n", 1,
	  "[key.a] has no sha256 (the SHA-256 of the key, 64 hex digits)" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nsha256 = " H_GAMMA "\n", 3,
	  "[key.a] sha256: set twice (first at line 2)" },
	{ "[key.a]\nsha256 = " H_ALPHA "\n[key.b]\nsha256 = " H_GAMMA "\n[key.a]\nsha256 = "
	  H_BETA_UPPER "\n", 5, "section [key.a] appears twice" },
	/* the same hash in another case is the same hash */
	{ "[key.a]\nsha256 = " H_BETA_UPPER "\n# second\n[key.b]\nsha256 = "
	  "7a3d637bc601f7000cc2c33141c8c8a7554e02e319fa8b293a0c88c613b77620\n", 5,
	  "[key.b] sha256: the same hash as [key.a] (every key must differ)" },
	{ "[key.a]\nsha256 = " H_ALPHA "\ndefault_service = z\nservices = x, y\n", 3,
	  "[key.a] default_service: \"z\" is not in services" },
	{ "[key.a]\nservices = x\ndefault_service = X\nsha256 = " H_ALPHA "\n[auth]\n", 3,
	  "[key.a] default_service: \"X\" is not in services" },
	{ "[key.a]\nsha256 = " H_ALPHA "\ndefault_service = bad name\n", 3,
	  "[key.a] default_service: must be a service name (1-64 characters of A-Z a-z 0-9 _ . -)" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nservices = x, , y\n", 3,
	  "[key.a] services: empty entry in the list" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nservices = x,\n", 3,
	  "[key.a] services: empty entry in the list" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nservices = x y\n", 3,
	  "[key.a] services: must be a comma list of service names" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nservices = x, y, x\n", 3,
	  "[key.a] services: service \"x\" listed twice" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nservices = x, a/b\n", 3,
	  "[key.a] services: \"a/b\" is not a service name (1-64 characters of A-Z a-z 0-9 _ . -)" },
	{ "[key.a]\nsha256 = " H_ALPHA "\nservice = x\n", 3, "[key.a] unknown key \"service\"" },
	{ "[key.bad name]\nsha256 = " H_ALPHA "\n", 1,
	  "[key.bad name] key names are 1-64 characters of A-Z a-z 0-9 _ . -" },
	{ "[key.]\n", 1, "[key.] key names are 1-64 characters of A-Z a-z 0-9 _ . -" },
	{ "# auth on\n[auth]\nadmin_key_sha256 = " H_ADMIN "\nenabled = true\n", 4,
	  "auth is enabled but no [key.NAME] is configured" },
	{ "[gateway]\nworkers = 1\n[auth]\nenabled = yes\n[service.x]\npriority = low\n", 4,
	  "auth is enabled but no [key.NAME] is configured" },
	{ "[gateway]\nworkers = 1\njust some words\n", 3,
	  "syntax error (expected [section] or key = value)" },
};

START_TEST(test_bad_values)
{
	const struct bad_case *b = &bad_cases[_i];

	expect_conf_error(b->conf, b->line, b->msg);
}
END_TEST

START_TEST(test_bad_env_values)
{
	expect_env_error("OPENROUTER_RPM", "0", "must be an integer 1..6000000");
	expect_env_error("OPENROUTER_RPM", "abc", "must be an integer 1..6000000");
	expect_env_error("ANTHROPIC_CONCURRENT", "-1", "must be an integer 1..10000");
	expect_env_error("OPENAI_TIMEOUT", "soon",
			 "must be a number of seconds 0.001..3600 (up to 3 decimals)");
	expect_env_error("LLM_ENABLE_CACHE", "maybe", "must be true or false");
	expect_env_error("LLMGW_LISTEN", "localhost", "must be host:port with port 1..65535 "
			 "(IPv6 as [addr]:port)");
	expect_env_error("LLMGW_REDIS_URL", "rediss://x", "must be redis://host[:port][/db]");
	expect_env_error("LLMGW_ANTHROPIC_URL", "api.anthropic.com",
			 "must be an http:// or https:// URL with a host");
	expect_env_error("LLMGW_WORKERS", "many", "must be an integer 0..1024");
	expect_env_error("OPENAI_API_KEY", "sk\tkey", "must not contain blanks or control characters");
}
END_TEST

START_TEST(test_long_line)
{
	char conf[512];
	char err[512], want[512];
	const char *path;

	snprintf(conf, sizeof(conf), "[gateway]\nstate_dir = %0300d\n", 0);
	ck_assert_ptr_null(load_text(conf, NULL, err, sizeof(err), &path, NULL));
	snprintf(want, sizeof(want), "%s:2: line too long (at most 197 characters)", path);
	ck_assert_str_eq(err, want);
	rm_tmp();
}
END_TEST

/* Section names longer than inih's 49-byte buffer still work. */
START_TEST(test_long_section_name)
{
	const char *name = "a_service_name_that_is_exactly_sixty_four_characters_long_123456";
	char conf[256];
	struct gw_config *c;

	ck_assert_uint_eq(strlen(name), 64);
	snprintf(conf, sizeof(conf), "[service.%s]\npriority = high\n[service.%.40s]\n"
		 "priority = low\n", name, name);
	c = load_ok(conf, NULL);
	ck_assert_int_eq(gw_config_service(c, name)->priority, GW_PRIO_HIGH);
	ck_assert_int_eq(c->services[1].priority, GW_PRIO_LOW);
	ck_assert_uint_eq(strlen(c->services[1].name), 40);
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

START_TEST(test_burst_auto)
{
	struct gw_config *c = load_ok("[provider.openrouter]\nrpm = 600\n"
				      "[provider.anthropic]\nrpm = 30\n"
				      "[provider.openai]\nrpm = 600\nburst = 5\n",
				      NULL);

	ck_assert_uint_eq(c->prov[GW_PROV_OPENROUTER].burst, 10);
	ck_assert_uint_eq(c->prov[GW_PROV_ANTHROPIC].burst, 1);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].burst, 5);
	gw_config_unref(c);
	rm_tmp();

	/* auto burst follows the final rpm, after the environment */
	setenv("OPENROUTER_RPM", "1200", 1);
	c = load_ok(NULL, NULL);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENROUTER].burst, 20);
	gw_config_unref(c);
}
END_TEST

START_TEST(test_price_parsing)
{
	static const struct {
		const char *s;
		gw_pusd want;
	} ok[] = {
		{ "0.15", 150000 },   { "15", 15000000 },  { "2.5", 2500000 },
		{ "0.000001", 1 },    { "0", 0 },          { "0.0", 0 },
		{ "10.00", 10000000 }, { "0.60", 600000 }, { "1.25", 1250000 },
		{ "007", 7000000 },   { "123456.654321", INT64_C(123456654321) },
		{ "9223372036854.775807", INT64_MAX },
	};
	static const char *const bad[] = {
		"", "-1", "+1", " 1", "1 ", "1e3", "1E-3", "0.0000001", "1.", ".5", "1.2.3",
		"abc", "0x10", "1,5", "nan", "inf", "9223372036854.775808",
		"99999999999999999999", "18446744073709551616",
	};
	gw_pusd v;

	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		v = -7;
		ck_assert_msg(gw_config_parse_price(ok[i].s, &v) == 0, "rejected %s", ok[i].s);
		ck_assert_msg(v == ok[i].want, "%s -> %lld", ok[i].s, (long long)v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = -7;
		ck_assert_msg(gw_config_parse_price(bad[i], &v) == -EINVAL, "accepted \"%s\"", bad[i]);
		ck_assert_int_eq(v, -7);
	}
	ck_assert_int_eq(gw_config_parse_price(NULL, &v), -EINVAL);
}
END_TEST

START_TEST(test_budgets)
{
	struct gw_config *c = load_ok("[budget]\ndaily_usd = 12.5\nmonthly_usd = 0.000001\n"
				      "[service.s1]\nbudget_daily_usd = 1000000\n"
				      "budget_monthly_usd = 0.01\n",
				      NULL);
	const struct gw_service_conf *s = gw_config_service(c, "s1");

	ck_assert_int_eq(c->budget_daily, USD(12) + USD(1) / 2);
	ck_assert_int_eq(c->budget_monthly, 1000000);
	ck_assert_int_eq(s->budget_daily, USD(1000000));
	ck_assert_int_eq(s->budget_monthly, USD(1) / 100);
	ck_assert_int_eq(s->priority, -1);
	ck_assert_ptr_null(s->model);
	gw_config_unref(c);
	rm_tmp();
	expect_conf_error("[budget]\ndaily_usd = 1000000.000001\n", 2,
			  "[budget] daily_usd: must be a dollar amount 0..1000000 (up to 6 decimals)");
}
END_TEST

START_TEST(test_model_mapping)
{
	struct gw_config *c = load_ok(NULL, NULL);
	const struct gw_model_conf *m;

	/* by name and by alias */
	ck_assert_str_eq(gw_config_map_model(c, "openai/gpt-4o-mini", GW_PROV_OPENROUTER),
			 "openai/gpt-4o-mini");
	ck_assert_str_eq(gw_config_map_model(c, "openai/gpt-4o-mini", GW_PROV_ANTHROPIC),
			 "claude-3-haiku-20240307");
	ck_assert_str_eq(gw_config_map_model(c, "openai/gpt-4o-mini", GW_PROV_OPENAI), "gpt-4o-mini");
	ck_assert_str_eq(gw_config_map_model(c, "gpt-4o-mini", GW_PROV_OPENROUTER),
			 "openai/gpt-4o-mini");
	ck_assert_str_eq(gw_config_map_model(c, "claude-3-5-sonnet-20241022", GW_PROV_OPENAI),
			 "gpt-4o");
	m = gw_config_model(c, "gpt-4o");
	ck_assert_ptr_nonnull(m);
	ck_assert_str_eq(m->name, "openai/gpt-4o");
	ck_assert_ptr_eq(gw_config_model(c, "openai/gpt-4o"), m);
	ck_assert_ptr_null(gw_config_model(c, "GPT-4O"));

	/* listed but not mapped for that provider: no pass-through */
	ck_assert_ptr_null(gw_config_map_model(c, "meta-llama/llama-3.1-70b", GW_PROV_ANTHROPIC));
	ck_assert_ptr_null(gw_config_map_model(c, "meta-llama/llama-3.1-70b", GW_PROV_OPENAI));
	ck_assert_str_eq(gw_config_map_model(c, "llama-3.1-70b", GW_PROV_OPENROUTER),
			 "meta-llama/llama-3.1-70b-instruct");

	/* unknown: only providers that pass unknown models through */
	ck_assert_str_eq(gw_config_map_model(c, "mistralai/mixtral-8x7b", GW_PROV_OPENROUTER),
			 "mistralai/mixtral-8x7b");
	ck_assert_ptr_null(gw_config_map_model(c, "mistralai/mixtral-8x7b", GW_PROV_ANTHROPIC));
	ck_assert_ptr_null(gw_config_map_model(c, "mistralai/mixtral-8x7b", GW_PROV_OPENAI));
	ck_assert_ptr_null(gw_config_map_model(c, "x", GW_PROV_COUNT));
	ck_assert_ptr_null(gw_config_map_model(c, NULL, GW_PROV_OPENAI));
	ck_assert_ptr_null(gw_config_model(c, "mistralai/mixtral-8x7b"));
	gw_config_unref(c);

	/* a conf model table replaces the built-in one */
	c = load_ok("[model.house]\naliases = h1,h2\nopenai = gpt-4o\nanthropic = claude-x\n"
		    "[provider.openai]\npass_unknown_models = yes\n"
		    "[provider.openrouter]\npass_unknown_models = no\n",
		    NULL);
	ck_assert_uint_eq(c->n_models, 1);
	m = gw_config_model(c, "h2");
	ck_assert_ptr_nonnull(m);
	ck_assert_uint_eq(m->n_aliases, 2);
	ck_assert_int_eq(m->price_in, -1);
	ck_assert_int_eq(m->price_out, -1);
	ck_assert_ptr_null(gw_config_model(c, "openai/gpt-4o-mini"));
	ck_assert_str_eq(gw_config_map_model(c, "h1", GW_PROV_ANTHROPIC), "claude-x");
	ck_assert_ptr_null(gw_config_map_model(c, "house", GW_PROV_OPENROUTER));
	ck_assert_str_eq(gw_config_map_model(c, "other", GW_PROV_OPENAI), "other");
	ck_assert_ptr_null(gw_config_map_model(c, "other", GW_PROV_OPENROUTER));
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

START_TEST(test_enable_cache)
{
	static const char *const off[] = { "False", "false", "FALSE", "0", "no", "No", "off" };
	static const char *const on[] = { "True", "true", "1", "yes", "YES", "on" };
	struct gw_config *c;

	for (size_t i = 0; i < sizeof(off) / sizeof(off[0]); i++) {
		setenv("LLM_ENABLE_CACHE", off[i], 1);
		c = load_ok(NULL, NULL);
		ck_assert_msg(!c->cache_enabled, "%s", off[i]);
		gw_config_unref(c);
	}
	for (size_t i = 0; i < sizeof(on) / sizeof(on[0]); i++) {
		setenv("LLM_ENABLE_CACHE", on[i], 1);
		c = load_ok("[cache]\nenabled = false\n", NULL);
		ck_assert_msg(c->cache_enabled, "%s", on[i]);
		gw_config_unref(c);
		rm_tmp();
	}
	unsetenv("LLM_ENABLE_CACHE");
	c = load_ok(NULL, "LLM_ENABLE_CACHE=False\n");
	ck_assert(!c->cache_enabled);
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

START_TEST(test_timeout_decimals)
{
	struct gw_config *c;

	setenv("OPENAI_TIMEOUT", "0.5", 1);
	setenv("ANTHROPIC_TIMEOUT", "2", 1);
	c = load_ok("[provider.openrouter]\ntimeout_s = 1.25\ncooldown_s = 0.1\n"
		    "[provider.anthropic]\ntimeout_s = 9\ncooldown_s = 0\n"
		    "[gateway]\nshutdown_grace_s = 0.75\n",
		    NULL);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].timeout_ms, 500);
	ck_assert_uint_eq(c->prov[GW_PROV_ANTHROPIC].timeout_ms, 2000);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENROUTER].timeout_ms, 1250);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENROUTER].cooldown_ms, 100);
	ck_assert_uint_eq(c->prov[GW_PROV_ANTHROPIC].cooldown_ms, 0);
	ck_assert_uint_eq(c->shutdown_grace_ms, 750);
	gw_config_unref(c);
	rm_tmp();

	setenv("OPENAI_TIMEOUT", "0.001", 1);
	c = load_ok(NULL, NULL);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].timeout_ms, 1);
	gw_config_unref(c);
	expect_env_error("OPENAI_TIMEOUT", "0", "must be a number of seconds 0.001..3600 "
			 "(up to 3 decimals)");
	expect_env_error("OPENAI_TIMEOUT", "3600.001", "must be a number of seconds 0.001..3600 "
			 "(up to 3 decimals)");
	expect_env_error("OPENAI_TIMEOUT", "0.0001", "must be a number of seconds 0.001..3600 "
			 "(up to 3 decimals)");
}
END_TEST

START_TEST(test_state_dir_precedence)
{
	const char *conf = "[gateway]\nstate_dir = /from/conf\n";
	struct gw_config *c;

	c = load_ok(conf, NULL);
	ck_assert_str_eq(c->state_dir, "/from/conf");
	gw_config_unref(c);
	rm_tmp();

	setenv("LLMGW_STATE_DIR", "/from/llmgw", 1);
	c = load_ok(conf, NULL);
	ck_assert_str_eq(c->state_dir, "/from/llmgw");
	gw_config_unref(c);
	rm_tmp();

	setenv("STATE_DIRECTORY", "/var/lib/llmgw", 1);
	c = load_ok(conf, NULL);
	ck_assert_str_eq(c->state_dir, "/var/lib/llmgw");
	gw_config_unref(c);
	rm_tmp();

	/* systemd lists several directories with ':'; the first is ours */
	setenv("STATE_DIRECTORY", "/var/lib/llmgw:/var/lib/other", 1);
	c = load_ok(NULL, NULL);
	ck_assert_str_eq(c->state_dir, "/var/lib/llmgw");
	gw_config_unref(c);

	unsetenv("STATE_DIRECTORY");
	unsetenv("LLMGW_STATE_DIR");
	c = load_ok(NULL, NULL);
	ck_assert_str_eq(c->state_dir, "./state");
	gw_config_unref(c);
}
END_TEST

START_TEST(test_conf_path_from_env)
{
	char err[512];
	const char *path = write_tmp("[provider.openai]\nrpm = 3\n");
	struct gw_config *c;

	setenv("LLMGW_CONFIG", path, 1);
	c = gw_config_load(NULL, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c->source, path);
	ck_assert_uint_eq(c->prov[GW_PROV_OPENAI].rpm, 3);
	gw_config_unref(c);

	/* an explicit path wins over LLMGW_CONFIG */
	ck_assert_ptr_null(gw_config_load("/nonexistent/llmgw.conf", NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/llmgw.conf: cannot open: No such file or directory");

	setenv("LLMGW_CONFIG", "/nonexistent/other.conf", 1);
	ck_assert_ptr_null(gw_config_load(NULL, NULL, err, sizeof(err)));
	ck_assert_str_eq(err, "/nonexistent/other.conf: cannot open: No such file or directory");
	/* no room for the message is fine */
	ck_assert_ptr_null(gw_config_load(NULL, NULL, NULL, 0));
	rm_tmp();
}
END_TEST

START_TEST(test_services_and_values)
{
	struct gw_config *c = load_ok(
		"\xEF\xBB\xBF# with a byte order mark\n"
		"[gateway]\n"
		"listen: localhost:8080\n"
		"fallback_order = openai ,anthropic\n"
		"workers = 4\n"
		"max_body_bytes = 67108864\n"
		"[cache]\n"
		"redis_url = redis://[::1]\n"
		"[provider.openrouter]\n"
		"referer = https://example.com/app\n"
		"title = My Trading App ; inline comment\n"
		"url = https://openrouter.ai/api/v1///\n"
		"[service.a]\npriority = 2\ncache_ttl_s = 60\nmodel = gpt-4o\n"
		"[service.b-1.x_y]\npriority = low\n",
		NULL);

	ck_assert_str_eq(c->listen_host, "localhost");
	ck_assert_uint_eq(c->listen_port, 8080);
	ck_assert_uint_eq(c->n_order, 2);
	ck_assert_int_eq(c->order[0], GW_PROV_OPENAI);
	ck_assert_int_eq(c->order[1], GW_PROV_ANTHROPIC);
	ck_assert_uint_eq(c->workers, 4);
	ck_assert_uint_eq(c->max_body_bytes, 64 * 1024 * 1024);
	ck_assert_str_eq(c->redis_url, "redis://[::1]");
	ck_assert_str_eq(c->prov[GW_PROV_OPENROUTER].referer, "https://example.com/app");
	ck_assert_str_eq(c->prov[GW_PROV_OPENROUTER].title, "My Trading App");
	ck_assert_str_eq(c->prov[GW_PROV_OPENROUTER].url, "https://openrouter.ai/api/v1");
	ck_assert_int_eq(gw_config_service(c, "a")->priority, GW_PRIO_HIGH);
	ck_assert_int_eq(gw_config_service(c, "a")->cache_ttl_s, 60);
	ck_assert_str_eq(gw_config_service(c, "a")->model, "gpt-4o");
	ck_assert_int_eq(gw_config_service(c, "b-1.x_y")->priority, GW_PRIO_LOW);
	ck_assert_ptr_null(gw_config_service(c, NULL));
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

/* Only providers in the fallback order make the gateway ready. */
START_TEST(test_any_usable)
{
	struct gw_config *c;

	setenv("ANTHROPIC_API_KEY", "sk-ant", 1);
	c = load_ok("[gateway]\nfallback_order = openai\n", NULL);
	ck_assert(c->prov[GW_PROV_ANTHROPIC].usable);
	ck_assert(!gw_config_any_usable(c));
	gw_config_unref(c);
	rm_tmp();
	c = load_ok("[gateway]\nfallback_order = openai, anthropic\n", NULL);
	ck_assert(gw_config_any_usable(c));
	gw_config_unref(c);
	rm_tmp();
	ck_assert(!gw_config_any_usable(NULL));
}
END_TEST

START_TEST(test_refcount)
{
	struct gw_config *c = load_ok(NULL, NULL);

	ck_assert_ptr_eq(gw_config_ref(c), c);
	ck_assert_ptr_eq(gw_config_ref(c), c);
	gw_config_unref(c);
	gw_config_unref(c);
	ck_assert_str_eq(c->listen_host, "127.0.0.1"); /* still alive */
	gw_config_unref(c);
	ck_assert_ptr_null(gw_config_ref(NULL));
	gw_config_unref(NULL);
}
END_TEST

START_TEST(test_async_retention)
{
	struct gw_config *c = load_ok("[async]\nretention_s = 1\n", NULL);

	ck_assert_uint_eq(c->async_retention_s, 1);
	gw_config_unref(c);
	rm_tmp();
	c = load_ok("[async]\nretention_s = 2592000\n", NULL);
	ck_assert_uint_eq(c->async_retention_s, 2592000);
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

START_TEST(test_keys)
{
	struct gw_config *c = load_ok(
		"[auth]\n"
		"enabled = true\n"
		"[key.trading]\n"
		"sha256 = " H_ALPHA "\n"
		"services = trade_validator ,news_sentiment\n"
		"default_service = news_sentiment\n"
		"[service.trade_validator]\n"
		"priority = critical\n"
		"[key.ops.team-1]\n"
		"sha256 = " H_BETA_UPPER "\n"
		"services =\n"
		"[key.reports]\n"
		"default_service = reports\n"
		"services = reports\n"
		"sha256 = " H_GAMMA "\n",
		NULL);
	const struct gw_key_conf *k;

	ck_assert(c->auth_enabled);
	ck_assert(!c->has_admin_key);
	ck_assert_uint_eq(c->n_keys, 3);

	k = &c->keys[0];
	ck_assert_str_eq(k->name, "trading");
	ck_assert_uint_eq(k->n_services, 2);
	ck_assert_str_eq(k->services[0], "trade_validator");
	ck_assert_str_eq(k->services[1], "news_sentiment");
	ck_assert_str_eq(k->default_service, "news_sentiment");
	ck_assert_uint_eq(k->sha256[0], 0x67);
	ck_assert_uint_eq(k->sha256[31], 0x9a);

	k = &c->keys[1];
	ck_assert_str_eq(k->name, "ops.team-1");
	ck_assert_uint_eq(k->n_services, 0);
	ck_assert_ptr_null(k->services);
	ck_assert_ptr_null(k->default_service);
	ck_assert_uint_eq(k->sha256[0], 0x7a);
	ck_assert_uint_eq(k->sha256[31], 0x20);

	k = &c->keys[2];
	ck_assert_str_eq(k->name, "reports");
	ck_assert_uint_eq(k->n_services, 1);
	ck_assert_str_eq(k->default_service, "reports");

	/* each plain key finds its own entry, whatever its position */
	ck_assert_ptr_eq(gw_config_key(c, "alpha-key"), &c->keys[0]);
	ck_assert_ptr_eq(gw_config_key(c, "beta-key"), &c->keys[1]); /* upper-case hash */
	ck_assert_ptr_eq(gw_config_key(c, "gamma-key"), &c->keys[2]);

	/* anything else finds none */
	ck_assert_ptr_null(gw_config_key(c, "Alpha-key"));
	ck_assert_ptr_null(gw_config_key(c, "alpha-key\n"));
	ck_assert_ptr_null(gw_config_key(c, "alpha-ke"));
	ck_assert_ptr_null(gw_config_key(c, " alpha-key"));
	ck_assert_ptr_null(gw_config_key(c, H_ALPHA)); /* the hash is not the key */
	ck_assert_ptr_null(gw_config_key(c, "admin-key"));
	ck_assert_ptr_null(gw_config_key(c, ""));
	ck_assert_ptr_null(gw_config_key(c, NULL));
	ck_assert_ptr_null(gw_config_key(NULL, "alpha-key"));

	/* allows(): the list, exactly, or anything when the list is empty */
	k = gw_config_key(c, "alpha-key");
	ck_assert(gw_config_key_allows(k, "trade_validator"));
	ck_assert(gw_config_key_allows(k, "news_sentiment"));
	ck_assert(!gw_config_key_allows(k, "reports"));
	ck_assert(!gw_config_key_allows(k, "Trade_validator"));
	ck_assert(!gw_config_key_allows(k, "trade_validato"));
	ck_assert(!gw_config_key_allows(k, "default"));
	ck_assert(!gw_config_key_allows(k, ""));
	ck_assert(!gw_config_key_allows(k, NULL));
	k = gw_config_key(c, "beta-key");
	ck_assert(gw_config_key_allows(k, "trade_validator"));
	ck_assert(gw_config_key_allows(k, "anything.else"));
	ck_assert(gw_config_key_allows(k, "default"));
	k = gw_config_key(c, "gamma-key");
	ck_assert(gw_config_key_allows(k, "reports"));
	ck_assert(!gw_config_key_allows(k, "trade_validator"));
	ck_assert(!gw_config_key_allows(NULL, "reports"));

	/* keys do not make an admin key */
	ck_assert(!gw_config_is_admin(c, "alpha-key"));
	gw_config_unref(c);
	rm_tmp();
}
END_TEST

/* Keys beyond the bound are refused at the section that is one too many. */
START_TEST(test_keys_bound)
{
	enum { N = 10001, LINE = 128 };
	char *conf = malloc((size_t)N * LINE + 1), err[512], want[512];
	size_t len = 0;
	const char *path;
	struct gw_config *c;

	ck_assert_ptr_nonnull(conf);
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(conf + len, LINE, "[key.k%d]\nsha256 = %064x\n", i, i + 1);
	c = load_text(conf, NULL, err, sizeof(err), &path, NULL);
	ck_assert_ptr_null(c);
	snprintf(want, sizeof(want), "%s:%d: [key.k10000] too many keys (at most 10000)", path,
		 2 * (N - 1) + 1);
	ck_assert_str_eq(err, want);
	rm_tmp();

	/* exactly the bound loads, and the last key is found */
	conf[len - strlen("[key.k10000]\nsha256 = ") - 65] = '\0';
	c = load_ok(conf, NULL);
	ck_assert_uint_eq(c->n_keys, 10000);
	ck_assert_str_eq(c->keys[9999].name, "k9999");
	gw_config_unref(c);
	rm_tmp();
	free(conf);
}
END_TEST

START_TEST(test_admin_key)
{
	const char *conf = "[auth]\nadmin_key_sha256 = " H_ADMIN "\n";
	struct gw_config *c;
	char long_key[1026];

	/* none by default: nothing is the admin key */
	c = load_ok(NULL, NULL);
	ck_assert(!c->has_admin_key);
	ck_assert(!gw_config_is_admin(c, "admin-key"));
	ck_assert(!gw_config_is_admin(c, ""));
	gw_config_unref(c);
	c = load_ok("[auth]\nadmin_key_sha256 =\n", NULL);
	ck_assert(!c->has_admin_key);
	ck_assert(!gw_config_is_admin(c, ""));
	gw_config_unref(c);
	rm_tmp();

	/* from the file's hash (any case) */
	c = load_ok(conf, NULL);
	ck_assert(c->has_admin_key);
	ck_assert(!c->auth_enabled);
	ck_assert(gw_config_is_admin(c, "admin-key"));
	ck_assert(!gw_config_is_admin(c, "admin-key2"));
	ck_assert(!gw_config_is_admin(c, "Admin-key"));
	ck_assert(!gw_config_is_admin(c, H_ADMIN));
	ck_assert(!gw_config_is_admin(c, ""));
	ck_assert(!gw_config_is_admin(c, NULL));
	ck_assert(!gw_config_is_admin(NULL, "admin-key"));
	ck_assert_ptr_null(gw_config_key(c, "admin-key")); /* not a gateway key */
	gw_config_unref(c);
	rm_tmp();
	c = load_ok("[auth]\nadmin_key_sha256 = "
		    "69A5265506C94C77B787A7D7377B7685A0EFF82E33920A71E7EE22CD6154953E\n", NULL);
	ck_assert(gw_config_is_admin(c, "admin-key"));
	gw_config_unref(c);
	rm_tmp();

	/* LLMGW_ADMIN_KEY is the key itself, and wins over the file's hash */
	setenv("LLMGW_ADMIN_KEY", "env-admin", 1);
	c = load_ok(conf, NULL);
	ck_assert(c->has_admin_key);
	ck_assert(gw_config_is_admin(c, "env-admin"));
	ck_assert(!gw_config_is_admin(c, "admin-key"));
	gw_config_unref(c);
	rm_tmp();
	c = load_ok(NULL, NULL);
	ck_assert(gw_config_is_admin(c, "env-admin"));
	gw_config_unref(c);

	/* also from .env, below the real environment */
	c = load_ok(conf, "LLMGW_ADMIN_KEY=dotenv-admin\n");
	ck_assert(gw_config_is_admin(c, "env-admin"));
	gw_config_unref(c);
	rm_tmp();
	unsetenv("LLMGW_ADMIN_KEY");
	c = load_ok(conf, "LLMGW_ADMIN_KEY='dotenv-admin'\n");
	ck_assert(gw_config_is_admin(c, "dotenv-admin"));
	ck_assert(!gw_config_is_admin(c, "admin-key"));
	gw_config_unref(c);
	rm_tmp();

	/* set but empty counts as unset: the file's hash stays */
	setenv("LLMGW_ADMIN_KEY", "", 1);
	c = load_ok(conf, NULL);
	ck_assert(gw_config_is_admin(c, "admin-key"));
	gw_config_unref(c);
	rm_tmp();

	/* errors never echo the key */
	expect_env_error("LLMGW_ADMIN_KEY", "two words",
			 "must be at most 1024 printable characters without blanks");
	memset(long_key, 'k', sizeof(long_key) - 1);
	long_key[sizeof(long_key) - 1] = '\0';
	expect_env_error("LLMGW_ADMIN_KEY", long_key,
			 "must be at most 1024 printable characters without blanks");
	long_key[1024] = '\0';
	setenv("LLMGW_ADMIN_KEY", long_key, 1);
	c = load_ok(NULL, NULL);
	ck_assert(gw_config_is_admin(c, long_key));
	gw_config_unref(c);
}
END_TEST

START_TEST(test_names)
{
	ck_assert_str_eq(gw_priority_name(GW_PRIO_CRITICAL), "CRITICAL");
	ck_assert_str_eq(gw_priority_name(GW_PRIO_HIGH), "HIGH");
	ck_assert_str_eq(gw_priority_name(GW_PRIO_MEDIUM), "MEDIUM");
	ck_assert_str_eq(gw_priority_name(GW_PRIO_LOW), "LOW");
	ck_assert_str_eq(gw_priority_name(GW_PRIO_COUNT), "UNKNOWN");
	ck_assert_str_eq(gw_provider_name(GW_PROV_OPENROUTER), "openrouter");
	ck_assert_str_eq(gw_provider_name(GW_PROV_ANTHROPIC), "anthropic");
	ck_assert_str_eq(gw_provider_name(GW_PROV_OPENAI), "openai");
	ck_assert_str_eq(gw_provider_name(GW_PROV_COUNT), "unknown");
	for (int p = 0; p < GW_PROV_COUNT; p++)
		ck_assert_int_eq(gw_provider_from_name(gw_provider_name((enum gw_provider_id)p)), p);
	ck_assert_int_eq(gw_provider_from_name("OpenAI"), -1);
	ck_assert_int_eq(gw_provider_from_name("mistral"), -1);
	ck_assert_int_eq(gw_provider_from_name(NULL), -1);
}
END_TEST

/* The model section's provider keys are the provider names. */
START_TEST(test_model_keys_are_provider_names)
{
	char conf[256], want[32];
	struct gw_config *c;

	for (int p = 0; p < GW_PROV_COUNT; p++) {
		snprintf(want, sizeof(want), "up-%d", p);
		snprintf(conf, sizeof(conf), "[model.m]\n%s = %s\n",
			 gw_provider_name((enum gw_provider_id)p), want);
		c = load_ok(conf, NULL);
		for (int q = 0; q < GW_PROV_COUNT; q++) {
			if (q == p)
				ck_assert_str_eq(c->models[0].upstream[q], want);
			else
				ck_assert_ptr_null(c->models[0].upstream[q]);
		}
		gw_config_unref(c);
		rm_tmp();
	}
}
END_TEST

Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("load");

	tcase_add_checked_fixture(tc, clear_env, rm_tmp);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_defaults_without_file);
	tcase_add_test(tc, test_shipped_conf);
	tcase_add_test(tc, test_env_wins_over_file);
	tcase_add_test(tc, test_dotenv_precedence);
	tcase_add_test(tc, test_dotenv_missing_and_errors);
	tcase_add_test(tc, test_unknown_key_line);
	tcase_add_loop_test(tc, test_bad_values, 0, (int)(sizeof(bad_cases) / sizeof(bad_cases[0])));
	tcase_add_test(tc, test_bad_env_values);
	tcase_add_test(tc, test_long_line);
	tcase_add_test(tc, test_long_section_name);
	tcase_add_test(tc, test_burst_auto);
	tcase_add_test(tc, test_budgets);
	tcase_add_test(tc, test_model_mapping);
	tcase_add_test(tc, test_enable_cache);
	tcase_add_test(tc, test_timeout_decimals);
	tcase_add_test(tc, test_state_dir_precedence);
	tcase_add_test(tc, test_conf_path_from_env);
	tcase_add_test(tc, test_services_and_values);
	tcase_add_test(tc, test_any_usable);
	tcase_add_test(tc, test_refcount);
	tcase_add_test(tc, test_async_retention);
	tcase_add_test(tc, test_keys);
	tcase_add_test(tc, test_keys_bound);
	tcase_add_test(tc, test_admin_key);
	suite_add_tcase(s, tc);

	tc = tcase_create("parse");
	tcase_add_checked_fixture(tc, clear_env, rm_tmp);
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, test_price_parsing);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_model_keys_are_provider_names);
	suite_add_tcase(s, tc);
	return s;
}
