"""Module tls, upstream side (modules/tls/client.c, transport.c, tls_conf.c): weir
speaks TLS to its servers.

    upstreams:
      app:
        servers: [127.0.0.1:PORT]
        tls: {sni: "app.test", verify: true, ca: ca.pem, cert: c.pem, key: c.key}

The origin is TlsOrigin: conftest's Backend (its request reader and its "auto"
paths: /bytes/N, /reset/N, echo, ...) behind a Python ssl server socket, which
records per connection the SNI it was sent, whether the session was resumed,
the TLS version and the client certificate's CN (TlsConn).

Covered: a request over TLS (the sni key, ALPN http/1.1 only, the server's
host as the default name, an IP literal sent as no SNI and verified as an IP,
a "$host" template that makes the name the pool key, a template rendering
empty); verification failures (unknown CA, name mismatch, expired, no IP SAN,
the system store by default) answered 502 with a log line saying why, the
server counted as failed (max_fails) or the request retried on the next one,
and verify: false accepting all of them; client certificates sent and
refused (TLS 1.2 and 1.3); session resumption on new connections (TLS 1.3 and
1.2, keepalive: 0 or the origin closing), only for the same name; keepalive
over one TLS connection and an orderly idle close by the origin; bodies to
EOF; big bodies both ways and uploads across the record size switch; origins
that reset mid-response, speak no TLS or stall in the handshake; `tls:`
config errors (weir -t), `protocols`, `tls: false`.
"""

import hashlib
import http.client
import json
import os
import re
import socket
import ssl
import time
import types

import pytest

from conftest import (Backend, Eof, RawUpstream, Reader, connect, free_port, get, pattern,
                      pattern_sha256, read_response, wait_for)
from test_config import base, check
from tlspki import Pki

MODULES = ["router", "lb_roundrobin", "tls"]
HOSTS = ["app.test", "h1.test", "h2.test", "localhost"]


# ---------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path):
    """Every certificate of these tests, in the test's directory (weir's config
    directory, so the YAML names them by their bare file names)."""
    pki = Pki(tmp_path)
    ca, other_ca = pki.ca("weir upstream CA"), pki.ca("weir other CA")
    sans = ["DNS:" + h for h in HOSTS] + ["IP:127.0.0.1"]
    return types.SimpleNamespace(
        ca=ca,
        good=pki.leaf(ca, "app.test", sans=sans),
        rsa=pki.leaf(ca, "app.test", sans=sans, key="rsa"),
        # each of these fails one check and passes the others
        wrong_ca=pki.leaf(other_ca, "app.test", sans=sans),
        wrong_name=pki.leaf(ca, "other.test", sans=["DNS:other.test"]),
        expired=pki.leaf(ca, "app.test", sans=sans, expired=True),
        client=pki.leaf(ca, "weir-client", client=True),
        other_client=pki.leaf(other_ca, "stranger", client=True),
    )


def rel(path):
    return os.path.basename(path)


# ---------------------------------------------------------------------------
# the TLS origin
# ---------------------------------------------------------------------------


class TlsConn:
    """What the origin saw of one connection."""

    def __init__(self, cid):
        self.cid = cid
        self.sni = None
        self.reused = None
        self.version = None
        self.alpn = None
        self.peer_cn = None
        self.error = None       # the handshake's exception, if it failed

    def __repr__(self):
        return "<TlsConn %d sni=%r reused=%r %s alpn=%r cn=%r err=%r>" % (
            self.cid, self.sni, self.reused, self.version, self.alpn, self.peer_cn, self.error)


