/* SPDX-License-Identifier: ISC */
/* The message reader for DATA (dot-stuffed, ends at CRLF.CRLF) and BDAT
 * (exact chunk sizes): a small state machine over arbitrary input splits,
 * memchr-driven so large messages stream through in big writes. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "smtp.h"

/* Output is collected and written in writes of up to DATA_BUFSIZE; the
 * buffer starts small and doubles, so short messages cost little. */
#define DATA_BUFSIZE	(256 * 1024)
#define DATA_BUFSTART	(8 * 1024)

/*
 * Reader states (d->state). "Line" means CRLF-terminated: a bare LF does
 * not start a new line, so after "\n" a "." is ordinary text and "\n.\n",
 * "\n.\r\n" can never be taken for the terminator (SMTP smuggling).
 */
enum {
	ST_BOL = 0,	/* at the start of a line (also the message's start) */
	ST_MID,		/* inside a line, last byte not CR */
	ST_CR,		/* inside a line, last byte a CR (written) */
	ST_DOT,		/* DATA: "." at line start, held back */
	ST_DOTCR,	/* DATA: "." CR at line start, both held back */
	ST_DONE,	/* DATA: terminator consumed */
};

void
smtp_data_init(struct smtp_data *d, int fd, uint64_t max_size, bool dot,
    bool binary)
{
	memset(d, 0, sizeof(*d));
	d->fd = fd;
	d->max_size = max_size;
	d->dot = dot;
	d->binary = binary;
	d->state = ST_BOL;
}

static void
data_write(struct smtp_data *d, const unsigned char *p, size_t n)
{
	while (n > 0 && d->werr == 0) {
		ssize_t w = write(d->fd, p, n);

		if (w < 0) {
			if (errno != EINTR)
				d->werr = -errno;
			continue;
		}
		if (w == 0) {
			d->werr = -EIO;
			break;
		}
		p += w;
		n -= (size_t)w;
	}
}

static void
data_flush(struct smtp_data *d)
{
	if (d->buflen > 0)
		data_write(d, d->buf, d->buflen);
	d->buflen = 0;
}

/* Message bytes out. Over the size limit, or after a write error, the
 * bytes are only counted: the reader goes on to find the end. */
static void
data_out(struct smtp_data *d, const unsigned char *p, size_t n)
{
	if (n == 0)
		return;
	d->size += n;
	if (d->max_size > 0 && d->size > d->max_size && !d->too_big) {
		d->too_big = true;
		d->buflen = 0;
	}
	if (d->too_big || d->werr != 0 || d->fd < 0)
		return;
	if (n > d->bufsize - d->buflen && d->bufsize < DATA_BUFSIZE) {
		size_t size = d->bufsize > 0 ? d->bufsize : DATA_BUFSTART;

		while (size < d->buflen + n && size < DATA_BUFSIZE)
			size *= 2;
		d->buf = osp_realloc(d->buf, size);
		d->bufsize = size;
	}
	if (n > d->bufsize - d->buflen) {
		data_flush(d);
		if (n >= d->bufsize) {
			data_write(d, p, n);
			return;
		}
	}
	memcpy(d->buf + d->buflen, p, n);
	d->buflen += n;
}

/* Records 8-bit and NUL content: word-at-a-time, stops looking once
 * found. */
static void
data_scan(struct smtp_data *d, const unsigned char *p, size_t n)
{
	if (n == 0)
		return;
	if (!d->has_nul && memchr(p, 0, n) != NULL)
		d->has_nul = true;
	if (!d->has_8bit) {
		uint64_t acc = 0, w;
		size_t i = 0;

		for (; i + 8 <= n; i += 8) {
			memcpy(&w, p + i, 8);
			acc |= w;
		}
		for (; i < n; i++)
			acc |= p[i];
		if (acc & UINT64_C(0x8080808080808080))
			d->has_8bit = true;
	}
}

/* A CR inside the n bytes of a line is bare (not followed by LF). */
static inline void
data_check_cr(struct smtp_data *d, const unsigned char *p, size_t n)
{
	if (!d->bare_cr && n > 0 && memchr(p, '\r', n) != NULL)
		d->bare_cr = true;
}

/*
 * ST_MID: takes the rest of the line up to and including its LF, or all
 * the input when no LF follows. Returns the bytes consumed (> 0).
 */
