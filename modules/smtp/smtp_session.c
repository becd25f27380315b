/* SPDX-License-Identifier: ISC */
/* The SMTP session (RFC 5321): one state machine per connection, a command
 * table, pipelined input processed in order, buffered replies. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtp.h"

struct smtp_module smtp_mod;

/*
 * RFC 5321 §4.5.3.1.4: a command line is at most 512 octets with its
 * CRLF. RFC 1869 §4.1.2 lets extensions raise it for MAIL and RCPT, whose
 * parameters (SIZE, BODY, ENVID up to 100, ORCPT up to 500, AUTH up to
 * 500, ...) need room: 2048 there. AUTH responses carry base64 of up to
 * 12 KiB (RFC 4954 §4: at least 12288 octets).
 */
#define SMTP_LINE_MAX		512
#define SMTP_LINE_MAX_PARAMS	2048
#define SMTP_LINE_MAX_AUTH	12288

/* Slow mode writes one byte per second. */
#define SMTP_SLOW_INTERVAL	1000
/* localserve "timeout": no reply for an hour, then close (mox). */
#define SMTP_HOLD_MS		3600000

static void smtp_process(struct smtp_session *);
static void smtp_update_io(struct smtp_session *);

/* ---- reference counting ---------------------------------------------- */

void
smtp_session_ref(struct smtp_session *s)
{
	s->refs++;
}

void
smtp_session_unref(struct smtp_session *s)
{
	if (--s->refs > 0)
		return;
	osp_buf_deinit(&s->slowbuf);
	osp_free(s->delayed);
	osp_free(s);
}

/* ---- output ---------------------------------------------------------- */

static void
smtp_slow_cb(void *arg)
{
	struct smtp_session *s = arg;

	if (s->freed || s->c == NULL)
		return;
	smtp_session_ref(s);
	if (s->slowbuf.len > 0) {
		osp_conn_write(s->c, s->slowbuf.data, 1);
		osp_buf_consume(&s->slowbuf, 1);
	}
	if (s->slowbuf.len > 0)
		osp_timer_add(s->slow_timer, SMTP_SLOW_INTERVAL);
	else if (s->closing)
		osp_conn_close(s->c);
	else
		smtp_process(s);
	smtp_session_unref(s);
}

/* All output goes through here: in slow mode it trickles out at one byte
 * per second, and no further input is read until it is out (delayed
 * reads). */
static void
smtp_out(struct smtp_session *s, const char *p, size_t len)
{
	if (s->freed || s->c == NULL)
		return;
	if (!s->slow) {
		osp_conn_write(s->c, p, len);
		return;
	}
	osp_buf_append(&s->slowbuf, p, len);
	if (s->slow_timer == NULL)
		s->slow_timer = osp_timer_new(smtp_slow_cb, s);
	osp_timer_add(s->slow_timer, SMTP_SLOW_INTERVAL);
	smtp_update_io(s);
}

static void
smtp_vreply(struct smtp_session *s, const char *fmt, va_list ap)
{
	struct osp_buf b = { 0 };

	osp_buf_vprintf(&b, fmt, ap);
	osp_buf_append(&b, "\r\n", 2);
	smtp_out(s, b.data, b.len);
	osp_buf_deinit(&b);
}

void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, fmt, ap);
	va_end(ap);
}

/* Counts a protocol error (syntax, sequence, unknown command, refused
 * message data); true when the session is over max-errors (the caller's
 * reply is followed by a 421 and the close). Policy refusals (relay,
 * unknown recipient, ownership, hooks) do not count: they have their own
 * brakes (unknown-recipient-delay, auth limits). */
static bool
smtp_count_error(struct smtp_session *s)
{
	s->nerrors++;
	return s->conf != NULL && s->nerrors >= s->conf->max_errors;
}

static void
smtp_too_many_errors(struct smtp_session *s)
{
	osp_log_info("smtp", OSP_ID_FMT " too-many-errors address=%s "
	    "errors=%lld", OSP_ID_ARG(s->id), osp_conn_peer_str(s->c),
	    (long long)s->nerrors);
	smtp_count_reject(s, "too-many-errors");
	smtp_reply(s, "421 4.7.0 %s Too many errors, closing connection",
	    s->hostname);
	smtp_close(s);
}

void
smtp_reply_error(struct smtp_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	smtp_vreply(s, fmt, ap);
	va_end(ap);
	if (smtp_count_error(s))
		smtp_too_many_errors(s);
}

void
smtp_count_reject(struct smtp_session *s, const char *reason)
{
	osp_metric_add(smtp_mod.m_rejected, reason, 1);
}

void
smtp_close(struct smtp_session *s)
{
	if (s->freed || s->c == NULL || s->closing)
		return;
	s->closing = true;
	s->state = SMTP_S_QUIT;
	if (s->idle_timer != NULL)
		osp_timer_del(s->idle_timer);
	if (s->slowbuf.len > 0)
		return;		/* smtp_slow_cb closes when written */
	/* May free the connection and run the cleanup right here. */
	osp_conn_close(s->c);
}

static void
smtp_delay_cb(void *arg)
{
	struct smtp_session *s = arg;
	char *line;

	if (s->freed)
		return;
	smtp_session_ref(s);
	line = s->delayed;
	s->delayed = NULL;
	if (s->busy == SMTP_BUSY_HOLD) {
		/* localserve timeout simulation is over: just close. */
		smtp_close(s);
	} else {
		if (line != NULL)
			smtp_reply(s, "%s", line);
		if (s->delayed_close) {
			s->delayed_close = false;
			smtp_close(s);
		} else
			smtp_session_resume(s);
	}
	osp_free(line);
	smtp_session_unref(s);
}

void
smtp_reply_delayed(struct smtp_session *s, uint64_t ms, const char *line,
    bool close_after)
{
	if (ms == 0) {
		smtp_reply(s, "%s", line);
		if (close_after)
			smtp_close(s);
		return;
	}
	osp_free(s->delayed);
	s->delayed = osp_strdup(line);
	s->delayed_close = close_after;
	if (s->delay_timer == NULL)
		s->delay_timer = osp_timer_new(smtp_delay_cb, s);
	smtp_session_set_busy(s, SMTP_BUSY_DELAY);
	osp_timer_add(s->delay_timer, ms);
}

