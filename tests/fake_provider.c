/*
 * fake_provider.c - a fake upstream LLM provider for llmgw's integration
 * tests, its demo mode and its benchmarks.
 *
 * It speaks enough HTTP/1.1 (keep-alive, pipelining, Content-Length and
 * chunked request bodies, Expect: 100-continue, chunked responses) to stand
 * in for the OpenAI chat completions API and the Anthropic Messages API.
 * Answers are deterministic: "Echo: " followed by the last user message.
 * A test steers everything else with "@fake:KEY=VALUE" directives written
 * into message text: delays, error statuses, hangs, resets, broken JSON,
 * cut or failing streams, tool calls. Every request to a dialect endpoint
 * is recorded and can be read back with GET /_requests, so a test can see
 * exactly what the gateway sent upstream.
 *
 * One thread runs one epoll loop over non-blocking sockets; a binary heap
 * of deadlines drives every delay, so thousands of slow requests cost a
 * few KiB each and no thread, and nothing ever sleeps.
 *
 * docs/fake_provider.md describes the CLI, the endpoints, the directives
 * and the record fields.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Limits on everything a client controls. */
#define FP_MAX_HEAD (64 * 1024)		/* request line + headers */
#define FP_MAX_HEADERS 256		/* header lines per request */
#define FP_MAX_NAME 256			/* bytes in one header name */
#define FP_MAX_BODY (16 * 1024 * 1024)	/* decoded request body */
#define FP_MAX_CHUNK_LINE 1024		/* chunk-size line with extensions */
#define FP_MAX_RECORDS 200000		/* requests kept for /_requests */
#define FP_MAX_OUT ((size_t)1 << 31)	/* queued output of one connection */
#define FP_MAX_PIECES 100000		/* stream pieces per answer */
#define FP_MAX_DELAY_MS (7L * 24 * 3600 * 1000)

#define FP_READ_SIZE 65536
#define FP_MAX_EVENTS 1024
#define FP_BACKLOG 4096
#define FP_ACCEPT_PAUSE_MS 100	/* how long to stop accepting when out of fds */
#define FP_KEEP_OUT_CAP (256 * 1024) /* larger idle output buffers are freed */

#define FP_TOOL_ARGS "{\"q\":\"fake\"}"
#define FP_GARBAGE "{\"id\": \"chatcmpl-garbage\", <html>this is not JSON"
#define FP_STREAM_ERROR_MSG "fake stream error"

/*
 * Reals are printed with 16 significant digits: enough for a CLOCK_REALTIME
 * millisecond count with a microsecond fraction, and short enough that a
 * cost of 0.0012 comes back as 0.0012 and not as 0.0011999999999999999.
 */
#define FP_JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(16))

#define NO_TIMER SIZE_MAX

/* ---------------------------------------------------------------------- */
/* Types                                                                  */
/* ---------------------------------------------------------------------- */

/* A byte buffer. Data lives in p[off..len); off moves as input is parsed. */
struct buf {
	char *p;
	size_t off;
	size_t len;
	size_t cap;
};

enum dialect {
	D_NONE,
	D_OPENAI,
	D_ANTHROPIC
};

/*
 * The life of a connection. A request is read (READ_*), then answered
 * after an optional delay (DELAY), or streamed piece by piece (STREAM),
 * or never (HANG); FLUSH waits until the answer reached the socket, after
 * which a keep-alive connection goes back to READ_HEAD.
 */
enum conn_state {
	CONN_READ_HEAD,		/* reading the request line and the headers */
	CONN_READ_BODY,		/* reading a body framed by Content-Length */
	CONN_READ_CHUNKED,	/* decoding a chunked request body */
	CONN_DELAY,		/* request read; the answer waits for the timer */
	CONN_HANG,		/* request read; it will never be answered */
	CONN_STREAM,		/* streaming; the timer paces the pieces */
	CONN_FLUSH		/* answer queued; waiting for it to be written */
};

enum chunk_state {
	CH_SIZE,	/* expecting a chunk-size line */
	CH_DATA,	/* inside chunk data */
	CH_DATA_END,	/* expecting the CRLF after chunk data */
	CH_TRAILER	/* after the last chunk: trailer lines until an empty one */
};

/* What the connection does when its delay is over. */
enum pend_kind {
	PEND_NONE,
	PEND_RESPONSE,	/* write pend_out, a complete response */
	PEND_STREAM,	/* start the stream described by conn.st */
	PEND_HANG,	/* never answer */
	PEND_RESET	/* close with a TCP RST */
};

/* One parsed request. Reset between the requests of a connection. */
struct req {
	char method[16];
	char *target;		/* request target as sent, NUL-terminated */
	int minor;		/* HTTP/1.minor */
	bool keep_alive;
	bool chunked;
	bool expect_continue;
	long content_length;	/* -1 when absent */
	json_t *headers;	/* lower-case name -> value; NULL in --fast */
	enum chunk_state ch_state;
	size_t ch_left;		/* bytes left in the current chunk */
	size_t trailer_bytes;
};

/* The plan of one streamed answer. */
struct stream {
	enum dialect dl;
	bool chunked;		/* chunked framing; else the close ends the body */
	bool include_usage;	/* OpenAI stream_options.include_usage */
	bool tool;		/* text holds tool arguments, not a reply */
	bool has_cost;
	char id[64];
	char call_id[64];
	char tool_name[128];
	json_t *model;
	json_int_t created;
	char *text;		/* the reply, or the tool arguments */
	size_t text_len;
	size_t *cuts;		/* piece i is text[cuts[i] .. cuts[i + 1]) */
	size_t npieces;
	size_t next;		/* index of the next piece to send */
	bool waited;		/* the delay before piece `next` is over */
	long chunk_delay_ms;
	long cut_after;		/* -1: never */
	long error_after;	/* -1: never */
	const char *finish;
	long prompt_tokens;
	long completion_tokens;
	double cost;
};

struct conn {
	int fd;
	enum conn_state state;
	uint32_t events;	/* epoll interest currently registered */
	size_t heap_idx;	/* index in the timer heap, NO_TIMER if none */
	int64_t deadline;	/* CLOCK_MONOTONIC us */
	bool dead;		/* closed; freed after the current loop turn */
	bool close_after;	/* close once the answer has been written */
	struct buf in;
	struct buf out;
	struct buf body;
	struct req req;
	enum pend_kind pend;
	struct buf pend_out;
	int pend_status;
	const char *pend_outcome;
	json_t *pend_usage;	/* usage for the record, set when answered */
	struct stream *st;
	json_t *rec;		/* this request's record; own reference */
	struct conn *prev;
	struct conn *next;
};

/* Directives found in the messages; see dir_specs. */
struct dir_money {
	bool set;
	double v;
};

struct directives {
	long delay_ms;		/* -1: not given */
	long status;		/* 0: not given */
	long stream_status;	/* 0: not given */
	char retry_after[24];
	bool hang;
	bool reset;
	bool garbage;
	long chunks;		/* 0: one piece per word */
	long chunk_delay_ms;
	long cut_after;		/* -1: not given */
	long error_after;	/* -1: not given */
	char tool_call[128];
	struct dir_money cost;
};

enum dir_type {
	DIR_LONG,
	DIR_BOOL,
	DIR_SECONDS,
	DIR_NAME,
	DIR_MONEY
};

struct dir_spec {
	const char *key;
	enum dir_type type;
	size_t off;
	long lo;
	long hi;
};

/* The directive table: key, value type, field, bounds for numbers. */
static const struct dir_spec dir_specs[] = {
	{ "delay_ms", DIR_LONG, offsetof(struct directives, delay_ms), 0, FP_MAX_DELAY_MS },
	{ "status", DIR_LONG, offsetof(struct directives, status), 400, 599 },
	{ "stream_status", DIR_LONG, offsetof(struct directives, stream_status), 400, 599 },
	{ "retry_after", DIR_SECONDS, offsetof(struct directives, retry_after), 0, 0 },
	{ "hang", DIR_BOOL, offsetof(struct directives, hang), 0, 0 },
	{ "reset", DIR_BOOL, offsetof(struct directives, reset), 0, 0 },
	{ "garbage", DIR_BOOL, offsetof(struct directives, garbage), 0, 0 },
	{ "chunks", DIR_LONG, offsetof(struct directives, chunks), 1, FP_MAX_PIECES },
	{ "chunk_delay_ms", DIR_LONG, offsetof(struct directives, chunk_delay_ms), 0, FP_MAX_DELAY_MS },
	{ "cut_after", DIR_LONG, offsetof(struct directives, cut_after), 0, FP_MAX_PIECES },
	{ "error_event_after", DIR_LONG, offsetof(struct directives, error_after), 0, FP_MAX_PIECES },
	{ "tool_call", DIR_NAME, offsetof(struct directives, tool_call), 0, 0 },
	{ "cost", DIR_MONEY, offsetof(struct directives, cost), 0, 0 },
};

/* The reply computed for a valid request. */
struct answer {
	struct buf text;	/* reply text, or the tool arguments */
	const char *tool;	/* tool name; NULL for a text reply */
	const char *finish;	/* finish_reason / stop_reason */
	long prompt_tokens;
	long completion_tokens;
	bool has_cost;
	double cost;
};

/* Canned answers of --fast mode, built once at start. */
enum fast_kind {
	FAST_OPENAI,
	FAST_OPENAI_STREAM,
	FAST_OPENAI_STREAM_USAGE,
	FAST_ANTHROPIC,
	FAST_ANTHROPIC_STREAM,
	FAST_COUNT
};

static struct {
	int ep;
	int lfd;
	int sfd;
	const char *name;
	bool fast;
	long default_delay_ms;
	uint64_t seq;
	int64_t now;		/* CLOCK_MONOTONIC us, refreshed every loop turn */
	bool stop;
	bool accept_paused;
	int64_t accept_resume;
	json_t **recs;		/* ring of records, oldest at rec_head */
	size_t rec_head;
	size_t rec_count;
	struct conn **heap;	/* min-heap on conn.deadline */
	size_t heap_len;
	size_t heap_cap;
	struct conn *live;
	struct conn *dead;
	struct buf scratch;
	struct buf canned[FAST_COUNT];
	char rdbuf[FP_READ_SIZE];
} srv;

/* Distinct addresses that tag the non-connection fds in epoll. */
static char tag_listen;
static char tag_signal;

/* ---------------------------------------------------------------------- */
/* Small helpers                                                          */
/* ---------------------------------------------------------------------- */

static void fp_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fp_log(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	fprintf(stderr, "fake_provider: %s\n", line);
}

/* Microseconds, so that a delay never ends early by a rounding. */
static int64_t mono_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Wall clock in ms, rounded to the microsecond, for the records. */
static double real_ms(void)
{
	struct timespec ts;
	int64_t us;

	clock_gettime(CLOCK_REALTIME, &ts);
	us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	return (double)us / 1000.0;
}

static bool is_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* RFC 9110 token character, the alphabet of methods and header names. */
static bool is_tchar(unsigned char ch)
{
	if (ch >= '0' && ch <= '9')
		return true;
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')
		return true;
	return ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static bool ends_with(const char *s, size_t n, const char *suffix)
{
	size_t k = strlen(suffix);

	return n >= k && memcmp(s + n - k, suffix, k) == 0;
}

/*
 * Parses all of s[0..n) as a base-10 integer in [lo, hi]. Returns 0,
 * -EINVAL for anything that is not a plain number, -ERANGE when out of range.
 */
static int parse_long(const char *s, size_t n, long lo, long hi, long *out)
{
	char tmp[24];
	char *end;
	long v;
	size_t i = 0;

	if (n > 0 && s[0] == '-' && lo < 0)
		i = 1;
	if (i == n)
		return -EINVAL;
	for (size_t k = i; k < n; k++)
		if (s[k] < '0' || s[k] > '9')
			return -EINVAL;
	if (n >= sizeof(tmp))
		return -ERANGE;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	errno = 0;
	v = strtol(tmp, &end, 10);
	if (errno == ERANGE || v < lo || v > hi)
		return -ERANGE;
	if (errno || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

/* Parses all of s[0..n) as a finite, non-negative decimal number. */
static int parse_money(const char *s, size_t n, double *out)
{
	char tmp[48];
	char *end;
	double v;

	if (n == 0 || n >= sizeof(tmp))
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if (!strchr("0123456789.eE+-", s[i]) || s[i] == '\0')
			return -EINVAL;
	if (s[0] == '-' || s[0] == '+')
		return -EINVAL;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	errno = 0;
	v = strtod(tmp, &end);
	if (errno || *end != '\0' || !isfinite(v) || v < 0)
		return -EINVAL;
	*out = v;
	return 0;
}

/* Length of the valid UTF-8 sequence at s (n > 0 bytes left), 0 if invalid. */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
	unsigned char c0 = s[0];

	if (c0 < 0x80)
		return 1;
	if (c0 < 0xC2)
		return 0;
	if (c0 < 0xE0)
		return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
	if (c0 < 0xF0) {
		if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if ((c0 == 0xE0 && s[1] < 0xA0) || (c0 == 0xED && s[1] >= 0xA0))
			return 0;
		return 3;
	}
	if (c0 < 0xF5) {
		if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
		    (s[3] & 0xC0) != 0x80)
			return 0;
		if ((c0 == 0xF0 && s[1] < 0x90) || (c0 == 0xF4 && s[1] >= 0x90))
			return 0;
		return 4;
	}
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Buffers                                                                */
/* ---------------------------------------------------------------------- */

static size_t buf_pending(const struct buf *b)
{
	return b->len - b->off;
}

static void buf_free(struct buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

/* Makes room for extra more bytes, keeping pending data within max. */
static int buf_reserve(struct buf *b, size_t extra, size_t max)
{
	size_t want, ncap;
	char *np;

	if (b->off == b->len)
		b->off = b->len = 0;
	if (extra > max || buf_pending(b) > max - extra)
		return -ENOBUFS;
	if (b->cap - b->len >= extra)
		return 0;
	if (b->off > 0) {
		memmove(b->p, b->p + b->off, b->len - b->off);
		b->len -= b->off;
		b->off = 0;
		if (b->cap - b->len >= extra)
			return 0;
	}
	want = b->len + extra;
	ncap = b->cap ? b->cap : 256;
	while (ncap < want)
		ncap = ncap > SIZE_MAX / 2 ? want : ncap * 2;
	np = realloc(b->p, ncap);
	if (!np)
		return -ENOMEM;
	b->p = np;
	b->cap = ncap;
	return 0;
}

static int buf_append(struct buf *b, const void *data, size_t n, size_t max)
{
	int rc;

	if (n == 0)
		return 0;
	rc = buf_reserve(b, n, max);
	if (rc)
		return rc;
	memcpy(b->p + b->len, data, n);
	b->len += n;
	return 0;
}

static int buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s), FP_MAX_OUT);
}

