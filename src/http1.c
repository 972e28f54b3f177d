/*
 * http1.c - the HTTP/1.1 server under the front. See http1.h.
 *
 * Each loop (a thread of its own, or run by a worker thread with
 * .external) has one epoll set holding the shared listening socket
 * (EPOLLEXCLUSIVE, so one thread wakes per connection), its own eventfd
 * for resumes, and its connections, registered once, edge-triggered, for
 * reading and writing: serving a request costs no epoll_ctl at all.
 *
 * A connection runs one request at a time through the steps of enum
 * conn_state, driven by advance() after every event:
 *
 *   CONN_HEAD     bytes are read until the blank line that ends the headers;
 *                 the request line and headers are split in place in the
 *                 input buffer (which does not move while the request lives)
 *   CONN_BODY     on_headers ran and set max_body (or answered: CONN_ANSWER;
 *                 or parked: CONN_HANDLER); the body's bytes are copied out
 *   CONN_HANDLER  on_body ran: the handler answers, or parks the request
 *                 until gw_http1_resume brings it back (on_resume)
 *   CONN_ANSWER   the answer is written (a stream pulls its reader to the
 *                 end) and the rest of a body nobody reads is dropped; then
 *                 on_done, and the input left over is the next request
 *   CONN_LINGER   after an answer that closes: shut for writing, what the
 *                 client still sends is drained for up to two seconds
 *
 * A parked connection is left alone: its socket events only note an
 * error, acted on when it is resumed, so a resume never finds it freed.
 * Connections are refcounted: one reference while open, one per queued
 * resume.
 */
#include "http1.h"

#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "gw.h"

#define HDRS_MAX 64
#define IN_INITIAL 2048
#define STREAM_CHUNK (16 * 1024)
/* How much of a body nobody will read is read and dropped to keep the
 * connection; past it the connection is closed after the answer. */
#define DISCARD_CAP (8u << 20)
#define ACCEPT_BATCH 64

/* A connection's step: reading this enum tells its whole life. */
enum conn_state {
	CONN_HEAD,    /* reading a request line and headers (also between requests) */
	CONN_BODY,    /* on_headers ran: reading the body the handler will get */
	CONN_HANDLER, /* the handler has the request: it answers, or parks it */
	CONN_ANSWER,  /* an answer is queued: writing it (pulling a stream), and
		       * dropping the rest of a body nobody reads */
	CONN_LINGER,  /* answered and shut for writing: input drained, then closed */
	CONN_CLOSED,  /* the memory goes with the last reference */
};

enum body_mode { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };
enum chunk_step { CH_SIZE, CH_DATA, CH_DATA_END, CH_TRAILER };

struct hdr {
	const char *name, *value;
	size_t name_len; /* lookups compare lengths before letters */
};

struct thread;

struct conn {
	struct gw_http1_req req; /* first: requests are cast back to conns */
	struct thread *t;
	int fd;
	atomic_int refs;
	atomic_bool queued;      /* in the thread's resume inbox */
	struct conn *inbox_next;
	struct conn *prev, *next; /* the thread's connections */
	int64_t last_us;          /* last progress, for the idle timeout */
	enum conn_state state;

	/* Input: the request head stays at in[0..head_len) while it lives. */
	char *in;
	size_t in_len, in_pos, in_cap, head_len;
	struct hdr hdrs[HDRS_MAX];
	unsigned nhdrs;
	bool http10, keep_alive, expect_continue, eof;
	/* The socket may hold unread bytes: false after a short read, true
	 * again on the next event (edge-triggered: new bytes bring one). This
	 * spares the read that would only say EAGAIN after each request. */
	bool readable;

	/* The request. */
	bool seen;         /* on_headers ran: on_done is owed */
	bool want_park;    /* the handler asked to park in this callback */
	bool parked;       /* waits for gw_http1_resume; socket events only noted */
	bool dead;         /* the socket failed while parked */
	bool close_after;  /* close once the answer is out */
	int64_t linger_until;
	enum body_mode bmode;
	bool body_done, discard;
	uint64_t body_left; /* Content-Length bytes, or the current chunk's */
	enum chunk_step ch;
	size_t body_cap, discarded;

	/* Output: head and framing in out, a body beside it. */
	char *out;
	size_t out_len, out_pos, out_cap;
	char *xhdr; /* headers added before the answer */
	size_t xhdr_len, xhdr_cap;
	const char *obody;
	size_t obody_len, obody_pos;
	bool obody_owned;
	gw_http1_reader reader;
	bool stream_chunked, stream_done;
	char *sbuf;
};

struct thread {
	struct gw_http1 *h;
	unsigned index;
	pthread_t th;
	bool started;
	int ep, efd;
	bool listening;
	int64_t relisten_us; /* after EMFILE: when to take connections again */
	pthread_mutex_t lock;
	struct conn *inbox;
	struct conn *local; /* resumed from this thread itself: no lock, no eventfd */
	int64_t next_sweep_us;
	struct conn *conns; /* every open connection of the thread */
	struct conn *graveyard; /* unreferenced, freed after the pass */
	int64_t date_s;
	char date[40];
};

struct gw_http1 {
	struct gw_http1_opts o;
	int lfd;
	atomic_bool stop;
	atomic_uint nconns;
	struct thread *t;
	unsigned nt;
};

