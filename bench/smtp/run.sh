#!/bin/sh
# SPDX-License-Identifier: ISC
# SMTP benchmark: Postfix's smtp-source sends N messages of SIZE bytes over
# SESSIONS parallel sessions to osprey and, in the same run, to Postfix
# delivering into Dovecot over LMTP; reports durable messages/s (clock
# stopped when every message is stored, not merely queued) and peak memory.
#
# Usage: OSPREY_BIN=... OSPREY_MODULE_PATH=... run.sh   (make bench-smtp)
# Environment: BENCH_DIR (default /var/tmp), RUNS (3), N (20000 messages),
# SESSIONS (20), SIZE (4096 payload bytes), PORT_BASE (first of three
# loopback ports, default random in 21000-28999), SMTP_SOURCE_OPTS (extra
# smtp-source flags, e.g. -d to send every message of a session over one
# connection; default: one connection per message, as inbound mail comes),
# KEEP (set: keep the work directory, with the servers' logs), FROM
# (envelope sender, default sender@bench.test), ACCOUNTS (list of cases:
# number of recipient accounts u1..uK, the messages and sessions split
# evenly among them; default "1", "1 10" adds a 10-account case),
# DOVECOT_EXTRA / POSTFIX_EXTRA (lines appended to dovecot.conf / main.cf,
# e.g. DOVECOT_EXTRA='maildir_very_dirty_syncs = yes'), CASE_TIMEOUT
# (seconds one case may take, default 1800).
#
# Every server starts fresh (empty store) for every run and is stopped
# after it; the servers run one at a time, osprey and Postfix+Dovecot
# alternating which goes first. Everything listens on 127.0.0.1 only.
#
# Durability, both sides at their defaults:
# - Postfix: cleanup(8) fsyncs the queue file before smtpd answers 250
#   (no "sync" knob lowered), and lmtp(8) removes the queue file only after
#   Dovecot acknowledged the delivery;
# - Dovecot: mail_fsync = optimized (default): LMTP fsyncs the new Maildir
#   file before it renames it into new/ and answers 250;
# - osprey: answers 250 after the group commit of the message (DESIGN §5).
set -eu

: "${OSPREY_BIN:?set OSPREY_BIN to the osprey binary (make bench-smtp does)}"
RUNS=${RUNS:-3}
N=${N:-20000}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
SMTP_SOURCE_OPTS=${SMTP_SOURCE_OPTS:-}
FROM=${FROM:-sender@bench.test}
ACCOUNTS=${ACCOUNTS:-1}
DOVECOT_EXTRA=${DOVECOT_EXTRA:-}
POSTFIX_EXTRA=${POSTFIX_EXTRA:-}
MAXACC=1
for k in $ACCOUNTS; do
	if [ "$k" -lt 1 ] || [ "$k" -gt "$SESSIONS" ]; then
		echo "run.sh: ACCOUNTS values must be 1..SESSIONS" >&2
		exit 1
	fi
	[ "$k" -le "$MAXACC" ] || MAXACC=$k
done
PY=/usr/bin/python3

if [ "$(id -u)" != 0 ]; then
	# Postfix's master and Dovecot's master need root to start their
	# unprivileged services as the postfix/dovecot/dovenull users.
	echo "run.sh: must run as root (private Postfix and Dovecot instances)" >&2
	exit 1
fi

# 1. Packages. Debian's postinst asks which mail setup to write: preseed
# "No configuration" (this script writes its own). Services are not started
# by the packages here (policy-rc.d); this script never touches the system
# instances, only the private ones it starts itself.
missing=
[ -x /usr/sbin/smtp-source ] && [ -x /usr/sbin/postfix ] ||
    missing="$missing postfix"
[ -x /usr/sbin/dovecot ] || missing="$missing dovecot-core"
[ -x /usr/lib/dovecot/lmtp ] || missing="$missing dovecot-lmtpd"
if [ -n "$missing" ]; then
	echo "installing$missing" >&2
	echo "postfix postfix/main_mailer_type select No configuration" |
	    debconf-set-selections
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    -o DPkg::Lock::Timeout=300 $missing >/dev/null
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/osprey-smtp-bench.XXXXXX")
# Postfix, Dovecot and osprey drop privileges: they must traverse WORK.
chmod 755 "$WORK"
HELPER="$WORK/helper.py"
OSPREY_PID=
PF_CONF="$WORK/postfix/etc"
DC_CONF="$WORK/dovecot/dovecot.conf"
NOBODY_UID=$(id -u nobody)
NOBODY_GID=$(getent group nogroup | cut -d: -f3)

