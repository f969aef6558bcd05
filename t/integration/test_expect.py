"""Expect: 100-continue (SPEC §6): weir answers 100 Continue itself when it
starts reading the body, forwards the body without Expect, and the
connection stays in sync for the next request."""
from conftest import Reader, connect, read_response, simple_proxy


def test_expect_100_continue(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port, timeout=5)
    rd = Reader(s)
    s.sendall(b"POST /exp HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n"
              b"Expect: 100-continue\r\n\r\n")
    # the client sends nothing more until it sees the interim response
    interim = rd.read_until(b"\r\n\r\n")
    assert interim.startswith(b"HTTP/1.1 100"), interim
    s.sendall(b"hello")
    r = read_response(rd, "POST")
    assert r.status == 200, r
    q = [x for x in b.requests if x.path == "/exp"]
    assert len(q) == 1 and q[0].body == b"hello" and q[0].complete, q
    assert not q[0].headers.has("Expect"), q[0]
    # same connection, next request: no stray bytes left by the 100
    s.sendall(b"GET /after HTTP/1.1\r\nHost: e\r\n\r\n")
    r2 = read_response(rd)
    assert r2.status == 200, r2


def test_expect_with_body_already_sent(weir, backend):
    """A client that does not wait (body in the same packet) gets no 100."""
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port, timeout=5)
    rd = Reader(s)
    s.sendall(b"POST /exp2 HTTP/1.1\r\nHost: e\r\nContent-Length: 5\r\n"
              b"Expect: 100-continue\r\n\r\nhello")
    r = read_response(rd, "POST")
    assert r.status == 200, r
    q = [x for x in b.requests if x.path == "/exp2"]
    assert len(q) == 1 and q[0].body == b"hello"
