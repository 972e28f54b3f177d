/*
 * loadgen.c - the HTTP/1.1 load generator of scripts/bench.sh.
 *
 * It replaces a Node client whose own jitter dominated the measurements:
 * one thread, one epoll loop, non-blocking sockets, one timerfd for every
 * deadline (request due times, /proc sampling, the global timeout), and no
 * library beyond libc. Two modes:
 *
 *   burst  n requests started at once, one per connection (Connection: close).
 *   rate   an open loop: request i is due at t0 + i/R whatever the answers
 *          do, and goes out on an idle keep-alive connection or a new one.
 *
 * It talks to 127.0.0.1 only, every mode is bounded in count and time
 * (--timeout-ms), progress and problems go to stderr, and exactly one JSON
 * line goes to stdout at the end. Latencies are in ms (CLOCK_MONOTONIC);
 * percentiles are nearest-rank over the requests answered 200. A request's
 * send time is when its first byte is written, so for a new connection the
 * connect time counts in send lag, not in "latency".
 *
 * Build: cc -O2 -Wall -Wextra -o loadgen scripts/bench/loadgen.c
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define LG_LINE_KEEP	256		/* bytes of a response line kept for parsing */
#define LG_LINE_LIMIT	65536		/* longest response line accepted */
#define LG_FIELDS_MAX	256		/* header plus trailer fields per response */
#define LG_XHDR_MAX	32		/* --header options */
#define LG_XHDR_BYTES	8192		/* all --header lines together */
#define LG_PATH_MAX	2048
#define LG_REQ_MAX	(LG_PATH_MAX + LG_XHDR_BYTES + 512)
#define LG_EVENTS	1024
#define LG_BATCH	256		/* rate mode: requests sent per loop round */
#define LG_BATCH_CONNS	16		/* rate mode: connections opened per loop round */
#define LG_SAMPLE_NS	20000000LL	/* /proc/PID/status every 20 ms */
#define LG_MAX_REQS	10000000.0	/* requests per run */
#define LG_ERR_LOGGED	5		/* problems logged before only counting */
#define LG_JSON_MAX	4096

enum lg_mode { LG_BURST = 1, LG_RATE = 2 };

/* Keys of the statuses map besides the HTTP codes (100..999). */
enum lg_special { ST_ERROR, ST_TIMEOUT, ST_NO_CONN, ST_UNSENT, ST_NSPECIAL };
static const char *const st_names[ST_NSPECIAL] = { "error", "timeout", "no_conn", "unsent" };

/* Lifecycle of a connection; a request is attached while has_req is set. */
enum conn_state {
	CS_FREE,	/* slot unused, no fd */
	CS_CONNECTING,	/* connect() in progress, waiting for EPOLLOUT */
	CS_WRITING,	/* request partly written, waiting for EPOLLOUT */
	CS_READING,	/* request written, parsing the response */
	CS_IDLE,	/* keep-alive connection in the idle pool (rate mode) */
};

/* Where the response parser is. */
enum resp_state {
	RS_STATUS, RS_HEADER, RS_BODY_LEN, RS_BODY_EOF,
	RS_CHUNK_SIZE, RS_CHUNK_DATA, RS_CHUNK_END, RS_TRAILER,
};

struct conn {
	int fd;
	enum conn_state state;
	enum resp_state rs;
	uint32_t events;	/* epoll interest registered, 0 when none */
	int idle_pos;		/* index in g.idle, -1 when not idle */
	int has_req;
	uint64_t req;		/* index of the attached request */
	int64_t due_ns;		/* its due time (rate) or t0 (burst) */
	int64_t send_ns;	/* when its first byte was written */
	char *own;		/* request bytes owned by this conn (burst), or NULL */
	const char *out;
	size_t out_len, out_off;
	int status, http10, keep_alive, close_after, chunked, have_len;
	uint64_t remain;	/* body or chunk bytes still to skip */
	unsigned nfields;
	size_t line_len, line_bytes;
	char line[LG_LINE_KEEP];
};

/* Fields of /proc/PID/status, in kB (Threads: a count), -1 when unknown. */
enum { PS_RSS, PS_HWM, PS_ANON, PS_FILE, PS_THREADS, PS_N };
static const char *const ps_keys[PS_N] = { "\nVmRSS:", "\nVmHWM:", "\nRssAnon:", "\nRssFile:",
					   "\nThreads:" };

static struct {
	enum lg_mode mode;
	const char *url;
	uint64_t n, max_conns, pid, timeout_ms;
	double rps, seconds, warmup_s;
	char path[LG_PATH_MAX];
	unsigned port;
	struct sockaddr_in addr;
	char xhdr[LG_XHDR_BYTES];
	size_t xhdr_len;
	unsigned nxhdr;
	char rate_req[LG_REQ_MAX];
	size_t rate_req_len;

