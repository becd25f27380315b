/* SPDX-License-Identifier: ISC */
/* `osprey config account|address|domain ...` (targeted, atomic edits of
 * domains.yaml that keep comments), `osprey setaccountpassword` and the
 * TLS client certificates of `osprey config account tlscert ...`. */
#include "core.h"
#include "conf_int.h"
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#define MIN_PASSWORD	8
#define MAX_PASSWORD	1024

/* Everything a command needs: the configuration's data dir, the path and
 * text of domains.yaml, its node tree (for line numbers) and its loaded
 * snapshot. */
struct doc {
	struct osp_pool		*pool;
	struct osp_config	*gen;
	const char		*path;
	const char		*data_dir;
	struct osp_buf		 text;
	bool			 exists;
	mode_t			 mode;
	struct osp_pool		*npool;		/* node tree */
	struct osp_conf_node	*root;
	struct osp_accounts	*acc;		/* snapshot of the original */
	int			 lockfd;	/* flock()ed config directory */
};

static void
doc_deinit(struct doc *d)
{
	osp_accounts_unref(d->acc);
	if (d->lockfd >= 0)
		close(d->lockfd);
	osp_buf_deinit(&d->text);
	if (d->gen != NULL)
		osp_config_unref(d->gen);
	osp_pool_free(d->pool);
}

/* Re-parses the YAML structure of the current text (not its meaning). */
static int
doc_parse(struct doc *d)
{
	struct osp_conf_errs errs = { 0 };

	osp_pool_free(d->npool);
	d->npool = osp_pool_new(d->pool);
	d->root = osp_conf_yaml_parse(d->npool, d->path, d->text.data,
	    d->text.len, &errs);
	if (d->root == NULL) {
		fprintf(stderr, "%s\n", errs.text.data);
		osp_conf_errs_deinit(&errs);
		return -1;
	}
	osp_conf_errs_deinit(&errs);
	if (d->root->type == OSP_CONF_NODE_SCALAR && d->root->null)
		d->root = NULL;		/* empty document */
	else if (d->root->type != OSP_CONF_NODE_MAP) {
		fprintf(stderr, "osprey: %s: expected a mapping at the top "
		    "level\n", d->path);
		return -1;
	}
	return 0;
}

/* Loads the configuration and domains.yaml (missing: empty). Exits the
 * command (returns non-zero) on errors, printed. */
