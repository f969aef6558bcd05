"""Module healthcheck (SPEC §7): active http and tcp checks per upstream, run by ONE
prober for all workers (workers: 2 here), verdicts shared by every worker, each
state change logged once, rise/fall, expect_status, backups, 503 when everything is
down, passive failures (max_fails) combined with active ones, the verdicts kept
across a restart of the prober's worker, config errors with file:line:col.

Intervals are 200ms so the suite is quick; every wait is a poll (wait_for) or a
sleep of the behaviour's own period plus a generous margin."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import WEIR_BIN, MODULES_DIR, free_port, get, wait_for

INTERVAL = 0.2      # seconds; health_check interval in these tests
MARGIN = 1.0        # slack for a loaded machine (ASan) on top of interval x fall/rise
MODULES = ["router", "lb_roundrobin", "healthcheck"]


def _health_backend(backend, name, port=None):
    """A Backend whose /health answers b.health (a status code), Connection: close;
    /id answers the backend's name."""
    b = backend(name, mode="id", port=port)
    b.health = 200

    def fn(ctx, req):
        body = b"health %d\n" % b.health
        ctx.send(b"HTTP/1.1 %d Status\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                 % (b.health, len(body)) + body)
        return False
    b.on("/health", fn)
    return b


def _checks(b):
    return [r for r in list(b.requests) if r.path == "/health"]


def _traffic(b):
    return [r for r in list(b.requests) if r.path == "/id"]


def _start(weir, servers, check, workers=2, **up):
    w = weir()
    u = {"balancer": "roundrobin", "servers": servers, "health_check": check}
    u.update(up)
    w.start(w.config(upstreams={"pool": u}, routes=[{"path": "/", "upstream": "pool"}],
                     workers=workers, modules=MODULES))
    w.wait_workers(workers)
    return w


def _ids(port, n):
    out = []
    for _ in range(n):
        r = get(port, "/id")
        out.append((r.status, r.body.decode("latin-1")))
    return out


def _lines(w, pattern):
    return [ln for ln in w.log().splitlines() if re.search(pattern, ln)]


def _down_re(b):
    return r"\[warn\] \d+ healthcheck: upstream pool: server %s is down " % re.escape(b.addr)


def _up_re(b):
    return r"\[notice\] \d+ healthcheck: upstream pool: server %s is up " % re.escape(b.addr)


HTTP_CHECK = {"path": "/health", "interval": "200ms", "timeout": "150ms", "rise": 2, "fall": 2}


def test_unhealthy_server_gets_no_traffic_then_recovers(weir, backend):
    b1, b2 = _health_backend(backend, "b1"), _health_backend(backend, "b2")
    # passive failures stay enabled (max_fails 1): b2 keeps answering /id, so only
    # the active checks can take it out
    w = _start(weir, [b1.addr, b2.addr], HTTP_CHECK, keepalive=0)
    assert wait_for(lambda: len(_checks(b1)) >= 2 and len(_checks(b2)) >= 2, 5)
    res = _ids(w.port, 20)
    assert {s for s, _ in res} == {200}
    assert {n for _, n in res} == {"b1", "b2"}, res

    b2.health = 500
    time.sleep(INTERVAL * 2 + MARGIN)                # fall 2 checks, plus margin
    assert len(_lines(w, _down_re(b2))) == 1, w.log()[-3000:]
    before = len(_traffic(b2))
    res = _ids(w.port, 30)
    assert res == [(200, "b1")] * 30, res
    assert len(_traffic(b2)) == before
    line = _lines(w, _down_re(b2))[0]
    assert "status 500, expected 200-399" in line, line
    # b2 keeps failing: still exactly one "down" line, never an "up"
    time.sleep(INTERVAL * 4)
    assert len(_lines(w, _down_re(b2))) == 1
    assert not _lines(w, _up_re(b2))
    assert not _lines(w, _down_re(b1)) and not _lines(w, _up_re(b1))

    b2.health = 200
    time.sleep(INTERVAL * 2 + MARGIN)                # rise 2 checks, plus margin
    assert len(_lines(w, _up_re(b2))) == 1, w.log()[-3000:]
    res = _ids(w.port, 20)
    assert {s for s, _ in res} == {200}
    assert "b2" in {n for _, n in res}, res
    assert len(_lines(w, _down_re(b2))) == 1 and len(_lines(w, _up_re(b2))) == 1


def test_server_that_stops_listening(weir, backend):
    b1, b2 = _health_backend(backend, "b1"), _health_backend(backend, "b2")
    port2 = b2.port
    # max_fails 0 and retries 0: no passive marking and no retry, so a request
    # sent to the dead server would show up as a 502
    w = _start(weir, [b1.addr, b2.addr], HTTP_CHECK, max_fails=0, retries=0, keepalive=0)
    assert wait_for(lambda: _checks(b2), 5)
    b2.stop()
    assert wait_for(lambda: _lines(w, _down_re(b2)), INTERVAL * 2 + MARGIN), w.log()[-3000:]
    assert "connecting: Connection refused" in _lines(w, _down_re(b2))[0]
    res = _ids(w.port, 20)
    assert res == [(200, "b1")] * 20, res

    b2b = _health_backend(backend, "b2-again", port=port2)
    assert wait_for(lambda: _lines(w, _up_re(b2)), INTERVAL * 2 + MARGIN), w.log()[-3000:]
    res = _ids(w.port, 20)
    assert {s for s, _ in res} == {200}
    assert "b2-again" in {n for _, n in res}, res
    assert len(_lines(w, _down_re(b2))) == 1 and len(_lines(w, _up_re(b2))) == 1
    assert len(_checks(b2b)) >= 2                   # rise 2


def test_one_prober_for_all_workers(weir, backend):
    b1, b2 = _health_backend(backend, "b1"), _health_backend(backend, "b2")
    other = backend("other", mode="id")             # an upstream without health_check
    w = weir()
    cfg = w.config(upstreams={
        "pool": {"servers": [b1.addr, b2.addr], "health_check": HTTP_CHECK},
        "plain": {"servers": [other.addr]},
    }, routes=[{"path": "/other", "upstream": "plain"}, {"path": "/", "upstream": "pool"}],
        workers=2, modules=MODULES)
    w.start(cfg)
    w.wait_workers(2)
    assert wait_for(lambda: _checks(b1) and _checks(b2), 5)
    b1.clear()
    b2.clear()
    window = 3.0
    time.sleep(window)
    n1, n2 = len(_checks(b1)), len(_checks(b2))
    # one prober: about window / interval = 15 checks per server; two probers
    # (one per worker) would make about 30
    per = window / INTERVAL
    assert per * 0.5 <= n1 <= per * 1.35, (n1, n2)
    assert per * 0.5 <= n2 <= per * 1.35, (n1, n2)
    started = _lines(w, r"healthcheck: checking 2 servers of 1 upstreams")
    assert len(started) == 1, w.log()
    # the check request, exactly
    req = _checks(b1)[-1]
    assert req.raw_head == (b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                            b"User-Agent: weir-healthcheck\r\n\r\n"), req.raw_head
    # one connection per check (Connection: close)
    assert len({r.conn_id for r in _checks(b1)}) == n1
    assert not other.requests and other.connections == 0


class _Listener:
    """A TCP port that accepts and never answers (a tcp check passes, an http
    check would time out); close() makes connects to the port refused."""

    def __init__(self, port=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port

    def close(self):
        self.sock.close()


def test_tcp_check(weir, backend):
    b1 = _health_backend(backend, "b1")
    lst = _Listener()
    try:
        w = _start(weir, [b1.addr, lst.addr],
                   {"type": "tcp", "interval": "200ms", "timeout": "150ms", "rise": 2,
                    "fall": 2}, max_fails=0, retries=0)
        time.sleep(INTERVAL * 3 + MARGIN)
        # connects alone pass: the silent listener stays up; no HTTP is sent to b1
        assert not _lines(w, r"is down"), w.log()[-3000:]
        b1.clear()
        time.sleep(INTERVAL * 5)
        assert b1.connections >= 2 and not b1.requests
        lst.close()
        assert wait_for(lambda: _lines(w, r"server %s is down" % re.escape(lst.addr)),
                        INTERVAL * 2 + MARGIN), w.log()[-3000:]
        res = _ids(w.port, 10)
        assert res == [(200, "b1")] * 10, res
        lst = _Listener(lst.port)
        assert wait_for(lambda: _lines(w, r"server %s is up" % re.escape(lst.addr)),
                        INTERVAL * 2 + MARGIN), w.log()[-3000:]
    finally:
        lst.close()


def test_expect_status_list(weir, backend):
    b1, b2 = _health_backend(backend, "b1"), _health_backend(backend, "b2")
    b1.health = b2.health = 204
    w = _start(weir, [b1.addr, b2.addr],
               dict(HTTP_CHECK, expect_status=[204, "300-302"]), max_fails=0)
    time.sleep(INTERVAL * 3 + MARGIN)
    assert not _lines(w, r"is down"), w.log()[-3000:]
    b2.health = 200                                 # 200 is not in the list
    assert wait_for(lambda: _lines(w, _down_re(b2)), INTERVAL * 2 + MARGIN), w.log()[-3000:]
    assert "status 200, expected 204,300-302" in _lines(w, _down_re(b2))[0]
    assert _ids(w.port, 10) == [(200, "b1")] * 10
    b2.health = 301                                 # inside 300-302
    assert wait_for(lambda: _lines(w, _up_re(b2)), INTERVAL * 2 + MARGIN), w.log()[-3000:]
    b1.health = 303                                 # just outside 300-302
    assert wait_for(lambda: _lines(w, _down_re(b1)), INTERVAL * 2 + MARGIN), w.log()[-3000:]
    assert _ids(w.port, 10) == [(200, "b2")] * 10


def test_all_primaries_down_backup_serves(weir, backend):
    p1, p2 = _health_backend(backend, "p1"), _health_backend(backend, "p2")
    bk = _health_backend(backend, "bk")
    w = _start(weir, [p1.addr, p2.addr, {"address": bk.addr, "backup": True}], HTTP_CHECK,
               max_fails=0, keepalive=0)
    assert wait_for(lambda: _checks(bk), 5)        # backups are checked too
    res = _ids(w.port, 20)
    assert {n for _, n in res} == {"p1", "p2"} and not _traffic(bk), res
    p1.health = 503
    assert wait_for(lambda: _lines(w, _down_re(p1)), INTERVAL * 2 + MARGIN)
    assert _ids(w.port, 10) == [(200, "p2")] * 10
    assert not _traffic(bk)
    p2.health = 503
    assert wait_for(lambda: _lines(w, _down_re(p2)), INTERVAL * 2 + MARGIN)
    assert _ids(w.port, 10) == [(200, "bk")] * 10
    p1.health = 200
    assert wait_for(lambda: _lines(w, _up_re(p1)), INTERVAL * 2 + MARGIN)
    assert _ids(w.port, 10) == [(200, "p1")] * 10


def _hung_server():
    """A port whose accept queue is full: connects to it hang (SYNs are dropped)
    until their timeout. Returns (listening socket, [fillers]) once a probe connect
    really hangs."""
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(8):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(0.3)
        fillers.append(s)
        try:
            s.connect(("127.0.0.1", port))
        except socket.timeout:
            return lsock, fillers
    pytest.fail("could not make a listener whose connects hang (accept queue never full)")


def test_all_down_503_fast(weir, backend):
    hung = [_hung_server() for _ in range(2)]
    try:
        addrs = ["127.0.0.1:%d" % h[0].getsockname()[1] for h in hung]
        w = _start(weir, addrs, {"type": "tcp", "interval": "200ms", "timeout": "100ms",
                                 "fall": 1, "rise": 1},
                   max_fails=0, retries=1, connect_timeout="5s")
        for a in addrs:
            assert wait_for(lambda: _lines(w, r"server %s is down after 1 failed checks "
                                              r"\(last: timed out after 100ms connecting\)"
                                           % re.escape(a)), 1 + MARGIN), w.log()[-3000:]
        for _ in range(5):
            t = time.monotonic()
            r = get(w.port, "/id", timeout=10)
            took = time.monotonic() - t
            assert r.status == 503, r
            assert took < 1.0, took                # the connect timeout is 5s
    finally:
        for lsock, fillers in hung:
            for s in fillers:
                s.close()
            lsock.close()


def test_passive_and_active_either_marks_down(weir, backend):
    b1, b2 = _health_backend(backend, "b1"), _health_backend(backend, "b2")
    port2 = b2.port
    # fall 1000: the checks would need minutes to take a server down, so any
    # avoidance seen here is the passive verdict (1 connect failure -> down 30s)
    check = dict(HTTP_CHECK, fall=1000)
    w = _start(weir, [b1.addr, b2.addr], check, max_fails=1, fail_timeout="30s", retries=1,
               keepalive=0)
    assert wait_for(lambda: _checks(b2), 5)
    b2.stop()
    res = _ids(w.port, 10)      # the one that hits b2 is retried on b1, b2 marked down
    assert res == [(200, "b1")] * 10, res
    # b2 comes back: the active checks pass (and never marked it down), but the
    # passive verdict still holds it down for fail_timeout
    b2b = _health_backend(backend, "b2-again", port=port2)
    assert wait_for(lambda: len(_checks(b2b)) >= 3, 5)
    res = _ids(w.port, 20)
    assert res == [(200, "b1")] * 20, res
    assert not _traffic(b2b)
    assert not _lines(w, r"healthcheck: .* is (down|up)"), w.log()[-3000:]
    assert _lines(w, r"server %s marked down" % re.escape(b2.addr)), w.log()[-3000:]


def _primary_pid(w):
    lines = _lines(w, r"healthcheck: checking ")
    return int(re.search(r"\] (\d+) healthcheck:", lines[-1]).group(1))


def test_verdict_survives_restart_of_the_prober(weir, backend):
    b1, b2 = _health_backend(backend, "b1"), _health_backend(backend, "b2")
    w = _start(weir, [b1.addr, b2.addr], HTTP_CHECK, max_fails=0, keepalive=0)
    b2.health = 500
    assert wait_for(lambda: _lines(w, _down_re(b2)), INTERVAL * 2 + MARGIN + 1)
    time.sleep(1.2)                 # past the master's "died right after start" backoff
    old = _primary_pid(w)
    assert old in w.workers()
    os.kill(old, signal.SIGKILL)
    assert wait_for(lambda: len(_lines(w, r"healthcheck: checking ")) == 2, 10), w.log()[-3000:]
    new = _primary_pid(w)
    assert new != old
    b2.clear()
    assert wait_for(lambda: len(_checks(b2)) >= 3, 5)   # the new prober runs
    assert _ids(w.port, 20) == [(200, "b1")] * 20       # still down, in every worker
    assert len(_lines(w, _down_re(b2))) == 1            # not logged again
    b2.health = 200
    assert wait_for(lambda: _lines(w, _up_re(b2)), INTERVAL * 2 + MARGIN), w.log()[-3000:]
    assert "b2" in {n for _, n in _ids(w.port, 20)}


# --------------------------------------------------------------- config errors


def _check_config(tmp_path, upstream_lines):
    port = free_port()
    lines = [
        "workers: 1",                                           # 1
        "modules_dir: %s" % MODULES_DIR,                        # 2
        "pid_file: weir.pid",                                   # 3
        "modules: [router, lb_roundrobin, healthcheck]",        # 4
        "listeners:",                                           # 5
        "  - address: 127.0.0.1:%d" % port,                     # 6
        "upstreams:",                                           # 7
    ] + upstream_lines
    (tmp_path / "weir.yaml").write_text("\n".join(lines) + "\n")
    p = subprocess.run([WEIR_BIN, "-t", "-c", "weir.yaml"], cwd=str(tmp_path),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def _has(out, tail):
    return any(ln.strip() == "weir.yaml:" + tail or
               (ln.strip().endswith(tail) and ln.strip().startswith("/") and
                ln.strip()[:-len(tail)].endswith("weir.yaml:"))
               for ln in out.splitlines())


def test_config_errors_with_positions(tmp_path):
    rc, out = _check_config(tmp_path, [
        "  a:",                                                 # 8
        "    servers: [127.0.0.1:9]",                           # 9
        "    health_check:",                                    # 10
        "      tpye: tcp",                                      # 11
        "      path: health",                                   # 12
        "      interval: 0",                                    # 13
        "      rise: 0",                                        # 14
        "      expect_status: [200, 399-200, 700, 2xx]",        # 15
        "      host: a b",                                      # 16
        "  b:",                                                 # 17
        "    servers: [127.0.0.1:9]",                           # 18
        "    health_check: {type: tcp, path: /x, interval: 1s, timeout: 2s}",   # 19
        "  c:",                                                 # 20
        "    servers: [127.0.0.1:9]",                           # 21
        "    health_check: yes",                                # 22
        "  d:",                                                 # 23
        "    servers: [127.0.0.1:9]",                           # 24
        "    health_check: {type: udp, fall: x, expect_status: []}",          # 25
    ])
    assert rc == 1, out
    want = [
        "11:7: health_check: unknown key 'tpye' (did you mean 'type'?)",
        "12:13: health_check.path 'health' must start with '/' (e.g. /health)",
        "13:17: health_check.interval 0s is too short: use at least 10ms",
        "14:13: value 0 for 'rise' is out of range (expected 1..1000)",
        "15:28: health_check.expect_status '399-200': the range is reversed; write 200-399",
        "15:37: health_check.expect_status '700': status codes lie within 100-599",
        "15:42: health_check.expect_status '2xx': expected a status code such as 200 or a "
        "range such as 200-399",
        "16:13: health_check.host 'a b' is not a valid Host value (a name or address, "
        "optionally with :port)",
        "19:31: health_check.path is only used by type: http (remove it, or set type: http)",
        "19:55: health_check: timeout (2s) is longer than interval (1s); a check must "
        "end before the next starts: lower timeout or raise interval",
        "22:19: health_check: expected a mapping such as {type: http, path: /health, "
        "interval: 2s, timeout: 1s, rise: 2, fall: 3, expect_status: 200-399} (or {} for "
        "the defaults)",
        "25:26: health_check.type 'udp': expected http or tcp",
        "25:37: invalid integer 'x' for 'fall' (expected a whole number)",
        "25:55: health_check.expect_status: empty list (remove the key for the default "
        "200-399)",
    ]
    missing = [t for t in want if not _has(out, t)]
    assert not missing, "missing %r in:\n%s" % (missing, out)


def test_config_good_forms_pass(tmp_path):
    rc, out = _check_config(tmp_path, [
        "  a:",
        "    servers: [127.0.0.1:9, {address: '[::1]:9', backup: true}]",
        "    health_check: {}",
        "  b:",
        "    servers: [127.0.0.1:9]",
        "    health_check: {type: tcp, interval: 500ms, timeout: 500ms, rise: 1, fall: 1}",
        "  c:",
        "    servers: [127.0.0.1:9]",
        "    health_check:",
        "      path: /status?full=1",
        "      host: api.internal:8080",
        "      expect_status: [200, '204-206', 301]",
        "  d:",
        "    servers: [127.0.0.1:9]",
        "    health_check: {expect_status: '200, 204'}",
        "  e:",
        "    servers: [127.0.0.1:9]",
    ])
    assert rc == 0, out