	int ep, tfd;
	int64_t t0, deadline, armed_ns, next_sample, last_write_ns;
	struct conn *conns, **free_list, **idle;
	size_t nconns, nfree, nidle;
	uint64_t total, warm_n, next_i, in_flight, peak_in_flight, sent, conns_opened;
	uint64_t st_http[1000], st_special[ST_NSPECIAL];
	double *lat_a, *lat_b;	/* ok only: latency, and since_start or from_due */
	size_t nok, lat_cap;
	double max_lag_ms;
	int have_lag, got_response;
	unsigned nerr;

	long before[PS_N], peak[PS_N], after[PS_N], holding_rss;
	char rbuf[65536];
} g = { .ep = -1, .tfd = -1, .timeout_ms = 60000, .warmup_s = 1, .max_conns = 10000 };

static void usage(void)
{
	fprintf(stderr, "usage: loadgen burst --url http://127.0.0.1:PORT/PATH --n N [--pid PID]"
		" [--timeout-ms MS] [--header 'Name: value']...\n"
		"       loadgen rate --url URL --rps R --seconds S [--warmup-s W] [--max-conns C]"
		" [--pid PID] [--timeout-ms MS] [--header 'Name: value']...\n");
}

/* Logs one problem (and strerror(err) if err); after LG_ERR_LOGGED it only counts. */
static void note_err(const char *what, int err)
{
	if (g.nerr++ < LG_ERR_LOGGED)
		fprintf(stderr, "loadgen: %s%s%s\n", what, err ? ": " : "",
			err ? strerror(err) : "");
	else if (g.nerr == LG_ERR_LOGGED + 1)
		fprintf(stderr, "loadgen: further problems are counted, not logged\n");
}

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Parses a whole decimal string into [min, max]. Returns 0 or -1. */
static int parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	unsigned long long v;
	char *end;

	if (*s < '0' || *s > '9') return -1;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max) return -1;
	*out = v;
	return 0;
}

/* Parses a whole finite number into [min, max]. Returns 0 or -1. */
static int parse_dbl(const char *s, double min, double max, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end != '\0' || !(v >= min && v <= max)) return -1;
	*out = v;
	return 0;
}

/* Accepts only http://127.0.0.1[:PORT][/PATH]. Returns 0 or -1. */
static int url_parse(const char *url)
{
	const char *p = url + 7;
	char port[8];
	uint64_t v = 80;
	size_t len;

	if (strncmp(url, "http://", 7) || strncmp(p, "127.0.0.1", 9)) return -1;
	p += 9;
	if (*p == ':') {
		len = strcspn(++p, "/");
		if (len == 0 || len >= sizeof(port)) return -1;
		memcpy(port, p, len);
		port[len] = '\0';
		if (parse_u64(port, 1, 65535, &v) < 0) return -1;
		p += len;
	}
	if (*p != '\0' && *p != '/') return -1;
	if (!*p) p = "/";
	len = strlen(p);
	if (len >= sizeof(g.path)) return -1;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f) return -1;
	memcpy(g.path, p, len + 1);
	g.port = (unsigned)v;
	g.addr.sin_family = AF_INET;
	g.addr.sin_port = htons((uint16_t)v);
	g.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return 0;
}

/* Adds one --header 'Name: value' to every request. Returns 0 or -1. */
static int xhdr_add(const char *h)
{
	size_t name = strcspn(h, ":"), len = strlen(h);
	int n;

	if (name == 0 || name == len || g.nxhdr >= LG_XHDR_MAX || strpbrk(h, "\r\n")) return -1;
	for (size_t i = 0; i < name; i++)
		if ((unsigned char)h[i] <= ' ' || h[i] == 0x7f ||
		    strchr("()<>@,;\\\"/[]?={}", h[i]))
			return -1;
	n = snprintf(g.xhdr + g.xhdr_len, sizeof(g.xhdr) - g.xhdr_len, "%s\r\n", h);
	if (n < 0 || (size_t)n != len + 2 || (size_t)n >= sizeof(g.xhdr) - g.xhdr_len) return -1;
	g.xhdr_len += (size_t)n;
	g.nxhdr++;
	return 0;
}

/* Formats the request with the given tag into buf. Returns its length or -1. */
static int req_format(char *buf, size_t cap, const char *tag, int close)
{
	char body[128];
	int bl, n;

	bl = snprintf(body, sizeof(body), "{\"model\":\"openai/gpt-4o-mini\",\"messages\":"
		      "[{\"role\":\"user\",\"content\":\"bench %s: say hi\"}]}", tag);
	if (bl < 0 || (size_t)bl >= sizeof(body)) return -1;
	n = snprintf(buf, cap, "POST %s HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n"
		     "Content-Type: application/json\r\nX-Service-Name: bench\r\n%s"
		     "Content-Length: %d\r\n%s\r\n%s", g.path, g.port, g.xhdr, bl,
		     close ? "Connection: close\r\n" : "", body);
	return n < 0 || (size_t)n >= cap ? -1 : n;
}

enum opt_kind { OPT_U64, OPT_DBL, OPT_STR, OPT_HDR };

