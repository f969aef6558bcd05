"""HTTP/2 attacks against weir (issue 12, item 3), each driven with raw frames
(hyperframe and hpack) over h2c with prior knowledge to a real weir.

For every attack a test asserts that
  - weir cuts it: a GOAWAY with an expected code, or a close, within a
    bounded number of frames (REFUSED_STREAM per stream for the
    concurrency limit);
  - the worker's memory did not grow: VmRSS after, and VmHWM (the peak)
    during, at most MAX_GROWTH_KB over what it was before the attack;
  - the same worker (same pid) then serves a normal request on a new
    connection.
Nothing is timed: the loops only have generous deadlines against hangs.

Attacks:
  concurrency   128 streams held open, more are refused (REFUSED_STREAM)
  hpack bomb    a 4 KiB field in the dynamic table referenced many times,
                in one long block (HEADERS + CONTINUATIONs) and stream after
                stream
  rapid reset   HEADERS then RST_STREAM, repeated (CVE-2023-44487)
  continuation  endless CONTINUATION frames (CVE-2024-28182)
  never reads   SETTINGS, PING, WINDOW_UPDATE floods from a client with a
                small SO_RCVBUF that never reads (CVE-2019-9512/9515)
  empty frames  DATA, HEADERS, CONTINUATION with no payload (CVE-2019-9518)
  settings      too many entries in one SETTINGS frame
  oversize      a frame longer than SETTINGS_MAX_FRAME_SIZE; DATA beyond
                the window weir advertised
  made you reset  whatever makes weir send RST_STREAM, repeated
                (CVE-2025-8671): WINDOW_UPDATE 0 on a stream, a stream window
                overflowing 2^31-1, DATA on a half-closed stream, a
                malformed head (for nghttp2, and for weir's own checks: Host
                against :authority), content-length not matching the DATA,
                a stream depending on itself, streams beyond the limit

Each test prints one line, "FLOOD <attack>: <what weir did> after <n>
frames" (pytest -s shows them); n is the number of frames the client had
written when it saw the cut, an upper bound of what weir read.
"""

import json
import os
import select
import socket
import struct
import time

import pytest
import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, HeadersFrame, PingFrame,
                              RstStreamFrame, SettingsFrame, WindowUpdateFrame)

from conftest import RSS_SLACK, RawUpstream, connect, proc_status_kb, wait_for

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# error codes (RFC 9113 §7)
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR = 0x0, 0x1, 0x2, 0x3
SETTINGS_TIMEOUT, STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM = 0x4, 0x5, 0x6, 0x7
CANCEL, COMPRESSION_ERROR, CONNECT_ERROR, ENHANCE_YOUR_CALM = 0x8, 0x9, 0xa, 0xb
CODE_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
              4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
              7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
              11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}

# settings ids
S_HEADER_TABLE_SIZE, S_ENABLE_PUSH, S_MAX_CONCURRENT_STREAMS = 1, 2, 3
S_INITIAL_WINDOW_SIZE, S_MAX_FRAME_SIZE, S_MAX_HEADER_LIST_SIZE = 4, 5, 6

# "a few MiB": the most the worker's RSS (after) and peak RSS (during) may
# grow over their values before an attack
MAX_GROWTH_KB = 4 * 1024 * RSS_SLACK
# a flood that weir has not cut once this many frames were written fails
FLOOD_CAP = 10000
# the floods of a client that never reads (the brief: 100k frames)
NEVER_READ_FRAMES = 100000
# against hangs only, never asserted as a duration
DEADLINE = 120.0

RESULTS_LOG = os.environ.get("WEIR_H2_FLOODS_LOG")   # optional: one JSON line per attack


def code_name(c):
    return CODE_NAMES.get(c, "0x%x" % c)


def frame(ftype, flags, sid, payload=b""):
    """A frame built by hand, for what hyperframe will not serialise (repeated
    settings, lengths that lie)."""
    n = len(payload)
    return struct.pack(">BHBBL", (n >> 16) & 0xff, n & 0xffff, ftype, flags,
                       sid & 0x7fffffff) + payload


def ser(*frames):
    return b"".join(f.serialize() if hasattr(f, "serialize") else f for f in frames)


# ---------------------------------------------------------------------------
# a raw HTTP/2 client
# ---------------------------------------------------------------------------


