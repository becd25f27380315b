# SPDX-License-Identifier: ISC
"""Helpers for the SMTP integration tests: an osprey instance with SMTP
listeners, domains and accounts; a raw line-level SMTP client; reading
stored messages back through `osprey export maildir` (the product's path)
and byte for byte from the store (index.db prefix + message file)."""
import os
import re
import shutil
import signal
import sqlite3
import socket
import ssl
import subprocess
import time

from osprey_test import OSPREY, Failure, Server, check, free_port, make_cert, tmpdir

BUILD = os.environ.get("top_builddir", ".")
AUTH_CLIENT = os.environ.get("SMTP_AUTH_CLIENT",
                             os.path.join(BUILD, "tests", "tools", "smtp_auth_client"))

PASSWORD = "correct horse battery"

# Every kind of recipient of the delivery role (issue 4 §3): exact
# addresses, the "+" separator, a domain catch-all, an alias with two
# members, postmaster, and an IDNA domain with a UTF-8 localpart.
DOMAINS = """\
domains:
  example.com:
    localpart-catchall-separator: "+"
    postmaster-account: admin
  catchall.example:
    catchall-account: bob
  bücher.example: {}
postmaster-account: admin
accounts:
  alice:
    domain: example.com
    destinations:
      alice: {}
  bob:
    domain: example.com
    destinations:
      bob: {}
  admin:
    domain: example.com
    destinations:
      admin: {}
  joran:
    domain: xn--bcher-kva.example
    destinations:
      jöran@bücher.example: {}
aliases:
  team@example.com:
    members: [alice@example.com, bob@example.com]
    post-allowed-by: anyone
"""

SMTP_CONF = """\
smtp:
  hostname: mx.example.com
  max-message-size: 200k
  max-recipients: 100
  max-errors: 10
  auth-failure-delay: 100ms
  unknown-recipient-delay: 0s
"""

# Core `limits:` with every class disabled (0), for tests that are not
# about limits: the suite authenticates wrongly on purpose many times.
NOLIMITS = ("limits:\n  connection-rate: [0, 0, 0]\n  connections: [0, 0, 0]\n"
            "  auth-failures-per-minute: [0, 0, 0]\n  auth-failures-per-day: [0, 0, 0]\n")

ROOT = os.geteuid() == 0


def _as_nobody():
    """Started as root, osprey serve drops to `nobody`: the CLI commands
    that write the data dir must run as that user too."""
    import pwd
    pw = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(pw.pw_gid)
    os.setuid(pw.pw_uid)


def chown_nobody(path):
    import pwd
    pw = pwd.getpwnam("nobody")
    for root, dirs, files in os.walk(path):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for n in files:
            os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)


