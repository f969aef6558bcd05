"""Continuous HTTP/1.1 load with an exact failure count, for reload tests.

    with Load(port, clients=4, record_header="X-Gen") as load:
        load.wait_requests(200)
        ... reload weir ...
        assert load.wait_value_everywhere("2")
    assert load.failures == [], load.summary()

Each client is a thread that sends `GET path` over a raw socket (no http.client,
so every byte and every error is ours to see), reads the whole response
(Content-Length, chunked, or to EOF when there is neither) and checks the status.
With keepalive=True a connection is reused until the server says
`Connection: close` or something goes wrong; with keepalive=False every request
has its own connection and says `Connection: close`.

The retry rule
--------------
A server may close an idle keep-alive connection at any moment (RFC 9112 9.3.1,
RFC 9110 9.2.2), and the close can cross the next request on the wire.  The
client then sees EOF, ECONNRESET, EPIPE or ECONNABORTED before any byte of a
response, and cannot know whether the request was processed; for an idempotent
GET, browsers and curl simply resend it once on a new connection.  A graceful
reload closes idle connections exactly like that, so doing the same here is what
makes "zero failed requests" the right expectation.  Precisely:

  retried once (counted in `retries`): the connection had already carried at
      least one complete response, AND the error is EOF / ECONNRESET / EPIPE /
      ECONNABORTED, AND not a single byte of this response had arrived.
  failure (listed in `failures`): everything else -- connect refused / reset /
      timed out, any error on a fresh connection (including the retry's), an
      error after some response bytes, a truncated body, an unparseable
      response, a status not in expect_status, a timeout.

A fresh connection that is closed without an answer is a failure: that is the
server dropping a request, which a reload must never do, and the rule above must
not hide it.

Only good responses are counted in `ok` and recorded in `seen` (so
sum(seen.values()) == ok) and in last_values().
"""

import collections
import errno
import re
import socket
import threading
import time

# Errors that, before any response byte on a reused connection, mean "the server
# closed the idle connection under us".
_RETRYABLE_ERRNOS = {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED}
_MAX_LINE = 64 * 1024
_STATUS_RE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\r\n]*)?\r?\n\Z")


class _Eof(Exception):
    """The peer closed the connection while we waited for `stage`."""


class _Bad(Exception):
    """The bytes received are not a valid HTTP/1 response."""


