/* SPDX-License-Identifier: ISC */
/* End of an SMTP transaction: submission checks, the DATA hook, the added
 * headers (Return-Path, Delivered-To, Received) and durable deliveries
 * through the store's group commit before the 250. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtp.h"

/* Header bytes read from the message file for the submission checks. */
#define SMTP_HDR_MAX	(256 * 1024)

/*
 * Accounts stay open once a delivery opened them (osp_account_open runs
 * migrations and opens SQLite: not something to repeat per message, nor
 * to do on the loop), up to SMTP_ACC_MAX; beyond that the least recently
 * used one that no delivery holds is released, on a worker because the
 * last reference closes its database. Main thread only; the rest are
 * released in fini().
 */
#define SMTP_ACC_MAX	128

struct smtp_acc_cache {
	char			*name;
	struct osp_account	*acc;
	unsigned		 inuse;		/* targets holding acc */
	uint64_t		 last;		/* osp_now_ms() of last use */
};
static struct smtp_acc_cache	*smtp_accs;
static size_t			 smtp_naccs, smtp_accsize;

static struct smtp_acc_cache *
smtp_acc_entry(const char *name)
{
	size_t i;

	for (i = 0; i < smtp_naccs; i++)
		if (strcmp(smtp_accs[i].name, name) == 0)
			return &smtp_accs[i];
	return NULL;
}

/* The cached account, held until smtp_acc_put (it is not released while
 * held), or NULL when it is not open. */
static struct osp_account *
smtp_acc_get(const char *name)
{
	struct smtp_acc_cache *e = smtp_acc_entry(name);

	if (e == NULL)
		return NULL;
	e->inuse++;
	e->last = osp_now_ms();
	return e->acc;
}

static void
smtp_acc_put(struct osp_account *acc)
{
	size_t i;

	for (i = 0; i < smtp_naccs; i++)
		if (smtp_accs[i].acc == acc && smtp_accs[i].inuse > 0) {
			smtp_accs[i].inuse--;
			return;
		}
}

static void
smtp_acc_close_work(void *arg)
{
	osp_account_unref(arg);
}

static void
smtp_acc_close_done(void *arg)
{
}

/* Releases the least recently used account nobody holds, if any. */
static void
smtp_acc_evict(void)
{
	size_t i, victim = smtp_naccs;

	for (i = 0; i < smtp_naccs; i++)
		if (smtp_accs[i].inuse == 0 && (victim == smtp_naccs ||
		    smtp_accs[i].last < smtp_accs[victim].last))
			victim = i;
	if (victim == smtp_naccs)
		return;
	osp_worker_submit(smtp_acc_close_work, smtp_acc_close_done,
	    smtp_accs[victim].acc);
	osp_free(smtp_accs[victim].name);
	smtp_accs[victim] = smtp_accs[--smtp_naccs];
}

static void
smtp_acc_add(const char *name, struct osp_account *acc)
{
	if (smtp_acc_entry(name) != NULL) {
		osp_account_unref(acc);
		return;
	}
	if (smtp_naccs >= SMTP_ACC_MAX)
		smtp_acc_evict();
	if (smtp_naccs == smtp_accsize) {
		smtp_accsize = smtp_accsize == 0 ? 16 : smtp_accsize * 2;
		smtp_accs = osp_reallocarray(smtp_accs, smtp_accsize,
		    sizeof(*smtp_accs));
	}
	smtp_accs[smtp_naccs].name = osp_strdup(name);
	smtp_accs[smtp_naccs].acc = acc;
	smtp_accs[smtp_naccs].inuse = 0;
	smtp_accs[smtp_naccs].last = osp_now_ms();
	smtp_naccs++;
}

void
smtp_deliver_fini(void)
{
	size_t i;

	for (i = 0; i < smtp_naccs; i++) {
		osp_account_unref(smtp_accs[i].acc);
		osp_free(smtp_accs[i].name);
	}
	osp_free(smtp_accs);
	smtp_accs = NULL;
	smtp_naccs = smtp_accsize = 0;
}

/* One (account, mailbox) the message goes to. */
struct smtp_target {
	struct smtp_job		*job;
	char			*account;
	char			*mailbox;
	char			*rcpt;		/* for Delivered-To and logs */
	struct osp_account	*acc;		/* borrowed from the cache */
	struct osp_account	*opened;	/* opened on the worker */
	const char		*open_error;	/* static */
	int			 err;
	struct osp_buf		 prefix;
};

