/*
 * ledger.c - the in-process cost ledger: counters, pricing, budgets with
 * reservations, the per-minute history and the JSON snapshot on disk.
 *
 * All state lives in one struct state behind one mutex. Critical sections
 * are counter arithmetic, a hash lookup or a copy; formatting and file
 * I/O happen outside the lock on a snapshot (gw_ledger_snapshot). A load
 * builds a complete new state and swaps it in, so a bad file changes
 * nothing.
 */
#include "ledger.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define NMAP_HEADS 1024
#define SERIES_HEADS 4096
#define NO_PROV_SLOT GW_PROV_COUNT
#define FILE_FORMAT "llmgw-ledger"
#define FILE_VERSION 1
/* A snapshot of the largest bounded ledger is a few MB; refuse absurd files. */
#define FILE_MAX_BYTES ((size_t)256 << 20)

const int64_t gw_ledger_hist_bounds_ms[GW_LEDGER_HIST_BUCKETS - 1] = {
	1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
};

/* A service or model with its counters (and, for services, budget spend). */
struct named {
	struct named *next;
	size_t snap_idx;                /* scratch for gw_ledger_snapshot */
	struct gw_ledger_counts c;
	struct gw_ledger_budget b;
	char name[];
};

struct nmap {
	struct named *heads[NMAP_HEADS];
	size_t n;
};

struct series {
	struct series *next;
	const struct named *svc;
	const struct named *model;
	int prov;                       /* slot, 0..GW_PROV_COUNT */
	int prio;
	bool hit;
	struct gw_ledger_counts c;
};

struct state {
	int64_t since_s;
	struct gw_ledger_counts totals;
	struct gw_ledger_counts prov[GW_LEDGER_PROV_SLOTS];
	struct gw_ledger_counts prio[GW_PRIO_COUNT];
	struct nmap services;
	struct nmap models;
	struct series *series[SERIES_HEADS];
	size_t n_series;
	struct gw_ledger_hist queue[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT];
	struct gw_ledger_hist up[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT];
	struct gw_ledger_minute ring[GW_LEDGER_HISTORY];
	struct gw_ledger_budget global;
};

struct gw_ledger {
	pthread_mutex_t mu;
	struct state *st;
	_Atomic int64_t pinned_now;
};

/* ---- small helpers ---- */

static gw_pusd sat_add(gw_pusd a, gw_pusd b)
{
	gw_pusd r;
	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

static gw_pusd sat_mul(int64_t a, int64_t b)
{
	int64_t r;
	if (__builtin_mul_overflow(a, b, &r))
		return ((a < 0) != (b < 0)) ? INT64_MIN : INT64_MAX;
	return r;
}

static int64_t nonneg(int64_t v)
{
	return v < 0 ? 0 : v;
}

static void counts_add(struct gw_ledger_counts *dst, const struct gw_ledger_counts *d)
{
	dst->requests = sat_add(dst->requests, d->requests);
	dst->cache_hits = sat_add(dst->cache_hits, d->cache_hits);
	dst->errors = sat_add(dst->errors, d->errors);
	dst->prompt_tokens = sat_add(dst->prompt_tokens, d->prompt_tokens);
	dst->completion_tokens = sat_add(dst->completion_tokens, d->completion_tokens);
	dst->cost = sat_add(dst->cost, d->cost);
	dst->saved = sat_add(dst->saved, d->saved);
}

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/* Copies in into out (GW_LEDGER_NAME_MAX + 1 bytes): cut, non-printable
 * bytes replaced, so every name is safe in JSON, CSV and label values. */
static void clean_name(const char *in, char *out, const char *dflt)
{
	size_t i = 0;
	if (!in || !*in)
		in = dflt;
	for (; in[i] && i < GW_LEDGER_NAME_MAX; i++) {
		unsigned char ch = (unsigned char)in[i];
		out[i] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
	}
	out[i] = '\0';
}

static int prov_slot(int provider)
{
	return (provider >= 0 && provider < GW_PROV_COUNT) ? provider : NO_PROV_SLOT;
}

static int prio_idx(int prio)
{
	return (prio >= 0 && prio < GW_PRIO_COUNT) ? prio : GW_PRIO_MEDIUM;
}

const char *gw_ledger_provider_name(int slot)
{
	if (slot >= 0 && slot < GW_PROV_COUNT)
		return gw_provider_name((enum gw_provider_id)slot);
	return GW_LEDGER_NO_PROVIDER;
}

static int provider_from_label(const char *s)
{
	if (strcmp(s, GW_LEDGER_NO_PROVIDER) == 0)
		return NO_PROV_SLOT;
	return gw_provider_from_name(s);
}

static int prio_from_label(const char *s)
{
	for (int p = 0; p < GW_PRIO_COUNT; p++)
		if (strcmp(s, gw_priority_name((enum gw_priority)p)) == 0)
			return p;
	return -1;
}

void gw_ledger_format_usd(gw_pusd v, char *buf, size_t len)
{
	uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	uint64_t frac = a % (uint64_t)GW_PUSD_PER_USD;
	char tmp[40];
	size_t n = 0;

	if (v < 0)
		tmp[n++] = '-';
	n += gw_fmt_u64(tmp + n, a / (uint64_t)GW_PUSD_PER_USD);
	tmp[n++] = '.';
	/* Twelve places, trailing zeros dropped down to two. */
	char digits[12];
	for (int i = 11; i >= 0; i--, frac /= 10)
		digits[i] = (char)('0' + frac % 10);
	int keep = 12;
	while (keep > 2 && digits[keep - 1] == '0')
		keep--;
	memcpy(tmp + n, digits, (size_t)keep);
	n += (size_t)keep;
	if (len == 0)
		return;
	if (n >= len)
		n = len - 1;
	memcpy(buf, tmp, n);
	buf[n] = '\0';
}

/* ---- time and periods (UTC) ---- */

static int64_t ledger_now(struct gw_ledger *l)
{
	int64_t p = atomic_load(&l->pinned_now);
	return p ? p : gw_wall_s();
}

struct periods {
	int32_t day;
	int32_t month;
	int64_t day_left_s;
	int64_t month_left_s;
};

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	unsigned yoe = (unsigned)(y - era * 400);
	unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* Year and month (1..12) of a day number, the inverse of the above. */
static void civil_from_days(int64_t z, int64_t *year, unsigned *month)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	unsigned mp = (5 * doy + 2) / 153;
	*month = mp < 10 ? mp + 3 : mp - 9;
	*year = (int64_t)yoe + era * 400 + (*month <= 2);
}

