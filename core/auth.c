/* SPDX-License-Identifier: ISC */
/* Credentials in <data-dir>/auth.db: crypt() hashes (libxcrypt), SCRAM
 * keys (RFC 5802) and CRAM-MD5 precomputed HMAC state (RFC 2195). */
#include "core.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <gnutls/abstract.h>
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <sqlite3.h>

#define AUTH_MAX_PASSWORD	1024

struct osp_auth {
	sqlite3		*db;
	pthread_mutex_t	 lock;	/* one statement sequence at a time */
};

bool
osp_auth_mem_equal(const void *a, const void *b, size_t len)
{
	const volatile unsigned char *x = a, *y = b;
	unsigned char d = 0;
	size_t i;

	for (i = 0; i < len; i++)
		d |= x[i] ^ y[i];
	return d == 0;
}

/* ------------------------------------------------------------------ */
/* MD5 (RFC 1321). GnuTLS does not expose MD5's chaining state, which
 * CRAM-MD5's precomputed form needs, so the compression function is here. */

struct md5 {
	uint32_t	s[4];
	uint64_t	nbytes;
	unsigned char	buf[64];
	size_t		buflen;
};

static const uint32_t md5_iv[4] = {
	0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476
};

static const uint32_t md5_k[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a,
	0xa8304613, 0xfd469501, 0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821, 0xf61e2562, 0xc040b340,
	0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8,
	0x676f02d9, 0x8d2a4c8a, 0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70, 0x289b7ec6, 0xeaa127fa,
	0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92,
	0xffeff47d, 0x85845dd1, 0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

static const unsigned char md5_r[64] = {
	7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
	5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
	4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
	6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

static void
md5_compress(uint32_t s[4], const unsigned char blk[64])
{
	uint32_t w[16], a = s[0], b = s[1], c = s[2], d = s[3], f, t;
	unsigned i, g;

	for (i = 0; i < 16; i++)
		w[i] = (uint32_t)blk[i * 4] | (uint32_t)blk[i * 4 + 1] << 8 |
		    (uint32_t)blk[i * 4 + 2] << 16 |
		    (uint32_t)blk[i * 4 + 3] << 24;
	for (i = 0; i < 64; i++) {
		if (i < 16) {
			f = (b & c) | (~b & d);
			g = i;
		} else if (i < 32) {
			f = (d & b) | (~d & c);
			g = (5 * i + 1) % 16;
		} else if (i < 48) {
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
		} else {
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
		}
		t = d;
		d = c;
		c = b;
		f += a + md5_k[i] + w[g];
		b += (f << md5_r[i]) | (f >> (32 - md5_r[i]));
		a = t;
	}
	s[0] += a;
	s[1] += b;
	s[2] += c;
	s[3] += d;
	osp_memzero(w, sizeof(w));
}

/* Starts from a chaining state that has absorbed `done` bytes (0 or a
 * whole number of blocks). */
static void
md5_init_state(struct md5 *m, const uint32_t s[4], uint64_t done)
{
	memcpy(m->s, s, sizeof(m->s));
	m->nbytes = done;
	m->buflen = 0;
}

static void
md5_update(struct md5 *m, const void *data, size_t len)
{
	const unsigned char *p = data;
	size_t n;

	m->nbytes += len;
	while (len > 0) {
		n = 64 - m->buflen;
		if (n > len)
			n = len;
		memcpy(m->buf + m->buflen, p, n);
		m->buflen += n;
		p += n;
		len -= n;
		if (m->buflen == 64) {
			md5_compress(m->s, m->buf);
			m->buflen = 0;
		}
	}
}

static void
md5_final(struct md5 *m, unsigned char out[16])
{
	uint64_t bits = m->nbytes * 8;
	unsigned char pad[72];
	size_t padlen, i;

	padlen = (m->buflen < 56 ? 56 : 120) - m->buflen;
	memset(pad, 0, sizeof(pad));
	pad[0] = 0x80;
	for (i = 0; i < 8; i++)
		pad[padlen + i] = (unsigned char)(bits >> (8 * i));
	md5_update(m, pad, padlen + 8);
	for (i = 0; i < 4; i++) {
		out[i * 4] = (unsigned char)m->s[i];
		out[i * 4 + 1] = (unsigned char)(m->s[i] >> 8);
		out[i * 4 + 2] = (unsigned char)(m->s[i] >> 16);
		out[i * 4 + 3] = (unsigned char)(m->s[i] >> 24);
	}
	osp_memzero(m, sizeof(*m));
}

void
osp_auth_cram_md5_state(const char *password, size_t len, uint32_t state_r[8])
{
	unsigned char key[64], blk[64];
	struct md5 m;
	size_t i;

	/* RFC 2104 §2: keys longer than the block are hashed first. */
	memset(key, 0, sizeof(key));
	if (len > 64) {
		md5_init_state(&m, md5_iv, 0);
		md5_update(&m, password, len);
		md5_final(&m, key);
	} else
		memcpy(key, password, len);
	for (i = 0; i < 64; i++)
		blk[i] = key[i] ^ 0x36;
	memcpy(state_r, md5_iv, sizeof(md5_iv));
	md5_compress(state_r, blk);
	for (i = 0; i < 64; i++)
		blk[i] = key[i] ^ 0x5c;
	memcpy(state_r + 4, md5_iv, sizeof(md5_iv));
	md5_compress(state_r + 4, blk);
	osp_memzero(key, sizeof(key));
	osp_memzero(blk, sizeof(blk));
}

void
osp_auth_cram_md5_hmac(const uint32_t state[8], const void *msg, size_t len,
    unsigned char digest_r[16])
{
	unsigned char inner[16];
	struct md5 m;

	md5_init_state(&m, state, 64);
	md5_update(&m, msg, len);
	md5_final(&m, inner);
	md5_init_state(&m, state + 4, 64);
	md5_update(&m, inner, sizeof(inner));
	md5_final(&m, digest_r);
	osp_memzero(inner, sizeof(inner));
}

/* ------------------------------------------------------------------ */
/* Encodings                                                            */

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void
b64_encode(struct osp_buf *b, const unsigned char *p, size_t len)
{
	uint32_t v;
	size_t i;

	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		osp_buf_putc(b, b64chars[v >> 18]);
		osp_buf_putc(b, b64chars[(v >> 12) & 63]);
		osp_buf_putc(b, b64chars[(v >> 6) & 63]);
		osp_buf_putc(b, b64chars[v & 63]);
	}
	if (len - i == 1) {
		v = (uint32_t)p[i] << 16;
		osp_buf_putc(b, b64chars[v >> 18]);
		osp_buf_putc(b, b64chars[(v >> 12) & 63]);
		osp_buf_puts(b, "==");
	} else if (len - i == 2) {
		v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		osp_buf_putc(b, b64chars[v >> 18]);
		osp_buf_putc(b, b64chars[(v >> 12) & 63]);
		osp_buf_putc(b, b64chars[(v >> 6) & 63]);
		osp_buf_putc(b, '=');
	}
}

/* Strict base64 of exactly len characters into out (size bytes).
 * Returns the decoded length or -1. */
static ssize_t
b64_decode(const char *s, size_t len, unsigned char *out, size_t size)
{
	uint32_t v = 0;
	size_t i, n = 0, pad = 0;
	const char *c;
	int bits = 0;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] == '=') {
			if (i + 2 < len || (i + 1 < len && s[i + 1] != '='))
				return -1;
			pad++;
			continue;
		}
		if (pad > 0 || s[i] == '\0' ||
		    (c = strchr(b64chars, s[i])) == NULL)
			return -1;
		v = v << 6 | (uint32_t)(c - b64chars);
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			if (n >= size)
				return -1;
			out[n++] = (unsigned char)(v >> bits);
		}
	}
	return (ssize_t)n;
}

