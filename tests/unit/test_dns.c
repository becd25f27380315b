/* SPDX-License-Identifier: ISC */
/* DNS: the resolver against signed zones served by nsd on loopback
 * (tests/lib/dnszone.py), and the wire parser against hostile packets. */
#include "core.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "testutil.h"

#define MAXRR 16

static struct {
	char		 dir[4096];
	bool		 up;
	unsigned	 port, tport;
	const char	*anchors[4];
	size_t		 nanchors;
} fx;

/* What a callback saw, copied out (res lives only during the callback). */
struct answer {
	bool		 done;
	bool		 in_lookup;	/* set while osp_dns_lookup runs */
	bool		 early;		/* callback ran inside osp_dns_lookup */
	int		 err;
	int		 rcode;
	bool		 nxdomain;
	enum osp_dns_sec sec;
	char		 why[512];
	char		 canon[256];
	char		 qname[256];
	size_t		 n;
	uint32_t	 ttl[MAXRR];
	char		 text[MAXRR][1024];
};

static uint64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static const char *
python3(void)
{
	const char *p = getenv("PYTHON3");

	return p != NULL && *p != '\0' ? p : "/usr/bin/python3";
}

static void
fixture_stop(void)
{
	char cmd[8400];

	if (!fx.up)
		return;
	fx.up = false;
	snprintf(cmd, sizeof(cmd), "'%s' '%s/tests/lib/dnszone.py' stop '%s'",
	    python3(), osp_test_srcdir(), fx.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "test_dns: stopping nsd failed\n");
}

/* Returns 0 when up, 77 to skip, another value on failure. */
static int
fixture_start(void)
{
	char cmd[8400], path[4200], line[1024];
	FILE *f;
	int rc;

	snprintf(fx.dir, sizeof(fx.dir), "%s/dns", osp_test_tmpdir());
	if (mkdir(fx.dir, 0700) == -1 && errno != EEXIST)
		return 1;
	snprintf(path, sizeof(path), "%s/fixture.out", fx.dir);
	/* with our pid: nsd is stopped even if this process crashes */
	snprintf(cmd, sizeof(cmd), "'%s' '%s/tests/lib/dnszone.py' start '%s'"
	    " %ld > '%s'", python3(), osp_test_srcdir(), fx.dir,
	    (long)getpid(), path);
	rc = system(cmd);
	/* stop also after a partial start */
	fx.up = true;
	atexit(fixture_stop);
	if (rc == -1 || !WIFEXITED(rc))
		return 1;
	if (WEXITSTATUS(rc) != 0)
		return WEXITSTATUS(rc);
	if ((f = fopen(path, "r")) == NULL)
		return 1;
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (strncmp(line, "port=", 5) == 0)
			fx.port = (unsigned)atoi(line + 5);
		else if (strncmp(line, "tampered_port=", 14) == 0)
			fx.tport = (unsigned)atoi(line + 14);
		else if (strncmp(line, "anchors=", 8) == 0) {
			FILE *a = fopen(line + 8, "r");
			char ds[1024];

			while (a != NULL && fx.nanchors < 4 &&
			    fgets(ds, sizeof(ds), a) != NULL) {
				ds[strcspn(ds, "\n")] = '\0';
				if (*ds != '\0')
					fx.anchors[fx.nanchors++] = strdup(ds);
			}
			if (a != NULL)
				fclose(a);
		}
	}
	fclose(f);
	return fx.port != 0 && fx.tport != 0 && fx.nanchors == 2 ? 0 : 1;
}

static struct osp_conf_addr fwd_addr;
static const char *test_options[] = {
	/* test. and 127.in-addr.arpa. are built-in local zones of unbound
	 * (RFC 6761 §6.2, RFC 6303 §4.2): let queries through to nsd */
	"local-zone: test. transparent",
	"local-zone: 127.in-addr.arpa. transparent",
};

/* A fresh resolver forwarding to port; with the fixture's anchors or
 * none. Fills *cc_r so callers can tweak and re-init. */
static void
conf_fill(struct osp_core_conf *cc, unsigned port, bool anchors,
    size_t nopts)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&fwd_addr.ss;

	memset(cc, 0, sizeof(*cc));
	memset(&fwd_addr, 0, sizeof(fwd_addr));
	sin->sin_family = AF_INET;
	sin->sin_port = htons((uint16_t)port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fwd_addr.len = sizeof(*sin);
	fwd_addr.port = (uint16_t)port;
	fwd_addr.text = "127.0.0.1";
	cc->dns.forwarders.n = 1;
	cc->dns.forwarders.items = &fwd_addr;
	if (anchors) {
		cc->dns.trust_anchors.n = fx.nanchors;
		cc->dns.trust_anchors.items = fx.anchors;
	}
	cc->dns.unbound_options.n = nopts;
	cc->dns.unbound_options.items = test_options;
	cc->dns.timeout = 3000;
}

