/*
 * cache.c - cache keys and the Redis client of the response cache.
 *
 * Keys are pure functions of the request (SHA-256 over a canonical JSON
 * form). The client is one background thread that owns one synchronous
 * hiredis connection and drains a bounded queue filled by callers under a
 * short mutex; no caller ever waits for Redis. Queued commands go out
 * pipelined in batches, each socket read and write bounded by the command
 * timeout.
 *
 * The breaker: any connect failure, I/O error or timeout drops the
 * connection and opens it (state DOWN, one warning). While it is open,
 * gw_cache_get answers BYPASS synchronously and writes are dropped, so
 * nothing queues behind a dead Redis. The thread probes (connect + PING)
 * after 500 ms, then 1 s, then every 2 s, and closes the breaker on the
 * first success (one info line). Error replies (OOM, WRONGTYPE, LOADING)
 * leave the connection up: they are counted and logged at most once a
 * minute.
 *
 * Only this file includes hiredis.
 */
#include "cache.h"

#include <errno.h>
#include <hiredis.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "beat.h"
#include "log.h"

#define KEY_PREFIX "llmgw:v1:"
#define HOST_MAX 255
#define TIMEOUT_MAX_MS 60000u
#define EXEC_ARGC_MAX 64
#define EXEC_BYTES_MAX (GW_CACHE_VALUE_MAX + ((size_t)64 << 10))
/* A pipelined batch: at most this many commands, and stops growing past
 * this many argument bytes, so one slow batch holds up little. */
#define BATCH_OPS_MAX 256u
#define BATCH_BYTES_MAX ((size_t)1 << 20)
#define PROBE_FIRST_MS 500u
#define PROBE_MAX_MS 2000u
#define REPLY_WARN_EVERY_US (INT64_C(60) * 1000000)
/* An idle connection is PINGed this often, so the state /ready reports
 * follows a Redis that died while no request needed it. */
#define IDLE_PING_US (INT64_C(1000) * 1000)

/* ---------------------------------------------------------------------
 * Cache keys
 * ------------------------------------------------------------------- */

/*
 * Request members that decide the answer. The first group is the OpenAI
 * sampling/tool/format set; the second holds legacy and provider-specific
 * parameters the gateway forwards as sent and that change the answer too.
 * Anything else (stream, stream_options, user, metadata, store, ...) does
 * not take part: leaving out a member that matters would serve a wrong
 * answer, so additions belong here, with a bump of KEY_PREFIX when the
 * canonical form of existing keys changes.
 */
static const char *const key_members[] = {
	"model", "messages",
	"temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "tools",
	"tool_choice", "response_format", "seed", "n", "presence_penalty", "frequency_penalty",
	"logit_bias", "logprobs", "top_logprobs", "parallel_tool_calls",
	"functions", "function_call", "reasoning_effort", "reasoning", "modalities", "audio",
	"verbosity", "web_search_options", "top_k", "min_p", "top_a", "repetition_penalty",
};

/* Real-valued parameters: an integral value counts as the same real. */
static const char *const real_members[] = {
	"temperature", "top_p", "presence_penalty", "frequency_penalty",
	"min_p", "top_a", "repetition_penalty",
};

static bool is_real_member(const char *name)
{
	for (size_t i = 0; i < sizeof(real_members) / sizeof(real_members[0]); i++)
		if (strcmp(name, real_members[i]) == 0)
			return true;
	return false;
}

static bool scope_ok(const char *scope)
{
	size_t len = strnlen(scope, GW_CACHE_SCOPE_MAX + 1);
	if (len == 0 || len > GW_CACHE_SCOPE_MAX)
		return false;
	if (!(len == 1 && scope[0] == 'g') &&
	    !(len > 2 && (scope[0] == 's' || scope[0] == 'k') && scope[1] == ':'))
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)scope[i] < 0x21 || (unsigned char)scope[i] > 0x7e)
			return false;
	return true;
}

static int digest_update(const char *buffer, size_t size, void *data)
{
	return EVP_DigestUpdate((EVP_MD_CTX *)data, buffer, size) == 1 ? 0 : -1;
}

