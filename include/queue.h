/*
 * queue.h - the four bounded priority queues with aging.
 *
 * Strict order CRITICAL > HIGH > MEDIUM > LOW, FIFO within a level. A node
 * that has sat at one level for aging_us moves to the tail of the level
 * above, so LOW work waits under load but is never starved. Each level
 * has its own bound; a full level refuses new work for that level only.
 *
 * The queue stores intrusive nodes and never allocates. It is not locked:
 * the scheduler owns it and holds its lock around every call. Time is
 * passed in, so the arithmetic is testable without a clock.
 */
#ifndef GW_QUEUE_H
#define GW_QUEUE_H

#include "gw.h"

struct gw_qnode {
	struct gw_qnode *next;
	struct gw_qnode *prev;
	int level;               /* current level, -1 when not queued */
	int64_t level_since_us;  /* when it entered its current level */
};

struct gw_queue_level {
	struct gw_qnode *head;
	struct gw_qnode *tail;
	unsigned depth;
	unsigned max;
};

struct gw_queue {
	struct gw_queue_level lv[GW_PRIO_COUNT];
	int64_t aging_us;
	unsigned total;
};

void gw_queue_init(struct gw_queue *q, const unsigned max[GW_PRIO_COUNT], unsigned aging_ms);

/* Changes bounds and aging (reload); queued nodes stay. */
void gw_queue_configure(struct gw_queue *q, const unsigned max[GW_PRIO_COUNT], unsigned aging_ms);

/* Appends n at level; -ENOSPC when that level is full. */
int gw_queue_push(struct gw_queue *q, struct gw_qnode *n, enum gw_priority level, int64_t now_us);

/* Puts n first in level regardless of the bound (a retry of admitted work). */
void gw_queue_push_front(struct gw_queue *q, struct gw_qnode *n, enum gw_priority level,
			 int64_t now_us);

/* The node that runs next, or NULL. */
struct gw_qnode *gw_queue_peek(const struct gw_queue *q);

/* The node after n in run order (across levels), or NULL. */
struct gw_qnode *gw_queue_next(const struct gw_queue *q, const struct gw_qnode *n);

/* Unlinks a queued node. */
void gw_queue_remove(struct gw_queue *q, struct gw_qnode *n);

/* Moves every node that has waited aging_us at its level up one level.
 * Returns how many moves were made. */
unsigned gw_queue_age(struct gw_queue *q, int64_t now_us);

/* When the next aging move is due, or INT64_MAX when none can happen. */
int64_t gw_queue_next_aging_us(const struct gw_queue *q);

/* Age of the oldest node at level, in microseconds; 0 when empty. */
int64_t gw_queue_oldest_us(const struct gw_queue *q, enum gw_priority level, int64_t now_us);

#endif
