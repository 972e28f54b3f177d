/*
 * stack_floor.c - the cheapest proxy that llmgwd's HTTP stack allows, the
 * floor under llmgwd's throughput and added latency in make bench.
 *
 * libmicrohttpd in front, run as llmgwd runs it (epoll thread pool,
 * suspend while upstream, resume from the worker), and libcurl multi behind
 * it in worker threads (socket action on an epoll set, kept-alive
 * connections, reused easy handles), with nothing in between: no JSON, no
 * queue, no limits, no cache, no ledger, no access log. Each POST body is
 * sent to --upstream as it came and the upstream's status and body are
 * returned. Then make bench can tell how much of llmgwd's distance to nginx
 * is llmgwd's own work and how much is the stack's.
 *
 * With --front raw, libmicrohttpd is left out: each worker thread accepts on
 * its own SO_REUSEPORT socket and reads and answers its clients itself with
 * a minimal HTTP/1.1 reader (Content-Length bodies, keep-alive, nothing
 * else), so a request never changes threads. That variant is no server
 * anyone should deploy; it tells how much of the floor is libmicrohttpd's.
 *
 *   stack_floor --listen PORT --upstream URL [--http-threads N] [--workers N]
 *               [--front mhd|raw]
 *
 * Runs until SIGTERM or SIGINT. Loopback only.
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define IDLE_EASY_MAX 64
#define LANES_MAX 64
#define LANE_XFERS 256
#define FD_MAX 65536

struct buf {
	char *p;
	size_t len, cap;
};

struct client;

/* One request: read by the front, carried upstream by a worker. */
struct xfer {
	struct MHD_Connection *conn;
	struct client *cl; /* --front raw */
	struct buf req, resp;
	long status;
	int done; /* set by the worker before it resumes the connection */
	struct xfer *next;
};

/* One curl multi of a worker. Like llmgwd, a worker spreads its transfers
 * over lanes of at most LANE_XFERS: curl 7.88 walks every connection to a
 * host when it looks for a free one. */
struct lane {
	struct worker *w;
	CURLM *multi;
	int64_t timer_at_ms; /* -1: no timer */
	int xfers;
};

/* A client connection of the raw front, owned by one worker. */
struct client {
	int fd;
	struct buf in, out;
	size_t out_off;
	struct xfer *x; /* the request upstream, if any */
	int gone;       /* closed while upstream: free when the transfer ends */
};

struct worker {
	pthread_t th;
	int ep, wake, lfd;
	struct lane lanes[LANES_MAX];
	int nlanes;
	pthread_mutex_t lock;
	struct xfer *inbox, *inbox_tail;
	CURL *idle[IDLE_EASY_MAX];
	int nidle;
};

static const char *upstream;
static CURLU *upstream_url; /* parsed once, as llmgwd's workers do */
static struct curl_slist *headers;
static struct worker *workers;
static unsigned nworkers;
static atomic_uint next_worker;
static volatile sig_atomic_t stop;
static struct lane *lane_of[FD_MAX]; /* each curl socket's lane */
static struct client *client_of[FD_MAX]; /* --front raw: each client socket */
static int raw_front;
static unsigned listen_port;

static void raw_answer(struct worker *w, struct xfer *x);

static void die(const char *what)
{
	fprintf(stderr, "stack_floor: %s\n", what);
	exit(1);
}

static int buf_add(struct buf *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 512;
		while (cap < b->len + n)
			cap *= 2;
		char *q = realloc(b->p, cap);
		if (!q)
			return -1;
		b->p = q, b->cap = cap;
	}
	memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

/* ---- worker: libcurl multi on an epoll set ---- */

