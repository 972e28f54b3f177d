/*
 * worker.c - worker threads: epoll + libcurl multi (socket interface),
 * so connections to a provider are reused across the jobs a thread runs.
 * See worker.h.
 *
 * A thread splits its transfers over "lanes", one multi handle each, of
 * at most LANE_XFERS transfers: curl 7.88 looks for a free connection by
 * walking every connection its multi holds to that host, which at
 * thousands of calls in flight cost more than the rest of a request.
 *
 * Each transfer (struct xfer) belongs to exactly one worker thread from
 * start to end; only the inbox and the abort flag cross threads, under
 * the worker's lock, with an eventfd to wake the loop.
 */
#include "worker.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "beat.h"
#include "log.h"
#include "scheduler.h"
#include "sse.h"

#define MAX_EVENTS 256
#define RETRY_AFTER_MAX_S 3600

/* Easy handles kept per worker: a new one costs kilobytes of allocation
 * and initialisation, a reset one only the options. */
#define IDLE_EASY_MAX 64
/* The least connection cache a lane keeps (webhooks, small configs). */
#define MIN_CONNS 64
/* A new lane opens when every lane holds this many transfers. */
#define LANE_XFERS 256
#define LANES_MAX 64

struct worker;

/* One curl multi handle of a worker, with its own connections and timer. */
struct lane {
	struct worker *w;
	CURLM *multi;
	int64_t timer_at_us;       /* curl's next timeout, -1: none */
	unsigned running;          /* transfers added and not yet removed */
};

/*
 * The upstream header lists of one configuration. A reload makes a new
 * set; transfers started under the old one keep it (curl may send the
 * headers again, on a retried connection) until the last of them ends.
 */
struct hdrset {
	struct gw_config *conf;    /* a ref */
	struct curl_slist *list[GW_PROV_COUNT];
	/* Each provider's call URL, parsed once (provider_url). */
	CURLU *url[GW_PROV_COUNT];
	char *url_text[GW_PROV_COUNT];
	unsigned users;            /* transfers using it, +1 while it is current */
};

/*
 * What the worker's epoll set holds for one socket. Sockets curl opened
 * through open_sock stay registered between transfers on a kept-alive
 * connection ("parked": registered, curl not interested), which saves an
 * EPOLL_CTL_ADD and a DEL per request; close_sock forgets them. Other
 * sockets curl hands us (its resolver's) are added and removed exactly as
 * curl says, since we would not see them closed.
 */
struct sock {
	struct lane *lane; /* whose multi handle the socket belongs to */
	bool owned;     /* opened by open_sock, closed by close_sock */
	bool reg;       /* in the epoll set */
	bool want;      /* curl wants its events */
	uint32_t events;
};

struct xfer {
	struct xfer *next;
	struct xfer *prev;
	struct worker *w;
	struct lane *lane;
	CURL *easy;
	struct gw_job *job;
	struct curl_slist *hdrs;   /* webhook posts only; jobs use hdrset's lists */
	struct hdrset *hdrset;     /* jobs: the header lists in use */
	struct gw_upstream_req req;
	struct gw_buf resp;
	int retry_after_s;         /* from the upstream answer, -1: none */
	struct gw_sse_xlate *xl;   /* streamed jobs: upstream events -> client chunks */
	struct gw_buf chunk;       /* scratch for one write callback's client bytes */
	bool stream_error;         /* the translator refused the stream */
	long http_code;            /* known once headers arrived (streams) */
	bool deadline_limited;     /* the curl timeout is the job's deadline */
	unsigned timeout_ms;
	int64_t started_us;
	char errbuf[CURL_ERROR_SIZE];
	struct post *post;         /* set for a webhook POST: no job */
};

/* A fire-and-forget POST waiting in a worker's inbox. */
struct post {
	struct post *next;
	char *url;
	char *body;
};

struct worker {
	struct gw_workers *pool;
	unsigned index;
	pthread_t thread;
	bool started;
	int epfd;
	int evfd;
	struct lane lanes[LANES_MAX]; /* lanes[0] always exists; more on demand */
	unsigned n_lanes;
	struct xfer *xfers;        /* in flight, this thread only */
	struct sock *socks;        /* by fd, this thread only */
	size_t n_socks;
	CURL *idle_easy[IDLE_EASY_MAX]; /* upstream handles kept for the next call (easy_get) */
	unsigned n_idle_easy;
	struct hdrset *hdrs;            /* the current configuration's header lists */

	int guest_fd;              /* the guest loop's descriptor, or -1 */
	bool local_in;             /* jobs this thread dispatched to itself */

	pthread_mutex_t lock;      /* guards inbox, stop, abort */
	struct gw_job *in_head;
	struct gw_job *in_tail;
	struct post *posts;
	bool stop;
	bool abort;
};

struct gw_workers {
	struct gw_sched *sched;
	unsigned n;
	atomic_uint next;
	struct worker *w;
	struct gw_worker_guest guest; /* run is NULL without one */
};

