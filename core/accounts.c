/* SPDX-License-Identifier: ISC */
/* domains.yaml: domains, accounts, destinations and aliases loaded into an
 * immutable snapshot, address resolution, and reload on change. */
#include "core.h"
#include "conf_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <idn2.h>

/* ------------------------------------------------------------------ */
/* Schema of the file                                                    */

struct ydomain {
	const char	*description;
	const char	*localpart_catchall_separator;
	bool		 localpart_case_sensitive;
	const char	*catchall_account;
	const char	*postmaster_account;
};

struct ydest {
	const char	*mailbox;
	const char	*full_name;
};

struct yaccount {
	const char		*domain;
	const char		*description;
	const char		*full_name;
	struct osp_conf_list	 destinations;
	uint64_t		 quota;
	int64_t			 max_outgoing_per_day;
	int64_t			 max_first_time_recipients_per_day;
};

struct yalias {
	struct osp_conf_list	 members;
	int			 post_allowed_by;
	bool			 list_members;
};

struct yfile {
	struct osp_conf_list	 domains;
	const char		*postmaster_account;
	struct osp_conf_list	 accounts;
	struct osp_conf_list	 aliases;
};

static const struct osp_conf_def ydomain_defs[] = {
	{ .key = "description", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct ydomain, description) },
	{ .key = "localpart-catchall-separator", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct ydomain, localpart_catchall_separator),
	  .flags = OSP_CONF_NONEMPTY },
	{ .key = "localpart-case-sensitive", .type = OSP_CONF_BOOL,
	  .offset = offsetof(struct ydomain, localpart_case_sensitive),
	  .dflt = "false" },
	{ .key = "catchall-account", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct ydomain, catchall_account) },
	{ .key = "postmaster-account", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct ydomain, postmaster_account) },
	OSP_CONF_END
};

static const struct osp_conf_def ydest_defs[] = {
	{ .key = "mailbox", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct ydest, mailbox), .dflt = "Inbox",
	  .flags = OSP_CONF_NONEMPTY },
	{ .key = "full-name", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct ydest, full_name) },
	OSP_CONF_END
};

static const struct osp_conf_def yaccount_defs[] = {
	{ .key = "domain", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct yaccount, domain),
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY },
	{ .key = "description", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct yaccount, description) },
	{ .key = "full-name", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct yaccount, full_name) },
	{ .key = "destinations", .type = OSP_CONF_MAP,
	  .offset = offsetof(struct yaccount, destinations),
	  .sub = ydest_defs, .elem_size = sizeof(struct ydest) },
	{ .key = "quota", .type = OSP_CONF_SIZE,
	  .offset = offsetof(struct yaccount, quota), .dflt = "0" },
	{ .key = "max-outgoing-per-day", .type = OSP_CONF_INT,
	  .offset = offsetof(struct yaccount, max_outgoing_per_day),
	  .dflt = "1000", .min = 0, .max = INT32_MAX },
	{ .key = "max-first-time-recipients-per-day", .type = OSP_CONF_INT,
	  .offset = offsetof(struct yaccount,
	      max_first_time_recipients_per_day),
	  .dflt = "200", .min = 0, .max = INT32_MAX },
	OSP_CONF_END
};

static const char *const post_values[] = { "members", "anyone", NULL };

static const struct osp_conf_def yalias_defs[] = {
	{ .key = "members", .type = OSP_CONF_LIST,
	  .offset = offsetof(struct yalias, members), .elem = OSP_CONF_STRING,
	  .flags = OSP_CONF_REQUIRED | OSP_CONF_NONEMPTY },
	{ .key = "post-allowed-by", .type = OSP_CONF_ENUM,
	  .offset = offsetof(struct yalias, post_allowed_by),
	  .values = post_values, .dflt = "members" },
	{ .key = "list-members", .type = OSP_CONF_BOOL,
	  .offset = offsetof(struct yalias, list_members), .dflt = "false" },
	OSP_CONF_END
};

static const struct osp_conf_def yfile_defs[] = {
	{ .key = "domains", .type = OSP_CONF_MAP,
	  .offset = offsetof(struct yfile, domains), .sub = ydomain_defs,
	  .elem_size = sizeof(struct ydomain) },
	{ .key = "postmaster-account", .type = OSP_CONF_STRING,
	  .offset = offsetof(struct yfile, postmaster_account) },
	{ .key = "accounts", .type = OSP_CONF_MAP,
	  .offset = offsetof(struct yfile, accounts), .sub = yaccount_defs,
	  .elem_size = sizeof(struct yaccount) },
	{ .key = "aliases", .type = OSP_CONF_MAP,
	  .offset = offsetof(struct yfile, aliases), .sub = yalias_defs,
	  .elem_size = sizeof(struct yalias) },
	OSP_CONF_END
};

/* ------------------------------------------------------------------ */
/* The snapshot                                                          */

enum ent_kind { ENT_DEST = 1, ENT_ALIAS };

/* One address of the lookup index, keyed by its folded form. */
struct addr_ent {
	const char	*key;
	enum ent_kind	 kind;
	size_t		 acc;	/* ENT_DEST: account index */
	size_t		 idx;	/* dest index in the account, or alias index */
};

/* An alias member: the destination it names. */
struct member {
	size_t	acc, dest;
};

