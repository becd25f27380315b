# SPDX-License-Identifier: ISC
"""Helpers for integration tests: run the real osprey binary on loopback."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

OSPREY = os.environ.get("OSPREY_BIN", "./osprey")


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def tmpdir():
    d = tempfile.mkdtemp(prefix="osprey-it-")
    if not os.environ.get("OSPREY_KEEP_TMP"):
        import atexit
        atexit.register(shutil.rmtree, d, True)
    return d


def make_cert(dir, name, cn="localhost"):
    """Self-signed certificate with SANs for localhost and 127.0.0.1."""
    crt, key = os.path.join(dir, name + ".crt"), os.path.join(dir, name + ".key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
                    "-subj", "/CN=" + cn, "-keyout", key, "-out", crt,
                    "-addext", "subjectAltName=DNS:%s,DNS:localhost,IP:127.0.0.1" % cn],
                   check=True, capture_output=True)
    return crt, key


class Server:
    """osprey serve with a config file; log captured to a file."""

    def __init__(self, dir, config):
        self.dir = dir
        self.config = os.path.join(dir, "osprey.yaml")
        self.write_config(config)
        self.logpath = os.path.join(dir, "osprey.log")
        self.proc = None

    def write_config(self, text):
        tmp = self.config + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.rename(tmp, self.config)

    def start(self, timeout=15):
        self.log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([OSPREY, "-c", self.config, "serve"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.wait_log(" ready ", timeout)

    def logtext(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_log(self, needle, timeout=10, start=0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.logtext()
            if needle in text[start:]:
                return text
            if self.proc is not None and self.proc.poll() is not None:
                raise Failure("osprey exited (%s) waiting for %r:\n%s" %
                              (self.proc.returncode, needle, text))
            time.sleep(0.05)
        raise Failure("timeout waiting for %r in log:\n%s" % (needle, self.logtext()))

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=15):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failure("osprey did not stop within %ss" % timeout)


def run(tests):
    """Runs test functions; prints a summary line; exits non-zero on failure."""
    passed = failed = 0
    for t in tests:
        t0 = time.monotonic()
        try:
            t()
        except Exception as e:  # report every failure, keep going
            failed += 1
            print("FAIL %s: %s: %s" % (t.__name__, type(e).__name__, e), flush=True)
        else:
            passed += 1
            print("ok   %s (%.2fs)" % (t.__name__, time.monotonic() - t0), flush=True)
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)
