"""HTTP/2 downstream (core/h2_server.c, core/h2_request.c): h2 over TLS by
ALPN (module tls) and h2c with prior knowledge on `http2: true` listeners,
each stream a request proxied to an HTTP/1.1 upstream.

Clients: curl (--http2 over TLS, --http2-prior-knowledge), nghttp, h2load,
and Python's h2 over a raw socket (H2Conn below) where the test needs exact
frames. H2Conn splits what it reads into frames itself: every frame is kept
in .frames, a GOAWAY is recorded (.goaways) and not handed to h2 (whose
state machine would close the connection on the first GOAWAY, where HTTP/2
lets the streams in flight finish), everything else goes to h2.

Covered: GET over h2c and over TLS (ALPN), HTTP/1.1 on the same listener,
`alpn: [http/1.1]`, the preface on a listener without `http2` (505);
3 MiB uploads with and without content-length, small bodies in the same
write as the head, request trailers, and 8 MiB downloads, byte-exact both
ways; HEAD; 100 concurrent streams on one connection; a client reset in
the middle of a download; h2load; nghttp -nv; the access log ($protocol,
$request); a
client that stops reading (PING answered, another stream served, worker
memory bounded with 20 stalled 8 MiB responses); every request rule in the
comment at the top of core/h2.h (stream error or status, nothing forwarded,
the connection still serving); 431; 413; hop-by-hop response headers; an
upstream that cuts its response short (RST_STREAM, never END_STREAM); GOAWAY
on reload with a slow request in flight.
"""

import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from h2.errors import ErrorCodes
from h2.settings import SettingCodes

from conftest import (RSS_SLACK, Backend, Reader, Weir, get, pattern, pattern_chunks,
                      pattern_sha256, proc_status_kb, read_response, sha256, wait_for)
from tlspki import Pki

MiB = 1 << 20
MODULES = ["router", "lb_roundrobin"]
TLS_MODULES = ["router", "lb_roundrobin", "tls"]
PROTOCOL_ERROR = ErrorCodes.PROTOCOL_ERROR

FRAME_DATA, FRAME_HEADERS, FRAME_GOAWAY = 0x0, 0x1, 0x7
FLAG_END_STREAM = 0x1


# ---------------------------------------------------------------------------
# weir set-ups
# ---------------------------------------------------------------------------


def start_h2c(weir, b, limits=None, modules=MODULES, workers=1, listener=None, **extra):
    """A started weir whose listener has `http2: true`, proxying to Backend b;
    w.cfg keeps the config (for reloads)."""
    w = weir()
    lst = {"http2": True}
    lst.update(listener or {})
    w.cfg = w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}], workers=workers,
                     limits=limits, modules=modules, listener=lst, **extra)
    w.start(w.cfg)
    return w


@pytest.fixture
def pki(tmp_path):
    """A CA and a certificate for a.test, in the test's directory (weir's
    config directory, so the YAML names them by bare file name)."""
    p = Pki(tmp_path)
    ca = p.ca("weir h2 CA")
    leaf = p.leaf(ca, "a.test", sans=["DNS:a.test"])
    return ca, leaf


def start_tls(weir, b, pki, alpn=None, modules=TLS_MODULES, **extra):
    """A started weir with an HTTPS listener (certificate for a.test)."""
    ca, leaf = pki
    tls = {"certificates": [{"cert": os.path.basename(leaf.cert),
                             "key": os.path.basename(leaf.key)}]}
    if alpn is not None:
        tls["alpn"] = alpn
    w = weir()
    w.cfg = w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}], modules=modules,
                     listener={"tls": tls}, **extra)
    w.start(w.cfg)
    return w


def the_worker(w):
    ws = w.wait_workers(1)
    return ws[0]


def rss_kb(pid):
    return proc_status_kb(pid, "VmRSS")


# ---------------------------------------------------------------------------
# command-line clients
# ---------------------------------------------------------------------------


class CurlResult:
    def __init__(self, rc, version, status, body, stderr):
        self.rc, self.version, self.status, self.body, self.stderr = (
            rc, version, status, body, stderr)

    def __repr__(self):
        return "<curl rc=%s HTTP/%s %s body=%r stderr=%r>" % (
            self.rc, self.version, self.status, self.body[:200], self.stderr[-500:])


def curl(tmp_path, url, *args, pki=None):
    """curl -sS URL ARGS: the exit status, the HTTP version and status it
    reports, the body (through a file: it may be megabytes). With pki, the
    URL names a.test and curl resolves it to 127.0.0.1 and verifies it."""
    out = str(tmp_path / ("curl-%d.out" % time.monotonic_ns()))
    cmd = ["curl", "-sS", "--max-time", "60", "-o", out,
           "-w", "%{http_version} %{response_code}"]
    if pki is not None:
        port = int(re.search(r":(\d+)/", url).group(1))
        cmd += ["--cacert", pki[0].cert, "--resolve", "a.test:%d:127.0.0.1" % port]
    p = subprocess.run(cmd + list(args) + [url], capture_output=True, timeout=90)
    version, _, status = p.stdout.decode().partition(" ")
    body = b""
    if os.path.exists(out):
        with open(out, "rb") as f:
            body = f.read()
        os.unlink(out)
    return CurlResult(p.returncode, version, int(status or 0), body,
                      p.stderr.decode("utf-8", "replace"))


def run_tool(cmd, timeout=120):
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace") + p.stderr.decode("utf-8", "replace")


def h2c_url(w, path="/"):
    return "http://127.0.0.1:%d%s" % (w.port, path)


def tls_url(w, path="/"):
    return "https://a.test:%d%s" % (w.port, path)


# ---------------------------------------------------------------------------
# the Python h2 client
# ---------------------------------------------------------------------------


class Stream:
    """What one stream got: status and headers (str), body, how it ended."""

    def __init__(self, sid):
        self.id = sid
        self.status = None
        self.headers = []
        self.body = bytearray()
        self.trailers = None
        self.ended = False       # END_STREAM from weir
        self.reset = None        # the RST_STREAM error code from weir

    @property
    def done(self):
        return self.ended or self.reset is not None

    def header(self, name):
        vals = [v for n, v in self.headers if n == name]
        return vals[0] if vals else None

    def json(self):
        return json.loads(bytes(self.body))

    def __repr__(self):
        return "<Stream %d status=%s ended=%s reset=%r headers=%r body=%r...>" % (
            self.id, self.status, self.ended, self.reset, self.headers[:16],
            bytes(self.body[:200]))


def _text(v):
    return v.decode("latin-1") if isinstance(v, bytes) else v


