"""Lingering close (SPEC §6: "When weir answers while the client is still
sending (431, 413, 400), it lingers: it shuts its write side and reads and
discards for a bounded time, so the client reads the status instead of a
reset").

The client here is the naive one the rule is for: it writes the whole request
with one sendall, and only then reads. Each request carries several MiB
after the point where weir decides to answer, far more than the socket
buffers hold (the client's SO_SNDBUF is pinned to 64 KiB), so a proxy that
answers and close()s at once leaves unread bytes behind: the kernel answers
them with a reset and the client's sendall fails with ECONNRESET (seen with
the weir of before lingering, and with nginx under `lingering_close off`; on
Linux the answer that had already arrived may still be readable, but the
upload failed, which is what a naive client reports). With lingering the
sendall completes, the client reads the whole error response, then a clean
EOF; and weir does let go of the connection: once the client closes its
side, and also, bounded, when a client neither sends nor closes (that test
allows weir 11 s of lingering on a silent client).

Every socket operation has a timeout; nothing here asserts a duration."""

import socket

import pytest

from conftest import Reader, read_response, simple_proxy, wait_for

MiB = 1 << 20
OP = 10.0
TRAILING = 8 * MiB       # bytes the client still sends after weir's decision


def _tcp_entry(server_port, client_port):
    """/proc/net/tcp's line for weir's end of the connection, or None."""
    local = "0100007F:%04X" % server_port
    remote = "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[1] == local and p[2] == remote:
                return p
    return None


def _held_by_weir(server_port, client_port):
    """True while some process still has weir's end of the connection open: the
    socket is listed with an inode (an orphan, closed by its owner, has 0)."""
    p = _tcp_entry(server_port, client_port)
    return p is not None and p[9] != "0"


def _send_all_then_read(port, data, sndbuf=65536):
    """The naive client. Returns (socket, reader, response, send_error)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    s.settimeout(OP)
    s.connect(("127.0.0.1", port))
    send_error = None
    try:
        s.sendall(data)
    except (ConnectionResetError, BrokenPipeError) as e:
        send_error = e
    rd = Reader(s)
    try:
        r = read_response(rd, data.split(b" ", 1)[0].decode())
    except Exception as e:       # noqa: BLE001 - reported by the caller's asserts
        r = e
    return s, rd, r, send_error


def _check_answer(port, data, status, release="client-closes"):
    s, rd, r, send_error = _send_all_then_read(port, data)
    client_port = s.getsockname()[1]
    try:
        assert send_error is None, "the upload was reset: %r (response %r)" % (send_error, r)
        assert not isinstance(r, Exception) and r is not None, "no response: %r" % (r,)
        assert r.status == status, r
        assert r.complete, "the %d was cut short: %r" % (status, r)
        assert not rd.reset, "the connection was reset after the %d" % status
        # weir shut its write side after the answer: a clean EOF, not a reset
        tail = rd.read_to_eof()
        assert not rd.reset, "the connection was reset after the %d" % status
        assert tail == b"", tail[:200]
        if release == "client-closes":
            s.shutdown(socket.SHUT_WR)
            assert wait_for(lambda: not _held_by_weir(port, client_port), OP), \
                "weir kept the connection after the client closed its side"
        else:
            # the client neither sends nor closes: weir's lingering is bounded
            assert wait_for(lambda: not _held_by_weir(port, client_port), 11), \
                "weir kept lingering on a silent client"
    finally:
        s.close()
    return r


def _fill_headers(total):
    """Header lines of about `total` bytes."""
    out, n, i = [], 0, 0
    while n < total:
        ln = b"X-Fill-%03d: %s\r\n" % (i, b"f" * 990)
        out.append(ln)
        n += len(ln)
        i += 1
    return b"".join(out)


def test_431_header_block_then_body(weir, backend):
    """A 70 KB header block (max_header_size 64k), and the body it announces."""
    b = backend()
    w = simple_proxy(weir, b, limits={"max_header_size": "64k"})
    head = (b"POST /big-head HTTP/1.1\r\nHost: linger.test\r\nContent-Length: %d\r\n" % TRAILING
            + _fill_headers(70 * 1000) + b"\r\n")
    assert 70000 <= len(head) < 72000
    _check_answer(w.port, head + b"b" * TRAILING, 431)
    assert b.requests == [], "the oversized request was forwarded"


def test_413_content_length_over_max_body_size(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, limits={"max_body_size": "1m"})
    req = (b"POST /upload HTTP/1.1\r\nHost: linger.test\r\nContent-Length: %d\r\n\r\n" % TRAILING
           + b"u" * TRAILING)
    _check_answer(w.port, req, 413)
    assert b.complete_requests() == [], "the oversized body was forwarded"


def test_413_silent_client_is_closed_after_lingering(weir, backend):
    """After the 413 the client neither sends more nor closes: weir closes
    the connection itself when its lingering time is up."""
    b = backend()
    w = simple_proxy(weir, b, limits={"max_body_size": "1m"})
    req = (b"POST /upload HTTP/1.1\r\nHost: linger.test\r\nContent-Length: %d\r\n\r\n" % TRAILING
           + b"u" * TRAILING)
    _check_answer(w.port, req, 413, release="weir-closes")


def test_413_chunked_over_max_body_size(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, limits={"max_body_size": "1m"})
    chunk = b"c" * 65536
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(TRAILING // len(chunk)))
    req = (b"POST /upload HTTP/1.1\r\nHost: linger.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           + body + b"0\r\n\r\n")
    _check_answer(w.port, req, 413)
    assert b.complete_requests() == [], "the oversized body reached the upstream in full"


def test_400_bad_chunk_size_then_more_bytes(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    req = (b"POST /chunks HTTP/1.1\r\nHost: linger.test\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\nzz\r\n" + b"z" * TRAILING)
    _check_answer(w.port, req, 400)
    assert b.complete_requests() == [], "a request with a bad chunk completed upstream"


def test_weir_still_serves_after_lingering(weir, backend):
    """Lingering connections do not stop the worker from serving others, even
    while one is still being discarded."""
    b = backend()
    w = simple_proxy(weir, b, limits={"max_body_size": "1m"})
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(OP)
    s.connect(("127.0.0.1", w.port))
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: linger.test\r\nContent-Length: %d\r\n\r\n" % TRAILING
              + b"u" * MiB)        # and then nothing more for now
    rd = Reader(s)
    r = read_response(rd)
    assert r is not None and r.status == 413, r
    for _ in range(3):
        s2 = socket.create_connection(("127.0.0.1", w.port), timeout=OP)
        s2.sendall(b"GET /ok HTTP/1.1\r\nHost: linger.test\r\nConnection: close\r\n\r\n")
        r2 = read_response(Reader(s2))
        s2.close()
        assert r2 is not None and r2.status == 200, r2
    try:
        s.sendall(b"u" * MiB)       # the lingering connection still takes bytes
    except (ConnectionResetError, BrokenPipeError) as e:
        pytest.fail("the lingering connection was reset: %r" % e)
    assert rd.read_to_eof() == b"" and not rd.reset
    s.close()
