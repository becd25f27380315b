/* SPDX-License-Identifier: ISC */
/* SOCKS5 transports: direct delivery through a SOCKS5 proxy (RFC 1928).
 * Schema and lifecycle; delivery is not implemented yet: no transport is
 * registered, and startup says so. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <osprey/osprey.h>

struct socks_transport {
	struct osp_conf_addr	 proxy;
	struct osp_conf_list	 remote_ips;	/* struct osp_conf_addr */
	const char		*remote_hostname;
	uint64_t		 connect_timeout;
};

struct socks_conf {
	struct osp_conf_list	 transports;	/* osp_conf_map_item */
};

#define T(field) offsetof(struct socks_transport, field)
static const struct osp_conf_def socks_transport_defs[] = {
	{ .key = "proxy", .type = OSP_CONF_ADDR, .offset = T(proxy),
	  .flags = OSP_CONF_REQUIRED,
	  .help = "the SOCKS5 proxy, IP and port (127.0.0.1:1080)" },
	/* Receivers check SPF and iprev against the proxy's addresses, not
	 * ours: they must be known to publish the right records. */
	{ .key = "remote-ips", .type = OSP_CONF_LIST, .offset = T(remote_ips),
	  .elem = OSP_CONF_ADDR, .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "public IPs the proxy connects from (for SPF records and "
	  "the DNS checks)" },
	{ .key = "remote-hostname", .type = OSP_CONF_STRING,
	  .offset = T(remote_hostname),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "name of the proxy's public IPs, sent in EHLO; must "
	  "resolve to them" },
	{ .key = "connect-timeout", .type = OSP_CONF_DURATION,
	  .offset = T(connect_timeout), .dflt = "30s",
	  .help = "time allowed to connect through the proxy",
	  .min = 1000, .max = 600000 },
	OSP_CONF_END
};
#undef T

static const struct osp_conf_def socks_conf_defs[] = {
	{ .key = "transports", .type = OSP_CONF_MAP,
	  .offset = offsetof(struct socks_conf, transports),
	  .sub = socks_transport_defs,
	  .elem_size = sizeof(struct socks_transport),
	  .help = "named SOCKS5 transports; routes in domains.yaml name "
	  "them" },
	OSP_CONF_END
};

static int
socks_check(struct osp_module_ctx *ctx, void *confp)
{
	struct socks_conf *conf = confp;
	struct osp_conf_map_item *it;
	struct socks_transport *t;
	struct osp_conf_addr *a;
	int rc = OSP_OK;
	size_t i, j;

	for (i = 0; i < conf->transports.n; i++) {
		it = &OSP_CONF_ITEM(&conf->transports,
		    struct osp_conf_map_item, i);
		t = it->value;
		if (!osp_transport_name_valid(it->name)) {
			osp_module_conf_error(ctx, t, "transport name must be "
			    "lower-case letters, digits and '-', and not "
			    "\"direct\"");
			rc = OSP_ECONFIG;
		}
		if (t->proxy.text != NULL && t->proxy.port == 0) {
			osp_module_conf_error(ctx, &t->proxy,
			    "needs a port (127.0.0.1:1080)");
			rc = OSP_ECONFIG;
		}
		for (j = 0; j < t->remote_ips.n; j++) {
			a = &OSP_CONF_ITEM(&t->remote_ips,
			    struct osp_conf_addr, j);
			if (a->port != 0) {
				osp_module_conf_error(ctx, a,
				    "an IP address without port");
				rc = OSP_ECONFIG;
			}
		}
	}
	return rc;
}

static int
socks_init(struct osp_module_ctx *ctx)
{
	const struct socks_conf *conf = osp_module_conf(ctx);
	struct osp_buf names = { 0 };
	size_t i, n = conf != NULL ? conf->transports.n : 0;

	for (i = 0; i < n; i++)
		osp_buf_printf(&names, "%s%s", i > 0 ? ", " : "",
		    OSP_CONF_ITEM(&conf->transports, struct osp_conf_map_item,
		    i).name);
	if (n == 0)
		osp_log_warn("transport-socks", "not implemented yet (and no "
		    "transports configured): delivery through SOCKS5 is not "
		    "available");
	else
		osp_log_warn("transport-socks", "not implemented yet: "
		    "transports %s are not registered; routes naming them "
		    "cannot be used", names.data);
	osp_buf_deinit(&names);
	return OSP_OK;
}

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "transport-socks",
	.version = PACKAGE_VERSION,
	.conf = socks_conf_defs,
	.conf_size = sizeof(struct socks_conf),
	.check = socks_check,
	.init = socks_init,
};