static void
resolver(unsigned port, bool anchors)
{
	struct osp_core_conf cc;
	const char *error = NULL;
	int ret;

	osp_dns_deinit();
	conf_fill(&cc, port, anchors, 2);
	ret = osp_dns_init(&cc, &error);
	if (ret != OSP_OK)
		fprintf(stderr, "osp_dns_init: %s\n", error);
	CU_ASSERT_FATAL(ret == OSP_OK);
}

static void
rr_text(const struct osp_dns_rr *rr, char *out, size_t size)
{
	char addr[INET6_ADDRSTRLEN];
	size_t i, o;

	switch (rr->type) {
	case OSP_DNS_A:
		inet_ntop(AF_INET, &rr->u.a, out, (socklen_t)size);
		break;
	case OSP_DNS_AAAA:
		inet_ntop(AF_INET6, &rr->u.aaaa, addr, sizeof(addr));
		snprintf(out, size, "%s", addr);
		break;
	case OSP_DNS_MX:
		snprintf(out, size, "%u %s", rr->u.mx.pref, rr->u.mx.host);
		break;
	case OSP_DNS_CNAME:
	case OSP_DNS_PTR:
		snprintf(out, size, "%s", rr->u.name);
		break;
	case OSP_DNS_TXT:
		snprintf(out, size, "%.*s", (int)rr->u.txt.len, rr->u.txt.text);
		CU_ASSERT(rr->u.txt.text[rr->u.txt.len] == '\0');
		break;
	case OSP_DNS_TLSA:
		o = (size_t)snprintf(out, size, "%u %u %u ", rr->u.tlsa.usage,
		    rr->u.tlsa.selector, rr->u.tlsa.mtype);
		for (i = 0; i < rr->u.tlsa.len && o + 3 < size; i++, o += 2)
			snprintf(out + o, 3, "%02x", rr->u.tlsa.data[i]);
		break;
	default:
		snprintf(out, size, "?");
	}
}

static void
answer_cb(void *arg, int err, const struct osp_dns_result *res)
{
	struct answer *a = arg;
	size_t i;

	CU_ASSERT(!a->done);
	a->done = true;
	a->early = a->in_lookup;
	a->err = err;
	if (err != OSP_OK) {
		CU_ASSERT(res == NULL);
		return;
	}
	a->rcode = res->rcode;
	a->nxdomain = res->nxdomain;
	a->sec = res->sec;
	if (res->why_bogus != NULL)
		snprintf(a->why, sizeof(a->why), "%s", res->why_bogus);
	if (res->canonname != NULL)
		snprintf(a->canon, sizeof(a->canon), "%s", res->canonname);
	snprintf(a->qname, sizeof(a->qname), "%s", res->qname);
	a->n = res->n;
	for (i = 0; i < res->n && i < MAXRR; i++) {
		CU_ASSERT(res->rr[i].type == res->qtype);
		a->ttl[i] = res->rr[i].ttl;
		rr_text(&res->rr[i], a->text[i], sizeof(a->text[i]));
	}
}

static void
guard_cb(void *arg)
{
	*(bool *)arg = true;
}

/* Runs the loop until *done or ms elapsed (a guard timer wakes it). */
static void
loop_until(const bool *done, uint64_t ms)
{
	bool expired = false;
	struct osp_timer *guard = osp_timer_new(guard_cb, &expired);

	osp_timer_add(guard, ms);
	while ((done == NULL || !*done) && !expired)
		event_base_loop(osp_event_base(), EVLOOP_ONCE);
	osp_timer_free(guard);
}

static void
lookup(const char *name, uint16_t type, struct answer *a)
{
	int ret;

	memset(a, 0, sizeof(*a));
	a->in_lookup = true;
	ret = osp_dns_lookup(name, type, answer_cb, a, NULL);
	a->in_lookup = false;
	CU_ASSERT_FATAL(ret == OSP_OK);
	loop_until(&a->done, 5000);
	CU_ASSERT_FATAL(a->done);
	CU_ASSERT(!a->early);
}

/* One record of type at name, secure, with this text. */
static void
expect_one(const char *name, uint16_t type, const char *text)
{
	struct answer a;

	lookup(name, type, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.rcode, 0);
	CU_ASSERT(!a.nxdomain);
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_SECURE);
	CU_ASSERT_EQUAL_FATAL(a.n, 1);
	CU_ASSERT_STRING_EQUAL(a.text[0], text);
	CU_ASSERT_EQUAL(a.ttl[0], 3600);
	if (strcmp(a.text[0], text) != 0 || a.sec != OSP_DNS_SECURE)
		fprintf(stderr, "%s %s: got \"%s\" sec=%s why=%s\n", name,
		    osp_dns_type_name(type), a.text[0],
		    osp_dns_sec_name(a.sec), a.why);
}

static void
test_secure_addresses(void)
{
	resolver(fx.port, true);
	expect_one("mx.example.test", OSP_DNS_A, "127.0.0.25");
	expect_one("mx.example.test.", OSP_DNS_AAAA, "2001:db8::25");
	expect_one("example.test", OSP_DNS_A, "127.0.0.10");
	/* names are case-insensitive (RFC 4343) */
	expect_one("MX.Example.TEST", OSP_DNS_A, "127.0.0.25");
}

