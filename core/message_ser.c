/* SPDX-License-Identifier: ISC */
/* The MIME part tree in a compact, versioned binary form for the store's
 * database, and back with every length checked. */
#include "core.h"

#include <errno.h>
#include <string.h>

#include "message_int.h"

/*
 * Format, version 1: "OM" 0x01, then the root part:
 *   part  = flags header_offset header_size body_offset body_size
 *           header_lines body_lines header_bare_lf body_bare_lf
 *           str(type) str(subtype) params str(disposition) params
 *           str(id) str(description) str(encoding) str(language)
 *           str(location) str(md5) has_envelope [envelope]
 *           nchildren *part
 *   params = count *(str(name) str(value))
 *   envelope = str(date) str(subject) 6*addrs str(in_reply_to)
 *           str(message_id)
 *   addrs = count *(kind str(name) str(route) str(localpart) str(domain))
 *   str   = varint(len + 1) bytes, varint 0 for NULL
 * Numbers are unsigned LEB128 varints.
 */
#define SER_MAGIC0	'O'
#define SER_MAGIC1	'M'
#define SER_VERSION	1
#define SER_MAX_DEPTH	(OSP_MIME_MAX_DEPTH + 2)

static void
ser_varint(struct osp_buf *out, uint64_t v)
{
	unsigned char b[10];
	size_t n = 0;

	do {
		b[n] = v & 0x7f;
		v >>= 7;
		if (v != 0)
			b[n] |= 0x80;
		n++;
	} while (v != 0);
	osp_buf_append(out, b, n);
}

static void
ser_str(struct osp_buf *out, const char *s)
{
	size_t len;

	if (s == NULL) {
		ser_varint(out, 0);
		return;
	}
	len = strlen(s);
	ser_varint(out, (uint64_t)len + 1);
	osp_buf_append(out, s, len);
}

static void
ser_params(struct osp_buf *out, const struct osp_mime_param *p, uint32_t n)
{
	uint32_t i;

	ser_varint(out, n);
	for (i = 0; i < n; i++) {
		ser_str(out, p[i].name);
		ser_str(out, p[i].value);
	}
}

static void
ser_addrs(struct osp_buf *out, const struct osp_address *a)
{
	const struct osp_address *c;
	uint64_t n = 0;

	for (c = a; c != NULL; c = c->next)
		n++;
	ser_varint(out, n);
	for (c = a; c != NULL; c = c->next) {
		ser_varint(out, (uint64_t)c->kind);
		ser_str(out, c->name);
		ser_str(out, c->route);
		ser_str(out, c->localpart);
		ser_str(out, c->domain);
	}
}

static void
ser_part(struct osp_buf *out, const struct osp_mime_part *p)
{
	const struct osp_envelope *e = p->envelope;
	const struct osp_mime_part *c;

	ser_varint(out, p->flags);
	ser_varint(out, p->header_offset);
	ser_varint(out, p->header_size);
	ser_varint(out, p->body_offset);
	ser_varint(out, p->body_size);
	ser_varint(out, p->header_lines);
	ser_varint(out, p->body_lines);
	ser_varint(out, p->header_bare_lf);
	ser_varint(out, p->body_bare_lf);
	ser_str(out, p->type);
	ser_str(out, p->subtype);
	ser_params(out, p->params, p->nparams);
	ser_str(out, p->disposition);
	ser_params(out, p->disp_params, p->ndisp_params);
	ser_str(out, p->id);
	ser_str(out, p->description);
	ser_str(out, p->encoding);
	ser_str(out, p->language);
	ser_str(out, p->location);
	ser_str(out, p->md5);
	ser_varint(out, e != NULL);
	if (e != NULL) {
		ser_str(out, e->date);
		ser_str(out, e->subject);
		ser_addrs(out, e->from);
		ser_addrs(out, e->sender);
		ser_addrs(out, e->reply_to);
		ser_addrs(out, e->to);
		ser_addrs(out, e->cc);
		ser_addrs(out, e->bcc);
		ser_str(out, e->in_reply_to);
		ser_str(out, e->message_id);
	}
	ser_varint(out, p->nchildren);
	for (c = p->children; c != NULL; c = c->next)
		ser_part(out, c);
}

void
osp_mime_serialize(const struct osp_mime_part *root, struct osp_buf *out)
{
	osp_buf_putc(out, SER_MAGIC0);
	osp_buf_putc(out, SER_MAGIC1);
	osp_buf_putc(out, SER_VERSION);
	ser_part(out, root);
}

/* ------------------------------------------------------------------ */

struct ser_reader {
	struct osp_pool		*pool;
	const unsigned char	*p, *end;
	bool			 bad;
};

static uint64_t
des_varint(struct ser_reader *r)
{
	uint64_t v = 0;
	unsigned shift = 0;

	for (;;) {
		if (r->p >= r->end || shift > 63) {
			r->bad = true;
			return 0;
		}
		if (shift == 63 && (*r->p & 0x7e) != 0) {
			r->bad = true;	/* over 64 bits */
			return 0;
		}
		v |= (uint64_t)(*r->p & 0x7f) << shift;
		shift += 7;
		if ((*r->p++ & 0x80) == 0)
			return v;
	}
}

