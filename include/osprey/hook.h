/* SPDX-License-Identifier: ISC */
/* Policy hook points: modules observe or decide at fixed places. */
#ifndef OSPREY_HOOK_H
#define OSPREY_HOOK_H

struct osp_module_ctx;

/*
 * Each point passes a point-specific data pointer (its struct is declared
 * by the header of the subsystem that runs it, e.g. smtp hooks in
 * smtp-related headers). Hooks run in priority order (lower first, ties in
 * registration order); the first that returns something other than
 * OSP_DECLINED decides.
 */
enum osp_hook_point {
	OSP_HOOK_SMTP_CONNECT = 1,
	OSP_HOOK_SMTP_MAIL,
	OSP_HOOK_SMTP_RCPT,
	OSP_HOOK_SMTP_DATA,
	OSP_HOOK_MESSAGE_STORED,
	OSP_HOOK_MESSAGE_JUNK,
	OSP_HOOK_MAX_
};

typedef int osp_hook_fn(void *data, void *arg);

/* Registers fn at point. Only in init(). */
int	osp_hook_add(struct osp_module_ctx *ctx, enum osp_hook_point point,
	    int priority, osp_hook_fn *fn, void *arg);

/* Runs the hooks of a point synchronously: returns the first decision,
 * or OSP_DECLINED when every hook declined (or none is registered).
 * Main thread. */
int	osp_hook_run(enum osp_hook_point point, void *data);

#endif