class H2:
    """A client connection that writes whatever frames a test builds and
    parses everything weir sends: GOAWAY, RST_STREAM per stream, responses
    (status, body). It acks weir's SETTINGS (not counted as sent frames)."""

    def __init__(self, port, rcvbuf=None, timeout=10.0, settings=None, window=True,
                 handshake=True):
        self.port = port
        self.sock = connect(port, timeout, rcvbuf=rcvbuf)
        self.local_port = self.sock.getsockname()[1]
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_header_list_size = 1 << 30
        self.inbuf = bytearray()
        self.sent = 0              # frames of the attack written
        self.goaway = None         # (code, last_stream_id, debug)
        self.rst = {}              # stream -> code weir reset it with
        self.status = {}           # stream -> :status
        self.body = {}             # stream -> bytes
        self.ended = set()         # streams weir ended with END_STREAM
        self.pings_acked = 0
        self.last_ping_ack = None
        self.settings_acked = 0
        self.server_settings = 0     # SETTINGS frames (not ACKs) from weir
        self.window_updates = {}     # stream -> sum of increments weir sent
        self.received = 0          # frames from weir
        self.eof = False           # weir closed (FIN or RST), as read
        self.write_dead = False    # a write failed: weir closed (RST)
        self.reset = False
        self.send_failed = None    # the error of a write weir refused
        self._hblock = None        # (stream, bytes) of a header block in progress
        self.next_id = 1
        self.pings = 0
        st = settings if settings is not None else {S_INITIAL_WINDOW_SIZE: 1 << 20,
                                                    S_ENABLE_PUSH: 0}
        self.raw(PREFACE + SettingsFrame(0, settings=st).serialize())
        if window:
            self.raw(WindowUpdateFrame(0, window_increment=1 << 30).serialize())
        if handshake:
            # weir's SETTINGS acked before any attack frame, so no ACK of
            # ours lands inside an attack (in a header block, say)
            end = time.monotonic() + timeout
            while not (self.server_settings and self.settings_acked) and not self.eof \
                    and time.monotonic() < end:
                self.poll(0.2)
            assert self.server_settings and self.settings_acked, \
                "no SETTINGS exchange with weir: " + self.outcome()

    # -- output ------------------------------------------------------------
    def raw(self, data):
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError) as e:
            self.send_failed = e       # what weir sent before may still be read
            self.write_dead = True
            return False
        except socket.timeout as e:
            self.send_failed = e
            return False

    def send(self, data, nframes):
        """Writes attack frames; counts them once written."""
        ok = self.raw(data)
        if ok:
            self.sent += nframes
        return ok

    def new_id(self):
        sid = self.next_id
        self.next_id += 2
        return sid

    def block(self, path="/", method="GET", extra=()):
        hs = [(":method", method), (":scheme", "http"), (":path", path),
              (":authority", "test.local")] + list(extra)
        return self.enc.encode(hs)

    def headers(self, sid, block, end_stream=True, end_headers=True, priority=None):
        f = HeadersFrame(sid)
        f.data = block
        if end_headers:
            f.flags.add("END_HEADERS")
        if end_stream:
            f.flags.add("END_STREAM")
        if priority is not None:
            f.flags.add("PRIORITY")
            f.depends_on, f.stream_weight, f.exclusive = priority, 15, False
        return f.serialize()

    # -- input -------------------------------------------------------------
    def poll(self, timeout=0.0):
        """Reads what is there (waiting at most timeout for the first bytes)
        and parses it. Returns True if anything came."""
        got = False
        while not self.eof:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                break
            try:
                d = self.sock.recv(1 << 20)
            except ConnectionResetError:
                self.eof = self.reset = True
                break
            except socket.timeout:
                break
            if not d:
                self.eof = True
                break
            got = True
            self.inbuf += d
            self._parse()
            timeout = 0.0
        return got

    def _parse(self):
        while len(self.inbuf) >= 9:
            n = int.from_bytes(self.inbuf[:3], "big")
            if len(self.inbuf) < 9 + n:
                return
            hdr, body = bytes(self.inbuf[:9]), bytes(self.inbuf[9:9 + n])
            del self.inbuf[:9 + n]
            self.received += 1
            ftype, flags, sid = hdr[3], hdr[4], int.from_bytes(hdr[5:9], "big") & 0x7fffffff
            if ftype in (0x1, 0x9):        # HEADERS, CONTINUATION
                f, _ = Frame.parse_frame_header(memoryview(hdr))
                f.parse_body(memoryview(body))
                frag = f.data
                if ftype == 0x1:
                    self._hblock = (sid, bytearray(frag))
                    if "END_STREAM" in f.flags:
                        self.ended.add(sid)
                else:
                    self._hblock[1].extend(frag)
                if "END_HEADERS" in f.flags:
                    s, blk = self._hblock
                    self._hblock = None
                    for name, value in self.dec.decode(bytes(blk)):
                        if name == ":status":
                            self.status.setdefault(s, int(value))
            elif ftype == 0x0:             # DATA
                f, _ = Frame.parse_frame_header(memoryview(hdr))
                f.parse_body(memoryview(body))
                self.body[sid] = self.body.get(sid, b"") + f.data
                if "END_STREAM" in f.flags:
                    self.ended.add(sid)
            elif ftype == 0x3:             # RST_STREAM
                self.rst[sid] = int.from_bytes(body[:4], "big")
            elif ftype == 0x4:             # SETTINGS
                if flags & 0x1:
                    self.settings_acked += 1
                else:
                    self.server_settings += 1
                    self.raw(SettingsFrame(0, flags=["ACK"]).serialize())
            elif ftype == 0x6:             # PING
                if flags & 0x1:
                    self.pings_acked += 1
                    self.last_ping_ack = bytes(body[:8])
            elif ftype == 0x8:             # WINDOW_UPDATE
                inc = int.from_bytes(body[:4], "big") & 0x7fffffff
                self.window_updates[sid] = self.window_updates.get(sid, 0) + inc
            elif ftype == 0x7:             # GOAWAY
                last = int.from_bytes(body[:4], "big") & 0x7fffffff
                code = int.from_bytes(body[4:8], "big")
                if self.goaway is None or code != NO_ERROR:
                    self.goaway = (code, last, body[8:200])

    def cut(self):
        return self.eof or self.write_dead or (
            self.goaway is not None and self.goaway[0] != NO_ERROR)

    def sync(self, timeout=10.0):
        """A PING, then reads until its ACK (or the cut): weir has read
        everything written before it. Not an attack frame, not counted."""
        self.pings += 1
        tag = struct.pack(">Q", 0x5EED000000000000 + self.pings)
        if not self.raw(PingFrame(0, opaque_data=tag).serialize()):
            return
        end = time.monotonic() + timeout
        while self.last_ping_ack != tag and not self.cut() and time.monotonic() < end:
            self.poll(0.2)
        # a GOAWAY or RST_STREAM queued behind the ACK
        self.poll(0.01)

    def open_streams(self, upto=None):
        """Streams opened and neither reset nor ended by weir."""
        top = self.next_id - 2 if upto is None else upto
        return [s for s in range(1, top + 1, 2) if s not in self.rst and s not in self.ended]

    def drain(self, timeout=10.0):
        """After the attack: read until weir closes (or timeout)."""
        end = time.monotonic() + timeout
        while not self.eof and time.monotonic() < end:
            self.poll(0.2)
        return self.eof

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def rst_summary(self):
        hist = {}
        for c in self.rst.values():
            hist[code_name(c)] = hist.get(code_name(c), 0) + 1
        return hist

    def outcome(self):
        if self.goaway is not None:
            s = "GOAWAY %s (last stream %d%s)" % (
                code_name(self.goaway[0]), self.goaway[1],
                (", %r" % self.goaway[2].decode("latin-1")) if self.goaway[2] else "")
            if self.eof:
                s += ", then close"
        elif self.eof or self.write_dead:
            s = "close without GOAWAY" + (" (RST)" if self.reset or self.write_dead else "")
        else:
            s = "nothing (connection still open)"
        hist = self.rst_summary()
        if hist:
            s += "; RST_STREAM " + ", ".join("%s x%d" % kv for kv in sorted(hist.items()))
        statuses = {}
        for st in self.status.values():
            statuses[st] = statuses.get(st, 0) + 1
        if statuses:
            s += "; responses " + ", ".join("%d x%d" % kv for kv in sorted(statuses.items()))
        return s


