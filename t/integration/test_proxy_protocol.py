"""Module proxy_protocol (modules/proxy_protocol/proxy_protocol.c, pp_wire.h):
the PROXY protocol, v1 and v2, on both sides.

Listener side: a `proxy_protocol: true` listener reads a header before any
HTTP byte; the headers module forwards $remote_addr, $remote_port,
$server_addr and $server_port to an echo backend, so each test sees the
addresses weir derived. A missing, malformed, truncated or too slow header
closes the connection with no HTTP byte sent and nothing forwarded; the
refusals are logged at most once a second, with a count of the others.
proxy_protocol_from limits who may send one: any other peer is plain HTTP.

Also: unix and IPv6 listeners (the IPv6 tests need ::1), a reload while a
header is half sent, refusal at the first bad byte, the 107- and 4096-byte
limits, config errors with file:line:col.

Upstream side: `send_proxy_protocol: v1|v2` puts a header in front of every
new upstream connection (PPOrigin here parses it), and such connections are
pooled apart by that header; chained (a header in, one out), over an Upgrade
tunnel, and after the origin closes an idle connection.

With module tls on the same listener: the PROXY header comes first, then
TLS (apart, or in one segment with the ClientHello), an untrusted peer
starts with TLS, and a ClientHello without the header is refused.

Every socket operation has a generous timeout; nothing asserts a duration."""

import json
import re
import signal
import socket
import struct
import subprocess
import time

import pytest

from conftest import (MODULES_DIR, WEIR_BIN, Eof, Headers, RawUpstream, Reader, connect,
                      free_port, parse_headers, read_response, wait_for)
from tlsclient import bio_handshake, first_flight

MODULES = ["router", "lb_roundrobin", "proxy_protocol", "headers"]
ADDR_HEADERS = {"set": {"X-Remote-Addr": "$remote_addr", "X-Remote-Port": "$remote_port",
                        "X-Server-Addr": "$server_addr", "X-Server-Port": "$server_port",
                        "X-Forwarded-For": "$proxy_add_x_forwarded_for"}}
OP = 10.0          # socket operations
CLOSE_WAIT = 6.0   # how long a refused connection may take to be closed

V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
REQ = b"GET /echo HTTP/1.1\r\nHost: pp.test\r\n\r\n"
REQ_CLOSE = b"GET /echo HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n"


# ------------------------------------------------------------------ helpers


def v1(proto, src=None, dst=None, sport=None, dport=None):
    if proto == "UNKNOWN":
        return b"PROXY UNKNOWN\r\n"
    return ("PROXY %s %s %s %d %d\r\n" % (proto, src, dst, sport, dport)).encode()


def v2(cmd=1, fam=0x11, addrs=b"", tlvs=b"", version=2, length=None):
    body = addrs + tlvs
    n = len(body) if length is None else length
    return V2_SIG + bytes([(version << 4) | cmd, fam]) + struct.pack("!H", n) + body


def v2_inet(src, dst, sport, dport, tlvs=b"", cmd=1):
    return v2(cmd, 0x11, socket.inet_pton(socket.AF_INET, src) +
              socket.inet_pton(socket.AF_INET, dst) + struct.pack("!HH", sport, dport), tlvs)


def v2_inet6(src, dst, sport, dport, tlvs=b""):
    return v2(1, 0x21, socket.inet_pton(socket.AF_INET6, src) +
              socket.inet_pton(socket.AF_INET6, dst) + struct.pack("!HH", sport, dport), tlvs)


def tlv(t, value):
    return bytes([t]) + struct.pack("!H", len(value)) + value


def _start(weir, backend, listener=None, limits=None):
    """weir with a proxy_protocol listener (plus the keys in listener) in front
    of an echo backend, forwarding the address variables."""
    b = backend("b1")
    w = weir()
    lst = {"proxy_protocol": True}
    lst.update(listener or {})
    ups = {"u": {"balancer": "roundrobin", "servers": [b.addr]}}
    w.start(w.config(upstreams=ups, routes=[{"path": "/", "upstream": "u"}], modules=MODULES,
                     listener=lst, limits=limits, request_headers=ADDR_HEADERS))
    return w, b


def _client(port):
    s = connect(port, timeout=OP)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def _send_slowly(s, data):
    """One byte per segment (TCP_NODELAY is on), with a tiny pause between."""
    for i in range(len(data)):
        s.sendall(data[i:i + 1])
        time.sleep(0.003)


def _seen(r):
    """(remote addr, remote port, server addr, server port) as the backend saw them."""
    assert r is not None and r.status == 200, r
    h = Headers((n, v) for n, v in r.json()["headers"])
    return (h.get("X-Remote-Addr"), h.get("X-Remote-Port"), h.get("X-Server-Addr"),
            h.get("X-Server-Port"))


def _exchange(port, data, slow_prefix=None):
    """Send (optionally a byte-at-a-time prefix, then) data on a new connection;
    return (response, client's own port)."""
    s = _client(port)
    try:
        cport = s.getsockname()[1]
        if slow_prefix:
            _send_slowly(s, slow_prefix)
        s.sendall(data)
        return read_response(Reader(s)), cport
    finally:
        s.close()


def _own(w, cport):
    """What the backend sees when the socket's own addresses are kept."""
    return ("127.0.0.1", str(cport), "127.0.0.1", str(w.port))


def _closed_silently(s, timeout=CLOSE_WAIT):
    """Reads until weir closes; returns (bytes received, how it ended)."""
    s.settimeout(timeout)
    got = bytearray()
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return bytes(got), "eof"
            got += d
    except ConnectionResetError:
        return bytes(got), "reset"
    except socket.timeout:
        return bytes(got), "still open"


def _assert_refused(w, b, data, half_close=False, wait=CLOSE_WAIT):
    s = _client(w.port)
    try:
        try:
            s.sendall(data)
            if half_close:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, how = _closed_silently(s, wait)
    finally:
        s.close()
    assert how in ("eof", "reset"), "weir kept the connection open (%r)" % got
    assert got == b"", "weir answered a refused connection: %r" % got
    assert b.connections == 0 and not b.requests, b.requests


def _assert_still_serves(w, b):
    """The worker is fine after the refusals: a good header is served, and
    its request is the only one the backend ever got."""
    r, _ = _exchange(w.port, v1("TCP4", "192.0.2.50", "192.0.2.51", 1234, 80) +
                     b"GET /good HTTP/1.1\r\nHost: pp.test\r\nConnection: close\r\n\r\n")
    assert _seen(r) == ("192.0.2.50", "1234", "192.0.2.51", "80")
    assert [q.path for q in b.requests] == ["/good"], b.requests


# ------------------------------------------------------- listener: accepted


def test_v1_tcp4(weir, backend):
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v1("TCP4", "192.0.2.10", "198.51.100.20", 40000, 8443) + REQ_CLOSE)
    assert _seen(r) == ("192.0.2.10", "40000", "198.51.100.20", "8443")
    # the request itself arrives untouched, and the header is not part of it
    doc = r.json()
    assert doc["method"] == "GET" and doc["path"] == "/echo"
    assert b.requests[0].raw_head.startswith(b"GET /echo HTTP/1.1\r\n")


def test_header_source_is_x_forwarded_for(weir, backend):
    w, b = _start(weir, backend)
    hdr = v1("TCP4", "192.0.2.10", "198.51.100.20", 40000, 8443)
    r, _ = _exchange(w.port, hdr + REQ_CLOSE)
    assert Headers(r.json()["headers"]).get("X-Forwarded-For") == "192.0.2.10"
    r, _ = _exchange(w.port, hdr + b"GET /echo HTTP/1.1\r\nHost: pp.test\r\n"
                     b"X-Forwarded-For: 10.9.8.7\r\nConnection: close\r\n\r\n")
    assert Headers(r.json()["headers"]).get("X-Forwarded-For") == "10.9.8.7, 192.0.2.10"