stop_osprey() {
	if [ -n "$OSPREY_PID" ]; then
		$PY "$HELPER" stop "$OSPREY_PID" || true
		wait "$OSPREY_PID" 2>/dev/null || true
		OSPREY_PID=
	fi
}

# Stops the private Postfix and Dovecot (if running), then any process of
# theirs still alive (by the pids recorded from their process trees).
stop_postfix_dovecot() {
	pids=$($PY "$HELPER" tree "$WORK/postfix/spool/pid/master.pid" \
	    "$WORK/dovecot/run/master.pid" 2>/dev/null || true)
	if [ -f "$WORK/postfix/spool/pid/master.pid" ]; then
		postfix -c "$PF_CONF" stop >/dev/null 2>&1 || true
	fi
	if [ -f "$WORK/dovecot/run/master.pid" ]; then
		dovecot -c "$DC_CONF" stop >/dev/null 2>&1 || true
	fi
	if [ -n "$pids" ]; then
		$PY "$HELPER" stop $pids || true
	fi
	rm -f "$WORK/postfix/spool/pid/master.pid" "$WORK/dovecot/run/master.pid"
}

cleanup() {
	set +e
	stop_osprey
	[ -f "$HELPER" ] && stop_postfix_dovecot
	if [ -n "${KEEP:-}" ]; then
		echo "kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The helper: process trees, memory sampling, the timed case, fsync rate.
cat >"$HELPER" <<'EOF'
import os, signal, socket, subprocess, sys, threading, time

def ppids():
    m = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    s = f.read()
                m[int(d)] = int(s[s.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    return m

def tree(roots):
    """The roots and all their descendants that exist now."""
    m = ppids()
    kids = {}
    for p, pp in m.items():
        kids.setdefault(pp, []).append(p)
    out, todo = set(), [r for r in roots if r in m]
    while todo:
        p = todo.pop()
        if p not in out:
            out.add(p)
            todo.extend(kids.get(p, []))
    return out

def status_kb(pid, field):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def pss_kb(pid):
    try:
        with open("/proc/%d/smaps_rollup" % pid) as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0

def cpu_ticks(roots):
    """CPU time (user + system, clock ticks) of the trees, including the
    children they have reaped (cutime/cstime), so the difference between
    two calls counts processes that came and went in between."""
    t = 0
    for p in tree(roots):
        try:
            with open("/proc/%d/stat" % p) as f:
                s = f.read()
            v = s[s.rindex(")") + 2:].split()
            t += int(v[11]) + int(v[12]) + int(v[13]) + int(v[14])
        except (OSError, ValueError, IndexError):
            pass
    return t

def pidfile(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None

class Sampler(threading.Thread):
    """Every 0.2 s: sum of VmRSS and of Pss over the process trees."""
    def __init__(self, roots):
        super().__init__(daemon=True)
        self.roots, self.rss, self.pss, self.nproc = roots, 0, 0, 0
        self.halt = threading.Event()
    def sample(self):
        ps = tree(self.roots)
        self.rss = max(self.rss, sum(status_kb(p, "VmRSS") for p in ps))
        self.pss = max(self.pss, sum(pss_kb(p) for p in ps))
        self.nproc = max(self.nproc, len(ps))
    def run(self):
        while not self.halt.is_set():
            self.sample()
            self.halt.wait(0.2)
        self.sample()

def maildir_count(path):
    n = 0
    for sub in ("new", "cur"):
        try:
            n += sum(1 for e in os.scandir(os.path.join(path, sub))
                     if not e.name.startswith("."))
        except FileNotFoundError:
            pass
    return n

SQL_COUNT = """
import sqlite3, sys
try:
    db = sqlite3.connect("file:%s?mode=ro" % sys.argv[1], uri=True, timeout=10)
    print(db.execute("SELECT count(*) FROM messages WHERE expunged = 0").fetchone()[0])
except sqlite3.OperationalError:
    print(0)
"""

def osprey_count(db):
    # Read as the owner of the store: root would create index.db-shm
    # owned by root, which osprey (unprivileged) could not open later.
    try:
        st = os.stat(os.path.dirname(db))
    except FileNotFoundError:
        return 0
    r = subprocess.run([sys.executable, "-c", SQL_COUNT, db], user=st.st_uid,
                       group=st.st_gid, extra_groups=[], capture_output=True,
                       text=True, check=True)
    return int(r.stdout)

def queue_count(q):
    n = 0
    for sub in ("maildrop", "incoming", "active", "deferred", "hold", "corrupt"):
        for _, _, files in os.walk(os.path.join(q, sub)):
            n += len(files)
    return n

def case(args):
    """case N COUNTSPEC ROOTSPEC QUEUE|- -- CMD ARGS... [-- CMD ARGS...]
    Runs the commands (smtp-source) in parallel, then waits until N
    messages are stored. COUNTSPEC: maildir:DIR,DIR... or sqlite:DB,DB...
    (summed); ROOTSPEC: comma-separated pids or pid files of the servers.
    Prints: ok SECONDS MSG/S RSS_KB PSS_KB HWM_KB NPROC CPU_MS_PER_MSG, or
    fail REASON."""
    n, countspec, rootspec, queue = args[:4]
    cmds, cur = [], None
    for a in args[4:]:
        if a == "--":
            cur = []
            cmds.append(cur)
        else:
            cur.append(a)
    n = int(n)
    roots = []
    for r in rootspec.split(","):
        p = int(r) if r.isdigit() else pidfile(r)
        if p is None:
            print("fail no pid in %s" % r)
            return
        roots.append(p)
    kind, where = countspec.split(":", 1)
    one = maildir_count if kind == "maildir" else osprey_count
    count = lambda: sum(one(w) for w in where.split(","))
    sampler = Sampler(roots)
    sampler.start()
    cpu0 = cpu_ticks(roots)
    t0 = time.monotonic()
    srcs = [subprocess.Popen(c, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for c in cmds]
    deadline = t0 + float(os.environ.get("CASE_TIMEOUT", "1800"))
    errs = []
    for p in srcs:
        try:
            errs.append((p.communicate(timeout=max(deadline - time.monotonic(), 0.1))[1],
                         p.returncode))
        except subprocess.TimeoutExpired:
            for q in srcs:
                q.kill()
                q.wait()
            errs.append(("timeout: smtp-source still running after %ss" %
                         os.environ.get("CASE_TIMEOUT", "1800"), 1))
            break
    t_src = time.monotonic()
    for err, rc in errs:
        if rc != 0:
            sampler.halt.set()
            sampler.join()
            err = err.strip().splitlines() or ["exit %d" % rc]
            print("fail smtp-source: %s" % err[-1])
            return
    # Acknowledged is not stored for Postfix: wait until every message is
    # in the Maildir (osprey: already committed when acknowledged; the
    # first check only verifies it).
    first, last, t_change, got = True, -1, time.monotonic(), 0
    while True:
        got = count()
        now = time.monotonic()
        if got >= n:
            t1 = t_src if first else now
            break
        if got != last:
            last, t_change = got, now
        elif now - t_change > 60:
            break
        first = False
        time.sleep(0.05)
    sampler.halt.set()
    sampler.join()
    if got != n:
        print("fail %d of %d messages stored" % (got, n))
        return
    if queue != "-":
        deadline = time.monotonic() + 30
        while queue_count(queue) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = queue_count(queue)
        if left:
            print("fail %d messages left in the Postfix queue" % left)
            return
    cpu = (cpu_ticks(roots) - cpu0) / os.sysconf("SC_CLK_TCK")
    hwm = max(status_kb(p, "VmHWM") for p in roots) if len(roots) == 1 else 0
    print("ok %.3f %.1f %d %d %d %d %.3f" % (t1 - t0, n / (t1 - t0),
          sampler.rss, sampler.pss, hwm, sampler.nproc, 1000 * cpu / n))

def banner(port, timeout):
    """The server's first reply line (empty if none)."""
    deadline = time.monotonic() + float(timeout)
    while True:
        try:
            with socket.create_connection(("127.0.0.1", int(port)), 2) as s:
                s.settimeout(5)
                data = b""
                while b"\n" not in data:
                    b = s.recv(512)
                    if not b:
                        break
                    data += b
                try:
                    s.sendall(b"QUIT\r\n")
                except OSError:
                    pass
                return data.decode("ascii", "replace").splitlines()[0] if data else ""
        except OSError:
            if time.monotonic() > deadline:
                return ""
            time.sleep(0.05)

def ports_free(ports):
    for p in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", int(p)))
            except OSError:
                return False
    return True

def fsync_rate(d, secs=2.0):
    """4 KiB write + fsync of one file, one thread (as bench/store)."""
    path = os.path.join(d, "fsync.tmp")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    buf, n = b"x" * 4096, 0
    t0 = time.monotonic()
    while time.monotonic() - t0 < secs:
        os.pwrite(fd, buf, 0)
        os.fsync(fd)
        n += 1
    t = time.monotonic() - t0
    os.close(fd)
    os.unlink(path)
    return n / t

def running(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False

def stop(pids, timeout=15):
    pids = [int(p) for p in pids]
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if running(p)]
        if not alive:
            return
        time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "case":
        case(args)
    elif cmd == "banner":
        print(banner(*args))
    elif cmd == "free":
        sys.exit(0 if ports_free(args) else 1)
    elif cmd == "fsync":
        print("%.1f" % fsync_rate(args[0]))
    elif cmd == "tree":
        roots = [p for p in (pidfile(a) for a in args) if p is not None]
        print(" ".join(str(p) for p in sorted(tree(roots))))
    elif cmd == "stop":
        stop(args)
    else:
        sys.exit("helper: unknown command " + cmd)

main()
EOF

# Three unusual loopback ports: osprey SMTP, Postfix SMTP, Dovecot LMTP.
if [ -n "${PORT_BASE:-}" ]; then
	base=$PORT_BASE
	$PY "$HELPER" free $base $((base + 1)) $((base + 2)) || {
		echo "run.sh: ports $base-$((base + 2)) are in use" >&2
		exit 1
	}
else
	tries=0
	while :; do
		base=$((21000 + $(od -An -N2 -tu2 /dev/urandom) % 8000))
		$PY "$HELPER" free $base $((base + 1)) $((base + 2)) && break
		tries=$((tries + 1))
		[ $tries -lt 20 ] || { echo "run.sh: no free ports" >&2; exit 1; }
	done
fi
OSPREY_PORT=$base
PF_PORT=$((base + 1))
LMTP_PORT=$((base + 2))

# 2. Postfix, a private instance: its own config_directory (postfix -c),
# queue_directory and data_directory under WORK. `postfix -c DIR start`
# works for a non-default directory as root (alternate_config_directories
# only restricts the set-gid postdrop/postqueue); postfix-script creates
# the queue directories on start (post-install create-missing). No chroot,
# no syslog (maillog_file through postlogd), only the services used here.
# Mail for bench.test is a virtual mailbox domain delivered by lmtp(8) to
# the private Dovecot: the recipient is checked against
# virtual_mailbox_maps at RCPT time, as osprey checks its accounts.
mkdir -p "$PF_CONF" "$WORK/postfix/spool" "$WORK/postfix/data"
chown postfix "$WORK/postfix/data"
cat >"$PF_CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $WORK/postfix/spool
data_directory = $WORK/postfix/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = $WORK/postfix/maillog
myhostname = mx.bench.test
mydomain = bench.test
myorigin = bench.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
biff = no
append_dot_mydomain = no
smtpd_banner = \$myhostname ESMTP
virtual_mailbox_domains = bench.test
virtual_mailbox_maps = texthash:$PF_CONF/vmailbox
virtual_transport = lmtp:inet:127.0.0.1:$LMTP_PORT
EOF
i=1
while [ $i -le "$MAXACC" ]; do
	echo "u$i@bench.test u$i"
	i=$((i + 1))
done >"$PF_CONF/vmailbox"
[ -z "$POSTFIX_EXTRA" ] || printf '%s\n' "$POSTFIX_EXTRA" >>"$PF_CONF/main.cf"
# Columns: service type private unpriv chroot wakeup maxproc command.
cat >"$PF_CONF/master.cf" <<EOF
127.0.0.1:$PF_PORT inet n - n - - smtpd
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
EOF

# 3. Dovecot, a private instance (dovecot -c FILE): LMTP only, on loopback,
# base_dir and state_dir under WORK, every user stored as nobody in a
# Maildir under WORK; fsync settings left at their defaults (durable).
MAILROOT="$WORK/dovecot/mail"
mkdir -p "$WORK/dovecot"
cat >"$DC_CONF" <<EOF
protocols = lmtp
listen = 127.0.0.1
ssl = no
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/state
log_path = $WORK/dovecot/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
postmaster_address = postmaster@bench.test
hostname = mx.bench.test
mail_location = maildir:~/Maildir
userdb {
  driver = static
  args = uid=$NOBODY_UID gid=$NOBODY_GID home=$MAILROOT/%n allow_all_users=yes
}
passdb {
  driver = static
  args = nopassword=y
}
service lmtp {
  inet_listener lmtp {
    address = 127.0.0.1
    port = $LMTP_PORT
  }
}
EOF
[ -z "$DOVECOT_EXTRA" ] || printf '%s\n' "$DOVECOT_EXTRA" >>"$DC_CONF"

# 4. osprey: accounts u1..uMAXACC (u1@bench.test...), data under WORK,
# fresh for every run. The per-IP connection limits are off: the load comes
# from one address, and Postfix's anvil limits do not apply to it either
# (smtpd_client_event_limit_exceptions = $mynetworks, loopback here).
mkdir -p "$WORK/osprey"
cat >"$WORK/osprey/osprey.yaml" <<EOF
hostname: bench.test
data-dir: $WORK/osprey/data
user: nobody
workers: 2
modules: [smtp]
listeners:
  - name: smtp
    protocol: smtp
    address: [127.0.0.1]
    port: $OSPREY_PORT
    tls: none
    role: delivery
limits:
  connection-rate: [0, 0, 0]
  connections: [0, 0, 0]
log:
  level: warn
EOF
{
	echo "domains: {bench.test: {}}"
	echo "accounts:"
	i=1
	while [ $i -le "$MAXACC" ]; do
		echo "  u$i: {domain: bench.test, destinations: {u$i: {}}}"
		i=$((i + 1))
	done
} >"$WORK/osprey/domains.yaml"
if ! "$OSPREY_BIN" -c "$WORK/osprey/osprey.yaml" config test >&2; then
	echo "run.sh: osprey refuses the benchmark configuration" >&2
	exit 1
fi

start_osprey() {
	rm -rf "$WORK/osprey/data"
	"$OSPREY_BIN" -c "$WORK/osprey/osprey.yaml" serve \
	    >"$WORK/osprey/osprey.log" 2>&1 &
	OSPREY_PID=$!
	OSPREY_BANNER=$($PY "$HELPER" banner "$OSPREY_PORT" 15)
}

start_postfix_dovecot() {
	rm -rf "$MAILROOT"
	mkdir -p "$MAILROOT"
	chown "$NOBODY_UID:$NOBODY_GID" "$MAILROOT"
	dovecot -c "$DC_CONF"
	postfix -c "$PF_CONF" start >/dev/null 2>&1 || {
		echo "run.sh: postfix did not start:" >&2
		postfix -c "$PF_CONF" start >&2 || true
		tail -20 "$WORK/postfix/maillog" >&2 || true
		exit 1
	}
	b=$($PY "$HELPER" banner "$LMTP_PORT" 15)
	case "$b" in
	220*) ;;
	*)	echo "run.sh: dovecot LMTP not answering: '$b'" >&2
		tail -20 "$WORK/dovecot/dovecot.log" >&2 || true
		exit 1 ;;
	esac
	b=$($PY "$HELPER" banner "$PF_PORT" 15)
	case "$b" in
	220*) ;;
	*)	echo "run.sh: postfix smtpd not answering: '$b'" >&2
		tail -20 "$WORK/postfix/maillog" >&2 || true
		exit 1 ;;
	esac
}

# smtp-source: -s parallel sessions, -m messages in all, -l payload bytes
# (plus its few header lines), one connection per message unless -d. With
# K accounts: K smtp-source processes in parallel, one per recipient, each
# with SESSIONS/K sessions and N/K messages.
# sources K PORT: the helper's command lines; sets CASE_N (N rounded down
# to a multiple of K).
sources() {
	k=$1
	per=$((N / k))
	CASE_N=$((per * k))
	SRC_ARGS=
	i=1
	while [ $i -le "$k" ]; do
		SRC_ARGS="$SRC_ARGS -- smtp-source -s $((SESSIONS / k)) -m $per"
		SRC_ARGS="$SRC_ARGS -l $SIZE -f $FROM -t u$i@bench.test"
		SRC_ARGS="$SRC_ARGS $SMTP_SOURCE_OPTS 127.0.0.1:$2"
		i=$((i + 1))
	done
}

# stores K PREFIX SUFFIX: comma-separated PREFIX/uI/SUFFIX for I in 1..K.
stores() {
	i=1
	sep=
	while [ $i -le "$1" ]; do
		printf '%s%s/u%s%s' "$sep" "$2" "$i" "$3"
		sep=,
		i=$((i + 1))
	done
}

# One timed case with K accounts; appends "SERVER K RUN ok SECS RATE RSS
# PSS HWM NPROC CPU_MS" or "SERVER K RUN fail REASON" to RES.
run_osprey() {
	k=$1
	start_osprey
	sources "$k" "$OSPREY_PORT"
	case "$OSPREY_BANNER" in
	220*)	out=$($PY "$HELPER" case "$CASE_N" \
		    "sqlite:$(stores "$k" "$WORK/osprey/data/accounts" /index.db)" \
		    "$OSPREY_PID" - $SRC_ARGS 2>"$WORK/helper.err") ||
		    out="fail helper: $(tail -1 "$WORK/helper.err")" ;;
	"")	out="fail no SMTP banner" ;;
	*)	out="fail SMTP not available: $OSPREY_BANNER" ;;
	esac
	stop_osprey
	echo "osprey $k $run $out" >>"$RES"
	echo "run $run, $k account(s), osprey: $out" >&2
	case "$out" in
	fail*) tail -5 "$WORK/osprey/osprey.log" >&2 || true ;;
	esac
}

