/* SPDX-License-Identifier: ISC */
/* Streaming MIME parser (RFC 5322, RFC 2045-2046): reads a message in
 * chunks and builds the part tree with byte offsets, the envelope, thread
 * keys and a preview, in memory bounded by the limits in message.h. */
#include "core.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "message_int.h"

#define MIME_CHUNK	65536
/* Bytes kept of a body line: enough to recognise any boundary we use. */
#define BODY_KEEP	(OSP_MIME_MAX_BOUNDARY + 8)
#define HDR_KEEP	(OSP_MIME_MAX_FIELD + 256)
/* Header bytes kept in the whole message before fields shrink to the few
 * the structure needs (each then SMALL_FIELD at most). */
#define KEPT_BUDGET	(8 * 1024 * 1024)
#define SMALL_FIELD	256
#define PLAIN_CAP	(32 * 1024)	/* raw bytes captured for a preview */
#define HTML_CAP	(128 * 1024)
#define PREVIEW_CHARS	256
#define MAX_REFS	64

enum hfield {
	HF_CTYPE, HF_CTE, HF_CID, HF_CDESC, HF_CDISP, HF_CLANG, HF_CLOC,
	HF_CMD5,
	HF_MSG_FIRST,
	HF_DATE = HF_MSG_FIRST, HF_SUBJECT, HF_FROM, HF_SENDER, HF_REPLY_TO,
	HF_TO, HF_CC, HF_BCC, HF_IRT, HF_MSGID, HF_REFS,
	HF_N
};

static const char *const hfield_names[HF_N] = {
	"content-type", "content-transfer-encoding", "content-id",
	"content-description", "content-disposition", "content-language",
	"content-location", "content-md5",
	"date", "subject", "from", "sender", "reply-to", "to", "cc", "bcc",
	"in-reply-to", "message-id", "references",
};

/* A part that has not ended yet: the chain from the root to the part
 * being read. */
struct mime_open {
	struct osp_mime_part	*part;
	struct osp_mime_part	*last_child;
	uint64_t		 nl_hdr, bare_hdr;	/* counters at header */
	uint64_t		 nl_body, bare_body;	/* and body start */
	const char		*boundary;		/* active, or NULL */
	size_t			 blen;
	bool			 in_header;
	bool			 is_msg;		/* message header */
};

struct mime_capture {
	struct osp_mime_part	*part;
	struct osp_buf		 buf;
	size_t			 cap;
	bool			 done;
};

struct mime_parser {
	struct osp_pool		*pool;
	struct osp_msg_info	*info;
	struct mime_open	 open[OSP_MIME_MAX_DEPTH + 2];
	unsigned		 depth;		/* entries in open[] */
	unsigned		 nparts;

	/* Line scanner. Counters are at the start of the current line. */
	uint64_t		 line_start;
	uint64_t		 line_len;
	uint64_t		 nl, bare;
	struct osp_buf		 line;		/* first keep bytes */
	size_t			 keep;
	bool			 last_cr;	/* last byte scanned was CR */
	unsigned		 prev_term;	/* previous line's end: 0-2 */
	uint64_t		 prev_content;	/* previous line's length */

	/* Header fields of the part whose header is being read. */
	struct osp_buf		 fields[HF_N];
	bool			 have[HF_N];
	int			 cur_field;
	uint64_t		 hdr_bytes;
	size_t			 kept_total;

	struct mime_capture	 plain, html;
	struct mime_capture	*tee;
};

static struct mime_open *
mime_top(struct mime_parser *p)
{
	return &p->open[p->depth - 1];
}

static struct osp_mime_part *
mime_new_part(struct mime_parser *p, struct osp_mime_part *parent,
    uint64_t offset)
{
	struct osp_mime_part *part;

	part = osp_pcalloc(p->pool, 1, sizeof(*part));
	part->parent = parent;
	part->header_offset = offset;
	part->body_offset = offset;
	part->type = "text";
	part->subtype = "plain";
	p->nparts++;
	return part;
}

/* Starts reading the header of a new part at `offset`; the counters are
 * those at that offset. */
