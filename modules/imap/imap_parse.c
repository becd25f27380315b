/* SPDX-License-Identifier: ISC */
/* The IMAP command parser: an incremental byte-at-a-time tokenizer for
 * command lines with literals (RFC 9051 §4, §9; RFC 7888; RFC 3516), and
 * helpers for sequence sets, dates and numbers. */
#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap.h"

#define LITERAL_MINUS_MAX	4096	/* RFC 7888 §5 */

enum pstate {
	ST_START = 0,	/* beginning of a line */
	ST_TAG,
	ST_NAME,
	ST_ARG_START,	/* an argument may start (after SP, '(', '[') */
	ST_AFTER_ARG,	/* after an argument: SP, ')', ']', EOL */
	ST_TRAILING,	/* 2 spaces at the top level: only EOL may follow */
	ST_ATOM,
	ST_QUOTED,
	ST_QUOTED_ESC,
	ST_TILDE,	/* '~' seen: literal8 or an atom */
	ST_LIT_LEN,
	ST_LIT_PLUS,	/* '+' seen, expect '}' */
	ST_LIT_CR,	/* '}' seen, expect CRLF */
	ST_LIT_LF,
	ST_LIT_DATA,
	ST_LIT_WAIT,	/* stopped at a literal: session decides */
	ST_PARTIAL,	/* after ']' of a section: '<' or end */
	ST_PARTIAL_OFF,
	ST_PARTIAL_LEN,
	ST_EOL_LF,	/* CR seen at the end of the command */
	ST_SKIP,	/* resync: skip to the end of the bad line */
	ST_SKIP_LIT,	/* resync: skip a non-sync literal's bytes */
};

enum frame_kind { FRAME_ROOT, FRAME_LIST, FRAME_SECTION };

struct frame {
	struct imap_arg_list	*list;
	size_t			 cap;
	enum frame_kind		 kind;
};

struct imap_parser {
	struct osp_pool		*pool;
	struct osp_pool		*cmd_pool;	/* per command */
	struct imap_parser_limits lim;
	unsigned		 flags;
	enum pstate		 state;
	bool			 reset_pending;	/* result returned */

	struct imap_cmd		 cmd;
	struct frame		*stack;
	unsigned		 depth;		/* stack[depth]: top */
	bool			 fetch;		/* FETCH: sections */
	bool			 in_section;
	struct imap_arg		*section_arg;	/* open section's */
	struct osp_buf		 tok;		/* token so far */
	struct osp_buf		 sect_raw;
	size_t			 line_len;
	size_t			 nargs;
	uint64_t		 inline_total;

	/* literal being read */
	uint64_t		 lit_size;
	uint64_t		 lit_left;
	bool			 lit_plus;
	bool			 lit_binary;
	bool			 lit_digits;

	/* partial <o.l> */
	uint64_t		 part_num;
	bool			 part_digits;

	/* error */
	const char		*error;
	bool			 fatal;

	/* resync scanner: recognises "{N}" / "{N+}" before the line end */
	int			 skip_lit;	/* 1 {digits 2 + 3 } */
	uint64_t		 skip_num;
	bool			 skip_plus;
};

void
imap_parser_limits_default(struct imap_parser_limits *l)
{
	l->max_line = 65536;
	l->max_args = 10000;
	l->max_depth = 32;
	l->max_literal = 64 * 1024 * 1024;
	l->max_inline = 65536;
	l->max_inline_total = 1024 * 1024;
}

static void
parser_cleanup(void *arg)
{
	struct imap_parser *p = arg;

	osp_buf_deinit(&p->tok);
	osp_buf_deinit(&p->sect_raw);
	osp_free(p->stack);
}

struct imap_parser *
imap_parser_new(struct osp_pool *pool, const struct imap_parser_limits *lim)
{
	struct imap_parser *p;
	struct imap_parser_limits d;

	imap_parser_limits_default(&d);
	p = osp_pcalloc(pool, 1, sizeof(*p));
	p->pool = pool;
	p->lim = d;
	if (lim != NULL) {
		if (lim->max_line != 0)
			p->lim.max_line = lim->max_line;
		if (lim->max_args != 0)
			p->lim.max_args = lim->max_args;
		if (lim->max_depth != 0)
			p->lim.max_depth = lim->max_depth;
		if (lim->max_literal != 0)
			p->lim.max_literal = lim->max_literal;
		if (lim->max_inline != 0)
			p->lim.max_inline = lim->max_inline;
		if (lim->max_inline_total != 0)
			p->lim.max_inline_total = lim->max_inline_total;
	}
	/* root, then one frame per list, plus a section */
	p->stack = osp_calloc(p->lim.max_depth + 2, sizeof(*p->stack));
	osp_buf_init(&p->tok);
	osp_buf_init(&p->sect_raw);
	osp_pool_cleanup_add(pool, parser_cleanup, p);
	p->state = ST_START;
	p->reset_pending = true;
	return p;
}

void
imap_parser_set_flags(struct imap_parser *p, unsigned flags)
{
	p->flags = flags;
}

unsigned
imap_parser_flags(const struct imap_parser *p)
{
	return p->flags;
}

const struct imap_cmd *
imap_parser_command(const struct imap_parser *p)
{
	return &p->cmd;
}

