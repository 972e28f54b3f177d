/*
 * cache.h - the response cache: cache keys (pure functions) and a Redis
 * client whose I/O never runs on the caller's thread.
 *
 * A struct gw_cache owns one background thread with its own synchronous
 * hiredis connection (connect and command timeouts on every call) and a
 * bounded request queue. Callers (the HTTP front, the workers) only take a
 * short mutex to enqueue; they never wait for Redis. When Redis is down, a
 * circuit breaker answers every lookup BYPASS at once, without I/O, and the
 * thread probes Redis in the background until it answers again.
 *
 * Only cache.c includes hiredis. See docs/cache.md for the rules the
 * gateway applies around this module (TTLs, Cache-Control, what is stored).
 */
#ifndef GW_CACHE_H
#define GW_CACHE_H

#include "gw.h"
#include "request.h"

/* "llmgw:v1:" + scope + ":" + 64 hex digits + NUL fits in this. */
#define GW_CACHE_KEY_MAX 256
/* Longest scope string: "g", "s:<service>" or "k:<key id>". */
#define GW_CACHE_SCOPE_MAX 128
/* Longest explicit key (X-Cache-Key), in bytes. */
#define GW_CACHE_EXPLICIT_MAX 512
/* Largest value gw_cache_set stores and gw_cache_get hands back. */
#define GW_CACHE_VALUE_MAX ((size_t)8 << 20)
/* Longest TTL gw_cache_set asks for; longer ones are clamped (30 days). */
#define GW_CACHE_TTL_MAX_S 2592000u
/* Queue bounds: entries, and bytes of queued values and arguments. */
#define GW_CACHE_QUEUE_MAX 10000u
#define GW_CACHE_QUEUE_BYTES_MAX ((size_t)64 << 20)
/* Defaults used when gw_cache_new gets 0 for a timeout. */
#define GW_CACHE_CONNECT_TIMEOUT_MS 100u
#define GW_CACHE_COMMAND_TIMEOUT_MS 50u

/*
 * Builds the cache key of a validated chat request into out (outlen >=
 * GW_CACHE_KEY_MAX): "llmgw:v1:<scope>:<64 hex>".
 *
 * Derived key (explicit_key NULL): SHA-256 over the compact, key-sorted
 * JSON of an object holding only what determines the answer: model,
 * messages and the sampling/tool/format parameters (see docs/cache.md for
 * the list). stream, stream_options, user, metadata and anything not on
 * the list do not change the key; JSON null counts as absent; integral
 * temperature/top_p/penalties count as their real value; a string "stop"
 * counts as a one-element array. Call it after the model is final
 * (gw_chat_set_model), since the model is part of the key.
 *
 * Explicit key (X-Cache-Key, 1..GW_CACHE_EXPLICIT_MAX bytes): SHA-256 over
 * "explicit\0" + model + "\0" + explicit_key, so explicit keys never
 * collide with derived ones and stay per model.
 *
 * scope is "g" (global), "s:<service>" or "k:<key id>" with 1 or more
 * printable, non-space ASCII characters after the prefix, at most
 * GW_CACHE_SCOPE_MAX in all. Never put a secret in a scope: keys are
 * visible to anyone with Redis access.
 *
 * Returns 0, -EINVAL (no model, bad scope, empty or too long explicit
 * key), -ENOSPC (outlen too small) or -ENOMEM. Does no I/O and logs
 * nothing; safe from any thread.
 */
int gw_cache_key(const struct gw_chat *chat, const char *explicit_key, const char *scope,
		 char *out, size_t outlen);

enum gw_cache_result {
	GW_CACHE_HIT,
	GW_CACHE_MISS,
	GW_CACHE_BYPASS /* Redis down, queue full, disabled, shutting down, error reply */
};

/*
 * Completion of gw_cache_get and gw_cache_exec. value is malloc'd and
 * NUL-terminated (len excludes the NUL), owned by the callback, NULL
 * unless r is GW_CACHE_HIT. It runs either synchronously inside the call
 * that queued it (on a BYPASS decided without I/O) or later on the cache
 * thread; it must not block. It may call gw_cache_get/set/exec again.
 */
typedef void (*gw_cache_get_cb)(void *arg, enum gw_cache_result r, char *value, size_t len);

enum gw_cache_state {
	GW_CACHE_UP,      /* connected; lookups go to Redis */
	GW_CACHE_DOWN,    /* breaker open (or not connected yet): lookups BYPASS */
	GW_CACHE_DISABLED /* created without a URL, or a NULL cache */
};

