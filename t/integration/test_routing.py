"""Module router (SPEC §7): host exact > wildcard > hostless; exact path > longest
prefix > regexes in config order; methods; 404 when nothing matches."""

import pytest

from conftest import get


def _setup(weir, backend, routes):
    """One id-backend per distinct route name; route dicts carry 'name'."""
    bs = {}
    ups = {}
    for r in routes:
        n = r["name"]
        if n not in bs:
            bs[n] = backend(n, mode="id")
            ups[n] = {"balancer": "roundrobin", "servers": [bs[n].addr]}
        r["upstream"] = n
    w = weir()
    w.start(w.config(upstreams=ups, routes=routes))
    return w, bs


def _who(port, path, host="x.test", method="GET"):
    r = get(port, path, host=host, method=method)
    return r.body.decode("latin-1") if r.status == 200 else r.status


def test_host_exact_beats_wildcard_beats_hostless(weir, backend):
    w, _ = _setup(weir, backend, [
        # listed least specific first: config order must not decide
        {"name": "nohost", "path": "/"},
        {"name": "wild", "host": "*.example.test", "path": "/"},
        {"name": "exact", "host": "www.example.test", "path": "/"},
        {"name": "list", "host": ["a.list.test", "b.list.test"], "path": "/"},
    ])
    assert _who(w.port, "/", "www.example.test") == "exact"
    assert _who(w.port, "/", "foo.example.test") == "wild"
    assert _who(w.port, "/", "deep.sub.example.test") == "wild"   # nginx-style "*." suffix
    assert _who(w.port, "/", "example.test") == "nohost"          # "*.x" needs a label
    assert _who(w.port, "/", "other.test") == "nohost"
    assert _who(w.port, "/", "a.list.test") == "list"
    assert _who(w.port, "/", "b.list.test") == "list"
    assert _who(w.port, "/", "c.list.test") == "nohost"


def test_host_port_and_case_ignored(weir, backend):
    # $host as nginx defines it: lowercase, without the port
    w, _ = _setup(weir, backend, [
        {"name": "nohost", "path": "/"},
        {"name": "exact", "host": "www.example.test", "path": "/"},
    ])
    assert _who(w.port, "/", "www.example.test:8080") == "exact"
    assert _who(w.port, "/", "WWW.Example.TEST") == "exact"


def test_route_with_host_beats_longer_hostless_prefix(weir, backend):
    w, _ = _setup(weir, backend, [
        {"name": "hostless_long", "path": "/special/deep/"},
        {"name": "hosted", "host": "h.test", "path": "/"},
    ])
    assert _who(w.port, "/special/deep/x", "h.test") == "hosted"
    assert _who(w.port, "/special/deep/x", "other.test") == "hostless_long"


def test_path_exact_prefix_regex_precedence(weir, backend):
    w, _ = _setup(weir, backend, [
        # regexes first in config: prefixes still win when they match
        {"name": "re_ab", "path": "~^/a/b/c"},
        {"name": "re_r_digits", "path": "~^/r[0-9]+$"},
        {"name": "re_r1", "path": "~^/r1"},
        {"name": "pa", "path": "/a"},
        {"name": "pab", "path": "/a/b/"},
        {"name": "exact_a", "path": "=/a"},
    ])
    assert _who(w.port, "/a") == "exact_a"              # exact beats prefix
    assert _who(w.port, "/a?x=1") == "exact_a"          # query is not part of the path
    assert _who(w.port, "/a/") == "pa"
    assert _who(w.port, "/ab") == "pa"                  # prefix is a string prefix
    assert _who(w.port, "/a/b") == "pa"
    assert _who(w.port, "/a/b/") == "pab"               # longest prefix
    assert _who(w.port, "/a/b/c") == "pab"              # prefix beats an earlier regex
    assert _who(w.port, "/r12") == "re_r_digits"        # regexes: config order
    assert _who(w.port, "/r1x") == "re_r1"
    assert _who(w.port, "/nothing") == 404


def test_methods(weir, backend):
    w, bs = _setup(weir, backend, [
        {"name": "get", "path": "/m", "methods": ["GET"]},
        {"name": "post", "path": "/m", "methods": ["POST", "PUT"]},
    ])
    assert _who(w.port, "/m", method="GET") == "get"
    assert _who(w.port, "/m", method="POST") == "post"
    assert _who(w.port, "/m", method="PUT") == "post"
    assert _who(w.port, "/m", method="DELETE") == 404
    assert not [r for b in bs.values() for r in b.requests if r.method == "DELETE"]


def test_404_when_no_route(weir, backend):
    w, bs = _setup(weir, backend, [
        {"name": "only", "host": "only.test", "path": "/app/"},
    ])
    r = get(w.port, "/app/x", host="else.test")
    assert r.status == 404, r
    r = get(w.port, "/other", host="only.test")
    assert r.status == 404, r
    assert _who(w.port, "/app/x", "only.test") == "only"
    assert len(bs["only"].requests) == 1


def test_many_prefix_routes(weir, backend):
    # 2,000 prefix routes load and route correctly (cost is benchmarked elsewhere)
    routes = [{"name": "r%d" % i, "path": "/p%d/" % i} for i in range(2000)]
    b = backend("many", mode="echo")
    w = weir()
    for r in routes:
        r["upstream"] = "u"
        del r["name"]
    w.start(w.config(upstreams={"u": {"balancer": "roundrobin", "servers": [b.addr]}},
                     routes=routes))
    for i in (0, 1, 999, 1999):
        r = get(w.port, "/p%d/x" % i)
        assert r.status == 200 and r.json()["path"] == "/p%d/x" % i, r
    assert get(w.port, "/p2000/x").status == 404


@pytest.mark.parametrize("path", ["/a/../b", "/a/%2e%2e/b"])
def test_dot_segments_do_not_escape_prefix(weir, backend, path):
    # route /b/ must not be reachable from /a/... by dot segments, and /a/ route
    # must see a path it can trust.  Accept 400 (refused) or routing by the
    # normalised path (nginx normalises "/a/../b" to "/b").
    w, bs = _setup(weir, backend, [
        {"name": "a", "path": "/a/"},
        {"name": "b", "path": "/b"},
    ])
    who = _who(w.port, path)
    assert who in ("b", 400, 404), who


def test_dot_segments_above_root_refused(weir, backend):
    # ".." that climbs above "/" has no normalised form: 400, never forwarded
    w, bs = _setup(weir, backend, [{"name": "a", "path": "/"}])
    assert _who(w.port, "/../etc/passwd") == 400
