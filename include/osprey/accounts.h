/* SPDX-License-Identifier: ISC */
/* Domains, accounts, addresses and aliases of domains.yaml: an immutable,
 * reference-counted snapshot, swapped as a whole on reload. */
#ifndef OSPREY_ACCOUNTS_H
#define OSPREY_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct osp_pool;
struct osp_conf_errs;

/*
 * domains.yaml lives beside the main configuration file. Shape:
 *
 *   domains:
 *     example.com:
 *       description: Main domain
 *       localpart-catchall-separator: "+"   # user+tag@ -> user@
 *       localpart-case-sensitive: false     # default
 *       catchall-account: alice              # anything else@example.com
 *       postmaster-account: alice            # postmaster@example.com
 *   postmaster-account: alice               # for domains without one
 *   accounts:
 *     alice:
 *       domain: example.com                  # for localpart-only keys
 *       full-name: Alice Example
 *       destinations:
 *         alice: {}                          # alice@example.com -> Inbox
 *         info@example.com: {mailbox: Info}
 *       quota: 1G                            # 0: none
 *       max-outgoing-per-day: 1000
 *       max-first-time-recipients-per-day: 200
 *   aliases:
 *     team@example.com:
 *       members: [alice@example.com, bob@example.com]
 *       post-allowed-by: members            # or anyone
 *       list-members: false
 *
 * Domains are accepted as U-labels or A-labels and kept in one canonical
 * form: the lower-case A-label (IDNA2008 via libidn2), so "Bücher.example"
 * and "xn--bcher-kva.example" are the same domain. Localparts compare
 * ASCII-case-insensitively unless the domain says otherwise (non-ASCII
 * localparts compare as bytes).
 *
 * Threads: a snapshot is immutable, so any thread holding a reference may
 * read it. Lookups accept a NULL snapshot (nothing loaded yet) as one
 * without domains. osp_accounts_current(), _set_current() and the watcher are for
 * the main thread only.
 */
struct osp_accounts;

struct osp_domain_conf {
	const char	*name;		/* canonical: lower-case A-label */
	const char	*unicode;	/* U-label form, for display */
	const char	*description;	/* may be NULL */
	const char	*separator;	/* localpart catch-all separator or
					 * NULL */
	bool		 case_sensitive;
	const char	*catchall_account;	/* NULL: none */
	const char	*postmaster_account;	/* NULL: the global one */
};

struct osp_dest_conf {
	const char	*address;	/* canonical localpart@domain */
	const char	*mailbox;	/* default "Inbox" */
	const char	*full_name;	/* NULL: the account's */
};

struct osp_account_conf {
	const char		*name;
	const char		*domain;	/* canonical */
	const char		*description;
	const char		*full_name;
	const struct osp_dest_conf *dests;	/* in file order */
	size_t			 ndests;
	uint64_t		 quota;		/* bytes, 0: none */
	int64_t			 max_outgoing_per_day;
	int64_t			 max_first_time_recipients_per_day;
};

enum osp_alias_post { OSP_ALIAS_POST_MEMBERS = 0, OSP_ALIAS_POST_ANYONE };

struct osp_alias_conf {
	const char		*address;	/* canonical */
	const char *const	*members;	/* canonical local addresses */
	size_t			 nmembers;
	enum osp_alias_post	 post_allowed_by;
	bool			 list_members;
};

/* One delivery target of an address. */
struct osp_rcpt {
	const char	*account;	/* account name (store name) */
	const char	*mailbox;	/* the destination's, or "Inbox" */
	const char	*address;	/* the destination that matched, or the
					 * original address for catch-alls */
};

/* Reads and validates `path`. On success *r is a new snapshot (refs = 1).
 * Errors are added to errs as "file:line:col: key: message" and the
 * return is OSP_ECONFIG (-errno when the file cannot be read; a missing
 * file is -ENOENT with an error line too). BLOCKING (file I/O). */
int	osp_accounts_load(const char *path, struct osp_accounts **r,
	    struct osp_conf_errs *errs);
/* The same from text already in memory; `name` names it in errors. */
int	osp_accounts_load_string(const char *name, const char *text,
	    struct osp_accounts **r, struct osp_conf_errs *errs);
