# SPDX-License-Identifier: ISC
"""Integration: abuse limits of the SMTP module on the real binary (open
connections and connection rate per IP class, failed authentications,
slow mode, per-account daily sending limits), durability of an
acknowledged message across kill -9, and a postfix smtp-source load run."""
import base64
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import run  # noqa: E402
from smtp_helpers import (DOMAINS, NOLIMITS, PASSWORD, SMTP_CONF, Raw, SmtpEnv,  # noqa: E402
                          check, dot_stuff, expect)



def limits(**kv):
    text = "limits:\n"
    for k in ("connection-rate", "connections", "auth-failures-per-minute",
              "auth-failures-per-day"):
        text += "  %s: %s\n" % (k, kv.get(k.replace("-", "_"), "[0, 0, 0]"))
    return text


def refused(port, what):
    """A connection over a limit: 421 with an enhanced code, then closed."""
    r = Raw(port, greet=False)
    try:
        rep = r.reply()
        expect(rep, 421, what=what)
        check(rep.enh.startswith("4."), "%s: %r" % (what, rep))
        check(r.closed(), "%s: closed after 421" % what)
        return rep
    finally:
        r.close()


def test_open_connections():
    with SmtpEnv(limits=limits(connections="[3, 0, 0]")) as e:
        conns = [Raw(e.mx) for _ in range(3)]
        for c in conns:
            expect(c.greeting, 220, what="within the limit")
        refused(e.mx, "4th open connection")
        # The limit counts per IP over every listener.
        refused(e.sub, "4th open connection, other listener")
        # Open ones keep working.
        c = conns[0]
        c.ehlo()
        expect(c.cmd("NOOP"), 250, "2.0.0")
        # Recovery: one closes, a new one is served.
        expect(conns[1].cmd("QUIT"), 221)
        check(conns[1].closed(), "QUIT closes")
        conns[1].close()
        deadline = time.monotonic() + 5
        while True:
            r = Raw(e.mx, greet=False)
            rep = r.reply()
            if rep.code == 220 or time.monotonic() > deadline:
                break
            r.close()
            time.sleep(0.1)
        expect(rep, 220, what="after one closed")
        r.close()
        for c in conns:
            c.close()
        check(re.search(r"refused address=127\.0\.0\.1 listener=mx .*connections", e.log()),
              "refusal logged with its reason:\n" + e.log()[-2000:])


def test_ip_classes():
    """Limits per IP class: /32 and /26 counted separately (loopback has
    all of 127/8 to connect from)."""
    with SmtpEnv(limits=limits(connections="[1, 2, 0]")) as e:
        a = Raw(e.mx, source="127.0.0.1")
        expect(a.greeting, 220, what="first from 127.0.0.1")
        refused_from(e.mx, "127.0.0.1", "second from the same /32")
        b = Raw(e.mx, source="127.0.0.2")
        expect(b.greeting, 220, what="another /32 in the same /26")
        refused_from(e.mx, "127.0.0.3", "third in the /26")
        c = Raw(e.mx, source="127.0.0.70")
        expect(c.greeting, 220, what="another /26")
        for x in (a, b, c):
            x.close()


def refused_from(port, source, what):
    r = Raw(port, greet=False, source=source)
    try:
        expect(r.reply(), 421, what=what)
        check(r.closed(), what + ": closed")
    finally:
        r.close()


def test_connection_rate():
    with SmtpEnv(limits=limits(connection_rate="[5, 0, 0]")) as e:
        for i in range(5):
            with Raw(e.mx) as r:
                expect(r.greeting, 220, what="connection %d" % (i + 1))
                expect(r.cmd("QUIT"), 221)
        rep = refused(e.mx, "6th connection in a minute")
        check("rate" in rep.text.lower() or "too many" in rep.text.lower(),
              "reply says why: %r" % rep)


def wrong_auth(port, e):
    with smtplib.SMTP_SSL("127.0.0.1", port, timeout=30, context=e.client_ctx()) as s:
        s.ehlo()
        s.user, s.password = "alice@example.com", "wrong"
        try:
            s.auth("PLAIN", s.auth_plain)
        except smtplib.SMTPAuthenticationError as ex:
            return ex.smtp_code, ex.smtp_error
        return 235, b""


def test_auth_failure_limit():
    with SmtpEnv(limits=limits(auth_failures_per_minute="[2, 0, 0]")) as e:
        for i in range(2):
            code, resp = wrong_auth(e.subs, e)
            check(code == 535 and resp.startswith(b"5.7.8"), "failure %d: %d %r" %
                  (i + 1, code, resp))
        # Over the limit: even the right password gets 421, and the
        # connection is closed.
        r = Raw(e.subs, tls=e.client_ctx())
        try:
            r.ehlo()
            ir = base64.b64encode(b"\0alice@example.com\0" + PASSWORD.encode()).decode()
            rep = r.cmd("AUTH PLAIN " + ir)
            expect(rep, 421, what="AUTH over the failure limit")
            check(r.closed(), "closed after 421")
        finally:
            r.close()
        # Another protocol's view is the same core limiter; here: the
        # other submission listener.
        r = Raw(e.sub)
        try:
            r.ehlo()
            r.starttls(e.client_ctx())
            r.ehlo()
            ir = base64.b64encode(b"\0alice@example.com\0" + PASSWORD.encode()).decode()
            expect(r.cmd("AUTH PLAIN " + ir), 421, what="AUTH over the limit, port 587")
        finally:
            r.close()