static void
mime_push(struct mime_parser *p, struct osp_mime_part *part, bool is_msg,
    uint64_t nl, uint64_t bare)
{
	struct mime_open *o;
	struct mime_open *parent = p->depth > 0 ? mime_top(p) : NULL;

	if (parent != NULL) {
		if (parent->last_child == NULL)
			parent->part->children = part;
		else
			parent->last_child->next = part;
		parent->last_child = part;
		parent->part->nchildren++;
	}
	o = &p->open[p->depth++];
	memset(o, 0, sizeof(*o));
	o->part = part;
	o->in_header = true;
	o->is_msg = is_msg;
	o->nl_hdr = nl;
	o->bare_hdr = bare;
	memset(p->have, 0, sizeof(p->have));
	p->cur_field = -1;
	p->hdr_bytes = 0;
}

static const char *
mime_field(struct mime_parser *p, enum hfield f)
{
	if (!p->have[f])
		return NULL;
	return osp_mime_trim(p->pool, p->fields[f].data, p->fields[f].len);
}

static size_t
mime_field_cap(struct mime_parser *p, int f)
{
	if (p->kept_total < KEPT_BUDGET)
		return OSP_MIME_MAX_FIELD;
	if (f == HF_CTYPE || f == HF_CTE || f == HF_CDISP)
		return SMALL_FIELD;
	return 0;
}

/* Appends header text to the field being read, within its cap. NUL and
 * bare CR become spaces so values stay C strings. */
static void
mime_field_append(struct mime_parser *p, const char *s, size_t len)
{
	struct osp_buf *b = &p->fields[p->cur_field];
	size_t cap = mime_field_cap(p, p->cur_field), i, start;

	if (b->len >= cap)
		return;
	if (len > cap - b->len)
		len = cap - b->len;
	start = b->len;
	osp_buf_append(b, s, len);
	for (i = start; i < b->len; i++)
		if (b->data[i] == '\0' || b->data[i] == '\r' ||
		    b->data[i] == '\n')
			b->data[i] = ' ';
	p->kept_total += len;
}

static void
mime_header_line(struct mime_parser *p, const char *s, size_t len,
    uint64_t full)
{
	struct mime_open *o = mime_top(p);
	size_t i, nlen;
	int f;

	if (len > 0 && (s[0] == ' ' || s[0] == '\t')) {
		p->hdr_bytes += full;
		/* RFC 5322 §2.2.3: unfolding removes only the CRLF. */
		if (p->cur_field >= 0)
			mime_field_append(p, s, len);
		return;
	}
	p->cur_field = -1;
	/* fields starting past the cap are not read */
	if (p->hdr_bytes > OSP_MIME_MAX_HEADER)
		return;
	p->hdr_bytes += full;
	for (i = 0; i < len && s[i] != ':'; i++)
		;
	if (i == len)
		return;		/* not a field: ignored */
	nlen = i;
	/* obs-optional (RFC 5322 §4.5): whitespace before the colon */
	while (nlen > 0 && (s[nlen - 1] == ' ' || s[nlen - 1] == '\t'))
		nlen--;
	if (nlen == 0)
		return;
	for (f = 0; f < HF_N; f++) {
		if (f >= HF_MSG_FIRST && !o->is_msg)
			break;
		if (strlen(hfield_names[f]) == nlen &&
		    strncasecmp(hfield_names[f], s, nlen) == 0)
			break;
	}
	if (f >= HF_N || (f >= HF_MSG_FIRST && !o->is_msg) || p->have[f])
		return;
	if (mime_field_cap(p, f) == 0)
		return;
	p->have[f] = true;
	p->cur_field = f;
	osp_buf_reset(&p->fields[f]);
	mime_field_append(p, s + i + 1, len - i - 1);
}

