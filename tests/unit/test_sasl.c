/* SPDX-License-Identifier: ISC */
/* SASL: every built-in mechanism through the real exchange API (steps on
 * the worker pool, the loop running) against auth.db, RFC 5802 / 7677
 * vectors, channel binding over real TLS connections, EXTERNAL. */
#include "core.h"
#include "io_int.h"
#include "sasl_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <sqlite3.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* Fixture: loop, auth.db, domains.yaml snapshot, certificates          */

static const char accounts_yaml[] =
	"domains:\n"
	"  example.com: {}\n"
	"accounts:\n"
	"  alice:\n"
	"    domain: example.com\n"
	"    destinations:\n"
	"      alice: {}\n"
	"      a.l@example.com: {}\n"
	"  bob:\n"
	"    domain: example.com\n"
	"    destinations:\n"
	"      bob: {}\n"
	"  user:\n"
	"    domain: example.com\n"
	"    destinations:\n"
	"      user: {}\n";

#define ALICE_PW	"correct horse"

static struct {
	bool		 ok;
	const char	*dir;
	struct osp_auth	*auth;
	char		*srv_cert, *srv_key, *c1_cert, *c1_key, *c2_cert,
			*c2_key;
} fx;


/* base64 of a string, heap. */
static char *
b64(const void *p, size_t len)
{
	struct osp_buf b = { 0 };

	osp_base64_encode(p, len, &b);
	if (b.data == NULL)
		return strdup("");
	return b.data;
}

/* Stores SCRAM keys with a given salt for `account` (the RFC vectors
 * need their salt), in auth.c's stored form. */
static void
set_scram_salt(const char *account, const char *hash, const char *pw,
    const char *salt_b64)
{
	struct osp_auth_scram k;
	struct osp_base64_dec d;
	struct osp_buf salt = { 0 };
	char *s1, *s2, *s3, *val, *path;
	sqlite3 *db;
	sqlite3_stmt *st;

	osp_base64_dec_init(&d);
	osp_base64_decode(&d, salt_b64, strlen(salt_b64), &salt);
	CU_ASSERT_FATAL(osp_auth_scram_derive(hash, pw, strlen(pw),
	    (unsigned char *)salt.data, salt.len, 4096, &k) == OSP_OK);
	s1 = b64(k.salt, k.salt_len);
	s2 = b64(k.stored_key, k.key_len);
	s3 = b64(k.server_key, k.key_len);
	if (asprintf(&val, "4096,%s,%s,%s", s1, s2, s3) < 0)
		abort();
	path = osp_test_path(fx.dir, "auth.db");
	CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	CU_ASSERT_FATAL(sqlite3_prepare_v2(db, strcmp(hash, "SHA-1") == 0 ?
	    "UPDATE credentials SET scram_sha1 = ? WHERE account = ?" :
	    "UPDATE credentials SET scram_sha256 = ? WHERE account = ?", -1,
	    &st, NULL) == SQLITE_OK);
	sqlite3_bind_text(st, 1, val, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC);
	CU_ASSERT(sqlite3_step(st) == SQLITE_DONE);
	CU_ASSERT(sqlite3_changes(db) == 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(s1);
	free(s2);
	free(s3);
	free(val);
	free(path);
	osp_buf_deinit(&salt);
}

static void
setup(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *acc = NULL;
	const char *err = NULL;

	osp_event_deinit();
	CU_ASSERT_FATAL(osp_event_init(2) == OSP_OK);
	if (fx.ok)
		return;
	CU_ASSERT_FATAL(osp_sasl_builtin_init() == OSP_OK);
	fx.dir = osp_test_tmpdir();
	CU_ASSERT_FATAL(osp_auth_open(fx.dir, &fx.auth, &err) == OSP_OK);
	osp_auth_set_current(fx.auth);
	CU_ASSERT_FATAL(osp_auth_set_password(fx.auth, "alice", ALICE_PW,
	    strlen(ALICE_PW), &err) == OSP_OK);
	CU_ASSERT_FATAL(osp_auth_set_password(fx.auth, "user", "pencil", 6,
	    &err) == OSP_OK);
	/* RFC 5802 §5 and RFC 7677 §3 salts for user/pencil. */
	set_scram_salt("user", "SHA-1", "pencil", "QSXCR+Q6sek8bf92");
	set_scram_salt("user", "SHA-256", "pencil",
	    "W22ZaJ0SNY7soEsUEjb6gQ==");
	if (osp_accounts_load_string("domains.yaml", accounts_yaml, &acc,
	    &errs) != OSP_OK)
		fprintf(stderr, "%s\n", errs.text.data);
	osp_conf_errs_deinit(&errs);
	CU_ASSERT_FATAL(acc != NULL);
	osp_accounts_set_current(acc);

	/* A self-signed server certificate and two self-signed client
	 * certificates (EXTERNAL matches keys, not CAs). */
	free(osp_test_write_file(fx.dir, "srv.tmpl",
	    "cn = \"localhost\"\ndns_name = \"localhost\"\n"
	    "tls_www_server\nsigning_key\nexpiration_days = 30\n"));
	free(osp_test_write_file(fx.dir, "cli.tmpl",
	    "cn = \"alice\"\ntls_www_client\nsigning_key\n"
	    "expiration_days = 30\n"));
	CU_ASSERT_FATAL(osp_test_sh("cd '%s' && ("
	    "certtool -p --key-type ecdsa --outfile srv.key && "
	    "certtool -s --load-privkey srv.key --template srv.tmpl "
	    "--outfile srv.pem && "
	    "certtool -p --key-type ecdsa --outfile c1.key && "
	    "certtool -s --load-privkey c1.key --template cli.tmpl "
	    "--outfile c1.pem && "
	    "certtool -p --key-type ecdsa --outfile c2.key && "
	    "certtool -s --load-privkey c2.key --template cli.tmpl "
	    "--outfile c2.pem) >certtool.log 2>&1", fx.dir) == 0);
	fx.srv_cert = osp_test_path(fx.dir, "srv.pem");
	fx.srv_key = osp_test_path(fx.dir, "srv.key");
	fx.c1_cert = osp_test_path(fx.dir, "c1.pem");
	fx.c1_key = osp_test_path(fx.dir, "c1.key");
	fx.c2_cert = osp_test_path(fx.dir, "c2.pem");
	fx.c2_key = osp_test_path(fx.dir, "c2.key");
	fx.ok = true;
}

/* ------------------------------------------------------------------ */
/* Running steps on the loop                                            */

static bool timed_out;

static void
guard_cb(void *arg)
{
	(void)arg;
	timed_out = true;
	osp_event_exit();
}

static void
run_loop(uint64_t ms)
{
	struct osp_timer *g = osp_timer_new(guard_cb, NULL);

	timed_out = false;
	osp_timer_add(g, ms);
	osp_event_run();
	osp_timer_free(g);
}

struct result {
	int	 calls;
	int	 rc;
	char	 out[1024];
	size_t	 outlen;
};

static void
step_done(void *arg, int rc, const unsigned char *out, size_t outlen)
{
	struct result *r = arg;

	r->calls++;
	r->rc = rc;
	r->outlen = outlen;
	if (outlen >= sizeof(r->out))
		outlen = sizeof(r->out) - 1;
	if (outlen > 0)
		memcpy(r->out, out, outlen);
	r->out[outlen] = '\0';
	osp_event_exit();
}

/* One step with the loop running; returns rc, the output in r->out. */
static int
step(struct osp_sasl *s, const void *in, size_t inlen, struct result *r)
{
	memset(r, 0, sizeof(*r));
	osp_sasl_step(s, in, inlen, step_done, r);
	run_loop(10000);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(r->calls, 1);
	return r->calls == 1 ? r->rc : OSP_ERROR;
}

static int
step_str(struct osp_sasl *s, const char *in, struct result *r)
{
	return step(s, in, strlen(in), r);
}

static struct osp_sasl *
new_x(const char *mech, struct osp_conn *c)
{
	const struct osp_sasl_mech *m = osp_sasl_mech_find(mech);

	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	return osp_sasl_new(m, c, "test");
}

static const char *
reason(const struct osp_sasl *s)
{
	return osp_sasl_reason(s) != NULL ? osp_sasl_reason(s) : "";
}

/* ------------------------------------------------------------------ */
/* TLS pairs over a socketpair                                          */

struct side {
	struct osp_conn	*c;
	bool		 ready, failed;
};

static int pair_pending;

static void
side_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct side *sd = arg;

	(void)c;
	if (ev == OSP_CONN_TLSREADY)
		sd->ready = true;
	else if (ev == OSP_CONN_DATAIN || ev == OSP_CONN_LOWAT)
		return;
	else
		sd->failed = true;
	if (--pair_pending <= 0)
		osp_event_exit();
}

