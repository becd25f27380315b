/* SPDX-License-Identifier: ISC */
/* Smarthost transports (submission, submissions, smtp with SASL): schema
 * and lifecycle. Delivery is not implemented yet: no transport is
 * registered, and startup says so. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <osprey/osprey.h>

enum subm_protocol {
	SUBM_SUBMISSION = 0,	/* port 587, STARTTLS (RFC 6409) */
	SUBM_SUBMISSIONS,	/* port 465, implicit TLS (RFC 8314 §3.3) */
	SUBM_SMTP,		/* port 25 */
};

struct subm_transport {
	int			 protocol;	/* enum subm_protocol */
	const char		*host;
	int64_t			 port;
	const char		*username;
	const char		*password_file;
	struct osp_conf_list	 mechanisms;	/* const char * */
	bool			 require_tls;
	bool			 verify_certificate;
	uint64_t		 connect_timeout;
};

struct subm_conf {
	struct osp_conf_list	 transports;	/* osp_conf_map_item */
};

static const char *const subm_protocols[] = {
	"submission", "submissions", "smtp", NULL
};

#define T(field) offsetof(struct subm_transport, field)
static const struct osp_conf_def subm_transport_defs[] = {
	{ .key = "protocol", .type = OSP_CONF_ENUM, .offset = T(protocol),
	  .dflt = "submission", .values = subm_protocols,
	  .help = "submission: STARTTLS on 587; submissions: implicit TLS "
	  "on 465; smtp: port 25" },
	{ .key = "host", .type = OSP_CONF_STRING, .offset = T(host),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY,
	  .help = "the smarthost's name (its certificate must match)" },
	{ .key = "port", .type = OSP_CONF_INT, .offset = T(port),
	  .dflt = "0", .help = "0: the protocol's port (587, 465, 25)",
	  .min = 0, .max = 65535 },
	{ .key = "username", .type = OSP_CONF_STRING, .offset = T(username),
	  .help = "SASL user name; none: no authentication" },
	{ .key = "password-file", .type = OSP_CONF_PATH,
	  .offset = T(password_file),
	  .help = "file holding the SASL password (kept out of the config)" },
	{ .key = "mechanisms", .type = OSP_CONF_LIST, .offset = T(mechanisms),
	  .elem = OSP_CONF_STRING,
	  .help = "SASL mechanisms to try, in order (default: the strongest "
	  "the server offers, SCRAM-SHA-256-PLUS first)" },
	{ .key = "require-tls", .type = OSP_CONF_BOOL,
	  .offset = T(require_tls), .dflt = "true",
	  .help = "fail instead of delivering without TLS" },
	{ .key = "verify-certificate", .type = OSP_CONF_BOOL,
	  .offset = T(verify_certificate), .dflt = "true",
	  .help = "verify the server certificate against host" },
	{ .key = "connect-timeout", .type = OSP_CONF_DURATION,
	  .offset = T(connect_timeout), .dflt = "30s",
	  .help = "time allowed to connect and read the greeting",
	  .min = 1000, .max = 600000 },
	OSP_CONF_END
};
#undef T

static const struct osp_conf_def subm_conf_defs[] = {
	{ .key = "transports", .type = OSP_CONF_MAP,
	  .offset = offsetof(struct subm_conf, transports),
	  .sub = subm_transport_defs,
	  .elem_size = sizeof(struct subm_transport),
	  .help = "named smarthost transports; routes in domains.yaml name "
	  "them" },
	OSP_CONF_END
};

/* Transport names are referenced from routes: [a-z0-9-], and "direct"
 * belongs to the core. */
static int
subm_check(struct osp_module_ctx *ctx, void *confp)
{
	struct subm_conf *conf = confp;
	struct osp_conf_map_item *it;
	struct subm_transport *t;
	int rc = OSP_OK;
	size_t i;

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
		if ((t->username == NULL) != (t->password_file == NULL)) {
			osp_module_conf_error(ctx, t->username != NULL ?
			    (const void *)&t->username :
			    (const void *)&t->password_file,
			    "username and password-file go together");
			rc = OSP_ECONFIG;
		}
		/* RFC 4954 §4: credentials never travel in cleartext. */
		if (t->username != NULL && !t->require_tls &&
		    t->protocol != SUBM_SUBMISSIONS) {
			osp_module_conf_error(ctx, &t->require_tls,
			    "false would send the password "
			    "without TLS");
			rc = OSP_ECONFIG;
		}
		if (t->mechanisms.n > 0 && t->username == NULL) {
			osp_module_conf_error(ctx, &t->mechanisms,
			    "mechanisms without username");
			rc = OSP_ECONFIG;
		}
	}
	return rc;
}

static int
subm_init(struct osp_module_ctx *ctx)
{
	const struct subm_conf *conf = osp_module_conf(ctx);
	struct osp_buf names = { 0 };
	size_t i, n = conf != NULL ? conf->transports.n : 0;

	for (i = 0; i < n; i++)
		osp_buf_printf(&names, "%s%s", i > 0 ? ", " : "",
		    OSP_CONF_ITEM(&conf->transports, struct osp_conf_map_item,
		    i).name);
	if (n == 0)
		osp_log_warn("transport-submission", "not implemented yet "
		    "(and no transports configured): delivery through a "
		    "smarthost is not available");
	else
		osp_log_warn("transport-submission", "not implemented yet: "
		    "transports %s are not registered; routes naming them "
		    "cannot be used", names.data);
	osp_buf_deinit(&names);
	return OSP_OK;
}

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "transport-submission",
	.version = PACKAGE_VERSION,
	.conf = subm_conf_defs,
	.conf_size = sizeof(struct subm_conf),
	.check = subm_check,
	.init = subm_init,
};