static struct osp_envelope *
mime_envelope(struct mime_parser *p)
{
	struct osp_envelope *env = osp_pcalloc(p->pool, 1, sizeof(*env));
	static const int addr_fields[] = { HF_FROM, HF_SENDER, HF_REPLY_TO,
	    HF_TO, HF_CC, HF_BCC };
	struct osp_address **slots[] = { &env->from, &env->sender,
	    &env->reply_to, &env->to, &env->cc, &env->bcc };
	const char *v;
	size_t i;

	env->date = mime_field(p, HF_DATE);
	env->subject = mime_field(p, HF_SUBJECT);
	env->in_reply_to = mime_field(p, HF_IRT);
	env->message_id = mime_field(p, HF_MSGID);
	for (i = 0; i < sizeof(addr_fields) / sizeof(addr_fields[0]); i++) {
		v = mime_field(p, addr_fields[i]);
		if (v != NULL)
			*slots[i] = osp_addr_parse(p->pool, v, strlen(v), 0);
	}
	return env;
}

/* Thread keys and date of the top-level message. */
static void
mime_root_info(struct mime_parser *p)
{
	struct osp_msg_info *info = p->info;
	const char **refs, **irt, **all, **ids;
	const char *v;
	size_t nrefs = 0, nirt = 0, n = 0, i, j;
	int64_t t;

	if ((v = mime_field(p, HF_MSGID)) != NULL) {
		ids = osp_msgid_parse(p->pool, v, 1, NULL);
		info->message_id = ids[0];
	}
	v = mime_field(p, HF_REFS);
	refs = osp_msgid_parse(p->pool, v != NULL ? v : "", MAX_REFS,
	    &nrefs);
	v = mime_field(p, HF_IRT);
	irt = osp_msgid_parse(p->pool, v != NULL ? v : "", 8, &nirt);
	all = osp_pcalloc(p->pool, nrefs + nirt + 1, sizeof(*all));
	for (i = 0; i < nrefs; i++)
		all[n++] = refs[i];
	for (i = 0; i < nirt; i++) {
		for (j = 0; j < nrefs; j++)
			if (strcmp(refs[j], irt[i]) == 0)
				break;
		if (j == nrefs)
			all[n++] = irt[i];
	}
	all[n] = NULL;
	info->references = all;
	if ((v = mime_field(p, HF_DATE)) != NULL &&
	    osp_mime_parse_date(v, &t) == OSP_OK)
		info->date = t;
	v = mime_field(p, HF_SUBJECT);
	info->base_subject = osp_mime_base_subject(p->pool, v != NULL ? v : "");
}

static bool
mime_identity_cte(const char *enc)
{
	/* RFC 2046 §5.2.1: message/rfc822 is only 7bit, 8bit or binary; an
	 * encoded one is read as an opaque leaf. */
	return enc == NULL || strcmp(enc, "7bit") == 0 ||
	    strcmp(enc, "8bit") == 0 || strcmp(enc, "binary") == 0;
}

/* Reads the kept fields into the part; with open_body, decides how the
 * body is read (children, boundary, preview capture). */