static void
test_secure_mx(void)
{
	resolver(fx.port, true);
	expect_one("example.test", OSP_DNS_MX, "10 mx.example.test");
}

static void
test_secure_txt(void)
{
	resolver(fx.port, true);
	expect_one("example.test", OSP_DNS_TXT, "v=spf1 mx -all");
	/* several character-strings are concatenated without separators */
	expect_one("long.example.test", OSP_DNS_TXT,
	    "first string; second string; third string");
	expect_one("_dmarc.example.test", OSP_DNS_TXT,
	    "v=DMARC1; p=reject; rua=mailto:dmarc@example.test");
	expect_one("_mta-sts.example.test", OSP_DNS_TXT,
	    "v=STSv1; id=20240101T000000");
	expect_one("_smtp._tls.example.test", OSP_DNS_TXT,
	    "v=TLSRPTv1; rua=mailto:tlsrpt@example.test");
	expect_one("sel._domainkey.example.test", OSP_DNS_TXT,
	    "v=DKIM1; k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/"
	    "UC3SBsEmGqZ9ZJW3/DkMoGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5"
	    "ijSnDQ6mJNOn8EaVoPgA7BKwX4NpqIxmGaN9qhBsCfT3iBsMvGBoQ7ZRpdH0iAnF"
	    "WYOWoEK3ZzPC2ZZEaYNj5t3ZcFmNLUnWyEXbeRwIDAQAB");
}

static void
test_secure_tlsa(void)
{
	resolver(fx.port, true);
	expect_one("_25._tcp.mx.example.test", OSP_DNS_TLSA, "3 1 1 "
	    "8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d");
}

static void
test_secure_cname_ptr(void)
{
	struct answer a;

	resolver(fx.port, true);
	expect_one("www.example.test", OSP_DNS_CNAME, "mx.example.test");
	expect_one("25.0.0.127.in-addr.arpa", OSP_DNS_PTR, "mx.example.test");

	/* alias -> www -> mx: the chain is followed to the address */
	lookup("alias.example.test", OSP_DNS_A, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_SECURE);
	CU_ASSERT_STRING_EQUAL(a.qname, "alias.example.test");
	CU_ASSERT_STRING_EQUAL(a.canon, "mx.example.test");
	CU_ASSERT_EQUAL_FATAL(a.n, 1);
	CU_ASSERT_STRING_EQUAL(a.text[0], "127.0.0.25");
}

static void
test_nxdomain_nodata(void)
{
	struct answer a;

	resolver(fx.port, true);
	lookup("nosuchname.example.test", OSP_DNS_A, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.rcode, 3);
	CU_ASSERT(a.nxdomain);
	CU_ASSERT_EQUAL(a.n, 0);
	/* the NSEC proof of non-existence validated (RFC 4035 §5.4) */
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_SECURE);

	lookup("mx.example.test", OSP_DNS_TXT, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.rcode, 0);
	CU_ASSERT(!a.nxdomain);
	CU_ASSERT_EQUAL(a.n, 0);
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_SECURE);
}

static void
test_bogus(void)
{
	struct answer a;

	resolver(fx.tport, true);
	lookup("mx.example.test", OSP_DNS_A, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_BOGUS);
	CU_ASSERT(a.why[0] != '\0');
	/* bogus data is never handed out */
	CU_ASSERT_EQUAL(a.n, 0);
	/* records left intact by the tampering still validate */
	expect_one("example.test", OSP_DNS_MX, "10 mx.example.test");
}

static void
test_insecure_without_anchor(void)
{
	struct answer a;

	resolver(fx.port, false);
	lookup("mx.example.test", OSP_DNS_A, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_INSECURE);
	CU_ASSERT_EQUAL_FATAL(a.n, 1);
	CU_ASSERT_STRING_EQUAL(a.text[0], "127.0.0.25");
	/* without validation the tampered data passes, as insecure */
	resolver(fx.tport, false);
	lookup("mx.example.test", OSP_DNS_A, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.sec, OSP_DNS_INSECURE);
	CU_ASSERT_EQUAL_FATAL(a.n, 1);
	CU_ASSERT_STRING_EQUAL(a.text[0], "127.0.0.66");
}

static void
test_test_zone_needs_option(void)
{
	struct osp_core_conf cc;
	const char *error;
	struct answer a;

	/* without local-zone "test. transparent", unbound answers .test
	 * itself (RFC 6761 §6.2) and never asks the forwarder */
	osp_dns_deinit();
	conf_fill(&cc, fx.port, false, 0);
	CU_ASSERT_FATAL(osp_dns_init(&cc, &error) == OSP_OK);
	lookup("mx.example.test", OSP_DNS_A, &a);
	CU_ASSERT_EQUAL_FATAL(a.err, OSP_OK);
	CU_ASSERT_EQUAL(a.rcode, 3);
	CU_ASSERT_EQUAL(a.n, 0);
}

static int cb_count;

static void
count_cb(void *arg, int err, const struct osp_dns_result *res)
{
	cb_count++;
}

