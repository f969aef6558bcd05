"""The upstream fault matrix (SPEC §10 "A fault matrix", §6 "Responses from
upstreams are checked the same way").

One weir (workers: 1) serves every row.  Each row x client mode has an upstream of
its own (upstream NAME, route /NAME/), backed by a raw fake server (FaultUpstream)
that plays the row's script on the first request for /NAME/fault (or on the first
accepted connection, for faults "right after accept") and answers every other
request with a plain keepalive 200 whose body names the upstream connection:
b"ok:<connection number>".  Upstream config: keepalive: 8, retries: 0,
max_fails: 1000 (so the server is never marked down and nothing is retried),
read_timeout: 1s for the stall rows, 3s otherwise.

EVERY row checks, in this order (failures are collected and reported together):
  (a) what the client sees: weir's own 502/504, or, for faults after the response
      head was sent, an aborted response (connection closed before the framing
      completed; no final chunk `0\\r\\n\\r\\n` on a chunked reply); with
      Connection: close, weir closes after the answer;
  (b) nothing beyond the bad response reaches the client: the upstream marks its
      bad answers with `X-Leak: 1` and `LEAK` body bytes; weir's 502 has neither,
      an aborted body is a prefix of the bytes validly sent before the fault, and
      no stray bytes follow on the client connection;
  (c) the upstream connection is not pooled: weir closes it (the fake upstream sees
      EOF) and the next request arrives on a NEW upstream connection; the fault
      request reached the upstream once (no retry);
  (d) a new line on weir's error log (stderr) names the upstream;
  (e) the same worker serves the next request: worker pid unchanged, the next
      ordinary request gets 200 ok:<new connection>, and no sanitizer report in
      the log.
The 1xx rows are not faults: there the upstream connection may be pooled, so (c)
is checked the other way round (the follow-up request is served correctly whether
or not the connection is reused; reuse is recorded) and (d) is not required.

Client modes: "close" (GET with Connection: close on a fresh connection) and "ka"
(a keepalive client connection).  In "ka" mode, after a complete answer the
follow-up request goes on the SAME client connection unless the answer said
Connection: close, in which case weir must close it (cleanly: no stray bytes).
After an aborted response the client connection must be closed.

A row that kills the worker (or the master) fails (e); weir is then stopped (any
sanitizer report printed while stopping is charged to that row) and started again
with the same config, so one crash does not cascade into the following rows.

Observed and pinned here: a 502/504 for a keepalive client leaves the client
connection open and usable (no Connection: close); 1xx heads are not forwarded to
the client; a head with 5,000 fields (about 44 KB, under the 64 KiB response head
limit) is passed through intact (row fields_5000).

Set WEIR_FAULTS_REPORT=/path.json to get a JSON record of every row (status,
per-check verdicts, whether the ka client connection stayed usable, log lines).
"""

import json
import os
import re
import socket
import struct
import threading
import time

import pytest

from conftest import Eof, Reader, Weir, is_closed, read_response, shutdown_server, wait_for

_weirs = []                 # the conftest report hook attaches these logs on failure
_report = {}

PAUSE = 0.15                # between two writes meant to arrive separately
GATE_TIMEOUT = 5.0          # how long the upstream waits for "the client has the head"
CLIENT_TIMEOUT = 6.0

H200 = b"HTTP/1.1 200 OK\r\n"
LEAK = b"LEAK"              # marker in every bad answer's body
BODY = b"LEAK-BODY"         # 9 bytes

# ---------------------------------------------------------------------------
# script steps for the fake upstream
# ---------------------------------------------------------------------------


def send(b):
    return ("send", b)


PAUSE_STEP = ("pause", PAUSE)
GATE = ("gate",)            # wait until the client has received a response head
RST = ("rst",)              # SO_LINGER 0 + close: a TCP RST
FIN = ("fin",)              # shutdown(SHUT_WR), then read until weir closes
STALL = ("stall",)          # send nothing more; read until weir closes


class Row:
    """kind: "err" (weir's own status), "abort" (head forwarded, then the client
    side aborted), "ok" (1xx rows: the final 200 with body), "exact" (bytes beyond
    Content-Length: exactly the CL bytes), "observe" (5,000 fields)."""

    def __init__(self, rid, steps=(), kind="err", status=502, at_accept=False, refuse=False,
                 read_timeout="3s", framing=None, good=b"", cl=None, body=None,
                 markers=(LEAK,), check=None):
        self.id = rid
        self.steps = list(steps)
        self.kind = kind
        self.status = status
        self.at_accept = at_accept
        self.refuse = refuse
        self.read_timeout = read_timeout
        self.framing = framing          # abort rows: "cl" or "chunked"
        self.good = good                # abort rows: the body bytes validly sent before the fault
        self.cl = cl                    # abort rows with framing "cl": the announced length
        self.body = body                # ok/exact rows: the expected body
        self.markers = markers          # bytes that must never reach the client
        self.check = check              # observe rows: extra check fn(resp, checks)


