/* SPDX-License-Identifier: ISC */
/* Unit tests: IMAP mailbox names, the modified UTF-7 codec (RFC 3501
 * §5.1.3) both ways with every rejection reason, random round trips, and
 * the UTF-8 name rules. */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "testutil.h"

static int failures;

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);	\
		fprintf(stderr, __VA_ARGS__);				\
		fprintf(stderr, "\n");					\
		failures++;						\
		CU_FAIL(#cond);						\
	}								\
} while (0)

/* Canonical pairs: both directions must give exactly these. */
static const struct {
	const char	*mutf7;
	const char	*utf8;
} pairs[] = {
	{ "", "" },
	{ "INBOX", "INBOX" },
	{ "&-", "&" },
	{ "a&-b&-&-", "a&b&&" },
	/* RFC 3501 §5.1.3's example */
	{ "~peter/mail/&U,BTFw-/&ZeVnLIqe-",
	  "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97/"
	  "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e" },
	{ "&U,A-", "\xe5\x8f\xb0" },			/* ',' for '/' */
	{ "caf&AOk-", "caf\xc3\xa9" },
	{ "&AOEA4Q-", "\xc3\xa1\xc3\xa1" },	/* one shift per run */
	{ "&AOE-a&AOE-", "\xc3\xa1" "a" "\xc3\xa1" },
	{ "&AOE-&-&AOE-", "\xc3\xa1&\xc3\xa1" },
	{ "&2D3eAA-", "\xf0\x9f\x98\x80" },		/* U+1F600, a pair */
	{ "&2D3eANg93gA-", "\xf0\x9f\x98\x80\xf0\x9f\x98\x80" },
	{ "&,,4-", "\xef\xbf\xbe" },			/* U+FFFE */
	{ "a&AAk-b", "a\tb" },	/* controls: shifted */
	{ "&AH8-", "\x7f" },
	{ "&AIU-", "\xc2\x85" },
};

static void
test_mutf7_pairs(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		const char *out = NULL, *err = NULL;
		int r;

		r = imap_mailbox_from_mutf7(pool, pairs[i].mutf7, &out, &err);
		CHECK(r == OSP_OK && strcmp(out, pairs[i].utf8) == 0,
		    "decode '%s': %d %s", pairs[i].mutf7, r,
		    r == OSP_OK ? out : err);
		out = NULL;
		r = imap_mailbox_to_mutf7(pool, pairs[i].utf8, &out, &err);
		CHECK(r == OSP_OK && strcmp(out, pairs[i].mutf7) == 0,
		    "encode #%zu: %d %s", i, r, r == OSP_OK ? out : err);
	}
	osp_pool_free(pool);
}

static const struct {
	const char	*in;
	const char	*reason;
} bad_mutf7[] = {
	{ "caf\xc3\xa9", "8-bit byte in modified UTF-7 name" },
	{ "\x80", "8-bit byte in modified UTF-7 name" },
	{ "a\tb", "control character in modified UTF-7 name" },
	{ "a\x7f", "control character in modified UTF-7 name" },
	{ "&", "unterminated modified base64 shift" },
	{ "a&", "unterminated modified base64 shift" },
	{ "&AOE", "unterminated modified base64 shift" },
	{ "&AOE-&", "unterminated modified base64 shift" },
	{ "&AOE.-", "invalid character in modified base64" },
	{ "&U/A-", "invalid character in modified base64" },	/* '/' */
	{ "&AOE=-", "invalid character in modified base64" },	/* pad */
	{ "&&-", "invalid character in modified base64" },
	{ "& -", "invalid character in modified base64" },
	{ "&AOE-&AOE-", "adjacent modified base64 shifts" },
	{ "&AEE-", "modified base64 encodes printable US-ASCII" },
	{ "&ACY-", "modified base64 encodes printable US-ASCII" },
	{ "&AH4-", "modified base64 encodes printable US-ASCII" },
	{ "&ACA-", "modified base64 encodes printable US-ASCII" },
	{ "&AOEAQQ-", "modified base64 encodes printable US-ASCII" },
	{ "&AAA-", "modified base64 encodes NUL" },
	{ "&AOF-", "non-zero leftover bits in modified base64" },
	{ "&U,B-", "non-zero leftover bits in modified base64" },
	{ "&A-", "incomplete UTF-16 unit in modified base64" },
	{ "&AA-", "incomplete UTF-16 unit in modified base64" },
	{ "&AOEA-", "incomplete UTF-16 unit in modified base64" },
	{ "&AOEA4QA-", "incomplete UTF-16 unit in modified base64" },
	{ "&2D0-", "unpaired UTF-16 surrogate" },	/* high alone */
	{ "&3gA-", "unpaired UTF-16 surrogate" },	/* low alone */
	{ "&2D0A4Q-", "unpaired UTF-16 surrogate" },	/* high, then BMP */
	{ "&2D0-&3gA-", "unpaired UTF-16 surrogate" },	/* split pair */
};