/* ------------------------------------------------------------------ */
/* SCRAM (RFC 5802 §3)                                                   */

static int
scram_algos(const char *hash, gnutls_mac_algorithm_t *mac_r,
    gnutls_digest_algorithm_t *dig_r, size_t *len_r)
{
	if (strcmp(hash, "SHA-1") == 0) {
		*mac_r = GNUTLS_MAC_SHA1;
		*dig_r = GNUTLS_DIG_SHA1;
		*len_r = 20;
	} else if (strcmp(hash, "SHA-256") == 0) {
		*mac_r = GNUTLS_MAC_SHA256;
		*dig_r = GNUTLS_DIG_SHA256;
		*len_r = 32;
	} else
		return -EINVAL;
	return OSP_OK;
}

int
osp_auth_scram_derive(const char *hash, const char *password, size_t len,
    const unsigned char *salt, size_t salt_len, uint32_t iterations,
    struct osp_auth_scram *keys_r)
{
	gnutls_mac_algorithm_t mac;
	gnutls_digest_algorithm_t dig;
	unsigned char salted[OSP_AUTH_SCRAM_MAXKEY];
	unsigned char client_key[OSP_AUTH_SCRAM_MAXKEY];
	gnutls_datum_t pw, sd;
	size_t klen;
	int rc;

