/*
 * async.h - fire-and-forget requests (X-Async: true): their records in
 * Redis, so any instance, and this one after a restart, can serve the
 * result, and a job accepted but not finished is resumed at the next start.
 *
 * Keys: llmgw:v1:async:<id> holds the record (JSON) with the retention TTL;
 * llmgw:v1:async:pending:<instance> is the set of ids this instance still
 * owes an answer.
 */
#ifndef GW_ASYNC_H
#define GW_ASYNC_H

#include "cache.h"
#include "job.h"

#define GW_ASYNC_ID_MAX 48

/* A new unguessable id ("areq_" + 32 hex). */
void gw_async_new_id(char out[GW_ASYNC_ID_MAX]);

/* True when id has the shape of an async id (so it can be looked up). */
bool gw_async_id_valid(const char *id);

/* Redis key of the record of id. */
void gw_async_key(const char *id, char *out, size_t n);

/* Writes the "queued" record (the request itself included) and marks it pending. */
void gw_async_accept(struct gw_cache *c, const char *instance, const struct gw_job *job,
		     const char *id, unsigned retention_s);

/* Writes the finished job's answer and drops it from pending. */
void gw_async_complete(struct gw_cache *c, const char *instance, const struct gw_job *job,
		       const char *id, unsigned retention_s);

/*
 * Sends again the record writes Redis did not take (it was down or timed
 * out); they wait in a bounded list until then. Returns how many were sent.
 */
unsigned gw_async_retry(struct gw_cache *c);

/* At exit, after the cache is gone: drops (and reports) writes never sent. */
void gw_async_cleanup(void);

/* A parsed record. Strings are malloc'd; free with gw_async_record_free. */
struct gw_async_record {
	bool done;
	int http_status;              /* done: the answer's status */
	char *body;                   /* done: the answer's body */
	size_t body_len;
	char *request;                /* queued: the chat request as sent */
	size_t request_len;
	char service[GW_SERVICE_MAX + 1];
	enum gw_priority prio;
};

/* Returns 0 or -EINVAL. */
int gw_async_parse(const char *rec, size_t len, struct gw_async_record *out);
void gw_async_record_free(struct gw_async_record *r);

/* The 202 body for id. Malloc'd. */
char *gw_async_pending_body(const char *id, size_t *len);

/*
 * Startup: takes every id this instance still owes from Redis and calls
 * fn with its record. Blocks the caller (startup only), each command
 * bounded by the cache's timeouts. Returns how many records were handed
 * to fn.
 */
unsigned gw_async_recover(struct gw_cache *c, const char *instance,
			  void (*fn)(void *arg, const char *id, const char *rec, size_t len),
			  void *arg);

#endif
