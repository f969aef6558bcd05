"""Reload, graceful stop and binary upgrade under load (SPEC §8, issue 4).

Load comes from loadgen.Load: several clients in threads, each request read
in full and checked. A client retries only a request whose reused idle
connection was closed before any byte of the response came back (what
browsers and curl do); everything else counts as a failed request, and the
tests want none.

Assumptions: the master's direct children are its workers, except the new
master a binary upgrade starts; `generation N started` and `all workers have
exited` are the master's log lines for a reload starting and ending."""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (MODULES_DIR, WEIR_BIN, children_of, connect, get, gone, read_response,
                      Reader, wait_for)
from conftest import read_pid as _read_pid
from loadgen import Load

TEST_MODULES = os.environ.get("WEIR_TEST_MODULES") or os.path.join(
    os.path.dirname(MODULES_DIR), "t", "modules")




def _sock_inodes(pid):
    """Socket inodes the process holds open."""
    out = set()
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            t = os.readlink(os.path.join(d, fd))
        except OSError:
            continue
        if t.startswith("socket:["):
            out.add(t[8:-1])
    return out


def _listen_inode(port):
    """The inode of the TCP socket listening on 127.0.0.1:port, from /proc/net/tcp."""
    want = "0100007F:%04X" % port
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            if p[1] == want and p[3] == "0A":
                return p[9]
    return None


def _config(w, backend, gen, workers=2, limits=None, modules=None, upstreams=None, **extra):
    """Upstream "b" = backend (or `upstreams`), one route, X-Gen: gen."""
    modules = modules or ["router", "lb_roundrobin", "headers"]
    cfg = w.config(upstreams=upstreams or {"b": {"servers": [backend.addr]}},
                   routes=[{"name": "all", "path": "/", "upstream": "b"}],
                   workers=workers, limits=limits, port=w.port, modules=modules, **extra)
    if "headers" in modules:
        cfg["response_headers"] = {"set": {"X-Gen": str(gen)}}
    return cfg


def _reload(w, how="signal"):
    if how == "signal":
        w.send_signal(signal.SIGHUP)
    else:
        r = subprocess.run([WEIR_BIN, "-s", "reload", "-c", w.conf_path], capture_output=True,
                           timeout=10)
        assert r.returncode == 0, r.stderr


def _generation_started(w, n):
    return "reload: generation %d started" % n in w.log()


def _retired(w, n):
    return "generation %d: all workers have exited" % n in w.log()


def _start(weir, backend, **kw):
    w = weir()
    b = backend()
    w.start(_config(w, b, 1, **kw))
    w.wait_workers(kw.get("workers", 2))
    return w, b


# ---------------------------------------------------------------- reloads


@pytest.mark.parametrize("keepalive", [True, False], ids=["keepalive", "conn-per-request"])
def test_five_reloads_under_load(weir, backend, keepalive):
    w, b = _start(weir, backend)
    with Load(w.port, clients=6, keepalive=keepalive, record_header="X-Gen") as load:
        assert load.wait_requests(50), load.summary()
        for gen in range(2, 7):
            w.write(_config(w, b, gen))
            _reload(w, "signal" if gen % 2 else "dash-s")
            assert wait_for(lambda: _generation_started(w, gen), 10), w.log()
            assert load.wait_value_everywhere(str(gen), 15), (gen, load.last_values(),
                                                               load.summary())
            assert load.wait_requests(30), load.summary()
        # the last generation's old workers are all gone, the load goes on
        assert wait_for(lambda: all(_retired(w, n) for n in range(1, 6)), 15), w.log()
        assert load.wait_requests(50), load.summary()
    assert load.failures == [], load.summary() + w.log()
    assert load.ok > 300
    assert set(load.last_values()) == {"6"}
    assert len(w.workers()) == 2
    assert get(w.port, "/").headers.get("X-Gen") == "6"
    assert w.alive()


