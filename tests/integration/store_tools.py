# SPDX-License-Identifier: ISC
"""Integration: the data tools on the real binary. import -> export round
trips (mbox, Maildir) with flags and keywords, malformed input named,
backup under concurrent deliveries, verifydata finding each kind of damage,
gentestdata, and the crash test: a delivering process killed with SIGKILL
at 20 random points, after which verifydata passes and every delivery it
reported durable is there."""
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import OSPREY, Failure, check, run, tmpdir  # noqa: E402

BUILD = os.environ.get("top_builddir", ".")
DELIVER_LOOP = os.path.join(BUILD, "tests", "tools", "deliver_loop")

SEEN, ANSWERED, FLAGGED, DELETED, DRAFT = 1, 2, 4, 8, 16


class Env:
    """A data dir and a config pointing at it."""

    def __init__(self):
        self.dir = tmpdir()
        self.data = os.path.join(self.dir, "data")
        self.config = os.path.join(self.dir, "osprey.yaml")
        with open(self.config, "w") as f:
            f.write("hostname: mail.example.org\ndata-dir: %s\n" % self.data)

    def osprey(self, *args, env=None, ok=True):
        e = dict(os.environ)
        e.update(env or {})
        p = subprocess.run([OSPREY, "-c", self.config] + list(args),
                           capture_output=True, text=True, env=e, timeout=60)
        if ok and p.returncode != 0:
            raise Failure("osprey %s: exit %d\n%s%s" % (" ".join(args), p.returncode,
                                                       p.stdout, p.stderr))
        return p

    def db(self, account):
        path = os.path.join(self.data, "accounts", account, "index.db")
        return sqlite3.connect("file:%s?mode=ro" % path, uri=True)

    def messages(self, account, mailbox):
        """(uid, flags, keywords set) of live messages, by uid."""
        with self.db(account) as db:
            rows = db.execute(
                "SELECT m.uid, m.flags, coalesce(m.keywords, '') FROM messages m "
                "JOIN mailboxes b ON b.id = m.mailbox_id "
                "WHERE b.name = ? AND b.removed = 0 AND m.expunged = 0 ORDER BY m.uid",
                (mailbox,)).fetchall()
        return [(u, f, frozenset(k.split())) for u, f, k in rows]


def verifydata(path, ok=True):
    p = subprocess.run([OSPREY, "verifydata", path], capture_output=True, text=True,
                       timeout=60)
    if ok and p.returncode != 0:
        raise Failure("verifydata %s: exit %d\n%s%s" % (path, p.returncode, p.stdout,
                                                        p.stderr))
    return p


# ---- import / export ------------------------------------------------------

# mboxrd as the exporter writes it: Status/X-Status/X-Keywords last in the
# header, every From_-looking body line escaped, a blank line after each.
MBOX = (
    "From MAILER-DAEMON Mon Jan  1 10:00:00 2024\n"
    "From: a@example.org\nTo: b@example.org\nSubject: one\n"
    "Status: RO\n"
    "\nplain body\n>From the start of a line\n>>From twice escaped\n"
    ">not a from line\n\n"
    "From MAILER-DAEMON Tue Jan  2 10:00:00 2024\n"
    "From: a@example.org\nSubject: two\n"
    "Status: O\nX-Status: AFT\nX-Keywords: $Forwarded project-x\n"
    "\nunread, answered, flagged, draft\n\n\n"
    "From MAILER-DAEMON Wed Jan  3 10:00:00 2024\n"
    "From: a@example.org\nSubject: three\nMIME-Version: 1.0\n"
    "Content-Type: multipart/mixed; boundary=x\n"
    "Status: RO\nX-Status: D\n"
    "\n--x\nContent-Type: text/plain\n\nhi\n--x\n"
    "Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
    "AAECAwQFBgcICQ==\n--x--\n\n")


