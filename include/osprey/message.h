/* SPDX-License-Identifier: ISC */
/* Messages: streaming MIME parser, headers, addresses, encodings. */
#ifndef OSPREY_MESSAGE_H
#define OSPREY_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct osp_pool;
struct osp_buf;
struct osp_mime_part;	/* the part tree: see below */

/*
 * What the store keeps about a message, parsed once at delivery from the
 * prefix (headers added on receipt) followed by the file's bytes. Strings
 * and the tree come from the caller's pool. Hostile input never fails the
 * parse: it yields a best-effort structure (OSP_OK); only I/O errors fail.
 */
struct osp_msg_info {
	struct osp_mime_part	*root;
	const char		*preview;	/* UTF-8, <= 256 characters,
						 * whitespace folded; may be "" */
	const char		*message_id;	/* without <>, or NULL */
	const char *const	*references;	/* References then In-Reply-To
						 * ids, oldest first, NULL-
						 * terminated (never NULL) */
	const char		*base_subject;	/* RFC 5256 §2.1, UTF-8 */
	int64_t			 date;		/* Date: as unix time, 0 */
};

/* Parses the message made of prefix (may be NULL) then the bytes of fd
 * from its current offset to EOF, streaming (bounded memory however large
 * the message). Any thread; the pool is the caller's. Fails only on read
 * errors (-errno, *error_r static text). */
int	osp_msg_parse_fd(int fd, const char *prefix, size_t prefix_len,
	    struct osp_pool *pool, struct osp_msg_info *info_r,
	    const char **error_r);

/* The same over bytes in memory (prefix then data; both may be NULL with
 * length 0). Never fails. */
void	osp_msg_parse_mem(const char *prefix, size_t prefix_len,
	    const void *data, size_t len, struct osp_pool *pool,
	    struct osp_msg_info *info_r);

/* The part tree in a compact, versioned binary form for the database, and
 * back. Deserialize checks every length: corrupt input gives -EINVAL. */
void	osp_mime_serialize(const struct osp_mime_part *root,
	    struct osp_buf *out);
int	osp_mime_deserialize(struct osp_pool *pool, const unsigned char *data,
	    size_t len, struct osp_mime_part **root_r);

/* ------------------------------------------------------------------ */
/* The part tree                                                        */

/* Limits of the parser (hostile input): deeper parts are leaves, parts
 * past the count are not made, kept header fields are truncated. */
#define OSP_MIME_MAX_DEPTH	50
#define OSP_MIME_MAX_PARTS	10000
#define OSP_MIME_MAX_FIELD	65536	/* bytes kept of one header field */
#define OSP_MIME_MAX_HEADER	(1024 * 1024) /* header bytes parsed per part */
#define OSP_MIME_MAX_BOUNDARY	256

/* A parameter (Content-Type, Content-Disposition). Names are lower-cased.
 * RFC 2231 values (continuations joined, charset converted) and name /
 * filename (RFC 2047 words decoded, common practice) are UTF-8; other
 * values are as written (a boundary must stay byte-exact). */
struct osp_mime_param {
	const char	*name;
	const char	*value;
};

/*
 * One address of an address list, as IMAP's ENVELOPE needs it (RFC 9051
 * §7.5.2): a mailbox, or the start or end marker of a group. Strings are
 * as written (encoded words kept, quotes removed, whitespace folded) unless
 * the list was parsed with OSP_ADDR_DECODE.
 */
enum osp_addr_kind {
	OSP_ADDR_MAILBOX = 0,
	OSP_ADDR_GROUP_START,	/* name = group's display name */
	OSP_ADDR_GROUP_END
};
struct osp_address {
	struct osp_address	*next;
	enum osp_addr_kind	 kind;
	const char		*name;		/* display name, or NULL */
	const char		*route;		/* obs-route "@a,@b", or NULL */
	const char		*localpart;	/* unquoted; may be UTF-8 */
	const char		*domain;	/* NULL when missing */
};

