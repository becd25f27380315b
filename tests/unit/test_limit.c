/* SPDX-License-Identifier: ISC */
/* Unit tests of the limiter per IP class (with an injected clock), the
 * `limits:` config section, the metrics registry and the sending log. */
#include "core.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <sqlite3.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Helpers                                                               */

#define MIN_MS	60000ULL
#define DAY_MS	86400000ULL
/* A window-aligned start, far from 0. */
#define T0	(1000 * DAY_MS)

static uint64_t test_now;

static uint64_t
test_clock(void)
{
	return test_now;
}

/* A sockaddr for an IPv4 or IPv6 literal; four rotating slots. */
static const struct sockaddr *
sa(const char *text)
{
	static struct sockaddr_storage ss[4];
	static unsigned next;
	struct sockaddr_storage *s = &ss[next++ % 4];
	struct sockaddr_in *sin = (struct sockaddr_in *)s;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)s;

	memset(s, 0, sizeof(*s));
	if (inet_pton(AF_INET, text, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else if (inet_pton(AF_INET6, text, &sin6->sin6_addr) == 1)
		sin6->sin6_family = AF_INET6;
	else
		abort();
	return (const struct sockaddr *)s;
}

static struct osp_pool *conf_pool;
static struct osp_core_conf conf;

/* Sets the limits from a `limits:` YAML body; NULL: the defaults. */
static void
configure(const char *yaml)
{
	struct osp_conf_errs errs = { 0 };
	char *text;

	osp_pool_free(conf_pool);
	conf_pool = osp_pool_new(NULL);
	memset(&conf, 0, sizeof(conf));
	if (yaml == NULL) {
		CU_ASSERT_EQUAL(osp_conf_apply_defaults(osp_core_conf_defs,
		    &conf, conf_pool, &errs), OSP_OK);
	} else {
		if (asprintf(&text, "limits:\n%s", yaml) < 0)
			abort();
		CU_ASSERT_EQUAL(osp_conf_parse_string("t.yaml", text,
		    osp_core_conf_defs, &conf, conf_pool, &errs), OSP_OK);
		free(text);
	}
	if (errs.n > 0)
		fprintf(stderr, "%s\n", errs.text.data);
	osp_conf_errs_deinit(&errs);
	osp_limit_configure(&conf);
}

static void
setup(const char *yaml)
{
	osp_limit_reset();
	osp_limit_set_clock(test_clock);
	test_now = T0;
	configure(yaml);
}

static void
teardown(void)
{
	osp_limit_reset();
	osp_limit_set_clock(NULL);
	osp_pool_free(conf_pool);
	conf_pool = NULL;
}

/* Opens n connections from addr; returns how many were allowed. Handles
 * go to hv (at least n slots) when not NULL, else are closed at once. */
static int
open_n(const char *addr, int n, struct osp_limit_conn **hv,
    const char **reason_r)
{
	struct osp_limit_conn *h;
	int i, ok = 0;

	*reason_r = NULL;
	for (i = 0; i < n; i++) {
		if (osp_limit_conn_open(sa(addr), &h, reason_r) != OSP_OK) {
			CU_ASSERT_PTR_NULL(h);
			continue;
		}
		CU_ASSERT_PTR_NOT_NULL(h);
		if (hv != NULL)
			hv[ok] = h;
		else
			osp_limit_conn_close(h);
		ok++;
	}
	return ok;
}

static void
close_all(struct osp_limit_conn **hv, int n)
{
	int i;

	for (i = 0; i < n; i++)
		osp_limit_conn_close(hv[i]);
}

/* ------------------------------------------------------------------ */
/* Limiter                                                              */

static void
t_limit_defaults(void)
{
	setup(NULL);
	CU_ASSERT_EQUAL(conf.limits.connection_rate.n, 3);
	CU_ASSERT_EQUAL(OSP_CONF_ITEM(&conf.limits.connection_rate, int64_t,
	    2), 2700);
	CU_ASSERT_EQUAL(OSP_CONF_ITEM(&conf.limits.connections, int64_t, 0),
	    30);
	CU_ASSERT_EQUAL(OSP_CONF_ITEM(&conf.limits.auth_failures_per_minute,
	    int64_t, 1), 30);
	CU_ASSERT_EQUAL(OSP_CONF_ITEM(&conf.limits.auth_failures_per_day,
	    int64_t, 2), 450);
	teardown();
}

/* 31st open connection from one IPv4 address refused; one closed lets
 * one more in. */
static void
t_limit_open_32(void)
{
	struct osp_limit_conn *hv[40], *h;
	const char *reason;

	setup(NULL);
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 31, hv, &reason), 30);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 30 for 192.0.2.1/32 exceeded");
	/* Another address of the /26 is still fine. */
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("192.0.2.2"), &h, &reason),
	    OSP_OK);
	osp_limit_conn_close(h);
	osp_limit_conn_close(hv[29]);
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 2, hv + 29, &reason), 1);
	close_all(hv, 30);
	teardown();
}