/* ---- flow control ---------------------------------------------------- */

static bool
smtp_can_read(const struct smtp_session *s)
{
	return !s->freed && s->c != NULL && !s->closing &&
	    s->state != SMTP_S_QUIT && s->busy == SMTP_BUSY_NONE &&
	    s->slowbuf.len == 0;
}

/*
 * The idle timer runs only while we wait for the client. Input is not
 * processed during asynchronous work (so that replies keep the order of
 * the commands), but the connection keeps reading into its buffer, which
 * stops at its own cap (maxline + slack): that is the backpressure. The
 * connection is not paused: resuming with input buffered loses later
 * read events in conn.c (event_active before event_add), and a peer's
 * EOF must be seen anyway (s->eof, handled once the input is processed).
 */
static void
smtp_update_io(struct smtp_session *s)
{
	uint64_t ms;

	if (s->freed || s->c == NULL || s->closing || s->idle_timer == NULL)
		return;
	if (smtp_can_read(s) && !s->eof) {
		ms = s->state == SMTP_S_DATA || s->state == SMTP_S_BDAT ?
		    s->conf->data_timeout : s->conf->command_timeout;
		osp_timer_add(s->idle_timer, ms);
	} else
		osp_timer_del(s->idle_timer);
}

void
smtp_session_set_busy(struct smtp_session *s, enum smtp_busy b)
{
	s->busy = b;
	smtp_update_io(s);
}

void
smtp_session_resume(struct smtp_session *s)
{
	if (s->freed)
		return;
	s->busy = SMTP_BUSY_NONE;
	/* Draining (stop()): a session whose transaction just ended does
	 * not wait for its next command to be told. */
	if (smtp_mod.draining && s->txn == NULL && !s->closing &&
	    s->c != NULL) {
		smtp_reply(s, "421 4.3.2 %s Service shutting down, closing "
		    "connection", s->hostname);
		smtp_close(s);
		return;
	}
	smtp_update_io(s);
	smtp_process(s);
}

static void
smtp_idle_cb(void *arg)
{
	struct smtp_session *s = arg;

	if (s->freed || s->c == NULL || !smtp_can_read(s))
		return;
	smtp_session_ref(s);
	osp_log_info("smtp", OSP_ID_FMT " timeout address=%s state=%d",
	    OSP_ID_ARG(s->id), osp_conn_peer_str(s->c), (int)s->state);
	smtp_count_reject(s, "timeout");
	/* RFC 5321 §4.5.3.2: the server may close after its timeout, with
	 * 421 (§3.8). */
	smtp_reply(s, "421 4.4.2 %s Timeout, closing connection",
	    s->hostname);
	smtp_close(s);
	smtp_session_unref(s);
}

/* ---- transactions ---------------------------------------------------- */

static void
smtp_txn_cleanup(void *arg)
{
	struct smtp_txn *t = arg;

	if (t->data_open) {
		smtp_data_abort(&t->data);
		t->data_open = false;
	}
	if (t->fd != -1)
		close(t->fd);
	if (t->path != NULL)
		unlink(t->path);
	osp_accounts_unref(t->accounts);
}

static struct smtp_txn *
smtp_txn_new(struct smtp_session *s)
{
	struct osp_pool *pool;
	struct smtp_txn *t;

	smtp_txn_free(s);
	/* Its own root pool: freed at the end of the transaction, also
	 * from the session's cleanup. */
	pool = osp_pool_new(NULL);
	t = osp_pcalloc(pool, 1, sizeof(*t));
	t->pool = pool;
	t->fd = -1;
	/* NULL (nothing loaded) reads as a snapshot without domains. */
	if (osp_accounts_current() != NULL)
		t->accounts = osp_accounts_ref(osp_accounts_current());
	osp_pool_cleanup_add(pool, smtp_txn_cleanup, t);
	s->txn = t;
	return t;
}

void
smtp_txn_free(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;

	if (t == NULL)
		return;
	s->txn = NULL;
	osp_pool_free(t->pool);
}

/* The state between commands, from what the transaction holds. */
static enum smtp_state
smtp_idle_state(const struct smtp_session *s)
{
	if (s->helo[0] == '\0')
		return SMTP_S_INIT;
	if (s->txn == NULL)
		return SMTP_S_HELO;
	return s->txn->nrcpts == 0 ? SMTP_S_MAIL : SMTP_S_RCPT;
}

/* ---- hooks ----------------------------------------------------------- */

static void
smtp_hook_data_init(struct smtp_session *s, struct osp_smtp_hook_data *hd)
{
	memset(hd, 0, sizeof(*hd));
	hd->conn = s->c;
	hd->session_id = s->id;
	hd->listener = s->li->name;
	hd->submission = s->submission;
	hd->helo = s->helo[0] != '\0' ? s->helo : NULL;
	hd->account = s->account;
	if (s->txn != NULL)
		hd->mail_from = s->txn->from.address;
}

/* Runs a hook point; true when a hook refused (its reply was sent). */
static bool
smtp_hook_refused(struct smtp_session *s, enum osp_hook_point point,
    struct osp_smtp_hook_data *hd)
{
	int r;

	r = osp_hook_run(point, hd);
	if (r >= 0 || r == OSP_DECLINED)
		return false;
	smtp_count_reject(s, "policy");
	smtp_reply(s, "%d %s %s", hd->reply_code >= 400 &&
	    hd->reply_code < 600 ? hd->reply_code : 550,
	    hd->reply_enhanced != NULL ? hd->reply_enhanced : "5.7.1",
	    hd->reply_text != NULL ? hd->reply_text : "Refused by policy");
	return true;
}

/* ---- commands -------------------------------------------------------- */

#define CMD_NOARGS	0x01	/* takes no argument (RFC 5321 §4.1.1) */

struct smtp_cmd {
	enum smtp_verb	 verb;
	const char	*name;
	void		(*fn)(struct smtp_session *, const char *);
	uint32_t	 flags;
};

