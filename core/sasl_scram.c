/* SPDX-License-Identifier: ISC */
/* SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677) and their -PLUS
 * variants with channel binding (RFC 5929 tls-unique, RFC 9266
 * tls-exporter), server side. Steps run on a worker. */
#include "sasl_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#define SCRAM_MAX_MSG		2048	/* client-first-message-bare */
#define SCRAM_MAX_SFM		256	/* server-first-message */
#define SCRAM_NONCE_RAW		18	/* 24 base64 characters */

/*
 * Between the two steps: the gs2-header as sent (with its trailing
 * comma; the c= attribute must repeat it, RFC 5802 §7 cbind-input), the
 * cb-name ("" unless the gs2 flag was "p"), client-first-message-bare
 * and server-first-message (for AuthMessage), the length of the
 * combined nonce after "r=" in sfm, the decoded username and authzid,
 * the account (borrowed from the accounts snapshot) and its keys, real
 * when `known`, else fake.
 */
struct scram_state {
	int			 stage;	/* 0 first, 1 final, 2 done */
	char			 gs2[512];
	size_t			 gs2_len;
	char			 cbname[32];
	char			 cfb[SCRAM_MAX_MSG];
	size_t			 cfb_len;
	char			 sfm[SCRAM_MAX_SFM];
	size_t			 sfm_len;
	size_t			 nonce_len;
	char			 user[SASL_MAX_INPUT];
	char			 authzid[512];
	const char		*account;
	bool			 known;
	struct osp_auth_scram	 keys;
};

/* ------------------------------------------------------------------ */
/* Helpers                                                              */

static pthread_mutex_t scram_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char scram_secret[32];
static bool scram_secret_ok;
static char *scram_fixed_nonce;

void
osp_sasl_scram_test_nonce(const char *nonce)
{
	pthread_mutex_lock(&scram_lock);
	osp_free(scram_fixed_nonce);
	scram_fixed_nonce = nonce != NULL ? osp_strdup(nonce) : NULL;
	pthread_mutex_unlock(&scram_lock);
}

/* The per-process secret from which unknown users' salts are derived. */
static int
scram_get_secret(unsigned char out[32])
{
	int rc = OSP_OK;

	pthread_mutex_lock(&scram_lock);
	if (!scram_secret_ok) {
		if (gnutls_rnd(GNUTLS_RND_KEY, scram_secret,
		    sizeof(scram_secret)) < 0)
			rc = OSP_ERROR;
		else
			scram_secret_ok = true;
	}
	memcpy(out, scram_secret, 32);
	pthread_mutex_unlock(&scram_lock);
	return rc;
}

/* Strict base64 (RFC 4648 §4, padded) through the core's decoder: length
 * a multiple of 4, '=' only as the final padding, nothing else. */
static bool
scram_b64_decode(const char *s, size_t len, struct osp_buf *out)
{
	struct osp_base64_dec d;
	size_t i;

	if (len % 4 != 0)
		return false;
	for (i = 0; i < len; i++)
		if (s[i] == '=' && i + 2 < len)
			return false;
	if (len >= 2 && s[len - 2] == '=' && s[len - 1] != '=')
		return false;
	osp_base64_dec_init(&d);
	osp_buf_reset(out);
	osp_base64_decode(&d, s, len, out);
	return !d.bad;
}

/*
 * RFC 5802 §5.1 saslname: "=2C" stands for ',' and "=3D" for '='; any
 * other '=' is an error. Decodes [s, s+len) into out (size bytes).
 */
static bool
scram_saslname(const char *s, size_t len, char *out, size_t size)
{
	size_t i, n = 0;

	for (i = 0; i < len; i++) {
		if (n + 1 >= size || s[i] == '\0')
			return false;
		if (s[i] == '=') {
			if (i + 2 < len && s[i + 1] == '2' && s[i + 2] == 'C')
				out[n++] = ',';
			else if (i + 2 < len && s[i + 1] == '3' &&
			    s[i + 2] == 'D')
				out[n++] = '=';
			else
				return false;
			i += 2;
		} else
			out[n++] = s[i];
	}
	out[n] = '\0';
	return n > 0;
}

/* RFC 5802 §7 printable: %x21-2B / %x2D-7E (no comma). */
static bool
scram_printable(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return len > 0;
}

