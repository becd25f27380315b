/* SPDX-License-Identifier: ISC */
/* Unit tests of domains.yaml (loader errors with file:line:col, address
 * resolution, reload) and of credentials (crypt, SCRAM and CRAM-MD5
 * against the RFCs' published examples, auth.db contents). */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Loader                                                               */

static struct osp_accounts *
load_fixture(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *a = NULL;
	char *path;
	int rc;

	path = osp_malloc(strlen(osp_test_srcdir()) + 64);
	sprintf(path, "%s/tests/fixtures/accounts/domains.yaml",
	    osp_test_srcdir());
	rc = osp_accounts_load(path, &a, &errs);
	if (rc != OSP_OK)
		fprintf(stderr, "%s\n", errs.text.data);
	CU_ASSERT_EQUAL(rc, OSP_OK);
	CU_ASSERT_EQUAL(errs.n, 0);
	osp_conf_errs_deinit(&errs);
	osp_free(path);
	return a;
}

static void
test_load_valid(void)
{
	struct osp_accounts *a = load_fixture();
	const struct osp_account_conf *acc;
	const struct osp_domain_conf *d;
	const struct osp_alias_conf *al;
	const struct osp_dest_conf *dests;
	size_t n;

	CU_ASSERT_FATAL(a != NULL);
	d = osp_accounts_domains(a, &n);
	CU_ASSERT_EQUAL(n, 4);
	d = osp_accounts_domain(a, "BÜCHER.example");
	CU_ASSERT_FATAL(d != NULL);
	CU_ASSERT_STRING_EQUAL(d->name, "xn--bcher-kva.example");
	CU_ASSERT_STRING_EQUAL(d->unicode, "bücher.example");
	CU_ASSERT_STRING_EQUAL(d->catchall_account, "bob");
	d = osp_accounts_domain(a, "example.com");
	CU_ASSERT_FATAL(d != NULL);
	CU_ASSERT_STRING_EQUAL(d->separator, "+");
	CU_ASSERT_STRING_EQUAL(d->description, "Main domain");
	CU_ASSERT(!d->case_sensitive);
	CU_ASSERT(osp_accounts_is_local_domain(a, "xn--bcher-kva.EXAMPLE"));
	CU_ASSERT(osp_accounts_is_local_domain(a, "Other.Example"));
	CU_ASSERT(!osp_accounts_is_local_domain(a, "example.org"));
	CU_ASSERT(!osp_accounts_is_local_domain(a, "xn--zz.example"));

	osp_accounts_list(a, &n);
	CU_ASSERT_EQUAL(n, 4);
	acc = osp_accounts_account(a, "alice");
	CU_ASSERT_FATAL(acc != NULL);
	CU_ASSERT_STRING_EQUAL(acc->full_name, "Alice Example");
	CU_ASSERT_STRING_EQUAL(acc->domain, "example.com");
	CU_ASSERT_EQUAL(acc->quota, 0);
	CU_ASSERT_EQUAL(acc->max_outgoing_per_day, 1000);
	CU_ASSERT_EQUAL(acc->max_first_time_recipients_per_day, 200);
	acc = osp_accounts_account(a, "carol");
	CU_ASSERT_FATAL(acc != NULL);
	CU_ASSERT_EQUAL(acc->quota, 1024ull * 1024 * 1024);
	CU_ASSERT_EQUAL(acc->max_outgoing_per_day, 10);
	CU_ASSERT(osp_accounts_account(a, "nobody") == NULL);

	dests = osp_accounts_addresses_of(a, "alice", &n);
	CU_ASSERT_FATAL(n == 2);
	CU_ASSERT_STRING_EQUAL(dests[0].address, "alice@example.com");
	CU_ASSERT_STRING_EQUAL(dests[0].mailbox, "Inbox");
	CU_ASSERT_STRING_EQUAL(dests[1].address, "info@example.com");
	CU_ASSERT_STRING_EQUAL(dests[1].mailbox, "Info");
	dests = osp_accounts_addresses_of(a, "bob", &n);
	CU_ASSERT_FATAL(n == 2);
	CU_ASSERT_STRING_EQUAL(dests[0].address, "bob@xn--bcher-kva.example");
	CU_ASSERT_STRING_EQUAL(dests[1].address, "bob.smith@example.com");
	dests = osp_accounts_addresses_of(a, "carol", &n);
	CU_ASSERT_FATAL(n == 1);
	CU_ASSERT_STRING_EQUAL(dests[0].address, "Carol@case.example");
	CU_ASSERT(osp_accounts_addresses_of(a, "zed", &n) == NULL && n == 0);

	al = osp_accounts_aliases(a, &n);
	CU_ASSERT_FATAL(n == 1);
	CU_ASSERT_STRING_EQUAL(al->address, "team@example.com");
	CU_ASSERT_EQUAL(al->nmembers, 4);
	CU_ASSERT_EQUAL(al->post_allowed_by, OSP_ALIAS_POST_ANYONE);
	CU_ASSERT(al->list_members);
	osp_accounts_unref(a);
}