def test_roundtrip_mbox():
    env = Env()
    src = os.path.join(env.dir, "in.mbox")
    with open(src, "w") as f:
        f.write(MBOX)
    p = env.osprey("import", "mbox", "alice", "Imported/Mbox", src)
    check("imported 3 messages" in p.stdout, "progress: %r" % p.stdout)
    msgs = env.messages("alice", "Imported/Mbox")
    check([(f, k) for _, f, k in msgs] == [
        (SEEN, frozenset()),
        (ANSWERED | FLAGGED | DRAFT, frozenset({"$Forwarded", "project-x"})),
        (SEEN | DELETED, frozenset())], "flags after import: %r" % msgs)
    # the store keeps CRLF, without the mbox status headers
    with env.db("alice") as db:
        mid = db.execute("SELECT id FROM messages WHERE uid = 1 AND mailbox_id = "
                         "(SELECT id FROM mailboxes WHERE name = 'Imported/Mbox')"
                         ).fetchone()[0]
    with open(os.path.join(env.data, "accounts", "alice", "msg", "0", str(mid)),
              "rb") as f:
        body = f.read()
    check(body.startswith(b"From: a@example.org\r\n") and b"Status" not in body and
          b"\r\nFrom the start" in body and b"\r\n>From twice" in body,
          "stored file: %r" % body)
    out = os.path.join(env.dir, "out")
    env.osprey("export", "mbox", "alice", out, "Imported/Mbox")
    with open(os.path.join(out, "Imported", "Mbox.mbox")) as f:
        got = f.read()
    check(got == MBOX, "mbox round trip differs:\n%s" % got)
    # export never overwrites
    p = env.osprey("export", "mbox", "alice", out, "Imported/Mbox", ok=False)
    check(p.returncode == 1 and "exists" in p.stderr, "overwrite: %r" % p.stderr)
    verifydata(env.data)


def write_maildir(root):
    for d in ("cur", "new", "tmp"):
        os.makedirs(os.path.join(root, d))
    with open(os.path.join(root, "dovecot-keywords"), "w") as f:
        f.write("0 $Forwarded\n1 project-x\n3 $Junk\n")
    files = [
        ("cur", "1700000001.M1P1.host:2,S", "Subject: a\n\nseen\n"),
        ("cur", "1700000002.M2P2.host:2,DFRT", "Subject: b\n\ndraft flagged\n"),
        ("cur", "1700000003.M3P3.host:2,Sabd", "Subject: c\n\nkeywords\n"),
        ("new", "1700000004.M4P4.host", "Subject: d\r\n\r\nnew, crlf\r\n"),
    ]
    for sub, name, text in files:
        p = os.path.join(root, sub, name)
        with open(p, "w", newline="") as f:
            f.write(text)
        t = int(name.split(".")[0])
        os.utime(p, (t, t))
    return files


def read_maildir(root):
    """[(mtime, flags info, keywords set, content)] sorted by mtime."""
    letters = {}
    kwfile = os.path.join(root, "dovecot-keywords")
    if os.path.exists(kwfile):
        for line in open(kwfile):
            n, name = line.rstrip("\n").split(" ", 1)
            letters[chr(ord("a") + int(n))] = name
    out = []
    for sub in ("cur", "new"):
        for name in os.listdir(os.path.join(root, sub)):
            p = os.path.join(root, sub, name)
            info = name.split(":2,", 1)[1] if ":2," in name else ""
            flags = "".join(sorted(c for c in info if c.isupper() and c != "P"))
            kws = frozenset(letters[c] for c in info if c.islower())
            with open(p, "rb") as f:
                content = f.read().replace(b"\r\n", b"\n")
            out.append((int(os.stat(p).st_mtime), flags, kws, content))
    return sorted(out)


