/*
 * http_front.c - libmicrohttpd front: routing, limits, header semantics,
 * suspend/resume around jobs, response writing. See http_front.h.
 *
 * Per-connection state is a small state machine (enum conn_state):
 *   HEADERS  first callback: route, method, Content-Length and header
 *            checks; errors are answered before any body is read
 *   BODY     body bytes are collected, bounded by max_body_bytes
 *   DISCARD  a chunked body went over the bound: the rest is read and
 *            dropped (up to a hard cap) so the client gets its 413
 *   WAITING  a job was submitted and the connection is suspended; the
 *            job resumes it (from whatever thread) when it finishes or
 *            its stream starts
 *   STREAMING a chunked event-stream response drains the job's bytes;
 *            the connection is suspended whenever none are waiting
 *   LOOKUP   GET /v1/requests/{id}: suspended while the cache thread
 *            reads the record from Redis
 *   ANSWERED a response was queued; NOTIFY_COMPLETED frees the state
 */
#include "http_front.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
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
#include "job.h"
#include "ledger.h"
#include "log.h"
#include "pipeline.h"
#include "request.h"
#include "scheduler.h"
#include "stats.h"

enum conn_state {
	CONN_HEADERS = 0,
	CONN_BODY,
	CONN_DISCARD,
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
	struct MHD_Daemon *d;
	struct gw_pipeline *p;
	const char *mode;
	int64_t started_us;
	pthread_mutex_t conf_lock;
	struct gw_config *conf;
	atomic_uint pending;          /* chat requests accepted, not completed */
	atomic_bool quiesced;
	atomic_uint_fast64_t id_seq;
	uint32_t id_salt;
};

struct conn {
	enum conn_state state;
	enum route route;
	struct gw_front *f;
	struct MHD_Connection *mc;
	struct gw_config *conf;
	struct gw_buf body;
	struct gw_job *job;
	bool counted;
	size_t discarded;
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

/* How much of an over-long chunked body is read and dropped before the
 * connection is simply closed. */
#define DISCARD_CAP (8u << 20)

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

/* Queues body (ownership taken, freed by MHD) with status and JSON type. */
static enum MHD_Result send_body(struct MHD_Connection *mc, unsigned status, char *body,
				 size_t len, const char *ctype, const char *request_id,
				 struct MHD_Response **out)
{
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, body ? body : (void *)"", body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	if (request_id)
		MHD_add_response_header(r, "X-Request-Id", request_id);
	if (out) {
		*out = r;
		return MHD_YES;
	}
	enum MHD_Result ret = MHD_queue_response(mc, status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_error(struct conn *c, const struct gw_error *err,
				  const char *request_id)
{
	size_t len = 0;
	char *body = gw_error_body(err, &len);
	struct MHD_Response *r;
	c->state = CONN_ANSWERED;
	if (send_body(c->mc, (unsigned)err->status, body, len, "application/json", request_id,
		      &r) != MHD_YES)
		return MHD_NO;
	if (err->retry_after_s > 0) {
		char ra[16];
		snprintf(ra, sizeof(ra), "%d", err->retry_after_s);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, ra);
	}
	if (err->status == 405) {
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW,
					c->route == ROUTE_CHAT ? "POST" : "GET, HEAD");
	}
	enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)err->status, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result send_json(struct conn *c, unsigned status, json_t *root)
{
	char *s = root ? json_dumps(root, JSON_COMPACT) : NULL;
	json_decref(root);
	if (!s)
		return MHD_NO;
	c->state = CONN_ANSWERED;
	return send_body(c->mc, status, s, strlen(s), "application/json", NULL, NULL);
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
static enum MHD_Result answer_health(struct conn *c)
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
		return send_json(c, 503, body);
	}
	return send_json(c, 200, body);
}

static enum MHD_Result answer_ready(struct conn *c)
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
	return send_json(c, ready ? 200 : 503,
			 json_pack("{s:b, s:o, s:s}", "ready", ready, "providers", provs, "redis",
				   redis));
}

