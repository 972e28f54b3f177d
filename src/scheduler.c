/*
 * scheduler.c - admission, priority queues, limiters and the dispatch thread.
 * See scheduler.h for the dispatch rule.
 *
 * One mutex guards the queue, the limiters and the live count. The
 * dispatch thread sleeps on a condition variable until the earliest
 * moment something can change: a token refill, a cooldown end, an aging
 * move or a deadline, or a signal from submit/attempt_end. Jobs are
 * handed to workers and answered outside the lock.
 */
#include "scheduler.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "beat.h"
#include "log.h"
#include "worker.h"

/* How far down the queue one dispatch pass looks for jobs of other providers. */
#define SCAN_LIMIT 256
/* Deadline sweeps of the queue run at most this often. */
#define SWEEP_US 5000

struct gw_sched {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_cond_t idle;
	pthread_t thread;
	bool started;
	bool stop;
	bool draining;
	struct gw_config *conf;
	struct gw_workers *workers;
	struct gw_queue q;
	struct gw_limiter lim[GW_PROV_COUNT];
	unsigned live;
	int64_t sleep_until_us;    /* the thread's timed wait; 0 while it runs a pass */
	int64_t next_sweep_us;
	int64_t next_deadline_us;  /* earliest deadline among queued jobs */
};

static void pass_and_unlock(struct gw_sched *s, int64_t now);

static struct gw_job *job_of(struct gw_qnode *n)
{
	return (struct gw_job *)((char *)n - offsetof(struct gw_job, qn));
}

static void configure_limiters(struct gw_sched *s, bool init, int64_t now)
{
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		const struct gw_provider_conf *pc = &s->conf->prov[p];
		if (init)
			gw_limiter_init(&s->lim[p], pc->rpm, pc->burst, pc->concurrent, now);
		else
			gw_limiter_configure(&s->lim[p], pc->rpm, pc->burst, pc->concurrent, now);
	}
}

struct gw_sched *gw_sched_new(struct gw_config *conf)
{
	struct gw_sched *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, &ca);
	pthread_cond_init(&s->idle, &ca);
	pthread_condattr_destroy(&ca);
	s->conf = gw_config_ref(conf);
	gw_queue_init(&s->q, conf->queue_max, conf->aging_ms);
	configure_limiters(s, true, gw_now_us());
	s->next_deadline_us = INT64_MAX;
	return s;
}

void gw_sched_reconfigure(struct gw_sched *s, struct gw_config *conf)
{
	pthread_mutex_lock(&s->lock);
	struct gw_config *old = s->conf;
	s->conf = gw_config_ref(conf);
	gw_queue_configure(&s->q, conf->queue_max, conf->aging_ms);
	configure_limiters(s, false, gw_now_us());
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	gw_config_unref(old);
}

/* Caller holds the lock. Drops the scheduler's hold on a finished job. */
static void live_dec(struct gw_sched *s)
{
	if (--s->live == 0)
		pthread_cond_broadcast(&s->idle);
}

int gw_sched_submit(struct gw_sched *s, struct gw_job *job, struct gw_error *err)
{
	int64_t now = gw_now_us();
	int rc;
	pthread_mutex_lock(&s->lock);
	if (s->draining) {
		gw_error_set(err, 503, "service_unavailable", "shutting_down", NULL,
			     "the gateway is shutting down; retry against another instance");
		err->retry_after_s = 1;
		rc = -ESHUTDOWN;
		goto out;
	}
	rc = gw_queue_push(&s->q, &job->qn, job->prio, now);
	if (rc < 0) {
		int64_t oldest = gw_queue_oldest_us(&s->q, job->prio, now);
		gw_error_set(err, 429, "rate_limit_exceeded", "queue_full", NULL,
			     "the %s queue is full (%u waiting); retry later or lower the load",
			     gw_priority_name(job->prio), s->q.lv[job->prio].depth);
		/* Tell the client roughly how long the oldest waiter has waited. */
		int64_t ra = oldest / 1000000 + 1;
		err->retry_after_s = (int)(ra > 60 ? 60 : ra);
		rc = -ENOSPC;
		goto out;
	}
	gw_job_ref(job);
	job->state = GW_JOB_QUEUED;
	job->t_queued_us = now;
	if (job->deadline_us && job->deadline_us < s->next_deadline_us)
		s->next_deadline_us = job->deadline_us;
	s->live++;
	if (s->started) {
		pass_and_unlock(s, now);
		return 0;
	}
out:
	pthread_mutex_unlock(&s->lock);
	return rc;
}

