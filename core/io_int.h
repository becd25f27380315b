/* SPDX-License-Identifier: ISC */
/* Private interfaces of the I/O subsystem (event.c, worker.c, conn.c,
 * tls.c, listener.c) and their unit test; not for other core files. */
#ifndef OSPREY_IO_INT_H
#define OSPREY_IO_INT_H

#include <gnutls/gnutls.h>
#include <gnutls/abstract.h>

#include "core.h"

/* worker.c: started and drained by osp_event_init/deinit. */
int	osp_worker_init(unsigned nthreads);
void	osp_worker_deinit(void);
/* Jobs submitted whose done() has not run yet. */
size_t	osp_worker_inflight(void);

/* tls.c */
struct osp_tls_cert;

struct osp_tls_server {
	int				 refs;
	gnutls_certificate_credentials_t cred;
	gnutls_priority_t		 prio;
	struct osp_tls_cert		*certs;
	size_t				 ncerts;
};

/* Adds one certificate (PEM chain, PEM key) to srv. On failure returns a
 * negative code and a static message in *error_r. */
int	osp_tls_server_add(struct osp_tls_server *srv, const char *certfile,
	    const char *keyfile, const char **error_r);
/* Replaces the priority string (default: TLS 1.2 and 1.3). Tests use it
 * to force a version. */
int	osp_tls_server_set_priority(struct osp_tls_server *srv,
	    const char *priority, const char **error_r);
void	osp_tls_server_ref(struct osp_tls_server *srv);
/* Name that selects cert i (first SAN DNS name or CN), for tests. */
const char *osp_tls_server_cert_name(const struct osp_tls_server *srv,
	    size_t i);
/* Whether the DNS name `host` matches `pattern` (one-label wildcard). */
bool	osp_tls_name_match(const char *pattern, const char *host);

/* New non-blocking GnuTLS sessions. The server session takes a reference
 * on srv (released by osp_tls_session_free). The client session uses
 * cred_r when it is set (freed by osp_tls_session_free) else shared
 * system-trust credentials. */
int	osp_tls_session_server(struct osp_tls_server *srv,
	    gnutls_session_t *s_r, const char **error_r);
int	osp_tls_session_client(const struct osp_tls_client_params *p,
	    gnutls_session_t *s_r, gnutls_certificate_credentials_t *cred_r,
	    const char **error_r);
void	osp_tls_session_free(gnutls_session_t s,
	    gnutls_certificate_credentials_t cred);
/* The server context a server session was made with. */
struct osp_tls_server *osp_tls_session_srv(gnutls_session_t s);

/* conn.c */
/* Closes every socket still lingering (osp_event_deinit). */
void	osp_conn_linger_closeall(void);
/* Deadline for a TLS handshake (default 30 s), 0 = none. */
void	osp_conn_set_handshake_timeout(struct osp_conn *c, uint64_t ms);

#endif