static int
doc_open(struct doc *d, struct osp_cli *cli)
{
	struct osp_conf_errs errs = { 0 };
	struct stat st;
	char *text;
	size_t len;
	int rc;

	memset(d, 0, sizeof(*d));
	d->lockfd = -1;
	d->pool = osp_pool_new(NULL);
	d->mode = 0644;
	d->gen = osp_config_parse(cli->config_file, &errs);
	if (errs.n > 0) {
		fprintf(stderr, "%s\nosprey: %u error%s in configuration\n",
		    errs.text.data, errs.n, errs.n == 1 ? "" : "s");
		osp_conf_errs_deinit(&errs);
		return 1;
	}
	d->data_dir = d->gen->core.data_dir;
	d->path = osp_psprintf(d->pool, "%s/domains.yaml", d->gen->dir);
	/* Concurrent editors (two CLI runs, later the admin pages) take
	 * turns: read-modify-rename under an exclusive lock on the directory
	 * so that no update is lost. */
	d->lockfd = open(d->gen->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (d->lockfd < 0 || flock(d->lockfd, LOCK_EX) != 0) {
		fprintf(stderr, "osprey: lock %s: %s\n", d->gen->dir,
		    strerror(errno));
		return 1;
	}
	rc = osp_conf_read_file(d->path, &text, &len);
	if (rc == -ENOENT) {
		d->acc = osp_accounts_new_empty();
		osp_buf_puts(&d->text, "");
		return 0;
	}
	if (rc != OSP_OK) {
		fprintf(stderr, "osprey: %s: %s\n", d->path, osp_strerror(rc));
		return 1;
	}
	d->exists = true;
	if (stat(d->path, &st) == 0)
		d->mode = st.st_mode & 07777;
	osp_buf_append(&d->text, text, len);
	osp_free(text);
	if (osp_accounts_load_string(d->path, d->text.data, &d->acc, &errs) !=
	    OSP_OK) {
		fprintf(stderr, "%s\nosprey: %s: %u error%s; fix the file "
		    "first\n", errs.text.data, d->path, errs.n,
		    errs.n == 1 ? "" : "s");
		osp_conf_errs_deinit(&errs);
		return 1;
	}
	osp_conf_errs_deinit(&errs);
	return doc_parse(d) == 0 ? 0 : 1;
}

/* ---- line arithmetic on the text ------------------------------------ */

static size_t
doc_nlines(const struct doc *d)
{
	size_t i, n = 0;

	for (i = 0; i < d->text.len; i++)
		if (d->text.data[i] == '\n')
			n++;
	if (d->text.len > 0 && d->text.data[d->text.len - 1] != '\n')
		n++;
	return n;
}

/* Offset of the start of 1-based line n (text length past the end). */
static size_t
line_off(const struct doc *d, size_t n)
{
	size_t i, line = 1;

	for (i = 0; i < d->text.len && line < n; i++)
		if (d->text.data[i] == '\n')
			line++;
	return line < n ? d->text.len : i;
}

static const char *
line_ptr(const struct doc *d, size_t n, size_t *len_r)
{
	size_t off = line_off(d, n), end = off;

	while (end < d->text.len && d->text.data[end] != '\n')
		end++;
	*len_r = end - off;
	return d->text.data + off;
}

/* Indentation of a line (comments included), or -1 when blank. */
static int
line_indent(const struct doc *d, size_t n)
{
	size_t len, i;
	const char *p = line_ptr(d, n, &len);

	for (i = 0; i < len && p[i] == ' '; i++)
		;
	if (i == len || p[i] == '\r')
		return -1;
	return (int)i;
}

static void
doc_splice(struct doc *d, size_t off, size_t del, const char *ins)
{
	struct osp_buf b = { 0 };

	osp_buf_append(&b, d->text.data, off);
	osp_buf_puts(&b, ins);
	osp_buf_append(&b, d->text.data + off + del, d->text.len - off - del);
	osp_buf_deinit(&d->text);
	d->text = b;
}

/* Inserts whole lines after line n (0: at the top). */
static void
insert_after(struct doc *d, size_t n, const char *lines)
{
	if (d->text.len > 0 && d->text.data[d->text.len - 1] != '\n')
		osp_buf_putc(&d->text, '\n');
	doc_splice(d, line_off(d, n + 1), 0, lines);
}

static void
delete_lines(struct doc *d, size_t first, size_t last)
{
	size_t a = line_off(d, first), b = line_off(d, last + 1);

	doc_splice(d, a, b - a, "");
}

static unsigned
subtree_max_line(const struct osp_conf_node *n)
{
	unsigned m = n->mark.line, x;
	size_t i;

	if (n->type == OSP_CONF_NODE_SCALAR)
		return m;
	for (i = 0; i < n->n; i++) {
		if (n->keys != NULL && n->keys[i]->mark.line > m)
			m = n->keys[i]->mark.line;
		if ((x = subtree_max_line(n->items[i])) > m)
			m = x;
	}
	return m;
}

/* The last line of a block-mapping entry: its subtree, then the lines
 * indented deeper than the key (multi-line scalars, comments inside the
 * entry), blank lines between them included but not trailing ones. */
static size_t
entry_last_line(const struct doc *d, const struct osp_conf_node *k,
    const struct osp_conf_node *v)
{
	size_t last = subtree_max_line(v), probe, n = doc_nlines(d);
	int ind;

	if (k->mark.line > last)
		last = k->mark.line;
	for (probe = last; probe < n; probe++) {
		ind = line_indent(d, probe + 1);
		if (ind < 0)
			continue;
		if (ind <= (int)k->mark.col - 1)
			break;
		last = probe + 1;
	}
	return last;
}

/* Whether a mapping node is written in flow style ({...}). */
static bool
is_flow(const struct doc *d, const struct osp_conf_node *map)
{
	size_t len;
	const char *p = line_ptr(d, map->mark.line, &len);

	return map->mark.col >= 1 && map->mark.col - 1 < len &&
	    p[map->mark.col - 1] == '{';
}

static char *
spaces(struct osp_pool *pool, int n)
{
	char *s = osp_palloc(pool, (size_t)n + 1);

	memset(s, ' ', (size_t)n);
	s[n] = '\0';
	return s;
}

/* Indents every line of `entry` by n spaces. */
static char *
indent_lines(struct osp_pool *pool, const char *entry, int n)
{
	struct osp_buf b = { 0 };
	const char *p = entry, *nl;
	char *r;

	while (*p != '\0') {
		nl = strchr(p, '\n');
		osp_buf_puts(&b, spaces(pool, n));
		osp_buf_append(&b, p, nl != NULL ? (size_t)(nl - p + 1) :
		    strlen(p));
		if (nl == NULL)
			osp_buf_putc(&b, '\n');
		p = nl != NULL ? nl + 1 : p + strlen(p);
	}
	r = osp_pstrdup(pool, b.data != NULL ? b.data : "");
	osp_buf_deinit(&b);
	return r;
}

/* A YAML scalar for s: plain when unambiguous, else double-quoted. */
static const char *
yq(struct osp_pool *pool, const char *s)
{
	static const char *const words[] = { "true", "false", "yes", "no",
	    "on", "off", "null", "y", "n", NULL };
	struct osp_buf b = { 0 };
	bool plain = *s != '\0' && *s != '-' && *s != '.';
	const char *p, *r;
	size_t i;

	for (p = s; *p != '\0' && plain; p++) {
		unsigned char c = (unsigned char)*p;

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-' || c == '+' || c == '@' || c >= 0x80))
			plain = false;
	}
	for (i = 0; words[i] != NULL && plain; i++)
		if (osp_str_eqi(s, words[i]))
			plain = false;
	if (plain)
		return s;
	osp_buf_putc(&b, '"');
	for (p = s; *p != '\0'; p++) {
		if (*p == '"' || *p == '\\')
			osp_buf_putc(&b, '\\');
		osp_buf_putc(&b, *p);
	}
	osp_buf_putc(&b, '"');
	r = osp_pstrdup(pool, b.data);
	osp_buf_deinit(&b);
	return r;
}

/*
 * Adds `entry` (lines relative to the mapping's indentation) as the last
 * entry of the mapping that is the value of key node `key` (value `val`,
 * NULL when `key: ` has no value). A NULL key means a top-level key named
 * `name` that does not exist yet: it is appended to the file.
 */
static int
map_append(struct doc *d, const char *name, const struct osp_conf_node *key,
    const struct osp_conf_node *val, const char *entry)
{
	size_t after;
	int ind;

	if (key == NULL) {
		insert_after(d, doc_nlines(d), osp_psprintf(d->pool, "%s:\n%s",
		    name, indent_lines(d->pool, entry, 2)));
		return 0;
	}
	if (val == NULL || (val->type == OSP_CONF_NODE_SCALAR && val->null &&
	    val->text[0] == '\0')) {
		ind = (int)key->mark.col - 1 + 2;
		after = key->mark.line;
	} else if (val->type == OSP_CONF_NODE_MAP && val->n > 0 &&
	    !is_flow(d, val)) {
		ind = (int)val->keys[0]->mark.col - 1;
		after = entry_last_line(d, val->keys[val->n - 1],
		    val->items[val->n - 1]);
	} else {
		fprintf(stderr, "osprey: %s:%u: %s: not a block mapping (flow "
		    "style or a scalar); edit it by hand\n", d->path,
		    key->mark.line, key->text);
		return -1;
	}
	insert_after(d, after, indent_lines(d->pool, entry, ind));
	return 0;
}

/* Removes entry i of a block mapping. */
static int
map_remove(struct doc *d, const struct osp_conf_node *map, size_t i)
{
	size_t len, c;
	const char *p;

	if (is_flow(d, map)) {
		fprintf(stderr, "osprey: %s:%u: flow-style mapping; edit it by "
		    "hand\n", d->path, map->mark.line);
		return -1;
	}
	p = line_ptr(d, map->keys[i]->mark.line, &len);
	for (c = 0; c + 1 < map->keys[i]->mark.col && c < len; c++)
		if (p[c] != ' ' && p[c] != '-') {
			fprintf(stderr, "osprey: %s:%u: unexpected layout; "
			    "edit it by hand\n", d->path,
			    map->keys[i]->mark.line);
			return -1;
		}
	delete_lines(d, map->keys[i]->mark.line,
	    entry_last_line(d, map->keys[i], map->items[i]));
	return 0;
}

/* Finds `name` in a mapping node: index or SIZE_MAX. */
static size_t
map_find(const struct osp_conf_node *map, const char *name)
{
	size_t i;

	if (map == NULL || map->type != OSP_CONF_NODE_MAP)
		return SIZE_MAX;
	for (i = 0; i < map->n; i++)
		if (strcmp(map->keys[i]->text, name) == 0)
			return i;
	return SIZE_MAX;
}

/* Adds an entry under a top-level key (domains, accounts, aliases). */
static int
top_append(struct doc *d, const char *top, const char *entry)
{
	struct osp_conf_node *k = NULL, *v;

	if (doc_parse(d) != 0)
		return -1;
	v = d->root != NULL ? osp_conf_node_get(d->root, top, &k) : NULL;
	return map_append(d, top, k, v, entry);
}

/* Validates the new text, then replaces the file atomically: a temporary
 * file in the same directory, fsynced, renamed over, directory fsynced. */
static int
doc_commit(struct doc *d)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *a;
	char *tmp, *dir, *slash;
	ssize_t w;
	size_t off = 0;
	int fd, dfd, rc;

	if (osp_accounts_load_string(d->path, d->text.data, &a, &errs) !=
	    OSP_OK) {
		fprintf(stderr, "%s\nosprey: not writing %s: the change would "
		    "make it invalid\n", errs.text.data, d->path);
		osp_conf_errs_deinit(&errs);
		return -1;
	}
	osp_conf_errs_deinit(&errs);
	osp_accounts_unref(a);

	tmp = osp_psprintf(d->pool, "%s.tmpXXXXXX", d->path);
	if ((fd = mkstemp(tmp)) < 0) {
		fprintf(stderr, "osprey: %s: %s\n", tmp, strerror(errno));
		return -1;
	}
	while (off < d->text.len) {
		w = write(fd, d->text.data + off, d->text.len - off);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			goto fail;
		off += (size_t)w;
	}
	if (fchmod(fd, d->mode) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, d->path) != 0)
		goto fail;
	dir = osp_pstrdup(d->pool, d->path);
	if ((slash = strrchr(dir, '/')) != NULL)
		*slash = '\0';
	else
		dir = osp_pstrdup(d->pool, ".");
	if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		rc = fsync(dfd);
		close(dfd);
		if (rc != 0) {
			fprintf(stderr, "osprey: fsync %s: %s\n", dir,
			    strerror(errno));
			return -1;
		}
	}
	return 0;
