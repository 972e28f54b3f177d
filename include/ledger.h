/*
 * ledger.h - the cost ledger: what every answered chat request cost, who
 * asked for it, and whether the budgets allow the next one.
 *
 * One ledger per daemon, shared by every thread: all functions here are
 * thread-safe (one mutex, held only for counter arithmetic and copies).
 *
 * Money is integer pico-dollars (gw_pusd, see gw.h); floats appear only
 * when printing (stats.c). Counted, per service, per provider, per model,
 * per priority and in total: requests, cache hits, errors, prompt and
 * completion tokens, cost and saved cost. Plus per (service, provider,
 * model, priority, cache) series for /metrics, queue-wait and upstream
 * latency histograms per (provider, priority), a ring of the last 60 wall
 * clock minutes, and the daily/monthly spend that budgets are checked
 * against.
 *
 * Bounds: at most GW_LEDGER_MAX_SERVICES distinct service names and
 * GW_LEDGER_MAX_MODELS model names get their own counters; later new
 * names are counted under "_other" (a service named in the conf always
 * gets its own entry through gw_ledger_reserve). At most
 * GW_LEDGER_MAX_SERIES labelled series; later ones fold service and model
 * into "_other". Names are cut to GW_LEDGER_NAME_MAX bytes and any byte
 * outside printable ASCII becomes '?'.
 *
 * Budget flow for one request:
 *   gw_ledger_estimate -> gw_ledger_reserve (admission; may say -EDQUOT)
 *   ... the call runs ...
 *   gw_ledger_price -> gw_ledger_settle (spend) + gw_ledger_record (stats)
 * Spend against budgets comes only from gw_ledger_settle; gw_ledger_record
 * feeds the statistics only. So every successful reserve needs exactly
 * one settle (with 0 when nothing was paid), or its hold stays until the
 * process ends.
 */
#ifndef GW_LEDGER_H
#define GW_LEDGER_H

#include "config.h"
#include "provider.h"

#define GW_LEDGER_MAX_SERVICES 1000
#define GW_LEDGER_MAX_MODELS 1000
#define GW_LEDGER_MAX_SERIES 10000
#define GW_LEDGER_NAME_MAX 128
#define GW_LEDGER_OTHER "_other"
/* Provider name used for entries without a provider (cache hits, jobs
 * that never reached one). */
#define GW_LEDGER_NO_PROVIDER "none"
/* Provider slots of the per-provider arrays: the real ones, then "none". */
#define GW_LEDGER_PROV_SLOTS (GW_PROV_COUNT + 1)
/* Minutes kept in the per-minute history. */
#define GW_LEDGER_HISTORY 60
/* Default completion tokens assumed by gw_ledger_estimate. */
#define GW_LEDGER_DEFAULT_MAX_TOKENS 1024

/* Histogram buckets: upper bounds in ms, then +Inf. */
#define GW_LEDGER_HIST_BUCKETS 15
extern const int64_t gw_ledger_hist_bounds_ms[GW_LEDGER_HIST_BUCKETS - 1];

/* One answered chat request. Strings are copied; the caller keeps them. */
struct gw_ledger_entry {
	const char *service;          /* never NULL ("default" if it is) */
	int provider;                 /* enum gw_provider_id, or -1 (cache hit, or no provider) */
	const char *model;            /* client-facing model name; NULL counts as "_none" */
	enum gw_priority prio;        /* out of range counts as MEDIUM */
	bool cache_hit;
	bool error;                   /* status >= 400 */
	int64_t prompt_tokens, completion_tokens; /* used upstream; ignored on a hit */
	gw_pusd cost;                 /* paid for this call; ignored (0) on a hit */
	gw_pusd saved;                /* on a hit: what the call would have cost */
	int64_t queue_us, upstream_us;
};

/* A budget hold made by gw_ledger_reserve; lives in the job. */
struct gw_ledger_resv {
	bool active;                  /* set by reserve, cleared by settle */
	gw_pusd amount;               /* the estimate held */
	char service[GW_LEDGER_NAME_MAX + 1]; /* ledger entry the hold is on */
};

