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

# Commands the generator draws from, with how to build their arguments: every string and
# keyspace command the fronts support, transactions, some connection commands, wrong arities,
# and "unknown" commands, which every front must refuse the way Redis refuses an unknown
# command, and stay usable.
KEYS = ['a', 'b', 'c', '{tag}.x', '{tag}.y']
VALUES = [b'', b'v', b'0', b'1', b'-7', b'42', b'9223372036854775807', b'-9223372036854775808',
          b'3.5', b' 1', b'x' * 100, bytes(range(256)), b'\r\n', b'\x00']


def gen_command(rnd, key, prefix, names=KEYS, together=KEYS):
    """One random command (a list of byte strings) over the script's keys (`key(name)` for a
    name of `names`; `prefix` is what every key of the script starts with). Commands over
    several keys draw them from `together`."""
    k = lambda: key(rnd.choice(names))
    kk = lambda: key(rnd.choice(together))
    v = lambda: rnd.choice(VALUES)
    n = lambda: str(rnd.choice([0, 1, -1, 5, 100, -100, 2 ** 62])).encode()
    choice = rnd.randrange(110)
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
        return rnd.choice([[b'GET'], [b'GET', k(), k()], [b'SET', k()], [b'APPEND', k()],
                           [b'MSET', k()], [b'INCRBY', k()], [b'GETRANGE', k(), b'0'], [b'DBSIZE', k()]])
    if choice < 55:  # an unknown command
        return [rnd.choice([b'NOSUCHCMD', b'FROB', b'XYZZY']), k()]
    if choice < 60:
        return [b'STRLEN', k()]
    if choice < 64:
        return [b'EXISTS', kk()] + ([kk()] if rnd.random() < 0.5 else [])
    if choice < 68:
        return [rnd.choice([b'DEL', b'UNLINK']), kk()] + ([kk()] if rnd.random() < 0.3 else [])
    if choice < 72:
        return [rnd.choice([b'INCR', b'DECR']), k()]
    if choice < 75:
        return [rnd.choice([b'INCRBY', b'DECRBY']), k(), n()]
    if choice < 78:
        return [rnd.choice([b'MSET', b'MSETNX']), kk(), v(), kk(), v()]
    if choice < 81:
        # Now and then over keys of different shards: a read, so that the sharded KV's
        # CROSSSLOT refusal leaves the key spaces alike.
        return [b'MGET', kk(), kk()] if rnd.random() < 0.7 else [b'MGET', key('a'), key('b')]
    if choice < 84:
        return [b'SETNX', k(), v()]
    if choice < 86:
        return [b'GETSET', k(), v()]
    if choice < 88:
        return [b'GETDEL', k()]
    if choice < 90:
        return [rnd.choice([b'GETRANGE', b'SUBSTR']), k(), n(), n()]
    if choice < 92:
        return [b'SET', k(), v()] + rnd.sample([b'NX', b'XX', b'GET', b'get', b'FOO'], rnd.randrange(1, 3))
    if choice < 94:
        return [b'TYPE', k()]
    if choice < 96:
        return [b'SETRANGE', k(), str(rnd.choice([0, 3, 10, -1])).encode(), v()]
    if choice < 98:
        # On a key of its own, which only these commands write: a float sum that is not
        # exact in 64 bits differs from Redis's long double in its last digits (see
        # DELIBERATE), and other commands must not read such a value back.
        if rnd.random() < 0.2:
            return [b'SET', key('float'), rnd.choice([b'abc', b'3.5', b' 1', b'', b'-7'])]
        return [b'INCRBYFLOAT', key('float'), rnd.choice([b'1.5', b'-0.25', b'abc', b'1e3'])]
    if choice < 100:
        return [b'KEYS', prefix + rnd.choice([b'*', b'?', b'[ab]', b'{*'])]
    if choice < 102:
        return [b'SCAN', b'0', b'MATCH', prefix + b'*', b'COUNT', b'100000']
    if choice < 104:
        # On a key no other command touches, with XX so Redis does not create it: synod
        # refuses these by name, and the key spaces must not drift apart for it.
        never = key('never')
        return rnd.choice([[b'SET', never, v(), b'XX', b'EX', b'100'], [b'EXPIRE', never, b'100'], [b'TTL', never]])
    if choice < 106:
        return [b'SELECT', rnd.choice([b'0', b'x'])]
    return [b'CLIENT', rnd.choice([b'GETNAME', b'NOSUCH'])]