	if (scram_algos(hash, &mac, &dig, &klen) != OSP_OK ||
	    salt_len > sizeof(keys_r->salt) || iterations == 0)
		return -EINVAL;
	memset(keys_r, 0, sizeof(*keys_r));
	/* RFC 5802 §2.2: Normalize(password) with SASLprep; we apply its
	 * successor, the PRECIS OpaqueString profile (RFC 8265 §4.2), as
	 * GnuTLS implements it: identical for ASCII, NFC and non-ASCII
	 * spaces mapped otherwise. A password that is not UTF-8 is used as
	 * the bytes given. */
	if (gnutls_utf8_password_normalize((const unsigned char *)password,
	    (unsigned)len, &pw, GNUTLS_UTF8_IGNORE_ERRS) < 0)
		return -EINVAL;
	sd.data = (unsigned char *)(uintptr_t)salt;
	sd.size = (unsigned)salt_len;
	/* SaltedPassword := Hi(password, salt, i), Hi being PBKDF2 with
	 * HMAC and dkLen the hash length. */
	rc = gnutls_pbkdf2(mac, &pw, &sd, iterations, salted, klen);
	osp_memzero(pw.data, pw.size);
	gnutls_free(pw.data);
	if (rc < 0)
		return OSP_ERROR;
	/* ClientKey := HMAC(SaltedPassword, "Client Key");
	 * StoredKey := H(ClientKey);
	 * ServerKey := HMAC(SaltedPassword, "Server Key"). */
	if (gnutls_hmac_fast(mac, salted, klen, "Client Key", 10,
	    client_key) < 0 ||
	    gnutls_hash_fast(dig, client_key, klen, keys_r->stored_key) < 0 ||
	    gnutls_hmac_fast(mac, salted, klen, "Server Key", 10,
	    keys_r->server_key) < 0)
		rc = OSP_ERROR;
	else
		rc = OSP_OK;
	osp_memzero(salted, sizeof(salted));
	osp_memzero(client_key, sizeof(client_key));
	memcpy(keys_r->salt, salt, salt_len);
	keys_r->salt_len = salt_len;
	keys_r->iterations = iterations;
	keys_r->key_len = klen;
	return rc;
}

int
osp_auth_scram_verify_proof(const struct osp_auth_scram *keys,
    const char *auth_message, size_t auth_message_len,
    const unsigned char *proof, size_t proof_len, unsigned char *sig_r)
{
	gnutls_mac_algorithm_t mac;
	gnutls_digest_algorithm_t dig;
	unsigned char csig[OSP_AUTH_SCRAM_MAXKEY], ckey[OSP_AUTH_SCRAM_MAXKEY];
	unsigned char stored[OSP_AUTH_SCRAM_MAXKEY];
	size_t i;
	int rc;

	if (keys->key_len == 20) {
		mac = GNUTLS_MAC_SHA1;
		dig = GNUTLS_DIG_SHA1;
	} else if (keys->key_len == 32) {
		mac = GNUTLS_MAC_SHA256;
		dig = GNUTLS_DIG_SHA256;
	} else
		return -EINVAL;
	if (proof_len != keys->key_len)
		return OSP_EAUTH;
	/* ClientSignature := HMAC(StoredKey, AuthMessage);
	 * ClientKey := ClientProof XOR ClientSignature; the client is who it
	 * says when H(ClientKey) == StoredKey. */
	if (gnutls_hmac_fast(mac, keys->stored_key, keys->key_len,
	    auth_message, auth_message_len, csig) < 0)
		return OSP_ERROR;
	for (i = 0; i < keys->key_len; i++)
		ckey[i] = proof[i] ^ csig[i];
	if (gnutls_hash_fast(dig, ckey, keys->key_len, stored) < 0)
		rc = OSP_ERROR;
	else if (osp_auth_mem_equal(stored, keys->stored_key, keys->key_len))
		rc = OSP_OK;
	else
		rc = OSP_EAUTH;
	if (rc == OSP_OK && sig_r != NULL &&
	    gnutls_hmac_fast(mac, keys->server_key, keys->key_len,
	    auth_message, auth_message_len, sig_r) < 0)
		rc = OSP_ERROR;
	osp_memzero(ckey, sizeof(ckey));
	osp_memzero(csig, sizeof(csig));
	return rc;
}

/* Stored form: "iterations,salt,StoredKey,ServerKey" (base64). */
static char *
scram_encode(const struct osp_auth_scram *k)
{
	struct osp_buf b = { 0 };

	osp_buf_printf(&b, "%u,", (unsigned)k->iterations);
	b64_encode(&b, k->salt, k->salt_len);
	osp_buf_putc(&b, ',');
	b64_encode(&b, k->stored_key, k->key_len);
	osp_buf_putc(&b, ',');
	b64_encode(&b, k->server_key, k->key_len);
	return b.data;
}

static int
scram_decode(const char *s, size_t klen, struct osp_auth_scram *k)
{
	const char *p[3];
	char *end;
	unsigned long it;
	ssize_t n;

	memset(k, 0, sizeof(*k));
	errno = 0;
	it = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != ',' || it == 0 ||
	    it > UINT32_MAX)
		return -EINVAL;
	p[0] = end + 1;
	if ((p[1] = strchr(p[0], ',')) == NULL ||
	    (p[2] = strchr(++p[1], ',')) == NULL)
		return -EINVAL;
	p[2]++;
	k->iterations = (uint32_t)it;
	k->key_len = klen;
	n = b64_decode(p[0], (size_t)(p[1] - 1 - p[0]), k->salt,
	    sizeof(k->salt));
	if (n <= 0)
		return -EINVAL;
	k->salt_len = (size_t)n;
	if (b64_decode(p[1], (size_t)(p[2] - 1 - p[1]), k->stored_key,
	    klen) != (ssize_t)klen ||
	    b64_decode(p[2], strlen(p[2]), k->server_key, klen) !=
	    (ssize_t)klen)
		return -EINVAL;
	return OSP_OK;
}

