/* SPDX-License-Identifier: ISC */
/* Growable byte buffers. */
#include "core.h"

#include <stdio.h>
#include <string.h>

void
osp_buf_init(struct osp_buf *b)
{
	b->data = NULL;
	b->len = b->size = 0;
}

void
osp_buf_deinit(struct osp_buf *b)
{
	osp_free(b->data);
	osp_buf_init(b);
}

void
osp_buf_reset(struct osp_buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
osp_buf_reserve(struct osp_buf *b, size_t extra)
{
	size_t need = b->len + extra + 1, size;

	if (need <= b->size)
		return;
	size = b->size < 64 ? 64 : b->size;
	while (size < need)
		size *= 2;
	b->data = osp_realloc(b->data, size);
	b->size = size;
}

void
osp_buf_append(struct osp_buf *b, const void *p, size_t len)
{
	osp_buf_reserve(b, len);
	if (len > 0)
		memcpy(b->data + b->len, p, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
osp_buf_puts(struct osp_buf *b, const char *s)
{
	osp_buf_append(b, s, strlen(s));
}

void
osp_buf_putc(struct osp_buf *b, char c)
{
	osp_buf_append(b, &c, 1);
}

void
osp_buf_vprintf(struct osp_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return;
	osp_buf_reserve(b, (size_t)n);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
}

void
osp_buf_printf(struct osp_buf *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	osp_buf_vprintf(b, fmt, ap);
	va_end(ap);
}

void
osp_buf_consume(struct osp_buf *b, size_t n)
{
	if (n >= b->len) {
		osp_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}
