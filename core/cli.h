/* SPDX-License-Identifier: ISC */
/* Subcommands of the osprey binary (cli_*.c, serve.c). */
#ifndef OSPREY_CLI_H
#define OSPREY_CLI_H

#include <stdbool.h>
#include <stdio.h>

struct osp_cli {
	const char	*config_file;
};

/* argv[0] is the command name; returns the process exit code (0 ok,
 * 1 failure, 2 usage). */
typedef int osp_cli_fn(struct osp_cli *cli, int argc, char **argv);

struct osp_cli_cmd {
	const char	*name;
	osp_cli_fn	*fn;
	const char	*usage;
	const char	*help;
};

/* The whole command line: global options, then the subcommand. Returns
 * the exit code. */
int	osp_cli_main(int argc, char **argv);
void	osp_cli_usage(FILE *out);
/* Prints one command's usage to stderr; returns 2. */
int	osp_cli_cmd_usage(const char *name);

int	osp_cli_serve(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_localserve(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_config(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_dns_cmd(struct osp_cli *cli, int argc, char **argv);
/* `config account|address|domain ...` (argv[0] is "account", ...). */
int	osp_cli_config_accounts(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_setaccountpassword(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_import(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_export(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_backup(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_verifydata(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_cid(struct osp_cli *cli, int argc, char **argv);
int	osp_cli_gentestdata(struct osp_cli *cli, int argc, char **argv);

/* Loads a configuration and its modules, filled and checked, without
 * side effects beyond dlopen. Prints every error to stderr. Returns the
 * generation or NULL. */
struct osp_config *osp_cli_load_config(const char *file);

/* Runs the server with a configuration file (serve and localserve).
 * as_invoker: keep the invoking user's privileges (localserve). */
int	osp_serve_run(const char *config_file, bool as_invoker);

#endif
