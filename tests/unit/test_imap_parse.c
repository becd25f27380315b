/* SPDX-License-Identifier: ISC */
/* Unit tests: the IMAP command parser (tables of input -> events and
 * argument trees, every error reason and its resync, every split of the
 * input), literal handover, sequence sets, dates and numbers. */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"
#include "testutil.h"

/* The tables below leave trailing fields out: zero is their default. */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

static int failures;

#define CHECK(cond, ...) do {						\
	if (!(cond)) {							\
		fprintf(stderr, "  FAIL %s:%d: ", __FILE__, __LINE__);	\
		fprintf(stderr, __VA_ARGS__);				\
		fprintf(stderr, "\n");					\
		failures++;						\
		CU_FAIL(#cond);						\
	}								\
} while (0)

#define LP	IMAP_PARSE_LITERAL_PLUS

/*
 * A session stand-in. Feeds `in` (len bytes) in chunks of `chunk` bytes
 * (0: all at once; `cut` > 0: two parts split there), and records events:
 *   "CMD tag NAME args"  a command, args as imap_args_dump() writes them
 *   "BAD tag reason"     an error (tag "*" when unknown), " FATAL"
 *   "LIT n[+][~][ S]"    a literal header (S: offered as a stream)
 *   "TOOK n"             the session drained a stream itself
 *   "REFUSED"            the session refused a literal >= refuse_at
 * joined by " | ". Stops after a fatal error.
 */
struct run {
	unsigned	 flags;
	struct imap_parser_limits lim;
	uint64_t	 refuse_at;	/* 0: never */
	size_t		 chunk;
	size_t		 cut;
};

static char *
run_parser(const struct run *rn, const char *in, size_t len)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct imap_parser *p = imap_parser_new(pool, &rn->lim);
	struct osp_buf out = {0};
	size_t pos = 0, avail, used, guard = 0;
	enum imap_parse_result r;
	char *res;

	imap_parser_set_flags(p, rn->flags);
	avail = rn->cut > 0 ? rn->cut : rn->chunk > 0 ? rn->chunk : len;
	if (avail > len)
		avail = len;
	for (;;) {
		if (++guard > 10 * len + 100) {
			osp_buf_puts(&out, " | LOOP");
			break;
		}
		r = imap_parser_feed(p, (const unsigned char *)in + pos,
		    avail - pos, &used);
		if (used > avail - pos)
			abort();
		pos += used;
		if (r == IMAP_PARSE_MORE) {
			if (pos != avail)
				osp_buf_puts(&out, " | SHORT");
			if (avail == len)
				break;
			avail = rn->chunk > 0 ? avail + rn->chunk : len;
			if (avail > len)
				avail = len;
			continue;
		}
		if (out.len > 0)
			osp_buf_puts(&out, " | ");
		if (r == IMAP_PARSE_COMMAND) {
			const struct imap_cmd *c = imap_parser_command(p);

			osp_buf_printf(&out, "CMD %s %s", c->tag, c->name);
			if (c->args.count > 0) {
				osp_buf_putc(&out, ' ');
				imap_args_dump(&out, &c->args);
			}
		} else if (r == IMAP_PARSE_ERROR) {
			const struct imap_cmd *c = imap_parser_command(p);
			bool fatal;
			const char *why = imap_parser_error(p, &fatal);

			osp_buf_printf(&out, "BAD %s %s%s",
			    c->tag != NULL ? c->tag : "*", why,
			    fatal ? " FATAL" : "");
			if (fatal)
				break;
		} else {
			struct imap_literal_info li;

			imap_parser_literal(p, &li);
			osp_buf_printf(&out, "LIT %llu%s%s%s",
			    (unsigned long long)li.size, li.sync ? "" : "+",
			    li.literal8 ? "~" : "", li.stream ? " S" : "");
			if (rn->refuse_at > 0 && li.size >= rn->refuse_at) {
				imap_parser_literal_refuse(p);
				osp_buf_puts(&out, " | REFUSED");
			} else if (li.stream) {
				/* the session drains the bytes itself */
				uint64_t left = li.size;

				while (left > 0) {
					size_t n = avail - pos;

					if (n > left)
						n = (size_t)left;
					pos += n;
					left -= n;
					if (left > 0 && avail == len)
						break;
					if (left > 0)
						avail = len;
				}
				osp_buf_printf(&out, " | TOOK %llu",
				    (unsigned long long)(li.size - left));
				if (left > 0)
					break;
				imap_parser_literal_streamed(p);
			}
		}
	}
	res = osp_strdup(out.data != NULL ? out.data : "");
	osp_buf_deinit(&out);
	osp_pool_free(pool);
	return res;
}

struct pcase {
	const char	*in;
	const char	*want;
	unsigned	 flags;		/* LP when zero: set NOLP to clear */
	size_t		 len;		/* 0: strlen */
	size_t		 max_line, max_args, max_inline;
	unsigned	 max_depth;
	uint64_t	 max_literal, refuse_at;
};
#define NOLP	0x100

/* Runs one case whole, byte by byte, in chunks of 3 and 7, and cut in
 * two at every position: all must give `want`. */
