/*
 * check_jscan.c - the answer scanner: what it reads, and that it accepts
 * exactly what jansson accepts (a corpus of edge cases, then seeded random
 * mutations of real answers, each compared with json_loadb); and that the
 * chat scan, given the same texts as a member's value, never accepts what
 * jansson rejects (check_request.c holds it to the chat rules).
 */
#include <check.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jscan.h"
#include "mutate.h"

/* What jansson makes of the same text, in the scanner's terms. */
static int reference(const char *text, size_t len, struct gw_jscan_answer *out)
{
	memset(out, 0, sizeof(*out));
	json_t *root = json_loadb(text, len, 0, NULL);
	if (!root)
		return -1;
	out->object = json_is_object(root);
	out->choices_array = json_is_array(json_object_get(root, "choices"));
	json_t *u = json_object_get(root, "usage");
	out->usage_object = json_is_object(u);
	struct {
		const char *name;
		struct gw_jscan_num *num;
	} f[] = { { "prompt_tokens", &out->prompt_tokens },
		  { "completion_tokens", &out->completion_tokens },
		  { "cost", &out->cost } };
	for (size_t i = 0; out->usage_object && i < sizeof(f) / sizeof(f[0]); i++) {
		json_t *v = json_object_get(u, f[i].name);
		if (!json_is_number(v))
			continue;
		f[i].num->present = true;
		f[i].num->integer = json_is_integer(v);
		f[i].num->i = json_is_integer(v) ? json_integer_value(v) : 0;
		f[i].num->d = json_number_value(v);
	}
	json_decref(root);
	return 0;
}

static bool num_eq(const struct gw_jscan_num *a, const struct gw_jscan_num *b)
{
	return a->present == b->present && a->integer == b->integer && a->i == b->i &&
	       (a->d == b->d || (a->d != a->d && b->d != b->d));
}

/*
 * The chat scan with text as the value of an unknown member, where any
 * value goes: when it says valid, jansson (rejecting repeated keys) must
 * load the whole body too.
 */