/* The worker the calling thread is, if it is one. */
static __thread struct worker *current_worker;

int gw_workers_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

void gw_workers_global_cleanup(void)
{
	curl_global_cleanup();
}

static void wake(struct worker *w)
{
	uint64_t one = 1;
	ssize_t r = write(w->evfd, &one, sizeof(one));
	(void)r; /* a full counter still wakes the loop */
}

static struct sock *sock_at(struct worker *w, curl_socket_t fd)
{
	if (fd < 0)
		return NULL;
	if ((size_t)fd >= w->n_socks) {
		size_t n = w->n_socks ? w->n_socks : 64;
		while (n <= (size_t)fd)
			n *= 2;
		struct sock *ns = realloc(w->socks, n * sizeof(*ns));
		if (!ns)
			return NULL;
		memset(ns + w->n_socks, 0, (n - w->n_socks) * sizeof(*ns));
		w->socks = ns;
		w->n_socks = n;
	}
	return &w->socks[fd];
}

static curl_socket_t open_sock(void *clientp, curlsocktype purpose, struct curl_sockaddr *a)
{
	(void)purpose;
	struct worker *w = clientp;
	curl_socket_t fd = socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	struct sock *sk = fd >= 0 ? sock_at(w, fd) : NULL;
	if (sk)
		*sk = (struct sock){ .owned = true };
	return fd;
}

static int close_sock(void *clientp, curl_socket_t fd)
{
	struct worker *w = clientp;
	if (fd >= 0 && (size_t)fd < w->n_socks)
		w->socks[fd] = (struct sock){ 0 };
	return close(fd); /* the kernel drops it from the epoll set */
}