class H2Conn:
    """One HTTP/2 client connection over a raw socket (h2c prior knowledge,
    or TLS with ALPN h2 when ctx is given).

    settings: SETTINGS to send after the preface ({SettingCodes.X: n});
    window: an increment of the connection's receive window sent at once;
    strict=False turns off h2's checks and normalisation of what we send
    (the validation tests send malformed heads on purpose); inbound=False
    turns off h2's checks of what weir sends (the tests look themselves).
    Streams in .stalled get no WINDOW_UPDATE: their window stays shut."""

    def __init__(self, port, ctx=None, sni="a.test", settings=None, window=None, strict=True,
                 inbound=True, timeout=10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if ctx is not None:
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
            self.alpn = self.sock.selected_alpn_protocol()
        else:
            self.sock, self.alpn = raw, None
        cfg = h2.config.H2Configuration(client_side=True, header_encoding=None,
                                        validate_outbound_headers=strict,
                                        normalize_outbound_headers=strict,
                                        validate_inbound_headers=inbound)
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.initiate_connection()
        if settings:
            self.h2.update_settings(settings)
        if window:
            self.h2.increment_flow_control_window(window)
        self.streams = {}
        self.frames = []          # (type, flags, stream id) of every frame read
        self.goaways = []         # (last stream id, error code)
        self.ping_acks = []
        self.remote_settings = {}
        self.stalled = set()
        self.eof = False
        self._in = bytearray()
        self.flush()

    # -- output ----------------------------------------------------------
    def flush(self):
        data = self.h2.data_to_send()
        if data:
            try:
                self.sock.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                self.eof = True

    def stream(self, sid):
        if sid not in self.streams:
            self.streams[sid] = Stream(sid)
        return self.streams[sid]

    def send_headers(self, headers, end_stream=True, flush=True):
        """Open a stream with exactly these (name, value) fields."""
        sid = self.h2.get_next_available_stream_id()
        self.stream(sid)
        self.h2.send_headers(sid, headers, end_stream=end_stream)
        if flush:
            self.flush()
        return sid

    def request(self, path="/", method="GET", headers=(), body=None, authority="test.local",
                end_stream=True, flush=True):
        """Open a stream with the usual pseudo-fields; body (bytes) is sent
        within the flow-control windows, then END_STREAM if end_stream."""
        hs = [(":method", method), (":scheme", "https" if self.alpn else "http"),
              (":authority", authority), (":path", path)] + list(headers)
        sid = self.send_headers(hs, end_stream=body is None and end_stream, flush=flush)
        if body is not None:
            self.send_body(sid, body, end_stream)
        return sid

    def send_body(self, sid, body, end_stream=True, timeout=30.0):
        """Send body on sid as the windows allow (reading meanwhile). Stops
        early if weir ends or resets the stream; returns the bytes sent."""
        end = time.monotonic() + timeout
        off = frames = 0
        st = self.stream(sid)
        view = memoryview(body)
        while off < len(body):
            if st.reset is not None or self.eof:
                return off
            room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size,
                       len(body) - off)
            if room <= 0:
                self.flush()
                assert time.monotonic() < end, "weir opened no window for the upload"
                self.pump(0.5)
                continue
            try:
                self.h2.send_data(sid, bytes(view[off:off + room]))
            except h2.exceptions.StreamClosedError:
                return off
            off += room
            frames += 1
            if frames % 16 == 0:         # send as we go, and take WINDOW_UPDATEs
                self.flush()
                self.pump(0)
        if end_stream and st.reset is None:
            try:
                self.h2.end_stream(sid)
            except h2.exceptions.StreamClosedError:
                pass
        self.flush()
        return off

    def send_data(self, sid, data, end_stream=False):
        """One DATA frame as is (no window check beyond h2's own)."""
        self.h2.send_data(sid, data, end_stream=end_stream)
        self.flush()

    def ping(self, opaque=b"weir-h2!", timeout=10.0):
        """PING and wait for its ACK; True when the ACK came."""
        self.h2.ping(opaque)
        self.flush()
        return self.wait(lambda: opaque in self.ping_acks, timeout)

    def open_window(self, sid, n):
        self.stalled.discard(sid)
        self.h2.increment_flow_control_window(n, stream_id=sid)
        self.flush()

    # -- input -----------------------------------------------------------
    def pump(self, timeout=1.0):
        """Read once (up to timeout) and handle every whole frame."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(1 << 20)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, ssl.SSLError, OSError):
            data = b""
        if not data:
            self.eof = True
            return False
        self._in += data
        while len(self._in) >= 9:
            length = int.from_bytes(self._in[0:3], "big")
            if len(self._in) < 9 + length:
                break
            frame = bytes(self._in[:9 + length])
            del self._in[:9 + length]
            ftype, flags = frame[3], frame[4]
            sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
            self.frames.append((ftype, flags, sid))
            if ftype == FRAME_GOAWAY:
                self.goaways.append((int.from_bytes(frame[9:13], "big") & 0x7FFFFFFF,
                                     int.from_bytes(frame[13:17], "big")))
                continue
            self._handle(self.h2.receive_data(frame))
        self.flush()
        return True

    def _handle(self, events):
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                st = self.stream(ev.stream_id)
                st.headers = [(_text(n), _text(v)) for n, v in ev.headers]
                st.status = int(st.header(":status"))
            elif isinstance(ev, h2.events.TrailersReceived):
                self.stream(ev.stream_id).trailers = [(_text(n), _text(v)) for n, v in ev.headers]
            elif isinstance(ev, h2.events.DataReceived):
                self.stream(ev.stream_id).body += ev.data
                if ev.stream_id not in self.stalled:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.stream(ev.stream_id).ended = True
            elif isinstance(ev, h2.events.StreamReset):
                self.stream(ev.stream_id).reset = ev.error_code
            elif isinstance(ev, h2.events.PingAckReceived):
                self.ping_acks.append(ev.ping_data)
            elif isinstance(ev, h2.events.RemoteSettingsChanged):
                for k, v in ev.changed_settings.items():
                    self.remote_settings[k] = v.new_value

    def wait(self, pred, timeout=10.0):
        """Read until pred() is true, weir closes, or timeout; pred()."""
        end = time.monotonic() + timeout
        while not pred() and not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                break
            self.pump(min(left, 0.5))
        return pred()

    def response(self, sid, timeout=20.0):
        st = self.stream(sid)
        self.wait(lambda: st.done, timeout)
        return st

    def wait_closed(self, timeout=10.0):
        """True once weir closed the connection (EOF or reset) in time."""
        return self.wait(lambda: self.eof, timeout)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tls_ctx(pki=None, alpn=("h2",)):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if pki is not None:
        ctx.load_verify_locations(pki[0].cert)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(list(alpn))
    return ctx


def fetch(port, path="/", **kw):
    """One GET on a fresh h2c connection; the Stream."""
    c = H2Conn(port)
    try:
        return c.response(c.request(path, **kw))
    finally:
        c.close()


def assert_ok(st, path=None):
    """A clean 200 (END_STREAM, no reset); with path, the backend's echo of it."""
    assert st.status == 200 and st.ended and st.reset is None, st
    if path is not None:
        doc = st.json()
        assert doc["target"] == path and doc["version"] == "HTTP/1.1", doc
        return doc
    return None


def assert_pattern(body, n):
    assert len(body) == n, (len(body), n)
    assert sha256(bytes(body)) == pattern_sha256(n)


def new_requests(b, before):
    with b.lock:
        return list(b.requests[before:])


# ---------------------------------------------------------------------------
# 1. the ways in: h2c, TLS with ALPN, HTTP/1.1 next to them
# ---------------------------------------------------------------------------


