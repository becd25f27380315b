/* SPDX-License-Identifier: ISC */
/* Abuse limits per IP class (limit.h): connection rate, open connections
 * and failed authentications, in bounded in-memory tables. */
#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>

/*
 * Three classes per address family, as mox (ratelimit/ratelimit.go):
 * IPv4 /32 /26 /21, IPv6 /64 /48 /32. An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, RFC 4291 §2.5.5.2) is the IPv4 address: a dual-stack
 * listener must not give IPv4 clients the looser IPv6 grouping.
 *
 * One table per class holds an entry per masked address with every
 * counter of that network. Entries with open connections are pinned (not
 * on the LRU list, never evicted: they are bounded by the open sockets);
 * the others are evicted least recently used first beyond LIMIT_MAX
 * entries per class, and freed lazily once every window has rolled past.
 *
 * Rates are sliding windows: the count of the current fixed window plus
 * the previous window's count weighted by the part of it still inside
 * the sliding window (the estimate nginx's and Cloudflare's limiters
 * use), so a client cannot double its rate across a window edge.
 *
 * A refused connection is not counted toward the rate, as in mox
 * (ratelimit.Limiter.Add counts only when within the limits): a client
 * that keeps retrying gets in again once its earlier connections age out
 * of the window instead of locking itself (and its /21) out forever.
 * Failed authentications are always counted.
 */

#define LIMIT_CLASSES	3
#define LIMIT_MAX	100000		/* entries per class (LRU beyond) */
#define LIMIT_SWEEP	4		/* expired entries freed per call */
#define MINUTE_MS	60000ULL
#define DAY_MS		86400000ULL

enum limit_kind {
	LIMIT_RATE = 0,		/* connection-rate */
	LIMIT_OPEN,		/* connections */
	LIMIT_AUTH_MIN,		/* auth-failures-per-minute */
	LIMIT_AUTH_DAY,		/* auth-failures-per-day */
	LIMIT_NKINDS
};

/* Defaults (limit.h and the issue): mox's values. */
static const int64_t limit_defaults[LIMIT_NKINDS][LIMIT_CLASSES] = {
	[LIMIT_RATE] = { 300, 900, 2700 },
	[LIMIT_OPEN] = { 30, 90, 270 },
	[LIMIT_AUTH_MIN] = { 10, 30, 90 },
	[LIMIT_AUTH_DAY] = { 50, 150, 450 },
};

static const char *const limit_keys[LIMIT_NKINDS] = {
	"connection-rate", "connections", "auth-failures-per-minute",
	"auth-failures-per-day",
};

/* A fixed window `idx` (= time / length) and its predecessor. */
struct limit_window {
	uint64_t	 idx;
	int64_t		 cur, prev;
};

struct limit_entry {
	uint8_t			 addr[16];	/* masked (IPv4: mapped) */
	uint32_t		 hash;
	struct limit_entry	*hnext;		/* bucket chain */
	struct limit_entry	*lprev, *lnext;	/* LRU (NULL when pinned) */
	bool			 on_lru;
	int64_t			 open;
	struct limit_window	 rate, auth_min, auth_day;
};

struct limit_table {
	struct limit_entry	**buckets;
	size_t			  nbuckets;	/* power of two */
	size_t			  n;		/* entries */
	size_t			  nlru;		/* entries on the LRU list */
	struct limit_entry	 *lru_head;	/* most recent */
	struct limit_entry	 *lru_tail;	/* least recent */
};

struct osp_limit_conn {
	uint8_t		 addr[16];	/* unmasked */
	bool		 v4;
	bool		 none;		/* not an IP peer: counted nowhere */
	uint64_t	 gen;		/* osp_limit_reset() generation */
};

static struct {
	int64_t			 max[LIMIT_NKINDS][LIMIT_CLASSES];
	bool			 configured;
	struct limit_table	 t[LIMIT_CLASSES];
	uint64_t		 key[2];	/* SipHash key */
	bool			 keyed;
	uint64_t		 gen;
	osp_limit_clock_fn	*clock;
} lim;

static _Thread_local char limit_reason[160];

/* ------------------------------------------------------------------ */
/* Keys                                                                 */

/* Class prefix lengths in bits of the 128-bit (mapped) address. */
static unsigned
limit_prefix(bool v4, int cls)
{
	static const unsigned v4bits[] = { 32, 26, 21 };
	static const unsigned v6bits[] = { 64, 48, 32 };

	return v4 ? 96 + v4bits[cls] : v6bits[cls];
}

