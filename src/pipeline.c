/*
 * pipeline.c - admission, cache, booking and async records around the
 * scheduler. See pipeline.h.
 */
#include "pipeline.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "async.h"
#include "cache.h"
#include "ledger.h"
#include "log.h"
#include "scheduler.h"
#include "worker.h"

/* Posts a budget alert to the configured webhook (Slack and Discord
 * both accept this shape). */
static void post_alert(struct gw_pipeline *p, const struct gw_config *conf, const char *msg)
{
	if (!conf->budget_webhook_url || !p->workers)
		return;
	json_t *o = json_pack("{s:s, s:s}", "text", msg, "content", msg);
	char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (body)
		gw_workers_post(p->workers, conf->budget_webhook_url, body);
	free(body);
}

/* One ledger entry per answered chat request; budget holds settle here. */
static void book(struct gw_pipeline *p, struct gw_job *job)
{
	const struct gw_config *conf = job->conf;
	bool priced = false;
	bool stream_ok = !(job->started && job->stream_failed);
	job->cost = job->cache_hit ? 0 : gw_ledger_price(conf, job->chat.model, &job->usage, &priced);
	gw_ledger_settle(p->ledger, &job->resv, job->cost);
	struct gw_ledger_entry e = {
		.service = job->service,
		.provider = job->cache_hit ? -1 : job->provider,
		.model = job->chat.model,
		.prio = job->prio,
		.cache_hit = job->cache_hit,
		.error = job->status >= 400 || !stream_ok,
		.prompt_tokens = job->usage.prompt_tokens,
		.completion_tokens = job->usage.completion_tokens,
		.cost = job->cost,
		.saved = job->saved,
		.queue_us = job->queue_us,
		.upstream_us = job->upstream_us,
	};
	gw_ledger_record(p->ledger, &e);
	char msg[512];
	while (gw_ledger_take_alert(p->ledger, conf, conf->budget_alert_percent / 100.0, msg,
				    sizeof(msg))) {
		gw_log_warnx("budget alert: %s", msg);
		post_alert(p, conf, msg);
	}
}

/* Stores a successful answer; a stream is stored once it completed. */
static void store_answer(struct gw_pipeline *p, struct gw_job *job)
{
	if (!job->cache_store || job->cache_hit || job->status != 200 || !p->cache)
		return;
	char *completion = NULL;
	size_t clen = 0;
	if (job->chat.stream) {
		if (!job->started || job->stream_failed)
			return;
		completion = gw_answer_from_sse(job->record.data, job->record.len, &clen);
	} else if (job->body) {
		completion = job->body;
		clen = job->body_len;
	}
	if (!completion)
		return;
	size_t elen;
	char *env = gw_answer_pack(completion, clen, &job->usage, job->cost, &elen);
	if (env)
		gw_cache_set(p->cache, job->cache_key, env, elen, job->cache_ttl_s);
	free(env);
	if (completion != job->body)
		free(completion);
}

/*
 * A bounded line under construction; past its end, text is dropped. An
 * access line never gets there: its fields are bounded (request id and
 * service 64 characters, model 256, at most 1536 once escaped).
 * Assembled from literals, integers and escaped strings without printf:
 * it runs once per request on the hot path.
 */
struct line {
	char buf[2048];
	size_t len;
};

