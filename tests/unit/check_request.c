/*
 * check_request.c - header semantics, chat body validation, error shape,
 * and the chat scan held to the jansson path: on a corpus, on bodies put
 * together from valid and broken members, and on seeded mutations.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "mutate.h"
#include "request.h"

START_TEST(priority_header)
{
	struct gw_error err;
	enum gw_priority p;
	const char *ok[] = { "CRITICAL", "critical", "High", "medium", "LOW", "1", "2", "3", "4" };
	const enum gw_priority want[] = { GW_PRIO_CRITICAL, GW_PRIO_CRITICAL, GW_PRIO_HIGH,
					  GW_PRIO_MEDIUM,   GW_PRIO_LOW,      GW_PRIO_CRITICAL,
					  GW_PRIO_HIGH,     GW_PRIO_MEDIUM,   GW_PRIO_LOW };
	for (unsigned i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		ck_assert_int_eq(gw_hdr_priority(ok[i], &p, &err), 0);
		ck_assert_int_eq(p, want[i]);
	}
	const char *bad[] = { "", "0", "5", "URGENT", "11", " HIGH", "1.0" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ck_assert_int_eq(gw_hdr_priority(bad[i], &p, &err), -EINVAL);
		ck_assert_int_eq(err.status, 400);
		ck_assert_str_eq(err.param, "X-Priority");
		ck_assert_ptr_nonnull(strstr(err.message, "CRITICAL, HIGH, MEDIUM or LOW"));
	}
}
END_TEST

START_TEST(service_header)
{
	struct gw_error err;
	char out[GW_SERVICE_MAX + 1];
	ck_assert_int_eq(gw_hdr_service("stock_analyzer-2.v1", out, &err), 0);
	ck_assert_str_eq(out, "stock_analyzer-2.v1");
	char longname[70];
	memset(longname, 'a', 65);
	longname[65] = '\0';
	ck_assert_int_eq(gw_hdr_service(longname, out, &err), -EINVAL);
	longname[64] = '\0';
	ck_assert_int_eq(gw_hdr_service(longname, out, &err), 0);
	ck_assert_int_eq(gw_hdr_service("", out, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_service("a b", out, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_service("a/b", out, &err), -EINVAL);
	ck_assert_str_eq(err.param, "X-Service-Name");
}
END_TEST

START_TEST(deadline_and_request_id)
{
	struct gw_error err;
	int64_t ms;
	ck_assert_int_eq(gw_hdr_deadline_ms("2500", &ms, &err), 0);
	ck_assert_int_eq(ms, 2500);
	ck_assert_int_eq(gw_hdr_deadline_ms("0", &ms, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_deadline_ms("-5", &ms, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_deadline_ms("12ms", &ms, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_deadline_ms("99999999999999999999", &ms, &err), -EINVAL);
	ck_assert_str_eq(err.param, "X-Deadline-Ms");
	char id[GW_REQUEST_ID_MAX + 1];
	ck_assert_int_eq(gw_hdr_request_id("trade:42-a", id, &err), 0);
	ck_assert_str_eq(id, "trade:42-a");
	ck_assert_int_eq(gw_hdr_request_id("bad\"id", id, &err), -EINVAL);
	unsigned ttl;
	ck_assert_int_eq(gw_hdr_cache_ttl("900", &ttl, &err), 0);
	ck_assert_uint_eq(ttl, 900);
	ck_assert_int_eq(gw_hdr_cache_ttl("0", &ttl, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_cache_ttl("2592001", &ttl, &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_cache_ttl("-5", &ttl, &err), -EINVAL);
	ck_assert_str_eq(err.param, "X-Cache-TTL");
	char key[8];
	ck_assert_int_eq(gw_hdr_cache_key("aapl_1", key, sizeof(key), &err), 0);
	ck_assert_str_eq(key, "aapl_1");
	ck_assert_int_eq(gw_hdr_cache_key("too_long!", key, sizeof(key), &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_cache_key("a b", key, sizeof(key), &err), -EINVAL);
	ck_assert_int_eq(gw_hdr_cache_key("", key, sizeof(key), &err), -EINVAL);
	ck_assert_str_eq(err.param, "X-Cache-Key");
	bool b;
	ck_assert_int_eq(gw_hdr_bool("X-Async", "TRUE", &b, &err), 0);
	ck_assert(b);
	ck_assert_int_eq(gw_hdr_bool("X-Async", "yes please", &b, &err), -EINVAL);
}
END_TEST

static int parse(const char *body, struct gw_chat *chat, struct gw_error *err)
{
	return gw_chat_parse(body, strlen(body), chat, err);
}

START_TEST(chat_valid)
{
	struct gw_chat chat;
	struct gw_error err;
	ck_assert_int_eq(parse("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
			       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]},"
			       "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}],"
			       "\"stream\":true,\"stream_options\":{\"include_usage\":true},"
			       "\"max_tokens\":50,\"temperature\":0.5}",
			       &chat, &err),
			 0);
	ck_assert_str_eq(chat.model, "m");
	ck_assert(chat.stream);
	ck_assert(chat.include_usage);
	ck_assert_int_eq(chat.max_tokens, 50);
	ck_assert_uint_eq(chat.n_messages, 3);
	ck_assert_int_eq(gw_chat_set_model(&chat, "other"), 0);
	ck_assert_str_eq(chat.model, "other");
	gw_chat_free(&chat);
}
END_TEST

START_TEST(chat_invalid)
{
	static const struct {
		const char *body;
		const char *param;
	} cases[] = {
		{ "", NULL },
		{ "{", NULL },
		{ "[]", NULL },
		{ "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model" },
		{ "{\"model\":5,\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model" },
		{ "{\"model\":\"\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", "model" },
		{ "{\"model\":\"m\"}", "messages" },
		{ "{\"model\":\"m\",\"messages\":[]}", "messages" },
		{ "{\"model\":\"m\",\"messages\":{}}", "messages" },
		{ "{\"model\":\"m\",\"messages\":[1]}", "messages" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}", "messages" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":\"yes\"}", "stream" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":0}", "max_tokens" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":1.5}", "max_tokens" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"temperature\":3}", "temperature" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"top_p\":\"a\"}", "top_p" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stop\":[1]}", "stop" },
		{ "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":{}}", "tools" },
		{ "{\"model\":\"m\",\"model\":\"n\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", NULL },
	};
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_chat chat;
		struct gw_error err;
		ck_assert_msg(parse(cases[i].body, &chat, &err) == -EINVAL, "case %u accepted", i);
		ck_assert_int_eq(err.status, 400);
		ck_assert_str_eq(err.type, "invalid_request_error");
		if (cases[i].param)
			ck_assert_str_eq(err.param, cases[i].param);
		else
			ck_assert_ptr_null(err.param);
		ck_assert_ptr_null(chat.root);
	}
}
END_TEST

/* ---- the scan against the jansson path ----------------------------- */

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/*
 * Runs the scan, the jansson path and gw_chat_parse on one body and fails
 * when the scan accepts what jansson does not, or reads other fields, or
 * when gw_chat_parse answers otherwise than jansson (fields, tree, or the
 * error to the letter). Returns 1 when the scan accepted, 0 when the body
 * is valid but the scan was not sure, -1 when it is invalid.
 */
