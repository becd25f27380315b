/* SPDX-License-Identifier: ISC */
/* Config generations: osprey.yaml and its includes -> one node tree ->
 * the core struct, module sections and listener extras; error lines;
 * osp_module_conf_error(). */
#include "conf_int.h"

#include <errno.h>
#include <glob.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct osp_config *conf_current;

/* ------------------------------------------------------------------ */
/* Errors                                                                */

void
osp_conf_errs_add(struct osp_conf_errs *e, const struct osp_conf_mark *m,
    const char *key, const char *fmt, ...)
{
	va_list ap;

	if (e->n > 0)
		osp_buf_putc(&e->text, '\n');
	if (m != NULL && m->file != NULL) {
		if (m->line > 0)
			osp_buf_printf(&e->text, "%s:%u:%u: ", m->file, m->line,
			    m->col);
		else
			osp_buf_printf(&e->text, "%s: ", m->file);
	}
	if (key != NULL && *key != '\0')
		osp_buf_printf(&e->text, "%s: ", key);
	va_start(ap, fmt);
	osp_buf_vprintf(&e->text, fmt, ap);
	va_end(ap);
	e->n++;
}

void
osp_conf_errs_deinit(struct osp_conf_errs *e)
{
	osp_buf_deinit(&e->text);
	e->n = 0;
}

/* ------------------------------------------------------------------ */
/* Generations                                                           */

struct osp_config *
osp_config_current(void)
{
	return conf_current;
}

void
osp_config_set_current(struct osp_config *gen)
{
	struct osp_config *old = conf_current;

	conf_current = gen;
	if (old != NULL)
		osp_config_unref(old);
}

struct osp_config *
osp_config_ref(struct osp_config *gen)
{
	gen->refs++;
	return gen;
}

void
osp_config_unref(struct osp_config *gen)
{
	if (gen == NULL)
		return;
	if (gen->refs <= 0)
		osp_fatal("conf", "config generation released too often");
	if (--gen->refs == 0)
		osp_pool_free(gen->pool);
}

const void *
osp_config_module(const struct osp_config *gen,
    const struct osp_module_ctx *m)
{
	if (gen == NULL)
		gen = conf_current;
	if (gen == NULL || m == NULL || m->index >= gen->nmodule_conf)
		return NULL;
	return gen->module_conf[m->index];
}

const char *
osp_config_hostname(const struct osp_config *gen)
{
	if (gen == NULL)
		gen = conf_current;
	return gen != NULL ? gen->core.hostname : NULL;
}

const char *
osp_config_data_dir(const struct osp_config *gen)
{
	if (gen == NULL)
		gen = conf_current;
	return gen != NULL ? gen->core.data_dir : NULL;
}

const struct osp_conf_mark *
osp_config_mark(const struct osp_config *gen, const void *field,
    const char **path_r)
{
	const struct osp_conf_mark *mark;
	const char *path;

	if (gen == NULL || !osp_conf_marks_find(gen->marks, field, &mark,
	    &path))
		return NULL;
	if (path_r != NULL)
		*path_r = path;
	return mark;
}

bool
osp_config_section_equal(const struct osp_config *a,
    const struct osp_config *b, const char *name)
{
	if (a == NULL || b == NULL)
		return a == b;
	return osp_conf_node_equal(osp_conf_node_get(a->doc, name, NULL),
	    osp_conf_node_get(b->doc, name, NULL));
}

/* ------------------------------------------------------------------ */
/* Parsing the main file and its includes                                */

/* A map or sequence under construction on the heap. */
struct nodevec {
	struct osp_conf_node	**keys, **items;
	size_t			  n, size;
};

static void
nodevec_add(struct nodevec *v, struct osp_conf_node *key,
    struct osp_conf_node *item)
{
	if (v->n == v->size) {
		v->size = v->size == 0 ? 16 : v->size * 2;
		v->keys = osp_reallocarray(v->keys, v->size, sizeof(*v->keys));
		v->items = osp_reallocarray(v->items, v->size,
		    sizeof(*v->items));
	}
	v->keys[v->n] = key;
	v->items[v->n++] = item;
}

