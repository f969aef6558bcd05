"""WebSocket and other Upgrade tunnels (SPEC §6: "WebSocket and other `Upgrade`
requests are tunnelled both ways after 101, with `tunnel_timeout` (upstream
scope, default 1h) as the idle limit"; §8: old workers keep what they carry
until `shutdown_timeout`).

python3-websockets (the asyncio API of 10.x, Debian 12) on both sides of weir:
WsServer below is an echo server used as the backend, the client connects
through weir. Raw-socket tests cover what the library hides: an unsolicited
101, half-close in both directions.

Every socket operation has a timeout, so a proxy that does not tunnel fails
rather than hangs; nothing here asserts a duration."""

import asyncio
import base64
import hashlib
import os
import signal
import socket
import threading
import time

import pytest

import websockets          # Debian's python3-websockets; missing, the file fails to load
from websockets.exceptions import ConnectionClosed

from conftest import (Reader, connect, get, raw_handler, raw_request, read_response,
                      simple_proxy, wait_for)

MiB = 1 << 20
WS_MAX = 4 * MiB
OP = 10.0           # seconds: the bound on any single WebSocket operation
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---------------------------------------------------------------- the backend


class WsServer:
    """A websockets echo server on 127.0.0.1, on its own event loop in a thread.

    Every text or binary message is sent back as it came, except text commands:
      "cmd:close:CODE:REASON"   the server starts the close handshake
      "cmd:ping"                the server pings the client, waits for the pong,
                                then sends "cmd:ping:ok"
    conns records one dict per connection: path, request headers, messages
    echoed, and when it ended the close code and reason the server received."""

    def __init__(self):
        self.conns = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = self._call(self._start())
        self.port = self.server.sockets[0].getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port

    def _call(self, coro, timeout=OP):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self):
        return await websockets.serve(self._handler, "127.0.0.1", 0, max_size=WS_MAX,
                                      ping_interval=None, close_timeout=5)

    async def _handler(self, ws):
        hs = [(k.lower(), v) for k, v in ws.request_headers.raw_items()]
        rec = {"path": ws.path, "headers": hs,
               "messages": 0, "ended": False, "close_code": None, "close_reason": None}
        with self.lock:
            self.conns.append(rec)
        try:
            async for msg in ws:
                if isinstance(msg, str) and msg.startswith("cmd:close:"):
                    _, _, code, reason = msg.split(":", 3)
                    await ws.close(int(code), reason)
                    break
                if msg == "cmd:ping":
                    pong = await ws.ping(b"from-server")
                    await asyncio.wait_for(pong, OP)
                    await ws.send("cmd:ping:ok")
                    continue
                await ws.send(msg)
                rec["messages"] += 1
        except ConnectionClosed:
            pass
        finally:
            rec["close_code"] = ws.close_code
            rec["close_reason"] = ws.close_reason
            rec["ended"] = True

    def snapshot(self):
        with self.lock:
            return [dict(c) for c in self.conns]

    def stop(self):
        async def _stop():
            self.server.close()
            await asyncio.wait_for(self.server.wait_closed(), 5)
        try:
            self._call(_stop())
        except Exception:
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def ws_backend():
    made = []

    def make():
        s = WsServer()
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def _ws_connect(port, path="/ws"):
    return websockets.connect("ws://127.0.0.1:%d%s" % (port, path), max_size=WS_MAX,
                              ping_interval=None, open_timeout=OP, close_timeout=5)


async def _echo(ws, msg):
    await asyncio.wait_for(ws.send(msg), OP)
    got = await asyncio.wait_for(ws.recv(), OP)
    assert type(got) is type(msg), (type(got), type(msg))
    assert got == msg, "echo differs (%d bytes sent, %d back)" % (len(msg), len(got))


async def _wait_closed(ws, timeout=OP):
    """True once the connection closes (any code); False if a message comes or
    nothing happens within timeout."""
    try:
        await asyncio.wait_for(ws.recv(), timeout)
    except ConnectionClosed:
        return True
    except asyncio.TimeoutError:
        return False
    return False


def _run(coro):
    return asyncio.run(asyncio.wait_for(coro, 14))


def _proxy(weir, backend_obj, **upstream):
    return simple_proxy(weir, backend_obj, upstream_extra=dict({"retries": 0}, **upstream))


# ---------------------------------------------------------------- echo


