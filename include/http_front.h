/*
 * http_front.h - the HTTP front, on the HTTP/1.1 server of http1.h: in
 * the workers' loops (http_threads = 0) or in threads of its own.
 *
 * It routes, bounds and validates requests, turns a chat request into a
 * job, suspends the connection while the job waits, and resumes it with
 * the answer. No network I/O other than the client's happens here.
 */
#ifndef GW_HTTP_FRONT_H
#define GW_HTTP_FRONT_H

#include "config.h"

struct gw_front;
struct gw_pipeline;

struct gw_front_opts {
	struct gw_config *conf;      /* initial configuration (a reference is taken) */
	struct gw_pipeline *pipeline; /* where accepted chat jobs go; also scheduler,
				       * ledger and cache for /stats, /ready */
	const char *mode;            /* "normal" or "demo", for /health */
	struct gw_workers *workers;  /* not started yet: with http_threads = 0 the
				      * front runs in their loops */
};

/* Binds and starts serving (with http_threads = 0, once the workers
 * start); NULL on failure (logged). */
struct gw_front *gw_front_start(const struct gw_front_opts *opts);

/* The configuration new requests use from now on (reload). */
void gw_front_set_config(struct gw_front *f, struct gw_config *conf);

/* Stops accepting new connections; open ones are still served (503 for new work). */
void gw_front_quiesce(struct gw_front *f);

/* Connections whose answer is still pending. */
unsigned gw_front_pending(struct gw_front *f);

/* True when the front runs in the workers' loops. */
bool gw_front_external(const struct gw_front *f);

/* Stops serving (after every job was answered) and frees. Accepts NULL.
 * When the front runs in the workers, only after gw_workers_free. */
void gw_front_stop(struct gw_front *f);

#endif