/* The options: name, kind, modes that take it, bounds, destination. */
static const struct opt {
	const char *name;
	enum opt_kind kind;
	unsigned modes;
	double min, max;
	void *dest;
} opts[] = {
	{ "--url", OPT_STR, LG_BURST | LG_RATE, 0, 0, &g.url },
	{ "--header", OPT_HDR, LG_BURST | LG_RATE, 0, 0, NULL },
	{ "--pid", OPT_U64, LG_BURST | LG_RATE, 1, 4194304, &g.pid },
	{ "--timeout-ms", OPT_U64, LG_BURST | LG_RATE, 1, 86400000, &g.timeout_ms },
	{ "--n", OPT_U64, LG_BURST, 1, 1000000, &g.n },
	{ "--rps", OPT_DBL, LG_RATE, 0.001, 1000000, &g.rps },
	{ "--seconds", OPT_DBL, LG_RATE, 0.001, 86400, &g.seconds },
	{ "--warmup-s", OPT_DBL, LG_RATE, 0, 3600, &g.warmup_s },
	{ "--max-conns", OPT_U64, LG_RATE, 1, 1000000, &g.max_conns },
};

/* Fills g from argv and builds the fixed request. Returns 0 or -1 (logged). */
static int args_parse(int argc, char **argv)
{
	const struct opt *o;
	double total;

	if (argc < 2 || (strcmp(argv[1], "burst") && strcmp(argv[1], "rate"))) goto bad;
	g.mode = strcmp(argv[1], "burst") ? LG_RATE : LG_BURST;
	for (int i = 2; i < argc; i += 2) {
		o = NULL;
		for (size_t k = 0; k < sizeof(opts) / sizeof(opts[0]); k++)
			if (!strcmp(argv[i], opts[k].name) && (opts[k].modes & g.mode))
				o = &opts[k];
		if (!o || i + 1 >= argc) {
			fprintf(stderr, "loadgen: unknown option or missing value: %s\n", argv[i]);
			goto bad;
		}
		if ((o->kind == OPT_U64 &&
		     parse_u64(argv[i + 1], (uint64_t)o->min, (uint64_t)o->max, o->dest) < 0) ||
		    (o->kind == OPT_DBL && parse_dbl(argv[i + 1], o->min, o->max, o->dest) < 0) ||
		    (o->kind == OPT_HDR && xhdr_add(argv[i + 1]) < 0)) {
			fprintf(stderr, "loadgen: bad value for %s: %s\n", o->name, argv[i + 1]);
			goto bad;
		}
		if (o->kind == OPT_STR) *(const char **)o->dest = argv[i + 1];
	}
	if (!g.url || (g.mode == LG_BURST && !g.n) || (g.mode == LG_RATE && (!g.rps || !g.seconds)))
		goto bad;
	if (url_parse(g.url) < 0) {
		fprintf(stderr, "loadgen: refusing %s: only http://127.0.0.1[:PORT]/PATH\n", g.url);
		return -1;
	}
	g.total = g.n;
	if (g.mode == LG_RATE) {
		total = g.rps * (g.warmup_s + g.seconds) + 0.5;
		if (total > LG_MAX_REQS) {
			fprintf(stderr, "loadgen: more than %.0f requests\n", LG_MAX_REQS);
			return -1;
		}
		g.total = (uint64_t)total;
		g.warm_n = (uint64_t)(g.rps * g.warmup_s + 0.5);
		if (g.warm_n > g.total) g.warm_n = g.total;
	}
	if (req_format(g.rate_req, sizeof(g.rate_req), "rate", 0) < 0) return -1;
	g.rate_req_len = strlen(g.rate_req);
	return 0;
bad:
	usage();
	return -1;
}