/* Keys for a user without SCRAM credentials: salt and keys derived from
 * the process secret and the username, so that repeated attempts see
 * the same salt and the exchange looks like one for a real account
 * (RFC 5802 §5.1 "... SHOULD ... simulated"); the proof then fails. */
static int
scram_fake_keys(const char *hash, const char *user,
    struct osp_auth_scram *k)
{
	unsigned char secret[32], mac[32];
	gnutls_hmac_hd_t h;
	size_t klen = strcmp(hash, "SHA-1") == 0 ? 20 : 32;
	unsigned char i;

	memset(k, 0, sizeof(*k));
	if (scram_get_secret(secret) != OSP_OK)
		return OSP_ERROR;
	for (i = 0; i < 3; i++) {
		if (gnutls_hmac_init(&h, GNUTLS_MAC_SHA256, secret,
		    sizeof(secret)) < 0)
			return OSP_ERROR;
		(void)gnutls_hmac(h, hash, strlen(hash));
		(void)gnutls_hmac(h, &i, 1);
		(void)gnutls_hmac(h, user, strlen(user));
		gnutls_hmac_deinit(h, mac);
		if (i == 0)
			memcpy(k->salt, mac, OSP_AUTH_SCRAM_SALT);
		else
			memcpy(i == 1 ? k->stored_key : k->server_key, mac,
			    klen);
	}
	osp_memzero(secret, sizeof(secret));
	osp_memzero(mac, sizeof(mac));
	k->salt_len = OSP_AUTH_SCRAM_SALT;
	k->iterations = OSP_AUTH_SCRAM_ITER;
	k->key_len = klen;
	return OSP_OK;
}

/* RFC 5802 §5.1 a=: no proxy authorization, so the authzid must name
 * the authenticated account (its name or one of its login addresses). */
static bool
scram_authzid_ok(struct osp_sasl *s, const struct scram_state *st)
{
	const char *other;

	if (st->authzid[0] == '\0' || strcmp(st->authzid, st->account) == 0)
		return true;
	return osp_accounts_login_account(osp_sasl_accounts(s), st->authzid,
	    &other) == OSP_OK && strcmp(other, st->account) == 0;
}

static int
scram_malformed(struct osp_sasl *s, const char *what)
{
	osp_sasl_set_reason(s, what);
	return -EINVAL;
}

static int
scram_fail(struct osp_sasl *s, const char *why)
{
	osp_sasl_set_reason(s, why);
	return OSP_EAUTH;
}

/* ------------------------------------------------------------------ */
/* client-first-message                                                 */

/*
 * client-first-message = gs2-header client-first-message-bare
 * gs2-header = gs2-cbind-flag "," [ authzid ] ","
 * gs2-cbind-flag = ("p=" cb-name) / "n" / "y"
 * client-first-message-bare = [reserved-mext ","] username "," nonce
 *                             ["," extensions]
 */
