"""Safe operation (issue 13): the command line an operator and systemd rely on.

--help and --version; start-up failures on stderr even with error_log in a
file, also under -d; -d detaching stdin, stdout and stderr; weir -s (reload
answered, refused reloads with their errors, no master); user:/group: (the
workers' identity read from /proc/PID/status, serving, reopening logs in a
root-only directory, reloading, and not writing a root-only file).

Assumptions: the tests run as root (the user: drop is tested for real with
nobody/nogroup); a daemon started by -d is found through its pid file and
stopped by the test that started it."""

import grp
import os
import pwd
import re
import signal
import socket
import subprocess

import pytest

from conftest import MODULES_DIR, WEIR_BIN, children_of, gone, get, to_yaml, wait_for


TEST_MODULES = os.environ.get("WEIR_TEST_MODULES") or os.path.join(
    os.path.dirname(MODULES_DIR), "t", "modules")


def run(args, cwd, timeout=30, stdin=subprocess.DEVNULL):
    p = subprocess.run([WEIR_BIN] + list(args), cwd=str(cwd), stdin=stdin,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class Daemon:
    """weir -d, stopped (TERM, then KILL) at teardown."""

    def __init__(self, tmp_path, cfg):
        self.dir = tmp_path
        self.conf = tmp_path / "weir.yaml"
        self.conf.write_text(to_yaml(cfg) + "\n")
        self.pid_file = cfg["pid_file"]
        self.pid = 0

    def start(self, extra=()):
        rc, out, err = run(["-d", "-c", str(self.conf), "-M", MODULES_DIR] + list(extra),
                           self.dir)
        self.pid = read_pid(self.pid_file)
        return rc, out, err

    def stop(self):
        if self.pid and not gone(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            if not wait_for(lambda: gone(self.pid), 10):
                os.kill(self.pid, signal.SIGKILL)


@pytest.fixture
def daemon(tmp_path):
    made = []

    def make(cfg):
        d = Daemon(tmp_path, cfg)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


def proxy_config(w, b, **extra):
    return w.config(upstreams={"b": {"servers": [b.addr]}},
                    routes=[{"path": "/", "upstream": "b"}], **extra)


# ------------------------------------------------------------- command line


def test_help_and_version(tmp_path):
    rc, out, err = run(["--help"], tmp_path)
    assert rc == 0 and err == "", (rc, out, err)
    assert out.startswith("usage: weir") and "-s SIG" in out and "--version" in out, out
    rc, out, err = run(["--version"], tmp_path)
    assert rc == 0 and err == "", (rc, out, err)
    rc2, out2, _ = run(["-V"], tmp_path)
    assert rc2 == 0 and out == out2, (out, out2)
    assert re.match(r"weir \d+\.\d+\.\d+\n", out), out
    rc, out, err = run(["--versoin"], tmp_path)
    assert rc == 2 and "usage:" in err, (rc, out, err)


# ------------------------------------------------------- start-up failures


def _taken_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s, s.getsockname()[1]


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "daemon"])
def test_port_in_use_reported_on_stderr(weir, backend, tmp_path, detach):
    """error_log is a file, yet the reason reaches stderr, and the exit is 1."""
    taken, port = _taken_port()
    w = weir()
    b = backend()
    log = tmp_path / "error.log"
    cfg = proxy_config(w, b, port=port, error_log={"path": str(log), "level": "info"})
    w.write(cfg)
    args = ["-c", w.conf_path, "-M", MODULES_DIR] + (["-d"] if detach else [])
    rc, out, err = run(args, tmp_path)
    taken.close()
    assert rc == 1, (rc, out, err)
    assert "cannot listen on 127.0.0.1:%d" % port in err, err
    assert "Address already in use" in err, err
    assert "cannot listen on 127.0.0.1:%d" % port in log.read_text()
    assert not os.path.exists(w.pid_file)


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "daemon"])
def test_unwritable_pid_file_reported_on_stderr(weir, backend, tmp_path, detach):
    w = weir()
    b = backend()
    pid = tmp_path / "no-such-dir" / "weir.pid"
    cfg = proxy_config(w, b, error_log={"path": str(tmp_path / "error.log")})
    cfg["pid_file"] = str(pid)
    w.write(cfg)
    args = ["-c", w.conf_path, "-M", MODULES_DIR] + (["-d"] if detach else [])
    rc, out, err = run(args, tmp_path)
    assert rc == 1, (rc, out, err)
    assert "cannot write pid file %s" % pid in err, err
    # nothing is left listening
    s = socket.socket()
    assert s.connect_ex(("127.0.0.1", w.port)) != 0
    s.close()