def test_roundtrip_maildir():
    env = Env()
    src = os.path.join(env.dir, "Maildir")
    write_maildir(src)
    p = env.osprey("import", "maildir", "bob", "Inbox", src)
    check("imported 4 messages" in p.stdout, "progress: %r" % p.stdout)
    msgs = env.messages("bob", "Inbox")
    check([(f, k) for _, f, k in msgs] == [
        (SEEN, frozenset()),
        (DRAFT | FLAGGED | ANSWERED | DELETED, frozenset()),
        (SEEN, frozenset({"$Forwarded", "project-x", "$Junk"})),
        (0, frozenset())], "flags after import: %r" % msgs)
    out = os.path.join(env.dir, "out")
    env.osprey("export", "maildir", "bob", out)
    a, b = read_maildir(src), read_maildir(os.path.join(out, "Inbox"))
    check(a == b, "maildir round trip differs:\n%r\n%r" % (a, b))
    # and every default mailbox was exported as an (empty) maildir
    check(os.path.isdir(os.path.join(out, "Trash", "cur")), "Trash not exported")
    verifydata(env.data)


def test_import_malformed():
    env = Env()
    bad = os.path.join(env.dir, "bad.mbox")
    with open(bad, "wb") as f:
        f.write(b"From x Mon Jan  1 10:00:00 2024\nSubject: ok 1\n\nbody\n\n"
                b"From x Mon Jan  1 10:00:00 2024\nSubject: ok 2\n\nbody\n\n"
                b"From x Mon Jan  1 10:00:00 2024\nSubject: bad\n\nNUL \0 here\n\n"
                b"From x Mon Jan  1 10:00:00 2024\nSubject: after\n\nbody\n")
    p = env.osprey("import", "mbox", "carol", "Inbox", bad, ok=False)
    check(p.returncode == 1, "exit %d" % p.returncode)
    check("bad.mbox line 14: NUL byte in the message starting at line 11" in p.stderr,
          "error does not name the message: %r" % p.stderr)
    check("2 messages were imported" in p.stderr, "summary: %r" % p.stderr)
    check(len(env.messages("carol", "Inbox")) == 2, "the good messages are kept")
    notmbox = os.path.join(env.dir, "not.mbox")
    with open(notmbox, "w") as f:
        f.write("\nSubject: no From_ line\n\nbody\n")
    p = env.osprey("import", "mbox", "carol", "Inbox", notmbox, ok=False)
    check(p.returncode == 1 and "not.mbox line 2: not an mbox file" in p.stderr,
          "not an mbox: %r" % p.stderr)
    p = env.osprey("import", "maildir", "carol", "Inbox", env.dir + "/none", ok=False)
    check(p.returncode == 1 and "not a maildir" in p.stderr, "no maildir: %r" % p.stderr)
    p = env.osprey("import", "mbox", "carol", "Inbox", ok=False)
    check(p.returncode == 2 and "usage" in p.stderr, "usage: %r" % p.stderr)
    verifydata(env.data)


# ---- backup, verifydata, gentestdata -----------------------------------------

