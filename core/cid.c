/* SPDX-License-Identifier: ISC */
/* Encrypted session ids for Received headers (include/osprey/smtp.h) and
 * `osprey cid` (cli_tools.c), which maps one back to the log id. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

/*
 * One AES-128 block holds the 64-bit session id and the 64-bit time,
 * big-endian. Encrypting a single block with CBC and a zero IV is the
 * block cipher itself (ECB of one block): no IV to store, and the output
 * looks random because the id is random and the time differs. The key is
 * per installation, so ids in headers tell outsiders nothing.
 */
#define CID_KEYLEN	16
#define CID_KEYFILE	"cid.key"

static unsigned char	cid_key[CID_KEYLEN];
static bool		cid_have_key;

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

static int
cid_read_key(const char *path, unsigned char key[CID_KEYLEN])
{
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return -errno;
	n = read(fd, key, CID_KEYLEN);
	close(fd);
	if (n != CID_KEYLEN)
		return -EINVAL;
	return OSP_OK;
}

/* Creates the key file atomically: written to a temp name, fsynced, then
 * linked to its name (so two starting processes agree on one key). */
static int
cid_create_key(const char *dir, const char *path)
{
	unsigned char key[CID_KEYLEN];
	char tmp[4096];
	int fd, rc = OSP_OK;

	if (gnutls_rnd(GNUTLS_RND_KEY, key, sizeof(key)) != 0)
		return -EIO;
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s/.cid.key.%ld", dir,
	    (long)getpid()) >= sizeof(tmp))
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) ||
	    fsync(fd) != 0)
		rc = errno != 0 ? -errno : -EIO;
	close(fd);
	if (rc == OSP_OK && link(tmp, path) != 0 && errno != EEXIST)
		rc = -errno;
	unlink(tmp);
	osp_memzero(key, sizeof(key));
	return rc;
}

int
osp_cid_init(const char *data_dir, bool create, const char **error_r)
{
	char path[4096];
	int rc;

	if ((size_t)snprintf(path, sizeof(path), "%s/%s", data_dir,
	    CID_KEYFILE) >= sizeof(path)) {
		*error_r = "data directory path too long";
		return -ENAMETOOLONG;
	}
	rc = cid_read_key(path, cid_key);
	if (rc == -ENOENT && create) {
		if ((rc = cid_create_key(data_dir, path)) == OSP_OK)
			rc = cid_read_key(path, cid_key);
	}
	if (rc != OSP_OK) {
		*error_r = rc == -EINVAL ? "cid.key: not a 16-byte key" :
		    "cid.key: cannot read or create the key";
		return rc;
	}
	cid_have_key = true;
	return OSP_OK;
}

static int
cid_crypt(unsigned char block[16], bool encrypt)
{
	gnutls_cipher_hd_t h;
	gnutls_datum_t key = { cid_key, CID_KEYLEN };
	unsigned char ivb[16] = { 0 };
	gnutls_datum_t iv = { ivb, sizeof(ivb) };
	int rc;

	if (gnutls_cipher_init(&h, GNUTLS_CIPHER_AES_128_CBC, &key, &iv) != 0)
		return -EIO;
	rc = encrypt ? gnutls_cipher_encrypt(h, block, 16) :
	    gnutls_cipher_decrypt(h, block, 16);
	gnutls_cipher_deinit(h);
	return rc == 0 ? OSP_OK : -EIO;
}

void
osp_cid_encrypt(uint64_t id, int64_t when, char buf[OSP_CID_LEN + 1])
{
	unsigned char block[16];
	unsigned acc = 0, bits = 0;
	size_t i, o = 0;

	for (i = 0; i < 8; i++) {
		block[i] = (unsigned char)(id >> (56 - 8 * i));
		block[8 + i] = (unsigned char)((uint64_t)when >> (56 - 8 * i));
	}
	/* Without a key (a test harness that never called osp_cid_init)
	 * the plain block is encoded: still unique, never a crash. */
	if (cid_have_key && cid_crypt(block, true) != OSP_OK)
		osp_log_err("core", "cid: encryption failed");
	for (i = 0; i < 16; i++) {
		acc = (acc << 8) | block[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			buf[o++] = b32[(acc >> bits) & 31];
		}
	}
	buf[o++] = b32[(acc << (5 - bits)) & 31];
	buf[o] = '\0';
}

int
osp_cid_decrypt(const char *cid, uint64_t *id_r, int64_t *when_r)
{
	unsigned char block[16];
	unsigned acc = 0, bits = 0;
	uint64_t id = 0, when = 0;
	size_t i, o = 0;
	const char *p;

	if (strlen(cid) != OSP_CID_LEN)
		return -EINVAL;
	for (i = 0; i < OSP_CID_LEN; i++) {
		int c = cid[i] >= 'A' && cid[i] <= 'Z' ? cid[i] - 'A' + 'a' :
		    cid[i];

		if (c == '\0' || (p = strchr(b32, c)) == NULL)
			return -EINVAL;
		acc = (acc << 5) | (unsigned)(p - b32);
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			if (o < sizeof(block))
				block[o++] = (unsigned char)(acc >> bits);
		}
	}
	/* 26 characters carry 130 bits: the last 2 must be zero. */
	if (o != sizeof(block) || (acc & ((1u << bits) - 1)) != 0)
		return -EINVAL;
	if (!cid_have_key || cid_crypt(block, false) != OSP_OK)
		return -EINVAL;
	for (i = 0; i < 8; i++) {
		id = (id << 8) | block[i];
		when = (when << 8) | block[8 + i];
	}
	/* A value that is not ours decrypts to noise: a time outside
	 * 2000..2200 tells it apart (a 2^-26 false-accept chance). */
	if ((int64_t)when < 946684800 || (int64_t)when > 7258118400LL)
		return -EINVAL;
	*id_r = id;
	*when_r = (int64_t)when;
	return OSP_OK;
}
