#!/bin/sh
# SPDX-License-Identifier: ISC
# IMAP benchmark: one client script (login, select, fetch flags, envelopes
# and bodies, search, store flags, idle) against osprey and a private
# Dovecot holding the same N-message mailbox; reports seconds per phase,
# commands per second and the servers' peak memory.
#
# The IDLE round trips (a change made by a second session reaching the
# idling one) are timed apart: their latency is not command throughput.
#
# Usage: OSPREY_BIN=... OSPREY_MODULE_PATH=... run.sh   (make bench-imap)
# Environment: BENCH_DIR (default /var/tmp), RUNS (3), N (10000 messages),
# BODIES (500 full-body fetches, one command each), IDLES (10 IDLE round
# trips), PORT_BASE (first of two loopback ports, default random in
# 21000-28999), KEEP (set: keep the work directory, with the servers' logs),
# DOVECOT_EXTRA (lines appended to dovecot.conf), CASE_TIMEOUT (seconds
# one command, or the IDLE connections' setup, may take, default 600),
# IDLE_CONNS (concurrent IDLE connections of part two, default 10000, 0
# skips it), DC_IDLE_CLIENT_LIMIT (connections per Dovecot imap process in
# part two, default 100), IDLE_PARALLEL (connections being set up at once
# in part two, default 20: more overflow Dovecot's login hand-off).
#
# The mailbox is generated once (fixed seed) as Maildir files: Dovecot gets
# a fresh copy of them for every run, osprey a fresh data directory filled
# by `osprey import maildir` from the same files. Before the timed client
# one untimed SELECT lets each server build its index (Dovecot's
# dovecot.index, osprey: already indexed by the import), so both are
# measured warm. Servers run one at a time, alternating which goes first;
# everything listens on 127.0.0.1 only.
set -eu

: "${OSPREY_BIN:?set OSPREY_BIN to the osprey binary (make bench-imap does)}"
RUNS=${RUNS:-3}
N=${N:-10000}
BODIES=${BODIES:-500}
IDLES=${IDLES:-10}
DOVECOT_EXTRA=${DOVECOT_EXTRA:-}
export CASE_TIMEOUT=${CASE_TIMEOUT:-600}
PY=/usr/bin/python3
USER_NAME=bench
USER_PASS=benchbench

if [ "$(id -u)" != 0 ]; then
	# Dovecot's master needs root to start its imap processes as nobody.
	echo "run.sh: must run as root (private Dovecot instance)" >&2
	exit 1
fi

# 1. Packages. Services are not started by the packages here; this script
# never touches the system instance, only the private one it starts.
missing=
[ -x /usr/sbin/dovecot ] || missing="$missing dovecot-core"
[ -x /usr/lib/dovecot/imap ] || missing="$missing dovecot-imapd"
if [ -n "$missing" ]; then
	echo "installing$missing" >&2
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	    -o DPkg::Lock::Timeout=300 $missing >/dev/null
fi

WORK=$(mktemp -d "${BENCH_DIR:-/var/tmp}/osprey-imap-bench.XXXXXX")
# Dovecot and osprey drop privileges: they must traverse WORK.
chmod 755 "$WORK"
HELPER="$WORK/helper.py"
OSPREY_PID=
SERVER_WRAP=
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

# Stops the private Dovecot (if running), then any process of its tree
# still alive.
stop_dovecot() {
	pids=$($PY "$HELPER" tree "$WORK/dovecot/run/master.pid" \
	    2>/dev/null || true)
	if [ -f "$WORK/dovecot/run/master.pid" ]; then
		dovecot -c "$DC_CONF" stop >/dev/null 2>&1 || true
	fi
	if [ -n "$pids" ]; then
		$PY "$HELPER" stop $pids || true
	fi
	rm -f "$WORK/dovecot/run/master.pid"
}

cleanup() {
	set +e
	stop_osprey
	[ -f "$HELPER" ] && stop_dovecot
	if [ -n "${KEEP:-}" ]; then
		echo "kept $WORK" >&2
	else
		rm -rf "$WORK"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The helper: mailbox generation, process trees, memory sampling, the
# timed IMAP client.
cat >"$HELPER" <<'EOF'
import base64, contextlib, io, os, random, re, signal, socket, sys, threading, time

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
    """CPU time (user + system + reaped children) of the trees."""
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

# --- mailbox generation -------------------------------------------------

WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet "
         "kilo lima mike november oscar papa quebec romeo sierra tango "
         "uniform victor whiskey xray yankee zulu report meeting budget "
         "invoice release schedule review draft update server network "
         "quarterly minutes agenda proposal contract").split()
