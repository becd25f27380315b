/* SPDX-License-Identifier: ISC */
/* TLS configuration objects (GnuTLS underneath). */
#ifndef OSPREY_TLS_H
#define OSPREY_TLS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Server certificates come from the core config (`tls: certificates:`,
 * PEM files) and are selected by SNI: the first certificate whose DNS
 * names (SAN, else CN) match the requested name, wildcards one label
 * deep; no SNI or no match takes the first certificate. TLS >= 1.2 only.
 */
struct osp_tls_server;

/* The server TLS context of the current config generation, or NULL when no
 * certificate is configured. Main thread. Valid while the generation is. */
struct osp_tls_server *osp_tls_server_current(void);

/* Builds a server context from PEM files (cert chain and key pairs);
 * used by the core for config and by tests. Returns NULL and sets
 * *error_r (static or heap string valid until next call) on failure. */
struct osp_tls_server *osp_tls_server_new(const char *const *certfiles,
		    const char *const *keyfiles, size_t n, const char **error_r);
void		 osp_tls_server_free(struct osp_tls_server *srv);

/* Client-side parameters for osp_conn_starttls_client(). */
struct osp_tls_client_params {
	const char	*server_name;	/* SNI and name to verify; may be NULL */
	bool		 verify;	/* check chain against the system CAs
					 * (or cafile) and server_name */
	const char	*cafile;	/* PEM bundle; NULL: system trust */
	const char	*certfile;	/* client certificate, may be NULL */
	const char	*keyfile;
};

#endif