/* Server and client connections after a handshake; tls12 forces TLS
 * 1.2, certfile (may be NULL) is the client's certificate. */
static void
tls_pair(bool tls12, const char *certfile, const char *keyfile,
    struct side *ss, struct side *cs, struct osp_tls_server **srv_r)
{
	struct osp_tls_client_params p = { 0 };
	const char *c[1] = { fx.srv_cert }, *k[1] = { fx.srv_key };
	const char *err = NULL;
	int sv[2];

	memset(ss, 0, sizeof(*ss));
	memset(cs, 0, sizeof(*cs));
	*srv_r = osp_tls_server_new(c, k, 1, &err);
	CU_ASSERT_PTR_NOT_NULL_FATAL(*srv_r);
	if (tls12)
		CU_ASSERT_FATAL(osp_tls_server_set_priority(*srv_r,
		    "NORMAL:-VERS-ALL:+VERS-TLS1.2", &err) == OSP_OK);
	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
	ss->c = osp_conn_new(sv[0], side_cb, ss);
	cs->c = osp_conn_new(sv[1], side_cb, cs);
	p.server_name = "localhost";
	p.verify = false;
	p.certfile = certfile;
	p.keyfile = keyfile;
	pair_pending = 2;
	CU_ASSERT_FATAL(osp_conn_starttls_server(ss->c, *srv_r) == OSP_OK);
	CU_ASSERT_FATAL(osp_conn_starttls_client(cs->c, &p) == OSP_OK);
	run_loop(10000);
	CU_ASSERT_FATAL(!timed_out && ss->ready && cs->ready &&
	    !ss->failed && !cs->failed);
}

static void
tls_pair_free(struct side *ss, struct side *cs, struct osp_tls_server *srv)
{
	osp_conn_free(ss->c);
	osp_conn_free(cs->c);
	osp_tls_server_free(srv);
}

/* ------------------------------------------------------------------ */
/* Registry and offer policy                                            */

struct names {
	char	list[512];
};

static void
collect(const struct osp_sasl_mech *m, void *arg)
{
	struct names *n = arg;

	if (n->list[0] != '\0')
		strcat(n->list, " ");
	strcat(n->list, m->name);
}

static void
test_registry(void)
{
	struct names n = { "" };
	const struct osp_sasl_mech *m;

	setup();
	osp_sasl_mech_foreach(collect, &n);
	CU_ASSERT_STRING_EQUAL(n.list, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 "
	    "SCRAM-SHA-1-PLUS SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN EXTERNAL");
	CU_ASSERT(osp_sasl_builtin_init() == OSP_OK);	/* idempotent */
	m = osp_sasl_mech_find("plain");
	CU_ASSERT_PTR_NOT_NULL_FATAL(m);
	CU_ASSERT(m->flags == (OSP_SASL_PLAINTEXT | OSP_SASL_CLIENT_FIRST));
	CU_ASSERT(osp_sasl_mech_find("LOGIN")->flags == OSP_SASL_PLAINTEXT);
	CU_ASSERT(osp_sasl_mech_find("scram-sha-256-plus")->flags &
	    OSP_SASL_NEED_CB);
	CU_ASSERT(!(osp_sasl_mech_find("SCRAM-SHA-256")->flags &
	    (OSP_SASL_NEED_CB | OSP_SASL_PLAINTEXT)));
	CU_ASSERT(osp_sasl_mech_find("EXTERNAL")->flags & OSP_SASL_EXTERNAL);
	/* The window is closed again: a late registration is refused. */
	CU_ASSERT(osp_sasl_mech_add(NULL, &osp_sasl_mech_plain) == -EPERM);
}

static void
usable_all(struct osp_conn *c, bool allow, const char *want)
{
	struct names n = { "" };
	static const char *const all[] = { "SCRAM-SHA-256-PLUS",
	    "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-1", "CRAM-MD5",
	    "PLAIN", "LOGIN", "EXTERNAL", NULL };
	size_t i;

	for (i = 0; all[i] != NULL; i++)
		if (osp_sasl_mech_usable(osp_sasl_mech_find(all[i]), c, allow))
			collect(osp_sasl_mech_find(all[i]), &n);
	CU_ASSERT_STRING_EQUAL(n.list, want);
	if (strcmp(n.list, want) != 0)
		fprintf(stderr, "usable: got \"%s\", want \"%s\"\n", n.list,
		    want);
}

static void
test_usable(void)
{
	struct osp_tls_server *srv;
	struct side ss, cs;

	setup();
	/* Cleartext: nothing, unless allowed; never -PLUS or EXTERNAL. */
	usable_all(NULL, false, "");
	usable_all(NULL, true, "SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN "
	    "LOGIN");
	/* TLS without a client certificate. */
	tls_pair(false, NULL, NULL, &ss, &cs, &srv);
	usable_all(ss.c, false, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 "
	    "SCRAM-SHA-1-PLUS SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN");
	tls_pair_free(&ss, &cs, srv);
	/* With one (self-signed, unverifiable: still accepted). */
	tls_pair(false, fx.c1_cert, fx.c1_key, &ss, &cs, &srv);
	usable_all(ss.c, false, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 "
	    "SCRAM-SHA-1-PLUS SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN EXTERNAL");
	tls_pair_free(&ss, &cs, srv);
	/* TLS 1.2: tls-unique (and tls-exporter under EMS). */
	tls_pair(true, NULL, NULL, &ss, &cs, &srv);
	usable_all(ss.c, false, "SCRAM-SHA-256-PLUS SCRAM-SHA-256 "
	    "SCRAM-SHA-1-PLUS SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN");
	tls_pair_free(&ss, &cs, srv);
}

/* ------------------------------------------------------------------ */
/* PLAIN                                                                */

static int
plain(const char *authz, const char *authc, const char *pw,
    struct osp_sasl **s_r)
{
	char msg[512];
	struct result r;
	size_t n;
	int rc;

