/* SPDX-License-Identifier: ISC */
/* IMAP mailbox names: the modified UTF-7 codec of RFC 3501 §5.1.3 for
 * IMAP4rev1 clients, and the UTF-8 name rules of RFC 9051 §5.1. */
#include "config.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "imap.h"

/*
 * Modified base64 (RFC 3501 §5.1.3) uses ',' where RFC 2045 has '/' and
 * never pads. The core decoder (osp_base64_decode) is made for message
 * bodies: it skips characters outside its alphabet and stops at '=',
 * so it cannot tell a canonical name from garbage; the decoder here is
 * our own, strict one. The encoder reuses osp_base64_encode() and maps
 * its output to this alphabet.
 */
static int
mb64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

static int
fail(const char **error_r, const char *reason)
{
	if (error_r != NULL)
		*error_r = reason;
	return -EINVAL;
}

static void
put_utf8(struct osp_buf *out, uint32_t cp)
{
	char b[4];
	size_t n;

	if (cp < 0x80) {
		b[0] = cp;
		n = 1;
	} else if (cp < 0x800) {
		b[0] = 0xc0 | (cp >> 6);
		b[1] = 0x80 | (cp & 0x3f);
		n = 2;
	} else if (cp < 0x10000) {
		b[0] = 0xe0 | (cp >> 12);
		b[1] = 0x80 | ((cp >> 6) & 0x3f);
		b[2] = 0x80 | (cp & 0x3f);
		n = 3;
	} else {
		b[0] = 0xf0 | (cp >> 18);
		b[1] = 0x80 | ((cp >> 12) & 0x3f);
		b[2] = 0x80 | ((cp >> 6) & 0x3f);
		b[3] = 0x80 | (cp & 0x3f);
		n = 4;
	}
	osp_buf_append(out, b, n);
}

/*
 * Reads one UTF-8 sequence at s (NUL-terminated) into *cp_r and returns
 * its length, or 0 with *reason_r set (RFC 3629 §3-4: no overlong forms,
 * no surrogates, nothing above U+10FFFF).
 */
static size_t
utf8_next(const unsigned char *s, uint32_t *cp_r, const char **reason_r)
{
	unsigned char c = s[0];
	size_t n, i;
	uint32_t cp;

	if (c < 0x80) {
		*cp_r = c;
		return 1;
	}
	if (c >= 0xc0 && c <= 0xdf) {
		n = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf7) {
		n = 3;
		cp = c & 0x07;
	} else {
		*reason_r = "invalid UTF-8 lead byte";
		return 0;
	}
	for (i = 1; i <= n; i++) {
		/* a NUL here fails the test too: no reading past the end */
		if ((s[i] & 0xc0) != 0x80) {
			*reason_r = "truncated UTF-8 sequence";
			return 0;
		}
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
	    (n == 3 && cp < 0x10000)) {
		*reason_r = "overlong UTF-8 sequence";
		return 0;
	}
	if (cp >= 0xd800 && cp <= 0xdfff) {
		*reason_r = "UTF-16 surrogate in UTF-8";
		return 0;
	}
	if (cp > 0x10ffff) {
		*reason_r = "code point beyond U+10FFFF";
		return 0;
	}
	*cp_r = cp;
	return n + 1;
}

int
imap_mailbox_from_mutf7(struct osp_pool *pool, const char *in,
    const char **utf8_r, const char **error_r)
{
	const unsigned char *p = (const unsigned char *)in;
	struct osp_buf out = { 0 };
	const char *reason = NULL;
	bool after_shift = false;

	while (*p != '\0' && reason == NULL) {
		uint32_t acc = 0, hi = 0;
		unsigned nbits = 0, units = 0;
		int v;

		if (*p >= 0x80) {
			reason = "8-bit byte in modified UTF-7 name";
			break;
		}
		/* §5.1.3: only printable US-ASCII represents itself */
		if (*p < 0x20 || *p == 0x7f) {
			reason = "control character in modified UTF-7 name";
			break;
		}
		if (*p != '&') {
			osp_buf_putc(&out, *p++);
			after_shift = false;
			continue;
		}
		p++;
		if (*p == '-') {
			/* "&-" is '&' */
			osp_buf_putc(&out, '&');
			p++;
			after_shift = false;
			continue;
		}
		/*
		 * Two shifts with nothing between them would be one shift
		 * in the encoder's output; accepting both spellings would
		 * give one mailbox two names.
		 */
		if (*p == '\0') {
			reason = "unterminated modified base64 shift";
			break;
		}
		if (after_shift) {
			reason = "adjacent modified base64 shifts";
			break;
		}
		for (; *p != '-'; p++) {
			if (*p == '\0') {
				reason = "unterminated modified base64 shift";
				break;
			}
			if ((v = mb64_value(*p)) < 0) {
				reason = "invalid character in modified "
				    "base64";
				break;
			}
			acc = (acc << 6) | v;
			nbits += 6;
			if (nbits < 16)
				continue;
			nbits -= 16;
			{
				uint32_t u = (acc >> nbits) & 0xffff;

				acc &= (1u << nbits) - 1;
				units++;
				if (hi != 0) {
					if (u < 0xdc00 || u > 0xdfff) {
						reason = "unpaired UTF-16 "
						    "surrogate";
						break;
					}
					put_utf8(&out, 0x10000 +
					    ((hi - 0xd800) << 10) +
					    (u - 0xdc00));
					hi = 0;
				} else if (u >= 0xd800 && u <= 0xdbff) {
					hi = u;
				} else if (u >= 0xdc00 && u <= 0xdfff) {
					reason = "unpaired UTF-16 surrogate";
					break;
				} else if (u == 0) {
					reason = "modified base64 encodes NUL";
					break;
				} else if (u >= 0x20 && u <= 0x7e) {
					/* §5.1.3: must be sent directly */
					reason = "modified base64 encodes "
					    "printable US-ASCII";
					break;
				} else
					put_utf8(&out, u);
			}
		}
		if (reason != NULL)
			break;
		/* *p == '-' */
		p++;
		if (units == 0 || nbits >= 6)
			reason = "incomplete UTF-16 unit in modified base64";
		else if (acc != 0)
			reason = "non-zero leftover bits in modified base64";
		else if (hi != 0)
			reason = "unpaired UTF-16 surrogate";
		after_shift = true;
	}
	if (reason != NULL) {
		osp_buf_deinit(&out);
		return fail(error_r, reason);
	}
	*utf8_r = osp_pstrndup(pool, out.data != NULL ? out.data : "",
	    out.len);
	osp_buf_deinit(&out);
	return OSP_OK;
}