run_postfix() {
	k=$1
	start_postfix_dovecot
	sources "$k" "$PF_PORT"
	out=$($PY "$HELPER" case "$CASE_N" \
	    "maildir:$(stores "$k" "$MAILROOT" /Maildir)" \
	    "$WORK/postfix/spool/pid/master.pid,$WORK/dovecot/run/master.pid" \
	    "$WORK/postfix/spool" $SRC_ARGS 2>"$WORK/helper.err") ||
	    out="fail helper: $(tail -1 "$WORK/helper.err")"
	stop_postfix_dovecot
	echo "postfix $k $run $out" >>"$RES"
	echo "run $run, $k account(s), postfix+dovecot: $out" >&2
	case "$out" in
	fail*)	tail -10 "$WORK/postfix/maillog" >&2 || true
		tail -10 "$WORK/dovecot/dovecot.log" >&2 || true ;;
	esac
}

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }

RES="$WORK/results"
: >"$RES"
echo "smtp benchmark: $N messages of $SIZE bytes over $SESSIONS sessions," \
    "accounts: $ACCOUNTS, $RUNS runs, ports" \
    "$OSPREY_PORT/$PF_PORT/$LMTP_PORT, in $WORK" >&2
run=1
while [ "$run" -le "$RUNS" ]; do
	echo "fsync - $($PY "$HELPER" fsync "$WORK")" >>"$RES"
	for k in $ACCOUNTS; do
		# Alternate which server goes first.
		if [ $((run % 2)) = 1 ]; then
			run_osprey "$k"
			run_postfix "$k"
		else
			run_postfix "$k"
			run_osprey "$k"
		fi
	done
	run=$((run + 1))