static void
mime_interpret(struct mime_parser *p, struct mime_open *o, bool open_body)
{
	struct osp_mime_part *part = o->part;
	unsigned level = (unsigned)(o - p->open);
	const char *v, *type = NULL, *subtype = NULL, *b;
	const char *dtype = NULL;
	bool leafok;

	if ((v = mime_field(p, HF_CTYPE)) != NULL)
		osp_mime_parse_ctype(p->pool, v, &type, &subtype,
		    &part->params, &part->nparams);
	if (type != NULL && subtype != NULL && *type != '\0' &&
	    *subtype != '\0') {
		part->type = type;
		part->subtype = subtype;
	} else if (part->parent != NULL &&
	    (part->parent->flags & OSP_MIME_F_MULTIPART) &&
	    strcmp(part->parent->subtype, "digest") == 0) {
		/* RFC 2046 §5.1.5 */
		part->type = "message";
		part->subtype = "rfc822";
	}
	if ((v = mime_field(p, HF_CTE)) != NULL && *v != '\0') {
		char *e = osp_pstrdup(p->pool, v), *c;

		for (c = e; *c != '\0'; c++) {
			if (*c == ' ' || *c == '\t' || *c == ';' || *c == '(') {
				*c = '\0';
				break;
			}
			if (*c >= 'A' && *c <= 'Z')
				*c += 'a' - 'A';
		}
		part->encoding = e;
	}
	part->id = mime_field(p, HF_CID);
	part->description = mime_field(p, HF_CDESC);
	if ((v = mime_field(p, HF_CDISP)) != NULL) {
		osp_mime_parse_ctype(p->pool, v, &dtype, NULL,
		    &part->disp_params, &part->ndisp_params);
		part->disposition = dtype != NULL && *dtype != '\0' ?
		    dtype : NULL;
	}
	part->language = mime_field(p, HF_CLANG);
	if ((v = mime_field(p, HF_CLOC)) != NULL) {
		/* RFC 2557 §4.4.1: folding whitespace is not in the URL */
		char *l = osp_pstrdup(p->pool, v), *w = l;
		const char *r;

		for (r = l; *r != '\0'; r++)
			if (*r != ' ' && *r != '\t')
				*w++ = *r;
		*w = '\0';
		part->location = l;
	}
	part->md5 = mime_field(p, HF_CMD5);
	if (o->is_msg)
		part->envelope = mime_envelope(p);
	if (level == 0)
		mime_root_info(p);
	if (!open_body)
		return;

	leafok = true;
	if (strcmp(part->type, "multipart") == 0) {
		b = osp_mime_param_get(part->params, part->nparams,
		    "boundary");
		if (b != NULL && *b != '\0' &&
		    strlen(b) <= OSP_MIME_MAX_BOUNDARY) {
			if (level >= OSP_MIME_MAX_DEPTH) {
				part->flags |= OSP_MIME_F_TRUNCATED;
			} else {
				part->flags |= OSP_MIME_F_MULTIPART;
				o->boundary = b;
				o->blen = strlen(b);
				leafok = false;
			}
		}
	} else if (strcmp(part->type, "message") == 0 &&
	    (strcmp(part->subtype, "rfc822") == 0 ||
	    strcmp(part->subtype, "global") == 0) &&
	    mime_identity_cte(part->encoding)) {
		if (level >= OSP_MIME_MAX_DEPTH ||
		    p->nparts >= OSP_MIME_MAX_PARTS) {
			part->flags |= OSP_MIME_F_TRUNCATED;
		} else {
			part->flags |= OSP_MIME_F_MESSAGE;
			mime_push(p, mime_new_part(p, part, part->body_offset),
			    true, o->nl_body, o->bare_body);
			leafok = false;
		}
	}
	if (leafok && strcmp(part->type, "text") == 0 &&
	    (part->disposition == NULL ||
	    strcmp(part->disposition, "attachment") != 0) && !p->plain.done) {
		if (strcmp(part->subtype, "plain") == 0)
			p->tee = &p->plain;
		else if (strcmp(part->subtype, "html") == 0 && !p->html.done)
			p->tee = &p->html;
		if (p->tee != NULL) {
			p->tee->part = part;
			osp_buf_reset(&p->tee->buf);
		}
	}
}

/* Ends the header at the current line (a blank line ending at `end`). */
static void
mime_header_end(struct mime_parser *p, uint64_t end, uint64_t nl,
    uint64_t bare)
{
	struct mime_open *o = mime_top(p);
	struct osp_mime_part *part = o->part;

	part->header_size = end - part->header_offset;
	part->header_lines = nl - o->nl_hdr;
	part->header_bare_lf = bare - o->bare_hdr;
	part->body_offset = end;
	o->nl_body = nl;
	o->bare_body = bare;
	o->in_header = false;
	mime_interpret(p, o, true);
}

/* Ends the top open part at `end` (nl/bare: counters there; lf: the byte
 * before `end` is a LF). */