/* Every error class with its exact "file:line:col: key: message". */
static const struct {
	const char	*yaml;
	const char	*error;
} load_errors[] = {
	{ "domains:\n  exa_mple.com: {}\n",
	  "t.yaml:2:3: domains.exa_mple.com: invalid domain name" },
	{ "domains:\n  xn--zz.example: {}\n",
	  "t.yaml:2:3: domains.xn--zz.example: invalid internationalized "
	  "domain name" },
	{ "domains:\n  bücher.example: {}\n  xn--bcher-kva.example: {}\n",
	  "t.yaml:3:3: domains.xn--bcher-kva.example: same domain as "
	  "bücher.example" },
	{ "domains:\n  example.com:\n    catchall-acount: a\n",
	  "t.yaml:3:5: domains.example.com.catchall-acount: unknown key "
	  "(did you mean \"catchall-account\"?)" },
	{ "domains:\n  example.com:\n    localpart-catchall-separator: "
	  "\"+@\"\n",
	  "t.yaml:3:35: domains.example.com.localpart-catchall-separator: "
	  "must not contain @" },
	{ "domains:\n  example.com:\n    catchall-account: zed\n",
	  "t.yaml:3:23: domains.example.com.catchall-account: no account "
	  "named \"zed\"" },
	{ "domains:\n  example.com: {}\npostmaster-account: root\n",
	  "t.yaml:3:21: postmaster-account: no account named \"root\"" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n    full-name: A\n",
	  "t.yaml:4:3: accounts.a.domain: missing required key" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: nope.example\n",
	  "t.yaml:5:13: accounts.a.domain: domain nope.example is not "
	  "configured in domains:" },
	{ "domains:\n  example.com: {}\naccounts:\n  a/b:\n"
	  "    domain: example.com\n",
	  "t.yaml:4:3: accounts.a/b: invalid account name" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n"
	  "      x@else.example: {}\n",
	  "t.yaml:7:7: accounts.a.destinations.x@else.example: domain "
	  "else.example is not configured in domains:" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n"
	  "      \"x y\": {}\n",
	  "t.yaml:7:7: accounts.a.destinations.x y: x y@example.com: "
	  "invalid localpart" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n      x:\n"
	  "        mailbox: /Inbox\n",
	  "t.yaml:7:7: accounts.a.destinations.x: invalid mailbox name "
	  "\"/Inbox\"" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n      x: {}\n"
	  "  b:\n    domain: example.com\n    destinations:\n"
	  "      X@Example.com: {}\n",
	  "t.yaml:11:7: accounts.b.destinations.X@Example.com: address "
	  "x@example.com is configured twice" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    max-outgoing-per-day: -1\n",
	  "t.yaml:6:27: accounts.a.max-outgoing-per-day: " },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n      x: {}\n"
	  "aliases:\n  team:\n    members: [x@example.com]\n",
	  "t.yaml:9:3: aliases.team: alias must be a full address" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n      x: {}\n"
	  "aliases:\n  x@example.com:\n    members: [x@example.com]\n",
	  "t.yaml:9:3: aliases.x@example.com: address x@example.com is "
	  "already an account's destination or another alias" },
	{ "domains:\n  example.com: {}\naccounts:\n  a:\n"
	  "    domain: example.com\n    destinations:\n      x: {}\n"
	  "aliases:\n  t@example.com:\n"
	  "    members: [x@example.com, y@example.com]\n",
	  "t.yaml:10:30: aliases.t@example.com.members[1]: y@example.com is "
	  "not an account's destination" },
	{ "domains:\n  example.com: {}\naliases:\n  t@example.com:\n"
	  "    members: []\n",
	  "t.yaml:5:14: aliases.t@example.com.members: must not be empty" },
	{ "domains:\n  example.com: {}\naliases:\n  t@example.com:\n"
	  "    members: [a@example.com]\n    post-allowed-by: everyone\n",
	  "t.yaml:6:22: aliases.t@example.com.post-allowed-by: " },
	{ "domains:\n  example.com: {\n",
	  "t.yaml:3:1: " },
	{ "domains: [example.com]\n",
	  "t.yaml:1:10: domains: expected a mapping, got a list" },
};