/* ------------------------------------------------------------------ */
/* crypt() with libxcrypt                                               */

/* Hashes pw (NUL-terminated) with `setting`; NULL setting: a new yescrypt
 * salt, or bcrypt where yescrypt is unavailable. Result in out. */
static int
crypt_hash(const char *pw, const char *setting, char *out, size_t size)
{
	struct crypt_data *cd;
	char *gen = NULL, *h;
	int rc = OSP_OK;

	if (setting == NULL) {
		if ((gen = crypt_gensalt_ra("$y$", 0, NULL, 0)) == NULL)
			gen = crypt_gensalt_ra("$2b$", 0, NULL, 0);
		if (gen == NULL)
			return errno != 0 ? -errno : OSP_ERROR;
		setting = gen;
	}
	cd = osp_calloc(1, sizeof(*cd));
	h = crypt_rn(pw, setting, cd, sizeof(*cd));
	/* libxcrypt returns NULL or a string starting with '*' on failure. */
	if (h == NULL || h[0] == '*' || strlen(h) >= size)
		rc = OSP_ERROR;
	else
		osp_strlcpy(out, h, size);
	osp_memzero(cd, sizeof(*cd));
	osp_free(cd);
	free(gen);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The database                                                         */

static const char auth_schema[] =
	"CREATE TABLE IF NOT EXISTS credentials ("
	" account TEXT PRIMARY KEY,"
	" crypt TEXT,"
	" scram_sha1 TEXT,"
	" scram_sha256 TEXT,"
	" cram_md5 TEXT,"
	" updated INTEGER)";

/* Schema migrations on top of auth_schema: entry i upgrades user_version
 * i to i + 1, in one transaction that re-reads the version (a CLI command
 * and the server may open auth.db at the same time). */
static const char *const auth_migrations[] = {
	/* v1: TLS client certificates for SASL EXTERNAL. One key belongs
	 * to one account; names are unique per account. */
	"CREATE TABLE IF NOT EXISTS certificates ("
	" fingerprint TEXT PRIMARY KEY,"
	" account TEXT NOT NULL,"
	" name TEXT NOT NULL,"
	" added INTEGER,"
	" UNIQUE (account, name));",
};

static int	auth_migrate(struct osp_auth *auth);

int
osp_auth_open(const char *data_dir, struct osp_auth **auth_r,
    const char **error_r)
{
	struct osp_auth *auth;
	int rc;

	*auth_r = NULL;
	auth = osp_calloc(1, sizeof(*auth));
	pthread_mutex_init(&auth->lock, NULL);
	rc = osp_sqlite_open_private(data_dir, "auth.db",
	    "PRAGMA secure_delete=ON;", &auth->db, error_r);
	if (rc != OSP_OK) {
		osp_auth_close(auth);
		return rc;
	}
	if (sqlite3_exec(auth->db, auth_schema, NULL, NULL, NULL) !=
	    SQLITE_OK || auth_migrate(auth) != OSP_OK)
		goto fail;
	*auth_r = auth;
	return OSP_OK;
fail:
	*error_r = "cannot open auth.db";
	osp_log_err("auth", "open auth.db: %s", auth->db != NULL ?
	    sqlite3_errmsg(auth->db) : "out of memory");
	osp_auth_close(auth);
	return OSP_ERROR;
}

void
osp_auth_close(struct osp_auth *auth)
{
	if (auth == NULL)
		return;
	sqlite3_close_v2(auth->db);
	pthread_mutex_destroy(&auth->lock);
	osp_free(auth);
}

/* Reads one column of an account's row into a heap string (*val_r NULL
 * when no row or NULL value). */
static int
auth_get(struct osp_auth *auth, const char *account, const char *column,
    char **val_r, const char **error_r)
{
	sqlite3_stmt *st = NULL;
	const unsigned char *t;
	char sql[96];
	int rc;

	*val_r = NULL;
	snprintf(sql, sizeof(sql), "SELECT %s FROM credentials "
	    "WHERE account = ?", column);
	pthread_mutex_lock(&auth->lock);
	if (sqlite3_prepare_v2(auth->db, sql, -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC) !=
	    SQLITE_OK) {
		rc = OSP_ERROR;
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		if ((t = sqlite3_column_text(st, 0)) != NULL)
			*val_r = osp_strdup((const char *)t);
		rc = OSP_OK;
	} else if (rc == SQLITE_DONE)
		rc = OSP_OK;
	else
		rc = OSP_ERROR;
out:
	if (rc != OSP_OK) {
		osp_log_err("auth", "auth.db: %s", sqlite3_errmsg(auth->db));
		*error_r = "auth.db read failed";
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&auth->lock);
	return rc;
}

static void
free_secret(char *s)
{
	if (s != NULL) {
		osp_memzero(s, strlen(s));
		osp_free(s);
	}
}

int
osp_auth_set_password(struct osp_auth *auth, const char *account,
    const char *password, size_t len, const char **error_r)
{
	struct osp_auth_scram k1, k256;
	unsigned char salt1[OSP_AUTH_SCRAM_SALT], salt256[OSP_AUTH_SCRAM_SALT];
	char hash[CRYPT_OUTPUT_SIZE], cram[65], *pw, *s1 = NULL, *s256 = NULL;
	uint32_t state[8];
	sqlite3_stmt *st = NULL;
	size_t i;
	int rc;

	if (len > AUTH_MAX_PASSWORD || memchr(password, '\0', len) != NULL) {
		*error_r = "password must not contain NUL or exceed 1024 bytes";
		return -EINVAL;
	}
	pw = osp_malloc(len + 1);
	memcpy(pw, password, len);
	pw[len] = '\0';
	rc = crypt_hash(pw, NULL, hash, sizeof(hash));
	osp_memzero(pw, len);
	osp_free(pw);
	if (rc != OSP_OK) {
		*error_r = "crypt() failed";
		return rc;
	}
	if (gnutls_rnd(GNUTLS_RND_RANDOM, salt1, sizeof(salt1)) < 0 ||
	    gnutls_rnd(GNUTLS_RND_RANDOM, salt256, sizeof(salt256)) < 0 ||
	    osp_auth_scram_derive("SHA-1", password, len, salt1,
	    sizeof(salt1), OSP_AUTH_SCRAM_ITER, &k1) != OSP_OK ||
	    osp_auth_scram_derive("SHA-256", password, len, salt256,
	    sizeof(salt256), OSP_AUTH_SCRAM_ITER, &k256) != OSP_OK) {
		*error_r = "SCRAM key derivation failed";
		rc = OSP_ERROR;
		goto out;
	}
	s1 = scram_encode(&k1);
	s256 = scram_encode(&k256);
	osp_auth_cram_md5_state(password, len, state);
	for (i = 0; i < 32; i++)
		snprintf(cram + i * 2, 3, "%02x",
		    (unsigned)(state[i / 4] >> (8 * (i % 4))) & 0xff);

	pthread_mutex_lock(&auth->lock);
	if (sqlite3_prepare_v2(auth->db, "INSERT OR REPLACE INTO credentials"
	    " (account, crypt, scram_sha1, scram_sha256, cram_md5, updated)"
	    " VALUES (?, ?, ?, ?, ?, ?)", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, hash, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 3, s1, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 4, s256, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 5, cram, -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 6, (sqlite3_int64)time(NULL)) ||
	    sqlite3_step(st) != SQLITE_DONE) {
		osp_log_err("auth", "auth.db: %s", sqlite3_errmsg(auth->db));
		*error_r = "auth.db write failed";
		rc = OSP_ERROR;
	}
	sqlite3_finalize(st);
	pthread_mutex_unlock(&auth->lock);
out:
	osp_memzero(&k1, sizeof(k1));
	osp_memzero(&k256, sizeof(k256));
	osp_memzero(state, sizeof(state));
	osp_memzero(cram, sizeof(cram));
	osp_memzero(hash, sizeof(hash));
	free_secret(s1);
	free_secret(s256);
	return rc;
}

int
osp_auth_remove(struct osp_auth *auth, const char *account,
    const char **error_r)
{
	sqlite3_stmt *st = NULL;
	int rc = OSP_OK;

	static const char *const sql[] = {
		"DELETE FROM credentials WHERE account = ?",
		/* A later account of the same name must not inherit the
		 * old one's EXTERNAL logins. */
		"DELETE FROM certificates WHERE account = ?",
	};
	size_t i;

	pthread_mutex_lock(&auth->lock);
	for (i = 0; i < sizeof(sql) / sizeof(sql[0]) && rc == OSP_OK; i++) {
		if (sqlite3_prepare_v2(auth->db, sql[i], -1, &st, NULL) !=
		    SQLITE_OK ||
		    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC) ||
		    sqlite3_step(st) != SQLITE_DONE) {
			osp_log_err("auth", "auth.db: %s",
			    sqlite3_errmsg(auth->db));
			*error_r = "auth.db write failed";
			rc = OSP_ERROR;
		}
		sqlite3_finalize(st);
		st = NULL;
	}
	pthread_mutex_unlock(&auth->lock);
	return rc;
}