static void
check_case(const struct pcase *t)
{
	struct run rn;
	size_t len = t->len != 0 ? t->len : strlen(t->in), k;
	char *got;
	static const size_t chunks[] = { 0, 1, 3, 7 };

	memset(&rn, 0, sizeof(rn));
	rn.flags = t->flags == 0 ? LP : t->flags & ~(unsigned)NOLP;
	rn.lim.max_line = t->max_line;
	rn.lim.max_args = t->max_args;
	rn.lim.max_inline = t->max_inline;
	rn.lim.max_depth = t->max_depth;
	rn.lim.max_literal = t->max_literal;
	rn.refuse_at = t->refuse_at;
	for (k = 0; k < sizeof(chunks) / sizeof(chunks[0]); k++) {
		rn.chunk = chunks[k];
		got = run_parser(&rn, t->in, len);
		CHECK(strcmp(got, t->want) == 0,
		    "chunk %zu: input [%.60s]\n    want [%s]\n    got  [%s]",
		    chunks[k], t->in, t->want, got);
		osp_free(got);
	}
	rn.chunk = 0;
	for (k = 1; k < len && len < 6000; k++) {
		rn.cut = k;
		got = run_parser(&rn, t->in, len);
		CHECK(strcmp(got, t->want) == 0,
		    "cut %zu: input [%.60s]\n    want [%s]\n    got  [%s]",
		    k, t->in, t->want, got);
		if (strcmp(got, t->want) != 0) {
			osp_free(got);
			break;
		}
		osp_free(got);
	}
}

static void
check_cases(const struct pcase *t, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		check_case(&t[i]);
}

#define N(a)	(sizeof(a) / sizeof((a)[0]))

static void
test_tokens(void)
{
	static const struct pcase t[] = {
	{ "a1 NOOP\r\n", "CMD a1 NOOP" },
	{ "A1 login user pass\r\n", "CMD A1 LOGIN user pass" },
	{ "A2 LOGIN \"fred\" \"a\\\"b\\\\c\"\r\n",
	  "CMD A2 LOGIN \"fred\" \"a\\\"b\\\\c\"" },
	{ "A3 LOGIN \"\" \"\"\r\n", "CMD A3 LOGIN \"\" \"\"" },
	{ "A STATUS nil (MESSAGES UIDNEXT)\r\n",
	  "CMD A STATUS nil (MESSAGES UIDNEXT)" },
	{ "A X (a (b c) () ((d)))\r\n", "CMD A X (a (b c) () ((d)))" },
	{ "A STORE 1 +FLAGS (\\Seen \\Deleted $Forwarded)\r\n",
	  "CMD A STORE 1 +FLAGS (\\Seen \\Deleted $Forwarded)" },
	{ "A X \\*\r\n", "CMD A X \\*" },
	{ "A FETCH 1:*,5,7:3 FLAGS\r\n", "CMD A FETCH 1:*,5,7:3 FLAGS" },
	{ "A FETCH 1 BODY.PEEK[HEADER.FIELDS (From To)]<0.100>\r\n",
	  "CMD A FETCH 1 BODY.PEEK[HEADER.FIELDS (From To)]<0.100>" },
	{ "A UID FETCH 1 (BODY[] BINARY[1.2] BINARY.SIZE[1] BODY[1.MIME]<5>)"
	  "\r\n", "CMD A UID FETCH 1 (BODY[] BINARY[1.2] BINARY.SIZE[1] "
	  "BODY[1.MIME]<5>)" },
	{ "A FETCH 1 body[text]\r\n", "CMD A FETCH 1 body[text]" },
	/* '[' is an ATOM-CHAR outside FETCH; ']' allowed in astring */
	{ "A SELECT a[b\r\n", "CMD A SELECT a[b" },
	{ "A SELECT BODY[x\r\n", "CMD A SELECT BODY[x" },
	{ "A SELECT foo]bar\r\n", "CMD A SELECT foo]bar" },
	{ "A FETCH 1 X[Y]\r\n", "CMD A FETCH 1 X[Y]" },
	{ "A LIST \"\" %/*\r\n", "CMD A LIST \"\" %/*" },
	{ "A SELECT ~user/mail\r\n", "CMD A SELECT ~user/mail" },
	{ "A SELECT ~\r\n", "CMD A SELECT ~" },
	{ "tag]x NOOP\r\n", "CMD tag]x NOOP" },
	/* literals */
	{ "A LOGIN {4+}\r\nfred {3+}\r\nx\r\n\r\n",
	  "CMD A LOGIN {4+:fred} {3+:x\\x0d\\x0a}" },
	{ "A LOGIN {4}\r\nfred pw\r\n", "LIT 4 | CMD A LOGIN {4:fred} pw" },
	{ "A LOGIN {4}\nfred {2}\r\npw\n",
	  "LIT 4 | LIT 2 | CMD A LOGIN {4:fred} {2:pw}" },
	{ "A LOGIN {0}\r\n {0+}\r\n\r\n", "LIT 0 | CMD A LOGIN {0:} {0+:}" },
	{ "A X ({1+}\r\n))\r\n", "CMD A X ({1+:)})" },
	{ "A APPEND INBOX ~{3+}\r\na\0b\r\n",
	  "CMD A APPEND INBOX ~{3+:a\\x00b}", 0, 27 },
	{ "A APPEND INBOX ~{3}\r\na\0b\r\n",
	  "LIT 3~ | CMD A APPEND INBOX ~{3:a\\x00b}", 0, 26 },
	/* quirks */
	{ "A FETCH 1 BODY.PEEK[HEADER.FIELDS(From)]\r\n",
	  "CMD A FETCH 1 BODY.PEEK[HEADER.FIELDS (From)]" },
	{ "A FETCH 1 FLAGS \r\n", "CMD A FETCH 1 FLAGS" },
	{ "A NOOP  \r\n", "CMD A NOOP" },
	{ "A X a  \r\n", "CMD A X a" },
	{ "A X (a) \n", "CMD A X (a)" },
	{ "A NOOP\n", "CMD A NOOP" },
	{ "\r\n\n\r\nA NOOP\r\n\r\n", "CMD A NOOP" },
	{ "A NOOP\r\nB CHECK\r\nC LOGOUT\r\n",
	  "CMD A NOOP | CMD B CHECK | CMD C LOGOUT" },
	{ "A SELECT \"\xc3\xa5\"\r\n", "CMD A SELECT \"\\xc3\\xa5\"",
	  LP | IMAP_PARSE_UTF8 },
	{ "A SELECT {2+}\r\n\xc3\xa5\r\n", "CMD A SELECT {2+:\\xc3\\xa5}" },
	};

	check_cases(t, N(t));
}