/* Computed with integer calendar arithmetic: it runs three times per
 * request, where gmtime_r and timegm cost more than the booking. */
static void periods_at(int64_t now, struct periods *p)
{
	int64_t day = now >= 0 ? now / 86400 : (now - 86399) / 86400;
	int64_t year;
	unsigned month;

	p->day = (int32_t)day;
	p->day_left_s = (day + 1) * 86400 - now;
	civil_from_days(day, &year, &month);
	p->month = (int32_t)(year * 12 + (month - 1));
	int64_t next = month == 12 ? days_from_civil(year + 1, 1, 1)
				   : days_from_civil(year, month + 1, 1);
	p->month_left_s = next * 86400 - now;
}

/* Spend of an old period does not count in the new one; holds do. */
static void budget_roll(struct gw_ledger_budget *b, const struct periods *p)
{
	if (b->day != p->day) {
		b->day = p->day;
		b->day_spent = 0;
	}
	if (b->month != p->month) {
		b->month = p->month;
		b->month_spent = 0;
	}
}

/* ---- maps ---- */

static struct named *nmap_find(struct nmap *m, const char *name)
{
	struct named *e = m->heads[hash_str(name) % NMAP_HEADS];
	for (; e; e = e->next)
		if (strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static struct named *nmap_add(struct nmap *m, const char *name)
{
	size_t len = strlen(name);
	struct named *e = calloc(1, sizeof(*e) + len + 1);
	if (!e)
		return NULL;
	memcpy(e->name, name, len + 1);
	uint32_t h = hash_str(name) % NMAP_HEADS;
	e->next = m->heads[h];
	m->heads[h] = e;
	m->n++;
	return e;
}

/* The entry for name; past cap (unless force) the "_other" entry. NULL on OOM. */
static struct named *nmap_get(struct nmap *m, const char *name, size_t cap, bool force)
{
	struct named *e = nmap_find(m, name);
	if (e)
		return e;
	if (m->n >= cap && !force) {
		e = nmap_find(m, GW_LEDGER_OTHER);
		return e ? e : nmap_add(m, GW_LEDGER_OTHER);
	}
	return nmap_add(m, name);
}

static void nmap_clear(struct nmap *m)
{
	for (size_t i = 0; i < NMAP_HEADS; i++) {
		struct named *e = m->heads[i];
		while (e) {
			struct named *next = e->next;
			free(e);
			e = next;
		}
		m->heads[i] = NULL;
	}
	m->n = 0;
}

static uint32_t series_hash(const struct named *svc, const struct named *model, int prov,
			    int prio, bool hit)
{
	uint64_t h = (uint64_t)(uintptr_t)svc * 0x9E3779B97F4A7C15ull;
	h ^= (uint64_t)(uintptr_t)model * 0xC2B2AE3D27D4EB4Full;
	h ^= (uint64_t)(prov * 8 + prio * 2 + (hit ? 1 : 0)) * 0x165667B19E3779F9ull;
	return (uint32_t)(h ^ (h >> 29) ^ (h >> 41));
}

static struct series *series_lookup(struct state *st, const struct named *svc,
				    const struct named *model, int prov, int prio, bool hit,
				    bool create)
{
	uint32_t h = series_hash(svc, model, prov, prio, hit) % SERIES_HEADS;
	struct series *s = st->series[h];
	for (; s; s = s->next)
		if (s->svc == svc && s->model == model && s->prov == prov && s->prio == prio &&
		    s->hit == hit)
			return s;
	if (!create)
		return NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->svc = svc;
	s->model = model;
	s->prov = prov;
	s->prio = prio;
	s->hit = hit;
	s->next = st->series[h];
	st->series[h] = s;
	st->n_series++;
	return s;
}

/* The series for the labels; past the cap, service and model fold into
 * "_other" (at most 2 * slots * priorities more series). */
static struct series *series_get(struct state *st, struct named *svc, struct named *model,
				 int prov, int prio, bool hit)
{
	struct series *s = series_lookup(st, svc, model, prov, prio, hit, false);
	if (s)
		return s;
	if (st->n_series < GW_LEDGER_MAX_SERIES)
		return series_lookup(st, svc, model, prov, prio, hit, true);
	svc = nmap_get(&st->services, GW_LEDGER_OTHER, 0, true);
	model = nmap_get(&st->models, GW_LEDGER_OTHER, 0, true);
	if (!svc || !model)
		return NULL;
	return series_lookup(st, svc, model, prov, prio, hit, true);
}

static struct state *state_new(int64_t now)
{
	struct state *st = calloc(1, sizeof(*st));
	if (st)
		st->since_s = now;
	return st;
}

static void state_free(struct state *st)
{
	if (!st)
		return;
	nmap_clear(&st->services);
	nmap_clear(&st->models);
	for (size_t i = 0; i < SERIES_HEADS; i++) {
		struct series *s = st->series[i];
		while (s) {
			struct series *next = s->next;
			free(s);
			s = next;
		}
	}
	free(st);
}

/* ---- lifecycle ---- */

struct gw_ledger *gw_ledger_new(void)
{
	struct gw_ledger *l = calloc(1, sizeof(*l));
	if (!l)
		return NULL;
	l->st = state_new(gw_wall_s());
	if (!l->st || pthread_mutex_init(&l->mu, NULL) != 0) {
		free(l->st);
		free(l);
		return NULL;
	}
	atomic_init(&l->pinned_now, 0);
	return l;
}

void gw_ledger_free(struct gw_ledger *l)
{
	if (!l)
		return;
	state_free(l->st);
	pthread_mutex_destroy(&l->mu);
	free(l);
}

void gw_ledger_set_now(struct gw_ledger *l, int64_t now_s)
{
	pthread_mutex_lock(&l->mu);
	atomic_store(&l->pinned_now, now_s);
	if (now_s && l->st->totals.requests == 0)
		l->st->since_s = now_s;
	pthread_mutex_unlock(&l->mu);
}

/* ---- recording ---- */

static void hist_observe(struct gw_ledger_hist *h, int64_t us)
{
	size_t i = 0;
	us = nonneg(us);
	while (i < GW_LEDGER_HIST_BUCKETS - 1 && us > gw_ledger_hist_bounds_ms[i] * 1000)
		i++;
	h->buckets[i]++;
	h->sum_us = sat_add(h->sum_us, us);
	h->count++;
}

static void ring_add(struct state *st, int64_t now, const struct gw_ledger_counts *d)
{
	int64_t minute = now / 60;
	struct gw_ledger_minute *m = &st->ring[(uint64_t)minute % GW_LEDGER_HISTORY];
	if (m->minute > minute * 60)
		return; /* the clock went back; the slot holds a newer minute */
	if (m->minute != minute * 60) {
		memset(m, 0, sizeof(*m));
		m->minute = minute * 60;
	}
	m->requests = sat_add(m->requests, d->requests);
	m->cache_hits = sat_add(m->cache_hits, d->cache_hits);
	m->errors = sat_add(m->errors, d->errors);
	m->cost = sat_add(m->cost, d->cost);
}

void gw_ledger_record(struct gw_ledger *l, const struct gw_ledger_entry *e)
{
	char sname[GW_LEDGER_NAME_MAX + 1], mname[GW_LEDGER_NAME_MAX + 1];
	/* A hit used no upstream tokens and paid nothing, whatever the entry says. */
	struct gw_ledger_counts d = {
		.requests = 1,
		.cache_hits = e->cache_hit ? 1 : 0,
		.errors = e->error ? 1 : 0,
		.prompt_tokens = e->cache_hit ? 0 : nonneg(e->prompt_tokens),
		.completion_tokens = e->cache_hit ? 0 : nonneg(e->completion_tokens),
		.cost = e->cache_hit ? 0 : nonneg(e->cost),
		.saved = nonneg(e->saved),
	};
	int prov = prov_slot(e->provider);
	int prio = prio_idx((int)e->prio);

	clean_name(e->service, sname, "default");
	clean_name(e->model, mname, "_none");

	pthread_mutex_lock(&l->mu);
	struct state *st = l->st;
	int64_t now = ledger_now(l);
	struct named *svc = nmap_get(&st->services, sname, GW_LEDGER_MAX_SERVICES, false);
	struct named *model = nmap_get(&st->models, mname, GW_LEDGER_MAX_MODELS, false);

	counts_add(&st->totals, &d);
	counts_add(&st->prov[prov], &d);
	counts_add(&st->prio[prio], &d);
	if (svc)
		counts_add(&svc->c, &d);
	if (model)
		counts_add(&model->c, &d);
	if (svc && model) {
		struct series *s = series_get(st, svc, model, prov, prio, e->cache_hit);
		if (s)
			counts_add(&s->c, &d);
	}
	if (!e->cache_hit) {
		hist_observe(&st->queue[prov][prio], e->queue_us);
		if (prov != NO_PROV_SLOT)
			hist_observe(&st->up[prov][prio], e->upstream_us);
	}
	ring_add(st, now, &d);
	pthread_mutex_unlock(&l->mu);
}

/* ---- pricing ---- */

static gw_pusd price_tokens(const struct gw_model_conf *m, int64_t prompt, int64_t completion)
{
	return sat_add(sat_mul(nonneg(prompt), m->price_in), sat_mul(nonneg(completion), m->price_out));
}

static const struct gw_model_conf *priced_model(const struct gw_config *conf, const char *model)
{
	const struct gw_model_conf *m = (conf && model) ? gw_config_model(conf, model) : NULL;
	if (!m || m->price_in < 0 || m->price_out < 0)
		return NULL;
	return m;
}

gw_pusd gw_ledger_price(const struct gw_config *conf, const char *model,
			const struct gw_usage *u, bool *priced)
{
	bool dummy;
	if (!priced)
		priced = &dummy;
	if (u && u->has_cost) {
		*priced = true;
		return nonneg(u->cost);
	}
	const struct gw_model_conf *m = priced_model(conf, model);
	if (!m || !u) {
		*priced = m != NULL;
		return 0;
	}
	*priced = true;
	return price_tokens(m, u->prompt_tokens, u->completion_tokens);
}

gw_pusd gw_ledger_estimate(const struct gw_config *conf, const char *model,
			   size_t prompt_chars, int64_t max_tokens)
{
	const struct gw_model_conf *m = priced_model(conf, model);
	if (!m)
		return 0;
	uint64_t pt = prompt_chars / 4 + (prompt_chars % 4 ? 1 : 0);
	int64_t prompt = pt > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)pt;
	if (max_tokens <= 0)
		max_tokens = GW_LEDGER_DEFAULT_MAX_TOKENS;
	return price_tokens(m, prompt, max_tokens);
}

/* ---- budgets ---- */

struct limit_check {
	const char *who;              /* "global", "service NAME" */
	const char *period;           /* "daily", "monthly" */
	gw_pusd limit;
	gw_pusd spent;
	gw_pusd reserved;
	int64_t left_s;
};

/* True when one more hold of estimate is refused by this limit. */
static bool limit_refuses(const struct limit_check *c, gw_pusd estimate)
{
	if (c->limit <= 0)
		return false;
	gw_pusd held = sat_add(c->spent, c->reserved);
	return held >= c->limit || sat_add(held, estimate) > c->limit;
}

int gw_ledger_reserve(struct gw_ledger *l, const struct gw_config *conf, const char *service,
		      gw_pusd estimate, bool allow_over, struct gw_ledger_resv *res,
		      int *retry_after_s, char *why, size_t whylen)
{
	char sname[GW_LEDGER_NAME_MAX + 1], who[GW_LEDGER_NAME_MAX + 16];
	const struct gw_service_conf *sc;
	struct periods p;
	int64_t retry = -1;
	const struct limit_check *refused = NULL;
	struct limit_check checks[4];
	size_t n = 0;

	if (!res)
		return -EINVAL;
	clean_name(service, sname, "default");
	sc = conf ? gw_config_service(conf, sname) : NULL;
	estimate = nonneg(estimate);
	if (sc)
		snprintf(who, sizeof(who), "service %s", sname);

	pthread_mutex_lock(&l->mu);
	struct state *st = l->st;
	periods_at(ledger_now(l), &p);
	struct named *svc = nmap_get(&st->services, sname, GW_LEDGER_MAX_SERVICES, sc != NULL);
	budget_roll(&st->global, &p);
	if (svc)
		budget_roll(&svc->b, &p);

	if (!allow_over && conf) {
		if (sc && svc) {
			checks[n++] = (struct limit_check){ who, "daily", sc->budget_daily,
				svc->b.day_spent, svc->b.reserved, p.day_left_s };
			checks[n++] = (struct limit_check){ who, "monthly", sc->budget_monthly,
				svc->b.month_spent, svc->b.reserved, p.month_left_s };
		}
		checks[n++] = (struct limit_check){ "global", "daily", conf->budget_daily,
			st->global.day_spent, st->global.reserved, p.day_left_s };
		checks[n++] = (struct limit_check){ "global", "monthly", conf->budget_monthly,
			st->global.month_spent, st->global.reserved, p.month_left_s };
		for (size_t i = 0; i < n; i++) {
			if (!limit_refuses(&checks[i], estimate))
				continue;
			if (!refused)
				refused = &checks[i];
			if (checks[i].left_s > retry)
				retry = checks[i].left_s;
		}
	}
	if (refused) {
		char spent[40], held[40], est[40], lim[40];
		gw_ledger_format_usd(refused->spent, spent, sizeof(spent));
		gw_ledger_format_usd(refused->reserved, held, sizeof(held));
		gw_ledger_format_usd(estimate, est, sizeof(est));
		gw_ledger_format_usd(refused->limit, lim, sizeof(lim));
		pthread_mutex_unlock(&l->mu);
		if (why && whylen)
			snprintf(why, whylen,
				 "%s %s budget of $%s exhausted: spent $%s, held $%s, this request $%s",
				 refused->who, refused->period, lim, spent, held, est);
		if (retry_after_s)
			*retry_after_s = retry > INT_MAX ? INT_MAX : (int)(retry < 1 ? 1 : retry);
		return -EDQUOT;
	}

	if (svc)
		svc->b.reserved = sat_add(svc->b.reserved, estimate);
	st->global.reserved = sat_add(st->global.reserved, estimate);
	pthread_mutex_unlock(&l->mu);

	res->active = true;
	res->amount = estimate;
	snprintf(res->service, sizeof(res->service), "%s", svc ? svc->name : sname);
	return 0;
}

static void budget_settle(struct gw_ledger_budget *b, gw_pusd hold, gw_pusd actual)
{
	b->reserved -= hold;
	if (b->reserved < 0)
		b->reserved = 0;
	b->day_spent = sat_add(b->day_spent, actual);
	b->month_spent = sat_add(b->month_spent, actual);
}

void gw_ledger_settle(struct gw_ledger *l, struct gw_ledger_resv *res, gw_pusd actual)
{
	struct periods p;
	if (!res || !res->active)
		return;
	res->active = false;
	actual = nonneg(actual);

	pthread_mutex_lock(&l->mu);
	struct state *st = l->st;
	periods_at(ledger_now(l), &p);
	struct named *svc = nmap_get(&st->services, res->service, GW_LEDGER_MAX_SERVICES, true);
	if (svc) {
		budget_roll(&svc->b, &p);
		budget_settle(&svc->b, res->amount, actual);
	}
	budget_roll(&st->global, &p);
	budget_settle(&st->global, res->amount, actual);
	pthread_mutex_unlock(&l->mu);
}

/* Checks one (holder, period); on a new alert fills msg and returns true. */
static bool alert_check(struct gw_ledger_budget *b, const char *who, bool daily, gw_pusd limit,
			int32_t bp, char *msg, size_t msglen)
{
	if (limit <= 0)
		return false;
	gw_pusd spent = daily ? b->day_spent : b->month_spent;
	int32_t key = daily ? b->day : b->month;
	int32_t *akey = daily ? &b->alert_day : &b->alert_month;
	int32_t *abp = daily ? &b->alert_day_bp : &b->alert_month_bp;
	__int128 thr = ((__int128)limit * bp + 9999) / 10000;

	if ((__int128)spent < thr || (*akey == key && *abp >= bp))
		return false;
	*akey = key;
	*abp = bp;
	if (msg && msglen) {
		char s[40], lim[40];
		gw_ledger_format_usd(spent, s, sizeof(s));
		gw_ledger_format_usd(limit, lim, sizeof(lim));
		snprintf(msg, msglen,
			 "budget alert: %s spent $%s of its %s budget $%s (%lld%%, threshold %d%%)",
			 who, s, daily ? "daily" : "monthly", lim,
			 (long long)((__int128)spent * 100 / limit), (int)(bp / 100));
	}
	return true;
}

bool gw_ledger_take_alert(struct gw_ledger *l, const struct gw_config *conf, double fraction,
			  char *msg, size_t msglen)
{
	struct periods p;
	bool fired = false;

	if (!conf || !(fraction > 0) || fraction > 100)
		return false;
	int32_t bp = (int32_t)llround(fraction * 10000);
	if (bp < 1)
		bp = 1;

	pthread_mutex_lock(&l->mu);
	struct state *st = l->st;
	periods_at(ledger_now(l), &p);
	budget_roll(&st->global, &p);
	fired = alert_check(&st->global, "global", true, conf->budget_daily, bp, msg, msglen) ||
		alert_check(&st->global, "global", false, conf->budget_monthly, bp, msg, msglen);
	for (size_t i = 0; !fired && i < conf->n_services; i++) {
		const struct gw_service_conf *sc = &conf->services[i];
		char sname[GW_LEDGER_NAME_MAX + 1], who[GW_LEDGER_NAME_MAX + 16];
		if (sc->budget_daily <= 0 && sc->budget_monthly <= 0)
			continue;
		clean_name(sc->name, sname, "default");
		struct named *svc = nmap_find(&st->services, sname);
		if (!svc)
			continue; /* never reserved: nothing spent */
		budget_roll(&svc->b, &p);
		snprintf(who, sizeof(who), "service %s", sname);
		fired = alert_check(&svc->b, who, true, sc->budget_daily, bp, msg, msglen) ||
			alert_check(&svc->b, who, false, sc->budget_monthly, bp, msg, msglen);
	}
	pthread_mutex_unlock(&l->mu);
	return fired;
}

/* ---- snapshot ---- */

static int cmp_named(const void *a, const void *b)
{
	return strcmp(((const struct gw_ledger_named *)a)->name,
		      ((const struct gw_ledger_named *)b)->name);
}

static int cmp_series(const void *a, const void *b)
{
	const struct gw_ledger_series *x = a, *y = b;
	int c = strcmp(x->service, y->service);
	if (c)
		return c;
	if ((c = strcmp(x->model, y->model)))
		return c;
	if (x->provider != y->provider)
		return prov_slot(x->provider) < prov_slot(y->provider) ? -1 : 1;
	if (x->prio != y->prio)
		return x->prio < y->prio ? -1 : 1;
	return (int)x->cache_hit - (int)y->cache_hit;
}

static size_t nmap_bytes(const struct nmap *m)
{
	size_t n = 0;
	for (size_t i = 0; i < NMAP_HEADS; i++)
		for (const struct named *e = m->heads[i]; e; e = e->next)
			n += strlen(e->name) + 1;
	return n;
}

/* Copies m into out, names into *arena; records each entry's index. */
static void nmap_copy(struct nmap *m, struct gw_ledger_named *out, char **arena,
		      const struct periods *p)
{
	size_t k = 0;
	for (size_t i = 0; i < NMAP_HEADS; i++) {
		for (struct named *e = m->heads[i]; e; e = e->next) {
			size_t len = strlen(e->name) + 1;
			memcpy(*arena, e->name, len);
			out[k].name = *arena;
			*arena += len;
			out[k].c = e->c;
			out[k].b = e->b;
			if (p)
				budget_roll(&out[k].b, p);
			e->snap_idx = k++;
		}
	}
}

/* History window and projection from the ring. */
static void snap_history(const struct state *st, struct gw_ledger_snap *s)
{
	int64_t cur = s->now_s / 60;
	gw_pusd window = 0;

	for (int i = 0; i < GW_LEDGER_HISTORY; i++) {
		int64_t minute = cur - (GW_LEDGER_HISTORY - 1) + i;
		const struct gw_ledger_minute *m = &st->ring[(uint64_t)minute % GW_LEDGER_HISTORY];
		struct gw_ledger_minute *h = &s->history[i];
		if (m->minute == minute * 60)
			*h = *m;
		else
			*h = (struct gw_ledger_minute){ .minute = minute * 60 };
		window = sat_add(window, h->cost);
	}
	int64_t span = s->now_s - (cur - (GW_LEDGER_HISTORY - 1)) * 60;
	if (s->now_s - s->since_s < span)
		span = s->now_s - s->since_s;
	if (span < 60)
		span = 60;
	__int128 hourly = (__int128)window * 3600 / span;
	__int128 daily = hourly * 24, monthly = hourly * 24 * 30;
	s->projection_hourly = hourly > INT64_MAX ? INT64_MAX : (gw_pusd)hourly;
	s->projection_daily = daily > INT64_MAX ? INT64_MAX : (gw_pusd)daily;
	s->projection_monthly = monthly > INT64_MAX ? INT64_MAX : (gw_pusd)monthly;
}

struct gw_ledger_snap *gw_ledger_snapshot(struct gw_ledger *l)
{
	struct gw_ledger_snap *s = calloc(1, sizeof(*s));
	struct periods p;
	if (!s)
		return NULL;

