/* SPDX-License-Identifier: ISC */
/* Region pools with cleanup handlers (nginx), and allocators that abort on
 * out-of-memory (OpenSMTPD's x*alloc). */
#include "core.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * A pool is a chain of blocks; small allocations are carved from the
 * current block, large ones get a block of their own. Blocks, children
 * and cleanups are all released by osp_pool_free().
 */
#define POOL_BLOCK	4096
#define POOL_ALIGN	_Alignof(max_align_t)

struct pool_block {
	struct pool_block	*next;
	size_t			 used, size;
	max_align_t		 data[];
};

struct pool_cleanup {
	struct pool_cleanup	*next;
	osp_cleanup_fn		*fn;
	void			*arg;
};

struct osp_pool {
	struct osp_pool		*parent;
	struct osp_pool		*children, *next_sibling, *prev_sibling;
	struct pool_block	*blocks;
	struct pool_cleanup	*cleanups;
};

static __attribute__((noreturn)) void
oom(size_t size)
{
	char msg[96];
	int n;

	/* No allocation here: write straight to stderr. */
	n = snprintf(msg, sizeof(msg), "osprey: out of memory allocating %zu bytes\n",
	    size);
	if (n > 0)
		(void)!write(STDERR_FILENO, msg, (size_t)n);
	abort();
}

void *
osp_malloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		oom(size);
	return p;
}

void *
osp_calloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb == 0 ? 1 : nmemb, size == 0 ? 1 : size);

	if (p == NULL)
		oom(nmemb * size);
	return p;
}

void *
osp_realloc(void *p, size_t size)
{
	void *n = realloc(p, size == 0 ? 1 : size);

	if (n == NULL)
		oom(size);
	return n;
}

void *
osp_reallocarray(void *p, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size)
		oom(SIZE_MAX);
	return osp_realloc(p, nmemb * size);
}

char *
osp_strdup(const char *s)
{
	return osp_strndup(s, strlen(s));
}

char *
osp_strndup(const char *s, size_t len)
{
	char *p;

	len = strnlen(s, len);
	p = osp_malloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void
osp_free(void *p)
{
	free(p);
}

void
osp_memzero(void *p, size_t len)
{
	explicit_bzero(p, len);
}

struct osp_pool *
osp_pool_new(struct osp_pool *parent)
{
	struct osp_pool *pool = osp_calloc(1, sizeof(*pool));

	if (parent != NULL) {
		pool->parent = parent;
		pool->next_sibling = parent->children;
		if (parent->children != NULL)
			parent->children->prev_sibling = pool;
		parent->children = pool;
	}
	return pool;
}

void
osp_pool_free(struct osp_pool *pool)
{
	struct pool_cleanup *c;
	struct pool_block *b;

	if (pool == NULL)
		return;
	/* Cleanups first (they may still use pool memory), newest first. */
	while ((c = pool->cleanups) != NULL) {
		pool->cleanups = c->next;
		c->fn(c->arg);
		free(c);
	}
	while (pool->children != NULL)
		osp_pool_free(pool->children);
	if (pool->parent != NULL) {
		if (pool->prev_sibling != NULL)
			pool->prev_sibling->next_sibling = pool->next_sibling;
		else
			pool->parent->children = pool->next_sibling;
		if (pool->next_sibling != NULL)
			pool->next_sibling->prev_sibling = pool->prev_sibling;
	}
	while ((b = pool->blocks) != NULL) {
		pool->blocks = b->next;
		free(b);
	}
	free(pool);
}

void *
osp_pool_cleanup_add(struct osp_pool *pool, osp_cleanup_fn *fn, void *arg)
{
	struct pool_cleanup *c = osp_malloc(sizeof(*c));

	c->fn = fn;
	c->arg = arg;
	c->next = pool->cleanups;
	pool->cleanups = c;
	return c;
}

void
osp_pool_cleanup_cancel(struct osp_pool *pool, void *handle)
{
	struct pool_cleanup **cp;

	for (cp = &pool->cleanups; *cp != NULL; cp = &(*cp)->next) {
		if (*cp == handle) {
			*cp = ((struct pool_cleanup *)handle)->next;
			free(handle);
			return;
		}
	}
}

void *
osp_palloc(struct osp_pool *pool, size_t size)
{
	struct pool_block *b = pool->blocks;
	size_t need, bsize;
	void *p;

	if (size == 0)
		size = 1;
	if (size > SIZE_MAX - POOL_ALIGN)
		oom(size);
	need = (size + POOL_ALIGN - 1) & ~(POOL_ALIGN - 1);
	if (b != NULL && b->size - b->used >= need) {
		p = (char *)b->data + b->used;
		b->used += need;
		return p;
	}
	/* Large allocations get their own block behind the current one, so
	 * the current block's free space stays usable. */
	bsize = need > POOL_BLOCK / 4 ? need : POOL_BLOCK;
	b = osp_malloc(sizeof(*b) + bsize);
	b->size = bsize;
	b->used = need;
	if (bsize == need && pool->blocks != NULL) {
		b->next = pool->blocks->next;
		pool->blocks->next = b;
	} else {
		b->next = pool->blocks;
		pool->blocks = b;
	}
	return b->data;
}

void *
osp_pcalloc(struct osp_pool *pool, size_t nmemb, size_t size)
{
	void *p;

	if (size != 0 && nmemb > SIZE_MAX / size)
		oom(SIZE_MAX);
	p = osp_palloc(pool, nmemb * size);
	memset(p, 0, nmemb * size);
	return p;
}

char *
osp_pstrdup(struct osp_pool *pool, const char *s)
{
	return osp_pstrndup(pool, s, strlen(s));
}

char *
osp_pstrndup(struct osp_pool *pool, const char *s, size_t len)
{
	char *p;

	len = strnlen(s, len);
	p = osp_palloc(pool, len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

void *
osp_pmemdup(struct osp_pool *pool, const void *src, size_t len)
{
	void *p = osp_palloc(pool, len);

	memcpy(p, src, len);
	return p;
}

char *
osp_pvsprintf(struct osp_pool *pool, const char *fmt, va_list ap)
{
	va_list ap2;
	char *p;
	int n;

	va_copy(ap2, ap);
	n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return osp_pstrdup(pool, "");
	p = osp_palloc(pool, (size_t)n + 1);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	return p;
}

char *
osp_psprintf(struct osp_pool *pool, const char *fmt, ...)
{
	va_list ap;
	char *p;

	va_start(ap, fmt);
	p = osp_pvsprintf(pool, fmt, ap);
	va_end(ap);
	return p;
}