static int same_as_slow(const char *body, size_t len)
{
	struct gw_jscan_chat f;
	struct gw_chat slow, pub;
	struct gw_error serr, perr;
	int frc = gw_jscan_chat(body, len, &f);
	int src = gw_chat_parse_slow(body, len, &slow, &serr);
	int prc = gw_chat_parse(body, len, &pub, &perr);
	if (frc == 0) {
		ck_assert_msg(src == 0, "scan accepted what jansson rejects (%s): [%.*s]",
			      serr.message, (int)len, body);
		ck_assert_msg(f.model_len == strlen(slow.model) &&
				      memcmp(body + f.model_off, slow.model, f.model_len) == 0 &&
				      f.stream == slow.stream &&
				      f.include_usage == slow.include_usage &&
				      f.max_tokens == slow.max_tokens &&
				      f.n_messages == slow.n_messages,
			      "scan read other fields: [%.*s]", (int)len, body);
	}
	ck_assert_msg(prc == src, "gw_chat_parse %d, jansson %d: [%.*s]", prc, src, (int)len, body);
	if (src == 0) {
		ck_assert_str_eq(pub.model, slow.model);
		ck_assert(pub.stream == slow.stream && pub.include_usage == slow.include_usage);
		ck_assert_int_eq(pub.max_tokens, slow.max_tokens);
		ck_assert_uint_eq(pub.n_messages, slow.n_messages);
		/* The tree waits exactly when the scan was sure. */
		ck_assert((pub.root == NULL) == (frc == 0));
		json_t *root = gw_chat_root(&pub);
		ck_assert_msg(root && json_equal(root, slow.root), "trees differ: [%.*s]", (int)len,
			      body);
	} else {
		ck_assert_int_eq(perr.status, serr.status);
		ck_assert(same_str(perr.type, serr.type) && same_str(perr.code, serr.code) &&
			  same_str(perr.param, serr.param));
		ck_assert_str_eq(perr.message, serr.message);
		ck_assert_ptr_null(pub.root);
	}
	gw_chat_free(&slow);
	gw_chat_free(&pub);
	return frc == 0 ? 1 : src == 0 ? 0 : -1;
}