NAMES = ("Alice Martin", "Bob Chen", "Carol Diaz", "Dan Okafor",
         "Eve Novak", "Frank Muller", "Grace Ito", "Heidi Larsen")

def addr(r):
    n = r.choice(NAMES)
    return '"%s" <%s@%s>' % (n, n.split()[0].lower(),
                             r.choice(("example.com", "example.org", "bench.test")))

def text(r, nbytes):
    out, n, line = [], 0, []
    while n < nbytes:
        w = r.choice(WORDS)
        line.append(w)
        n += len(w) + 1
        if len(line) >= 11:
            out.append(" ".join(line))
            line = []
    out.append(" ".join(line))
    return "\r\n".join(out) + "\r\n"

def message(r, i):
    """Message i: 1-12 KB, varied headers; one in four multipart with a
    base64 attachment. Subjects carry "needle" for 1 in 50 messages (the
    header search) and bodies "haystackword" for 1 in 100 (TEXT search)."""
    t = 1700000000 + i * 97
    date = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(t))
    subj = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 7)))
    if i % 50 == 7:
        subj += " needle"
    h = ["Return-Path: <%s>" % "sender@example.com",
         "Received: from mx%d.example.com (mx%d.example.com [192.0.2.%d])"
         "\r\n\tby mx.bench.test with ESMTPS id %08x; %s"
         % (i % 7, i % 7, i % 250 + 1, i, date),
         "Message-ID: <%d.%08x@example.com>" % (i, r.getrandbits(32)),
         "Date: " + date, "From: " + addr(r), "To: " + addr(r),
         "Subject: " + subj]
    if r.random() < 0.3:
        h.append("Cc: %s, %s" % (addr(r), addr(r)))
    if r.random() < 0.4:
        h.append("In-Reply-To: <%d.00000000@example.com>" % max(i - 3, 0))
        h.append("References: <%d.00000000@example.com>" % max(i - 3, 0))
    if r.random() < 0.2:
        h.append("List-Id: <list%d.example.org>" % (i % 5))
    h.append("MIME-Version: 1.0")
    body = text(r, r.randint(600, 6000))
    if i % 100 == 3:
        body += "the haystackword is here\r\n"
    if i % 4 == 0:
        b = "=_b%08x" % i
        h.append('Content-Type: multipart/mixed; boundary="%s"' % b)
        raw = bytes(r.getrandbits(8) for _ in range(r.randint(500, 4000)))
        enc = base64.encodebytes(raw).decode().replace("\n", "\r\n")
        body = ("--%s\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s"
                "--%s\r\nContent-Type: application/octet-stream; "
                "name=\"f%d.bin\"\r\nContent-Transfer-Encoding: base64\r\n"
                "Content-Disposition: attachment; filename=\"f%d.bin\""
                "\r\n\r\n%s--%s--\r\n" % (b, body, b, i, i, enc, b))
    else:
        h.append("Content-Type: text/plain; charset=utf-8")
    return ("\r\n".join(h) + "\r\n\r\n" + body).encode()

def gen(path, n):
    r = random.Random(4242)
    for sub in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(path, sub), exist_ok=True)
    for i in range(1, int(n) + 1):
        m = message(r, i)
        name = "%d.M%dP1.bench,S=%d:2," % (1700000000 + i * 97, i, len(m))
        with open(os.path.join(path, "cur", name), "wb") as f:
            f.write(m)

# --- the IMAP client ----------------------------------------------------

class Imap:
    def __init__(self, port):
        self.s = socket.create_connection(("127.0.0.1", int(port)), 10)
        self.s.settimeout(float(os.environ.get("CASE_TIMEOUT", "600")))
        self.f = self.s.makefile("rb", buffering=1 << 16)
        self.n = 0
        self.greeting = self.line()

    def line(self):
        """One response line, literals included in it (as bytes)."""
        out = b""
        while True:
            l = self.f.readline()
            if not l:
                raise EOFError("connection closed")
            out += l
            m = re.search(rb"\{(\d+)\}\r\n$", l)
            if not m:
                return out
            out += self.f.read(int(m.group(1)))

    def send(self, cmd):
        self.n += 1
        tag = b"T%d" % self.n
        self.s.sendall(tag + b" " + cmd + b"\r\n")
        return tag

    def wait(self, tag):
        untagged = []
        while True:
            l = self.line()
            if l.startswith(tag + b" "):
                if not l[len(tag) + 1:].startswith(b"OK"):
                    raise RuntimeError(l.decode("ascii", "replace").strip())
                return untagged
            untagged.append(l)

    def cmd(self, cmd):
        return self.wait(self.send(cmd))

