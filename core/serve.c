/* SPDX-License-Identifier: ISC */
/* `osprey serve`: the startup sequence (DESIGN §4), reload on SIGHUP and
 * draining shutdown on SIGTERM/SIGINT. */
#include "core.h"
#include "cli.h"

#include <errno.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct {
	const char		*config_file;
	bool			 stopping;
	uint64_t		 deadline;	/* osp_now_ms() */
	struct osp_timer	*drain_timer;
} serve;

/* Reload: build a whole new generation; adopt it only if everything in it
 * is valid (nginx). Listener, module-list and DNS changes need a restart:
 * sockets are bound as root and privileges are gone. */
static void
reload(void)
{
	struct osp_config *old = osp_config_current(), *gen;
	struct osp_conf_errs errs = { 0 };
	const char *error;
	size_t i;

	osp_log_info("core", "reload config=%s", serve.config_file);
	gen = osp_config_parse(serve.config_file, &errs);
	if (gen != NULL && errs.n == 0) {
		bool same = gen->core.modules.n == osp_nmodules;

		for (i = 0; same && i < gen->core.modules.n; i++)
			same = osp_module_find(OSP_CONF_ITEM(&gen->core.modules,
			    const char *, i)) != NULL;
		if (!same)
			osp_conf_errs_add(&errs, NULL, "modules",
			    "the list of modules changed: restart needed");
	}
	if (gen != NULL && errs.n == 0)
		osp_config_fill_modules(gen, &errs);
	if (gen != NULL && errs.n == 0)
		osp_tls_config_load(gen, &errs);
	if (errs.n > 0) {
		char *line, *save = NULL;

		for (line = strtok_r(errs.text.data, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			osp_log_err("core", "reload config error: %s", line);
		osp_log_err("core", "reload failed errors=%u: keeping the "
		    "running configuration", errs.n);
		osp_conf_errs_deinit(&errs);
		if (gen != NULL)
			osp_config_unref(gen);
		return;
	}
	osp_conf_errs_deinit(&errs);
	if (!osp_config_section_equal(old, gen, "listeners"))
		osp_log_warn("core", "reload: listener changes need a restart");
	if (!osp_config_section_equal(old, gen, "dns"))
		osp_log_warn("core", "reload: dns changes need a restart");
	if (osp_log_configure(&gen->core, &error) != OSP_OK)
		osp_log_err("core", "reload: %s: keeping log settings", error);
	osp_config_set_current(gen);
	osp_limit_configure(&gen->core);
	if (osp_modules_reload(gen) != OSP_OK)
		osp_log_warn("core", "reload: a module did not adopt the new "
		    "configuration");
	osp_log_info("core", "reload done");
}

static void
drain_check(void *arg)
{
	size_t active = osp_listeners_active();

	if (active == 0) {
		osp_log_info("core", "shutdown complete");
		osp_event_exit();
		return;
	}
	if (osp_now_ms() >= serve.deadline) {
		osp_log_warn("core", "shutdown deadline reached: closing %zu "
		    "connection%s", active, active == 1 ? "" : "s");
		osp_listeners_close_all();
		osp_event_exit();
		return;
	}
	osp_timer_add(serve.drain_timer, 100);
}

static void
on_signal(int sig, void *arg)
{
	const struct osp_config *gen = osp_config_current();

	if (sig == SIGHUP) {
		if (!serve.stopping) {
			reload();
			(void)osp_accounts_reload();
		}
		return;
	}
	if (serve.stopping) {
		/* A second TERM/INT: stop now. */
		osp_listeners_close_all();
		osp_event_exit();
		return;
	}
	serve.stopping = true;
	osp_log_info("core", "shutdown signal=%s drain=%llums", strsignal(sig),
	    (unsigned long long)gen->core.shutdown_timeout);
	osp_listeners_stop();
	osp_modules_stop();
	serve.deadline = osp_now_ms() + gen->core.shutdown_timeout;
	serve.drain_timer = osp_timer_new(drain_check, NULL);
	drain_check(NULL);
}

/* Creates the data directory (mode 0750) and hands it to the run-time user
 * when started as root, before privileges are dropped. */
static int
prepare_data_dir(const struct osp_core_conf *cc, const char **error_r)
{
	static char msg[512];
	struct passwd *pw;

	if (mkdir(cc->data_dir, 0750) == -1 && errno != EEXIST) {
		snprintf(msg, sizeof(msg), "data-dir %s: %s", cc->data_dir,
		    strerror(errno));
		*error_r = msg;
		return -errno;
	}
	if (geteuid() == 0 && cc->user != NULL &&
	    (pw = getpwnam(cc->user)) != NULL &&
	    chown(cc->data_dir, pw->pw_uid, pw->pw_gid) == -1) {
		snprintf(msg, sizeof(msg), "data-dir %s: chown: %s",
		    cc->data_dir, strerror(errno));
		*error_r = msg;
		return -errno;
	}
	return OSP_OK;
}

int
osp_serve_run(const char *config_file, bool as_invoker)
{
	struct osp_store *store = NULL;
	struct osp_auth *auth = NULL;
	struct osp_sendlog *sendlog = NULL;
	struct osp_pool *accounts_pool = NULL;
	struct osp_config *gen;
	const char *error;
	int rc = 1;

	serve.config_file = config_file;
	gen = osp_cli_load_config(config_file);
	if (gen == NULL)
		return 1;
	if (osp_log_configure(&gen->core, &error) != OSP_OK) {
		fprintf(stderr, "osprey: %s\n", error);
		goto out_unload;
	}
	osp_config_set_current(gen);
	if (osp_event_init((unsigned)gen->core.workers) != OSP_OK) {
		osp_log_err("core", "event loop init failed");
		goto out_unload;
	}
	if (osp_dns_init(&gen->core, &error) != OSP_OK) {
		osp_log_err("core", "dns: %s", error);
		goto out_event;
	}
	/* domains.yaml: loaded now (errors stop startup), then watched. */
	accounts_pool = osp_pool_new(NULL);
	if (osp_accounts_watch_start(osp_accounts_path(accounts_pool,
	    config_file)) != OSP_OK) {
		osp_log_err("core", "domains.yaml has errors: not starting");
		goto out_accounts;
	}
	osp_limit_configure(&gen->core);
	/* Built-in SASL mechanisms first, so modules can list them. */
	if (osp_sasl_builtin_init() != OSP_OK) {
		osp_log_err("core", "registering the SASL mechanisms failed");
		goto out_accounts;
	}
	if (osp_modules_init(&error) != OSP_OK) {
		osp_log_err("core", "%s", error);
		goto out_accounts;
	}
	if (osp_listeners_bind(gen, &error) != OSP_OK) {
		osp_log_err("core", "%s", error);
		goto out_modules;
	}
	if (prepare_data_dir(&gen->core, &error) != OSP_OK) {
		osp_log_err("core", "%s", error);
		goto out_listeners;
	}
	/* localserve runs as whoever started it: it is a development tool
	 * bound to loopback on unprivileged ports. */
	if (as_invoker && geteuid() == 0)
		osp_log_warn("core", "localserve running as root: privileges "
		    "are not dropped");
	else if (osp_privdrop(gen->core.user, gen->core.group, &error) !=
	    OSP_OK) {
		osp_log_err("core", "%s", error);
		goto out_listeners;
	}
	/* The store is opened as the run-time user, so every file it
	 * creates belongs to that user. */
	if (osp_store_open(gen->core.data_dir, &store, &error) != OSP_OK) {
		osp_log_err("core", "store %s: %s", gen->core.data_dir, error);
		goto out_listeners;
	}
	osp_store_set_current(store);
	if (osp_auth_open(gen->core.data_dir, &auth, &error) != OSP_OK) {
		osp_log_err("core", "%s/auth.db: %s", gen->core.data_dir, error);
		goto out_listeners;
	}
	osp_auth_set_current(auth);
	if (osp_sendlog_open(gen->core.data_dir, &sendlog, &error) != OSP_OK) {
		osp_log_err("core", "%s/sendlog.db: %s", gen->core.data_dir,
		    error);
		goto out_listeners;
	}
	osp_sendlog_set_current(sendlog);
	if (osp_cid_init(gen->core.data_dir, true, &error) != OSP_OK) {
		osp_log_err("core", "%s/%s", gen->core.data_dir, error);
		goto out_listeners;
	}
	if (osp_modules_start(&error) != OSP_OK) {
		osp_log_err("core", "%s", error);
		goto out_listeners;
	}
	osp_event_signal(SIGTERM, on_signal, NULL);
	osp_event_signal(SIGINT, on_signal, NULL);
	osp_event_signal(SIGHUP, on_signal, NULL);
	osp_listeners_start();
	osp_log_info("core", "ready version=%s pid=%ld modules=%zu "
	    "config=%s", PACKAGE_VERSION, (long)getpid(), osp_nmodules,
	    config_file);
	rc = osp_event_run() == OSP_OK ? 0 : 1;
out_listeners:
	osp_listeners_stop();
	osp_listeners_close_all();
out_modules:
	osp_modules_unload();
	if (store != NULL) {
		osp_store_set_current(NULL);
		osp_store_close(store);
	}
out_accounts:
	osp_accounts_watch_stop();
	osp_accounts_set_current(NULL);
	osp_pool_free(accounts_pool);
	osp_dns_deinit();
out_event:
	if (serve.drain_timer != NULL)
		osp_timer_free(serve.drain_timer);
	osp_event_deinit();
	/* After the workers are drained: SASL steps and sendlog checks in
	 * flight use these handles. */
	osp_auth_set_current(NULL);
	osp_auth_close(auth);
	osp_sendlog_set_current(NULL);
	osp_sendlog_close(sendlog);
	osp_limit_reset();
	osp_metrics_free_all();
	osp_config_set_current(NULL);
	return rc;
out_unload:
	osp_modules_unload();
	osp_config_unref(gen);
	return rc;
}

int
osp_cli_serve(struct osp_cli *cli, int argc, char **argv)
{
	if (argc != 1)
		return osp_cli_cmd_usage("serve");
	return osp_serve_run(cli->config_file, false);
}