/* The address as 16 bytes (IPv4 and IPv4-mapped as ::ffff:a.b.c.d). */
static bool
limit_addr(const struct sockaddr *sa, uint8_t out[16], bool *v4_r)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		sin = (const struct sockaddr_in *)(const void *)sa;
		memcpy(out, mapped, 12);
		memcpy(out + 12, &sin->sin_addr, 4);
		*v4_r = true;
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		sin6 = (const struct sockaddr_in6 *)(const void *)sa;
		memcpy(out, &sin6->sin6_addr, 16);
		*v4_r = memcmp(out, mapped, 12) == 0;
		return true;
	}
	return false;
}

static void
limit_mask(const uint8_t in[16], unsigned bits, uint8_t out[16])
{
	unsigned i;

	for (i = 0; i < 16; i++) {
		if (bits >= 8)
			out[i] = in[i];
		else if (bits == 0)
			out[i] = 0;
		else
			out[i] = in[i] & (uint8_t)(0xff << (8 - bits));
		bits = bits >= 8 ? bits - 8 : 0;
	}
}

/* SipHash-2-4 of the 16 address bytes: a keyed hash, so that a client
 * choosing its IPv6 addresses cannot pile them into one bucket. */
#define ROTL(x, b)	(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND do {							\
	v0 += v1; v1 = ROTL(v1, 13); v1 ^= v0; v0 = ROTL(v0, 32);	\
	v2 += v3; v3 = ROTL(v3, 16); v3 ^= v2;				\
	v0 += v3; v3 = ROTL(v3, 21); v3 ^= v0;				\
	v2 += v1; v1 = ROTL(v1, 17); v1 ^= v2; v2 = ROTL(v2, 32);	\
} while (0)

static uint32_t
limit_hash(const uint8_t a[16], int cls)
{
	uint64_t v0, v1, v2, v3, m, b;
	int i, r;

	if (!lim.keyed) {
		if (gnutls_rnd(GNUTLS_RND_NONCE, lim.key,
		    sizeof(lim.key)) < 0) {
			lim.key[0] = (uint64_t)(uintptr_t)&lim ^
			    osp_now_ms();
			lim.key[1] = ~lim.key[0];
		}
		lim.keyed = true;
	}
	v0 = lim.key[0] ^ 0x736f6d6570736575ULL;
	v1 = lim.key[1] ^ 0x646f72616e646f6dULL;
	v2 = lim.key[0] ^ 0x6c7967656e657261ULL;
	v3 = lim.key[1] ^ 0x7465646279746573ULL;
	for (i = 0; i < 2; i++) {
		memcpy(&m, a + 8 * i, 8);
		v3 ^= m;
		for (r = 0; r < 2; r++)
			SIPROUND;
		v0 ^= m;
	}
	b = ((uint64_t)16 << 56) | (uint64_t)cls;
	v3 ^= b;
	SIPROUND;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	for (r = 0; r < 4; r++)
		SIPROUND;
	return (uint32_t)(v0 ^ v1 ^ v2 ^ v3);
}

/* ------------------------------------------------------------------ */
/* Windows                                                              */

static uint64_t
limit_now(void)
{
	return lim.clock != NULL ? lim.clock() : osp_now_ms();
}

static void
window_roll(struct limit_window *w, uint64_t now, uint64_t len)
{
	uint64_t idx = now / len;

	if (idx == w->idx)
		return;
	if (idx == w->idx + 1)
		w->prev = w->cur;
	else
		w->prev = 0;	/* a gap, or the clock went back */
	w->cur = 0;
	w->idx = idx;
}

/* Whether adding one more keeps the sliding count within max:
 * prev * (len - elapsed) / len + cur + 1 <= max, in integers. */
static bool
window_allows(const struct limit_window *w, uint64_t now, uint64_t len,
    int64_t max)
{
	int64_t elapsed = (int64_t)(now - w->idx * len), l = (int64_t)len;

	/* No overflow: counts saturate at INT32_MAX, len is at most a day
	 * (8.64e7 ms) and max at most 1e9 (the schema's bound). */
	if (max <= 0)
		return true;
	return w->prev * (l - elapsed) + (w->cur + 1) * l <= max * l;
}

/* Whether every count of w has rolled out of the sliding window. */
static bool
window_idle(const struct limit_window *w, uint64_t now, uint64_t len)
{
	uint64_t idx = now / len;

	return (w->cur == 0 && w->prev == 0) || idx >= w->idx + 2 ||
	    idx < w->idx;
}