def client(port, nbodies, nidles, warm_only=False):
    """Runs the phases; prints "ok TOTAL_S CMDS phase=S ... idle=S" (or
    raises); TOTAL_S and CMDS leave out the IDLE round trips."""
    nbodies, nidles = int(nbodies), int(nidles)
    user, pw = os.environ["IMAP_USER"].encode(), os.environ["IMAP_PASS"].encode()
    phases, cmds = [], 0
    t = time.monotonic()
    def lap(name, k):
        nonlocal t, cmds
        now = time.monotonic()
        phases.append((name, now - t))
        cmds += k
        t = now
    c = Imap(port)
    if not c.greeting.startswith(b"* OK"):
        raise RuntimeError("greeting: " +
                           c.greeting.decode("ascii", "replace").strip())
    c.cmd(b"LOGIN " + user + b" " + pw)
    lap("login", 1)
    u = c.cmd(b"SELECT INBOX")
    exists = 0
    for l in u:
        m = re.match(rb"\* (\d+) EXISTS", l)
        if m:
            exists = int(m.group(1))
    lap("select", 1)
    if warm_only:
        c.cmd(b"LOGOUT")
        print("ok %d" % exists)
        return
    if exists < 1:
        raise RuntimeError("empty mailbox")
    u = c.cmd(b"FETCH 1:* (FLAGS)")
    if len(u) < exists:
        raise RuntimeError("FETCH FLAGS: %d of %d" % (len(u), exists))
    lap("flags", 1)
    u = c.cmd(b"FETCH 1:* (ENVELOPE)")
    if len(u) < exists:
        raise RuntimeError("FETCH ENVELOPE: %d of %d" % (len(u), exists))
    lap("envelope", 1)
    r = random.Random(7)
    for _ in range(nbodies):
        c.cmd(b"FETCH %d (BODY.PEEK[])" % r.randint(1, exists))
    lap("bodies", nbodies)
    c.cmd(b'UID SEARCH HEADER Subject "needle"')
    lap("search-hdr", 1)
    c.cmd(b'UID SEARCH TEXT "haystackword"')
    lap("search-text", 1)
    step, k = max(exists // 10, 1), 0
    for a in range(1, exists + 1, step):
        c.cmd(b"STORE %d:%d +FLAGS (\\Flagged)" % (a, min(a + step // 2, exists)))
        k += 1
    c.cmd(b"STORE 1:* +FLAGS.SILENT (\\Seen)")
    lap("store", k + 1)
    # IDLE: a second session changes a flag; the idling one must see the
    # untagged FETCH (RFC 2177) before it sends DONE.
    c2 = Imap(port)
    c2.cmd(b"LOGIN " + user + b" " + pw)
    c2.cmd(b"SELECT INBOX")
    t = time.monotonic()
    for i in range(nidles):
        tag = c.send(b"IDLE")
        l = c.line()
        if not l.startswith(b"+"):
            raise RuntimeError("IDLE: " + l.decode("ascii", "replace").strip())
        c2.cmd(b"STORE %d +FLAGS (\\Answered $b%d)" % (i + 1, i))
        while True:
            l = c.line()
            if re.match(rb"\* %d FETCH" % (i + 1), l):
                break
        c.s.sendall(b"DONE\r\n")
        c.wait(tag)
    # Not counted in the total: the latency of a change reaching an idle
    # client is a design choice (Dovecot waits 0.5 s to batch changes), not
    # command throughput; reported per round trip on its own.
    idle = (time.monotonic() - t) / max(nidles, 1)
    c2.cmd(b"LOGOUT")
    c.cmd(b"LOGOUT")
    total = sum(s for _, s in phases)
    phases.append(("idle", idle))
    print("ok %.4f %d %s" % (total, cmds,
          " ".join("%s=%.4f" % p for p in phases)))

def case(args):
    """case PORT BODIES IDLES ROOT: the timed client against the server
    whose process tree starts at ROOT (pid or pid file). Prints: ok TOTAL_S
    CMDS CMD/S RSS_KB PSS_KB HWM_KB NPROC CPU_S phase=S..., or fail
    REASON."""
    port, nb, ni, root = args
    p = int(root) if root.isdigit() else pidfile(root)
    if p is None:
        print("fail no pid in %s" % root)
        return
    sampler = Sampler([p])
    sampler.start()
    cpu0 = cpu_ticks([p])
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            client(port, nb, ni)
    except Exception as e:
        sampler.halt.set()
        sampler.join()
        print("fail %s: %s" % (type(e).__name__, str(e)[:200]))
        return
    sampler.halt.set()
    sampler.join()
    cpu = (cpu_ticks([p]) - cpu0) / os.sysconf("SC_CLK_TCK")
    v = buf.getvalue().split()
    total, cmds = float(v[1]), int(v[2])
    print("ok %.4f %d %.1f %d %d %d %d %.2f %s" % (total, cmds,
          cmds / total, sampler.rss, sampler.pss, status_kb(p, "VmHWM"),
          sampler.nproc, cpu, " ".join(v[3:])))

def idlemany(args):
    """idlemany PORT K ROOT: opens K connections that log in, select INBOX
    and enter IDLE (pipelined after the greeting), IDLE_PARALLEL being set
    up at a time; then waits 2 s and samples the server tree. Prints: ok K SETUP_S
    RSS_KB PSS_KB NPROC ALIVE (peak RSS/PSS over the setup and the final
    sample), or fail REASON."""
    import resource, selectors
    port, k, root = int(args[0]), int(args[1]), args[2]
    par = int(os.environ.get("IDLE_PARALLEL", "20"))
    need = k + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, max(hard, need)))
        except (ValueError, OSError) as e:
            print("fail RLIMIT_NOFILE %d: %s" % (need, e))
            return
    p = int(root) if root.isdigit() else pidfile(root)
    sampler = Sampler([p])
    sampler.start()
    user, pw = os.environ["IMAP_USER"], os.environ["IMAP_PASS"]
    script = ("a LOGIN %s %s\r\nb SELECT INBOX\r\nc IDLE\r\n" % (user, pw)).encode()
    sel = selectors.DefaultSelector()
    socks, done, pending, started = [], 0, 0, 0
    bufs = {}
    t0 = time.monotonic()
    deadline = t0 + float(os.environ.get("CASE_TIMEOUT", "600"))
    try:
        while done < k:
            while started < k and pending < par:
                s = socket.socket()
                s.setblocking(False)
                s.connect_ex(("127.0.0.1", port))
                socks.append(s)
                bufs[s] = [b"", False]
                sel.register(s, selectors.EVENT_READ)
                started += 1
                pending += 1
            if time.monotonic() > deadline:
                raise RuntimeError("timeout: %d of %d idling" % (done, k))
            for key, _ in sel.select(1):
                s = key.fileobj
                data = s.recv(65536)
                if not data:
                    raise RuntimeError("connection %d closed during setup "
                                       "(%d idling)" % (socks.index(s), done))
                b = bufs[s]
                b[0] += data
                if not b[1] and b"\r\n" in b[0]:
                    if not b[0].startswith(b"* OK"):
                        raise RuntimeError("greeting: %r" % b[0][:80])
                    s.setblocking(True)
                    s.sendall(script)
                    s.setblocking(False)
                    b[1] = True
                if b[1]:
                    for l in b[0].split(b"\r\n")[:-1]:
                        if l[:1] in (b"a", b"b", b"c") and l[2:4] != b"OK":
                            raise RuntimeError("reply: %r" % l[:80])
                    if b"\r\n+ " in b[0]:
                        sel.unregister(s)
                        del bufs[s]
                        done += 1
                        pending -= 1
                    elif len(b[0]) > 4096:
                        b[0] = b[0][-2048:]
        setup = time.monotonic() - t0
        time.sleep(2)
        alive = 0
        for s in socks:
            s.setblocking(False)
            try:
                alive += 0 if s.recv(4096) == b"" else 1
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        sampler.halt.set()
        sampler.join()
        print("ok %d %.2f %d %d %d %d" % (k, setup, sampler.rss, sampler.pss,
              sampler.nproc, alive))
    except Exception as e:
        sampler.halt.set()
        sampler.join()
        print("fail %s" % str(e)[:200])
    finally:
        for s in socks:
            s.close()

def greeting(port, timeout):
    """The server's first line (empty if none)."""
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
                    s.sendall(b"Z LOGOUT\r\n")
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
        if not [p for p in pids if running(p)]:
            return
        time.sleep(0.05)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass

def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "gen":
        gen(*args)
    elif cmd == "warm":
        client(args[0], 0, 0, warm_only=True)
    elif cmd == "case":
        case(args)
    elif cmd == "idlemany":
        idlemany(args)
    elif cmd == "greeting":
        print(greeting(*args))
    elif cmd == "free":
        sys.exit(0 if ports_free(args) else 1)
    elif cmd == "tree":
        roots = [p for p in (pidfile(a) for a in args) if p is not None]
        print(" ".join(str(p) for p in sorted(tree(roots))))
    elif cmd == "stop":
        stop(args)
    else:
        sys.exit("helper: unknown command " + cmd)

main()
EOF
export IMAP_USER="$USER_NAME" IMAP_PASS="$USER_PASS"

# Two unusual loopback ports: osprey IMAP, Dovecot IMAP.
if [ -n "${PORT_BASE:-}" ]; then
	base=$PORT_BASE
	$PY "$HELPER" free $base $((base + 1)) || {
		echo "run.sh: ports $base-$((base + 1)) are in use" >&2
		exit 1
	}
else
	tries=0
	while :; do
		base=$((21000 + $(od -An -N2 -tu2 /dev/urandom) % 8000))
		$PY "$HELPER" free $base $((base + 1)) && break
		tries=$((tries + 1))
		[ $tries -lt 20 ] || { echo "run.sh: no free ports" >&2; exit 1; }
	done
fi
OSPREY_PORT=$base
DC_PORT=$((base + 1))

# 2. The mailbox, generated once.
SRC="$WORK/src/Maildir"
echo "generating $N messages" >&2
$PY "$HELPER" gen "$SRC" "$N"

# 3. Dovecot, a private instance (dovecot -c FILE): IMAP only, on
# loopback, base_dir and state_dir under WORK, one passwd-file user stored
# as nobody in a Maildir under WORK; plaintext LOGIN allowed without TLS
# (the setting was renamed in 2.4).
DC_MAIL="$WORK/dovecot/home"
mkdir -p "$WORK/dovecot"
case "$(dovecot --version)" in
2.[0-3].*) cleartext="disable_plaintext_auth = no" ;;
*)	cleartext="auth_allow_cleartext = yes" ;;
esac
echo "$USER_NAME:{PLAIN}$USER_PASS:$NOBODY_UID:$NOBODY_GID::$DC_MAIL::" \
    >"$WORK/dovecot/passwd"
