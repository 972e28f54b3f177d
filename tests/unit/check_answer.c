/*
 * check_answer.c - cache envelopes, a stream assembled into a completion
 * and a completion replayed as a stream, and async record parsing.
 */
#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "answer.h"
#include "async.h"
#include "mutate.h"

static const char completion[] =
	"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":7,\"model\":\"m\","
	"\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"Hello there\"},"
	"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2,"
	"\"total_tokens\":5}}";

START_TEST(envelope_round_trip)
{
	struct gw_usage u = { .prompt_tokens = 3, .completion_tokens = 2 };
	size_t len, clen;
	char *env = gw_answer_pack(completion, strlen(completion), &u, 1650000, &len);
	ck_assert_ptr_nonnull(env);
	char *back;
	struct gw_usage u2;
	gw_pusd cost;
	ck_assert_int_eq(gw_answer_unpack(env, len, &back, &clen, &u2, &cost), 0);
	ck_assert_int_eq(cost, 1650000);
	ck_assert_int_eq(u2.prompt_tokens, 3);
	ck_assert_int_eq(u2.completion_tokens, 2);
	json_t *a = json_loads(completion, 0, NULL), *b = json_loads(back, 0, NULL);
	ck_assert(json_equal(a, b));
	json_decref(a);
	json_decref(b);
	free(back);
	free(env);
	/* Not JSON, wrong version, negative cost: refused. */
	ck_assert_ptr_null(gw_answer_pack("nope", 4, &u, 0, &len));
	const char *bad[] = { "{}", "{\"v\":2,\"completion\":{},\"usage\":{\"prompt_tokens\":1,"
				    "\"completion_tokens\":1},\"cost_pusd\":0}",
			      "{\"v\":1,\"completion\":{},\"usage\":{\"prompt_tokens\":1,"
			      "\"completion_tokens\":1},\"cost_pusd\":-1}" };
	for (unsigned i = 0; i < 3; i++)
		ck_assert_int_eq(gw_answer_unpack(bad[i], strlen(bad[i]), &back, &clen, &u2, &cost),
				 -EINVAL);
}
END_TEST

/* The envelope reader as it was, on a jansson tree: the reference the
 * scanning reader must agree with. */
static int reference_unpack(const char *env, size_t len, char **out, struct gw_usage *u,
			    gw_pusd *cost)
{
	int rc = -EINVAL;
	json_int_t v = 0, pt = 0, ct = 0, pusd = 0;
	json_t *c = NULL;
	json_t *root = json_loadb(env, len, 0, NULL);
	if (!root || json_unpack(root, "{s:I, s:o, s:{s:I, s:I}, s:I}", "v", &v, "completion", &c,
				 "usage", "prompt_tokens", &pt, "completion_tokens", &ct,
				 "cost_pusd", &pusd) < 0)
		goto out;
	if (v != 1 || !json_is_object(c) || pt < 0 || ct < 0 || pusd < 0)
		goto out;
	*out = json_dumps(c, JSON_COMPACT);
	u->prompt_tokens = pt;
	u->completion_tokens = ct;
	*cost = pusd;
	rc = 0;
out:
	json_decref(root);
	return rc;
}

/* Both readers on one text: the same verdict, numbers and completion. */
static void unpack_agrees(const char *env, size_t len, bool same_bytes)
{
	char *got = NULL, *want = NULL;
	size_t glen = 0;
	struct gw_usage gu = { 0 }, wu = { 0 };
	gw_pusd gc = 0, wc = 0;
	int rc = gw_answer_unpack(env, len, &got, &glen, &gu, &gc);
	int ref = reference_unpack(env, len, &want, &wu, &wc);
	ck_assert_msg(rc == ref, "scan %d, jansson %d for [%.*s]", rc, ref, (int)len, env);
	if (rc == 0) {
		ck_assert_int_eq(gu.prompt_tokens, wu.prompt_tokens);
		ck_assert_int_eq(gu.completion_tokens, wu.completion_tokens);
		ck_assert_int_eq(gc, wc);
		if (same_bytes)
			ck_assert_str_eq(got, want);
		json_t *a = json_loads(got, 0, NULL), *b = json_loads(want, 0, NULL);
		ck_assert_msg(a && json_equal(a, b), "completions differ for [%.*s]", (int)len, env);
		json_decref(a);
		json_decref(b);
		ck_assert_uint_eq(glen, strlen(got));
	}
	free(got);
	free(want);
}

