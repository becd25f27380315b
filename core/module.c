/* SPDX-License-Identifier: ISC */
/* The module loader: finds and dlopens the modules a configuration lists,
 * checks their descriptors, orders them by dependency and runs their
 * lifecycle (init, start, reload, stop, fini). Main thread. */
#include "core.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MODULE_NAME_MAX	64

struct osp_module_ctx	**osp_modules;
size_t			  osp_nmodules;

/* The module whose init() is running: the only one allowed to register. */
static struct osp_module_ctx	*registering;
/* The generation the modules last adopted (a reference), to tell which
 * sections changed on reload. */
static struct osp_config	*modules_gen;
/* Text behind the error_r of init/start (the caller's pools may be gone
 * by the time it is printed). */
static char			 lifecycle_error[512];

/* One entry of the `modules:` list while loading. */
struct load_entry {
	const char		*name;
	struct osp_conf_mark	 mark;
	bool			 has_mark;
	const char		*key;	/* "modules[2]" */
	struct osp_module_ctx	*ctx;	/* NULL: not loaded (error reported) */
	bool			 placed;	/* topological sort */
	bool			 walked;	/* cycle search */
	unsigned		 stamp;
};

struct load_state {
	struct osp_config	*gen;
	struct osp_conf_errs	*errs;
	unsigned		 nerrs;
	struct load_entry	*e;
	size_t			 n;
};