static size_t on_body(char *p, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	return buf_add(&x->resp, p, size * n) < 0 ? 0 : size * n;
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_socket(CURL *e, curl_socket_t s, int what, void *arg, void *sockp)
{
	(void)e, (void)sockp;
	struct lane *lane = arg;
	if (s < 0 || s >= FD_MAX)
		return -1;
	if (what == CURL_POLL_REMOVE) {
		epoll_ctl(lane->w->ep, EPOLL_CTL_DEL, s, NULL);
		lane_of[s] = NULL;
		return 0;
	}
	lane_of[s] = lane;
	struct epoll_event ev = { .data.fd = s };
	ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
	if (epoll_ctl(lane->w->ep, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
		epoll_ctl(lane->w->ep, EPOLL_CTL_ADD, s, &ev);
	return 0;
}

static int on_timer(CURLM *m, long ms, void *arg)
{
	(void)m;
	((struct lane *)arg)->timer_at_ms = ms < 0 ? -1 : now_ms() + ms;
	return 0;
}

static struct lane *lane_new(struct worker *w)
{
	if (w->nlanes == LANES_MAX)
		return NULL;
	struct lane *l = &w->lanes[w->nlanes];
	if (!(l->multi = curl_multi_init()))
		die("curl_multi_init");
	l->w = w;
	l->timer_at_ms = -1;
	curl_multi_setopt(l->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(l->multi, CURLMOPT_SOCKETDATA, l);
	curl_multi_setopt(l->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(l->multi, CURLMOPT_TIMERDATA, l);
	w->nlanes++;
	return l;
}

static void start(struct worker *w, struct xfer *x)
{
	struct lane *lane = NULL;
	for (int i = 0; i < w->nlanes && !lane; i++)
		if (w->lanes[i].xfers < LANE_XFERS)
			lane = &w->lanes[i];
	if (!lane && !(lane = lane_new(w)))
		lane = &w->lanes[0];
	/* As llmgwd's workers do: a pooled handle keeps the options every
	 * transfer shares; each transfer sets its own. */
	CURL *e = w->nidle ? w->idle[--w->nidle] : NULL;
	if (!e) {
		if (!(e = curl_easy_init()))
			die("curl_easy_init");
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 2048L);
		curl_easy_setopt(e, CURLOPT_CURLU, upstream_url);
	}
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->req.p);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req.len);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	lane->xfers++;
	curl_multi_add_handle(lane->multi, e);
}

static void finish(struct worker *w, struct lane *lane)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(lane->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct xfer *x;
		CURL *e = m->easy_handle;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
		if (m->data.result == CURLE_OK)
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &x->status);
		else
			x->status = 502;
		curl_multi_remove_handle(lane->multi, e);
		lane->xfers--;
		if (w->nidle < IDLE_EASY_MAX) {
			w->idle[w->nidle++] = e;
		} else {
			curl_easy_cleanup(e);
		}
		x->done = 1;
		if (raw_front)
			raw_answer(w, x);
		else
			MHD_resume_connection(x->conn);
	}
}

/* ---- front --front raw: each worker reads and answers its own clients ---- */

static void raw_close(struct client *cl)
{
	client_of[cl->fd] = NULL;
	close(cl->fd);
	if (cl->x) {
		cl->gone = 1;
		return;
	}
	free(cl->in.p);
	free(cl->out.p);
	free(cl);
}

static void raw_flush(struct worker *w, struct client *cl)
{
	while (cl->out_off < cl->out.len) {
		ssize_t n = write(cl->fd, cl->out.p + cl->out_off, cl->out.len - cl->out_off);
		if (n < 0 && errno == EAGAIN) {
			struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.fd = cl->fd };
			epoll_ctl(w->ep, EPOLL_CTL_MOD, cl->fd, &ev);
			return;
		}
		if (n <= 0) {
			raw_close(cl);
			return;
		}
		cl->out_off += (size_t)n;
	}
	cl->out.len = cl->out_off = 0;
}

static void start(struct worker *w, struct xfer *x);

/* Starts the next whole request in cl->in, if there is one. */
static void raw_parse(struct worker *w, struct client *cl)
{
	if (cl->x || cl->in.len < 4)
		return;
	char *end = memmem(cl->in.p, cl->in.len, "\r\n\r\n", 4);
	if (!end)
		return;
	size_t head = (size_t)(end - cl->in.p) + 4, clen = 0;
	for (char *l = memchr(cl->in.p, '\n', head); l && l < end; l = memchr(l + 1, '\n', head)) {
		if (strncasecmp(l + 1, "content-length:", 15) == 0)
			clen = strtoul(l + 16, NULL, 10);
	}
	if (cl->in.len < head + clen)
		return;
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x || buf_add(&x->req, cl->in.p + head, clen) < 0)
		die("out of memory");
	x->cl = cl;
	cl->x = x;
	memmove(cl->in.p, cl->in.p + head + clen, cl->in.len - head - clen);
	cl->in.len -= head + clen;
	start(w, x);
}

