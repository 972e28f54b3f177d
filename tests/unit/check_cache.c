/*
 * check_cache.c - cache keys (pure) and the Redis client against a real
 * redis-server that each test starts on a free loopback port: hits,
 * misses, TTLs, the breaker when Redis dies or hangs, recovery, queue
 * bounds, the generic command helper. A missing redis-server fails these
 * tests; scripts/deps.sh installs it.
 */
#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "cache.h"
#include "log.h"

#define CMD_MS 50u
#define CONNECT_MS 100u
/* Slack over the command timeout for scheduling and sanitizers. */
#define MARGIN_MS 100

/* ---- keys ---------------------------------------------------------- */

static void key_of(const char *body, const char *explicit_key, const char *scope,
		   char out[GW_CACHE_KEY_MAX])
{
	struct gw_chat chat;
	struct gw_error err;
	ck_assert_msg(gw_chat_parse(body, strlen(body), &chat, &err) == 0, "parse: %s",
		      err.message);
	ck_assert_int_eq(gw_cache_key(&chat, explicit_key, scope, out, GW_CACHE_KEY_MAX), 0);
	gw_chat_free(&chat);
}

/* "llmgw:v1:<scope>:" + hex of SHA-256(data). */
static void expect_key(const char *scope, const void *data, size_t len, char out[GW_CACHE_KEY_MAX])
{
	unsigned char md[32];
	unsigned int mdlen = 0;
	char hex[65];
	ck_assert_int_eq(EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL), 1);
	for (unsigned i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	snprintf(out, GW_CACHE_KEY_MAX, "llmgw:v1:%s:%s", scope, hex);
}

#define BASE_MSGS "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]"

