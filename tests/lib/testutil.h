/* SPDX-License-Identifier: ISC */
/* CUnit runner shared by the unit test binaries. */
#ifndef OSPREY_TESTUTIL_H
#define OSPREY_TESTUTIL_H

#include <CUnit/CUnit.h>

struct osp_test {
	const char	*name;
	void		(*fn)(void);
};
#define OSP_TEST(f) { #f, f }
#define OSP_TEST_END { NULL, NULL }

/*
 * Runs the tests of one suite: `prog [--match SUBSTRING]`. Prints CUnit's
 * summary and a final line "N passed, N failed". Returns the exit code
 * (0 when everything passed).
 */
int	osp_test_main(int argc, char **argv, const char *suite,
	    const struct osp_test *tests);

/* A fresh temporary directory under $TMPDIR, removed at exit unless the
 * environment sets OSPREY_KEEP_TMP. Returns a static-lifetime string. */
const char *osp_test_tmpdir(void);
/* Writes `text` to dir/name; returns the full path (heap: caller frees). */
char	*osp_test_write_file(const char *dir, const char *name,
	    const char *text);
/* "dir/name" (heap: caller frees). */
char	*osp_test_path(const char *dir, const char *name);
/* Runs a shell command built like printf; returns system()'s status. */
int	osp_test_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Top source dir ($top_srcdir, else "."), for fixtures. */
const char *osp_test_srcdir(void);

#endif