def h2_get(port, path="/after", timeout=10.0):
    """One normal request on a new connection: (status, body)."""
    c = H2(port, timeout=timeout)
    try:
        sid = c.new_id()
        c.raw(c.headers(sid, c.block(path)))
        end = time.monotonic() + timeout
        while sid not in c.ended and sid not in c.rst and not c.eof and time.monotonic() < end:
            c.poll(0.2)
        return c.status.get(sid), c.body.get(sid, b""), c
    finally:
        c.close()


# ---------------------------------------------------------------------------
# weir, memory, results
# ---------------------------------------------------------------------------


class Target:
    """A started weir (one worker, an http2: true listener) in front of a
    Backend, with the worker's memory before the attack."""

    def __init__(self, w, b):
        self.w, self.b = w, b
        self.port = w.port
        self.pid = w.wait_workers(1)[0]
        # warm up: the first requests allocate what the worker keeps
        for i in range(5):
            st, body, _ = h2_get(self.port, "/warm%d" % i)
            assert st == 200, "weir does not serve h2c before the attack: %r" % st
        self.rss0 = proc_status_kb(self.pid, "VmRSS")
        self.hwm0 = proc_status_kb(self.pid, "VmHWM")
        self.log_mark = len(w.log())
        b.clear()

    def weir_said(self):
        """What weir logged about HTTP/2 connections since the attack began."""
        out = []
        for ln in self.w.log()[self.log_mark:].splitlines():
            if "HTTP/2" in ln or "GOAWAY" in ln or "flood" in ln.lower():
                out.append(ln.split(" weir: ", 1)[-1])
        return out

    def rss(self):
        return proc_status_kb(self.pid, "VmRSS")

    def check_after(self, c, attack, cut_desc, extra=None):
        """Memory and the same worker serving afterwards; prints and records
        the result line."""
        c.close()
        rss = wait_for(lambda: (lambda v: v if v - self.rss0 <= MAX_GROWTH_KB else None)(
            self.rss()), 5.0) or self.rss()
        hwm = proc_status_kb(self.pid, "VmHWM")
        line = "FLOOD %s: %s after %d frames (worker RSS %+d KiB, peak %+d KiB)" % (
            attack, cut_desc, c.sent, rss - self.rss0, hwm - self.hwm0)
        if extra:
            line += "; " + extra
        said = self.weir_said()
        if said:
            line += "\n    weir logged: " + " | ".join(sorted(set(said))[:3])
        print("\n" + line)
        if RESULTS_LOG:
            with open(RESULTS_LOG, "a") as f:
                f.write(json.dumps({"attack": attack, "weir": cut_desc, "frames": c.sent,
                                    "rss_kb": rss - self.rss0, "hwm_kb": hwm - self.hwm0,
                                    "extra": extra}) + "\n")
        assert self.w.alive(), "the weir master died; log:\n" + self.w.log()[-3000:]
        assert self.w.workers() == [self.pid], (
            "the worker changed (%d -> %r): it crashed or was restarted; log:\n%s"
            % (self.pid, self.w.workers(), self.w.log()[-3000:]))
        assert rss - self.rss0 <= MAX_GROWTH_KB, (
            "%s: worker RSS grew by %d KiB (%d -> %d)" % (attack, rss - self.rss0, self.rss0, rss))
        assert hwm - self.hwm0 <= MAX_GROWTH_KB, (
            "%s: worker peak RSS grew by %d KiB during the attack (%d -> %d)"
            % (attack, hwm - self.hwm0, self.hwm0, hwm))
        st, body, _ = h2_get(self.port, "/after")
        assert st == 200 and b'"path": "/after"' in body, (
            "the worker does not serve a normal request after %s: %r %r" % (attack, st, body[:200]))
        assert self.w.workers() == [self.pid]


