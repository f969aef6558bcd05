"""weir's sd_notify client (core/sdnotify.c), as systemd's Type=notify sees it.

This machine has no systemd as PID 1, so the unit itself cannot be started
here; these tests play systemd's part instead: a datagram socket named by
$NOTIFY_SOCKET, with SO_PASSCRED on, so every message comes with the pid of
its sender, which must be the master's (the unit says NotifyAccess=main).

Assumptions: `reload: generation N started` is the master's log line for a
reload that took; a config that does not parse is refused on reload."""

import os
import shutil
import signal
import socket
import struct
import time

import pytest

from conftest import WEIR_BIN, children_of, get, read_pid, wait_for


class Notify:
    """systemd's end of $NOTIFY_SOCKET: a path in tmp, or an abstract name."""

    def __init__(self, tmp_path, abstract=False):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if abstract:
            name = "weir-test-notify-%d-%d" % (os.getpid(), time.monotonic_ns())
            self.sock.bind("\0" + name)
            self.env = "@" + name
        else:
            path = str(tmp_path / "notify.sock")
            self.sock.bind(path)
            self.env = path

    def next(self, timeout=10.0):
        """(sender pid, {key: value}) of the next message; fails after timeout."""
        self.sock.settimeout(timeout)
        try:
            data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(12))
        except socket.timeout:
            pytest.fail("no sd_notify message within %.0fs" % timeout)
        pid = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid = struct.unpack("iII", payload[:12])[0]
        fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
        return pid, fields

    def none_within(self, seconds):
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(4096)
        except socket.timeout:
            return True
        pytest.fail("unexpected sd_notify message %r" % data)

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path, monkeypatch):
    made = []

    def make(abstract=False):
        n = Notify(tmp_path, abstract)
        monkeypatch.setenv("NOTIFY_SOCKET", n.env)
        made.append(n)
        return n
    yield make
    for n in made:
        n.close()


def _proxy_config(w, b, workers=2):
    return w.config(upstreams={"b": {"balancer": "roundrobin", "servers": [b.addr]}},
                    routes=[{"path": "/", "upstream": "b"}], workers=workers, port=w.port)


def _expect_ready(n, pid, workers, port):
    """The first message is READY=1 from the master, sent once it serves."""
    sender, f = n.next()
    assert sender == pid, (sender, f)
    assert f.get("READY") == "1" and f.get("MAINPID") == str(pid), f
    assert f.get("STATUS") == "generation 1 serving with %d workers" % workers, f
    # serving: every worker forked, the socket listening, right at READY=1
    assert len(children_of(pid)) == workers
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.close()


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_ready_once_serving(weir, backend, notify, abstract):
    n = notify(abstract)
    b = backend()
    w = weir()
    cfg = _proxy_config(w, b)
    w.start(cfg, wait=False)
    _expect_ready(n, w.pid, 2, w.port)
    assert get(w.port, "/").status == 200
    assert w.stop(signal.SIGQUIT) == 0
    sender, f = n.next()
    assert sender == w.pid and f.get("STOPPING") == "1", (sender, f)


def test_reload_reports_reloading_then_ready(weir, backend, notify):
    n = notify()
    b = backend()
    w = weir()
    w.start(_proxy_config(w, b), wait=False)
    _expect_ready(n, w.pid, 2, w.port)

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    w.send_signal(signal.SIGHUP)
    sender, f = n.next()
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sender == w.pid and f.get("RELOADING") == "1", (sender, f)
    assert before <= int(f["MONOTONIC_USEC"]) <= after, (before, f, after)
    sender, f = n.next()
    assert sender == w.pid and f.get("READY") == "1", (sender, f)
    assert f.get("STATUS") == "generation 2 serving with 2 workers", f
    # READY=1 comes after the new generation started, not before
    assert "reload: generation 2 started" in w.log()

    # a config that fails: RELOADING=1, then READY=1 again, and the old one serves
    w.write("listeners: [\n")
    w.send_signal(signal.SIGHUP)
    sender, f = n.next()
    assert sender == w.pid and f.get("RELOADING") == "1", (sender, f)
    sender, f = n.next()
    assert sender == w.pid and f.get("READY") == "1", (sender, f)
    assert f.get("STATUS") == "reload failed (see the log); generation 2 serving with 2 workers", f
    assert "reload failed" in w.log()
    assert get(w.port, "/").status == 200

    w.send_signal(signal.SIGTERM)
    sender, f = n.next()
    assert sender == w.pid and f.get("STOPPING") == "1", (sender, f)
    assert w.wait_exit(10) == 0, w.log()


@pytest.mark.parametrize("value", ["/nonexistent/dir/notify.sock", "relative.sock", "vsock:2:99"])
def test_broken_notify_socket_does_not_stop_weir(weir, backend, monkeypatch, value):
    """A socket that is not there, or a name weir does not support, is logged
    as a warning; weir serves, reloads and stops as without one."""
    monkeypatch.setenv("NOTIFY_SOCKET", value)
    b = backend()
    w = weir()
    w.start(_proxy_config(w, b, workers=1))
    assert get(w.port, "/").status == 200
    assert wait_for(lambda: "systemd is not told" in w.log(), 5), w.log()
    assert "[warn]" in w.log() and value in w.log()
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: generation 2 started" in w.log(), 10), w.log()
    assert get(w.port, "/").status == 200
    assert w.stop(signal.SIGQUIT) == 0, w.log()


def test_no_notify_socket_no_warning(weir, backend, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    b = backend()
    w = weir()
    w.start(_proxy_config(w, b, workers=1))
    assert get(w.port, "/").status == 200
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload: generation 2 started" in w.log(), 10), w.log()
    assert w.stop(signal.SIGQUIT) == 0
    assert "sd_notify" not in w.log() and "NOTIFY_SOCKET" not in w.log()


def test_binary_upgrade_hands_main_pid_over(weir, backend, notify, tmp_path):
    """USR2 then QUIT of the old master, as under systemd: the new master says
    nothing while it is not the main process; the old one, as it quits, names
    the new one MAINPID instead of STOPPING=1, so the service goes on."""
    n = notify()
    binary = str(tmp_path / "weir-bin")
    shutil.copyfile(WEIR_BIN, binary)
    os.chmod(binary, 0o755)
    b = backend()
    w = weir()
    w.start(_proxy_config(w, b, workers=1), binary=binary, wait=False)
    _expect_ready(n, w.pid, 1, w.port)
    w.send_signal(signal.SIGUSR2)
    assert wait_for(lambda: read_pid(w.pid_file) not in (0, w.pid), 10), w.log()
    new_master = read_pid(w.pid_file)
    assert wait_for(lambda: len(children_of(new_master)) == 1, 10), w.log()
    n.none_within(0.5)
    w.send_signal(signal.SIGQUIT)
    sender, f = n.next()
    assert sender == w.pid, (sender, f)
    assert f.get("MAINPID") == str(new_master) and "STOPPING" not in f, f
    assert w.wait_exit(10) == 0, w.log()
    assert get(w.port, "/").status == 200
    # the new master is the service's main process now: its own messages
    os.kill(new_master, signal.SIGHUP)
    sender, f = n.next()
    assert sender == new_master and f.get("RELOADING") == "1", (sender, f)
    sender, f = n.next()
    assert sender == new_master and f.get("READY") == "1", (sender, f)
    os.kill(new_master, signal.SIGQUIT)
    sender, f = n.next()
    assert sender == new_master and f.get("STOPPING") == "1", (sender, f)
    assert wait_for(lambda: not os.path.exists(w.pid_file), 10), w.log()
