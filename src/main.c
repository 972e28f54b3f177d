/*
 * main.c - llmgwd: arguments, startup order, signals, drain and shutdown.
 *
 * Startup: config → curl → scheduler → workers → HTTP front → READY.
 * Signals are blocked in every thread and taken here with sigwait, so no
 * handler ever runs inside a library call. SIGHUP reloads the
 * configuration; SIGINT/SIGTERM drain: stop accepting, let queued and
 * in-flight work finish within the grace period, answer the rest 503,
 * exit 0.
 */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "async.h"
#include "beat.h"
#include "cache.h"
#include "config.h"
#include "http_front.h"
#include "ledger.h"
#include "log.h"
#include "pipeline.h"
#include "scheduler.h"
#include "worker.h"

#define DEFAULT_CONF "/etc/llmgw/llmgw.conf"
/* The ledger snapshot is rewritten this often (and at shutdown). */
#define SAVE_INTERVAL_S 10
#define DEMO_KEY "demo-key"

struct opts {
	const char *conf_path;
	bool check_only;
	bool demo;
};

static void usage(FILE *out)
{
	fprintf(out,
		"usage: llmgwd [-c FILE] [-t] [--demo] [-v]\n"
		"  -c, --config FILE  configuration file (default: $LLMGW_CONFIG, else "
		DEFAULT_CONF " if present)\n"
		"  -t, --test         check the configuration and exit\n"
		"      --demo         give providers without a key a placeholder key (for the\n"
		"                     bundled fake provider) and report mode \"demo\"\n"
		"  -v, --version      print the version and exit\n"
		"Environment: LLMGW_LOG_LEVEL=debug|info|warn|error; see docs/configuration.md.\n");
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "test", no_argument, NULL, 't' },
		{ "demo", no_argument, NULL, 'D' },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;
	while ((ch = getopt_long(argc, argv, "c:tvh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->conf_path = optarg;
			break;
		case 't':
			o->check_only = true;
			break;
		case 'D':
			o->demo = true;
			break;
		case 'v':
			printf("llmgwd %s\n", GW_VERSION);
			exit(0);
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -EINVAL;
	}
	if (!o->conf_path && !getenv("LLMGW_CONFIG") && access(DEFAULT_CONF, R_OK) == 0)
		o->conf_path = DEFAULT_CONF;
	return 0;
}

static struct gw_config *load_config(const struct opts *o, char *err, size_t errlen)
{
	struct gw_config *c = gw_config_load(o->conf_path, ".env", err, errlen);
	if (!c || !o->demo)
		return c;
	/* Not yet shared with any thread, so it may still be filled in. */
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		if (c->prov[p].api_key && c->prov[p].api_key[0])
			continue;
		free(c->prov[p].api_key);
		c->prov[p].api_key = strdup(DEMO_KEY);
		c->prov[p].usable = c->prov[p].api_key != NULL;
	}
	return c;
}

static void raise_nofile(void)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			gw_log_warn("cannot raise the open file limit");
	}
}

static void log_providers(const struct gw_config *c)
{
	for (unsigned i = 0; i < c->n_order; i++) {
		enum gw_provider_id p = c->order[i];
		const struct gw_provider_conf *pc = &c->prov[p];
		gw_log_info("provider %s: %s, %s, rpm %u, burst %u, concurrent %u, timeout %u ms",
			    gw_provider_name(p), pc->usable ? "usable" : "no key, skipped",
			    pc->url, pc->rpm, pc->burst, pc->concurrent, pc->timeout_ms);
	}
}

static void reload(const struct opts *o, struct gw_config **conf, struct gw_front *front,
		   struct gw_sched *sched)
{
	char err[512];
	struct gw_config *nc = load_config(o, err, sizeof(err));
	if (!nc) {
		gw_log_errorx("reload refused, keeping the running configuration: %s", err);
		return;
	}
	if (strcmp(nc->listen_host, (*conf)->listen_host) != 0 ||
	    nc->listen_port != (*conf)->listen_port || nc->workers != (*conf)->workers ||
	    nc->http_threads != (*conf)->http_threads)
		gw_log_warnx("reload: listen address, workers and http_threads change only on restart");
	gw_front_set_config(front, nc);
	gw_sched_reconfigure(sched, nc);
	gw_config_unref(*conf);
	*conf = nc;
	gw_log_info("configuration reloaded");
	log_providers(nc);
}