	pthread_mutex_lock(&l->mu);
	struct state *st = l->st;
	s->now_s = ledger_now(l);
	periods_at(s->now_s, &p);
	s->since_s = st->since_s;
	s->day = p.day;
	s->month = p.month;
	s->day_left_s = p.day_left_s;
	s->month_left_s = p.month_left_s;

	size_t bytes = nmap_bytes(&st->services) + nmap_bytes(&st->models) + 1;
	s->arena = malloc(bytes);
	s->services = calloc(st->services.n + 1, sizeof(*s->services));
	s->models = calloc(st->models.n + 1, sizeof(*s->models));
	s->series = calloc(st->n_series + 1, sizeof(*s->series));
	if (!s->arena || !s->services || !s->models || !s->series) {
		pthread_mutex_unlock(&l->mu);
		gw_ledger_snap_free(s);
		return NULL;
	}
	char *arena = s->arena;
	nmap_copy(&st->services, s->services, &arena, &p);
	nmap_copy(&st->models, s->models, &arena, NULL);
	s->n_services = st->services.n;
	s->n_models = st->models.n;
	for (size_t i = 0; i < SERIES_HEADS; i++) {
		for (const struct series *e = st->series[i]; e; e = e->next) {
			struct gw_ledger_series *o = &s->series[s->n_series++];
			o->service = s->services[e->svc->snap_idx].name;
			o->model = s->models[e->model->snap_idx].name;
			o->provider = e->prov == NO_PROV_SLOT ? -1 : e->prov;
			o->prio = (enum gw_priority)e->prio;
			o->cache_hit = e->hit;
			o->c = e->c;
		}
	}
	s->totals = st->totals;
	memcpy(s->providers, st->prov, sizeof(s->providers));
	memcpy(s->priorities, st->prio, sizeof(s->priorities));
	memcpy(s->queue_wait, st->queue, sizeof(s->queue_wait));
	memcpy(s->upstream, st->up, sizeof(s->upstream));
	s->global = st->global;
	budget_roll(&s->global, &p);
	snap_history(st, s);
	pthread_mutex_unlock(&l->mu);

