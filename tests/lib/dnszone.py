#!/usr/bin/python3
# SPDX-License-Identifier: ISC
# Test fixture: DNSSEC-signed zones served by nsd on loopback, plus a
# tampered copy on a second nsd whose answers must validate as bogus.
"""usage: dnszone.py start DIR [OWNER_PID] | stop DIR

start  writes and signs the zones example.test. and 127.in-addr.arpa.
       under DIR (ECDSAP256SHA256, ldns-keygen/ldns-signzone), starts nsd
       on a free 127.0.0.1 port for the signed zones and a second nsd for
       a tampered copy (an A record changed after signing), waits until
       both answer, and prints on stdout:
           port=PORT
           tampered_port=PORT
           anchors=DIR/anchors.ds      (the KSKs' DS records, one a line)
           anchor=<first DS record>
       With OWNER_PID, a watchdog stops nsd when that process is gone,
       so a crashed test leaves no server behind.
stop   stops both nsd instances (by the pids in their pid files).

nsd comes from $NSD, else PATH and /usr/sbin. When nsd or the ldns tools
are missing the fixture fails (exit 1), or skips (exit 77) when
OSPREY_ALLOW_SKIP is set: CI installs them, so there a missing tool is a
failure, not a skip. Python standard library only.
"""

import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time

ZONE = "example.test."
REVZONE = "127.in-addr.arpa."
TLSA_HEX = ("8d02536c887482bc34ff54e41d2ba659bf85b341a0a20afadb5813dcfbcf286d")
DKIM_KEY = ("MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDwIRP/UC3SBsEmGqZ9ZJW3/DkM"
            "oGeLnQg1fWn7/zYtIxN2SnFCjxOCKG9v3b4jYfcTNh5ijSnDQ6mJNOn8EaVoPgA7"
            "BKwX4NpqIxmGaN9qhBsCfT3iBsMvGBoQ7ZRpdH0iAnFWYOWoEK3ZzPC2ZZEaYNj5"
            "t3ZcFmNLUnWyEXbeRwIDAQAB")

EXAMPLE_ZONE = f"""$ORIGIN {ZONE}
$TTL 3600
@	IN SOA	ns.example.test. hostmaster.example.test. (
		2024010101 3600 900 604800 300 )
@	IN NS	ns
ns	IN A	127.0.0.53
@	IN MX	10 mx
@	IN A	127.0.0.10
@	IN AAAA	2001:db8::10
@	IN TXT	"v=spf1 mx -all"
mx	IN A	127.0.0.25
mx	IN AAAA	2001:db8::25
long	IN TXT	"first string;" " second string;" " third string"
_dmarc	IN TXT	"v=DMARC1; p=reject; rua=mailto:dmarc@example.test"
sel._domainkey	IN TXT	"v=DKIM1; k=rsa; " "p={DKIM_KEY}"
_mta-sts	IN TXT	"v=STSv1; id=20240101T000000"
_smtp._tls	IN TXT	"v=TLSRPTv1; rua=mailto:tlsrpt@example.test"
_25._tcp.mx	IN TLSA	3 1 1 {TLSA_HEX}
www	IN CNAME	mx
alias	IN CNAME	www
"""

REV_ZONE = f"""$ORIGIN {REVZONE}
$TTL 3600
@	IN SOA	ns.example.test. hostmaster.example.test. (
		2024010101 3600 900 604800 300 )
@	IN NS	ns.example.test.
25.0.0	IN PTR	mx.example.test.
"""


def fail(msg, skippable=True):
    sys.stderr.write(f"dnszone: {msg}\n")
    if skippable and os.environ.get("OSPREY_ALLOW_SKIP"):
        sys.stderr.write("dnszone: skipping (OSPREY_ALLOW_SKIP is set)\n")
        sys.exit(77)
    sys.exit(1)


def find_tool(name, env=None):
    if env and os.environ.get(env):
        path = os.environ[env]
        if os.access(path, os.X_OK):
            return path
    path = shutil.which(name, path=os.environ.get("PATH", "") +
                        ":/usr/sbin:/sbin:/usr/bin")
    if path is None:
        fail(f"{name} not found: install the Debian package "
             f"{'nsd' if name == 'nsd' else 'ldnsutils'}")
    return path


def run(cmd, cwd):
    p = subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True)
    if p.returncode != 0:
        fail(f"{' '.join(cmd)}: exit {p.returncode}: {p.stderr.strip()}",
             skippable=False)
    return p.stdout.strip()