/* /stats (JSON, or CSV with ?format=csv) and /metrics, from the ledger
 * and a snapshot of the scheduler. */
static enum MHD_Result answer_stats(struct conn *c)
{
	struct gw_front *f = c->f;
	struct gw_sched_snapshot snap;
	int64_t up = (gw_now_us() - f->started_us) / 1000000;
	const char *fmt = MHD_lookup_connection_value(c->mc, MHD_GET_ARGUMENT_KIND, "format");
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
		return send_error(c, &err, NULL);
	} else {
		body = gw_stats_json(f->p->ledger, c->conf, &snap, up);
		ctype = "application/json";
	}
	if (!body)
		return MHD_NO;
	c->state = CONN_ANSWERED;
	return send_body(c->mc, 200, body, strlen(body), ctype, NULL, NULL);
}


/*
 * GET /dashboard and /dashboard/chart.js: static bytes compiled in. The
 * page holds no data (it reads /stats, which the admin key guards), so
 * it is served without a key: a browser cannot send a Bearer header when
 * it opens a page.
 */
static enum MHD_Result answer_dashboard(struct conn *c, const char *url)
{
	const char *body, *ctype;
	size_t len;
	if (gw_dashboard_asset(url, &body, &len, &ctype) < 0)
		return MHD_NO;
	struct MHD_Response *r =
		MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	bool page = strcmp(url, "/dashboard") == 0;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL,
				page ? "no-cache" : "public, max-age=86400");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	if (page)
		MHD_add_response_header(r, "Content-Security-Policy", GW_DASHBOARD_CSP);
	c->state = CONN_ANSWERED;
	enum MHD_Result ret = MHD_queue_response(c->mc, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer_models(struct conn *c)
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
	return send_json(c, 200, json_pack("{s:s, s:o}", "object", "list", "data", data));
}

/* job->wake: runs with job->lock held, on whatever thread. */
static void conn_resume(void *arg)
{
	struct conn *c = arg;
	MHD_resume_connection(c->mc);
}

/* Suspends the connection until the job wakes it. */
static void conn_suspend(struct conn *c)
{
	pthread_mutex_lock(&c->job->lock);
	c->job->suspended = true;
	MHD_suspend_connection(c->mc);
	pthread_mutex_unlock(&c->job->lock);
}

/* MHD pulls stream bytes from the job; with none waiting it suspends. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
	(void)pos;
	struct conn *c = cls;
	struct gw_job *job = c->job;
	ssize_t n;
	pthread_mutex_lock(&job->lock);
	if (job->out.len > 0) {
		size_t k = job->out.len < max ? job->out.len : max;
		memcpy(buf, job->out.data, k);
		gw_buf_consume(&job->out, k);
		n = (ssize_t)k;
	} else if (job->ended) {
		n = MHD_CONTENT_READER_END_OF_STREAM;
	} else {
		job->suspended = true;
		MHD_suspend_connection(c->mc);
		n = 0;
	}
	pthread_mutex_unlock(&job->lock);
	return n;
}

static void add_job_headers(struct MHD_Response *r, const struct gw_job *job)
{
	char num[32];
	MHD_add_response_header(r, "X-Cache", job->x_cache);
	if (job->provider >= 0 && job->status < 500)
		MHD_add_response_header(r, "X-Provider",
					gw_provider_name((enum gw_provider_id)job->provider));
	snprintf(num, sizeof(num), "%lld", (long long)(job->queue_us / 1000));
	MHD_add_response_header(r, "X-Queue-Ms", num);
}

static enum MHD_Result answer_stream(struct conn *c)
{
	struct gw_job *job = c->job;
	struct MHD_Response *r =
		MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, c, NULL);
	if (!r)
		return MHD_NO;
	c->state = CONN_STREAMING;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
	MHD_add_response_header(r, "X-Accel-Buffering", "no");
	MHD_add_response_header(r, "X-Request-Id", job->id);
	add_job_headers(r, job);
	enum MHD_Result ret = MHD_queue_response(c->mc, MHD_HTTP_OK, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result answer_job(struct conn *c)
{
	struct gw_job *job = c->job;
	struct MHD_Response *r;
	char *body = job->body;
	size_t len = job->body_len;
	job->body = NULL;
	c->state = CONN_ANSWERED;
	if (send_body(c->mc, (unsigned)job->status, body, len, "application/json", job->id, &r) !=
	    MHD_YES)
		return MHD_NO;
	char num[32];
	add_job_headers(r, job);
	if (job->cost == 0)
		snprintf(num, sizeof(num), "0");
	else
		gw_ledger_format_usd(job->cost, num, sizeof(num));
	MHD_add_response_header(r, "X-Cost-USD", num);
	if (job->retry_after_s > 0) {
		snprintf(num, sizeof(num), "%d", job->retry_after_s);
		MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, num);
	}
	/* The OpenAI SDKs honour this and do not retry by themselves. */
	if (job->no_retry)
		MHD_add_response_header(r, "x-should-retry", "false");
	enum MHD_Result ret = MHD_queue_response(c->mc, (unsigned)job->status, r);
	MHD_destroy_response(r);
	return ret;
}

