/* SPDX-License-Identifier: ISC */
/* Unit tests of the configuration: YAML with includes, every schema type,
 * every error class with its exact message, module sections and
 * osp_module_conf_error(), generations, describe. */
#include "conf_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "testutil.h"

/* ------------------------------------------------------------------ */
/* A fake module with every option type, a check() and listener keys.   */

struct fake_route {
	const char		*to;
	struct osp_conf_addr	 via;
};

struct fake_domain {
	bool		 dkim;
	const char	*selector;
};

struct fake_conf {
	bool			 flag;
	int64_t			 count;
	uint64_t		 max_size;
	uint64_t		 timeout;
	const char		*greeting;
	const char		*spool;
	int			 mode;
	struct osp_conf_addr	 relay;
	struct osp_conf_list	 names;		/* const char * */
	struct osp_conf_list	 ports;		/* int64_t */
	struct {
		int64_t		 low, high;
	} limits;
	struct osp_conf_list	 routes;	/* struct fake_route */
	struct osp_conf_list	 domains;	/* of struct fake_domain */
};

struct fake_lconf {
	int	 role;
	int64_t	 max_clients;
};

#define F(field) offsetof(struct fake_conf, field)

static const char *const fake_modes[] = { "slow", "fast", NULL };
static const char *const fake_roles[] = { "delivery", "submission", NULL };

static const struct osp_conf_def fake_limits_defs[] = {
	{ .key = "low", .type = OSP_CONF_INT, .offset = 0, .dflt = "0",
	  .help = "Lower limit." },
	{ .key = "high", .type = OSP_CONF_INT, .offset = sizeof(int64_t),
	  .dflt = "5", .help = "Upper limit." },
	OSP_CONF_END
};

static const struct osp_conf_def fake_route_defs[] = {
	{ .key = "to", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct fake_route, to),
	  .flags = OSP_CONF_REQUIRED, .help = "Destination domain." },
	{ .key = "via", .type = OSP_CONF_ADDR,
	  .offset = offsetof(struct fake_route, via), .dflt = "127.0.0.1@25",
	  .help = "Next hop." },
	OSP_CONF_END
};

static const struct osp_conf_def fake_domain_defs[] = {
	{ .key = "dkim", .type = OSP_CONF_BOOL,
	  .offset = offsetof(struct fake_domain, dkim), .dflt = "false",
	  .help = "Sign with DKIM." },
	{ .key = "selector", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct fake_domain, selector), .dflt = "default",
	  .help = "DKIM selector." },
	OSP_CONF_END
};

static const struct osp_conf_def fake_defs[] = {
	{ .key = "flag", .type = OSP_CONF_BOOL, .offset = F(flag),
	  .help = "a flag (lower-case help is capitalised by describe)." },
	{ .key = "count", .type = OSP_CONF_INT, .offset = F(count),
	  .dflt = "10", .min = -5, .max = 100, .help = "A count." },
	{ .key = "max-size", .type = OSP_CONF_SIZE, .offset = F(max_size),
	  .dflt = "10M", .min = 1024, .max = 1LL << 40, .help = "A size." },
	{ .key = "timeout", .type = OSP_CONF_DURATION, .offset = F(timeout),
	  .dflt = "5m", .min = 1, .help = "A duration." },
	{ .key = "greeting", .type = OSP_CONF_STRING, .offset = F(greeting),
	  .dflt = "hi: there # not a comment", .help = "A string." },
	{ .key = "spool", .type = OSP_CONF_PATH, .offset = F(spool),
	  .help = "A path." },
	{ .key = "mode", .type = OSP_CONF_ENUM, .offset = F(mode),
	  .values = fake_modes, .dflt = "slow", .help = "A mode." },
	{ .key = "relay", .type = OSP_CONF_ADDR, .offset = F(relay),
	  .dflt = "::1", .help = "An address." },
	{ .key = "names", .type = OSP_CONF_LIST, .elem = OSP_CONF_STRING,
	  .offset = F(names), .dflt = "[a, \"b c\"]", .help = "Names." },
	{ .key = "ports", .type = OSP_CONF_LIST, .elem = OSP_CONF_INT,
	  .offset = F(ports), .dflt = "25", .min = 1, .max = 65535,
	  .help = "Ports." },
	{ .key = "limits", .type = OSP_CONF_SECTION, .offset = F(limits),
	  .sub = fake_limits_defs, .help = "Limits." },
	{ .key = "routes", .type = OSP_CONF_SECTIONS, .offset = F(routes),
	  .sub = fake_route_defs, .elem_size = sizeof(struct fake_route),
	  .help = "Routes." },
	{ .key = "domains", .type = OSP_CONF_MAP, .offset = F(domains),
	  .sub = fake_domain_defs, .elem_size = sizeof(struct fake_domain),
	  .help = "Domains." },
	OSP_CONF_END
};

static const struct osp_conf_def fake_listener_defs[] = {
	{ .key = "role", .type = OSP_CONF_ENUM,
	  .offset = offsetof(struct fake_lconf, role), .values = fake_roles,
	  .dflt = "delivery", .help = "Role of the listener." },
	{ .key = "max-clients", .type = OSP_CONF_INT,
	  .offset = offsetof(struct fake_lconf, max_clients), .dflt = "100",
	  .min = 1, .max = 10000, .help = "Connection limit." },
	OSP_CONF_END
};

static int fake_checks;

static int
fake_check(struct osp_module_ctx *ctx, void *conf)
{
	struct fake_conf *c = conf;

	fake_checks++;
	if (c->limits.low > c->limits.high) {
		osp_module_conf_error(ctx, &c->limits.high,
		    "must be at least low (%lld)", (long long)c->limits.low);
		return OSP_ECONFIG;
	}
	if (c->greeting != NULL && strcmp(c->greeting, "bad") == 0) {
		osp_module_conf_error(ctx, &c->greeting, "greeting refused");
		return OSP_ECONFIG;
	}
	if (c->ports.n > 1 && OSP_CONF_ITEM(&c->ports, int64_t, 1) == 666) {
		osp_module_conf_error(ctx,
		    &OSP_CONF_ITEM(&c->ports, int64_t, 1), "unlucky port");
		return OSP_ECONFIG;
	}
	if (c->count == 42)
		return OSP_ECONFIG;	/* refused without a message */
	return OSP_OK;
}

static const struct osp_module fake_mod = {
	.abi = OSP_MODULE_ABI, .name = "fake", .version = "1.0",
	.conf = fake_defs, .conf_size = sizeof(struct fake_conf),
	.listener_conf = fake_listener_defs,
	.listener_conf_size = sizeof(struct fake_lconf),
	.check = fake_check,
};

static const struct osp_module bare_mod = {
	.abi = OSP_MODULE_ABI, .name = "bare", .version = "0.1",
};