class TlsOrigin(Backend):
    """Backend over TLS: cert is a tlspki Cert; client_ca makes a client
    certificate required; max_version pins the highest TLS version."""

    def __init__(self, name, cert, client_ca=None, max_version=None):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert.cert, cert.key)
        if client_ca:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(client_ca.cert)
        if max_version:
            ctx.maximum_version = max_version
        ctx.set_alpn_protocols(["h2", "http/1.1"])    # h2 first: weir must not offer it
        ctx.sni_callback = self._on_sni
        self.ctx = ctx
        self.tls = []           # TlsConn per accepted connection, in accept order
        super().__init__(name, "auto")

    @staticmethod
    def _on_sni(sock, name, ctx):
        sock.weir_sni = name

    def _serve(self, s, cid):
        info = TlsConn(cid)
        with self.lock:
            self.tls.append(info)
        s.settimeout(10)
        ss = self.ctx.wrap_socket(s, server_side=True, do_handshake_on_connect=False)
        with self.lock:         # stop() must shut the socket that owns the fd now
            self.open_socks.discard(s)
            self.open_socks.add(ss)
        try:
            ss.do_handshake()
        except (ssl.SSLError, OSError) as e:
            info.error = e
            self._close_after_alert(ss)
            return
        info.sni = getattr(ss, "weir_sni", None)
        info.reused = ss.session_reused
        info.version = ss.version()
        info.alpn = ss.selected_alpn_protocol()
        subject = dict(x[0] for x in (ss.getpeercert() or {}).get("subject", ()))
        info.peer_cn = subject.get("commonName")
        super()._serve(ss, cid)

    def _close_after_alert(self, ss):
        """Close without a reset: the alert OpenSSL sent must reach weir
        before anything else, so the bytes weir sent after its Finished (its
        request) are read and dropped until weir closes."""
        try:
            socket.socket.shutdown(ss, socket.SHUT_WR)
            ss.settimeout(3)
            while socket.socket.recv(ss, 65536):
                pass
        except OSError:
            pass
        with self.lock:
            self.open_socks.discard(ss)
        ss.close()

    def handshakes(self):
        """The connections whose handshake succeeded."""
        with self.lock:
            return [c for c in self.tls if c.error is None and c.version]

    def wait_idle(self, timeout=5):
        """Until every connection the origin accepted is closed."""
        assert wait_for(lambda: not self.open_socks, timeout), self.tls

    def requests_on(self, cid):
        with self.lock:
            return [r for r in self.requests if r.conn_id == cid]


@pytest.fixture
def origin():
    """origin(cert, name=..., **kw) -> a started TlsOrigin, stopped at teardown."""
    made = []

    def make(cert, name="o1", **kw):
        o = TlsOrigin(name, cert, **kw)
        made.append(o)
        return o
    yield make
    for o in made:
        o.stop()


# ---------------------------------------------------------------------------
# weir in front
# ---------------------------------------------------------------------------


@pytest.fixture
def proxy(weir):
    """proxy(servers, tls, **upstream) -> a started weir with upstream "app"
    (servers, keepalive 16, tls, and the other upstream keys given) behind a
    catch-all route."""

    def make(servers, tls, **up):
        w = weir()
        u = {"balancer": "roundrobin", "servers": servers, "keepalive": 16, "tls": tls}
        u.update(up)
        w.start(w.config(upstreams={"app": u}, routes=[{"path": "/", "upstream": "app"}],
                         modules=MODULES))
        return w
    return make


def verified(certs, **kw):
    """The usual `tls:` mapping: verify against the test CA."""
    d = {"ca": rel(certs.ca.cert)}
    d.update(kw)
    return d


class Client:
    """One keepalive client connection to weir."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, path="/", host="app.test", method="GET", body=None, headers=None):
        hs = {"Host": host}
        hs.update(headers or {})
        self.c.request(method, path, body=body, headers=hs)
        r = self.c.getresponse()
        return r.status, r.read()

    def close(self):
        self.c.close()


def log_since(w, mark):
    return w.log()[mark:]


def wait_log(w, rx, mark=0, timeout=5):
    """The first match of rx in weir's log after offset mark, waited for."""
    got = wait_for(lambda: re.search(rx, log_since(w, mark)), timeout)
    assert got, "no log line matching %r; log:\n%s" % (rx, log_since(w, mark))
    return got


# ---------------------------------------------------------------------------
# 1. requests over TLS, names sent and verified
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["ec", "rsa"])
def test_request_over_tls_sends_configured_sni(certs, origin, proxy, key):
    o = origin(certs.good if key == "ec" else certs.rsa)
    w = proxy([o.addr], verified(certs, sni="app.test"))
    r = get(w.port, "/bytes/5000")
    assert r.status == 200 and r.body == pattern(5000), r
    r = get(w.port, "/echo", method="POST", body=b"hello over tls")
    assert r.status == 200, r
    doc = r.json()
    assert doc["body_len"] == 14 and doc["body_sha256"] == hashlib.sha256(
        b"hello over tls").hexdigest()
    conns = o.handshakes()
    assert conns and all(c.sni == "app.test" for c in conns), conns
    assert all(c.version in ("TLSv1.2", "TLSv1.3") for c in conns), conns
    assert all(c.alpn == "http/1.1" for c in conns), conns