static struct osp_conf_node *
nodevec_finish(struct osp_pool *pool, struct nodevec *v,
    enum osp_conf_node_type type, const struct osp_conf_mark *mark)
{
	struct osp_conf_node *node = osp_pcalloc(pool, 1, sizeof(*node));

	node->type = type;
	node->mark = *mark;
	node->n = v->n;
	if (v->n > 0) {
		node->items = osp_pmemdup(pool, v->items,
		    v->n * sizeof(*v->items));
		if (type == OSP_CONF_NODE_MAP)
			node->keys = osp_pmemdup(pool, v->keys,
			    v->n * sizeof(*v->keys));
	}
	osp_free(v->keys);
	osp_free(v->items);
	memset(v, 0, sizeof(*v));
	return node;
}

static struct osp_conf_node *
empty_map(struct osp_pool *pool, const char *file)
{
	struct osp_conf_node *node = osp_pcalloc(pool, 1, sizeof(*node));

	node->type = OSP_CONF_NODE_MAP;
	node->mark.file = file;
	node->mark.line = node->mark.col = 1;
	return node;
}

/* Parses one file; NULL (errors added) when unreadable or invalid.
 * `mark`/`key` locate the include that named it (NULL for the main file). */
static struct osp_conf_node *
parse_file(struct osp_pool *pool, const char *file,
    const struct osp_conf_mark *mark, const char *key,
    struct osp_conf_errs *errs, bool *unreadable_r)
{
	struct osp_conf_mark fmark = { file, 0, 0 };
	struct osp_conf_node *root;
	char *text;
	size_t len;
	int rc;

	if ((rc = osp_conf_read_file(file, &text, &len)) != OSP_OK) {
		if (mark != NULL)
			osp_conf_errs_add(errs, mark, key, "cannot read %s: %s",
			    file, osp_strerror(rc));
		else
			osp_conf_errs_add(errs, &fmark, NULL, "cannot read: %s",
			    osp_strerror(rc));
		if (unreadable_r != NULL)
			*unreadable_r = true;
		return NULL;
	}
	root = osp_conf_yaml_parse(pool, file, text, len, errs);
	osp_free(text);
	if (root == NULL)
		return NULL;
	if (root->type == OSP_CONF_NODE_SCALAR && root->null)
		return empty_map(pool, file);
	if (root->type != OSP_CONF_NODE_MAP) {
		osp_conf_errs_add(errs, &root->mark, NULL,
		    "expected a mapping of options at the top level");
		return NULL;
	}
	return root;
}

struct seen_file {
	dev_t	dev;
	ino_t	ino;
};

/* Whether path is a file already read; records it otherwise. */
static bool
seen_before(struct seen_file **seen, size_t *nseen, const char *path)
{
	struct stat st;
	size_t i;

	if (stat(path, &st) == -1)
		return false;	/* reading it will report the error */
	for (i = 0; i < *nseen; i++)
		if ((*seen)[i].dev == st.st_dev && (*seen)[i].ino == st.st_ino)
			return true;
	*seen = osp_reallocarray(*seen, *nseen + 1, sizeof(**seen));
	(*seen)[*nseen].dev = st.st_dev;
	(*seen)[*nseen].ino = st.st_ino;
	(*nseen)++;
	return false;
}

static int
path_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Adds the top-level pairs of one included file to the merged map. */
static void
merge_file(struct osp_conf_node *inc,
    struct nodevec *top, struct nodevec *mods, struct osp_conf_errs *errs)
{
	struct osp_conf_node *k, *v;
	size_t i, j;