static void chat_no_looser(const char *text, size_t len)
{
	static const char head[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\","
				   "\"content\":\"x\"}],\"metadata\":";
	static char body[sizeof(head) + 4096];
	struct gw_jscan_chat c;
	if (len > sizeof(body) - sizeof(head))
		return;
	memcpy(body, head, sizeof(head) - 1);
	memcpy(body + sizeof(head) - 1, text, len);
	size_t n = sizeof(head) - 1 + len;
	body[n++] = '}';
	if (gw_jscan_chat(body, n, &c) < 0)
		return;
	json_t *root = json_loadb(body, n, JSON_REJECT_DUPLICATES, NULL);
	ck_assert_msg(root != NULL, "chat scan accepted [%.*s]", (int)n, body);
	json_decref(root);
}

/* Fails the test, showing the text, when scanner and jansson disagree. */
static void same_as_jansson(const char *text, size_t len)
{
	chat_no_looser(text, len);
	struct gw_jscan_answer got, want;
	int rc = gw_jscan_answer(text, len, &got);
	int ref = reference(text, len, &want);
	ck_assert_msg((rc == 0) == (ref == 0), "scan %d, jansson %d for [%.*s]", rc, ref, (int)len,
		      text);
	if (ref < 0)
		return;
	ck_assert_msg(got.object == want.object && got.choices_array == want.choices_array &&
			      got.usage_object == want.usage_object &&
			      num_eq(&got.prompt_tokens, &want.prompt_tokens) &&
			      num_eq(&got.completion_tokens, &want.completion_tokens) &&
			      num_eq(&got.cost, &want.cost),
		      "values differ for [%.*s]", (int)len, text);
}

static const char *const answer =
	"{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"created\":1733300000,"
	"\"model\":\"openai/gpt-4o-mini\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
	"\"assistant\",\"content\":\"Hi \\u00e9\\ud83d\\ude00 \xc3\xa9 \\\"there\\\"\"},"
	"\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":2,"
	"\"total_tokens\":12,\"cost\":2.7e-06,\"prompt_tokens_details\":{\"cached_tokens\":0}}}";

START_TEST(test_reads_usage)
{
	struct gw_jscan_answer a;
	ck_assert_int_eq(gw_jscan_answer(answer, strlen(answer), &a), 0);
	ck_assert(a.object && a.choices_array && a.usage_object);
	ck_assert(a.prompt_tokens.present && a.prompt_tokens.integer);
	ck_assert_int_eq(a.prompt_tokens.i, 10);
	ck_assert_int_eq(a.completion_tokens.i, 2);
	ck_assert(a.cost.present && !a.cost.integer);
	ck_assert_double_eq_tol(a.cost.d, 2.7e-06, 1e-15);
	same_as_jansson(answer, strlen(answer));
}
END_TEST

START_TEST(test_last_member_wins)
{
	const char *t = "{\"choices\":[],\"usage\":{\"prompt_tokens\":5},\"choices\":{},"
			"\"usage\":{\"completion_tokens\":7}}";
	struct gw_jscan_answer a;
	ck_assert_int_eq(gw_jscan_answer(t, strlen(t), &a), 0);
	ck_assert(!a.choices_array);
	ck_assert(!a.prompt_tokens.present);
	ck_assert_int_eq(a.completion_tokens.i, 7);
	same_as_jansson(t, strlen(t));
}
END_TEST

static const char *const corpus[] = {
	"", " ", "{}", "[]", " {} ", "{} x", "{}{}", "1", "\"s\"", "null", "true",
	"{\"a\":1,}", "{,}", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\" 1}", "{a:1}",
	"{\"a\":01}", "{\"a\":-0}", "{\"a\":-}", "{\"a\":1.}", "{\"a\":.5}", "{\"a\":1e}",
	"{\"a\":1e+}", "{\"a\":1E-5}", "{\"a\":-1.5e3}", "{\"a\":+1}", "{\"a\":0x10}",
	"{\"a\":9223372036854775807}", "{\"a\":9223372036854775808}",
	"{\"a\":-9223372036854775808}", "{\"a\":-9223372036854775809}",
	"{\"a\":99999999999999999999999999}", "{\"a\":1e308}", "{\"a\":1e309}", "{\"a\":-1e400}",
	"{\"a\":1e-400}", "{\"a\":tru}", "{\"a\":truex}", "{\"a\":nul}", "{\"a\":[true,false,null]}",
	"{\"a\":\"\\u0000\"}", "{\"a\\u0000\":1}", "{\"a\":\"\\ud800\"}", "{\"a\":\"\\udc00\"}",
	"{\"a\":\"\\ud800\\udc00\"}", "{\"a\":\"\\ud800\\u0041\"}", "{\"a\":\"\\uZZZZ\"}",
	"{\"a\":\"\\x\"}", "{\"a\":\"\\/\\b\\f\\n\\r\\t\"}", "{\"a\":\"tab\there\"}",
	"{\"a\":\"\xc0\x80\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xf4\x90\x80\x80\"}",
	"{\"a\":\"\xe2\x82\xac\"}", "{\"a\":\"\xf0\x9f\x98\x80\"}", "{\"a\":\"\xe2\x82\"}",
	"{\"a\":\"\x80\"}", "{\"a\":\"\xff\"}", "\xef\xbb\xbf{}", "{\"a\":\"unterminated}",
	"{\"usage\":{\"prompt_tokens\":-3,\"completion_tokens\":2.0,\"cost\":0}}",
	"{\"usage\":[1,2],\"choices\":\"x\"}", "{\"usage\":{\"cost\":\"0.1\"}}",
	"{\"us\\u0061ge\":{\"prompt_tokens\":1}}", "{\"usage\":{\"prompt_tokens\":{\"x\":1}}}",
	"{\"choices\":[{\"usage\":{\"prompt_tokens\":9}}]}",
	"\t\r\n{\"choices\" : [ ] , \"usage\" : { \"prompt_tokens\" : 4 } }\n",
};

START_TEST(test_corpus)
{
	for (size_t i = 0; i < sizeof(corpus) / sizeof(corpus[0]); i++)
		same_as_jansson(corpus[i], strlen(corpus[i]));
	/* An embedded NUL byte, which strlen would hide. */
	same_as_jansson("{\"a\":1}\0", 8);
	same_as_jansson("{\"a\":\"x\0y\"}", 11);
}
END_TEST

START_TEST(test_depth)
{
	static char t[2 * 2100 + 8];
	for (int depth = 2046; depth <= 2050; depth++) {
		size_t n = 0;
		for (int i = 0; i < depth; i++)
			t[n++] = '[';
		for (int i = 0; i < depth; i++)
			t[n++] = ']';
		same_as_jansson(t, n);
		n = 0;
		for (int i = 0; i < depth; i++)
			t[n++] = '[';
		t[n++] = '1';
		for (int i = 0; i < depth; i++)
			t[n++] = ']';
		same_as_jansson(t, n);
	}
}
END_TEST

/* Seeded mutations of real answers: flips, deletions, insertions, cuts. */
START_TEST(test_mutations)
{
	static const char ins[] = "{}[]\",:\\-+.0123456789eEtrufalsn \t\x80\xc3\xa9\xed\xf4\xff";
	char buf[1024];
	unsigned seed = 12345;
	const char *seeds[] = { answer, corpus[sizeof(corpus) / sizeof(corpus[0]) - 1],
				"{\"choices\":[],\"usage\":{\"prompt_tokens\":123,\"cost\":1.25e-3}}" };
	for (int round = 0; round < 30000; round++) {
		const char *src = seeds[round % 3];
		size_t n = strlen(src);
		memcpy(buf, src, n);
		n = gw_test_mutate(buf, n, sizeof(buf) - 1, ins, 4, 3, &seed);
		same_as_jansson(buf, n);
	}
}
END_TEST

Suite *jscan_suite(void);
Suite *jscan_suite(void)
{
	Suite *s = suite_create("jscan");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_reads_usage);
	tcase_add_test(tc, test_last_member_wins);
	tcase_add_test(tc, test_corpus);
	tcase_add_test(tc, test_depth);
	tcase_add_test(tc, test_mutations);
	suite_add_tcase(s, tc);
	return s;
}