def test_ip_literal_sends_no_sni_and_verifies_ip(certs, origin, proxy):
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs))
    r = get(w.port, "/bytes/100")
    assert r.status == 200 and r.body == pattern(100), r
    conns = o.handshakes()
    assert len(conns) == 1 and conns[0].sni is None, conns


def test_ip_literal_without_ip_san_is_refused(certs, origin, proxy):
    o = origin(certs.wrong_name)    # right CA, only DNS:other.test
    w = proxy([o.addr], verified(certs))
    mark = len(w.log())
    assert get(w.port, "/").status == 502
    wait_log(w, r"TLS handshake failed: certificate verify failed: IP address mismatch", mark)


def test_host_name_address_is_default_sni(certs, origin, proxy):
    if socket.getaddrinfo("localhost", None, type=socket.SOCK_STREAM)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost does not resolve to 127.0.0.1 first here")
    o = origin(certs.good)
    w = proxy(["localhost:%d" % o.port], verified(certs))
    r = get(w.port, "/bytes/10")
    assert r.status == 200 and r.body == pattern(10), r
    assert [c.sni for c in o.handshakes()] == ["localhost"]


def test_sni_template_is_the_pool_key(certs, origin, proxy):
    """With sni: "$host" every Host gets its own origin connections: two hosts
    alternating on one keepalive client connection make exactly two origin
    connections, each of which only ever sees its own name."""
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="$host"))
    c = Client(w.port)
    try:
        for i in range(8):
            host = ("h1.test", "h2.test")[i % 2]
            status, body = c.request("/echo", host=host)
            assert status == 200, body
    finally:
        c.close()
    conns = o.handshakes()
    assert sorted(x.sni for x in conns) == ["h1.test", "h2.test"], conns
    for x in conns:
        hosts = [r.headers.get("host") for r in o.requests_on(x.cid)]
        assert hosts == [x.sni] * 4, (x, hosts)


def test_sni_template_rendering_empty_still_verifies_a_name(certs, origin, proxy):
    """An sni template that renders empty (a header the request lacks) must not
    turn the name check off: with verify on, a certificate of the right CA for
    another name is still refused."""
    o = origin(certs.wrong_name)
    w = proxy([o.addr], verified(certs, sni="$http_x_upstream_name"), retries=0, max_fails=0)
    r = get(w.port, "/", headers=[("X-Upstream-Name", "other.test")])
    assert r.status == 200 and [c.sni for c in o.handshakes()] == ["other.test"], r
    r = get(w.port, "/", headers=[("X-Upstream-Name", "app.test")])
    assert r.status == 502, r
    r = get(w.port, "/")
    assert r.status == 502, (r, o.handshakes())


# ---------------------------------------------------------------------------
# 2. verification failures
# ---------------------------------------------------------------------------

VERIFY_FAILURES = {
    "wrong_ca": "unable to get local issuer certificate",
    "wrong_name": "hostname mismatch",
    "expired": "certificate has expired",
}


@pytest.mark.parametrize("bad", sorted(VERIFY_FAILURES))
def test_verify_failure_is_502_logged_and_a_passive_failure(certs, origin, proxy, bad):
    """Two servers, the bad one and a good one; retries: 0 so the failing
    request is answered 502 and not retried, max_fails: 1 so that failure
    marks the bad server down: every later request goes to the good one."""
    bad_o, good_o = origin(getattr(certs, bad), "bad"), origin(certs.good, "good")
    w = proxy([bad_o.addr, good_o.addr], verified(certs, sni="app.test"),
              retries=0, max_fails=1, fail_timeout="30s")
    mark = len(w.log())
    statuses = [get(w.port, "/id").status for _ in range(2)]
    # round robin starts on either server; exactly one of the two reached the bad one
    assert sorted(statuses) == [200, 502], statuses
    line = wait_log(w, r"\[error\] \d+ tls: upstream app \(%s\): TLS handshake failed: "
                       r"certificate verify failed: ([^\n]*)" % re.escape(bad_o.addr), mark)
    assert line.group(1) == VERIFY_FAILURES[bad], line.group(0)
    wait_log(w, r"server %s marked down" % re.escape(bad_o.addr), mark)
    later = [get(w.port, "/id") for _ in range(6)]
    assert [(r.status, r.body) for r in later] == [(200, b"good")] * 6
    assert len(bad_o.tls) == 1, bad_o.tls    # one attempt, then skipped
    assert bad_o.tls[0].error is not None      # weir's alert ended it