START_TEST(key_format_and_canonical_form)
{
	char k1[GW_CACHE_KEY_MAX], k2[GW_CACHE_KEY_MAX], want[GW_CACHE_KEY_MAX];
	const char *body = "{\"model\":\"m\"," BASE_MSGS ",\"stream\":true,\"temperature\":0.5}";
	key_of(body, NULL, "g", k1);
	key_of(body, NULL, "g", k2);
	ck_assert_str_eq(k1, k2);
	ck_assert_uint_eq(strlen(k1), strlen("llmgw:v1:g:") + 64);
	ck_assert_int_eq(strncmp(k1, "llmgw:v1:g:", 11), 0);
	for (const char *p = k1 + 11; *p; p++)
		ck_assert_msg((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'), "hex: %s", k1);
	/* The canonical form: just those members, sorted keys, compact. */
	const char *canon = "{\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],"
			    "\"model\":\"m\",\"temperature\":0.5}";
	expect_key("g", canon, strlen(canon), want);
	ck_assert_str_eq(k1, want);
	/* Explicit: "explicit\0" model "\0" key. */
	static const char raw[] = "explicit\0m\0abc";
	key_of(body, "abc", "s:svc", k1);
	expect_key("s:svc", raw, sizeof(raw) - 1, want);
	ck_assert_str_eq(k1, want);
}
END_TEST

START_TEST(key_member_order_independent)
{
	char a[GW_CACHE_KEY_MAX], b[GW_CACHE_KEY_MAX];
	key_of("{\"model\":\"m\",\"temperature\":0.2,\"messages\":[{\"role\":\"user\",\"content\":"
	       "\"hi\"}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
	       "\"parameters\":{\"type\":\"object\"}}}]}",
	       NULL, "g", a);
	key_of("{\"tools\":[{\"function\":{\"parameters\":{\"type\":\"object\"},\"name\":\"f\"},"
	       "\"type\":\"function\"}],\"messages\":[{\"content\":\"hi\",\"role\":\"user\"}],"
	       "\"temperature\":0.2,\"model\":\"m\"}",
	       NULL, "g", b);
	ck_assert_str_eq(a, b);
	/* Whitespace and escapes of the same text do not matter either. */
	key_of("{ \"model\" : \"m\", \"messages\" : [ { \"role\" : \"user\", \"content\" : "
	       "\"\\u0068i\" } ], \"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\","
	       "\"parameters\":{\"type\":\"object\"}}}], \"temperature\": 0.20 }",
	       NULL, "g", b);
	ck_assert_str_eq(a, b);
}
END_TEST

START_TEST(key_ignores_transport_members)
{
	char base[GW_CACHE_KEY_MAX], k[GW_CACHE_KEY_MAX];
	key_of("{\"model\":\"m\"," BASE_MSGS "}", NULL, "g", base);
	const char *same[] = {
		"{\"model\":\"m\"," BASE_MSGS ",\"stream\":true}",
		"{\"model\":\"m\"," BASE_MSGS ",\"stream\":false}",
		"{\"model\":\"m\"," BASE_MSGS ",\"stream\":true,"
		"\"stream_options\":{\"include_usage\":true}}",
		"{\"model\":\"m\"," BASE_MSGS ",\"user\":\"alice\"}",
		"{\"model\":\"m\"," BASE_MSGS ",\"metadata\":{\"trace\":\"x\"}}",
		"{\"model\":\"m\"," BASE_MSGS ",\"temperature\":null,\"tools\":null}",
	};
	for (unsigned i = 0; i < sizeof(same) / sizeof(same[0]); i++) {
		key_of(same[i], NULL, "g", k);
		ck_assert_msg(strcmp(k, base) == 0, "key changed by %s", same[i]);
	}
}
END_TEST

START_TEST(key_depends_on_answer_members)
{
	char base[GW_CACHE_KEY_MAX], k[GW_CACHE_KEY_MAX], k2[GW_CACHE_KEY_MAX];
	key_of("{\"model\":\"m\"," BASE_MSGS "}", NULL, "g", base);
	const char *differ[] = {
		"{\"model\":\"m2\"," BASE_MSGS "}",
		"{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi!\"}]}",
		"{\"model\":\"m\"," BASE_MSGS ",\"temperature\":0.7}",
		"{\"model\":\"m\"," BASE_MSGS ",\"temperature\":0}",
		"{\"model\":\"m\"," BASE_MSGS ",\"tools\":[]}",
		"{\"model\":\"m\"," BASE_MSGS ",\"tools\":[{\"type\":\"function\",\"function\":"
		"{\"name\":\"f\"}}]}",
		"{\"model\":\"m\"," BASE_MSGS ",\"max_tokens\":10}",
		"{\"model\":\"m\"," BASE_MSGS ",\"seed\":1}",
		"{\"model\":\"m\"," BASE_MSGS ",\"n\":2}",
		"{\"model\":\"m\"," BASE_MSGS ",\"stop\":\"x\"}",
		"{\"model\":\"m\"," BASE_MSGS ",\"response_format\":{\"type\":\"json_object\"}}",
		"{\"model\":\"m\"," BASE_MSGS ",\"tool_choice\":\"none\"}",
		"{\"model\":\"m\"," BASE_MSGS ",\"reasoning_effort\":\"high\"}",
	};
	for (unsigned i = 0; i < sizeof(differ) / sizeof(differ[0]); i++) {
		key_of(differ[i], NULL, "g", k);
		ck_assert_msg(strcmp(k, base) != 0, "key unchanged by %s", differ[i]);
	}
	/* Same meaning, same key: 1 == 1.0 for real parameters, "x" == ["x"]. */
	key_of("{\"model\":\"m\"," BASE_MSGS ",\"temperature\":1}", NULL, "g", k);
	key_of("{\"model\":\"m\"," BASE_MSGS ",\"temperature\":1.0}", NULL, "g", k2);
	ck_assert_str_eq(k, k2);
	key_of("{\"model\":\"m\"," BASE_MSGS ",\"stop\":\"x\"}", NULL, "g", k);
	key_of("{\"model\":\"m\"," BASE_MSGS ",\"stop\":[\"x\"]}", NULL, "g", k2);
	ck_assert_str_eq(k, k2);
}
END_TEST

START_TEST(key_explicit)
{
	char derived[GW_CACHE_KEY_MAX], e1[GW_CACHE_KEY_MAX], e2[GW_CACHE_KEY_MAX];
	char e3[GW_CACHE_KEY_MAX], e4[GW_CACHE_KEY_MAX];
	key_of("{\"model\":\"m\"," BASE_MSGS "}", NULL, "g", derived);
	key_of("{\"model\":\"m\"," BASE_MSGS "}", "daily-report", "g", e1);
	ck_assert_str_ne(derived, e1);
	/* The explicit key replaces the request: other messages, same key. */
	key_of("{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"other\"}]}",
	       "daily-report", "g", e2);
	ck_assert_str_eq(e1, e2);
	/* ...but it stays per model, and per key. */
	key_of("{\"model\":\"m2\"," BASE_MSGS "}", "daily-report", "g", e3);
	ck_assert_str_ne(e1, e3);
	key_of("{\"model\":\"m\"," BASE_MSGS "}", "weekly-report", "g", e4);
	ck_assert_str_ne(e1, e4);
	/* Bounds. */
	struct gw_chat chat;
	struct gw_error err;
	char out[GW_CACHE_KEY_MAX];
	const char *body = "{\"model\":\"m\"," BASE_MSGS "}";
	ck_assert_int_eq(gw_chat_parse(body, strlen(body), &chat, &err), 0);
	ck_assert_int_eq(gw_cache_key(&chat, "", "g", out, sizeof(out)), -EINVAL);
	char *big = malloc(GW_CACHE_EXPLICIT_MAX + 2);
	memset(big, 'x', GW_CACHE_EXPLICIT_MAX + 1);
	big[GW_CACHE_EXPLICIT_MAX + 1] = '\0';
	ck_assert_int_eq(gw_cache_key(&chat, big, "g", out, sizeof(out)), -EINVAL);
	big[GW_CACHE_EXPLICIT_MAX] = '\0';
	ck_assert_int_eq(gw_cache_key(&chat, big, "g", out, sizeof(out)), 0);
	free(big);
	gw_chat_free(&chat);
}
END_TEST

START_TEST(key_scope)
{
	char g[GW_CACHE_KEY_MAX], s[GW_CACHE_KEY_MAX], k[GW_CACHE_KEY_MAX];
	const char *body = "{\"model\":\"m\"," BASE_MSGS "}";
	key_of(body, NULL, "g", g);
	key_of(body, NULL, "s:scanner", s);
	key_of(body, NULL, "k:key_7f3a", k);
	ck_assert_int_eq(strncmp(s, "llmgw:v1:s:scanner:", 19), 0);
	ck_assert_int_eq(strncmp(k, "llmgw:v1:k:key_7f3a:", 20), 0);
	ck_assert_str_ne(g, s);
	ck_assert_str_ne(s, k);
	/* The hash is the same; only the scope prefix separates them. */
	ck_assert_str_eq(g + strlen("llmgw:v1:g:"), s + strlen("llmgw:v1:s:scanner:"));

	struct gw_chat chat;
	struct gw_error err;
	char out[GW_CACHE_KEY_MAX];
	ck_assert_int_eq(gw_chat_parse(body, strlen(body), &chat, &err), 0);
	const char *bad[] = { "", "x", "s:", "k:", "s", "gg", "s:a b", "s:a\nb", "q:abc" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		ck_assert_msg(gw_cache_key(&chat, NULL, bad[i], out, sizeof(out)) == -EINVAL,
			      "scope '%s' accepted", bad[i]);
	char longscope[GW_CACHE_SCOPE_MAX + 2];
	memset(longscope, 'a', sizeof(longscope));
	longscope[0] = 's';
	longscope[1] = ':';
	longscope[GW_CACHE_SCOPE_MAX + 1] = '\0';
	ck_assert_int_eq(gw_cache_key(&chat, NULL, longscope, out, sizeof(out)), -EINVAL);
	longscope[GW_CACHE_SCOPE_MAX] = '\0';
	ck_assert_int_eq(gw_cache_key(&chat, NULL, longscope, out, sizeof(out)), 0);
	ck_assert_uint_lt(strlen(out), GW_CACHE_KEY_MAX);
	ck_assert_int_eq(gw_cache_key(&chat, NULL, "g", out, 20), -ENOSPC);
	ck_assert_int_eq(gw_cache_key(NULL, NULL, "g", out, sizeof(out)), -EINVAL);
	gw_chat_free(&chat);
}
END_TEST

/* ---- a real redis-server ------------------------------------------- */

static unsigned free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* True when 127.0.0.1:port answers +PONG to PING. */
static bool raw_ping(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	struct timeval tv = { .tv_sec = 0, .tv_usec = 200000 };
	char buf[16] = { 0 };
	bool ok = false;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return false;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    send(fd, "PING\r\n", 6, MSG_NOSIGNAL) == 6 && recv(fd, buf, sizeof(buf) - 1, 0) > 0)
		ok = strncmp(buf, "+PONG", 5) == 0;
	close(fd);
	return ok;
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * Starts redis-server on 127.0.0.1:port and waits (at most 5 s) until it
 * answers PING. Fails the test when it cannot: not installed, or exited.
 * The server dies with the test process (PR_SET_PDEATHSIG).
 */
static pid_t redis_start(unsigned port)
{
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%u", port);
	char *argv[] = { "redis-server", "--port", portstr, "--bind", "127.0.0.1", "--save", "",
			 "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", NULL };
	pid_t parent = getpid();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, 0);
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execvp("redis-server", argv);
		_exit(127);
	}
	int64_t deadline = gw_now_us() + 5000000;
	for (;;) {
		int status;
		if (waitpid(pid, &status, WNOHANG) == pid)
			ck_abort_msg("redis-server exited (status %d): is it installed? "
				     "scripts/deps.sh installs it",
				     WIFEXITED(status) ? WEXITSTATUS(status) : -1);
		if (raw_ping(port))
			return pid;
		if (gw_now_us() > deadline) {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
			ck_abort_msg("redis-server on port %u did not answer PING within 5 s",
				     port);
		}
		sleep_ms(10);
	}
}

static void redis_kill(pid_t pid)
{
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* Polls until the state is want; false after timeout_ms. */
static bool wait_state(struct gw_cache *c, enum gw_cache_state want, unsigned timeout_ms)
{
	int64_t deadline = gw_now_us() + (int64_t)timeout_ms * 1000;
	while (gw_cache_state(c) != want) {
		if (gw_now_us() > deadline)
			return false;
		sleep_ms(5);
	}
	return true;
}

static struct gw_cache *cache_up(unsigned port, unsigned db)
{
	char url[64];
	snprintf(url, sizeof(url), "redis://127.0.0.1:%u/%u", port, db);
	struct gw_cache *c = gw_cache_new(url, CONNECT_MS, CMD_MS);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(gw_cache_start(c), 0);
	ck_assert_msg(wait_state(c, GW_CACHE_UP, 3000), "cache did not come up");
	return c;
}

/* One callback's outcome. */
struct res {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int calls;
	enum gw_cache_result r;
	char *value;
	size_t len;
	int64_t done_us;
	pthread_t tid; /* the thread the callback ran on */
};

static void res_init(struct res *s)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->cv, NULL);
}