int
osp_auth_has_password(struct osp_auth *auth, const char *account,
    bool *has_r, const char **error_r)
{
	char *h;
	int rc;

	rc = auth_get(auth, account, "crypt", &h, error_r);
	*has_r = h != NULL;
	free_secret(h);
	return rc;
}

int
osp_auth_verify_plain(struct osp_auth *auth, const char *account,
    const char *password, size_t len, const char **error_r)
{
	char out[CRYPT_OUTPUT_SIZE], *stored, *pw;
	size_t slen;
	int rc;

	if ((rc = auth_get(auth, account, "crypt", &stored, error_r)) !=
	    OSP_OK)
		return rc;
	pw = osp_malloc(len + 1);
	memcpy(pw, password, len);
	pw[len] = '\0';
	if (stored == NULL || len > AUTH_MAX_PASSWORD ||
	    memchr(password, '\0', len) != NULL) {
		/* Same work as a real check, then refuse. */
		(void)crypt_hash(pw, NULL, out, sizeof(out));
		rc = OSP_EAUTH;
	} else if (crypt_hash(pw, stored, out, sizeof(out)) != OSP_OK)
		rc = OSP_EAUTH;
	else {
		slen = strlen(stored);
		rc = strlen(out) == slen && osp_auth_mem_equal(out, stored,
		    slen) ? OSP_OK : OSP_EAUTH;
	}
	if (rc == OSP_EAUTH)
		*error_r = "invalid credentials";
	osp_memzero(pw, len);
	osp_free(pw);
	osp_memzero(out, sizeof(out));
	free_secret(stored);
	return rc;
}