static void
test_mutf7_reject(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(bad_mutf7) / sizeof(bad_mutf7[0]); i++) {
		const char *out = NULL, *err = NULL;
		int r;

		r = imap_mailbox_from_mutf7(pool, bad_mutf7[i].in, &out, &err);
		CHECK(r == -EINVAL && out == NULL && err != NULL &&
		    strcmp(err, bad_mutf7[i].reason) == 0,
		    "#%zu: %d %s (want %s)", i, r, err != NULL ? err : "-",
		    bad_mutf7[i].reason);
	}
	osp_pool_free(pool);
}

static const struct {
	const char	*in;
	const char	*reason;
} bad_utf8[] = {
	{ "\x80", "invalid UTF-8 lead byte" },
	{ "a\xff", "invalid UTF-8 lead byte" },
	{ "\xf8\x88\x80\x80\x80", "invalid UTF-8 lead byte" },
	{ "\xc3", "truncated UTF-8 sequence" },
	{ "\xc3(", "truncated UTF-8 sequence" },
	{ "\xe6\x97", "truncated UTF-8 sequence" },
	{ "\xf0\x9f\x98", "truncated UTF-8 sequence" },
	{ "\xc0\xaf", "overlong UTF-8 sequence" },
	{ "\xc1\xbf", "overlong UTF-8 sequence" },
	{ "\xe0\x80\xaf", "overlong UTF-8 sequence" },
	{ "\xf0\x8f\xbf\xbf", "overlong UTF-8 sequence" },
	{ "\xed\xa0\x80", "UTF-16 surrogate in UTF-8" },
	{ "\xed\xbf\xbf", "UTF-16 surrogate in UTF-8" },
	{ "\xf4\x90\x80\x80", "code point beyond U+10FFFF" },
	{ "\xf7\xbf\xbf\xbf", "code point beyond U+10FFFF" },
};

static void
test_to_mutf7_reject(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++) {
		const char *out = NULL, *err = NULL;
		int r;

		r = imap_mailbox_to_mutf7(pool, bad_utf8[i].in, &out, &err);
		CHECK(r == -EINVAL && out == NULL && err != NULL &&
		    strcmp(err, bad_utf8[i].reason) == 0,
		    "encode #%zu: %d %s (want %s)", i, r,
		    err != NULL ? err : "-", bad_utf8[i].reason);
		/* the name validator reads UTF-8 the same way */
		err = NULL;
		r = imap_mailbox_valid_utf8(bad_utf8[i].in, &err);
		CHECK(r == -EINVAL && err != NULL &&
		    strcmp(err, bad_utf8[i].reason) == 0,
		    "valid #%zu: %d %s (want %s)", i, r,
		    err != NULL ? err : "-", bad_utf8[i].reason);
	}
	osp_pool_free(pool);
}

/* xorshift32: reproducible without touching the libc generator */
static uint32_t
rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static size_t
put_cp(char *b, uint32_t cp)
{
	if (cp < 0x80) {
		b[0] = cp;
		return 1;
	}
	if (cp < 0x800) {
		b[0] = 0xc0 | (cp >> 6);
		b[1] = 0x80 | (cp & 0x3f);
		return 2;
	}
	if (cp < 0x10000) {
		b[0] = 0xe0 | (cp >> 12);
		b[1] = 0x80 | ((cp >> 6) & 0x3f);
		b[2] = 0x80 | (cp & 0x3f);
		return 3;
	}
	b[0] = 0xf0 | (cp >> 18);
	b[1] = 0x80 | ((cp >> 12) & 0x3f);
	b[2] = 0x80 | ((cp >> 6) & 0x3f);
	b[3] = 0x80 | (cp & 0x3f);
	return 4;
}

/* Random valid UTF-8 strings (ASCII with '&' and '-', controls, BMP,
 * astral) survive encode then decode, the encoding is printable ASCII,
 * and it decodes strictly (the encoder only emits canonical forms). */