# No timer of weir's may end an attack connection: whatever cuts one is a protection.
LONG = {"client_header_timeout": "300s", "client_body_timeout": "300s",
        "send_timeout": "300s", "keepalive_timeout": "300s"}


@pytest.fixture
def target(weir, backend):
    """weir with an http2: true listener: /stall/ goes to an origin that
    accepts and never reads (a 4 KiB receive buffer), the rest to a Backend."""
    b = backend()
    stall = RawUpstream(lambda up, sock, rd, cid: time.sleep(600), rcvbuf=4096, timeout=600)
    w = weir()
    keep = {"max_fails": 100000, "retries": 0}
    ups = {"b": dict({"balancer": "roundrobin", "servers": [b.addr]}, **keep),
           "stall": dict({"balancer": "roundrobin", "servers": [stall.addr]}, **keep)}
    w.start(w.config(upstreams=ups, routes=[{"path": "/stall/", "upstream": "stall"},
                                            {"path": "/", "upstream": "b"}],
                     listener={"http2": True}, limits=LONG))
    yield Target(w, b)
    stall.stop()


def flood(c, make, cap=FLOOD_CAP, per_send=10, deadline=DEADLINE, sync=True, until=None):
    """Writes make(i) (bytes, frames) per_send at a time until weir cuts the
    connection or cap frames are written, reading all the while; then waits
    for the cut. With sync, a PING after each batch waits for weir to have
    read it (so c.sent is what weir read, to one batch); without (inside a
    header block, where a PING is an error), a short read after each batch.
    until() true also ends the flood. Returns whether weir cut it."""
    end = time.monotonic() + deadline
    i = 0
    while c.sent < cap and not c.cut() and time.monotonic() < end and not (until and until()):
        chunk, n = [], 0
        for _ in range(per_send):
            data, k = make(i)
            i += 1
            chunk.append(data)
            n += k
        if not c.send(b"".join(chunk), n):
            break
        if sync:
            c.sync()
        else:
            c.poll(0.02)
    if until and until():
        c.drain(2.0)
        return c.cut()
    return wait_cut(c)


def wait_cut(c, timeout=10.0):
    """weir may still be reading what was written: wait for the cut, then
    read to the close."""
    end = time.monotonic() + timeout
    while not c.cut() and time.monotonic() < end:
        c.poll(0.2)
    cut = c.cut()
    c.drain(5.0)
    return cut


def assert_cut(c, attack, cut, codes, allow_close=True):
    """weir cut it: a GOAWAY with one of codes, or (allow_close) a close
    without a GOAWAY."""
    ok_codes = " or ".join(code_name(x) for x in codes)
    assert cut, ("%s: weir did not cut the connection after %d frames (wanted GOAWAY %s%s); "
                 "it did: %s" % (attack, c.sent, ok_codes, " or a close" if allow_close else "",
                                 c.outcome()))
    if c.goaway is not None and c.goaway[0] != NO_ERROR:
        assert c.goaway[0] in codes, "%s: GOAWAY %s, wanted %s (%s)" % (
            attack, code_name(c.goaway[0]), ok_codes, c.outcome())
    else:
        assert allow_close and (c.eof or c.write_dead), "%s: wanted GOAWAY %s, weir did: %s" % (
            attack, ok_codes, c.outcome())


# ---------------------------------------------------------------------------
# max_concurrent_streams
# ---------------------------------------------------------------------------


def test_concurrent_streams_beyond_128_refused(target):
    """128 streams held open (a POST whose body never ends); streams 129 to
    148 each get RST_STREAM REFUSED_STREAM and reach no upstream; the 128
    then finish with 200."""
    c = H2(target.port)
    held = []
    data = []
    for _ in range(128):
        sid = c.new_id()
        held.append(sid)
        data.append(c.headers(sid, c.block("/held", "POST"), end_stream=False))
    c.send(b"".join(data), 128)
    c.poll(0.5)
    # every held stream reaches the backend before more are opened
    got = target.b.wait_requests(128, timeout=30)
    assert len(got) == 128, "only %d of the 128 held streams reached the backend" % len(got)
    extra = []
    for _ in range(20):
        sid = c.new_id()
        extra.append(sid)
        c.send(c.headers(sid, c.block("/extra")), 1)
    wait_for(lambda: c.poll(0.1) is None or all(s in c.rst for s in extra) or c.cut(), 10)
    refused = [s for s in extra if c.rst.get(s) == REFUSED_STREAM]
    held_reset = {s: code_name(c.rst[s]) for s in held if s in c.rst}
    # the held streams end
    c.send(b"".join(ser(DataFrame(s, data=b"", flags=["END_STREAM"])) for s in held), 128)
    wait_for(lambda: c.poll(0.1) is None or all(s in c.ended or s in c.rst for s in held) or c.eof,
             30)
    done = [s for s in held if c.status.get(s) == 200 and s in c.ended]
    desc = c.outcome()
    target.check_after(c, "concurrency (128 held + 20 more)", desc,
                       "%d of 20 extra streams REFUSED_STREAM, %d of 128 held answered 200"
                       % (len(refused), len(done)))
    assert not held_reset, "held streams (within the limit) were reset: %r" % held_reset
    assert len(refused) == 20, "streams beyond 128 were not all refused: %r" % {
        s: code_name(c.rst[s]) if s in c.rst else c.status.get(s) for s in extra}
    assert not [r for r in target.b.requests if r.path == "/extra"], \
        "a refused stream reached the upstream"
    assert len(done) == 128, "only %d of the 128 held streams were answered" % len(done)
    assert c.goaway is None or c.goaway[0] == NO_ERROR, c.outcome()


