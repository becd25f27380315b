/* SPDX-License-Identifier: ISC */
/* SMTP command parsing: verbs, HELO/EHLO names, MAIL and RCPT paths with
 * their ESMTP parameters (RFC 5321 §4.1.2, §4.1.1.11; RFC 6531 SMTPUTF8;
 * RFC 3461 DSN), BDAT and AUTH arguments, xtext. Input is remote: every
 * function takes a NUL-terminated line and never reads past it. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>

#include "smtp.h"

/* RFC 5321 §4.5.3.1.3: a path is at most 256 octets, "<" and ">"
 * included. §4.5.3.1.2: a domain at most 255. */
#define PATH_MAX_OCTETS		256
#define DOMAIN_MAX_OCTETS	255
/* RFC 3461 §4.4: ENVID values are at most 100 characters. */
#define ENVID_MAX		100
/* RFC 1870 §3: size-value ::= 1*20DIGIT. */
#define SIZE_MAX_DIGITS		20

static const struct smtp_verb_def {
	const char	*name;
	size_t		 len;
	enum smtp_verb	 verb;
} smtp_verbs[] = {
	{ "HELO", 4, SMTP_CMD_HELO },
	{ "EHLO", 4, SMTP_CMD_EHLO },
	{ "MAIL", 4, SMTP_CMD_MAIL },
	{ "RCPT", 4, SMTP_CMD_RCPT },
	{ "DATA", 4, SMTP_CMD_DATA },
	{ "BDAT", 4, SMTP_CMD_BDAT },
	{ "RSET", 4, SMTP_CMD_RSET },
	{ "NOOP", 4, SMTP_CMD_NOOP },
	{ "QUIT", 4, SMTP_CMD_QUIT },
	{ "VRFY", 4, SMTP_CMD_VRFY },
	{ "EXPN", 4, SMTP_CMD_EXPN },
	{ "HELP", 4, SMTP_CMD_HELP },
	{ "STARTTLS", 8, SMTP_CMD_STARTTLS },
	{ "AUTH", 4, SMTP_CMD_AUTH },
};

/* Replies that differ between the reverse path (MAIL, RFC 3463 X.1.7)
 * and a forward path (RCPT, X.1.3). */
struct path_replies {
	const char	*syntax;	/* no <...> at all */
	const char	*address;	/* bad mailbox syntax */
	const char	*domain;	/* bad domain */
	const char	*literal;	/* bad or unsupported address literal */
	const char	*idn;		/* U-label that is not a valid IDN */
	const char	*too_long;
	const char	*utf8_bad;	/* malformed UTF-8 under SMTPUTF8 */
};

static const struct path_replies mail_replies = {
	"501 5.5.4 Syntax: MAIL FROM:<address>",
	"501 5.1.7 Syntax error in sender address",
	"501 5.1.7 Invalid domain in sender address",
	"501 5.1.7 Invalid or unsupported address literal in sender address",
	"501 5.1.7 Invalid internationalized domain name in sender address",
	"501 5.1.7 Sender address too long (RFC 5321 4.5.3.1.3: 256 octets)",
	"501 5.6.7 Malformed UTF-8 in sender address",
};

static const struct path_replies rcpt_replies = {
	"501 5.5.4 Syntax: RCPT TO:<address>",
	"501 5.1.3 Syntax error in recipient address",
	"501 5.1.3 Invalid domain in recipient address",
	"501 5.1.3 Invalid or unsupported address literal in recipient address",
	"501 5.1.3 Invalid internationalized domain name in recipient address",
	"501 5.1.3 Recipient address too long (RFC 5321 4.5.3.1.3: 256 octets)",
	"501 5.6.7 Malformed UTF-8 in recipient address",
};

/* RFC 6531 §3.7.4.1: non-ASCII addresses without SMTPUTF8. */
static const char reply_need_utf8[] =
    "553 5.6.7 Non-ASCII address requires SMTPUTF8 (RFC 6531)";