/* What outlives the transaction: the deliveries in flight, or the
 * worker stage (account opening, daily limits). Heap; the session may go
 * meanwhile (s = NULL, "detached"): the store and the worker still call
 * back, and then only the file and this struct are cleaned up. */
struct smtp_job {
	struct smtp_session	*s;
	uint64_t		 id;		/* the session's, for logs */
	char			*path;
	char			*from;
	char			*from_domain;
	char			 cid[OSP_CID_LEN + 1];
	char			 peer[64];
	bool			 submission;
	uint64_t		 size;
	int64_t			 received;
	struct smtp_target	*targets;
	size_t			 ntargets, pending;
	struct osp_store	*store;

	/* daily limits (submission) */
	struct osp_sendlog	*sendlog;
	char			*account;
	char			**rcpts;
	size_t			 nrcpts;
	int64_t			 max_messages, max_first_time;
	enum osp_sendlog_limit	 limit;
	int			 sendlog_err;
};

static void
smtp_job_free(struct smtp_job *job)
{
	size_t i;

	if (job->path != NULL)
		unlink(job->path);
	for (i = 0; i < job->ntargets; i++) {
		osp_free(job->targets[i].account);
		osp_free(job->targets[i].mailbox);
		osp_free(job->targets[i].rcpt);
		osp_buf_deinit(&job->targets[i].prefix);
		if (job->targets[i].opened != NULL)
			osp_account_unref(job->targets[i].opened);
		if (job->targets[i].acc != NULL)
			smtp_acc_put(job->targets[i].acc);
	}
	for (i = 0; i < job->nrcpts; i++)
		osp_free(job->rcpts[i]);
	osp_free(job->rcpts);
	osp_free(job->targets);
	osp_free(job->path);
	osp_free(job->from);
	osp_free(job->from_domain);
	osp_free(job->account);
	osp_free(job);
}

void
smtp_deliver_detach(struct smtp_session *s)
{
	struct smtp_job *job = s->job;

	if (job != NULL)
		job->s = NULL;
	s->job = NULL;
}

/* Ends the transaction's asynchronous part with a reply. */
static void
smtp_job_reply(struct smtp_job *job, const char *fmt, const char *arg)
{
	struct smtp_session *s = job->s;

	if (s == NULL)
		return;
	s->job = NULL;
	smtp_session_ref(s);
	smtp_reply(s, fmt, arg);
	smtp_session_resume(s);
	smtp_session_unref(s);
}

/* ---- formatting ------------------------------------------------------ */

