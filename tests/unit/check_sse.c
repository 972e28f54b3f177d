/*
 * check_sse.c - the stream translator: OpenAI pass-through (usage chunk
 * kept or stripped, [DONE], error events), Anthropic translation (text
 * and tool-use streams, a stream cut short, error events), and the SSE
 * layer's framing rules (any split of the input gives the same output,
 * CRLF and CR line ends, comments, multi-line data, the event bound).
 * Chunk bodies are compared as parsed JSON with "created" checked and
 * then ignored, since it is the wall clock.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

#define OUT_MAX ((size_t)16 << 20)

/* ---- fixtures ----------------------------------------------------------- */

static const char openai_stream[] =
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	"\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
	"\"content\":\"\"},\"finish_reason\":null}]}\n\n"
	": OPENROUTER PROCESSING\n\n"
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	"\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},"
	"\"finish_reason\":null}]}\n\n"
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	"\"model\":\"gpt-4o-mini\",\"choices\":[{\"index\":0,\"delta\":{},"
	"\"finish_reason\":\"stop\"}]}\n\n"
	"data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,"
	"\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,"
	"\"completion_tokens\":2,\"total_tokens\":11,\"cost\":0.0000123}}\n\n"
	"data: [DONE]\n\n";

static const char anthropic_text[] =
	"event: message_start\n"
	"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01ABC\",\"type\":\"message\","
	"\"role\":\"assistant\",\"content\":[],\"model\":\"claude-3-5-sonnet-20241022\","
	"\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,"
	"\"output_tokens\":1}}}\n\n"
	"event: content_block_start\n"
	"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
	"\"text\":\"\"}}\n\n"
	"event: ping\n"
	"data: {\"type\": \"ping\"}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
	"\"text\":\"Hello\"}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
	"\"text\":\" w\\u00f6rld\\n\"}}\n\n"
	"event: content_block_stop\n"
	"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	"event: message_delta\n"
	"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\","
	"\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n"
	"event: message_stop\n"
	"data: {\"type\":\"message_stop\"}\n\n";

static const char *const anthropic_text_want[] = {
	"{\"id\":\"chatcmpl-msg_01ABC\",\"object\":\"chat.completion.chunk\",\"model\":"
	"\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
	"\"content\":\"\"},\"finish_reason\":null}]}",
	"{\"id\":\"chatcmpl-msg_01ABC\",\"object\":\"chat.completion.chunk\",\"model\":"
	"\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},"
	"\"finish_reason\":null}]}",
	"{\"id\":\"chatcmpl-msg_01ABC\",\"object\":\"chat.completion.chunk\",\"model\":"
	"\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" "
	"w\\u00f6rld\\n\"},"
	"\"finish_reason\":null}]}",
	"{\"id\":\"chatcmpl-msg_01ABC\",\"object\":\"chat.completion.chunk\",\"model\":"
	"\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
	"\"stop\"}]}",
	"{\"id\":\"chatcmpl-msg_01ABC\",\"object\":\"chat.completion.chunk\",\"model\":"
	"\"claude-3.5-sonnet\",\"choices\":[],\"usage\":{\"prompt_tokens\":25,"
	"\"completion_tokens\":15,\"total_tokens\":40}}",
	"[DONE]",
};