def test_verify_failure_retried_on_next_server(certs, origin, proxy):
    """With the default retries: 1 a GET whose handshake failed goes to the
    other server: the client never sees the failure."""
    bad_o, good_o = origin(certs.wrong_ca, "bad"), origin(certs.good, "good")
    w = proxy([bad_o.addr, good_o.addr], verified(certs, sni="app.test"), fail_timeout="30s")
    res = [get(w.port, "/id") for _ in range(6)]
    assert [(r.status, r.body) for r in res] == [(200, b"good")] * 6
    assert len(bad_o.tls) == 1, bad_o.tls


def test_verify_failure_single_server_then_503(certs, origin, proxy):
    o = origin(certs.wrong_ca)
    w = proxy([o.addr], verified(certs, sni="app.test"), max_fails=1, fail_timeout="30s")
    t0 = time.monotonic()
    assert get(w.port, "/").status == 502
    assert get(w.port, "/").status == 503      # no server is up
    assert time.monotonic() - t0 < 3
    assert len(o.tls) == 1


@pytest.mark.parametrize("bad", sorted(VERIFY_FAILURES))
def test_verify_false_accepts_any_certificate(certs, origin, proxy, bad):
    o = origin(getattr(certs, bad))
    w = proxy([o.addr], {"sni": "app.test", "verify": False})
    for _ in range(3):
        r = get(w.port, "/bytes/1000")
        assert r.status == 200 and r.body == pattern(1000), r
    assert "handshake failed" not in w.log()


def test_verify_default_uses_system_store(certs, origin, proxy):
    """tls: true verifies against the system's trust store, which does not know
    the test CA."""
    o = origin(certs.good)
    w = proxy([o.addr], True)
    mark = len(w.log())
    assert get(w.port, "/").status == 502
    wait_log(w, r"TLS handshake failed: certificate verify failed: "
                r"unable to get local issuer certificate", mark)


# ---------------------------------------------------------------------------
# 3. client certificates
# ---------------------------------------------------------------------------


def test_client_certificate_sent(certs, origin, proxy):
    o = origin(certs.good, client_ca=certs.ca)
    w = proxy([o.addr], verified(certs, sni="app.test", cert=rel(certs.client.cert),
                                 key=rel(certs.client.key)))
    for _ in range(2):
        r = get(w.port, "/bytes/64")
        assert r.status == 200 and r.body == pattern(64), r
    conns = o.handshakes()
    assert conns and all(c.peer_cn == "weir-client" for c in conns), conns


CLIENT_REFUSALS = {
    "none": r"alert (handshake failure|certificate required)",
    "other_ca": r"alert unknown ca",
}


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
@pytest.mark.parametrize("which", sorted(CLIENT_REFUSALS))
def test_client_certificate_refused(certs, origin, proxy, version, which):
    """An origin that requires a client certificate refuses weir without one
    (or with one of another CA): 502, and a log line that says why. With TLS
    1.3 the refusal (an alert) comes after weir's side of the handshake is
    done, with the first read of the response."""
    o = origin(certs.good, client_ca=certs.ca, max_version=getattr(ssl.TLSVersion, version))
    tls = verified(certs, sni="app.test")
    if which == "other_ca":
        tls.update(cert=rel(certs.other_client.cert), key=rel(certs.other_client.key))
    w = proxy([o.addr], tls, retries=0)
    mark = len(w.log())
    assert get(w.port, "/").status == 502
    assert wait_for(lambda: o.tls and o.tls[0].error, 5), o.tls
    wait_log(w, r"\[error\] [^\n]*upstream app \(%s\): [^\n]*" % re.escape(o.addr), mark)
    wait_log(w, r"upstream app \(%s\): [^\n]*%s" % (re.escape(o.addr), CLIENT_REFUSALS[which]),
             mark, timeout=1)
    assert get(w.port, "/").status in (502, 503)     # and the worker goes on


# ---------------------------------------------------------------------------
# 4. session resumption
# ---------------------------------------------------------------------------


def close_handler(ctx, req):
    """Answers and closes (Connection: close)."""
    body = b"closing"
    ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
             % (len(body), body))
    return False