/* An empty snapshot (no domains), refs = 1. */
struct osp_accounts *osp_accounts_new_empty(void);
/* Reference counting (atomic: any thread). unref(NULL) is a no-op. */
struct osp_accounts *osp_accounts_ref(struct osp_accounts *a);
void	osp_accounts_unref(struct osp_accounts *a);

/* "<directory of config_file>/domains.yaml", from pool. */
const char *osp_accounts_path(struct osp_pool *pool, const char *config_file);

/* The server's current snapshot (borrowed; take a reference to keep it
 * across a reload), or NULL before the first load. Main thread. */
struct osp_accounts *osp_accounts_current(void);
/* Makes a the current snapshot (takes over the caller's reference; NULL
 * clears) and releases the previous one. Main thread. */
void	osp_accounts_set_current(struct osp_accounts *a);

/*
 * Reloads on change: every 2 seconds the file's mtime, size, inode and
 * ctime are compared with the last load; on a change (or when
 * osp_accounts_reload() is called, e.g. on SIGHUP) the file is parsed and,
 * when valid, becomes current. On errors the old snapshot stays and each
 * error line is logged (category "accounts"). watch_start loads the file
 * once synchronously and returns that result (the timer runs either way).
 * Needs the event loop (osp_event_init). Main thread.
 */
int	osp_accounts_watch_start(const char *path);
void	osp_accounts_watch_stop(void);
int	osp_accounts_reload(void);

/* Canonical forms. Domain: lower-case A-label, validated as a host name;
 * -EINVAL otherwise. Address: "localpart@domain" with the domain
 * canonical; the localpart is not case-folded here (that depends on the
 * domain's settings). Strings from pool; *error_r static. */
int	osp_accounts_canon_domain(struct osp_pool *pool, const char *domain,
	    const char **canon_r, const char **error_r);
int	osp_accounts_canon_address(struct osp_pool *pool, const char *address,
	    const char **canon_r, const char **error_r);

/* Whether the domain (any form) is configured. */
bool	osp_accounts_is_local_domain(const struct osp_accounts *a,
	    const char *domain);
const struct osp_domain_conf *osp_accounts_domain(const struct osp_accounts *a,
	    const char *domain);
/* An account by name, or NULL. Valid while the snapshot is. */
const struct osp_account_conf *osp_accounts_account(
	    const struct osp_accounts *a, const char *name);
/* Every account, sorted by name. */
const struct osp_account_conf *osp_accounts_list(const struct osp_accounts *a,
	    size_t *n_r);
const struct osp_domain_conf *osp_accounts_domains(
	    const struct osp_accounts *a, size_t *n_r);
const struct osp_alias_conf *osp_accounts_aliases(const struct osp_accounts *a,
	    size_t *n_r);

/*
 * Where mail for `address` goes, in this order:
 *   1. an exact destination address or alias;
 *   2. with the domain's localpart separator, the part before it
 *      (user+tag@ -> user@), as an exact destination or alias;
 *   3. postmaster@ (any case, RFC 5321 §4.5.1) of any local domain: the
 *      domain's postmaster-account, else the global one;
 *   4. the domain's catchall-account.
 * Aliases expand to their members' destinations, duplicates removed.
 * OSP_OK with *rcpts_r (from pool) and *n_r >= 1; -ENOENT for an unknown
 * address of a local domain; OSP_DECLINED when the domain is not local;
 * -EINVAL for a malformed address. *error_r static text (may be NULL).
 */
int	osp_accounts_resolve(const struct osp_accounts *a, const char *address,
	    struct osp_pool *pool, struct osp_rcpt **rcpts_r, size_t *n_r,
	    const char **error_r);

/* The account that logs in as `username`: an account name, or one of the
 * account's exact destination addresses (no separator, catch-all or
 * alias). OSP_OK with *account_r (borrowed from the snapshot) or
 * -ENOENT. Check credentials with auth.h under that account name. */
int	osp_accounts_login_account(const struct osp_accounts *a,
	    const char *username, const char **account_r);

/* The account's destination addresses (canonical, file order), for
 * "may this account use this From". NULL with *n_r = 0 when unknown. */
const struct osp_dest_conf *osp_accounts_addresses_of(
	    const struct osp_accounts *a, const char *account, size_t *n_r);
/* Whether `account` may send as `address`: the address, or the part
 * before the domain's localpart separator, is one of its destinations. */
bool	osp_accounts_may_send_as(const struct osp_accounts *a,
	    const char *account, const char *address);

#endif
