/*
 * job.h - one accepted chat request on its way through the gateway.
 *
 * Lifecycle (enum gw_job_state):
 *   QUEUED   in the scheduler's queue, waiting for its turn and capacity
 *   RUNNING  an attempt is in flight on a worker (provider = current)
 *   DONE     answered: status/body (or error) are final
 * A retryable failure sends a RUNNING job back to QUEUED (at the front of
 * its level) for the next provider in the chain.
 *
 * Ownership: reference counted. The front holds one reference for the
 * connection; the scheduler holds one from a successful submit until it
 * calls gw_job_finish. gw_job_finish runs the done callback exactly once.
 */
#ifndef GW_JOB_H
#define GW_JOB_H

#include <pthread.h>
#include <stdatomic.h>

#include "buf.h"
#include "config.h"
#include "provider.h"
#include "queue.h"
#include "request.h"

enum gw_job_state {
	GW_JOB_QUEUED = 0,
	GW_JOB_RUNNING,
	GW_JOB_DONE
};

struct gw_job;
typedef void (*gw_job_done_fn)(struct gw_job *job, void *arg);

struct gw_job {
	atomic_int refs;
	atomic_bool finished;
	struct gw_qnode qn;             /* scheduler lock */
	struct gw_job *wnext;           /* worker inbox link */
	enum gw_job_state state;

	char id[GW_REQUEST_ID_MAX + 1];
	char service[GW_SERVICE_MAX + 1];
	enum gw_priority prio;          /* as admitted */
	struct gw_config *conf;         /* reference held */
	struct gw_chat chat;

	int64_t t_arrival_us;
	int64_t t_queued_us;            /* first entered the queue */
	int64_t t_dispatch_us;          /* first attempt started */
	int64_t deadline_us;            /* 0: none */

	/* Fallback state. */
	unsigned next_idx;              /* index into conf->order to consider next */
	int provider;                   /* current/last provider, -1 before any */
	unsigned attempts;
	struct gw_buf attempt_log;      /* "openrouter: HTTP 500; openai: timeout" */

	/* The answer. */
	int status;
	char *body;                     /* owned */
	size_t body_len;
	int retry_after_s;
	struct gw_usage usage;
	int64_t queue_us;               /* time spent queued, all attempts */
	int64_t upstream_us;

	gw_job_done_fn done;
	void *done_arg;
};

/* A new job with one reference, or NULL. conf gains a reference. */
struct gw_job *gw_job_new(struct gw_config *conf);

struct gw_job *gw_job_ref(struct gw_job *job);
/* Drops a reference; the last one frees everything. Accepts NULL. */
void gw_job_unref(struct gw_job *job);

/* Sets the answer to an OpenAI-shaped error. */
void gw_job_set_error(struct gw_job *job, const struct gw_error *err);

/* Appends "provider: reason" to the attempt log. */
void gw_job_log_attempt(struct gw_job *job, const char *provider, const char *reason);

/*
 * Marks the job DONE and runs its done callback; later calls do nothing.
 * Any thread may call it; the callback runs on the caller's thread.
 */
void gw_job_finish(struct gw_job *job);

#endif