@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
@pytest.mark.parametrize("how", ["keepalive_0", "origin_closes"])
def test_session_resumed_on_new_connections(certs, origin, proxy, version, how):
    o = origin(certs.good, max_version=getattr(ssl.TLSVersion, version))
    if how == "origin_closes":
        o.on("/", close_handler)
    w = proxy([o.addr], verified(certs, sni="app.test"),
              keepalive=0 if how == "keepalive_0" else 16)
    for _ in range(4):
        assert get(w.port, "/id").status == 200
        o.wait_idle()       # the next request must find the origin's close done
    conns = o.handshakes()
    assert len(conns) == 4, conns
    assert all(c.version == version.replace("_", ".") for c in conns), conns
    assert [c.reused for c in conns] == [False, True, True, True], conns


def test_session_not_resumed_for_another_name(certs, origin, proxy):
    """A session is only offered for the name it was made for."""
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="$host"), keepalive=0)
    for host in ["h1.test", "h1.test", "h2.test", "h2.test"]:
        assert get(w.port, "/id", host=host).status == 200
        o.wait_idle()
    conns = o.handshakes()
    seq = [(c.sni, c.reused) for c in conns]
    assert seq == [("h1.test", False), ("h1.test", True), ("h2.test", False),
                   ("h2.test", True)], seq


# ---------------------------------------------------------------------------
# 5. keepalive
# ---------------------------------------------------------------------------


def test_keepalive_reuses_one_tls_connection(certs, origin, proxy):
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="app.test"))
    for _ in range(3):      # new client connections too: the pool is weir's
        c = Client(w.port)
        try:
            for i in range(5):
                status, body = c.request("/bytes/%d" % (100 + i))
                assert status == 200 and body == pattern(100 + i)
        finally:
            c.close()
    assert len(o.handshakes()) == 1, o.tls
    assert len(o.requests_on(o.handshakes()[0].cid)) == 15


def idle_close_handler(ctx, req):
    """Answers with keepalive, then, once weir pooled the connection, closes
    it as servers do at their keepalive timeout: close_notify first."""
    ctx.send(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nidle")
    time.sleep(0.3)
    try:
        ctx.sock.unwrap()
    except (ssl.SSLError, OSError):
        pass
    return False


def test_origin_closes_idle_connection_with_close_notify(certs, origin, proxy):
    """A TLS server's orderly close of an idle pooled connection is a
    close_notify alert, then FIN: not bytes weir should warn about."""
    o = origin(certs.good)
    o.on("/idle", idle_close_handler)
    w = proxy([o.addr], verified(certs, sni="app.test"))
    mark = len(w.log())
    r = get(w.port, "/idle")
    assert (r.status, r.body) == (200, b"idle")
    o.wait_idle()
    time.sleep(0.2)         # weir reads what came on its pooled connection
    r = get(w.port, "/bytes/10")
    assert r.status == 200 and r.body == pattern(10)
    assert len(o.handshakes()) == 2
    assert "bytes on an idle keepalive connection" not in log_since(w, mark), log_since(w, mark)


def eof_body_handler(close_notify):
    """A response whose body ends with the connection (no Content-Length),
    closed with or without a close_notify alert first."""
    def fn(ctx, req):
        ctx.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + pattern(70000))
        if close_notify:
            try:
                ctx.sock.unwrap()
            except (ssl.SSLError, OSError):
                pass
        return False
    return fn


@pytest.mark.parametrize("close_notify", [True, False], ids=["close_notify", "bare_fin"])
def test_body_to_eof(certs, origin, proxy, close_notify):
    """A body delimited by the close arrives whole after a close_notify. A
    bare FIN is taken as the end too (as nginx does; it cannot tell a
    truncation): whatever the client gets is a prefix of the body, and the
    worker serves on."""
    o = origin(certs.good)
    o.on("/eof", eof_body_handler(close_notify))
    w = proxy([o.addr], verified(certs, sni="app.test"), retries=0, max_fails=0)
    r = get(w.port, "/eof")
    assert r.status == 200 and r.body == pattern(len(r.body)), r
    if close_notify:
        assert r.complete and len(r.body) == 70000, r
    r = get(w.port, "/bytes/10")
    assert r.status == 200 and r.body == pattern(10)


# ---------------------------------------------------------------------------
# 6. big bodies
# ---------------------------------------------------------------------------

UPLOAD = 3 << 20
DOWNLOAD = 8 << 20


