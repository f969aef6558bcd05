"""gRPC through weir (issue 12 item 6): Debian's python3-grpcio as the client
and as the server, weir between them with an h2c listener (`http2: true`) and
an upstream with `protocol: h2`.

The service is generic (raw bytes, no generated stubs), so each method's
answer shows what the server received: unary, server streaming, client
streaming, bidirectional streaming, an error status with a message, a 1 MiB
message each way, 200 calls on one channel, and what a client gets when the
server is gone (grpc-status 14, UNAVAILABLE, as a trailers-only answer)."""

import threading
from concurrent import futures

import pytest

grpc = pytest.importorskip("grpc")

from conftest import free_port  # noqa: E402

SERVICE = "weir.test.Echo"


def ident(b):
    return b


class EchoServicer:
    """The methods, each answering with what it got."""

    def __init__(self):
        self.calls = 0
        self.lock = threading.Lock()
        self.metadata = []

    def _count(self, ctx):
        with self.lock:
            self.calls += 1
            self.metadata.append(dict(ctx.invocation_metadata()))

    def unary(self, req, ctx):
        self._count(ctx)
        return b"u:" + req

    def server_stream(self, req, ctx):
        self._count(ctx)
        for i in range(5):
            yield b"s%d:" % i + req

    def client_stream(self, it, ctx):
        self._count(ctx)
        return b"c:" + b"|".join(it)

    def bidi(self, it, ctx):
        self._count(ctx)
        for m in it:
            yield b"b:" + m

    def fail(self, req, ctx):
        self._count(ctx)
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing: " + req.decode())

    def big(self, req, ctx):
        self._count(ctx)
        return bytes(reversed(req))

    def handlers(self):
        u = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Unary": u(self.unary, ident, ident),
            "ServerStream": grpc.unary_stream_rpc_method_handler(self.server_stream, ident, ident),
            "ClientStream": grpc.stream_unary_rpc_method_handler(self.client_stream, ident, ident),
            "Bidi": grpc.stream_stream_rpc_method_handler(self.bidi, ident, ident),
            "Fail": u(self.fail, ident, ident),
            "Big": u(self.big, ident, ident),
        })


@pytest.fixture
def grpc_server():
    servers = []

    def make():
        svc = EchoServicer()
        port = free_port()
        s = grpc.server(futures.ThreadPoolExecutor(max_workers=8),
                        options=[("grpc.max_receive_message_length", 8 << 20),
                                 ("grpc.max_send_message_length", 8 << 20)])
        s.add_generic_rpc_handlers((svc.handlers(),))
        s.add_insecure_port("127.0.0.1:%d" % port)
        s.start()
        servers.append(s)
        return svc, port, s

    yield make
    for s in servers:
        s.stop(0)


def grpc_proxy(weir, port, modules=None, **upstream):
    """weir on an h2c listener in front of the gRPC server at port; with
    tls= in upstream, module tls talks to it."""
    w = weir()
    ups = {"servers": ["127.0.0.1:%d" % port], "protocol": "h2"}
    ups.update(upstream)
    mods = ["router", "lb_roundrobin"] + (["tls"] if "tls" in upstream else [])
    w.start(w.config(upstreams={"g": ups},
                     routes=[{"path": "/%s/" % SERVICE, "upstream": "g"}],
                     listener={"http2": True}, modules=modules or mods))
    return w


def channel(w):
    return grpc.insecure_channel("127.0.0.1:%d" % w.port,
                                 options=[("grpc.max_receive_message_length", 8 << 20),
                                          ("grpc.max_send_message_length", 8 << 20)])


def method(ch, name, kind="unary_unary"):
    return getattr(ch, kind)("/%s/%s" % (SERVICE, name), request_serializer=ident,
                             response_deserializer=ident)


