/*
 * check_beat.c - the table of loop beats the watchdog reads.
 */
#include <check.h>
#include <string.h>

#include "beat.h"

START_TEST(oldest_of_the_registered)
{
	const char *name = NULL;
	unsigned index = 99;
	int64_t age = -1;
	ck_assert(!gw_beat_oldest(1000, &name, &index, &age));

	struct gw_beat *w0 = gw_beat_register("worker", 0);
	struct gw_beat *w1 = gw_beat_register("worker", 1);
	struct gw_beat *s = gw_beat_register("scheduler", 0);
	ck_assert_ptr_nonnull(w0);
	ck_assert_ptr_nonnull(w1);
	ck_assert_ptr_nonnull(s);
	gw_beat_touch_at(w0, 5000);
	gw_beat_touch_at(w1, 2000);
	gw_beat_touch_at(s, 7000);
	ck_assert(gw_beat_oldest(9000, &name, &index, &age));
	ck_assert_str_eq(name, "worker");
	ck_assert_uint_eq(index, 1);
	ck_assert_int_eq(age, 7000);

	/* A beat moves a loop to the back; a stopped loop leaves the table. */
	gw_beat_touch_at(w1, 8000);
	ck_assert(gw_beat_oldest(9000, &name, &index, &age));
	ck_assert_uint_eq(index, 0);
	ck_assert_int_eq(age, 4000);
	gw_beat_unregister(w0);
	ck_assert(gw_beat_oldest(9000, &name, &index, &age));
	ck_assert_str_eq(name, "scheduler");
	ck_assert_int_eq(age, 2000);

	/* A beat stamped after "now" (another thread, a moment later) is age 0. */
	ck_assert(gw_beat_oldest(6000, &name, &index, &age));
	ck_assert_int_eq(age, 0);

	gw_beat_unregister(w1);
	gw_beat_unregister(s);
	ck_assert(!gw_beat_oldest(9000, &name, &index, &age));
}
END_TEST

START_TEST(a_full_table_gives_null_which_is_harmless)
{
	struct gw_beat *b[300];
	size_t n = 0;
	while (n < 300 && (b[n] = gw_beat_register("loop", (unsigned)n)))
		n++;
	ck_assert_uint_eq(n, 256);
	gw_beat_touch(NULL);
	gw_beat_touch_at(NULL, 1);
	gw_beat_unregister(NULL);
	/* A freed slot is taken again. */
	gw_beat_unregister(b[10]);
	ck_assert_ptr_nonnull(b[10] = gw_beat_register("loop", 10));
	for (size_t i = 0; i < n; i++)
		gw_beat_unregister(b[i]);
	const char *name;
	unsigned index;
	int64_t age;
	ck_assert(!gw_beat_oldest(0, &name, &index, &age));
}
END_TEST

Suite *beat_suite(void);
Suite *beat_suite(void)
{
	Suite *s = suite_create("beat");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, oldest_of_the_registered);
	tcase_add_test(tc, a_full_table_gives_null_which_is_harmless);
	suite_add_tcase(s, tc);
	return s;
}
