/*
 * worker.h - the worker pool: a few threads, each running an epoll loop
 * that drives libcurl multi. A job handed to a worker becomes one
 * upstream transfer; when it ends the worker classifies the outcome and
 * reports it to the scheduler (answer, or fall back to the next provider).
 * Thousands of transfers share these few threads.
 */
#ifndef GW_WORKER_H
#define GW_WORKER_H

#include "job.h"

struct gw_sched;
struct gw_workers;

/* Global libcurl setup; call once before any thread starts. */
int gw_workers_global_init(void);
void gw_workers_global_cleanup(void);

/* n threads (not started) reporting to s; or NULL. */
struct gw_workers *gw_workers_new(unsigned n, struct gw_sched *s);

/*
 * A loop that runs inside every worker thread: the HTTP front, when it has
 * no threads of its own. Its descriptor fd(arg, i) is watched with worker
 * i's sockets, and run(arg, i, io) is called on every pass of worker i's
 * loop (io: the descriptor was readable); run returns true when it has
 * more to do right away. A job dispatched from a worker thread stays on
 * that worker, so a request read, sent upstream and answered by the same
 * thread changes threads nowhere.
 */
struct gw_worker_guest {
	void *arg;
	int (*fd)(void *arg, unsigned worker);
	bool (*run)(void *arg, unsigned worker, bool io);
};

/* Before gw_workers_start. Returns 0 or -errno. */
int gw_workers_attach(struct gw_workers *w, const struct gw_worker_guest *g);

unsigned gw_workers_count(const struct gw_workers *w);

/* Starts the threads. Returns 0 or -errno. */
int gw_workers_start(struct gw_workers *w);

/* Starts job's attempt on job->provider on one of the workers (the
 * calling one, on a worker thread). Any thread. */
void gw_workers_dispatch(struct gw_workers *w, struct gw_job *job);

/*
 * Fire-and-forget JSON POST (budget alert webhooks): copied, sent by a
 * worker with a 5 s timeout, outcome logged. Any thread.
 */
void gw_workers_post(struct gw_workers *w, const char *url, const char *json);

/* Ends every transfer in flight, answering its job 503. Any thread. */
void gw_workers_abort_all(struct gw_workers *w);

/* Stops and joins the threads, then frees. Accepts NULL. */
void gw_workers_free(struct gw_workers *w);

#endif
