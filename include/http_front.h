/*
 * http_front.h - the HTTP front (libmicrohttpd, one epoll thread).
 *
 * It routes, bounds and validates requests, turns a chat request into a
 * job, suspends the connection while the job waits, and resumes it with
 * the answer. No network I/O other than the client's happens here.
 */
#ifndef GW_HTTP_FRONT_H
#define GW_HTTP_FRONT_H

#include "config.h"

struct gw_front;
struct gw_sched;
struct gw_ledger;
struct gw_cache;
struct gw_workers;

struct gw_front_opts {
	struct gw_config *conf;      /* initial configuration (a reference is taken) */
	struct gw_sched *sched;
	struct gw_ledger *ledger;    /* books every answered chat request */
	struct gw_cache *cache;      /* may be NULL: no cache */
	struct gw_workers *workers;  /* for budget alert webhooks */
	const char *mode;            /* "normal" or "demo", for /health */
	const char *instance;        /* "host:port": names this instance's Redis records */
};

/* Binds and starts serving; NULL on failure (logged). */
struct gw_front *gw_front_start(const struct gw_front_opts *opts);

/* The configuration new requests use from now on (reload). */
void gw_front_set_config(struct gw_front *f, struct gw_config *conf);

/*
 * Queues again an async job accepted before a restart (its Redis record,
 * see async.h). Logs and drops a record that no longer parses.
 */
void gw_front_resume_async(struct gw_front *f, const char *id, const char *rec, size_t len);

/* Stops accepting new connections; open ones are still served (503 for new work). */
void gw_front_quiesce(struct gw_front *f);

/* Connections whose answer is still pending. */
unsigned gw_front_pending(struct gw_front *f);

/* Stops the daemon (after every job was answered) and frees. Accepts NULL. */
void gw_front_stop(struct gw_front *f);

#endif
