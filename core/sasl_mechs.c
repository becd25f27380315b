/* SPDX-License-Identifier: ISC */
/* The simple built-in SASL mechanisms: PLAIN (RFC 4616), LOGIN
 * (draft-murchison-sasl-login), CRAM-MD5 (RFC 2195), EXTERNAL (RFC 4422
 * appendix A, with a TLS client certificate). Steps run on a worker. */
#include "sasl_int.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

/* Longest username or password a built-in accepts (auth.h's limit for
 * passwords; addresses are far shorter). */
#define SASL_MAX_FIELD	1024

/*
 * Maps a username to its account. OSP_OK with *account_r, or -ENOENT
 * (then *account_r is a name that cannot have credentials, so that the
 * caller can still run the same credential check and take the same time
 * whether or not the user exists).
 */
static int
mech_account(struct osp_sasl *s, const char *username, const char **account_r)
{
	if (osp_accounts_login_account(osp_sasl_accounts(s), username,
	    account_r) == OSP_OK)
		return OSP_OK;
	/* Account names never contain a slash (they name directories). */
	*account_r = "/nonexistent";
	return -ENOENT;
}

/*
 * RFC 4422 §3.4.1: an authorization identity other than the
 * authentication identity asks to act as someone else; we have no proxy
 * authorization, so it must name the same account (the username, the
 * account name or another of the account's login addresses).
 */
static bool
mech_authzid_ok(struct osp_sasl *s, const char *authzid, const char *account)
{
	const char *other;

	if (*authzid == '\0' || strcmp(authzid, account) == 0)
		return true;
	return osp_accounts_login_account(osp_sasl_accounts(s), authzid,
	    &other) == OSP_OK && strcmp(other, account) == 0;
}

/* Credential check results into step() results; database trouble is a
 * temporary failure, never "wrong password". */
static int
mech_result(struct osp_sasl *s, int rc, bool known, const char *username,
    const char *account)
{
	if (rc == OSP_OK && known) {
		osp_sasl_set_account(s, account, username);
		return OSP_OK;
	}
	/* The username given, for the failure's log line. */
	osp_sasl_set_account(s, NULL, username);
	if (rc == OSP_OK || rc == OSP_EAUTH || rc == -ENOENT) {
		osp_sasl_set_reason(s, known ? "bad password" :
		    "unknown user");
		return OSP_EAUTH;
	}
	osp_sasl_set_reason(s, "credentials database unavailable");
	return OSP_ETEMP;
}

static int
mech_no_auth(struct osp_sasl *s)
{
	osp_sasl_set_reason(s, "no credentials database");
	return OSP_ETEMP;
}

/* ------------------------------------------------------------------ */
/* PLAIN (RFC 4616 §2): message = [authzid] NUL authcid NUL passwd       */

static int
plain_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	const char *authzid, *authcid, *passwd, *account, *err;
	const unsigned char *nul1, *nul2;
	size_t plen;
	bool known;
	int rc;

	(void)out;
	(void)outlen;
	if (inlen > SASL_MAX_INPUT ||
	    (nul1 = memchr(in, '\0', inlen)) == NULL ||
	    (nul2 = memchr(nul1 + 1, '\0', inlen - (size_t)(nul1 + 1 -
	    in))) == NULL ||
	    memchr(nul2 + 1, '\0', inlen - (size_t)(nul2 + 1 - in)) != NULL) {
		osp_sasl_set_reason(s, "malformed PLAIN message");
		return -EINVAL;
	}
	/* The input buffer is NUL-terminated by osp_sasl_step, so each of
	 * the three fields is a C string. */
	authzid = (const char *)in;
	authcid = (const char *)nul1 + 1;
	passwd = (const char *)nul2 + 1;
	plen = inlen - (size_t)(nul2 + 1 - in);
	if (*authcid == '\0' || plen == 0) {
		osp_sasl_set_reason(s, "malformed PLAIN message");
		return -EINVAL;
	}
	if (osp_sasl_auth(s) == NULL)
		return mech_no_auth(s);
	known = mech_account(s, authcid, &account) == OSP_OK;
	rc = osp_auth_verify_plain(osp_sasl_auth(s), account, passwd, plen,
	    &err);
	if (rc == OSP_OK && known && !mech_authzid_ok(s, authzid, account)) {
		osp_sasl_set_account(s, NULL, authcid);
		osp_sasl_set_reason(s, "authorization identity mismatch");
		return OSP_EAUTH;
	}
	return mech_result(s, rc, known, authcid, account);
}

