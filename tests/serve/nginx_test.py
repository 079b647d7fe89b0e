#!/usr/bin/env python3
"""Scale-out behind nginx: two `sd serve` on loopback behind an nginx upstream; a bounded number of
requests from several clients; one backend killed in the middle. Every request must get exactly one
complete answer (its own prompt echoed, one PNG), the ones the dead backend held retried on the other.
Usage: nginx_test.py SD_BINARY MODEL   (exit 77, CTest's "skipped", without nginx)"""
import base64
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Processes, fail, free_port, http, skip, start_server, wait_healthy  # noqa: E402

REQUESTS, CLIENTS, KILL_AFTER = 24, 4, 6
sd, model = sys.argv[1], sys.argv[2]
nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)
if not nginx:
    skip("nginx is not installed (Debian: apt-get install nginx-light)")

work = tempfile.mkdtemp(prefix="libsd-nginx-")
os.chmod(work, 0o755)
CONF = """
worker_processes 1;
error_log {work}/error.log warn;
pid {work}/nginx.pid;
events {{ worker_connections 64; }}
http {{
  access_log {work}/access.log;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  upstream sd_backends {{
    server 127.0.0.1:{a} max_fails=1 fail_timeout=30s;
    server 127.0.0.1:{b} max_fails=1 fail_timeout=30s;
  }}
  server {{
    listen 127.0.0.1:{port};
    client_max_body_size 8m;
    client_body_buffer_size 8m;
    location / {{
      proxy_pass http://sd_backends;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_read_timeout 120s;
      proxy_next_upstream error timeout http_502 http_503 non_idempotent;
      proxy_next_upstream_tries 2;
    }}
  }}
}}
"""

with Processes() as procs:
    a, b, port = free_port(), free_port(), free_port()
    backend_a = start_server(procs, sd, model, a, os.path.join(work, "a.log"))
    backend_b = start_server(procs, sd, model, b, os.path.join(work, "b.log"))
    with open(os.path.join(work, "nginx.conf"), "w") as f:
        f.write(CONF.format(work=work, a=a, b=b, port=port))
    procs.start([nginx, "-p", work, "-c", os.path.join(work, "nginx.conf"), "-g", "daemon off;"],
                os.path.join(work, "nginx.out"))
    wait_healthy(f"http://127.0.0.1:{port}", timeout=30)

    answers = {}
    lock = threading.Lock()
    done = [0]
    killed = threading.Event()

    def client(indices):
        for i in indices:
            body = {"prompt": f"request {i}", "size": "64x64", "steps": 8, "seed": i}
            status, raw = http("POST", f"http://127.0.0.1:{port}/v1/images/generations", body, timeout=120)
            with lock:
                answers.setdefault(i, []).append((status, raw))
                done[0] += 1

    def killer():
        # After KILL_AFTER answers, kill backend A while it is generating: a request is in flight there.
        deadline = time.time() + 120
        while time.time() < deadline and done[0] < KILL_AFTER:
            time.sleep(0.02)
        while time.time() < deadline:
            status, raw = http("GET", f"http://127.0.0.1:{a}/metrics", timeout=2)
            if status == 200 and b"\nsd_running 1" in raw:
                break
            time.sleep(0.005)
        os.killpg(backend_a.pid, signal.SIGKILL)
        killed.set()

    threads = [threading.Thread(target=client, args=(range(c, REQUESTS, CLIENTS),)) for c in range(CLIENTS)]
    threads.append(threading.Thread(target=killer))
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    if any(t.is_alive() for t in threads):
        fail("clients still waiting after 300 s")
    if not killed.is_set():
        fail("backend A was never killed")
    problems = []
    for i in range(REQUESTS):
        got = answers.get(i, [])
        if len(got) != 1:
            problems.append(f"request {i}: {len(got)} answers")
            continue
        status, raw = got[0]
        if status != 200:
            problems.append(f"request {i}: HTTP {status} {raw[:200]!r}")
            continue
        data = json.loads(raw)["data"]
        if len(data) != 1 or data[0].get("revised_prompt") != f"request {i}":
            problems.append(f"request {i}: answer of another request or incomplete: {data and data[0].get('revised_prompt')}")
        elif base64.b64decode(data[0]["b64_json"])[:4] != b"\x89PNG":
            problems.append(f"request {i}: not a PNG")
    # Each client request appears once in nginx's access log: nginx retried upstream, not the client.
    # nginx writes a request's line just after the client has its answer: give it a moment.
    deadline = time.time() + 5
    while True:
        with open(os.path.join(work, "access.log")) as f:
            posts = [line for line in f if "POST /v1/images/generations" in line]
        if len(posts) >= REQUESTS or time.time() > deadline:
            break
        time.sleep(0.1)
    if len(posts) != REQUESTS:
        problems.append(f"nginx logged {len(posts)} requests, expected {REQUESTS}")
    # nginx saw the dead backend fail a request and passed it on (an "upstream" error in its log).
    upstream_errors = sum("upstream" in line for line in open(os.path.join(work, "error.log")))
    if upstream_errors == 0:
        problems.append("no request failed on the killed backend: the retry was not exercised")
    served_b = open(os.path.join(work, "b.log")).read().count("POST /v1/images/generations 200")
    if problems:
        fail("; ".join(problems) + f"\nnginx errors: {open(os.path.join(work, 'error.log')).read()[-2000:]}")
    if backend_b.poll() is not None:
        fail("backend B died")
    shutil.rmtree(work, ignore_errors=True)  # kept on failure, for its logs
    print(f"PASS: {REQUESTS} requests, {REQUESTS} answers in {time.time() - start:.1f} s; backend A killed after "
          f"{KILL_AFTER} answers while generating; nginx logged {upstream_errors} upstream error(s); "
          f"backend B served {served_b}")