static void
test_cancel(void)
{
	struct osp_dns_query *q, *q2;
	struct answer a;

	resolver(fx.port, true);
	cb_count = 0;
	CU_ASSERT_FATAL(osp_dns_lookup("mx.example.test", OSP_DNS_A, count_cb,
	    NULL, &q) == OSP_OK);
	CU_ASSERT_PTR_NOT_NULL_FATAL(q);
	osp_dns_cancel(q);
	loop_until(NULL, 300);
	CU_ASSERT_EQUAL(cb_count, 0);

	/* cached now? make sure, then cancel an answer already in hand */
	lookup("example.test", OSP_DNS_MX, &a);
	CU_ASSERT_FATAL(osp_dns_lookup("example.test", OSP_DNS_MX, count_cb,
	    NULL, &q) == OSP_OK);
	CU_ASSERT_FATAL(osp_dns_lookup("example.test", OSP_DNS_A, count_cb,
	    NULL, &q2) == OSP_OK);
	osp_dns_cancel(q);
	loop_until(NULL, 300);
	CU_ASSERT_EQUAL(cb_count, 1);
	osp_dns_cancel(NULL);
}

struct chain {
	struct answer	 first, second;
	bool		 started;
};

static void
chain_cb(void *arg, int err, const struct osp_dns_result *res)
{
	struct chain *c = arg;

	answer_cb(&c->first, err, res);
	/* a new lookup from inside a callback, answered from cache */
	c->second.in_lookup = true;
	c->started = osp_dns_lookup("mx.example.test", OSP_DNS_A, answer_cb,
	    &c->second, NULL) == OSP_OK;
	c->second.in_lookup = false;
}

static void
test_callback_starts_lookup(void)
{
	struct answer warm;
	struct chain c;

	resolver(fx.port, true);
	lookup("mx.example.test", OSP_DNS_A, &warm);	/* now cached */
	memset(&c, 0, sizeof(c));
	c.first.in_lookup = true;
	CU_ASSERT_FATAL(osp_dns_lookup("mx.example.test", OSP_DNS_A,
	    chain_cb, &c, NULL) == OSP_OK);
	c.first.in_lookup = false;
	CU_ASSERT(!c.first.done);	/* never before lookup returns */
	loop_until(&c.second.done, 3000);
	CU_ASSERT(c.started);
	CU_ASSERT(c.first.done && !c.first.early);
	CU_ASSERT(c.second.done && !c.second.early);
	CU_ASSERT_EQUAL(c.second.err, OSP_OK);
	CU_ASSERT_EQUAL(c.second.sec, OSP_DNS_SECURE);
	CU_ASSERT_STRING_EQUAL(c.second.text[0], "127.0.0.25");
}

/* A UDP socket nobody reads and a TCP listener nobody accepts on: queries
 * to it vanish. */
static unsigned
black_hole(int *fds)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	fds[0] = socket(AF_INET, SOCK_DGRAM, 0);
	CU_ASSERT_FATAL(fds[0] >= 0);
	CU_ASSERT_FATAL(bind(fds[0], (struct sockaddr *)&sin,
	    sizeof(sin)) == 0);
	CU_ASSERT_FATAL(getsockname(fds[0], (struct sockaddr *)&sin,
	    &len) == 0);
	fds[1] = socket(AF_INET, SOCK_STREAM, 0);
	CU_ASSERT_FATAL(fds[1] >= 0);
	if (bind(fds[1], (struct sockaddr *)&sin, sizeof(sin)) == 0)
		(void)listen(fds[1], 1);
	return ntohs(sin.sin_port);
}

static void
test_timeout(void)
{
	struct osp_core_conf cc;
	const char *error;
	struct answer a;
	uint64_t t0, dt;
	int fds[2];

	osp_dns_deinit();
	conf_fill(&cc, black_hole(fds), true, 2);
	cc.dns.timeout = 500;
	CU_ASSERT_FATAL(osp_dns_init(&cc, &error) == OSP_OK);
	t0 = now_ms();
	lookup("mx.example.test", OSP_DNS_A, &a);
	dt = now_ms() - t0;
	CU_ASSERT_EQUAL(a.err, OSP_EDNS);
	CU_ASSERT(dt >= 450 && dt < 2000);
	if (dt < 450 || dt >= 2000)
		fprintf(stderr, "timeout after %llu ms\n",
		    (unsigned long long)dt);
	/* unbound still retries the cancelled query: the late end must not
	 * reach anyone, and deinit must free it */
	osp_dns_deinit();
	close(fds[0]);
	close(fds[1]);
}

static void
test_deinit_outstanding(void)
{
	struct osp_core_conf cc;
	const char *error;
	int fds[2], i;

	osp_dns_deinit();
	conf_fill(&cc, black_hole(fds), true, 2);
	CU_ASSERT_FATAL(osp_dns_init(&cc, &error) == OSP_OK);
	cb_count = 0;
	for (i = 0; i < 3; i++)
		CU_ASSERT(osp_dns_lookup(i == 1 ? "a.example.test" :
		    "mx.example.test", OSP_DNS_A, count_cb, NULL, NULL) ==
		    OSP_OK);
	loop_until(NULL, 100);
	osp_dns_deinit();
	loop_until(NULL, 100);
	CU_ASSERT_EQUAL(cb_count, 0);
	/* and no lookups without a resolver */
	CU_ASSERT(osp_dns_lookup("example.test", OSP_DNS_A, count_cb, NULL,
	    NULL) == OSP_EDNS);
	close(fds[0]);
	close(fds[1]);
}