/* 90 connections spread over a /26, the 91st refused for the /26; the
 * next /26 (same /21) is fine. */
static void
t_limit_open_26(void)
{
	struct osp_limit_conn *hv[100], *h;
	const char *reason;
	char addr[32];
	int i, ok = 0;

	setup(NULL);
	for (i = 0; i < 90; i++) {
		snprintf(addr, sizeof(addr), "192.0.2.%d", i % 45 + 1);
		ok += open_n(addr, 1, hv + ok, &reason);
	}
	CU_ASSERT_EQUAL(ok, 90);
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("192.0.2.50"), &h, &reason),
	    -EBUSY);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 90 for 192.0.2.0/26 exceeded");
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("192.0.2.64"), &h, &reason),
	    OSP_OK);
	osp_limit_conn_close(h);
	close_all(hv, ok);
	/* All closed: the /26 takes connections again. */
	CU_ASSERT_EQUAL(open_n("192.0.2.50", 1, NULL, &reason), 1);
	teardown();
}

/* The /21 class: 270 over four /26s. */
static void
t_limit_open_21(void)
{
	struct osp_limit_conn *hv[300];
	const char *reason;
	char addr[32];
	int i, ok = 0;

	setup(NULL);
	for (i = 0; i < 270; i++) {
		/* 198.51.96.0/21 (.96.x to .103.x): each address once,
		 * about 34 per /26 */
		snprintf(addr, sizeof(addr), "198.51.%d.%d", 96 + i % 8,
		    (i / 8) % 64 + 64 * (i % 2));
		ok += open_n(addr, 1, hv + ok, &reason);
	}
	CU_ASSERT_EQUAL(ok, 270);
	CU_ASSERT_EQUAL(open_n("198.51.103.200", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 270 for 198.51.96.0/21 exceeded");
	CU_ASSERT_EQUAL(open_n("198.51.104.1", 1, NULL, &reason), 1);
	close_all(hv, ok);
	teardown();
}

/* IPv6: addresses group by /64, /48, /32. */
static void
t_limit_ipv6_classes(void)
{
	struct osp_limit_conn *hv[8];
	const char *reason;
	int ok = 0;

	setup("  connections: [2, 3, 4]\n");
	ok += open_n("2001:db8:1:2::1", 1, hv + ok, &reason);
	ok += open_n("2001:db8:1:2:ffff:ffff:ffff:ffff", 1, hv + ok, &reason);
	CU_ASSERT_EQUAL(ok, 2);
	CU_ASSERT_EQUAL(open_n("2001:db8:1:2::3", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 2 for 2001:db8:1:2::/64 exceeded");
	/* Another /64 of the /48: one more fits the /48's 3. */
	ok += open_n("2001:db8:1:3::1", 1, hv + ok, &reason);
	CU_ASSERT_EQUAL(ok, 3);
	CU_ASSERT_EQUAL(open_n("2001:db8:1:4::1", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 3 for 2001:db8:1::/48 exceeded");
	/* Another /48 of the /32: one more fits the /32's 4. */
	ok += open_n("2001:db8:2::1", 1, hv + ok, &reason);
	CU_ASSERT_EQUAL(ok, 4);
	CU_ASSERT_EQUAL(open_n("2001:db8:3::1", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 4 for 2001:db8::/32 exceeded");
	CU_ASSERT_EQUAL(open_n("2001:db9::1", 1, NULL, &reason), 1);
	close_all(hv, ok);
	teardown();
}

/* ::ffff:192.0.2.1 is 192.0.2.1, with IPv4 classes. */
static void
t_limit_v4_mapped(void)
{
	struct osp_limit_conn *h;
	const char *reason;

	setup("  connections: [1, 2, 100]\n");
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("192.0.2.1"), &h, &reason),
	    OSP_OK);
	CU_ASSERT_EQUAL(open_n("::ffff:192.0.2.1", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 1 for 192.0.2.1/32 exceeded");
	CU_ASSERT_EQUAL(open_n("::ffff:192.0.2.63", 1, NULL, &reason), 1);
	osp_limit_conn_close(h);
	CU_ASSERT_EQUAL(open_n("::ffff:192.0.2.1", 1, NULL, &reason), 1);
	teardown();
}

/* Connection rate: a sliding minute; refused attempts are not counted. */
static void
t_limit_rate_window(void)
{
	const char *reason;

	setup("  connections: [0, 0, 0]\n");
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 301, NULL, &reason), 300);
	CU_ASSERT_STRING_EQUAL(reason,
	    "connection rate 300/min for 192.0.2.1/32 exceeded");
	/* The next window starts with the previous one fully weighted. */
	test_now = T0 + MIN_MS;
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 5, NULL, &reason), 0);
	/* Half way: half of the 300 still counts. The 5 refused above did
	 * not count. */
	test_now = T0 + MIN_MS + MIN_MS / 2;
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 200, NULL, &reason), 150);
	/* A window later than the next: everything forgotten. */
	test_now = T0 + 3 * MIN_MS;
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 301, NULL, &reason), 300);
	/* The /26 rate: 900 from several addresses. */
	test_now = T0 + 10 * MIN_MS;
	CU_ASSERT_EQUAL(open_n("192.0.2.10", 300, NULL, &reason), 300);
	CU_ASSERT_EQUAL(open_n("192.0.2.11", 300, NULL, &reason), 300);
	CU_ASSERT_EQUAL(open_n("192.0.2.12", 300, NULL, &reason), 300);
	CU_ASSERT_EQUAL(open_n("192.0.2.13", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "connection rate 900/min for 192.0.2.0/26 exceeded");
	teardown();
}

static void
t_limit_auth_minute(void)
{
	const char *reason;
	int i;

	setup(NULL);
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.1"), &reason),
	    OSP_OK);
	CU_ASSERT_PTR_NULL(reason);
	for (i = 0; i < 9; i++)
		osp_limit_auth_failed(sa("192.0.2.1"));
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.1"), &reason),
	    OSP_OK);
	osp_limit_auth_failed(sa("192.0.2.1"));
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.1"), &reason),
	    -EBUSY);
	CU_ASSERT_STRING_EQUAL(reason,
	    "auth failures 10/min for 192.0.2.1/32 exceeded");
	/* A neighbour is not affected. */
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.2"), &reason),
	    OSP_OK);
	/* Two minutes on, the minute limit is over (10 of 50 a day). */
	test_now = T0 + 2 * MIN_MS;
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.1"), &reason),
	    OSP_OK);
	/* 30 failures spread over a /26 close it for everybody in it. */
	setup(NULL);
	for (i = 0; i < 30; i++) {
		char addr[32];

		snprintf(addr, sizeof(addr), "192.0.2.%d", i + 1);
		osp_limit_auth_failed(sa(addr));
	}
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.40"), &reason),
	    -EBUSY);
	CU_ASSERT_STRING_EQUAL(reason,
	    "auth failures 30/min for 192.0.2.0/26 exceeded");
	teardown();
}

