/* SPDX-License-Identifier: ISC */
/* Internal interfaces between the core's subsystems (not installed). */
#ifndef OSPREY_CORE_H
#define OSPREY_CORE_H

#include "config.h"

#include <stdbool.h>
#include <stdio.h>

#include <osprey/osprey.h>

/* ------------------------------------------------------------------ */
/* Config (conf.c, conf_schema.c, conf_core.c)                          */

/* Collected errors, one line each: "file:line:col: key: message" ("file:
 * key: message" when the mark has no line, no file part when m is NULL,
 * no key part when key is NULL or ""). */
struct osp_conf_errs {
	unsigned	n;
	struct osp_buf	text;	/* lines joined with '\n' */
};
void	osp_conf_errs_add(struct osp_conf_errs *e,
	    const struct osp_conf_mark *m, const char *key, const char *fmt,
	    ...) __attribute__((format(printf, 4, 5)));
void	osp_conf_errs_deinit(struct osp_conf_errs *e);

enum osp_log_target { OSP_LOGT_STDERR = 0, OSP_LOGT_FILE, OSP_LOGT_SYSLOG };
enum osp_tls_minver { OSP_TLS_1_2 = 0, OSP_TLS_1_3 };

struct osp_core_cert {
	const char	*cert;		/* PEM chain */
	const char	*key;		/* PEM key */
};

/* One entry of `listeners:`. */
struct osp_core_listener {
	const char		*name;
	const char		*protocol;	/* module name */
	struct osp_conf_list	 address;	/* struct osp_conf_addr */
	int64_t			 port;
	int			 tls;		/* enum osp_listener_tls */
	/* filled by osp_config_fill_modules(): the protocol module's
	 * listener_conf struct, or NULL */
	void			*module_conf;
	struct osp_conf_mark	 mark;		/* where the entry starts */
};

/* The core section of osprey.yaml (schema in conf_core.c). */
struct osp_core_conf {
	const char		*hostname;	/* default: gethostname() */
	const char		*data_dir;	/* path */
	const char		*user;		/* privilege drop, "osprey" */
	const char		*group;		/* default: user's group */
	const char		*module_path;	/* default: compiled moduledir;
						 * OSPREY_MODULE_PATH overrides */
	struct osp_conf_list	 modules;	/* const char *, across includes */
	struct osp_conf_list	 include;	/* glob patterns, const char * */
	uint64_t		 shutdown_timeout; /* drain deadline, ms */
	int64_t			 workers;	/* worker threads */
	struct {
		int			 level;	/* enum osp_log_level */
		int			 target;/* enum osp_log_target */
		const char		*file;
		struct osp_conf_list	 debug;	/* categories or "all" */
	} log;
	struct {
		/* osp_conf_addr; port 53 filled in when not given */
		struct osp_conf_list	 forwarders;
		struct osp_conf_list	 trust_anchors;	/* const char * (DS/DNSKEY) */
		bool			 root_anchor;	/* use the root key */
		const char		*root_anchor_file;
		struct osp_conf_list	 unbound_options; /* "name: value" */
		uint64_t		 timeout;	/* per query, ms */
	} dns;
	struct {
		struct osp_conf_list	 certificates;	/* osp_core_cert */
		int			 min_version;	/* enum osp_tls_minver */
	} tls;
	struct osp_conf_list	 listeners;	/* struct osp_core_listener */
	/* limit.h: int64_t items, one per IP class {/32 /26 /21 | /64 /48
	 * /32}, 0 = none; exactly 3 each (osp_limit_conf_check) */
	struct {
		struct osp_conf_list	 connection_rate;	/* per minute */
		struct osp_conf_list	 connections;		/* open */
		struct osp_conf_list	 auth_failures_per_minute;
		struct osp_conf_list	 auth_failures_per_day;
	} limits;
};

/* A generation (opaque to modules, see conf.h). */
struct osp_config {
	int			 refs;
	struct osp_pool		*pool;
	const char		*file;		/* main config file */
	const char		*dir;		/* its directory */
	struct osp_core_conf	 core;
	struct osp_tls_server	*tls;		/* built by the core, or NULL */
	void			*doc;		/* parsed node tree (conf.c) */
	void			**module_conf;	/* by module index */
	size_t			 nmodule_conf;	/* entries of module_conf */
	void			*marks;		/* field -> mark (conf.c) */
};

/* Where the value at `field` (any address inside gen's core or module
 * structs, list items included) was set: the key's mark, or the enclosing
 * section's when defaulted. NULL when unknown. The key path (e.g.
 * "listeners[1].port", 0-based) in *path_r when path_r is not NULL.
 * Valid while gen is. */
const struct osp_conf_mark *osp_config_mark(const struct osp_config *gen,
	    const void *field, const char **path_r);

/* Parses `file` and its includes and fills the core section. Returns the
 * generation (refs = 1) even when errors were added, or NULL when nothing
 * could be read (errors added). */
