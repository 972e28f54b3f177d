/*
 * scheduler.h - the scheduler: admission into the priority queues, and the
 * dispatch of queued jobs to workers when their provider has a token and
 * a free slot. Dispatch passes run on the thread that submits a job or
 * frees a slot; the scheduler's own thread handles what waits for time
 * (token refills, cooldown ends, aging, deadlines).
 *
 * Dispatch rule: jobs are considered in run order (queue.h). A job's
 * provider is the first in its fallback chain that has a key, maps the
 * model and is not cooling down. A job whose provider lacks capacity
 * waits, and so does every later job for that provider; later jobs for
 * other providers may go ahead (they take nothing the waiting job needs).
 * Queued jobs past their deadline are answered 504.
 */
#ifndef GW_SCHEDULER_H
#define GW_SCHEDULER_H

#include "job.h"
#include "limiter.h"

struct gw_sched;
struct gw_workers;

struct gw_sched_snapshot {
	struct {
		unsigned depth;
		int64_t oldest_ms;
	} queues[GW_PRIO_COUNT];
	struct {
		unsigned rpm;
		unsigned burst;
		double tokens;
		unsigned in_flight;
		unsigned concurrency;
		int64_t cooldown_ms;      /* remaining, 0 when not cooling */
	} limiters[GW_PROV_COUNT];
	unsigned live;                    /* admitted, not yet answered */
};

/* A scheduler for conf (a reference is taken), not yet running; or NULL. */
struct gw_sched *gw_sched_new(struct gw_config *conf);

/* Starts the dispatch thread, handing jobs to w. Returns 0 or -errno. */
int gw_sched_start(struct gw_sched *s, struct gw_workers *w);

/*
 * Admits job at job->prio. On 0 the scheduler holds a reference and will
 * answer the job exactly once. Otherwise the job is untouched and err is
 * filled: -ENOSPC (429 queue_full with Retry-After) or -ESHUTDOWN (503).
 */
int gw_sched_submit(struct gw_sched *s, struct gw_job *job, struct gw_error *err);

/*
 * An attempt of job on job->provider ended (worker thread). Frees the
 * provider's slot and, when cooldown_until_us is non-zero, cools the
 * provider down until then. With retry the job is queued again, first at
 * its level, for the next provider; otherwise its answer is final and the
 * scheduler finishes it.
 */
void gw_sched_attempt_end(struct gw_sched *s, struct gw_job *job, bool retry,
			  int64_t cooldown_until_us);

/* Finishes a job the scheduler owns without an attempt (e.g. shutdown). */
void gw_sched_finish(struct gw_sched *s, struct gw_job *job);

/* New limits, bounds and aging from conf (reload). */
void gw_sched_reconfigure(struct gw_sched *s, struct gw_config *conf);

/* Refuses new submissions from now on (503). */
void gw_sched_drain(struct gw_sched *s);

/* Answers every queued job with err. */
void gw_sched_fail_queued(struct gw_sched *s, const struct gw_error *err);

/* Admitted jobs not yet answered. */
unsigned gw_sched_live(struct gw_sched *s);

/* Waits until no job is live or deadline_us (monotonic) passes. Returns live count. */
unsigned gw_sched_wait_idle(struct gw_sched *s, int64_t deadline_us);

void gw_sched_snapshot(struct gw_sched *s, struct gw_sched_snapshot *out);

/* Stops the thread (after queued jobs were answered) and frees. Accepts NULL. */
void gw_sched_free(struct gw_sched *s);

#endif
