/* SPDX-License-Identifier: ISC */
/* Unit tests: pools, buffers, strings, error text, log value escaping. */
#include "core.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

static int cleanup_order[8];
static int ncleanups;

static void
record_cleanup(void *arg)
{
	cleanup_order[ncleanups++] = *(int *)arg;
}

static void
test_pool_cleanup_order(void)
{
	static int one = 1, two = 2, three = 3, child = 4;
	struct osp_pool *p = osp_pool_new(NULL), *c = osp_pool_new(p);
	void *h;

	ncleanups = 0;
	osp_pool_cleanup_add(p, record_cleanup, &one);
	h = osp_pool_cleanup_add(p, record_cleanup, &two);
	osp_pool_cleanup_add(p, record_cleanup, &three);
	osp_pool_cleanup_add(c, record_cleanup, &child);
	osp_pool_cleanup_cancel(p, h);
	osp_pool_free(p);
	/* Own cleanups newest first, then children. */
	CU_ASSERT_EQUAL(ncleanups, 3);
	CU_ASSERT_EQUAL(cleanup_order[0], 3);
	CU_ASSERT_EQUAL(cleanup_order[1], 1);
	CU_ASSERT_EQUAL(cleanup_order[2], 4);
}

static void
test_pool_alloc(void)
{
	struct osp_pool *p = osp_pool_new(NULL), *c;
	char *big, *s;
	size_t i;

	for (i = 0; i < 10000; i++) {
		long *x = osp_palloc(p, sizeof(long) * (i % 7 + 1));

		CU_ASSERT_EQUAL((uintptr_t)x % _Alignof(max_align_t), 0);
		*x = (long)i;
	}
	big = osp_pcalloc(p, 1, 100000);
	CU_ASSERT_EQUAL(big[99999], 0);
	s = osp_psprintf(p, "%s-%d", "abc", 42);
	CU_ASSERT_STRING_EQUAL(s, "abc-42");
	CU_ASSERT_STRING_EQUAL(osp_pstrndup(p, "abcdef", 3), "abc");
	CU_ASSERT_STRING_EQUAL(osp_pstrndup(p, "ab", 30), "ab");
	/* A child freed alone unlinks from its parent. */
	c = osp_pool_new(p);
	osp_palloc(c, 10);
	osp_pool_free(c);
	c = osp_pool_new(p);
	osp_pool_free(p);
	osp_pool_free(NULL);
}

static void
test_buf(void)
{
	struct osp_buf b = { 0 };
	int i;

	osp_buf_puts(&b, "hello");
	osp_buf_putc(&b, ' ');
	osp_buf_printf(&b, "%d", 12345);
	CU_ASSERT_STRING_EQUAL(b.data, "hello 12345");
	CU_ASSERT_EQUAL(b.len, 11);
	osp_buf_consume(&b, 6);
	CU_ASSERT_STRING_EQUAL(b.data, "12345");
	for (i = 0; i < 1000; i++)
		osp_buf_append(&b, "0123456789", 10);
	CU_ASSERT_EQUAL(b.len, 10005);
	CU_ASSERT(b.size > b.len);
	CU_ASSERT_EQUAL(b.data[b.len], '\0');
	osp_buf_consume(&b, 100000);
	CU_ASSERT_EQUAL(b.len, 0);
	osp_buf_deinit(&b);
	CU_ASSERT_PTR_NULL(b.data);
}

