/*
 * async.c - records of fire-and-forget requests in Redis. See async.h.
 */
#include "async.h"

#include "log.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#define KEY_MAX 512
#define RECOVER_MAX 100000
/* Writes Redis refused (breaker open, timeout) wait here to be sent again. */
#define RETRY_MAX 100000

/*
 * One Redis write of an async record, kept until Redis took it: a result
 * written while Redis blinked must not be lost. "queued" records are
 * written with NX, so a late retry never hides a "done" written meanwhile.
 */
struct write {
	struct write *next;
	int argc;
	char *argv[6];
	size_t argvlen[6];
};

static pthread_mutex_t retry_mu = PTHREAD_MUTEX_INITIALIZER;
static struct write *retry_head;
static unsigned retry_count;

static void write_free(struct write *w)
{
	for (int i = 0; i < w->argc; i++)
		free(w->argv[i]);
	free(w);
}

static void on_write(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	(void)len;
	struct write *w = arg;
	free(value);
	if (r != GW_CACHE_BYPASS) {
		write_free(w);
		return;
	}
	pthread_mutex_lock(&retry_mu);
	if (retry_count < RETRY_MAX) {
		w->next = retry_head;
		retry_head = w;
		retry_count++;
		w = NULL;
	}
	pthread_mutex_unlock(&retry_mu);
	if (w) {
		gw_log_warnx("async: a record write was dropped (retry list full)");
		write_free(w);
	}
}

/* Sends a write; it comes back to the retry list if Redis does not take it. */
static void send_write(struct gw_cache *c, const char *const *argv, int argc)
{
	struct write *w = calloc(1, sizeof(*w));
	if (!w)
		return;
	w->argc = argc;
	for (int i = 0; i < argc; i++) {
		w->argvlen[i] = strlen(argv[i]);
		w->argv[i] = strdup(argv[i]);
		if (!w->argv[i]) {
			write_free(w);
			return;
		}
	}
	gw_cache_exec(c, (const char *const *)w->argv, w->argvlen, argc, on_write, w);
}

/* Takes the whole retry list. */
static struct write *take_retries(unsigned *n)
{
	pthread_mutex_lock(&retry_mu);
	struct write *w = retry_head;
	*n = retry_count;
	retry_head = NULL;
	retry_count = 0;
	pthread_mutex_unlock(&retry_mu);
	return w;
}

void gw_async_cleanup(void)
{
	unsigned n;
	struct write *w = take_retries(&n);
	if (n)
		gw_log_warnx("async: %u record write(s) never reached Redis", n);
	while (w) {
		struct write *nx = w->next;
		write_free(w);
		w = nx;
	}
}

unsigned gw_async_retry(struct gw_cache *c)
{
	unsigned n;
	struct write *w = take_retries(&n);
	while (w) {
		struct write *nx = w->next;
		gw_cache_exec(c, (const char *const *)w->argv, w->argvlen, w->argc, on_write, w);
		w = nx;
	}
	return n;
}

void gw_async_new_id(char out[GW_ASYNC_ID_MAX])
{
	unsigned char r[16];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
		/* getrandom on Linux does not fail for 16 bytes once booted;
		 * still, never hand out a predictable id silently. */
		int64_t t = gw_now_us();
		for (size_t i = 0; i < sizeof(r); i++)
			r[i] ^= (unsigned char)(t >> (8 * (i % 8)));
	}
	int n = snprintf(out, GW_ASYNC_ID_MAX, "areq_");
	for (size_t i = 0; i < sizeof(r); i++)
		n += snprintf(out + n, (size_t)(GW_ASYNC_ID_MAX - n), "%02x", r[i]);
}