	qsort(s->services, s->n_services, sizeof(*s->services), cmp_named);
	qsort(s->models, s->n_models, sizeof(*s->models), cmp_named);
	qsort(s->series, s->n_series, sizeof(*s->series), cmp_series);
	return s;
}

void gw_ledger_snap_free(struct gw_ledger_snap *s)
{
	if (!s)
		return;
	free(s->arena);
	free(s->services);
	free(s->models);
	free(s->series);
	free(s);
}

/* ---- persistence: writing ---- */

static json_t *counts_to_json(const struct gw_ledger_counts *c)
{
	return json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I}",
			 "requests", (json_int_t)c->requests,
			 "cache_hits", (json_int_t)c->cache_hits,
			 "errors", (json_int_t)c->errors,
			 "prompt_tokens", (json_int_t)c->prompt_tokens,
			 "completion_tokens", (json_int_t)c->completion_tokens,
			 "cost_pusd", (json_int_t)c->cost,
			 "saved_pusd", (json_int_t)c->saved);
}

static json_t *budget_to_json(const struct gw_ledger_budget *b)
{
	return json_pack("{s:i,s:I,s:i,s:I,s:i,s:i,s:i,s:i}",
			 "day", (int)b->day, "day_spent_pusd", (json_int_t)b->day_spent,
			 "month", (int)b->month, "month_spent_pusd", (json_int_t)b->month_spent,
			 "alert_day", (int)b->alert_day, "alert_day_bp", (int)b->alert_day_bp,
			 "alert_month", (int)b->alert_month, "alert_month_bp", (int)b->alert_month_bp);
}