static struct osp_module_ctx fake_ctx = { .mod = &fake_mod, .index = 0 };
static struct osp_module_ctx bare_ctx = { .mod = &bare_mod, .index = 1 };
static struct osp_module_ctx *fake_list[] = { &fake_ctx, &bare_ctx, NULL };

/* Pretends the loader loaded fake and bare. */
static void
fake_modules_load(void)
{
	osp_modules = fake_list;
	osp_nmodules = 2;
}

static void
fake_modules_unload(void)
{
	osp_modules = NULL;
	osp_nmodules = 0;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                               */

static char origdir[PATH_MAX];

/* A fresh directory under the test tmpdir with files (name, text pairs,
 * NULL-terminated), made the working directory so messages name files
 * as given (relative). */
static void
enter_case_dir(const char *name, const char *const *files)
{
	char dir[PATH_MAX], sub[PATH_MAX + 256], *slash;
	size_t i;

	if (origdir[0] == '\0' && getcwd(origdir, sizeof(origdir)) == NULL)
		abort();
	snprintf(dir, sizeof(dir), "%s/%s", osp_test_tmpdir(), name);
	CU_ASSERT_FATAL(mkdir(dir, 0700) == 0 || errno == EEXIST);
	for (i = 0; files != NULL && files[i] != NULL; i += 2) {
		snprintf(sub, sizeof(sub), "%s/%s", dir, files[i]);
		if ((slash = strrchr(sub, '/')) != NULL) {
			*slash = '\0';
			(void)mkdir(sub, 0700);
		}
		/* The path is heap memory: freed so LeakSanitizer stays
		 * quiet. */
		free(osp_test_write_file(dir, files[i], files[i + 1]));
	}
	CU_ASSERT_FATAL(chdir(dir) == 0);
}

static void
leave_case_dir(void)
{
	CU_ASSERT_FATAL(chdir(origdir) == 0);
}

/* Parses main.yaml with fake modules loaded; returns the error text. */
static char *
load_errors(const char *name, const char *const *files)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	char *text;

	enter_case_dir(name, files);
	fake_modules_load();
	gen = osp_config_parse("main.yaml", &errs);
	if (gen != NULL)
		osp_config_fill_modules(gen, &errs);
	fake_modules_unload();
	leave_case_dir();
	text = strdup(errs.n > 0 ? errs.text.data : "");
	osp_conf_errs_deinit(&errs);
	osp_config_unref(gen);
	return text;
}

/* ------------------------------------------------------------------ */
/* Valid configuration: every value                                      */