/* The object of key_members present in root, normalized; NULL on ENOMEM. */
static json_t *canonical(const json_t *root)
{
	json_t *obj = json_object();
	if (!obj)
		return NULL;
	for (size_t i = 0; i < sizeof(key_members) / sizeof(key_members[0]); i++) {
		const char *name = key_members[i];
		json_t *v = json_object_get(root, name);
		json_t *nv;
		if (!v || json_is_null(v))
			continue;
		if (json_is_integer(v) && is_real_member(name))
			nv = json_real((double)json_integer_value(v));
		else if (json_is_string(v) && strcmp(name, "stop") == 0)
			nv = json_pack("[O]", v);
		else
			nv = json_incref(v);
		if (!nv || json_object_set_new(obj, name, nv) < 0) {
			json_decref(obj);
			return NULL;
		}
	}
	return obj;
}

int gw_cache_key(const struct gw_chat *chat, const char *explicit_key, const char *scope,
		 char *out, size_t outlen)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	EVP_MD_CTX *ctx = NULL;
	json_t *obj = NULL;
	const char *model;
	char digest[65];
	int rc = -EINVAL;

	if (!chat || !scope || !out || !scope_ok(scope))
		goto out;
	model = chat->model; /* the tree's "model", without building the tree */
	if (!model || !model[0])
		goto out;
	if (explicit_key) {
		size_t klen = strnlen(explicit_key, GW_CACHE_EXPLICIT_MAX + 1);
		if (klen == 0 || klen > GW_CACHE_EXPLICIT_MAX)
			goto out;
	}
	if (outlen < sizeof(KEY_PREFIX) - 1 + strlen(scope) + 1 + 64 + 1) {
		rc = -ENOSPC;
		goto out;
	}

	rc = -ENOMEM;
	ctx = EVP_MD_CTX_new();
	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	if (explicit_key) {
		/* Both separators are NUL bytes: no model/key split is ambiguous,
		 * and derived input always starts with '{'. */
		if (EVP_DigestUpdate(ctx, "explicit", sizeof("explicit")) != 1 ||
		    EVP_DigestUpdate(ctx, model, strlen(model) + 1) != 1 ||
		    EVP_DigestUpdate(ctx, explicit_key, strlen(explicit_key)) != 1)
			goto out;
	} else {
		const json_t *root = gw_chat_root(chat);
		obj = root ? canonical(root) : NULL;
		if (!obj || json_dump_callback(obj, digest_update, ctx,
					       JSON_SORT_KEYS | JSON_COMPACT) != 0)
			goto out;
	}
	if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	for (unsigned i = 0; i < 32; i++) {
		digest[2 * i] = gw_hex_char(md[i] >> 4);
		digest[2 * i + 1] = gw_hex_char(md[i]);
	}
	digest[64] = '\0';
	snprintf(out, outlen, "%s%s:%s", KEY_PREFIX, scope, digest);
	rc = 0;
out:
	json_decref(obj);
	EVP_MD_CTX_free(ctx);
	return rc;
}

/* ---------------------------------------------------------------------
 * The client
 * ------------------------------------------------------------------- */

enum op_kind { OP_GET, OP_SET, OP_EXEC };

/* One queued command; argv, argvlen and the bytes live in the same block. */
struct op {
	struct op *next;
	enum op_kind kind;
	gw_cache_get_cb cb;      /* NULL: nobody waits for the reply */
	void *arg;
	size_t bytes;            /* argument bytes, counted against the queue */
	int argc;
	const char **argv;
	size_t *argvlen;
};

struct gw_cache {
	/* Set by gw_cache_new, then read-only. */
	bool disabled;
	char host[HOST_MAX + 1];
	unsigned port;
	unsigned db;
	unsigned connect_timeout_ms;
	unsigned command_timeout_ms;

	/* The queue and the thread's lifecycle, under mu. */
	pthread_mutex_t mu;
	pthread_cond_t cv;       /* CLOCK_MONOTONIC */
	struct op *head;
	struct op *tail;
	unsigned depth;
	size_t bytes;
	bool started;
	bool stop;
	pthread_t thread;

	/* Read by callers without the lock. */
	_Atomic int state;       /* GW_CACHE_UP or GW_CACHE_DOWN */
	_Atomic uint64_t hits, misses, bypasses, sets, set_drops, errors, breaker_opens;

	/* Cache thread only. */
	redisContext *rc;
	bool ever_up;
	bool warned;             /* the current outage has been logged */
	int64_t next_probe_us;
	unsigned backoff_ms;     /* delay before the probe after next_probe_us */
	int64_t last_io_us;      /* last command exchanged on rc */
	int64_t reply_warn_us;   /* last error-reply warning */
	uint64_t reply_quiet;    /* error replies not logged since then */
};