done

# 7. The table: medians over the successful runs; the msg/s ratio is the
# median of the ratios of each run (the machine's speed drifts between
# runs, DESIGN §10).
F=$(awk '$1 == "fsync" { print $3 }' "$RES" | median)
col() {
	awk -v s="$1" -v k="$2" -v c="$3" \
	    '$1 == s && $2 == k && $4 == "ok" { print $c }' "$RES" | median
}
nok() { awk -v s="$1" -v k="$2" '$1 == s && $2 == k && $4 == "ok"' "$RES" | wc -l; }
firstfail() {
	awk -v s="$1" -v k="$2" '$1 == s && $2 == k && $4 == "fail" {
	    $1 = $2 = $3 = $4 = ""; sub(/^ +/, ""); print; exit }' "$RES"
}
runratio() {
	awk -v k="$1" '$2 == k && $4 == "ok" { r[$1 " " $3] = $6; n[$3] = 1 }
	    END { for (i in n) if (("osprey " i) in r && ("postfix " i) in r)
	    print r["osprey " i] / r["postfix " i] }' "$RES" | median
}
row() {
	# row NAME K OK RATE RSS_KB PSS_KB CPU_MS FAILURE
	if [ "$3" -gt 0 ]; then
		echo "$1 $2 $3/$RUNS $4 $5 $6 $7" | awk '{ printf "%-16s %8s %5s %9.1f %12.1f %12.1f %9.2f\n", $1, $2, $3, $4, $5 / 1024, $6 / 1024, $7 }'
	else
		printf '%-16s %8s %5s %s\n' "$1" "$2" "0/$RUNS" "$8"
	fi
}