static const char anthropic_tools[] =
	"event: message_start\n"
	"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_02\",\"type\":\"message\","
	"\"role\":\"assistant\",\"content\":[],\"usage\":{\"input_tokens\":300,"
	"\"cache_read_input_tokens\":100,\"output_tokens\":2}}}\n\n"
	"event: content_block_start\n"
	"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\","
	"\"text\":\"\"}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\","
	"\"text\":\"Checking.\"}}\n\n"
	"event: content_block_stop\n"
	"data: {\"type\":\"content_block_stop\",\"index\":0}\n\n"
	"event: content_block_start\n"
	"data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":"
	"\"tool_use\",\"id\":\"toolu_01\",\"name\":\"get_price\",\"input\":{}}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
	"\"input_json_delta\",\"partial_json\":\"\"}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
	"\"input_json_delta\",\"partial_json\":\"{\\\"symbol\\\":\"}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":"
	"\"input_json_delta\",\"partial_json\":\" \\\"AAPL\\\"}\"}}\n\n"
	"event: content_block_stop\n"
	"data: {\"type\":\"content_block_stop\",\"index\":1}\n\n"
	"event: content_block_start\n"
	"data: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":"
	"\"tool_use\",\"id\":\"toolu_02\",\"name\":\"now\",\"input\":{}}}\n\n"
	"event: content_block_delta\n"
	"data: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":"
	"\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
	"event: content_block_stop\n"
	"data: {\"type\":\"content_block_stop\",\"index\":2}\n\n"
	"event: message_delta\n"
	"data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\","
	"\"stop_sequence\":null},\"usage\":{\"output_tokens\":40}}\n\n"
	"event: message_stop\n"
	"data: {\"type\":\"message_stop\"}\n\n";

#define CHUNK(delta, finish)                                                                       \
	"{\"id\":\"chatcmpl-given\",\"object\":\"chat.completion.chunk\",\"model\":\"claude-3.5-"  \
	"sonnet\","                                                                                \
	"\"choices\":[{\"index\":0,\"delta\":" delta ",\"finish_reason\":" finish "}]}"

static const char *const anthropic_tools_want[] = {
	CHUNK("{\"role\":\"assistant\",\"content\":\"\"}", "null"),
	CHUNK("{\"content\":\"Checking.\"}", "null"),
	CHUNK("{\"tool_calls\":[{\"index\":0,\"id\":\"toolu_01\",\"type\":\"function\","
	      "\"function\":{\"name\":\"get_price\",\"arguments\":\"\"}}]}",
	      "null"),
	CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"symbol\\\":\"}}]}",
	      "null"),
	CHUNK("{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\" \\\"AAPL\\\"}\"}}]}",
	      "null"),
	CHUNK("{\"tool_calls\":[{\"index\":1,\"id\":\"toolu_02\",\"type\":\"function\","
	      "\"function\":{\"name\":\"now\",\"arguments\":\"\"}}]}",
	      "null"),
	CHUNK("{\"tool_calls\":[{\"index\":1,\"function\":{\"arguments\":\"{}\"}}]}", "null"),
	CHUNK("{}", "\"tool_calls\""),
	"[DONE]",
};

/* ---- helpers ------------------------------------------------------------ */

/*
 * Runs input through a new translator in pieces of step bytes (0: all at
 * once). Returns the translator; *rc is the first non-zero feed result.
 */
static struct gw_sse_xlate *run(enum gw_dialect d, const char *id, bool include_usage,
				const char *in, size_t len, size_t step, struct gw_buf *out,
				int *rc)
{
	struct gw_sse_xlate *x =
		gw_sse_xlate_new(d, d == GW_DIALECT_ANTHROPIC ? "claude-3.5-sonnet" : "gpt-4o-mini",
				 id, include_usage);
	ck_assert_ptr_nonnull(x);
	gw_buf_init(out, OUT_MAX);
	*rc = 0;
	if (step == 0)
		step = len ? len : 1;
	for (size_t i = 0; i < len && *rc == 0; i += step) {
		size_t n = len - i < step ? len - i : step;
		*rc = gw_sse_xlate_feed(x, in + i, n, out);
	}
	return x;
}

/* Output with every "created":<digits> set to 0, malloc'd. */
static char *normalised(const struct gw_buf *b)
{
	static const char key[] = "\"created\":";
	struct gw_buf n;
	gw_buf_init(&n, OUT_MAX);
	const char *p = b->data ? b->data : "";
	const char *hit;
	while ((hit = strstr(p, key)) != NULL) {
		hit += sizeof(key) - 1;
		ck_assert_int_eq(gw_buf_append(&n, p, (size_t)(hit - p)), 0);
		ck_assert_int_eq(gw_buf_append(&n, "0", 1), 0);
		while (*hit >= '0' && *hit <= '9')
			hit++;
		p = hit;
	}
	ck_assert_int_eq(gw_buf_append(&n, p, strlen(p)), 0);
	return gw_buf_steal(&n, NULL);
}