def test_daemon_detaches_stdio(weir, backend, daemon, tmp_path):
    w = weir()
    b = backend()
    d = daemon(proxy_config(w, b, workers=2, error_log={"path": str(tmp_path / "error.log")}))
    # stdin, stdout and stderr of the starting process are pipes and a file:
    # none of them may stay open in the daemon or its workers
    with open(tmp_path / "tty", "w") as tty:
        p = subprocess.run([WEIR_BIN, "-d", "-c", str(d.conf), "-M", MODULES_DIR],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=tty,
                           cwd=str(tmp_path), timeout=30)
    d.pid = read_pid(d.pid_file)
    assert p.returncode == 0, (p, open(tmp_path / "tty").read())
    assert d.pid and not gone(d.pid)
    assert get(w.port, "/").status == 200
    workers = wait_for(lambda: (lambda k: k if len(k) == 2 else None)(
        children_of(d.pid)), 10)
    assert workers, "no workers under the daemon"
    for pid in [d.pid] + workers:
        for fd in (0, 1, 2):
            assert os.readlink("/proc/%d/fd/%d" % (pid, fd)) == "/dev/null", (pid, fd)
    # the daemon is a session leader of its own, not a child of the caller
    with open("/proc/%d/stat" % d.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    assert int(fields[3]) == d.pid      # session id


# ---------------------------------------------------------------- weir -s


def _dash_s(w, cmd, extra=()):
    return run(["-s", cmd, "-c", w.conf_path] + list(extra), w.dir)


def test_reload_waits_for_the_new_generation(weir, backend):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, workers=2)
    w.start(cfg)
    w.wait_workers(2)
    rc, out, err = _dash_s(w, "reload")
    assert rc == 0, (rc, out, err, w.log())
    assert err == "", err
    # by the time -s returns, the master has started generation 2's workers
    assert "reload: generation 2 started" in w.log(), w.log()
    assert get(w.port, "/").status == 200


def test_refused_reload_prints_the_errors_and_exits_1(weir, backend):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b)
    w.start(cfg)
    workers = sorted(w.wait_workers(1))
    cfg["routes"] = [{"path": "/", "upstream": "nope"}]
    cfg["limits"] = {"keepalive_timeout": "soon"}
    w.write(cfg)
    rc, out, err = _dash_s(w, "reload")
    assert rc == 1, (rc, out, err)
    lines = err.splitlines()
    # exactly the errors, each as file:line:col, then the verdict
    errors = [ln for ln in lines if re.match(r"\S*weir\.yaml:\d+:\d+: ", ln)]
    assert len(errors) == 2, err
    assert any("invalid duration 'soon'" in ln for ln in errors), err
    assert any("unknown upstream 'nope'" in ln for ln in errors), err
    assert lines[-1] == "reload failed: %s has errors (above); generation 1 keeps serving" % (
        w.conf_path), err
    assert len(lines) == 3, err
    assert sorted(w.workers()) == workers
    # a second refused reload answers again (the attempt count moves on)
    rc, _, err2 = _dash_s(w, "reload")
    assert rc == 1 and err2 == err, (err, err2)
    # and a good one after it exits 0
    cfg = proxy_config(w, b, port=w.port)
    w.write(cfg)
    rc, out, err = _dash_s(w, "reload")
    assert rc == 0, (rc, err)


def test_refused_reload_of_a_taken_address(weir, backend):
    """Not only config errors: a listen address that cannot be bound."""
    b = backend()
    w = weir()
    cfg = proxy_config(w, b)
    w.start(cfg)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    cfg["listeners"].append({"name": "second", "address": "127.0.0.1:%d" % port})
    w.write(cfg)
    rc, out, err = _dash_s(w, "reload")
    taken.close()
    assert rc == 1, (rc, err)
    assert "cannot listen on 127.0.0.1:%d (listener second): Address already in use" % port in err
    assert err.splitlines()[-1] == "reload failed; generation 1 keeps serving", err


