"""Module tls, listener side (modules/tls/tls.c, tls_conf.c, server.c, sni.c,
transport.c, tls_vars.c): weir answers HTTPS.

    listeners:
      - address: 127.0.0.1:PORT
        tls:
          certificates: [{cert: a.pem, key: a.key}, ...]   # the first is the default
          protocols: [TLSv1.2, TLSv1.3]
          alpn: [http/1.1]
          session_tickets: true
          client_ca: ca.pem
          verify_client: optional
          handshake_timeout: 1s

Real clients only: Python's ssl (sockets, and an SSLObject over a plain
socket where the test needs the bytes on the wire), `openssl s_client`.
The $ssl_* variables are read through module headers: every one is set as a
request header (VARS), so the backend's echo shows what weir computed for
the request; an unset variable sends no header.

Covered: certificates by SNI (exact, wildcard of one label, default), an
RSA and an ECDSA certificate for the same names; ALPN; protocol versions;
keepalive, pipelining, one-byte records, close_notify both ways;
resumption (TLS 1.2 session IDs and tickets, TLS 1.3 tickets and stateful
sessions) on one worker, across workers, across a reload, and only on the
listener that made it; client certificates (on, optional, off, client_ca
alone, on every certificate, kept by resumption); a certificate replaced by
a reload (and a broken one refused), TLS turned on and off by reloads; big
bodies, responses of mixed sizes, memory with a client that reads nothing;
bad input (stalled or trickled handshakes, clients leaving mid-handshake,
garbage, alerts, truncated and undecryptable records, plain HTTP,
renegotiation), none of which reaches the backend or harms a worker;
config errors; $ssl_* without the module; $scheme next to a plain listener.

Workers: all of them accept from one listening socket and the kernel hands
nearly every connection to the same one, so the cross-worker test stops
(SIGSTOP) the worker that served last to make the other one take the next
connection; worker_of() says which worker holds a connection (/proc).
"""

import hashlib
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
import types

import pytest

from conftest import (Reader, free_port, get, pattern, pattern_sha256, proc_status_kb,
                      raw_request, read_response, sha256, wait_for)
from test_config import base, check, has_line
from tlsclient import bio_handshake, first_flight
from tlspki import Pki

MODULES = ["router", "lb_roundrobin", "tls", "headers"]

# every variable, as the request header the backend sees it in
VARS = {
    "X-Scheme": "$scheme",
    "X-Ssl-Protocol": "$ssl_protocol",
    "X-Ssl-Cipher": "$ssl_cipher",
    "X-Ssl-Server-Name": "$ssl_server_name",
    "X-Ssl-Session-Reused": "$ssl_session_reused",
    "X-Ssl-Alpn-Protocol": "$ssl_alpn_protocol",
    "X-Ssl-Client-Verify": "$ssl_client_verify",
    "X-Ssl-Client-S-Dn": "$ssl_client_s_dn",
    "X-Ssl-Client-I-Dn": "$ssl_client_i_dn",
    "X-Ssl-Client-Fingerprint": "$ssl_client_fingerprint",
    "X-Ssl-Client-Serial": "$ssl_client_serial",
}

REQ = b"GET / HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"


# ---------------------------------------------------------------------------
# certificates
# ---------------------------------------------------------------------------


@pytest.fixture
def certs(tmp_path):
    """The certificates of these tests, copied into the test's directory,
    which is weir's config directory: the YAML names them by bare file name."""
    pki = Pki(tmp_path)
    ca, other_ca = pki.ca("weir listener CA"), pki.ca("weir stranger CA")
    return types.SimpleNamespace(
        pki=pki, ca=ca, other_ca=other_ca,
        a=pki.leaf(ca, "a.test", sans=["DNS:a.test", "DNS:*.w.test"]),
        b=pki.leaf(ca, "b.test", key="rsa"),
        c=pki.leaf(ca, "c.test"),
        dual_ec=pki.leaf(ca, "dual.test"),
        dual_rsa=pki.leaf(ca, "dual.test", key="rsa"),
        client=pki.leaf(ca, "alice", client=True),
        stranger=pki.leaf(other_ca, "mallory", client=True),
    )


def pair(cert, chain=False):
    """A `certificates` entry for a tlspki Cert, relative to the config dir."""
    return {"cert": os.path.basename(cert.chain if chain else cert.cert),
            "key": os.path.basename(cert.key)}


def der(cert):
    with open(cert.cert) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def common_name(cert):
    return x509_field(cert, "subject").split("CN = ", 1)[1]


def x509_field(cert, what):
    """`openssl x509 -noout -<what>` of a tlspki Cert, the value after '='."""
    out = subprocess.run(["openssl", "x509", "-in", cert.cert, "-noout", "-" + what],
                         capture_output=True, text=True, check=True).stdout
    return out.strip().split("=", 1)[1]


# ---------------------------------------------------------------------------
# weir with a TLS listener
# ---------------------------------------------------------------------------


def tls_config(w, b, tls, workers=1, modules=MODULES, port=None, **extra):
    return w.config(upstreams={"b": {"servers": [b.addr]}},
                    routes=[{"path": "/", "upstream": "b"}], workers=workers,
                    modules=modules, port=port or w.port, listener={"tls": tls},
                    request_headers={"set": VARS}, **extra)


def start(weir, backend, tls, workers=1, **extra):
    """A started weir whose one listener has `tls`, proxying to a fresh
    backend; w.cfg is the config dict (for reloads)."""
    b = backend()
    w = weir()
    w.cfg = tls_config(w, b, tls, workers=workers, **extra)
    w.start(w.cfg)
    w.wait_workers(workers)
    return w, b


def reload(w, cfg=None):
    """Rewrite the config (if given) and SIGHUP the master. Returns the
    generation number the reload starts if it succeeds (a failed reload
    takes no number)."""
    gen = len(re.findall(r"reload: generation \d+ started", w.log())) + 2
    if cfg is not None:
        w.write(cfg)
    w.send_signal(signal.SIGHUP)
    return gen


def wait_generation(w, gen, workers=1):
    """The new generation's workers, once the old ones are gone."""
    assert wait_for(lambda: "reload: generation %d started" % gen in w.log(), 10), w.log()
    assert wait_for(lambda: "generation %d: all workers have exited" % (gen - 1) in w.log(),
                    10), w.log()
    return w.wait_workers(workers)


# ---------------------------------------------------------------------------
# clients
# ---------------------------------------------------------------------------


