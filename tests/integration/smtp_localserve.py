# SPDX-License-Identifier: ISC
"""Integration: `osprey localserve -dir DIR` on its fixed loopback ports
(SMTP 1025, submission 1587, submissions 1465): the printed login, any
recipient delivered to osprey@localhost, login without TLS on 1587, and
the failure simulations of mox localserve (temperror, permerror, the
mailfrom/rcptto prefixes). Skipped (exit 77) when the ports are busy."""
import os
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import OSPREY, Failure, check, run, tmpdir  # noqa: E402
from smtp_helpers import Raw, dot_stuff, expect  # noqa: E402

PORTS = (1025, 1587, 1465, 1143, 1993, 1080, 1443)
USER, PASS = "osprey@localhost", "ospreyosprey"


def ports_free():
    for port in PORTS:
        for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            try:
                with socket.socket(fam, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((host, port))
            except OSError as e:
                if fam == socket.AF_INET6 and e.errno == 99:  # no ::1 here
                    continue
                return "port %d on %s: %s" % (port, host, e)
    return None


class Local:
    def __init__(self):
        self.dir = os.path.join(tmpdir(), "ls")
        self.out = os.path.join(os.path.dirname(self.dir), "localserve.out")
        self.proc = None
        self.n = 0

    def start(self):
        self.f = open(self.out, "ab")
        before = self.text()
        env = dict(os.environ)
        env["HOME"] = os.path.dirname(self.dir)
        self.proc = subprocess.Popen([OSPREY, "localserve", "-dir", self.dir],
                                     stdout=self.f, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while " ready " not in self.text()[len(before):]:
            if self.proc.poll() is not None:
                raise Failure("localserve exited %d:\n%s" % (self.proc.returncode, self.text()))
            if time.monotonic() > deadline:
                raise Failure("localserve not ready:\n" + self.text())
            time.sleep(0.05)

    def text(self):
        try:
            with open(self.out, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def messages(self):
        self.n += 1
        out = os.path.join(os.path.dirname(self.dir), "export%d" % self.n)
        p = subprocess.run([OSPREY, "-c", os.path.join(self.dir, "osprey.yaml"), "export",
                            "maildir", "osprey", out, "Inbox"], capture_output=True,
                           timeout=60)
        check(p.returncode == 0, "export: %s" % p.stderr.decode(errors="replace"))
        msgs = []
        for root, _, files in os.walk(out):
            for name in files:
                if os.path.basename(root) in ("cur", "new"):
                    with open(os.path.join(root, name), "rb") as f:
                        msgs.append(f.read())
        shutil.rmtree(out, True)
        return msgs


LS = None


def ls():
    global LS
    if LS is None:
        LS = Local()
        LS.start()
    return LS


def has(tok):
    return [m for m in ls().messages() if tok.encode() in m]


def test_first_run_prints_login():
    text = ls().text()
    check(USER in text and PASS in text, "login printed at start:\n" + text)
    for f in ("osprey.yaml", "localhost.crt", "localhost.key"):
        check(os.path.exists(os.path.join(ls().dir, f)), f + " created")


def test_submission_without_tls():
    tok = uuid.uuid4().hex[:12]
    with smtplib.SMTP("127.0.0.1", 1587, local_hostname="client.example", timeout=15) as s:
        s.ehlo()
        check(s.has_extn("auth"), "AUTH offered on 1587 without STARTTLS: %r" %
              s.esmtp_features)
        s.login(USER, PASS)
        s.sendmail(USER, ["someone@far-away.example", "x@example.org"],
                   ("From: %s\r\nSubject: ls %s\r\n\r\nhi\r\n" % (USER, tok)).encode())
    check(len(has(tok)) >= 1, "delivered to osprey@localhost")


def test_submissions_implicit_tls():
    tok = uuid.uuid4().hex[:12]
    ctx = ssl.create_default_context(cafile=os.path.join(ls().dir, "localhost.crt"))
    with smtplib.SMTP_SSL("localhost", 1465, timeout=15, context=ctx) as s:
        s.login(USER, PASS)
        s.sendmail(USER, ["a@b.example"],
                   ("From: %s\r\nSubject: ls %s\r\n\r\nhi\r\n" % (USER, tok)).encode())
    check(len(has(tok)) == 1, "delivered")


def test_delivery_any_recipient():
    tok = uuid.uuid4().hex[:12]
    with smtplib.SMTP("127.0.0.1", 1025, local_hostname="client.example", timeout=15) as s:
        s.sendmail("sender@remote.example", ["whoever@whatever.example"],
                   ("Subject: ls %s\r\n\r\nhi\r\n" % tok).encode())
    check(len(has(tok)) == 1, "delivered to osprey@localhost")
    # ::1 as well, where the machine has IPv6 loopback.
    try:
        socket.create_connection(("::1", 1025), timeout=5).close()
    except OSError as e:
        print("     no IPv6 loopback (%s): ::1 not tested" % e)
        return
    tok = uuid.uuid4().hex[:12]
    with smtplib.SMTP("::1", 1025, local_hostname="client.example", timeout=15) as s:
        s.sendmail("sender@remote.example", ["v6@whatever.example"],
                   ("Subject: ls %s\r\n\r\nhi\r\n" % tok).encode())
    check(len(has(tok)) == 1, "delivered over ::1")


def test_simulated_failures():
    with Raw(1025) as r:
        r.ehlo()
        rep = r.cmd("MAIL FROM:<mailfromtemperror@remote.example>")
        check(rep.code == 451 and rep.enh and rep.enh[0] == "4", "mailfrom temperror: %r" % rep)
        rep = r.cmd("MAIL FROM:<mailfrompermerror@remote.example>")
        check(rep.code == 550 and rep.enh and rep.enh[0] == "5", "mailfrom permerror: %r" % rep)
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        rep = r.cmd("RCPT TO:<rcpttotemperror@example.org>")
        check(rep.code == 451 and rep.enh and rep.enh[0] == "4", "rcptto temperror: %r" % rep)
        rep = r.cmd("RCPT TO:<rcpttopermerror@example.org>")
        check(rep.code == 550 and rep.enh and rep.enh[0] == "5", "rcptto permerror: %r" % rep)
        # Without the prefix, the failure comes at the end of the data.
        for lp, code in (("temperror", 451), ("permerror", 550)):
            tok = uuid.uuid4().hex[:12]
            expect(r.cmd("RSET"), 250)
            expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
            expect(r.cmd("RCPT TO:<%s@example.org>" % lp), 250, what=lp + " at RCPT")
            expect(r.cmd("DATA"), 354)
            r.send(dot_stuff(("Subject: ls %s\r\n\r\nhi\r\n" % tok).encode()))
            rep = r.reply()
            check(rep.code == code and rep.enh and rep.enh[0] == str(code)[0],
                  "%s at DATA: %r" % (lp, rep))
            check(not has(tok), lp + ": not delivered")
    # "timeout": the command is not answered (mox sleeps an hour).
    with Raw(1025) as r:
        r.ehlo()
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        r.send("RCPT TO:<rcpttotimeout@example.org>\r\n")
        r.sock.settimeout(2)
        try:
            got = r.sock.recv(100)
        except (socket.timeout, TimeoutError):
            got = None
        check(got is None, "rcptto timeout answered at once: %r" % got)


def test_clean_shutdown():
    l = ls()
    l.stop()
    check(l.proc.returncode == 0, "exit status %r" % l.proc.returncode)
    text = l.text()
    for needle in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        check(needle not in text, "sanitizer report:\n" + text[text.find(needle) - 200:][:4000])


if __name__ == "__main__":
    busy = ports_free()
    if busy is not None:
        print("SKIP: localserve needs its fixed ports: %s" % busy)
        sys.exit(77)
    try:
        run([test_first_run_prints_login, test_submission_without_tls,
             test_submissions_implicit_tls, test_delivery_any_recipient,
             test_simulated_failures, test_clean_shutdown])
    finally:
        if LS is not None:
            LS.stop()