def bad_head(lines, body=BODY):
    """A 200 head with the marker header first, then `lines` (each CRLF-ended)."""
    return H200 + b"X-Leak: 1\r\n" + lines + b"\r\n" + body


def chunked_first_write(body):
    """A valid chunked head and, in the same write, the body bytes `body`."""
    return H200 + b"Transfer-Encoding: chunked\r\nX-Leak: 1\r\n\r\n" + body


CRASH = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: b\r\n\r\n"
         b"5\r\nhello\r\n3\r\n worLD\r\n0\r\n\r\n")     # the heap-use-after-free bytes
CRASH_MARKERS = (b"hello", b"worLD", b"rLD")

CHUNKED_HEAD = H200 + b"Transfer-Encoding: chunked\r\n\r\n"
LATER_FIRST = CHUNKED_HEAD + b"5\r\nhello\r\n"      # head + one valid chunk, then GATE


def later(bad, good=b"hello", markers=(LEAK, b"rLD")):
    """Bad chunked framing in a write after the head reached the client."""
    return dict(steps=[send(LATER_FIRST), GATE, PAUSE_STEP, send(bad)], kind="abort",
                framing="chunked", good=good, markers=markers)


def fields_5000_head():
    lines = b"".join(b"X%d:v\r\n" % i for i in range(5000))
    return H200 + lines + b"Content-Length: 5\r\n\r\nhello"


def check_5000(r, ck):
    # Observed (weir at the time of writing): passed through intact.  If this
    # changes to a 502, that is allowed by the brief but must be decided here.
    xs = [(n, v) for n, v in r.headers if re.fullmatch(r"X\d+", n)]
    ck.check("a", r.status == 200 and r.complete and r.body == b"hello",
             "5,000 fields: expected 200 'hello' passed through, got %r" % r)
    ck.check("b", xs == [("X%d" % i, "v") for i in range(5000)],
             "5,000 fields: %d X<n> fields arrived, expected all 5,000 in order" % len(xs))