enum outcome { FAST = 1, SLOW = 0, BAD = -1 };

#define MSG "\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]"
#define CHAT(extra) "{\"model\":\"m\"," MSG extra "}"

static const char common_body[] =
	"{\"model\":\"openai/gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"bench: "
	"say hi\"}]}";

static const char full_body[] =
	"{\"model\":\"openai/gpt-4o-mini\",\"messages\":["
	"{\"role\":\"system\",\"content\":\"be brief\"},"
	"{\"role\":\"developer\",\"content\":\"d\"},"
	"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\\u00e9 \\ud83d\\ude00 "
	"\xc3\xa9 \xf0\x9f\x98\x80 \\\"q\\\" \\\\ \\n\"},{\"type\":\"image_url\",\"image_url\":"
	"{\"url\":\"data:,x\",\"detail\":\"low\"}}]},"
	"{\"role\":\"assistant\",\"content\":\"ok\",\"tool_calls\":[{\"id\":\"c1\",\"type\":"
	"\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]},"
	"{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"content\":\"r\"},"
	"{\"role\":\"function\",\"name\":\"f\",\"content\":\"{}\"}],"
	"\"stream\":true,\"stream_options\":{\"include_usage\":true},\"max_tokens\":50,"
	"\"max_completion_tokens\":70,\"n\":2,\"temperature\":0.5,\"top_p\":1,"
	"\"presence_penalty\":-2,\"frequency_penalty\":2.0,\"stop\":[\"a\",\"b\",\"c\",\"d\"],"
	"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":{\"type\":"
	"\"object\",\"properties\":{\"a\":{\"type\":\"string\"},\"b\":{\"type\":\"array\","
	"\"items\":{\"type\":\"integer\"}}},\"required\":[\"a\"]}}}],"
	"\"user\":\"u\",\"seed\":42,\"metadata\":{\"k\":[1,{\"x\":null},-0.5e-3,true]},"
	"\"logit_bias\":{\"50256\":-100},\"response_format\":{\"type\":\"json_object\"}}";

static const struct {
	enum outcome want;
	const char *body;
} chat_corpus[] = {
	{ FAST, common_body },
	{ FAST, full_body },
	{ FAST, " \t\r\n{ \"model\" : \"m\" , \"messages\" : [ { \"role\" : \"user\" , "
		"\"content\" : \"x\" } ] }\n" },
	{ FAST, "{\"messages\":[{\"content\":\"x\",\"role\":\"user\"}],\"model\":"
		"\"\xd0\xbc\xd0\xbe\xd0\xb4\"}" },
	{ FAST, CHAT(",\"stream\":null,\"stream_options\":null,\"max_tokens\":null,\"n\":null,"
		     "\"temperature\":null,\"stop\":null,\"tools\":null") },
	{ FAST, CHAT(",\"stream\":false,\"stream_options\":{}") },
	{ FAST, CHAT(",\"stream_options\":{\"include_usage\":false,\"x\":[{}]}") },
	{ FAST, CHAT(",\"max_tokens\":2147483647") },
	{ FAST, CHAT(",\"max_completion_tokens\":7") },
	{ FAST, CHAT(",\"max_tokens\":7,\"max_completion_tokens\":null") },
	{ FAST, CHAT(",\"max_completion_tokens\":9,\"max_tokens\":7") },
	{ FAST, CHAT(",\"n\":128,\"temperature\":2,\"top_p\":0,\"presence_penalty\":2") },
	{ FAST, CHAT(",\"temperature\":-0.0,\"top_p\":1e0,\"frequency_penalty\":-20e-1") },
	{ FAST, CHAT(",\"temperature\":0.2e1,\"top_p\":1E-400") },
	{ FAST, CHAT(",\"stop\":\"x\"") },
	{ FAST, CHAT(",\"stop\":[]") },
	{ FAST, CHAT(",\"tools\":[]") },
	{ FAST, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[]}]}" },
	{ FAST, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":"
		"\"t\\u0065xt\",\"text\":\"\\u00e9\"}]}]}" },
	{ FAST, CHAT(",\"metadata\":{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}") },
	{ FAST, CHAT(",\"x\":[{\"a\":1},{\"a\":1}]") },
	/* Valid, but left to jansson. */
	{ SLOW, "{\"mod\\u0065l\":\"m\"," MSG "}" },
	{ SLOW, "{\"model\":\"a\\/b\"," MSG "}" },
	{ SLOW, "{\"model\":\"m\",\"messages\":[{\"role\":\"us\\u0065r\",\"content\":\"x\"}]}" },
	{ SLOW, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
		"\"tool_calls\":[]}]}" },
	{ SLOW, "{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"function_call\":{}}]}" },
	{ SLOW, CHAT(",\"metadata\":{\"\\u0061\":1}") },
	/* Invalid JSON. */
	{ BAD, "" },
	{ BAD, " " },
	{ BAD, "{" },
	{ BAD, "[]" },
	{ BAD, "[" CHAT("") "]" },
	{ BAD, "\"x\"" },
	{ BAD, CHAT("") " x" },
	{ BAD, CHAT("") "{}" },
	{ BAD, CHAT(",") },
	{ BAD, CHAT(",\"a\"") },
	{ BAD, CHAT(",\"a\":") },
	{ BAD, CHAT(",\"a\":01") },
	{ BAD, CHAT(",\"a\":[1,]") },
	{ BAD, CHAT(",\"a\":tru") },
	{ BAD, CHAT(",\"a\":\"\xff\"") },
	{ BAD, CHAT(",\"a\":\"\xc0\x80\"") },
	{ BAD, CHAT(",\"a\":\"\xed\xa0\x80\"") },
	{ BAD, CHAT(",\"\xe2\x82\":1") },
	{ BAD, CHAT(",\"a\":\"\\u0000\"") },
	{ BAD, CHAT(",\"a\":\"\\ud800\"") },
	{ BAD, CHAT(",\"a\":\"tab\there\"") },
	{ BAD, CHAT(",\"a\":99999999999999999999") },
	{ BAD, CHAT(",\"a\":-9223372036854775809") },
	{ BAD, CHAT(",\"a\":1e400") },
	{ BAD, CHAT(",\"max_tokens\":9223372036854775808") },
	{ BAD, "\xef\xbb\xbf" CHAT("") },
	/* Repeated keys, at the top and further in. */
	{ BAD, "{\"model\":\"m\",\"model\":\"n\"," MSG "}" },
	{ BAD, "{\"model\":\"m\",\"mod\\u0065l\":\"n\"," MSG "}" },
	{ BAD, CHAT("," MSG) },
	{ BAD, CHAT(",\"stream\":true,\"stream\":false") },
	{ BAD, CHAT(",\"x\":1,\"x\":1") },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"role\":\"user\",\"content\":"
	       "\"x\"}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"t\","
	       "\"type\":\"t\"}]}]}" },
	{ BAD, CHAT(",\"metadata\":{\"a\":{\"b\":[{\"c\":1,\"c\":2}]}}") },
	{ BAD, CHAT(",\"stream_options\":{\"include_usage\":true,\"include_usage\":true}") },
	{ BAD, CHAT(",\"tools\":[{\"a\":1,\"b\":2,\"a\":3}]") },
	/* Each rule broken. */
	{ BAD, "{}" },
	{ BAD, "{" MSG "}" },
	{ BAD, "{\"model\":5," MSG "}" },
	{ BAD, "{\"model\":null," MSG "}" },
	{ BAD, "{\"model\":\"\"," MSG "}" },
	{ BAD, "{\"model\":\"m\"}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":{}}" },
	{ BAD, "{\"model\":\"m\",\"messages\":null}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[1]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"User\",\"content\":\"x\"}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":5,\"content\":\"x\"}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"content\":\"x\"}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\"}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":null}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":5}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":{}}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[1]}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{}]}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":5}]}]}" },
	{ BAD, "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},7]}" },
	{ BAD, CHAT(",\"stream\":\"yes\"") },
	{ BAD, CHAT(",\"stream\":1") },
	{ BAD, CHAT(",\"stream_options\":[]") },
	{ BAD, CHAT(",\"stream_options\":{\"include_usage\":null}") },
	{ BAD, CHAT(",\"stream_options\":{\"include_usage\":\"yes\"}") },
	{ BAD, CHAT(",\"max_tokens\":0") },
	{ BAD, CHAT(",\"max_tokens\":-1") },
	{ BAD, CHAT(",\"max_tokens\":1.0") },
	{ BAD, CHAT(",\"max_tokens\":1e2") },
	{ BAD, CHAT(",\"max_tokens\":\"5\"") },
	{ BAD, CHAT(",\"max_tokens\":2147483648") },
	{ BAD, CHAT(",\"max_tokens\":5,\"max_completion_tokens\":0") },
	{ BAD, CHAT(",\"n\":0") },
	{ BAD, CHAT(",\"n\":129") },
	{ BAD, CHAT(",\"n\":2.0") },
	{ BAD, CHAT(",\"temperature\":-0.1") },
	{ BAD, CHAT(",\"temperature\":2.0000000001") },
	{ BAD, CHAT(",\"temperature\":\"1\"") },
	{ BAD, CHAT(",\"top_p\":1.5") },
	{ BAD, CHAT(",\"presence_penalty\":-3") },
	{ BAD, CHAT(",\"frequency_penalty\":2.5") },
	{ BAD, CHAT(",\"stop\":5") },
	{ BAD, CHAT(",\"stop\":{}") },
	{ BAD, CHAT(",\"stop\":[1]") },
	{ BAD, CHAT(",\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]") },
	{ BAD, CHAT(",\"tools\":{}") },
	{ BAD, CHAT(",\"tools\":\"x\"") },
};