static void count(_Atomic uint64_t *ctr)
{
	atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed);
}

static size_t align_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

/* Copies a command into one allocation; NULL on ENOMEM. */
static struct op *op_new(enum op_kind kind, int argc, const char *const *argv,
			 const size_t *argvlen, gw_cache_get_cb cb, void *arg)
{
	size_t data = 0;
	for (int i = 0; i < argc; i++)
		data += argvlen[i] + 1;
	size_t off_argv = align_up(sizeof(struct op), _Alignof(const char *));
	size_t off_len = align_up(off_argv + (size_t)argc * sizeof(const char *), _Alignof(size_t));
	size_t off_data = off_len + (size_t)argc * sizeof(size_t);
	char *block = malloc(off_data + data);
	if (!block)
		return NULL;
	struct op *op = (struct op *)(void *)block;
	op->next = NULL;
	op->kind = kind;
	op->cb = cb;
	op->arg = arg;
	op->bytes = data;
	op->argc = argc;
	op->argv = (const char **)(void *)(block + off_argv);
	op->argvlen = (size_t *)(void *)(block + off_len);
	char *p = block + off_data;
	for (int i = 0; i < argc; i++) {
		memcpy(p, argv[i], argvlen[i]);
		p[argvlen[i]] = '\0';
		op->argv[i] = p;
		op->argvlen[i] = argvlen[i];
		p += argvlen[i] + 1;
	}
	return op;
}

/*
 * Ends a command: counts it, hands value (or frees it) and frees op.
 * For a SET, HIT means stored.
 */
static void op_finish(struct gw_cache *c, struct op *op, enum gw_cache_result r, char *value,
		      size_t len)
{
	switch (op->kind) {
	case OP_GET:
		if (r == GW_CACHE_HIT)
			count(&c->hits);
		else if (r == GW_CACHE_MISS)
			count(&c->misses);
		else
			count(&c->bypasses);
		break;
	case OP_SET:
		count(r == GW_CACHE_HIT ? &c->sets : &c->set_drops);
		break;
	case OP_EXEC:
		if (!op->cb && r == GW_CACHE_BYPASS)
			count(&c->set_drops);
		break;
	}
	if (op->cb)
		op->cb(op->arg, r, value, len);
	else
		free(value);
	free(op);
}

/* A command refused before it was queued: answered at once, no I/O. */
static void refuse(struct gw_cache *c, enum op_kind kind, gw_cache_get_cb cb, void *arg)
{
	if (c) {
		if (kind == OP_GET)
			count(&c->bypasses);
		else if (kind == OP_SET || !cb)
			count(&c->set_drops);
	}
	if (cb)
		cb(arg, GW_CACHE_BYPASS, NULL, 0);
}

static void submit(struct gw_cache *c, enum op_kind kind, int argc, const char *const *argv,
		   const size_t *argvlen, gw_cache_get_cb cb, void *arg)
{
	struct op *op;

	if (atomic_load_explicit(&c->state, memory_order_acquire) != GW_CACHE_UP)
		goto refused;
	op = op_new(kind, argc, argv, argvlen, cb, arg);
	if (!op)
		goto refused;
	pthread_mutex_lock(&c->mu);
	if (c->stop || c->depth >= GW_CACHE_QUEUE_MAX ||
	    op->bytes > GW_CACHE_QUEUE_BYTES_MAX - c->bytes) {
		pthread_mutex_unlock(&c->mu);
		free(op);
		goto refused;
	}
	if (c->tail)
		c->tail->next = op;
	else
		c->head = op;
	c->tail = op;
	c->depth++;
	c->bytes += op->bytes;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return;
refused:
	refuse(c, kind, cb, arg);
}

void gw_cache_get(struct gw_cache *c, const char *key, gw_cache_get_cb cb, void *arg)
{
	size_t klen = key ? strnlen(key, GW_CACHE_KEY_MAX) : 0;

	if (!c || c->disabled || klen == 0 || klen >= GW_CACHE_KEY_MAX) {
		refuse(c, OP_GET, cb, arg);
		return;
	}
	const char *argv[2] = { "GET", key };
	size_t argvlen[2] = { 3, klen };
	submit(c, OP_GET, 2, argv, argvlen, cb, arg);
}

