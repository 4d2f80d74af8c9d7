"""The Redis protocol (RESP2) as the scripts under scripts/ speak it: a command out, a reply in,
and one operation of their load, recorded for `synod check`.

Python 3 standard library only; imported by chaos.py and netfault.py.
"""

def encode(*args):
    """One command (an array of bulk strings, each given as str or bytes), ready to send."""
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else a.encode(); out += b'$%d\r\n%s\r\n' % (len(a), a)
    return out

def read_reply(f):
    """One reply from the binary file `f`: a str, an int, or None for a nil bulk string.
    An error reply raises RuntimeError with its text; a closed connection ConnectionError."""
    line = f.readline()
    if not line: raise ConnectionError('closed')
    t, rest = line[:1], line[1:-2]
    if t == b'+': return rest.decode()
    if t == b'-': raise RuntimeError(rest.decode())
    if t == b':': return int(rest)
    if t == b'$':
        n = int(rest)
        if n < 0: return None
        return f.read(n + 2)[:-2].decode()
    raise RuntimeError('bad reply %r' % line)

def one_operation(conn, rnd, keys, cid, n, now):
    """Runs a random SET, APPEND or GET of one of `keys` on `conn` (a socket and its binary
    file) as client `cid`'s `n`th operation, and returns its record for the history: client,
    op, key, call, the value of a write, and return and output, or err if it failed (the
    caller then drops the connection). `now` gives the time stamps."""
    key = rnd.choice(keys); op = rnd.choice(['put', 'append', 'get'])
    val = 'c%dn%d.' % (cid, n)
    rec = {'client': cid, 'op': op, 'key': key, 'call': now()}
    if op != 'get': rec['value'] = val
    try:
        s, f = conn
        s.sendall(encode('SET', key, val) if op == 'put' else encode('APPEND', key, val) if op == 'append' else encode('GET', key))
        r = read_reply(f)
        rec['return'] = now()
        if op == 'get': rec['output'] = r or ''
    except Exception as e:
        rec['err'] = str(e)
    return rec
