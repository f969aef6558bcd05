"""lb_roundrobin: smooth weighted round robin, down servers skipped, backups only
when no primary is up (SPEC §4 upstreams, §7 lb_roundrobin)."""

import http.client
from collections import Counter

from conftest import get


def _proxy(weir, servers, **up):
    w = weir()
    u = {"balancer": "roundrobin", "servers": servers, "keepalive": 16}
    u.update(up)
    w.start(w.config(upstreams={"pool": u}, routes=[{"path": "/", "upstream": "pool"}]))
    return w


def _ids(port, n):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for _ in range(n):
        c.request("GET", "/id", headers={"Host": "lb.test"})
        r = c.getresponse()
        body = r.read()
        out.append((r.status, body.decode("latin-1")))
    c.close()
    return out


def test_weights_3_to_1_exact(weir, backend):
    b1, b2 = backend("b1", mode="id"), backend("b2", mode="id")
    w = _proxy(weir, [{"address": b1.addr, "weight": 3}, {"address": b2.addr, "weight": 1}])
    res = _ids(w.port, 400)
    assert all(s == 200 for s, _ in res), Counter(res)
    seq = [b for _, b in res]
    assert Counter(seq) == {"b1": 300, "b2": 100}
    # smooth WRR (nginx's) gives the same 3:1 split in every run of 4 requests
    for i in range(0, 400, 4):
        assert Counter(seq[i:i + 4]) == {"b1": 3, "b2": 1}, seq[i:i + 4]
    assert len(b1.requests) == 300 and len(b2.requests) == 100


def test_equal_weights_alternate(weir, backend):
    bs = [backend("b%d" % i, mode="id") for i in range(1, 4)]
    w = _proxy(weir, [b.addr for b in bs])       # short form, weight 1 each
    seq = [b for _, b in _ids(w.port, 99)]
    assert Counter(seq) == {"b1": 33, "b2": 33, "b3": 33}
    for i in range(0, 99, 3):
        assert sorted(seq[i:i + 3]) == ["b1", "b2", "b3"], seq[i:i + 3]


def test_backup_only_when_all_primaries_down(weir, backend):
    p1, p2 = backend("p1", mode="id"), backend("p2", mode="id")
    bk = backend("bk", mode="id")
    w = _proxy(weir, [p1.addr, p2.addr, {"address": bk.addr, "backup": True}],
               max_fails=1, fail_timeout="30s", retries=1)
    seq = [b for s, b in _ids(w.port, 20)]
    assert Counter(seq) == {"p1": 10, "p2": 10}
    assert bk.connections == 0 and not bk.requests

    # p1 goes away (connect refused).  retries: 1 moves a failed connect to another
    # server, and max_fails: 1 marks p1 down; p2 takes everything, backup unused.
    p1.stop()
    res = []
    for _ in range(10):
        r = get(w.port, "/id")
        res.append((r.status, r.body.decode("latin-1")))
    assert res == [(200, "p2")] * 10, res
    assert bk.connections == 0 and not bk.requests

    # p2 goes away too: no primary is up, so the backup serves.  The first request
    # fails to connect to p2, p2 is marked down, and the retry goes to the backup
    # (the only server that is up), so every request succeeds.
    p2.stop()
    res = []
    for _ in range(10):
        r = get(w.port, "/id")
        res.append((r.status, r.body.decode("latin-1")))
    assert res == [(200, "bk")] * 10, res


def test_backup_unused_while_primary_up(weir, backend):
    p1 = backend("p1", mode="id")
    bk = backend("bk", mode="id")
    w = _proxy(weir, [p1.addr, {"address": bk.addr, "backup": True, "weight": 5}])
    seq = [b for _, b in _ids(w.port, 30)]
    assert seq == ["p1"] * 30
    assert bk.connections == 0


def test_down_server_skipped(weir, backend):
    from conftest import free_port
    dead = "127.0.0.1:%d" % free_port()   # nothing listens there
    b1 = backend("b1", mode="id")
    w = _proxy(weir, [dead, b1.addr], max_fails=1, fail_timeout="30s", retries=1)
    res = []
    for _ in range(20):
        r = get(w.port, "/id")
        res.append((r.status, r.body))
    # the first attempt on the dead server is retried on b1 (connect failure, GET);
    # afterwards the dead server is down and skipped
    assert res == [(200, b"b1")] * 20, res