static void raw_answer(struct worker *w, struct xfer *x)
{
	struct client *cl = x->cl;
	cl->x = NULL;
	if (cl->gone) {
		free(cl->in.p);
		free(cl->out.p);
		free(cl);
	} else {
		char head[160];
		int n = snprintf(head, sizeof(head),
				 "HTTP/1.1 %ld OK\r\nContent-Type: application/json\r\n"
				 "Content-Length: %zu\r\n\r\n",
				 x->status, x->resp.len);
		if (buf_add(&cl->out, head, (size_t)n) < 0 ||
		    buf_add(&cl->out, x->resp.p, x->resp.len) < 0)
			die("out of memory");
		raw_flush(w, cl);
		if (client_of[cl->fd] == cl)
			raw_parse(w, cl);
	}
	free(x->req.p);
	free(x->resp.p);
	free(x);
}

static void raw_event(struct worker *w, struct client *cl, uint32_t events)
{
	if (events & EPOLLOUT) {
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = cl->fd };
		epoll_ctl(w->ep, EPOLL_CTL_MOD, cl->fd, &ev);
		raw_flush(w, cl);
		if (client_of[cl->fd] != cl)
			return;
	}
	if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
		return;
	char tmp[8192];
	ssize_t n = read(cl->fd, tmp, sizeof(tmp));
	if (n < 0 && errno == EAGAIN)
		return;
	if (n <= 0 || buf_add(&cl->in, tmp, (size_t)n) < 0 || cl->in.len > 65536) {
		raw_close(cl);
		return;
	}
	raw_parse(w, cl);
}

static void raw_accept(struct worker *w)
{
	for (;;) {
		int fd = accept4(w->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct client *cl = calloc(1, sizeof(*cl));
		if (fd >= FD_MAX || !cl) {
			close(fd);
			free(cl);
			continue;
		}
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		cl->fd = fd;
		client_of[fd] = cl;
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
		epoll_ctl(w->ep, EPOLL_CTL_ADD, fd, &ev);
	}
}

static int raw_listen(void)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
	    bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4096) < 0)
		die("cannot listen");
	return fd;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event evs[256];
	int running;
	while (!stop) {
		int64_t now = now_ms(), timeout = 200;
		for (int i = 0; i < w->nlanes; i++) {
			int64_t at = w->lanes[i].timer_at_ms;
			if (at >= 0 && at - now < timeout)
				timeout = at > now ? at - now : 0;
		}
		int n = epoll_wait(w->ep, evs, 256, (int)timeout);
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == w->wake) {
				uint64_t v;
				if (read(w->wake, &v, sizeof(v)) < 0 && errno != EAGAIN)
					die("eventfd read");
				pthread_mutex_lock(&w->lock);
				struct xfer *x = w->inbox;
				w->inbox = w->inbox_tail = NULL;
				pthread_mutex_unlock(&w->lock);
				while (x) {
					struct xfer *next = x->next;
					start(w, x);
					x = next;
				}
				continue;
			}
			if (raw_front && fd == w->lfd) {
				raw_accept(w);
				continue;
			}
			if (raw_front && client_of[fd]) {
				raw_event(w, client_of[fd], evs[i].events);
				continue;
			}
			struct lane *lane = lane_of[fd];
			if (!lane)
				continue;
			int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
				   (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
				   (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
			curl_multi_socket_action(lane->multi, fd, mask, &running);
		}
		now = now_ms();
		for (int i = 0; i < w->nlanes; i++) {
			struct lane *lane = &w->lanes[i];
			if (lane->timer_at_ms >= 0 && lane->timer_at_ms <= now) {
				lane->timer_at_ms = -1;
				curl_multi_socket_action(lane->multi, CURL_SOCKET_TIMEOUT, 0, &running);
			}
			finish(w, lane);
		}
	}
	return NULL;
}

static void hand_to_worker(struct xfer *x)
{
	struct worker *w = &workers[atomic_fetch_add(&next_worker, 1) % nworkers];
	pthread_mutex_lock(&w->lock);
	int was_empty = w->inbox == NULL;
	if (w->inbox_tail)
		w->inbox_tail->next = x;
	else
		w->inbox = x;
	w->inbox_tail = x;
	pthread_mutex_unlock(&w->lock);
	uint64_t one = 1;
	if (was_empty && write(w->wake, &one, sizeof(one)) < 0)
		die("eventfd write");
}

