/* SPDX-License-Identifier: ISC */
/* SMTP AUTH (RFC 4954) over the core SASL exchanges: challenges, initial
 * responses, cancel, failure delays and slow mode for repeat offenders. */
#include "config.h"

#include <string.h>

#include "smtp.h"

/* From this many failed attempts in a session, replies trickle out at one
 * byte per second and reading waits for them (slow mode). */
#define SMTP_AUTH_SLOW_AFTER	3

/* Strict base64 (RFC 4648 §4) as RFC 4954 §4 requires: a multiple of four
 * characters of the alphabet, padding only at the end. */
static bool
smtp_b64_decode(const char *in, size_t len, struct osp_buf *out)
{
	struct osp_base64_dec d;
	size_t i, pad = 0;
	unsigned char c;

	if (len % 4 != 0)
		return false;
	for (i = 0; i < len; i++) {
		c = (unsigned char)in[i];
		if (c == '=') {
			if (i < len - 2)
				return false;
			pad++;
			continue;
		}
		if (pad > 0)
			return false;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		    (c >= '0' && c <= '9') || c == '+' || c == '/'))
			return false;
	}
	osp_base64_dec_init(&d);
	osp_base64_decode(&d, in, len, out);
	return !d.bad;
}

void
smtp_auth_free(struct smtp_session *s)
{
	osp_sasl_free(s->sasl);
	s->sasl = NULL;
	s->auth_final = false;
}

/* Ends the exchange without success or failure (cancel, bad syntax). */
static void
smtp_auth_abort(struct smtp_session *s, const char *reply)
{
	smtp_auth_free(s);
	s->state = s->helo[0] != '\0' ? SMTP_S_HELO : SMTP_S_INIT;
	smtp_reply_error(s, "%s", reply);
}

static void
smtp_auth_success(struct smtp_session *s)
{
	const char *account = osp_sasl_account(s->sasl);
	char safe[256];

	if (account == NULL) {
		/* A mechanism that does not say who: refuse. */
		smtp_auth_abort(s, "454 4.7.0 Temporary authentication "
		    "failure");
		return;
	}
	s->account = osp_pstrdup(s->pool, account);
	osp_log_info("smtp", OSP_ID_FMT " authenticated address=%s mech=%s "
	    "account=%s", OSP_ID_ARG(s->id), osp_conn_peer_str(s->c),
	    s->auth_mech, osp_log_safe(safe, sizeof(safe), account,
	    strlen(account)));
	osp_metric_add(smtp_mod.m_auth_success, s->auth_mech, 1);
	smtp_auth_free(s);
	s->state = SMTP_S_HELO;
	smtp_reply(s, "235 2.7.0 Authentication successful");
}

static void
smtp_auth_failure(struct smtp_session *s, int rc)
{
	const char *user = osp_sasl_username(s->sasl);
	const char *why = osp_sasl_reason(s->sasl);
	char safe[256], safewhy[256];

	/* Our fault (auth.db unreadable): not a failed login, RFC 4954 §6
	 * 454 so the client retries later. */
	if (rc == OSP_ETEMP) {
		osp_log_err("smtp", OSP_ID_FMT " auth temporary failure "
		    "mech=%s reason=%s", OSP_ID_ARG(s->id), s->auth_mech,
		    why != NULL ? osp_log_safe(safewhy, sizeof(safewhy), why,
		    strlen(why)) : "-");
		smtp_auth_abort(s, "454 4.7.0 Temporary authentication "
		    "failure");
		if (s->busy == SMTP_BUSY_NONE)
			smtp_session_resume(s);
		return;
	}
	osp_limit_auth_failed(osp_conn_peer(s->c, NULL));
	osp_metric_add(smtp_mod.m_auth_failures, s->auth_mech, 1);
	s->auth_failures++;
	osp_log_info("smtp", OSP_ID_FMT " auth failed address=%s mech=%s "
	    "user=%s reason=%s failures=%u", OSP_ID_ARG(s->id),
	    osp_conn_peer_str(s->c), s->auth_mech,
	    user != NULL ? osp_log_safe(safe, sizeof(safe), user,
	    strlen(user)) : "-",
	    why != NULL ? osp_log_safe(safewhy, sizeof(safewhy), why,
	    strlen(why)) : (rc == OSP_EAUTH ? "rejected" : "malformed"),
	    s->auth_failures);
	smtp_auth_free(s);
	s->state = SMTP_S_HELO;
	if (s->auth_failures >= SMTP_AUTH_SLOW_AFTER && !s->slow) {
		osp_log_info("smtp", OSP_ID_FMT " slow-mode address=%s",
		    OSP_ID_ARG(s->id), osp_conn_peer_str(s->c));
		s->slow = true;
	}
	/* The reply is held back (auth-failure-delay) to slow password
	 * guessing; the client cannot tell a bad user from a bad
	 * password. */
	smtp_reply_delayed(s, s->conf->auth_failure_delay,
	    rc == OSP_EAUTH ? "535 5.7.8 Authentication credentials invalid" :
	    "501 5.5.2 Invalid authentication exchange", false);
	if (s->busy == SMTP_BUSY_NONE)
		smtp_session_resume(s);
}

