/* SPDX-License-Identifier: ISC */
/* Unit tests: the SMTP command parser (tables of input -> path, parameters
 * or reply) and the DATA/BDAT reader (every split point, smuggling
 * variants, size limit, write errors, a reference model on random input). */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "smtp.h"
#include "testutil.h"

/* The tables below leave trailing fields out: zero is their default. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define EXT_ALL	(SMTP_EXT_SIZE | SMTP_EXT_8BITMIME | SMTP_EXT_SMTPUTF8 | \
	SMTP_EXT_DSN | SMTP_EXT_REQUIRETLS | SMTP_EXT_CHUNKING | \
	SMTP_EXT_BINARYMIME | SMTP_EXT_AUTH)

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

static bool
str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/*
 * Every reply: "CDD C.S.D text" where the enhanced code's class equals
 * the reply's first digit (RFC 3463 §2, RFC 2034 §4), 4xx or 5xx.
 */
static bool
reply_ok(const char *r)
{
	const char *p;
	int n;

	if (r == NULL || strlen(r) < 12)
		return false;
	if ((r[0] != '4' && r[0] != '5') || r[1] < '0' || r[1] > '9' ||
	    r[2] < '0' || r[2] > '9' || r[3] != ' ' || r[4] != r[0] ||
	    r[5] != '.')
		return false;
	p = r + 6;
	for (n = 0; *p >= '0' && *p <= '9'; p++, n++)
		;
	if (n < 1 || n > 3 || *p++ != '.')
		return false;
	for (n = 0; *p >= '0' && *p <= '9'; p++, n++)
		;
	if (n < 1 || n > 3 || *p != ' ' || p[1] == '\0')
		return false;
	return strpbrk(r, "\r\n") == NULL;
}

/* ------------------------------------------------------------------ */
/* verbs */

static void
test_verb(void)
{
	static const struct {
		const char	*line;
		enum smtp_verb	 verb;
		const char	*args;
	} t[] = {
		{ "EHLO mail.example.org", SMTP_CMD_EHLO, "mail.example.org" },
		{ "ehlo   x", SMTP_CMD_EHLO, "x" },
		{ "HeLo x", SMTP_CMD_HELO, "x" },
		{ "MAIL FROM:<a@b>", SMTP_CMD_MAIL, "<a@b>" },
		{ "mail from:<a@b> SIZE=1", SMTP_CMD_MAIL, "<a@b> SIZE=1" },
		{ "MAIL FROM: <a@b>", SMTP_CMD_MAIL, "<a@b>" },
		{ "MAIL FROM:", SMTP_CMD_MAIL, "" },
		{ "MAIL", SMTP_CMD_MAIL, "" },
		{ "MAIL TO:<a@b>", SMTP_CMD_MAIL, "" },
		{ "MAIL FROM :<a@b>", SMTP_CMD_MAIL, "" },
		{ "RCPT TO:<a@b>", SMTP_CMD_RCPT, "<a@b>" },
		{ "Rcpt To:  <a@b>", SMTP_CMD_RCPT, "<a@b>" },
		{ "RCPT FROM:<a@b>", SMTP_CMD_RCPT, "" },
		{ "DATA", SMTP_CMD_DATA, "" },
		{ "data ", SMTP_CMD_DATA, "" },
		{ "BDAT 100 LAST", SMTP_CMD_BDAT, "100 LAST" },
		{ "RSET", SMTP_CMD_RSET, "" },
		{ "NOOP hello", SMTP_CMD_NOOP, "hello" },
		{ "QUIT", SMTP_CMD_QUIT, "" },
		{ "VRFY postmaster", SMTP_CMD_VRFY, "postmaster" },
		{ "EXPN list", SMTP_CMD_EXPN, "list" },
		{ "HELP", SMTP_CMD_HELP, "" },
		{ "STARTTLS", SMTP_CMD_STARTTLS, "" },
		{ "starttls", SMTP_CMD_STARTTLS, "" },
		{ "AUTH PLAIN AHVAcA==", SMTP_CMD_AUTH, "PLAIN AHVAcA==" },
		{ "DATAX", SMTP_CMD_UNKNOWN, "DATAX" },
		{ "STARTTL", SMTP_CMD_UNKNOWN, "STARTTL" },
		{ "", SMTP_CMD_UNKNOWN, "" },
		{ " DATA", SMTP_CMD_UNKNOWN, " DATA" },
		{ "GET / HTTP/1.1", SMTP_CMD_UNKNOWN, "GET / HTTP/1.1" },
		{ "DATA\t", SMTP_CMD_UNKNOWN, "DATA\t" },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *args = NULL;
		enum smtp_verb v = smtp_parse_verb(t[i].line, &args);

		CHECK(v == t[i].verb && str_eq(args, t[i].args),
		    "verb \"%s\": %d \"%s\"", t[i].line, (int)v, args);
	}
}

/* ------------------------------------------------------------------ */
/* MAIL FROM */

struct mail_case {
	const char	*args;
	uint32_t	 ext;
	const char	*reply;		/* expected prefix; NULL: success */
	const char	*localpart, *domain, *address;
	bool		 null, utf8;
	/* parameters */
	bool		 has_size;
	uint64_t	 size;
	enum smtp_body	 body;
	bool		 smtputf8, requiretls;
	enum smtp_ret	 ret;
	const char	*envid, *auth;
};

