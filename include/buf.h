/*
 * buf.h - a growable byte buffer with a hard maximum size. Every buffer
 * that holds client or upstream bytes is one of these, so nothing grows
 * without bound.
 */
#ifndef GW_BUF_H
#define GW_BUF_H

#include <stddef.h>

struct gw_buf {
	char *data;     /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max;     /* len never exceeds this */
};

/* Initializes an empty buffer that may hold up to max bytes. */
void gw_buf_init(struct gw_buf *b, size_t max);

/* Appends; returns 0, -E2BIG past the maximum (nothing appended) or -ENOMEM. */
int gw_buf_append(struct gw_buf *b, const void *data, size_t len);

/* Appends formatted text with the same rules as gw_buf_append. */
int gw_buf_printf(struct gw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Hands the bytes to the caller (who frees them) and empties the buffer. */
char *gw_buf_steal(struct gw_buf *b, size_t *len);

/* Drops the first n bytes. */
void gw_buf_consume(struct gw_buf *b, size_t n);

/* Frees the bytes; the buffer may be reused after gw_buf_init. */
void gw_buf_free(struct gw_buf *b);

#endif
