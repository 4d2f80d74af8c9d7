#!/usr/bin/env python3
"""Chaos against a real `synod up` cluster, from outside, with nothing but the Redis protocol.

Six clients run SET/APPEND/GET on three keys through the replicas' RESP ports and record every
operation (a failed or timed-out write is recorded with an unknown outcome). Meanwhile, every
0.5-1.5 s, a replica - the current leader 70% of the time, per `synod status` - is either
SIGSTOPped for 1-4 s or SIGKILLed (and `up` restarts it). At the end every key is read through
every replica, the cluster is stopped, and the history goes through `synod check`, which must
say "linearizable". Python 3 standard library only.

    cargo build --release -p synod
    python3 scripts/chaos.py [DIR [SECONDS]]     # default: /tmp/synod-chaos, 30 s

DIR is removed first. Leaves DIR (the cluster's data), DIR-history.jsonl, DIR-timeline.html and DIR-up.log.
Exits 0 only when the history is linearizable.
"""
import json, os, random, re, signal, socket, subprocess, sys, threading, time

SYNOD = os.environ.get('SYNOD', os.path.join(os.path.dirname(__file__), '..', 'target', 'release', 'synod'))
DIR = sys.argv[1] if len(sys.argv) > 1 else '/tmp/synod-chaos'
DURATION = float(sys.argv[2]) if len(sys.argv) > 2 else 30
subprocess.run(['rm', '-rf', DIR])
up = subprocess.Popen([SYNOD, 'up', '--dir', DIR], stdout=subprocess.PIPE, stderr=open(DIR + '-up.log', 'w'), text=True)
reps = {}
while True:
    line = up.stdout.readline()
    if not line: sys.exit('up died')
    m = re.match(r'replica (\d+): peer (\S+) resp \S+:(\d+) pid (\d+)', line)
    if m: reps[int(m.group(1))] = dict(peer=m.group(2), resp=int(m.group(3)), pid=int(m.group(4)))
    if line.strip() == 'ready': break
def follow():
    for line in up.stdout:
        m = re.match(r'replica (\d+): peer (\S+) resp \S+:(\d+) pid (\d+)', line)
        if m: reps[int(m.group(1))]['pid'] = int(m.group(4))
threading.Thread(target=follow, daemon=True).start()
T0 = time.monotonic()
now = lambda: int((time.monotonic() - T0) * 1e6)
hist, lock, stop = [], threading.Lock(), threading.Event()

def enc(*args):
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a.encode(); out += b'$%d\r\n%s\r\n' % (len(a), a)
    return out
def read_reply(f):
    line = f.readline()
    if not line: raise ConnectionError('closed')
    t, rest = line[:1], line[1:-2]
    if t == b'+': return rest.decode()
    if t == b'-': raise RuntimeError(rest.decode())
    if t == b':': return int(rest)
    if t == b'$':
        n = int(rest)
        if n < 0: return None
        data = f.read(n + 2)[:-2]; return data.decode()
    raise RuntimeError('bad reply %r' % line)

def client(cid):
    rnd = random.Random(cid); conn = None; n = 0
    while not stop.is_set():
        if conn is None:
            try:
                port = reps[rnd.randrange(3)]['resp']
                s = socket.create_connection(('127.0.0.1', port), timeout=2); s.settimeout(3)
                conn = (s, s.makefile('rb'))
            except OSError:
                time.sleep(0.05); continue
        key = 'k%d' % rnd.randrange(3); op = rnd.choice(['put', 'append', 'get']); n += 1
        val = 'c%dn%d.' % (cid, n)
        rec = {'client': cid, 'op': op, 'key': key, 'call': now()}
        if op != 'get': rec['value'] = val
        try:
            s, f = conn
            s.sendall(enc('SET', key, val) if op == 'put' else enc('APPEND', key, val) if op == 'append' else enc('GET', key))
            r = read_reply(f)
            rec['return'] = now()
            if op == 'get': rec['output'] = r or ''
        except Exception as e:
            rec['err'] = str(e)
            try: conn[0].close()
            except Exception: pass
            conn = None
        with lock: hist.append(rec)

threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
for t in threads: t.start()
def leader():
    out = subprocess.run([SYNOD, 'status', '--servers', ','.join(reps[i]['peer'] for i in range(3)), '--timeout', '1'], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r'replica=(\d)/3 voting leader', line)
        if m: return int(m.group(1))
    return random.randrange(3)
rnd = random.Random(7); events = []
end = time.monotonic() + DURATION
while time.monotonic() < end:
    time.sleep(rnd.uniform(0.5, 1.5))
    victim = leader() if rnd.random() < 0.7 else rnd.randrange(3)
    pid = reps[victim]['pid']
    if rnd.random() < 0.5:
        events.append('%.1fs STOP replica %d (pid %d)' % (time.monotonic() - T0, victim, pid))
        os.kill(pid, signal.SIGSTOP); time.sleep(rnd.uniform(1, 4)); os.kill(pid, signal.SIGCONT)
    else:
        events.append('%.1fs KILL replica %d (pid %d)' % (time.monotonic() - T0, victim, pid))
        os.kill(pid, signal.SIGKILL); time.sleep(rnd.uniform(0.5, 2))
time.sleep(2)
stop.set()
for t in threads: t.join()
# final reads of every key through every replica
for i in range(3):
    for k in ['k0', 'k1', 'k2']:
        s = socket.create_connection(('127.0.0.1', reps[i]['resp']), timeout=10); f = s.makefile('rb')
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