const char *
imap_parser_error(const struct imap_parser *p, bool *fatal_r)
{
	if (fatal_r != NULL)
		*fatal_r = p->fatal;
	return p->error;
}

void
imap_parser_literal(const struct imap_parser *p,
    struct imap_literal_info *info_r)
{
	memset(info_r, 0, sizeof(*info_r));
	info_r->size = p->lit_size;
	info_r->sync = !p->lit_plus;
	info_r->literal8 = p->lit_binary;
	info_r->stream = p->state == ST_LIT_WAIT;
}

/* Starts a new command: the previous one's tree is released. */
static void
cmd_reset(struct imap_parser *p)
{
	osp_pool_free(p->cmd_pool);
	p->cmd_pool = osp_pool_new(p->pool);
	memset(&p->cmd, 0, sizeof(p->cmd));
	p->depth = 0;
	p->stack[0].list = &p->cmd.args;
	p->stack[0].cap = 0;
	p->stack[0].kind = FRAME_ROOT;
	p->fetch = false;
	p->in_section = false;
	p->section_arg = NULL;
	osp_buf_reset(&p->tok);
	osp_buf_reset(&p->sect_raw);
	p->line_len = 0;
	p->nargs = 0;
	p->inline_total = 0;
	p->error = NULL;
	p->fatal = false;
}

/* ---- character classes (RFC 9051 §9) --------------------------------- */

/* ATOM-CHAR: any CHAR except atom-specials "(" ")" "{" SP CTL "%" "*"
 * DQUOTE "\" "]". */