static void sock_forget(struct worker *w, struct sock *sk, curl_socket_t fd)
{
	/* The socket may already be closed; EBADF/ENOENT are fine. */
	epoll_ctl(w->epfd, EPOLL_CTL_DEL, fd, NULL);
	sk->reg = false;
	sk->want = false;
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	(void)easy;
	(void)socketp;
	struct lane *lane = userp;
	struct worker *w = lane->w;
	struct sock *sk = sock_at(w, s);
	if (!sk) {
		/* Without an entry its events could not find the lane. */
		epoll_ctl(w->epfd, EPOLL_CTL_DEL, s, NULL);
		return what == CURL_POLL_REMOVE ? 0 : -1;
	}
	sk->lane = lane;
	if (what == CURL_POLL_REMOVE) {
		if (sk->owned && sk->reg)
			sk->want = false; /* parked until curl wants it again or closes it */
		else if (sk->reg)
			sock_forget(w, sk, s);
		return 0;
	}
	struct epoll_event ev = { 0 };
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) | ((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (sk->reg && sk->events == ev.events) {
		sk->want = true;
		return 0;
	}
	int op = !sk->reg ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
	int rc = epoll_ctl(w->epfd, op, s, &ev);
	if (rc < 0 && errno == ENOENT)
		rc = epoll_ctl(w->epfd, EPOLL_CTL_ADD, s, &ev);
	else if (rc < 0 && errno == EEXIST)
		rc = epoll_ctl(w->epfd, EPOLL_CTL_MOD, s, &ev);
	sk->reg = rc == 0;
	sk->want = rc == 0;
	sk->events = ev.events;
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	struct lane *lane = userp;
	lane->timer_at_us = timeout_ms < 0 ? -1 : gw_now_us() + (int64_t)timeout_ms * 1000;
	return 0;
}

static void lane_setup(struct worker *w, struct lane *lane, long maxconnects)
{
	lane->w = w;
	lane->timer_at_us = -1;
	lane->running = 0;
	curl_multi_setopt(lane->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
	curl_multi_setopt(lane->multi, CURLMOPT_SOCKETDATA, lane);
	curl_multi_setopt(lane->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	curl_multi_setopt(lane->multi, CURLMOPT_TIMERDATA, lane);
	/* Keep idle connections to providers for reuse. */
	curl_multi_setopt(lane->multi, CURLMOPT_MAXCONNECTS, maxconnects);
}

/* The connection cache each lane keeps under the worker's configuration. */
static long lane_maxconnects(const struct worker *w)
{
	long conns = 0;
	for (int p = 0; w->hdrs && p < GW_PROV_COUNT; p++)
		conns += (long)w->hdrs->conf->prov[p].concurrent;
	return conns > MIN_CONNS ? conns : MIN_CONNS;
}

/* The lane for a new transfer: the least busy, or a new one when every
 * lane is full (or the first lane when a new one cannot be made). */
static struct lane *lane_pick(struct worker *w)
{
	struct lane *best = &w->lanes[0];
	for (unsigned i = 1; i < w->n_lanes; i++)
		if (w->lanes[i].running < best->running)
			best = &w->lanes[i];
	if (best->running < LANE_XFERS || w->n_lanes == LANES_MAX)
		return best;
	struct lane *nl = &w->lanes[w->n_lanes];
	nl->multi = curl_multi_init();
	if (!nl->multi)
		return best;
	lane_setup(w, nl, lane_maxconnects(w));
	w->n_lanes++;
	return nl;
}

/* Adds x's handle to a lane; -1 when curl refuses it. */
static int lane_add(struct worker *w, struct xfer *x)
{
	struct lane *lane = lane_pick(w);
	if (curl_multi_add_handle(lane->multi, x->easy) != CURLM_OK)
		return -1;
	x->lane = lane;
	lane->running++;
	return 0;
}

/*
 * A 200 stream's bytes go through the translator to the client as they
 * arrive. Before the first client byte a translator error is still
 * retryable; after it, the error event is the stream's last word.
 */
static size_t stream_write(struct xfer *x, const char *ptr, size_t n)
{
	struct gw_job *job = x->job;
	x->chunk.len = 0;
	int rc = gw_sse_xlate_feed(x->xl, ptr, n, &x->chunk);
	if (rc < 0) {
		x->stream_error = true;
		if (gw_job_started(job))
			gw_job_stream_push(job, x->chunk.data, x->chunk.len, true, true);
		return 0; /* abort the transfer */
	}
	if (x->chunk.len > 0 &&
	    gw_job_stream_push(job, x->chunk.data, x->chunk.len, false, false) < 0)
		return 0;
	return n;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nmemb;
	if (x->xl) {
		if (x->http_code == 0)
			curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &x->http_code);
		if (x->http_code == 200)
			return stream_write(x, ptr, n);
	}
	if (gw_buf_append(&x->resp, ptr, n) < 0)
		return 0; /* over the upstream body bound: abort the transfer */
	return n;
}

/* Streams: a client that left cancels the upstream transfer. */
static int progress_cb(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	struct xfer *x = userdata;
	return gw_job_client_gone(x->job) ? 1 : 0;
}

static size_t header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct xfer *x = userdata;
	size_t n = size * nitems;
	if (n > 5 && strncmp(buf, "HTTP/", 5) == 0) {
		x->retry_after_s = -1; /* a new response (after 100 Continue) */
		return n;
	}
	static const char name[] = "retry-after:";
	if (n > sizeof(name) - 1 && strncasecmp(buf, name, sizeof(name) - 1) == 0) {
		char val[32];
		size_t vlen = n - (sizeof(name) - 1);
		if (vlen >= sizeof(val))
			vlen = sizeof(val) - 1;
		memcpy(val, buf + sizeof(name) - 1, vlen);
		val[vlen] = '\0';
		char *p = val, *end;
		while (*p == ' ' || *p == '\t')
			p++;
		errno = 0;
		unsigned long v = strtoul(p, &end, 10);
		if (!errno && end != p && (*end == '\r' || *end == '\n' || *end == '\0' || *end == ' '))
			x->retry_after_s = v > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (int)v;
	}
	return n;
}

static void hdrset_put(struct hdrset *h)
{
	if (!h || --h->users > 0)
		return;
	for (int p = 0; p < GW_PROV_COUNT; p++) {
		curl_slist_free_all(h->list[p]);
		curl_url_cleanup(h->url[p]);
		free(h->url_text[p]);
	}
	gw_config_unref(h->conf);
	free(h);
}

/*
 * A handle for a new transfer, with the worker's socket callbacks set.
 * Upstream calls (pooled) take a handle that carries the options every
 * call shares, set once when it was made; curl_easy_reset between calls
 * and setting them again was about 5 % of a call's instructions. Each
 * call sets all of its own options (start_xfer), so nothing of the
 * previous one is left to leak into it. Webhook posts get a fresh handle
 * and do not return it.
 */
static CURL *easy_get(struct worker *w, bool pooled)
{
	if (pooled && w->n_idle_easy)
		return w->idle_easy[--w->n_idle_easy];
	CURL *e = curl_easy_init();
	if (!e)
		return NULL;
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, open_sock);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, w);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, close_sock);
	curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, w);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	if (pooled) {
		curl_easy_setopt(e, CURLOPT_POST, 1L);
		curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
		curl_easy_setopt(e, CURLOPT_USERAGENT, "llmgw/" GW_VERSION);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e, CURLOPT_XFERINFOFUNCTION, progress_cb);
		/* LLM answers arrive in small pieces; curl's default 16 KiB
		 * receive buffer per transfer was most of what a waiting call
		 * costs. 2 KiB holds a short answer or a stream event in one
		 * read; 5000 waiting calls hold 10 MB less than at 4 KiB. */
		curl_easy_setopt(e, CURLOPT_BUFFERSIZE, 2048L);
	}
	return e;
}

/* Back to the pool: the pointers into the finished call are cleared, so
 * an idle handle refers to nothing that is freed. */