static void
test_errors(void)
{
	static const struct pcase t[] = {
	{ "* NOOP\r\nZ NOOP\r\n", "BAD * Invalid tag | CMD Z NOOP" },
	{ "+ NOOP\r\nZ NOOP\r\n", "BAD * Invalid tag | CMD Z NOOP" },
	{ "A1\r\nZ NOOP\r\n", "BAD A1 Missing command name | CMD Z NOOP" },
	{ "A1 \r\nZ NOOP\r\n", "BAD A1 Missing command name | CMD Z NOOP" },
	{ "A1  NOOP\r\nZ NOOP\r\n", "BAD A1 Unexpected space | CMD Z NOOP" },
	{ "A N(\r\nZ NOOP\r\n",
	  "BAD A Invalid character in command name | CMD Z NOOP" },
	{ "A X (a\r\nZ NOOP\r\n", "BAD A Missing ')' | CMD Z NOOP" },
	{ "A X (a \r\nZ NOOP\r\n", "BAD A Missing ')' | CMD Z NOOP" },
	{ "A X a)\r\nZ NOOP\r\n", "BAD A Unexpected ')' | CMD Z NOOP" },
	{ "A X )\r\nZ NOOP\r\n", "BAD A Unexpected ')' | CMD Z NOOP" },
	{ "A X (a )\r\nZ NOOP\r\n",
	  "BAD A Unexpected space before ')' | CMD Z NOOP" },
	{ "A X ( a)\r\nZ NOOP\r\n", "BAD A Unexpected space | CMD Z NOOP" },
	{ "A X a  b\r\nZ NOOP\r\n", "BAD A Unexpected space | CMD Z NOOP" },
	{ "A X \"abc\r\nZ NOOP\r\n",
	  "BAD A Unterminated quoted string | CMD Z NOOP" },
	{ "A X \"a\\b\"\r\nZ NOOP\r\n",
	  "BAD A Invalid escape in quoted string | CMD Z NOOP" },
	{ "A X \"a\"b\r\nZ NOOP\r\n",
	  "BAD A Missing space between arguments | CMD Z NOOP" },
	{ "A X (a)(b)\r\nZ NOOP\r\n",
	  "BAD A Missing space between arguments | CMD Z NOOP" },
	{ "A X a\\b\r\nZ NOOP\r\n",
	  "BAD A Invalid character in atom | CMD Z NOOP" },
	{ "A X a\"b\r\nZ NOOP\r\n",
	  "BAD A Invalid character in atom | CMD Z NOOP" },
	{ "A X \x01\r\nZ NOOP\r\n", "BAD A Invalid character | CMD Z NOOP" },
	{ "A X \xc3\xa5\r\nZ NOOP\r\n", "BAD A 8-bit data in atom | CMD Z NOOP" },
	{ "A X a\xc3\xa5\r\nZ NOOP\r\n",
	  "BAD A 8-bit data in atom | CMD Z NOOP" },
	{ "A X \"\xc3\xa5\"\r\nZ NOOP\r\n",
	  "BAD A 8-bit data in quoted string | CMD Z NOOP" },
	{ "A X \"\xc3\"\r\nZ NOOP\r\n",
	  "BAD A Invalid UTF-8 in quoted string | CMD Z NOOP",
	  LP | IMAP_PARSE_UTF8 },
	{ "A X \"\xed\xa0\x80\"\r\nZ NOOP\r\n",
	  "BAD A Invalid UTF-8 in quoted string | CMD Z NOOP",
	  LP | IMAP_PARSE_UTF8 },
	{ "A X \"a\0\"\r\nZ NOOP\r\n", "BAD A NUL in quoted string | CMD Z NOOP",
	  0, 18 },
	/* an error before a sync literal: the client waits for "+" and
	 * gets BAD, so the line ends at the literal's CRLF */
	{ "A X ab{5}\r\nZ NOOP\r\n",
	  "BAD A Invalid character in atom | CMD Z NOOP" },
	{ "A X ) {5}\r\nZ NOOP\r\n", "BAD A Unexpected ')' | CMD Z NOOP" },
	/* ... but a non-sync literal's bytes still come and are skipped */
	{ "A X ) {5+}\r\nZ NOO\r\nZ NOOP\r\n",
	  "BAD A Unexpected ')' | CMD Z NOOP" },
	{ "A X ) {5+}\r\n\r\n\r\n\r\nZ NOOP\r\n",
	  "BAD A Unexpected ')' | CMD Z NOOP" },
	{ "A X {5x}\r\nZ NOOP\r\n", "BAD A Invalid literal size | CMD Z NOOP" },
	{ "A X {}\r\nZ NOOP\r\n", "BAD A Invalid literal size | CMD Z NOOP" },
	{ "A X {+}\r\nZ NOOP\r\n", "BAD A Invalid literal size | CMD Z NOOP" },
	{ "A X {5+x\r\nZ NOOP\r\n",
	  "BAD A Invalid literal size | CMD Z NOOP" },
	{ "A X {5}x\r\nZ NOOP\r\n",
	  "BAD A Missing CRLF after literal size | CMD Z NOOP" },
	{ "A X {5}\rx\r\nZ NOOP\r\n",
	  "BAD A Missing CRLF after literal size | CMD Z NOOP" },
	{ "A X {99999999999999999999+}\r\nZ NOOP\r\n",
	  "BAD A Literal size too large FATAL" },
	{ "A NOOP\rX\r\nZ NOOP\r\n", "BAD A CR not followed by LF | CMD Z NOOP" },
	{ "A FETCH 1 BODY[HEADER\r\nZ NOOP\r\n", "BAD A Missing ']' | CMD Z NOOP" },
	{ "A FETCH 1 BODY[HEADER \r\nZ NOOP\r\n",
	  "BAD A Missing ']' | CMD Z NOOP" },
	{ "A FETCH 1 BODY[HEADER ]\r\nZ NOOP\r\n",
	  "BAD A Invalid character | CMD Z NOOP" },
	{ "A FETCH 1 BODY[(a]\r\nZ NOOP\r\n",
	  "BAD A Missing space between arguments | CMD Z NOOP" },
	{ "A FETCH 1 BODY[]<1.0>\r\nZ NOOP\r\n",
	  "BAD A Invalid partial range | CMD Z NOOP" },
	{ "A FETCH 1 BODY[]<x>\r\nZ NOOP\r\n",
	  "BAD A Invalid partial range | CMD Z NOOP" },
	{ "A FETCH 1 BODY[]<1.>\r\nZ NOOP\r\n",
	  "BAD A Invalid partial range | CMD Z NOOP" },
	{ "A FETCH 1 BODY[]<1.2.3>\r\nZ NOOP\r\n",
	  "BAD A Invalid partial range | CMD Z NOOP" },
	{ "A FETCH 1 BODY[]<99999999999>\r\nZ NOOP\r\n",
	  "BAD A Invalid partial range | CMD Z NOOP" },
	{ "A FETCH 1 BODY[]x\r\nZ NOOP\r\n",
	  "BAD A Missing space between arguments | CMD Z NOOP" },
	{ "A X {3+}\r\na\0b c\r\nZ NOOP\r\n", "BAD A NUL in literal | CMD Z NOOP",
	  0, 25 },
	/* non-sync literals need LITERAL+ or LITERAL- (RFC 7888 §4) */
	{ "A X {5+}\r\nab\r\nc def\r\nZ NOOP\r\n",
	  "BAD A Non-synchronizing literal not allowed | CMD Z NOOP", NOLP },
	{ "A X {5}\r\nab\r\nc def\r\nZ NOOP\r\n",
	  "LIT 5 | CMD A X {5:ab\\x0d\\x0ac} def | CMD Z NOOP", NOLP },
	/* limits */
	{ "A X aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nZ NOOP\r\n",
	  "BAD A Command line too long | CMD Z NOOP", 0, 0, 32 },
	{ "A X {5+}\r\n12345 678901234567890123456789b\r\nZ NOOP\r\n",
	  "CMD A X {5+:12345} 678901234567890123456789b | CMD Z NOOP",
	  0, 0, 40 },
	{ "A X a b c d\r\nZ NOOP\r\n", "BAD A Too many arguments | CMD Z NOOP",
	  0, 0, 0, 3 },
	{ "A X (a (b)) c\r\nZ NOOP\r\n", "BAD A Too many arguments | CMD Z NOOP",
	  0, 0, 0, 3 },
	{ "A X a b c\r\nZ NOOP\r\n", "CMD A X a b c | CMD Z NOOP", 0, 0, 0, 3 },
	{ "A X a b c {2+}\r\nxy\r\nZ NOOP\r\n",
	  "BAD A Too many arguments | CMD Z NOOP", 0, 0, 0, 3 },
	{ "A X a b c {2}\r\nZ NOOP\r\n",
	  "BAD A Too many arguments | CMD Z NOOP", 0, 0, 0, 3 },
	{ "A X a b {2}\r\nxy\r\nZ NOOP\r\n",
	  "LIT 2 | CMD A X a b {2:xy} | CMD Z NOOP", 0, 0, 0, 3 },
	{ "A X (((a)))\r\nZ NOOP\r\n", "CMD A X (((a))) | CMD Z NOOP",
	  0, 0, 0, 0, 0, 3 },
	{ "A X ((((a))))\r\nZ NOOP\r\n",
	  "BAD A Too deeply nested lists | CMD Z NOOP", 0, 0, 0, 0, 0, 3 },
	/* a section does not count as a nesting level */
	{ "A FETCH 1 (BODY[HEADER.FIELDS (a)])\r\nZ NOOP\r\n",
	  "CMD A FETCH 1 (BODY[HEADER.FIELDS (a)]) | CMD Z NOOP",
	  0, 0, 0, 0, 0, 2 },
	{ "A FETCH 1 (BODY[HEADER.FIELDS ((a))])\r\nZ NOOP\r\n",
	  "BAD A Too deeply nested lists | CMD Z NOOP", 0, 0, 0, 0, 0, 2 },
	/* fetch attributes only at the top or in the FETCH list */
	{ "A FETCH 1 ((BODY[x]))\r\nZ NOOP\r\n",
	  "CMD A FETCH 1 ((BODY[x])) | CMD Z NOOP" },
	/* over max_literal: sync is simply refused, non-sync is fatal */
	{ "A X {101}\r\nZ NOOP\r\n",
	  "BAD A [TOOBIG] Literal too large | CMD Z NOOP",
	  0, 0, 0, 0, 0, 0, 100 },
	{ "A X {101+}\r\nZ NOOP\r\n", "BAD A [TOOBIG] Literal too large FATAL",
	  0, 0, 0, 0, 0, 0, 100 },
	{ "A X {100}\r\n", "LIT 100",
	  0, 0, 0, 0, 0, 0, 100 },
	};
	struct pcase big;
	char *s;

	check_cases(t, N(t));
	/* nesting beyond the default 32 */
	s = osp_malloc(200);
	snprintf(s, 200, "A X %.*s\r\nZ NOOP\r\n", 33,
	    "((((((((((((((((((((((((((((((((((((((((((((");
	memset(&big, 0, sizeof(big));
	big.in = s;
	big.want = "BAD A Too deeply nested lists | CMD Z NOOP";
	check_case(&big);
	osp_free(s);
}