def client_ctx(ca=None, version=None, min_version=None, max_version=None, ciphers=None,
               alpn=None, cert=None):
    """A Python client context; verifies the chain against ca (not the name,
    so that any SNI can be sent); version pins one TLS version."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca is not None:
        ctx.load_verify_locations(ca.cert)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        min_version = max_version = version
    if min_version is not None:
        ctx.minimum_version = min_version
    if max_version is not None:
        ctx.maximum_version = max_version
    if ciphers:
        ctx.set_ciphers(ciphers)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert is not None:
        ctx.load_cert_chain(cert.cert, cert.key)
    return ctx


class Conn:
    """One HTTPS connection (Python ssl socket) and what it negotiated."""

    def __init__(self, port, ctx, sni=None, session=None, timeout=10.0):
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        self.s = ctx.wrap_socket(raw, server_hostname=sni, session=session)
        self.rd = Reader(self.s)
        self.version = self.s.version()
        self.cipher = self.s.cipher()[0]
        self.alpn = self.s.selected_alpn_protocol()
        self.der = self.s.getpeercert(binary_form=True)
        self.cert = self.s.getpeercert()     # {} unless the context verifies
        self.reused = self.s.session_reused

    def request(self, path="/", method="GET", body=None, close=False):
        head = "%s %s HTTP/1.1\r\nHost: test.local\r\n" % (method, path)
        if body is not None:
            head += "Content-Length: %d\r\n" % len(body)
        if close:
            head += "Connection: close\r\n"
        self.s.sendall(head.encode() + b"\r\n" + (body or b""))
        r = read_response(self.rd, method)
        assert r is not None, "connection closed without a response"
        return r

    @property
    def session(self):
        return self.s.session

    def close(self):
        self.s.close()


def https(port, ctx, sni=None, session=None, path="/"):
    """One request on a fresh connection: the Conn (closed, its facts kept)
    with .resp, the response, and .sent, the headers the backend received."""
    c = Conn(port, ctx, sni=sni, session=session)
    try:
        c.resp = c.request(path, close=True)
        c.sent = sent_headers(c.resp)
        c.session_after = c.session
    finally:
        c.close()
    return c


def sent_headers(r):
    """The request headers the backend saw, from its echo (name -> value)."""
    assert r.status == 200, r
    return {n.lower(): v for n, v in r.json()["headers"]}


def refused(port, ctx, sni=None):
    """A connection that must not get a response: the error it ended with
    (ssl.SSLError, a reset, or EOF before any response byte)."""
    try:
        c = Conn(port, ctx, sni=sni)
        c.s.sendall(REQ)
        data = c.s.recv(65536)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        return e
    assert not data, "a response on a connection that should fail: %r" % data[:300]
    return "EOF"


def s_client(port, *args, stdin=b"", timeout=15):
    """`openssl s_client` against weir, stdin its input (read to the end:
    -ign_eof); returns (exit status, stdout+stderr)."""
    p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % port, "-ign_eof"]
                       + list(args),
                       input=stdin, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("latin-1")


def hello_bytes(ctx=None, sni="a.test"):
    """The first flight of a Python client (its ClientHello), and the
    SSLObject with its BIOs to carry on with."""
    return first_flight(ctx or client_ctx(), sni)


def bio_read_response(sock, obj, inc):
    """Read and decrypt until the server closes; the plaintext."""
    plain = b""
    while True:
        try:
            chunk = obj.read(65536)
            if not chunk:
                return plain
            plain += chunk
        except ssl.SSLWantReadError:
            data = sock.recv(65536)
            if not data:
                return plain
            inc.write(data)
        except ssl.SSLZeroReturnError:
            return plain


def wait_closed(sock, timeout=5.0):
    """Read until the peer closes (EOF or RST): (bytes read, seconds), or
    None if it is still open after timeout."""
    t0 = time.monotonic()
    got = b""
    while True:
        left = timeout - (time.monotonic() - t0)
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            d = sock.recv(65536)
        except socket.timeout:
            return None
        except ConnectionResetError:
            return got, time.monotonic() - t0
        if not d:
            return got, time.monotonic() - t0
        got += d


def worker_of(w, port, local_port):
    """The pid of the worker holding the accepted end of the connection from
    127.0.0.1:local_port to weir's 127.0.0.1:port (/proc/net/tcp, then the
    workers' fds)."""
    want = ("0100007F:%04X" % port, "0100007F:%04X" % local_port)
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if (p[1], p[2]) == want:
                inode = p[9]
    assert inode, "no accepted socket for port %d" % local_port
    for pid in w.workers():
        for fd in os.listdir("/proc/%d/fd" % pid):
            try:
                if os.readlink("/proc/%d/fd/%s" % (pid, fd)) == "socket:[%s]" % inode:
                    return pid
            except OSError:
                pass
    return None


def proc_state(pid):
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(") ", 1)[1][0]


def stop(pid):
    """SIGSTOP pid and wait until it is stopped: a worker that is only about
    to stop could still accept the next connection and leave it hanging."""
    os.kill(pid, signal.SIGSTOP)
    assert wait_for(lambda: proc_state(pid) == "T", 5), proc_state(pid)


def unharmed(w, b, workers):
    """After bad input: the same workers (none crashed), nothing forwarded,
    and a normal HTTPS request works."""
    assert b.requests == [] and b.connections == 0, b.requests
    c = https(w.port, client_ctx())
    assert c.resp.status == 200
    assert c.sent["x-scheme"] == "https"
    assert w.alive()
    assert w.workers() == workers, w.log()


# ---------------------------------------------------------------------------
# 1. certificates by SNI
# ---------------------------------------------------------------------------


def test_sni_picks_the_certificate(weir, backend, certs):
    """c.test first (the default), then a.test (also *.w.test; its file holds
    the chain) and b.test (RSA). Names match without regard to case."""
    w, b = start(weir, backend, {"certificates": [pair(certs.c), pair(certs.a, chain=True),
                                                  pair(certs.b)]})
    ctx = client_ctx(certs.ca)
    cases = [
        (None, certs.c), ("a.test", certs.a), ("b.test", certs.b), ("c.test", certs.c),
        ("unknown.test", certs.c), ("x.w.test", certs.a), ("Y.W.TEST", certs.a),
        # a wildcard is exactly one label
        ("deep.x.w.test", certs.c), ("w.test", certs.c),
    ]
    for sni, want in cases:
        c = https(w.port, ctx, sni=sni)
        assert c.der == der(want), (sni, c.cert["subject"])
        assert c.cert["subject"] == ((("commonName", common_name(want)),),), (sni, c.cert)
        assert c.sent.get("x-ssl-server-name") == sni, (sni, c.sent)
        assert c.sent["x-scheme"] == "https"
    sans = https(w.port, ctx, sni="x.w.test").cert["subjectAltName"]
    assert sans == (("DNS", "a.test"), ("DNS", "*.w.test")), sans