void gw_cache_set(struct gw_cache *c, const char *key, const char *value, size_t len,
		  unsigned ttl_s)
{
	size_t klen = key ? strnlen(key, GW_CACHE_KEY_MAX) : 0;
	char ttl[16];

	if (!c || c->disabled || klen == 0 || klen >= GW_CACHE_KEY_MAX || (!value && len) ||
	    len > GW_CACHE_VALUE_MAX || ttl_s == 0) {
		refuse(c, OP_SET, NULL, NULL);
		return;
	}
	if (ttl_s > GW_CACHE_TTL_MAX_S)
		ttl_s = GW_CACHE_TTL_MAX_S;
	int n = snprintf(ttl, sizeof(ttl), "%u", ttl_s);
	const char *argv[5] = { "SET", key, value ? value : "", "EX", ttl };
	size_t argvlen[5] = { 3, klen, len, 2, (size_t)n };
	submit(c, OP_SET, 5, argv, argvlen, NULL, NULL);
}

void gw_cache_exec(struct gw_cache *c, const char *const *argv, const size_t *argvlen, int argc,
		   gw_cache_get_cb cb, void *arg)
{
	size_t total = 0;

	if (!c || c->disabled || !argv || !argvlen || argc < 1 || argc > EXEC_ARGC_MAX)
		goto refused;
	for (int i = 0; i < argc; i++) {
		if (!argv[i] || argvlen[i] > EXEC_BYTES_MAX - total)
			goto refused;
		total += argvlen[i];
	}
	submit(c, OP_EXEC, argc, argv, argvlen, cb, arg);
	return;
refused:
	refuse(c, OP_EXEC, cb, arg);
}

enum gw_cache_state gw_cache_state(struct gw_cache *c)
{
	if (!c || c->disabled)
		return GW_CACHE_DISABLED;
	return (enum gw_cache_state)atomic_load_explicit(&c->state, memory_order_acquire);
}

const char *gw_cache_state_name(enum gw_cache_state s)
{
	switch (s) {
	case GW_CACHE_UP:
		return "up";
	case GW_CACHE_DOWN:
		return "down";
	case GW_CACHE_DISABLED:
		break;
	}
	return "disabled";
}

const char *gw_cache_result_name(enum gw_cache_result r)
{
	switch (r) {
	case GW_CACHE_HIT:
		return "HIT";
	case GW_CACHE_MISS:
		return "MISS";
	case GW_CACHE_BYPASS:
		break;
	}
	return "BYPASS";
}

void gw_cache_stats(struct gw_cache *c, struct gw_cache_counters *out)
{
	memset(out, 0, sizeof(*out));
	if (!c)
		return;
	out->hits = atomic_load_explicit(&c->hits, memory_order_relaxed);
	out->misses = atomic_load_explicit(&c->misses, memory_order_relaxed);
	out->bypasses = atomic_load_explicit(&c->bypasses, memory_order_relaxed);
	out->sets = atomic_load_explicit(&c->sets, memory_order_relaxed);
	out->set_drops = atomic_load_explicit(&c->set_drops, memory_order_relaxed);
	out->errors = atomic_load_explicit(&c->errors, memory_order_relaxed);
	out->breaker_opens = atomic_load_explicit(&c->breaker_opens, memory_order_relaxed);
	if (!c->disabled) {
		pthread_mutex_lock(&c->mu);
		out->queue_depth = c->depth;
		pthread_mutex_unlock(&c->mu);
	}
}

/* ---- URL --------------------------------------------------------- */

/* Up to 5 decimal digits, value <= max; advances *p. */
static int parse_num(const char **p, unsigned max, unsigned *out)
{
	const char *s = *p;
	unsigned v = 0;
	int n = 0;
	while (*s >= '0' && *s <= '9') {
		if (++n > 5)
			return -EINVAL;
		v = v * 10 + (unsigned)(*s - '0');
		s++;
	}
	if (n == 0 || v > max)
		return -EINVAL;
	*out = v;
	*p = s;
	return 0;
}

static bool host_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
	       ch == '.' || ch == '-' || ch == '_';
}

