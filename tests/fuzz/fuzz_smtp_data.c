/* SPDX-License-Identifier: ISC */
/* libFuzzer target: the DATA/BDAT message reader. Byte 0 picks the mode
 * and size limit, byte 1 seeds the split points; the rest is the input.
 * The result must not depend on how the input is split, and must match a
 * byte-at-a-time reference model of RFC 5321 §4.5.2 and §2.3.8. */
#include "config.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "smtp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct outcome {
	size_t		 consumed;
	uint64_t	 size;
	bool		 done, bare_lf, bare_cr, has_8bit, has_nul, too_big;
	int		 rc;
};

static int devnull = -1;

/* Feeds in pieces cut at the given points; checks per-call invariants. */
static void
run(const uint8_t *in, size_t len, bool dot, bool binary, uint64_t max,
    const size_t *cuts, size_t ncuts, struct outcome *o)
{
	struct smtp_data d;
	const char *reply = NULL;
	size_t pos = 0, k;

	smtp_data_init(&d, devnull, max, dot, binary);
	for (k = 0; k <= ncuts; k++) {
		size_t end = k < ncuts ? cuts[k] : len, n;
		uint64_t before = d.size;
		bool was_done = d.done;

		if (end < pos)
			continue;
		n = smtp_data_feed(&d, in + pos, end - pos,
		    dot ? UINT64_MAX : len - pos);
		if (n > end - pos || d.size < before || (was_done && n != 0))
			abort();
		/* only the DATA terminator stops a feed short */
		if (n != end - pos && !d.done)
			abort();
		if (!dot && d.size != before + n)
			abort();
		pos += n;
	}
	o->consumed = pos;
	o->size = d.size;
	o->done = d.done;
	o->rc = smtp_data_finish(&d, &reply);
	o->bare_lf = d.bare_lf;
	o->bare_cr = d.bare_cr;
	o->has_8bit = d.has_8bit;
	o->has_nul = d.has_nul;
	o->too_big = d.too_big;
	if (d.buf != NULL)
		abort();
	if ((o->rc == OSP_OK) != (!o->too_big && !o->bare_lf &&
	    !o->bare_cr && (o->done || !dot)))
		abort();
	if (o->rc != OSP_OK && (reply == NULL || (reply[0] != '4' &&
	    reply[0] != '5') || reply[4] != reply[0]))
		abort();
	if (max > 0 && o->too_big != (o->size > max))
		abort();
}

/* Reference model: see tests/unit/test_smtp_parse.c model(). */
static void
model(const uint8_t *in, size_t len, bool dot, bool binary,
    struct outcome *o)
{
	size_t i, end = len;

	memset(o, 0, sizeof(*o));
	if (dot)
		for (i = 0; i + 3 <= len; i++)
			if ((i == 0 || (i >= 2 && in[i - 2] == '\r' &&
			    in[i - 1] == '\n')) && memcmp(in + i, ".\r\n",
			    3) == 0) {
				end = i;
				o->done = true;
				break;
			}
	o->consumed = o->done ? end + 3 : len;
	for (i = 0; i < end; i++) {
		bool bol = i == 0 || (i >= 2 && in[i - 2] == '\r' &&
		    in[i - 1] == '\n');

		if (!binary) {
			if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
				o->bare_lf = true;
			if (in[i] == '\r' && (i + 1 < len ? in[i + 1] != '\n' :
			    !dot))
				o->bare_cr = true;
		}
		if (dot && bol && in[i] == '.') {
			if (!o->done && (i + 1 == len || (i + 2 == len &&
			    in[i + 1] == '\r')))
				break;
			continue;
		}
		if (in[i] >= 0x80)
			o->has_8bit = true;
		if (in[i] == 0)
			o->has_nul = true;
		o->size++;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct outcome whole, split, ref;
	size_t cuts[16], ncuts, len, i;
	const uint8_t *in;
	uint32_t seed;
	uint64_t max;
	bool dot, binary;

	if (size < 2)
		return 0;
	if (devnull < 0 && (devnull = open("/dev/null", O_WRONLY)) < 0)
		abort();
	dot = (data[0] & 3) != 0;
	binary = !dot && (data[0] & 4) != 0;
	max = (data[0] >> 3) * 8;	/* 0: no limit */
	seed = data[1];
	in = data + 2;
	len = size - 2;

	run(in, len, dot, binary, max, NULL, 0, &whole);
	ncuts = len > 0 ? seed % 16 : 0;
	for (i = 0; i < ncuts; i++) {
		seed = seed * 1103515245u + 12345u;
		cuts[i] = (seed >> 8) % (len + 1);
	}
	for (i = 1; i < ncuts; i++) {
		size_t j = i, v = cuts[i];

		while (j > 0 && cuts[j - 1] > v) {
			cuts[j] = cuts[j - 1];
			j--;
		}
		cuts[j] = v;
	}
	run(in, len, dot, binary, max, cuts, ncuts, &split);
	if (whole.consumed != split.consumed || whole.size != split.size ||
	    whole.done != split.done || whole.bare_lf != split.bare_lf ||
	    whole.bare_cr != split.bare_cr ||
	    whole.has_8bit != split.has_8bit ||
	    whole.has_nul != split.has_nul || whole.rc != split.rc)
		abort();
	model(in, len, dot, binary, &ref);
	if (ref.consumed != whole.consumed || ref.size != whole.size ||
	    ref.done != whole.done || ref.bare_lf != whole.bare_lf ||
	    ref.bare_cr != whole.bare_cr || ref.has_8bit != whole.has_8bit ||
	    ref.has_nul != whole.has_nul)
		abort();
	return 0;
}
