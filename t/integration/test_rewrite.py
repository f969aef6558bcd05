"""Module rewrite (SPEC §7): `rewrite: "REGEX REPLACEMENT"` (or a list, first match
applies) with $1..$9 and variables, the query kept unless the replacement sets one;
`redirect: {status, location}` answers directly, with no upstream needed; config
errors with file:line:col."""

import os
import subprocess

import pytest

from conftest import MODULES_DIR, WEIR_BIN, free_port, get

MODULES = ["router", "lb_roundrobin", "rewrite"]


def _proxy(weir, backend, routes, **extra):
    """weir with upstream 'b' (an echo backend); routes without 'upstream' and
    without 'redirect' get upstream 'b'."""
    b = backend("b", mode="echo")
    for r in routes:
        if "redirect" not in r:
            r.setdefault("upstream", "b")
    w = weir()
    w.start(w.config(upstreams={"b": {"balancer": "roundrobin", "servers": [b.addr]}},
                     routes=routes, modules=MODULES, **extra))
    return w, b


def _seen(port, target, **kw):
    """The request the backend saw: (path, query, target)."""
    r = get(port, target, **kw)
    assert r.status == 200, r
    d = r.json()
    return d["path"], d["query"], d["target"]


def test_captures_reach_the_backend_and_query_is_kept(weir, backend):
    w, b = _proxy(weir, backend, [
        {"path": "/v1/", "rewrite": r"^/v1/(\w+)/(\d+)$ /api/$2/$1"},
    ])
    assert _seen(w.port, "/v1/users/42")[2] == "/api/42/users"          # no '?' added
    assert _seen(w.port, "/v1/users/42?a=1&b=2")[2] == "/api/42/users?a=1&b=2"
    assert _seen(w.port, "/v1/users/42?")[2] == "/api/42/users?"        # empty query kept
    assert len(b.requests) == 3


def test_query_replaced_when_the_replacement_sets_one(weir, backend):
    w, _ = _proxy(weir, backend, [
        {"path": "/search/", "rewrite": "^/search/(.*)$ /find?q=$1&from=$uri"},
        {"path": "/drop/", "rewrite": "^/drop/(.*)$ /dropped/$1?"},
    ])
    # the old query is replaced, not appended (nginx would append it)
    assert _seen(w.port, "/search/cats?page=2")[2] == "/find?q=cats&from=/search/cats"
    assert _seen(w.port, "/search/dogs")[2] == "/find?q=dogs&from=/search/dogs"
    # a trailing '?' drops the query: no '?' goes upstream (ABI 1.1: an empty
    # query unsets it)
    path, query, target = _seen(w.port, "/drop/x?secret=1")
    assert (path, query, target) == ("/dropped/x", "", "/dropped/x")
    assert _seen(w.port, "/drop/y")[2] == "/dropped/y"


def test_list_first_match_applies_and_no_match_leaves_the_path(weir, backend):
    w, _ = _proxy(weir, backend, [
        {"path": "/l/", "rewrite": [
            "^/l/a(.*)$ /first$1",
            "^/l/(.*)$ /second/$1",
            "^/l/ab /never",
        ]},
        {"path": "/n/", "rewrite": ["^/n/only$ /only", r"^/n/(\d+)$ /num/$1"]},
    ])
    assert _seen(w.port, "/l/abc")[2] == "/firstbc"       # rule 1, not 2 or 3
    assert _seen(w.port, "/l/zzz?k=v")[2] == "/second/zzz?k=v"
    assert _seen(w.port, "/n/7")[2] == "/num/7"
    assert _seen(w.port, "/n/other?x=1")[2] == "/n/other?x=1"   # nothing matched
    assert _seen(w.port, "/n/only/not")[2] == "/n/only/not"     # anchored rule


def test_variables_in_the_replacement(weir, backend):
    w, _ = _proxy(weir, backend, [
        {"path": "/v/", "rewrite": "^/v/(.*)$ /$host/$method/$1/${http_x_user}x?orig=$args&u=$1"},
    ])
    target = _seen(w.port, "/v/item?k=v", host="WWW.Example.test:81",
                   headers=[("X-User", "alice")])[2]
    assert target == "/www.example.test/GET/item/alicex?orig=k=v&u=item"
    # a variable that renders bytes a request line cannot carry is percent-encoded
    target = _seen(w.port, "/v/i", headers=[("X-User", "a b#c?d")])[2]
    assert target == "/test.local/GET/i/a%20b%23c%3Fdx?orig=&u=i"