static void
t_limit_auth_day(void)
{
	const char *reason;
	int i;

	setup("  auth-failures-per-minute: [0, 0, 0]\n"
	    "  auth-failures-per-day: [5, 150, 450]\n");
	for (i = 0; i < 5; i++) {
		CU_ASSERT_EQUAL(osp_limit_auth_check(sa("2001:db8::1"),
		    &reason), OSP_OK);
		osp_limit_auth_failed(sa("2001:db8::1"));
		test_now += 1000;
	}
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("2001:db8::1"), &reason),
	    -EBUSY);
	CU_ASSERT_STRING_EQUAL(reason,
	    "auth failures 5/day for 2001:db8::/64 exceeded");
	/* The same /64, another address. */
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("2001:db8::2"), &reason),
	    -EBUSY);
	/* Sliding day: at the next day's start they still count. */
	test_now = T0 + DAY_MS;
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("2001:db8::1"), &reason),
	    -EBUSY);
	/* Most of that day later, less than one of the 5 is left. */
	test_now = T0 + DAY_MS + DAY_MS * 9 / 10;
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("2001:db8::1"), &reason),
	    OSP_OK);
	teardown();
}

/* A reload changes the limits and keeps the counts. */
static void
t_limit_reconfigure(void)
{
	struct osp_limit_conn *hv[30];
	const char *reason;
	int ok;

	setup(NULL);
	ok = open_n("192.0.2.1", 20, hv, &reason);
	CU_ASSERT_EQUAL(ok, 20);
	configure("  connections: [10, 90, 270]\n");
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 1, NULL, &reason), 0);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 10 for 192.0.2.1/32 exceeded");
	configure(NULL);
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 20, hv + ok, &reason), 10);
	close_all(hv, 30);
	teardown();
}