chmod 644 "$WORK/dovecot/passwd"
cat >"$DC_CONF" <<EOF
protocols = imap
listen = 127.0.0.1
ssl = no
$cleartext
base_dir = $WORK/dovecot/run
state_dir = $WORK/dovecot/state
log_path = $WORK/dovecot/dovecot.log
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:~/Maildir
passdb {
  driver = passwd-file
  args = $WORK/dovecot/passwd
}
userdb {
  driver = passwd-file
  args = $WORK/dovecot/passwd
}
service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $DC_PORT
  }
  inet_listener imaps {
    port = 0
  }
}
EOF
[ -z "$DOVECOT_EXTRA" ] || printf '%s\n' "$DOVECOT_EXTRA" >>"$DC_CONF"

# 4. osprey: one account with a password, data under WORK, filled for
# every run by `osprey import maildir` from the same files.
mkdir -p "$WORK/osprey"
cat >"$WORK/osprey/osprey.yaml" <<EOF
hostname: bench.test
data-dir: $WORK/osprey/data
user: nobody
workers: 2
modules: [imap]
listeners:
  - name: imap
    protocol: imap
    address: [127.0.0.1]
    port: $OSPREY_PORT
    tls: none
    allow-plaintext-auth: true
limits:
  connection-rate: [0, 0, 0]
  connections: [0, 0, 0]
