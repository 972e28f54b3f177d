/*
 * sse.h - streaming: turns the upstream's server-sent events into the
 * OpenAI chat.completion.chunk events the client gets, incrementally, and
 * keeps the usage the stream reports.
 *
 * OpenAI dialect: events pass through unchanged, except the usage-only
 * chunk (choices empty, usage set), which is kept for the ledger and sent
 * to the client only when it asked for stream_options.include_usage.
 * Anthropic dialect: message_start / content_block_* / message_delta /
 * message_stop / ping / error are translated into chunks (text and
 * tool-call deltas, finish_reason, the final usage chunk when asked),
 * ending with "data: [DONE]".
 *
 * Input may arrive split anywhere (mid-line, mid-event); the translator
 * buffers at most one partial event, bounded.
 */
#ifndef GW_SSE_H
#define GW_SSE_H

#include "buf.h"
#include "provider.h"

struct gw_sse_xlate;

/*
 * A translator for one stream. client_model is echoed in chunks the
 * gateway builds; id is the chunk id to use ("chatcmpl-..."), or NULL to
 * derive one. Returns NULL on allocation failure.
 */
struct gw_sse_xlate *gw_sse_xlate_new(enum gw_dialect dialect, const char *client_model,
				      const char *id, bool include_usage);

/*
 * Feeds upstream bytes; appends what the client should get to out.
 * Returns 0; -EPROTO when the upstream sent an error event or something
 * that is not a valid stream (out then ends with one OpenAI-shaped error
 * event, data: {"error":{...}}, and nothing more may be sent); -E2BIG
 * when a single event exceeds the bound; -ENOMEM.
 */
int gw_sse_xlate_feed(struct gw_sse_xlate *x, const char *data, size_t len, struct gw_buf *out);

/* True once the upstream stream ended properly ([DONE] / message_stop);
 * by then "data: [DONE]\n\n" was appended to out. */
bool gw_sse_xlate_complete(const struct gw_sse_xlate *x);

/* Usage seen so far (also for a stream cut short). */
const struct gw_usage *gw_sse_xlate_usage(const struct gw_sse_xlate *x);

/* Accepts NULL. */
void gw_sse_xlate_free(struct gw_sse_xlate *x);

#endif
