/* SPDX-License-Identifier: ISC */
/* HTTP route table: modules add routes; the http module serves them. */
#ifndef OSPREY_HTTP_H
#define OSPREY_HTTP_H

#include <stdint.h>

struct osp_module_ctx;
struct osp_http_request;	/* defined by the http protocol (http issue) */

#define OSP_HTTP_GET	0x01
#define OSP_HTTP_HEAD	0x02
#define OSP_HTTP_POST	0x04
#define OSP_HTTP_PUT	0x08
#define OSP_HTTP_DELETE	0x10
#define OSP_HTTP_ANY	0xff

#define OSP_HTTP_SESSION 0x01	/* needs a logged-in account session */
#define OSP_HTTP_CSRF	 0x02	/* state-changing: check the CSRF token */

/*
 * A route matches when the method is in `methods`, the path starts with
 * `prefix` at a segment boundary ("/webmail" matches "/webmail" and
 * "/webmail/x", not "/webmailx"), and `host` is NULL or equals the
 * request's host. The longest matching prefix wins; ties go to routes
 * with a host. handle() returns OSP_OK when it answered (or will answer),
 * OSP_DECLINED to let the next match try.
 */
struct osp_http_route {
	uint32_t	 methods;
	const char	*prefix;
	const char	*host;
	uint32_t	 flags;
	int		(*handle)(struct osp_http_request *req, void *arg);
	void		*arg;
};

/* Registers a route; `r` stays valid until fini(). Only in init().
 * -EEXIST when the same methods, prefix and host are taken. */
int	osp_http_route_add(struct osp_module_ctx *ctx,
	    const struct osp_http_route *r);
/* Finds the best route after `after` (NULL: the first) for a request;
 * used by the http module, also to walk DECLINED chains. */
const struct osp_http_route *osp_http_route_match(uint32_t method,
	    const char *host, const char *path,
	    const struct osp_http_route *after);

#endif