def gen_transaction(rnd, key, prefix, together):
    """MULTI, a few commands over keys of one shard (sometimes one refused when queued), then
    EXEC or DISCARD."""
    body = [gen_command(rnd, key, prefix, together, together) for _ in range(rnd.randrange(1, 4))]
    # Inside MULTI, commands synod refuses by name would be refused inside EXEC's reply too:
    # the table below covers them once, outside transactions.
    body = [c for c in body if c[0].upper() not in (b'KEYS', b'SCAN', b'SELECT', b'CLIENT', b'EXPIRE', b'TTL')
            and b'EX' not in c]
    # Only the keys of `together` (a transaction is applied by one shard).
    allowed = {key(name) for name in together}
    body = [c for c in body if all(a in allowed for a in c[1:] if a.startswith(prefix))]
    return [[b'MULTI']] + body + [[b'DISCARD' if rnd.random() < 0.15 else b'EXEC']]


# The keys of one hash tag: what the sharded KV's multi-key commands and transactions use
# (other services use any keys), so that they are served rather than refused.
TAGGED = [name for name in KEYS if name.startswith('{tag}')]


def script(seed, length, service='kv'):
    """Script `seed` for `service`: about `length` commands over keys prefixed `d<seed>:`,
    about one in fifteen a transaction."""
    rnd = random.Random(seed)
    prefix = b'd%d:' % seed
    key = lambda name: prefix + name.encode()
    together = TAGGED if service == 'sharded' else KEYS
    commands = []
    while len(commands) < length:
        if rnd.random() < 1 / 15:
            commands.extend(gen_transaction(rnd, key, prefix, together))
        else:
            commands.append(gen_command(rnd, key, prefix, KEYS, together))
    return commands


# Replies where synod differs from Redis on purpose: (services, command names, a pattern of
# Redis's reply, synod's reply pattern, why). Keep docs/running.md's table in step.
EXPIRY = rb'-ERR \'[A-Z]+\' is not supported: synod keys never expire \(see docs/running.md\)\r\n'
DELIBERATE = [
    ('kv pb sharded', (b'SET', b'EXPIRE', b'TTL'), rb'.*', EXPIRY,
     'keys never expire: expiry options and commands are refused by name'),
    ('sharded', (b'MSET', b'MSETNX', b'MGET', b'DEL', b'UNLINK', b'EXISTS', b'EXEC'), rb'.*',
     rb'-CROSSSLOT Keys in request don\'t hash to the same slot\r\n',
     "a command's keys must share a shard (same key or hash tag), as in Redis Cluster"),
    ('sharded', (b'KEYS', b'SCAN'), rb'\*.*',
     rb'-ERR (KEYS|SCAN) spans every shard: not supported by the sharded KV \(docs/running.md\)\r\n',
     'a command over the whole key space would span every shard'),
    ('kv pb sharded', (b'KEYS', b'SCAN'), rb'\*.*', rb'\*.*',
     'the same keys, in key order rather than hash order (compared as sets)'),
    ('kv pb sharded', (b'INCRBYFLOAT',), rb'\$\d+\r\n-?[0-9.]+\r\n', rb'\$\d+\r\n-?[0-9.]+\r\n',
     '64-bit floats rather than long double: the same number to 15 significant digits'),
]


def elements(reply):
    """The bulk strings in a reply, sorted: what KEYS and SCAN are compared by."""
    return sorted(re.findall(rb'\$\d+\r\n(.*?)\r\n', reply, re.S))


def close(ours, theirs):
    """Whether two INCRBYFLOAT replies are the same number to 15 significant digits."""
    a, b = (float(r.split(b'\r\n')[1]) for r in (ours, theirs))
    return abs(a - b) <= 1e-15 * max(abs(a), abs(b))


def deliberate(service, command, ours, theirs):
    name = command[0].upper()
    for services, names, redis_pat, synod_pat, _why in DELIBERATE:
        if service not in services.split() or name not in names:
            continue
        if not (re.fullmatch(redis_pat, theirs, re.S) and re.fullmatch(synod_pat, ours, re.S)):
            continue
        if synod_pat == rb'\*.*' and elements(ours) != elements(theirs):
            continue
        if name == b'INCRBYFLOAT' and not close(ours, theirs):
            continue
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
    proc = subprocess.Popen([binary, 'up', '--insecure', '--dir', os.path.join(workdir, service)] + flags,
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
            for i, command in enumerate(script(seed, length, service)):
                commands += 1
                a, b = ours.run(command), theirs.run(command)
                if a != b and not deliberate(service, command, a, b):
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
                synod.stdout.close()
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
