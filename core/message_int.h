/* SPDX-License-Identifier: ISC */
/* Internal helpers shared by the MIME parser's files (core/message*.c). */
#ifndef OSPREY_MESSAGE_INT_H
#define OSPREY_MESSAGE_INT_H

#include <osprey/message.h>

struct osp_buf;
struct osp_pool;

/* Content-Type / Content-Disposition: "type/subtype; params" (subtype_r
 * may be NULL for a disposition). Lower-cases type and names; RFC 2231
 * continuations joined and decoded. Never fails: missing parts are NULL. */
void	osp_mime_parse_ctype(struct osp_pool *pool, const char *raw,
	    const char **type_r, const char **subtype_r,
	    struct osp_mime_param **params_r, uint32_t *n_r);
/* Removes HTML tags, script/style contents and decodes the common
 * entities; block tags become spaces. Appends UTF-8 text onto out. */
void	osp_mime_html_to_text(const char *in, size_t len, struct osp_buf *out);
/* Appends the UTF-8 encoding of code point c. */
void	osp_mime_put_utf8(struct osp_buf *out, uint32_t c);
/* Trimmed copy of s[0..len) from pool, whitespace (CFWS not) removed at
 * both ends. */
char	*osp_mime_trim(struct osp_pool *pool, const char *s, size_t len);

#endif