static char listen_tag, wake_tag;
/* The loop the calling thread runs, if any. */
static __thread struct thread *current_loop;

/* ---- buffers ---- */

static int reserve(char **p, size_t *cap, size_t need)
{
	if (need <= *cap)
		return 0;
	size_t n = *cap ? *cap : 256;
	while (n < need)
		n *= 2;
	char *q = realloc(*p, n);
	if (!q)
		return -1;
	*p = q;
	*cap = n;
	return 0;
}

static int out_add(struct conn *c, const void *p, size_t n)
{
	if (reserve(&c->out, &c->out_cap, c->out_len + n) < 0)
		return -1;
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return 0;
}

/* "%zx\r\n" of a chunk's size. */
static int out_chunk_size(struct conn *c, size_t n)
{
	char tmp[2 * sizeof(size_t) + 2];
	size_t i = sizeof(tmp) - 2;
	tmp[i] = '\r';
	tmp[i + 1] = '\n';
	do {
		tmp[--i] = gw_hex_char((unsigned)n);
		n >>= 4;
	} while (n);
	return out_add(c, tmp + i, sizeof(tmp) - i);
}

/* ---- connection life ---- */

static void conn_ref(struct conn *c)
{
	atomic_fetch_add(&c->refs, 1);
}

/* The last reference was dropped: the memory goes at the end of the loop
 * pass, since events for it may still wait in the pass's batch. Only the
 * connection's own thread drops references. */
static void conn_unref(struct conn *c)
{
	if (atomic_fetch_sub(&c->refs, 1) != 1)
		return;
	c->inbox_next = c->t->graveyard;
	c->t->graveyard = c;
}

static void conn_free(struct conn *c)
{
	free(c->in);
	free(c->out);
	free(c->xhdr);
	free(c->sbuf);
	free(c->req.body);
	if (c->obody_owned)
		free((void *)c->obody);
	free(c);
}

/* Ends the request's handler side: on_done once, output freed. */
static void request_over(struct conn *c)
{
	struct gw_http1 *h = c->t->h;
	if (c->seen && h->o.on_done)
		h->o.on_done(h->o.arg, &c->req);
	c->seen = false;
	c->state = CONN_HEAD;
	free(c->req.body);
	if (c->obody_owned)
		free((void *)c->obody);
	memset(&c->req, 0, sizeof(c->req));
	c->obody = NULL;
	c->obody_owned = false;
	c->obody_len = c->obody_pos = 0;
	c->out_len = c->out_pos = 0;
	c->xhdr_len = 0;
	c->reader = NULL;
	c->stream_chunked = c->stream_done = false;
	c->want_park = c->parked = false;
	c->bmode = BODY_NONE;
	c->body_done = c->discard = false;
	c->body_left = 0;
	c->body_cap = c->discarded = 0;
	c->nhdrs = 0;
}

static void conn_close(struct conn *c)
{
	if (c->state == CONN_CLOSED)
		return;
	struct thread *t = c->t;
	request_over(c);
	c->state = CONN_CLOSED;
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		t->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	atomic_fetch_sub(&t->h->nconns, 1);
	conn_unref(c);
}

/* ---- output ---- */

static const char *reason(unsigned status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 415: return "Unsupported Media Type";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return status < 300 ? "OK" : status < 500 ? "Client Error" : "Server Error";
	}
}