# ---------------------------------------------------------------------------
# HPACK bombs
# ---------------------------------------------------------------------------

BOMB_VALUE = b"a" * 4000       # + "x-bomb" + 32 = 4038 octets: fits the 4 KiB table


def hp_int(v, prefix, first=0):
    """An HPACK integer (RFC 7541 §5.1) with a prefix of prefix bits."""
    m = (1 << prefix) - 1
    if v < m:
        return bytes([first | v])
    out = [first | m]
    v -= m
    while v >= 128:
        out.append((v & 0x7f) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def hp_str(b):
    return hp_int(len(b), 7) + b


def bomb_block(path=b"/bomb", refs=0, insert=False):
    """A request block built by hand so the dynamic table holds exactly what
    the bomb needs: the pseudo-fields from the static table or as literals
    without indexing; with insert, x-bomb (4000 octets) as a literal with
    incremental indexing (dynamic index 62); then refs references to index
    62, one octet each."""
    blk = b"\x82\x86"                                           # :method GET, :scheme http
    blk += hp_int(4, 4) + hp_str(path)                           # :path, not indexed
    blk += hp_int(1, 4) + hp_str(b"test.local")                  # :authority, not indexed
    if insert:
        blk += b"\x40" + hp_str(b"x-bomb") + hp_str(BOMB_VALUE)
    return blk + b"\xbe" * refs


def test_hpack_bomb_one_long_block(target):
    """One stream: HEADERS + 7 CONTINUATIONs (under nghttp2's limit of
    CONTINUATION frames, so the header-list limit is what must act) of
    references to a 4 KiB entry (about 127k fields, 500 MB decoded). Wanted:
    the stream refused (431 or RST_STREAM) or the connection cut; nothing
    reaches the upstream, memory stays flat."""
    c = H2(target.port)
    sid = c.new_id()
    first = bomb_block(refs=16384 - 4100, insert=True)
    frames = [c.headers(sid, first, end_stream=True, end_headers=False)]
    for k in range(7):
        cf = ContinuationFrame(sid, data=b"\xbe" * 16384)
        if k == 6:
            cf.flags.add("END_HEADERS")
        frames.append(cf.serialize())
    c.send(b"".join(frames), len(frames))
    end = time.monotonic() + 30
    while sid not in c.ended and sid not in c.rst and not c.cut() and time.monotonic() < end:
        c.poll(0.2)
    desc = c.outcome()
    decoded = (16384 - 4100 + 7 * 16384 + 1) * 4038
    target.check_after(c, "hpack bomb, one block", desc, "%.0f MB decoded" % (decoded / 1e6))
    assert c.status.get(sid) == 431 or sid in c.rst or c.cut(), (
        "a %.0f MB header list was not refused: %s" % (decoded / 1e6, desc))
    if c.goaway is not None and c.goaway[0] != NO_ERROR:
        assert c.goaway[0] in (ENHANCE_YOUR_CALM, COMPRESSION_ERROR, PROTOCOL_ERROR), desc
    assert not [r for r in target.b.requests if r.path == "/bomb"], \
        "the bomb reached the upstream"


def test_hpack_bomb_stream_after_stream(target):
    """Stream after stream, each one HEADERS frame of 12k references to a
    4 KiB entry (48 MB decoded each): each is refused, and the connection is
    cut (GOAWAY ENHANCE_YOUR_CALM or a close) after a bounded number."""
    c = H2(target.port)
    c.send(c.headers(c.new_id(), bomb_block(refs=12000, insert=True)), 1)

    def make(i):
        return c.headers(c.new_id(), bomb_block(refs=12000)), 1
    cut = flood(c, make, cap=2000, per_send=4)
    answered = sum(1 for s, st in c.status.items() if st == 431) + len(c.rst)
    desc = c.outcome()
    target.check_after(c, "hpack bomb, stream after stream", desc,
                       "%d streams refused before the cut" % answered)
    assert_cut(c, "hpack bomb flood", cut, (ENHANCE_YOUR_CALM, COMPRESSION_ERROR))
    assert not [r for r in target.b.requests if r.path == "/bomb"], \
        "a bomb reached the upstream"


# ---------------------------------------------------------------------------
# rapid reset, CONTINUATION flood
# ---------------------------------------------------------------------------


def test_rapid_reset(target):
    """HEADERS (a complete GET) then RST_STREAM CANCEL at once, stream after
    stream (CVE-2023-44487): GOAWAY ENHANCE_YOUR_CALM (or a close) within a
    bounded number of frames."""
    c = H2(target.port)

    def make(i):
        sid = c.new_id()
        return c.headers(sid, c.block("/rr")) + RstStreamFrame(sid, error_code=CANCEL).serialize(), 2
    cut = flood(c, make, cap=2 * FLOOD_CAP, per_send=50)
    desc = c.outcome()
    target.check_after(c, "rapid reset", desc, "%d requests reached the upstream"
                       % len(target.b.requests))
    assert_cut(c, "rapid reset", cut, (ENHANCE_YOUR_CALM,))


@pytest.mark.parametrize("empty", [False, True], ids=["small-fields", "empty"])
def test_continuation_flood(target, empty):
    """HEADERS without END_HEADERS, then CONTINUATION frames without end
    (CVE-2024-28182), each carrying a small field (or nothing): cut within a
    bounded number of frames."""
    c = H2(target.port)
    sid = c.new_id()
    c.send(c.headers(sid, c.block("/cont"), end_headers=False), 1)
    field = b"" if empty else b"\x00\x03x-c\x01v"     # literal, not indexed: x-c: v

    def make(i):
        return ContinuationFrame(sid, data=field).serialize(), 1
    cut = flood(c, make, cap=FLOOD_CAP, per_send=1, sync=False)
    desc = c.outcome()
    target.check_after(c, "continuation flood (%s)" % ("empty" if empty else "small fields"),
                       desc)
    assert_cut(c, "continuation flood", cut, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR))
    assert c.sent <= 100, "the CONTINUATION flood was cut only after %d frames" % c.sent
    assert not [r for r in target.b.requests if r.path == "/cont"]


