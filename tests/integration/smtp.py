# SPDX-License-Identifier: ISC
"""Integration: the SMTP module of the real binary with real clients
(python smtplib, swaks, raw sockets): delivery to every kind of local
recipient, relay refusal, STARTTLS and implicit TLS, submission with every
SASL mechanism, ownership of MAIL FROM and From, the stored message byte
for byte, extensions (PIPELINING, CHUNKING, SMTPUTF8, SIZE, DSN,
REQUIRETLS, LIMITS), SMTP smuggling and STARTTLS injection."""
import os
import re
import smtplib
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import run  # noqa: E402
from smtp_helpers import (AUTH_CLIENT, PASSWORD, Failure, Raw, SmtpEnv, check,  # noqa: E402
                          dot_stuff, expect, headers, make_cert, split_added, swaks)

ENV = None


def env():
    """One server for the tests that do not need their own config."""
    global ENV
    if ENV is None:
        ENV = SmtpEnv()
    return ENV


def token():
    return uuid.uuid4().hex[:16]


def message(tok, frm="sender@remote.example", to="alice@example.com", extra=b"",
            body=None):
    """A CRLF message whose body exercises dot-stuffing, trailing spaces,
    8-bit text and an empty line at the end."""
    if body is None:
        body = (b"Body of %s.\r\n.leading dot\r\n..two dots\r\n.\r\n"
                b"trailing spaces   \r\n\tindented\r\n8bit: \xc3\xa9t\xc3\xa9\r\n\r\n"
                % tok.encode())
    return (b"From: <%s>\r\nTo: <%s>\r\nSubject: test %s\r\n"
            b"Message-ID: <%s@remote.example>\r\nDate: Tue, 24 Nov 2026 01:00:00 +0000\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n%s\r\n%s"
            % (frm.encode(), to.encode(), tok.encode(), tok.encode(), extra, body))


def stored(e, account, tok):
    """Messages of account containing tok, byte for byte as stored."""
    return [m for m in e.raw_messages(account) if tok.encode() in m]


def one(e, account, tok):
    found = stored(e, account, tok)
    check(len(found) == 1, "%s: want 1 message with %s, have %d" % (account, tok, len(found)))
    return found[0]


def none(e, account, tok):
    found = stored(e, account, tok)
    check(not found, "%s: message %s must not be delivered, found %r" % (account, tok, found))


def smtp_mx(e):
    s = smtplib.SMTP("127.0.0.1", e.mx, local_hostname="client.example", timeout=15)
    return s


def smtp_subs(e, user="alice@example.com", password=PASSWORD, mech="PLAIN",
              cert=None, key=None):
    s = smtplib.SMTP_SSL("127.0.0.1", e.subs, local_hostname="client.example",
                         timeout=15, context=e.client_ctx(cert, key))
    s.ehlo()
    if user is not None:
        s.user, s.password = user, password
        obj = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login,
               "CRAM-MD5": s.auth_cram_md5}[mech]
        code, resp = s.auth(mech, obj)
        check(code == 235 and resp.startswith(b"2.7.0"), "AUTH %s: %d %r" % (mech, code, resp))
    return s


def plain_ir(user, password):
    import base64
    return base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()


def deliver_raw(r, frm, rcpts, msg):
    """MAIL, RCPTs (each must be 250), DATA; returns the final reply."""
    expect(r.cmd("MAIL FROM:<%s>" % frm), 250, what="MAIL")
    for rc in rcpts:
        expect(r.cmd("RCPT TO:<%s>" % rc), 250, what="RCPT " + rc)
    expect(r.cmd("DATA"), 354, what="DATA")
    r.send(dot_stuff(msg))
    return r.reply()


# ---- delivery role ------------------------------------------------------------

def test_delivery_exact_byte_for_byte():
    e = env()
    tok = token()
    msg = message(tok)
    with smtp_mx(e) as s:
        code, _ = s.ehlo()
        check(code == 250, "EHLO %d" % code)
        check(s.has_extn("8bitmime"), "8BITMIME announced")
        code, resp = s.mail("sender@remote.example", ["BODY=8BITMIME"])
        check(code == 250 and resp.startswith(b"2.1.0"), "MAIL: %d %r" % (code, resp))
        code, resp = s.rcpt("alice@example.com")
        check(code == 250 and resp.startswith(b"2.1.5"), "RCPT: %d %r" % (code, resp))
        code, resp = s.data(msg)
        check(code == 250 and resp.startswith(b"2.0.0"), "DATA: %d %r" % (code, resp))
    st = one(e, "alice", tok)
    added = split_added(st, msg)
    # The product's own export gives the same message (with LF line ends).
    exp = [m for m in e.messages("alice") if tok.encode() in m]
    check(exp == [st.replace(b"\r\n", b"\n")], "export differs from the store: %r" % exp)
    h = headers(added)
    names = [n for n, _ in h]
    check(names[0] == "return-path", "Return-Path first: %r" % names)
    check(dict(h)["return-path"] == "<sender@remote.example>", "Return-Path: %r" % h)
    check(dict(h).get("delivered-to") == "alice@example.com", "Delivered-To: %r" % h)
    check(names.count("received") == 1, "one Received: %r" % names)
    recv = dict(h)["received"]
    check("client.example" in recv and "mx.example.com" in recv, "Received: " + recv)
    check("127.0.0.1" in recv, "Received names the peer address: " + recv)
    check(set(names) <= {"return-path", "delivered-to", "received",
                         "authentication-results"}, "unexpected added headers %r" % names)
    # The encrypted session id maps back to the session's log lines.
    m = re.search(r"\bid ([a-z2-7]{26})\b", recv)
    check(m is not None, "Received carries a 26-char id: " + recv)
    p = e.osprey("cid", m.group(1), as_root=True)
    out = p.stdout.decode()
    ids = re.findall(r"\b[0-9a-f]{16}\b", out)
    check(ids, "osprey cid prints the session id: %r" % out)
    log = e.log()
    check(any(re.search(r"\b%s\b.*(deliver|250|alice)" % i, log) for i in ids),
          "session id %r of cid %s not in a delivery log line:\n%s" % (ids, m.group(1), log[-3000:]))
    # A tampered id is refused.
    bad = ("a" if m.group(1)[0] != "a" else "b") + m.group(1)[1:]
    p = e.osprey("cid", bad, ok=False, as_root=True)
    check(p.returncode != 0, "tampered cid must not decode: %r" % p.stdout)


