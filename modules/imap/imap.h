/* SPDX-License-Identifier: ISC */
/* IMAP module internals. For now the command parser (imap_parse.c): an
 * incremental tokenizer for IMAP4rev1/rev2 command lines with literals,
 * and helpers for sequence sets, dates and numbers. */
#ifndef IMAP_H
#define IMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <osprey/osprey.h>

/* ---- command parser (imap_parse.c) ----------------------------------- */

/*
 * The parser turns the client's byte stream into commands: a tag, a
 * command name and a tree of arguments. It is fed from the connection's
 * input buffer (osp_conn_data) and says how many bytes it consumed
 * (osp_conn_drain them); every byte is looked at once, so a command
 * arriving one byte at a time costs no more than one arriving whole, and
 * any split of the input gives the same results.
 *
 * It knows the IMAP grammar's token forms (RFC 9051 §9), not the
 * commands: "UID FETCH" is the name "UID" with the atom "FETCH" as first
 * argument; the session checks each command's arguments. The one place
 * where it knows a command is FETCH (or UID FETCH): only there is
 * "BODY[...]<...>" read as a fetch attribute with a section, elsewhere
 * '[' is an ordinary ATOM-CHAR (a mailbox may be called "a[b").
 *
 * Lifetime: a parser lives in the connection's pool. The command, its
 * arguments and error strings returned stay valid until the next call to
 * imap_parser_feed(); the session copies what it keeps. One thread.
 *
 * The session loop:
 *
 *	r = imap_parser_feed(p, data, len, &used); osp_conn_drain(c, used);
 *	IMAP_PARSE_MORE:    wait for input.
 *	IMAP_PARSE_COMMAND: run imap_parser_command(p), then feed again.
 *	IMAP_PARSE_ERROR:   reply "<tag or *> BAD <reason>" (or BYE and close
 *			    when fatal), then feed again: the parser skips the
 *			    rest of the bad line by itself (RFC 9051 §7.1.3).
 *	IMAP_PARSE_LITERAL: a literal's header was read; see
 *			    imap_parser_literal().
 *
 * The parser never reads past the command it returns and keeps no input
 * of its own: after IMAP_PARSE_COMMAND the session may read raw lines
 * from the connection itself (IDLE's "DONE", AUTHENTICATE responses,
 * RFC 9051 §6.2.2) and feed the parser again afterwards.
 */
enum imap_parse_result {
	IMAP_PARSE_MORE = 0,	/* all input consumed, need more */
	IMAP_PARSE_COMMAND,	/* a complete command */
	IMAP_PARSE_LITERAL,	/* stopped at a literal header */
	IMAP_PARSE_ERROR,	/* a syntax error or limit: BAD */
};

/* Session state that changes what the grammar accepts; set with
 * imap_parser_set_flags() when the session enables or announces it. */
/* UTF8=ACCEPT enabled (RFC 6855 §3): UTF-8 in quoted strings */
#define IMAP_PARSE_UTF8			0x01
/* LITERAL+ announced (RFC 7888): {N+} of any size */
#define IMAP_PARSE_LITERAL_PLUS		0x02
/* LITERAL- announced (RFC 7888 §5): {N+} only for N <= 4096 */
#define IMAP_PARSE_LITERAL_MINUS	0x04

/* Limits; zero fields take the defaults shown. */
struct imap_parser_limits {
	size_t		 max_line;	/* 65536: bytes of one command
					 * excluding literal data */
	size_t		 max_args;	/* 10000: arguments in all */
	unsigned	 max_depth;	/* 32: nested lists */
	uint64_t	 max_literal;	/* 64 MiB (set it to APPENDLIMIT):
					 * any literal; a non-sync literal
					 * above it is fatal */
	uint64_t	 max_inline;	/* 65536: larger literals are
					 * offered as a stream */
	uint64_t	 max_inline_total; /* 1 MiB: inline literal bytes of
					 * one command; beyond: streams */
};

enum imap_arg_type {
	IMAP_ARG_ATOM = 1,	/* also flags (\Seen), sequence sets, numbers,
				 * list wildcards, fetch attributes */
	IMAP_ARG_NIL,		/* the atom NIL, any case; str as sent */
	IMAP_ARG_QUOTED,	/* unescaped content */
	IMAP_ARG_LITERAL,	/* {N}, {N+}, ~{N}; data or streamed */
	IMAP_ARG_LIST,		/* ( ... ) */
};

struct imap_arg;

struct imap_arg_list {
	struct imap_arg	*args;
	size_t		 count;
};