/* Cumulative since gw_cache_new, except queue_depth (current). */
struct gw_cache_counters {
	uint64_t hits;          /* gw_cache_get answered HIT */
	uint64_t misses;        /* gw_cache_get answered MISS */
	uint64_t bypasses;      /* gw_cache_get answered BYPASS, whatever the reason */
	uint64_t sets;          /* SETs Redis acknowledged */
	uint64_t set_drops;     /* writes not stored: queue full, too big, down, failed */
	uint64_t errors;        /* I/O errors, timeouts, error replies */
	uint64_t breaker_opens; /* times the breaker opened (incl. unreachable at start) */
	uint64_t queue_depth;   /* commands queued right now */
};

struct gw_cache;

/*
 * Creates a cache for redis_url "redis://host[:port][/db]" (host may be
 * "[v6addr]"; port defaults to 6379, db to 0). Timeouts are milliseconds,
 * 1..60000, 0 for the defaults above; the command timeout bounds each
 * socket read and write. Does not connect: gw_cache_start does, on the
 * cache thread. A NULL or empty redis_url makes a disabled cache whose
 * lookups all answer BYPASS. Returns NULL after logging on a bad URL or
 * timeout, or on allocation failure. Free with gw_cache_free.
 */
struct gw_cache *gw_cache_new(const char *redis_url, unsigned connect_timeout_ms,
			      unsigned command_timeout_ms);

/*
 * Starts the cache thread, which connects at once. Until the first
 * connection succeeds the state is DOWN and lookups answer BYPASS.
 * Returns 0 (also for a disabled cache, which has no thread), -EALREADY,
 * or a negative errno from pthread_create.
 */
int gw_cache_start(struct gw_cache *c);

/*
 * Looks key up (GET). cb is called exactly once: synchronously with
 * BYPASS when the cache is NULL, disabled, not started, down, shutting
 * down, the key is NULL/empty/longer than GW_CACHE_KEY_MAX - 1, or the
 * queue is full; otherwise later on the cache thread with HIT, MISS or
 * BYPASS. Never blocks on Redis.
 */
void gw_cache_get(struct gw_cache *c, const char *key, gw_cache_get_cb cb, void *arg);

/*
 * Stores value under key: SET key value EX ttl_s. Copies key and value;
 * fire and forget. Dropped (counted in set_drops) when the cache is down,
 * disabled or shutting down, the queue is full, len exceeds
 * GW_CACHE_VALUE_MAX, or ttl_s is 0. ttl_s above GW_CACHE_TTL_MAX_S is
 * clamped. Never blocks on Redis.
 */
void gw_cache_set(struct gw_cache *c, const char *key, const char *value, size_t len,
		  unsigned ttl_s);

/*
 * Runs one Redis command given as argc (1..64) binary-safe arguments;
 * copies them. The reply reaches cb (which may be NULL: fire and forget):
 * a string or status reply as HIT with its text, an integer as HIT with
 * its decimal text, nil or an empty array as MISS, and an error reply,
 * a non-empty array, or any failure as BYPASS. Same queueing, breaker
 * and synchronous-BYPASS rules as gw_cache_get. Arguments total at most
 * GW_CACHE_VALUE_MAX + 64 KiB. Does not touch the hit/miss counters.
 */
void gw_cache_exec(struct gw_cache *c, const char *const *argv, const size_t *argvlen, int argc,
		   gw_cache_get_cb cb, void *arg);

/* Current state; a NULL cache is DISABLED. Lock-free, any thread. */
enum gw_cache_state gw_cache_state(struct gw_cache *c);

/* Name of a state for logs and /ready: "up", "down", "disabled". */
const char *gw_cache_state_name(enum gw_cache_state s);

/* Name of a result for the X-Cache header: "HIT", "MISS", "BYPASS". */
const char *gw_cache_result_name(enum gw_cache_result r);

/* Copies the counters; a NULL cache gives zeros. Any thread. */
void gw_cache_stats(struct gw_cache *c, struct gw_cache_counters *out);

/*
 * Stops the thread (waiting at most about one command timeout for a
 * command in flight), completes every queued lookup as BYPASS, drops
 * queued writes, closes the connection and frees. Accepts NULL. No other
 * thread may call into c once this has started.
 */
void gw_cache_free(struct gw_cache *c);

#endif
