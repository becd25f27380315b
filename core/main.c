/* SPDX-License-Identifier: ISC */
/* The osprey binary's entry point; the command line is core/cli.c. */
#include "core.h"
#include "cli.h"

int
main(int argc, char **argv)
{
	return osp_cli_main(argc, argv);
}