static void easy_put(struct worker *w, CURL *e, bool pooled)
{
	if (pooled && w->n_idle_easy < IDLE_EASY_MAX) {
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(e, CURLOPT_CURLU, NULL);
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, NULL);
		curl_easy_setopt(e, CURLOPT_ERRORBUFFER, NULL);
		curl_easy_setopt(e, CURLOPT_PRIVATE, NULL);
		w->idle_easy[w->n_idle_easy++] = e;
	} else {
		curl_easy_cleanup(e);
	}
}

static void xfer_free(struct xfer *x)
{
	if (x->easy)
		easy_put(x->w, x->easy, x->post == NULL);
	curl_slist_free_all(x->hdrs);
	hdrset_put(x->hdrset);
	gw_upstream_req_free(&x->req);
	gw_buf_free(&x->resp);
	gw_buf_free(&x->chunk);
	gw_sse_xlate_free(x->xl);
	if (x->post) {
		free(x->post->url);
		free(x->post->body);
		free(x->post);
	}
	free(x);
}

static void xfer_unlink(struct worker *w, struct xfer *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		w->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	if (x->lane) {
		curl_multi_remove_handle(x->lane->multi, x->easy);
		x->lane->running--;
		x->lane = NULL;
	}
}

static void fail_job(struct gw_job *job, int status, const char *type, const char *code,
		     const char *msg)
{
	struct gw_error err;
	gw_error_set(&err, status, type, code, NULL, "%s", msg);
	gw_job_set_error(job, &err);
}

static void deadline_job(struct gw_job *job)
{
	struct gw_error err;
	gw_error_set(&err, 504, "timeout_error", "deadline_exceeded", NULL,
		     "the deadline passed after %lld ms (%s)",
		     (long long)((gw_now_us() - job->t_arrival_us) / 1000),
		     job->attempt_log.len ? job->attempt_log.data : "waiting for the provider");
	gw_job_set_error(job, &err);
}

/*
 * What a worker derives from the configuration, redone when a reload
 * brings a new one: the header lists, and the size of curl's connection
 * cache. curl counts connections in use against that size and closes one
 * whenever it is passed, so it must hold every call the providers' slots
 * allow at once; below that, each answer beyond it costs a new connection,
 * and curl's search for a free one walks them all.
 */
static int worker_use_conf(struct worker *w, const struct gw_config *c)
{
	if (w->hdrs && w->hdrs->conf == c)
		return 0;
	struct hdrset *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->conf = gw_config_ref((struct gw_config *)c);
	h->users = 1;
	hdrset_put(w->hdrs);
	w->hdrs = h;
	long conns = lane_maxconnects(w);
	for (unsigned i = 0; i < w->n_lanes; i++)
		curl_multi_setopt(w->lanes[i].multi, CURLMOPT_MAXCONNECTS, conns);
	return 0;
}

/*
 * Provider p's call URL under the worker's configuration, parsed once: given
 * a URL as text, curl parses it again for every transfer, about a sixth of
 * a transfer's instructions in curl (callgrind, bench/stack_floor). NULL
 * when url is not the one parsed (the caller then passes the text) or on
 * allocation failure.
 */
static CURLU *provider_url(struct worker *w, int p, const char *url)
{
	struct hdrset *h = w->hdrs;
	if (h->url[p])
		return strcmp(h->url_text[p], url) == 0 ? h->url[p] : NULL;
	CURLU *u = curl_url();
	char *text = strdup(url);
	if (!u || !text || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK) {
		curl_url_cleanup(u);
		free(text);
		return NULL;
	}
	h->url[p] = u;
	h->url_text[p] = text;
	return u;
}

/*
 * Provider p's request headers under the worker's configuration, as a curl list.
 * They depend on the provider's configuration only (provider.h), so each
 * worker builds the list once per configuration and provider.
 */
static struct curl_slist *provider_headers(struct worker *w, int p)
{
	if (w->hdrs->list[p])
		return w->hdrs->list[p];
	const struct gw_provider_conf *pc = &w->hdrs->conf->prov[p];
	struct gw_upstream_req req = { 0 };
	struct curl_slist *list = NULL, *h;
	if (gw_provider_headers(pc, (enum gw_provider_id)p, &req) < 0)
		goto fail;
	for (size_t i = 0; i < req.n_headers; i++) {
		if (!(h = curl_slist_append(list, req.headers[i])))
			goto fail;
		list = h;
	}
	/* Upstream never needs the 100-continue round trip. */
	if (!(h = curl_slist_append(list, "Expect:")))
		goto fail;
	gw_upstream_req_free(&req);
	w->hdrs->list[p] = h;
	return h;
fail:
	gw_upstream_req_free(&req);
	curl_slist_free_all(list);
	return NULL;
}

