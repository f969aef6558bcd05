"""The connection API of module ABI 1.3, seen from a real module
(t/modules/conntest.c): the accept chain (refusing, suspending), a transport
(an XOR "cipher" with a handshake of its own), connection addresses,
connection context and cleanup, listener iteration, the upstream_connect
hook with a preamble, and the upstream pool key.

Every socket operation has a timeout; nothing here asserts a duration."""

import os
import signal
import socket
import time

import pytest

from conftest import (Eof, Headers, RawUpstream, Reader, connect, free_port, get, parse_headers,
                      pattern, pattern_sha256, read_response, sha256, wait_for)

MiB = 1 << 20
OP = 6.0
KEY = 0x5A

TEST_MODULES = os.environ.get("WEIR_TEST_MODULES") or os.path.join(
    os.path.dirname(os.environ.get("WEIR_MODULES_DIR", "build/modules")), "t", "modules")


def _so():
    path = os.path.join(TEST_MODULES, "conntest.so")
    if not os.path.exists(path):
        pytest.fail("test module not built: %s" % path)  # a build problem, never a skip
    return path


def _modules():
    return ["router", "lb_roundrobin", "headers", {"name": "conntest", "path": _so()}]


def _start(weir, backend_addr, listeners, upstreams=None, routes=None, **extra):
    """listeners: list of dicts of extra listener keys; each gets a free port.
    Returns (w, [port, ...])."""
    w = weir()
    ports = [free_port() for _ in listeners]
    cfg = w.config(upstreams=upstreams or {"b": {"servers": [backend_addr]}},
                   routes=routes or [{"path": "/", "upstream": "b"}],
                   modules=_modules(), port=ports[0], **extra)
    cfg["listeners"] = [dict({"address": "127.0.0.1:%d" % p}, **l)
                        for p, l in zip(ports, listeners)]
    w.start(cfg)
    return w, ports


def _seen(r):
    """Headers the backend saw, from its JSON echo."""
    assert r is not None and r.status == 200, r
    return Headers((n, v) for n, v in r.json()["headers"])


def _closed_silently(s):
    """Everything weir sends on s before it closes: must be nothing."""
    s.settimeout(OP)
    got = b""
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return got, "eof"
            got += d
    except ConnectionResetError:
        return got, "reset"
    except socket.timeout:
        return got, "still open"


def _request(path, headers=(), method="GET", body=None, close=False):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: conn.test"]
    lines += ["%s: %s" % kv for kv in headers]
    if body is not None:
        lines.append("Content-Length: %d" % len(body))
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# ------------------------------------------------------------ the XOR client


_TABLE = bytes(i ^ KEY for i in range(256))


def xor(data):
    return bytes(data).translate(_TABLE)


class XorSock:
    """A socket that XORs both ways, for conftest's Reader and read_response;
    keeps the first raw bytes received to show they were not plaintext."""

    def __init__(self, sock):
        self.sock = sock
        self.raw_head = b""

    def sendall(self, data):
        self.sock.sendall(xor(data))

    def recv(self, n):
        d = self.sock.recv(n)
        if len(self.raw_head) < 64:
            self.raw_head += d[:64 - len(self.raw_head)]
        return xor(d)

    def settimeout(self, t):
        self.sock.settimeout(t)

    def gettimeout(self):
        return self.sock.gettimeout()

    def close(self):
        self.sock.close()


