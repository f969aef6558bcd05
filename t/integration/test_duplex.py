"""The proxy is full duplex (SPEC §6: "an upstream's answer is read as soon as
the request head is sent, so an early answer (413, 401) reaches the client
during an upload"), and an HTTP/1.1 `Upgrade: h2c` is dropped, not refused.

RawUpstream (conftest) is a raw-socket origin whose per-connection script decides
when to read and when to answer (the conftest Backend reads a whole request
before it answers, which is what these tests must not depend on).

Every socket operation has a timeout; nothing here asserts a duration."""

import select
import socket
import threading

from conftest import (Eof, RawUpstream, Reader, connect, parse_headers, read_response,
                      shutdown_server, simple_proxy, wait_for)

MiB = 1 << 20
OP = 10.0


def _read_head(rd):
    head = rd.read_until(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    method, target, _ = lines[0].decode("latin-1").split(" ", 2)
    hs = {k.lower(): v for k, v in parse_headers(lines[1:])}
    return method, target, hs


def _answer_plain(sock, rd, hs, cid):
    """Read the body a request announces and answer 200 'conn=<id>'."""
    if "content-length" in hs:
        rd.read_exact(int(hs["content-length"]))
    body = b"conn=%d" % cid
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


# ---------------------------------------------------------------- early answer


EARLY_BODY = b"upload refused early"


def test_early_413_reaches_client_during_upload(weir):
    """The origin reads the head and 256 KiB of a 64 MiB upload, answers 413
    (with Content-Length, no Connection: close) and stops reading without
    closing. The client, uploading and reading at once, gets the whole 413
    while most of its body is still unsent; weir stops forwarding, closes the
    client connection cleanly (FIN after the 413, no reset), drops that
    origin connection (it is not pooled: it sees weir close it) and serves
    the next request on a new origin connection."""
    total = 64 * MiB
    state = {"partial": 0}
    answered = threading.Event()
    drain = threading.Event()

    def serve(up, sock, rd, cid):
        while True:
            method, target, hs = _read_head(rd)
            if target != "/upload":
                _answer_plain(sock, rd, hs, cid)
                continue
            state["partial"] = len(rd.read_exact(256 * 1024))
            answered.set()             # before the 413 goes out: the client checks it then
            sock.sendall(b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(EARLY_BODY), EARLY_BODY))
            drain.wait(OP + 5)         # read nothing more until the test says so
            state["drained"] = 0
            sock.settimeout(5)
            try:
                while True:
                    d = sock.recv(1 << 20)
                    if not d:
                        break
                    state["drained"] += len(d)
                state["upstream_closed"] = "eof"
            except ConnectionResetError:
                state["upstream_closed"] = "reset"
            except socket.timeout:
                state["upstream_closed"] = "still open"
            return

    up = RawUpstream(serve, rcvbuf=65536, timeout=OP)
    try:
        w = simple_proxy(weir, up, upstream_extra={"retries": 0, "read_timeout": "3s"})
        s = connect(w.port, timeout=OP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        s.sendall(b"POST /upload HTTP/1.1\r\nHost: up.test\r\n"
                  b"Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % total)
        s.setblocking(False)
        block = bytes(range(256)) * 4096        # 1 MiB
        sent, got = 0, bytearray()
        resp_len = None
        while True:
            r, wr, _ = select.select([s], [s] if sent < total else [], [], OP)
            if not r and not wr:
                break                           # nothing moved for OP seconds
            if r:
                try:
                    d = s.recv(65536)
                except ConnectionResetError:
                    break
                if not d:
                    break
                got += d
                i = got.find(b"\r\n\r\n")
                if i >= 0 and resp_len is None:
                    hs = dict((k.lower(), v) for k, v in parse_headers(got[:i].split(b"\r\n")[1:]))
                    resp_len = i + 4 + int(hs.get("content-length", "0"))
                if resp_len is not None and len(got) >= resp_len:
                    break
            if wr:
                try:
                    n = s.send(block[:min(len(block), total - sent)])
                    sent += n
                except BlockingIOError:
                    pass
                except (BrokenPipeError, ConnectionResetError):
                    break
        sent_at_answer = sent
        assert answered.is_set(), "the origin never got 256 KiB of the body"
        assert got.startswith(b"HTTP/1.1 413 "), (bytes(got[:300]), sent)
        assert resp_len is not None and len(got) >= resp_len, bytes(got[:300])
        assert got[:resp_len].endswith(EARLY_BODY), bytes(got[:resp_len])
        assert sent_at_answer < total // 2, (
            "the 413 came only after %d of %d body bytes were sent" % (sent_at_answer, total))
        # weir's side ends cleanly (FIN, not RST): more body bytes from the
        # client are read and discarded, then the client stops sending
        s.setblocking(True)
        s.settimeout(OP)
        try:
            s.sendall(block[:65536])
        except (BrokenPipeError, ConnectionResetError) as e:
            raise AssertionError("the client connection was reset after the early 413: %r" % e)
        rest = Reader(s)
        rest.buf += got[resp_len:]
        tail = rest.read_to_eof()
        assert not rest.reset, "the client connection was reset after the early 413"
        assert tail == b"", tail[:200]
        s.close()
        # the origin connection that answered early is closed by weir, not pooled
        drain.set()
        assert wait_for(lambda: "upstream_closed" in state, 12), state
        assert state["upstream_closed"] in ("eof", "reset"), state
        # the next request gets a fresh origin connection
        s2 = connect(w.port, timeout=OP)
        s2.sendall(b"GET /next HTTP/1.1\r\nHost: up.test\r\nConnection: close\r\n\r\n")
        r2 = read_response(Reader(s2))
        s2.close()
        assert r2 is not None and r2.status == 200, r2
        assert r2.body == b"conn=2", r2.body
        assert up.connections == 2
        assert not up.errors, up.errors
    finally:
        up.stop()


# ---------------------------------------------------------------- streaming echo


class ChunkedIn:
    """Decodes a chunked body from a Reader a few bytes at a time."""

    def __init__(self, rd):
        self.rd = rd
        self.left = 0          # bytes left in the current chunk
        self.done = False

    def read(self, n):
        out = bytearray()
        while len(out) < n:
            if self.left == 0:
                size = int(self.rd.read_until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    self.done = True
                    while self.rd.read_until(b"\r\n") != b"\r\n":     # trailers
                        pass
                    raise Eof(bytes(out))
                self.left = size
            k = min(self.left, n - len(out))
            out += self.rd.read_exact(k)
            self.left -= k
            if self.left == 0:
                assert self.rd.read_exact(2) == b"\r\n"
        return bytes(out)

    def read_end(self):
        """Expect the last chunk (and no more data) next."""
        try:
            extra = self.read(1)
        except Eof as e:
            return e.args[0]
        return extra


def test_streaming_echo_is_full_duplex(weir):
    """The origin answers 200 chunked at once and echoes every request chunk as
    it arrives. The client sends a chunk and waits for its echo before it
    sends the next: a proxy that reads the answer only after the whole
    request body would deadlock here (the client's read times out)."""
    seen = {}

    def serve(up, sock, rd, cid):
        while True:
            method, target, hs = _read_head(rd)
            if target != "/stream":
                _answer_plain(sock, rd, hs, cid)
                continue
            seen["te"] = hs.get("transfer-encoding")
            seen["cl"] = hs.get("content-length")
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            while True:
                size = int(rd.read_until(b"\r\n")[:-2].split(b";")[0], 16)
                if size == 0:
                    while rd.read_until(b"\r\n") != b"\r\n":
                        pass
                    sock.sendall(b"0\r\n\r\n")
                    break
                data = rd.read_exact(size)
                assert rd.read_exact(2) == b"\r\n"
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data))

    up = RawUpstream(serve, timeout=OP)
    try:
        w = simple_proxy(weir, up, upstream_extra={"retries": 0})
        s = connect(w.port, timeout=OP)
        rd = Reader(s)
        s.sendall(b"POST /stream HTTP/1.1\r\nHost: up.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        head = None
        body = None
        for i, size in enumerate([5, 1000, 70000, 1, 300000, 17]):
            msg = bytes((i * 31 + j) % 251 for j in range(min(size, 251))) * (size // 251 + 1)
            msg = msg[:size]
            s.sendall(b"%x\r\n%s\r\n" % (size, msg))
            if head is None:
                head = rd.read_until(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 200"), head
                body = ChunkedIn(rd)
            assert body.read(size) == msg, "echo %d differs" % i
        s.sendall(b"0\r\n\r\n")
        assert body.read_end() == b"", "bytes after the echoed body"
        assert body.done
        assert "chunked" in (seen["te"] or "").lower() and seen["cl"] is None, seen
        # the connection goes on as HTTP/1.1
        s.sendall(b"GET /after HTTP/1.1\r\nHost: up.test\r\n\r\n")
        r = read_response(rd)
        assert r is not None and r.status == 200 and r.body.startswith(b"conn="), r
        s.close()
        assert not up.errors, up.errors
    finally:
        up.stop()


# ---------------------------------------------------------------- h2c


def _h2c_request(method="GET", body=b""):
    return (b"%s /h2c HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\n"
            b"Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
            b"%s\r\n%s" % (method.encode(), b"Content-Length: %d\r\n" % len(body) if body else b"",
                           body))


def test_h2c_upgrade_is_dropped_and_served_as_http11(weir, backend):
    """`Upgrade: h2c` over HTTP/1.1 is not an error: weir drops Upgrade and
    HTTP2-Settings (hop-by-hop, named in Connection) and serves the request
    over HTTP/1.1; the connection stays usable."""
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port, timeout=OP)
    rd = Reader(s)
    for method, body in (("GET", b""), ("POST", b"hello h2c")):
        s.sendall(_h2c_request(method, body))
        r = read_response(rd, method)
        assert r is not None and r.status == 200, r
        assert r.version == "HTTP/1.1"
        assert not r.headers.has("upgrade"), r.headers
        doc = r.json()
        hs = {k.lower(): v for k, v in doc["headers"]}
        assert "upgrade" not in hs and "http2-settings" not in hs, hs
        assert "upgrade" not in hs.get("connection", "").lower(), hs
        assert doc["method"] == method and doc["body_len"] == len(body), doc
    s.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    r = read_response(rd)
    s.close()
    assert r is not None and r.status == 200 and r.json()["path"] == "/plain", r
    assert [q.path for q in b.requests] == ["/h2c", "/h2c", "/plain"], b.requests