static size_t
data_line(struct smtp_data *d, const unsigned char *p, size_t n)
{
	const unsigned char *lf = memchr(p, '\n', n);
	size_t seg;

	if (lf != NULL) {
		seg = (size_t)(lf - p);
		if (seg > 0 && p[seg - 1] == '\r') {
			data_check_cr(d, p, seg - 1);
			d->state = ST_BOL;
		} else {
			/* RFC 5321 §2.3.8: lines end with CRLF only. */
			data_check_cr(d, p, seg);
			d->bare_lf = true;
			d->state = ST_MID;
		}
		data_scan(d, p, seg);
		data_out(d, p, seg + 1);
		return seg + 1;
	}
	if (p[n - 1] == '\r') {
		data_check_cr(d, p, n - 1);
		d->state = ST_CR;
	} else {
		data_check_cr(d, p, n);
		d->state = ST_MID;
	}
	data_scan(d, p, n);
	data_out(d, p, n);
	return n;
}

size_t
smtp_data_feed(struct smtp_data *d, const unsigned char *p, size_t len,
    uint64_t limit)
{
	static const unsigned char cr = '\r', nl = '\n';
	size_t i = 0;

	if (d->done)
		return 0;
	if (!d->dot) {
		if (len > limit)
			len = (size_t)limit;
		if (len == 0)
			return 0;
		if (d->binary) {
			/* RFC 3030 §3: BINARYMIME has no line structure. */
			data_scan(d, p, len);
			data_out(d, p, len);
			return len;
		}
	}
	while (i < len) {
		switch (d->state) {
		case ST_BOL:
			/* RFC 5321 §4.5.2: a line starting with "." has it
			 * removed; "." alone ends the message. */
			if (d->dot && p[i] == '.') {
				d->state = ST_DOT;
				i++;
			} else
				d->state = ST_MID;
			break;
		case ST_DOT:
			if (p[i] == '\r') {
				d->state = ST_DOTCR;
				i++;
			} else
				d->state = ST_MID;	/* dot dropped */
			break;
		case ST_DOTCR:
			if (p[i] == '\n') {
				/* CRLF "." CRLF: the end */
				d->state = ST_DONE;
				d->done = true;
				return i + 1;
			}
			/* "." CR then not LF: the dot goes, the CR is
			 * bare. */
			d->bare_cr = true;
			data_out(d, &cr, 1);
			d->state = ST_MID;
			break;
		case ST_CR:
			if (p[i] == '\n') {
				data_out(d, &nl, 1);
				d->state = ST_BOL;
				i++;
			} else {
				d->bare_cr = true;
				d->state = ST_MID;
			}
			break;
		case ST_MID:
			i += data_line(d, p + i, len - i);
			break;
		default:
			return i;
		}
	}
	return i;
}

int
smtp_data_finish(struct smtp_data *d, const char **reply_r)
{
	int rc = OSP_OK;

	/* A BDAT message may end without CRLF (RFC 3030 §2), but a final
	 * CR is a bare one. */
	if (!d->dot && !d->binary && d->state == ST_CR)
		d->bare_cr = true;
	if (d->buf != NULL)
		data_flush(d);
	smtp_data_abort(d);
	if (d->dot && !d->done) {
		*reply_r = "451 4.3.0 Message incomplete";
		rc = OSP_ERROR;
	} else if (d->too_big) {
		*reply_r = "552 5.3.4 Message size exceeds fixed maximum "
		    "message size";
		rc = OSP_ETOOBIG;
	} else if (d->bare_lf || d->bare_cr) {
		*reply_r = d->bare_cr && d->bare_lf ?
		    "550 5.6.0 Message contains bare CR and LF: lines must "
		    "end with CRLF (RFC 5321 2.3.8)" : d->bare_lf ?
		    "550 5.6.0 Message contains bare LF: lines must end "
		    "with CRLF (RFC 5321 2.3.8)" :
		    "550 5.6.0 Message contains bare CR: lines must end "
		    "with CRLF (RFC 5321 2.3.8)";
		rc = OSP_EPERM;
	} else if (d->werr != 0) {
		*reply_r = "451 4.3.0 Error writing message to disk";
		rc = OSP_ETEMP;
	}
	return rc;
}

void
smtp_data_abort(struct smtp_data *d)
{
	osp_free(d->buf);
	d->buf = NULL;
	d->buflen = d->bufsize = 0;
}