static int buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends a formatted line; only used for short, bounded header text. */
static int buf_printf(struct buf *b, const char *fmt, ...)
{
	char tmp[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(tmp))
		return -EOVERFLOW;
	return buf_append(b, tmp, (size_t)n, FP_MAX_OUT);
}

/* A JSON string of s[0..n); invalid UTF-8 bytes become U+FFFD. */
static json_t *json_text(const char *s, size_t n)
{
	const unsigned char *u = (const unsigned char *)s;
	struct buf b = { 0 };
	json_t *j;
	size_t i = 0;

	if (n == 0)
		return json_string("");
	while (i < n) {
		size_t k = utf8_seq_len(u + i, n - i);
		if (k == 0)
			break;
		i += k;
	}
	if (i == n)
		return json_stringn(s, n);
	i = 0;
	while (i < n) {
		size_t k = utf8_seq_len(u + i, n - i);
		int rc = k ? buf_append(&b, s + i, k, FP_MAX_OUT)
			   : buf_append(&b, "\xEF\xBF\xBD", 3, FP_MAX_OUT);
		if (rc) {
			buf_free(&b);
			return NULL;
		}
		i += k ? k : 1;
	}
	j = json_stringn(b.p, b.len);
	buf_free(&b);
	return j;
}

/* ---------------------------------------------------------------------- */
/* Timer heap                                                             */
/* ---------------------------------------------------------------------- */

static bool heap_less(size_t a, size_t b)
{
	return srv.heap[a]->deadline < srv.heap[b]->deadline;
}

static void heap_swap(size_t a, size_t b)
{
	struct conn *t = srv.heap[a];

	srv.heap[a] = srv.heap[b];
	srv.heap[b] = t;
	srv.heap[a]->heap_idx = a;
	srv.heap[b]->heap_idx = b;
}

static void heap_up(size_t i)
{
	while (i > 0) {
		size_t parent = (i - 1) / 2;
		if (!heap_less(i, parent))
			break;
		heap_swap(i, parent);
		i = parent;
	}
}

static void heap_down(size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < srv.heap_len && heap_less(l, m))
			m = l;
		if (r < srv.heap_len && heap_less(r, m))
			m = r;
		if (m == i)
			break;
		heap_swap(i, m);
		i = m;
	}
}

static void timer_cancel(struct conn *c)
{
	size_t i = c->heap_idx, last;

	if (i == NO_TIMER)
		return;
	last = --srv.heap_len;
	if (i != last) {
		srv.heap[i] = srv.heap[last];
		srv.heap[i]->heap_idx = i;
		heap_down(i);
		heap_up(i);
	}
	c->heap_idx = NO_TIMER;
}

/*
 * Arms the connection's one timer delay_ms from now. The clock is read
 * afresh: the loop's cached time may be older than the request's arrival.
 * Returns 0 or -ENOMEM.
 */
static int timer_set(struct conn *c, long delay_ms)
{
	timer_cancel(c);
	if (srv.heap_len == srv.heap_cap) {
		size_t ncap = srv.heap_cap ? srv.heap_cap * 2 : 1024;
		struct conn **nh = realloc(srv.heap, ncap * sizeof(*nh));
		if (!nh)
			return -ENOMEM;
		srv.heap = nh;
		srv.heap_cap = ncap;
	}
	c->deadline = mono_us() + (int64_t)delay_ms * 1000;
	c->heap_idx = srv.heap_len;
	srv.heap[srv.heap_len++] = c;
	heap_up(c->heap_idx);
	return 0;
}

/* ---------------------------------------------------------------------- */
/* Records                                                                */
/* ---------------------------------------------------------------------- */

/* Takes the caller's reference to rec; drops the oldest record when full. */
static void rec_push(json_t *rec)
{
	if (srv.rec_count == FP_MAX_RECORDS) {
		json_decref(srv.recs[srv.rec_head]);
		srv.recs[srv.rec_head] = rec;
		srv.rec_head = (srv.rec_head + 1) % FP_MAX_RECORDS;
		return;
	}
	srv.recs[(srv.rec_head + srv.rec_count) % FP_MAX_RECORDS] = rec;
	srv.rec_count++;
}

static void rec_clear(void)
{
	for (size_t i = 0; i < srv.rec_count; i++)
		json_decref(srv.recs[(srv.rec_head + i) % FP_MAX_RECORDS]);
	srv.rec_head = 0;
	srv.rec_count = 0;
}

/* Sets a field of the connection's record; takes the reference to v. */
static void rec_set(struct conn *c, const char *key, json_t *v)
{
	if (c->rec && v)
		json_object_set_new(c->rec, key, v);
	else
		json_decref(v);
}

/* Stamps finish_ms, sets outcome unless one is already set, lets go. */
static void rec_finish(struct conn *c, const char *outcome)
{
	if (!c->rec)
		return;
	json_object_set_new(c->rec, "finish_ms", json_real(real_ms()));
	if (outcome && json_is_null(json_object_get(c->rec, "outcome")))
		json_object_set_new(c->rec, "outcome", json_string(outcome));
	json_decref(c->rec);
	c->rec = NULL;
}

static json_t *usage_record(long prompt, long completion)
{
	return json_pack("{s:I, s:I}", "prompt_tokens", (json_int_t)prompt,
			 "completion_tokens", (json_int_t)completion);
}

/* ---------------------------------------------------------------------- */
/* Connections                                                            */
/* ---------------------------------------------------------------------- */

static void stream_free(struct stream *st)
{
	if (!st)
		return;
	json_decref(st->model);
	free(st->text);
	free(st->cuts);
	free(st);
}

/* Forgets the current request; the connection's input is kept. */
static void req_reset(struct conn *c)
{
	free(c->req.target);
	json_decref(c->req.headers);
	memset(&c->req, 0, sizeof(c->req));
	c->req.content_length = -1;
	if (c->body.cap > FP_KEEP_OUT_CAP)
		buf_free(&c->body);
	c->body.off = c->body.len = 0;
	c->pend = PEND_NONE;
	buf_free(&c->pend_out);
	c->pend_status = 0;
	c->pend_outcome = NULL;
	json_decref(c->pend_usage);
	c->pend_usage = NULL;
	stream_free(c->st);
	c->st = NULL;
}

static void accept_resume(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &tag_listen };

	if (!srv.accept_paused)
		return;
	if (epoll_ctl(srv.ep, EPOLL_CTL_MOD, srv.lfd, &ev) == 0)
		srv.accept_paused = false;
}

/*
 * Closes the connection now and frees it after the current loop turn,
 * because events of this turn may still name it. A record still in flight
 * gets finish_ms and, unless it has one, the given outcome.
 */
static void conn_kill(struct conn *c, const char *outcome)
{
	if (c->dead)
		return;
	c->dead = true;
	rec_finish(c, outcome);
	timer_cancel(c);
	close(c->fd);
	c->fd = -1;
	if (c->prev)
		c->prev->next = c->next;
	else
		srv.live = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = NULL;
	c->next = srv.dead;
	srv.dead = c;
	/* A freed fd is what a paused listener waits for. */
	accept_resume();
}

static void conn_free(struct conn *c)
{
	req_reset(c);
	buf_free(&c->in);
	buf_free(&c->out);
	buf_free(&c->body);
	json_decref(c->rec);
	free(c);
}

static void reap_dead(void)
{
	while (srv.dead) {
		struct conn *c = srv.dead;
		srv.dead = c->next;
		conn_free(c);
	}
}

static bool conn_reading(const struct conn *c)
{
	return c->state == CONN_READ_HEAD || c->state == CONN_READ_BODY ||
	       c->state == CONN_READ_CHUNKED;
}

/*
 * Registers what the state needs: input while reading; while an answer is
 * pending only the peer's close (EPOLLRDHUP), so pipelined bytes wait in
 * the kernel; output whenever some is queued.
 */