fail:
	fprintf(stderr, "osprey: writing %s: %s\n", tmp, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

/* ---- helpers over the snapshot --------------------------------------- */

/* Folded canonical form of an address as the snapshot indexes it (the
 * domain must be local), or NULL with a message printed. */
static const char *
folded(struct doc *d, const char *address, const struct osp_domain_conf **dc_r)
{
	const struct osp_domain_conf *dc;
	const char *canon, *err, *at;
	char *k;
	size_t i;

	if (osp_accounts_canon_address(d->pool, address, &canon, &err) !=
	    OSP_OK) {
		fprintf(stderr, "osprey: %s: %s\n", address, err);
		return NULL;
	}
	at = strrchr(canon, '@');
	if ((dc = osp_accounts_domain(d->acc, at + 1)) == NULL) {
		fprintf(stderr, "osprey: domain %s does not exist (add it with "
		    "`osprey config domain add`)\n", at + 1);
		return NULL;
	}
	k = osp_pstrdup(d->pool, canon);
	if (!dc->case_sensitive)
		for (i = 0; i < (size_t)(at - canon); i++)
			if (k[i] >= 'A' && k[i] <= 'Z')
				k[i] = (char)(k[i] - 'A' + 'a');
	if (dc_r != NULL)
		*dc_r = dc;
	return k;
}

/* Prints who uses an address already; true when in use. */
static bool
address_used(struct doc *d, const char *key)
{
	const struct osp_alias_conf *al;
	const char *owner;
	size_t n, i;

	if (osp_accounts_login_account(d->acc, key, &owner) == OSP_OK) {
		fprintf(stderr, "osprey: address %s already belongs to account "
		    "%s\n", key, owner);
		return true;
	}
	al = osp_accounts_aliases(d->acc, &n);
	for (i = 0; i < n; i++)
		if (strcmp(al[i].address, key) == 0) {
			fprintf(stderr, "osprey: address %s is an alias\n",
			    key);
			return true;
		}
	return false;
}

/* Creates the account's store directory and database. */
static int
create_store(struct doc *d, const char *account)
{
	struct osp_store *store;
	struct osp_account *acc;
	const char *err = "";

	if (mkdir(d->data_dir, 0750) != 0 && errno != EEXIST) {
		fprintf(stderr, "osprey: %s: %s\n", d->data_dir,
		    strerror(errno));
		return -1;
	}
	if (osp_store_open(d->data_dir, &store, &err) != OSP_OK) {
		fprintf(stderr, "osprey: store %s: %s\n", d->data_dir, err);
		return -1;
	}
	if (osp_account_open(store, account, true, &acc, &err) != OSP_OK) {
		fprintf(stderr, "osprey: account %s: %s\n", account, err);
		osp_store_close(store);
		return -1;
	}
	osp_account_unref(acc);
	osp_store_close(store);
	return 0;
}

static const char *
account_entry(struct doc *d, const char *name, const char *domain,
    const char *address)
{
	return osp_psprintf(d->pool, "%s:\n  domain: %s\n  destinations:\n"
	    "    %s: {}\n", yq(d->pool, name), yq(d->pool, domain),
	    yq(d->pool, address));
}

/* Adds a destination to an existing account's `destinations:`. */
static int
dest_append(struct doc *d, const char *account, const char *address)
{
	struct osp_conf_node *accs, *an, *ak = NULL, *dk = NULL, *dv;
	size_t i;
	int ind;

	if (doc_parse(d) != 0)
		return -1;
	accs = osp_conf_node_get(d->root, "accounts", NULL);
	if ((i = map_find(accs, account)) == SIZE_MAX)
		return -1;
	ak = accs->keys[i];
	an = accs->items[i];
	if (an->type != OSP_CONF_NODE_MAP || an->n == 0 || is_flow(d, an)) {
		fprintf(stderr, "osprey: %s:%u: account %s is not a block "
		    "mapping; edit it by hand\n", d->path, ak->mark.line,
		    account);
		return -1;
	}
	dv = osp_conf_node_get(an, "destinations", &dk);
	if (dk != NULL)
		return map_append(d, "destinations", dk, dv,
		    osp_psprintf(d->pool, "%s: {}\n", yq(d->pool, address)));
	ind = (int)an->keys[0]->mark.col - 1;
	insert_after(d, entry_last_line(d, ak, an), indent_lines(d->pool,
	    osp_psprintf(d->pool, "destinations:\n  %s: {}\n",
	    yq(d->pool, address)), ind));
	return 0;
}

/* ---- commands ------------------------------------------------------ */

/* The folded key of an address about to be added, or NULL after saying
 * why it cannot be (not localpart@domain, invalid, already used). */
static const char *
new_address(struct doc *d, const char *address)
{
	const char *key;

	if (strchr(address, '@') == NULL) {
		fprintf(stderr, "osprey: %s: an address is localpart@domain\n",
		    address);
		return NULL;
	}
	if ((key = folded(d, address, NULL)) == NULL || address_used(d, key))
		return NULL;
	return key;
}

static int
account_add(struct doc *d, const char *name, const char *address)
{
	const char *key, *at;

	if (osp_accounts_account(d->acc, name) != NULL) {
		fprintf(stderr, "osprey: account %s already exists\n", name);
		return 1;
	}
	if ((key = new_address(d, address)) == NULL)
		return 1;
	at = strrchr(address, '@');
	if (top_append(d, "accounts", account_entry(d, name, at + 1,
	    address)) != 0 || doc_commit(d) != 0)
		return 1;
	if (create_store(d, name) != 0)
		return 1;
	printf("account %s added with address %s\n", name, key);
	return 0;
}

/* Removes a domain's `postmaster-account:` / `catchall-account:` lines
 * that name an account being removed (`config domain add` writes the
 * former, so the account and domain can be removed in turn). */
static int
drop_domain_refs(struct doc *d, const char *name)
{
	static const char *const keys[] = { "postmaster-account",
	    "catchall-account" };
	struct osp_conf_node *doms, *dv;
	size_t i, j, k;
	bool again = true;

	while (again) {
		again = false;
		if (doc_parse(d) != 0)
			return -1;
		doms = osp_conf_node_get(d->root, "domains", NULL);
		for (i = 0; doms != NULL && doms->type == OSP_CONF_NODE_MAP &&
		    i < doms->n && !again; i++) {
			dv = doms->items[i];
			for (k = 0; k < 2 && !again; k++) {
				j = map_find(dv, keys[k]);
				if (j == SIZE_MAX || dv->items[j]->type !=
				    OSP_CONF_NODE_SCALAR ||
				    strcmp(dv->items[j]->text, name) != 0)
					continue;
				if (map_remove(d, dv, j) != 0)
					return -1;
				printf("domain %s: %s %s removed\n",
				    doms->keys[i]->text, keys[k], name);
				again = true;
			}
		}
	}
	return doc_parse(d);
}

static int
account_rm(struct doc *d, const char *name)
{
	struct osp_conf_node *accs;
	struct osp_auth *auth;
	const char *err;
	char *db;
	size_t i;

	if (osp_accounts_account(d->acc, name) == NULL ||
	    (i = map_find(accs = osp_conf_node_get(d->root, "accounts", NULL),
	    name)) == SIZE_MAX) {
		fprintf(stderr, "osprey: no account named %s\n", name);
		return 1;
	}
	if (map_remove(d, accs, i) != 0 || drop_domain_refs(d, name) != 0 ||
	    doc_commit(d) != 0)
		return 1;
	/* A later account of the same name must not inherit the password. */
	db = osp_psprintf(d->pool, "%s/auth.db", d->data_dir);
	if (access(db, F_OK) == 0) {
		if (osp_auth_open(d->data_dir, &auth, &err) != OSP_OK ||
		    osp_auth_remove(auth, name, &err) != OSP_OK) {
			fprintf(stderr, "osprey: %s: %s\n", db, err);
			osp_auth_close(auth);
			return 1;
		}
		osp_auth_close(auth);
	}
	printf("account %s removed; its messages stay in %s/accounts/%s\n",
	    name, d->data_dir, name);
	return 0;
}

static int
account_list(struct doc *d)
{
	const struct osp_account_conf *a;
	size_t n, i, j;

	a = osp_accounts_list(d->acc, &n);
	for (i = 0; i < n; i++) {
		printf("%s", a[i].name);
		for (j = 0; j < a[i].ndests; j++)
			printf("%s%s", j == 0 ? "\t" : ", ",
			    a[i].dests[j].address);
		printf("\n");
	}
	return 0;
}

static int
address_add(struct doc *d, const char *address, const char *account)
{
	const char *key;

	if (osp_accounts_account(d->acc, account) == NULL) {
		fprintf(stderr, "osprey: no account named %s\n", account);
		return 1;
	}
	if ((key = new_address(d, address)) == NULL)
		return 1;
	if (dest_append(d, account, address) != 0 || doc_commit(d) != 0)
		return 1;
	printf("address %s added to account %s\n", key, account);
	return 0;
}

static int
address_rm(struct doc *d, const char *address)
{
	const struct osp_account_conf *acc;
	struct osp_conf_node *dests;
	const char *key, *owner;
	size_t i;

	if ((key = folded(d, address, NULL)) == NULL)
		return 1;
	if (osp_accounts_login_account(d->acc, key, &owner) != OSP_OK) {
		fprintf(stderr, "osprey: address %s does not belong to an "
		    "account\n", key);
		return 1;
	}
	acc = osp_accounts_account(d->acc, owner);
	dests = osp_conf_node_get(osp_conf_node_get(osp_conf_node_get(d->root,
	    "accounts", NULL), owner, NULL), "destinations", NULL);
	/* A valid file lists an account's destinations in file order. */
	for (i = 0; i < acc->ndests; i++)
		if (strcmp(acc->dests[i].address, key) == 0)
			break;
	if (dests == NULL || dests->type != OSP_CONF_NODE_MAP ||
	    i >= dests->n || i == acc->ndests) {
		fprintf(stderr, "osprey: %s: cannot find %s\n", d->path, key);
		return 1;
	}
	if (map_remove(d, dests, i) != 0 || doc_commit(d) != 0)
		return 1;
	printf("address %s removed from account %s\n", key, owner);
	return 0;
}

static int
domain_add(struct doc *d, const char *domain, const char *account,
    const char *localpart)
{
	const char *canon, *err, *address, *key;
	bool newacc;

	if (osp_accounts_canon_domain(d->pool, domain, &canon, &err) !=
	    OSP_OK) {
		fprintf(stderr, "osprey: %s: %s\n", domain, err);
		return 1;
	}
	if (osp_accounts_domain(d->acc, canon) != NULL) {
		fprintf(stderr, "osprey: domain %s already exists\n", domain);
		return 1;
	}
	address = osp_psprintf(d->pool, "%s@%s", localpart, domain);
	if (osp_accounts_canon_address(d->pool, address, &key, &err) !=
	    OSP_OK) {
		fprintf(stderr, "osprey: %s: %s\n", address, err);
		return 1;
	}
	newacc = osp_accounts_account(d->acc, account) == NULL;
	/* The account also receives the domain's postmaster mail. */
	if (top_append(d, "domains", osp_psprintf(d->pool,
	    "%s:\n  postmaster-account: %s\n", yq(d->pool, domain),
	    yq(d->pool, account))) != 0)
		return 1;
	if (newacc) {
		if (top_append(d, "accounts", account_entry(d, account,
		    domain, address)) != 0)
			return 1;
	} else if (dest_append(d, account, address) != 0)
		return 1;
	if (doc_commit(d) != 0)
		return 1;
	if (newacc && create_store(d, account) != 0)
		return 1;
	printf("domain %s added; %s delivers to account %s%s\n", canon, key,
	    account, newacc ? " (new)" : "");
	return 0;
}

static int
domain_rm(struct doc *d, const char *domain)
{
	const struct osp_domain_conf *dc;
	const struct osp_account_conf *a;
	const struct osp_alias_conf *al;
	struct osp_conf_node *doms;
	const char *canon, *err, *at;
	size_t n, i, j, users = 0;

	if (osp_accounts_canon_domain(d->pool, domain, &canon, &err) !=
	    OSP_OK || (dc = osp_accounts_domain(d->acc, canon)) == NULL) {
		fprintf(stderr, "osprey: no domain %s\n", domain);
		return 1;
	}
	a = osp_accounts_list(d->acc, &n);
	for (i = 0; i < n; i++) {
		if (strcmp(a[i].domain, dc->name) == 0) {
			fprintf(stderr, "osprey: account %s has domain %s\n",
			    a[i].name, dc->name);
			users++;
		}
		for (j = 0; j < a[i].ndests; j++) {
			at = strrchr(a[i].dests[j].address, '@');
			if (strcmp(at + 1, dc->name) == 0) {
				fprintf(stderr, "osprey: account %s has "
				    "address %s\n", a[i].name,
				    a[i].dests[j].address);
				users++;
			}
		}
	}
	al = osp_accounts_aliases(d->acc, &n);
	for (i = 0; i < n; i++) {
		at = strrchr(al[i].address, '@');
		if (at != NULL && strcmp(at + 1, dc->name) == 0) {
			fprintf(stderr, "osprey: alias %s is in the domain\n",
			    al[i].address);
			users++;
		}
	}
	if (users > 0) {
		fprintf(stderr, "osprey: domain %s is in use; remove those "
		    "first\n", dc->name);
		return 1;
	}
	/* The key may be written as U-label or A-label. */
	doms = osp_conf_node_get(d->root, "domains", NULL);
	for (i = 0; doms != NULL && doms->type == OSP_CONF_NODE_MAP &&
	    i < doms->n; i++)
		if (osp_accounts_canon_domain(d->pool, doms->keys[i]->text,
		    &canon, &err) == OSP_OK && strcmp(canon, dc->name) == 0)
			break;
	if (doms == NULL || doms->type != OSP_CONF_NODE_MAP || i == doms->n) {
		fprintf(stderr, "osprey: %s: cannot find domain %s\n", d->path,
		    dc->name);
		return 1;
	}
	if (map_remove(d, doms, i) != 0 || doc_commit(d) != 0)
		return 1;
	printf("domain %s removed\n", dc->name);
	return 0;
}

/* ---- account tlscert: client certificates for SASL EXTERNAL --------- */

/* The first certificate of a PEM file (or a DER file), as DER. */
static int
tlscert_read(const char *file, gnutls_datum_t *der_r)
{
	gnutls_x509_crt_t crt;
	gnutls_datum_t in;
	int r;

	der_r->data = NULL;
	if ((r = gnutls_load_file(file, &in)) < 0) {
		fprintf(stderr, "osprey: %s: %s\n", file, gnutls_strerror(r));
		return -1;
	}
	if ((r = gnutls_x509_crt_init(&crt)) >= 0) {
		/* PEM: the first certificate (in a chain, the client's
		 * own comes first); else DER. */
		r = gnutls_x509_crt_import(crt, &in, GNUTLS_X509_FMT_PEM);
		if (r < 0)
			r = gnutls_x509_crt_import(crt, &in,
			    GNUTLS_X509_FMT_DER);
		if (r >= 0)
			r = gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_DER,
			    der_r);
		gnutls_x509_crt_deinit(crt);
	}
	gnutls_free(in.data);
	if (r < 0) {
		fprintf(stderr, "osprey: %s: not a certificate (PEM or DER): "
		    "%s\n", file, gnutls_strerror(r));
		return -1;
	}
	return 0;
}

