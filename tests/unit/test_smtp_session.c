/* SPDX-License-Identifier: ISC */
/* SMTP session state machine, in process: the real accept path
 * (smtp_session_accept) over socketpairs, the loop and its workers, a real
 * store, auth.db, sendlog and domains.yaml snapshot; exact reply lines. */
#include "core.h"
#include "io_int.h"

#include <dirent.h>
#include <errno.h>
#include <semaphore.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "smtp.h"
#include "testutil.h"

#define HAS_PREFIX(s, lit) (strncmp((s), (lit), strlen(lit)) == 0)

/* printf to the heap (free()). */
static char *xprintf(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
static char *
xprintf(const char *fmt, ...)
{
	va_list ap;
	char *r;

	va_start(ap, fmt);
	if (vasprintf(&r, fmt, ap) < 0)
		abort();
	va_end(ap);
	return r;
}

/*
 * The module context is built directly rather than through the loader:
 * the descriptor and its schema live in module.c, which only the dlopen'd
 * smtp.la contains. A config generation is made by hand (core.h's struct
 * osp_config, module index 0) holding a struct smtp_conf this file fills;
 * smtp_mod.ctx points at a context with that index, so
 * osp_config_module() in smtp_session_accept() finds it. Tests change
 * fields of `conf` between sessions (sessions read it through a pointer).
 * The listener infos are filled here too; no listener socket is bound.
 */

#define HOST		"mx.example.com"
#define ALICE_PW	"correct horse"

static const char accounts_yaml[] =
	"domains:\n"
	"  example.com: {}\n"
	"accounts:\n"
	"  alice:\n"
	"    domain: example.com\n"
	"    destinations:\n"
	"      alice: {}\n"
	"  bob:\n"
	"    domain: example.com\n"
	"    destinations:\n"
	"      bob: {}\n"
	"  carol:\n"
	"    domain: example.com\n"
	"    destinations:\n"
	"      carol: {}\n";

static struct smtp_conf conf;
static struct osp_module_ctx mctx = { .index = 0 };
static const struct smtp_listener_conf lc_mx = { SMTP_ROLE_DELIVERY };
static const struct smtp_listener_conf lc_sub = { SMTP_ROLE_SUBMISSION };
static const struct osp_listener_info li_mx = {
	.name = "mx", .protocol = "smtp", .tls = OSP_LISTENER_TLS_NONE,
	.port = 25, .conf = &lc_mx,
};
static const struct osp_listener_info li_sub = {
	.name = "submission", .protocol = "smtp",
	.tls = OSP_LISTENER_TLS_NONE, .port = 587, .conf = &lc_sub,
};

static struct {
	bool			 ok;
	const char		*dir;
	struct osp_store	*store;
	struct osp_auth		*auth;
	struct osp_sendlog	*sendlog;
} fx;

static void
conf_defaults(void)
{
	memset(&conf, 0, sizeof(conf));
	conf.hostname = HOST;
	conf.greeting = "ESMTP test";
	conf.max_message_size = 1024 * 1024;
	conf.max_recipients = 100;
	conf.max_errors = 20;
	conf.command_timeout = 10000;
	conf.data_timeout = 10000;
	conf.require_tls_for_auth = true;
	conf.auth_failure_delay = 150;
	conf.unknown_recipient_delay = 100;
}

static void
fixture(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *acc = NULL;
	struct osp_pool *pool;
	struct osp_config *gen;
	const char *err = NULL;

	/* One worker: the in-flight test holds it to freeze deliveries. */
	osp_event_deinit();
	CU_ASSERT_FATAL(osp_event_init(1) == OSP_OK);
	conf_defaults();
	if (fx.ok)
		return;
	fx.dir = osp_test_tmpdir();
	CU_ASSERT_FATAL(osp_sasl_builtin_init() == OSP_OK);
	CU_ASSERT_FATAL(osp_store_open(fx.dir, &fx.store, &err) == OSP_OK);
	osp_store_set_current(fx.store);
	CU_ASSERT_FATAL(osp_auth_open(fx.dir, &fx.auth, &err) == OSP_OK);
	osp_auth_set_current(fx.auth);
	CU_ASSERT_FATAL(osp_auth_set_password(fx.auth, "alice", ALICE_PW,
	    strlen(ALICE_PW), &err) == OSP_OK);
	CU_ASSERT_FATAL(osp_sendlog_open(fx.dir, &fx.sendlog, &err) ==
	    OSP_OK);
	osp_sendlog_set_current(fx.sendlog);
	CU_ASSERT_FATAL(osp_cid_init(fx.dir, true, &err) == OSP_OK);
	if (osp_accounts_load_string("domains.yaml", accounts_yaml, &acc,
	    &errs) != OSP_OK)
		fprintf(stderr, "%s\n", errs.text.data);
	osp_conf_errs_deinit(&errs);
	CU_ASSERT_FATAL(acc != NULL);
	osp_accounts_set_current(acc);

	pool = osp_pool_new(NULL);
	gen = osp_pcalloc(pool, 1, sizeof(*gen));
	gen->refs = 1;
	gen->pool = pool;
	gen->core.hostname = HOST;
	gen->module_conf = osp_pcalloc(pool, 1, sizeof(void *));
	gen->module_conf[0] = &conf;
	gen->nmodule_conf = 1;
	osp_config_set_current(gen);

	memset(&smtp_mod, 0, sizeof(smtp_mod));
	smtp_mod.ctx = &mctx;
	/* The module's own metric names (module.c smtp_init). */
	smtp_mod.m_rejected = osp_metric_new("osprey_smtp_rejected_total",
	    "SMTP commands or messages refused", OSP_METRIC_COUNTER,
	    "reason");
	smtp_mod.m_delivered = osp_metric_new("osprey_smtp_delivered_total",
	    "messages stored durably by the SMTP server",
	    OSP_METRIC_COUNTER, "role");
	smtp_mod.m_sessions = osp_metric_new("osprey_smtp_sessions",
	    "open SMTP sessions", OSP_METRIC_GAUGE, NULL);
	fx.ok = true;
}

/* ------------------------------------------------------------------ */
/* The client end of the socketpair and the loop                        */

static struct {
	struct osp_conn	*c;		/* the test's end */
	struct osp_conn	*srv;		/* the session's end */
	int		 fd;		/* cl.c's socket */
	struct osp_buf	 in;		/* received, not yet consumed */
	bool		 closed;	/* the session closed its side */
	size_t		 want;		/* replies awaited */
	size_t		 want_bytes;	/* or bytes awaited (slow mode) */
	uint64_t	 t_byte[8];	/* arrival of the first bytes */
	size_t		 nbytes;	/* bytes received in all */
} cl;

/* Number of complete replies at the start of p (a reply ends with a line
 * "NNN text" or "NNN"), and where the n-th ends. */
static size_t
count_replies(const char *p, size_t len, size_t n, size_t *end_r)
{
	size_t i = 0, start, count = 0;

	*end_r = 0;
	while (i < len) {
		start = i;
		while (i + 1 < len && !(p[i] == '\r' && p[i + 1] == '\n'))
			i++;
		if (i + 1 >= len)
			break;
		i += 2;
		if (i - start - 2 == 3 || (i - start - 2 > 3 &&
		    p[start + 3] == ' ')) {
			count++;
			if (count == n)
				*end_r = i;
		}
	}
	return count;
}

static void
client_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	const unsigned char *p;
	size_t len, i;
	uint64_t now = osp_now_ms();

	(void)arg;
	switch (ev) {
	case OSP_CONN_DATAIN:
		p = osp_conn_data(c, &len);
		for (i = 0; i < len; i++) {
			if (cl.nbytes < sizeof(cl.t_byte) /
			    sizeof(cl.t_byte[0]))
				cl.t_byte[cl.nbytes] = now;
			cl.nbytes++;
		}
		osp_buf_append(&cl.in, p, len);
		osp_conn_drain(c, len);
		break;
	case OSP_CONN_DISCONNECTED:
	case OSP_CONN_ERROR:
	case OSP_CONN_TIMEOUT:
		cl.closed = true;
		break;
	default:
		break;
	}
}

