#!/bin/sh
# SPDX-License-Identifier: ISC
# Replays each fuzz target's seed corpus, then fuzzes it for FUZZ_SECONDS.
set -e
secs=${FUZZ_SECONDS:-20}
status=0
for t in "$top_builddir"/tests/fuzz/fuzz_*; do
	[ -x "$t" ] || continue
	name=$(basename "$t"); name=${name#fuzz_}
	seeds="$top_srcdir/tests/fuzz/corpus/$name"
	work=$(mktemp -d)
	[ -d "$seeds" ] && cp -r "$seeds"/. "$work"/
	echo "== $name: $(ls "$work" | wc -l) seeds, ${secs}s"
	if ! "$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
	    -print_final_stats=1 "$work" >"$work.log" 2>&1; then
		tail -40 "$work.log"
		status=1
	else
		grep -E 'stat::number_of_executed_units|Done' "$work.log" | head -2
	fi
	rm -rf "$work" "$work.log"
done
exit $status