static bool
smtp_need_starttls(const struct smtp_session *s)
{
	return s->submission && !s->tls && s->conf->require_tls_for_auth &&
	    s->li->tls == OSP_LISTENER_TLS_STARTTLS;
}

static bool
smtp_starttls_available(const struct smtp_session *s)
{
	return !s->tls && s->li->tls == OSP_LISTENER_TLS_STARTTLS &&
	    osp_tls_server_current() != NULL;
}

/* Whether AUTH is offered: submission only, and without TLS only when
 * require-tls-for-auth is off (RFC 4954 §4, RFC 8314 §3). */
static bool
smtp_auth_offered(const struct smtp_session *s)
{
	return s->submission && (s->tls || !s->conf->require_tls_for_auth);
}

struct smtp_mechs {
	struct smtp_session	*s;
	struct osp_buf		*b;
	size_t			 n;
};

static void
smtp_mech_cb(const struct osp_sasl_mech *mech, void *arg)
{
	struct smtp_mechs *m = arg;

	if (!osp_sasl_mech_usable(mech, m->s->c,
	    !m->s->conf->require_tls_for_auth))
		return;
	osp_buf_printf(m->b, " %s", mech->name);
	m->n++;
}

static void
cmd_helo_ehlo(struct smtp_session *s, const char *args, bool ehlo)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_buf b = { 0 }, mechs = { 0 };
	struct smtp_mechs m = { s, &mechs, 0 };
	const char *name, *reply;

	if (smtp_parse_helo(pool, args, ehlo, &name, &reply) != OSP_OK) {
		smtp_reply_error(s, "%s", reply);
		osp_pool_free(pool);
		return;
	}
	/* RFC 5321 §4.1.4: HELO/EHLO resets any transaction. */
	smtp_txn_free(s);
	osp_strlcpy(s->helo, name, sizeof(s->helo));
	s->ehlo = ehlo;
	s->state = SMTP_S_HELO;
	osp_pool_free(pool);
	if (!ehlo) {
		s->ext = 0;
		smtp_reply(s, "250 %s", s->hostname);
		return;
	}
	s->ext = SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 |
	    SMTP_EXT_DSN | SMTP_EXT_CHUNKING | SMTP_EXT_BINARYMIME;
	osp_buf_printf(&b, "250-%s\r\n", s->hostname);
	osp_buf_puts(&b, "250-PIPELINING\r\n");
	osp_buf_printf(&b, "250-SIZE %llu\r\n",
	    (unsigned long long)s->conf->max_message_size);
	osp_buf_puts(&b, "250-8BITMIME\r\n");
	osp_buf_puts(&b, "250-ENHANCEDSTATUSCODES\r\n");
	osp_buf_puts(&b, "250-SMTPUTF8\r\n");
	osp_buf_puts(&b, "250-CHUNKING\r\n");
	osp_buf_puts(&b, "250-BINARYMIME\r\n");
	osp_buf_puts(&b, "250-DSN\r\n");
	if (smtp_starttls_available(s))
		osp_buf_puts(&b, "250-STARTTLS\r\n");
	/* RFC 8689 §4: REQUIRETLS only on a TLS session. */
	if (s->tls) {
		osp_buf_puts(&b, "250-REQUIRETLS\r\n");
		s->ext |= SMTP_EXT_REQUIRETLS;
	}
	if (smtp_auth_offered(s) && s->account == NULL) {
		osp_sasl_mech_foreach(smtp_mech_cb, &m);
		if (m.n > 0) {
			osp_buf_printf(&b, "250-AUTH%s\r\n", mechs.data);
			s->ext |= SMTP_EXT_AUTH;
		}
	}
	/* RFC 9422 §3: LIMITS RCPTMAX. */
	osp_buf_printf(&b, "250-LIMITS RCPTMAX=%lld\r\n",
	    (long long)s->conf->max_recipients);
	osp_buf_puts(&b, "250 HELP\r\n");
	smtp_out(s, b.data, b.len);
	osp_buf_deinit(&b);
	osp_buf_deinit(&mechs);
}

static void
cmd_helo(struct smtp_session *s, const char *args)
{
	cmd_helo_ehlo(s, args, false);
}

static void
cmd_ehlo(struct smtp_session *s, const char *args)
{
	cmd_helo_ehlo(s, args, true);
}

/* localserve: the simulated outcome for a localpart, as mox localserve:
 * a localpart ending in "temperror", "permerror", a code [45][0-9][0-9]
 * or "timeout" fails; at MAIL/RCPT only when it starts with "mailfrom" /
 * "rcptto", at DATA otherwise. */
const char *
smtp_localserve_failure(struct osp_pool *pool, const char *localpart,
    const char *prefix)
{
	size_t len = strlen(localpart), plen = strlen(prefix);
	const char *end;
	int code;

	if (plen > 0 && !osp_str_has_prefix_i(localpart, prefix))
		return NULL;
	if (plen == 0 && (osp_str_has_prefix_i(localpart, "mailfrom") ||
	    osp_str_has_prefix_i(localpart, "rcptto")))
		return NULL;
	if (len >= 9 && osp_str_eqi(localpart + len - 9, "temperror"))
		return "451 4.3.0 localserve: simulated temporary error";
	if (len >= 9 && osp_str_eqi(localpart + len - 9, "permerror"))
		return "550 5.0.0 localserve: simulated permanent error";
	if (len >= 7 && osp_str_eqi(localpart + len - 7, "timeout"))
		return "hold";
	if (len >= 3) {
		end = localpart + len - 3;
		if ((end[0] == '4' || end[0] == '5') &&
		    end[1] >= '0' && end[1] <= '9' &&
		    end[2] >= '0' && end[2] <= '9') {
			code = (end[0] - '0') * 100 + (end[1] - '0') * 10 +
			    (end[2] - '0');
			return osp_psprintf(pool, "%d %c.0.0 localserve: "
			    "simulated error %d", code, end[0], code);
		}
	}
	return NULL;
}

