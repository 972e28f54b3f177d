/*
 * check_anthropic.c - the Anthropic dialect: golden request translations
 * (OpenAI request in, Messages request out) and golden answer
 * translations (Messages answer or Anthropic error in, chat.completion or
 * OpenAI error plus verdict out). Bodies are compared as parsed JSON so
 * key order and spacing do not matter.
 */
#include <check.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"
#include "request.h"

static struct gw_provider_conf conf(void)
{
	struct gw_provider_conf pc;
	memset(&pc, 0, sizeof(pc));
	pc.usable = true;
	pc.dialect = GW_DIALECT_ANTHROPIC;
	pc.url = (char *)"https://api.anthropic.test";
	pc.api_key = (char *)"sk-ant-test";
	pc.max_tokens_default = 4096;
	return pc;
}

/* Asserts that got and want hold equal JSON; prints both when not. */
static void json_same(const char *got, const char *want)
{
	json_error_t e;
	json_t *g = json_loads(got, 0, &e);
	ck_assert_msg(g != NULL, "got is not JSON (%s): %s", e.text, got);
	json_t *w = json_loads(want, 0, &e);
	ck_assert_msg(w != NULL, "want is not JSON (%s): %s", e.text, want);
	ck_assert_msg(json_equal(g, w), "JSON differs\n got: %s\nwant: %s", got, want);
	json_decref(g);
	json_decref(w);
}

/* Builds req for model "claude-up"; returns the build's result. */
static int build(const char *req, struct gw_upstream_req *out, struct gw_error *err)
{
	struct gw_provider_conf pc = conf();
	struct gw_chat chat;
	memset(out, 0, sizeof(*out));
	memset(err, 0, sizeof(*err));
	ck_assert_msg(gw_chat_parse(req, strlen(req), &chat, err) == 0, "request invalid: %s",
		      err->message);
	int rc = gw_anthropic_build(&pc, &chat, "claude-up", out, err);
	gw_chat_free(&chat);
	return rc;
}

/* Builds req and compares the upstream body with want. */
static void build_golden(const char *req, const char *want)
{
	struct gw_upstream_req out;
	struct gw_error err;
	int rc = build(req, &out, &err);
	ck_assert_msg(rc == 0, "build failed (%d): %s", rc, err.message);
	ck_assert_uint_eq(out.body_len, strlen(out.body));
	json_same(out.body, want);
	gw_upstream_req_free(&out);
}

/* Builds req, expects -EINVAL and a message containing what. */
static void build_refused(const char *req, const char *what)
{
	struct gw_upstream_req out;
	struct gw_error err;
	ck_assert_int_eq(build(req, &out, &err), -EINVAL);
	ck_assert_int_eq(err.status, 400);
	ck_assert_msg(strstr(err.message, what) != NULL, "message '%s' lacks '%s'", err.message,
		      what);
	ck_assert_ptr_null(out.body);
	ck_assert_ptr_null(out.url);
	ck_assert_uint_eq(out.n_headers, 0);
}

START_TEST(url_and_headers)
{
	struct gw_upstream_req out;
	struct gw_error err;
	ck_assert_int_eq(
		build("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}",
		      &out, &err),
		0);
	ck_assert_str_eq(out.url, "https://api.anthropic.test/v1/messages");
	ck_assert_uint_eq(out.n_headers, 0);
	struct gw_provider_conf pc = conf();
	ck_assert_int_eq(gw_provider_headers(&pc, GW_PROV_ANTHROPIC, &out), 0);
	ck_assert_uint_eq(out.n_headers, 3);
	ck_assert_str_eq(out.headers[0], "x-api-key: sk-ant-test");
	ck_assert_str_eq(out.headers[1], "anthropic-version: 2023-06-01");
	ck_assert_str_eq(out.headers[2], "content-type: application/json");
	for (size_t i = 0; i < out.n_headers; i++)
		ck_assert_ptr_null(strstr(out.headers[i], "Authorization"));
	json_same(out.body, "{\"model\":\"claude-up\",\"max_tokens\":4096,"
			    "\"messages\":[{\"role\":\"user\",\"content\":"
			    "[{\"type\":\"text\",\"text\":\"hi\"}]}]}");
	gw_upstream_req_free(&out);
}
END_TEST