static const char *date_now(struct thread *t)
{
	time_t s = time(NULL);
	if (s != t->date_s) {
		struct tm tm;
		gmtime_r(&s, &tm);
		strftime(t->date, sizeof(t->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		t->date_s = s;
	}
	return t->date;
}

/* An answer before the body was read: drop the body if that is cheap and
 * safe, else close once the answer is out. */
static void early_answer(struct conn *c)
{
	if (c->body_done)
		return;
	if (c->expect_continue || c->bmode == BODY_CHUNKED || c->body_left > DISCARD_CAP) {
		c->close_after = true;
		c->body_done = true;
	} else {
		c->discard = true;
	}
}

static void response_head(struct conn *c, unsigned status, const char *framing)
{
	early_answer(c);
	bool keep = c->keep_alive && !c->close_after;
	/* Assembled without printf: it runs once per answer. */
	char line[96];
	const char *why = reason(status);
	size_t wl = strlen(why);
	memcpy(line, "HTTP/1.1 ", 9);
	size_t n = 9 + gw_fmt_u64(line + 9, status);
	line[n++] = ' ';
	memcpy(line + n, why, wl);
	n += wl;
	memcpy(line + n, "\r\nDate: ", 8);
	n += 8;
	int rc = out_add(c, line, n);
	const char *date = date_now(c->t);
	if (rc == 0)
		rc = out_add(c, date, strlen(date));
	if (rc == 0)
		rc = out_add(c, "\r\n", 2);
	if (rc == 0 && c->xhdr_len)
		rc = out_add(c, c->xhdr, c->xhdr_len);
	if (rc == 0)
		rc = out_add(c, framing, strlen(framing));
	if (rc == 0 && !keep)
		rc = out_add(c, "Connection: close\r\n", 19);
	else if (rc == 0 && c->http10)
		rc = out_add(c, "Connection: keep-alive\r\n", 24);
	if (rc == 0)
		rc = out_add(c, "\r\n", 2);
	if (rc < 0) {
		/* Out of memory: no answer, the connection is dropped. */
		c->close_after = true;
		c->out_len = 0;
	}
	if (!keep)
		c->close_after = true;
	c->state = CONN_ANSWER;
}

void gw_http1_add_header(struct gw_http1_req *r, const char *name, const char *value)
{
	struct conn *c = (struct conn *)r;
	/* The span without CR, LF (or a colon in a name) is the length when it
	 * reaches the end: one call checks and measures. */
	size_t nl = strcspn(name, "\r\n:"), vl = strcspn(value, "\r\n");
	if (name[nl] || value[vl])
		return;
	if (reserve(&c->xhdr, &c->xhdr_cap, c->xhdr_len + nl + vl + 4) < 0)
		return;
	memcpy(c->xhdr + c->xhdr_len, name, nl);
	memcpy(c->xhdr + c->xhdr_len + nl, ": ", 2);
	memcpy(c->xhdr + c->xhdr_len + nl + 2, value, vl);
	memcpy(c->xhdr + c->xhdr_len + nl + 2 + vl, "\r\n", 2);
	c->xhdr_len += nl + vl + 4;
}

void gw_http1_respond(struct gw_http1_req *r, unsigned status, char *body, size_t len, bool owned)
{
	struct conn *c = (struct conn *)r;
	if (c->state >= CONN_ANSWER) {
		if (owned)
			free(body);
		return;
	}
	char framing[48];
	memcpy(framing, "Content-Length: ", 16);
	size_t fl = 16 + gw_fmt_u64(framing + 16, len);
	memcpy(framing + fl, "\r\n", 3);
	response_head(c, status, framing);
	if (r->head || c->out_len == 0) { /* HEAD, or no memory for the head */
		if (owned)
			free(body);
		return;
	}
	c->obody = body;
	c->obody_len = len;
	c->obody_owned = owned;
}

void gw_http1_stream(struct gw_http1_req *r, unsigned status, gw_http1_reader reader)
{
	struct conn *c = (struct conn *)r;
	if (c->state >= CONN_ANSWER)
		return;
	/* HTTP/1.0 has no chunks: the stream ends when the connection does. */
	c->stream_chunked = !c->http10;
	if (!c->stream_chunked)
		c->close_after = true;
	response_head(c, status, c->stream_chunked ? "Transfer-Encoding: chunked\r\n" : "");
	if (!(c->sbuf = c->sbuf ? c->sbuf : malloc(STREAM_CHUNK))) {
		c->close_after = true;
		c->stream_done = true;
		return;
	}
	c->reader = reader;
	c->stream_done = r->head;
}

void gw_http1_park(struct gw_http1_req *r)
{
	((struct conn *)r)->want_park = true;
}

void gw_http1_resume(struct gw_http1_req *r)
{
	struct conn *c = (struct conn *)r;
	struct thread *t = c->t;
	if (atomic_exchange(&c->queued, true))
		return;
	conn_ref(c);
	if (current_loop == t) {
		c->inbox_next = t->local;
		t->local = c;
		return;
	}
	pthread_mutex_lock(&t->lock);
	bool was_empty = t->inbox == NULL;
	c->inbox_next = t->inbox;
	t->inbox = c;
	pthread_mutex_unlock(&t->lock);
	uint64_t one = 1;
	if (was_empty && write(t->efd, &one, sizeof(one)) < 0) {
		/* A full counter still wakes the loop. */
	}
}

/* Sends what is pending. False when the socket is full or the connection
 * was closed. */
static bool flush(struct conn *c)
{
	while (c->out_pos < c->out_len || c->obody_pos < c->obody_len) {
		struct iovec iov[2];
		int n = 0;
		if (c->out_pos < c->out_len)
			iov[n++] = (struct iovec){ c->out + c->out_pos, c->out_len - c->out_pos };
		if (c->obody_pos < c->obody_len)
			iov[n++] = (struct iovec){ (char *)c->obody + c->obody_pos,
						   c->obody_len - c->obody_pos };
		struct msghdr mh = { .msg_iov = iov, .msg_iovlen = (size_t)n };
		ssize_t w = sendmsg(c->fd, &mh, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (w <= 0) {
			conn_close(c);
			return false;
		}
		c->last_us = gw_now_us();
		size_t k = (size_t)w, a = c->out_len - c->out_pos;
		if (k <= a) {
			c->out_pos += k;
		} else {
			c->out_pos = c->out_len;
			c->obody_pos += k - a;
		}
	}
	c->out_len = c->out_pos = 0;
	return true;
}

/* Pulls the stream reader once into out. False when it parked. */
static bool pull_stream(struct conn *c)
{
	ssize_t n = c->reader(&c->req, c->sbuf, STREAM_CHUNK);
	if (n == 0) {
		c->parked = true;
		return false;
	}
	if (n < 0) {
		c->stream_done = true;
		if (c->stream_chunked && out_add(c, "0\r\n\r\n", 5) < 0)
			c->close_after = true;
		return true;
	}
	if (c->stream_chunked) {
		if (out_chunk_size(c, (size_t)n) < 0 || out_add(c, c->sbuf, (size_t)n) < 0 ||
		    out_add(c, "\r\n", 2) < 0)
			conn_close(c);
	} else if (out_add(c, c->sbuf, (size_t)n) < 0) {
		conn_close(c);
	}
	return true;
}

/* ---- input ---- */

static void protocol_error(struct conn *c, unsigned status, const char *msg)
{
	struct gw_http1 *h = c->t->h;
	size_t len = 0;
	char *body = h->o.error_body ? h->o.error_body(h->o.arg, status, msg, &len) : NULL;
	c->body_done = true;
	c->close_after = true;
	c->xhdr_len = 0;
	gw_http1_add_header(&c->req, "Content-Type", "application/json");
	gw_http1_respond(&c->req, status, body, body ? len : 0, body != NULL);
}

/* RFC 9110 tchar: the letters of methods and header names. A switch, not
 * strchr over the delimiters: it runs for every byte of every name. */
static bool token_char(unsigned char ch)
{
	if (ch <= 32 || ch >= 127)
		return false;
	switch (ch) {
	case '"': case '(': case ')': case ',': case '/': case ':': case ';': case '<':
	case '=': case '>': case '?': case '@': case '[': case '\\': case ']': case '{':
	case '}':
		return false;
	default:
		return true;
	}
}

/* Splits the head in[0..end) in place; 0, or the status to refuse with. */
static unsigned parse_head(struct conn *c, size_t end, const char **msg)
{
	char *p = c->in, *stop = c->in + end;
	/* Lines end in CRLF or LF; each is cut with a NUL. */
	char *eol = memchr(p, '\n', (size_t)(stop - p));
	if (!eol)
		return (*msg = "malformed request line"), 400;
	*eol = '\0';
	if (eol > p && eol[-1] == '\r')
		eol[-1] = '\0';
	char *method = p, *sp1 = strchr(p, ' ');
	if (!sp1 || sp1 == p)
		return (*msg = "malformed request line"), 400;
	*sp1 = '\0';
	for (char *m = method; *m; m++)
		if (!token_char((unsigned char)*m))
			return (*msg = "malformed request method"), 400;
	char *target = sp1 + 1, *sp2 = strchr(target, ' ');
	if (!sp2 || *target != '/')
		return (*msg = "malformed request target"), 400;
	*sp2 = '\0';
	const char *version = sp2 + 1;
	if (strcmp(version, "HTTP/1.1") == 0)
		c->http10 = false;
	else if (strcmp(version, "HTTP/1.0") == 0)
		c->http10 = true;
	else if (strncmp(version, "HTTP/", 5) == 0)
		return (*msg = "only HTTP/1.0 and HTTP/1.1 are served"), 505;
	else
		return (*msg = "malformed request line"), 400;
	for (char *q = target; *q; q++)
		if ((unsigned char)*q <= 32 || *q == 127)
			return (*msg = "malformed request target"), 400;
	char *qm = strchr(target, '?');
	c->req.query = "";
	if (qm) {
		*qm = '\0';
		c->req.query = qm + 1;
	}
	c->req.method = method;
	c->req.path = target;
	c->req.head = strcmp(method, "HEAD") == 0;

	c->nhdrs = 0;
	bool have_len = false, chunked = false, te = false, conn_close_tok = false,
	     conn_keep = false;
	uint64_t clen = 0;
	c->expect_continue = false;
	for (p = eol + 1; p < stop;) {
		eol = memchr(p, '\n', (size_t)(stop - p));
		if (!eol)
			break;
		*eol = '\0';
		if (eol > p && eol[-1] == '\r')
			eol[-1] = '\0';
		char *line = p;
		p = eol + 1;
		if (!*line)
			break; /* the blank line */
		if (*line == ' ' || *line == '\t')
			return (*msg = "folded header lines are not accepted"), 400;
		char *colon = strchr(line, ':');
		if (!colon || colon == line)
			return (*msg = "malformed header line"), 400;
		*colon = '\0';
		for (char *n = line; *n; n++)
			if (!token_char((unsigned char)*n))
				return (*msg = "malformed header name"), 400;
		char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		char *ve = v + strlen(v);
		while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
			*--ve = '\0';
		if (c->nhdrs == HDRS_MAX)
			return (*msg = "too many header lines"), 431;
		size_t nl = (size_t)(colon - line);
		c->hdrs[c->nhdrs++] = (struct hdr){ line, v, nl };
		/* The four names that shape the request differ in length. */
		if (nl == 14 && strcasecmp(line, "Content-Length") == 0) {
			char *e;
			if (!*v || *v < '0' || *v > '9')
				return (*msg = "Content-Length is not a number"), 400;
			errno = 0;
			unsigned long long n = strtoull(v, &e, 10);
			if (errno || *e)
				return (*msg = "Content-Length is not a number"), 400;
			if (have_len && n != clen)
				return (*msg = "conflicting Content-Length headers"), 400;
			have_len = true;
			clen = n;
		} else if (nl == 17 && strcasecmp(line, "Transfer-Encoding") == 0) {
			te = true;
			chunked = strcasecmp(v, "chunked") == 0;
			if (!chunked)
				return (*msg = "only the chunked transfer coding is accepted"), 501;
		} else if (nl == 10 && strcasecmp(line, "Connection") == 0) {
			conn_close_tok = conn_close_tok || strcasestr(v, "close") != NULL;
			conn_keep = conn_keep || strcasestr(v, "keep-alive") != NULL;
		} else if (nl == 6 && strcasecmp(line, "Expect") == 0) {
			c->expect_continue = strcasecmp(v, "100-continue") == 0;
		}
	}
	if (te && have_len)
		return (*msg = "both Content-Length and Transfer-Encoding were sent"), 400;
	c->keep_alive = c->http10 ? conn_keep && !conn_close_tok : !conn_close_tok;
	c->bmode = chunked ? BODY_CHUNKED : clen > 0 ? BODY_LENGTH : BODY_NONE;
	c->body_left = clen;
	c->ch = CH_SIZE;
	c->body_done = c->bmode == BODY_NONE;
	if (c->http10 && c->expect_continue)
		c->expect_continue = false;
	return 0;
}

/* Where the request head ends (just past the blank line), or 0. */
static size_t head_end(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

static int body_add(struct conn *c, const char *p, size_t n)
{
	struct gw_http1_req *r = &c->req;
	if (c->discard || r->body_too_large) {
		c->discarded += n;
		return c->discarded > DISCARD_CAP ? -1 : 0;
	}
	if (r->body_len + n > r->max_body) {
		r->body_too_large = true;
		free(r->body);
		r->body = NULL;
		c->discarded = r->body_len + n;
		r->body_len = 0;
		return c->discarded > DISCARD_CAP ? -1 : 0;
	}
	if (reserve(&r->body, &c->body_cap, r->body_len + n + 1) < 0)
		return -1;
	memcpy(r->body + r->body_len, p, n);
	r->body_len += n;
	r->body[r->body_len] = '\0';
	return 0;
}

/* Consumes body bytes from in[in_pos..in_len). -1: give up on the body. */
static int body_step(struct conn *c)
{
	while (!c->body_done && c->in_pos < c->in_len) {
		char *p = c->in + c->in_pos;
		size_t avail = c->in_len - c->in_pos;
		if (c->bmode == BODY_LENGTH || c->ch == CH_DATA) {
			size_t k = avail < c->body_left ? avail : (size_t)c->body_left;
			if (body_add(c, p, k) < 0)
				return -1;
			c->in_pos += k;
			c->body_left -= k;
			if (c->body_left == 0) {
				if (c->bmode == BODY_LENGTH)
					c->body_done = true;
				else
					c->ch = CH_DATA_END;
			}
			continue;
		}
		char *nl = memchr(p, '\n', avail);
		if (!nl)
			return avail > 1024 ? -1 : 0; /* a chunk line that long is no chunk line */
		size_t line = (size_t)(nl - p) + 1;
		if (c->ch == CH_SIZE) {
			char *e;
			if (!isxdigit((unsigned char)*p))
				return -1;
			errno = 0;
			unsigned long long n = strtoull(p, &e, 16);
			if (e == p || errno || (*e != ';' && *e != '\r' && *e != '\n'))
				return -1;
			c->body_left = n;
			c->ch = n ? CH_DATA : CH_TRAILER;
		} else if (c->ch == CH_DATA_END) {
			if (line > 2 || (line == 2 && *p != '\r'))
				return -1;
			c->ch = CH_SIZE;
		} else if (line == 1 || (line == 2 && *p == '\r')) { /* CH_TRAILER */
			c->body_done = true;
		}
		c->in_pos += line;
	}
	/* Keep the unread tail right after the head, so reads find room. */
	if (c->in_pos > c->head_len) {
		size_t rest = c->in_len - c->in_pos;
		memmove(c->in + c->head_len, c->in + c->in_pos, rest);
		c->in_pos = c->head_len;
		c->in_len = c->head_len + rest;
	}
	return 0;
}

static void after_callback(struct conn *c)
{
	if (c->want_park && c->state < CONN_ANSWER)
		c->parked = true;
	c->want_park = false;
}

/* Reads once. 1: got bytes; 0: nothing now (or no room); -1: closed. */
static int read_some(struct conn *c)
{
	if (c->in_len == c->in_cap) {
		/* The buffer moves only while no request points into it; a head
		 * that fills it is over max_header_bytes and refused before. */
		if (c->state != CONN_HEAD || c->in_cap >= c->t->h->o.max_header_bytes + IN_INITIAL)
			return 0;
		if (reserve(&c->in, &c->in_cap, c->in_cap ? c->in_cap * 2 : IN_INITIAL) < 0) {
			conn_close(c);
			return -1;
		}
	}
	if (!c->readable)
		return 0;
	size_t room = c->in_cap - c->in_len;
	ssize_t n = read(c->fd, c->in + c->in_len, room);
	if (n > 0) {
		c->in_len += (size_t)n;
		c->last_us = gw_now_us();
		c->readable = (size_t)n == room;
		return 1;
	}
	if (n < 0 && errno == EINTR)
		return 1;
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		return 0;
	}
	/* End of input: a request not read whole is lost; one the handler has
	 * gets its answer out, then the connection closes. */
	c->eof = true;
	if (c->state == CONN_HEAD || c->state == CONN_BODY) {
		conn_close(c);
		return -1;
	}
	c->body_done = true;
	c->close_after = true;
	return 0;
}

/* Starts the next request from the input. True when something happened. */
static bool start_request(struct conn *c)
{
	struct gw_http1 *h = c->t->h;
	/* Blank lines before a request line are allowed, and skipped. */
	size_t skip = 0;
	while (skip < c->in_len && (c->in[skip] == '\r' || c->in[skip] == '\n'))
		skip++;
	if (skip) {
		memmove(c->in, c->in + skip, c->in_len - skip);
		c->in_len -= skip;
	}
	size_t end = head_end(c->in, c->in_len);
	if (!end) {
		if (c->in_len >= h->o.max_header_bytes) {
			protocol_error(c, 431, "the request line and headers are over the size limit");
			return true;
		}
		return false;
	}
	if (end > h->o.max_header_bytes) {
		protocol_error(c, 431, "the request line and headers are over the size limit");
		return true;
	}
	/* Room for body bytes after the head, before pointers into it exist. */
	if (reserve(&c->in, &c->in_cap, end + IN_INITIAL) < 0) {
		conn_close(c);
		return true;
	}
	const char *msg = NULL;
	unsigned st = parse_head(c, end, &msg);
	c->head_len = c->in_pos = end;
	if (st) {
		protocol_error(c, st, msg);
		return true;
	}
	c->state = CONN_BODY;
	c->seen = true;
	h->o.on_headers(h->o.arg, &c->req);
	after_callback(c);
	if (c->parked && c->state == CONN_BODY)
		c->state = CONN_HANDLER; /* the body waits until the handler answers */
	if (c->state != CONN_BODY)
		return true;
	if (c->bmode == BODY_LENGTH && c->body_left > c->req.max_body) {
		/* Over the bound before a byte is read: answer at once. */
		c->req.body_too_large = true;
		if (c->expect_continue || c->body_left > DISCARD_CAP) {
			c->close_after = true;
			c->body_done = true;
		} else {
			c->discard = true;
		}
	}
	if (!c->body_done && c->expect_continue && !c->req.body_too_large &&
	    out_add(c, "HTTP/1.1 100 Continue\r\n\r\n", 25) < 0)
		conn_close(c);
	return true;
}

/* Closes after an answer the client may still be sending a body to: the
 * write side first, then what still comes in is read and dropped for up
 * to two seconds, so that the client reads the answer rather than a reset. */
static void linger(struct conn *c)
{
	if (c->eof) {
		conn_close(c);
		return;
	}
	shutdown(c->fd, SHUT_WR);
	c->state = CONN_LINGER;
	c->linger_until = gw_now_us() + 2000000;
}

/* Drops what a lingering connection still receives. False: wait. */
static bool drain(struct conn *c)
{
	char sink[4096];
	ssize_t n = read(c->fd, sink, sizeof(sink));
	if (n > 0 || (n < 0 && errno == EINTR))
		return true;
	if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
		conn_close(c);
	return false;
}

/* The answer is written: on_done, then the next request or the close. */
static void finish_request(struct conn *c)
{
	bool close_now = c->close_after;
	request_over(c);
	if (close_now) {
		linger(c);
		return;
	}
	size_t rest = c->in_len - c->in_pos;
	memmove(c->in, c->in + c->in_pos, rest);
	c->in_len = rest;
	c->in_pos = c->head_len = 0;
}

/* Body bytes in the buffer, for the handler (CONN_BODY) or dropped
 * (CONN_ANSWER). True when something happened. */
static bool read_body(struct conn *c)
{
	struct gw_http1 *h = c->t->h;
	size_t before = c->in_pos;
	if (body_step(c) < 0) {
		if (c->state == CONN_BODY && !c->req.body_too_large) {
			protocol_error(c, 400, "malformed chunked body");
			return true;
		}
		c->close_after = true;
		c->body_done = true;
	}
	if (c->body_done && c->state == CONN_BODY) {
		c->state = CONN_HANDLER;
		h->o.on_body(h->o.arg, &c->req);
		after_callback(c);
		return true;
	}
	return c->body_done || c->in_pos != before;
}

/* Runs the connection until it waits for the socket or for a resume. */
static void advance(struct conn *c)
{
	conn_ref(c);
	while (c->state != CONN_CLOSED && !c->parked) {
		if ((c->out_pos < c->out_len || c->obody_pos < c->obody_len) && !flush(c))
			break;
		bool progress;
		switch (c->state) {
		case CONN_LINGER:
			progress = drain(c);
			if (!progress)
				goto out;
			continue;
		case CONN_ANSWER:
			if (c->reader && !c->stream_done) {
				if (!pull_stream(c))
					goto out;
				continue;
			}
			if (c->body_done) {
				finish_request(c);
				continue;
			}
			progress = read_body(c);
			break;
		case CONN_HANDLER:
			/* Neither answered nor parked: a bug, not a hang. */
			protocol_error(c, 500, "the request was not answered");
			continue;
		case CONN_BODY:
			progress = read_body(c);
			break;
		case CONN_HEAD:
			progress = start_request(c);
			break;
		default:
			goto out;
		}
		if (!progress && read_some(c) <= 0)
			break;
	}
out:
	conn_unref(c);
}

static void on_conn_event(struct conn *c, uint32_t ev)
{
	if (c->state == CONN_CLOSED)
		return;
	if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if (c->parked) {
		if (ev & (EPOLLERR | EPOLLHUP))
			c->dead = true;
		return;
	}
	if (ev & EPOLLERR) {
		conn_close(c);
		return;
	}
	advance(c);
}

static void on_resume(struct conn *c)
{
	struct gw_http1 *h = c->t->h;
	if (c->state == CONN_CLOSED || !c->parked)
		return;
	c->parked = false;
	c->last_us = gw_now_us();
	if (c->dead) {
		conn_close(c);
		return;
	}
	if (c->state == CONN_HANDLER) {
		h->o.on_resume(h->o.arg, &c->req);
		after_callback(c);
	}
	advance(c);
}

/* ---- threads ---- */

static void accept_some(struct thread *t)
{
	struct gw_http1 *h = t->h;
	for (int i = 0; i < ACCEPT_BATCH; i++) {
		int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* Out of descriptors: stop taking connections for a while
				 * rather than spin on a listener that stays readable. */
				epoll_ctl(t->ep, EPOLL_CTL_DEL, h->lfd, NULL);
				t->listening = false;
				t->relisten_us = gw_now_us() + 100000;
			} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
				/* Quiesced (the listener was shut down). */
				epoll_ctl(t->ep, EPOLL_CTL_DEL, h->lfd, NULL);
				t->listening = false;
				t->relisten_us = INT64_MAX;
			}
			return;
		}
		struct conn *c = atomic_fetch_add(&h->nconns, 1) < h->o.max_conns
					 ? calloc(1, sizeof(*c))
					 : NULL;
		if (!c) {
			atomic_fetch_sub(&h->nconns, 1);
			close(fd);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c->t = t;
		c->fd = fd;
		c->readable = true;
		atomic_init(&c->refs, 1);
		atomic_init(&c->queued, false);
		c->last_us = gw_now_us();
		c->next = t->conns;
		if (t->conns)
			t->conns->prev = c;
		t->conns = c;
		struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
					  .data.ptr = c };
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev) < 0)
			conn_close(c);
	}
}