static void ledger_path(const struct gw_config *c, char *out, size_t n)
{
	snprintf(out, n, "%s/ledger.json", c->state_dir);
}

/* "host:port": names this instance's records in a Redis that several
 * gateways share (its ledger, the async requests it owes). */
static void instance_name(const struct gw_config *c, char *out, size_t n)
{
	char host[256] = "localhost";
	gethostname(host, sizeof(host) - 1);
	snprintf(out, n, "%s:%u", host, c->listen_port);
}

static void ledger_key(const struct gw_config *c, char *out, size_t n)
{
	char inst[300];
	instance_name(c, inst, sizeof(inst));
	snprintf(out, n, "llmgw:v1:ledger:%s", inst);
}

/* Writes the snapshot file, and the same snapshot to Redis when up. */
static void save_ledger(struct gw_ledger *l, struct gw_cache *cache, const struct gw_config *c)
{
	char path[4200];
	ledger_path(c, path, sizeof(path));
	int rc = gw_ledger_save(l, path);
	if (rc < 0) {
		errno = -rc;
		gw_log_warn("cannot save the ledger to %s", path);
	}
	if (!cache || gw_cache_state(cache) != GW_CACHE_UP)
		return;
	size_t len;
	char *text = gw_ledger_dump(l, &len);
	char key[400];
	ledger_key(c, key, sizeof(key));
	const char *argv[] = { "SET", key, text };
	const size_t argvlen[] = { 3, strlen(key), len };
	if (text)
		gw_cache_exec(cache, argv, argvlen, 3, NULL, NULL);
	free(text);
}

struct redis_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	char *value;
	size_t len;
};

static void on_ledger_get(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct redis_wait *w = arg;
	pthread_mutex_lock(&w->mu);
	if (r == GW_CACHE_HIT) {
		w->value = value;
		w->len = len;
		value = NULL;
	}
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	free(value);
}

/*
 * No snapshot file (a new machine, or a wiped state directory): take the
 * books from Redis if it has them. Startup only, bounded to about a second.
 */
/* Startup only: gives a fresh cache connection up to a second to come up. */
static bool wait_cache_up(struct gw_cache *cache)
{
	int64_t until = gw_now_us() + 1000000;
	struct gw_cache_counters cc;
	for (;;) {
		if (gw_cache_state(cache) == GW_CACHE_UP)
			return true;
		gw_cache_stats(cache, &cc);
		/* The first connect already failed: Redis is down, do not wait. */
		if (cc.breaker_opens > 0 || gw_now_us() >= until)
			return false;
		usleep(5000);
	}
}

struct resume_ctx {
	struct gw_pipeline *p;
	struct gw_config *conf;
};

static void resume_one(void *arg, const char *id, const char *rec, size_t len)
{
	struct resume_ctx *rc = arg;
	gw_pipeline_resume_async(rc->p, rc->conf, id, rec, len);
}

/* WATCHDOG=1 only while every loop of the daemon beats (beat.h): a stuck
 * loop is named once, and systemd restarts the daemon when the pings stop.
 * max_age_us: the oldest beat still taken as a running loop. */
static void watchdog_ping(int64_t max_age_us, bool *withheld)
{
	const char *name;
	unsigned index;
	int64_t age;
	if (gw_beat_oldest(gw_now_us(), &name, &index, &age) && age > max_age_us) {
		if (!*withheld)
			gw_log_errorx("%s %u has not run its loop for %lld ms: watchdog ping withheld, "
				      "systemd will restart llmgwd",
				      name, index, (long long)(age / 1000));
		*withheld = true;
		return;
	}
	if (*withheld)
		gw_log_info("every loop runs again: watchdog pings resume");
	*withheld = false;
	sd_notify(0, "WATCHDOG=1");
}

/* Resumes the async jobs owed from before the last stop when Redis is up;
 * returns whether that happened. */
static bool recover_async(struct gw_pipeline *p, struct gw_config *conf, bool up)
{
	if (!up)
		return false;
	struct resume_ctx rc = { p, conf };
	unsigned n = gw_async_recover(p->cache, p->instance, resume_one, &rc);
	if (n)
		gw_log_info("resumed %u async request(s) accepted before the last stop", n);
	return true;
}

