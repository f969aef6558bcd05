"""Listener address families (SPEC §4: host:port, [v6]:port, unix:/path) and
the request-body limit (limits.max_body_size → 413, nothing forwarded)."""
import os
import socket

import pytest

from conftest import Reader, free_port, get, raw_request, read_response, simple_proxy


def _ipv6_loopback():
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        s.bind(("::1", 0))
        s.close()
        return True
    except OSError:
        return False


def test_ipv6_and_unix_listeners(weir, backend, tmp_path):
    b = backend()
    w = weir()
    port = free_port()
    path = os.path.join(str(tmp_path), "weir.sock")
    listeners = [{"address": "127.0.0.1:%d" % port}, {"address": "unix:" + path}]
    v6 = _ipv6_loopback()
    if v6:
        v6port = free_port()
        listeners.append({"address": "[::1]:%d" % v6port})
    cfg = w.config(upstreams={"b": {"servers": [b.addr]}}, routes=[{"path": "/", "upstream": "b"}],
                   port=port)
    cfg["listeners"] = listeners
    w.start(cfg)
    assert get(port, "/v4").status == 200
    # unix socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(b"GET /unix HTTP/1.1\r\nHost: u\r\nConnection: close\r\n\r\n")
    r = read_response(Reader(s))
    assert r.status == 200, r
    assert any(q.path == "/unix" for q in b.requests)
    if v6:
        s6 = socket.create_connection(("::1", v6port), timeout=5)
        s6.sendall(b"GET /v6 HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n")
        r6 = read_response(Reader(s6))
        assert r6.status == 200, r6
        assert any(q.path == "/v6" for q in b.requests)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_max_body_size_413_not_forwarded(weir, backend, framing):
    b = backend()
    w = simple_proxy(weir, b, limits={"max_body_size": 100})
    body = b"x" * 1000
    if framing == "content-length":
        req = b"POST /big HTTP/1.1\r\nHost: l\r\nContent-Length: 1000\r\n\r\n" + body
    else:
        req = (b"POST /big HTTP/1.1\r\nHost: l\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3e8\r\n" + body + b"\r\n0\r\n\r\n")
    r = raw_request(w.port, req)
    assert r.status == 413, r
    # a complete oversized request must never reach the backend
    assert not [q for q in b.requests if q.path == "/big" and q.complete], b.requests
    # under the limit still works
    ok = raw_request(w.port, b"POST /small HTTP/1.1\r\nHost: l\r\nContent-Length: 5\r\n"
                     b"Connection: close\r\n\r\nhello")
    assert ok.status == 200, ok
