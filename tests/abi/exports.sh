#!/bin/sh
# SPDX-License-Identifier: ISC
# Every built module exports exactly one symbol, the osp_module descriptor
# (DESIGN §3), and loads, fills its config and inits through the real
# loader (tests/abi/loadmod).
set -u

top_builddir=${top_builddir:-.}
modules="smtp imap http webmail transport-submission transport-socks"
fail=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/osprey-abi-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

for m in $modules; do
	so="$top_builddir/modules/$m/.libs/$m.so"
	if [ ! -f "$so" ]; then
		echo "FAIL $m: $so not built"
		fail=1
		continue
	fi
	# Linker-made symbols (_init, _fini, __bss_start, _edata, _end) are
	# not part of the module's interface.
	syms=$(nm -D --defined-only "$so" | awk '{ print $3 }' |
	    grep -Ev '^(_init|_fini|__bss_start|_edata|_end)$' | sort)
	if [ "$syms" != "osp_module" ]; then
		echo "FAIL $m: exports" $syms "(want only osp_module)"
		fail=1
	else
		echo "ok   $m: exports only osp_module"
	fi
	# The descriptor is data, and read-only (const).
	kind=$(nm -D --defined-only "$so" | awk '$3 == "osp_module" { print $2 }')
	case $kind in
	R|D|r|d) ;;
	*) echo "FAIL $m: osp_module has symbol type '$kind'"; fail=1 ;;
	esac
done

path=
for m in $modules; do
	path="$path${path:+:}$top_builddir/modules/$m/.libs"
done

# Runs loadmod on a config; checks that all six loaded, in dependency order,
# and that each module still being built said at startup what it cannot
# do yet (smtp is complete and must not).
loadmod() {
	label=$1
	if OSPREY_MODULE_PATH=$path "$top_builddir/tests/abi/loadmod" \
	    "$tmp/$label.yaml" >"$tmp/out" 2>&1; then
		order=$(awk '/^loaded / { printf "%s ", $2 }' "$tmp/out")
		n=$(grep -c '^loaded ' "$tmp/out")
		case $order in
		*http*webmail*) ;;
		*) echo "FAIL $label: load order: $order"; fail=1 ;;
		esac
		[ "$n" -eq 6 ] || { echo "FAIL $label: $n modules"; fail=1; }
		for m in $modules; do
			if [ "$m" = smtp ]; then
				! grep -q " warn $m .*not implemented" \
				    "$tmp/out" ||
				    { echo "FAIL $label: smtp warns"; fail=1; }
				continue
			fi
			grep -q " warn $m .*not implemented yet" "$tmp/out" ||
			    { echo "FAIL $label: $m does not warn"; fail=1; }
		done
		echo "ok   $label: loaded $order"
	else
		echo "FAIL $label: loadmod failed:"
		fail=1
	fi
	sed 's/^/  | /' "$tmp/out"
}

# All six with defaults, webmail before the http it depends on: the loader
# orders them, every section gets its defaults, check() and init() pass.
cat >"$tmp/defaults.yaml" <<EOF
data-dir: $tmp/data
modules: [webmail, smtp, imap, http, transport-submission, transport-socks]
EOF
loadmod defaults

# The shipped drop-ins, with their commented examples enabled, must be
# valid: the documentation stays true.
top_srcdir=${top_srcdir:-.}
mkdir "$tmp/conf.d" || exit 99
for m in $modules; do
	awk '/^# [a-z-]+:$/ { on = 1 } on && /^#/ { sub(/^# ?/, "") } { print }' \
	    "$top_srcdir/conf.d/$m.yaml" >"$tmp/conf.d/$m.yaml"
done
cat >"$tmp/dropins.yaml" <<EOF
data-dir: $tmp/data
include: conf.d/*.yaml
EOF
loadmod dropins

[ $fail -eq 0 ] && echo "exports: all passed" || echo "exports: FAILED"
exit $fail
