/* SPDX-License-Identifier: ISC */
/* Return codes shared by the core and modules (nginx-style control codes,
 * Knot-style negative errno values). */
#ifndef OSPREY_ERROR_H
#define OSPREY_ERROR_H

/*
 * Every int-returning osp_* function returns OSP_OK (0) on success and a
 * negative value otherwise: one of the control codes below, or -errno
 * (-ENOMEM, -EINVAL, -ETIMEDOUT, ...) where a system error fits.
 * Human detail travels separately in a `const char **error_r` allocated
 * from a pool the caller names.
 */
#define OSP_OK		0
#define OSP_ERROR	(-10000)	/* generic failure, see error_r */
#define OSP_AGAIN	(-10001)	/* in progress: a callback follows */
#define OSP_DECLINED	(-10002)	/* not mine: try the next handler */
#define OSP_DONE	(-10003)	/* finished early, nothing more to do */
#define OSP_ETEMP	(-10004)	/* temporary failure (SMTP 4xx) */
#define OSP_EPERM	(-10005)	/* permanent failure (SMTP 5xx) */
#define OSP_EAUTH	(-10006)	/* authentication failed */
#define OSP_ETOOBIG	(-10007)	/* line, literal or message over limit */
#define OSP_EABI	(-10008)	/* module ABI mismatch */
#define OSP_ECONFIG	(-10009)	/* configuration error */
#define OSP_ETLS	(-10010)	/* TLS failure */
#define OSP_EDNS	(-10011)	/* DNS failure (SERVFAIL, timeout) */
#define OSP_EBOGUS	(-10012)	/* DNSSEC validation failed */

/* Static text for an OSP_* code or -errno. Any thread. Never NULL. */
const char *osp_strerror(int code);

#endif