def test_h2c_prior_knowledge_get_with_curl(weir, backend, tmp_path):
    b = backend()
    w = start_h2c(weir, b)
    r = curl(tmp_path, h2c_url(w, "/hello?x=1"), "--http2-prior-knowledge")
    assert r.rc == 0 and r.version == "2" and r.status == 200, r
    doc = json.loads(r.body)
    assert doc["target"] == "/hello?x=1" and doc["method"] == "GET"
    assert doc["version"] == "HTTP/1.1"          # upstreams speak HTTP/1.1
    assert dict((n.lower(), v) for n, v in doc["headers"])["host"] == "127.0.0.1:%d" % w.port
    assert len(b.requests) == 1


def test_h2c_listener_still_serves_http11(weir, backend, tmp_path):
    """`http2: true` adds HTTP/2 to the listener; HTTP/1.1 clients (and
    HTTP/1.1 keepalive after a first request) are served as before."""
    b = backend()
    w = start_h2c(weir, b)
    r = get(w.port, "/one")
    assert r.status == 200 and r.version == "HTTP/1.1", r
    assert r.json()["target"] == "/one"
    c = curl(tmp_path, h2c_url(w, "/two"), "--http1.1")
    assert c.rc == 0 and c.version == "1.1" and c.status == 200, c
    # a client that starts with HTTP/1.1 and later sends the preface is not
    # switched: the preface is only looked for at the start of a connection
    s = socket.create_connection(("127.0.0.1", w.port), timeout=5)
    s.sendall(b"GET /three HTTP/1.1\r\nHost: t\r\n\r\n")
    rd = Reader(s)
    assert read_response(rd).status == 200
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    r2 = read_response(rd)
    s.close()
    assert r2 is not None and r2.status == 505, r2      # SPEC §6: 505 for 2.x
    assert [q.target for q in b.requests] == ["/one", "/two", "/three"], b.requests


def test_h2c_not_offered_without_http2(weir, backend):
    """Without `http2: true` the preface is an HTTP/1 request line of
    version 2.0: 505 (SPEC §6), and nothing reaches the backend."""
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}]))
    c = H2Conn(w.port)
    c.request("/nope")
    s = c.sock
    s.settimeout(5)
    got = b""
    while b"\r\n\r\n" not in got:
        d = s.recv(65536)
        if not d:
            break
        got += d
    c.close()
    assert got.startswith(b"HTTP/1.1 505 "), got[:200]
    assert b.requests == []


def test_tls_alpn_h2_get_with_curl(weir, backend, tmp_path, pki):
    b = backend()
    w = start_tls(weir, b, pki)
    r = curl(tmp_path, tls_url(w, "/tls?y=2"), "--http2", pki=pki)
    assert r.rc == 0 and r.version == "2" and r.status == 200, r
    doc = json.loads(r.body)
    assert doc["target"] == "/tls?y=2"
    assert dict((n.lower(), v) for n, v in doc["headers"])["host"] == "a.test:%d" % w.port
    # the same listener serves HTTP/1.1 to a client that asks for it
    r = curl(tmp_path, tls_url(w, "/tls11"), "--http1.1", pki=pki)
    assert r.rc == 0 and r.version == "1.1" and r.status == 200, r
    # and Python's h2 over TLS sees ALPN h2 and :scheme https accepted
    c = H2Conn(w.port, ctx=tls_ctx(pki))
    assert c.alpn == "h2"
    assert_ok(c.response(c.request("/py")), "/py")
    c.close()


def test_tls_alpn_http11_only(weir, backend, tmp_path, pki):
    """`alpn: [http/1.1]`: curl --http2 is answered over HTTP/1.1."""
    b = backend()
    w = start_tls(weir, b, pki, alpn=["http/1.1"])
    r = curl(tmp_path, tls_url(w, "/only11"), "--http2", pki=pki)
    assert r.rc == 0 and r.version == "1.1" and r.status == 200, r
    s = tls_ctx(pki, alpn=("h2",)).wrap_socket(
        socket.create_connection(("127.0.0.1", w.port), timeout=5), server_hostname="a.test")
    assert s.selected_alpn_protocol() is None
    s.close()


# ---------------------------------------------------------------------------
# 2. bodies: 3 MiB up, 8 MiB down, byte-exact
# ---------------------------------------------------------------------------


UPLOAD = 3 * MiB
DOWNLOAD = 8 * MiB


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_upload_3mib(weir, backend, with_length):
    b = backend()
    w = start_h2c(weir, b)
    body = pattern(UPLOAD)
    c = H2Conn(w.port)
    hs = [("content-length", str(UPLOAD))] if with_length else []
    st = c.response(c.request("/up", method="POST", headers=hs, body=body), timeout=60)
    c.close()
    doc = assert_ok(st, "/up")
    assert doc["body_len"] == UPLOAD and doc["body_sha256"] == pattern_sha256(UPLOAD), doc
    (req,) = b.requests
    assert req.complete and sha256(req.body) == pattern_sha256(UPLOAD)
    if with_length:
        assert req.framing == "content-length"
        assert req.headers.get_all("content-length") == [str(UPLOAD)]
    else:
        assert req.framing == "chunked", req


def test_upload_3mib_curl_tls(weir, backend, tmp_path, pki):
    b = backend()
    w = start_tls(weir, b, pki)
    path = tmp_path / "up.bin"
    path.write_bytes(pattern(UPLOAD))
    r = curl(tmp_path, tls_url(w, "/curlup"), "--http2", "--data-binary", "@" + str(path),
             pki=pki)
    assert r.rc == 0 and r.version == "2" and r.status == 200, r
    assert json.loads(r.body)["body_sha256"] == pattern_sha256(UPLOAD)
    (req,) = b.requests
    assert sha256(req.body) == pattern_sha256(UPLOAD) and len(req.body) == UPLOAD


@pytest.mark.parametrize("size", [1, 5000, 65535])
@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_small_body_in_the_same_write_as_the_head(weir, backend, size, with_length):
    """HEADERS, DATA and END_STREAM in one write (the whole body is in before
    the request starts): the upstream gets every byte, framed."""
    b = backend()
    w = start_h2c(weir, b)
    body = pattern(size)
    c = H2Conn(w.port)
    hs = [("content-length", str(size))] if with_length else []
    st = c.response(c.request("/small", method="POST", headers=hs, body=body, flush=False))
    c.close()
    doc = assert_ok(st, "/small")
    assert doc["body_len"] == size and doc["body_sha256"] == sha256(body), doc
    (req,) = b.requests
    assert req.body == body and req.framing in ("content-length", "chunked"), req


@pytest.mark.parametrize("kind", ["bytes", "chunked"])
def test_download_8mib_python(weir, backend, kind):
    b = backend()
    w = start_h2c(weir, b)
    c = H2Conn(w.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: 4 * MiB}, window=16 * MiB)
    st = c.response(c.request("/%s/%d" % (kind, DOWNLOAD)), timeout=60)
    c.close()
    assert_ok(st)
    assert_pattern(st.body, DOWNLOAD)
    assert st.header("content-length") == (str(DOWNLOAD) if kind == "bytes" else None), st
    assert st.header("transfer-encoding") is None


