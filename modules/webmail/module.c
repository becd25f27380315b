/* SPDX-License-Identifier: ISC */
/* Webmail module: descriptor, config schema and lifecycle. Not
 * implemented yet: it registers no routes and says so at startup. */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <osprey/osprey.h>

struct webmail_conf {
	const char	*path;
	const char	*content_host;
	uint64_t	 session_lifetime;
	uint64_t	 max_upload_size;
	bool		 load_remote_images;
};

#define F(field) offsetof(struct webmail_conf, field)
static const struct osp_conf_def webmail_conf_defs[] = {
	{ .key = "path", .type = OSP_CONF_STRING, .offset = F(path),
	  .dflt = "/webmail",
	  .help = "URL path prefix the webmail is served under" },
	/* DESIGN §8: HTML mail is shown from a separate origin so that its
	 * content can never reach the session of the webmail itself. */
	{ .key = "content-host", .type = OSP_CONF_STRING,
	  .offset = F(content_host),
	  .help = "separate host name for showing HTML messages (default: a "
	  "sandboxed iframe path on the same host)" },
	{ .key = "session-lifetime", .type = OSP_CONF_DURATION,
	  .offset = F(session_lifetime), .dflt = "7d",
	  .help = "a login session ends after this long without use",
	  .min = 60000, .max = 31536000000LL },
	{ .key = "max-upload-size", .type = OSP_CONF_SIZE,
	  .offset = F(max_upload_size), .dflt = "25M",
	  .help = "largest attachment upload", .min = 1024,
	  .max = 4294967296LL },
	{ .key = "load-remote-images", .type = OSP_CONF_BOOL,
	  .offset = F(load_remote_images), .dflt = "false",
	  .help = "load external images in HTML mail without asking "
	  "(they reveal that and when a message was read)" },
	OSP_CONF_END
};
#undef F

/* A path prefix: "/" then segments of unreserved characters (RFC 3986
 * §2.3), no empty, "." or ".." segment, no trailing slash. */
static bool
webmail_valid_path(const char *p)
{
	const char *seg;
	size_t len;

	if (p == NULL || p[0] != '/')
		return false;
	if (p[1] == '\0')
		return true;
	for (p++; ; p++) {
		seg = p;
		while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' ||
		    *p == '_' || *p == '~')
			p++;
		len = (size_t)(p - seg);
		if (len == 0 || (len == 1 && seg[0] == '.') ||
		    (len == 2 && seg[0] == '.' && seg[1] == '.'))
			return false;
		if (*p == '\0')
			return true;
		if (*p != '/')
			return false;
	}
}

static int
webmail_check(struct osp_module_ctx *ctx, void *confp)
{
	struct webmail_conf *conf = confp;
	int rc = OSP_OK;

	if (!webmail_valid_path(conf->path)) {
		osp_module_conf_error(ctx, &conf->path, "must be \"/\" or a "
		    "path like /webmail: segments of letters, digits and "
		    "-._~, no trailing slash");
		rc = OSP_ECONFIG;
	}
	if (conf->content_host != NULL &&
	    !osp_str_is_hostname(conf->content_host)) {
		osp_module_conf_error(ctx, &conf->content_host,
		    "not a valid host name");
		rc = OSP_ECONFIG;
	}
	return rc;
}

static int
webmail_init(struct osp_module_ctx *ctx)
{
	const struct webmail_conf *conf = osp_module_conf(ctx);

	osp_log_warn("webmail", "not implemented yet: no routes are "
	    "registered, requests under %s are not served",
	    conf != NULL && conf->path != NULL ? conf->path : "/webmail");
	return OSP_OK;
}

static const char *const webmail_depends[] = { "http", NULL };

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "webmail",
	.version = PACKAGE_VERSION,
	.depends = webmail_depends,
	.conf = webmail_conf_defs,
	.conf_size = sizeof(struct webmail_conf),
	.check = webmail_check,
	.init = webmail_init,
};