# ---------------------------------------------------------------------------
# a client that never reads
# ---------------------------------------------------------------------------

TCP_ESTABLISHED = 1


def server_side_state(weir_port, client_port):
    """The TCP state of weir's end of the connection (/proc/net/tcp), None
    when it is gone. Lets a client that never reads see weir close."""
    try:
        with open("/proc/net/tcp") as f:
            lines = f.readlines()[1:]
    except OSError:
        return None
    for ln in lines:
        p = ln.split()
        loc, rem = p[1].split(":"), p[2].split(":")
        if int(loc[1], 16) == weir_port and int(rem[1], 16) == client_port:
            return int(p[3], 16)
    return None


NEVER_READ = {
    "ping": lambda i: PingFrame(0, opaque_data=struct.pack(">Q", i)).serialize(),
    "settings": lambda i: SettingsFrame(0, settings={S_HEADER_TABLE_SIZE: 4096}).serialize(),
    # the connection window starts at 65535: 100k increments of 1 stay far below 2^31-1
    "window_update": lambda i: WindowUpdateFrame(0, window_increment=1).serialize(),
}


@pytest.mark.parametrize("kind", list(NEVER_READ))
def test_flood_from_a_client_that_never_reads(target, kind):
    """100k PINGs / SETTINGS / WINDOW_UPDATEs from a client with a 4 KiB
    SO_RCVBUF that never calls recv during the flood (CVE-2019-9512/9515):
    weir closes the connection, with memory flat. The cut is seen from
    weir's side of the socket (/proc/net/tcp) or a refused write; what weir
    sent is read once the flood is over."""
    c = H2(target.port, rcvbuf=4096, timeout=30.0, handshake=False)
    make = NEVER_READ[kind]
    one = make(0)
    batch = 500
    cut_at = None
    end = time.monotonic() + DEADLINE
    i = 0
    while c.sent < NEVER_READ_FRAMES and time.monotonic() < end:
        data = b"".join(make(i + k) for k in range(batch)) if kind == "ping" else one * batch
        i += batch
        if not c.send(data, batch):
            # refused (weir closed) or timed out (weir stopped reading,
            # which it must not: asserted below)
            cut_at = c.sent
            break
        st = server_side_state(target.port, c.local_port)
        if st != TCP_ESTABLISHED:
            cut_at = c.sent
            break
    if cut_at is None:
        st = wait_for(lambda: server_side_state(target.port, c.local_port) != TCP_ESTABLISHED,
                      10.0)
        if st:
            cut_at = c.sent
    stalled = isinstance(c.send_failed, socket.timeout)
    # now read what weir sent
    c.sock.settimeout(5.0)
    c.drain(15.0)
    desc = c.outcome()
    if kind == "ping":
        desc += "; %d PING ACKs read afterwards" % c.pings_acked
    elif kind == "settings":
        desc += "; %d SETTINGS ACKs read afterwards" % c.settings_acked
    if stalled:
        desc += "; weir stopped reading (a write of ours timed out)"
    if cut_at is None:
        desc += "; weir's side of the socket still ESTABLISHED at the end"
    target.check_after(c, "never-reading client, %s flood" % kind, desc)
    assert not stalled, "weir stopped reading the connection during a %s flood: %s" % (kind, desc)
    assert cut_at is not None, "weir did not close a never-reading client's %s flood (%d frames): %s" % (
        kind, c.sent, desc)
    if c.goaway is not None and c.goaway[0] != NO_ERROR:
        assert c.goaway[0] == ENHANCE_YOUR_CALM, desc


