/* SPDX-License-Identifier: ISC */
/* IMAP server module: descriptor, config schema and lifecycle. The
 * protocol is not implemented yet: listeners greet with BYE and close. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <osprey/osprey.h>

struct imap_conf {
	uint64_t	 login_timeout;
	uint64_t	 autologout_timeout;
	uint64_t	 max_line;
	uint64_t	 max_append_size;
	int64_t		 max_connections_per_ip;
	bool		 require_tls_for_auth;
};

struct imap_listener_conf {
	bool		 allow_plaintext_auth;
};

#define F(field) offsetof(struct imap_conf, field)
static const struct osp_conf_def imap_conf_defs[] = {
	{ .key = "login-timeout", .type = OSP_CONF_DURATION,
	  .offset = F(login_timeout), .dflt = "30s",
	  .help = "idle time allowed before a successful login",
	  .min = 1000, .max = 3600000 },
	/* RFC 9051 §5.4: the autologout timer must be at least 30 minutes
	 * once authenticated (IDLE clients re-issue every 29 minutes). */
	{ .key = "autologout-timeout", .type = OSP_CONF_DURATION,
	  .offset = F(autologout_timeout), .dflt = "30m",
	  .help = "idle time allowed after login (at least 30m, RFC 9051 "
	  "5.4)", .min = 1800000, .max = 86400000 },
	/* RFC 7162 §4: clients should be able to send 8192 octets; long
	 * UID sets from big mailboxes need more. Literals do not count. */
	{ .key = "max-line", .type = OSP_CONF_SIZE, .offset = F(max_line),
	  .dflt = "64k",
	  .help = "longest command line, literals excluded (RFC 7162 4)",
	  .min = 8192, .max = 16777216 },
	{ .key = "max-append-size", .type = OSP_CONF_SIZE,
	  .offset = F(max_append_size), .dflt = "50M",
	  .help = "largest message accepted by APPEND (APPENDLIMIT, RFC "
	  "7889)", .min = 1024, .max = 4294967296LL },
	{ .key = "max-connections-per-ip", .type = OSP_CONF_INT,
	  .offset = F(max_connections_per_ip), .dflt = "20",
	  .help = "concurrent connections from one address",
	  .min = 1, .max = 100000 },
	/* RFC 9051 §6.2.3 (LOGINDISABLED), RFC 8314 §3. */
	{ .key = "require-tls-for-auth", .type = OSP_CONF_BOOL,
	  .offset = F(require_tls_for_auth), .dflt = "true",
	  .help = "refuse LOGIN and AUTHENTICATE before STARTTLS (advertises "
	  "LOGINDISABLED)" },
	OSP_CONF_END
};
#undef F

static const struct osp_conf_def imap_listener_defs[] = {
	{ .key = "allow-plaintext-auth", .type = OSP_CONF_BOOL,
	  .offset = offsetof(struct imap_listener_conf, allow_plaintext_auth),
	  .dflt = "false",
	  .help = "allow login without TLS on this listener (only for a "
	  "listener on loopback behind a trusted proxy)" },
	OSP_CONF_END
};

static int
imap_check(struct osp_module_ctx *ctx, void *confp)
{
	struct imap_conf *conf = confp;

	if (conf->login_timeout > conf->autologout_timeout) {
		osp_module_conf_error(ctx, &conf->login_timeout,
		    "must not exceed autologout-timeout");
		return OSP_ECONFIG;
	}
	return OSP_OK;
}

static void
imap_refuse_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	/* Nothing to do: osp_conn_close() delivers no further events. */
}

/* RFC 9051 §7.1.5: BYE as the greeting tells the client the server will
 * not accept the connection. */
static void
imap_accept(struct osp_conn *c, const struct osp_listener_info *li,
    void *arg)
{
	osp_conn_set_callback(c, imap_refuse_cb, NULL);
	osp_conn_set_timeouts(c, 0, 30000);
	osp_log_info("imap", OSP_ID_FMT " refused address=%s listener=%s "
	    "reason=not-implemented", OSP_ID_ARG(osp_conn_id(c)),
	    osp_conn_peer_str(c), li->name);
	osp_conn_printf(c, "* BYE IMAP not implemented yet\r\n");
	osp_conn_close(c);
}

static int
imap_init(struct osp_module_ctx *ctx)
{
	int rc;

	osp_log_warn("imap", "protocol not implemented yet: listeners with "
	    "protocol imap will refuse connections with BYE");
	rc = osp_listener_add(ctx, imap_accept, ctx);
	if (rc != OSP_OK)
		osp_log_err("imap", "cannot register the listener handler: "
		    "%s", osp_strerror(rc));
	return rc;
}

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "imap",
	.version = PACKAGE_VERSION,
	.conf = imap_conf_defs,
	.conf_size = sizeof(struct imap_conf),
	.listener_conf = imap_listener_defs,
	.listener_conf_size = sizeof(struct imap_listener_conf),
	.check = imap_check,
	.init = imap_init,
};