def test_rsa_and_ecdsa_certificates_for_the_same_names(weir, backend, certs):
    """Both dual.test certificates share a context: each client gets the one
    its cipher suites (TLS 1.2) or signature algorithms (TLS 1.3) allow."""
    w, b = start(weir, backend, {"certificates": [pair(certs.c), pair(certs.dual_ec),
                                                  pair(certs.dual_rsa)]})
    for suite, want in [("ECDHE-ECDSA-AES128-GCM-SHA256", certs.dual_ec),
                        ("ECDHE-RSA-AES128-GCM-SHA256", certs.dual_rsa)]:
        c = https(w.port, client_ctx(certs.ca, version=ssl.TLSVersion.TLSv1_2, ciphers=suite),
                  sni="dual.test")
        assert c.der == der(want), suite
        assert c.cipher == suite and c.sent["x-ssl-cipher"] == suite
    for sigalg, bits in [("ecdsa_secp256r1_sha256", 256), ("rsa_pss_rsae_sha256", 2048)]:
        rc, out = s_client(w.port, "-tls1_3", "-servername", "dual.test", "-sigalgs", sigalg,
                           stdin=REQ)
        assert "Server public key is %d bit" % bits in out, out
        assert "subject=CN = dual.test" in out, out
    # a client that takes either gets one of the two
    c = https(w.port, client_ctx(certs.ca), sni="dual.test")
    assert c.der in (der(certs.dual_ec), der(certs.dual_rsa))


# ---------------------------------------------------------------------------
# 2. ALPN
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpn_conf,first", [(None, "h2"), (["http/1.1"], "http/1.1"),
                                              (["h2", "http/1.1"], "h2")],
                         ids=["default", "explicit-http1", "explicit-h2"])
def test_alpn(weir, backend, certs, alpn_conf, first):
    """The default offers h2 then http/1.1; a list offers what it names."""
    tls = {"certificates": [pair(certs.a)]}
    if alpn_conf:
        tls["alpn"] = alpn_conf
    w, b = start(weir, backend, tls)
    rc, out = s_client(w.port, "-alpn", "h2,http/1.1", stdin=REQ)
    assert "ALPN protocol: %s" % first in out, out
    # a client that speaks HTTP/1.1 only gets it
    c = https(w.port, client_ctx(alpn=["http/1.1"]))
    assert c.alpn == "http/1.1"
    assert c.sent["x-ssl-alpn-protocol"] == "http/1.1"
    # nothing in common: no ALPN answer (as nginx), and HTTP/1.1 all the same
    c = https(w.port, client_ctx(alpn=["foo"]))
    assert c.alpn is None and c.resp.status == 200
    assert "x-ssl-alpn-protocol" not in c.sent
    c = https(w.port, client_ctx())
    assert c.alpn is None and "x-ssl-alpn-protocol" not in c.sent


# ---------------------------------------------------------------------------
# 3. protocol versions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("flag", ["-tls1_1", "-tls1"])
def test_old_protocols_refused_s_client(weir, backend, certs, flag):
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    # SECLEVEL=0: the client really offers the old version
    rc, out = s_client(w.port, flag, "-cipher", "DEFAULT@SECLEVEL=0", stdin=REQ)
    assert rc != 0, out
    assert "alert protocol version" in out, out
    assert b.requests == []


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1],
                         ids=["tls10", "tls11"])
def test_old_protocols_refused_python(weir, backend, certs, version):
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    ctx = client_ctx(min_version=ssl.TLSVersion.TLSv1, max_version=version,
                     ciphers="DEFAULT@SECLEVEL=0")
    e = refused(w.port, ctx)
    assert isinstance(e, ssl.SSLError) and "PROTOCOL_VERSION" in str(e), e
    assert b.requests == []


def test_tls12_and_tls13_clients(weir, backend, certs):
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    for version, name in [(ssl.TLSVersion.TLSv1_2, "TLSv1.2"),
                          (ssl.TLSVersion.TLSv1_3, "TLSv1.3")]:
        c = https(w.port, client_ctx(certs.ca, version=version))
        assert c.version == name
        assert c.sent["x-ssl-protocol"] == name
        assert c.sent["x-ssl-cipher"] == c.cipher
    rc, out = s_client(w.port, "-tls1_2", stdin=REQ)
    assert "Protocol  : TLSv1.2" in out and '"X-Ssl-Protocol", "TLSv1.2"' in out, out


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3],
                         ids=["tls12", "tls13"])