static void
test_init_errors(void)
{
	static const char *bad_opt[] = { "no-such-option: yes" };
	static const char *no_colon[] = { "verbosity" };
	static const char *bad_ta[] = { "example.test. IN DS garbage" };
	struct osp_core_conf cc;
	const char *error;

	osp_dns_deinit();
	conf_fill(&cc, 53, false, 0);
	cc.dns.unbound_options.n = 1;
	cc.dns.unbound_options.items = bad_opt;
	error = NULL;
	CU_ASSERT(osp_dns_init(&cc, &error) == OSP_ECONFIG);
	CU_ASSERT(error != NULL && strstr(error, "no-such-option") != NULL);

	cc.dns.unbound_options.items = no_colon;
	CU_ASSERT(osp_dns_init(&cc, &error) == OSP_ECONFIG);

	conf_fill(&cc, 53, false, 0);
	cc.dns.trust_anchors.n = 1;
	cc.dns.trust_anchors.items = bad_ta;
	CU_ASSERT(osp_dns_init(&cc, &error) == OSP_ECONFIG);

	conf_fill(&cc, 53, false, 0);
	cc.dns.root_anchor = true;
	cc.dns.root_anchor_file = "/nonexistent/root.key";
	error = NULL;
	CU_ASSERT(osp_dns_init(&cc, &error) == OSP_ECONFIG);
	CU_ASSERT(error != NULL && strstr(error, "dns-root-data") != NULL);

	/* bad input to lookup, without a callback */
	resolver(fx.port, true);
	CU_ASSERT(osp_dns_lookup("example.test", 2 /* NS */, count_cb, NULL,
	    NULL) == -EINVAL);
	CU_ASSERT(osp_dns_lookup("", OSP_DNS_A, count_cb, NULL, NULL) ==
	    -EINVAL);
	/* twice is an error, not a leak */
	conf_fill(&cc, 53, false, 0);
	CU_ASSERT(osp_dns_init(&cc, &error) == OSP_ERROR);
}

static void
test_type_names(void)
{
	CU_ASSERT_EQUAL(osp_dns_type_from_name("MX"), OSP_DNS_MX);
	CU_ASSERT_EQUAL(osp_dns_type_from_name("tlsa"), OSP_DNS_TLSA);
	CU_ASSERT_EQUAL(osp_dns_type_from_name("Aaaa"), OSP_DNS_AAAA);
	CU_ASSERT_EQUAL(osp_dns_type_from_name("NS"), 0);
	CU_ASSERT_EQUAL(osp_dns_type_from_name(NULL), 0);
	CU_ASSERT_STRING_EQUAL(osp_dns_type_name(OSP_DNS_PTR), "PTR");
	CU_ASSERT_PTR_NULL(osp_dns_type_name(2));
	CU_ASSERT_STRING_EQUAL(osp_dns_sec_name(OSP_DNS_BOGUS), "bogus");
	CU_ASSERT_STRING_EQUAL(osp_dns_sec_name(OSP_DNS_SECURE), "secure");
	CU_ASSERT_STRING_EQUAL(osp_dns_sec_name(OSP_DNS_INSECURE),
	    "insecure");
	CU_ASSERT_STRING_EQUAL(osp_dns_rcode_name(3), "NXDOMAIN");
	CU_ASSERT_PTR_NULL(osp_dns_rcode_name(99));
}

/* ------------------------------------------------------------------ */
/* Parser tables. Packets: header, question "a.test" A IN (offset 12,
 * 8 octets of name, so the answer section starts at 24), answers. */

#define HDR(an)	"\x00\x01\x81\x80\x00\x01\x00" an "\x00\x00\x00\x00"
#define Q_A	"\x01" "a" "\x04" "test" "\x00" "\x00\x01\x00\x01"
#define Q_TXT	"\x01" "a" "\x04" "test" "\x00" "\x00\x10\x00\x01"
#define Q_MX	"\x01" "a" "\x04" "test" "\x00" "\x00\x0f\x00\x01"
#define IN_TTL	"\x00\x01\x00\x00\x0e\x10"

struct parse_case {
	const char	*name;
	const char	*pkt;
	size_t		 len;
	uint16_t	 qtype;
	int		 ok;		/* 1: parses */
	size_t		 n;
	const char	*text0;		/* first record, as rr_text */
	const char	*canon;
};
#define PKT(s) s, sizeof(s) - 1