static void
test_load_errors(void)
{
	struct osp_conf_errs errs;
	struct osp_accounts *a;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(load_errors) / sizeof(load_errors[0]); i++) {
		memset(&errs, 0, sizeof(errs));
		a = NULL;
		rc = osp_accounts_load_string("t.yaml", load_errors[i].yaml,
		    &a, &errs);
		CU_ASSERT_EQUAL(rc, OSP_ECONFIG);
		CU_ASSERT(a == NULL);
		CU_ASSERT(errs.n >= 1);
		if (errs.text.data == NULL || strncmp(errs.text.data,
		    load_errors[i].error, strlen(load_errors[i].error)) != 0) {
			fprintf(stderr, "case %zu: want \"%s...\"\n"
			    " got \"%s\"\n", i, load_errors[i].error,
			    errs.text.data != NULL ? errs.text.data : "(none)");
			CU_FAIL("error text");
		}
		osp_conf_errs_deinit(&errs);
	}
}

static void
test_load_file_errors(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *a;
	const char *dir = osp_test_tmpdir();
	char *path;
	int rc;

	path = osp_malloc(strlen(dir) + 32);
	sprintf(path, "%s/absent.yaml", dir);
	rc = osp_accounts_load(path, &a, &errs);
	CU_ASSERT_EQUAL(rc, -ENOENT);
	CU_ASSERT(a == NULL);
	CU_ASSERT(strstr(errs.text.data, "absent.yaml: cannot read") != NULL);
	osp_conf_errs_deinit(&errs);
	osp_free(path);

	/* An empty file is an empty configuration. */
	memset(&errs, 0, sizeof(errs));
	path = osp_test_write_file(dir, "empty.yaml", "# nothing yet\n");
	CU_ASSERT_EQUAL(osp_accounts_load(path, &a, &errs), OSP_OK);
	CU_ASSERT_FATAL(a != NULL);
	CU_ASSERT(!osp_accounts_is_local_domain(a, "example.com"));
	osp_accounts_unref(a);
	osp_conf_errs_deinit(&errs);
	osp_free(path);
}

/* ------------------------------------------------------------------ */
/* Resolution                                                            */

static const struct {
	const char	*address;
	int		 rc;
	const char	*targets;	/* "account/mailbox account/mailbox" */
} resolve_table[] = {
	/* exact, case-insensitive localparts and domains */
	{ "alice@example.com", OSP_OK, "alice/Inbox" },
	{ "ALICE@Example.COM", OSP_OK, "alice/Inbox" },
	{ "info@example.com", OSP_OK, "alice/Info" },
	{ "bob.smith@EXAMPLE.com", OSP_OK, "bob/Inbox" },
	/* localpart catch-all separator */
	{ "alice+tag@example.com", OSP_OK, "alice/Inbox" },
	{ "Alice+x+y@example.com", OSP_OK, "alice/Inbox" },
	{ "info+lists@example.com", OSP_OK, "alice/Info" },
	{ "+tag@example.com", -ENOENT, NULL },
	/* IDNA: U-label and A-label, any case */
	{ "bob@bücher.example", OSP_OK, "bob/Inbox" },
	{ "bob@BÜCHER.example", OSP_OK, "bob/Inbox" },
	{ "bob@xn--bcher-kva.example", OSP_OK, "bob/Inbox" },
	{ "bob@XN--BCHER-KVA.EXAMPLE", OSP_OK, "bob/Inbox" },
	/* domain catch-all (no separator there) */
	{ "anything@bücher.example", OSP_OK, "bob/Inbox" },
	{ "bob+x@xn--bcher-kva.example", OSP_OK, "bob/Inbox" },
	/* alias: members expanded, duplicates removed */
	{ "team@example.com", OSP_OK, "alice/Inbox bob/Inbox alice/Info" },
	{ "Team+x@example.com", OSP_OK, "alice/Inbox bob/Inbox alice/Info" },
	/* postmaster: the domain's account, else the global one; before
	 * the catch-all */
	{ "postmaster@example.com", OSP_OK, "admin/Inbox" },
	{ "PostMaster@case.example", OSP_OK, "admin/Inbox" },
	{ "postmaster@bücher.example", OSP_OK, "admin/Inbox" },
	{ "postmaster@other.example", OSP_OK, "admin/Inbox" },
	/* case-sensitive domain */
	{ "Carol@case.example", OSP_OK, "carol/Inbox" },
	{ "carol@case.example", -ENOENT, NULL },
	{ "CAROL@CASE.example", -ENOENT, NULL },
	/* unknown local, foreign, malformed */
	{ "nobody@example.com", -ENOENT, NULL },
	{ "x@other.example", -ENOENT, NULL },
	{ "alice@example.org", OSP_DECLINED, NULL },
	{ "alice@sub.example.com", OSP_DECLINED, NULL },
	{ "alice", -EINVAL, NULL },
	{ "@example.com", -EINVAL, NULL },
	{ "a b@example.com", -EINVAL, NULL },
	{ "alice@", -EINVAL, NULL },
	{ "alice@exa_mple.com", -EINVAL, NULL },
};