static inline char
ascii_upper(char c)
{
	return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

static inline char
ascii_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static inline bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static inline bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool
eqi_n(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (ascii_upper(a[i]) != ascii_upper(b[i]))
			return false;
	return true;
}

static const char *
skip_sp(const char *s)
{
	while (*s == ' ')
		s++;
	return s;
}

/* RFC 5322 §3.2.3 atext, as RFC 5321 §4.1.2 uses it. */
static bool
is_atext(unsigned char c)
{
	if (is_alpha(c) || is_digit(c))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

/* qtextSMTP (RFC 5321 §4.1.2): printable ASCII but " and \. */
static bool
is_qtext(unsigned char c)
{
	return c >= 32 && c <= 126 && c != '"' && c != '\\';
}

/*
 * Consumes a run of non-ASCII bytes at *sp (one UTF-8 sequence); records
 * that the path needs SMTPUTF8 and whether the bytes are malformed (they
 * are then skipped one at a time so parsing can go on to give the most
 * useful reply).
 */
static void
take_nonascii(const char **sp, struct smtp_path *path, bool *bad_utf8)
{
	size_t n = osp_utf8_decode(*sp, SIZE_MAX, NULL);

	path->utf8 = true;
	if (n == 0) {
		*bad_utf8 = true;
		n = 1;
	}
	*sp += n;
}

/* Whether the unquoted localpart can be written as a Dot-string (RFC
 * 5321 §4.1.2, atext extended with UTF-8 by RFC 6531 §3.3). */
static bool
localpart_is_dotstring(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	bool atom = false;

	for (; *p != '\0'; p++) {
		if (*p == '.') {
			if (!atom)
				return false;
			atom = false;
		} else if (is_atext(*p) || *p >= 0x80)
			atom = true;
		else
			return false;
	}
	return atom;
}

/* The localpart as it goes into an address: a quoted-string with " and \
 * escaped when it is not a Dot-string. */
static const char *
localpart_quote(struct osp_pool *pool, const char *s)
{
	size_t len = strlen(s), i, j;
	char *q;

	if (localpart_is_dotstring(s))
		return s;
	q = osp_palloc(pool, 2 * len + 3);
	j = 0;
	q[j++] = '"';
	for (i = 0; i < len; i++) {
		if (s[i] == '"' || s[i] == '\\')
			q[j++] = '\\';
		q[j++] = s[i];
	}
	q[j++] = '"';
	q[j] = '\0';
	return q;
}

/*
 * Validates an address literal (RFC 5321 §4.1.3) "[...]" of len bytes:
 * IPv4 dotted quad or "IPv6:" followed by an IPv6 address, checked with
 * inet_pton. General-address-literal (another tag) is refused: nothing
 * routes it.
 */
static bool
literal_valid(const char *s, size_t len)
{
	char tmp[INET6_ADDRSTRLEN + 8];
	unsigned char addr[sizeof(struct in6_addr)];
	size_t n;

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	n = len - 2;
	if (n >= sizeof(tmp))
		return false;
	memcpy(tmp, s + 1, n);
	tmp[n] = '\0';
	if (n > 5 && eqi_n(tmp, "IPv6:", 5))
		return inet_pton(AF_INET6, tmp + 5, addr) == 1;
	return inet_pton(AF_INET, tmp, addr) == 1;
}

/*
 * A domain (RFC 5321 §4.1.2): sub-domains of letters, digits and inner
 * hyphens, or U-labels under SMTPUTF8. Consumes [A-Za-z0-9.-] and
 * non-ASCII bytes; the caller validates the result as a whole.
 */
static void
take_domain(const char **sp, struct smtp_path *path, bool *bad_utf8)
{
	const char *s = *sp;

	for (;;) {
		unsigned char c = (unsigned char)*s;

		if (is_alpha(c) || is_digit(c) || c == '-' || c == '.')
			s++;
		else if (c >= 0x80)
			take_nonascii(&s, path, bad_utf8);
		else
			break;
	}
	*sp = s;
}

/*
 * Parses a Reverse-path or Forward-path at *sp (RFC 5321 §4.1.2):
 *   Path = "<" [ A-d-l ":" ] Mailbox ">", Mailbox = Local-part "@"
 *   ( Domain / address-literal ), or "<>" (MAIL only), or "<Postmaster>"
 *   (RCPT only, §4.1.1.3).
 * Syntax only: UTF-8 policy and domain canonicalization come later,
 * once the SMTPUTF8 parameter is known. On success *sp points after ">".
 */
static int
parse_path(struct osp_pool *pool, const char **sp, bool rcpt,
    struct smtp_path *path, bool *bad_utf8, const char **reply_r)
{
	const struct path_replies *r = rcpt ? &rcpt_replies : &mail_replies;
	const char *start = *sp, *s = *sp, *lp, *dom;
	char *local;
	size_t n;

	if (*s != '<') {
		*reply_r = r->syntax;
		return OSP_EPERM;
	}
	s++;
	if (*s == '>') {
		if (rcpt) {
			*reply_r = "501 5.1.3 Empty recipient address";
			return OSP_EPERM;
		}
		path->null = true;
		*sp = s + 1;
		return OSP_OK;
	}

	/* A-d-l (source route, §4.1.2 and Appendix C): accepted and
	 * dropped, as §3.3 tells servers to do. */
	if (*s == '@') {
		for (;;) {
			const char *d;

			s++;		/* '@' */
			d = s;
			take_domain(&s, path, bad_utf8);
			if (s == d) {
				*reply_r = r->address;
				return OSP_EPERM;
			}
			if (*s == ',' && s[1] == '@') {
				s++;
				continue;
			}
			if (*s != ':') {
				*reply_r = r->address;
				return OSP_EPERM;
			}
			s++;
			break;
		}
	}

	/* Local-part = Dot-string / Quoted-string. The Dot-string is taken
	 * leniently (leading, trailing or doubled dots, as some mobile
	 * carriers' addresses have): such a localpart is kept and quoted in
	 * `address`, which is then an exact rendering of what was sent. */
	lp = s;
	if (*s == '"') {
		struct osp_buf b = { 0 };

		s++;
		for (;;) {
			unsigned char c = (unsigned char)*s;

			if (c == '"')
				break;
			if (c == '\\') {
				c = (unsigned char)s[1];
				if (c < 32 || c > 126) {
					osp_buf_deinit(&b);
					*reply_r = r->address;
					return OSP_EPERM;
				}
				osp_buf_append(&b, s + 1, 1);
				s += 2;
			} else if (is_qtext(c)) {
				osp_buf_append(&b, s, 1);
				s++;
			} else if (c >= 0x80) {
				const char *u = s;

				take_nonascii(&s, path, bad_utf8);
				osp_buf_append(&b, u, (size_t)(s - u));
			} else {
				/* NUL (end of line), controls */
				osp_buf_deinit(&b);
				*reply_r = r->address;
				return OSP_EPERM;
			}
		}
		s++;
		local = osp_pstrndup(pool, b.len > 0 ? b.data :
		    "", b.len);
		osp_buf_deinit(&b);
	} else {
		while (is_atext((unsigned char)*s) || *s == '.' ||
		    (unsigned char)*s >= 0x80) {
			if ((unsigned char)*s >= 0x80)
				take_nonascii(&s, path, bad_utf8);
			else
				s++;
		}
		if (s == lp) {
			*reply_r = r->address;
			return OSP_EPERM;
		}
		local = osp_pstrndup(pool, lp, (size_t)(s - lp));
	}

	if (*s == '>' && rcpt && *lp != '"' && start[1] != '@' &&
	    osp_str_eqi(local, "postmaster")) {
		/* RFC 5321 §4.1.1.3: "Postmaster" without a domain is
		 * valid in RCPT and means this server's postmaster; the
		 * session resolves it to its primary domain. */
		path->localpart = "postmaster";
		path->domain = "";
		*sp = s + 1;
		return OSP_OK;
	}
	if (*s != '@') {
		*reply_r = r->address;
		return OSP_EPERM;
	}
	s++;
	dom = s;
	if (*s == '[') {
		const char *e = strchr(s, ']');

		if (e == NULL) {
			*reply_r = r->literal;
			return OSP_EPERM;
		}
		if (!literal_valid(s, (size_t)(e - s) + 1)) {
			*reply_r = r->literal;
			return OSP_EPERM;
		}
		s = e + 1;
	} else {
		take_domain(&s, path, bad_utf8);
		if (s == dom) {
			*reply_r = r->domain;
			return OSP_EPERM;
		}
	}
	if (*s != '>') {
		*reply_r = r->address;
		return OSP_EPERM;
	}
	n = (size_t)(s - dom);
	if (n > DOMAIN_MAX_OCTETS) {
		*reply_r = r->too_long;
		return OSP_EPERM;
	}
	s++;
	if ((size_t)(s - start) > PATH_MAX_OCTETS) {
		*reply_r = r->too_long;
		return OSP_EPERM;
	}
	path->localpart = local;
	path->domain = osp_pstrndup(pool, dom, n);
	*sp = s;
	return OSP_OK;
}

/*
 * Second half of a path: checks the UTF-8 policy (RFC 6531 §3.3) and
 * builds `address` with the domain canonical (lower-case A-label; address
 * literals as sent).
 */
static int
finish_path(struct osp_pool *pool, struct smtp_path *path, bool rcpt,
    bool bad_utf8, bool smtputf8, const char **reply_r)
{
	const struct path_replies *r = rcpt ? &rcpt_replies : &mail_replies;
	const char *dom, *canon;
	char *lower;
	size_t i;

	if (path->null) {
		path->localpart = path->domain = path->address = "";
		return OSP_OK;
	}
	if (path->utf8 && !smtputf8) {
		*reply_r = reply_need_utf8;
		return OSP_EPERM;
	}
	if (bad_utf8) {
		*reply_r = r->utf8_bad;
		return OSP_EPERM;
	}
	dom = path->domain;
	if (*dom == '\0') {
		/* <Postmaster> */
		path->address = path->localpart;
		return OSP_OK;
	}
	if (*dom == '[')
		canon = dom;
	else {
		bool ascii = true;

		for (i = 0; dom[i] != '\0'; i++)
			if ((unsigned char)dom[i] >= 0x80)
				ascii = false;
		if (ascii) {
			lower = osp_pstrdup(pool, dom);
			for (i = 0; lower[i] != '\0'; i++)
				lower[i] = ascii_lower(lower[i]);
			if (!osp_str_is_hostname(lower)) {
				*reply_r = r->domain;
				return OSP_EPERM;
			}
			canon = lower;
		} else if (osp_idna_to_ascii(pool, dom, &canon) != OSP_OK) {
			*reply_r = r->idn;
			return OSP_EPERM;
		}
	}
	path->address = osp_psprintf(pool, "%s@%s",
	    localpart_quote(pool, path->localpart), canon);
	return OSP_OK;
}

char *
smtp_xtext_decode(struct osp_pool *pool, const char *s)
{
	size_t len = strlen(s), i, j;
	char *out = osp_palloc(pool, len + 1);

	/* RFC 3461 §4: xchar is "!".."~" but "+" and "="; hexchar is "+"
	 * and two upper-case hex digits (lower case accepted). A decoded
	 * NUL cannot be represented and is refused. */
	for (i = j = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '+') {
			int hi, lo;

			if (i + 2 >= len)
				return NULL;
			hi = osp_str_hexval(s[i + 1]);
			lo = hi < 0 ? -1 : osp_str_hexval(s[i + 2]);
			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
				return NULL;
			out[j++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (c >= 33 && c <= 126 && c != '=')
			out[j++] = (char)c;
		else
			return NULL;
	}
	out[j] = '\0';
	return out;
}

/* Appends code point cp as UTF-8; false for surrogates, > U+10FFFF and
 * control characters (C0, DEL, C1: the value ends up in headers). */
static bool
utf8_put(struct osp_buf *b, unsigned long cp)
{
	unsigned char u[4];
	size_t n;

	if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp > 0x10ffff ||
	    (cp >= 0xd800 && cp <= 0xdfff))
		return false;
	if (cp < 0x80) {
		u[0] = (unsigned char)cp;
		n = 1;
	} else if (cp < 0x800) {
		u[0] = (unsigned char)(0xc0 | cp >> 6);
		u[1] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 2;
	} else if (cp < 0x10000) {
		u[0] = (unsigned char)(0xe0 | cp >> 12);
		u[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 3;
	} else {
		u[0] = (unsigned char)(0xf0 | cp >> 18);
		u[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3f));
		u[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3f));
		u[3] = (unsigned char)(0x80 | (cp & 0x3f));
		n = 4;
	}
	osp_buf_append(b, u, n);
	return true;
}

/*
 * RFC 6533 §3 utf-8-addr-xtext / utf-8-addr-unitext: QCHAR (printable
 * ASCII but "+", "=" and "\"), "\x{HEX}" for any code point, and raw
 * UTF-8 (unitext) only when SMTPUTF8 applies. NULL when malformed.
 */
static char *
utf8_addr_decode(struct osp_pool *pool, const char *s, bool smtputf8)
{
	struct osp_buf b = { 0 };
	char *out;

	while (*s != '\0') {
		unsigned char c = (unsigned char)*s;

		if (c == '\\') {
			unsigned long cp = 0;
			size_t n = 0;

			if (s[1] != 'x' || s[2] != '{')
				goto bad;
			for (s += 3; *s != '}'; s++, n++) {
				int v = osp_str_hexval(*s);

				if (v < 0 || n >= 6)
					goto bad;
				cp = cp << 4 | (unsigned long)v;
			}
			if (n == 0 || !utf8_put(&b, cp))
				goto bad;
			s++;
		} else if (c >= 0x21 && c <= 0x7e && c != '+' && c != '=') {
			osp_buf_append(&b, s, 1);
			s++;
		} else if (c >= 0x80 && smtputf8) {
			size_t n = osp_utf8_decode(s, SIZE_MAX, NULL);

			/* C1 controls (U+0080..U+009F) as for \x{} */
			if (n == 0 || (c == 0xc2 && (unsigned char)s[1] < 0xa0))
				goto bad;
			osp_buf_append(&b, s, n);
			s += n;
		} else
			goto bad;
	}
	if (b.len == 0)
		goto bad;
	out = osp_pstrndup(pool, b.data, b.len);
	osp_buf_deinit(&b);
	return out;
bad:
	osp_buf_deinit(&b);
	return NULL;
}

/* A decoded value is printable ASCII (RFC 3461 §4.4 for ENVID; AUTH=
 * mailboxes are addr-spec, RFC 4954 §5). */
static bool
printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
			return false;
	return true;
}