static const struct parse_case parse_cases[] = {
	{ "A", PKT(HDR("\x01") Q_A "\xc0\x0c\x00\x01" IN_TTL
	    "\x00\x04\x7f\x00\x00\x01"), OSP_DNS_A, 1, 1, "127.0.0.1", NULL },
	{ "no answers", PKT(HDR("\x00") Q_A), OSP_DNS_A, 1, 0, NULL, NULL },
	{ "uncompressed owner, two records", PKT(HDR("\x02") Q_A
	    "\x01" "a" "\x04" "test" "\x00" "\x00\x01" IN_TTL
	    "\x00\x04\x7f\x00\x00\x01"
	    "\xc0\x0c\x00\x01" IN_TTL "\x00\x04\x7f\x00\x00\x02"),
	    OSP_DNS_A, 1, 2, "127.0.0.1", NULL },
	{ "other owner ignored", PKT(HDR("\x01") Q_A
	    "\x01" "b" "\xc0\x0e\x00\x01" IN_TTL "\x00\x04\x7f\x00\x00\x01"),
	    OSP_DNS_A, 1, 0, NULL, NULL },
	{ "TXT strings joined", PKT(HDR("\x01") Q_TXT "\xc0\x0c\x00\x10"
	    IN_TTL "\x00\x08" "\x03" "abc" "\x00" "\x02" "de"), OSP_DNS_TXT,
	    1, 1, "abcde", NULL },
	{ "MX compressed exchange", PKT(HDR("\x01") Q_MX "\xc0\x0c\x00\x0f"
	    IN_TTL "\x00\x07" "\x00\x05" "\x02" "mx" "\xc0\x0c"),
	    OSP_DNS_MX, 1, 1, "5 mx.a.test", NULL },
	{ "null MX is the root", PKT(HDR("\x01") Q_MX "\xc0\x0c\x00\x0f"
	    IN_TTL "\x00\x03" "\x00\x00" "\x00"), OSP_DNS_MX, 1, 1, "0 .",
	    NULL },
	{ "CNAME followed", PKT(HDR("\x02") Q_A "\xc0\x0c\x00\x05" IN_TTL
	    "\x00\x04" "\x01" "b" "\xc0\x0e"
	    "\xc0\x24\x00\x01" IN_TTL "\x00\x04\x7f\x00\x00\x09"),
	    OSP_DNS_A, 1, 1, "127.0.0.9", "b.test" },
	{ "escaped label octets", PKT(HDR("\x01") Q_MX "\xc0\x0c\x00\x0f"
	    IN_TTL "\x00\x09" "\x00\x01" "\x05" "a.b\x00\"" "\x00"),
	    OSP_DNS_MX, 1, 1, "1 a\\.b\\000\\\"", NULL },

	{ "empty", "", 0, OSP_DNS_A, 0, 0, NULL, NULL },
	{ "short header", PKT("\x00\x01\x81\x80\x00"), OSP_DNS_A, 0, 0,
	    NULL, NULL },
	{ "not a response", PKT("\x00\x01\x01\x00\x00\x01\x00\x00\x00\x00"
	    "\x00\x00" Q_A), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "no question", PKT("\x00\x01\x81\x80\x00\x00\x00\x00\x00\x00"
	    "\x00\x00"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "truncated question", PKT(HDR("\x00") "\x01" "a" "\x04" "te"),
	    OSP_DNS_A, 0, 0, NULL, NULL },
	{ "question without type", PKT(HDR("\x00") "\x01" "a" "\x00"
	    "\x00"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "other qtype", PKT(HDR("\x00") Q_A), OSP_DNS_MX, 0, 0, NULL,
	    NULL },
	{ "pointer to itself", PKT(HDR("\x01") Q_A "\xc0\x18\x00\x01"
	    IN_TTL "\x00\x04\x7f\x00\x00\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "pointer forward", PKT(HDR("\x01") Q_A "\xc0\x1a\x00\x01"
	    IN_TTL "\x00\x04\x7f\x00\x00\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "pointer out of range", PKT(HDR("\x01") Q_A "\xff\xff\x00\x01"
	    IN_TTL "\x00\x04\x7f\x00\x00\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "pointer loop via label", PKT(HDR("\x01") Q_A
	    "\x01" "x" "\xc0\x18\x00\x01" IN_TTL "\x00\x04\x7f\x00\x00\x01"),
	    OSP_DNS_A, 0, 0, NULL, NULL },
	{ "pointer in question to itself", PKT(HDR("\x00") "\xc0\x0c"
	    "\x00\x01\x00\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "truncated pointer", PKT(HDR("\x01") Q_A "\xc0"), OSP_DNS_A, 0, 0,
	    NULL, NULL },
	{ "extended label type", PKT(HDR("\x00") "\x41" "a" "\x00"
	    "\x00\x01\x00\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "truncated label", PKT(HDR("\x00") "\x3f" "abc"), OSP_DNS_A, 0, 0,
	    NULL, NULL },
	{ "truncated record header", PKT(HDR("\x01") Q_A "\xc0\x0c\x00\x01"
	    "\x00\x01\x00\x00\x0e\x10\x00"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "truncated rdata", PKT(HDR("\x01") Q_A "\xc0\x0c\x00\x01" IN_TTL
	    "\x00\x04\x7f\x00"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "huge answer count", PKT("\x00\x01\x81\x80\x00\x01\xff\xff\x00\x00"
	    "\x00\x00" Q_A "\xc0\x0c\x00\x01" IN_TTL
	    "\x00\x04\x7f\x00\x00\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "count larger than records", PKT(HDR("\x02") Q_A "\xc0\x0c\x00\x01"
	    IN_TTL "\x00\x04\x7f\x00\x00\x01" "\x00\x00\x00\x00\x00\x00"),
	    OSP_DNS_A, 0, 0, NULL, NULL },
	{ "A of 5 octets", PKT(HDR("\x01") Q_A "\xc0\x0c\x00\x01" IN_TTL
	    "\x00\x05\x7f\x00\x00\x01\x01"), OSP_DNS_A, 0, 0, NULL, NULL },
	{ "TXT string past rdata", PKT(HDR("\x01") Q_TXT "\xc0\x0c\x00\x10"
	    IN_TTL "\x00\x03" "\x05" "ab" "\x00\x00\x00\x00\x00"), OSP_DNS_TXT,
	    0, 0, NULL, NULL },
	{ "empty TXT rdata", PKT(HDR("\x01") Q_TXT "\xc0\x0c\x00\x10"
	    IN_TTL "\x00\x00"), OSP_DNS_TXT, 0, 0, NULL, NULL },
	{ "MX name short of rdata", PKT(HDR("\x01") Q_MX "\xc0\x0c\x00\x0f"
	    IN_TTL "\x00\x05" "\x00\x05" "\x00" "\x00\x00"), OSP_DNS_MX, 0, 0,
	    NULL, NULL },
	{ "MX name past rdata", PKT(HDR("\x01") Q_MX "\xc0\x0c\x00\x0f"
	    IN_TTL "\x00\x04" "\x00\x05" "\x02" "mx" "\x00"), OSP_DNS_MX, 0, 0,
	    NULL, NULL },
	{ "CNAME loop", PKT(HDR("\x02") Q_A
	    "\xc0\x0c\x00\x05" IN_TTL "\x00\x04" "\x01" "b" "\xc0\x0e"
	    "\xc0\x24\x00\x05" IN_TTL "\x00\x02" "\xc0\x0c"),
	    OSP_DNS_A, 0, 0, NULL, NULL },
};

static void
test_parse_table(void)
{
	size_t i;

	for (i = 0; i < sizeof(parse_cases) / sizeof(parse_cases[0]); i++) {
		const struct parse_case *c = &parse_cases[i];
		struct osp_pool *pool = osp_pool_new(NULL);
		struct osp_dns_result res;
		const char *error = NULL;
		char text[1024] = "";
		unsigned char *copy;
		bool good;
		int ret;

		/* an exact-size heap copy, so ASan sees any over-read */
		copy = osp_malloc(c->len + 1);
		memcpy(copy, c->pkt, c->len);
		ret = osp_dns_parse(pool, copy, c->len, c->qtype, &res, &error);
		if (ret == OSP_OK && res.n > 0)
			rr_text(&res.rr[0], text, sizeof(text));
		good = c->ok ? ret == OSP_OK && res.n == c->n &&
		    (c->text0 == NULL || strcmp(text, c->text0) == 0) &&
		    (c->canon == NULL ? res.canonname == NULL :
		    res.canonname != NULL &&
		    strcmp(res.canonname, c->canon) == 0) :
		    ret == OSP_EDNS && error != NULL && *error != '\0';
		if (!good)
			fprintf(stderr, "parse case \"%s\": ret=%d n=%zu "
			    "text=\"%s\" error=%s\n", c->name, ret,
			    ret == OSP_OK ? res.n : 0, text,
			    error != NULL ? error : "-");
		CU_ASSERT(good);
		osp_free(copy);
		osp_pool_free(pool);
	}
}

static void
test_parse_long_name_and_ttl(void)
{
	unsigned char pkt[600];
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_dns_result res;
	const char *error;
	size_t o = 0, i;

	/* 4 labels of 63 plus the root: 257 octets, over the 255 limit */
	memcpy(pkt, HDR("\x00"), 12);
	o = 12;
	for (i = 0; i < 4; i++) {
		pkt[o++] = 63;
		memset(pkt + o, 'a', 63);
		o += 63;
	}
	pkt[o++] = 0;
	memcpy(pkt + o, "\x00\x01\x00\x01", 4);
	CU_ASSERT(osp_dns_parse(pool, pkt, o + 4, OSP_DNS_A, &res, &error) ==
	    OSP_EDNS);
	/* 3 labels of 63 + one of 61: 255 octets exactly, accepted */
	pkt[12 + 3 * 64] = 61;
	memmove(pkt + 12 + 3 * 64 + 62, pkt + 12 + 4 * 64, 5);
	CU_ASSERT(osp_dns_parse(pool, pkt, 12 + 3 * 64 + 62 + 5, OSP_DNS_A,
	    &res, &error) == OSP_OK);
	CU_ASSERT_EQUAL(strlen(res.qname), 253);

	/* RFC 2181 §8: a TTL with the top bit set is zero */
	{
		static const char p[] = HDR("\x01") Q_A "\xc0\x0c\x00\x01"
		    "\x00\x01\x80\x00\x00\x01\x00\x04\x7f\x00\x00\x01";

		CU_ASSERT_FATAL(osp_dns_parse(pool, (const unsigned char *)p,
		    sizeof(p) - 1, OSP_DNS_A, &res, &error) == OSP_OK);
		CU_ASSERT_EQUAL_FATAL(res.n, 1);
		CU_ASSERT_EQUAL(res.rr[0].ttl, 0);
		CU_ASSERT_EQUAL(res.rcode, 0);
	}
	/* rcode and nxdomain come from the header */
	{
		static const char p[] = "\x00\x01\x81\x83\x00\x01\x00\x00"
		    "\x00\x00\x00\x00" Q_A;

		CU_ASSERT_FATAL(osp_dns_parse(pool, (const unsigned char *)p,
		    sizeof(p) - 1, OSP_DNS_A, &res, &error) == OSP_OK);
		CU_ASSERT_EQUAL(res.rcode, 3);
		CU_ASSERT(res.nxdomain);
	}
	osp_pool_free(pool);
}

/* Mutations of valid packets: whatever comes out, nothing may crash or
 * read outside the packet (run under ASan). */
static void
test_parse_mutations(void)
{
	static const char seed1[] = HDR("\x02") Q_A "\xc0\x0c\x00\x05" IN_TTL
	    "\x00\x04" "\x01" "b" "\xc0\x0e"
	    "\xc0\x24\x00\x01" IN_TTL "\x00\x04\x7f\x00\x00\x09";
	static const char seed2[] = HDR("\x01") Q_TXT "\xc0\x0c\x00\x10"
	    IN_TTL "\x00\x08" "\x03" "abc" "\x00" "\x02" "de";
	const char *seeds[] = { seed1, seed2 };
	size_t seedlen[] = { sizeof(seed1) - 1, sizeof(seed2) - 1 };
	uint16_t qtypes[] = { OSP_DNS_A, OSP_DNS_TXT };
	unsigned seed = 12345, ok = 0;
	int i, j;

	for (i = 0; i < 20000; i++) {
		int s = i & 1;
		size_t len = seedlen[s];
		unsigned char *p = osp_malloc(len);
		struct osp_pool *pool = osp_pool_new(NULL);
		struct osp_dns_result res;
		const char *error;

		memcpy(p, seeds[s], len);
		for (j = 0; j < 1 + (int)(rand_r(&seed) % 4); j++)
			p[rand_r(&seed) % len] = (unsigned char)rand_r(&seed);
		if (rand_r(&seed) % 4 == 0)
			len = rand_r(&seed) % len;
		if (osp_dns_parse(pool, p, len, qtypes[s], &res, &error) ==
		    OSP_OK)
			ok++;
		osp_pool_free(pool);
		osp_free(p);
	}
	/* some mutations stay valid (TTL, address octets) */
	CU_ASSERT(ok > 0);
}

static const struct osp_test live_tests[] = {
	OSP_TEST(test_type_names),
	OSP_TEST(test_parse_table),
	OSP_TEST(test_parse_long_name_and_ttl),
	OSP_TEST(test_parse_mutations),
	OSP_TEST(test_secure_addresses),
	OSP_TEST(test_secure_mx),
	OSP_TEST(test_secure_txt),
	OSP_TEST(test_secure_tlsa),
	OSP_TEST(test_secure_cname_ptr),
	OSP_TEST(test_nxdomain_nodata),
	OSP_TEST(test_bogus),
	OSP_TEST(test_insecure_without_anchor),
	OSP_TEST(test_test_zone_needs_option),
	OSP_TEST(test_cancel),
	OSP_TEST(test_callback_starts_lookup),
	OSP_TEST(test_timeout),
	OSP_TEST(test_deinit_outstanding),
	OSP_TEST(test_init_errors),
	OSP_TEST_END
};

static const struct osp_test offline_tests[] = {
	OSP_TEST(test_type_names),
	OSP_TEST(test_parse_table),
	OSP_TEST(test_parse_long_name_and_ttl),
	OSP_TEST(test_parse_mutations),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	const struct osp_test *tests = live_tests;
	int rc;

	if (osp_event_init(1) != OSP_OK) {
		fprintf(stderr, "test_dns: osp_event_init failed\n");
		return 99;
	}
	rc = fixture_start();
	if (rc == 77) {
		fprintf(stderr, "test_dns: nsd or ldns tools missing: only the "
		    "parser tests run\n");
		tests = offline_tests;
	} else if (rc != 0) {
		fprintf(stderr, "test_dns: the nsd fixture did not start "
		    "(exit %d)\n", rc);
		fixture_stop();
		return 1;
	}
	rc = osp_test_main(argc, argv, "dns", tests);
	osp_dns_deinit();
	fixture_stop();
	osp_event_deinit();
	return rc;
}
