/*
 * stats.h - the ledger's surfaces: GET /stats (JSON), GET /stats?format=csv
 * and GET /metrics (Prometheus text exposition 0.0.4).
 *
 * Each function takes one consistent copy of the ledger
 * (gw_ledger_snapshot) and formats it without holding the ledger lock.
 * Money is printed from integer pico-dollars. Every function returns a
 * NUL-terminated malloc'd string that the caller frees, or NULL on OOM.
 */
#ifndef GW_STATS_H
#define GW_STATS_H

#include "config.h"
#include "ledger.h"
#include "scheduler.h"

/*
 * The /stats document (see docs/ledger.md): uptime_s, totals, services,
 * providers (those in conf->order, plus any other that has counts, plus
 * "none"), models, priorities (all four), queues and limiters (from snap;
 * limiters only for providers in conf->order), projection_usd,
 * projection_pusd, budgets, history (the last 60 minutes, oldest first).
 * snap may be NULL: queues and live limiter values are then 0.
 */
char *gw_stats_json(struct gw_ledger *l, const struct gw_config *conf,
		    const struct gw_sched_snapshot *snap, int64_t uptime_s);

/*
 * One header row, then one row per service (sorted by name):
 * service,requests,cache_hits,errors,prompt_tokens,completion_tokens,
 * cost_usd,saved_usd,cache_hit_rate,error_rate,avg_cost_usd
 * Lines end with "\n"; a field holding ',' or '"' is quoted (RFC 4180).
 */
char *gw_stats_csv(struct gw_ledger *l);

/* Prometheus text format 0.0.4; snap may be NULL (gauges then 0). */
char *gw_stats_metrics(struct gw_ledger *l, const struct gw_config *conf,
		       const struct gw_sched_snapshot *snap, int64_t uptime_s);

#endif
