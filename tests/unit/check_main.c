/*
 * check_main.c - the one runner of the Check unit suites. Fork mode is on
 * (each test in its own process, so setenv and crashes stay contained),
 * and each test case has a timeout.
 */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

Suite *queue_suite(void);
Suite *limiter_suite(void);
Suite *request_suite(void);
Suite *config_suite(void);
Suite *anthropic_suite(void);
Suite *sse_suite(void);
Suite *ledger_suite(void);
Suite *cache_suite(void);
Suite *answer_suite(void);
Suite *jscan_suite(void);
Suite *beat_suite(void);

int main(void)
{
	SRunner *sr = srunner_create(queue_suite());
	srunner_add_suite(sr, limiter_suite());
	srunner_add_suite(sr, request_suite());
	srunner_add_suite(sr, config_suite());
	srunner_add_suite(sr, anthropic_suite());
	srunner_add_suite(sr, sse_suite());
	srunner_add_suite(sr, ledger_suite());
	srunner_add_suite(sr, cache_suite());
	srunner_add_suite(sr, answer_suite());
	srunner_add_suite(sr, jscan_suite());
	srunner_add_suite(sr, beat_suite());
	srunner_run_all(sr, CK_NORMAL);
	int run = srunner_ntests_run(sr);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	printf("unit tests: %d passed, %d failed\n", run - failed, failed);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
