#!/usr/bin/env python3
"""Faults on a real network: replicas in network namespaces, a RESP load, unavailability measured.

Every host is a network namespace of its own, joined to the others by a veth pair to a bridge
that lives in one more namespace (10.77.0.0/24: host i is 10.77.0.<i+1>, the bridge 10.77.0.254).
The load runs from the bridge's namespace, so it reaches every host whatever the partitions
between the hosts. With --sharded, each host runs shard controller i and replica i of groups 100
and 101 (sharded KV); otherwise it runs Paxos KV replica i. Every replica serves RESP.

Faults, one at a time, each held for --hold seconds, then healed, then --gap seconds of quiet
(so each fault after the first comes 2 s after the previous heal, by default):

    partition-leader    the leader's host cut off from the other hosts (iptables DROP)
    partition-follower  a follower's host cut off (with 3 hosts this is also "halves")
    bridge              the leader's host and one follower's cut from each other; the third
                        host still talks to both
    lossy               the leader's host loses 20% of its packets to and from the other
                        hosts, each way (iptables statistic)
    kill9               the leader's host's processes SIGKILLed, restarted at the heal
    sigstop             the leader's host's processes SIGSTOPped, SIGCONTed at the heal

("the leader" is the Paxos KV leader, or group 100's leader with --sharded, per `synod status`.)

Two clients per host send SET/APPEND/GET on a few keys through that host's RESP port and record
every operation. For every fault the script measures the *unavailability*: the longest time,
from the fault until the next fault, in which no operation through a front on the majority side
(every host but the faulty one; every host for a bridge) succeeded. It also measures the
*recovery*: from the heal until an operation through the faulty host's own front succeeds.
At the end every key is read through every front, and the history goes through `synod check`.

    cargo build --release -p synod
    sudo python3 scripts/netfault.py                      # the long run: 5 rounds, 8 s faults
    sudo python3 scripts/netfault.py --sharded --rounds 3
    sudo python3 scripts/netfault.py --short              # CI: 1 round

Prints a table per fault kind (runs, median, p99 and worst unavailability; median and worst
recovery), and writes the measurements to DIR/results.json, the history to DIR/history.jsonl,
every operation with its front and error to DIR/operations.jsonl, and each server's log to
DIR/NAME.log. Exits 0 only when the history is linearizable and, with --max-gap S, no
unavailability (of a fault kind not listed in --max-gap-skip) exceeded S seconds. Needs root,
iproute2 and iptables; fails with a message saying so when it cannot create the namespaces.
Python 3 standard library only.
"""
import argparse, ctypes, json, os, random, re, shutil, signal, socket, subprocess, sys, threading, time
from resp_wire import encode as enc, one_operation, read_reply

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')
p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--synod', default=os.environ.get('SYNOD', os.path.join(ROOT, 'target', 'release', 'synod')))
p.add_argument('--dir', default='/tmp/synod-netfault')
p.add_argument('--sharded', action='store_true')
p.add_argument('--short', action='store_true', help='CI: 1 round')
p.add_argument('--rounds', type=int, default=5)
p.add_argument('--hold', type=float, default=8.0)
p.add_argument('--gap', type=float, default=2.0)
p.add_argument('--faults', default='partition-leader,partition-follower,bridge,lossy,kill9,sigstop')
p.add_argument('--max-gap', type=float, default=None, help='fail if a fault left the majority side without service longer')
p.add_argument('--max-gap-skip', default='', help='fault kinds --max-gap does not apply to, comma-separated')
p.add_argument('--seed', type=int, default=1)
args = p.parse_args()
if args.short:
    args.rounds = 1
KINDS = args.faults.split(',')
HOSTS = 3
SUBNET = '10.77.0.'
LOAD_ADDR = SUBNET + '254'
LOSS = '0.2'
TAG = 'snf%d' % (os.getpid() % 100000)
BRIDGE_NS = TAG + '-br'
KEYS = ['k%d' % i for i in range(8)]
CLIENTS_PER_HOST = 2
THINK = 0.01  # seconds between a client's operations: bounds the history the checker reads
OP_TIMEOUT = 15  # longer than a front's own retry budget, so a front always answers first