static void
mime_close_top(struct mime_parser *p, uint64_t end, uint64_t nl,
    uint64_t bare, bool lf)
{
	struct mime_open *o = mime_top(p);
	struct osp_mime_part *part = o->part;

	if (o->in_header) {
		if (end < part->header_offset)
			end = part->header_offset;
		part->header_size = end - part->header_offset;
		part->header_lines = nl - o->nl_hdr + (part->header_size > 0 &&
		    !lf ? 1 : 0);
		part->header_bare_lf = bare - o->bare_hdr;
		part->body_offset = end;
		part->flags |= OSP_MIME_F_NO_BODY;
		o->in_header = false;
		mime_interpret(p, o, false);
	} else if (end > part->body_offset) {
		part->body_size = end - part->body_offset;
		part->body_lines = nl - o->nl_body + (lf ? 0 : 1);
		part->body_bare_lf = bare - o->bare_body;
	}
	if (o->boundary != NULL)
		part->flags |= OSP_MIME_F_NO_END;
	if (p->tee != NULL && p->tee->part == part) {
		if (p->tee->buf.len > part->body_size)
			p->tee->buf.len = (size_t)part->body_size;
		p->tee->done = true;
		p->tee = NULL;
	}
	p->depth--;
}

/* A boundary line of open[level] starts at p->line_start. */
static void
mime_boundary(struct mime_parser *p, unsigned level, bool close,
    bool terminated, unsigned term)
{
	struct mime_open *o;
	uint64_t L = p->line_start, end, nl = p->nl, bare = p->bare;
	bool lf;

	/* RFC 2046 §5.1.1: the CRLF before the boundary belongs to it. */
	end = L >= p->prev_term ? L - p->prev_term : 0;
	if (p->prev_term > 0)
		nl--;
	if (p->prev_term == 1)
		bare--;
	lf = p->prev_content == 0 && end > 0;
	while (p->depth > level + 1) {
		/* A part whose header's blank line is that CRLF (an empty
		 * body right before the boundary) would end before it
		 * starts: it and its ancestors closing here keep the CRLF,
		 * so children always lie inside their parents. */
		o = mime_top(p);
		if ((o->in_header ? o->part->header_offset :
		    o->part->body_offset) > end) {
			end = L;
			nl = p->nl;
			bare = p->bare;
			lf = true;
		}
		mime_close_top(p, end, nl, bare, lf);
	}
	o = mime_top(p);
	if (close) {
		o->boundary = NULL;
		o->blen = 0;
		return;
	}
	if (p->nparts >= OSP_MIME_MAX_PARTS) {
		o->part->flags |= OSP_MIME_F_TRUNCATED;
		return;
	}
	mime_push(p, mime_new_part(p, o->part, L + p->line_len), false,
	    p->nl + (terminated ? 1 : 0), p->bare + (term == 1 ? 1 : 0));
}

static void
mime_line_done(struct mime_parser *p, bool terminated)
{
	const char *s = p->line.data;
	uint64_t content;
	size_t kc;
	unsigned term = 0, d;
	struct mime_open *o;

	if (terminated)
		term = p->line_len >= 2 && p->last_cr ? 2 : 1;
	content = p->line_len - term;
	kc = p->line.len < content ? p->line.len : (size_t)content;

	/* Boundaries of the open multiparts. A line only has to start with
	 * one (transport padding, sloppy mailers); when several match, the
	 * longest wins, then the innermost (RFC 2046 §5.1.1 says to search
	 * from the innermost so a reused boundary still nests). */
	if (kc >= 2 && s[0] == '-' && s[1] == '-') {
		struct mime_open *best = NULL;

		for (d = p->depth; d-- > 0;) {
			o = &p->open[d];
			if (o->boundary == NULL || kc - 2 < o->blen ||
			    memcmp(s + 2, o->boundary, o->blen) != 0)
				continue;
			if (best == NULL || o->blen > best->blen)
				best = o;
		}
		if (best != NULL) {
			mime_boundary(p, (unsigned)(best - p->open),
			    kc - 2 >= best->blen + 2 &&
			    s[2 + best->blen] == '-' &&
			    s[3 + best->blen] == '-', terminated, term);
			goto next;
		}
	}
	if (mime_top(p)->in_header) {
		if (content == 0)
			mime_header_end(p, p->line_start + p->line_len,
			    p->nl + (terminated ? 1 : 0),
			    p->bare + (term == 1 ? 1 : 0));
		else
			mime_header_line(p, s, kc, p->line_len);
	}
next:
	p->prev_term = term;
	p->prev_content = content;
	if (terminated)
		p->nl++;
	if (term == 1)
		p->bare++;
	p->line_start += p->line_len;
	p->line_len = 0;
	p->last_cr = false;
	osp_buf_reset(&p->line);
	p->keep = mime_top(p)->in_header ? HDR_KEEP : BODY_KEEP;
}

