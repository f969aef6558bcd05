"""Packaging: the systemd unit's sandbox, `meson install`, the man page, the
licence and `tools/dev.sh deb` (issue 13).

The .deb is built once per session (`tools/dev.sh deb` into a temp dir: a
release build with prefix /usr, about 25 s on 2 cores) and never installed
here: it is unpacked with `dpkg-deb -x` and its binary run from there.

This machine has no systemd as PID 1, so the unit cannot be started; the
sandbox is checked from outside instead: `systemd-analyze security
--offline=yes` rates the unit, the unit's SystemCallFilter= is expanded with
`systemd-analyze syscall-filter`, and weir runs under strace (proxying plain
and TLS, regex routes and rewrites, health checks, a JSON access log, a
reload, a reopen and a graceful stop) so that every system call it makes and
every socket family it opens can be checked against the unit's allow lists.
io_uring's operations are not system calls; io_uring_setup/enter/register
are, and must be allowed.

Assumptions: the build directory is the parent of core/weir (WEIR_BIN), as
meson lays it out; README's core key tables are the five sections named in
CORE_TABLES; the master's log says `reload: generation 2 started`."""

import glob
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time

import pytest

from conftest import (MODULES_DIR, SOURCE_ROOT, WEIR_BIN, Backend, free_port, get, read_pid,
                      to_yaml, wait_for)
from tlspki import Pki

BUILD_DIR = os.path.dirname(os.path.dirname(os.path.abspath(WEIR_BIN)))
EXPOSURE_MAX = 4.0
IO_URING = {"io_uring_setup", "io_uring_enter", "io_uring_register"}


def _run(cmd, **kw):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=kw.pop("timeout", 60), **kw)


def _meson_version():
    with open(os.path.join(SOURCE_ROOT, "meson.build")) as f:
        return re.search(r"version\s*:\s*'([^']+)'", f.read()).group(1)


# ------------------------------------------------------------------ the .deb