# ---------------------------------------------------------------------------
# empty frames (CVE-2019-9518)
# ---------------------------------------------------------------------------


def test_empty_data_flood(target):
    """One POST stream, then DATA frames with no payload and no END_STREAM:
    GOAWAY ENHANCE_YOUR_CALM (or a close) within a bounded number."""
    c = H2(target.port)
    sid = c.new_id()
    c.send(c.headers(sid, c.block("/empty", "POST"), end_stream=False), 1)
    empty = DataFrame(sid, data=b"").serialize()
    cut = flood(c, lambda i: (empty, 1), cap=FLOOD_CAP, per_send=10)
    desc = c.outcome()
    target.check_after(c, "empty DATA flood", desc)
    assert_cut(c, "empty DATA flood", cut, (ENHANCE_YOUR_CALM,))


def test_empty_headers_flood(target):
    """Stream after stream, a HEADERS frame with an empty block (END_HEADERS,
    no END_STREAM): each is malformed; GOAWAY ENHANCE_YOUR_CALM (or a close)
    within a bounded number."""
    c = H2(target.port)

    def make(i):
        return c.headers(c.new_id(), b"", end_stream=False), 1
    cut = flood(c, make, cap=FLOOD_CAP, per_send=10)
    desc = c.outcome()
    target.check_after(c, "empty HEADERS flood", desc)
    assert_cut(c, "empty HEADERS flood", cut, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR))


def test_empty_headers_and_continuations_under_the_continuation_limit(target):
    """Valid requests, each sent as an empty HEADERS frame, 7 empty
    CONTINUATIONs, then the block in a last CONTINUATION and END_STREAM in
    an empty DATA: nghttp2's 8-CONTINUATION limit never trips, so only weir's
    own count of empty frames can cut it (GOAWAY ENHANCE_YOUR_CALM or a
    close)."""
    c = H2(target.port)

    def make(i):
        sid = c.new_id()
        out = [c.headers(sid, b"", end_stream=False, end_headers=False)]
        out += [ContinuationFrame(sid, data=b"").serialize()] * 7
        out.append(ContinuationFrame(sid, data=c.block("/ec"), flags=["END_HEADERS"]).serialize())
        out.append(DataFrame(sid, data=b"", flags=["END_STREAM"]).serialize())
        return b"".join(out), 10
    cut = flood(c, make, cap=FLOOD_CAP, per_send=1)
    desc = c.outcome()
    target.check_after(c, "empty HEADERS + 7 empty CONTINUATIONs per stream", desc,
                       "%d streams answered" % len(c.status))
    assert_cut(c, "empty HEADERS/CONTINUATION flood", cut, (ENHANCE_YOUR_CALM,))


# ---------------------------------------------------------------------------
# SETTINGS entries, frame sizes, windows
# ---------------------------------------------------------------------------


def test_too_many_settings_entries(target):
    """One SETTINGS frame with 100 entries: GOAWAY ENHANCE_YOUR_CALM (or a
    close) after that one frame."""
    c = H2(target.port)
    c.poll(0.3)
    payload = struct.pack(">HL", S_INITIAL_WINDOW_SIZE, 65535) * 100
    c.send(frame(0x4, 0, 0, payload), 1)
    cut = wait_cut(c)
    desc = c.outcome()
    target.check_after(c, "SETTINGS with 100 entries", desc)
    assert_cut(c, "too many SETTINGS entries", cut, (ENHANCE_YOUR_CALM,))


def test_frame_longer_than_max_frame_size(target):
    """A DATA frame header announcing 16 MiB on an open stream (16384 is
    weir's SETTINGS_MAX_FRAME_SIZE), its payload following: GOAWAY
    FRAME_SIZE_ERROR (or a close), never a 16 MiB buffer."""
    c = H2(target.port)
    sid = c.new_id()
    c.send(c.headers(sid, c.block("/big", "POST"), end_stream=False), 1)
    n = (1 << 24) - 1
    head = struct.pack(">BHBBL", (n >> 16) & 0xff, n & 0xffff, 0x0, 0, sid)
    c.send(head, 1)
    chunk = b"z" * 65536
    sent = 0
    while sent < n and not c.cut():
        k = min(len(chunk), n - sent)
        if not c.raw(chunk[:k]):
            break
        sent += k
        c.poll(0)
    cut = wait_cut(c)
    desc = c.outcome() + "; %d payload bytes written" % sent
    target.check_after(c, "frame of 16 MiB", desc)
    assert_cut(c, "oversized frame", cut, (FRAME_SIZE_ERROR,))


def test_data_beyond_the_stream_window(target):
    """A POST to an origin that never reads, then up to 16 MiB of DATA with no
    regard for the 65535 octets weir advertised for the stream and the
    WINDOW_UPDATEs it sends as the upstream socket takes the bytes (the
    kernel takes a few MiB before the origin's stall reaches weir):
    the stream is reset FLOW_CONTROL_ERROR (or the connection cut with it),
    and weir does not buffer what it did not grant."""
    c = H2(target.port)
    sid = c.new_id()
    c.send(c.headers(sid, c.block("/stall/window", "POST"), end_stream=False), 1)
    piece = DataFrame(sid, data=b"w" * 16384).serialize()
    cut = flood(c, lambda i: (piece, 1), cap=1024, per_send=4, until=lambda: sid in c.rst)
    granted = 65535 + c.window_updates.get(sid, 0)
    desc = c.outcome() + "; stream window granted %d octets, %d sent" % (
        granted, 16384 * (c.sent - 1))
    target.check_after(c, "DATA beyond the stream window", desc)
    assert 16384 * (c.sent - 1) > granted, "test broken: weir granted all that was sent"
    assert cut or c.rst.get(sid) == FLOW_CONTROL_ERROR, (
        "DATA beyond the window weir granted was not refused: %s" % desc)
    if c.goaway is not None and c.goaway[0] != NO_ERROR:
        assert c.goaway[0] in (FLOW_CONTROL_ERROR, ENHANCE_YOUR_CALM), desc