static bool v6_char(char ch)
{
	return (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || (ch >= '0' && ch <= '9') ||
	       ch == ':' || ch == '.';
}

/* redis://host[:port][/db], host may be [v6]. Fills c->host, port, db. */
static int parse_url(struct gw_cache *c, const char *url)
{
	static const char scheme[] = "redis://";
	const char *p, *h, *end;
	size_t len;

	if (strncmp(url, scheme, sizeof(scheme) - 1) != 0)
		return -EINVAL;
	p = url + sizeof(scheme) - 1;
	if (*p == '[') {
		h = ++p;
		while (v6_char(*p))
			p++;
		if (*p != ']')
			return -EINVAL;
		end = p++;
	} else {
		h = p;
		while (host_char(*p))
			p++;
		end = p;
	}
	len = (size_t)(end - h);
	if (len == 0 || len > HOST_MAX)
		return -EINVAL;
	memcpy(c->host, h, len);
	c->host[len] = '\0';
	c->port = 6379;
	c->db = 0;
	if (*p == ':') {
		p++;
		if (parse_num(&p, 65535, &c->port) < 0 || c->port == 0)
			return -EINVAL;
	}
	if (*p == '/') {
		p++;
		if (parse_num(&p, 65535, &c->db) < 0)
			return -EINVAL;
	}
	return *p == '\0' ? 0 : -EINVAL;
}

struct gw_cache *gw_cache_new(const char *redis_url, unsigned connect_timeout_ms,
			      unsigned command_timeout_ms)
{
	pthread_condattr_t ca;
	struct gw_cache *c = calloc(1, sizeof(*c));

	if (!c) {
		gw_log_errorx("cache: out of memory");
		return NULL;
	}
	if (!redis_url || !redis_url[0]) {
		c->disabled = true;
		return c;
	}
	if (strlen(redis_url) > 512 || parse_url(c, redis_url) < 0) {
		gw_log_errorx("cache: redis URL must be redis://host[:port][/db]; got '%.64s'",
			      redis_url);
		goto fail;
	}
	if (connect_timeout_ms > TIMEOUT_MAX_MS || command_timeout_ms > TIMEOUT_MAX_MS) {
		gw_log_errorx("cache: redis timeouts must be 1..%u ms", TIMEOUT_MAX_MS);
		goto fail;
	}
	c->connect_timeout_ms =
		connect_timeout_ms ? connect_timeout_ms : GW_CACHE_CONNECT_TIMEOUT_MS;
	c->command_timeout_ms =
		command_timeout_ms ? command_timeout_ms : GW_CACHE_COMMAND_TIMEOUT_MS;
	atomic_init(&c->state, GW_CACHE_DOWN);
	if (pthread_mutex_init(&c->mu, NULL) != 0)
		goto fail;
	if (pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&c->mu);
		goto fail;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&c->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		pthread_mutex_destroy(&c->mu);
		goto fail;
	}
	return c;
fail:
	free(c);
	return NULL;
}

/* ---- the cache thread ------------------------------------------------ */

static struct timeval ms_tv(unsigned ms)
{
	struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
	return tv;
}

static void disconnect(struct gw_cache *c)
{
	if (c->rc)
		redisFree(c->rc);
	c->rc = NULL;
}

/* One blocking command on a fresh context; 0 when the reply is the status want. */
static int handshake_cmd(redisContext *rc, int argc, const char **argv, const size_t *argvlen,
			 const char *want, char *why, size_t whylen)
{
	redisReply *r = redisCommandArgv(rc, argc, argv, argvlen);
	int ret = -EIO;
	if (!r) {
		snprintf(why, whylen, "%s", rc->errstr[0] ? rc->errstr : "no reply");
		return -EIO;
	}
	if (r->type == REDIS_REPLY_STATUS && strcmp(r->str, want) == 0)
		ret = 0;
	else if (r->type == REDIS_REPLY_ERROR)
		snprintf(why, whylen, "%s: %.100s", argv[0], r->str);
	else
		snprintf(why, whylen, "%s: unexpected reply", argv[0]);
	freeReplyObject(r);
	return ret;
}

