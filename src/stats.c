/*
 * stats.c - formats the ledger for people and machines: the /stats JSON
 * document, its CSV form and the Prometheus /metrics text.
 *
 * Everything is formatted from one gw_ledger_snapshot copy, so a page is
 * consistent and the ledger lock is never held while printing. Money is
 * kept as integer pico-dollars up to this point; JSON gets it twice, as
 * a float in USD for people and as exact integers (*_pusd) for programs.
 * CSV and Prometheus get exact decimal text printed from the integers.
 */
#include "stats.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Large enough for the bounded ledger's every series; never reached. */
#define STATS_TEXT_MAX ((size_t)64 << 20)

static double usd(gw_pusd v)
{
	return (double)(v / GW_PUSD_PER_USD) + (double)(v % GW_PUSD_PER_USD) / 1e12;
}

static double ratio(int64_t num, int64_t den)
{
	return den > 0 ? (double)num / (double)den : 0.0;
}

/* Average cost per request in pico-dollars, rounded to nearest. */
static gw_pusd avg_cost(const struct gw_ledger_counts *c)
{
	if (c->requests <= 0)
		return 0;
	return (gw_pusd)(((__int128)c->cost * 2 + c->requests) / ((__int128)c->requests * 2));
}

/* ---- /stats JSON ---- */

static json_t *counts_json(const struct gw_ledger_counts *c)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:f,s:f,s:f,s:I,s:I}",
			 "requests", (json_int_t)c->requests,
			 "cache_hits", (json_int_t)c->cache_hits,
			 "errors", (json_int_t)c->errors,
			 "prompt_tokens", (json_int_t)c->prompt_tokens,
			 "completion_tokens", (json_int_t)c->completion_tokens,
			 "cost_usd", usd(c->cost),
			 "saved_usd", usd(c->saved),
			 "cache_hit_rate", ratio(c->cache_hits, c->requests),
			 "error_rate", ratio(c->errors, c->requests),
			 "avg_cost_usd", usd(avg_cost(c)),
			 "cost_pusd", (json_int_t)c->cost,
			 "saved_pusd", (json_int_t)c->saved);
}

/* Sets key to v (stolen); false when v is NULL or the set failed. */
static bool put(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0;
}

static bool in_order(const struct gw_config *conf, int p)
{
	for (unsigned i = 0; conf && i < conf->n_order; i++)
		if ((int)conf->order[i] == p)
			return true;
	return false;
}

static json_t *period_json(gw_pusd limit, gw_pusd spent, gw_pusd reserved, int64_t left_s)
{
	return json_pack("{s:f,s:I,s:f,s:I,s:I,s:I}",
			 "limit_usd", usd(limit), "limit_pusd", (json_int_t)limit,
			 "spent_usd", usd(spent), "spent_pusd", (json_int_t)spent,
			 "reserved_pusd", (json_int_t)reserved, "resets_in_s", (json_int_t)left_s);
}

static json_t *budget_json(const struct gw_ledger_snap *s, gw_pusd daily, gw_pusd monthly,
			   const struct gw_ledger_budget *b)
{
	static const struct gw_ledger_budget none;
	if (!b)
		b = &none;
	return json_pack("{s:o,s:o}",
			 "daily", period_json(daily, b->day == s->day ? b->day_spent : 0,
					      b->reserved, s->day_left_s),
			 "monthly", period_json(monthly, b->month == s->month ? b->month_spent : 0,
						b->reserved, s->month_left_s));
}

static int cmp_named_key(const void *a, const void *b)
{
	return strcmp(((const struct gw_ledger_named *)a)->name,
		      ((const struct gw_ledger_named *)b)->name);
}

static json_t *budgets_json(const struct gw_ledger_snap *s, const struct gw_config *conf)
{
	json_t *o = json_object(), *svcs = json_object();
	if (!o || !svcs)
		goto fail;
	if (!put(o, "global", budget_json(s, conf ? conf->budget_daily : 0,
					  conf ? conf->budget_monthly : 0, &s->global)))
		goto fail;
	for (size_t i = 0; conf && i < conf->n_services; i++) {
		const struct gw_service_conf *sc = &conf->services[i];
		if (sc->budget_daily <= 0 && sc->budget_monthly <= 0)
			continue;
		struct gw_ledger_named key = { .name = sc->name };
		const struct gw_ledger_named *e = bsearch(&key, s->services, s->n_services,
							  sizeof(*s->services), cmp_named_key);
		if (!put(svcs, sc->name, budget_json(s, sc->budget_daily, sc->budget_monthly,
						     e ? &e->b : NULL)))
			goto fail;
	}
	if (!put(o, "services", svcs))
		goto fail_o;
	return o;
fail:
	json_decref(svcs);
fail_o:
	json_decref(o);
	return NULL;
}

