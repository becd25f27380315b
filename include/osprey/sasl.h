/* SPDX-License-Identifier: ISC */
/* SASL mechanism registry (server side). */
#ifndef OSPREY_SASL_H
#define OSPREY_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct osp_module_ctx;
struct osp_conn;
struct osp_auth;
struct osp_accounts;
struct osp_sasl;	/* one exchange; state of mech->state_size bytes */

#define OSP_SASL_PLAINTEXT	0x01	/* exposes the password: TLS only */
#define OSP_SASL_NEED_CB	0x02	/* needs TLS channel binding (-PLUS) */
#define OSP_SASL_CLIENT_FIRST	0x04	/* client speaks first (SASL-IR) */
#define OSP_SASL_EXTERNAL	0x08	/* identity from the TLS layer */

/*
 * A mechanism's step() receives the client's response (decoded from
 * base64 by the protocol) and returns:
 *   OSP_AGAIN  with *out and *outlen set to the next challenge,
 *   OSP_OK     authenticated (osp_sasl_set_account() was called); *out may
 *              carry final server data (SCRAM's v=),
 *   OSP_EAUTH  credentials rejected,
 *   OSP_ETEMP  temporary failure (auth.db unreadable; SMTP 454 4.7.0),
 *   any other negative: malformed input (SMTP 501 5.5.2).
 * The first step: for OSP_SASL_CLIENT_FIRST mechanisms it carries the
 * client's initial response (RFC 4954 §4 / RFC 9051 SASL-IR; when the
 * client gave none the protocol sends an empty challenge itself and steps
 * with the reply; "=" is a zero-length response). Other mechanisms speak
 * first: the protocol steps with no input (inlen 0) to get the first
 * challenge (LOGIN also accepts the username as an initial response).
 * Credentials are checked only through the core's auth API; step() never
 * logs input. step() runs on a WORKER THREAD (it may block on auth.db and
 * crypt()): it may use only the osp_sasl_* accessors below, auth.h and
 * accounts.h lookups, never loop objects.
 *
 * The core registers PLAIN, LOGIN, CRAM-MD5, SCRAM-SHA-1, SCRAM-SHA-256,
 * their -PLUS variants and EXTERNAL (core/sasl*.c) before modules init.
 */
struct osp_sasl_mech {
	const char	*name;		/* "SCRAM-SHA-256-PLUS" */
	uint32_t	 flags;
	size_t		 state_size;
	int		(*step)(struct osp_sasl *s, const unsigned char *in,
			    size_t inlen, const unsigned char **out,
			    size_t *outlen);
};

/* Registers a mechanism; `mech` stays valid until fini(). Only in init().
 * -EEXIST when the name is taken. */
int	osp_sasl_mech_add(struct osp_module_ctx *ctx,
	    const struct osp_sasl_mech *mech);
/* Looks up a mechanism by name (case-insensitive), or NULL. */
const struct osp_sasl_mech *osp_sasl_mech_find(const char *name);
/* Calls fn for every registered mechanism in registration order. */
void	osp_sasl_mech_foreach(void (*fn)(const struct osp_sasl_mech *,
	    void *), void *arg);


/* ---- exchanges: the protocol side (SMTP AUTH, IMAP AUTHENTICATE) ---- */

/*
 * Whether `mech` may be offered on connection c (NULL: no TLS):
 * EXTERNAL needs TLS with a client certificate; NEED_CB mechanisms need
 * TLS with a channel binding available; every other (password)
 * mechanism, PLAINTEXT or not (CRAM-MD5, SCRAM), needs TLS unless
 * allow_plaintext: since RFC 8314 credentials travel only inside TLS
 * (what cleartext CRAM-MD5 or SCRAM expose still allows an offline
 * dictionary attack), as mox does. Main thread.
 */
bool	osp_sasl_mech_usable(const struct osp_sasl_mech *mech,
	    struct osp_conn *c, bool allow_plaintext);

/*
 * Starts an exchange for `mech` (registered, not NULL) on connection c
 * (may be NULL: no TLS data). Captures what the mechanism may need on the worker now: the
 * channel binding (RFC 9266 tls-exporter; RFC 5929 tls-unique under
 * TLS 1.2), the peer certificate, the accounts snapshot and the auth
 * handle. `service` ("smtp", "imap") is for logs. Main thread.
 */
struct osp_sasl *osp_sasl_new(const struct osp_sasl_mech *mech,
	    struct osp_conn *c, const char *service);
/*
 * Runs mech->step(in) on the worker pool, then done(arg, rc, out, outlen)
 * on the main thread, with rc as step() returned (OSP_AGAIN: challenge in
 * out; OSP_OK: authenticated, out may hold final data; OSP_EAUTH;
 * OSP_ETEMP; other negatives: malformed; -EINVAL for a step after the
 * exchange ended). `in` is copied; `out` is valid until the next step or
 * free. One step at a time. Main thread.
 */
typedef void osp_sasl_done_fn(void *arg, int rc, const unsigned char *out,
    size_t outlen);
void	osp_sasl_step(struct osp_sasl *s, const unsigned char *in,
	    size_t inlen, osp_sasl_done_fn *done, void *arg);
/* After OSP_OK: the account logged in (an account name of domains.yaml)
 * and the identity the client used (username, certificate), for logs.
 * After a failure the account is NULL; the username is the one the
 * client gave when the mechanism got that far (for the log), else NULL. */
const char *osp_sasl_account(const struct osp_sasl *s);
const char *osp_sasl_username(const struct osp_sasl *s);
/* Why the last step failed, for the server log only ("unknown user",
 * "bad password", "channel binding mismatch"); never sent to clients,
 * which must not learn whether a user exists. May be NULL. */
const char *osp_sasl_reason(const struct osp_sasl *s);
/* Frees the exchange (state wiped). With a step in flight, done() is not
 * called and the memory goes when the worker returns. NULL: no-op. Main
 * thread. */
void	osp_sasl_free(struct osp_sasl *s);

/* ---- exchanges: the mechanism side (inside step(), worker thread) ---- */

/* state_size bytes, zeroed at osp_sasl_new, wiped at free. */
void	*osp_sasl_state(struct osp_sasl *s);
/* The auth handle and accounts snapshot captured at osp_sasl_new (the
 * snapshot may be NULL: no accounts). */
struct osp_auth *osp_sasl_auth(struct osp_sasl *s);
const struct osp_accounts *osp_sasl_accounts(struct osp_sasl *s);
/* Channel binding captured at new: *type_r "tls-exporter" or
 * "tls-unique"; NULL when the connection had none. Under TLS 1.2 both
 * may exist: this returns tls-unique, the type clients use there. */
const unsigned char *osp_sasl_channel_binding(struct osp_sasl *s,
	    const char **type_r, size_t *len_r);
/* The TLS client certificate (DER) or NULL. */
const unsigned char *osp_sasl_peer_cert(struct osp_sasl *s, size_t *len_r);
/* A buffer of len bytes for step()'s *out, valid until the next step. */
unsigned char *osp_sasl_out(struct osp_sasl *s, size_t len);
/* Records the outcome, for step() before returning OSP_OK (account and
 * the username given) or a failure (reason). Strings are copied. */
void	osp_sasl_set_account(struct osp_sasl *s, const char *account,
	    const char *username);
void	osp_sasl_set_reason(struct osp_sasl *s, const char *reason);

#endif