struct imap_arg {
	enum imap_arg_type type;
	/* ATOM, NIL, QUOTED, LITERAL: the bytes, NUL-terminated (not
	 * counted in len). Only a literal8 may contain NUL. NULL for a
	 * streamed literal (len is then its size) and for lists. */
	const char	*str;
	size_t		 len;
	struct imap_arg_list list;	/* IMAP_ARG_LIST */
	/* literals */
	bool		 literal8;	/* ~{N} (RFC 3516 §4.2) */
	bool		 literal_sync;	/* {N} rather than {N+} */
	bool		 streamed;	/* bytes taken by the session */
	/*
	 * FETCH only: an atom followed by "[" section "]" and an optional
	 * "<" number ["." nz-number] ">" (RFC 9051 §6.4.5: "BODY[1.MIME]",
	 * "BODY.PEEK[HEADER.FIELDS (From To)]<0.100>", "BINARY[1]"). str
	 * is the part before '[' ("BODY.PEEK"); section holds the tokens
	 * inside the brackets (an empty list for "BODY[]") and section_raw
	 * the bracket content as sent, for echoing in the response.
	 */
	bool		 has_section;
	struct imap_arg_list section;
	const char	*section_raw;
	bool		 has_partial;
	bool		 partial_has_len; /* "<o.l>" rather than "<o>" */
	uint64_t	 partial_offset;
	uint64_t	 partial_len;
};

struct imap_cmd {
	const char	*tag;
	const char	*name;		/* upper-cased ASCII */
	struct imap_arg_list args;	/* top level */
};

/* A literal header the parser stopped at (IMAP_PARSE_LITERAL). */
struct imap_literal_info {
	uint64_t	 size;
	bool		 sync;		/* {N}: client waits for + */
	bool		 literal8;	/* ~{N} */
	bool		 stream;	/* over the inline limits */
};

struct imap_parser;

void	imap_parser_limits_default(struct imap_parser_limits *l);
/* A parser allocated from `pool` (freed with it); limits may be NULL. */
struct imap_parser *imap_parser_new(struct osp_pool *pool,
	    const struct imap_parser_limits *limits);
/* IMAP_PARSE_* flags, replacing the old ones. Changing them after an
 * IMAP_PARSE_COMMAND (ENABLE UTF8=ACCEPT) applies to the very next
 * command: the parser never reads ahead of the command it returns. */
void	imap_parser_set_flags(struct imap_parser *p, unsigned flags);
unsigned imap_parser_flags(const struct imap_parser *p);

/*
 * Consumes input up to the end of a command, an error, a literal header
 * or the end of `data`; *consumed_r is at most len. A second call with
 * the data not consumed continues where the first stopped.
 */
enum imap_parse_result imap_parser_feed(struct imap_parser *p,
	    const unsigned char *data, size_t len, size_t *consumed_r);

/*
 * After IMAP_PARSE_COMMAND the whole command; after IMAP_PARSE_LITERAL
 * the command so far (tag, name and the arguments before the literal:
 * enough for APPEND to check the mailbox and size before answering);
 * after IMAP_PARSE_ERROR the tag when it was read, else tag is NULL.
 */
const struct imap_cmd *imap_parser_command(const struct imap_parser *p);

/*
 * After IMAP_PARSE_ERROR: the reason for "TAG BAD <reason>" (static
 * text; may start with a response code such as "[TOOBIG] "). *fatal_r
 * (may be NULL) is true when the connection must be closed with BYE
 * because the parser cannot find the next command (a non-synchronizing
 * literal over max_literal: RFC 7888 §4 choice 2).
 */
const char *imap_parser_error(const struct imap_parser *p, bool *fatal_r);

/*
 * After IMAP_PARSE_LITERAL. The session decides, then:
 * - accepts an inline literal (stream false): sends "+ ..." if sync, and
 *   feeds again; the parser collects the bytes into the tree;
 * - takes a stream (stream true; the parser stops at every literal over
 *   the inline limits, sync or not): sends "+ ..." if sync, reads exactly
 *   size bytes from the connection itself (to a file: APPEND), calls
 *   imap_parser_literal_streamed() and feeds again; the tree gets a
 *   LITERAL with streamed set and str NULL;
 * - refuses either kind: imap_parser_literal_refuse(), then replies
 *   itself (BAD, or NO [TOOBIG] for APPEND, RFC 7889 §4) and feeds again.
 *   For a sync literal the client sends nothing more of this command
 *   (RFC 9051 §7.5); a non-sync literal's bytes and the rest of its line
 *   are skipped by the parser.
 * Calling imap_parser_feed() while a stream is undecided aborts.
 */
void	imap_parser_literal(const struct imap_parser *p,
	    struct imap_literal_info *info_r);
void	imap_parser_literal_streamed(struct imap_parser *p);
void	imap_parser_literal_refuse(struct imap_parser *p);

/* Appends a canonical text form of args (tests, fuzzing, debug logs):
 * atoms as sent, "quoted" with \" \\ escapes, {N:bytes}, {N:streamed},
 * ( ), atom[section]<o.l>. */
void	imap_args_dump(struct osp_buf *b, const struct imap_arg_list *l);

/* ---- argument helpers ------------------------------------------------ */

