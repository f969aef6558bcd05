"""The example third-party module (examples/response_header/), built the way
its README says: out of tree, against an installed weir, with nothing but
`cc -shared -fPIC $(pkg-config --cflags weir-module) response_header.c -o response_header.so`.

The build tree is installed into a temporary root with `meson install --destdir`,
pkg-config is pointed at that root's weir-module.pc with PKG_CONFIG_PATH alone (the
.pc is relocatable: its paths are relative to its own directory, so no
PKG_CONFIG_SYSROOT_DIR is needed), and the module source is copied out of the
checkout, so the header it compiles against can only come from the install. The module is then loaded by the built
weir from an absolute path in `modules:` and must put its templated header on
proxied responses, per route, and report its config errors at file:line:col."""
import os
import re
import shlex
import shutil
import subprocess

import pytest

from conftest import MODULES_DIR, SOURCE_ROOT, WEIR_BIN, free_port, get, raw_handler

EXAMPLE_DIR = os.path.join(SOURCE_ROOT, "examples", "response_header")
BUILD_LINE = ("cc -shared -fPIC $(pkg-config --cflags weir-module) "
              "response_header.c -o response_header.so")


def _inside(path, root):
    path, root = os.path.realpath(path), os.path.realpath(root)
    return path == root or path.startswith(root + os.sep)


def _build_dir():
    """The meson build dir: WEIR_BIN is <build>/core/weir."""
    core = os.path.dirname(os.path.realpath(WEIR_BIN))
    build = os.path.dirname(core)
    if os.path.basename(core) != "core" or not os.path.isfile(
            os.path.join(build, "meson-private", "coredata.dat")):
        pytest.fail("cannot find the meson build dir from WEIR_BIN=%s (expected <build>/core/weir "
                    "with <build>/meson-private)" % WEIR_BIN)
    return build


def _clean_env(**extra):
    env = dict(os.environ)
    # nothing from the caller's environment may add include paths or flags
    for k in ("CPATH", "C_INCLUDE_PATH", "CPLUS_INCLUDE_PATH", "CFLAGS", "CPPFLAGS",
              "PKG_CONFIG_PATH", "PKG_CONFIG_LIBDIR", "PKG_CONFIG_SYSROOT_DIR", "DESTDIR"):
        env.pop(k, None)
    env.update(extra)
    return env