static bool timed_out;
static bool (*poll_pred)(void);

static void
poll_cb(void *arg)
{
	struct osp_timer *t = *(struct osp_timer **)arg;

	if (poll_pred()) {
		osp_event_exit();
		return;
	}
	osp_timer_add(t, 2);
}

static void
guard_cb(void *arg)
{
	(void)arg;
	timed_out = true;
	osp_event_exit();
}

/* Runs the loop until pred() holds (checked every 2 ms) or ms passed;
 * true when pred() holds. */
static bool
run_until(bool (*pred)(void), uint64_t ms)
{
	struct osp_timer *g, *t;

	if (pred())
		return true;
	g = osp_timer_new(guard_cb, NULL);
	t = osp_timer_new(poll_cb, &t);
	poll_pred = pred;
	timed_out = false;
	osp_timer_add(g, ms);
	osp_timer_add(t, 2);
	osp_event_run();
	osp_timer_free(g);
	osp_timer_free(t);
	return pred();
}

static bool
have_replies(void)
{
	size_t end;

	return cl.closed || count_replies(cl.in.data, cl.in.len, cl.want,
	    &end) >= cl.want;
}

static bool
have_bytes(void)
{
	return cl.closed || cl.in.len >= cl.want_bytes;
}

static bool
is_closed(void)
{
	return cl.closed;
}

static bool
never(void)
{
	return false;
}

/* Runs the loop for ms. */
static void
pause_ms(uint64_t ms)
{
	run_until(never, ms);
}

static bool
no_sessions(void)
{
	return smtp_mod.sessions == NULL;
}

/* Waits for n replies and returns them (heap), consumed from cl.in;
 * what arrived when fewer came (closed, timeout). */
static char *
replies(size_t n, uint64_t ms)
{
	size_t end;
	char *r;

	cl.want = n;
	run_until(have_replies, ms);
	if (count_replies(cl.in.data, cl.in.len, n, &end) < n)
		end = cl.in.len;
	r = osp_strndup(cl.in.data != NULL ? cl.in.data : "", end);
	osp_buf_consume(&cl.in, end);
	return r;
}

/* Asserts that the next replies are exactly `want` (CRLFs included). */
#define EXPECT(want) expect_(want, __LINE__)
static void
expect_(const char *want, int line)
{
	size_t end, n = count_replies(want, strlen(want), 0, &end);
	char *got = replies(n, 5000);

	if (strcmp(got, want) != 0)
		fprintf(stderr, "line %d: expected [%s], got [%s]\n", line,
		    want, got);
	CU_ASSERT_STRING_EQUAL(got, want);
	osp_free(got);
}

static void
send_str(const char *s)
{
	osp_conn_write(cl.c, s, strlen(s));
}

static void
ignore_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	(void)c;
	(void)ev;
	(void)arg;
}

/* A session on listener li over a fresh socketpair; reads the greeting. */
static void
session_start(const struct osp_listener_info *li)
{
	int sv[2];

	osp_buf_deinit(&cl.in);
	memset(&cl, 0, sizeof(cl));
	CU_ASSERT_FATAL(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0,
	    sv) == 0);
	cl.srv = osp_conn_new(sv[0], ignore_cb, NULL);
	cl.c = osp_conn_new(sv[1], client_cb, NULL);
	cl.fd = sv[1];
	CU_ASSERT_FATAL(cl.srv != NULL && cl.c != NULL);
	smtp_session_accept(cl.srv, li, NULL);
	EXPECT("220 " HOST " ESMTP test\r\n");
}

/* Closes the client end (if still open) and waits for the session to
 * go. */