/* 0 disables a class. */
static void
t_limit_zero(void)
{
	struct osp_limit_conn **hv;
	const char *reason;
	int i;

	setup("  connections: [0, 0, 0]\n  connection-rate: [0, 0, 0]\n"
	    "  auth-failures-per-minute: [0, 0, 0]\n"
	    "  auth-failures-per-day: [0, 0, 0]\n");
	hv = calloc(5000, sizeof(*hv));
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 5000, hv, &reason), 5000);
	close_all(hv, 5000);
	free(hv);
	for (i = 0; i < 1000; i++)
		osp_limit_auth_failed(sa("192.0.2.1"));
	CU_ASSERT_EQUAL(osp_limit_auth_check(sa("192.0.2.1"), &reason),
	    OSP_OK);
	/* Only the /21 limited. */
	configure("  connections: [0, 0, 2]\n  connection-rate: [0, 0, 0]\n");
	hv = calloc(2, sizeof(*hv));
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 3, hv, &reason), 2);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 2 for 192.0.0.0/21 exceeded");
	close_all(hv, 2);
	free(hv);
	teardown();
}

/* At most 100,000 entries per class; an address with open connections is
 * never evicted; idle entries go away. */
static void
t_limit_eviction(void)
{
	struct osp_limit_conn *pinned;
	const char *reason;
	char addr[64];
	int i;

	setup("  connections: [1, 1, 1]\n");
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("2001:db8::1"), &pinned,
	    &reason), OSP_OK);
	for (i = 0; i < 100100; i++) {
		/* a distinct /32 each (2002:0000:: upwards) */
		snprintf(addr, sizeof(addr), "%x:%x::1", 0x2002 + (i >> 16),
		    i & 0xffff);
		osp_limit_auth_failed(sa(addr));
	}
	CU_ASSERT(osp_limit_entries(0) <= 100001);
	CU_ASSERT(osp_limit_entries(2) <= 100001);
	CU_ASSERT(osp_limit_entries(0) >= 100000);
	/* The pinned entry kept its open connection. */
	CU_ASSERT_EQUAL(open_n("2001:db8::1", 1, NULL, &reason), 0);
	osp_limit_conn_close(pinned);
	CU_ASSERT_EQUAL(open_n("2001:db8::1", 1, NULL, &reason), 1);
	/* Three days on, everything is idle and swept a few at a time. */
	setup(NULL);
	for (i = 0; i < 10; i++) {
		snprintf(addr, sizeof(addr), "198.51.%d.1", i);
		osp_limit_auth_failed(sa(addr));
	}
	CU_ASSERT_EQUAL(osp_limit_entries(0), 10);
	test_now += 3 * DAY_MS;
	for (i = 0; i < 3; i++)
		CU_ASSERT_EQUAL(open_n("203.0.113.1", 1, NULL, &reason), 1);
	CU_ASSERT_EQUAL(osp_limit_entries(0), 1);
	teardown();
}

/* Not an IP peer; a handle kept across a reset. */
static void
t_limit_odd(void)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct osp_limit_conn *h, *stale;
	const char *reason;

	setup("  connections: [1, 1, 1]\n");
	CU_ASSERT_EQUAL(osp_limit_conn_open((struct sockaddr *)&sun, &h,
	    &reason), OSP_OK);
	CU_ASSERT_EQUAL(osp_limit_conn_open((struct sockaddr *)&sun, &stale,
	    &reason), OSP_OK);
	osp_limit_conn_close(h);
	osp_limit_conn_close(stale);
	CU_ASSERT_EQUAL(osp_limit_auth_check((struct sockaddr *)&sun,
	    &reason), OSP_OK);
	osp_limit_auth_failed((struct sockaddr *)&sun);
	osp_limit_conn_close(NULL);
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("192.0.2.1"), &stale,
	    &reason), OSP_OK);
	osp_limit_reset();
	CU_ASSERT_EQUAL(osp_limit_conn_open(sa("192.0.2.1"), &h, &reason),
	    OSP_OK);
	/* The stale handle must not release h's count. */
	osp_limit_conn_close(stale);
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 1, NULL, &reason), 0);
	osp_limit_conn_close(h);
	teardown();
}

/* ------------------------------------------------------------------ */
/* limits: in osprey.yaml                                               */

