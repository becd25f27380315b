/* SPDX-License-Identifier: ISC */
/* Listeners: sockets from the config, served by a module's protocol. */
#ifndef OSPREY_LISTENER_H
#define OSPREY_LISTENER_H

#include <stdint.h>

#include <osprey/conf.h>

struct osp_conn;
struct osp_module_ctx;

/*
 * Listeners are declared in the core config:
 *
 *   listeners:
 *     - name: submission
 *       protocol: smtp          # the module serving it
 *       address: [127.0.0.1, "::1"]
 *       port: 587
 *       tls: starttls           # none | implicit | starttls
 *       role: submission        # keys of the module's listener_conf
 *
 * They are bound as root before privileges are dropped. A module serves
 * the listeners naming its protocol by registering an accept handler.
 */
enum osp_listener_tls {
	OSP_LISTENER_TLS_NONE = 0,
	OSP_LISTENER_TLS_IMPLICIT,
	OSP_LISTENER_TLS_STARTTLS,
};

struct osp_listener_info {
	const char		*name;
	const char		*protocol;
	enum osp_listener_tls	 tls;
	uint16_t		 port;
	/* The module's listener_conf struct for this listener, or NULL. */
	const void		*conf;
};

/*
 * Called for each accepted connection, after the TLS handshake for
 * implicit-TLS listeners. The handler owns `c` from here and must set its
 * callback (osp_conn_set_callback). Main thread.
 */
typedef void osp_listener_accept_fn(struct osp_conn *c,
    const struct osp_listener_info *li, void *arg);

/* Registers the accept handler of the calling module's protocol (the
 * module name). Only in init(). */
int	osp_listener_add(struct osp_module_ctx *ctx,
	    osp_listener_accept_fn *fn, void *arg);

#endif