class Loop:
    """tests/tools/deliver_loop delivering until killed; reported uids."""

    def __init__(self, data, account, conc=4, count=0):
        self.proc = subprocess.Popen([DELIVER_LOOP, data, account, "Inbox", str(conc),
                                      str(count)], stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.fd = self.proc.stdout.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.uids = []

    def read(self):
        """Takes what the pipe holds (raw reads: no buffering layer)."""
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        self.uids += [int(x.split()[1]) for x in lines if x.startswith(b"uid ")]
        return self.uids

    def wait_for(self, n, timeout=20):
        deadline = time.monotonic() + timeout
        while len(self.read()) < n:
            if self.proc.poll() is not None:
                raise Failure("deliver_loop exited %s" % self.proc.returncode)
            if time.monotonic() > deadline:
                raise Failure("deliver_loop: only %d deliveries" % len(self.uids))
            time.sleep(0.01)

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.read()
        self.proc.stdout.close()
        return self.uids


def test_backup_concurrent():
    env = Env()
    loop = Loop(env.data, "busy")
    try:
        loop.wait_for(20)
        # other files of the data dir come along
        with open(os.path.join(env.data, "extra.conf"), "w") as f:
            f.write("kept\n")
        dests = []
        for i in range(3):
            d = os.path.join(env.dir, "backup%d" % i)
            p = env.osprey("backup", d)
            check("databases" in p.stdout, "backup output: %r" % p.stdout)
            dests.append(d)
            loop.wait_for(len(loop.uids) + 10)
    finally:
        uids = loop.kill()
    for d in dests:
        p = verifydata(d)
        check("1 accounts" in p.stdout, "backup content: %r" % p.stdout)
        check(open(os.path.join(d, "extra.conf")).read() == "kept\n", "extra file")
        check(open(os.path.join(d, "config", "osprey.yaml")).read() ==
              open(env.config).read(), "configuration not in the backup")
    # the last copy has the messages delivered before it started
    bk = sqlite3.connect("file:%s?mode=ro" % os.path.join(
        dests[-1], "accounts", "busy", "index.db"), uri=True)
    n = bk.execute("SELECT count(*) FROM messages WHERE expunged = 0").fetchone()[0]
    bk.close()
    check(20 <= n <= len(uids) + 8, "backup has %d of %d messages" % (n, len(uids)))
    # message files are hard links into the data dir
    st = os.stat(os.path.join(dests[-1], "accounts", "busy", "msg", "0", "1"))
    check(st.st_nlink >= 2, "message file not hard-linked")
    verifydata(env.data)
    # never overwrites
    p = env.osprey("backup", dests[0], ok=False)
    check(p.returncode == 1 and "not empty" in p.stderr, "overwrite: %r" % p.stderr)
    p = env.osprey("backup", os.path.join(env.data, "inside"), ok=False)
    check(p.returncode == 1 and "inside the data directory" in p.stderr,
          "backup into itself: %r" % p.stderr)


def gen(env):
    d = os.path.join(env.dir, "gen")
    p = env.osprey("gentestdata", d)
    check("test data written" in p.stdout, "gentestdata: %r" % p.stdout)
    return d


def test_gentestdata():
    env = Env()
    d = gen(env)
    p = verifydata(d)
    check("3 accounts" in p.stdout, "verifydata: %r" % p.stdout)
    accounts = sorted(os.listdir(os.path.join(d, "accounts")))
    check(accounts == ["alice", "bob", "heidi"], "accounts %r" % accounts)
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(d, "accounts", "alice",
                                                          "index.db"), uri=True)
    names = {r[0] for r in db.execute("SELECT name FROM mailboxes WHERE removed = 0")}
    check({"Lists/Osprey", "Archive/2024", "Caf\u00e9 \u2615"} <= names, "%r" % names)
    check(db.execute("SELECT count(*) FROM messages WHERE expunged = 1").fetchone()[0]
          >= 1, "no tombstone")
    check(db.execute("SELECT count(*) FROM messages WHERE keywords LIKE '%$Important%'"
                     ).fetchone()[0] == 1, "keywords")
    db.close()
    # its config exports (the data dir is the config's directory)
    out = os.path.join(env.dir, "exp")
    subprocess.run([OSPREY, "-c", os.path.join(d, "osprey.yaml"), "export", "mbox",
                    "alice", out, "Inbox"], check=True, capture_output=True)
    text = open(os.path.join(out, "Inbox.mbox"), "rb").read()
    check(b"Content-Transfer-Encoding: base64" in text and b"X-Keywords: $Important"
          in text, "export of generated data")
    # with a domains.yaml, import only into configured accounts
    p = subprocess.run([OSPREY, "-c", os.path.join(d, "osprey.yaml"), "import", "mbox",
                        "typo", "Inbox", os.path.join(out, "Inbox.mbox")],
                       capture_output=True, text=True)
    check(p.returncode == 1 and "account typo is not in" in p.stderr,
          "unknown account: %r" % p.stderr)
    check(not os.path.exists(os.path.join(d, "accounts", "typo")), "typo created")
    p = env.osprey("gentestdata", d, ok=False)
    check(p.returncode == 1 and "not empty" in p.stderr, "refuses non-empty dir")


def damaged(env, name, fn):
    """A copy of the generated data dir, damaged by fn(dir)."""
    src = os.path.join(env.dir, "gen")
    d = os.path.join(env.dir, name)
    shutil.copytree(src, d)
    fn(d)
    return verifydata(d, ok=False)


