#!/usr/bin/python3
"""Writes the seed corpus of the h2 fuzz target (t/fuzz/h2_fuzz.c) into
t/fuzz/corpus/h2/, and the HTTP/2 seeds of the proxy target into
t/fuzz/corpus/proxy/ (h2c-*).

Frames come from python3-hyperframe, header blocks from python3-hpack (one
encoder per connection, so later blocks use the dynamic table): Debian's
packages, `apt-get install python3-hyperframe python3-hpack`; run it with
Debian's /usr/bin/python3. The seeds are scripts of the targets' steps (see
the comment at the top of each target); the h2 target sends the preface
itself, the proxy target's seeds carry it.

    /usr/bin/python3 t/fuzz/h2_seeds.py
"""
import os
import struct
import sys

try:
    import hpack
    from hyperframe import frame as hf
except ImportError:
    sys.exit("h2_seeds.py: needs python3-hyperframe and python3-hpack (Debian packages)")

HERE = os.path.dirname(os.path.abspath(__file__))
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def n_operand(n):
    assert 1 <= n <= 0xFFFF
    return bytes([n]) if n < 255 else b"\xff" + struct.pack(">H", n)


class Script:
    """The steps of one input. The h2 target's opcodes; the proxy target's
    differ (see proxy())."""

    def __init__(self):
        self.out = bytearray()
        self.enc = hpack.Encoder()

    def new_connection(self):
        self.enc = hpack.Encoder()

    def _chunks(self, op, data):
        for i in range(0, len(data), 0xFFFF):
            part = data[i:i + 0xFFFF]
            self.out += bytes([op]) + n_operand(len(part)) + part

    def client(self, *frames):
        data = b"".join(f if isinstance(f, bytes) else f.serialize() for f in frames)
        self._chunks(0, data)
        return self

    def upstream(self, data):
        self._chunks(1, data)
        return self

    def op(self, *raw):
        self.out += bytes(raw)
        return self

    def block(self, headers):
        return self.enc.encode(headers)

    def headers(self, sid, headers, end_stream=True, **kw):
        flags = ["END_HEADERS"] + (["END_STREAM"] if end_stream else [])
        if "depends_on" in kw:
            flags.append("PRIORITY")
        return hf.HeadersFrame(sid, data=self.block(headers), flags=flags, **kw)


def req(method="GET", path="/", authority="x", scheme="http", extra=()):
    return [(":method", method), (":scheme", scheme), (":authority", authority),
            (":path", path)] + list(extra)


def settings(**kw):
    return hf.SettingsFrame(0, settings={getattr(hf.SettingsFrame, k.upper()): v
                                         for k, v in kw.items()})


ACK = hf.SettingsFrame(0, flags=["ACK"])


def ok(body=b"ok", status="200 OK", extra=b""):
    return (b"HTTP/1.1 " + status.encode() + b"\r\nContent-Length: " +
            str(len(body)).encode() + b"\r\n" + extra + b"\r\n" + body)