struct osp_accounts {
	int			 refs;	/* atomic */
	struct osp_pool		*pool;
	struct osp_domain_conf	*domains;	/* sorted by name */
	size_t			 ndomains;
	struct osp_account_conf	*accounts;	/* sorted by name */
	size_t			 naccounts;
	struct osp_alias_conf	*aliases;	/* sorted by address */
	struct member		**alias_members;	/* parallel */
	size_t			 naliases;
	struct addr_ent		*index;		/* sorted by key */
	size_t			 nindex;
	const char		*postmaster_account;
};

struct osp_accounts *
osp_accounts_ref(struct osp_accounts *a)
{
	__atomic_add_fetch(&a->refs, 1, __ATOMIC_RELAXED);
	return a;
}

void
osp_accounts_unref(struct osp_accounts *a)
{
	if (a == NULL)
		return;
	if (__atomic_sub_fetch(&a->refs, 1, __ATOMIC_ACQ_REL) == 0)
		osp_pool_free(a->pool);
}

struct osp_accounts *
osp_accounts_new_empty(void)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	struct osp_accounts *a = osp_pcalloc(pool, 1, sizeof(*a));

	a->pool = pool;
	a->refs = 1;
	return a;
}

const char *
osp_accounts_path(struct osp_pool *pool, const char *config_file)
{
	const char *slash = strrchr(config_file, '/');

	if (slash == NULL)
		return osp_pstrdup(pool, "domains.yaml");
	return osp_psprintf(pool, "%.*s/domains.yaml",
	    (int)(slash - config_file), config_file);
}

/* ------------------------------------------------------------------ */
/* Canonical forms                                                       */

int
osp_accounts_canon_domain(struct osp_pool *pool, const char *domain,
    const char **canon_r, const char **error_r)
{
	char *out = NULL;
	int rc;

	*canon_r = NULL;
	if (domain == NULL || *domain == '\0') {
		*error_r = "empty domain";
		return -EINVAL;
	}
	/* IDNA2008 with UTS #46 mapping (case folded, NFC): U-labels become
	 * A-labels, A-labels are checked to round-trip. */
	rc = idn2_lookup_u8((const uint8_t *)domain, (uint8_t **)&out,
	    IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
	if (rc != IDN2_OK) {
		*error_r = "invalid internationalized domain name";
		return -EINVAL;
	}
	if (!osp_str_is_hostname(out)) {
		idn2_free(out);
		*error_r = "invalid domain name";
		return -EINVAL;
	}
	*canon_r = osp_pstrdup(pool, out);
	idn2_free(out);
	return OSP_OK;
}

static bool
localpart_valid(const char *s, size_t len)
{
	size_t i;

	/* RFC 5321 §4.5.3.1.1: at most 64 octets. Quoted localparts are not
	 * supported in configuration; UTF-8 (RFC 6531) is. */
	if (len == 0 || len > 64)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f || c == '@' || c == '"' ||
		    c == '\\' || c == ',' || c == '<' || c == '>')
			return false;
	}
	return true;
}

int
osp_accounts_canon_address(struct osp_pool *pool, const char *address,
    const char **canon_r, const char **error_r)
{
	const char *at = address != NULL ? strrchr(address, '@') : NULL;
	const char *dom;
	int rc;

	*canon_r = NULL;
	if (at == NULL) {
		*error_r = "address without @domain";
		return -EINVAL;
	}
	if (!localpart_valid(address, (size_t)(at - address))) {
		*error_r = "invalid localpart";
		return -EINVAL;
	}
	if ((rc = osp_accounts_canon_domain(pool, at + 1, &dom, error_r)) !=
	    OSP_OK)
		return rc;
	*canon_r = osp_psprintf(pool, "%.*s@%s", (int)(at - address), address,
	    dom);
	return OSP_OK;
}

/* localpart folded per the domain, "@", canonical domain. */
static char *
fold_key(struct osp_pool *pool, const char *local, size_t len,
    const struct osp_domain_conf *d)
{
	char *k = osp_psprintf(pool, "%.*s@%s", (int)len, local, d->name);
	size_t i;

	if (!d->case_sensitive)
		for (i = 0; i < len; i++)
			if (k[i] >= 'A' && k[i] <= 'Z')
				k[i] = (char)(k[i] - 'A' + 'a');
	return k;
}

/* ------------------------------------------------------------------ */
/* Lookups                                                              */

static int
domain_cmp(const void *a, const void *b)
{
	return strcmp(((const struct osp_domain_conf *)a)->name,
	    ((const struct osp_domain_conf *)b)->name);
}

static int
account_cmp(const void *a, const void *b)
{
	return strcmp(((const struct osp_account_conf *)a)->name,
	    ((const struct osp_account_conf *)b)->name);
}

static int
ent_cmp(const void *a, const void *b)
{
	return strcmp(((const struct addr_ent *)a)->key,
	    ((const struct addr_ent *)b)->key);
}

static const struct osp_domain_conf *
find_domain(const struct osp_accounts *a, const char *canon)
{
	struct osp_domain_conf k = { .name = canon };

	if (a == NULL || a->ndomains == 0)
		return NULL;
	return bsearch(&k, a->domains, a->ndomains, sizeof(k), domain_cmp);
}

static const struct addr_ent *
find_ent(const struct osp_accounts *a, const char *key)
{
	struct addr_ent k = { .key = key };

	if (a == NULL || a->nindex == 0)
		return NULL;
	return bsearch(&k, a->index, a->nindex, sizeof(k), ent_cmp);
}

static size_t
account_index(const struct osp_accounts *a, const char *name)
{
	struct osp_account_conf k = { .name = name };
	const struct osp_account_conf *r;

	if (a == NULL || a->naccounts == 0 || name == NULL)
		return SIZE_MAX;
	r = bsearch(&k, a->accounts, a->naccounts, sizeof(k), account_cmp);
	return r != NULL ? (size_t)(r - a->accounts) : SIZE_MAX;
}