static bool
atom_char(unsigned char c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

/* tag = 1*<any ASTRING-CHAR except "+"> */
static bool
tag_char(unsigned char c)
{
	return (atom_char(c) || c == ']') && c != '+';
}

static bool
utf8_valid(const unsigned char *s, size_t len)
{
	size_t i, n;

	for (i = 0; i < len; i += n)
		if ((n = osp_utf8_decode(s + i, len - i, NULL)) == 0)
			return false;
	return true;
}

/* ---- tree building --------------------------------------------------- */

static struct imap_arg *
arg_new(struct imap_parser *p, const char **err_r)
{
	struct frame *f = &p->stack[p->depth];
	struct imap_arg *a;

	if (p->nargs >= p->lim.max_args) {
		*err_r = "Too many arguments";
		return NULL;
	}
	p->nargs++;
	if (f->list->count == f->cap) {
		size_t ncap = f->cap == 0 ? 8 : f->cap * 2;
		struct imap_arg *n;

		/* the old array stays in the command pool: at most as
		 * much again, bounded by max_args */
		n = osp_pcalloc(p->cmd_pool, ncap, sizeof(*n));
		if (f->list->count > 0)
			memcpy(n, f->list->args,
			    f->list->count * sizeof(*n));
		f->list->args = n;
		f->cap = ncap;
	}
	a = &f->list->args[f->list->count++];
	memset(a, 0, sizeof(*a));
	return a;
}

/* A NUL-terminated copy in the command pool (an unused buf has no data). */
static char *
buf_str(struct imap_parser *p, const struct osp_buf *b)
{
	if (b->len == 0)
		return osp_pstrdup(p->cmd_pool, "");
	return osp_pmemdup(p->cmd_pool, b->data, b->len + 1);
}

static const char *
tok_str(struct imap_parser *p)
{
	return buf_str(p, &p->tok);
}

static bool
section_prefix(const char *s)
{
	return osp_str_eqi(s, "BODY") || osp_str_eqi(s, "BODY.PEEK") ||
	    osp_str_eqi(s, "BINARY") || osp_str_eqi(s, "BINARY.PEEK") ||
	    osp_str_eqi(s, "BINARY.SIZE");
}

/* ---- the state machine ----------------------------------------------- */

/*
 * Sets the error and moves to resync. `line_done` when the bad line's
 * end was already consumed (the error was found at its CRLF, or at a
 * sync literal the client will not send).
 */
static void
fail(struct imap_parser *p, const char *reason, bool line_done)
{
	p->error = reason;
	p->skip_lit = 0;
	p->state = line_done ? ST_START : ST_SKIP;
}

static void
fail_fatal(struct imap_parser *p, const char *reason)
{
	p->error = reason;
	p->fatal = true;
	/* nothing sensible follows; keep swallowing until closed */
	p->state = ST_SKIP;
	p->skip_lit = 0;
}

/* End of an argument-level token: checks nothing, moves on. */
static void
atom_done(struct imap_parser *p, const char **err_r)
{
	struct imap_arg *a;

	if ((a = arg_new(p, err_r)) == NULL)
		return;
	a->str = tok_str(p);
	a->len = p->tok.len;
	a->type = osp_str_eqi(a->str, "NIL") ? IMAP_ARG_NIL : IMAP_ARG_ATOM;
	/* UID FETCH: the first argument names the command */
	if (p->depth == 0 && p->cmd.args.count == 1 &&
	    osp_str_eqi(p->cmd.name, "UID") && osp_str_eqi(a->str, "FETCH"))
		p->fetch = true;
	osp_buf_reset(&p->tok);
	p->state = ST_AFTER_ARG;
}

/* ']' of a FETCH section: keeps its raw text, a partial may follow. */
static void
section_close(struct imap_parser *p)
{
	p->section_arg->section_raw = buf_str(p, &p->sect_raw);
	p->section_arg = NULL;
	p->depth--;
	p->in_section = false;
	p->state = ST_PARTIAL;
}

/* The command is complete: only the root may be open. */
static enum imap_parse_result
eol(struct imap_parser *p)
{
	if (p->depth > 0) {
		fail(p, p->in_section ? "Missing ']'" : "Missing ')'", true);
		return IMAP_PARSE_ERROR;
	}
	p->state = ST_START;
	return IMAP_PARSE_COMMAND;
}

/* A literal header was read completely (after its CRLF). */
static enum imap_parse_result
literal_header(struct imap_parser *p)
{
	uint64_t n = p->lit_size;

	if (p->lit_plus) {
		/*
		 * A non-sync literal arrives whatever we say: refusing it
		 * means skipping its bytes (RFC 7888 §4 choice 1) unless it
		 * is too big even for that (choice 2, BYE).
		 */
		const char *why = NULL;

		if (n > p->lim.max_literal) {
			fail_fatal(p, "[TOOBIG] Literal too large");
			return IMAP_PARSE_ERROR;
		}
		if (p->nargs >= p->lim.max_args)
			why = "Too many arguments";
		else if ((p->flags & (IMAP_PARSE_LITERAL_PLUS |
		    IMAP_PARSE_LITERAL_MINUS)) == 0)
			why = "Non-synchronizing literal not allowed";
		else if ((p->flags & IMAP_PARSE_LITERAL_PLUS) == 0 &&
		    n > LITERAL_MINUS_MAX)
			why = "[TOOBIG] Non-synchronizing literal over 4096 "
			    "bytes with LITERAL-";
		if (why != NULL) {
			p->error = why;
			p->lit_left = n;
			p->state = n > 0 ? ST_SKIP_LIT : ST_SKIP;
			p->skip_lit = 0;
			return IMAP_PARSE_ERROR;
		}
	} else if (n > p->lim.max_literal || p->nargs >= p->lim.max_args) {
		/* the client waits for "+": BAD ends the command */
		fail(p, n > p->lim.max_literal ? "[TOOBIG] Literal too large" :
		    "Too many arguments", true);
		return IMAP_PARSE_ERROR;
	}
	p->lit_left = n;
	if (n > p->lim.max_inline ||
	    p->inline_total + n > p->lim.max_inline_total) {
		p->state = ST_LIT_WAIT;
		return IMAP_PARSE_LITERAL;
	}
	p->inline_total += n;
	osp_buf_reset(&p->tok);
	p->state = ST_LIT_DATA;
	if (!p->lit_plus)
		return IMAP_PARSE_LITERAL;	/* the session sends "+" */
	return IMAP_PARSE_MORE;
}

static void
literal_arg(struct imap_parser *p, bool streamed)
{
	struct imap_arg *a;
	const char *err;

	/* max_args was checked at the header */
	if ((a = arg_new(p, &err)) == NULL)
		abort();
	a->type = IMAP_ARG_LITERAL;
	a->literal8 = p->lit_binary;
	a->literal_sync = !p->lit_plus;
	a->streamed = streamed;
	if (streamed)
		a->len = p->lit_size;
	else {
		a->str = tok_str(p);
		a->len = p->tok.len;
	}
	osp_buf_reset(&p->tok);
	p->state = ST_AFTER_ARG;
}

void
imap_parser_literal_streamed(struct imap_parser *p)
{
	if (p->state != ST_LIT_WAIT)
		abort();
	literal_arg(p, true);
}

void
imap_parser_literal_refuse(struct imap_parser *p)
{
	if (p->state != ST_LIT_WAIT && p->state != ST_LIT_DATA)
		abort();
	p->error = "Literal refused";
	p->skip_lit = 0;
	p->reset_pending = true;
	if (!p->lit_plus)
		p->state = ST_START;
	else {
		p->lit_left = p->lit_size;
		p->state = p->lit_left > 0 ? ST_SKIP_LIT : ST_SKIP;
	}
}

/* The resync scanner: one byte of a bad line. Returns true at its end. */
static bool
skip_byte(struct imap_parser *p, unsigned char c)
{
	if (c == '\n') {
		if (p->skip_lit == 3) {
			p->skip_lit = 0;
			if (!p->skip_plus)
				return true;	/* client waits: done */
			p->lit_left = p->skip_num;
			if (p->lit_left > 0)
				p->state = ST_SKIP_LIT;
			return false;
		}
		return true;
	}
	switch (c) {
	case '{':
		p->skip_lit = 1;
		p->skip_num = 0;
		p->skip_plus = false;
		return false;
	case '+':
		p->skip_lit = p->skip_lit == 1 ? 2 : 0;
		p->skip_plus = true;
		return false;
	case '}':
		p->skip_lit = p->skip_lit == 1 || p->skip_lit == 2 ? 3 : 0;
		return false;
	case '\r':
		if (p->skip_lit != 3)
			p->skip_lit = 0;
		return false;
	}
	if (c >= '0' && c <= '9' && p->skip_lit == 1) {
		if (p->skip_num > (UINT64_MAX - 9) / 10)
			p->skip_num = UINT64_MAX;
		else
			p->skip_num = p->skip_num * 10 + (c - '0');
		return false;
	}
	p->skip_lit = 0;
	return false;
}

/* An argument starts with c (not consumed by the caller's loop). */
static void
arg_start(struct imap_parser *p, unsigned char c, const char **err_r)
{
	struct frame *f;
	struct imap_arg *a;

	switch (c) {
	case '"':
		osp_buf_reset(&p->tok);
		p->state = ST_QUOTED;
		return;
	case '{':
		p->lit_size = 0;
		p->lit_plus = false;
		p->lit_binary = false;
		p->lit_digits = false;
		p->state = ST_LIT_LEN;
		return;
	case '~':
		p->state = ST_TILDE;
		return;
	case '(':
		/* the section's frame is not a level of nesting */
		if (p->depth - (p->in_section ? 1 : 0) >= p->lim.max_depth) {
			*err_r = "Too deeply nested lists";
			return;
		}
		if ((a = arg_new(p, err_r)) == NULL)
			return;
		a->type = IMAP_ARG_LIST;
		f = &p->stack[++p->depth];
		f->list = &a->list;
		f->cap = 0;
		f->kind = FRAME_LIST;
		p->state = ST_ARG_START;
		return;
	case ')':
		if (p->stack[p->depth].kind != FRAME_LIST) {
			*err_r = "Unexpected ')'";
			return;
		}
		if (p->stack[p->depth].list->count > 0) {
			*err_r = "Unexpected space before ')'";
			return;
		}
		p->depth--;
		p->state = ST_AFTER_ARG;
		return;
	case ']':
		if (p->stack[p->depth].kind == FRAME_SECTION &&
		    p->stack[p->depth].list->count == 0) {
			/* "BODY[]" */
			section_close(p);
			return;
		}
		break;
	case ' ':
		*err_r = "Unexpected space";
		return;
	}
	if (c == '\\' || atom_char(c) || c == '%' || c == '*' ||
	    (c == ']' && !p->in_section)) {
		osp_buf_reset(&p->tok);
		osp_buf_putc(&p->tok, (char)c);
		p->state = ST_ATOM;
		return;
	}
	/* CR and LF were handled by the caller */
	if (c >= 0x80)
		*err_r = "8-bit data in atom";
	else
		*err_r = "Invalid character";
}

static bool
line_byte(struct imap_parser *p)
{
	return ++p->line_len <= p->lim.max_line;
}

enum imap_parse_result
imap_parser_feed(struct imap_parser *p, const unsigned char *data,
    size_t len, size_t *consumed_r)
{
	size_t i = 0;
	enum imap_parse_result r = IMAP_PARSE_MORE;
	const char *err;
	bool in_sect;
	size_t at;

	if (p->state == ST_LIT_WAIT)
		abort();	/* the session did not decide (imap.h) */
	if (p->reset_pending && p->state == ST_START) {
		cmd_reset(p);
		p->reset_pending = false;
	}
	while (i < len && r == IMAP_PARSE_MORE) {
		unsigned char c = data[i];
		enum pstate st = p->state;

		err = NULL;
		if (st == ST_LIT_DATA) {
			size_t n = len - i;

			if (n > p->lit_left)
				n = (size_t)p->lit_left;
			if (!p->lit_binary && memchr(data + i, '\0', n)) {
				/* CHAR8 excludes NUL outside literal8
				 * (RFC 3516 §4.2) */
				p->error = "NUL in literal";
				p->skip_lit = 0;
				p->state = ST_SKIP_LIT;
				r = IMAP_PARSE_ERROR;
				continue;
			}
			osp_buf_append(&p->tok, data + i, n);
			if (p->in_section)
				osp_buf_append(&p->sect_raw, data + i, n);
			i += n;
			p->lit_left -= n;
			if (p->lit_left == 0)
				literal_arg(p, false);
			continue;
		}
		if (st == ST_SKIP_LIT) {
			size_t n = len - i;

			if (n > p->lit_left)
				n = (size_t)p->lit_left;
			i += n;
			p->lit_left -= n;
			if (p->lit_left == 0)
				p->state = ST_SKIP;
			continue;
		}
		if (st == ST_SKIP) {
			i++;
			/* the error was reported when found */
			if (skip_byte(p, c) && !p->fatal)
				p->state = ST_START;
			continue;
		}
		if (st == ST_START) {
			if (c == '\r' || c == '\n') {
				/* Empty lines are ignored, as Dovecot does:
				 * some clients send a stray CRLF after a
				 * literal or on reconnect. */
				i++;
				continue;
			}
			cmd_reset(p);
			p->reset_pending = false;
			p->state = ST_TAG;
			continue;
		}
		/* from here on, every byte counts towards the line limit */
		if (!line_byte(p)) {
			fail(p, "Command line too long", false);
			r = IMAP_PARSE_ERROR;
			continue;
		}
		at = ++i;
		in_sect = p->in_section;
		switch (st) {
		case ST_TAG:
			if (tag_char(c)) {
				osp_buf_putc(&p->tok, (char)c);
				break;
			}
			if (c == ' ' && p->tok.len > 0) {
				p->cmd.tag = tok_str(p);
				osp_buf_reset(&p->tok);
				p->state = ST_NAME;
				break;
			}
			if ((c == '\r' || c == '\n') && p->tok.len > 0) {
				p->cmd.tag = tok_str(p);
				err = "Missing command name";
			} else
				err = "Invalid tag";
			break;
		case ST_NAME:
			if (atom_char(c)) {
				/* RFC 9051 §9: command names are case-
				 * insensitive; lowercase ("a1 login") is
				 * common from hand-typed sessions and some
				 * scripts. */
				if (c >= 'a' && c <= 'z')
					c -= 'a' - 'A';
				osp_buf_putc(&p->tok, (char)c);
				break;
			}
			if (p->tok.len == 0) {
				err = c == ' ' ? "Unexpected space" :
				    "Missing command name";
				break;
			}
			p->cmd.name = tok_str(p);
			osp_buf_reset(&p->tok);
			p->fetch = strcmp(p->cmd.name, "FETCH") == 0;
			if (c == ' ')
				p->state = ST_ARG_START;
			else if (c == '\r')
				p->state = ST_EOL_LF;
			else if (c == '\n')
				r = eol(p);
			else
				err = "Invalid character in command name";
			break;
		case ST_ARG_START:
			if ((c == '\r' || c == '\n') && p->depth == 0) {
				/* Trailing space before CRLF: sent by some
				 * clients after the last argument (Dovecot
				 * tolerates it for the same reason). */
				if (c == '\r')
					p->state = ST_EOL_LF;
				else
					r = eol(p);
				break;
			}
			if (c == ' ' && p->depth == 0) {
				p->state = ST_TRAILING;
				break;
			}
			if ((c == '\r' || c == '\n') && p->depth > 0) {
				err = p->in_section ? "Missing ']'" :
				    "Missing ')'";
				break;
			}
			arg_start(p, c, &err);
			break;
		case ST_AFTER_ARG:
			if (c == ' ') {
				p->state = ST_ARG_START;
			} else if (c == ')') {
				if (p->stack[p->depth].kind != FRAME_LIST) {
					err = "Unexpected ')'";
					break;
				}
				p->depth--;
			} else if (c == ']' &&
			    p->stack[p->depth].kind == FRAME_SECTION) {
				section_close(p);
			} else if (c == '\r') {
				p->state = ST_EOL_LF;
			} else if (c == '\n') {
				/* Bare LF ends a line: RFC 9051 §2.2
				 * wants CRLF, but netcat/telnet users and
				 * some scripts send LF and Dovecot accepts
				 * it. A lone CR is still refused. */
				r = eol(p);
			} else
				err = "Missing space between arguments";
			break;
		case ST_ATOM:
			if (c == '\\' || atom_char(c) || c == '%' ||
			    c == '*' || (c == ']' && !p->in_section)) {
				if (c == '\\') {
					/* only a flag's first char */
					err = "Invalid character in atom";
					break;
				}
				if (c == '[' && p->fetch && !p->in_section &&
				    p->depth <= 1) {
					struct frame *f;
					struct imap_arg *a;

					osp_buf_putc(&p->tok, '\0');
					p->tok.len--;
					if (!section_prefix(p->tok.data)) {
						osp_buf_putc(&p->tok, '[');
						break;
					}
					atom_done(p, &err);
					if (err != NULL)
						break;
					a = &p->stack[p->depth].list->args[
					    p->stack[p->depth].list->count - 1];
					a->type = IMAP_ARG_ATOM;
					a->has_section = true;
					f = &p->stack[++p->depth];
					f->list = &a->section;
					f->cap = 0;
					f->kind = FRAME_SECTION;
					p->in_section = true;
					p->section_arg = a;
					osp_buf_reset(&p->sect_raw);
					p->state = ST_ARG_START;
					break;
				}
				osp_buf_putc(&p->tok, (char)c);
				break;
			}
			atom_done(p, &err);
			if (err != NULL)
				break;
			if (c == '(') {
				/* "(" right after an atom, without the SP
				 * the grammar wants ("HEADER.FIELDS(From)"):
				 * tolerated as Dovecot does for FETCH
				 * items written by some clients. */
				i--;
				p->line_len--;
				p->state = ST_ARG_START;
				break;
			}
			if (c == '{' || c == '"' || c >= 0x80 || c < 0x20 ||
			    c == 0x7f) {
				if (c == '\r' || c == '\n') {
					i--;
					p->line_len--;
					break;
				}
				err = c >= 0x80 ? "8-bit data in atom" :
				    "Invalid character in atom";
				break;
			}
			/* SP ) ] end the atom like any argument */
			i--;
			p->line_len--;
			break;
		case ST_QUOTED:
			if (c == '"') {
				struct imap_arg *a;

				if ((p->flags & IMAP_PARSE_UTF8) &&
				    !utf8_valid((unsigned char *)p->tok.data,
				    p->tok.len)) {
					err = "Invalid UTF-8 in quoted string";
					break;
				}
				if ((a = arg_new(p, &err)) == NULL)
					break;
				a->type = IMAP_ARG_QUOTED;
				a->str = tok_str(p);
				a->len = p->tok.len;
				osp_buf_reset(&p->tok);
				p->state = ST_AFTER_ARG;
			} else if (c == '\\')
				p->state = ST_QUOTED_ESC;
			else if (c == '\r' || c == '\n')
				err = "Unterminated quoted string";
			else if (c == '\0')
				err = "NUL in quoted string";
			else if (c >= 0x80 && !(p->flags & IMAP_PARSE_UTF8))
				/* RFC 6855 §3: only after ENABLE */
				err = "8-bit data in quoted string";
			else
				osp_buf_putc(&p->tok, (char)c);
			break;
		case ST_QUOTED_ESC:
			/* QUOTED-CHAR: only \\ and \" (RFC 9051 §9) */
			if (c != '"' && c != '\\') {
				err = "Invalid escape in quoted string";
				break;
			}
			osp_buf_putc(&p->tok, (char)c);
			p->state = ST_QUOTED;
			break;
		case ST_TILDE:
			if (c == '{') {
				p->lit_size = 0;
				p->lit_plus = false;
				p->lit_binary = true;
				p->lit_digits = false;
				p->state = ST_LIT_LEN;
				break;
			}
			/* "~user": an atom that starts with '~' */
			osp_buf_reset(&p->tok);
			osp_buf_putc(&p->tok, '~');
			p->state = ST_ATOM;
			i--;
			p->line_len--;
			break;
		case ST_LIT_LEN:
			if (c >= '0' && c <= '9') {
				/* number64 (RFC 9051 §9) */
				if (p->lit_size > (INT64_MAX - 9) / 10) {
					/* a non-sync one would be followed
					 * by more than we can skip */
					fail_fatal(p, "Literal size too large");
					r = IMAP_PARSE_ERROR;
					break;
				}
				p->lit_size = p->lit_size * 10 + (c - '0');
				p->lit_digits = true;
			} else if (c == '+' && p->lit_digits)
				p->state = ST_LIT_PLUS, p->lit_plus = true;
			else if (c == '}' && p->lit_digits)
				p->state = ST_LIT_CR;
			else
				err = "Invalid literal size";
			break;
		case ST_LIT_PLUS:
			if (c == '}')
				p->state = ST_LIT_CR;
			else
				err = "Invalid literal size";
			break;
		case ST_LIT_CR:
		case ST_LIT_LF: {
			if (c == '\r' && st == ST_LIT_CR) {
				p->state = ST_LIT_LF;
				break;
			}
			if (c != '\n') {
				err = "Missing CRLF after literal size";
				break;
			}
			if (p->in_section)
				osp_buf_putc(&p->sect_raw, (char)c);
			/* {0+}: complete at once; {0}: after the "+" */
			r = literal_header(p);
			if (r == IMAP_PARSE_MORE && p->lit_left == 0)
				literal_arg(p, false);
			continue;
		}
		case ST_PARTIAL:
			if (c == '<') {
				p->part_num = 0;
				p->part_digits = false;
				p->state = ST_PARTIAL_OFF;
				break;
			}
			i--;
			p->line_len--;
			p->state = ST_AFTER_ARG;
			break;
		case ST_PARTIAL_OFF:
		case ST_PARTIAL_LEN: {
			struct imap_arg *a = &p->stack[p->depth].list->args[
			    p->stack[p->depth].list->count - 1];

			if (c >= '0' && c <= '9') {
				if (p->part_num > (UINT32_MAX - 9) / 10) {
					err = "Invalid partial range";
					break;
				}
				p->part_num = p->part_num * 10 + (c - '0');
				p->part_digits = true;
				break;
			}
			if (!p->part_digits ||
			    (c != '>' && (c != '.' || st != ST_PARTIAL_OFF))) {
				err = "Invalid partial range";
				break;
			}
			if (st == ST_PARTIAL_OFF) {
				a->has_partial = true;
				a->partial_offset = p->part_num;
			} else {
				if (p->part_num == 0) {
					/* nz-number */
					err = "Invalid partial range";
					break;
				}
				a->partial_has_len = true;
				a->partial_len = p->part_num;
			}
			p->part_num = 0;
			p->part_digits = false;
			p->state = c == '.' ? ST_PARTIAL_LEN : ST_AFTER_ARG;
			break;
		}
		case ST_TRAILING:
			if (c == '\r')
				p->state = ST_EOL_LF;
			else if (c == '\n')
				r = eol(p);
			else if (c != ' ')
				err = "Unexpected space";
			break;
		case ST_EOL_LF:
			if (c == '\n')
				r = eol(p);
			else
				err = "CR not followed by LF";
			break;
		default:
			abort();
		}
		/* section_raw: the bytes between '[' and ']' as sent */
		if (in_sect && p->in_section && err == NULL && i == at &&
		    p->state != ST_SKIP)
			osp_buf_putc(&p->sect_raw, (char)c);
		if (err != NULL) {
			/* the byte that caused the error may end the line
			 * or open a literal: let the resync scanner see it */
			i--;
			fail(p, err, false);
			r = IMAP_PARSE_ERROR;
		}
	}
	if (r == IMAP_PARSE_COMMAND || r == IMAP_PARSE_ERROR)
		p->reset_pending = true;
	*consumed_r = i;
	return r;
}

/* ---- dump ------------------------------------------------------------ */

static void
dump_bytes(struct osp_buf *b, const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c < 0x20 || c >= 0x7f)
			osp_buf_printf(b, "\\x%02x", c);
		else if (c == '"' || c == '\\') {
			osp_buf_putc(b, '\\');
			osp_buf_putc(b, (char)c);
		} else
			osp_buf_putc(b, (char)c);
	}
}

