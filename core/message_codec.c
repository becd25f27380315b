/* SPDX-License-Identifier: ISC */
/* Content decoders for messages: base64 and quoted-printable (RFC 2045),
 * charset conversion to UTF-8 (iconv), RFC 2047 encoded words, and the
 * HTML-to-text step of the preview. */
#include "core.h"

#include <errno.h>
#include <iconv.h>
#include <string.h>

#include "message_int.h"

#define EW_MAX	4096

static const char b64chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
codec_b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

void
osp_base64_dec_init(struct osp_base64_dec *d)
{
	memset(d, 0, sizeof(*d));
}

void
osp_base64_decode(struct osp_base64_dec *d, const void *in, size_t len,
    struct osp_buf *out)
{
	const unsigned char *s = in;
	size_t i;
	int v;

	osp_buf_reserve(out, len / 4 * 3 + 3);
	for (i = 0; i < len && !d->done; i++) {
		v = codec_b64val(s[i]);
		if (v < 0) {
			if (s[i] == '=')
				d->done = true;
			else if (s[i] != '\r' && s[i] != '\n' &&
			    s[i] != ' ' && s[i] != '\t')
				d->bad = true;
			continue;
		}
		d->acc = (d->acc << 6) | (uint32_t)v;
		d->nbits += 6;
		if (d->nbits >= 8) {
			d->nbits -= 8;
			osp_buf_putc(out, (char)((d->acc >> d->nbits) & 0xff));
		}
	}
}

void
osp_base64_encode(const void *in, size_t len, struct osp_buf *out)
{
	const unsigned char *s = in;
	size_t i;
	uint32_t v;

	osp_buf_reserve(out, (len + 2) / 3 * 4);
	for (i = 0; i + 2 < len; i += 3) {
		v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		osp_buf_putc(out, b64chars[v >> 18]);
		osp_buf_putc(out, b64chars[(v >> 12) & 63]);
		osp_buf_putc(out, b64chars[(v >> 6) & 63]);
		osp_buf_putc(out, b64chars[v & 63]);
	}
	if (i < len) {
		v = (uint32_t)s[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)s[i + 1] << 8;
		osp_buf_putc(out, b64chars[v >> 18]);
		osp_buf_putc(out, b64chars[(v >> 12) & 63]);
		osp_buf_putc(out, i + 1 < len ? b64chars[(v >> 6) & 63] : '=');
		osp_buf_putc(out, '=');
	}
}

void
osp_qp_dec_init(struct osp_qp_dec *d)
{
	memset(d, 0, sizeof(*d));
}

static void
qp_flush_ws(struct osp_qp_dec *d, struct osp_buf *out)
{
	osp_buf_append(out, d->ws, d->nws);
	d->nws = 0;
}

void
osp_qp_decode(struct osp_qp_dec *d, const void *in, size_t len,
    struct osp_buf *out)
{
	const unsigned char *s = in;
	size_t i;
	unsigned char c;
	int hi, lo;

	for (i = 0; i < len; i++) {
		c = s[i];
		if (d->npend == 1) {
			/* soft line break: "=" *WSP CRLF (RFC 2045 §6.7
			 * rule 5, with transport padding) */
			if (c == ' ' || c == '\t') {
				if (d->nws < sizeof(d->ws))
					d->ws[d->nws++] = (char)c;
				continue;
			}
			if (c == '\r')
				continue;
			if (c == '\n') {
				d->npend = 0;
				d->nws = 0;
				continue;
			}
			if (d->nws > 0) {
				/* "= x": not an escape, kept literally */
				d->bad = true;
				d->npend = 0;
				osp_buf_putc(out, '=');
				qp_flush_ws(d, out);
				i--;
				continue;
			}
		}
		if (d->npend > 0) {
			d->pend[d->npend++] = c;
			if (d->npend < 3)
				continue;
			hi = osp_str_hexval(d->pend[1]);
			lo = osp_str_hexval(d->pend[2]);
			d->npend = 0;
			if (hi >= 0 && lo >= 0) {
				osp_buf_putc(out, (char)(hi << 4 | lo));
				continue;
			}
			/* RFC 2045 §6.7 note (2): keep a bad "=" as is */
			d->bad = true;
			osp_buf_putc(out, '=');
			/* re-read the two characters (no deeper recursion:
			 * two bytes cannot complete another "=XX") */
			{
				unsigned char again[2];

				memcpy(again, d->pend + 1, 2);
				osp_qp_decode(d, again, 2, out);
			}
			continue;
		}
		if (c == ' ' || c == '\t') {
			/* trailing whitespace is dropped (rule 3) */
			if (d->nws == sizeof(d->ws))
				qp_flush_ws(d, out);
			d->ws[d->nws++] = (char)c;
			continue;
		}
		if (d->cr && c != '\n') {
			qp_flush_ws(d, out);
			osp_buf_putc(out, '\r');	/* bare CR kept */
		}
		d->cr = false;
		if (c == '\r') {
			d->cr = true;	/* a LF may follow, maybe next chunk */
			continue;
		}
		if (c == '\n') {
			d->nws = 0;
			osp_buf_append(out, "\r\n", 2);
			continue;
		}
		qp_flush_ws(d, out);
		if (c == '=') {
			d->pend[0] = c;
			d->npend = 1;
			continue;
		}
		osp_buf_putc(out, (char)c);
	}
}