	for (i = 0; i < inc->n; i++) {
		k = inc->keys[i];
		v = inc->items[i];
		if (strcmp(k->text, "include") == 0) {
			osp_conf_errs_add(errs, &k->mark, "include",
			    "not allowed in an included file (includes do "
			    "not nest)");
			continue;
		}
		if (strcmp(k->text, "modules") == 0) {
			/* modules: lists add up across files. */
			if (v->type == OSP_CONF_NODE_SEQ) {
				for (j = 0; j < v->n; j++)
					nodevec_add(mods, NULL, v->items[j]);
			} else if (v->type == OSP_CONF_NODE_SCALAR) {
				if (!v->null)
					nodevec_add(mods, NULL, v);
			} else
				osp_conf_errs_add(errs, &v->mark, "modules",
				    "expected a list, got a mapping");
			continue;
		}
		for (j = 0; j < top->n; j++)
			if (strcmp(top->keys[j]->text, k->text) == 0)
				break;
		if (j < top->n) {
			const struct osp_conf_mark *f = &top->keys[j]->mark;

			osp_conf_errs_add(errs, &k->mark, k->text,
			    "defined twice (first at %s:%u:%u)", f->file,
			    f->line, f->col);
			continue;
		}
		nodevec_add(top, k, v);
	}
}

static void
include_pattern(struct osp_config *gen, const char *gdir,
    const struct osp_conf_node *pat, const char *key, struct nodevec *top,
    struct nodevec *mods, struct seen_file **seen, size_t *nseen,
    struct osp_conf_errs *errs)
{
	const char *p = pat->text, *full;
	struct osp_conf_node *root;
	glob_t g;
	size_t i;
	int rc;

	if (*p == '/' || gdir == NULL)
		full = p;
	else
		full = osp_psprintf(gen->pool, "%s/%s", gdir, p);
	memset(&g, 0, sizeof(g));
	rc = glob(full, GLOB_NOSORT, NULL, &g);
	if (rc == GLOB_NOMATCH) {
		/* A pattern may match nothing (an empty conf.d); a plain
		 * file name that does not exist is a mistake. */
		if (strpbrk(p, "*?[") == NULL)
			osp_conf_errs_add(errs, &pat->mark, key,
			    "cannot read %s: %s", full, strerror(ENOENT));
		globfree(&g);
		return;
	}
	if (rc != 0) {
		osp_conf_errs_add(errs, &pat->mark, key,
		    "cannot expand %s: %s", full,
		    rc == GLOB_NOSPACE ? "out of memory" : "read error");
		globfree(&g);
		return;
	}
	/* Lexical byte order, whatever the locale. */
	qsort(g.gl_pathv, g.gl_pathc, sizeof(*g.gl_pathv), path_cmp);
	for (i = 0; i < g.gl_pathc; i++) {
		const char *file = osp_pstrdup(gen->pool, g.gl_pathv[i]);

		if (seen_before(seen, nseen, file)) {
			osp_conf_errs_add(errs, &pat->mark, key,
			    "%s is already included", file);
			continue;
		}
		root = parse_file(gen->pool, file, &pat->mark, key, errs,
		    NULL);
		if (root != NULL)
			merge_file(root, top, mods, errs);
	}
	globfree(&g);
}