def test_keepalive_pipelining_and_close_notify(weir, backend, certs, version):
    """Three requests on one connection, two of them pipelined in one
    record and one written a byte per record; the last says close, and
    weir ends with a close_notify (Python reads b"", not an unexpected EOF)."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    c = Conn(w.port, client_ctx(certs.ca, version=version))
    c.s.sendall(b"GET /p1 HTTP/1.1\r\nHost: x\r\n\r\nGET /p2 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [read_response(c.rd).json()["path"] for _ in range(2)] == ["/p1", "/p2"]
    for byte in b"GET /p3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n":
        c.s.sendall(bytes([byte]))
    r = read_response(c.rd)
    assert r.json()["path"] == "/p3" and r.json()["conn_id"] == 1
    assert c.s.recv(100) == b""         # ssl.SSLEOFError if the TCP FIN came alone
    c.close()


@pytest.mark.parametrize("fin", [False, True], ids=["close_notify", "close_notify+fin"])
def test_request_then_close_notify_is_served(victim, fin):
    """A request, then the client's close_notify (and FIN) at once: the
    request is still answered, as a plain request followed by a FIN is."""
    hello, obj, inc, out = hello_bytes()
    s = plain(victim.port)
    s.sendall(hello)
    inc.write(s.recv(65536))
    last = bio_handshake(s, obj, inc, out)
    obj.write(b"GET /delay/100 HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        obj.unwrap()                    # queues close_notify; would wait for weir's
    except ssl.SSLWantReadError:
        pass
    s.sendall(last + out.read())
    if fin:
        s.shutdown(socket.SHUT_WR)
    plain_text = bio_read_response(s, obj, inc)
    s.close()
    assert plain_text.startswith(b"HTTP/1.1 200 "), plain_text[:200]
    assert len(victim.b.requests) == 1
    victim.b.clear()
    victim.check()


@pytest.mark.parametrize("only,refused_version", [
    ("TLSv1.3", ssl.TLSVersion.TLSv1_2), ("TLSv1.2", ssl.TLSVersion.TLSv1_3)],
    ids=["tls13-only", "tls12-only"])
def test_one_protocol_listener(weir, backend, certs, only, refused_version):
    w, b = start(weir, backend, {"certificates": [pair(certs.a)], "protocols": [only]})
    e = refused(w.port, client_ctx(version=refused_version))
    assert isinstance(e, ssl.SSLError) and "PROTOCOL_VERSION" in str(e), e
    assert b.requests == []
    c = https(w.port, client_ctx())
    assert c.version == only and c.sent["x-ssl-protocol"] == only


# ---------------------------------------------------------------------------
# 4. resumption
# ---------------------------------------------------------------------------

RESUMPTION = [
    # (client version, session_tickets, what carries the session)
    (ssl.TLSVersion.TLSv1_2, False, "session id"),
    (ssl.TLSVersion.TLSv1_2, True, "ticket"),
    (ssl.TLSVersion.TLSv1_3, True, "ticket"),
    (ssl.TLSVersion.TLSv1_3, False, "stateful"),
]
RESUMPTION_IDS = ["tls12-session-id", "tls12-ticket", "tls13-ticket", "tls13-stateful"]


def resume_setup(weir, backend, certs, tickets, workers=1):
    return start(weir, backend, {"certificates": [pair(certs.a)], "session_tickets": tickets},
                 workers=workers)


def first_session(w, ctx, kind):
    c = https(w.port, ctx)
    assert not c.reused and c.sent["x-ssl-session-reused"] == "."
    sess = c.session_after
    assert sess is not None
    if kind == "session id":
        assert not sess.has_ticket
    elif kind == "ticket":
        assert sess.has_ticket
    return c


@pytest.mark.parametrize("version,tickets,kind", RESUMPTION, ids=RESUMPTION_IDS)
def test_resumption(weir, backend, certs, version, tickets, kind):
    w, b = resume_setup(weir, backend, certs, tickets)
    ctx = client_ctx(certs.ca, version=version)
    sess = first_session(w, ctx, kind).session_after
    for _ in range(3):
        c = https(w.port, ctx, session=sess)
        assert c.reused, kind
        assert c.sent["x-ssl-session-reused"] == "r"
        sess = c.session_after      # TLS 1.3 stateful sessions are single-use


def test_session_id_resumption_with_s_client(weir, backend, certs, tmp_path):
    w, b = resume_setup(weir, backend, certs, False)
    sess = str(tmp_path / "s_client.session")
    rc, out = s_client(w.port, "-tls1_2", "-sess_out", sess, stdin=REQ)
    assert rc == 0 and "New, TLSv1.2" in out, out
    assert '"X-Ssl-Session-Reused", "."' in out, out
    rc, out = s_client(w.port, "-tls1_2", "-sess_in", sess, stdin=REQ)
    assert rc == 0 and "Reused, TLSv1.2" in out, out
    assert '"X-Ssl-Session-Reused", "r"' in out, out
    # no ticket was sent: this was the shared session cache
    assert "TLS session ticket:" not in out, out


def test_tls13_resumption_gets_a_new_ticket(weir, backend, certs):
    """A resumed TLS 1.3 session gets a fresh ticket (RFC 8446 C.4: clients
    use a ticket once), so a chain of connections, each resuming with the
    ticket the last one got, resumes every time with a new session each."""
    w, _ = start(weir, backend, {"certificates": [pair(certs.a)]})
    ctx = client_ctx(certs.ca, version=ssl.TLSVersion.TLSv1_3)
    sess, ids = None, []
    for i in range(4):
        c = https(w.port, ctx, session=sess)
        assert c.reused == (i > 0), (i, w.log())
        ids.append(c.session_after.id)
        sess = c.session_after
    assert len(set(ids)) == 4, "a resumed connection got no new ticket"


@pytest.mark.parametrize("version,tickets,kind", [RESUMPTION[0], RESUMPTION[2]],
                         ids=[RESUMPTION_IDS[0], RESUMPTION_IDS[2]])
def test_resumption_across_workers(weir, backend, certs, version, tickets, kind):
    """Ten resumptions, alternating between the two workers: all multishot
    accepts share one listening socket and the kernel wakes the same worker
    every time, so the worker that served the previous connection is
    stopped (SIGSTOP) while the next one connects; the other one picks the
    connection up (weir's accept watch re-arms an accept that sees a
    connection waiting, 100 to 300 ms) and must resume a session the stopped
    one made."""
    w, b = resume_setup(weir, backend, certs, tickets, workers=2)
    ctx = client_ctx(certs.ca, version=version)
    c = Conn(w.port, ctx)
    last = worker_of(w, w.port, c.local_port)
    c.request()
    sess = c.session
    c.close()
    served = []
    for _ in range(10):
        stop(last)
        try:
            c = Conn(w.port, ctx, session=sess)
            pid = worker_of(w, w.port, c.local_port)
            sent = sent_headers(c.request())
            sess = c.session
            c.close()
        finally:
            os.kill(last, signal.SIGCONT)
        assert pid != last, "the stopped worker %d served" % last
        assert c.reused and sent["x-ssl-session-reused"] == "r", (kind, pid)
        served.append(pid)
        last = pid
    assert set(served) == set(w.workers()), served


@pytest.mark.parametrize("version,tickets,kind", [RESUMPTION[0], RESUMPTION[2]],
                         ids=[RESUMPTION_IDS[0], RESUMPTION_IDS[2]])
def test_resumption_across_reload(weir, backend, certs, version, tickets, kind):
    w, b = resume_setup(weir, backend, certs, tickets)
    old = w.workers()
    ctx = client_ctx(certs.ca, version=version)
    sess = first_session(w, ctx, kind).session_after
    gen = reload(w, w.cfg)
    assert wait_generation(w, gen) != old
    c = https(w.port, ctx, session=sess)
    assert c.reused and c.sent["x-ssl-session-reused"] == "r", w.log()


@pytest.mark.parametrize("version,tickets,kind", [RESUMPTION[0], RESUMPTION[2]],
                         ids=[RESUMPTION_IDS[0], RESUMPTION_IDS[2]])
def test_session_resumes_only_on_its_listener(weir, backend, certs, version, tickets, kind):
    """Two TLS listeners with the same certificate: a session made on one
    does not resume on the other (the ID context is the listener's name)."""
    b = backend()
    w = weir()
    tls = {"certificates": [pair(certs.a)], "session_tickets": tickets}
    cfg = tls_config(w, b, tls, port=free_port())
    other = free_port()
    cfg["listeners"].append({"address": "127.0.0.1:%d" % other, "tls": tls})
    w.start(cfg)
    ctx = client_ctx(certs.ca, version=version)
    sess = first_session(w, ctx, kind).session_after
    c = https(other, ctx, session=sess)
    assert not c.reused and c.sent["x-ssl-session-reused"] == "."
    assert https(w.port, ctx, session=sess).reused


# ---------------------------------------------------------------------------
# 5. client certificates
# ---------------------------------------------------------------------------

VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def mtls_setup(weir, backend, certs, verify):
    return start(weir, backend, {"certificates": [pair(certs.a)],
                                 "client_ca": os.path.basename(certs.ca.cert),
                                 "verify_client": verify})


def assert_good_client(c, certs):
    s = c.sent
    assert s["x-ssl-client-verify"] == "SUCCESS", s
    assert s["x-ssl-client-s-dn"] == "CN=alice", s
    assert s["x-ssl-client-i-dn"] == "CN=weir listener CA", s
    assert s["x-ssl-client-fingerprint"] == hashlib.sha1(der(certs.client)).hexdigest(), s
    assert int(s["x-ssl-client-serial"], 16) == int(x509_field(certs.client, "serial"), 16), s


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_verify_client_on(weir, backend, certs, version):
    w, b = mtls_setup(weir, backend, certs, "on")
    e = refused(w.port, client_ctx(certs.ca, version=version))
    # TLS 1.2: the handshake fails; TLS 1.3: the alert follows the client's Finished
    assert isinstance(e, ssl.SSLError), e
    assert re.search("CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE", str(e)), e
    e = refused(w.port, client_ctx(certs.ca, version=version, cert=certs.stranger))
    assert isinstance(e, ssl.SSLError) and "UNKNOWN_CA" in str(e), e
    assert b.requests == []
    c = https(w.port, client_ctx(certs.ca, version=version, cert=certs.client))
    assert_good_client(c, certs)
    assert len(b.requests) == 1


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_verify_client_on_every_certificate(weir, backend, certs, version):
    """A client that SNI-switches to a certificate other than the default
    is asked for its certificate just the same, and resumes with it."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a), pair(certs.c)],
                                 "client_ca": os.path.basename(certs.ca.cert),
                                 "verify_client": "on"})
    e = refused(w.port, client_ctx(certs.ca, version=version), sni="c.test")
    assert isinstance(e, ssl.SSLError), e
    assert b.requests == []
    ctx = client_ctx(certs.ca, version=version, cert=certs.client)
    c = https(w.port, ctx, sni="c.test")
    assert c.der == der(certs.c)
    assert_good_client(c, certs)
    again = https(w.port, ctx, sni="c.test", session=c.session_after)
    assert again.reused and again.der == der(certs.c)
    assert_good_client(again, certs)


def test_verify_client_optional(weir, backend, certs):
    w, b = mtls_setup(weir, backend, certs, "optional")
    for version in VERSIONS:
        c = https(w.port, client_ctx(certs.ca, version=version))
        assert c.sent["x-ssl-client-verify"] == "NONE", c.sent
        for name in ("s-dn", "i-dn", "fingerprint", "serial"):
            assert "x-ssl-client-" + name not in c.sent, c.sent
        assert_good_client(https(w.port, client_ctx(certs.ca, version=version,
                                                    cert=certs.client)), certs)
        # optional still verifies a certificate that is given, as nginx's: the
        # handshake ends, the request gets a 400 and is not forwarded
        c = Conn(w.port, client_ctx(certs.ca, version=version, cert=certs.stranger))
        try:
            r = c.request("/", close=True)
        finally:
            c.close()
        assert r.status == 400 and b"SSL certificate error" in r.body, r
    assert len(b.requests) == 4
    assert "client certificate did not verify: unable to verify the first certificate" in w.log()


@pytest.mark.parametrize("version,tickets,kind", [RESUMPTION[0], RESUMPTION[2]],
                         ids=[RESUMPTION_IDS[0], RESUMPTION_IDS[2]])
def test_client_certificate_kept_by_resumption(weir, backend, certs, version, tickets, kind):
    """A resumed session has no Certificate message: the variables come from
    the session, the same as on the full handshake."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)], "session_tickets": tickets,
                                 "client_ca": os.path.basename(certs.ca.cert),
                                 "verify_client": "on"})
    ctx = client_ctx(certs.ca, version=version, cert=certs.client)
    full = https(w.port, ctx)
    assert_good_client(full, certs)
    again = https(w.port, ctx, session=full.session_after)
    assert again.reused and again.sent["x-ssl-session-reused"] == "r"
    assert_good_client(again, certs)


