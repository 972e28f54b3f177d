/*
 * check_ledger.c - unit tests of the cost ledger (src/ledger.c) and its
 * surfaces (src/stats.c): exact pricing, breakdowns that add up,
 * save/load round trips, atomic saves, budget reservations under
 * concurrency, UTC period rollover, alerts, CSV, Prometheus text (checked
 * with promtool when it is installed) and the bounds on names.
 *
 * Tests that depend on the wall clock pin the ledger's clock with
 * gw_ledger_set_now. Temporary files and directories are made with
 * mkstemp/mkdtemp under /tmp and removed by the test.
 */
#include "ledger.h"
#include "stats.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

Suite *ledger_suite(void);

#define USD(x) ((gw_pusd)(x) * GW_PUSD_PER_USD)
#define PRICE(in_per_m_micro) ((gw_pusd)(in_per_m_micro))

/* 2024-03-31 23:59:50 UTC: ten seconds before a day and a month end. */
static int64_t t_month_end(void)
{
	struct tm tm = { .tm_year = 124, .tm_mon = 2, .tm_mday = 31,
			 .tm_hour = 23, .tm_min = 59, .tm_sec = 50 };
	return (int64_t)timegm(&tm);
}

static struct gw_config *conf_text(const char *text)
{
	char path[] = "/tmp/check_ledger_conf_XXXXXX";
	char err[512] = "";
	struct gw_config *c;
	int fd;

	unsetenv("LLMGW_CONFIG");
	if (!text)
		return gw_config_load(NULL, NULL, err, sizeof(err));
	fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	c = gw_config_load(path, NULL, err, sizeof(err));
	unlink(path);
	ck_assert_msg(c != NULL, "config: %s", err);
	return c;
}

static struct gw_config *conf_default(void)
{
	struct gw_config *c = conf_text(NULL);
	ck_assert_ptr_nonnull(c);
	return c;
}

static void rec(struct gw_ledger *l, const char *svc, int prov, const char *model,
		enum gw_priority prio, bool hit, bool err, int64_t pt, int64_t ct, gw_pusd cost,
		gw_pusd saved, int64_t queue_us, int64_t up_us)
{
	struct gw_ledger_entry e = {
		.service = svc, .provider = prov, .model = model, .prio = prio,
		.cache_hit = hit, .error = err, .prompt_tokens = pt, .completion_tokens = ct,
		.cost = cost, .saved = saved, .queue_us = queue_us, .upstream_us = up_us,
	};
	gw_ledger_record(l, &e);
}

/* A varied, deterministic load across services, providers, models, priorities. */
static void record_mix(struct gw_ledger *l, int n)
{
	static const char *const svcs[] = { "trade_validator", "news_sentiment", "scanner", "default" };
	static const char *const models[] = { "openai/gpt-4o-mini", "openai/gpt-4o",
					      "anthropic/claude-3-haiku", "some/unknown" };
	unsigned x = 12345;
	for (int i = 0; i < n; i++) {
		x = x * 1103515245u + 12345u;
		bool hit = (x >> 8) % 5 == 0;
		bool err = !hit && (x >> 12) % 7 == 0;
		int prov = hit ? -1 : (int)((x >> 4) % GW_PROV_COUNT);
		int64_t pt = (x >> 3) % 3000, ct = (x >> 5) % 800;
		gw_pusd cost = hit || err ? 0 : pt * 150000 + ct * 600000;
		rec(l, svcs[(x >> 16) % 4], prov, models[(x >> 18) % 4],
		    (enum gw_priority)((x >> 20) % GW_PRIO_COUNT), hit, err, hit ? 0 : pt,
		    hit ? 0 : ct, cost, hit ? pt * 150000 : 0, (int64_t)((x >> 7) % 3000000),
		    (int64_t)((x >> 9) % 70000000));
	}
}

