/* SPDX-License-Identifier: ISC */
/* Registries modules fill during init(): transports, SASL mechanisms,
 * HTTP routes and policy hooks. Each entry remembers its owner so that
 * unloading a module forgets everything it registered. Main thread. */
#include "core.h"

#include <errno.h>
#include <string.h>

/* A growable array of entries of one registry. */
#define REG_GROW(arr, n, size) do {					\
	if ((n) == (size)) {						\
		(size) = (size) == 0 ? 8 : (size) * 2;			\
		(arr) = osp_reallocarray((arr), (size), sizeof(*(arr)));\
	}								\
} while (0)

struct reg_transport {
	const struct osp_module_ctx	*owner;
	const struct osp_transport	*t;
};

struct reg_sasl {
	const struct osp_module_ctx	*owner;
	const struct osp_sasl_mech	*mech;
};

struct reg_route {
	const struct osp_module_ctx	*owner;
	const struct osp_http_route	*r;
	size_t				 prefix_len;
	unsigned long			 seq;	/* registration order */
};

struct reg_hook {
	const struct osp_module_ctx	*owner;
	int				 priority;
	osp_hook_fn			*fn;
	void				*arg;
};

static struct reg_transport	*transports;
static size_t			 ntransports, transports_size;
static struct reg_sasl		*mechs;
static size_t			 nmechs, mechs_size;
static struct reg_route		*routes;
static size_t			 nroutes, routes_size;
static unsigned long		 route_seq;
static struct reg_hook		*hooks[OSP_HOOK_MAX_];
static size_t			 nhooks[OSP_HOOK_MAX_];
static size_t			 hooks_size[OSP_HOOK_MAX_];

/* ------------------------------------------------------------------ */
/* Transports                                                           */

static bool
transport_name_chars(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++, n++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
		    *s == '-'))
			return false;
	return n >= 1 && n <= 64;
}

bool
osp_transport_name_valid(const char *name)
{
	return transport_name_chars(name) && strcmp(name, "direct") != 0;
}

int
osp_transport_add(struct osp_module_ctx *ctx, const struct osp_transport *t)
{
	size_t i;
	int rc;

	if ((rc = osp_module_may_register(ctx, "transport")) != OSP_OK)
		return rc;
	if (t == NULL || t->name == NULL || !transport_name_chars(t->name) ||
	    t->deliver == NULL)
		return -EINVAL;
	for (i = 0; i < ntransports; i++) {
		if (strcmp(transports[i].t->name, t->name) == 0) {
			osp_log_err("module", "%s: transport %s is already "
			    "registered by module %s",
			    osp_module_name(ctx), t->name,
			    osp_module_name(transports[i].owner));
			return -EEXIST;
		}
	}
	REG_GROW(transports, ntransports, transports_size);
	transports[ntransports].owner = ctx;
	transports[ntransports].t = t;
	ntransports++;
	return OSP_OK;
}

