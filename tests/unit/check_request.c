/*
 * check_request.c - header semantics, chat body validation, error shape.
 */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	suite_add_tcase(s, tc);
	return s;
}