def fail(msg):
    print('netfault: ' + msg, file=sys.stderr)
    sys.exit(2)

def sh(*cmd, check=True):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError('%s: %s' % (' '.join(cmd), r.stderr.strip()))
    return r

def host_ns(i): return '%s-h%d' % (TAG, i)
def host_addr(i): return SUBNET + str(i + 1)

# ---------------------------------------------------------------- network
namespaces = []
def make_network():
    for tool in ('ip', 'iptables'):
        if not shutil.which(tool):
            fail('%s is not installed (apt-get install iproute2 iptables); this test needs it' % tool)
    try:
        sh('ip', 'netns', 'add', BRIDGE_NS); namespaces.append(BRIDGE_NS)
        sh('ip', '-n', BRIDGE_NS, 'link', 'set', 'lo', 'up')
        sh('ip', '-n', BRIDGE_NS, 'link', 'add', 'br0', 'type', 'bridge')
        sh('ip', '-n', BRIDGE_NS, 'addr', 'add', LOAD_ADDR + '/24', 'dev', 'br0')
        sh('ip', '-n', BRIDGE_NS, 'link', 'set', 'br0', 'up')
        for i in range(HOSTS):
            ns = host_ns(i)
            sh('ip', 'netns', 'add', ns); namespaces.append(ns)
            sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
            sh('ip', '-n', BRIDGE_NS, 'link', 'add', 'v%d' % i, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns)
            sh('ip', '-n', BRIDGE_NS, 'link', 'set', 'v%d' % i, 'master', 'br0', 'up')
            sh('ip', '-n', ns, 'addr', 'add', host_addr(i) + '/24', 'dev', 'eth0')
            sh('ip', '-n', ns, 'link', 'set', 'eth0', 'up')
            sh('ip', 'netns', 'exec', ns, 'iptables', '-S')  # iptables works in there
    except (RuntimeError, OSError) as e:
        cleanup()
        fail('cannot create the network namespaces (this test needs root, iproute2 and iptables): %s' % e)

