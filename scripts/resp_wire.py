"""The Redis protocol (RESP2) as the scripts under scripts/ speak it: a command out, a reply in.

Python 3 standard library only; imported by chaos.py and netfault.py.
"""

def encode(*args):
    """One command (an array of bulk strings), ready to send."""
    out = b'*%d\r\n' % len(args)
    for a in args:
        a = a.encode(); out += b'$%d\r\n%s\r\n' % (len(a), a)
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