static void new_request_id(struct gw_front *f, char out[GW_REQUEST_ID_MAX + 1])
{
	uint64_t n = atomic_fetch_add(&f->id_seq, 1);
	snprintf(out, GW_REQUEST_ID_MAX + 1, "req_%08x%012llx", f->id_salt,
		 (unsigned long long)n);
}

/* The bearer token of the Authorization header, or NULL. */
static const char *bearer(struct MHD_Connection *mc)
{
	const char *v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
						    MHD_HTTP_HEADER_AUTHORIZATION);
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
	const char *token = bearer(c->mc);
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
	const char *token = bearer(c->mc);
	if (token && gw_config_is_admin(c->conf, token))
		return 0;
	gw_error_set(err, 401, "authentication_error", "invalid_api_key", NULL,
		     "this page needs the admin key: send Authorization: Bearer <admin key>");
	return -EACCES;
}

/* Header checks done before the body is read; fills job fields. */
static int read_headers(struct conn *c, struct gw_error *err)
{
	struct MHD_Connection *mc = c->mc;
	struct gw_job *job = c->job;
	const char *v;

	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Request-Id");
	if (v) {
		if (gw_hdr_request_id(v, job->id, err) < 0)
			return -EINVAL;
	} else {
		new_request_id(c->f, job->id);
	}
	const struct gw_key_conf *key;
	if (check_key(c, &key, err) < 0)
		return -EACCES;
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Service-Name");
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
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Priority");
	if (v) {
		if (gw_hdr_priority(v, &job->prio, err) < 0)
			return -EINVAL;
	} else {
		job->prio = svc && svc->priority >= 0 ? (enum gw_priority)svc->priority : GW_PRIO_MEDIUM;
	}
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Cache-Key");
	if (v && gw_hdr_cache_key(v, c->cache_key_hdr, sizeof(c->cache_key_hdr), err) < 0)
		return -EINVAL;
	job->cache_ttl_s = svc && svc->cache_ttl_s > 0 ? (unsigned)svc->cache_ttl_s
						     : c->conf->cache_ttl_s;
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Cache-TTL");
	if (v && gw_hdr_cache_ttl(v, &job->cache_ttl_s, err) < 0)
		return -EINVAL;
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CACHE_CONTROL);
	if (v) {
		c->no_store = strcasestr(v, "no-store") != NULL;
		c->no_cache = strcasestr(v, "no-cache") != NULL;
	}
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Async");
	if (v && gw_hdr_bool("X-Async", v, &c->async, err) < 0)
		return -EINVAL;
	int64_t deadline_ms = c->conf->deadline_ms[job->prio];
	v = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, "X-Deadline-Ms");
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
static enum MHD_Result accept_async(struct conn *c)
{
	struct gw_front *f = c->f;
	struct gw_job *job = c->job;
	struct gw_error err;
	if (job->chat.stream) {
		gw_error_set(&err, 400, "invalid_request_error", "invalid_header", "X-Async",
			     "X-Async cannot be combined with \"stream\": true");
		return send_error(c, &err, job->id);
	}
	if (gw_cache_state(f->p->cache) != GW_CACHE_UP) {
		gw_error_set(&err, 503, "service_unavailable", "async_unavailable", "X-Async",
			     "async requests keep their results in Redis, which is unreachable; "
			     "retry, or send the request without X-Async");
		err.retry_after_s = 5;
		return send_error(c, &err, job->id);
	}
	job->is_async = true;
	gw_async_new_id(job->async_id);
	gw_async_accept(f->p->cache, f->p->instance, job, job->async_id, c->conf->async_retention_s);
	size_t len;
	char *body = gw_async_pending_body(job->async_id, &len);
	char loc[96];
	snprintf(loc, sizeof(loc), "/v1/requests/%s", job->async_id);
	struct MHD_Response *r;
	c->state = CONN_ANSWERED;
	if (send_body(c->mc, 202, body, len, "application/json", job->id, &r) != MHD_YES)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_LOCATION, loc);
	enum MHD_Result ret = MHD_queue_response(c->mc, 202, r);
	MHD_destroy_response(r);
	run_job(c);
	return ret;
}