def test_delivery_tag_catchall_alias_postmaster():
    e = env()
    cases = (("alice+news@example.com", ["alice"]),
             ("ALICE@EXAMPLE.COM", ["alice"]),
             ("whoever@catchall.example", ["bob"]),
             ("team@example.com", ["alice", "bob"]),
             ("postmaster@example.com", ["admin"]),
             ("Postmaster", ["admin"]))  # RFC 5321 §4.5.1: no domain
    toks = []
    with Raw(e.mx) as r:
        r.ehlo()
        for rcpt, accounts in cases:
            tok = token()
            toks.append((tok, rcpt, accounts))
            rep = deliver_raw(r, "sender@remote.example", [rcpt], message(tok, to=rcpt))
            expect(rep, 250, "2.0.0", "delivery to " + rcpt)
    for tok, rcpt, accounts in toks:
        for a in ("alice", "bob", "admin"):
            if a in accounts:
                st = one(e, a, tok)
                check(st.endswith(message(tok, to=rcpt)), "%s: content" % rcpt)
            else:
                none(e, a, tok)


def test_unknown_recipient():
    e = env()
    with Raw(e.mx) as r:
        r.ehlo()
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<nobody@example.com>"), 550, "5.1.1", "unknown")
        expect(r.cmd("RCPT TO:<alice-x@example.com>"), 550, "5.1.1", "unknown")
        expect(r.cmd("RCPT TO:<nobody@xn--bcher-kva.example>"), 550, "5.1.1", "unknown")
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250, "2.1.5", "known after unknown")


def test_open_relay_refused():
    e = env()
    tok = token()
    with Raw(e.mx) as r:
        r.ehlo()
        for tls in (False, True):
            if tls:
                r.starttls(e.client_ctx())
                r.ehlo()
            expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
            expect(r.cmd("RCPT TO:<victim@foreign.example>"), 554, "5.7.1", "relay")
            # Source route (RFC 5321 §4.1.1.3: ignored): still foreign.
            expect(r.cmd("RCPT TO:<@example.com:victim@foreign.example>"), 554, "5.7.1",
                   "source route")
            expect(r.cmd("RCPT TO:<@example.com,@mx.example.com:victim@foreign.example>"),
                   554, "5.7.1", "source route list")
            # "%"-hack and quoted localparts are local addresses that do
            # not exist: never relayed.
            expect(r.cmd("RCPT TO:<victim%foreign.example@example.com>"), 550, "5.1.1",
                   "%-hack")
            expect(r.cmd('RCPT TO:<"victim@foreign.example"@example.com>'), 550, "5.1.1",
                   "quoted localpart")
            rep = r.cmd("RCPT TO:<victim@foreign.example@example.com>")
            check(rep.code == 501, "double @ is a syntax error: %r" % rep)
            rep = r.cmd("RCPT TO:<victim@[192.0.2.1]>")
            check(rep.code in (550, 554) and rep.enh and rep.enh.startswith("5."),
                  "address literal not relayed: %r" % rep)
            rep = r.cmd("DATA")
            check(rep.code in (503, 554), "DATA without recipients: %r" % rep)
            expect(r.cmd("RSET"), 250, "2.0.0")
        # A local recipient does not open the door to a foreign one.
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
        expect(r.cmd("RCPT TO:<victim@foreign.example>"), 554, "5.7.1", "relay after local")
        expect(r.cmd("DATA"), 354)
        r.send(dot_stuff(message(tok)))
        expect(r.reply(), 250, "2.0.0")
        # On a catch-all domain the same tricks are local mail for the
        # catch-all account, never relayed.
        tok2 = token()
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<victim%foreign.example@catchall.example>"), 250, "2.1.5")
        expect(r.cmd("RSET"), 250, "2.0.0")
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd('RCPT TO:<"victim@foreign.example"@catchall.example>'), 250, "2.1.5")
        expect(r.cmd("DATA"), 354)
        r.send(dot_stuff(message(tok2)))
        expect(r.reply(), 250, "2.0.0")
    one(e, "alice", tok)
    one(e, "bob", tok2)


def test_starttls_delivery():
    e = env()
    tok = token()
    msg = message(tok)
    with smtp_mx(e) as s:
        s.ehlo()
        check(s.has_extn("starttls"), "STARTTLS announced")
        code, resp = s.starttls(context=e.client_ctx())
        check(code == 220, "STARTTLS %d %r" % (code, resp))
        check(s.sock.version() in ("TLSv1.2", "TLSv1.3"), s.sock.version())
        s.ehlo()
        check(not s.has_extn("starttls"), "STARTTLS not announced twice")
        s.sendmail("sender@remote.example", ["bob@example.com"], msg)
    st = one(e, "bob", tok)
    h = dict(headers(split_added(st, msg)))
    check("ESMTPS" in h["received"], "RFC 3848 ESMTPS in Received: " + h["received"])


