"""The module host seen from a real module (t/modules/suspend.c): a handler
that suspends and is resumed from a module timer, a handler that answers,
a directive, per-request context, and a shared memory zone that every worker
counts into."""
import os

import pytest

from conftest import get

TEST_MODULES = os.environ.get("WEIR_TEST_MODULES") or os.path.join(
    os.path.dirname(os.environ.get("WEIR_MODULES_DIR", "build/modules")), "t", "modules")


def _suspend_so():
    path = os.path.join(TEST_MODULES, "suspend.so")
    if not os.path.exists(path):
        pytest.fail("test module not built: %s" % path)  # a build problem, never a skip
    return path


def _start(weir, backend, workers=1, extra=None):
    b = backend()
    w = weir()
    cfg = w.config(upstreams={"b": {"servers": [b.addr]}}, routes=[{"path": "/", "upstream": "b"}],
                   workers=workers,
                   modules=["router", "lb_roundrobin", {"name": "suspend", "path": _suspend_so()}],
                   **(extra or {}))
    w.start(cfg)
    return w, b


def test_suspend_resume_from_timer(weir, backend):
    w, b = _start(weir, backend, extra={"suspend_ms": "200ms"})
    r = get(w.port, "/x")
    assert r.status == 200, r
    assert r.headers.get("x-client") == "127.0.0.1", r.headers
    waited = int(r.headers.get("x-suspended"))
    assert waited >= 150, r.headers      # the request really waited for the timer
    assert any(q.path == "/x" for q in b.requests)


def test_handler_answers_without_upstream(weir, backend):
    w, b = _start(weir, backend)
    r = get(w.port, "/deny")
    assert r.status == 403, r
    assert r.body == b"denied by suspend\n"
    assert not [q for q in b.requests if q.path == "/deny"]


def test_shared_zone_counts_across_workers(weir, backend):
    w, b = _start(weir, backend, workers=2, extra={"suspend_ms": "1ms"})
    w.wait_workers(2)
    counts = set()
    for i in range(40):
        r = get(w.port, "/c%d" % i)       # a new connection each: both workers serve
        assert r.status == 200, r
        counts.add(int(r.headers.get("x-count")))
    # one counter in shared memory: 40 distinct values 1..40 whatever the worker
    assert counts == set(range(1, 41)), sorted(counts)


def test_phase_chain_printed(weir, backend, tmp_path):
    import subprocess
    from conftest import WEIR_BIN, MODULES_DIR
    w, b = _start(weir, backend)
    out = subprocess.run([WEIR_BIN, "-t", "-c", w.conf_path, "-M", MODULES_DIR],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert "access: suspend.pause" in out.stdout, out.stdout
    assert "upstream_response: suspend.tag" in out.stdout, out.stdout


def test_error_page_template(weir, backend, tmp_path):
    import re
    page = tmp_path / "err.html"
    page.write_text("<p>{{status}} {{reason}} id={{request_id}}</p>\n")
    b = backend()
    w = weir()
    w.start(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/only/", "upstream": "b"}], error_page=str(page)))
    r1 = get(w.port, "/nothing")
    r2 = get(w.port, "/nothing")
    assert r1.status == 404, r1
    m1 = re.fullmatch(rb"<p>404 Not Found id=([0-9a-f]{32})</p>\n", r1.body)
    m2 = re.fullmatch(rb"<p>404 Not Found id=([0-9a-f]{32})</p>\n", r2.body)
    assert m1 and m2, (r1.body, r2.body)
    assert m1.group(1) != m2.group(1)      # a fresh id per request