def test_busy_clients_need_no_retry(weir, backend):
    """Clients that always have their next request on the way (like wrk) are
    never closed under: a response that promised keepalive is followed by one
    more answer with Connection: close, and an idle connection gets a grace
    before it is closed. So even clients that never retry lose nothing."""
    w, b = _start(weir, backend)
    with Load(w.port, clients=6, record_header="X-Gen", retry=False) as load:
        assert load.wait_requests(50), load.summary()
        for gen in range(2, 7):
            w.write(_config(w, b, gen))
            w.send_signal(signal.SIGHUP)
            assert load.wait_value_everywhere(str(gen), 15), load.summary()
        assert load.wait_requests(50), load.summary()
    assert load.failures == [], load.summary() + w.log()
    assert load.retries == 0


def test_idle_keepalive_closed_after_grace(weir, backend):
    """A connection idle when draining starts is closed after the grace
    (1 s), without an answer; one that sends within it gets Connection: close."""
    w, b = _start(weir, backend)
    idle, busy = connect(w.port), connect(w.port)
    for s in (idle, busy):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(Reader(s)).status == 200
    w.write(_config(w, b, 2))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _generation_started(w, 2), 5), w.log()
    busy.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    rd = Reader(busy)
    r = read_response(rd)
    assert r.status == 200 and r.headers.get("X-Gen") == "1"
    assert (r.headers.get("Connection") or "").lower() == "close"
    busy.settimeout(5)
    assert busy.recv(1) == b""
    t0 = time.monotonic()
    idle.settimeout(10)
    assert idle.recv(1) == b""
    assert time.monotonic() - t0 < 5
    assert wait_for(lambda: _retired(w, 1), 5), w.log()


def test_listening_socket_survives_reloads(weir, backend):
    """Never closed and re-bound: the same socket (inode) before and after."""
    w, b = _start(weir, backend)
    before = _listen_inode(w.port)
    assert before and before in _sock_inodes(w.pid)
    for gen in (2, 3):
        w.write(_config(w, b, gen))
        w.send_signal(signal.SIGHUP)
        assert wait_for(lambda: _generation_started(w, gen), 10), w.log()
    assert wait_for(lambda: _retired(w, 2), 10), w.log()
    assert _listen_inode(w.port) == before
    assert get(w.port, "/").headers.get("X-Gen") == "3"


def _mistake(cfg, kind):
    """The config text with one mistake of the given kind, and a word the
    error must name."""
    from conftest import to_yaml
    if kind == "yaml":
        return to_yaml(cfg) + "\nresponse_headers: {set: [\n", "weir.yaml:"
    if kind == "module":
        cfg["modules"] = cfg["modules"] + ["nosuchmodule"]
        return to_yaml(cfg), "nosuchmodule"
    if kind == "value":
        cfg["limits"] = {"keepalive_timeout": "soon"}
        return to_yaml(cfg), "keepalive_timeout"
    if kind == "reference":
        cfg["routes"] = [{"path": "/", "upstream": "nosuchupstream"}]
        return to_yaml(cfg), "nosuchupstream"
    if kind == "regex":
        cfg["modules"] = cfg["modules"] + ["rewrite"]
        cfg["routes"][0]["rewrite"] = "^/(unclosed /x"
        return to_yaml(cfg), "rewrite"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["yaml", "module", "value", "reference", "regex"])
def test_broken_reload_changes_nothing(weir, backend, kind):
    w, b = _start(weir, backend)
    workers = sorted(w.workers())
    with Load(w.port, clients=4, record_header="X-Gen") as load:
        assert load.wait_requests(30), load.summary()
        text, word = _mistake(_config(w, b, 2), kind)
        w.write(text)
        w.send_signal(signal.SIGHUP)
        assert wait_for(lambda: "reload failed" in w.log(), 10), w.log()
        assert load.wait_requests(50), load.summary()
    assert load.failures == [], load.summary() + w.log()
    assert set(load.seen) == {"1"}
    errors = w.log().split("reload: reading")[-1]
    assert word in errors, errors
    # the error names file:line:col
    assert re.search(r"weir\.yaml:\d+:\d+: ", errors), errors
    assert sorted(w.workers()) == workers
    assert w.alive()
    # a fixed config reloads fine afterwards
    w.write(_config(w, b, 3))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: get(w.port, "/").headers.get("X-Gen") == "3", 10), w.log()