def test_bare_helo_and_greeting():
    e = env()
    with Raw(e.mx) as r:
        expect(r.greeting, 220, what="greeting")
        check(r.greeting.lines[0].startswith("mx.example.com"), "greeting %r" % r.greeting)
        rep = expect(r.cmd("HELO client.example"), 250, what="HELO", enhanced=False)
        check(len(rep.lines) == 1, "HELO reply is one line: %r" % rep)
        tok = token()
        expect(deliver_raw(r, "sender@remote.example", ["alice@example.com"], message(tok)),
               250)
        expect(r.cmd("QUIT"), 221, "2.0.0")
        check(r.closed(), "closed after QUIT")
    st = one(e, "alice", tok)
    check("with SMTP " in dict(headers(split_added(st, message(tok))))["received"],
          "HELO session: 'with SMTP' (RFC 3848)")


# ---- submission role ----------------------------------------------------------

def test_submission_auth_mechanisms():
    e = env()
    for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
        tok = token()
        msg = message(tok, frm="alice@example.com", to="bob@example.com")
        with smtp_subs(e, mech=mech) as s:
            s.sendmail("alice@example.com", ["bob@example.com"], msg)
        st = one(e, "bob", tok)
        added = split_added(st, msg)
        recv = dict(headers(added))["received"]
        check("ESMTPSA" in recv, "%s: RFC 3848 ESMTPSA in Received: %s" % (mech, recv))


def test_submission_starttls_login():
    e = env()
    tok = token()
    msg = message(tok, frm="alice@example.com", to="bob@example.com")
    with smtplib.SMTP("127.0.0.1", e.sub, local_hostname="client.example", timeout=15) as s:
        s.starttls(context=e.client_ctx())
        s.ehlo()
        check(s.has_extn("auth"), "AUTH after STARTTLS")
        s.login("alice@example.com", PASSWORD)
        s.sendmail("alice@example.com", ["bob@example.com"], msg)
    one(e, "bob", tok)


def test_submission_requires_auth():
    e = env()
    with smtplib.SMTP("127.0.0.1", e.sub, local_hostname="client.example", timeout=15) as s:
        s.starttls(context=e.client_ctx())
        s.ehlo()
        code, resp = s.mail("alice@example.com")
        check(code == 530 and resp.startswith(b"5.7.0"), "MAIL unauthenticated: %d %r" %
              (code, resp))
    with smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=15, context=e.client_ctx()) as s:
        s.ehlo()
        code, resp = s.mail("alice@example.com")
        check(code == 530 and resp.startswith(b"5.7.0"), "implicit TLS, MAIL unauthenticated:"
              " %d %r" % (code, resp))


def test_auth_before_starttls_refused():
    e = env()
    with Raw(e.sub) as r:
        ext = r.ehlo()
        check("STARTTLS" in ext, "STARTTLS offered: %r" % ext)
        check(not any(x.startswith("AUTH") for x in ext), "no AUTH before TLS: %r" % ext)
        rep = r.cmd("AUTH PLAIN " + plain_ir("alice@example.com", PASSWORD))
        check(rep.code in (530, 538) and rep.enh is not None and rep.enh.startswith("5.7."),
              "AUTH before STARTTLS: %r" % rep)
        expect(r.cmd("MAIL FROM:<alice@example.com>"), 530, "5.7.0", "still unauthenticated")
        r.starttls(e.client_ctx())
        ext = r.ehlo()
        auth = [x.split()[1:] for x in ext if x.startswith("AUTH ")]
        check(auth and set(auth[0]) >= {"PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-1",
                                        "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256",
                                        "SCRAM-SHA-256-PLUS"},
              "every mechanism after TLS: %r" % ext)
        expect(r.cmd("AUTH PLAIN " + plain_ir("alice@example.com", PASSWORD)), 235, "2.7.0")


def test_auth_wrong_password():
    e = env()
    s = smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=15, context=e.client_ctx())
    try:
        s.ehlo()
        s.user, s.password = "alice@example.com", "wrong password"
        t0 = time.monotonic()
        try:
            s.auth("PLAIN", s.auth_plain)
            raise Failure("wrong password accepted")
        except smtplib.SMTPAuthenticationError as ex:
            took = time.monotonic() - t0
            check(ex.smtp_code == 535 and ex.smtp_error.startswith(b"5.7.8"),
                  "wrong password: %d %r" % (ex.smtp_code, ex.smtp_error))
        check(took >= 0.1, "auth-failure-delay 100ms observed: %.3fs" % took)
        # Unknown user: the same answer.
        s.user = "nobody@example.com"
        try:
            s.auth("PLAIN", s.auth_plain)
            raise Failure("unknown user accepted")
        except smtplib.SMTPAuthenticationError as ex:
            check(ex.smtp_code == 535 and ex.smtp_error.startswith(b"5.7.8"),
                  "unknown user: %d %r" % (ex.smtp_code, ex.smtp_error))
        code, _ = s.mail("alice@example.com")
        check(code == 530, "not authenticated after failures: %d" % code)
    finally:
        s.close()


def auth_client(args, expect_ok=True):
    if not os.access(AUTH_CLIENT, os.X_OK):
        raise Failure("%s not built" % AUTH_CLIENT)
    p = subprocess.run([AUTH_CLIENT] + args, capture_output=True, timeout=60)
    out = (p.stdout + p.stderr).decode(errors="replace")
    check((p.returncode == 0) == expect_ok, "smtp_auth_client %s: exit %d: %s" %
          (" ".join(args), p.returncode, out))
    return out