void
imap_args_dump(struct osp_buf *b, const struct imap_arg_list *l)
{
	size_t i;

	for (i = 0; i < l->count; i++) {
		const struct imap_arg *a = &l->args[i];

		if (i > 0)
			osp_buf_putc(b, ' ');
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			osp_buf_append(b, a->str, a->len);
			if (a->has_section) {
				osp_buf_putc(b, '[');
				imap_args_dump(b, &a->section);
				osp_buf_putc(b, ']');
			}
			if (a->has_partial) {
				osp_buf_printf(b, "<%llu",
				    (unsigned long long)a->partial_offset);
				if (a->partial_has_len)
					osp_buf_printf(b, ".%llu",
					    (unsigned long long)a->partial_len);
				osp_buf_putc(b, '>');
			}
			break;
		case IMAP_ARG_QUOTED:
			osp_buf_putc(b, '"');
			dump_bytes(b, a->str, a->len);
			osp_buf_putc(b, '"');
			break;
		case IMAP_ARG_LITERAL:
			osp_buf_printf(b, "%s{%zu%s:", a->literal8 ? "~" : "",
			    a->len, a->literal_sync ? "" : "+");
			if (a->streamed)
				osp_buf_puts(b, "streamed");
			else
				dump_bytes(b, a->str, a->len);
			osp_buf_putc(b, '}');
			break;
		case IMAP_ARG_LIST:
			osp_buf_putc(b, '(');
			imap_args_dump(b, &a->list);
			osp_buf_putc(b, ')');
			break;
		}
	}
}