static void
test_resolve(void)
{
	struct osp_accounts *a = load_fixture();
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_rcpt *r;
	struct osp_buf got = { 0 };
	const char *err;
	size_t i, j, n;
	int rc;

	CU_ASSERT_FATAL(a != NULL);
	for (i = 0; i < sizeof(resolve_table) / sizeof(resolve_table[0]);
	    i++) {
		err = NULL;
		rc = osp_accounts_resolve(a, resolve_table[i].address, pool,
		    &r, &n, &err);
		osp_buf_reset(&got);
		osp_buf_puts(&got, "");
		for (j = 0; rc == OSP_OK && j < n; j++)
			osp_buf_printf(&got, "%s%s/%s", j > 0 ? " " : "",
			    r[j].account, r[j].mailbox);
		if (rc != resolve_table[i].rc || (rc == OSP_OK &&
		    strcmp(got.data, resolve_table[i].targets) != 0)) {
			fprintf(stderr, "%s: rc %d (%s) got \"%s\"\n",
			    resolve_table[i].address, rc, err ? err : "",
			    got.data);
			CU_FAIL("resolution");
		}
		if (rc != OSP_OK)
			CU_ASSERT(err != NULL);
	}
	/* The matched address travels with the target. */
	CU_ASSERT_EQUAL(osp_accounts_resolve(a, "alice+x@example.com", pool,
	    &r, &n, NULL), OSP_OK);
	CU_ASSERT_STRING_EQUAL(r[0].address, "alice@example.com");
	CU_ASSERT_EQUAL(osp_accounts_resolve(a, "x@bücher.example", pool,
	    &r, &n, NULL), OSP_OK);
	CU_ASSERT_STRING_EQUAL(r[0].address, "x@bücher.example");
	/* Nothing loaded yet: no local domains. */
	CU_ASSERT_EQUAL(osp_accounts_resolve(NULL, "alice@example.com", pool,
	    &r, &n, NULL), OSP_DECLINED);
	CU_ASSERT(!osp_accounts_is_local_domain(NULL, "example.com"));
	CU_ASSERT(osp_accounts_account(NULL, "alice") == NULL);
	osp_buf_deinit(&got);
	osp_pool_free(pool);
	osp_accounts_unref(a);
}

/* Remote input: random bytes around '@', separators and IDNA prefixes,
 * and a huge address, never crash and never resolve to nonsense. */
static void
test_resolve_hostile(void)
{
	static const char *const parts[] = { "@", "+", "alice", "xn--",
	    "example.com", "\xc3\xbc", "\xff", ".", "-", "postmaster",
	    "team", " ", "\"", "bücher.example", "\x80\x80" };
	struct osp_accounts *a = load_fixture();
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_rcpt *r;
	const char *acc;
	uint32_t seed = 12345;
	char buf[256], *big;
	size_t i, j, len, n;
	int rc;

	CU_ASSERT_FATAL(a != NULL);
	for (i = 0; i < 20000; i++) {
		len = 0;
		buf[0] = '\0';
		for (j = 0; j < 1 + i % 7; j++) {
			seed = seed * 1103515245 + 12345;
			if ((seed >> 16) % 4 == 0 && len + 2 < sizeof(buf)) {
				buf[len++] = (char)(1 + (seed >> 8) % 255);
				buf[len] = '\0';
				continue;
			}
			osp_strlcpy(buf + len, parts[(seed >> 16) %
			    (sizeof(parts) / sizeof(parts[0]))],
			    sizeof(buf) - len);
			len = strlen(buf);
		}
		rc = osp_accounts_resolve(a, buf, pool, &r, &n, NULL);
		CU_ASSERT(rc == OSP_OK || rc == -ENOENT || rc == OSP_DECLINED ||
		    rc == -EINVAL);
		if (rc == OSP_OK)
			CU_ASSERT(n >= 1 && r[0].account != NULL);
		(void)osp_accounts_login_account(a, buf, &acc);
		(void)osp_accounts_may_send_as(a, "alice", buf);
	}
	big = osp_malloc(100001);
	memset(big, 'a', 100000);
	big[100000] = '\0';
	big[50000] = '@';
	CU_ASSERT_EQUAL(osp_accounts_resolve(a, big, pool, &r, &n, NULL),
	    -EINVAL);
	memcpy(big + 49990, "alice@exa", 9);
	CU_ASSERT(osp_accounts_resolve(a, big + 49990, pool, &r, &n, NULL) !=
	    OSP_OK);
	osp_free(big);
	osp_pool_free(pool);
	osp_accounts_unref(a);
}

