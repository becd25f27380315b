/* SPDX-License-Identifier: ISC */
/* `osprey dns lookup TYPE NAME`: one lookup through the built-in
 * validating resolver, printed in zone-file presentation. */
#include "core.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

struct cli_dns_state {
	const char	*name;
	uint16_t	 type;
	bool		 done;
	int		 exit_code;
};

static void
cli_dns_usage(void)
{
	fprintf(stderr, "usage: osprey dns lookup TYPE NAME\n"
	    "TYPE: A AAAA MX TXT TLSA PTR CNAME\n");
}

/* A name as zone files write it: fully qualified, with the final dot. */
static void
cli_dns_put_name(FILE *out, const char *name)
{
	if (strcmp(name, ".") == 0)
		fputs(".", out);
	else
		fprintf(out, "%s.", name);
}

/* RFC 1035 §5.1: a quoted <character-string>, at most 255 octets each. */
static void
cli_dns_put_txt(FILE *out, const char *text, size_t len)
{
	size_t i;

	fputc('"', out);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)text[i];

		if (i > 0 && i % 255 == 0)
			fputs("\" \"", out);
		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			fprintf(out, "\\%03u", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void
cli_dns_put_rr(FILE *out, const char *owner, const struct osp_dns_rr *rr)
{
	char addr[INET6_ADDRSTRLEN];
	size_t i;

	cli_dns_put_name(out, owner);
	fprintf(out, " %u %s ", (unsigned)rr->ttl,
	    osp_dns_type_name(rr->type));
	switch (rr->type) {
	case OSP_DNS_A:
		fputs(inet_ntop(AF_INET, &rr->u.a, addr, sizeof(addr)), out);
		break;
	case OSP_DNS_AAAA:
		fputs(inet_ntop(AF_INET6, &rr->u.aaaa, addr, sizeof(addr)),
		    out);
		break;
	case OSP_DNS_MX:
		fprintf(out, "%u ", (unsigned)rr->u.mx.pref);
		cli_dns_put_name(out, rr->u.mx.host);
		break;
	case OSP_DNS_CNAME:
	case OSP_DNS_PTR:
		cli_dns_put_name(out, rr->u.name);
		break;
	case OSP_DNS_TXT:
		cli_dns_put_txt(out, rr->u.txt.text, rr->u.txt.len);
		break;
	case OSP_DNS_TLSA:
		/* RFC 6698 §2.2 */
		fprintf(out, "%u %u %u ", (unsigned)rr->u.tlsa.usage,
		    (unsigned)rr->u.tlsa.selector, (unsigned)rr->u.tlsa.mtype);
		for (i = 0; i < rr->u.tlsa.len; i++)
			fprintf(out, "%02X", rr->u.tlsa.data[i]);
		if (rr->u.tlsa.len == 0)
			fputs("-", out);
		break;
	}
	fputc('\n', out);
}

static void
cli_dns_done(void *arg, int err, const struct osp_dns_result *res)
{
	struct cli_dns_state *st = arg;
	const char *rcode;
	size_t i;

	st->done = true;
	osp_event_exit();
	if (err != OSP_OK) {
		fprintf(stderr, "osprey: dns lookup %s %s: %s\n",
		    osp_dns_type_name(st->type), st->name, osp_strerror(err));
		st->exit_code = 1;
		return;
	}
	if (res->canonname != NULL) {
		fputs("; canonical name: ", stdout);
		cli_dns_put_name(stdout, res->canonname);
		fputc('\n', stdout);
	}
	for (i = 0; i < res->n; i++)
		cli_dns_put_rr(stdout, res->canonname != NULL ?
		    res->canonname : res->qname, &res->rr[i]);
	if (res->sec == OSP_DNS_BOGUS)
		printf("; dnssec: bogus (%s)\n", res->why_bogus);
	else
		printf("; dnssec: %s\n", osp_dns_sec_name(res->sec));
	rcode = osp_dns_rcode_name(res->rcode);
	if (rcode != NULL)
		printf("; rcode: %s\n", rcode);
	else
		printf("; rcode: RCODE%d\n", res->rcode);
	st->exit_code = res->sec == OSP_DNS_BOGUS ? 1 : 0;
}

int
osp_cli_dns(int argc, char **argv, struct osp_config *gen)
{
	struct cli_dns_state st;
	const char *error;
	bool own_loop = false;
	int ret;

	if (argc != 3 || strcmp(argv[0], "lookup") != 0) {
		cli_dns_usage();
		return 2;
	}
	memset(&st, 0, sizeof(st));
	st.name = argv[2];
	if ((st.type = osp_dns_type_from_name(argv[1])) == 0) {
		fprintf(stderr, "osprey: dns lookup: unknown type %s\n",
		    argv[1]);
		cli_dns_usage();
		return 2;
	}
	if (*st.name == '\0') {
		cli_dns_usage();
		return 2;
	}
	if (osp_event_base() == NULL) {
		if ((ret = osp_event_init(1)) != OSP_OK) {
			fprintf(stderr, "osprey: event loop: %s\n",
			    osp_strerror(ret));
			return 1;
		}
		own_loop = true;
	}
	if (osp_dns_init(&gen->core, &error) != OSP_OK) {
		fprintf(stderr, "osprey: %s\n", error);
		st.exit_code = 1;
		goto out;
	}
	ret = osp_dns_lookup(st.name, st.type, cli_dns_done, &st, NULL);
	if (ret != OSP_OK) {
		fprintf(stderr, "osprey: dns lookup %s %s: %s\n", argv[1],
		    st.name, ret == -EINVAL ? "invalid name" :
		    osp_strerror(ret));
		st.exit_code = ret == -EINVAL ? 2 : 1;
	} else {
		/* the resolver's own timeout ends the lookup */
		while (!st.done)
			if (osp_event_run() != OSP_OK)
				break;
		if (!st.done) {
			fprintf(stderr, "osprey: dns lookup: event loop "
			    "failed\n");
			st.exit_code = 1;
		}
	}
	osp_dns_deinit();
out:
	if (own_loop)
		osp_event_deinit();
	return st.exit_code;
}