def test_reload_with_taken_address_changes_nothing(weir, backend):
    """A listen address that cannot be bound fails the reload, not the master."""
    w, b = _start(weir, backend)
    workers = sorted(w.workers())
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    cfg = _config(w, b, 2)
    cfg["listeners"].append({"name": "second", "address": "127.0.0.1:%d" %
                             taken.getsockname()[1]})
    w.write(cfg)
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: "reload failed" in w.log(), 10), w.log()
    assert "cannot listen on 127.0.0.1:%d" % taken.getsockname()[1] in w.log(), w.log()
    taken.close()
    assert sorted(w.workers()) == workers
    assert get(w.port, "/").headers.get("X-Gen") == "1"


def test_listeners_added_and_removed(weir, backend):
    """A new address is opened at reload; a removed one is closed once the old
    workers have left it."""
    from conftest import free_port
    w, b = _start(weir, backend)
    port2 = free_port()
    cfg = _config(w, b, 2)
    cfg["listeners"].append({"name": "second", "address": "127.0.0.1:%d" % port2})
    w.write(cfg)
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _generation_started(w, 2), 10), w.log()
    assert get(port2, "/").headers.get("X-Gen") == "2"
    assert get(w.port, "/").headers.get("X-Gen") == "2"
    # drop the first listener
    cfg = _config(w, b, 3)
    cfg["listeners"] = [{"name": "second", "address": "127.0.0.1:%d" % port2}]
    w.write(cfg)
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _retired(w, 2), 10), w.log()

    def refused():
        try:
            socket.create_connection(("127.0.0.1", w.port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
    assert wait_for(refused, 5), "port %d still accepts after its listener was removed" % w.port
    assert get(port2, "/").headers.get("X-Gen") == "3"


def test_slow_request_completes_across_reload(weir, backend):
    w, b = _start(weir, backend)
    result = {}

    def slow():
        s = connect(w.port)
        s.sendall(b"GET /delay/3000 HTTP/1.1\r\nHost: x\r\n\r\n")
        result["r"] = read_response(Reader(s))
        result["closed"] = s.recv(1) == b""
        s.close()
    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: any(r.path == "/delay/3000" for r in b.requests), 5)
    old = sorted(w.workers())
    w.write(_config(w, b, 2))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _generation_started(w, 2), 5), w.log()
    # new requests already go to the new generation while the slow one runs
    assert get(w.port, "/").headers.get("X-Gen") == "2"
    assert not _retired(w, 1)
    t.join(10)
    r = result["r"]
    assert r.status == 200 and r.headers.get("X-Gen") == "1", r
    assert b"/delay/3000" in r.body
    # the old worker said goodbye: Connection: close, then closed
    assert (r.headers.get("Connection") or "").lower() == "close"
    assert result["closed"]
    assert wait_for(lambda: _retired(w, 1), 5), w.log()
    assert all(gone(p) for p in old)


def test_no_worker_left_after_shutdown_timeout(weir, backend):
    """A request that outlives shutdown_timeout is cut; the old worker goes."""
    w, b = _start(weir, backend, limits={"shutdown_timeout": "1s"})
    s = connect(w.port)
    s.sendall(b"GET /delay/20000 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: any(r.path == "/delay/20000" for r in b.requests), 5)
    old = sorted(w.workers())
    w.write(_config(w, b, 2, limits={"shutdown_timeout": "1s"}))
    t0 = time.monotonic()
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: all(gone(p) for p in old), 6), (old, w.workers(), w.log())
    elapsed = time.monotonic() - t0
    assert elapsed >= 0.9, elapsed          # not before shutdown_timeout
    assert "shutdown_timeout reached with 1 connections open" in w.log()
    s.settimeout(5)
    assert s.recv(100) == b""               # cut without an answer
    s.close()
    assert len(w.workers()) == 2
    assert get(w.port, "/").headers.get("X-Gen") == "2"