/* Reads the fields of /proc/PID/status into s. Returns 0 or -1. */
static int proc_sample(long s[PS_N])
{
	char path[64], buf[8192], *end;
	const char *p;
	size_t len = 0;
	ssize_t r;
	int fd;

	snprintf(path, sizeof(path), "/proc/%" PRIu64 "/status", g.pid);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return -1;
	while (len < sizeof(buf) - 1 && (r = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)r;
	close(fd);
	buf[len] = '\0';
	for (int k = 0; k < PS_N; k++) {
		s[k] = -1;
		if (!(p = strstr(buf, ps_keys[k]))) continue;
		p += strlen(ps_keys[k]);
		errno = 0;
		s[k] = strtol(p, &end, 10);
		if (errno || end == p || s[k] < 0) s[k] = -1;
	}
	return s[PS_RSS] < 0 ? -1 : 0;
}

/* Folds sample s (NULL: take one now) into the peaks, and the holding RSS. */
static void sample_now(const long *s)
{
	long tmp[PS_N];

	if (!s && proc_sample(tmp) < 0) return;
	if (!s) s = tmp;
	for (int k = 0; k < PS_N; k++)
		if (s[k] > g.peak[k]) g.peak[k] = s[k];
	if (!g.got_response && s[PS_RSS] > g.holding_rss) g.holding_rss = s[PS_RSS];
}

/* Closes c's socket and frees its slot; its request must be finished. */
static void conn_close(struct conn *c)
{
	if (c->state == CS_FREE) return;
	if (c->idle_pos >= 0) {
		g.idle[c->idle_pos] = g.idle[--g.nidle];
		g.idle[c->idle_pos]->idle_pos = c->idle_pos;
		c->idle_pos = -1;
	}
	if (c->fd >= 0) close(c->fd);
	c->fd = -1;
	c->events = 0;
	free(c->own);
	c->own = NULL;
	c->state = CS_FREE;
	if (g.free_list) g.free_list[g.nfree++] = c;
}

/* Records the outcome of c's request: an HTTP status or an lg_special. */
static void req_finish(struct conn *c, int code, int64_t now)
{
	c->has_req = 0;
	g.in_flight--;
	if (g.mode == LG_RATE && c->req < g.warm_n) return;
	if (code < ST_NSPECIAL)
		g.st_special[code]++;
	else
		g.st_http[code]++;
	if (code == 200 && g.nok < g.lat_cap) {
		g.lat_a[g.nok] = (double)(now - c->send_ns) / 1e6;
		g.lat_b[g.nok++] = (double)(now - c->due_ns) / 1e6;
	}
}

/* Fails c's request, if any, as "error" and closes c; logs what (if set) and err. */
static void conn_fail(struct conn *c, const char *what, int err)
{
	if (what) note_err(what, err);
	if (c->has_req) req_finish(c, ST_ERROR, mono_ns());
	conn_close(c);
}

/* Sets the epoll interest of c to ev; on failure fails c. */
static void conn_want(struct conn *c, uint32_t ev)
{
	struct epoll_event e = { .events = ev, .data.ptr = c };

	if (c->events == ev) return;
	if (epoll_ctl(g.ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &e) < 0)
		conn_fail(c, "epoll_ctl", errno);
	else
		c->events = ev;
}

static void resp_reset(struct conn *c)
{
	c->rs = RS_STATUS;
	c->status = c->http10 = c->keep_alive = c->close_after = c->chunked = c->have_len = 0;
	c->remain = 0;
	c->nfields = 0;
	c->line_len = c->line_bytes = 0;
}

/* Attaches request i, due at due, made of len bytes at out, to c. */
static void req_attach(struct conn *c, uint64_t i, int64_t due, const char *out, size_t len)
{
	c->has_req = 1;
	c->req = i;
	c->due_ns = due;
	c->out = out;
	c->out_len = len;
	c->out_off = 0;
	resp_reset(c);
	if (++g.in_flight > g.peak_in_flight) g.peak_in_flight = g.in_flight;
}

/* Writes what is left of c's request, then waits for the response. */
static void conn_write(struct conn *c)
{
	ssize_t n;

	if (c->out_off == 0) {
		c->send_ns = mono_ns();
		if (g.mode == LG_RATE && c->req >= g.warm_n) {
			double lag = (double)(c->send_ns - c->due_ns) / 1e6;
			if (!g.have_lag || lag > g.max_lag_ms) g.max_lag_ms = lag;
			g.have_lag = 1;
		}
	}
	c->state = CS_WRITING;
	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			conn_want(c, EPOLLOUT);
		else if (n < 0)
			conn_fail(c, "send", errno);
		if (n < 0) return;
		c->out_off += (size_t)n;
	}
	c->state = CS_READING;
	if (g.mode == LG_BURST) g.last_write_ns = mono_ns();
	conn_want(c, EPOLLIN);
}

/* Opens a connection for the request attached to c; sends it when connected. */
static void conn_open(struct conn *c)
{
	int one = 1;

	c->state = CS_CONNECTING;
	c->events = 0;
	c->idle_pos = -1;
	if ((c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0) {
		conn_fail(c, "socket", errno);
		return;
	}
	g.conns_opened++;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(c->fd, (struct sockaddr *)&g.addr, sizeof(g.addr)) == 0)
		conn_write(c);
	else if (errno == EINPROGRESS)
		conn_want(c, EPOLLOUT);
	else
		conn_fail(c, "connect", errno);
}

