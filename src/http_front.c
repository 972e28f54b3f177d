/*
 * http_front.c - the HTTP front: routing, limits, header semantics,
 * parking requests around jobs, answers. See http_front.h; the sockets and
 * HTTP/1.1 itself are http1.c's.
 *
 * Per-connection state is a small state machine (enum conn_state):
 *   HEADERS  on_headers: route, method and header checks; errors are
 *            answered before any body is read
 *   BODY     the server reads the body, bounded by max_body_bytes (over
 *            it, on_body sees body_too_large and answers 413)
 *   WAITING  a job was submitted and the request is parked; the job
 *            resumes it (from whatever thread) when it finishes or its
 *            stream starts
 *   STREAMING a chunked event-stream response drains the job's bytes;
 *            the request is parked whenever none are waiting
 *   LOOKUP   GET /v1/requests/{id}: parked while the cache thread reads
 *            the record from Redis
 *   ANSWERED an answer was given; on_done frees the state
 */
#include "http_front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "async.h"
#include "beat.h"
#include "cache.h"
#include "dashboard.h"
#include "http1.h"
#include "job.h"
#include "ledger.h"
#include "log.h"
#include "pipeline.h"
#include "request.h"
#include "scheduler.h"
#include "stats.h"
#include "worker.h"

/* Front threads with a watchdog beat (http_threads is at most 64). */
#define GW_FRONT_THREADS_MAX 64

enum conn_state {
	CONN_HEADERS = 0,
	CONN_BODY,
	CONN_WAITING,
	CONN_STREAMING,
	CONN_LOOKUP,
	CONN_ANSWERED
};

enum route {
	ROUTE_NONE = 0,
	ROUTE_CHAT,
	ROUTE_MODELS,
	ROUTE_HEALTH,
	ROUTE_READY,
	ROUTE_STATS,
	ROUTE_METRICS,
	ROUTE_ASYNC,
	ROUTE_DASHBOARD
};

struct gw_front {
	struct gw_http1 *d;
	struct gw_pipeline *p;
	const char *mode;
	int64_t started_us;
	pthread_mutex_t conf_lock;
	struct gw_config *conf;
	atomic_uint pending;          /* chat requests accepted, not completed */
	atomic_bool quiesced;
	atomic_uint_fast64_t id_seq;
	uint32_t id_salt;
	struct gw_beat *beats[GW_FRONT_THREADS_MAX];
	bool external; /* runs inside the workers' loops */
};

struct conn {
	enum conn_state state;
	enum route route;
	struct gw_front *f;
	struct gw_http1_req *r;
	struct gw_config *conf;
	struct gw_job *job;
	bool counted;
	/* Cache headers, read before the body. */
	bool no_cache;                 /* Cache-Control: no-cache: skip the lookup, store */
	bool no_store;                 /* Cache-Control: no-store: neither */
	char cache_key_hdr[GW_CACHE_EXPLICIT_MAX + 1];
	bool async;                    /* X-Async: true */
	/* GET /v1/requests/{id}: the record, handed over by the cache thread. */
	char async_id[GW_ASYNC_ID_MAX];
	atomic_bool lookup_done;
	enum gw_cache_result lookup_r;
	char *lookup_value;
	size_t lookup_len;
};

static struct gw_config *current_config(struct gw_front *f)
{
	pthread_mutex_lock(&f->conf_lock);
	struct gw_config *c = gw_config_ref(f->conf);
	pthread_mutex_unlock(&f->conf_lock);
	return c;
}

void gw_front_set_config(struct gw_front *f, struct gw_config *conf)
{
	pthread_mutex_lock(&f->conf_lock);
	struct gw_config *old = f->conf;
	f->conf = gw_config_ref(conf);
	pthread_mutex_unlock(&f->conf_lock);
	gw_config_unref(old);
}

/* The content type and request id of an answer; more headers may follow
 * before gw_http1_respond. */
static void answer_headers(struct conn *c, const char *ctype, const char *request_id)
{
	gw_http1_add_header(c->r, "Content-Type", ctype);
	if (request_id)
		gw_http1_add_header(c->r, "X-Request-Id", request_id);
}

/*
 * Answers with body (taken: the server frees it; NULL for none). The
 * answer_* functions below answer or, out of memory, leave the request
 * unanswered: the server then answers 500 (http1.h).
 */