/* The envelope of a message (RFC 9051 §7.5.2 ENVELOPE): raw header values,
 * unfolded, or NULL when the field is absent. */
struct osp_envelope {
	const char		*date;
	const char		*subject;
	struct osp_address	*from;
	struct osp_address	*sender;
	struct osp_address	*reply_to;
	struct osp_address	*to;
	struct osp_address	*cc;
	struct osp_address	*bcc;
	const char		*in_reply_to;
	const char		*message_id;
};

#define OSP_MIME_F_MULTIPART	0x01	/* children are multipart parts */
#define OSP_MIME_F_MESSAGE	0x02	/* one child: the embedded message */
#define OSP_MIME_F_TRUNCATED	0x04	/* a limit made this part a leaf or
					 * dropped children */
#define OSP_MIME_F_NO_END	0x08	/* multipart without close delimiter */
#define OSP_MIME_F_NO_BODY	0x10	/* header not ended by a blank line */

/*
 * A part. Offsets count from the start of prefix + file. The header
 * includes its terminating blank line; body_offset = header_offset +
 * header_size. A multipart child's body ends before the CRLF that precedes
 * the next boundary (RFC 2046 §5.1.1). body_lines counts lines (LFs, plus
 * one for a last line without LF). *_bare_lf count LFs not preceded by CR,
 * so that sizes with CRLF line ends are size + bare_lf (IMAP).
 *
 * Root and the child of a message/rfc822 (or message/global) part are
 * message headers: they carry an envelope. For message/rfc822 the IMAP
 * BODYSTRUCTURE's envelope and body are children->envelope and children.
 */
struct osp_mime_part {
	struct osp_mime_part	*parent;
	struct osp_mime_part	*children;	/* first child */
	struct osp_mime_part	*next;		/* next sibling */
	uint32_t		 nchildren;
	uint32_t		 flags;		/* OSP_MIME_F_* */

	uint64_t		 header_offset;
	uint64_t		 header_size;
	uint64_t		 body_offset;
	uint64_t		 body_size;
	uint64_t		 header_lines;
	uint64_t		 body_lines;
	uint64_t		 header_bare_lf;
	uint64_t		 body_bare_lf;

	const char		*type;		/* lower-case, "text" default */
	const char		*subtype;	/* lower-case, "plain" */
	struct osp_mime_param	*params;
	uint32_t		 nparams;
	const char		*disposition;	/* lower-case, or NULL */
	struct osp_mime_param	*disp_params;
	uint32_t		 ndisp_params;
	const char		*id;		/* Content-ID, raw, or NULL */
	const char		*description;	/* raw (RFC 2047), or NULL */
	const char		*encoding;	/* lower-case CTE, NULL: 7bit */
	const char		*language;	/* raw list "en, de", or NULL */
	const char		*location;	/* spaces removed, or NULL */
	const char		*md5;		/* or NULL */
	struct osp_envelope	*envelope;	/* message headers only */
};

/* A parameter's value by (lower-case) name, or NULL. */
const char *osp_mime_param_get(const struct osp_mime_param *params,
	    uint32_t n, const char *name);
/* The part's charset parameter, lower-cased, or NULL. */
const char *osp_mime_part_charset(const struct osp_mime_part *part);
/* IMAP part numbering (RFC 9051 §6.4.5): "1.2.3" -> part, or NULL. A
 * message/rfc822 part's sub-parts number the embedded message's parts. */
struct osp_mime_part *osp_mime_part_find(struct osp_mime_part *root,
	    const char *section);
/* Whether two trees are equal (offsets, fields, envelopes). For tests. */
bool	osp_mime_part_equal(const struct osp_mime_part *a,
	    const struct osp_mime_part *b);

/* ------------------------------------------------------------------ */
/* Decoders and header helpers. Any thread; output from the caller.     */

/* Streaming base64 (RFC 2045 §6.8): whitespace and invalid characters
 * skipped (bad set), decoding stops at the padding. */