/* The section text, kept for the FETCH response. */
static void
test_section_raw(void)
{
	static const char *const in[][2] = {
		{ "A FETCH 1 BODY.PEEK[HEADER.FIELDS (From To)]\r\n",
		  "HEADER.FIELDS (From To)" },
		{ "A FETCH 1 (BODY[] FLAGS)\r\n", "" },
		{ "A FETCH 1 BODY[1.2.MIME]<0.10>\r\n", "1.2.MIME" },
		{ "A FETCH 1 BODY[HEADER.FIELDS(\"A\\\"\" {1+}\r\nB)]\r\n",
		  "HEADER.FIELDS(\"A\\\"\" {1+}\r\nB)" },
	};
	size_t i, used;
	struct osp_pool *pool;
	struct imap_parser *p;
	const struct imap_cmd *c;
	const struct imap_arg *a;

	for (i = 0; i < N(in); i++) {
		pool = osp_pool_new(NULL);
		p = imap_parser_new(pool, NULL);
		imap_parser_set_flags(p, LP);
		CU_ASSERT_EQUAL(imap_parser_feed(p, (const unsigned char *)
		    in[i][0], strlen(in[i][0]), &used), IMAP_PARSE_COMMAND);
		c = imap_parser_command(p);
		a = &c->args.args[1];
		if (a->type == IMAP_ARG_LIST)
			a = &a->list.args[0];
		CHECK(a->has_section && a->section_raw != NULL &&
		    strcmp(a->section_raw, in[i][1]) == 0, "raw [%s] for %s",
		    a->section_raw != NULL ? a->section_raw : "(null)",
		    in[i][0]);
		osp_pool_free(pool);
	}
}

