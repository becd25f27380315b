# SPDX-License-Identifier: ISC
"""The six modules in the real osprey binary on loopback: until their
protocols exist, they say so at startup and refuse connections honestly
(IMAP BYE greeting, HTTP 503 after reading the request head). SMTP is
complete: it greets with 220 and does not warn."""
import os
import socket
import sys

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import Server, check, free_port, run, tmpdir  # noqa: E402

MODULES = ["imap", "http", "webmail", "transport-submission",
           "transport-socks"]


def config(dir, ports):
    return """hostname: mx.test.example
data-dir: %s/data
user: nobody
shutdown-timeout: 2s
listeners:
  - {name: mx, protocol: smtp, address: [127.0.0.1], port: %d, tls: none}
  - {name: sub, protocol: smtp, address: [127.0.0.1], port: %d, tls: none,
     role: submission}
  - {name: imap, protocol: imap, address: [127.0.0.1], port: %d, tls: none}
  - {name: web, protocol: http, address: [127.0.0.1], port: %d, tls: none,
     admin: true}
modules: [webmail, smtp, imap, http, transport-submission, transport-socks]
smtp:
  hostname: smtp.test.example
""" % ((dir,) + tuple(ports))


def read_all(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data
        data += chunk


class Env:
    def __init__(self):
        self.dir = tmpdir()
        if os.geteuid() == 0:
            os.chmod(self.dir, 0o755)
        self.ports = [free_port() for _ in range(4)]
        self.server = Server(self.dir, config(self.dir, self.ports))


env = None


def test_start_warns():
    global env
    env = Env()
    env.server.start()
    log = env.server.logtext()
    for m in MODULES:
        check(" warn %s " % m in log and "not implemented yet" in log,
              "no startup warning from %s:\n%s" % (m, log))
    check(" warn smtp " not in log, "smtp warns:\n" + log)


def test_smtp_greets():
    for port in env.ports[:2]:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"QUIT\r\n")
            data = read_all(s)
        # The module's hostname override is used (RFC 5321 §4.2).
        check(data.startswith(b"220 smtp.test.example ") and
              b"\r\n221 2.0.0 " in data, "smtp got %r" % data)


def test_imap_bye():
    with socket.create_connection(("127.0.0.1", env.ports[2]), timeout=5) as s:
        data = read_all(s)
    check(data == b"* BYE IMAP not implemented yet\r\n", "imap got %r" % data)


def test_http_503():
    for method in (b"GET", b"HEAD"):
        with socket.create_connection(("127.0.0.1", env.ports[3]), timeout=5) as s:
            s.sendall(method + b" /webmail/ HTTP/1.1\r\nHost: x\r\n")
            s.sendall(b"Accept: */*\r\n\r\n")
            data = read_all(s)
        head, _, body = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"),
              "http got %r" % data)
        check(b"\r\nConnection: close" in head, "no Connection: close")
        check((body == b"") == (method == b"HEAD"), "body for %s: %r" % (method, body))
        check(b"not implemented yet" in body or method == b"HEAD", "body %r" % body)
    # An endless request line is cut off with the same answer.
    with socket.create_connection(("127.0.0.1", env.ports[3]), timeout=5) as s:
        s.sendall(b"GET /" + b"a" * 20000)
        data = read_all(s)
    check(data.startswith(b"HTTP/1.1 503 "), "long line got %r" % data[:60])


def test_stop():
    rc = env.server.stop()
    check(rc == 0, "osprey exited %s" % rc)
    log = env.server.logtext()
    check(log.count(" refused ") >= 4, "refusals not logged:\n" + log)


run([test_start_warns, test_smtp_greets, test_imap_bye, test_http_503, test_stop])
