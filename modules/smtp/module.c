/* SPDX-License-Identifier: ISC */
/* SMTP server module: descriptor, config schema and lifecycle. The
 * protocol lives in smtp_session.c and its helpers. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <osprey/osprey.h>

#include "smtp.h"

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
	  "4.5.3.1.8), announced as LIMITS RCPTMAX (RFC 9422)", .min = 100,
	  .max = 100000 },
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
	  .help = "offer AUTH only after STARTTLS or on implicit TLS, and "
	  "require STARTTLS before MAIL on starttls submission listeners" },
	{ .key = "auth-failure-delay", .type = OSP_CONF_DURATION,
	  .offset = F(auth_failure_delay), .dflt = "1s",
	  .help = "delay before the reply to a failed AUTH (from the third "
	  "failure the session also turns slow: 1 byte/s replies)",
	  .min = 0, .max = 60000 },
	{ .key = "unknown-recipient-delay", .type = OSP_CONF_DURATION,
	  .offset = F(unknown_recipient_delay), .dflt = "1s",
	  .help = "delay before the 550 5.1.1 reply to an unknown recipient "
	  "(slows address harvesting)", .min = 0, .max = 60000 },
	{ .key = "localserve-account", .type = OSP_CONF_STRING,
	  .offset = F(localserve_account),
	  .help = "development only (set by osprey localserve): every "
	  "recipient goes to this account's Inbox and localparts simulate "
	  "failures (see README)" },
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
	if (conf->localserve_account != NULL &&
	    conf->localserve_account[0] == '\0') {
		osp_module_conf_error(ctx, &conf->localserve_account,
		    "must name an account");
		rc = OSP_ECONFIG;
	}
	return rc;
}

static int
smtp_init(struct osp_module_ctx *ctx)
{
	int rc;

	memset(&smtp_mod, 0, sizeof(smtp_mod));
	smtp_mod.ctx = ctx;
	smtp_mod.m_connections = osp_metric_new("osprey_smtp_connections_total",
	    "SMTP connections accepted", OSP_METRIC_COUNTER, "listener");
	smtp_mod.m_rejected = osp_metric_new("osprey_smtp_rejected_total",
	    "SMTP commands or messages refused", OSP_METRIC_COUNTER,
	    "reason");
	smtp_mod.m_delivered = osp_metric_new("osprey_smtp_delivered_total",
	    "messages stored durably by the SMTP server",
	    OSP_METRIC_COUNTER, "role");
	smtp_mod.m_auth_failures = osp_metric_new(
	    "osprey_smtp_auth_failures_total", "failed SMTP AUTH attempts",
	    OSP_METRIC_COUNTER, "mechanism");
	smtp_mod.m_auth_success = osp_metric_new(
	    "osprey_smtp_auth_success_total", "successful SMTP AUTH",
	    OSP_METRIC_COUNTER, "mechanism");
	smtp_mod.m_sessions = osp_metric_new("osprey_smtp_sessions",
	    "open SMTP sessions", OSP_METRIC_GAUGE, NULL);
	rc = osp_listener_add(ctx, smtp_session_accept, ctx);
	if (rc != OSP_OK)
		osp_log_err("smtp", "cannot register the listener handler: "
		    "%s", osp_strerror(rc));
	return rc;
}

/* New sessions take the new generation's conf (osp_config_module of the
 * generation they reference); running sessions keep theirs. */
static int
smtp_reload(struct osp_module_ctx *ctx, const void *newconf)
{
	return OSP_OK;
}

static void
smtp_stop(struct osp_module_ctx *ctx)
{
	smtp_session_stop_all();
}

static void
smtp_fini(struct osp_module_ctx *ctx)
{
	smtp_deliver_fini();
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
	.reload = smtp_reload,
	.stop = smtp_stop,
	.fini = smtp_fini,
};