static void
test_valid_fixture(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	const struct osp_core_conf *cc;
	const struct osp_core_listener *l;
	const struct osp_conf_addr *a;
	const struct fake_conf *fc;
	const struct fake_lconf *lc;
	const struct fake_route *r;
	const struct osp_conf_map_item *mi;
	const struct fake_domain *dom;
	char dir[PATH_MAX], abs[PATH_MAX], want[PATH_MAX + 64];
	char addr[INET6_ADDRSTRLEN];
	static const char *const mods[] = { "fake", "b1", "a2", "x" };
	size_t i;

	if (origdir[0] == '\0' && getcwd(origdir, sizeof(origdir)) == NULL)
		abort();
	snprintf(dir, sizeof(dir), "%s/tests/fixtures/conf/valid",
	    osp_test_srcdir());
	CU_ASSERT_FATAL(realpath(dir, abs) != NULL);
	CU_ASSERT_FATAL(chdir(abs) == 0);
	unsetenv("OSPREY_MODULE_PATH");
	fake_modules_load();
	gen = osp_config_parse("main.yaml", &errs);
	CU_ASSERT_FATAL(gen != NULL);
	CU_ASSERT_EQUAL(osp_config_fill_modules(gen, &errs), OSP_OK);
	fake_modules_unload();
	leave_case_dir();
	if (errs.n > 0)
		fprintf(stderr, "unexpected errors:\n%s\n", errs.text.data);
	CU_ASSERT_EQUAL(errs.n, 0);
	osp_conf_errs_deinit(&errs);
	cc = &gen->core;

	CU_ASSERT_STRING_EQUAL(cc->hostname, "mx.example.org");
	snprintf(want, sizeof(want), "%s/data", abs);
	CU_ASSERT_STRING_EQUAL(cc->data_dir, want);
	CU_ASSERT_STRING_EQUAL(osp_config_data_dir(gen), want);
	CU_ASSERT_STRING_EQUAL(osp_config_hostname(gen), "mx.example.org");
	CU_ASSERT_STRING_EQUAL(cc->user, "mail");
	CU_ASSERT_STRING_EQUAL(cc->group, "mail");
	CU_ASSERT_STRING_EQUAL(cc->module_path, "/opt/osprey/modules");
	/* modules: concatenated: main, then includes in lexical order. */
	CU_ASSERT_EQUAL_FATAL(cc->modules.n, 4);
	for (i = 0; i < 4; i++)
		CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&cc->modules,
		    const char *, i), mods[i]);
	CU_ASSERT_EQUAL(cc->include.n, 3);
	CU_ASSERT_EQUAL(cc->workers, 8);
	CU_ASSERT_EQUAL(cc->shutdown_timeout, 90000);
	CU_ASSERT_EQUAL(cc->log.level, OSP_LOG_DEBUG);
	CU_ASSERT_EQUAL(cc->log.target, OSP_LOGT_FILE);
	snprintf(want, sizeof(want), "%s/log/osprey.log", abs);
	CU_ASSERT_STRING_EQUAL(cc->log.file, want);
	CU_ASSERT_EQUAL_FATAL(cc->log.debug.n, 2);
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&cc->log.debug, const char *, 1),
	    "dns");

	/* Forwarders: port 53 when not given. */
	CU_ASSERT_EQUAL_FATAL(cc->dns.forwarders.n, 5);
	a = cc->dns.forwarders.items;
	CU_ASSERT_EQUAL(a[0].ss.ss_family, AF_INET);
	CU_ASSERT_EQUAL(a[0].port, 53);
	CU_ASSERT_EQUAL(ntohs(((const struct sockaddr_in *)&a[0].ss)->sin_port),
	    53);
	CU_ASSERT_EQUAL(a[0].len, sizeof(struct sockaddr_in));
	CU_ASSERT_STRING_EQUAL(a[0].text, "192.0.2.53");
	CU_ASSERT_EQUAL(a[1].ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(a[1].port, 53);
	CU_ASSERT_EQUAL(a[1].len, sizeof(struct sockaddr_in6));
	inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&a[1].ss)->sin6_addr,
	    addr, sizeof(addr));
	CU_ASSERT_STRING_EQUAL(addr, "2001:db8::53");
	CU_ASSERT_EQUAL(a[2].port, 5353);
	CU_ASSERT_EQUAL(a[3].ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(a[3].port, 853);
	CU_ASSERT_EQUAL(a[4].port, 54);
	CU_ASSERT_EQUAL(cc->dns.trust_anchors.n, 1);
	CU_ASSERT_FALSE(cc->dns.root_anchor);
	snprintf(want, sizeof(want), "%s/root.key", abs);
	CU_ASSERT_STRING_EQUAL(cc->dns.root_anchor_file, want);
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&cc->dns.unbound_options,
	    const char *, 0), "do-not-query-localhost: no");
	CU_ASSERT_EQUAL(cc->dns.timeout, 2500);

	CU_ASSERT_EQUAL_FATAL(cc->tls.certificates.n, 1);
	snprintf(want, sizeof(want), "%s/certs/a.pem", abs);
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&cc->tls.certificates,
	    struct osp_core_cert, 0).cert, want);
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&cc->tls.certificates,
	    struct osp_core_cert, 0).key, "/etc/ssl/a.key");
	CU_ASSERT_EQUAL(cc->tls.min_version, OSP_TLS_1_3);

	/* Listeners: core keys, defaults, marks and the module's extras. */
	CU_ASSERT_EQUAL_FATAL(cc->listeners.n, 2);
	l = cc->listeners.items;
	CU_ASSERT_STRING_EQUAL(l[0].name, "smtp");
	CU_ASSERT_STRING_EQUAL(l[0].protocol, "fake");
	CU_ASSERT_EQUAL(l[0].port, 25);
	CU_ASSERT_EQUAL(l[0].tls, OSP_LISTENER_TLS_NONE);
	CU_ASSERT_EQUAL_FATAL(l[0].address.n, 2);
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&l[0].address,
	    struct osp_conf_addr, 0).text, "0.0.0.0");
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&l[0].address,
	    struct osp_conf_addr, 1).text, "::");
	CU_ASSERT_STRING_EQUAL(l[0].mark.file, "main.yaml");
	CU_ASSERT_EQUAL(l[0].mark.line, 38);
	CU_ASSERT_EQUAL(l[0].mark.col, 5);
	lc = l[0].module_conf;
	CU_ASSERT_FATAL(lc != NULL);
	CU_ASSERT_EQUAL(lc->role, 1);
	CU_ASSERT_EQUAL(lc->max_clients, 7);
	CU_ASSERT_EQUAL(l[1].tls, OSP_LISTENER_TLS_IMPLICIT);
	CU_ASSERT_EQUAL(l[1].address.n, 1);
	lc = l[1].module_conf;
	CU_ASSERT_FATAL(lc != NULL);
	CU_ASSERT_EQUAL(lc->role, 0);
	CU_ASSERT_EQUAL(lc->max_clients, 100);

	/* The module's section, from an included file. */
	fc = osp_config_module(gen, &fake_ctx);
	CU_ASSERT_FATAL(fc != NULL);
	CU_ASSERT_PTR_NULL(osp_config_module(gen, &bare_ctx));
	CU_ASSERT_TRUE(fc->flag);
	CU_ASSERT_EQUAL(fc->count, -3);
	CU_ASSERT_EQUAL(fc->max_size, 50ULL << 20);
	CU_ASSERT_EQUAL(fc->timeout, 250);
	CU_ASSERT_STRING_EQUAL(fc->greeting, "hello: world");
	snprintf(want, sizeof(want), "%s/spool/dir", abs);
	CU_ASSERT_STRING_EQUAL(fc->spool, want);
	CU_ASSERT_EQUAL(fc->mode, 1);
	CU_ASSERT_EQUAL(fc->relay.ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL(fc->relay.port, 25);
	CU_ASSERT_EQUAL_FATAL(fc->names.n, 1);	/* one scalar: one item */
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&fc->names, const char *, 0),
	    "single");
	CU_ASSERT_EQUAL_FATAL(fc->ports.n, 3);
	CU_ASSERT_EQUAL(OSP_CONF_ITEM(&fc->ports, int64_t, 2), 3);
	CU_ASSERT_EQUAL(fc->limits.low, 1);
	CU_ASSERT_EQUAL(fc->limits.high, 2);
	CU_ASSERT_EQUAL_FATAL(fc->routes.n, 2);
	r = fc->routes.items;
	CU_ASSERT_STRING_EQUAL(r[0].to, "a.example");
	CU_ASSERT_STRING_EQUAL(r[0].via.text, "192.0.2.1");
	CU_ASSERT_EQUAL(r[0].via.port, 0);
	CU_ASSERT_STRING_EQUAL(r[1].via.text, "127.0.0.1@25");
	CU_ASSERT_EQUAL(r[1].via.port, 25);
	CU_ASSERT_EQUAL_FATAL(fc->domains.n, 2);
	mi = fc->domains.items;
	CU_ASSERT_STRING_EQUAL(mi[0].name, "example.org");
	dom = mi[0].value;
	CU_ASSERT_TRUE(dom->dkim);
	CU_ASSERT_STRING_EQUAL(dom->selector, "s1");
	CU_ASSERT_STRING_EQUAL(mi[1].name, "example.net");
	dom = mi[1].value;
	CU_ASSERT_FALSE(dom->dkim);
	CU_ASSERT_STRING_EQUAL(dom->selector, "default");
	osp_config_unref(gen);
}

