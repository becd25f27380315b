/* SPDX-License-Identifier: ISC */
/* CUnit runner shared by the unit test binaries. */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "testutil.h"

static char *tmpdir;

static void
rm_tmpdir(void)
{
	char cmd[4200];

	if (tmpdir == NULL || getenv("OSPREY_KEEP_TMP") != NULL)
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", tmpdir);
}

const char *
osp_test_tmpdir(void)
{
	const char *base;
	char path[4096];

	if (tmpdir != NULL)
		return tmpdir;
	base = getenv("TMPDIR");
	if (base == NULL || *base == '\0')
		base = "/tmp";
	snprintf(path, sizeof(path), "%s/osprey-test-XXXXXX", base);
	if (mkdtemp(path) == NULL) {
		fprintf(stderr, "mkdtemp %s: %s\n", path, strerror(errno));
		exit(99);
	}
	tmpdir = strdup(path);
	atexit(rm_tmpdir);
	return tmpdir;
}

char *
osp_test_write_file(const char *dir, const char *name, const char *text)
{
	char *path;
	FILE *f;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		abort();
	f = fopen(path, "w");
	if (f == NULL || fputs(text, f) == EOF || fclose(f) != 0) {
		fprintf(stderr, "write %s: %s\n", path, strerror(errno));
		exit(99);
	}
	return path;
}

const char *
osp_test_srcdir(void)
{
	const char *s = getenv("top_srcdir");

	return s != NULL && *s != '\0' ? s : ".";
}

int
osp_test_main(int argc, char **argv, const char *suite,
    const struct osp_test *tests)
{
	const char *match = NULL;
	CU_pSuite s;
	unsigned failed, run;
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--match") == 0 && i + 1 < argc)
			match = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--match SUBSTRING]\n",
			    argv[0]);
			return 2;
		}
	}
	if (CU_initialize_registry() != CUE_SUCCESS)
		return 99;
	s = CU_add_suite(suite, NULL, NULL);
	if (s == NULL)
		return 99;
	for (; tests->name != NULL; tests++) {
		if (match != NULL && strstr(tests->name, match) == NULL)
			continue;
		if (CU_add_test(s, tests->name, tests->fn) == NULL)
			return 99;
	}
	CU_basic_set_mode(CU_BRM_VERBOSE);
	CU_basic_run_tests();
	run = CU_get_number_of_tests_run();
	failed = CU_get_number_of_tests_failed();
	printf("%s: %u passed, %u failed\n", suite, run - failed, failed);
	CU_cleanup_registry();
	return failed == 0 ? 0 : 1;
}

char *
osp_test_path(const char *dir, const char *name)
{
	char *p;

	if (asprintf(&p, "%s/%s", dir, name) < 0)
		abort();
	return p;
}

int
osp_test_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	return system(cmd);
}
