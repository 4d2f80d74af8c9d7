#!/usr/bin/env python3
"""Put throughput and latency against state size, snapshot cost, restart-to-ready and stop times.

One `synod up` cluster per state size, all running at once, each filled with N keys of
1 KiB (`synod bench --preload N --value-size 1024`). Then rounds: in each round every
cluster in turn gets `--duration` of puts only through the native client, over the same
keys (the store holds N KiB of values throughout: puts overwrite). Interleaving the sizes
round by round means a machine whose load changes over time slows every size alike, so
the ratios hold where back-to-back runs would not. The table gives each size's medians
over the rounds and its throughput against the first size's.

Every measured window runs with `--split-by-snapshot`: the latencies of the operations
during which some replica was writing a snapshot are printed apart from the others. At the
end: each replica's last snapshot (size, and time from begun to durable, from `synod
status`), then per cluster SIGTERM (timed) and `synod up` again on its directory, timed
until it prints `ready`. docs/bench.md, "State size", has the figures.

Usage: python3 scripts/state_size_bench.py [--synod target/release/synod]
           [--sizes 1000,1000000] [--rounds 5] [--duration 5s] [--clients 8]
"""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import time


def up(synod, data):
    """Starts `synod up` on `data`; returns the process, the peer addresses, and seconds to ready."""
    start = time.monotonic()
    proc = subprocess.Popen([synod, "up", "--insecure", "--dir", data], stdout=subprocess.PIPE,
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
    proc.wait(timeout=120)
    return time.monotonic() - start


def bench(synod, peers, extra, clients, duration):
    """One `synod bench` window of puts; returns (ops/s, p50 ms, p99 ms, p99.9 ms, split line)."""
    out = subprocess.run(
        [synod, "bench", "--targets", "synod-kv", "--servers", ",".join(peers),
         "--value-size", "1024", "--read-ratio", "0", "--clients", clients,
         "--duration", duration, "--split-by-snapshot"] + extra,
        capture_output=True, text=True, check=True).stdout
    row = next(l for l in out.splitlines() if l.startswith("synod-kv "))
    split = next(l for l in out.splitlines() if "during snapshots" in l).split(": ", 1)[1]
    fields = row.split()
    if fields[1].endswith("%"):  # the share of gets, a column of its own
        del fields[1]

    def millis(value, unit):
        return float(value) * {"ms": 1.0, "s": 1000.0, "us": 0.001, "µs": 0.001}[unit]

    return (float(fields[1]), millis(*fields[2:4]), millis(*fields[4:6]), millis(*fields[6:8]),
            split)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--synod", default="target/release/synod")
    parser.add_argument("--sizes", default="1000,1000000")
    parser.add_argument("--clients", default="8")
    parser.add_argument("--duration", default="5s")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(k) for k in args.sizes.split(",")]
    clusters = {}
    try:
        for keys in sizes:
            data = tempfile.mkdtemp(prefix="synod-state-", dir=os.getcwd() + "/target")
            proc, peers, _ = up(args.synod, data)
            clusters[keys] = (data, proc, peers)
            start = time.monotonic()
            bench(args.synod, peers, ["--preload", str(keys), "--warmup", "0s"], args.clients, "1s")
            print(f"{keys} keys of 1 KiB loaded in {time.monotonic() - start:.0f} s", flush=True)
        windows = {keys: [] for keys in sizes}
        for round_ in range(1, args.rounds + 1):
            for keys in sizes:
                _, _, peers = clusters[keys]
                window = bench(args.synod, peers, ["--keys", str(keys)], args.clients,
                               args.duration)
                windows[keys].append(window)
                print(f"round {round_} {keys:>8} keys: {window[0]:.0f} puts/s, p99.9 "
                      f"{window[3]:.2f} ms; {window[4]}", flush=True)
        print(f"\nmedians over {args.rounds} interleaved rounds of {args.duration}, "
              f"{args.clients} clients, 1 KiB values, puts only:")
        print(f"{'keys':>8} {'state MB':>9} {'puts/s':>7} {'x first':>8} {'p50 ms':>7} "
              f"{'p99 ms':>7} {'p99.9 ms':>9}")
        base = None
        for keys in sizes:
            ops, p50, p99, p999 = (statistics.median(w[i] for w in windows[keys]) for i in range(4))
            base = base or ops
            print(f"{keys:>8} {keys * 1024 / 1e6:>9.1f} {ops:>7.0f} {ops / base:>7.2f}x "
                  f"{p50:>7.2f} {p99:>7.2f} {p999:>9.2f}")
        print("\neach replica's last snapshot (MB, seconds from begun to durable), stop and "
              "restart-to-ready times:")
        for keys in sizes:
            data, proc, peers = clusters[keys]
            status = subprocess.run([args.synod, "status", "--servers", ",".join(peers)],
                                    capture_output=True, text=True).stdout
            taken = re.findall(r"last_snapshot_bytes=(\d+) last_snapshot_ms=(\d+)", status)
            stopped = stop(proc)
            size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(data) for f in fs)
            proc, _, ready = up(args.synod, data)
            clusters[keys] = (data, proc, peers)
            snapshots = ", ".join(f"{int(b) / 1e6:.1f} MB in {int(ms) / 1000:.2f} s"
                                  for b, ms in taken)
            print(f"{keys:>8} keys: snapshots {snapshots or 'none'}; stop {stopped:.2f} s; "
                  f"restart to ready {ready:.2f} s; {size / 3e6:.1f} MB per replica directory",
                  flush=True)
    finally:
        for data, proc, _ in clusters.values():
            if proc.poll() is None:
                stop(proc)
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