def test_top_level_rules_are_inherited_and_can_be_switched_off(weir, backend):
    w, _ = _proxy(weir, backend, [
        {"path": "/inherit/"},
        {"path": "/own/", "rewrite": "^/own/(.*)$ /mine/$1"},
        {"path": "/off/", "rewrite": []},
    ], rewrite=["^/(inherit|off)/(.*)$ /top/$2"])
    assert _seen(w.port, "/inherit/a")[2] == "/top/a"
    assert _seen(w.port, "/own/a")[2] == "/mine/a"
    assert _seen(w.port, "/off/a")[2] == "/off/a"


def test_rendered_path_without_slash_is_500_and_logged(weir, backend):
    w, b = _proxy(weir, backend, [
        {"path": "/bad/", "rewrite": "^/bad/(.*)$ $1"},
    ])
    r = get(w.port, "/bad/foo")
    assert r.status == 500, r
    assert not b.requests
    log = w.log()
    assert "does not start with '/'" in log and '"foo"' in log, log
    # $1 that renders a '/' first is fine
    assert _seen(w.port, "/bad//ok")[2] == "/ok"


@pytest.mark.parametrize("status", [301, 302, 307, 308, None])
def test_redirect_status_and_location(weir, backend, status):
    redirect = {"location": "https://$host$request_uri"}
    if status is not None:
        redirect["status"] = status
    w, b = _proxy(weir, backend, [
        {"path": "/old/", "redirect": redirect},      # no upstream
        {"path": "/"},
    ])
    r = get(w.port, "/old/x/y?z=1&w=2", host="www.example.test:8080")
    assert r.status == (status or 302), r
    assert r.headers.get("location") == "https://www.example.test/old/x/y?z=1&w=2", r
    assert r.body == b"" and r.headers.get("content-length") == "0", r
    assert not b.requests
    assert get(w.port, "/elsewhere").status == 200     # the proxied route still works


def test_redirect_route_with_no_upstream_at_all(weir):
    w = weir()
    w.start(w.config(routes=[
        {"host": "old.test", "redirect": {"status": 301, "location": "https://new.test$uri"}},
        {"path": "/moved", "redirect": {"location": "/here"}},
    ], modules=MODULES))
    r = get(w.port, "/a/b?q", host="old.test")
    assert r.status == 301 and r.headers.get("location") == "https://new.test/a/b", r
    r = get(w.port, "/moved", host="x.test")
    assert r.status == 302 and r.headers.get("location") == "/here", r
    assert get(w.port, "/nothing", host="x.test").status == 404


def test_rewrite_runs_before_redirect(weir, backend):
    w, _ = _proxy(weir, backend, [
        {"path": "/r/", "rewrite": "^/r/(.*)$ /new/$1?n=$1",
         "redirect": {"status": 308, "location": "http://$host$uri?$args (was $request_uri)"}},
    ])
    r = get(w.port, "/r/page?old=1", host="h.test")
    assert r.status == 308, r
    assert r.headers.get("location") == "http://h.test/new/page?n=page (was /r/page?old=1)", r


# ---------------------------------------------------------------- config errors