static int
scram_first(struct osp_sasl *s, struct scram_state *st, const char *mech,
    bool plus, const char *in, size_t inlen, const unsigned char **out,
    size_t *outlen)
{
	const char *p, *end = in + inlen, *c1, *c2, *u, *ue, *r, *re, *hash;
	unsigned char raw[SCRAM_NONCE_RAW], *o;
	struct osp_buf b = { 0 };
	const char *err, *cbtype;
	size_t cblen;
	int rc;

	hash = strncmp(mech, "SCRAM-SHA-1", 11) == 0 &&
	    (mech[11] == '\0' || mech[11] == '-') ? "SHA-1" : "SHA-256";
	if ((c1 = memchr(in, ',', inlen)) == NULL ||
	    (c2 = memchr(c1 + 1, ',', (size_t)(end - c1 - 1))) == NULL)
		return scram_malformed(s, "malformed gs2 header");
	st->gs2_len = (size_t)(c2 + 1 - in);
	if (st->gs2_len >= sizeof(st->gs2))
		return scram_malformed(s, "gs2 header too long");
	memcpy(st->gs2, in, st->gs2_len);
	/* gs2-cbind-flag. */
	if (c1 - in == 1 && (in[0] == 'n' || in[0] == 'y')) {
		if (plus)
			return scram_fail(s, "no channel binding with -PLUS");
		/* RFC 5802 §6: "y" means the client supports channel binding
		 * but thinks the server does not. This connection offers it
		 * (-PLUS is usable), so someone stripped it: a downgrade. */
		if (in[0] == 'y' && osp_sasl_channel_binding(s, &cbtype,
		    &cblen) != NULL)
			return scram_fail(s, "channel binding downgrade");
	} else if (c1 - in > 2 && in[0] == 'p' && in[1] == '=') {
		if ((size_t)(c1 - in - 2) >= sizeof(st->cbname))
			return scram_malformed(s, "malformed cb-name");
		memcpy(st->cbname, in + 2, (size_t)(c1 - in - 2));
		st->cbname[c1 - in - 2] = '\0';
		if (!plus)
			return scram_fail(s, "channel binding requested "
			    "without -PLUS");
		if (osp_sasl_channel_binding_of(s, st->cbname, &cblen) ==
		    NULL)
			return scram_fail(s, "unsupported channel binding "
			    "type");
	} else
		return scram_malformed(s, "malformed gs2-cbind-flag");
	/* authzid. */
	if (c2 > c1 + 1) {
		if (c2 - c1 < 3 || c1[1] != 'a' || c1[2] != '=' ||
		    !scram_saslname(c1 + 3, (size_t)(c2 - c1 - 3), st->authzid,
		    sizeof(st->authzid)))
			return scram_malformed(s, "malformed authzid");
	}
	/* client-first-message-bare. */
	p = c2 + 1;
	st->cfb_len = (size_t)(end - p);
	if (st->cfb_len >= sizeof(st->cfb))
		return scram_malformed(s, "client-first-message too long");
	memcpy(st->cfb, p, st->cfb_len);
	/* RFC 5802 §5.1 m: reserved for mandatory extensions; a server
	 * that does not know one must fail. */
	if (end - p >= 2 && p[0] == 'm' && p[1] == '=')
		return scram_fail(s, "unsupported mandatory extension");
	if (end - p < 2 || p[0] != 'n' || p[1] != '=' ||
	    (ue = memchr(p, ',', (size_t)(end - p))) == NULL)
		return scram_malformed(s, "malformed username");
	u = p + 2;
	if (!scram_saslname(u, (size_t)(ue - u), st->user, sizeof(st->user)))
		return scram_malformed(s, "malformed username");
	r = ue + 1;
	if (end - r < 3 || r[0] != 'r' || r[1] != '=')
		return scram_malformed(s, "malformed nonce");
	r += 2;
	if ((re = memchr(r, ',', (size_t)(end - r))) == NULL)
		re = end;
	if (!scram_printable(r, (size_t)(re - r)))
		return scram_malformed(s, "malformed nonce");

	/* Credentials. SASLprep of the username (RFC 5802 §5.1) is left
	 * out: usernames are account names and addresses, compared as the
	 * accounts snapshot does. */
	if (osp_sasl_auth(s) == NULL) {
		osp_sasl_set_reason(s, "no credentials database");
		return OSP_ETEMP;
	}
	if (osp_accounts_login_account(osp_sasl_accounts(s), st->user,
	    &st->account) != OSP_OK)
		st->account = NULL;
	rc = osp_auth_scram_get(osp_sasl_auth(s), st->account != NULL ?
	    st->account : "/nonexistent", mech, &st->keys, &err);
	if (rc == OSP_OK && st->account != NULL)
		st->known = true;
	else if (rc == OSP_OK || rc == -ENOENT) {
		if (scram_fake_keys(hash, st->user, &st->keys) != OSP_OK)
			return OSP_ETEMP;
	} else {
		osp_sasl_set_reason(s, err);
		return OSP_ETEMP;
	}

	/* server-first-message = nonce "," salt "," iteration-count, the
	 * nonce being the client's followed by ours. */
	osp_buf_printf(&b, "r=%.*s", (int)(re - r), r);
	pthread_mutex_lock(&scram_lock);
	if (scram_fixed_nonce != NULL)
		osp_buf_puts(&b, scram_fixed_nonce);
	pthread_mutex_unlock(&scram_lock);
	if (b.len == (size_t)(re - r) + 2) {
		if (gnutls_rnd(GNUTLS_RND_NONCE, raw, sizeof(raw)) < 0) {
			osp_buf_deinit(&b);
			return OSP_ETEMP;
		}
		osp_base64_encode(raw, sizeof(raw), &b);
	}
	st->nonce_len = b.len - 2;
	osp_buf_puts(&b, ",s=");
	osp_base64_encode(st->keys.salt, st->keys.salt_len, &b);
	osp_buf_printf(&b, ",i=%u", (unsigned)st->keys.iterations);
	if (b.len >= sizeof(st->sfm)) {
		osp_buf_deinit(&b);
		return scram_malformed(s, "client nonce too long");
	}
	memcpy(st->sfm, b.data, b.len);
	st->sfm_len = b.len;
	osp_buf_deinit(&b);
	o = osp_sasl_out(s, st->sfm_len);
	memcpy(o, st->sfm, st->sfm_len);
	*out = o;
	*outlen = st->sfm_len;
	st->stage = 1;
	return OSP_AGAIN;
}