static void res_cb(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct res *s = arg;
	pthread_mutex_lock(&s->mu);
	s->calls++;
	s->r = r;
	free(s->value);
	s->value = value;
	s->len = len;
	s->done_us = gw_now_us();
	s->tid = pthread_self();
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

static void res_wait(struct res *s, unsigned timeout_ms)
{
	int64_t deadline = gw_now_us() + (int64_t)timeout_ms * 1000;
	pthread_mutex_lock(&s->mu);
	while (s->calls == 0 && gw_now_us() < deadline) {
		pthread_mutex_unlock(&s->mu);
		sleep_ms(1);
		pthread_mutex_lock(&s->mu);
	}
	pthread_mutex_unlock(&s->mu);
	ck_assert_msg(s->calls == 1, "callback ran %d times", s->calls);
}

static void res_free(struct res *s)
{
	free(s->value);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
}

/*
 * GET key and wait for the answer. *lat_ms: call to callback; *sync: the
 * callback had run before gw_cache_get returned. value (if any) goes to
 * *value, which the caller frees.
 */
static enum gw_cache_result get(struct gw_cache *c, const char *key, char **value, size_t *len,
				int64_t *lat_ms, bool *sync)
{
	struct res s;
	res_init(&s);
	int64_t t0 = gw_now_us();
	gw_cache_get(c, key, res_cb, &s);
	res_wait(&s, 3000);
	bool was_sync = pthread_equal(s.tid, pthread_self());
	enum gw_cache_result r = s.r;
	if (lat_ms)
		*lat_ms = (s.done_us - t0) / 1000;
	if (sync)
		*sync = was_sync;
	if (value) {
		*value = s.value;
		*len = s.len;
		s.value = NULL;
	}
	res_free(&s);
	return r;
}

static enum gw_cache_result exec_sync(struct gw_cache *c, int argc, const char *const *argv,
				 char **value)
{
	size_t lens[8];
	struct res s;
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	res_init(&s);
	gw_cache_exec(c, argv, lens, argc, res_cb, &s);
	res_wait(&s, 3000);
	enum gw_cache_result r = s.r;
	*value = s.value;
	s.value = NULL;
	res_free(&s);
	return r;
}

/* Sends stderr (where gw_log writes) to a temporary file. */
struct capture {
	FILE *f;
	int saved;
};

static void capture_start(struct capture *cap)
{
	cap->f = tmpfile();
	ck_assert_ptr_nonnull(cap->f);
	cap->saved = dup(STDERR_FILENO);
	ck_assert_int_ge(dup2(fileno(cap->f), STDERR_FILENO), 0);
}

/* Restores stderr; counts[i] = captured lines that contain needles[i]. */
static void capture_end(struct capture *cap, const char *const *needles, int *counts, int n)
{
	char line[2048];
	dup2(cap->saved, STDERR_FILENO);
	close(cap->saved);
	rewind(cap->f);
	for (int i = 0; i < n; i++)
		counts[i] = 0;
	while (fgets(line, sizeof(line), cap->f)) {
		for (int i = 0; i < n; i++)
			counts[i] += strstr(line, needles[i]) != NULL;
	}
	fclose(cap->f);
}

static int capture_count(struct capture *cap, const char *needle)
{
	int n;
	capture_end(cap, &needle, &n, 1);
	return n;
}

START_TEST(set_get_hit_and_miss)
{
	gw_log_set_level(GW_LOG_WARN);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	char *v = NULL;
	size_t len = 0;

	ck_assert_int_eq(get(c, "llmgw:test:absent", &v, &len, NULL, NULL), GW_CACHE_MISS);
	ck_assert_ptr_null(v);
	gw_cache_set(c, "llmgw:test:a", "{\"x\":1}", 7, 60);
	/* One connection, FIFO queue: the GET sees the SET before it. */
	ck_assert_int_eq(get(c, "llmgw:test:a", &v, &len, NULL, NULL), GW_CACHE_HIT);
	ck_assert_uint_eq(len, 7);
	ck_assert_str_eq(v, "{\"x\":1}");
	free(v);

	/* Binary-safe, large values. */
	size_t big = (size_t)1 << 20;
	char *blob = malloc(big);
	for (size_t i = 0; i < big; i++)
		blob[i] = (char)(i * 31 % 251);
	gw_cache_set(c, "llmgw:test:blob", blob, big, 60);
	ck_assert_int_eq(get(c, "llmgw:test:blob", &v, &len, NULL, NULL), GW_CACHE_HIT);
	ck_assert_uint_eq(len, big);
	ck_assert_int_eq(memcmp(v, blob, big), 0);
	ck_assert_int_eq(v[big], '\0');
	free(v);
	free(blob);

	/* Over the value limit: dropped, counted, never sent. */
	char *huge = calloc(1, GW_CACHE_VALUE_MAX + 1);
	gw_cache_set(c, "llmgw:test:huge", huge, GW_CACHE_VALUE_MAX + 1, 60);
	free(huge);
	gw_cache_set(c, "llmgw:test:ttl0", "x", 1, 0);
	ck_assert_int_eq(get(c, "llmgw:test:huge", NULL, NULL, NULL, NULL), GW_CACHE_MISS);
	ck_assert_int_eq(get(c, "llmgw:test:ttl0", NULL, NULL, NULL, NULL), GW_CACHE_MISS);

	/* Keys out of bounds answer BYPASS at once. */
	bool sync = false;
	ck_assert_int_eq(get(c, "", NULL, NULL, NULL, &sync), GW_CACHE_BYPASS);
	ck_assert(sync);

	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_eq(st.misses, 3);
	ck_assert_uint_eq(st.bypasses, 1);
	ck_assert_uint_eq(st.sets, 2);
	ck_assert_uint_eq(st.set_drops, 2);
	ck_assert_uint_eq(st.errors, 0);
	ck_assert_uint_eq(st.breaker_opens, 0);
	ck_assert_uint_eq(st.queue_depth, 0);
	ck_assert_int_eq(gw_cache_state(c), GW_CACHE_UP);
	gw_cache_free(c);
	redis_kill(pid);
}
END_TEST

START_TEST(ttl_expiry)
{
	gw_log_set_level(GW_LOG_WARN);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);

	int64_t t0 = gw_now_us();
	gw_cache_set(c, "llmgw:test:short", "v", 1, 1);
	gw_cache_set(c, "llmgw:test:long", "v", 1, 60);
	ck_assert_int_eq(get(c, "llmgw:test:short", NULL, NULL, NULL, NULL), GW_CACHE_HIT);
	enum gw_cache_result r;
	int64_t deadline = t0 + 4000000;
	while ((r = get(c, "llmgw:test:short", NULL, NULL, NULL, NULL)) == GW_CACHE_HIT &&
	       gw_now_us() < deadline)
		sleep_ms(50);
	ck_assert_int_eq(r, GW_CACHE_MISS);
	int64_t took_ms = (gw_now_us() - t0) / 1000;
	ck_assert_msg(took_ms >= 500 && took_ms <= 4000, "expired after %lld ms",
		      (long long)took_ms);
	ck_assert_int_eq(get(c, "llmgw:test:long", NULL, NULL, NULL, NULL), GW_CACHE_HIT);
	gw_cache_free(c);
	redis_kill(pid);
}
END_TEST