/* Connects, sets the command timeout, selects the db and PINGs. */
static int connect_redis(struct gw_cache *c, unsigned connect_ms, char *why, size_t whylen)
{
	char dbtext[8];
	redisContext *rc = redisConnectWithTimeout(c->host, (int)c->port, ms_tv(connect_ms));
	int ret = -EIO;

	disconnect(c);
	if (!rc) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	if (rc->err) {
		snprintf(why, whylen, "%s", rc->errstr);
		goto out;
	}
	if (redisSetTimeout(rc, ms_tv(c->command_timeout_ms)) != REDIS_OK) {
		snprintf(why, whylen, "cannot set the command timeout");
		goto out;
	}
	if (c->db != 0) {
		int n = snprintf(dbtext, sizeof(dbtext), "%u", c->db);
		const char *argv[2] = { "SELECT", dbtext };
		size_t argvlen[2] = { 6, (size_t)n };
		if (handshake_cmd(rc, 2, argv, argvlen, "OK", why, whylen) < 0)
			goto out;
	}
	const char *ping[1] = { "PING" };
	size_t pinglen[1] = { 4 };
	if (handshake_cmd(rc, 1, ping, pinglen, "PONG", why, whylen) < 0)
		goto out;
	c->rc = rc;
	rc = NULL;
	ret = 0;
out:
	if (rc)
		redisFree(rc);
	return ret;
}

/* The connection failed: drop it and open the breaker (one warning). */
static void breaker_open(struct gw_cache *c, const char *why)
{
	disconnect(c);
	atomic_store_explicit(&c->state, GW_CACHE_DOWN, memory_order_release);
	count(&c->breaker_opens);
	if (!c->warned) {
		gw_log_warnx("cache: redis %s:%u %s (%s); answering BYPASS until it is back",
			     c->host, c->port, c->ever_up ? "failed" : "unreachable", why);
		c->warned = true;
	}
	c->next_probe_us = gw_now_us() + (int64_t)PROBE_FIRST_MS * 1000;
	c->backoff_ms = PROBE_FIRST_MS * 2;
}

/* While DOWN: one connect + PING; closes the breaker on success. */
static void probe(struct gw_cache *c)
{
	char why[160];

	if (connect_redis(c, c->connect_timeout_ms, why, sizeof(why)) == 0) {
		if (c->ever_up || c->warned)
			gw_log_info("cache: redis back (%s:%u db %u); caching resumes", c->host,
				    c->port, c->db);
		else
			gw_log_info("cache: connected to redis %s:%u db %u", c->host, c->port,
				    c->db);
		c->ever_up = true;
		c->warned = false;
		c->last_io_us = gw_now_us();
		atomic_store_explicit(&c->state, GW_CACHE_UP, memory_order_release);
		return;
	}
	if (!c->warned) {
		breaker_open(c, why); /* unreachable at start: counts, logs once */
		return;
	}
	gw_log_debug("cache: redis probe failed (%s); next in %u ms", why, c->backoff_ms);
	c->next_probe_us = gw_now_us() + (int64_t)c->backoff_ms * 1000;
	c->backoff_ms = c->backoff_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : c->backoff_ms * 2;
}

/*
 * An idle connection has nothing to read; if poll says otherwise, the
 * server closed it (restart, idle timeout) or sent garbage.
 */
static bool conn_stale(const struct gw_cache *c)
{
	struct pollfd p = { .fd = c->rc->fd, .events = POLLIN | POLLRDHUP };
	return poll(&p, 1, 0) > 0;
}

static void reply_error(struct gw_cache *c, const redisReply *r)
{
	int64_t now = gw_now_us();

	count(&c->errors);
	if (c->reply_warn_us != 0 && now - c->reply_warn_us < REPLY_WARN_EVERY_US) {
		c->reply_quiet++;
		return;
	}
	gw_log_warnx("cache: redis answered an error: %.160s (%llu more in the last minute)",
		     r->str ? r->str : "?", (unsigned long long)c->reply_quiet);
	c->reply_warn_us = now;
	c->reply_quiet = 0;
}

static char *copy_text(const char *s, size_t len)
{
	char *v = malloc(len + 1);
	if (v) {
		memcpy(v, s, len);
		v[len] = '\0';
	}
	return v;
}

