/*
 * queue.c - bounded per-priority FIFO queues with aging. See queue.h.
 */
#include "queue.h"

#include <errno.h>
#include <stddef.h>

void gw_queue_init(struct gw_queue *q, const unsigned max[GW_PRIO_COUNT], unsigned aging_ms)
{
	for (int i = 0; i < GW_PRIO_COUNT; i++) {
		q->lv[i].head = NULL;
		q->lv[i].tail = NULL;
		q->lv[i].depth = 0;
	}
	q->total = 0;
	gw_queue_configure(q, max, aging_ms);
}

void gw_queue_configure(struct gw_queue *q, const unsigned max[GW_PRIO_COUNT], unsigned aging_ms)
{
	for (int i = 0; i < GW_PRIO_COUNT; i++)
		q->lv[i].max = max[i];
	q->aging_us = (int64_t)aging_ms * 1000;
}

static void link_tail(struct gw_queue_level *l, struct gw_qnode *n)
{
	n->next = NULL;
	n->prev = l->tail;
	if (l->tail)
		l->tail->next = n;
	else
		l->head = n;
	l->tail = n;
	l->depth++;
}

int gw_queue_push(struct gw_queue *q, struct gw_qnode *n, enum gw_priority level, int64_t now_us)
{
	struct gw_queue_level *l = &q->lv[level];
	if (l->depth >= l->max)
		return -ENOSPC;
	link_tail(l, n);
	n->level = (int)level;
	n->level_since_us = now_us;
	q->total++;
	return 0;
}

void gw_queue_push_front(struct gw_queue *q, struct gw_qnode *n, enum gw_priority level,
			 int64_t now_us)
{
	struct gw_queue_level *l = &q->lv[level];
	n->prev = NULL;
	n->next = l->head;
	if (l->head)
		l->head->prev = n;
	else
		l->tail = n;
	l->head = n;
	l->depth++;
	n->level = (int)level;
	/* Keep it the oldest at its level so aging stays monotonic. */
	if (n->next && n->next->level_since_us < now_us)
		n->level_since_us = n->next->level_since_us;
	else
		n->level_since_us = now_us;
	q->total++;
}

struct gw_qnode *gw_queue_peek(const struct gw_queue *q)
{
	for (int i = 0; i < GW_PRIO_COUNT; i++)
		if (q->lv[i].head)
			return q->lv[i].head;
	return NULL;
}

struct gw_qnode *gw_queue_next(const struct gw_queue *q, const struct gw_qnode *n)
{
	if (n->next)
		return n->next;
	for (int i = n->level + 1; i < GW_PRIO_COUNT; i++)
		if (q->lv[i].head)
			return q->lv[i].head;
	return NULL;
}

void gw_queue_remove(struct gw_queue *q, struct gw_qnode *n)
{
	struct gw_queue_level *l = &q->lv[n->level];
	if (n->prev)
		n->prev->next = n->next;
	else
		l->head = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		l->tail = n->prev;
	l->depth--;
	q->total--;
	n->next = n->prev = NULL;
	n->level = -1;
}

unsigned gw_queue_age(struct gw_queue *q, int64_t now_us)
{
	unsigned moved = 0;
	if (q->aging_us <= 0)
		return 0;
	/* Top-down, so a node moves at most one level per call. */
	for (int i = 1; i < GW_PRIO_COUNT; i++) {
		struct gw_queue_level *l = &q->lv[i];
		while (l->head && now_us - l->head->level_since_us >= q->aging_us) {
			struct gw_qnode *n = l->head;
			gw_queue_remove(q, n);
			link_tail(&q->lv[i - 1], n);
			n->level = i - 1;
			n->level_since_us = now_us;
			q->total++;
			moved++;
		}
	}
	return moved;
}

int64_t gw_queue_next_aging_us(const struct gw_queue *q)
{
	int64_t next = INT64_MAX;
	if (q->aging_us <= 0)
		return next;
	for (int i = 1; i < GW_PRIO_COUNT; i++) {
		const struct gw_qnode *h = q->lv[i].head;
		if (h && h->level_since_us + q->aging_us < next)
			next = h->level_since_us + q->aging_us;
	}
	return next;
}

int64_t gw_queue_oldest_us(const struct gw_queue *q, enum gw_priority level, int64_t now_us)
{
	const struct gw_qnode *h = q->lv[level].head;
	return h ? now_us - h->level_since_us : 0;
}