/* The main file's map with every included file merged in. */
static struct osp_conf_node *
merge_includes(struct osp_config *gen, struct osp_conf_node *root,
    const char *gdir, struct osp_conf_errs *errs)
{
	struct nodevec top = { 0 }, mods = { 0 };
	struct osp_conf_node *inc, *k, *mk = NULL, *modnode = NULL;
	struct seen_file *seen = NULL;
	size_t nseen = 0, i;
	const char *key;

	inc = osp_conf_node_get(root, "include", NULL);
	if (inc == NULL || (inc->type == OSP_CONF_NODE_SCALAR && inc->null))
		return root;
	for (i = 0; i < root->n; i++) {
		k = root->keys[i];
		if (strcmp(k->text, "modules") == 0 &&
		    root->items[i]->type != OSP_CONF_NODE_MAP) {
			mk = k;
			modnode = root->items[i];
			if (modnode->type == OSP_CONF_NODE_SEQ) {
				size_t j;

				for (j = 0; j < modnode->n; j++)
					nodevec_add(&mods, NULL,
					    modnode->items[j]);
			} else if (!modnode->null)
				nodevec_add(&mods, NULL, modnode);
			continue;
		}
		nodevec_add(&top, k, root->items[i]);
	}
	seen_before(&seen, &nseen, gen->file);
	if (inc->type == OSP_CONF_NODE_SCALAR)
		include_pattern(gen, gdir, inc, "include", &top, &mods, &seen,
		    &nseen, errs);
	else if (inc->type == OSP_CONF_NODE_SEQ) {
		for (i = 0; i < inc->n; i++) {
			/* Bad items are reported by the core schema pass. */
			if (inc->items[i]->type != OSP_CONF_NODE_SCALAR ||
			    inc->items[i]->null)
				continue;
			key = osp_psprintf(gen->pool, "include[%zu]", i);
			include_pattern(gen, gdir, inc->items[i], key, &top,
			    &mods, &seen, &nseen, errs);
		}
	}
	osp_free(seen);
	if (mods.n > 0 || mk != NULL) {
		if (mk == NULL) {
			mk = osp_pcalloc(gen->pool, 1, sizeof(*mk));
			mk->type = OSP_CONF_NODE_SCALAR;
			mk->text = "modules";
			mk->mark = mods.items[0]->mark;
		}
		nodevec_add(&top, mk, nodevec_finish(gen->pool, &mods,
		    OSP_CONF_NODE_SEQ, modnode != NULL ? &modnode->mark :
		    &mk->mark));
	}
	osp_free(mods.keys);
	osp_free(mods.items);
	return nodevec_finish(gen->pool, &top, OSP_CONF_NODE_MAP, &root->mark);
}

static const struct osp_conf_mark *
mark_of(const struct osp_config *gen, const void *field, const char **path_r)
{
	if (path_r != NULL)
		*path_r = NULL;
	return osp_config_mark(gen, field, path_r);
}

/* Rules across fields of the core section, and derived defaults. */
static void
core_post(struct osp_config *gen, struct osp_conf_errs *errs)
{
	struct osp_core_conf *cc = &gen->core;
	const struct osp_conf_mark *m;
	const char *path, *env;
	char host[256];
	size_t i, j;

	if (cc->hostname == NULL) {
		if (gethostname(host, sizeof(host)) == -1 || host[0] == '\0')
			osp_strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		cc->hostname = osp_pstrdup(gen->pool, host);
	}
	if ((env = getenv("OSPREY_MODULE_PATH")) != NULL && *env != '\0')
		cc->module_path = osp_pstrdup(gen->pool, env);
	if (cc->log.target == OSP_LOGT_FILE && cc->log.file == NULL) {
		m = mark_of(gen, &cc->log.target, &path);
		osp_conf_errs_add(errs, m, "log.file",
		    "required when log.target is file");
	}
	/* RFC 1035 §4.2: DNS service is port 53. */
	for (i = 0; i < cc->dns.forwarders.n; i++) {
		struct osp_conf_addr *a = &OSP_CONF_ITEM(&cc->dns.forwarders,
		    struct osp_conf_addr, i);

		if (a->port != 0 || a->len == 0)
			continue;
		a->port = 53;
		if (a->ss.ss_family == AF_INET)
			((struct sockaddr_in *)&a->ss)->sin_port = htons(53);
		else
			((struct sockaddr_in6 *)&a->ss)->sin6_port = htons(53);
	}
	for (i = 0; i < cc->dns.unbound_options.n; i++) {
		const char *o = OSP_CONF_ITEM(&cc->dns.unbound_options,
		    const char *, i);

		if (o != NULL && strchr(o, ':') == NULL) {
			m = mark_of(gen, &OSP_CONF_ITEM(
			    &cc->dns.unbound_options, const char *, i), &path);
			osp_conf_errs_add(errs, m, path,
			    "expected \"name: value\", got \"%s\"", o);
		}
	}
	for (i = 0; i < cc->listeners.n; i++) {
		struct osp_core_listener *l = &OSP_CONF_ITEM(&cc->listeners,
		    struct osp_core_listener, i);

		if ((m = mark_of(gen, l, NULL)) != NULL)
			l->mark = *m;
		for (j = 0; j < l->address.n; j++) {
			struct osp_conf_addr *a = &OSP_CONF_ITEM(&l->address,
			    struct osp_conf_addr, j);

			if (a->port == 0)
				continue;
			m = mark_of(gen, a, &path);
			osp_conf_errs_add(errs, m, path,
			    "a listener address takes no port (use port:)");
		}
		for (j = 0; j < i && l->name != NULL; j++) {
			struct osp_core_listener *o = &OSP_CONF_ITEM(
			    &cc->listeners, struct osp_core_listener, j);

			if (o->name == NULL || strcmp(o->name, l->name) != 0)
				continue;
			m = mark_of(gen, &l->name, &path);
			osp_conf_errs_add(errs, m, path,
			    "duplicate listener name \"%s\" (first at line "
			    "%u, column %u of %s)", l->name, o->mark.line,
			    o->mark.col, o->mark.file);
			break;
		}
	}
	/* limits: each list has one number per IP class. */
	osp_limit_conf_check(gen, errs);
}