/* Hands one reply to its command. */
static void on_reply(struct gw_cache *c, struct op *op, const redisReply *r)
{
	char num[24];
	char *v;
	int n;

	if (r->type == REDIS_REPLY_ERROR) {
		reply_error(c, r);
		op_finish(c, op, GW_CACHE_BYPASS, NULL, 0);
		return;
	}
	switch (op->kind) {
	case OP_SET:
		op_finish(c, op, r->type == REDIS_REPLY_STATUS ? GW_CACHE_HIT : GW_CACHE_BYPASS,
			  NULL, 0);
		return;
	case OP_GET:
	case OP_EXEC:
		break;
	}
	switch (r->type) {
	case REDIS_REPLY_NIL:
		op_finish(c, op, GW_CACHE_MISS, NULL, 0);
		return;
	case REDIS_REPLY_STRING:
	case REDIS_REPLY_STATUS:
		if ((size_t)r->len > GW_CACHE_VALUE_MAX || (op->kind == OP_GET &&
							    r->type != REDIS_REPLY_STRING))
			break;
		if (!op->cb) {
			op_finish(c, op, GW_CACHE_HIT, NULL, 0);
			return;
		}
		v = copy_text(r->str, (size_t)r->len);
		if (!v)
			break;
		op_finish(c, op, GW_CACHE_HIT, v, (size_t)r->len);
		return;
	case REDIS_REPLY_INTEGER:
		if (op->kind == OP_GET)
			break;
		n = snprintf(num, sizeof(num), "%lld", r->integer);
		v = op->cb ? copy_text(num, (size_t)n) : NULL;
		if (op->cb && !v)
			break;
		op_finish(c, op, GW_CACHE_HIT, v, v ? (size_t)n : 0);
		return;
	case REDIS_REPLY_ARRAY:
		if (op->kind == OP_EXEC && r->elements == 0) {
			op_finish(c, op, GW_CACHE_MISS, NULL, 0);
			return;
		}
		break;
	default:
		break;
	}
	op_finish(c, op, GW_CACHE_BYPASS, NULL, 0);
}

static void fail_list(struct gw_cache *c, struct op *list)
{
	while (list) {
		struct op *next = list->next;
		op_finish(c, list, GW_CACHE_BYPASS, NULL, 0);
		list = next;
	}
}

/*
 * Before using an idle connection: if the server closed it (restart, idle
 * timeout), reconnect at once, within the command timeout, so that costs
 * no lookup. Returns 0, or -EIO after opening the breaker.
 */
static int ensure_fresh(struct gw_cache *c)
{
	char why[160];

	if (!conn_stale(c))
		return 0;
	unsigned ms = c->connect_timeout_ms < c->command_timeout_ms ? c->connect_timeout_ms
								    : c->command_timeout_ms;
	gw_log_debug("cache: redis closed the idle connection; reconnecting");
	if (connect_redis(c, ms, why, sizeof(why)) < 0) {
		count(&c->errors);
		breaker_open(c, why);
		return -EIO;
	}
	c->last_io_us = gw_now_us();
	return 0;
}

/* Idle for IDLE_PING_US: one PING, bounded by the command timeout. */
static void keepalive(struct gw_cache *c)
{
	char why[160];
	const char *ping[1] = { "PING" };
	size_t pinglen[1] = { 4 };

	if (ensure_fresh(c) < 0)
		return;
	c->last_io_us = gw_now_us();
	if (handshake_cmd(c->rc, 1, ping, pinglen, "PONG", why, sizeof(why)) < 0) {
		count(&c->errors);
		breaker_open(c, why);
	}
}

/* Sends a batch pipelined and reads the replies in order. */
static void run_batch(struct gw_cache *c, struct op *batch)
{
	char why[160];
	struct op *op;

	if (ensure_fresh(c) < 0) {
		fail_list(c, batch);
		return;
	}
	c->last_io_us = gw_now_us();
	for (op = batch; op; op = op->next) {
		if (redisAppendCommandArgv(c->rc, op->argc, op->argv, op->argvlen) != REDIS_OK) {
			snprintf(why, sizeof(why), "%s",
				 c->rc->errstr[0] ? c->rc->errstr : "out of memory");
			count(&c->errors);
			breaker_open(c, why);
			fail_list(c, batch);
			return;
		}
	}
	while (batch) {
		void *reply = NULL;
		op = batch;
		batch = op->next;
		if (redisGetReply(c->rc, &reply) != REDIS_OK || !reply) {
			const char *e = c->rc->errstr[0] ? c->rc->errstr : "no reply";
			snprintf(why, sizeof(why), "%s", e);
			count(&c->errors);
			breaker_open(c, why);
			op->next = batch;
			fail_list(c, op);
			return;
		}
		on_reply(c, op, reply);
		freeReplyObject(reply);
	}
}