static json_t *hists_to_json(const struct gw_ledger_hist h[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT])
{
	json_t *arr = json_array();
	for (int p = 0; arr && p < GW_LEDGER_PROV_SLOTS; p++) {
		for (int q = 0; q < GW_PRIO_COUNT; q++) {
			const struct gw_ledger_hist *x = &h[p][q];
			json_t *b;
			if (x->count == 0)
				continue;
			b = json_array();
			for (int i = 0; b && i < GW_LEDGER_HIST_BUCKETS; i++) {
				if (json_array_append_new(b, json_integer((json_int_t)x->buckets[i]))) {
					json_decref(b);
					b = NULL;
				}
			}
			/* "o" steals b, also when packing fails. */
			if (json_array_append_new(arr, json_pack("{s:s,s:s,s:o,s:I,s:I}",
					"provider", gw_ledger_provider_name(p),
					"priority", gw_priority_name((enum gw_priority)q),
					"buckets", b, "sum_us", (json_int_t)x->sum_us,
					"count", (json_int_t)x->count))) {
				json_decref(arr);
				return NULL;
			}
		}
	}
	return arr;
}

/* Sets key to v (stolen); false when v is NULL or the set failed. */
static bool put(json_t *o, const char *key, json_t *v)
{
	return v && json_object_set_new(o, key, v) == 0;
}

