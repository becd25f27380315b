#!/bin/sh
# SPDX-License-Identifier: ISC
# The third-party module path (DESIGN §3): install the tree into a staging
# directory, build tests/sample-module with only the installed headers and
# osprey.pc (plain make + pkg-config), install it where osprey.pc says
# modules go, and load it into the installed osprey with `config test`.
set -u

top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-.}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/osprey-sample-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
dest=$tmp/dest

fail() {
	echo "FAIL $*"
	exit 1
}

# Run from `make check`: the outer make's jobserver is not ours.
unset MAKEFLAGS MFLAGS MAKELEVEL
make -s -C "$top_builddir" install DESTDIR="$dest" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install DESTDIR=$dest"; }

pc=$(find "$dest" -name osprey.pc | head -n 1)
osprey=$(find "$dest" -type f -name osprey -perm -u+x | head -n 1)
[ -n "$pc" ] || fail "osprey.pc not installed"
[ -n "$osprey" ] || fail "osprey binary not installed"
# Only the staged osprey.pc; SYSROOT maps its paths into the staging dir
# (a distribution package build does the same).
PKG_CONFIG_PATH=$(dirname "$pc")
PKG_CONFIG_LIBDIR=$PKG_CONFIG_PATH
PKG_CONFIG_SYSROOT_DIR=$dest
export PKG_CONFIG_PATH PKG_CONFIG_LIBDIR PKG_CONFIG_SYSROOT_DIR
pkg-config --exists osprey || fail "pkg-config does not find osprey"
moduledir=$(pkg-config --variable=moduledir osprey)
# Some pkg-config versions prefix variables with the sysroot, some do not.
case $moduledir in
"$dest"/*) moduledir=${moduledir#"$dest"} ;;
esac
[ -f "$dest$moduledir/smtp.so" ] ||
    fail "moduledir $moduledir from osprey.pc does not hold smtp.so"

# Build outside the tree, from a copy: nothing of the source or build
# tree is visible to the compiler except through pkg-config.
cp "$top_srcdir/tests/sample-module/sample.c" \
    "$top_srcdir/tests/sample-module/Makefile" "$tmp/" || exit 99
case $(pkg-config --cflags osprey) in
*"$dest"*) ;;
*) fail "pkg-config --cflags osprey does not point into the install:" \
    "$(pkg-config --cflags osprey)" ;;
esac
make -s -C "$tmp" CFLAGS="-O2 -g" >"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; fail "building the sample module"; }
make -s -C "$tmp" install DESTDIR="$dest" MODULEDIR="$moduledir" \
    >>"$tmp/build.log" 2>&1 ||
    { cat "$tmp/build.log"; fail "installing the sample module"; }
syms=$(nm -D --defined-only "$tmp/sample.so" | awk '{ print $3 }' |
    grep -Ev '^(_init|_fini|__bss_start|_edata|_end)$')
[ "$syms" = osp_module ] || fail "sample.so exports:" $syms
echo "ok   sample module built against the installed headers"

# The installed osprey loads it (with an in-tree module beside it). The
# test environment's OSPREY_MODULE_PATH points at the build tree: not here.
unset OSPREY_MODULE_PATH
cat >"$tmp/osprey.yaml" <<EOC
data-dir: $tmp/data
module-path: $dest$moduledir
modules: [sample, smtp]
sample:
  greeting: hi
  level: 2
EOC
"$osprey" -c "$tmp/osprey.yaml" config test >"$tmp/out" 2>&1
rc=$?
sed 's/^/  | /' "$tmp/out"
[ $rc -eq 0 ] || fail "osprey config test exited $rc"
grep -q "configuration valid (2 modules)" "$tmp/out" ||
    fail "config test did not load both modules"
echo "ok   installed osprey loads the sample module"

# Its schema and check() are in force: a bad value is reported with the
# file:line of the key.
cat >"$tmp/bad.yaml" <<EOC
data-dir: $tmp/data
module-path: $dest$moduledir
modules: [sample]
sample:
  greeting: ""
  level: 9
EOC
"$osprey" -c "$tmp/bad.yaml" config test >"$tmp/out" 2>&1 &&
    fail "config test accepted a bad sample section"
sed 's/^/  | /' "$tmp/out"
grep -q "bad.yaml:6:[0-9]*: sample.level" "$tmp/out" ||
    fail "no error for sample.level"
echo "ok   sample config errors reported"
echo "sample: all passed"
exit 0