/* A count of items each at least `min` bytes long: bounded by what is
 * left, so a corrupt count cannot make a huge allocation. */
static uint32_t
des_count(struct ser_reader *r, size_t min)
{
	uint64_t n = des_varint(r);

	if (r->bad || n > (uint64_t)(r->end - r->p) / min || n > UINT32_MAX) {
		r->bad = true;
		return 0;
	}
	return (uint32_t)n;
}

static const char *
des_str(struct ser_reader *r)
{
	uint64_t n = des_varint(r);
	const char *s;

	if (r->bad || n == 0)
		return NULL;
	n--;
	if (n > (uint64_t)(r->end - r->p) || memchr(r->p, '\0', n) != NULL) {
		r->bad = true;
		return NULL;
	}
	s = osp_pstrndup(r->pool, (const char *)r->p, n);
	r->p += n;
	return s;
}

static uint32_t
des_params(struct ser_reader *r, struct osp_mime_param **params_r)
{
	uint32_t n = des_count(r, 2), i;
	struct osp_mime_param *p;

	*params_r = NULL;
	if (r->bad)
		return 0;
	p = osp_pcalloc(r->pool, n + 1, sizeof(*p));
	for (i = 0; i < n && !r->bad; i++) {
		p[i].name = des_str(r);
		p[i].value = des_str(r);
		if (p[i].name == NULL || p[i].value == NULL)
			r->bad = true;
	}
	*params_r = p;
	return n;
}

static struct osp_address *
des_addrs(struct ser_reader *r)
{
	uint32_t n = des_count(r, 5), i;
	struct osp_address *head = NULL, **tail = &head, *a;
	uint64_t kind;

	for (i = 0; i < n && !r->bad; i++) {
		a = osp_pcalloc(r->pool, 1, sizeof(*a));
		kind = des_varint(r);
		if (kind > OSP_ADDR_GROUP_END)
			r->bad = true;
		a->kind = (enum osp_addr_kind)kind;
		a->name = des_str(r);
		a->route = des_str(r);
		a->localpart = des_str(r);
		a->domain = des_str(r);
		*tail = a;
		tail = &a->next;
	}
	return head;
}

static struct osp_mime_part *
des_part(struct ser_reader *r, struct osp_mime_part *parent, unsigned depth)
{
	struct osp_mime_part *p, **tail;
	struct osp_envelope *e;
	uint64_t v;
	uint32_t n, i;

	if (depth > SER_MAX_DEPTH) {
		r->bad = true;
		return NULL;
	}
	p = osp_pcalloc(r->pool, 1, sizeof(*p));
	p->parent = parent;
	v = des_varint(r);
	if (v > UINT32_MAX)
		r->bad = true;
	p->flags = (uint32_t)v;
	p->header_offset = des_varint(r);
	p->header_size = des_varint(r);
	p->body_offset = des_varint(r);
	p->body_size = des_varint(r);
	p->header_lines = des_varint(r);
	p->body_lines = des_varint(r);
	p->header_bare_lf = des_varint(r);
	p->body_bare_lf = des_varint(r);
	if (p->header_offset + p->header_size != p->body_offset ||
	    p->body_offset < p->header_offset ||
	    p->body_offset + p->body_size < p->body_offset)
		r->bad = true;
	p->type = des_str(r);
	p->subtype = des_str(r);
	if (p->type == NULL || p->subtype == NULL)
		r->bad = true;
	p->nparams = des_params(r, &p->params);
	p->disposition = des_str(r);
	p->ndisp_params = des_params(r, &p->disp_params);
	p->id = des_str(r);
	p->description = des_str(r);
	p->encoding = des_str(r);
	p->language = des_str(r);
	p->location = des_str(r);
	p->md5 = des_str(r);
	v = des_varint(r);
	if (v > 1)
		r->bad = true;
	if (v == 1 && !r->bad) {
		p->envelope = e = osp_pcalloc(r->pool, 1, sizeof(*e));
		e->date = des_str(r);
		e->subject = des_str(r);
		e->from = des_addrs(r);
		e->sender = des_addrs(r);
		e->reply_to = des_addrs(r);
		e->to = des_addrs(r);
		e->cc = des_addrs(r);
		e->bcc = des_addrs(r);
		e->in_reply_to = des_str(r);
		e->message_id = des_str(r);
	}
	/* a part takes at least 20 bytes */
	n = des_count(r, 20);
	p->nchildren = n;
	tail = &p->children;
	for (i = 0; i < n && !r->bad; i++) {
		*tail = des_part(r, p, depth + 1);
		if (*tail != NULL)
			tail = &(*tail)->next;
	}
	return r->bad ? NULL : p;
}

int
osp_mime_deserialize(struct osp_pool *pool, const unsigned char *data,
    size_t len, struct osp_mime_part **root_r)
{
	struct ser_reader r = { pool, data, data + len, false };
	struct osp_mime_part *root;

	*root_r = NULL;
	if (len < 3 || data[0] != SER_MAGIC0 || data[1] != SER_MAGIC1 ||
	    data[2] != SER_VERSION)
		return -EINVAL;
	r.p += 3;
	root = des_part(&r, NULL, 0);
	if (r.bad || root == NULL || r.p != r.end)
		return -EINVAL;
	*root_r = root;
	return OSP_OK;
}