static void
conf_case(const char *yaml, const char *expect)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	char *path, *want;
	const char *got;

	path = osp_test_write_file(osp_test_tmpdir(), "limits.yaml", yaml);
	gen = osp_config_parse(path, &errs);
	CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
	/* Until core_post() calls it (then it would report twice). */
	if (errs.n == 0 || strstr(errs.text.data, "expected 3") == NULL)
		osp_limit_conf_check(gen, &errs);
	got = errs.n > 0 ? errs.text.data : "";
	if (expect == NULL)
		want = strdup("");
	else if (asprintf(&want, "%s:%s", path, expect) < 0)
		abort();
	CU_ASSERT_STRING_EQUAL(got, want);
	if (strcmp(got, want) != 0)
		fprintf(stderr, "\nwant: %s\ngot:  %s\n", want, got);
	if (expect == NULL) {
		/* Applied. */
		osp_limit_configure(&gen->core);
	}
	free(want);
	free(path);
	osp_config_unref(gen);
	osp_conf_errs_deinit(&errs);
}

static void
t_conf_limits(void)
{
	const char *reason;

	struct osp_limit_conn *hv[2];

	setup(NULL);
	conf_case("limits:\n  connections: [1, 2, 3]\n"
	    "  connection-rate: [0, 0, 0]\n", NULL);
	CU_ASSERT_EQUAL(open_n("192.0.2.1", 2, hv, &reason), 1);
	CU_ASSERT_STRING_EQUAL(reason,
	    "open connections 1 for 192.0.2.1/32 exceeded");
	close_all(hv, 1);
	conf_case("limits:\n  connections: [1, 2]\n",
	    "2:3: limits.connections: expected 3 numbers (IPv4 /32, /26, "
	    "/21 and IPv6 /64, /48, /32), got 2");
	conf_case("limits:\n  auth-failures-per-day: 5\n",
	    "2:3: limits.auth-failures-per-day: expected 3 numbers (IPv4 "
	    "/32, /26, /21 and IPv6 /64, /48, /32), got 1");
	conf_case("limits:\n  connection-rate: [1, -1, 3]\n",
	    "2:24: limits.connection-rate[1]: -1 is out of range "
	    "(0..1000000000)");
	conf_case("limits:\n  auth-failures-per-minute: [1, x, 3]\n",
	    "2:33: limits.auth-failures-per-minute[1]: expected an integer, "
	    "got \"x\"");
	conf_case("limits:\n  connection: [1, 2, 3]\n",
	    "2:3: limits.connection: unknown key (did you mean "
	    "\"connections\"?)");
	conf_case("limits: 5\n",
	    "1:9: limits: expected a mapping, got a scalar");
	teardown();
}

/* ------------------------------------------------------------------ */
/* Metrics                                                              */

static void
t_metrics_exposition(void)
{
	struct osp_metric *a, *b, *c;
	struct osp_buf out = { 0 };

	b = osp_metric_new("osprey_b_total", "Connections.",
	    OSP_METRIC_COUNTER, "listener");
	a = osp_metric_new("osprey_a", "Open sessions.", OSP_METRIC_GAUGE,
	    NULL);
	c = osp_metric_new("osprey_c_total", "Nothing yet.",
	    OSP_METRIC_COUNTER, "reason");
	CU_ASSERT_PTR_NOT_NULL_FATAL(a);
	CU_ASSERT_PTR_NOT_NULL_FATAL(b);
	CU_ASSERT_PTR_NOT_NULL_FATAL(c);
	osp_metric_add(b, "submission", 2);
	osp_metric_add(b, "delivery", 1);
	osp_metric_add(b, "delivery", 5);
	osp_metric_add(b, "delivery", -3);	/* counters never go down */
	osp_metric_set(b, "delivery", 0);	/* nor are set */
	osp_metric_add(a, NULL, 7);
	osp_metric_add(a, NULL, -2);
	osp_metrics_write(&out);
	CU_ASSERT_STRING_EQUAL(out.data,
	    "# HELP osprey_a Open sessions.\n"
	    "# TYPE osprey_a gauge\n"
	    "osprey_a 5\n"
	    "# HELP osprey_b_total Connections.\n"
	    "# TYPE osprey_b_total counter\n"
	    "osprey_b_total{listener=\"delivery\"} 6\n"
	    "osprey_b_total{listener=\"submission\"} 2\n"
	    "# HELP osprey_c_total Nothing yet.\n"
	    "# TYPE osprey_c_total counter\n");
	CU_ASSERT_EQUAL(osp_metric_get(b, "delivery"), 6);
	CU_ASSERT_EQUAL(osp_metric_get(b, "nothing"), 0);
	CU_ASSERT_EQUAL(osp_metric_get(a, NULL), 5);
	osp_metric_set(a, NULL, -4);
	CU_ASSERT_EQUAL(osp_metric_get(a, NULL), -4);
	/* Registering again returns the family; a mismatch is refused. */
	CU_ASSERT_PTR_EQUAL(osp_metric_new("osprey_b_total", "x",
	    OSP_METRIC_COUNTER, "listener"), b);
	CU_ASSERT_PTR_NULL(osp_metric_new("osprey_b_total", "x",
	    OSP_METRIC_GAUGE, "listener"));
	CU_ASSERT_PTR_NULL(osp_metric_new("osprey_b_total", "x",
	    OSP_METRIC_COUNTER, "role"));
	CU_ASSERT_PTR_NULL(osp_metric_new("osprey_b_total", "x",
	    OSP_METRIC_COUNTER, NULL));
	CU_ASSERT_PTR_NULL(osp_metric_new("Osprey", "x", OSP_METRIC_GAUGE,
	    NULL));
	CU_ASSERT_PTR_NULL(osp_metric_new("9x", "x", OSP_METRIC_GAUGE,
	    NULL));
	CU_ASSERT_PTR_NULL(osp_metric_new("osprey_x", "x", OSP_METRIC_GAUGE,
	    "__name"));
	CU_ASSERT_PTR_NULL(osp_metric_new("osprey_x", "x", OSP_METRIC_GAUGE,
	    "a-b"));
	/* NULL (a failed registration) is a no-op everywhere. */
	osp_metric_add(NULL, "x", 1);
	osp_metric_set(NULL, "x", 1);
	CU_ASSERT_EQUAL(osp_metric_get(NULL, "x"), 0);
	osp_buf_deinit(&out);
	osp_metrics_free_all();
}