static void
session_end(void)
{
	if (cl.c != NULL)
		osp_conn_free(cl.c);
	cl.c = NULL;
	CU_ASSERT(run_until(no_sessions, 5000));
	CU_ASSERT_EQUAL(osp_metric_get(smtp_mod.m_sessions, NULL), 0);
	osp_buf_deinit(&cl.in);
}

static const char ehlo_mx[] =
	"250-" HOST "\r\n"
	"250-PIPELINING\r\n"
	"250-SIZE 1048576\r\n"
	"250-8BITMIME\r\n"
	"250-ENHANCEDSTATUSCODES\r\n"
	"250-SMTPUTF8\r\n"
	"250-CHUNKING\r\n"
	"250-BINARYMIME\r\n"
	"250-DSN\r\n"
	"250-LIMITS RCPTMAX=100\r\n"
	"250 HELP\r\n";

/* ------------------------------------------------------------------ */
/* Store helpers                                                        */

/* Messages in the account's Inbox; the last one's prefix and file text
 * (heap, NULL when none) in *prefix_r / *body_r when not NULL. */
static size_t
inbox(const char *account, char **prefix_r, char **body_r)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_account *acc = NULL;
	struct osp_mailbox mb;
	struct osp_message *list = NULL;
	const char *err = NULL;
	struct osp_buf b = { 0 };
	char buf[4096];
	size_t n = 0;
	ssize_t r;
	int fd;

	if (prefix_r != NULL)
		*prefix_r = NULL;
	if (body_r != NULL)
		*body_r = NULL;
	CU_ASSERT_FATAL(osp_account_open(fx.store, account, true, &acc,
	    &err) == OSP_OK);
	CU_ASSERT_FATAL(osp_mailbox_get(acc, "Inbox", pool, &mb, &err) ==
	    OSP_OK);
	CU_ASSERT_FATAL(osp_message_list(acc, mb.id, NULL,
	    OSP_MSG_WITH_PREFIX, pool, &list, &n, &err) == OSP_OK);
	if (n > 0 && prefix_r != NULL)
		*prefix_r = osp_strndup(list[n - 1].prefix,
		    list[n - 1].prefix_len);
	if (n > 0 && body_r != NULL &&
	    osp_message_open(acc, list[n - 1].id, &fd, &err) == OSP_OK) {
		while ((r = read(fd, buf, sizeof(buf))) > 0)
			osp_buf_append(&b, buf, (size_t)r);
		close(fd);
		*body_r = osp_strndup(b.data != NULL ? b.data : "", b.len);
		osp_buf_deinit(&b);
	}
	osp_account_unref(acc);
	osp_pool_free(pool);
	return n;
}

/* Whether the store's tmp dir holds no SMTP message file (every
 * transaction and delivery job cleaned up). */
static bool
tmp_clean(void)
{
	DIR *d = opendir(osp_store_tmpdir(fx.store));
	struct dirent *e;
	bool clean = true;

	if (d == NULL)
		return true;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "smtp-", 5) == 0)
			clean = false;
	closedir(d);
	return clean;
}

static bool
quiet(void)
{
	return smtp_mod.sessions == NULL && tmp_clean() &&
	    osp_worker_inflight() == 0;
}

/* ------------------------------------------------------------------ */
/* Greeting and EHLO                                                    */

static void
test_ehlo_delivery(void)
{
	fixture();
	session_start(&li_mx);
	send_str("EHLO client.example\r\n");
	/* No STARTTLS (listener without TLS), no REQUIRETLS (not TLS), no
	 * AUTH (delivery role). */
	EXPECT(ehlo_mx);
	send_str("HELO client.example\r\n");
	EXPECT("250 " HOST "\r\n");
	/* AUTH is for submission listeners. */
	send_str("AUTH PLAIN AGFsaWNlAHg=\r\n");
	EXPECT("502 5.5.1 AUTH not available here\r\n");
	send_str("EHLO bad!name\r\n");
	EXPECT("501 5.5.4 Invalid EHLO hostname or address literal\r\n");
	session_end();
}

static void
test_ehlo_submission(void)
{
	fixture();
	/* require-tls-for-auth (default): no AUTH without TLS. */
	session_start(&li_sub);
	send_str("EHLO client.example\r\n");
	EXPECT(ehlo_mx);
	send_str("AUTH PLAIN AGFsaWNlAHg=\r\n");
	EXPECT("538 5.7.11 Encryption required for requested "
	    "authentication mechanism\r\n");
	send_str("MAIL FROM:<alice@example.com>\r\n");
	EXPECT("530 5.7.0 Authentication required\r\n");
	session_end();

	conf.require_tls_for_auth = false;
	session_start(&li_sub);
	send_str("EHLO client.example\r\n");
	EXPECT("250-" HOST "\r\n"
	    "250-PIPELINING\r\n"
	    "250-SIZE 1048576\r\n"
	    "250-8BITMIME\r\n"
	    "250-ENHANCEDSTATUSCODES\r\n"
	    "250-SMTPUTF8\r\n"
	    "250-CHUNKING\r\n"
	    "250-BINARYMIME\r\n"
	    "250-DSN\r\n"
	    "250-AUTH SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 PLAIN LOGIN\r\n"
	    "250-LIMITS RCPTMAX=100\r\n"
	    "250 HELP\r\n");
	/* AUTH needs EHLO, not HELO. */
	send_str("HELO client.example\r\n");
	EXPECT("250 " HOST "\r\n");
	send_str("AUTH PLAIN\r\n");
	EXPECT("503 5.5.1 Send EHLO first\r\n");
	session_end();
}

/* ------------------------------------------------------------------ */
/* State machine                                                        */