static void conn_update_events(struct conn *c)
{
	struct epoll_event ev = { .data.ptr = c };
	uint32_t want = 0;

	if (conn_reading(c))
		want = EPOLLIN;
	else if (c->state != CONN_FLUSH)
		want = EPOLLRDHUP;
	if (buf_pending(&c->out) > 0)
		want |= EPOLLOUT;
	if (want == c->events)
		return;
	ev.events = want;
	if (epoll_ctl(srv.ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
		c->events = want;
	else
		conn_kill(c, "client_closed");
}

/* Writes queued output until done or the socket is full. */
static void conn_flush(struct conn *c)
{
	while (buf_pending(&c->out) > 0) {
		ssize_t n = send(c->fd, c->out.p + c->out.off, buf_pending(&c->out), MSG_NOSIGNAL);
		if (n > 0) {
			c->out.off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_kill(c, "client_closed");
		return;
	}
	c->out.off = c->out.len = 0;
	if (c->out.cap > FP_KEEP_OUT_CAP)
		buf_free(&c->out);
}

/* ---------------------------------------------------------------------- */
/* Responses                                                              */
/* ---------------------------------------------------------------------- */

static const char *reason_phrase(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 402: return "Payment Required";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 413: return "Content Too Large";
	case 422: return "Unprocessable Content";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	case 529: return "Overloaded";
	default: return "Unknown";
	}
}

/* The error type (and OpenAI code) a real provider uses for a status. */
static void error_kind(enum dialect dl, int status, const char **type, const char **code)
{
	*code = NULL;
	if (dl == D_ANTHROPIC) {
		switch (status) {
		case 401: *type = "authentication_error"; break;
		case 402: *type = "billing_error"; break;
		case 403: *type = "permission_error"; break;
		case 404: *type = "not_found_error"; break;
		case 413: *type = "request_too_large"; break;
		case 429: *type = "rate_limit_error"; break;
		case 529: *type = "overloaded_error"; break;
		default: *type = status >= 500 ? "api_error" : "invalid_request_error"; break;
		}
		return;
	}
	switch (status) {
	case 401: *type = "invalid_request_error"; *code = "invalid_api_key"; break;
	case 404: *type = "invalid_request_error"; *code = "not_found"; break;
	case 413: *type = "invalid_request_error"; *code = "request_too_large"; break;
	case 429: *type = "rate_limit_error"; *code = "rate_limit_exceeded"; break;
	default: *type = status >= 500 ? "server_error" : "invalid_request_error"; break;
	}
}

/* An error body in the dialect's shape; the OpenAI shape when D_NONE. */
static json_t *error_json(enum dialect dl, int status, const char *msg)
{
	const char *type, *code;
	json_t *err, *root;

	error_kind(dl, status, &type, &code);
	err = json_object();
	root = json_object();
	if (!err || !root) {
		json_decref(err);
		json_decref(root);
		return NULL;
	}
	if (dl == D_ANTHROPIC) {
		json_object_set_new(err, "type", json_string(type));
		json_object_set_new(err, "message", json_text(msg, strlen(msg)));
		json_object_set_new(root, "type", json_string("error"));
	} else {
		json_object_set_new(err, "message", json_text(msg, strlen(msg)));
		json_object_set_new(err, "type", json_string(type));
		json_object_set_new(err, "param", json_null());
		json_object_set_new(err, "code", code ? json_string(code) : json_null());
	}
	json_object_set_new(root, "error", err);
	return root;
}

/*
 * Builds a complete response into pend_out, to be written when the delay
 * is over. extra holds complete header lines, or is NULL.
 */
static int plan_response(struct conn *c, int status, const char *ctype, const char *body,
			 size_t n, const char *extra, const char *outcome)
{
	const char *connection = "";
	int rc;

	if (!c->req.keep_alive) {
		connection = "Connection: close\r\n";
		c->close_after = true;
	} else if (c->req.minor == 0) {
		connection = "Connection: keep-alive\r\n";
	}
	c->pend_out.off = c->pend_out.len = 0;
	rc = buf_printf(&c->pend_out,
			"HTTP/1.1 %d %s\r\nServer: fake_provider\r\nContent-Type: %s\r\n"
			"Content-Length: %zu\r\n%s%s\r\n",
			status, reason_phrase(status), ctype, n, connection, extra ? extra : "");
	if (rc == 0)
		rc = buf_append(&c->pend_out, body, n, FP_MAX_OUT);
	c->pend = PEND_RESPONSE;
	c->pend_status = status;
	c->pend_outcome = outcome;
	return rc;
}

/* Like plan_response with a JSON body; takes the reference to obj. */
static int plan_json(struct conn *c, int status, json_t *obj, const char *extra, const char *outcome)
{
	char *s;
	int rc;

	if (!obj)
		return -ENOMEM;
	s = json_dumps(obj, FP_JSON_FLAGS);
	json_decref(obj);
	if (!s)
		return -ENOMEM;
	rc = plan_response(c, status, "application/json", s, strlen(s), extra, outcome);
	free(s);
	return rc;
}

static int plan_error(struct conn *c, enum dialect dl, int status, const char *msg,
		      const char *retry_after)
{
	char extra[64] = "";

	if (retry_after && retry_after[0])
		snprintf(extra, sizeof(extra), "Retry-After: %s\r\n", retry_after);
	return plan_json(c, status, error_json(dl, status, msg), extra, "error");
}

static void stream_step(struct conn *c);
static int stream_start(struct conn *c);

/* Sends what was planned; called when the delay is over (or right away). */
static void answer_fire(struct conn *c)
{
	switch (c->pend) {
	case PEND_RESPONSE:
		if (buf_pending(&c->out) == 0) {
			/* Hand the buffer over instead of copying a large /_requests. */
			buf_free(&c->out);
			c->out = c->pend_out;
			memset(&c->pend_out, 0, sizeof(c->pend_out));
		} else if (buf_append(&c->out, c->pend_out.p + c->pend_out.off,
				      buf_pending(&c->pend_out), FP_MAX_OUT)) {
			conn_kill(c, "error");
			return;
		}
		rec_set(c, "status", json_integer(c->pend_status));
		if (c->pend_usage) {
			rec_set(c, "usage", c->pend_usage);
			c->pend_usage = NULL;
		}
		c->state = CONN_FLUSH;
		break;
	case PEND_STREAM:
		if (stream_start(c))
			conn_kill(c, "error");
		break;
	case PEND_HANG:
		rec_set(c, "outcome", json_string("hang"));
		c->state = CONN_HANG;
		break;
	case PEND_RESET: {
		/* A zero linger time turns close() into a RST. */
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		conn_kill(c, "reset");
		break;
	}
	case PEND_NONE:
		conn_kill(c, "error");
		break;
	}
}

static void schedule_answer(struct conn *c, long delay_ms)
{
	if (delay_ms > 0) {
		c->state = CONN_DELAY;
		if (timer_set(c, delay_ms) == 0)
			return;
	}
	answer_fire(c);
}

/* ---------------------------------------------------------------------- */
/* Directives                                                             */
/* ---------------------------------------------------------------------- */

static void dir_init(struct directives *d)
{
	memset(d, 0, sizeof(*d));
	d->delay_ms = -1;
	d->cut_after = -1;
	d->error_after = -1;
}

/* Applies one "KEY=VALUE" or "NAME.KEY=VALUE" token (the part after "@fake:"). */
static void dir_apply(struct directives *d, const char *tok, size_t n)
{
	const char *eq = memchr(tok, '=', n);
	size_t klen = eq ? (size_t)(eq - tok) : n;
	const char *key = tok;
	const char *val = eq ? eq + 1 : "1";
	size_t vlen = eq ? n - klen - 1 : 1;
	const char *dot = memrchr(tok, '.', klen);
	char *field;
	long lv;

	if (dot) {
		size_t nlen = (size_t)(dot - tok);
		if (!srv.name || strlen(srv.name) != nlen || memcmp(srv.name, tok, nlen) != 0)
			return;
		key = dot + 1;
		klen -= nlen + 1;
	}
	for (size_t i = 0; i < sizeof(dir_specs) / sizeof(dir_specs[0]); i++) {
		const struct dir_spec *sp = &dir_specs[i];
		if (strlen(sp->key) != klen || memcmp(sp->key, key, klen) != 0)
			continue;
		field = (char *)d + sp->off;
		switch (sp->type) {
		case DIR_LONG:
			if (parse_long(val, vlen, sp->lo, sp->hi, &lv) == 0)
				*(long *)(void *)field = lv;
			break;
		case DIR_BOOL:
			if ((vlen == 1 && val[0] == '1') || (vlen == 4 && memcmp(val, "true", 4) == 0))
				*(bool *)(void *)field = true;
			else if ((vlen == 1 && val[0] == '0') || (vlen == 5 && memcmp(val, "false", 5) == 0))
				*(bool *)(void *)field = false;
			break;
		case DIR_SECONDS: {
			bool ok = vlen > 0 && vlen < sizeof(d->retry_after);
			for (size_t k = 0; ok && k < vlen; k++)
				ok = (val[k] >= '0' && val[k] <= '9') || val[k] == '.';
			if (ok) {
				memcpy(field, val, vlen);
				field[vlen] = '\0';
			}
			break;
		}
		case DIR_NAME:
			if (vlen > 0 && vlen < sizeof(d->tool_call)) {
				memcpy(field, val, vlen);
				field[vlen] = '\0';
			}
			break;
		case DIR_MONEY: {
			struct dir_money *m = (struct dir_money *)(void *)field;
			if (parse_money(val, vlen, &m->v) == 0)
				m->set = true;
			break;
		}
		}
		return;
	}
}

/* Applies every "@fake:" token in s[0..n); a token ends at whitespace. */
static void dir_scan(struct directives *d, const char *s, size_t n)
{
	const char *end = s + n;
	const char *p = s;

	while (p < end) {
		const char *hit = memmem(p, (size_t)(end - p), "@fake:", 6);
		const char *q;
		if (!hit)
			break;
		q = hit + 6;
		while (q < end && !is_ws(*q))
			q++;
		dir_apply(d, hit + 6, (size_t)(q - hit - 6));
		p = q;
	}
}

/*
 * Appends the text of a message content to b: a string, or the "text" of
 * every part of type "text" in an array. Other shapes contribute nothing.
 */
static int content_text(json_t *content, struct buf *b)
{
	size_t i;
	json_t *part;

	if (json_is_string(content))
		return buf_append(b, json_string_value(content), json_string_length(content), FP_MAX_OUT);
	if (!json_is_array(content))
		return 0;
	json_array_foreach(content, i, part) {
		json_t *type = json_object_get(part, "type");
		json_t *text = json_object_get(part, "text");
		if (json_is_string(type) && strcmp(json_string_value(type), "text") == 0 &&
		    json_is_string(text)) {
			int rc = buf_append(b, json_string_value(text), json_string_length(text), FP_MAX_OUT);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* Collects directives from the system prompt, then each message in order. */
static void dir_collect(struct directives *d, enum dialect dl, json_t *root)
{
	struct buf t = { 0 };
	json_t *msgs = json_object_get(root, "messages");
	json_t *m;
	size_t i;

	if (dl == D_ANTHROPIC) {
		content_text(json_object_get(root, "system"), &t);
		dir_scan(d, t.p, t.len);
	}
	json_array_foreach(msgs, i, m) {
		t.off = t.len = 0;
		content_text(json_object_get(m, "content"), &t);
		dir_scan(d, t.p, t.len);
	}
	buf_free(&t);
}

/* ---------------------------------------------------------------------- */
/* Validation, modelled on what the real APIs reject                     */
/* ---------------------------------------------------------------------- */

static bool str_is(json_t *j, const char *s)
{
	return json_is_string(j) && strcmp(json_string_value(j), s) == 0;
}

static bool str_in(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

/* The same tool-call id in a list of JSON strings. */
static bool ids_has(json_t *ids, json_t *id)
{
	size_t i;
	json_t *x;

	json_array_foreach(ids, i, x)
		if (json_equal(x, id))
			return true;
	return false;
}

/* Shortens a possibly long client string for an error message. */
#define SHOWN(s) (int)(strlen(s) > 64 ? 64 : strlen(s)), (s)

static bool max_tokens_ok(json_t *root, const char *key, char *msg, size_t msz)
{
	json_t *v = json_object_get(root, key);

	if (!v || json_is_null(v))
		return true;
	if (!json_is_integer(v)) {
		snprintf(msg, msz, "Invalid type for '%s': expected an integer.", key);
		return false;
	}
	if (json_integer_value(v) < 1) {
		snprintf(msg, msz, "Invalid '%s': integer below minimum value. Expected a value >= 1.", key);
		return false;
	}
	return true;
}

static bool oa_validate_parts(json_t *content, size_t i, char *msg, size_t msz)
{
	static const char *const part_types[] = { "text", "image_url", "input_audio", "file",
						  "refusal", NULL };
	json_t *part;
	size_t j;

	json_array_foreach(content, j, part) {
		json_t *type = json_object_get(part, "type");
		if (!json_is_object(part) || !json_is_string(type)) {
			snprintf(msg, msz, "Missing required parameter: 'messages[%zu].content[%zu].type'.", i, j);
			return false;
		}
		if (!str_in(json_string_value(type), part_types)) {
			snprintf(msg, msz,
				 "Invalid value: '%.*s'. Supported values are: 'text', 'image_url', "
				 "'input_audio', 'refusal', and 'file'. (param messages[%zu].content[%zu].type)",
				 SHOWN(json_string_value(type)), i, j);
			return false;
		}
		if (str_is(type, "text") && !json_is_string(json_object_get(part, "text"))) {
			snprintf(msg, msz, "Missing required parameter: 'messages[%zu].content[%zu].text'.", i, j);
			return false;
		}
	}
	return true;
}

/* Checks an OpenAI chat completion request; on failure writes msg. */
static bool oa_validate(json_t *root, char *msg, size_t msz)
{
	static const char *const roles[] = { "system", "developer", "user", "assistant", "tool",
					     "function", NULL };
	json_t *model = json_object_get(root, "model");
	json_t *msgs = json_object_get(root, "messages");
	json_t *tools = json_object_get(root, "tools");
	json_t *stream = json_object_get(root, "stream");
	json_t *pending = NULL;	/* tool_call ids still waiting for a tool message */
	json_t *m, *t;
	size_t i;
	bool ok = false;

	if (!model || json_is_null(model)) {
		snprintf(msg, msz, "you must provide a model parameter");
		return false;
	}
	if (!json_is_string(model)) {
		snprintf(msg, msz, "Invalid type for 'model': expected a string.");
		return false;
	}
	if (!msgs) {
		snprintf(msg, msz, "Missing required parameter: 'messages'.");
		return false;
	}
	if (!json_is_array(msgs)) {
		snprintf(msg, msz, "Invalid type for 'messages': expected an array.");
		return false;
	}
	if (json_array_size(msgs) == 0) {
		snprintf(msg, msz, "Invalid 'messages': empty array. Expected an array with minimum length 1.");
		return false;
	}
	if (!max_tokens_ok(root, "max_tokens", msg, msz) ||
	    !max_tokens_ok(root, "max_completion_tokens", msg, msz))
		return false;
	if (stream && !json_is_null(stream) && !json_is_boolean(stream)) {
		snprintf(msg, msz, "Invalid type for 'stream': expected a boolean.");
		return false;
	}
	if (tools && !json_is_null(tools)) {
		if (!json_is_array(tools)) {
			snprintf(msg, msz, "Invalid type for 'tools': expected an array.");
			return false;
		}
		json_array_foreach(tools, i, t) {
			json_t *fn = json_object_get(t, "function");
			if (!str_is(json_object_get(t, "type"), "function")) {
				snprintf(msg, msz, "Missing required parameter: 'tools[%zu].type'.", i);
				return false;
			}
			if (!json_is_object(fn) || !json_is_string(json_object_get(fn, "name"))) {
				snprintf(msg, msz, "Missing required parameter: 'tools[%zu].function.name'.", i);
				return false;
			}
		}
	}
	json_array_foreach(msgs, i, m) {
		json_t *role = json_object_get(m, "role");
		json_t *content;
		const char *r;

		if (!json_is_object(m)) {
			snprintf(msg, msz, "Invalid type for 'messages[%zu]': expected an object.", i);
			goto out;
		}
		if (!json_is_string(role)) {
			snprintf(msg, msz, "Missing required parameter: 'messages[%zu].role'.", i);
			goto out;
		}
		r = json_string_value(role);
		if (!str_in(r, roles)) {
			snprintf(msg, msz,
				 "Invalid value: '%.*s'. Supported values are: 'system', 'assistant', "
				 "'user', 'function', 'tool', and 'developer'. (param messages[%zu].role)",
				 SHOWN(r), i);
			goto out;
		}
		content = json_object_get(m, "content");
		if (!content || json_is_null(content)) {
			if (strcmp(r, "assistant") != 0) {
				snprintf(msg, msz, "Missing required parameter: 'messages[%zu].content'.", i);
				goto out;
			}
		} else if (json_is_array(content)) {
			if (!oa_validate_parts(content, i, msg, msz))
				goto out;
		} else if (!json_is_string(content)) {
			snprintf(msg, msz,
				 "Invalid type for 'messages[%zu].content': expected one of a string or "
				 "array of objects.", i);
			goto out;
		}
		if (strcmp(r, "tool") == 0) {
			json_t *id = json_object_get(m, "tool_call_id");
			if (!json_is_string(id)) {
				snprintf(msg, msz, "Missing required parameter: 'messages[%zu].tool_call_id'.", i);
				goto out;
			}
			if (!pending || !ids_has(pending, id)) {
				snprintf(msg, msz,
					 "Invalid parameter: messages with role 'tool' must be a response to a "
					 "preceeding message with 'tool_calls'. (param messages[%zu])", i);
				goto out;
			}
			continue;
		}
		if (pending && json_array_size(pending) > 0) {
			/* Every tool call needs its answer before the conversation moves on. */
			bool all = true;
			size_t k;
			json_t *id;
			json_array_foreach(pending, k, id) {
				bool found = false;
				for (size_t b = i; b-- > 0;) {
					json_t *prev = json_array_get(msgs, b);
					if (!str_is(json_object_get(prev, "role"), "tool"))
						break;
					if (json_equal(json_object_get(prev, "tool_call_id"), id))
						found = true;
				}
				all = all && found;
			}
			if (!all) {
				snprintf(msg, msz,
					 "An assistant message with 'tool_calls' must be followed by tool "
					 "messages responding to each 'tool_call_id'. (param messages[%zu])", i);
				goto out;
			}
		}
		json_decref(pending);
		pending = NULL;
		if (strcmp(r, "assistant") == 0) {
			json_t *calls = json_object_get(m, "tool_calls");
			json_t *call;
			size_t k;
			if (calls && !json_is_null(calls)) {
				if (!json_is_array(calls)) {
					snprintf(msg, msz, "Invalid type for 'messages[%zu].tool_calls': expected an array.", i);
					goto out;
				}
				pending = json_array();
				json_array_foreach(calls, k, call) {
					json_t *fn = json_object_get(call, "function");
					json_t *id = json_object_get(call, "id");
					if (!json_is_string(id) || !str_is(json_object_get(call, "type"), "function") ||
					    !json_is_object(fn) || !json_is_string(json_object_get(fn, "name")) ||
					    !json_is_string(json_object_get(fn, "arguments"))) {
						snprintf(msg, msz,
							 "Invalid 'messages[%zu].tool_calls[%zu]': expected id, "
							 "type 'function', function.name and function.arguments (a string).",
							 i, k);
						goto out;
					}
					json_array_append(pending, id);
				}
			}
		}
	}
	ok = true;
out:
	json_decref(pending);
	return ok;
}

/* Checks one Anthropic content block of message i. */
static bool an_validate_block(json_t *blk, size_t i, size_t j, const char *role, json_t *prev_uses,
			      json_t *uses, char *msg, size_t msz)
{
	static const char *const types[] = { "text", "image", "document", "tool_use", "tool_result",
					     "thinking", "redacted_thinking", "server_tool_use",
					     "web_search_tool_result", "search_result", NULL };
	json_t *type = json_object_get(blk, "type");
	const char *t;

	if (!json_is_object(blk) || !json_is_string(type)) {
		snprintf(msg, msz, "messages.%zu.content.%zu.type: Field required", i, j);
		return false;
	}
	t = json_string_value(type);
	if (!str_in(t, types)) {
		snprintf(msg, msz,
			 "messages.%zu.content.%zu: Input tag '%.*s' found using 'type' does not match any "
			 "of the expected tags: 'text', 'image', 'document', 'tool_use', 'tool_result', "
			 "'thinking', 'redacted_thinking', 'server_tool_use', 'web_search_tool_result', "
			 "'search_result'", i, j, SHOWN(t));
		return false;
	}
	if (strcmp(t, "text") == 0) {
		json_t *text = json_object_get(blk, "text");
		if (!json_is_string(text)) {
			snprintf(msg, msz, "messages.%zu.content.%zu.text.text: Field required", i, j);
			return false;
		}
		if (json_string_length(text) == 0) {
			snprintf(msg, msz, "messages: text content blocks must be non-empty");
			return false;
		}
	} else if (strcmp(t, "tool_use") == 0) {
		if (strcmp(role, "assistant") != 0) {
			snprintf(msg, msz,
				 "messages.%zu.content.%zu: tool_use blocks are only allowed in assistant "
				 "messages", i, j);
			return false;
		}
		if (!json_is_string(json_object_get(blk, "id")) ||
		    !json_is_string(json_object_get(blk, "name")) ||
		    !json_is_object(json_object_get(blk, "input"))) {
			snprintf(msg, msz, "messages.%zu.content.%zu.tool_use: id, name and input (an object) are required", i, j);
			return false;
		}
		json_array_append(uses, json_object_get(blk, "id"));
	} else if (strcmp(t, "tool_result") == 0) {
		json_t *id = json_object_get(blk, "tool_use_id");
		if (strcmp(role, "user") != 0) {
			snprintf(msg, msz, "messages.%zu.content.%zu: tool_result blocks are only allowed in user messages", i, j);
			return false;
		}
		if (!json_is_string(id)) {
			snprintf(msg, msz, "messages.%zu.content.%zu.tool_result.tool_use_id: Field required", i, j);
			return false;
		}
		if (!ids_has(prev_uses, id)) {
			snprintf(msg, msz,
				 "messages.%zu.content.%zu: unexpected `tool_use_id` found in `tool_result` "
				 "blocks: %.*s. Each `tool_result` block must have a corresponding `tool_use` "
				 "block in the previous message.", i, j, SHOWN(json_string_value(id)));
			return false;
		}
	}
	return true;
}

/* Checks an Anthropic Messages request; on failure writes msg. */
static bool an_validate(json_t *root, char *msg, size_t msz)
{
	json_t *model = json_object_get(root, "model");
	json_t *mt = json_object_get(root, "max_tokens");
	json_t *msgs = json_object_get(root, "messages");
	json_t *sys = json_object_get(root, "system");
	json_t *tools = json_object_get(root, "tools");
	json_t *stream = json_object_get(root, "stream");
	json_t *prev_uses = json_array();	/* tool_use ids of the previous message */
	json_t *uses = NULL;
	json_t *m, *x;
	const char *prev_role = NULL;
	size_t i, j, n;
	bool ok = false;

	if (!prev_uses) {
		snprintf(msg, msz, "out of memory");
		return false;
	}
	if (!model) {
		snprintf(msg, msz, "model: Field required");
		goto out;
	}
	if (!json_is_string(model)) {
		snprintf(msg, msz, "model: Input should be a valid string");
		goto out;
	}
	if (!mt) {
		snprintf(msg, msz, "max_tokens: Field required");
		goto out;
	}
	if (!json_is_integer(mt)) {
		snprintf(msg, msz, "max_tokens: Input should be a valid integer");
		goto out;
	}
	if (json_integer_value(mt) < 1) {
		snprintf(msg, msz, "max_tokens: Input should be greater than or equal to 1");
		goto out;
	}
	if (!msgs) {
		snprintf(msg, msz, "messages: Field required");
		goto out;
	}
	if (!json_is_array(msgs)) {
		snprintf(msg, msz, "messages: Input should be a valid list");
		goto out;
	}
	n = json_array_size(msgs);
	if (n == 0) {
		snprintf(msg, msz, "messages: at least one message is required");
		goto out;
	}
	if (stream && !json_is_boolean(stream)) {
		snprintf(msg, msz, "stream: Input should be a valid boolean");
		goto out;
	}
	if (sys && !json_is_null(sys) && !json_is_string(sys)) {
		if (!json_is_array(sys)) {
			snprintf(msg, msz, "system: Input should be a valid string or a list of text blocks");
			goto out;
		}
		json_array_foreach(sys, j, x) {
			if (!str_is(json_object_get(x, "type"), "text") ||
			    !json_is_string(json_object_get(x, "text"))) {
				snprintf(msg, msz, "system.%zu: Input should be a text block with a string 'text'", j);
				goto out;
			}
		}
	}
	if (tools && !json_is_null(tools)) {
		if (!json_is_array(tools)) {
			snprintf(msg, msz, "tools: Input should be a valid list");
			goto out;
		}
		json_array_foreach(tools, j, x) {
			json_t *type = json_object_get(x, "type");
			if (!json_is_object(x) || !json_is_string(json_object_get(x, "name"))) {
				snprintf(msg, msz, "tools.%zu.name: Field required", j);
				goto out;
			}
			if ((!type || str_is(type, "custom")) &&
			    !json_is_object(json_object_get(x, "input_schema"))) {
				snprintf(msg, msz, "tools.%zu.custom.input_schema: Field required", j);
				goto out;
			}
		}
	}
	json_array_foreach(msgs, i, m) {
		json_t *role = json_object_get(m, "role");
		json_t *content = json_object_get(m, "content");
		bool final_assistant;
		const char *r;

		if (!json_is_object(m)) {
			snprintf(msg, msz, "messages.%zu: Input should be a valid dictionary", i);
			goto out;
		}
		if (!str_is(role, "user") && !str_is(role, "assistant")) {
			snprintf(msg, msz, "messages.%zu.role: Input should be 'user' or 'assistant'", i);
			goto out;
		}
		r = json_string_value(role);
		if (i == 0 && strcmp(r, "user") != 0) {
			snprintf(msg, msz, "messages: first message must use the \"user\" role");
			goto out;
		}
		if (prev_role && strcmp(prev_role, r) == 0) {
			snprintf(msg, msz,
				 "messages: roles must alternate between \"user\" and \"assistant\", "
				 "but found multiple \"%s\" roles in a row", r);
			goto out;
		}
		final_assistant = i + 1 == n && strcmp(r, "assistant") == 0;
		if (!content) {
			snprintf(msg, msz, "messages.%zu.content: Field required", i);
			goto out;
		}
		if (!json_is_string(content) && !json_is_array(content)) {
			snprintf(msg, msz, "messages.%zu.content: Input should be a valid string or list", i);
			goto out;
		}
		if (!final_assistant &&
		    (json_is_string(content) ? json_string_length(content) : json_array_size(content)) == 0) {
			snprintf(msg, msz,
				 "messages.%zu: all messages must have non-empty content except for the "
				 "optional final assistant message", i);
			goto out;
		}
		uses = json_array();
		if (!uses) {
			snprintf(msg, msz, "out of memory");
			goto out;
		}
		json_array_foreach(content, j, x) {
			if (!an_validate_block(x, i, j, r, prev_uses, uses, msg, msz))
				goto out;
		}
		/* Every tool_use of the previous message needs a tool_result here. */
		json_array_foreach(prev_uses, j, x) {
			bool found = false;
			size_t k;
			json_t *blk;
			json_array_foreach(content, k, blk) {
				if (str_is(json_object_get(blk, "type"), "tool_result") &&
				    json_equal(json_object_get(blk, "tool_use_id"), x))
					found = true;
			}
			if (!found) {
				snprintf(msg, msz,
					 "messages.%zu: `tool_use` ids were found without `tool_result` blocks "
					 "immediately after: %.*s. Each `tool_use` block must have a "
					 "corresponding `tool_result` block in the next message.",
					 i - 1, SHOWN(json_string_value(x)));
				goto out;
			}
		}
		json_decref(prev_uses);
		prev_uses = uses;
		uses = NULL;
		prev_role = r;
	}
	ok = true;
out:
	json_decref(prev_uses);
	json_decref(uses);
	return ok;
}

/* ---------------------------------------------------------------------- */
/* Answers                                                                */
/* ---------------------------------------------------------------------- */

static size_t count_words(const char *s, size_t n)
{
	size_t words = 0;

	for (size_t i = 0; i < n; i++)
		if (!is_ws(s[i]) && (i == 0 || is_ws(s[i - 1])))
			words++;
	return words;
}

/* Bytes of s up to the end of its words-th word. */
static size_t words_prefix(const char *s, size_t n, size_t words)
{
	size_t seen = 0;

	for (size_t i = 0; i < n; i++) {
		if (!is_ws(s[i]) && (i == 0 || is_ws(s[i - 1])))
			seen++;
		if (seen == words && !is_ws(s[i]) && (i + 1 == n || is_ws(s[i + 1])))
			return i + 1;
	}
	return n;
}

/* Appends s without its "@fake:" tokens (and the whitespace after each), trimmed. */
static int strip_directives(struct buf *out, const char *s, size_t n)
{
	struct buf t = { 0 };
	const char *p = s, *end = s + n;
	size_t a, b;
	int rc = 0;

	while (p < end && rc == 0) {
		const char *hit = memmem(p, (size_t)(end - p), "@fake:", 6);
		const char *stop = hit ? hit : end;
		rc = buf_append(&t, p, (size_t)(stop - p), FP_MAX_OUT);
		if (!hit)
			break;
		p = hit;
		while (p < end && !is_ws(*p))
			p++;
		while (p < end && is_ws(*p))
			p++;
	}
	a = 0;
	b = t.len;
	while (a < b && is_ws(t.p[a]))
		a++;
	while (b > a && is_ws(t.p[b - 1]))
		b--;
	if (rc == 0)
		rc = buf_append(out, t.p + a, b - a, FP_MAX_OUT);
	buf_free(&t);
	return rc;
}

/*
 * Splits s into stream pieces: with chunks > 0, that many pieces of about
 * equal size, never inside a UTF-8 sequence; else one piece per word, each
 * word with the whitespace before it. Returns npieces + 1 offsets.
 */
static size_t *split_pieces(const char *s, size_t n, long chunks, size_t *npieces)
{
	size_t *cuts;
	size_t k = 0;

	if (n == 0) {
		cuts = malloc(sizeof(*cuts));
		if (cuts)
			cuts[0] = 0;
		*npieces = 0;
		return cuts;
	}
	if (chunks > 0) {
		size_t want = (size_t)chunks < n ? (size_t)chunks : n;
		cuts = malloc((want + 1) * sizeof(*cuts));
		if (!cuts)
			return NULL;
		cuts[k++] = 0;
		for (size_t i = 1; i < want; i++) {
			size_t at = (size_t)((uint64_t)n * i / want);
			while (at < n && ((unsigned char)s[at] & 0xC0) == 0x80)
				at++;
			if (at > cuts[k - 1] && at < n)
				cuts[k++] = at;
		}
	} else {
		cuts = malloc((count_words(s, n) + 2) * sizeof(*cuts));
		if (!cuts)
			return NULL;
		cuts[k++] = 0;
		for (size_t i = 1; i < n; i++) {
			size_t j = i;
			if (!is_ws(s[i]) || is_ws(s[i - 1]))
				continue;
			while (j < n && is_ws(s[j]))
				j++;
			if (j < n)
				cuts[k++] = i;
		}
	}
	cuts[k] = n;
	*npieces = k;
	return cuts;
}

static bool is_openrouter(void)
{
	return srv.name && strcmp(srv.name, "openrouter") == 0;
}

/* Computes reply, tokens and finish reason of a validated request. */
static int compute_answer(enum dialect dl, json_t *root, const struct directives *d, struct answer *a)
{
	json_t *msgs = json_object_get(root, "messages");
	json_t *tools = json_object_get(root, "tools");
	json_t *last_user = NULL;
	json_t *m, *mt;
	struct buf t = { 0 };
	size_t i, words;
	long max = -1;
	int rc = 0;

	memset(a, 0, sizeof(*a));
	/* Each message costs ceil(bytes / 4) + 1; an Anthropic system prompt counts as one. */
	if (dl == D_ANTHROPIC) {
		json_t *sys = json_object_get(root, "system");
		if (sys && !json_is_null(sys)) {
			rc = content_text(sys, &t);
			a->prompt_tokens += (long)((t.len + 3) / 4) + 1;
		}
	}
	json_array_foreach(msgs, i, m) {
		t.off = t.len = 0;
		if (rc == 0)
			rc = content_text(json_object_get(m, "content"), &t);
		a->prompt_tokens += (long)((t.len + 3) / 4) + 1;
		if (str_is(json_object_get(m, "role"), "user"))
			last_user = m;
	}
	a->has_cost = d->cost.set && is_openrouter();
	a->cost = d->cost.v;
	if (d->tool_call[0] && json_is_array(tools) && json_array_size(tools) > 0) {
		a->tool = d->tool_call;
		a->finish = dl == D_OPENAI ? "tool_calls" : "tool_use";
		if (rc == 0)
			rc = buf_puts(&a->text, FP_TOOL_ARGS);
		a->completion_tokens = (long)((strlen(FP_TOOL_ARGS) + 3) / 4);
		goto out;
	}
	t.off = t.len = 0;
	if (rc == 0 && last_user)
		rc = content_text(json_object_get(last_user, "content"), &t);
	if (rc == 0)
		rc = buf_puts(&a->text, "Echo: ");
	if (rc == 0)
		rc = strip_directives(&a->text, t.p ? t.p : "", t.len);
	words = count_words(a->text.p, a->text.len);
	if (dl == D_OPENAI) {
		mt = json_object_get(root, "max_completion_tokens");
		if (!json_is_integer(mt))
			mt = json_object_get(root, "max_tokens");
	} else {
		mt = json_object_get(root, "max_tokens");
	}
	if (json_is_integer(mt))
		max = (long)json_integer_value(mt);
	if (max >= 0 && (size_t)max < words) {
		a->text.len = words_prefix(a->text.p, a->text.len, (size_t)max);
		words = (size_t)max;
		a->finish = dl == D_OPENAI ? "length" : "max_tokens";
	} else {
		a->finish = dl == D_OPENAI ? "stop" : "end_turn";
	}
	a->completion_tokens = (long)words;
out:
	buf_free(&t);
	return rc;
}

static json_t *oa_usage(long prompt, long completion, bool has_cost, double cost)
{
	json_t *u = json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)prompt,
			      "completion_tokens", (json_int_t)completion, "total_tokens",
			      (json_int_t)(prompt + completion));

	if (u && has_cost)
		json_object_set_new(u, "cost", json_real(cost));
	return u;
}

static json_t *oa_body(json_t *model, uint64_t seq, const struct answer *a)
{
	char id[64], call_id[64];
	json_t *message;
	const char *text = a->text.p ? a->text.p : "";

	snprintf(id, sizeof(id), "chatcmpl-fake-%" PRIu64, seq);
	snprintf(call_id, sizeof(call_id), "call_fake_%" PRIu64, seq);
	if (a->tool)
		message = json_pack("{s:s, s:n, s:[{s:s, s:s, s:{s:s, s:s%}}]}", "role", "assistant",
				    "content", "tool_calls", "id", call_id, "type", "function",
				    "function", "name", a->tool, "arguments", text, a->text.len);
	else
		message = json_pack("{s:s, s:s%}", "role", "assistant", "content", text, a->text.len);
	return json_pack("{s:s, s:s, s:I, s:O, s:[{s:i, s:o, s:s}], s:o}", "id", id, "object",
			 "chat.completion", "created", (json_int_t)time(NULL), "model", model,
			 "choices", "index", 0, "message", message, "finish_reason", a->finish,
			 "usage", oa_usage(a->prompt_tokens, a->completion_tokens, a->has_cost, a->cost));
}

static json_t *an_body(json_t *model, uint64_t seq, const struct answer *a)
{
	char id[64], tool_id[64];
	json_t *block;
	const char *text = a->text.p ? a->text.p : "";

	snprintf(id, sizeof(id), "msg_fake_%" PRIu64, seq);
	snprintf(tool_id, sizeof(tool_id), "toolu_fake_%" PRIu64, seq);
	if (a->tool)
		block = json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "tool_use", "id", tool_id,
				  "name", a->tool, "input", "q", "fake");
	else
		block = json_pack("{s:s, s:s%}", "type", "text", "text", text, a->text.len);
	return json_pack("{s:s, s:s, s:s, s:O, s:[o], s:s, s:n, s:{s:I, s:I}}", "id", id, "type",
			 "message", "role", "assistant", "model", model, "content", block,
			 "stop_reason", a->finish, "stop_sequence", "usage", "input_tokens",
			 (json_int_t)a->prompt_tokens, "output_tokens", (json_int_t)a->completion_tokens);
}

/* ---------------------------------------------------------------------- */
/* Streams                                                                */
/* ---------------------------------------------------------------------- */

/* Appends n bytes to dst, as one chunk when the response is chunked. */
static int frame(struct buf *dst, bool chunked, const char *p, size_t n)
{
	int rc = 0;

	if (chunked && n > 0)
		rc = buf_printf(dst, "%zx\r\n", n);
	if (rc == 0)
		rc = buf_append(dst, p, n, FP_MAX_OUT);
	if (rc == 0 && chunked && n > 0)
		rc = buf_puts(dst, "\r\n");
	return rc;
}

/* Appends one server-sent event ("event: E\n" when E is given); takes obj. */
static int sse_put(struct buf *dst, bool chunked, const char *event, json_t *obj)
{
	struct buf *s = &srv.scratch;
	char *js;
	int rc = 0;

	if (!obj)
		return -ENOMEM;
	js = json_dumps(obj, FP_JSON_FLAGS);
	json_decref(obj);
	if (!js)
		return -ENOMEM;
	s->off = s->len = 0;
	if (event) {
		rc = buf_puts(s, "event: ");
		if (rc == 0)
			rc = buf_puts(s, event);
		if (rc == 0)
			rc = buf_puts(s, "\n");
	}
	if (rc == 0)
		rc = buf_puts(s, "data: ");
	if (rc == 0)
		rc = buf_puts(s, js);
	if (rc == 0)
		rc = buf_puts(s, "\n\n");
	free(js);
	if (rc == 0)
		rc = frame(dst, chunked, s->p, s->len);
	return rc;
}

static int sse_raw(struct buf *dst, bool chunked, const char *text)
{
	return frame(dst, chunked, text, strlen(text));
}

static json_t *oa_chunk(const struct stream *st, json_t *delta, json_t *finish)
{
	json_t *o = json_pack("{s:s, s:s, s:I, s:O, s:[{s:i, s:o, s:o}]}", "id", st->id, "object",
			      "chat.completion.chunk", "created", st->created, "model", st->model,
			      "choices", "index", 0, "delta", delta, "finish_reason", finish);

	if (o && st->include_usage)
		json_object_set_new(o, "usage", json_null());
	return o;
}

/* The events before the first piece. */
static int st_open(const struct stream *st, struct buf *dst)
{
	json_t *delta, *block;
	int rc;

	if (st->dl == D_OPENAI) {
		if (st->tool)
			delta = json_pack("{s:s, s:n, s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "role",
					  "assistant", "content", "tool_calls", "index", 0, "id",
					  st->call_id, "type", "function", "function", "name",
					  st->tool_name, "arguments", "");
		else
			delta = json_pack("{s:s, s:s}", "role", "assistant", "content", "");
		return sse_put(dst, st->chunked, NULL, delta ? oa_chunk(st, delta, json_null()) : NULL);
	}
	rc = sse_put(dst, st->chunked, "message_start",
		     json_pack("{s:s, s:{s:s, s:s, s:s, s:O, s:[], s:n, s:n, s:{s:I, s:i}}}", "type",
			       "message_start", "message", "id", st->id, "type", "message", "role",
			       "assistant", "model", st->model, "content", "stop_reason",
			       "stop_sequence", "usage", "input_tokens",
			       (json_int_t)st->prompt_tokens, "output_tokens", 1));
	if (st->tool)
		block = json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id", st->call_id,
				  "name", st->tool_name, "input");
	else
		block = json_pack("{s:s, s:s}", "type", "text", "text", "");
	if (rc == 0)
		rc = sse_put(dst, st->chunked, "content_block_start",
			     block ? json_pack("{s:s, s:i, s:o}", "type", "content_block_start", "index", 0,
					       "content_block", block)
				   : NULL);
	if (rc == 0)
		rc = sse_put(dst, st->chunked, "ping", json_pack("{s:s}", "type", "ping"));
	return rc;
}

static int st_piece(const struct stream *st, struct buf *dst, size_t i)
{
	const char *p = st->text + st->cuts[i];
	size_t n = st->cuts[i + 1] - st->cuts[i];
	json_t *delta;

	if (st->dl == D_OPENAI) {
		if (st->tool)
			delta = json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", 0, "function",
					  "arguments", p, n);
		else
			delta = json_pack("{s:s%}", "content", p, n);
		return sse_put(dst, st->chunked, NULL, delta ? oa_chunk(st, delta, json_null()) : NULL);
	}
	if (st->tool)
		delta = json_pack("{s:s, s:s%}", "type", "input_json_delta", "partial_json", p, n);
	else
		delta = json_pack("{s:s, s:s%}", "type", "text_delta", "text", p, n);
	return sse_put(dst, st->chunked, "content_block_delta",
		       delta ? json_pack("{s:s, s:i, s:o}", "type", "content_block_delta", "index", 0,
					 "delta", delta)
			     : NULL);
}

/* The events after the last piece, up to [DONE] / message_stop. */
static int st_close(const struct stream *st, struct buf *dst)
{
	int rc;

	if (st->dl == D_OPENAI) {
		rc = sse_put(dst, st->chunked, NULL,
			     oa_chunk(st, json_object(), json_string(st->finish)));
		if (rc == 0 && st->include_usage) {
			json_t *u = json_pack("{s:s, s:s, s:I, s:O, s:[], s:o}", "id", st->id, "object",
					      "chat.completion.chunk", "created", st->created, "model",
					      st->model, "choices", "usage",
					      oa_usage(st->prompt_tokens, st->completion_tokens,
						       st->has_cost, st->cost));
			rc = sse_put(dst, st->chunked, NULL, u);
		}
		if (rc == 0)
			rc = sse_raw(dst, st->chunked, "data: [DONE]\n\n");
		return rc;
	}
	rc = sse_put(dst, st->chunked, "content_block_stop",
		     json_pack("{s:s, s:i}", "type", "content_block_stop", "index", 0));
	if (rc == 0)
		rc = sse_put(dst, st->chunked, "message_delta",
			     json_pack("{s:s, s:{s:s, s:n}, s:{s:I}}", "type", "message_delta", "delta",
				       "stop_reason", st->finish, "stop_sequence", "usage",
				       "output_tokens", (json_int_t)st->completion_tokens));
	if (rc == 0)
		rc = sse_put(dst, st->chunked, "message_stop", json_pack("{s:s}", "type", "message_stop"));
	return rc;
}

static int st_error(const struct stream *st, struct buf *dst)
{
	if (st->dl == D_OPENAI)
		return sse_raw(dst, st->chunked,
			       "data: {\"error\":{\"message\":\"" FP_STREAM_ERROR_MSG
			       "\",\"type\":\"server_error\"}}\n\n");
	return sse_raw(dst, st->chunked,
		       "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
		       "\"message\":\"" FP_STREAM_ERROR_MSG "\"}}\n\n");
}

/* Fills st from a computed answer; takes over a->text. */
static int stream_plan(struct stream *st, enum dialect dl, json_t *model, uint64_t seq,
		       struct answer *a, const struct directives *d)
{
	st->dl = dl;
	st->model = json_incref(model);
	st->created = (json_int_t)time(NULL);
	snprintf(st->id, sizeof(st->id), dl == D_OPENAI ? "chatcmpl-fake-%" PRIu64 : "msg_fake_%" PRIu64, seq);
	snprintf(st->call_id, sizeof(st->call_id),
		 dl == D_OPENAI ? "call_fake_%" PRIu64 : "toolu_fake_%" PRIu64, seq);
	if (a->tool) {
		st->tool = true;
		snprintf(st->tool_name, sizeof(st->tool_name), "%s", a->tool);
	}
	st->text = a->text.p;
	st->text_len = a->text.len;
	memset(&a->text, 0, sizeof(a->text));
	/* Tool arguments always go in one piece. */
	st->cuts = split_pieces(st->text ? st->text : "", st->text_len, st->tool ? 1 : d->chunks,
				&st->npieces);
	if (!st->cuts)
		return -ENOMEM;
	st->chunk_delay_ms = d->chunk_delay_ms;
	st->cut_after = d->cut_after;
	st->error_after = d->error_after;
	st->finish = a->finish;
	st->prompt_tokens = a->prompt_tokens;
	st->completion_tokens = a->completion_tokens;
	st->has_cost = a->has_cost;
	st->cost = a->cost;
	return 0;
}

/* Writes the response head and the opening events, then the pieces. */
static int stream_start(struct conn *c)
{
	struct stream *st = c->st;
	bool close_it = !c->req.keep_alive || !st->chunked;
	int rc;

	rc = buf_printf(&c->out,
			"HTTP/1.1 200 OK\r\nServer: fake_provider\r\nContent-Type: text/event-stream\r\n"
			"Cache-Control: no-cache\r\n%s%s\r\n",
			st->chunked ? "Transfer-Encoding: chunked\r\n" : "",
			close_it ? "Connection: close\r\n" : "");
	if (rc)
		return rc;
	if (close_it)
		c->close_after = true;
	rec_set(c, "status", json_integer(200));
	rc = st_open(st, &c->out);
	if (rc)
		return rc;
	c->state = CONN_STREAM;
	stream_step(c);
	return 0;
}

/* Ends the body: the last chunk, or the close for close-delimited bodies. */
static int stream_end(struct conn *c, const char *outcome)
{
	int rc = 0;

	if (c->st->chunked)
		rc = buf_puts(&c->out, "0\r\n\r\n");
	c->pend_outcome = outcome;
	c->state = CONN_FLUSH;
	return rc;
}

/*
 * Sends pieces until the stream ends or the chunk delay asks to wait. The
 * delay sits between pieces; a cut, an error event or the end follow the
 * piece before them at once.
 */
static void stream_step(struct conn *c)
{
	struct stream *st = c->st;

	for (;;) {
		long sent = (long)st->next;
		bool at_end = st->next == st->npieces;
		int rc;

		if (st->cut_after >= 0 && (sent >= st->cut_after || at_end)) {
			/* No last chunk and no [DONE]: the client sees a broken stream. */
			rec_set(c, "outcome", json_string("cut"));
			c->close_after = true;
			c->state = CONN_FLUSH;
			return;
		}
		if (st->error_after >= 0 && (sent >= st->error_after || at_end)) {
			rc = st_error(st, &c->out);
			if (rc == 0)
				rc = stream_end(c, "error");
			if (rc)
				conn_kill(c, "error");
			return;
		}
		if (at_end) {
			rc = st_close(st, &c->out);
			if (rc == 0)
				rc = stream_end(c, "ok");
			if (rc) {
				conn_kill(c, "error");
				return;
			}
			rec_set(c, "usage", usage_record(st->prompt_tokens, st->completion_tokens));
			return;
		}
		if (st->next > 0 && st->chunk_delay_ms > 0 && !st->waited) {
			st->waited = true;
			if (timer_set(c, st->chunk_delay_ms) == 0)
				return;
		}
		if (st_piece(st, &c->out, st->next)) {
			conn_kill(c, "error");
			return;
		}
		st->next++;
		st->waited = false;
	}
}

/* ---------------------------------------------------------------------- */
/* Dialect endpoints                                                      */
/* ---------------------------------------------------------------------- */

static const char *hdr(const struct conn *c, const char *lname)
{
	return json_string_value(json_object_get(c->req.headers, lname));
}

static bool nonblank(const char *s)
{
	if (!s)
		return false;
	for (; *s; s++)
		if (!is_ws(*s))
			return true;
	return false;
}

/* Checks the credentials headers; on failure sets status and msg. */
static bool auth_ok(const struct conn *c, enum dialect dl, int *status, char *msg, size_t msz)
{
	if (dl == D_OPENAI) {
		const char *a = hdr(c, "authorization");
		if (a && strncasecmp(a, "Bearer ", 7) == 0 && nonblank(a + 7))
			return true;
		*status = 401;
		snprintf(msg, msz,
			 "You didn't provide an API key. You need to provide your API key in an "
			 "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).");
		return false;
	}
	if (!nonblank(hdr(c, "x-api-key"))) {
		*status = 401;
		snprintf(msg, msz, "x-api-key header is required");
		return false;
	}
	if (!nonblank(hdr(c, "anthropic-version"))) {
		*status = 400;
		snprintf(msg, msz, "anthropic-version: header is required");
		return false;
	}
	return true;
}

static json_t *rec_new(const struct conn *c, enum dialect dl, uint64_t seq, json_t *root)
{
	json_t *rec = json_object();
	json_t *model = json_object_get(root, "model");

	if (!rec)
		return NULL;
	json_object_set_new(rec, "seq", json_integer((json_int_t)seq));
	json_object_set_new(rec, "name", json_string(srv.name));
	json_object_set_new(rec, "dialect", json_string(dl == D_OPENAI ? "openai" : "anthropic"));
	json_object_set_new(rec, "path", json_text(c->req.target, strlen(c->req.target)));
	json_object_set_new(rec, "model", model ? json_incref(model) : json_null());
	json_object_set_new(rec, "stream", json_boolean(json_is_true(json_object_get(root, "stream"))));
	json_object_set_new(rec, "arrival_ms", json_real(real_ms()));
	json_object_set_new(rec, "finish_ms", json_null());
	json_object_set_new(rec, "status", json_null());
	json_object_set_new(rec, "outcome", json_null());
	json_object_set_new(rec, "usage", json_null());
	json_object_set_new(rec, "headers", c->req.headers ? json_incref(c->req.headers) : json_object());
	if (root)
		json_object_set_new(rec, "body", json_incref(root));
	else
		json_object_set_new(rec, "body", json_text(c->body.p ? c->body.p : "", c->body.len));
	return rec;
}

/* Decides the answer to a dialect request; it is sent by answer_fire. */
static int plan_dialect(struct conn *c, enum dialect dl, json_t *root, const json_error_t *jerr,
			const struct directives *d, uint64_t seq)
{
	char msg[512];
	struct answer a;
	bool stream = json_is_true(json_object_get(root, "stream"));
	json_t *model;
	int status, rc;

	if (!auth_ok(c, dl, &status, msg, sizeof(msg)))
		return plan_error(c, dl, status, msg, NULL);
	if (!root) {
		snprintf(msg, sizeof(msg), "The request body is not valid JSON: %s (line %d, column %d)",
			 jerr->text, jerr->line, jerr->column);
		return plan_error(c, dl, 400, msg, NULL);
	}
	if (!json_is_object(root))
		return plan_error(c, dl, 400, "The request body must be a JSON object.", NULL);
	if (!(dl == D_OPENAI ? oa_validate(root, msg, sizeof(msg)) : an_validate(root, msg, sizeof(msg))))
		return plan_error(c, dl, 400, msg, NULL);
	if (d->hang) {
		c->pend = PEND_HANG;
		return 0;
	}
	if (d->reset) {
		c->pend = PEND_RESET;
		return 0;
	}
	status = (int)(d->status ? d->status : stream ? d->stream_status : 0);
	if (status) {
		snprintf(msg, sizeof(msg), "fake error: status %d", status);
		return plan_error(c, dl, status, msg, d->retry_after);
	}
	if (d->garbage)
		return plan_response(c, 200, "application/json", FP_GARBAGE, strlen(FP_GARBAGE), NULL,
				     "garbage");
	rc = compute_answer(dl, root, d, &a);
	model = json_object_get(root, "model");
	if (rc == 0 && stream) {
		c->st = calloc(1, sizeof(*c->st));
		rc = c->st ? stream_plan(c->st, dl, model, seq, &a, d) : -ENOMEM;
		if (rc == 0) {
			c->st->include_usage = dl == D_OPENAI &&
				json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
			c->st->chunked = c->req.minor >= 1;
			c->pend = PEND_STREAM;
			c->pend_status = 200;
		}
	} else if (rc == 0) {
		rc = plan_json(c, 200, dl == D_OPENAI ? oa_body(model, seq, &a) : an_body(model, seq, &a),
			       NULL, "ok");
		if (rc == 0)
			c->pend_usage = usage_record(a.prompt_tokens, a.completion_tokens);
	}
	buf_free(&a.text);
	return rc;
}

/* Records a dialect request, plans its answer and starts its delay. */
static void handle_dialect(struct conn *c, enum dialect dl)
{
	struct directives d;
	json_error_t jerr;
	json_t *root = NULL;
	uint64_t seq = ++srv.seq;
	long delay;
	int rc;

	memset(&jerr, 0, sizeof(jerr));
	snprintf(jerr.text, sizeof(jerr.text), "empty body");
	if (c->body.len > 0)
		root = json_loadb(c->body.p, c->body.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
	c->rec = rec_new(c, dl, seq, root);
	if (c->rec)
		rec_push(json_incref(c->rec));
	dir_init(&d);
	if (json_is_object(root))
		dir_collect(&d, dl, root);
	delay = d.delay_ms >= 0 ? d.delay_ms : srv.default_delay_ms;
	rc = plan_dialect(c, dl, root, &jerr, &d, seq);
	json_decref(root);
	if (rc) {
		fp_log("cannot build an answer: %s", strerror(-rc));
		conn_kill(c, "error");
		return;
	}
	schedule_answer(c, delay);
}

/* --fast: a canned answer, no JSON parsing, no record. */
static void handle_fast(struct conn *c, enum dialect dl)
{
	static const char key[] = "@fake:delay_ms=";
	const char *b = c->body.p ? c->body.p : "";
	size_t n = c->body.len;
	const char *hit = memmem(b, n, key, sizeof(key) - 1);
	bool stream = memmem(b, n, "\"stream\":true", 13) || memmem(b, n, "\"stream\": true", 14);
	long delay = srv.default_delay_ms;
	enum fast_kind k;
	long ms;

	if (hit) {
		const char *v = hit + sizeof(key) - 1;
		size_t len = 0;
		while (v + len < b + n && len < 12 && v[len] >= '0' && v[len] <= '9')
			len++;
		if (parse_long(v, len, 0, FP_MAX_DELAY_MS, &ms) == 0)
			delay = ms;
	}
	if (dl == D_ANTHROPIC)
		k = stream ? FAST_ANTHROPIC_STREAM : FAST_ANTHROPIC;
	else if (!stream)
		k = FAST_OPENAI;
	else
		k = memmem(b, n, "include_usage", 13) ? FAST_OPENAI_STREAM_USAGE : FAST_OPENAI_STREAM;
	if (plan_response(c, 200, stream ? "text/event-stream" : "application/json", srv.canned[k].p,
			  srv.canned[k].len, NULL, "ok")) {
		conn_kill(c, "error");
		return;
	}
	schedule_answer(c, delay);
}

/* Builds the --fast canned bodies from the same code as the real answers. */
static int fast_init(void)
{
	static const char *const text = "Echo: fast";
	struct stream st;
	struct directives d;
	struct answer a;
	json_t *model = json_string("fake-model");
	char *s = NULL;
	int rc = -ENOMEM;

	dir_init(&d);
	memset(&a, 0, sizeof(a));
	if (!model)
		return -ENOMEM;
	for (int k = 0; k < FAST_COUNT; k++) {
		enum dialect dl = k >= FAST_ANTHROPIC ? D_ANTHROPIC : D_OPENAI;
		bool stream = k == FAST_OPENAI_STREAM || k == FAST_OPENAI_STREAM_USAGE ||
			      k == FAST_ANTHROPIC_STREAM;

		memset(&a, 0, sizeof(a));
		a.finish = dl == D_OPENAI ? "stop" : "end_turn";
		a.prompt_tokens = 10;
		a.completion_tokens = 2;
		rc = buf_puts(&a.text, text);
		if (rc)
			goto out;
		if (!stream) {
			json_t *body = dl == D_OPENAI ? oa_body(model, 0, &a) : an_body(model, 0, &a);
			s = body ? json_dumps(body, FP_JSON_FLAGS) : NULL;
			json_decref(body);
			rc = s ? buf_puts(&srv.canned[k], s) : -ENOMEM;
			free(s);
			buf_free(&a.text);
			if (rc)
				goto out;
			continue;
		}
		memset(&st, 0, sizeof(st));
		rc = stream_plan(&st, dl, model, 0, &a, &d);
		st.include_usage = k == FAST_OPENAI_STREAM_USAGE;
		if (rc == 0)
			rc = st_open(&st, &srv.canned[k]);
		for (size_t i = 0; rc == 0 && i < st.npieces; i++)
			rc = st_piece(&st, &srv.canned[k], i);
		if (rc == 0)
			rc = st_close(&st, &srv.canned[k]);
		json_decref(st.model);
		free(st.text);
		free(st.cuts);
		if (rc)
			goto out;
	}
	rc = 0;
out:
	buf_free(&a.text);
	json_decref(model);
	return rc;
}

/* ---------------------------------------------------------------------- */
/* HTTP request parsing                                                   */
/* ---------------------------------------------------------------------- */

static enum dialect dialect_of(const char *method, const char *target)
{
	size_t n = strcspn(target, "?");

	if (strcmp(method, "POST") != 0)
		return D_NONE;
	if (ends_with(target, n, "/chat/completions"))
		return D_OPENAI;
	if (ends_with(target, n, "/v1/messages"))
		return D_ANTHROPIC;
	return D_NONE;
}

/*
 * Answers a request that cannot be parsed or is over a limit, then closes:
 * the rest of the stream can no longer be trusted to start a request.
 */
static int http_fail(struct conn *c, int status, const char *msg)
{
	enum dialect dl = c->req.target ? dialect_of(c->req.method, c->req.target) : D_NONE;

	c->req.keep_alive = false;
	if (plan_error(c, dl, status, msg, NULL)) {
		conn_kill(c, NULL);
		return 1;
	}
	answer_fire(c);
	return 1;
}

/* Length of the head (through its empty line) at s, or 0 if incomplete. */
static size_t head_length(const char *s, size_t n)
{
	const char *p = s, *end = s + n;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		if (!nl)
			return 0;
		if (nl + 1 < end && nl[1] == '\n')
			return (size_t)(nl + 2 - s);
		if (nl + 2 < end && nl[1] == '\r' && nl[2] == '\n')
			return (size_t)(nl + 3 - s);
		if (nl + 1 == end || (nl + 2 == end && nl[1] == '\r'))
			return 0;
		p = nl + 1;
	}
	return 0;
}

/* Does the comma-separated header value v list tok (case-insensitive)? */
static bool token_list_has(const char *v, const char *tok)
{
	size_t k = strlen(tok);

	while (*v) {
		size_t n;
		while (*v == ' ' || *v == '\t' || *v == ',')
			v++;
		n = strcspn(v, ",");
		while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
			n--;
		if (n == k && strncasecmp(v, tok, k) == 0)
			return true;
		v += strcspn(v, ",");
	}
	return false;
}

static int parse_request_line(struct conn *c, const char *s, size_t n)
{
	const char *sp1 = memchr(s, ' ', n);
	const char *sp2, *ver;
	size_t mlen, tlen, vlen;

	if (!sp1)
		return http_fail(c, 400, "malformed request line");
	mlen = (size_t)(sp1 - s);
	if (mlen == 0 || mlen >= sizeof(c->req.method))
		return http_fail(c, 400, "malformed request method");
	for (size_t i = 0; i < mlen; i++)
		if (!is_tchar((unsigned char)s[i]))
			return http_fail(c, 400, "malformed request method");
	sp2 = memchr(sp1 + 1, ' ', n - mlen - 1);
	if (!sp2)
		return http_fail(c, 400, "malformed request line");
	tlen = (size_t)(sp2 - sp1 - 1);
	ver = sp2 + 1;
	vlen = n - (size_t)(ver - s);
	if (tlen == 0)
		return http_fail(c, 400, "empty request target");
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)sp1[1 + i] <= 0x20 || sp1[1 + i] == 0x7f)
			return http_fail(c, 400, "malformed request target");
	memcpy(c->req.method, s, mlen);
	c->req.method[mlen] = '\0';
	c->req.target = strndup(sp1 + 1, tlen);
	if (!c->req.target)
		return http_fail(c, 500, "out of memory");
	if (vlen == 8 && memcmp(ver, "HTTP/1.1", 8) == 0)
		c->req.minor = 1;
	else if (vlen == 8 && memcmp(ver, "HTTP/1.0", 8) == 0)
		c->req.minor = 0;
	else if (vlen >= 5 && memcmp(ver, "HTTP/", 5) == 0)
		return http_fail(c, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
	else
		return http_fail(c, 400, "malformed HTTP version");
	return 0;
}