/* Defaults of the core (and the module) with an empty file. */
static void
test_defaults(void)
{
	static const char *const files[] = { "main.yaml", "", NULL };
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	const struct osp_core_conf *cc;
	const struct fake_conf *fc;
	char host[256];

	enter_case_dir("defaults", files);
	fake_modules_load();
	gen = osp_config_parse("main.yaml", &errs);
	CU_ASSERT_FATAL(gen != NULL);
	osp_config_fill_modules(gen, &errs);
	fake_modules_unload();
	leave_case_dir();
	CU_ASSERT_EQUAL(errs.n, 0);
	osp_conf_errs_deinit(&errs);
	cc = &gen->core;
	CU_ASSERT_EQUAL_FATAL(gethostname(host, sizeof(host)), 0);
	CU_ASSERT_STRING_EQUAL(cc->hostname, host);
	CU_ASSERT_STRING_EQUAL(cc->data_dir, "/var/lib/osprey");
	CU_ASSERT_STRING_EQUAL(cc->user, "osprey");
	CU_ASSERT_PTR_NULL(cc->group);
	CU_ASSERT_EQUAL(cc->workers, 4);
	CU_ASSERT_EQUAL(cc->shutdown_timeout, 10000);
	CU_ASSERT_EQUAL(cc->log.level, OSP_LOG_INFO);
	CU_ASSERT_EQUAL(cc->log.target, OSP_LOGT_STDERR);
	CU_ASSERT_TRUE(cc->dns.root_anchor);
	CU_ASSERT_STRING_EQUAL(cc->dns.root_anchor_file, OSP_ROOT_ANCHOR);
	CU_ASSERT_EQUAL(cc->dns.timeout, 10000);
	CU_ASSERT_EQUAL(cc->tls.min_version, OSP_TLS_1_2);
	CU_ASSERT_EQUAL(cc->listeners.n, 0);
	CU_ASSERT_EQUAL(cc->modules.n, 0);
	fc = gen->module_conf[0];
	CU_ASSERT_FATAL(fc != NULL);
	CU_ASSERT_FALSE(fc->flag);
	CU_ASSERT_EQUAL(fc->count, 10);
	CU_ASSERT_EQUAL(fc->max_size, 10ULL << 20);
	CU_ASSERT_EQUAL(fc->timeout, 300000);
	CU_ASSERT_STRING_EQUAL(fc->greeting, "hi: there # not a comment");
	CU_ASSERT_PTR_NULL(fc->spool);
	CU_ASSERT_EQUAL(fc->relay.ss.ss_family, AF_INET6);
	CU_ASSERT_EQUAL_FATAL(fc->names.n, 2);
	CU_ASSERT_STRING_EQUAL(OSP_CONF_ITEM(&fc->names, const char *, 1),
	    "b c");
	CU_ASSERT_EQUAL_FATAL(fc->ports.n, 1);
	CU_ASSERT_EQUAL(OSP_CONF_ITEM(&fc->ports, int64_t, 0), 25);
	CU_ASSERT_EQUAL(fc->limits.high, 5);
	CU_ASSERT_EQUAL(fc->routes.n, 0);
	osp_config_unref(gen);
}

/* ------------------------------------------------------------------ */
/* Value syntaxes, through osp_conf_parse_string                         */

struct one_value {
	union {
		bool			 b;
		int64_t			 i;
		uint64_t		 u;
		const char		*s;
		int			 e;
		struct osp_conf_addr	 a;
	} v;
};

static const char *const ab_values[] = { "alpha", "beta", NULL };

static const struct value_case {
	enum osp_conf_type	 type;
	const char		*text;
	uint64_t		 want;		/* when no error */
	const char		*error;		/* NULL: valid */
	int64_t			 min, max;
} value_cases[] = {
	{ OSP_CONF_BOOL, "true", 1, NULL, 0, 0 },
	{ OSP_CONF_BOOL, "Yes", 1, NULL, 0, 0 },
	{ OSP_CONF_BOOL, "on", 1, NULL, 0, 0 },
	{ OSP_CONF_BOOL, "off", 0, NULL, 0, 0 },
	{ OSP_CONF_BOOL, "no", 0, NULL, 0, 0 },
	{ OSP_CONF_BOOL, "FALSE", 0, NULL, 0, 0 },
	{ OSP_CONF_BOOL, "1", 0, "t:1:4: v: expected a boolean (true/false, "
	  "yes/no, on/off), got \"1\"", 0, 0 },
	{ OSP_CONF_INT, "-42", (uint64_t)-42, NULL, 0, 0 },
	{ OSP_CONF_INT, "+7", 7, NULL, 0, 0 },
	{ OSP_CONF_INT, "9223372036854775807", INT64_MAX, NULL, 0, 0 },
	{ OSP_CONF_INT, "9223372036854775808", 0, "t:1:4: v: expected an "
	  "integer, got \"9223372036854775808\"", 0, 0 },
	{ OSP_CONF_INT, "12a", 0, "t:1:4: v: expected an integer, got \"12a\"",
	  0, 0 },
	{ OSP_CONF_INT, "0", 0, NULL, 0, 10 },
	{ OSP_CONF_INT, "11", 0, "t:1:4: v: 11 is out of range (0..10)", 0,
	  10 },
	{ OSP_CONF_INT, "-1", 0, "t:1:4: v: -1 is out of range (0..10)", 0,
	  10 },
	{ OSP_CONF_INT, "2", 0, "t:1:4: v: 2 is below the minimum 3", 3, 0 },
	{ OSP_CONF_SIZE, "4096", 4096, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "512k", 512 * 1024, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "50M", 50ULL << 20, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "50MB", 50ULL << 20, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "1G", 1ULL << 30, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "2T", 2ULL << 40, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "1GiB", 1ULL << 30, NULL, 0, 0 },
	{ OSP_CONF_SIZE, "50X", 0, "t:1:4: v: bad size \"50X\" (expected a "
	  "number with an optional k, M, G or T suffix)", 0, 0 },
	{ OSP_CONF_SIZE, "M", 0, "t:1:4: v: bad size \"M\" (expected a "
	  "number with an optional k, M, G or T suffix)", 0, 0 },
	{ OSP_CONF_SIZE, "99999999999T", 0, "t:1:4: v: bad size "
	  "\"99999999999T\" (expected a number with an optional k, M, G or T "
	  "suffix)", 0, 0 },
	{ OSP_CONF_SIZE, "2G", 0, "t:1:4: v: 2G is out of range (1K..1G)",
	  1024, 1 << 30 },
	{ OSP_CONF_DURATION, "250ms", 250, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "30s", 30000, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "5m", 300000, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "1h", 3600000, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "2d", 172800000, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "1h30m", 5400000, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "45", 45000, NULL, 0, 0 },
	{ OSP_CONF_DURATION, "5x", 0, "t:1:4: v: bad duration \"5x\" "
	  "(expected a number with a unit: ms, s, m, h, d)", 0, 0 },
	{ OSP_CONF_DURATION, "1h30", 0, "t:1:4: v: bad duration \"1h30\" "
	  "(expected a number with a unit: ms, s, m, h, d)", 0, 0 },
	{ OSP_CONF_DURATION, "-1s", 0, "t:1:4: v: bad duration \"-1s\" "
	  "(expected a number with a unit: ms, s, m, h, d)", 0, 0 },
	{ OSP_CONF_DURATION, "2h", 0, "t:1:4: v: 2h is out of range (1s..1h)",
	  1000, 3600000 },
	{ OSP_CONF_ENUM, "beta", 1, NULL, 0, 0 },
	{ OSP_CONF_ENUM, "Beta", 0, "t:1:4: v: bad value \"Beta\" (expected "
	  "one of: alpha, beta)", 0, 0 },
	{ OSP_CONF_ENUM, "[alpha]", 0, "t:1:4: v: bad value \"[...]\" "
	  "(expected one of: alpha, beta)", 0, 0 },
	{ OSP_CONF_STRING, "{a: b}", 0, "t:1:4: v: expected a string, got a "
	  "mapping", 0, 0 },
	{ OSP_CONF_ADDR, "1.2.3", 0, "t:1:4: v: bad address \"1.2.3\" "
	  "(expected IP, IP@port, IP:port or [IPv6]:port)", 0, 0 },
	{ OSP_CONF_ADDR, "127.0.0.1:0", 0, "t:1:4: v: bad address "
	  "\"127.0.0.1:0\" (expected IP, IP@port, IP:port or [IPv6]:port)",
	  0, 0 },
	{ OSP_CONF_ADDR, "127.0.0.1:65536", 0, "t:1:4: v: bad address "
	  "\"127.0.0.1:65536\" (expected IP, IP@port, IP:port or [IPv6]:port)",
	  0, 0 },
	{ OSP_CONF_ADDR, "\"[127.0.0.1]:25\"", 0, "t:1:4: v: bad address "
	  "\"[127.0.0.1]:25\" (expected IP, IP@port, IP:port or [IPv6]:port)",
	  0, 0 },
	{ OSP_CONF_ADDR, "\"[::1\"", 0, "t:1:4: v: bad address \"[::1\" "
	  "(expected IP, IP@port, IP:port or [IPv6]:port)", 0, 0 },
	{ OSP_CONF_ADDR, "localhost", 0, "t:1:4: v: bad address \"localhost\" "
	  "(expected IP, IP@port, IP:port or [IPv6]:port)", 0, 0 },
};

