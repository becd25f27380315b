/* SPDX-License-Identifier: ISC */
/* libFuzzer target: the MIME parser and header helpers (messages come from
 * anyone). Checks invariants too: the tree does not depend on where input
 * is split, serialization round-trips, offsets stay inside the message. */
#include "core.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check_part(const struct osp_mime_part *p, uint64_t total)
{
	const struct osp_mime_part *c;
	uint32_t n = 0;

	if (p->header_offset + p->header_size != p->body_offset ||
	    p->body_offset + p->body_size > total || p->type == NULL ||
	    p->subtype == NULL)
		abort();
	for (c = p->children; c != NULL; c = c->next) {
		if (c->parent != p || c->header_offset < p->body_offset ||
		    c->body_offset + c->body_size >
		    p->body_offset + p->body_size)
			abort();
		check_part(c, total);
		n++;
	}
	if (n != p->nchildren)
		abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct osp_pool *pool;
	struct osp_msg_info a, b;
	struct osp_mime_part *back;
	struct osp_buf buf = { 0 };
	const char *s = (const char *)data + 1, *t;
	char *str;
	size_t len, split;
	int64_t when;

	if (size < 1)
		return 0;
	len = size - 1;
	pool = osp_pool_new(NULL);
	split = len > 0 ? data[0] % (len + 1) : 0;

	osp_msg_parse_mem(NULL, 0, s, len, pool, &a);
	check_part(a.root, len);
	if (a.root->body_offset + a.root->body_size != len)
		abort();
	/* a split (prefix + file, or chunk boundary) changes nothing */
	osp_msg_parse_mem(s, split, s + split, len - split, pool, &b);
	if (!osp_mime_part_equal(a.root, b.root) ||
	    strcmp(a.preview, b.preview) != 0)
		abort();
	osp_mime_serialize(a.root, &buf);
	if (osp_mime_deserialize(pool, (unsigned char *)buf.data, buf.len,
	    &back) != OSP_OK || !osp_mime_part_equal(a.root, back))
		abort();
	/* the raw input as a serialized tree: rejected or a tree */
	(void)osp_mime_deserialize(pool, data, size, &back);

	/* header helpers over the input as one value */
	str = osp_pstrndup(pool, s, len);
	(void)osp_mime_decode_header(pool, s, len);
	(void)osp_addr_parse(pool, s, len, data[0] & 1 ? OSP_ADDR_DECODE : 0);
	(void)osp_msgid_parse(pool, str, 1 + data[0] % 70, NULL);
	(void)osp_mime_base_subject(pool, str);
	(void)osp_mime_parse_date(str, &when);
	if (osp_idna_to_ascii(pool, str, &t) == OSP_OK)
		(void)osp_idna_to_unicode(pool, t);
	osp_buf_reset(&buf);
	(void)osp_charset_to_utf8(str, s, len, &buf);
	osp_buf_deinit(&buf);
	osp_pool_free(pool);
	return 0;
}