/* Appends the UTF-16BE bytes in units as one shift: "&" base64 "-". */
static void
put_shift(struct osp_buf *out, const struct osp_buf *units)
{
	struct osp_buf b64 = { 0 };
	size_t i;

	osp_base64_encode(units->data, units->len, &b64);
	osp_buf_putc(out, '&');
	for (i = 0; i < b64.len; i++) {
		if (b64.data[i] == '=')
			break;		/* §5.1.3: no padding */
		osp_buf_putc(out, b64.data[i] == '/' ? ',' : b64.data[i]);
	}
	osp_buf_putc(out, '-');
	osp_buf_deinit(&b64);
}

static void
put_utf16be(struct osp_buf *b, uint32_t u)
{
	char be[2] = { (char)(u >> 8), (char)(u & 0xff) };

	osp_buf_append(b, be, 2);
}

int
imap_mailbox_to_mutf7(struct osp_pool *pool, const char *utf8,
    const char **mutf7_r, const char **error_r)
{
	const unsigned char *p = (const unsigned char *)utf8;
	struct osp_buf out = { 0 }, units = { 0 };
	const char *reason = NULL;

	while (*p != '\0') {
		uint32_t cp;
		size_t n;

		if ((n = utf8_next(p, &cp, &reason)) == 0)
			break;
		p += n;
		if (cp >= 0x20 && cp <= 0x7e) {
			if (units.len > 0) {
				put_shift(&out, &units);
				osp_buf_reset(&units);
			}
			if (cp == '&')
				osp_buf_puts(&out, "&-");
			else
				osp_buf_putc(&out, cp);
			continue;
		}
		/* control characters too: only printables go direct */
		if (cp >= 0x10000) {
			cp -= 0x10000;
			put_utf16be(&units, 0xd800 + (cp >> 10));
			put_utf16be(&units, 0xdc00 + (cp & 0x3ff));
		} else
			put_utf16be(&units, cp);
	}
	if (reason == NULL && units.len > 0)
		put_shift(&out, &units);
	osp_buf_deinit(&units);
	if (reason != NULL) {
		osp_buf_deinit(&out);
		return fail(error_r, reason);
	}
	*mutf7_r = osp_pstrndup(pool, out.data != NULL ? out.data : "",
	    out.len);
	osp_buf_deinit(&out);
	return OSP_OK;
}

int
imap_mailbox_valid_utf8(const char *name, const char **error_r)
{
	const unsigned char *p = (const unsigned char *)name;
	const char *reason = NULL;
	size_t len = strlen(name);

	if (len == 0)
		return fail(error_r, "empty mailbox name");
	if (len > IMAP_MAILBOX_NAME_MAX)
		return fail(error_r, "mailbox name too long");
	if (name[0] == OSP_MBOX_SEP)
		return fail(error_r, "mailbox name starts with '/'");
	if (name[len - 1] == OSP_MBOX_SEP)
		return fail(error_r, "mailbox name ends with '/'");
	while (*p != '\0') {
		uint32_t cp;
		size_t n;

		if ((n = utf8_next(p, &cp, &reason)) == 0)
			return fail(error_r, reason);
		/* RFC 5198 §2: no C0, DEL or C1 controls */
		if (cp < 0x20 || (cp >= 0x7f && cp <= 0x9f))
			return fail(error_r, "control character in mailbox "
			    "name");
		if (cp == OSP_MBOX_SEP && p[1] == OSP_MBOX_SEP)
			return fail(error_r, "empty level in mailbox name");
		p += n;
	}
	return OSP_OK;
}