/* ---- front: libmicrohttpd ---- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
				  const char *method, const char *version, const char *data,
				  size_t *size, void **state)
{
	(void)cls, (void)url, (void)version;
	struct xfer *x = *state;
	if (!x) {
		if (strcmp(method, "POST") != 0)
			return MHD_NO;
		if (!(x = calloc(1, sizeof(*x))))
			return MHD_NO;
		x->conn = c;
		*state = x;
		return MHD_YES;
	}
	if (*size) {
		if (buf_add(&x->req, data, *size) < 0)
			return MHD_NO;
		*size = 0;
		return MHD_YES;
	}
	if (!x->done) {
		MHD_suspend_connection(c);
		hand_to_worker(x);
		return MHD_YES;
	}
	struct MHD_Response *r = MHD_create_response_from_buffer(x->resp.len, x->resp.p,
								  MHD_RESPMEM_MUST_FREE);
	if (!r)
		return MHD_NO;
	x->resp.p = NULL;
	MHD_add_response_header(r, "Content-Type", "application/json");
	enum MHD_Result ok = MHD_queue_response(c, (unsigned)x->status, r);
	MHD_destroy_response(r);
	return ok;
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state,
			 enum MHD_RequestTerminationCode why)
{
	(void)cls, (void)c, (void)why;
	struct xfer *x = *state;
	if (!x)
		return;
	free(x->req.p);
	free(x->resp.p);
	free(x);
	*state = NULL;
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

#define USAGE \
	"usage: stack_floor --listen PORT --upstream URL [--http-threads N] [--workers N] " \
	"[--front mhd|raw]"

int main(int argc, char **argv)
{
	unsigned port = 0, http_threads = 2;
	long nw = sysconf(_SC_NPROCESSORS_ONLN);
	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--listen") == 0)
			port = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--upstream") == 0)
			upstream = argv[i + 1];
		else if (strcmp(argv[i], "--http-threads") == 0)
			http_threads = (unsigned)strtoul(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--workers") == 0)
			nw = strtol(argv[i + 1], NULL, 10);
		else if (strcmp(argv[i], "--front") == 0 && strcmp(argv[i + 1], "raw") == 0)
			raw_front = 1;
		else if (strcmp(argv[i], "--front") == 0 && strcmp(argv[i + 1], "mhd") == 0)
			raw_front = 0;
		else
			die(USAGE);
	}
	if (!port || port > 65535 || !upstream || !http_threads || nw < 1 || nw > 64)
		die(USAGE);
	nworkers = (unsigned)nw;
	listen_port = port;
	signal(SIGPIPE, SIG_IGN);
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		die("curl_global_init");
	if (!(upstream_url = curl_url()) ||
	    curl_url_set(upstream_url, CURLUPART_URL, upstream, 0) != CURLUE_OK)
		die("--upstream: not a URL");
	headers = curl_slist_append(NULL, "Content-Type: application/json");
	headers = curl_slist_append(headers, "Expect:");
	if (!(workers = calloc(nworkers, sizeof(*workers))))
		die("out of memory");
	for (unsigned i = 0; i < nworkers; i++) {
		struct worker *w = &workers[i];
		pthread_mutex_init(&w->lock, NULL);
		w->ep = epoll_create1(EPOLL_CLOEXEC);
		w->wake = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		if (w->ep < 0 || w->wake < 0 || !lane_new(w))
			die("worker set-up");
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->wake };
		epoll_ctl(w->ep, EPOLL_CTL_ADD, w->wake, &ev);
		w->lfd = -1;
		if (raw_front) {
			w->lfd = raw_listen();
			ev.data.fd = w->lfd;
			epoll_ctl(w->ep, EPOLL_CTL_ADD, w->lfd, &ev);
		}
		if (pthread_create(&w->th, NULL, worker_main, w) != 0)
			die("pthread_create");
	}
	if (raw_front) {
		fprintf(stderr, "stack_floor: raw front, listening on 127.0.0.1:%u\n", port);
		for (unsigned i = 0; i < nworkers; i++)
			pthread_join(workers[i].th, NULL);
		return 0;
	}
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	struct MHD_Daemon *d = MHD_start_daemon(
		MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0,
		NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
		MHD_OPTION_CONNECTION_LIMIT, 20000u, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		(size_t)(8 * 1024), MHD_OPTION_LISTEN_BACKLOG_SIZE, 4096u,
		MHD_OPTION_THREAD_POOL_SIZE, http_threads, MHD_OPTION_NOTIFY_COMPLETED,
		on_completed, NULL, MHD_OPTION_END);
	if (!d)
		die("cannot listen");
	fprintf(stderr, "stack_floor: listening on 127.0.0.1:%u\n", port);
	while (!stop)
		pause();
	MHD_stop_daemon(d);
	for (unsigned i = 0; i < nworkers; i++)
		pthread_join(workers[i].th, NULL);
	return 0;
}