struct osp_config *
osp_config_parse(const char *file, struct osp_conf_errs *errs)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_conf_fill f = { .pool = pool, .errs = errs, .open = true };
	struct osp_config *gen;
	struct osp_conf_node *root;
	const char *slash, *gdir;
	char abs[PATH_MAX];
	bool unreadable = false;

	gen = osp_pcalloc(pool, 1, sizeof(*gen));
	gen->refs = 1;
	gen->pool = pool;
	gen->file = osp_pstrdup(pool, file);
	/* Messages name files as given (gdir prefix); PATH values are made
	 * absolute so a later chdir cannot change their meaning. */
	if ((slash = strrchr(gen->file, '/')) == NULL)
		gdir = NULL;
	else if (slash == gen->file)
		gdir = "/";
	else
		gdir = osp_pstrndup(pool, gen->file,
		    (size_t)(slash - gen->file));
	if (realpath(gdir != NULL ? gdir : ".", abs) != NULL)
		gen->dir = osp_pstrdup(pool, abs);
	else
		gen->dir = gdir != NULL ? gdir : ".";
	gen->marks = osp_conf_marks_new(pool);

	root = parse_file(pool, gen->file, NULL, NULL, errs, &unreadable);
	if (unreadable) {
		osp_pool_free(pool);
		return NULL;
	}
	if (root == NULL)	/* syntax errors: defaults, errors kept */
		root = empty_map(pool, gen->file);
	root = merge_includes(gen, root, gdir, errs);
	gen->doc = root;
	f.dir = gen->dir;
	f.marks = gen->marks;
	osp_conf_fill_struct(&f, osp_core_conf_defs, root, &gen->core, "",
	    &root->mark);
	core_post(gen, errs);
	return gen;
}

/* ------------------------------------------------------------------ */
/* Module sections, listener extras, check()                             */

static struct osp_module_ctx *
loaded_module(const char *name)
{
	size_t i;

	for (i = 0; i < osp_nmodules; i++)
		if (strcmp(osp_modules[i]->mod->name, name) == 0)
			return osp_modules[i];
	return NULL;
}

static bool
listed_module(const struct osp_config *gen, const char *name)
{
	size_t i;

	for (i = 0; i < gen->core.modules.n; i++) {
		const char *m = OSP_CONF_ITEM(&gen->core.modules,
		    const char *, i);

		if (m != NULL && strcmp(m, name) == 0)
			return true;
	}
	return false;
}