/* ------------------------------------------------------------------ */
/* client-final-message                                                 */

/*
 * client-final-message-without-proof = channel-binding "," nonce
 *                                      ["," extensions]
 * client-final-message = client-final-message-without-proof "," proof
 * channel-binding = "c=" base64(gs2-header [cbind-data])
 */
static int
scram_final(struct osp_sasl *s, struct scram_state *st, const char *in,
    size_t inlen, const unsigned char **out, size_t *outlen)
{
	const char *end = in + inlen, *pp, *c, *ce, *r, *re;
	unsigned char sig[OSP_AUTH_SCRAM_MAXKEY], *o;
	struct osp_buf cb = { 0 }, proof = { 0 }, am = { 0 }, v = { 0 };
	const unsigned char *cbdata = NULL;
	size_t cblen = 0, i;
	bool cb_ok;
	int rc;

	st->stage = 2;
	/* The proof is the last attribute (RFC 5802 §7). */
	for (pp = NULL, i = inlen; i >= 3; i--)
		if (in[i - 3] == ',' && in[i - 2] == 'p' && in[i - 1] == '=') {
			pp = in + i - 3;
			break;
		}
	if (pp == NULL || inlen < 2 || in[0] != 'c' || in[1] != '=' ||
	    (ce = memchr(in, ',', inlen)) == NULL || ce >= pp)
		return scram_malformed(s, "malformed client-final-message");
	c = in + 2;
	r = ce + 1;
	if (pp - r < 2 || r[0] != 'r' || r[1] != '=')
		return scram_malformed(s, "malformed client-final-message");
	r += 2;
	if ((re = memchr(r, ',', (size_t)(pp - r))) == NULL)
		re = pp;
	if (!scram_b64_decode(c, (size_t)(ce - c), &cb) ||
	    !scram_b64_decode(pp + 3, (size_t)(end - pp - 3), &proof)) {
		rc = scram_malformed(s, "malformed base64");
		goto out;
	}
	/* The nonce must be the combined one we sent. */
	if ((size_t)(re - r) != st->nonce_len ||
	    memcmp(r, st->sfm + 2, st->nonce_len) != 0) {
		rc = scram_fail(s, "nonce mismatch");
		goto out;
	}
	/* RFC 5802 §7: cbind-input = gs2-header [cbind-data], the data
	 * only with "p=". For -PLUS this ties the exchange to this TLS
	 * session (RFC 5929 tls-unique, RFC 9266 tls-exporter). */
	if (st->cbname[0] != '\0')
		cbdata = osp_sasl_channel_binding_of(s, st->cbname, &cblen);
	cb_ok = cb.len == st->gs2_len + cblen &&
	    memcmp(cb.data, st->gs2, st->gs2_len) == 0 &&
	    (cblen == 0 || osp_auth_mem_equal(cb.data + st->gs2_len, cbdata,
	    cblen));
	/* AuthMessage = client-first-message-bare "," server-first-message
	 * "," client-final-message-without-proof. */
	osp_buf_append(&am, st->cfb, st->cfb_len);
	osp_buf_putc(&am, ',');
	osp_buf_append(&am, st->sfm, st->sfm_len);
	osp_buf_putc(&am, ',');
	osp_buf_append(&am, in, (size_t)(pp - in));
	/* The proof is checked in every case, so failures take the same
	 * time whatever their cause. */
	rc = osp_auth_scram_verify_proof(&st->keys, am.data, am.len,
	    (const unsigned char *)proof.data, proof.len, sig);
	if (rc != OSP_OK && rc != OSP_EAUTH) {
		osp_sasl_set_reason(s, "SCRAM proof check failed");
		rc = OSP_ETEMP;
	} else if (!cb_ok)
		rc = scram_fail(s, "channel binding mismatch");
	else if (!st->known)
		rc = scram_fail(s, "unknown user");
	else if (rc != OSP_OK)
		rc = scram_fail(s, "bad password");
	else if (!scram_authzid_ok(s, st))
		rc = scram_fail(s, "authorization identity mismatch");
	else {
		/* server-final-message = "v=" base64(ServerSignature). */
		osp_buf_puts(&v, "v=");
		osp_base64_encode(sig, st->keys.key_len, &v);
		o = osp_sasl_out(s, v.len);
		memcpy(o, v.data, v.len);
		*out = o;
		*outlen = v.len;
		osp_sasl_set_account(s, st->account, st->user);
		rc = OSP_OK;
	}
out:
	if (rc != OSP_OK)
		osp_sasl_set_account(s, NULL, st->user);
	osp_memzero(sig, sizeof(sig));
	osp_buf_deinit(&cb);
	osp_buf_deinit(&proof);
	osp_buf_deinit(&am);
	osp_buf_deinit(&v);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The four mechanisms                                                  */

static int
scram_step(struct osp_sasl *s, const char *mech, bool plus,
    const unsigned char *in, size_t inlen, const unsigned char **out,
    size_t *outlen)
{
	struct scram_state *st = osp_sasl_state(s);

	/* SCRAM messages are printable UTF-8: a NUL is never valid. */
	if (inlen == 0 || inlen > SASL_MAX_INPUT ||
	    memchr(in, '\0', inlen) != NULL)
		return scram_malformed(s, "malformed SCRAM message");
	switch (st->stage) {
	case 0:
		return scram_first(s, st, mech, plus, (const char *)in, inlen,
		    out, outlen);
	case 1:
		return scram_final(s, st, (const char *)in, inlen, out,
		    outlen);
	default:
		return -EINVAL;
	}
}

static int
scram_sha1_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	return scram_step(s, "SCRAM-SHA-1", false, in, inlen, out, outlen);
}