static void run_resumes(struct conn *c)
{
	while (c) {
		struct conn *next = c->inbox_next;
		atomic_store(&c->queued, false);
		on_resume(c);
		conn_unref(c);
		c = next;
	}
}

static void take_resumes(struct thread *t)
{
	uint64_t v;
	if (read(t->efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: another pass took them */
	}
	pthread_mutex_lock(&t->lock);
	struct conn *c = t->inbox;
	t->inbox = NULL;
	pthread_mutex_unlock(&t->lock);
	run_resumes(c);
}

/* Closes connections with no progress for idle_timeout_s (not parked). */
static void sweep_idle(struct thread *t, int64_t now)
{
	int64_t limit = t->h->o.idle_timeout_s ? (int64_t)t->h->o.idle_timeout_s * 1000000
					       : INT64_MAX;
	for (struct conn *c = t->conns, *next; c; c = next) {
		next = c->next;
		if ((c->state == CONN_LINGER && now > c->linger_until) ||
		    (!c->parked && now - c->last_us > limit))
			conn_close(c);
	}
}

static void bury(struct thread *t)
{
	while (t->graveyard) {
		struct conn *c = t->graveyard;
		t->graveyard = c->inbox_next;
		conn_free(c);
	}
}

/* One pass of a loop: what epoll reports after waiting up to timeout_ms,
 * the resumes, the listener's return after EMFILE, the idle sweep. */
static void loop_pass(struct thread *t, int timeout_ms)
{
	struct gw_http1 *h = t->h;
	struct epoll_event evs[128];
	current_loop = t;
	int n = timeout_ms < 0 ? 0 : epoll_wait(t->ep, evs, 128, timeout_ms);
	for (int i = 0; i < n; i++) {
		void *p = evs[i].data.ptr;
		if (p == &listen_tag)
			accept_some(t);
		else if (p == &wake_tag)
			take_resumes(t);
		else
			on_conn_event(p, evs[i].events);
	}
	while (t->local) {
		struct conn *c = t->local;
		t->local = NULL;
		run_resumes(c);
	}
	bury(t);
	int64_t now = gw_now_us();
	if (!t->listening && now >= t->relisten_us) {
		struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.ptr = &listen_tag };
		t->listening = epoll_ctl(t->ep, EPOLL_CTL_ADD, h->lfd, &ev) == 0;
		t->relisten_us = t->listening ? 0 : now + 100000;
	}
	if (now >= t->next_sweep_us) {
		sweep_idle(t, now);
		bury(t);
		t->next_sweep_us = now + 1000000;
	}
}