# ---------------------------------------------------------------------------
# MadeYouReset (CVE-2025-8671): streams weir itself resets, repeated
# ---------------------------------------------------------------------------


def _mk_wu0(c):
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr", "POST"), end_stream=False) +
            WindowUpdateFrame(sid, window_increment=0).serialize(), 2)


def _mk_wu_overflow(c):
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr", "POST"), end_stream=False) +
            WindowUpdateFrame(sid, window_increment=(1 << 31) - 1).serialize(), 2)


def _mk_data_half_closed(c):
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr")) + DataFrame(sid, data=b"x").serialize(), 2)


def _mk_malformed(c):
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr", extra=[("X-Upper", "1")])), 1)


def _mk_host_mismatch(c):
    # well-formed for nghttp2; weir's own check (Host disagrees with :authority) resets it
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr", extra=[("host", "other.example")])), 1)


def _mk_content_length(c):
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr", "POST", extra=[("content-length", "5")]),
                      end_stream=False) +
            DataFrame(sid, data=b"x", flags=["END_STREAM"]).serialize(), 2)


def _mk_self_dependency(c):
    sid = c.new_id()
    return (c.headers(sid, c.block("/myr"), priority=sid), 1)


MADE_YOU_RESET = {
    # name: (make, the RST_STREAM code per stream, GOAWAY codes accepted)
    "window_update_0": (_mk_wu0, PROTOCOL_ERROR, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)),
    "window_overflow": (_mk_wu_overflow, FLOW_CONTROL_ERROR,
                        (ENHANCE_YOUR_CALM, FLOW_CONTROL_ERROR)),
    "data_on_half_closed": (_mk_data_half_closed, STREAM_CLOSED,
                            (ENHANCE_YOUR_CALM, STREAM_CLOSED, PROTOCOL_ERROR)),
    "malformed_head": (_mk_malformed, PROTOCOL_ERROR, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)),
    "host_mismatch": (_mk_host_mismatch, PROTOCOL_ERROR, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)),
    "content_length_mismatch": (_mk_content_length, PROTOCOL_ERROR,
                                (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)),
    "self_dependency": (_mk_self_dependency, PROTOCOL_ERROR, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR)),
}


@pytest.mark.parametrize("kind", list(MADE_YOU_RESET))
def test_made_you_reset(target, kind):
    """Stream after stream, something weir answers with RST_STREAM: the
    streams are reset with the expected code, and the connection is cut
    (GOAWAY ENHANCE_YOUR_CALM, or the violation's own code, or a close)
    within a bounded number of frames."""
    mk, rst_code, goaway_codes = MADE_YOU_RESET[kind]
    c = H2(target.port)
    cut = flood(c, lambda i: mk(c), cap=FLOOD_CAP, per_send=10)
    desc = c.outcome()
    target.check_after(c, "MadeYouReset, %s" % kind, desc,
                       "%d requests reached the upstream" % len(target.b.requests))
    assert_cut(c, "MadeYouReset %s" % kind, cut, goaway_codes)
    if c.rst:
        assert rst_code in c.rst.values(), "%s: streams reset with %r, wanted %s" % (
            kind, c.rst_summary(), code_name(rst_code))
    # each stream was reset (or the connection cut at once): a cut that
    # came only because the streams piled up to the concurrency limit is
    # not this protection
    last = c.goaway[1] if c.goaway else c.next_id - 2
    left = c.open_streams(last)
    assert len(left) <= 20, ("%s: %d streams weir should have reset were left open (%r...), "
                             "then: %s" % (kind, len(left), left[:10], desc))


def test_made_you_reset_refused_streams(target):
    """128 streams held open, then new streams opened again and again
    beyond the limit, each refused (REFUSED_STREAM): the connection is cut
    (GOAWAY ENHANCE_YOUR_CALM or a close) within a bounded number."""
    c = H2(target.port)
    held = [c.new_id() for _ in range(128)]
    c.send(b"".join(c.headers(s, c.block("/held", "POST"), end_stream=False) for s in held), 128)
    got = target.b.wait_requests(128, timeout=30)
    assert len(got) == 128, "only %d of the 128 held streams reached the backend" % len(got)

    def make(i):
        return c.headers(c.new_id(), c.block("/refused")), 1
    cut = flood(c, make, cap=FLOOD_CAP, per_send=10)
    desc = c.outcome()
    target.check_after(c, "MadeYouReset, streams beyond the limit", desc)
    assert_cut(c, "refused-stream flood", cut, (ENHANCE_YOUR_CALM, PROTOCOL_ERROR,
                                                 REFUSED_STREAM))
    assert not [r for r in target.b.requests if r.path == "/refused"]
