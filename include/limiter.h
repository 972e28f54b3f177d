/*
 * limiter.h - one provider's admission control: a token bucket for
 * requests per minute, concurrency slots, and a cooldown after a 429.
 *
 * The bucket is kept as a GCRA "theoretical arrival time": integer
 * microseconds, no floating-point drift. It refills at rpm/60 tokens a
 * second and holds at most burst tokens. Not locked: the scheduler holds
 * its lock around every call. Time is passed in.
 *
 * This is the in-process implementation; a shared (Redis) one for several
 * gateways would keep the same calls.
 */
#ifndef GW_LIMITER_H
#define GW_LIMITER_H

#include "gw.h"

struct gw_limiter {
	int64_t interval_us;       /* one token every interval_us */
	int64_t tolerance_us;      /* (burst - 1) * interval_us */
	int64_t tat_us;            /* theoretical arrival time */
	unsigned burst;
	unsigned rpm;
	unsigned in_flight;
	unsigned concurrency;
	int64_t cooldown_until_us; /* no new requests before this */
};

/* A full bucket at now_us. rpm, burst, concurrency >= 1. */
void gw_limiter_init(struct gw_limiter *l, unsigned rpm, unsigned burst, unsigned concurrency,
		     int64_t now_us);

/* New limits (reload); tokens and in-flight count carry over. */
void gw_limiter_configure(struct gw_limiter *l, unsigned rpm, unsigned burst,
			  unsigned concurrency, int64_t now_us);

/*
 * Takes one token and one slot. Returns 0 on success. Otherwise takes
 * nothing and returns -EBUSY in cooldown (*ready_us = its end), -EAGAIN
 * with *ready_us = when a token will be there, or -EAGAIN with
 * *ready_us = INT64_MAX when every slot is taken (a release frees one).
 */
int gw_limiter_acquire(struct gw_limiter *l, int64_t now_us, int64_t *ready_us);

/* Gives back a slot taken by gw_limiter_acquire. */
void gw_limiter_release(struct gw_limiter *l);

/* No new requests until until_us (extends, never shortens). */
void gw_limiter_cooldown(struct gw_limiter *l, int64_t until_us);

/* True while in cooldown. */
bool gw_limiter_cooling(const struct gw_limiter *l, int64_t now_us);

/* Tokens in the bucket now, for display. */
double gw_limiter_tokens(const struct gw_limiter *l, int64_t now_us);

#endif
