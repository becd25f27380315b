/* SPDX-License-Identifier: ISC */
/* Structured header fields: Content-Type parameters (RFC 2045, RFC 2231),
 * address lists (RFC 5322 §3.4, RFC 6532) with IDNA (libidn2), msg-id
 * lists, base subjects (RFC 5256) and dates (RFC 5322 §3.3). */
#include "core.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <idn2.h>

#include "message_int.h"

#define MAX_PARAMS	64
#define MAX_SECTION	100
#define SUBJ_MAX	4096

static bool
hdr_wsp(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Skips whitespace and (nested) comments from s[i]. */
static size_t
hdr_skip_cfws(const char *s, size_t i, size_t len)
{
	unsigned depth;

	for (;;) {
		while (i < len && hdr_wsp(s[i]))
			i++;
		if (i >= len || s[i] != '(')
			return i;
		depth = 0;
		for (; i < len; i++) {
			if (s[i] == '\\' && i + 1 < len) {
				i++;
				continue;
			}
			if (s[i] == '(')
				depth++;
			else if (s[i] == ')' && --depth == 0) {
				i++;
				break;
			}
		}
	}
}

static char *
hdr_lower(char *s)
{
	char *c;

	for (c = s; *c != '\0'; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c += 'a' - 'A';
	return s;
}

/* RFC 2045 §5.1 token characters (tspecials excluded). */
static bool
hdr_tokenc(char c)
{
	return (unsigned char)c > ' ' && c != 0x7f &&
	    strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* A quoted-string at s[i] (s[i] == '"'): appends its value to out, returns
 * the index after it. */
static size_t
hdr_qstring(const char *s, size_t i, size_t len, struct osp_buf *out)
{
	for (i++; i < len && s[i] != '"'; i++) {
		if (s[i] == '\\' && i + 1 < len)
			i++;
		else if (s[i] == '\r' || s[i] == '\n')
			continue;
		osp_buf_putc(out, s[i]);
	}
	return i < len ? i + 1 : i;
}

struct raw_param {
	char		*base;		/* name without the "*..." */
	int		 section;	/* -1: not sectioned */
	bool		 ext;		/* charset'lang'%XX */
	char		*value;
};

/* RFC 2231 §4: percent-decoding of an extended value. */
static void
hdr_pct_decode(const char *s, struct osp_buf *out)
{
	for (; *s != '\0'; s++) {
		if (*s == '%' && osp_str_hexval(s[1]) >= 0 &&
		    osp_str_hexval(s[2]) >= 0) {
			osp_buf_putc(out, (char)(osp_str_hexval(s[1]) << 4 |
			    osp_str_hexval(s[2])));
			s += 2;
		} else {
			osp_buf_putc(out, *s);
		}
	}
}

/* Joins RFC 2231 sections of `base` (sections 0..n without gaps) into one
 * UTF-8 value. */
static char *
hdr_join_sections(struct osp_pool *pool, struct raw_param *rp, size_t nrp,
    const char *base)
{
	struct osp_buf bytes = { 0 }, utf = { 0 };
	struct raw_param *by_sec[MAX_SECTION + 1];
	char charset[64] = "";
	const char *v, *q1, *q2;
	size_t i, n;
	int sec;
	bool first_ext = false;
	char *ret;

	/* one pass to index the sections: linear whatever the input */
	memset(by_sec, 0, sizeof(by_sec));
	for (i = 0; i < nrp; i++)
		if (rp[i].section >= 0 && by_sec[rp[i].section] == NULL &&
		    strcmp(rp[i].base, base) == 0)
			by_sec[rp[i].section] = &rp[i];
	for (sec = 0; sec <= MAX_SECTION && by_sec[sec] != NULL; sec++) {
		i = (size_t)(by_sec[sec] - rp);
		{
			v = rp[i].value;
			if (rp[i].ext && sec == 0) {
				/* charset'language'value */
				q1 = strchr(v, '\'');
				q2 = q1 != NULL ? strchr(q1 + 1, '\'') : NULL;
				if (q2 != NULL) {
					n = (size_t)(q1 - v);
					if (n < sizeof(charset)) {
						memcpy(charset, v, n);
						charset[n] = '\0';
					}
					v = q2 + 1;
				}
				first_ext = true;
			}
			if (rp[i].ext)
				hdr_pct_decode(v, &bytes);
			else
				osp_buf_puts(&bytes, v);
		}
	}
	if (first_ext && charset[0] != '\0')
		(void)osp_charset_to_utf8(charset, bytes.data, bytes.len, &utf);
	else
		(void)osp_charset_to_utf8(NULL, bytes.data, bytes.len, &utf);
	ret = osp_pstrndup(pool, utf.data != NULL ? utf.data : "", utf.len);
	osp_buf_deinit(&bytes);
	osp_buf_deinit(&utf);
	return ret;
}

void
osp_mime_parse_ctype(struct osp_pool *pool, const char *raw,
    const char **type_r, const char **subtype_r,
    struct osp_mime_param **params_r, uint32_t *n_r)
{
	struct raw_param rp[MAX_PARAMS];
	struct osp_mime_param *params;
	struct osp_buf val = { 0 };
	size_t len = strlen(raw), i, start, nrp = 0, np = 0, j, k;
	char *name, *star;
	bool dup;

	*type_r = NULL;
	if (subtype_r != NULL)
		*subtype_r = NULL;
	*params_r = NULL;
	*n_r = 0;
	i = hdr_skip_cfws(raw, 0, len);
	start = i;
	while (i < len && hdr_tokenc(raw[i]))
		i++;
	*type_r = hdr_lower(osp_pstrndup(pool, raw + start, i - start));
	if (subtype_r != NULL) {
		i = hdr_skip_cfws(raw, i, len);
		if (i < len && raw[i] == '/') {
			i = hdr_skip_cfws(raw, i + 1, len);
			start = i;
			while (i < len && hdr_tokenc(raw[i]))
				i++;
			*subtype_r = hdr_lower(osp_pstrndup(pool, raw + start,
			    i - start));
		}
	}
	/* parameters: *( ";" attribute "=" value ), leniently */
	while (i < len && nrp < MAX_PARAMS) {
		while (i < len && raw[i] != ';')
			i++;
		if (i >= len)
			break;
		i = hdr_skip_cfws(raw, i + 1, len);
		start = i;
		while (i < len && hdr_tokenc(raw[i]))
			i++;
		if (i == start)
			continue;
		name = hdr_lower(osp_pstrndup(pool, raw + start, i - start));
		i = hdr_skip_cfws(raw, i, len);
		if (i >= len || raw[i] != '=')
			continue;
		i = hdr_skip_cfws(raw, i + 1, len);
		osp_buf_reset(&val);
		if (i < len && raw[i] == '"') {
			i = hdr_qstring(raw, i, len, &val);
		} else {
			/* token; lenient: up to ';' without trailing space */
			start = i;
			while (i < len && raw[i] != ';')
				i++;
			k = i;
			while (k > start && hdr_wsp(raw[k - 1]))
				k--;
			osp_buf_append(&val, raw + start, k - start);
		}
		rp[nrp].value = osp_pstrndup(pool, val.data != NULL ?
		    val.data : "", val.len);
		rp[nrp].section = -1;
		rp[nrp].ext = false;
		/* RFC 2231 §3-4: name*, name*N, name*N* */
		if ((star = strchr(name, '*')) != NULL) {
			char *end;
			long sec;

			*star = '\0';
			if (star[1] == '\0') {
				rp[nrp].ext = true;
				rp[nrp].section = 0;
			} else if (star[1] >= '0' && star[1] <= '9') {
				sec = strtol(star + 1, &end, 10);
				if (sec > MAX_SECTION ||
				    (*end != '\0' && strcmp(end, "*") != 0))
					continue;
				rp[nrp].section = (int)sec;
				rp[nrp].ext = *end == '*';
			} else {
				continue;
			}
		}
		rp[nrp].base = name;
		nrp++;
	}
	osp_buf_deinit(&val);

	params = osp_pcalloc(pool, nrp + 1, sizeof(*params));
	for (i = 0; i < nrp; i++) {
		/* one entry per name: the first occurrence; RFC 2231 values
		 * win over plain ones */
		dup = false;
		for (j = 0; j < np; j++)
			if (strcmp(params[j].name, rp[i].base) == 0)
				dup = true;
		if (dup)
			continue;
		params[np].name = rp[i].base;
		for (k = 0; k < nrp; k++)
			if (rp[k].section >= 0 &&
			    strcmp(rp[k].base, rp[i].base) == 0)
				break;
		if (k < nrp) {
			params[np].value = hdr_join_sections(pool, rp, nrp,
			    rp[i].base);
		} else if (strcmp(rp[i].base, "name") == 0 ||
		    strcmp(rp[i].base, "filename") == 0) {
			/* RFC 2047 §5 forbids encoded words in quoted
			 * strings, but mailers send them in file names */
			params[np].value = osp_mime_decode_header(pool,
			    rp[i].value, strlen(rp[i].value));
		} else {
			params[np].value = rp[i].value;
		}
		np++;
	}
	*params_r = params;
	*n_r = (uint32_t)np;
}

/* ------------------------------------------------------------------ */
/* Address lists                                                        */

enum atok_type { AT_END = 0, AT_ATOM, AT_QSTR, AT_DLIT, AT_SPECIAL };

struct atok {
	enum atok_type	 type;
	const char	*s;
	size_t		 len;
	char		 c;		/* AT_SPECIAL */
	bool		 ws;		/* whitespace or comment before */
};

static struct atok *
addr_tokenize(const char *s, size_t len, size_t *n_r)
{
	struct atok *t = NULL;
	size_t n = 0, size = 0, i = 0, j;
	bool ws;

	for (;;) {
		j = hdr_skip_cfws(s, i, len);
		while (j < len && s[j] == '\0')
			j = hdr_skip_cfws(s, j + 1, len);
		ws = j > i;
		i = j;
		if (n + 1 >= size) {
			size = size == 0 ? 16 : size * 2;
			t = osp_reallocarray(t, size, sizeof(*t));
		}
		memset(&t[n], 0, sizeof(t[n]));
		t[n].ws = ws;
		if (i >= len) {
			t[n].type = AT_END;
			break;
		}
		t[n].s = s + i;
		if (s[i] == '"') {
			for (j = i + 1; j < len && s[j] != '"'; j++)
				if (s[j] == '\\' && j + 1 < len)
					j++;
			t[n].type = AT_QSTR;
			t[n].len = (j < len ? j + 1 : j) - i;
		} else if (s[i] == '[') {
			for (j = i + 1; j < len && s[j] != ']'; j++)
				if (s[j] == '\\' && j + 1 < len)
					j++;
			t[n].type = AT_DLIT;
			t[n].len = (j < len ? j + 1 : j) - i;
		} else if (strchr("()<>:;@\\,.]", s[i]) != NULL) {
			t[n].type = AT_SPECIAL;
			t[n].c = s[i];
			t[n].len = 1;
		} else {
			/* atext, and UTF-8 (RFC 6532 §3.2) */
			for (j = i; j < len && !hdr_wsp(s[j]) && s[j] != '\0' &&
			    strchr("()<>[]:;@\\,.\"", s[j]) == NULL; j++)
				;
			t[n].type = AT_ATOM;
			t[n].len = j - i;
		}
		i += t[n].len;
		n++;
	}
	*n_r = n;
	return t;
}

static bool
addr_is(const struct atok *t, char c)
{
	return t->type == AT_SPECIAL && t->c == c;
}

/* Appends a token's text (quoted strings unquoted). */
static void
addr_put(struct osp_buf *b, const struct atok *t)
{
	if (t->type == AT_QSTR) {
		size_t i, end = t->len;

		if (end >= 2 && t->s[end - 1] == '"')
			end--;
		for (i = 1; i < end; i++) {
			if (t->s[i] == '\\' && i + 1 < end)
				i++;
			else if (t->s[i] == '\r' || t->s[i] == '\n')
				continue;
			osp_buf_putc(b, t->s[i]);
		}
	} else {
		osp_buf_append(b, t->s, t->len);
	}
}

/* A display name from tokens [a, b): words joined by single spaces. */
static const char *
addr_phrase(struct osp_pool *pool, const struct atok *t, size_t a, size_t b)
{
	struct osp_buf buf = { 0 };
	const char *ret;
	size_t i;

	for (i = a; i < b; i++) {
		if (buf.len > 0 && t[i].ws)
			osp_buf_putc(&buf, ' ');
		addr_put(&buf, &t[i]);
	}
	if (buf.len == 0) {
		osp_buf_deinit(&buf);
		return NULL;
	}
	ret = osp_pstrndup(pool, buf.data, buf.len);
	osp_buf_deinit(&buf);
	return ret;
}

/* Tokens from i up to one of `stops`, concatenated (local part, domain). */
static const char *
addr_concat(struct osp_pool *pool, const struct atok *t, size_t *i,
    const char *stops)
{
	struct osp_buf buf = { 0 };
	const char *ret;

	while (t[*i].type != AT_END &&
	    !(t[*i].type == AT_SPECIAL && strchr(stops, t[*i].c) != NULL)) {
		addr_put(&buf, &t[*i]);
		(*i)++;
	}
	ret = osp_pstrndup(pool, buf.data != NULL ? buf.data : "", buf.len);
	osp_buf_deinit(&buf);
	return ret;
}

struct addr_list {
	struct osp_pool		*pool;
	struct osp_address	*head, *tail;
	unsigned		 flags;
};

static struct osp_address *
addr_add(struct addr_list *l, enum osp_addr_kind kind, const char *name)
{
	struct osp_address *a = osp_pcalloc(l->pool, 1, sizeof(*a));

	a->kind = kind;
	if (name != NULL && (l->flags & OSP_ADDR_DECODE))
		name = osp_mime_decode_header(l->pool, name, strlen(name));
	a->name = name;
	if (l->tail == NULL)
		l->head = a;
	else
		l->tail->next = a;
	l->tail = a;
	return a;
}

static void
addr_set_spec(struct addr_list *l, struct osp_address *a, const char *local,
    const char *domain)
{
	a->localpart = local;
	if (domain != NULL && *domain == '\0')
		domain = NULL;
	if (domain != NULL && (l->flags & OSP_ADDR_DECODE))
		domain = osp_idna_to_unicode(l->pool, domain);
	a->domain = domain;
}

struct osp_address *
osp_addr_parse(struct osp_pool *pool, const char *raw, size_t len,
    unsigned flags)
{
	struct addr_list l = { pool, NULL, NULL, flags };
	struct osp_address *a;
	struct atok *t;
	size_t n, i = 0, j, r;
	const char *local, *domain, *route;
	bool in_group = false;

	t = addr_tokenize(raw, len, &n);
	while (t[i].type != AT_END) {
		if (addr_is(&t[i], ',')) {
			i++;
			continue;
		}
		if (addr_is(&t[i], ';')) {
			if (in_group)
				addr_add(&l, OSP_ADDR_GROUP_END, NULL);
			in_group = false;
			i++;
			continue;
		}
		for (j = i; t[j].type != AT_END; j++)
			if (t[j].type == AT_SPECIAL &&
			    strchr("<:@,;", t[j].c) != NULL)
				break;
		if (addr_is(&t[j], ':')) {
			/* RFC 5322 §3.4 group; nested groups are flattened */
			if (!in_group)
				addr_add(&l, OSP_ADDR_GROUP_START,
				    addr_phrase(pool, t, i, j));
			in_group = true;
			i = j + 1;
			continue;
		}
		if (addr_is(&t[j], '<')) {
			struct osp_address tmp = { 0 };
			const char *name = addr_phrase(pool, t, i, j);

			a = &tmp;
			i = j + 1;
			/* obs-route (RFC 5322 §4.4): "@a,@b:" */
			if (addr_is(&t[i], '@')) {
				for (r = i; t[r].type != AT_END &&
				    !addr_is(&t[r], ':') &&
				    !addr_is(&t[r], '>'); r++)
					;
				if (addr_is(&t[r], ':')) {
					route = addr_concat(pool, t, &i, ":");
					a->route = *route != '\0' ?
					    route : NULL;
					i++;
				}
			}
			local = addr_concat(pool, t, &i, "@>,;");
			domain = NULL;
			if (addr_is(&t[i], '@')) {
				i++;
				domain = addr_concat(pool, t, &i, ">,;");
			}
			/* "<>" alone (a null path) is no address */
			if (name != NULL || *local != '\0' || domain != NULL) {
				a = addr_add(&l, OSP_ADDR_MAILBOX, name);
				a->route = tmp.route;
				addr_set_spec(&l, a, local, domain);
			}
			if (addr_is(&t[i], '>'))
				i++;
		} else {
			/* addr-spec: local "@" domain */
			local = addr_concat(pool, t, &i, "@<,;");
			domain = NULL;
			if (addr_is(&t[i], '@')) {
				i++;
				domain = addr_concat(pool, t, &i, "<,;");
			}
			if (*local != '\0' || domain != NULL) {
				a = addr_add(&l, OSP_ADDR_MAILBOX, NULL);
				addr_set_spec(&l, a, local, domain);
			}
		}
		/* junk up to the next separator */
		while (t[i].type != AT_END && !addr_is(&t[i], ',') &&
		    !addr_is(&t[i], ';'))
			i++;
	}
	if (in_group)
		addr_add(&l, OSP_ADDR_GROUP_END, NULL);
	osp_free(t);
	return l.head;
}

/* RFC 5322 §3.4.1: a local part needs quotes unless it is a dot-atom. */
static bool
addr_dot_atom(const char *s)
{
	const char *c;

	if (*s == '\0' || *s == '.')
		return false;
	for (c = s; *c != '\0'; c++) {
		if (*c == '.' && (c[1] == '.' || c[1] == '\0'))
			return false;
		if ((unsigned char)*c <= ' ' ||
		    strchr("()<>[]:;@\\,\"", *c) != NULL)
			return false;
	}
	return true;
}

char *
osp_addr_format(struct osp_pool *pool, const struct osp_address *a)
{
	struct osp_buf b = { 0 };
	const char *c, *local = a->localpart != NULL ? a->localpart : "";
	char *ret;

	if (addr_dot_atom(local)) {
		osp_buf_puts(&b, local);
	} else {
		osp_buf_putc(&b, '"');
		for (c = local; *c != '\0'; c++) {
			if (*c == '"' || *c == '\\')
				osp_buf_putc(&b, '\\');
			osp_buf_putc(&b, *c);
		}
		osp_buf_putc(&b, '"');
	}
	if (a->domain != NULL) {
		osp_buf_putc(&b, '@');
		osp_buf_puts(&b, a->domain);
	}
	ret = osp_pstrndup(pool, b.data, b.len);
	osp_buf_deinit(&b);
	return ret;
}

const char *
osp_idna_to_unicode(struct osp_pool *pool, const char *domain)
{
	char *out = NULL;
	const char *ret;

	if (domain[0] == '[' || strcasestr(domain, "xn--") == NULL)
		return domain;
	if (idn2_to_unicode_8z8z(domain, &out, 0) != IDN2_OK) {
		idn2_free(out);
		return domain;
	}
	ret = hdr_lower(osp_pstrdup(pool, out));
	idn2_free(out);
	return ret;
}

int
osp_idna_to_ascii(struct osp_pool *pool, const char *domain,
    const char **ascii_r)
{
	char *out = NULL;
	int rc;

	if (domain[0] == '[') {
		*ascii_r = domain;
		return OSP_OK;
	}
	/* IDNA2008 (RFC 5891) with UTS #46 mapping of upper case etc. */
	rc = idn2_to_ascii_8z(domain, &out,
	    IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK) {
		idn2_free(out);
		return -EINVAL;
	}
	*ascii_r = hdr_lower(osp_pstrdup(pool, out));
	idn2_free(out);
	return osp_str_is_hostname(*ascii_r) ? OSP_OK : -EINVAL;
}

/* ------------------------------------------------------------------ */

const char **
osp_msgid_parse(struct osp_pool *pool, const char *raw, size_t max,
    size_t *n_r)
{
	const char **ids = NULL, **ret;
	struct osp_buf id = { 0 };
	size_t len = strlen(raw), i = 0, n = 0, size = 0, j, k;
	bool angle = false;

	while (i < len) {
		i = hdr_skip_cfws(raw, i, len);
		if (i >= len)
			break;
		if (raw[i] == '"') {
			struct osp_buf skip = { 0 };

			i = hdr_qstring(raw, i, len, &skip);
			osp_buf_deinit(&skip);
			continue;
		}
		if (raw[i] != '<') {
			i++;
			continue;
		}
		angle = true;
		osp_buf_reset(&id);
		for (i++; i < len && raw[i] != '>' && raw[i] != '<'; i++)
			if (!hdr_wsp(raw[i]))
				osp_buf_putc(&id, raw[i]);
		if (i < len && raw[i] == '>')
			i++;
		if (id.len == 0 || id.len > 998)
			continue;
		if (n == size) {
			size = size == 0 ? 8 : size * 2;
			ids = osp_reallocarray(ids, size, sizeof(*ids));
		}
		ids[n++] = osp_pstrndup(pool, id.data, id.len);
	}
	osp_buf_deinit(&id);
	if (!angle) {
		/* no <>: some mailers send a bare id */
		char *t = osp_mime_trim(pool, raw, len);

		if (*t != '\0' && strpbrk(t, " \t(\"") == NULL &&
		    strlen(t) <= 998) {
			ids = osp_reallocarray(ids, 1, sizeof(*ids));
			ids[n++] = t;
		}
	}
	if (max == 0)
		max = 1;
	ret = osp_pcalloc(pool, (n < max ? n : max) + 1, sizeof(*ret));
	if (n <= max) {
		for (j = 0; j < n; j++)
			ret[j] = ids[j];
	} else {
		/* the root (first) and the most recent ones matter most */
		ret[0] = ids[0];
		for (j = 1, k = n - (max - 1); k < n; j++, k++)
			ret[j] = ids[k];
		n = max;
	}
	ret[n] = NULL;
	osp_free(ids);
	if (n_r != NULL)
		*n_r = n;
	return ret;
}

/* ------------------------------------------------------------------ */
/* RFC 5256 §2.1 base subject */

static bool
subj_blob_at(const char *s, size_t *end_r)
{
	size_t i;

	if (s[0] != '[')
		return false;
	for (i = 1; s[i] != '\0' && s[i] != '[' && s[i] != ']'; i++)
		;
	if (s[i] != ']')
		return false;
	i++;
	while (s[i] == ' ')
		i++;
	*end_r = i;
	return true;
}

/* subj-refwd at s: *subj-blob ("re" / "fw" ["d"]) *WSP [subj-blob] ":" */
static size_t
subj_refwd(const char *s)
{
	size_t i = 0, e, nblobs = 0;

	/* bounded: a subject of many blobs stays linear */
	while (nblobs++ < 16 && subj_blob_at(s + i, &e))
		i += e;
	if (strncasecmp(s + i, "re", 2) == 0)
		i += 2;
	else if (strncasecmp(s + i, "fwd", 3) == 0)
		i += 3;
	else if (strncasecmp(s + i, "fw", 2) == 0)
		i += 2;
	else
		return 0;
	while (s[i] == ' ')
		i++;
	if (subj_blob_at(s + i, &e))
		i += e;
	if (s[i] != ':')
		return 0;
	return i + 1;
}

char *
osp_mime_base_subject(struct osp_pool *pool, const char *raw)
{
	char *s, *w, *r;
	size_t len, n, e;
	bool changed;

	/* (1) decoded to UTF-8, whitespace runs as one space; the first
	 * SUBJ_MAX bytes are plenty to thread on and keep this linear */
	s = osp_mime_decode_header(pool, raw, strlen(raw));
	if (strlen(s) > SUBJ_MAX) {
		len = SUBJ_MAX;
		while (len > 0 && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
		s[len] = '\0';
	}
	for (r = w = s; *r != '\0'; r++) {
		if (hdr_wsp(*r)) {
			if (w > s && w[-1] != ' ')
				*w++ = ' ';
			continue;
		}
		*w++ = *r;
	}
	*w = '\0';
	for (;;) {
		/* (2) trailing subj-trailer "(fwd)" and whitespace */
		len = strlen(s);
		for (;;) {
			if (len > 0 && s[len - 1] == ' ')
				len--;
			else if (len >= 5 &&
			    strncasecmp(s + len - 5, "(fwd)", 5) == 0)
				len -= 5;
			else
				break;
		}
		s[len] = '\0';
		/* (3)-(4) leaders and a leading blob */
		do {
			changed = false;
			while (*s == ' ') {
				s++;
				changed = true;
			}
			if ((n = subj_refwd(s)) > 0) {
				s += n;
				changed = true;
			}
			if (subj_blob_at(s, &e) && s[e] != '\0') {
				s += e;
				changed = true;
			}
		} while (changed);
		/* (5) "[fwd: ... ]" */
		len = strlen(s);
		if (len >= 6 && strncasecmp(s, "[fwd:", 5) == 0 &&
		    s[len - 1] == ']') {
			s[len - 1] = '\0';
			s += 5;
			continue;
		}
		break;
	}
	return s;
}

/* ------------------------------------------------------------------ */
/* RFC 5322 §3.3 and §4.3 dates */

static int64_t
date_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	/* Howard Hinnant's algorithm: days since 1970-01-01 */
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static size_t
date_num(const char *s, size_t i, size_t len, long *v_r, size_t *ndig_r)
{
	long v = 0;
	size_t start = i;

	while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 9) {
		v = v * 10 + (s[i] - '0');
		i++;
	}
	*v_r = v;
	*ndig_r = i - start;
	return i;
}

int
osp_mime_parse_date(const char *raw, int64_t *time_r)
{
	static const char months[] = "janfebmaraprmayjunjulaugsepoctnovdec";
	static const struct { const char *name; int off; } zones[] = {
		{ "ut", 0 }, { "utc", 0 }, { "gmt", 0 }, { "z", 0 },
		{ "edt", -4 * 60 }, { "est", -5 * 60 }, { "cdt", -5 * 60 },
		{ "cst", -6 * 60 }, { "mdt", -6 * 60 }, { "mst", -7 * 60 },
		{ "pdt", -7 * 60 }, { "pst", -8 * 60 },
	};
	size_t len = strlen(raw), i, nd, start, k;
	long day, year, hh, mm, ss = 0, z;
	int month = -1, off = 0;
	char word[8];

	i = hdr_skip_cfws(raw, 0, len);
	/* optional day-of-week "," */
	if (i < len && isalpha((unsigned char)raw[i])) {
		while (i < len && isalpha((unsigned char)raw[i]))
			i++;
		i = hdr_skip_cfws(raw, i, len);
		if (i < len && raw[i] == ',')
			i = hdr_skip_cfws(raw, i + 1, len);
	}
	i = date_num(raw, i, len, &day, &nd);
	if (nd == 0 || nd > 2 || day < 1 || day > 31)
		return -EINVAL;
	i = hdr_skip_cfws(raw, i, len);
	if (i + 3 > len)
		return -EINVAL;
	for (k = 0; k < 12; k++)
		if (strncasecmp(raw + i, months + k * 3, 3) == 0)
			month = (int)k + 1;
	if (month < 0)
		return -EINVAL;
	while (i < len && isalpha((unsigned char)raw[i]))
		i++;
	i = hdr_skip_cfws(raw, i, len);
	i = date_num(raw, i, len, &year, &nd);
	/* RFC 5322 §4.3: two-digit years below 50 are 20xx, three-digit
	 * years add 1900 */
	if (nd == 2)
		year += year < 50 ? 2000 : 1900;
	else if (nd == 3)
		year += 1900;
	else if (nd != 4)
		return -EINVAL;
	i = hdr_skip_cfws(raw, i, len);
	i = date_num(raw, i, len, &hh, &nd);
	if (nd == 0 || nd > 2 || hh > 23)
		return -EINVAL;
	i = hdr_skip_cfws(raw, i, len);
	if (i >= len || raw[i] != ':')
		return -EINVAL;
	i = hdr_skip_cfws(raw, i + 1, len);
	i = date_num(raw, i, len, &mm, &nd);
	if (nd == 0 || nd > 2 || mm > 59)
		return -EINVAL;
	i = hdr_skip_cfws(raw, i, len);
	if (i < len && raw[i] == ':') {
		i = hdr_skip_cfws(raw, i + 1, len);
		i = date_num(raw, i, len, &ss, &nd);
		if (nd == 0 || nd > 2 || ss > 60)
			return -EINVAL;
		i = hdr_skip_cfws(raw, i, len);
	}
	if (i < len && (raw[i] == '+' || raw[i] == '-')) {
		start = i + 1;
		i = date_num(raw, start, len, &z, &nd);
		if (nd == 4 && z % 100 < 60)
			off = (int)((z / 100) * 60 + z % 100) *
			    (raw[start - 1] == '-' ? -1 : 1);
	} else if (i < len && isalpha((unsigned char)raw[i])) {
		for (k = 0; i < len && isalpha((unsigned char)raw[i]) &&
		    k < sizeof(word) - 1; i++)
			word[k++] = (char)tolower((unsigned char)raw[i]);
		word[k] = '\0';
		/* obs-zone: the named US zones; military letters are
		 * unreliable and read as +0000 (RFC 5322 §4.3) */
		for (k = 0; k < sizeof(zones) / sizeof(zones[0]); k++)
			if (strcmp(word, zones[k].name) == 0)
				off = zones[k].off;
	}
	*time_r = date_days_from_civil(year, (unsigned)month,
	    (unsigned)day) * 86400 + hh * 3600 + mm * 60 + ss -
	    (int64_t)off * 60;
	return OSP_OK;
}