def test_v1_tcp4_edge_values(weir, backend):
    """Port 0 and 65535, address 0.0.0.0 and 255.255.255.255 are all valid."""
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v1("TCP4", "0.0.0.0", "255.255.255.255", 65535, 0) + REQ_CLOSE)
    assert _seen(r) == ("0.0.0.0", "65535", "255.255.255.255", "0")


def test_v1_tcp6(weir, backend):
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v1("TCP6", "2001:db8::1", "2001:db8:0:0:0:0:0:2", 51000, 443) +
                     REQ_CLOSE)
    assert _seen(r) == ("2001:db8::1", "51000", "2001:db8::2", "443")


def test_v1_tcp6_with_ipv4_tail(weir, backend):
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v1("TCP6", "::ffff:192.0.2.1", "2001:db8::2", 1, 2) + REQ_CLOSE)
    assert _seen(r) == ("::ffff:192.0.2.1", "1", "2001:db8::2", "2")


@pytest.mark.parametrize("line", [b"PROXY UNKNOWN\r\n",
                                  b"PROXY UNKNOWN ffff:: 1.2.3.4 anything at all\r\n"],
                         ids=["bare", "with-ignored-rest"])
def test_v1_unknown_keeps_socket_addresses(weir, backend, line):
    w, b = _start(weir, backend)
    r, cport = _exchange(w.port, line + REQ_CLOSE)
    assert _seen(r) == _own(w, cport)


def test_v2_inet(weir, backend):
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v2_inet("203.0.113.1", "203.0.113.2", 12345, 443) + REQ_CLOSE)
    assert _seen(r) == ("203.0.113.1", "12345", "203.0.113.2", "443")


def test_v2_inet6(weir, backend):
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v2_inet6("2001:db8:1::7", "2001:db8:2::9", 65535, 8080) + REQ_CLOSE)
    assert _seen(r) == ("2001:db8:1::7", "65535", "2001:db8:2::9", "8080")


@pytest.mark.parametrize("hdr", [
    v2(cmd=0, fam=0x00),
    # LOCAL: whatever family, addresses and bytes follow are skipped
    v2(cmd=0, fam=0x11, addrs=socket.inet_aton("9.9.9.9") * 2 + b"\x00\x01\x00\x02"),
    v2(cmd=0, fam=0xff, addrs=b"junk that LOCAL ignores"),
], ids=["unspec", "inet-ignored", "undefined-family"])
def test_v2_local_keeps_socket_addresses(weir, backend, hdr):
    w, b = _start(weir, backend)
    r, cport = _exchange(w.port, hdr + REQ_CLOSE)
    assert _seen(r) == _own(w, cport)


def test_v2_with_tlvs_skipped(weir, backend):
    tlvs = (tlv(0x01, b"h2") + tlv(0x02, b"authority.example") + tlv(0x04, b"") +
            tlv(0x03, b"\x12\x34\x56\x78") + tlv(0x20, b"\x01" + b"\x00" * 4) +
            tlv(0xE0, b"x" * 300))
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, v2_inet("198.18.0.1", "198.18.0.2", 1000, 2000, tlvs) + REQ_CLOSE)
    assert _seen(r) == ("198.18.0.1", "1000", "198.18.0.2", "2000")
    assert r.json()["path"] == "/echo"
    assert b.requests[0].raw_head.startswith(b"GET /echo HTTP/1.1\r\nHost: pp.test\r\n")


@pytest.mark.parametrize("hdr,want", [
    (v1("TCP4", "192.0.2.77", "192.0.2.78", 5000, 6000),
     ("192.0.2.77", "5000", "192.0.2.78", "6000")),
    (v2_inet("192.0.2.87", "192.0.2.88", 7000, 8000, tlv(0x01, b"http/1.1")),
     ("192.0.2.87", "7000", "192.0.2.88", "8000")),
    (v2_inet6("2001:db8::aa", "2001:db8::bb", 7001, 8001),
     ("2001:db8::aa", "7001", "2001:db8::bb", "8001")),
], ids=["v1", "v2-tlv", "v2-inet6"])
def test_header_split_one_byte_per_segment(weir, backend, hdr, want):
    w, b = _start(weir, backend)
    r, _ = _exchange(w.port, REQ_CLOSE, slow_prefix=hdr)
    assert _seen(r) == want


def test_header_and_request_split_together(weir, backend):
    """The byte that completes the header is followed by the request's first
    bytes in the same segment, and the rest of the request comes later."""
    w, b = _start(weir, backend)
    hdr = v1("TCP4", "192.0.2.5", "192.0.2.6", 1111, 2222)
    s = _client(w.port)
    try:
        s.sendall(hdr[:20])
        time.sleep(0.05)
        s.sendall(hdr[20:] + REQ_CLOSE[:7])
        time.sleep(0.05)
        s.sendall(REQ_CLOSE[7:])
        r = read_response(Reader(s))
    finally:
        s.close()
    assert _seen(r) == ("192.0.2.5", "1111", "192.0.2.6", "2222")


@pytest.mark.parametrize("hdr", [v1("TCP4", "192.0.2.9", "192.0.2.10", 9, 10),
                                 v2_inet("192.0.2.9", "192.0.2.10", 9, 10)], ids=["v1", "v2"])
def test_header_and_request_in_one_segment(weir, backend, hdr):
    w, b = _start(weir, backend)
    body = b"0123456789" * 100
    req = (b"POST /echo HTTP/1.1\r\nHost: pp.test\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n\r\n%s" % (len(body), body))
    r, _ = _exchange(w.port, hdr + req)
    assert _seen(r) == ("192.0.2.9", "9", "192.0.2.10", "10")
    doc = r.json()
    assert doc["method"] == "POST" and doc["body_len"] == len(body)
    assert b.requests[0].body == body


def test_header_and_large_request_in_one_segment(weir, backend):
    """Header plus ~60 KiB of request in one send: nothing after the header is lost."""
    w, b = _start(weir, backend)
    body = bytes(range(256)) * 240
    req = (b"POST /echo HTTP/1.1\r\nHost: pp.test\r\nContent-Length: %d\r\n"
           b"Connection: close\r\n\r\n%s" % (len(body), body))
    r, _ = _exchange(w.port, v1("TCP4", "192.0.2.9", "192.0.2.10", 9, 10) + req)
    assert _seen(r) == ("192.0.2.9", "9", "192.0.2.10", "10")
    assert b.requests[0].body == body


def test_keepalive_two_requests_after_one_header(weir, backend):
    w, b = _start(weir, backend)
    want = ("192.0.2.33", "3333", "192.0.2.44", "4444")
    s = _client(w.port)
    try:
        rd = Reader(s)
        s.sendall(v1("TCP4", "192.0.2.33", "192.0.2.44", 3333, 4444) + REQ)
        r1 = read_response(rd)
        s.sendall(b"GET /echo?second HTTP/1.1\r\nHost: pp.test\r\n\r\n")
        r2 = read_response(rd)
    finally:
        s.close()
    assert _seen(r1) == want
    assert _seen(r2) == want
    assert r2.json()["query"] == "second"


def test_keepalive_pipelined_requests_after_one_header(weir, backend):
    """Header and two requests in one segment: both requests are served, both
    with the header's addresses."""
    w, b = _start(weir, backend)
    want = ("192.0.2.35", "3535", "192.0.2.45", "4545")
    s = _client(w.port)
    try:
        rd = Reader(s)
        s.sendall(v2_inet("192.0.2.35", "192.0.2.45", 3535, 4545) + REQ +
                  b"GET /echo?second HTTP/1.1\r\nHost: pp.test\r\n\r\n")
        r1 = read_response(rd)
        r2 = read_response(rd)
    finally:
        s.close()
    assert _seen(r1) == want and _seen(r2) == want
    assert r1.json()["query"] == "" and r2.json()["query"] == "second"