@pytest.mark.parametrize("how", ["h2c", "tls"])
def test_download_8mib_curl(weir, backend, tmp_path, pki, how):
    b = backend()
    if how == "h2c":
        w = start_h2c(weir, b)
        r = curl(tmp_path, h2c_url(w, "/bytes/%d" % DOWNLOAD), "--http2-prior-knowledge")
    else:
        w = start_tls(weir, b, pki)
        r = curl(tmp_path, tls_url(w, "/bytes/%d" % DOWNLOAD), "--http2", pki=pki)
    assert r.rc == 0 and r.version == "2" and r.status == 200, r
    assert_pattern(r.body, DOWNLOAD)


# ---------------------------------------------------------------------------
# 3. many streams: 100 on one connection, h2load, nghttp
# ---------------------------------------------------------------------------


def test_100_concurrent_streams(weir, backend):
    b = backend()
    w = start_h2c(weir, b)
    c = H2Conn(w.port)
    c.wait(lambda: SettingCodes.MAX_CONCURRENT_STREAMS in c.remote_settings, 5)
    assert c.remote_settings.get(SettingCodes.MAX_CONCURRENT_STREAMS) == 128, c.remote_settings
    sids = {}
    for i in range(100):
        # every other one with a body of its own, some through /delay so
        # that answers finish out of order
        path = "/c/%d" % i if i % 10 else "/delay/%d?i=%d" % (50 + i, i)
        body = ("body-%d" % i).encode() * (i + 1) if i % 2 else None
        hs = [("content-length", str(len(body)))] if body else []
        sids[c.request(path, method="POST" if body else "GET", headers=hs, body=body,
                       flush=False)] = (path, body)
    c.flush()
    assert c.wait(lambda: all(c.stream(s).done for s in sids), 30), [
        c.stream(s) for s in sids if not c.stream(s).done][:3]
    for sid, (path, body) in sids.items():
        doc = assert_ok(c.stream(sid), path)
        assert doc["body_sha256"] == sha256(body or b""), (sid, doc)
    assert c.ping()
    c.close()
    assert sorted(q.target for q in b.requests) == sorted(p for p, _ in sids.values())


def _h2load_counts(out):
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", out)
    assert m, out
    return [int(x) for x in m.groups()]


@pytest.mark.parametrize("how", ["h2c", "tls"])
def test_h2load(weir, backend, pki, how):
    b = backend()
    if how == "h2c":
        w = start_h2c(weir, b)
        url = h2c_url(w, "/load")
    else:
        w = start_tls(weir, b, pki)
        url = "https://127.0.0.1:%d/load" % w.port
    rc, out = run_tool(["h2load", "-n", "2000", "-c", "4", "-m", "100", url])
    assert rc == 0, out
    total, started, done, succeeded, failed, errored, timeout = _h2load_counts(out)
    assert (total, done, succeeded, failed, errored, timeout) == (2000, 2000, 2000, 0, 0, 0), out
    assert re.search(r"status codes: 2000 2xx", out), out
    if how == "tls":
        assert "Application protocol: h2" in out, out
    assert len(b.requests) == 2000


@pytest.mark.parametrize("how", ["h2c", "tls"])
def test_nghttp(weir, backend, pki, how):
    b = backend()
    if how == "h2c":
        w = start_h2c(weir, b)
        url = h2c_url(w, "/ng/1000")
    else:
        w = start_tls(weir, b, pki)
        url = "https://127.0.0.1:%d/ng/1000" % w.port
    b.on("/ng/", lambda ctx, req: b._do_bytes(ctx, req, "1000"))
    rc, out = run_tool(["nghttp", "-nv", url], timeout=30)
    assert rc == 0, out
    # nghttp opens its request on the first id after its PRIORITY anchors
    m = re.search(r"send HEADERS frame <length=\d+, flags=0x\w+, stream_id=(\d+)>", out)
    assert m, out
    sid = m.group(1)
    assert re.search(r"recv \(stream_id=%s\) :status: 200" % sid, out), out
    assert re.search(r"recv \(stream_id=%s\) content-length: 1000" % sid, out), out
    assert re.search(r"recv DATA frame <length=1000, flags=0x01, stream_id=%s>\s+; END_STREAM"
                     % sid, out), out
    assert "recv RST_STREAM" not in out, out
    assert [q.target for q in b.requests] == ["/ng/1000"]


def test_client_reset_mid_download(weir, backend):
    """The client resets a stream in the middle of an 8 MiB download: weir lets
    the upstream go and the connection serves on (PING, new streams)."""
    b = backend()
    w = start_h2c(weir, b)
    c = H2Conn(w.port)
    sid = c.request("/bytes/%d" % DOWNLOAD)
    assert c.wait(lambda: len(c.stream(sid).body) >= 32768, 10), c.stream(sid)
    c.h2.reset_stream(sid, ErrorCodes.CANCEL)
    c.flush()
    assert c.ping()
    for i in range(3):
        assert_ok(c.response(c.request("/after-reset/%d" % i)), "/after-reset/%d" % i)
    # the cancelled response's upstream connection is not reused mid-body
    assert_pattern(c.response(c.request("/bytes/100000")).body, 100000)
    assert not c.goaways and not c.eof
    c.close()


def test_head_request(weir, backend):
    b = backend()
    w = start_h2c(weir, b)
    c = H2Conn(w.port)
    st = c.response(c.request("/bytes/5000", method="HEAD"))
    assert st.status == 200 and st.ended and bytes(st.body) == b"", st
    assert st.header("content-length") == "5000", st
    assert_ok(c.response(c.request("/after-head")), "/after-head")
    c.close()
    assert [q.method for q in b.requests] == ["HEAD", "GET"]


def test_request_trailers_end_the_body(weir, backend):
    """DATA, then a trailer HEADERS with END_STREAM: the body reaches the
    upstream whole; the trailer fields are not forwarded."""
    b = backend()
    w = start_h2c(weir, b)
    c = H2Conn(w.port)
    body = pattern(100000)
    sid = c.request("/trailers", method="POST", body=body, end_stream=False)
    c.h2.send_headers(sid, [("x-trailer", "1")], end_stream=True)
    c.flush()
    doc = assert_ok(c.response(sid), "/trailers")
    c.close()
    assert doc["body_sha256"] == sha256(body), doc
    (req,) = b.requests
    assert req.body == body
    assert not req.headers.has("x-trailer") and not req.trailers.has("x-trailer"), req


# ---------------------------------------------------------------------------
# 4. the access log
# ---------------------------------------------------------------------------