struct head_flags {
	bool conn_close;
	bool conn_keep_alive;
	bool has_te;
};

/* Parses one header line; returns 0, or 1 after http_fail. */
static int parse_header(struct conn *c, const char *s, size_t n, struct head_flags *hf)
{
	const char *colon = memchr(s, ':', n);
	char lname[FP_MAX_NAME];
	const char *v;
	size_t nlen, vlen;
	char *value;
	json_t *old;

	if (s[0] == ' ' || s[0] == '\t')
		return http_fail(c, 400, "obsolete header line folding");
	if (!colon || colon == s)
		return http_fail(c, 400, "malformed header line");
	nlen = (size_t)(colon - s);
	if (nlen >= sizeof(lname))
		return http_fail(c, 431, "header name too long");
	for (size_t i = 0; i < nlen; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!is_tchar(ch))
			return http_fail(c, 400, "malformed header name");
		lname[i] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
	}
	lname[nlen] = '\0';
	v = colon + 1;
	vlen = n - nlen - 1;
	while (vlen > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vlen--;
	}
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	value = strndup(v, vlen);
	if (!value)
		return http_fail(c, 500, "out of memory");
	if (strcmp(lname, "content-length") == 0) {
		long cl;
		int rc = parse_long(value, strlen(value), 0, LONG_MAX, &cl);
		if (rc == -EINVAL || (rc == 0 && c->req.content_length >= 0 && c->req.content_length != cl)) {
			free(value);
			return http_fail(c, 400, "invalid Content-Length");
		}
		if (rc == -ERANGE || cl > FP_MAX_BODY) {
			free(value);
			return http_fail(c, 413, "request body larger than 16 MiB");
		}
		c->req.content_length = cl;
	} else if (strcmp(lname, "transfer-encoding") == 0) {
		const char *last = strrchr(value, ',');
		last = last ? last + 1 : value;
		while (*last == ' ' || *last == '\t')
			last++;
		hf->has_te = true;
		if (strcasecmp(last, "chunked") != 0) {
			free(value);
			return http_fail(c, 501, "unsupported Transfer-Encoding");
		}
		c->req.chunked = true;
	} else if (strcmp(lname, "connection") == 0) {
		hf->conn_close = hf->conn_close || token_list_has(value, "close");
		hf->conn_keep_alive = hf->conn_keep_alive || token_list_has(value, "keep-alive");
	} else if (strcmp(lname, "expect") == 0) {
		if (strcasecmp(value, "100-continue") == 0)
			c->req.expect_continue = true;
	}
	if (c->req.headers) {
		old = json_object_get(c->req.headers, lname);
		if (old) {
			/* Repeated fields join with ", " as RFC 9110 allows. */
			struct buf j = { 0 };
			if (buf_append(&j, json_string_value(old), json_string_length(old), FP_MAX_OUT) == 0 &&
			    buf_puts(&j, ", ") == 0 && buf_append(&j, v, vlen, FP_MAX_OUT) == 0)
				json_object_set_new(c->req.headers, lname, json_text(j.p, j.len));
			buf_free(&j);
		} else {
			json_object_set_new(c->req.headers, lname, json_text(v, vlen));
		}
	}
	free(value);
	return 0;
}