struct gw_ledger;

/* A new, empty ledger, or NULL on OOM. */
struct gw_ledger *gw_ledger_new(void);

/* Frees the ledger. Accepts NULL. Outstanding reservations die with it. */
void gw_ledger_free(struct gw_ledger *l);

/* Counts one answered request (statistics only, see the top comment). */
void gw_ledger_record(struct gw_ledger *l, const struct gw_ledger_entry *e);

/*
 * Cost of usage u of model under conf's price table: prompt_tokens *
 * price_in + completion_tokens * price_out, exactly. A provider-reported
 * cost (u->has_cost) wins. A model missing from the table, or without
 * both prices, costs 0 and sets *priced to false (priced may be NULL).
 * Negative token counts count as 0; the result saturates at INT64_MAX.
 */
gw_pusd gw_ledger_price(const struct gw_config *conf, const char *model,
			const struct gw_usage *u, bool *priced);

/*
 * The hold for a request before it runs: ceil(prompt_chars / 4) prompt
 * tokens at price_in plus max_tokens (GW_LEDGER_DEFAULT_MAX_TOKENS when
 * max_tokens <= 0) completion tokens at price_out. 0 for an unpriced model.
 */
gw_pusd gw_ledger_estimate(const struct gw_config *conf, const char *model,
			   size_t prompt_chars, int64_t max_tokens);

/*
 * Reserves estimate against service's daily/monthly budget and the global
 * ones (limits from conf; 0 means no limit). Refuses when, for any limit,
 * spent + reserved + estimate would exceed it, or spent + reserved has
 * already reached it: then returns -EDQUOT, sets *retry_after_s to the
 * seconds until the refusing period (UTC day or UTC month; the later one
 * when both refuse) ends, and writes a one-line reason into why. With
 * allow_over (e.g. CRITICAL when the conf says so) it never refuses.
 * On 0 the hold is in *res and must be settled exactly once.
 * retry_after_s and why may be NULL; res may not (-EINVAL).
 */
int gw_ledger_reserve(struct gw_ledger *l, const struct gw_config *conf, const char *service,
		      gw_pusd estimate, bool allow_over, struct gw_ledger_resv *res,
		      int *retry_after_s, char *why, size_t whylen);

/*
 * Replaces the hold in res with the real cost actual: the hold is
 * released and actual is added to the current day's and month's spend of
 * the service and of the global budget. Does nothing when res is NULL or
 * not active; clears res->active.
 */
void gw_ledger_settle(struct gw_ledger *l, struct gw_ledger_resv *res, gw_pusd actual);

/*
 * Budget alerts. Returns true, with a one-line message in msg, when the
 * global or a configured service's spend in the current UTC day or month
 * has reached fraction * limit and no alert for that (budget, period) at
 * this or a higher fraction was taken yet. One alert per call: call until
 * it returns false. The caller logs it and posts the webhook.
 */
bool gw_ledger_take_alert(struct gw_ledger *l, const struct gw_config *conf, double fraction,
			  char *msg, size_t msglen);

/*
 * Persistence. save writes a JSON snapshot (format "llmgw-ledger",
 * version 1, money as integer pico-dollars) to a temporary file in the
 * same directory, fsyncs it, renames it over path and fsyncs the
 * directory; a missing last directory component is created. Returns 0 or
 * a negative errno; on error path is untouched and no temporary file is
 * left. load restores every counter, the history and the budget spend:
 * 0 on success or when path does not exist, -EINVAL for a file that is
 * not a valid snapshot, another negative errno on I/O errors. On error
 * the ledger is not modified. Outstanding reservations are not saved.
 */
int gw_ledger_save(struct gw_ledger *l, const char *path);
/* The snapshot as compact JSON text (malloc'd), as gw_ledger_save writes it; NULL on OOM. */
char *gw_ledger_dump(struct gw_ledger *l, size_t *len);
/* Replaces every counter with a dumped snapshot. 0, -EINVAL (nothing changed) or -ENOMEM. */
int gw_ledger_restore(struct gw_ledger *l, const char *text, size_t len);
int gw_ledger_load(struct gw_ledger *l, const char *path);