const struct osp_account_conf *
osp_accounts_account(const struct osp_accounts *a, const char *name)
{
	size_t i = account_index(a, name);

	return i == SIZE_MAX ? NULL : &a->accounts[i];
}

const struct osp_account_conf *
osp_accounts_list(const struct osp_accounts *a, size_t *n_r)
{
	*n_r = a != NULL ? a->naccounts : 0;
	return a != NULL ? a->accounts : NULL;
}

const struct osp_domain_conf *
osp_accounts_domains(const struct osp_accounts *a, size_t *n_r)
{
	*n_r = a != NULL ? a->ndomains : 0;
	return a != NULL ? a->domains : NULL;
}

const struct osp_alias_conf *
osp_accounts_aliases(const struct osp_accounts *a, size_t *n_r)
{
	*n_r = a != NULL ? a->naliases : 0;
	return a != NULL ? a->aliases : NULL;
}

const struct osp_domain_conf *
osp_accounts_domain(const struct osp_accounts *a, const char *domain)
{
	struct osp_pool *pool = osp_pool_new(NULL);
	const struct osp_domain_conf *d = NULL;
	const char *canon, *err;

	if (osp_accounts_canon_domain(pool, domain, &canon, &err) == OSP_OK)
		d = find_domain(a, canon);
	osp_pool_free(pool);
	return d;
}

bool
osp_accounts_is_local_domain(const struct osp_accounts *a, const char *domain)
{
	return osp_accounts_domain(a, domain) != NULL;
}

const struct osp_dest_conf *
osp_accounts_addresses_of(const struct osp_accounts *a, const char *account,
    size_t *n_r)
{
	const struct osp_account_conf *acc = osp_accounts_account(a, account);

	*n_r = acc != NULL ? acc->ndests : 0;
	return acc != NULL ? acc->dests : NULL;
}

/* Adds a target unless the same account and mailbox is there already. */
static void
rcpt_add(struct osp_rcpt *v, size_t *n, const struct osp_account_conf *acc,
    const struct osp_dest_conf *dest, const char *address)
{
	size_t i;

	for (i = 0; i < *n; i++)
		if (strcmp(v[i].account, acc->name) == 0 &&
		    strcmp(v[i].mailbox, dest->mailbox) == 0)
			return;
	v[*n].account = acc->name;
	v[*n].mailbox = dest->mailbox;
	v[*n].address = address;
	(*n)++;
}

static void
expand(const struct osp_accounts *a, const struct addr_ent *e,
    struct osp_pool *pool, struct osp_rcpt **rcpts_r, size_t *n_r)
{
	const struct osp_account_conf *acc;
	const struct osp_alias_conf *al;
	struct osp_rcpt *v;
	size_t i, n = 0;

	if (e->kind == ENT_DEST) {
		acc = &a->accounts[e->acc];
		v = osp_pcalloc(pool, 1, sizeof(*v));
		rcpt_add(v, &n, acc, &acc->dests[e->idx],
		    acc->dests[e->idx].address);
	} else {
		al = &a->aliases[e->idx];
		v = osp_pcalloc(pool, al->nmembers, sizeof(*v));
		for (i = 0; i < al->nmembers; i++) {
			const struct member *m = &a->alias_members[e->idx][i];

			acc = &a->accounts[m->acc];
			rcpt_add(v, &n, acc, &acc->dests[m->dest],
			    acc->dests[m->dest].address);
		}
	}
	*rcpts_r = v;
	*n_r = n;
}

/* A whole-account target (postmaster, catch-all): its Inbox. */
static int
account_target(const struct osp_accounts *a, const char *name,
    const char *address, struct osp_pool *pool, struct osp_rcpt **rcpts_r,
    size_t *n_r)
{
	size_t i = account_index(a, name);
	struct osp_rcpt *v;

	if (i == SIZE_MAX)
		return -ENOENT;
	v = osp_pcalloc(pool, 1, sizeof(*v));
	v->account = a->accounts[i].name;
	v->mailbox = "Inbox";
	v->address = osp_pstrdup(pool, address);
	*rcpts_r = v;
	*n_r = 1;
	return OSP_OK;
}

int
osp_accounts_resolve(const struct osp_accounts *a, const char *address,
    struct osp_pool *pool, struct osp_rcpt **rcpts_r, size_t *n_r,
    const char **error_r)
{
	const struct osp_domain_conf *d;
	const struct addr_ent *e;
	const char *at, *canon, *err, *sep;
	struct osp_pool *tmp;
	size_t llen;
	int rc;

	*rcpts_r = NULL;
	*n_r = 0;
	if (error_r == NULL)
		error_r = &err;
	at = strrchr(address, '@');
	if (at == NULL || !localpart_valid(address, (size_t)(at - address))) {
		*error_r = "malformed address";
		return -EINVAL;
	}
	tmp = osp_pool_new(NULL);
	if (osp_accounts_canon_domain(tmp, at + 1, &canon, error_r) !=
	    OSP_OK) {
		rc = -EINVAL;
		goto out;
	}
	if ((d = find_domain(a, canon)) == NULL) {
		*error_r = "domain is not local";
		rc = OSP_DECLINED;
		goto out;
	}
	llen = (size_t)(at - address);
	/* 1. Exact destination or alias. */
	if ((e = find_ent(a, fold_key(tmp, address, llen, d))) != NULL)
		goto found;
	/* 2. user+tag@ -> user@, at the first separator. */
	if (d->separator != NULL && (sep = strstr(address, d->separator)) !=
	    NULL && sep < at && sep > address &&
	    (e = find_ent(a, fold_key(tmp, address,
	    (size_t)(sep - address), d))) != NULL)
		goto found;
	/* 3. postmaster@ is case-insensitive everywhere (RFC 5321 §4.5.1). */
	if (llen == 10 && osp_str_has_prefix_i(address, "postmaster@")) {
		if (d->postmaster_account != NULL)
			rc = account_target(a, d->postmaster_account, address,
			    pool, rcpts_r, n_r);
		else if (a->postmaster_account != NULL)
			rc = account_target(a, a->postmaster_account, address,
			    pool, rcpts_r, n_r);
		else
			rc = -ENOENT;
		if (rc == OSP_OK)
			goto out;
	}
	/* 4. The domain's catch-all. */
	if (d->catchall_account != NULL) {
		rc = account_target(a, d->catchall_account, address, pool,
		    rcpts_r, n_r);
		goto out;
	}
	*error_r = "no such address";
	rc = -ENOENT;
	goto out;
found:
	expand(a, e, pool, rcpts_r, n_r);
	rc = OSP_OK;
out:
	osp_pool_free(tmp);
	return rc;
}

