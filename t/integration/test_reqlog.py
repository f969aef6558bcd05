"""Error-log lines about a request name it, as nginx's "client: ..., request: ..."
do (README "Error log lines"): the client's address and port, the request id the
access log shows for the same request, the route, the upstream with the server
tried, and the request line, quoted with its control characters and quotes
escaped and cut at 256 bytes. Lines about a connection without a request carry
the client only. Modules get the same through weir_request_log and
weir_connection_log (test module reqlog_probe)."""
import os
import re
import socket
import time

import pytest

from conftest import Reader, free_port, read_response, test_module_path, wait_for
from test_h2 import H2Conn
from tlspki import Pki

ACCESS_FORMAT = "$remote_port $request_id $status"

# The context after a message; fields not known yet are left out.
CONTEXT = re.compile(
    r", client: (?P<client>\S+?)"
    r"(?:, request_id: (?P<id>[0-9a-f]{32}))?"
    r"(?:, route: (?P<route>[^,]+))?"
    r"(?:, upstream: (?P<upstream>[^ ,]+)(?: \((?P<peer>[^)]+)\))?)?"
    r"(?:, request: \"(?P<request>(?:[^\"\\]|\\.)*)\")?$")


def _dead():
    return "127.0.0.1:%d" % free_port()


def _start(weir, tmp_path, servers, listener=None, limits=None, modules=(), **upstream):
    """weir with route "api" to upstream "app" (servers), an access log with
    $remote_port $request_id $status, and the probe module."""
    w = weir()
    w.access_path = str(tmp_path / "access.log")
    ups = {"app": dict({"servers": servers, "retries": 0, "max_fails": 0}, **upstream)}
    w.start(w.config(upstreams=ups, routes=[{"name": "api", "path": "/", "upstream": "app"}],
                     modules=["router", "lb_roundrobin", "accesslog", *modules,
                              {"name": "reqlog_probe", "path": test_module_path("reqlog_probe")}],
                     listener=listener, limits=limits,
                     access_log={"path": w.access_path, "format": ACCESS_FORMAT,
                                 "flush": "50ms"}))
    return w


def _send(w, data, timeout=10.0):
    """data on a new connection; (status or None, the client's port)."""
    s = socket.create_connection(("127.0.0.1", w.port), timeout=timeout)
    port = s.getsockname()[1]
    try:
        s.sendall(data)
        try:
            r = read_response(Reader(s))
        except Exception:
            r = None
        return (r.status if r is not None else None), port
    finally:
        s.close()


def _access(w, port):
    """(request id, status) of the access log line of the client port."""
    def line():
        try:
            with open(w.access_path) as f:
                for ln in f:
                    p, rid, st = ln.split()
                    if int(p) == port:
                        return rid, int(st)
        except FileNotFoundError:
            pass
        return None
    got = wait_for(line, 5)
    assert got, "no access log line for client port %d" % port
    return got


def _line(w, text, port, mark=0):
    """The error-log line with text, about client port `port`, parsed."""
    def find():
        for ln in w.log()[mark:].splitlines():
            if text in ln and ", client: 127.0.0.1:%d" % port in ln:
                return ln
        return None
    ln = wait_for(find, 5)
    assert ln, "no line with %r for client port %d in:\n%s" % (text, port, w.log()[mark:])
    m = CONTEXT.search(ln)
    assert m, "no request context at the end of %r" % ln
    # the message text before the context is what it always was
    assert ln.index(text) < m.start(), ln
    return m


def _request_context(m, port, rid, route="api", upstream="app", peer=None, request=None):
    assert m.group("client") == "127.0.0.1:%d" % port, m.group(0)
    assert m.group("id") == rid, m.group(0)
    assert m.group("route") == route, m.group(0)
    assert m.group("upstream") == upstream, m.group(0)
    assert m.group("peer") == peer, m.group(0)
    assert m.group("request") == request, m.group(0)