static void
test_login_and_from(void)
{
	struct osp_accounts *a = load_fixture();
	const char *acc;

	CU_ASSERT_FATAL(a != NULL);
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "alice", &acc), OSP_OK);
	CU_ASSERT_STRING_EQUAL(acc, "alice");
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "Info@Example.com",
	    &acc), OSP_OK);
	CU_ASSERT_STRING_EQUAL(acc, "alice");
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "bob@bücher.example",
	    &acc), OSP_OK);
	CU_ASSERT_STRING_EQUAL(acc, "bob");
	/* Only exact destinations log in. */
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "alice+x@example.com",
	    &acc), -ENOENT);
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "team@example.com",
	    &acc), -ENOENT);
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "x@bücher.example",
	    &acc), -ENOENT);
	CU_ASSERT_EQUAL(osp_accounts_login_account(a, "Alice", &acc),
	    -ENOENT);
	CU_ASSERT(acc == NULL);

	CU_ASSERT(osp_accounts_may_send_as(a, "alice", "alice@example.com"));
	CU_ASSERT(osp_accounts_may_send_as(a, "alice",
	    "Alice+news@example.com"));
	CU_ASSERT(osp_accounts_may_send_as(a, "bob",
	    "bob@xn--bcher-kva.example"));
	CU_ASSERT(!osp_accounts_may_send_as(a, "bob", "alice@example.com"));
	CU_ASSERT(!osp_accounts_may_send_as(a, "alice", "team@example.com"));
	CU_ASSERT(!osp_accounts_may_send_as(a, "bob", "x@bücher.example"));
	CU_ASSERT(!osp_accounts_may_send_as(a, "alice", "alice@example.org"));
	osp_accounts_unref(a);
}

static void
test_canon(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	const char *c, *err;

	CU_ASSERT_EQUAL(osp_accounts_canon_domain(pool, "Bücher.Example", &c,
	    &err), OSP_OK);
	CU_ASSERT_STRING_EQUAL(c, "xn--bcher-kva.example");
	CU_ASSERT_EQUAL(osp_accounts_canon_domain(pool, "", &c, &err),
	    -EINVAL);
	CU_ASSERT_EQUAL(osp_accounts_canon_domain(pool, "a..b", &c, &err),
	    -EINVAL);
	CU_ASSERT_EQUAL(osp_accounts_canon_address(pool,
	    "Üser@BÜCHER.example", &c, &err), OSP_OK);
	CU_ASSERT_STRING_EQUAL(c, "Üser@xn--bcher-kva.example");
	CU_ASSERT_EQUAL(osp_accounts_canon_address(pool, "nodomain", &c,
	    &err), -EINVAL);
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* Reload on change                                                      */

static const char *watch_path;
static int watch_step;
static struct osp_timer *watch_timer;

static const char watch_v1[] =
    "domains:\n  example.com: {}\naccounts:\n  one:\n"
    "    domain: example.com\n";
static const char watch_v2[] =
    "domains:\n  example.com: {}\naccounts:\n  two:\n"
    "    domain: example.com\n";

static void
write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	CU_ASSERT_FATAL(f != NULL);
	fputs(text, f);
	fclose(f);
}

static void
watch_check(void *arg)
{
	struct osp_accounts *cur = osp_accounts_current();

	(void)arg;
	switch (watch_step++) {
	case 0:
		/* SIGHUP path with an invalid file: the old snapshot stays. */
		write_text(watch_path, "domains:\n  example.com: {}\n"
		    "accounts:\n  x:\n    domain: nope.example\n");
		CU_ASSERT_EQUAL(osp_accounts_reload(), OSP_ECONFIG);
		CU_ASSERT(osp_accounts_current() == cur);
		CU_ASSERT(osp_accounts_account(cur, "one") != NULL);
		/* Then a valid change, picked up by the 2 s poll. */
		write_text(watch_path, watch_v2);
		osp_timer_add(watch_timer, 2300);
		return;
	default:
		CU_ASSERT(osp_accounts_account(cur, "one") == NULL);
		CU_ASSERT(osp_accounts_account(cur, "two") != NULL);
		osp_event_exit();
	}
}