/* RFC 5322 §3.3 date-time in UTC, independent of the locale. */
static void
smtp_date(int64_t t, char *buf, size_t size)
{
	static const char *const days[] = { "Sun", "Mon", "Tue", "Wed",
	    "Thu", "Fri", "Sat" };
	static const char *const months[] = { "Jan", "Feb", "Mar", "Apr",
	    "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	gmtime_r(&tt, &tm);
	snprintf(buf, size, "%s, %d %s %04d %02d:%02d:%02d +0000",
	    days[tm.tm_wday], tm.tm_mday, months[tm.tm_mon],
	    tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* The EHLO name as it may appear in a Received header: a domain or an
 * address literal; anything else is replaced. */
static const char *
smtp_helo_safe(const char *helo)
{
	const char *p;

	if (helo[0] == '\0')
		return "unknown";
	for (p = helo; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '-' ||
		    *p == '_' || *p == ':' || *p == '[' || *p == ']'))
			return "invalid";
	}
	return helo;
}

/* Printable ASCII copy of header text for a reply. */
static char *
smtp_printable(struct osp_pool *pool, const char *s)
{
	char *r = osp_pstrdup(pool, s), *p;

	for (p = r; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';
	return r;
}

/*
 * The Received header (RFC 5321 §4.4) with the with-type of RFC 3848 and
 * RFC 6531 §3.7.3, the TLS version and cipher as a comment, the encrypted
 * session id (osprey cid) and, with a single recipient only (so that Bcc
 * recipients are not revealed to each other), "for".
 */
static void
smtp_received(struct smtp_session *s, struct smtp_txn *t,
    struct smtp_job *job, struct osp_buf *b)
{
	char date[64], with[16];
	const char *ip = job->peer;

	if (!s->ehlo)
		osp_strlcpy(with, "SMTP", sizeof(with));
	else
		snprintf(with, sizeof(with), "%s%s%s",
		    t->params.smtputf8 ? "UTF8SMTP" : "ESMTP",
		    s->tls ? "S" : "", s->account != NULL ? "A" : "");
	smtp_date(job->received, date, sizeof(date));
	osp_buf_printf(b, "Received: from %s ([%s%s])\r\n\tby %s (Osprey) "
	    "with %s id %s", smtp_helo_safe(s->helo),
	    strchr(ip, ':') != NULL ? "IPv6:" : "", ip, s->hostname, with,
	    job->cid);
	if (s->tls && osp_conn_tls_version(s->c) != NULL)
		osp_buf_printf(b, "\r\n\t(version=%s cipher=%s)",
		    osp_conn_tls_version(s->c),
		    osp_conn_tls_cipher(s->c) != NULL ?
		    osp_conn_tls_cipher(s->c) : "unknown");
	if (t->nrcpts == 1)
		osp_buf_printf(b, "\r\n\tfor <%s>", t->rcpts[0].path.address);
	osp_buf_printf(b, "; %s\r\n", date);
}

/* ---- submission checks ----------------------------------------------- */

/* Reads the header section (bounded) and parses it. */
static int
smtp_read_header(struct smtp_txn *t, struct osp_msg_info *info)
{
	char *buf = osp_palloc(t->pool, SMTP_HDR_MAX + 1), *end;
	ssize_t n;
	size_t len = 0;

	while (len < SMTP_HDR_MAX) {
		n = pread(t->fd, buf + len, SMTP_HDR_MAX - len, (off_t)len);
		if (n == -1)
			return -errno;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	end = strstr(buf, "\r\n\r\n");
	if (end != NULL)
		len = (size_t)(end - buf) + 4;
	osp_msg_parse_mem(NULL, 0, buf, len, t->pool, info);
	return OSP_OK;
}

/* RFC 6409 §8: the submission server may fix up the message. The From
 * addresses must belong to the account; Message-ID and Date are added
 * when missing. Returns false when a reply was sent. */
static bool
smtp_submission_check(struct smtp_session *s, struct smtp_txn *t,
    struct osp_buf *added)
{
	struct osp_msg_info info;
	struct osp_envelope *env;
	struct osp_address *a;
	const char *addr, *canon, *error;
	char date[64];
	bool localserve = s->conf->localserve_account != NULL;
	size_t nfrom = 0;

	if (smtp_read_header(t, &info) != OSP_OK) {
		smtp_reply(s, "451 4.3.0 Cannot read the message");
		return false;
	}
	env = info.root != NULL ? info.root->envelope : NULL;
	for (a = env != NULL ? env->from : NULL; a != NULL; a = a->next) {
		if (a->kind != OSP_ADDR_MAILBOX)
			continue;
		nfrom++;
		if (localserve)
			continue;
		addr = osp_psprintf(t->pool, "%s@%s",
		    a->localpart != NULL ? a->localpart : "",
		    a->domain != NULL ? a->domain : "");
		if (a->domain == NULL || a->localpart == NULL ||
		    osp_accounts_canon_address(t->pool,
		    addr, &canon, &error) != OSP_OK ||
		    !osp_accounts_may_send_as(t->accounts, s->account,
		    canon)) {
			smtp_count_reject(s, "not-owner");
			smtp_reply(s, "550 5.7.1 Account %s may not send "
			    "as <%s> (From header)", s->account,
			    smtp_printable(t->pool, addr));
			return false;
		}
	}
	if (nfrom == 0 && !localserve) {
		/* RFC 5322 §3.6: From is required; without it nothing
		 * tells whose message this is. */
		smtp_count_reject(s, "no-from");
		smtp_reply_error(s, "550 5.6.0 Message has no From header "
		    "with an address");
		return false;
	}
	if (env == NULL || env->message_id == NULL)
		osp_buf_printf(added, "Message-ID: <%016llx%016llx@%s>\r\n",
		    (unsigned long long)osp_id_new(),
		    (unsigned long long)osp_id_new(), s->hostname);
	if (env == NULL || env->date == NULL) {
		smtp_date(time(NULL), date, sizeof(date));
		osp_buf_printf(added, "Date: %s\r\n", date);
	}
	return true;
}

/* ---- deliveries ------------------------------------------------------ */

/* Every delivery completed: the reply, then the file goes. */
static void
smtp_job_finish(struct smtp_job *job)
{
	size_t i, nfailed = 0;

	for (i = 0; i < job->ntargets; i++)
		if (job->targets[i].err != OSP_OK)
			nfailed++;
	/*
	 * 250 only when every copy is durable. When some failed, the ones
	 * that succeeded stay stored and the 451 makes the client retry the
	 * whole message: those recipients then get a duplicate. Losing mail
	 * is worse than a duplicate (nothing acknowledged is ever lost),
	 * and SMTP has no per-recipient reply after DATA (LMTP has).
	 */
	if (nfailed == 0 && job->ntargets > 0)
		smtp_job_reply(job, "250 2.0.0 Ok: delivered as %s",
		    job->cid);
	else {
		if (job->s != NULL)
			smtp_count_reject(job->s, "store-failed");
		smtp_job_reply(job, "%s", "451 4.3.0 Local delivery failed, "
		    "try again later");
	}
	smtp_job_free(job);
}

static void
smtp_deliver_done(void *arg, int err, uint32_t uid, const char *error)
{
	struct smtp_target *tg = arg;
	struct smtp_job *job = tg->job;
	char safe[256], safeto[256];

	tg->err = err;
	if (err == OSP_OK) {
		osp_log_info("smtp", OSP_ID_FMT " delivered from=<%s> "
		    "to=<%s> size=%llu account=%s mailbox=%s uid=%u cid=%s",
		    OSP_ID_ARG(job->id),
		    osp_log_safe(safe, sizeof(safe), job->from,
		    strlen(job->from)), osp_log_safe(safeto, sizeof(safeto),
		    tg->rcpt, strlen(tg->rcpt)),
		    (unsigned long long)job->size, tg->account, tg->mailbox,
		    uid, job->cid);
		osp_metric_add(smtp_mod.m_delivered, job->submission ?
		    "submission" : "delivery", 1);
	} else
		osp_log_err("smtp", OSP_ID_FMT " delivery failed to=<%s> "
		    "account=%s mailbox=%s error=\"%s\"",
		    OSP_ID_ARG(job->id), osp_log_safe(safeto,
		    sizeof(safeto), tg->rcpt, strlen(tg->rcpt)), tg->account,
		    tg->mailbox, error != NULL ? error : osp_strerror(err));
	if (--job->pending == 0)
		smtp_job_finish(job);
}

static void
smtp_deliver_all(struct smtp_job *job)
{
	struct osp_store_new_msg m;
	struct smtp_target *tg;
	size_t i;

	for (i = 0; i < job->ntargets; i++) {
		tg = &job->targets[i];
		if (tg->opened != NULL) {
			smtp_acc_add(tg->account, tg->opened);
			tg->opened = NULL;
		}
		if (tg->acc == NULL)
			tg->acc = smtp_acc_get(tg->account);
	}
	/* Counted before any call: a completion may run early. */
	job->pending = job->ntargets + 1;
	for (i = 0; i < job->ntargets; i++) {
		tg = &job->targets[i];
		if (tg->acc == NULL) {
			job->pending--;
			tg->err = -ENOENT;
			osp_log_err("smtp", "cannot open account %s: %s",
			    tg->account, tg->open_error != NULL ?
			    tg->open_error : "unknown error");
			continue;
		}
		memset(&m, 0, sizeof(m));
		m.path = job->path;
		m.prefix = tg->prefix.data;
		m.prefix_len = tg->prefix.len;
		m.received = job->received;
		m.remote_ip = job->submission ? NULL : job->peer;
		m.mail_from_domain = job->from_domain;
		osp_store_deliver(tg->acc, tg->mailbox, &m, smtp_deliver_done,
		    tg);
	}
	/* The extra count: finish here when nothing was started or all
	 * completed synchronously. */
	if (--job->pending == 0)
		smtp_job_finish(job);
}

/* Worker: opens accounts not yet open and checks the daily limits. */
static void
smtp_job_work(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_target *tg;
	const char *error = NULL;
	size_t i;

	for (i = 0; i < job->ntargets; i++) {
		tg = &job->targets[i];
		if (tg->acc != NULL)
			continue;
		if (osp_account_open(job->store, tg->account, true,
		    &tg->opened, &error) != OSP_OK) {
			tg->opened = NULL;
			tg->open_error = error;
		}
	}
	if (job->sendlog != NULL)
		job->sendlog_err = osp_sendlog_check_add(job->sendlog,
		    job->account, (const char *const *)job->rcpts,
		    job->nrcpts, (int64_t)time(NULL), job->max_messages,
		    job->max_first_time, &job->limit, &error);
}

static void
smtp_job_done(void *arg)
{
	struct smtp_job *job = arg;
	struct smtp_session *s = job->s;
	size_t i;

	if (s == NULL) {
		/* Detached: keep what was opened, drop the message. */
		for (i = 0; i < job->ntargets; i++)
			if (job->targets[i].opened != NULL) {
				smtp_acc_add(job->targets[i].account,
				    job->targets[i].opened);
				job->targets[i].opened = NULL;
			}
		smtp_job_free(job);
		return;
	}
	if (job->sendlog != NULL && job->sendlog_err != OSP_OK) {
		osp_log_err("smtp", OSP_ID_FMT " sendlog: %s",
		    OSP_ID_ARG(s->id), osp_strerror(job->sendlog_err));
		smtp_job_reply(job, "%s", "451 4.3.0 Cannot check the sending "
		    "limits now, try again later");
		smtp_job_free(job);
		return;
	}
	if (job->sendlog != NULL && job->limit != OSP_SENDLOG_OK) {
		smtp_count_reject(s, "daily-limit");
		osp_log_info("smtp", OSP_ID_FMT " daily-limit account=%s "
		    "limit=%s", OSP_ID_ARG(s->id), job->account,
		    job->limit == OSP_SENDLOG_MESSAGES ?
		    "max-outgoing-per-day" :
		    "max-first-time-recipients-per-day");
		smtp_job_reply(job, job->limit == OSP_SENDLOG_MESSAGES ?
		    "451 4.7.0 Daily limit of outgoing messages reached: raise "
		    "max-outgoing-per-day of account %s in domains.yaml" :
		    "451 4.7.0 Daily limit of first-time recipients reached: "
		    "raise max-first-time-recipients-per-day of account %s in "
		    "domains.yaml", job->account);
		smtp_job_free(job);
		return;
	}
	smtp_deliver_all(job);
}

void
smtp_deliver_start(struct smtp_session *s)
{
	struct smtp_txn *t = s->txn;
	struct osp_smtp_hook_data hd;
	const struct osp_account_conf *ac;
	struct osp_buf added = { 0 }, hookhdrs = { 0 }, received = { 0 };
	struct smtp_job *job;
	struct smtp_target *tg;
	const char **addrs;
	const char *fail = NULL;
	bool need_worker = false, sendlog;
	size_t i, j, k, n;
	int r;

	/* localserve: a recipient's localpart may ask for a failure. */
	if (s->conf->localserve_account != NULL) {
		for (i = 0; i < t->nrcpts && fail == NULL; i++)
			fail = smtp_localserve_failure(t->pool,
			    t->rcpts[i].path.localpart, "");
		if (fail != NULL) {
			smtp_txn_free(s);
			s->state = SMTP_S_HELO;
			smtp_localserve_apply(s, fail);
			return;
		}
	}
	if (s->submission && !smtp_submission_check(s, t, &added))
		goto refused;

	addrs = osp_pcalloc(t->pool, t->nrcpts + 1, sizeof(*addrs));
	for (i = 0; i < t->nrcpts; i++)
		addrs[i] = t->rcpts[i].path.address;
	memset(&hd, 0, sizeof(hd));
	hd.conn = s->c;
	hd.session_id = s->id;
	hd.listener = s->li->name;
	hd.submission = s->submission;
	hd.helo = s->helo;
	hd.account = s->account;
	hd.mail_from = t->from.address;
	hd.rcpts = addrs;
	hd.nrcpts = t->nrcpts;
	hd.msg_path = t->path;
	hd.add_headers = &hookhdrs;
	r = osp_hook_run(OSP_HOOK_SMTP_DATA, &hd);
	if (r < 0 && r != OSP_DECLINED) {
		smtp_count_reject(s, "policy");
		smtp_reply(s, "%d %s %s", hd.reply_code >= 400 &&
		    hd.reply_code < 600 ? hd.reply_code : 550,
		    hd.reply_enhanced != NULL ? hd.reply_enhanced : "5.7.1",
		    hd.reply_text != NULL ? hd.reply_text :
		    "Refused by policy");
		goto refused;
	}

	job = osp_calloc(1, sizeof(*job));
	job->s = s;
	job->id = s->id;
	job->store = osp_store_current();
	job->submission = s->submission;
	job->size = t->data.size;
	job->received = (int64_t)time(NULL);
	job->from = osp_strdup(t->from.address);
	job->from_domain = t->from.null ? NULL : osp_strdup(t->from.domain);
	osp_strlcpy(job->peer, osp_conn_peer_str(s->c), sizeof(job->peer));
	osp_cid_encrypt(s->id, job->received, job->cid);
	/* The job owns the file now. */
	job->path = t->path;
	t->path = NULL;
	job->path = osp_strdup(job->path);
	smtp_received(s, t, job, &received);

	/* One delivery per (account, mailbox): an alias and its member, or
	 * two addresses of one account, give one copy. */
	n = 0;
	for (i = 0; i < t->nrcpts; i++)
		n += t->rcpts[i].ntargets;
	job->targets = osp_calloc(n > 0 ? n : 1, sizeof(*job->targets));
	for (i = 0; i < t->nrcpts; i++) {
		for (j = 0; j < t->rcpts[i].ntargets; j++) {
			const struct osp_rcpt *rc = &t->rcpts[i].targets[j];
			const char *mbox = rc->mailbox != NULL ?
			    rc->mailbox : "Inbox";

			for (k = 0; k < job->ntargets; k++)
				if (strcmp(job->targets[k].account,
				    rc->account) == 0 &&
				    strcmp(job->targets[k].mailbox, mbox) == 0)
					break;
			if (k < job->ntargets)
				continue;
			tg = &job->targets[job->ntargets++];
			tg->job = job;
			tg->account = osp_strdup(rc->account);
			tg->mailbox = osp_strdup(mbox);
			tg->rcpt = osp_strdup(t->rcpts[i].path.address);
			/* Held from here: the worker skips opening it, so
			 * it must not be released before delivery. */
			tg->acc = smtp_acc_get(rc->account);
			if (tg->acc == NULL)
				need_worker = true;
			/* RFC 5321 §4.4: Return-Path at final delivery. */
			osp_buf_printf(&tg->prefix, "Return-Path: <%s>\r\n"
			    "Delivered-To: %s\r\n", t->from.address,
			    tg->rcpt);
			osp_buf_append(&tg->prefix, hookhdrs.data,
			    hookhdrs.len);
			osp_buf_append(&tg->prefix, received.data,
			    received.len);
			osp_buf_append(&tg->prefix, added.data, added.len);
		}
	}

	/* Daily limits of the account (submission; not localserve). */
	sendlog = s->submission && s->account != NULL &&
	    s->conf->localserve_account == NULL &&
	    osp_sendlog_current() != NULL;
	if (sendlog) {
		ac = osp_accounts_account(t->accounts, s->account);
		job->sendlog = osp_sendlog_current();
		job->account = osp_strdup(s->account);
		job->max_messages = ac != NULL ? ac->max_outgoing_per_day :
		    1000;
		job->max_first_time = ac != NULL ?
		    ac->max_first_time_recipients_per_day : 200;
		job->rcpts = osp_calloc(t->nrcpts, sizeof(*job->rcpts));
		for (i = 0; i < t->nrcpts; i++)
			job->rcpts[i] = osp_strdup(t->rcpts[i].path.address);
		job->nrcpts = t->nrcpts;
		need_worker = true;
	}
	osp_buf_deinit(&added);
	osp_buf_deinit(&hookhdrs);
	osp_buf_deinit(&received);
	smtp_txn_free(s);
	s->state = SMTP_S_HELO;
	s->job = job;
	if (need_worker) {
		if (job->store == NULL) {
			smtp_job_reply(job, "%s", "451 4.3.0 No message store");
			smtp_job_free(job);
			return;
		}
		smtp_session_set_busy(s, SMTP_BUSY_SENDLOG);
		osp_worker_submit(smtp_job_work, smtp_job_done, job);
		return;
	}
	smtp_session_set_busy(s, SMTP_BUSY_DELIVER);
	smtp_deliver_all(job);
	return;

refused:
	osp_buf_deinit(&added);
	osp_buf_deinit(&hookhdrs);
	smtp_txn_free(s);
	s->state = SMTP_S_HELO;
}