/* ---- argument helpers ------------------------------------------------ */

const char *
imap_arg_atom(const struct imap_arg *a)
{
	if (a->type != IMAP_ARG_ATOM || a->has_section || a->has_partial)
		return NULL;
	return a->str;
}

const char *
imap_arg_string(const struct imap_arg *a)
{
	if (a->type == IMAP_ARG_QUOTED)
		return a->str;
	if (a->type == IMAP_ARG_LITERAL && !a->streamed && !a->literal8)
		return a->str;
	return NULL;
}

const char *
imap_arg_list_mailbox(const struct imap_arg *a)
{
	if ((a->type == IMAP_ARG_ATOM || a->type == IMAP_ARG_NIL) &&
	    !a->has_section && !a->has_partial && a->str[0] != '\\')
		return a->str;
	return imap_arg_string(a);
}

const char *
imap_arg_astring(const struct imap_arg *a)
{
	const char *s = imap_arg_list_mailbox(a);

	if (s == NULL)
		return NULL;
	if (a->type != IMAP_ARG_QUOTED && a->type != IMAP_ARG_LITERAL &&
	    strpbrk(s, "%*") != NULL)
		return NULL;
	return s;
}

bool
imap_arg_nstring(const struct imap_arg *a, const char **str_r)
{
	if (a->type == IMAP_ARG_NIL) {
		*str_r = NULL;
		return true;
	}
	*str_r = imap_arg_string(a);
	return *str_r != NULL;
}