/*
 * Chooses the provider for job's next attempt. Returns the provider id;
 * -ENOENT when the chain is exhausted; -EBUSY when every remaining
 * candidate is cooling down (*wake = earliest end).
 */
static int pick_provider(struct gw_sched *s, struct gw_job *job, int64_t now, int64_t *wake)
{
	const struct gw_config *c = job->conf;
	bool cooling = false;
	for (unsigned i = job->next_idx; i < c->n_order; i++) {
		enum gw_provider_id p = c->order[i];
		if (!c->prov[p].usable || !gw_config_map_model(c, job->chat.model, p))
			continue;
		if (gw_limiter_cooling(&s->lim[p], now)) {
			if (s->lim[p].cooldown_until_us < *wake)
				*wake = s->lim[p].cooldown_until_us;
			cooling = true;
			continue;
		}
		return (int)p;
	}
	return cooling ? -EBUSY : -ENOENT;
}

/* Fills the final error of a job whose chain is exhausted. */
static void exhausted_error(struct gw_job *job)
{
	struct gw_error err;
	const struct gw_config *c = job->conf;
	if (job->attempts > 0) {
		gw_error_set(&err, 502, "upstream_error", "upstream_error", NULL,
			     "every provider failed: %s", job->attempt_log.data ? job->attempt_log.data : "");
	} else if (!gw_config_any_usable(c)) {
		gw_error_set(&err, 503, "service_unavailable", "no_provider", NULL,
			     "no provider is configured: set OPENROUTER_API_KEY, "
			     "ANTHROPIC_API_KEY or OPENAI_API_KEY");
		err.retry_after_s = 30;
	} else if (job->attempt_log.len > 0) {
		gw_error_set(&err, 400, "invalid_request_error", "unsupported_request", NULL,
			     "no provider can serve this request: %s", job->attempt_log.data);
	} else {
		gw_error_set(&err, 400, "invalid_request_error", "model_not_found", "model",
			     "the model '%s' is not served by any configured provider",
			     job->chat.model);
	}
	gw_job_set_error(job, &err);
}

static void deadline_error(struct gw_job *job, int64_t now)
{
	struct gw_error err;
	gw_error_set(&err, 504, "timeout_error", "deadline_exceeded", NULL,
		     "the deadline passed after %lld ms waiting in the %s queue",
		     (long long)((now - job->t_arrival_us) / 1000), gw_priority_name(job->prio));
	gw_job_set_error(job, &err);
}

/* A list of jobs to act on after the lock is dropped. */
struct joblist {
	struct gw_job *head;
	struct gw_job *tail;
};

static void joblist_add(struct joblist *l, struct gw_job *job)
{
	job->wnext = NULL;
	if (l->tail)
		l->tail->wnext = job;
	else
		l->head = job;
	l->tail = job;
}

/* Removes queued jobs whose deadline passed. Caller holds the lock. */
static void sweep_deadlines(struct gw_sched *s, int64_t now, struct joblist *done)
{
	int64_t next = INT64_MAX;
	for (int lv = 0; lv < GW_PRIO_COUNT; lv++) {
		struct gw_qnode *n = s->q.lv[lv].head;
		while (n) {
			struct gw_qnode *nx = n->next;
			struct gw_job *job = job_of(n);
			if (job->deadline_us && job->deadline_us <= now) {
				gw_queue_remove(&s->q, n);
				job->queue_us += now - job->t_queued_us;
				deadline_error(job, now);
				joblist_add(done, job);
			} else if (job->deadline_us && job->deadline_us < next) {
				next = job->deadline_us;
			}
			n = nx;
		}
	}
	s->next_deadline_us = next;
}

/*
 * One dispatch pass. Caller holds the lock. Jobs to hand to workers go to
 * run, jobs answered here go to done. Returns when the pass should run
 * again at the latest.
 */
static int64_t dispatch_pass(struct gw_sched *s, int64_t now, struct joblist *run,
			     struct joblist *done)
{
	int64_t wake = INT64_MAX;
	unsigned blocked = 0;  /* providers a waiting job holds */
	unsigned scanned = 0;

	gw_queue_age(&s->q, now);
	if (now >= s->next_sweep_us || now >= s->next_deadline_us) {
		sweep_deadlines(s, now, done);
		s->next_sweep_us = now + SWEEP_US;
	}

