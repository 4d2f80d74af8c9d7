#!/usr/bin/env python3
"""Differential test of synod's Redis fronts against redis-server itself.

Generates command scripts from seeds (random commands over a small key space: binary and
empty values, integers at the edges, options, wrong arity, unknown commands), runs every
script on a fresh key space of a real `redis-server` and of each synod service's RESP front
(`synod up`, `synod up --pb`, `synod up --sharded`), and compares the replies byte for byte.
Where synod differs on purpose, the difference is listed in DELIBERATE below (and in
docs/running.md); every other difference is a failure.

    cargo build --release -p synod
    python3 scripts/redis_diff.py                         # every service, 20 seeds
    python3 scripts/redis_diff.py --services kv --seeds 200 --commands 100
    python3 scripts/redis_diff.py --report                # list differences, exit 0

Each script's keys carry a prefix of their own (`d<seed>:`), so scripts do not see each
other's keys, and keyspace commands only look at the script's prefix. Prints, per service,
the scripts and commands run and the differences found (the first few in full). Exits 0 only
when no difference outside DELIBERATE was found (or with --report). Needs redis-server on
PATH (Debian: apt-get install redis-server). Python 3 standard library only.
"""
import argparse
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from resp_wire import encode

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')

# Commands the generator draws from, with how to build their arguments. A command enters this
# table when the fronts support it; the rest are sent as "unknown" commands, which every front
# must refuse the way Redis refuses an unknown command, and stay usable.
KEYS = ['a', 'b', 'c', '{tag}.x', '{tag}.y']
VALUES = [b'', b'v', b'0', b'1', b'-7', b'42', b'9223372036854775807', b'-9223372036854775808',
          b'3.5', b' 1', b'x' * 100, bytes(range(256)), b'\r\n', b'\x00']


def gen_command(rnd, key):
    """One random command (a list of byte strings) over the script's keys (`key(i)`)."""
    k = lambda: key(rnd.choice(KEYS))
    v = lambda: rnd.choice(VALUES)
    n = lambda: str(rnd.choice([0, 1, -1, 5, 100, -100, 2 ** 62])).encode()
    choice = rnd.randrange(100)
    if choice < 14:
        return [b'SET', k(), v()]
    if choice < 30:
        return [b'GET', k()]
    if choice < 40:
        return [b'APPEND', k(), v()]
    if choice < 44:
        return [b'PING'] + ([v()] if rnd.random() < 0.5 else [])
    if choice < 47:
        return [b'ECHO', v()]
    if choice < 52:  # wrong arity of a supported command
        return rnd.choice([[b'GET'], [b'GET', k(), k()], [b'SET', k()], [b'APPEND', k()]])
    if choice < 55:  # an unknown command
        return [rnd.choice([b'NOSUCHCMD', b'FROB', b'XYZZY']), k()]
    if choice < 60:
        return [b'STRLEN', k()]
    if choice < 64:
        return [b'EXISTS', k()] + ([k()] if rnd.random() < 0.5 else [])
    if choice < 68:
        return [b'DEL', k()] + ([k()] if rnd.random() < 0.3 else [])
    if choice < 72:
        return [rnd.choice([b'INCR', b'DECR']), k()]
    if choice < 75:
        return [rnd.choice([b'INCRBY', b'DECRBY']), k(), n()]
    if choice < 78:
        return [b'MSET', k(), v(), k(), v()]
    if choice < 81:
        return [b'MGET', k(), k()]
    if choice < 84:
        return [b'SETNX', k(), v()]
    if choice < 86:
        return [b'GETSET', k(), v()]
    if choice < 88:
        return [b'GETDEL', k()]
    if choice < 90:
        return [b'GETRANGE', k(), n(), n()]
    if choice < 92:
        return [b'SET', k(), v(), rnd.choice([b'NX', b'XX', b'GET'])]
    if choice < 94:
        return [b'TYPE', k()]
    if choice < 96:
        return [b'SETRANGE', k(), str(rnd.choice([0, 3, 10])).encode(), v()]
    return [b'INCRBYFLOAT', k(), rnd.choice([b'1.5', b'-0.25', b'abc', b'1e3'])]


def script(seed, length):
    """Script `seed`: `length` commands over keys prefixed `d<seed>:`."""
    rnd = random.Random(seed)
    prefix = b'd%d:' % seed
    return [gen_command(rnd, lambda name: prefix + name.encode()) for _ in range(length)]


# Replies where synod differs from Redis on purpose: (command name, a pattern of Redis's
# reply, synod's reply pattern, why). Keep docs/running.md's table in step.
DELIBERATE = [
]