def test_stuck_worker_is_killed_after_deadline(weir, backend):
    """A worker that cannot act on QUIT (stopped) is killed by the master
    shutdown_timeout + 2 s after the reload."""
    w, b = _start(weir, backend, workers=1, limits={"shutdown_timeout": "1s"})
    (old,) = w.workers()
    os.kill(old, signal.SIGSTOP)
    w.write(_config(w, b, 2, workers=1, limits={"shutdown_timeout": "1s"}))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: gone(old), 8), w.log()
    assert "generation 1: 1 workers still running past their deadline; killing them" in w.log()
    assert wait_for(lambda: _retired(w, 1), 5), w.log()
    assert get(w.port, "/").headers.get("X-Gen") == "2"


def test_graceful_stop_under_load_fails_nothing_in_flight(weir, backend):
    """QUIT: requests in flight complete; the master exits 0 with no worker left."""
    w, b = _start(weir, backend)
    workers = w.workers()
    result = {}

    def slow():
        s = connect(w.port)
        s.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        result["r"] = read_response(Reader(s))
    t = threading.Thread(target=slow)
    t.start()
    assert wait_for(lambda: any(r.path == "/delay/1500" for r in b.requests), 5)
    r = subprocess.run([WEIR_BIN, "-s", "quit", "-c", w.conf_path], capture_output=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    t.join(10)
    assert result["r"].status == 200
    assert w.wait_exit(10) == 0, w.log()
    assert all(gone(p) for p in workers)
    assert not os.path.exists(w.pid_file)


# ------------------------------------------------------ state and modules


def _stamp_modules(tmp_path, version):
    """A modules dir: the standard modules plus stamp.so = stamp_<version>.so,
    installed the way a package manager does (write aside, rename over)."""
    d = tmp_path / "mods"
    d.mkdir(exist_ok=True)
    for name in ("router", "lb_roundrobin", "headers", "healthcheck"):
        dst = d / (name + ".so")
        if not dst.exists():
            os.symlink(os.path.join(MODULES_DIR, name + ".so"), dst)
    tmp = d / "stamp.so.new"
    shutil.copyfile(os.path.join(TEST_MODULES, "stamp_%s.so" % version), tmp)
    os.rename(tmp, d / "stamp.so")
    return str(d)


STAMPED = ["router", "lb_roundrobin", "headers", "stamp"]


def _start_stamped(weir, backend, tmp_path):
    """weir with module stamp (build v1) from a modules dir of its own."""
    mods = _stamp_modules(tmp_path, "v1")
    w = weir()
    b = backend()
    w.start(_config(w, b, 1, modules=STAMPED), modules_dir=mods)
    w.wait_workers(2)
    return w, b


def test_module_replaced_on_disk_takes_effect(weir, backend, tmp_path):
    w, b = _start_stamped(weir, backend, tmp_path)
    r = get(w.port, "/")
    assert r.headers.get("X-Stamp") == "v1"
    with Load(w.port, clients=4, record_header="X-Stamp") as load:
        assert load.wait_requests(30), load.summary()
        _stamp_modules(tmp_path, "v2")
        w.write(_config(w, b, 2, modules=STAMPED))
        w.send_signal(signal.SIGHUP)
        assert load.wait_value_everywhere("v2", 15), (load.last_values(), w.log())
        assert load.wait_requests(30), load.summary()
    assert load.failures == [], load.summary() + w.log()
    assert get(w.port, "/").headers.get("X-Stamp") == "v2"


def test_shared_zone_carries_counter_across_reload(weir, backend, tmp_path):
    """stamp counts responses in a shared zone: a reload goes on counting."""
    w, b = _start_stamped(weir, backend, tmp_path)
    hits = [int(get(w.port, "/").headers.get("X-Hits")) for _ in range(5)]
    assert hits == [1, 2, 3, 4, 5]
    w.write(_config(w, b, 2, modules=STAMPED))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: get(w.port, "/").headers.get("X-Gen") == "2", 10), w.log()
    n = int(get(w.port, "/").headers.get("X-Hits"))
    assert n > 6, n       # 6 was the request that saw X-Gen 2 (or an earlier one)