static void
test_mutf7_roundtrip(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	uint32_t seed = 0x5eed1234;
	int iter;

	for (iter = 0; iter < 20000; iter++) {
		char in[4 * 40 + 1];
		const char *enc = NULL, *dec = NULL, *err = NULL, *q;
		size_t len = 0, n = rnd(&seed) % 40, k;
		int r;

		for (k = 0; k < n; k++) {
			uint32_t cp, kind = rnd(&seed) % 6;

			switch (kind) {
			case 0:
				cp = "&-/a"[rnd(&seed) % 4];
				break;
			case 1:
				cp = 0x20 + rnd(&seed) % 0x5f;
				break;
			case 2:
				cp = 1 + rnd(&seed) % 0x9f;	/* C0, C1 */
				break;
			case 3:
				cp = 0x80 + rnd(&seed) % (0x10000 - 0x80);
				break;
			default:
				cp = 0x10000 + rnd(&seed) % 0x100000;
				break;
			}
			if (cp >= 0xd800 && cp <= 0xdfff)
				cp = 0xfffd;
			len += put_cp(in + len, cp);
		}
		in[len] = '\0';
		r = imap_mailbox_to_mutf7(pool, in, &enc, &err);
		CHECK(r == OSP_OK, "encode iter %d: %s", iter, err);
		if (r != OSP_OK)
			continue;
		for (q = enc; *q != '\0'; q++)
			if (*q < 0x20 || *q > 0x7e)
				break;
		CHECK(*q == '\0', "iter %d: non-printable in '%s'", iter,
		    enc);
		r = imap_mailbox_from_mutf7(pool, enc, &dec, &err);
		CHECK(r == OSP_OK && strcmp(dec, in) == 0,
		    "iter %d: '%s' -> %d %s", iter, enc, r,
		    r == OSP_OK ? "different" : err);
		if (failures > 20)
			break;
	}
	osp_pool_free(pool);
}

static void
test_valid_utf8(void)
{
	static const struct {
		const char	*name;
		const char	*reason;	/* NULL: valid */
	} t[] = {
		{ "INBOX", NULL },
		{ "a", NULL },
		{ "a/b/c", NULL },
		{ "~peter/mail/\xe5\x8f\xb0\xe5\x8c\x97", NULL },
		{ "Sent Items", NULL },
		{ "a&b", NULL },
		{ "\xf0\x9f\x98\x80", NULL },
		{ "\xc2\xa0", NULL },			/* U+00A0 */
		{ "", "empty mailbox name" },
		{ "/", "mailbox name starts with '/'" },
		{ "/a", "mailbox name starts with '/'" },
		{ "a/", "mailbox name ends with '/'" },
		{ "a/b/", "mailbox name ends with '/'" },
		{ "a//b", "empty level in mailbox name" },
		{ "a/b//c", "empty level in mailbox name" },
		{ "a\tb", "control character in mailbox name" },
		{ "a\r\nb", "control character in mailbox name" },
		{ "\x1b", "control character in mailbox name" },
		{ "a\x7f", "control character in mailbox name" },
		{ "a\xc2\x80", "control character in mailbox name" },
		{ "a\xc2\x85", "control character in mailbox name" },
		{ "a\xc2\x9f", "control character in mailbox name" },
		{ "a\xc3", "truncated UTF-8 sequence" },
	};
	char longname[IMAP_MAILBOX_NAME_MAX + 2];
	const char *err;
	size_t i;
	int r;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		err = NULL;
		r = imap_mailbox_valid_utf8(t[i].name, &err);
		if (t[i].reason == NULL)
			CHECK(r == OSP_OK, "#%zu: %s", i, err);
		else
			CHECK(r == -EINVAL && err != NULL &&
			    strcmp(err, t[i].reason) == 0,
			    "#%zu: %d %s (want %s)", i, r,
			    err != NULL ? err : "-", t[i].reason);
	}
	memset(longname, 'a', IMAP_MAILBOX_NAME_MAX);
	longname[IMAP_MAILBOX_NAME_MAX] = '\0';
	CHECK(imap_mailbox_valid_utf8(longname, &err) == OSP_OK,
	    "255 bytes: %s", err);
	longname[IMAP_MAILBOX_NAME_MAX] = 'a';
	longname[IMAP_MAILBOX_NAME_MAX + 1] = '\0';
	err = NULL;
	CHECK(imap_mailbox_valid_utf8(longname, &err) == -EINVAL &&
	    err != NULL && strcmp(err, "mailbox name too long") == 0,
	    "256 bytes: %s", err != NULL ? err : "-");
}

int
main(int argc, char **argv)
{
	static const struct osp_test tests[] = {
		OSP_TEST(test_mutf7_pairs),
		OSP_TEST(test_mutf7_reject),
		OSP_TEST(test_to_mutf7_reject),
		OSP_TEST(test_mutf7_roundtrip),
		OSP_TEST(test_valid_utf8),
		OSP_TEST_END
	};

	return osp_test_main(argc, argv, "imap_mailbox", tests);
}