static int request_complete(struct conn *c);

/*
 * Parses the request head when it is complete. Returns 1 on progress
 * (head consumed, or an error answer queued), 0 when more bytes are needed.
 */
static int parse_head(struct conn *c)
{
	struct head_flags hf = { false, false, false };
	const char *s, *end, *line, *eol;
	size_t n, hlen, ll;
	int nheaders = 0;

	/* RFC 9112 lets a server ignore empty lines before a request line. */
	while (buf_pending(&c->in) > 0 &&
	       (c->in.p[c->in.off] == '\r' || c->in.p[c->in.off] == '\n'))
		c->in.off++;
	s = c->in.p + c->in.off;
	n = buf_pending(&c->in);
	if (n == 0)
		return 0;
	hlen = head_length(s, n);
	if (hlen == 0) {
		if (n > FP_MAX_HEAD)
			return http_fail(c, 431, "request head larger than 64 KiB");
		return 0;
	}
	if (hlen > FP_MAX_HEAD)
		return http_fail(c, 431, "request head larger than 64 KiB");
	end = s + hlen;
	eol = memchr(s, '\n', hlen);
	ll = (size_t)(eol - s);
	if (ll > 0 && s[ll - 1] == '\r')
		ll--;
	if (parse_request_line(c, s, ll))
		return 1;
	if (!srv.fast) {
		c->req.headers = json_object();
		if (!c->req.headers)
			return http_fail(c, 500, "out of memory");
	}
	for (line = eol + 1; line < end; line = eol + 1) {
		eol = memchr(line, '\n', (size_t)(end - line));
		ll = (size_t)(eol - line);
		if (ll > 0 && line[ll - 1] == '\r')
			ll--;
		if (ll == 0)
			break;
		if (++nheaders > FP_MAX_HEADERS)
			return http_fail(c, 431, "too many header fields");
		if (parse_header(c, line, ll, &hf))
			return 1;
	}
	c->in.off += hlen;
	c->req.keep_alive = !hf.conn_close && (c->req.minor >= 1 || hf.conn_keep_alive);
	if (hf.has_te && c->req.content_length >= 0) {
		/* RFC 9112 6.3: chunked wins, and the connection must not be reused. */
		c->req.content_length = -1;
		c->req.keep_alive = false;
	}
	if (c->req.chunked) {
		c->req.ch_state = CH_SIZE;
		c->state = CONN_READ_CHUNKED;
	} else if (c->req.content_length > 0) {
		if (buf_reserve(&c->body, (size_t)c->req.content_length + 1, FP_MAX_BODY + 1))
			return http_fail(c, 500, "out of memory");
		c->state = CONN_READ_BODY;
	} else {
		return request_complete(c);
	}
	if (c->req.expect_continue && c->req.minor >= 1 &&
	    buf_puts(&c->out, "HTTP/1.1 100 Continue\r\n\r\n")) {
		conn_kill(c, NULL);
		return 1;
	}
	return 1;
}