def msgfile(d, account, id):
    return os.path.join(d, "accounts", account, "msg", str(id // 8192), str(id))


def alice_row(d, uid, mailbox="Inbox"):
    db = sqlite3.connect(os.path.join(d, "accounts", "alice", "index.db"))
    r = db.execute("SELECT m.id, m.size FROM messages m JOIN mailboxes b ON "
                   "b.id = m.mailbox_id WHERE b.name = ? AND m.uid = ? AND "
                   "m.expunged = 0", (mailbox, uid)).fetchone()
    db.close()
    return r


def test_verifydata_detects():
    env = Env()
    gen(env)

    def rm(d):
        os.unlink(msgfile(d, "alice", alice_row(d, 3)[0]))
    p = damaged(env, "rm", rm)
    check(p.returncode == 1 and "account alice: message 3 (Inbox uid 3): file missing"
          in p.stdout and "1 problem" in p.stdout, "deleted file: %r" % p.stdout)

    def trunc(d):
        with open(msgfile(d, "alice", alice_row(d, 4)[0]), "r+b") as f:
            f.truncate(10)
    p = damaged(env, "trunc", trunc)
    check(p.returncode == 1 and "account alice: message 4 (Inbox uid 4): file size 10,"
          in p.stdout, "truncated file: %r" % p.stdout)

    def stray(d):
        with open(os.path.join(d, "accounts", "bob", "msg", "0", "notes.txt"), "w") as f:
            f.write("x")
        db = sqlite3.connect(os.path.join(d, "accounts", "heidi", "index.db"))
        db.execute("DELETE FROM messages WHERE id = 1")
        db.commit()
        db.close()
    p = damaged(env, "stray", stray)
    check(p.returncode == 1 and "account bob: stray file " in p.stdout and
          "notes.txt" in p.stdout, "stray file: %r" % p.stdout)
    check("account heidi: stray file " in p.stdout and
          "no message 1 in the database" in p.stdout, "file without row: %r" % p.stdout)

    def count(d):
        db = sqlite3.connect(os.path.join(d, "accounts", "bob", "index.db"))
        db.execute("UPDATE mailboxes SET total = total + 1 WHERE name = 'Inbox'")
        db.execute("UPDATE mailboxes SET uidnext = 1 WHERE name = 'Junk'")
        db.commit()
        db.close()
    p = damaged(env, "count", count)
    check(p.returncode == 1 and "account bob: mailbox Inbox: total count 2, messages "
          "say 1" in p.stdout, "wrong count: %r" % p.stdout)
    check("account bob: mailbox Junk: uid 1 not below uidnext 1" in p.stdout,
          "uidnext: %r" % p.stdout)

    def garbage(d):
        with open(os.path.join(d, "accounts", "bob", "index.db"), "r+b") as f:
            f.seek(200)
            f.write(b"\xff" * 3000)
    p = damaged(env, "garbage", garbage)
    check(p.returncode == 1 and "account bob:" in p.stdout, "corrupt db: %r" % p.stdout)


def test_crash():
    env = Env()
    seed = int(os.environ.get("OSPREY_TEST_SEED", "0")) or random.randrange(1 << 30)
    rnd = random.Random(seed)
    reported = set()
    for i in range(20):
        loop = Loop(env.data, "crash", conc=rnd.choice([1, 4, 16]))
        try:
            loop.wait_for(1)
            time.sleep(rnd.uniform(0.0, 0.25))
        finally:
            uids = loop.kill()
        check(len(set(uids)) == len(uids), "a uid reported twice: %r" % uids)
        reported |= set(uids)
        verifydata(env.data)
        present = {u for u, _, _ in env.messages("crash", "Inbox")}
        lost = reported - present
        check(not lost, "kill %d (OSPREY_TEST_SEED=%d): reported durable but "
              "missing: %r" % (i, seed, sorted(lost)))
    check(len(reported) >= 20, "only %d deliveries" % len(reported))


if __name__ == "__main__":
    run([test_roundtrip_mbox, test_roundtrip_maildir, test_import_malformed,
         test_gentestdata, test_verifydata_detects, test_backup_concurrent, test_crash])