static void send_body(struct conn *c, unsigned status, char *body, size_t len, const char *ctype,
		      const char *request_id)
{
	c->state = CONN_ANSWERED;
	answer_headers(c, ctype, request_id);
	gw_http1_respond(c->r, status, body, body ? len : 0, body != NULL);
}

static void send_error(struct conn *c, const struct gw_error *err, const char *request_id)
{
	size_t len = 0;
	char *body = gw_error_body(err, &len);
	c->state = CONN_ANSWERED;
	answer_headers(c, "application/json", request_id);
	if (err->retry_after_s > 0) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", err->retry_after_s);
		gw_http1_add_header(c->r, "Retry-After", ra);
	}
	if (err->status == 405)
		gw_http1_add_header(c->r, "Allow", c->route == ROUTE_CHAT ? "POST" : "GET, HEAD");
	gw_http1_respond(c->r, (unsigned)err->status, body, body ? len : 0, body != NULL);
}

static void send_json(struct conn *c, unsigned status, json_t *root)
{
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (!s)
		return;
	send_body(c, status, s, strlen(s), "application/json", NULL);
}

static enum route route_of(const char *url)
{
	if (strcmp(url, "/v1/chat/completions") == 0)
		return ROUTE_CHAT;
	if (strcmp(url, "/v1/models") == 0)
		return ROUTE_MODELS;
	if (strcmp(url, "/health") == 0)
		return ROUTE_HEALTH;
	if (strcmp(url, "/ready") == 0)
		return ROUTE_READY;
	if (strcmp(url, "/stats") == 0)
		return ROUTE_STATS;
	if (strcmp(url, "/metrics") == 0)
		return ROUTE_METRICS;
	if (strncmp(url, "/v1/requests/", 13) == 0)
		return ROUTE_ASYNC;
	if (strcmp(url, "/dashboard") == 0 || strcmp(url, "/dashboard/chart.js") == 0)
		return ROUTE_DASHBOARD;
	return ROUTE_NONE;
}

/* Liveness: 503 "stuck" while one of the daemon's loops (a worker, the
 * scheduler, the Redis client) has not run for GW_BEAT_STUCK_US. */
static void answer_health(struct conn *c)
{
	struct gw_front *f = c->f;
	int64_t now = gw_now_us(), up = (now - f->started_us) / 1000000, silent;
	json_t *body = json_pack("{s:s, s:s, s:s, s:I}", "status",
				 atomic_load(&f->quiesced) ? "draining" : "ok", "version", GW_VERSION,
				 "mode", f->mode, "uptime_s", (json_int_t)up);
	const char *name;
	unsigned index;
	if (body && gw_beat_oldest(now, &name, &index, &silent) && silent > GW_BEAT_STUCK_US) {
		char loop[64];
		snprintf(loop, sizeof(loop), "%s %u", name, index);
		json_object_set_new(body, "status", json_string("stuck"));
		json_object_set_new(body, "stuck_loop", json_string(loop));
		json_object_set_new(body, "silent_ms", json_integer((json_int_t)(silent / 1000)));
		send_json(c, 503, body);
		return;
	}
	send_json(c, 200, body);
}

static void answer_ready(struct conn *c)
{
	struct gw_front *f = c->f;
	struct gw_sched_snapshot snap;
	gw_sched_snapshot(f->p->sched, &snap);
	json_t *provs = json_object();
	bool ready = false;
	for (unsigned i = 0; i < c->conf->n_order; i++) {
		enum gw_provider_id p = c->conf->order[i];
		bool usable = c->conf->prov[p].usable;
		if (usable && snap.limiters[p].cooldown_ms == 0)
			ready = true;
		json_object_set_new(provs, gw_provider_name(p),
				    json_pack("{s:b, s:I}", "usable", usable, "cooldown_ms",
					      (json_int_t)snap.limiters[p].cooldown_ms));
	}
	if (atomic_load(&f->quiesced))
		ready = false;
	const char *redis = f->p->cache && c->conf->cache_enabled
				    ? gw_cache_state_name(gw_cache_state(f->p->cache))
				    : "disabled";
	send_json(c, ready ? 200 : 503,
		  json_pack("{s:b, s:o, s:s}", "ready", ready, "providers", provs, "redis", redis));
}