static void start_xfer(struct worker *w, struct gw_job *job)
{
	struct gw_sched *s = w->pool->sched;
	const struct gw_config *c = job->conf;
	int p = job->provider;
	const struct gw_provider_conf *pc = &c->prov[p];
	const char *pname = gw_provider_name((enum gw_provider_id)p);
	int64_t now = gw_now_us();
	struct gw_error err;

	if (job->deadline_us && now >= job->deadline_us) {
		deadline_job(job);
		gw_sched_attempt_end(s, job, false, 0);
		return;
	}
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x) {
		fail_job(job, 500, "api_error", "internal_error", "out of memory");
		gw_sched_attempt_end(s, job, false, 0);
		return;
	}
	x->w = w;
	x->job = job;
	x->retry_after_s = -1;
	gw_buf_init(&x->resp, c->upstream_max_body_bytes);
	gw_buf_init(&x->chunk, c->upstream_max_body_bytes);

	const char *um = gw_config_map_model(c, job->chat.model, (enum gw_provider_id)p);
	int rc = gw_provider_build(pc, &job->chat, um ? um : job->chat.model,
				   &x->req, &err);
	if (rc < 0) {
		/* This dialect cannot express the request: skip the provider. */
		gw_job_log_attempt(job, pname, rc == -EINVAL ? err.message : "out of memory");
		xfer_free(x);
		gw_sched_attempt_end(s, job, true, 0);
		return;
	}

	x->timeout_ms = pc->timeout_ms;
	if (job->deadline_us) {
		int64_t left_ms = (job->deadline_us - now + 999) / 1000;
		if (left_ms < (int64_t)x->timeout_ms) {
			x->timeout_ms = (unsigned)left_ms;
			x->deadline_limited = true;
		}
	}

	if (job->chat.stream) {
		x->xl = gw_sse_xlate_new(pc->dialect, job->chat.model, NULL, job->chat.include_usage);
		if (!x->xl)
			goto oom;
	}
	x->easy = easy_get(w, true);
	if (!x->easy)
		goto oom;
	struct curl_slist *hdrs = worker_use_conf(w, c) == 0 ? provider_headers(w, p) : NULL;
	if (!hdrs)
		goto oom;
	x->hdrset = w->hdrs;
	x->hdrset->users++;

	/* Every option a call sets for itself (easy_get has the shared ones). */
	CURL *e = x->easy;
	CURLU *url = provider_url(w, p, x->req.url);
	curl_easy_setopt(e, CURLOPT_CURLU, url); /* when set, curl takes it over the text */
	if (!url)
		curl_easy_setopt(e, CURLOPT_URL, x->req.url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, x->req.body);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req.body_len);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(x->timeout_ms ? x->timeout_ms : 1));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)pc->connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_NOPROGRESS, x->xl ? 0L : 1L);
	curl_easy_setopt(e, CURLOPT_XFERINFODATA, x);

	x->started_us = now;
	x->next = w->xfers;
	if (w->xfers)
		w->xfers->prev = x;
	w->xfers = x;
	if (lane_add(w, x) < 0) {
		w->xfers = x->next;
		if (w->xfers)
			w->xfers->prev = NULL;
		goto oom;
	}
	return;
oom:
	xfer_free(x);
	fail_job(job, 500, "api_error", "internal_error", "could not start the upstream call");
	gw_sched_attempt_end(s, job, false, 0);
}

static void start_post(struct worker *w, struct post *p)
{
	struct xfer *x = calloc(1, sizeof(*x));
	if (!x)
		goto fail;
	x->w = w;
	x->post = p;
	gw_buf_init(&x->resp, 64 * 1024);
	x->easy = easy_get(w, false);
	if (!x->easy)
		goto fail_x;
	x->hdrs = curl_slist_append(NULL, "Content-Type: application/json");
	CURL *e = x->easy;
	curl_easy_setopt(e, CURLOPT_URL, p->url);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, p->body);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->hdrs);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 5000L);
	x->next = w->xfers;
	if (w->xfers)
		w->xfers->prev = x;
	w->xfers = x;
	if (lane_add(w, x) == 0)
		return;
	w->xfers = x->next;
	if (w->xfers)
		w->xfers->prev = NULL;
fail_x:
	xfer_free(x);
	return;
fail:
	free(p->url);
	free(p->body);
	free(p);
}

static void end_post(struct worker *w, struct xfer *x, CURLcode res)
{
	long code = 0;
	xfer_unlink(w, x);
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	if (res != CURLE_OK || code < 200 || code >= 300)
		gw_log_warnx("budget webhook failed: %s",
			     res != CURLE_OK ? (x->errbuf[0] ? x->errbuf : curl_easy_strerror(res))
					     : "non-2xx answer");
	xfer_free(x);
}

