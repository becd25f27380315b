/* SPDX-License-Identifier: ISC */
/* Test-only modules for tests/unit/test_module.c: one source, built into
 * several .so files whose defects are chosen by -D flags (see the
 * "module loader" block of tests/Makefile.inc). */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#include <osprey/osprey.h>

#ifndef TESTMOD_NAME
#error TESTMOD_NAME must name the module
#endif
#ifndef TESTMOD_ABI
#define TESTMOD_ABI OSP_MODULE_ABI
#endif

/* Provided by the test binary (linked with -export-dynamic): records the
 * lifecycle calls so the test can check their order, and lets a test
 * register more from inside init(), where registration is allowed. */
void	test_module_event(const char *module, const char *event, int rc);
int	test_module_init(struct osp_module_ctx *ctx);

struct testmod_conf {
	int64_t		 value;
};

static const struct osp_conf_def testmod_conf_defs[] = {
	{ .key = "value", .type = OSP_CONF_INT,
	  .offset = offsetof(struct testmod_conf, value), .dflt = "0",
	  .help = "a number; negative values fail check()" },
	OSP_CONF_END
};

#ifdef TESTMOD_UNRESOLVED
/* Exists nowhere: dlopen with RTLD_NOW must fail on it. */
void	osp_this_function_does_not_exist(void);
#endif

static int
testmod_route(struct osp_http_request *req, void *arg)
{
	return OSP_DECLINED;
}

static int
testmod_deliver(struct osp_delivery *d, void *arg)
{
	return OSP_ETEMP;
}

static int
testmod_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	return OSP_EAUTH;
}

static int
testmod_hook(void *data, void *arg)
{
	return OSP_DECLINED;
}

static const struct osp_transport testmod_transport = {
	.name = TESTMOD_NAME, .deliver = testmod_deliver,
};
static const struct osp_sasl_mech testmod_mech = {
	.name = "X-" TESTMOD_NAME, .step = testmod_step,
};
static const struct osp_http_route testmod_http = {
	.methods = OSP_HTTP_GET, .prefix = "/" TESTMOD_NAME,
	.handle = testmod_route,
};

static int
testmod_init(struct osp_module_ctx *ctx)
{
	int rc;

#ifdef TESTMOD_UNRESOLVED
	osp_this_function_does_not_exist();
#endif
	/* Everything a module can register, so that removal is tested. */
	if ((rc = osp_transport_add(ctx, &testmod_transport)) != OSP_OK ||
	    (rc = osp_sasl_mech_add(ctx, &testmod_mech)) != OSP_OK ||
	    (rc = osp_http_route_add(ctx, &testmod_http)) != OSP_OK ||
	    (rc = osp_hook_add(ctx, OSP_HOOK_SMTP_RCPT, 0, testmod_hook,
	    NULL)) != OSP_OK || (rc = test_module_init(ctx)) != OSP_OK) {
		test_module_event(TESTMOD_NAME, "init", rc);
		return rc;
	}
	osp_module_set_data(ctx, osp_pstrdup(osp_module_pool(ctx),
	    TESTMOD_NAME));
#ifdef TESTMOD_FAIL_INIT
	test_module_event(TESTMOD_NAME, "init", -EIO);
	return -EIO;
#else
	test_module_event(TESTMOD_NAME, "init", OSP_OK);
	return OSP_OK;
#endif
}

static int
testmod_check(struct osp_module_ctx *ctx, void *confp)
{
	struct testmod_conf *conf = confp;

	if (conf->value < 0) {
		osp_module_conf_error(ctx, &conf->value, "must not be "
		    "negative");
		return OSP_ECONFIG;
	}
	return OSP_OK;
}

static int
testmod_start(struct osp_module_ctx *ctx)
{
	static const struct osp_transport late = {
		.name = TESTMOD_NAME "-late", .deliver = testmod_deliver,
	};

	/* Registrations are refused outside init(): the result is recorded
	 * as the event's code. */
	test_module_event(TESTMOD_NAME, "start-register",
	    osp_transport_add(ctx, &late));
	test_module_event(TESTMOD_NAME, "start", OSP_OK);
	return OSP_OK;
}

#ifndef TESTMOD_NO_RELOAD
static int
testmod_reload(struct osp_module_ctx *ctx, const void *newconf)
{
	const struct testmod_conf *conf = newconf;

	test_module_event(TESTMOD_NAME, "reload", (int)conf->value);
	return OSP_OK;
}
#endif

static void
testmod_stop(struct osp_module_ctx *ctx)
{
	test_module_event(TESTMOD_NAME, "stop", OSP_OK);
}

static void
testmod_fini(struct osp_module_ctx *ctx)
{
	test_module_event(TESTMOD_NAME, "fini", OSP_OK);
}

#ifdef TESTMOD_DEPENDS
static const char *const testmod_depends[] = { TESTMOD_DEPENDS, NULL };
#endif

#ifdef TESTMOD_NO_SYMBOL
/* Exports a descriptor under another name: not an osprey module. */
const struct osp_module osp_module_v0 = {
#else
const struct osp_module osp_module = {
#endif
	.abi = TESTMOD_ABI,
#ifdef TESTMOD_DESCRIPTOR_NAME
	.name = TESTMOD_DESCRIPTOR_NAME,
#else
	.name = TESTMOD_NAME,
#endif
	.version = PACKAGE_VERSION,
#ifdef TESTMOD_DEPENDS
	.depends = testmod_depends,
#endif
	.conf = testmod_conf_defs,
	.conf_size = sizeof(struct testmod_conf),
	.check = testmod_check,
	.init = testmod_init,
	.start = testmod_start,
#ifndef TESTMOD_NO_RELOAD
	.reload = testmod_reload,
#endif
	.stop = testmod_stop,
	.fini = testmod_fini,
};