/* Notes the framing headers of the response. Returns 0 or -1. */
static int resp_header(struct conn *c)
{
	char *colon = memchr(c->line, ':', c->line_len), *v;
	size_t nl, vl;

	if (!colon || ++c->nfields > LG_FIELDS_MAX) return -1;
	nl = (size_t)(colon - c->line);
	for (v = colon + 1; *v == ' ' || *v == '\t'; v++)
		;
	for (vl = strlen(v); vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t');)
		v[--vl] = '\0';
	if (nl == 14 && !strncasecmp(c->line, "content-length", 14)) {
		if (c->line_bytes >= LG_LINE_KEEP || parse_u64(v, 0, 1ULL << 50, &c->remain) < 0)
			return -1;
		c->have_len = 1;
	} else if (nl == 17 && !strncasecmp(c->line, "transfer-encoding", 17)) {
		c->chunked = strcasestr(v, "chunked") != NULL;
	} else if (nl == 10 && !strncasecmp(c->line, "connection", 10)) {
		c->close_after |= strcasestr(v, "close") != NULL;
		c->keep_alive |= strcasestr(v, "keep-alive") != NULL;
	}
	return 0;
}

/* Picks the body framing once the head is complete (RFC 9112 section 6.3). */
static int resp_head_end(struct conn *c)
{
	if (c->http10 && !c->keep_alive) c->close_after = 1;
	if (c->status < 200 && c->status != 101) {
		resp_reset(c);	/* an interim answer: the real one follows */
		return 0;
	}
	if (c->status == 204 || c->status == 304) return 1;
	if (c->chunked) {
		c->rs = RS_CHUNK_SIZE;
		return 0;
	}
	if (c->have_len) {
		c->rs = RS_BODY_LEN;
		return c->remain == 0;
	}
	c->close_after = 1;
	c->rs = RS_BODY_EOF;
	return 0;
}

/* Handles one complete line. Returns 1 when the response is done, 0, or -1. */
static int resp_line(struct conn *c)
{
	const char *l = c->line;
	char *end;

	if (c->line_len > 0 && c->line[c->line_len - 1] == '\r') c->line[--c->line_len] = '\0';
	switch (c->rs) {
	case RS_STATUS:
		if (c->line_len < 12 || strncmp(l, "HTTP/1.", 7) || (l[7] != '0' && l[7] != '1') ||
		    l[8] != ' ' || l[9] < '1' || l[9] > '9' || l[10] < '0' || l[10] > '9' ||
		    l[11] < '0' || l[11] > '9' || (c->line_len > 12 && l[12] != ' '))
			return -1;
		c->status = (l[9] - '0') * 100 + (l[10] - '0') * 10 + (l[11] - '0');
		c->http10 = l[7] == '0';
		c->rs = RS_HEADER;
		return 0;
	case RS_HEADER:
		return c->line_len == 0 ? resp_head_end(c) : resp_header(c);
	case RS_CHUNK_SIZE:	/* hex size, then maybe ";extensions" */
		errno = 0;
		c->remain = strtoull(l, &end, 16);
		if (!isxdigit((unsigned char)l[0]) || errno || c->remain > 1ULL << 50 ||
		    (*end && *end != ';' && *end != ' ' && *end != '\t'))
			return -1;
		c->rs = c->remain ? RS_CHUNK_DATA : RS_TRAILER;
		return 0;
	case RS_CHUNK_END:
		c->rs = RS_CHUNK_SIZE;
		return c->line_len == 0 ? 0 : -1;
	case RS_TRAILER:
		if (c->line_len == 0) return 1;
		return ++c->nfields > LG_FIELDS_MAX ? -1 : 0;
	default:
		return -1;
	}
}

/*
 * Feeds n received bytes to c's parser. Returns 1 when the response is
 * complete (*used: the bytes it took), 0 when more is needed, -1 on a
 * protocol error. A line keeps LG_LINE_KEEP bytes; the body is skipped.
 */
static int resp_feed(struct conn *c, const char *p, size_t n, size_t *used)
{
	const char *nl;
	size_t i = 0, k, keep;
	int r = 0;

	while (i < n && r == 0) {
		if (c->rs == RS_BODY_EOF) {
			i = n;
		} else if (c->rs == RS_BODY_LEN || c->rs == RS_CHUNK_DATA) {
			k = n - i < c->remain ? n - i : (size_t)c->remain;
			i += k;
			c->remain -= k;
			if (c->remain == 0 && c->rs == RS_BODY_LEN)
				r = 1;
			else if (c->remain == 0)
				c->rs = RS_CHUNK_END;
		} else {
			nl = memchr(p + i, '\n', n - i);
			k = nl ? (size_t)(nl - (p + i)) : n - i;
			keep = LG_LINE_KEEP - 1 - c->line_len;
			if (keep > k) keep = k;
			memcpy(c->line + c->line_len, p + i, keep);
			c->line_len += keep;
			c->line[c->line_len] = '\0';
			c->line_bytes += k;
			i += k;
			if (c->line_bytes > LG_LINE_LIMIT) return -1;
			if (!nl) break;
			i++;
			r = resp_line(c);
			c->line_len = c->line_bytes = 0;
		}
	}
	*used = i;
	return r;
}

/* Records a complete response; keeps the connection if it may be reused. */
static void resp_done(struct conn *c, int extra_bytes)
{
	g.got_response = 1;
	req_finish(c, c->status, mono_ns());
	if (g.mode == LG_BURST || c->close_after || extra_bytes) {
		conn_close(c);
		return;
	}
	c->state = CS_IDLE;
	c->idle_pos = (int)g.nidle;
	g.idle[g.nidle++] = c;
}

static void conn_read(struct conn *c)
{
	size_t used;
	ssize_t n;
	int r;

	for (;;) {
		n = recv(c->fd, g.rbuf, sizeof(g.rbuf), 0);
		if (n < 0 && errno == EINTR) continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
		if (n == 0 && c->has_req && c->rs == RS_BODY_EOF) {
			resp_done(c, 0);
			return;
		}
		if (n < 0 || (n == 0 && !c->has_req)) {	/* an idle conn closing is fine */
			conn_fail(c, c->has_req ? "recv" : NULL, errno);
			return;
		}
		if (n == 0) {
			conn_fail(c, "connection closed before the answer was complete", 0);
			return;
		}
		if (!c->has_req) {
			conn_fail(c, "unsolicited bytes on an idle connection", 0);
			return;
		}
		if ((r = resp_feed(c, g.rbuf, (size_t)n, &used)) != 0) {
			if (r < 0)
				conn_fail(c, "bad response", 0);
			else
				resp_done(c, used < (size_t)n);
			return;
		}
		if ((size_t)n < sizeof(g.rbuf)) return;
	}
}

static void conn_event(struct conn *c, uint32_t events)
{
	socklen_t len = sizeof(int);
	int err = 0;

	if (c->state == CS_FREE) return;	/* closed earlier in this batch of events */
	if (c->state == CS_CONNECTING) {
		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
		if (err)
			conn_fail(c, "connect", err);
		else if (events & EPOLLOUT)
			conn_write(c);
	} else if (c->state == CS_WRITING) {
		conn_write(c);
	} else {
		conn_read(c);
	}
}

static int64_t due_at(uint64_t i)
{
	return g.t0 + (int64_t)((double)i * 1e9 / g.rps + 0.5);
}

/*
 * Rate mode: sends the requests whose due time has passed, at most
 * LG_BATCH of them and LG_BATCH_CONNS new connections per round, so that
 * answers (which refill the idle pool) are read in between. Unbounded, a
 * stall of the server makes every due request open a connection, each
 * connect() costs more than the interval between requests at 40000/s, and
 * the client falls further behind until it hits --max-conns.
 */
static void dispatch_due(int64_t now)
{
	unsigned batch = 0, opened = 0;
	struct conn *c;
	int64_t due;
	uint64_t i;

	while (g.next_i < g.total && (due = due_at(g.next_i)) <= now && batch++ < LG_BATCH) {
		if (g.nidle == 0 && g.nfree > 0 && opened++ >= LG_BATCH_CONNS) break;
		i = g.next_i++;
		if (g.nidle == 0 && g.nfree == 0) {
			if (i >= g.warm_n) g.st_special[ST_NO_CONN]++;
			continue;
		}
		if (i >= g.warm_n) g.sent++;
		if (g.nidle > 0) {	/* the most recently used idle connection */
			c = g.idle[--g.nidle];
			c->idle_pos = -1;
			req_attach(c, i, due, g.rate_req, g.rate_req_len);
			conn_write(c);
		} else {
			c = g.free_list[--g.nfree];
			req_attach(c, i, due, g.rate_req, g.rate_req_len);
			conn_open(c);
		}
	}
}

/* Burst mode: all n connects in one tight loop at t0. */
static void burst_start(void)
{
	char tag[32];
	struct conn *c;
	int len;

	for (uint64_t i = 0; i < g.n; i++) {
		c = &g.conns[i];
		snprintf(tag, sizeof(tag), "burst %" PRIu64, i);
		len = (c->own = malloc(LG_REQ_MAX)) ? req_format(c->own, LG_REQ_MAX, tag, 1) : -1;
		req_attach(c, i, g.t0, c->own, len < 0 ? 0 : (size_t)len);
		c->state = CS_CONNECTING;	/* so that conn_fail() frees c->own */
		if (len < 0)
			conn_fail(c, "request", ENOMEM);
		else
			conn_open(c);
	}
	g.next_i = g.n;	/* all started: the loop ends when none is in flight */
}

/* The loop: dispatch, sample, arm the timerfd for the next deadline, wait. */
static void loop_run(void)
{
	struct epoll_event ev[LG_EVENTS];
	struct itimerspec its = { { 0, 0 }, { 0, 0 } };
	uint64_t ticks;
	int64_t now, next;
	int n;

	for (;;) {
		now = mono_ns();
		if (now >= g.deadline) {
			fprintf(stderr, "loadgen: timeout after %" PRIu64 " ms, %" PRIu64
				" requests outstanding\n", g.timeout_ms, g.in_flight);
			return;
		}
		if (g.mode == LG_RATE) dispatch_due(now);
		if (g.pid && now >= g.next_sample) {
			sample_now(NULL);
			g.next_sample += LG_SAMPLE_NS;
			if (g.next_sample <= now) g.next_sample = now + LG_SAMPLE_NS;
		}
		if (g.next_i >= g.total && g.in_flight == 0) return;
		next = g.deadline;
		if (g.next_i < g.total && due_at(g.next_i) < next) next = due_at(g.next_i);
		if (g.pid && g.next_sample < next) next = g.next_sample;
		if (next != g.armed_ns) {
			its.it_value.tv_sec = next / 1000000000LL;
			its.it_value.tv_nsec = next % 1000000000LL;
			if (timerfd_settime(g.tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
				note_err("timerfd_settime", errno);
			g.armed_ns = next;
		}
		n = epoll_wait(g.ep, ev, LG_EVENTS, -1);
		if (n < 0 && errno != EINTR) {
			note_err("epoll_wait", errno);
			return;
		}
		for (int i = 0; i < n; i++) {
			if (ev[i].data.ptr)
				conn_event(ev[i].data.ptr, ev[i].events);
			else if (read(g.tfd, &ticks, sizeof(ticks)) >= 0 || errno == EAGAIN)
				g.armed_ns = 0;	/* expired: arm again next round */
		}
	}
}

/* Counts what is still outstanding as timeout (or unsent); closes every conn. */
static void run_finish(int64_t now)
{
	for (size_t i = 0; i < g.nconns; i++) {
		if (g.conns[i].has_req) req_finish(&g.conns[i], ST_TIMEOUT, now);
		conn_close(&g.conns[i]);
	}
	for (; g.next_i < g.total; g.next_i++)
		if (g.next_i >= g.warm_n) g.st_special[ST_UNSENT]++;
}

struct jbuf {
	char b[LG_JSON_MAX];
	size_t len;
	int over;
};

__attribute__((format(printf, 2, 3)))
static void jb_add(struct jbuf *j, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (j->over) return;
	va_start(ap, fmt);
	n = vsnprintf(j->b + j->len, sizeof(j->b) - j->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(j->b) - j->len)
		j->over = 1;
	else
		j->len += (size_t)n;
}

/* Formats ms with 3 decimals into b, or gives "null". */
static const char *ms_str(char b[32], int have, double ms)
{
	if (!have) return "null";
	snprintf(b, 32, "%.3f", ms);
	return b;
}

/* Formats a /proc value into b, or gives "null" when unknown (-1). */
static const char *kb_str(char b[32], long v)
{
	if (v < 0) return "null";
	snprintf(b, 32, "%ld", v);
	return b;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Adds "key":{"n":..,"p50_ms":..,..,"min_ms":..}, nearest rank over v (sorted here). */
static void jb_lat(struct jbuf *j, const char *key, double *v, size_t n)
{
	static const unsigned permille[4] = { 500, 900, 990, 999 };
	char b[6][32];
	const char *p[4];

	qsort(v, n, sizeof(*v), cmp_dbl);
	for (int k = 0; k < 4; k++)	/* the ceil(p * n)-th smallest */
		p[k] = ms_str(b[k], n > 0, n ? v[(permille[k] * n + 999) / 1000 - 1] : 0);
	jb_add(j, ",\"%s\":{\"n\":%zu,\"p50_ms\":%s,\"p90_ms\":%s,\"p99_ms\":%s,\"p999_ms\":%s,"
	       "\"max_ms\":%s,\"min_ms\":%s}", key, n, p[0], p[1], p[2], p[3],
	       ms_str(b[4], n > 0, n ? v[n - 1] : 0), ms_str(b[5], n > 0, n ? v[0] : 0));
}

/* Prints the one result line on stdout. Returns 0 or -1 (logged). */
static int result_print(int64_t wall_ns)
{
	static struct jbuf j;
	const char *sep = "";
	char b[8][32];

	if (g.mode == LG_BURST)
		jb_add(&j, "{\"mode\":\"burst\",\"n\":%" PRIu64, g.n);
	else
		jb_add(&j, "{\"mode\":\"rate\",\"rps\":%.10g,\"seconds\":%.10g,\"sent\":%" PRIu64,
		       g.rps, g.seconds, g.sent);
	jb_add(&j, ",\"ok\":%" PRIu64 ",\"statuses\":{", g.st_http[200]);
	for (int k = 0; k < 1000 + ST_NSPECIAL; k++) {
		uint64_t v = k < 1000 ? g.st_http[k] : g.st_special[k - 1000];

		if (!v) continue;
		if (k < 1000)
			jb_add(&j, "%s\"%d\":%" PRIu64, sep, k, v);
		else
			jb_add(&j, "%s\"%s\":%" PRIu64, sep, st_names[k - 1000], v);
		sep = ",";
	}
	jb_add(&j, "}");
	if (g.mode == LG_BURST) {
		jb_add(&j, ",\"wall_ms\":%.3f,\"connect_spread_ms\":%s", (double)wall_ns / 1e6,
		       ms_str(b[0], g.last_write_ns != 0, (double)(g.last_write_ns - g.t0) / 1e6));
		jb_lat(&j, "latency", g.lat_a, g.nok);
		jb_lat(&j, "since_start", g.lat_b, g.nok);
		jb_add(&j, ",\"before_rss_kb\":%s,\"peak_rss_kb\":%s,\"peak_hwm_kb\":%s,"
		       "\"holding_rss_kb\":%s,\"after_rss_kb\":%s", kb_str(b[1], g.before[PS_RSS]),
		       kb_str(b[2], g.peak[PS_RSS]), kb_str(b[3], g.peak[PS_HWM]),
		       kb_str(b[4], g.holding_rss), kb_str(b[5], g.after[PS_RSS]));
	} else {
		jb_add(&j, ",\"max_send_lag_ms\":%s", ms_str(b[0], g.have_lag, g.max_lag_ms));
		jb_lat(&j, "latency", g.lat_a, g.nok);
		jb_lat(&j, "from_due", g.lat_b, g.nok);
		jb_add(&j, ",\"peak_in_flight\":%" PRIu64 ",\"conns_opened\":%" PRIu64
		       ",\"peak_rss_kb\":%s,\"peak_hwm_kb\":%s", g.peak_in_flight, g.conns_opened,
		       kb_str(b[1], g.peak[PS_RSS]), kb_str(b[2], g.peak[PS_HWM]));
	}
	jb_add(&j, ",\"peak_threads\":%s}\n", kb_str(b[6], g.peak[PS_THREADS]));
	if (j.over) {
		fprintf(stderr, "loadgen: result longer than %d bytes\n", LG_JSON_MAX);
		return -1;
	}
	if (g.peak[PS_RSS] >= 0)
		fprintf(stderr, "loadgen: pid %" PRIu64 " peak RssAnon %ld kB, RssFile %ld kB\n",
			g.pid, g.peak[PS_ANON], g.peak[PS_FILE]);
	fwrite(j.b, 1, j.len, stdout);
	return fflush(stdout) == 0 ? 0 : -1;
}

/* Raises RLIMIT_NOFILE, allocates the connections and the epoll set. Returns 0 or -1. */
static int setup(void)
{
	struct epoll_event tev = { .events = EPOLLIN, .data.ptr = NULL };
	struct rlimit rl;

	signal(SIGPIPE, SIG_IGN);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			fprintf(stderr, "loadgen: setrlimit: %s\n", strerror(errno));
	}
	g.nconns = g.mode == LG_BURST ? g.n : g.max_conns;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < g.nconns + 16)
		fprintf(stderr, "loadgen: only %llu fds: connections beyond that fail as errors\n",
			(unsigned long long)rl.rlim_cur);
	prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);	/* wake at due times, not 50 us late */
	for (int k = 0; k < PS_N; k++)
		g.before[k] = g.peak[k] = g.after[k] = -1;
	g.holding_rss = -1;
	g.lat_cap = g.total - g.warm_n;
	g.conns = calloc(g.nconns, sizeof(*g.conns));
	g.lat_a = malloc((g.lat_cap + 1) * sizeof(double));
	g.lat_b = malloc((g.lat_cap + 1) * sizeof(double));
	if (g.mode == LG_RATE) {
		g.free_list = malloc(g.nconns * sizeof(*g.free_list));
		g.idle = malloc(g.nconns * sizeof(*g.idle));
	}
	if (!g.conns || !g.lat_a || !g.lat_b || (g.mode == LG_RATE && (!g.free_list || !g.idle))) {
		fprintf(stderr, "loadgen: out of memory\n");
		return -1;
	}
	for (size_t i = 0; i < g.nconns; i++) {
		g.conns[i].fd = -1;
		g.conns[i].idle_pos = -1;
		if (g.free_list) g.free_list[g.nfree++] = &g.conns[g.nconns - 1 - i];
	}
	g.ep = epoll_create1(EPOLL_CLOEXEC);
	g.tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (g.ep < 0 || g.tfd < 0 || epoll_ctl(g.ep, EPOLL_CTL_ADD, g.tfd, &tev) < 0) {
		fprintf(stderr, "loadgen: epoll/timerfd: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	int64_t now;
	int rc = 1;

	if (args_parse(argc, argv) < 0) return 2;
	if (setup() < 0) goto out;
	if (g.pid && proc_sample(g.before) == 0)
		sample_now(g.before);
	else if (g.pid)
		fprintf(stderr, "loadgen: cannot read /proc/%" PRIu64 "/status\n", g.pid);
	if (g.mode == LG_BURST)
		fprintf(stderr, "loadgen: burst of %" PRIu64 " to %s\n", g.n, g.url);
	else
		fprintf(stderr, "loadgen: %g req/s for %g s after %g s of warm-up (%" PRIu64
			" requests) to %s\n", g.rps, g.seconds, g.warmup_s, g.total, g.url);
	g.t0 = mono_ns();
	g.deadline = g.t0 + (int64_t)g.timeout_ms * 1000000LL;
	g.next_sample = g.t0 + LG_SAMPLE_NS;
	if (g.mode == LG_BURST) burst_start();
	loop_run();
	now = mono_ns();
	run_finish(now);
	if (g.pid && proc_sample(g.after) == 0) sample_now(g.after);
	fprintf(stderr, "loadgen: done in %.3f ms, %" PRIu64 " ok, %u problems\n",
		(double)(now - g.t0) / 1e6, g.st_http[200], g.nerr);
	if (result_print(now - g.t0) == 0) rc = 0;
out:
	for (size_t i = 0; g.conns && i < g.nconns; i++)
		conn_close(&g.conns[i]);
	free(g.conns);
	free(g.lat_a);
	free(g.lat_b);
	free(g.free_list);
	free(g.idle);
	if (g.ep >= 0) close(g.ep);
	if (g.tfd >= 0) close(g.tfd);
	return rc;
}
