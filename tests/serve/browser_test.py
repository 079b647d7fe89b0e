#!/usr/bin/env python3
"""The page at / in a real headless Chromium, driven through chromedriver's WebDriver protocol:
type a prompt, click Generate, wait for the image, check that it is a PNG of the size asked for.
Usage: browser_test.py SD_BINARY MODEL   (exit 77, CTest's "skipped", without chromium/chromedriver)"""
import base64
import os
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Processes, fail, free_port, http, skip, start_server  # noqa: E402

sd, model = sys.argv[1], sys.argv[2]
driver_binary = shutil.which("chromedriver")
browser_binary = shutil.which("chromium") or shutil.which("chromium-browser")
if not driver_binary or not browser_binary:
    skip("chromium and chromium-driver are not installed (Debian: apt-get install chromium chromium-driver)")

work = tempfile.mkdtemp(prefix="libsd-browser-")
with Processes() as procs:
    port = free_port()
    start_server(procs, sd, model, port, os.path.join(work, "server.log"))
    driver_port = free_port()
    procs.start([driver_binary, f"--port={driver_port}", "--allowed-ips=127.0.0.1"], os.path.join(work, "driver.log"))
    wd = f"http://127.0.0.1:{driver_port}"
    deadline = time.time() + 30
    while http("GET", wd + "/status", timeout=2)[0] != 200:
        if time.time() > deadline:
            fail("chromedriver did not start")
        time.sleep(0.1)

    import json

    def call(method, path, body=None, timeout=60):
        status, raw = http(method, wd + path, body, timeout=timeout)
        answer = json.loads(raw or b"{}")
        if status != 200:
            fail(f"WebDriver {method} {path}: {status} {raw[:500]!r}")
        return answer["value"]

    caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
        "binary": browser_binary,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--user-data-dir={work}/profile"]}}}}
    session = call("POST", "/session", caps, timeout=60)["sessionId"]
    s = f"/session/{session}"
    try:
        call("POST", s + "/url", {"url": f"http://127.0.0.1:{port}/"})

        def element(css):
            found = call("POST", s + "/element", {"using": "css selector", "value": css})
            return next(iter(found.values()))

        def set_value(css, text):
            e = element(css)
            call("POST", s + f"/element/{e}/clear", {})
            call("POST", s + f"/element/{e}/value", {"text": text})

        set_value("#prompt", "a watercolour lighthouse")
        set_value("#width", "64")
        set_value("#height", "48")
        set_value("#steps", "2")
        call("POST", s + f"/element/{element('#generate')}/click", {})
        src = ""
        deadline = time.time() + 120
        while not src.startswith("data:image/png;base64,"):
            if time.time() > deadline:
                error = call("POST", s + "/execute/sync", {"script": "return document.getElementById('error').textContent", "args": []})
                fail(f"no image on the page after 120 s (error shown: {error!r})")
            time.sleep(0.2)
            src = call("POST", s + "/execute/sync", {"script": "return document.getElementById('result').src", "args": []})
        png = base64.b64decode(src.split(",", 1)[1])
        if png[:8] != b"\x89PNG\r\n\x1a\n":
            fail("the image is not a PNG")
        width, height = struct.unpack(">II", png[16:24])
        if (width, height) != (64, 48):
            fail(f"the PNG is {width}x{height}, asked for 64x48")
        history = call("POST", s + "/execute/sync", {"script": "return document.querySelectorAll('#history img').length", "args": []})
        if history != 1:
            fail(f"the page's last results hold {history} images, expected 1")
        shutil.rmtree(work, ignore_errors=True)  # kept on failure, for its logs
        print(f"PASS: the page made a {width}x{height} PNG")
    finally:
        http("DELETE", wd + s, timeout=20)