echo
echo "disk: $F fsync/s (write 4 KiB + fsync, one thread; median)"
echo
printf '%-16s %8s %5s %9s %12s %12s %9s\n' server accounts runs "msg/s" \
    "peak RSS MB" "peak PSS MB" "CPU ms/msg"
status=0
for k in $ACCOUNTS; do
	o_ok=$(nok osprey "$k")
	p_ok=$(nok postfix "$k")
	o_rss=$(col osprey "$k" 7)
	o_hwm=$(col osprey "$k" 9)
	p_rss=$(col postfix "$k" 7)
	# osprey's RSS: the larger of the sampled peak and the kernel's VmHWM.
	[ "$o_ok" -eq 0 ] ||
	    o_rss=$(echo "$o_rss $o_hwm" | awk '{ print ($2 > $1) ? $2 : $1 }')
	row osprey "$k" "$o_ok" "$(col osprey "$k" 6)" "$o_rss" \
	    "$(col osprey "$k" 8)" "$(col osprey "$k" 11)" \
	    "osprey: $(firstfail osprey "$k")"
	row postfix+dovecot "$k" "$p_ok" "$(col postfix "$k" 6)" "$p_rss" \
	    "$(col postfix "$k" 8)" "$(col postfix "$k" 11)" \
	    "postfix+dovecot failed: $(firstfail postfix "$k")"
	r=$(runratio "$k")
	if [ -n "$r" ]; then
		echo "$k $r $o_rss $p_rss $(col osprey "$k" 8) $(col postfix "$k" 8) $(col osprey "$k" 11) $(col postfix "$k" 11)" | awk '{
		    printf "%-16s %8s %5s %8.2fx %11.2fx %11.2fx %8.2fx\n",
		    "osprey/(pf+dc)", $1, "", $2, $3 / $4, $5 / $6,
		    ($8 > 0) ? $7 / $8 : 0 }'
	fi
	[ "$o_ok" -eq "$RUNS" ] && [ "$p_ok" -eq "$RUNS" ] || status=1
done
P_NP=$(awk '$1 == "postfix" && $4 == "ok" { print $10 }' "$RES" | sort -g | tail -1)
echo
echo "msg/s: median of the successful runs (interleaved, fresh servers each"
echo "run), clock stopped when all messages are stored (Maildir for Dovecot,"
echo "the accounts' index.db for osprey); its ratio is the median of the"
echo "per-run ratios. Peak RSS: sum of VmRSS over the instance's processes"
echo "sampled every 0.2 s (osprey: or its VmHWM if larger; Postfix+Dovecot: up"
echo "to ${P_NP:-?} processes, shared pages counted in each); PSS shares each"
echo "shared page among the processes mapping it. CPU: user+system time of"
echo "the server processes per message stored."
exit $status
