/*
 * limiter.c - GCRA token bucket, concurrency slots and cooldown. See
 * limiter.h.
 */
#include "limiter.h"

#include <errno.h>

void gw_limiter_configure(struct gw_limiter *l, unsigned rpm, unsigned burst,
			  unsigned concurrency, int64_t now_us)
{
	(void)now_us;
	l->rpm = rpm ? rpm : 1;
	l->burst = burst ? burst : 1;
	l->interval_us = INT64_C(60000000) / l->rpm;
	if (l->interval_us < 1)
		l->interval_us = 1;
	l->tolerance_us = (int64_t)(l->burst - 1) * l->interval_us;
	l->concurrency = concurrency ? concurrency : 1;
}

void gw_limiter_init(struct gw_limiter *l, unsigned rpm, unsigned burst, unsigned concurrency,
		     int64_t now_us)
{
	l->in_flight = 0;
	l->cooldown_until_us = 0;
	gw_limiter_configure(l, rpm, burst, concurrency, now_us);
	l->tat_us = now_us;
}

int gw_limiter_acquire(struct gw_limiter *l, int64_t now_us, int64_t *ready_us)
{
	if (now_us < l->cooldown_until_us) {
		*ready_us = l->cooldown_until_us;
		return -EBUSY;
	}
	if (l->in_flight >= l->concurrency) {
		*ready_us = INT64_MAX;
		return -EAGAIN;
	}
	int64_t allow_at = l->tat_us - l->tolerance_us;
	if (now_us < allow_at) {
		*ready_us = allow_at;
		return -EAGAIN;
	}
	l->tat_us = (l->tat_us > now_us ? l->tat_us : now_us) + l->interval_us;
	l->in_flight++;
	return 0;
}

void gw_limiter_release(struct gw_limiter *l)
{
	if (l->in_flight > 0)
		l->in_flight--;
}

void gw_limiter_cooldown(struct gw_limiter *l, int64_t until_us)
{
	if (until_us > l->cooldown_until_us)
		l->cooldown_until_us = until_us;
}

bool gw_limiter_cooling(const struct gw_limiter *l, int64_t now_us)
{
	return now_us < l->cooldown_until_us;
}

double gw_limiter_tokens(const struct gw_limiter *l, int64_t now_us)
{
	/* Tokens = how far tat lags behind the full-bucket point, in intervals. */
	int64_t debt = l->tat_us - now_us;
	if (debt < 0)
		debt = 0;
	double t = (double)l->burst - (double)debt / (double)l->interval_us;
	return t < 0 ? 0 : t;
}
