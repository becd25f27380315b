/* SPDX-License-Identifier: ISC */
/* The osprey command line: global options and the subcommand table (in
 * the core library, so test binaries link every core object). */
#include "core.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int	cmd_help(struct osp_cli *cli, int argc, char **argv);
static int	cmd_version(struct osp_cli *cli, int argc, char **argv);

static const struct osp_cli_cmd commands[] = {
	{ "serve", osp_cli_serve, "serve",
	  "Run the mail server with the configuration file." },
	{ "localserve", osp_cli_localserve, "localserve [-dir DIR]",
	  "Run a complete local instance on ports 1000+standard, for testing\n"
	  "clients and development. Creates DIR (default\n"
	  "$XDG_CONFIG_HOME/osprey-localserve) with a config and a self-signed\n"
	  "certificate for localhost on first use." },
	{ "config", osp_cli_config, "config test | describe | "
	  "account|address|domain ...",
	  "test: load the configuration and its modules, print every error\n"
	  "as file:line:col: key: message; exit 1 on errors, 0 when valid.\n"
	  "describe: print every option of the core and of the modules the\n"
	  "configuration loads, as commented YAML with defaults.\n"
	  "account add ACCOUNT ADDRESS | account rm ACCOUNT | account list\n"
	  "account tlscert add ACCOUNT CERT [NAME]|rm ACCOUNT FP|NAME|list\n"
	  "address add ADDRESS ACCOUNT | address rm ADDRESS\n"
	  "domain add DOMAIN ACCOUNT LOCALPART | domain rm DOMAIN\n"
	  "  edit domains.yaml (beside the configuration file)." },
	{ "setaccountpassword", osp_cli_setaccountpassword,
	  "setaccountpassword ACCOUNT",
	  "Set an account's password, read from standard input (at least 8\n"
	  "bytes). Stores a crypt() hash and SCRAM and CRAM-MD5 keys, never the\n"
	  "password itself." },
	{ "import", osp_cli_import, "import mbox|maildir ACCOUNT MAILBOX PATH",
	  "Import messages with their flags and keywords into a mailbox,\n"
	  "in batches, printing progress." },
	{ "export", osp_cli_export, "export mbox|maildir ACCOUNT DESTDIR [MAILBOX]",
	  "Export an account's mailboxes (or one) with flags and keywords." },
	{ "backup", osp_cli_backup, "backup DESTDIR",
	  "Consistent copy of every database and message file of the data\n"
	  "directory, also while the server runs. Never overwrites." },
	{ "verifydata", osp_cli_verifydata, "verifydata DATADIR",
	  "Check a data directory: databases, message files, uids, counts.\n"
	  "Exits non-zero naming each problem." },
	{ "gentestdata", osp_cli_gentestdata, "gentestdata DIR",
	  "Create a data directory with accounts, mailboxes and messages, for\n"
	  "upgrade tests." },
	{ "dns", osp_cli_dns_cmd, "dns lookup TYPE NAME",
	  "Resolve NAME with the built-in DNSSEC-validating resolver and print\n"
	  "the records and their DNSSEC status. TYPE: A AAAA MX TXT TLSA PTR CNAME." },
	{ "cid", osp_cli_cid, "cid ID...",
	  "Decode the id of a Received header into the session id of the log\n"
	  "lines (\"smtp 3f2a9c01d2e4b7a0 ...\") and the time of the session." },
	{ "version", cmd_version, "version", "Print the version." },
	{ "help", cmd_help, "help [COMMAND]", "Describe a command." },
	{ NULL, NULL, NULL, NULL },
};

void
osp_cli_usage(FILE *out)
{
	const struct osp_cli_cmd *c;

	fprintf(out, "usage: osprey [-c FILE] COMMAND [ARGS]\n\ncommands:\n");
	for (c = commands; c->name != NULL; c++)
		fprintf(out, "  osprey %s\n", c->usage);
	fprintf(out, "\n-c FILE  configuration file (default %s/osprey.yaml,"
	    " or $OSPREY_CONFIG)\n", OSP_SYSCONF_DIR);
}

static const struct osp_cli_cmd *
find_cmd(const char *name)
{
	const struct osp_cli_cmd *c;

	for (c = commands; c->name != NULL; c++)
		if (strcmp(c->name, name) == 0)
			return c;
	return NULL;
}

int
osp_cli_cmd_usage(const char *name)
{
	const struct osp_cli_cmd *c = find_cmd(name);

	if (c != NULL)
		fprintf(stderr, "usage: osprey %s\n", c->usage);
	else
		osp_cli_usage(stderr);
	return 2;
}

static int
cmd_help(struct osp_cli *cli, int argc, char **argv)
{
	const struct osp_cli_cmd *c;

	if (argc < 2) {
		osp_cli_usage(stdout);
		return 0;
	}
	if (argc > 2 || (c = find_cmd(argv[1])) == NULL) {
		fprintf(stderr, "osprey: help: unknown command %s\n", argv[1]);
		osp_cli_usage(stderr);
		return 2;
	}
	printf("usage: osprey %s\n\n%s\n", c->usage, c->help);
	return 0;
}

static int
cmd_version(struct osp_cli *cli, int argc, char **argv)
{
	if (argc != 1)
		return osp_cli_cmd_usage("version");
	printf("osprey %s (module ABI %d)\n", PACKAGE_VERSION, OSP_MODULE_ABI);
	return 0;
}

int
osp_cli_main(int argc, char **argv)
{
	struct osp_cli cli = { 0 };
	const struct osp_cli_cmd *c;
	int i;

	cli.config_file = getenv("OSPREY_CONFIG");
	for (i = 1; i < argc && argv[i][0] == '-'; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc)
			cli.config_file = argv[++i];
		else if (strcmp(argv[i], "-h") == 0 ||
		    strcmp(argv[i], "--help") == 0) {
			osp_cli_usage(stdout);
			return 0;
		} else if (strcmp(argv[i], "--version") == 0)
			return cmd_version(&cli, 1, argv);
		else {
			fprintf(stderr, "osprey: unknown option %s\n", argv[i]);
			osp_cli_usage(stderr);
			return 2;
		}
	}
	if (cli.config_file == NULL)
		cli.config_file = OSP_SYSCONF_DIR "/osprey.yaml";
	if (i == argc) {
		osp_cli_usage(stderr);
		return 2;
	}
	if ((c = find_cmd(argv[i])) == NULL) {
		fprintf(stderr, "osprey: unknown command %s\n", argv[i]);
		osp_cli_usage(stderr);
		return 2;
	}
	return c->fn(&cli, argc - i, argv + i);
}