def sign(workdir, origin, text):
    """Writes and signs one zone; returns (signed file, DS record)."""
    keygen = find_tool("ldns-keygen")
    signzone = find_tool("ldns-signzone", "LDNS_SIGNZONE")
    base = origin.rstrip(".")
    zfile = os.path.join(workdir, base + ".zone")
    with open(zfile, "w") as f:
        f.write(text)
    ksk = run([keygen, "-a", "ECDSAP256SHA256", "-k", base], workdir)
    zsk = run([keygen, "-a", "ECDSAP256SHA256", base], workdir)
    # NSEC (not NSEC3): denial proofs are plain NSEC records (RFC 4035 §3.1.3)
    run([signzone, "-i", "20240101000000", "-e", "20350101000000",
         "-o", origin, zfile, ksk, zsk], workdir)
    with open(os.path.join(workdir, ksk + ".ds")) as f:
        ds = " ".join(f.read().split())
    return zfile + ".signed", ds


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1 (nsd needs both)."""
    for _ in range(50):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            u.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    fail("no free port on 127.0.0.1", skippable=False)


def query_soa(port, name=ZONE, timeout=0.2):
    """True when a server on port answers SOA for name with NOERROR."""
    qid = random.randrange(65536)
    wire = b"".join(bytes([len(label)]) + label.encode()
                    for label in name.rstrip(".").split(".")) + b"\0"
    pkt = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 0) + wire + \
        struct.pack("!HH", 6, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        data, _ = s.recvfrom(4096)
    except OSError:
        return False
    finally:
        s.close()
    if len(data) < 12:
        return False
    rid, flags, _, ancount = struct.unpack("!HHHH", data[:8])
    return rid == qid and flags & 0x8000 and flags & 0xF == 0 and ancount > 0


def nsd_conf(d, port, zones):
    text = f"""server:
	ip-address: 127.0.0.1@{port}
	port: {port}
	do-ip6: no
	username: ""
	chroot: ""
	database: ""
	zonesdir: "{d}"
	zonelistfile: "{d}/zone.list"
	xfrdfile: "{d}/xfrd.state"
	xfrdir: "{d}"
	pidfile: "{d}/nsd.pid"
	logfile: "{d}/nsd.log"
	server-count: 1
	verbosity: 0
	hide-version: yes
	refuse-any: yes
remote-control:
	control-enable: no
"""
    for name, zfile in zones:
        text += f"zone:\n\tname: {name}\n\tzonefile: \"{zfile}\"\n"
    with open(os.path.join(d, "nsd.conf"), "w") as f:
        f.write(text)
    return os.path.join(d, "nsd.conf")


def read_pid(d):
    try:
        with open(os.path.join(d, "nsd.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    """pid runs (a zombie does not count: nsd's parent may be an init
    that never reaps)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, TypeError):
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def stop_one(d):
    pid = read_pid(d)
    if pid is None:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(100):
        if not alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def start_nsd(nsd, d, zones):
    """Starts nsd on a free port; retries when another process took it."""
    os.makedirs(d, exist_ok=True)
    for _ in range(5):
        port = free_port()
        conf = nsd_conf(d, port, zones)
        p = subprocess.run([nsd, "-c", conf], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if p.returncode != 0:
            log = p.stdout.strip()
            stop_one(d)
            continue
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if query_soa(port):
                return port
            time.sleep(0.05)
        log = open(os.path.join(d, "nsd.log")).read() \
            if os.path.exists(os.path.join(d, "nsd.log")) else ""
        stop_one(d)
    fail(f"nsd did not start in {d}: {log.strip()[-500:]}", skippable=False)


def start(workdir):
    workdir = os.path.abspath(workdir)
    nsd = find_tool("nsd", "NSD")
    find_tool("ldns-keygen")
    find_tool("ldns-signzone", "LDNS_SIGNZONE")
    keys = os.path.join(workdir, "keys")
    os.makedirs(keys, exist_ok=True)
    signed, ds = sign(keys, ZONE, EXAMPLE_ZONE)
    rsigned, rds = sign(keys, REVZONE, REV_ZONE)
    anchors = os.path.join(workdir, "anchors.ds")
    with open(anchors, "w") as f:
        f.write(ds + "\n" + rds + "\n")

    good = os.path.join(workdir, "good")
    bad = os.path.join(workdir, "tampered")
    for d in (good, bad):
        os.makedirs(d, exist_ok=True)
    shutil.copy(signed, os.path.join(good, "example.test.zone"))
    shutil.copy(rsigned, os.path.join(good, "rev.zone"))
    # The tampered copy: mx's address changed after signing, so its RRSIG
    # no longer verifies (RFC 4035 §5.3) while every key still does.
    with open(signed) as f:
        text = f.read()
    text, n = re.subn(r"^(mx\.example\.test\.\s+\d+\s+IN\s+A\s+)127\.0\.0\.25$",
                      r"\g<1>127.0.0.66", text, flags=re.M)
    if n != 1:
        fail("could not tamper with the signed zone", skippable=False)
    with open(os.path.join(bad, "example.test.zone"), "w") as f:
        f.write(text)
    shutil.copy(rsigned, os.path.join(bad, "rev.zone"))

    zones = [(ZONE, "example.test.zone"), (REVZONE, "rev.zone")]
    port = start_nsd(nsd, good, zones)
    try:
        tport = start_nsd(nsd, bad, zones)
    except SystemExit:
        stop_one(good)
        raise
    print(f"port={port}")
    print(f"tampered_port={tport}")
    print(f"anchors={anchors}")
    print(f"anchor={ds}")
    sys.stdout.flush()


def watchdog(workdir, owner):
    """Detached process: stops nsd once the owner (the test) has exited,
    however it ended, or exits when nsd was stopped normally."""
    if os.fork() != 0:
        return
    os.setsid()
    if os.fork() != 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    pids = [read_pid(os.path.join(workdir, sub))
            for sub in ("good", "tampered")]
    while True:
        time.sleep(0.5)
        if not any(alive(pid) for pid in pids):
            os._exit(0)
        if not alive(owner):
            stop(workdir)
            os._exit(0)


def stop(workdir):
    workdir = os.path.abspath(workdir)
    for sub in ("good", "tampered"):
        stop_one(os.path.join(workdir, sub))


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[1] not in ("start", "stop") \
            or (len(sys.argv) == 4 and sys.argv[1] != "start"):
        sys.stderr.write(__doc__)
        sys.exit(2)
    if sys.argv[1] == "start":
        start(sys.argv[2])
        if len(sys.argv) == 4:
            watchdog(os.path.abspath(sys.argv[2]), int(sys.argv[3]))
    else:
        stop(sys.argv[2])


if __name__ == "__main__":
    main()
