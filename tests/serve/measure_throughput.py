#!/usr/bin/env python3
"""Images per minute of one `sd serve`, with C concurrent clients, for docs/serving.md. Run by hand:
  python3 tests/serve/measure_throughput.py build/tools/sd MODEL --clients 1 8 --requests 16 --size 64x64 --steps 4
Each client sends its share of the requests one after another (OpenAI endpoint, n=1, its own seed)."""
import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import Processes, fail, free_port, http, start_server  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("sd")
parser.add_argument("model")
parser.add_argument("--clients", type=int, nargs="+", default=[1, 8])
parser.add_argument("--requests", type=int, default=16)
parser.add_argument("--size", default="64x64")
parser.add_argument("--steps", type=int, default=4)
parser.add_argument("--max-batch", type=int, default=8)
parser.add_argument("--threads", type=int, default=0)
args = parser.parse_args()

work = tempfile.mkdtemp(prefix="libsd-throughput-")
with Processes() as procs:
    port = free_port()
    start_server(procs, args.sd, args.model, port, os.path.join(work, "server.log"),
                 ["--max-batch", str(args.max_batch), "--max-queue", "64"], threads=args.threads)
    base = f"http://127.0.0.1:{port}"
    # One request first: the first call pays one-time costs (allocations, oneDNN's kernel choice).
    http("POST", base + "/v1/images/generations", {"prompt": "warm up", "size": args.size, "steps": args.steps}, 600)
    for clients in args.clients:
        failures = []

        def client(indices):
            for i in indices:
                body = {"prompt": f"a lighthouse, take {i}", "size": args.size, "steps": args.steps, "seed": i}
                status, _ = http("POST", base + "/v1/images/generations", body, timeout=1200)
                if status != 200:
                    failures.append(status)

        threads = [threading.Thread(target=client, args=(range(c, args.requests, clients),)) for c in range(clients)]
        start = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.time() - start
        if failures:
            fail(f"{len(failures)} requests failed: {failures[:5]}")
        print(f"{args.model} {args.size} {args.steps} steps, max batch {args.max_batch}: {clients} client(s), "
              f"{args.requests} images in {seconds:.1f} s = {args.requests * 60 / seconds:.1f} images/min", flush=True)
