/* SPDX-License-Identifier: ISC */
/* Asynchronous DNSSEC-validating lookups (libunbound on the event loop). */
#ifndef OSPREY_DNS_H
#define OSPREY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

/* RR types asked for by mail code. */
#define OSP_DNS_A	1
#define OSP_DNS_CNAME	5
#define OSP_DNS_PTR	12
#define OSP_DNS_MX	15
#define OSP_DNS_TXT	16
#define OSP_DNS_AAAA	28
#define OSP_DNS_TLSA	52

/* Validation status of an answer (RFC 4035 §4.3). */
enum osp_dns_sec {
	OSP_DNS_INSECURE = 0,	/* no chain of trust (unsigned or no anchor) */
	OSP_DNS_SECURE,		/* validated */
	OSP_DNS_BOGUS,		/* validation failed: treat as failure */
};

struct osp_dns_rr {
	uint16_t	type;
	uint32_t	ttl;
	union {
		struct in_addr	 a;
		struct in6_addr	 aaaa;
		struct { uint16_t pref; const char *host; } mx;
		const char	*name;	/* CNAME, PTR (no trailing dot) */
		struct { const char *text; size_t len; } txt;
					/* character-strings concatenated */
		struct {
			uint8_t	 usage, selector, mtype;
			const unsigned char *data;
			size_t	 len;
		} tlsa;
	} u;
};

struct osp_dns_result {
	const char		*qname;
	uint16_t		 qtype;
	int			 rcode;		/* 0 NOERROR, 3 NXDOMAIN, ... */
	bool			 nxdomain;
	enum osp_dns_sec	 sec;
	const char		*why_bogus;	/* when sec == BOGUS */
	const char		*canonname;	/* after CNAMEs, or NULL */
	size_t			 n;		/* records of qtype */
	const struct osp_dns_rr	*rr;
};

struct osp_dns_query;

/*
 * Callback on the main thread. `err` is OSP_OK with `res` set (which may
 * hold zero records: NODATA or NXDOMAIN, see rcode), or a negative error
 * (OSP_EDNS for SERVFAIL/timeouts/resolver errors, OSP_EBOGUS never: a bogus
 * answer arrives as OSP_OK with sec == BOGUS so callers can log why; it
 * then carries no records: bogus data is never handed out).
 * `res` and everything it points to live only during the callback.
 * Names are in presentation form without the trailing dot ("." for the
 * root, as in a null MX, RFC 7505), with unusual octets escaped (\DDD).
 */
typedef void osp_dns_cb_fn(void *arg, int err,
    const struct osp_dns_result *res);

/* Starts a lookup. Returns OSP_OK and may set *q_r (for cancelling; may be
 * NULL) or a negative error without calling cb (-EINVAL for a bad name or
 * a type not listed above). The callback runs from the loop, never before
 * this returns (also for cached answers), and may start new lookups. A
 * lookup that gets no answer within the configured timeout completes with
 * OSP_EDNS. Main thread. */
int	osp_dns_lookup(const char *name, uint16_t type, osp_dns_cb_fn *cb,
	    void *arg, struct osp_dns_query **q_r);
/* Cancels a lookup whose callback has not run: it will not run. */
void	osp_dns_cancel(struct osp_dns_query *q);

/* Type name <-> number ("MX" <-> 15); 0 / NULL when unknown. */
uint16_t	 osp_dns_type_from_name(const char *name);
const char	*osp_dns_type_name(uint16_t type);
const char	*osp_dns_sec_name(enum osp_dns_sec sec);

#endif