START_TEST(system_and_developer_joined)
{
	build_golden("{\"model\":\"m\",\"messages\":["
		     "{\"role\":\"system\",\"content\":\"You are terse.\"},"
		     "{\"role\":\"developer\",\"content\":[{\"type\":\"text\",\"text\":\"Answer in "
		     "French.\"},{\"type\":\"text\",\"text\":\"No emoji.\"}]},"
		     "{\"role\":\"user\",\"content\":\"Hello\"},"
		     "{\"role\":\"system\",\"content\":\"Late rule.\"},"
		     "{\"role\":\"system\",\"content\":\"\"}]}",
		     "{\"model\":\"claude-up\",\"max_tokens\":4096,"
		     "\"system\":\"You are terse.\\n\\nAnswer in French.\\n\\nNo emoji.\\n\\nLate "
		     "rule.\","
		     "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":"
		     "\"Hello\"}]}]}");
	/* A system part that is not text cannot go into the system string. */
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":"
		      "[{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://x/a.png\"}}]},"
		      "{\"role\":\"user\",\"content\":\"hi\"}]}",
		      "only text parts");
}
END_TEST

START_TEST(multi_turn_merging)
{
	build_golden(
		"{\"model\":\"m\",\"messages\":["
		"{\"role\":\"user\",\"content\":\"one\"},"
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"two\"}]},"
		"{\"role\":\"assistant\",\"content\":\"three\"},"
		"{\"role\":\"system\",\"content\":\"sys\"},"
		"{\"role\":\"assistant\",\"content\":\"four\"},"
		"{\"role\":\"user\",\"content\":\"five\"},"
		"{\"role\":\"user\",\"content\":\"\"}]}",
		"{\"model\":\"claude-up\",\"max_tokens\":4096,\"system\":\"sys\",\"messages\":["
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"one\"},"
		"{\"type\":\"text\",\"text\":\"two\"}]},"
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"three\"},"
		"{\"type\":\"text\",\"text\":\"four\"}]},"
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"five\"}]}]}");
}
END_TEST

START_TEST(first_turn_must_be_user)
{
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"},"
		      "{\"role\":\"assistant\",\"content\":\"I start\"},"
		      "{\"role\":\"user\",\"content\":\"hi\"}]}",
		      "Anthropic needs the first non-system message to be from the user");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"system\",\"content\":\"s\"}]}",
		      "at least one non-empty user message");
}
END_TEST

START_TEST(tools_and_tool_choice)
{
	const char *tools =
		"\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_price\","
		"\"description\":\"Latest price\",\"parameters\":{\"type\":\"object\","
		"\"properties\":{\"symbol\":{\"type\":\"string\"}},\"required\":[\"symbol\"]},"
		"\"strict\":true}},"
		"{\"type\":\"function\",\"function\":{\"name\":\"now\"}}]";
	const char *atools = "\"tools\":[{\"name\":\"get_price\",\"description\":\"Latest price\","
			     "\"input_schema\":{\"type\":\"object\",\"properties\":{\"symbol\":"
			     "{\"type\":\"string\"}},\"required\":[\"symbol\"]}},"
			     "{\"name\":\"now\",\"input_schema\":{\"type\":\"object\"}}]";
	const char *msgs = "\"messages\":[{\"role\":\"user\",\"content\":\"AAPL?\"}]";
	const char *amsgs = "\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
			    "\"text\":\"AAPL?\"}]}]";
	static const struct {
		const char *choice; /* OpenAI tool_choice member, or "" */
		const char *want;   /* Anthropic tools and tool_choice members, or "" */
	} cases[] = {
		{ "", "T" },
		{ ",\"tool_choice\":\"auto\"", "T,\"tool_choice\":{\"type\":\"auto\"}" },
		{ ",\"tool_choice\":\"required\"", "T,\"tool_choice\":{\"type\":\"any\"}" },
		{ ",\"tool_choice\":\"none\"", "" },
		{ ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"now\"}}",
		  "T,\"tool_choice\":{\"type\":\"tool\",\"name\":\"now\"}" },
		{ ",\"parallel_tool_calls\":false",
		  "T,\"tool_choice\":{\"type\":\"auto\",\"disable_parallel_tool_use\":true}" },
		{ ",\"tool_choice\":\"required\",\"parallel_tool_calls\":false",
		  "T,\"tool_choice\":{\"type\":\"any\",\"disable_parallel_tool_use\":true}" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char req[2048], want[2048], members[1024] = "";
		snprintf(req, sizeof(req), "{\"model\":\"m\",%s,%s%s}", msgs, tools,
			 cases[i].choice);
		if (cases[i].want[0] == 'T')
			snprintf(members, sizeof(members), ",%s%s", atools, cases[i].want + 1);
		snprintf(want, sizeof(want), "{\"model\":\"claude-up\",\"max_tokens\":4096,%s%s}",
			 amsgs, members);
		build_golden(req, want);
	}
	/* tool_choice alone steers nothing: omitted. */
	build_golden(
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"AAPL?\"}],"
		"\"tool_choice\":\"auto\"}",
		"{\"model\":\"claude-up\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\","
		"\"content\":[{\"type\":\"text\",\"text\":\"AAPL?\"}]}]}");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
		      "\"tools\":[{\"type\":\"custom\",\"custom\":{\"name\":\"x\"}}]}",
		      "only function tools");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
		      "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"x\"}}],"
		      "\"tool_choice\":\"sometimes\"}",
		      "tool_choice must be");
}
END_TEST