def test_dash_s_without_a_master(weir, backend, tmp_path):
    b = backend()
    w = weir()
    w.write(proxy_config(w, b))
    for cmd in ("reload", "stop", "quit", "reopen"):
        rc, out, err = _dash_s(w, cmd)
        assert rc == 1, (cmd, rc, err)
        assert "no running master" in err and w.pid_file in err, err
    # a stale pid file: the pid is not running
    dead = subprocess.Popen(["true"])
    dead.wait()
    with open(w.pid_file, "w") as f:
        f.write("%d\n" % dead.pid)
    rc, out, err = _dash_s(w, "reload")
    assert rc == 1 and "stale pid file" in err and str(dead.pid) in err, err
    # a running process that is not a weir master gets no signal
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        with open(w.pid_file, "w") as f:
            f.write("%d\n" % sleeper.pid)
        rc, out, err = _dash_s(w, "stop")
        assert rc == 1 and "is not the weir master" in err, err
        assert sleeper.poll() is None, "weir -s signalled a foreign process"
    finally:
        sleeper.kill()
        sleeper.wait()


def test_dash_s_reopen_and_quit_still_work(weir, backend, tmp_path):
    b = backend()
    w = weir()
    log = tmp_path / "error.log"
    w.start(proxy_config(w, b, error_log={"path": str(log)}))
    os.rename(log, tmp_path / "error.log.1")
    rc, out, err = _dash_s(w, "reopen")
    assert rc == 0, err
    assert wait_for(lambda: log.exists(), 5)
    rc, out, err = _dash_s(w, "quit")
    assert rc == 0, err
    assert w.wait_exit(15) == 0
    assert not os.path.exists(w.pid_file) and not os.path.exists(w.pid_file + ".status")


# ------------------------------------------------------------ user, group


NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrnam("nogroup")