/* Applies a localserve failure: true when one was sent (or is held). */
bool
smtp_localserve_apply(struct smtp_session *s, const char *fail)
{
	if (fail == NULL)
		return false;
	if (strcmp(fail, "hold") == 0) {
		osp_log_info("smtp", OSP_ID_FMT " localserve-timeout "
		    "address=%s", OSP_ID_ARG(s->id), osp_conn_peer_str(s->c));
		osp_free(s->delayed);
		s->delayed = NULL;
		if (s->delay_timer == NULL)
			s->delay_timer = osp_timer_new(smtp_delay_cb, s);
		smtp_session_set_busy(s, SMTP_BUSY_HOLD);
		osp_timer_add(s->delay_timer, SMTP_HOLD_MS);
		return true;
	}
	smtp_reply(s, "%s", fail);
	return true;
}

static bool
smtp_draining(struct smtp_session *s)
{
	if (!smtp_mod.draining)
		return false;
	smtp_reply(s, "421 4.3.2 %s Service shutting down, closing "
	    "connection", s->hostname);
	smtp_close(s);
	return true;
}

static void
cmd_mail(struct smtp_session *s, const char *args)
{
	struct osp_smtp_hook_data hd;
	struct smtp_txn *t;
	const char *reply, *fail;

	if (s->state == SMTP_S_INIT) {
		smtp_reply_error(s, "503 5.5.1 Send HELO or EHLO first");
		return;
	}
	if (s->txn != NULL) {
		smtp_reply_error(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (smtp_draining(s))
		return;
	if (s->submission) {
		if (smtp_need_starttls(s)) {
			smtp_count_reject(s, "starttls-required");
			smtp_reply_error(s, "530 5.7.0 Must issue a STARTTLS "
			    "command first");
			return;
		}
		if (s->account == NULL) {
			smtp_count_reject(s, "auth-required");
			smtp_reply_error(s, "530 5.7.0 Authentication "
			    "required");
			return;
		}
	}
	t = smtp_txn_new(s);
	if (smtp_parse_mail(t->pool, args, s->ext, &t->from, &t->params,
	    &reply) != OSP_OK) {
		smtp_txn_free(s);
		smtp_reply_error(s, "%s", reply);
		return;
	}
	/* RFC 1870 §6.1: a declared size over the limit is refused now. */
	if (t->params.has_size && t->params.size >
	    s->conf->max_message_size) {
		smtp_txn_free(s);
		smtp_count_reject(s, "size");
		smtp_reply_error(s, "552 5.3.4 Message size exceeds fixed "
		    "maximum message size");
		return;
	}
	if (s->conf->localserve_account != NULL) {
		fail = smtp_localserve_failure(t->pool, t->from.localpart,
		    "mailfrom");
		if (fail != NULL) {
			smtp_txn_free(s);
			smtp_localserve_apply(s, fail);
			return;
		}
	} else if (s->submission && !t->from.null &&
	    !osp_accounts_may_send_as(t->accounts, s->account,
	    t->from.address)) {
		/* An account sends only as its own addresses. */
		smtp_count_reject(s, "not-owner");
		smtp_reply(s, "550 5.7.1 Account %s may not send as <%s>",
		    s->account, t->from.address);
		smtp_txn_free(s);
		return;
	}
	smtp_hook_data_init(s, &hd);
	if (smtp_hook_refused(s, OSP_HOOK_SMTP_MAIL, &hd)) {
		smtp_txn_free(s);
		return;
	}
	s->state = SMTP_S_MAIL;
	smtp_reply(s, "250 2.1.0 Ok");
}

/* RFC 5321 §4.1.1.3: "Postmaster" without a domain is the postmaster of
 * this server: the core hostname's domain when local (or its parent),
 * else the first local domain. */
static const char *
smtp_postmaster_address(struct smtp_session *s, struct smtp_txn *t)
{
	const struct osp_domain_conf *d;
	const char *h = osp_config_hostname(s->gen), *dot;
	size_t n;

	if (h != NULL && osp_accounts_is_local_domain(t->accounts, h))
		return osp_psprintf(t->pool, "postmaster@%s", h);
	if (h != NULL && (dot = strchr(h, '.')) != NULL &&
	    osp_accounts_is_local_domain(t->accounts, dot + 1))
		return osp_psprintf(t->pool, "postmaster@%s", dot + 1);
	d = osp_accounts_domains(t->accounts, &n);
	if (d != NULL && n > 0)
		return osp_psprintf(t->pool, "postmaster@%s", d[0].name);
	return NULL;
}

static void
smtp_rcpt_add(struct smtp_txn *t, const struct smtp_path *path,
    const struct smtp_rcpt_params *params, struct osp_rcpt *targets,
    size_t ntargets)
{
	struct smtp_rcpt *r;

	if (t->nrcpts == t->rcptsize) {
		t->rcptsize = t->rcptsize == 0 ? 8 : t->rcptsize * 2;
		r = osp_pcalloc(t->pool, t->rcptsize, sizeof(*r));
		if (t->nrcpts > 0)
			memcpy(r, t->rcpts, t->nrcpts * sizeof(*r));
		t->rcpts = r;
	}
	r = &t->rcpts[t->nrcpts++];
	r->path = *path;
	r->params = *params;
	r->targets = targets;
	r->ntargets = ntargets;
}

/*
 * A recipient the parser accepted but domains.yaml cannot express (quoted
 * localparts like "a@b"@example.com, RFC 5321 §4.1.2): on a local domain
 * it can only reach the domain's catch-all; elsewhere it is not ours.
 * Never treated as a relay target of its inner "@".
 */
static int
smtp_rcpt_unusual(struct smtp_txn *t, const struct smtp_path *path,
    const char *addr, struct osp_rcpt **targets_r, size_t *n_r)
{
	const struct osp_domain_conf *d;
	struct osp_rcpt *r;

	d = osp_accounts_domain(t->accounts, path->domain);
	if (d == NULL)
		return OSP_DECLINED;
	if (d->catchall_account == NULL)
		return -ENOENT;
	r = osp_pcalloc(t->pool, 1, sizeof(*r));
	r->account = d->catchall_account;
	r->mailbox = "Inbox";
	r->address = addr;
	*targets_r = r;
	*n_r = 1;
	return OSP_OK;
}

static void
cmd_rcpt(struct smtp_session *s, const char *args)
{
	struct osp_smtp_hook_data hd;
	struct smtp_txn *t = s->txn;
	struct smtp_path path;
	struct smtp_rcpt_params params;
	struct osp_rcpt *targets = NULL;
	size_t ntargets = 0;
	const char *reply, *addr, *fail, *error = NULL;
	char *line;
	int r;

	if (t == NULL) {
		smtp_reply_error(s, "503 5.5.1 Send MAIL first");
		return;
	}
	if (t->nrcpts >= (size_t)s->conf->max_recipients) {
		/* RFC 5321 §4.5.3.1.10: 452 for too many recipients. */
		smtp_count_reject(s, "too-many-recipients");
		smtp_reply(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (smtp_parse_rcpt(t->pool, args, s->ext, t->params.smtputf8, &path,
	    &params, &reply) != OSP_OK) {
		smtp_reply_error(s, "%s", reply);
		return;
	}
	addr = path.address;
	if (s->conf->localserve_account != NULL) {
		fail = smtp_localserve_failure(t->pool, path.localpart,
		    "rcptto");
		if (smtp_localserve_apply(s, fail))
			return;
		targets = osp_pcalloc(t->pool, 1, sizeof(*targets));
		targets->account = s->conf->localserve_account;
		targets->mailbox = "Inbox";
		targets->address = addr;
		ntargets = 1;
		goto accepted;
	}
	if (path.domain[0] == '\0') {
		/* Only <Postmaster> may come without a domain (the parser
		 * refuses other ones). */
		addr = smtp_postmaster_address(s, t);
		if (addr == NULL) {
			smtp_reply_error(s, "550 5.1.1 No postmaster here");
			return;
		}
	}
	r = osp_accounts_resolve(t->accounts, addr, t->pool, &targets,
	    &ntargets, &error);
	if (r == -EINVAL && path.domain[0] != '\0')
		r = smtp_rcpt_unusual(t, &path, addr, &targets, &ntargets);
	switch (r) {
	case OSP_OK:
		break;
	case -ENOENT:
		smtp_count_reject(s, "unknown-recipient");
		osp_log_info("smtp", OSP_ID_FMT " unknown-recipient "
		    "address=%s", OSP_ID_ARG(s->id), osp_conn_peer_str(s->c));
		line = osp_psprintf(t->pool, "550 5.1.1 <%s>: Recipient "
		    "address rejected: no such user", addr);
		/* Delayed to slow down address harvesting. */
		smtp_reply_delayed(s, s->conf->unknown_recipient_delay, line,
		    false);
		return;
	case OSP_DECLINED:
		if (s->account != NULL) {
			/* Authenticated: this is for the outgoing queue,
			 * which a later version adds. Be honest. */
			smtp_count_reject(s, "no-queue");
			smtp_reply(s, "451 4.3.0 <%s>: outgoing queue not "
			    "implemented yet: cannot send to remote domains",
			    addr);
			return;
		}
		/* Never an open relay (RFC 5321 §3.6.2, RFC 2505). */
		smtp_count_reject(s, "relay");
		osp_log_info("smtp", OSP_ID_FMT " relay-denied address=%s",
		    OSP_ID_ARG(s->id), osp_conn_peer_str(s->c));
		smtp_reply(s, "554 5.7.1 <%s>: Relay access denied", addr);
		return;
	default:
		smtp_reply_error(s, "501 5.1.3 Bad recipient address "
		    "syntax%s%s", error != NULL ? ": " : "",
		    error != NULL ? error : "");
		return;
	}
accepted:
	smtp_hook_data_init(s, &hd);
	hd.rcpt = addr;
	if (smtp_hook_refused(s, OSP_HOOK_SMTP_RCPT, &hd))
		return;
	path.address = addr;
	smtp_rcpt_add(t, &path, &params, targets, ntargets);
	s->state = SMTP_S_RCPT;
	smtp_reply(s, "250 2.1.5 Ok");
}

/* Opens the message file in the store's tmpdir (same file system as the
 * accounts, so deliveries link it). */
static int
smtp_msgfile_open(struct smtp_session *s, struct smtp_txn *t)
{
	struct osp_store *store = osp_store_current();
	char *path;
	int fd;

	if (store == NULL)
		return -ENOENT;
	path = osp_psprintf(t->pool, "%s/smtp-%016llx-XXXXXX",
	    osp_store_tmpdir(store), (unsigned long long)s->id);
	fd = mkostemp(path, O_CLOEXEC);
	if (fd == -1) {
		osp_log_err("smtp", OSP_ID_FMT " cannot create %s: %s",
		    OSP_ID_ARG(s->id), path, strerror(errno));
		return -errno;
	}
	t->fd = fd;
	t->path = path;
	return OSP_OK;
}

static bool
smtp_data_precheck(struct smtp_session *s)
{
	if (s->txn == NULL) {
		smtp_reply_error(s, "503 5.5.1 Send MAIL first");
		return false;
	}
	if (s->txn->nrcpts == 0) {
		/* RFC 5321 §3.3 */
		smtp_reply_error(s, "554 5.5.1 No valid recipients");
		return false;
	}
	return true;
}

static void
cmd_data(struct smtp_session *s, const char *args)
{
	struct smtp_txn *t = s->txn;

	if (!smtp_data_precheck(s))
		return;
	if (t->bdat) {
		/* RFC 3030 §2: no DATA in a BDAT transaction. */
		smtp_reply_error(s, "503 5.5.1 DATA not allowed after BDAT");
		return;
	}
	if (t->params.body == SMTP_BODY_BINARYMIME) {
		/* RFC 3030 §3: BINARYMIME needs BDAT. */
		smtp_reply_error(s, "503 5.5.1 BODY=BINARYMIME requires "
		    "BDAT");
		return;
	}
	if (smtp_msgfile_open(s, t) != OSP_OK) {
		smtp_reply(s, "451 4.3.0 Cannot store the message now");
		return;
	}
	smtp_data_init(&t->data, t->fd, s->conf->max_message_size, true,
	    false);
	t->data_open = true;
	s->state = SMTP_S_DATA;
	smtp_reply(s, "354 Start mail input; end with <CRLF>.<CRLF>");
	smtp_update_io(s);
}

/* The message is complete (DATA terminator or BDAT LAST). */
static void
smtp_message_end(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	const char *reply;
	int r;

	r = smtp_data_finish(&t->data, &reply);
	t->data_open = false;
	if (r != OSP_OK) {
		osp_log_info("smtp", OSP_ID_FMT " message-refused "
		    "address=%s reply=\"%s\"", OSP_ID_ARG(s->id),
		    osp_conn_peer_str(s->c), reply);
		smtp_count_reject(s, reply[0] == '4' ? "data-temp" :
		    "data-refused");
		smtp_txn_free(s);
		s->state = smtp_idle_state(s);
		smtp_reply_error(s, "%s", reply);
		return;
	}
	s->state = smtp_idle_state(s);
	smtp_deliver_start(s);
}

/* A BDAT chunk has been read completely (RFC 3030 §2). */
static void
smtp_bdat_chunk_end(struct smtp_session *s)
{
	const char *reply = s->bdat_reply;

	s->bdat_reply = NULL;
	if (reply != NULL) {
		s->state = smtp_idle_state(s);
		smtp_reply_error(s, "%s", reply);
		return;
	}
	if (s->bdat_last) {
		smtp_message_end(s);
		return;
	}
	s->state = SMTP_S_RCPT;
	smtp_reply(s, "250 2.0.0 %llu octets received",
	    (unsigned long long)s->txn->data.size);
}

static void
cmd_bdat(struct smtp_session *s, const char *args)
{
	struct smtp_txn *t = s->txn;
	const char *reply;
	uint64_t size;
	bool last;

	if (!(s->ext & SMTP_EXT_CHUNKING)) {
		smtp_reply_error(s, "503 5.5.1 BDAT needs EHLO (CHUNKING)");
		return;
	}
	if (smtp_parse_bdat(args, &size, &last, &reply) != OSP_OK) {
		/* The chunk size is unknown: what follows is read as
		 * commands and refused one by one. */
		smtp_reply_error(s, "%s", reply);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_reply = NULL;
	/* RFC 3030 §2: a refused BDAT's chunk is still read. */
	if (t == NULL)
		s->bdat_reply = "503 5.5.1 Send MAIL first";
	else if (t->nrcpts == 0)
		s->bdat_reply = "554 5.5.1 No valid recipients";
	else if (!t->bdat) {
		if (smtp_msgfile_open(s, t) != OSP_OK)
			s->bdat_reply = "451 4.3.0 Cannot store the message "
			    "now";
		else {
			smtp_data_init(&t->data, t->fd,
			    s->conf->max_message_size, false,
			    t->params.body == SMTP_BODY_BINARYMIME);
			t->data_open = true;
			t->bdat = true;
		}
	}
	s->state = SMTP_S_BDAT;
	if (size == 0)
		smtp_bdat_chunk_end(s);
	else
		smtp_update_io(s);
}

static void
cmd_rset(struct smtp_session *s, const char *args)
{
	smtp_txn_free(s);
	s->state = smtp_idle_state(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
cmd_noop(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
cmd_quit(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "221 2.0.0 %s Bye", s->hostname);
	smtp_close(s);
}

static void
cmd_vrfy(struct smtp_session *s, const char *args)
{
	/* RFC 5321 §3.5.3: 252 when not verifying (no harvesting). */
	smtp_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message "
	    "and attempt delivery");
}

static void
cmd_help(struct smtp_session *s, const char *args)
{
	smtp_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT "
	    "RSET NOOP QUIT VRFY EXPN HELP STARTTLS AUTH; see RFC 5321");
}

static void
cmd_starttls(struct smtp_session *s, const char *args)
{
	struct osp_tls_server *srv;
	int r;

	if (s->tls) {
		smtp_reply_error(s, "503 5.5.1 TLS already active");
		return;
	}
	if (s->li->tls != OSP_LISTENER_TLS_STARTTLS) {
		smtp_reply_error(s, "502 5.5.1 STARTTLS not available");
		return;
	}
	if (s->txn != NULL) {
		smtp_reply_error(s, "503 5.5.1 STARTTLS not allowed in a "
		    "mail transaction");
		return;
	}
	srv = osp_tls_server_current();
	if (srv == NULL) {
		smtp_reply(s, "454 4.7.0 TLS not available");
		return;
	}
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_session_set_busy(s, SMTP_BUSY_TLS);
	/* Input pipelined after STARTTLS is discarded by the connection
	 * (RFC 3207 §5, CVE-2011-0411 command injection). */
	r = osp_conn_starttls_server(s->c, srv);
	if (r != OSP_OK) {
		osp_log_err("smtp", OSP_ID_FMT " starttls: %s",
		    OSP_ID_ARG(s->id), osp_strerror(r));
		smtp_close(s);
	}
}

static void
cmd_auth(struct smtp_session *s, const char *args)
{
	smtp_auth_cmd(s, args);
}

static const struct smtp_cmd smtp_cmds[] = {
	{ SMTP_CMD_HELO, "HELO", cmd_helo, 0 },
	{ SMTP_CMD_EHLO, "EHLO", cmd_ehlo, 0 },
	{ SMTP_CMD_MAIL, "MAIL", cmd_mail, 0 },
	{ SMTP_CMD_RCPT, "RCPT", cmd_rcpt, 0 },
	{ SMTP_CMD_DATA, "DATA", cmd_data, CMD_NOARGS },
	{ SMTP_CMD_BDAT, "BDAT", cmd_bdat, 0 },
	{ SMTP_CMD_RSET, "RSET", cmd_rset, CMD_NOARGS },
	{ SMTP_CMD_NOOP, "NOOP", cmd_noop, 0 },
	{ SMTP_CMD_QUIT, "QUIT", cmd_quit, CMD_NOARGS },
	{ SMTP_CMD_VRFY, "VRFY", cmd_vrfy, 0 },
	{ SMTP_CMD_EXPN, "EXPN", cmd_vrfy, 0 },
	{ SMTP_CMD_HELP, "HELP", cmd_help, 0 },
	{ SMTP_CMD_STARTTLS, "STARTTLS", cmd_starttls, CMD_NOARGS },
	{ SMTP_CMD_AUTH, "AUTH", cmd_auth, 0 },
};

static void
smtp_command(struct smtp_session *s, const char *line, size_t len)
{
	const struct smtp_cmd *cmd = NULL;
	enum smtp_verb verb;
	const char *args;
	size_t i, max;

	verb = smtp_parse_verb(line, &args);
	for (i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++)
		if (smtp_cmds[i].verb == verb)
			cmd = &smtp_cmds[i];
	max = verb == SMTP_CMD_MAIL || verb == SMTP_CMD_RCPT ?
	    SMTP_LINE_MAX_PARAMS : verb == SMTP_CMD_AUTH ?
	    SMTP_LINE_MAX_AUTH : SMTP_LINE_MAX;
	if (len + 2 > max) {
		smtp_reply_error(s, "500 5.5.2 Line too long");
		return;
	}
	if (cmd == NULL) {
		smtp_reply_error(s, "500 5.5.1 Command unrecognized");
		return;
	}
	if ((cmd->flags & CMD_NOARGS) && args != NULL && *args != '\0') {
		smtp_reply_error(s, "501 5.5.4 %s takes no parameters",
		    cmd->name);
		return;
	}
	/* During a drain (stop()), transactions already running finish;
	 * nothing new starts. */
	if (smtp_mod.draining && s->txn == NULL && verb != SMTP_CMD_QUIT &&
	    smtp_draining(s))
		return;
	cmd->fn(s, args != NULL ? args : "");
}

/* Processes buffered input until it runs out or an operation must wait. */
static void
smtp_process(struct smtp_session *s)
{
	const unsigned char *p;
	struct smtp_txn *t;
	size_t len, n;
	bool crlf, toolong;
	char *line;

	if (s->in_process)
		return;
	s->in_process = true;
	smtp_session_ref(s);
	while (smtp_can_read(s)) {
		t = s->txn;
		if (s->state == SMTP_S_DATA) {
			p = osp_conn_data(s->c, &len);
			if (len == 0)
				break;
			n = smtp_data_feed(&t->data, p, len, UINT64_MAX);
			osp_conn_drain(s->c, n);
			if (t->data.done)
				smtp_message_end(s);
			else if (n == 0)
				break;
			continue;
		}
		if (s->state == SMTP_S_BDAT) {
			p = osp_conn_data(s->c, &len);
			if (len == 0)
				break;
			if (len > s->bdat_left)
				len = (size_t)s->bdat_left;
			if (s->bdat_reply != NULL || t == NULL || !t->data_open)
				n = len;
			else
				n = smtp_data_feed(&t->data, p, len,
				    s->bdat_left);
			if (n == 0)
				break;
			osp_conn_drain(s->c, n);
			s->bdat_left -= n;
			if (s->bdat_left == 0)
				smtp_bdat_chunk_end(s);
			continue;
		}
		line = osp_conn_getline(s->c, &len, &crlf, &toolong);
		if (line == NULL) {
			if (!toolong)
				break;
			if (s->state == SMTP_S_AUTH) {
				smtp_auth_line(s, NULL, 0);
				continue;
			}
			smtp_reply_error(s, "500 5.5.2 Line too long");
			continue;
		}
		if (strlen(line) != len) {
			if (s->state == SMTP_S_AUTH)
				smtp_auth_line(s, NULL, 0);
			else
				smtp_reply_error(s, "500 5.5.2 NUL byte in "
				    "command");
			continue;
		}
		if (!crlf) {
			/* RFC 5321 §2.3.8: lines end with CRLF only. */
			if (s->state == SMTP_S_AUTH)
				smtp_auth_line(s, NULL, 0);
			else
				smtp_reply_error(s, "500 5.5.2 Bare LF in "
				    "command: lines must end with CRLF");
			continue;
		}
		if (s->state == SMTP_S_AUTH)
			smtp_auth_line(s, line, len);
		else
			smtp_command(s, line, len);
	}
	if (!s->freed && s->c != NULL && smtp_can_read(s)) {
		if (s->eof) {
			/* The peer closed and everything it sent is
			 * answered: flush the replies and close. */
			smtp_close(s);
		} else
			smtp_update_io(s);
	}
	s->in_process = false;
	smtp_session_unref(s);
}

/* ---- connection events ----------------------------------------------- */

static void
smtp_tls_ready(struct smtp_session *s)
{
	/* RFC 3207 §4.2: forget everything learnt before TLS, including
	 * EHLO and any authentication. */
	s->tls = true;
	s->helo[0] = '\0';
	s->ehlo = false;
	s->ext = 0;
	s->account = NULL;
	smtp_auth_free(s);
	smtp_txn_free(s);
	s->state = SMTP_S_INIT;
	osp_log_debug("smtp", OSP_ID_FMT " starttls version=%s cipher=%s",
	    OSP_ID_ARG(s->id), osp_conn_tls_version(s->c),
	    osp_conn_tls_cipher(s->c));
	smtp_session_resume(s);
}

static void
smtp_conn_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	struct smtp_session *s = arg;

	if (s->freed)
		return;
	smtp_session_ref(s);
	switch (ev) {
	case OSP_CONN_DATAIN:
		smtp_process(s);
		break;
	case OSP_CONN_TLSREADY:
		if (s->busy == SMTP_BUSY_TLS)
			smtp_tls_ready(s);
		break;
	case OSP_CONN_LOWAT:
	case OSP_CONN_CONNECTED:
		break;
	case OSP_CONN_DISCONNECTED:
		osp_log_info("smtp", OSP_ID_FMT " disconnected address=%s",
		    OSP_ID_ARG(s->id), osp_conn_peer_str(c));
		/* Commands sent before the close (pipelined QUIT after the
		 * data of a delivery in flight) are still answered. */
		s->eof = true;
		if (s->closing || s->slowbuf.len > 0 ||
		    s->busy == SMTP_BUSY_TLS || s->busy == SMTP_BUSY_HOLD)
			osp_conn_free(c);
		else if (s->busy == SMTP_BUSY_NONE)
			smtp_process(s);
		else
			smtp_update_io(s);
		break;
	case OSP_CONN_TIMEOUT:
		osp_log_info("smtp", OSP_ID_FMT " timeout address=%s "
		    "reason=output-stalled", OSP_ID_ARG(s->id),
		    osp_conn_peer_str(c));
		osp_conn_free(c);
		break;
	case OSP_CONN_ERROR:
		osp_log_info("smtp", OSP_ID_FMT " error address=%s "
		    "error=\"%s\"", OSP_ID_ARG(s->id), osp_conn_peer_str(c),
		    osp_conn_error_str(c));
		osp_conn_free(c);
		break;
	}
	smtp_session_unref(s);
}

/* The connection's pool is going: detach everything that could call
 * back into the session. */
static void
smtp_session_cleanup(void *arg)
{
	struct smtp_session *s = arg;

	s->freed = true;
	s->c = NULL;
	osp_timer_free(s->idle_timer);
	osp_timer_free(s->delay_timer);
	osp_timer_free(s->slow_timer);
	s->idle_timer = s->delay_timer = s->slow_timer = NULL;
	smtp_auth_free(s);
	smtp_deliver_detach(s);
	smtp_txn_free(s);
	osp_limit_conn_close(s->limit);
	s->limit = NULL;
	osp_metric_add(smtp_mod.m_sessions, NULL, -1);
	if (s->prev != NULL)
		s->prev->next = s->next;
	else if (smtp_mod.sessions == s)
		smtp_mod.sessions = s->next;
	if (s->next != NULL)
		s->next->prev = s->prev;
	s->prev = s->next = NULL;
	osp_config_unref(s->gen);
	s->gen = NULL;
	smtp_session_unref(s);
}

void
smtp_session_accept(struct osp_conn *c, const struct osp_listener_info *li,
    void *arg)
{
	const struct smtp_listener_conf *lconf = li->conf;
	struct osp_smtp_hook_data hd;
	struct smtp_session *s;
	const char *reason = NULL;
	int r;

	s = osp_calloc(1, sizeof(*s));
	s->refs = 1;
	s->c = c;
	s->pool = osp_conn_pool(c);
	s->id = osp_conn_id(c);
	s->li = li;
	s->gen = osp_config_ref(osp_config_current());
	s->conf = osp_config_module(s->gen, smtp_mod.ctx);
	s->submission = lconf != NULL && lconf->role == SMTP_ROLE_SUBMISSION;
	s->hostname = s->conf != NULL && s->conf->hostname != NULL ?
	    s->conf->hostname : osp_config_hostname(s->gen);
	if (s->hostname == NULL)
		s->hostname = "localhost";
	s->tls = osp_conn_is_tls(c);
	s->state = SMTP_S_INIT;
	s->next = smtp_mod.sessions;
	if (s->next != NULL)
		s->next->prev = s;
	smtp_mod.sessions = s;
	osp_pool_cleanup_add(s->pool, smtp_session_cleanup, s);
	osp_conn_set_callback(c, smtp_conn_cb, s);
	osp_metric_add(smtp_mod.m_sessions, NULL, 1);
	osp_metric_add(smtp_mod.m_connections, li->name, 1);
	s->idle_timer = osp_timer_new(smtp_idle_cb, s);

	smtp_session_ref(s);
	if (s->conf == NULL) {
		/* Cannot happen with the module loaded; refuse honestly. */
		osp_conn_printf(c, "421 4.3.0 %s Service not available\r\n",
		    s->hostname);
		s->closing = true;
		osp_conn_close(c);
		goto out;
	}
	osp_conn_set_maxline(c, SMTP_LINE_MAX_AUTH);
	/* Reading is timed by idle_timer (so that a timeout can still be
	 * answered with 421); a stalled write ends the connection. */
	osp_conn_set_timeouts(c, 0, s->conf->command_timeout);

	r = osp_limit_conn_open(osp_conn_peer(c, NULL), &s->limit, &reason);
	if (r != OSP_OK) {
		osp_log_info("smtp", OSP_ID_FMT " refused address=%s "
		    "listener=%s reason=\"%s\"", OSP_ID_ARG(s->id),
		    osp_conn_peer_str(c), li->name,
		    reason != NULL ? reason : osp_strerror(r));
		smtp_count_reject(s, "connection-limit");
		smtp_reply(s, "421 4.7.0 %s Too many connections (%s), try "
		    "again later", s->hostname, reason != NULL ? reason :
		    "limit");
		smtp_close(s);
		goto out;
	}
	osp_log_info("smtp", OSP_ID_FMT " connected address=%s listener=%s "
	    "tls=%s", OSP_ID_ARG(s->id), osp_conn_peer_str(c), li->name,
	    s->tls ? "yes" : "no");
	if (smtp_mod.draining) {
		smtp_reply(s, "421 4.3.2 %s Service shutting down",
		    s->hostname);
		smtp_close(s);
		goto out;
	}
	smtp_hook_data_init(s, &hd);
	r = osp_hook_run(OSP_HOOK_SMTP_CONNECT, &hd);
	if (r < 0 && r != OSP_DECLINED) {
		smtp_count_reject(s, "policy");
		smtp_reply(s, "%d %s %s", hd.reply_code >= 400 &&
		    hd.reply_code < 600 ? hd.reply_code : 554,
		    hd.reply_enhanced != NULL ? hd.reply_enhanced : "5.7.1",
		    hd.reply_text != NULL ? hd.reply_text :
		    "Refused by policy");
		smtp_close(s);
		goto out;
	}
	smtp_reply(s, "220 %s %s", s->hostname, s->conf->greeting != NULL ?
	    s->conf->greeting : "ESMTP");
	smtp_update_io(s);
out:
	smtp_session_unref(s);
}

void
smtp_session_stop_all(void)
{
	struct smtp_session *s, *next;

	smtp_mod.draining = true;
	/* Sessions between transactions and waiting for a command are
	 * told at once; the others finish their transaction first. */
	for (s = smtp_mod.sessions; s != NULL; s = next) {
		next = s->next;
		if (s->txn != NULL || !smtp_can_read(s))
			continue;
		smtp_session_ref(s);
		smtp_reply(s, "421 4.3.2 %s Service shutting down, closing "
		    "connection", s->hostname);
		smtp_close(s);
		smtp_session_unref(s);
	}
}