static int read_body(struct conn *c)
{
	size_t need = (size_t)c->req.content_length - c->body.len;
	size_t have = buf_pending(&c->in);
	size_t take = have < need ? have : need;

	if (buf_append(&c->body, c->in.p + c->in.off, take, FP_MAX_BODY + 1))
		return http_fail(c, 500, "out of memory");
	c->in.off += take;
	if (c->body.len < (size_t)c->req.content_length)
		return 0;
	return request_complete(c);
}

static int hex_value(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'f')
		return (ch | 0x20) - 'a' + 10;
	return -1;
}

/* Decodes as much of a chunked body as has arrived. */
static int read_chunked(struct conn *c)
{
	struct req *r = &c->req;

	for (;;) {
		const char *s = c->in.p + c->in.off;
		size_t n = buf_pending(&c->in);
		const char *eol;
		size_t ll, size, i, take;

		switch (r->ch_state) {
		case CH_SIZE:
			eol = n ? memchr(s, '\n', n) : NULL;
			if (!eol) {
				if (n > FP_MAX_CHUNK_LINE)
					return http_fail(c, 400, "chunk size line too long");
				return 0;
			}
			ll = (size_t)(eol - s);
			size = 0;
			for (i = 0; i < ll && hex_value(s[i]) >= 0; i++) {
				size = size * 16 + (size_t)hex_value(s[i]);
				if (size > FP_MAX_BODY)
					return http_fail(c, 413, "request body larger than 16 MiB");
			}
			if (i == 0 || (i < ll && s[i] != ';' && s[i] != ' ' && s[i] != '\t' && s[i] != '\r'))
				return http_fail(c, 400, "malformed chunk size");
			c->in.off += ll + 1;
			if (size == 0) {
				r->ch_state = CH_TRAILER;
				break;
			}
			if (c->body.len + size > FP_MAX_BODY)
				return http_fail(c, 413, "request body larger than 16 MiB");
			r->ch_left = size;
			r->ch_state = CH_DATA;
			break;
		case CH_DATA:
			take = n < r->ch_left ? n : r->ch_left;
			if (buf_append(&c->body, s, take, FP_MAX_BODY + 1))
				return http_fail(c, 500, "out of memory");
			c->in.off += take;
			r->ch_left -= take;
			if (r->ch_left > 0)
				return 0;
			r->ch_state = CH_DATA_END;
			break;
		case CH_DATA_END:
			if (n == 0)
				return 0;
			if (s[0] == '\n') {
				c->in.off += 1;
			} else if (s[0] == '\r') {
				if (n < 2)
					return 0;
				if (s[1] != '\n')
					return http_fail(c, 400, "malformed chunk");
				c->in.off += 2;
			} else {
				return http_fail(c, 400, "malformed chunk");
			}
			r->ch_state = CH_SIZE;
			break;
		case CH_TRAILER:
			eol = n ? memchr(s, '\n', n) : NULL;
			if (!eol) {
				if (r->trailer_bytes + n > FP_MAX_HEAD)
					return http_fail(c, 431, "chunked trailer larger than 64 KiB");
				return 0;
			}
			ll = (size_t)(eol - s);
			c->in.off += ll + 1;
			r->trailer_bytes += ll + 1;
			if (r->trailer_bytes > FP_MAX_HEAD)
				return http_fail(c, 431, "chunked trailer larger than 64 KiB");
			if (ll == 0 || (ll == 1 && s[0] == '\r'))
				return request_complete(c);
			break;
		}
	}
}