static void
mime_scan(struct mime_parser *p, const char *data, size_t len)
{
	const char *lf;
	size_t n, room;

	while (len > 0) {
		lf = memchr(data, '\n', len);
		n = lf != NULL ? (size_t)(lf - data) + 1 : len;
		if (p->tee != NULL && p->tee->buf.len < p->tee->cap) {
			room = p->tee->cap - p->tee->buf.len;
			osp_buf_append(&p->tee->buf, data, n < room ? n : room);
		}
		if (p->line.len < p->keep) {
			room = p->keep - p->line.len;
			osp_buf_append(&p->line, data, n < room ? n : room);
		}
		if (lf != NULL)
			p->last_cr = n >= 2 ? data[n - 2] == '\r' : p->last_cr;
		else
			p->last_cr = data[n - 1] == '\r';
		p->line_len += n;
		if (lf != NULL)
			mime_line_done(p, true);
		data += n;
		len -= n;
	}
}

static void
mime_init(struct mime_parser *p, struct osp_pool *pool,
    struct osp_msg_info *info)
{
	static const char *const none[] = { NULL };

	memset(p, 0, sizeof(*p));
	memset(info, 0, sizeof(*info));
	info->preview = "";
	info->base_subject = "";
	info->references = none;
	p->pool = pool;
	p->info = info;
	p->plain.cap = PLAIN_CAP;
	p->html.cap = HTML_CAP;
	p->keep = HDR_KEEP;
	info->root = mime_new_part(p, NULL, 0);
	mime_push(p, info->root, true, 0, 0);
}

/* Decodes a captured body to UTF-8 text. */
static void
mime_capture_text(struct mime_capture *c, bool html, struct osp_buf *out)
{
	struct osp_buf dec = { 0 }, utf = { 0 };
	const struct osp_mime_part *part = c->part;
	const char *enc = part->encoding;

	if (enc != NULL && strcmp(enc, "base64") == 0) {
		struct osp_base64_dec d;

		osp_base64_dec_init(&d);
		osp_base64_decode(&d, c->buf.data, c->buf.len, &dec);
	} else if (enc != NULL && strcmp(enc, "quoted-printable") == 0) {
		struct osp_qp_dec d;

		osp_qp_dec_init(&d);
		osp_qp_decode(&d, c->buf.data, c->buf.len, &dec);
		osp_qp_dec_finish(&d, &dec);
	} else {
		osp_buf_append(&dec, c->buf.data, c->buf.len);
	}
	(void)osp_charset_to_utf8(osp_mime_part_charset(part), dec.data,
	    dec.len, &utf);
	if (html)
		osp_mime_html_to_text(utf.data, utf.len, out);
	else
		osp_buf_append(out, utf.data, utf.len);
	osp_buf_deinit(&dec);
	osp_buf_deinit(&utf);
}

/* Folds whitespace and keeps PREVIEW_CHARS characters; with skip_quoted,
 * lines starting with '>' are left out (RFC 3676 quoting). */
static size_t
mime_fold(const char *s, size_t len, bool skip_quoted, struct osp_buf *out)
{
	size_t i = 0, chars = 0, j;
	bool bol = true, space = false;

	while (i < len && chars < PREVIEW_CHARS) {
		unsigned char c = (unsigned char)s[i];

		if (bol && skip_quoted) {
			for (j = i; j < len && (s[j] == ' ' || s[j] == '\t');)
				j++;
			if (j < len && s[j] == '>') {
				while (i < len && s[i] != '\n')
					i++;
				continue;
			}
		}
		bol = c == '\n';
		if (c == ' ' || c == '\t' || c == '\r' || c == '\n' ||
		    c == '\f' || c == '\v') {
			space = out->len > 0;
			i++;
			continue;
		}
		if (space) {
			osp_buf_putc(out, ' ');
			chars++;
			space = false;
			if (chars == PREVIEW_CHARS)
				break;
		}
		/* copy one UTF-8 character; control characters dropped */
		j = 1;
		if (c >= 0xc0)
			while (i + j < len && j < 4 &&
			    ((unsigned char)s[i + j] & 0xc0) == 0x80)
				j++;
		if (c >= 0x20 && c != 0x7f)
			osp_buf_append(out, s + i, j);
		else
			chars--;
		chars++;
		i += j;
	}
	return chars;
}

