/*
 * check_limiter.c - token bucket arithmetic, slots, cooldown.
 */
#include <check.h>
#include <errno.h>

#include "limiter.h"

START_TEST(burst_then_rate)
{
	struct gw_limiter l;
	int64_t ready;
	/* 120 rpm = one token per 500 ms, burst 2, many slots. */
	gw_limiter_init(&l, 120, 2, 100, 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), -EAGAIN);
	ck_assert_int_eq(ready, 500000);
	ck_assert_int_eq(gw_limiter_acquire(&l, 499999, &ready), -EAGAIN);
	ck_assert_int_eq(gw_limiter_acquire(&l, 500000, &ready), 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 500000, &ready), -EAGAIN);
	ck_assert_int_eq(ready, 1000000);
}
END_TEST

START_TEST(window_never_exceeds_burst_plus_rate)
{
	/* Greedy client polling every 1 ms for 60 s at 60 rpm, burst 1:
	 * at most 1 + 60 starts in 60 s. */
	struct gw_limiter l;
	int64_t ready;
	gw_limiter_init(&l, 60, 1, 1000, 0);
	int starts = 0;
	for (int64_t t = 0; t < 60000000; t += 1000)
		if (gw_limiter_acquire(&l, t, &ready) == 0)
			starts++;
	ck_assert_int_eq(starts, 60);
	/* An idle bucket refills only up to burst. */
	gw_limiter_init(&l, 600, 5, 1000, 0);
	starts = 0;
	for (int i = 0; i < 20; i++)
		if (gw_limiter_acquire(&l, 3600000000LL, &ready) == 0)
			starts++;
	ck_assert_int_eq(starts, 5);
}
END_TEST

START_TEST(slots)
{
	struct gw_limiter l;
	int64_t ready;
	gw_limiter_init(&l, 6000, 100, 2, 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), -EAGAIN);
	ck_assert_int_eq(ready, INT64_MAX);
	/* No token was taken for the refused call. */
	ck_assert(gw_limiter_tokens(&l, 0) > 97.9 && gw_limiter_tokens(&l, 0) < 98.1);
	gw_limiter_release(&l);
	ck_assert_uint_eq(l.in_flight, 1);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), 0);
}
END_TEST

START_TEST(cooldown)
{
	struct gw_limiter l;
	int64_t ready;
	gw_limiter_init(&l, 60, 10, 10, 0);
	gw_limiter_cooldown(&l, 2000000);
	gw_limiter_cooldown(&l, 1000000); /* never shortens */
	ck_assert(gw_limiter_cooling(&l, 1999999));
	ck_assert_int_eq(gw_limiter_acquire(&l, 1000, &ready), -EBUSY);
	ck_assert_int_eq(ready, 2000000);
	ck_assert(!gw_limiter_cooling(&l, 2000000));
	ck_assert_int_eq(gw_limiter_acquire(&l, 2000000, &ready), 0);
}
END_TEST

START_TEST(reconfigure_keeps_in_flight)
{
	struct gw_limiter l;
	int64_t ready;
	gw_limiter_init(&l, 60, 1, 1, 0);
	ck_assert_int_eq(gw_limiter_acquire(&l, 0, &ready), 0);
	gw_limiter_configure(&l, 6000, 100, 3, 0);
	ck_assert_uint_eq(l.in_flight, 1);
	ck_assert_uint_eq(l.concurrency, 3);
	ck_assert_int_eq(l.interval_us, 10000);
}
END_TEST

Suite *limiter_suite(void);
Suite *limiter_suite(void)
{
	Suite *s = suite_create("limiter");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 10);
	tcase_add_test(tc, burst_then_rate);
	tcase_add_test(tc, window_never_exceeds_burst_plus_rate);
	tcase_add_test(tc, slots);
	tcase_add_test(tc, cooldown);
	tcase_add_test(tc, reconfigure_keeps_in_flight);
	suite_add_tcase(s, tc);
	return s;
}