static bool counts_eq(const struct gw_ledger_counts *a, const struct gw_ledger_counts *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

static void counts_sum(struct gw_ledger_counts *d, const struct gw_ledger_counts *c)
{
	d->requests += c->requests;
	d->cache_hits += c->cache_hits;
	d->errors += c->errors;
	d->prompt_tokens += c->prompt_tokens;
	d->completion_tokens += c->completion_tokens;
	d->cost += c->cost;
	d->saved += c->saved;
}

/* ---- pricing ---- */

START_TEST(price_table_exact)
{
	struct gw_config *c = conf_default();
	static const struct {
		const char *model;
		gw_pusd in, out;
	} table[] = {
		{ "openai/gpt-4o-mini", 150000, 600000 },
		{ "openai/gpt-4o", 2500000, 10000000 },
		{ "anthropic/claude-3-haiku", 250000, 1250000 },
		{ "anthropic/claude-3.5-sonnet", 3000000, 15000000 },
		{ "meta-llama/llama-3.1-70b", 350000, 400000 },
	};
	struct gw_usage u = { .prompt_tokens = 1234, .completion_tokens = 567 };
	bool priced = false;

	for (size_t i = 0; i < sizeof(table) / sizeof(table[0]); i++) {
		priced = false;
		gw_pusd got = gw_ledger_price(c, table[i].model, &u, &priced);
		ck_assert_msg(priced, "%s", table[i].model);
		ck_assert_int_eq(got, 1234 * table[i].in + 567 * table[i].out);
	}
	/* The example from the brief, in dollars: $0.0005253. */
	ck_assert_int_eq(gw_ledger_price(c, "openai/gpt-4o-mini", &u, NULL), 525300000);
	/* Aliases price like their model. */
	ck_assert_int_eq(gw_ledger_price(c, "gpt-4o-mini", &u, &priced), 525300000);
	/* A million tokens each of gpt-4o: exactly $2.50 + $10.00. */
	u = (struct gw_usage){ .prompt_tokens = 1000000, .completion_tokens = 1000000 };
	ck_assert_int_eq(gw_ledger_price(c, "openai/gpt-4o", &u, NULL), USD(12) + USD(1) / 2);
	gw_config_unref(c);
}
END_TEST

START_TEST(price_reported_and_unknown)
{
	struct gw_config *c = conf_default();
	struct gw_usage u = { .prompt_tokens = 1000, .completion_tokens = 1000,
			      .has_cost = true, .cost = 4242 };
	bool priced = false;

	ck_assert_int_eq(gw_ledger_price(c, "openai/gpt-4o", &u, &priced), 4242);
	ck_assert(priced);
	/* Reported cost wins even for a model the table does not know. */
	ck_assert_int_eq(gw_ledger_price(c, "nobody/knows", &u, &priced), 4242);
	u.has_cost = false;
	priced = true;
	ck_assert_int_eq(gw_ledger_price(c, "nobody/knows", &u, &priced), 0);
	ck_assert(!priced);
	ck_assert_int_eq(gw_ledger_price(c, NULL, &u, &priced), 0);
	ck_assert(!priced);
	/* Negative counts from a broken upstream count as 0. */
	u = (struct gw_usage){ .prompt_tokens = -5, .completion_tokens = 10 };
	ck_assert_int_eq(gw_ledger_price(c, "openai/gpt-4o-mini", &u, NULL), 6000000);
	/* Absurd counts saturate instead of wrapping. */
	u = (struct gw_usage){ .prompt_tokens = INT64_MAX / 2, .completion_tokens = INT64_MAX };
	ck_assert_int_eq(gw_ledger_price(c, "openai/gpt-4o", &u, NULL), INT64_MAX);
	gw_config_unref(c);
}
END_TEST

START_TEST(estimate_rule)
{
	struct gw_config *c = conf_default();
	/* 401 chars -> 101 prompt tokens; 100 completion tokens. */
	ck_assert_int_eq(gw_ledger_estimate(c, "openai/gpt-4o-mini", 401, 100),
			 101 * 150000 + 100 * 600000);
	/* No max_tokens: 1024 assumed. */
	ck_assert_int_eq(gw_ledger_estimate(c, "openai/gpt-4o-mini", 0, 0), 1024 * 600000);
	ck_assert_int_eq(gw_ledger_estimate(c, "nobody/knows", 4000, 100), 0);
	gw_config_unref(c);
}
END_TEST

/* ---- counters ---- */

START_TEST(breakdowns_add_up)
{
	struct gw_ledger *l = gw_ledger_new();
	struct gw_ledger_counts sum;
	ck_assert_ptr_nonnull(l);
	record_mix(l, 5000);
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	ck_assert_ptr_nonnull(s);
	ck_assert_int_eq(s->totals.requests, 5000);
	ck_assert_int_gt(s->totals.cache_hits, 0);
	ck_assert_int_gt(s->totals.errors, 0);
	ck_assert_int_gt(s->totals.cost, 0);
	ck_assert_int_gt(s->totals.saved, 0);

	memset(&sum, 0, sizeof(sum));
	for (size_t i = 0; i < s->n_services; i++)
		counts_sum(&sum, &s->services[i].c);
	ck_assert(counts_eq(&sum, &s->totals));
	memset(&sum, 0, sizeof(sum));
	for (size_t i = 0; i < s->n_models; i++)
		counts_sum(&sum, &s->models[i].c);
	ck_assert(counts_eq(&sum, &s->totals));
	memset(&sum, 0, sizeof(sum));
	for (int i = 0; i < GW_LEDGER_PROV_SLOTS; i++)
		counts_sum(&sum, &s->providers[i]);
	ck_assert(counts_eq(&sum, &s->totals));
	/* Cache hits are the "none" provider. */
	ck_assert_int_eq(s->providers[GW_PROV_COUNT].requests, s->totals.cache_hits);
	memset(&sum, 0, sizeof(sum));
	for (int i = 0; i < GW_PRIO_COUNT; i++)
		counts_sum(&sum, &s->priorities[i]);
	ck_assert(counts_eq(&sum, &s->totals));
	memset(&sum, 0, sizeof(sum));
	for (size_t i = 0; i < s->n_series; i++)
		counts_sum(&sum, &s->series[i].c);
	ck_assert(counts_eq(&sum, &s->totals));
	/* Histograms: one queue observation per miss. */
	uint64_t n = 0;
	for (int p = 0; p < GW_LEDGER_PROV_SLOTS; p++)
		for (int q = 0; q < GW_PRIO_COUNT; q++)
			n += s->queue_wait[p][q].count;
	ck_assert_int_eq((int64_t)n, s->totals.requests - s->totals.cache_hits);
	gw_ledger_snap_free(s);
	gw_ledger_free(l);
}
END_TEST

static json_int_t jint(json_t *o, const char *a, const char *b, const char *c)
{
	json_t *v = json_object_get(o, a);
	if (b)
		v = json_object_get(v, b);
	if (c)
		v = json_object_get(v, c);
	ck_assert_msg(json_is_integer(v), "%s.%s.%s", a, b ? b : "", c ? c : "");
	return json_integer_value(v);
}

START_TEST(stats_json_shape)
{
	struct gw_config *c = conf_default();
	struct gw_ledger *l = gw_ledger_new();
	struct gw_sched_snapshot snap;
	int64_t t0 = 1700000000 - 1700000000 % 60;

	memset(&snap, 0, sizeof(snap));
	snap.queues[GW_PRIO_LOW].depth = 7;
	snap.queues[GW_PRIO_LOW].oldest_ms = 1500;
	snap.limiters[GW_PROV_OPENAI].rpm = 60;
	snap.limiters[GW_PROV_OPENAI].tokens = 0.5;
	gw_ledger_set_now(l, t0 + 30);
	rec(l, "svc", GW_PROV_OPENAI, "openai/gpt-4o-mini", GW_PRIO_HIGH, false, false, 1234, 567,
	    525300000, 0, 1000, 200000);
	rec(l, "svc", -1, "openai/gpt-4o-mini", GW_PRIO_HIGH, true, false, 0, 0, 0, 525300000, 0, 0);
	gw_ledger_set_now(l, t0 + 90);
	rec(l, "svc", GW_PROV_OPENAI, "openai/gpt-4o-mini", GW_PRIO_LOW, false, true, 0, 0, 0, 0,
	    0, 0);

	char *text = gw_stats_json(l, c, &snap, 42);
	ck_assert_ptr_nonnull(text);
	json_error_t jerr;
	json_t *root = json_loads(text, 0, &jerr);
	ck_assert_msg(root != NULL, "%s", jerr.text);
	ck_assert_int_eq(jint(root, "uptime_s", NULL, NULL), 42);
	ck_assert_int_eq(jint(root, "totals", "requests", NULL), 3);
	ck_assert_int_eq(jint(root, "totals", "cache_hits", NULL), 1);
	ck_assert_int_eq(jint(root, "totals", "errors", NULL), 1);
	ck_assert_int_eq(jint(root, "totals", "cost_pusd", NULL), 525300000);
	ck_assert_int_eq(jint(root, "totals", "saved_pusd", NULL), 525300000);
	ck_assert(json_real_value(json_object_get(json_object_get(root, "totals"), "cost_usd")) ==
		  0.0005253);
	ck_assert_int_eq(jint(root, "services", "svc", "requests"), 3);
	ck_assert_int_eq(jint(root, "models", "openai/gpt-4o-mini", "requests"), 3);
	ck_assert_int_eq(jint(root, "providers", "openai", "requests"), 2);
	ck_assert_int_eq(jint(root, "providers", "none", "cache_hits"), 1);
	ck_assert_int_eq(jint(root, "providers", "openrouter", "requests"), 0);
	for (int p = 0; p < GW_PRIO_COUNT; p++)
		ck_assert_ptr_nonnull(json_object_get(json_object_get(root, "priorities"),
						      gw_priority_name((enum gw_priority)p)));
	ck_assert_int_eq(jint(root, "priorities", "HIGH", "requests"), 2);
	ck_assert_int_eq(jint(root, "queues", "LOW", "depth"), 7);
	ck_assert_int_eq(jint(root, "queues", "LOW", "oldest_ms"), 1500);
	ck_assert_int_eq((int)json_object_size(json_object_get(root, "limiters")), (int)c->n_order);
	ck_assert_int_eq(jint(root, "limiters", "openai", "rpm"), 60);
	json_t *h = json_object_get(root, "totals");
	ck_assert(json_real_value(json_object_get(h, "cache_hit_rate")) > 0.33 &&
		  json_real_value(json_object_get(h, "cache_hit_rate")) < 0.34);
	/* History: 60 minutes, oldest first, ending with the current minute. */
	h = json_object_get(root, "history");
	ck_assert_int_eq((int)json_array_size(h), 60);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(h, 59), "minute")),
			 t0 + 60);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(h, 59), "errors")), 1);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(h, 58), "requests")), 2);
	ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(h, 58), "cost_pusd")),
			 525300000);
	/* Projection: 525300000 over 60 s of counting -> 60 times that per hour. */
	ck_assert_int_eq(jint(root, "projection_pusd", "hourly", NULL), 525300000LL * 60);
	ck_assert_int_eq(jint(root, "projection_pusd", "daily", NULL), 525300000LL * 60 * 24);
	ck_assert_ptr_nonnull(json_object_get(json_object_get(root, "projection_usd"), "monthly"));
	ck_assert_ptr_nonnull(json_object_get(json_object_get(root, "budgets"), "global"));
	json_decref(root);
	free(text);
	gw_ledger_free(l);
	gw_config_unref(c);
}
END_TEST