static void
test_str(void)
{
	char small[4];
	uint64_t v;

	CU_ASSERT(osp_str_eqi("EHLO", "ehlo"));
	CU_ASSERT(!osp_str_eqi("EHLO", "ehl"));
	CU_ASSERT(osp_str_has_prefix_i("MAIL FROM:<a>", "mail from:"));
	CU_ASSERT(!osp_str_has_prefix_i("MAIL", "mail from:"));
	CU_ASSERT_EQUAL(osp_strlcpy(small, "abcdef", sizeof(small)), 6);
	CU_ASSERT_STRING_EQUAL(small, "abc");
	CU_ASSERT_EQUAL(osp_str_to_u64("18446744073709551615", UINT64_MAX, &v),
	    OSP_OK);
	CU_ASSERT_EQUAL(v, UINT64_MAX);
	CU_ASSERT_EQUAL(osp_str_to_u64("18446744073709551616", UINT64_MAX, &v),
	    -ERANGE);
	CU_ASSERT_EQUAL(osp_str_to_u64("100", 99, &v), -ERANGE);
	CU_ASSERT_EQUAL(osp_str_to_u64("", 99, &v), -EINVAL);
	CU_ASSERT_EQUAL(osp_str_to_u64("1x", 99, &v), -EINVAL);
	CU_ASSERT_EQUAL(osp_str_to_u64("-1", 99, &v), -EINVAL);
	CU_ASSERT_EQUAL(osp_str_hexval('0'), 0);
	CU_ASSERT_EQUAL(osp_str_hexval('9'), 9);
	CU_ASSERT_EQUAL(osp_str_hexval('a'), 10);
	CU_ASSERT_EQUAL(osp_str_hexval('F'), 15);
	CU_ASSERT_EQUAL(osp_str_hexval('g'), -1);
	CU_ASSERT_EQUAL(osp_str_hexval((char)0xc3), -1);
}

static void
test_hostname(void)
{
	static const struct {
		const char	*in;
		bool		 ok;
	} cases[] = {
		{ "mail.example.org", true }, { "localhost", true },
		{ "a-b.c0", true }, { "MX1.Example.ORG", true },
		{ "", false }, { ".", false }, { "example.org.", false },
		{ "-a.org", false }, { "a-.org", false }, { "a..org", false },
		{ "a_b.org", false }, { "a b", false }, { "\xc3\xa9.org", false },
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
		  "org", true },	/* 63-character label */
		{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
		  "org", false },	/* 64 */
	};
	char long_name[300];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CU_ASSERT_EQUAL(osp_str_is_hostname(cases[i].in), cases[i].ok);
	/* 253 characters pass, 254 do not. */
	for (i = 0; i < 253; i++)
		long_name[i] = i % 2 == 0 ? 'a' : '.';
	long_name[253] = '\0';
	CU_ASSERT(osp_str_is_hostname(long_name));
	long_name[253] = 'b';
	long_name[254] = '\0';
	long_name[252] = 'a';
	CU_ASSERT(!osp_str_is_hostname(long_name));
}

static void
test_strerror(void)
{
	CU_ASSERT_STRING_EQUAL(osp_strerror(OSP_OK), "success");
	CU_ASSERT_STRING_EQUAL(osp_strerror(OSP_EBOGUS),
	    "DNSSEC validation failed");
	CU_ASSERT_STRING_EQUAL(osp_strerror(-ENOENT), strerror(ENOENT));
	CU_ASSERT_STRING_EQUAL(osp_strerror(-99999), "unknown error");
}

static void
test_log_safe(void)
{
	static const struct {
		const char	*in;
		size_t		 len;
		size_t		 size;
		const char	*out;
	} cases[] = {
		{ "plain", 5, 64, "plain" },
		{ "two words", 9, 64, "\"two words\"" },
		{ "a\r\nb", 4, 64, "a\\x0d\\x0ab" },
		{ "q\"b\\", 4, 64, "q\\\"b\\\\" },
		{ "nul\0x", 5, 64, "nul\\x00x" },
		{ "\xc3\xa9", 2, 64, "\\xc3\\xa9" },
		{ "k=v", 3, 64, "\"k=v\"" },
		{ "abcdefghijklmnop", 16, 12, "abcdef..." },
		{ "", 0, 64, "" },
	};
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		osp_log_safe(buf, cases[i].size, cases[i].in, cases[i].len);
		CU_ASSERT_STRING_EQUAL(buf, cases[i].out);
		CU_ASSERT(strlen(buf) < cases[i].size);
	}
}