static void
test_sequence(void)
{
	uint64_t t0;

	fixture();
	session_start(&li_mx);
	send_str("MAIL FROM:<a@remote.example>\r\n");
	EXPECT("503 5.5.1 Send HELO or EHLO first\r\n");
	send_str("EHLO client.example\r\n");
	EXPECT(ehlo_mx);
	send_str("RCPT TO:<alice@example.com>\r\n");
	EXPECT("503 5.5.1 Send MAIL first\r\n");
	send_str("DATA\r\n");
	EXPECT("503 5.5.1 Send MAIL first\r\n");
	send_str("BDAT 3 LAST\r\nabc");
	EXPECT("503 5.5.1 Send MAIL first\r\n");
	send_str("MAIL FROM:<a@remote.example>\r\n");
	EXPECT("250 2.1.0 Ok\r\n");
	/* RFC 5321 §3.3 allows 503 or 554 here; the module says 554. */
	send_str("DATA\r\n");
	EXPECT("554 5.5.1 No valid recipients\r\n");
	send_str("MAIL FROM:<b@remote.example>\r\n");
	EXPECT("503 5.5.1 Nested MAIL command\r\n");
	send_str("RCPT TO:<alice@example.com>\r\n");
	EXPECT("250 2.1.5 Ok\r\n");
	send_str("RSET\r\n");
	EXPECT("250 2.0.0 Ok\r\n");
	/* RSET ended the transaction. */
	send_str("RCPT TO:<alice@example.com>\r\n");
	EXPECT("503 5.5.1 Send MAIL first\r\n");
	send_str("RSET x\r\n");
	EXPECT("501 5.5.4 RSET takes no parameters\r\n");
	send_str("NOOP\r\n");
	EXPECT("250 2.0.0 Ok\r\n");
	send_str("HELP\r\n");
	EXPECT("214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP "
	    "QUIT VRFY EXPN HELP STARTTLS AUTH; see RFC 5321\r\n");
	send_str("VRFY alice\r\nEXPN staff\r\n");
	EXPECT("252 2.5.0 Cannot VRFY user, but will accept message and "
	    "attempt delivery\r\n"
	    "252 2.5.0 Cannot VRFY user, but will accept message and "
	    "attempt delivery\r\n");
	send_str("STARTTLS\r\n");
	EXPECT("502 5.5.1 STARTTLS not available\r\n");
	send_str("FROB\r\n");
	EXPECT("500 5.5.1 Command unrecognized\r\n");
	send_str("NOOP\n");
	EXPECT("500 5.5.2 Bare LF in command: lines must end with CRLF\r\n");
	/* Policy replies (not counted as errors). */
	send_str("MAIL FROM:<a@remote.example>\r\n"
	    "RCPT TO:<x@elsewhere.example>\r\n");
	EXPECT("250 2.1.0 Ok\r\n"
	    "554 5.7.1 <x@elsewhere.example>: Relay access denied\r\n");
	t0 = osp_now_ms();
	send_str("RCPT TO:<nobody@example.com>\r\n");
	EXPECT("550 5.1.1 <nobody@example.com>: Recipient address "
	    "rejected: no such user\r\n");
	/* unknown-recipient-delay */
	CU_ASSERT(osp_now_ms() - t0 >= 95);
	send_str("QUIT\r\n");
	EXPECT("221 2.0.0 " HOST " Bye\r\n");
	CU_ASSERT(run_until(is_closed, 2000));
	session_end();
}

static void
test_max_errors(void)
{
	int64_t before;

	fixture();
	conf.max_errors = 3;
	before = osp_metric_get(smtp_mod.m_rejected, "too-many-errors");
	session_start(&li_mx);
	/* The NOOP after the third error is never answered. */
	send_str("FROB\r\nFROB\r\nFROB\r\nNOOP\r\n");
	EXPECT("500 5.5.1 Command unrecognized\r\n"
	    "500 5.5.1 Command unrecognized\r\n"
	    "500 5.5.1 Command unrecognized\r\n"
	    "421 4.7.0 " HOST " Too many errors, closing connection\r\n");
	CU_ASSERT(run_until(is_closed, 2000));
	CU_ASSERT_EQUAL(cl.in.len, 0);
	CU_ASSERT_EQUAL(osp_metric_get(smtp_mod.m_rejected,
	    "too-many-errors"), before + 1);
	session_end();
}

static void
test_command_timeout(void)
{
	uint64_t t0;

	fixture();
	conf.command_timeout = 1000;	/* the schema's minimum */
	session_start(&li_mx);
	send_str("EHLO client.example\r\n");
	EXPECT(ehlo_mx);
	/* The timer restarts with each command. */
	t0 = osp_now_ms();
	EXPECT("421 4.4.2 " HOST " Timeout, closing connection\r\n");
	CU_ASSERT(osp_now_ms() - t0 >= 990);
	CU_ASSERT(osp_now_ms() - t0 < 5000);
	CU_ASSERT(run_until(is_closed, 2000));
	session_end();
}

/* Sizes and lines: a declared SIZE over the limit, a message over it,
 * an overlong line, a NUL, too many recipients. */