static void
test_watch(void)
{
	struct osp_accounts *held;

	watch_path = osp_test_write_file(osp_test_tmpdir(), "watch.yaml",
	    watch_v1);
	CU_ASSERT_FATAL(osp_event_init(1) == OSP_OK);
	CU_ASSERT_EQUAL(osp_accounts_watch_start(watch_path), OSP_OK);
	held = osp_accounts_ref(osp_accounts_current());
	watch_timer = osp_timer_new(watch_check, NULL);
	osp_timer_add(watch_timer, 10);
	osp_event_run();
	CU_ASSERT_EQUAL(watch_step, 2);
	/* A reference taken before the reload still reads the old data. */
	CU_ASSERT(osp_accounts_account(held, "one") != NULL);
	osp_accounts_unref(held);
	/* SIGHUP path: an explicit reload of an unchanged file. */
	CU_ASSERT_EQUAL(osp_accounts_reload(), OSP_OK);
	osp_timer_free(watch_timer);
	osp_accounts_watch_stop();
	osp_accounts_set_current(NULL);
	osp_event_deinit();
	osp_free((char *)watch_path);
}

/* ------------------------------------------------------------------ */
/* Credentials                                                           */

static void
unb64(const char *s, unsigned char *out, size_t *len)
{
	gnutls_datum_t in = { (unsigned char *)(uintptr_t)s,
	    (unsigned)strlen(s) }, dec;

	CU_ASSERT_FATAL(gnutls_base64_decode2(&in, &dec) == 0);
	memcpy(out, dec.data, dec.size);
	*len = dec.size;
	gnutls_free(dec.data);
}

/* RFC 5802 §5 (SHA-1) and RFC 7677 §3 (SHA-256): the keys derived from
 * "pencil" must verify the published ClientProof and produce the
 * published ServerSignature. */
static void
scram_vector(const char *hash, const char *salt_b64, const char *cnonce,
    const char *snonce, const char *proof_b64, const char *sig_b64)
{
	unsigned char salt[64], proof[64], sig[64], mysig[64];
	size_t salt_len, proof_len, sig_len;
	struct osp_auth_scram k;
	char *am;

	unb64(salt_b64, salt, &salt_len);
	unb64(proof_b64, proof, &proof_len);
	unb64(sig_b64, sig, &sig_len);
	CU_ASSERT_EQUAL_FATAL(osp_auth_scram_derive(hash, "pencil", 6, salt,
	    salt_len, 4096, &k), OSP_OK);
	am = osp_malloc(512);
	snprintf(am, 512, "n=user,r=%s,r=%s%s,s=%s,i=4096,c=biws,r=%s%s",
	    cnonce, cnonce, snonce, salt_b64, cnonce, snonce);
	CU_ASSERT_EQUAL(osp_auth_scram_verify_proof(&k, am, strlen(am), proof,
	    proof_len, mysig), OSP_OK);
	CU_ASSERT_EQUAL(sig_len, k.key_len);
	CU_ASSERT(memcmp(sig, mysig, sig_len) == 0);
	/* A flipped bit in the proof fails. */
	proof[3] ^= 0x10;
	CU_ASSERT_EQUAL(osp_auth_scram_verify_proof(&k, am, strlen(am), proof,
	    proof_len, NULL), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_scram_verify_proof(&k, am, strlen(am), proof,
	    proof_len - 1, NULL), OSP_EAUTH);
	osp_free(am);
}

/* RFC 8265 OpaqueString (SASLprep's successor): non-ASCII spaces become
 * ASCII spaces and the result is NFC, so equivalent spellings of one
 * password give the same SCRAM keys; different passwords do not. */
static void
test_scram_normalize(void)
{
	static const unsigned char salt[16] = "0123456789abcdef";
	struct osp_auth_scram a, b;

	CU_ASSERT_FATAL(osp_auth_scram_derive("SHA-256", "caf\xc3\xa9 x", 7,
	    salt, sizeof(salt), 4096, &a) == OSP_OK);
	CU_ASSERT_FATAL(osp_auth_scram_derive("SHA-256", "cafe\xcc\x81\xc2\xa0x",
	    9, salt, sizeof(salt), 4096, &b) == OSP_OK);
	CU_ASSERT(memcmp(a.stored_key, b.stored_key, a.key_len) == 0);
	CU_ASSERT(memcmp(a.server_key, b.server_key, a.key_len) == 0);
	CU_ASSERT_FATAL(osp_auth_scram_derive("SHA-256", "cafe x", 6, salt,
	    sizeof(salt), 4096, &b) == OSP_OK);
	CU_ASSERT(memcmp(a.stored_key, b.stored_key, a.key_len) != 0);
}