/*
 * Checks that out is exactly the events of want, each "data: <x>\n\n":
 * "[DONE]" literally, everything else as JSON with "created" (when the
 * gateway built the chunk) a recent integer and otherwise ignored.
 */
static void events_golden(const struct gw_buf *out, const char *const *want, size_t n)
{
	const char *p = out->data ? out->data : "";
	for (size_t i = 0; i < n; i++) {
		ck_assert_msg(strncmp(p, "data: ", 6) == 0,
			      "event %zu does not start with data: %s", i, p);
		p += 6;
		const char *end = strstr(p, "\n\n");
		ck_assert_msg(end != NULL, "event %zu is not terminated", i);
		ck_assert_msg(memchr(p, '\n', (size_t)(end - p)) == NULL, "event %zu spans lines",
			      i);
		if (strcmp(want[i], "[DONE]") == 0) {
			ck_assert_msg(end - p == 6 && memcmp(p, "[DONE]", 6) == 0,
				      "event %zu: want [DONE]", i);
		} else {
			json_error_t e;
			json_t *g = json_loadb(p, (size_t)(end - p), 0, &e);
			ck_assert_msg(g != NULL, "event %zu is not JSON: %.*s", i, (int)(end - p),
				      p);
			json_t *created = json_object_get(g, "created");
			if (created) {
				ck_assert(json_is_integer(created));
				ck_assert_int_ge(json_integer_value(created),
						 (json_int_t)gw_wall_s() - 5);
				json_object_del(g, "created");
			}
			json_t *w = json_loads(want[i], 0, &e);
			ck_assert_msg(w != NULL, "want %zu is not JSON: %s", i, e.text);
			char *gs = json_dumps(g, JSON_COMPACT);
			ck_assert_msg(json_equal(g, w), "event %zu\n got: %s\nwant: %s", i, gs,
				      want[i]);
			free(gs);
			json_decref(g);
			json_decref(w);
		}
		p = end + 2;
	}
	ck_assert_msg(*p == '\0', "extra output: %s", p);
}

/* The input with every LF replaced by sep (CRLF or CR), malloc'd. */
static char *with_line_ends(const char *in, const char *sep)
{
	struct gw_buf b;
	gw_buf_init(&b, OUT_MAX);
	for (const char *p = in; *p; p++) {
		if (*p == '\n')
			ck_assert_int_eq(gw_buf_append(&b, sep, strlen(sep)), 0);
		else
			ck_assert_int_eq(gw_buf_append(&b, p, 1), 0);
	}
	return gw_buf_steal(&b, NULL);
}

/*
 * Feeds in whole, one byte at a time, and split in two at every offset;
 * all outputs (created normalised) must equal the whole feed's.
 */
static void split_invariant(enum gw_dialect d, const char *id, bool include_usage, const char *in)
{
	size_t len = strlen(in);
	struct gw_buf ref, b;
	int rc;
	struct gw_sse_xlate *x = run(d, id, include_usage, in, len, 0, &ref, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	struct gw_usage u = *gw_sse_xlate_usage(x);
	gw_sse_xlate_free(x);
	char *want = normalised(&ref);

	x = run(d, id, include_usage, in, len, 1, &b, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, u.prompt_tokens);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, u.completion_tokens);
	char *got = normalised(&b);
	ck_assert_str_eq(got, want);
	free(got);
	gw_buf_free(&b);
	gw_sse_xlate_free(x);

	for (size_t k = 1; k < len; k++) {
		x = gw_sse_xlate_new(
			d, d == GW_DIALECT_ANTHROPIC ? "claude-3.5-sonnet" : "gpt-4o-mini", id,
			include_usage);
		ck_assert_ptr_nonnull(x);
		gw_buf_init(&b, OUT_MAX);
		ck_assert_int_eq(gw_sse_xlate_feed(x, in, k, &b), 0);
		ck_assert_int_eq(gw_sse_xlate_feed(x, in + k, len - k, &b), 0);
		ck_assert(gw_sse_xlate_complete(x));
		got = normalised(&b);
		ck_assert_msg(strcmp(got, want) == 0, "split at %zu differs", k);
		free(got);
		gw_buf_free(&b);
		gw_sse_xlate_free(x);
	}
	free(want);
	gw_buf_free(&ref);
}