def _ids(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for ln in f:
            k, _, v = ln.partition(":")
            if k in ("Uid", "Gid", "Groups", "CapEff"):
                out[k] = v.split()
    return out


def _assert_dropped(pid):
    ids = _ids(pid)
    assert ids["Uid"] == [str(NOBODY.pw_uid)] * 4, (pid, ids)
    assert ids["Gid"] == [str(NOGROUP.gr_gid)] * 4, (pid, ids)
    assert ids["Groups"] == [], (pid, ids)
    assert int(ids["CapEff"][0], 16) == 0, (pid, ids)


def _root_only_dir(tmp_path):
    d = tmp_path / "logs"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    return d


def _user_config(w, b, logs, **extra):
    """Route /dead goes to a closed port: a 502 the worker logs."""
    extra.setdefault("workers", 2)
    cfg = w.config(upstreams={"b": {"servers": [b.addr]},
                              "d": {"servers": ["127.0.0.1:%d" % _closed_port()]}},
                   routes=[{"path": "/dead", "upstream": "d"}, {"path": "/", "upstream": "b"}],
                   user="nobody", group="nogroup",
                   modules=["router", "lb_roundrobin", "accesslog"],
                   error_log={"path": str(logs / "error.log"), "level": "info"},
                   access_log={"path": str(logs / "access.log"), "flush": "10ms"}, **extra)
    return cfg


def _closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_workers_run_as_user_and_group(weir, backend, tmp_path):
    assert os.geteuid() == 0, "these tests run as root"
    b = backend()
    w = weir()
    logs = _root_only_dir(tmp_path)
    w.start(_user_config(w, b, logs))
    workers = w.wait_workers(2)
    # a worker drops before its ring and its first accept; one seen at the
    # very start (under valgrind, say) may not have got there yet
    wait_for(lambda: all(_ids(pid)["Uid"] != ["0"] * 4 for pid in workers), 30)
    for pid in workers:
        _assert_dropped(pid)
    assert _ids(w.pid)["Uid"] == ["0"] * 4, "the master keeps root"
    for i in range(10):
        assert get(w.port, "/u%d" % i).status == 200
    assert wait_for(lambda: (logs / "access.log").exists() and
                    (logs / "access.log").read_text().count("\n") == 10, 5)


def test_reopen_in_a_root_only_directory(weir, backend, tmp_path):
    """The master reopens the logs and hands them over: the workers could not
    open anything in a 0700 root directory themselves."""
    b = backend()
    w = weir()
    logs = _root_only_dir(tmp_path)
    w.start(_user_config(w, b, logs, workers=1))
    w.wait_workers(1)
    assert get(w.port, "/before").status == 200
    access, error = logs / "access.log", logs / "error.log"
    assert wait_for(lambda: access.exists() and "/before" in access.read_text(), 5)
    os.rename(access, logs / "access.log.1")
    os.rename(error, logs / "error.log.1")
    rc, out, err = _dash_s(w, "reopen")
    assert rc == 0, err
    assert wait_for(lambda: access.exists() and error.exists(), 5), os.listdir(logs)
    # the worker writes the new files: the access log, and its own error log
    # lines (a 502 from an upstream that refuses connections)
    assert get(w.port, "/after").status == 200
    assert get(w.port, "/dead").status == 502
    assert wait_for(lambda: "/after" in access.read_text(), 5), access.read_text()
    assert "/after" not in (logs / "access.log.1").read_text()
    worker = w.workers()[0]
    assert wait_for(lambda: "] %d weir: upstream d " % worker in error.read_text(), 5), (
        error.read_text())
    assert "reopen: cannot" not in (logs / "error.log.1").read_text() + error.read_text()
    os.kill(worker, signal.SIGKILL)        # a worker started later gets the new files too
    assert wait_for(lambda: (lambda k: k and k[0] != worker)(w.workers()), 10)
    assert get(w.port, "/respawned").status == 200
    assert wait_for(lambda: "/respawned" in access.read_text(), 5), access.read_text()
    assert "worker 0 (pid %d) killed by signal 9" % worker in error.read_text()


def test_reload_keeps_the_user(weir, backend, tmp_path):
    b = backend()
    w = weir()
    logs = _root_only_dir(tmp_path)
    w.start(_user_config(w, b, logs))
    old = w.wait_workers(2)
    rc, out, err = _dash_s(w, "reload")
    assert rc == 0, err
    new = wait_for(lambda: (lambda k: k if len(k) == 2 and not set(k) & set(old) else None)(
        w.workers()), 15)
    assert new, (old, w.workers())
    wait_for(lambda: all(_ids(pid)["Uid"] != ["0"] * 4 for pid in new), 30)
    for pid in new:
        _assert_dropped(pid)
    assert get(w.port, "/").status == 200


def test_worker_cannot_write_a_root_only_file(weir, backend, tmp_path):
    b = backend()
    w = weir()
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    os.chmod(secret, 0o600)
    cfg = proxy_config(w, b, user="nobody",
                       modules=["router", "lb_roundrobin",
                                {"name": "write_probe",
                                 "path": os.path.join(TEST_MODULES, "write_probe.so")}],
                       write_probe=str(secret))
    w.start(cfg)
    assert wait_for(lambda: "write_probe: %s:" % secret in w.log(), 5), w.log()
    assert "write_probe: %s: Permission denied (uid %d)" % (secret, NOBODY.pw_uid) in w.log()
    # the same probe without user: opens it (the test can fail)
    w.stop()
    w2 = weir("root")
    cfg = proxy_config(w2, b, modules=cfg["modules"], write_probe=str(secret))
    w2.start(cfg)
    assert wait_for(lambda: "write_probe: %s: opened (uid 0)" % secret in w2.log(), 5), w2.log()
    assert secret.read_text() == "root only\n"


@pytest.mark.parametrize("key,value,word", [
    ("user", "no-such-user-weir", "unknown user 'no-such-user-weir'"),
    ("group", "no-such-group-weir", "unknown group 'no-such-group-weir'"),
])
def test_unknown_user_or_group_is_a_config_error(weir, backend, tmp_path, key, value, word):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, user="nobody")
    cfg[key] = value
    text = w.write(cfg)
    line = [i for i, ln in enumerate(text.splitlines(), 1) if ln.startswith(key + ":")][0]
    rc, out, err = run(["-t", "-c", w.conf_path, "-M", MODULES_DIR], w.dir)
    assert rc == 1, (out, err)
    assert re.search(r"weir\.yaml:%d:\d+: %s" % (line, re.escape(word)), err), err


def test_group_needs_user(weir, backend):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, group="nogroup")
    w.write(cfg)
    rc, out, err = run(["-t", "-c", w.conf_path, "-M", MODULES_DIR], w.dir)
    assert rc == 1 and "'group' needs 'user'" in err, err


# ----------------------------------------------------------------- weir -t


def _t(w, extra=()):
    return run(["-t", "-c", w.conf_path, "-M", MODULES_DIR] + list(extra), w.dir)


def _line_of(text, needle):
    return [i for i, ln in enumerate(text.splitlines(), 1) if needle in ln][0]