def h2_seeds():
    seeds = {}

    s = Script()
    s.client(settings(), ACK, s.headers(1, req()))
    s.upstream(ok())
    seeds["get"] = s

    s = Script()
    s.client(settings(), ACK,
             s.headers(1, req("POST", "/up", extra=[("content-length", "5"),
                                                     ("content-type", "text/plain")]),
                       end_stream=False),
             hf.DataFrame(1, data=b"hello", flags=["END_STREAM"]))
    s.upstream(ok(b"created", "201 Created"))
    seeds["post-data"] = s

    s = Script()
    s.client(settings(), ACK, s.headers(1, req("POST", "/stream"), end_stream=False),
             hf.DataFrame(1, data=b"abc"))
    s.client(hf.DataFrame(1, data=b"defgh"))
    s.upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    s.client(hf.DataFrame(1, data=b"", flags=["END_STREAM"]))
    s.upstream(b"0\r\n\r\n")
    seeds["post-stream-chunked"] = s

    s = Script()
    s.client(settings(), hf.PingFrame(0, opaque_data=b"12345678"), ACK,
             hf.PingFrame(0, opaque_data=b"abcdefgh", flags=["ACK"]), s.headers(1, req()),
             hf.PingFrame(0, opaque_data=b"87654321"))
    s.upstream(ok())
    seeds["ping"] = s

    # a small initial window: the response waits for WINDOW_UPDATEs
    s = Script()
    s.client(settings(initial_window_size=10), ACK, s.headers(1, req("GET", "/big")))
    s.upstream(ok(b"z" * 3000))
    s.client(hf.WindowUpdateFrame(1, window_increment=100))
    s.client(hf.WindowUpdateFrame(0, window_increment=100000),
             hf.WindowUpdateFrame(1, window_increment=100000))
    seeds["window-update"] = s

    s = Script()
    s.client(settings(), ACK, s.headers(1, req("GET", "/slow")))
    s.client(hf.RstStreamFrame(1, error_code=8))
    s.upstream(ok(b"late"))
    s.client(s.headers(3, req("GET", "/next")))
    s.upstream(ok(b"next"))
    seeds["rst-stream"] = s

    s = Script()
    blk = s.block(req("GET", "/cont", extra=[("x-long", "v" * 200), ("accept", "*/*")]))
    s.client(settings(), ACK, hf.HeadersFrame(1, data=blk[:10], flags=["END_STREAM"]),
             hf.ContinuationFrame(1, data=blk[10:40]),
             hf.ContinuationFrame(1, data=blk[40:], flags=["END_HEADERS"]))
    s.upstream(ok())
    seeds["continuation"] = s

    s = Script()
    s.client(settings(), ACK, hf.PriorityFrame(3, depends_on=0, stream_weight=200),
             hf.PriorityFrame(5, depends_on=3, stream_weight=10, exclusive=True),
             s.headers(1, req("GET", "/p1"), depends_on=3, stream_weight=50, exclusive=False),
             s.headers(7, req("GET", "/p7"), depends_on=1, stream_weight=1, exclusive=True))
    s.upstream(ok(b"one"))
    s.op(9, 1)
    s.upstream(ok(b"seven"))
    seeds["priority"] = s

    s = Script()
    s.client(settings(), ACK, s.headers(1, req("GET", "/g")),
             hf.GoAwayFrame(0, last_stream_id=0, error_code=0, additional_data=b"bye"))
    s.upstream(ok())
    seeds["goaway"] = s

    s = Script()
    s.client(settings(max_concurrent_streams=100), ACK,
             *[s.headers(i, req("GET", "/m%d" % i)) for i in (1, 3, 5, 7)])
    s.upstream(ok(b"m1"))
    s.op(9, 1)
    s.upstream(ok(b"m3"))
    s.op(9, 2)
    s.upstream(ok(b"m5" * 100))
    s.op(9, 3)
    s.upstream(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
    s.client(s.headers(9, req("POST", "/m9", extra=[("content-length", "3")]),
                       end_stream=False), hf.DataFrame(9, data=b"xyz", flags=["END_STREAM"]))
    s.op(9, 0)
    s.upstream(ok(b"m9"))
    seeds["streams"] = s

    # the same fields twice: the second block is dynamic-table references
    s = Script()
    h = req("GET", "/d", extra=[("user-agent", "h2seed/1"), ("accept-language", "en")])
    s.client(settings(), ACK, s.headers(1, h), s.headers(3, h))
    s.upstream(ok(b"d1"))
    s.op(9, 1)
    s.upstream(ok(b"d3"))
    seeds["hpack-dynamic"] = s

    s = Script()
    s.client(settings(), ACK,
             s.headers(1, req("GET", "/c", extra=[("cookie", "a=1"), ("accept", "*/*"),
                                                   ("cookie", "b=2"), ("cookie", "c=3")])))
    s.upstream(ok(b"c", extra=b"Set-Cookie: s=1\r\nSet-Cookie: t=2\r\n"))
    seeds["cookies"] = s

    s = Script()
    s.client(settings(), ACK,
             s.headers(1, req("POST", "/t", extra=[("te", "trailers")]), end_stream=False),
             hf.DataFrame(1, data=b"body"),
             s.headers(1, [("x-checksum", "abc")], end_stream=True))
    s.upstream(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: x-t\r\n\r\n"
               b"2\r\nok\r\n0\r\nx-t: 1\r\n\r\n")
    seeds["trailers"] = s

    s = Script()
    s.client(settings(), ACK,
             s.headers(1, req("GET", "/", extra=[("Upper", "x")])),
             s.headers(3, req("GET", "/", extra=[("connection", "close")])),
             s.headers(5, req("GET", "/", extra=[("te", "gzip")])),
             s.headers(7, [(":path", "/"), (":method", "GET"), ("x", "1"), (":scheme", "http")]),
             s.headers(9, req("GET", "/", extra=[("host", "other")])),
             s.headers(11, [(":method", "GET"), (":scheme", "http"), (":path", "/")]),
             s.headers(13, req("GET", "noslash")),
             s.headers(15, req("GET", "/", extra=[("content-length", "1"),
                                                  ("content-length", "2")])),
             s.headers(17, req("GET", "/", scheme="ftp")),
             s.headers(19, [(":method", "CONNECT"), (":authority", "x:443")]),
             s.headers(21, req("OPTIONS", "*")),
             s.headers(23, req("GET", "/", extra=[(":status", "200")])))
    s.upstream(ok())
    seeds["malformed-heads"] = s

    s = Script()
    s.client(settings(), ACK, s.headers(1, req("GET", "/", extra=[("x-big", "b" * 3000)])))
    s.client(s.headers(3, req("GET", "/after")))
    s.upstream(ok())
    seeds["431"] = s

    s = Script()
    s.client(settings(), ACK,
             s.headers(1, req("POST", "/big", extra=[("content-length", "200000")]),
                       end_stream=False),
             hf.DataFrame(1, data=b"q" * 1000))
    s.client(s.headers(3, req("POST", "/big2"), end_stream=False),
             hf.DataFrame(3, data=b"w" * 3000))
    s.op(5, 3, 0, 0x7d, 0x00)            # 32000 bytes of DATA
    s.upstream(b"HTTP/1.1 100 Continue\r\n\r\n")
    s.op(5, 3, 0, 0x76, 0xff)            # up to the stream window
    s.upstream(ok(b"got"))
    s.op(5, 3, 1, 0x3e, 0x80)            # past max_body_size, END_STREAM
    seeds["413-and-window"] = s

    s = Script()
    s.client(settings(header_table_size=0, enable_push=0, max_frame_size=20000), ACK,
             s.headers(1, req("HEAD", "/h")))
    s.upstream(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
    s.client(s.headers(3, req("GET", "/x")))
    s.op(9, 0)
    s.op(8, 0, 0x42, 0x68)               # 200 with 17000 bytes: frames past 16384
    seeds["settings-head"] = s

    s = Script()
    s.client(settings(), ACK,
             hf.HeadersFrame(1, data=s.block(req("POST", "/pad")),
                             flags=["END_HEADERS", "PADDED"], pad_length=20),
             hf.DataFrame(1, data=b"padded", pad_length=5, flags=["PADDED"]),
             hf.DataFrame(1, data=b"", pad_length=3, flags=["END_STREAM", "PADDED"]))
    s.upstream(ok())
    seeds["padded"] = s

    # an upload the upstream answers early (full duplex), the client goes on
    s = Script()
    s.client(settings(), ACK,
             s.headers(1, req("PUT", "/early", extra=[("content-length", "40000")]),
                       end_stream=False),
             hf.DataFrame(1, data=b"e" * 6000))
    s.op(5, 1, 0, 0x27, 0x10)            # 10000 more
    s.upstream(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 3\r\nConnection: close"
               b"\r\n\r\nbig")
    s.op(10)
    s.op(5, 1, 0, 0x3e, 0x80)            # 16000 more
    s.op(5, 1, 1, 0x1f, 0x40)            # the last 8000, END_STREAM
    seeds["early-answer"] = s

    # the client stops reading a large response, then goes
    s = Script()
    s.client(settings(), ACK, s.headers(1, req("GET", "/huge")))
    s.op(15)
    s.op(8, 0x08, 0xff, 0xff)
    s.op(15)
    s.client(hf.WindowUpdateFrame(0, window_increment=1 << 20),
             hf.WindowUpdateFrame(1, window_increment=1 << 20))
    s.op(15)
    seeds["paused-client"] = s

    # floods: empty DATA frames (glitches), PINGs, SETTINGS
    s = Script()
    s.client(settings(), ACK, s.headers(1, req("POST", "/f"), end_stream=False))
    s.client(hf.DataFrame(1, data=b""))
    s.op(14, 150)
    seeds["flood-empty-data"] = s

    s = Script()
    s.client(settings(), ACK)
    s.client(hf.PingFrame(0, opaque_data=b"pingping"))
    s.op(14, 255)
    s.client(settings(max_concurrent_streams=5))
    s.op(14, 40)
    seeds["flood-ping-settings"] = s

    s = Script()
    frames = [settings(), ACK]
    for i in range(1, 260, 2):
        frames += [s.headers(i, req("GET", "/r")), hf.RstStreamFrame(i, error_code=8)]
    s.client(*frames)
    s.upstream(ok())
    seeds["rapid-reset"] = s

    # the harness's structured steps
    s = Script()
    s.client(settings(), ACK)
    s.op(4, 1, 0x08)                     # GET /s1, END_STREAM
    s.op(8, 0, 0, 5)                     # 200, 5 bytes
    s.op(4, 3, 0x11, 0x00, 0x10)         # POST /s3, content-length 16
    s.op(5, 3, 0x01, 0x00, 0x10)         # 16 bytes, END_STREAM
    s.op(9, 1)
    s.op(8, 1, 0x00, 0x20)               # chunked, 32 bytes and a trailer
    s.op(4, 5, 0x2a | 0x40 | 0x80)       # HEAD, cookies, te trailers + Host, cut
    s.op(9, 2)
    s.op(8, 7, 0x00, 0x00)               # hop-by-hop fields to strip
    s.op(4, 7, 0x08 | 0x06)              # CONNECT: 501
    s.op(4, 9, 0x08 | 0x07)              # OPTIONS *
    s.op(9, 3)
    s.op(8, 2, 0, 0)                     # 204
    s.op(6, 0, 0x00, 0x01, 0x00, 0x00)   # WINDOW_UPDATE connection
    s.op(7, 9, 8)                        # RST_STREAM CANCEL
    seeds["structured"] = s

    s = Script()
    s.client(settings(), ACK)
    fields = b""
    for n, v in [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"x"),
                 (b":path", b"/l"), (b"cookie", b"a=1"), (b"cookie", b"b=2"),
                 (b"accept", b"*/*")]:
        fields += bytes([len(n)]) + n + bytes([len(v)]) + v
    s.op(3, 0x01 | 0x02 | 0x04 | 0x08, 1)
    s.out += n_operand(len(fields)) + fields
    s.op(8, 4, 0, 9)                     # 304 with a length
    s.op(4, 3, 0x08)
    s.op(9, 1)
    s.op(8, 6, 0, 20)                    # a body 10 short, then FIN
    s.op(4, 5, 0x00 | 0x10, 0x00, 0x04)  # GET with content-length 4 and no body yet
    s.op(5, 5, 0x03, 0x00, 0x04)         # padded, END_STREAM
    s.op(9, 2)
    s.op(8, 3, 0, 30)                    # close-delimited
    s.op(12)                             # the client shuts its write side
    seeds["structured-2"] = s

    s = Script()
    s.client(settings(), ACK, s.headers(1, req("GET", "/a")))
    s.upstream(ok())
    s.op(13)                             # a new connection
    s.new_connection()
    s.client(settings(), ACK, s.headers(1, req("GET", "/b")))
    s.op(9, 1)
    s.upstream(ok(b"second"))
    s.op(11)
    seeds["reconnect"] = s

    # the worker drains: shutdown notice, then the last stream's GOAWAY
    s = Script()
    s.client(settings(), ACK, s.headers(1, req("GET", "/d1")))
    s.op(16, 0)
    s.op(18)
    s.client(s.headers(3, req("GET", "/d3")))
    s.upstream(ok(b"drained"))
    seeds["drain"] = s

    # the 40 ms listener: client_body_timeout, send_timeout, keepalive
    s = Script()
    s.op(17)
    s.new_connection()
    s.client(settings(), ACK,
             s.headers(1, req("POST", "/slow", extra=[("content-length", "10")]),
                       end_stream=False),
             hf.DataFrame(1, data=b"abc"))
    s.op(18)
    s.client(s.headers(3, req("POST", "/slow2"), end_stream=False),
             hf.DataFrame(3, data=b"abc"))
    s.op(18)
    s.op(15)
    s.client(s.headers(5, req("GET", "/huge")))
    s.op(9, 0)
    s.op(8, 0x08, 0xff, 0xff)
    s.op(18)
    s.op(15)
    s.op(18)
    s.op(18)
    seeds["short-timeouts"] = s

    s = Script()
    s.op(17)
    s.op(18)
    s.op(17)
    s.new_connection()
    s.client(settings(), ACK, s.headers(1, req("GET", "/k")))
    s.upstream(ok())
    s.op(17)
    s.new_connection()
    s.client(settings(), ACK, s.headers(1, req("GET", "/k")))
    s.upstream(ok())
    s.op(18)
    seeds["idle-timeouts"] = s
    return seeds


def proxy_seeds():
    """HTTP/2 over the proxy target's plain listener (http2: true): opcodes
    0 client sends, 1 upstream sends (after the PROXY v1 line weir sends),
    4 upstream FIN."""
    seeds = {}

    def steps(*parts):
        out = bytearray()
        for op, data in parts:
            for i in range(0, len(data), 0xFFFF):
                part = data[i:i + 0xFFFF]
                out += bytes([op]) + n_operand(len(part)) + part
        return out

    enc = hpack.Encoder()
    first = (PREFACE + settings().serialize() + ACK.serialize() +
             hf.HeadersFrame(1, data=enc.encode(req("GET", "/h2")),
                             flags=["END_HEADERS", "END_STREAM"]).serialize())
    seeds["h2c-get"] = steps((0, first), (1, ok(b"h2")))

    enc = hpack.Encoder()
    post = (PREFACE + settings().serialize() +
            hf.HeadersFrame(1, data=enc.encode(req("POST", "/up", extra=[("content-length",
                                                                        "4")])),
                            flags=["END_HEADERS"]).serialize() +
            hf.DataFrame(1, data=b"body", flags=["END_STREAM"]).serialize())
    more = hf.HeadersFrame(3, data=enc.encode(req("GET", "/two")),
                           flags=["END_HEADERS", "END_STREAM"]).serialize()
    seeds["h2c-post-streams"] = steps((0, post[:10]), (0, post[10:]), (1, ok(b"one")),
                                      (0, more), (1, ok(b"two")), (4, b""))
    # the preface cut inside, then a head that is not HTTP/2 after it
    seeds["h2c-preface-cut"] = steps((0, PREFACE[:7]), (0, PREFACE[7:] + b"GET / HTTP/1.1\r\n"))
    # a preface on the PROXY listener (op 7 switches to it)
    enc = hpack.Encoder()
    out = bytearray(b"\x07")
    out += steps((0, b"PROXY TCP4 1.2.3.4 5.6.7.8 1111 80\r\n" + PREFACE +
                  settings().serialize() +
                  hf.HeadersFrame(1, data=enc.encode(req()),
                                  flags=["END_HEADERS", "END_STREAM"]).serialize()),
                 (1, ok(b"pp")))
    seeds["h2c-after-proxy-header"] = out
    return seeds


def write(dirname, name, data):
    os.makedirs(dirname, exist_ok=True)
    with open(os.path.join(dirname, name), "wb") as f:
        f.write(bytes(data))


def main():
    for name, s in h2_seeds().items():
        assert len(s.out) <= 16384, name  # run.sh's -max_len for h2
        write(os.path.join(HERE, "corpus", "h2"), name, s.out)
    for name, data in proxy_seeds().items():
        write(os.path.join(HERE, "corpus", "proxy"), name, data)


if __name__ == "__main__":
    main()