const struct osp_transport *
osp_transport_find(const char *name)
{
	size_t i;

	for (i = 0; i < ntransports; i++)
		if (strcmp(transports[i].t->name, name) == 0)
			return transports[i].t;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* SASL mechanisms                                                      */

int
osp_sasl_mech_add(struct osp_module_ctx *ctx,
    const struct osp_sasl_mech *mech)
{
	int rc;

	if ((rc = osp_module_may_register(ctx, "SASL mechanism")) != OSP_OK)
		return rc;
	if (mech == NULL || mech->name == NULL || *mech->name == '\0' ||
	    mech->step == NULL)
		return -EINVAL;
	/* RFC 4422 §3.1: mechanism names are case-insensitive. */
	if (osp_sasl_mech_find(mech->name) != NULL) {
		osp_log_err("module", "%s: SASL mechanism %s is already "
		    "registered", osp_module_name(ctx), mech->name);
		return -EEXIST;
	}
	REG_GROW(mechs, nmechs, mechs_size);
	mechs[nmechs].owner = ctx;
	mechs[nmechs].mech = mech;
	nmechs++;
	return OSP_OK;
}

const struct osp_sasl_mech *
osp_sasl_mech_find(const char *name)
{
	size_t i;

	for (i = 0; i < nmechs; i++)
		if (osp_str_eqi(mechs[i].mech->name, name))
			return mechs[i].mech;
	return NULL;
}

void
osp_sasl_mech_foreach(void (*fn)(const struct osp_sasl_mech *, void *),
    void *arg)
{
	size_t i;

	for (i = 0; i < nmechs; i++)
		fn(mechs[i].mech, arg);
}

/* ------------------------------------------------------------------ */
/* HTTP routes                                                          */

static bool
host_eq(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	/* RFC 9110 §4.2.3: the host is compared case-insensitively. */
	return osp_str_eqi(a, b);
}

int
osp_http_route_add(struct osp_module_ctx *ctx, const struct osp_http_route *r)
{
	size_t i;
	int rc;

	if ((rc = osp_module_may_register(ctx, "HTTP route")) != OSP_OK)
		return rc;
	if (r == NULL || r->prefix == NULL || r->prefix[0] != '/' ||
	    r->handle == NULL || (r->methods & OSP_HTTP_ANY) == 0 ||
	    (r->host != NULL && *r->host == '\0'))
		return -EINVAL;
	for (i = 0; i < nroutes; i++) {
		const struct osp_http_route *o = routes[i].r;

		if (o->methods == r->methods &&
		    strcmp(o->prefix, r->prefix) == 0 &&
		    host_eq(o->host, r->host)) {
			osp_log_err("module", "%s: HTTP route %s%s is already "
			    "registered by module %s",
			    osp_module_name(ctx),
			    r->host != NULL ? r->host : "", r->prefix,
			    osp_module_name(routes[i].owner));
			return -EEXIST;
		}
	}
	REG_GROW(routes, nroutes, routes_size);
	routes[nroutes].owner = ctx;
	routes[nroutes].r = r;
	routes[nroutes].prefix_len = strlen(r->prefix);
	routes[nroutes].seq = route_seq++;
	nroutes++;
	return OSP_OK;
}

/* Whether `prefix` covers `path` at a segment boundary: "/webmail"
 * covers "/webmail" and "/webmail/x" but not "/webmailx"; a prefix that
 * ends in '/' (such as "/") covers everything below it. */
static bool
route_prefix_matches(const struct reg_route *e, const char *path)
{
	size_t len = e->prefix_len;

	if (strncmp(path, e->r->prefix, len) != 0)
		return false;
	return path[len] == '\0' || path[len] == '/' ||
	    (len > 0 && e->r->prefix[len - 1] == '/');
}

static bool
route_matches(const struct reg_route *e, uint32_t method, const char *host,
    const char *path)
{
	if ((e->r->methods & method) == 0)
		return false;
	if (e->r->host != NULL && (host == NULL || !osp_str_eqi(e->r->host,
	    host)))
		return false;
	return route_prefix_matches(e, path);
}

/* The order in which matching routes are tried: longest prefix first,
 * then routes bound to a host, then registration order. Returns < 0 when
 * a goes before b. It is a total order (seq is unique). */
static int
route_cmp(const struct reg_route *a, const struct reg_route *b)
{
	if (a->prefix_len != b->prefix_len)
		return a->prefix_len > b->prefix_len ? -1 : 1;
	if ((a->r->host != NULL) != (b->r->host != NULL))
		return a->r->host != NULL ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

const struct osp_http_route *
osp_http_route_match(uint32_t method, const char *host, const char *path,
    const struct osp_http_route *after)
{
	const struct reg_route *prev = NULL, *best = NULL;
	size_t i;

	if (path == NULL || method == 0)
		return NULL;
	if (after != NULL) {
		for (i = 0; i < nroutes; i++)
			if (routes[i].r == after)
				prev = &routes[i];
		/* Not (or no longer) registered: nothing follows it. */
		if (prev == NULL)
			return NULL;
	}
	for (i = 0; i < nroutes; i++) {
		const struct reg_route *e = &routes[i];

		if (!route_matches(e, method, host, path))
			continue;
		if (prev != NULL && route_cmp(e, prev) <= 0)
			continue;
		if (best == NULL || route_cmp(e, best) < 0)
			best = e;
	}
	return best != NULL ? best->r : NULL;
}

/* ------------------------------------------------------------------ */
/* Hooks                                                                */

int
osp_hook_add(struct osp_module_ctx *ctx, enum osp_hook_point point,
    int priority, osp_hook_fn *fn, void *arg)
{
	struct reg_hook *h;
	size_t i, n;
	int rc;

	if ((rc = osp_module_may_register(ctx, "hook")) != OSP_OK)
		return rc;
	if (point <= 0 || point >= OSP_HOOK_MAX_ || fn == NULL)
		return -EINVAL;
	n = nhooks[point];
	for (i = 0; i < n; i++) {
		if (hooks[point][i].fn == fn && hooks[point][i].arg == arg) {
			osp_log_err("module", "%s: hook %d is already "
			    "registered with the same function and argument",
			    osp_module_name(ctx), (int)point);
			return -EEXIST;
		}
	}
	REG_GROW(hooks[point], nhooks[point], hooks_size[point]);
	/* Keep the array sorted by priority; equal priorities keep their
	 * registration order (insert after the last equal one). */
	for (i = n; i > 0 && hooks[point][i - 1].priority > priority; i--)
		;
	memmove(&hooks[point][i + 1], &hooks[point][i],
	    (n - i) * sizeof(hooks[point][0]));
	h = &hooks[point][i];
	h->owner = ctx;
	h->priority = priority;
	h->fn = fn;
	h->arg = arg;
	nhooks[point]++;
	return OSP_OK;
}

int
osp_hook_run(enum osp_hook_point point, void *data)
{
	size_t i;
	int rc;

	if (point <= 0 || point >= OSP_HOOK_MAX_)
		return OSP_DECLINED;
	for (i = 0; i < nhooks[point]; i++) {
		rc = hooks[point][i].fn(data, hooks[point][i].arg);
		if (rc != OSP_DECLINED)
			return rc;
	}
	return OSP_DECLINED;
}

/* ------------------------------------------------------------------ */
/* Unregistering a module                                               */

/* Removes, in place and keeping the order, the entries owned by ctx. */
#define REG_REMOVE(arr, n, ctx) do {					\
	size_t i_, j_ = 0;						\
	for (i_ = 0; i_ < (n); i_++)					\
		if ((arr)[i_].owner != (ctx))				\
			(arr)[j_++] = (arr)[i_];			\
	(n) = j_;							\
} while (0)

void
osp_registry_remove_module(const struct osp_module_ctx *ctx)
{
	int p;

	REG_REMOVE(transports, ntransports, ctx);
	REG_REMOVE(mechs, nmechs, ctx);
	REG_REMOVE(routes, nroutes, ctx);
	for (p = 1; p < OSP_HOOK_MAX_; p++)
		REG_REMOVE(hooks[p], nhooks[p], ctx);
	osp_listener_remove_module(ctx);
}
