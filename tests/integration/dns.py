# SPDX-License-Identifier: ISC
"""Integration: `osprey dns lookup TYPE NAME` with the real binary and a
config whose dns section points at the signed zones that nsd serves on
loopback (tests/lib/dnszone.py): output format, DNSSEC status, exit
codes for answers, NXDOMAIN, bogus data, timeouts and usage errors."""
import os
import socket
import subprocess
import sys
import time

SRC = os.environ.get("top_srcdir", ".")
sys.path.insert(0, os.path.join(SRC, "tests", "lib"))
from osprey_test import OSPREY, check, run, tmpdir  # noqa: E402

FIXTURE = os.path.join(SRC, "tests", "lib", "dnszone.py")
PYTHON = os.environ.get("PYTHON3") or "/usr/bin/python3"
DIR = tmpdir()
FX = {}


def start_fixture():
    p = subprocess.run([PYTHON, FIXTURE, "start", os.path.join(DIR, "dns"),
                        str(os.getpid())], stdout=subprocess.PIPE, text=True)
    if p.returncode == 77:
        print("nsd or ldns tools missing: skipped (OSPREY_ALLOW_SKIP)")
        print("0 passed, 0 failed, 1 skipped")
        sys.exit(77)
    if p.returncode != 0:
        print("the nsd fixture did not start")
        print("0 passed, 1 failed")
        sys.exit(1)
    for line in p.stdout.splitlines():
        k, _, v = line.partition("=")
        FX[k] = v
    with open(FX["anchors"]) as f:
        FX["ds"] = [line.strip() for line in f if line.strip()]


def stop_fixture():
    subprocess.run([PYTHON, FIXTURE, "stop", os.path.join(DIR, "dns")])


def config(port, anchors=True, timeout="3s", extra=""):
    """A config file with only what `dns lookup` needs."""
    ta = "".join('    - "%s"\n' % ds for ds in FX["ds"]) if anchors else ""
    text = ("data-dir: %s\n"
            "dns:\n"
            "  forwarders: [\"127.0.0.1@%s\"]\n"
            "  root-anchor: false\n"
            "  timeout: %s\n"
            "  unbound-options:\n"
            "    - \"local-zone: test. transparent\"\n"
            "    - \"local-zone: 127.in-addr.arpa. transparent\"\n"
            % (os.path.join(DIR, "data"), port, timeout))
    if ta:
        text += "  trust-anchors:\n" + ta
    text += extra
    path = os.path.join(DIR, "osprey-%d.yaml" % len(os.listdir(DIR)))
    with open(path, "w") as f:
        f.write(text)
    return path


def lookup(conf, *args, timeout=20):
    p = subprocess.run([OSPREY, "-c", conf, "dns", "lookup", *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def expect(conf, qtype, name, lines, code=0):
    rc, out, err = lookup(conf, qtype, name)
    check(rc == code, "%s %s: exit %d (want %d): %s%s"
          % (qtype, name, rc, code, out, err))
    got = out.splitlines()
    for line in lines:
        check(line in got, "%s %s: no line %r in:\n%s" % (qtype, name, line, out))
    return out


def test_secure_answers():
    conf = config(FX["port"])
    secure = ["; dnssec: secure", "; rcode: NOERROR"]
    expect(conf, "MX", "example.test",
           ["example.test. 3600 MX 10 mx.example.test."] + secure)
    expect(conf, "a", "mx.example.test",
           ["mx.example.test. 3600 A 127.0.0.25"] + secure)
    expect(conf, "AAAA", "mx.example.test.",
           ["mx.example.test. 3600 AAAA 2001:db8::25"] + secure)
    expect(conf, "TXT", "long.example.test",
           ['long.example.test. 3600 TXT "first string; second string; third string"']
           + secure)
    expect(conf, "TLSA", "_25._tcp.mx.example.test",
           ["_25._tcp.mx.example.test. 3600 TLSA 3 1 1 "
            "8D02536C887482BC34FF54E41D2BA659BF85B341A0A20AFADB5813DCFBCF286D"]
           + secure)
    expect(conf, "PTR", "25.0.0.127.in-addr.arpa",
           ["25.0.0.127.in-addr.arpa. 3600 PTR mx.example.test."] + secure)
    expect(conf, "A", "alias.example.test",
           ["; canonical name: mx.example.test.",
            "mx.example.test. 3600 A 127.0.0.25"] + secure)


def test_nxdomain_nodata():
    conf = config(FX["port"])
    out = expect(conf, "A", "nosuch.example.test",
                 ["; dnssec: secure", "; rcode: NXDOMAIN"])
    check(len(out.splitlines()) == 2, "records for NXDOMAIN: " + out)
    out = expect(conf, "TXT", "mx.example.test",
                 ["; dnssec: secure", "; rcode: NOERROR"])
    check(len(out.splitlines()) == 2, "records for NODATA: " + out)


def test_bogus_and_insecure():
    rc, out, err = lookup(config(FX["tampered_port"]), "A", "mx.example.test")
    check(rc == 1, "bogus answer: exit %d" % rc)
    check(any(line.startswith("; dnssec: bogus (") and len(line) > 20
              for line in out.splitlines()), "no bogus reason: " + out)
    check("127.0.0.66" not in out, "bogus data printed: " + out)
    expect(config(FX["tampered_port"], anchors=False), "A", "mx.example.test",
           ["mx.example.test. 3600 A 127.0.0.66", "; dnssec: insecure"])


def test_timeout():
    # a UDP port that never answers and a TCP listener that never accepts
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    port = u.getsockname()[1]
    t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        t.bind(("127.0.0.1", port))
        t.listen(1)
    except OSError:
        pass
    try:
        t0 = time.monotonic()
        rc, out, err = lookup(config(port, timeout="500ms"), "A", "mx.example.test")
        dt = time.monotonic() - t0
    finally:
        u.close()
        t.close()
    check(rc == 1, "timeout: exit %d: %s%s" % (rc, out, err))
    check(dt < 5, "timeout took %.1fs" % dt)


def test_usage_and_config_errors():
    conf = config(FX["port"])
    for args in (["NS", "example.test"], ["A"], ["A", "b", "c"], ["A", ""]):
        rc, out, err = lookup(conf, *args)
        check(rc == 2, "usage %r: exit %d" % (args, rc))
        check("usage" in err, "usage %r: no usage line: %s" % (args, err))
    conf = config(FX["port"], extra="") .replace(".yaml", "-root.yaml")
    with open(conf, "w") as f:
        f.write("data-dir: %s\ndns:\n  root-anchor: true\n"
                "  root-anchor-file: /nonexistent/root.key\n"
                % os.path.join(DIR, "data"))
    rc, out, err = lookup(conf, "A", "example.test")
    check(rc == 1 and "dns-root-data" in err,
          "missing root key: exit %d: %s" % (rc, err))


if __name__ == "__main__":
    start_fixture()
    try:
        run([test_secure_answers, test_nxdomain_nodata, test_bogus_and_insecure,
             test_timeout, test_usage_and_config_errors])
    finally:
        stop_fixture()
