/* SPDX-License-Identifier: ISC */
/* Abuse limits shared by every protocol: connections and failed
 * authentications per IP class (as mox's limiters). */
#ifndef OSPREY_LIMIT_H
#define OSPREY_LIMIT_H

#include <stdint.h>
#include <sys/socket.h>

/*
 * Every limit counts per IP class, three classes per address family:
 * IPv4 /32, /26, /21 and IPv6 /64, /48, /32. A limit is three numbers,
 * one per class, from the core config section `limits:`:
 *
 *   limits:
 *     connection-rate: [300, 900, 2700]        # new connections/minute
 *     connections: [30, 90, 270]               # open at once
 *     auth-failures-per-minute: [10, 30, 90]
 *     auth-failures-per-day: [50, 150, 450]
 *
 * 0 disables a class. Rates are sliding windows (the current and the
 * previous window, weighted), kept in memory (a restart forgets them).
 * State is bounded: least recently used entries are dropped beyond
 * 100,000 per class. The values follow config reloads.
 * All functions: main thread only.
 */
struct osp_limit_conn;

/*
 * Counts a new connection from `sa`. OSP_OK with *h_r (release it with
 * osp_limit_conn_close when the connection ends), or -EBUSY when the
 * connection rate or the open connections of one of sa's classes is
 * over the limit, with *reason_r naming which ("connection rate 300/min
 * for 192.0.2.0/26 exceeded", "open connections 30 for 192.0.2.1/32
 * exceeded"; thread-local text for logs and replies, valid until the
 * next call). A refused connection is not counted (as mox). A peer
 * that is not IP (AF_UNIX) is never limited.
 */
int	osp_limit_conn_open(const struct sockaddr *sa,
	    struct osp_limit_conn **h_r, const char **reason_r);
/* NULL is a no-op. */
void	osp_limit_conn_close(struct osp_limit_conn *h);

/* Whether sa may attempt authentication now: OSP_OK, or -EBUSY when its
 * failed attempts are over a per-minute or per-day limit (*reason_r as
 * above). Check before each attempt. */
int	osp_limit_auth_check(const struct sockaddr *sa, const char **reason_r);
/* Records a failed authentication from sa (every protocol: SMTP AUTH,
 * IMAP LOGIN/AUTHENTICATE, HTTP logins). */
void	osp_limit_auth_failed(const struct sockaddr *sa);

#endif