/* ---- numbers --------------------------------------------------------- */

static bool
digits_u64(const char *s, uint64_t max, uint64_t *n_r)
{
	uint64_t n = 0;

	if (*s < '0' || *s > '9')
		return false;
	if (s[0] == '0' && s[1] != '\0')
		return false;
	for (; *s != '\0'; s++) {
		if (*s < '0' || *s > '9')
			return false;
		if (n > (max - (uint64_t)(*s - '0')) / 10)
			return false;
		n = n * 10 + (uint64_t)(*s - '0');
	}
	*n_r = n;
	return true;
}

bool
imap_parse_number(const char *s, uint32_t *n_r)
{
	uint64_t n;

	if (!digits_u64(s, UINT32_MAX, &n))
		return false;
	*n_r = (uint32_t)n;
	return true;
}

bool
imap_parse_number64(const char *s, uint64_t *n_r)
{
	return digits_u64(s, INT64_MAX, n_r);
}

bool
imap_parse_nz_number(const char *s, uint32_t *n_r)
{
	uint32_t n;

	if (!imap_parse_number(s, &n) || n == 0)
		return false;
	*n_r = n;
	return true;
}

/* ---- sequence sets --------------------------------------------------- */

static int
range_cmp(const void *a, const void *b)
{
	const struct imap_seq_range *x = a, *y = b;

	if (x->lo != y->lo)
		return x->lo < y->lo ? -1 : 1;
	return x->hi < y->hi ? -1 : x->hi > y->hi;
}