/* /stats (JSON, or CSV with ?format=csv) and /metrics, from the ledger
 * and a snapshot of the scheduler. */
static void answer_stats(struct conn *c)
{
	struct gw_front *f = c->f;
	struct gw_sched_snapshot snap;
	int64_t up = (gw_now_us() - f->started_us) / 1000000;
	char fmt_buf[16];
	const char *fmt = gw_http1_arg(c->r, "format", fmt_buf, sizeof(fmt_buf));
	char *body;
	const char *ctype;
	gw_sched_snapshot(f->p->sched, &snap);
	if (c->route == ROUTE_METRICS) {
		body = gw_stats_metrics(f->p->ledger, c->conf, &snap, up);
		ctype = "text/plain; version=0.0.4; charset=utf-8";
	} else if (fmt && strcmp(fmt, "csv") == 0) {
		body = gw_stats_csv(f->p->ledger);
		ctype = "text/csv; charset=utf-8";
	} else if (fmt && strcmp(fmt, "json") != 0) {
		struct gw_error err;
		gw_error_set(&err, 400, "invalid_request_error", "invalid_format", "format",
			     "format must be json or csv; got '%.32s'", fmt);
		send_error(c, &err, NULL);
		return;
	} else {
		body = gw_stats_json(f->p->ledger, c->conf, &snap, up);
		ctype = "application/json";
	}
	if (!body)
		return;
	send_body(c, 200, body, strlen(body), ctype, NULL);
}


/*
 * GET /dashboard and /dashboard/chart.js: static bytes compiled in. The
 * page holds no data (it reads /stats, which the admin key guards), so
 * it is served without a key: a browser cannot send a Bearer header when
 * it opens a page.
 */
static void answer_dashboard(struct conn *c, const char *url)
{
	const char *body, *ctype;
	size_t len;
	if (gw_dashboard_asset(url, &body, &len, &ctype) < 0)
		return;
	bool page = strcmp(url, "/dashboard") == 0;
	gw_http1_add_header(c->r, "Content-Type", ctype);
	gw_http1_add_header(c->r, "Cache-Control", page ? "no-cache" : "public, max-age=86400");
	gw_http1_add_header(c->r, "X-Content-Type-Options", "nosniff");
	if (page)
		gw_http1_add_header(c->r, "Content-Security-Policy", GW_DASHBOARD_CSP);
	c->state = CONN_ANSWERED;
	gw_http1_respond(c->r, 200, (char *)body, len, false);
}