/* What gw_answer_pack writes reads back byte for byte; anything else is
 * read exactly as the jansson reader did, including seeded mutations. */
START_TEST(envelope_reader_matches_jansson)
{
	const char *completions[] = {
		completion,
		"{}",
		"{\"a\":\"\\u00e9\\n\\\"q\\\"\",\"b\":[1,2.5,-3e-7,true,null,{\"c\":{}}]}",
	};
	char *envs[3];
	size_t lens[3];
	for (int i = 0; i < 3; i++) {
		struct gw_usage u = { .prompt_tokens = i * 7, .completion_tokens = 11 };
		envs[i] = gw_answer_pack(completions[i], strlen(completions[i]), &u, 1000 + i, &lens[i]);
		ck_assert_ptr_nonnull(envs[i]);
		unpack_agrees(envs[i], lens[i], true);
	}
	const char *corpus[] = {
		"", "[]", "{}", "{\"v\":1}",
		"{\"v\":1,\"completion\":{},\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},\"cost_pusd\":3}",
		"{\"v\":1.0,\"completion\":{},\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},\"cost_pusd\":3}",
		"{\"v\":1,\"completion\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},\"cost_pusd\":3}",
		"{\"v\":1,\"completion\":{},\"usage\":{\"prompt_tokens\":1},\"cost_pusd\":3}",
		"{\"v\":1,\"completion\":{},\"usage\":[],\"cost_pusd\":3}",
		"{\"v\":1,\"completion\":{},\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},\"cost_pusd\":\"3\"}",
		"{\"v\":1,\"completion\":{\"x\":1},\"completion\":{\"y\":2},\"usage\":{\"prompt_tokens\":1,"
		"\"completion_tokens\":2},\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":6},\"cost_pusd\":3}",
		" { \"cost_pusd\" : 3 , \"usage\" : { \"completion_tokens\" : 2 , \"prompt_tokens\" : 1 } ,"
		" \"completion\" : { \"k\" : [ 1 , 2 ] } , \"v\" : 1 , \"extra\" : null } ",
		"{\"v\":1,\"completion\":{},\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":2},\"cost_pusd\":3}",
		"{\"v\":1,\"completion\":{},\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2},\"cost_pusd\":3}x",
	};
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
		unpack_agrees(corpus[i], strlen(corpus[i]), false);

	static const char ins[] = "{}[]\",:\\-+.0123456789eEtrufalsnv \t\x80\xc3\xa9";
	char buf[2048];
	unsigned seed = 4242;
	for (int round = 0; round < 20000; round++) {
		const char *src = envs[round % 3];
		size_t n = lens[round % 3];
		ck_assert_uint_lt(n, sizeof(buf) - 8);
		memcpy(buf, src, n);
		n = gw_test_mutate(buf, n, sizeof(buf) - 1, ins, 3, 2, &seed);
		unpack_agrees(buf, n, false);
	}
	for (int i = 0; i < 3; i++)
		free(envs[i]);
}
END_TEST

static char *content_of(const char *completion_json)
{
	json_t *r = json_loads(completion_json, 0, NULL);
	const char *c = json_string_value(json_object_get(
		json_object_get(json_array_get(json_object_get(r, "choices"), 0), "message"), "content"));
	char *out = c ? strdup(c) : NULL;
	json_decref(r);
	return out;
}

START_TEST(replay_then_assemble)
{
	size_t sl, cl;
	char *sse = gw_answer_to_sse(completion, strlen(completion), true, &sl);
	ck_assert_ptr_nonnull(sse);
	ck_assert_ptr_nonnull(strstr(sse, "\"role\":\"assistant\""));
	ck_assert_ptr_nonnull(strstr(sse, "\"usage\""));
	ck_assert(sl > 14 && strcmp(sse + sl - 14, "data: [DONE]\n\n") == 0);
	char *again = gw_answer_from_sse(sse, sl, &cl);
	ck_assert_ptr_nonnull(again);
	char *text = content_of(again);
	ck_assert_str_eq(text, "Hello there");
	json_t *r = json_loads(again, 0, NULL);
	ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(r, "usage"),
							   "completion_tokens")), 2);
	ck_assert_str_eq(json_string_value(json_object_get(
				 json_array_get(json_object_get(r, "choices"), 0), "finish_reason")),
			 "stop");
	json_decref(r);
	free(text);
	free(again);
	free(sse);
	/* Without include_usage there is no usage chunk. */
	sse = gw_answer_to_sse(completion, strlen(completion), false, &sl);
	ck_assert_ptr_null(strstr(sse, "\"usage\""));
	free(sse);
}
END_TEST