int
osp_auth_scram_get(struct osp_auth *auth, const char *account,
    const char *mech, struct osp_auth_scram *keys_r, const char **error_r)
{
	const char *col;
	size_t klen;
	char *v;
	int rc;

	if (osp_str_has_prefix_i(mech, "SCRAM-SHA-256") &&
	    (mech[13] == '\0' || osp_str_eqi(mech + 13, "-PLUS"))) {
		col = "scram_sha256";
		klen = 32;
	} else if (osp_str_has_prefix_i(mech, "SCRAM-SHA-1") &&
	    (mech[11] == '\0' || osp_str_eqi(mech + 11, "-PLUS"))) {
		col = "scram_sha1";
		klen = 20;
	} else {
		*error_r = "unknown SCRAM mechanism";
		return -EINVAL;
	}
	if ((rc = auth_get(auth, account, col, &v, error_r)) != OSP_OK)
		return rc;
	if (v == NULL) {
		*error_r = "no SCRAM credentials";
		return -ENOENT;
	}
	rc = scram_decode(v, klen, keys_r);
	free_secret(v);
	if (rc != OSP_OK) {
		osp_memzero(keys_r, sizeof(*keys_r));
		*error_r = "corrupt SCRAM credentials in auth.db";
		osp_log_err("auth", "corrupt %s for account %s", col, account);
	}
	return rc;
}