static void answer_models(struct conn *c)
{
	const struct gw_config *conf = c->conf;
	json_t *data = json_array();
	for (size_t i = 0; i < conf->n_models; i++) {
		const struct gw_model_conf *m = &conf->models[i];
		bool served = false;
		for (int p = 0; p < GW_PROV_COUNT; p++)
			served = served || (conf->prov[p].usable && m->upstream[p]);
		if (!served)
			continue;
		json_array_append_new(data, json_pack("{s:s, s:s, s:i, s:s}", "id", m->name, "object",
						      "model", "created", 0, "owned_by", "llmgw"));
	}
	send_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* job->wake: runs with job->lock held, on whatever thread. */
static void conn_resume(void *arg)
{
	struct conn *c = arg;
	gw_http1_resume(c->r);
}

/* Parks the request until the job wakes it. */
static void conn_suspend(struct conn *c)
{
	pthread_mutex_lock(&c->job->lock);
	c->job->suspended = true;
	gw_http1_park(c->r);
	pthread_mutex_unlock(&c->job->lock);
}

/* The server pulls stream bytes from the job; with none waiting the
 * request parks until the job wakes it. */
static ssize_t stream_reader(struct gw_http1_req *r, char *buf, size_t max)
{
	struct conn *c = r->user;
	struct gw_job *job = c->job;
	ssize_t n;
	pthread_mutex_lock(&job->lock);
	if (job->out.len > 0) {
		size_t k = job->out.len < max ? job->out.len : max;
		memcpy(buf, job->out.data, k);
		gw_buf_consume(&job->out, k);
		n = (ssize_t)k;
	} else if (job->ended) {
		n = GW_HTTP1_END;
	} else {
		job->suspended = true;
		n = 0;
	}
	pthread_mutex_unlock(&job->lock);
	return n;
}

static void add_job_headers(struct conn *c, const struct gw_job *job)
{
	char num[32];
	gw_http1_add_header(c->r, "X-Cache", job->x_cache);
	if (job->provider >= 0 && job->status < 500)
		gw_http1_add_header(c->r, "X-Provider",
				    gw_provider_name((enum gw_provider_id)job->provider));
	gw_fmt_i64(num, job->queue_us / 1000);
	gw_http1_add_header(c->r, "X-Queue-Ms", num);
}

static void answer_stream(struct conn *c)
{
	struct gw_job *job = c->job;
	c->state = CONN_STREAMING;
	gw_http1_add_header(c->r, "Content-Type", "text/event-stream");
	gw_http1_add_header(c->r, "Cache-Control", "no-cache");
	gw_http1_add_header(c->r, "X-Accel-Buffering", "no");
	gw_http1_add_header(c->r, "X-Request-Id", job->id);
	add_job_headers(c, job);
	gw_http1_stream(c->r, 200, stream_reader);
}

static void answer_job(struct conn *c)
{
	struct gw_job *job = c->job;
	char *body = job->body;
	size_t len = job->body_len;
	job->body = NULL;
	c->state = CONN_ANSWERED;
	answer_headers(c, "application/json", job->id);
	char num[32];
	add_job_headers(c, job);
	if (job->cost == 0)
		memcpy(num, "0", 2);
	else
		gw_ledger_format_usd(job->cost, num, sizeof(num));
	gw_http1_add_header(c->r, "X-Cost-USD", num);
	if (job->retry_after_s > 0) {
		gw_fmt_i64(num, job->retry_after_s);
		gw_http1_add_header(c->r, "Retry-After", num);
	}
	/* The OpenAI SDKs honour this and do not retry by themselves. */
	if (job->no_retry)
		gw_http1_add_header(c->r, "x-should-retry", "false");
	gw_http1_respond(c->r, (unsigned)job->status, body, body ? len : 0, body != NULL);
}

static void new_request_id(struct gw_front *f, char out[GW_REQUEST_ID_MAX + 1])
{
	uint64_t n = atomic_fetch_add(&f->id_seq, 1) & UINT64_C(0xffffffffffff);
	/* "req_" + 8 hex digits of the salt + 12 of the sequence, as
	 * "req_%08x%012llx" would print them, without printf's cost. */
	memcpy(out, "req_", 4);
	for (int i = 0; i < 8; i++)
		out[4 + i] = gw_hex_char(f->id_salt >> (28 - 4 * i));
	for (int i = 0; i < 12; i++)
		out[12 + i] = gw_hex_char((unsigned)(n >> (44 - 4 * i)));
	out[24] = '\0';
}

/* The bearer token of the Authorization header, or NULL. */
static const char *bearer(const struct gw_http1_req *r)
{
	const char *v = gw_http1_header(r, "Authorization");
	if (!v || strncasecmp(v, "Bearer ", 7) != 0)
		return NULL;
	v += 7;
	while (*v == ' ')
		v++;
	return *v ? v : NULL;
}

/* With [auth] enabled: the caller's gateway key, or a 401. */
static int check_key(struct conn *c, const struct gw_key_conf **key, struct gw_error *err)
{
	*key = NULL;
	if (!c->conf->auth_enabled)
		return 0;
	const char *token = bearer(c->r);
	*key = token ? gw_config_key(c->conf, token) : NULL;
	if (*key)
		return 0;
	gw_error_set(err, 401, "authentication_error", "invalid_api_key", NULL,
		     token ? "the gateway key is not valid"
			   : "a gateway key is required: send Authorization: Bearer <key>");
	return -EACCES;
}

/* /stats, /metrics, /dashboard: the admin key when one is configured. */
static int check_admin(struct conn *c, struct gw_error *err)
{
	if (!c->conf->has_admin_key)
		return 0;
	const char *token = bearer(c->r);
	if (token && gw_config_is_admin(c->conf, token))
		return 0;
	gw_error_set(err, 401, "authentication_error", "invalid_api_key", NULL,
		     "this page needs the admin key: send Authorization: Bearer <admin key>");
	return -EACCES;
}

/* Header checks done before the body is read; fills job fields. */
static int read_headers(struct conn *c, struct gw_error *err)
{
	struct gw_http1_req *r = c->r;
	struct gw_job *job = c->job;
	const char *v;

	v = gw_http1_header(r, "X-Request-Id");
	if (v) {
		if (gw_hdr_request_id(v, job->id, err) < 0)
			return -EINVAL;
	} else {
		new_request_id(c->f, job->id);
	}
	const struct gw_key_conf *key;
	if (check_key(c, &key, err) < 0)
		return -EACCES;
	v = gw_http1_header(r, "X-Service-Name");
	if (v) {
		if (gw_hdr_service(v, job->service, err) < 0)
			return -EINVAL;
	} else {
		snprintf(job->service, sizeof(job->service), "%s",
			 key && key->default_service ? key->default_service : "default");
	}
	if (key) {
		job->key_name = key->name;
		if (!gw_config_key_allows(key, job->service)) {
			gw_error_set(err, 403, "permission_error", "service_not_allowed",
				     "X-Service-Name",
				     "the gateway key '%s' may not book under the service '%s'",
				     key->name, job->service);
			return -EACCES;
		}
	}
	const struct gw_service_conf *svc = gw_config_service(c->conf, job->service);
	v = gw_http1_header(r, "X-Priority");
	if (v) {
		if (gw_hdr_priority(v, &job->prio, err) < 0)
			return -EINVAL;
	} else {
		job->prio = svc && svc->priority >= 0 ? (enum gw_priority)svc->priority : GW_PRIO_MEDIUM;
	}
	v = gw_http1_header(r, "X-Cache-Key");
	if (v && gw_hdr_cache_key(v, c->cache_key_hdr, sizeof(c->cache_key_hdr), err) < 0)
		return -EINVAL;
	job->cache_ttl_s = svc && svc->cache_ttl_s > 0 ? (unsigned)svc->cache_ttl_s
						     : c->conf->cache_ttl_s;
	v = gw_http1_header(r, "X-Cache-TTL");
	if (v && gw_hdr_cache_ttl(v, &job->cache_ttl_s, err) < 0)
		return -EINVAL;
	v = gw_http1_header(r, "Cache-Control");
	if (v) {
		c->no_store = strcasestr(v, "no-store") != NULL;
		c->no_cache = strcasestr(v, "no-cache") != NULL;
	}
	v = gw_http1_header(r, "X-Async");
	if (v && gw_hdr_bool("X-Async", v, &c->async, err) < 0)
		return -EINVAL;
	int64_t deadline_ms = c->conf->deadline_ms[job->prio];
	v = gw_http1_header(r, "X-Deadline-Ms");
	if (v && gw_hdr_deadline_ms(v, &deadline_ms, err) < 0)
		return -EINVAL;
	if (deadline_ms > 0)
		job->deadline_us = job->t_arrival_us + deadline_ms * 1000;
	return 0;
}

/* Hands the connection's job to the pipeline with its cache headers. */
static void run_job(struct conn *c)
{
	struct gw_cache_hints h = { c->no_cache, c->no_store, c->cache_key_hdr };
	gw_pipeline_run(c->f->p, c->job, &h);
}

/* X-Async: record the job in Redis, answer 202 at once, run it detached. */
static void accept_async(struct conn *c)
{
	struct gw_front *f = c->f;
	struct gw_job *job = c->job;
	struct gw_error err;
	if (job->chat.stream) {
		gw_error_set(&err, 400, "invalid_request_error", "invalid_header", "X-Async",
			     "X-Async cannot be combined with \"stream\": true");
		send_error(c, &err, job->id);
		return;
	}
	if (gw_cache_state(f->p->cache) != GW_CACHE_UP) {
		gw_error_set(&err, 503, "service_unavailable", "async_unavailable", "X-Async",
			     "async requests keep their results in Redis, which is unreachable; "
			     "retry, or send the request without X-Async");
		err.retry_after_s = 5;
		send_error(c, &err, job->id);
		return;
	}
	job->is_async = true;
	gw_async_new_id(job->async_id);
	gw_async_accept(f->p->cache, f->p->instance, job, job->async_id, c->conf->async_retention_s);
	size_t len;
	char *body = gw_async_pending_body(job->async_id, &len);
	char loc[96];
	snprintf(loc, sizeof(loc), "/v1/requests/%s", job->async_id);
	c->state = CONN_ANSWERED;
	answer_headers(c, "application/json", job->id);
	gw_http1_add_header(c->r, "Location", loc);
	gw_http1_respond(c->r, 202, body, body ? len : 0, body != NULL);
	run_job(c);
}

/* GET /v1/requests/{id}: the record arrives on the cache thread. */
static void on_async_record(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct conn *c = arg;
	c->lookup_r = r;
	c->lookup_value = value;
	c->lookup_len = len;
	atomic_store(&c->lookup_done, true);
	gw_http1_resume(c->r);
}

static void start_async_lookup(struct conn *c, const char *url)
{
	struct gw_error err;
	const char *id = url + strlen("/v1/requests/");
	if (!gw_async_id_valid(id)) {
		gw_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
			     "no async request %.64s (unknown or expired)", id);
		send_error(c, &err, NULL);
		return;
	}
	if (gw_cache_state(c->f->p->cache) != GW_CACHE_UP) {
		gw_error_set(&err, 503, "service_unavailable", "async_unavailable", NULL,
			     "async results live in Redis, which is unreachable; retry");
		err.retry_after_s = 5;
		send_error(c, &err, NULL);
		return;
	}
	snprintf(c->async_id, sizeof(c->async_id), "%s", id);
	char key[128];
	gw_async_key(id, key, sizeof(key));
	c->state = CONN_LOOKUP;
	gw_http1_park(c->r);
	gw_cache_get(c->f->p->cache, key, on_async_record, c);
}