	struct gw_qnode *n = gw_queue_peek(&s->q);
	while (n && scanned < SCAN_LIMIT) {
		struct gw_qnode *nx = gw_queue_next(&s->q, n);
		struct gw_job *job = job_of(n);
		int p = pick_provider(s, job, now, &wake);
		if (p == -ENOENT) {
			gw_queue_remove(&s->q, n);
			job->queue_us += now - job->t_queued_us;
			exhausted_error(job);
			joblist_add(done, job);
		} else if (p >= 0 && !(blocked & (1u << p))) {
			int64_t ready;
			int rc = gw_limiter_acquire(&s->lim[p], now, &ready);
			if (rc == 0) {
				gw_queue_remove(&s->q, n);
				job->queue_us += now - job->t_queued_us;
				if (!job->t_dispatch_us)
					job->t_dispatch_us = now;
				job->provider = p;
				job->state = GW_JOB_RUNNING;
				/* Skip past p in the chain for any later attempt. */
				for (unsigned i = job->next_idx; i < job->conf->n_order; i++) {
					if ((int)job->conf->order[i] == p) {
						job->next_idx = i + 1;
						break;
					}
				}
				joblist_add(run, job);
			} else {
				blocked |= 1u << p;
				if (ready < wake)
					wake = ready;
			}
		}
		/* p == -EBUSY: waits for a cooldown; wake already covers it. */
		scanned++;
		n = nx;
	}
	/* Jobs past the scan limit are looked at again on the next event. */
	int64_t t = gw_queue_next_aging_us(&s->q);
	if (t < wake)
		wake = t;
	if (s->q.total > 0 && s->next_deadline_us < wake)
		wake = s->next_deadline_us;
	return wake;
}

static void finish_list(struct gw_sched *s, struct joblist *done)
{
	struct gw_job *job = done->head;
	while (job) {
		struct gw_job *nx = job->wnext;
		gw_sched_finish(s, job);
		job = nx;
	}
}

static void run_lists(struct gw_sched *s, struct joblist *run, struct joblist *done)
{
	for (struct gw_job *j = run->head, *nx; j; j = nx) {
		nx = j->wnext;
		gw_workers_dispatch(s->workers, j);
	}
	finish_list(s, done);
}

/*
 * A dispatch pass on the caller's thread (submit, or a worker that just
 * freed a slot): the common case, capacity at hand, needs no hop through
 * the dispatch thread. That thread is woken only when what is left waits
 * for a time earlier than the one it sleeps until. Called with the lock
 * held; returns with it released.
 */
static void pass_and_unlock(struct gw_sched *s, int64_t now)
{
	struct joblist run = { 0 }, done = { 0 };
	int64_t wake = dispatch_pass(s, now, &run, &done);
	if (s->sleep_until_us != 0 && wake < s->sleep_until_us)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	run_lists(s, &run, &done);
}

/* The dispatch thread: timed events (token refills, cooldown ends, aging,
 * deadlines) and whatever the inline passes leave to it. */
static void *sched_main(void *arg)
{
	struct gw_sched *s = arg;
	struct gw_beat *beat = gw_beat_register("scheduler", 0);
	pthread_mutex_lock(&s->lock);
	while (!s->stop) {
		struct joblist run = { 0 }, done = { 0 };
		int64_t now = gw_now_us();
		gw_beat_touch_at(beat, now);
		int64_t wake = dispatch_pass(s, now, &run, &done);
		if (run.head || done.head) {
			pthread_mutex_unlock(&s->lock);
			run_lists(s, &run, &done);
			pthread_mutex_lock(&s->lock);
			continue;
		}
		if (wake <= now)
			continue;
		s->sleep_until_us = wake;
		/* At most a beat interval, so that a silent beat means a stuck
		 * loop (beat.h); an early wake-up only runs an idle pass. */
		int64_t until = wake - now > GW_BEAT_INTERVAL_US ? now + GW_BEAT_INTERVAL_US : wake;
		struct timespec ts = { .tv_sec = until / 1000000, .tv_nsec = (until % 1000000) * 1000 };
		pthread_cond_timedwait(&s->cond, &s->lock, &ts);
		s->sleep_until_us = 0;
	}
	pthread_mutex_unlock(&s->lock);
	gw_beat_unregister(beat);
	return NULL;
}