/* seq-number = nz-number / "*" */
static const char *
seq_number(const char *s, uint32_t star, uint32_t *n_r, const char **err_r)
{
	uint64_t n = 0;

	if (*s == '*') {
		*n_r = star;
		return s + 1;
	}
	if (*s < '1' || *s > '9') {
		*err_r = *s == '0' ? "Invalid message number 0" :
		    "Invalid sequence set";
		return NULL;
	}
	for (; *s >= '0' && *s <= '9'; s++) {
		n = n * 10 + (uint64_t)(*s - '0');
		if (n > UINT32_MAX) {
			*err_r = "Message number too large";
			return NULL;
		}
	}
	*n_r = (uint32_t)n;
	return s;
}

int
imap_parse_seqset(struct osp_pool *pool, const char *s, uint32_t star,
    bool allow_searchres, struct imap_seq_range **ranges_r, size_t *count_r,
    bool *searchres_r, const char **error_r)
{
	struct imap_seq_range *r;
	size_t n = 1, count = 0, i, out;
	const char *q;

	*ranges_r = NULL;
	*count_r = 0;
	*searchres_r = false;
	if (strcmp(s, "$") == 0) {
		if (!allow_searchres) {
			*error_r = "SEARCHRES not allowed here";
			return OSP_ERROR;
		}
		*searchres_r = true;
		return OSP_OK;
	}
	for (q = s; *q != '\0'; q++)
		if (*q == ',')
			n++;
	r = osp_pcalloc(pool, n, sizeof(*r));
	q = s;
	for (;;) {
		uint32_t a, b;

		if ((q = seq_number(q, star, &a, error_r)) == NULL)
			return OSP_ERROR;
		b = a;
		if (*q == ':') {
			if ((q = seq_number(q + 1, star, &b, error_r)) == NULL)
				return OSP_ERROR;
		}
		/* "5:2" is the same as "2:5" (RFC 9051 §9 seq-range) */
		r[count].lo = a < b ? a : b;
		r[count].hi = a < b ? b : a;
		count++;
		if (*q == '\0')
			break;
		if (*q != ',') {
			*error_r = "Invalid sequence set";
			return OSP_ERROR;
		}
		q++;
	}
	qsort(r, count, sizeof(*r), range_cmp);
	for (i = 1, out = 0; i < count; i++) {
		if (r[out].hi == UINT32_MAX || r[i].lo <= r[out].hi + 1) {
			if (r[i].hi > r[out].hi)
				r[out].hi = r[i].hi;
		} else
			r[++out] = r[i];
	}
	*ranges_r = r;
	*count_r = out + 1;
	return OSP_OK;
}