START_TEST(redis_dies_then_returns)
{
	struct capture cap;
	gw_log_set_level(GW_LOG_INFO);
	capture_start(&cap);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	gw_cache_set(c, "llmgw:test:k", "v", 1, 60);
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, NULL, NULL), GW_CACHE_HIT);

	redis_kill(pid);
	int64_t worst = 0;
	int n_sync = 0;
	for (int i = 0; i < 50; i++) {
		int64_t lat;
		bool sync;
		ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, &lat, &sync), GW_CACHE_BYPASS);
		if (lat > worst)
			worst = lat;
		n_sync += sync;
	}
	ck_assert_msg(worst <= CMD_MS + MARGIN_MS, "a GET took %lld ms", (long long)worst);
	/* Once the breaker is open, lookups never reach the thread. */
	ck_assert_int_ge(n_sync, 49);
	ck_assert_int_eq(gw_cache_state(c), GW_CACHE_DOWN);
	gw_cache_set(c, "llmgw:test:k2", "v", 1, 60); /* dropped, not queued */

	/* Let a few probes fail, then bring Redis back on the same port. */
	sleep_ms(700);
	pid = redis_start(port);
	int64_t t0 = gw_now_us();
	ck_assert_msg(wait_state(c, GW_CACHE_UP, 4000), "cache did not come back");
	int64_t back_ms = (gw_now_us() - t0) / 1000;
	gw_cache_set(c, "llmgw:test:k3", "v3", 2, 60);
	char *v = NULL;
	size_t len;
	ck_assert_int_eq(get(c, "llmgw:test:k3", &v, &len, NULL, NULL), GW_CACHE_HIT);
	ck_assert_str_eq(v, "v3");
	free(v);

	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	gw_cache_free(c);
	redis_kill(pid);
	const char *needles[] = { "[warn]", "redis back" };
	int counts[2];
	capture_end(&cap, needles, counts, 2);
	ck_assert_msg(counts[0] == 1 && counts[1] == 1, "%d warnings, %d 'redis back'", counts[0],
		      counts[1]);
	ck_assert_uint_eq(st.breaker_opens, 1);
	ck_assert_uint_eq(st.bypasses, 50);
	ck_assert_uint_eq(st.hits, 2);
	ck_assert_uint_ge(st.set_drops, 1);
	fprintf(stderr, "redis_dies_then_returns: worst GET %lld ms, back after %lld ms\n",
		(long long)worst, (long long)back_ms);
}
END_TEST

