"""Module router (SPEC §7): host exact > wildcard > hostless; inside a host tier
nginx's location order (exact path; else the longest prefix, which wins if it is
"^~"; else the first regex in config order; else that prefix); methods, with 405
and Allow when only other methods have a route; 404 when nothing matches; the
config errors of duplicate routes and of routes nothing answers."""

import pytest

from conftest import get
from test_config import base, check, has_line


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
    assert _who(w.port, "/a/b/c") == "re_ab"            # a matching regex beats it (nginx)
    assert _who(w.port, "/a/b/d") == "pab"              # no regex: the longest prefix
    assert _who(w.port, "/r12") == "re_r_digits"        # regexes: config order
    assert _who(w.port, "/r1x") == "re_r1"
    assert _who(w.port, "/nothing") == 404


def test_regex_beats_catch_all(weir, backend):
    # the issue: a regex could never win next to a default route
    w, _ = _setup(weir, backend, [
        {"name": "default", "path": "/"},
        {"name": "php", "path": "~\\.php$"},
        {"name": "images", "path": "~*\\.(png|jpe?g)$"},
    ])
    assert _who(w.port, "/index.php") == "php"
    assert _who(w.port, "/a/b/pic.JPG") == "images"     # "~*" is caseless
    assert _who(w.port, "/index.PHP") == "default"      # "~" is not
    assert _who(w.port, "/other") == "default"


def test_caret_tilde_prefix_stops_regexes(weir, backend):
    w, _ = _setup(weir, backend, [
        {"name": "default", "path": "/"},
        {"name": "static", "path": "^~/static/"},
        {"name": "inner", "path": "/static/inner/"},
        {"name": "images", "path": "~*\\.png$"},
    ])
    assert _who(w.port, "/static/a.png") == "static"          # "^~" as the longest prefix
    assert _who(w.port, "/static/x") == "static"
    assert _who(w.port, "/static/inner/a.png") == "images"    # the longest is a plain prefix
    assert _who(w.port, "/static/inner/x") == "inner"
    assert _who(w.port, "/a.png") == "images"


def test_host_beats_hostless_at_every_step(weir, backend):
    w, _ = _setup(weir, backend, [
        {"name": "hostless_exact", "path": "=/e"},
        {"name": "hostless_regex", "path": "~\\.x$"},
        {"name": "hostless_default", "path": "/"},
        {"name": "host_prefix", "host": "h.test", "path": "/p/"},
        {"name": "host_regex", "host": "h.test", "path": "~^/r"},
    ])
    # a hostless regex does not take a request the host's prefix answers
    assert _who(w.port, "/p/a.x", "h.test") == "host_prefix"
    assert _who(w.port, "/p/a.x", "other.test") == "hostless_regex"
    # the host's regex beats the hostless exact path that does not match, and
    # the host tier falls back to the hostless routes for what it lacks
    assert _who(w.port, "/r.x", "h.test") == "host_regex"
    assert _who(w.port, "/e", "h.test") == "hostless_exact"
    assert _who(w.port, "/z", "h.test") == "hostless_default"


def test_methods(weir, backend):
    w, bs = _setup(weir, backend, [
        {"name": "get", "path": "/m", "methods": ["GET"]},
        {"name": "post", "path": "/m", "methods": ["POST", "PUT"]},
    ])
    assert _who(w.port, "/m", method="GET") == "get"
    assert _who(w.port, "/m", method="POST") == "post"
    assert _who(w.port, "/m", method="PUT") == "post"
    # the path has routes, none for DELETE: 405 with the methods it has
    r = get(w.port, "/m", method="DELETE")
    assert r.status == 405, r
    assert r.headers.get("Allow") == "GET, POST, PUT", r
    assert not [r for b in bs.values() for r in b.requests if r.method == "DELETE"]


def test_method_mismatch_falls_back_to_shorter_prefix(weir, backend):
    w, _ = _setup(weir, backend, [
        {"name": "default", "path": "/"},
        {"name": "writes", "path": "/api/", "methods": ["POST"]},
    ])
    assert _who(w.port, "/api/x", method="POST") == "writes"
    assert _who(w.port, "/api/x", method="GET") == "default"    # "/" takes any method


def test_404_when_no_route(weir, backend):
    w, bs = _setup(weir, backend, [
        {"name": "only", "host": "only.test", "path": "/app/"},
    ])
    r = get(w.port, "/app/x", host="else.test")
    assert r.status == 404, r
    r = get(w.port, "/other", host="only.test")
    assert r.status == 404, r
    assert r.headers.get("Allow") is None, r
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


# ------------------------------------------------------------ config errors

UPSTREAM_TAIL = [
    "upstreams:",
    "  u: {balancer: roundrobin, servers: [127.0.0.1:9001]}",
]


def test_duplicate_route_is_an_error(tmp_path):
    lines = base() + [
        "routes:",                                              # 11
        "  - name: first",                                      # 12
        "    host: [B.test, a.test]",                           # 13
        "    path: /api/",                                      # 14
        "    methods: [GET, POST]",                             # 15
        "    upstream: u",                                      # 16
        "  - name: second",                                     # 17
        "    host: [a.test, b.test]",                           # 18
        "    path: ^~/api/",                                    # 19
        "    methods: [POST, GET]",                             # 20
        "    upstream: u",                                      # 21
        "  - {name: overlap, host: [a.test, b.test], path: /api/, methods: [GET], upstream: u}",
        "  - {name: third, path: /, upstream: u}",              # 23
        "  - {upstream: u}",                                    # 24: also "/"
    ] + UPSTREAM_TAIL
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    names = ("weir.yaml", str(tmp_path / "weir.yaml"))
    assert any(has_line(both, tmp_path,
                        "17:5: route 'second' has the same host, path and methods as route "
                        "'first' (%s:12:5), which always wins: remove one, or change its host, "
                        "path or methods (methods lists that overlap but differ are allowed: "
                        "the first route takes the methods both name)" % n) for n in names), both
    assert any(has_line(both, tmp_path,
                        "24:5: route 'route5' has the same host, path and methods as route "
                        "'third' (%s:23:5), which always wins: remove one, or change its host, "
                        "path or methods (methods lists that overlap but differ are allowed: "
                        "the first route takes the methods both name)" % n) for n in names), both
    # overlapping methods are not a duplicate
    assert "'overlap'" not in both, both


def test_route_nothing_answers_is_an_error(tmp_path):
    lines = base(modules=("router", "lb_roundrobin", "rewrite")) + [
        "routes:",                                              # 11
        "  - path: /api/",                                      # 12
        "    upstream: u",                                      # 13
        "  - name: orphan",                                     # 14
        "    path: /orphan/",                                   # 15
        "  - name: moved",                                      # 16: answered by rewrite
        "    path: /old/",                                      # 17
        "    redirect: {status: 301, location: /new/}",        # 18
    ] + UPSTREAM_TAIL
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert has_line(both, tmp_path,
                    "14:5: route 'orphan' has no upstream and no module answers it: add "
                    "`upstream: NAME`, a `redirect:` (module rewrite) or `metrics: true` "
                    "(module metrics)"), both
    assert "'moved'" not in both, both
    # without the orphan the same config loads: the redirect route needs no upstream
    rc, out, err = check(tmp_path, "\n".join(lines[:13] + lines[15:]) + "\n")
    assert rc == 0, out + err