	n = (size_t)snprintf(msg, sizeof(msg), "%s%c%s%c%s", authz, 0, authc,
	    0, pw);
	*s_r = new_x("PLAIN", NULL);
	rc = step(*s_r, msg, n, &r);
	CU_ASSERT_EQUAL(r.outlen, 0);
	return rc;
}

static void
test_plain(void)
{
	struct osp_sasl *s;
	struct result r;
	static const struct {
		const char	*msg;
		size_t		 len;
	} bad[] = {
		{ "", 0 },
		{ "alice", 5 },
		{ "\0alice", 6 },
		{ "\0alice\0pw\0", 10 },
		/* no authcid, no password */
		{ "\0\0" ALICE_PW, 2 + sizeof(ALICE_PW) - 1 },
		{ "\0alice\0", 7 },
	};
	size_t i;

	setup();
	CU_ASSERT_EQUAL(plain("", "alice", ALICE_PW, &s), OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	CU_ASSERT_STRING_EQUAL(osp_sasl_username(s), "alice");
	CU_ASSERT_PTR_NULL(osp_sasl_reason(s));
	/* Another step after the end is refused, mech not called. */
	CU_ASSERT_EQUAL(step_str(s, "x", &r), -EINVAL);
	osp_sasl_free(s);
	/* By address (any case of the localpart), with authzid. */
	CU_ASSERT_EQUAL(plain("alice", "A.L@example.com", ALICE_PW, &s),
	    OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	CU_ASSERT_STRING_EQUAL(osp_sasl_username(s), "A.L@example.com");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(plain("alice@example.com", "alice", ALICE_PW, &s),
	    OSP_OK);
	osp_sasl_free(s);
	/* Wrong password, unknown user, account without a password. */
	CU_ASSERT_EQUAL(plain("", "alice", "wrong", &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "bad password");
	CU_ASSERT_PTR_NULL(osp_sasl_account(s));
	/* The username tried, for the log line. */
	CU_ASSERT_STRING_EQUAL(osp_sasl_username(s) != NULL ?
	    osp_sasl_username(s) : "", "alice");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(plain("", "mallory", ALICE_PW, &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "unknown user");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(plain("", "bob", ALICE_PW, &s), OSP_EAUTH);
	osp_sasl_free(s);
	/* Proxy authorization is not offered. */
	CU_ASSERT_EQUAL(plain("bob", "alice", ALICE_PW, &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "authorization identity mismatch");
	CU_ASSERT_PTR_NULL(osp_sasl_account(s));
	osp_sasl_free(s);
	/* Without a credentials database: a temporary failure, for every
	 * password mechanism. */
	osp_auth_set_current(NULL);
	CU_ASSERT_EQUAL(plain("", "alice", ALICE_PW, &s), OSP_ETEMP);
	osp_sasl_free(s);
	s = new_x("SCRAM-SHA-256", NULL);
	CU_ASSERT_EQUAL(step_str(s, "n,,n=alice,r=abc", &r), OSP_ETEMP);
	osp_sasl_free(s);
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step_str(s, "alice", &r), OSP_AGAIN);
	CU_ASSERT_EQUAL(step_str(s, ALICE_PW, &r), OSP_ETEMP);
	osp_sasl_free(s);
	osp_auth_set_current(fx.auth);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		s = new_x("PLAIN", NULL);
		CU_ASSERT_EQUAL(step(s, bad[i].msg, bad[i].len, &r), -EINVAL);
		osp_sasl_free(s);
	}
}

/* ------------------------------------------------------------------ */
/* LOGIN                                                                */

static void
test_login(void)
{
	struct osp_sasl *s;
	struct result r;

	setup();
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_AGAIN);
	CU_ASSERT_STRING_EQUAL(r.out, "Username:");
	CU_ASSERT_EQUAL(step_str(s, "alice@example.com", &r), OSP_AGAIN);
	CU_ASSERT_STRING_EQUAL(r.out, "Password:");
	CU_ASSERT_EQUAL(step_str(s, ALICE_PW, &r), OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	osp_sasl_free(s);
	/* Username as the initial response. */
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step_str(s, "alice", &r), OSP_AGAIN);
	CU_ASSERT_STRING_EQUAL(r.out, "Password:");
	CU_ASSERT_EQUAL(step_str(s, "nope", &r), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "bad password");
	osp_sasl_free(s);
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step_str(s, "nobody", &r), OSP_AGAIN);
	CU_ASSERT_EQUAL(step_str(s, ALICE_PW, &r), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "unknown user");
	osp_sasl_free(s);
	/* Malformed: NUL in the username, empty password. */
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_AGAIN);
	CU_ASSERT_EQUAL(step(s, "al\0ice", 6, &r), -EINVAL);
	osp_sasl_free(s);
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step_str(s, "alice", &r), OSP_AGAIN);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), -EINVAL);
	osp_sasl_free(s);
}

/* ------------------------------------------------------------------ */
/* CRAM-MD5                                                             */

static int
cram(const char *user, const char *pw, struct osp_sasl **s_r)
{
	unsigned char mac[16];
	char resp[600];
	struct result r;
	size_t i, n;
	int rc;

	*s_r = new_x("CRAM-MD5", NULL);
	rc = step(*s_r, "", 0, &r);
	CU_ASSERT_EQUAL_FATAL(rc, OSP_AGAIN);
	/* RFC 2195 §2: "<" digits "." digits "@" host ">" */
	CU_ASSERT(r.out[0] == '<' && r.out[r.outlen - 1] == '>' &&
	    strchr(r.out, '.') != NULL && strchr(r.out, '@') != NULL);
	CU_ASSERT(gnutls_hmac_fast(GNUTLS_MAC_MD5, pw, strlen(pw), r.out,
	    r.outlen, mac) == 0);
	n = (size_t)snprintf(resp, sizeof(resp), "%s ", user);
	for (i = 0; i < 16; i++)
		n += (size_t)snprintf(resp + n, sizeof(resp) - n, "%02x",
		    mac[i]);
	return step(*s_r, resp, n, &r);
}