def test_auth_scram():
    e = env()
    for mech in ("SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS"):
        variants = [["--tls", "--port", str(e.subs)], ["--starttls", "--port", str(e.sub)]]
        if mech.endswith("-PLUS"):
            # TLS 1.2: tls-unique instead of tls-exporter (RFC 9266).
            variants.append(["--tls", "--tls12", "--port", str(e.subs)])
        for tls in variants:
            base = ["--host", "127.0.0.1"] + tls + ["--mech", mech, "--user",
                                                     "alice@example.com"]
            out = auth_client(base + ["--pass", PASSWORD])
            check("235 2.7.0" in out, "%s %s: %s" % (mech, tls, out))
        # A wrong password fails with 535 5.7.8 (the client prints the
        # final AUTH reply).
        out = auth_client(base + ["--pass", "wrong", "--expect-fail"])
        check("535 5.7.8" in out, "%s wrong password: %s" % (mech, out))


def test_auth_external():
    e = env()
    ccrt, ckey = make_cert(e.dir, "client-alice", "alice.client")
    ocrt, okey = make_cert(e.dir, "client-other", "other.client")
    e.osprey("config", "account", "tlscert", "add", "alice", ccrt)
    with smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=15,
                          context=e.client_ctx(ccrt, ckey)) as s:
        s.ehlo()
        check("EXTERNAL" in (s.esmtp_features.get("auth") or "").upper().split(),
              "EXTERNAL offered with a client certificate: %r" % s.esmtp_features)
        code, resp = s.docmd("AUTH", "EXTERNAL =")
        check(code == 235 and resp.startswith(b"2.7.0"), "EXTERNAL: %d %r" % (code, resp))
        tok = token()
        s.sendmail("alice@example.com", ["bob@example.com"],
                   message(tok, frm="alice@example.com", to="bob@example.com"))
    one(e, "bob", tok)
    # EXTERNAL asking for another identity than the certificate's account.
    with smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=15,
                          context=e.client_ctx(ccrt, ckey)) as s:
        s.ehlo()
        import base64
        code, resp = s.docmd("AUTH", "EXTERNAL " +
                             base64.b64encode(b"bob@example.com").decode())
        check(code == 535, "EXTERNAL as another account: %d %r" % (code, resp))
    # An unregistered certificate does not log in.
    with smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=15,
                          context=e.client_ctx(ocrt, okey)) as s:
        s.ehlo()
        code, resp = s.docmd("AUTH", "EXTERNAL =")
        check(code == 535 and resp.startswith(b"5.7.8"), "unregistered cert: %d %r" %
              (code, resp))
    # No certificate at all.
    with smtplib.SMTP_SSL("127.0.0.1", e.subs, timeout=15, context=e.client_ctx()) as s:
        s.ehlo()
        code, resp = s.docmd("AUTH", "EXTERNAL =")
        check(code // 100 == 5, "EXTERNAL without certificate: %d %r" % (code, resp))


def test_mail_from_not_owned():
    e = env()
    with smtp_subs(e) as s:
        code, resp = s.mail("bob@example.com")
        check(code == 550 and resp.startswith(b"5.7.1"), "MAIL FROM bob as alice: %d %r" %
              (code, resp))
        code, resp = s.mail("alice@foreign.example")
        check(code == 550 and resp.startswith(b"5.7.1"), "foreign MAIL FROM: %d %r" %
              (code, resp))
        code, resp = s.mail("alice@example.com")
        check(code == 250, "own address: %d %r" % (code, resp))


def test_from_header_not_owned():
    e = env()
    tok = token()
    msg = message(tok, frm="bob@example.com", to="bob@example.com")
    with smtp_subs(e) as s:
        check(s.mail("alice@example.com")[0] == 250, "MAIL")
        check(s.rcpt("bob@example.com")[0] == 250, "RCPT")
        code, resp = s.data(msg)
        check(code == 550 and resp.startswith(b"5.7.1"), "From: bob as alice: %d %r" %
              (code, resp))
        # Display names and case do not matter for one's own address.
        tok2 = token()
        msg2 = message(tok2, to="bob@example.com").replace(
            b"From: <sender@remote.example>", b"From: \"Alice A.\" <Alice@Example.COM>")
        s.sendmail("alice@example.com", ["bob@example.com"], msg2)
    none(e, "bob", tok)
    one(e, "bob", tok2)


def test_message_id_date_added():
    e = env()
    tok = token()
    msg = (b"From: alice@example.com\r\nTo: bob@example.com\r\nSubject: bare %s\r\n\r\n"
           b"no id, no date\r\n" % tok.encode())
    with smtp_subs(e) as s:
        s.sendmail("alice@example.com", ["bob@example.com"], msg)
    st = one(e, "bob", tok)
    h = headers(split_added(st, msg))
    names = [n for n, _ in h]
    check(names.count("message-id") == 1, "Message-ID added: %r" % names)
    check(names.count("date") == 1, "Date added: %r" % names)
    check(re.match(r"<[^<>@\s]+@[^<>@\s]+>$", dict(h)["message-id"]), dict(h)["message-id"])
    # Present ones are kept, not duplicated.
    tok = token()
    msg = message(tok, frm="alice@example.com", to="bob@example.com")
    with smtp_subs(e) as s:
        s.sendmail("alice@example.com", ["bob@example.com"], msg)
    names = [n for n, _ in headers(split_added(one(e, "bob", tok), msg))]
    check("message-id" not in names and "date" not in names, "nothing added: %r" % names)


def test_remote_recipient_submission():
    e = env()
    with smtp_subs(e) as s:
        check(s.mail("alice@example.com")[0] == 250, "MAIL")
        code, resp = s.rcpt("someone@remote.example")
        check(code == 451 and resp[:2] == b"4." and b"queue" in resp.lower(),
              "remote recipient before the queue exists: %d %r" % (code, resp))
        code, resp = s.rcpt("bob@example.com")
        check(code == 250, "local recipient still fine: %d %r" % (code, resp))


# ---- extensions ---------------------------------------------------------------

def test_ehlo_extensions():
    e = env()
    with Raw(e.mx) as r:
        ext = r.ehlo()
        for x in ("PIPELINING", "SIZE 204800", "8BITMIME", "CHUNKING", "BINARYMIME",
                  "SMTPUTF8", "ENHANCEDSTATUSCODES", "DSN", "STARTTLS",
                  "LIMITS RCPTMAX=100"):
            check(x in ext, "%s announced: %r" % (x, ext))
        check("REQUIRETLS" not in ext, "REQUIRETLS only after TLS: %r" % ext)
        check(not any(x.startswith("AUTH") for x in ext), "no AUTH on delivery before TLS")
        rep = r.cmd("MAIL FROM:<sender@remote.example> REQUIRETLS")
        check(rep.code // 100 == 5, "REQUIRETLS in cleartext refused: %r" % rep)
        r.starttls(e.client_ctx())
        ext = r.ehlo()
        check("REQUIRETLS" in ext and "STARTTLS" not in ext, "after TLS: %r" % ext)
        expect(r.cmd("MAIL FROM:<sender@remote.example> REQUIRETLS"), 250, "2.1.0")
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
        tok = token()
        expect(r.cmd("DATA"), 354)
        r.send(dot_stuff(message(tok)))
        expect(r.reply(), 250, "2.0.0")
    one(e, "alice", tok)


def test_vrfy_help_noop_rset_quit():
    e = env()
    with Raw(e.mx) as r:
        r.ehlo()
        rep = r.cmd("VRFY alice")
        check(rep.code == 252 and rep.enh is not None and rep.enh.startswith("2."),
              "VRFY: %r" % rep)
        rep = r.cmd("EXPN team@example.com")
        check(rep.code == 252 and rep.enh is not None and rep.enh.startswith("2."),
              "EXPN: %r" % rep)
        check("alice" not in rep.text, "EXPN does not list members: %r" % rep)
        expect(r.cmd("HELP"), 214)
        expect(r.cmd("NOOP"), 250, "2.0.0")
        expect(r.cmd("MAIL FROM:<a@remote.example>"), 250)
        expect(r.cmd("RSET"), 250, "2.0.0")
        expect(r.cmd("RCPT TO:<alice@example.com>"), 503, "5.5.1", "RCPT after RSET")
        expect(r.cmd("QUIT"), 221, "2.0.0")
        check(r.closed(), "closed after QUIT")


def test_bad_commands():
    # Each session stays under max-errors (10).
    e = env()
    with Raw(e.mx) as r:
        expect(r.cmd("MAIL FROM:<a@remote.example>"), 503, "5.5.1", "MAIL before EHLO")
        r.ehlo()
        # RFC 3463 X.5.1: invalid (unsupported) command.
        expect(r.cmd("FROB nicate"), 500, "5.5.1", "unknown verb")
        rep = r.cmd("EHLO")
        check(rep.code == 501 and rep.enh and rep.enh.startswith("5.5."), "bare EHLO: %r" % rep)
        r.ehlo()
        expect(r.cmd("RCPT TO:<alice@example.com>"), 503, "5.5.1", "RCPT before MAIL")
        expect(r.cmd("DATA"), 503, "5.5.1", "DATA before MAIL")
        expect(r.cmd("NOOP"), 250, "2.0.0", "in sync")
    with Raw(e.mx) as r:
        r.ehlo()
        rep = r.cmd("MAIL FROM:alice@example.com")
        check(rep.code == 501 and rep.enh and rep.enh.startswith("5."),
              "MAIL without brackets: %r" % rep)
        rep = r.cmd("MAIL FROM:<a b@remote.example>")
        check(rep.code == 501, "MAIL with a space in the address: %r" % rep)
        expect(r.cmd("MAIL FROM:<a@remote.example>"), 250)
        expect(r.cmd("MAIL FROM:<a@remote.example>"), 503, "5.5.1", "nested MAIL")
        expect(r.cmd("NOOP"), 250, "2.0.0", "in sync")
    with Raw(e.mx) as r:
        r.ehlo()
        # RFC 5321 §4.5.3.1.4: command lines are at most 512 octets.
        rep = r.cmd("NOOP " + "x" * 4000)
        check(rep.code == 500 and rep.enh and rep.enh.startswith("5.5."), "long line: %r" % rep)
        # In sync afterwards: one reply per command.
        expect(r.cmd("NOOP"), 250, "2.0.0", "after the long line")
        r.send(b"NOOP\0x\r\n")
        rep = r.reply()
        check(rep.code in (500, 501), "NUL in a command: %r" % rep)
        expect(r.cmd("NOOP"), 250, "2.0.0", "in sync")


def test_max_errors():
    e = env()  # max-errors: 10
    with Raw(e.mx) as r:
        r.ehlo()
        codes = []
        for i in range(12):
            try:
                codes.append(r.cmd("FROB %d" % i).code)
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            if codes[-1] == 421:
                break
        check(codes[:9] == [500] * 9, "first errors answered 500: %r" % codes)
        check(codes[-1] == 421 and len(codes) in (10, 11), "421 at the limit: %r" % codes)
        check(r.closed(), "disconnected after 421")


def test_pipelining():
    e = env()
    t1, t2 = token(), token()
    with Raw(e.mx) as r:
        check("PIPELINING" in r.ehlo(), "PIPELINING")
        r.send("MAIL FROM:<sender@remote.example>\r\nRCPT TO:<alice@example.com>\r\n"
               "RCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        expect(r.reply(), 250, "2.1.0")
        expect(r.reply(), 250, "2.1.5")
        expect(r.reply(), 550, "5.1.1")
        expect(r.reply(), 250, "2.1.5")
        expect(r.reply(), 354)
        # RFC 2920 §3.1: the end of data may be followed by commands.
        r.send(dot_stuff(message(t1)) + b"MAIL FROM:<sender@remote.example>\r\n"
               b"RCPT TO:<bob@example.com>\r\nDATA\r\n")
        expect(r.reply(), 250, "2.0.0")
        expect(r.reply(), 250, "2.1.0")
        expect(r.reply(), 250, "2.1.5")
        expect(r.reply(), 354)
        r.send(dot_stuff(message(t2)) + b"QUIT\r\n")
        expect(r.reply(), 250, "2.0.0")
        expect(r.reply(), 221, "2.0.0")
    one(e, "alice", t1)
    one(e, "bob", t1)
    one(e, "bob", t2)
    # The same with a real pipelining client.
    tok = token()
    rc, out = swaks(e.mx, "--pipeline", "--from", "sender@remote.example", "--to",
                    "alice@example.com,bob@example.com", "--ehlo", "client.example",
                    "--header", "Subject: swaks " + tok)
    check(rc == 0, "swaks --pipeline: %d\n%s" % (rc, out))
    check(re.search(r" -> MAIL FROM:[^\n]*\n -> RCPT TO:[^\n]*\n -> RCPT TO:[^\n]*\n"
                    r" -> DATA\n<-  250 ", out), "swaks pipelined MAIL/RCPT/DATA:\n" + out)
    one(e, "alice", tok)
    one(e, "bob", tok)


def test_swaks_starttls_and_auth():
    e = env()
    tok = token()
    rc, out = swaks(e.sub, "--tls", "--auth", "PLAIN", "--auth-user", "alice@example.com",
                    "--auth-password", PASSWORD, "--from", "alice@example.com", "--to",
                    "bob@example.com", "--header", "Subject: swaks " + tok,
                    "--header", "From: alice@example.com")
    check(rc == 0, "swaks submission: %d\n%s" % (rc, out))
    one(e, "bob", tok)
    rc, out = swaks(e.sub, "--tls", "--auth", "LOGIN", "--auth-user", "alice@example.com",
                    "--auth-password", "wrong", "--from", "alice@example.com", "--to",
                    "bob@example.com")
    check(rc != 0 and "535 5.7.8" in out, "swaks wrong password: %d\n%s" % (rc, out))


def bdat(r, data, last=False, split=False):
    hdr = b"BDAT %d%s\r\n" % (len(data), b" LAST" if last else b"")
    if split:
        r.send(hdr)
        time.sleep(0.1)
        r.send(data[:len(data) // 2])
        time.sleep(0.1)
        r.send(data[len(data) // 2:])
    else:
        r.send(hdr + data)
    return r.reply()


def test_bdat():
    e = env()
    tok = token()
    msg = message(tok)
    parts = [msg[:37], msg[37:200], msg[200:]]
    with Raw(e.mx) as r:
        check("CHUNKING" in r.ehlo(), "CHUNKING")
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
        expect(bdat(r, parts[0]), 250, "2.0.0", "chunk 1")
        expect(bdat(r, parts[1], split=True), 250, "2.0.0", "chunk 2 split over writes")
        expect(bdat(r, parts[2]), 250, "2.0.0", "chunk 3")
        expect(bdat(r, b"", last=True), 250, "2.0.0", "BDAT 0 LAST")
        # Dots and lines that look like commands are data in BDAT.
        tok2 = token()
        msg2 = message(tok2, body=b".\r\nQUIT\r\n..\r\n")
        r.send(b"MAIL FROM:<sender@remote.example>\r\nRCPT TO:<bob@example.com>\r\n"
               b"BDAT %d LAST\r\n%s" % (len(msg2), msg2))
        expect(r.reply(), 250)
        expect(r.reply(), 250)
        expect(r.reply(), 250, "2.0.0", "pipelined BDAT LAST")
        # A failed BDAT still consumes its chunk (RFC 3030 §2): "HELP\r\n"
        # inside it must not be executed.
        expect(bdat(r, b"HELP\r\n"), 503, "5.5.1", "BDAT without MAIL")
        expect(r.cmd("NOOP"), 250, "2.0.0", "chunk consumed, not executed")
        # Bare LF in BDAT without BINARYMIME: refused at the end.
        tok3 = token()
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
        rep = bdat(r, message(tok3).replace(b"\r\n", b"\n"), last=True)
        check(rep.code == 550 and rep.enh == "5.6.0" and "bare" in rep.text.lower(),
              "bare LF in BDAT: %r" % rep)
        # BINARYMIME: anything goes, stored byte for byte; DATA refused.
        tok4 = token()
        bin_msg = (b"Subject: bin %s\r\nContent-Type: application/octet-stream\r\n"
                   b"Content-Transfer-Encoding: binary\r\n\r\n\x00\x01\n\r\xff\r\n.\r\n"
                   % tok4.encode())
        expect(r.cmd("MAIL FROM:<sender@remote.example> BODY=BINARYMIME"), 250)
        expect(r.cmd("RCPT TO:<bob@example.com>"), 250)
        expect(r.cmd("DATA"), 503, "5.5.1", "DATA with BINARYMIME")
        expect(bdat(r, bin_msg, last=True), 250, "2.0.0", "BINARYMIME")
        expect(r.cmd("NOOP"), 250, "2.0.0")
    st = one(e, "alice", tok)
    split_added(st, msg)
    split_added(one(e, "bob", tok2), msg2)
    none(e, "alice", tok3)
    split_added(one(e, "bob", tok4), bin_msg)


def test_smtputf8():
    e = env()
    tok = token()
    msg = message(tok, frm="jörg@remote.example", to="jöran@bücher.example").replace(
        b"Subject: test", "Subject: prüfung".encode())
    with smtp_mx(e) as s:
        s.ehlo()
        check(s.has_extn("smtputf8"), "SMTPUTF8")
        s.sendmail("jörg@remote.example", ["jöran@bücher.example"], msg,
                   mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    st = one(e, "joran", tok)
    h = dict(headers(split_added(st, msg)))
    check(h["return-path"] == "<jörg@remote.example>", "UTF-8 Return-Path: %r" % h)
    # The A-label form of the domain reaches the same account.
    tok = token()
    with smtp_mx(e) as s:
        s.sendmail("jörg@remote.example", ["jöran@xn--bcher-kva.example"],
                   message(tok, to="x@example.com"), mail_options=["SMTPUTF8"])
    one(e, "joran", tok)
    # Without SMTPUTF8: RFC 6531 §3.5, 553 5.6.7.
    with Raw(e.mx) as r:
        r.ehlo()
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<jöran@bücher.example>".encode()), 553, "5.6.7", "UTF-8 RCPT")
        expect(r.cmd("RSET"), 250)
        expect(r.cmd("MAIL FROM:<jörg@remote.example>".encode()), 553, "5.6.7", "UTF-8 MAIL")
        # The A-label domain with an ASCII localpart needs no SMTPUTF8.
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        expect(r.cmd("RCPT TO:<postmaster@xn--bcher-kva.example>"), 250, "2.1.5")


def test_oversize():
    e = env()  # max-message-size 200k
    with Raw(e.mx) as r:
        r.ehlo()
        expect(r.cmd("MAIL FROM:<sender@remote.example> SIZE=204801"), 552, "5.3.4",
               "declared SIZE")
        expect(r.cmd("MAIL FROM:<sender@remote.example> SIZE=1000"), 250, "2.1.0")
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
        expect(r.cmd("DATA"), 354)
        tok = token()
        r.send(dot_stuff(message(tok, body=(b"x" * 998 + b"\r\n") * 210)))
        expect(r.reply(), 552, "5.3.4", "actual size over the limit")
        expect(r.cmd("NOOP"), 250, "2.0.0", "in sync after 552")
        # The same through BDAT: chunks add up over the limit.
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250, "2.1.0")
        expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
        big = message(tok, body=(b"z" * 998 + b"\r\n") * 110)
        rep = bdat(r, big)
        check(rep.code in (250, 552), "first BDAT chunk: %r" % rep)
        if rep.code == 250:
            expect(bdat(r, big, last=True), 552, "5.3.4", "BDAT over the limit")
        expect(r.cmd("RSET"), 250, "2.0.0", "in sync after BDAT 552")
    none(e, "alice", tok)
    # The boundary: exactly max-message-size is accepted, one more octet
    # is not (the size of the message as stored, before added headers).
    with Raw(e.mx) as r:
        r.ehlo()
        for extra, code in ((0, 250), (1, 552)):
            tok = token()
            head = message(tok, body=b"")
            fill = 204800 + extra - len(head)
            body = (b"f" * 98 + b"\r\n") * (fill // 100)
            body += b"g" * (fill - len(body) - 2) + b"\r\n"
            msg = head + body
            check(len(msg) == 204800 + extra, "test message size %d" % len(msg))
            expect(r.cmd("MAIL FROM:<sender@remote.example> SIZE=%d" % len(msg)),
                   250 if extra == 0 else 552, "2.1.0" if extra == 0 else "5.3.4",
                   "SIZE=%d" % len(msg))
            if extra:
                expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
            expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
            expect(r.cmd("DATA"), 354)
            r.send(dot_stuff(msg))
            expect(r.reply(), code, "2.0.0" if code == 250 else "5.3.4",
                   "message of %d octets" % len(msg))
            if code == 250:
                split_added(one(e, "alice", tok), msg)
            else:
                none(e, "alice", tok)
    tok = token()
    body = os.path.join(e.dir, "big.txt")
    with open(body, "w") as f:
        f.write(("y" * 900 + "\n") * 240)
    rc, out = swaks(e.mx, "--from", "sender@remote.example", "--to", "alice@example.com",
                    "--header", "Subject: big " + tok, "--body", body)
    check(rc != 0 and "552 5.3.4" in out, "swaks oversize: %d\n%s" % (rc, out[-2000:]))
    none(e, "alice", tok)


SMUGGLE = (b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r", b"\n..\n")


def test_smuggling():
    e = env()
    for fake in SMUGGLE:
        tok, evil = token(), token()
        msg = (b"From: <sender@remote.example>\r\nSubject: smuggle %s\r\n\r\nfirst part"
               % tok.encode())
        hidden = (b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
                  b"From: admin@example.com\r\nSubject: smuggled %s\r\n\r\nevil\r\n"
                  % evil.encode())
        with Raw(e.mx) as r:
            r.ehlo()
            expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
            expect(r.cmd("RCPT TO:<alice@example.com>"), 250)
            expect(r.cmd("DATA"), 354)
            r.send(msg + fake + hidden + b"\r\n.\r\n")
            rep = r.reply()
            check(rep.code == 550 and rep.enh == "5.6.0" and "bare" in rep.text.lower(),
                  "%r: want the bare LF/CR error, got %r" % (fake, rep))
            # Exactly one reply: the hidden commands were message text.
            expect(r.cmd("NOOP"), 250, "2.0.0", "%r: in sync" % fake)
        none(e, "alice", tok)
        none(e, "bob", evil)
        none(e, "alice", evil)


def test_starttls_injection():
    e = env()
    for port in (e.mx, e.sub):
        with Raw(port) as r:
            r.ehlo()
            r.send(b"STARTTLS\r\nMAIL FROM:<inject@remote.example>\r\n")
            rep = r.reply()
            if rep.code != 220:
                # Refusing the pipelined STARTTLS outright is also safe.
                check(rep.code // 100 == 5, "STARTTLS with injected data: %r" % rep)
                continue
            check(r.buf == b"", "nothing after 220 in cleartext: %r" % r.buf)
            r.sock = e.client_ctx().wrap_socket(r.sock, server_hostname="localhost")
            # RFC 3207 §4.2: state is reset; the injected MAIL is gone.
            rep = r.cmd("EHLO client.example")
            check(rep.code == 250 and len(rep.lines) > 1,
                  "first reply after TLS is the EHLO reply, not an injected MAIL's: %r" % rep)
            if port == e.mx:
                expect(r.cmd("RCPT TO:<alice@example.com>"), 503, "5.5.1",
                       "no MAIL from before TLS")


def test_dsn_params():
    e = env()
    tok = token()
    with Raw(e.mx) as r:
        check("DSN" in r.ehlo(), "DSN")
        expect(r.cmd("MAIL FROM:<sender@remote.example> RET=HDRS ENVID=q+2Bx"), 250, "2.1.0")
        expect(r.cmd("RCPT TO:<alice@example.com> NOTIFY=SUCCESS,FAILURE,DELAY "
                     "ORCPT=rfc822;alice+2B1@example.com"), 250, "2.1.5")
        expect(r.cmd("RCPT TO:<bob@example.com> NOTIFY=NEVER"), 250, "2.1.5")
        expect(r.cmd("DATA"), 354)
        r.send(dot_stuff(message(tok)))
        expect(r.reply(), 250, "2.0.0")
        for bad in ("RET=FOO", "RET=HDRS RET=FULL", "ENVID=a+ZZ", "ENVID=" + "x" * 200):
            rep = r.cmd("MAIL FROM:<sender@remote.example> " + bad)
            check(rep.code == 501 and rep.enh == "5.5.4", "MAIL %s: %r" % (bad, rep))
        expect(r.cmd("MAIL FROM:<sender@remote.example> FROB=1"), 555, "5.5.4", "unknown param")
    # A new session: each stays under max-errors (10).
    with Raw(e.mx) as r:
        r.ehlo()
        expect(r.cmd("MAIL FROM:<sender@remote.example>"), 250)
        for bad in ("NOTIFY=NEVER,SUCCESS", "NOTIFY=SOMETIMES", "NOTIFY=",
                    "ORCPT=alice@example.com", "ORCPT=rfc822;a+ZZ"):
            rep = r.cmd("RCPT TO:<alice@example.com> " + bad)
            check(rep.code == 501 and rep.enh == "5.5.4", "RCPT %s: %r" % (bad, rep))
        expect(r.cmd("RCPT TO:<alice@example.com> FROB=1"), 555, "5.5.4", "unknown param")
    one(e, "alice", tok)
    one(e, "bob", tok)


def test_rcptmax():
    e = env()  # max-recipients 100
    with Raw(e.mx) as r:
        check("LIMITS RCPTMAX=100" in r.ehlo(), "LIMITS RCPTMAX")
        r.send(b"MAIL FROM:<sender@remote.example>\r\n" +
               b"".join(b"RCPT TO:<alice+%d@example.com>\r\n" % i for i in range(101)))
        expect(r.reply(), 250)
        for i in range(100):
            expect(r.reply(), 250, "2.1.5", "rcpt %d" % i)
        # RFC 5321 §4.5.3.1.10
        expect(r.reply(), 452, "4.5.3", "101st recipient")


def test_clean_shutdown():
    """Last: the shared server stops cleanly (exit 0, no sanitizer report)
    after everything above."""
    global ENV
    e, ENV = env(), None
    rc = e.stop()
    check(rc == 0, "exit status %r" % rc)
    check("shutdown" in e.log(), "shutdown logged")


def main():
    try:
        run([test_delivery_exact_byte_for_byte, test_delivery_tag_catchall_alias_postmaster,
             test_unknown_recipient, test_open_relay_refused, test_starttls_delivery,
             test_bare_helo_and_greeting, test_submission_auth_mechanisms,
             test_submission_starttls_login, test_submission_requires_auth,
             test_auth_before_starttls_refused, test_auth_wrong_password, test_auth_scram,
             test_auth_external, test_mail_from_not_owned, test_from_header_not_owned,
             test_message_id_date_added, test_remote_recipient_submission,
             test_ehlo_extensions, test_vrfy_help_noop_rset_quit, test_bad_commands,
             test_max_errors, test_pipelining, test_swaks_starttls_and_auth, test_bdat,
             test_smtputf8, test_oversize, test_smuggling, test_starttls_injection,
             test_dsn_params, test_rcptmax, test_clean_shutdown])
    finally:
        if ENV is not None:
            ENV.stop()


if __name__ == "__main__":
    main()