static void
smtp_auth_challenge(struct smtp_session *s, const unsigned char *out,
    size_t outlen)
{
	struct osp_buf b = { 0 };

	osp_base64_encode(out, outlen, &b);
	smtp_reply(s, "334 %s", b.len > 0 ? b.data : "");
	osp_buf_deinit(&b);
	s->state = SMTP_S_AUTH;
}

static void
smtp_auth_done(void *arg, int rc, const unsigned char *out, size_t outlen)
{
	struct smtp_session *s = arg;

	if (s->freed)
		return;
	smtp_session_ref(s);
	s->busy = SMTP_BUSY_NONE;
	if (rc == OSP_AGAIN)
		smtp_auth_challenge(s, out, outlen);
	else if (rc == OSP_OK && outlen > 0) {
		/* RFC 4954 §4: additional data with success goes in a 334
		 * challenge, answered by an empty line, then 235. */
		smtp_auth_challenge(s, out, outlen);
		s->auth_final = true;
	} else if (rc == OSP_OK)
		smtp_auth_success(s);
	else {
		smtp_auth_failure(s, rc);
		smtp_session_unref(s);
		return;
	}
	smtp_session_resume(s);
	smtp_session_unref(s);
}

static void
smtp_auth_step(struct smtp_session *s, const unsigned char *in, size_t len)
{
	smtp_session_set_busy(s, SMTP_BUSY_SASL);
	osp_sasl_step(s->sasl, in, len, smtp_auth_done, s);
}