def test_v1_line_of_exactly_107_bytes_accepted(weir, backend):
    line = b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n"
    assert len(line) == 107
    w, b = _start(weir, backend)
    r, cport = _exchange(w.port, line + REQ_CLOSE)
    assert _seen(r) == _own(w, cport)


def test_v2_header_of_exactly_4096_bytes_accepted(weir, backend):
    """PP_PARSE_MAX: a v2 header of 4096 bytes (TLVs filling it) is read, sent
    in pieces of 1000 bytes."""
    addrs = v2_inet("192.0.2.61", "192.0.2.62", 6100, 6200)[16:]
    tlvs = tlv(0xE1, b"t" * (4096 - 16 - len(addrs) - 3))
    hdr = v2(1, 0x11, addrs, tlvs)
    assert len(hdr) == 4096
    w, b = _start(weir, backend)
    s = _client(w.port)
    try:
        for i in range(0, len(hdr), 1000):
            s.sendall(hdr[i:i + 1000])
            time.sleep(0.01)
        s.sendall(REQ_CLOSE)
        r = read_response(Reader(s))
    finally:
        s.close()
    assert _seen(r) == ("192.0.2.61", "6100", "192.0.2.62", "6200")


def test_request_then_client_half_close_is_served(weir, backend):
    """Header and request, then the client's FIN: the request is still answered."""
    w, b = _start(weir, backend)
    s = _client(w.port)
    try:
        s.sendall(v1("TCP4", "192.0.2.71", "192.0.2.72", 7100, 7200) + REQ_CLOSE)
        s.shutdown(socket.SHUT_WR)
        r = read_response(Reader(s))
    finally:
        s.close()
    assert _seen(r) == ("192.0.2.71", "7100", "192.0.2.72", "7200")


def _listeners_start(weir, ups, listeners):
    """weir with a plain 127.0.0.1 listener (the harness waits on it) and more;
    returns once every one of them takes connections."""
    w = weir()
    cfg = w.config(upstreams=ups, routes=[{"path": "/", "upstream": "u"}], modules=MODULES,
                   request_headers=ADDR_HEADERS)
    cfg["listeners"] = cfg["listeners"] + listeners
    w.start(cfg)
    for lst in listeners:
        assert wait_for(lambda: _can_connect(lst["address"]), OP), (lst, w.log())
    return w


def _open(address):
    """A connected socket to a listener address (unix:PATH or [v6]:PORT)."""
    if address.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(OP)
        try:
            s.connect(address[5:])
        except OSError:
            s.close()
            raise
        return s
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host.strip("[]"), int(port)), timeout=OP)


def _can_connect(address):
    try:
        _open(address).close()
        return True
    except OSError:
        return False


def _unix_exchange(path, data):
    s = _open("unix:" + path)
    try:
        s.sendall(data)
        return read_response(Reader(s))
    finally:
        s.close()


def test_unix_listener_reads_header(weir, backend, tmp_path):
    b = backend("b1")
    path = str(tmp_path / "pp.sock")
    _listeners_start(weir, {"u": {"servers": [b.addr]}},
                     [{"address": "unix:" + path, "proxy_protocol": True}])
    r = _unix_exchange(path, v1("TCP4", "192.0.2.81", "192.0.2.82", 8100, 8200) + REQ_CLOSE)
    assert _seen(r) == ("192.0.2.81", "8100", "192.0.2.82", "8200")
    r = _unix_exchange(path, b"PROXY UNKNOWN\r\n" + REQ_CLOSE)
    assert _seen(r)[0] == "unix:"
    # a unix peer is never in proxy_protocol_from, but without it a header is a must
    r = _unix_exchange(path, REQ_CLOSE)
    assert r is None, r


def test_unix_peer_untrusted_by_any_from_list(weir, backend, tmp_path):
    b = backend("b1")
    path = str(tmp_path / "pp.sock")
    _listeners_start(weir, {"u": {"servers": [b.addr]}},
                     [{"address": "unix:" + path, "proxy_protocol": True,
                       "proxy_protocol_from": ["0.0.0.0/0", "::/0"]}])
    r = _unix_exchange(path, REQ_CLOSE)
    assert _seen(r)[0] == "unix:"


@pytest.mark.parametrize("cidrs,trusted", [(["::1"], True), (["::1/128"], True), (["::/0"], True),
                                           (["::2/127"], False), (["127.0.0.1/8"], False),
                                           (["::ffff:0:0/96"], False)])
def test_ipv6_listener_from(weir, backend, tmp_path, cidrs, trusted):
    b = backend("b1")
    port6 = free_port()
    _listeners_start(weir, {"u": {"servers": [b.addr]}},
                     [{"address": "[::1]:%d" % port6, "proxy_protocol": True,
                       "proxy_protocol_from": cidrs}])
    s = socket.create_connection(("::1", port6), timeout=OP)
    try:
        cport = s.getsockname()[1]
        s.sendall((v1("TCP4", "192.0.2.91", "192.0.2.92", 9100, 9200) if trusted else b"") +
                  REQ_CLOSE)
        r = read_response(Reader(s))
    finally:
        s.close()
    if trusted:
        assert _seen(r) == ("192.0.2.91", "9100", "192.0.2.92", "9200")
    else:
        assert _seen(r) == ("::1", str(cport), "::1", str(port6))


def test_reload_while_a_header_is_half_sent(weir, backend):
    """A connection still in its PROXY handshake when the config is reloaded is
    kept by the old generation: the rest of the header and a request are
    served there (Connection: close); new connections go to the new one."""
    w, b = _start(weir, backend)
    _assert_still_serves(w, b)     # generation 1's worker is up and accepting
    hdr = v1("TCP4", "192.0.2.21", "192.0.2.22", 2100, 2200)
    s = _client(w.port)
    try:
        s.sendall(hdr[:10])
        time.sleep(0.3)            # for that worker to accept it (not a timing assert)
        cfg = w.config(upstreams={"u": {"servers": [b.addr]}},
                       routes=[{"path": "/", "upstream": "u"}], modules=MODULES,
                       listener={"proxy_protocol": True}, port=w.port,
                       request_headers=ADDR_HEADERS, response_headers={"set": {"X-Gen": "2"}})
        w.write(cfg)
        w.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload: generation 2 started" in w.log(), 5), w.log()
        r2, _ = _exchange(w.port, v1("TCP4", "192.0.2.31", "192.0.2.32", 3100, 3200) + REQ_CLOSE)
        assert r2.headers.get("X-Gen") == "2", r2
        assert _seen(r2) == ("192.0.2.31", "3100", "192.0.2.32", "3200")
        s.sendall(hdr[10:] + REQ)
        rd = Reader(s)
        r = read_response(rd)
        assert _seen(r) == ("192.0.2.21", "2100", "192.0.2.22", "2200")
        assert r.headers.get("X-Gen") is None, r
        assert (r.headers.get("Connection") or "").lower() == "close", r
        assert rd.read_to_eof() == b""
    finally:
        s.close()
    assert wait_for(lambda: "generation 1: all workers have exited" in w.log(), 5), w.log()


# ------------------------------------------------------- listener: refused


def test_refused_without_header(weir, backend):
    w, b = _start(weir, backend)
    _assert_refused(w, b, REQ_CLOSE)
    assert wait_for(lambda: "not a PROXY protocol header" in w.log(), 5), w.log()
    _assert_still_serves(w, b)