static void
test_limits(void)
{
	struct osp_buf b = { 0 };
	int i;

	fixture();
	conf.max_message_size = 1024;
	session_start(&li_mx);
	send_str("EHLO client.example\r\n");
	osp_free(replies(1, 5000));
	send_str("MAIL FROM:<s@remote.example> SIZE=2000\r\n");
	EXPECT("552 5.3.4 Message size exceeds fixed maximum message "
	    "size\r\n");
	/* Over the limit only at the end: the whole message is read and
	 * refused, the session in sync. */
	osp_buf_puts(&b, "MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<alice@example.com>\r\nDATA\r\n");
	for (i = 0; i < 40; i++)
		osp_buf_puts(&b, "0123456789012345678901234567890123456789"
		    "\r\n");
	osp_buf_puts(&b, ".\r\nNOOP\r\n");
	osp_conn_write(cl.c, b.data, b.len);
	osp_buf_deinit(&b);
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
	    "552 5.3.4 Message size exceeds fixed maximum message size\r\n"
	    "250 2.0.0 Ok\r\n");
	/* RFC 5321 §4.5.3.1.4: 512 octets with CRLF. */
	osp_buf_puts(&b, "NOOP ");
	for (i = 0; i < 51; i++)
		osp_buf_puts(&b, "0123456789");
	osp_buf_puts(&b, "\r\nNOOP\r\n");
	osp_conn_write(cl.c, b.data, b.len);
	osp_buf_deinit(&b);
	EXPECT("500 5.5.2 Line too long\r\n"
	    "250 2.0.0 Ok\r\n");
	osp_conn_write(cl.c, "NO\0OP\r\n", 7);
	EXPECT("500 5.5.2 NUL byte in command\r\n");
	/* RFC 5321 §4.5.3.1.10: 452 past max-recipients. */
	osp_buf_puts(&b, "MAIL FROM:<s@remote.example>\r\n");
	for (i = 0; i < 101; i++)
		osp_buf_puts(&b, "RCPT TO:<alice@example.com>\r\n");
	osp_conn_write(cl.c, b.data, b.len);
	osp_buf_deinit(&b);
	osp_buf_puts(&b, "250 2.1.0 Ok\r\n");
	for (i = 0; i < 100; i++)
		osp_buf_puts(&b, "250 2.1.5 Ok\r\n");
	osp_buf_puts(&b, "452 4.5.3 Too many recipients\r\n");
	EXPECT(b.data);
	osp_buf_deinit(&b);
	session_end();
	CU_ASSERT(tmp_clean());
}

/* ------------------------------------------------------------------ */
/* Deliveries                                                           */

/* The client half-closes after a pipelined transaction and QUIT: every
 * command sent before the close is still answered, then the session
 * closes. */
static void
test_half_close(void)
{
	char *r;
	size_t n0;

	fixture();
	n0 = inbox("alice", NULL, NULL);
	session_start(&li_mx);
	send_str("EHLO client.example\r\n"
	    "MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "DATA\r\n"
	    "Subject: half\r\n\r\nx\r\n.\r\n"
	    "QUIT\r\n");
	/* Let the write go out, then send FIN. */
	pause_ms(20);
	CU_ASSERT(shutdown(cl.fd, SHUT_WR) == 0);
	EXPECT(ehlo_mx);
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	r = replies(1, 5000);
	CU_ASSERT(HAS_PREFIX(r, "250 2.0.0 Ok: delivered as "));
	osp_free(r);
	EXPECT("221 2.0.0 " HOST " Bye\r\n");
	CU_ASSERT(run_until(is_closed, 2000));
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), n0 + 1);
	session_end();
}

static void
test_pipelined_data(void)
{
	char *r, *prefix, *body, *want;
	size_t n0;

	fixture();
	n0 = inbox("alice", NULL, NULL);
	session_start(&li_mx);
	/* Everything in one write (RFC 2920). */
	send_str("EHLO client.example\r\n"
	    "MAIL FROM:<sender@remote.example> SIZE=100\r\n"
	    "RCPT TO:<nobody@example.com>\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "DATA\r\n"
	    "Subject: pipelined\r\n"
	    "\r\n"
	    "..leading dot\r\n"
	    "body\r\n"
	    ".\r\n"
	    "NOOP\r\n"
	    "QUIT\r\n");
	EXPECT(ehlo_mx);
	EXPECT("250 2.1.0 Ok\r\n"
	    "550 5.1.1 <nobody@example.com>: Recipient address rejected: "
	    "no such user\r\n"
	    "250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	r = replies(1, 5000);
	CU_ASSERT(strncmp(r, "250 2.0.0 Ok: delivered as ", 27) == 0);
	/* The 250 comes after the commit: the message is there now. */
	CU_ASSERT_EQUAL_FATAL(inbox("alice", &prefix, &body), n0 + 1);
	CU_ASSERT_STRING_EQUAL(body, "Subject: pipelined\r\n\r\n"
	    ".leading dot\r\nbody\r\n");
	/* The added headers, exactly; the Received id is the one the 250
	 * gave (the AF_UNIX peer shows as "unix"). */
	r[strlen(r) - 2] = '\0';
	want = xprintf("Return-Path: <sender@remote.example>\r\n"
	    "Delivered-To: alice@example.com\r\n"
	    "Received: from client.example ([unix])\r\n"
	    "\tby " HOST " (Osprey) with ESMTP id %s\r\n"
	    "\tfor <alice@example.com>; ", r + 27);
	CU_ASSERT(HAS_PREFIX(prefix, want));
	/* ...then the date (RFC 5322 §3.3, UTC) ends the prefix. */
	CU_ASSERT(strlen(prefix) > strlen(want) + 8 &&
	    strcmp(prefix + strlen(prefix) - 8, " +0000\r\n") == 0 &&
	    strchr(prefix + strlen(want), '\n') ==
	    prefix + strlen(prefix) - 1);
	free(want);
	osp_free(r);
	osp_free(prefix);
	osp_free(body);
	EXPECT("250 2.0.0 Ok\r\n"
	    "221 2.0.0 " HOST " Bye\r\n");
	CU_ASSERT(run_until(is_closed, 2000));
	session_end();
	CU_ASSERT(tmp_clean());
}

static void
test_bdat(void)
{
	char *r, *body;
	size_t n0;

	fixture();
	n0 = inbox("alice", NULL, NULL);
	session_start(&li_mx);
	send_str("EHLO client.example\r\n");
	EXPECT(ehlo_mx);
	/* BDAT chunks, pipelined, and an empty LAST chunk (RFC 3030). */
	send_str("MAIL FROM:<s@remote.example> BODY=BINARYMIME\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "BDAT 21\r\nSubject: chunks\r\n\r\nab"
	    "BDAT 6\r\nc\r\nd\ne"
	    "BDAT 0 LAST\r\n");
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "250 2.0.0 21 octets received\r\n"
	    "250 2.0.0 27 octets received\r\n");
	r = replies(1, 5000);
	CU_ASSERT(strncmp(r, "250 2.0.0 Ok: delivered as ", 27) == 0);
	osp_free(r);
	CU_ASSERT_EQUAL_FATAL(inbox("alice", NULL, &body), n0 + 1);
	CU_ASSERT_STRING_EQUAL(body, "Subject: chunks\r\n\r\nabc\r\nd\ne");
	osp_free(body);

	/* A chunk with LAST; DATA is refused in a BDAT transaction. */
	send_str("MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "BDAT 5\r\nX: 1\n"
	    "DATA\r\n"
	    "BDAT 14 LAST\r\n\r\nlast chunk\r\n");
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "250 2.0.0 5 octets received\r\n"
	    "503 5.5.1 DATA not allowed after BDAT\r\n");
	/* Without BINARYMIME the bare LF in the first chunk fails the
	 * message at its end. */
	EXPECT("550 5.6.0 Message contains bare LF: lines must end with "
	    "CRLF (RFC 5321 2.3.8)\r\n");
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), n0 + 1);
	send_str("NOOP\r\n");
	EXPECT("250 2.0.0 Ok\r\n");
	session_end();
	CU_ASSERT(tmp_clean());
}