int gw_sched_start(struct gw_sched *s, struct gw_workers *w)
{
	s->workers = w;
	int rc = pthread_create(&s->thread, NULL, sched_main, s);
	if (rc != 0)
		return -rc;
	s->started = true;
	return 0;
}

void gw_sched_attempt_end(struct gw_sched *s, struct gw_job *job, bool retry,
			  int64_t cooldown_until_us)
{
	int64_t now = gw_now_us();
	pthread_mutex_lock(&s->lock);
	if (job->provider >= 0) {
		gw_limiter_release(&s->lim[job->provider]);
		if (cooldown_until_us > now)
			gw_limiter_cooldown(&s->lim[job->provider], cooldown_until_us);
	}
	if (retry) {
		job->state = GW_JOB_QUEUED;
		job->t_queued_us = now;
		gw_queue_push_front(&s->q, &job->qn, job->prio, now);
	}
	/* The freed slot (or the retry) may let queued work go right now. */
	if (s->q.total > 0)
		pass_and_unlock(s, now);
	else
		pthread_mutex_unlock(&s->lock);
	if (!retry)
		gw_sched_finish(s, job);
}

void gw_sched_finish(struct gw_sched *s, struct gw_job *job)
{
	gw_job_finish(job);
	pthread_mutex_lock(&s->lock);
	live_dec(s);
	pthread_mutex_unlock(&s->lock);
	gw_job_unref(job);
}

void gw_sched_drain(struct gw_sched *s)
{
	pthread_mutex_lock(&s->lock);
	s->draining = true;
	pthread_mutex_unlock(&s->lock);
}

void gw_sched_fail_queued(struct gw_sched *s, const struct gw_error *err)
{
	struct joblist done = { 0 };
	pthread_mutex_lock(&s->lock);
	struct gw_qnode *n;
	int64_t now = gw_now_us();
	while ((n = gw_queue_peek(&s->q)) != NULL) {
		struct gw_job *job = job_of(n);
		gw_queue_remove(&s->q, n);
		job->queue_us += now - job->t_queued_us;
		gw_job_set_error(job, err);
		joblist_add(&done, job);
	}
	pthread_mutex_unlock(&s->lock);
	finish_list(s, &done);
}

unsigned gw_sched_live(struct gw_sched *s)
{
	pthread_mutex_lock(&s->lock);
	unsigned n = s->live;
	pthread_mutex_unlock(&s->lock);
	return n;
}

unsigned gw_sched_wait_idle(struct gw_sched *s, int64_t deadline_us)
{
	struct timespec ts = { .tv_sec = deadline_us / 1000000,
			       .tv_nsec = (deadline_us % 1000000) * 1000 };
	pthread_mutex_lock(&s->lock);
	while (s->live > 0 && gw_now_us() < deadline_us)
		pthread_cond_timedwait(&s->idle, &s->lock, &ts);
	unsigned n = s->live;
	pthread_mutex_unlock(&s->lock);
	return n;
}

void gw_sched_snapshot(struct gw_sched *s, struct gw_sched_snapshot *out)
{
	int64_t now = gw_now_us();
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < GW_PRIO_COUNT; i++) {
		out->queues[i].depth = s->q.lv[i].depth;
		out->queues[i].oldest_ms = gw_queue_oldest_us(&s->q, (enum gw_priority)i, now) / 1000;
	}
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		const struct gw_limiter *l = &s->lim[p];
		out->limiters[p].rpm = l->rpm;
		out->limiters[p].burst = l->burst;
		out->limiters[p].tokens = gw_limiter_tokens(l, now);
		out->limiters[p].in_flight = l->in_flight;
		out->limiters[p].concurrency = l->concurrency;
		out->limiters[p].cooldown_ms =
			l->cooldown_until_us > now ? (l->cooldown_until_us - now + 999) / 1000 : 0;
	}
	out->live = s->live;
	pthread_mutex_unlock(&s->lock);
}

void gw_sched_free(struct gw_sched *s)
{
	if (!s)
		return;
	if (s->started) {
		pthread_mutex_lock(&s->lock);
		s->stop = true;
		pthread_cond_signal(&s->cond);
		pthread_mutex_unlock(&s->lock);
		pthread_join(s->thread, NULL);
	}
	pthread_cond_destroy(&s->cond);
	pthread_cond_destroy(&s->idle);
	pthread_mutex_destroy(&s->lock);
	gw_config_unref(s->conf);
	free(s);
}