static int
tlscert_cmd(struct doc *d, int argc, char **argv)
{
	struct osp_auth *auth = NULL;
	struct osp_auth_cert *certs;
	const char *verb = argv[0], *err = "";
	gnutls_datum_t der = { NULL, 0 };
	size_t n, i;
	int rc = 1, r;

	if (argc >= 2 && osp_accounts_account(d->acc, argv[1]) == NULL) {
		fprintf(stderr, "osprey: no account named %s in %s\n",
		    argv[1], d->path);
		return 1;
	}
	if (strcmp(verb, "add") == 0 && tlscert_read(argv[2], &der) != 0)
		return 1;
	if (mkdir(d->data_dir, 0750) != 0 && errno != EEXIST) {
		fprintf(stderr, "osprey: %s: %s\n", d->data_dir,
		    strerror(errno));
		goto out;
	}
	if (osp_auth_open(d->data_dir, &auth, &err) != OSP_OK) {
		fprintf(stderr, "osprey: %s/auth.db: %s\n", d->data_dir, err);
		goto out;
	}
	if (strcmp(verb, "add") == 0) {
		if ((r = osp_auth_cert_add(auth, argv[1], der.data, der.size,
		    argc == 4 ? argv[3] : NULL, &err)) != OSP_OK) {
			fprintf(stderr, "osprey: %s: %s\n", argv[2], err);
			goto out;
		}
		printf("certificate %s added to account %s; list with "
		    "`osprey config account tlscert list`\n", argv[2],
		    argv[1]);
	} else if (strcmp(verb, "rm") == 0) {
		if (osp_auth_cert_remove(auth, argv[1], argv[2], &err) !=
		    OSP_OK) {
			fprintf(stderr, "osprey: %s: %s\n", argv[2], err);
			goto out;
		}
		printf("certificate %s removed from account %s\n", argv[2],
		    argv[1]);
	} else {
		if (osp_auth_cert_list(auth, argc == 2 ? argv[1] : NULL,
		    d->pool, &certs, &n, &err) != OSP_OK) {
			fprintf(stderr, "osprey: %s/auth.db: %s\n",
			    d->data_dir, err);
			goto out;
		}
		for (i = 0; i < n; i++)
			printf("%s\t%s\t%s\n", certs[i].account,
			    certs[i].name, certs[i].fingerprint);
	}
	rc = 0;
out:
	gnutls_free(der.data);
	osp_auth_close(auth);
	return rc;
}