def read_for(r, seconds, until):
    """Bytes received within `seconds` or until `until` is in them."""
    deadline = time.monotonic() + seconds
    got = b""
    while until not in got:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r.sock.settimeout(left)
        try:
            chunk = r.sock.recv(4096)
        except (socket.timeout, TimeoutError):
            break
        if not chunk:
            break
        got += chunk
    return got


def test_failure_delay_and_slow_mode():
    smtp = SMTP_CONF.replace("auth-failure-delay: 100ms", "auth-failure-delay: 400ms")
    with SmtpEnv(smtp=smtp, limits=NOLIMITS) as e:
        r = Raw(e.subs, tls=e.client_ctx())
        try:
            r.ehlo()
            bad = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0nope").decode()
            for i in range(2):
                t0 = time.monotonic()
                expect(r.cmd(bad), 535, "5.7.8", "failure %d" % (i + 1))
                took = time.monotonic() - t0
                check(0.4 <= took < 3, "failure %d delayed by auth-failure-delay: %.2fs"
                      % (i + 1, took))
            # From the third failure on, the session is in slow mode: writes
            # at 1 byte/s: within 3.5 s the third failure's reply and a
            # NOOP's reply do not both arrive.
            r.send(bad + "\r\nNOOP\r\n")
            got = read_for(r, 3.5, b"250 2.0.0")
            check(b"250 2.0.0" not in got and len(got) < 45,
                  "slow mode after the third failure: got %r in 3.5s" % got)
        finally:
            r.close()


def daily_domains():
    return DOMAINS.replace(
        "  alice:\n    domain: example.com\n",
        "  alice:\n    domain: example.com\n    max-outgoing-per-day: 2\n").replace(
        "  bob:\n    domain: example.com\n",
        "  bob:\n    domain: example.com\n    max-first-time-recipients-per-day: 2\n")


def submit(e, user, rcpts):
    tok = uuid.uuid4().hex[:12]
    msg = ("From: %s\r\nTo: %s\r\nSubject: daily %s\r\n\r\nhello\r\n"
           % (user, ", ".join(rcpts), tok)).encode()
    with smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=30, context=e.client_ctx()) as s:
        s.login(user, PASSWORD)
        try:
            s.sendmail(user, rcpts, msg)
        except smtplib.SMTPRecipientsRefused as ex:
            code, resp = list(ex.recipients.values())[0]
            return code, resp, tok
        except smtplib.SMTPResponseException as ex:
            return ex.smtp_code, ex.smtp_error, tok
    return 250, b"", tok


def test_daily_outgoing_limit():
    with SmtpEnv(domains=daily_domains(), limits=NOLIMITS) as e:
        for i in range(2):
            code, resp, tok = submit(e, "alice@example.com", ["bob@example.com"])
            check(code == 250, "message %d: %d %r" % (i + 1, code, resp))
        code, resp, tok = submit(e, "alice@example.com", ["bob@example.com"])
        check(code == 451 and resp.startswith(b"4.") and b"max-outgoing-per-day" in resp,
              "third message of the day: %d %r" % (code, resp))
        check(not any(tok.encode() in m for m in e.messages("bob")), "not delivered")
        # Another account is not affected.
        code, resp, _ = submit(e, "bob@example.com", ["alice@example.com"])
        check(code == 250, "bob: %d %r" % (code, resp))


def test_daily_first_time_recipients():
    with SmtpEnv(domains=daily_domains(), limits=NOLIMITS) as e:
        for rc in ("alice@example.com", "admin@example.com"):
            code, resp, _ = submit(e, "bob@example.com", [rc])
            check(code == 250, "first-time %s: %d %r" % (rc, code, resp))
        code, resp, tok = submit(e, "bob@example.com", ["team@example.com"])
        check(code == 451 and resp.startswith(b"4.") and
              b"max-first-time-recipients-per-day" in resp,
              "third first-time recipient: %d %r" % (code, resp))
        # A known recipient is still fine.
        code, resp, _ = submit(e, "bob@example.com", ["alice@example.com"])
        check(code == 250, "known recipient after the limit: %d %r" % (code, resp))