START_TEST(tool_calls_and_results)
{
	build_golden(
		"{\"model\":\"m\",\"messages\":["
		"{\"role\":\"user\",\"content\":\"Prices of AAPL and MSFT?\"},"
		"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":["
		"{\"id\":\"toolu_1\",\"type\":\"function\",\"function\":{\"name\":\"get_price\","
		"\"arguments\":\"{\\\"symbol\\\":\\\"AAPL\\\"}\"}},"
		"{\"id\":\"toolu_2\",\"type\":\"function\",\"function\":{\"name\":\"get_price\","
		"\"arguments\":\"{\\\"symbol\\\":\\\"MSFT\\\"}\"}}]},"
		"{\"role\":\"tool\",\"tool_call_id\":\"toolu_1\",\"content\":\"189.5\"},"
		"{\"role\":\"tool\",\"tool_call_id\":\"toolu_2\",\"content\":[{\"type\":\"text\","
		"\"text\":\"402.1\"}]},"
		"{\"role\":\"user\",\"content\":\"Which is higher?\"},"
		"{\"role\":\"assistant\",\"content\":\"Checking.\",\"tool_calls\":["
		"{\"id\":\"toolu_3\",\"type\":\"function\",\"function\":{\"name\":\"now\","
		"\"arguments\":\"\"}}]},"
		"{\"role\":\"tool\",\"tool_call_id\":\"toolu_3\",\"content\":\"\"}]}",
		"{\"model\":\"claude-up\",\"max_tokens\":4096,\"messages\":["
		"{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Prices of AAPL and "
		"MSFT?\"}]},"
		"{\"role\":\"assistant\",\"content\":["
		"{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_price\",\"input\":"
		"{\"symbol\":\"AAPL\"}},"
		"{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"get_price\",\"input\":"
		"{\"symbol\":\"MSFT\"}}]},"
		"{\"role\":\"user\",\"content\":["
		"{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_1\",\"content\":\"189.5\"},"
		"{\"type\":\"tool_result\",\"tool_use_id\":\"toolu_2\",\"content\":"
		"[{\"type\":\"text\",\"text\":\"402.1\"}]},"
		"{\"type\":\"text\",\"text\":\"Which is higher?\"}]},"
		"{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":\"Checking.\"},"
		"{\"type\":\"tool_use\",\"id\":\"toolu_3\",\"name\":\"now\",\"input\":{}}]},"
		"{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
		"\"toolu_3\"}]}]}");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
		      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t\","
		      "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
		      "\"{not json\"}}]}]}",
		      "not a JSON object");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
		      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"t\","
		      "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":"
		      "\"[1,2]\"}}]}]}",
		      "not a JSON object");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
		      "{\"role\":\"tool\",\"content\":\"r\"}]}",
		      "tool_call_id");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
		      "{\"role\":\"assistant\",\"content\":null,\"function_call\":{\"name\":\"f\","
		      "\"arguments\":\"{}\"}}]}",
		      "function_call");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"},"
		      "{\"role\":\"function\",\"name\":\"f\",\"content\":\"r\"}]}",
		      "role 'function'");
}
END_TEST