/* One parsed "keyword[=value]" (RFC 5321 §4.1.2 esmtp-param). */
struct param {
	char		*key;
	char		*value;		/* NULL without "=" */
};

/*
 * Splits the text after a path into parameters. They are separated by
 * spaces (several tolerated, and trailing ones); esmtp-keyword =
 * (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"), esmtp-value = 1*(%d33-60 /
 * %d62-126), extended with UTF-8 by RFC 6531 §3.3 when allowed. Returns
 * the number of parameters, or -1 on a syntax error.
 */
static int
split_params(struct osp_pool *pool, const char *s, bool utf8,
    struct param *p, int max)
{
	char *copy, *t;
	int n = 0;

	if (*s != '\0' && *s != ' ')
		return -1;
	copy = osp_pstrdup(pool, s);
	t = copy;
	for (;;) {
		char *k;

		while (*t == ' ')
			t++;
		if (*t == '\0')
			break;
		if (n == max)
			return -1;
		k = t;
		if (!is_alpha((unsigned char)*t) &&
		    !is_digit((unsigned char)*t))
			return -1;
		while (is_alpha((unsigned char)*t) ||
		    is_digit((unsigned char)*t) || *t == '-')
			t++;
		p[n].key = k;
		p[n].value = NULL;
		if (*t == '=') {
			*t++ = '\0';
			p[n].value = t;
			while (*t != ' ' && *t != '\0') {
				unsigned char c = (unsigned char)*t;

				if (c >= 0x80 && utf8) {
					size_t m = osp_utf8_decode(t,
					    SIZE_MAX, NULL);

					if (m == 0)
						return -1;
					t += m;
					continue;
				}
				if (c < 33 || c > 126 || c == '=')
					return -1;
				t++;
			}
			if (t == p[n].value)
				return -1;
		}
		if (*t == ' ')
			*t++ = '\0';
		else if (*t != '\0')
			return -1;
		n++;
	}
	return n;
}