/* Serves the control endpoints at once; dialect requests get planned. */
static int request_complete(struct conn *c)
{
	const char *method = c->req.method;
	const char *target = c->req.target;
	size_t plen = strcspn(target, "?");
	enum dialect dl = dialect_of(method, target);
	int rc;

	/* A terminating NUL lets the raw body be used as a C string. */
	if (buf_reserve(&c->body, 1, FP_MAX_BODY + 1))
		return http_fail(c, 500, "out of memory");
	c->body.p[c->body.len] = '\0';

	if (dl != D_NONE) {
		if (srv.fast)
			handle_fast(c, dl);
		else
			handle_dialect(c, dl);
		return 1;
	}
	if (strcmp(method, "GET") == 0 && plen == 8 && memcmp(target, "/_health", 8) == 0) {
		rc = plan_response(c, 200, "application/json", "{\"ok\":true}", 11, NULL, NULL);
	} else if (strcmp(method, "GET") == 0 && plen == 10 && memcmp(target, "/_requests", 10) == 0) {
		json_t *arr = json_array();
		char *s;
		for (size_t i = 0; arr && i < srv.rec_count; i++)
			json_array_append(arr, srv.recs[(srv.rec_head + i) % FP_MAX_RECORDS]);
		s = arr ? json_dumps(arr, FP_JSON_FLAGS) : NULL;
		json_decref(arr);
		rc = s ? plan_response(c, 200, "application/json", s, strlen(s), NULL, NULL) : -ENOMEM;
		free(s);
	} else if (strcmp(method, "POST") == 0 && plen == 7 && memcmp(target, "/_reset", 7) == 0) {
		rec_clear();
		rc = plan_response(c, 200, "application/json", "{\"ok\":true}", 11, NULL, NULL);
	} else {
		rc = plan_json(c, 404, error_json(D_NONE, 404, "not found"), NULL, NULL);
	}
	if (rc)
		return http_fail(c, 500, "out of memory");
	answer_fire(c);
	return 1;
}