static json_t *snap_to_file_json(const struct gw_ledger_snap *s)
{
	json_t *root = json_object(), *o;
	if (!root)
		return NULL;
	if (!put(root, "format", json_string(FILE_FORMAT)) ||
	    !put(root, "version", json_integer(FILE_VERSION)) ||
	    !put(root, "money_unit", json_string("pico-USD (1e-12 USD), integers")) ||
	    !put(root, "saved_at", json_integer(s->now_s)) ||
	    !put(root, "since", json_integer(s->since_s)) ||
	    !put(root, "totals", counts_to_json(&s->totals)) ||
	    !put(root, "global_budget", budget_to_json(&s->global)))
		goto fail;

	if (!put(root, "providers", o = json_object()))
		goto fail;
	for (int p = 0; p < GW_LEDGER_PROV_SLOTS; p++)
		if (!put(o, gw_ledger_provider_name(p), counts_to_json(&s->providers[p])))
			goto fail;
	if (!put(root, "priorities", o = json_object()))
		goto fail;
	for (int p = 0; p < GW_PRIO_COUNT; p++)
		if (!put(o, gw_priority_name((enum gw_priority)p), counts_to_json(&s->priorities[p])))
			goto fail;
	if (!put(root, "services", o = json_object()))
		goto fail;
	for (size_t i = 0; i < s->n_services; i++) {
		json_t *e = counts_to_json(&s->services[i].c);
		if (!put(o, s->services[i].name, e) ||
		    !put(e, "budget", budget_to_json(&s->services[i].b)))
			goto fail;
	}
	if (!put(root, "models", o = json_object()))
		goto fail;
	for (size_t i = 0; i < s->n_models; i++)
		if (!put(o, s->models[i].name, counts_to_json(&s->models[i].c)))
			goto fail;
	if (!put(root, "series", o = json_array()))
		goto fail;
	for (size_t i = 0; i < s->n_series; i++) {
		const struct gw_ledger_series *se = &s->series[i];
		json_t *e = counts_to_json(&se->c);
		if (!e || json_array_append_new(o, e) ||
		    !put(e, "service", json_string(se->service)) ||
		    !put(e, "model", json_string(se->model)) ||
		    !put(e, "provider", json_string(gw_ledger_provider_name(prov_slot(se->provider)))) ||
		    !put(e, "priority", json_string(gw_priority_name(se->prio))) ||
		    !put(e, "cache_hit", json_boolean(se->cache_hit)))
			goto fail;
	}
	if (!put(root, "queue_wait", hists_to_json(s->queue_wait)) ||
	    !put(root, "upstream_latency", hists_to_json(s->upstream)))
		goto fail;
	if (!put(root, "history", o = json_array()))
		goto fail;
	for (int i = 0; i < GW_LEDGER_HISTORY; i++) {
		const struct gw_ledger_minute *m = &s->history[i];
		if (m->requests == 0)
			continue;
		if (json_array_append_new(o, json_pack("{s:I,s:I,s:I,s:I,s:I}",
				"minute", (json_int_t)m->minute, "requests", (json_int_t)m->requests,
				"cache_hits", (json_int_t)m->cache_hits, "errors", (json_int_t)m->errors,
				"cost_pusd", (json_int_t)m->cost)))
			goto fail;
	}
	return root;
fail:
	json_decref(root);
	return NULL;
}

static int write_all(int fd, const char *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* fsync of the directory holding path, so the rename is durable. */
static int sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = fsync(fd) < 0 ? -errno : 0;
	close(fd);
	return rc;
}

static int state_from_json(json_t *root, struct state *st);