static void answer_async_lookup(struct conn *c)
{
	struct gw_error err;
	struct gw_async_record ar;
	if (c->lookup_r == GW_CACHE_BYPASS) {
		gw_error_set(&err, 503, "service_unavailable", "async_unavailable", NULL,
			     "async results live in Redis, which is unreachable; retry");
		err.retry_after_s = 5;
		send_error(c, &err, NULL);
		return;
	}
	if (c->lookup_r != GW_CACHE_HIT ||
	    gw_async_parse(c->lookup_value, c->lookup_len, &ar) < 0) {
		gw_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
			     "no async request %s (unknown or expired)", c->async_id);
		send_error(c, &err, NULL);
		return;
	}
	if (ar.done) {
		send_body(c, (unsigned)ar.http_status, ar.body, ar.body_len, "application/json",
			  NULL);
		ar.body = NULL;
	} else {
		size_t len;
		char *body = gw_async_pending_body(c->async_id, &len);
		send_body(c, 202, body, len, "application/json", NULL);
	}
	gw_async_record_free(&ar);
}

/* The body is complete: parse it, look in the cache or queue the job, park. */
static void submit_chat(struct conn *c)
{
	struct gw_job *job = c->job;
	struct gw_http1_req *r = c->r;
	struct gw_error err;
	if (gw_chat_parse(r->body ? r->body : "", r->body_len, &job->chat, &err) < 0) {
		send_error(c, &err, job->id);
		return;
	}
	job->prompt_chars = r->body_len;
	/* Kept: an upstream that takes the request as sent gets these bytes. */
	job->chat.raw = r->body;
	job->chat.raw_len = r->body_len;
	r->body = NULL;
	if (strcmp(job->chat.model, "default") == 0) {
		const struct gw_service_conf *svc = gw_config_service(c->conf, job->service);
		const char *m = svc && svc->model ? svc->model : c->conf->default_model;
		if (gw_chat_set_model(&job->chat, m) < 0)
			return;
	}
	job->wake = conn_resume;
	if (c->async) {
		accept_async(c);
		return;
	}
	pthread_mutex_lock(&job->lock);
	job->conn = c;
	pthread_mutex_unlock(&job->lock);
	c->state = CONN_WAITING;
	/* Park first: the job may finish on another thread right away. */
	conn_suspend(c);
	run_job(c);
}