const struct osp_sasl_mech osp_sasl_mech_plain = {
	.name = "PLAIN",
	.flags = OSP_SASL_PLAINTEXT | OSP_SASL_CLIENT_FIRST,
	.state_size = 0,
	.step = plain_step,
};

/* ------------------------------------------------------------------ */
/* LOGIN (draft-murchison-sasl-login-00): the server asks "Username:"    */
/* then "Password:". Clients that send the username as an initial        */
/* response (many do) skip the first question.                           */

struct login_state {
	int	stage;	/* 0 start, 1 want user, 2 want pass */
	char	user[SASL_MAX_FIELD + 1];
};

static int
login_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	struct login_state *st = osp_sasl_state(s);
	const char *account, *err;
	bool known;
	int rc;

	switch (st->stage) {
	case 0:
		if (inlen == 0) {
			st->stage = 1;
			*out = (const unsigned char *)"Username:";
			*outlen = 9;
			return OSP_AGAIN;
		}
		/* FALLTHROUGH */
	case 1:
		if (inlen == 0 || inlen > SASL_MAX_FIELD ||
		    memchr(in, '\0', inlen) != NULL) {
			osp_sasl_set_reason(s, "malformed LOGIN username");
			return -EINVAL;
		}
		memcpy(st->user, in, inlen);
		st->user[inlen] = '\0';
		st->stage = 2;
		*out = (const unsigned char *)"Password:";
		*outlen = 9;
		return OSP_AGAIN;
	case 2:
		if (inlen == 0 || inlen > SASL_MAX_FIELD ||
		    memchr(in, '\0', inlen) != NULL) {
			osp_sasl_set_reason(s, "malformed LOGIN password");
			return -EINVAL;
		}
		st->stage = 3;
		if (osp_sasl_auth(s) == NULL)
			return mech_no_auth(s);
		known = mech_account(s, st->user, &account) == OSP_OK;
		rc = osp_auth_verify_plain(osp_sasl_auth(s), account,
		    (const char *)in, inlen, &err);
		return mech_result(s, rc, known, st->user, account);
	default:
		return -EINVAL;
	}
}

const struct osp_sasl_mech osp_sasl_mech_login = {
	.name = "LOGIN",
	.flags = OSP_SASL_PLAINTEXT,
	.state_size = sizeof(struct login_state),
	.step = login_step,
};

/* ------------------------------------------------------------------ */
/* CRAM-MD5 (RFC 2195 §2): challenge "<random.timestamp@hostname>",      */
/* response "username SP hex(HMAC-MD5(password, challenge))".            */

struct cram_state {
	int	stage;
	char	challenge[320];
	size_t	challenge_len;
};