static void
test_cram_md5(void)
{
	struct osp_sasl *s;
	struct result r;
	char first[1024];

	setup();
	CU_ASSERT_EQUAL(cram("alice", ALICE_PW, &s), OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(cram("alice@example.com", ALICE_PW, &s), OSP_OK);
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(cram("alice", "wrong", &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "bad password");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(cram("eve", ALICE_PW, &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "unknown user");
	osp_sasl_free(s);
	/* Two challenges differ. */
	s = new_x("CRAM-MD5", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_AGAIN);
	snprintf(first, sizeof(first), "%s", r.out);
	osp_sasl_free(s);
	s = new_x("CRAM-MD5", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_AGAIN);
	CU_ASSERT(strcmp(first, r.out) != 0);
	/* Malformed responses. */
	CU_ASSERT_EQUAL(step_str(s, "alice 0123", &r), -EINVAL);
	osp_sasl_free(s);
	s = new_x("CRAM-MD5", NULL);
	CU_ASSERT_EQUAL(step_str(s, "initial", &r), -EINVAL);
	osp_sasl_free(s);
	s = new_x("CRAM-MD5", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_AGAIN);
	CU_ASSERT_EQUAL(step_str(s, "alice_0123456789abcdef0123456789abcdef",
	    &r), -EINVAL);
	osp_sasl_free(s);
	s = new_x("CRAM-MD5", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_AGAIN);
	CU_ASSERT_EQUAL(step_str(s, "alice 0123456789abcdef0123456789abcdeg",
	    &r), -EINVAL);
	osp_sasl_free(s);
}

/* ------------------------------------------------------------------ */
/* SCRAM                                                                */

/* RFC 5802 §5 (SCRAM-SHA-1) and RFC 7677 §3 (SCRAM-SHA-256), user
 * "user", password "pencil", the server nonce forced. */
static void
test_scram_vectors(void)
{
	static const struct {
		const char *mech, *snonce, *c1, *s1, *c2, *s2;
	} v[] = {
		{ "SCRAM-SHA-1", "3rfcNHYJY1ZVvWVs7j",
		  "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
		  "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
		  "s=QSXCR+Q6sek8bf92,i=4096",
		  "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,"
		  "p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
		  "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=" },
		{ "SCRAM-SHA-256", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
		  "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
		  "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
		  "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
		  "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
		  "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
		  "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=" },
	};
	struct osp_sasl *s;
	struct result r;
	char bad[256];
	size_t i, n;

	setup();
	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		osp_sasl_scram_test_nonce(v[i].snonce);
		s = new_x(v[i].mech, NULL);
		CU_ASSERT_EQUAL(step_str(s, v[i].c1, &r), OSP_AGAIN);
		CU_ASSERT_STRING_EQUAL(r.out, v[i].s1);
		CU_ASSERT_EQUAL(step_str(s, v[i].c2, &r), OSP_OK);
		CU_ASSERT_STRING_EQUAL(r.out, v[i].s2);
		CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "user");
		osp_sasl_free(s);
		/* The same exchange with one proof bit flipped. */
		s = new_x(v[i].mech, NULL);
		CU_ASSERT_EQUAL(step_str(s, v[i].c1, &r), OSP_AGAIN);
		snprintf(bad, sizeof(bad), "%s", v[i].c2);
		n = strlen(bad) - 6;
		bad[n] = bad[n] == 'A' ? 'B' : 'A';
		CU_ASSERT_EQUAL(step_str(s, bad, &r), OSP_EAUTH);
		CU_ASSERT_STRING_EQUAL(reason(s), "bad password");
		CU_ASSERT_EQUAL(r.outlen, 0);
		osp_sasl_free(s);
	}
	osp_sasl_scram_test_nonce(NULL);
}

/* A SCRAM client: from the server-first message computes the final
 * message for `pw` and the expected server signature. cbind: the c=
 * value input (gs2 header + data). */
static void
scram_client(const char *hash, const char *pw, const char *cfb,
    const char *sfm, const void *cbind, size_t cbind_len, char *final,
    size_t size, char *v_r, size_t vsize)
{
	gnutls_mac_algorithm_t mac = strcmp(hash, "SHA-1") == 0 ?
	    GNUTLS_MAC_SHA1 : GNUTLS_MAC_SHA256;
	gnutls_digest_algorithm_t dig = strcmp(hash, "SHA-1") == 0 ?
	    GNUTLS_DIG_SHA1 : GNUTLS_DIG_SHA256;
	size_t klen = strcmp(hash, "SHA-1") == 0 ? 20 : 32, i;
	unsigned char salted[32], ckey[32], skey[32], stored[32], csig[32];
	unsigned char proof[32], ssig[32];
	struct osp_base64_dec d;
	struct osp_buf salt = { 0 }, am = { 0 };
	const char *sp, *ip, *np;
	char *cb64, *p64, *s64, wo[600];
	gnutls_datum_t pwd, sd;
	unsigned iter;

	np = strstr(sfm, "r=");
	sp = strstr(sfm, ",s=");
	ip = strstr(sfm, ",i=");
	CU_ASSERT_FATAL(np == sfm && sp != NULL && ip != NULL);
	osp_base64_dec_init(&d);
	osp_base64_decode(&d, sp + 3, (size_t)(ip - sp - 3), &salt);
	iter = (unsigned)atoi(ip + 3);
	pwd.data = (unsigned char *)(uintptr_t)pw;
	pwd.size = (unsigned)strlen(pw);
	sd.data = (unsigned char *)salt.data;
	sd.size = (unsigned)salt.len;
	CU_ASSERT_FATAL(gnutls_pbkdf2(mac, &pwd, &sd, iter, salted, klen) ==
	    0);
	gnutls_hmac_fast(mac, salted, klen, "Client Key", 10, ckey);
	gnutls_hmac_fast(mac, salted, klen, "Server Key", 10, skey);
	gnutls_hash_fast(dig, ckey, klen, stored);
	cb64 = b64(cbind, cbind_len);
	snprintf(wo, sizeof(wo), "c=%s,%.*s", cb64, (int)(sp - sfm), sfm);
	osp_buf_printf(&am, "%s,%s,%s", cfb, sfm, wo);
	gnutls_hmac_fast(mac, stored, klen, am.data, am.len, csig);
	for (i = 0; i < klen; i++)
		proof[i] = ckey[i] ^ csig[i];
	gnutls_hmac_fast(mac, skey, klen, am.data, am.len, ssig);
	p64 = b64(proof, klen);
	s64 = b64(ssig, klen);
	CU_ASSERT(snprintf(final, size, "%s,p=%s", wo, p64) < (int)size);
	CU_ASSERT(snprintf(v_r, vsize, "v=%s", s64) < (int)vsize);
	free(cb64);
	free(p64);
	free(s64);
	osp_buf_deinit(&salt);
	osp_buf_deinit(&am);
}

/* A whole exchange: gs2 header, user, password, channel binding data
 * appended to the c= input (may be NULL). */
static int
scram(const char *mech, struct osp_conn *c, const char *gs2,
    const char *user, const char *pw, const void *cbdata, size_t cblen,
    struct osp_sasl **s_r)
{
	const char *hash = strncmp(mech, "SCRAM-SHA-1", 11) == 0 &&
	    (mech[11] == '\0' || mech[11] == '-') ? "SHA-1" : "SHA-256";
	char cfb[300], first[400], final[600], v[100];
	unsigned char cbind[200];
	struct result r;
	int rc;

	snprintf(cfb, sizeof(cfb), "n=%s,r=abcdefghijklmnop", user);
	snprintf(first, sizeof(first), "%s%s", gs2, cfb);
	*s_r = new_x(mech, c);
	rc = step_str(*s_r, first, &r);
	if (rc != OSP_AGAIN)
		return rc;
	CU_ASSERT(strncmp(r.out, "r=abcdefghijklmnop", 18) == 0 &&
	    r.outlen > 18 + 20);
	memcpy(cbind, gs2, strlen(gs2));
	if (cblen > 0)
		memcpy(cbind + strlen(gs2), cbdata, cblen);
	scram_client(hash, pw, cfb, r.out, cbind, strlen(gs2) + cblen, final,
	    sizeof(final), v, sizeof(v));
	rc = step_str(*s_r, final, &r);
	if (rc == OSP_OK)
		CU_ASSERT_STRING_EQUAL(r.out, v);
	return rc;
}

static void
test_scram(void)
{
	static const char *const mechs[] = { "SCRAM-SHA-1", "SCRAM-SHA-256" };
	static const char *const bad_first[] = {
		"", "x,,n=alice,r=abc", "n,n=alice,r=abc", "n,,r=abc",
		"n,,n=alice", "n,,n=alice,r=", "n,,n=al=2Xice,r=abc",
		"n,,n=,r=abc", "n,b=x,n=alice,r=abc", "n,,n=alice,r=a\x01",
		"p,,n=alice,r=abc",
	};
	struct osp_sasl *s, *s2;
	struct result r, r2;
	char salt1[200];
	size_t i, j;

	setup();
	for (i = 0; i < 2; i++) {
		CU_ASSERT_EQUAL(scram(mechs[i], NULL, "n,,", "alice", ALICE_PW,
		    NULL, 0, &s), OSP_OK);
		CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
		osp_sasl_free(s);
		/* By address, with a matching authzid; "y" without TLS. */
		CU_ASSERT_EQUAL(scram(mechs[i], NULL, "y,a=alice,",
		    "alice@example.com", ALICE_PW, NULL, 0, &s), OSP_OK);
		CU_ASSERT_STRING_EQUAL(osp_sasl_username(s),
		    "alice@example.com");
		osp_sasl_free(s);
		CU_ASSERT_EQUAL(scram(mechs[i], NULL, "n,,", "alice", "wrong",
		    NULL, 0, &s), OSP_EAUTH);
		CU_ASSERT_STRING_EQUAL(reason(s), "bad password");
		CU_ASSERT_PTR_NULL(osp_sasl_account(s));
		CU_ASSERT_STRING_EQUAL(osp_sasl_username(s) != NULL ?
		    osp_sasl_username(s) : "", "alice");
		osp_sasl_free(s);
		CU_ASSERT_EQUAL(scram(mechs[i], NULL, "n,a=bob,", "alice",
		    ALICE_PW, NULL, 0, &s), OSP_EAUTH);
		CU_ASSERT_STRING_EQUAL(reason(s),
		    "authorization identity mismatch");
		osp_sasl_free(s);
		/* Unknown users and accounts without credentials go through
		 * the whole exchange, with a stable fake salt. */
		CU_ASSERT_EQUAL(scram(mechs[i], NULL, "n,,", "mallory",
		    ALICE_PW, NULL, 0, &s), OSP_EAUTH);
		CU_ASSERT_STRING_EQUAL(reason(s), "unknown user");
		osp_sasl_free(s);
		CU_ASSERT_EQUAL(scram(mechs[i], NULL, "n,,", "bob", ALICE_PW,
		    NULL, 0, &s), OSP_EAUTH);
		osp_sasl_free(s);
		s = new_x(mechs[i], NULL);
		s2 = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,n=mallory,r=abc", &r),
		    OSP_AGAIN);
		CU_ASSERT_EQUAL(step_str(s2, "n,,n=mallory,r=abc", &r2),
		    OSP_AGAIN);
		snprintf(salt1, sizeof(salt1), "%s", strstr(r.out, ",s="));
		CU_ASSERT_STRING_EQUAL(salt1, strstr(r2.out, ",s="));
		CU_ASSERT(strstr(r.out, ",i=4096") != NULL);
		/* The nonces differ. */
		CU_ASSERT(strcmp(r.out, r2.out) != 0);
		osp_sasl_free(s);
		osp_sasl_free(s2);
		/* saslname escapes decode (=3D is '='): an unknown user,
		 * not a malformed message. */
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,n=a=3Db=2Cc,r=abc", &r),
		    OSP_AGAIN);
		osp_sasl_free(s);
		for (j = 0; j < sizeof(bad_first) / sizeof(bad_first[0]);
		    j++) {
			s = new_x(mechs[i], NULL);
			CU_ASSERT_EQUAL(step_str(s, bad_first[j], &r),
			    -EINVAL);
			if (r.rc != -EINVAL)
				fprintf(stderr, "accepted: %s\n",
				    bad_first[j]);
			osp_sasl_free(s);
		}
		/* m= mandatory extension: refused (RFC 5802 §5.1). */
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,m=x,n=alice,r=abc", &r),
		    OSP_EAUTH);
		osp_sasl_free(s);
		/* "p=" on a mechanism without -PLUS. */
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "p=tls-unique,,n=alice,r=abc",
		    &r), OSP_EAUTH);
		osp_sasl_free(s);
		/* Bad finals: another nonce, bad base64, no proof. */
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,n=alice,r=abc", &r),
		    OSP_AGAIN);
		CU_ASSERT_EQUAL(step_str(s, "c=biws,r=abcXYZ,p=AAAA", &r),
		    OSP_EAUTH);
		CU_ASSERT_STRING_EQUAL(reason(s), "nonce mismatch");
		osp_sasl_free(s);
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,n=alice,r=abc", &r),
		    OSP_AGAIN);
		CU_ASSERT_EQUAL(step_str(s, "c=bi*s,r=abc,p=AAAA", &r),
		    -EINVAL);
		osp_sasl_free(s);
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,n=alice,r=abc", &r),
		    OSP_AGAIN);
		CU_ASSERT_EQUAL(step_str(s, "c=biws,r=abc", &r), -EINVAL);
		osp_sasl_free(s);
		s = new_x(mechs[i], NULL);
		CU_ASSERT_EQUAL(step_str(s, "n,,n=alice,r=abc", &r),
		    OSP_AGAIN);
		CU_ASSERT_EQUAL(step(s, "c=biws\0", 7, &r), -EINVAL);
		osp_sasl_free(s);
	}
}

