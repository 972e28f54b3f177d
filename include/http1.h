/*
 * http1.h - the HTTP/1.1 server under the front: sockets, parsing,
 * keep-alive, response writing, and requests parked while they wait.
 *
 * A few loops (gw_http1_opts.threads) each own their connections for
 * life; every callback for a request runs on its connection's loop, one
 * request per connection at a time (pipelined requests wait their turn).
 * Each loop runs on a thread of its own, or, with .external, inside a
 * thread of the caller's (gw_http1_fd, gw_http1_run): then a request
 * needs no hand-off between threads at all. A request that waits for
 * other work is parked: it costs nothing until gw_http1_resume, which any
 * thread may call, puts it back on its loop in O(1).
 *
 * What it speaks: HTTP/1.0 and 1.1, Content-Length and chunked request
 * bodies, Expect: 100-continue, keep-alive and pipelining, HEAD, and
 * Content-Length or chunked responses. It rejects what it cannot read
 * safely (both Content-Length and Transfer-Encoding, an unknown transfer
 * coding, folded or over-long headers) with an error body the front
 * formats, then closes the connection.
 */
#ifndef GW_HTTP1_H
#define GW_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

struct gw_http1;

/* One request. The handler reads these fields; the server owns them. */
struct gw_http1_req {
	const char *method;
	const char *path;  /* the target up to '?' */
	const char *query; /* after '?', or "" */
	bool head;         /* HEAD: the server sends the headers only */
	/* The body, once on_body runs; the handler may take it (set body to
	 * NULL). Bounded by max_body, which the handler sets in on_headers
	 * (0 by default: a request with a body is answered 413). */
	char *body;
	size_t body_len;
	size_t max_body;
	bool body_too_large; /* the body went over max_body and was dropped */
	void *user;          /* the handler's state for this request */
};

/* What a stream reader returns when the stream is over. */
#define GW_HTTP1_END ((ssize_t)-1)

/*
 * Pulls response bytes for a chunked response: up to max bytes into buf.
 * Returns how many, 0 when none are ready (the request is parked until
 * gw_http1_resume), or GW_HTTP1_END.
 */
typedef ssize_t (*gw_http1_reader)(struct gw_http1_req *r, char *buf, size_t max);

struct gw_http1_opts {
	const struct sockaddr *addr;
	socklen_t addr_len;
	unsigned threads;         /* loops */
	bool external;            /* no threads: the caller runs the loops */
	unsigned max_conns;       /* more are accepted and closed at once */
	unsigned idle_timeout_s;  /* a connection with no progress is closed */
	size_t max_header_bytes;  /* the request line and headers: over it, 431 */
	void *arg;                /* first argument of every callback */
	/* The request line and headers are read: answer now, or set max_body
	 * and let the body be read. */
	void (*on_headers)(void *arg, struct gw_http1_req *r);
	/* The body is read (or dropped: body_too_large). */
	void (*on_body)(void *arg, struct gw_http1_req *r);
	/* A parked request was resumed (also a resume the request no longer
	 * waited for: check, and park again if need be). */
	void (*on_resume)(void *arg, struct gw_http1_req *r);
	/* The request is over: answered and written, or its connection lost.
	 * Called once for every request on_headers saw. */
	void (*on_done)(void *arg, struct gw_http1_req *r);
	/* A request the server cannot read: the error body to send (malloc'd,
	 * JSON; the server frees it), for status 400, 413, 431, 500 (a handler
	 * that neither answered nor parked), 501 or 505. */
	char *(*error_body)(void *arg, unsigned status, const char *message, size_t *len);
	/* Runs on each loop pass of each thread of its own (the watchdog's
	 * beat); not with .external, whose caller has its own. */
	void (*on_pass)(void *arg, unsigned thread);
};

/* Binds, listens and starts the threads; NULL with errno on failure. */
struct gw_http1 *gw_http1_start(const struct gw_http1_opts *o);

/* With .external: loop's epoll descriptor, to watch for reading. */
int gw_http1_fd(struct gw_http1 *h, unsigned loop);

/*
 * With .external: runs what loop has ready without blocking (io: its
 * descriptor was readable) and the resumes queued from this thread. Always
 * called on the same thread for a loop. True when more resumes are queued
 * (run again before sleeping).
 */
bool gw_http1_run(struct gw_http1 *h, unsigned loop, bool io);

/* Stops accepting new connections; open ones are still served. */
void gw_http1_quiesce(struct gw_http1 *h);

/* Closes every connection (on_done for open requests), joins, frees. With
 * .external, only once the caller's loops no longer run. */
void gw_http1_stop(struct gw_http1 *h);

/* Request headers, by name (any case); NULL when absent. */
const char *gw_http1_header(const struct gw_http1_req *r, const char *name);

/* A query argument, %-decoded into buf; NULL when absent or too long. */
const char *gw_http1_arg(const struct gw_http1_req *r, const char *name, char *buf,
			 size_t size);

/*
 * The response, from a callback on the request's thread: headers first,
 * then one of respond or stream. respond takes body (free()d by the
 * server when owned, else it must outlive the request).
 */
void gw_http1_add_header(struct gw_http1_req *r, const char *name, const char *value);
void gw_http1_respond(struct gw_http1_req *r, unsigned status, char *body, size_t len,
		      bool owned);
void gw_http1_stream(struct gw_http1_req *r, unsigned status, gw_http1_reader reader);

/* From a callback: the request waits for gw_http1_resume once it returns. */
void gw_http1_park(struct gw_http1_req *r);

/* Any thread: queues on_resume (or the stream reader) on the request's
 * thread. The request must not be over (on_done not yet run). */
void gw_http1_resume(struct gw_http1_req *r);

#endif
