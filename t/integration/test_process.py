"""Processes and signals (SPEC §3, §8, §10): master + N workers, crashed worker
restarted, QUIT graceful stop, TERM fast stop, `weir -s`, slow clients cut at
client_header_timeout, and a clear message when io_uring is unavailable.

Assumptions: workers are the master's direct child processes (no other helper
process runs when only router and lb_roundrobin are loaded); the master exits
with status 0 after QUIT or TERM."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (MODULES_DIR, NO_URING, WEIR_BIN, Reader, connect, get, gone,
                      read_response, simple_proxy, wait_for)




def test_two_workers(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, workers=2)
    ws = w.wait_workers(2)
    assert len(set(ws)) == 2 and w.pid not in ws
    for _ in range(20):
        assert get(w.port, "/id").status == 200
    # pid file holds the master's pid
    assert wait_for(lambda: os.path.exists(w.pid_file), 5)
    assert open(w.pid_file).read().strip() == str(w.pid)


def test_killed_worker_is_restarted(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, workers=2)
    ws = w.wait_workers(2)
    victim = ws[0]
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (lambda k: k if len(k) == 2 and victim not in k else None)(w.workers()),
                   10)
    assert new, "master did not replace killed worker %d: %r\n%s" % (victim, w.workers(), w.log())
    assert w.alive()
    for i in range(30):
        r = get(w.port, "/echo?i=%d" % i)
        assert r.status == 200, (i, r)


def test_sigquit_graceful_finishes_inflight(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    w.wait_workers(1)
    res = {}

    def client():
        res["r"] = get(w.port, "/delay/1000", timeout=20)
    t = threading.Thread(target=client)
    t.start()
    assert b.wait_requests(1, 10), "request did not reach the backend"
    w.send_signal(signal.SIGQUIT)
    t.join(20)
    r = res.get("r")
    assert r is not None and r.status == 200 and r.complete, r
    assert r.json()["path"] == "/delay/1000"
    rc = w.wait_exit(15)
    assert rc == 0, "after SIGQUIT the master exited with %r\n%s" % (rc, w.log())
    assert not w.workers()
    s = socket.socket()
    assert s.connect_ex(("127.0.0.1", w.port)) != 0, "still listening after graceful stop"
    s.close()


def test_sigquit_closes_idle_keepalive(weir, backend):
    b = backend()
    w = simple_proxy(weir, b)
    s = connect(w.port)
    rd = Reader(s)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: k\r\n\r\n")
    assert read_response(rd).status == 200
    w.send_signal(signal.SIGQUIT)
    # the idle keepalive connection is closed (politely) and the master exits
    rc = w.wait_exit(15)
    assert rc == 0, w.log()
    s.settimeout(5)
    try:
        assert s.recv(100) == b""
    except ConnectionResetError:
        pass
    s.close()


def test_sigterm_fast_stop(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, workers=2)
    ws = w.wait_workers(2)
    res = {}

    def client():
        try:
            res["r"] = get(w.port, "/delay/30000", timeout=40)
        except OSError as e:
            res["e"] = e
    t = threading.Thread(target=client, daemon=True)
    t.start()
    assert b.wait_requests(1, 10)
    t0 = time.monotonic()
    w.send_signal(signal.SIGTERM)
    rc = w.wait_exit(15)
    # fast stop does not wait for the 30 s request
    assert rc == 0, "SIGTERM: exit status %r after %.1fs\n%s" % (rc, time.monotonic() - t0, w.log())
    assert time.monotonic() - t0 < 15
    for pid in ws:
        assert wait_for(lambda: gone(pid), 5), "worker %d outlived the master" % pid
    t.join(10)


@pytest.mark.parametrize("cmd", ["stop", "quit"])
def test_dash_s_signals_master(weir, backend, cmd):
    b = backend()
    w = simple_proxy(weir, b)
    assert wait_for(lambda: os.path.exists(w.pid_file), 5)
    p = subprocess.run([WEIR_BIN, "-s", cmd, "-c", w.conf_path, "-M", MODULES_DIR],
                       cwd=w.dir, capture_output=True, timeout=20)
    assert p.returncode == 0, p
    rc = w.wait_exit(15)
    assert rc == 0, "weir -s %s: master exit %r\n%s" % (cmd, rc, w.log())


def test_relative_pid_file_next_to_config(weir, backend, tmp_path):
    """Relative paths are relative to the config file's directory, not the cwd."""
    b = backend()
    w = weir("conf")
    cfg = w.config(upstreams={"u": {"servers": [b.addr]}},
                   routes=[{"path": "/", "upstream": "u"}])
    cfg["pid_file"] = "rel.pid"
    w.write(cfg)
    other = tmp_path / "elsewhere"
    other.mkdir()
    w.logf = open(w.log_path, "ab")
    w.proc = subprocess.Popen([WEIR_BIN, "-c", w.conf_path, "-M", MODULES_DIR], cwd=str(other),
                              stdout=w.logf, stderr=w.logf, start_new_session=True)
    w.pid = w.proc.pid
    w.wait_ready()
    assert wait_for(lambda: os.path.exists(os.path.join(w.dir, "rel.pid")), 5), os.listdir(w.dir)
    assert not os.path.exists(other / "rel.pid")