log:
  level: warn
EOF
cat >"$WORK/osprey/domains.yaml" <<EOF
domains: {bench.test: {}}
accounts:
  $USER_NAME: {domain: bench.test, destinations: {$USER_NAME: {}}}
EOF
if ! "$OSPREY_BIN" -c "$WORK/osprey/osprey.yaml" config test >&2; then
	echo "run.sh: osprey refuses the benchmark configuration" >&2
	exit 1
fi

osp() { "$OSPREY_BIN" -c "$WORK/osprey/osprey.yaml" "$@"; }

start_osprey() {
	rm -rf "$WORK/osprey/data"
	ilog="$WORK/osprey/import.log"
	osp import maildir "$USER_NAME" INBOX "$SRC" >/dev/null 2>"$ilog" || {
		OSPREY_GREETING="import failed: $(tail -1 "$ilog")"
		return
	}
	printf '%s\n' "$USER_PASS" | osp setaccountpassword "$USER_NAME" \
	    >/dev/null 2>>"$ilog" || {
		OSPREY_GREETING="setaccountpassword failed: $(tail -1 "$ilog")"
		return
	}
	# The tools ran as root; the server runs as nobody.
	chown -R "$NOBODY_UID:$NOBODY_GID" "$WORK/osprey/data"
	$SERVER_WRAP "$OSPREY_BIN" -c "$WORK/osprey/osprey.yaml" serve \
	    >"$WORK/osprey/osprey.log" 2>&1 &
	OSPREY_PID=$!
	OSPREY_GREETING=$($PY "$HELPER" greeting "$OSPREY_PORT" 15)
}