static void
test_values(void)
{
	struct osp_conf_def defs[2];
	struct osp_pool *pool;
	struct osp_conf_errs errs = { 0 };
	struct one_value out;
	char yaml[128];
	size_t i;
	int rc;

	for (i = 0; i < sizeof(value_cases) / sizeof(value_cases[0]); i++) {
		const struct value_case *c = &value_cases[i];

		memset(defs, 0, sizeof(defs));
		defs[0].key = "v";
		defs[0].type = c->type;
		defs[0].values = ab_values;
		defs[0].min = c->min;
		defs[0].max = c->max;
		memset(&out, 0, sizeof(out));
		pool = osp_pool_new(NULL);
		snprintf(yaml, sizeof(yaml), "v: %s\n", c->text);
		rc = osp_conf_parse_string("t", yaml, defs, &out, pool, &errs);
		if (c->error != NULL) {
			CU_ASSERT_EQUAL(rc, OSP_ECONFIG);
			CU_ASSERT_EQUAL(errs.n, 1);
			if (errs.n == 0 ||
			    strcmp(errs.text.data, c->error) != 0) {
				fprintf(stderr, "case %zu: got \"%s\"\n", i,
				    errs.n > 0 ? errs.text.data : "");
				CU_FAIL("error text");
			}
		} else {
			uint64_t got = 0;

			CU_ASSERT_EQUAL(rc, OSP_OK);
			if (c->type == OSP_CONF_BOOL)
				got = out.v.b;
			else if (c->type == OSP_CONF_INT)
				got = (uint64_t)out.v.i;
			else if (c->type == OSP_CONF_ENUM)
				got = (uint64_t)out.v.e;
			else
				got = out.v.u;
			if (rc != OSP_OK || got != c->want) {
				fprintf(stderr, "case %zu (%s): got %llu, "
				    "errors: %s\n", i, c->text,
				    (unsigned long long)got,
				    errs.n > 0 ? errs.text.data : "");
				CU_FAIL("value");
			}
		}
		osp_conf_errs_deinit(&errs);
		osp_pool_free(pool);
	}
}

/* ------------------------------------------------------------------ */
/* Every error class: exact lines                                        */