def deliberate(command, ours, theirs):
    name = command[0].upper()
    for cmd, redis_pat, synod_pat, _why in DELIBERATE:
        if name == cmd and re.fullmatch(redis_pat, theirs, re.S) and re.fullmatch(synod_pat, ours, re.S):
            return True
    return False


def read_raw(f):
    """The bytes of one whole reply (RESP2 or RESP3) from the binary file `f`."""
    line = f.readline()
    if not line.endswith(b'\r\n'):
        raise ConnectionError('closed mid-reply: %r' % line)
    t, rest = line[:1], line[1:-2]
    if t in (b'$', b'=', b'!'):
        n = int(rest)
        return line if n < 0 else line + f.read(n + 2)
    if t in (b'*', b'~', b'>', b'%', b'|'):
        n = int(rest)
        items = n * 2 if t in (b'%', b'|') else n
        return line + b''.join(read_raw(f) for _ in range(max(items, 0)))
    return line


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=30)
        self.file = self.sock.makefile('rb')

    def run(self, command):
        self.sock.sendall(encode(*command))
        return read_raw(self.file)

    def close(self):
        self.file.close()
        self.sock.close()


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def start_redis(workdir):
    if not shutil.which('redis-server'):
        sys.exit('redis-server is not on PATH (Debian: apt-get install redis-server)')
    port = free_port()
    proc = subprocess.Popen(['redis-server', '--port', str(port), '--save', '', '--appendonly', 'no',
                             '--dir', workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            Conn(port).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit('redis-server did not start')


def start_synod(binary, service, workdir):
    flags = {'kv': [], 'pb': ['--pb'], 'sharded': ['--sharded']}[service]
    proc = subprocess.Popen([binary, 'up', '--dir', os.path.join(workdir, service)] + flags,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    port = None
    for line in proc.stdout:
        line = line.decode()
        m = re.search(r'resp 127\.0\.0\.1:(\d+)', line)
        if m and port is None:
            port = int(m.group(1))
        if line.strip() == 'ready':
            return proc, port
    sys.exit('synod up %s exited before it was ready' % ' '.join(flags))


def show(b, limit=120):
    text = repr(b)
    return text if len(text) <= limit else text[:limit] + '...'


def compare(service, port, redis_port, seeds, length, shown):
    """Runs every script on both; returns (commands run, differences)."""
    ours, theirs = Conn(port), Conn(redis_port)
    commands, differences = 0, []
    # Every service meets an empty Redis, as it starts empty itself.
    assert theirs.run([b'FLUSHALL']) == b'+OK\r\n'
    try:
        for seed in seeds:
            for i, command in enumerate(script(seed, length)):
                commands += 1
                a, b = ours.run(command), theirs.run(command)
                if a != b and not deliberate(command, a, b):
                    differences.append((seed, i, command, a, b))
                    if len(differences) <= shown:
                        print('  %s seed %d #%d %s\n    synod %s\n    redis %s' % (
                            service, seed, i, show(b' '.join(command), 80), show(a), show(b)))
    finally:
        ours.close()
        theirs.close()
    return commands, differences


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--synod', default=os.environ.get('SYNOD', os.path.join(ROOT, 'target', 'release', 'synod')))
    p.add_argument('--services', default='kv,pb,sharded')
    p.add_argument('--seeds', type=int, default=20)
    p.add_argument('--first-seed', type=int, default=1)
    p.add_argument('--commands', type=int, default=60, help='commands per script')
    p.add_argument('--show', type=int, default=10, help='differences printed in full per service')
    p.add_argument('--report', action='store_true', help='list the differences and exit 0')
    args = p.parse_args()
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    workdir = tempfile.mkdtemp(prefix='synod-redis-diff-')
    redis, redis_port = start_redis(workdir)
    failed = False
    try:
        for service in args.services.split(','):
            synod, port = start_synod(args.synod, service, workdir)
            try:
                commands, differences = compare(service, port, redis_port, seeds, args.commands, args.show)
            finally:
                synod.terminate()
                synod.wait(timeout=30)
            kinds = sorted({d[2][0].upper().decode() for d in differences})
            print('%s: %d scripts (seeds %d..%d), %d commands, %d differences%s' % (
                service, len(seeds), seeds[0], seeds[-1], commands, len(differences),
                (' in ' + ' '.join(kinds)) if kinds else ''))
            failed |= bool(differences)
    finally:
        redis.terminate()
        redis.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(0 if args.report or not failed else 1)


if __name__ == '__main__':
    main()