void
osp_qp_dec_finish(struct osp_qp_dec *d, struct osp_buf *out)
{
	/* A lone "=" at the end is a soft break; "=X" is kept. */
	if (d->npend > 1) {
		d->bad = true;
		osp_buf_append(out, d->pend, d->npend);
	}
	if (d->cr)
		osp_buf_putc(out, '\r');
	d->cr = false;
	d->npend = 0;
	d->nws = 0;
}

void
osp_mime_put_utf8(struct osp_buf *out, uint32_t c)
{
	char b[4];

	if (c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		c = 0xfffd;
	if (c < 0x80) {
		osp_buf_putc(out, (char)c);
	} else if (c < 0x800) {
		b[0] = (char)(0xc0 | c >> 6);
		b[1] = (char)(0x80 | (c & 0x3f));
		osp_buf_append(out, b, 2);
	} else if (c < 0x10000) {
		b[0] = (char)(0xe0 | c >> 12);
		b[1] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[2] = (char)(0x80 | (c & 0x3f));
		osp_buf_append(out, b, 3);
	} else {
		b[0] = (char)(0xf0 | c >> 18);
		b[1] = (char)(0x80 | ((c >> 12) & 0x3f));
		b[2] = (char)(0x80 | ((c >> 6) & 0x3f));
		b[3] = (char)(0x80 | (c & 0x3f));
		osp_buf_append(out, b, 4);
	}
}

/* UTF-8 kept; other bytes read as Latin-1. Returns whether any byte was
 * not UTF-8. */
static bool
codec_utf8_or_latin1(const unsigned char *s, size_t len, struct osp_buf *out)
{
	size_t i = 0, n;
	bool replaced = false;

	while (i < len) {
		n = osp_utf8_decode(s + i, len - i, NULL);
		if (n == 0) {
			osp_mime_put_utf8(out, s[i]);
			replaced = true;
			i++;
			continue;
		}
		if (n == 1 && s[i] == '\0')
			osp_buf_putc(out, ' ');
		else
			osp_buf_append(out, s + i, n);
		i += n;
	}
	return replaced;
}

static bool
codec_is_charset(const char *cs, const char *name)
{
	return strcasecmp(cs, name) == 0;
}

int
osp_charset_to_utf8(const char *charset, const void *in, size_t len,
    struct osp_buf *out)
{
	char name[64];
	const unsigned char *s = in;
	size_t i, inleft, outleft, before;
	iconv_t cd;
	char *ip, *op;
	bool replaced = false;

	if (len == 0)
		return OSP_OK;
	/* Names only from a safe alphabet: '/' would reach iconv's
	 * //TRANSLIT-style suffixes. A RFC 2231 "*lang" suffix is cut. */
	for (i = 0; charset != NULL && charset[i] != '\0' &&
	    charset[i] != '*' && i < sizeof(name) - 1; i++) {
		unsigned char c = (unsigned char)charset[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.' || c == ':' || c == '+'))
			break;
		name[i] = (char)c;
	}
	name[i] = '\0';
	if (charset == NULL || name[0] == '\0' ||
	    (charset[i] != '\0' && charset[i] != '*') ||
	    codec_is_charset(name, "us-ascii") ||
	    codec_is_charset(name, "ascii") ||
	    codec_is_charset(name, "unknown-8bit") ||
	    codec_is_charset(name, "x-unknown"))
		return codec_utf8_or_latin1(s, len, out) ? 1 : OSP_OK;
	if (codec_is_charset(name, "utf-8") || codec_is_charset(name, "utf8"))
		strcpy(name, "UTF-8");
	else if (codec_is_charset(name, "iso-8859-1") ||
	    codec_is_charset(name, "latin1"))
		/* RFC 2854 / WHATWG: Latin-1 labels mean windows-1252 */
		strcpy(name, "WINDOWS-1252");
	cd = iconv_open("UTF-8", name);
	if (cd == (iconv_t)-1) {
		codec_utf8_or_latin1(s, len, out);
		return 1;
	}
	ip = (char *)(uintptr_t)s;
	inleft = len;
	while (inleft > 0) {
		osp_buf_reserve(out, inleft * 4 + 16);
		before = out->size - out->len - 1;
		outleft = before;
		op = out->data + out->len;
		if (iconv(cd, &ip, &inleft, &op, &outleft) != (size_t)-1) {
			out->len += before - outleft;
			break;
		}
		out->len += before - outleft;
		if (errno == E2BIG)
			continue;
		/* EILSEQ or EINVAL (truncated): one replacement, skip a byte */
		osp_mime_put_utf8(out, 0xfffd);
		replaced = true;
		ip++;
		inleft--;
		iconv(cd, NULL, NULL, NULL, NULL);
	}
	/* flush shift state (ISO-2022-JP) */
	osp_buf_reserve(out, 16);
	op = out->data + out->len;
	outleft = out->size - out->len - 1;
	before = outleft;
	if (iconv(cd, NULL, NULL, &op, &outleft) != (size_t)-1)
		out->len += before - outleft;
	out->data[out->len] = '\0';
	iconv_close(cd);
	/* NULs from UTF-16 and friends would cut C strings */
	for (i = 0; i < out->len; i++)
		if (out->data[i] == '\0')
			out->data[i] = ' ';
	return replaced ? 1 : OSP_OK;
}

char *
osp_mime_trim(struct osp_pool *pool, const char *s, size_t len)
{
	if (s == NULL)
		return osp_pstrdup(pool, "");
	while (len > 0 && (*s == ' ' || *s == '\t' || *s == '\r' ||
	    *s == '\n')) {
		s++;
		len--;
	}
	while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\t' ||
	    s[len - 1] == '\r' || s[len - 1] == '\n'))
		len--;
	return osp_pstrndup(pool, s, len);
}