/* A body of n messages, or of a model of n bytes; malloc'd. */
static char *big_body(size_t messages, size_t model_len, size_t *len)
{
	size_t cap = 64 + messages * 40 + model_len;
	char *b = malloc(cap);
	ck_assert_ptr_nonnull(b);
	size_t n = (size_t)snprintf(b, cap, "{\"model\":\"");
	memset(b + n, 'm', model_len);
	n += model_len;
	n += (size_t)snprintf(b + n, cap - n, "\",\"messages\":[");
	for (size_t i = 0; i < messages; i++)
		n += (size_t)snprintf(b + n, cap - n, "%s{\"role\":\"user\",\"content\":\"x\"}",
				      i ? "," : "");
	n += (size_t)snprintf(b + n, cap - n, "]}");
	*len = n;
	return b;
}

/* A body with the metadata member nested depth arrays deep, or holding
 * an object of width members. */
static char *wide_deep_body(size_t depth, size_t width, size_t *len)
{
	size_t cap = 64 + sizeof(MSG) + 2 * depth + 16 * width;
	char *b = malloc(cap);
	ck_assert_ptr_nonnull(b);
	size_t n = (size_t)snprintf(b, cap, "{\"model\":\"m\"," MSG ",\"metadata\":");
	for (size_t i = 0; i < depth; i++)
		b[n++] = '[';
	b[n++] = '{';
	for (size_t i = 0; i < width; i++)
		n += (size_t)snprintf(b + n, cap - n, "%s\"k%zu\":%zu", i ? "," : "", i, i);
	b[n++] = '}';
	for (size_t i = 0; i < depth; i++)
		b[n++] = ']';
	b[n++] = '}';
	*len = n;
	return b;
}