static void
t_metrics_escaping(void)
{
	struct osp_metric *m;
	struct osp_buf out = { 0 };

	m = osp_metric_new("osprey_esc_total", "Back\\slash and\nnewline "
	    "\"quoted\".", OSP_METRIC_COUNTER, "v");
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	osp_metric_add(m, "a\"b\\c\nd", 1);
	osp_metric_add(m, NULL, 2);
	osp_metrics_write(&out);
	CU_ASSERT_STRING_EQUAL(out.data,
	    "# HELP osprey_esc_total Back\\\\slash and\\nnewline "
	    "\"quoted\".\n"
	    "# TYPE osprey_esc_total counter\n"
	    "osprey_esc_total{v=\"\"} 2\n"
	    "osprey_esc_total{v=\"a\\\"b\\\\c\\nd\"} 1\n");
	osp_buf_deinit(&out);
	osp_metrics_free_all();
}

static void
t_metrics_bound(void)
{
	struct osp_metric *m;
	struct osp_buf out = { 0 };
	char label[32];
	size_t lines = 0;
	const char *p;
	int i;

	m = osp_metric_new("osprey_many_total", "Many.", OSP_METRIC_COUNTER,
	    "client");
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	for (i = 0; i < 1005; i++) {
		snprintf(label, sizeof(label), "c%04d", i);
		osp_metric_add(m, label, 1);
	}
	osp_metric_add(m, "c0001", 1);		/* existing: itself */
	CU_ASSERT_EQUAL(osp_metric_get(m, "c0001"), 2);
	CU_ASSERT_EQUAL(osp_metric_get(m, "c0999"), 1);
	CU_ASSERT_EQUAL(osp_metric_get(m, "c1000"), 0);
	CU_ASSERT_EQUAL(osp_metric_get(m, "other"), 5);
	osp_metrics_write(&out);
	for (p = out.data; (p = strchr(p, '\n')) != NULL; p++)
		lines++;
	CU_ASSERT_EQUAL(lines, 2 + 1001);
	osp_buf_deinit(&out);
	osp_metrics_free_all();
}

#define NTHREADS	4
#define NADDS		100000

static struct osp_metric *conc_a, *conc_b;

static void *
conc_thread(void *arg)
{
	const char *label = arg;
	int i;

	for (i = 0; i < NADDS; i++) {
		osp_metric_add(conc_a, NULL, 1);
		osp_metric_add(conc_b, label, 2);
		osp_metric_add(conc_b, "shared", 1);
	}
	return NULL;
}