static void
mime_finish(struct mime_parser *p)
{
	struct osp_buf text = { 0 }, out = { 0 };
	struct mime_capture *c = NULL;
	int f;

	if (p->line_len > 0)
		mime_line_done(p, false);
	while (p->depth > 0)
		mime_close_top(p, p->line_start, p->nl, p->bare,
		    p->prev_term > 0);
	if (p->plain.done && p->plain.buf.len > 0)
		c = &p->plain;
	else if (p->html.done && p->html.buf.len > 0)
		c = &p->html;
	if (c != NULL) {
		mime_capture_text(c, c == &p->html, &text);
		mime_fold(text.data, text.len, true, &out);
		if (out.len == 0)
			mime_fold(text.data, text.len, false, &out);
		p->info->preview = osp_pstrndup(p->pool,
		    out.data != NULL ? out.data : "", out.len);
	}
	osp_buf_deinit(&text);
	osp_buf_deinit(&out);
	osp_buf_deinit(&p->line);
	osp_buf_deinit(&p->plain.buf);
	osp_buf_deinit(&p->html.buf);
	for (f = 0; f < HF_N; f++)
		osp_buf_deinit(&p->fields[f]);
}

int
osp_msg_parse_fd(int fd, const char *prefix, size_t prefix_len,
    struct osp_pool *pool, struct osp_msg_info *info_r, const char **error_r)
{
	struct mime_parser p;
	char *chunk;
	ssize_t n;
	int ret = OSP_OK;

	mime_init(&p, pool, info_r);
	if (prefix != NULL && prefix_len > 0)
		mime_scan(&p, prefix, prefix_len);
	chunk = osp_malloc(MIME_CHUNK);
	for (;;) {
		n = read(fd, chunk, MIME_CHUNK);
		if (n == 0)
			break;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			ret = -errno;
			/* static text: callers may free `pool` on error */
			if (error_r != NULL)
				*error_r = osp_strerror(ret);
			break;
		}
		mime_scan(&p, chunk, (size_t)n);
	}
	osp_free(chunk);
	mime_finish(&p);
	return ret;
}

void
osp_msg_parse_mem(const char *prefix, size_t prefix_len, const void *data,
    size_t len, struct osp_pool *pool, struct osp_msg_info *info_r)
{
	struct mime_parser p;

	mime_init(&p, pool, info_r);
	if (prefix != NULL && prefix_len > 0)
		mime_scan(&p, prefix, prefix_len);
	if (data != NULL && len > 0)
		mime_scan(&p, data, len);
	mime_finish(&p);
}

/* ------------------------------------------------------------------ */

const char *
osp_mime_param_get(const struct osp_mime_param *params, uint32_t n,
    const char *name)
{
	uint32_t i;

	for (i = 0; i < n; i++)
		if (strcmp(params[i].name, name) == 0)
			return params[i].value;
	return NULL;
}

const char *
osp_mime_part_charset(const struct osp_mime_part *part)
{
	return osp_mime_param_get(part->params, part->nparams, "charset");
}