#define MAX_PARAMS	16

static const char reply_param_syntax[] =
    "501 5.5.4 Syntax error in parameters";
static const char reply_param_dup[] = "501 5.5.4 Duplicate parameter";
static const char reply_param_unknown[] =
    "555 5.5.4 Unsupported parameter (RFC 5321 4.1.1.11)";

int
smtp_parse_mail(struct osp_pool *pool, const char *args, uint32_t ext,
    struct smtp_path *path_r, struct smtp_mail_params *params_r,
    const char **reply_r)
{
	struct param p[MAX_PARAMS];
	const char *s = args;
	bool bad_utf8 = false;
	uint32_t seen = 0;
	int n, i, rc;

	memset(path_r, 0, sizeof(*path_r));
	memset(params_r, 0, sizeof(*params_r));
	*reply_r = NULL;
	if ((rc = parse_path(pool, &s, false, path_r, &bad_utf8, reply_r)) !=
	    OSP_OK)
		return rc;
	if ((n = split_params(pool, s, false, p, MAX_PARAMS)) < 0) {
		*reply_r = reply_param_syntax;
		return OSP_EPERM;
	}
	for (i = 0; i < n; i++) {
		const char *k = p[i].key, *v = p[i].value;
		uint32_t bit;

		if (osp_str_eqi(k, "SIZE") && (ext & SMTP_EXT_SIZE)) {
			/* RFC 1870 §6: SIZE=1*20DIGIT; larger than any
			 * limit clamps (the session refuses with 552). */
			bit = 0x01;
			if (v == NULL || strlen(v) > SIZE_MAX_DIGITS ||
			    strspn(v, "0123456789") != strlen(v))
				goto syntax;
			if (osp_str_to_u64(v, UINT64_MAX, &params_r->size) !=
			    OSP_OK)
				params_r->size = UINT64_MAX;
			params_r->has_size = true;
		} else if (osp_str_eqi(k, "BODY") &&
		    (ext & (SMTP_EXT_8BITMIME | SMTP_EXT_BINARYMIME))) {
			/* RFC 6152 §3, RFC 3030 §3 */
			bit = 0x02;
			if (v == NULL)
				goto syntax;
			if (osp_str_eqi(v, "7BIT"))
				params_r->body = SMTP_BODY_7BIT;
			else if (osp_str_eqi(v, "8BITMIME"))
				params_r->body = SMTP_BODY_8BITMIME;
			else if (osp_str_eqi(v, "BINARYMIME")) {
				if (!(ext & SMTP_EXT_BINARYMIME)) {
					*reply_r = "555 5.5.4 BODY=BINARYMIME "
					    "not supported";
					return OSP_EPERM;
				}
				params_r->body = SMTP_BODY_BINARYMIME;
			} else {
				*reply_r = "501 5.5.4 Unknown BODY type";
				return OSP_EPERM;
			}
		} else if (osp_str_eqi(k, "SMTPUTF8") &&
		    (ext & SMTP_EXT_SMTPUTF8)) {
			/* RFC 6531 §3.4: no value */
			bit = 0x04;
			if (v != NULL)
				goto syntax;
			params_r->smtputf8 = true;
		} else if (osp_str_eqi(k, "REQUIRETLS") &&
		    (ext & SMTP_EXT_REQUIRETLS)) {
			/* RFC 8689 §4.1: no value */
			bit = 0x08;
			if (v != NULL)
				goto syntax;
			params_r->requiretls = true;
		} else if (osp_str_eqi(k, "RET") && (ext & SMTP_EXT_DSN)) {
			/* RFC 3461 §4.3 */
			bit = 0x10;
			if (v != NULL && osp_str_eqi(v, "FULL"))
				params_r->ret = SMTP_RET_FULL;
			else if (v != NULL && osp_str_eqi(v, "HDRS"))
				params_r->ret = SMTP_RET_HDRS;
			else {
				*reply_r = "501 5.5.4 RET must be FULL or HDRS";
				return OSP_EPERM;
			}
		} else if (osp_str_eqi(k, "ENVID") && (ext & SMTP_EXT_DSN)) {
			/* RFC 3461 §4.4: xtext, at most 100 characters,
			 * printable ASCII once decoded. */
			bit = 0x20;
			if (v == NULL ||
			    (params_r->envid = smtp_xtext_decode(pool, v)) ==
			    NULL || strlen(params_r->envid) > ENVID_MAX ||
			    !printable(params_r->envid)) {
				*reply_r = "501 5.5.4 Malformed ENVID "
				    "(xtext, 100 characters at most)";
				return OSP_EPERM;
			}
		} else if (osp_str_eqi(k, "AUTH") && (ext & SMTP_EXT_AUTH)) {
			/* RFC 4954 §5: AUTH=xtext mailbox, or "<>" */
			bit = 0x40;
			if (v == NULL ||
			    (params_r->auth = smtp_xtext_decode(pool, v)) ==
			    NULL || *params_r->auth == '\0' ||
			    !printable(params_r->auth)) {
				*reply_r = "501 5.5.4 Malformed AUTH parameter";
				return OSP_EPERM;
			}
		} else {
			*reply_r = reply_param_unknown;
			return OSP_EPERM;
		}
		if (seen & bit) {
			*reply_r = reply_param_dup;
			return OSP_EPERM;
		}
		seen |= bit;
	}
	/* RFC 6531 §3.4: UTF-8 in the reverse path needs SMTPUTF8 on the
	 * same command. */
	return finish_path(pool, path_r, false, bad_utf8, params_r->smtputf8,
	    reply_r);
syntax:
	*reply_r = reply_param_syntax;
	return OSP_EPERM;
}