static void
test_log_file(void)
{
	const char *cats[] = { "dns" };
	struct osp_core_conf cc;
	const char *error;
	char path[4200], text[4096];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/osprey.log", osp_test_tmpdir());
	memset(&cc, 0, sizeof(cc));
	cc.log.level = OSP_LOG_INFO;
	cc.log.target = OSP_LOGT_FILE;
	cc.log.file = path;
	cc.log.debug.n = 1;
	cc.log.debug.items = cats;
	CU_ASSERT_FATAL(osp_log_configure(&cc, &error) == OSP_OK);
	osp_log_info("smtp", OSP_ID_FMT " connected address=%s",
	    OSP_ID_ARG(0x3f2a9c01d2e4b7a0ULL), "192.0.2.7");
	osp_log_debug("smtp", "hidden: smtp debug is off");
	osp_log_debug("dns", "shown: dns debug is on");
	osp_log_warn("core", "careful");
	CU_ASSERT(osp_log_debug_enabled("dns"));
	CU_ASSERT(!osp_log_debug_enabled("smtp"));
	f = fopen(path, "r");
	CU_ASSERT_FATAL(f != NULL);
	n = fread(text, 1, sizeof(text) - 1, f);
	text[n] = '\0';
	fclose(f);
	/* `<time> <level> <category> <message>`, one line each. */
	CU_ASSERT(strstr(text, "Z info smtp 3f2a9c01d2e4b7a0 connected "
	    "address=192.0.2.7\n") != NULL);
	CU_ASSERT(strstr(text, "Z debug dns shown: dns debug is on\n") != NULL);
	CU_ASSERT(strstr(text, "Z warn core careful\n") != NULL);
	CU_ASSERT(strstr(text, "hidden") == NULL);
	/* A file that cannot be opened is an error naming it. */
	cc.log.file = "/nonexistent/dir/osprey.log";
	CU_ASSERT(osp_log_configure(&cc, &error) != OSP_OK);
	CU_ASSERT(strstr(error, "/nonexistent/dir/osprey.log") != NULL);
	cc.log.target = OSP_LOGT_STDERR;
	cc.log.debug.n = 0;
	CU_ASSERT(osp_log_configure(&cc, &error) == OSP_OK);
}

static void
test_id(void)
{
	uint64_t a = osp_id_new(), b = osp_id_new();
	char s[32];

	CU_ASSERT(a != 0 && b != 0 && a != b);
	snprintf(s, sizeof(s), OSP_ID_FMT, OSP_ID_ARG(1));
	CU_ASSERT_STRING_EQUAL(s, "0000000000000001");
}

/* The one UTF-8 sequence decoder (RFC 3629 §4 boundaries). */
static void
test_utf8_decode(void)
{
	static const struct {
		const char	*in;
		size_t		 len;
		size_t		 want;
		uint32_t	 cp;
	} t[] = {
		{ "a", 1, 1, 'a' },
		{ "\xc2\x80", 2, 2, 0x80 },
		{ "\xc1\xbf", 2, 0, 0 },		/* overlong */
		{ "\xe0\x9f\xbf", 3, 0, 0 },		/* overlong */
		{ "\xe0\xa0\x80", 3, 3, 0x800 },
		{ "\xed\x9f\xbf", 3, 3, 0xd7ff },
		{ "\xed\xa0\x80", 3, 0, 0 },		/* surrogate */
		{ "\xef\xbf\xbf", 3, 3, 0xffff },
		{ "\xf0\x8f\xbf\xbf", 4, 0, 0 },	/* overlong */
		{ "\xf0\x90\x80\x80", 4, 4, 0x10000 },
		{ "\xf4\x8f\xbf\xbf", 4, 4, 0x10ffff },
		{ "\xf4\x90\x80\x80", 4, 0, 0 },	/* > U+10FFFF */
		{ "\xf5\x80\x80\x80", 4, 0, 0 },
		{ "\x80", 1, 0, 0 },
		{ "\xe2\x82\xac", 2, 0, 0 },		/* truncated by len */
		{ "\xe2\x82", SIZE_MAX, 0, 0 },	/* stopped by NUL */
	};
	uint32_t cp;
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		cp = 0;
		CU_ASSERT_EQUAL(osp_utf8_decode(t[i].in, t[i].len, &cp),
		    t[i].want);
		if (t[i].want != 0)
			CU_ASSERT_EQUAL(cp, t[i].cp);
	}
	CU_ASSERT_EQUAL(osp_utf8_decode("", 0, NULL), 0);
}