/* Literals: LITERAL- boundary, streams, refusals, the partial view. */
static void
test_literals(void)
{
	struct pcase t;
	struct osp_buf in = {0}, want = {0};
	size_t i, hdr;

	/* LITERAL-: {4096+} is fine, {4097+} is BAD [TOOBIG] and skipped */
	for (i = 4096; i <= 4097; i++) {
		osp_buf_reset(&in);
		osp_buf_reset(&want);
		osp_buf_printf(&in, "A APPEND INBOX {%zu+}\r\n", i);
		hdr = in.len;
		while (in.len < hdr + i)
			osp_buf_putc(&in, 'x');
		osp_buf_puts(&in, "\r\nZ NOOP\r\n");
		if (i == 4096)
			osp_buf_puts(&want, "LIT 4096+ S | TOOK 4096 | "
			    "CMD A APPEND INBOX {4096+:streamed} | CMD Z NOOP");
		else
			osp_buf_puts(&want, "BAD A [TOOBIG] Non-synchronizing "
			    "literal over 4096 bytes with LITERAL- | "
			    "CMD Z NOOP");
		memset(&t, 0, sizeof(t));
		t.in = in.data;
		t.want = want.data;
		t.flags = IMAP_PARSE_LITERAL_MINUS;
		t.max_inline = 1000;
		check_case(&t);
		/* LITERAL+ takes both */
		t.flags = LP;
		if (i == 4097) {
			osp_buf_reset(&want);
			osp_buf_puts(&want, "LIT 4097+ S | TOOK 4097 | "
			    "CMD A APPEND INBOX {4097+:streamed} | CMD Z NOOP");
			check_case(&t);
		}
	}
	osp_buf_deinit(&in);
	osp_buf_deinit(&want);

	static const struct pcase s[] = {
	/* streams: over max_inline (here 8) */
	{ "A APPEND INBOX (\\Seen) \"24-Nov-2026 10:00:00 +0100\" {20}\r\n"
	  "01234567890123456789\r\n",
	  "LIT 20 S | TOOK 20 | CMD A APPEND INBOX (\\Seen) "
	  "\"24-Nov-2026 10:00:00 +0100\" {20:streamed}", 0, 0, 0, 0, 8 },
	/* MULTIAPPEND: several streams and an inline one */
	{ "A APPEND INBOX {10+}\r\n0123456789 (\\Seen) {3}\r\nabc"
	  " {9}\r\n012345678\r\n",
	  "LIT 10+ S | TOOK 10 | LIT 3 | LIT 9 S | TOOK 9 | CMD A APPEND INBOX "
	  "{10+:streamed} (\\Seen) {3:abc} {9:streamed}", 0, 0, 0, 0, 8 },
	{ "A APPEND INBOX ~{10}\r\n0123\0\0\r\n89\r\n",
	  "LIT 10~ S | TOOK 10 | CMD A APPEND INBOX ~{10:streamed}",
	  0, 34, 0, 0, 8 },
	/* refusals: a sync literal ends the command, a non-sync one's
	 * bytes are skipped with the rest of the line */
	{ "A APPEND INBOX {20}\r\nZ NOOP\r\n",
	  "LIT 20 S | REFUSED | CMD Z NOOP", 0, 0, 0, 0, 8, 0, 0, 20 },
	{ "A LOGIN {5}\r\nZ NOOP\r\n",
	  "LIT 5 | REFUSED | CMD Z NOOP", 0, 0, 0, 0, 0, 0, 0, 5 },
	{ "A APPEND INBOX {20+}\r\n01234567\r\n0123456789 x {1+}\r\n"
	  "\n\r\nZ NOOP\r\n",
	  "LIT 20+ S | REFUSED | CMD Z NOOP", 0, 0, 0, 0, 8, 0, 0, 20 },
	};
	check_cases(s, N(s));
}

/* The partial view at a literal: APPEND checks mailbox and size before
 * the "+" (RFC 7889 §4). */