/* NOTIFY=NEVER / 1#(SUCCESS / FAILURE / DELAY), RFC 3461 §4.1. */
static bool
parse_notify(const char *v, uint32_t *notify)
{
	const char *e;
	uint32_t bit;

	*notify = 0;
	for (;;) {
		size_t n;

		e = strchr(v, ',');
		n = e != NULL ? (size_t)(e - v) : strlen(v);
		if (n == 5 && eqi_n(v, "NEVER", 5))
			bit = SMTP_NOTIFY_NEVER;
		else if (n == 7 && eqi_n(v, "SUCCESS", 7))
			bit = SMTP_NOTIFY_SUCCESS;
		else if (n == 7 && eqi_n(v, "FAILURE", 7))
			bit = SMTP_NOTIFY_FAILURE;
		else if (n == 5 && eqi_n(v, "DELAY", 5))
			bit = SMTP_NOTIFY_DELAY;
		else
			return false;
		*notify |= bit;
		if (e == NULL)
			break;
		v = e + 1;
	}
	/* NEVER must appear alone. */
	return !((*notify & SMTP_NOTIFY_NEVER) && *notify != SMTP_NOTIFY_NEVER);
}

int
smtp_parse_rcpt(struct osp_pool *pool, const char *args, uint32_t ext,
    bool smtputf8, struct smtp_path *path_r,
    struct smtp_rcpt_params *params_r, const char **reply_r)
{
	struct param p[MAX_PARAMS];
	const char *s = args;
	bool bad_utf8 = false;
	uint32_t seen = 0;
	int n, i, rc;