START_TEST(chat_scan_corpus)
{
	for (size_t i = 0; i < sizeof(chat_corpus) / sizeof(chat_corpus[0]); i++) {
		const char *b = chat_corpus[i].body;
		int got = same_as_slow(b, strlen(b));
		ck_assert_msg(got == (int)chat_corpus[i].want, "case %zu: %d, want %d: %s", i, got,
			      (int)chat_corpus[i].want, b);
	}
	/* Bytes strlen would hide. */
	ck_assert_int_eq(same_as_slow(CHAT("") "\0", sizeof(CHAT("")) - 1 + 1), BAD);
	ck_assert_int_eq(same_as_slow(CHAT(",\"a\":\"x\0y\""), sizeof(CHAT(",\"a\":\"x\0y\"")) - 1),
			 BAD);
	/* Sizes at and past the limits. */
	static const struct {
		size_t messages, model_len;
		int want;
	} sizes[] = { { 10000, 1, FAST }, { 10001, 1, BAD }, { 1, 256, FAST }, { 1, 257, BAD } };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len;
		char *b = big_body(sizes[i].messages, sizes[i].model_len, &len);
		ck_assert_int_eq(same_as_slow(b, len), sizes[i].want);
		free(b);
	}
	/* Deeper or wider than the scan keeps track of: jansson decides. */
	static const struct {
		size_t depth, width;
		int want;
	} shapes[] = { { 50, 3, FAST }, { 100, 3, SLOW }, { 2100, 1, BAD },
		       { 0, 60, FAST }, { 0, 100, SLOW } };
	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
		size_t len;
		char *b = wide_deep_body(shapes[i].depth, shapes[i].width, &len);
		ck_assert_int_eq(same_as_slow(b, len), shapes[i].want);
		free(b);
	}
}
END_TEST