static const struct error_case {
	const char		*name;
	/* main.yaml's text, then name, text pairs */
	const char *const	 files[8];
	const char		*want;
} error_cases[] = {
	{ "unknown-key", { "log:\n  levle: info\n" },
	  "main.yaml:2:3: log.levle: unknown key (did you mean \"level\"?)" },
	{ "unknown-key-plain", { "dns:\n  colour: blue\n" },
	  "main.yaml:2:3: dns.colour: unknown key" },
	{ "unknown-top-module", { "frobnicate:\n  a: 1\n" },
	  "main.yaml:1:1: frobnicate: unknown key: not a core option, and "
	  "module frobnicate is not loaded (add it to modules:)" },
	{ "unknown-top-typo", { "hostnme: x\n" },
	  "main.yaml:1:1: hostnme: unknown key (did you mean \"hostname\"?)" },
	{ "listed-not-loaded", { "modules: [smtp]\nsmtp:\n  a: 1\n" }, "" },
	{ "unknown-module-key", { "fake:\n  colour: 1\n" },
	  "main.yaml:2:3: fake.colour: unknown key" },
	{ "bare-module-options", { "bare:\n  a: 1\n" },
	  "main.yaml:2:3: bare.a: unknown key" },
	{ "wrong-type-mapping", { "log: [a]\n" },
	  "main.yaml:1:6: log: expected a mapping, got a list" },
	{ "wrong-type-list", { "modules: {a: b}\n" },
	  "main.yaml:1:10: modules: expected a list, got a mapping" },
	{ "wrong-type-sections", { "listeners:\n  name: x\n" },
	  "main.yaml:2:3: listeners: expected a list of mappings, got a "
	  "mapping" },
	{ "wrong-type-item", { "listeners:\n  - smtp\n" },
	  "main.yaml:2:5: listeners[0]: expected a mapping, got a scalar\n"
	  "main.yaml:2:5: listeners[0].name: missing required key\n"
	  "main.yaml:2:5: listeners[0].protocol: missing required key\n"
	  "main.yaml:2:5: listeners[0].port: missing required key" },
	{ "wrong-type-scalar", { "hostname: [a, b]\n" },
	  "main.yaml:1:11: hostname: expected a string, got a list" },
	{ "bool", { "dns:\n  root-anchor: maybe\n" },
	  "main.yaml:2:16: dns.root-anchor: expected a boolean (true/false, "
	  "yes/no, on/off), got \"maybe\"" },
	{ "range", { "workers: 100\n" },
	  "main.yaml:1:10: workers: 100 is out of range (1..64)" },
	{ "range-list-item", { "fake:\n  ports: [25, 70000]\n" },
	  "main.yaml:2:15: fake.ports[1]: 70000 is out of range (1..65535)" },
	{ "enum", { "log:\n  level: verbose\n" },
	  "main.yaml:2:10: log.level: bad value \"verbose\" (expected one of: "
	  "err, warn, info, debug)" },
	{ "duplicate-key", { "workers: 2\nlog:\n  level: info\n  level: "
	  "warn\nworkers: 3\n" },
	  "main.yaml:4:3: log.level: duplicate key (first at line 3, column "
	  "3)\n"
	  "main.yaml:5:1: workers: duplicate key (first at line 1, column 1)" },
	{ "duplicate-in-list", { "listeners:\n  - name: a\n    name: b\n" },
	  "main.yaml:3:5: listeners[0].name: duplicate key (first at line 2, "
	  "column 5)" },
	{ "duplicate-across-files", { "include: a.yaml\nworkers: 2\n",
	  "a.yaml", "modules: [x]\nworkers: 3\n" },
	  "a.yaml:2:1: workers: defined twice (first at main.yaml:2:1)" },
	{ "duplicate-between-includes", { "include: \"d/*.yaml\"\n",
	  "d/1.yaml", "log: {level: info}\n", "d/2.yaml", "log:\n  file: x\n" },
	  "d/2.yaml:1:1: log: defined twice (first at d/1.yaml:1:1)" },
	{ "missing-required", { "listeners:\n  - name: x\n    protocol: fake\n"
	  },
	  "main.yaml:2:5: listeners[0].port: missing required key" },
	{ "missing-value", { "tls:\n  certificates:\n    - cert:\n      "
	  "key: k\n" },
	  "main.yaml:3:7: tls.certificates[0].cert: missing value" },
	{ "nonempty", { "hostname: \"\"\n" },
	  "main.yaml:1:11: hostname: must not be empty" },
	{ "bad-size", { "fake:\n  max-size: 50X\n" },
	  "main.yaml:2:13: fake.max-size: bad size \"50X\" (expected a number "
	  "with an optional k, M, G or T suffix)" },
	{ "bad-duration", { "shutdown-timeout: 5x\n" },
	  "main.yaml:1:19: shutdown-timeout: bad duration \"5x\" (expected a "
	  "number with a unit: ms, s, m, h, d)" },
	{ "bad-address", { "dns:\n  forwarders: [192.0.2.1, 1.2.3]\n" },
	  "main.yaml:2:27: dns.forwarders[1]: bad address \"1.2.3\" (expected "
	  "IP, IP@port, IP:port or [IPv6]:port)" },
	{ "yaml-syntax", { "log:\n  level: [info\nworkers: 2\n" },
	  "main.yaml:3:8: YAML syntax error: did not find expected ',' or ']' "
	  "(while parsing a flow sequence at line 2, column 10)" },
	{ "yaml-syntax-indent", { "log:\n  level: info\n target: file\n" },
	  "main.yaml:3:2: YAML syntax error: did not find expected key "
	  "(while parsing a block mapping at line 1, column 1)" },
	{ "yaml-utf8", { "hostname: \"a\xff\"\n" },
	  "main.yaml:1:13: YAML error: invalid leading UTF-8 octet" },
	{ "yaml-anchor", { "log: &l\n  level: info\ndns: *l\n" },
	  "main.yaml:1:6: log: YAML anchors (&l) are not supported\n"
	  "main.yaml:3:6: dns: YAML aliases (*l) are not supported" },
	{ "yaml-two-docs", { "workers: 2\n---\nworkers: 3\n" },
	  "main.yaml:2:1: only one YAML document per file" },
	{ "yaml-complex-key", { "? [a]\n: b\n" },
	  "main.yaml:1:3: ?: mapping keys must be plain strings" },
	{ "top-not-mapping", { "- a\n- b\n" },
	  "main.yaml:1:1: expected a mapping of options at the top level" },
	{ "include-missing", { "include: nope.yaml\n" },
	  "main.yaml:1:10: include: cannot read nope.yaml: No such file or "
	  "directory" },
	{ "include-missing-item", { "include: [a.yaml, sub/nope.yaml]\n",
	  "a.yaml", "" },
	  "main.yaml:1:19: include[1]: cannot read sub/nope.yaml: No such "
	  "file or directory" },
	{ "include-glob-empty", { "include: \"none/*.yaml\"\n" }, "" },
	{ "include-nested", { "include: a.yaml\n", "a.yaml",
	  "include: b.yaml\n" },
	  "a.yaml:1:1: include: not allowed in an included file (includes do "
	  "not nest)" },
	{ "include-twice", { "include: [a.yaml, \"*.yaml\"]\n", "a.yaml",
	  "workers: 3\n" },
	  "main.yaml:1:19: include[1]: a.yaml is already included\n"
	  "main.yaml:1:19: include[1]: main.yaml is already included" },
	{ "include-syntax", { "include: a.yaml\n", "a.yaml", "a: [\n" },
	  "a.yaml:2:1: YAML syntax error: did not find expected node content "
	  "(while parsing a flow node at line 2, column 1)" },
	{ "include-not-mapping", { "include: a.yaml\n", "a.yaml", "- x\n" },
	  "a.yaml:1:1: expected a mapping of options at the top level" },
	{ "listener-protocol", { "listeners:\n  - name: a\n    protocol: smtp\n"
	  "    port: 25\n" },
	  "main.yaml:3:15: listeners[0].protocol: module smtp is not loaded "
	  "(add it to modules:)" },
	{ "listener-extra-unknown", { "listeners:\n  - name: a\n    protocol: "
	  "fake\n    port: 25\n    rolle: submission\n" },
	  "main.yaml:5:5: listeners[0].rolle: unknown key (did you mean "
	  "\"role\"?)" },
	{ "listener-extra-bad", { "listeners:\n  - name: a\n    protocol: "
	  "fake\n    port: 25\n  - name: b\n    protocol: fake\n    port: 26\n"
	  "    max-clients: 0\n" },
	  "main.yaml:8:18: listeners[1].max-clients: 0 is out of range "
	  "(1..10000)" },
	{ "listener-no-extras", { "listeners:\n  - name: a\n    protocol: "
	  "bare\n    port: 25\n    role: x\n" },
	  "main.yaml:5:5: listeners[0].role: unknown key" },
	{ "listener-dup-name", { "listeners:\n  - name: a\n    protocol: fake\n"
	  "    port: 25\n  - name: a\n    protocol: fake\n    port: 26\n" },
	  "main.yaml:5:5: listeners[1].name: duplicate listener name \"a\" "
	  "(first at line 2, column 5 of main.yaml)" },
	{ "listener-port-range", { "listeners:\n  - {name: a, protocol: fake, "
	  "port: 0}\n" },
	  "main.yaml:2:37: listeners[0].port: 0 is out of range (1..65535)" },
	{ "listener-address-port", { "listeners:\n  - name: a\n    protocol: "
	  "fake\n    port: 25\n    address: [\"127.0.0.1:25\"]\n" },
	  "main.yaml:5:15: listeners[0].address[0]: a listener address takes "
	  "no port (use port:)" },
	{ "log-file-needed", { "log:\n  target: file\n" },
	  "main.yaml:2:3: log.file: required when log.target is file" },
	{ "unbound-option", { "dns:\n  unbound-options: [\"verbosity 2\"]\n" },
	  "main.yaml:2:21: dns.unbound-options[0]: expected \"name: value\", "
	  "got \"verbosity 2\"" },
	{ "check-field", { "fake:\n  ports: [1, 666]\n" },
	  "main.yaml:2:14: fake.ports[1]: unlucky port" },
	{ "check-set-key", { "fake:\n  greeting: bad\n" },
	  "main.yaml:2:3: fake.greeting: greeting refused" },
	{ "check-defaulted", { "fake:\n  limits:\n    low: 10\n" },
	  "main.yaml:2:3: fake.limits: must be at least low (10)" },
	{ "check-no-section", { "modules: [fake]\n" }, "" },
	{ "check-silent-refusal", { "modules:\n  - fake\nfake: {count: 42}\n" },
	  "main.yaml:2:5: fake: configuration refused by the module "
	  "(configuration error)" },
	{ "no-check-after-errors", { "fake:\n  greeting: bad\n  count: x\n" },
	  "main.yaml:3:10: fake.count: expected an integer, got \"x\"" },
	{ "many-errors", { "workers: 0\nlog:\n  level: loud\n  target: "
	  "pipe\ndns:\n  timeout: 1ms\n" },
	  "main.yaml:1:10: workers: 0 is out of range (1..64)\n"
	  "main.yaml:3:10: log.level: bad value \"loud\" (expected one of: "
	  "err, warn, info, debug)\n"
	  "main.yaml:4:11: log.target: bad value \"pipe\" (expected one of: "
	  "stderr, file, syslog)\n"
	  "main.yaml:6:12: dns.timeout: 1ms is out of range (100ms..5m)" },
	{ "empty-file", { "" }, "" },
	{ "only-comments", { "# nothing here\n" }, "" },
	{ "null-values", { "hostname:\nlog:\ndns:\n  forwarders:\n" }, "" },
};

