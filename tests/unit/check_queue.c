/*
 * check_queue.c - priority order, FIFO within a level, bounds, aging.
 */
#include <check.h>
#include <errno.h>

#include "queue.h"

static const unsigned bounds[GW_PRIO_COUNT] = { 4, 4, 4, 4 };

static int level_of_pop(struct gw_queue *q, struct gw_qnode **out)
{
	struct gw_qnode *n = gw_queue_peek(q);
	if (!n)
		return -1;
	int lv = n->level;
	gw_queue_remove(q, n);
	*out = n;
	return lv;
}

START_TEST(strict_priority_then_fifo)
{
	struct gw_queue q;
	struct gw_qnode n[6];
	gw_queue_init(&q, bounds, 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[0], GW_PRIO_LOW, 1), 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[1], GW_PRIO_LOW, 2), 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[2], GW_PRIO_HIGH, 3), 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[3], GW_PRIO_CRITICAL, 4), 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[4], GW_PRIO_HIGH, 5), 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[5], GW_PRIO_MEDIUM, 6), 0);
	struct gw_qnode *want[] = { &n[3], &n[2], &n[4], &n[5], &n[0], &n[1] };
	for (int i = 0; i < 6; i++) {
		struct gw_qnode *got;
		ck_assert_int_ge(level_of_pop(&q, &got), 0);
		ck_assert_ptr_eq(got, want[i]);
	}
	ck_assert_ptr_null(gw_queue_peek(&q));
	ck_assert_uint_eq(q.total, 0);
}
END_TEST

START_TEST(bound_per_level)
{
	struct gw_queue q;
	struct gw_qnode n[6];
	gw_queue_init(&q, bounds, 0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(gw_queue_push(&q, &n[i], GW_PRIO_LOW, i), 0);
	ck_assert_int_eq(gw_queue_push(&q, &n[4], GW_PRIO_LOW, 5), -ENOSPC);
	/* Another level still takes work. */
	ck_assert_int_eq(gw_queue_push(&q, &n[5], GW_PRIO_CRITICAL, 5), 0);
	ck_assert_uint_eq(q.lv[GW_PRIO_LOW].depth, 4);
	/* A retry goes first even when the level is full. */
	gw_queue_remove(&q, &n[0]);
	gw_queue_push(&q, &n[0], GW_PRIO_LOW, 7);
	gw_queue_remove(&q, &n[1]);
	gw_queue_push_front(&q, &n[1], GW_PRIO_LOW, 8);
	ck_assert_ptr_eq(q.lv[GW_PRIO_LOW].head, &n[1]);
}
END_TEST

START_TEST(aging_moves_one_level_per_interval)
{
	struct gw_queue q;
	struct gw_qnode low, crit;
	gw_queue_init(&q, bounds, 100); /* 100 ms */
	gw_queue_push(&q, &low, GW_PRIO_LOW, 0);
	ck_assert_int_eq(gw_queue_next_aging_us(&q), 100000);
	ck_assert_uint_eq(gw_queue_age(&q, 99999), 0);
	ck_assert_uint_eq(gw_queue_age(&q, 100000), 1);
	ck_assert_int_eq(low.level, GW_PRIO_MEDIUM);
	/* Only one level per call even when long overdue. */
	ck_assert_uint_eq(gw_queue_age(&q, 500000), 1);
	ck_assert_int_eq(low.level, GW_PRIO_HIGH);
	ck_assert_uint_eq(gw_queue_age(&q, 600000), 1);
	ck_assert_int_eq(low.level, GW_PRIO_CRITICAL);
	/* Aged work joins the tail: CRITICAL already there stays ahead. */
	gw_queue_init(&q, bounds, 100);
	gw_queue_push(&q, &crit, GW_PRIO_CRITICAL, 50);
	gw_queue_push(&q, &low, GW_PRIO_HIGH, 0);
	gw_queue_age(&q, 100000);
	ck_assert_ptr_eq(gw_queue_peek(&q), &crit);
	ck_assert_ptr_eq(gw_queue_next(&q, &crit), &low);
	ck_assert_int_eq(gw_queue_next_aging_us(&q), INT64_MAX);
}
END_TEST

START_TEST(low_never_starves_under_steady_high_load)
{
	/* One LOW job; HIGH arrives as fast as work is taken. */
	struct gw_queue q;
	struct gw_qnode low, high[64];
	const unsigned big[GW_PRIO_COUNT] = { 100, 100, 100, 100 };
	gw_queue_init(&q, big, 10);
	gw_queue_push(&q, &low, GW_PRIO_LOW, 0);
	int served_low_at = -1;
	for (int t = 0; t < 64; t++) {
		int64_t now = (int64_t)t * 1000; /* one job per ms */
		gw_queue_push(&q, &high[t], GW_PRIO_HIGH, now);
		gw_queue_age(&q, now);
		struct gw_qnode *n = gw_queue_peek(&q);
		gw_queue_remove(&q, n);
		if (n == &low) {
			served_low_at = t;
			break;
		}
	}
	ck_assert_int_ge(served_low_at, 0);
	ck_assert_int_le(served_low_at, 40);
}
END_TEST

START_TEST(oldest_age)
{
	struct gw_queue q;
	struct gw_qnode a, b;
	gw_queue_init(&q, bounds, 0);
	ck_assert_int_eq(gw_queue_oldest_us(&q, GW_PRIO_LOW, 10), 0);
	gw_queue_push(&q, &a, GW_PRIO_LOW, 10);
	gw_queue_push(&q, &b, GW_PRIO_LOW, 20);
	ck_assert_int_eq(gw_queue_oldest_us(&q, GW_PRIO_LOW, 110), 100);
}
END_TEST

Suite *queue_suite(void);
Suite *queue_suite(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("core");
	tcase_set_timeout(tc, 5);
	tcase_add_test(tc, strict_priority_then_fifo);
	tcase_add_test(tc, bound_per_level);
	tcase_add_test(tc, aging_moves_one_level_per_interval);
	tcase_add_test(tc, low_never_starves_under_steady_high_load);
	tcase_add_test(tc, oldest_age);
	suite_add_tcase(s, tc);
	return s;
}