/*
 * One RFC 2047 encoded word at s: "=?charset[*lang]?B|Q?text?=". Fills the
 * charset (without language) and decoded bytes; returns its length or 0.
 */
static size_t
codec_encoded_word(const char *s, size_t len, char *cs, size_t cssize,
    struct osp_buf *dec)
{
	size_t i, csend, tstart, tend;
	char enc;

	if (len < 8 || s[0] != '=' || s[1] != '?')
		return 0;
	for (i = 2; i < len && s[i] != '?'; i++)
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
		    s[i] == '\n' || i - 2 >= cssize - 1)
			return 0;
	if (i >= len - 3 || i == 2)
		return 0;
	csend = i;
	enc = s[i + 1];
	if (s[i + 2] != '?')
		return 0;
	if (enc != 'B' && enc != 'b' && enc != 'Q' && enc != 'q')
		return 0;
	tstart = i + 3;
	/* RFC 2047 §2 allows 75 characters; long words are common, but a
	 * bound keeps a header of "=?" without "?=" linear */
	if (len > tstart + EW_MAX)
		len = tstart + EW_MAX;
	for (i = tstart; i + 1 < len; i++) {
		if (s[i] == '?' && s[i + 1] == '=')
			break;
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' ||
		    s[i] == '\n')
			return 0;
	}
	if (i + 1 >= len)
		return 0;
	tend = i;
	memcpy(cs, s + 2, csend - 2);
	cs[csend - 2] = '\0';
	if (enc == 'B' || enc == 'b') {
		struct osp_base64_dec d;

		osp_base64_dec_init(&d);
		osp_base64_decode(&d, s + tstart, tend - tstart, dec);
	} else {
		/* RFC 2047 §4.2: "_" is a space, =XX an octet */
		for (i = tstart; i < tend; i++) {
			if (s[i] == '_') {
				osp_buf_putc(dec, ' ');
			} else if (s[i] == '=' && i + 2 < tend &&
			    osp_str_hexval((unsigned char)s[i + 1]) >= 0 &&
			    osp_str_hexval((unsigned char)s[i + 2]) >= 0) {
				osp_buf_putc(dec, (char)(osp_str_hexval(
				    (unsigned char)s[i + 1]) << 4 |
				    osp_str_hexval((unsigned char)s[i + 2])));
				i += 2;
			} else {
				osp_buf_putc(dec, s[i]);
			}
		}
	}
	return tend + 2;
}