static void
test_errors(void)
{
	size_t i, j;
	char *got;
	const char *files[20];

	for (i = 0; i < sizeof(error_cases) / sizeof(error_cases[0]); i++) {
		const struct error_case *c = &error_cases[i];

		files[0] = "main.yaml";
		files[1] = c->files[0];
		for (j = 1; c->files[j] != NULL; j++)
			files[j + 1] = c->files[j];
		files[j + 1] = NULL;
		got = load_errors(c->name, files);
		if (strcmp(got, c->want) != 0) {
			fprintf(stderr, "\ncase %s:\n want: %s\n  got: %s\n",
			    c->name, c->want, got);
			CU_FAIL("error text");
		}
		free(got);
	}
}

static void
test_unreadable(void)
{
	struct osp_conf_errs errs = { 0 };
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s/no-such.yaml", osp_test_tmpdir());
	CU_ASSERT_PTR_NULL(osp_config_parse(path, &errs));
	CU_ASSERT_EQUAL(errs.n, 1);
	CU_ASSERT_STRING_EQUAL(errs.text.data + strlen(osp_test_tmpdir()),
	    "/no-such.yaml: cannot read: No such file or directory");
	osp_conf_errs_deinit(&errs);

	/* A directory is not a config file. */
	CU_ASSERT_PTR_NULL(osp_config_parse(osp_test_tmpdir(), &errs));
	CU_ASSERT_EQUAL(errs.n, 1);
	CU_ASSERT_PTR_NOT_NULL(strstr(errs.text.data, ": cannot read: Is a "
	    "directory"));
	osp_conf_errs_deinit(&errs);

	/* Unreadable include: its mode, not its absence. Root reads all. */
	if (geteuid() != 0) {
		static const char *const files[] = { "main.yaml",
		    "include: secret.yaml\n", "secret.yaml", "workers: 2\n",
		    NULL };
		char *got;

		enter_case_dir("unreadable", files);
		CU_ASSERT_EQUAL(chmod("secret.yaml", 0), 0);
		leave_case_dir();
		got = load_errors("unreadable", NULL);
		CU_ASSERT_STRING_EQUAL(got, "main.yaml:1:10: include: cannot "
		    "read secret.yaml: Permission denied");
		free(got);
	}
}

/* ------------------------------------------------------------------ */
/* Generations, marks, section comparison                                */

static struct osp_config *
parse_text(const char *name, const char *text)
{
	const char *const files[] = { "main.yaml", text, NULL };
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;

	enter_case_dir(name, files);
	gen = osp_config_parse("main.yaml", &errs);
	leave_case_dir();
	CU_ASSERT_EQUAL(errs.n, 0);
	osp_conf_errs_deinit(&errs);
	return gen;
}

static void
test_generations(void)
{
	struct osp_config *a, *b, *c;
	const struct osp_conf_mark *m;
	const char *path;

	a = parse_text("gen-a", "workers: 2\nlog: {level: warn}\n"
	    "dns:\n  timeout: 5s\nlisteners:\n  - name: x\n    protocol: p\n"
	    "    port: 25\n");
	b = parse_text("gen-b", "# other layout, same values\nworkers: 3\n"
	    "log:\n  level: warn\ndns: {timeout: 5s}\nlisteners:\n"
	    "  - {name: x, protocol: p, port: 25}\n");
	c = parse_text("gen-c", "dns:\n  timeout: 6s\n");
	CU_ASSERT_FATAL(a != NULL && b != NULL && c != NULL);
	CU_ASSERT_TRUE(osp_config_section_equal(a, b, "log"));
	CU_ASSERT_TRUE(osp_config_section_equal(a, b, "dns"));
	CU_ASSERT_TRUE(osp_config_section_equal(a, b, "listeners"));
	CU_ASSERT_TRUE(osp_config_section_equal(a, b, "tls"));
	CU_ASSERT_FALSE(osp_config_section_equal(a, b, "workers"));
	CU_ASSERT_FALSE(osp_config_section_equal(a, c, "dns"));
	CU_ASSERT_FALSE(osp_config_section_equal(a, c, "listeners"));

	/* Marks: a set field, a list item, a defaulted field. */
	m = osp_config_mark(a, &a->core.dns.timeout, &path);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->line, 4);
	CU_ASSERT_EQUAL(m->col, 3);
	CU_ASSERT_STRING_EQUAL(path, "dns.timeout");
	m = osp_config_mark(a, &OSP_CONF_ITEM(&a->core.listeners,
	    struct osp_core_listener, 0).port, &path);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->line, 8);
	CU_ASSERT_STRING_EQUAL(path, "listeners[0].port");
	m = osp_config_mark(a, &a->core.dns.root_anchor, &path);
	CU_ASSERT_FATAL(m != NULL);
	CU_ASSERT_EQUAL(m->line, 3);
	CU_ASSERT_STRING_EQUAL(path, "dns");
	CU_ASSERT_PTR_NULL(osp_config_mark(a, &a->refs, NULL));

	/* References: current holds one; sessions take more. */
	CU_ASSERT_PTR_NULL(osp_config_current());
	osp_config_set_current(a);
	CU_ASSERT_PTR_EQUAL(osp_config_current(), a);
	CU_ASSERT_EQUAL(osp_config_hostname(NULL), a->core.hostname);
	osp_config_ref(a);
	CU_ASSERT_EQUAL(a->refs, 2);
	osp_config_set_current(b);	/* drops current's reference to a */
	CU_ASSERT_EQUAL(a->refs, 1);
	CU_ASSERT_EQUAL(a->core.workers, 2);	/* still valid */
	osp_config_unref(a);
	osp_config_set_current(NULL);
	CU_ASSERT_PTR_NULL(osp_config_current());
	CU_ASSERT_PTR_NULL(osp_config_hostname(NULL));
	osp_config_unref(c);
}