def _recv_exact(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise Eof(out)
        out += d
    return out


def xor_connect(port, pieces=(b"XOR1\n",)):
    """Connect, send the handshake in the given pieces (a pause between them
    so they arrive apart), read the transport's "OK\\n" before any HTTP byte
    is sent. Returns (XorSock, Reader)."""
    s = connect(port, OP)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i, p in enumerate(pieces):
        if i:
            time.sleep(0.1)
        s.sendall(p)
    assert _recv_exact(s, 3) == b"OK\n"     # the transport's own bytes, during the handshake
    xs = XorSock(s)
    return xs, Reader(xs)


# -------------------------------------------------------------- accept chain


def test_accept_refuse_closes_without_a_byte(weir, backend):
    """A listener whose accept handler refuses (403 from the chain): the client's
    connection is closed with nothing sent, the backend sees nothing; another
    listener of the same weir serves."""
    b = backend()
    w, (open_port, shut_port) = _start(weir, b.addr, [{"name": "open"},
                                                      {"name": "shut", "conntest_refuse": True}])
    for i in range(3):
        s = connect(shut_port, OP)
        try:
            s.sendall(_request("/refused%d" % i))
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, how = _closed_silently(s)
        s.close()
        assert got == b"" and how in ("eof", "reset"), (got, how)
    r = get(open_port, "/served")
    assert r.status == 200, r
    assert [q.path for q in b.requests] == ["/served"], b.requests
    assert b.connections == 1


def test_accept_suspend_resumes_from_timer(weir, backend):
    """An accept handler that suspends and is resumed by a timer: the connection
    is then served (the backend sees the context the resumed chain marked);
    resumed with WEIR_ERROR instead, the connection is refused silently."""
    b = backend()
    w, (plain, delayed, delayed_refuse) = _start(weir, b.addr, [
        {"name": "plain"},
        {"name": "delayed", "conntest_accept_delay": "150ms"},
        {"name": "delayed_refuse", "conntest_accept_delay": "100ms", "conntest_refuse": True}])
    h = _seen(get(delayed, "/echo"))
    assert h.get("X-Conn-Resumed") == "1", h
    assert h.get("X-Conn-Listener") == "delayed", h
    h = _seen(get(plain, "/echo"))
    assert h.get("X-Conn-Resumed") == "0", h
    assert h.get("X-Conn-Listener") == "plain", h

    s = connect(delayed_refuse, OP)
    s.sendall(_request("/never"))
    got, how = _closed_silently(s)
    s.close()
    assert got == b"" and how in ("eof", "reset"), (got, how)
    assert not [q for q in b.requests if q.path == "/never"]

    # keepalive on a resumed connection: two requests, one connection context
    s = connect(delayed, OP)
    rd = Reader(s)
    for n in (1, 2):
        s.sendall(_request("/echo"))
        h = _seen(read_response(rd))
        assert h.get("X-Conn-Requests") == str(n) and h.get("X-Conn-Resumed") == "1", h
    s.close()


# ------------------------------------------------------------------ transport


def _xor_weir(weir, backend):
    b = backend()
    w, (port,) = _start(weir, b.addr, [{"name": "xor", "conntest_xor": KEY}])
    return w, b, port


def _post(s, rd, path, body, close=False):
    s.sendall(_request(path, method="POST", body=body, close=close,
                       headers=[("Content-Type", "application/octet-stream")]))
    r = read_response(rd, "POST")
    doc = r.json()
    assert r.status == 200 and doc["method"] == "POST", r
    assert doc["body_len"] == len(body) and doc["body_sha256"] == sha256(body), doc
    return r


def test_xor_transport_get_keepalive_big_response(weir, backend):
    """The handshake arrives in pieces; "OK\n" comes from output() during the
    handshake, before the client sent any HTTP; then requests on one
    keepalive connection, XORed on the wire both ways: two GETs and a 1 MiB
    response."""
    w, b, port = _xor_weir(weir, backend)
    s, rd = xor_connect(port, pieces=(b"XO", b"R", b"1", b"\n"))
    try:
        s.sendall(_request("/echo/get"))
        r = read_response(rd)
        assert s.raw_head[:5] == xor(b"HTTP/"), s.raw_head   # not plaintext on the wire
        h = _seen(r)
        assert r.json()["path"] == "/echo/get"
        assert h.get("X-Conn-Requests") == "1" and h.get("X-Conn-Listener") == "xor", h

        s.sendall(_request("/echo/again"))
        h = _seen(read_response(rd))
        assert h.get("X-Conn-Requests") == "2", h

        s.sendall(_request("/bytes/%d" % MiB))
        r = read_response(rd)
        assert r.status == 200 and r.complete, r
        assert len(r.body) == MiB and sha256(r.body) == pattern_sha256(MiB)

        s.sendall(_request("/echo/last", close=True))
        r = read_response(rd)
        assert _seen(r).get("X-Conn-Requests") == "4"
        assert rd.read_to_eof() == b""            # closed after Connection: close
    finally:
        s.close()
    # one client connection carried every request
    assert len({q.headers.get("X-Conn-Id") for q in b.requests}) == 1, b.requests
    assert "conntest: xor:" not in w.log(), w.log()


def test_xor_transport_post_1mib(weir, backend):
    w, b, port = _xor_weir(weir, backend)
    s, rd = xor_connect(port)
    try:
        _post(s, rd, "/echo/post", pattern(MiB), close=True)
    finally:
        s.close()
    assert "conntest: xor:" not in w.log(), w.log()


def test_xor_transport_keepalive_after_large_post(weir, backend):
    """A request after a POST whose body took several receives, on the same
    connection: the body's last plaintext buffer must be given back, or the
    core never reads the transport again."""
    w, b, port = _xor_weir(weir, backend)
    s, rd = xor_connect(port)
    try:
        _post(s, rd, "/echo/post", pattern(MiB))
        s.sendall(_request("/echo/after", close=True))
        h = _seen(read_response(rd))
        assert h.get("X-Conn-Requests") == "2", h
    finally:
        s.close()


def test_xor_transport_chunked_response(weir, backend):
    """A chunked 1 MiB response: a send is a chunk-size line, a full receive
    buffer of data and a CRLF, more than the transport's 16 KiB output
    buffer, so write() takes less than offered and the core must drain
    output() before it writes the rest."""
    w, b, port = _xor_weir(weir, backend)
    s, rd = xor_connect(port)
    try:
        s.sendall(_request("/chunked/%d" % MiB, close=True))
        r = read_response(rd)
        assert r.status == 200 and r.complete, (r, w.log()[-2000:])
        assert len(r.body) == MiB and sha256(r.body) == pattern_sha256(MiB)
    finally:
        s.close()
    assert "conntest: xor:" not in w.log(), w.log()


def test_xor_handshake_with_request_in_the_same_segment(weir, backend):
    """The handshake and the first (XORed) request in one send: input() keeps
    what follows the handshake for read()."""
    b = backend()
    w, (port,) = _start(weir, b.addr, [{"conntest_xor": KEY}])
    s = connect(port, OP)
    try:
        s.sendall(b"XOR1\n" + xor(_request("/echo/pipelined")) + xor(_request("/echo/second")))
        assert _recv_exact(s, 3) == b"OK\n"
        xs = XorSock(s)
        rd = Reader(xs)
        assert read_response(rd).json()["path"] == "/echo/pipelined"
        assert read_response(rd).json()["path"] == "/echo/second"
    finally:
        s.close()


@pytest.mark.parametrize("hello", [b"NOPE\n", b"XOR2\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"])
def test_xor_bad_handshake_closes(weir, backend, hello):
    """A wrong handshake (or plain HTTP to the XOR listener) closes the
    connection with nothing sent and nothing forwarded."""
    b = backend()
    w, (port,) = _start(weir, b.addr, [{"conntest_xor": KEY}])
    s = connect(port, OP)
    try:
        s.sendall(hello)
        got, how = _closed_silently(s)
    finally:
        s.close()
    assert got == b"" and how in ("eof", "reset"), (got, how)
    assert b.requests == [] and b.connections == 0
    # the listener still works for a good client
    s, rd = xor_connect(port)
    s.sendall(_request("/echo/ok", close=True))
    assert read_response(rd).status == 200
    s.close()


# ------------------------------------------------------------------ addresses


def test_set_addresses_seen_as_remote_addr(weir, backend):
    b = backend()
    w, (plain, fixed) = _start(weir, b.addr, [{}, {"conntest_addr": "192.0.2.1:4242"}],
                               request_headers={"set": {"X-Addr": "$remote_addr",
                                                        "X-Port": "$remote_port"}})
    h = _seen(get(fixed, "/echo"))
    assert h.get("X-Addr") == "192.0.2.1" and h.get("X-Port") == "4242", h
    h = _seen(get(plain, "/echo"))
    assert h.get("X-Addr") == "127.0.0.1" and h.get("X-Port") not in (None, "4242"), h


# ------------------------------------------------- context, id and cleanup


def test_connection_context_counts_requests_and_id_matches_variable(weir, backend):
    b = backend()
    w, (port,) = _start(weir, b.addr, [{}], request_headers={
        "set": {"X-Var-Connection": "$connection", "X-Var-Requests": "$connection_requests"}})
    ids = []
    for _ in range(2):
        s = connect(port, OP)
        rd = Reader(s)
        for n in (1, 2):
            s.sendall(_request("/echo"))
            h = _seen(read_response(rd))
            assert h.get("X-Conn-Requests") == str(n), h
            assert h.get("X-Var-Requests") == str(n), h
            assert h.get("X-Conn-Id") == h.get("X-Var-Connection"), h
            ids.append(h.get("X-Conn-Id"))
        s.close()
    assert ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2], ids