START_TEST(idle_death_noticed)
{
	gw_log_set_level(GW_LOG_ERROR);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	/* No traffic: the idle PING still notices, so /ready stays truthful. */
	redis_kill(pid);
	int64_t t0 = gw_now_us();
	ck_assert(wait_state(c, GW_CACHE_DOWN, 3000));
	int64_t ms = (gw_now_us() - t0) / 1000;
	ck_assert_msg(ms <= 1000 + MARGIN_MS, "noticed after %lld ms", (long long)ms);
	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.breaker_opens, 1);
	ck_assert_uint_eq(st.bypasses, 0);
	gw_cache_free(c);
}
END_TEST

START_TEST(hung_redis_times_out)
{
	gw_log_set_level(GW_LOG_ERROR);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	gw_cache_set(c, "llmgw:test:k", "v", 1, 60);
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, NULL, NULL), GW_CACHE_HIT);

	kill(pid, SIGSTOP);
	int64_t lat;
	bool sync;
	/* In flight when Redis hangs: answered when the command times out. */
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, &lat, &sync), GW_CACHE_BYPASS);
	ck_assert_msg(lat >= CMD_MS - 5 && lat <= CMD_MS + MARGIN_MS, "GET took %lld ms",
		      (long long)lat);
	ck_assert(!sync);
	ck_assert_int_eq(gw_cache_state(c), GW_CACHE_DOWN);
	/* Breaker open: answered inside the call, no waiting at all. */
	int64_t t0 = gw_now_us();
	for (int i = 0; i < 100; i++) {
		ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, &lat, &sync), GW_CACHE_BYPASS);
		ck_assert(sync);
	}
	int64_t hundred_us = gw_now_us() - t0;
	ck_assert_msg(hundred_us < 50000, "100 bypassed GETs took %lld us", (long long)hundred_us);

	kill(pid, SIGCONT);
	ck_assert_msg(wait_state(c, GW_CACHE_UP, 4000), "cache did not come back");
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, NULL, NULL), GW_CACHE_HIT);
	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	ck_assert_uint_ge(st.errors, 1);
	ck_assert_uint_eq(st.breaker_opens, 1);
	gw_cache_free(c);
	redis_kill(pid);
}
END_TEST