/* Received-header ids: round trip, key file, tampering, other keys. */
static void
test_cid(void)
{
	char dir[4096], dir2[4096], path[4200], cid[OSP_CID_LEN + 1], up[32];
	const char *error;
	struct stat st;
	uint64_t id;
	int64_t when;
	size_t i;

	snprintf(dir, sizeof(dir), "%s/cid1", osp_test_tmpdir());
	snprintf(dir2, sizeof(dir2), "%s/cid2", osp_test_tmpdir());
	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0 && mkdir(dir2, 0700) == 0);
	CU_ASSERT_EQUAL(osp_cid_init(dir, false, &error), -ENOENT);
	CU_ASSERT_EQUAL_FATAL(osp_cid_init(dir, true, &error), OSP_OK);
	snprintf(path, sizeof(path), "%s/cid.key", dir);
	CU_ASSERT_FATAL(stat(path, &st) == 0);
	CU_ASSERT_EQUAL(st.st_size, 16);
	CU_ASSERT_EQUAL(st.st_mode & 0777, 0600);

	osp_cid_encrypt(0x3f2a9c01d2e4b7a0ULL, 1795000000, cid);
	CU_ASSERT_EQUAL(strlen(cid), OSP_CID_LEN);
	CU_ASSERT_EQUAL(osp_cid_decrypt(cid, &id, &when), OSP_OK);
	CU_ASSERT_EQUAL(id, 0x3f2a9c01d2e4b7a0ULL);
	CU_ASSERT_EQUAL(when, 1795000000);
	/* The same id at another time looks unrelated. */
	osp_cid_encrypt(0x3f2a9c01d2e4b7a0ULL, 1795000001, up);
	CU_ASSERT(strncmp(cid, up, 8) != 0);
	/* Upper case (a header rewritten on the way) still decodes. */
	for (i = 0; cid[i] != '\0'; i++)
		up[i] = (char)(cid[i] >= 'a' && cid[i] <= 'z' ? cid[i] - 32 :
		    cid[i]);
	up[i] = '\0';
	CU_ASSERT_EQUAL(osp_cid_decrypt(up, &id, &when), OSP_OK);
	/* Tampered, truncated, foreign characters. */
	up[3] = up[3] == 'A' ? 'B' : 'A';
	CU_ASSERT_EQUAL(osp_cid_decrypt(up, &id, &when), -EINVAL);
	CU_ASSERT_EQUAL(osp_cid_decrypt("abc", &id, &when), -EINVAL);
	CU_ASSERT_EQUAL(osp_cid_decrypt("0000000000000000000000000!",
	    &id, &when), -EINVAL);
	/* Another installation's key does not decode it. */
	CU_ASSERT_EQUAL_FATAL(osp_cid_init(dir2, true, &error), OSP_OK);
	CU_ASSERT_EQUAL(osp_cid_decrypt(cid, &id, &when), -EINVAL);
	/* The first key is kept on a second init. */
	CU_ASSERT_EQUAL_FATAL(osp_cid_init(dir, true, &error), OSP_OK);
	CU_ASSERT_EQUAL(osp_cid_decrypt(cid, &id, &when), OSP_OK);
}

int
main(int argc, char **argv)
{
	static const struct osp_test tests[] = {
		OSP_TEST(test_pool_cleanup_order),
		OSP_TEST(test_pool_alloc),
		OSP_TEST(test_buf),
		OSP_TEST(test_str),
		OSP_TEST(test_hostname),
		OSP_TEST(test_strerror),
		OSP_TEST(test_log_safe),
		OSP_TEST(test_log_file),
		OSP_TEST(test_id),
		OSP_TEST(test_cid),
		OSP_TEST(test_utf8_decode),
		OSP_TEST_END,
	};

	return osp_test_main(argc, argv, "base", tests);
}