def test_big_upload(certs, origin, proxy):
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="app.test"))
    c = Client(w.port)
    try:
        status, body = c.request("/echo", method="POST", body=pattern(UPLOAD))
    finally:
        c.close()
    assert status == 200
    doc = json.loads(body)
    assert doc["body_len"] == UPLOAD and doc["body_sha256"] == pattern_sha256(UPLOAD)


def post_in_two_sends(port, body, first, timeout=5.0):
    """POST /echo: the head with the first `first` body bytes, then the rest
    once weir has passed those on (so they are the upstream request's first
    piece). The echo's JSON document, or the exception that ended the wait."""
    s = connect(port, timeout)
    try:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: %d\r\n\r\n"
                  % len(body) + body[:first])
        time.sleep(0.05)
        s.sendall(body[first:])
        r = read_response(Reader(s), "POST")
        return r.json() if r is not None and r.status == 200 else r
    except (OSError, ValueError, Eof) as e:
        return e
    finally:
        s.close()


@pytest.mark.parametrize("first", [0, 100, 1000, 5000])
def test_upload_record_size_switch(certs, origin, proxy, first):
    """weir seals small TLS records first and 16 KiB ones once 64 KiB went on
    a connection (dynamic record sizing); that switch falls somewhere in the
    middle of a 96 KiB upload, wherever the pieces of the body begin. Every
    request has a new upstream connection (keepalive: 0)."""
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="app.test"), keepalive=0, retries=0)
    n = 96 << 10
    for _ in range(2):
        doc = post_in_two_sends(w.port, pattern(n), first)
        assert isinstance(doc, dict), doc
        assert (doc["body_len"], doc["body_sha256"]) == (n, pattern_sha256(n))


@pytest.mark.parametrize("framing", ["bytes", "chunked"])
def test_big_download(certs, origin, proxy, framing):
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="app.test"))
    c = Client(w.port)
    try:
        status, body = c.request("/%s/%d" % (framing, DOWNLOAD))
        assert status == 200 and len(body) == DOWNLOAD
        assert hashlib.sha256(body).hexdigest() == pattern_sha256(DOWNLOAD)
        # and the connection (both of them) is fine afterwards
        status, body = c.request("/bytes/10")
        assert status == 200 and body == pattern(10)
    finally:
        c.close()
    assert len(o.handshakes()) == 1


# ---------------------------------------------------------------------------
# 7. broken origins
# ---------------------------------------------------------------------------


def test_origin_resets_mid_response(certs, origin, proxy):
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="app.test"), retries=0, max_fails=0)
    pids = w.wait_workers(1)
    r = get(w.port, "/reset/20000")
    # the head went down: the client sees a response cut short
    assert r.status == 200 and not r.complete and len(r.body) < 40000, r
    assert r.body == pattern(len(r.body))
    r = get(w.port, "/close")
    assert r.status == 502, r
    r = get(w.port, "/bytes/100")
    assert r.status == 200 and r.body == pattern(100)
    assert w.workers() == pids


@pytest.fixture
def raw_origin():
    """raw_origin(serve) -> a started RawUpstream, stopped at teardown."""
    made = []

    def make(serve):
        made.append(RawUpstream(serve))
        return made[-1]
    yield make
    for u in made:
        u.stop()


@pytest.mark.parametrize("garbage", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",     # plain HTTP
    b"\x16\x03\x03\xff\xff" + b"\x00" * 64,                 # a record too long
    bytes(range(256)) * 4,
    b"",                                                    # close at once
], ids=["plain_http", "huge_record", "binary", "close"])
def test_origin_without_tls(certs, origin, proxy, raw_origin, garbage):
    """A server that answers the ClientHello with no TLS: 502, logged, a
    passive failure; the worker serves on (the good server)."""
    def serve(up, sock, rd, cid):
        rd.read_some()          # the ClientHello
        sock.sendall(garbage)
        time.sleep(0.1)
    raw, good = raw_origin(serve), origin(certs.good, "good")
    w = proxy([raw.addr, good.addr], verified(certs, sni="app.test"), retries=0,
              max_fails=1, fail_timeout="30s")
    pids = w.wait_workers(1)
    mark = len(w.log())
    statuses = sorted(get(w.port, "/id").status for _ in range(2))
    assert statuses == [200, 502], statuses
    # a close during the handshake is the core's "transport handshake failed"
    wait_log(w, r"upstream app \(%s\): (TLS|upstream transport) handshake failed"
             % re.escape(raw.addr), mark)
    for _ in range(4):
        r = get(w.port, "/id")
        assert (r.status, r.body) == (200, b"good")
    assert w.workers() == pids