static void
t_metrics_threads(void)
{
	static const char *labels[NTHREADS] = { "t0", "t1", "t2", "t3" };
	pthread_t th[NTHREADS];
	struct osp_buf out = { 0 };
	int i;

	conc_a = osp_metric_new("osprey_conc_total", "Adds.",
	    OSP_METRIC_COUNTER, NULL);
	conc_b = osp_metric_new("osprey_concl_total", "Adds.",
	    OSP_METRIC_COUNTER, "t");
	for (i = 0; i < NTHREADS; i++)
		pthread_create(&th[i], NULL, conc_thread, (void *)labels[i]);
	/* Writing while they add must be safe too. */
	for (i = 0; i < 20; i++) {
		osp_buf_reset(&out);
		osp_metrics_write(&out);
	}
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	CU_ASSERT_EQUAL(osp_metric_get(conc_a, NULL), NTHREADS * NADDS);
	CU_ASSERT_EQUAL(osp_metric_get(conc_b, "shared"), NTHREADS * NADDS);
	for (i = 0; i < NTHREADS; i++)
		CU_ASSERT_EQUAL(osp_metric_get(conc_b, labels[i]), 2 * NADDS);
	osp_buf_deinit(&out);
	osp_metrics_free_all();
}

/* ------------------------------------------------------------------ */
/* Sending log                                                          */

static struct osp_sendlog *
sendlog_open(const char *name)
{
	struct osp_sendlog *log = NULL;
	const char *error = NULL;
	char dir[4200];

	snprintf(dir, sizeof(dir), "%s/%s", osp_test_tmpdir(), name);
	mkdir(dir, 0700);
	CU_ASSERT_EQUAL(osp_sendlog_open(dir, &log, &error), OSP_OK);
	if (error != NULL)
		fprintf(stderr, "%s\n", error);
	return log;
}

/* One message; returns the limit hit (or -1 on an error). */
static int
send1(struct osp_sendlog *log, const char *account, int64_t now,
    int64_t maxm, int64_t maxf, const char *r1, const char *r2,
    const char *r3)
{
	const char *rcpts[3] = { r1, r2, r3 };
	enum osp_sendlog_limit lim = 99;
	const char *error = NULL;
	size_t n = r3 != NULL ? 3 : r2 != NULL ? 2 : r1 != NULL ? 1 : 0;

	if (osp_sendlog_check_add(log, account, rcpts, n, now, maxm, maxf,
	    &lim, &error) != OSP_OK)
		return -1;
	return (int)lim;
}

/* Rows in a table of the sendlog.db under dir `name`. */
static int
rows(const char *name, const char *sql)
{
	char path[4200];
	sqlite3 *db;
	sqlite3_stmt *st;
	int n = -1;

	snprintf(path, sizeof(path), "%s/%s/sendlog.db", osp_test_tmpdir(),
	    name);
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) ==
	    SQLITE_OK && sqlite3_prepare_v2(db, sql, -1, &st, NULL) ==
	    SQLITE_OK) {
		if (sqlite3_step(st) == SQLITE_ROW)
			n = sqlite3_column_int(st, 0);
		sqlite3_finalize(st);
	}
	sqlite3_close(db);
	return n;
}

static void
t_sendlog_messages(void)
{
	struct osp_sendlog *log = sendlog_open("msgs");
	char path[4200];
	struct stat sb;
	int64_t t = 1700000000;

	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	snprintf(path, sizeof(path), "%s/msgs/sendlog.db", osp_test_tmpdir());
	CU_ASSERT_EQUAL(stat(path, &sb), 0);
	CU_ASSERT_EQUAL(sb.st_mode & 0777, 0600);
	CU_ASSERT_EQUAL(send1(log, "alice", t, 3, 0, "x@a.example", NULL,
	    NULL), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 10, 3, 0, "x@a.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 20, 3, 0, "y@a.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 30, 3, 0, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_MESSAGES);
	/* Refused: nothing recorded, not even the recipient. */
	CU_ASSERT_EQUAL(rows("msgs", "SELECT count(*) FROM messages"), 3);
	CU_ASSERT_EQUAL(rows("msgs", "SELECT count(*) FROM recipients "
	    "WHERE rcpt = 'z@a.example'"), 0);
	/* Per account. */
	CU_ASSERT_EQUAL(send1(log, "bob", t + 30, 3, 0, "z@a.example", NULL,
	    NULL), OSP_SENDLOG_OK);
	/* No limit. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 40, 0, 0, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 40, -1, -1, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	/* The window is the last 24 hours: alice has 5 messages in it
	 * until the first one (at t) leaves it at t + 86400. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86399, 5, 0, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_MESSAGES);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86400, 5, 0, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	/* Writing pruned the rows older than 24 hours: the one at t. */
	CU_ASSERT_EQUAL(rows("msgs", "SELECT count(*) FROM messages "
	    "WHERE time <= 1700000000"), 0);
	CU_ASSERT_EQUAL(rows("msgs", "SELECT count(*) FROM messages"), 6);
	/* Persistence: the same counts after close and open. */
	osp_sendlog_close(log);
	log = sendlog_open("msgs");
	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86401, 5, 0, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_MESSAGES);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86401, 6, 0, "z@a.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	osp_sendlog_close(log);
}

