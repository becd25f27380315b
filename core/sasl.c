/* SPDX-License-Identifier: ISC */
/* SASL exchanges (include/osprey/sasl.h): one object per AUTH/AUTHENTICATE,
 * its steps run on the worker pool; the offer policy; the built-ins. */
#include "sasl_int.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Longest channel binding kept: tls-exporter is 32 bytes (RFC 9266 §2),
 * tls-unique the TLS 1.2 Finished message, 12 bytes (RFC 5929 §3.1). */
#define SASL_CB_MAX	64

struct osp_sasl {
	const struct osp_sasl_mech *mech;
	char			*service;
	void			*state;	/* mech->state_size bytes */
	struct osp_auth		*auth;
	struct osp_accounts	*accounts;	/* referenced, or NULL */
	char			*hostname;
	/* Channel bindings captured at new (main thread: the TLS session
	 * is a loop object). len 0: not available. */
	unsigned char		 cb_exporter[SASL_CB_MAX];
	size_t			 cb_exporter_len;
	unsigned char		 cb_unique[SASL_CB_MAX];
	size_t			 cb_unique_len;
	unsigned char		*peer_cert;
	size_t			 peer_cert_len;
	/* The step in flight: its input (copied, wiped after) and result. */
	unsigned char		*in;
	size_t			 inlen;
	int			 rc;
	const unsigned char	*out;
	size_t			 outlen;
	unsigned char		*outbuf;	/* osp_sasl_out() */
	size_t			 outbuf_size;
	osp_sasl_done_fn	*done;
	void			*arg;
	bool			 busy;	/* a step is on a worker */
	bool			 freed;	/* free when it returns */
	bool			 finished;	/* OK or failure seen */
	char			*account, *username, *reason;
};

/* ------------------------------------------------------------------ */
/* Offer policy                                                         */

/*
 * Which mechanisms a connection is offered. Password mechanisms (PLAIN,
 * LOGIN, CRAM-MD5, SCRAM without -PLUS) only under TLS unless the
 * protocol allows cleartext: PLAIN and LOGIN reveal the password, and
 * although CRAM-MD5 and SCRAM do not, an eavesdropper can still run an
 * offline dictionary attack on what they exchange and, without TLS, read
 * everything that follows. Since RFC 8314 mail clients reach submission
 * over TLS; as mox does, credentials travel only inside TLS.
 */
bool
osp_sasl_mech_usable(const struct osp_sasl_mech *mech, struct osp_conn *c,
    bool allow_plaintext)
{
	unsigned char cb[SASL_CB_MAX];
	size_t len;
	bool tls;

	tls = c != NULL && osp_conn_is_tls(c);
	if (mech->flags & OSP_SASL_EXTERNAL)
		return tls && osp_conn_tls_peer_cert(c, &len) != NULL;
	if (mech->flags & OSP_SASL_NEED_CB)
		return tls && (osp_conn_tls_channel_binding(c, "tls-exporter",
		    cb, sizeof(cb)) > 0 || osp_conn_tls_channel_binding(c,
		    "tls-unique", cb, sizeof(cb)) > 0);
	return tls || allow_plaintext;
}

/* ------------------------------------------------------------------ */
/* Exchanges: protocol side                                             */

struct osp_sasl *
osp_sasl_new(const struct osp_sasl_mech *mech, struct osp_conn *c,
    const char *service)
{
	const unsigned char *cert;
	const char *host;
	struct osp_sasl *s;
	char hbuf[256];
	size_t len;
	int n;

	s = osp_calloc(1, sizeof(*s));
	s->mech = mech;
	s->service = osp_strdup(service != NULL ? service : "sasl");
	s->state = osp_calloc(1, mech->state_size > 0 ? mech->state_size : 1);
	s->auth = osp_auth_current();
	s->accounts = osp_accounts_ref(osp_accounts_current());
	host = osp_config_hostname(NULL);
	if (host == NULL) {
		if (gethostname(hbuf, sizeof(hbuf)) != 0)
			osp_strlcpy(hbuf, "localhost", sizeof(hbuf));
		hbuf[sizeof(hbuf) - 1] = '\0';
		host = hbuf;
	}
	s->hostname = osp_strdup(host);
	if (c != NULL && osp_conn_is_tls(c)) {
		/* RFC 9266: tls-exporter (TLS 1.3, or 1.2 with the extended
		 * master secret); RFC 5929: tls-unique (TLS 1.2 only). */
		n = osp_conn_tls_channel_binding(c, "tls-exporter",
		    s->cb_exporter, sizeof(s->cb_exporter));
		s->cb_exporter_len = n > 0 ? (size_t)n : 0;
		n = osp_conn_tls_channel_binding(c, "tls-unique",
		    s->cb_unique, sizeof(s->cb_unique));
		s->cb_unique_len = n > 0 ? (size_t)n : 0;
		if ((cert = osp_conn_tls_peer_cert(c, &len)) != NULL &&
		    len > 0) {
			s->peer_cert = osp_malloc(len);
			memcpy(s->peer_cert, cert, len);
			s->peer_cert_len = len;
		}
	}
	return s;
}