/* Request line and headers are in: route and check; answer GETs at once. */
static void on_headers(void *arg, struct gw_http1_req *r)
{
	struct gw_front *f = arg;
	struct gw_error err;
	const char *url = r->path, *method = r->method;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c)
		return; /* the server answers 500 */
	c->f = f;
	c->r = r;
	c->conf = current_config(f);
	r->user = c;
	c->route = route_of(url);
	bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
	bool is_post = strcmp(method, "POST") == 0;
	if (c->route == ROUTE_NONE) {
		gw_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
			     "unknown path %.200s; see /v1/chat/completions, /v1/models, "
			     "/health, /ready, /stats, /metrics, /dashboard",
			     url);
		send_error(c, &err, NULL);
		return;
	}
	if ((c->route == ROUTE_CHAT && !is_post) || (c->route != ROUTE_CHAT && !is_get)) {
		gw_error_set(&err, 405, "invalid_request_error", "method_not_allowed", NULL,
			     "%.16s is not allowed on %.200s; use %s", method, url,
			     c->route == ROUTE_CHAT ? "POST" : "GET");
		send_error(c, &err, NULL);
		return;
	}
	switch (c->route) {
	case ROUTE_HEALTH:
		answer_health(c);
		return;
	case ROUTE_READY:
		answer_ready(c);
		return;
	case ROUTE_MODELS:
		answer_models(c);
		return;
	case ROUTE_STATS:
	case ROUTE_METRICS:
		if (check_admin(c, &err) < 0)
			send_error(c, &err, NULL);
		else
			answer_stats(c);
		return;
	case ROUTE_DASHBOARD:
		answer_dashboard(c, url);
		return;
	case ROUTE_ASYNC: {
		const struct gw_key_conf *key;
		if (check_key(c, &key, &err) < 0)
			send_error(c, &err, NULL);
		else
			start_async_lookup(c, url);
		return;
	}
	default:
		break;
	}
	c->job = gw_job_new(c->conf);
	if (!c->job)
		return;
	c->job->t_arrival_us = gw_now_us();
	atomic_fetch_add(&f->pending, 1);
	c->counted = true;
	if (read_headers(c, &err) < 0) {
		send_error(c, &err, c->job->id);
		return;
	}
	r->max_body = c->conf->max_body_bytes;
	c->state = CONN_BODY;
}