def test_client_ca_alone_means_verify_client_on(weir, backend, certs):
    """client_ca without verify_client requires a certificate (nginx would
    not ask for one without ssl_verify_client)."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)],
                                 "client_ca": os.path.basename(certs.ca.cert)})
    assert isinstance(refused(w.port, client_ctx(certs.ca)), ssl.SSLError)
    assert_good_client(https(w.port, client_ctx(certs.ca, cert=certs.client)), certs)


def test_verify_client_off_asks_for_nothing(weir, backend, certs):
    w, b = mtls_setup(weir, backend, certs, "off")
    c = https(w.port, client_ctx(certs.ca, cert=certs.client))
    assert c.sent["x-ssl-client-verify"] == "NONE"
    assert "x-ssl-client-s-dn" not in c.sent
    rc, out = s_client(w.port, "-tls1_2", stdin=REQ)
    assert "No client certificate CA names sent" in out, out


# ---------------------------------------------------------------------------
# 6. certificates replaced by a reload
# ---------------------------------------------------------------------------


def install(src, dst_dir, name="site"):
    """Copy a tlspki Cert's cert and key to site.pem/site.key (by rename,
    as a deployment tool would)."""
    for ext, path in ((".pem", src.cert), (".key", src.key)):
        tmp = os.path.join(dst_dir, name + ext + ".new")
        shutil.copy(path, tmp)
        os.replace(tmp, os.path.join(dst_dir, name + ext))


SITE = {"cert": "site.pem", "key": "site.key"}

# T stands for the config directory, as messages spell paths
KEY_MISMATCH = r"tls: key T/%s does not match certificate T/%s"


def test_certificate_replaced_on_reload(weir, backend, certs, tmp_path):
    v1 = certs.pki.leaf(certs.ca, "site.test")
    v2 = certs.pki.leaf(certs.ca, "site-v2.test", sans=["DNS:site.test"])
    assert x509_field(v1, "serial") != x509_field(v2, "serial")
    install(v1, str(tmp_path))
    w, b = start(weir, backend, {"certificates": [SITE]})
    ctx = client_ctx(certs.ca)
    kept = Conn(w.port, ctx, sni="site.test")
    assert kept.der == der(v1)
    assert kept.request().status == 200
    install(v2, str(tmp_path))
    gen = reload(w)
    assert wait_for(lambda: "reload: generation %d started" % gen in w.log(), 10), w.log()
    # the connection made before the reload goes on (the draining worker
    # answers within its grace, and says close)
    r = kept.request()
    assert r.status == 200 and r.headers.get("Connection", "").lower() == "close", r
    kept.close()
    wait_generation(w, gen)
    c = https(w.port, ctx, sni="site.test")
    assert c.der == der(v2), c.cert
    assert c.cert["subject"] == ((("commonName", "site-v2.test"),),)


def test_broken_certificate_reload_keeps_the_old_one(weir, backend, certs, tmp_path):
    v1 = certs.pki.leaf(certs.ca, "site.test")
    v2 = certs.pki.leaf(certs.ca, "site-v2.test", sans=["DNS:site.test"])
    install(v1, str(tmp_path))
    w, b = start(weir, backend, {"certificates": [SITE]})
    workers = w.workers()
    shutil.copy(v2.cert, str(tmp_path / "site.pem"))     # the key stays v1's
    reload(w)
    assert wait_for(lambda: "reload failed" in w.log(), 10), w.log()
    message = KEY_MISMATCH.replace("T/", re.escape(str(tmp_path)) + "/") % (r"site\.key",
                                                                          r"site\.pem")
    assert re.search(r"weir\.yaml:\d+:\d+: " + message, w.log()), w.log()
    assert w.workers() == workers
    ctx = client_ctx(certs.ca)
    assert https(w.port, ctx).der == der(v1)
    # repaired, the next reload takes it
    install(v2, str(tmp_path))
    gen = reload(w)
    wait_generation(w, gen)
    assert https(w.port, ctx).der == der(v2)


def test_reload_turns_tls_on_and_off(weir, backend, certs):
    """The same address, plain, then TLS, then plain again: each reload's
    new connections speak what the new config says."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    plain_cfg = dict(w.cfg, listeners=[{"address": "127.0.0.1:%d" % w.port}])
    for cfg, scheme in [(plain_cfg, "http"), (w.cfg, "https"), (plain_cfg, "http")]:
        wait_generation(w, reload(w, cfg))
        if scheme == "https":
            assert https(w.port, client_ctx()).sent["x-scheme"] == "https"
        else:
            assert sent_headers(get(w.port, "/")).get("x-scheme") == "http"