/* Candidate values per member, valid and broken; NULL ends a list. */
static const char *const member_values[][20] = {
	{ "model", "\"m\"", "\"openai/gpt-4o-mini\"", "\"\"", "5", "null", "\"a\\/b\"",
	  "\"\xc3\xa9\"", NULL },
	{ "messages", "[{\"role\":\"user\",\"content\":\"hi\"}]", "[]", "{}", "[1]", "[{}]",
	  "[{\"role\":\"wizard\",\"content\":\"x\"}]",
	  "[{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]}]",
	  "[{\"role\":\"assistant\"}]",
	  "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":"
	  "\"image_url\",\"image_url\":{\"url\":\"u\"}}]}]",
	  "[{\"role\":\"user\",\"content\":[{\"text\":\"a\"}]}]",
	  "[{\"role\":\"user\",\"content\":[]}]",
	  "[{\"role\":\"tool\",\"content\":\"r\"},{\"role\":\"developer\",\"content\":\"d\"}]",
	  "[{\"role\":\"user\",\"role\":\"user\",\"content\":\"x\"}]",
	  "[{\"content\":\"x\",\"role\":\"system\"},{\"role\":\"function\",\"content\":\"\"}]",
	  "[{\"role\":\"user\",\"content\":null}]", NULL },
	{ "stream", "true", "false", "null", "1", "\"true\"", NULL },
	{ "stream_options", "{\"include_usage\":true}", "{\"include_usage\":false}", "{}", "null",
	  "[]", "{\"include_usage\":null}", "{\"x\":{\"y\":[1,2]},\"include_usage\":true}", NULL },
	{ "max_tokens", "1", "100", "2147483647", "2147483648", "0", "-1", "1.0", "null",
	  "\"5\"", NULL },
	{ "max_completion_tokens", "1", "300", "0", "null", "1e3", NULL },
	{ "n", "1", "128", "129", "0", "2.0", "null", NULL },
	{ "temperature", "0", "2", "2.0", "0.7", "-0.0", "2.0000001", "-1", "null", "\"1\"",
	  "1E-3", "20e-1", "1e400", "0.30000000000000004", NULL },
	{ "top_p", "0", "1", "1.0", "0.5", "1.5", "null", NULL },
	{ "presence_penalty", "-2", "2", "-2.0", "2.5", "-2.0000000001", "0", NULL },
	{ "frequency_penalty", "-2e0", "1.5", "3", "null", NULL },
	{ "stop", "\"x\"", "[]", "[\"a\",\"b\",\"c\",\"d\"]", "[\"a\",\"b\",\"c\",\"d\",\"e\"]",
	  "[1]", "5", "null", "{}", NULL },
	{ "tools", "[]", "null", "{}", "\"x\"", "[{\"type\":\"function\",\"function\":{\"name\":"
	  "\"f\",\"parameters\":{\"type\":\"object\"}}}]", "[{\"a\":1,\"a\":2}]", NULL },
	{ "user", "\"u\"", "5", NULL },
	{ "metadata", "{\"k\":[1,{\"x\":null}],\"k2\":-0.5e-3}", "{\"\\u0061\":1}", "{}", NULL },
	{ "mod\\u0065l", "\"m\"", NULL },
};