static void
codec_flush_words(struct osp_buf *out, const char *cs, struct osp_buf *pend)
{
	if (pend->len > 0)
		(void)osp_charset_to_utf8(cs, pend->data, pend->len, out);
	osp_buf_reset(pend);
}

char *
osp_mime_decode_header(struct osp_pool *pool, const char *raw, size_t len)
{
	struct osp_buf out = { 0 }, pend = { 0 }, word = { 0 };
	char cs[64], pendcs[64] = "";
	size_t i = 0, n, ws, start;
	bool after_word = false;
	char *ret;

	while (i < len) {
		/* RFC 2047 §6.2: whitespace between adjacent encoded words is
		 * dropped; look ahead over it. */
		ws = i;
		while (ws < len && (raw[ws] == ' ' || raw[ws] == '\t' ||
		    raw[ws] == '\r' || raw[ws] == '\n'))
			ws++;
		osp_buf_reset(&word);
		if (ws < len && (after_word || ws == i) &&
		    (n = codec_encoded_word(raw + ws, len - ws, cs, sizeof(cs),
		    &word)) > 0) {
			if (!after_word && ws > i)
				goto plain;
			/* Bytes of one charset are joined before conversion,
			 * so a character split across words survives. */
			if (strcasecmp(cs, pendcs) != 0) {
				codec_flush_words(&out, pendcs, &pend);
				osp_strlcpy(pendcs, cs, sizeof(pendcs));
			}
			osp_buf_append(&pend, word.data, word.len);
			i = ws + n;
			after_word = true;
			continue;
		}
plain:
		codec_flush_words(&out, pendcs, &pend);
		after_word = false;
		/* copy a run of text up to the next whitespace + "=?" */
		start = i;
		while (i < len) {
			if (raw[i] == '=' && i + 1 < len && raw[i + 1] == '?' &&
			    i > start)
				break;
			if ((raw[i] == ' ' || raw[i] == '\t') && i > start)
				break;
			i++;
		}
		if (i == start)
			i++;
		{
			/* raw 8-bit (RFC 6532): UTF-8 kept, else Latin-1;
			 * folding CR/LF removed */
			struct osp_buf tmp = { 0 };
			size_t k;

			codec_utf8_or_latin1((const unsigned char *)raw + start,
			    i - start, &tmp);
			for (k = 0; k < tmp.len; k++)
				if (tmp.data[k] != '\r' && tmp.data[k] != '\n')
					osp_buf_putc(&out, tmp.data[k]);
			osp_buf_deinit(&tmp);
		}
		/* an encoded word may follow text directly only after
		 * whitespace: the look-ahead above handles the space */
		if (i + 1 < len && raw[i] == '=' && raw[i + 1] == '?') {
			osp_buf_reset(&word);
			n = codec_encoded_word(raw + i, len - i, cs, sizeof(cs),
			    &word);
			if (n > 0) {
				osp_strlcpy(pendcs, cs, sizeof(pendcs));
				osp_buf_append(&pend, word.data, word.len);
				i += n;
				after_word = true;
			}
		}
	}
	codec_flush_words(&out, pendcs, &pend);
	ret = osp_pstrndup(pool, out.data != NULL ? out.data : "", out.len);
	osp_buf_deinit(&out);
	osp_buf_deinit(&pend);
	osp_buf_deinit(&word);
	return ret;
}