START_TEST(image_parts)
{
	build_golden(
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
		"{\"type\":\"text\",\"text\":\"Compare\"},"
		"{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png;base64,iVBORw0K\","
		"\"detail\":\"high\"}},"
		"{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:IMAGE/JPEG;base64,/9j/"
		"4A\"}},"
		"{\"type\":\"image_url\",\"image_url\":{\"url\":\"https://example.com/"
		"chart.webp\"}}"
		"]}]}",
		"{\"model\":\"claude-up\",\"max_tokens\":4096,\"messages\":[{\"role\":\"user\","
		"\"content\":[{\"type\":\"text\",\"text\":\"Compare\"},"
		"{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/png\","
		"\"data\":\"iVBORw0K\"}},"
		"{\"type\":\"image\",\"source\":{\"type\":\"base64\",\"media_type\":\"image/jpeg\","
		"\"data\":\"/9j/4A\"}},"
		"{\"type\":\"image\",\"source\":{\"type\":\"url\",\"url\":"
		"\"https://example.com/chart.webp\"}}]}]}");
	build_refused(
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
		"{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/bmp;base64,Qk0\"}}"
		"]}]}",
		"image type 'image/bmp'");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
		      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/png,rawbytes\"}}"
		      "]}]}",
		      "base64 data URLs");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
		      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"ftp://x/y.png\"}}]}]}",
		      "http(s)");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
		      "{\"type\":\"input_audio\",\"input_audio\":{\"data\":\"AAA\",\"format\":"
		      "\"wav\"}}]}]}",
		      "content part type 'input_audio' is not supported");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":["
		      "{\"type\":\"file\",\"file\":{\"file_id\":\"f\"}}]}]}",
		      "messages[0].content[0]: content part type 'file'");
}
END_TEST

START_TEST(sampling_and_stops)
{
	build_golden(
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
		"\"max_tokens\":256,\"temperature\":1.7,\"top_p\":0.9,\"stop\":\"END\","
		"\"stream\":true,\"stream_options\":{\"include_usage\":true},"
		"\"user\":\"svc-42\",\"n\":1,\"seed\":7,\"presence_penalty\":0.5,"
		"\"frequency_penalty\":0.5,\"response_format\":{\"type\":\"json_object\"}}",
		"{\"model\":\"claude-up\",\"max_tokens\":256,\"temperature\":1.0,\"top_p\":0.9,"
		"\"stop_sequences\":[\"END\"],\"stream\":true,\"metadata\":{\"user_id\":"
		"\"svc-42\"},\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\","
		"\"text\":\"hi\"}]}]}");
	build_golden(
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
		"\"max_completion_tokens\":99,\"temperature\":0.2,\"stop\":[\"\\n\\n\",\"###\"],"
		"\"stream\":false}",
		"{\"model\":\"claude-up\",\"max_tokens\":99,\"temperature\":0.2,"
		"\"stop_sequences\":[\"\\n\\n\",\"###\"],\"messages\":[{\"role\":\"user\","
		"\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}");
	build_refused("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
		      "\"n\":2}",
		      "n > 1");
}
END_TEST

START_TEST(max_tokens_default)
{
	struct gw_provider_conf pc = conf();
	pc.max_tokens_default = 1234;
	struct gw_chat chat;
	struct gw_error err;
	struct gw_upstream_req out;
	const char *req = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	memset(&out, 0, sizeof(out));
	ck_assert_int_eq(gw_chat_parse(req, strlen(req), &chat, &err), 0);
	ck_assert_int_eq(gw_anthropic_build(&pc, &chat, "claude-up", &out, &err), 0);
	json_same(out.body,
		  "{\"model\":\"claude-up\",\"max_tokens\":1234,\"messages\":"
		  "[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"hi\"}]}]}");
	gw_upstream_req_free(&out);
	gw_chat_free(&chat);
}
END_TEST

/* Parses an answer; for OK the created field is checked and removed. */
static void parse(int status, const char *body, struct gw_up_result *r)
{
	gw_anthropic_parse(status, body, strlen(body), "claude-3.5-sonnet", r);
}

