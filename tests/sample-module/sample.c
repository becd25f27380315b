/* SPDX-License-Identifier: ISC */
/* A third-party module, built outside the tree against the installed
 * headers and osprey.pc: it proves that path works (tests/abi/sample.sh).
 * It logs every SMTP RCPT hook call and declines (lets others decide). */
#include <stddef.h>
#include <stdint.h>

#include <osprey/osprey.h>

struct sample_conf {
	const char	*greeting;
	int64_t		 level;
};

static const struct osp_conf_def sample_conf_defs[] = {
	{ .key = "greeting", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct sample_conf, greeting),
	  .dflt = "hello", .help = "word logged at start" },
	{ .key = "level", .type = OSP_CONF_INT,
	  .offset = offsetof(struct sample_conf, level), .dflt = "1",
	  .help = "how much to log", .min = 0, .max = 3 },
	OSP_CONF_END
};

static int
sample_check(struct osp_module_ctx *ctx, void *confp)
{
	struct sample_conf *conf = confp;

	if (conf->greeting[0] == '\0') {
		osp_module_conf_error(ctx, &conf->greeting, "must not be "
		    "empty");
		return OSP_ECONFIG;
	}
	return OSP_OK;
}

static int
sample_rcpt(void *data, void *arg)
{
	osp_log_debug("sample", "rcpt hook called");
	return OSP_DECLINED;
}

static int
sample_init(struct osp_module_ctx *ctx)
{
	const struct sample_conf *conf = osp_module_conf(ctx);

	osp_log_info("sample", "%s level=%lld", conf->greeting,
	    (long long)conf->level);
	return osp_hook_add(ctx, OSP_HOOK_SMTP_RCPT, 100, sample_rcpt, NULL);
}

const struct osp_module osp_module = {
	.abi = OSP_MODULE_ABI,
	.name = "sample",
	.version = "1.0",
	.conf = sample_conf_defs,
	.conf_size = sizeof(struct sample_conf),
	.check = sample_check,
	.init = sample_init,
};