start_dovecot() {
	rm -rf "$DC_MAIL"
	mkdir -p "$DC_MAIL"
	cp -a "$SRC" "$DC_MAIL/Maildir"
	chown -R "$NOBODY_UID:$NOBODY_GID" "$DC_MAIL"
	$SERVER_WRAP dovecot -c "$DC_CONF"
	b=$($PY "$HELPER" greeting "$DC_PORT" 15)
	case "$b" in
	"* OK"*) ;;
	*)	echo "run.sh: dovecot IMAP not answering: '$b'" >&2
		tail -20 "$WORK/dovecot/dovecot.log" >&2 || true
		exit 1 ;;
	esac
}

# One timed case; appends "SERVER RUN ok TOTAL CMDS CMD/S RSS PSS HWM
# NPROC CPU phase=S..." or "SERVER RUN fail REASON" to RES.
timed() {
	$PY "$HELPER" warm "$1" >/dev/null 2>"$WORK/helper.err" || {
		echo "fail warm-up: $(tail -1 "$WORK/helper.err")"
		return
	}
	$PY "$HELPER" case "$1" "$BODIES" "$IDLES" "$2" 2>"$WORK/helper.err" ||
	    echo "fail helper: $(tail -1 "$WORK/helper.err")"
}

run_osprey() {
	start_osprey
	case "$OSPREY_GREETING" in
	"* OK"*)	out=$(timed "$OSPREY_PORT" "$OSPREY_PID") ;;
	"")		out="fail no IMAP greeting" ;;
	"* BYE"*)	out="fail IMAP not available: $OSPREY_GREETING" ;;
	*)		out="fail $OSPREY_GREETING" ;;
	esac
	stop_osprey
	echo "osprey $run $out" >>"$RES"
	echo "run $run, osprey: $out" >&2
	case "$out" in
	"fail IMAP not available"*) ;;
	fail*) tail -5 "$WORK/osprey/osprey.log" >&2 || true ;;
	esac
}

run_dovecot() {
	start_dovecot
	out=$(timed "$DC_PORT" "$WORK/dovecot/run/master.pid")
	stop_dovecot
	echo "dovecot $run $out" >>"$RES"
	echo "run $run, dovecot: $out" >&2
	case "$out" in
	fail*) tail -10 "$WORK/dovecot/dovecot.log" >&2 || true ;;
	esac
}