def test_unary(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        assert method(ch, "Unary")(b"hello", timeout=10) == b"u:hello"
    assert svc.calls == 1


def test_metadata_and_te_trailers_reach_the_server(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        assert method(ch, "Unary")(b"m", metadata=[("x-user", "ann")], timeout=10) == b"u:m"
    md = svc.metadata[0]
    assert md.get("x-user") == "ann"


def test_server_streaming(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        got = list(method(ch, "ServerStream", "unary_stream")(b"q", timeout=10))
    assert got == [b"s%d:q" % i for i in range(5)]


def test_client_streaming(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        got = method(ch, "ClientStream", "stream_unary")(iter([b"a", b"b", b"c"]), timeout=10)
    assert got == b"c:a|b|c"


def test_bidirectional_streaming_is_full_duplex(weir, grpc_server):
    """Each answer arrives before the next message is sent: weir forwards both
    directions at once, it does not wait for the request to end."""
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    sent = []
    answers = []
    cond = threading.Condition()

    def requests():
        for i in range(5):
            msg = b"%d" % i
            sent.append(msg)
            yield msg
            with cond:  # the answer to this message must come back first
                assert cond.wait_for(lambda: len(answers) > i, timeout=10), "no answer to %r" % msg

    with channel(w) as ch:
        for a in method(ch, "Bidi", "stream_stream")(requests(), timeout=20):
            with cond:
                answers.append(a)
                cond.notify_all()
    assert answers == [b"b:%d" % i for i in range(5)]


def test_error_status_and_message_pass_through(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            method(ch, "Fail")(b"widget", timeout=10)
    assert ei.value.code() == grpc.StatusCode.NOT_FOUND
    assert ei.value.details() == "no such thing: widget"


def test_one_mib_message_each_way(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    msg = bytes(range(256)) * 4096  # 1 MiB
    with channel(w) as ch:
        got = method(ch, "Big")(msg, timeout=20)
    assert got == bytes(reversed(msg))


def test_200_calls_on_one_channel(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        unary = method(ch, "Unary")
        for i in range(200):
            assert unary(b"%d" % i, timeout=10) == b"u:%d" % i
    assert svc.calls == 200
    assert w.log().count("connect() failed") == 0


def test_concurrent_calls_share_the_upstream_connection(weir, grpc_server):
    svc, port, _ = grpc_server()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        unary = method(ch, "Unary")
        futs = [unary.future(b"%d" % i, timeout=20) for i in range(50)]
        assert [f.result() for f in futs] == [b"u:%d" % i for i in range(50)]
    assert svc.calls == 50


def test_server_gone_gives_unavailable(weir, grpc_server):
    svc, port, server = grpc_server()
    server.stop(0).wait()
    w = grpc_proxy(weir, port)
    with channel(w) as ch:
        with pytest.raises(grpc.RpcError) as ei:
            method(ch, "Unary")(b"x", timeout=10)
    assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "502" in ei.value.details()
    assert "connect() failed" in w.log()


def test_server_stopping_mid_stream_resets_the_call(weir, grpc_server):
    """A server that goes away after the response started: the client sees the
    call fail (RST_STREAM), never a clean end with a made-up status."""
    svc, port, server = grpc_server()
    w = grpc_proxy(weir, port)
    release = threading.Event()

    def slow_stream(req, ctx):
        yield b"first"
        release.wait(10)
        yield b"second"

    svc.server_stream = slow_stream
    # re-register: a new server on the same port with the patched servicer
    server.stop(0).wait()
    s2 = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    s2.add_generic_rpc_handlers((svc.handlers(),))
    s2.add_insecure_port("127.0.0.1:%d" % port)
    s2.start()
    try:
        with channel(w) as ch:
            call = method(ch, "ServerStream", "unary_stream")(b"", timeout=20)
            assert next(call) == b"first"
            # stop() cancels in the background; wait, or the handler may yet
            # finish the call cleanly once released
            s2.stop(0).wait()
            release.set()
            with pytest.raises(grpc.RpcError) as ei:
                list(call)
            assert ei.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE,
                                       grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN)
    finally:
        s2.stop(0)


def test_grpc_timeout_reaches_the_server_and_a_deadline_ends_the_call(weir):
    """grpc-timeout passes through (the server's deadline is the client's), a
    call past its deadline ends with DEADLINE_EXCEEDED, and the channel goes
    on serving."""
    remaining = []

    def slow(req, ctx):
        remaining.append(ctx.time_remaining())
        threading.Event().wait(3)
        return b"late"

    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {
        "Slow": grpc.unary_unary_rpc_method_handler(slow, ident, ident),
        "Unary": grpc.unary_unary_rpc_method_handler(lambda r, c: b"u:" + r, ident, ident)}),))
    port = free_port()
    srv.add_insecure_port("127.0.0.1:%d" % port)
    srv.start()
    try:
        w = grpc_proxy(weir, port)
        with channel(w) as ch:
            with pytest.raises(grpc.RpcError) as ei:
                method(ch, "Slow")(b"", timeout=0.5)
            assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert method(ch, "Unary")(b"after", timeout=10) == b"u:after"
        assert remaining and remaining[0] is not None and remaining[0] <= 0.5
    finally:
        srv.stop(0)


def _check(w, cfg):
    import subprocess
    from conftest import MODULES_DIR, WEIR_BIN
    w.write(cfg)
    p = subprocess.run([WEIR_BIN, "-t", "-c", w.conf_path, "-M", MODULES_DIR],
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


@pytest.mark.parametrize("kind,ok", [("http", False), ("tcp", True)])
def test_health_check_of_an_h2_upstream(weir, grpc_server, kind, ok):
    """The http check speaks HTTP/1.1, which a gRPC server refuses: on a
    protocol: h2 upstream it is a config error that says to use tcp; tcp
    checks work, and calls still go through."""
    svc, port, _ = grpc_server()
    w = weir()
    cfg = w.config(upstreams={"g": {"servers": ["127.0.0.1:%d" % port], "protocol": "h2",
                                    "health_check": {"type": kind, "interval": "200ms",
                                                     "timeout": "100ms"}}},
                   routes=[{"path": "/%s/" % SERVICE, "upstream": "g"}],
                   listener={"http2": True},
                   modules=["router", "lb_roundrobin", "healthcheck"])
    rc, out = _check(w, cfg)
    if not ok:
        assert rc != 0 and "health_check: type http speaks HTTP/1.1" in out, out
        assert "use type: tcp" in out and "weir.yaml:" in out, out
        return
    assert rc == 0, out
    w.start(cfg)
    with channel(w) as ch:
        assert method(ch, "Unary")(b"hc", timeout=10) == b"u:hc"


def test_protocol_key_is_checked(weir):
    w = weir()
    cfg = w.config(upstreams={"g": {"servers": ["127.0.0.1:1"], "protocol": "h3"}},
                   routes=[{"path": "/", "upstream": "g"}])
    rc, out = _check(w, cfg)
    assert rc != 0 and "'protocol' is http1 or h2" in out and "not 'h3'" in out, out


def test_grpc_server_over_tls(weir, tmp_path):
    """protocol: h2 with tls: weir offers ALPN h2 to a gRPC server that only
    speaks HTTP/2 over TLS, verifies its certificate, and the calls work."""
    from tlspki import Pki
    pki = Pki(tmp_path)
    ca = pki.ca()
    leaf = pki.leaf(ca, "grpc.test")
    with open(leaf.key, "rb") as k, open(leaf.chain, "rb") as c:
        creds = grpc.ssl_server_credentials([(k.read(), c.read())])
    svc = EchoServicer()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    srv.add_generic_rpc_handlers((svc.handlers(),))
    port = free_port()
    srv.add_secure_port("127.0.0.1:%d" % port, creds)
    srv.start()
    try:
        w = grpc_proxy(weir, port, tls={"sni": "grpc.test", "ca": ca.cert})
        with channel(w) as ch:
            assert method(ch, "Unary")(b"tls", timeout=10) == b"u:tls"
            got = list(method(ch, "ServerStream", "unary_stream")(b"s", timeout=10))
            assert got == [b"s%d:s" % i for i in range(5)]
        assert svc.calls == 2
    finally:
        srv.stop(0)
