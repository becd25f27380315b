/* SPDX-License-Identifier: ISC */
/* libFuzzer target: the IMAP command parser. The first bytes pick session
 * flags, limits and a split pattern; the rest is the client's stream. The
 * stream is parsed whole and in random pieces: both must give the same
 * events, consumption stays within the input, every tree is well formed,
 * and the seqset/date helpers run on every string argument. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct ctx {
	struct osp_pool		*pool;
	struct imap_parser_limits lim;
	size_t			 nargs;
};

static void
check_helpers(struct ctx *x, const struct imap_arg *a)
{
	struct imap_seq_range *r;
	size_t n, i;
	bool sr;
	const char *err, *s;
	time_t t;
	int zone;
	uint32_t u;
	uint64_t u64;

	if (a->str == NULL || memchr(a->str, '\0', a->len) != NULL)
		return;
	if (imap_parse_seqset(x->pool, a->str, 1000, true, &r, &n, &sr,
	    &err) == OSP_OK) {
		if (sr != (n == 0))
			abort();
		for (i = 0; i < n; i++) {
			if (r[i].lo > r[i].hi || r[i].lo == 0)
				abort();
			/* sorted, merged: a gap between ranges */
			if (i > 0 && r[i].lo <= r[i - 1].hi + 1ULL)
				abort();
		}
	} else if (err == NULL)
		abort();
	(void)imap_parse_datetime(a->str, &t, &zone);
	(void)imap_parse_date(a->str, &t);
	(void)imap_parse_number(a->str, &u);
	(void)imap_parse_number64(a->str, &u64);
	(void)imap_parse_nz_number(a->str, &u);
	(void)imap_arg_astring(a);
	(void)imap_arg_list_mailbox(a);
	(void)imap_arg_nstring(a, &s);
}

static void
check_list(struct ctx *x, const struct imap_arg_list *l, unsigned depth)
{
	size_t i;

	if (depth > x->lim.max_depth + 1)
		abort();
	if (l->count > 0 && l->args == NULL)
		abort();
	for (i = 0; i < l->count; i++) {
		const struct imap_arg *a = &l->args[i];

		x->nargs++;
		switch (a->type) {
		case IMAP_ARG_ATOM:
		case IMAP_ARG_NIL:
			if (a->str == NULL || a->len == 0 ||
			    strlen(a->str) != a->len)
				abort();
			break;
		case IMAP_ARG_QUOTED:
			if (a->str == NULL || strlen(a->str) != a->len)
				abort();
			break;
		case IMAP_ARG_LITERAL:
			if (a->streamed != (a->str == NULL))
				abort();
			if (a->str != NULL && (a->str[a->len] != '\0' ||
			    (!a->literal8 &&
			    memchr(a->str, '\0', a->len) != NULL)))
				abort();
			break;
		case IMAP_ARG_LIST:
			check_list(x, &a->list, depth + 1);
			break;
		default:
			abort();
		}
		if (a->has_section) {
			if (a->type != IMAP_ARG_ATOM ||
			    a->section_raw == NULL)
				abort();
			check_list(x, &a->section, depth + 1);
		}
		if (a->partial_has_len && (!a->has_partial ||
		    a->partial_len == 0))
			abort();
		check_helpers(x, a);
	}
}

/*
 * Parses in[0..len) with pieces of the sizes splits[] gives (cycled; 0
 * means all at once) and writes the events to out.
 */
static void
run(struct ctx *x, unsigned flags, const uint8_t *in, size_t len,
    const uint8_t *splits, size_t nsplits, struct osp_buf *out)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct imap_parser *p = imap_parser_new(pool, &x->lim);
	size_t pos = 0, avail, used, k = 0, nlit = 0, guard = 0;
	enum imap_parse_result r;

	x->pool = pool;
	imap_parser_set_flags(p, flags);
#define NEXT_AVAIL() do {						\
	avail = nsplits == 0 ? len : avail + 1 + splits[k++ % nsplits];	\
	if (avail > len)						\
		avail = len;						\
} while (0)
	avail = 0;
	NEXT_AVAIL();
	for (;;) {
		if (++guard > 4 * len + 100)
			abort();	/* no progress */
		r = imap_parser_feed(p, in + pos, avail - pos, &used);
		if (used > avail - pos)
			abort();
		pos += used;
		if (r == IMAP_PARSE_MORE) {
			if (pos != avail)
				abort();
			if (avail == len)
				break;
			NEXT_AVAIL();
			continue;
		}
		if (r == IMAP_PARSE_COMMAND) {
			const struct imap_cmd *c = imap_parser_command(p);

			if (c->tag == NULL || c->name == NULL ||
			    *c->tag == '\0' || *c->name == '\0')
				abort();
			x->nargs = 0;
			check_list(x, &c->args, 0);
			if (x->nargs > x->lim.max_args)
				abort();
			osp_buf_printf(out, "C %s %s ", c->tag, c->name);
			imap_args_dump(out, &c->args);
			osp_buf_putc(out, '\n');
		} else if (r == IMAP_PARSE_ERROR) {
			const struct imap_cmd *c = imap_parser_command(p);
			bool fatal;
			const char *why = imap_parser_error(p, &fatal);

			if (why == NULL || strpbrk(why, "\r\n") != NULL)
				abort();
			osp_buf_printf(out, "E %s %s %d\n",
			    c->tag != NULL ? c->tag : "*", why, fatal);
			if (fatal)
				break;
		} else if (r == IMAP_PARSE_LITERAL) {
			struct imap_literal_info li;

			imap_parser_literal(p, &li);
			osp_buf_printf(out, "L %llu %d %d %d\n",
			    (unsigned long long)li.size, li.sync,
			    li.literal8, li.stream);
			/* a policy that depends on the literal only */
			if (++nlit % 5 == 0) {
				imap_parser_literal_refuse(p);
			} else if (li.stream) {
				if (li.size > len - pos)
					break;	/* the session would wait */
				pos += (size_t)li.size;
				if (avail < pos)
					avail = pos;
				imap_parser_literal_streamed(p);
			}
		} else
			abort();
	}
#undef NEXT_AVAIL
	osp_pool_free(pool);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ctx x;
	struct osp_buf a = {0}, b = {0};
	unsigned flags;
	uint8_t sel;

	if (size < 4)
		return 0;
	flags = data[0] & (IMAP_PARSE_UTF8 | IMAP_PARSE_LITERAL_PLUS |
	    IMAP_PARSE_LITERAL_MINUS);
	sel = data[1];
	memset(&x, 0, sizeof(x));
	imap_parser_limits_default(&x.lim);
	if (sel & 1) {
		/* small limits, so the fuzzer reaches them */
		x.lim.max_line = 64 + (sel >> 1);
		x.lim.max_args = 4 + (sel >> 4);
		x.lim.max_depth = 1 + (sel >> 5);
		x.lim.max_literal = 200;
		x.lim.max_inline = 16;
		x.lim.max_inline_total = 40;
	}
	/* data[2..3]: split pattern length; the pattern is read from the
	 * input itself (cheap and reproducible) */
	run(&x, flags, data + 4, size - 4, NULL, 0, &a);
	run(&x, flags, data + 4, size - 4, data + 2, 2, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len)))
		abort();
	osp_buf_reset(&b);
	run(&x, flags, data + 4, size - 4, data + 4, size - 4 < 16 ?
	    size - 4 : 16, &b);
	if (a.len != b.len || (a.len > 0 && memcmp(a.data, b.data, a.len)))
		abort();
	osp_buf_deinit(&a);
	osp_buf_deinit(&b);
	return 0;
}
