#!/usr/bin/env python3
"""Put throughput and latency against state size, restart-to-ready and stop times.

For each state size: `synod up` on a fresh directory, `synod bench --preload N
--value-size 1024 --split-by-snapshot` of puts only through the native client (the store
holds N KiB of values throughout: puts overwrite), then `synod status` for each replica's
last snapshot (size and duration), then SIGTERM (timed), then `synod up` again on the same
directory, timed until it prints `ready`. It prints the latencies of the operations during
which some replica was writing a snapshot apart from the others. docs/bench.md, "State size", has the figures.

Usage: python3 scripts/state_size_bench.py [--synod target/release/synod] [--sizes 1000,100000]
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time


def up(synod, data):
    """Starts `synod up` on `data`; returns the process, the peer addresses, and seconds to ready."""
    start = time.monotonic()
    proc = subprocess.Popen([synod, "up", "--dir", data], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    peers = []
    for line in proc.stdout:
        match = re.match(r"replica \d+: peer (\S+) ", line)
        if match:
            peers.append(match.group(1))
        if line.strip() == "ready":
            return proc, peers, time.monotonic() - start
    raise RuntimeError("synod up exited before it was ready")


def stop(proc):
    start = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    return time.monotonic() - start


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--synod", default="target/release/synod")
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--clients", default="8")
    parser.add_argument("--duration", default="10s")
    args = parser.parse_args()
    print(f"{'keys':>8} {'state MB':>9} {'ops/s':>7} {'p50':>9} {'p99':>9} {'p99.9':>9}"
          f" {'stop s':>7} {'restart-to-ready s':>19} {'dir MB':>7}")
    splits, snapshots = [], []
    for keys in [int(k) for k in args.sizes.split(",")]:
        data = tempfile.mkdtemp(prefix="synod-state-", dir=os.getcwd() + "/target")
        try:
            proc, peers, _ = up(args.synod, data)
            out = subprocess.run(
                [args.synod, "bench", "--targets", "synod-kv", "--servers", ",".join(peers),
                 "--preload", str(keys), "--value-size", "1024", "--read-ratio", "0",
                 "--clients", args.clients, "--duration", args.duration, "--split-by-snapshot"],
                capture_output=True, text=True, check=True).stdout
            row = next(l for l in out.splitlines() if l.startswith("synod-kv "))
            splits.append((keys, next(l for l in out.splitlines() if "during snapshots" in l)))
            status = subprocess.run([args.synod, "status", "--servers", ",".join(peers)],
                                    capture_output=True, text=True).stdout
            snapshots.append((keys, re.findall(r"last_snapshot_bytes=(\d+) last_snapshot_ms=(\d+)", status)))
            fields = row.split()
            if fields[1].endswith("%"):  # the share of gets, a column of its own
                del fields[1]
            ops, p50, p99, p999 = fields[1], " ".join(fields[2:4]), " ".join(fields[4:6]), " ".join(fields[6:8])
            stopped = stop(proc)
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
            proc, _, ready = up(args.synod, data)
            stop(proc)
            print(f"{keys:>8} {keys * 1024 / 1e6:>9.1f} {ops:>7} {p50:>9} {p99:>9} {p999:>9}"
                  f" {stopped:>7.2f} {ready:>19.2f} {size / 3e6:>7.1f}", flush=True)
        finally:
            shutil.rmtree(data, ignore_errors=True)
    print("\nlatencies while some replica wrote a snapshot, against the others (same run):")
    for keys, line in splits:
        print(f"{keys:>8} {line.split(': ', 1)[1]}")
    print("\neach replica's last snapshot by the end of the run (MB, seconds from begun to durable):")
    for keys, taken in snapshots:
        print(f"{keys:>8} " + ", ".join(f"{int(b) / 1e6:.1f} MB in {int(ms) / 1000:.2f} s" for b, ms in taken))


if __name__ == "__main__":
    main()
