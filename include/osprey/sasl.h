/* SPDX-License-Identifier: ISC */
/* SASL mechanism registry (server side). */
#ifndef OSPREY_SASL_H
#define OSPREY_SASL_H

#include <stddef.h>
#include <stdint.h>

struct osp_module_ctx;
struct osp_sasl;	/* one exchange; state of mech->state_size bytes */

#define OSP_SASL_PLAINTEXT	0x01	/* exposes the password: TLS only */
#define OSP_SASL_NEED_CB	0x02	/* needs TLS channel binding (-PLUS) */
#define OSP_SASL_CLIENT_FIRST	0x04	/* client speaks first (SASL-IR) */
#define OSP_SASL_EXTERNAL	0x08	/* identity from the TLS layer */

/*
 * A mechanism's step() receives the client's response (decoded from
 * base64 by the protocol) and returns:
 *   OSP_AGAIN  with *out and *outlen set to the next challenge,
 *   OSP_OK     authenticated (osp_sasl_set_account() was called); *out may
 *              carry final server data (SCRAM's v=),
 *   OSP_EAUTH  credentials rejected; any other negative: malformed input.
 * Credentials are checked only through the core's auth API; step() never
 * logs input.
 */
struct osp_sasl_mech {
	const char	*name;		/* "SCRAM-SHA-256-PLUS" */
	uint32_t	 flags;
	size_t		 state_size;
	int		(*step)(struct osp_sasl *s, const unsigned char *in,
			    size_t inlen, const unsigned char **out,
			    size_t *outlen);
};

/* Registers a mechanism; `mech` stays valid until fini(). Only in init().
 * -EEXIST when the name is taken. */
int	osp_sasl_mech_add(struct osp_module_ctx *ctx,
	    const struct osp_sasl_mech *mech);
/* Looks up a mechanism by name (case-insensitive), or NULL. */
const struct osp_sasl_mech *osp_sasl_mech_find(const char *name);
/* Calls fn for every registered mechanism in registration order. */
void	osp_sasl_mech_foreach(void (*fn)(const struct osp_sasl_mech *,
	    void *), void *arg);

#endif
