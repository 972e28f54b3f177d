/*
 * beat.c - the table of loop beats. See beat.h.
 */
#include "beat.h"

#include "gw.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>

#define BEATS_MAX 256

struct gw_beat {
	const char *name; /* NULL: a free slot */
	unsigned index;
	_Atomic int64_t at_us;
};

static pthread_mutex_t beats_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gw_beat beats[BEATS_MAX];

struct gw_beat *gw_beat_register(const char *name, unsigned index)
{
	struct gw_beat *b = NULL;
	pthread_mutex_lock(&beats_lock);
	for (size_t i = 0; i < BEATS_MAX && !b; i++) {
		if (!beats[i].name) {
			b = &beats[i];
			b->name = name;
			b->index = index;
			atomic_store_explicit(&b->at_us, gw_now_us(), memory_order_relaxed);
		}
	}
	pthread_mutex_unlock(&beats_lock);
	return b;
}

void gw_beat_unregister(struct gw_beat *b)
{
	if (!b)
		return;
	pthread_mutex_lock(&beats_lock);
	b->name = NULL;
	pthread_mutex_unlock(&beats_lock);
}

void gw_beat_touch_at(struct gw_beat *b, int64_t now_us)
{
	if (b)
		atomic_store_explicit(&b->at_us, now_us, memory_order_relaxed);
}

void gw_beat_touch(struct gw_beat *b)
{
	if (b)
		gw_beat_touch_at(b, gw_now_us());
}

bool gw_beat_oldest(int64_t now_us, const char **name, unsigned *index, int64_t *age_us)
{
	const struct gw_beat *oldest = NULL;
	int64_t oldest_at = 0;
	pthread_mutex_lock(&beats_lock);
	for (size_t i = 0; i < BEATS_MAX; i++) {
		if (!beats[i].name)
			continue;
		int64_t at = atomic_load_explicit(&beats[i].at_us, memory_order_relaxed);
		if (!oldest || at < oldest_at) {
			oldest = &beats[i];
			oldest_at = at;
		}
	}
	if (oldest) {
		*name = oldest->name;
		*index = oldest->index;
		*age_us = now_us > oldest_at ? now_us - oldest_at : 0;
	}
	pthread_mutex_unlock(&beats_lock);
	return oldest != NULL;
}
