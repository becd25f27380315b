# SPDX-License-Identifier: ISC
"""Integration: the real osprey binary from the shipped configuration, on
loopback: config test, TLS, SIGHUP reload (bad config kept out, good one
applied), SIGTERM drain deadline, CLI usage errors."""
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import (OSPREY, Failure, Server, check, free_port, make_cert,  # noqa: E402
                         run, tmpdir)

SRC = os.environ.get("top_srcdir", ".")


def shipped_config(dir, ports, crt, key, extra=""):
    """The shipped osprey.yaml and conf.d, moved to loopback and free ports."""
    shutil.copytree(os.path.join(SRC, "conf.d"), os.path.join(dir, "conf.d"),
                    dirs_exist_ok=True)
    with open(os.path.join(SRC, "osprey.yaml")) as f:
        text = f.read()
    it = iter(ports)
    text = re.sub(r"(?m)^(\s+port:) \d+", lambda m: "%s %d" % (m.group(1), next(it)), text)
    text = text.replace('["0.0.0.0", "::"]', '["127.0.0.1"]')
    text = re.sub(r"(?m)^data-dir: .*", "data-dir: " + os.path.join(dir, "data"), text)
    text = re.sub(r"(?m)^user: .*", "user: nobody", text)
    text = re.sub(r"(?m)^hostname: .*", "hostname: localhost", text)
    text = re.sub(r"(?m)(- cert:) .*", r"\1 " + crt, text)
    text = re.sub(r"(?m)(  key:) .*", r"\1 " + key, text)
    return text + "shutdown-timeout: 2s\n" + extra


class Env:
    def __init__(self):
        self.dir = tmpdir()
        self.crt, self.key = make_cert(self.dir, "first", "first.test")
        self.crt2, self.key2 = make_cert(self.dir, "second", "second.test")
        self.ports = [free_port() for _ in range(5)]
        self.text = shipped_config(self.dir, self.ports, self.crt, self.key)
        self.server = Server(self.dir, self.text)
        if os.geteuid() == 0:
            # Started as root, osprey drops to `nobody`, which must still
            # read the config and keys when it reloads.
            os.chmod(self.dir, 0o755)
            for p in (self.key, self.key2):
                os.chmod(p, 0o644)


def peer_cn(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            check(s.version() in ("TLSv1.2", "TLSv1.3"), "TLS version %s" % s.version())
            der = s.getpeercert(binary_form=True)
            # A request through the TLS layer gets the http module's answer.
            s.settimeout(5)
            s.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            reply = s.recv(1024)
            check(reply.startswith(b"HTTP/1.1 "), "HTTP reply over TLS: %r" % reply)
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem,
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"CN\s*=\s*([^,/\n]+)", out)
    return m.group(1).strip() if m else out


def test_config_test_shipped():
    env = Env()
    r = subprocess.run([OSPREY, "-c", env.server.config, "config", "test"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "config test rc=%d: %s%s" % (r.returncode, r.stdout, r.stderr))


def test_config_test_errors():
    env = Env()
    lines = env.text.splitlines()
    lines.insert(3, "no-such-key: 1")
    env.server.write_config("\n".join(lines) + "\n")
    r = subprocess.run([OSPREY, "-c", env.server.config, "config", "test"],
                       capture_output=True, text=True)
    check(r.returncode == 1, "rc=%d" % r.returncode)
    check("%s:4:1: no-such-key:" % env.server.config in r.stderr, r.stderr)


def test_tls_reload_and_drain():
    env = Env()
    srv = env.server
    srv.start()
    try:
        https = env.ports[4]
        check(peer_cn(https) == "first.test", "first certificate served")
        if os.geteuid() == 0:
            with open("/proc/%d/status" % srv.proc.pid) as f:
                uids = re.search(r"(?m)^Uid:\s+(.*)$", f.read()).group(1).split()
            nobody = int(subprocess.run(["id", "-u", "nobody"], capture_output=True,
                                        text=True).stdout)
            check(all(int(u) == nobody for u in uids), "privileges dropped: %s" % uids)

        # A broken config: refused with file:line, the old one keeps running.
        before = len(srv.logtext())
        lines = env.text.splitlines()
        lines.insert(2, "bogus-key: 1")
        srv.write_config("\n".join(lines) + "\n")
        srv.signal(signal.SIGHUP)
        text = srv.wait_log("reload failed", start=before)
        check("%s:3:1: bogus-key:" % srv.config in text[before:],
              "error names file:line: " + text[before:])
        check(srv.proc.poll() is None, "still running")
        check(peer_cn(https) == "first.test", "old certificate kept")

        # A good config with another certificate: applied.
        before = len(srv.logtext())
        good = env.text.replace(env.crt, env.crt2).replace(env.key, env.key2)
        srv.write_config(good)
        srv.signal(signal.SIGHUP)
        srv.wait_log("reload done", start=before)
        check(peer_cn(https) == "second.test", "new certificate after reload")

        # SIGTERM with a connection stuck before its TLS handshake: the
        # server stops at the drain deadline (2s), not at the handshake
        # timeout.
        stuck = socket.create_connection(("127.0.0.1", https))
        time.sleep(0.2)
        t0 = time.monotonic()
        rc = srv.stop(timeout=15)
        took = time.monotonic() - t0
        stuck.close()
        check(rc == 0, "exit status %s" % rc)
        check(took < 5, "stopped in %.1fs" % took)
        check("shutdown" in srv.logtext(), "shutdown logged")
    finally:
        if srv.proc.poll() is None:
            srv.proc.kill()


def test_cli_usage():
    for args, rc in ((["frobnicate"], 2), (["-x", "version"], 2), ([], 2),
                     (["version"], 0), (["help", "serve"], 0), (["help", "nope"], 2),
                     (["config"], 2), (["dns", "lookup"], 2)):
        r = subprocess.run([OSPREY, "-c", "/nonexistent/osprey.yaml"] + args,
                           capture_output=True, text=True)
        check(r.returncode == rc, "%s: rc=%d want %d: %s" % (args, r.returncode, rc, r.stderr))
        if rc == 2:
            check("usage:" in r.stderr, "%s prints usage: %s" % (args, r.stderr))


if __name__ == "__main__":
    run([test_config_test_shipped, test_config_test_errors, test_tls_reload_and_drain,
         test_cli_usage])
