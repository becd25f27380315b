/* SPDX-License-Identifier: ISC */
/* libFuzzer target: arbitrary bytes as osprey.yaml against the core schema.
 * Errors are expected; crashes, leaks and hangs are bugs. */
#include "core.h"

#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct osp_conf_errs errs = { 0 };
	struct osp_core_conf cc;
	struct osp_pool *pool;
	char *text;

	text = osp_strndup((const char *)data, size);
	pool = osp_pool_new(NULL);
	memset(&cc, 0, sizeof(cc));
	(void)osp_conf_parse_string("fuzz.yaml", text, osp_core_conf_defs, &cc,
	    pool, &errs);
	osp_conf_errs_deinit(&errs);
	osp_pool_free(pool);
	osp_free(text);
	return 0;
}