/* Text for a failed transfer, for the attempt log. */
static void curl_reason(const struct xfer *x, CURLcode res, char *out, size_t n)
{
	switch (res) {
	case CURLE_OPERATION_TIMEDOUT:
		snprintf(out, n, "timeout after %u ms", x->timeout_ms);
		break;
	case CURLE_COULDNT_CONNECT:
	case CURLE_COULDNT_RESOLVE_HOST:
		snprintf(out, n, "connect failed (%.120s)", x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
		break;
	case CURLE_WRITE_ERROR:
		snprintf(out, n, "upstream body over %zu bytes", x->resp.max);
		break;
	case CURLE_GOT_NOTHING:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_PARTIAL_FILE:
		snprintf(out, n, "connection reset or closed (%.120s)",
			 x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
		break;
	default:
		snprintf(out, n, "%.150s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(res));
		break;
	}
}

/*
 * The end of a stream whose bytes already reach the client: no fallback
 * is possible. A complete stream is a success; anything else ends with an
 * error event (unless the translator already sent one) and no [DONE].
 */
static void end_started_stream(struct xfer *x, CURLcode res)
{
	struct gw_job *job = x->job;
	job->usage = *gw_sse_xlate_usage(x->xl);
	job->status = 200;
	if (res == CURLE_OK && gw_sse_xlate_complete(x->xl)) {
		gw_job_stream_push(job, NULL, 0, true, false);
		return;
	}
	if (x->stream_error)
		return; /* the translator's error event was pushed with end */
	char reason[200], *ev = NULL;
	if (gw_job_client_gone(job))
		snprintf(reason, sizeof(reason), "the client disconnected");
	else if (res != CURLE_OK)
		curl_reason(x, res, reason, sizeof(reason));
	else
		snprintf(reason, sizeof(reason), "the upstream stream ended without finishing");
	struct gw_error err;
	gw_error_set(&err, 502, "upstream_error", "stream_broken", NULL,
		     "the %s stream broke: %s", gw_provider_name((enum gw_provider_id)job->provider),
		     reason);
	size_t len;
	char *body = gw_error_body(&err, &len);
	if (body && asprintf(&ev, "data: %s\n\n", body) < 0)
		ev = NULL;
	gw_job_stream_push(job, ev ? ev : "", ev ? strlen(ev) : 0, true, true);
	free(ev);
	free(body);
}

static void end_xfer(struct worker *w, struct xfer *x, CURLcode res)
{
	struct gw_sched *s = w->pool->sched;
	struct gw_job *job = x->job;
	const struct gw_provider_conf *pc = &job->conf->prov[job->provider];
	const char *pname = gw_provider_name((enum gw_provider_id)job->provider);
	int64_t now = gw_now_us();
	int64_t cooldown = 0;
	bool retry = false;
	char reason[200];

	xfer_unlink(w, x);
	job->attempts++;
	job->upstream_us += now - x->started_us;

	if (x->xl && gw_job_started(job)) {
		end_started_stream(x, res);
		goto out;
	}
	if (x->xl && x->http_code == 200) {
		/* A 200 stream that failed before its first client byte: fall back. */
		snprintf(reason, sizeof(reason), "%s",
			 x->stream_error ? "stream error before the first byte"
			 : res != CURLE_OK ? "stream broke before the first byte"
					   : "stream ended before the first byte");
		gw_job_log_attempt(job, pname, reason);
		retry = true;
		goto out;
	}

	if (res != CURLE_OK) {
		if (res == CURLE_OPERATION_TIMEDOUT && x->deadline_limited) {
			gw_job_log_attempt(job, pname, "deadline reached in flight");
			deadline_job(job);
			goto out;
		}
		curl_reason(x, res, reason, sizeof(reason));
		gw_job_log_attempt(job, pname, reason);
		retry = true;
		goto out;
	}

	long code = 0;
	curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
	struct gw_up_result r;
	gw_provider_parse(pc, (enum gw_provider_id)job->provider, (int)code, x->resp.data ? x->resp.data : "",
			  x->resp.len, job->chat.model, &r);
	switch (r.verdict) {
	case GW_VERDICT_OK:
	case GW_VERDICT_CLIENT_ERROR:
		free(job->body);
		job->body = r.body;
		job->body_len = r.body_len;
		job->status = r.status;
		job->usage = r.usage;
		r.body = NULL;
		break;
	case GW_VERDICT_RETRY:
		gw_job_log_attempt(job, pname, r.reason);
		retry = true;
		if (x->retry_after_s >= 0 && (code == 429 || code == 503 || code == 529))
			cooldown = now + (int64_t)x->retry_after_s * 1000000;
		else if (code == 429)
			cooldown = now + (int64_t)pc->cooldown_ms * 1000;
		break;
	}
	gw_up_result_free(&r);
out:
	if (retry && job->deadline_us && now >= job->deadline_us) {
		deadline_job(job);
		retry = false;
	}
	xfer_free(x);
	gw_sched_attempt_end(s, job, retry, cooldown);
}

static void check_done(struct worker *w, struct lane *lane)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(lane->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct xfer *x = NULL;
		curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&x);
		if (x && x->post)
			end_post(w, x, m->data.result);
		else if (x)
			end_xfer(w, x, m->data.result);
	}
}

static void abort_all(struct worker *w)
{
	struct gw_sched *s = w->pool->sched;
	while (w->xfers) {
		struct xfer *x = w->xfers;
		struct gw_job *job = x->job;
		xfer_unlink(w, x);
		xfer_free(x);
		if (!job)
			continue;
		fail_job(job, 503, "service_unavailable", "shutting_down",
			 "the gateway shut down before the provider answered");
		job->retry_after_s = 1;
		gw_sched_attempt_end(s, job, false, 0);
	}
}

/* Takes the inbox and starts its jobs; honours abort and stop requests. */
static bool handle_inbox(struct worker *w)
{
	uint64_t cnt;
	ssize_t r = read(w->evfd, &cnt, sizeof(cnt));
	(void)r;
	pthread_mutex_lock(&w->lock);
	struct gw_job *job = w->in_head;
	struct post *posts = w->posts;
	w->in_head = w->in_tail = NULL;
	w->posts = NULL;
	bool stop = w->stop, abort_req = w->abort;
	w->abort = false;
	pthread_mutex_unlock(&w->lock);
	while (job) {
		struct gw_job *nx = job->wnext;
		job->wnext = NULL;
		start_xfer(w, job);
		job = nx;
	}
	while (posts) {
		struct post *nx = posts->next;
		start_post(w, posts);
		posts = nx;
	}
	if (abort_req || stop)
		abort_all(w);
	return stop;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	const struct gw_worker_guest *guest = w->pool->guest.run ? &w->pool->guest : NULL;
	struct epoll_event evs[MAX_EVENTS];
	int running = 0;
	bool stop = false, guest_more = false;
	current_worker = w;
	/* The requests one loop pass finishes share one access-log write. */
	gw_log_access_batch(true);
	struct gw_beat *beat = gw_beat_register("worker", w->index);
	while (!stop) {
		int64_t now = gw_now_us();
		gw_beat_touch_at(beat, now);
		/* An idle worker still wakes once a beat interval, so a silent
		 * beat means a stuck loop (beat.h). */
		int timeout = (int)(GW_BEAT_INTERVAL_US / 1000);
		for (unsigned i = 0; i < w->n_lanes; i++) {
			int64_t at = w->lanes[i].timer_at_us;
			if (at < 0)
				continue;
			int64_t ms = at <= now ? 0 : (at - now + 999) / 1000;
			if (ms < timeout)
				timeout = (int)ms;
		}
		if (guest_more)
			timeout = 0;
		int n = epoll_wait(w->epfd, evs, MAX_EVENTS, timeout);
		bool guest_io = false;
		if (n < 0 && errno != EINTR) {
			gw_log_warn("worker %u: epoll_wait", w->index);
			continue;
		}
		for (int i = 0; i < n; i++) {
			int fd = evs[i].data.fd;
			if (fd == w->evfd) {
				stop = handle_inbox(w) || stop;
				continue;
			}
			if (fd == w->guest_fd) {
				guest_io = true;
				continue;
			}
			struct sock *sk = (size_t)fd < w->n_socks ? &w->socks[fd] : NULL;
			if (!sk || !sk->lane)
				continue; /* not ours (cannot happen: sock_cb refuses those) */
			if (sk->reg && !sk->want) {
				/* A parked connection woke (its peer closed it): curl
				 * finds that out when it next picks it. */
				sock_forget(w, sk, fd);
				continue;
			}
			int flags = 0;
			if (evs[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(sk->lane->multi, fd, flags, &running);
		}
		now = gw_now_us();
		for (unsigned i = 0; i < w->n_lanes; i++) {
			struct lane *lane = &w->lanes[i];
			if (lane->timer_at_us >= 0 && now >= lane->timer_at_us) {
				lane->timer_at_us = -1;
				curl_multi_socket_action(lane->multi, CURL_SOCKET_TIMEOUT, 0, &running);
			}
			check_done(w, lane);
		}
		if (guest)
			guest_more = guest->run(guest->arg, w->index, guest_io);
		/* Jobs this thread dispatched to itself (requests the guest read,
		 * queued work a finished transfer let go) start in this pass. */
		if (w->local_in) {
			w->local_in = false;
			stop = handle_inbox(w) || stop;
		}
		gw_log_access_flush();
	}
	gw_beat_unregister(beat);
	gw_log_access_batch(false);
	return NULL;
}

struct gw_workers *gw_workers_new(unsigned n, struct gw_sched *s)
{
	struct gw_workers *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->sched = s;
	p->n = n ? n : 1;
	atomic_init(&p->next, 0);
	p->w = calloc(p->n, sizeof(*p->w));
	if (!p->w)
		goto fail;
	/* Every slot gets valid "nothing yet" values first, so the failure
	 * path below can clean up a partly built pool. */
	for (unsigned i = 0; i < p->n; i++) {
		struct worker *w = &p->w[i];
		w->pool = p;
		w->index = i;
		w->epfd = -1;
		w->evfd = -1;
		w->guest_fd = -1;
		pthread_mutex_init(&w->lock, NULL);
	}
	for (unsigned i = 0; i < p->n; i++) {
		struct worker *w = &p->w[i];
		w->epfd = epoll_create1(EPOLL_CLOEXEC);
		w->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		w->lanes[0].multi = curl_multi_init();
		if (w->epfd < 0 || w->evfd < 0 || !w->lanes[0].multi)
			goto fail;
		w->n_lanes = 1;
		/* The connection cache is sized by worker_use_conf once a
		 * configuration arrives. */
		lane_setup(w, &w->lanes[0], MIN_CONNS);
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->evfd };
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->evfd, &ev) < 0)
			goto fail;
	}
	return p;
fail:
	gw_workers_free(p);
	return NULL;
}

