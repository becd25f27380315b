/* SPDX-License-Identifier: ISC */
/* Test loader for tests/abi/exports.sh: loads the modules a config lists
 * through the real loader (linked like the osprey binary, with
 * -export-dynamic, so modules resolve the core's symbols), fills and checks
 * their sections, runs init and fini, and unloads. Exit 0 when all of it
 * worked. Usage: loadmod CONFIG */
#include "core.h"

#include <stdio.h>

int
main(int argc, char **argv)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_config *gen;
	const char *error;
	size_t i;
	int rc = 1;

	if (argc != 2) {
		fprintf(stderr, "usage: loadmod CONFIG\n");
		return 2;
	}
	gen = osp_config_parse(argv[1], &errs);
	if (gen != NULL && osp_modules_load(gen, &errs) == OSP_OK)
		osp_config_fill_modules(gen, &errs);
	if (gen == NULL || errs.n > 0) {
		fprintf(stderr, "%s\n", errs.text.data != NULL ?
		    errs.text.data : "config could not be read");
		goto out;
	}
	osp_config_set_current(gen);
	gen = NULL;
	for (i = 0; i < osp_nmodules; i++)
		printf("loaded %s %s\n", osp_module_name(osp_modules[i]),
		    osp_modules[i]->mod->version);
	if (osp_modules_init(&error) != OSP_OK) {
		fprintf(stderr, "%s\n", error);
		goto out;
	}
	rc = 0;
out:
	osp_modules_unload();
	osp_config_set_current(NULL);
	osp_config_unref(gen);
	osp_conf_errs_deinit(&errs);
	return rc;
}