/* Where a module with no section of its own is configured: where it is
 * listed in modules:, else the top of the main file. */
static struct osp_conf_mark
module_mark(const struct osp_config *gen, const char *name)
{
	const struct osp_conf_mark *m;
	struct osp_conf_mark top = { gen->file, 1, 1 };
	size_t i;

	for (i = 0; i < gen->core.modules.n; i++) {
		const char *const *item = &OSP_CONF_ITEM(&gen->core.modules,
		    const char *, i);

		if (*item != NULL && strcmp(*item, name) == 0 &&
		    (m = osp_config_mark(gen, item, NULL)) != NULL)
			return *m;
	}
	return top;
}

static void
fill_listeners(struct osp_config *gen, struct osp_conf_errs *errs)
{
	struct osp_conf_fill f = { .pool = gen->pool, .errs = errs,
	    .dir = gen->dir, .marks = gen->marks,
	    .skip = osp_core_listener_defs };
	const struct osp_conf_node *lnode, *item, *proto;
	const struct osp_module *mod;
	struct osp_module_ctx *ctx;
	const char *path;
	char dummy;
	size_t i;

	lnode = osp_conf_node_get(gen->doc, "listeners", NULL);
	if (lnode == NULL || lnode->type != OSP_CONF_NODE_SEQ ||
	    lnode->n != gen->core.listeners.n)
		return;
	for (i = 0; i < lnode->n; i++) {
		struct osp_core_listener *l = &OSP_CONF_ITEM(
		    &gen->core.listeners, struct osp_core_listener, i);

		item = lnode->items[i];
		if (item->type != OSP_CONF_NODE_MAP || l->protocol == NULL)
			continue;
		path = osp_psprintf(gen->pool, "listeners[%zu]", i);
		if ((ctx = loaded_module(l->protocol)) == NULL) {
			proto = osp_conf_node_get(item, "protocol", NULL);
			osp_conf_errs_add(errs, &proto->mark,
			    osp_psprintf(gen->pool, "%s.protocol", path),
			    "module %s is not loaded%s", l->protocol,
			    listed_module(gen, l->protocol) ? "" :
			    " (add it to modules:)");
			continue;
		}
		mod = ctx->mod;
		if (mod->listener_conf != NULL && mod->listener_conf_size > 0) {
			l->module_conf = osp_pcalloc(gen->pool, 1,
			    mod->listener_conf_size);
			osp_conf_marks_add(gen->marks, l->module_conf,
			    mod->listener_conf_size, &item->mark, path);
			osp_conf_fill_struct(&f, mod->listener_conf, item,
			    l->module_conf, path, &item->mark);
		} else {
			/* No extras: any key beyond the core's is unknown. */
			osp_conf_fill_struct(&f, NULL, item, &dummy, path,
			    &item->mark);
		}
	}
}