def test_access_log_one_line_per_stream(weir, backend, tmp_path):
    log = str(tmp_path / "access.log")
    b = backend()
    w = start_h2c(weir, b, modules=MODULES + ["accesslog"],
                  access_log={"path": log, "format": '$protocol "$request" $status '
                              '$body_bytes_sent $method $request_uri', "flush": "50ms"})
    c = H2Conn(w.port)
    sids = [c.request("/a?x=1"), c.request("/bytes/1000"),
            c.request("/p", method="POST", body=b"12345"), c.request("/d", method="DELETE")]
    for s in sids:
        assert_ok(c.response(s))
    c.close()
    r = get(w.port, "/h1")
    assert r.status == 200

    def lines():
        try:
            with open(log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []
    assert wait_for(lambda: len(lines()) >= 5, 10), lines()
    got = lines()
    assert len(got) == 5, got
    h2_lines = sorted(got[:4])
    assert any(ln.startswith('HTTP/2.0 "GET /a?x=1 HTTP/2.0" 200 ') and
               ln.endswith(" GET /a?x=1") for ln in h2_lines), got
    assert 'HTTP/2.0 "GET /bytes/1000 HTTP/2.0" 200 1000 GET /bytes/1000' in h2_lines, got
    assert any(ln.startswith('HTTP/2.0 "POST /p HTTP/2.0" 200 ') for ln in h2_lines), got
    assert any(ln.startswith('HTTP/2.0 "DELETE /d HTTP/2.0" 200 ') for ln in h2_lines), got
    assert got[4].startswith('HTTP/1.1 "GET /h1 HTTP/1.1" 200 '), got


# ---------------------------------------------------------------------------
# 5. a client that stops reading
# ---------------------------------------------------------------------------


class CountingBackend(Backend):
    """/big/N: N pattern bytes with Content-Length, counting what each
    response has pushed into the socket so far (the test waits until the
    sends stop: weir no longer reads the upstreams)."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.sent = {}
        self.on("/big/", self._big)

    def _big(self, ctx, req):
        n = int(req.path.rsplit("/", 1)[1])
        ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n)
        key = req.target
        self.sent[key] = 0
        for chunk in pattern_chunks(n, 16384):
            ctx.send(chunk)
            self.sent[key] += len(chunk)
        return True

    def total_sent(self):
        return sum(self.sent.values())


def wait_stable(fn, still=1.0, timeout=30.0):
    """Poll fn() until its value has not changed for `still` seconds."""
    end = time.monotonic() + timeout
    last, since = fn(), time.monotonic()
    while time.monotonic() < end:
        time.sleep(0.1)
        v = fn()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= still:
            return v
    return last


def test_stalled_streams_keep_the_connection_alive_and_memory_bounded(weir):
    """20 streams of 8 MiB each whose windows stay shut after 4 KiB: weir
    stops reading their upstreams; PING is answered on the same connection,
    another stream there completes, and the worker's RSS grows by less than
    8 MiB (160 MiB is waiting upstream). Opening one window lets that stream
    finish byte-exact."""
    b = CountingBackend("slow")
    try:
        w = start_h2c(weir, b)
        pid = the_worker(w)
        # warm up: the buffers and pools a normal download uses
        warm = H2Conn(w.port, window=16 * MiB)
        st = warm.response(warm.request("/big/%d" % MiB), timeout=30)
        assert_ok(st)
        assert_pattern(st.body, MiB)
        warm.close()
        base = rss_kb(pid)

        window = 4096
        c = H2Conn(w.port, settings={SettingCodes.INITIAL_WINDOW_SIZE: window},
                   window=1 << 30)
        stalled = []
        for i in range(20):
            sid = c.h2.get_next_available_stream_id()
            c.stalled.add(sid)
            stalled.append(c.request("/big/%d?s=%d" % (DOWNLOAD, i), flush=False))
        c.flush()
        assert c.wait(lambda: all(len(c.stream(s).body) == window for s in stalled), 20), [
            c.stream(s) for s in stalled]
        assert len(b.wait_requests(21, 10)) == 21
        pushed = wait_stable(b.total_sent)
        assert pushed < 20 * DOWNLOAD, "weir read every upstream to the end"

        assert c.ping(b"stalled!"), "no PING ACK while streams are stalled"
        other = c.request("/big/%d?other" % MiB)
        c.open_window(other, 2 * MiB)
        st = c.response(other, timeout=30)
        assert_ok(st)
        assert_pattern(st.body, MiB)
        echo = c.response(c.request("/echo-while-stalled"))
        assert_ok(echo, "/echo-while-stalled")
        assert c.ping(b"again!!!")

        grown = rss_kb(pid) - base
        assert grown < 8 * 1024 * RSS_SLACK, "worker RSS grew by %d kB with 20 stalled streams" % grown
        for s in stalled:
            st = c.stream(s)
            assert not st.done and len(st.body) == window, st

        # one window opens: that stream completes, byte-exact
        c.open_window(stalled[0], DOWNLOAD)
        st = c.response(stalled[0], timeout=60)
        assert_ok(st)
        assert_pattern(st.body, DOWNLOAD)
        assert c.ping(b"theend!!")
        c.close()
        assert w.alive() and the_worker(w) == pid
    finally:
        b.stop()


# ---------------------------------------------------------------------------
# 6. request validation (the rules at the top of core/h2.h)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    """One weir for the validation cases: h2c, max_header_size 4k."""
    b = Backend("v")
    w = Weir(tmp_path_factory.mktemp("h2valid"))
    import sys
    sys.modules[__name__]._weirs = [w]
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}],
                     listener={"http2": True},
                     limits={"max_header_size": "4k", "max_body_size": "1m"}))
    yield w, b
    w.stop()
    b.stop()


def head(path, method="GET", scheme="http", authority="test.local", extra=(), drop=()):
    """A request head as (bytes, bytes) fields; drop names pseudo-fields to leave out."""
    hs = [(":method", method), (":scheme", scheme), (":authority", authority), (":path", path)]
    hs = [(n, v) for n, v in hs if n not in drop] + list(extra)
    return [(n.encode("latin-1") if isinstance(n, str) else n,
             v.encode("latin-1") if isinstance(v, str) else v) for n, v in hs]


def P(name, **kw):
    return head("/bad/" + name, **kw)


# name -> the head (fields in order)
MALFORMED = {
    "uppercase_name": P("uppercase_name", extra=[("X-Upper", "1")]),
    "uppercase_name_mixed": P("uppercase_name_mixed", extra=[("x-Mixed", "1")]),
    "space_in_name": P("space_in_name", extra=[("x a", "1")]),
    "cr_in_value": P("cr_in_value", extra=[("x-a", "a\rb")]),
    "lf_in_value": P("lf_in_value", extra=[("x-a", "a\nb")]),
    "crlf_in_value": P("crlf_in_value", extra=[("x-a", "a\r\nx-injected: 1")]),
    "nul_in_value": P("nul_in_value", extra=[("x-a", "a\x00b")]),
    "leading_space": P("leading_space", extra=[("x-a", " a")]),
    "trailing_space": P("trailing_space", extra=[("x-a", "a ")]),
    "leading_tab": P("leading_tab", extra=[("x-a", "\ta")]),
    "trailing_tab": P("trailing_tab", extra=[("x-a", "a\t")]),
    "connection": P("connection", extra=[("connection", "keep-alive")]),
    "keep_alive": P("keep_alive", extra=[("keep-alive", "timeout=5")]),
    "proxy_connection": P("proxy_connection", extra=[("proxy-connection", "keep-alive")]),
    "transfer_encoding": P("transfer_encoding", extra=[("transfer-encoding", "chunked")]),
    "upgrade": P("upgrade", extra=[("upgrade", "websocket")]),
    "te_gzip": P("te_gzip", extra=[("te", "gzip")]),
    "te_trailers_gzip": P("te_trailers_gzip", extra=[("te", "trailers, gzip")]),
    "missing_method": P("missing_method", drop=[":method"]),
    "missing_scheme": P("missing_scheme", drop=[":scheme"]),
    "missing_path": P("missing_path", drop=[":path"]),
    "empty_method": P("empty_method", method=""),
    "bad_method": P("bad_method", method="G T"),
    "duplicate_method": P("duplicate_method", extra=[(":method", "GET")]),
    "duplicate_scheme": P("duplicate_scheme", extra=[(":scheme", "http")]),
    "duplicate_authority": P("duplicate_authority", extra=[(":authority", "test.local")]),
    "duplicate_path": P("duplicate_path", extra=[(":path", "/bad/duplicate_path")]),
    "pseudo_after_regular": [(b":method", b"GET"), (b":scheme", b"http"), (b"x-a", b"1"),
                             (b":authority", b"test.local"), (b":path", b"/bad/pseudo_after")],
    "unknown_pseudo": P("unknown_pseudo", extra=[(":foo", "bar")]),
    "protocol_pseudo": P("protocol_pseudo", extra=[(":protocol", "websocket")]),
    "status_in_request": P("status_in_request", extra=[(":status", "200")]),
    "path_no_slash": head("bad/path_no_slash"),
    "path_empty": head(""),
    "path_absolute_uri": head("http://test.local/bad/absolute"),
    "path_with_space": head("/bad/path with space"),
    "asterisk_get": head("*"),
    "asterisk_post": head("*", method="POST"),
    "host_disagrees": P("host_disagrees", extra=[("host", "other.local")]),
    "host_disagrees_port": P("host_disagrees_port", extra=[("host", "test.local:81")]),
    "two_hosts": P("two_hosts", drop=[":authority"],
                   extra=[("host", "test.local"), ("host", "test.local")]),
    "content_length_letters": P("content_length_letters", extra=[("content-length", "abc")]),
    "content_length_negative": P("content_length_negative", extra=[("content-length", "-1")]),
    "content_length_two_values": P("content_length_two_values",
                                   extra=[("content-length", "1"), ("content-length", "2")]),
    "content_length_list": P("content_length_list", extra=[("content-length", "1, 1")]),
    # nghttp2 1.52 resets a request with neither :authority nor Host itself;
    # weir's own check (h2_request.c) would answer 400
    "no_host_no_authority": P("no_host", drop=[":authority"]),
}

# name -> (head, the status weir answers with)
REFUSED = {
    "scheme_ftp": (P("scheme_ftp", scheme="ftp"), 400),
    "connect": ([(b":method", b"CONNECT"), (b":authority", b"test.local:443")], 501),
    # methods llhttp does not know: 501, as the HTTP/1 side answers them
    "method_unknown": (P("method_unknown", method="EEAD"), 501),
    "method_lowercase": (P("method_lowercase", method="get"), 501),
}


def _sentinel(c, w, b, name):
    """After a refused stream: a good request on the same connection, then
    one on a new connection, both served; the backend saw exactly those."""
    before = len(b.requests)
    st = c.response(c.request("/good/" + name))
    assert_ok(st, "/good/" + name)
    assert_ok(fetch(w.port, "/fresh/" + name), "/fresh/" + name)
    return new_requests(b, before)


def _send_bad(proxy, fields, end_stream=True, body=None):
    """A fresh connection that first gets one good answer (so weir holds an
    idle upstream connection, and a request started by mistake would go out
    at once), then the head (and body), all in one write; the stream."""
    w, b = proxy
    c = H2Conn(w.port, strict=False)
    assert_ok(c.response(c.request("/warm")), "/warm")
    before = len(b.requests)
    sid = c.send_headers(fields, end_stream=end_stream and body is None, flush=body is None)
    if body is not None:
        c.h2.send_data(sid, body, end_stream=end_stream)
        c.flush()
    st = c.response(sid)
    return c, st, before


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_head_is_a_stream_error(proxy, name):
    w, b = proxy
    c, st, before = _send_bad(proxy, MALFORMED[name])
    try:
        assert st.reset == PROTOCOL_ERROR and st.status is None, st
        assert not c.goaways, "a connection error where a stream error was due: %r" % c.goaways
        leaked = new_requests(b, before)
        assert leaked == [], "the backend received %r" % leaked
        seen = _sentinel(c, w, b, name)
        assert [q.target for q in seen] == ["/good/" + name, "/fresh/" + name], seen
    finally:
        c.close()


@pytest.mark.parametrize("name", list(REFUSED))
def test_refused_head_gets_its_status(proxy, name):
    w, b = proxy
    fields, status = REFUSED[name]
    c, st, before = _send_bad(proxy, fields)
    try:
        assert st.status == status and st.ended and st.reset in (None, ErrorCodes.NO_ERROR), st
        assert new_requests(b, before) == []
        seen = _sentinel(c, w, b, name)
        assert [q.target for q in seen] == ["/good/" + name, "/fresh/" + name], seen
    finally:
        c.close()


def _served(proxy, fields, body=None):
    """Send a head that must be served; the stream and the backend's request."""
    w, b = proxy
    c, st, before = _send_bad(proxy, fields, body=body)
    try:
        assert st.status == 200 and st.ended, st
        reqs = new_requests(b, before)
        assert len(reqs) == 1, reqs
        return st, reqs[0]
    finally:
        c.close()


@pytest.mark.parametrize("method,status", [
    ("PURGE", 200), ("PROPFIND", 200), ("PATCH", 200), ("MKCALENDAR", 200),
    ("EEAD", 501), ("get", 501), ("X-CUSTOM", 501)])
def test_method_answers_alike_on_http1_and_http2(proxy, method, status):
    """weir holds HTTP/2 methods to the list its HTTP/1 side (llhttp) knows:
    the same method gets the same answer on both, and what is refused never
    reaches the backend."""
    w, b = proxy
    before = len(b.requests)
    r1 = get(w.port, "/m1/" + method, method=method)
    c, st, _ = _send_bad(proxy, head("/m2/" + method, method=method))
    c.close()
    assert r1.status == status, (method, r1.status)
    assert st.status == status and st.ended, st
    reached = [(q.method, q.target) for q in new_requests(b, before)]
    want = [("GET", "/warm")] + ([(method, "/m1/" + method), (method, "/m2/" + method)]
                                 if status == 200 else [])
    assert sorted(reached) == sorted(want), reached


def test_host_agreeing_with_authority_is_served(proxy):
    st, req = _served(proxy, head("/ok/host", authority="Test.Local",
                                  extra=[("host", "test.local")]))
    assert req.headers.get_all("host") == ["Test.Local"], req.headers


def test_host_without_authority_is_served(proxy):
    st, req = _served(proxy, head("/ok/hostonly", drop=[":authority"],
                                  extra=[("host", "h.test:8080")]))
    assert req.headers.get_all("host") == ["h.test:8080"], req.headers


def test_te_trailers_is_served_and_not_forwarded(proxy):
    st, req = _served(proxy, head("/ok/te", extra=[("te", "trailers")]))
    assert not req.headers.has("te"), req.headers


def test_cookies_are_joined(proxy):
    st, req = _served(proxy, head("/ok/cookie", extra=[
        ("cookie", "a=1"), ("x-between", "y"), ("cookie", "b=2"), ("cookie", "c=3")]))
    assert req.headers.get_all("cookie") == ["a=1; b=2; c=3"], req.headers
    assert req.headers.get("x-between") == "y"


def test_options_asterisk_is_not_malformed(proxy):
    """`*` is the target of OPTIONS only: weir does not reset it (it has no
    route for it, or forwards it; either way a status)."""
    w, b = proxy
    c, st, before = _send_bad(proxy, head("*", method="OPTIONS"))
    try:
        assert st.status is not None and st.ended and st.reset in (None, 0), st
        reqs = new_requests(b, before)
        assert all(q.target == "*" and q.method == "OPTIONS" for q in reqs), reqs
    finally:
        c.close()


def test_values_with_inner_whitespace_and_obs_text_are_served(proxy):
    """The value rules reject CR/LF/NUL and whitespace at the ends only:
    inner spaces and tabs, an empty value and obs-text bytes are served."""
    st, req = _served(proxy, head("/ok/values", extra=[("x-a", "a b\tc"), ("x-b", ""),
                                                      ("x-c", "caf\xe9")]))
    assert req.headers.get("x-a") == "a b\tc" and req.headers.get("x-b") == "", req.headers
    assert req.headers.get("x-c") == "caf\xe9", req.headers


@pytest.mark.parametrize("sent,length", [(5, 10), (15, 10), (1, 0)],
                         ids=["less", "more", "data-with-zero-length"])
def test_content_length_must_equal_the_data(proxy, sent, length):
    """content-length 10 and 5 or 15 DATA bytes (or 0 and 1), head and DATA
    in one write: RST_STREAM PROTOCOL_ERROR, nothing forwarded."""
    w, b = proxy
    name = "cl_%d_%d" % (sent, length)
    c, st, before = _send_bad(proxy, P(name, method="POST",
                                       extra=[("content-length", str(length))]),
                              body=b"x" * sent)
    try:
        assert st.reset == PROTOCOL_ERROR and st.status is None, st
        assert new_requests(b, before) == []
        seen = _sentinel(c, w, b, name)
        assert [q.target for q in seen] == ["/good/" + name, "/fresh/" + name], seen
    finally:
        c.close()


def test_content_length_body_within_the_window_waits_for_its_end(proxy):
    """content-length 10 (it fits the stream window): nothing goes upstream
    until the body is all there and its sum checked; 5 bytes then END_STREAM
    is a reset, and the upstream never saw the request."""
    w, b = proxy
    before = len(b.requests)
    c = H2Conn(w.port)
    sid = c.request("/bad/cl_waits", method="POST", headers=[("content-length", "10")],
                    body=b"12345", end_stream=False)
    try:
        # a good request on the same connection is served meanwhile...
        assert_ok(c.response(c.request("/good/while_waiting")), "/good/while_waiting")
        # ...and the short one has not been forwarded
        assert [q.target for q in new_requests(b, before)] == ["/good/while_waiting"]
        c.send_data(sid, b"", end_stream=True)
        st = c.response(sid)
        assert st.reset == PROTOCOL_ERROR and not st.ended, st
        assert_ok(c.response(c.request("/good/after_cl")), "/good/after_cl")
        assert [q.target for q in new_requests(b, before)] == ["/good/while_waiting",
                                                                "/good/after_cl"]
    finally:
        c.close()


def test_content_length_short_after_the_head_went_upstream(proxy):
    """content-length 100000 (more than the window): the request streams
    upstream as it comes; when END_STREAM comes short, the stream is reset,
    the upstream never gets a complete request, and its connection is not
    reused (a follow-up is served right)."""
    w, b = proxy
    before = len(b.requests)
    c = H2Conn(w.port)
    sid = c.request("/bad/cl_streamed", method="POST", headers=[("content-length", "100000")],
                    body=b"x" * 60000, end_stream=False)
    assert wait_for(lambda: new_requests(b, before), 10), "the head did not go upstream"
    c.send_data(sid, b"", end_stream=True)
    st = c.response(sid)
    try:
        assert st.reset == PROTOCOL_ERROR and not st.ended, st
        for i in range(3):
            assert_ok(c.response(c.request("/good/after_cl_%d" % i)), "/good/after_cl_%d" % i)
        reqs = new_requests(b, before)
        assert [q.target for q in reqs] == ["/bad/cl_streamed"] + [
            "/good/after_cl_%d" % i for i in range(3)], reqs
        assert not reqs[0].complete, reqs[0]
    finally:
        c.close()


@pytest.mark.parametrize("shape", ["one_big_value", "many_fields"])
def test_header_list_over_max_header_size_is_431(proxy, shape):
    w, b = proxy
    if shape == "one_big_value":
        extra = [("x-big", "v" * 5000)]
    else:
        extra = [("x-f%03d" % i, "v" * 20) for i in range(100)]   # 100 * 57 bytes
    name = "431_" + shape
    c, st, before = _send_bad(proxy, P(name, extra=extra))
    try:
        assert st.status == 431 and st.ended, st
        assert new_requests(b, before) == []
        seen = _sentinel(c, w, b, name)
        assert [q.target for q in seen] == ["/good/" + name, "/fresh/" + name], seen
    finally:
        c.close()


def test_header_list_just_under_max_header_size_is_served(proxy):
    """4k counts name + value + 32 per field (RFC 9113): well below, served."""
    hs = head("/ok/under431", extra=[("x-big", "v" * 3000)])
    st, req = _served(proxy, hs)
    assert req.headers.get("x-big") == "v" * 3000


@pytest.mark.parametrize("with_length", [True, False], ids=["content-length", "no-length"])
def test_body_over_max_body_size_is_413(proxy, with_length):
    """max_body_size 1m, a 2 MiB POST: 413; no complete request upstream
    (with content-length nothing at all); the connection serves on."""
    w, b = proxy
    before = len(b.requests)
    name = "413_%s" % ("cl" if with_length else "nocl")
    c = H2Conn(w.port)
    hs = [("content-length", str(2 * MiB))] if with_length else []
    sid = c.request("/bad/" + name, method="POST", headers=hs, body=pattern(2 * MiB))
    st = c.response(sid)
    try:
        assert st.status == 413 and st.ended, st
        reqs = new_requests(b, before)
        if with_length:
            assert reqs == [], reqs
        assert not any(q.complete for q in reqs), reqs
        seen = _sentinel(c, w, b, name)
        assert [q.target for q in seen if not q.target.startswith("/bad/")] == [
            "/good/" + name, "/fresh/" + name], seen
    finally:
        c.close()


def test_body_at_max_body_size_is_served(proxy):
    w, b = proxy
    c = H2Conn(w.port)
    st = c.response(c.request("/ok/1m", method="POST", body=pattern(MiB)), timeout=30)
    c.close()
    doc = assert_ok(st, "/ok/1m")
    assert doc["body_sha256"] == pattern_sha256(MiB)


# ---------------------------------------------------------------------------
# 7. responses: hop-by-hop headers, bodies cut short
# ---------------------------------------------------------------------------


HOP_RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                b"Connection: keep-alive, X-Named\r\nKeep-Alive: timeout=5\r\n"
                b"Proxy-Connection: keep-alive\r\nX-Named: 1\r\nTE: trailers\r\n"
                b"Trailer: X-T\r\nUpgrade: foo\r\nX-Kept: yes\r\n\r\nok")