class _Conn:
    """One client connection with a byte buffer and a per-request deadline.

    rx counts the response bytes received for the current request (bytes left
    over from the previous response count too: they are not a fresh start).
    done counts complete responses read on this connection."""

    def __init__(self, addr, port, timeout):
        self.sock = socket.create_connection((addr, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.rx = 0
        self.done = 0
        self.deadline = time.monotonic() + timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _settimeout(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("timed out")
        self.sock.settimeout(left)

    def _fill(self, stage):
        self._settimeout()
        d = self.sock.recv(65536)
        if not d:
            raise _Eof(stage)
        self.rx += len(d)
        self.buf += d

    def line(self, stage):
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                out = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return out
            if len(self.buf) > _MAX_LINE:
                raise _Bad("line longer than %d bytes in %s" % (_MAX_LINE, stage))
            self._fill(stage)

    def skip(self, n, stage):
        """Consume exactly n body bytes (the body itself is not kept)."""
        while n > 0:
            if not self.buf:
                self._fill(stage)
            k = min(n, len(self.buf))
            del self.buf[:k]
            n -= k

    def skip_to_eof(self):
        try:
            while True:
                self._fill("body")
                self.buf.clear()
        except _Eof:
            pass

    def exchange(self, request, timeout):
        """Send one request, read its response; returns (status, headers, keep)
        where headers maps lower-case names to values (duplicates joined by
        ', ') and keep says whether the connection may carry another request."""
        self.deadline = time.monotonic() + timeout
        self.rx = len(self.buf)
        self._settimeout()
        self.sock.sendall(request)
        while True:  # skip interim 1xx responses (but not 101)
            ln = self.line("status line")
            m = _STATUS_RE.match(ln)
            if not m:
                raise _Bad("status line %r" % ln[:80])
            minor, status = int(m.group(1)), int(m.group(2))
            headers = {}
            while True:
                ln = self.line("headers").rstrip(b"\r\n")
                if not ln:
                    break
                name, sep, value = ln.partition(b":")
                if not sep or not name or name != name.strip():
                    raise _Bad("header line %r" % ln[:80])
                name = name.decode("latin-1").lower()
                value = value.strip().decode("latin-1")
                headers[name] = headers[name] + ", " + value if name in headers else value
            if not (100 <= status < 200) or status == 101:
                break
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        keep = "close" not in tokens if minor == 1 else "keep-alive" in tokens
        te = headers.get("transfer-encoding")
        if status in (101, 204, 304):
            pass  # no body
        elif te is not None:
            if te.split(",")[-1].strip().lower() != "chunked":
                self.skip_to_eof()  # RFC 9112 6.3: not chunked -> delimited by close
                keep = False
            else:
                self._chunked()
        elif "content-length" in headers:
            cl = headers["content-length"]
            if not cl.isdigit() or not cl.isascii():
                raise _Bad("Content-Length %r" % cl)
            self.skip(int(cl), "body")
        else:
            # No framing: the body runs to EOF (RFC 9112 6.3 rule 8), whether or
            # not the server also said Connection: close.
            self.skip_to_eof()
            keep = False
        self.done += 1
        return status, headers, keep

    def _chunked(self):
        while True:
            ln = self.line("chunk size").rstrip(b"\r\n")
            size = ln.split(b";", 1)[0].strip()
            try:
                n = int(size, 16)
            except ValueError:
                raise _Bad("chunk size line %r" % ln[:80]) from None
            if n == 0:
                while self.line("trailers").rstrip(b"\r\n"):
                    pass
                return
            self.skip(n, "body")
            if self.line("body").rstrip(b"\r\n"):
                raise _Bad("no CRLF after chunk data")


def _retryable(e):
    if isinstance(e, _Eof):
        return True
    return isinstance(e, OSError) and not isinstance(e, socket.timeout) \
        and e.errno in _RETRYABLE_ERRNOS


def _what(e, rx):
    """Describe a failed exchange: (what happened, detail)."""
    after = "after %d response bytes" % rx if rx else "before any response byte"
    if isinstance(e, _Eof):
        return ("truncated body" if str(e) == "body" else
                "connection closed %s (in %s)" % (after, e)), "EOF"
    if isinstance(e, _Bad):
        return "unparseable response", str(e)
    if isinstance(e, socket.timeout):
        return "timeout " + after, "%s: %s" % (type(e).__name__, e)
    return "socket error " + after, "%s: %s" % (type(e).__name__, e)


class Load:
    """`clients` threads sending GET requests to 127.0.0.1:port until stop().

    addr (an addition to the brief's API): the address to connect to; `host`
    is only what goes into the Host header."""

    def __init__(self, port, clients=4, keepalive=True, path="/", host="127.0.0.1",
                 headers=None, record_header=None, expect_status=(200,), timeout=10.0,
                 pause=0.0, addr="127.0.0.1", retry=True):
        """pause: seconds each client sleeps between requests (0 = back to back).
        retry=False: no request is retried (a client like wrk): every error counts."""
        self.retry = retry
        self.port, self.clients, self.keepalive = port, clients, keepalive
        self.addr, self.timeout, self.pause = addr, timeout, pause
        self.record_header = record_header.lower() if record_header else None
        self.expect_status = set(expect_status)
        extra = headers.items() if isinstance(headers, dict) else (headers or ())
        lines = ["GET %s HTTP/1.1" % path, "Host: %s" % host]
        lines += ["%s: %s" % (k, v) for k, v in extra]
        if not keepalive:
            lines.append("Connection: close")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        self.ok = 0
        self.retries = 0
        self.failures = []
        self.seen = collections.Counter()
        self._last = [None] * clients
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # notified on every ok
        self._stop = threading.Event()
        self._threads = []

    # -- control -----------------------------------------------------------

    def start(self):
        self._stop.clear()
        for cid in range(self.clients):
            t = threading.Thread(target=self._run, args=(cid,), daemon=True,
                                 name="loadgen-%d" % cid)
            self._threads.append(t)
            t.start()
        return self

    def stop(self):
        self._stop.set()
        # A request (plus its one retry) is bounded by 2 timeouts.
        end = time.monotonic() + 2 * self.timeout + 5
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
        self._threads = [t for t in self._threads if t.is_alive()]
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- results -----------------------------------------------------------

    def last_values(self):
        with self._lock:
            return list(self._last)

    def wait_requests(self, n, timeout=10.0):
        with self._cond:
            target = self.ok + n
            return self._cond.wait_for(lambda: self.ok >= target, timeout)

    def wait_value_everywhere(self, value, timeout=10.0):
        with self._cond:
            return self._cond.wait_for(lambda: all(v == value for v in self._last), timeout)

    def summary(self):
        with self._lock:
            f = self.failures[:5]
            more = len(self.failures) - len(f)
            s = "ok=%d retries=%d failures=%d" % (self.ok, self.retries, len(self.failures))
            if f:
                s += ": " + "; ".join(f) + ("; ... %d more" % more if more else "")
            return s

    # -- client threads ----------------------------------------------------

    def _run(self, cid):
        conn, n = None, 0
        try:
            while not self._stop.is_set():
                n += 1
                try:
                    conn = self._one(cid, n, conn)
                except Exception as e:  # a bug here must show, not kill the thread quietly
                    self._fail(cid, n, "load generator error", repr(e))
                    if conn:
                        conn.close()
                    conn = None
                if self.pause:
                    self._stop.wait(self.pause)
        finally:
            if conn:
                conn.close()

    def _one(self, cid, n, conn):
        """One request, with at most one retry; returns the connection to reuse."""
        retry = False
        while True:
            prefix = "retry: " if retry else ""
            if conn is None:
                try:
                    conn = _Conn(self.addr, self.port, self.timeout)
                except OSError as e:
                    self._fail(cid, n, prefix + "connect failed", "%s: %s" % (type(e).__name__, e))
                    return None
            reused = conn.done > 0
            try:
                status, headers, keep = conn.exchange(self._request, self.timeout)
            except (OSError, _Eof, _Bad) as e:
                conn.close()
                if self.retry and reused and conn.rx == 0 and _retryable(e):
                    with self._lock:
                        self.retries += 1
                    conn, retry = None, True
                    continue
                what, detail = _what(e, conn.rx)
                where = "reused" if reused else "fresh"
                self._fail(cid, n, "%s%s on %s connection" % (prefix, what, where), detail)
                return None
            if not keep or not self.keepalive:
                conn.close()
                conn = None
            if status not in self.expect_status:
                self._fail(cid, n, prefix + "status %d" % status,
                           "expected %s" % sorted(self.expect_status))
                return conn
            value = headers.get(self.record_header) if self.record_header else None
            with self._cond:
                self.ok += 1
                self.seen[value] += 1
                self._last[cid] = value
                self._cond.notify_all()
            return conn

    def _fail(self, cid, n, what, detail):
        with self._cond:
            self.failures.append("client %d request %d: %s (%s)" % (cid, n, what, detail))
            self._cond.notify_all()
