/* SPDX-License-Identifier: ISC */
/* Delivery transports: how a queued message leaves this server. */
#ifndef OSPREY_TRANSPORT_H
#define OSPREY_TRANSPORT_H

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
/* Looks up a registered transport by name, or NULL. Main thread. */
const struct osp_transport *osp_transport_find(const char *name);

#endif