static void
test_scram_vectors(void)
{
	scram_vector("SHA-1", "QSXCR+Q6sek8bf92", "fyko+d2lbbFgONRv9qkxdawL",
	    "3rfcNHYJY1ZVvWVs7j", "v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
	    "rmF9pqV8S7suAoZWja4dJRkFsKQ=");
	scram_vector("SHA-256", "W22ZaJ0SNY7soEsUEjb6gQ==",
	    "rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
	    "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
	    "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
}

static void
hex(const unsigned char *p, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		sprintf(out + i * 2, "%02x", p[i]);
}

/* RFC 2195 §2's example, then the precomputed state against GnuTLS's
 * HMAC-MD5 over key and message lengths around MD5's block edges. */
static void
test_cram_md5(void)
{
	static const char chal[] = "<1896.697170952@postoffice.reston.mci.net>";
	static const size_t lens[] = { 0, 1, 8, 55, 56, 63, 64, 65, 119, 120,
	    200, 1000 };
	unsigned char d[16], ref[16], buf[1000];
	uint32_t state[8];
	char h[33];
	size_t i, j;

	osp_auth_cram_md5_state("tanstaaftanstaaf", 16, state);
	osp_auth_cram_md5_hmac(state, chal, strlen(chal), d);
	hex(d, 16, h);
	CU_ASSERT_STRING_EQUAL(h, "b913a602c7eda7a495b4e6e7334d3890");

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	for (i = 0; i < sizeof(lens) / sizeof(lens[0]); i++)
		for (j = 0; j < sizeof(lens) / sizeof(lens[0]); j++) {
			osp_auth_cram_md5_state((const char *)buf, lens[i],
			    state);
			osp_auth_cram_md5_hmac(state, buf + 3, lens[j] > 990 ?
			    990 : lens[j], d);
			CU_ASSERT_FATAL(gnutls_hmac_fast(GNUTLS_MAC_MD5, buf,
			    lens[i], buf + 3, lens[j] > 990 ? 990 : lens[j],
			    ref) == 0);
			if (memcmp(d, ref, 16) != 0) {
				fprintf(stderr, "key %zu msg %zu\n", lens[i],
				    lens[j]);
				CU_FAIL("HMAC-MD5 mismatch");
			}
		}
}

/* Whether needle occurs in any of dir/auth.db* (database, WAL). */
static bool
in_db_files(const char *dir, const char *needle)
{
	static const char *const sfx[] = { "", "-wal", "-shm", "-journal" };
	char path[1024];
	unsigned char *data;
	size_t i, n;
	FILE *f;
	bool found = false;

	for (i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "%s/auth.db%s", dir, sfx[i]);
		if ((f = fopen(path, "rb")) == NULL)
			continue;
		data = osp_malloc(64 << 20);
		n = fread(data, 1, 64 << 20, f);
		fclose(f);
		if (memmem(data, n, needle, strlen(needle)) != NULL)
			found = true;
		osp_free(data);
	}
	return found;
}