static void completion_golden(const struct gw_up_result *r, const char *want)
{
	ck_assert_int_eq(r->verdict, GW_VERDICT_OK);
	ck_assert_int_eq(r->status, 200);
	ck_assert_ptr_nonnull(r->body);
	ck_assert_uint_eq(r->body_len, strlen(r->body));
	json_t *g = json_loads(r->body, 0, NULL);
	ck_assert_ptr_nonnull(g);
	json_t *created = json_object_get(g, "created");
	ck_assert(json_is_integer(created));
	ck_assert_int_ge(json_integer_value(created), (json_int_t)gw_wall_s() - 5);
	json_object_del(g, "created");
	char *s = json_dumps(g, JSON_COMPACT);
	json_same(s, want);
	free(s);
	json_decref(g);
}

START_TEST(parse_text_answer)
{
	struct gw_up_result r;
	parse(200,
	      "{\"id\":\"msg_01XFD\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
	      "\"claude-3-5-sonnet-20241022\",\"content\":[{\"type\":\"text\",\"text\":\"Hello\"},"
	      "{\"type\":\"text\",\"text\":\", world\"}],\"stop_reason\":\"end_turn\","
	      "\"stop_sequence\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":6}}",
	      &r);
	completion_golden(&r, "{\"id\":\"msg_01XFD\",\"object\":\"chat.completion\",\"model\":"
			      "\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"message\":"
			      "{\"role\":\"assistant\",\"content\":\"Hello, world\"},"
			      "\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":12,"
			      "\"completion_tokens\":6,\"total_tokens\":18}}");
	ck_assert_int_eq(r.usage.prompt_tokens, 12);
	ck_assert_int_eq(r.usage.completion_tokens, 6);
	ck_assert(!r.usage.has_cost);
	gw_up_result_free(&r);
}
END_TEST

START_TEST(parse_tool_use_answer)
{
	struct gw_up_result r;
	parse(200,
	      "{\"id\":\"msg_2\",\"type\":\"message\",\"role\":\"assistant\",\"content\":["
	      "{\"type\":\"thinking\",\"thinking\":\"hmm\",\"signature\":\"s\"},"
	      "{\"type\":\"tool_use\",\"id\":\"toolu_9\",\"name\":\"get_price\",\"input\":"
	      "{\"symbol\":\"AAPL\",\"n\":2}}],"
	      "\"stop_reason\":\"tool_use\",\"usage\":{\"input_tokens\":50,"
	      "\"cache_read_input_tokens\":100,\"output_tokens\":20}}",
	      &r);
	completion_golden(&r, "{\"id\":\"msg_2\",\"object\":\"chat.completion\",\"model\":"
			      "\"claude-3.5-sonnet\",\"choices\":[{\"index\":0,\"message\":"
			      "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":"
			      "\"toolu_9\",\"type\":\"function\",\"function\":{\"name\":"
			      "\"get_price\",\"arguments\":\"{\\\"symbol\\\":\\\"AAPL\\\","
			      "\\\"n\\\":2}\"}}]},\"finish_reason\":\"tool_calls\"}],"
			      "\"usage\":{\"prompt_tokens\":150,\"completion_tokens\":20,"
			      "\"total_tokens\":170}}");
	gw_up_result_free(&r);
}
END_TEST

START_TEST(stop_reason_mapping)
{
	static const struct {
		const char *anthropic, *openai;
	} map[] = {
		{ "\"end_turn\"", "stop" },
		{ "\"stop_sequence\"", "stop" },
		{ "\"max_tokens\"", "length" },
		{ "\"tool_use\"", "tool_calls" },
		{ "\"pause_turn\"", "stop" },
		{ "\"something_new\"", "stop" },
		{ "null", "stop" },
		{ "\"refusal\"", "content_filter" },
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		char body[512];
		struct gw_up_result r;
		snprintf(body, sizeof(body),
			 "{\"id\":\"msg_3\",\"type\":\"message\",\"content\":[{\"type\":\"text\","
			 "\"text\":\"x\"}],\"stop_reason\":%s,\"usage\":{\"input_tokens\":1,"
			 "\"output_tokens\":1}}",
			 map[i].anthropic);
		parse(200, body, &r);
		ck_assert_int_eq(r.verdict, GW_VERDICT_OK);
		json_t *g = json_loads(r.body, 0, NULL);
		const char *fr = json_string_value(json_object_get(
			json_array_get(json_object_get(g, "choices"), 0), "finish_reason"));
		ck_assert_msg(fr && strcmp(fr, map[i].openai) == 0, "%s -> %s, want %s",
			      map[i].anthropic, fr ? fr : "(null)", map[i].openai);
		json_decref(g);
		gw_up_result_free(&r);
	}
}
END_TEST