/*
 * Test hook: pins the ledger's wall clock at now_s (0 returns to the real
 * clock). While nothing was recorded yet, it also moves the start time
 * that projections measure from.
 */
void gw_ledger_set_now(struct gw_ledger *l, int64_t now_s);

/* Writes v as exact decimal dollars ("0.0005253", "5.00") into buf. */
void gw_ledger_format_usd(gw_pusd v, char *buf, size_t len);

/* ---- read side: a consistent copy for stats.c and persistence ---- */

struct gw_ledger_counts {
	int64_t requests;
	int64_t cache_hits;
	int64_t errors;
	int64_t prompt_tokens;
	int64_t completion_tokens;
	gw_pusd cost;
	gw_pusd saved;
};

/* Spend of one budget holder (a service or the global budget). */
struct gw_ledger_budget {
	int32_t day;                  /* UTC day number (days since epoch) of day_spent */
	int32_t month;                /* year * 12 + month - 1 of month_spent */
	gw_pusd day_spent;
	gw_pusd month_spent;
	gw_pusd reserved;             /* outstanding holds */
	int32_t alert_day;            /* day of the last alert taken, 0: none */
	int32_t alert_day_bp;         /* its fraction, basis points */
	int32_t alert_month;
	int32_t alert_month_bp;
};

struct gw_ledger_named {
	const char *name;
	struct gw_ledger_counts c;
	struct gw_ledger_budget b;    /* services only */
};

struct gw_ledger_series {
	const char *service;
	int provider;                 /* enum gw_provider_id, or -1 */
	const char *model;
	enum gw_priority prio;
	bool cache_hit;
	struct gw_ledger_counts c;
};

struct gw_ledger_hist {
	uint64_t buckets[GW_LEDGER_HIST_BUCKETS]; /* per bucket, not cumulative */
	int64_t sum_us;
	uint64_t count;
};

struct gw_ledger_minute {
	int64_t minute;               /* unix seconds of the minute's start */
	int64_t requests;
	int64_t cache_hits;
	int64_t errors;
	gw_pusd cost;
};

struct gw_ledger_snap {
	int64_t now_s;                /* wall clock of the copy */
	int64_t since_s;              /* when counting started (survives save/load) */
	int32_t day, month;           /* current period keys */
	int64_t day_left_s;           /* until the UTC day ends */
	int64_t month_left_s;         /* until the UTC month ends */
	struct gw_ledger_counts totals;
	struct gw_ledger_counts providers[GW_LEDGER_PROV_SLOTS]; /* last: "none" */
	struct gw_ledger_counts priorities[GW_PRIO_COUNT];
	struct gw_ledger_named *services; /* sorted by name */
	size_t n_services;
	struct gw_ledger_named *models;   /* sorted by name */
	size_t n_models;
	struct gw_ledger_series *series;  /* sorted by service, model, provider, priority, cache */
	size_t n_series;
	struct gw_ledger_hist queue_wait[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT];
	struct gw_ledger_hist upstream[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT];
	/* The 60 minutes ending with the current one, oldest first. */
	struct gw_ledger_minute history[GW_LEDGER_HISTORY];
	/* Spend rate over the last hour (or since start when shorter). */
	gw_pusd projection_hourly, projection_daily, projection_monthly;
	struct gw_ledger_budget global;   /* rolled to the current periods */
	char *arena;                      /* private: the names */
};

/* A copy of everything, with spend rolled to the current periods; NULL on OOM. */
struct gw_ledger_snap *gw_ledger_snapshot(struct gw_ledger *l);
/* Accepts NULL. */
void gw_ledger_snap_free(struct gw_ledger_snap *s);

/* "openrouter", ..., or GW_LEDGER_NO_PROVIDER for slot GW_PROV_COUNT. */
const char *gw_ledger_provider_name(int slot);

#endif
