/* SPDX-License-Identifier: ISC */
/* `osprey config test|describe`, `osprey dns ...`: commands that load the
 * configuration without serving. */
#include "core.h"
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct osp_config *
osp_cli_load_config(const char *file)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;

	gen = osp_config_parse(file, &errs);
	/* Modules are loaded even after core errors so that one run reports
	 * every problem; a config that could not be read stops here. */
	if (gen != NULL && osp_modules_load(gen, &errs) == OSP_OK)
		osp_config_fill_modules(gen, &errs);
	if (gen != NULL)
		osp_tls_config_load(gen, &errs);
	if (errs.n > 0) {
		fprintf(stderr, "%s\n", errs.text.data);
		fprintf(stderr, "osprey: %u error%s in configuration\n", errs.n,
		    errs.n == 1 ? "" : "s");
		osp_conf_errs_deinit(&errs);
		if (gen != NULL)
			osp_config_unref(gen);
		osp_modules_unload();
		return NULL;
	}
	osp_conf_errs_deinit(&errs);
	return gen;
}

static int
config_test(struct osp_cli *cli)
{
	struct osp_config *gen = osp_cli_load_config(cli->config_file);

	if (gen == NULL)
		return 1;
	printf("%s: configuration valid (%zu module%s)\n", cli->config_file,
	    osp_nmodules, osp_nmodules == 1 ? "" : "s");
	osp_modules_unload();
	osp_config_unref(gen);
	return 0;
}

static int
config_describe(struct osp_cli *cli)
{
	struct osp_config *gen = NULL;

	/* The modules described are those the configuration loads; without
	 * a readable configuration, only the core is described. */
	if (access(cli->config_file, R_OK) == 0) {
		gen = osp_cli_load_config(cli->config_file);
		if (gen == NULL)
			return 1;
	} else
		fprintf(stderr, "osprey: %s: %s: describing the core only\n",
		    cli->config_file, strerror(errno));
	osp_config_describe(stdout);
	osp_modules_unload();
	if (gen != NULL)
		osp_config_unref(gen);
	return 0;
}

int
osp_cli_config(struct osp_cli *cli, int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "test") == 0)
		return config_test(cli);
	if (argc == 2 && strcmp(argv[1], "describe") == 0)
		return config_describe(cli);
	if (argc >= 2 && (strcmp(argv[1], "account") == 0 ||
	    strcmp(argv[1], "address") == 0 || strcmp(argv[1], "domain") == 0))
		return osp_cli_config_accounts(cli, argc - 1, argv + 1);
	return osp_cli_cmd_usage("config");
}

int
osp_cli_dns_cmd(struct osp_cli *cli, int argc, char **argv)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	int rc;

	if (argc != 4 || strcmp(argv[1], "lookup") != 0)
		return osp_cli_cmd_usage("dns");

	/* Only the core section matters here: modules are not loaded. */
	gen = osp_config_parse(cli->config_file, &errs);
	if (errs.n > 0) {
		fprintf(stderr, "%s\n", errs.text.data);
		osp_conf_errs_deinit(&errs);
		if (gen != NULL)
			osp_config_unref(gen);
		return 1;
	}
	osp_conf_errs_deinit(&errs);
	osp_config_set_current(gen);
	rc = osp_cli_dns(argc - 1, argv + 1, gen);
	osp_config_set_current(NULL);
	return rc;
}