static void
sasl_destroy(struct osp_sasl *s)
{
	osp_memzero(s->state, s->mech->state_size);
	osp_free(s->state);
	if (s->outbuf != NULL) {
		osp_memzero(s->outbuf, s->outbuf_size);
		osp_free(s->outbuf);
	}
	if (s->in != NULL) {
		osp_memzero(s->in, s->inlen);
		osp_free(s->in);
	}
	osp_accounts_unref(s->accounts);
	osp_free(s->peer_cert);
	osp_free(s->service);
	osp_free(s->hostname);
	osp_free(s->account);
	osp_free(s->username);
	osp_free(s->reason);
	osp_memzero(s, sizeof(*s));
	osp_free(s);
}

/* Worker thread: only the exchange and what step() may touch. */
static void
sasl_work(void *arg)
{
	struct osp_sasl *s = arg;

	s->out = NULL;
	s->outlen = 0;
	if (s->finished) {
		/* A step after success or failure is the caller's bug;
		 * never let a mechanism see it. */
		s->rc = -EINVAL;
		return;
	}
	s->rc = s->mech->step(s, s->in, s->inlen, &s->out, &s->outlen);
	if (s->rc != OSP_AGAIN) {
		s->finished = true;
		if (s->rc != OSP_OK) {
			/* Nobody is logged in after a failure. */
			s->out = NULL;
			s->outlen = 0;
			osp_free(s->account);
			s->account = NULL;
		}
	}
	if (s->rc == OSP_OK && s->account == NULL) {
		/* A mechanism that forgot osp_sasl_set_account() has not
		 * authenticated anyone. */
		osp_log_err("sasl", "%s: mechanism %s returned OK without an "
		    "account", s->service, s->mech->name);
		s->rc = OSP_ERROR;
	}
}

/* Main thread. */
static void
sasl_work_done(void *arg)
{
	struct osp_sasl *s = arg;

	s->busy = false;
	if (s->in != NULL) {
		osp_memzero(s->in, s->inlen);
		osp_free(s->in);
		s->in = NULL;
		s->inlen = 0;
	}
	if (s->freed) {
		sasl_destroy(s);
		return;
	}
	s->done(s->arg, s->rc, s->out, s->outlen);
}

void
osp_sasl_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    osp_sasl_done_fn *done, void *arg)
{
	/* One step at a time: a second one is our own bug. */
	assert(!s->busy && !s->freed);
	s->busy = true;
	s->done = done;
	s->arg = arg;
	/* Input is copied (also when empty) so the caller's buffer may go. */
	s->in = osp_malloc(inlen + 1);
	if (inlen > 0)
		memcpy(s->in, in, inlen);
	s->in[inlen] = '\0';
	s->inlen = inlen;
	osp_free(s->reason);
	s->reason = NULL;
	osp_worker_submit(sasl_work, sasl_work_done, s);
}

const char *
osp_sasl_account(const struct osp_sasl *s)
{
	return s->account;
}

const char *
osp_sasl_username(const struct osp_sasl *s)
{
	return s->username;
}

const char *
osp_sasl_reason(const struct osp_sasl *s)
{
	return s->reason;
}

void
osp_sasl_free(struct osp_sasl *s)
{
	if (s == NULL)
		return;
	if (s->busy) {
		/* The worker owns it until sasl_work_done, which frees it
		 * instead of calling done(). */
		s->freed = true;
		return;
	}
	sasl_destroy(s);
}

/* ------------------------------------------------------------------ */
/* Exchanges: mechanism side (worker thread)                            */

void *
osp_sasl_state(struct osp_sasl *s)
{
	return s->state;
}

struct osp_auth *
osp_sasl_auth(struct osp_sasl *s)
{
	return s->auth;
}