START_TEST(unreachable_at_start)
{
	struct capture cap;
	gw_log_set_level(GW_LOG_INFO);
	capture_start(&cap);
	unsigned port = free_port();
	char url[64];
	snprintf(url, sizeof(url), "redis://127.0.0.1:%u", port);
	struct gw_cache *c = gw_cache_new(url, CONNECT_MS, CMD_MS);
	ck_assert_ptr_nonnull(c);
	/* Not started: DOWN, and lookups answer BYPASS inside the call. */
	ck_assert_int_eq(gw_cache_state(c), GW_CACHE_DOWN);
	bool sync = false;
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, NULL, &sync), GW_CACHE_BYPASS);
	ck_assert(sync);
	ck_assert_int_eq(gw_cache_start(c), 0);
	ck_assert_int_eq(gw_cache_start(c), -EALREADY);
	struct gw_cache_counters st;
	int64_t deadline = gw_now_us() + 2000000;
	do {
		sleep_ms(5);
		gw_cache_stats(c, &st);
	} while (st.breaker_opens == 0 && gw_now_us() < deadline);
	ck_assert_uint_eq(st.breaker_opens, 1);
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, NULL, &sync), GW_CACHE_BYPASS);
	ck_assert(sync);

	pid_t pid = redis_start(port);
	ck_assert_msg(wait_state(c, GW_CACHE_UP, 4000), "cache did not come up");
	ck_assert_int_eq(get(c, "llmgw:test:k", NULL, NULL, NULL, NULL), GW_CACHE_MISS);
	gw_cache_free(c);
	redis_kill(pid);
	int warnings = capture_count(&cap, "[warn]");
	ck_assert_int_eq(warnings, 1);
}
END_TEST

START_TEST(disabled_and_bad_urls)
{
	struct capture cap;
	gw_log_set_level(GW_LOG_INFO);
	capture_start(&cap);
	bool sync = false;
	struct gw_cache_counters st;

	/* A NULL cache behaves as disabled. */
	ck_assert_int_eq(gw_cache_state(NULL), GW_CACHE_DISABLED);
	ck_assert_int_eq(get(NULL, "k", NULL, NULL, NULL, &sync), GW_CACHE_BYPASS);
	ck_assert(sync);
	gw_cache_set(NULL, "k", "v", 1, 10);
	gw_cache_stats(NULL, &st);
	ck_assert_uint_eq(st.bypasses, 0);
	gw_cache_free(NULL);

	struct gw_cache *c = gw_cache_new(NULL, 0, 0);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(gw_cache_start(c), 0);
	ck_assert_int_eq(gw_cache_state(c), GW_CACHE_DISABLED);
	ck_assert_str_eq(gw_cache_state_name(gw_cache_state(c)), "disabled");
	ck_assert_int_eq(get(c, "k", NULL, NULL, NULL, &sync), GW_CACHE_BYPASS);
	ck_assert(sync);
	gw_cache_set(c, "k", "v", 1, 10);
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.bypasses, 1);
	ck_assert_uint_eq(st.set_drops, 1);
	gw_cache_free(c);

	const char *bad[] = {
		"http://127.0.0.1:6379", "redis://", "redis://:6379", "redis://h:0",
		"redis://h:65536",
		"redis://h:6379x", "redis://h/", "redis://h/70000", "redis://h/1/2", "redis://[::1",
		"redis://[]:1", "redis://h:-1", "redis://a b", "redis://h:123456",
	};
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = gw_cache_new(bad[i], 0, 0);
		ck_assert_msg(c == NULL, "accepted %s", bad[i]);
	}
	ck_assert_ptr_null(gw_cache_new("redis://127.0.0.1", 60001, 50));
	ck_assert_ptr_null(gw_cache_new("redis://127.0.0.1", 100, 60001));
	const char *good[] = { "redis://127.0.0.1", "redis://localhost:6380/3",
			       "redis://[::1]:6379/0", "redis://redis.internal/15" };
	for (unsigned i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		c = gw_cache_new(good[i], 0, 0);
		ck_assert_msg(c != NULL, "refused %s", good[i]);
		ck_assert_int_eq(gw_cache_state(c), GW_CACHE_DOWN);
		gw_cache_free(c); /* never started */
	}
	ck_assert_str_eq(gw_cache_result_name(GW_CACHE_HIT), "HIT");
	ck_assert_str_eq(gw_cache_result_name(GW_CACHE_MISS), "MISS");
	ck_assert_str_eq(gw_cache_result_name(GW_CACHE_BYPASS), "BYPASS");
	/* Each refusal logged once, naming the accepted form. */
	const char *needles[] = { "redis URL must be redis://host[:port][/db]",
				  "timeouts must be" };
	int counts[2];
	capture_end(&cap, needles, counts, 2);
	ck_assert_int_eq(counts[0], (int)(sizeof(bad) / sizeof(bad[0])));
	ck_assert_int_eq(counts[1], 2);
}
END_TEST