START_TEST(retryable_errors)
{
	static const struct {
		int status;
		const char *body;
		const char *reason;
	} cases[] = {
		{ 529,
		  "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":"
		  "\"Overloaded\"}}",
		  "HTTP 529 (Overloaded)" },
		{ 429,
		  "{\"type\":\"error\",\"error\":{\"type\":\"rate_limit_error\",\"message\":"
		  "\"Number of request tokens has exceeded your per-minute rate limit\"}}",
		  "HTTP 429 (Number of request tokens has exceeded your per-minute rate limit)" },
		{ 401,
		  "{\"type\":\"error\",\"error\":{\"type\":\"authentication_error\",\"message\":"
		  "\"invalid x-api-key\"}}",
		  "HTTP 401 (invalid x-api-key)" },
		{ 500,
		  "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":"
		  "\"Internal server error\"}}",
		  "HTTP 500 (Internal server error)" },
		{ 502, "<html>Bad Gateway</html>", "HTTP 502" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct gw_up_result r;
		parse(cases[i].status, cases[i].body, &r);
		ck_assert_int_eq(r.verdict, GW_VERDICT_RETRY);
		ck_assert_int_eq(r.status, cases[i].status);
		ck_assert_str_eq(r.reason, cases[i].reason);
		gw_up_result_free(&r);
	}

	/* A long message is cut for the reason, never inside a character. */
	char body[512];
	char msg[121];
	for (int i = 0; i < 60; i++)
		memcpy(msg + 2 * i, "\xc3\xa9", 2); /* é: 120 bytes in all */
	msg[120] = '\0';
	snprintf(body, sizeof(body),
		 "{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"%s\"}}", msg);
	struct gw_up_result r;
	parse(503, body, &r);
	ck_assert_int_eq(r.verdict, GW_VERDICT_RETRY);
	json_t *valid = json_string(r.reason);
	ck_assert_msg(valid != NULL, "reason is not valid UTF-8: %s", r.reason);
	json_decref(valid);
	ck_assert_uint_eq(strlen(r.reason), strlen("HTTP 503 ()") + 100);
	gw_up_result_free(&r);
}
END_TEST

START_TEST(client_errors)
{
	struct gw_up_result r;
	parse(400,
	      "{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":"
	      "\"messages: roles must alternate\"}}",
	      &r);
	ck_assert_int_eq(r.verdict, GW_VERDICT_CLIENT_ERROR);
	ck_assert_int_eq(r.status, 400);
	ck_assert_str_eq(r.reason, "HTTP 400 (messages: roles must alternate)");
	ck_assert_uint_eq(r.body_len, strlen(r.body));
	json_same(r.body, "{\"error\":{\"message\":\"messages: roles must alternate\","
			  "\"type\":\"invalid_request_error\",\"param\":null,"
			  "\"code\":\"invalid_request_error\"}}");
	gw_up_result_free(&r);

	parse(413,
	      "{\"type\":\"error\",\"error\":{\"type\":\"request_too_large\",\"message\":"
	      "\"Request exceeds the maximum allowed number of bytes.\"}}",
	      &r);
	ck_assert_int_eq(r.verdict, GW_VERDICT_CLIENT_ERROR);
	ck_assert_int_eq(r.status, 413);
	json_same(r.body, "{\"error\":{\"message\":\"Request exceeds the maximum allowed number "
			  "of bytes.\",\"type\":\"invalid_request_error\",\"param\":null,"
			  "\"code\":\"request_too_large\"}}");
	gw_up_result_free(&r);

	/* Not Anthropic-shaped: the status says what it was. */
	parse(422, "unprocessable", &r);
	ck_assert_int_eq(r.verdict, GW_VERDICT_CLIENT_ERROR);
	json_same(r.body, "{\"error\":{\"message\":\"HTTP 422\",\"type\":"
			  "\"invalid_request_error\",\"param\":null,\"code\":null}}");
	gw_up_result_free(&r);
}
END_TEST

START_TEST(error_type_mapping)
{
	ck_assert_str_eq(gw_anthropic_error_type("invalid_request_error"), "invalid_request_error");
	ck_assert_str_eq(gw_anthropic_error_type("authentication_error"), "authentication_error");
	ck_assert_str_eq(gw_anthropic_error_type("permission_error"), "permission_error");
	ck_assert_str_eq(gw_anthropic_error_type("not_found_error"), "not_found_error");
	ck_assert_str_eq(gw_anthropic_error_type("rate_limit_error"), "rate_limit_exceeded");
	ck_assert_str_eq(gw_anthropic_error_type("overloaded_error"), "api_error");
	ck_assert_str_eq(gw_anthropic_error_type("api_error"), "api_error");
	ck_assert_str_eq(gw_anthropic_error_type(NULL), "api_error");
}
END_TEST

START_TEST(unparseable_success)
{
	const char *bodies[] = {
		"",
		"not json",
		"{}",
		"[1,2]",
		"{\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"x\"}}",
		"{\"type\":\"message\",\"content\":\"a string\"}",
		"{\"type\":\"message\",\"content\":[{\"type\":\"tool_use\",\"input\":{}}]}",
	};
	for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		struct gw_up_result r;
		parse(200, bodies[i], &r);
		ck_assert_msg(r.verdict == GW_VERDICT_RETRY, "body %zu not retried", i);
		ck_assert_str_eq(r.reason, "unparseable body");
		ck_assert_ptr_null(r.body);
		ck_assert_int_eq(r.usage.prompt_tokens, 0);
		gw_up_result_free(&r);
	}
}
END_TEST

