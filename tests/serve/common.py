"""Helpers of the serve scripts (browser_test.py, nginx_test.py): free ports, `sd serve` children
that are always killed, HTTP with timeouts. Python's standard library only."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, timeout=60, headers=None):
    """(status, body bytes); status 0 when no answer came."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout, TimeoutError):
        return 0, b""


class Processes:
    """Children started here, killed on exit whatever happens."""

    def __init__(self):
        self.children = []

    def __enter__(self):
        return self

    def start(self, argv, log_path):
        log = open(log_path, "w")
        child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.children.append(child)
        return child

    def __exit__(self, *exc):
        for child in self.children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
        return False


def start_server(procs, sd, model, port, log_path, extra=(), threads=1):
    child = procs.start([sd, "serve", "--model", model, "--host", "127.0.0.1", "--port", str(port),
                         "--threads", str(threads), *extra], log_path)
    wait_healthy(f"http://127.0.0.1:{port}", child, log_path)
    return child


def wait_healthy(base, child=None, log_path=None, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if child is not None and child.poll() is not None:
            fail(f"the server exited with {child.returncode}: {open(log_path).read()[-2000:]}")
        status, _ = http("GET", base + "/health", timeout=2)
        if status == 200:
            return
        time.sleep(0.1)
    fail(f"{base} did not become healthy in {timeout} s")


def fail(message):
    print("FAIL:", message, flush=True)
    sys.exit(1)


def skip(message):
    print("SKIP:", message, flush=True)
    sys.exit(77)