/* Bodies put together from the members above, some repeated, some
 * missing, in random order. */
START_TEST(chat_scan_members)
{
	enum { N = sizeof(member_values) / sizeof(member_values[0]) };
	static char buf[8192];
	unsigned seed = 4242, fast = 0;
	for (int round = 0; round < 20000; round++) {
		unsigned order[N + 2];
		unsigned n = 0;
		for (unsigned i = 0; i < N; i++) {
			/* model and messages most of the time, the rest now and then */
			unsigned pct = i < 2 ? 95 : 25;
			if ((unsigned)rand_r(&seed) % 100 < pct)
				order[n++] = i;
		}
		if (n > 0 && rand_r(&seed) % 20 == 0) {
			order[n] = order[(unsigned)rand_r(&seed) % n];
			n++;
		}
		for (unsigned i = n; i > 1; i--) {
			unsigned j = (unsigned)rand_r(&seed) % i, t = order[i - 1];
			order[i - 1] = order[j];
			order[j] = t;
		}
		size_t len = 0;
		buf[len++] = '{';
		for (unsigned i = 0; i < n; i++) {
			const char *const *m = member_values[order[i]];
			unsigned nv = 0;
			while (m[1 + nv])
				nv++;
			/* the first value (a valid one) half the time */
			unsigned v = rand_r(&seed) % 2 ? 0 : (unsigned)rand_r(&seed) % nv;
			len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%s\"%s\":%s",
						i ? (rand_r(&seed) % 8 ? "," : " ,\n ") : "", m[0],
						m[1 + v]);
		}
		buf[len++] = '}';
		fast += same_as_slow(buf, len) == FAST;
	}
	/* Enough of them valid for the comparison to mean something. */
	ck_assert_uint_gt(fast, 1000);
}
END_TEST

/* Seeded mutations of valid bodies: flips, deletions, insertions, cuts. */
START_TEST(chat_scan_mutations)
{
	static const char ins[] = "{}[]\",:\\-+.0123456789eEtrufalsn \t\x80\xc3\xa9\xff";
	static char buf[4096];
	const char *seeds[] = {
		common_body, full_body,
		CHAT(",\"stream\":false,\"max_tokens\":100,\"temperature\":1.5,\"stop\":[\"a\"]"),
		"{\"model\":\"m\",\"messages\":[{\"role\":\"assistant\",\"content\":null,"
		"\"tool_calls\":[]}],\"n\":3}",
	};
	unsigned seed = 777, fast = 0;
	for (int round = 0; round < 40000; round++) {
		const char *src = seeds[round % 4];
		size_t n = strlen(src);
		memcpy(buf, src, n);
		n = gw_test_mutate(buf, n, sizeof(buf) - 1, ins, 4, 3, &seed);
		fast += same_as_slow(buf, n) == FAST;
	}
	ck_assert_uint_gt(fast, 1000);
}
END_TEST

/* The common body takes the scan: no tree until asked for. */
START_TEST(chat_fast_path_taken)
{
	size_t len = strlen(common_body);
	char *body = malloc(len);
	ck_assert_ptr_nonnull(body);
	memcpy(body, common_body, len);
	struct gw_chat chat;
	struct gw_error err;
	ck_assert_int_eq(gw_chat_parse(body, len, &chat, &err), 0);
	ck_assert_ptr_null(chat.root);
	ck_assert_str_eq(chat.model, "openai/gpt-4o-mini");
	ck_assert(!chat.stream && !chat.include_usage);
	ck_assert_int_eq(chat.max_tokens, -1);
	ck_assert_uint_eq(chat.n_messages, 1);
	/* The model is the chat's own copy, not a pointer into the body. */
	ck_assert(chat.model < body || chat.model >= body + len);

	/* Built on demand, once, from the body. */
	json_t *root = gw_chat_root(&chat);
	ck_assert_ptr_nonnull(root);
	ck_assert_ptr_eq(gw_chat_root(&chat), root);
	ck_assert_ptr_null(chat.src);
	ck_assert_str_eq(json_string_value(json_object_get(root, "model")), "openai/gpt-4o-mini");
	ck_assert_uint_eq(json_array_size(json_object_get(root, "messages")), 1);
	/* Now the body may go. */
	memset(body, 'x', len);
	free(body);
	ck_assert_str_eq(chat.model, "openai/gpt-4o-mini");
	ck_assert_ptr_eq(gw_chat_root(&chat), root);
	gw_chat_free(&chat);

	/* A body the scan is not sure of gets its tree at once. */
	const char *esc = "{\"model\":\"a\\/b\"," MSG "}";
	ck_assert_int_eq(gw_chat_parse(esc, strlen(esc), &chat, &err), 0);
	ck_assert_ptr_nonnull(chat.root);
	ck_assert_str_eq(chat.model, "a/b");
	gw_chat_free(&chat);
}
END_TEST