struct osp_base64_dec {
	uint32_t	acc;
	unsigned	nbits;
	bool		done;		/* saw '=' */
	bool		bad;		/* saw non-alphabet characters */
};
void	osp_base64_dec_init(struct osp_base64_dec *d);
void	osp_base64_decode(struct osp_base64_dec *d, const void *in,
	    size_t len, struct osp_buf *out);
/* Encodes len bytes (no line breaks) onto out. */
void	osp_base64_encode(const void *in, size_t len, struct osp_buf *out);

/* Streaming quoted-printable (RFC 2045 §6.7): soft breaks removed,
 * trailing whitespace before a line end dropped, line ends written as
 * CRLF, bad "=" kept literally (bad set). Call osp_qp_dec_finish() at the
 * end. */
struct osp_qp_dec {
	unsigned char	pend[3];	/* "=" and up to two characters */
	unsigned	npend;
	size_t		nws;		/* pending whitespace count */
	char		ws[256];
	bool		cr;		/* pending CR */
	bool		bad;
};
void	osp_qp_dec_init(struct osp_qp_dec *d);
void	osp_qp_decode(struct osp_qp_dec *d, const void *in, size_t len,
	    struct osp_buf *out);
void	osp_qp_dec_finish(struct osp_qp_dec *d, struct osp_buf *out);

/* Converts len bytes in charset (NULL: us-ascii) to UTF-8 onto out with
 * iconv. Invalid sequences become U+FFFD. Unknown charsets and us-ascii:
 * valid UTF-8 is kept, other bytes are read as Latin-1. Returns OSP_OK, or
 * 1 when something was replaced or the charset was unknown. */
int	osp_charset_to_utf8(const char *charset, const void *in, size_t len,
	    struct osp_buf *out);

/* Decodes a raw header value to UTF-8 (RFC 2047 encoded words, B and Q,
 * whitespace between adjacent words dropped, charsets converted; 8-bit
 * text kept when UTF-8 (RFC 6532), else Latin-1). Folding removed. */
char	*osp_mime_decode_header(struct osp_pool *pool, const char *raw,
	    size_t len);

/* RFC 5322 §3.4 address-list, lenient (obsolete forms, groups, quoted and
 * UTF-8 local parts, comments, routes). Never fails: bad elements are
 * skipped; an empty list is NULL. OSP_ADDR_DECODE decodes encoded words
 * in names and A-labels in domains (for display). */
#define OSP_ADDR_DECODE	0x01
struct osp_address *osp_addr_parse(struct osp_pool *pool, const char *raw,
	    size_t len, unsigned flags);
/* Writes "local@domain" (local part quoted where RFC 5322 needs it). */
char	*osp_addr_format(struct osp_pool *pool, const struct osp_address *a);
/* IDNA (RFC 5891) with libidn2: A-labels to U-labels for display (returns
 * the input on failure), and U-labels to A-labels (-EINVAL when not a
 * valid IDN). Lower-cases. */
const char *osp_idna_to_unicode(struct osp_pool *pool, const char *domain);
int	osp_idna_to_ascii(struct osp_pool *pool, const char *domain,
	    const char **ascii_r);

/* msg-id lists (Message-ID, References, In-Reply-To; RFC 5322 §3.6.4):
 * the ids without <>, in order, NULL-terminated; *n_r (may be NULL) gets
 * the count. A value without <> gives its trimmed text as one id. At most
 * max ids are kept (the first and the last max-1). */
const char **osp_msgid_parse(struct osp_pool *pool, const char *raw,
	    size_t max, size_t *n_r);
/* Base subject (RFC 5256 §2.1) of a raw Subject value, UTF-8, from its
 * first 4 KiB once decoded. */
char	*osp_mime_base_subject(struct osp_pool *pool, const char *raw);
/* RFC 5322 §3.3 date-time (obsolete forms too) to unix time. Returns
 * OSP_OK or -EINVAL. */
int	osp_mime_parse_date(const char *raw, int64_t *time_r);

#endif