struct osp_config *osp_config_parse(const char *file,
	    struct osp_conf_errs *errs);
/* Fills every loaded module's section and listener extras, reports unknown
 * top-level keys and listeners naming unknown protocols, then runs each
 * module's check(). Returns OSP_OK or OSP_ECONFIG (errors added). */
int	osp_config_fill_modules(struct osp_config *gen,
	    struct osp_conf_errs *errs);
/* Whether the section `name` is the same text in both generations. */
bool	osp_config_section_equal(const struct osp_config *a,
	    const struct osp_config *b, const char *name);
/* Makes gen current (takes over the caller's reference). */
void	osp_config_set_current(struct osp_config *gen);
/* Prints every option of the core and of the loaded modules as commented
 * YAML with defaults. */
void	osp_config_describe(FILE *out);
/* Fills `out` (conf_size bytes, zeroed) from defaults only; for tests and
 * describe. */
int	osp_conf_apply_defaults(const struct osp_conf_def *defs, void *out,
	    struct osp_pool *pool, struct osp_conf_errs *errs);
/* Parses one YAML text (not a file) against a schema: for unit tests and
 * for the embedded localserve config. `name` stands in for the file. */
int	osp_conf_parse_string(const char *name, const char *yaml,
	    const struct osp_conf_def *defs, void *out, struct osp_pool *pool,
	    struct osp_conf_errs *errs);
extern const struct osp_conf_def osp_core_conf_defs[];

/* ------------------------------------------------------------------ */
/* Modules (module.c)                                                  */

struct osp_module_ctx {
	const struct osp_module	*mod;
	void			*dl;		/* dlopen handle, NULL if built in */
	unsigned		 index;		/* in osp_modules[] */
	void			*data;
	struct osp_pool		*pool;
	bool			 inited, started;
	/* set around check() so osp_module_conf_error() can report */
	struct osp_config	*check_gen;
	struct osp_conf_errs	*check_errs;
};

extern struct osp_module_ctx	**osp_modules;	/* dependency order */
extern size_t			  osp_nmodules;

/* dlopens the modules named in gen->core.modules from the module path,
 * checks ABI, name, duplicates, depends and cycles, and orders them.
 * Errors name the module and the file:line where it is listed. */
int	osp_modules_load(struct osp_config *gen, struct osp_conf_errs *errs);
/* init() in order; a failure drops what that module registered, finis
 * the ones before in reverse order, then unloads every module
 * (osp_nmodules becomes 0) and returns an error naming the module in
 * *error_r ("module smtp: init failed: ..."; static text). */
int	osp_modules_init(const char **error_r);
/* start() in order; a failure stop()s the ones started before. */
int	osp_modules_start(const char **error_r);
/* reload() for a new generation that osp_config_fill_modules() filled and
 * checked: modules whose section changed adopt it (a module without
 * reload() is logged as needing a restart). OSP_OK when all adopted. */
int	osp_modules_reload(struct osp_config *newgen);
void	osp_modules_stop(void);
/* fini() in reverse order, unregisters, dlcloses. */
void	osp_modules_unload(void);
struct osp_module_ctx *osp_module_find(const char *name);
/* Registration calls (listeners, transports, SASL, HTTP routes, hooks)
 * are valid only inside the init() of `ctx`: OSP_OK, or -EPERM after
 * logging which module tried to register `what` outside it. */
int	osp_module_may_register(const struct osp_module_ctx *ctx,
	    const char *what);
/* Opens (ctx) or closes (NULL) the registration window: the loader does it
 * around each init(); core built-ins (SASL mechanisms, the direct
 * transport) and tests use it with a ctx of their own. */
void	osp_module_set_registering(struct osp_module_ctx *ctx);

/* Registries (registry.c): forget everything a module registered. */
void	osp_registry_remove_module(const struct osp_module_ctx *ctx);

/* ------------------------------------------------------------------ */
/* Event loop, workers, signals (event.c, worker.c)                     */

int	osp_event_init(unsigned workers);
/* Runs until osp_event_exit(). */
int	osp_event_run(void);
void	osp_event_exit(void);
void	osp_event_deinit(void);
typedef void osp_signal_fn(int sig, void *arg);
void	osp_event_signal(int sig, osp_signal_fn *fn, void *arg);

/* ------------------------------------------------------------------ */
/* TLS and listeners (tls.c, listener.c)                                */

int	osp_tls_global_init(void);
void	osp_tls_global_deinit(void);
/* Builds gen->tls from gen->core.tls; errors added with file:line. */
int	osp_tls_config_load(struct osp_config *gen, struct osp_conf_errs *errs);

/* Binds every listener of gen (as root, before privilege drop); checks a
 * protocol handler is registered for each. */
int	osp_listeners_bind(struct osp_config *gen, const char **error_r);
/* Starts / stops accepting. Stop closes the listening sockets. */
void	osp_listeners_start(void);
void	osp_listeners_stop(void);
/* Forgets the accept handler a module registered (registry.c, after
 * fini). */