median() {
	sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

RES="$WORK/results"
: >"$RES"
echo "imap benchmark: $N messages, $BODIES body fetches, $IDLES idle round" \
    "trips, $RUNS runs, ports $OSPREY_PORT/$DC_PORT, in $WORK" >&2
run=1
while [ "$run" -le "$RUNS" ]; do
	if [ $((run % 2)) = 1 ]; then
		run_osprey
		run_dovecot
	else
		run_dovecot
		run_osprey
	fi
	run=$((run + 1))
done

# 5. Part two: IDLE_CONNS (default 10000; 0 skips) concurrent connections
# logged in, INBOX selected, in IDLE; the servers' total RSS/PSS once all
# are idling (issue 5 target for osprey: under 200 MB). Once each, after
# the timed runs. Dovecot needs its limits raised: imap-login in
# "high-performance" mode (service_count = 0, one process for many
# connections), imap processes serving DC_IDLE_CLIENT_LIMIT (default 100)
# connections each (Dovecot's default is one process per connection:
# service_count = 1),
# mail_max_userip_connections (default 10 per user and IP) and
# RLIMIT_NOFILE of the master (inherited by its services).
IDLE_CONNS=${IDLE_CONNS:-10000}
DC_IDLE_CLIENT_LIMIT=${DC_IDLE_CLIENT_LIMIT:-100}
IDLE_DC=
IDLE_OS=
if [ "$IDLE_CONNS" -gt 0 ]; then
	# The hard limit can only be raised with CAP_SYS_RESOURCE (not in
	# every container): ask for what is needed, at most the hard limit.
	nofile=$((IDLE_CONNS * 2 + 4096))
	hard=$(ulimit -Hn)
	[ "$hard" = unlimited ] || [ "$nofile" -le "$hard" ] || nofile=$hard
	cp "$DC_CONF" "$DC_CONF.timed"
	cat >>"$DC_CONF" <<EOF
default_client_limit = $((IDLE_CONNS + 1000))
protocol imap {
  mail_max_userip_connections = $((IDLE_CONNS + 10))
}
service imap-login {
  service_count = 0
  process_min_avail = 2
  client_limit = $((IDLE_CONNS + 1000))
}
service imap {
  service_count = 0
  client_limit = $DC_IDLE_CLIENT_LIMIT
  process_limit = $((IDLE_CONNS / DC_IDLE_CLIENT_LIMIT + 10))
}
EOF
	echo "idle: $IDLE_CONNS connections to dovecot" >&2
	SERVER_WRAP="prlimit --nofile=$nofile:$nofile"
	start_dovecot
	$PY "$HELPER" warm "$DC_PORT" >/dev/null 2>"$WORK/helper.err" || true
	IDLE_DC=$(prlimit --nofile=$nofile:$nofile $PY "$HELPER" idlemany \
	    "$DC_PORT" "$IDLE_CONNS" "$WORK/dovecot/run/master.pid" \
	    2>"$WORK/helper.err") ||
	    IDLE_DC="fail helper: $(tail -1 "$WORK/helper.err")"
	stop_dovecot
	echo "idle, dovecot: $IDLE_DC" >&2
	case "$IDLE_DC" in
	fail*) tail -10 "$WORK/dovecot/dovecot.log" >&2 || true ;;
	esac
	mv "$DC_CONF.timed" "$DC_CONF"
	echo "idle: $IDLE_CONNS connections to osprey" >&2
	start_osprey
	case "$OSPREY_GREETING" in
	"* OK"*)	IDLE_OS=$(prlimit --nofile=$nofile:$nofile $PY "$HELPER" \
			    idlemany "$OSPREY_PORT" "$IDLE_CONNS" "$OSPREY_PID" \
			    2>"$WORK/helper.err") ||
			    IDLE_OS="fail helper: $(tail -1 "$WORK/helper.err")" ;;
	"* BYE"*)	IDLE_OS="fail IMAP not available" ;;
	*)		IDLE_OS="fail no IMAP greeting: $OSPREY_GREETING" ;;
	esac
	stop_osprey
	echo "idle, osprey: $IDLE_OS" >&2
fi