int
osp_config_fill_modules(struct osp_config *gen, struct osp_conf_errs *errs)
{
	struct osp_conf_fill f = { .pool = gen->pool, .errs = errs,
	    .dir = gen->dir, .marks = gen->marks };
	const struct osp_conf_node *root = gen->doc, *node;
	struct osp_conf_node *k;
	struct osp_module_ctx *ctx;
	const struct osp_module *mod;
	struct osp_conf_mark mark;
	unsigned before = errs->n, b;
	bool *bad;
	size_t i;
	int rc;
	char dummy;

	gen->nmodule_conf = osp_nmodules;
	gen->module_conf = osp_pcalloc(gen->pool, osp_nmodules + 1,
	    sizeof(*gen->module_conf));
	bad = osp_calloc(osp_nmodules + 1, sizeof(*bad));
	for (i = 0; i < osp_nmodules; i++) {
		ctx = osp_modules[i];
		mod = ctx->mod;
		if (ctx->index >= osp_nmodules) {
			osp_conf_errs_add(errs, NULL, mod->name,
			    "internal error: module index %u out of range",
			    ctx->index);
			bad[i] = true;
			continue;
		}
		b = errs->n;
		k = NULL;
		node = osp_conf_node_get(root, mod->name, &k);
		mark = k != NULL ? k->mark : module_mark(gen, mod->name);
		if (mod->conf_size > 0) {
			void *conf = osp_pcalloc(gen->pool, 1, mod->conf_size);

			osp_conf_marks_add(gen->marks, conf, mod->conf_size,
			    &mark, mod->name);
			osp_conf_fill_struct(&f, mod->conf, node, conf,
			    mod->name, &mark);
			gen->module_conf[ctx->index] = conf;
		} else
			osp_conf_fill_struct(&f, NULL, node, &dummy, mod->name,
			    &mark);
		bad[i] = errs->n > b;
	}
	for (i = 0; root != NULL && i < root->n; i++) {
		const char *key = root->keys[i]->text, *hint = NULL;
		size_t j, d, bestd = 3;

		if (osp_conf_def_find(osp_core_conf_defs, key) != NULL ||
		    loaded_module(key) != NULL)
			continue;
		/* Listed but not loaded: the loader has said why. */
		if (listed_module(gen, key))
			continue;
		for (j = 0; osp_core_conf_defs[j].key != NULL; j++) {
			d = osp_conf_edit_distance(key,
			    osp_core_conf_defs[j].key);
			if (d < bestd) {
				bestd = d;
				hint = osp_core_conf_defs[j].key;
			}
		}
		for (j = 0; j < osp_nmodules; j++) {
			d = osp_conf_edit_distance(key,
			    osp_modules[j]->mod->name);
			if (d < bestd && d < strlen(key)) {
				bestd = d;
				hint = osp_modules[j]->mod->name;
			}
		}
		if (hint != NULL)
			osp_conf_errs_add(errs, &root->keys[i]->mark, key,
			    "unknown key (did you mean \"%s\"?)", hint);
		else
			osp_conf_errs_add(errs, &root->keys[i]->mark, key,
			    "unknown key: not a core option, and module %s is "
			    "not loaded (add it to modules:)", key);
	}
	fill_listeners(gen, errs);
	for (i = 0; i < osp_nmodules; i++) {
		ctx = osp_modules[i];
		mod = ctx->mod;
		if (mod->check == NULL || bad[i])
			continue;
		ctx->check_gen = gen;
		ctx->check_errs = errs;
		b = errs->n;
		rc = mod->check(ctx, gen->module_conf[ctx->index]);
		ctx->check_gen = NULL;
		ctx->check_errs = NULL;
		if (rc != OSP_OK && errs->n == b) {
			mark = module_mark(gen, mod->name);
			osp_conf_errs_add(errs, &mark, mod->name,
			    "configuration refused by the module (%s)",
			    osp_strerror(rc));
		}
	}
	osp_free(bad);
	return errs->n > before ? OSP_ECONFIG : OSP_OK;
}

void
osp_module_conf_error(struct osp_module_ctx *ctx, const void *field,
    const char *fmt, ...)
{
	struct osp_buf msg = { 0 };
	const struct osp_conf_mark *m = NULL;
	const char *path = ctx->mod->name;
	va_list ap;

	va_start(ap, fmt);
	osp_buf_vprintf(&msg, fmt, ap);
	va_end(ap);
	if (ctx->check_errs == NULL) {
		/* Outside check(): nothing collects errors, log it. */
		osp_log_err(ctx->mod->name, "config error: %s", msg.data);
		osp_buf_deinit(&msg);
		return;
	}
	if (ctx->check_gen != NULL)
		m = osp_config_mark(ctx->check_gen, field, &path);
	osp_conf_errs_add(ctx->check_errs, m, path, "%s", msg.data);
	osp_buf_deinit(&msg);
}