/* astring (RFC 9051 §9: atom with ']' allowed, quoted or literal; NIL
 * is the atom "NIL"): the string, or NULL for other forms, streamed or
 * literal8 literals, atoms with list wildcards or a leading '\'. */
const char *imap_arg_astring(const struct imap_arg *a);
/* list-mailbox (RFC 9051 §9): an astring that may contain '%' and '*'. */
const char *imap_arg_list_mailbox(const struct imap_arg *a);
/* string: quoted or (unstreamed, non-binary) literal, else NULL. */
const char *imap_arg_string(const struct imap_arg *a);
/* nstring: true with *str_r NULL for NIL, with the string for a string;
 * false otherwise. */
bool	imap_arg_nstring(const struct imap_arg *a, const char **str_r);
/* An atom (not NIL, no section) or NULL. */
const char *imap_arg_atom(const struct imap_arg *a);

/* number (0..4294967295), number64 (0..2^63-1), nz-number (1..2^32-1):
 * strict digit strings (RFC 9051 §9), no sign, no leading zero except
 * "0" itself for number/number64. */
bool	imap_parse_number(const char *s, uint32_t *n_r);
bool	imap_parse_number64(const char *s, uint64_t *n_r);
bool	imap_parse_nz_number(const char *s, uint32_t *n_r);

/*
 * A sequence-set or uid-set (RFC 9051 §9) into sorted, merged,
 * non-overlapping ranges [lo, hi] from pool. '*' stands for `star` (the
 * highest message number or UID; 0 in an empty mailbox, the only way a 0
 * can appear in the result); "5:2" is "2:5" (§9 seq-range). "$" alone
 * (SEARCHRES, RFC 5182 §2.1) gives *searchres_r true and no ranges when
 * allow_searchres, else an error. Errors: OSP_ERROR, *error_r static.
 */
struct imap_seq_range {
	uint32_t	 lo;
	uint32_t	 hi;
};
int	imap_parse_seqset(struct osp_pool *pool, const char *s,
	    uint32_t star, bool allow_searchres,
	    struct imap_seq_range **ranges_r, size_t *count_r,
	    bool *searchres_r, const char **error_r);

/*
 * date-time (RFC 9051 §9, APPEND, INTERNALDATE): the content of the
 * quoted string, "dd-Mon-yyyy hh:mm:ss +zzzz" with the day possibly
 * " d". *t_r is the instant (UTC), *zone_r the offset in minutes east.
 * date (SEARCH BEFORE/ON/SINCE...): "d-Mon-yyyy" or "dd-Mon-yyyy" (the
 * quotes already removed by the tokenizer); *t_r is 00:00 UTC of that
 * day, the session applies its time zone. Months any case; the day must
 * exist (29-Feb only in leap years). Return OSP_OK or OSP_ERROR.
 */
int	imap_parse_datetime(const char *s, time_t *t_r, int *zone_r);
int	imap_parse_date(const char *s, time_t *t_r);

/* ---- mailbox names (imap_mailbox.c) ---------------------------------- */

/*
 * Mailbox names travel as modified UTF-7 (RFC 3501 §5.1.3) to IMAP4rev1
 * clients and as UTF-8 (RFC 9051 §5.1, RFC 6855 §3) once a client enables
 * UTF8=ACCEPT or IMAP4rev2; the store keeps UTF-8. Any thread. Results
 * are allocated from pool; *error_r is a static string. All functions
 * return OSP_OK or -EINVAL.
 *
 * imap_mailbox_from_mutf7() decodes strictly: only the canonical encoding
 * the encoder below produces is accepted (8-bit bytes, control
 * characters, bad base64, unterminated or adjacent shifts, shifts that
 * encode printable US-ASCII or NUL, non-zero or surplus leftover bits,
 * unpaired surrogates are rejected), so each name has exactly one
 * spelling. It does not check the result is a usable mailbox name: call
 * imap_mailbox_valid_utf8() on it.
 *
 * imap_mailbox_to_mutf7() encodes valid UTF-8 (malformed, overlong,
 * surrogate or out-of-range sequences are rejected): printable US-ASCII
 * (0x20-0x7e) is sent directly with '&' as "&-", everything else in one
 * modified base64 shift per run.
 *
 * imap_mailbox_valid_utf8() says whether name may name a mailbox: not
 * empty, at most IMAP_MAILBOX_NAME_MAX bytes (the store's limit), valid
 * UTF-8, no C0 or C1 control character or DEL (RFC 9051 §5.1 refers to
 * RFC 5198 §2), and no empty level of the '/' hierarchy (no leading,
 * trailing or doubled '/').
 */
#define IMAP_MAILBOX_NAME_MAX	255
int	imap_mailbox_from_mutf7(struct osp_pool *pool, const char *in,
	    const char **utf8_r, const char **error_r);
int	imap_mailbox_to_mutf7(struct osp_pool *pool, const char *utf8,
	    const char **mutf7_r, const char **error_r);
int	imap_mailbox_valid_utf8(const char *name, const char **error_r);

#endif