HOP_NAMES = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
             "te", "trailer", "x-named", "x-bhop"}


@pytest.mark.parametrize("path", ["/hop", "/hop2", "/chunked/3000"])
def test_hop_by_hop_response_headers_never_reach_the_client(weir, backend, path):
    b = backend()
    b.on("/hop2", lambda ctx, req: (ctx.send(HOP_RESPONSE), True)[1])
    w = start_h2c(weir, b)
    c = H2Conn(w.port, inbound=False)
    st = c.response(c.request(path))
    c.close()
    assert st.status == 200 and st.ended, st
    names = [n for n, _ in st.headers]
    assert not HOP_NAMES & set(names), st.headers
    assert all(n == n.lower() for n in names), st.headers
    if path == "/hop":
        assert st.header("x-kept") == "yes"
        assert st.header("content-length") == str(len(st.body))
    elif path == "/hop2":
        assert st.header("x-kept") == "yes" and bytes(st.body) == b"ok"
    else:
        assert_pattern(st.body, 3000)


def _cut(n, length, wait):
    def fn(ctx, req):
        ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % length + b"x" * n)
        if wait:
            time.sleep(0.3)
        return False      # close
    return fn


def _cut_chunked(ctx, req):
    ctx.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n")
    time.sleep(0.3)
    return False