/* SMTP smuggling (RFC 5321 §2.3.8): "\n.\n" does not end DATA; the
 * message is refused once CRLF.CRLF comes and the session stays in
 * sync: the smuggled MAIL is message text, never a command. */
static void
test_smuggling(void)
{
	static const struct {
		const char	*end;
		const char	*what;
	} variants[] = {
		{ "\r\n.\n", "bare LF" },
		{ "\n.\r\n", "bare LF" },
		{ "\r.\r\n", "bare CR" },
		{ "\r\n.\r", "bare CR" },
		{ "\r\n.\rx\n", "bare CR and LF" },
	};
	size_t n0, i;
	char *cmd;

	fixture();
	n0 = inbox("alice", NULL, NULL);
	session_start(&li_mx);
	send_str("EHLO client.example\r\n"
	    "MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "DATA\r\n");
	EXPECT(ehlo_mx);
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	send_str("Subject: a\r\n\r\nbody\n.\n"
	    "MAIL FROM:<evil@remote.example>\r\n"
	    "RCPT TO:<bob@example.com>\r\n"
	    "DATA\r\n"
	    "Subject: smuggled\r\n\r\nx\r\n"
	    ".\r\n"
	    "NOOP\r\n");
	EXPECT("550 5.6.0 Message contains bare LF: lines must end with "
	    "CRLF (RFC 5321 2.3.8)\r\n"
	    "250 2.0.0 Ok\r\n");
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), n0);
	CU_ASSERT_EQUAL(inbox("bob", NULL, NULL), 0);
	/* No transaction is open. */
	send_str("RCPT TO:<alice@example.com>\r\n");
	EXPECT("503 5.5.1 Send MAIL first\r\n");
	/* The other end-of-data look-alikes. */
	for (i = 0; i < sizeof(variants) / sizeof(variants[0]); i++) {
		cmd = xprintf("MAIL FROM:<s@remote.example>\r\n"
		    "RCPT TO:<alice@example.com>\r\n"
		    "DATA\r\n"
		    "Subject: a\r\n\r\nbody%s"
		    "MAIL FROM:<evil@remote.example>\r\n"
		    "RCPT TO:<bob@example.com>\r\n"
		    "DATA\r\n"
		    "x\r\n.\r\n"
		    "NOOP\r\n", variants[i].end);
		send_str(cmd);
		free(cmd);
		cmd = xprintf("250 2.1.0 Ok\r\n"
		    "250 2.1.5 Ok\r\n"
		    "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
		    "550 5.6.0 Message contains %s: lines must end with "
		    "CRLF (RFC 5321 2.3.8)\r\n"
		    "250 2.0.0 Ok\r\n", variants[i].what);
		EXPECT(cmd);
		free(cmd);
	}
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), n0);
	CU_ASSERT_EQUAL(inbox("bob", NULL, NULL), 0);
	session_end();
	CU_ASSERT(tmp_clean());
}

/* ------------------------------------------------------------------ */
/* AUTH                                                                 */

static char *
plain(const char *user, const char *pw)
{
	struct osp_buf raw = { 0 }, b = { 0 };
	char *r;

	osp_buf_append(&raw, "", 1);
	osp_buf_puts(&raw, user);
	osp_buf_append(&raw, "", 1);
	osp_buf_puts(&raw, pw);
	osp_base64_encode(raw.data, raw.len, &b);
	r = xprintf("AUTH PLAIN %s\r\n", b.data);
	osp_buf_deinit(&raw);
	osp_buf_deinit(&b);
	return r;
}

