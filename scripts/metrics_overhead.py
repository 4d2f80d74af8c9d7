#!/usr/bin/env python3
"""What scraping the metrics costs: `synod bench` on one `synod up` cluster, alternately
without and with a scraper that reads every replica's /metrics and the dashboard's
/api/cluster once a second, and the ratio of the medians.

Usage: scripts/metrics_overhead.py [--synod target/release/synod] [--runs 3]
       [--duration 5s] [--clients 32] [--target synod-kv-resp]

What is on in both halves: the counters themselves (always recorded), each replica's
status poller (twice a second) and the dashboard's poll of every replica (twice a second),
since `synod up` always starts them; the scraper is what differs. The halves alternate in
ABBA order. Prints one line per run and the ratio (with / without) of the median throughput
and p50/p99 latency.
"""

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request


def start_up(synod, directory):
    up = subprocess.Popen(
        [synod, "up", "--insecure", "--dir", directory],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines = []
    for line in up.stdout:
        line = line.strip()
        lines.append(line)
        if line.startswith("dashboard: "):
            break
    replicas = [l for l in lines if l.startswith("replica ")]
    word = lambda l, key: l.split()[l.split().index(key) + 1]
    return (
        up,
        [word(l, "peer") for l in replicas],
        [word(l, "resp") for l in replicas],
        [word(l, "metrics") for l in replicas],
        lines[-1].split(" ", 1)[1].rstrip("/"),
    )


def scrape(urls, stop):
    while not stop.is_set():
        for url in urls:
            try:
                urllib.request.urlopen(url, timeout=2).read()
            except OSError as e:
                print(f"scrape of {url} failed: {e}", file=sys.stderr)
        stop.wait(1.0)


def bench(synod, args, servers, resp):
    out = subprocess.run(
        [synod, "bench", "--targets", args.target, "--servers", ",".join(servers),
         "--resp", ",".join(resp), "--clients", str(args.clients),
         "--duration", args.duration, "--warmup", "1s"],
        capture_output=True, text=True, check=True,
    ).stdout
    # The run's own line: `synod-kv-resp: 10757 ops/s  p50 2.76 ms  p99 7.33 ms ...`.
    for line in out.splitlines():
        m = re.search(r"(\d+) ops/s\s+p50 ([\d.]+) ms\s+p99 ([\d.]+) ms", line)
        if line.startswith(args.target + ":") and m:
            return float(m.group(1)), float(m.group(2)), float(m.group(3)), line.strip()
    raise RuntimeError("no result line in synod bench's output:\n" + out)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--synod", default="target/release/synod")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", default="5s")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--target", default="synod-kv-resp")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        up, servers, resp, metrics, dashboard = start_up(args.synod, directory)
        urls = [f"http://{m}/metrics" for m in metrics] + [f"{dashboard}/api/cluster"]
        results = {"without": [], "with": []}
        try:
            for run in range(args.runs):
                # ABBA order, so that a drift of the machine's speed over the runs (other
                # load, the log growing) does not favour either half.
                order = ("without", "with") if run % 2 == 0 else ("with", "without")
                for mode in order:
                    stop = threading.Event()
                    scraper = threading.Thread(target=scrape, args=(urls, stop))
                    if mode == "with":
                        scraper.start()
                    ops, p50, p99, row = bench(args.synod, args, servers, resp)
                    stop.set()
                    if mode == "with":
                        scraper.join()
                    results[mode].append((ops, p50, p99))
                    print(f"run {run + 1} {mode:7} scraper: {row}", flush=True)
        finally:
            up.terminate()
            up.wait(timeout=30)
    med = {m: [statistics.median(x[i] for x in r) for i in range(3)] for m, r in results.items()}
    for mode in ("without", "with"):
        ops, p50, p99 = med[mode]
        print(f"median {mode + ':':8} {ops:.0f} ops/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print("ratio with/without: throughput {:.3f}, p50 {:.3f}, p99 {:.3f}".format(
        *(w / o if o else float("nan") for w, o in zip(med["with"], med["without"]))))


if __name__ == "__main__":
    main()