int
osp_auth_cram_md5_verify(struct osp_auth *auth, const char *account,
    const char *challenge, size_t challenge_len, const char *response_hex,
    const char **error_r)
{
	unsigned char want[16], got[16];
	uint32_t state[8];
	char *v;
	size_t i;
	int rc, hi, lo;

	if ((rc = auth_get(auth, account, "cram_md5", &v, error_r)) != OSP_OK)
		return rc;
	rc = OSP_EAUTH;
	if (v == NULL || strlen(v) != 64 || strlen(response_hex) != 32)
		goto out;
	memset(state, 0, sizeof(state));
	for (i = 0; i < 32; i++) {
		hi = osp_str_hexval(v[i * 2]);
		lo = osp_str_hexval(v[i * 2 + 1]);
		if (hi < 0 || lo < 0)
			goto out;
		state[i / 4] |= (uint32_t)(hi << 4 | lo) << (8 * (i % 4));
	}
	for (i = 0; i < 16; i++) {
		hi = osp_str_hexval(response_hex[i * 2]);
		lo = osp_str_hexval(response_hex[i * 2 + 1]);
		if (hi < 0 || lo < 0)
			goto out;
		got[i] = (unsigned char)(hi << 4 | lo);
	}
	osp_auth_cram_md5_hmac(state, challenge, challenge_len, want);
	if (osp_auth_mem_equal(want, got, sizeof(want)))
		rc = OSP_OK;
out:
	if (rc != OSP_OK)
		*error_r = "invalid credentials";
	osp_memzero(state, sizeof(state));
	osp_memzero(want, sizeof(want));
	free_secret(v);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The server's handle                                                  */

static struct osp_auth *auth_current;

struct osp_auth *
osp_auth_current(void)
{
	return auth_current;
}

void
osp_auth_set_current(struct osp_auth *auth)
{
	auth_current = auth;
}

/* ------------------------------------------------------------------ */
/* Schema versions                                                      */

static int
auth_user_version(struct osp_auth *auth, int *v_r)
{
	sqlite3_stmt *st = NULL;
	int rc = OSP_ERROR;

	if (sqlite3_prepare_v2(auth->db, "PRAGMA user_version", -1, &st,
	    NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
		*v_r = sqlite3_column_int(st, 0);
		rc = OSP_OK;
	}
	sqlite3_finalize(st);
	return rc;
}

static int
auth_migrate(struct osp_auth *auth)
{
	const int latest = (int)(sizeof(auth_migrations) /
	    sizeof(auth_migrations[0]));
	char sql[64];
	int v;

	if (auth_user_version(auth, &v) != OSP_OK)
		return OSP_ERROR;
	if (v >= latest) {
		if (v > latest)
			osp_log_warn("auth", "auth.db schema version %d is "
			    "newer than this program's %d", v, latest);
		return OSP_OK;
	}
	if (sqlite3_exec(auth->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) !=
	    SQLITE_OK)
		return OSP_ERROR;
	if (auth_user_version(auth, &v) != OSP_OK)
		goto fail;
	for (; v < latest; v++) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(auth->db, auth_migrations[v], NULL, NULL,
		    NULL) != SQLITE_OK ||
		    sqlite3_exec(auth->db, sql, NULL, NULL, NULL) != SQLITE_OK)
			goto fail;
	}
	if (sqlite3_exec(auth->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK)
		return OSP_OK;
fail:
	osp_log_err("auth", "auth.db migration: %s", sqlite3_errmsg(auth->db));
	sqlite3_exec(auth->db, "ROLLBACK", NULL, NULL, NULL);
	return OSP_ERROR;
}

/* ------------------------------------------------------------------ */
/* TLS client certificates (SASL EXTERNAL)                              */

/*
 * The certificate's key fingerprint: hex SHA-256 of its DER
 * SubjectPublicKeyInfo (RFC 5280 §4.1.2.7), what `openssl x509 -pubkey |
 * openssl pkey -pubin -outform der | sha256sum` prints, so that renewing
 * a certificate with the same key keeps it registered. out: 65 bytes.
 */
static int
cert_fingerprint(const unsigned char *der, size_t len, char out[65],
    const char **error_r)
{
	gnutls_x509_crt_t crt = NULL;
	gnutls_pubkey_t pub = NULL;
	gnutls_datum_t d, spki = { NULL, 0 };
	unsigned char h[32];
	size_t i;
	int rc = -EINVAL;

	*error_r = "not an X.509 certificate";
	d.data = (unsigned char *)(uintptr_t)der;
	d.size = (unsigned)len;
	if (len == 0 || len > 1024 * 1024 ||
	    gnutls_x509_crt_init(&crt) < 0)
		return -EINVAL;
	if (gnutls_x509_crt_import(crt, &d, GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_pubkey_init(&pub) < 0)
		goto out;
	if (gnutls_pubkey_import_x509(pub, crt, 0) < 0 ||
	    gnutls_pubkey_export2(pub, GNUTLS_X509_FMT_DER, &spki) < 0) {
		*error_r = "cannot read the certificate's public key";
		goto out;
	}
	if (gnutls_hash_fast(GNUTLS_DIG_SHA256, spki.data, spki.size, h) < 0) {
		*error_r = "SHA-256 failed";
		rc = OSP_ERROR;
		goto out;
	}
	for (i = 0; i < sizeof(h); i++)
		snprintf(out + i * 2, 3, "%02x", h[i]);
	rc = OSP_OK;
out:
	gnutls_free(spki.data);
	if (pub != NULL)
		gnutls_pubkey_deinit(pub);
	gnutls_x509_crt_deinit(crt);
	return rc;
}

static int
cert_dberr(struct osp_auth *auth, const char **error_r, const char *what)
{
	osp_log_err("auth", "auth.db: %s", sqlite3_errmsg(auth->db));
	*error_r = what;
	return OSP_ERROR;
}

int
osp_auth_cert_add(struct osp_auth *auth, const char *account,
    const unsigned char *der, size_t len, const char *name,
    const char **error_r)
{
	sqlite3_stmt *st = NULL;
	char fp[65], label[17];
	int rc;

	if ((rc = cert_fingerprint(der, len, fp, error_r)) != OSP_OK)
		return rc;
	if (name == NULL || *name == '\0') {
		/* Default label: the fingerprint's first 16 digits. */
		osp_strlcpy(label, fp, sizeof(label));
		name = label;
	}
	pthread_mutex_lock(&auth->lock);
	if (sqlite3_prepare_v2(auth->db, "INSERT INTO certificates"
	    " (fingerprint, account, name, added) VALUES (?, ?, ?, ?)", -1,
	    &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, fp, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, account, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 3, name, -1, SQLITE_STATIC) ||
	    sqlite3_bind_int64(st, 4, (sqlite3_int64)time(NULL))) {
		rc = cert_dberr(auth, error_r, "auth.db write failed");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_DONE)
		rc = OSP_OK;
	else if (rc == SQLITE_CONSTRAINT) {
		*error_r = "the certificate's key or the name is already "
		    "registered";
		rc = -EEXIST;
	} else
		rc = cert_dberr(auth, error_r, "auth.db write failed");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&auth->lock);
	return rc;
}

int
osp_auth_cert_remove(struct osp_auth *auth, const char *account,
    const char *fingerprint_or_name, const char **error_r)
{
	sqlite3_stmt *st = NULL;
	int rc;

	pthread_mutex_lock(&auth->lock);
	/* Fingerprints are listed in lower case; accept either. */
	if (sqlite3_prepare_v2(auth->db, "DELETE FROM certificates WHERE"
	    " account = ? AND (fingerprint = lower(?) OR name = ?)", -1, &st,
	    NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, account, -1, SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 2, fingerprint_or_name, -1,
	    SQLITE_STATIC) ||
	    sqlite3_bind_text(st, 3, fingerprint_or_name, -1,
	    SQLITE_STATIC) ||
	    sqlite3_step(st) != SQLITE_DONE)
		rc = cert_dberr(auth, error_r, "auth.db write failed");
	else if (sqlite3_changes(auth->db) == 0) {
		*error_r = "no such certificate for this account";
		rc = -ENOENT;
	} else
		rc = OSP_OK;
	sqlite3_finalize(st);
	pthread_mutex_unlock(&auth->lock);
	return rc;
}

int
osp_auth_cert_list(struct osp_auth *auth, const char *account,
    struct osp_pool *pool, struct osp_auth_cert **certs_r, size_t *n_r,
    const char **error_r)
{
	struct osp_auth_cert *v = NULL;
	sqlite3_stmt *st = NULL;
	size_t n = 0, size = 0;
	int rc;

	*certs_r = NULL;
	*n_r = 0;
	pthread_mutex_lock(&auth->lock);
	if (sqlite3_prepare_v2(auth->db, account != NULL ?
	    "SELECT account, name, fingerprint FROM certificates"
	    " WHERE account = ? ORDER BY account, name" :
	    "SELECT account, name, fingerprint FROM certificates"
	    " ORDER BY account, name", -1, &st, NULL) != SQLITE_OK ||
	    (account != NULL && sqlite3_bind_text(st, 1, account, -1,
	    SQLITE_STATIC) != SQLITE_OK)) {
		rc = cert_dberr(auth, error_r, "auth.db read failed");
		goto out;
	}
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (n == size) {
			size = size == 0 ? 8 : size * 2;
			v = osp_reallocarray(v, size, sizeof(*v));
		}
		v[n].account = osp_pstrdup(pool,
		    (const char *)sqlite3_column_text(st, 0));
		v[n].name = osp_pstrdup(pool,
		    (const char *)sqlite3_column_text(st, 1));
		v[n].fingerprint = osp_pstrdup(pool,
		    (const char *)sqlite3_column_text(st, 2));
		n++;
	}
	if (rc != SQLITE_DONE) {
		rc = cert_dberr(auth, error_r, "auth.db read failed");
		goto out;
	}
	if (n > 0)
		*certs_r = osp_pmemdup(pool, v, n * sizeof(*v));
	*n_r = n;
	rc = OSP_OK;
out:
	osp_free(v);
	sqlite3_finalize(st);
	pthread_mutex_unlock(&auth->lock);
	return rc;
}