START_TEST(dispatch_through_provider)
{
	struct gw_provider_conf pc = conf();
	struct gw_chat chat;
	struct gw_error err;
	struct gw_upstream_req out;
	const char *req = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
	ck_assert_int_eq(gw_chat_parse(req, strlen(req), &chat, &err), 0);
	ck_assert_int_eq(gw_provider_build(&pc, &chat, "c", &out, &err), 0);
	ck_assert_str_eq(out.url, "https://api.anthropic.test/v1/messages");
	gw_upstream_req_free(&out);
	gw_chat_free(&chat);
	struct gw_up_result r;
	const char *body = "{\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
			   "\"message\":\"Overloaded\"}}";
	gw_provider_parse(&pc, GW_PROV_ANTHROPIC, 529, body, strlen(body), "m", &r);
	ck_assert_int_eq(r.verdict, GW_VERDICT_RETRY);
	gw_up_result_free(&r);
}
END_TEST

Suite *anthropic_suite(void);
Suite *anthropic_suite(void)
{
	Suite *s = suite_create("anthropic");
	TCase *b = tcase_create("build");
	tcase_set_timeout(b, 10);
	tcase_add_test(b, url_and_headers);
	tcase_add_test(b, system_and_developer_joined);
	tcase_add_test(b, multi_turn_merging);
	tcase_add_test(b, first_turn_must_be_user);
	tcase_add_test(b, tools_and_tool_choice);
	tcase_add_test(b, tool_calls_and_results);
	tcase_add_test(b, image_parts);
	tcase_add_test(b, sampling_and_stops);
	tcase_add_test(b, max_tokens_default);
	suite_add_tcase(s, b);
	TCase *p = tcase_create("parse");
	tcase_set_timeout(p, 10);
	tcase_add_test(p, parse_text_answer);
	tcase_add_test(p, parse_tool_use_answer);
	tcase_add_test(p, stop_reason_mapping);
	tcase_add_test(p, retryable_errors);
	tcase_add_test(p, client_errors);
	tcase_add_test(p, error_type_mapping);
	tcase_add_test(p, unparseable_success);
	tcase_add_test(p, dispatch_through_provider);
	suite_add_tcase(s, p);
	return s;
}