def test_timeouts():
    smtp = (SMTP_CONF.replace("unknown-recipient-delay: 0s", "unknown-recipient-delay: 600ms")
            + "  command-timeout: 1s\n  data-timeout: 1s\n")
    with SmtpEnv(smtp=smtp) as e:
        with Raw(e.mx) as r:
            r.ehlo()
            expect(r.cmd("MAIL FROM:<s@remote.example>"), 250)
            t0 = time.monotonic()
            expect(r.cmd("RCPT TO:<nobody@example.com>"), 550, "5.1.1")
            took = time.monotonic() - t0
            check(0.6 <= took < 2, "unknown-recipient-delay 600ms: %.2fs" % took)
            t0 = time.monotonic()
            expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
            check(time.monotonic() - t0 < 0.5, "known recipients are not delayed")
        with Raw(e.mx) as r:
            r.ehlo()
            t0 = time.monotonic()
            rep = r.reply()
            took = time.monotonic() - t0
            expect(rep, 421, "4.4.2", "idle between commands")
            check(0.8 < took < 5, "command-timeout 1s: after %.2fs" % took)
            check(r.closed(), "closed after the timeout")
        with Raw(e.mx) as r:
            r.ehlo()
            expect(r.cmd("MAIL FROM:<s@remote.example>"), 250)
            expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
            expect(r.cmd("DATA"), 354)
            r.send(b"Subject: stalled\r\n\r\nhalf a message")
            expect(r.reply(), 421, "4.4.2", "idle inside DATA")
            check(r.closed(), "closed after the data timeout")
        check(not any(b"stalled" in m for m in e.raw_messages("alice")), "nothing stored")


def test_sigterm_drain():
    """SIGTERM: idle sessions get 421 4.3.2 at once; a session inside a
    transaction finishes it (the message is stored) and then gets 421."""
    with SmtpEnv() as e:
        idle = Raw(e.mx)
        idle.ehlo()
        busy = Raw(e.mx)
        busy.ehlo()
        expect(busy.cmd("MAIL FROM:<s@remote.example>"), 250)
        expect(busy.cmd("RCPT TO:<alice@example.com>"), 250)
        e.server.signal(signal.SIGTERM)
        expect(idle.reply(), 421, "4.3.2", "idle session on SIGTERM")
        check(idle.closed(), "idle session closed")
        tok = uuid.uuid4().hex[:12]
        msg = ("Subject: drain %s\r\n\r\nbody\r\n" % tok).encode()
        expect(busy.cmd("DATA"), 354, what="DATA while draining")
        busy.send(dot_stuff(msg))
        expect(busy.reply(), 250, "2.0.0", "transaction finished while draining")
        expect(busy.reply(), 421, "4.3.2", "then told")
        check(busy.closed(), "then closed")
        idle.close()
        busy.close()
        check(e.server.proc.wait(10) == 0, "clean exit")
        check([m for m in e.raw_messages("alice") if tok.encode() in m], "stored")


def test_durability_kill9():
    with SmtpEnv(limits=NOLIMITS) as e:
        toks = []
        for i in range(4):
            tok = uuid.uuid4().hex[:12]
            msg = ("From: <s@remote.example>\r\nSubject: durable %s\r\n\r\nbody %d\r\n"
                   % (tok, i)).encode()
            r = Raw(e.mx)
            r.ehlo()
            expect(r.cmd("MAIL FROM:<s@remote.example>"), 250)
            expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
            expect(r.cmd("RCPT TO:<team@example.com>"), 250)
            expect(r.cmd("DATA"), 354)
            r.send(dot_stuff(msg))
            expect(r.reply(), 250, "2.0.0", "acknowledged")
            e.kill9()  # right after the 250
            r.close()
            toks.append(tok)
            e.restart()
            for a in ("alice", "bob"):
                have = [m for m in e.messages(a) if tok.encode() in m]
                check(len(have) == 1, "after kill -9 #%d: %s has %d of %s" %
                      (i + 1, a, len(have), tok))
                raw = [m for m in e.raw_messages(a) if tok.encode() in m]
                check(len(raw) == 1 and raw[0].endswith(msg), "content intact: %r" % raw)
        check(len(e.messages("alice")) == 4, "alice: one per round")


def test_load_smtp_source():
    with SmtpEnv(limits=NOLIMITS) as e:
        t0 = time.monotonic()
        p = subprocess.run(["smtp-source", "-d", "-s", "10", "-m", "2000", "-l", "1024",
                            "-f", "load@remote.example", "-t", "alice@example.com",
                            "-M", "client.example", "127.0.0.1:%d" % e.mx],
                           capture_output=True, timeout=300)
        took = time.monotonic() - t0
        check(p.returncode == 0, "smtp-source: exit %d: %s" %
              (p.returncode, (p.stdout + p.stderr).decode(errors="replace")[-2000:]))
        n = e.count("alice")
        check(n == 2000, "2000 messages stored, have %d" % n)
        # And they are whole (-l 1024: at least that much each).
        short = [m[:200] for m in e.raw_messages("alice") if len(m) < 1024]
        check(not short, "%d truncated messages, e.g. %r" % (len(short), short[:1]))
        print("     smtp-source: 2000 messages over 10 sessions in %.1fs" % took)


if __name__ == "__main__":
    run([test_open_connections, test_ip_classes, test_connection_rate, test_auth_failure_limit,
         test_failure_delay_and_slow_mode, test_daily_outgoing_limit,
         test_daily_first_time_recipients, test_timeouts, test_sigterm_drain,
         test_durability_kill9,
         test_load_smtp_source])