void	osp_listener_remove_module(const struct osp_module_ctx *ctx);
/* Open connections accepted by listeners (for drain at shutdown). */
size_t	osp_listeners_active(void);
/* Closes every accepted connection still open (drain deadline). */
void	osp_listeners_close_all(void);

/* ------------------------------------------------------------------ */
/* DNS (dns.c, cli_dns.c)                                              */

/* Creates the resolver on the loop's base (osp_event_init first) from
 * cc->dns; errors (static text) name the offending setting. One resolver
 * at a time: deinit before initialising again. */
int	osp_dns_init(const struct osp_core_conf *cc, const char **error_r);
/* Frees the resolver; outstanding lookups are dropped without callbacks. */
void	osp_dns_deinit(void);
/* Parses a DNS response (RFC 1035 §4.1) for the records of qtype in the
 * answer section, following CNAMEs from the question name. Hostile or
 * truncated input returns OSP_EDNS with *error_r (static text). Strings
 * and arrays come from pool; sec is left INSECURE. For dns.c and tests. */
int	osp_dns_parse(struct osp_pool *pool, const unsigned char *pkt,
	    size_t len, uint16_t qtype, struct osp_dns_result *res,
	    const char **error_r);
/* "NOERROR", "NXDOMAIN", ...; NULL when unknown. */
const char *osp_dns_rcode_name(int rcode);
/* `osprey dns lookup TYPE NAME`: exit code. */
int	osp_cli_dns(int argc, char **argv, struct osp_config *gen);

/* ------------------------------------------------------------------ */
/* Logging (log.c)                                                      */

int	osp_log_configure(const struct osp_core_conf *cc, const char **error_r);
/* Tests and CLI: minimum level to stderr. */
void	osp_log_set_level(enum osp_log_level level);

/* ------------------------------------------------------------------ */
/* Store (store.c)                                                      */

/* Makes store the one osp_store_current() returns (NULL: none). Main
 * thread, at startup and shutdown. */
struct osp_store;
void	osp_store_set_current(struct osp_store *store);
/* Group commit statistics since start (for bench/store): batches committed
 * by osp_store_deliver() and the messages in them. Main thread. */
void	osp_store_stats(uint64_t *batches_r, uint64_t *messages_r);

/* ------------------------------------------------------------------ */
/* Credentials, sending history, session ids (auth.c, sendlog.c, cid.c) */

/* Opens <data_dir>/<name> (created mode 0600) read-write for use from
 * any thread: WAL, synchronous=FULL, 10 s busy timeout, then `pragmas`
 * (may be NULL). Errors are logged; *error_r is static. BLOCKING. */
struct sqlite3;
int	osp_sqlite_open_private(const char *data_dir, const char *name,
	    const char *pragmas, struct sqlite3 **db_r, const char **error_r);
/* Make the handle osp_auth_current()/osp_sendlog_current() return (NULL:
 * none). Main thread, at startup and shutdown. */
void	osp_auth_set_current(struct osp_auth *auth);
void	osp_sendlog_set_current(struct osp_sendlog *log);
/* Loads <data_dir>/cid.key, creating it (mode 0600) when create is true
 * and it does not exist. */
int	osp_cid_init(const char *data_dir, bool create, const char **error_r);

/* ------------------------------------------------------------------ */
/* SASL (sasl.c, sasl_mechs.c, sasl_scram.c)                           */

/* Registers the built-in mechanisms under the core's own module context
 * (named "core"). Before modules init. */
int	osp_sasl_builtin_init(void);

/* ------------------------------------------------------------------ */
/* Limits and metrics (limit.c, metrics.c)                              */

/* Applies the limits of a config generation (startup and reload); keeps
 * the counters. Main thread. */
void	osp_limit_configure(const struct osp_core_conf *cc);
/* Forgets all state (tests, shutdown). */
void	osp_limit_reset(void);
/* Checks gen's `limits:` section (three numbers per limit) and adds
 * errors with file:line:col. Called from core_post() (conf.c). */
void	osp_limit_conf_check(const struct osp_config *gen,
	    struct osp_conf_errs *errs);
/* Tests: the millisecond clock the limiter reads (NULL: osp_now_ms). */
typedef uint64_t osp_limit_clock_fn(void);
void	osp_limit_set_clock(osp_limit_clock_fn *fn);
/* Tests: entries held for IP class 0..2 (both families). */
size_t	osp_limit_entries(int cls);
/* Frees every metric family (exit, tests). */
void	osp_metrics_free_all(void);

/* ------------------------------------------------------------------ */
/* Privileges (privdrop.c)                                              */

/* Drops to user/group when running as root; verifies root cannot be
 * regained. No-op (OSP_OK) when not root. */
int	osp_privdrop(const char *user, const char *group, const char **error_r);

#endif