static void
load_error(struct load_state *ls, const struct load_entry *e,
    const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void
load_error(struct load_state *ls, const struct load_entry *e,
    const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	osp_conf_errs_add(ls->errs, e != NULL && e->has_mark ? &e->mark : NULL,
	    e != NULL && e->key != NULL ? e->key : "modules", "%s", msg);
	ls->nerrs++;
}

/* Where the i-th name of `modules:` was written (the lists of all
 * included files are joined), when the parser recorded it. */
static void
entry_mark(const struct osp_config *gen, size_t i, struct load_entry *e)
{
	const struct osp_conf_mark *m;

	m = osp_config_mark(gen,
	    &OSP_CONF_ITEM(&gen->core.modules, const char *, i), &e->key);
	if (m != NULL) {
		e->mark = *m;
		e->has_mark = true;
	} else
		e->key = NULL;
}

/* Module names are file names and config keys: keep them to [a-z0-9-] so
 * a name can never reach outside the module directories. */
static bool
valid_name(const char *name)
{
	size_t i;

	if (name == NULL || *name == '\0' || strlen(name) > MODULE_NAME_MAX)
		return false;
	for (i = 0; name[i] != '\0'; i++)
		if (!((name[i] >= 'a' && name[i] <= 'z') ||
		    (name[i] >= '0' && name[i] <= '9') || name[i] == '-'))
			return false;
	return name[0] != '-';
}

/* The module search path and where it came from (for error messages). */
static const char *
module_path(const struct osp_config *gen, const char **origin_r)
{
	const char *env = getenv("OSPREY_MODULE_PATH");

	if (env != NULL && *env != '\0') {
		*origin_r = "OSPREY_MODULE_PATH";
		return env;
	}
	if (gen->core.module_path != NULL && *gen->core.module_path != '\0') {
		*origin_r = "module-path";
		return gen->core.module_path;
	}
	*origin_r = "built-in module directory";
	return OSP_MODULE_DIR;
}

/* Finds <name>.so in the colon-separated path; returns a heap path or
 * NULL. Empty path elements are skipped (not the current directory). */
static char *
module_find_file(const char *path, const char *name)
{
	const char *p = path, *end;
	char *file;

	for (; *p != '\0'; p = *end == ':' ? end + 1 : end) {
		end = strchr(p, ':');
		if (end == NULL)
			end = p + strlen(p);
		if (end == p)
			continue;
		if (asprintf(&file, "%.*s/%s.so", (int)(end - p), p,
		    name) == -1)
			osp_fatal("module", "out of memory");
		if (access(file, F_OK) == 0)
			return file;
		free(file);
	}
	return NULL;
}

static void
module_open(struct load_state *ls, struct load_entry *e)
{
	const struct osp_module *mod;
	const char *path, *origin;
	char *file;
	void *dl;

	path = module_path(ls->gen, &origin);
	file = module_find_file(path, e->name);
	if (file == NULL) {
		load_error(ls, e, "module %s: %s.so not found in %s (%s)",
		    e->name, e->name, path, origin);
		return;
	}
	/* RTLD_NOW: an unresolved symbol fails here, at startup, not at the
	 * first call in production. RTLD_LOCAL: modules do not see each
	 * other's symbols (DESIGN §1). */
	dl = dlopen(file, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		load_error(ls, e, "module %s: cannot load %s: %s", e->name,
		    file, dlerror());
		free(file);
		return;
	}
	(void)dlerror();
	mod = dlsym(dl, "osp_module");
	if (mod == NULL) {
		load_error(ls, e, "module %s: %s does not export the "
		    "osp_module descriptor: not an osprey module", e->name,
		    file);
		goto fail;
	}
	if (mod->abi != OSP_MODULE_ABI) {
		load_error(ls, e, "module %s: ABI mismatch in %s: expected %u, "
		    "found %u (rebuild the module against this osprey)",
		    e->name, file, (unsigned)OSP_MODULE_ABI,
		    (unsigned)mod->abi);
		goto fail;
	}
	if (mod->name == NULL || strcmp(mod->name, e->name) != 0) {
		char safe[128];

		if (mod->name != NULL)
			osp_log_safe(safe, sizeof(safe), mod->name,
			    strlen(mod->name));
		load_error(ls, e, "module %s: %s names itself %s, not %s",
		    e->name, file, mod->name != NULL ? safe : "(null)",
		    e->name);
		goto fail;
	}
	e->ctx = osp_calloc(1, sizeof(*e->ctx));
	e->ctx->mod = mod;
	e->ctx->dl = dl;
	osp_log_debug("module", "loaded module=%s version=%s file=%s",
	    e->name, mod->version != NULL ? mod->version : "-", file);
	free(file);
	return;
fail:
	dlclose(dl);
	free(file);
}

static struct load_entry *
entry_find(struct load_state *ls, const char *name)
{
	size_t i;

	/* Entries not reached yet have no name. */
	for (i = 0; i < ls->n; i++)
		if (ls->e[i].name != NULL && strcmp(ls->e[i].name, name) == 0)
			return &ls->e[i];
	return NULL;
}

/* Checks that every dependency is listed. A dependency that is listed but
 * failed to load was reported already. */
static void
check_depends(struct load_state *ls, struct load_entry *e)
{
	const char *const *d;
	struct load_entry *dep;

	if (e->ctx->mod->depends == NULL)
		return;
	for (d = e->ctx->mod->depends; *d != NULL; d++) {
		dep = entry_find(ls, *d);
		if (dep == NULL)
			load_error(ls, e, "module %s: depends on module %s, "
			    "which is not listed in modules", e->name, *d);
	}
}

/* Whether every loaded dependency of e is placed already. Missing ones
 * were reported and do not block the order. */
static bool
deps_placed(struct load_state *ls, const struct load_entry *e)
{
	const char *const *d;
	struct load_entry *dep;

	if (e->ctx->mod->depends == NULL)
		return true;
	for (d = e->ctx->mod->depends; *d != NULL; d++) {
		dep = entry_find(ls, *d);
		if (dep != NULL && dep->ctx != NULL && !dep->placed)
			return false;
	}
	return true;
}

/* The first unplaced, loaded dependency of e (one exists when e is stuck
 * in the sort). */
static struct load_entry *
first_blocking_dep(struct load_state *ls, const struct load_entry *e)
{
	const char *const *d;
	struct load_entry *dep;

	for (d = e->ctx->mod->depends; *d != NULL; d++) {
		dep = entry_find(ls, *d);
		if (dep != NULL && dep->ctx != NULL && !dep->placed)
			return dep;
	}
	return NULL;
}

/* Every module left unplaced by the sort is on a cycle or depends on
 * one: walk dependencies from it until a module repeats, and report that
 * cycle once ("a -> b -> a"). */
static void
report_cycles(struct load_state *ls)
{
	struct load_entry *cur, *start;
	struct osp_buf text = { 0 };
	unsigned stamp = 0;
	size_t i;

	for (i = 0; i < ls->n; i++) {
		if (ls->e[i].ctx == NULL || ls->e[i].placed ||
		    ls->e[i].walked)
			continue;
		stamp++;
		cur = &ls->e[i];
		while (cur != NULL && !cur->walked) {
			cur->walked = true;
			cur->stamp = stamp;
			cur = first_blocking_dep(ls, cur);
		}
		/* Reached a module walked before: a new cycle only if it was
		 * walked in this round. */
		if (cur == NULL || cur->stamp != stamp)
			continue;
		start = cur;
		osp_buf_reset(&text);
		do {
			osp_buf_printf(&text, "%s -> ", cur->name);
			cur = first_blocking_dep(ls, cur);
		} while (cur != start);
		osp_buf_puts(&text, start->name);
		load_error(ls, start, "module %s: dependency cycle: %s",
		    start->name, text.data);
	}
	osp_buf_deinit(&text);
}

static void
ctx_close(struct osp_module_ctx *ctx)
{
	if (ctx->dl != NULL)
		dlclose(ctx->dl);
	osp_free(ctx);
}

int
osp_modules_load(struct osp_config *gen, struct osp_conf_errs *errs)
{
	struct load_state ls = { .gen = gen, .errs = errs };
	struct load_entry *e, *first;
	size_t i, j, placed;
	char safe[96];

	if (osp_modules != NULL) {
		osp_conf_errs_add(errs, NULL, "modules",
		    "modules are loaded already");
		return -EALREADY;
	}
	ls.n = gen->core.modules.n;
	ls.e = osp_calloc(ls.n + 1, sizeof(*ls.e));
	for (i = 0; i < ls.n; i++) {
		e = &ls.e[i];
		e->name = OSP_CONF_ITEM(&gen->core.modules, const char *, i);
		entry_mark(gen, i, e);
		if (!valid_name(e->name)) {
			osp_log_safe(safe, sizeof(safe), e->name != NULL ?
			    e->name : "", e->name != NULL ? strlen(e->name) :
			    0);
			load_error(&ls, e, "module %s: invalid module name: "
			    "use lower-case letters, digits and '-'", safe);
			e->name = "";	/* matches no dependency */
			continue;
		}
		first = entry_find(&ls, e->name);
		if (first != e) {
			if (first->has_mark)
				load_error(&ls, e, "module %s: listed twice "
				    "(first at %s:%u:%u)", e->name,
				    first->mark.file, first->mark.line,
				    first->mark.col);
			else
				load_error(&ls, e, "module %s: listed twice",
				    e->name);
			e->name = "";
			continue;
		}
		module_open(&ls, e);
	}
	for (i = 0; i < ls.n; i++)
		if (ls.e[i].ctx != NULL)
			check_depends(&ls, &ls.e[i]);

	/* Stable topological order (Kahn): repeatedly take the first module
	 * in config order whose dependencies are all placed. */
	osp_modules = osp_calloc(ls.n + 1, sizeof(*osp_modules));
	placed = 0;
	for (;;) {
		for (i = 0; i < ls.n; i++) {
			e = &ls.e[i];
			if (e->ctx != NULL && !e->placed && deps_placed(&ls, e))
				break;
		}
		if (i == ls.n)
			break;
		e->placed = true;
		e->ctx->index = (unsigned)placed;
		osp_modules[placed++] = e->ctx;
	}
	report_cycles(&ls);

	if (ls.nerrs > 0) {
		for (i = 0; i < ls.n; i++)
			if (ls.e[i].ctx != NULL)
				ctx_close(ls.e[i].ctx);
		osp_free(osp_modules);
		osp_modules = NULL;
		osp_free(ls.e);
		return OSP_ECONFIG;
	}
	osp_nmodules = placed;
	for (j = 0; j < osp_nmodules; j++)
		osp_log_debug("module", "order %zu module=%s", j,
		    osp_modules[j]->mod->name);
	osp_free(ls.e);
	modules_gen = osp_config_ref(gen);
	return OSP_OK;
}

/* ------------------------------------------------------------------ */
/* Lifecycle                                                            */

static int
lifecycle_fail(const char **error_r, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int
lifecycle_fail(const char **error_r, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(lifecycle_error, sizeof(lifecycle_error), fmt, ap);
	va_end(ap);
	*error_r = lifecycle_error;
	return rc == OSP_OK ? OSP_ERROR : rc;
}

/* fini() and forget the registrations and pool of one module. */
static void
module_fini(struct osp_module_ctx *ctx)
{
	if (!ctx->inited)
		return;
	if (ctx->mod->fini != NULL)
		ctx->mod->fini(ctx);
	osp_registry_remove_module(ctx);
	osp_pool_free(ctx->pool);
	ctx->pool = NULL;
	ctx->data = NULL;
	ctx->inited = false;
}

int
osp_modules_init(const char **error_r)
{
	struct osp_module_ctx *ctx;
	size_t i, j;
	int rc;

	for (i = 0; i < osp_nmodules; i++) {
		ctx = osp_modules[i];
		if (ctx->inited)
			continue;
		ctx->pool = osp_pool_new(NULL);
		registering = ctx;
		rc = ctx->mod->init != NULL ? ctx->mod->init(ctx) : OSP_OK;
		registering = NULL;
		if (rc == OSP_OK) {
			ctx->inited = true;
			osp_log_debug("module", "init module=%s",
			    ctx->mod->name);
			continue;
		}
		rc = lifecycle_fail(error_r, rc, "module %s: init failed: %s",
		    ctx->mod->name, osp_strerror(rc));
		/* The failed module gets no fini() (its init did not
		 * complete) but loses whatever it registered before failing;
		 * the ones before it are finished in reverse order, then
		 * everything is unloaded: startup stops here. */
		osp_registry_remove_module(ctx);
		osp_pool_free(ctx->pool);
		ctx->pool = NULL;
		ctx->data = NULL;
		for (j = i; j > 0; j--)
			module_fini(osp_modules[j - 1]);
		osp_modules_unload();
		return rc;
	}
	return OSP_OK;
}

int
osp_modules_start(const char **error_r)
{
	struct osp_module_ctx *ctx;
	size_t i, j;
	int rc;

	for (i = 0; i < osp_nmodules; i++) {
		ctx = osp_modules[i];
		if (ctx->started || !ctx->inited)
			continue;
		rc = ctx->mod->start != NULL ? ctx->mod->start(ctx) : OSP_OK;
		if (rc == OSP_OK) {
			ctx->started = true;
			continue;
		}
		rc = lifecycle_fail(error_r, rc, "module %s: start failed: %s",
		    ctx->mod->name, osp_strerror(rc));
		for (j = i; j > 0; j--) {
			ctx = osp_modules[j - 1];
			if (ctx->started && ctx->mod->stop != NULL)
				ctx->mod->stop(ctx);
			ctx->started = false;
		}
		return rc;
	}
	return OSP_OK;
}

void
osp_modules_stop(void)
{
	struct osp_module_ctx *ctx;
	size_t i;

	for (i = osp_nmodules; i > 0; i--) {
		ctx = osp_modules[i - 1];
		if (!ctx->started)
			continue;
		if (ctx->mod->stop != NULL)
			ctx->mod->stop(ctx);
		ctx->started = false;
	}
}

int
osp_modules_reload(struct osp_config *newgen)
{
	struct osp_module_ctx *ctx;
	const char *name;
	size_t i;
	int rc, ret = OSP_OK;

	for (i = 0; i < osp_nmodules; i++) {
		ctx = osp_modules[i];
		name = ctx->mod->name;
		if (!ctx->inited || (modules_gen != NULL &&
		    osp_config_section_equal(modules_gen, newgen, name)))
			continue;
		if (ctx->mod->reload == NULL) {
			osp_log_warn("module", "%s: config change needs a "
			    "restart", name);
			continue;
		}
		rc = ctx->mod->reload(ctx, osp_config_module(newgen, ctx));
		if (rc != OSP_OK) {
			osp_log_err("module", "%s: reload failed: %s", name,
			    osp_strerror(rc));
			ret = rc;
		} else
			osp_log_info("module", "%s: reloaded", name);
	}
	if (modules_gen != newgen) {
		if (modules_gen != NULL)
			osp_config_unref(modules_gen);
		modules_gen = osp_config_ref(newgen);
	}
	return ret;
}

void
osp_modules_unload(void)
{
	size_t i;

	osp_modules_stop();
	for (i = osp_nmodules; i > 0; i--)
		module_fini(osp_modules[i - 1]);
	/* The generation may hold values from the modules' schemas: release
	 * it before their code goes away. */
	if (modules_gen != NULL) {
		osp_config_unref(modules_gen);
		modules_gen = NULL;
	}
	for (i = osp_nmodules; i > 0; i--)
		ctx_close(osp_modules[i - 1]);
	osp_free(osp_modules);
	osp_modules = NULL;
	osp_nmodules = 0;
}

struct osp_module_ctx *
osp_module_find(const char *name)
{
	size_t i;

	for (i = 0; i < osp_nmodules; i++)
		if (strcmp(osp_modules[i]->mod->name, name) == 0)
			return osp_modules[i];
	return NULL;
}

void
osp_module_set_registering(struct osp_module_ctx *ctx)
{
	registering = ctx;
}

int
osp_module_may_register(const struct osp_module_ctx *ctx, const char *what)
{
	if (ctx != NULL && ctx == registering)
		return OSP_OK;
	osp_log_err("module", "%s: %s registration outside its init() "
	    "refused", ctx != NULL && ctx->mod != NULL ? ctx->mod->name : "?",
	    what);
	return -EPERM;
}

/* ------------------------------------------------------------------ */
/* Accessors for modules (module.h)                                     */

const char *
osp_module_name(const struct osp_module_ctx *ctx)
{
	return ctx->mod->name;
}

const void *
osp_module_conf(const struct osp_module_ctx *ctx)
{
	return osp_config_module(osp_config_current(), ctx);
}

void
osp_module_set_data(struct osp_module_ctx *ctx, void *data)
{
	ctx->data = data;
}

void *
osp_module_data(const struct osp_module_ctx *ctx)
{
	return ctx->data;
}

struct osp_pool *
osp_module_pool(const struct osp_module_ctx *ctx)
{
	return ctx->pool;
}