def _counters(port):
    r = get(port, "/conntest/cleanups")
    assert r.status == 200, r
    kv = dict(p.split("=") for p in r.body.decode().split())
    return int(kv["accepted"]), int(kv["cleanups"])


def test_cleanups_run_for_closed_connections(weir, backend):
    """Every accepted connection's cleanup runs once it is freed: served ones,
    keepalive ones, refused ones, XOR ones. The answer to the query itself
    comes on a connection still open, so all closed ones are counted when
    cleanups == accepted - 1."""
    b = backend()
    w, (port, shut, xport) = _start(weir, b.addr, [{}, {"conntest_refuse": True},
                                                   {"conntest_xor": KEY}])
    a0, c0 = _counters(port)     # the harness's readiness probe may be counted
    assert a0 >= 1 and c0 <= a0 - 1, (a0, c0)
    for _ in range(3):
        s = connect(port, OP)
        rd = Reader(s)
        for _ in range(2):
            s.sendall(_request("/echo"))
            assert read_response(rd).status == 200
        s.close()
    s = connect(shut, OP)
    s.sendall(_request("/x"))
    _closed_silently(s)
    s.close()
    s, rd = xor_connect(xport)
    s.sendall(_request("/echo"))
    assert read_response(rd).status == 200
    s.close()

    last = []

    def settled():
        a, c = _counters(port)
        last[:] = [a, c]
        return c == a - 1
    assert wait_for(settled, timeout=8, interval=0.1), last
    # the 5 connections above, the first query, and every poll but the last
    assert last[0] >= 7, last