static void *thread_main(void *arg)
{
	struct thread *t = arg;
	struct gw_http1 *h = t->h;
	while (!atomic_load(&h->stop)) {
		if (h->o.on_pass)
			h->o.on_pass(h->o.arg, t->index);
		loop_pass(t, 1000);
	}
	return NULL;
}

int gw_http1_fd(struct gw_http1 *h, unsigned loop)
{
	return loop < h->nt ? h->t[loop].ep : -1;
}

bool gw_http1_run(struct gw_http1 *h, unsigned loop, bool io)
{
	struct thread *t = &h->t[loop];
	loop_pass(t, io ? 0 : -1);
	return t->local != NULL;
}

static void free_threads(struct gw_http1 *h)
{
	for (unsigned i = 0; i < h->nt; i++) {
		struct thread *t = &h->t[i];
		if (t->started)
			pthread_join(t->th, NULL);
	}
	for (unsigned i = 0; i < h->nt; i++) {
		struct thread *t = &h->t[i];
		for (;;) {
			pthread_mutex_lock(&t->lock);
			struct conn *q = t->inbox;
			t->inbox = NULL;
			pthread_mutex_unlock(&t->lock);
			for (struct conn *next; q; q = next) {
				next = q->inbox_next;
				conn_unref(q);
			}
			for (struct conn *next, *l = t->local; l; l = next) {
				next = l->inbox_next;
				conn_unref(l);
			}
			t->local = NULL;
			if (!t->conns)
				break;
			while (t->conns) {
				t->conns->parked = false;
				conn_close(t->conns);
			}
		}
		bury(t);
		if (t->ep >= 0)
			close(t->ep);
		if (t->efd >= 0)
			close(t->efd);
		pthread_mutex_destroy(&t->lock);
	}
	free(h->t);
}