static void restore_ledger_from_redis(struct gw_ledger *l, struct gw_cache *cache,
				      const struct gw_config *c)
{
	if (!wait_cache_up(cache))
		return;
	struct redis_wait w = { .done = false };
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	char key[400];
	ledger_key(c, key, sizeof(key));
	gw_cache_get(cache, key, on_ledger_get, &w);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	if (w.value && gw_ledger_restore(l, w.value, w.len) == 0)
		gw_log_info("ledger restored from redis (%s)", key);
	free(w.value);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);
}

/* Waits until every accepted connection got its answer, or the deadline. */
static void wait_front(struct gw_front *front, int64_t deadline_us)
{
	while (gw_front_pending(front) > 0 && gw_now_us() < deadline_us)
		usleep(10000);
}

static void drain(struct gw_config *conf, struct gw_front *front, struct gw_sched *sched,
		  struct gw_workers *workers)
{
	sd_notify(0, "STOPPING=1");
	gw_front_quiesce(front);
	gw_sched_drain(sched);
	unsigned live = gw_sched_live(sched);
	gw_log_info("draining: %u request(s) queued or in flight, up to %u ms", live,
		    conf->shutdown_grace_ms);
	live = gw_sched_wait_idle(sched, gw_now_us() + (int64_t)conf->shutdown_grace_ms * 1000);
	if (live > 0) {
		struct gw_error err;
		gw_log_warnx("grace period over: answering %u request(s) 503", live);
		gw_error_set(&err, 503, "service_unavailable", "shutting_down", NULL,
			     "the gateway shut down before this request ran");
		err.retry_after_s = 1;
		gw_sched_fail_queued(sched, &err);
		gw_workers_abort_all(workers);
		gw_sched_wait_idle(sched, gw_now_us() + 5000000);
	}
	wait_front(front, gw_now_us() + 5000000);
}