/* -PLUS over real TLS: the client's view of the binding must match the
 * server's. */
static void
plus_case(bool tls12)
{
	unsigned char cb[64];
	struct osp_tls_server *srv;
	struct side ss, cs;
	struct osp_sasl *s;
	const char *type = tls12 ? "tls-unique" : "tls-exporter";
	char gs2[64];
	int n;

	tls_pair(tls12, NULL, NULL, &ss, &cs, &srv);
	n = osp_conn_tls_channel_binding(cs.c, type, cb, sizeof(cb));
	CU_ASSERT_FATAL(n > 0);
	snprintf(gs2, sizeof(gs2), "p=%s,,", type);
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", ss.c, gs2, "alice",
	    ALICE_PW, cb, (size_t)n, &s), OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-1-PLUS", ss.c, gs2, "alice",
	    ALICE_PW, cb, (size_t)n, &s), OSP_OK);
	osp_sasl_free(s);
	/* A binding from another TLS session (a MITM relaying). */
	cb[0] ^= 0x80;
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", ss.c, gs2, "alice",
	    ALICE_PW, cb, (size_t)n, &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "channel binding mismatch");
	osp_sasl_free(s);
	/* Binding data missing from c=. */
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", ss.c, gs2, "alice",
	    ALICE_PW, NULL, 0, &s), OSP_EAUTH);
	osp_sasl_free(s);
	/* -PLUS without "p=". */
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", ss.c, "n,,", "alice",
	    ALICE_PW, NULL, 0, &s), OSP_EAUTH);
	osp_sasl_free(s);
	/* RFC 5802 §6: "y" where the server offers -PLUS is a downgrade;
	 * "n" (client without channel binding) is fine. */
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256", ss.c, "y,,", "alice",
	    ALICE_PW, NULL, 0, &s), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "channel binding downgrade");
	osp_sasl_free(s);
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256", ss.c, "n,,", "alice",
	    ALICE_PW, NULL, 0, &s), OSP_OK);
	osp_sasl_free(s);
	/* A type this TLS version does not have. */
	if (!tls12) {
		CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", ss.c,
		    "p=tls-unique,,", "alice", ALICE_PW, NULL, 0, &s),
		    OSP_EAUTH);
		CU_ASSERT_STRING_EQUAL(reason(s),
		    "unsupported channel binding type");
		osp_sasl_free(s);
	}
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", ss.c, "p=tls-bogus,,",
	    "alice", ALICE_PW, NULL, 0, &s), OSP_EAUTH);
	osp_sasl_free(s);
	/* Without TLS there is nothing to bind to. */
	CU_ASSERT_EQUAL(scram("SCRAM-SHA-256-PLUS", NULL, gs2, "alice",
	    ALICE_PW, cb, (size_t)n, &s), OSP_EAUTH);
	osp_sasl_free(s);
	tls_pair_free(&ss, &cs, srv);
}