def test_text_and_binary_echo(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb)

    async def main():
        async with _ws_connect(w.port) as ws:
            await _echo(ws, "hello, tunnel")
            await _echo(ws, b"\x00\x01\xfe\xff binary \r\n\r\n")
            await _echo(ws, "ünïcödé ✓")
            await _echo(ws, b"")
            await _echo(ws, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # HTTP-looking payload
    _run(main())
    conns = wsb.snapshot()
    assert len(conns) == 1
    hs = dict(conns[0]["headers"])
    assert hs.get("upgrade", "").lower() == "websocket", hs
    assert "upgrade" in hs.get("connection", "").lower(), hs
    assert hs.get("sec-websocket-key"), hs
    assert conns[0]["path"] == "/ws"
    assert conns[0]["messages"] == 5


def test_one_mib_messages(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb)
    blob = os.urandom(MiB)
    text = (hashlib.sha256(b"t").hexdigest() * (MiB // 64 + 1))[:MiB]

    async def main():
        async with _ws_connect(w.port) as ws:
            for i in range(3):
                await _echo(ws, blob[i:] + blob[:i])
                await _echo(ws, text[i:] + text[:i])
            # several in flight at once, both ways
            msgs = [bytes([i]) * MiB for i in range(4)]
            for m in msgs:
                await asyncio.wait_for(ws.send(m), OP)
            for m in msgs:
                got = await asyncio.wait_for(ws.recv(), OP)
                assert got == m
    _run(main())
    assert wsb.snapshot()[0]["messages"] == 10


def test_ping_pong_both_ways(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb)

    async def main():
        async with _ws_connect(w.port) as ws:
            for i in range(3):          # the client pings, the server's pong comes back
                pong = await ws.ping(b"from-client-%d" % i)
                await asyncio.wait_for(pong, OP)
            await asyncio.wait_for(ws.send("cmd:ping"), OP)     # and the other way
            assert await asyncio.wait_for(ws.recv(), OP) == "cmd:ping:ok"
            await _echo(ws, "still fine")
    _run(main())


def test_close_handshake_client_initiated(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb)

    async def main():
        ws = await _ws_connect(w.port)
        await _echo(ws, "before close")
        await asyncio.wait_for(ws.close(4000, "client bye"), OP)
        # the server echoes the close frame: the client saw it come back
        assert ws.close_code == 4000, ws.close_code
        assert ws.close_reason == "client bye", ws.close_reason
    _run(main())
    assert wait_for(lambda: wsb.snapshot() and wsb.snapshot()[0]["ended"], 5)
    c = wsb.snapshot()[0]
    assert (c["close_code"], c["close_reason"]) == (4000, "client bye"), c


def test_close_handshake_server_initiated(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb)

    async def main():
        ws = await _ws_connect(w.port)
        await _echo(ws, "before close")
        await asyncio.wait_for(ws.send("cmd:close:4001:server bye"), OP)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), OP)
        await asyncio.wait_for(ws.wait_closed(), OP)
        assert ws.close_code == 4001, ws.close_code
        assert ws.close_reason == "server bye", ws.close_reason
    _run(main())
    assert wait_for(lambda: wsb.snapshot() and wsb.snapshot()[0]["ended"], 5)
    c = wsb.snapshot()[0]
    # the client echoed the server's close frame back through weir
    assert (c["close_code"], c["close_reason"]) == (4001, "server bye"), c


def test_twenty_concurrent_clients(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb)
    n = 20

    async def client(i):
        async with _ws_connect(w.port, "/ws/%d" % i) as ws:
            for j in range(10):
                if j % 2:
                    await _echo(ws, ("client %d message %d " % (i, j)) * (j + 1))
                else:
                    await _echo(ws, bytes([i]) * (j * 7000 + i))
        return i

    async def main():
        done = await asyncio.gather(*(client(i) for i in range(n)))
        assert sorted(done) == list(range(n))
    _run(main())
    assert wait_for(lambda: (lambda c: len(c) == n and all(x["ended"] for x in c))(
        wsb.snapshot()), 5), wsb.snapshot()
    conns = wsb.snapshot()
    assert sorted(c["path"] for c in conns) == sorted("/ws/%d" % i for i in range(n))
    assert all(c["messages"] == 10 and c["close_code"] == 1000 for c in conns), conns


# ---------------------------------------------------------------- raw sockets


def _ws_key():
    return base64.b64encode(os.urandom(16)).decode()


def _ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def _upgrade_request(path="/raw", key=None):
    return ("GET %s HTTP/1.1\r\nHost: tunnel.test\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, key or _ws_key())).encode()


def _switching(req):
    return ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: %s\r\n\r\n"
            % _ws_accept(req.headers.get("sec-websocket-key", ""))).encode()


@pytest.mark.parametrize("extra", ["", "Upgrade: websocket\r\n"],
                         ids=["no-upgrade-header", "upgrade-without-connection-token"])
def test_unsolicited_101_is_502(weir, backend, extra):
    """A 101 to a request that did not ask to upgrade (no Upgrade, or an Upgrade
    that Connection does not name, which is dropped as hop-by-hop) is invalid."""
    b = backend()
    b.on("/sw", raw_handler(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                            b"Connection: Upgrade\r\n\r\nTUNNEL-BYTES"))
    w = _proxy(weir, b)
    r = raw_request(w.port, ("GET /sw HTTP/1.1\r\nHost: x\r\n%sConnection: close\r\n\r\n"
                             % extra).encode(), check_close=True)
    assert r.status == 502, r
    assert b"TUNNEL-BYTES" not in r.body
    reqs = b.wait_requests(1)
    assert reqs and not reqs[0].headers.has("upgrade"), reqs
    assert get(w.port, "/echo").status == 200


def test_declined_upgrade_is_an_ordinary_exchange(weir, backend):
    """The upgrade request reaches the upstream with Upgrade and Connection:
    upgrade; an upstream that answers 200 instead of 101 is an ordinary
    response, and the client connection goes on as HTTP."""
    b = backend()
    w = _proxy(weir, b)
    s = connect(w.port)
    rd = Reader(s)
    s.sendall(_upgrade_request("/echo"))
    r = read_response(rd)
    assert r is not None and r.status == 200, r
    doc = r.json()
    hs = {k.lower(): v for k, v in doc["headers"]}
    assert hs.get("upgrade", "").lower() == "websocket", hs
    assert "upgrade" in hs.get("connection", "").lower(), hs
    s.sendall(b"GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
    r2 = read_response(rd)
    assert r2 is not None and r2.status == 200 and r2.json()["path"] == "/after", r2
    s.close()


def _open_raw_tunnel(port, path="/raw"):
    s = connect(port, timeout=OP)
    s.sendall(_upgrade_request(path))
    rd = Reader(s)
    r = read_response(rd)
    assert r is not None and r.status == 101, r
    assert (r.headers.get("upgrade") or "").lower() == "websocket", r.headers
    return s, rd


def test_half_close_client_first(weir, backend):
    """The client shuts its write side after the upgrade: the backend reads the
    client's bytes, then EOF, and can still send; the client reads all of it,
    then the backend's close."""
    b = backend()
    seen = {}
    done = threading.Event()
    reply = b"after-your-eof:" + bytes(range(256)) * 1024

    def handler(ctx, req):
        ctx.sock.settimeout(OP)
        ctx.send(_switching(req))
        try:
            seen["data"] = ctx.reader.read_exact(len(b"client-data"))
            rest = ctx.reader.read_to_eof()     # returns at EOF (or a reset)
            seen["rest"], seen["reset"] = rest, ctx.reader.reset
            ctx.send(reply)
            seen["sent"] = True
        except Exception as e:                  # noqa: BLE001 - reported below
            seen["error"] = repr(e)
        finally:
            done.set()
        return False
    b.on("/raw", handler)
    w = _proxy(weir, b)
    s, rd = _open_raw_tunnel(w.port)
    s.sendall(b"client-data")
    s.shutdown(socket.SHUT_WR)
    assert done.wait(OP), "the backend never saw EOF after the client's half-close"
    assert "error" not in seen, seen
    assert seen["data"] == b"client-data" and seen["rest"] == b"" and not seen["reset"], seen
    got = rd.read_to_eof()
    s.close()
    assert not rd.reset, "the tunnel was reset instead of closed"
    assert got == reply, "client got %d of %d bytes sent after its EOF" % (len(got), len(reply))


def test_half_close_backend_first(weir, backend):
    """The backend shuts its write side: the client reads its bytes, then EOF,
    and can still send; the backend reads that, then EOF."""
    b = backend()
    seen = {}
    done = threading.Event()
    late = b"late-from-client:" + bytes(range(256)) * 1024

    def handler(ctx, req):
        ctx.sock.settimeout(OP)
        ctx.send(_switching(req) + b"server-data")
        ctx.sock.shutdown(socket.SHUT_WR)
        try:
            seen["got"] = ctx.reader.read_to_eof()
            seen["reset"] = ctx.reader.reset
        except Exception as e:                  # noqa: BLE001
            seen["error"] = repr(e)
        finally:
            done.set()
        return False
    b.on("/raw", handler)
    w = _proxy(weir, b)
    s, rd = _open_raw_tunnel(w.port)
    assert rd.read_exact(len(b"server-data")) == b"server-data"
    assert rd.read_to_eof() == b"" and not rd.reset, "no clean EOF after the backend's half-close"
    try:
        s.sendall(late)
        s.shutdown(socket.SHUT_WR)
    except OSError as e:
        raise AssertionError("the tunnel was torn down after the backend's half-close: %r" % e)
    assert done.wait(OP), "the backend never saw the client's EOF"
    s.close()
    assert "error" not in seen, seen
    assert not seen["reset"], "the backend's side was reset"
    assert seen["got"] == late, "backend got %d of %d bytes" % (len(seen["got"]), len(late))


# ---------------------------------------------------------------- tunnel_timeout


def test_tunnel_timeout_closes_idle_tunnel(weir, ws_backend):
    wsb = ws_backend()
    w = _proxy(weir, wsb, tunnel_timeout="1s")

    async def main():
        ws = await _ws_connect(w.port)
        await _echo(ws, "one message, then silence")
        assert await _wait_closed(ws, OP), "an idle tunnel stayed open past tunnel_timeout"
    _run(main())
    # weir closed its upstream side as well
    assert wait_for(lambda: wsb.snapshot()[0]["ended"], 5), wsb.snapshot()


def test_tunnel_timeout_activity_keeps_tunnel_open(weir, ws_backend):
    """Messages every 0.3 s for about three times tunnel_timeout keep the
    tunnel open; once quiet, it closes."""
    wsb = ws_backend()
    w = _proxy(weir, wsb, tunnel_timeout="1s")

    async def main():
        ws = await _ws_connect(w.port)
        t_end = time.monotonic() + 3.0
        i = 0
        while time.monotonic() < t_end:
            await asyncio.sleep(0.3)
            await _echo(ws, "keepalive %d" % i)
            i += 1
        assert ws.open
        assert await _wait_closed(ws, OP), "the quiet tunnel was never closed"
        return i
    n = _run(main())
    assert wait_for(lambda: wsb.snapshot()[0]["ended"], 5)
    assert wsb.snapshot()[0]["messages"] == n


# ---------------------------------------------------------------- reload


def test_tunnel_kept_across_reload_until_shutdown_timeout(weir, ws_backend):
    """After a reload the old worker keeps its established tunnel working (past
    the 1 s grace after which idle keepalive connections are closed) while new
    tunnels go to the new workers; at shutdown_timeout the old worker closes
    it, both sides, and exits; the new tunnel is untouched."""
    wsb = ws_backend()
    w = weir()
    cfg = w.config(upstreams={"ws": {"servers": [wsb.addr], "retries": 0}},
                   routes=[{"path": "/", "upstream": "ws"}], workers=1,
                   limits={"shutdown_timeout": "3s"})
    w.start(cfg)
    old = w.wait_workers(1)

    async def main():
        ws_old = await _ws_connect(w.port, "/old")
        await _echo(ws_old, "before reload")
        await asyncio.to_thread(w.write, cfg)
        w.send_signal(signal.SIGHUP)
        new = await asyncio.to_thread(
            wait_for, lambda: [p for p in w.workers() if p not in old], 10)
        assert new, "no new worker after the reload; log:\n" + w.log()
        await asyncio.sleep(1.2)
        for i in range(3):
            await _echo(ws_old, "after reload %d" % i)
            await _echo(ws_old, os.urandom(100000))
        assert any(p in w.workers() for p in old), "the old worker is already gone"
        ws_new = await _ws_connect(w.port, "/new")
        await _echo(ws_new, "a new tunnel")
        assert await _wait_closed(ws_old, 10), \
            "the old worker kept its tunnel past shutdown_timeout"
        await _echo(ws_new, "the new tunnel is still there")
        await asyncio.wait_for(ws_new.close(), OP)
    _run(main())
    assert wait_for(lambda: not any(p in w.workers() for p in old), 5), (old, w.workers())
    conns = {c["path"]: c for c in wsb.snapshot()}
    assert wait_for(lambda: {c["path"]: c for c in wsb.snapshot()}["/old"]["ended"], 5), conns
    assert conns["/old"]["messages"] == 7, conns["/old"]
    assert w.alive()