int
osp_auth_cert_account(struct osp_auth *auth, const unsigned char *der,
    size_t len, struct osp_pool *pool, const char **account_r,
    const char **error_r)
{
	sqlite3_stmt *st = NULL;
	char fp[65];
	int rc;

	*account_r = NULL;
	if ((rc = cert_fingerprint(der, len, fp, error_r)) != OSP_OK)
		return rc;
	pthread_mutex_lock(&auth->lock);
	if (sqlite3_prepare_v2(auth->db, "SELECT account FROM certificates"
	    " WHERE fingerprint = ?", -1, &st, NULL) != SQLITE_OK ||
	    sqlite3_bind_text(st, 1, fp, -1, SQLITE_STATIC) != SQLITE_OK) {
		rc = cert_dberr(auth, error_r, "auth.db read failed");
		goto out;
	}
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW) {
		*account_r = osp_pstrdup(pool,
		    (const char *)sqlite3_column_text(st, 0));
		rc = OSP_OK;
	} else if (rc == SQLITE_DONE) {
		*error_r = "certificate not registered";
		rc = -ENOENT;
	} else
		rc = cert_dberr(auth, error_r, "auth.db read failed");
out:
	sqlite3_finalize(st);
	pthread_mutex_unlock(&auth->lock);
	return rc;
}
