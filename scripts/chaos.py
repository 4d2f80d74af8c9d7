#!/usr/bin/env python3
"""Chaos against a real `synod up` cluster, from outside, with nothing but the Redis protocol.

Six clients run SET/APPEND/GET on three keys through the replicas' RESP ports and record every
operation (a failed or timed-out write is recorded with an unknown outcome). Meanwhile, every
0.5-1.5 s, a replica - the current leader 70% of the time, per `synod status` - is either
SIGSTOPped for 1-4 s or SIGKILLed (and `up` restarts it). At the end every key is read through
every replica, the cluster is stopped, and the history goes through `synod check`, which must
say "linearizable". Python 3 standard library only.

    cargo build --release -p synod
    python3 scripts/chaos.py [--sharded] [DIR [SECONDS]]   # default: /tmp/synod-chaos, 30 s

With --sharded it runs `synod up --sharded` (3 controllers, groups 100 and 101 of 3) and uses
ten keys; the victim is any of the nine processes, and every 1-3 s a random shard is moved to
the other group with `synod shardctl move`.

DIR is removed first. Leaves DIR (the cluster's data), DIR-history.jsonl, DIR-timeline.html and DIR-up.log.
Exits 0 only when the history is linearizable.
"""
import json, os, random, re, signal, socket, subprocess, sys, threading, time
from resp_wire import encode as enc, one_operation, read_reply

SYNOD = os.environ.get('SYNOD', os.path.join(os.path.dirname(__file__), '..', 'target', 'release', 'synod'))
ARGS = sys.argv[1:]
SHARDED = '--sharded' in ARGS
ARGS = [a for a in ARGS if a != '--sharded']
DIR = ARGS[0] if len(ARGS) > 0 else '/tmp/synod-chaos'
DURATION = float(ARGS[1]) if len(ARGS) > 1 else 30
KEYS = ['k%d' % i for i in range(10 if SHARDED else 3)]
subprocess.run(['rm', '-rf', DIR])
up = subprocess.Popen([SYNOD, 'up', '--insecure', '--dir', DIR] + (['--sharded'] if SHARDED else []),
                      stdout=subprocess.PIPE, stderr=open(DIR + '-up.log', 'w'), text=True)
# Every child as `up` announces it: `NAME: peer ADDR [resp HOST:PORT] [metrics ADDR] pid N`.
LINE = re.compile(r'^(.*?): peer (\S+)(?: resp \S+:(\d+))?(?: metrics \S+)? pid (\d+)$')
procs = {}
while True:
    line = up.stdout.readline()
    if not line: sys.exit('up died')
    m = LINE.match(line.strip())
    if m: procs[m.group(1)] = dict(peer=m.group(2), resp=m.group(3) and int(m.group(3)), pid=int(m.group(4)))
    if line.strip() == 'ready': break
def follow():
    for line in up.stdout:
        m = LINE.match(line.strip())
        if m: procs[m.group(1)]['pid'] = int(m.group(4))
threading.Thread(target=follow, daemon=True).start()
names = sorted(procs)
fronts = [n for n in names if procs[n]['resp']]
replicas = [n for n in names if n.startswith('replica ')]
controllers = ','.join(procs[n]['peer'] for n in names if n.startswith('controller '))
T0 = time.monotonic()
now = lambda: int((time.monotonic() - T0) * 1e6)
hist, lock, stop = [], threading.Lock(), threading.Event()

def client(cid):
    rnd = random.Random(cid); conn = None; n = 0
    while not stop.is_set():
        if conn is None:
            try:
                port = procs[rnd.choice(fronts)]['resp']
                s = socket.create_connection(('127.0.0.1', port), timeout=2); s.settimeout(3)
                conn = (s, s.makefile('rb'))
            except OSError:
                time.sleep(0.05); continue
        n += 1
        rec = one_operation(conn, rnd, KEYS, cid, n, now)
        if 'err' in rec:
            try: conn[0].close()
            except Exception: pass
            conn = None
        with lock: hist.append(rec)

threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
for t in threads: t.start()
def leader():
    """The Paxos KV's current leader, per `synod status`."""
    out = subprocess.run([SYNOD, 'status', '--servers', ','.join(procs[n]['peer'] for n in replicas), '--timeout', '1'], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r'replica=(\d)/3 voting leader', line)
        if m: return 'replica ' + m.group(1)
    return random.choice(replicas)
def mover():
    rnd = random.Random(11)
    while not stop.is_set():
        time.sleep(rnd.uniform(1, 3))
        shard, gid = rnd.randrange(10), rnd.choice([100, 101])
        r = subprocess.run([SYNOD, 'shardctl', 'move', '--ctl', controllers, '--shard', str(shard), '--gid', str(gid)], capture_output=True, text=True)
        events.append('%.1fs move shard %d to %d: %s' % (time.monotonic() - T0, shard, gid, 'ok' if r.returncode == 0 else r.stderr.strip()[:80]))
rnd = random.Random(7); events = []
if SHARDED:
    threading.Thread(target=mover, daemon=True).start()
end = time.monotonic() + DURATION
while time.monotonic() < end:
    time.sleep(rnd.uniform(0.5, 1.5))
    if SHARDED:
        victim = rnd.choice(names)
    else:
        victim = leader() if rnd.random() < 0.7 else rnd.choice(replicas)
    pid = procs[victim]['pid']
    if rnd.random() < 0.5:
        events.append('%.1fs STOP %s (pid %d)' % (time.monotonic() - T0, victim, pid))
        os.kill(pid, signal.SIGSTOP); time.sleep(rnd.uniform(1, 4)); os.kill(pid, signal.SIGCONT)
    else:
        events.append('%.1fs KILL %s (pid %d)' % (time.monotonic() - T0, victim, pid))
        os.kill(pid, signal.SIGKILL); time.sleep(rnd.uniform(0.5, 2))
time.sleep(2)
stop.set()
for t in threads: t.join()
# final reads of every key through every front
for i, front in enumerate(fronts):
    for k in KEYS:
        s = socket.create_connection(('127.0.0.1', procs[front]['resp']), timeout=30); f = s.makefile('rb')
        rec = {'client': 100 + i, 'op': 'get', 'key': k, 'call': now()}
        s.sendall(enc('GET', k)); rec['output'] = read_reply(f) or ''; rec['return'] = now(); hist.append(rec); s.close()
up.send_signal(signal.SIGTERM); up.wait(30)
path = DIR + '-history.jsonl'
with open(path, 'w') as out:
    for r in hist:
        r = dict(r)
        if 'err' in r:
            if r['op'] == 'get': continue
            r.pop('err'); r.pop('return', None)
        out.write(json.dumps(r) + '\n')
ok = sum(1 for r in hist if 'err' not in r); err = sum(1 for r in hist if 'err' in r)
print('\n'.join(events)); print('ops ok=%d err=%d' % (ok, err))
r = subprocess.run([SYNOD, 'check', '--model', 'kv', path, '--html', DIR + '-timeline.html', '--timeout', '120'], capture_output=True, text=True)
print('check rc=%d' % r.returncode, r.stdout[:1500])
sys.exit(r.returncode)