def _run(cmd, **kw):
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Install the build tree into DESTDIR, build the example against it.
    Returns a dict with root, so (the module path), cflags."""
    for tool in ("meson", "cc", "pkg-config", "nm"):
        if not shutil.which(tool):
            pytest.fail("%s is not on PATH: it is part of weir's build requirements" % tool)
    build = _build_dir()
    root = str(tmp_path_factory.mktemp("destdir"))
    out = _run(["meson", "install", "-C", build, "--no-rebuild", "--destdir", root],
               env=_clean_env())
    assert out.returncode == 0, "meson install failed:\n%s\n%s" % (out.stdout, out.stderr)

    pcs = []
    for d, _, files in os.walk(root):
        if "weir-module.pc" in files:
            pcs.append(os.path.join(d, "weir-module.pc"))
    assert len(pcs) == 1, "expected one installed weir-module.pc under %s, found %r" % (root, pcs)
    pcdir = os.path.dirname(pcs[0])
    assert os.path.basename(pcdir) == "pkgconfig", pcs
    # PKG_CONFIG_PATH only, as the README says (_clean_env drops any
    # PKG_CONFIG_SYSROOT_DIR); LIBDIR keeps the system's .pc files out
    env = _clean_env(PKG_CONFIG_PATH=pcdir, PKG_CONFIG_LIBDIR=pcdir)

    out = _run(["pkg-config", "--cflags", "weir-module"], env=env)
    assert out.returncode == 0, out.stderr
    cflags = shlex.split(out.stdout)
    incs = [f[2:] for f in cflags if f.startswith("-I")]
    assert incs, "weir-module.pc gives no -I: %r" % out.stdout
    for inc in incs:
        assert _inside(inc, root), "include path %s is outside the install root %s" % (inc, root)
        assert os.path.isfile(os.path.join(inc, "weir", "module.h")), inc
    for f in cflags:
        for tree in (SOURCE_ROOT, build):
            assert os.path.realpath(tree) not in f or _inside(f[2:], root), \
                "the source or build tree leaks into the flags: %r" % f

    # the module source, copied out of the checkout
    src = str(tmp_path_factory.mktemp("example_src"))
    shutil.copy(os.path.join(EXAMPLE_DIR, "response_header.c"), src)
    out = _run(["sh", "-c", BUILD_LINE], cwd=src, env=env)
    assert out.returncode == 0, "%s failed:\n%s%s" % (BUILD_LINE, out.stdout, out.stderr)
    so = os.path.join(src, "response_header.so")
    assert os.path.isfile(so)

    # which weir/module.h did that compile read? (same flags, -M lists headers)
    out = _run(["sh", "-c", "cc -M $(pkg-config --cflags weir-module) response_header.c"],
               cwd=src, env=env)
    assert out.returncode == 0, out.stderr
    deps = [os.path.join(src, d) for d in out.stdout.replace("\\\n", " ").split()[1:]]
    mod_h = [d for d in deps if d.endswith(os.path.join("weir", "module.h"))]
    assert len(mod_h) == 1 and _inside(mod_h[0], root), \
        "weir/module.h came from %r, not from the install root %s" % (mod_h, root)
    assert not [d for d in deps if _inside(d, SOURCE_ROOT) and not _inside(d, root)], deps

    # only the descriptor is exported
    out = _run(["nm", "-D", "--defined-only", so])
    assert out.returncode == 0, out.stderr
    syms = [ln.split()[-1] for ln in out.stdout.splitlines() if ln.strip()]
    assert syms == ["weir_module"], syms
    return {"root": root, "so": so, "src": src, "pc": pcs[0]}


def test_pc_is_relocatable(built, tmp_path):
    """The installed .pc holds no absolute path of the prefix: the same files
    moved to another root give that root's include dir."""
    root, pc = built["root"], built["pc"]
    text = open(pc).read()
    assert "${pcfiledir}" in text, text
    # logdir is the system's log directory the binary has compiled in (the
    # accesslog default), not a path of the installed tree: it stays absolute
    absolute = [ln for ln in re.findall(r"^\w+=/.*$", text, re.M) if not ln.startswith("logdir=")]
    assert not absolute, "an absolute path in the .pc:\n" + text
    assert re.search(r"^logdir=/", text, re.M), text
    moved = tmp_path / "moved"
    rel_pc = os.path.relpath(pc, root)
    inc = [d for d, _, files in os.walk(root) if "module.h" in files and d.endswith("weir")]
    assert len(inc) == 1, inc
    shutil.copytree(inc[0], moved / os.path.relpath(inc[0], root))
    os.makedirs(os.path.dirname(moved / rel_pc))
    shutil.copy(pc, moved / rel_pc)
    pcdir = os.path.dirname(str(moved / rel_pc))
    out = _run(["pkg-config", "--cflags", "weir-module"],
               env=_clean_env(PKG_CONFIG_PATH=pcdir, PKG_CONFIG_LIBDIR=pcdir))
    assert out.returncode == 0, out.stderr
    incs = [f[2:] for f in shlex.split(out.stdout) if f.startswith("-I")]
    assert len(incs) == 1 and _inside(incs[0], str(moved)), (incs, out.stdout)
    assert os.path.isfile(os.path.join(incs[0], "weir", "module.h")), incs
    out = _run(["pkg-config", "--variable=modulesdir", "weir-module"],
               env=_clean_env(PKG_CONFIG_PATH=pcdir, PKG_CONFIG_LIBDIR=pcdir))
    assert out.returncode == 0 and _inside(out.stdout.strip(), str(moved)), out.stdout


def _modules(built):
    return ["router", "lb_roundrobin", {"name": "response_header", "path": built["so"]}]