/* The last event of out, parsed (it must be JSON). */
static json_t *last_event(const struct gw_buf *out)
{
	ck_assert_ptr_nonnull(out->data);
	ck_assert(out->len >= 2 && memcmp(out->data + out->len - 2, "\n\n", 2) == 0);
	const char *start = out->data;
	for (const char *p = out->data; p + 2 < out->data + out->len; p++)
		if (p[0] == '\n' && p[1] == '\n')
			start = p + 2;
	ck_assert(strncmp(start, "data: ", 6) == 0);
	json_t *j = json_loadb(start + 6, (size_t)(out->data + out->len - 2 - start - 6), 0, NULL);
	ck_assert_ptr_nonnull(j);
	return j;
}

static void json_same(json_t *g, const char *want)
{
	json_t *w = json_loads(want, 0, NULL);
	ck_assert_ptr_nonnull(w);
	char *gs = json_dumps(g, JSON_COMPACT);
	ck_assert_msg(json_equal(g, w), "\n got: %s\nwant: %s", gs, want);
	free(gs);
	json_decref(w);
}

/* ---- OpenAI dialect ----------------------------------------------------- */

/* openai_stream's data events, minus the usage chunk when !with_usage. */
static char *openai_expected(bool with_usage)
{
	struct gw_buf b;
	gw_buf_init(&b, OUT_MAX);
	const char *p = openai_stream;
	while (*p) {
		const char *end = strstr(p, "\n\n") + 2;
		bool is_data = strncmp(p, "data: ", 6) == 0;
		bool is_usage =
			strstr(p, "\"choices\":[]") != NULL && strstr(p, "\"choices\":[]") < end;
		if (is_data && (with_usage || !is_usage))
			ck_assert_int_eq(gw_buf_append(&b, p, (size_t)(end - p)), 0);
		p = end;
	}
	return gw_buf_steal(&b, NULL);
}

