"""Bodies streamed both ways with exact bytes, and bounded memory under a slow
client (SPEC §6: "a slow client never makes weir buffer a whole large response;
memory per connection stays bounded")."""

import random
import time

from conftest import (Reader, connect, pattern_chunks, pattern_sha256, proc_status_kb,
                      read_response, sha256, simple_proxy)

MiB = 1 << 20


def _upload(port, n, chunked):
    s = connect(port, timeout=30)
    if chunked:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: up\r\nTransfer-Encoding: chunked\r\n\r\n")
        rnd = random.Random(7)
        buf = b"".join(pattern_chunks(n))
        off = 0
        while off < n:
            k = min(n - off, rnd.choice([1, 10, 4096, 65536, 100000, 300000]))
            s.sendall(b"%x\r\n" % k + buf[off:off + k] + b"\r\n")
            off += k
        s.sendall(b"0\r\n\r\n")
    else:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: up\r\nContent-Length: %d\r\n\r\n" % n)
        for c in pattern_chunks(n):
            s.sendall(c)
    r = read_response(Reader(s))
    s.close()
    return r


def test_upload_3mib_content_length(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    n = 3 * MiB
    r = _upload(w.port, n, chunked=False)
    assert r.status == 200, r
    doc = r.json()
    assert doc["body_len"] == n
    assert doc["body_sha256"] == pattern_sha256(n)


def test_upload_3mib_chunked(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    n = 3 * MiB + 17
    r = _upload(w.port, n, chunked=True)
    assert r.status == 200, r
    doc = r.json()
    assert doc["body_len"] == n
    assert doc["body_sha256"] == pattern_sha256(n)
    # weir re-frames: chunked (extensions dropped) or one Content-Length
    req = b.requests[0]
    assert req.framing in ("chunked", "content-length")
    assert not (req.headers.has("content-length") and req.headers.has("transfer-encoding"))


def _download(port, path, rcvbuf=None):
    s = connect(port, timeout=30, rcvbuf=rcvbuf)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: down\r\n\r\n" % path.encode())
    r = read_response(Reader(s))
    s.close()
    return r


def test_download_8mib_content_length(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    n = 8 * MiB
    r = _download(w.port, "/bytes/%d" % n)
    assert r.status == 200, r
    assert r.complete
    assert r.headers.get("content-length") == str(n)
    assert len(r.body) == n and sha256(r.body) == pattern_sha256(n)


def test_download_8mib_chunked(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    n = 8 * MiB + 3
    r = _download(w.port, "/chunked/%d" % n)
    assert r.status == 200, r
    assert r.complete, "chunked body must end with the last chunk"
    assert len(r.body) == n and sha256(r.body) == pattern_sha256(n)


def test_slow_client_memory_bounded(weir, backend):
    """A client with a 4 KiB receive buffer asks for 8 MiB and reads slowly, with
    long pauses.  The backend can send at loopback speed, so a proxy without
    back-pressure would hold most of the 8 MiB in its own memory during a pause.

    Bound: the worker's VmRSS, sampled during the pauses, and its VmHWM after the
    transfer stay within 4 MiB of their values after a warm-up request (which
    sets up buffers and pools).  Kernel socket buffers do not count in RSS."""
    b = backend()
    w = simple_proxy(weir, b)
    workers = w.wait_workers(1)
    wpid = workers[0]
    n = 8 * MiB
    # warm-up: exercise the same path once with a smaller body
    r = _download(w.port, "/bytes/%d" % (256 * 1024))
    assert r.status == 200 and r.complete, r
    time.sleep(0.2)
    base_rss = proc_status_kb(wpid, "VmRSS")
    base_hwm = proc_status_kb(wpid, "VmHWM")

    s = connect(w.port, timeout=30, rcvbuf=4096)
    s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: slow\r\n\r\n" % n)
    rss = []
    time.sleep(1.5)                     # pause 1: read nothing
    rss.append(proc_status_kb(wpid, "VmRSS"))
    got = bytearray()
    while len(got) < 512 * 1024:        # read 512 KiB slowly
        d = s.recv(4096)
        assert d, "connection closed early"
        got += d
        if len(got) % (64 * 1024) < 4096:
            time.sleep(0.02)
    time.sleep(1.0)                     # pause 2
    rss.append(proc_status_kb(wpid, "VmRSS"))
    while True:                          # read the rest
        d = s.recv(65536)
        if not d:
            break
        got += d
        hdr_end = got.find(b"\r\n\r\n")
        if hdr_end >= 0 and len(got) - hdr_end - 4 >= n:
            break
    s.close()
    hwm = proc_status_kb(wpid, "VmHWM")
    head, _, body = bytes(got).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    assert len(body) == n and sha256(body) == pattern_sha256(n)
    growth = max(rss) - base_rss
    assert growth < 4096, "worker RSS grew by %d KiB during a slow 8 MiB download" % growth
    assert hwm - base_hwm < 4096, "worker VmHWM grew by %d KiB" % (hwm - base_hwm)
