/* SPDX-License-Identifier: ISC */
/* SMTP server module: descriptor, config schema and lifecycle. The
 * protocol is not implemented yet: listeners answer 421 and close. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <osprey/osprey.h>

struct smtp_conf {
	const char	*hostname;
	const char	*greeting;
	uint64_t	 max_message_size;
	int64_t		 max_recipients;
	int64_t		 max_errors;
	uint64_t	 command_timeout;
	uint64_t	 data_timeout;
	bool		 require_tls_for_auth;
};

enum smtp_role {
	SMTP_ROLE_DELIVERY = 0,
	SMTP_ROLE_SUBMISSION,
};

struct smtp_listener_conf {
	int		 role;		/* enum smtp_role */
};

static const char *const smtp_roles[] = { "delivery", "submission", NULL };

#define F(field) offsetof(struct smtp_conf, field)
static const struct osp_conf_def smtp_conf_defs[] = {
	{ .key = "hostname", .type = OSP_CONF_STRING, .offset = F(hostname),
	  .help = "name in the greeting and EHLO reply (default: the core "
	  "hostname)" },
	{ .key = "greeting", .type = OSP_CONF_STRING, .offset = F(greeting),
	  .dflt = "ESMTP",
	  .help = "text after the hostname in the 220 greeting" },
	{ .key = "max-message-size", .type = OSP_CONF_SIZE,
	  .offset = F(max_message_size), .dflt = "50M",
	  .help = "largest message accepted, announced as SIZE (RFC 1870)",
	  .min = 1024, .max = 4294967296LL },
	/* RFC 5321 §4.5.3.1.8: servers must accept at least 100. */
	{ .key = "max-recipients", .type = OSP_CONF_INT,
	  .offset = F(max_recipients), .dflt = "1000",
	  .help = "recipients per transaction (at least 100, RFC 5321 "
	  "4.5.3.1.8)", .min = 100, .max = 100000 },
	{ .key = "max-errors", .type = OSP_CONF_INT, .offset = F(max_errors),
	  .dflt = "20",
	  .help = "protocol errors in a session before it is disconnected",
	  .min = 1, .max = 1000 },
	/* RFC 5321 §4.5.3.2.7: wait at least 5 minutes for a command. */
	{ .key = "command-timeout", .type = OSP_CONF_DURATION,
	  .offset = F(command_timeout), .dflt = "5m",
	  .help = "idle time allowed between commands (RFC 5321 4.5.3.2.7)",
	  .min = 1000, .max = 3600000 },
	{ .key = "data-timeout", .type = OSP_CONF_DURATION,
	  .offset = F(data_timeout), .dflt = "10m",
	  .help = "idle time allowed while a message is sent (DATA, BDAT)",
	  .min = 1000, .max = 3600000 },
	/* RFC 4954 §4, RFC 8314 §3: no passwords over cleartext. */
	{ .key = "require-tls-for-auth", .type = OSP_CONF_BOOL,
	  .offset = F(require_tls_for_auth), .dflt = "true",
	  .help = "offer AUTH only after STARTTLS or on implicit TLS" },
	OSP_CONF_END
};
#undef F

static const struct osp_conf_def smtp_listener_defs[] = {
	{ .key = "role", .type = OSP_CONF_ENUM,
	  .offset = offsetof(struct smtp_listener_conf, role),
	  .dflt = "delivery", .values = smtp_roles,
	  .help = "delivery: mail from other servers (port 25); submission: "
	  "authenticated users (ports 587, 465)" },
	OSP_CONF_END
};

static int
smtp_check(struct osp_module_ctx *ctx, void *confp)
{
	struct smtp_conf *conf = confp;
	const char *p;
	int rc = OSP_OK;

	if (conf->hostname != NULL && !osp_str_is_hostname(conf->hostname)) {
		osp_module_conf_error(ctx, &conf->hostname,
		    "not a valid domain name");
		rc = OSP_ECONFIG;
	}
	/* The greeting goes on the wire verbatim: a CR or LF in it would
	 * inject protocol lines. */
	for (p = conf->greeting != NULL ? conf->greeting : ""; *p != '\0';
	    p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f) {
			osp_module_conf_error(ctx, &conf->greeting,
			    "only printable ASCII is allowed");
			rc = OSP_ECONFIG;
			break;
		}
	}
	return rc;
}

static void
smtp_refuse_cb(struct osp_conn *c, enum osp_conn_event ev, void *arg)
{
	/* Nothing to do: the connection is closing (osp_conn_close()
	 * delivers no further events). */
}

/*
 * Until the protocol exists, refuse honestly: RFC 5321 §3.8 lets a server
 * that cannot serve answer the connection with 421 and close.
 */
static void
smtp_accept(struct osp_conn *c, const struct osp_listener_info *li,
    void *arg)
{
	struct osp_module_ctx *ctx = arg;
	const struct smtp_conf *conf = osp_module_conf(ctx);
	const char *hostname = conf != NULL ? conf->hostname : NULL;

	if (hostname == NULL)
		hostname = osp_config_hostname(osp_config_current());
	osp_conn_set_callback(c, smtp_refuse_cb, NULL);
	osp_conn_set_timeouts(c, 0, 30000);
	osp_log_info("smtp", OSP_ID_FMT " refused address=%s listener=%s "
	    "reason=not-implemented", OSP_ID_ARG(osp_conn_id(c)),
	    osp_conn_peer_str(c), li->name);
	osp_conn_printf(c, "421 4.3.2 %s Service not available: SMTP not "
	    "implemented yet\r\n", hostname);
	osp_conn_close(c);
}

static int
smtp_init(struct osp_module_ctx *ctx)
{
	int rc;

	osp_log_warn("smtp", "protocol not implemented yet: listeners with "
	    "protocol smtp will refuse connections with 421");
	rc = osp_listener_add(ctx, smtp_accept, ctx);
	if (rc != OSP_OK)
		osp_log_err("smtp", "cannot register the listener handler: "
		    "%s", osp_strerror(rc));
	return rc;
}

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "smtp",
	.version = PACKAGE_VERSION,
	.conf = smtp_conf_defs,
	.conf_size = sizeof(struct smtp_conf),
	.listener_conf = smtp_listener_defs,
	.listener_conf_size = sizeof(struct smtp_listener_conf),
	.check = smtp_check,
	.init = smtp_init,
};