@pytest.mark.parametrize("target, shown", [
    ("/p?q=1", "/p?q=1"),
    # weir forwards a '"' in a target, as nginx does; the line escapes it
    ('/q"x', '/q\\"x'),
])
def test_502_refused_upstream(weir, tmp_path, target, shown):
    dead = _dead()
    w = _start(weir, tmp_path, [dead])
    st, port = _send(w, b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
                     % target.encode())
    assert st == 502
    rid, ast = _access(w, port)
    assert ast == 502
    m = _line(w, "upstream app (%s): connect() failed" % dead, port)
    _request_context(m, port, rid, peer=dead, request="GET %s HTTP/1.1" % shown)


def test_504_read_timeout(weir, backend, tmp_path):
    b = backend()
    w = _start(weir, tmp_path, [b.addr], read_timeout="500ms")
    st, port = _send(w, b"GET /delay/4000 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert st == 504
    rid, ast = _access(w, port)
    assert ast == 504
    m = _line(w, "upstream app (%s): read_timeout waiting for the response head" % b.addr, port)
    _request_context(m, port, rid, peer=b.addr, request="GET /delay/4000 HTTP/1.1")


def test_400_malformed_request_has_no_route(weir, tmp_path):
    w = _start(weir, tmp_path, [_dead()])
    st, port = _send(w, b"GET /x?y HTTP/1.1\r\nHost: a.test\r\nBad Header: v\r\n\r\n")
    assert st == 400
    rid, ast = _access(w, port)
    assert ast == 400
    m = _line(w, "request", port)
    # the head could not be parsed: its first line as received
    _request_context(m, port, rid, route=None, upstream=None, request="GET /x?y HTTP/1.1")


def test_request_line_is_escaped(weir, tmp_path):
    """A quote, a backslash and a control character in the target: the head is
    refused (400), and the line shows them escaped, one line still."""
    w = _start(weir, tmp_path, [_dead()])
    st, port = _send(w, b'GET /a"b\\c\x01d\x7f HTTP/1.1\r\nHost: a.test\r\n\r\n')
    assert st == 400
    rid, _ = _access(w, port)
    m = _line(w, "request", port)
    _request_context(m, port, rid, route=None, upstream=None,
                     request='GET /a\\"b\\\\c\\x01d\\x7f HTTP/1.1')


def test_long_target_is_cut(weir, tmp_path):
    dead = _dead()
    w = _start(weir, tmp_path, [dead], limits={"max_header_size": "16k"})
    target = "/" + "a" * 3999
    st, port = _send(w, ("GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
                         % target).encode())
    assert st == 502
    rid, _ = _access(w, port)
    m = _line(w, "connect() failed", port)
    full = "GET %s HTTP/1.1" % target
    _request_context(m, port, rid, peer=dead, request=full[:256] + "...")
    ln = m.string
    assert len(ln) < 1200, len(ln)


def test_http2_stream_error(weir, tmp_path):
    """A 502 on an HTTP/2 stream: the request line is $request's, HTTP/2.0."""
    dead = _dead()
    w = _start(weir, tmp_path, [dead], listener={"http2": True})
    c = H2Conn(w.port)
    port = c.sock.getsockname()[1]
    try:
        sid = c.request("/h2?x=1", authority="a.test")
        st = c.response(sid)
        assert st.status == 502, st
    finally:
        c.close()
    rid, ast = _access(w, port)
    assert ast == 502
    m = _line(w, "upstream app (%s): connect() failed" % dead, port)
    _request_context(m, port, rid, peer=dead, request="GET /h2?x=1 HTTP/2.0")


def test_http2_stream_timeout_names_its_request(weir, backend, tmp_path):
    """client_body_timeout on one stream (a body promised, never sent): the
    stream's line names the request, and the access log has its 408."""
    b = backend()
    w = _start(weir, tmp_path, [b.addr], listener={"http2": True},
               limits={"client_body_timeout": "500ms"})
    c = H2Conn(w.port)
    port = c.sock.getsockname()[1]
    try:
        sid = c.request("/up", method="POST", headers=[("content-length", "10")],
                        authority="a.test", end_stream=False)
        m = _line(w, "stream %d: client_body_timeout" % sid, port)
        st = c.response(sid)
    finally:
        c.close()
    rid, ast = _access(w, port)
    assert st.status == ast == 408, st
    # the phases wait for the body a head promised: not routed yet
    _request_context(m, port, rid, route=None, upstream=None, request="POST /up HTTP/2.0")


def test_connection_without_request_has_client_only(weir, tmp_path):
    """client_header_timeout on an HTTP/2 connection that sent no request:
    the line ends with the client, nothing else."""
    w = _start(weir, tmp_path, [_dead()], listener={"http2": True},
               limits={"client_header_timeout": "500ms"})
    c = H2Conn(w.port)
    port = c.sock.getsockname()[1]
    try:
        m = _line(w, "client_header_timeout", port)
    finally:
        c.close()
    assert m.group(0) == ", client: 127.0.0.1:%d" % port, m.group(0)


def test_tls_handshake_failure_has_client_only(weir, tmp_path):
    """Module tls logs a failed handshake through weir_connection_log."""
    pki = Pki(tmp_path)
    leaf = pki.leaf(pki.ca("reqlog CA"), "a.test", sans=["DNS:a.test"])
    tls = {"certificates": [{"cert": os.path.basename(leaf.cert),
                             "key": os.path.basename(leaf.key)}]}
    w = _start(weir, tmp_path, [_dead()], listener={"tls": tls}, modules=["tls"])
    s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
    port = s.getsockname()[1]
    try:
        # a handshake record whose ClientHello is empty
        s.sendall(b"\x16\x03\x01\x00\x04\x01\x00\x00\x00")
        m = _line(w, "TLS handshake failed", port)
    finally:
        s.close()
    assert m.group(0) == ", client: 127.0.0.1:%d" % port, m.group(0)


def test_module_lines_through_weir_request_log(weir, backend, tmp_path):
    b = backend()
    w = _start(weir, tmp_path, [b.addr])
    st, port = _send(w, b"GET /echo?m=1 HTTP/1.1\r\nHost: a.test\r\nX-Probe: 1\r\n"
                        b"Connection: close\r\n\r\n")
    assert st == 200
    rid, _ = _access(w, port)
    # before routing: no route, no upstream
    m = _line(w, "reqlog_probe: probe: before routing", port)
    _request_context(m, port, rid, route=None, upstream=None, request="GET /echo?m=1 HTTP/1.1")
    # once a server was picked: all of it
    m = _line(w, "reqlog_probe: probe: upstream request", port)
    _request_context(m, port, rid, peer=b.addr, request="GET /echo?m=1 HTTP/1.1")
    # a connection's line, and the accept phase's stub request: the client only
    for text in ("reqlog_probe: probe: connection", "reqlog_probe: probe: accept"):
        m = _line(w, text, port)
        assert m.group(0) == ", client: 127.0.0.1:%d" % port, m.group(0)


def test_filtered_level_writes_nothing(weir, backend, tmp_path):
    """error_log level warn: the probe's notice lines are not written."""
    b = backend()
    w = weir()
    w.access_path = str(tmp_path / "access.log")
    cfg = w.config(upstreams={"app": {"servers": [b.addr]}},
                   routes=[{"name": "api", "path": "/", "upstream": "app"}],
                   modules=["router", "lb_roundrobin", {"name": "reqlog_probe",
                                                        "path": test_module_path("reqlog_probe")}])
    cfg["error_log"] = {"path": "stderr", "level": "warn"}
    w.start(cfg)
    st, port = _send(w, b"GET /echo HTTP/1.1\r\nHost: a.test\r\nX-Probe: 1\r\n"
                        b"Connection: close\r\n\r\n")
    assert st == 200
    time.sleep(0.3)
    assert "probe:" not in w.log(), w.log()