	memset(path_r, 0, sizeof(*path_r));
	memset(params_r, 0, sizeof(*params_r));
	*reply_r = NULL;
	if ((rc = parse_path(pool, &s, true, path_r, &bad_utf8, reply_r)) !=
	    OSP_OK)
		return rc;
	if ((rc = finish_path(pool, path_r, true, bad_utf8, smtputf8,
	    reply_r)) != OSP_OK)
		return rc;
	/* RFC 6531 §3.3 extends esmtp-value with UTF-8 (ORCPT utf-8). */
	if ((n = split_params(pool, s, smtputf8, p, MAX_PARAMS)) < 0) {
		*reply_r = reply_param_syntax;
		return OSP_EPERM;
	}
	for (i = 0; i < n; i++) {
		const char *k = p[i].key;
		char *v = p[i].value;
		uint32_t bit;

		if (osp_str_eqi(k, "NOTIFY") && (ext & SMTP_EXT_DSN)) {
			bit = 0x01;
			if (v == NULL || !parse_notify(v, &params_r->notify)) {
				*reply_r = "501 5.5.4 NOTIFY must be NEVER or "
				    "a list of SUCCESS, FAILURE, DELAY";
				return OSP_EPERM;
			}
		} else if (osp_str_eqi(k, "ORCPT") && (ext & SMTP_EXT_DSN)) {
			/* RFC 3461 §4.2: addr-type ";" xtext; RFC 6533
			 * §3: utf-8 type with its own encoding. */
			char *semi = v != NULL ? strchr(v, ';') : NULL;

			bit = 0x02;
			if (semi == NULL)
				goto orcpt_bad;
			*semi = '\0';
			if (osp_str_eqi(v, "rfc822")) {
				params_r->orcpt_type = "rfc822";
				params_r->orcpt = smtp_xtext_decode(pool,
				    semi + 1);
			} else if (osp_str_eqi(v, "utf-8")) {
				params_r->orcpt_type = "utf-8";
				params_r->orcpt = utf8_addr_decode(pool,
				    semi + 1, smtputf8);
			} else {
				*reply_r = "555 5.5.4 ORCPT address type not "
				    "supported (rfc822, utf-8)";
				return OSP_EPERM;
			}
			/* Printable only: DSNs quote it in headers. */
			if (params_r->orcpt == NULL ||
			    *params_r->orcpt == '\0' ||
			    (*params_r->orcpt_type == 'r' &&
			    !printable(params_r->orcpt)))
				goto orcpt_bad;
		} else {
			*reply_r = reply_param_unknown;
			return OSP_EPERM;
		}
		if (seen & bit) {
			*reply_r = reply_param_dup;
			return OSP_EPERM;
		}
		seen |= bit;
	}
	return OSP_OK;
orcpt_bad:
	*reply_r = "501 5.5.4 Malformed ORCPT parameter";
	return OSP_EPERM;
}