static bool
entry_idle(const struct limit_entry *e, uint64_t now)
{
	return e->open == 0 && window_idle(&e->rate, now, MINUTE_MS) &&
	    window_idle(&e->auth_min, now, MINUTE_MS) &&
	    window_idle(&e->auth_day, now, DAY_MS);
}

static void
entry_roll(struct limit_entry *e, uint64_t now)
{
	window_roll(&e->rate, now, MINUTE_MS);
	window_roll(&e->auth_min, now, MINUTE_MS);
	window_roll(&e->auth_day, now, DAY_MS);
}

/* ------------------------------------------------------------------ */
/* Tables                                                               */

static void
lru_unlink(struct limit_table *t, struct limit_entry *e)
{
	if (!e->on_lru)
		return;
	if (e->lprev != NULL)
		e->lprev->lnext = e->lnext;
	else
		t->lru_head = e->lnext;
	if (e->lnext != NULL)
		e->lnext->lprev = e->lprev;
	else
		t->lru_tail = e->lprev;
	e->lprev = e->lnext = NULL;
	e->on_lru = false;
	t->nlru--;
}

static void
lru_push(struct limit_table *t, struct limit_entry *e)
{
	e->lprev = NULL;
	e->lnext = t->lru_head;
	if (t->lru_head != NULL)
		t->lru_head->lprev = e;
	else
		t->lru_tail = e;
	t->lru_head = e;
	e->on_lru = true;
	t->nlru++;
}

static void
table_remove(struct limit_table *t, struct limit_entry *e)
{
	struct limit_entry **pp;

	lru_unlink(t, e);
	for (pp = &t->buckets[e->hash & (t->nbuckets - 1)]; *pp != NULL;
	    pp = &(*pp)->hnext) {
		if (*pp == e) {
			*pp = e->hnext;
			break;
		}
	}
	t->n--;
	osp_free(e);
}

static void
table_grow(struct limit_table *t)
{
	struct limit_entry **nb, *e, *next;
	size_t i, size = t->nbuckets == 0 ? 64 : t->nbuckets * 2;

	nb = osp_calloc(size, sizeof(*nb));
	for (i = 0; i < t->nbuckets; i++) {
		for (e = t->buckets[i]; e != NULL; e = next) {
			next = e->hnext;
			e->hnext = nb[e->hash & (size - 1)];
			nb[e->hash & (size - 1)] = e;
		}
	}
	osp_free(t->buckets);
	t->buckets = nb;
	t->nbuckets = size;
}

/* Frees a few expired entries from the cold end, and the least recently
 * used ones beyond the bound. */
static void
table_sweep(struct limit_table *t, uint64_t now)
{
	int i;

	for (i = 0; i < LIMIT_SWEEP && t->lru_tail != NULL; i++) {
		if (!entry_idle(t->lru_tail, now))
			break;
		table_remove(t, t->lru_tail);
	}
	while (t->nlru > LIMIT_MAX)
		table_remove(t, t->lru_tail);
}

static struct limit_entry *
table_find(struct limit_table *t, const uint8_t key[16], uint32_t h)
{
	struct limit_entry *e;

	if (t->nbuckets == 0)
		return NULL;
	for (e = t->buckets[h & (t->nbuckets - 1)]; e != NULL; e = e->hnext)
		if (e->hash == h && memcmp(e->addr, key, 16) == 0)
			return e;
	return NULL;
}

/* The entry of addr's class cls, rolled to now; created when `create`.
 * Marks it used (front of the LRU list unless pinned). */
static struct limit_entry *
table_get(int cls, const uint8_t addr[16], bool v4, uint64_t now,
    bool create)
{
	struct limit_table *t = &lim.t[cls];
	struct limit_entry *e;
	uint8_t key[16];
	uint32_t h;

	limit_mask(addr, limit_prefix(v4, cls), key);
	h = limit_hash(key, cls);
	table_sweep(t, now);
	if ((e = table_find(t, key, h)) == NULL) {
		if (!create)
			return NULL;
		if (t->n >= t->nbuckets)
			table_grow(t);
		e = osp_calloc(1, sizeof(*e));
		memcpy(e->addr, key, 16);
		e->hash = h;
		e->hnext = t->buckets[h & (t->nbuckets - 1)];
		t->buckets[h & (t->nbuckets - 1)] = e;
		t->n++;
		e->rate.idx = now / MINUTE_MS;
		e->auth_min.idx = now / MINUTE_MS;
		e->auth_day.idx = now / DAY_MS;
	}
	entry_roll(e, now);
	lru_unlink(t, e);
	if (e->open == 0)
		lru_push(t, e);
	/* The new entry may push the table over the bound. */
	while (t->nlru > LIMIT_MAX && t->lru_tail != e)
		table_remove(t, t->lru_tail);
	return e;
}