int
osp_cli_config_accounts(struct osp_cli *cli, int argc, char **argv)
{
	struct doc d;
	const char *what = argv[0], *verb = argc > 1 ? argv[1] : "";
	const char *sub = argc > 2 ? argv[2] : "";
	int rc;

	/* account tlscert add ACCOUNT CERTFILE [NAME] | rm ACCOUNT FP|NAME |
	 * list [ACCOUNT] */
	if (strcmp(what, "account") == 0 && strcmp(verb, "tlscert") == 0) {
		if (!((strcmp(sub, "add") == 0 && (argc == 5 || argc == 6)) ||
		    (strcmp(sub, "rm") == 0 && argc == 5) ||
		    (strcmp(sub, "list") == 0 && (argc == 3 || argc == 4))))
			return osp_cli_cmd_usage("config");
		if (doc_open(&d, cli) != 0) {
			doc_deinit(&d);
			return 1;
		}
		rc = tlscert_cmd(&d, argc - 2, argv + 2);
		doc_deinit(&d);
		return rc;
	}
	if (!((strcmp(what, "account") == 0 && ((strcmp(verb, "add") == 0 &&
	    argc == 4) || (strcmp(verb, "rm") == 0 && argc == 3) ||
	    (strcmp(verb, "list") == 0 && argc == 2))) ||
	    (strcmp(what, "address") == 0 && ((strcmp(verb, "add") == 0 &&
	    argc == 4) || (strcmp(verb, "rm") == 0 && argc == 3))) ||
	    (strcmp(what, "domain") == 0 && ((strcmp(verb, "add") == 0 &&
	    argc == 5) || (strcmp(verb, "rm") == 0 && argc == 3)))))
		return osp_cli_cmd_usage("config");
	if (doc_open(&d, cli) != 0) {
		doc_deinit(&d);
		return 1;
	}
	if (strcmp(what, "account") == 0)
		rc = strcmp(verb, "add") == 0 ? account_add(&d, argv[2],
		    argv[3]) : strcmp(verb, "rm") == 0 ? account_rm(&d,
		    argv[2]) : account_list(&d);
	else if (strcmp(what, "address") == 0)
		rc = strcmp(verb, "add") == 0 ? address_add(&d, argv[2],
		    argv[3]) : address_rm(&d, argv[2]);
	else
		rc = strcmp(verb, "add") == 0 ? domain_add(&d, argv[2],
		    argv[3], argv[4]) : domain_rm(&d, argv[2]);
	doc_deinit(&d);
	return rc;
}