char *gw_ledger_dump(struct gw_ledger *l, size_t *len)
{
	struct gw_ledger_snap *s = gw_ledger_snapshot(l);
	json_t *root = s ? snap_to_file_json(s) : NULL;
	char *text = root ? json_dumps(root, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
	json_decref(root);
	gw_ledger_snap_free(s);
	if (text && len)
		*len = strlen(text);
	return text;
}

int gw_ledger_restore(struct gw_ledger *l, const char *text, size_t len)
{
	json_error_t jerr;
	json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	struct state *st = state_new(0);
	int rc = !st ? -ENOMEM : root ? state_from_json(root, st) : -EINVAL;
	if (rc == 0) {
		pthread_mutex_lock(&l->mu);
		struct state *old = l->st;
		l->st = st;
		pthread_mutex_unlock(&l->mu);
		st = old;
	}
	state_free(st);
	json_decref(root);
	return rc;
}

int gw_ledger_save(struct gw_ledger *l, const char *path)
{
	struct gw_ledger_snap *s = NULL;
	json_t *root = NULL;
	char *text = NULL, *dir = NULL, *tmp = NULL;
	int fd = -1, rc;

	if (!path || !*path)
		return -EINVAL;
	s = gw_ledger_snapshot(l);
	root = s ? snap_to_file_json(s) : NULL;
	text = root ? json_dumps(root, JSON_INDENT(1) | JSON_ENSURE_ASCII) : NULL;
	dir = strdup(path);
	if (asprintf(&tmp, "%s.tmp.XXXXXX", path) < 0)
		tmp = NULL;
	if (!text || !dir || !tmp) {
		rc = -ENOMEM;
		goto out;
	}
	char *slash = strrchr(dir, '/');
	if (slash == dir)
		slash[1] = '\0';
	else if (slash)
		*slash = '\0';
	else
		dir[0] = '.', dir[1] = '\0'; /* dir holds at least 2 bytes */
	if (mkdir(dir, 0750) < 0 && errno != EEXIST) {
		rc = -errno;
		goto out;
	}

	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		rc = -errno;
		goto out;
	}
	rc = write_all(fd, text, strlen(text));
	if (rc == 0)
		rc = write_all(fd, "\n", 1);
	if (rc == 0 && fsync(fd) < 0)
		rc = -errno;
	if (close(fd) < 0 && rc == 0)
		rc = -errno;
	fd = -1;
	if (rc == 0 && rename(tmp, path) < 0)
		rc = -errno;
	if (rc < 0) {
		unlink(tmp);
		goto out;
	}
	rc = sync_dir(dir);
out:
	free(tmp);
	free(dir);
	free(text);
	json_decref(root);
	gw_ledger_snap_free(s);
	return rc;
}

/* ---- persistence: reading ---- */

static int get_i64(json_t *o, const char *key, int64_t min, int64_t max, int64_t *out)
{
	json_t *v = json_object_get(o, key);
	if (!json_is_integer(v))
		return -EINVAL;
	json_int_t x = json_integer_value(v);
	if (x < min || x > max)
		return -EINVAL;
	*out = (int64_t)x;
	return 0;
}

static int get_i32(json_t *o, const char *key, int32_t *out)
{
	int64_t v;
	int rc = get_i64(o, key, 0, INT32_MAX, &v);
	if (rc == 0)
		*out = (int32_t)v;
	return rc;
}

static int counts_from_json(json_t *o, struct gw_ledger_counts *c)
{
	if (!json_is_object(o))
		return -EINVAL;
	if (get_i64(o, "requests", 0, INT64_MAX, &c->requests) ||
	    get_i64(o, "cache_hits", 0, INT64_MAX, &c->cache_hits) ||
	    get_i64(o, "errors", 0, INT64_MAX, &c->errors) ||
	    get_i64(o, "prompt_tokens", 0, INT64_MAX, &c->prompt_tokens) ||
	    get_i64(o, "completion_tokens", 0, INT64_MAX, &c->completion_tokens) ||
	    get_i64(o, "cost_pusd", 0, INT64_MAX, &c->cost) ||
	    get_i64(o, "saved_pusd", 0, INT64_MAX, &c->saved))
		return -EINVAL;
	return 0;
}

static int budget_from_json(json_t *o, struct gw_ledger_budget *b)
{
	if (!json_is_object(o))
		return -EINVAL;
	if (get_i32(o, "day", &b->day) || get_i32(o, "month", &b->month) ||
	    get_i64(o, "day_spent_pusd", 0, INT64_MAX, &b->day_spent) ||
	    get_i64(o, "month_spent_pusd", 0, INT64_MAX, &b->month_spent) ||
	    get_i32(o, "alert_day", &b->alert_day) || get_i32(o, "alert_day_bp", &b->alert_day_bp) ||
	    get_i32(o, "alert_month", &b->alert_month) ||
	    get_i32(o, "alert_month_bp", &b->alert_month_bp))
		return -EINVAL;
	b->reserved = 0;
	return 0;
}