/* ------------------------------------------------------------------ */
/* Reasons                                                              */

static const char *
limit_reason_set(const char *what, int64_t max, const char *per, bool v4,
    int cls, const uint8_t addr[16])
{
	char text[INET6_ADDRSTRLEN];
	uint8_t key[16];
	unsigned bits = limit_prefix(v4, cls);

	limit_mask(addr, bits, key);
	if (v4)
		inet_ntop(AF_INET, key + 12, text, sizeof(text));
	else
		inet_ntop(AF_INET6, key, text, sizeof(text));
	snprintf(limit_reason, sizeof(limit_reason),
	    "%s %lld%s for %s/%u exceeded", what, (long long)max, per, text,
	    v4 ? bits - 96 : bits);
	return limit_reason;
}

/* ------------------------------------------------------------------ */
/* API                                                                  */

static int64_t
limit_max(enum limit_kind k, int cls)
{
	return lim.configured ? lim.max[k][cls] : limit_defaults[k][cls];
}

int
osp_limit_conn_open(const struct sockaddr *sa, struct osp_limit_conn **h_r,
    const char **reason_r)
{
	struct limit_entry *e[LIMIT_CLASSES];
	struct osp_limit_conn *h;
	uint8_t addr[16];
	uint64_t now = limit_now();
	bool v4;
	int cls;

	*h_r = NULL;
	*reason_r = NULL;
	if (!limit_addr(sa, addr, &v4)) {
		/* Not IP (a UNIX socket): nothing to count by. */
		h = osp_calloc(1, sizeof(*h));
		h->none = true;
		*h_r = h;
		return OSP_OK;
	}
	/* Check every class before counting anything: a refused
	 * connection leaves no trace (see the top of this file). */
	for (cls = 0; cls < LIMIT_CLASSES; cls++) {
		e[cls] = table_get(cls, addr, v4, now, true);
		if (!window_allows(&e[cls]->rate, now, MINUTE_MS,
		    limit_max(LIMIT_RATE, cls))) {
			*reason_r = limit_reason_set("connection rate",
			    limit_max(LIMIT_RATE, cls), "/min", v4, cls, addr);
			return -EBUSY;
		}
		if (limit_max(LIMIT_OPEN, cls) > 0 &&
		    e[cls]->open >= limit_max(LIMIT_OPEN, cls)) {
			*reason_r = limit_reason_set("open connections",
			    limit_max(LIMIT_OPEN, cls), "", v4, cls, addr);
			return -EBUSY;
		}
	}
	/* Each class has its own table: getting e[2] cannot have evicted
	 * e[0]. */
	for (cls = 0; cls < LIMIT_CLASSES; cls++) {
		if (e[cls]->rate.cur < INT32_MAX)
			e[cls]->rate.cur++;
		if (e[cls]->open++ == 0)
			lru_unlink(&lim.t[cls], e[cls]);	/* pinned */
	}
	h = osp_calloc(1, sizeof(*h));
	memcpy(h->addr, addr, 16);
	h->v4 = v4;
	h->gen = lim.gen;
	*h_r = h;
	return OSP_OK;
}

void
osp_limit_conn_close(struct osp_limit_conn *h)
{
	struct limit_table *t;
	struct limit_entry *e;
	uint8_t key[16];
	int cls;

	if (h == NULL)
		return;
	/* A handle from before osp_limit_reset() counts nowhere. */
	for (cls = 0; cls < LIMIT_CLASSES && !h->none && h->gen == lim.gen;
	    cls++) {
		t = &lim.t[cls];
		limit_mask(h->addr, limit_prefix(h->v4, cls), key);
		e = table_find(t, key, limit_hash(key, cls));
		if (e == NULL || e->open <= 0)
			continue;
		if (--e->open == 0)
			lru_push(t, e);
	}
	osp_free(h);
}