class SmtpEnv:
    """osprey serve with three SMTP listeners on free loopback ports:
    mx (delivery, STARTTLS), sub (submission, STARTTLS) and subs
    (submission, implicit TLS)."""

    def __init__(self, smtp=SMTP_CONF, limits=NOLIMITS, domains=DOMAINS, extra="",
                 start=True, passwords=("alice", "bob")):
        self.dir = tmpdir()
        self.data = os.path.join(self.dir, "data")
        self.crt, self.key = make_cert(self.dir, "server", "mx.example.com")
        self.mx, self.sub, self.subs = free_port(), free_port(), free_port()
        self.text = self.config_text(smtp, limits, extra)
        with open(os.path.join(self.dir, "domains.yaml"), "w") as f:
            f.write(domains)
        self.server = Server(self.dir, self.text)
        self.config = self.server.config
        self.nexport = 0
        if ROOT:
            os.chmod(self.dir, 0o755)
            os.makedirs(self.data, exist_ok=True)
            chown_nobody(self.dir)
        for a in passwords:
            self.set_password(a, PASSWORD)
        if start:
            self.start()

    def config_text(self, smtp, limits, extra):
        lst = ""
        for name, port, tls, role in (("mx", self.mx, "starttls", "delivery"),
                                      ("sub", self.sub, "starttls", "submission"),
                                      ("subs", self.subs, "implicit", "submission")):
            lst += ("  - name: %s\n    protocol: smtp\n    address: [\"127.0.0.1\"]\n"
                    "    port: %d\n    tls: %s\n    role: %s\n" % (name, port, tls, role))
        return ("hostname: mx.example.com\ndata-dir: %s\nworkers: 2\n%s"
                "shutdown-timeout: 2s\nmodules: [smtp]\nlog:\n  level: info\n"
                "tls:\n  certificates:\n    - cert: %s\n      key: %s\n"
                "listeners:\n%s%s%s%s" % (self.data, "user: nobody\n" if ROOT else "",
                                          self.crt, self.key, lst, smtp, limits, extra))

    def start(self):
        self.server.start()

    def restart(self, timeout=15):
        """Starts the server again after stop() or kill9(): waits for a
        " ready " logged after this point (Server.start would see the
        previous run's)."""
        srv = self.server
        before = len(srv.logtext())
        srv.log = open(srv.logpath, "ab")
        srv.proc = subprocess.Popen([OSPREY, "-c", srv.config, "serve"], stdout=srv.log,
                                    stderr=subprocess.STDOUT)
        srv.wait_log(" ready ", timeout, start=before)

    def stop(self):
        """SIGTERM; then the log must hold no sanitizer report (the
        suite also runs on an ASan/UBSan build). Returns the exit status."""
        try:
            rc = self.server.stop()
        finally:
            if self.server.proc is not None and self.server.proc.poll() is None:
                self.server.proc.kill()
                self.server.proc.wait()
        text = self.log()
        for needle in ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                       "ThreadSanitizer"):
            check(needle not in text, "sanitizer report in the server log:\n" +
                  text[text.find(needle) - 200:][:4000])
        return rc

    def kill9(self):
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def osprey(self, *args, stdin=None, ok=True, as_root=False):
        """A CLI command on this instance, as the server's user unless
        as_root (read-only commands an operator runs as root)."""
        p = subprocess.run([OSPREY, "-c", self.config] + list(args), input=stdin,
                           capture_output=True, timeout=60,
                           preexec_fn=_as_nobody if ROOT and not as_root else None)
        if ok and p.returncode != 0:
            raise Failure("osprey %s: exit %d: %s%s" % (" ".join(args), p.returncode,
                                                        p.stdout.decode(errors="replace"),
                                                        p.stderr.decode(errors="replace")))
        return p

    def set_password(self, account, password):
        self.osprey("setaccountpassword", account, stdin=password.encode())

    def messages(self, account, mailbox="Inbox"):
        """The account's stored messages (bytes, as stored), by uid, read
        with `osprey export maildir`."""
        self.nexport += 1
        out = os.path.join(self.dir, "export%d" % self.nexport)
        p = self.osprey("export", "maildir", account, out, mailbox, ok=False)
        if p.returncode != 0:
            err = p.stderr.decode(errors="replace")
            if "no such account" in err:
                return []
            raise Failure("export %s: %s" % (account, err))
        found = []
        for root, dirs, files in os.walk(out):
            if os.path.basename(root) not in ("cur", "new"):
                continue
            for name in files:
                m = re.search(r"\.M(\d+)P", name)
                with open(os.path.join(root, name), "rb") as f:
                    found.append((int(m.group(1)) if m else 0, f.read()))
        shutil.rmtree(out, True)
        return [data for _, data in sorted(found)]

    def raw_messages(self, account, mailbox="Inbox"):
        """The account's stored messages byte for byte (the export converts
        CRLF to LF): the prefix from index.db followed by the message file,
        by uid."""
        path = os.path.join(self.data, "accounts", account, "index.db")
        if not os.path.exists(path):
            return []
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
        try:
            rows = db.execute(
                "SELECT m.id, m.prefix FROM messages m JOIN mailboxes b ON "
                "b.id = m.mailbox_id WHERE b.name = ? AND b.removed = 0 AND "
                "m.expunged = 0 ORDER BY m.uid", (mailbox,)).fetchall()
        finally:
            db.close()
        out = []
        for id, prefix in rows:
            with open(os.path.join(self.data, "accounts", account, "msg",
                                   str(id // 8192), str(id)), "rb") as f:
                out.append(bytes(prefix or b"") + f.read())
        return out

    def count(self, account, mailbox="Inbox"):
        """Live messages of a mailbox, from index.db (cheap for thousands;
        the export path is exercised by messages())."""
        path = os.path.join(self.data, "accounts", account, "index.db")
        if not os.path.exists(path):
            return 0
        db = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=10)
        try:
            return db.execute(
                "SELECT count(*) FROM messages m JOIN mailboxes b ON b.id = m.mailbox_id "
                "WHERE b.name = ? AND b.removed = 0 AND m.expunged = 0",
                (mailbox,)).fetchone()[0]
        finally:
            db.close()

    def log(self):
        return self.server.logtext()

    def client_ctx(self, cert=None, key=None):
        """TLS context that verifies the server's certificate."""
        ctx = ssl.create_default_context(cafile=self.crt)
        ctx.check_hostname = False  # the name is checked below where needed
        if cert is not None:
            ctx.load_cert_chain(cert, key)
        return ctx


# ---- raw client -------------------------------------------------------------

class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines  # text after "NNN-" / "NNN "
        first = lines[0] if lines else ""
        m = re.match(r"([245]\.\d{1,3}\.\d{1,3})(?: |$)", first)
        self.enh = m.group(1) if m else None
        self.text = "\n".join(lines)

    def __repr__(self):
        return "%d %s" % (self.code, " / ".join(self.lines))


def expect(r, code, enh=None, what="", enhanced=True):
    """Asserts reply code and, when given, the enhanced status code."""
    check(r.code == code, "%s: want %d%s, got %r" % (what, code,
                                                     " " + enh if enh else "", r))
    if enh is not None:
        check(r.enh == enh, "%s: want enhanced code %s, got %r" % (what, enh, r))
    elif enhanced and code != 220 and r.code // 100 != 3:
        # RFC 2034: every reply but the greeting and the EHLO reply
        # carries an enhanced status code whose class matches.
        check(r.enh is not None and r.enh[0] == str(code)[0],
              "%s: no enhanced status code in %r" % (what, r))
    return r


class Raw:
    """Line-level SMTP client on a plain or TLS socket."""

    def __init__(self, port, tls=None, timeout=10, greet=True, source=None,
                 host="127.0.0.1"):
        self.sock = socket.create_connection(
            (host, port), timeout=timeout,
            source_address=(source, 0) if source is not None else None)
        self.buf = b""
        self.tls = False
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock, server_hostname="localhost")
            self.tls = True
        self.greeting = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by server (pending %r)" % self.buf)
        self.buf += chunk

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self):
        lines = []
        while True:
            line = self.line().decode("utf-8", "replace")
            check(len(line) >= 3 and line[:3].isdigit() and
                  (len(line) == 3 or line[3] in " -"), "malformed reply line %r" % line)
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return Reply(int(line[:3]), lines)

    def cmd(self, text):
        self.send(text + "\r\n" if isinstance(text, str) else text + b"\r\n")
        return self.reply()

    def ehlo(self, name="client.example"):
        r = self.cmd("EHLO " + name)
        expect(r, 250, what="EHLO", enhanced=False)
        return [l.upper() for l in r.lines[1:]]

    def starttls(self, ctx):
        expect(self.cmd("STARTTLS"), 220, "2.0.0", "STARTTLS")
        check(self.buf == b"", "bytes after the 220 of STARTTLS: %r" % self.buf)
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        self.tls = True

    def closed(self, timeout=5):
        """True when the server closes the connection (EOF) in time."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, TimeoutError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def dot_stuff(msg):
    """DATA encoding of a CRLF message (RFC 5321 §4.5.2) with its end."""
    out = re.sub(rb"(?m)^\.", b"..", msg)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


def split_added(stored, sent):
    """Checks stored == added header lines + sent, byte for byte, and
    returns the added header block (text)."""
    check(stored.endswith(sent), "stored message does not end with what was sent:\n"
          "stored %r\nsent   %r" % (stored[-len(sent) - 200:], sent))
    added = stored[:len(stored) - len(sent)]
    check(added == b"" or added.endswith(b"\r\n"), "added part %r" % added)
    for line in added.split(b"\r\n")[:-1]:
        check(re.match(rb"[A-Za-z0-9-]+:|[ \t]", line) is not None,
              "added part is not header lines: %r" % line)
    return added.decode("utf-8", "replace")


def headers(block):
    """Unfolded header fields of a header block: [(name lower, value)]."""
    out = []
    for line in re.split(r"\r?\n", block):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif ":" in line:
            n, v = line.split(":", 1)
            out.append((n.strip().lower(), v.strip()))
    return out


def swaks(port, *args, timeout=60):
    """Runs swaks against 127.0.0.1:port; (exit status, transcript)."""
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % port, "--timeout", "20"]
                       + list(args), capture_output=True, timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def wait_until(fn, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise Failure("timeout waiting for " + what)


__all__ = ["AUTH_CLIENT", "BUILD", "DOMAINS", "NOLIMITS", "PASSWORD", "SMTP_CONF", "SmtpEnv", "Raw",
           "Reply", "expect", "dot_stuff", "split_added", "headers", "swaks",
           "wait_until", "Failure", "check", "free_port", "make_cert", "tmpdir"]