# ---------------------------------------------------------------------------
# 7. big bodies
# ---------------------------------------------------------------------------


def test_big_bodies_byte_exact(weir, backend, certs):
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    c = Conn(w.port, client_ctx(certs.ca))
    up = 3 << 20
    r = c.request("/echo", method="POST", body=pattern(up))
    assert r.status == 200 and r.json()["body_len"] == up
    assert r.json()["body_sha256"] == pattern_sha256(up)
    down = 8 << 20
    for path in ("/bytes/%d" % down, "/chunked/%d" % down):
        r = c.request(path)
        assert r.status == 200 and r.complete, path
        assert len(r.body) == down and sha256(r.body) == pattern_sha256(down), path
    c.close()


def test_keepalive_responses_of_mixed_sizes(weir, backend, certs):
    """Responses of many sizes back to back on one connection, each
    byte-exact and the next one still framed right: records grow from 1360
    bytes to 16 KiB once 64 KiB went out, wherever in a response (head,
    body, chunk framing) that point falls."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    c = Conn(w.port, client_ctx(certs.ca))
    for path in ["/bytes/300", "/bytes/100000", "/chunked/100000", "/bytes/5000",
                 "/bytes/100000", "/bytes/1", "/chunked/70000", "/bytes/1048576", "/"]:
        r = c.request(path)
        assert r.status == 200 and r.complete, (path, r)
        if path != "/":
            n = int(path.rsplit("/", 1)[1])
            assert len(r.body) == n and sha256(r.body) == pattern_sha256(n), path
    c.close()


def test_stalled_reader_memory_bounded(weir, backend, certs):
    """A client asks for 64 MiB over TLS and reads nothing for 1.5 s: weir
    stops reading the backend instead of sealing the body into its own
    memory, and the body then arrives whole. Bound: the worker's VmRSS
    within 16 MiB of a warmed-up value (measured: 1 MiB, 6.5 MiB under
    ASan, whatever the body's size; buffering it would take 64)."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)]})
    wpid = w.workers()[0]
    ctx = client_ctx(certs.ca)
    warm = Conn(w.port, ctx)
    assert len(warm.request("/bytes/%d" % (1 << 20), close=True).body) == 1 << 20
    warm.close()
    time.sleep(0.2)
    base = proc_status_kb(wpid, "VmRSS")
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(30)
    raw.connect(("127.0.0.1", w.port))
    s = ctx.wrap_socket(raw)
    n = 64 << 20
    s.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % n)
    time.sleep(1.5)
    growth = proc_status_kb(wpid, "VmRSS") - base
    r = read_response(Reader(s))
    s.close()
    assert r.status == 200 and len(r.body) == n and sha256(r.body) == pattern_sha256(n)
    assert growth < 16384, "worker RSS grew by %d KiB while the client read nothing" % growth


# ---------------------------------------------------------------------------
# 8. bad input
# ---------------------------------------------------------------------------


@pytest.fixture
def victim(weir, backend, certs):
    """A TLS listener with handshake_timeout 1s; victim.check() at the end
    of a test: no worker crashed, nothing reached the backend, and a normal
    request works."""
    w, b = start(weir, backend, {"certificates": [pair(certs.a)], "handshake_timeout": "1s"})
    pids = w.workers()
    return types.SimpleNamespace(w=w, b=b, port=w.port, check=lambda: unharmed(w, b, pids))