# 6. The table: medians over the successful runs; the cmd/s ratio is the
# median of the per-run ratios (the machine's speed drifts between runs).
col() {
	awk -v s="$1" -v c="$2" '$1 == s && $3 == "ok" { print $c }' "$RES" | median
}
phase() {
	awk -v s="$1" -v p="$2" '$1 == s && $3 == "ok" {
	    for (i = 12; i <= NF; i++) { split($i, a, "=");
	    if (a[1] == p) print a[2] * 1000 } }' "$RES" | median
}
nok() { awk -v s="$1" '$1 == s && $3 == "ok"' "$RES" | wc -l; }
firstfail() {
	awk -v s="$1" '$1 == s && $3 == "fail" {
	    $1 = $2 = $3 = ""; sub(/^ +/, ""); print; exit }' "$RES"
}
runratio() {
	awk '$3 == "ok" { r[$1 " " $2] = $6; n[$2] = 1 }
	    END { for (i in n) if (("osprey " i) in r && ("dovecot " i) in r)
	    print r["osprey " i] / r["dovecot " i] }' "$RES" | median
}
PHASES="login select flags envelope bodies search-hdr search-text store"
row() {
	# row NAME FAILURE
	ok=$(nok "$1")
	if [ "$ok" -gt 0 ]; then
		o_rss=$(col "$1" 7)
		o_hwm=$(col "$1" 9)
		[ "$1" != osprey ] ||
		    o_rss=$(echo "$o_rss $o_hwm" | awk '{ print ($2 > $1) ? $2 : $1 }')
		echo "$1 $ok/$RUNS $(col "$1" 4) $(col "$1" 6) $o_rss $(col "$1" 8) $(col "$1" 11)" |
		    awk '{ printf "%-10s %5s %9.2f %9.1f %12.1f %12.1f %7.2f\n",
		    $1, $2, $3, $4, $5 / 1024, $6 / 1024, $7 }'
	else
		printf '%-10s %5s %s\n' "$1" "0/$RUNS" "$2"
	fi
}
echo
printf '%-10s %5s %9s %9s %12s %12s %7s\n' server runs "total s" "cmd/s" \
    "peak RSS MB" "peak PSS MB" "CPU s"
status=0
row osprey "osprey: $(firstfail osprey | sed 's/^IMAP not available.*/IMAP not available/')"
row dovecot "dovecot failed: $(firstfail dovecot)"
r=$(runratio)
[ -z "$r" ] || printf '%-10s %5s %9s %8.2fx\n' osprey/dc "" "" "$r"
echo
printf '%-10s' "phase ms"
for p in $PHASES; do printf ' %11s' "$p"; done
printf ' %11s\n' idle/trip
for s in osprey dovecot; do
	[ "$(nok "$s")" -gt 0 ] || continue
	printf '%-10s' "$s"
	for p in $PHASES idle; do printf ' %11.1f' "$(phase "$s" "$p")"; done
	echo
done
echo
if [ "$IDLE_CONNS" -gt 0 ]; then
	case "$IDLE_DC" in ok*) ;; *) status=1 ;; esac
	printf '%-10s %7s %8s %12s %12s %6s %7s\n' idle conns "setup s" \
	    "RSS MB" "PSS MB" procs alive
	for s in osprey dovecot; do
		if [ $s = osprey ]; then v=$IDLE_OS; else v=$IDLE_DC; fi
		case "$v" in
		ok*)	echo "$s $v" | awk '{ printf "%-10s %7d %8.2f %12.1f %12.1f %6d %7d\n",
			    $1, $3, $4, $5 / 1024, $6 / 1024, $7, $8 }' ;;
		*)	printf '%-10s %s\n' "$s" "${v#fail }" ;;
		esac
	done
else
	echo "idle: not measured (IDLE_CONNS=0)"
fi
[ "$(nok osprey)" -eq "$RUNS" ] && [ "$(nok dovecot)" -eq "$RUNS" ] || status=1
echo
echo "$N messages; commands: LOGIN, SELECT, FETCH 1:* (FLAGS), FETCH 1:*"
echo "(ENVELOPE), $BODIES x FETCH n (BODY.PEEK[]) of random messages, UID"
echo "SEARCH HEADER Subject and TEXT, STORE +FLAGS on ranges, $IDLES IDLE"
echo "round trips (a second session's STORE seen by the idling one: not in"
echo "the total, shown as ms per trip; Dovecot delays notifications 0.5 s)."
echo "cmd/s: median of the successful runs (interleaved, fresh servers each"
echo "run, index warmed by an untimed SELECT); its ratio is the median of the"
echo "per-run ratios. Peak RSS: sum of VmRSS over the server's processes"
echo "sampled every 0.2 s (osprey: or its VmHWM if larger); PSS shares each"
echo "shared page among the processes mapping it. CPU: user+system time of"
echo "the server processes."
echo "idle: $IDLE_CONNS connections logged in, INBOX selected, in IDLE, held"
echo "2 s; peak RSS/PSS summed over the server's processes (Dovecot: imap"
echo "processes serving $DC_IDLE_CLIENT_LIMIT connections each, imap-login in"
echo "high-performance mode); alive: connections still open at the end."
exit $status