void
smtp_auth_cmd(struct smtp_session *s, const char *args)
{
	const struct osp_sasl_mech *mech;
	struct osp_pool *pool;
	struct osp_buf in = { 0 };
	const char *name, *initial, *reply, *reason = NULL;
	bool plaintext_ok = !s->conf->require_tls_for_auth;

	if (!s->submission) {
		/* Port 25 takes mail for local users only; AUTH is for
		 * submission listeners. */
		smtp_reply_error(s, "502 5.5.1 AUTH not available here");
		return;
	}
	if (!s->ehlo) {
		smtp_reply_error(s, "503 5.5.1 Send EHLO first");
		return;
	}
	if (s->account != NULL) {
		/* RFC 4954 §4: one successful AUTH per session. */
		smtp_reply_error(s, "503 5.5.1 Already authenticated");
		return;
	}
	if (s->txn != NULL) {
		smtp_reply_error(s, "503 5.5.1 AUTH not allowed during a mail "
		    "transaction");
		return;
	}
	if (!s->tls && s->conf->require_tls_for_auth) {
		if (s->li->tls == OSP_LISTENER_TLS_STARTTLS)
			smtp_reply_error(s, "530 5.7.0 Must issue a STARTTLS "
			    "command first");
		else
			smtp_reply_error(s, "538 5.7.11 Encryption required "
			    "for requested authentication mechanism");
		return;
	}
	pool = osp_pool_new(NULL);
	if (smtp_parse_auth(pool, args, &name, &initial, &reply) != OSP_OK) {
		smtp_reply_error(s, "%s", reply);
		goto out;
	}
	mech = osp_sasl_mech_find(name);
	if (mech == NULL) {
		smtp_reply_error(s, "504 5.5.4 Unrecognized authentication "
		    "type");
		goto out;
	}
	if (!osp_sasl_mech_usable(mech, s->c, plaintext_ok)) {
		if (!s->tls)
			smtp_reply_error(s, "538 5.7.11 Encryption required "
			    "for requested authentication mechanism");
		else
			smtp_reply_error(s, "504 5.5.4 Authentication "
			    "mechanism not available on this connection");
		goto out;
	}
	if (osp_limit_auth_check(osp_conn_peer(s->c, NULL), &reason) !=
	    OSP_OK) {
		osp_log_info("smtp", OSP_ID_FMT " auth refused address=%s "
		    "reason=\"%s\"", OSP_ID_ARG(s->id),
		    osp_conn_peer_str(s->c), reason != NULL ? reason :
		    "limit");
		smtp_count_reject(s, "auth-limit");
		smtp_reply(s, "421 4.7.0 %s Too many failed authentications "
		    "(%s), closing connection", s->hostname,
		    reason != NULL ? reason : "limit");
		smtp_close(s);
		goto out;
	}
	s->sasl = osp_sasl_new(mech, s->c, "smtp");
	if (s->sasl == NULL) {
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		goto out;
	}
	s->auth_mech = mech->name;
	if (initial != NULL) {
		/* RFC 4954 §4: "=" is an empty initial response. */
		if (strcmp(initial, "=") != 0 &&
		    !smtp_b64_decode(initial, strlen(initial), &in)) {
			smtp_auth_abort(s, "501 5.5.2 Invalid base64 data");
			goto out;
		}
		smtp_auth_step(s, (const unsigned char *)in.data, in.len);
	} else if (mech->flags & OSP_SASL_CLIENT_FIRST) {
		/* The client speaks first: an empty challenge asks. */
		smtp_reply(s, "334 ");
		s->state = SMTP_S_AUTH;
	} else
		smtp_auth_step(s, (const unsigned char *)"", 0);
out:
	if (in.data != NULL)
		osp_memzero(in.data, in.size);
	osp_buf_deinit(&in);
	osp_pool_free(pool);
}

/* A response line while an exchange waits for one (NULL: unusable line,
 * too long or not CRLF-terminated). */
void
smtp_auth_line(struct smtp_session *s, const char *line, size_t len)
{
	struct osp_buf in = { 0 };

	if (s->sasl == NULL) {
		s->state = s->helo[0] != '\0' ? SMTP_S_HELO : SMTP_S_INIT;
		return;
	}
	if (line == NULL) {
		smtp_auth_abort(s, "501 5.5.2 Invalid authentication "
		    "response");
		return;
	}
	/* RFC 4954 §4: "*" cancels the exchange. */
	if (strcmp(line, "*") == 0) {
		smtp_auth_abort(s, "501 5.0.0 Authentication cancelled");
		return;
	}
	if (s->auth_final) {
		if (len == 0 || strcmp(line, "=") == 0)
			smtp_auth_success(s);
		else
			smtp_auth_abort(s, "501 5.5.2 Expected an empty "
			    "response");
		return;
	}
	if (!smtp_b64_decode(line, len, &in)) {
		osp_buf_deinit(&in);
		smtp_auth_abort(s, "501 5.5.2 Invalid base64 data");
		return;
	}
	smtp_auth_step(s, (const unsigned char *)in.data, in.len);
	if (in.data != NULL)
		osp_memzero(in.data, in.size);
	osp_buf_deinit(&in);
}