static void on_body(void *arg, struct gw_http1_req *r)
{
	(void)arg;
	struct conn *c = r->user;
	struct gw_error err;
	if (!c || c->state != CONN_BODY)
		return;
	if (r->body_too_large) {
		gw_error_set(&err, 413, "invalid_request_error", "body_too_large", NULL,
			     "the request body is over the %zu-byte limit", c->conf->max_body_bytes);
		send_error(c, &err, c->job->id);
		return;
	}
	submit_chat(c);
}

static void on_resume(void *arg, struct gw_http1_req *r)
{
	(void)arg;
	struct conn *c = r->user;
	switch (c->state) {
	case CONN_WAITING:
		/* A started stream may already be finished: stream it regardless. */
		if (gw_job_started(c->job))
			answer_stream(c);
		else if (atomic_load(&c->job->finished))
			answer_job(c);
		else
			conn_suspend(c); /* spurious wake-up: keep waiting */
		return;
	case CONN_LOOKUP:
		if (!atomic_load(&c->lookup_done))
			gw_http1_park(r);
		else
			answer_async_lookup(c);
		return;
	default:
		return;
	}
}

static void on_done(void *arg, struct gw_http1_req *r)
{
	struct gw_front *f = arg;
	struct conn *c = r->user;
	if (!c)
		return;
	r->user = NULL;
	if (c->counted)
		atomic_fetch_sub(&f->pending, 1);
	if (c->job) {
		pthread_mutex_lock(&c->job->lock);
		c->job->conn = NULL;
		if (!c->job->ended)
			c->job->client_gone = true;
		pthread_mutex_unlock(&c->job->lock);
	}
	free(c->lookup_value);
	gw_job_unref(c->job);
	gw_config_unref(c->conf);
	free(c);
}

/* What the server answers a request it cannot read with. */
static char *error_body(void *arg, unsigned status, const char *message, size_t *len)
{
	(void)arg;
	struct gw_error err;
	const char *code = status == 431 ? "headers_too_large"
			   : status == 413 ? "body_too_large"
			   : status == 505 ? "http_version_not_supported"
			   : status == 501 ? "not_implemented"
			   : status >= 500 ? "internal_error"
					   : "malformed_request";
	gw_error_set(&err, (int)status, status >= 500 && status != 501 && status != 505
						? "server_error" : "invalid_request_error",
		     code, NULL, "%s", message);
	return gw_error_body(&err, len);
}

static int guest_fd(void *arg, unsigned worker)
{
	return gw_http1_fd(((struct gw_front *)arg)->d, worker);
}