START_TEST(openai_usage_kept)
{
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_OPENAI, NULL, true, openai_stream,
				     strlen(openai_stream), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	char *want = openai_expected(true);
	ck_assert_str_eq(out.data, want);
	const struct gw_usage *u = gw_sse_xlate_usage(x);
	ck_assert_int_eq(u->prompt_tokens, 9);
	ck_assert_int_eq(u->completion_tokens, 2);
	ck_assert(u->has_cost);
	ck_assert_int_eq(u->cost, 12300000); /* $0.0000123 in pico-dollars */
	free(want);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(openai_usage_stripped)
{
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_OPENAI, NULL, false, openai_stream,
				     strlen(openai_stream), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	char *want = openai_expected(false);
	ck_assert_str_eq(out.data, want);
	ck_assert_ptr_null(strstr(out.data, "usage"));
	/* Not forwarded, still counted. */
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 9);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 2);
	free(want);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(openai_usage_on_any_chunk)
{
	const char in[] = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":"
			  "\"x\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":4,"
			  "\"completion_tokens\":1}}\n\n";
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_OPENAI, NULL, false, in, strlen(in), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_str_eq(out.data, in); /* it has choices: not the usage chunk */
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 4);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 1);
	ck_assert(!gw_sse_xlate_usage(x)->has_cost);
	ck_assert(!gw_sse_xlate_complete(x));
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(openai_done_completes)
{
	struct gw_sse_xlate *x = gw_sse_xlate_new(GW_DIALECT_OPENAI, "m", NULL, false);
	struct gw_buf out;
	gw_buf_init(&out, OUT_MAX);
	const char a[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
	ck_assert_int_eq(gw_sse_xlate_feed(x, a, strlen(a), &out), 0);
	ck_assert(!gw_sse_xlate_complete(x));
	ck_assert_int_eq(gw_sse_xlate_feed(x, "data: [DONE]", 12, &out), 0);
	ck_assert(!gw_sse_xlate_complete(x)); /* no blank line yet */
	ck_assert_int_eq(gw_sse_xlate_feed(x, "\n\ndata: {\"late\":1}\n\n", 20, &out), 0);
	ck_assert(gw_sse_xlate_complete(x));
	size_t len = out.len;
	ck_assert_int_eq(gw_sse_xlate_feed(x, "data: {\"later\":2}\n\n", 19, &out), 0);
	ck_assert_uint_eq(out.len, len);
	ck_assert_ptr_null(strstr(out.data, "late"));
	ck_assert_str_eq(out.data + strlen(a), "data: [DONE]\n\n");
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(openai_error_event)
{
	const char in[] =
		"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"par\"}}]}\n\n"
		"data: {\"id\":\"gen-1\",\"error\":{\"message\":\"Provider returned error\","
		"\"code\":502},\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"error\"}]"
		"}"
		"\n\n";
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_OPENAI, NULL, false, in, strlen(in), 0, &out, &rc);
	ck_assert_int_eq(rc, -EPROTO);
	ck_assert(!gw_sse_xlate_complete(x));
	json_t *j = last_event(&out);
	json_same(j, "{\"error\":{\"message\":\"Provider returned error\",\"type\":"
		     "\"upstream_error\",\"param\":null,\"code\":\"502\"}}");
	json_decref(j);
	/* Nothing may follow the error event. */
	size_t len = out.len;
	ck_assert_int_eq(gw_sse_xlate_feed(x, "data: [DONE]\n\n", 14, &out), -EPROTO);
	ck_assert_uint_eq(out.len, len);
	ck_assert(!gw_sse_xlate_complete(x));
	gw_buf_free(&out);
	gw_sse_xlate_free(x);

	const char typed[] = "data: {\"error\":{\"message\":\"slow down\",\"type\":"
			     "\"rate_limit_exceeded\",\"code\":\"rate_limit\",\"param\":null}}\n\n";
	x = run(GW_DIALECT_OPENAI, NULL, false, typed, strlen(typed), 0, &out, &rc);
	ck_assert_int_eq(rc, -EPROTO);
	j = last_event(&out);
	json_same(j, "{\"error\":{\"message\":\"slow down\",\"type\":\"rate_limit_exceeded\","
		     "\"param\":null,\"code\":\"rate_limit\"}}");
	json_decref(j);
	ck_assert_str_eq(out.data,
			 "data: {\"error\":{\"message\":\"slow down\",\"type\":"
			 "\"rate_limit_exceeded\",\"param\":null,\"code\":\"rate_limit\"}}\n\n");
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(invalid_data)
{
	static const enum gw_dialect ds[] = { GW_DIALECT_OPENAI, GW_DIALECT_ANTHROPIC };
	static const char *const bad[] = { "data: hello\n\n", "data: [1,2]\n\n",
					   "data: {\"a\":\n\n" };
	for (size_t d = 0; d < 2; d++) {
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			struct gw_buf out;
			int rc;
			struct gw_sse_xlate *x =
				run(ds[d], NULL, false, bad[i], strlen(bad[i]), 0, &out, &rc);
			ck_assert_int_eq(rc, -EPROTO);
			json_t *j = last_event(&out);
			json_same(j, "{\"error\":{\"message\":\"upstream sent an invalid stream\","
				     "\"type\":\"upstream_error\",\"param\":null,\"code\":null}}");
			json_decref(j);
			gw_buf_free(&out);
			gw_sse_xlate_free(x);
		}
	}
}
END_TEST

/* ---- SSE framing -------------------------------------------------------- */

START_TEST(any_split_same_output)
{
	split_invariant(GW_DIALECT_OPENAI, NULL, true, openai_stream);
	split_invariant(GW_DIALECT_OPENAI, NULL, false, openai_stream);
	split_invariant(GW_DIALECT_ANTHROPIC, NULL, true, anthropic_text);
	split_invariant(GW_DIALECT_ANTHROPIC, "chatcmpl-given", false, anthropic_tools);
}
END_TEST

START_TEST(line_ends_and_fields)
{
	/* CRLF and bare CR frame events exactly like LF. */
	static const char *const seps[] = { "\r\n", "\r" };
	struct gw_buf ref;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_ANTHROPIC, NULL, true, anthropic_text,
				     strlen(anthropic_text), 0, &ref, &rc);
	gw_sse_xlate_free(x);
	char *want = normalised(&ref);
	for (size_t i = 0; i < 2; i++) {
		char *in = with_line_ends(anthropic_text, seps[i]);
		for (size_t step = 0; step <= 1; step++) {
			struct gw_buf out;
			x = run(GW_DIALECT_ANTHROPIC, NULL, true, in, strlen(in), step, &out, &rc);
			ck_assert_int_eq(rc, 0);
			ck_assert(gw_sse_xlate_complete(x));
			char *got = normalised(&out);
			ck_assert_str_eq(got, want);
			free(got);
			gw_buf_free(&out);
			gw_sse_xlate_free(x);
		}
		free(in);
	}
	free(want);
	gw_buf_free(&ref);

	/* Multi-line data joins with LF and is re-encoded as one line;
	 * comments, id:, retry: and unknown fields are dropped; "data:x"
	 * without the space works; an event with no data is nothing. */
	const char in[] = ": keep-alive\n"
			  "id: 7\nretry: 1000\nfoo: bar\n"
			  "data: {\"choices\":[{\"index\":0,\n"
			  "data:\"delta\":{\"content\":\"a\"}}]}\n\n"
			  "event: nothing\n\n"
			  "\n\n"
			  "data:[DONE]\n\n";
	struct gw_buf out;
	x = run(GW_DIALECT_OPENAI, NULL, false, in, strlen(in), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	ck_assert_str_eq(out.data,
			 "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}"
			 "\n\ndata: [DONE]\n\n");
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(oversized_event)
{
	size_t big = ((size_t)1 << 20) + 64;
	char *in = malloc(big + 16);
	ck_assert_ptr_nonnull(in);

	/* One endless data line, fed in pieces. */
	memcpy(in, "data: \"", 7);
	memset(in + 7, 'x', big - 7);
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_OPENAI, NULL, false, in, big, 4096, &out, &rc);
	ck_assert_int_eq(rc, -E2BIG);
	json_t *j = last_event(&out);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(j, "error"), "type")),
			 "upstream_error");
	json_decref(j);
	ck_assert_int_eq(gw_sse_xlate_feed(x, "\n\n", 2, &out), -E2BIG);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);

	/* Many short data lines that add up past the bound. */
	size_t n = 0;
	while (n + 20 < big) {
		memcpy(in + n, "data: 0123456789ab\n", 19);
		n += 19;
	}
	x = run(GW_DIALECT_ANTHROPIC, NULL, false, in, n, 0, &out, &rc);
	ck_assert_int_eq(rc, -E2BIG);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);

	/* Just under the bound is fine. */
	size_t len = 0;
	const char head[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"";
	const char tail[] = "\"}}]}\n\n";
	memcpy(in, head, sizeof(head) - 1);
	len = sizeof(head) - 1;
	size_t fill = ((size_t)1 << 20) - 100 - len;
	memset(in + len, 'y', fill);
	len += fill;
	memcpy(in + len, tail, sizeof(tail) - 1);
	len += sizeof(tail) - 1;
	x = run(GW_DIALECT_OPENAI, NULL, false, in, len, 65536, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert_uint_eq(out.len, len);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
	free(in);
}
END_TEST

/* ---- Anthropic dialect -------------------------------------------------- */

START_TEST(anthropic_text_stream)
{
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_ANTHROPIC, NULL, true, anthropic_text,
				     strlen(anthropic_text), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	events_golden(&out, anthropic_text_want,
		      sizeof(anthropic_text_want) / sizeof(anthropic_text_want[0]));
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 25);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 15);
	ck_assert(!gw_sse_xlate_usage(x)->has_cost);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);

	/* Without include_usage: the same minus the usage chunk. */
	x = run(GW_DIALECT_ANTHROPIC, NULL, false, anthropic_text, strlen(anthropic_text), 0, &out,
		&rc);
	ck_assert_int_eq(rc, 0);
	const char *const want[] = { anthropic_text_want[0], anthropic_text_want[1],
				     anthropic_text_want[2], anthropic_text_want[3], "[DONE]" };
	events_golden(&out, want, 5);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 15);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(anthropic_tool_stream)
{
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x = run(GW_DIALECT_ANTHROPIC, "chatcmpl-given", false, anthropic_tools,
				     strlen(anthropic_tools), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	events_golden(&out, anthropic_tools_want,
		      sizeof(anthropic_tools_want) / sizeof(anthropic_tools_want[0]));
	/* Cache reads are prompt tokens too. */
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 400);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 40);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(anthropic_cut_short)
{
	/* Cut in the middle of an event after two text deltas. */
	const char *cut = strstr(anthropic_text, "event: content_block_stop");
	ck_assert_ptr_nonnull(cut);
	size_t len = (size_t)(cut - anthropic_text) + 30;
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x =
		run(GW_DIALECT_ANTHROPIC, NULL, true, anthropic_text, len, 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(!gw_sse_xlate_complete(x));
	events_golden(&out, anthropic_text_want, 3);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 25);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 1);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);

	/* Cut after message_delta: its cumulative output count is kept. */
	cut = strstr(anthropic_text, "event: message_stop");
	x = run(GW_DIALECT_ANTHROPIC, NULL, true, anthropic_text, (size_t)(cut - anthropic_text), 1,
		&out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(!gw_sse_xlate_complete(x));
	events_golden(&out, anthropic_text_want, 4);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 25);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 15);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(anthropic_error_event)
{
	const char *mid = strstr(anthropic_text, "event: content_block_stop");
	size_t head = (size_t)(mid - anthropic_text);
	const char err[] = "event: error\n"
			   "data: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
			   "\"message\":\"Overloaded\"}}\n\n";
	char *in = malloc(head + sizeof(err));
	ck_assert_ptr_nonnull(in);
	memcpy(in, anthropic_text, head);
	memcpy(in + head, err, sizeof(err));
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x =
		run(GW_DIALECT_ANTHROPIC, NULL, true, in, strlen(in), 0, &out, &rc);
	ck_assert_int_eq(rc, -EPROTO);
	ck_assert(!gw_sse_xlate_complete(x));
	const char *const want[] = {
		anthropic_text_want[0],
		anthropic_text_want[1],
		anthropic_text_want[2],
		"{\"error\":{\"message\":\"Overloaded\",\"type\":\"api_error\",\"param\":null,"
		"\"code\":\"overloaded_error\"}}",
	};
	events_golden(&out, want, 4);
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 25);
	size_t len = out.len;
	const char *rest = strstr(anthropic_text, "event: message_delta");
	ck_assert_int_eq(gw_sse_xlate_feed(x, rest, strlen(rest), &out), -EPROTO);
	ck_assert_uint_eq(out.len, len);
	ck_assert(!gw_sse_xlate_complete(x));
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
	free(in);

	/* rate_limit_error maps to OpenAI's rate_limit_exceeded. */
	const char rl[] = "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
			  "\"rate_limit_error\",\"message\":\"slow\"}}\n\n";
	x = run(GW_DIALECT_ANTHROPIC, NULL, false, rl, strlen(rl), 0, &out, &rc);
	ck_assert_int_eq(rc, -EPROTO);
	json_t *j = last_event(&out);
	json_same(j, "{\"error\":{\"message\":\"slow\",\"type\":\"rate_limit_exceeded\","
		     "\"param\":null,\"code\":\"rate_limit_error\"}}");
	json_decref(j);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(anthropic_unknown_events_ignored)
{
	/* Thinking blocks, unknown event types and a type-less payload named
	 * only by its event: line. */
	const char in[] =
		"event: message_start\n"
		"data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_3\",\"usage\":"
		"{\"input_tokens\":3,\"output_tokens\":0}}}\n\n"
		"event: content_block_start\n"
		"data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":"
		"{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n"
		"event: content_block_delta\n"
		"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
		"\"thinking_delta\",\"thinking\":\"secret\"}}\n\n"
		"event: content_block_delta\n"
		"data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":"
		"\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n"
		"event: future_event\n"
		"data: {\"type\":\"future_event\",\"x\":1}\n\n"
		"event: message_delta\n"
		"data: {\"delta\":{\"stop_reason\":\"max_tokens\"},\"usage\":{\"output_tokens\":7}}"
		"\n\n"
		"event: message_stop\n"
		"data: {\"type\":\"message_stop\"}\n\n";
	struct gw_buf out;
	int rc;
	struct gw_sse_xlate *x =
		run(GW_DIALECT_ANTHROPIC, NULL, false, in, strlen(in), 0, &out, &rc);
	ck_assert_int_eq(rc, 0);
	ck_assert(gw_sse_xlate_complete(x));
	const char *const want[] = {
		"{\"id\":\"chatcmpl-msg_3\",\"object\":\"chat.completion.chunk\",\"model\":"
		"\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
		"\"content\":\"\"},\"finish_reason\":null}]}",
		"{\"id\":\"chatcmpl-msg_3\",\"object\":\"chat.completion.chunk\",\"model\":"
		"\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":"
		"\"length\"}]}",
		"[DONE]",
	};
	events_golden(&out, want, 3);
	ck_assert_ptr_null(strstr(out.data, "secret"));
	ck_assert_int_eq(gw_sse_xlate_usage(x)->completion_tokens, 7);
	gw_buf_free(&out);
	gw_sse_xlate_free(x);
}
END_TEST

