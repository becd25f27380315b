#!/bin/sh
# SPDX-License-Identifier: ISC
# Store benchmark: durable deliveries/s of osprey's osp_store_deliver (group
# commit) against dovecot-lda into Maildir, with 1, 10 and 50 concurrent
# deliverers into one account and into 10 accounts, beside the disk's fsync
# rate, all measured in the same run with the two servers interleaved.
# Medians of RUNS runs. Usage: run.sh PATH/TO/store_bench
# Environment: BENCH_DIR (default /var/tmp), RUNS (3), OSPREY_N (2000
# messages per case), DOVECOT_N (messages per dovecot case, default
# OSPREY_N; dovecot-lda is one process per message, so fewer keep the run
# short while measuring the same rate).
set -eu

BENCH=${1:?usage: run.sh store_bench}
RUNS=${RUNS:-3}
OSPREY_N=${OSPREY_N:-2000}
DOVECOT_N=${DOVECOT_N:-$OSPREY_N}
LDA=/usr/lib/dovecot/dovecot-lda

if [ ! -x "$LDA" ]; then
	echo "installing dovecot-core (dovecot-lda)" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q dovecot-core \
	    >/dev/null
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/osprey-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

# dovecot-lda refuses to run as root without -d (which needs the auth
# daemon): as root, run it as nobody, delivering to the invoking user.
if [ "$(id -u)" = 0 ]; then
	DUID=65534
	DGID=$(getent group nogroup >/dev/null && getent group nogroup |
	    cut -d: -f3 || echo 65534)
	AS_USER="setpriv --reuid=$DUID --regid=$DGID --clear-groups"
	DUSER=nobody
	chmod 755 "$WORK"
else
	DUID=$(id -u)
	DGID=$(id -g)
	AS_USER=
	DUSER=$(id -un)
fi

# A 4 KiB message, CRLF line ends, as SMTP delivers it.
MSG="$WORK/msg.eml"
{
	printf 'Return-Path: <sender@example.org>\r\n'
	printf 'From: Sender <sender@example.org>\r\n'
	printf 'To: Rcpt <rcpt@example.net>\r\n'
	printf 'Subject: benchmark message\r\n'
	printf 'Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n'
	printf 'Message-ID: <bench@example.org>\r\n'
	printf 'MIME-Version: 1.0\r\n'
	printf 'Content-Type: text/plain; charset=us-ascii\r\n\r\n'
	i=0
	while [ $i -lt 61 ]; do
		printf 'Lorem ipsum dolor sit amet, consectetur adipiscing elit %04d.\r\n' $i
		i=$((i + 1))
	done
} >"$MSG"
chmod 644 "$MSG"

# Dovecot: a minimal config, no daemon (dovecot-lda -c CONFIG), default
# fsync settings (mail_fsync = optimized, fsync_disable = no).
dovecot_conf() {
	cat >"$1/dovecot.conf" <<EOF
protocols =
ssl = no
base_dir = $1/run
state_dir = $1/state
log_path = $1/lda.log
mail_location = maildir:~/Maildir
postmaster_address = postmaster@example.org
userdb {
  driver = static
  args = uid=$DUID gid=$DGID home=$1/%u
}
passdb {
  driver = static
  args = nopassword=y
}
EOF
}

# One delivery by dovecot-lda (one process per message, as an MTA runs
# it): lda.sh DIR ACCOUNTS INDEX.
LDASH="$WORK/lda.sh"
cat >"$LDASH" <<EOF
#!/bin/sh
HOME="\$1/u\$((\$3 % \$2))" USER=$DUSER exec $AS_USER $LDA \\
    -c "\$1/dovecot.conf" -f sender@example.org <"$MSG"
EOF
chmod 755 "$LDASH"

now() { date +%s.%N; }

# dovecot case: prints messages/s.
run_dovecot() {
	accts=$1 conc=$2 n=$3
	d="$WORK/dovecot-$accts-$conc"
	rm -rf "$d"
	mkdir -p "$d"
	i=0
	while [ $i -lt "$accts" ]; do
		mkdir -p "$d/u$i"
		i=$((i + 1))
	done
	dovecot_conf "$d"
	chown -R "$DUID:$DGID" "$d"
	t0=$(now)
	seq 0 $((n - 1)) | xargs -P "$conc" -I{} "$LDASH" "$d" "$accts" {}
	t1=$(now)
	got=$(find "$d" -path '*/Maildir/new/*' -type f | wc -l)
	if [ "$got" -ne "$n" ]; then
		echo "dovecot: $got of $n messages delivered" >&2
		cat "$d/lda.log" >&2 || true
		exit 1
	fi
	rm -rf "$d"
	echo "$n $t0 $t1" | awk '{ printf "%.1f\n", $1 / ($3 - $2) }'
}

# osprey case: prints "messages/s batches/s".
run_osprey() {
	accts=$1 conc=$2 n=$3
	d="$WORK/osprey-$accts-$conc"
	rm -rf "$d"
	out=$("$BENCH" "$d" "$accts" "$conc" "$n" "$MSG")
	rm -rf "$d"
	echo "$out" | awk '{ printf "%s %.1f\n", $6, $8 / $4 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

RES="$WORK/results"
: >"$RES"
echo "store benchmark: $OSPREY_N osprey / $DOVECOT_N dovecot-lda messages" \
    "of $(wc -c <"$MSG") bytes per case, $RUNS runs, in $WORK" >&2
run=1
while [ $run -le "$RUNS" ]; do
	f=$("$BENCH" fsync "$WORK" | awk '{ print $2 }')
	echo "fsync - $f" >>"$RES"
	for accts in 1 10; do
		for conc in 1 10 50; do
			o=$(run_osprey $accts $conc "$OSPREY_N")
			v=$(run_dovecot $accts $conc "$DOVECOT_N")
			echo "osprey $accts/$conc $o" >>"$RES"
			echo "dovecot $accts/$conc $v" >>"$RES"
			echo "run $run accounts $accts concurrency $conc:" \
			    "osprey $o, dovecot $v msg/s" >&2
		done
	done
	run=$((run + 1))
done

F=$(awk '$1 == "fsync" { print $3 }' "$RES" | median)
echo
echo "disk: $F fsync/s (write 4 KiB + fsync, one thread; median)"
echo
printf '%-9s %-6s %12s %12s %8s %12s %14s\n' accounts conc osprey/s \
    dovecot/s ratio commits/s commits/fsync
for accts in 1 10; do
	for conc in 1 10 50; do
		o=$(awk -v k="$accts/$conc" '$1 == "osprey" && $2 == k { print $3 }' "$RES" | median)
		b=$(awk -v k="$accts/$conc" '$1 == "osprey" && $2 == k { print $4 }' "$RES" | median)
		v=$(awk -v k="$accts/$conc" '$1 == "dovecot" && $2 == k { print $3 }' "$RES" | median)
		echo "$accts $conc $o $v $b $F" | awk '{ printf "%-9s %-6s %12.1f %12.1f %7.2fx %12.1f %14.2f\n", $1, $2, $3, $4, $3 / $4, $5, $5 / $6 }'
	done
done
echo
echo "messages/s: median of $RUNS interleaved runs; ratio = osprey/dovecot-lda;"
echo "commits/s: osprey group commits per second; commits/fsync: commits/s"
echo "over the disk's fsync/s (1.0 = one commit per single-fsync time)."