static bool guest_run(void *arg, unsigned worker, bool io)
{
	return gw_http1_run(((struct gw_front *)arg)->d, worker, io);
}

/* Each front thread's loop pass: its beat for the watchdog. */
static void on_pass(void *arg, unsigned thread)
{
	struct gw_front *f = arg;
	if (thread < GW_FRONT_THREADS_MAX)
		gw_beat_touch(f->beats[thread]);
}

static int parse_addr(const char *host, uint16_t port, struct sockaddr_storage *ss,
		      bool *v6)
{
	memset(ss, 0, sizeof(*ss));
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
	const char *h = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
	if (inet_pton(AF_INET, h, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*v6 = false;
		return 0;
	}
	if (inet_pton(AF_INET6, h, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*v6 = true;
		return 0;
	}
	return -EINVAL;
}

struct gw_front *gw_front_start(const struct gw_front_opts *opts)
{
	struct gw_front *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->p = opts->pipeline;
	f->mode = opts->mode;
	f->started_us = gw_now_us();
	pthread_mutex_init(&f->conf_lock, NULL);
	f->conf = gw_config_ref(opts->conf);
	atomic_init(&f->pending, 0);
	atomic_init(&f->quiesced, false);
	atomic_init(&f->id_seq, 1);
	if (getrandom(&f->id_salt, sizeof(f->id_salt), 0) != sizeof(f->id_salt))
		f->id_salt = (uint32_t)gw_now_us();

	struct sockaddr_storage ss;
	bool v6 = false;
	if (parse_addr(opts->conf->listen_host, opts->conf->listen_port, &ss, &v6) < 0) {
		gw_log_errorx("listen address '%s' is not an IP address", opts->conf->listen_host);
		goto fail;
	}
	/* http_threads = 0: a loop in each worker thread, whose beat covers it. */
	unsigned threads = opts->conf->http_threads;
	f->external = threads == 0;
	if (f->external)
		threads = gw_workers_count(opts->workers);
	for (unsigned i = 0; !f->external && i < threads && i < GW_FRONT_THREADS_MAX; i++)
		f->beats[i] = gw_beat_register("http", i);
	struct gw_http1_opts ho = {
		.addr = (struct sockaddr *)&ss,
		.addr_len = v6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
		.threads = threads,
		.external = f->external,
		.max_conns = opts->conf->max_connections,
		.idle_timeout_s = 300,
		/* Request line and headers: 8 KiB, as nginx allows by default. A
		 * waiting request costs its input buffer and little else. */
		.max_header_bytes = 8 * 1024,
		.arg = f,
		.on_headers = on_headers,
		.on_body = on_body,
		.on_resume = on_resume,
		.on_done = on_done,
		.error_body = error_body,
		.on_pass = on_pass,
	};
	f->d = gw_http1_start(&ho);
	if (!f->d) {
		gw_log_errorx("cannot listen on %s:%u: %s", opts->conf->listen_host,
			      opts->conf->listen_port, strerror(errno));
		for (unsigned i = 0; i < GW_FRONT_THREADS_MAX; i++)
			gw_beat_unregister(f->beats[i]);
		goto fail;
	}
	if (f->external) {
		struct gw_worker_guest g = { .arg = f, .fd = guest_fd, .run = guest_run };
		int rc = gw_workers_attach(opts->workers, &g);
		if (rc < 0) {
			gw_log_errorx("cannot run the HTTP front in the workers: %s", strerror(-rc));
			gw_http1_stop(f->d);
			goto fail;
		}
	}
	return f;
fail:
	gw_config_unref(f->conf);
	pthread_mutex_destroy(&f->conf_lock);
	free(f);
	return NULL;
}

void gw_front_quiesce(struct gw_front *f)
{
	atomic_store(&f->quiesced, true);
	gw_http1_quiesce(f->d);
}

bool gw_front_external(const struct gw_front *f)
{
	return f && f->external;
}

unsigned gw_front_pending(struct gw_front *f)
{
	return atomic_load(&f->pending);
}

void gw_front_stop(struct gw_front *f)
{
	if (!f)
		return;
	gw_http1_stop(f->d);
	for (unsigned i = 0; i < GW_FRONT_THREADS_MAX; i++)
		gw_beat_unregister(f->beats[i]);
	gw_config_unref(f->conf);
	pthread_mutex_destroy(&f->conf_lock);
	free(f);
}