START_TEST(free_accepts_null)
{
	gw_sse_xlate_free(NULL);
	struct gw_sse_xlate *x = gw_sse_xlate_new(GW_DIALECT_ANTHROPIC, NULL, NULL, true);
	ck_assert_ptr_nonnull(x);
	ck_assert(!gw_sse_xlate_complete(x));
	ck_assert_int_eq(gw_sse_xlate_usage(x)->prompt_tokens, 0);
	gw_sse_xlate_free(x);
}
END_TEST

Suite *sse_suite(void);
Suite *sse_suite(void)
{
	Suite *s = suite_create("sse");
	TCase *o = tcase_create("openai");
	tcase_set_timeout(o, 10);
	tcase_add_test(o, openai_usage_kept);
	tcase_add_test(o, openai_usage_stripped);
	tcase_add_test(o, openai_usage_on_any_chunk);
	tcase_add_test(o, openai_done_completes);
	tcase_add_test(o, openai_error_event);
	tcase_add_test(o, invalid_data);
	suite_add_tcase(s, o);
	TCase *f = tcase_create("framing");
	tcase_set_timeout(f, 60);
	tcase_add_test(f, any_split_same_output);
	tcase_add_test(f, line_ends_and_fields);
	tcase_add_test(f, oversized_event);
	suite_add_tcase(s, f);
	TCase *a = tcase_create("anthropic");
	tcase_set_timeout(a, 10);
	tcase_add_test(a, anthropic_text_stream);
	tcase_add_test(a, anthropic_tool_stream);
	tcase_add_test(a, anthropic_cut_short);
	tcase_add_test(a, anthropic_error_event);
	tcase_add_test(a, anthropic_unknown_events_ignored);
	tcase_add_test(a, free_accepts_null);
	suite_add_tcase(s, a);
	return s;
}