enum smtp_verb
smtp_parse_verb(const char *line, const char **args_r)
{
	size_t n = strcspn(line, " "), i;

	for (i = 0; i < sizeof(smtp_verbs) / sizeof(smtp_verbs[0]); i++) {
		const struct smtp_verb_def *v = &smtp_verbs[i];

		if (n != v->len || !eqi_n(line, v->name, n))
			continue;
		if (v->verb == SMTP_CMD_MAIL || v->verb == SMTP_CMD_RCPT) {
			/* RFC 5321 §4.1.1.2: "MAIL FROM:" and "RCPT TO:"
			 * are one keyword. A space after the colon is not
			 * in the grammar but common, and tolerated. Without
			 * the keyword the parse function gets "" and
			 * answers with the syntax. */
			const char *kw = v->verb == SMTP_CMD_MAIL ? " FROM:" :
			    " TO:";
			size_t kl = strlen(kw);

			if (strlen(line + n) >= kl && eqi_n(line + n, kw, kl))
				*args_r = skip_sp(line + n + kl);
			else
				*args_r = "";
			return v->verb;
		}
		*args_r = skip_sp(line + n);
		return v->verb;
	}
	*args_r = line;
	return SMTP_CMD_UNKNOWN;
}

/* Host name of a HELO/EHLO: labels of letters, digits, hyphens and (as
 * Windows host names have them) underscores, one trailing dot allowed. */