static void
test_partial_view(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct imap_parser_limits lim = { .max_inline = 100 };
	struct imap_parser *p = imap_parser_new(pool, &lim);
	const char *in = "A1 APPEND Sent (\\Seen) {1000}\r\n";
	struct imap_literal_info li;
	const struct imap_cmd *c;
	size_t used;

	CU_ASSERT_EQUAL(imap_parser_feed(p, (const unsigned char *)in,
	    strlen(in), &used), IMAP_PARSE_LITERAL);
	CU_ASSERT_EQUAL(used, strlen(in));
	imap_parser_literal(p, &li);
	CU_ASSERT(li.sync && li.stream && !li.literal8 && li.size == 1000);
	c = imap_parser_command(p);
	CU_ASSERT_STRING_EQUAL(c->tag, "A1");
	CU_ASSERT_STRING_EQUAL(c->name, "APPEND");
	CU_ASSERT_EQUAL(c->args.count, 2);
	CU_ASSERT_STRING_EQUAL(imap_arg_astring(&c->args.args[0]), "Sent");
	CU_ASSERT_EQUAL(c->args.args[1].type, IMAP_ARG_LIST);
	imap_parser_literal_streamed(p);
	CU_ASSERT_EQUAL(imap_parser_feed(p, (const unsigned char *)"\r\n", 2,
	    &used), IMAP_PARSE_COMMAND);
	c = imap_parser_command(p);
	CU_ASSERT_EQUAL(c->args.count, 3);
	CU_ASSERT(c->args.args[2].streamed && c->args.args[2].len == 1000 &&
	    c->args.args[2].str == NULL);
	osp_pool_free(pool);
}

/* Command lines as real clients send them. */
static void
test_clients(void)
{
	static const struct pcase t[] = {
	/* Thunderbird */
	{ "1 capability\r\n", "CMD 1 CAPABILITY" },
	{ "x ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")\r\n",
	  "CMD x ID (\"name\" \"Thunderbird\" \"version\" \"115.0\")" },
	{ "A1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
	  "(From To Cc Bcc Subject Date Message-ID Priority X-Priority "
	  "References Newsgroups In-Reply-To Content-Type Reply-To)])\r\n",
	  "CMD A1 UID FETCH 1:* (UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS "
	  "(From To Cc Bcc Subject Date Message-ID Priority X-Priority "
	  "References Newsgroups In-Reply-To Content-Type Reply-To)])" },
	{ "7 uid store 1:3 +FLAGS (\\Deleted)\r\n",
	  "CMD 7 UID store 1:3 +FLAGS (\\Deleted)" },
	{ "12 select \"INBOX\" (CONDSTORE)\r\n",
	  "CMD 12 SELECT \"INBOX\" (CONDSTORE)" },
	{ "9 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)\r\n",
	  "CMD 9 UID fetch 1:* (FLAGS) (CHANGEDSINCE 12345)" },
	{ "5 append \"Sent\" (\\Seen) \" 4-Jul-2023 09:05:01 -0700\" {12}\r\n"
	  "Subject: x\r\n\r\n",
	  "LIT 12 | CMD 5 APPEND \"Sent\" (\\Seen) \" 4-Jul-2023 09:05:01 "
	  "-0700\" {12:Subject: x\\x0d\\x0a}" },
	/* Apple Mail */
	{ "a SELECT INBOX (CONDSTORE)\r\n", "CMD a SELECT INBOX (CONDSTORE)" },
	{ "3.42 UID FETCH 100:* (FLAGS UID) (CHANGEDSINCE 77 VANISHED)\r\n",
	  "CMD 3.42 UID FETCH 100:* (FLAGS UID) (CHANGEDSINCE 77 VANISHED)" },
	{ "4.2 SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211,"
	  "214:541))\r\n", "CMD 4.2 SELECT INBOX (QRESYNC (67890007 "
	  "20050715194045000 41,43:211,214:541))" },
	{ "6.1 LIST (SUBSCRIBED) \"\" \"*\" RETURN (CHILDREN SPECIAL-USE "
	  "STATUS (MESSAGES UNSEEN))\r\n", "CMD 6.1 LIST (SUBSCRIBED) \"\" "
	  "\"*\" RETURN (CHILDREN SPECIAL-USE STATUS (MESSAGES UNSEEN))" },
	/* mbsync */
	{ "3 UID FETCH 1:1000000000 (UID FLAGS)\r\n",
	  "CMD 3 UID FETCH 1:1000000000 (UID FLAGS)" },
	{ "4 APPEND \"Archive\" (\\Seen) {7+}\r\nHi\r\n\r\n.\r\n",
	  "CMD 4 APPEND \"Archive\" (\\Seen) {7+:Hi\\x0d\\x0a\\x0d\\x0a.}" },
	{ "5 UID FETCH 3 (BODY.PEEK[])\r\n", "CMD 5 UID FETCH 3 (BODY.PEEK[])" },
	/* mutt */
	{ "a0005 FETCH 1:4 (UID FLAGS INTERNALDATE RFC822.SIZE "
	  "BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
	  "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
	  "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)])\r\n",
	  "CMD a0005 FETCH 1:4 (UID FLAGS INTERNALDATE RFC822.SIZE "
	  "BODY.PEEK[HEADER.FIELDS (DATE FROM SENDER SUBJECT TO CC "
	  "MESSAGE-ID REFERENCES CONTENT-TYPE CONTENT-DESCRIPTION "
	  "IN-REPLY-TO REPLY-TO LINES LIST-POST X-LABEL)])" },
	{ "a0007 UID STORE 3 +FLAGS.SILENT (\\Seen)\r\n",
	  "CMD a0007 UID STORE 3 +FLAGS.SILENT (\\Seen)" },
	/* K-9 */
	{ "9 UID SEARCH 1:* NOT DELETED SINCE 1-Jan-2024\r\n",
	  "CMD 9 UID SEARCH 1:* NOT DELETED SINCE 1-Jan-2024" },
	{ "10 UID FETCH 5 (UID BODY.PEEK[1.2]<0.4096>)\r\n",
	  "CMD 10 UID FETCH 5 (UID BODY.PEEK[1.2]<0.4096>)" },
	{ "11 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==\r\n",
	  "CMD 11 AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==" },
	{ "12 SEARCH CHARSET UTF-8 SUBJECT {4+}\r\n\xc3\xa5\xc3\xa4\r\n",
	  "CMD 12 SEARCH CHARSET UTF-8 SUBJECT {4+:\\xc3\\xa5\\xc3\\xa4}" },
	{ "13 IDLE\r\n", "CMD 13 IDLE" },
	};

	check_cases(t, N(t));
}