@pytest.fixture(scope="session")
def deb(tmp_path_factory):
    """(path of the .deb, directory it is unpacked in)."""
    out = tmp_path_factory.mktemp("deb")
    r = _run([os.path.join(SOURCE_ROOT, "tools", "dev.sh"), "deb", str(out)], timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    path = r.stdout.strip().splitlines()[-1]
    assert path.endswith(".deb") and os.path.exists(path), r.stdout
    root = out / "unpacked"
    r = _run(["dpkg-deb", "-x", path, str(root)])
    assert r.returncode == 0, r.stderr
    return path, str(root)


def _multiarch():
    r = _run(["gcc", "-print-multiarch"])
    return r.stdout.strip() or "x86_64-linux-gnu"


def test_deb_fields(deb):
    path, _ = deb
    r = _run(["dpkg-deb", "-f", path])
    assert r.returncode == 0, r.stderr
    fields = dict(re.findall(r"^(\S+): (.*)$", r.stdout, re.M))
    assert fields["Package"] == "weir"
    assert fields["Version"] == _meson_version()
    assert fields["Architecture"] == _run(["dpkg", "--print-architecture"]).stdout.strip()
    depends = [d.split()[0] for d in fields["Depends"].split(", ")]
    for lib in ["libc6", "liburing2", "libnghttp2-14", "libssl3", "libyaml-0-2",
                "libpcre2-8-0"]:
        assert lib in depends, fields["Depends"]
    r = _run(["dpkg-deb", "-I", path, "conffiles"])
    assert r.stdout.split() == ["/etc/weir/weir.yaml", "/etc/logrotate.d/weir"], r.stdout
    r = _run(["dpkg-deb", "-I", path, "postinst"])
    assert "systemd-sysusers weir.conf" in r.stdout and "adduser --system" in r.stdout


def test_deb_contents(deb):
    path, _ = deb
    r = _run(["dpkg-deb", "-c", path])
    assert r.returncode == 0, r.stderr
    files = {}
    for line in r.stdout.splitlines():
        perms, owner, _size, _date, _time, name = line.split(None, 5)
        files[name.split(" -> ")[0].lstrip(".")] = (perms, owner)
    ma = _multiarch()
    modules = sorted(os.path.basename(p) for p in glob.glob(os.path.join(MODULES_DIR, "*.so"))
                     if not os.path.basename(p).startswith(("test_", "conntest")))
    want = ["/usr/bin/weir", "/etc/weir/weir.yaml", "/etc/logrotate.d/weir",
            "/lib/systemd/system/weir.service", "/usr/lib/sysusers.d/weir.conf",
            "/usr/include/weir/module.h", "/usr/lib/%s/pkgconfig/weir-module.pc" % ma,
            "/usr/share/man/man8/weir.8.gz", "/usr/share/doc/weir/README.md",
            "/usr/share/doc/weir/copyright"]
    want += ["/usr/lib/%s/weir/modules/%s" % (ma, m) for m in modules]
    for name in want:
        assert name in files, (name, sorted(files))
    for name in ["router.so", "lb_roundrobin.so", "tls.so"]:
        assert name in modules
    assert all(o == "root/root" for _, o in files.values())
    assert files["/usr/bin/weir"][0] == "-rwxr-xr-x"
    # nothing outside /usr, /etc and bookworm's /lib/systemd
    for name in files:
        assert name == "/" or name.startswith(("/usr/", "/etc/", "/lib/systemd/")) \
            or name == "/lib/", name
        assert not name.startswith("/usr/local"), name


def test_packaged_binary_checks_packaged_config(deb, tmp_path):
    _, root = deb
    ma = _multiarch()
    weir = os.path.join(root, "usr/bin/weir")
    r = _run([weir, "-V"])
    assert r.returncode == 0, r.stderr
    # once installed, the binary finds its modules and config where the package puts them
    assert "modules dir /usr/lib/%s/weir/modules" % ma in r.stdout, r.stdout
    assert "default config /etc/weir/weir.yaml" in r.stdout, r.stdout
    assert "buildtype=release" in r.stdout
    conf = os.path.join(root, "etc/weir/weir.yaml")
    with open(conf) as f:
        # the unit's pid file, so that a plain `weir -s reload` finds the master
        assert re.search(r"^pid_file: /run/weir/weir.pid$", f.read(), re.M)
    # /run/weir exists under the unit only (RuntimeDirectory=), which passes
    # -p as well: so does this check, with a directory that exists here
    r = _run([weir, "-t", "-c", conf, "-p", str(tmp_path / "weir.pid"),
              "-M", os.path.join(root, "usr/lib", ma, "weir/modules")])
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test is successful" in r.stdout
    # the .pc is relocatable: read where it is, it names the tree it is in
    pcdir = os.path.join(root, "usr/lib", ma, "pkgconfig")
    r = _run(["pkg-config", "--variable=modulesdir", "weir-module"],
             env=dict(os.environ, PKG_CONFIG_PATH=pcdir, PKG_CONFIG_LIBDIR=pcdir))
    assert r.returncode == 0, r.stderr
    assert os.path.normpath(r.stdout.strip()) == os.path.join(root, "usr/lib", ma,
                                                              "weir/modules"), r.stdout
    with open(os.path.join(root, "usr/share/doc/weir/copyright")) as f:
        copyright = f.read()
    assert "License: BSD-2-Clause" in copyright and "2026 weir authors" in copyright


# -------------------------------------------------------------- meson install

@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(destdir, prefix, sysconfdir) after `meson install --destdir` of this build."""
    with open(os.path.join(BUILD_DIR, "meson-info", "intro-buildoptions.json")) as f:
        opts = {o["name"]: o["value"] for o in json.load(f)}
    dest = tmp_path_factory.mktemp("destdir")
    r = _run(["meson", "install", "-C", BUILD_DIR, "--destdir", str(dest), "--no-rebuild",
              "--quiet"], timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    prefix = opts["prefix"]
    sysconf = opts["sysconfdir"]
    if not os.path.isabs(sysconf):
        sysconf = os.path.join(prefix, sysconf)
    return str(dest), prefix, sysconf, opts


def _in(dest, path):
    return os.path.join(dest, path.lstrip("/"))


def _unit_values(text, key):
    return [ln.split("=", 1)[1] for ln in text.splitlines() if ln.startswith(key + "=")]


def test_meson_install_puts_everything(installed):
    dest, prefix, sysconf, opts = installed
    bindir = os.path.join(prefix, opts["bindir"])
    docdir = os.path.join(prefix, opts["datadir"], "doc", "weir")
    unit_path = _in(dest, os.path.join(prefix, "lib/systemd/system/weir.service")
                    if not opts["systemdunitdir"] else
                    os.path.join(opts["systemdunitdir"], "weir.service"))
    for p in [os.path.join(bindir, "weir"), os.path.join(sysconf, "weir/weir.yaml"),
              os.path.join(sysconf, "logrotate.d/weir"), os.path.join(docdir, "README.md"),
              os.path.join(docdir, "LICENSE"),
              os.path.join(prefix, opts["mandir"], "man8/weir.8"),
              os.path.join(prefix, "lib/sysusers.d/weir.conf")]:
        assert os.path.exists(_in(dest, p)), p
    with open(unit_path) as f:
        unit = f.read()
    config = os.path.join(sysconf, "weir", "weir.yaml")
    assert "@" not in re.sub(r"@system-service|@privileged|@aio", "", unit), \
        "an unsubstituted @VAR@ in the unit"
    assert _unit_values(unit, "ExecStart") == [
        "%s/weir -c %s -p /run/weir/weir.pid" % (bindir, config)]
    assert _unit_values(unit, "ExecReload") == [
        "%s/weir -s reload -c %s -p /run/weir/weir.pid" % (bindir, config)]
    assert "file:%s/README.md" % docdir in unit
    with open(_in(dest, os.path.join(sysconf, "logrotate.d/weir"))) as f:
        rot = f.read()
    assert "%s/weir -s reopen -c %s -p /run/weir/weir.pid" % (bindir, config) in rot
    assert "@" not in rot


def _logrotate_patterns(text):
    return [ln.rstrip("{ ").split() for ln in text.splitlines()
            if ln.rstrip().endswith("{")][0]


def test_logrotate_covers_every_log_the_unit_allows(installed):
    """Under ProtectSystem=strict weir can write logs only in the unit's
    LogsDirectory=; the snippet rotates every *.log and *.json there (error
    log, plain and JSON access logs) and tells the master the unit runs."""
    dest, prefix, sysconf, opts = installed
    unit = open(glob.glob(os.path.join(dest, "**", "weir.service"), recursive=True)[0]).read()
    rot = open(_in(dest, os.path.join(sysconf, "logrotate.d/weir"))).read()
    (logs,) = _unit_values(unit, "LogsDirectory")
    pats = _logrotate_patterns(rot)
    assert sorted(pats) == sorted(["/var/log/%s/*.log" % logs, "/var/log/%s/*.json" % logs])
    (rundir,) = _unit_values(unit, "RuntimeDirectory")
    assert "-p /run/%s/weir.pid" % rundir in _unit_values(unit, "ExecStart")[0]
    assert "-p /run/%s/weir.pid" % rundir in rot
    assert re.search(r"^\s*su weir weir$", rot, re.M)
    assert re.search(r"^\s*sharedscripts$", rot, re.M)


# ------------------------------------------------------------- the sandbox

def _units(installed, deb):
    dest = installed[0]
    return [glob.glob(os.path.join(dest, "**", "weir.service"), recursive=True)[0],
            os.path.join(deb[1], "lib/systemd/system/weir.service")]


def test_unit_exposure_at_most_4(installed, deb, tmp_path):
    for unit in _units(installed, deb):
        # offline mode rates a file; it also warns there about keys it does not know
        r = _run(["systemd-analyze", "security", "--offline=yes", "--no-pager", unit],
                 cwd=str(tmp_path))
        m = re.search(r"Overall exposure level for weir\.service: (\d+\.\d+)", r.stdout)
        assert m, r.stdout + r.stderr
        assert float(m.group(1)) <= EXPOSURE_MAX, r.stdout
        assert "Unknown" not in r.stderr and "ignoring" not in r.stderr, r.stderr
        assert "Type=notify" in open(unit).read().splitlines()


def _filter_groups():
    """{@group: [entries]} from `systemd-analyze syscall-filter`."""
    r = _run(["systemd-analyze", "syscall-filter", "--no-pager"])
    groups, cur = {}, None
    for line in r.stdout.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not line.startswith(" "):
            cur = groups.setdefault(s, []) if s.startswith("@") else None
        elif cur is not None:
            cur.append(s)
    assert "@system-service" in groups, r.stdout[:2000]
    return groups


def _expand(names, groups):
    out = set()
    for n in names:
        if n.startswith("@"):
            out |= _expand(groups[n], groups)
        else:
            out.add(n)
    return out


def _allowed_syscalls(unit_text):
    """The calls the unit's SystemCallFilter= lines let through, as systemd
    combines them: allow lists add up, then ~ lists take away."""
    groups = _filter_groups()
    allow, deny = set(), set()
    for v in _unit_values(unit_text, "SystemCallFilter"):
        if v.startswith("~"):
            deny |= _expand(v[1:].split(), groups)
        else:
            allow |= _expand(v.split(), groups)
    assert allow, "the unit has no SystemCallFilter allow list"
    return allow - deny


def test_unit_keeps_io_uring_and_pcre2_jit(deb):
    with open(os.path.join(deb[1], "lib/systemd/system/weir.service")) as f:
        unit = f.read()
    keys = [ln.split("=", 1)[0] for ln in unit.splitlines() if "=" in ln and ln[:1] != "#"]
    assert "MemoryDenyWriteExecute" not in keys
    assert IO_URING <= _allowed_syscalls(unit)
    assert _unit_values(unit, "SystemCallErrorNumber") == ["EPERM"]
    # no sandbox without the unprivileged user and its one capability
    assert _unit_values(unit, "User") == ["weir"]
    assert _unit_values(unit, "CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]


def _traced_config(d, port, tls_port, backend, pki_leaf):
    return {
        "workers": 2,
        "pid_file": os.path.join(d, "weir.pid"),
        "error_log": {"path": os.path.join(d, "error.log"), "level": "info"},
        "modules": ["router", "lb_roundrobin", "headers", "rewrite", "accesslog",
                    "healthcheck", "tls"],
        "access_log": {"path": os.path.join(d, "access.json"), "format_json": True,
                       "format": '{"status":"$status","uri":"$request_uri"}'},
        "listeners": [{"address": "127.0.0.1:%d" % port},
                      {"address": "127.0.0.1:%d" % tls_port,
                       "tls": {"certificates": [{"cert": pki_leaf.cert, "key": pki_leaf.key}]}}],
        "upstreams": {"b": {"balancer": "roundrobin", "servers": ["localhost:%d" % backend.port],
                            "health_check": {"type": "http", "path": "/health",
                                             "interval": "100ms", "timeout": "90ms"}}},
        "routes": [{"path": "/re/", "rewrite": "^/re/(\\d+)$ /n/$1", "upstream": "b"},
                   {"path": "/", "upstream": "b",
                    "response_headers": {"set": {"X-Via": "weir"}}}],
    }


def _tls_get(port, path):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="a.test") as s:
            s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
                      % path.encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    return data
                data += chunk


def test_syscalls_weir_makes_are_allowed_by_the_unit(deb, tmp_path):
    """The packaged binary under strace, doing what a server does: each call
    it makes must pass the unit's filter, each socket family
    RestrictAddressFamilies=, or the sandbox would break it (EPERM)."""
    strace = shutil.which("strace")
    assert strace, "strace is needed (tools/dev.sh deps installs it)"
    _, root = deb
    with open(os.path.join(root, "lib/systemd/system/weir.service")) as f:
        unit = f.read()
    allowed = _allowed_syscalls(unit)
    families = set(_unit_values(unit, "RestrictAddressFamilies")[0].split())

    b = Backend("b1")
    d = str(tmp_path)
    port, tls_port = free_port(), free_port()
    pki = Pki(tmp_path / "pki")
    leaf = pki.leaf(pki.ca("CA"), "a.test")
    conf = os.path.join(d, "weir.yaml")
    with open(conf, "w") as f:
        f.write(to_yaml(_traced_config(d, port, tls_port, b, leaf)) + "\n")
    trace = os.path.join(d, "trace")
    weir = os.path.join(root, "usr/bin/weir")
    mods = os.path.join(root, "usr/lib", _multiarch(), "weir/modules")
    proc = subprocess.Popen([strace, "-f", "-qq", "-o", trace, weir, "-c", conf, "-M", mods],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=d,
                            start_new_session=True)
    try:
        assert wait_for(lambda: _pid(d) and get(port, "/").status == 200, 20), _log(d)
        master = _pid(d)
        assert get(port, "/re/42").status == 200
        assert b"HTTP/1.1 200" in _tls_get(tls_port, "/tls")
        assert wait_for(lambda: any(r.path == "/health" for r in b.requests), 5)
        os.kill(master, signal.SIGHUP)
        assert wait_for(lambda: "reload: generation 2 started" in _log(d), 10), _log(d)
        assert get(port, "/after-reload").status == 200
        os.kill(master, signal.SIGUSR1)
        time.sleep(0.3)
        assert get(port, "/after-reopen").status == 200
        os.kill(master, signal.SIGQUIT)
        assert proc.wait(20) == 0, _log(d)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        b.stop()
    assert [r.path for r in b.requests if r.path.startswith("/n/")] == ["/n/42"], [r.path for r in b.requests]

    calls, fams, wx = set(), set(), False
    with open(trace) as f:
        for line in f:
            m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
            if not m:
                continue
            calls.add(m.group(1))
            fm = re.match(r"\d+\s+socket\((AF_[A-Z0-9]+)", line)
            if fm:
                fams.add(fm.group(1))
            if re.match(r"\d+\s+(mmap|mprotect)\(.*PROT_WRITE\|PROT_EXEC", line):
                wx = True
    assert IO_URING <= calls, sorted(calls)
    assert calls - allowed == set(), "calls the unit's SystemCallFilter= refuses"
    assert fams <= families, fams
    # PCRE2's JIT maps writable executable memory: why the unit has no
    # MemoryDenyWriteExecute=
    assert wx, "no W+X mapping seen; is PCRE2's JIT in use?"


def _pid(d):
    return read_pid(os.path.join(d, "weir.pid"))


def _log(d):
    try:
        with open(os.path.join(d, "error.log")) as f:
            return f.read()
    except OSError:
        return ""


# ------------------------------------------------------ man page, licence

CORE_TABLES = ["### Top level (core)", "### `limits`", "### `listeners[]`",
               "### `upstreams.<name>`", "### `routes[]`"]


def _readme_core_keys():
    with open(os.path.join(SOURCE_ROOT, "README.md")) as f:
        text = f.read()
    keys = set()
    for head in CORE_TABLES:
        i = text.index("\n" + head)
        section = text[i + 1:text.index("\n#", i + 1)]
        for row in re.findall(r"^\| (`[^|]+`) \|", section, re.M):
            keys |= set(re.findall(r"`([a-z_0-9]+)`", row))
    assert len(keys) > 40, keys
    return keys


def test_man_page_renders_and_covers_the_core_keys():
    page = os.path.join(SOURCE_ROOT, "doc", "weir.8")
    r = _run(["groff", "-man", "-Tutf8", "-ww", "-z", page])
    assert r.returncode == 0 and r.stderr == "", r.stderr
    with open(page) as f:
        text = f.read()
    missing = [k for k in sorted(_readme_core_keys()) if not re.search(r"\b%s\b" % k, text)]
    assert missing == [], "README keys missing from weir(8)"
    with open(os.path.join(SOURCE_ROOT, "core", "main.c")) as f:
        main_c = f.read()
    for opt in set(re.findall(r'"  -([A-Za-z]) ', main_c)) | {"h"}:
        assert "\\-" + opt in text, opt
    for sig in ["HUP", "QUIT", "TERM", "INT", "USR1", "USR2"]:
        assert re.search(r"^\.[BT]R? .*\b%s\b" % sig, text, re.M), sig
    for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "SIGNALS", "FILES",
                    "CONFIGURATION", "EXIT STATUS", "SEE ALSO"]:
        assert ".SH " + section in text, section


def test_license_is_the_bsd_2_clause_meson_declares():
    with open(os.path.join(SOURCE_ROOT, "meson.build")) as f:
        assert re.search(r"license\s*:\s*'BSD-2-Clause'", f.read())
    with open(os.path.join(SOURCE_ROOT, "LICENSE")) as f:
        lic = f.read()
    assert lic.startswith("BSD 2-Clause License\n")
    assert "Copyright (c) 2026, weir authors" in lic
    assert lic.count("Redistributions ") == 2
    assert "Neither the name" not in lic      # the third clause of BSD-3-Clause
    assert "EVEN IF ADVISED OF THE POSSIBILITY OF SUCH DAMAGE." in lic