/* ---- setaccountpassword ---------------------------------------------- */

int
osp_cli_setaccountpassword(struct osp_cli *cli, int argc, char **argv)
{
	char buf[MAX_PASSWORD + 2];
	struct osp_auth *auth = NULL;
	const char *err = "";
	struct doc d;
	size_t len = 0;
	ssize_t r;
	int rc = 1;

	if (argc != 2)
		return osp_cli_cmd_usage("setaccountpassword");
	if (doc_open(&d, cli) != 0)
		goto out;
	if (osp_accounts_account(d.acc, argv[1]) == NULL) {
		fprintf(stderr, "osprey: no account named %s in %s\n", argv[1],
		    d.path);
		goto out;
	}
	/* One line from stdin, a pipe or a terminal (no echo handling):
	 * byte by byte so that a terminal needs no EOF after the newline. */
	while (len < sizeof(buf)) {
		r = read(STDIN_FILENO, buf + len, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			fprintf(stderr, "osprey: reading password: %s\n",
			    strerror(errno));
			goto out;
		}
		if (r == 0 || buf[len] == '\n')
			break;
		len++;
	}
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	if (len > MAX_PASSWORD) {
		fprintf(stderr, "osprey: password too long (at most %d "
		    "bytes)\n", MAX_PASSWORD);
		goto out;
	}
	if (len < MIN_PASSWORD) {
		fprintf(stderr, "osprey: password too short: at least %d bytes "
		    "required\n", MIN_PASSWORD);
		goto out;
	}
	if (memchr(buf, '\0', len) != NULL) {
		fprintf(stderr, "osprey: password must not contain NUL\n");
		goto out;
	}
	if (mkdir(d.data_dir, 0750) != 0 && errno != EEXIST) {
		fprintf(stderr, "osprey: %s: %s\n", d.data_dir,
		    strerror(errno));
		goto out;
	}
	if (osp_auth_open(d.data_dir, &auth, &err) != OSP_OK ||
	    osp_auth_set_password(auth, argv[1], buf, len, &err) != OSP_OK) {
		fprintf(stderr, "osprey: %s/auth.db: %s\n", d.data_dir, err);
		goto out;
	}
	printf("password set for account %s\n", argv[1]);
	rc = 0;
out:
	osp_memzero(buf, sizeof(buf));
	osp_auth_close(auth);
	doc_deinit(&d);
	return rc;
}
