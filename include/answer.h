/*
 * answer.h - a finished answer as the cache stores it, and its two wire
 * forms. The cache key ignores "stream", so one stored answer serves
 * plain and streamed requests alike: it is kept as an OpenAI
 * chat.completion and replayed as server-sent events when a stream asks.
 */
#ifndef GW_ANSWER_H
#define GW_ANSWER_H

#include "provider.h"

/*
 * The stored envelope: {"v":1,"completion":{...},"usage":{...},
 * "cost_pusd":N}. Returns a malloc'd string or NULL (completion not JSON,
 * or out of memory).
 */
char *gw_answer_pack(const char *completion, size_t len, const struct gw_usage *u, gw_pusd cost,
		     size_t *outlen);

/* Reads an envelope; *completion is malloc'd. Returns 0, -EINVAL (not
 * an envelope of this version) or -ENOMEM. */
int gw_answer_unpack(const char *env, size_t len, char **completion, size_t *clen,
		     struct gw_usage *u, gw_pusd *cost);

/*
 * Assembles the chat.completion a complete OpenAI event stream (as the
 * client got it) amounts to: text, tool calls, finish reason, usage.
 * Returns a malloc'd string, or NULL when the stream is incomplete or
 * holds an error.
 */
char *gw_answer_from_sse(const char *sse, size_t len, size_t *outlen);

/*
 * The event stream replaying a chat.completion: a role chunk, the
 * content, tool calls, the finish chunk, the usage chunk when
 * include_usage, then [DONE]. Returns a malloc'd string or NULL.
 */
char *gw_answer_to_sse(const char *completion, size_t len, bool include_usage, size_t *outlen);

#endif