/* Holds the cache thread inside a callback until opened. */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool entered;
	bool open;
};

static void gate_cb(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct gate *g = arg;
	(void)r;
	(void)len;
	free(value);
	pthread_mutex_lock(&g->mu);
	g->entered = true;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_wait_entered(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	while (!g->entered)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
}

static void gate_open(struct gate *g)
{
	pthread_mutex_lock(&g->mu);
	g->open = true;
	pthread_cond_broadcast(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

/* Counts completions by result. */
struct tally {
	atomic_int calls;
	atomic_int by[3];
};

static void tally_cb(void *arg, enum gw_cache_result r, char *value, size_t len)
{
	struct tally *t = arg;
	(void)len;
	free(value);
	atomic_fetch_add(&t->by[r], 1);
	atomic_fetch_add(&t->calls, 1);
}

static bool tally_wait(struct tally *t, int calls, unsigned timeout_ms)
{
	int64_t deadline = gw_now_us() + (int64_t)timeout_ms * 1000;
	while (atomic_load(&t->calls) < calls) {
		if (gw_now_us() > deadline)
			return false;
		sleep_ms(2);
	}
	return true;
}

START_TEST(queue_full_never_blocks)
{
	gw_log_set_level(GW_LOG_WARN);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	struct gate g = { .entered = false, .open = false };
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	static struct tally t;

	gw_cache_get(c, "llmgw:test:gate", gate_cb, &g);
	gate_wait_entered(&g); /* the cache thread is now stuck in gate_cb */
	int64_t t0 = gw_now_us();
	for (unsigned i = 0; i < GW_CACHE_QUEUE_MAX; i++)
		gw_cache_get(c, "llmgw:test:absent", tally_cb, &t);
	ck_assert_int_eq(atomic_load(&t.calls), 0);
	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.queue_depth, GW_CACHE_QUEUE_MAX);
	/* Full: the next GET is answered inside the call, the SET dropped. */
	gw_cache_get(c, "llmgw:test:absent", tally_cb, &t);
	ck_assert_int_eq(atomic_load(&t.calls), 1);
	ck_assert_int_eq(atomic_load(&t.by[GW_CACHE_BYPASS]), 1);
	gw_cache_set(c, "llmgw:test:x", "v", 1, 60);
	const char *argv[] = { "PING" };
	size_t argvlen[] = { 4 };
	gw_cache_exec(c, argv, argvlen, 1, NULL, NULL);
	int64_t enqueue_ms = (gw_now_us() - t0) / 1000;
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.set_drops, 2);
	ck_assert_uint_eq(st.bypasses, 1);
	ck_assert_msg(enqueue_ms < 2000, "queueing took %lld ms", (long long)enqueue_ms);

	gate_open(&g);
	ck_assert(tally_wait(&t, (int)GW_CACHE_QUEUE_MAX + 1, 20000));
	ck_assert_int_eq(atomic_load(&t.by[GW_CACHE_MISS]), (int)GW_CACHE_QUEUE_MAX);
	sleep_ms(20);
	ck_assert_int_eq(atomic_load(&t.calls), (int)GW_CACHE_QUEUE_MAX + 1);
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.queue_depth, 0);
	ck_assert_uint_eq(st.misses, GW_CACHE_QUEUE_MAX + 1); /* + the gate's GET */
	gw_cache_free(c);
	redis_kill(pid);
}
END_TEST

struct opener {
	struct gate *g;
	unsigned delay_ms;
};

static void *open_later(void *arg)
{
	struct opener *o = arg;
	sleep_ms(o->delay_ms);
	gate_open(o->g);
	return NULL;
}

START_TEST(free_completes_queued)
{
	gw_log_set_level(GW_LOG_WARN);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	struct gate g = { .entered = false, .open = false };
	pthread_mutex_init(&g.mu, NULL);
	pthread_cond_init(&g.cv, NULL);
	static struct tally t;

	gw_cache_get(c, "llmgw:test:gate", gate_cb, &g);
	gate_wait_entered(&g);
	for (int i = 0; i < 100; i++)
		gw_cache_get(c, "llmgw:test:absent", tally_cb, &t);
	gw_cache_set(c, "llmgw:test:x", "v", 1, 60);
	struct opener o = { &g, 100 };
	pthread_t th;
	pthread_create(&th, NULL, open_later, &o);
	gw_cache_free(c); /* stop is set before the gate opens */
	pthread_join(th, NULL);
	ck_assert_int_eq(atomic_load(&t.calls), 100);
	ck_assert_int_eq(atomic_load(&t.by[GW_CACHE_BYPASS]), 100);
	redis_kill(pid);
}
END_TEST