ROWS = [
    # --- connection level -----------------------------------------------------------
    Row("refused", refuse=True),
    Row("rst_after_accept", [RST], at_accept=True),
    Row("fin_after_accept", [FIN], at_accept=True),
    Row("rst_mid_head", [send(H200 + b"X-Leak: 1\r\nX-A: b"), PAUSE_STEP, RST]),
    Row("fin_mid_head", [send(H200 + b"X-Leak: 1\r\nX-A: b"), PAUSE_STEP, FIN]),
    Row("rst_mid_body_cl", [send(H200 + b"Content-Length: 100\r\n\r\n"), GATE,
                            send(b"a" * 40), PAUSE_STEP, RST],
        kind="abort", framing="cl", cl=100, good=b"a" * 40),
    Row("fin_mid_body_cl", [send(H200 + b"Content-Length: 100\r\n\r\n"), GATE,
                            send(b"a" * 40), PAUSE_STEP, FIN],
        kind="abort", framing="cl", cl=100, good=b"a" * 40),
    Row("rst_mid_body_chunked", [send(CHUNKED_HEAD), GATE,
                                 send(b"5\r\nhello\r\n3\r\nwor"), PAUSE_STEP, RST],
        kind="abort", framing="chunked", good=b"hellowor"),
    Row("fin_mid_body_chunked", [send(CHUNKED_HEAD), GATE,
                                 send(b"5\r\nhello\r\n3\r\nwor"), PAUSE_STEP, FIN],
        kind="abort", framing="chunked", good=b"hellowor"),
    # --- not HTTP / bad status line -------------------------------------------------
    Row("garbage_status_line", [send(b"HELLO LEAK THIS IS NOT HTTP\r\nX-Leak: 1\r\n\r\n" + BODY)]),
    Row("http09_answer", [send(b"<html><body>LEAK-BODY</body></html>\r\n")]),
    Row("http09_answer_then_fin", [send(b"LEAK-BODY LEAK-BODY"), FIN]),
    Row("status_2000", [send(b"HTTP/1.1 2000 OK\r\nX-Leak: 1\r\nContent-Length: 9\r\n\r\n" + BODY)]),
    Row("status_099", [send(b"HTTP/1.1 099 OK\r\nX-Leak: 1\r\nContent-Length: 9\r\n\r\n" + BODY)]),
    # --- bad framing / bad bytes in the response head (SPEC §6) ---------------------
    Row("cl_and_te", [send(bad_head(b"Content-Length: 9\r\nTransfer-Encoding: chunked\r\n",
                                    b"9\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("te_and_cl", [send(bad_head(b"Transfer-Encoding: chunked\r\nContent-Length: 9\r\n",
                                    b"9\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("cl_two_different", [send(bad_head(b"Content-Length: 9\r\nContent-Length: 10\r\n",
                                           BODY + b"!"))]),
    Row("cl_list_different", [send(bad_head(b"Content-Length: 9, 10\r\n", BODY + b"!"))]),
    Row("cl_minus_1", [send(bad_head(b"Content-Length: -1\r\n"))]),
    Row("cl_1x", [send(bad_head(b"Content-Length: 1x\r\n"))]),
    Row("cl_empty", [send(bad_head(b"Content-Length: \r\n"))]),
    Row("te_gzip", [send(bad_head(b"Transfer-Encoding: gzip\r\n"))]),
    Row("te_chunked_gzip", [send(bad_head(b"Transfer-Encoding: chunked, gzip\r\n"))]),
    Row("te_chunked_chunked", [send(bad_head(b"Transfer-Encoding: chunked, chunked\r\n",
                                             b"9\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("te_chunked_two_fields", [send(bad_head(
        b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        b"9\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("obs_fold", [send(bad_head(b"X-A: a\r\n b\r\nContent-Length: 9\r\n"))]),
    Row("ws_before_colon", [send(bad_head(b"X-A : b\r\nContent-Length: 9\r\n"))]),
    Row("name_empty", [send(bad_head(b": b\r\nContent-Length: 9\r\n"))]),
    Row("name_space", [send(bad_head(b"X A: b\r\nContent-Length: 9\r\n"))]),
    Row("name_ctl", [send(bad_head(b"X\x01A: b\r\nContent-Length: 9\r\n"))]),
    Row("name_separator", [send(bad_head(b"X(A): b\r\nContent-Length: 9\r\n"))]),
    Row("name_non_ascii", [send(bad_head(b"X\xe9A: b\r\nContent-Length: 9\r\n"))]),
    Row("value_cr", [send(bad_head(b"X-A: a\rb\r\nContent-Length: 9\r\n"))]),
    Row("value_lf", [send(bad_head(b"X-A: a\nb\r\nContent-Length: 9\r\n"))]),
    Row("value_nul", [send(bad_head(b"X-A: a\x00b\r\nContent-Length: 9\r\n"))]),
    Row("bare_lf_everywhere", [send(b"HTTP/1.1 200 OK\nX-Leak: 1\nContent-Length: 9\n\n" + BODY)]),
    Row("bare_lf_one_line", [send(bad_head(b"X-A: b\nX-B: c\r\nContent-Length: 9\r\n"))]),
    Row("bare_lf_head_end", [send(H200 + b"X-Leak: 1\r\nContent-Length: 9\r\n\n" + BODY)]),
    Row("bare_cr_everywhere", [send(b"HTTP/1.1 200 OK\rX-Leak: 1\rContent-Length: 9\r\r" + BODY)]),
    Row("bare_cr_one_line", [send(bad_head(b"X-A: b\rX-B: c\r\nContent-Length: 9\r\n"))]),
    Row("cr_x_head_end", [send(H200 + b"X-Leak: 1\r\nContent-Length: 9\r\n\rX: y\r\n\r\n" + BODY)]),
    # --- bad body framing in the same write as the head: nothing sent yet -> 502 ----
    Row("chunk_size_zz", [send(chunked_first_write(b"zz\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("chunk_size_overflow", [send(chunked_first_write(
        b"10000000000000000\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("chunk_size_trailing_ws", [send(chunked_first_write(b"9 \r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("chunk_ext_empty_name", [send(chunked_first_write(b"9;=x\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("chunk_ext_ctl", [send(chunked_first_write(b"9;a\x01b\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("chunk_bare_lf_after_size", [send(chunked_first_write(b"9\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("chunk_bare_lf_after_data", [send(chunked_first_write(b"9\r\nLEAK-BODY\n0\r\n\r\n"))]),
    Row("chunk_missing_crlf_exact", [send(CRASH)], markers=CRASH_MARKERS),
    Row("chunk_missing_crlf", [send(chunked_first_write(b"9\r\nLEAK-BODYxx0\r\n\r\n"))]),
    Row("trailer_content_length", [send(chunked_first_write(
        b"9\r\nLEAK-BODY\r\n0\r\nContent-Length: 5\r\n\r\n"))]),
    Row("trailer_transfer_encoding", [send(chunked_first_write(
        b"9\r\nLEAK-BODY\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"))]),
    Row("after_100_chunk_size_zz", [send(b"HTTP/1.1 100 Continue\r\n\r\n" + chunked_first_write(
        b"zz\r\nLEAK-BODY\r\n0\r\n\r\n"))]),
    Row("after_100_missing_crlf_exact", [send(b"HTTP/1.1 100 Continue\r\n\r\n" + CRASH)],
        markers=CRASH_MARKERS),
    Row("split_head_chunk_size_zz", [
        send(H200 + b"Transfer-Encoding: chun"), PAUSE_STEP,
        send(b"ked\r\nX-Leak: 1\r\n\r\nzz\r\nLEAK-BODY\r\n0\r\n\r\n")]),
    Row("split_head_missing_crlf_exact", [send(CRASH[:CRASH.index(b"X-A")]), PAUSE_STEP,
                                          send(CRASH[CRASH.index(b"X-A"):])],
        markers=CRASH_MARKERS),
    # --- bad body framing in a later write, after the head reached the client -------
    Row("later_chunk_size_zz", **later(b"zz\r\nLEAK-BODY\r\n0\r\n\r\n")),
    Row("later_missing_crlf", **later(b"3\r\n worLD\r\n0\r\n\r\n", good=b"hello wo")),
    Row("later_bare_lf_after_data", **later(b"3\r\n wo\nLEAK\r\n0\r\n\r\n", good=b"hello wo")),
    Row("later_chunk_ext_bad", **later(b"3;=x\r\nLEAK\r\n0\r\n\r\n")),
    Row("later_trailer_content_length", **later(b"0\r\nContent-Length: 5\r\n\r\nLEAK")),
    Row("later_trailer_transfer_encoding", **later(b"0\r\nTransfer-Encoding: chunked\r\n\r\nLEAK")),
    # --- unsolicited 101 --------------------------------------------------------------
    Row("unsolicited_101", [send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: LEAK\r\n"
                                 b"Connection: upgrade\r\nX-Leak: 1\r\n\r\n" + BODY)]),
    # --- 1xx before the final answer: not faults -------------------------------------
    Row("one_100", [send(b"HTTP/1.1 100 Continue\r\n\r\n" + H200 +
                         b"Content-Length: 5\r\n\r\nhello")], kind="ok", body=b"hello"),
    Row("one_103", [send(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
                         H200 + b"Content-Length: 5\r\n\r\nhello")], kind="ok", body=b"hello"),
    Row("one_100_own_write", [send(b"HTTP/1.1 100 Continue\r\n\r\n"), PAUSE_STEP,
                              send(H200 + b"Content-Length: 5\r\n\r\nhello")],
        kind="ok", body=b"hello"),
    Row("fifty_100", [send(b"HTTP/1.1 100 Continue\r\n\r\n" * 50 + H200 +
                           b"Content-Length: 5\r\n\r\nhello")], kind="ok", body=b"hello"),
    # --- bytes beyond Content-Length --------------------------------------------------
    Row("beyond_cl_same_write", [send(H200 + b"Content-Length: 5\r\n\r\nhello" + H200 +
                                      b"X-Leak: 1\r\nContent-Length: 9\r\n\r\n" + BODY)],
        kind="exact", body=b"hello"),
    Row("beyond_cl_later_write", [send(H200 + b"Content-Length: 5\r\n\r\nhello"), GATE,
                                  PAUSE_STEP,
                                  send(H200 + b"X-Leak: 1\r\nContent-Length: 9\r\n\r\n" + BODY)],
        kind="exact", body=b"hello"),
    # --- stalls (read_timeout 1s) -----------------------------------------------------
    Row("stall_before_head", [STALL], status=504, read_timeout="1s"),
    Row("stall_mid_head", [send(H200 + b"X-Leak: 1\r\nX-A: b"), STALL], status=504,
        read_timeout="1s"),
    Row("stall_mid_body_cl", [send(H200 + b"Content-Length: 100\r\n\r\n"), GATE,
                              send(b"a" * 40), STALL],
        kind="abort", framing="cl", cl=100, good=b"a" * 40, read_timeout="1s"),
    Row("stall_mid_body_chunked", [send(CHUNKED_HEAD + b"5\r\nhello\r\n"), STALL],
        kind="abort", framing="chunked", good=b"hello", read_timeout="1s"),
    # --- size ---------------------------------------------------------------------------
    Row("head_100k_field", [send(H200 + b"X-Leak: 1\r\nX-Big: " + b"a" * (100 * 1024) +
                                 b"\r\nContent-Length: 9\r\n\r\n" + BODY)]),
    Row("fields_5000", [send(fields_5000_head())], kind="observe", body=b"hello",
        check=check_5000),
]

MODES = ["close", "ka"]


def upstream_name(row, mode):
    return "f_%s__%s" % (row.id, mode)


# ---------------------------------------------------------------------------
# the fake upstream
# ---------------------------------------------------------------------------


class FaultUpstream:
    """A raw upstream on 127.0.0.1 that plays one row's script once."""

    def __init__(self, row):
        self.row = row
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.port = self.lsock.getsockname()[1]
        self.addr = "127.0.0.1:%d" % self.port
        self.cond = threading.Condition()
        self.accepted = 0
        self.requests = []          # (conn id, path)
        self.closed = set()         # conn ids that ended (weir closed, or we did)
        self.script_taken = False
        self.script_cid = None
        self.script_done = threading.Event()
        self.gate = threading.Event()
        self.errors = []
        self.socks = set()
        self.running = True
        self.listening = False
        if not row.refuse:
            self.listen()           # a refused row's socket is bound but not listening

    def listen(self):
        if self.listening:
            return
        self.listening = True
        self.lsock.listen(64)
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def stop(self):
        self.running = False
        with self.cond:
            socks = list(self.socks)
        shutdown_server(self.lsock, socks)

    def _accept_loop(self):
        while self.running:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.cond:
                self.accepted += 1
                cid = self.accepted
                self.socks.add(s)
            threading.Thread(target=self._serve, args=(s, cid), daemon=True).start()

    def _take_script(self, cid):
        with self.cond:
            if self.script_taken:
                return False
            self.script_taken = True
            self.script_cid = cid
            return True

    def _serve(self, s, cid):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.settimeout(20)
        rd = Reader(s)
        mine = False
        try:
            ended = False
            if self.row.at_accept and self._take_script(cid):
                mine = True
                ended = self._run(s, rd)
            while not ended:
                try:
                    head = rd.read_until(b"\r\n\r\n", limit=1 << 20)
                except Eof:
                    break
                parts = head.split(b"\r\n", 1)[0].split(b" ")
                path = parts[1].decode("latin-1") if len(parts) > 1 else ""
                with self.cond:
                    self.requests.append((cid, path))
                    self.cond.notify_all()
                if path.endswith("/fault") and not self.row.at_accept and self._take_script(cid):
                    mine = True
                    ended = self._run(s, rd)
                else:
                    body = b"ok:%d" % cid
                    s.sendall(H200 + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except (OSError, ValueError) as e:
            if not mine:
                self.errors.append("conn %d: %r" % (cid, e))
        finally:
            if mine:
                self.script_done.set()
            try:
                s.close()
            except OSError:
                pass
            with self.cond:
                self.socks.discard(s)
                self.closed.add(cid)
                self.cond.notify_all()

    def _drain(self, s):
        """Read until weir closes its side (or 10 s)."""
        s.settimeout(10)
        try:
            while s.recv(65536):
                pass
        except OSError:
            pass

    def _run(self, s, rd):
        """Play the script; True when the connection is finished."""
        try:
            for step in self.row.steps:
                op = step[0]
                if op == "send":
                    s.sendall(step[1])
                elif op == "pause":
                    time.sleep(step[1])
                elif op == "gate":
                    self.gate.wait(GATE_TIMEOUT)
                elif op == "rst":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    s.close()
                    return True
                elif op == "fin":
                    s.shutdown(socket.SHUT_WR)
                    self._drain(s)
                    return True
                elif op == "stall":
                    self._drain(s)
                    return True
        except OSError:
            return True             # weir closed on us mid-script (e.g. a huge head)
        finally:
            self.script_done.set()
        return False


# ---------------------------------------------------------------------------
# client side
# ---------------------------------------------------------------------------


class RecReader(Reader):
    """A Reader that keeps every byte received and fires on_head once the first
    head terminator has arrived."""

    def __init__(self, sock, on_head=None):
        super().__init__(sock)
        self.raw = bytearray()
        self.on_head = on_head

    def _fill(self, n=65536):
        before = len(self.buf)
        ok = super()._fill(n)
        if ok:
            self.raw += self.buf[before:]
            if self.on_head and b"\r\n\r\n" in self.raw:
                fn, self.on_head = self.on_head, None
                fn()
        return ok


def request_bytes(name, what, close):
    return (b"GET /%s/%s HTTP/1.1\r\nHost: faults.test\r\n%s\r\n"
            % (name.encode(), what.encode(), b"Connection: close\r\n" if close else b""))


def read_one(rd):
    """read_response, never raising: (Response or None, error text)."""
    try:
        r = read_response(rd)
        return r, None if r is not None else "connection closed without a response"
    except (Eof, ConnectionResetError) as e:
        return None, "eof before a complete head: %r" % (e,)
    except socket.timeout:
        return None, "timeout before a complete head"
    except ValueError as e:
        return None, "not HTTP: %s" % e


def decode_chunked(raw):
    """Lenient decoder of the chunked body weir sent: (data, last_chunk_seen)."""
    data = bytearray()
    i = 0
    while True:
        j = raw.find(b"\r\n", i)
        if j < 0:
            return bytes(data), False
        try:
            size = int(raw[i:j].split(b";")[0], 16)
        except ValueError:
            return bytes(data), False
        if size == 0:
            return bytes(data), True
        chunk = raw[j + 2:j + 2 + size]
        data += chunk
        if len(chunk) < size or raw[j + 2 + size:j + 4 + size] != b"\r\n":
            return bytes(data), False
        i = j + 4 + size


def log_bytes(w):
    try:
        with open(w.log_path, "rb") as f:
            return f.read()
    except OSError:
        return b""


SANITIZER = re.compile(rb"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")


class Checks:
    def __init__(self):
        self.fails = {}
        self.notes = {}

    def check(self, letter, cond, msg):
        if not cond:
            self.fails.setdefault(letter, []).append(msg)
        return cond

    def note(self, k, v):
        self.notes[k] = v


# ---------------------------------------------------------------------------
# the shared weir
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    ups = {}
    for row in ROWS:
        for mode in MODES:
            ups[upstream_name(row, mode)] = FaultUpstream(row)
    w = Weir(tmp_path_factory.mktemp("faults"))
    _weirs.append(w)
    cfg_ups = {}
    routes = []
    for name, fu in ups.items():
        cfg_ups[name] = {"balancer": "roundrobin", "servers": [fu.addr], "keepalive": 8,
                         "retries": 0, "max_fails": 1000, "connect_timeout": "2s",
                         "read_timeout": fu.row.read_timeout}
        routes.append({"path": "/%s/" % name, "upstream": name})
    w.start(w.config(upstreams=cfg_ups, routes=routes, workers=1))
    w.wait_workers(1)
    yield w, ups
    rc = w.stop()       # already stopped by test_zz_clean_after_matrix when it ran
    for fu in ups.values():
        fu.stop()
    path = os.environ.get("WEIR_FAULTS_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"rows": _report, "stop_rc": rc,
                       "sanitizer_in_log": bool(SANITIZER.search(log_bytes(w)))}, f, indent=1)


def _restart_if_hurt(w, workers0, ck):
    """After a row that killed the worker (or the master): stop weir, charge any
    sanitizer report printed while stopping to this row, and start a fresh weir
    with the same config, so one crash does not cascade into the rows after it
    (the master's respawn backoff would otherwise slow them down)."""
    if w.alive() and w.workers() == workers0:
        return
    ck.note("weir_restarted", True)
    off = len(log_bytes(w))
    rc = w.stop()
    tail = log_bytes(w)[off:]
    ck.check("e", not SANITIZER.search(tail), "sanitizer report while stopping weir:\n%s"
             % tail.decode("utf-8", "replace")[-6000:])
    ck.check("e", rc == 0, "weir exited %r when stopped after the fault" % rc)
    w.start()
    w.wait_workers(1)


def _followup(w, name, fu, s, rd, ck):
    """(e): the next ordinary request on this upstream gets 200 ok:<cid>.
    s/rd: a client connection to reuse (ka mode) or None for a fresh one."""
    fresh = s is None
    if fresh:
        s = socket.create_connection(("127.0.0.1", w.port), timeout=CLIENT_TIMEOUT)
        rd = RecReader(s)
    try:
        s.sendall(request_bytes(name, "ok", close=fresh))
        r, err = read_one(rd)
    except OSError as e:
        r, err = None, "send failed: %r" % e
    finally:
        if fresh:
            s.close()
    cid = None
    if r is not None and r.status == 200 and r.complete:
        m = re.fullmatch(rb"ok:(\d+)", r.body)
        cid = int(m.group(1)) if m else None
    ck.check("e", cid is not None,
             "follow-up request on %s client connection: expected 200 ok:<n>, got %r %s"
             % ("a fresh" if fresh else "the same", r, err or ""))
    return r, cid, rd


def run_row(w, fu, row, mode):
    name = upstream_name(row, mode)
    close = mode == "close"
    ck = Checks()
    workers0 = w.workers()
    log0 = len(log_bytes(w))

    s = socket.create_connection(("127.0.0.1", w.port), timeout=CLIENT_TIMEOUT)
    rd = RecReader(s, on_head=fu.gate.set)
    s.sendall(request_bytes(name, "fault", close))
    r, err = read_one(rd)
    if row.refuse:
        fu.listen()
    head_end = rd.raw.find(b"\r\n\r\n")

    # -- (a) and (b) --------------------------------------------------------------------
    client_open = False     # ka mode: the client connection may carry the follow-up
    if row.kind == "err":
        ok = ck.check("a", r is not None and r.status == row.status and r.complete,
                      "expected a complete %d from weir, got %r %s" % (row.status, r, err or ""))
        if r is not None:
            ck.check("b", not r.headers.has("x-leak"), "the X-Leak header reached the client")
            ck.check("b", len(r.body) < 4096, "error body is not a small page (%d bytes)"
                     % len(r.body))
        if ok:
            says_close = "close" in (r.headers.get("connection") or "").lower()
            if close or says_close:
                closed = rd.eof or is_closed(s, rd, 3)
                ck.check("a", closed, "weir did not close the client connection after a "
                         "response %s" % ("to Connection: close" if close else
                                          "that said Connection: close"))
                ck.check("b", not rd.buf, "stray bytes after the %d: %r" % (row.status,
                                                                           bytes(rd.buf)[:200]))
                if not close:
                    ck.note("ka_client_after_error", "closed (Connection: close)")
            else:
                client_open = True
                ck.note("ka_client_after_error", "kept open (no Connection: close)")
    elif row.kind == "abort":
        raw_body = bytes(rd.raw[head_end + 4:]) if head_end >= 0 else b""
        ck.check("a", r is not None and r.status == 200,
                 "expected the upstream's 200 head, then an abort; got %r %s" % (r, err or ""))
        if r is not None and r.status == 200:
            ck.check("a", not r.complete, "the cut-short response looks complete to the client")
            closed = rd.eof or is_closed(s, rd, 3)
            ck.check("a", closed, "weir did not close the client connection after the abort")
            ck.note("body_bytes_received", len(raw_body))
            if row.framing == "cl":
                ck.check("a", r.headers.get("content-length") == str(row.cl),
                         "Content-Length %r, expected %d" % (r.headers.get("content-length"),
                                                             row.cl))
                ck.check("a", len(raw_body) < row.cl, "got all %d body bytes" % len(raw_body))
                ck.check("b", row.good.startswith(raw_body),
                         "body is not a prefix of the bytes sent before the fault: %r"
                         % raw_body[:200])
            else:
                data, last = decode_chunked(raw_body)
                ck.check("a", r.chunked, "expected a chunked reply, headers %r" % (r.headers,))
                ck.check("a", not last and b"0\r\n\r\n" not in raw_body,
                         "the final chunk reached the client: %r" % raw_body[-100:])
                ck.check("b", row.good.startswith(data),
                         "decoded body is not a prefix of %r: %r" % (row.good, data[:200]))
    elif row.kind in ("ok", "exact"):
        ok = ck.check("a", r is not None and r.status == 200 and r.complete and r.body == row.body,
                      "expected 200 with body %r, got %r %s" % (row.body, r, err or ""))
        if r is not None:
            ck.note("interim_forwarded", [i.status for i in r.interim])
        if ok:
            if close:
                closed = rd.eof or is_closed(s, rd, 3)
                ck.check("a", closed, "weir did not close after a response to Connection: close")
                ck.check("b", not rd.buf, "stray bytes after the response: %r" % bytes(rd.buf)[:200])
            else:
                client_open = not (rd.eof or "close" in (r.headers.get("connection") or "").lower())
                ck.check("a", client_open, "a good 200 for a keepalive client closed the connection")
    else:   # observe
        row.check(r, ck) if r is not None else ck.check("a", False, "no response: %s" % err)
        if r is not None:
            ck.note("observed_status", r.status)
            client_open = (not close and r.complete and not rd.eof
                           and "close" not in (r.headers.get("connection") or "").lower())

    for m in row.markers:
        ck.check("b", m not in rd.raw, "marker %r reached the client: %r" % (m, bytes(rd.raw)[:300]))

    # -- (c) ------------------------------------------------------------------------
    if not row.refuse:
        fu.script_done.wait(10)
    fault_cid = fu.script_cid
    pooled_ok = row.kind == "ok" or (row.kind == "observe" and r is not None and r.status == 200)
    if fault_cid is not None and not pooled_ok:
        weir_closed = wait_for(lambda: fault_cid in fu.closed, 3.0)
        ck.check("c", weir_closed, "weir kept the faulty upstream connection open (pooled?)")
    with fu.cond:
        nfault = sum(1 for _, p in fu.requests if p.endswith("/fault"))
        accepted = fu.accepted
    if not row.at_accept and not row.refuse:
        ck.check("c", nfault == 1, "the fault request reached the upstream %d times" % nfault)
    ck.check("c", accepted <= 1, "%d upstream connections for one request (retried?)" % accepted)

    # -- (e): the follow-up --------------------------------------------------------
    if not client_open:
        s.close()
    _, cid2, _ = _followup(w, name, fu, s if client_open else None,
                              rd if client_open else None, ck)
    if client_open:
        for m in row.markers:
            ck.check("b", m not in rd.raw, "marker %r reached the client on the keepalive "
                     "connection: %r" % (m, bytes(rd.raw)[:300]))
        s.close()
    if cid2 is not None:
        if pooled_ok:
            ck.note("upstream_conn_reused", cid2 == fault_cid)
        else:
            ck.check("c", cid2 != fault_cid and cid2 > (fault_cid or 0),
                     "the follow-up reused the faulty upstream connection %s" % fault_cid)

    # -- (d) ------------------------------------------------------------------------
    pat = re.compile(rb"\b" + re.escape(name.encode()) + rb"\b|" + re.escape(fu.addr.encode()))
    if row.kind in ("ok", "observe") and pooled_ok:
        pass    # not a fault: no log line required (recorded below)
    else:
        ck.check("d", wait_for(lambda: pat.search(log_bytes(w)[log0:]), 3.0),
                 "no error log line naming upstream %s or %s" % (name, fu.addr))
    new_log = log_bytes(w)[log0:]
    ck.note("log", [ln.decode("utf-8", "replace") for ln in new_log.splitlines()
                    if pat.search(ln)][:5])

    # -- (e) ------------------------------------------------------------------------
    workers1 = w.workers()
    ck.check("e", workers1 == workers0, "worker pids changed: %r -> %r" % (workers0, workers1))
    ck.check("e", not SANITIZER.search(new_log), "sanitizer report in the log:\n%s"
             % new_log.decode("utf-8", "replace")[-6000:])
    ck.check("e", w.alive(), "the master exited")
    _restart_if_hurt(w, workers0, ck)

    _report["%s-%s" % (row.id, mode)] = {
        "status": None if r is None else r.status, "complete": None if r is None else r.complete,
        "fails": ck.fails, "notes": ck.notes}
    if ck.fails:
        pytest.fail("\n".join("(%s) %s" % (k, m) for k in sorted(ck.fails) for m in ck.fails[k]),
                    pytrace=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_fault(env, row, mode):
    w, ups = env
    run_row(w, ups[upstream_name(row, mode)], row, mode)


def test_zz_clean_after_matrix(env):
    """After the whole matrix: one worker still serving; weir stops cleanly (SIGTERM,
    exit 0) and there is no sanitizer report anywhere in the log, including the
    leak check at exit under ASan."""
    w, _ = env
    assert w.alive()
    assert len(w.workers()) == 1
    off = len(log_bytes(w))
    rc = w.stop()
    log = log_bytes(w)[off:]
    assert rc == 0, "weir exited %r after the matrix" % rc
    m = SANITIZER.search(log)
    assert not m, log[max(0, m.start() - 2000):m.start() + 6000].decode("utf-8", "replace")