int
osp_accounts_login_account(const struct osp_accounts *a, const char *username,
    const char **account_r)
{
	const struct osp_domain_conf *d;
	const struct addr_ent *e;
	const char *at, *canon, *err;
	struct osp_pool *tmp;
	size_t i;
	int rc = -ENOENT;

	*account_r = NULL;
	if ((at = strrchr(username, '@')) == NULL) {
		if ((i = account_index(a, username)) == SIZE_MAX)
			return -ENOENT;
		*account_r = a->accounts[i].name;
		return OSP_OK;
	}
	if (!localpart_valid(username, (size_t)(at - username)))
		return -ENOENT;
	tmp = osp_pool_new(NULL);
	if (osp_accounts_canon_domain(tmp, at + 1, &canon, &err) == OSP_OK &&
	    (d = find_domain(a, canon)) != NULL &&
	    (e = find_ent(a, fold_key(tmp, username,
	    (size_t)(at - username), d))) != NULL && e->kind == ENT_DEST) {
		*account_r = a->accounts[e->acc].name;
		rc = OSP_OK;
	}
	osp_pool_free(tmp);
	return rc;
}

bool
osp_accounts_may_send_as(const struct osp_accounts *a, const char *account,
    const char *address)
{
	struct osp_pool *tmp;
	const struct osp_domain_conf *d;
	const struct addr_ent *e;
	const char *at, *sep, *canon, *err;
	bool ok = false;

	if ((at = strrchr(address, '@')) == NULL ||
	    !localpart_valid(address, (size_t)(at - address)))
		return false;
	tmp = osp_pool_new(NULL);
	if (osp_accounts_canon_domain(tmp, at + 1, &canon, &err) != OSP_OK ||
	    (d = find_domain(a, canon)) == NULL)
		goto out;
	e = find_ent(a, fold_key(tmp, address, (size_t)(at - address), d));
	if (e == NULL && d->separator != NULL &&
	    (sep = strstr(address, d->separator)) != NULL && sep < at &&
	    sep > address)
		e = find_ent(a, fold_key(tmp, address,
		    (size_t)(sep - address), d));
	if (e != NULL && e->kind == ENT_DEST)
		ok = strcmp(a->accounts[e->acc].name, account) == 0;
out:
	osp_pool_free(tmp);
	return ok;
}

/* ------------------------------------------------------------------ */
/* Loading                                                              */

/* Where the value (or else the key) at root.k1.k2.k3 was written. */
static const struct osp_conf_mark *
node_mark(const struct osp_conf_node *root, const char *k1, const char *k2,
    const char *k3, bool want_key)
{
	const struct osp_conf_node *n = root, *v;
	struct osp_conf_node *k = NULL;
	const char *ks[3] = { k1, k2, k3 };
	const struct osp_conf_mark *m = &root->mark;
	int i;

	for (i = 0; i < 3 && ks[i] != NULL; i++) {
		if ((v = osp_conf_node_get(n, ks[i], &k)) == NULL)
			return m;
		m = want_key || v->type != OSP_CONF_NODE_SCALAR ? &k->mark :
		    &v->mark;
		n = v;
	}
	return m;
}

/* The valid account names double as directory names in the store. */
static bool
account_name_valid(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > 64 || s[0] == '.' || s[0] == '-')
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '.' || c == '_' ||
		    c == '-' || c == '+'))
			return false;
	}
	return true;
}