bool gw_async_id_valid(const char *id)
{
	if (strncmp(id, "areq_", 5) != 0 || strlen(id) != 37)
		return false;
	for (const char *p = id + 5; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

void gw_async_key(const char *id, char *out, size_t n)
{
	snprintf(out, n, "llmgw:v1:async:%s", id);
}

static void pending_key(const char *instance, char *out, size_t n)
{
	snprintf(out, n, "llmgw:v1:async:pending:%s", instance);
}

/* only_new: "queued" records never replace what is there (a "done"). */
static void set_record(struct gw_cache *c, const char *id, json_t *rec, unsigned retention_s,
		       bool only_new)
{
	char key[KEY_MAX], ttl[24];
	char *text = rec ? json_dumps(rec, JSON_COMPACT) : NULL;
	json_decref(rec);
	if (!text)
		return;
	gw_async_key(id, key, sizeof(key));
	snprintf(ttl, sizeof(ttl), "%u", retention_s);
	const char *argv[] = { "SET", key, text, "EX", ttl, "NX" };
	send_write(c, argv, only_new ? 6 : 5);
	free(text);
}

static void pending_op(struct gw_cache *c, const char *op, const char *instance, const char *id)
{
	char key[KEY_MAX];
	pending_key(instance, key, sizeof(key));
	const char *argv[] = { op, key, id };
	send_write(c, argv, 3);
}

void gw_async_accept(struct gw_cache *c, const char *instance, const struct gw_job *job,
		     const char *id, unsigned retention_s)
{
	json_t *req = gw_chat_root(&job->chat);
	json_t *rec = NULL;
	/* No tree (no memory): no record, as when json_pack fails. */
	if (req)
		rec = json_pack("{s:i, s:s, s:s, s:s, s:O}", "v", 1, "status", "queued", "service",
				job->service, "priority", gw_priority_name(job->prio), "request",
				req);
	set_record(c, id, rec, retention_s, true);
	pending_op(c, "SADD", instance, id);
}

void gw_async_complete(struct gw_cache *c, const char *instance, const struct gw_job *job,
		       const char *id, unsigned retention_s)
{
	json_t *rec = json_pack("{s:i, s:s, s:i, s:s%}", "v", 1, "status", "done", "http_status",
				job->status, "body", job->body ? job->body : "",
				job->body ? job->body_len : (size_t)0);
	set_record(c, id, rec, retention_s, false);
	pending_op(c, "SREM", instance, id);
}

int gw_async_parse(const char *rec, size_t len, struct gw_async_record *out)
{
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(rec, len, 0, NULL);
	const char *status = json_string_value(json_object_get(root, "status"));
	int rc = -EINVAL;
	if (!status)
		goto out;
	if (strcmp(status, "done") == 0) {
		json_t *b = json_object_get(root, "body");
		json_t *st = json_object_get(root, "http_status");
		if (!json_is_string(b) || !json_is_integer(st))
			goto out;
		out->done = true;
		out->http_status = (int)json_integer_value(st);
		out->body_len = json_string_length(b);
		out->body = malloc(out->body_len + 1);
		if (!out->body)
			goto out;
		memcpy(out->body, json_string_value(b), out->body_len + 1);
		rc = 0;
	} else if (strcmp(status, "queued") == 0) {
		const char *svc = json_string_value(json_object_get(root, "service"));
		const char *prio = json_string_value(json_object_get(root, "priority"));
		json_t *req = json_object_get(root, "request");
		if (!svc || strlen(svc) > GW_SERVICE_MAX || !prio || !json_is_object(req))
			goto out;
		snprintf(out->service, sizeof(out->service), "%s", svc);
		out->prio = GW_PRIO_MEDIUM;
		for (int i = 0; i < GW_PRIO_COUNT; i++)
			if (strcmp(prio, gw_priority_name((enum gw_priority)i)) == 0)
				out->prio = (enum gw_priority)i;
		out->request = json_dumps(req, JSON_COMPACT);
		if (!out->request)
			goto out;
		out->request_len = strlen(out->request);
		rc = 0;
	}
out:
	json_decref(root);
	if (rc < 0)
		gw_async_record_free(out);
	return rc;
}

void gw_async_record_free(struct gw_async_record *r)
{
	free(r->body);
	free(r->request);
	r->body = r->request = NULL;
}

char *gw_async_pending_body(const char *id, size_t *len)
{
	json_t *o = json_pack("{s:s, s:s, s:s}", "id", id, "object", "async_request", "status",
			      "queued");
	char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (s && len)
		*len = strlen(s);
	return s;
}

/* One blocking Redis command for startup; the cache thread answers. */
struct sync_call {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	enum gw_cache_result r;
	char *value;
	size_t len;
};

static void on_sync(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct sync_call *sc = arg;
	pthread_mutex_lock(&sc->mu);
	sc->r = r;
	sc->value = value;
	sc->len = len;
	sc->done = true;
	pthread_cond_signal(&sc->cv);
	pthread_mutex_unlock(&sc->mu);
}

static enum gw_cache_result call_sync(struct gw_cache *c, const char *const *argv,
				      const size_t *argvlen, int argc, char **value, size_t *len)
{
	struct sync_call sc = { .done = false };
	pthread_mutex_init(&sc.mu, NULL);
	pthread_cond_init(&sc.cv, NULL);
	gw_cache_exec(c, argv, argvlen, argc, on_sync, &sc);
	pthread_mutex_lock(&sc.mu);
	while (!sc.done)
		pthread_cond_wait(&sc.cv, &sc.mu);
	pthread_mutex_unlock(&sc.mu);
	pthread_cond_destroy(&sc.cv);
	pthread_mutex_destroy(&sc.mu);
	*value = sc.value;
	*len = sc.len;
	return sc.r;
}

unsigned gw_async_recover(struct gw_cache *c, const char *instance,
			  void (*fn)(void *arg, const char *id, const char *rec, size_t len),
			  void *arg)
{
	char owed[KEY_MAX], pkey[KEY_MAX + 16];
	unsigned n = 0;
	/* Move the set aside first: resumed jobs are added to the live set
	 * again, and must not be popped a second time here. It is merged into
	 * what an earlier recovery left (one cut short by a crash or by Redis
	 * going away), never put in its place, in one atomic script. */
	pending_key(instance, owed, sizeof(owed));
	snprintf(pkey, sizeof(pkey), "%s:recovering", owed);
	static const char merge[] = "redis.call('SUNIONSTORE', KEYS[2], KEYS[2], KEYS[1]) "
				    "return redis.call('DEL', KEYS[1])";
	const char *mv[] = { "EVAL", merge, "2", owed, pkey };
	const size_t mvlen[] = { 4, sizeof(merge) - 1, 1, strlen(owed), strlen(pkey) };
	char *v = NULL;
	size_t vlen;
	call_sync(c, mv, mvlen, 5, &v, &vlen);
	free(v);
	for (unsigned i = 0; i < RECOVER_MAX; i++) {
		char *id = NULL, *rec = NULL;
		size_t idlen = 0, reclen = 0;
		const char *pop[] = { "SPOP", pkey };
		const size_t poplen[] = { 4, strlen(pkey) };
		if (call_sync(c, pop, poplen, 2, &id, &idlen) != GW_CACHE_HIT) {
			free(id);
			break;
		}
		char key[KEY_MAX];
		gw_async_key(id, key, sizeof(key));
		const char *get[] = { "GET", key };
		const size_t getlen[] = { 3, strlen(key) };
		if (gw_async_id_valid(id) &&
		    call_sync(c, get, getlen, 2, &rec, &reclen) == GW_CACHE_HIT) {
			fn(arg, id, rec, reclen);
			n++;
		}
		free(rec);
		free(id);
	}
	return n;
}
