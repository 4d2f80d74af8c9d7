"""Pipelining and the Redis-protocol path, measured in one run on one `synod up` cluster.

Prints, as medians of `--runs` runs each:
- `redis-benchmark -t set,get -c 50 -P 1` and `-P 16` against replica 0's RESP port, and
  the ratio of the two (issue 13's target: at least 4x);
- the time of a redis-py pipeline of 1,000 SETs (non-transactional; target: under 0.34 s,
  10x faster than the 3.4 s measured before pipelining);
- `synod bench` through the Redis protocol against the native client, puts and gets
  (target: at least 0.9x), on the same cluster.

docs/bench.md, "Pipelining and the RESP path", has the figures.

Usage: /usr/bin/python3 scripts/pipeline_bench.py [--synod target/release/synod] [--runs 3]
Needs redis-benchmark (apt-get install redis-tools) and redis-py (python3-redis).
"""

import argparse
import csv
import io
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

import redis


def up(synod, data):
    """Starts `synod up` on `data`; returns the process, the peer and the RESP addresses."""
    proc = subprocess.Popen([synod, "up", "--insecure", "--dir", data], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    peers, fronts = [], []
    for line in proc.stdout:
        match = re.match(r"replica \d+: peer (\S+) resp (\S+) ", line)
        if match:
            peers.append(match.group(1))
            fronts.append(match.group(2))
        if line.strip() == "ready":
            return proc, peers, fronts
    raise RuntimeError("synod up exited before it was ready")


def redis_benchmark(port, pipeline, requests):
    """ops/s of SET and GET, 50 clients, `pipeline` commands in flight per connection."""
    out = subprocess.run(
        ["redis-benchmark", "-p", str(port), "-t", "set,get", "-c", "50", "-P", str(pipeline),
         "-n", str(requests), "--csv"],
        capture_output=True, text=True, check=True).stdout
    rows = {row[0]: float(row[1]) for row in csv.reader(io.StringIO(out)) if row and row[0] != "test"}
    return rows["SET"], rows["GET"]


def redis_py_pipeline(port, commands):
    """Seconds for one redis-py pipeline of `commands` SETs."""
    client = redis.Redis(port=port)
    pipe = client.pipeline(transaction=False)
    for i in range(commands):
        pipe.set(f"pipeline:{i}", "v" * 16)
    start = time.monotonic()
    replies = pipe.execute()
    elapsed = time.monotonic() - start
    assert replies == [True] * commands, replies[:5]
    client.close()
    return elapsed


def synod_bench(synod, peers, fronts, read_ratio, duration, runs):
    """ops/s of the native client and of the Redis protocol, medians of `runs`."""
    out = subprocess.run(
        [synod, "bench", "--targets", "synod-kv,synod-kv-resp", "--servers", ",".join(peers),
         "--resp", ",".join(fronts), "--read-ratio", str(read_ratio), "--duration", duration,
         "--runs", str(runs)],
        capture_output=True, text=True, check=True).stdout
    # The table's rows: target, share of gets ("0%"), ops/s, ...
    ops = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) > 2 and fields[0] in ("synod-kv", "synod-kv-resp") and fields[1].endswith("%"):
            ops[fields[0]] = float(fields[2])
    return ops["synod-kv"], ops["synod-kv-resp"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--synod", default="target/release/synod")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=50000)
    parser.add_argument("--duration", default="5s")
    args = parser.parse_args()
    os.makedirs("target", exist_ok=True)
    data = tempfile.mkdtemp(prefix="synod-pipeline-", dir=os.getcwd() + "/target")
    proc = None
    try:
        proc, peers, fronts = up(args.synod, data)
        port = int(fronts[0].rsplit(":", 1)[1])
        by_depth = {}
        for depth in (1, 16):
            runs = [redis_benchmark(port, depth, args.requests) for _ in range(args.runs)]
            by_depth[depth] = (statistics.median(r[0] for r in runs),
                               statistics.median(r[1] for r in runs))
        print("redis-benchmark -t set,get -c 50 (ops/s, median of %d)" % args.runs)
        print(f"  {'':6} {'SET':>10} {'GET':>10}")
        for depth, (set_ops, get_ops) in by_depth.items():
            print(f"  -P {depth:<3} {set_ops:>10.0f} {get_ops:>10.0f}")
        print(f"  ratio  {by_depth[16][0] / by_depth[1][0]:>10.2f}x"
              f" {by_depth[16][1] / by_depth[1][1]:>9.2f}x   (target >= 4x)")

        times = [redis_py_pipeline(port, 1000) for _ in range(max(args.runs, 5))]
        pipelined = statistics.median(times)
        print(f"redis-py pipeline of 1,000 SETs: {pipelined * 1000:.1f} ms median of {len(times)}"
              f" ({3.4 / pipelined:.0f}x faster than 3.4 s; target >= 10x)")

        for name, ratio in (("puts", 0), ("gets", 1)):
            native, resp = synod_bench(args.synod, peers, fronts, ratio, args.duration, args.runs)
            print(f"synod bench {name}: native {native:.0f} ops/s, RESP {resp:.0f} ops/s,"
                  f" RESP/native {resp / native:.2f}x (target >= 0.9x)")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