/* ---- persistence ---- */

static int count_dir_entries(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int n = 0;
	ck_assert_ptr_nonnull(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			n++;
	closedir(d);
	return n;
}

static void rm_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char p[512];
	if (!d)
		return;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

START_TEST(save_load_round_trip)
{
	struct gw_config *c = conf_text("[budget]\ndaily_usd = 10\n"
					"[service.news_sentiment]\nbudget_daily_usd = 5\n");
	struct gw_ledger *a = gw_ledger_new(), *b = gw_ledger_new();
	struct gw_ledger_resv r;
	char dir[] = "/tmp/check_ledger_XXXXXX", path[256];
	int64_t now = t_month_end() - 3600;

	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ledger.json", dir);
	gw_ledger_set_now(a, now - 1800);
	record_mix(a, 800);
	gw_ledger_set_now(a, now);
	record_mix(a, 300);
	rec(a, "we\"ird\\name", 0, "m\nx", GW_PRIO_LOW, false, false, 1, 2, 3, 0, 4, 5);
	ck_assert_int_eq(gw_ledger_reserve(a, c, "news_sentiment", USD(1), false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(a, &r, USD(2));
	/* Take every alert (global and service) so that none is pending. */
	ck_assert(gw_ledger_take_alert(a, c, 0.2, NULL, 0));
	ck_assert(gw_ledger_take_alert(a, c, 0.2, NULL, 0));
	ck_assert(!gw_ledger_take_alert(a, c, 0.2, NULL, 0));

	char *s1 = gw_stats_json(a, c, NULL, 10);
	char *m1 = gw_stats_metrics(a, c, NULL, 10);
	char *v1 = gw_stats_csv(a);
	ck_assert_int_eq(gw_ledger_save(a, path), 0);
	ck_assert_int_eq(count_dir_entries(dir), 1);

	gw_ledger_set_now(b, now);
	ck_assert_int_eq(gw_ledger_load(b, path), 0);
	char *s2 = gw_stats_json(b, c, NULL, 10);
	char *m2 = gw_stats_metrics(b, c, NULL, 10);
	char *v2 = gw_stats_csv(b);
	ck_assert_str_eq(s1, s2);
	ck_assert_str_eq(m1, m2);
	ck_assert_str_eq(v1, v2);
	/* Budget spend and the alert state came back too. */
	ck_assert(!gw_ledger_take_alert(b, c, 0.2, NULL, 0));
	ck_assert_int_eq(gw_ledger_reserve(b, c, "news_sentiment", USD(3) + 1, false, &r, NULL,
					   NULL, 0), -EDQUOT);
	/* A second save/load gives the same bytes again. */
	ck_assert_int_eq(gw_ledger_save(b, path), 0);
	struct gw_ledger *d = gw_ledger_new();
	gw_ledger_set_now(d, now);
	ck_assert_int_eq(gw_ledger_load(d, path), 0);
	char *s3 = gw_stats_json(d, c, NULL, 10);
	ck_assert_str_eq(s1, s3);

	free(s1), free(s2), free(s3), free(m1), free(m2), free(v1), free(v2);
	gw_ledger_free(a);
	gw_ledger_free(b);
	gw_ledger_free(d);
	rm_dir(dir);
	gw_config_unref(c);
}
END_TEST

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(load_missing_and_corrupt)
{
	char dir[] = "/tmp/check_ledger_XXXXXX", path[256], ok[256];
	struct gw_ledger *l = gw_ledger_new();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/bad.json", dir);
	snprintf(ok, sizeof(ok), "%s/nothere.json", dir);

	ck_assert_int_eq(gw_ledger_load(l, ok), 0);
	write_file(path, "{not json");
	ck_assert_int_eq(gw_ledger_load(l, path), -EINVAL);
	write_file(path, "{\"format\":\"llmgw-ledger\",\"version\":99}");
	ck_assert_int_eq(gw_ledger_load(l, path), -EINVAL);
	write_file(path, "[1,2,3]");
	ck_assert_int_eq(gw_ledger_load(l, path), -EINVAL);

	/* A valid file with one bad number is refused as a whole. */
	struct gw_ledger *src = gw_ledger_new();
	record_mix(src, 50);
	ck_assert_int_eq(gw_ledger_save(src, ok), 0);
	FILE *f = fopen(ok, "r");
	char buf[1 << 16];
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	char *p = strstr(buf, "\"requests\"");
	ck_assert_ptr_nonnull(p);
	p[8] = 'z'; /* "requestz": a required field is missing */
	write_file(path, buf);
	ck_assert_int_eq(gw_ledger_load(l, path), -EINVAL);

	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	ck_assert_int_eq(s->totals.requests, 0);
	ck_assert_int_eq((int)s->n_services, 0);
	gw_ledger_snap_free(s);
	gw_ledger_free(src);
	gw_ledger_free(l);
	rm_dir(dir);
}
END_TEST

START_TEST(save_is_atomic)
{
	char dir[] = "/tmp/check_ledger_XXXXXX", path[256], sub[256];
	struct gw_ledger *l = gw_ledger_new();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/state", dir);
	snprintf(path, sizeof(path), "%s/state/ledger.json", dir);

	/* The missing state directory is created. */
	ck_assert_int_eq(gw_ledger_save(l, path), 0);
	for (int i = 0; i < 5; i++) {
		record_mix(l, 100);
		ck_assert_int_eq(gw_ledger_save(l, path), 0);
	}
	ck_assert_int_eq(count_dir_entries(sub), 1);
	/* A failed save (target is a directory) leaves no temporary file and
	 * the old snapshot intact. */
	char blocked[300];
	snprintf(blocked, sizeof(blocked), "%s/dir.json", sub);
	ck_assert_int_eq(mkdir(blocked, 0700), 0);
	ck_assert_int_lt(gw_ledger_save(l, blocked), 0);
	ck_assert_int_eq(count_dir_entries(sub), 2);
	rmdir(blocked);
	struct gw_ledger *m = gw_ledger_new();
	ck_assert_int_eq(gw_ledger_load(m, path), 0);
	struct gw_ledger_snap *s = gw_ledger_snapshot(m);
	ck_assert_int_eq(s->totals.requests, 500);
	gw_ledger_snap_free(s);
	gw_ledger_free(m);
	gw_ledger_free(l);
	rm_dir(sub);
	rmdir(dir);
}
END_TEST

/* ---- budgets ---- */

struct race {
	struct gw_ledger *l;
	struct gw_config *c;
	gw_pusd estimate;
	atomic_llong accepted;
	atomic_int refused;
	pthread_barrier_t go;
};

static void *race_thread(void *arg)
{
	struct race *r = arg;
	pthread_barrier_wait(&r->go);
	for (int i = 0; i < 20; i++) {
		struct gw_ledger_resv res;
		int retry = 0;
		char why[256];
		int rc = gw_ledger_reserve(r->l, r->c, "scanner", r->estimate, false, &res, &retry,
					   why, sizeof(why));
		if (rc == 0) {
			atomic_fetch_add(&r->accepted, r->estimate);
			gw_ledger_settle(r->l, &res, r->estimate);
		} else {
			ck_assert_int_eq(rc, -EDQUOT);
			ck_assert(retry >= 1 && retry <= 86400);
			ck_assert_ptr_nonnull(strstr(why, "global daily budget"));
			atomic_fetch_add(&r->refused, 1);
		}
	}
	return NULL;
}

START_TEST(reserve_under_concurrency)
{
	struct race r = { .l = gw_ledger_new(), .c = conf_default() };
	pthread_t th[50];
	/* $1 a day, estimates of $0.0123 (does not divide the limit). */
	r.c->budget_daily = USD(1);
	r.estimate = 12300000000;
	atomic_init(&r.accepted, 0);
	atomic_init(&r.refused, 0);
	pthread_barrier_init(&r.go, NULL, 50);
	for (int i = 0; i < 50; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, race_thread, &r), 0);
	for (int i = 0; i < 50; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&r.go);

	long long acc = atomic_load(&r.accepted);
	ck_assert_int_le(acc, USD(1) + r.estimate);
	/* Strict check: it never goes over at all, and fills up to one estimate short. */
	ck_assert_int_le(acc, USD(1));
	ck_assert_int_gt(acc, USD(1) - r.estimate);
	ck_assert_int_eq(acc / r.estimate, 81);
	ck_assert_int_eq(atomic_load(&r.refused), 50 * 20 - 81);
	struct gw_ledger_snap *s = gw_ledger_snapshot(r.l);
	ck_assert_int_eq(s->global.day_spent, acc);
	ck_assert_int_eq(s->global.reserved, 0);
	gw_ledger_snap_free(s);

	/* Holds alone (not yet settled) count too: 50 threads, no settle. */
	gw_ledger_free(r.l);
	r.l = gw_ledger_new();
	struct gw_ledger_resv res[200];
	int ok = 0;
	for (int i = 0; i < 200; i++)
		if (gw_ledger_reserve(r.l, r.c, "x", r.estimate, false, &res[i], NULL, NULL, 0) == 0)
			ok++;
	ck_assert_int_eq(ok, 81);
	/* CRITICAL with allow_over is never refused, and still held. */
	struct gw_ledger_resv crit;
	ck_assert_int_eq(gw_ledger_reserve(r.l, r.c, "x", r.estimate, true, &crit, NULL, NULL, 0), 0);
	gw_ledger_settle(r.l, &crit, 0);
	for (int i = 0; i < 81; i++)
		gw_ledger_settle(r.l, &res[i], 0);
	s = gw_ledger_snapshot(r.l);
	ck_assert_int_eq(s->global.reserved, 0);
	ck_assert_int_eq(s->global.day_spent, 0);
	gw_ledger_snap_free(s);
	gw_ledger_free(r.l);
	gw_config_unref(r.c);
}
END_TEST

START_TEST(period_rollover)
{
	struct gw_config *c = conf_text("[budget]\nmonthly_usd = 3\n"
					"[service.news_sentiment]\nbudget_daily_usd = 1\n");
	struct gw_ledger *l = gw_ledger_new();
	struct gw_ledger_resv r;
	int64_t t = t_month_end();
	int retry = 0;
	char why[256] = "";

	/* Day 1 (a month's last day), 23:59:50: spend the service's $1. */
	gw_ledger_set_now(l, t);
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", USD(1), false, &r, &retry, why,
					   sizeof(why)), 0);
	gw_ledger_settle(l, &r, USD(1));
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", 1, false, &r, &retry, why,
					   sizeof(why)), -EDQUOT);
	ck_assert_int_eq(retry, 10);
	ck_assert_ptr_nonnull(strstr(why, "service news_sentiment daily budget"));
	/* Other services only meet the global monthly limit: spend $2 more. */
	ck_assert_int_eq(gw_ledger_reserve(l, c, "scanner", USD(2), false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(2));
	ck_assert_int_eq(gw_ledger_reserve(l, c, "scanner", 1, false, &r, &retry, why, sizeof(why)),
			 -EDQUOT);
	ck_assert_int_eq(retry, 10);
	ck_assert_ptr_nonnull(strstr(why, "global monthly budget"));

	/* Next day is also a new month: both reset. */
	gw_ledger_set_now(l, t + 15);
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", USD(1), false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(1) / 2);
	ck_assert_int_eq(gw_ledger_reserve(l, c, "scanner", USD(1), false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(1));
	/* Monthly: $1.5 of $3 spent; an estimate of $2 no longer fits; the
	 * month (April, 30 days) ends in 30 days minus 5 s. */
	ck_assert_int_eq(gw_ledger_reserve(l, c, "scanner", USD(2), false, &r, &retry, why,
					   sizeof(why)), -EDQUOT);
	ck_assert_int_eq(retry, 30 * 86400 - 5);
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	ck_assert_int_eq(s->global.month_spent, USD(1) + USD(1) / 2);
	ck_assert_int_eq(s->global.day_spent, USD(1) + USD(1) / 2);
	gw_ledger_snap_free(s);

	/* A day later, daily spend is 0 again but monthly stays. */
	gw_ledger_set_now(l, t + 15 + 86400);
	s = gw_ledger_snapshot(l);
	ck_assert_int_eq(s->global.day_spent, 0);
	ck_assert_int_eq(s->global.month_spent, USD(1) + USD(1) / 2);
	gw_ledger_snap_free(s);
	gw_ledger_free(l);
	gw_config_unref(c);
}
END_TEST

START_TEST(alert_fires_once)
{
	struct gw_config *c = conf_text("[budget]\ndaily_usd = 100\n"
					"[service.news_sentiment]\nbudget_daily_usd = 5\n"
					"budget_monthly_usd = 100\n");
	struct gw_ledger *l = gw_ledger_new();
	struct gw_ledger_resv r;
	char msg[256] = "";
	int64_t t = t_month_end() - 86400 * 3;

	gw_ledger_set_now(l, t);
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", 0, false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(3));
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", 0, false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(1)); /* $4 of $5: exactly 80% */
	ck_assert(gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert_ptr_nonnull(strstr(msg, "news_sentiment"));
	ck_assert_ptr_nonnull(strstr(msg, "daily"));
	ck_assert_ptr_nonnull(strstr(msg, "$4.00"));
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	/* A higher threshold is a new alert, a lower one is not. */
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", 0, false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(1));
	ck_assert(gw_ledger_take_alert(l, c, 1.0, msg, sizeof(msg)));
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert(!gw_ledger_take_alert(l, c, 1.0, msg, sizeof(msg)));
	/* Next day: the daily period alerts again. */
	gw_ledger_set_now(l, t + 86400);
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert_int_eq(gw_ledger_reserve(l, c, "news_sentiment", 0, false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(4) + USD(1) / 2);
	ck_assert(gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	/* Global: $100 a day; spend $80 on another service. */
	ck_assert_int_eq(gw_ledger_reserve(l, c, "scanner", 0, false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, USD(80));
	ck_assert(gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	ck_assert_ptr_nonnull(strstr(msg, "global"));
	ck_assert(!gw_ledger_take_alert(l, c, 0.8, msg, sizeof(msg)));
	gw_ledger_free(l);
	gw_config_unref(c);
}
END_TEST

/* ---- CSV and metrics ---- */

START_TEST(csv_rows)
{
	struct gw_ledger *l = gw_ledger_new();
	rec(l, "b_svc", GW_PROV_OPENAI, "openai/gpt-4o-mini", GW_PRIO_HIGH, false, false, 1234, 567,
	    525300000, 0, 0, 0);
	rec(l, "b_svc", -1, "openai/gpt-4o-mini", GW_PRIO_HIGH, true, false, 0, 0, 0, 525300000, 0, 0);
	rec(l, "a,svc", GW_PROV_OPENAI, "x", GW_PRIO_LOW, false, true, 0, 0, 0, 0, 0, 0);
	char *csv = gw_stats_csv(l);
	ck_assert_ptr_nonnull(csv);
	ck_assert_str_eq(csv,
			 "service,requests,cache_hits,errors,prompt_tokens,completion_tokens,"
			 "cost_usd,saved_usd,cache_hit_rate,error_rate,avg_cost_usd\n"
			 "\"a,svc\",1,0,1,0,0,0.00,0.00,0.000000,1.000000,0.00\n"
			 "b_svc,2,1,0,1234,567,0.0005253,0.0005253,0.500000,0.000000,0.00026265\n");
	free(csv);
	gw_ledger_free(l);
	/* Empty ledger: the header alone. */
	l = gw_ledger_new();
	csv = gw_stats_csv(l);
	ck_assert_str_eq(csv, "service,requests,cache_hits,errors,prompt_tokens,completion_tokens,"
			      "cost_usd,saved_usd,cache_hit_rate,error_rate,avg_cost_usd\n");
	free(csv);
	gw_ledger_free(l);
}
END_TEST

static void promtool_check(const char *text)
{
	char path[] = "/tmp/check_ledger_prom_XXXXXX";
	char cmd[256];
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	if (system("command -v promtool >/dev/null 2>&1") == 0) {
		snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
		int rc = system(cmd);
		ck_assert_msg(rc == 0, "promtool check metrics failed (%d) on %s", rc, path);
	} else {
		fprintf(stderr, "check_ledger: promtool not installed, metrics check skipped\n");
	}
	unlink(path);
}

START_TEST(metrics_text)
{
	struct gw_config *c = conf_default();
	struct gw_ledger *l = gw_ledger_new();
	struct gw_sched_snapshot snap;
	memset(&snap, 0, sizeof(snap));
	snap.queues[GW_PRIO_CRITICAL].depth = 3;
	snap.limiters[GW_PROV_OPENROUTER].tokens = 0.25;
	snap.limiters[GW_PROV_OPENROUTER].in_flight = 2;
	snap.limiters[GW_PROV_ANTHROPIC].cooldown_ms = 1500;

	/* Empty ledger first: families without samples must still be valid. */
	char *text = gw_stats_metrics(l, c, &snap, 5);
	ck_assert_ptr_nonnull(text);
	promtool_check(text);
	free(text);

	record_mix(l, 2000);
	rec(l, "svc\"q", GW_PROV_OPENAI, "a\\b\nc", GW_PRIO_LOW, false, false, 10, 20,
	    1234567, 0, 2500, 1000000);
	text = gw_stats_metrics(l, c, &snap, 5);
	ck_assert_ptr_nonnull(text);
	promtool_check(text);
	/* Names are cleaned (newline -> '?'), quotes and backslashes escaped. */
	ck_assert_ptr_nonnull(strstr(text,
		"llmgw_requests_total{service=\"svc\\\"q\",provider=\"openai\",model=\"a\\\\b?c\","
		"priority=\"LOW\",cache=\"miss\"} 1\n"));
	ck_assert_ptr_nonnull(strstr(text,
		"llmgw_cost_usd_total{service=\"svc\\\"q\",provider=\"openai\",model=\"a\\\\b?c\","
		"priority=\"LOW\",cache=\"miss\"} 0.000001234567\n"));
	ck_assert_ptr_nonnull(strstr(text, ",kind=\"completion\"} 20\n"));
	ck_assert_ptr_nonnull(strstr(text,
		"llmgw_upstream_latency_seconds_bucket{provider=\"openai\",priority=\"LOW\",le=\"+Inf\"}"));
	ck_assert_ptr_nonnull(strstr(text, "le=\"0.001\""));
	ck_assert_ptr_nonnull(strstr(text, "le=\"2.5\""));
	ck_assert_ptr_nonnull(strstr(text, "llmgw_queue_depth{priority=\"CRITICAL\"} 3\n"));
	ck_assert_ptr_nonnull(strstr(text, "llmgw_limiter_in_flight{provider=\"openrouter\"} 2\n"));
	ck_assert_ptr_nonnull(strstr(text, "llmgw_limiter_cooldown_seconds{provider=\"anthropic\"} 1.500\n"));
	ck_assert_ptr_nonnull(strstr(text, "llmgw_uptime_seconds 5\n"));
	ck_assert_ptr_nonnull(strstr(text, "# TYPE llmgw_queue_wait_seconds histogram\n"));
	free(text);
	gw_ledger_free(l);
	gw_config_unref(c);
}
END_TEST

START_TEST(histogram_buckets)
{
	struct gw_ledger *l = gw_ledger_new();
	/* 1 ms is in le=0.001; 1.001 ms in le=0.005; 2 min in +Inf. */
	rec(l, "s", GW_PROV_OPENAI, "m", GW_PRIO_HIGH, false, false, 0, 0, 0, 0, 1000, 1000);
	rec(l, "s", GW_PROV_OPENAI, "m", GW_PRIO_HIGH, false, false, 0, 0, 0, 0, 1001, 1001);
	rec(l, "s", GW_PROV_OPENAI, "m", GW_PRIO_HIGH, false, false, 0, 0, 0, 0, 120000000, 5);
	rec(l, "s", -1, "m", GW_PRIO_HIGH, true, false, 0, 0, 0, 0, 999, 999);
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	const struct gw_ledger_hist *q = &s->queue_wait[GW_PROV_OPENAI][GW_PRIO_HIGH];
	ck_assert_int_eq((int)q->count, 3);
	ck_assert_int_eq((int)q->buckets[0], 1);
	ck_assert_int_eq((int)q->buckets[1], 1);
	ck_assert_int_eq((int)q->buckets[GW_LEDGER_HIST_BUCKETS - 1], 1);
	ck_assert_int_eq(q->sum_us, 120002001);
	ck_assert_int_eq((int)s->upstream[GW_PROV_OPENAI][GW_PRIO_HIGH].count, 3);
	/* Hits are not waits or upstream calls. */
	ck_assert_int_eq((int)s->queue_wait[GW_PROV_COUNT][GW_PRIO_HIGH].count, 0);
	gw_ledger_snap_free(s);
	gw_ledger_free(l);
}
END_TEST

/* ---- bounds ---- */

START_TEST(bounded_names)
{
	struct gw_config *c = conf_text("[service.zz_configured]\nbudget_daily_usd = 1\n");
	struct gw_ledger *l = gw_ledger_new();
	struct gw_ledger_resv r;
	char name[64];
	for (int i = 0; i < 1500; i++) {
		snprintf(name, sizeof(name), "svc%04d", i);
		rec(l, name, GW_PROV_OPENAI, name, GW_PRIO_LOW, false, false, 1, 1, 1, 0, 0, 0);
	}
	/* A configured service still gets its own entry past the cap. */
	ck_assert_int_eq(gw_ledger_reserve(l, c, "zz_configured", 5, false, &r, NULL, NULL, 0), 0);
	gw_ledger_settle(l, &r, 5);
	rec(l, "zz_configured", GW_PROV_OPENAI, "m", GW_PRIO_LOW, false, false, 1, 1, 1, 0, 0, 0);
	/* A 300-byte name is cut. */
	char longname[301];
	memset(longname, 'x', 300);
	longname[300] = '\0';
	rec(l, longname, GW_PROV_OPENAI, longname, GW_PRIO_LOW, false, false, 0, 0, 0, 0, 0, 0);

	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	ck_assert_int_eq((int)s->n_services, GW_LEDGER_MAX_SERVICES + 2);
	ck_assert_int_eq((int)s->n_models, GW_LEDGER_MAX_MODELS + 1);
	int64_t other = -1, conf_reqs = -1;
	for (size_t i = 0; i < s->n_services; i++) {
		ck_assert_int_le((int)strlen(s->services[i].name), GW_LEDGER_NAME_MAX);
		if (!strcmp(s->services[i].name, "_other"))
			other = s->services[i].c.requests;
		if (!strcmp(s->services[i].name, "zz_configured")) {
			conf_reqs = s->services[i].c.requests;
			ck_assert_int_eq(s->services[i].b.day_spent, 5);
		}
	}
	ck_assert_int_eq(other, 501);
	ck_assert_int_eq(conf_reqs, 1);
	ck_assert_int_eq(s->totals.requests, 1502);
	gw_ledger_snap_free(s);
	gw_ledger_free(l);

	/* Series: 1000 services x 11 models would be 11000 series. */
	l = gw_ledger_new();
	for (int m = 0; m < 11; m++) {
		char model[16];
		snprintf(model, sizeof(model), "m%d", m);
		for (int i = 0; i < 1000; i++) {
			snprintf(name, sizeof(name), "svc%04d", i);
			rec(l, name, GW_PROV_OPENAI, model, GW_PRIO_LOW, false, false, 0, 0, 0, 0, 0, 0);
		}
	}
	s = gw_ledger_snapshot(l);
	ck_assert_int_le((int)s->n_series, GW_LEDGER_MAX_SERIES + 2 * GW_LEDGER_PROV_SLOTS * GW_PRIO_COUNT);
	int64_t sum = 0;
	for (size_t i = 0; i < s->n_series; i++)
		sum += s->series[i].c.requests;
	ck_assert_int_eq(sum, 11000);
	gw_ledger_snap_free(s);
	gw_ledger_free(l);
	gw_config_unref(c);
}
END_TEST

/*
 * The month a refusal waits for, against libc's calendar: a global
 * monthly budget that is spent refuses with Retry-After = seconds to the
 * first of the next month (UTC), over leap years, December and the
 * century rules.
 */
START_TEST(month_end_calendar)
{
	struct gw_config *c = conf_text("[budget]\nmonthly_usd = 1\n");
	struct gw_ledger_resv r;
	int retry = 0;
	unsigned checked = 0;
	for (int year = 1970; year <= 2400; year += 1 + (year > 2110 ? 37 : 0)) {
		for (int mon = 0; mon < 12; mon++) {
			struct tm tm = { .tm_year = year - 1900, .tm_mon = mon,
					 .tm_mday = 1 + (year * 7 + mon * 11) % 28,
					 .tm_hour = (year + mon) % 24, .tm_sec = 17 };
			int64_t now = (int64_t)timegm(&tm);
			struct tm next = { .tm_year = year - 1900, .tm_mon = mon + 1, .tm_mday = 1 };
			int64_t want = (int64_t)timegm(&next) - now;
			struct gw_ledger *l = gw_ledger_new();
			gw_ledger_set_now(l, now);
			ck_assert_int_eq(gw_ledger_reserve(l, c, "svc", USD(1), false, &r, NULL, NULL,
							   0), 0);
			gw_ledger_settle(l, &r, USD(1));
			ck_assert_int_eq(gw_ledger_reserve(l, c, "svc", 1, false, &r, &retry, NULL, 0),
					 -EDQUOT);
			ck_assert_msg(retry == want, "%04d-%02d: retry %d, want %lld", year, mon + 1,
				      retry, (long long)want);
			/* One second before the month ends, the spend still counts;
			 * at its end it is gone. */
			gw_ledger_set_now(l, now + want - 1);
			ck_assert_int_eq(gw_ledger_reserve(l, c, "svc", 1, false, &r, &retry, NULL, 0),
					 -EDQUOT);
			ck_assert_int_eq(retry, 1);
			gw_ledger_set_now(l, now + want);
			ck_assert_int_eq(gw_ledger_reserve(l, c, "svc", 1, false, &r, NULL, NULL, 0), 0);
			gw_ledger_free(l);
			checked++;
		}
	}
	ck_assert_uint_gt(checked, 12 * 140);
	gw_config_unref(c);
}
END_TEST

START_TEST(format_usd)
{
	char b[40];
	gw_ledger_format_usd(0, b, sizeof(b));
	ck_assert_str_eq(b, "0.00");
	gw_ledger_format_usd(525300000, b, sizeof(b));
	ck_assert_str_eq(b, "0.0005253");
	gw_ledger_format_usd(USD(5), b, sizeof(b));
	ck_assert_str_eq(b, "5.00");
	gw_ledger_format_usd(1, b, sizeof(b));
	ck_assert_str_eq(b, "0.000000000001");
	gw_ledger_format_usd(INT64_MAX, b, sizeof(b));
	ck_assert_str_eq(b, "9223372.036854775807");
	gw_ledger_format_usd(-USD(1) / 10, b, sizeof(b));
	ck_assert_str_eq(b, "-0.10");
	gw_ledger_format_usd(INT64_MIN, b, sizeof(b));
	ck_assert_str_eq(b, "-9223372.036854775808");
	gw_ledger_format_usd(USD(12) + 340000000000, b, sizeof(b));
	ck_assert_str_eq(b, "12.34");
	/* A short buffer keeps what fits, NUL-terminated. */
	gw_ledger_format_usd(USD(12) + 340000000000, b, 4);
	ck_assert_str_eq(b, "12.");
}
END_TEST

Suite *ledger_suite(void)
{
	Suite *s = suite_create("ledger");
	TCase *tc = tcase_create("pricing");
	tcase_add_test(tc, price_table_exact);
	tcase_add_test(tc, price_reported_and_unknown);
	tcase_add_test(tc, estimate_rule);
	tcase_add_test(tc, format_usd);
	tcase_add_test(tc, month_end_calendar);
	suite_add_tcase(s, tc);

	tc = tcase_create("counters");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, breakdowns_add_up);
	tcase_add_test(tc, stats_json_shape);
	tcase_add_test(tc, histogram_buckets);
	tcase_add_test(tc, bounded_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("persistence");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, save_load_round_trip);
	tcase_add_test(tc, load_missing_and_corrupt);
	tcase_add_test(tc, save_is_atomic);
	suite_add_tcase(s, tc);

	tc = tcase_create("budgets");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, reserve_under_concurrency);
	tcase_add_test(tc, period_rollover);
	tcase_add_test(tc, alert_fires_once);
	suite_add_tcase(s, tc);

	tc = tcase_create("surfaces");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, csv_rows);
	tcase_add_test(tc, metrics_text);
	suite_add_tcase(s, tc);
	return s;
}