static void put_mem(struct line *l, const char *s, size_t n)
{
	size_t room = sizeof(l->buf) - 1 - l->len;
	if (n > room)
		n = room;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

#define put_lit(l, s) put_mem((l), (s), sizeof(s) - 1)

static void put_int(struct line *l, int64_t v)
{
	char num[24];
	put_mem(l, num, gw_fmt_i64(num, v));
}

/* Appends s as a JSON string: quotes, backslashes and controls escaped.
 * Runs of characters that need no escape are copied whole. */
static void put_str(struct line *l, const char *s)
{
	put_lit(l, "\"");
	for (;;) {
		size_t run = 0;
		while ((unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
			run++;
		put_mem(l, s, run);
		s += run;
		if (!*s || l->len + 8 >= sizeof(l->buf))
			break;
		unsigned char c = (unsigned char)*s++;
		if (c == '"' || c == '\\') {
			char e[2] = { '\\', (char)c };
			put_mem(l, e, sizeof(e));
		} else {
			char u[6] = { '\\', 'u', '0', '0', gw_hex_char(c >> 4), gw_hex_char(c) };
			put_mem(l, u, sizeof(u));
		}
	}
	put_lit(l, "\"");
}

/* One JSON line per answered request. */
static void access_log(const struct gw_job *job)
{
	char cost[32];
	struct line l = { .len = 0 };
	gw_ledger_format_usd(job->cost, cost, sizeof(cost));
	put_lit(&l, "{\"id\":");
	put_str(&l, job->id);
	put_lit(&l, ",\"service\":");
	put_str(&l, job->service);
	put_lit(&l, ",\"priority\":");
	put_str(&l, gw_priority_name(job->prio));
	put_lit(&l, ",\"provider\":");
	put_str(&l, job->provider >= 0 && !job->cache_hit
			    ? gw_provider_name((enum gw_provider_id)job->provider)
			    : "none");
	put_lit(&l, ",\"model\":");
	put_str(&l, job->chat.model ? job->chat.model : "");
	put_lit(&l, ",\"cache\":");
	put_str(&l, job->x_cache ? job->x_cache : "");
	put_lit(&l, ",\"status\":");
	put_int(&l, job->status);
	if (job->chat.stream)
		put_lit(&l, ",\"stream\":true");
	else
		put_lit(&l, ",\"stream\":false");
	put_lit(&l, ",\"prompt_tokens\":");
	put_int(&l, job->usage.prompt_tokens);
	put_lit(&l, ",\"completion_tokens\":");
	put_int(&l, job->usage.completion_tokens);
	put_lit(&l, ",\"cost_usd\":");
	put_str(&l, cost);
	put_lit(&l, ",\"queue_ms\":");
	put_int(&l, job->queue_us / 1000);
	put_lit(&l, ",\"upstream_ms\":");
	put_int(&l, job->upstream_us / 1000);
	put_lit(&l, "}");
	l.buf[l.len] = '\0';
	gw_log_access(l.buf, l.len);
}

/* Runs once per admitted job, on whatever thread finished it. */
static void job_done(struct gw_job *job, void *arg)
{
	struct gw_pipeline *p = arg;
	book(p, job);
	store_answer(p, job);
	access_log(job);
	if (job->is_async) {
		/* A job cut off by shutdown stays pending: the next start resumes it. */
		if (job->status == 503 && atomic_load(&p->draining))
			gw_log_info("async %s left pending for the next start", job->async_id);
		else
			gw_async_complete(p->cache, p->instance, job, job->async_id,
					  job->conf->async_retention_s);
	}
	gw_job_wake(job);
}

/* Answers a job that never reached the scheduler (refused at admission). */
static void finish_refused(struct gw_job *job, const struct gw_error *err)
{
	gw_job_set_error(job, err);
	gw_job_finish(job);
}

/* After the cache: hold the budget estimate, then queue. */
static void admit(struct gw_pipeline *p, struct gw_job *job)
{
	const struct gw_config *conf = job->conf;
	struct gw_error err;
	char why[256];
	int retry_after = 0;
	gw_pusd est = gw_ledger_estimate(conf, job->chat.model, job->prompt_chars,
					 job->chat.max_tokens);
	bool allow_over = job->prio == GW_PRIO_CRITICAL && conf->budget_critical_exempt;
	if (gw_ledger_reserve(p->ledger, conf, job->service, est, allow_over, &job->resv,
			      &retry_after, why, sizeof(why)) < 0) {
		gw_error_set(&err, 429, "rate_limit_exceeded", "budget_exceeded", NULL, "%s", why);
		err.retry_after_s = retry_after > 0 ? retry_after : 1;
		/* The budget comes back at the end of the period, not in seconds. */
		err.no_retry = true;
		finish_refused(job, &err);
		return;
	}
	if (gw_sched_submit(p->sched, job, &err) < 0)
		finish_refused(job, &err);
}

/* The cache lookup's answer, on the cache thread (or the caller's). */
static void on_cache(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct gw_job *job = arg;
	struct gw_pipeline *p = job->done_arg;
	char *completion = NULL;
	size_t clen = 0;
	struct gw_usage u;
	gw_pusd cost = 0;
	if (r == GW_CACHE_HIT &&
	    gw_answer_unpack(value, len, &completion, &clen, &u, &cost) == 0) {
		job->cache_hit = true;
		job->x_cache = "HIT";
		job->usage = u;
		job->saved = cost;
		job->status = 200;
		if (job->chat.stream) {
			size_t sl = 0;
			char *sse = gw_answer_to_sse(completion, clen, job->chat.include_usage, &sl);
			free(completion);
			if (sse)
				gw_job_stream_push(job, sse, sl, true, false);
			free(sse);
		} else {
			job->body = completion;
			job->body_len = clen;
		}
		gw_job_finish(job);
	} else {
		job->x_cache = r == GW_CACHE_BYPASS ? "BYPASS" : "MISS";
		/* Redis is away: do not queue a write it will drop anyway. */
		if (r == GW_CACHE_BYPASS)
			job->cache_store = false;
		admit(p, job);
	}
	free(value);
	gw_job_unref(job);
}

void gw_pipeline_run(struct gw_pipeline *p, struct gw_job *job, const struct gw_cache_hints *h)
{
	const struct gw_config *conf = job->conf;
	const char *explicit_key = h ? h->explicit_key : NULL;
	job->done = job_done;
	job->done_arg = p;
	if (p->cache && conf->cache_enabled && !(h && h->no_store)) {
		char scope[GW_CACHE_SCOPE_MAX];
		if (conf->cache_scope == GW_SCOPE_SERVICE)
			snprintf(scope, sizeof(scope), "s:%s", job->service);
		else if (conf->cache_scope == GW_SCOPE_KEY && job->key_name)
			snprintf(scope, sizeof(scope), "k:%s", job->key_name);
		else
			snprintf(scope, sizeof(scope), "g");
		if (gw_cache_key(&job->chat, explicit_key && explicit_key[0] ? explicit_key : NULL,
				 scope, job->cache_key, sizeof(job->cache_key)) == 0) {
			job->cache_store = true;
			job->x_cache = "MISS";
			if (!(h && h->no_cache)) {
				gw_cache_get(p->cache, job->cache_key, on_cache, gw_job_ref(job));
				return;
			}
		}
	}
	admit(p, job);
}

void gw_pipeline_resume_async(struct gw_pipeline *p, struct gw_config *conf, const char *id,
			      const char *rec, size_t len)
{
	struct gw_async_record ar;
	struct gw_error err;
	if (gw_async_parse(rec, len, &ar) < 0 || ar.done) {
		if (!ar.done)
			gw_log_warnx("async %s: unreadable record, dropped", id);
		gw_async_record_free(&ar);
		return;
	}
	struct gw_job *job = gw_job_new(conf);
	if (!job)
		goto out;
	job->t_arrival_us = gw_now_us();
	snprintf(job->id, sizeof(job->id), "%s", id);
	snprintf(job->service, sizeof(job->service), "%s", ar.service);
	job->prio = ar.prio;
	if (conf->deadline_ms[job->prio] > 0)
		job->deadline_us = job->t_arrival_us + (int64_t)conf->deadline_ms[job->prio] * 1000;
	if (gw_chat_parse(ar.request, ar.request_len, &job->chat, &err) < 0) {
		gw_log_warnx("async %s: stored request no longer valid: %s", id, err.message);
		goto out;
	}
	/* The job owns the stored request from here: its tree is built from
	 * it on demand, and an OpenAI-dialect upstream takes it as it is. */
	job->chat.raw = ar.request;
	job->chat.raw_len = ar.request_len;
	ar.request = NULL;
	job->prompt_chars = job->chat.raw_len;
	job->is_async = true;
	snprintf(job->async_id, sizeof(job->async_id), "%s", id);
	/* Still owed: pending again until it finishes. */
	gw_async_accept(p->cache, p->instance, job, id, conf->async_retention_s);
	gw_log_info("async %s resumed (%s, %s)", id, job->service, gw_priority_name(job->prio));
	gw_pipeline_run(p, job, NULL);
out:
	gw_job_unref(job);
	gw_async_record_free(&ar);
}