static void
test_auth_submission(void)
{
	char *cmd, *r;
	size_t n0;

	fixture();
	conf.require_tls_for_auth = false;
	n0 = inbox("bob", NULL, NULL);
	session_start(&li_sub);
	send_str("EHLO client.example\r\n");
	CU_ASSERT(strstr(r = replies(1, 5000), "250-AUTH ") != NULL);
	osp_free(r);
	send_str("MAIL FROM:<alice@example.com>\r\n");
	EXPECT("530 5.7.0 Authentication required\r\n");
	/* RFC 4954 §4: "*" cancels; LOGIN asks for the user name. */
	send_str("AUTH LOGIN\r\n");
	EXPECT("334 VXNlcm5hbWU6\r\n");
	send_str("*\r\n");
	EXPECT("501 5.0.0 Authentication cancelled\r\n");
	send_str("AUTH FOO\r\n");
	EXPECT("504 5.5.4 Unrecognized authentication type\r\n");
	cmd = plain("alice", ALICE_PW);
	send_str(cmd);
	free(cmd);
	EXPECT("235 2.7.0 Authentication successful\r\n");
	send_str("AUTH PLAIN\r\n");
	EXPECT("503 5.5.1 Already authenticated\r\n");
	/* An account sends only as its own addresses. */
	send_str("MAIL FROM:<bob@example.com>\r\n");
	EXPECT("550 5.7.1 Account alice may not send as "
	    "<bob@example.com>\r\n");
	send_str("MAIL FROM:<alice@example.com>\r\n"
	    "RCPT TO:<bob@example.com>\r\n"
	    "RCPT TO:<someone@remote.example>\r\n"
	    "DATA\r\n"
	    "From: Alice <alice@example.com>\r\n"
	    "Subject: hi\r\n\r\nhello bob\r\n.\r\n");
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "451 4.3.0 <someone@remote.example>: outgoing queue not "
	    "implemented yet: cannot send to remote domains\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	r = replies(1, 5000);
	CU_ASSERT(strncmp(r, "250 2.0.0 Ok: delivered as ", 27) == 0);
	osp_free(r);
	CU_ASSERT_EQUAL(inbox("bob", NULL, NULL), n0 + 1);
	/* From must be the account's too. */
	send_str("MAIL FROM:<alice@example.com>\r\n"
	    "RCPT TO:<bob@example.com>\r\n"
	    "DATA\r\n"
	    "From: <carol@example.com>\r\n\r\nx\r\n.\r\n");
	EXPECT("250 2.1.0 Ok\r\n"
	    "250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n"
	    "550 5.7.1 Account alice may not send as <carol@example.com> "
	    "(From header)\r\n");
	CU_ASSERT_EQUAL(inbox("bob", NULL, NULL), n0 + 1);
	session_end();
	CU_ASSERT(tmp_clean());
}

/* Failed AUTH: each reply held back by auth-failure-delay; from the
 * third failure the session is slow (1 byte/s out, no reading until the
 * output is out). */
static void
test_auth_failures(void)
{
	uint64_t t0, dt;
	char *bad;
	int i;

	fixture();
	conf.require_tls_for_auth = false;
	conf.auth_failure_delay = 150;
	session_start(&li_sub);
	send_str("EHLO client.example\r\n");
	osp_free(replies(1, 5000));
	bad = plain("alice", "wrong");
	for (i = 0; i < 2; i++) {
		t0 = osp_now_ms();
		send_str(bad);
		EXPECT("535 5.7.8 Authentication credentials invalid\r\n");
		dt = osp_now_ms() - t0;
		CU_ASSERT(dt >= 145);
		CU_ASSERT(dt < 2500);
	}
	/* Malformed base64: 501 right away, not a failed login. */
	send_str("AUTH PLAIN ====\r\n");
	EXPECT("501 5.5.2 Invalid base64 in initial response\r\n");
	/* The third failure: after the delay, one byte per second. Two
	 * bytes take at least delay + 2 s; the first arrives alone. */
	t0 = osp_now_ms();
	send_str(bad);
	send_str("NOOP\r\n");
	cl.nbytes = 0;
	cl.want_bytes = 2;
	CU_ASSERT(run_until(have_bytes, 5000));
	CU_ASSERT_EQUAL(cl.nbytes, 2);
	CU_ASSERT(cl.t_byte[0] - t0 >= 150 + 1000 - 10);
	CU_ASSERT(cl.t_byte[1] - cl.t_byte[0] >= 1000 - 10);
	CU_ASSERT(strncmp(cl.in.data, "53", 2) == 0);
	free(bad);
	/* The client gives up mid-reply: the session goes with its slow
	 * output pending (no leak, no timer left behind). */
	session_end();
}

/* ------------------------------------------------------------------ */
/* The session freed while its delivery is in flight                    */

static sem_t blocker_sem;

static void
blocker_work(void *arg)
{
	(void)arg;
	while (sem_wait(&blocker_sem) == -1 && errno == EINTR)
		;
}

static void
blocker_done(void *arg)
{
	(void)arg;
}

static bool
session_busy(void)
{
	return smtp_mod.sessions != NULL &&
	    (smtp_mod.sessions->busy == SMTP_BUSY_DELIVER ||
	    smtp_mod.sessions->busy == SMTP_BUSY_SENDLOG);
}

/* Sends a transaction to `rcpt` and returns with its delivery frozen
 * behind the blocker job on the only worker, in state `want`
 * (SMTP_BUSY_NONE: either). */
static void
start_frozen(const char *rcpt, enum smtp_busy want)
{
	char *cmd;

	osp_worker_submit(blocker_work, blocker_done, NULL);
	session_start(&li_mx);
	cmd = xprintf("EHLO client.example\r\n"
	    "MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<%s>\r\n"
	    "DATA\r\n"
	    "Subject: in flight\r\n\r\nx\r\n.\r\n", rcpt);
	send_str(cmd);
	free(cmd);
	CU_ASSERT(run_until(session_busy, 5000));
	CU_ASSERT_FATAL(smtp_mod.sessions != NULL);
	if (want != SMTP_BUSY_NONE)
		CU_ASSERT_EQUAL(smtp_mod.sessions->busy, want);
}