/* ------------------------------------------------------------------ */
/* HTML to text for previews: enough for the first few hundred characters
 * of ordinary mail, not a renderer. */

static const struct {
	const char	*name;
	uint32_t	 cp;
} html_entities[] = {
	{ "amp", '&' }, { "lt", '<' }, { "gt", '>' }, { "quot", '"' },
	{ "apos", '\'' }, { "nbsp", ' ' }, { "copy", 0xa9 }, { "reg", 0xae },
	{ "hellip", 0x2026 }, { "mdash", 0x2014 }, { "ndash", 0x2013 },
	{ "rsquo", 0x2019 }, { "lsquo", 0x2018 }, { "rdquo", 0x201d },
	{ "ldquo", 0x201c }, { "euro", 0x20ac }, { "zwnj", 0x200c },
};

static size_t
html_entity(const char *s, size_t len, struct osp_buf *out)
{
	size_t i, j;
	uint32_t cp = 0;

	for (i = 1; i < len && i < 12 && s[i] != ';'; i++)
		;
	if (i >= len || s[i] != ';')
		return 0;
	if (s[1] == '#') {
		bool hex = i > 2 && (s[2] == 'x' || s[2] == 'X');

		for (j = hex ? 3 : 2; j < i; j++) {
			int v = hex ? osp_str_hexval((unsigned char)s[j]) :
			    (s[j] >= '0' && s[j] <= '9' ? s[j] - '0' : -1);

			if (v < 0 || cp > 0x10ffff)
				return 0;
			cp = cp * (hex ? 16 : 10) + (uint32_t)v;
		}
		if (cp == 0)
			return 0;
		osp_mime_put_utf8(out, cp == 0xa0 ? ' ' : cp);
		return i + 1;
	}
	for (j = 0; j < sizeof(html_entities) / sizeof(html_entities[0]);
	    j++)
		if (strlen(html_entities[j].name) == i - 1 &&
		    strncmp(html_entities[j].name, s + 1, i - 1) == 0) {
			osp_mime_put_utf8(out, html_entities[j].cp);
			return i + 1;
		}
	return 0;
}

void
osp_mime_html_to_text(const char *in, size_t len, struct osp_buf *out)
{
	size_t i = 0, j, n, tl;
	const char *skip_to = NULL;

	while (i < len) {
		if (in[i] == '<') {
			if (len - i >= 4 && memcmp(in + i, "<!--", 4) == 0) {
				for (j = i + 4; j + 2 < len &&
				    memcmp(in + j, "-->", 3) != 0; j++)
					;
				i = j + 3;
				continue;
			}
			for (j = i + 1; j < len && in[j] != '>'; j++)
				;
			if (j == len)
				break;	/* no later tag can end either */
			tl = j - i - 1;
			if (skip_to == NULL && tl >= 5 &&
			    (strncasecmp(in + i + 1, "style", 5) == 0 ||
			    strncasecmp(in + i + 1, "script", 6) == 0 ||
			    strncasecmp(in + i + 1, "head", 4) == 0 ||
			    strncasecmp(in + i + 1, "title", 5) == 0))
				skip_to = strncasecmp(in + i + 1, "style", 5) ==
				    0 ? "</style" : strncasecmp(in + i + 1,
				    "script", 6) == 0 ? "</script" :
				    strncasecmp(in + i + 1, "head", 4) == 0 ?
				    "</head" : "</title";
			else if (skip_to != NULL &&
			    tl + 1 >= strlen(skip_to) &&
			    strncasecmp(in + i, skip_to, strlen(skip_to)) == 0)
				skip_to = NULL;
			osp_buf_putc(out, ' ');
			i = j + 1;
			continue;
		}
		if (skip_to != NULL) {
			i++;
			continue;
		}
		if (in[i] == '&' && (n = html_entity(in + i, len - i,
		    out)) > 0) {
			i += n;
			continue;
		}
		osp_buf_putc(out, in[i]);
		i++;
	}
}