static void
t_sendlog_first_time(void)
{
	struct osp_sendlog *log = sendlog_open("first");
	int64_t t = 1700000000;

	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	CU_ASSERT_EQUAL(send1(log, "alice", t, 0, 2, "a@x.example",
	    "b@x.example", NULL), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 1, 0, 2, "c@x.example",
	    NULL, NULL), OSP_SENDLOG_FIRST_TIME);
	/* Known recipients, in any case, are not first-time. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 2, 0, 2, "A@X.Example",
	    "b@x.example", "B@x.EXAMPLE"), OSP_SENDLOG_OK);
	/* A mix: the new one tips it over, nothing is recorded. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 3, 0, 2, "a@x.example",
	    "d@x.example", NULL), OSP_SENDLOG_FIRST_TIME);
	CU_ASSERT_EQUAL(rows("first", "SELECT count(*) FROM recipients"), 2);
	CU_ASSERT_EQUAL(rows("first", "SELECT count(*) FROM messages"), 2);
	/* One recipient listed twice is one first-time recipient. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 4, 0, 3, "e@x.example",
	    "E@x.example", NULL), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 5, 0, 3, "f@x.example",
	    NULL, NULL), OSP_SENDLOG_FIRST_TIME);
	/* Per account. */
	CU_ASSERT_EQUAL(send1(log, "bob", t + 5, 0, 1, "f@x.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	/* A day later the first-time budget is back; a and b stay known,
	 * with last_sent updated. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86404, 0, 2, "c@x.example",
	    "d@x.example", "a@x.example"), OSP_SENDLOG_OK);
	CU_ASSERT_EQUAL(rows("first", "SELECT last_sent - first_sent FROM "
	    "recipients WHERE account = 'alice' AND rcpt = 'a@x.example'"),
	    86404);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86405, 0, 2, "g@x.example",
	    NULL, NULL), OSP_SENDLOG_FIRST_TIME);
	/* Both limits: messages checked first. */
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86405, 1, 2, "g@x.example",
	    NULL, NULL), OSP_SENDLOG_MESSAGES);
	/* Persistence. */
	osp_sendlog_close(log);
	log = sendlog_open("first");
	CU_ASSERT_PTR_NOT_NULL_FATAL(log);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86406, 0, 2, "h@x.example",
	    NULL, NULL), OSP_SENDLOG_FIRST_TIME);
	CU_ASSERT_EQUAL(send1(log, "alice", t + 86406, 0, 2, "C@x.example",
	    NULL, NULL), OSP_SENDLOG_OK);
	osp_sendlog_close(log);
}

static void
t_sendlog_current(void)
{
	struct osp_sendlog *log = sendlog_open("cur");
	const char *error = NULL;

	CU_ASSERT_PTR_NULL(osp_sendlog_current());
	osp_sendlog_set_current(log);
	CU_ASSERT_PTR_EQUAL(osp_sendlog_current(), log);
	osp_sendlog_set_current(NULL);
	osp_sendlog_close(log);
	osp_sendlog_close(NULL);
	/* A data dir that does not exist. */
	log = (struct osp_sendlog *)1;
	CU_ASSERT_NOT_EQUAL(osp_sendlog_open("/nonexistent/osprey", &log,
	    &error), OSP_OK);
	CU_ASSERT_PTR_NULL(log);
	CU_ASSERT_STRING_EQUAL(error, "cannot create the database file");
}

static const struct osp_test tests[] = {
	OSP_TEST(t_limit_defaults),
	OSP_TEST(t_limit_open_32),
	OSP_TEST(t_limit_open_26),
	OSP_TEST(t_limit_open_21),
	OSP_TEST(t_limit_ipv6_classes),
	OSP_TEST(t_limit_v4_mapped),
	OSP_TEST(t_limit_rate_window),
	OSP_TEST(t_limit_auth_minute),
	OSP_TEST(t_limit_auth_day),
	OSP_TEST(t_limit_reconfigure),
	OSP_TEST(t_limit_zero),
	OSP_TEST(t_limit_eviction),
	OSP_TEST(t_limit_odd),
	OSP_TEST(t_conf_limits),
	OSP_TEST(t_metrics_exposition),
	OSP_TEST(t_metrics_escaping),
	OSP_TEST(t_metrics_bound),
	OSP_TEST(t_metrics_threads),
	OSP_TEST(t_sendlog_messages),
	OSP_TEST(t_sendlog_first_time),
	OSP_TEST(t_sendlog_current),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	return osp_test_main(argc, argv, "limit", tests);
}