/* As the front does it: parse, hand the body over, resolve "default". */
START_TEST(chat_set_model_after_scan)
{
	const char *text = "{\"model\":\"default\",\"messages\":[{\"role\":\"user\",\"content\":"
			   "\"hi\"}],\"max_tokens\":9}";
	size_t len = strlen(text);
	char *body = malloc(len);
	ck_assert_ptr_nonnull(body);
	memcpy(body, text, len);
	struct gw_chat chat;
	struct gw_error err;
	ck_assert_int_eq(gw_chat_parse(body, len, &chat, &err), 0);
	chat.raw = body;
	chat.raw_len = len;
	ck_assert_ptr_null(chat.root);
	ck_assert_str_eq(chat.model, "default");
	ck_assert_int_eq(gw_chat_set_model(&chat, "openai/gpt-4o"), 0);
	ck_assert_ptr_null(chat.raw); /* freed: the tree is the request now */
	ck_assert_uint_eq(chat.raw_len, 0);
	ck_assert_str_eq(chat.model, "openai/gpt-4o");
	json_t *root = gw_chat_root(&chat);
	ck_assert_ptr_nonnull(root);
	ck_assert_ptr_eq(root, chat.root);
	ck_assert_str_eq(json_string_value(json_object_get(root, "model")), "openai/gpt-4o");
	ck_assert_int_eq(json_integer_value(json_object_get(root, "max_tokens")), 9);
	ck_assert_uint_eq(json_array_size(json_object_get(root, "messages")), 1);
	ck_assert_int_eq(chat.max_tokens, 9);
	gw_chat_free(&chat);
	ck_assert_ptr_null(chat.root);
	ck_assert_ptr_null(chat.model);

	/* With nothing to build the tree from, the accessor says so. */
	ck_assert_int_eq(gw_chat_parse(text, len, &chat, &err), 0);
	chat.src = NULL;
	ck_assert_ptr_null(gw_chat_root(&chat));
	ck_assert_int_eq(gw_chat_set_model(&chat, "x"), -ENOMEM);
	gw_chat_free(&chat);
}
END_TEST

START_TEST(error_shape)
{
	struct gw_error err;
	gw_error_set(&err, 429, "rate_limit_exceeded", "queue_full", NULL, "the %s queue is full",
		     "LOW");
	size_t len;
	char *body = gw_error_body(&err, &len);
	ck_assert_str_eq(body, "{\"error\":{\"message\":\"the LOW queue is full\",\"type\":"
			       "\"rate_limit_exceeded\",\"param\":null,\"code\":\"queue_full\"}}");
	ck_assert_uint_eq(len, strlen(body));
	free(body);
}
END_TEST

Suite *request_suite(void);
Suite *request_suite(void)
{
	Suite *s = suite_create("request");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, priority_header);
	tcase_add_test(tc, service_header);
	tcase_add_test(tc, deadline_and_request_id);
	tcase_add_test(tc, chat_valid);
	tcase_add_test(tc, chat_invalid);
	tcase_add_test(tc, error_shape);
	tcase_add_test(tc, chat_fast_path_taken);
	tcase_add_test(tc, chat_set_model_after_scan);
	suite_add_tcase(s, tc);
	TCase *scan = tcase_create("chat_scan");
	tcase_set_timeout(scan, 60);
	tcase_add_test(scan, chat_scan_corpus);
	tcase_add_test(scan, chat_scan_members);
	tcase_add_test(scan, chat_scan_mutations);
	suite_add_tcase(s, scan);
	return s;
}
