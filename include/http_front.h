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
struct gw_pipeline;

struct gw_front_opts {
	struct gw_config *conf;      /* initial configuration (a reference is taken) */
	struct gw_pipeline *pipeline; /* where accepted chat jobs go; also scheduler,
				       * ledger and cache for /stats, /ready */
	const char *mode;            /* "normal" or "demo", for /health */
};

/* Binds and starts serving; NULL on failure (logged). */
struct gw_front *gw_front_start(const struct gw_front_opts *opts);

/* The configuration new requests use from now on (reload). */
void gw_front_set_config(struct gw_front *f, struct gw_config *conf);

/* Stops accepting new connections; open ones are still served (503 for new work). */
void gw_front_quiesce(struct gw_front *f);

/* Connections whose answer is still pending. */
unsigned gw_front_pending(struct gw_front *f);

/* Stops the daemon (after every job was answered) and frees. Accepts NULL. */
void gw_front_stop(struct gw_front *f);

#endif