static int
cram_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	struct cram_state *st = osp_sasl_state(s);
	char user[SASL_MAX_FIELD + 1], hex[33];
	const char *account, *err;
	const unsigned char *sp;
	uint64_t rnd;
	size_t ulen;
	bool known;
	int rc, n;

	if (st->stage == 0) {
		/* Server speaks first: an initial response is a protocol
		 * error (RFC 4954 §4 answers it with 501). */
		if (inlen != 0) {
			osp_sasl_set_reason(s, "CRAM-MD5 initial response");
			return -EINVAL;
		}
		if (gnutls_rnd(GNUTLS_RND_NONCE, &rnd, sizeof(rnd)) < 0) {
			osp_sasl_set_reason(s, "random generator failed");
			return OSP_ETEMP;
		}
		/* RFC 2195 §2: unique per challenge, in msg-id form
		 * (RFC 822); the random part makes it unpredictable. */
		n = snprintf(st->challenge, sizeof(st->challenge),
		    "<%" PRIu64 ".%lld@%.256s>", rnd, (long long)time(NULL),
		    osp_sasl_hostname(s));
		if (n < 0 || (size_t)n >= sizeof(st->challenge))
			return OSP_ERROR;
		st->challenge_len = (size_t)n;
		st->stage = 1;
		*out = (const unsigned char *)st->challenge;
		*outlen = st->challenge_len;
		return OSP_AGAIN;
	}
	if (st->stage != 1)
		return -EINVAL;
	st->stage = 2;
	/* The digest is the last 32 characters after the last space; the
	 * username may itself contain spaces. */
	if (inlen < 34 || inlen > SASL_MAX_FIELD + 33 ||
	    memchr(in, '\0', inlen) != NULL ||
	    (sp = in + inlen - 33)[0] != ' ') {
		osp_sasl_set_reason(s, "malformed CRAM-MD5 response");
		return -EINVAL;
	}
	for (n = 0; n < 32; n++)
		if (osp_str_hexval(sp[1 + n]) < 0) {
			osp_sasl_set_reason(s, "malformed CRAM-MD5 response");
			return -EINVAL;
		}
	ulen = (size_t)(sp - in);
	memcpy(user, in, ulen);
	user[ulen] = '\0';
	memcpy(hex, sp + 1, 32);
	hex[32] = '\0';
	if (osp_sasl_auth(s) == NULL)
		return mech_no_auth(s);
	known = mech_account(s, user, &account) == OSP_OK;
	rc = osp_auth_cram_md5_verify(osp_sasl_auth(s), account,
	    st->challenge, st->challenge_len, hex, &err);
	return mech_result(s, rc, known, user, account);
}

const struct osp_sasl_mech osp_sasl_mech_cram_md5 = {
	.name = "CRAM-MD5",
	.flags = 0,
	.state_size = sizeof(struct cram_state),
	.step = cram_step,
};

/* ------------------------------------------------------------------ */
/* EXTERNAL (RFC 4422 appendix A): the identity is the TLS client        */
/* certificate registered to an account (auth.h); the message is the     */
/* authorization identity, empty or that account.                        */

static int
external_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	const unsigned char *der;
	const char *account, *err;
	struct osp_pool *pool;
	char authzid[SASL_MAX_FIELD + 1];
	size_t derlen;
	int rc;

	(void)out;
	(void)outlen;
	if (inlen > SASL_MAX_FIELD || memchr(in, '\0', inlen) != NULL) {
		osp_sasl_set_reason(s, "malformed EXTERNAL message");
		return -EINVAL;
	}
	memcpy(authzid, in, inlen);
	authzid[inlen] = '\0';
	if ((der = osp_sasl_peer_cert(s, &derlen)) == NULL) {
		osp_sasl_set_reason(s, "no TLS client certificate");
		return OSP_EAUTH;
	}
	if (osp_sasl_auth(s) == NULL)
		return mech_no_auth(s);
	pool = osp_pool_new(NULL);
	rc = osp_auth_cert_account(osp_sasl_auth(s), der, derlen, pool,
	    &account, &err);
	if (rc == -ENOENT) {
		osp_sasl_set_reason(s, "client certificate not registered");
		rc = OSP_EAUTH;
	} else if (rc != OSP_OK) {
		osp_sasl_set_reason(s, err);
		rc = rc == -EINVAL ? OSP_EAUTH : OSP_ETEMP;
	} else if (osp_accounts_account(osp_sasl_accounts(s), account) ==
	    NULL) {
		/* Registered to an account removed from domains.yaml since. */
		osp_sasl_set_reason(s, "account of the certificate does not "
		    "exist");
		rc = OSP_EAUTH;
	} else if (!mech_authzid_ok(s, authzid, account)) {
		osp_sasl_set_reason(s, "authorization identity mismatch");
		rc = OSP_EAUTH;
	} else {
		osp_sasl_set_account(s, account, *authzid != '\0' ? authzid :
		    account);
		rc = OSP_OK;
	}
	osp_pool_free(pool);
	return rc;
}

const struct osp_sasl_mech osp_sasl_mech_external = {
	.name = "EXTERNAL",
	.flags = OSP_SASL_EXTERNAL | OSP_SASL_CLIENT_FIRST,
	.state_size = 0,
	.step = external_step,
};
