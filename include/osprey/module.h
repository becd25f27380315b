/* SPDX-License-Identifier: ISC */
/* The module ABI: one exported descriptor per module (Knot DNS style). */
#ifndef OSPREY_MODULE_H
#define OSPREY_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include <osprey/conf.h>

/*
 * Bump on any incompatible change under include/osprey/. The loader
 * refuses a module whose descriptor has another value.
 */
#define OSP_MODULE_ABI 1

struct osp_module_ctx;
struct osp_pool;

/*
 * A module is a shared object exporting exactly one symbol:
 *
 *	const struct osp_module osp_module = { .abi = OSP_MODULE_ABI, ... };
 *
 * It is loaded RTLD_NOW|RTLD_LOCAL and may call only the osp_* API of the
 * osprey binary. Lifecycle, all on the main thread:
 *
 *   check(ctx, conf)   after the config is parsed into `conf` (a struct of
 *                      conf_size bytes filled from the module's section);
 *                      validate cross-field rules, report with
 *                      osp_module_conf_error(); return OSP_OK or OSP_ECONFIG.
 *                      Also called for every reload candidate (with the new
 *                      conf) before anything changes. No side effects.
 *   init(ctx)          registrations (listeners, transports, SASL mechs,
 *                      HTTP routes, hooks) and resources; runs as root
 *                      before listeners are bound and privileges dropped.
 *                      Failure unloads the module and stops startup.
 *   start(ctx)         the loop is about to run, privileges are dropped.
 *   reload(ctx, conf)  a new config generation passed check(); adopt it.
 *                      NULL: the module cannot reload, a changed section
 *                      is reported as needing a restart and ignored.
 *   stop(ctx)          SIGTERM: stop accepting, let sessions drain; the core
 *                      closes what remains at the drain deadline.
 *   fini(ctx)          release everything; the module is unloaded next.
 *
 * Every hook may be NULL. Registrations made in init() are undone by the
 * core after fini().
 */
struct osp_module {
	uint32_t		 abi;		/* OSP_MODULE_ABI */
	const char		*name;		/* [a-z0-9-]+, = config section */
	const char		*version;
	uint32_t		 flags;		/* reserved, 0 */
	const char *const	*depends;	/* module names, NULL-terminated */
	const struct osp_conf_def *conf;	/* section schema, may be NULL */
	size_t			 conf_size;
	/* Extra keys a listener entry with `protocol: <name>` may carry,
	 * filled into a struct of listener_conf_size (see listener.h). */
	const struct osp_conf_def *listener_conf;
	size_t			 listener_conf_size;
	int	(*check)(struct osp_module_ctx *ctx, void *conf);
	int	(*init)(struct osp_module_ctx *ctx);
	int	(*start)(struct osp_module_ctx *ctx);
	int	(*reload)(struct osp_module_ctx *ctx, const void *newconf);
	void	(*stop)(struct osp_module_ctx *ctx);
	void	(*fini)(struct osp_module_ctx *ctx);
};

/* The module's name. Valid while loaded. */
const char	*osp_module_name(const struct osp_module_ctx *ctx);
/* The module's config struct of the current generation (after a reload,
 * the new one). Valid until the generation is released: sessions that
 * must keep a generation take osp_config_ref() (see conf.h/osprey.h). */
const void	*osp_module_conf(const struct osp_module_ctx *ctx);
/* Module-private data pointer, for the module's own use. */
void		 osp_module_set_data(struct osp_module_ctx *ctx, void *data);
void		*osp_module_data(const struct osp_module_ctx *ctx);
/* Pool living from init() to fini(). */
struct osp_pool	*osp_module_pool(const struct osp_module_ctx *ctx);

/* Reports a config error from check(): `field` points into the conf struct
 * passed to check(); the message is prefixed with the file:line:col and
 * key where that field was set (or the section, if it was defaulted). */
void		 osp_module_conf_error(struct osp_module_ctx *ctx,
		    const void *field, const char *fmt, ...)
		    __attribute__((format(printf, 3, 4)));

#endif
