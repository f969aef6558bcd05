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

import os
import resource
import socket
import subprocess
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