static const char *get_str(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* Name from a file: must already be clean (saves only write clean names). */
static bool name_ok(const char *s)
{
	char buf[GW_LEDGER_NAME_MAX + 1];
	if (!s || !*s)
		return false;
	clean_name(s, buf, "");
	return strcmp(buf, s) == 0;
}

static int hists_from_json(json_t *arr, struct gw_ledger_hist h[GW_LEDGER_PROV_SLOTS][GW_PRIO_COUNT])
{
	size_t i;
	json_t *e;
	if (!json_is_array(arr))
		return -EINVAL;
	json_array_foreach(arr, i, e) {
		const char *pn = get_str(e, "provider"), *qn = get_str(e, "priority");
		json_t *b = json_object_get(e, "buckets");
		int p = pn ? provider_from_label(pn) : -1, q = qn ? prio_from_label(qn) : -1;
		struct gw_ledger_hist x = { 0 };
		int64_t v;
		uint64_t sum = 0;
		if (p < 0 || q < 0 || !json_is_array(b) || json_array_size(b) != GW_LEDGER_HIST_BUCKETS)
			return -EINVAL;
		for (size_t k = 0; k < GW_LEDGER_HIST_BUCKETS; k++) {
			json_t *c = json_array_get(b, k);
			if (!json_is_integer(c) || json_integer_value(c) < 0)
				return -EINVAL;
			x.buckets[k] = (uint64_t)json_integer_value(c);
			sum += x.buckets[k];
		}
		if (get_i64(e, "sum_us", 0, INT64_MAX, &x.sum_us) ||
		    get_i64(e, "count", 0, INT64_MAX, &v) || (uint64_t)v != sum)
			return -EINVAL;
		x.count = (uint64_t)v;
		h[p][q] = x;
	}
	return 0;
}

/* A breakdown with a fixed set of labels (providers, priorities). */
static int fixed_counts_from_json(json_t *o, int (*slot_of)(const char *label),
				  struct gw_ledger_counts *slots)
{
	const char *key;
	json_t *v;
	if (!json_is_object(o))
		return -EINVAL;
	json_object_foreach(o, key, v) {
		int p = slot_of(key);
		if (p < 0 || counts_from_json(v, &slots[p]))
			return -EINVAL;
	}
	return 0;
}

static int state_from_json(json_t *root, struct state *st)
{
	json_t *o, *v;
	const char *key;
	size_t i;
	int64_t x;

	if (!json_is_object(root) || !get_str(root, "format") ||
	    strcmp(get_str(root, "format"), FILE_FORMAT) != 0 ||
	    get_i64(root, "version", FILE_VERSION, FILE_VERSION, &x) ||
	    get_i64(root, "since", 0, INT64_MAX, &st->since_s) ||
	    counts_from_json(json_object_get(root, "totals"), &st->totals) ||
	    budget_from_json(json_object_get(root, "global_budget"), &st->global))
		return -EINVAL;

	if (fixed_counts_from_json(json_object_get(root, "providers"), provider_from_label,
				   st->prov) ||
	    fixed_counts_from_json(json_object_get(root, "priorities"), prio_from_label, st->prio))
		return -EINVAL;
	o = json_object_get(root, "services");
	if (!json_is_object(o) || json_object_size(o) > GW_LEDGER_MAX_SERVICES + 20000)
		return -EINVAL;
	json_object_foreach(o, key, v) {
		struct named *e;
		if (!name_ok(key) || nmap_find(&st->services, key) || !(e = nmap_add(&st->services, key)))
			return -EINVAL;
		if (counts_from_json(v, &e->c) || budget_from_json(json_object_get(v, "budget"), &e->b))
			return -EINVAL;
	}
	o = json_object_get(root, "models");
	if (!json_is_object(o) || json_object_size(o) > GW_LEDGER_MAX_MODELS + 1)
		return -EINVAL;
	json_object_foreach(o, key, v) {
		struct named *e;
		if (!name_ok(key) || nmap_find(&st->models, key) || !(e = nmap_add(&st->models, key)))
			return -EINVAL;
		if (counts_from_json(v, &e->c))
			return -EINVAL;
	}
	o = json_object_get(root, "series");
	if (!json_is_array(o))
		return -EINVAL;
	json_array_foreach(o, i, v) {
		const char *sn = get_str(v, "service"), *mn = get_str(v, "model");
		const char *pn = get_str(v, "provider"), *qn = get_str(v, "priority");
		json_t *hit = json_object_get(v, "cache_hit");
		struct named *svc = sn ? nmap_find(&st->services, sn) : NULL;
		struct named *model = mn ? nmap_find(&st->models, mn) : NULL;
		int p = pn ? provider_from_label(pn) : -1, q = qn ? prio_from_label(qn) : -1;
		struct gw_ledger_counts c;
		struct series *s;
		if (!svc || !model || p < 0 || q < 0 || !json_is_boolean(hit) || counts_from_json(v, &c))
			return -EINVAL;
		s = series_get(st, svc, model, p, q, json_is_true(hit));
		if (!s)
			return -ENOMEM;
		counts_add(&s->c, &c);
	}
	if (hists_from_json(json_object_get(root, "queue_wait"), st->queue) ||
	    hists_from_json(json_object_get(root, "upstream_latency"), st->up))
		return -EINVAL;
	o = json_object_get(root, "history");
	if (!json_is_array(o))
		return -EINVAL;
	json_array_foreach(o, i, v) {
		struct gw_ledger_minute m;
		if (get_i64(v, "minute", 0, INT64_MAX, &m.minute) || m.minute % 60 ||
		    get_i64(v, "requests", 0, INT64_MAX, &m.requests) ||
		    get_i64(v, "cache_hits", 0, INT64_MAX, &m.cache_hits) ||
		    get_i64(v, "errors", 0, INT64_MAX, &m.errors) ||
		    get_i64(v, "cost_pusd", 0, INT64_MAX, &m.cost))
			return -EINVAL;
		struct gw_ledger_minute *slot = &st->ring[(uint64_t)(m.minute / 60) % GW_LEDGER_HISTORY];
		if (m.minute >= slot->minute)
			*slot = m;
	}
	return 0;
}

int gw_ledger_load(struct gw_ledger *l, const char *path)
{
	json_error_t jerr;
	struct state *st = NULL;
	json_t *root = NULL;
	char *text = NULL;
	struct stat sb;
	size_t len = 0;
	int fd, rc;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT ? 0 : -errno;
	if (fstat(fd, &sb) < 0) {
		rc = -errno;
		goto out;
	}
	if (!S_ISREG(sb.st_mode) || (size_t)sb.st_size > FILE_MAX_BYTES) {
		rc = -EINVAL;
		goto out;
	}
	text = malloc((size_t)sb.st_size + 1);
	if (!text) {
		rc = -ENOMEM;
		goto out;
	}
	while (len < (size_t)sb.st_size) {
		ssize_t n = read(fd, text + len, (size_t)sb.st_size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = -errno;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
	st = state_new(0);
	if (!st) {
		rc = -ENOMEM;
		goto out;
	}
	rc = root ? state_from_json(root, st) : -EINVAL;
	if (rc == 0) {
		pthread_mutex_lock(&l->mu);
		struct state *old = l->st;
		l->st = st;
		pthread_mutex_unlock(&l->mu);
		st = old;
	}
out:
	state_free(st);
	json_decref(root);
	free(text);
	close(fd);
	return rc;
}