int main(int argc, char **argv)
{
	struct opts o = { 0 };
	char err[512];
	int rc = 1;
	const char *lvl = getenv("LLMGW_LOG_LEVEL");
	enum gw_log_level level;
	if (lvl && gw_log_parse_level(lvl, &level) == 0)
		gw_log_set_level(level);

	if (parse_args(argc, argv, &o) < 0)
		return 2;
	struct gw_config *conf = load_config(&o, err, sizeof(err));
	if (!conf) {
		fprintf(stderr, "llmgwd: %s\n", err);
		return 1;
	}
	if (o.check_only) {
		printf("llmgwd: configuration %s is valid\n", conf->source ? conf->source : "(defaults)");
		gw_config_unref(conf);
		return 0;
	}

	sigset_t sigs;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();

	struct gw_sched *sched = NULL;
	struct gw_workers *workers = NULL;
	struct gw_front *front = NULL;
	struct gw_cache *cache = NULL;
	struct gw_ledger *ledger = gw_ledger_new();
	char lpath[4200];
	if (!ledger)
		goto out;
	ledger_path(conf, lpath, sizeof(lpath));
	bool have_file = access(lpath, F_OK) == 0;
	int lrc = gw_ledger_load(ledger, lpath);
	if (lrc < 0) {
		gw_log_errorx("the ledger snapshot %s is unreadable (%s); starting from zero and "
			      "keeping the file as %s.bad", lpath, strerror(-lrc), lpath);
		char bad[4300];
		snprintf(bad, sizeof(bad), "%s.bad", lpath);
		rename(lpath, bad);
	}
	if (conf->cache_enabled) {
		cache = gw_cache_new(conf->redis_url, 100, 50);
		if (!cache || gw_cache_start(cache) < 0)
			gw_log_warnx("cache disabled: cannot use %s", conf->redis_url);
		else if (!have_file)
			restore_ledger_from_redis(ledger, cache, conf);
	}
	if (gw_workers_global_init() < 0) {
		gw_log_errorx("libcurl initialisation failed");
		goto out;
	}
	sched = gw_sched_new(conf);
	workers = sched ? gw_workers_new(conf->workers, sched) : NULL;
	if (!workers) {
		gw_log_errorx("cannot set up %u workers", conf->workers);
		goto out;
	}
	char instance[300];
	instance_name(conf, instance, sizeof(instance));
	static struct gw_pipeline pipeline;
	pipeline = (struct gw_pipeline){ .sched = sched, .ledger = ledger, .cache = cache,
					 .workers = workers, .instance = instance };
	atomic_init(&pipeline.draining, false);
	struct gw_front_opts fo = { .conf = conf, .pipeline = &pipeline,
				    .mode = o.demo ? "demo" : "normal", .workers = workers };
	front = gw_front_start(&fo);
	if (!front)
		goto out;
	/* After the front: with http_threads = 0 it runs in the workers' loops. */
	if (gw_workers_start(workers) < 0 || gw_sched_start(sched, workers) < 0) {
		gw_log_errorx("cannot start the scheduler and %u workers", conf->workers);
		goto out;
	}
	if (o.demo)
		gw_log_info("demo mode: providers without a key use a placeholder key; answers come "
			    "from the fake provider, not a real LLM");
	log_providers(conf);
	if (!gw_config_any_usable(conf))
		gw_log_warnx("no provider has a key: chat requests will be answered 503");
	gw_log_info("llmgwd %s listening on %s:%u with %u workers", GW_VERSION, conf->listen_host,
		    conf->listen_port, conf->workers);
	sd_notify(0, "READY=1");
	/* Async jobs this instance still owes: now, or once Redis is up. */
	bool recovered = !cache || recover_async(&pipeline, conf, wait_cache_up(cache));

	/* Under systemd's watchdog, ping at half its interval. */
	uint64_t wd_usec = 0;
	int64_t tick_us = 1000000; /* async record retries, recovery */
	if (sd_watchdog_enabled(0, &wd_usec) > 0 && wd_usec > 0 && (int64_t)wd_usec / 2 < tick_us)
		tick_us = (int64_t)wd_usec / 2;
	/* The watchdog gives up on a loop once its beat is older than half
	 * its interval, and never before GW_BEAT_STUCK_US. */
	int64_t beat_max_us = (int64_t)wd_usec / 2;
	if (beat_max_us < GW_BEAT_STUCK_US)
		beat_max_us = GW_BEAT_STUCK_US;
	bool withheld = false;
	int64_t next_save = gw_now_us() + (int64_t)SAVE_INTERVAL_S * 1000000;
	for (;;) {
		struct timespec tick = { .tv_sec = tick_us / 1000000,
					 .tv_nsec = (tick_us % 1000000) * 1000 };
		int sig = sigtimedwait(&sigs, NULL, &tick);
		if (wd_usec)
			watchdog_ping(beat_max_us, &withheld);
		if (cache && gw_cache_state(cache) == GW_CACHE_UP) {
			if (!recovered)
				recovered = recover_async(&pipeline, conf, true);
			gw_async_retry(cache);
		}
		if (gw_now_us() >= next_save) {
			save_ledger(ledger, cache, conf);
			next_save = gw_now_us() + (int64_t)SAVE_INTERVAL_S * 1000000;
		}
		if (sig < 0)
			continue;
		if (sig == SIGHUP) {
			sd_notify(0, "RELOADING=1");
			reload(&o, &conf, front, sched);
			sd_notify(0, "READY=1");
			continue;
		}
		gw_log_info("signal %d: shutting down", sig);
		break;
	}
	atomic_store(&pipeline.draining, true);
	drain(conf, front, sched, workers);
	save_ledger(ledger, cache, conf);
	rc = 0;
out:
	/* A front of its own threads stops first, so that nothing reaches the
	 * workers after them; a front in the workers' loops after them. */
	if (!gw_front_external(front)) {
		gw_front_stop(front);
		front = NULL;
	}
	gw_workers_free(workers);
	gw_front_stop(front);
	gw_sched_free(sched);
	if (cache && gw_cache_state(cache) == GW_CACHE_UP)
		gw_async_retry(cache);
	gw_cache_free(cache);
	gw_async_cleanup();
	gw_ledger_free(ledger);
	gw_workers_global_cleanup();
	gw_config_unref(conf);
	if (rc == 0)
		gw_log_info("stopped");
	return rc;
}