/* Outside check(), osp_module_conf_error logs instead of collecting. */
static void
test_conf_error_outside_check(void)
{
	struct fake_conf fc = { 0 };

	osp_module_conf_error(&fake_ctx, &fc.count, "logged, not collected");
	CU_ASSERT_PTR_NULL(fake_ctx.check_errs);
}

/* ------------------------------------------------------------------ */
/* osp_conf_parse_string / osp_conf_apply_defaults                       */

static void
test_parse_string(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_conf_errs errs = { 0 };
	struct fake_conf fc;

	memset(&fc, 0, sizeof(fc));
	CU_ASSERT_EQUAL(osp_conf_apply_defaults(fake_defs, &fc, pool, &errs),
	    OSP_OK);
	CU_ASSERT_EQUAL(fc.count, 10);
	CU_ASSERT_EQUAL(fc.limits.high, 5);
	memset(&fc, 0, sizeof(fc));
	CU_ASSERT_EQUAL(osp_conf_parse_string("inline", "count: 3\n"
	    "spool: rel\nroutes: [{to: x}]\n", fake_defs, &fc, pool, &errs),
	    OSP_OK);
	CU_ASSERT_EQUAL(fc.count, 3);
	CU_ASSERT_STRING_EQUAL(fc.spool, "rel");	/* no base dir */
	CU_ASSERT_EQUAL(fc.routes.n, 1);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_EQUAL(osp_conf_parse_string("inline", "routes: [{via: "
	    "\"::1\"}]\nextra: 1\n", fake_defs, &fc, pool, &errs), OSP_ECONFIG);
	CU_ASSERT_STRING_EQUAL(errs.text.data,
	    "inline:1:10: routes[0].to: missing required key\n"
	    "inline:2:1: extra: unknown key");
	osp_conf_errs_deinit(&errs);
	osp_pool_free(pool);
}

/* ------------------------------------------------------------------ */
/* describe                                                              */

/* "# key:" lines uncommented, the way a user enables an option. */
static char *
uncomment(const char *text)
{
	char *out = malloc(strlen(text) + 1), *o = out;
	const char *line = text, *p, *nl;

	while (*line != '\0') {
		nl = strchr(line, '\n');
		nl = nl != NULL ? nl + 1 : line + strlen(line);
		for (p = line; *p == ' '; p++)
			;
		if (p[0] == '#' && p[1] == ' ') {
			const char *q = p + 2, *k;

			while (*q == ' ')
				q++;
			k = q[0] == '-' && q[1] == ' ' ? q + 2 : q;
			if (*k >= 'a' && *k <= 'z' && strcspn(k, ":\n") <
			    strcspn(k, "\n") && strspn(k,
			    "abcdefghijklmnopqrstuvwxyz0123456789-") ==
			    strcspn(k, ":")) {
				memcpy(o, line, (size_t)(p - line));
				o += p - line;
				line = p + 2;
			}
		}
		memcpy(o, line, (size_t)(nl - line));
		o += nl - line;
		line = nl;
	}
	*o = '\0';
	return out;
}

static void
test_describe(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	struct osp_pool *pool;
	const struct fake_conf *fc;
	char *text = NULL, *un;
	size_t len = 0;
	FILE *f;

	fake_modules_load();
	f = open_memstream(&text, &len);
	CU_ASSERT_FATAL(f != NULL);
	osp_config_describe(f);
	fclose(f);
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nworkers: 4\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nmodules: [fake, bare]\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n# hostname:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n  level: info\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n# listeners:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n#   - name:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n#   - protocol: fake\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\nfake:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n  # A flag (lower-case"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text,
	    "\n  greeting: \"hi: there # not a comment\"\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n  names: [a, \"b c\"]\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n  ports: [25]\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(text, "\n# Module bare 0.1.\n"));

	/* As printed, it loads without errors and gives the defaults. */
	enter_case_dir("describe", (const char *const[]){ "main.yaml", text,
	    NULL });
	gen = osp_config_parse("main.yaml", &errs);
	CU_ASSERT_FATAL(gen != NULL);
	osp_config_fill_modules(gen, &errs);
	leave_case_dir();
	if (errs.n > 0)
		fprintf(stderr, "%s\n---\n%s\n", text, errs.text.data);
	CU_ASSERT_EQUAL(errs.n, 0);
	CU_ASSERT_EQUAL(gen->core.workers, 4);
	CU_ASSERT_STRING_EQUAL(gen->core.dns.root_anchor_file,
	    OSP_ROOT_ANCHOR);
	fc = gen->module_conf[0];
	CU_ASSERT_FATAL(fc != NULL);
	CU_ASSERT_STRING_EQUAL(fc->greeting, "hi: there # not a comment");
	CU_ASSERT_EQUAL(fc->names.n, 2);
	osp_config_unref(gen);
	osp_conf_errs_deinit(&errs);

	/* Uncommented, it is still YAML (required keys then lack values). */
	un = uncomment(text);
	CU_ASSERT_PTR_NOT_NULL(strstr(un, "\nhostname:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(un, "\nlisteners:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(un, "\n  - name:\n"));
	CU_ASSERT_PTR_NOT_NULL(strstr(un, "\n  - protocol: fake\n"));
	pool = osp_pool_new(NULL);
	CU_ASSERT_PTR_NOT_NULL(osp_conf_yaml_parse(pool, "un", un,
	    strlen(un), &errs));
	if (errs.n > 0)
		fprintf(stderr, "%s\n---\n%s\n", un, errs.text.data);
	CU_ASSERT_EQUAL(errs.n, 0);
	osp_conf_errs_deinit(&errs);
	osp_pool_free(pool);
	fake_modules_unload();
	free(un);
	free(text);
}

int
main(int argc, char **argv)
{
	static const struct osp_test tests[] = {
		OSP_TEST(test_valid_fixture),
		OSP_TEST(test_defaults),
		OSP_TEST(test_values),
		OSP_TEST(test_errors),
		OSP_TEST(test_unreadable),
		OSP_TEST(test_generations),
		OSP_TEST(test_conf_error_outside_check),
		OSP_TEST(test_parse_string),
		OSP_TEST(test_describe),
		OSP_TEST_END,
	};

	return osp_test_main(argc, argv, "conf", tests);
}