static void
test_auth_db(void)
{
	static const char pw[] = "Corr3ct-Horse_Battery!";
	static const char chal[] = "<42.1700000000@mail.example.com>";
	const char *dir = osp_test_tmpdir(), *err = NULL;
	struct osp_auth_scram k, k2;
	struct osp_auth *auth;
	unsigned char d[16];
	uint32_t state[8];
	char h[33];
	struct stat st;
	char path[1024];
	bool has;

	CU_ASSERT_FATAL(osp_auth_open(dir, &auth, &err) == OSP_OK);
	snprintf(path, sizeof(path), "%s/auth.db", dir);
	CU_ASSERT(stat(path, &st) == 0 && (st.st_mode & 077) == 0);

	CU_ASSERT_EQUAL(osp_auth_has_password(auth, "alice", &has, &err),
	    OSP_OK);
	CU_ASSERT(!has);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", pw, strlen(pw),
	    &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_scram_get(auth, "alice", "SCRAM-SHA-256", &k,
	    &err), -ENOENT);

	CU_ASSERT_EQUAL_FATAL(osp_auth_set_password(auth, "alice", pw,
	    strlen(pw), &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_has_password(auth, "alice", &has, &err),
	    OSP_OK);
	CU_ASSERT(has);
	/* crypt round trip; wrong, truncated, extended, other account */
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", pw, strlen(pw),
	    &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", "corr3ct-Horse_"
	    "Battery!", strlen(pw), &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", pw,
	    strlen(pw) - 1, &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", "Corr3ct-Horse_"
	    "Battery!!", strlen(pw) + 1, &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "bob", pw, strlen(pw),
	    &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", "a\0b", 3, &err),
	    OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_set_password(auth, "x", "a\0bcdefgh", 9,
	    &err), -EINVAL);

	/* SCRAM keys as stored equal a fresh derivation with their salt. */
	CU_ASSERT_EQUAL_FATAL(osp_auth_scram_get(auth, "alice",
	    "SCRAM-SHA-256-PLUS", &k, &err), OSP_OK);
	CU_ASSERT_EQUAL(k.salt_len, OSP_AUTH_SCRAM_SALT);
	CU_ASSERT_EQUAL(k.iterations, 4096);
	CU_ASSERT_EQUAL(k.key_len, 32);
	CU_ASSERT_EQUAL(osp_auth_scram_derive("SHA-256", pw, strlen(pw),
	    k.salt, k.salt_len, k.iterations, &k2), OSP_OK);
	CU_ASSERT(memcmp(k.stored_key, k2.stored_key, 32) == 0);
	CU_ASSERT(memcmp(k.server_key, k2.server_key, 32) == 0);
	CU_ASSERT_EQUAL_FATAL(osp_auth_scram_get(auth, "alice", "scram-sha-1",
	    &k, &err), OSP_OK);
	CU_ASSERT_EQUAL(k.key_len, 20);
	CU_ASSERT_EQUAL(osp_auth_scram_derive("SHA-1", pw, strlen(pw),
	    k.salt, k.salt_len, k.iterations, &k2), OSP_OK);
	CU_ASSERT(memcmp(k.stored_key, k2.stored_key, 20) == 0);
	CU_ASSERT(memcmp(k.server_key, k2.server_key, 20) == 0);
	CU_ASSERT_EQUAL(osp_auth_scram_get(auth, "alice", "SCRAM-SHA-512",
	    &k, &err), -EINVAL);

	/* CRAM-MD5 from the stored state. */
	osp_auth_cram_md5_state(pw, strlen(pw), state);
	osp_auth_cram_md5_hmac(state, chal, strlen(chal), d);
	hex(d, 16, h);
	CU_ASSERT_EQUAL(osp_auth_cram_md5_verify(auth, "alice", chal,
	    strlen(chal), h, &err), OSP_OK);
	h[0] = h[0] == 'a' ? 'b' : 'a';
	CU_ASSERT_EQUAL(osp_auth_cram_md5_verify(auth, "alice", chal,
	    strlen(chal), h, &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_cram_md5_verify(auth, "alice", chal,
	    strlen(chal), "zz", &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_cram_md5_verify(auth, "bob", chal,
	    strlen(chal), h, &err), OSP_EAUTH);

	/* A new password replaces every form. */
	CU_ASSERT_EQUAL(osp_auth_set_password(auth, "alice", "another pass",
	    12, &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", pw, strlen(pw),
	    &err), OSP_EAUTH);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", "another pass",
	    12, &err), OSP_OK);
	osp_auth_close(auth);

	/* Never the password, in the database or its WAL. */
	CU_ASSERT(!in_db_files(dir, pw));
	CU_ASSERT(!in_db_files(dir, "another pass"));
	CU_ASSERT(in_db_files(dir, "alice"));	/* the check can see rows */

	CU_ASSERT_FATAL(osp_auth_open(dir, &auth, &err) == OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", "another pass",
	    12, &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_remove(auth, "alice", &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_verify_plain(auth, "alice", "another pass",
	    12, &err), OSP_EAUTH);
	osp_auth_close(auth);
}

static void
test_mem_equal(void)
{
	CU_ASSERT(osp_auth_mem_equal("abc", "abc", 3));
	CU_ASSERT(!osp_auth_mem_equal("abc", "abd", 3));
	CU_ASSERT(osp_auth_mem_equal("", "", 0));
}

static const struct osp_test tests[] = {
	OSP_TEST(test_load_valid),
	OSP_TEST(test_load_errors),
	OSP_TEST(test_load_file_errors),
	OSP_TEST(test_resolve),
	OSP_TEST(test_resolve_hostile),
	OSP_TEST(test_login_and_from),
	OSP_TEST(test_canon),
	OSP_TEST(test_watch),
	OSP_TEST(test_scram_vectors),
	OSP_TEST(test_scram_normalize),
	OSP_TEST(test_cram_md5),
	OSP_TEST(test_auth_db),
	OSP_TEST(test_mem_equal),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	osp_log_set_level(OSP_LOG_ERR);
	return osp_test_main(argc, argv, "accounts", tests);
}
