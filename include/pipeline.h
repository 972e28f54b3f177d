/*
 * pipeline.h - what a chat job meets after the HTTP front accepted it:
 * the cache lookup, the budget hold, the queue; and, when it is answered,
 * the booking in the ledger, the cache write, the access-log line and the
 * async record. The front only parses, suspends and writes responses.
 *
 * Every job that enters gw_pipeline_run is answered exactly once through
 * job->done, which the pipeline sets; that callback books the job and
 * then wakes whatever waits for it (job->wake, set by the front).
 */
#ifndef GW_PIPELINE_H
#define GW_PIPELINE_H

#include <stdatomic.h>

#include "job.h"

struct gw_sched;
struct gw_ledger;
struct gw_cache;
struct gw_workers;

struct gw_pipeline {
	struct gw_sched *sched;
	struct gw_ledger *ledger;
	struct gw_cache *cache;      /* NULL: no cache */
	struct gw_workers *workers;  /* budget alert webhooks */
	const char *instance;        /* "host:port": this instance's Redis records */
	atomic_bool draining;        /* shutting down: async jobs stay pending */
};

/* What the request said about the cache. */
struct gw_cache_hints {
	bool no_cache;               /* Cache-Control: no-cache: skip the lookup, store */
	bool no_store;               /* Cache-Control: no-store: neither */
	const char *explicit_key;    /* X-Cache-Key; NULL or "": none */
};

/*
 * Runs a parsed job: cache lookup when it applies, else (or on a miss)
 * the budget hold and the queue. The pipeline takes its own references;
 * the caller keeps its own.
 */
void gw_pipeline_run(struct gw_pipeline *p, struct gw_job *job, const struct gw_cache_hints *h);

/*
 * Queues again an async job accepted before a restart (its Redis record,
 * see async.h) under conf. Logs and drops a record that no longer parses.
 */
void gw_pipeline_resume_async(struct gw_pipeline *p, struct gw_config *conf, const char *id,
			      const char *rec, size_t len);

#endif
