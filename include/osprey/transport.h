/* SPDX-License-Identifier: ISC */
/* Delivery transports: how a queued message leaves this server. */
#ifndef OSPREY_TRANSPORT_H
#define OSPREY_TRANSPORT_H

#include <stdbool.h>

struct osp_module_ctx;
struct osp_delivery;	/* one attempt for one recipient domain (queue) */

/*
 * A transport takes a delivery attempt and completes it, possibly later,
 * through the queue's completion call (declared in queue.h by the queue).
 * deliver() returns OSP_OK or OSP_AGAIN when it has taken the attempt.
 * Routes in domains.yaml name transports; "direct" is the core's own.
 */
struct osp_transport {
	const char	*name;		/* unique: "direct", "submission", ... */
	int		(*deliver)(struct osp_delivery *d, void *arg);
	void		*arg;
};

/* Registers a transport. `t` must stay valid until fini(). Only in init().
 * Returns OSP_OK or -EEXIST when the name is taken. */
int	osp_transport_add(struct osp_module_ctx *ctx,
	    const struct osp_transport *t);
/* Whether `name` may name a module's transport: 1 to 64 of [a-z0-9-],
 * and not "direct" (the core's). For check() of modules declaring
 * transports in their config; any thread. */
bool	osp_transport_name_valid(const char *name);
/* Looks up a registered transport by name, or NULL. Main thread. */
const struct osp_transport *osp_transport_find(const char *name);

#endif