START_TEST(assemble_pieces_and_tool_calls)
{
	const char sse[] =
		"data: {\"id\":\"c\",\"created\":1,\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":"
		"{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"
		"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n"
		"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
		"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
		"\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}\n\n"
		"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
		"\"function\":{\"arguments\":\"{\\\"q\\\":1}\"}}]}}]}\n\n"
		"data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
		"data: [DONE]\n\n";
	size_t cl;
	char *c = gw_answer_from_sse(sse, strlen(sse), &cl);
	ck_assert_ptr_nonnull(c);
	json_t *r = json_loads(c, 0, NULL);
	json_t *msg = json_object_get(json_array_get(json_object_get(r, "choices"), 0), "message");
	ck_assert_str_eq(json_string_value(json_object_get(msg, "content")), "Hello");
	json_t *call = json_array_get(json_object_get(msg, "tool_calls"), 0);
	ck_assert_str_eq(json_string_value(json_object_get(call, "id")), "call_1");
	json_t *fn = json_object_get(call, "function");
	ck_assert_str_eq(json_string_value(json_object_get(fn, "name")), "f");
	ck_assert_str_eq(json_string_value(json_object_get(fn, "arguments")), "{\"q\":1}");
	json_decref(r);
	free(c);
	/* A stream without [DONE], or with an error event, is never assembled. */
	const char cut[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n";
	ck_assert_ptr_null(gw_answer_from_sse(cut, strlen(cut), &cl));
	const char err[] = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n"
			   "data: {\"error\":{\"message\":\"boom\"}}\n\ndata: [DONE]\n\n";
	ck_assert_ptr_null(gw_answer_from_sse(err, strlen(err), &cl));
}
END_TEST

START_TEST(async_ids_and_records)
{
	char id[GW_ASYNC_ID_MAX], id2[GW_ASYNC_ID_MAX];
	gw_async_new_id(id);
	gw_async_new_id(id2);
	ck_assert(gw_async_id_valid(id));
	ck_assert_str_ne(id, id2);
	ck_assert(!gw_async_id_valid("areq_XYZ"));
	ck_assert(!gw_async_id_valid("areq_../../../../../../../../../etc"));
	ck_assert(!gw_async_id_valid("req_00000000000000000000000000000000"));

	struct gw_async_record r;
	const char queued[] = "{\"v\":1,\"status\":\"queued\",\"service\":\"batch\",\"priority\":\"LOW\","
			      "\"request\":{\"model\":\"m\",\"messages\":[]}}";
	ck_assert_int_eq(gw_async_parse(queued, strlen(queued), &r), 0);
	ck_assert(!r.done);
	ck_assert_str_eq(r.service, "batch");
	ck_assert_int_eq(r.prio, GW_PRIO_LOW);
	ck_assert_str_eq(r.request, "{\"model\":\"m\",\"messages\":[]}");
	gw_async_record_free(&r);
	const char done[] = "{\"v\":1,\"status\":\"done\",\"http_status\":502,\"body\":\"{}\"}";
	ck_assert_int_eq(gw_async_parse(done, strlen(done), &r), 0);
	ck_assert(r.done);
	ck_assert_int_eq(r.http_status, 502);
	ck_assert_str_eq(r.body, "{}");
	gw_async_record_free(&r);
	ck_assert_int_eq(gw_async_parse("{\"status\":\"weird\"}", 18, &r), -EINVAL);
	ck_assert_int_eq(gw_async_parse("[", 1, &r), -EINVAL);
}
END_TEST

Suite *answer_suite(void);
Suite *answer_suite(void)
{
	Suite *s = suite_create("answer");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, envelope_round_trip);
	tcase_add_test(tc, envelope_reader_matches_jansson);
	tcase_add_test(tc, replay_then_assemble);
	tcase_add_test(tc, assemble_pieces_and_tool_calls);
	tcase_add_test(tc, async_ids_and_records);
	suite_add_tcase(s, tc);
	return s;
}