static bool
helo_name_valid(const char *s, size_t len)
{
	size_t i, label = 0;

	if (len == 0 || len > DOMAIN_MAX_OCTETS)
		return false;
	if (s[len - 1] == '.')
		len--;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (is_alpha(c) || is_digit(c) || c == '-' ||
		    c == '_') {
			if (++label > 63)
				return false;
		} else
			return false;
	}
	return label > 0;
}

int
smtp_parse_helo(struct osp_pool *pool, const char *args, bool ehlo,
    const char **name_r, const char **reply_r)
{
	const char *s = skip_sp(args);
	size_t len = strlen(s);

	*name_r = NULL;
	/* Trailing spaces are tolerated; anything else after the name is
	 * not (RFC 5321 §4.1.1.1: one Domain or address-literal). */
	while (len > 0 && s[len - 1] == ' ')
		len--;
	if (len == 0 || memchr(s, ' ', len) != NULL) {
		*reply_r = ehlo ? "501 5.5.4 Syntax: EHLO hostname" :
		    "501 5.5.4 Syntax: HELO hostname";
		return OSP_EPERM;
	}
	if (s[0] == '[' ? !literal_valid(s, len) : !helo_name_valid(s, len)) {
		*reply_r = ehlo ? "501 5.5.4 Invalid EHLO hostname or address "
		    "literal" : "501 5.5.4 Invalid HELO hostname or address "
		    "literal";
		return OSP_EPERM;
	}
	*name_r = osp_pstrndup(pool, s, len);
	return OSP_OK;
}

int
smtp_parse_bdat(const char *args, uint64_t *size_r, bool *last_r,
    const char **reply_r)
{
	const char *s = skip_sp(args);
	char num[SIZE_MAX_DIGITS + 1];
	size_t n = strspn(s, "0123456789");

	*size_r = 0;
	*last_r = false;
	/* RFC 3030 §2: bdat-cmd ::= "BDAT" SP chunk-size [ SP end-marker ] */
	if (n == 0 || n > SIZE_MAX_DIGITS)
		goto syntax;
	memcpy(num, s, n);
	num[n] = '\0';
	if (osp_str_to_u64(num, UINT64_MAX, size_r) != OSP_OK)
		goto syntax;
	s += n;
	if (*s != ' ' && *s != '\0')
		goto syntax;
	s = skip_sp(s);
	if (strlen(s) >= 4 && eqi_n(s, "LAST", 4)) {
		*last_r = true;
		s = skip_sp(s + 4);
	}
	if (*s != '\0')
		goto syntax;
	return OSP_OK;
syntax:
	*size_r = 0;
	*last_r = false;
	*reply_r = "501 5.5.4 Syntax: BDAT chunk-size [LAST]";
	return OSP_EPERM;
}

/* Whether s is base64 (RFC 4648 §4) with correct padding, or "=". */
static bool
base64_valid(const char *s)
{
	size_t len = strlen(s), i, pad = 0;

	if (len == 1 && s[0] == '=')
		return true;
	if (len == 0 || len % 4 != 0)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '=') {
			if (i < len - 2)
				return false;
			pad++;
		} else if (pad > 0 || !(is_alpha(c) || is_digit(c) ||
		    c == '+' || c == '/'))
			return false;
	}
	return true;
}

int
smtp_parse_auth(struct osp_pool *pool, const char *args,
    const char **mech_r, const char **initial_r, const char **reply_r)
{
	const char *s = skip_sp(args), *ir;
	size_t n, i;
	char *mech;

	*mech_r = *initial_r = NULL;
	/* RFC 4422 §3.1: mechanism names are 1-20 of A-Z, 0-9, "-", "_"
	 * (compared case-insensitively here, returned upper-case). */
	for (n = 0; is_alpha((unsigned char)s[n]) ||
	    is_digit((unsigned char)s[n]) || s[n] == '-' || s[n] == '_'; n++)
		;
	if (n == 0 || n > 20 || (s[n] != ' ' && s[n] != '\0')) {
		*reply_r = "501 5.5.4 Syntax: AUTH mechanism "
		    "[initial-response]";
		return OSP_EPERM;
	}
	mech = osp_pstrndup(pool, s, n);
	for (i = 0; i < n; i++)
		mech[i] = ascii_upper(mech[i]);
	ir = skip_sp(s + n);
	if (*ir != '\0') {
		size_t len = strlen(ir);

		while (len > 0 && ir[len - 1] == ' ')
			len--;
		ir = osp_pstrndup(pool, ir, len);
		/* RFC 4954 §4: a response that is not base64 gets 501. */
		if (!base64_valid(ir)) {
			*reply_r = "501 5.5.2 Invalid base64 in initial "
			    "response";
			return OSP_EPERM;
		}
		*initial_r = ir;
	}
	*mech_r = mech;
	return OSP_OK;
}