static void
test_scram_plus(void)
{
	setup();
	plus_case(false);
	plus_case(true);
}

/* ------------------------------------------------------------------ */
/* EXTERNAL and the certificate table                                   */

static unsigned char *
read_der(const char *pem, size_t *len_r)
{
	gnutls_datum_t in, out;
	unsigned char *p;

	CU_ASSERT_FATAL(gnutls_load_file(pem, &in) == 0);
	CU_ASSERT_FATAL(gnutls_pem_base64_decode2("CERTIFICATE", &in, &out) ==
	    0);
	gnutls_free(in.data);
	p = osp_malloc(out.size);
	memcpy(p, out.data, out.size);
	*len_r = out.size;
	gnutls_free(out.data);
	return p;
}

static void
test_cert_table(void)
{
	struct osp_pool *pool;
	struct osp_auth_cert *certs;
	struct osp_auth *other;
	sqlite3_stmt *st;
	sqlite3 *db;
	char *path;
	unsigned char *d1, *d2;
	const char *err, *acc;
	char fp[100] = "", cmd[600];
	size_t l1, l2, n;
	FILE *f;

	setup();
	pool = osp_pool_new(NULL);
	d1 = read_der(fx.c1_cert, &l1);
	d2 = read_der(fx.c2_cert, &l2);
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "bob", d2, l2, "laptop",
	    &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "bob", d1, l1, "laptop",
	    &err), -EEXIST);			/* name taken */
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "alice", d2, l2, NULL,
	    &err), -EEXIST);			/* key taken */
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "alice", d1, 10, NULL,
	    &err), -EINVAL);
	CU_ASSERT_EQUAL(osp_auth_cert_list(fx.auth, "bob", pool, &certs, &n,
	    &err), OSP_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT_STRING_EQUAL(certs[0].name, "laptop");
	CU_ASSERT_STRING_EQUAL(certs[0].account, "bob");
	CU_ASSERT_EQUAL(strlen(certs[0].fingerprint), 64);
	/* The fingerprint is the SHA-256 of the SPKI, as openssl prints. */
	snprintf(cmd, sizeof(cmd), "openssl x509 -in '%s' -pubkey -noout 2>"
	    "/dev/null | openssl pkey -pubin -outform der 2>/dev/null | "
	    "sha256sum", fx.c2_cert);
	if ((f = popen(cmd, "r")) != NULL) {
		if (fgets(fp, sizeof(fp), f) != NULL && strlen(fp) > 64) {
			fp[64] = '\0';
			CU_ASSERT_STRING_EQUAL(certs[0].fingerprint, fp);
		}
		pclose(f);
	}
	CU_ASSERT_EQUAL(osp_auth_cert_account(fx.auth, d2, l2, pool, &acc,
	    &err), OSP_OK);
	CU_ASSERT_STRING_EQUAL(acc, "bob");
	CU_ASSERT_EQUAL(osp_auth_cert_account(fx.auth, d1, l1, pool, &acc,
	    &err), -ENOENT);
	/* Removal by name and by fingerprint (either case), per account. */
	CU_ASSERT_EQUAL(osp_auth_cert_remove(fx.auth, "alice", "laptop",
	    &err), -ENOENT);
	CU_ASSERT_EQUAL(osp_auth_cert_remove(fx.auth, "bob", "laptop", &err),
	    OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_cert_account(fx.auth, d2, l2, pool, &acc,
	    &err), -ENOENT);
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "bob", d2, l2, NULL, &err),
	    OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_cert_list(fx.auth, NULL, pool, &certs, &n,
	    &err), OSP_OK);
	CU_ASSERT_EQUAL_FATAL(n, 1);
	CU_ASSERT(strncmp(certs[0].name, certs[0].fingerprint, 16) == 0);
	snprintf(fp, sizeof(fp), "%s", certs[0].fingerprint);
	for (n = 0; fp[n] != '\0'; n++)
		if (fp[n] >= 'a' && fp[n] <= 'f')
			fp[n] = (char)(fp[n] - 'a' + 'A');
	CU_ASSERT_EQUAL(osp_auth_cert_remove(fx.auth, "bob", fp, &err),
	    OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_cert_list(fx.auth, NULL, pool, &certs, &n,
	    &err), OSP_OK);
	CU_ASSERT_EQUAL(n, 0);
	/* The schema is at version 1 and opening it again (as the CLI does
	 * while the server runs) migrates nothing twice. */
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "bob", d2, l2, "kept",
	    &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_open(fx.dir, &other, &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_cert_account(other, d2, l2, pool, &acc,
	    &err), OSP_OK);
	CU_ASSERT_EQUAL(osp_auth_cert_remove(other, "bob", "kept", &err),
	    OSP_OK);
	osp_auth_close(other);
	path = osp_test_path(fx.dir, "auth.db");
	CU_ASSERT_FATAL(sqlite3_open(path, &db) == SQLITE_OK);
	CU_ASSERT(sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st,
	    NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW &&
	    sqlite3_column_int(st, 0) == 1);
	sqlite3_finalize(st);
	sqlite3_close(db);
	free(path);
	osp_free(d1);
	osp_free(d2);
	osp_pool_free(pool);
}

static void
test_external(void)
{
	struct osp_tls_server *srv;
	struct side ss, cs;
	struct osp_sasl *s;
	struct result r;
	unsigned char *d1;
	const char *err;
	size_t l1;

	setup();
	d1 = read_der(fx.c1_cert, &l1);
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "alice", d1, l1, "phone",
	    &err), OSP_OK);
	osp_free(d1);
	tls_pair(false, fx.c1_cert, fx.c1_key, &ss, &cs, &srv);
	s = new_x("EXTERNAL", ss.c);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	osp_sasl_free(s);
	s = new_x("EXTERNAL", ss.c);
	CU_ASSERT_EQUAL(step_str(s, "a.l@example.com", &r), OSP_OK);
	CU_ASSERT_STRING_EQUAL(osp_sasl_account(s), "alice");
	osp_sasl_free(s);
	s = new_x("EXTERNAL", ss.c);
	CU_ASSERT_EQUAL(step_str(s, "bob", &r), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "authorization identity mismatch");
	osp_sasl_free(s);
	s = new_x("EXTERNAL", ss.c);
	CU_ASSERT_EQUAL(step(s, "a\0b", 3, &r), -EINVAL);
	osp_sasl_free(s);
	tls_pair_free(&ss, &cs, srv);
	/* An unregistered certificate; none at all. */
	tls_pair(false, fx.c2_cert, fx.c2_key, &ss, &cs, &srv);
	s = new_x("EXTERNAL", ss.c);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "client certificate not registered");
	osp_sasl_free(s);
	tls_pair_free(&ss, &cs, srv);
	tls_pair(true, NULL, NULL, &ss, &cs, &srv);
	s = new_x("EXTERNAL", ss.c);
	CU_ASSERT_EQUAL(step(s, "", 0, &r), OSP_EAUTH);
	CU_ASSERT_STRING_EQUAL(reason(s), "no TLS client certificate");
	osp_sasl_free(s);
	tls_pair_free(&ss, &cs, srv);
	CU_ASSERT_EQUAL(osp_auth_cert_remove(fx.auth, "alice", "phone", &err),
	    OSP_OK);
}