BAD_V1 = [
    ("double-space-after-PROXY", b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: malformed line"),
    ("double-space-between-addrs", b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n", "v1: malformed line"),
    ("double-space-before-dport", b"PROXY TCP4 1.2.3.4 5.6.7.8 1  2\r\n", "v1: malformed line"),
    ("bad-addr-octet", b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1: bad address"),
    ("bad-addr-leading-zero", b"PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n", "v1: bad address"),
    ("bad-addr-three-octets", b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1: bad address"),
    ("bad-addr-v6-in-tcp4", b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "v1: bad address"),
    ("bad-addr-v4-in-tcp6", b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "v1: bad address"),
    ("bad-addr-v6-two-dcolons", b"PROXY TCP6 1::2::3 ::1 1 2\r\n", "v1: bad address"),
    ("bad-addr-v6-zone", b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "v1: bad address"),
    ("port-65536", b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 80\r\n", "v1: bad port"),
    ("port-leading-zero", b"PROXY TCP4 1.2.3.4 5.6.7.8 080 80\r\n", "v1: bad port"),
    ("port-sign", b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 80\r\n", "v1: bad port"),
    ("bad-protocol", b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: protocol is not"),
    ("lowercase-protocol", b"PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n", "v1: protocol is not"),
    ("unknown-glued", b"PROXY UNKNOWNX\r\n", "v1: protocol is not"),
    ("lf-only", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1: malformed line"),
    ("missing-port", b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1: malformed line"),
    ("extra-field", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "v1: malformed line"),
    ("lowercase-proxy", b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY protocol header"),
]


@pytest.mark.parametrize("line,why", [(l, y) for _, l, y in BAD_V1], ids=[n for n, _, _ in BAD_V1])
def test_refused_malformed_v1(weir, backend, line, why):
    w, b = _start(weir, backend)
    _assert_refused(w, b, line + REQ_CLOSE)
    assert wait_for(lambda: why in w.log(), 5), (why, w.log())
    _assert_still_serves(w, b)


A4 = socket.inet_aton("1.2.3.4") + socket.inet_aton("5.6.7.8") + b"\x00\x01\x00\x02"
BAD_V2 = [
    ("version-1", v2(version=1, addrs=A4), "v2: version is not 2"),
    ("version-3", v2(version=3, addrs=A4), "v2: version is not 2"),
    ("command-2", v2(cmd=2, addrs=A4), "v2: command is neither"),
    ("udp4", v2(fam=0x12, addrs=A4), "v2: only TCP over IPv4 or IPv6"),
    ("udp6", v2(fam=0x22, addrs=b"\x00" * 36), "v2: only TCP over IPv4 or IPv6"),
    ("af-unix-stream", v2(fam=0x31, addrs=b"/tmp/a".ljust(108, b"\x00") * 2),
     "v2: only TCP over IPv4 or IPv6"),
    ("af-unspec-proxy", v2(fam=0x00), "v2: only TCP over IPv4 or IPv6"),
    ("undefined-family", v2(fam=0x41, addrs=A4), "v2: undefined address family"),
    ("addr-len-short", v2(fam=0x11, addrs=A4[:8]), "v2: address length too short"),
    ("tlv-past-end", v2(fam=0x11, addrs=A4, tlvs=b"\x01\x00\x09ab"), "v2: TLV runs past"),
    ("too-long", v2(fam=0x11, addrs=A4, length=5000), "v2: header too long"),
    ("too-long-by-one", v2(fam=0x11, addrs=A4, length=4096 - 16 + 1), "v2: header too long"),
    ("bad-signature", b"\r\n\r\n\x00\r\nQUIX\n" + v2(addrs=A4)[12:], "not a PROXY protocol"),
]


@pytest.mark.parametrize("hdr,why", [(h, y) for _, h, y in BAD_V2], ids=[n for n, _, _ in BAD_V2])
def test_refused_malformed_v2(weir, backend, hdr, why):
    w, b = _start(weir, backend)
    _assert_refused(w, b, hdr + REQ_CLOSE)
    assert wait_for(lambda: why in w.log(), 5), (why, w.log())
    _assert_still_serves(w, b)


@pytest.mark.parametrize("prefix", [
    b"G",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 65536",
    b"PROXY TCP4 1.2.3.4 5.6.7.256",
    b"PROXY TCP5",
    b"PROXY TCP6 1::2::",
    V2_SIG + b"\x11",
    V2_SIG + b"\x21\x12",
    V2_SIG[:5] + b"\x0e",
], ids=["http", "v1-port", "v1-octet", "v1-proto", "v1-v6", "v2-version", "v2-udp", "v2-sig"])
def test_refused_at_first_bad_byte(weir, backend, prefix):
    """A byte that rules a header out closes the connection then, sent a byte
    at a time and nothing after it: not at client_header_timeout (60 s)."""
    w, b = _start(weir, backend, limits={"client_header_timeout": "60s"})
    s = _client(w.port)
    try:
        try:
            _send_slowly(s, prefix)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, how = _closed_silently(s)
    finally:
        s.close()
    assert how in ("eof", "reset") and got == b"", (got, how)
    assert b.connections == 0


@pytest.mark.parametrize("part", [
    b"PROXY TCP4 1.2.3.4 ",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r",
    V2_SIG[:7],
    v2_inet("1.2.3.4", "5.6.7.8", 1, 2)[:20],
    v2_inet("1.2.3.4", "5.6.7.8", 1, 2, tlv(1, b"h2"))[:-1],
], ids=["v1-mid", "v1-before-lf", "v2-signature", "v2-addresses", "v2-tlv"])
def test_refused_truncated_then_half_closed(weir, backend, part):
    w, b = _start(weir, backend)
    _assert_refused(w, b, part, half_close=True)
    _assert_still_serves(w, b)
    assert wait_for(lambda: "truncated PROXY protocol header" in w.log(), 5), w.log()


@pytest.mark.parametrize("part", [b"PROXY TCP4 1.2.3.4 5.6", v2_inet("1.2.3.4", "5.6.7.8", 1, 2)[:15]],
                         ids=["v1", "v2"])
def test_refused_too_slow(weir, backend, part):
    """client_header_timeout bounds the handshake: a header that never
    completes is closed (the default, 10 s, would outlast CLOSE_WAIT)."""
    w, b = _start(weir, backend, limits={"client_header_timeout": "1s"})
    _assert_refused(w, b, part, wait=CLOSE_WAIT)
    _assert_still_serves(w, b)
    assert wait_for(lambda: "truncated PROXY protocol header" in w.log(), 5), w.log()


def test_refused_too_slow_even_while_trickling(weir, backend):
    """client_header_timeout is for the whole header: a byte every 200 ms does
    not keep a 1 s handshake alive (the 32-byte header would take 6 s)."""
    w, b = _start(weir, backend, limits={"client_header_timeout": "1s"})
    hdr = v1("TCP4", "1.2.3.4", "5.6.7.8", 1, 2)
    s = _client(w.port)
    sent = 0
    try:
        try:
            for i in range(len(hdr)):
                s.sendall(hdr[i:i + 1])
                sent += 1
                time.sleep(0.2)
            s.sendall(REQ_CLOSE)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got, how = _closed_silently(s)
    finally:
        s.close()
    assert got == b"" and how in ("eof", "reset"), (got, how)
    assert sent < len(hdr), "the whole header went in, one byte every 200 ms"
    assert b.connections == 0 and not b.requests


def test_header_sent_slowly_within_timeout_accepted(weir, backend):
    """The timeout is for the whole header, not for each byte: a header sent a
    byte at a time well inside it is read."""
    w, b = _start(weir, backend, limits={"client_header_timeout": "5s"})
    r, _ = _exchange(w.port, REQ_CLOSE, slow_prefix=v1("TCP4", "192.0.2.1", "192.0.2.2", 1, 2))
    assert _seen(r) == ("192.0.2.1", "1", "192.0.2.2", "2")


@pytest.mark.parametrize("line", [
    b"PROXY UNKNOWN " + b"x" * 92 + b"\r\n",                  # 108 bytes with CRLF
    b"PROXY UNKNOWN " + b"x" * 200 + b"\r\n",
    b"PROXY TCP6 " + b"1:2:3:4:5:6:7:8 " + b"0" * 100,        # no CRLF in sight
], ids=["unknown-108", "unknown-216", "tcp6-endless"])
def test_refused_v1_line_over_107_bytes(weir, backend, line):
    w, b = _start(weir, backend)
    _assert_refused(w, b, line + REQ_CLOSE)
    assert wait_for(lambda: "PROXY protocol header" in w.log(), 5), w.log()
    _assert_still_serves(w, b)


def test_v1_line_over_107_bytes_refused_without_crlf(weir, backend):
    """A sender that never ends its line is refused at byte 107 at the latest,
    not at the timeout: the connection stays open from the client's side."""
    w, b = _start(weir, backend, limits={"client_header_timeout": "60s"})
    _assert_refused(w, b, b"PROXY UNKNOWN " + b"y" * 120)
    assert wait_for(lambda: "v1: no CRLF within 107 bytes" in w.log(), 5), w.log()


_CLOSED_LINE = re.compile(r"connection from 127\.0\.0\.1 closed: .*?"
                          r"(?: \(and (\d+) more refused since the last line\))?$")


def test_refusals_logged_at_most_once_a_second(weir, backend):
    w, b = _start(weir, backend)
    n = 50
    for _ in range(n):
        s = _client(w.port)
        try:
            s.sendall(b"GET /flood HTTP/1.1\r\nHost: x\r\n\r\n")
            got, how = _closed_silently(s)
        finally:
            s.close()
        assert how in ("eof", "reset") and got == b"", (got, how)
    time.sleep(1.2)     # past the window: the next refusal is logged with the count
    s = _client(w.port)
    try:
        s.sendall(b"GET /last HTTP/1.1\r\nHost: x\r\n\r\n")
        _closed_silently(s)
    finally:
        s.close()

    def lines():
        return [ln for ln in w.log().splitlines() if "closed: " in ln]
    assert wait_for(lambda: any("more refused since the last line" in ln for ln in lines()), 5), \
        w.log()
    ls = lines()
    assert len(ls) <= 10, "%d refusal lines for %d refusals:\n%s" % (len(ls), n + 1, "\n".join(ls))
    # every refusal is either on a line of its own or counted by a later one
    total = 0
    for ln in ls:
        m = _CLOSED_LINE.search(ln)
        assert m, ln
        total += 1 + int(m.group(1) or 0)
    assert total == n + 1, "\n".join(ls)
    assert b.connections == 0 and not b.requests


# --------------------------------------------------------- proxy_protocol_from


def test_from_excluding_peer_serves_plain_http(weir, backend):
    w, b = _start(weir, backend, listener={"proxy_protocol_from": ["10.0.0.0/8", "::1"]})
    r, cport = _exchange(w.port, REQ_CLOSE)
    assert _seen(r) == _own(w, cport)


def test_from_excluding_peer_proxy_line_is_bad_request(weir, backend):
    w, b = _start(weir, backend, listener={"proxy_protocol_from": ["10.0.0.0/8"]})
    r, _ = _exchange(w.port, v1("TCP4", "203.0.113.7", "203.0.113.8", 5555, 80) + REQ_CLOSE)
    assert r is not None and r.status == 400, r
    assert b.connections == 0 and not b.requests
    # and the v2 signature is no request either
    r, _ = _exchange(w.port, v2_inet("203.0.113.7", "203.0.113.8", 5555, 80) + REQ_CLOSE)
    assert r is not None and r.status == 400, r
    assert b.connections == 0 and not b.requests


@pytest.mark.parametrize("cidrs", [["10.0.0.0/8", "127.0.0.1/32"], ["127.0.0.0/8"],
                                   ["127.0.0.1"], ["127.0.0.0/31"], ["0.0.0.0/0"]],
                         ids=["list", "slash8", "bare", "slash31", "all"])
def test_from_including_peer_reads_header(weir, backend, cidrs):
    w, b = _start(weir, backend, listener={"proxy_protocol_from": cidrs})
    r, _ = _exchange(w.port, v1("TCP4", "203.0.113.7", "203.0.113.8", 5555, 80) + REQ_CLOSE)
    assert _seen(r) == ("203.0.113.7", "5555", "203.0.113.8", "80")
    b.clear()
    _assert_refused(w, b, REQ_CLOSE)     # ... and a trusted peer must send one


@pytest.mark.parametrize("cidrs", [["127.0.0.2/32"], ["127.0.0.128/25"], ["::ffff:127.0.0.1"],
                                   ["::/0"]], ids=["neighbour", "slash25", "mapped", "v6-all"])
def test_from_near_misses_are_untrusted(weir, backend, cidrs):
    w, b = _start(weir, backend, listener={"proxy_protocol_from": cidrs})
    r, cport = _exchange(w.port, REQ_CLOSE)
    assert _seen(r) == _own(w, cport)


def _check(tmp_path, listener_lines, upstream_lines=()):
    lines = [
        "workers: 1",                                               # 1
        "modules_dir: %s" % MODULES_DIR,                            # 2
        "pid_file: weir.pid",                                       # 3
        "modules: [router, lb_roundrobin, proxy_protocol, headers]",  # 4
        "listeners:",                                               # 5
        "  - address: 127.0.0.1:%d" % free_port(),                  # 6
    ] + list(listener_lines) + [
        "upstreams:",
        "  u:",
        "    servers: [127.0.0.1:9]",
    ] + list(upstream_lines) + [
        "routes:",
        "  - {path: /, upstream: u}",
    ]
    (tmp_path / "weir.yaml").write_text("\n".join(lines) + "\n")
    p = subprocess.run([WEIR_BIN, "-t", "-c", "weir.yaml"], cwd=str(tmp_path),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def _error_at(out, line, cols, *words):
    """A line 'weir.yaml:LINE:COL: ...' with COL one of cols (the key's or the
    value's column) and every word in it."""
    for ln in out.splitlines():
        ln = ln.strip()
        for col in cols:
            if ln.startswith("weir.yaml:%d:%d: " % (line, col)) and all(w in ln for w in words):
                return True
    return False


def test_config_good_is_accepted(tmp_path):
    rc, out = _check(tmp_path, ["    proxy_protocol: true",
                                "    proxy_protocol_from:",
                                "      - 10.0.0.0/8",
                                "      - 2001:db8::/32",
                                "      - 127.0.0.1"],
                     ["    send_proxy_protocol: v2"])
    assert rc == 0, out


@pytest.mark.parametrize("bad", ["10.1.0.0/33", "not-an-address", "::1/129", "10.0.0.0/",
                                 "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0.0/8/8", "1.2.3.4.5",
                                 "10.0.0.0/ 8", "10.0.0.0/+8", "10.0.0.0/8 ", " 10.0.0.0/8"])
def test_config_bad_cidr(tmp_path, bad):
    rc, out = _check(tmp_path, ["    proxy_protocol: true",          # 7
                                "    proxy_protocol_from:",          # 8
                                "      - 10.0.0.0/8",                # 9
                                "      - \"%s\"" % bad])             # 10
    assert rc == 1, out
    assert _error_at(out, 10, (9,), bad), out   # the bad item itself


def test_config_from_not_a_list(tmp_path):
    rc, out = _check(tmp_path, ["    proxy_protocol: true",          # 7
                                "    proxy_protocol_from: 10.0.0.0/8"])   # 8
    assert rc == 1, out
    assert _error_at(out, 8, (5, 26), "proxy_protocol_from must be a list"), out


@pytest.mark.parametrize("enabled", [None, "false"])
def test_config_from_without_proxy_protocol(tmp_path, enabled):
    lines = ["    proxy_protocol: %s" % enabled] if enabled else []
    lines.append("    proxy_protocol_from: [10.0.0.0/8]")         # line 6 + len(lines)
    rc, out = _check(tmp_path, lines)
    assert rc == 1, out
    # the key (column 5) or its value (column 26)
    assert _error_at(out, 6 + len(lines), (5, 26), "proxy_protocol_from",
                     "proxy_protocol: true"), out


def test_config_bad_send_version(tmp_path):
    rc, out = _check(tmp_path, [], ["    send_proxy_protocol: v3"])   # line 10
    assert rc == 1, out
    assert _error_at(out, 10, (5, 26), "send_proxy_protocol must be v1 or v2", "v3"), out


# ------------------------------------------------------------- upstream side


def _parse_pp(rd):
    """Reads a PROXY header off an origin connection; returns a dict."""
    first = rd.read_exact(1)
    if first == b"P":
        line = first + rd.read_until(b"\r\n", limit=200)
        f = line[:-2].decode("latin-1").split(" ")
        d = {"version": 1, "raw": line, "proto": f[1]}
        if f[1] != "UNKNOWN":
            assert len(f) == 6, line
            d.update(src=f[2], dst=f[3], sport=int(f[4]), dport=int(f[5]))
        return d
    if first == b"\r":
        fixed = first + rd.read_exact(15)
        assert fixed[:12] == V2_SIG, fixed
        n = struct.unpack("!H", fixed[14:16])[0]
        body = rd.read_exact(n)
        d = {"version": 2, "raw": fixed + body, "cmd": fixed[12] & 0xF,
             "ver": fixed[12] >> 4, "fam": fixed[13]}
        if fixed[13] == 0x11:
            d.update(src=socket.inet_ntop(socket.AF_INET, body[0:4]),
                     dst=socket.inet_ntop(socket.AF_INET, body[4:8]))
            d["sport"], d["dport"] = struct.unpack("!HH", body[8:12])
        elif fixed[13] == 0x21:
            d.update(src=socket.inet_ntop(socket.AF_INET6, body[0:16]),
                     dst=socket.inet_ntop(socket.AF_INET6, body[16:32]))
            d["sport"], d["dport"] = struct.unpack("!HH", body[32:36])
        return d
    raise AssertionError("origin connection does not start with a PROXY header: %r"
                         % (first + bytes(rd.buf[:100])))


class PPOrigin(RawUpstream):
    """An origin that expects a PROXY header on each connection, then serves
    keepalive HTTP/1.1 requests with 200 and a JSON body naming the connection."""

    def __init__(self, close_after=False):
        self.close_after = close_after   # close (no Connection: close) after each answer
        self.headers = {}       # conn id -> parsed PROXY header
        self.requests = []      # (conn id, request line)
        super().__init__(timeout=OP * 3)

    def serve(self, s, rd, cid):
        hdr = _parse_pp(rd)
        with self.lock:
            self.headers[cid] = hdr
        while True:
            try:
                head = rd.read_until(b"\r\n\r\n")
            except Eof:
                return
            lines = head[:-4].split(b"\r\n")
            hs = {k.lower(): v for k, v in parse_headers(lines[1:])}
            with self.lock:
                self.requests.append((cid, lines[0].decode("latin-1")))
            if "content-length" in hs:
                rd.read_exact(int(hs["content-length"]))
            if "upgrade" in hs:
                self._tunnel(s, rd, hs)
                return
            body = json.dumps({"conn": cid, "line": lines[0].decode("latin-1")}).encode()
            s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
            if self.close_after:
                return

    @staticmethod
    def _tunnel(s, rd, hs):
        """101, then every byte echoed back upper-cased, until the peer's FIN."""
        s.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\n"
                  b"Connection: Upgrade\r\n\r\n" % hs["upgrade"].encode())
        if rd.buf:
            s.sendall(bytes(rd.buf).upper())
            rd.buf.clear()
        while True:
            d = s.recv(65536)
            if not d:
                return
            s.sendall(d.upper())



@pytest.fixture
def origin():
    made = []

    def make(**kw):
        o = PPOrigin(**kw)
        made.append(o)
        return o
    yield make
    for o in made:
        o.stop()


def _start_sending(weir, origin, version, listener=None, **origin_kw):
    o = origin(**origin_kw)
    w = weir()
    w.start(w.config(upstreams={"u": {"balancer": "roundrobin", "servers": [o.addr],
                                      "send_proxy_protocol": version}},
                     routes=[{"path": "/", "upstream": "u"}], modules=MODULES,
                     listener=listener))
    return w, o


def _get(s, rd, path):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: pp.test\r\n\r\n" % path.encode())
    r = read_response(rd)
    assert r is not None and r.status == 200, r
    return r.json()


def test_send_v1(weir, origin):
    w, o = _start_sending(weir, origin, "v1")
    s = _client(w.port)
    try:
        cport = s.getsockname()[1]
        doc = _get(s, Reader(s), "/one")
    finally:
        s.close()
    h = o.headers[doc["conn"]]
    assert h["raw"] == b"PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (cport, w.port), h
    assert doc["line"] == "GET /one HTTP/1.1"
    assert not o.errors, o.errors


def test_send_v2(weir, origin):
    w, o = _start_sending(weir, origin, "v2")
    s = _client(w.port)
    try:
        cport = s.getsockname()[1]
        doc = _get(s, Reader(s), "/one")
    finally:
        s.close()
    h = o.headers[doc["conn"]]
    assert h["raw"] == v2_inet("127.0.0.1", "127.0.0.1", cport, w.port), h
    assert (h["ver"], h["cmd"], h["fam"]) == (2, 1, 0x11)
    assert (h["src"], h["sport"], h["dst"], h["dport"]) == ("127.0.0.1", cport, "127.0.0.1",
                                                            w.port)
    assert doc["line"] == "GET /one HTTP/1.1"
    assert not o.errors, o.errors


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_keepalive_client_one_upstream_connection(weir, origin, version):
    w, o = _start_sending(weir, origin, version)
    s = _client(w.port)
    try:
        cport = s.getsockname()[1]
        rd = Reader(s)
        d1 = _get(s, rd, "/one")
        d2 = _get(s, rd, "/two")
    finally:
        s.close()
    assert d1["conn"] == d2["conn"] == 1
    assert o.connections == 1 and len(o.headers) == 1
    assert o.headers[1]["sport"] == cport
    # one header, then the two requests: no second header on the reused connection
    assert o.requests == [(1, "GET /one HTTP/1.1"), (1, "GET /two HTTP/1.1")], o.requests
    assert not o.errors, o.errors


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_two_clients_pooled_apart(weir, origin, version):
    w, o = _start_sending(weir, origin, version)
    a, b = _client(w.port), _client(w.port)
    try:
        pa, pb = a.getsockname()[1], b.getsockname()[1]
        ra, rb = Reader(a), Reader(b)
        a1 = _get(a, ra, "/a1")      # a's connection goes idle in the pool ...
        b1 = _get(b, rb, "/b1")      # ... and is not b's
        a2 = _get(a, ra, "/a2")
        b2 = _get(b, rb, "/b2")
    finally:
        a.close()
        b.close()
    assert a1["conn"] == a2["conn"] and b1["conn"] == b2["conn"], (a1, a2, b1, b2)
    assert a1["conn"] != b1["conn"]
    assert o.connections == 2
    ha, hb = o.headers[a1["conn"]], o.headers[b1["conn"]]
    assert (ha["src"], ha["sport"], ha["dport"]) == ("127.0.0.1", pa, w.port), ha
    assert (hb["src"], hb["sport"], hb["dport"]) == ("127.0.0.1", pb, w.port), hb
    assert not o.errors, o.errors


def test_send_new_client_after_close_gets_new_connection(weir, origin):
    """A client that comes back on a new connection (a new source port) gets a
    new upstream connection with its own header, not the pooled one."""
    w, o = _start_sending(weir, origin, "v1")
    ports = []
    for path in ("/first", "/second"):
        s = _client(w.port)
        try:
            ports.append(s.getsockname()[1])
            doc = _get(s, Reader(s), path)
        finally:
            s.close()
        assert o.headers[doc["conn"]]["sport"] == ports[-1]
    assert o.connections == 2
    assert not o.errors, o.errors


@pytest.mark.parametrize("out_version", ["v1", "v2"])
def test_chained_v1_in_header_out(weir, origin, out_version):
    w, o = _start_sending(weir, origin, out_version, listener={"proxy_protocol": True})
    s = _client(w.port)
    try:
        rd = Reader(s)
        s.sendall(v1("TCP4", "203.0.113.7", "198.51.100.9", 5555, 443))
        d1 = _get(s, rd, "/one")
        d2 = _get(s, rd, "/two")
    finally:
        s.close()
    h = o.headers[d1["conn"]]
    if out_version == "v1":
        assert h["raw"] == b"PROXY TCP4 203.0.113.7 198.51.100.9 5555 443\r\n", h
    else:
        assert h["raw"] == v2_inet("203.0.113.7", "198.51.100.9", 5555, 443), h
    assert (h["src"], h["sport"]) == ("203.0.113.7", 5555)
    assert d2["conn"] == d1["conn"] and o.connections == 1
    assert not o.errors, o.errors


@pytest.mark.parametrize("out_version", ["v1", "v2"])
def test_chained_tcp6_in_header_out(weir, origin, out_version):
    w, o = _start_sending(weir, origin, out_version, listener={"proxy_protocol": True})
    s = _client(w.port)
    try:
        s.sendall(v2_inet6("2001:db8::7", "2001:db8::9", 5556, 8443))
        doc = _get(s, Reader(s), "/one")
    finally:
        s.close()
    h = o.headers[doc["conn"]]
    if out_version == "v1":
        assert h["raw"] == b"PROXY TCP6 2001:db8::7 2001:db8::9 5556 8443\r\n", h
    else:
        assert h["raw"] == v2_inet6("2001:db8::7", "2001:db8::9", 5556, 8443), h
    assert not o.errors, o.errors


def test_chained_local_in_sends_socket_addresses(weir, origin):
    w, o = _start_sending(weir, origin, "v2", listener={"proxy_protocol": True})
    s = _client(w.port)
    try:
        cport = s.getsockname()[1]
        s.sendall(v2(cmd=0, fam=0))
        doc = _get(s, Reader(s), "/one")
    finally:
        s.close()
    h = o.headers[doc["conn"]]
    assert h["raw"] == v2_inet("127.0.0.1", "127.0.0.1", cport, w.port), h
    assert not o.errors, o.errors


def test_chained_same_claimed_source_one_header_per_connection(weir, origin):
    """The pool key is the header: two client connections whose headers are
    byte-for-byte the same may share an upstream connection (it carries the
    same attribution), and the origin still sees exactly one header on it."""
    w, o = _start_sending(weir, origin, "v1", listener={"proxy_protocol": True})
    hdr = v1("TCP4", "203.0.113.7", "198.51.100.9", 5555, 443)
    docs = []
    for path in ("/a", "/b"):
        s = _client(w.port)
        try:
            s.sendall(hdr)
            docs.append(_get(s, Reader(s), path))
        finally:
            s.close()
    for d in docs:
        assert o.headers[d["conn"]]["raw"] == hdr
    assert [line for _, line in o.requests] == ["GET /a HTTP/1.1", "GET /b HTTP/1.1"], o.requests
    assert not o.errors, o.errors


@pytest.mark.parametrize("version,want", [("v1", b"PROXY UNKNOWN\r\n"),
                                          ("v2", V2_SIG + b"\x20\x00\x00\x00")])
def test_send_for_unix_client_is_unknown_or_local(weir, origin, tmp_path, version, want):
    o = origin()
    path = str(tmp_path / "c.sock")
    _listeners_start(weir, {"u": {"servers": [o.addr], "send_proxy_protocol": version}},
                     [{"address": "unix:" + path}])
    r = _unix_exchange(path, REQ_CLOSE)
    assert r is not None and r.status == 200, r
    assert o.headers[r.json()["conn"]]["raw"] == want
    assert not o.errors, o.errors


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_for_ipv6_client(weir, origin, tmp_path, version):
    o = origin()
    port6 = free_port()
    _listeners_start(weir, {"u": {"servers": [o.addr], "send_proxy_protocol": version}},
                     [{"address": "[::1]:%d" % port6}])
    s = socket.create_connection(("::1", port6), timeout=OP)
    try:
        cport = s.getsockname()[1]
        doc = _get(s, Reader(s), "/six")
    finally:
        s.close()
    h = o.headers[doc["conn"]]
    if version == "v1":
        assert h["raw"] == b"PROXY TCP6 ::1 ::1 %d %d\r\n" % (cport, port6), h
    else:
        assert h["raw"] == v2_inet6("::1", "::1", cport, port6), h
    assert not o.errors, o.errors


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_upgrade_tunnel_with_headers_on_both_sides(weir, origin, version):
    """A PROXY header in, an Upgrade request, 101, then tunnelled bytes both
    ways; the origin's connection starts with the header weir sends."""
    w, o = _start_sending(weir, origin, version, listener={"proxy_protocol": True})
    s = _client(w.port)
    try:
        rd = Reader(s)
        s.sendall(v1("TCP4", "203.0.113.7", "198.51.100.9", 5555, 443) +
                  b"GET /ws HTTP/1.1\r\nHost: pp.test\r\nUpgrade: websocket\r\n"
                  b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  b"Sec-WebSocket-Version: 13\r\n\r\n")
        r = read_response(rd)
        assert r is not None and r.status == 101, r
        s.sendall(b"hello through the tunnel")
        assert rd.read_exact(24) == b"HELLO THROUGH THE TUNNEL"
        s.shutdown(socket.SHUT_WR)
        assert rd.read_to_eof() == b""
    finally:
        s.close()
    h = o.headers[1]
    assert (h["src"], h["sport"], h["dst"], h["dport"]) == ("203.0.113.7", 5555,
                                                            "198.51.100.9", 443), h
    assert o.requests == [(1, "GET /ws HTTP/1.1")], o.requests
    assert not o.errors, o.errors


@pytest.mark.parametrize("pause", [0, 0.2], ids=["at-once", "after-fin"])
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_send_origin_closing_idle_connection_gets_new_header(weir, origin, version, pause):
    """The origin closes its connection after each answer: the client's next
    request goes on a new upstream connection, which starts with its own
    header (the same one: same client connection). At once, weir may still
    pick the closed connection from the pool and has to retry."""
    w, o = _start_sending(weir, origin, version, close_after=True)
    s = _client(w.port)
    try:
        cport = s.getsockname()[1]
        rd = Reader(s)
        d1 = _get(s, rd, "/one")
        time.sleep(pause)        # after-fin: weir sees the idle connection close
        d2 = _get(s, rd, "/two")
    finally:
        s.close()
    assert d1["conn"] != d2["conn"]
    for d in (d1, d2):
        h = o.headers[d["conn"]]
        assert (h["src"], h["sport"], h["dport"]) == ("127.0.0.1", cport, w.port), h
    assert [line for _, line in o.requests] == ["GET /one HTTP/1.1", "GET /two HTTP/1.1"]
    assert not o.errors, o.errors


def test_full_pool_gives_up_its_oldest_connection(weir, origin):
    """Connections pooled for clients that left fill the pool (each has its
    own key); a full pool must give up its least recently used connection,
    not refuse the newest, or a keepalive client's next request could never
    reuse its own connection."""
    o = origin()
    w = weir()
    w.start(w.config(upstreams={"u": {"balancer": "roundrobin", "servers": [o.addr],
                                      "send_proxy_protocol": "v1", "keepalive": 2}},
                     routes=[{"path": "/", "upstream": "u"}], modules=MODULES))
    for i in range(3):          # clients that make one request each and leave
        s = _client(w.port)
        _get(s, Reader(s), "/gone%d" % i)
        s.close()
    s = _client(w.port)
    try:
        rd = Reader(s)
        first = _get(s, rd, "/one")["conn"]
        assert _get(s, rd, "/two")["conn"] == first
    finally:
        s.close()


def test_config_from_empty_list(tmp_path):
    rc, out = _check(tmp_path, ["    proxy_protocol: true",
                                "    proxy_protocol_from: []"])
    assert rc == 1, out
    assert "proxy_protocol_from is empty" in out, out


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_http_health_checks_send_a_local_header(weir, origin, version):
    """A server that requires a PROXY header must not be marked down by HTTP
    health checks: they send one saying UNKNOWN (v1) or LOCAL (v2), since the
    check is weir's own connection, and the server stays up for traffic."""
    o = origin()
    w = weir()
    w.start(w.config(upstreams={"u": {"balancer": "roundrobin", "servers": [o.addr],
                                      "send_proxy_protocol": version,
                                      "health_check": {"type": "http", "path": "/hc",
                                                       "interval": "200ms", "timeout": "150ms", "rise": 1,
                                                       "fall": 1}}},
                     routes=[{"path": "/", "upstream": "u"}],
                     modules=MODULES + ["healthcheck"]))

    def checks():
        with o.lock:
            return [(cid, o.headers.get(cid)) for cid, line in o.requests
                    if line.startswith("GET /hc ")]
    assert wait_for(lambda: len(checks()) >= 3, timeout=10), o.requests
    for cid, hdr in checks():
        if version == "v1":
            assert hdr["version"] == 1 and hdr["proto"] == "UNKNOWN", hdr
        else:
            assert hdr["version"] == 2 and hdr["cmd"] == 0 and hdr["fam"] == 0, hdr
    assert "is down" not in w.log(), w.log()
    s = _client(w.port)
    try:
        assert _get(s, Reader(s), "/after")["line"].startswith("GET /after ")
    finally:
        s.close()
    assert not o.errors, o.errors


def test_connection_that_sends_nothing_is_not_logged(weir, backend):
    """Load balancers' TCP checks connect and close without a byte: no log
    line for those (they would also use up the once-a-second line that a
    real refusal then needs)."""
    w, b = _start(weir, backend)
    for _ in range(3):
        s = _client(w.port)
        s.close()
    time.sleep(0.3)
    assert "closed:" not in w.log(), w.log()
    _assert_refused(w, b, b"PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n")
    assert wait_for(lambda: "closed: invalid PROXY protocol header" in w.log(), 5), w.log()


# ------------------------------------------------ a PROXY header, then TLS


def _tls_start(weir, backend, tmp_path, listener=None):
    """A proxy_protocol + tls listener (API 1.4: the TLS transport waits for
    the PROXY reader to step aside and starts from the bytes it left)."""
    from tlspki import Pki
    pki = Pki(tmp_path / "pki")
    leaf = pki.leaf(pki.ca(), "pp.test")
    lst = {"tls": {"certificates": [{"cert": leaf.cert, "key": leaf.key}]}}
    lst.update(listener or {})
    b = backend("b1")
    w = weir()
    ups = {"u": {"balancer": "roundrobin", "servers": [b.addr]}}
    hdrs = {"set": dict(ADDR_HEADERS["set"], **{"X-Scheme": "$scheme"})}
    w.start(w.config(upstreams=ups, routes=[{"path": "/", "upstream": "u"}],
                     modules=MODULES + ["tls"], listener=dict({"proxy_protocol": True}, **lst),
                     request_headers=hdrs))
    return w, b


def _client_hello(ctx):
    """The first flight of a TLS client, and the objects to finish with."""
    return first_flight(ctx, "pp.test")


def _tls_over(s, obj, inc, out, request):
    """Finishes the handshake of obj over socket s, sends request, returns
    (status, headers, body) of the response."""
    import ssl
    s.settimeout(OP)
    last = bio_handshake(s, obj, inc, out)
    obj.write(request)
    s.sendall(last + out.read())
    buf = b""
    while b"\r\n\r\n" not in buf or len(buf) < buf.index(b"\r\n\r\n") + 4 + int(
            re.search(rb"(?i)content-length: *(\d+)", buf).group(1)):
        try:
            buf += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        got = s.recv(65536)
        if not got:
            break
        inc.write(got)
    head, body = buf.split(b"\r\n\r\n", 1)
    hdrs = Headers(parse_headers(head.split(b"\r\n")[1:]))
    return int(head.split()[1]), hdrs, body


def _tls_ctx():
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _https_seen(port, prefix=b"", same_segment=False):
    """Sends prefix (a PROXY header), then a ClientHello, in one segment or
    two, finishes the handshake and one request; the headers the backend saw."""
    hello, obj, inc, out = _client_hello(_tls_ctx())
    s = _client(port)
    try:
        if same_segment or not prefix:
            s.sendall(prefix + hello)
        else:
            s.sendall(prefix)
            time.sleep(0.05)
            s.sendall(hello)
        status, _, body = _tls_over(s, obj, inc, out, REQ_CLOSE)
    finally:
        s.close()
    assert status == 200
    return Headers((n, v) for n, v in json.loads(body)["headers"])


@pytest.mark.parametrize("together", [False, True], ids=["apart", "one-segment"])
def test_proxy_header_then_tls(weir, backend, tmp_path, together):
    """The PROXY header's addresses reach the backend of an HTTPS listener,
    whether the ClientHello comes after the header or in the same segment
    (then the PROXY reader leaves it to the TLS transport)."""
    w, b = _tls_start(weir, backend, tmp_path)
    header = v1("TCP4", "198.51.100.7", "203.0.113.9", 4242, 443)
    h = _https_seen(w.port, header, same_segment=together)
    assert (h.get("X-Remote-Addr"), h.get("X-Remote-Port"), h.get("X-Scheme")) == \
        ("198.51.100.7", "4242", "https")


def test_untrusted_peer_gets_tls_without_proxy_header(weir, backend, tmp_path):
    """With proxy_protocol_from excluding the peer, no PROXY reader is put in
    front: TLS starts at the first byte and the socket's address is kept."""
    w, b = _tls_start(weir, backend, tmp_path, {"proxy_protocol_from": ["10.0.0.0/8"]})
    h = _https_seen(w.port)
    assert (h.get("X-Remote-Addr"), h.get("X-Scheme")) == ("127.0.0.1", "https")


def test_tls_listener_refuses_a_missing_proxy_header(weir, backend, tmp_path):
    """A ClientHello where the PROXY header should be is refused by the
    PROXY reader: closed, nothing forwarded."""
    w, b = _tls_start(weir, backend, tmp_path)
    hello, _, _, _ = _client_hello(_tls_ctx())
    s = _client(w.port)
    try:
        s.sendall(hello)
        got, how = _closed_silently(s)
    finally:
        s.close()
    assert got == b"" and how in ("eof", "reset")
    assert b.complete_requests() == []