def test_origin_stalls_in_handshake(certs, proxy, raw_origin):
    """A server that takes the connection and never answers the ClientHello
    is a connect_timeout: 504, quickly, and a passive failure."""
    def serve(up, sock, rd, cid):
        rd.read_some()
        time.sleep(3)
    raw = raw_origin(serve)
    w = proxy([raw.addr], verified(certs, sni="app.test"), connect_timeout="300ms", retries=0,
              max_fails=1, fail_timeout="30s")
    mark = len(w.log())
    t0 = time.monotonic()
    status = get(w.port, "/").status
    assert time.monotonic() - t0 < 2
    assert status == 504, log_since(w, mark)
    wait_log(w, r"upstream app \(%s\): connect_timeout" % re.escape(raw.addr), mark)
    wait_log(w, r"server %s marked down" % re.escape(raw.addr), mark)


# ---------------------------------------------------------------------------
# 8. config errors (weir -t)
# ---------------------------------------------------------------------------


def config_text(tls_lines):
    """A whole config with upstream app's tls: given as indented lines, the
    first of them on line 17."""
    lines = base(modules=MODULES) + [
        "routes:",
        "  - {path: /, upstream: app}",
        "upstreams:",
        "  app:",
        "    servers: [127.0.0.1:%d]" % free_port(),
        "    tls:",
    ] + ["      " + ln for ln in tls_lines]
    return "\n".join(lines) + "\n"


def test_config_good(tmp_path, certs):
    rc, out, err = check(tmp_path, config_text([
        "sni: app.test", "ca: %s" % rel(certs.ca.cert), "cert: %s" % rel(certs.client.cert),
        "key: %s" % rel(certs.client.key)]))
    assert rc == 0, err


@pytest.mark.parametrize("lines,message", [
    (["ca: missing.pem"], r":17:11: tls: cannot load ca [^\n]*missing\.pem"),
    (["cert: {client}"], r":17:13: tls: a client certificate needs both 'cert' and 'key'"),
    (["key: {client_key}"], r":17:12: tls: a client certificate needs both 'cert' and 'key'"),
    (["cert: {client}", "key: {other_key}"],
     r":18:12: tls: key \S+ does not match certificate \S+"),
    (["cert: missing.pem", "key: {client_key}"], r":17:13: tls: cannot load certificate"),
    (["verfy: false"], r":17:7: unknown key 'verfy' in an upstream's tls \(known: sni, verify"),
    (["verify: maybe"], r":17:15: invalid boolean 'maybe' for 'verify'"),
    (["ca: {client_key}"], r":17:11: tls: cannot load ca "),     # no certificate in it
    (["sni: \"\""], r":17:12: tls: 'sni' must be a non-empty string"),
    (["protocols: [TLSv1.1]"], r":17:19: tls: protocol TLSv1.1 is not supported"),
])
def test_config_errors(tmp_path, certs, lines, message):
    lines = [ln.format(client=rel(certs.client.cert), client_key=rel(certs.client.key),
                       other_key=rel(certs.other_client.key)) for ln in lines]
    rc, out, err = check(tmp_path, config_text(lines))
    assert rc == 1, (out, err)
    assert re.search(r"weir\.yaml" + message, err), err


def test_upstream_protocols(certs, origin, proxy):
    o = origin(certs.good)
    w = proxy([o.addr], verified(certs, sni="app.test", protocols=["TLSv1.2"]))
    assert get(w.port, "/id").status == 200
    assert [c.version for c in o.handshakes()] == ["TLSv1.2"]


def test_tls_false_is_plain(weir, backend):
    b = backend("plain", mode="id")
    w = weir()
    w.start(w.config(upstreams={"app": {"servers": [b.addr], "tls": False}},
                     routes=[{"path": "/", "upstream": "app"}], modules=MODULES))
    r = get(w.port, "/")
    assert (r.status, r.body) == (200, b"plain")


def test_config_tls_scalar(tmp_path):
    assert check(tmp_path, config_text([]).replace("    tls:\n", "    tls: true\n"))[0] == 0
    rc, _, err = check(tmp_path, config_text([]).replace("    tls:\n", "    tls: [a]\n"))
    assert rc == 1 and "tls: on an upstream, true or a mapping" in err, err