def plain(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def trickle(s, data, every=0.05, limit=8.0):
    """Send data a byte at a time until the peer closes: seconds it took,
    or None if all went out within limit."""
    t0 = time.monotonic()
    try:
        for i in range(len(data)):
            s.send(data[i:i + 1])
            time.sleep(every)
            if time.monotonic() - t0 > limit:
                return None
        res = wait_closed(s, limit)
        return res and time.monotonic() - t0
    except (BrokenPipeError, ConnectionResetError):
        return time.monotonic() - t0


@pytest.mark.parametrize("where,how", [("handshake_timeout", "stall"),
                                       ("client_header_timeout", "stall"),
                                       ("handshake_timeout", "trickle")])
def test_slow_client_hello_cut(weir, backend, certs, where, how):
    """Half a ClientHello, then nothing; or a ClientHello a byte every 50 ms
    (25 s of it): closed after the handshake timeout, 1 s, set directly or
    inherited from client_header_timeout. It bounds the whole handshake,
    not the wait for each byte."""
    tls = {"certificates": [pair(certs.a)]}
    limits = None
    if where == "handshake_timeout":
        tls["handshake_timeout"] = "1s"
    else:
        limits = {"client_header_timeout": "1s"}
    w, b = start(weir, backend, tls, limits=limits)
    pids = w.workers()
    hello = hello_bytes()[0]
    assert len(hello) > 500
    s = plain(w.port)
    if how == "stall":
        s.sendall(hello[:len(hello) // 2])
        res = wait_closed(s, 8)
        assert res is not None, "still open after 8 s"
        assert b"HTTP" not in res[0]
        took = res[1]
    else:
        took = trickle(s, hello[:-1])
        assert took is not None, "still open after 8 s"
    s.close()
    assert 0.5 <= took <= 5, took
    unharmed(w, b, pids)


@pytest.mark.parametrize("sent", ["nothing", "half-hello"])
def test_clients_that_leave_during_the_handshake(victim, sent):
    """500 clients that connect, send nothing or half a ClientHello, and
    close (port scanners, health checks, impatient browsers)."""
    data = b"" if sent == "nothing" else hello_bytes()[0][:100]
    for _ in range(500):
        s = plain(victim.port)
        if data:
            s.sendall(data)
        s.close()
    time.sleep(0.3)     # the worker has read every close
    victim.check()


GARBAGE = {
    "random": hashlib.sha256(b"not tls").digest() * 32,
    "zeros": b"\0" * 1024,
    "bad-record-version": b"\x16\x09\x09\x00\x10" + b"\x01" * 16,
    "oversized-record": b"\x16\x03\x01\xff\xff" + b"\x01" * 64,
    "bad-handshake-message": b"\x16\x03\x01\x00\x08\x01\x00\x00\x04\xff\xff\xff\xff",
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_instead_of_client_hello(victim, kind):
    s = plain(victim.port)
    s.sendall(GARBAGE[kind])
    res = wait_closed(s)
    s.close()
    assert res is not None, "still open"
    assert b"HTTP" not in res[0]
    victim.check()


def test_plain_http_to_the_tls_port(victim):
    r = raw_request(victim.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", check_close=True)
    assert r.status == 400, r
    assert b"The plain HTTP request was sent to HTTPS port" in r.body, r
    assert r.closed
    victim.check()


def test_fatal_alert_after_client_hello(victim):
    hello = hello_bytes()[0]
    s = plain(victim.port)
    s.sendall(hello)
    s.settimeout(5)
    assert s.recv(65536)[:1] == b"\x16"     # the server's first flight
    s.sendall(b"\x15\x03\x03\x00\x02\x02\x28")     # fatal handshake_failure
    res = wait_closed(s)
    s.close()
    assert res is not None, "still open after a fatal alert"
    victim.check()


@pytest.mark.parametrize("version", VERSIONS, ids=["tls12", "tls13"])
def test_truncated_record_after_handshake(victim, version):
    """A handshake, one request, then a record header claiming 16 KiB and
    100 bytes of it, and the client's FIN."""
    raw = plain(victim.port)
    dup = raw.dup()
    c = client_ctx(version=version).wrap_socket(raw)
    c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert read_response(Reader(c)).status == 200
    victim.b.clear()
    dup.sendall(b"\x17\x03\x03\x40\x00" + b"\xaa" * 100)
    dup.shutdown(socket.SHUT_WR)
    res = wait_closed(dup)
    dup.close()
    c.close()
    assert res is not None, "still open after a truncated record and FIN"
    victim.check()


def test_garbage_record_after_handshake(victim):
    """A full-size application record that does not decrypt: closed."""
    raw = plain(victim.port)
    dup = raw.dup()
    c = client_ctx().wrap_socket(raw)
    dup.sendall(b"\x17\x03\x03\x40\x00" + b"\xaa" * 0x4000)
    res = wait_closed(dup)
    dup.close()
    c.close()
    assert res is not None, "still open after a record that does not decrypt"
    victim.check()


def test_renegotiation_refused(victim):
    """s_client's "R" on TLS 1.2: weir answers the second ClientHello with a
    no_renegotiation warning alert and no ServerHello; OpenSSL's client then
    gives up with a fatal handshake_failure of its own, so the connection
    ends there (from the client's side)."""
    p = subprocess.Popen(["openssl", "s_client", "-connect", "127.0.0.1:%d" % victim.port,
                          "-tls1_2", "-msg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    try:
        out, _ = p.communicate(b"R\n", timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        pytest.fail("s_client still running 10 s after R:\n%s" % out.decode("latin-1"))
    out = out.decode("latin-1")
    assert "RENEGOTIATING" in out, out
    after = out.split("RENEGOTIATING", 1)[1]
    assert re.search(r"<<< TLS 1\.2, Alert \[length 0002\], warning no_renegotiation", after), out
    assert "ServerHello" not in after, out
    assert p.returncode != 0
    victim.check()


def test_client_hello_byte_by_byte(victim):
    """A ClientHello in one-byte segments, then the request in the same
    segment as the client's Finished: both are taken apart correctly."""
    hello, obj, inc, out = hello_bytes(client_ctx(version=ssl.TLSVersion.TLSv1_3))
    s = plain(victim.port)
    for i in range(len(hello)):
        s.send(hello[i:i + 1])
    s.settimeout(10)
    inc.write(s.recv(65536))
    finished = bio_handshake(s, obj, inc, out)
    obj.write(REQ)
    s.sendall(finished + out.read())
    body = bio_read_response(s, obj, inc)
    s.close()
    assert body.startswith(b"HTTP/1.1 200 "), body[:300]
    victim.b.clear()
    victim.check()


# ---------------------------------------------------------------------------
# 9. config errors
# ---------------------------------------------------------------------------


def tls_text(entries=(("a.pem", "a.key"),), extra=(), modules=("router", "lb_roundrobin", "tls")):
    """A config whose listener has a tls mapping at line 11; each
    certificate entry is two lines from 13 (cert: at column 11, its value at
    17; key: at 11, its value at 16); extra lines follow inside the mapping."""
    lines = base(modules=modules) + ["    tls:",                  # 11
                                      "      certificates:"]       # 12
    for cert, key in entries:
        lines += ["        - cert: %s" % cert,
                  "          key: %s" % key]
    lines += ["      " + e for e in extra]
    lines += ["routes:", "  - path: /", "    upstream: u",
              "upstreams:", "  u:", "    servers: [127.0.0.1:9]"]
    return "\n".join(lines) + "\n"


def config_error(tmp_path, text):
    rc, out, err = check(tmp_path, text)
    assert rc == 1, out + err
    return out + err


@pytest.fixture
def conf_certs(certs, tmp_path):
    """a.pem/a.key (a.test), b.key (another key) in the config directory."""
    shutil.copy(certs.a.cert, str(tmp_path / "a.pem"))
    shutil.copy(certs.a.key, str(tmp_path / "a.key"))
    shutil.copy(certs.c.key, str(tmp_path / "b.key"))
    shutil.copy(certs.ca.cert, str(tmp_path / "ca.pem"))
    return certs


def test_good_tls_config(tmp_path, conf_certs):
    text = tls_text(extra=["protocols: [TLSv1.2, TLSv1.3]", "alpn: [http/1.1]",
                           "session_tickets: false", "client_ca: ca.pem",
                           "verify_client: optional", "handshake_timeout: 2s",
                           'ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256"',
                           'ciphersuites: "TLS_AES_128_GCM_SHA256"'])
    rc, out, err = check(tmp_path, text)
    assert rc == 0, out + err
    # -t loads the files: without the certificate the same config fails
    os.unlink(str(tmp_path / "a.pem"))
    assert config_error(tmp_path, text)


NO_FILE = r": .*No such file or directory"

# (certificate entry, more lines of the tls mapping, line:col, message)
CONFIG_ERRORS = {
    "missing-cert": (("nope.pem", "a.key"), [], "13:17",
                     r"tls: cannot load certificate T/nope\.pem" + NO_FILE),
    "missing-key": (("a.pem", "missing.key"), [], "14:16",
                    r"tls: cannot load key T/missing\.key" + NO_FILE),
    # unreadable, even for root
    "key-is-a-directory": (("a.pem", "dir.key"), [], "14:16",
                           r"tls: cannot load key T/dir\.key: \S"),
    "key-not-pem": (("a.pem", "junk.key"), [], "14:16", r"tls: cannot load key T/junk\.key: \S"),
    "key-mismatch": (("a.pem", "b.key"), [], "14:16", KEY_MISMATCH % (r"b\.key", r"a\.pem")),
    "missing-client-ca": (("a.pem", "a.key"), ["client_ca: nope.pem"], "15:18",
                          r"tls: cannot load client_ca T/nope\.pem" + NO_FILE),
    "tlsv14": (None, ["protocols: [TLSv1.2, TLSv1.4]"], "15:28",
               r"tls: unknown protocol 'TLSv1\.4' \(known: TLSv1\.2, TLSv1\.3\)"),
    "tlsv11": (None, ["protocols: [TLSv1.1, TLSv1.2]"], "15:19",
               r"tls: protocol TLSv1\.1 is not supported: it is insecure"),
    "tlsv1": (None, ["protocols: [TLSv1]"], "15:19", r"tls: protocol TLSv1 is not supported"),
    "protocols-not-a-list": (None, ["protocols: TLSv1.2"], "15:18",
                             r"tls: 'protocols' must be a list"),
    "cipher": (None, ['ciphers: "NOPE-CIPHER"'], "15:16",
               r"tls: bad cipher string NOPE-CIPHER: no cipher match"),
    "ciphersuites": (None, ['ciphersuites: "NOPE"'], "15:21", r"tls: bad ciphersuites string NOPE"),
    "typo": (None, ["session_tikets: false"], "15:7",
             r"unknown key 'session_tikets' in a listener's tls \(known: certificates, "),
    "verify-without-ca": (None, ["verify_client: on"], "15:22",
                          r"tls: verify_client needs 'client_ca'"),
    "verify-bad": (None, ["verify_client: maybe", "client_ca: ca.pem"], "15:22",
                   r"tls: verify_client is off, optional or on"),
    "alpn-h3": (None, ["alpn: [h3, http/1.1]"], "15:14",
                r"tls: weir does not speak the protocol 'h3' \(alpn lists what it offers: h2, "
                r"http/1.1\)"),
    "handshake-timeout": (None, ["handshake_timeout: soon"], "15:26",
                          r"invalid duration 'soon' for 'handshake_timeout'"),
}


@pytest.mark.parametrize("kind", list(CONFIG_ERRORS))
def test_config_errors(tmp_path, conf_certs, kind):
    entry, extra, where, message = CONFIG_ERRORS[kind]
    os.mkdir(str(tmp_path / "dir.key"))
    (tmp_path / "junk.key").write_text("-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n"
                                       "-----END PRIVATE KEY-----\n")
    out = config_error(tmp_path, tls_text([entry] if entry else (("a.pem", "a.key"),), extra))
    message = message.replace("T/", re.escape(str(tmp_path)) + "/")
    assert re.search(r"^weir\.yaml:%s: %s" % (where, message), out, re.M), out


# (lines 11.. of the listener in place of its tls mapping, line:col, message)
MAPPING_ERRORS = {
    "tls-true": (["    tls: true"], "11:10", "tls: on a listener, a mapping with 'certificates'"),
    "no-certificates": (["    tls: {alpn: [http/1.1]}"], "11:10",
                        "tls: 'certificates' must list at least one {cert, key}"),
    "empty-certificates": (["    tls:", "      certificates: []"], "12:21",
                           "tls: 'certificates' must list at least one {cert, key}"),
    "entry-not-a-mapping": (["    tls:", "      certificates: [a.pem]"], "12:22",
                            "tls: a certificate is a mapping {cert: FILE, key: FILE}"),
    "entry-without-key": (["    tls:", "      certificates:", "        - {cert: a.pem}"], "13:11",
                          "tls: a certificate needs both 'cert' and 'key'"),
    "entry-typo": (["    tls:", "      certificates:", "        - {cert: a.pem, kee: a.key}"],
                   "13:25", "unknown key 'kee' in a certificate (known: cert, key)"),
}


@pytest.mark.parametrize("kind", list(MAPPING_ERRORS))
def test_tls_mapping_errors(tmp_path, conf_certs, kind):
    repl, where, message = MAPPING_ERRORS[kind]
    lines = tls_text().splitlines()
    out = config_error(tmp_path, "\n".join(lines[:10] + repl + lines[14:]) + "\n")
    assert has_line(out, tmp_path, "%s: %s" % (where, message)), out


def test_expired_certificate_is_a_warning(tmp_path, certs):
    old = certs.pki.leaf(certs.ca, "old.test", expired=True)
    text = tls_text([(os.path.basename(old.cert), os.path.basename(old.key))])
    rc, out, err = check(tmp_path, text)
    assert rc == 0, out + err
    assert re.search(r"weir\.yaml:13:17: warning: certificate %s expired on "
                     % re.escape(old.cert), out + err), out + err


@pytest.mark.parametrize("value", ["on", '"on"', "true", "optional", "off", '"off"', "false"])
def test_verify_client_spellings(tmp_path, conf_certs, value):
    rc, out, err = check(tmp_path, tls_text(extra=["client_ca: ca.pem",
                                                   "verify_client: " + value]))
    assert rc == 0, out + err


# ---------------------------------------------------------------------------
# 10. without the module
# ---------------------------------------------------------------------------


def test_tls_key_without_the_module(tmp_path, conf_certs):
    out = config_error(tmp_path, tls_text(modules=("router", "lb_roundrobin")))
    assert has_line(out, tmp_path,
                    "11:5: 'tls' is provided by module 'tls', which is not loaded"), out


def test_ssl_variables_without_the_module(weir, backend, tmp_path):
    log = str(tmp_path / "access.log")
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b"}],
                     modules=["router", "lb_roundrobin", "headers", "accesslog"],
                     request_headers={"set": VARS},
                     access_log={"path": log, "flush": "50ms",
                                 "format": "$scheme $ssl_protocol $ssl_cipher "
                                           "$ssl_client_verify $ssl_session_reused"}))
    r = get(w.port, "/")
    assert sent_headers(r).get("x-scheme") == "http"
    assert not [n for n in sent_headers(r) if n.startswith("x-ssl-")], r.json()
    lines = wait_for(lambda: open(log).read().splitlines() if os.path.exists(log) else None, 5)
    assert lines == ["http - - - -"], lines


# ---------------------------------------------------------------------------
# 11. a plain listener next to a TLS one
# ---------------------------------------------------------------------------


def test_plain_and_tls_listeners_side_by_side(weir, backend, certs):
    b = backend()
    w = weir()
    cfg = tls_config(w, b, {"certificates": [pair(certs.a)]}, port=free_port())
    plain_port = free_port()
    cfg["listeners"].append({"address": "127.0.0.1:%d" % plain_port})
    w.start(cfg)
    s = sent_headers(get(plain_port, "/"))
    assert s["x-scheme"] == "http"
    assert not [n for n in s if n.startswith("x-ssl-")], s
    c = https(w.port, client_ctx(certs.ca))
    assert c.sent["x-scheme"] == "https" and c.sent["x-ssl-protocol"] == c.version
    # a TLS client on the plain port reads weir's clear-text 400 as a bad record
    e = refused(plain_port, client_ctx())
    assert isinstance(e, ssl.SSLError) and "WRONG_VERSION_NUMBER" in str(e), e