int gw_workers_attach(struct gw_workers *p, const struct gw_worker_guest *g)
{
	for (unsigned i = 0; i < p->n; i++) {
		struct worker *w = &p->w[i];
		w->guest_fd = g->fd(g->arg, i);
		if (w->guest_fd < 0)
			return -EINVAL;
		struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->guest_fd };
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->guest_fd, &ev) < 0)
			return -errno;
	}
	p->guest = *g;
	return 0;
}

unsigned gw_workers_count(const struct gw_workers *p)
{
	return p->n;
}

int gw_workers_start(struct gw_workers *p)
{
	for (unsigned i = 0; i < p->n; i++) {
		int rc = pthread_create(&p->w[i].thread, NULL, worker_main, &p->w[i]);
		if (rc != 0)
			return -rc;
		p->w[i].started = true;
	}
	return 0;
}

void gw_workers_dispatch(struct gw_workers *p, struct gw_job *job)
{
	struct worker *w = current_worker;
	if (w && w->pool == p) {
		/* Started at the end of this worker's loop pass, without a wake-up. */
		w->local_in = true;
	} else {
		w = &p->w[atomic_fetch_add_explicit(&p->next, 1, memory_order_relaxed) % p->n];
	}
	job->wnext = NULL;
	pthread_mutex_lock(&w->lock);
	/* A non-empty inbox has a wake-up pending already: the worker reads
	 * the eventfd before it takes the inbox. */
	bool was_empty = !w->in_head;
	if (w->in_tail)
		w->in_tail->wnext = job;
	else
		w->in_head = job;
	w->in_tail = job;
	pthread_mutex_unlock(&w->lock);
	if (was_empty && w != current_worker)
		wake(w);
}