/* A literal far over the line limit, fed in small pieces: linear. */
static void
test_big_inline(void)
{
	struct run rn;
	struct osp_buf in = {0};
	char *got;
	size_t i;

	memset(&rn, 0, sizeof(rn));
	rn.flags = LP;
	osp_buf_puts(&in, "A X {60000+}\r\n");
	for (i = 0; i < 60000; i++)
		osp_buf_putc(&in, (char)('a' + i % 26));
	osp_buf_puts(&in, " (x)\r\n");
	rn.chunk = 1;
	got = run_parser(&rn, in.data, in.len);
	CU_ASSERT(strncmp(got, "CMD A X {60000+:abc", 19) == 0);
	CU_ASSERT(strcmp(got + strlen(got) - 4, " (x)") == 0);
	osp_free(got);
	osp_buf_deinit(&in);
}

static void
test_arg_helpers(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct imap_parser *p = imap_parser_new(pool, NULL);
	const char *in = "A X atom \"q\" {1+}\r\nl NIL \\Seen a%* ~{1+}\r\nb "
	    "(x) a]b\r\n";
	const struct imap_cmd *c;
	const struct imap_arg *a;
	const char *s;
	size_t used;

	imap_parser_set_flags(p, LP);
	CU_ASSERT_EQUAL(imap_parser_feed(p, (const unsigned char *)in,
	    strlen(in), &used), IMAP_PARSE_COMMAND);
	c = imap_parser_command(p);
	a = c->args.args;
	CU_ASSERT_EQUAL(c->args.count, 9);
	CU_ASSERT_STRING_EQUAL(imap_arg_astring(&a[0]), "atom");
	CU_ASSERT_STRING_EQUAL(imap_arg_astring(&a[1]), "q");
	CU_ASSERT_STRING_EQUAL(imap_arg_astring(&a[2]), "l");
	CU_ASSERT_STRING_EQUAL(imap_arg_astring(&a[3]), "NIL");
	CU_ASSERT_PTR_NULL(imap_arg_astring(&a[4]));
	CU_ASSERT_PTR_NULL(imap_arg_astring(&a[5]));
	CU_ASSERT_STRING_EQUAL(imap_arg_list_mailbox(&a[5]), "a%*");
	CU_ASSERT_PTR_NULL(imap_arg_astring(&a[6]));	/* literal8 */
	CU_ASSERT_PTR_NULL(imap_arg_astring(&a[7]));	/* list */
	CU_ASSERT_STRING_EQUAL(imap_arg_astring(&a[8]), "a]b");
	CU_ASSERT_PTR_NULL(imap_arg_string(&a[0]));
	CU_ASSERT_STRING_EQUAL(imap_arg_string(&a[1]), "q");
	CU_ASSERT_STRING_EQUAL(imap_arg_string(&a[2]), "l");
	CU_ASSERT(imap_arg_nstring(&a[3], &s) && s == NULL);
	CU_ASSERT(imap_arg_nstring(&a[1], &s) && strcmp(s, "q") == 0);
	CU_ASSERT(!imap_arg_nstring(&a[0], &s));
	CU_ASSERT_STRING_EQUAL(imap_arg_atom(&a[4]), "\\Seen");
	CU_ASSERT_PTR_NULL(imap_arg_atom(&a[3]));
	CU_ASSERT_EQUAL(a[3].type, IMAP_ARG_NIL);
	osp_pool_free(pool);
}

static void
test_numbers(void)
{
	uint32_t n;
	uint64_t n64;

	CU_ASSERT(imap_parse_number("0", &n) && n == 0);
	CU_ASSERT(imap_parse_number("4294967295", &n) && n == 4294967295U);
	CU_ASSERT(!imap_parse_number("4294967296", &n));
	CU_ASSERT(!imap_parse_number("01", &n));
	CU_ASSERT(!imap_parse_number("", &n));
	CU_ASSERT(!imap_parse_number("-1", &n));
	CU_ASSERT(!imap_parse_number("+1", &n));
	CU_ASSERT(!imap_parse_number("1a", &n));
	CU_ASSERT(!imap_parse_nz_number("0", &n));
	CU_ASSERT(imap_parse_nz_number("17", &n) && n == 17);
	CU_ASSERT(imap_parse_number64("9223372036854775807", &n64) &&
	    n64 == 9223372036854775807ULL);
	CU_ASSERT(!imap_parse_number64("9223372036854775808", &n64));
	CU_ASSERT(!imap_parse_number64("99999999999999999999", &n64));
}