struct osp_mime_part *
osp_mime_part_find(struct osp_mime_part *root, const char *section)
{
	struct osp_mime_part *part = root, *c;
	const char *s = section;
	unsigned long n;
	char *end;

	while (*s != '\0') {
		if (*s < '1' || *s > '9')
			return NULL;
		errno = 0;
		n = strtoul(s, &end, 10);
		if (errno != 0 || (*end != '.' && *end != '\0'))
			return NULL;
		/* RFC 9051 §6.4.5: a message/rfc822 part's numbers address
		 * its embedded message's parts (the top-level message's
		 * own body is its part 1 whatever its type). */
		if ((part->flags & OSP_MIME_F_MESSAGE) && s != section)
			part = part->children;
		if (part->flags & OSP_MIME_F_MULTIPART) {
			for (c = part->children; c != NULL && n > 1; n--)
				c = c->next;
			if (c == NULL)
				return NULL;
			part = c;
		} else if (n != 1 || (part != root &&
		    !(part->parent->flags & OSP_MIME_F_MESSAGE))) {
			/* only a message's single body is part 1 of it */
			return NULL;
		}
		s = *end == '.' ? end + 1 : end;
		if (*end == '.' && *s == '\0')
			return NULL;
	}
	return part;
}

static bool
mime_str_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

static bool
mime_params_eq(const struct osp_mime_param *a, uint32_t na,
    const struct osp_mime_param *b, uint32_t nb)
{
	uint32_t i;

	if (na != nb)
		return false;
	for (i = 0; i < na; i++)
		if (!mime_str_eq(a[i].name, b[i].name) ||
		    !mime_str_eq(a[i].value, b[i].value))
			return false;
	return true;
}

static bool
mime_addr_eq(const struct osp_address *a, const struct osp_address *b)
{
	for (; a != NULL && b != NULL; a = a->next, b = b->next)
		if (a->kind != b->kind || !mime_str_eq(a->name, b->name) ||
		    !mime_str_eq(a->route, b->route) ||
		    !mime_str_eq(a->localpart, b->localpart) ||
		    !mime_str_eq(a->domain, b->domain))
			return false;
	return a == b;
}

static bool
mime_env_eq(const struct osp_envelope *a, const struct osp_envelope *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return mime_str_eq(a->date, b->date) &&
	    mime_str_eq(a->subject, b->subject) &&
	    mime_addr_eq(a->from, b->from) &&
	    mime_addr_eq(a->sender, b->sender) &&
	    mime_addr_eq(a->reply_to, b->reply_to) &&
	    mime_addr_eq(a->to, b->to) && mime_addr_eq(a->cc, b->cc) &&
	    mime_addr_eq(a->bcc, b->bcc) &&
	    mime_str_eq(a->in_reply_to, b->in_reply_to) &&
	    mime_str_eq(a->message_id, b->message_id);
}

bool
osp_mime_part_equal(const struct osp_mime_part *a,
    const struct osp_mime_part *b)
{
	const struct osp_mime_part *ca, *cb;

	if (a == NULL || b == NULL)
		return a == b;
	if (a->nchildren != b->nchildren || a->flags != b->flags ||
	    a->header_offset != b->header_offset ||
	    a->header_size != b->header_size ||
	    a->body_offset != b->body_offset ||
	    a->body_size != b->body_size ||
	    a->header_lines != b->header_lines ||
	    a->body_lines != b->body_lines ||
	    a->header_bare_lf != b->header_bare_lf ||
	    a->body_bare_lf != b->body_bare_lf ||
	    !mime_str_eq(a->type, b->type) ||
	    !mime_str_eq(a->subtype, b->subtype) ||
	    !mime_params_eq(a->params, a->nparams, b->params, b->nparams) ||
	    !mime_str_eq(a->disposition, b->disposition) ||
	    !mime_params_eq(a->disp_params, a->ndisp_params, b->disp_params,
	    b->ndisp_params) ||
	    !mime_str_eq(a->id, b->id) ||
	    !mime_str_eq(a->description, b->description) ||
	    !mime_str_eq(a->encoding, b->encoding) ||
	    !mime_str_eq(a->language, b->language) ||
	    !mime_str_eq(a->location, b->location) ||
	    !mime_str_eq(a->md5, b->md5) ||
	    !mime_env_eq(a->envelope, b->envelope))
		return false;
	for (ca = a->children, cb = b->children; ca != NULL && cb != NULL;
	    ca = ca->next, cb = cb->next)
		if (!osp_mime_part_equal(ca, cb))
			return false;
	return ca == cb;
}