/* Unlinks up to a batch from the queue; mu held. */
static struct op *take_batch(struct gw_cache *c, bool all)
{
	struct op *first = c->head, *last = NULL, *op = c->head;
	unsigned n = 0;
	size_t bytes = 0;

	while (op && (all || (n < BATCH_OPS_MAX && (n == 0 || bytes < BATCH_BYTES_MAX)))) {
		bytes += op->bytes;
		c->bytes -= op->bytes;
		c->depth--;
		n++;
		last = op;
		op = op->next;
	}
	if (!last)
		return NULL;
	c->head = op;
	if (!op)
		c->tail = NULL;
	last->next = NULL;
	return first;
}

/* A CLOCK_MONOTONIC deadline (gw_now_us units) for pthread_cond_timedwait. */
static struct timespec mono_ts(int64_t us)
{
	struct timespec ts = { .tv_sec = (time_t)(us / 1000000),
			       .tv_nsec = (long)(us % 1000000) * 1000 };
	return ts;
}

static void *cache_main(void *arg)
{
	struct gw_cache *c = arg;
	sigset_t pipe;

	/* hiredis writes with write(2): a dead peer must give EPIPE, not
	 * kill the process, even where SIGPIPE is not ignored. */
	sigemptyset(&pipe);
	sigaddset(&pipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &pipe, NULL);
	/* Cache hits finished in one batch share one access-log write. */
	gw_log_access_batch(true);

	struct gw_beat *beat = gw_beat_register("redis client", 0);
	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct op *list;
		/* Its waits are at most IDLE_PING_US or a probe interval (2 s),
		 * its commands bounded by their timeouts. */
		gw_beat_touch(beat);
		if (atomic_load_explicit(&c->state, memory_order_relaxed) == GW_CACHE_UP) {
			if (!c->head) {
				int64_t due = c->last_io_us + IDLE_PING_US;
				if (gw_now_us() < due) {
					struct timespec ts = mono_ts(due);
					pthread_cond_timedwait(&c->cv, &c->mu, &ts);
					continue;
				}
				pthread_mutex_unlock(&c->mu);
				keepalive(c);
			} else {
				list = take_batch(c, false);
				pthread_mutex_unlock(&c->mu);
				run_batch(c, list);
			}
		} else if (c->head) {
			/* Queued just before the breaker opened: no I/O. */
			list = take_batch(c, true);
			pthread_mutex_unlock(&c->mu);
			fail_list(c, list);
		} else if (gw_now_us() >= c->next_probe_us) {
			pthread_mutex_unlock(&c->mu);
			probe(c);
		} else {
			struct timespec ts = mono_ts(c->next_probe_us);
			pthread_cond_timedwait(&c->cv, &c->mu, &ts);
			continue;
		}
		/* Consume a SIGPIPE left pending by a write to a dead peer. */
		struct timespec zero = { 0, 0 };
		while (sigtimedwait(&pipe, NULL, &zero) == SIGPIPE)
			;
		gw_log_access_flush();
		pthread_mutex_lock(&c->mu);
	}
	struct op *rest = take_batch(c, true);
	pthread_mutex_unlock(&c->mu);
	fail_list(c, rest);
	disconnect(c);
	gw_beat_unregister(beat);
	gw_log_access_batch(false);
	return NULL;
}

int gw_cache_start(struct gw_cache *c)
{
	int rc;

	if (!c || c->disabled)
		return 0;
	pthread_mutex_lock(&c->mu);
	if (c->started) {
		pthread_mutex_unlock(&c->mu);
		return -EALREADY;
	}
	c->next_probe_us = 0; /* connect at once */
	c->backoff_ms = PROBE_FIRST_MS;
	rc = pthread_create(&c->thread, NULL, cache_main, c);
	if (rc == 0)
		c->started = true;
	pthread_mutex_unlock(&c->mu);
	return -rc;
}

void gw_cache_free(struct gw_cache *c)
{
	if (!c)
		return;
	if (!c->disabled) {
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_signal(&c->cv);
		bool started = c->started;
		struct op *rest = started ? NULL : take_batch(c, true);
		pthread_mutex_unlock(&c->mu);
		if (started)
			pthread_join(c->thread, NULL);
		fail_list(c, rest);
		disconnect(c);
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
	}
	free(c);
}