def enter_bridge_namespace():
    """Moves this process (its threads to come, and its children) into the bridge namespace."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open('/run/netns/' + BRIDGE_NS, os.O_RDONLY)
    if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
        fail('setns: %s' % os.strerror(ctypes.get_errno()))
    os.close(fd)

def cut(i, j):
    for a, b in ((i, j), (j, i)):
        sh('ip', 'netns', 'exec', host_ns(a), 'iptables', '-A', 'INPUT', '-s', host_addr(b), '-j', 'DROP')
        sh('ip', 'netns', 'exec', host_ns(a), 'iptables', '-A', 'OUTPUT', '-d', host_addr(b), '-j', 'DROP')

def lossy(i):
    """Host i loses LOSS of its packets to and from every other host, each way."""
    for o in range(HOSTS):
        if o == i: continue
        for chain, side in (('INPUT', '-s'), ('OUTPUT', '-d')):
            sh('ip', 'netns', 'exec', host_ns(i), 'iptables', '-A', chain, side, host_addr(o),
               '-m', 'statistic', '--mode', 'random', '--probability', LOSS, '-j', 'DROP')

def heal_network():
    for i in range(HOSTS):
        sh('ip', 'netns', 'exec', host_ns(i), 'iptables', '-F')

# ---------------------------------------------------------------- processes
class Proc:
    """One synod server on a host: started with --bootstrap the first time, plainly after."""
    def __init__(self, host, name, args, ready, resp=None):
        self.host, self.name, self.args, self.ready, self.resp = host, name, args, ready, resp
        self.popen, self.started = None, False
        self.log = open(os.path.join(args_dir, name.replace(' ', '-') + '.log'), 'a')

    def start(self):
        extra = [] if self.started else ['--bootstrap']
        self.popen = subprocess.Popen(['ip', 'netns', 'exec', host_ns(self.host), args.synod] + self.args + extra,
                                      stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.started = True
        deadline = time.monotonic() + 30
        for line in self.popen.stdout:
            if line.startswith(self.ready):
                break
            if time.monotonic() > deadline:
                break
        else:
            fail('%s died while starting; see its log in %s' % (self.name, args_dir))
        threading.Thread(target=self.popen.stdout.read, daemon=True).start()

    def signal(self, sig):
        if self.popen and self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self):
        if self.popen:
            self.popen.wait(10)

procs = []
def stop_all():
    for pr in procs:
        pr.signal(signal.SIGCONT)
        pr.signal(signal.SIGKILL)
    for pr in procs:
        if pr.popen:
            try: pr.popen.wait(10)
            except subprocess.TimeoutExpired: pass

def cleanup():
    stop_all()
    for ns in reversed(namespaces):
        sh('ip', 'netns', 'delete', ns, check=False)
    namespaces.clear()

def plan():
    """The servers of each host, and the address lists the status probe asks."""
    if not args.sharded:
        peers = ','.join('%s:7000' % host_addr(i) for i in range(HOSTS))
        for i in range(HOSTS):
            procs.append(Proc(i, 'replica %d' % i,
                              ['kv', 'serve', '--id', str(i), '--peers', peers, '--data', os.path.join(args_dir, 'replica-%d' % i),
                               '--resp', '%s:6379' % host_addr(i)],
                              'kv replica %d listening on' % i, resp=(host_addr(i), 6379)))
        return peers
    ctl = ','.join('%s:7100' % host_addr(i) for i in range(HOSTS))
    for i in range(HOSTS):
        procs.append(Proc(i, 'controller %d' % i,
                          ['shardctl', 'serve', '--id', str(i), '--peers', ctl, '--data', os.path.join(args_dir, 'controller-%d' % i)],
                          'shardctl replica %d listening on' % i))
    groups = {}
    for g, gid in enumerate((100, 101)):
        port = 7200 + 100 * g
        peers = ','.join('%s:%d' % (host_addr(i), port) for i in range(HOSTS))
        groups[gid] = peers
        for i in range(HOSTS):
            procs.append(Proc(i, 'group %d replica %d' % (gid, i),
                              ['shardkv', 'serve', '--gid', str(gid), '--id', str(i), '--peers', peers, '--ctl', ctl,
                               '--data', os.path.join(args_dir, 'group-%d-%d' % (gid, i)), '--resp', '%s:%d' % (host_addr(i), 6379 + g)],
                              'shardkv %d replica %d listening on' % (gid, i), resp=(host_addr(i), 6379 + g)))
    return ctl, groups

def leader_host(status_servers):
    """The host of the current Paxos leader (the KV's, or group 100's), per `synod status`."""
    r = subprocess.run([args.synod, 'status', '--servers', status_servers, '--timeout', '1'], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        m = re.search(r'replica=(\d+)/\d+ voting leader', line)
        if m: return int(m.group(1))
    return None

# ---------------------------------------------------------------- load
T0, T0_WALL = time.monotonic(), time.time()
def now(): return time.monotonic() - T0
hist, lock, stop = [], threading.Lock(), threading.Event()

def client(cid, front, stop_event):
    rnd = random.Random(args.seed * 1000 + cid); conn = None; n = 0
    while not stop_event.is_set():
        if conn is None:
            try:
                s = socket.create_connection(front, timeout=1); s.settimeout(OP_TIMEOUT)
                conn = (s, s.makefile('rb'))
            except OSError:
                time.sleep(0.05); continue
        n += 1
        rec = dict(one_operation(conn, rnd, KEYS, cid, n, now), front=front)
        if 'err' in rec:
            try: conn[0].close()
            except Exception: pass
            conn = None
        with lock: hist.append(rec)
        time.sleep(THINK)

# ---------------------------------------------------------------- measuring
def unavailability(t0, t1, fronts):
    """The longest stretch of [t0, t1] without an operation through `fronts` succeeding, as
    (length, from, to)."""
    with lock:
        done = sorted(r['return'] for r in hist if 'return' in r and r['front'] in fronts and t0 <= r['return'] <= t1)
    points = [t0] + done + [t1]
    return max((b - a, a, b) for a, b in zip(points, points[1:]))

def recovery(heal, until, fronts):
    """From the heal until an operation through every one of `fronts` succeeded after it."""
    worst = 0.0
    with lock:
        for front in fronts:
            times = [r['return'] for r in hist if 'return' in r and r['front'] == front and heal <= r['return'] <= until]
            worst = max(worst, (min(times) if times else until) - heal)
    return worst

def percentile(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q * (len(v) - 1))))]

# ---------------------------------------------------------------- main
if os.geteuid() != 0:
    fail('needs root to create network namespaces (run with sudo)')
if not os.path.exists(args.synod):
    fail('no synod binary at %s (cargo build --release -p synod, or --synod PATH)' % args.synod)
args_dir = os.path.abspath(args.dir)
subprocess.run(['rm', '-rf', args_dir]); os.makedirs(args_dir)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda *_: (cleanup(), sys.exit(130)))
make_network()
try:
    enter_bridge_namespace()
    setup = plan()
    for pr in procs:
        pr.start()
    if args.sharded:
        ctl, groups = setup
        for gid, servers in groups.items():
            r = subprocess.run([args.synod, 'shardctl', 'join', '--ctl', ctl, '--gid', str(gid), '--servers', servers, '--timeout', '30'],
                               capture_output=True, text=True)
            if r.returncode != 0: fail('joining group %d: %s' % (gid, r.stderr.strip()))
        status_servers = groups[100]
    else:
        status_servers = setup
    fronts = {}
    for pr in procs:
        if pr.resp: fronts.setdefault(pr.host, []).append(pr.resp)
    threads = []
    cid = 0
    for h in range(HOSTS):
        for front in fronts[h]:
            for _ in range(CLIENTS_PER_HOST):
                threads.append(threading.Thread(target=client, args=(cid, front, stop))); cid += 1
    for t in threads: t.start()
    time.sleep(3)  # warm up: a leader, sessions, connections
    rnd = random.Random(args.seed)
    faults = []
    for rnd_i in range(args.rounds):
        for kind in KINDS:
            leader = leader_host(status_servers)
            if leader is None: leader = rnd.randrange(HOSTS)
            others = [h for h in range(HOSTS) if h != leader]
            # A follower other than the last fault's host when there is one: the last one
            # just healed, and the fault must find out whether it is really back.
            fresh = [h for h in others if not faults or h != faults[-1]['host']]
            victim = rnd.choice(fresh or others) if kind == 'partition-follower' else leader
            host_procs = [pr for pr in procs if pr.host == victim]
            start = now()
            if kind in ('partition-leader', 'partition-follower'):
                for o in range(HOSTS):
                    if o != victim: cut(victim, o)
            elif kind == 'bridge':
                cut(victim, rnd.choice(fresh or others))
            elif kind == 'lossy':
                lossy(victim)
            elif kind == 'kill9':
                for pr in host_procs: pr.signal(signal.SIGKILL)
                for pr in host_procs: pr.wait()
            elif kind == 'sigstop':
                for pr in host_procs: pr.signal(signal.SIGSTOP)
            else:
                fail('unknown fault kind %r' % kind)
            time.sleep(max(0.0, start + args.hold - now()))
            if kind == 'kill9':
                for pr in host_procs: pr.start()
            elif kind == 'sigstop':
                for pr in host_procs: pr.signal(signal.SIGCONT)
            else:
                heal_network()
            heal = now()
            print('%7.2fs %-18s host %d (leader %d) for %.1fs' % (start, kind, victim, leader, heal - start), flush=True)
            time.sleep(args.gap)
            faults.append(dict(kind=kind, host=victim, leader=leader, start=start, heal=heal, end=now()))
    stop.set()
    for t in threads: t.join()
    for f in faults:
        majority = [fr for h in range(HOSTS) if f['kind'] == 'bridge' or h != f['host'] for fr in fronts[h]]
        f['unavailable'], f['gap_from'], f['gap_to'] = unavailability(f['start'], f['end'], majority)
        f['recovery'] = recovery(f['heal'], f['end'], fronts[f['host']])
    # The last word: every key through every front, after the last heal.
    for h in range(HOSTS):
        for i, front in enumerate(fronts[h]):
            for k in KEYS:
                s = socket.create_connection(front, timeout=30); s.settimeout(30); f = s.makefile('rb')
                rec = {'client': 1000 + 10 * h + i, 'op': 'get', 'key': k, 'call': now(), 'front': front}
                s.sendall(enc('GET', k)); rec['output'] = read_reply(f) or ''; rec['return'] = now()
                hist.append(rec); s.close()
finally:
    stop.set()
    cleanup()

with open(os.path.join(args_dir, 'operations.jsonl'), 'w') as out:  # with fronts and errors, for digging
    for r in hist:
        out.write(json.dumps(dict(r, front='%s:%d' % r['front'])) + '\n')
path = os.path.join(args_dir, 'history.jsonl')
with open(path, 'w') as out:
    for r in hist:
        r = dict(r); r.pop('front')
        r['call'] = int(r['call'] * 1e6)
        if 'return' in r: r['return'] = int(r['return'] * 1e6)
        if 'err' in r:
            if r['op'] == 'get': continue
            r.pop('err'); r.pop('return', None)
        out.write(json.dumps(r) + '\n')
ok = sum(1 for r in hist if 'err' not in r); err = len(hist) - ok
with open(os.path.join(args_dir, 'results.json'), 'w') as out:
    json.dump(dict(sharded=args.sharded, hold=args.hold, gap=args.gap, t0_wall=T0_WALL, faults=faults, ops_ok=ok, ops_err=err),
              out, indent=1)

print('\n%s, %d hosts, faults held %.0f s, %.0f s apart; %d operations ok, %d failed or unknown'
      % ('sharded KV' if args.sharded else 'Paxos KV', HOSTS, args.hold, args.gap, ok, err))
print('%-18s %4s  %-34s  %s' % ('', '', 'unavailability (s)', 'recovery of the faulty host (s)'))
print('%-18s %4s  %8s %8s %8s  %8s %8s' % ('fault', 'runs', 'median', 'p99', 'worst', 'median', 'worst'))
for kind in KINDS:
    fs = [f for f in faults if f['kind'] == kind]
    if not fs: continue
    u = [f['unavailable'] for f in fs]; rc = [f['recovery'] for f in fs]
    print('%-18s %4d  %8.2f %8.2f %8.2f  %8.2f %8.2f' % (kind, len(fs), percentile(u, 0.5), percentile(u, 0.99), max(u),
                                                        percentile(rc, 0.5), max(rc)))
r = subprocess.run([args.synod, 'check', '--model', 'kv', path, '--timeout', '300'], capture_output=True, text=True)
print('check rc=%d %s' % (r.returncode, r.stdout.strip()[:1000]))
if r.returncode != 0:
    sys.exit(1)
bounded = [f for f in faults if f['kind'] not in args.max_gap_skip.split(',')]
worst = max(bounded, key=lambda f: f['unavailable'], default=None)
if args.max_gap is not None and worst and worst['unavailable'] > args.max_gap:
    print('netfault: %s of host %d left the majority side without service for %.2f s, over --max-gap %.2f s'
          % (worst['kind'], worst['host'], worst['unavailable'], args.max_gap), file=sys.stderr)
    sys.exit(1)
