/* SPDX-License-Identifier: ISC */
/* Region memory pools with cleanup handlers, and aborting allocators. */
#ifndef OSPREY_POOL_H
#define OSPREY_POOL_H

#include <stdarg.h>
#include <stddef.h>

/*
 * A pool owns everything allocated from it and runs its cleanup handlers
 * (last registered first) when freed. Pools are made per lifetime:
 * process, config generation, module, connection, SMTP transaction, HTTP
 * request. A child pool is freed with its parent. Never store a pointer
 * into a shorter-lived pool.
 *
 * Pools are not thread-safe: one pool is used by one thread at a time.
 * Allocation never fails: on out-of-memory the process aborts with a log
 * line (OpenSMTPD's x*alloc), so nobody checks for NULL.
 */
struct osp_pool;

typedef void osp_cleanup_fn(void *arg);

/* New pool; parent may be NULL. Freed with osp_pool_free() or its parent. */
struct osp_pool	*osp_pool_new(struct osp_pool *parent);
/* Runs cleanups, frees children and memory. NULL is a no-op. */
void		 osp_pool_free(struct osp_pool *pool);
/* Registers fn(arg) to run when the pool is freed. Returns a handle for
 * osp_pool_cleanup_cancel(). */
void		*osp_pool_cleanup_add(struct osp_pool *pool, osp_cleanup_fn *fn,
		    void *arg);
/* Forgets a registered cleanup without running it. */
void		 osp_pool_cleanup_cancel(struct osp_pool *pool, void *handle);

/* Allocations live until the pool is freed; aligned for any type. */
void		*osp_palloc(struct osp_pool *pool, size_t size);
void		*osp_pcalloc(struct osp_pool *pool, size_t nmemb, size_t size);
char		*osp_pstrdup(struct osp_pool *pool, const char *s);
char		*osp_pstrndup(struct osp_pool *pool, const char *s, size_t len);
void		*osp_pmemdup(struct osp_pool *pool, const void *p, size_t len);
char		*osp_psprintf(struct osp_pool *pool, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));
char		*osp_pvsprintf(struct osp_pool *pool, const char *fmt,
		    va_list ap) __attribute__((format(printf, 2, 0)));

/* Heap allocators that abort on OOM. osp_free(NULL) is a no-op. */
void		*osp_malloc(size_t size);
void		*osp_calloc(size_t nmemb, size_t size);
void		*osp_realloc(void *p, size_t size);
void		*osp_reallocarray(void *p, size_t nmemb, size_t size);
char		*osp_strdup(const char *s);
char		*osp_strndup(const char *s, size_t len);
void		 osp_free(void *p);
/* Wipes secrets (not optimised away). */
void		 osp_memzero(void *p, size_t len);

#endif
