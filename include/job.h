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
 *
 * Streams: a streamed job's bytes for the client collect in `out` under
 * `lock`; the front drains them. Once the first byte is pushed the job is
 * `started` and can no longer fall back. The front's connection pointer
 * (`conn`) is set and cleared under `lock`, so a worker never wakes a
 * connection that is gone; `suspended` says the connection waits for a
 * wake, so each suspend is matched by exactly one resume.
 */
#ifndef GW_JOB_H
#define GW_JOB_H

#include <pthread.h>
#include <stdatomic.h>

#include "buf.h"
#include "cache.h"
#include "config.h"
#include "ledger.h"
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
	const char *key_name;           /* gateway key used (points into conf), or NULL */
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
	bool no_retry;                  /* send x-should-retry: false */
	struct gw_usage usage;
	int64_t queue_us;               /* time spent queued, all attempts */
	int64_t upstream_us;

	/* Cache and booking. */
	const char *x_cache;            /* "HIT", "MISS", "BYPASS" (static) */
	char cache_key[GW_CACHE_KEY_MAX];
	bool cache_store;               /* store a successful answer under cache_key */
	unsigned cache_ttl_s;
	bool cache_hit;
	size_t prompt_chars;            /* request body size, for the budget estimate */
	struct gw_ledger_resv resv;     /* budget hold from admission to booking */
	gw_pusd cost;                   /* booked cost of this answer */
	gw_pusd saved;                  /* on a hit: what the call would have cost */
	struct gw_buf record;           /* streamed bytes as sent, for the cache */
	bool is_async;                  /* X-Async: the answer goes to Redis, not a connection */
	char async_id[48];

	gw_job_done_fn done;
	void *done_arg;

	/* Connection and stream state, under lock. */
	pthread_mutex_t lock;
	void *conn;                     /* the front's connection, NULL once gone */
	void (*wake)(void *conn);       /* resumes conn; called with lock held */
	bool suspended;
	struct gw_buf out;              /* stream bytes not yet written to the client */
	bool started;                   /* first stream byte pushed: no fallback */
	bool ended;                     /* no more stream bytes will come */
	bool stream_failed;             /* ended with an error event */
	bool client_gone;               /* the client left mid-stream: cancel upstream */
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
 * Appends stream bytes for the client (len may be 0) and wakes the
 * connection if it waits. end marks the stream complete; failed marks it
 * as ended by an error event. Returns -E2BIG when the client is too slow
 * and the bound is hit, -ENOMEM, or 0.
 */
int gw_job_stream_push(struct gw_job *job, const char *data, size_t len, bool end, bool failed);

/* Wakes the connection if it is suspended (lock taken inside). */
void gw_job_wake(struct gw_job *job);

/* True once the stream's first byte was pushed (lock taken inside). */
bool gw_job_started(struct gw_job *job);

/* True once the client left (lock taken inside). */
bool gw_job_client_gone(struct gw_job *job);

/*
 * Marks the job DONE and runs its done callback; later calls do nothing.
 * Any thread may call it; the callback runs on the caller's thread.
 */
void gw_job_finish(struct gw_job *job);

#endif
