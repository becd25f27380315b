/* SPDX-License-Identifier: ISC */
/* SASL internals shared by sasl.c (the exchange object), sasl_mechs.c
 * (PLAIN, LOGIN, CRAM-MD5, EXTERNAL) and sasl_scram.c (SCRAM, -PLUS). */
#ifndef SASL_INT_H
#define SASL_INT_H

#include "core.h"

/* Upper bound for one client response a built-in mechanism accepts; a
 * longer one is malformed (usernames and SCRAM messages are far
 * shorter). */
#define SASL_MAX_INPUT	4096

/* The built-in mechanisms, registered by osp_sasl_builtin_init(). */
extern const struct osp_sasl_mech osp_sasl_mech_plain;
extern const struct osp_sasl_mech osp_sasl_mech_login;
extern const struct osp_sasl_mech osp_sasl_mech_cram_md5;
extern const struct osp_sasl_mech osp_sasl_mech_external;
extern const struct osp_sasl_mech osp_sasl_mech_scram_sha1;
extern const struct osp_sasl_mech osp_sasl_mech_scram_sha1_plus;
extern const struct osp_sasl_mech osp_sasl_mech_scram_sha256;
extern const struct osp_sasl_mech osp_sasl_mech_scram_sha256_plus;

/*
 * Channel binding data of one type ("tls-exporter", "tls-unique")
 * captured at osp_sasl_new, or NULL when the connection had none of that
 * type. Under TLS 1.2 both may exist: the SCRAM client chooses in its
 * gs2 header. Worker thread (inside step()).
 */
const unsigned char *osp_sasl_channel_binding_of(struct osp_sasl *s,
	    const char *type, size_t *len_r);
/* The server's host name (CRAM-MD5 challenges), captured at new. */
const char *osp_sasl_hostname(struct osp_sasl *s);

/*
 * Tests only: the next SCRAM server nonces are `nonce` instead of random
 * (NULL: random again), so that the exchanges of RFC 5802 §5 and RFC 7677
 * §3 can be replayed. Main thread, with no step in flight.
 */
void	osp_sasl_scram_test_nonce(const char *nonce);

#endif