/* GET /v1/requests/{id}: the record arrives on the cache thread. */
static void on_async_record(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct conn *c = arg;
	c->lookup_r = r;
	c->lookup_value = value;
	c->lookup_len = len;
	atomic_store(&c->lookup_done, true);
	MHD_resume_connection(c->mc);
}

static enum MHD_Result start_async_lookup(struct conn *c, const char *url)
{
	struct gw_error err;
	const char *id = url + strlen("/v1/requests/");
	if (!gw_async_id_valid(id)) {
		gw_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
			     "no async request %.64s (unknown or expired)", id);
		return send_error(c, &err, NULL);
	}
	if (gw_cache_state(c->f->p->cache) != GW_CACHE_UP) {
		gw_error_set(&err, 503, "service_unavailable", "async_unavailable", NULL,
			     "async results live in Redis, which is unreachable; retry");
		err.retry_after_s = 5;
		return send_error(c, &err, NULL);
	}
	snprintf(c->async_id, sizeof(c->async_id), "%s", id);
	char key[128];
	gw_async_key(id, key, sizeof(key));
	c->state = CONN_LOOKUP;
	MHD_suspend_connection(c->mc);
	gw_cache_get(c->f->p->cache, key, on_async_record, c);
	return MHD_YES;
}

static enum MHD_Result answer_async_lookup(struct conn *c)
{
	struct gw_error err;
	struct gw_async_record ar;
	if (c->lookup_r == GW_CACHE_BYPASS) {
		gw_error_set(&err, 503, "service_unavailable", "async_unavailable", NULL,
			     "async results live in Redis, which is unreachable; retry");
		err.retry_after_s = 5;
		return send_error(c, &err, NULL);
	}
	if (c->lookup_r != GW_CACHE_HIT ||
	    gw_async_parse(c->lookup_value, c->lookup_len, &ar) < 0) {
		gw_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
			     "no async request %s (unknown or expired)", c->async_id);
		return send_error(c, &err, NULL);
	}
	c->state = CONN_ANSWERED;
	enum MHD_Result ret;
	if (ar.done) {
		ret = send_body(c->mc, (unsigned)ar.http_status, ar.body, ar.body_len,
				"application/json", NULL, NULL);
		ar.body = NULL;
	} else {
		size_t len;
		char *body = gw_async_pending_body(c->async_id, &len);
		ret = send_body(c->mc, 202, body, len, "application/json", NULL, NULL);
	}
	gw_async_record_free(&ar);
	return ret;
}

