/* SPDX-License-Identifier: ISC */
/* Module loader and registries: loading real .so files (good and broken
 * ones from tests/abi/testmod.c), lifecycle order, failure cleanup, and the
 * transport, SASL, HTTP route and hook tables. */
#include "core.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Called by the test modules (exported with -export-dynamic). */
void	test_module_event(const char *module, const char *event, int rc);
int	test_module_init(struct osp_module_ctx *ctx);

static struct osp_buf events;
/* Extra registrations a test makes from inside a module's init(). */
static int (*init_extra)(struct osp_module_ctx *ctx);

void
test_module_event(const char *module, const char *event, int rc)
{
	osp_buf_printf(&events, "%s%s:%s", events.len > 0 ? " " : "", module,
	    event);
	if (rc != OSP_OK)
		osp_buf_printf(&events, "=%d", rc);
}

int
test_module_init(struct osp_module_ctx *ctx)
{
	return init_extra != NULL ? init_extra(ctx) : OSP_OK;
}

static const char *
test_dir(void)
{
	const char *d = getenv("OSPREY_TEST_MODULE_DIR");

	return d != NULL ? d : "tests/.libs";
}

/* Writes a config whose body is `yaml` and parses it; modules are found
 * only in the test module directory. */
static struct osp_config *
parse(const char *name, const char *yaml, struct osp_conf_errs *errs)
{
	const char *file;
	struct osp_config *gen;

	setenv("OSPREY_MODULE_PATH", test_dir(), 1);
	file = osp_test_write_file(osp_test_tmpdir(), name, yaml);
	gen = osp_config_parse(file, errs);
	/* The parser keeps its own copy of the name. */
	free((char *)file);
	CU_ASSERT_PTR_NOT_NULL_FATAL(gen);
	if (errs->n > 0)
		fprintf(stderr, "unexpected config errors:\n%s\n",
		    errs->text.data);
	CU_ASSERT_EQUAL_FATAL(errs->n, 0);
	return gen;
}

/* Loads the modules of `yaml`, fills their sections and makes the
 * generation current. */
static void
load_ok(const char *yaml)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen = parse("ok.yaml", yaml, &errs);

	if (osp_modules_load(gen, &errs) == OSP_OK)
		osp_config_fill_modules(gen, &errs);
	if (errs.n > 0)
		fprintf(stderr, "unexpected errors:\n%s\n", errs.text.data);
	CU_ASSERT_EQUAL_FATAL(errs.n, 0);
	osp_conf_errs_deinit(&errs);
	osp_config_set_current(gen);
	osp_buf_reset(&events);
}

static void
unload(void)
{
	osp_modules_unload();
	osp_config_set_current(NULL);
	init_extra = NULL;
}

/* Loading `yaml` must fail with an error text containing every string
 * of `want`; "@FILE" in them stands for the config file's path. */
static void
load_fails(const char *yaml, const char *const *want)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen = parse("bad.yaml", yaml, &errs);
	struct osp_buf expect = { 0 };
	const char *p, *at;

	CU_ASSERT_NOT_EQUAL(osp_modules_load(gen, &errs), OSP_OK);
	CU_ASSERT(errs.n > 0);
	CU_ASSERT_EQUAL(osp_nmodules, 0);
	for (; *want != NULL; want++) {
		osp_buf_reset(&expect);
		for (p = *want; (at = strstr(p, "@FILE")) != NULL; p = at + 5)
			osp_buf_printf(&expect, "%.*s%s/bad.yaml",
			    (int)(at - p), p, osp_test_tmpdir());
		osp_buf_puts(&expect, p);
		if (errs.text.data == NULL || strstr(errs.text.data,
		    expect.data) == NULL) {
			fprintf(stderr, "missing \"%s\" in:\n%s\n",
			    expect.data, errs.text.data != NULL ?
			    errs.text.data : "");
			CU_FAIL("expected error missing");
		}
	}
	osp_buf_deinit(&expect);
	osp_conf_errs_deinit(&errs);
	osp_modules_unload();
	osp_config_unref(gen);
}