static void
test_seqset(void)
{
	static const struct {
		const char	*in;
		uint32_t	 star;
		const char	*want;	/* "lo-hi,..." or "!reason" */
	} t[] = {
		{ "1", 10, "1-1" },
		{ "1:*", 10, "1-10" },
		{ "*", 10, "10-10" },
		{ "*:4", 10, "4-10" },
		{ "5:2", 10, "2-5" },
		{ "20:*", 10, "10-20" },	/* RFC 9051 §6.4.8 */
		{ "1:3,2:5,7,8,10:9", 100, "1-5,7-10" },
		{ "4,3,2,1", 100, "1-4" },
		{ "4294967295", 0, "4294967295-4294967295" },
		{ "1:4294967295,4294967295", 5, "1-4294967295" },
		{ "1:*", 0, "0-1" },
		{ "$", 5, "$" },
		{ "4294967296", 5, "!Message number too large" },
		{ "0", 5, "!Invalid message number 0" },
		{ "1:0", 5, "!Invalid message number 0" },
		{ "", 5, "!Invalid sequence set" },
		{ "1,", 5, "!Invalid sequence set" },
		{ ",1", 5, "!Invalid sequence set" },
		{ "1:", 5, "!Invalid sequence set" },
		{ "1::2", 5, "!Invalid sequence set" },
		{ "1 2", 5, "!Invalid sequence set" },
		{ "1:2:3", 5, "!Invalid sequence set" },
		{ "$,1", 5, "!Invalid sequence set" },
		{ "**", 5, "!Invalid sequence set" },
		{ "-1", 5, "!Invalid sequence set" },
	};
	struct osp_pool *pool = osp_pool_new(NULL);
	struct imap_seq_range *r;
	size_t i, j, n;
	bool sr;
	const char *err;
	struct osp_buf b = {0};

	for (i = 0; i < N(t); i++) {
		osp_buf_reset(&b);
		if (imap_parse_seqset(pool, t[i].in, t[i].star, true, &r, &n,
		    &sr, &err) != OSP_OK)
			osp_buf_printf(&b, "!%s", err);
		else if (sr)
			osp_buf_puts(&b, "$");
		for (j = 0; j < n; j++)
			osp_buf_printf(&b, "%s%u-%u", j > 0 ? "," : "",
			    r[j].lo, r[j].hi);
		CHECK(strcmp(b.data, t[i].want) == 0, "seqset [%s]: want %s "
		    "got %s", t[i].in, t[i].want, b.data);
	}
	CU_ASSERT_EQUAL(imap_parse_seqset(pool, "$", 5, false, &r, &n, &sr,
	    &err), OSP_ERROR);
	CU_ASSERT_STRING_EQUAL(err, "SEARCHRES not allowed here");
	osp_buf_deinit(&b);
	osp_pool_free(pool);
}

static void
test_dates(void)
{
	static const struct {
		const char	*in;
		long long	 t;	/* -1: invalid */
		int		 zone;
	} dt[] = {
		{ "17-Jul-1996 02:44:25 -0700", 837596665, -420 },
		{ " 4-Jul-2023 09:05:01 +0000", 1688461501, 0 },
		{ "01-jan-1970 00:00:00 +0100", -3600, 60 },
		{ "29-Feb-2024 12:00:00 +0000", 1709208000, 0 },
		{ "29-Feb-2023 12:00:00 +0000", -1 },
		{ "31-Apr-2024 12:00:00 +0000", -1 },
		{ "4-Jul-2023 09:05:01 +0000", -1 },	/* day-fixed */
		{ "04-Jul-2023 09:05:01", -1 },
		{ "04-Jul-2023 24:05:01 +0000", -1 },
		{ "04-Jul-2023 09:60:01 +0000", -1 },
		{ "04-Jul-2023 09:05:01 +0060", -1 },
		{ "04-Jul-2023 09:05:01 0000", -1 },
		{ "04-Jul-2023 09:05:01 +0000 ", -1 },
		{ "04-Jux-2023 09:05:01 +0000", -1 },
		{ "04-Jul-23 09:05:01 +0000", -1 },
		{ "", -1 },
	};
	static const struct {
		const char	*in;
		long long	 t;
	} d[] = {
		{ "1-Jan-2024", 1704067200 },
		{ "01-JAN-2024", 1704067200 },
		{ "31-Dec-1999", 946598400 },
		{ "29-Feb-2000", 951782400 },
		{ "29-Feb-1900", -1 },
		{ "0-Jan-2024", -1 },
		{ "32-Jan-2024", -1 },
		{ "1-Jan-2024 ", -1 },
		{ "1-January-2024", -1 },
		{ "123-Jan-2024", -1 },
	};
	size_t i;
	time_t t;
	int zone;

	for (i = 0; i < N(dt); i++) {
		int r = imap_parse_datetime(dt[i].in, &t, &zone);

		if (dt[i].t == -1)
			CHECK(r == OSP_ERROR, "datetime [%s] accepted",
			    dt[i].in);
		else
			CHECK(r == OSP_OK && (long long)t == dt[i].t &&
			    zone == dt[i].zone, "datetime [%s]: %lld %d",
			    dt[i].in, r == OSP_OK ? (long long)t : 0LL, zone);
	}
	for (i = 0; i < N(d); i++) {
		int r = imap_parse_date(d[i].in, &t);

		if (d[i].t == -1)
			CHECK(r == OSP_ERROR, "date [%s] accepted", d[i].in);
		else
			CHECK(r == OSP_OK && (long long)t == d[i].t,
			    "date [%s]: %lld", d[i].in,
			    r == OSP_OK ? (long long)t : 0LL);
	}
}

static const struct osp_test tests[] = {
	OSP_TEST(test_tokens),
	OSP_TEST(test_errors),
	OSP_TEST(test_section_raw),
	OSP_TEST(test_literals),
	OSP_TEST(test_partial_view),
	OSP_TEST(test_clients),
	OSP_TEST(test_big_inline),
	OSP_TEST(test_arg_helpers),
	OSP_TEST(test_numbers),
	OSP_TEST(test_seqset),
	OSP_TEST(test_dates),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	(void)failures;
	return osp_test_main(argc, argv, "imap_parse", tests);
}