def _check(tmp_path, route_lines, top_lines=()):
    """weir -t on a config whose routes start at line 12; returns (rc, output)."""
    lines = [
        "workers: 1",                                   # 1
        "pid_file: weir.pid",                           # 2
        "error_log: {path: stderr, level: info}",      # 3
        "modules: [router, lb_roundrobin, rewrite]",    # 4
        "listeners:",                                   # 5
        "  - address: 127.0.0.1:%d" % free_port(),     # 6
        "upstreams:",                                   # 7
        "  b: {balancer: roundrobin, servers: [127.0.0.1:9]}",   # 8
    ]
    lines += list(top_lines) + ["# pad"] * (3 - len(top_lines))   # 9..11
    lines += ["routes:"] + list(route_lines)             # 12..
    (tmp_path / "weir.yaml").write_text("\n".join(lines) + "\n")
    p = subprocess.run([WEIR_BIN, "-t", "-c", "weir.yaml", "-M", MODULES_DIR], cwd=str(tmp_path),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def _has(out, tail):
    """A line '<config file>:<tail>' (the file as given, or absolute)."""
    for ln in out.splitlines():
        ln = ln.strip()
        if ln.endswith(tail):
            head = ln[:len(ln) - len(tail)]
            if head == "weir.yaml:" or (head.endswith("/weir.yaml:") and os.path.isabs(head)):
                return True
    return False


def test_good_config_checks(tmp_path):
    rc, out = _check(tmp_path, [
        "  - path: /a/",                                        # 13
        "    upstream: b",                                      # 14
        '    rewrite: ["^/a/(.)(.)$ /$2/$1?x=${1}", "^/a /b"]', # 15
        "  - path: /r",                                         # 16
        "    redirect: {status: 307, location: 'https://$host$request_uri'}",
    ], top_lines=['rewrite: "^/top/(.*) /$1"'])
    assert rc == 0, out


def test_bad_regex_names_file_line_col(tmp_path):
    rc, out = _check(tmp_path, [
        "  - path: /a/",                      # 13
        "    upstream: b",                    # 14
        '    rewrite: "^/(a /x"',              # 15, value at column 14
    ])
    assert rc == 1, out
    assert _has(out, '15:14: rewrite "^/(a /x": invalid regex: missing closing parenthesis '
                     'at offset 4'), out


def test_capture_beyond_groups_and_other_rule_errors_all_reported(tmp_path):
    rc, out = _check(tmp_path, [
        "  - path: /a/",                      # 13
        "    upstream: b",                    # 14
        "    rewrite:",                       # 15
        '      - "^/a/(.*)$ /x/$1/$3"',       # 16: $3 with one group
        '      - "^/a/b"',                    # 17: no replacement
        '      - "^/a/c /d permanent"',       # 18: nginx flag
        '      - "^/a/(d) d/$1"',             # 19: no leading '/'
        '      - "^/a/(e) /$nosuchvar"',      # 20: unknown variable
        '      - "^/a/((f) /x"',              # 21: bad regex in a list
        "  - path: /r/",                      # 22
        "    redirect: {status: 303, location: /x}",          # 23: 303 at column 24
        "  - path: /s/",                      # 24
        "    redirect: {location: '/y/$1', code: 301}",       # 25
        "  - path: /t/",                      # 26
        "    redirect: {status: 301}",                        # 27
        "  - path: /u/",                      # 28
        "    upstream: b",                    # 29
        "    rewrite: {a: b}",                # 30
    ])
    assert rc == 1, out
    assert _has(out, '16:9: rewrite "^/a/(.*)$ /x/$1/$3": the replacement refers to $3 but the '
                     'regex has 1 capture group'), out
    assert _has(out, '17:9: rewrite "^/a/b": missing replacement after the regex; write '
                     '"REGEX REPLACEMENT"'), out
    assert _has(out, '18:9: rewrite "^/a/c /d permanent": unexpected "permanent" after the '
                     'replacement; a rule is "REGEX REPLACEMENT" (a replacement has no blanks; '
                     'for a redirect use the redirect: key)'), out
    assert _has(out, '19:9: rewrite "^/a/(d) d/$1": the replacement must start with \'/\' (or '
                     'with a variable or capture that renders one)'), out
    # at the variable's own column inside the replacement
    assert "20:19: unknown variable '$nosuchvar'" in out, out
    assert _has(out, '21:9: rewrite "^/a/((f) /x": invalid regex: missing closing parenthesis '
                     'at offset 8'), out
    assert _has(out, "23:24: redirect: status 303 is not a redirect status (301, 302, 307 or "
                     "308)"), out
    assert "25:26: redirect: location \"/y/$1\" refers to a capture group" in out, out
    assert _has(out, "25:35: redirect: unknown key 'code' (expected status, location)"), out
    assert _has(out, "27:15: redirect: missing location"), out
    assert _has(out, '30:14: rewrite: expected "REGEX REPLACEMENT" or a list of them'), out