/* The body is complete: parse it, look in the cache or queue the job, suspend. */
static enum MHD_Result submit_chat(struct conn *c)
{
	struct gw_job *job = c->job;
	struct gw_error err;
	if (gw_chat_parse(c->body.data, c->body.len, &job->chat, &err) < 0)
		return send_error(c, &err, job->id);
	job->prompt_chars = c->body.len;
	/* Kept: an upstream that takes the request as sent gets these bytes. */
	job->chat.raw = gw_buf_steal(&c->body, &job->chat.raw_len);
	if (strcmp(job->chat.model, "default") == 0) {
		const struct gw_service_conf *svc = gw_config_service(c->conf, job->service);
		const char *m = svc && svc->model ? svc->model : c->conf->default_model;
		if (gw_chat_set_model(&job->chat, m) < 0)
			return MHD_NO;
	}
	job->wake = conn_resume;
	if (c->async)
		return accept_async(c);
	pthread_mutex_lock(&job->lock);
	job->conn = c;
	pthread_mutex_unlock(&job->lock);
	c->state = CONN_WAITING;
	/* Suspend first: the job may finish on another thread right away. */
	conn_suspend(c);
	run_job(c);
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *mc, const char *url,
				  const char *method, const char *version,
				  const char *upload_data, size_t *upload_data_size,
				  void **con_cls)
{
	(void)version;
	struct gw_front *f = cls;
	struct conn *c = *con_cls;
	struct gw_error err;

	if (!c) {
		c = calloc(1, sizeof(*c));
		if (!c)
			return MHD_NO;
		c->f = f;
		c->mc = mc;
		c->conf = current_config(f);
		*con_cls = c;
		c->route = route_of(url);
		bool is_get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
		bool is_post = strcmp(method, "POST") == 0;
		if (c->route == ROUTE_NONE) {
			gw_error_set(&err, 404, "invalid_request_error", "not_found", NULL,
				     "unknown path %.200s; see /v1/chat/completions, /v1/models, "
				     "/health, /ready, /stats, /metrics, /dashboard",
				     url);
			return send_error(c, &err, NULL);
		}
		if ((c->route == ROUTE_CHAT && !is_post) || (c->route != ROUTE_CHAT && !is_get)) {
			gw_error_set(&err, 405, "invalid_request_error", "method_not_allowed", NULL,
				     "%.16s is not allowed on %.200s; use %s", method, url,
				     c->route == ROUTE_CHAT ? "POST" : "GET");
			return send_error(c, &err, NULL);
		}
		if (c->route == ROUTE_STATS || c->route == ROUTE_METRICS) {
			if (check_admin(c, &err) < 0)
				return send_error(c, &err, NULL);
		}
		if (c->route == ROUTE_ASYNC) {
			const struct gw_key_conf *key;
			if (check_key(c, &key, &err) < 0)
				return send_error(c, &err, NULL);
			return start_async_lookup(c, url);
		}
		if (c->route != ROUTE_CHAT)
			return MHD_YES;

		c->job = gw_job_new(c->conf);
		if (!c->job)
			return MHD_NO;
		c->job->t_arrival_us = gw_now_us();
		atomic_fetch_add(&f->pending, 1);
		c->counted = true;
		if (read_headers(c, &err) < 0)
			return send_error(c, &err, c->job->id);
		const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND,
							     MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (cl) {
			char *end;
			errno = 0;
			unsigned long long n = strtoull(cl, &end, 10);
			if (errno || *end || n > c->conf->max_body_bytes) {
				gw_error_set(&err, 413, "invalid_request_error", "body_too_large",
					     NULL, "the request body is over the %zu-byte limit",
					     c->conf->max_body_bytes);
				return send_error(c, &err, c->job->id);
			}
		}
		gw_buf_init(&c->body, c->conf->max_body_bytes);
		c->state = CONN_BODY;
		return MHD_YES;
	}

	switch (c->state) {
	case CONN_HEADERS:
		if (c->route == ROUTE_HEALTH)
			return answer_health(c);
		if (c->route == ROUTE_READY)
			return answer_ready(c);
		if (c->route == ROUTE_MODELS)
			return answer_models(c);
		if (c->route == ROUTE_STATS || c->route == ROUTE_METRICS)
			return answer_stats(c);
		if (c->route == ROUTE_DASHBOARD)
			return answer_dashboard(c, url);
		return MHD_NO;
	case CONN_BODY:
		if (*upload_data_size > 0) {
			int rc = gw_buf_append(&c->body, upload_data, *upload_data_size);
			*upload_data_size = 0;
			if (rc == -E2BIG) {
				gw_buf_free(&c->body);
				c->state = CONN_DISCARD;
				return MHD_YES;
			}
			return rc < 0 ? MHD_NO : MHD_YES;
		}
		return submit_chat(c);
	case CONN_DISCARD:
		if (*upload_data_size > 0) {
			c->discarded += *upload_data_size;
			*upload_data_size = 0;
			return c->discarded > DISCARD_CAP ? MHD_NO : MHD_YES;
		}
		gw_error_set(&err, 413, "invalid_request_error", "body_too_large", NULL,
			     "the request body is over the %zu-byte limit", c->conf->max_body_bytes);
		return send_error(c, &err, c->job->id);
	case CONN_WAITING:
		/* A started stream may already be finished: stream it regardless. */
		if (gw_job_started(c->job))
			return answer_stream(c);
		if (atomic_load(&c->job->finished))
			return answer_job(c);
		conn_suspend(c); /* spurious wake-up: keep waiting */
		return MHD_YES;
	case CONN_STREAMING:
		return MHD_YES;
	case CONN_LOOKUP:
		if (!atomic_load(&c->lookup_done))
			return MHD_YES;
		return answer_async_lookup(c);
	case CONN_ANSWERED:
		/* Upload data after an early answer is discarded. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	return MHD_NO;
}

static void on_completed(void *cls, struct MHD_Connection *mc, void **con_cls,
			 enum MHD_RequestTerminationCode toe)
{
	(void)mc;
	(void)toe;
	struct gw_front *f = cls;
	struct conn *c = *con_cls;
	if (!c)
		return;
	*con_cls = NULL;
	if (c->counted)
		atomic_fetch_sub(&f->pending, 1);
	if (c->job) {
		pthread_mutex_lock(&c->job->lock);
		c->job->conn = NULL;
		if (!c->job->ended)
			c->job->client_gone = true;
		pthread_mutex_unlock(&c->job->lock);
	}
	gw_buf_free(&c->body);
	free(c->lookup_value);
	gw_job_unref(c->job);
	gw_config_unref(c->conf);
	free(c);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char line[512];
	vsnprintf(line, sizeof(line), fmt, ap);
	size_t n = strlen(line);
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		line[--n] = '\0';
	gw_log_debug("http: %s", line);
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
	unsigned flags = MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME |
			 MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
	f->d = MHD_start_daemon(flags, opts->conf->listen_port, NULL, NULL, on_request, f,
				MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
				MHD_OPTION_CONNECTION_LIMIT, (unsigned)opts->conf->max_connections,
				MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
				/* Headers and the read buffer; bodies are copied out. A
				 * waiting request should cost kilobytes, not MHD's 32 KiB; 8 KiB
				 * of headers is what nginx allows too. */
				MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(8 * 1024),
				MHD_OPTION_LISTEN_BACKLOG_SIZE, (unsigned)4096,
				/* Each thread resumes its own suspended connections, and
				 * libmicrohttpd walks all of them on every resume: at
				 * thousands waiting, two threads halve that walk. */
				MHD_OPTION_THREAD_POOL_SIZE, opts->conf->http_threads,
				MHD_OPTION_NOTIFY_COMPLETED, on_completed, f,
				MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL, MHD_OPTION_END);
	if (!f->d) {
		gw_log_errorx("cannot listen on %s:%u (in use, or not allowed)",
			      opts->conf->listen_host, opts->conf->listen_port);
		goto fail;
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
	MHD_socket s = MHD_quiesce_daemon(f->d);
	if (s != MHD_INVALID_SOCKET)
		close(s);
}

unsigned gw_front_pending(struct gw_front *f)
{
	return atomic_load(&f->pending);
}

void gw_front_stop(struct gw_front *f)
{
	if (!f)
		return;
	MHD_stop_daemon(f->d);
	gw_config_unref(f->conf);
	pthread_mutex_destroy(&f->conf_lock);
	free(f);
}