def test_reload_keeps_the_zone(weir, backend):
    """weir_shm_zone_created: 1 when the zone is new (the module zeroes it), 0
    when a reload carries it over (the counts go on)."""
    b = backend()
    w, (port,) = _start(weir, b.addr, [{}])
    for i in range(3):
        assert get(port, "/echo").status == 200
    a1, _ = _counters(port)
    assert a1 >= 4
    assert w.log().count("conntest: counters zone created") == 1, w.log()
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: generation 2 started" in w.log(), OP), w.log()
    assert "conntest: counters zone carried over" in w.log(), w.log()
    assert w.log().count("conntest: counters zone created") == 1, w.log()
    # one query after the reload (each query is a connection more): the count
    # went on from where it was, it was not zeroed
    a2, c2 = _counters(port)
    assert a2 > a1 and c2 < a2, (a1, a2, c2)


# -------------------------------------------------------- listener iteration


def test_conf_done_lists_listeners(weir, backend):
    b = backend()
    w, (p1, p2) = _start(weir, b.addr, [{"name": "alpha"}, {}])
    log = w.log()
    assert "conntest: listener alpha (1 of 2" in log, log
    assert "conntest: listener 127.0.0.1:%d (2 of 2" % p2 in log, log


# ------------------------------------------- upstream_connect and pool key


class PreambleOrigin(RawUpstream):
    """Every connection must start with the preamble, then carries keepalive
    requests answered "conn=<id>". Records per connection the X-Tenant values
    it saw."""

    def __init__(self, preamble):
        self.preamble = preamble
        self.tenants = {}
        super().__init__(timeout=OP)

    def serve(self, s, rd, cid):
        with self.lock:
            self.tenants[cid] = []
        first = rd.read_exact(len(self.preamble))
        if first != self.preamble:
            self.errors.append("conn %d began with %r" % (cid, first + bytes(rd.buf[:40])))
            return
        while True:
            head = rd.read_until(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            hs = Headers(parse_headers(lines[1:]))
            if hs.get("content-length"):
                rd.read_exact(int(hs.get("content-length")))
            with self.lock:
                self.tenants[cid].append(hs.get("X-Tenant"))
            body = b"conn=%d" % cid
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def test_preamble_and_pool_key(weir):
    keyed = PreambleOrigin(b"HELLO\n")
    shared = PreambleOrigin(b"HELLO\n")
    try:
        w, (port,) = _start(weir, None, [{}], upstreams={
            "keyed": {"servers": [keyed.addr], "conntest_preamble": "HELLO\n",
                      "conntest_pool_by_header": "X-Tenant"},
            "shared": {"servers": [shared.addr], "conntest_preamble": "HELLO\n"},
        }, routes=[{"path": "/k/", "upstream": "keyed"}, {"path": "/s/", "upstream": "shared"}])
        seq = ["A", "B", "A", "B", "A", "A", "B", ""]
        for i, t in enumerate(seq):
            hs = [("X-Tenant", t)] if t else []
            r = get(port, "/k/%d" % i, headers=hs)
            assert r.status == 200, r
            r = get(port, "/s/%d" % i, headers=hs)
            assert r.status == 200, r
        assert keyed.errors == [] and shared.errors == [], (keyed.errors, shared.errors)
        # keyed by tenant: one origin connection per value (no header is the
        # empty key), never shared across values, reused for the same value
        with keyed.lock:
            per_conn = {cid: list(ts) for cid, ts in keyed.tenants.items()}
        assert keyed.connections == 3, per_conn
        for cid, ts in per_conn.items():
            assert len(set(ts)) == 1, per_conn
        assert sorted(ts[0] or "" for ts in per_conn.values()) == ["", "A", "B"], per_conn
        assert sorted(len(ts) for ts in per_conn.values()) == [1, 3, 4], per_conn
        # without a key: one connection for everything (so the count above is
        # the key's doing), and it began with the preamble too
        assert shared.connections == 1, shared.tenants
        assert len(shared.tenants[1]) == len(seq)
        assert "BUG" not in w.log(), w.log()
    finally:
        keyed.stop()
        shared.stop()