CHECKED = ["router", "lb_roundrobin", "headers", "healthcheck"]


def test_health_verdict_carried_across_reload(weir, backend):
    """A server the checks hold down stays down in the new generation, from
    its first request (a fresh state would send it traffic until `fall`
    checks failed again)."""
    good = backend("good")
    bad = backend("bad")
    bad.on("/health", lambda ctx, req: (ctx.send(
        b"HTTP/1.1 500 No\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), False)[1])
    w = weir()
    ups = {"b": {"servers": [good.addr, bad.addr],
                 "health_check": {"path": "/health", "interval": "300ms", "timeout": "200ms",
                                  "fall": 3, "rise": 2}}}

    def cfg(gen):
        return _config(w, None, gen, upstreams=ups, modules=CHECKED)
    w.start(cfg(1))
    assert wait_for(lambda: "server %s" % bad.addr in w.log() and "down" in w.log(), 10), \
        w.log()
    w.write(cfg(2))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _generation_started(w, 2), 5), w.log()
    # every answer right after the reload, from the first one, comes from good
    ids = []
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        r = get(w.port, "/id")
        if r.headers.get("X-Gen") == "2":
            ids.append(r.body)
    assert ids and set(ids) == {b"good"}, ids


def test_crashing_worker_backs_off_and_logs_why(weir, backend, tmp_path):
    mods = _stamp_modules(tmp_path, "v1")
    fail = tmp_path / "fail-init"
    w = weir()
    b = backend()
    modules = ["router", "lb_roundrobin", "stamp"]
    cfg = _config(w, b, 1, workers=1, modules=modules, stamp_fail_file=str(fail))
    w.start(cfg, modules_dir=mods)
    (first,) = w.wait_workers(1)
    fail.write_text("")
    os.kill(first, signal.SIGKILL)   # (SEGV would be caught by ASan in that build)
    assert wait_for(lambda: "restarting in 2s" in w.log(), 10), w.log()
    log = w.log()
    assert "worker 0 (pid %d) killed by signal 9 (Killed); restarting\n" % first in log, log
    assert "exited with status 1; restarting in 1s" in log, log
    fail.unlink()
    assert wait_for(lambda: len(w.workers()) == 1 and get(w.port, "/").status == 200, 10), \
        w.log()


# ---------------------------------------------------------- binary upgrade


def _own_binary(tmp_path):
    """A copy of weir in tmp_path, so the test can replace it like an upgrade."""
    path = str(tmp_path / "weir-bin")
    shutil.copyfile(WEIR_BIN, path)
    os.chmod(path, 0o755)
    return path


def test_binary_upgrade_under_load(weir, backend, tmp_path):
    binary = _own_binary(tmp_path)
    w = weir()
    b = backend()
    w.start(_config(w, b, 1), binary=binary)
    old_workers = w.wait_workers(2)
    oldbin = w.pid_file + ".oldbin"
    with Load(w.port, clients=6, record_header="X-Gen") as load:
        assert load.wait_requests(50), load.summary()
        # the "new binary": installed by rename, as a package manager does
        shutil.copyfile(WEIR_BIN, binary + ".new")
        os.chmod(binary + ".new", 0o755)
        os.rename(binary + ".new", binary)
        w.write(_config(w, b, 2))
        w.send_signal(signal.SIGUSR2)
        assert wait_for(lambda: _read_pid(w.pid_file) not in (0, w.pid), 10), w.log()
        new_master = _read_pid(w.pid_file)
        assert _read_pid(oldbin) == w.pid
        assert wait_for(lambda: len(children_of(new_master)) == 2, 10), w.log()
        # both generations serve now; the old master keeps its workers
        assert sorted(set(w.workers()) - {new_master}) == sorted(old_workers)
        assert load.wait_requests(50), load.summary()
        w.send_signal(signal.SIGQUIT)
        assert w.wait_exit(10) == 0, w.log()
        assert load.wait_value_everywhere("2", 10), load.last_values()
        assert load.wait_requests(50), load.summary()
    assert load.failures == [], load.summary() + w.log()
    assert all(gone(p) for p in old_workers)
    assert not os.path.exists(oldbin)
    assert _read_pid(w.pid_file) == new_master
    # the new master is a full master: it reloads, and stops on QUIT
    w.write(_config(w, b, 3))
    os.kill(new_master, signal.SIGHUP)
    assert wait_for(lambda: get(w.port, "/").headers.get("X-Gen") == "3", 10), w.log()
    os.kill(new_master, signal.SIGQUIT)
    assert wait_for(lambda: gone(new_master), 10), w.log()
    assert not os.path.exists(w.pid_file)


@pytest.mark.parametrize("how", ["binary", "config"])
def test_failed_binary_upgrade_leaves_old_serving(weir, backend, tmp_path, how):
    binary = _own_binary(tmp_path)
    w = weir()
    b = backend()
    w.start(_config(w, b, 1), binary=binary)
    workers = sorted(w.wait_workers(2))
    with Load(w.port, clients=4, record_header="X-Gen") as load:
        assert load.wait_requests(30), load.summary()
        if how == "binary":
            with open(binary + ".new", "w") as f:
                f.write("#!/bin/sh\necho 'broken build' >&2\nexit 1\n")
            os.chmod(binary + ".new", 0o755)
            os.rename(binary + ".new", binary)
        else:
            w.write("listeners: [\n")
        w.send_signal(signal.SIGUSR2)
        assert wait_for(lambda: "binary upgrade: the new master" in w.log(), 10), w.log()
        assert wait_for(lambda: _read_pid(w.pid_file) == w.pid, 5), w.log()
        assert load.wait_requests(50), load.summary()
    assert load.failures == [], load.summary() + w.log()
    assert set(load.seen) == {"1"}
    assert "exited with status 1; this master (pid %d) goes on serving" % w.pid in w.log()
    assert not os.path.exists(w.pid_file + ".oldbin")
    assert sorted(children_of(w.pid)) == workers
    # and it can still reload
    w.write(_config(w, b, 3))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: get(w.port, "/").headers.get("X-Gen") == "3", 10), w.log()


def test_draining_checker_stops_probing(weir, backend):
    """While the old primary worker drains (a slow request keeps it), only
    the new generation's checker probes: about window/interval checks, not
    twice that."""
    b = backend()
    w = weir()
    ups = {"b": {"servers": [b.addr],
                 "health_check": {"path": "/health", "interval": "200ms", "timeout": "150ms"}}}

    def cfg(gen):
        return _config(w, None, gen, workers=1, upstreams=ups, modules=CHECKED)
    w.start(cfg(1))
    (old,) = w.wait_workers(1)
    s = connect(w.port)
    s.sendall(b"GET /delay/4000 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wait_for(lambda: any(r.path == "/delay/4000" for r in b.requests), 5)
    w.write(cfg(2))
    w.send_signal(signal.SIGHUP)
    assert wait_for(lambda: _generation_started(w, 2), 5), w.log()
    time.sleep(0.3)            # the old checker's last check, if one was under way
    start = len([r for r in b.requests if r.path == "/health"])
    window = 2.0
    time.sleep(window)
    n = len([r for r in b.requests if r.path == "/health"]) - start
    assert not gone(old), "the old worker should still be draining"
    per = window / 0.2
    assert per * 0.5 <= n <= per * 1.35, n
    r = read_response(Reader(s))
    assert r.status == 200
    s.close()
