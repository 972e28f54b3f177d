/*
 * beat.h - liveness of the daemon's own event loops, for systemd's
 * watchdog.
 *
 * Each loop thread (the workers, the scheduler, the Redis client)
 * registers a beat, stamps it on every pass of its loop, and never sleeps
 * longer than GW_BEAT_INTERVAL_US between passes. A beat much older than
 * that interval means the loop is stuck, and the main loop then withholds
 * WATCHDOG=1 so that systemd restarts the daemon. HTTP front threads of
 * their own (http_threads > 0) have beats too.
 */
#ifndef GW_BEAT_H
#define GW_BEAT_H

#include <stdbool.h>
#include <stdint.h>

#define GW_BEAT_INTERVAL_US (INT64_C(1000) * 1000)
/* A loop silent for longer is stuck: /health says so at once, the
 * watchdog after half its interval when that is longer. */
#define GW_BEAT_STUCK_US (3 * GW_BEAT_INTERVAL_US)

struct gw_beat;

/* A beat for loop "name index", stamped now; NULL when the table (256
 * loops) is full, which gw_beat_touch and gw_beat_unregister accept. */
struct gw_beat *gw_beat_register(const char *name, unsigned index);
void gw_beat_unregister(struct gw_beat *b);

/* Stamps the beat with the time now, or with now_us. Any thread. */
void gw_beat_touch(struct gw_beat *b);
void gw_beat_touch_at(struct gw_beat *b, int64_t now_us);

/*
 * The registered loop that has gone longest without a beat: its name,
 * index and age at now_us. False when no loop is registered.
 */
bool gw_beat_oldest(int64_t now_us, const char **name, unsigned *index, int64_t *age_us);

#endif
