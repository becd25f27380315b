/* SPDX-License-Identifier: ISC */
/* Account credentials in <data-dir>/auth.db: a crypt() hash, SCRAM-SHA-1
 * and SCRAM-SHA-256 salted keys and CRAM-MD5 state; never the password. */
#ifndef OSPREY_AUTH_H
#define OSPREY_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Every function taking a struct osp_auth is BLOCKING (SQLite with
 * synchronous=FULL, and crypt() is deliberately slow): in the server call
 * them on the worker pool (osp_worker_submit), never on the loop. A handle
 * is thread-safe (serialized internally).
 *
 * Credentials are keyed by account name (domains.yaml). To log in with an
 * address, map it to its account first with osp_accounts_login_account()
 * (accounts.h): exact destination addresses only.
 *
 * Passwords are bytes (UTF-8 by convention) without NUL. SCRAM keys are
 * derived from the password normalized with the PRECIS OpaqueString
 * profile (RFC 8265, SASLprep's successor; the same for ASCII); crypt()
 * hashes use the bytes as given. Secrets in memory are wiped with
 * osp_memzero.
 * *error_r is static text.
 */
struct osp_auth;

/* Opens (creating, mode 0600) <data_dir>/auth.db; WAL, synchronous=FULL,
 * secure_delete (replaced hashes are overwritten in the file). */
int	osp_auth_open(const char *data_dir, struct osp_auth **auth_r,
	    const char **error_r);
void	osp_auth_close(struct osp_auth *auth);
/* The server's handle (opened at startup after the privilege drop), or
 * NULL outside `serve`. Main thread (pass it to the worker). */
struct osp_auth *osp_auth_current(void);

/* Stores every credential form for account, replacing the old ones, in one
 * transaction. -EINVAL for a password with a NUL byte or longer than
 * 1024 bytes. Minimum lengths are the caller's policy. */
int	osp_auth_set_password(struct osp_auth *auth, const char *account,
	    const char *password, size_t len, const char **error_r);
/* Forgets an account's credentials (OSP_OK also when there were none). */
int	osp_auth_remove(struct osp_auth *auth, const char *account,
	    const char **error_r);
/* Whether credentials exist for account. */
int	osp_auth_has_password(struct osp_auth *auth, const char *account,
	    bool *has_r, const char **error_r);

/* OSP_OK when password matches the stored crypt() hash (constant-time
 * comparison), OSP_EAUTH when it does not or the account has no
 * password (a hash is computed anyway, so timing does not tell which). */
int	osp_auth_verify_plain(struct osp_auth *auth, const char *account,
	    const char *password, size_t len, const char **error_r);

/* SCRAM (RFC 5802 §3) server-side keys. */
#define OSP_AUTH_SCRAM_MAXKEY	32	/* SHA-256 output */
#define OSP_AUTH_SCRAM_SALT	16
#define OSP_AUTH_SCRAM_ITER	4096

struct osp_auth_scram {
	unsigned char	 salt[64];
	size_t		 salt_len;
	uint32_t	 iterations;
	size_t		 key_len;	/* 20 (SHA-1) or 32 (SHA-256) */
	unsigned char	 stored_key[OSP_AUTH_SCRAM_MAXKEY];
	unsigned char	 server_key[OSP_AUTH_SCRAM_MAXKEY];
};

/* The keys for mech "SCRAM-SHA-1" or "SCRAM-SHA-256" (a "-PLUS" suffix is
 * accepted). -ENOENT when the account has none, -EINVAL for another mech.
 * Wipe *keys_r with osp_memzero after use. */
int	osp_auth_scram_get(struct osp_auth *auth, const char *account,
	    const char *mech, struct osp_auth_scram *keys_r,
	    const char **error_r);
/* Derives keys from a password (pure; any thread). hash: "SHA-1" or
 * "SHA-256". */
int	osp_auth_scram_derive(const char *hash, const char *password,
	    size_t len, const unsigned char *salt, size_t salt_len,
	    uint32_t iterations, struct osp_auth_scram *keys_r);
/* Server side of SCRAM's final step (RFC 5802 §3): OSP_OK when
 * H(proof XOR HMAC(StoredKey, AuthMessage)) == StoredKey (constant time),
 * else OSP_EAUTH. The ServerSignature HMAC(ServerKey, AuthMessage) is
 * written to sig_r (key_len bytes) when sig_r is not NULL. */
int	osp_auth_scram_verify_proof(const struct osp_auth_scram *keys,
	    const char *auth_message, size_t auth_message_len,
	    const unsigned char *proof, size_t proof_len,
	    unsigned char *sig_r);

/* CRAM-MD5 (RFC 2195): OSP_OK when response_hex (32 hex digits, any case)
 * is HMAC-MD5(password, challenge), from the stored precomputed state;
 * OSP_EAUTH otherwise or when the account has no state. */
int	osp_auth_cram_md5_verify(struct osp_auth *auth, const char *account,
	    const char *challenge, size_t challenge_len,
	    const char *response_hex, const char **error_r);
/* The precomputed HMAC-MD5 state (RFC 2104): MD5 chaining values after
 * the blocks key^ipad and key^opad, 4 words each, as Dovecot's CRAM-MD5
 * scheme keeps them. Pure; any thread. */
void	osp_auth_cram_md5_state(const char *password, size_t len,
	    uint32_t state_r[8]);
void	osp_auth_cram_md5_hmac(const uint32_t state[8], const void *msg,
	    size_t len, unsigned char digest_r[16]);

/*
 * TLS client certificates for SASL EXTERNAL (RFC 4422 appendix A): an
 * account registers certificates; a client presenting one of them logs in
 * as that account. Matched by the SHA-256 of the certificate's
 * SubjectPublicKeyInfo, so a renewed certificate with the same key keeps
 * working. `der`: the certificate in DER. name: a label for listings.
 */
int	osp_auth_cert_add(struct osp_auth *auth, const char *account,
	    const unsigned char *der, size_t len, const char *name,
	    const char **error_r);
/* Removes by fingerprint (hex, as listed) or name. -ENOENT if none. */
int	osp_auth_cert_remove(struct osp_auth *auth, const char *account,
	    const char *fingerprint_or_name, const char **error_r);
struct osp_pool;
struct osp_auth_cert {
	const char	*account;
	const char	*name;
	const char	*fingerprint;	/* hex SHA-256 of the SPKI */
};
/* Lists an account's certificates (NULL account: all), from pool. */
int	osp_auth_cert_list(struct osp_auth *auth, const char *account,
	    struct osp_pool *pool, struct osp_auth_cert **certs_r,
	    size_t *n_r, const char **error_r);
/* The account owning the certificate `der`: OSP_OK with *account_r from
 * pool, or -ENOENT. */
int	osp_auth_cert_account(struct osp_auth *auth, const unsigned char *der,
	    size_t len, struct osp_pool *pool, const char **account_r,
	    const char **error_r);

/* Constant-time comparison of two buffers of len bytes. */
bool	osp_auth_mem_equal(const void *a, const void *b, size_t len);

#endif
