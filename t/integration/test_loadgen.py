"""Self-test of loadgen.Load against tiny local servers (no weir binary needed)."""

import socket
import socketserver
import struct
import threading
import time

import pytest

from loadgen import Load


class Server:
    """A threaded TCP server on 127.0.0.1 that runs handler(conn, server) for
    every accepted connection; counts connections and request heads."""

    def __init__(self, handler):
        outer = self
        self.handler = handler
        self.conns = 0
        self.requests = []  # every request head read through read_request()
        self.lock = threading.Lock()

        class H(socketserver.BaseRequestHandler):
            def handle(self):
                with outer.lock:
                    outer.conns += 1
                try:
                    handler(Conn(self.request, outer))
                except OSError:
                    pass

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self.srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


class Conn:
    def __init__(self, sock, server):
        self.sock, self.server, self.buf = sock, server, b""

    def read_request(self):
        """The next request head (lower-cased), or None at EOF / reset."""
        while b"\r\n\r\n" not in self.buf:
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                return None
            if not d:
                return None
            self.buf += d
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        head = head.decode("latin-1").lower()
        with self.server.lock:
            self.server.requests.append(head)
        return head

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def reset(self):
        """Close with SO_LINGER 0: the peer gets a RST."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def ok_response(gen="a", extra=""):
    return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Gen: %s\r\n%s\r\nok" % (gen, extra)


@pytest.fixture
def serve():
    made = []

    def make(handler):
        s = Server(handler)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def wait_until(pred, timeout=3.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_keepalive_ok_and_value_switch(serve):
    gen = ["a"]

    def handler(c):
        while c.read_request() is not None:
            c.send(ok_response(gen[0]))

    s = serve(handler)
    with Load(s.port, clients=4, record_header="x-GEN") as load:
        assert load.wait_requests(200)
        assert load.wait_value_everywhere("a")
        n_a = load.ok
        gen[0] = "b"
        assert load.wait_value_everywhere("b")
    assert load.ok > 0 and load.failures == [] and load.retries == 0, load.summary()
    assert load.seen["a"] >= n_a and set(load.seen) == {"a", "b"}
    assert sum(load.seen.values()) == load.ok
    assert load.last_values() == ["b"] * 4
    assert s.conns == 4  # every client kept its one connection
    assert all(r.startswith("get / http/1.1\r\nhost: 127.0.0.1") for r in s.requests)


def test_only_a_values(serve):
    def handler(c):
        while c.read_request() is not None:
            c.send(ok_response("a"))

    s = serve(handler)
    with Load(s.port, clients=4, record_header="X-Gen") as load:
        assert load.wait_requests(100)
    assert load.ok > 0 and load.failures == []
    assert load.seen == {"a": load.ok}


@pytest.mark.parametrize("how", ["rst", "fin"])
def test_idle_close_is_retried(serve, how):
    # Answer one request (without Connection: close), then drop the connection
    # before reading the next one: every reuse fails before a response byte.
    def handler(c):
        if c.read_request() is not None:
            c.send(ok_response())
            time.sleep(0.002)  # let the client's next request cross the close, sometimes
            c.reset() if how == "rst" else c.sock.close()

    s = serve(handler)
    with Load(s.port, clients=4, record_header="X-Gen") as load:
        assert load.wait_requests(100)
    assert load.failures == [], load.summary()
    assert load.retries > 0 and load.ok > 0
    assert load.seen == {"a": load.ok}


def test_fresh_connection_closed_unanswered_is_failure(serve):
    def handler(c):
        c.read_request()
        c.sock.close()

    s = serve(handler)
    with Load(s.port, clients=2) as load:
        assert wait_until(lambda: len(load.failures) >= 6)
    assert load.ok == 0 and load.retries == 0
    assert "connection closed before any response byte" in load.failures[0]
    assert "on fresh connection" in load.failures[0]


def test_failed_retry_is_failure(serve):
    # Only the very first connection answers (once); everything after is dropped:
    # the reuse is retried, and the retry's failure must be reported.
    first = threading.Lock()

    def handler(c):
        if c.read_request() is not None and first.acquire(blocking=False):
            c.send(ok_response())
            c.read_request()
        c.sock.close()

    s = serve(handler)
    with Load(s.port, clients=1) as load:
        assert wait_until(lambda: len(load.failures) >= 3)
    assert load.ok == 1 and load.retries == 1, load.summary()
    assert load.failures[0].startswith("client 0 request 2: retry: connection closed")


def test_partial_body_is_failure(serve):
    # First request on a connection: full answer; second: half a body, then close.
    # The second is an error after response bytes on a reused connection: no retry.
    def handler(c):
        if c.read_request() is None:
            return
        c.send(ok_response())
        if c.read_request() is not None:
            c.send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        c.sock.close()

    s = serve(handler)
    with Load(s.port, clients=2) as load:
        assert wait_until(lambda: len(load.failures) >= 6)
    assert load.ok > 0 and load.retries == 0
    assert all("truncated body on reused connection" in f for f in load.failures), load.summary()


def test_partial_body_fresh_and_garbage(serve):
    def handler(c):
        c.read_request()
        c.send("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc" if c.server.conns % 2
               else "garbage\r\n\r\n")
        c.sock.close()

    s = serve(handler)
    with Load(s.port, clients=1) as load:
        assert wait_until(lambda: len(load.failures) >= 4)
    assert load.ok == 0
    text = load.summary()
    assert "truncated body on fresh connection" in text and "unparseable response" in text


def test_status_500_is_failure(serve):
    def handler(c):
        while c.read_request() is not None:
            c.send("HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nbad")

    s = serve(handler)
    with Load(s.port, clients=2) as load:
        assert wait_until(lambda: len(load.failures) >= 10)
    assert load.ok == 0 and "status 500" in load.failures[0]
    assert s.conns == 2  # a 500 with keep-alive does not cost the connection
    with Load(s.port, clients=2, expect_status=(500,)) as load:
        assert load.wait_requests(10)
    assert load.failures == []


def test_chunked(serve):
    def handler(c):
        while c.read_request() is not None:
            c.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Gen: c\r\n\r\n"
                   "5;ext=1\r\nhello\r\n")
            c.send("1A\r\n" + "x" * 26 + "\r\n0\r\nTrailer: t\r\n\r\n")

    s = serve(handler)
    with Load(s.port, clients=3, record_header="X-Gen") as load:
        assert load.wait_requests(100)
    assert load.failures == [] and load.seen == {"c": load.ok}, load.summary()
    assert s.conns == 3  # framing was read exactly: the connections stayed usable


def test_no_keepalive_and_read_to_eof(serve):
    def handler(c):
        req = c.read_request()
        if req is not None and "\r\nconnection: close" in req:
            c.send("HTTP/1.1 200 OK\r\nConnection: close\r\nX-Gen: e\r\n\r\nbody to eof")
        elif req is not None:
            c.send("HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n")
        c.sock.close()

    s = serve(handler)
    with Load(s.port, clients=2, keepalive=False, record_header="X-Gen",
              headers={"X-Test": "1"}, path="/p?q", host="test.local") as load:
        assert load.wait_requests(50)
    assert load.failures == [] and load.seen == {"e": load.ok}, load.summary()
    assert s.conns == len(s.requests) >= load.ok
    assert s.requests[0] == ("get /p?q http/1.1\r\nhost: test.local\r\n"
                             "x-test: 1\r\nconnection: close")


def test_timeout_and_stop_does_not_hang(serve):
    def handler(c):
        c.read_request()
        time.sleep(1.0)

    s = serve(handler)
    load = Load(s.port, clients=2, timeout=0.2).start()
    assert wait_until(lambda: len(load.failures) >= 2)
    t0 = time.monotonic()
    load.stop()
    assert time.monotonic() - t0 < 1.0
    assert load.ok == 0 and "timeout before any response byte on fresh connection" in load.failures[0]


def test_connect_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    with Load(port, clients=1, pause=0.01) as load:
        assert wait_until(lambda: len(load.failures) >= 2)
    assert "connect failed" in load.failures[0] and "ConnectionRefusedError" in load.failures[0]
    assert load.summary().startswith("ok=0 retries=0 failures=")