static const struct mail_case mail_cases[] = {
	/* RFC 5321 §D.1 and plain forms */
	{ "<Smith@bar.com>", EXT_ALL, NULL, "Smith", "bar.com",
	    "Smith@bar.com" },
	{ "<JQP@Bar.COM>", EXT_ALL, NULL, "JQP", "Bar.COM", "JQP@bar.com" },
	{ "<>", EXT_ALL, NULL, "", "", "", true },
	{ "<> SIZE=0", EXT_ALL, NULL, "", "", "", true, false, true, 0 },
	{ "<@a.example,@b.example:user@c.example>", EXT_ALL, NULL, "user",
	    "c.example", "user@c.example" },
	{ "<@a.example:user@c.example>", EXT_ALL, NULL, "user",
	    "c.example", "user@c.example" },
	{ "<\"John Doe\"@example.com>", EXT_ALL, NULL, "John Doe",
	    "example.com", "\"John Doe\"@example.com" },
	{ "<\"a\\\"b\\\\c\"@example.com>", EXT_ALL, NULL, "a\"b\\c",
	    "example.com", "\"a\\\"b\\\\c\"@example.com" },
	{ "<\"plain\"@example.com>", EXT_ALL, NULL, "plain", "example.com",
	    "plain@example.com" },
	{ "<\"\"@example.com>", EXT_ALL, NULL, "", "example.com",
	    "\"\"@example.com" },
	{ "<\"a>b\"@example.com>", EXT_ALL, NULL, "a>b", "example.com",
	    "\"a>b\"@example.com" },
	{ "<user.@docomo.ne.jp>", EXT_ALL, NULL, "user.", "docomo.ne.jp",
	    "\"user.\"@docomo.ne.jp" },
	{ "<a..b@example.com>", EXT_ALL, NULL, "a..b", "example.com",
	    "\"a..b\"@example.com" },
	{ "<!#$%&'*+-/=?^_`{|}~@example.com>", EXT_ALL, NULL,
	    "!#$%&'*+-/=?^_`{|}~", "example.com",
	    "!#$%&'*+-/=?^_`{|}~@example.com" },
	{ "<a@[192.0.2.1]>", EXT_ALL, NULL, "a", "[192.0.2.1]",
	    "a@[192.0.2.1]" },
	{ "<a@[IPv6:2001:db8::1]>", EXT_ALL, NULL, "a", "[IPv6:2001:db8::1]",
	    "a@[IPv6:2001:db8::1]" },
	{ "<a@[ipv6:::1]>", EXT_ALL, NULL, "a", "[ipv6:::1]",
	    "a@[ipv6:::1]" },
	{ "<a@[x400:foo]>", EXT_ALL, "501 5.1.7" },
	{ "<a@[192.0.2.256]>", EXT_ALL, "501 5.1.7" },
	{ "<a@[IPv6:2001:db8::g]>", EXT_ALL, "501 5.1.7" },
	{ "<a@[192.0.2.1>", EXT_ALL, "501 5.1.7" },
	{ "<a@[]>", EXT_ALL, "501 5.1.7" },
	/* syntax */
	{ "a@example.com", EXT_ALL, "501 5.5.4" },
	{ "", EXT_ALL, "501 5.5.4" },
	{ "<a@example.com", EXT_ALL, "501 5.1.7" },
	{ "<a@example.com>x", EXT_ALL, "501 5.5.4" },
	{ "<a@example.com> ", EXT_ALL, NULL, "a", "example.com",
	    "a@example.com" },
	{ "<a>", EXT_ALL, "501 5.1.7" },
	{ "<Postmaster>", EXT_ALL, "501 5.1.7" },
	{ "<@example.com>", EXT_ALL, "501 5.1.7" },
	{ "<a@>", EXT_ALL, "501 5.1.7" },
	{ "<a@b@c>", EXT_ALL, "501 5.1.7" },
	{ "<a b@example.com>", EXT_ALL, "501 5.1.7" },
	{ "<a@-example.com>", EXT_ALL, "501 5.1.7" },
	{ "<a@example-.com>", EXT_ALL, "501 5.1.7" },
	{ "<a@example..com>", EXT_ALL, "501 5.1.7" },
	{ "<a@example.com.>", EXT_ALL, "501 5.1.7" },
	{ "<a@exa_mple.com>", EXT_ALL, "501 5.1.7" },
	{ "<\"a\rb\"@example.com>", EXT_ALL, "501 5.1.7" },
	{ "<\"a\\\tb\"@example.com>", EXT_ALL, "501 5.1.7" },
	{ "<\"unterminated@example.com>", EXT_ALL, "501 5.1.7" },
	{ "<@a.example,b.example:u@c.example>", EXT_ALL, "501 5.1.7" },
	{ "<@:u@c.example>", EXT_ALL, "501 5.1.7" },
	/* SMTPUTF8 (RFC 6531) */
	{ "<j\xc3\xb6rg@b\xc3\xbc" "cher.example> SMTPUTF8", EXT_ALL, NULL,
	    "j\xc3\xb6rg", "b\xc3\xbc" "cher.example",
	    "j\xc3\xb6rg@xn--bcher-kva.example", false, true, false, 0,
	    SMTP_BODY_7BIT, true },
	{ "<j\xc3\xb6rg@example.com>", EXT_ALL, "553 5.6.7" },
	{ "<user@b\xc3\xbc" "cher.example>", EXT_ALL, "553 5.6.7" },
	{ "<j\xc3\xb6rg@example.com> SMTPUTF8", EXT_ALL & ~SMTP_EXT_SMTPUTF8,
	    "555 5.5.4" },
	{ "<\xc3\x28@example.com> SMTPUTF8", EXT_ALL, "501 5.1.7" },
	{ "<\xc3\x41@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<a@b\xc3\x41.example> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\"\xc3\x41\"@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\xc0\xaf@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\xe0\x80\xaf@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\xed\xa0\x80@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\xf4\x90\x80\x80@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\xff@example.com> SMTPUTF8", EXT_ALL, "501 5.6.7" },
	{ "<\xe9t\xe9@example.com>", EXT_ALL, "553 5.6.7" },
	{ "<a@\xe2\x98\x83\xe2\x98\x83.\xe2\x80\x8b> SMTPUTF8", EXT_ALL,
	    "501 5.1.7" },
	{ "<\"j\xc3\xb6 rg\"@example.com> SMTPUTF8", EXT_ALL, NULL,
	    "j\xc3\xb6 rg", "example.com", "\"j\xc3\xb6 rg\"@example.com",
	    false, true, false, 0, SMTP_BODY_7BIT, true },
	{ "<a@example.com> SMTPUTF8", EXT_ALL, NULL, "a", "example.com",
	    "a@example.com", false, false, false, 0, SMTP_BODY_7BIT, true },
	{ "<a@example.com> SMTPUTF8=yes", EXT_ALL, "501 5.5.4" },
	/* SIZE (RFC 1870) */
	{ "<a@b.c> SIZE=12345", EXT_ALL, NULL, "a", "b.c", "a@b.c", false,
	    false, true, 12345 },
	{ "<a@b.c> size=0", EXT_ALL, NULL, "a", "b.c", "a@b.c", false,
	    false, true, 0 },
	{ "<a@b.c> SIZE=18446744073709551615", EXT_ALL, NULL, "a", "b.c",
	    "a@b.c", false, false, true, UINT64_MAX },
	{ "<a@b.c> SIZE=99999999999999999999", EXT_ALL, NULL, "a", "b.c",
	    "a@b.c", false, false, true, UINT64_MAX },
	{ "<a@b.c> SIZE=999999999999999999999", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE=", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE=-1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE=1k", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE=1 SIZE=2", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE=1", 0, "555 5.5.4" },
	/* BODY (RFC 6152, RFC 3030) */
	{ "<a@b.c> BODY=8BITMIME", EXT_ALL, NULL, "a", "b.c", "a@b.c",
	    false, false, false, 0, SMTP_BODY_8BITMIME },
	{ "<a@b.c> body=7bit", EXT_ALL, NULL, "a", "b.c", "a@b.c",
	    false, false, false, 0, SMTP_BODY_7BIT },
	{ "<a@b.c> BODY=BINARYMIME", EXT_ALL, NULL, "a", "b.c", "a@b.c",
	    false, false, false, 0, SMTP_BODY_BINARYMIME },
	{ "<a@b.c> BODY=BINARYMIME", EXT_ALL & ~SMTP_EXT_BINARYMIME,
	    "555 5.5.4" },
	{ "<a@b.c> BODY=8BITMIME", 0, "555 5.5.4" },
	{ "<a@b.c> BODY=9BIT", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> BODY", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> BODY=7BIT BODY=7BIT", EXT_ALL, "501 5.5.4" },
	/* REQUIRETLS (RFC 8689) */
	{ "<a@b.c> REQUIRETLS", EXT_ALL, NULL, "a", "b.c", "a@b.c", false,
	    false, false, 0, SMTP_BODY_7BIT, false, true },
	{ "<a@b.c> REQUIRETLS", EXT_ALL & ~SMTP_EXT_REQUIRETLS, "555 5.5.4" },
	{ "<a@b.c> REQUIRETLS=1", EXT_ALL, "501 5.5.4" },
	/* DSN (RFC 3461) */
	{ "<a@b.c> RET=HDRS ENVID=QQ314159", EXT_ALL, NULL, "a", "b.c",
	    "a@b.c", false, false, false, 0, SMTP_BODY_7BIT, false, false,
	    SMTP_RET_HDRS, "QQ314159" },
	{ "<a@b.c> ret=full envid=a+2Bb+3Dc", EXT_ALL, NULL, "a", "b.c",
	    "a@b.c", false, false, false, 0, SMTP_BODY_7BIT, false, false,
	    SMTP_RET_FULL, "a+b=c" },
	{ "<a@b.c> RET=ALL", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> RET", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> RET=FULL", EXT_ALL & ~SMTP_EXT_DSN, "555 5.5.4" },
	{ "<a@b.c> ENVID=a+2", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> ENVID=a+zz", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> ENVID=a+00", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> ENVID=a+0A", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> ENVID=x\xc3\xa9", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> ENVID=0123456789012345678901234567890123456789"
	    "012345678901234567890123456789012345678901234567890123456789",
	    EXT_ALL, NULL, "a", "b.c", "a@b.c", false, false, false, 0,
	    SMTP_BODY_7BIT, false, false, SMTP_RET_NONE,
	    "0123456789012345678901234567890123456789"
	    "012345678901234567890123456789012345678901234567890123456789" },
	{ "<a@b.c> ENVID=0123456789012345678901234567890123456789"
	    "0123456789012345678901234567890123456789012345678901234567890",
	    EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> ENVID=x ENVID=y", EXT_ALL, "501 5.5.4" },
	/* AUTH (RFC 4954 §5) */
	{ "<a@b.c> AUTH=<>", EXT_ALL, NULL, "a", "b.c", "a@b.c", false,
	    false, false, 0, SMTP_BODY_7BIT, false, false, SMTP_RET_NONE,
	    NULL, "<>" },
	{ "<a@b.c> AUTH=e+3Dmc2@example.com", EXT_ALL, NULL, "a", "b.c",
	    "a@b.c", false, false, false, 0, SMTP_BODY_7BIT, false, false,
	    SMTP_RET_NONE, NULL, "e=mc2@example.com" },
	{ "<a@b.c> AUTH=<>", EXT_ALL & ~SMTP_EXT_AUTH, "555 5.5.4" },
	{ "<a@b.c> AUTH=", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> AUTH=a+0D+0Ab", EXT_ALL, "501 5.5.4" },
	/* parameters in general */
	{ "<a@b.c>  SIZE=1   BODY=8BITMIME  ", EXT_ALL, NULL, "a", "b.c",
	    "a@b.c", false, false, true, 1, SMTP_BODY_8BITMIME },
	{ "<a@b.c> FOO=bar", EXT_ALL, "555 5.5.4" },
	{ "<a@b.c> X-FOO", EXT_ALL, "555 5.5.4" },
	{ "<a@b.c> SIZE=1 size=1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> =1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> -X=1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> S_Z=1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE==1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c>SIZE=1", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> SIZE=1\t", EXT_ALL, "501 5.5.4" },
	{ "<a@b.c> A B C D E F G H I J K L M N O P Q", EXT_ALL, "501 5.5.4" },
};

static void
test_mail(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(mail_cases) / sizeof(mail_cases[0]); i++) {
		const struct mail_case *c = &mail_cases[i];
		struct smtp_path p;
		struct smtp_mail_params mp;
		const char *reply = NULL;
		int rc;

		rc = smtp_parse_mail(pool, c->args, c->ext, &p, &mp, &reply);
		if (c->reply != NULL) {
			CHECK(rc != OSP_OK && reply != NULL &&
			    strncmp(reply, c->reply, strlen(c->reply)) == 0 &&
			    reply_ok(reply), "MAIL \"%s\": rc %d reply \"%s\", "
			    "want \"%s\"", c->args, rc, reply, c->reply);
			continue;
		}
		CHECK(rc == OSP_OK, "MAIL \"%s\": rc %d reply \"%s\"", c->args,
		    rc, reply);
		if (rc != OSP_OK)
			continue;
		CHECK(str_eq(p.localpart, c->localpart) &&
		    str_eq(p.domain, c->domain) &&
		    str_eq(p.address, c->address) && p.null == c->null &&
		    p.utf8 == c->utf8, "MAIL \"%s\": path \"%s\" \"%s\" "
		    "\"%s\" null %d utf8 %d", c->args, p.localpart, p.domain,
		    p.address, p.null, p.utf8);
		CHECK(mp.has_size == c->has_size && mp.size == c->size &&
		    mp.body == c->body && mp.smtputf8 == c->smtputf8 &&
		    mp.requiretls == c->requiretls && mp.ret == c->ret &&
		    str_eq(mp.envid, c->envid) && str_eq(mp.auth, c->auth),
		    "MAIL \"%s\": params size %d/%llu body %d utf8 %d "
		    "rtls %d ret %d envid \"%s\" auth \"%s\"", c->args,
		    mp.has_size, (unsigned long long)mp.size, (int)mp.body,
		    mp.smtputf8, mp.requiretls, (int)mp.ret, mp.envid,
		    mp.auth);
	}
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* RCPT TO */

struct rcpt_case {
	const char	*args;
	uint32_t	 ext;
	bool		 smtputf8;
	const char	*reply;
	const char	*localpart, *domain, *address;
	uint32_t	 notify;
	const char	*orcpt_type, *orcpt;
};

#define A50	"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct rcpt_case rcpt_cases[] = {
	{ "<Jones@XYZ.COM>", EXT_ALL, false, NULL, "Jones", "XYZ.COM",
	    "Jones@xyz.com" },
	{ "<Postmaster>", EXT_ALL, false, NULL, "postmaster", "",
	    "postmaster" },
	{ "<postMASTER>", EXT_ALL, false, NULL, "postmaster", "",
	    "postmaster" },
	{ "<\"Postmaster\">", EXT_ALL, false, "501 5.1.3" },
	{ "<@a.b:Postmaster>", EXT_ALL, false, "501 5.1.3" },
	{ "<postmaster@example.com>", EXT_ALL, false, NULL, "postmaster",
	    "example.com", "postmaster@example.com" },
	{ "<>", EXT_ALL, false, "501 5.1.3" },
	{ "<user>", EXT_ALL, false, "501 5.1.3" },
	{ "user@example.com", EXT_ALL, false, "501 5.5.4" },
	{ "", EXT_ALL, false, "501 5.5.4" },
	{ "<@hosta.int,@jkl.org:userc@d.bar.org>", EXT_ALL, false, NULL,
	    "userc", "d.bar.org", "userc@d.bar.org" },
	{ "<a@[10.0.0.1]>", EXT_ALL, false, NULL, "a", "[10.0.0.1]",
	    "a@[10.0.0.1]" },
	/* SMTPUTF8 comes from the transaction */
	{ "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf"
	    "\xe5\x91\x8a>", EXT_ALL, true, NULL,
	    "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf"
	    "\xe5\x91\x8a", "\xe7\x94\xa8\xe6\x88\xb7@xn--fsqu00a.xn--4rr70v" },
	{ "<\xe7\x94\xa8\xe6\x88\xb7@example.com>", EXT_ALL, false,
	    "553 5.6.7" },
	{ "<a@example.com> SMTPUTF8", EXT_ALL, true, "555 5.5.4" },
	/* path length (RFC 5321 §4.5.3.1.3) */
	{ "<" A50 A50 "@example.com>", EXT_ALL, false, NULL, A50 A50,
	    "example.com", A50 A50 "@example.com" },
	/* DSN (RFC 3461) */
	{ "<a@b.c> NOTIFY=NEVER", EXT_ALL, false, NULL, "a", "b.c", "a@b.c",
	    SMTP_NOTIFY_NEVER },
	{ "<a@b.c> NOTIFY=SUCCESS,FAILURE", EXT_ALL, false, NULL, "a", "b.c",
	    "a@b.c", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE },
	{ "<a@b.c> notify=delay,success,failure", EXT_ALL, false, NULL, "a",
	    "b.c", "a@b.c", SMTP_NOTIFY_SUCCESS | SMTP_NOTIFY_FAILURE |
	    SMTP_NOTIFY_DELAY },
	{ "<a@b.c> NOTIFY=NEVER,SUCCESS", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> NOTIFY=SUCCESS,", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> NOTIFY=SOMETIMES", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> NOTIFY", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> NOTIFY=NEVER", EXT_ALL & ~SMTP_EXT_DSN, false,
	    "555 5.5.4" },
	{ "<a@b.c> NOTIFY=NEVER NOTIFY=NEVER", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822;Bob+2Bx@Example.COM", EXT_ALL, false, NULL,
	    "a", "b.c", "a@b.c", 0, "rfc822", "Bob+x@Example.COM" },
	{ "<a@b.c> ORCPT=RFC822;a@b.c NOTIFY=FAILURE", EXT_ALL, false, NULL,
	    "a", "b.c", "a@b.c", SMTP_NOTIFY_FAILURE, "rfc822", "a@b.c" },
	{ "<a@b.c> ORCPT=utf-8;j\\x{F6}rg\\x{2B}1@example.com", EXT_ALL,
	    false, NULL, "a", "b.c", "a@b.c", 0, "utf-8",
	    "j\xc3\xb6rg+1@example.com" },
	{ "<a@b.c> ORCPT=utf-8;\\x{1F600}@example.com", EXT_ALL, false, NULL,
	    "a", "b.c", "a@b.c", 0, "utf-8", "\xf0\x9f\x98\x80@example.com" },
	{ "<a@b.c> ORCPT=utf-8;j\xc3\xb6rg@example.com", EXT_ALL, true, NULL,
	    "a", "b.c", "a@b.c", 0, "utf-8", "j\xc3\xb6rg@example.com" },
	{ "<a@b.c> ORCPT=utf-8;j\xc3\xb6rg@example.com", EXT_ALL, false,
	    "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;j\xc3rg@example.com", EXT_ALL, true,
	    "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;\\x{D800}@example.com", EXT_ALL, false,
	    "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;\\x{110000}@example.com", EXT_ALL, false,
	    "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;\\x{0}@example.com", EXT_ALL, false,
	    "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;\\x{}@example.com", EXT_ALL, false,
	    "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;\\x{41", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;\\x{0000041}", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;a+2Bb", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822;", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822;a+4", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822;a+0D+0Ab", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822;a+C3+A9", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;a\\x{D}\\x{A}b", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;a\\x{85}b", EXT_ALL, false, "501 5.5.4" },
	{ "<a@b.c> ORCPT=utf-8;a\xc2\x85" "b", EXT_ALL, true, "501 5.5.4" },
	{ "<a@b.c> ORCPT=x400;foo", EXT_ALL, false, "555 5.5.4" },
	{ "<a@b.c> ORCPT=rfc822;a ORCPT=rfc822;b", EXT_ALL, false,
	    "501 5.5.4" },
	{ "<a@b.c> SIZE=1", EXT_ALL, false, "555 5.5.4" },
	{ "<a@b.c> X", EXT_ALL, false, "555 5.5.4" },
};

static void
test_rcpt(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(rcpt_cases) / sizeof(rcpt_cases[0]); i++) {
		const struct rcpt_case *c = &rcpt_cases[i];
		struct smtp_path p;
		struct smtp_rcpt_params rp;
		const char *reply = NULL;
		int rc;

		rc = smtp_parse_rcpt(pool, c->args, c->ext, c->smtputf8, &p,
		    &rp, &reply);
		if (c->reply != NULL) {
			CHECK(rc != OSP_OK && reply != NULL &&
			    strncmp(reply, c->reply, strlen(c->reply)) == 0 &&
			    reply_ok(reply), "RCPT \"%s\": rc %d reply \"%s\", "
			    "want \"%s\"", c->args, rc, reply, c->reply);
			continue;
		}
		CHECK(rc == OSP_OK, "RCPT \"%s\": rc %d reply \"%s\"", c->args,
		    rc, reply);
		if (rc != OSP_OK)
			continue;
		CHECK(str_eq(p.localpart, c->localpart) &&
		    str_eq(p.domain, c->domain) &&
		    str_eq(p.address, c->address) && !p.null,
		    "RCPT \"%s\": path \"%s\" \"%s\" \"%s\"", c->args,
		    p.localpart, p.domain, p.address);
		CHECK(rp.notify == c->notify &&
		    str_eq(rp.orcpt_type, c->orcpt_type) &&
		    str_eq(rp.orcpt, c->orcpt), "RCPT \"%s\": notify %u "
		    "orcpt \"%s\" \"%s\"", c->args, rp.notify, rp.orcpt_type,
		    rp.orcpt);
	}
	osp_pool_free(pool);
}

/* Paths around the 256-octet limit, and hostile lengths. */
static void
test_path_limits(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct smtp_path p;
	struct smtp_rcpt_params rp;
	struct smtp_mail_params mp;
	const char *reply, *name;
	char buf[2048], *big;
	size_t n;
	int rc;

	/* "<" + local + "@example.com>" = 256 exactly: accepted */
	n = 256 - strlen("<@example.com>");
	buf[0] = '<';
	memset(buf + 1, 'x', n);
	strcpy(buf + 1 + n, "@example.com>");
	CU_ASSERT_EQUAL(strlen(buf), 256);
	rc = smtp_parse_rcpt(pool, buf, EXT_ALL, false, &p, &rp, &reply);
	CHECK(rc == OSP_OK, "256-octet path: %s", reply);
	/* one more: refused */
	buf[0] = '<';
	memset(buf + 1, 'x', n + 1);
	strcpy(buf + 2 + n, "@example.com>");
	rc = smtp_parse_rcpt(pool, buf, EXT_ALL, false, &p, &rp, &reply);
	CHECK(rc != OSP_OK && strncmp(reply, "501 5.1.3", 9) == 0 &&
	    reply_ok(reply), "257-octet path: %s", reply);
	rc = smtp_parse_mail(pool, buf, EXT_ALL, &p, &mp, &reply);
	CHECK(rc != OSP_OK && strncmp(reply, "501 5.1.7", 9) == 0,
	    "257-octet reverse path: %s", reply);

	/* a domain label of 64 octets */
	snprintf(buf, sizeof(buf), "<a@%s.com>",
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
	rc = smtp_parse_rcpt(pool, buf, EXT_ALL, false, &p, &rp, &reply);
	CHECK(rc != OSP_OK, "64-octet label accepted");

	/* a megabyte of each kind of hostile input: no crash, refused */
	big = osp_malloc(1 << 20);
	memset(big, 'a', (1 << 20) - 1);
	big[(1 << 20) - 1] = '\0';
	big[0] = '<';
	rc = smtp_parse_mail(pool, big, EXT_ALL, &p, &mp, &reply);
	CHECK(rc != OSP_OK && reply_ok(reply), "1 MB path");
	memset(big, '"', (1 << 20) - 1);
	big[0] = '<';
	rc = smtp_parse_mail(pool, big, EXT_ALL, &p, &mp, &reply);
	CHECK(rc != OSP_OK && reply_ok(reply), "1 MB quotes");
	memset(big, '@', (1 << 20) - 1);
	big[0] = '<';
	rc = smtp_parse_mail(pool, big, EXT_ALL, &p, &mp, &reply);
	CHECK(rc != OSP_OK && reply_ok(reply), "1 MB route");
	memset(big, '\xc3', (1 << 20) - 1);
	big[0] = '<';
	rc = smtp_parse_mail(pool, big, EXT_ALL, &p, &mp, &reply);
	CHECK(rc != OSP_OK && reply_ok(reply), "1 MB bad UTF-8");
	memset(big, ' ', (1 << 20) - 1);
	memcpy(big, "<a@b.c>", 7);
	rc = smtp_parse_mail(pool, big, EXT_ALL, &p, &mp, &reply);
	CHECK(rc == OSP_OK, "1 MB of trailing spaces: %s", reply);
	memset(big, 'A', (1 << 20) - 1);
	memcpy(big, "<a@b.c> ENVID=", 14);
	rc = smtp_parse_mail(pool, big, EXT_ALL, &p, &mp, &reply);
	CHECK(rc != OSP_OK && reply_ok(reply), "1 MB ENVID");
	rc = smtp_parse_helo(pool, big, true, &name, &reply);
	CHECK(rc != OSP_OK, "1 MB EHLO");
	osp_free(big);
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* HELO/EHLO, BDAT, AUTH, xtext */

static void
test_helo(void)
{
	static const struct {
		const char	*args;
		const char	*name;		/* NULL: refused */
	} t[] = {
		{ "mail.example.org", "mail.example.org" },
		{ "  mail.example.org  ", "mail.example.org" },
		{ "localhost", "localhost" },
		{ "DESKTOP-AB12_CD", "DESKTOP-AB12_CD" },
		{ "mail.example.org.", "mail.example.org." },
		{ "[192.0.2.1]", "[192.0.2.1]" },
		{ "[IPv6:2001:db8::25]", "[IPv6:2001:db8::25]" },
		{ "[192.0.2.300]", NULL },
		{ "[IPv6:zz]", NULL },
		{ "[foo:bar]", NULL },
		{ "[192.0.2.1", NULL },
		{ "", NULL },
		{ "   ", NULL },
		{ "mail.example.org extra", NULL },
		{ "a..b", NULL },
		{ ".a", NULL },
		{ "a b", NULL },
		{ "b\xc3\xbc" "cher.example", NULL },
		{ "a\tb", NULL },
		{ "a/b", NULL },
		{ "<a@b>", NULL },
		{ A50 "aaaaaaaaaaaaaa.com", NULL },	/* 64-octet label */
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *name = NULL, *reply = NULL;
		int rc = smtp_parse_helo(pool, t[i].args, i % 2 == 0, &name,
		    &reply);

		if (t[i].name != NULL)
			CHECK(rc == OSP_OK && str_eq(name, t[i].name),
			    "HELO \"%s\": rc %d name \"%s\" reply \"%s\"",
			    t[i].args, rc, name, reply);
		else
			CHECK(rc != OSP_OK && name == NULL &&
			    strncmp(reply, "501 5.5.4", 9) == 0 &&
			    reply_ok(reply) && strstr(reply, i % 2 == 0 ?
			    "EHLO" : "HELO") != NULL,
			    "HELO \"%s\": rc %d reply \"%s\"", t[i].args, rc,
			    reply);
	}
	osp_pool_free(pool);
}

static void
test_bdat(void)
{
	static const struct {
		const char	*args;
		bool		 ok;
		uint64_t	 size;
		bool		 last;
	} t[] = {
		{ "100", true, 100, false },
		{ "0 LAST", true, 0, true },
		{ "86 last", true, 86, true },
		{ "  42   LAST  ", true, 42, true },
		{ "18446744073709551615", true, UINT64_MAX, false },
		{ "18446744073709551616", false },
		{ "123456789012345678901", false },
		{ "", false },
		{ "LAST", false },
		{ "-1", false },
		{ "10LAST", false },
		{ "10 LASTX", false },
		{ "10 LAST X", false },
		{ "10 FIRST", false },
		{ "1e3", false },
	};
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		uint64_t size = 7;
		bool last = true;
		const char *reply = NULL;
		int rc = smtp_parse_bdat(t[i].args, &size, &last, &reply);

		if (t[i].ok)
			CHECK(rc == OSP_OK && size == t[i].size &&
			    last == t[i].last, "BDAT \"%s\": rc %d size %llu "
			    "last %d", t[i].args, rc, (unsigned long long)size,
			    last);
		else
			CHECK(rc != OSP_OK && reply_ok(reply) &&
			    strncmp(reply, "501 5.5.4", 9) == 0,
			    "BDAT \"%s\": rc %d", t[i].args, rc);
	}
}

static void
test_auth(void)
{
	static const struct {
		const char	*args;
		const char	*mech;		/* NULL: refused */
		const char	*initial;
		const char	*reply;
	} t[] = {
		{ "PLAIN", "PLAIN", NULL },
		{ "plain AHVzZXIAcGFzcw==", "PLAIN", "AHVzZXIAcGFzcw==" },
		{ "SCRAM-SHA-256-PLUS biwsbj11c2VyLHI9cm9k",
		    "SCRAM-SHA-256-PLUS", "biwsbj11c2VyLHI9cm9k" },
		{ "EXTERNAL =", "EXTERNAL", "=" },
		{ "LOGIN dXNlcg== ", "LOGIN", "dXNlcg==" },
		{ "", NULL, NULL, "501 5.5.4" },
		{ "ABCDEFGHIJKLMNOPQRSTU", NULL, NULL, "501 5.5.4" },
		{ "PL@IN", NULL, NULL, "501 5.5.4" },
		{ "PLAIN a b", NULL, NULL, "501 5.5.2" },
		{ "PLAIN abc", NULL, NULL, "501 5.5.2" },
		{ "PLAIN ab=c", NULL, NULL, "501 5.5.2" },
		{ "PLAIN a===", NULL, NULL, "501 5.5.2" },
		{ "PLAIN ====", NULL, NULL, "501 5.5.2" },
		{ "PLAIN ab*d", NULL, NULL, "501 5.5.2" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *mech = NULL, *ir = NULL, *reply = NULL;
		int rc = smtp_parse_auth(pool, t[i].args, &mech, &ir, &reply);

		if (t[i].mech != NULL)
			CHECK(rc == OSP_OK && str_eq(mech, t[i].mech) &&
			    str_eq(ir, t[i].initial), "AUTH \"%s\": rc %d "
			    "\"%s\" \"%s\"", t[i].args, rc, mech, ir);
		else
			CHECK(rc != OSP_OK && reply_ok(reply) &&
			    strncmp(reply, t[i].reply, 9) == 0,
			    "AUTH \"%s\": rc %d reply \"%s\"", t[i].args, rc,
			    reply);
	}
	osp_pool_free(pool);
}

static void
test_xtext(void)
{
	static const struct {
		const char	*in, *out;
	} t[] = {
		{ "", "" },
		{ "abc", "abc" },
		{ "a+2Bb", "a+b" },
		{ "+3D+2b+20", "=+ " },
		{ "+C3+A9", "\xc3\xa9" },
		{ "+", NULL },
		{ "+2", NULL },
		{ "+G0", NULL },
		{ "+00", NULL },
		{ "a=b", NULL },
		{ "a b", NULL },
		{ "\x7f", NULL },
		{ "\xc3\xa9", NULL },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	size_t i;

	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		const char *out = smtp_xtext_decode(pool, t[i].in);

		CHECK(str_eq(out, t[i].out), "xtext \"%s\": \"%s\"", t[i].in,
		    out);
	}
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* DATA / BDAT reader */

/* The message as the reader leaves it in an anonymous temp file. */
struct result {
	char		*out;
	size_t		 outlen;
	size_t		 consumed;
	struct smtp_data d;
	int		 rc;
	const char	*reply;
};

static int
tmp_fd(void)
{
	char path[1024];
	int fd;

	snprintf(path, sizeof(path), "%s/msgXXXXXX", osp_test_tmpdir());
	fd = mkstemp(path);
	CU_ASSERT_FATAL(fd >= 0);
	unlink(path);
	return fd;
}

static void
read_back(int fd, struct result *r)
{
	off_t end = lseek(fd, 0, SEEK_END);

	r->outlen = (size_t)end;
	r->out = osp_malloc(r->outlen + 1);
	CU_ASSERT_FATAL(pread(fd, r->out, r->outlen, 0) ==
	    (ssize_t)r->outlen);
	r->out[r->outlen] = '\0';
}

/*
 * Reads `in` split at the given positions (sorted, each <= len). DATA
 * stops consuming at the terminator; BDAT is one chunk of len bytes.
 */
static void
run_reader(const char *in, size_t len, bool dot, bool binary,
    uint64_t max, const size_t *splits, size_t nsplits, struct result *r)
{
	size_t pos = 0, k;
	int fd = tmp_fd();

	memset(r, 0, sizeof(*r));
	smtp_data_init(&r->d, fd, max, dot, binary);
	for (k = 0; k <= nsplits && !r->d.done; k++) {
		size_t end = k < nsplits ? splits[k] : len, n;
		uint64_t before = r->d.size;

		if (end < pos)
			continue;
		n = smtp_data_feed(&r->d, (const unsigned char *)in + pos,
		    end - pos, dot ? UINT64_MAX : len - pos);
		CU_ASSERT(n <= end - pos);
		CU_ASSERT(r->d.size >= before);
		/* only the terminator stops it short */
		if (n != end - pos && !r->d.done)
			CU_FAIL("reader stopped early");
		pos += n;
	}
	r->consumed = pos;
	r->rc = smtp_data_finish(&r->d, &r->reply);
	read_back(fd, r);
	close(fd);
}

static bool
same_result(const struct result *a, const struct result *b)
{
	return a->consumed == b->consumed && a->outlen == b->outlen &&
	    memcmp(a->out, b->out, a->outlen) == 0 &&
	    a->d.done == b->d.done && a->d.bare_lf == b->d.bare_lf &&
	    a->d.bare_cr == b->d.bare_cr && a->d.has_8bit == b->d.has_8bit &&
	    a->d.has_nul == b->d.has_nul && a->d.too_big == b->d.too_big &&
	    a->d.size == b->d.size && a->rc == b->rc;
}

struct data_case {
	const char	*in;
	size_t		 len;		/* 0: strlen */
	bool		 dot, binary;
	const char	*out;		/* expected file */
	size_t		 outlen;	/* 0: strlen */
	size_t		 consumed;	/* 0: len */
	bool		 done, bare_lf, bare_cr, has_8bit, has_nul;
};

#define T(s)	s, sizeof(s) - 1

static const struct data_case data_cases[] = {
	/* DATA */
	{ T(".\r\n"), true, false, "", 0, 0, true },
	{ T(".\r\nQUIT\r\n"), true, false, "", 0, 3, true },
	{ T("a\r\n.\r\n"), true, false, "a\r\n", 0, 0, true },
	{ T("Subject: x\r\n\r\nbody\r\n.\r\nMAIL FROM:<a@b>\r\n"), true, false,
	    "Subject: x\r\n\r\nbody\r\n", 0, 23, true },
	{ T("..\r\n.\r\n"), true, false, ".\r\n", 0, 0, true },
	{ T("..foo\r\n...\r\n.\r\n"), true, false, ".foo\r\n..\r\n", 0, 0,
	    true },
	{ T("a.\r\n.b\r\n.\r\n"), true, false, "a.\r\nb\r\n", 0, 0, true },
	{ T("\r\n.\r\n"), true, false, "\r\n", 0, 0, true },
	{ T("a\r\n.\r\n.\r\n"), true, false, "a\r\n", 0, 6, true },
	{ T("no end\r\n"), true, false, "no end\r\n", 0, 0, false },
	{ T("x\r\n."), true, false, "x\r\n", 0, 0, false },
	{ T("x\r\n.\r"), true, false, "x\r\n", 0, 0, false },
	{ T("caf\xc3\xa9\r\n.\r\n"), true, false, "caf\xc3\xa9\r\n", 0, 0,
	    true, false, false, true },
	{ T("a\0b\r\n.\r\n"), true, false, "a\0b\r\n", 5, 0, true, false,
	    false, false, true },
	/* smuggling: none of these ends the message early */
	{ T("a\n.\n.\r\n"), true, false, "a\n.\n.\r\n", 0, 0, false, true },
	{ T("a\n.\n\r\n.\r\n"), true, false, "a\n.\n\r\n", 0, 0, true,
	    true },
	{ T("a\r\n.\n\r\n.\r\n"), true, false, "a\r\n\n\r\n", 0, 0, true,
	    true },
	{ T("a\n.\r\n.\r\n"), true, false, "a\n.\r\n", 0, 0, true, true },
	{ T("a\r.\r\n.\r\n"), true, false, "a\r.\r\n", 0, 0, true, false,
	    true },
	{ T("a\r\n.\r.\r\n.\r\n"), true, false, "a\r\n\r.\r\n", 0, 0, true,
	    false, true },
	{ T("a\r\n.\rX\r\n.\r\n"), true, false, "a\r\n\rX\r\n", 0, 0, true,
	    false, true },
	{ T("a\r.\r.\r\n.\r\n"), true, false, "a\r.\r.\r\n", 0, 0, true,
	    false, true },
	{ T("a\n\r.\r\n.\r\n"), true, false, "a\n\r.\r\n", 0, 0, true, true,
	    true },
	{ T("\n.\r\n.\r\n"), true, false, "\n.\r\n", 0, 0, true, true },
	{ T(".\n\r\n.\r\n"), true, false, "\n\r\n", 0, 0, true, true },
	{ T(".\n.\r\n"), true, false, "\n.\r\n", 0, 0, false, true },
	{ T("a\r\r\n.\r\n"), true, false, "a\r\r\n", 0, 0, true, false,
	    true },
	/* BDAT */
	{ T("a\r\nb\r\n"), false, false, "a\r\nb\r\n", 0, 0 },
	{ T(".\r\n"), false, false, ".\r\n", 0, 0 },
	{ T("no final crlf"), false, false, "no final crlf", 0, 0 },
	{ T("a\nb"), false, false, "a\nb", 0, 0, false, true },
	{ T("a\rb"), false, false, "a\rb", 0, 0, false, false, true },
	{ T("a\r"), false, false, "a\r", 0, 0, false, false, true },
	{ T("\na"), false, false, "\na", 0, 0, false, true },
	{ T("a\n\rb\r\n"), false, true, "a\n\rb\r\n", 0, 0 },
	{ T("\xff\0\r"), false, true, "\xff\0\r", 3, 0, false, false, false,
	    true, true },
};

static void
check_case(const struct data_case *c, const struct result *r,
    const char *how)
{
	size_t len = c->len, outlen = c->outlen != 0 ? c->outlen :
	    strlen(c->out), consumed = c->consumed != 0 ? c->consumed : len;

	CHECK(r->consumed == consumed && r->outlen == outlen &&
	    memcmp(r->out, c->out, outlen) == 0 && r->d.done == c->done &&
	    r->d.bare_lf == c->bare_lf && r->d.bare_cr == c->bare_cr &&
	    r->d.has_8bit == c->has_8bit && r->d.has_nul == c->has_nul &&
	    r->d.size == outlen, "data case \"%s\" (%s): consumed %zu "
	    "out %zu done %d lf %d cr %d 8bit %d nul %d", c->in, how,
	    r->consumed, r->outlen, r->d.done, r->d.bare_lf, r->d.bare_cr,
	    r->d.has_8bit, r->d.has_nul);
	if (c->done || !c->dot)
		CHECK((r->rc == OSP_OK) == !(c->bare_lf || c->bare_cr) &&
		    (r->rc == OSP_OK || (reply_ok(r->reply) &&
		    strncmp(r->reply, "550 5.6.0", 9) == 0)),
		    "data case \"%s\": rc %d \"%s\"", c->in, r->rc, r->reply);
	else
		CHECK(r->rc != OSP_OK && reply_ok(r->reply), "data case "
		    "\"%s\": incomplete accepted", c->in);
}

/* Every case whole, split at every byte position, and byte by byte. */
static void
test_data_cases(void)
{
	size_t i, k, splits[64];

	for (i = 0; i < sizeof(data_cases) / sizeof(data_cases[0]); i++) {
		const struct data_case *c = &data_cases[i];
		struct result whole, part;

		run_reader(c->in, c->len, c->dot, c->binary, 0, NULL, 0,
		    &whole);
		check_case(c, &whole, "whole");
		for (k = 0; k <= c->len; k++) {
			splits[0] = k;
			run_reader(c->in, c->len, c->dot, c->binary, 0, splits,
			    1, &part);
			CHECK(same_result(&whole, &part), "data case \"%s\" "
			    "split at %zu differs", c->in, k);
			osp_free(part.out);
		}
		CU_ASSERT_FATAL(c->len < 64);
		for (k = 0; k < c->len; k++)
			splits[k] = k + 1;
		run_reader(c->in, c->len, c->dot, c->binary, 0, splits,
		    c->len, &part);
		check_case(c, &part, "byte by byte");
		osp_free(part.out);
		osp_free(whole.out);
	}
}

/*
 * Reference model, one byte at a time from the definitions: a line
 * starts at the beginning or after CRLF; DATA ends at the first line
 * that is ".\r\n"; a leading "." is removed; a LF not after CR and a CR
 * not before LF are bare (binary BDAT: no checks).
 */
static void
model(const unsigned char *in, size_t len, bool dot, bool binary,
    struct osp_buf *out, size_t *consumed_r, bool *done_r, bool *lf_r,
    bool *cr_r)
{
	size_t i, end = len;

	*done_r = *lf_r = *cr_r = false;
	if (dot)
		for (i = 0; i + 3 <= len; i++)
			if ((i == 0 || (i >= 2 && in[i - 2] == '\r' &&
			    in[i - 1] == '\n')) && memcmp(in + i, ".\r\n",
			    3) == 0) {
				end = i;
				*done_r = true;
				break;
			}
	*consumed_r = *done_r ? end + 3 : len;
	for (i = 0; i < end; i++) {
		bool bol = i == 0 || (i >= 2 && in[i - 2] == '\r' &&
		    in[i - 1] == '\n');

		if (!binary) {
			if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
				*lf_r = true;
			/* a CR at the very end of an unfinished DATA
			 * message is not yet known to be bare */
			if (in[i] == '\r' && (i + 1 < len ? in[i + 1] != '\n' :
			    !dot))
				*cr_r = true;
		}
		if (dot && bol && in[i] == '.') {
			/* an unfinished "." or ".\r" at the end is held */
			if (!*done_r && (i + 1 == len || (i + 2 == len &&
			    in[i + 1] == '\r')))
				break;
			continue;
		}
		osp_buf_append(out, in + i, 1);
	}
}

static void
test_data_model(void)
{
	static const unsigned char alpha[] = { '\r', '\n', '.', 'a', '\r',
	    '\n', '.', 0x80, 0 };
	unsigned char in[48];
	size_t splits[8];
	unsigned int seed = 4242;
	int iter;

	for (iter = 0; iter < 20000; iter++) {
		size_t len = (size_t)(rand_r(&seed) % (int)sizeof(in)), i;
		bool dot = rand_r(&seed) % 4 != 0;
		bool binary = !dot && rand_r(&seed) % 4 == 0;
		size_t nsplits = (size_t)(rand_r(&seed) % 8), consumed;
		struct osp_buf out = { 0 };
		bool done, lf, cr;
		struct result r;

		for (i = 0; i < len; i++)
			in[i] = alpha[rand_r(&seed) % (int)sizeof(alpha)];
		for (i = 0; i < nsplits; i++)
			splits[i] = len > 0 ?
			    (size_t)rand_r(&seed) % (len + 1) : 0;
		/* sort */
		for (i = 1; i < nsplits; i++) {
			size_t j = i, v = splits[i];

			while (j > 0 && splits[j - 1] > v) {
				splits[j] = splits[j - 1];
				j--;
			}
			splits[j] = v;
		}
		model(in, len, dot, binary, &out, &consumed, &done, &lf, &cr);
		run_reader((const char *)in, len, dot, binary, 0, splits,
		    nsplits, &r);
		CHECK(r.consumed == consumed && r.d.done == done &&
		    r.outlen == out.len && (out.len == 0 ||
		    memcmp(r.out, out.data, out.len) == 0) &&
		    r.d.bare_lf == lf && r.d.bare_cr == cr,
		    "model iteration %d (dot %d binary %d len %zu): consumed "
		    "%zu/%zu out %zu/%zu done %d/%d lf %d/%d cr %d/%d", iter,
		    dot, binary, len, r.consumed, consumed, r.outlen, out.len,
		    r.d.done, done, r.d.bare_lf, lf, r.d.bare_cr, cr);
		osp_free(r.out);
		osp_buf_deinit(&out);
		if (failures > 20)
			break;
	}
}

/* Every smuggling variant between two parts of a message: never an early
 * end, always a bare CR/LF verdict, and the real end still found. */
static void
test_data_smuggling(void)
{
	static const struct {
		const char	*s;
		size_t		 len;
		bool		 bare;
	} v[] = {
		{ T("\n.\n"), true }, { T("\n.\r\n"), true },
		{ T("\r\n.\n"), true }, { T("\r.\r\n"), true },
		{ T("\r\n.\r"), true }, { T("\r.\r"), true },
		{ T("\n.\r"), true }, { T("\r.\n"), true },
		{ T("\n\n.\n\n"), true }, { T("\r\r.\r\r"), true },
		{ T("\r\n\n.\r\n"), true }, { T("\r\n.\n\r\n"), true },
		{ T("\r\n\r.\r\n"), true }, { T("\n\r\n.\n"), true },
		{ T("\r\n.\r\r\n"), true }, { T("\r\n.\n.\r\n"), true },
		{ T("\r\n\x00.\r\n"), false }, { T("\r\n .\r\n"), false },
		{ T("\r\n..\r\n"), false },
	};
	size_t i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char in[256];
		struct result r;
		int n;

		n = snprintf(in, sizeof(in), "Subject: a\r\n\r\nfirst");
		memcpy(in + n, v[i].s, v[i].len);
		n += (int)v[i].len;
		n += snprintf(in + n, sizeof(in) - (size_t)n,
		    "MAIL FROM:<evil@x>\r\n\r\n.\r\nQUIT\r\n");
		run_reader(in, (size_t)n, true, false, 0, NULL, 0, &r);
		CHECK(r.d.done && r.consumed == (size_t)n - 6,
		    "smuggling variant %zu ended at %zu of %d", i, r.consumed,
		    n);
		if (v[i].bare)
			CHECK(r.rc == OSP_EPERM && reply_ok(r.reply) &&
			    strncmp(r.reply, "550 5.6.0", 9) == 0 &&
			    strstr(r.reply, "bare") != NULL,
			    "smuggling variant %zu accepted: %s", i, r.reply);
		else
			CHECK(r.rc == OSP_OK, "variant %zu refused: %s", i,
			    r.reply);
		osp_free(r.out);
	}
}

/* Over the limit: everything is read up to the end, nothing more is
 * written, 552 5.3.4. At the limit exactly: accepted. */
static void
test_data_size(void)
{
	char in[4096];
	struct result r;
	size_t n = 0, i;

	for (i = 0; i < 100; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n,
		    "line %02zu 0123456789\r\n", i);
	memcpy(in + n, ".\r\nRSET\r\n", 9);
	n += 9;
	run_reader(in, n, true, false, 100, NULL, 0, &r);
	CHECK(r.d.done && r.consumed == n - 6 && r.d.too_big &&
	    r.rc == OSP_ETOOBIG && reply_ok(r.reply) &&
	    strncmp(r.reply, "552 5.3.4", 9) == 0 && r.outlen <= 100 &&
	    r.d.size == n - 9, "size limit: rc %d %s out %zu size %llu",
	    r.rc, r.reply, r.outlen, (unsigned long long)r.d.size);
	osp_free(r.out);
	run_reader(in, n, true, false, n - 9, NULL, 0, &r);
	CHECK(r.rc == OSP_OK && !r.d.too_big && r.outlen == n - 9,
	    "message at the limit: rc %d", r.rc);
	osp_free(r.out);
	run_reader(in, n - 9, false, false, n - 10, NULL, 0, &r);
	CHECK(r.rc == OSP_ETOOBIG && r.consumed == n - 9, "BDAT over limit");
	osp_free(r.out);
}

/* BDAT: exact chunk sizes, CR/LF split across chunks, chunks of any
 * size with the reader's buffer in between. */
static void
test_bdat_chunks(void)
{
	struct smtp_data d;
	const char *reply;
	const char *text = "a\r\nb\r\nNEXT COMMAND";
	const unsigned char *in = (const unsigned char *)text;
	size_t total = strlen(text), n;
	int fd = tmp_fd();
	struct result r;

	smtp_data_init(&d, fd, 0, false, false);
	/* chunk 1: "a\r" (limit 2 of the 19 bytes given) */
	n = smtp_data_feed(&d, in, total, 2);
	CU_ASSERT_EQUAL(n, 2);
	/* chunk 2: "\nb\r\n" */
	n = smtp_data_feed(&d, in + 2, total - 2, 4);
	CU_ASSERT_EQUAL(n, 4);
	n = smtp_data_feed(&d, in + 6, total - 6, 0);
	CU_ASSERT_EQUAL(n, 0);
	CU_ASSERT(!d.bare_cr && !d.bare_lf && !d.done);
	CU_ASSERT_EQUAL(smtp_data_finish(&d, &reply), OSP_OK);
	memset(&r, 0, sizeof(r));
	read_back(fd, &r);
	CU_ASSERT(r.outlen == 6 && memcmp(r.out, "a\r\nb\r\n", 6) == 0);
	osp_free(r.out);
	close(fd);

	/* a chunk ending in CR followed by a chunk not starting with LF */
	smtp_data_init(&d, -1, 0, false, false);
	CU_ASSERT_EQUAL(smtp_data_feed(&d, in, 2, 2), 2);
	CU_ASSERT_EQUAL(smtp_data_feed(&d, in + 3, 2, 2), 2);
	CU_ASSERT(d.bare_cr);
	CU_ASSERT_EQUAL(smtp_data_finish(&d, &reply), OSP_EPERM);
	CU_ASSERT(reply_ok(reply));

	/* fd -1: counted, not written (a refused chunk being skipped) */
	smtp_data_init(&d, -1, 0, false, false);
	CU_ASSERT_EQUAL(smtp_data_feed(&d, in, total, total), total);
	CU_ASSERT_EQUAL(d.size, total);
	smtp_data_abort(&d);
	CU_ASSERT(d.buf == NULL);
}

/* A write error (ENOSPC from /dev/full) becomes 451 4.3.0; the reader
 * still finds the end. */
static void
test_data_write_error(void)
{
	struct smtp_data d;
	const char *reply = NULL;
	size_t len = 1 << 20, n, i;
	unsigned char *big;
	int fd = open("/dev/full", O_WRONLY);

	if (fd < 0) {
		fprintf(stderr, "  skip: no /dev/full\n");
		return;
	}
	big = osp_malloc(len);
	for (i = 0; i < len; i++)
		big[i] = i % 64 == 63 ? '\n' : i % 64 == 62 ? '\r' : 'x';
	memcpy(big + len - 5, "\r\n.\r\n", 5);
	smtp_data_init(&d, fd, 0, true, false);
	n = smtp_data_feed(&d, big, len, UINT64_MAX);
	CU_ASSERT_EQUAL(n, len);
	CU_ASSERT(d.done);
	CU_ASSERT_EQUAL(d.werr, -ENOSPC);
	CU_ASSERT_EQUAL(smtp_data_finish(&d, &reply), OSP_ETEMP);
	CHECK(reply != NULL && reply_ok(reply) &&
	    strncmp(reply, "451 4.3.0", 9) == 0, "write error: %s", reply);

	/* small message: the error shows at the flush in finish */
	smtp_data_init(&d, fd, 0, true, false);
	CU_ASSERT_EQUAL(smtp_data_feed(&d, (const unsigned char *)"a\r\n.\r\n",
	    6, UINT64_MAX), 6);
	CU_ASSERT_EQUAL(smtp_data_finish(&d, &reply), OSP_ETEMP);
	close(fd);
	osp_free(big);
}

/* 50 MB in 64 KiB reads to /dev/null: must fly. */
static void
test_data_speed(void)
{
	size_t total = 50u << 20, chunk = 64 << 10, pos = 0, n;
	unsigned char *msg = osp_malloc(chunk);
	struct smtp_data d;
	struct timespec t0, t1;
	const char *reply;
	double secs;
	size_t i;
	int fd = open("/dev/null", O_WRONLY);

	CU_ASSERT_FATAL(fd >= 0);
	/* 78-character lines, some leading dots */
	for (i = 0; i < chunk; i++)
		msg[i] = i % 80 == 79 ? '\n' : i % 80 == 78 ? '\r' :
		    i % 800 == 0 ? '.' : (unsigned char)('a' + i % 26);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	smtp_data_init(&d, fd, 0, true, false);
	while (pos < total) {
		n = smtp_data_feed(&d, msg, chunk, UINT64_MAX);
		CU_ASSERT_EQUAL_FATAL(n, chunk);
		pos += n;
	}
	CU_ASSERT_EQUAL(smtp_data_feed(&d, (const unsigned char *)
	    "\r\n.\r\n", 5, UINT64_MAX), 5);
	CU_ASSERT(d.done);
	CU_ASSERT_EQUAL(smtp_data_finish(&d, &reply), OSP_OK);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	secs = (double)(t1.tv_sec - t0.tv_sec) +
	    (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	fprintf(stderr, "  50 MB DATA in %.3f s\n", secs);
	/* generous: sanitizer builds are slow */
	CU_ASSERT(secs < 20.0);
	close(fd);
	osp_free(msg);
}

static const struct osp_test tests[] = {
	OSP_TEST(test_verb),
	OSP_TEST(test_mail),
	OSP_TEST(test_rcpt),
	OSP_TEST(test_path_limits),
	OSP_TEST(test_helo),
	OSP_TEST(test_bdat),
	OSP_TEST(test_auth),
	OSP_TEST(test_xtext),
	OSP_TEST(test_data_cases),
	OSP_TEST(test_data_model),
	OSP_TEST(test_data_smuggling),
	OSP_TEST(test_data_size),
	OSP_TEST(test_bdat_chunks),
	OSP_TEST(test_data_write_error),
	OSP_TEST(test_data_speed),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	return osp_test_main(argc, argv, "smtp_parse", tests);
}
