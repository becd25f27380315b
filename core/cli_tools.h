/* SPDX-License-Identifier: ISC */
/* Helpers shared by the data tools: import/export (cli_import.c), backup
 * and verifydata (cli_backup.c), gentestdata (cli_tools.c). */
#ifndef OSPREY_CLI_TOOLS_H
#define OSPREY_CLI_TOOLS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cli.h"

/* The data dir of cli's configuration file (core section only, modules
 * are not loaded): malloc'd, or NULL after printing the errors. */
char	*cli_tools_data_dir(struct osp_cli *cli);
/* mkdir -p; OSP_OK or -errno. */
int	 cli_tools_mkdirs(const char *path, mode_t mode);
/* Whether path is missing or an empty directory. */
bool	 cli_tools_dir_unused(const char *path);
/* A message file of an account: "<accdir>/msg/<id / 8192>/<id>", as the
 * store lays them out (store.h); malloc'd. */
char	*cli_tools_msg_path(const char *accdir, int64_t id);
/* A mailbox name usable as a relative path: no empty, "." or ".."
 * component. */
bool	 cli_tools_safe_name(const char *name);
/* Whether kw may be an IMAP keyword (RFC 9051 §9 flag-keyword: atom). */
bool	 cli_tools_keyword_valid(const char *kw);

#define CLI_TOOLS_FILES_PER_DIR	8192

#endif