START_TEST(exec_replies)
{
	gw_log_set_level(GW_LOG_ERROR);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 3);
	char *v = NULL;

	const char *incr[] = { "INCRBY", "llmgw:test:n", "5" };
	ck_assert_int_eq(exec_sync(c, 3, incr, &v), GW_CACHE_HIT);
	ck_assert_str_eq(v, "5");
	free(v);
	ck_assert_int_eq(exec_sync(c, 3, incr, &v), GW_CACHE_HIT);
	ck_assert_str_eq(v, "10");
	free(v);
	const char *set[] = { "SET", "llmgw:test:s", "text", "EX", "60" };
	ck_assert_int_eq(exec_sync(c, 5, set, &v), GW_CACHE_HIT);
	ck_assert_str_eq(v, "OK");
	free(v);
	const char *getnil[] = { "GET", "llmgw:test:none" };
	ck_assert_int_eq(exec_sync(c, 2, getnil, &v), GW_CACHE_MISS);
	ck_assert_ptr_null(v);
	/* An error reply is a BYPASS, counted, and keeps the connection. */
	const char *bad[] = { "INCR", "llmgw:test:s" };
	ck_assert_int_eq(exec_sync(c, 2, bad, &v), GW_CACHE_BYPASS);
	ck_assert_ptr_null(v);
	ck_assert_int_eq(gw_cache_state(c), GW_CACHE_UP);
	/* Arrays: empty is a MISS, otherwise unsupported. */
	const char *none[] = { "KEYS", "llmgw:nothing:*" };
	ck_assert_int_eq(exec_sync(c, 2, none, &v), GW_CACHE_MISS);
	const char *mget[] = { "MGET", "llmgw:test:s", "llmgw:test:n" };
	ck_assert_int_eq(exec_sync(c, 3, mget, &v), GW_CACHE_BYPASS);
	/* The URL's db is selected on every connection. */
	const char *info[] = { "CLIENT", "INFO" };
	ck_assert_int_eq(exec_sync(c, 2, info, &v), GW_CACHE_HIT);
	ck_assert_ptr_nonnull(strstr(v, " db=3 "));
	free(v);
	/* Fire and forget, then read it back through gw_cache_get. */
	const char *ff[] = { "SET", "llmgw:test:ff", "done" };
	size_t fflen[] = { 3, 13, 4 };
	gw_cache_exec(c, ff, fflen, 3, NULL, NULL);
	size_t len;
	ck_assert_int_eq(get(c, "llmgw:test:ff", &v, &len, NULL, NULL), GW_CACHE_HIT);
	ck_assert_str_eq(v, "done");
	free(v);
	/* Bad argument counts are refused at once. */
	bool sync = false;
	struct res s;
	res_init(&s);
	gw_cache_exec(c, ff, fflen, 0, res_cb, &s);
	res_wait(&s, 100);
	sync = pthread_equal(s.tid, pthread_self());
	ck_assert(sync);
	ck_assert_int_eq(s.r, GW_CACHE_BYPASS);
	res_free(&s);

	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.errors, 1);
	ck_assert_uint_eq(st.hits, 1); /* exec does not count as cache traffic */
	ck_assert_uint_eq(st.misses, 0);
	gw_cache_free(c);
	redis_kill(pid);
}
END_TEST

struct hammer {
	struct gw_cache *c;
	struct tally *t;
	int id;
};

static void *hammer_main(void *arg)
{
	struct hammer *h = arg;
	char key[64];
	for (int i = 0; i < 2000; i++) {
		snprintf(key, sizeof(key), "llmgw:test:%d:%d", h->id, i % 50);
		if (i < 50)
			gw_cache_set(h->c, key, "value", 5, 60);
		gw_cache_get(h->c, key, tally_cb, h->t);
	}
	return NULL;
}

START_TEST(many_callers)
{
	gw_log_set_level(GW_LOG_WARN);
	unsigned port = free_port();
	pid_t pid = redis_start(port);
	struct gw_cache *c = cache_up(port, 0);
	static struct tally t;
	struct hammer h[4];
	pthread_t th[4];
	for (int i = 0; i < 4; i++) {
		h[i] = (struct hammer){ c, &t, i };
		pthread_create(&th[i], NULL, hammer_main, &h[i]);
	}
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	ck_assert(tally_wait(&t, 8000, 20000));
	ck_assert_int_eq(atomic_load(&t.by[GW_CACHE_BYPASS]), 0);
	/* Each key was set before its first GET, on the same FIFO. */
	ck_assert_int_eq(atomic_load(&t.by[GW_CACHE_HIT]), 8000);
	struct gw_cache_counters st;
	gw_cache_stats(c, &st);
	ck_assert_uint_eq(st.hits + st.misses, 8000);
	ck_assert_uint_eq(st.sets, 200);
	gw_cache_free(c);
	redis_kill(pid);
}
END_TEST

Suite *cache_suite(void);

Suite *cache_suite(void)
{
	Suite *s = suite_create("cache");
	TCase *k = tcase_create("key");
	tcase_set_timeout(k, 10);
	tcase_add_test(k, key_format_and_canonical_form);
	tcase_add_test(k, key_member_order_independent);
	tcase_add_test(k, key_ignores_transport_members);
	tcase_add_test(k, key_depends_on_answer_members);
	tcase_add_test(k, key_explicit);
	tcase_add_test(k, key_scope);
	suite_add_tcase(s, k);

	TCase *r = tcase_create("redis");
	tcase_set_timeout(r, 60);
	tcase_add_test(r, disabled_and_bad_urls);
	tcase_add_test(r, set_get_hit_and_miss);
	tcase_add_test(r, ttl_expiry);
	tcase_add_test(r, redis_dies_then_returns);
	tcase_add_test(r, idle_death_noticed);
	tcase_add_test(r, hung_redis_times_out);
	tcase_add_test(r, unreachable_at_start);
	tcase_add_test(r, queue_full_never_blocks);
	tcase_add_test(r, free_completes_queued);
	tcase_add_test(r, exec_replies);
	tcase_add_test(r, many_callers);
	suite_add_tcase(s, r);
	return s;
}