@pytest.mark.parametrize("case", ["length", "length_at_once", "chunked", "reset"])
def test_response_cut_short_is_a_reset(weir, backend, case):
    """Content-Length 1000, 10 bytes, close (or a chunked body without its
    last chunk, or an RST from the upstream): the client gets RST_STREAM,
    never a clean END_STREAM. When the upstream closes in the same instant
    (length_at_once) weir may still answer 502 instead, but never 200 with
    END_STREAM."""
    b = backend()
    b.on("/cut-length", _cut(10, 1000, wait=True))
    b.on("/cut-now", _cut(10, 1000, wait=False))
    b.on("/cut-chunked", _cut_chunked)
    w = start_h2c(weir, b)
    path = {"length": "/cut-length", "length_at_once": "/cut-now",
            "chunked": "/cut-chunked", "reset": "/reset/1000"}[case]
    c = H2Conn(w.port)
    sid = c.request(path)
    st = c.response(sid)
    ends = [f for f in c.frames if f[2] == sid and f[0] in (FRAME_DATA, FRAME_HEADERS)
            and f[1] & FLAG_END_STREAM]
    if case == "length_at_once" and st.status == 502:
        assert st.ended, st
    else:
        assert st.status == 200, st
        assert st.reset is not None and st.reset != ErrorCodes.NO_ERROR, st
        assert not st.ended and not ends, (st, c.frames)
        assert bytes(st.body) == {"reset": pattern(1000), "chunked": b"0123456789"}.get(
            case, b"x" * 10), st
        assert st.header("content-length") == {"reset": "2000", "chunked": None}.get(
            case, "1000"), st
    # the connection goes on
    assert_ok(c.response(c.request("/after")), "/after")
    c.close()


