"""Regressions from issue 9 (hardening), each tried against the defect it
guards:

1. an answer of weir's own after the upstream's head was read must not read
   the upstream's released buffer (heap-use-after-free in the ASan build;
   the plain build sent the upstream's fields with its 502);
2. at the fd limit accept pauses and every accepted connection goes on being
   served, and the pause is logged once per episode;
3. the accept watch does not fire in normal use (it is a safety net for a
   lost wakeup, logged at debug);
4. client_body_timeout answers 408; a 204/304 from upstream reaches the
   client with no body (and no Content-Length on 204)."""

import re
import subprocess
import socket
import time

import pytest

from conftest import Reader, connect, get, raw_request, read_response, simple_proxy, wait_for

KEEP_UP = {"max_fails": 1000, "retries": 0}

# The exact upstream answer that crashed the worker, and its relatives: the
# body bytes that came with the head are refused after the head was parsed.
BAD_AFTER_HEAD = [
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
    b"5\r\nhello\r\n3\r\n worLD\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n5\r\nhello\n0\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
    b"X-A: b\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
]


@pytest.mark.parametrize("raw", BAD_AFTER_HEAD, ids=["missing-crlf", "bare-lf", "after-100"])
def test_502_after_buffered_head_carries_nothing_upstream(weir, backend, raw):
    b = backend()
    b.on("/bad", lambda ctx, req: ctx.send(raw) or time.sleep(0.2) or False)
    w = simple_proxy(weir, b, upstream_extra=KEEP_UP)
    pids = w.workers()
    r = raw_request(w.port, b"GET /bad HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.status == 502, r
    assert not r.headers.has("X-A"), r.headers
    assert b"hello" not in r.body
    assert get(w.port, "/echo").status == 200
    assert w.workers() == pids, "the worker died"


def test_502_after_head_split_across_reads(weir, backend):
    b = backend()

    def split(ctx, req):
        ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n")
        time.sleep(0.1)
        ctx.send(b"\r\n5\r\nhello\r\nq\r\n")
        time.sleep(0.2)
        return False
    b.on("/split", split)
    w = simple_proxy(weir, b, upstream_extra=KEEP_UP)
    pids = w.workers()
    r = get(w.port, "/split")
    assert r.status == 502, r
    assert not r.headers.has("X-A")
    assert w.workers() == pids


def test_log_phase_reads_response_fields_after_upstream_released(weir, backend, tmp_path):
    """The access log renders $sent_http_* after the upstream connection went
    back to the pool (its buffer freed): the values must be the response's."""
    b = backend()
    b.on("/h", lambda ctx, req: ctx.send(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Mark: m4rk-value\r\n\r\nok") or True)
    log = tmp_path / "access.log"
    w = weir()
    cfg = w.config(upstreams={"b": {"servers": [b.addr], "keepalive": 4}},
                   routes=[{"path": "/", "upstream": "b"}],
                   modules=["router", "lb_roundrobin", "accesslog"],
                   access_log={"path": str(log), "format": "$status $sent_http_x_mark",
                               "flush": "50ms"})
    w.start(cfg)
    for _ in range(3):
        assert get(w.port, "/h").status == 200
    lines = wait_for(lambda: (lambda l: l if len(l) >= 3 else None)(
        log.read_text().splitlines() if log.exists() else []))
    assert lines == ["200 m4rk-value"] * 3, lines


def test_client_body_timeout_answers_408(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, limits={"client_body_timeout": "500ms"}, upstream_extra=KEEP_UP)
    s = connect(w.port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    r = read_response(Reader(s))
    s.close()
    assert r is not None and r.status == 408, r
    assert "client_body_timeout" in w.log()
    assert get(w.port, "/echo").status == 200


@pytest.mark.parametrize("status,reason,cl_kept", [(204, b"No Content", False),
                                                    (304, b"Not Modified", True)])
def test_204_304_reach_client_without_body(weir, backend, status, reason, cl_kept):
    b = backend()
    head = b"HTTP/1.1 %d %s\r\nContent-Length: 5\r\nX-K: v\r\n\r\n" % (status, reason)
    b.on("/nb", lambda ctx, req: ctx.send(head + b"hello") or False)
    w = simple_proxy(weir, b, upstream_extra=KEEP_UP)
    s = connect(w.port)
    s.sendall(b"GET /nb HTTP/1.1\r\nHost: x\r\n\r\n")
    rd = Reader(s)
    r = read_response(rd)
    assert r.status == status and r.headers.get("X-K") == "v", r
    assert r.headers.get("Content-Length") == ("5" if cl_kept else None), r.headers
    assert not r.headers.has("Transfer-Encoding")
    # the next answer on the same connection starts right after the head:
    # the upstream's "hello" never reached the client
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = rd.read_to_eof()
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:80]
    assert b"hello" not in raw.split(b"\r\n\r\n", 1)[0]
    s.close()


def test_204_of_a_module_has_no_body_nor_content_length(weir, backend):
    """weir's own 204 (a module's weir_respond with a body) sends neither."""
    from test_module_host import _suspend_so
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}],
                     modules=["router", "lb_roundrobin",
                              {"name": "suspend", "path": _suspend_so()}]))
    s = connect(w.port)
    s.sendall(b"GET /nocontent HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /nocontent HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    raw = Reader(s).read_to_eof()
    s.close()
    answers = raw.split(b"\r\n\r\n")
    assert answers[0].startswith(b"HTTP/1.1 204 ") and answers[1].startswith(b"HTTP/1.1 204 "), raw
    assert answers[2] == b"" and b"not sent" not in raw, raw
    assert b"content-length" not in raw.lower(), raw


def _ports_held_by(pid):
    """Local ports of the client sockets that process pid has accepted."""
    out = subprocess.run(["ss", "-tnp", "state", "established"], capture_output=True,
                         text=True, check=True).stdout
    held = set()
    for line in out.splitlines():
        if "pid=%d," % pid in line:
            addrs = re.findall(r"127\.0\.0\.1:(\d+)", line)
            if len(addrs) == 2:
                held.add(int(addrs[1]))
    return held


def test_fd_limit_accepted_connections_go_on_being_served(weir, backend):
    """ulimit -n 256 and 300 idle connections: weir admits only as many as can
    each still open an upstream socket, serves every one of them (200, not a
    502 from a failed socket()) while the rest wait in the backlog, logs the
    pause once, and takes the waiting ones in as others close."""
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}],
                     limits={"client_header_timeout": "60s", "keepalive_timeout": "60s"}),
            wrapper=["prlimit", "--nofile=256:256", "--"])
    pid = w.workers()[0]
    socks = []
    try:
        for _ in range(300):
            socks.append(connect(w.port, timeout=10))
        # deferred accept hands a connection over once its first bytes
        # arrive, or after its 1 s wait: both kinds are mixed here
        for s in socks[::2]:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        held = wait_for(lambda: (lambda h: h if len(h) > 50 else None)(_ports_held_by(pid)))
        time.sleep(1.5)
        held = _ports_held_by(pid)
        accepted = [s for s in socks if s.getsockname()[1] in held]
        waiting = [s for s in socks if s.getsockname()[1] not in held]
        assert 50 < len(accepted) < 128 and waiting, (len(accepted), len(waiting))
        for i, s in enumerate(socks):
            if s in accepted and i % 2:
                s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        for s in accepted:   # a stall shows as a socket timeout here
            r = read_response(Reader(s))
            assert r is not None and r.status == 200, r
        log = w.log()
        assert log.count("accept paused") == 1, log[-3000:]
        assert "pausing accept for 100ms" not in log
        assert "allows" in log and "client connections" in log
        # as accepted connections close, the waiting ones are taken in
        for s in accepted[:len(accepted) // 2]:
            s.close()
        def taken_in():
            held = _ports_held_by(pid)
            return [s for s in waiting if s.getsockname()[1] in held]
        taken = wait_for(lambda: (lambda t: t if len(t) >= 5 else None)(taken_in()))
        assert len(taken) >= 5, len(taken)
        for s in taken[:5]:
            s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            r = read_response(Reader(s))
            assert r is not None and r.status == 200, r
        assert w.workers() == [pid]
    finally:
        for s in socks:
            s.close()


def test_accept_watch_quiet_under_new_connection_load(weir, backend):
    """One worker, a new connection per request, at debug level: bursts at
    full speed and connections spread out with pauses (so that many watch
    ticks see no accept): the lost-wakeup watch must never re-arm."""
    import random
    import threading
    from loadgen import Load
    b = backend()
    w = simple_proxy(weir, b, error_log={"path": "stderr", "level": "debug"})
    with Load(w.port, clients=3, keepalive=False, path="/echo") as load:
        assert load.wait_requests(2000, timeout=60)
    assert load.failures == [], load.summary()
    rng = random.Random(9)
    bad = []

    def spread():
        for _ in range(25):
            r = get(w.port, "/echo")
            if r.status != 200:
                bad.append(r)
            time.sleep(rng.random() * 0.15)
    threads = [threading.Thread(target=spread) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad, bad[:3]
    assert "waiting unseen" not in w.log()


def test_http10_without_host_names_the_upstream(weir, backend):
    """Found by the proxy-path fuzz target: weir sent "Host: " (empty) on the
    HTTP/1.1 request it made of an HTTP/1.0 request without Host, a head its
    own parser refuses. The upstream's name stands in, as nginx's
    $proxy_host does."""
    b = backend()
    w = simple_proxy(weir, b)
    r = raw_request(w.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert r.status == 200, r
    assert b.requests[-1].headers.get_all("Host") == ["b"], b.requests[-1].headers


def test_client_gone_while_a_handler_is_suspended(weir, backend):
    """A client that closes while a module holds its request suspended: the
    resume must not touch the freed connection, and the worker goes on."""
    from test_module_host import _suspend_so
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}],
                     modules=["router", "lb_roundrobin",
                              {"name": "suspend", "path": _suspend_so()}],
                     suspend_ms="200ms"))
    pids = w.workers()
    for _ in range(3):
        s = connect(w.port)
        s.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.05)
        s.close()
    time.sleep(0.5)
    r = get(w.port, "/echo")
    assert r.status == 200, r
    assert w.workers() == pids, w.log()[-2000:]
    assert "Sanitizer" not in w.log(), w.log()[-3000:]


def test_body_buffers_go_back_to_the_ring(weir, backend):
    """A body whose last bytes arrive apart from the head is forwarded from
    the receive buffer it landed in; that buffer must go back to the ring
    when the exchange ends. The worker has 128 of them: 300 such uploads on
    keepalive connections stall for good if one leaks per request."""
    b = backend()
    w = simple_proxy(weir, b, upstream_extra=KEEP_UP)
    for c in range(3):
        s = connect(w.port)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        rd = Reader(s)
        for i in range(100):
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel")
            time.sleep(0.001)
            s.sendall(b"lo")
            r = read_response(rd)
            assert r is not None and r.status == 200, (c, i, r)
        s.close()
    assert get(w.port, "/echo").status == 200