static void
expect_events(const char *want)
{
	const char *got = events.data != NULL ? events.data : "";

	if (strcmp(got, want) != 0) {
		fprintf(stderr, "events:\n  got  %s\n  want %s\n", got, want);
		CU_FAIL("lifecycle events differ");
	}
	osp_buf_reset(&events);
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */

static void
test_lifecycle_order(void)
{
	static const struct osp_transport late = {
		.name = "late", .deliver = NULL,
	};
	const char *error = NULL;

	/* test-dep depends on test-good: it is ordered after it even though
	 * it is listed first; test-other keeps its config position. */
	load_ok("modules: [test-dep, test-other, test-good]\n");
	CU_ASSERT_EQUAL_FATAL(osp_nmodules, 3);
	CU_ASSERT_STRING_EQUAL(osp_module_name(osp_modules[0]), "test-other");
	CU_ASSERT_STRING_EQUAL(osp_module_name(osp_modules[1]), "test-good");
	CU_ASSERT_STRING_EQUAL(osp_module_name(osp_modules[2]), "test-dep");
	CU_ASSERT_EQUAL(osp_modules[2]->index, 2);
	CU_ASSERT_PTR_EQUAL(osp_module_find("test-dep"), osp_modules[2]);
	CU_ASSERT_PTR_NULL(osp_module_find("test-absent"));
	CU_ASSERT_PTR_NULL(osp_module_pool(osp_modules[0]));

	CU_ASSERT_EQUAL_FATAL(osp_modules_init(&error), OSP_OK);
	expect_events("test-other:init test-good:init test-dep:init");
	CU_ASSERT_PTR_NOT_NULL(osp_module_pool(osp_modules[1]));
	CU_ASSERT_STRING_EQUAL(osp_module_data(osp_modules[1]), "test-good");
	CU_ASSERT_PTR_NOT_NULL(osp_transport_find("test-good"));
	CU_ASSERT_PTR_NOT_NULL(osp_transport_find("test-dep"));

	/* Registration outside init() is refused, from a module's start()
	 * as from anywhere else. */
	CU_ASSERT_EQUAL_FATAL(osp_modules_start(&error), OSP_OK);
	expect_events("test-other:start-register=-1 test-other:start "
	    "test-good:start-register=-1 test-good:start "
	    "test-dep:start-register=-1 test-dep:start");
	CU_ASSERT_EQUAL(osp_transport_add(osp_modules[0], &late), -EPERM);
	CU_ASSERT_EQUAL(osp_transport_add(NULL, &late), -EPERM);
	CU_ASSERT_PTR_NULL(osp_transport_find("test-good-late"));

	osp_modules_stop();
	expect_events("test-dep:stop test-good:stop test-other:stop");
	osp_modules_unload();
	expect_events("test-dep:fini test-good:fini test-other:fini");
	CU_ASSERT_EQUAL(osp_nmodules, 0);
	CU_ASSERT_PTR_NULL(osp_transport_find("test-good"));
	CU_ASSERT_PTR_NULL(osp_sasl_mech_find("x-test-good"));
	CU_ASSERT_PTR_NULL(osp_http_route_match(OSP_HTTP_GET, NULL,
	    "/test-good", NULL));
	unload();
}

static void
test_unload_stops_started(void)
{
	const char *error = NULL;

	load_ok("modules: [test-good]\n");
	CU_ASSERT_EQUAL_FATAL(osp_modules_init(&error), OSP_OK);
	CU_ASSERT_EQUAL_FATAL(osp_modules_start(&error), OSP_OK);
	osp_buf_reset(&events);
	/* Unloading a running set stops it first, then finishes it. */
	unload();
	expect_events("test-good:stop test-good:fini");
	/* Unloading twice, or with nothing loaded, is harmless. */
	osp_modules_unload();
	expect_events("");
}

static void
test_failing_init(void)
{
	const char *error = NULL;
	int rc;

	load_ok("modules: [test-good, test-failinit, test-other]\n");
	CU_ASSERT_EQUAL_FATAL(osp_nmodules, 3);
	rc = osp_modules_init(&error);
	CU_ASSERT_EQUAL(rc, -EIO);
	CU_ASSERT_PTR_NOT_NULL_FATAL(error);
	CU_ASSERT_PTR_NOT_NULL(strstr(error,
	    "module test-failinit: init failed: "));
	/* The failed module gets no fini; the one before is finished; the
	 * one after was never started. */
	expect_events("test-good:init test-failinit:init=-5 test-good:fini");
	CU_ASSERT_EQUAL(osp_nmodules, 0);
	CU_ASSERT_PTR_NULL(osp_transport_find("test-failinit"));
	CU_ASSERT_PTR_NULL(osp_transport_find("test-good"));
	CU_ASSERT_PTR_NULL(osp_sasl_mech_find("X-test-failinit"));
	CU_ASSERT_EQUAL(osp_hook_run(OSP_HOOK_SMTP_RCPT, NULL), OSP_DECLINED);
	unload();
	expect_events("");
}

static void
test_module_path(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	char yaml[4200];

	/* Without OSPREY_MODULE_PATH, module-path from the config is used;
	 * empty elements are skipped. */
	snprintf(yaml, sizeof(yaml), "module-path: \"/nonexistent::%s\"\n"
	    "modules: [test-good]\n", test_dir());
	gen = parse("path.yaml", yaml, &errs);
	unsetenv("OSPREY_MODULE_PATH");
	CU_ASSERT_EQUAL(osp_modules_load(gen, &errs), OSP_OK);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_EQUAL(osp_nmodules, 1);
	osp_modules_unload();
	osp_config_unref(gen);
	osp_conf_errs_deinit(&errs);
}

static void
test_errors(void)
{
	static const struct {
		const char	*yaml;
		const char	*want[3];
	} cases[] = {
	{ "modules:\n  - test-good\n  - test-absent\n",
	  { "@FILE:3:5: modules[1]: module test-absent: test-absent.so not "
	    "found in ", "(OSPREY_MODULE_PATH)" } },
	{ "modules: [test-badabi]\n",
	  { "@FILE:1:11: modules[0]: module test-badabi: ABI mismatch in ",
	    "expected 1, found 999" } },
	{ "modules: [test-nosym]\n",
	  { "module test-nosym: ", "does not export the osp_module "
	    "descriptor" } },
	{ "modules: [test-unresolved]\n",
	  { "module test-unresolved: cannot load ",
	    "undefined symbol: osp_this_function_does_not_exist" } },
	{ "modules: [test-misnamed]\n",
	  { "module test-misnamed: ", "names itself test-othername, not "
	    "test-misnamed" } },
	{ "modules:\n  - test-good\n  - test-other\n  - test-good\n",
	  { "@FILE:4:5: modules[2]: module test-good: listed twice (first at "
	    "@FILE:2:5)" } },
	{ "modules: [test-cycle-a, test-good, test-cycle-b]\n",
	  { "module test-cycle-a: dependency cycle: test-cycle-a -> "
	    "test-cycle-b -> test-cycle-a" } },
	{ "modules: [test-missingdep]\n",
	  { "@FILE:1:11: modules[0]: module test-missingdep: depends on "
	    "module test-absent, which is not listed in modules" } },
	{ "modules: [test-dep]\n",
	  { "module test-dep: depends on module test-good, which is not "
	    "listed" } },
	{ "modules: [\"../tests/test-good\"]\n",
	  { "invalid module name" } },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		load_fails(cases[i].yaml, cases[i].want);
}

static void
test_errors_all_reported(void)
{
	static const char *const want[] = {
		"module test-badabi: ABI mismatch",
		"module test-nosym: ",
		"module test-absent: test-absent.so not found",
		NULL,
	};

	/* One run reports every broken module, not just the first. */
	load_fails("modules: [test-badabi, test-good, test-nosym, "
	    "test-absent]\n", want);
}

static void
test_reload(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	const char *error = NULL;

	load_ok("modules: [test-good, test-other]\n"
	    "test-good: {value: 1}\ntest-other: {value: 1}\n");
	CU_ASSERT_EQUAL_FATAL(osp_modules_init(&error), OSP_OK);
	osp_buf_reset(&events);

	/* test-good changed: reload() gets the new section; test-other has
	 * no reload(), its change is only logged as needing a restart. */
	gen = parse("ok.yaml", "modules: [test-good, test-other]\n"
	    "test-good: {value: 2}\ntest-other: {value: 2}\n", &errs);
	CU_ASSERT_EQUAL_FATAL(osp_config_fill_modules(gen, &errs), OSP_OK);
	osp_config_set_current(gen);
	CU_ASSERT_EQUAL(osp_modules_reload(gen), OSP_OK);
	expect_events("test-good:reload=2");

	/* Same text again: nothing to do. */
	gen = parse("ok.yaml", "modules: [test-good, test-other]\n"
	    "test-good: {value: 2}\ntest-other: {value: 2}\n", &errs);
	CU_ASSERT_EQUAL_FATAL(osp_config_fill_modules(gen, &errs), OSP_OK);
	osp_config_set_current(gen);
	CU_ASSERT_EQUAL(osp_modules_reload(gen), OSP_OK);
	expect_events("");
	osp_conf_errs_deinit(&errs);
	unload();
	expect_events("test-other:fini test-good:fini");
}

/* ------------------------------------------------------------------ */
/* Registries                                                           */

static int
route_handle(struct osp_http_request *req, void *arg)
{
	return OSP_DECLINED;
}

static const struct osp_http_route r_root = {
	OSP_HTTP_GET, "/", NULL, 0, route_handle, NULL };
static const struct osp_http_route r_webmail = {
	OSP_HTTP_GET | OSP_HTTP_HEAD, "/webmail", NULL, 0, route_handle, NULL };
static const struct osp_http_route r_webmail_host = {
	OSP_HTTP_GET, "/webmail", "mail.example.org", 0, route_handle, NULL };
static const struct osp_http_route r_api = {
	OSP_HTTP_ANY, "/webmail/api", NULL, 0, route_handle, NULL };
static const struct osp_http_route r_api_post = {
	OSP_HTTP_POST, "/webmail/api", NULL, 0, route_handle, NULL };
static const struct osp_http_route r_static = {
	OSP_HTTP_GET, "/static/", NULL, 0, route_handle, NULL };
/* Conflicts and invalid routes. */
static const struct osp_http_route r_webmail_dup = {
	OSP_HTTP_GET | OSP_HTTP_HEAD, "/webmail", NULL, 0, route_handle,
	(void *)1 };
static const struct osp_http_route r_host_dup = {
	OSP_HTTP_GET, "/webmail", "MAIL.example.ORG", 0, route_handle, NULL };
static const struct osp_http_route r_noslash = {
	OSP_HTTP_GET, "webmail", NULL, 0, route_handle, NULL };
static const struct osp_http_route r_nomethod = {
	0, "/x", NULL, 0, route_handle, NULL };

static int
sasl_step(struct osp_sasl *s, const unsigned char *in, size_t inlen,
    const unsigned char **out, size_t *outlen)
{
	return OSP_EAUTH;
}

static const struct osp_sasl_mech m_scram = {
	"SCRAM-SHA-256", 0, 0, sasl_step };
static const struct osp_sasl_mech m_plain = {
	"PLAIN", OSP_SASL_PLAINTEXT, 0, sasl_step };
static const struct osp_sasl_mech m_plain_dup = {
	"plain", 0, 0, sasl_step };

static struct osp_buf hook_trace;

static int
hook_trace_fn(void *data, void *arg)
{
	osp_buf_puts(&hook_trace, arg);
	return OSP_DECLINED;
}

static int
hook_deny_fn(void *data, void *arg)
{
	osp_buf_puts(&hook_trace, arg);
	return OSP_EPERM;
}

/* Registered from inside test-good's init(). */
static int
registries_init(struct osp_module_ctx *ctx)
{
	if (strcmp(osp_module_name(ctx), "test-good") != 0)
		return OSP_OK;
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_root), OSP_OK);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_webmail), OSP_OK);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_webmail_host), OSP_OK);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_api), OSP_OK);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_api_post), OSP_OK);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_static), OSP_OK);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_webmail_dup), -EEXIST);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_host_dup), -EEXIST);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_noslash), -EINVAL);
	CU_ASSERT_EQUAL(osp_http_route_add(ctx, &r_nomethod), -EINVAL);

	CU_ASSERT_EQUAL(osp_sasl_mech_add(ctx, &m_scram), OSP_OK);
	CU_ASSERT_EQUAL(osp_sasl_mech_add(ctx, &m_plain), OSP_OK);
	CU_ASSERT_EQUAL(osp_sasl_mech_add(ctx, &m_plain_dup), -EEXIST);

	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_MAIL, 10,
	    hook_trace_fn, "a"), OSP_OK);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_MAIL, -5,
	    hook_trace_fn, "b"), OSP_OK);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_MAIL, 10,
	    hook_trace_fn, "c"), OSP_OK);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_MAIL, 0,
	    hook_trace_fn, "d"), OSP_OK);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_MAIL, 3,
	    hook_trace_fn, "a"), -EEXIST);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_DATA, 2,
	    hook_trace_fn, "x"), OSP_OK);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_SMTP_DATA, 1,
	    hook_deny_fn, "deny"), OSP_OK);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, OSP_HOOK_MAX_, 1,
	    hook_trace_fn, "bad"), -EINVAL);
	CU_ASSERT_EQUAL(osp_hook_add(ctx, (enum osp_hook_point)0, 1,
	    hook_trace_fn, "bad"), -EINVAL);
	return OSP_OK;
}