# ---------------------------------------------------------------------------
# 8. GOAWAY on reload
# ---------------------------------------------------------------------------


def test_goaway_on_reload(weir, backend):
    """An open h2 connection with a slow request in flight, then SIGHUP: the
    client gets GOAWAY (a shutdown notice, then the last stream id), the slow
    request completes, a stream opened after the last GOAWAY is never
    forwarded, and weir closes the connection; new connections are served
    by the new generation."""
    b = backend()
    w = start_h2c(weir, b)
    old = the_worker(w)
    c = H2Conn(w.port)
    assert_ok(c.response(c.request("/before")), "/before")
    slow = c.request("/delay/4000")
    assert wait_for(lambda: any(q.path == "/delay/4000" for q in b.requests), 10)
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: generation 2 started" in w.log(), 10), w.log()
    assert c.wait(lambda: any(last < (1 << 31) - 1 for last, _ in c.goaways), 10), c.goaways
    assert c.goaways[0][0] == (1 << 31) - 1, c.goaways     # the shutdown notice first
    assert all(code == ErrorCodes.NO_ERROR for _, code in c.goaways), c.goaways
    final = [last for last, _ in c.goaways if last < (1 << 31) - 1][0]
    assert final >= slow, (final, slow)
    st = c.stream(slow)
    assert not st.done, "the slow request ended before the final GOAWAY: %r" % st
    late = c.request("/late")        # above the last stream id: never served
    st = c.response(slow, timeout=15)
    assert_ok(st, "/delay/4000")
    assert c.wait_closed(10), "weir kept the connection open after its last stream"
    assert c.stream(late).status is None
    assert not any(q.path == "/late" for q in b.requests), b.requests
    c.close()
    assert wait_for(lambda: old not in w.workers(), 10), w.workers()
    assert_ok(fetch(w.port, "/new"), "/new")


def test_five_reloads_under_h2load(weir, backend):
    """h2load keeps 2 connections with 10 streams each busy while weir
    reloads, five times. Every request that reached weir is answered with
    200: the backend got exactly the requests h2load counts as succeeded,
    none failed after weir took it, and nothing was a 5xx.

    h2load itself does not honour the shutdown notice: it submits requests
    after the GOAWAY came, which its nghttp2 refuses to send (it reports
    them as failed and errored alike), and it opens no new connection after
    a GOAWAY, so each reload gets a fresh h2load whose connections are busy
    when the SIGHUP comes. Those refused requests never left h2load; a
    client that follows RFC 9113 retries them elsewhere
    (test_goaway_on_reload checks that a stream after the last GOAWAY is
    never forwarded)."""
    import subprocess
    b = backend()
    w = start_h2c(weir, b, workers=2)
    w.wait_workers(2)
    url = h2c_url(w, "/load")
    total = 0
    for gen in range(2, 7):
        before = len(b.requests)
        p = subprocess.Popen(["h2load", "-D", "3", "-c", "2", "-m", "10", url],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert wait_for(lambda: len(b.requests) > before + 50, 10), "no load reached the backend"
        w.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload: generation %d started" % gen in w.log(), 10), w.log()
        out, _ = p.communicate(timeout=30)
        t, started, done, succeeded, failed, errored, timeout = _h2load_counts(out)
        assert started == done and failed == errored and timeout == 0, out
        assert re.search(r"status codes: %d 2xx, 0 3xx, 0 4xx, 0 5xx" % succeeded, out), out
        reached = len(b.requests) - before
        assert reached == succeeded, (reached, out)
        assert succeeded > 50, out
        total += succeeded
    assert wait_for(lambda: "generation 5: all workers have exited" in w.log(), 20), w.log()
    assert_ok(fetch(w.port, "/after"), "/after")
    assert total > 250