/* ---- dates ----------------------------------------------------------- */

static const char *const months[12] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* Days since 1970-01-01 of a civil date (proleptic Gregorian). */
static int64_t
days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* "d-Mon-yyyy" / "dd-Mon-yyyy" (or " d-" when fixed); returns the rest. */
static const char *
date_text(const char *s, bool fixed, int64_t *days_r)
{
	unsigned d, m, y, i;
	static const unsigned mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31,
	    30, 31, 30, 31 };

	if (fixed && s[0] == ' ' && is_digit(s[1])) {
		d = (unsigned)(s[1] - '0');
		s += 2;
	} else if (is_digit(s[0]) && is_digit(s[1])) {
		d = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
		s += 2;
	} else if (!fixed && is_digit(s[0])) {
		d = (unsigned)(s[0] - '0');
		s += 1;
	} else
		return NULL;
	if (*s++ != '-')
		return NULL;
	for (m = 0; m < 12; m++)
		if (strncasecmp(s, months[m], 3) == 0)
			break;
	if (m == 12 || s[3] != '-')
		return NULL;
	s += 4;
	for (i = 0, y = 0; i < 4; i++) {
		if (!is_digit(s[i]))
			return NULL;
		y = y * 10 + (unsigned)(s[i] - '0');
	}
	s += 4;
	if (d == 0 || d > mdays[m])
		return NULL;
	if (m == 1 && d == 29 &&
	    !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return NULL;
	*days_r = days_from_civil(y, m + 1, d);
	return s;
}

int
imap_parse_date(const char *s, time_t *t_r)
{
	int64_t days;

	if ((s = date_text(s, false, &days)) == NULL || *s != '\0')
		return OSP_ERROR;
	*t_r = (time_t)(days * 86400);
	return OSP_OK;
}

static bool
two_digits(const char *s, unsigned max, unsigned *v_r)
{
	if (!is_digit(s[0]) || !is_digit(s[1]))
		return false;
	*v_r = (unsigned)(s[0] - '0') * 10 + (unsigned)(s[1] - '0');
	return *v_r <= max;
}

int
imap_parse_datetime(const char *s, time_t *t_r, int *zone_r)
{
	int64_t days, t;
	unsigned hh, mm, ss, zh, zm;
	int sign;

	/* date-day-fixed "-" date-month "-" date-year SP time SP zone */
	if ((s = date_text(s, true, &days)) == NULL || *s++ != ' ')
		return OSP_ERROR;
	if (!two_digits(s, 23, &hh) || s[2] != ':' ||
	    !two_digits(s + 3, 59, &mm) || s[5] != ':' ||
	    !two_digits(s + 6, 60, &ss) || s[8] != ' ')
		return OSP_ERROR;
	s += 9;
	if (*s != '+' && *s != '-')
		return OSP_ERROR;
	sign = *s == '-' ? -1 : 1;
	if (!two_digits(s + 1, 99, &zh) || !two_digits(s + 3, 59, &zm) ||
	    s[5] != '\0')
		return OSP_ERROR;
	if (ss == 60)
		ss = 59;	/* a leap second: keep it in its minute */
	t = days * 86400 + hh * 3600 + mm * 60 + ss;
	*zone_r = sign * (int)(zh * 60 + zm);
	t -= (int64_t)*zone_r * 60;
	*t_r = (time_t)t;
	return OSP_OK;
}
