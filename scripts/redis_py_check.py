#!/usr/bin/env python3
"""redis-py, sync and asyncio, with default settings, over every command synod's Redis fronts
support, with pipelines and transactions: each service (`synod up`, `--pb`, `--sharded`) is
started in a temporary directory and checked in turn. Any warning redis-py gives fails the
check, as does any reply other than the one asserted.

    cargo build --release -p synod
    python3 scripts/redis_py_check.py                 # every service
    python3 scripts/redis_py_check.py --services kv

Needs redis-py (Debian: apt-get install python3-redis). Prints one line per service; exits 0
when every check passed.
"""
import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import warnings

import redis
import redis.asyncio

from redis_diff import ROOT, start_synod

BINARY = bytes(range(256))


def raises(text, call, *args, **kwargs):
    """Asserts that `call` fails with a Redis error containing `text`."""
    try:
        call(*args, **kwargs)
    except redis.ResponseError as e:
        assert text in str(e), (text, str(e))
        return
    raise AssertionError('%s%r did not fail' % (call.__name__, args))


def check_sync(r, service):
    """Every supported command once, on keys sharing a hash tag (so the sharded KV serves the
    multi-key ones from one shard)."""
    k = lambda name: 'py:{t}.' + name
    assert r.ping() is True
    assert r.echo(BINARY) == BINARY
    assert r.set(k('bin'), BINARY) is True
    assert r.get(k('bin')) == BINARY
    assert r.get(k('missing')) is None
    assert r.set(k('empty'), b'') is True and r.get(k('empty')) == b''
    assert r.set(k('s'), 'v', nx=True) is True
    assert r.set(k('s'), 'w', nx=True) is None
    assert r.set(k('s'), 'w', xx=True, get=True) == b'v'
    assert r.getset(k('s'), 'x') == b'w'
    assert r.setnx(k('s'), 'y') is False
    assert r.append(k('s'), 'yz') == 3
    assert r.strlen(k('s')) == 3
    assert r.getrange(k('s'), -2, -1) == b'yz'
    assert r.setrange(k('r'), 2, 'ab') == 4 and r.get(k('r')) == b'\x00\x00ab'
    assert r.getdel(k('r')) == b'\x00\x00ab' and r.get(k('r')) is None
    assert r.incr(k('n')) == 1 and r.incrby(k('n'), 41) == 42
    assert r.decr(k('n')) == 41 and r.decrby(k('n'), 40) == 1
    assert r.incrbyfloat(k('f'), 1.5) == 1.5
    raises('not an integer', r.incr, k('s'))
    raises('not a valid float', r.incrbyfloat, k('s'), 1)
    raises('never expire', r.set, k('e'), 'v', ex=10)
    raises('never expire', r.expire, k('s'), 10)
    assert r.mset({k('m1'): 'a', k('m2'): 'b'}) is True
    assert r.msetnx({k('m2'): 'c', k('m3'): 'd'}) is False
    assert r.mget(k('m1'), k('m3'), k('m2')) == [b'a', None, b'b']
    assert r.exists(k('m1'), k('m1'), k('m3')) == 2
    assert r.type(k('m1')) == b'string' and r.type(k('m3')) == b'none'
    assert r.delete(k('m1'), k('m3')) == 1 and r.unlink(k('m2')) == 1
    assert r.client_setname('checker') is True and r.client_getname() == 'checker'
    assert isinstance(r.client_id(), int)
    assert r.execute_command('SELECT', 0) is True
    assert r.info('server')['redis_version']
    assert r.command_count() > 20
    if service == 'sharded':
        raises('CROSSSLOT', r.mget, 'py:a', 'py:b')
        raises('spans every shard', r.dbsize)
    else:
        assert sorted(r.keys('py:{t}.m*')) == []
        assert sorted(r.scan_iter(match='py:{t}.[sn]', count=2)) == [k('n').encode(), k('s').encode()]
        assert r.dbsize() >= 5
        assert r.info('keyspace')['db0']['keys'] == r.dbsize()
        assert 'role' in r.info('replication')
    # A pipeline, and a transaction (MULTI/EXEC, one log entry).
    p = r.pipeline(transaction=False)
    p.set(k('p'), 1).incr(k('p')).get(k('p')).get(k('missing'))
    assert p.execute() == [True, 2, b'2', None]
    p = r.pipeline(transaction=True)
    p.incr(k('t')).incr(k('t')).append(k('t'), '0').get(k('t'))
    assert p.execute() == [1, 2, 2, b'20']
    # A transaction with a command refused when run: the others take effect, as in Redis.
    p = r.pipeline(transaction=True)
    p.set(k('u'), 'a').incr(k('u')).get(k('u'))
    results = p.execute(raise_on_error=False)
    assert results[0] is True and isinstance(results[1], redis.ResponseError) and results[2] == b'a', results


async def check_async(port):
    r = redis.asyncio.Redis(port=port)
    try:
        assert await r.ping() is True
        assert await r.set('py:{t}.async', BINARY) is True
        assert await r.get('py:{t}.async') == BINARY
        async with r.pipeline(transaction=True) as p:
            p.incr('py:{t}.an').incr('py:{t}.an')
            assert await p.execute() == [1, 2]
    finally:
        await r.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--synod', default=os.environ.get('SYNOD', os.path.join(ROOT, 'target', 'release', 'synod')))
    p.add_argument('--services', default='kv,pb,sharded')
    args = p.parse_args()
    warnings.simplefilter('error')
    workdir = tempfile.mkdtemp(prefix='synod-redis-py-')
    try:
        for service in args.services.split(','):
            synod, port = start_synod(args.synod, service, workdir)
            try:
                check_sync(redis.Redis(port=port), service)
                asyncio.run(check_async(port))
            finally:
                synod.terminate()
                synod.wait(timeout=30)
                synod.stdout.close()
            print('%s: redis-py %s, every supported command, pipelines and transactions: ok'
                  % (service, redis.__version__))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