const struct osp_accounts *
osp_sasl_accounts(struct osp_sasl *s)
{
	return s->accounts;
}

const unsigned char *
osp_sasl_channel_binding(struct osp_sasl *s, const char **type_r,
    size_t *len_r)
{
	/* The type a client uses by default: tls-unique under TLS 1.2
	 * (RFC 5929 §7 made it SCRAM's default), tls-exporter where
	 * tls-unique is undefined (TLS 1.3, RFC 9266 §3). */
	if (s->cb_unique_len > 0) {
		if (type_r != NULL)
			*type_r = "tls-unique";
		*len_r = s->cb_unique_len;
		return s->cb_unique;
	}
	if (s->cb_exporter_len > 0) {
		if (type_r != NULL)
			*type_r = "tls-exporter";
		*len_r = s->cb_exporter_len;
		return s->cb_exporter;
	}
	if (type_r != NULL)
		*type_r = NULL;
	*len_r = 0;
	return NULL;
}

const unsigned char *
osp_sasl_channel_binding_of(struct osp_sasl *s, const char *type,
    size_t *len_r)
{
	*len_r = 0;
	if (strcmp(type, "tls-exporter") == 0 && s->cb_exporter_len > 0) {
		*len_r = s->cb_exporter_len;
		return s->cb_exporter;
	}
	if (strcmp(type, "tls-unique") == 0 && s->cb_unique_len > 0) {
		*len_r = s->cb_unique_len;
		return s->cb_unique;
	}
	return NULL;
}

const unsigned char *
osp_sasl_peer_cert(struct osp_sasl *s, size_t *len_r)
{
	*len_r = s->peer_cert_len;
	return s->peer_cert;
}

const char *
osp_sasl_hostname(struct osp_sasl *s)
{
	return s->hostname;
}

unsigned char *
osp_sasl_out(struct osp_sasl *s, size_t len)
{
	/* One byte more: mechanisms may NUL-terminate their text. */
	if (len + 1 > s->outbuf_size) {
		if (s->outbuf != NULL) {
			osp_memzero(s->outbuf, s->outbuf_size);
			osp_free(s->outbuf);
		}
		s->outbuf_size = len + 1 < 256 ? 256 : len + 1;
		s->outbuf = osp_malloc(s->outbuf_size);
	}
	memset(s->outbuf, 0, len + 1);
	return s->outbuf;
}

void
osp_sasl_set_account(struct osp_sasl *s, const char *account,
    const char *username)
{
	osp_free(s->account);
	osp_free(s->username);
	s->account = account != NULL ? osp_strdup(account) : NULL;
	s->username = username != NULL ? osp_strdup(username) : NULL;
}

void
osp_sasl_set_reason(struct osp_sasl *s, const char *reason)
{
	osp_free(s->reason);
	s->reason = reason != NULL ? osp_strdup(reason) : NULL;
}

/* ------------------------------------------------------------------ */
/* Built-ins                                                            */

static const struct osp_module sasl_core_module = {
	.abi = OSP_MODULE_ABI,
	.name = "core",
	.version = PACKAGE_VERSION,
};

static struct osp_module_ctx sasl_core_ctx = {
	.mod = &sasl_core_module,
	.index = (unsigned)-1,
};

int
osp_sasl_builtin_init(void)
{
	/* Registration order is the order of preference in EHLO's AUTH
	 * line: channel-bound SCRAM first, then SCRAM, the older
	 * challenge-response, the plaintext ones, EXTERNAL last. */
	static const struct osp_sasl_mech *const builtins[] = {
		&osp_sasl_mech_scram_sha256_plus,
		&osp_sasl_mech_scram_sha256,
		&osp_sasl_mech_scram_sha1_plus,
		&osp_sasl_mech_scram_sha1,
		&osp_sasl_mech_cram_md5,
		&osp_sasl_mech_plain,
		&osp_sasl_mech_login,
		&osp_sasl_mech_external,
	};
	static bool done;
	size_t i;
	int rc = OSP_OK;

	if (done)
		return OSP_OK;
	osp_module_set_registering(&sasl_core_ctx);
	for (i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		if ((rc = osp_sasl_mech_add(&sasl_core_ctx, builtins[i])) !=
		    OSP_OK)
			break;
	osp_module_set_registering(NULL);
	if (rc != OSP_OK) {
		osp_registry_remove_module(&sasl_core_ctx);
		return rc;
	}
	done = true;
	return OSP_OK;
}
