/* SPDX-License-Identifier: ISC */
/* Growable byte buffers. */
#ifndef OSPREY_BUF_H
#define OSPREY_BUF_H

#include <stdarg.h>
#include <stddef.h>

/*
 * A heap buffer: `len` bytes used of `size` allocated; data is always
 * NUL-terminated after len (not counted). Zero-initialise
 * (struct osp_buf b = {0}) or osp_buf_init(); release with osp_buf_deinit().
 * Not thread-safe. Growth aborts on OOM.
 */
struct osp_buf {
	char	*data;
	size_t	 len;
	size_t	 size;
};

void	osp_buf_init(struct osp_buf *b);
void	osp_buf_deinit(struct osp_buf *b);
void	osp_buf_reset(struct osp_buf *b);		/* len = 0, keeps memory */
void	osp_buf_reserve(struct osp_buf *b, size_t extra);
void	osp_buf_append(struct osp_buf *b, const void *p, size_t len);
void	osp_buf_puts(struct osp_buf *b, const char *s);
void	osp_buf_putc(struct osp_buf *b, char c);
void	osp_buf_printf(struct osp_buf *b, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));
void	osp_buf_vprintf(struct osp_buf *b, const char *fmt, va_list ap)
	    __attribute__((format(printf, 2, 0)));
/* Removes the first n bytes (n <= len). */
void	osp_buf_consume(struct osp_buf *b, size_t n);

#endif