void gw_workers_post(struct gw_workers *p, const char *url, const char *json)
{
	struct post *post = calloc(1, sizeof(*post));
	if (!post)
		return;
	post->url = strdup(url);
	post->body = strdup(json);
	if (!post->url || !post->body) {
		free(post->url);
		free(post->body);
		free(post);
		return;
	}
	struct worker *w = &p->w[0];
	pthread_mutex_lock(&w->lock);
	post->next = w->posts;
	w->posts = post;
	pthread_mutex_unlock(&w->lock);
	wake(w);
}

void gw_workers_abort_all(struct gw_workers *p)
{
	for (unsigned i = 0; i < p->n; i++) {
		pthread_mutex_lock(&p->w[i].lock);
		p->w[i].abort = true;
		pthread_mutex_unlock(&p->w[i].lock);
		wake(&p->w[i]);
	}
}

void gw_workers_free(struct gw_workers *p)
{
	if (!p)
		return;
	for (unsigned i = 0; p->w && i < p->n; i++) {
		struct worker *w = &p->w[i];
		if (!w->started)
			continue;
		pthread_mutex_lock(&w->lock);
		w->stop = true;
		pthread_mutex_unlock(&w->lock);
		wake(w);
		pthread_join(w->thread, NULL);
	}
	for (unsigned i = 0; p->w && i < p->n; i++) {
		struct worker *w = &p->w[i];
		while (w->posts) {
			struct post *nx = w->posts->next;
			free(w->posts->url);
			free(w->posts->body);
			free(w->posts);
			w->posts = nx;
		}
		/* curl closes the lanes' connections through close_sock,
		 * which needs w->socks: freed below. */
		for (unsigned l = 0; l < LANES_MAX; l++)
			if (w->lanes[l].multi)
				curl_multi_cleanup(w->lanes[l].multi);
		while (w->n_idle_easy)
			curl_easy_cleanup(w->idle_easy[--w->n_idle_easy]);
		hdrset_put(w->hdrs);
		free(w->socks);
		if (w->epfd >= 0)
			close(w->epfd);
		if (w->evfd >= 0)
			close(w->evfd);
		pthread_mutex_destroy(&w->lock);
	}
	free(p->w);
	free(p);
}