/* ------------------------------------------------------------------ */
/* Lifetime                                                             */

static struct osp_timer *idle_timer;

static void
poll_idle(void *arg)
{
	(void)arg;
	if (osp_worker_inflight() == 0)
		osp_event_exit();
	else
		osp_timer_add(idle_timer, 5);
}

/* Freed while its step runs on a worker: done() never comes, nothing
 * leaks (ASan), the loop stays usable. */
static void
test_free_inflight(void)
{
	struct osp_sasl *s;
	struct result r, r2;
	char msg[64];
	size_t n;

	setup();
	memset(&r, 0, sizeof(r));
	n = (size_t)snprintf(msg, sizeof(msg), "%c%s%c%s", 0, "alice", 0,
	    ALICE_PW);
	s = new_x("PLAIN", NULL);
	osp_sasl_step(s, (const unsigned char *)msg, n, step_done, &r);
	CU_ASSERT(osp_worker_inflight() >= 1);
	osp_sasl_free(s);
	/* Also a SCRAM exchange, with state and an output buffer. */
	s = new_x("SCRAM-SHA-256", NULL);
	osp_sasl_step(s, (const unsigned char *)"n,,n=alice,r=abc", 16,
	    step_done, &r);
	osp_sasl_free(s);
	osp_sasl_free(NULL);
	idle_timer = osp_timer_new(poll_idle, NULL);
	osp_timer_add(idle_timer, 1);
	run_loop(10000);
	osp_timer_free(idle_timer);
	CU_ASSERT(!timed_out);
	CU_ASSERT_EQUAL(osp_worker_inflight(), 0);
	CU_ASSERT_EQUAL(r.calls, 0);
	/* The loop and the pool still work. */
	s = new_x("LOGIN", NULL);
	CU_ASSERT_EQUAL(step(s, "", 0, &r2), OSP_AGAIN);
	osp_sasl_free(s);
}

/* ------------------------------------------------------------------ */
/* tests/tools/smtp_auth_client against a minimal SMTP AUTH responder   */
/* (RFC 4954) on the exchange API: the tool's own SCRAM, channel        */
/* binding and client certificate code meet ours over TCP.               */

struct mini {
	struct osp_conn		*c;
	struct osp_tls_server	*srv;
	struct osp_sasl		*sasl;
	bool			 in_auth, final_sent, closed;
	char			 mech[64];
};

static void mini_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg);

static void
mini_reply_out(struct mini *m, const char *code, const unsigned char *out,
    size_t outlen)
{
	struct osp_buf b = { 0 };

	osp_base64_encode(out, outlen, &b);
	osp_conn_printf(m->c, "%s %s\r\n", code, b.data != NULL ? b.data :
	    "");
	osp_buf_deinit(&b);
}

static void
mini_done(void *arg, int rc, const unsigned char *out, size_t outlen)
{
	struct mini *m = arg;

	if (rc == OSP_AGAIN) {
		mini_reply_out(m, "334", out, outlen);
		return;
	}
	if (rc == OSP_OK && outlen > 0) {
		/* RFC 4954 §4: success data goes in a last challenge the
		 * client answers with an empty line. */
		m->final_sent = true;
		mini_reply_out(m, "334", out, outlen);
		return;
	}
	m->in_auth = false;
	if (rc == OSP_OK)
		osp_conn_printf(m->c, "235 2.7.0 %s authenticated\r\n",
		    osp_sasl_account(m->sasl));
	else if (rc == OSP_EAUTH)
		osp_conn_printf(m->c, "535 5.7.8 authentication failed\r\n");
	else
		osp_conn_printf(m->c, "501 5.5.2 malformed\r\n");
}

/* A client line during AUTH: base64, "=" empty, "*" cancels. */
static void
mini_auth_line(struct mini *m, const char *line)
{
	struct osp_base64_dec d;
	struct osp_buf b = { 0 };

	if (strcmp(line, "*") == 0) {
		m->in_auth = false;
		osp_conn_printf(m->c, "501 5.0.0 cancelled\r\n");
		return;
	}
	if (m->final_sent) {
		m->in_auth = m->final_sent = false;
		if (*line != '\0')
			osp_conn_printf(m->c, "501 5.5.2 expected empty\r\n");
		else
			osp_conn_printf(m->c, "235 2.7.0 %s authenticated\r\n",
			    osp_sasl_account(m->sasl));
		return;
	}
	osp_base64_dec_init(&d);
	if (strcmp(line, "=") != 0)
		osp_base64_decode(&d, line, strlen(line), &b);
	osp_sasl_step(m->sasl, (const unsigned char *)(b.data != NULL ?
	    b.data : ""), b.len, mini_done, m);
	osp_buf_deinit(&b);
}

static void
mini_command(struct mini *m, char *line)
{
	const struct osp_sasl_mech *mech;
	char *ir;

	if (osp_str_has_prefix_i(line, "EHLO ")) {
		osp_conn_printf(m->c, "250-mini\r\n%s250 AUTH x\r\n",
		    osp_conn_is_tls(m->c) ? "" : "250-STARTTLS\r\n");
	} else if (strcmp(line, "STARTTLS") == 0) {
		osp_conn_printf(m->c, "220 2.0.0 go\r\n");
		CU_ASSERT(osp_conn_starttls_server(m->c, m->srv) == OSP_OK);
	} else if (osp_str_has_prefix_i(line, "AUTH ")) {
		if ((ir = strchr(line + 5, ' ')) != NULL)
			*ir++ = '\0';
		mech = osp_sasl_mech_find(line + 5);
		if (mech == NULL || !osp_sasl_mech_usable(mech, m->c, false)) {
			osp_conn_printf(m->c, "504 5.5.4 no\r\n");
			return;
		}
		osp_sasl_free(m->sasl);
		m->sasl = osp_sasl_new(mech, m->c, "mini");
		m->in_auth = true;
		m->final_sent = false;
		if (ir != NULL)
			mini_auth_line(m, ir);
		else if (mech->flags & OSP_SASL_CLIENT_FIRST)
			osp_conn_printf(m->c, "334 \r\n");
		else
			osp_sasl_step(m->sasl, (const unsigned char *)"", 0,
			    mini_done, m);
	} else if (strcmp(line, "QUIT") == 0) {
		osp_conn_printf(m->c, "221 2.0.0 bye\r\n");
		osp_conn_close(m->c);
		m->c = NULL;
		m->closed = true;
		osp_event_exit();
	} else
		osp_conn_printf(m->c, "500 5.5.1 what\r\n");
}