int
osp_limit_auth_check(const struct sockaddr *sa, const char **reason_r)
{
	struct limit_entry *e;
	uint8_t addr[16];
	uint64_t now = limit_now();
	bool v4;
	int cls;

	*reason_r = NULL;
	if (!limit_addr(sa, addr, &v4))
		return OSP_OK;
	for (cls = 0; cls < LIMIT_CLASSES; cls++) {
		if ((e = table_get(cls, addr, v4, now, false)) == NULL)
			continue;
		if (!window_allows(&e->auth_min, now, MINUTE_MS,
		    limit_max(LIMIT_AUTH_MIN, cls))) {
			*reason_r = limit_reason_set("auth failures",
			    limit_max(LIMIT_AUTH_MIN, cls), "/min", v4, cls,
			    addr);
			return -EBUSY;
		}
		if (!window_allows(&e->auth_day, now, DAY_MS,
		    limit_max(LIMIT_AUTH_DAY, cls))) {
			*reason_r = limit_reason_set("auth failures",
			    limit_max(LIMIT_AUTH_DAY, cls), "/day", v4, cls,
			    addr);
			return -EBUSY;
		}
	}
	return OSP_OK;
}

void
osp_limit_auth_failed(const struct sockaddr *sa)
{
	struct limit_entry *e;
	uint8_t addr[16];
	uint64_t now = limit_now();
	bool v4;
	int cls;

	if (!limit_addr(sa, addr, &v4))
		return;
	for (cls = 0; cls < LIMIT_CLASSES; cls++) {
		e = table_get(cls, addr, v4, now, true);
		/* Saturating: the counts only ever compare with limits
		 * of at most 10^9. */
		if (e->auth_min.cur < INT32_MAX)
			e->auth_min.cur++;
		if (e->auth_day.cur < INT32_MAX)
			e->auth_day.cur++;
	}
}

void
osp_limit_configure(const struct osp_core_conf *cc)
{
	const struct osp_conf_list *l[LIMIT_NKINDS] = {
		[LIMIT_RATE] = &cc->limits.connection_rate,
		[LIMIT_OPEN] = &cc->limits.connections,
		[LIMIT_AUTH_MIN] = &cc->limits.auth_failures_per_minute,
		[LIMIT_AUTH_DAY] = &cc->limits.auth_failures_per_day,
	};
	int k, cls;

	for (k = 0; k < LIMIT_NKINDS; k++) {
		for (cls = 0; cls < LIMIT_CLASSES; cls++) {
			/* A list osp_limit_conf_check() would refuse keeps
			 * the default (only reachable from tests). */
			if (l[k]->n == LIMIT_CLASSES)
				lim.max[k][cls] = OSP_CONF_ITEM(l[k], int64_t,
				    cls);
			else
				lim.max[k][cls] = limit_defaults[k][cls];
		}
	}
	lim.configured = true;
}

void
osp_limit_conf_check(const struct osp_config *gen, struct osp_conf_errs *errs)
{
	const struct osp_core_conf *cc = &gen->core;
	const struct osp_conf_list *l[LIMIT_NKINDS] = {
		[LIMIT_RATE] = &cc->limits.connection_rate,
		[LIMIT_OPEN] = &cc->limits.connections,
		[LIMIT_AUTH_MIN] = &cc->limits.auth_failures_per_minute,
		[LIMIT_AUTH_DAY] = &cc->limits.auth_failures_per_day,
	};
	const struct osp_conf_mark *m;
	const char *path;
	char key[64];
	int k;

	for (k = 0; k < LIMIT_NKINDS; k++) {
		if (l[k]->n == LIMIT_CLASSES)
			continue;
		m = osp_config_mark(gen, l[k], &path);
		snprintf(key, sizeof(key), "limits.%s", limit_keys[k]);
		osp_conf_errs_add(errs, m, key, "expected 3 numbers (IPv4 "
		    "/32, /26, /21 and IPv6 /64, /48, /32), got %zu",
		    l[k]->n);
	}
}

void
osp_limit_reset(void)
{
	struct limit_table *t;
	struct limit_entry *e, *next;
	size_t i;
	int cls;

	for (cls = 0; cls < LIMIT_CLASSES; cls++) {
		t = &lim.t[cls];
		for (i = 0; i < t->nbuckets; i++) {
			for (e = t->buckets[i]; e != NULL; e = next) {
				next = e->hnext;
				osp_free(e);
			}
		}
		osp_free(t->buckets);
		memset(t, 0, sizeof(*t));
	}
	lim.gen++;
}

void
osp_limit_set_clock(osp_limit_clock_fn *fn)
{
	lim.clock = fn;
}

/* Entries held per class, for tests of the bound (core.h). */
size_t
osp_limit_entries(int cls)
{
	return cls >= 0 && cls < LIMIT_CLASSES ? lim.t[cls].n : 0;
}