struct gw_http1 *gw_http1_start(const struct gw_http1_opts *o)
{
	struct gw_http1 *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	h->o = *o;
	h->nt = o->threads ? o->threads : 1;
	atomic_init(&h->stop, false);
	atomic_init(&h->nconns, 0);
	int one = 1, err;
	h->lfd = socket(o->addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (h->lfd < 0)
		goto fail_errno;
	setsockopt(h->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (o->addr->sa_family == AF_INET6)
		setsockopt(h->lfd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(h->lfd, o->addr, o->addr_len) < 0 || listen(h->lfd, 4096) < 0)
		goto fail_errno;
	if (!(h->t = calloc(h->nt, sizeof(*h->t))))
		goto fail_errno;
	for (unsigned i = 0; i < h->nt; i++) {
		struct thread *t = &h->t[i];
		t->h = h;
		t->index = i;
		t->ep = t->efd = -1;
		pthread_mutex_init(&t->lock, NULL);
	}
	for (unsigned i = 0; i < h->nt; i++) {
		struct thread *t = &h->t[i];
		t->ep = epoll_create1(EPOLL_CLOEXEC);
		t->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (t->ep < 0 || t->efd < 0)
			goto fail_threads;
		struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &wake_tag };
		struct epoll_event lev = { .events = EPOLLIN | EPOLLEXCLUSIVE,
					   .data.ptr = &listen_tag };
		if (epoll_ctl(t->ep, EPOLL_CTL_ADD, t->efd, &ev) < 0 ||
		    epoll_ctl(t->ep, EPOLL_CTL_ADD, h->lfd, &lev) < 0)
			goto fail_threads;
		t->listening = true;
		if (o->external)
			continue;
		if ((errno = pthread_create(&t->th, NULL, thread_main, t)) != 0)
			goto fail_threads;
		t->started = true;
		pthread_setname_np(t->th, "llmgw-http");
	}
	return h;
fail_threads:
	err = errno;
	gw_http1_stop(h);
	errno = err;
	return NULL;
fail_errno:
	err = errno;
	if (h->lfd >= 0)
		close(h->lfd);
	free(h);
	errno = err;
	return NULL;
}

void gw_http1_quiesce(struct gw_http1 *h)
{
	/* The threads' next accept fails and they drop the listener; the port
	 * refuses connections from now on. */
	shutdown(h->lfd, SHUT_RDWR);
}

void gw_http1_stop(struct gw_http1 *h)
{
	if (!h)
		return;
	atomic_store(&h->stop, true);
	uint64_t one = 1;
	for (unsigned i = 0; i < h->nt; i++)
		if (h->t[i].efd >= 0 && write(h->t[i].efd, &one, sizeof(one)) < 0) {
			/* the loop wakes within a second anyway */
		}
	free_threads(h);
	close(h->lfd);
	free(h);
}

const char *gw_http1_header(const struct gw_http1_req *r, const char *name)
{
	const struct conn *c = (const struct conn *)r;
	size_t nl = strlen(name);
	for (unsigned i = 0; i < c->nhdrs; i++)
		if (c->hdrs[i].name_len == nl && strcasecmp(c->hdrs[i].name, name) == 0)
			return c->hdrs[i].value;
	return NULL;
}

const char *gw_http1_arg(const struct gw_http1_req *r, const char *name, char *buf, size_t size)
{
	size_t nl = strlen(name);
	for (const char *p = r->query; p && *p;) {
		const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
		if ((size_t)(end - p) >= nl && strncmp(p, name, nl) == 0 &&
		    (p + nl == end || p[nl] == '=')) {
			const char *v = p + nl + (p + nl < end);
			size_t k = 0;
			for (; v < end; v++) {
				char ch = *v;
				if (ch == '+') {
					ch = ' ';
				} else if (ch == '%' && end - v > 2 && gw_hex_digit(v[1]) >= 0 &&
					   gw_hex_digit(v[2]) >= 0) {
					ch = (char)(gw_hex_digit(v[1]) * 16 + gw_hex_digit(v[2]));
					v += 2;
				}
				if (k + 1 >= size)
					return NULL;
				buf[k++] = ch;
			}
			buf[k] = '\0';
			return buf;
		}
		p = amp ? amp + 1 : NULL;
	}
	return NULL;
}