static json_t *named_json(const struct gw_ledger_named *v, size_t n)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < n; i++) {
		if (!put(o, v[i].name, counts_json(&v[i].c))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *providers_json(const struct gw_ledger_snap *s, const struct gw_config *conf)
{
	json_t *o = json_object();
	/* Configured order first, then any other slot that saw requests. */
	for (unsigned i = 0; o && conf && i < conf->n_order; i++) {
		int p = (int)conf->order[i];
		if (!put(o, gw_ledger_provider_name(p), counts_json(&s->providers[p])))
			goto fail;
	}
	for (int p = 0; o && p < GW_LEDGER_PROV_SLOTS; p++) {
		if ((p < GW_PROV_COUNT && in_order(conf, p)) || s->providers[p].requests == 0)
			continue;
		if (!put(o, gw_ledger_provider_name(p), counts_json(&s->providers[p])))
			goto fail;
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *priorities_json(const struct gw_ledger_snap *s)
{
	json_t *o = json_object();
	for (int p = 0; o && p < GW_PRIO_COUNT; p++) {
		if (!put(o, gw_priority_name((enum gw_priority)p), counts_json(&s->priorities[p]))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *queues_json(const struct gw_sched_snapshot *snap)
{
	json_t *o = json_object();
	for (int p = 0; o && p < GW_PRIO_COUNT; p++) {
		if (!put(o, gw_priority_name((enum gw_priority)p),
			 json_pack("{s:I,s:I}",
				   "depth", (json_int_t)(snap ? snap->queues[p].depth : 0),
				   "oldest_ms", (json_int_t)(snap ? snap->queues[p].oldest_ms : 0)))) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *limiters_json(const struct gw_config *conf, const struct gw_sched_snapshot *snap)
{
	json_t *o = json_object();
	for (unsigned i = 0; o && conf && i < conf->n_order; i++) {
		int p = (int)conf->order[i];
		const struct gw_provider_conf *pc = &conf->prov[p];
		json_t *v;
		if (snap)
			v = json_pack("{s:I,s:I,s:f,s:I,s:I,s:I}",
				      "rpm", (json_int_t)snap->limiters[p].rpm,
				      "burst", (json_int_t)snap->limiters[p].burst,
				      "tokens", snap->limiters[p].tokens,
				      "in_flight", (json_int_t)snap->limiters[p].in_flight,
				      "concurrency", (json_int_t)snap->limiters[p].concurrency,
				      "cooldown_ms", (json_int_t)snap->limiters[p].cooldown_ms);
		else
			v = json_pack("{s:I,s:I,s:f,s:I,s:I,s:I}",
				      "rpm", (json_int_t)pc->rpm, "burst", (json_int_t)pc->burst,
				      "tokens", 0.0, "in_flight", (json_int_t)0,
				      "concurrency", (json_int_t)pc->concurrent,
				      "cooldown_ms", (json_int_t)0);
		if (!put(o, gw_provider_name((enum gw_provider_id)p), v)) {
			json_decref(o);
			return NULL;
		}
	}
	return o;
}

static json_t *history_json(const struct gw_ledger_snap *s)
{
	json_t *a = json_array();
	for (int i = 0; a && i < GW_LEDGER_HISTORY; i++) {
		const struct gw_ledger_minute *m = &s->history[i];
		if (json_array_append_new(a, json_pack("{s:I,s:I,s:f,s:I,s:I,s:I}",
				"minute", (json_int_t)m->minute,
				"requests", (json_int_t)m->requests,
				"cost_usd", usd(m->cost),
				"cost_pusd", (json_int_t)m->cost,
				"cache_hits", (json_int_t)m->cache_hits,
				"errors", (json_int_t)m->errors))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

char *gw_stats_json(struct gw_ledger *l, const struct gw_config *conf,
		    const struct gw_sched_snapshot *snap, int64_t uptime_s)
{
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	json_t *root = json_object();
	char *out = NULL;

	if (!s || !root)
		goto out;
	if (!put(root, "uptime_s", json_integer(uptime_s)) ||
	    !put(root, "since", json_integer(s->since_s)) ||
	    !put(root, "totals", counts_json(&s->totals)) ||
	    !put(root, "services", named_json(s->services, s->n_services)) ||
	    !put(root, "providers", providers_json(s, conf)) ||
	    !put(root, "models", named_json(s->models, s->n_models)) ||
	    !put(root, "priorities", priorities_json(s)) ||
	    !put(root, "queues", queues_json(snap)) ||
	    !put(root, "limiters", limiters_json(conf, snap)) ||
	    !put(root, "projection_usd", json_pack("{s:f,s:f,s:f}",
			"hourly", usd(s->projection_hourly), "daily", usd(s->projection_daily),
			"monthly", usd(s->projection_monthly))) ||
	    !put(root, "projection_pusd", json_pack("{s:I,s:I,s:I}",
			"hourly", (json_int_t)s->projection_hourly,
			"daily", (json_int_t)s->projection_daily,
			"monthly", (json_int_t)s->projection_monthly)) ||
	    !put(root, "budgets", budgets_json(s, conf)) ||
	    !put(root, "history", history_json(s)))
		goto out;
	out = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(15));
out:
	json_decref(root);
	gw_ledger_snap_free(s);
	return out;
}

/* ---- CSV ---- */

static int csv_field(struct gw_buf *b, const char *v)
{
	if (!strpbrk(v, ",\"\r\n"))
		return gw_buf_append(b, v, strlen(v));
	int rc = gw_buf_append(b, "\"", 1);
	for (; rc == 0 && *v; v++)
		rc = *v == '"' ? gw_buf_append(b, "\"\"", 2) : gw_buf_append(b, v, 1);
	return rc ? rc : gw_buf_append(b, "\"", 1);
}

char *gw_stats_csv(struct gw_ledger *l)
{
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	struct gw_buf b;
	int rc;

	if (!s)
		return NULL;
	gw_buf_init(&b, STATS_TEXT_MAX);
	rc = gw_buf_printf(&b, "service,requests,cache_hits,errors,prompt_tokens,"
			   "completion_tokens,cost_usd,saved_usd,cache_hit_rate,error_rate,"
			   "avg_cost_usd\n");
	for (size_t i = 0; rc == 0 && i < s->n_services; i++) {
		const struct gw_ledger_counts *c = &s->services[i].c;
		char cost[40], saved[40], avg[40];
		gw_ledger_format_usd(c->cost, cost, sizeof(cost));
		gw_ledger_format_usd(c->saved, saved, sizeof(saved));
		gw_ledger_format_usd(avg_cost(c), avg, sizeof(avg));
		rc = csv_field(&b, s->services[i].name);
		if (rc == 0)
			rc = gw_buf_printf(&b, ",%" PRId64 ",%" PRId64 ",%" PRId64 ",%" PRId64
					   ",%" PRId64 ",%s,%s,%.6f,%.6f,%s\n",
					   c->requests, c->cache_hits, c->errors, c->prompt_tokens,
					   c->completion_tokens, cost, saved,
					   ratio(c->cache_hits, c->requests),
					   ratio(c->errors, c->requests), avg);
	}
	gw_ledger_snap_free(s);
	if (rc < 0) {
		gw_buf_free(&b);
		return NULL;
	}
	return gw_buf_steal(&b, NULL);
}

/* ---- Prometheus ---- */

/* Appends v as a label value: backslash, double quote and newline escaped. */
static int prom_escape(struct gw_buf *b, const char *v)
{
	int rc = 0;
	for (; rc == 0 && *v; v++) {
		if (*v == '\\')
			rc = gw_buf_append(b, "\\\\", 2);
		else if (*v == '"')
			rc = gw_buf_append(b, "\\\"", 2);
		else if (*v == '\n')
			rc = gw_buf_append(b, "\\n", 2);
		else
			rc = gw_buf_append(b, v, 1);
	}
	return rc;
}

static int family(struct gw_buf *b, const char *name, const char *type, const char *help)
{
	return gw_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* name{service="..",provider="..",model="..",priority="..",cache=".."[,extra] */
static int series_head(struct gw_buf *b, const char *name, const struct gw_ledger_series *se)
{
	int rc = gw_buf_printf(b, "%s{service=\"", name);
	if (rc == 0)
		rc = prom_escape(b, se->service);
	if (rc == 0)
		rc = gw_buf_printf(b, "\",provider=\"%s\",model=\"",
				   gw_ledger_provider_name(se->provider < 0 ? GW_PROV_COUNT
									    : se->provider));
	if (rc == 0)
		rc = prom_escape(b, se->model);
	if (rc == 0)
		rc = gw_buf_printf(b, "\",priority=\"%s\",cache=\"%s\"", gw_priority_name(se->prio),
				   se->cache_hit ? "hit" : "miss");
	return rc;
}

enum series_value { SV_REQUESTS, SV_ERRORS, SV_PROMPT, SV_COMPLETION, SV_COST, SV_SAVED };

static int series_family(struct gw_buf *b, const struct gw_ledger_snap *s, const char *name,
			 enum series_value what)
{
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < s->n_series; i++) {
		const struct gw_ledger_series *se = &s->series[i];
		char money[40];
		rc = series_head(b, name, se);
		if (rc)
			break;
		switch (what) {
		case SV_REQUESTS:
			rc = gw_buf_printf(b, "} %" PRId64 "\n", se->c.requests);
			break;
		case SV_ERRORS:
			rc = gw_buf_printf(b, "} %" PRId64 "\n", se->c.errors);
			break;
		case SV_PROMPT:
			rc = gw_buf_printf(b, ",kind=\"prompt\"} %" PRId64 "\n", se->c.prompt_tokens);
			break;
		case SV_COMPLETION:
			rc = gw_buf_printf(b, ",kind=\"completion\"} %" PRId64 "\n",
					   se->c.completion_tokens);
			break;
		case SV_COST:
		case SV_SAVED:
			gw_ledger_format_usd(what == SV_COST ? se->c.cost : se->c.saved, money,
					     sizeof(money));
			rc = gw_buf_printf(b, "} %s\n", money);
			break;
		}
	}
	return rc;
}

/* Bucket bound in seconds, shortest exact text: 1 ms -> "0.001", 2500 -> "2.5". */
static void le_text(int64_t ms, char *out, size_t len)
{
	char *dot;
	size_t n;
	snprintf(out, len, "%" PRId64 ".%03" PRId64, ms / 1000, ms % 1000);
	n = strlen(out);
	while (n > 0 && out[n - 1] == '0')
		out[--n] = '\0';
	dot = strchr(out, '.');
	if (dot && dot[1] == '\0')
		*dot = '\0';
}

static int histogram(struct gw_buf *b, const struct gw_config *conf, const char *name,
		     const struct gw_ledger_hist h[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT],
		     bool with_none)
{
	int rc = 0;
	for (int p = 0; rc == 0 && p < GW_LEDGER_PROV_SLOTS; p++) {
		bool listed = p < GW_PROV_COUNT ? in_order(conf, p) : with_none;
		for (int q = 0; rc == 0 && q < GW_PRIO_COUNT; q++) {
			const struct gw_ledger_hist *x = &h[p][q];
			const char *pn = gw_ledger_provider_name(p);
			const char *qn = gw_priority_name((enum gw_priority)q);
			uint64_t cum = 0;
			if (!listed && x->count == 0)
				continue;
			for (int i = 0; rc == 0 && i < GW_LEDGER_HIST_BUCKETS; i++) {
				char le[32];
				if (i < GW_LEDGER_HIST_BUCKETS - 1)
					le_text(gw_ledger_hist_bounds_ms[i], le, sizeof(le));
				else
					snprintf(le, sizeof(le), "+Inf");
				cum += x->buckets[i];
				rc = gw_buf_printf(b,
						   "%s_bucket{provider=\"%s\",priority=\"%s\",le=\"%s\"} %" PRIu64 "\n",
						   name, pn, qn, le, cum);
			}
			if (rc == 0)
				rc = gw_buf_printf(b,
						   "%s_sum{provider=\"%s\",priority=\"%s\"} %" PRId64 ".%06" PRId64 "\n"
						   "%s_count{provider=\"%s\",priority=\"%s\"} %" PRIu64 "\n",
						   name, pn, qn, x->sum_us / 1000000, x->sum_us % 1000000,
						   name, pn, qn, x->count);
		}
	}
	return rc;
}

static int gauges(struct gw_buf *b, const struct gw_config *conf,
		  const struct gw_sched_snapshot *snap, int64_t uptime_s)
{
	int rc = family(b, "llmgw_queue_depth", "gauge", "Jobs waiting in the queue of a priority.");
	for (int q = 0; rc == 0 && q < GW_PRIO_COUNT; q++)
		rc = gw_buf_printf(b, "llmgw_queue_depth{priority=\"%s\"} %u\n",
				   gw_priority_name((enum gw_priority)q),
				   snap ? snap->queues[q].depth : 0u);
	if (rc == 0)
		rc = family(b, "llmgw_queue_oldest_seconds", "gauge",
			    "Wait so far of the oldest job in the queue of a priority.");
	for (int q = 0; rc == 0 && q < GW_PRIO_COUNT; q++) {
		int64_t ms = snap ? snap->queues[q].oldest_ms : 0;
		rc = gw_buf_printf(b, "llmgw_queue_oldest_seconds{priority=\"%s\"} %" PRId64 ".%03" PRId64 "\n",
				   gw_priority_name((enum gw_priority)q), ms / 1000, ms % 1000);
	}
	if (rc == 0)
		rc = family(b, "llmgw_limiter_tokens", "gauge",
			    "Requests a provider's rate bucket allows right now.");
	for (unsigned i = 0; rc == 0 && conf && i < conf->n_order; i++) {
		int p = (int)conf->order[i];
		rc = gw_buf_printf(b, "llmgw_limiter_tokens{provider=\"%s\"} %.6f\n",
				   gw_provider_name((enum gw_provider_id)p),
				   snap ? snap->limiters[p].tokens : 0.0);
	}
	if (rc == 0)
		rc = family(b, "llmgw_limiter_in_flight", "gauge",
			    "Upstream calls running on a provider.");
	for (unsigned i = 0; rc == 0 && conf && i < conf->n_order; i++) {
		int p = (int)conf->order[i];
		rc = gw_buf_printf(b, "llmgw_limiter_in_flight{provider=\"%s\"} %u\n",
				   gw_provider_name((enum gw_provider_id)p),
				   snap ? snap->limiters[p].in_flight : 0u);
	}
	if (rc == 0)
		rc = family(b, "llmgw_limiter_cooldown_seconds", "gauge",
			    "Cooldown left for a provider after a 429, 0 when not cooling.");
	for (unsigned i = 0; rc == 0 && conf && i < conf->n_order; i++) {
		int p = (int)conf->order[i];
		int64_t ms = snap ? snap->limiters[p].cooldown_ms : 0;
		if (ms < 0)
			ms = 0;
		rc = gw_buf_printf(b, "llmgw_limiter_cooldown_seconds{provider=\"%s\"} %" PRId64 ".%03" PRId64 "\n",
				   gw_provider_name((enum gw_provider_id)p), ms / 1000, ms % 1000);
	}
	if (rc == 0)
		rc = family(b, "llmgw_uptime_seconds", "gauge", "Seconds since the daemon started.");
	if (rc == 0)
		rc = gw_buf_printf(b, "llmgw_uptime_seconds %" PRId64 "\n", uptime_s);
	return rc;
}

char *gw_stats_metrics(struct gw_ledger *l, const struct gw_config *conf,
		       const struct gw_sched_snapshot *snap, int64_t uptime_s)
{
	static const struct {
		const char *name;
		const char *help;
		enum series_value what;
	} counters[] = {
		{ "llmgw_requests_total", "Chat requests answered, cache hits and errors included.", SV_REQUESTS },
		{ "llmgw_errors_total", "Chat requests answered with a status of 400 or more.", SV_ERRORS },
		{ "llmgw_tokens_total", "Tokens used upstream, by kind (prompt or completion).", SV_PROMPT },
		{ NULL, NULL, SV_COMPLETION },
		{ "llmgw_cost_usd_total", "Money paid upstream, in USD (exact to the pico-dollar).", SV_COST },
		{ "llmgw_saved_usd_total", "What the cache hits would have cost, in USD.", SV_SAVED },
	};
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	struct gw_buf b;
	int rc = 0;

	if (!s)
		return NULL;
	gw_buf_init(&b, STATS_TEXT_MAX);
	for (size_t i = 0; rc == 0 && i < sizeof(counters) / sizeof(counters[0]); i++) {
		const char *name = counters[i].name ? counters[i].name : counters[i - 1].name;
		if (counters[i].name)
			rc = family(&b, name, "counter", counters[i].help);
		if (rc == 0)
			rc = series_family(&b, s, name, counters[i].what);
	}
	if (rc == 0)
		rc = family(&b, "llmgw_queue_wait_seconds", "histogram",
			    "Time a request spent queued before its upstream call.");
	if (rc == 0)
		rc = histogram(&b, conf, "llmgw_queue_wait_seconds", s->queue_wait, false);
	if (rc == 0)
		rc = family(&b, "llmgw_upstream_latency_seconds", "histogram",
			    "Duration of upstream calls.");
	if (rc == 0)
		rc = histogram(&b, conf, "llmgw_upstream_latency_seconds", s->upstream, false);
	if (rc == 0)
		rc = gauges(&b, conf, snap, uptime_s);
	gw_ledger_snap_free(s);
	if (rc < 0) {
		gw_buf_free(&b);
		return NULL;
	}
	return gw_buf_steal(&b, NULL);
}