static void
mini_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct mini *m = arg;
	char *line;

	(void)c;
	switch (ev) {
	case OSP_CONN_DATAIN:
		while (m->c != NULL && (line = osp_conn_getline(m->c, NULL,
		    NULL, NULL)) != NULL) {
			if (m->in_auth)
				mini_auth_line(m, line);
			else
				mini_command(m, line);
		}
		break;
	case OSP_CONN_TLSREADY:
	case OSP_CONN_LOWAT:
	case OSP_CONN_CONNECTED:
		break;
	default:
		osp_conn_free(m->c);
		m->c = NULL;
		m->closed = true;
		osp_event_exit();
		break;
	}
}

/* Runs the client with args against a fresh responder; its exit code
 * (its log is shown when that is not `want`). */
static int
run_client(bool implicit_tls, const char *args, int want)
{
	const char *c[1] = { fx.srv_cert }, *k[1] = { fx.srv_key };
	const char *bdir = getenv("top_builddir"), *err = NULL;
	struct sockaddr_in sin;
	socklen_t slen = sizeof(sin);
	struct mini m;
	char cmd[2048];
	FILE *f;
	int lfd, fd, status;

	memset(&m, 0, sizeof(m));
	m.srv = osp_tls_server_new(c, k, 1, &err);
	CU_ASSERT_FATAL(m.srv != NULL);
	lfd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	CU_ASSERT_FATAL(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == 0 &&
	    listen(lfd, 1) == 0 &&
	    getsockname(lfd, (struct sockaddr *)&sin, &slen) == 0);
	snprintf(cmd, sizeof(cmd), "%s/tests/tools/smtp_auth_client --host "
	    "127.0.0.1 --port %u %s %s 2>%s/client.log", bdir != NULL ? bdir :
	    ".", (unsigned)ntohs(sin.sin_port), implicit_tls ? "--tls" :
	    "--starttls", args, fx.dir);
	f = popen(cmd, "r");
	CU_ASSERT_FATAL(f != NULL);
	fd = accept(lfd, NULL, NULL);
	close(lfd);
	CU_ASSERT_FATAL(fd >= 0);
	m.c = osp_conn_new(fd, mini_cb, &m);
	if (implicit_tls)
		CU_ASSERT(osp_conn_starttls_server(m.c, m.srv) == OSP_OK);
	osp_conn_printf(m.c, "220 mini ESMTP\r\n");
	run_loop(20000);
	CU_ASSERT(!timed_out && m.closed);
	if (m.c != NULL)
		osp_conn_free(m.c);
	/* Drain the loop of the closing connection and the last step. */
	osp_sasl_free(m.sasl);
	status = pclose(f);
	osp_tls_server_free(m.srv);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != want)
		(void)osp_test_sh("cat '%s/client.log' >&2", fx.dir);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void
test_client_tool(void)
{
	char args[1024];
	unsigned char *d1;
	const char *err;
	size_t l1;

	setup();
	CU_ASSERT_EQUAL(run_client(false, "--mech PLAIN --user alice --pass '"
	    ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(true, "--mech PLAIN --no-ir --user alice "
	    "--pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(false, "--mech PLAIN --user alice --pass "
	    "wrong --expect-fail", 0), 0);
	CU_ASSERT_EQUAL(run_client(false, "--mech PLAIN --user alice --pass "
	    "wrong", 1), 1);
	CU_ASSERT_EQUAL(run_client(false, "--mech LOGIN --user "
	    "alice@example.com --pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(true, "--mech CRAM-MD5 --user alice "
	    "--pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(false, "--mech SCRAM-SHA-1 --user alice "
	    "--pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(false, "--mech SCRAM-SHA-256 --no-ir "
	    "--user alice --pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(false, "--mech SCRAM-SHA-256 --user alice "
	    "--pass nope --expect-fail", 0), 0);
	/* -PLUS: tls-exporter under TLS 1.3, tls-unique under 1.2. */
	CU_ASSERT_EQUAL(run_client(false, "--mech SCRAM-SHA-256-PLUS --user "
	    "alice --pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(true, "--tls12 --mech SCRAM-SHA-1-PLUS "
	    "--user alice --pass '" ALICE_PW "'", 0), 0);
	CU_ASSERT_EQUAL(run_client(true, "--tls12 --mech SCRAM-SHA-256-PLUS "
	    "--user alice --pass '" ALICE_PW "'", 0), 0);
	setenv("SMTP_AUTH_BAD_CB", "1", 1);
	CU_ASSERT_EQUAL(run_client(false, "--mech SCRAM-SHA-256-PLUS --user "
	    "alice --pass '" ALICE_PW "' --expect-fail", 0), 0);
	unsetenv("SMTP_AUTH_BAD_CB");
	setenv("SMTP_AUTH_GS2", "y,,", 1);
	CU_ASSERT_EQUAL(run_client(false, "--mech SCRAM-SHA-256 --user "
	    "alice --pass '" ALICE_PW "' --expect-fail", 0), 0);
	unsetenv("SMTP_AUTH_GS2");
	/* EXTERNAL with a registered client certificate. */
	d1 = read_der(fx.c1_cert, &l1);
	CU_ASSERT_EQUAL(osp_auth_cert_add(fx.auth, "alice", d1, l1, "tool",
	    &err), OSP_OK);
	osp_free(d1);
	snprintf(args, sizeof(args), "--mech EXTERNAL --cert '%s' "
	    "--key '%s'", fx.c1_cert, fx.c1_key);
	CU_ASSERT_EQUAL(run_client(true, args, 0), 0);
	snprintf(args, sizeof(args), "--mech EXTERNAL --no-ir --user "
	    "alice --cert '%s' --key '%s'", fx.c1_cert, fx.c1_key);
	CU_ASSERT_EQUAL(run_client(false, args, 0), 0);
	snprintf(args, sizeof(args), "--mech EXTERNAL --cert '%s' "
	    "--key '%s' --expect-fail", fx.c2_cert, fx.c2_key);
	CU_ASSERT_EQUAL(run_client(true, args, 0), 0);
	CU_ASSERT_EQUAL(osp_auth_cert_remove(fx.auth, "alice", "tool", &err),
	    OSP_OK);
}

static const struct osp_test tests[] = {
	OSP_TEST(test_registry),
	OSP_TEST(test_usable),
	OSP_TEST(test_plain),
	OSP_TEST(test_login),
	OSP_TEST(test_cram_md5),
	OSP_TEST(test_scram_vectors),
	OSP_TEST(test_scram),
	OSP_TEST(test_scram_plus),
	OSP_TEST(test_cert_table),
	OSP_TEST(test_external),
	OSP_TEST(test_free_inflight),
	OSP_TEST(test_client_tool),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	int rc;

	rc = osp_test_main(argc, argv, "sasl", tests);
	osp_event_deinit();
	osp_accounts_set_current(NULL);
	osp_auth_set_current(NULL);
	osp_auth_close(fx.auth);
	osp_sasl_scram_test_nonce(NULL);
	free(fx.srv_cert);
	free(fx.srv_key);
	free(fx.c1_cert);
	free(fx.c1_key);
	free(fx.c2_cert);
	free(fx.c2_key);
	return rc;
}