/* The answer reached the socket: finish the record, then close or go on. */
static void response_done(struct conn *c)
{
	rec_finish(c, c->pend_outcome ? c->pend_outcome : "ok");
	if (c->close_after) {
		conn_kill(c, NULL);
		return;
	}
	req_reset(c);
	/* Idle keep-alive connections should not each hold a large input buffer. */
	if (buf_pending(&c->in) == 0 && c->in.cap > FP_KEEP_OUT_CAP)
		buf_free(&c->in);
	c->state = CONN_READ_HEAD;
}

/* Runs the state machine until it needs input, output room or time. */
static void conn_process(struct conn *c)
{
	while (!c->dead) {
		int rc;

		switch (c->state) {
		case CONN_READ_HEAD:
			rc = parse_head(c);
			break;
		case CONN_READ_BODY:
			rc = read_body(c);
			break;
		case CONN_READ_CHUNKED:
			rc = read_chunked(c);
			break;
		case CONN_FLUSH:
			conn_flush(c);
			if (c->dead || buf_pending(&c->out) > 0)
				return;
			response_done(c);
			rc = 1;
			break;
		default:
			return;
		}
		if (rc == 0)
			return;
	}
}

static void conn_run(struct conn *c)
{
	if (c->dead)
		return;
	conn_process(c);
	if (!c->dead && buf_pending(&c->out) > 0)
		conn_flush(c);
	if (!c->dead)
		conn_update_events(c);
}

static void conn_read(struct conn *c)
{
	/* A few reads per event keep one busy client from starving the rest. */
	for (int i = 0; i < 4 && !c->dead && conn_reading(c); i++) {
		ssize_t n = recv(c->fd, srv.rdbuf, sizeof(srv.rdbuf), 0);
		if (n > 0) {
			if (buf_append(&c->in, srv.rdbuf, (size_t)n, FP_MAX_HEAD + 2 * FP_READ_SIZE)) {
				http_fail(c, 431, "request head larger than 64 KiB");
				return;
			}
			conn_process(c);
			if ((size_t)n < sizeof(srv.rdbuf))
				return;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		conn_kill(c, "client_closed");
		return;
	}
}

static void on_conn_event(struct conn *c, uint32_t ev)
{
	if (c->dead)
		return;
	if (ev & (EPOLLERR | EPOLLHUP)) {
		conn_kill(c, "client_closed");
		return;
	}
	if ((ev & EPOLLRDHUP) &&
	    (c->state == CONN_DELAY || c->state == CONN_HANG || c->state == CONN_STREAM)) {
		conn_kill(c, "client_closed");
		return;
	}
	if ((ev & EPOLLIN) && conn_reading(c))
		conn_read(c);
	conn_run(c);
}

static void on_timer(struct conn *c)
{
	if (c->dead)
		return;
	if (c->state == CONN_DELAY)
		answer_fire(c);
	else if (c->state == CONN_STREAM)
		stream_step(c);
	conn_run(c);
}

static void run_timers(void)
{
	while (srv.heap_len > 0 && srv.heap[0]->deadline <= srv.now) {
		struct conn *c = srv.heap[0];
		timer_cancel(c);
		on_timer(c);
	}
}

static void conn_new(int fd)
{
	struct epoll_event ev = { .events = EPOLLIN };
	struct conn *c = calloc(1, sizeof(*c));
	int one = 1;

	if (!c) {
		close(fd);
		return;
	}
	/* Stream pieces must leave at once, not wait for Nagle. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->fd = fd;
	c->heap_idx = NO_TIMER;
	c->req.content_length = -1;
	c->events = EPOLLIN;
	ev.data.ptr = c;
	if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, fd, &ev)) {
		close(fd);
		free(c);
		return;
	}
	c->next = srv.live;
	if (srv.live)
		srv.live->prev = c;
	srv.live = c;
}

static void on_accept(void)
{
	for (int i = 0; i < 512; i++) {
		int fd = accept4(srv.lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_new(fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Level-triggered accept would spin; wait for a close or a moment. */
			struct epoll_event ev = { .events = 0, .data.ptr = &tag_listen };
			if (!srv.accept_paused)
				fp_log("accept: %s; pausing for %d ms", strerror(errno), FP_ACCEPT_PAUSE_MS);
			if (epoll_ctl(srv.ep, EPOLL_CTL_MOD, srv.lfd, &ev) == 0) {
				srv.accept_paused = true;
				srv.accept_resume = srv.now + FP_ACCEPT_PAUSE_MS * 1000;
			}
		}
		return;
	}
}

/* ---------------------------------------------------------------------- */
/* Start-up and main loop                                                 */
/* ---------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: fake_provider --listen HOST:PORT [--name NAME] [--fast] [--delay-ms N]\n"
		"  --listen HOST:PORT  address to listen on; PORT 0 picks a free port\n"
		"  --name NAME         name in the records; scopes @fake:NAME.KEY=VALUE\n"
		"  --fast              canned answers, nothing recorded (benchmarks)\n"
		"  --delay-ms N        default delay before every dialect answer\n");
}

/* Many slow requests need many fds: take all the hard limit allows. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == rl.rlim_max)
		return;
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		fp_log("setrlimit(RLIMIT_NOFILE): %s", strerror(errno));
}

/* Binds and listens on HOST:PORT ("[v6]:PORT" too). Returns the fd or -1. */
static int listen_on(const char *arg, char *host_out, size_t host_sz, unsigned *port_out)
{
	const char *colon = strrchr(arg, ':');
	char host[256], portstr[8];
	struct addrinfo hints, *res = NULL, *ai;
	size_t hlen;
	long port;
	int fd = -1, one = 1, rc;

	if (!colon || colon == arg) {
		fp_log("--listen wants HOST:PORT, got '%s'", arg);
		return -1;
	}
	if (parse_long(colon + 1, strlen(colon + 1), 0, 65535, &port) != 0) {
		fp_log("bad port in '%s'", arg);
		return -1;
	}
	hlen = (size_t)(colon - arg);
	if (hlen >= sizeof(host) || hlen >= host_sz) {
		fp_log("host too long in '%s'", arg);
		return -1;
	}
	memcpy(host_out, arg, hlen);
	host_out[hlen] = '\0';
	if (hlen >= 2 && arg[0] == '[' && arg[hlen - 1] == ']') {
		memcpy(host, arg + 1, hlen - 2);
		host[hlen - 2] = '\0';
	} else {
		memcpy(host, arg, hlen);
		host[hlen] = '\0';
	}
	snprintf(portstr, sizeof(portstr), "%ld", port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host, portstr, &hints, &res);
	if (rc != 0) {
		fp_log("cannot resolve '%s': %s", host, gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai; ai = ai->ai_next) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0)
			continue;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, FP_BACKLOG) == 0 &&
		    getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
			*port_out = ntohs(ss.ss_family == AF_INET6
						  ? ((struct sockaddr_in6 *)&ss)->sin6_port
						  : ((struct sockaddr_in *)&ss)->sin_port);
			goto out;
		}
		fp_log("cannot listen on %s: %s", arg, strerror(errno));
		close(fd);
		fd = -1;
	}
out:
	freeaddrinfo(res);
	return fd;
}

static int next_timeout(void)
{
	int64_t until = -1;

	if (srv.heap_len > 0)
		until = srv.heap[0]->deadline;
	if (srv.accept_paused && (until < 0 || srv.accept_resume < until))
		until = srv.accept_resume;
	if (until < 0)
		return -1;
	if (until <= srv.now)
		return 0;
	/* Round up: waking early would only cost another turn. */
	until = (until - srv.now + 999) / 1000;
	return until > INT_MAX ? INT_MAX : (int)until;
}

static void on_signal(void)
{
	struct signalfd_siginfo si;

	while (read(srv.sfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			srv.stop = true;
}

static void shutdown_all(void)
{
	while (srv.live)
		conn_kill(srv.live, "client_closed");
	reap_dead();
	rec_clear();
	free(srv.recs);
	free(srv.heap);
	buf_free(&srv.scratch);
	for (int k = 0; k < FAST_COUNT; k++)
		buf_free(&srv.canned[k]);
	if (srv.lfd >= 0)
		close(srv.lfd);
	if (srv.sfd >= 0)
		close(srv.sfd);
	if (srv.ep >= 0)
		close(srv.ep);
}

/* Takes "--opt VALUE" or "--opt=VALUE"; advances *i past what it used. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt)
{
	size_t n = strlen(opt);

	if (strncmp(argv[*i], opt, n) != 0)
		return NULL;
	if (argv[*i][n] == '=')
		return argv[*i] + n + 1;
	if (argv[*i][n] != '\0')
		return NULL;
	if (*i + 1 >= argc) {
		fp_log("%s needs a value", opt);
		exit(2);
	}
	return argv[++*i];
}

int main(int argc, char **argv)
{
	struct epoll_event evs[FP_MAX_EVENTS];
	struct epoll_event ev;
	const char *listen_arg = NULL;
	char host[256];
	unsigned port = 0;
	sigset_t mask;
	const char *v;
	int status = 1;

	srv.lfd = srv.sfd = srv.ep = -1;
	srv.name = "fake";
	for (int i = 1; i < argc; i++) {
		if ((v = opt_value(argc, argv, &i, "--listen"))) {
			listen_arg = v;
		} else if ((v = opt_value(argc, argv, &i, "--name"))) {
			srv.name = v;
		} else if ((v = opt_value(argc, argv, &i, "--delay-ms"))) {
			if (parse_long(v, strlen(v), 0, FP_MAX_DELAY_MS, &srv.default_delay_ms) != 0) {
				fp_log("--delay-ms wants milliseconds, got '%s'", v);
				return 2;
			}
		} else if (strcmp(argv[i], "--fast") == 0) {
			srv.fast = true;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			fp_log("unknown argument '%s'", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (!listen_arg) {
		usage(stderr);
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0) {
		fp_log("sigprocmask: %s", strerror(errno));
		goto out;
	}
	srv.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	srv.ep = epoll_create1(EPOLL_CLOEXEC);
	if (srv.sfd < 0 || srv.ep < 0) {
		fp_log("signalfd/epoll_create1: %s", strerror(errno));
		goto out;
	}
	if (!srv.fast) {
		srv.recs = calloc(FP_MAX_RECORDS, sizeof(*srv.recs));
		if (!srv.recs) {
			fp_log("out of memory");
			goto out;
		}
	} else if (fast_init() != 0) {
		fp_log("cannot build the --fast answers");
		goto out;
	}
	srv.lfd = listen_on(listen_arg, host, sizeof(host), &port);
	if (srv.lfd < 0)
		goto out;
	ev.events = EPOLLIN;
	ev.data.ptr = &tag_listen;
	if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, srv.lfd, &ev) != 0)
		goto out;
	ev.events = EPOLLIN;
	ev.data.ptr = &tag_signal;
	if (epoll_ctl(srv.ep, EPOLL_CTL_ADD, srv.sfd, &ev) != 0)
		goto out;

	printf("listening on %s:%u\n", host, port);
	fflush(stdout);

	srv.now = mono_us();
	while (!srv.stop) {
		int n = epoll_wait(srv.ep, evs, FP_MAX_EVENTS, next_timeout());
		if (n < 0 && errno != EINTR) {
			fp_log("epoll_wait: %s", strerror(errno));
			goto out;
		}
		srv.now = mono_us();
		for (int i = 0; i < n; i++) {
			void *p = evs[i].data.ptr;
			if (p == &tag_listen)
				on_accept();
			else if (p == &tag_signal)
				on_signal();
			else
				on_conn_event(p, evs[i].events);
		}
		run_timers();
		if (srv.accept_paused && srv.now >= srv.accept_resume)
			accept_resume();
		reap_dead();
	}
	status = 0;
out:
	shutdown_all();
	return status;
}