def test_t_sees_an_unopenable_error_log(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, error_log={"path": str(tmp_path / "missing" / "error.log")})
    text = w.write(cfg)
    rc, out, err = _t(w)
    assert rc == 1, (out, err)
    line = _line_of(text, "missing/error.log")
    assert re.search(r"weir\.yaml:%d:\d+: cannot open error log %s: No such file or directory"
                     % (line, re.escape(str(tmp_path / "missing" / "error.log"))), err), err
    # and the start fails the same way, nothing serving
    rc, out, err2 = run(["-c", w.conf_path, "-M", MODULES_DIR], w.dir)
    assert rc == 1 and "cannot open error log" in err2, err2
    # an error log that can be opened is created by -t, as the start would
    cfg["error_log"] = {"path": str(tmp_path / "error.log")}
    w.write(cfg)
    rc, out, err = _t(w)
    assert rc == 0, err
    assert (tmp_path / "error.log").exists()


def test_t_sees_an_unopenable_access_log(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, modules=["router", "lb_roundrobin", "accesslog"],
                       access_log={"path": str(tmp_path / "nodir" / "access.log")})
    text = w.write(cfg)
    rc, out, err = _t(w)
    assert rc == 1, (out, err)
    assert re.search(r"weir\.yaml:%d:\d+: cannot open log file .*nodir/access\.log"
                     % _line_of(text, "nodir/access.log"), err), err


def test_t_sees_a_missing_module_file(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, modules=["router", "lb_roundrobin",
                                      {"name": "headers", "path": str(tmp_path / "headers.so")}])
    text = w.write(cfg)
    rc, out, err = _t(w)
    assert rc == 1, (out, err)
    assert re.search(r"weir\.yaml:%d:\d+: .*headers\.so" % _line_of(text, "headers"), err), err


def test_t_sees_an_unwritable_pid_file_directory(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b)
    cfg["pid_file"] = str(tmp_path / "gone" / "weir.pid")
    text = w.write(cfg)
    rc, out, err = _t(w)
    assert rc == 1, (out, err)
    assert re.search(r"weir\.yaml:%d:\d+: cannot write pid file .*gone/weir\.pid"
                     % _line_of(text, "pid_file"), err), err
    # -p names the pid file the start would write: that one is checked
    rc, out, err = _t(w, ["-p", str(tmp_path / "weir.pid")])
    assert rc == 0, err
    rc, out, err = _t(w, ["-p", str(tmp_path / "gone2" / "x.pid")])
    assert rc == 1 and "gone2" in err, err


@pytest.mark.skipif(not os.path.exists(os.path.join(MODULES_DIR, "tls.so")),
                    reason="module tls not built")
def test_t_sees_an_unreadable_certificate(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b, modules=["router", "lb_roundrobin", "tls"],
                       listener={"tls": {"certificates": [
                           {"cert": str(tmp_path / "no.pem"), "key": str(tmp_path / "no.key")}]}})
    w.write(cfg)
    rc, out, err = _t(w)
    assert rc == 1, (out, err)
    assert re.search(r"weir\.yaml:\d+:\d+: .*no\.pem", err), err


# ------------------------------------------------------------ default paths


def _version_field(name):
    rc, out, err = run(["-V"], "/")
    m = re.search(r"^%s (.+)$" % re.escape(name), out, re.M)
    assert m, out
    return m.group(1)


def test_default_pid_file_is_the_systems(weir, backend, tmp_path):
    """No pid_file: the run directory weir was built with, whatever the
    config's directory. weir runs with a private /run, looked at through
    /proc/PID/root."""
    default = _version_field("default pid file")
    assert default.startswith("/") and default.endswith("/weir.pid"), default
    b = backend()
    w = weir()
    cfg = proxy_config(w, b)
    del cfg["pid_file"]
    w.start(cfg, private=True)
    inside = "/proc/%d/root%s" % (w.pid, default)
    assert wait_for(lambda: read_pid(inside) == w.pid, 5), w.log()
    assert not os.path.exists(os.path.join(w.dir, "weir.pid"))
    assert os.path.exists(inside + ".status")
    w.stop()


def test_pid_file_option_overrides(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = proxy_config(w, b)
    del cfg["pid_file"]
    other = tmp_path / "other.pid"
    w.start(cfg, args=["-p", str(other)])
    assert wait_for(lambda: read_pid(other) == w.pid, 5), w.log()
    # -s with the same -p finds that master
    rc, out, err = run(["-s", "reload", "-c", w.conf_path, "-p", str(other)], w.dir)
    assert rc == 0, err