def test_header_rendered_and_per_route(weir, backend, built):
    b = backend()
    # the origin sends its own X-Example on /own/: the module's value replaces it
    b.on("/own/", raw_handler(b"HTTP/1.1 200 OK\r\nX-Example: from-origin\r\n"
                              b"Content-Length: 2\r\nConnection: close\r\n\r\nok"))
    w = weir()
    cfg = w.config(
        upstreams={"b": {"servers": [b.addr]}},
        routes=[
            {"path": "/api/", "upstream": "b",
             "example_header": {"name": "X-Api", "value": "api $request_uri via $upstream_addr"}},
            {"path": "/quiet/", "upstream": "b", "example_header": None},
            {"path": "/", "upstream": "b"},
        ],
        modules=_modules(built),
        example_header={"name": "X-Example", "value": "served by $upstream_addr for $host"})
    w.start(cfg)

    # inherited from the top level, variables rendered per request
    r = get(w.port, "/page", host="Shop.Example:8080")
    assert r.status == 200, r
    assert r.headers.get_all("x-example") == ["served by %s for shop.example" % b.addr], r.headers

    r = get(w.port, "/own/x", host="other.test")
    assert r.status == 200 and r.body == b"ok", r
    assert r.headers.get_all("x-example") == ["served by %s for other.test" % b.addr], r.headers

    # a route's own value: different name and template, the top-level one not added
    r = get(w.port, "/api/v1?q=1")
    assert r.status == 200, r
    assert r.headers.get("x-api") == "api /api/v1?q=1 via %s" % b.addr, r.headers
    assert not r.headers.has("x-example"), r.headers

    # `example_header: null` switches the inherited header off on that route
    r = get(w.port, "/quiet/z")
    assert r.status == 200, r
    assert not r.headers.has("x-example") and not r.headers.has("x-api"), r.headers

    # a response header only: the upstream request did not carry it
    assert b.requests and not any(q.headers.has("x-example") or q.headers.has("x-api")
                                  for q in b.requests)
    # the module logged with its own name from conf_done
    assert re.search(r"response_header: adding a response header on 2 of 3 routes", w.log()), \
        w.log()


def test_config_errors_at_file_line_col(weir, built, tmp_path):
    so = built["so"]
    text = "\n".join([
        "workers: 1",
        "error_log: {path: stderr, level: info}",
        "modules:",
        "  - router",
        "  - lb_roundrobin",
        "  - {name: response_header, path: %s}" % so,
        "listeners:",
        "  - address: 127.0.0.1:%d" % free_port(),
        "example_header: {name: X-Example, value: \"v $no_such_var\"}",
        "upstreams:",
        "  b: {servers: [127.0.0.1:9]}",
        "routes:",
        "  - path: /a/",
        "    upstream: b",
        "    example_header: {name: \"X Bad\", value: ok}",
        "  - path: /b/",
        "    upstream: b",
        "    example_header: {name: X-B, valu: ok}",
        "  - path: /c/",
        "    upstream: b",
        "    example_header: X-Just-A-String",
        "",
    ])
    conf = tmp_path / "weir.yaml"
    conf.write_text(text)
    lines = text.split("\n")

    def pos(lineno, needle):
        """file:line:col of needle on 1-based line lineno."""
        col = lines[lineno - 1].index(needle) + 1
        return "%s:%d:%d" % (conf, lineno, col)

    want = [
        # the template compiler, at the variable inside the value
        (pos(9, '$no_such_var'), "unknown variable '$no_such_var'"),
        # the module's parser, at the offending nodes
        (pos(15, '"X Bad"'), "example_header: invalid character ' ' in header name 'X Bad'"),
        (pos(18, "valu"), "example_header: unknown key 'valu' (expected name or value)"),
        (pos(18, "{name"), "example_header: missing 'value'"),
        (pos(21, "X-Just"), "example_header: expected a mapping"),
    ]

    out = subprocess.run([WEIR_BIN, "-t", "-c", str(conf), "-M", MODULES_DIR],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    for where, msg in want:
        hits = [ln for ln in out.stderr.splitlines() if ln.startswith(where + ": ")]
        assert any(msg in ln for ln in hits), "no '%s: ...%s' in:\n%s" % (where, msg, out.stderr)

    # a normal start with the same file refuses too, with the same messages
    w = weir("run")
    w.conf_path = str(conf)
    w.start(wait=False, args=["-p", str(tmp_path / "weir.pid")])   # not the system's pid file
    rc = w.wait_exit(15)
    assert rc not in (None, 0), (rc, w.log())
    assert pos(15, '"X Bad"') + ": example_header: invalid character" in w.log(), w.log()


def test_example_readme_build_line_matches():
    """The README of the example gives the very build line this test runs."""
    with open(os.path.join(EXAMPLE_DIR, "README.md")) as f:
        readme = f.read()
    assert BUILD_LINE in readme
    with open(os.path.join(EXAMPLE_DIR, "response_header.c")) as f:
        src = f.read()
    includes = re.findall(r"^\s*#\s*include\s*[<\"]([^>\"]+)[>\"]", src, re.M)
    assert "weir/module.h" in includes
    # only the public header and the C library: nothing from core/
    assert all(i == "weir/module.h" or "/" not in i for i in includes), includes
