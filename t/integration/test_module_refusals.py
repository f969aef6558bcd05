"""The module loader's refusals, seen from the real binary.

Each broken test module (t/modules/) is listed in an otherwise valid config;
`weir -t -c FILE -M DIR` must print the refusal at the file:line:col of the
module's entry and exit 1, and a normal start with the same file must exit
non-zero without ever accepting a connection. The same config without the
broken module is checked to load and serve, so each refusal is the module's
doing and nothing else's. The messages are those asserted in
t/unit/modload_test.c and t/unit/phase_test.c, with this weir's ABI version
taken from `weir -V`."""
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import MODULES_DIR, WEIR_BIN, free_port, get, kernel_has_io_uring

TEST_MODULES = os.environ.get("WEIR_TEST_MODULES") or os.path.join(
    os.path.dirname(MODULES_DIR), "t", "modules")


def _so(name):
    path = os.path.join(TEST_MODULES, name + ".so")
    if not os.path.exists(path):
        pytest.fail("test module not built: %s" % path)  # a build problem, never a skip
    return path


@pytest.fixture(scope="module")
def abi():
    out = subprocess.run([WEIR_BIN, "-V"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    m = re.search(r"^module ABI (\d+)\.(\d+)$", out.stdout, re.M)
    assert m, out.stdout
    return int(m.group(1)), int(m.group(2))


def _config(tmp_path, entries, modules_line=3):
    """A config whose `modules:` key is on line `modules_line` (3) and whose
    entries follow one per line from line 4. Returns (path, text lines)."""
    port = free_port()
    lines = [
        "workers: 1",
        "error_log: {path: stderr, level: info}",
        "modules:",
    ]
    assert len(lines) == modules_line
    lines += ["  - %s" % e for e in entries]
    lines += [
        "pid_file: %s" % (tmp_path / "weir.pid"),
        "listeners:",
        "  - address: 127.0.0.1:%d" % port,
        "",
    ]
    path = tmp_path / "weir.yaml"
    path.write_text("\n".join(lines))
    return str(path), lines, port


def _pos(path, lines, lineno, needle):
    return "%s:%d:%d" % (path, lineno, lines[lineno - 1].index(needle) + 1)


def _check_t(conf, mdir):
    return subprocess.run([WEIR_BIN, "-t", "-c", conf, "-M", mdir], capture_output=True,
                          text=True, timeout=30)


def _start_refused(conf, mdir, port, tmp_path):
    """A normal start must exit non-zero and never accept on `port`."""
    log = tmp_path / "start.log"
    with open(log, "wb") as lf:
        p = subprocess.Popen([WEIR_BIN, "-c", conf, "-M", mdir], stdin=subprocess.DEVNULL,
                             stdout=lf, stderr=lf, start_new_session=True)
        accepted = False
        end = time.monotonic() + 15
        try:
            while p.poll() is None and time.monotonic() < end:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    accepted = True
                    break
                except OSError:
                    time.sleep(0.02)
        finally:
            if p.poll() is None:
                p.terminate()
            rc = p.wait(10)
    text = log.read_text(errors="replace")
    assert not accepted, "weir accepted a connection with a refused module; log:\n" + text
    assert rc != 0, "weir exited 0 with a refused module; log:\n" + text
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    return rc, text


def _refused(tmp_path, entries, mdir, line, needle, message):
    """The config with `entries` is refused by -t and by a normal start, with
    `message` at the position of `needle` on line `line`. Returns the -t stderr."""
    conf, lines, port = _config(tmp_path, entries)
    where = _pos(conf, lines, line, needle)
    want = "%s: %s" % (where, message)

    out = _check_t(conf, mdir)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    assert want in out.stderr.splitlines(), "expected the line\n  %s\nin:\n%s" % (want, out.stderr)
    assert "test failed" in out.stderr and "successful" not in out.stdout, out

    rc, log = _start_refused(conf, mdir, port, tmp_path)
    assert rc == 1, (rc, log)
    assert want in log.splitlines(), "expected the line\n  %s\nin:\n%s" % (want, log)
    return out.stderr


def _accepted(tmp_path, entries, mdir):
    """Control: the same config minus the broken module loads and serves."""
    sub = tmp_path / "control"
    sub.mkdir()
    conf, lines, port = _config(sub, entries)
    out = _check_t(conf, mdir)
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "test is successful" in out.stdout
    log = open(sub / "run.log", "wb")
    p = subprocess.Popen([WEIR_BIN, "-c", conf, "-M", mdir], stdin=subprocess.DEVNULL,
                         stdout=log, stderr=log, start_new_session=True)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if p.poll() is not None:
                text = (sub / "run.log").read_text(errors="replace")
                if p.returncode == 1 and "io_uring" in text and not kernel_has_io_uring():
                    pytest.skip("io_uring unavailable on this kernel")
                pytest.fail("control config did not start (%s):\n%s" % (p.returncode, text))
            try:
                r = get(port, "/")
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("control config never listened")
        assert r.status == 404, r       # no routes: weir itself answers
    finally:
        p.terminate()
        p.wait(10)
        log.close()


# -------------------------------------------------------------------- ABI


def test_wrong_abi_major(tmp_path, abi):
    so = _so("bad_abi")
    major, minor = abi
    msg = ("module %s was built for weir module ABI %d.0, this weir provides %d.%d; "
           "rebuild it against this weir's headers" % (so, major + 1, major, minor))
    # by name from -M DIR
    (tmp_path / "a").mkdir()
    _refused(tmp_path / "a", ["bad_abi"], TEST_MODULES, 4, "bad_abi", msg)
    # by path, next to the real modules
    (tmp_path / "b").mkdir()
    _refused(tmp_path / "b", ["router", "{name: bad_abi, path: %s}" % so], MODULES_DIR, 5,
             "bad_abi", msg)
    _accepted(tmp_path, ["router"], MODULES_DIR)


def test_newer_minor(tmp_path, abi):
    so = _so("newer_minor")
    major, minor = abi
    msg = ("module %s was built for weir module ABI %d.%d, newer than this weir's %d.%d; "
           "upgrade weir or rebuild the module" % (so, major, minor + 5, major, minor))
    _refused(tmp_path, ["newer_minor"], TEST_MODULES, 4, "newer_minor", msg)
    _accepted(tmp_path, ["cycle_a"], TEST_MODULES)


# ------------------------------------------------------------------ names


def test_name_mismatch(tmp_path):
    so = _so("dup_router")
    msg = ("module %s (version 9.9) calls itself 'router', not 'dup_router'; a module's name "
           "must equal its file name without .so" % so)
    _refused(tmp_path, ["dup_router"], TEST_MODULES, 4, "dup_router", msg)
    _accepted(tmp_path, ["cycle_a"], TEST_MODULES)


def test_duplicate_router(tmp_path):
    """dup_router.so says it is 'router': listed under that name next to the
    real router, it is refused as a second 'router'."""
    so = _so("dup_router")
    conf = str(tmp_path / "weir.yaml")
    first = "%s:4:5" % conf
    msg = "module 'router' is listed twice (first at %s)" % first
    _refused(tmp_path, ["router", "{name: router, path: %s}" % so], MODULES_DIR, 5, "router", msg)
    _accepted(tmp_path, ["router"], MODULES_DIR)


# --------------------------------------------------------------- ordering


def test_ordering_cycle(tmp_path):
    _so("cycle_a")
    _so("cycle_b")
    msg = "phase 'access': ordering cycle: cycle_a.check -> cycle_b.check -> cycle_a.check"
    # reported at the `modules:` key, line 3 column 1
    _refused(tmp_path, ["cycle_a", "cycle_b"], TEST_MODULES, 3, "modules", msg)
    # each half alone is fine: the cycle needs both
    _accepted(tmp_path, ["cycle_a"], TEST_MODULES)