static void
test_free_inflight(void)
{
	struct osp_account *acc = NULL;
	const char *err = NULL;
	size_t na, nc;
	char *r;

	fixture();
	CU_ASSERT_FATAL(sem_init(&blocker_sem, 0, 0) == 0);
	na = inbox("alice", NULL, NULL);

	/* 0. 250 only after the commit: with the store's job held, no
	 * final reply comes and nothing is stored; released, both come. */
	start_frozen("alice@example.com", SMTP_BUSY_NONE);
	pause_ms(100);
	EXPECT(ehlo_mx);
	EXPECT("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	CU_ASSERT_EQUAL(cl.in.len, 0);
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), na);
	sem_post(&blocker_sem);
	r = replies(1, 5000);
	CU_ASSERT(HAS_PREFIX(r, "250 2.0.0 Ok: delivered as "));
	osp_free(r);
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), na + 1);
	session_end();
	na++;

	/* 1. The client closes right after the final dot, delivery (alice
	 * is in the module's account cache) waiting for the worker: the
	 * session is still answered into the void, the message stored.
	 * (Alone, with --match, alice is not cached yet: worker stage.) */
	start_frozen("alice@example.com", SMTP_BUSY_NONE);
	osp_conn_free(cl.c);
	cl.c = NULL;
	pause_ms(50);
	sem_post(&blocker_sem);
	CU_ASSERT(run_until(quiet, 5000));
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), na + 1);
	session_end();

	/* 2. The connection dies (as on ERROR/TIMEOUT) with the delivery
	 * queued: the job is detached and still completes. */
	start_frozen("alice@example.com", SMTP_BUSY_DELIVER);
	osp_conn_free(cl.srv);
	CU_ASSERT(smtp_mod.sessions == NULL);
	sem_post(&blocker_sem);
	CU_ASSERT(run_until(quiet, 5000));
	CU_ASSERT_EQUAL(inbox("alice", NULL, NULL), na + 2);
	session_end();

	/* 3. The same at the worker stage (carol's account not open yet):
	 * the detached job drops the message and keeps the account. */
	nc = inbox("carol", NULL, NULL);
	smtp_deliver_fini();	/* empty the cache: carol not open */
	start_frozen("carol@example.com", SMTP_BUSY_SENDLOG);
	osp_conn_free(cl.srv);
	sem_post(&blocker_sem);
	CU_ASSERT(run_until(quiet, 5000));
	CU_ASSERT_EQUAL(inbox("carol", NULL, NULL), nc);
	session_end();
	sem_destroy(&blocker_sem);

	/* Last references: with OSPREY_STORE_CHECK=1 each account's
	 * consistency check runs (and aborts on failure). */
	smtp_deliver_fini();
	CU_ASSERT(osp_account_open(fx.store, "alice", false, &acc, &err) ==
	    OSP_OK);
	osp_account_unref(acc);
	CU_ASSERT(tmp_clean());
}

static enum smtp_busy busy_want;

static bool
session_busy_with(void)
{
	return smtp_mod.sessions != NULL &&
	    smtp_mod.sessions->busy == busy_want;
}

/* Sessions that go mid-way: mid-DATA and mid-BDAT (the temp file goes),
 * during the AUTH failure delay (its timer goes) and while a SASL step
 * runs on the worker (the step completes into a freed exchange). */
static void
test_free_midway(void)
{
	char *bad;

	fixture();
	CU_ASSERT_FATAL(sem_init(&blocker_sem, 0, 0) == 0);
	session_start(&li_mx);
	send_str("EHLO client.example\r\n"
	    "MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "DATA\r\nSubject: cut\r\n\r\nhalf a mess");
	EXPECT(ehlo_mx);
	EXPECT("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
	    "354 Start mail input; end with <CRLF>.<CRLF>\r\n");
	CU_ASSERT(!tmp_clean());
	session_end();
	CU_ASSERT(tmp_clean());

	session_start(&li_mx);
	send_str("EHLO client.example\r\n"
	    "MAIL FROM:<s@remote.example>\r\n"
	    "RCPT TO:<alice@example.com>\r\n"
	    "BDAT 100 LAST\r\nSubject: cut\r\n");
	EXPECT(ehlo_mx);
	EXPECT("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n");
	session_end();
	CU_ASSERT(tmp_clean());

	conf.require_tls_for_auth = false;
	conf.auth_failure_delay = 5000;
	bad = plain("alice", "wrong");
	session_start(&li_sub);
	send_str("EHLO client.example\r\n");
	osp_free(replies(1, 5000));
	send_str(bad);
	busy_want = SMTP_BUSY_DELAY;
	CU_ASSERT(run_until(session_busy_with, 5000));
	osp_conn_free(cl.srv);
	CU_ASSERT(smtp_mod.sessions == NULL);
	session_end();

	osp_worker_submit(blocker_work, blocker_done, NULL);
	session_start(&li_sub);
	send_str("EHLO client.example\r\n");
	osp_free(replies(1, 5000));
	send_str(bad);
	busy_want = SMTP_BUSY_SASL;
	CU_ASSERT(run_until(session_busy_with, 5000));
	osp_conn_free(cl.srv);
	CU_ASSERT(smtp_mod.sessions == NULL);
	sem_post(&blocker_sem);
	CU_ASSERT(run_until(quiet, 5000));
	session_end();
	free(bad);
	sem_destroy(&blocker_sem);
}

static const struct osp_test tests[] = {
	OSP_TEST(test_ehlo_delivery),
	OSP_TEST(test_ehlo_submission),
	OSP_TEST(test_sequence),
	OSP_TEST(test_max_errors),
	OSP_TEST(test_limits),
	OSP_TEST(test_pipelined_data),
	OSP_TEST(test_bdat),
	OSP_TEST(test_smuggling),
	OSP_TEST(test_half_close),
	OSP_TEST(test_auth_submission),
	OSP_TEST(test_auth_failures),
	OSP_TEST(test_command_timeout),
	OSP_TEST(test_free_inflight),
	OSP_TEST(test_free_midway),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	int rc;

	rc = osp_test_main(argc, argv, "smtp_session", tests);
	smtp_deliver_fini();
	osp_event_deinit();
	osp_config_set_current(NULL);
	osp_accounts_set_current(NULL);
	osp_auth_set_current(NULL);
	osp_sendlog_set_current(NULL);
	osp_store_set_current(NULL);
	if (fx.auth != NULL)
		osp_auth_close(fx.auth);
	if (fx.sendlog != NULL)
		osp_sendlog_close(fx.sendlog);
	if (fx.store != NULL)
		osp_store_close(fx.store);
	osp_metrics_free_all();
	return rc;
}