def test_client_header_timeout_half_header(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, limits={"client_header_timeout": "1s"})
    s = connect(w.port, timeout=10)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: slow\r\nX-Part")
    t0 = time.monotonic()
    rd = Reader(s)
    # SPEC: "408 and close".  weir may also just close (as nginx does): accept a
    # 408 followed by close, or a close with no response.
    try:
        r = read_response(rd)
    except (ConnectionResetError, socket.timeout) as e:
        r = e
    elapsed = time.monotonic() - t0
    assert not isinstance(r, socket.timeout), "connection still open after 10 s"
    if r is not None and not isinstance(r, Exception):
        assert r.status == 408, r
        assert rd.eof or s.recv(1) == b""
    assert elapsed < 8
    s.close()
    assert not b.requests


def test_slowloris_trickle_cut(weir, backend):
    """Bytes keep arriving, one every 200 ms, but the header never completes: the
    1 s client_header_timeout covers the whole header, so weir cuts it anyway."""
    b = backend()
    w = simple_proxy(weir, b, limits={"client_header_timeout": "1s"})
    s = connect(w.port, timeout=10)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: slow\r\n")
    closed = False
    t0 = time.monotonic()
    while time.monotonic() - t0 < 8:
        try:
            s.sendall(b"X")
            s.settimeout(0.2)
            d = s.recv(4096)
            if d == b"" or d.startswith(b"HTTP/1.1 408"):
                closed = True
                break
        except socket.timeout:
            continue
        except (BrokenPipeError, ConnectionResetError):
            closed = True
            break
    s.close()
    assert closed, "a trickling client kept its connection for 8 s"
    assert not b.requests


def test_idle_keepalive_timeout(weir, backend):
    b = backend()
    w = simple_proxy(weir, b, limits={"keepalive_timeout": "1s"})
    s = connect(w.port, timeout=10)
    rd = Reader(s)
    s.sendall(b"GET /echo HTTP/1.1\r\nHost: k\r\n\r\n")
    assert read_response(rd).status == 200
    t0 = time.monotonic()
    try:
        d = s.recv(100)
    except ConnectionResetError:
        d = b""
    except socket.timeout:
        d = None
    assert d == b"", "idle keepalive connection not closed (got %r)" % d
    assert time.monotonic() - t0 < 8
    s.close()


def test_io_uring_blocked_by_seccomp(tmp_path, backend):
    """Run weir with io_uring_setup failing EPERM (as under a container's seccomp
    profile): it exits 1 with a message that names io_uring and says how to allow
    it (the kernel.io_uring_disabled sysctl, or the seccomp profile)."""
    assert os.path.exists(NO_URING), "no_uring helper not built: %s" % NO_URING
    from conftest import Weir
    b = backend()
    w = Weir(tmp_path)
    cfg = w.config(upstreams={"u": {"servers": [b.addr]}}, routes=[{"path": "/", "upstream": "u"}])
    w.write(cfg)
    p = subprocess.Popen([NO_URING, WEIR_BIN, "-c", w.conf_path, "-M", MODULES_DIR], cwd=w.dir,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        outb, _ = p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        outb, _ = p.communicate()
        pytest.fail("weir kept running without io_uring:\n" + outb.decode("utf-8", "replace"))
    out = outb.decode("utf-8", "replace")
    assert p.returncode == 1, "exit %d:\n%s" % (p.returncode, out)
    assert "io_uring" in out, out
    low = out.lower()
    assert "io_uring_disabled" in low or "seccomp" in low, out
    # nothing is left listening
    s = socket.socket()
    assert s.connect_ex(("127.0.0.1", w.port)) != 0
    s.close()
