# SPDX-License-Identifier: ISC
"""osprey config account|address|domain and setaccountpassword with the real
binary: targeted edits of domains.yaml that keep comments, refusals with a
clear message and a non-zero exit, passwords from stdin."""
import os
import sqlite3
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ.get("top_srcdir", "."), "tests", "lib"))
from osprey_test import OSPREY, check, run, tmpdir  # noqa: E402

HEADER = "# Domains of the integration test: this comment must survive.\n"


def setup(domains=None):
    d = tmpdir()
    with open(os.path.join(d, "osprey.yaml"), "w") as f:
        f.write("hostname: mail.example.com\ndata-dir: data\n")
    if domains is not None:
        with open(os.path.join(d, "domains.yaml"), "w") as f:
            f.write(domains)
    return d


def osprey(d, *args, stdin=None):
    p = subprocess.run([OSPREY, "-c", os.path.join(d, "osprey.yaml")] + list(args),
                       input=stdin, capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def ok(d, *args, stdin=None):
    rc, out, err = osprey(d, *args, stdin=stdin)
    check(rc == 0, "%s: exit %d: %s" % (" ".join(args), rc, err))
    return out


def fails(d, needle, *args, stdin=None):
    before = read(d)
    rc, out, err = osprey(d, *args, stdin=stdin)
    check(rc != 0, "%s: should fail, got: %s" % (" ".join(args), out))
    check(needle in err, "%s: want %r in stderr, got %r" % (" ".join(args), needle, err))
    check(read(d) == before, "%s: failed command changed domains.yaml" % " ".join(args))
    return err


def read(d):
    try:
        with open(os.path.join(d, "domains.yaml")) as f:
            return f.read()
    except FileNotFoundError:
        return None


def accounts(d):
    out = ok(d, "config", "account", "list")
    return dict(line.split("\t") if "\t" in line else (line, "")
                for line in out.splitlines())


def test_round_trip_keeps_comments():
    d = setup(HEADER + "domains:\n  # the main domain\n  example.com:\n"
              "    localpart-catchall-separator: \"+\"\n"
              "accounts:  # people\n  admin:\n    domain: example.com\n"
              "    destinations:\n      admin: {}  # the admin\n"
              "# trailing comment\n")
    ok(d, "config", "account", "add", "alice", "alice@example.com")
    ok(d, "config", "address", "add", "Info@Example.com", "alice")
    ok(d, "config", "domain", "add", "bücher.example", "bob", "bob")
    ok(d, "config", "address", "add", "kontakt@xn--bcher-kva.example", "bob")
    acc = accounts(d)
    check(acc.get("alice") == "alice@example.com, info@example.com", repr(acc))
    check(acc.get("bob") == "bob@xn--bcher-kva.example, kontakt@xn--bcher-kva.example",
          repr(acc))
    check(os.path.isdir(os.path.join(d, "data", "accounts", "alice")), "alice's store")
    check(os.path.isdir(os.path.join(d, "data", "accounts", "bob")), "bob's store")
    text = read(d)
    for c in (HEADER.strip(), "# the main domain", "# people", "# the admin",
              "# trailing comment"):
        check(c in text, "comment %r lost:\n%s" % (c, text))

    # Removal, in reverse, restores the original text but for the
    # postmaster line of the domain added.
    ok(d, "config", "address", "rm", "kontakt@bücher.example")
    fails(d, "in use", "config", "domain", "rm", "xn--bcher-kva.example")
    out = ok(d, "config", "account", "rm", "bob")
    check("postmaster-account bob removed" in out, out)
    ok(d, "config", "domain", "rm", "xn--bcher-kva.example")
    ok(d, "config", "address", "rm", "INFO@example.com")
    ok(d, "config", "account", "rm", "alice")
    check(read(d) == HEADER + "domains:\n  # the main domain\n  example.com:\n"
          "    localpart-catchall-separator: \"+\"\n"
          "accounts:  # people\n  admin:\n    domain: example.com\n"
          "    destinations:\n      admin: {}  # the admin\n"
          "# trailing comment\n", "round trip:\n" + read(d))
    # The account's messages are kept.
    check(os.path.isdir(os.path.join(d, "data", "accounts", "alice")), "data kept")


def test_multiline_entry():
    base = ("domains:\n  example.com: {}\naccounts:\n  keep:\n"
            "    domain: example.com\n")
    d = setup(base + "  gone:\n    domain: example.com\n    description: |\n"
              "      first line\n\n      # not a comment: literal text\n"
              "    # a comment inside the entry\n"
              "\n# after the accounts\n")
    ok(d, "config", "account", "add", "new", "new@example.com")
    text = read(d)
    check(text.index("  new:\n") > text.index("# a comment inside the entry")
          and text.index("  new:\n") < text.index("# after the accounts"), text)
    ok(d, "config", "account", "rm", "gone")
    ok(d, "config", "account", "rm", "new")
    check(read(d) == base + "\n# after the accounts\n", "left:\n" + read(d))


def test_concurrent_edits():
    d = setup("domains:\n  example.com: {}\n")
    procs = [subprocess.Popen([OSPREY, "-c", os.path.join(d, "osprey.yaml"), "config",
                               "account", "add", "u%d" % i, "u%d@example.com" % i],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(8)]
    for p in procs:
        _, err = p.communicate(timeout=60)
        check(p.returncode == 0, err.decode())
    acc = accounts(d)
    check(sorted(acc) == ["u%d" % i for i in range(8)], "lost update: %r" % acc)


def test_create_file():
    d = setup()
    ok(d, "config", "domain", "add", "example.org", "postmaster", "postmaster")
    ok(d, "config", "account", "add", "carol", "carol@example.org")
    acc = accounts(d)
    check(acc == {"postmaster": "postmaster@example.org",
                  "carol": "carol@example.org"}, repr(acc))
    check(not any(n.startswith("domains.yaml.tmp") for n in os.listdir(d)),
          "temporary file left")


def test_refusals():
    d = setup(HEADER + "domains:\n  example.com: {}\naccounts:\n  admin:\n"
              "    domain: example.com\n    destinations:\n      admin: {}\n"
              "aliases:\n  all@example.com:\n    members: [admin@example.com]\n")
    fails(d, "domain nope.example does not exist", "config", "account", "add",
          "x", "x@nope.example")
    fails(d, "account admin already exists", "config", "account", "add",
          "admin", "other@example.com")
    fails(d, "already belongs to account admin", "config", "account", "add",
          "y", "ADMIN@example.com")
    fails(d, "is an alias", "config", "address", "add", "all@example.com", "admin")
    fails(d, "no account named zed", "config", "address", "add",
          "z@example.com", "zed")
    fails(d, "does not belong to an account", "config", "address", "rm",
          "ghost@example.com")
    fails(d, "no account named ghost", "config", "account", "rm", "ghost")
    fails(d, "domain Example.COM already exists", "config", "domain", "add",
          "Example.COM", "admin", "x")
    fails(d, "in use", "config", "domain", "rm", "example.com")
    fails(d, "no domain", "config", "domain", "rm", "example.net")
    fails(d, "invalid", "config", "domain", "add", "bad_domain.com", "admin", "x")
    fails(d, "invalid account name", "config", "account", "add", "a/b",
          "ab@example.com")
    # Removing admin would leave the alias with an unknown member: the
    # loader refuses the result, naming the line.
    err = fails(d, "not writing", "config", "account", "rm", "admin")
    check("aliases.all@example.com.members[0]" in err, err)
    rc, _, err = osprey(d, "config", "account", "frob")
    check(rc == 2 and "usage" in err, "usage: %d %r" % (rc, err))


def test_invalid_file_untouched():
    d = setup("domains:\n  example.com: {}\naccounts:\n  a:\n    domain: nope.example\n")
    err = fails(d, "fix the file first", "config", "account", "add", "b",
                "b@example.com")
    check("domains.yaml:5:13: accounts.a.domain" in err, err)


def test_flow_style_refused():
    d = setup("domains: {example.com: {}}\n")
    fails(d, "edit it by hand", "config", "domain", "add", "example.net", "n", "n")


def test_setaccountpassword():
    d = setup("domains:\n  example.com: {}\naccounts:\n  alice:\n"
              "    domain: example.com\n    destinations:\n      alice: {}\n")
    pw = b"s3cret-Passw0rd"
    err = fails(d, "too short", "setaccountpassword", "alice", stdin=b"1234567\n")
    check("at least 8 bytes" in err, err)
    fails(d, "too short", "setaccountpassword", "alice", stdin=b"")
    fails(d, "no account named bob", "setaccountpassword", "bob",
          stdin=pw + b"\n")
    ok(d, "setaccountpassword", "alice", stdin=pw + b"\n")
    db = os.path.join(d, "data", "auth.db")
    check(os.stat(db).st_mode & 0o077 == 0, "auth.db mode")
    con = sqlite3.connect(db)
    row = con.execute("SELECT crypt, scram_sha1, scram_sha256, cram_md5 "
                      "FROM credentials WHERE account = 'alice'").fetchone()
    con.close()
    check(row is not None, "no credentials row")
    check(row[0].startswith("$y$") or row[0].startswith("$2b$"), row[0])
    check(row[1].startswith("4096,") and row[2].startswith("4096,"), repr(row))
    check(len(row[3]) == 64, row[3])
    for name in os.listdir(os.path.join(d, "data")):
        if name.startswith("auth.db"):
            with open(os.path.join(d, "data", name), "rb") as f:
                check(pw not in f.read(), "password in " + name)
    check(crypt_ok(pw, row[0]), "crypt() does not verify the stored hash")
    # Exactly 8 bytes without a newline; CRLF; only the first line counts.
    for given, want in ((b"12345678", b"12345678"), (b"abcdefgh\r\n", b"abcdefgh"),
                        (b"firstline\nsecond\n", b"firstline")):
        ok(d, "setaccountpassword", "alice", stdin=given)
        con = sqlite3.connect(db)
        h = con.execute("SELECT crypt FROM credentials").fetchone()[0]
        con.close()
        check(crypt_ok(want, h), "password from %r" % given)
        check(given == want or not crypt_ok(given, h), "whole input %r used" % given)


def crypt_ok(pw, h):
    """Checks a hash with the system's crypt(3) (libxcrypt), independently
    of osprey; True when Python has no crypt module."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import crypt
        except ImportError:
            return True
    return crypt.crypt(pw.decode(), h) == h


def main():
    run([test_round_trip_keeps_comments, test_multiline_entry, test_concurrent_edits,
         test_create_file, test_refusals,
         test_invalid_file_untouched, test_flow_style_refused,
         test_setaccountpassword])


if __name__ == "__main__":
    main()