static int
scram_sha1_plus_step(struct osp_sasl *s, const unsigned char *in,
    size_t inlen, const unsigned char **out, size_t *outlen)
{
	return scram_step(s, "SCRAM-SHA-1-PLUS", true, in, inlen, out, outlen);
}

static int
scram_sha256_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	return scram_step(s, "SCRAM-SHA-256", false, in, inlen, out, outlen);
}

static int
scram_sha256_plus_step(struct osp_sasl *s, const unsigned char *in,
    size_t inlen, const unsigned char **out, size_t *outlen)
{
	return scram_step(s, "SCRAM-SHA-256-PLUS", true, in, inlen, out,
	    outlen);
}

const struct osp_sasl_mech osp_sasl_mech_scram_sha1 = {
	.name = "SCRAM-SHA-1",
	.flags = OSP_SASL_CLIENT_FIRST,
	.state_size = sizeof(struct scram_state),
	.step = scram_sha1_step,
};

const struct osp_sasl_mech osp_sasl_mech_scram_sha1_plus = {
	.name = "SCRAM-SHA-1-PLUS",
	.flags = OSP_SASL_CLIENT_FIRST | OSP_SASL_NEED_CB,
	.state_size = sizeof(struct scram_state),
	.step = scram_sha1_plus_step,
};

const struct osp_sasl_mech osp_sasl_mech_scram_sha256 = {
	.name = "SCRAM-SHA-256",
	.flags = OSP_SASL_CLIENT_FIRST,
	.state_size = sizeof(struct scram_state),
	.step = scram_sha256_step,
};

const struct osp_sasl_mech osp_sasl_mech_scram_sha256_plus = {
	.name = "SCRAM-SHA-256-PLUS",
	.flags = OSP_SASL_CLIENT_FIRST | OSP_SASL_NEED_CB,
	.state_size = sizeof(struct scram_state),
	.step = scram_sha256_plus_step,
};