static const struct osp_http_route *r_testmod;

/* The routes tried for a request, in order, following `after`. */
static void
expect_routes(uint32_t method, const char *host, const char *path,
    const struct osp_http_route *const *want)
{
	const struct osp_http_route *r = NULL;
	size_t i = 0;

	while ((r = osp_http_route_match(method, host, path, r)) != NULL) {
		if (want[i] != r) {
			fprintf(stderr, "route %zu for %s%s: got %s "
			    "(host %s)\n", i, host != NULL ? host : "", path, r->prefix,
			    r->host != NULL ? r->host : "-");
			CU_FAIL("unexpected route");
			return;
		}
		i++;
	}
	if (want[i] != NULL) {
		fprintf(stderr, "route %zu for %s%s: missing %s\n", i,
		    host != NULL ? host : "", path, want[i]->prefix);
		CU_FAIL("missing route");
	}
}

static void
sasl_collect(const struct osp_sasl_mech *m, void *arg)
{
	osp_buf_printf(arg, "%s ", m->name);
}

static void
test_registries(void)
{
	const char *error = NULL;
	struct osp_buf names = { 0 };
	struct osp_module_ctx *other;
	size_t i;

	init_extra = registries_init;
	load_ok("modules: [test-good, test-other]\n");
	CU_ASSERT_EQUAL_FATAL(osp_modules_init(&error), OSP_OK);
	r_testmod = osp_http_route_match(OSP_HTTP_GET, NULL, "/test-good",
	    NULL);
	CU_ASSERT_PTR_NOT_NULL_FATAL(r_testmod);
	CU_ASSERT_STRING_EQUAL(r_testmod->prefix, "/test-good");

	{
		/* Longest prefix at a segment boundary first; equal
		 * prefixes: host-bound first, then registration order. */
		static const struct {
			uint32_t	 method;
			const char	*host, *path;
			const struct osp_http_route *want[5];
		} cases[] = {
		{ OSP_HTTP_GET, NULL, "/webmail", { &r_webmail, &r_root } },
		{ OSP_HTTP_GET, NULL, "/webmail/", { &r_webmail, &r_root } },
		{ OSP_HTTP_GET, "mail.example.org", "/webmail",
		  { &r_webmail_host, &r_webmail, &r_root } },
		{ OSP_HTTP_GET, "MAIL.Example.org", "/webmail/inbox",
		  { &r_webmail_host, &r_webmail, &r_root } },
		{ OSP_HTTP_GET, "other.example.org", "/webmail",
		  { &r_webmail, &r_root } },
		{ OSP_HTTP_GET, NULL, "/webmailx", { &r_root } },
		{ OSP_HTTP_GET, NULL, "/webmail/api/v1",
		  { &r_api, &r_webmail, &r_root } },
		{ OSP_HTTP_GET, NULL, "/webmail/apix",
		  { &r_webmail, &r_root } },
		{ OSP_HTTP_POST, NULL, "/webmail/api",
		  { &r_api, &r_api_post } },
		{ OSP_HTTP_HEAD, NULL, "/webmail", { &r_webmail } },
		{ OSP_HTTP_GET, NULL, "/static/app.js",
		  { &r_static, &r_root } },
		{ OSP_HTTP_GET, NULL, "/static", { &r_root } },
		{ OSP_HTTP_PUT, NULL, "/", { NULL } },
		{ OSP_HTTP_DELETE, NULL, "/webmail/api/x", { &r_api } },
		{ OSP_HTTP_GET, NULL, "", { NULL } },
		};

		for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			expect_routes(cases[i].method, cases[i].host,
			    cases[i].path, cases[i].want);
	}
	{
		const struct osp_http_route *want[] = {
			r_testmod, &r_root, NULL };

		expect_routes(OSP_HTTP_GET, NULL, "/test-good/x", want);
	}
	/* A route that is not registered has no successor. */
	CU_ASSERT_PTR_NULL(osp_http_route_match(OSP_HTTP_GET, NULL, "/",
	    &r_noslash));

	/* SASL: names are case-insensitive (RFC 4422 §3.1). */
	CU_ASSERT_PTR_EQUAL(osp_sasl_mech_find("scram-sha-256"), &m_scram);
	CU_ASSERT_PTR_EQUAL(osp_sasl_mech_find("Plain"), &m_plain);
	CU_ASSERT_PTR_NULL(osp_sasl_mech_find("SCRAM-SHA-1"));
	osp_sasl_mech_foreach(sasl_collect, &names);
	CU_ASSERT_STRING_EQUAL(names.data, "X-test-good SCRAM-SHA-256 PLAIN "
	    "X-test-other ");
	osp_buf_deinit(&names);

	/* Hooks: priority order, ties in registration order; the first
	 * decision stops the run. */
	osp_buf_reset(&hook_trace);
	CU_ASSERT_EQUAL(osp_hook_run(OSP_HOOK_SMTP_MAIL, NULL), OSP_DECLINED);
	CU_ASSERT_STRING_EQUAL(hook_trace.data, "bdac");
	osp_buf_reset(&hook_trace);
	CU_ASSERT_EQUAL(osp_hook_run(OSP_HOOK_SMTP_DATA, NULL), OSP_EPERM);
	CU_ASSERT_STRING_EQUAL(hook_trace.data, "deny");
	CU_ASSERT_EQUAL(osp_hook_run(OSP_HOOK_MESSAGE_JUNK, NULL),
	    OSP_DECLINED);
	CU_ASSERT_EQUAL(osp_hook_run(OSP_HOOK_MAX_, NULL), OSP_DECLINED);

	/* Transports. */
	CU_ASSERT_PTR_NOT_NULL(osp_transport_find("test-other"));
	CU_ASSERT_PTR_NULL(osp_transport_find("TEST-OTHER"));

	/* Removing one module's entries leaves the others'. */
	other = osp_module_find("test-other");
	CU_ASSERT_PTR_NOT_NULL_FATAL(other);
	osp_registry_remove_module(other);
	CU_ASSERT_PTR_NULL(osp_transport_find("test-other"));
	CU_ASSERT_PTR_NULL(osp_sasl_mech_find("X-test-other"));
	CU_ASSERT_PTR_EQUAL(osp_http_route_match(OSP_HTTP_GET, NULL,
	    "/test-other", NULL), &r_root);
	CU_ASSERT_PTR_NOT_NULL(osp_transport_find("test-good"));
	CU_ASSERT_PTR_EQUAL(osp_sasl_mech_find("PLAIN"), &m_plain);

	unload();
	CU_ASSERT_PTR_NULL(osp_transport_find("test-good"));
	CU_ASSERT_PTR_NULL(osp_sasl_mech_find("PLAIN"));
	CU_ASSERT_PTR_NULL(osp_http_route_match(OSP_HTTP_GET, NULL, "/",
	    NULL));
	osp_buf_reset(&hook_trace);
	CU_ASSERT_EQUAL(osp_hook_run(OSP_HOOK_SMTP_DATA, NULL), OSP_DECLINED);
	CU_ASSERT_EQUAL(hook_trace.len, 0);
	osp_buf_deinit(&hook_trace);
}

static const struct osp_test tests[] = {
	OSP_TEST(test_lifecycle_order),
	OSP_TEST(test_unload_stops_started),
	OSP_TEST(test_failing_init),
	OSP_TEST(test_module_path),
	OSP_TEST(test_errors),
	OSP_TEST(test_errors_all_reported),
	OSP_TEST(test_reload),
	OSP_TEST(test_registries),
	OSP_TEST_END
};

int
main(int argc, char **argv)
{
	int rc;

	osp_log_set_level(OSP_LOG_ERR);
	rc = osp_test_main(argc, argv, "module", tests);
	osp_buf_deinit(&events);
	return rc;
}
