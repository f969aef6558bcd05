"""Basic proxying: GET/POST, headers, Host, hop-by-hop removal, upstream keepalive,
HEAD, HTTP/1.0 clients, pipelining, absolute-form, Expect: 100-continue (SPEC §6)."""

import http.client
import json
import re
import time

import pytest

from conftest import (Reader, connect, get, is_closed, pattern, pattern_sha256, raw_request,
                      read_response, sha256, simple_proxy)


def _names(headers):
    return [n.lower() for n, _ in headers]


def test_get_passes_method_path_query_headers_and_host(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    r = get(w.port, "/echo/x?a=1&b=two", host="app.example.test:8080",
            headers=[("X-Test", "hello"), ("Accept", "*/*"), ("X-Multi", "1"), ("X-Multi", "2")])
    assert r.status == 200, r
    assert r.complete
    doc = r.json()
    assert doc["method"] == "GET"
    assert doc["path"] == "/echo/x"
    assert doc["query"] == "a=1&b=two"
    assert doc["version"] == "HTTP/1.1"          # upstream requests are HTTP/1.1
    hs = [(n.lower(), v) for n, v in doc["headers"]]
    assert ("x-test", "hello") in hs
    assert ("accept", "*/*") in hs
    # repeated headers keep their order
    assert [v for n, v in hs if n == "x-multi"] == ["1", "2"]
    # the client's Host is passed through unchanged, exactly once
    assert [v for n, v in hs if n == "host"] == ["app.example.test:8080"]
    assert len(b.requests) == 1


def test_post_body_content_length(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    body = pattern(1000)
    r = get(w.port, "/echo", method="POST", body=body, headers=[("Content-Type", "x/y")])
    assert r.status == 200, r
    doc = r.json()
    assert doc["method"] == "POST"
    assert doc["body_len"] == 1000
    assert doc["body_sha256"] == sha256(body)
    req = b.requests[0]
    # weir frames the body itself: one Content-Length or chunked, never both
    assert not (req.headers.has("content-length") and req.headers.has("transfer-encoding"))
    if req.framing == "content-length":
        assert req.headers.get_all("content-length") == ["1000"]
    assert ("content-type", "x/y") in [(n.lower(), v) for n, v in doc["headers"]]


def test_empty_post(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    r = get(w.port, "/echo", method="POST", body=b"")
    assert r.status == 200, r
    assert r.json()["body_len"] == 0


def test_hop_by_hop_headers_removed_both_ways(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    req = (b"GET /hop HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n"
           b"Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
           b"Trailer: X-T\r\nX-Stay: yes\r\n\r\n")
    s = connect(w.port)
    s.sendall(req)
    r = read_response(Reader(s))
    s.close()
    assert r.status == 200, r
    got = _names(r.json()["headers"])
    for h in ("x-hop", "keep-alive", "proxy-connection", "te", "trailer"):
        assert h not in got, "hop-by-hop %s forwarded upstream: %r" % (h, got)
    assert "x-stay" in got
    # the connection header upstream, if any, is weir's own and names nothing of the client's
    for v in [v for n, v in r.json()["headers"] if n.lower() == "connection"]:
        assert "x-hop" not in v.lower()
    # response side: backend sent Connection: X-BHop, X-BHop, Keep-Alive
    rn = _names(r.headers)
    assert "x-bhop" not in rn
    assert "keep-alive" not in rn or r.headers.get("keep-alive") != "timeout=5"
    assert r.headers.get("x-kept") == "yes"


def test_keepalive_reuses_upstream_connection(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    c = http.client.HTTPConnection("127.0.0.1", w.port, timeout=10)
    for i in range(50):
        c.request("GET", "/echo?i=%d" % i, headers={"Host": "ka.test"})
        r = c.getresponse()
        data = r.read()
        assert r.status == 200
        assert json.loads(data)["query"] == "i=%d" % i
    c.close()
    assert len(b.requests) == 50
    # SPEC §6: per-worker keepalive pool per upstream.  One worker, sequential
    # requests and a keepalive backend: the same upstream connection is reused.
    # Ideally exactly 1; 2 tolerates a release racing the next request once.
    assert b.connections <= 2, "50 sequential requests used %d upstream connections" % b.connections


def test_client_keepalive_many_requests_one_connection(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    rd = Reader(s)
    for i in range(20):
        s.sendall(b"GET /echo?k=%d HTTP/1.1\r\nHost: k\r\n\r\n" % i)
        r = read_response(rd)
        assert r is not None and r.status == 200, r
        assert r.json()["query"] == "k=%d" % i
    s.close()


@pytest.mark.parametrize("path", ["/echo", "/nosuchroute"])
def test_keepalive_requests_last_response_says_close(weir, backend, path):
    """The response that reaches keepalive_requests says Connection: close
    (proxied and answered by weir alike), then the connection closes: a
    client is never closed under after a response that promised more."""
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/echo", "upstream": "b"}],
                     limits={"keepalive_requests": 3}))
    s = connect(w.port)
    rd = Reader(s)
    for i in range(3):
        s.sendall(b"GET %s HTTP/1.1\r\nHost: k\r\n\r\n" % path.encode())
        r = read_response(rd)
        conn = (r.headers.get("Connection") or "").lower()
        assert conn == ("close" if i == 2 else ""), (i, r)
    s.settimeout(5)
    assert s.recv(1) == b""
    s.close()


def test_head(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    rd = Reader(s)
    s.sendall(b"HEAD /bytes/1000 HTTP/1.1\r\nHost: h\r\n\r\n")
    r = read_response(rd, "HEAD")
    assert r.status == 200, r
    assert r.headers.get("content-length") == "1000"
    assert r.body == b""
    # no body bytes follow: the next response on the same connection parses cleanly
    s.sendall(b"GET /bytes/10 HTTP/1.1\r\nHost: h\r\n\r\n")
    r2 = read_response(rd)
    assert r2.status == 200, r2
    assert r2.body == pattern(10)
    s.close()
    assert b.requests[0].method == "HEAD"


def test_http10_client(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    s.sendall(b"GET /echo?v=10 HTTP/1.0\r\n\r\n")      # no Host: fine in HTTP/1.0
    rd = Reader(s)
    r = read_response(rd)
    assert r.status == 200, r
    assert r.version in ("HTTP/1.0", "HTTP/1.1")
    assert r.json()["query"] == "v=10"
    assert r.headers.get("transfer-encoding") is None
    # no keep-alive asked: weir closes after the response
    assert rd.eof or is_closed(s, rd)
    s.close()


def test_http10_client_gets_unchunked_body(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    s.sendall(b"GET /chunked/100000 HTTP/1.0\r\nHost: h\r\n\r\n")
    rd = Reader(s)
    r = read_response(rd)
    s.close()
    assert r.status == 200, r
    # a 1.0 client cannot receive chunked framing: Content-Length or close-delimited
    assert r.headers.get("transfer-encoding") is None
    assert r.complete
    assert sha256(r.body) == pattern_sha256(100000)


def test_http10_keepalive(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    rd = Reader(s)
    for i in range(3):
        s.sendall(b"GET /bytes/100 HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
        r = read_response(rd)
        assert r.status == 200, r
        assert r.headers.get("content-length") == "100"   # needed to keep a 1.0 connection
        assert r.body == pattern(100)
    s.close()


def test_pipelining_three_requests_one_write(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    body = b"hello pipelined body"
    s.sendall(b"GET /echo?n=1 HTTP/1.1\r\nHost: p\r\n\r\n"
              b"POST /echo?n=2 HTTP/1.1\r\nHost: p\r\nContent-Length: %d\r\n\r\n%s"
              b"GET /echo?n=3 HTTP/1.1\r\nHost: p\r\n\r\n" % (len(body), body))
    rd = Reader(s)
    got = []
    for _ in range(3):
        r = read_response(rd)
        assert r is not None and r.status == 200, r
        got.append(r.json())
    s.close()
    assert [d["query"] for d in got] == ["n=1", "n=2", "n=3"]
    assert got[1]["method"] == "POST" and got[1]["body_sha256"] == sha256(body)


def test_absolute_form_target(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    r = raw_request(w.port, b"GET http://abs.example.test/echo?q=1 HTTP/1.1\r\n"
                            b"Host: abs.example.test\r\nConnection: close\r\n\r\n")
    assert r.status == 200, r
    doc = r.json()
    # re-serialised in origin-form; Host comes from the target
    assert doc["target"] == "/echo?q=1"
    assert [v for n, v in doc["headers"] if n.lower() == "host"] == ["abs.example.test"]


def test_expect_100_continue(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    body = pattern(5000)
    s = connect(w.port)
    s.sendall(b"POST /echo HTTP/1.1\r\nHost: e\r\nExpect: 100-continue\r\n"
              b"Content-Length: %d\r\n\r\n" % len(body))
    # weir answers 100 Continue (or forwards the upstream's); a client may also just
    # send after a pause, as curl does; both are valid, so wait briefly then send.
    s.settimeout(1.5)
    pre = b""
    try:
        pre = s.recv(65536)
    except OSError:
        pass
    s.settimeout(10)
    if pre:
        assert re.match(rb"HTTP/1\.1 100 ", pre), pre
    s.sendall(body)
    rd = Reader(s)
    rd.buf += re.sub(rb"^HTTP/1\.1 100 [^\r]*\r\n(?:[^\r]+\r\n)*\r\n", b"", pre)
    r = read_response(rd)
    assert r.status == 200, r
    assert r.json()["body_sha256"] == sha256(body)
    # the connection stays in sync: a second request works
    s.sendall(b"GET /echo?after=1 HTTP/1.1\r\nHost: e\r\n\r\n")
    r2 = read_response(rd)
    assert r2.status == 200 and r2.json()["query"] == "after=1", r2
    s.close()


def test_response_status_and_headers_relayed(weir, backend):
    b = backend()
    b.on("/teapot", lambda ctx, req: ctx.send(
        b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 3\r\nX-Custom: v\r\n"
        b"Set-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nabc") or True)
    w = simple_proxy(weir, b)
    r = get(w.port, "/teapot")
    assert r.status == 418, r
    assert r.body == b"abc"
    assert r.headers.get("x-custom") == "v"
    assert r.headers.get_all("set-cookie") == ["a=1", "b=2"]


def test_many_connections_sequential(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    t0 = time.monotonic()
    for i in range(100):
        r = get(w.port, "/id")
        assert r.status == 200 and r.body == b"b1", r
    assert time.monotonic() - t0 < 60