static bool
mailbox_name_valid(const char *s)
{
	size_t i, len = strlen(s);

	if (len == 0 || len > 255 || s[0] == '/' || s[len - 1] == '/' ||
	    strstr(s, "//") != NULL)
		return false;
	for (i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

/* An index entry while loading: where it was written, for duplicates. */
struct loadent {
	struct addr_ent			 e;
	const struct osp_conf_mark	*mark;
	const char			*path;
	size_t				 seq;
	bool				 reported;
};

struct loadctx {
	struct osp_accounts		*a;
	const struct osp_conf_node	*root;
	struct osp_conf_errs		*errs;
	struct osp_pool			*tmp;
	struct loadent			*ents;
	size_t				 nents, sents;
	size_t				 nsorted;	/* prefix sorted by
							 * index_check() */
};

static const char *
pdup(struct osp_accounts *a, const char *s)
{
	return s != NULL ? osp_pstrdup(a->pool, s) : NULL;
}

/* Registers an address (folded key); duplicates are found by
 * index_check() after sorting, so loading stays O(n log n). */
static void
index_push(struct loadctx *c, const char *key, enum ent_kind kind, size_t acc,
    size_t idx, const struct osp_conf_mark *mark, const char *path)
{
	struct loadent *le;

	if (c->nents == c->sents) {
		c->sents = c->sents == 0 ? 32 : c->sents * 2;
		c->ents = osp_reallocarray(c->ents, c->sents,
		    sizeof(*c->ents));
	}
	le = &c->ents[c->nents];
	memset(le, 0, sizeof(*le));
	le->e.key = key;
	le->e.kind = kind;
	le->e.acc = acc;
	le->e.idx = idx;
	le->mark = mark;
	le->path = path;
	le->seq = c->nents++;
}

static int
loadent_cmp(const void *a, const void *b)
{
	const struct loadent *x = a, *y = b;
	int r = strcmp(x->e.key, y->e.key);

	if (r != 0)
		return r;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

static int
loadent_key_cmp(const void *a, const void *b)
{
	return strcmp(((const struct loadent *)a)->e.key,
	    ((const struct loadent *)b)->e.key);
}

/* Sorts the index and reports each address written a second time, at
 * the later place. */
static void
index_check(struct loadctx *c)
{
	struct loadent *p, *q;
	size_t i;

	c->nsorted = c->nents;
	if (c->nents == 0)
		return;
	qsort(c->ents, c->nents, sizeof(*c->ents), loadent_cmp);
	for (i = 1; i < c->nents; i++) {
		p = &c->ents[i - 1];
		q = &c->ents[i];
		if (strcmp(p->e.key, q->e.key) != 0 || q->reported)
			continue;
		q->reported = true;
		if (p->e.kind == ENT_DEST && q->e.kind == ENT_DEST)
			osp_conf_errs_add(c->errs, q->mark, q->path,
			    "address %s is configured twice", q->e.key);
		else
			osp_conf_errs_add(c->errs, q->mark, q->path,
			    "address %s is already an account's destination "
			    "or another alias", q->e.key);
	}
}

/* A destination by folded key (after index_check). */
static const struct loadent *
index_find_dest(const struct loadctx *c, const char *key)
{
	struct loadent k = { .e.key = key };
	const struct loadent *le;

	/* Aliases are appended after the sorted destinations. */
	if (c->nsorted == 0)
		return NULL;
	le = bsearch(&k, c->ents, c->nsorted, sizeof(k), loadent_key_cmp);
	return le != NULL && le->e.kind == ENT_DEST ? le : NULL;
}

/* Canonical address of a configured key; a bare localpart takes the
 * account's domain. Returns the domain in *d_r. Reports errors at m. */
static const char *
conf_address(struct loadctx *c, const char *text, const char *dflt_domain,
    const struct osp_conf_mark *m, const char *path,
    const struct osp_domain_conf **d_r)
{
	const char *canon, *err, *at;

	*d_r = NULL;
	if (strchr(text, '@') == NULL) {
		if (dflt_domain == NULL)
			return NULL;
		text = osp_psprintf(c->tmp, "%s@%s", text, dflt_domain);
	}
	if (osp_accounts_canon_address(c->tmp, text, &canon, &err) !=
	    OSP_OK) {
		osp_conf_errs_add(c->errs, m, path, "%s: %s", text, err);
		return NULL;
	}
	at = strrchr(canon, '@');
	if ((*d_r = find_domain(c->a, at + 1)) == NULL) {
		osp_conf_errs_add(c->errs, m, path,
		    "domain %s is not configured in domains:", at + 1);
		return NULL;
	}
	return fold_key(c->a->pool, canon, (size_t)(at - canon), *d_r);
}

static void
load_domains(struct loadctx *c, const struct yfile *y)
{
	struct osp_accounts *a = c->a;
	const struct osp_conf_mark *m;
	const struct osp_conf_node *dnode;
	const char *canon, *err, *path;
	char *u;
	size_t i, j;

	/* fill_map() keeps the YAML order: item i is node entry i. */
	dnode = osp_conf_node_get(c->root, "domains", NULL);
	a->ndomains = y->domains.n;
	a->domains = osp_pcalloc(a->pool, a->ndomains + 1,
	    sizeof(*a->domains));
	for (i = 0; i < y->domains.n; i++) {
		const struct osp_conf_map_item *it =
		    &OSP_CONF_ITEM(&y->domains, struct osp_conf_map_item, i);
		const struct ydomain *yd = it->value;
		struct osp_domain_conf *d = &a->domains[i];

		m = &dnode->keys[i]->mark;
		path = osp_conf_path_join(c->tmp, "domains", it->name);
		if (osp_accounts_canon_domain(a->pool, it->name, &canon,
		    &err) != OSP_OK) {
			osp_conf_errs_add(c->errs, m, path, "%s", err);
			canon = osp_psprintf(a->pool, "invalid.%zu.", i);
		}
		for (j = 0; j < i; j++)
			if (strcmp(a->domains[j].name, canon) == 0)
				osp_conf_errs_add(c->errs, m, path,
				    "same domain as %s", a->domains[j].unicode);
		d->name = canon;
		u = NULL;
		if (idn2_to_unicode_8z8z(canon, &u, 0) == IDN2_OK) {
			d->unicode = osp_pstrdup(a->pool, u);
			idn2_free(u);
		} else
			d->unicode = canon;
		d->description = pdup(a, yd->description);
		d->separator = pdup(a, yd->localpart_catchall_separator);
		if (d->separator != NULL && strchr(d->separator, '@') != NULL)
			osp_conf_errs_add(c->errs, node_mark(c->root,
			    "domains", it->name,
			    "localpart-catchall-separator", false),
			    osp_conf_path_join(c->tmp, path,
			    "localpart-catchall-separator"),
			    "must not contain @");
		d->case_sensitive = yd->localpart_case_sensitive;
		d->catchall_account = pdup(a, yd->catchall_account);
		d->postmaster_account = pdup(a, yd->postmaster_account);
	}
	qsort(a->domains, a->ndomains, sizeof(*a->domains), domain_cmp);
}

/* Accounts keep file order while loading (dest indexes refer to it);
 * sorted afterwards with the index fixed up. */
static void
load_accounts(struct loadctx *c, const struct yfile *y)
{
	struct osp_accounts *a = c->a;
	const struct osp_domain_conf *d;
	const struct osp_conf_node *anode, *dn;
	const char *canon, *err, *path, *key;
	size_t i, j;

	anode = osp_conf_node_get(c->root, "accounts", NULL);
	a->naccounts = y->accounts.n;
	a->accounts = osp_pcalloc(a->pool, a->naccounts + 1,
	    sizeof(*a->accounts));
	for (i = 0; i < y->accounts.n; i++) {
		const struct osp_conf_map_item *it =
		    &OSP_CONF_ITEM(&y->accounts, struct osp_conf_map_item, i);
		const struct yaccount *ya = it->value;
		struct osp_account_conf *acc = &a->accounts[i];
		struct osp_dest_conf *dests;

		path = osp_conf_path_join(c->tmp, "accounts", it->name);
		acc->name = osp_pstrdup(a->pool, it->name);
		if (!account_name_valid(it->name))
			osp_conf_errs_add(c->errs, node_mark(c->root,
			    "accounts", it->name, NULL, true), path,
			    "invalid account name (letters, digits, "
			    "\".\", \"_\", \"-\", \"+\"; at most 64)");
		acc->description = pdup(a, ya->description);
		acc->full_name = pdup(a, ya->full_name);
		acc->quota = ya->quota;
		acc->max_outgoing_per_day = ya->max_outgoing_per_day;
		acc->max_first_time_recipients_per_day =
		    ya->max_first_time_recipients_per_day;
		acc->domain = NULL;
		if (ya->domain != NULL) {
			if (osp_accounts_canon_domain(a->pool, ya->domain,
			    &canon, &err) != OSP_OK)
				osp_conf_errs_add(c->errs, node_mark(c->root,
				    "accounts", it->name, "domain", false),
				    osp_conf_path_join(c->tmp, path, "domain"),
				    "%s: %s", ya->domain, err);
			else if (find_domain(a, canon) == NULL)
				osp_conf_errs_add(c->errs, node_mark(c->root,
				    "accounts", it->name, "domain", false),
				    osp_conf_path_join(c->tmp, path, "domain"),
				    "domain %s is not configured in domains:",
				    ya->domain);
			else
				acc->domain = canon;
		}
		dn = osp_conf_node_get(anode->items[i], "destinations", NULL);
		dests = osp_pcalloc(a->pool, ya->destinations.n + 1,
		    sizeof(*dests));
		acc->dests = dests;
		for (j = 0; j < ya->destinations.n; j++) {
			const struct osp_conf_map_item *dt =
			    &OSP_CONF_ITEM(&ya->destinations,
			    struct osp_conf_map_item, j);
			const struct ydest *yd = dt->value;
			const struct osp_conf_mark *m = &dn->keys[j]->mark;
			const char *dpath;

			dpath = osp_conf_path_join(c->tmp, path,
			    osp_psprintf(c->tmp, "destinations.%s", dt->name));
			if (strchr(dt->name, '@') == NULL &&
			    acc->domain == NULL)
				continue;	/* error already reported */
			key = conf_address(c, dt->name, acc->domain, m, dpath,
			    &d);
			if (key == NULL)
				continue;
			if (!mailbox_name_valid(yd->mailbox)) {
				osp_conf_errs_add(c->errs, m, dpath,
				    "invalid mailbox name \"%s\"",
				    yd->mailbox);
				continue;
			}
			index_push(c, key, ENT_DEST, i, acc->ndests, m, dpath);
			dests[acc->ndests].address = key;
			dests[acc->ndests].mailbox = osp_pstrdup(a->pool,
			    yd->mailbox);
			dests[acc->ndests].full_name = pdup(a, yd->full_name);
			acc->ndests++;
		}
	}
}

static void
load_aliases(struct loadctx *c, const struct yfile *y)
{
	struct osp_accounts *a = c->a;
	const struct osp_domain_conf *d;
	const struct osp_conf_node *an;
	const char *key, *path, *mkey;
	size_t i, j, n;

	a->naliases = y->aliases.n;
	a->aliases = osp_pcalloc(a->pool, a->naliases + 1,
	    sizeof(*a->aliases));
	a->alias_members = osp_pcalloc(a->pool, a->naliases + 1,
	    sizeof(*a->alias_members));
	an = osp_conf_node_get(c->root, "aliases", NULL);
	for (i = 0; i < y->aliases.n; i++) {
		const struct osp_conf_map_item *it =
		    &OSP_CONF_ITEM(&y->aliases, struct osp_conf_map_item, i);
		const struct yalias *ya = it->value;
		struct osp_alias_conf *al = &a->aliases[i];
		const struct osp_conf_node *mn;
		const char **members;
		const struct osp_conf_node *k;
		struct member *mv;

		k = an->keys[i];
		path = osp_conf_path_join(c->tmp, "aliases", it->name);
		mn = osp_conf_node_get(an->items[i], "members", NULL);
		al->post_allowed_by = ya->post_allowed_by == 1 ?
		    OSP_ALIAS_POST_ANYONE : OSP_ALIAS_POST_MEMBERS;
		al->list_members = ya->list_members;
		members = osp_pcalloc(a->pool, ya->members.n + 1,
		    sizeof(*members));
		mv = osp_pcalloc(a->pool, ya->members.n + 1, sizeof(*mv));
		al->members = members;
		a->alias_members[i] = mv;
		key = conf_address(c, it->name, NULL, &k->mark, path, &d);
		if (key == NULL) {
			if (strchr(it->name, '@') == NULL)
				osp_conf_errs_add(c->errs, &k->mark, path,
				    "alias must be a full address");
			al->address = osp_pstrdup(a->pool, it->name);
			continue;
		}
		al->address = key;
		index_push(c, key, ENT_ALIAS, 0, i, &k->mark, path);
		for (j = n = 0; j < ya->members.n; j++) {
			const char *mt = OSP_CONF_ITEM(&ya->members,
			    const char *, j);
			const struct osp_conf_mark *mm = mn != NULL &&
			    mn->type == OSP_CONF_NODE_SEQ && j < mn->n ?
			    &mn->items[j]->mark : &k->mark;
			const char *mpath = osp_psprintf(c->tmp,
			    "%s.members[%zu]", path, j);
			const struct loadent *le;

			if (strchr(mt, '@') == NULL) {
				osp_conf_errs_add(c->errs, mm, mpath,
				    "member must be a full address");
				continue;
			}
			if ((mkey = conf_address(c, mt, NULL, mm, mpath,
			    &d)) == NULL)
				continue;
			if ((le = index_find_dest(c, mkey)) == NULL) {
				osp_conf_errs_add(c->errs, mm, mpath,
				    "%s is not an account's destination", mkey);
				continue;
			}
			members[n] = mkey;
			mv[n].acc = le->e.acc;
			mv[n].dest = le->e.idx;
			n++;
		}
		al->nmembers = n;
	}
}

/* Checks that account references name configured accounts. */
static void
check_account_ref(struct loadctx *c, const char *name, const char *k1,
    const char *k2, const char *k3)
{
	size_t i;

	if (name == NULL)
		return;
	for (i = 0; i < c->a->naccounts; i++)
		if (strcmp(c->a->accounts[i].name, name) == 0)
			return;
	osp_conf_errs_add(c->errs, node_mark(c->root, k1, k2, k3, false),
	    k2 != NULL ? osp_psprintf(c->tmp, "%s.%s.%s", k1, k2, k3) : k1,
	    "no account named \"%s\"", name);
}

/* Sorts accounts by name and rewrites index and alias member account
 * positions to match. */
static void
sort_accounts(struct osp_accounts *a)
{
	struct osp_account_conf *sorted;
	size_t *newpos, i, j;

	if (a->naccounts == 0)
		return;
	sorted = osp_pcalloc(a->pool, a->naccounts + 1, sizeof(*sorted));
	memcpy(sorted, a->accounts, a->naccounts * sizeof(*sorted));
	qsort(sorted, a->naccounts, sizeof(*sorted), account_cmp);
	/* Names are unique (the YAML parser refuses duplicate keys). */
	newpos = osp_calloc(a->naccounts, sizeof(*newpos));
	for (i = 0; i < a->naccounts; i++)
		newpos[i] = (size_t)((const struct osp_account_conf *)bsearch(
		    &a->accounts[i], sorted, a->naccounts, sizeof(*sorted),
		    account_cmp) - sorted);
	for (i = 0; i < a->nindex; i++)
		if (a->index[i].kind == ENT_DEST)
			a->index[i].acc = newpos[a->index[i].acc];
	for (i = 0; i < a->naliases; i++)
		for (j = 0; j < a->aliases[i].nmembers; j++)
			a->alias_members[i][j].acc =
			    newpos[a->alias_members[i][j].acc];
	osp_free(newpos);
	a->accounts = sorted;
}

static int
build(const char *name, const char *text, size_t len, struct osp_accounts **r,
    struct osp_conf_errs *errs)
{
	struct osp_conf_fill f = { .errs = errs };
	struct loadctx c = { .errs = errs };
	struct osp_conf_node *root;
	struct osp_accounts *a;
	struct yfile y;
	unsigned before = errs->n;
	size_t i;

	*r = NULL;
	c.tmp = f.pool = osp_pool_new(NULL);
	name = osp_pstrdup(c.tmp, name);
	root = osp_conf_yaml_parse(c.tmp, name, text, len, errs);
	if (root == NULL) {
		osp_pool_free(c.tmp);
		return OSP_ECONFIG;
	}
	if (root->type == OSP_CONF_NODE_SCALAR && root->null) {
		root->type = OSP_CONF_NODE_MAP;
		root->mark.line = root->mark.col = 1;
	}
	memset(&y, 0, sizeof(y));
	osp_conf_fill_struct(&f, yfile_defs, root, &y, "", &root->mark);
	if (errs->n > before) {
		osp_pool_free(c.tmp);
		return OSP_ECONFIG;
	}
	a = osp_accounts_new_empty();
	c.a = a;
	c.root = root;
	load_domains(&c, &y);
	load_accounts(&c, &y);
	index_check(&c);
	load_aliases(&c, &y);
	a->postmaster_account = pdup(a, y.postmaster_account);
	check_account_ref(&c, y.postmaster_account, "postmaster-account",
	    NULL, NULL);
	for (i = 0; i < y.domains.n; i++) {
		const struct osp_conf_map_item *it =
		    &OSP_CONF_ITEM(&y.domains, struct osp_conf_map_item, i);
		const struct ydomain *yd = it->value;

		check_account_ref(&c, yd->catchall_account, "domains",
		    it->name, "catchall-account");
		check_account_ref(&c, yd->postmaster_account, "domains",
		    it->name, "postmaster-account");
	}
	index_check(&c);
	a->index = osp_pcalloc(a->pool, c.nents + 1, sizeof(*a->index));
	for (i = 0; i < c.nents; i++)
		a->index[i] = c.ents[i].e;
	a->nindex = c.nents;
	osp_free(c.ents);
	sort_accounts(a);
	osp_pool_free(c.tmp);
	if (errs->n > before) {
		osp_accounts_unref(a);
		return OSP_ECONFIG;
	}
	*r = a;
	return OSP_OK;
}

int
osp_accounts_load_string(const char *name, const char *text,
    struct osp_accounts **r, struct osp_conf_errs *errs)
{
	return build(name, text, strlen(text), r, errs);
}

int
osp_accounts_load(const char *path, struct osp_accounts **r,
    struct osp_conf_errs *errs)
{
	struct osp_conf_mark m = { path, 0, 0 };
	char *text;
	size_t len;
	int rc;

	*r = NULL;
	if ((rc = osp_conf_read_file(path, &text, &len)) != OSP_OK) {
		osp_conf_errs_add(errs, &m, NULL, "cannot read: %s",
		    osp_strerror(rc));
		return rc;
	}
	rc = build(path, text, len, r, errs);
	osp_free(text);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Current snapshot and reload on change                                 */

static struct osp_accounts *current;

struct osp_accounts *
osp_accounts_current(void)
{
	return current;
}

void
osp_accounts_set_current(struct osp_accounts *a)
{
	struct osp_accounts *old = current;

	current = a;
	osp_accounts_unref(old);
}

#define WATCH_INTERVAL_MS	2000

static struct {
	char		*path;
	struct osp_timer *timer;
	bool		 have_stat;
	struct stat	 st;
} watch;

static bool
stat_changed(const struct stat *a, const struct stat *b)
{
	return a->st_ino != b->st_ino || a->st_dev != b->st_dev ||
	    a->st_size != b->st_size ||
	    a->st_mtim.tv_sec != b->st_mtim.tv_sec ||
	    a->st_mtim.tv_nsec != b->st_mtim.tv_nsec ||
	    a->st_ctim.tv_sec != b->st_ctim.tv_sec ||
	    a->st_ctim.tv_nsec != b->st_ctim.tv_nsec;
}

/* Logs errors one line each: "accounts reload-failed error=...". */
static void
log_errs(const struct osp_conf_errs *errs)
{
	const char *p = errs->text.data, *nl;

	while (p != NULL && *p != '\0') {
		nl = strchr(p, '\n');
		osp_log_err("accounts", "%.*s",
		    (int)(nl != NULL ? nl - p : (ptrdiff_t)strlen(p)), p);
		p = nl != NULL ? nl + 1 : NULL;
	}
}

int
osp_accounts_reload(void)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_accounts *a;
	struct stat st;
	int rc;

	if (watch.path == NULL)
		return -EINVAL;
	/* The stat is taken before reading: a change racing with the read
	 * is seen again at the next poll. */
	if (stat(watch.path, &st) == 0) {
		watch.st = st;
		watch.have_stat = true;
	} else if (errno == ENOENT && current == NULL) {
		/* No file yet (fresh install): no local domains, and the
		 * watch picks the file up once `osprey config domain add`
		 * or the admin writes it. A file removed later is an error
		 * that keeps the previous snapshot. */
		watch.have_stat = false;
		osp_accounts_set_current(osp_accounts_new_empty());
		osp_log_warn("accounts", "no-file file=%s: no local domains "
		    "(osprey config domain add ...)", watch.path);
		return OSP_OK;
	} else
		watch.have_stat = false;
	rc = osp_accounts_load(watch.path, &a, &errs);
	if (rc == OSP_OK) {
		osp_accounts_set_current(a);
		osp_log_info("accounts", "loaded file=%s accounts=%zu "
		    "domains=%zu", watch.path, a->naccounts, a->ndomains);
	} else {
		log_errs(&errs);
		osp_log_err("accounts", "reload-failed file=%s errors=%u "
		    "keeping=%s", watch.path, errs.n,
		    current != NULL ? "previous" : "none");
	}
	osp_conf_errs_deinit(&errs);
	return rc;
}

static void
watch_tick(void *arg)
{
	struct stat st;
	bool exists;

	(void)arg;
	exists = stat(watch.path, &st) == 0;
	if (exists != watch.have_stat || (exists &&
	    stat_changed(&st, &watch.st)))
		(void)osp_accounts_reload();
	osp_timer_add(watch.timer, WATCH_INTERVAL_MS);
}

int
osp_accounts_watch_start(const char *path)
{
	osp_accounts_watch_stop();
	watch.path = osp_strdup(path);
	watch.timer = osp_timer_new(watch_tick, NULL);
	osp_timer_add(watch.timer, WATCH_INTERVAL_MS);
	return osp_accounts_reload();
}

void
osp_accounts_watch_stop(void)
{
	if (watch.timer != NULL)
		osp_timer_free(watch.timer);
	osp_free(watch.path);
	memset(&watch, 0, sizeof(watch));
}
