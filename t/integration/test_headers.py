"""Module headers (SPEC §7): request_headers / response_headers with set, add and
remove, at the top level and per route; variables in values; X-Forwarded-For;
hop-by-hop rules that stay the core's; config refusals with file:line:col."""

import subprocess

from conftest import MODULES_DIR, WEIR_BIN, Headers, free_port, get, raw_request

MODULES = ["router", "lb_roundrobin", "headers"]


def _resp_handler(extra):
    """A backend handler answering 200 with the given header lines and a body."""
    def fn(ctx, req):
        body = b"hello"
        lines = ["HTTP/1.1 200 OK", "Content-Length: %d" % len(body)]
        lines += ["%s: %s" % kv for kv in extra]
        ctx.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        return True
    return fn


def _start(weir, backend, routes=None, **extra):
    b = backend("b1", mode="auto")
    b.on("/resp", _resp_handler([("X-Up", "up"), ("Server", "pyback"), ("X-Dup", "a"),
                                 ("X-Dup", "b"), ("X-Keep", "kept")]))
    w = weir()
    if routes is None:
        routes = [{"path": "/"}]
    for r in routes:
        r.setdefault("upstream", "u")
    w.start(w.config(upstreams={"u": {"balancer": "roundrobin", "servers": [b.addr]}},
                     routes=routes, modules=MODULES, **extra))
    return w, b


def _seen(r):
    """Headers the backend saw, from its JSON echo."""
    assert r.status == 200, r
    return Headers((n, v) for n, v in r.json()["headers"])


def _names(headers):
    return [n.lower() for n, _ in headers]


# ------------------------------------------------------------------ requests


def test_request_set_add_remove(weir, backend):
    w, b = _start(weir, backend, request_headers={
        "set": {"X-Set": "fixed", "X-Over": "ours"},
        "add": {"X-Add": ["one", "two"], "X-Over": "also"},
        "remove": ["X-Drop", "X-Absent"],
    })
    r = get(w.port, "/echo", headers=[("X-Over", "theirs"), ("X-Drop", "d"),
                                      ("X-Add", "client"), ("X-Other", "o")])
    h = _seen(r)
    assert h.get_all("X-Set") == ["fixed"]
    # remove, then set (replaces the client's), then add (appends)
    assert h.get_all("X-Over") == ["ours", "also"]
    assert h.get_all("X-Add") == ["client", "one", "two"]
    assert not h.has("X-Drop")
    assert h.get("X-Other") == "o"
    # the rest of the request is untouched
    doc = r.json()
    assert doc["path"] == "/echo" and doc["method"] == "GET"
    assert h.get("Host") == "test.local"


def test_request_rules_with_body_keep_framing(weir, backend):
    w, b = _start(weir, backend, request_headers={"set": {"X-Set": "1"}})
    r = get(w.port, "/echo", method="POST", body=b"x" * 1000)
    doc = r.json()
    assert doc["body_len"] == 1000 and doc["framing"] == "content-length"
    h = _seen(r)
    assert h.get_all("Content-Length") == ["1000"] and h.get("X-Set") == "1"


# ----------------------------------------------------------------- responses


def test_response_set_add_remove(weir, backend):
    w, b = _start(weir, backend, response_headers={
        "set": {"Server": "weir-test", "X-Dup": "merged"},
        "add": {"X-Extra": ["e1", "e2"]},
        "remove": ["X-Up"],
    })
    r = get(w.port, "/resp")
    assert r.status == 200 and r.body == b"hello", r
    assert r.headers.get_all("Server") == ["weir-test"]
    assert r.headers.get_all("X-Dup") == ["merged"]
    assert r.headers.get_all("X-Extra") == ["e1", "e2"]
    assert not r.headers.has("X-Up")
    assert r.headers.get("X-Keep") == "kept"
    assert r.headers.get_all("Content-Length") == ["5"]
    # response rules leave the request alone and vice versa
    h = _seen(get(w.port, "/echo"))
    assert not h.has("X-Extra")


def test_response_rules_apply_to_every_upstream_status(weir, backend):
    w, b = _start(weir, backend, response_headers={"add": {"X-Resp": "r"}})
    b.on("/missing", lambda ctx, req: ctx.send(
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno") or True)
    r = get(w.port, "/missing")
    assert r.status == 404 and r.body == b"no", r
    assert r.headers.get("X-Resp") == "r"


# --------------------------------------------------------------- inheritance


def test_route_override_and_top_level_inheritance(weir, backend):
    w, b = _start(weir, backend, routes=[
        {"path": "/inherit/"},
        {"path": "/override/", "request_headers": {"set": {"X-Level": "route"},
                                                   "add": {"X-Only-Route": "yes"}}},
        {"path": "/off/", "request_headers": {}, "response_headers": {}},
        {"path": "/ronly/", "response_headers": {"add": {"X-Resp": "route"}}},
    ], request_headers={"set": {"X-Level": "top", "X-Top": "t"}},
        response_headers={"add": {"X-Resp": "top"}})

    r = get(w.port, "/inherit/x")
    h = _seen(r)
    assert h.get_all("X-Level") == ["top"] and h.get("X-Top") == "t"
    assert r.headers.get_all("X-Resp") == ["top"]

    # a route's own value replaces the top-level value as a whole
    r = get(w.port, "/override/x")
    h = _seen(r)
    assert h.get_all("X-Level") == ["route"] and h.get("X-Only-Route") == "yes"
    assert not h.has("X-Top")
    assert r.headers.get_all("X-Resp") == ["top"]      # response_headers still inherited

    # an empty value on the route turns the top-level rules off there
    r = get(w.port, "/off/x")
    h = _seen(r)
    assert not h.has("X-Level") and not h.has("X-Top")
    assert not r.headers.has("X-Resp")

    r = get(w.port, "/ronly/x")
    h = _seen(r)
    assert h.get_all("X-Level") == ["top"]              # request_headers inherited
    assert r.headers.get_all("X-Resp") == ["route"]


# ----------------------------------------------------------------- variables


def test_variables_in_values(weir, backend):
    w, b = _start(weir, backend, routes=[{"name": "named", "path": "/"}], request_headers={
        "set": {"X-Host": "$host", "X-Addr": "$remote_addr", "X-Route": "$route",
                "X-Foo-Copy": "[$http_x_foo]", "X-Upstream": "${upstream}!",
                "X-Dollar": "cost: $$5"},
        "add": {"X-Missing": "$http_x_not_sent"},
    }, response_headers={
        "add": {"X-Status": "$status", "X-Up-Copy": "$sent_http_x_up",
                "X-Req-Foo": "$http_x_foo"},
    })
    r = get(w.port, "/resp", host="Example.TEST:8080", headers=[("X-Foo", "bar")])
    assert r.status == 200, r
    assert r.headers.get("X-Status") == "200"
    assert r.headers.get("X-Up-Copy") == "up"
    assert r.headers.get("X-Req-Foo") == "bar"

    r = get(w.port, "/echo", host="Example.TEST:8080", headers=[("X-Foo", "bar")])
    h = _seen(r)
    assert h.get("X-Host") == "example.test"            # $host: lowercased, no port
    assert h.get("Host") == "Example.TEST:8080"         # the Host itself passes through
    assert h.get("X-Addr") == "127.0.0.1"
    assert h.get("X-Route") == "named"
    assert h.get("X-Foo-Copy") == "[bar]"
    assert h.get("X-Upstream") == "u!"
    assert h.get("X-Dollar") == "cost: $5"
    # an unset variable renders empty, and an empty value sends no header
    assert not h.has("X-Missing")


def test_values_render_before_any_rule_runs(weir, backend):
    # set X-Copy from X-Orig while removing X-Orig: the value is the incoming one
    w, b = _start(weir, backend, request_headers={
        "remove": ["X-Orig"], "set": {"X-Copy": "$http_x_orig", "X-Spoof": "$http_x_none"}})
    h = _seen(get(w.port, "/echo", headers=[("X-Orig", "o1"), ("X-Spoof", "client")]))
    assert h.get("X-Copy") == "o1" and not h.has("X-Orig")
    # set with an empty rendering still removes the client's value
    assert not h.has("X-Spoof")


def test_x_forwarded_for_appends(weir, backend):
    w, b = _start(weir, backend, request_headers={
        "set": {"X-Forwarded-For": "$proxy_add_x_forwarded_for", "X-Real-IP": "$remote_addr"}})
    h = _seen(get(w.port, "/echo"))
    assert h.get_all("X-Forwarded-For") == ["127.0.0.1"]
    assert h.get("X-Real-IP") == "127.0.0.1"
    h = _seen(get(w.port, "/echo", headers=[("X-Forwarded-For", "203.0.113.5, 198.51.100.1")]))
    assert h.get_all("X-Forwarded-For") == ["203.0.113.5, 198.51.100.1, 127.0.0.1"]
    # several incoming fields are joined in order, as nginx does
    h = _seen(get(w.port, "/echo", headers=[("X-Forwarded-For", "203.0.113.5"),
                                            ("X-Forwarded-For", "198.51.100.1")]))
    assert h.get_all("X-Forwarded-For") == ["203.0.113.5, 198.51.100.1, 127.0.0.1"]


def test_host_set_by_a_rule_goes_upstream(weir, backend):
    """SPEC §6: the client's Host is passed through unless a header rule changes it."""
    w, b = _start(weir, backend, routes=[
        {"path": "/set/", "request_headers": {"set": {"Host": "internal.$host"}}},
        {"path": "/gone/", "request_headers": {"remove": ["Host"]}},
        {"path": "/"}])
    seen = _seen(get(w.port, "/set/x", host="shop.example"))
    assert seen.get_all("Host") == ["internal.shop.example"]
    # removing Host leaves the client's: HTTP/1.1 needs one
    assert _seen(get(w.port, "/gone/x", host="shop.example")).get_all("Host") == ["shop.example"]
    assert _seen(get(w.port, "/x", host="shop.example:8080")).get_all("Host") == ["shop.example:8080"]
    # absolute-form: the target's authority, unless a rule sets Host
    r = raw_request(w.port, b"GET http://abs.example/x HTTP/1.1\r\nHost: abs.example\r\n"
                            b"Connection: close\r\n\r\n")
    assert _seen(r).get_all("Host") == ["abs.example"]
    r = raw_request(w.port, b"GET http://abs.example/set/x HTTP/1.1\r\nHost: abs.example\r\n"
                            b"Connection: close\r\n\r\n")
    assert _seen(r).get_all("Host") == ["internal.abs.example"]


# ---------------------------------------------------------------- hop-by-hop


def test_hop_by_hop_rules_still_hold(weir, backend):
    w, b = _start(weir, backend, request_headers={
        "set": {"X-Other": "o"}, "add": {"X-Added": "a"}},
        response_headers={"add": {"X-Resp": "r"}})
    # a client's Connection still removes what it names, with rules active
    r = get(w.port, "/echo", headers=[("Connection", "X-Secret"), ("X-Secret", "s"),
                                      ("Keep-Alive", "timeout=5"), ("TE", "trailers"),
                                      ("Proxy-Connection", "keep-alive")])
    h = _seen(r)
    names = _names(h)
    for gone in ("x-secret", "keep-alive", "te", "proxy-connection"):
        assert gone not in names, h
    assert h.get("X-Other") == "o" and h.get("X-Added") == "a"
    assert "close" not in [v.lower() for v in h.get_all("Connection")]

    # and the upstream's hop-by-hop headers never reach the client
    r = get(w.port, "/hop")
    assert r.status == 200, r
    names = _names(r.headers)
    assert "x-bhop" not in names and "keep-alive" not in names
    assert r.headers.get("X-Kept") == "yes" and r.headers.get("X-Resp") == "r"


def test_rule_may_set_a_name_the_client_made_hop_by_hop(weir, backend):
    # Connection is per hop: the client's X-Secret is dropped, weir's own is sent
    w, b = _start(weir, backend, request_headers={"add": {"X-Secret": "from-weir"}})
    h = _seen(get(w.port, "/echo", headers=[("Connection", "X-Secret"), ("X-Secret", "s")]))
    assert h.get_all("X-Secret") == ["from-weir"]


# ------------------------------------------------------- weir's own answers


def test_own_answers_get_response_rules_only_with_always(weir, backend):
    # two dead upstreams: a failed connect marks a server down (then 503)
    dead, dead2 = ("127.0.0.1:%d" % free_port() for _ in range(2))
    b = backend("b1", mode="auto")
    w = weir()
    w.start(w.config(
        upstreams={"u": {"balancer": "roundrobin", "servers": [b.addr]},
                   "dead": {"balancer": "roundrobin", "servers": [dead], "retries": 0},
                   "dead2": {"balancer": "roundrobin", "servers": [dead2], "retries": 0}},
        routes=[{"path": "/app/", "upstream": "u"},
                {"path": "/dead/", "upstream": "dead",
                 "response_headers": {"add": {"X-Dead-Route": "d"}}},
                {"path": "/dead-always/", "upstream": "dead2",
                 "response_headers": {"add": {"X-Dead-Route": "d"}, "always": True}}],
        modules=MODULES,
        response_headers={"set": {"X-Always": "$status"}, "always": True}))
    # 404 from the router: no route, so the top-level rules (always) apply
    r = get(w.port, "/nothing")
    assert r.status == 404 and r.headers.get("X-Always") == "404", r
    # 502 on a route without always: no headers meant for the app's responses
    r = get(w.port, "/dead/x")
    assert r.status == 502 and not r.headers.has("X-Dead-Route"), r
    assert not r.headers.has("X-Always")
    r = get(w.port, "/dead-always/x")
    assert r.status == 502 and r.headers.get_all("X-Dead-Route") == ["d"], r
    # proxied responses get them once, not twice
    r = get(w.port, "/app/x")
    assert r.status == 200 and r.headers.get_all("X-Always") == ["200"], r
    # a request weir refuses before routing (400) gets the top-level rules too
    r = raw_request(w.port, b"GET /x HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n")
    assert r.status == 400 and r.headers.get("X-Always") == "400", r


def test_own_answers_without_always_are_untouched(weir, backend):
    w, b = _start(weir, backend, routes=[{"path": "/app/"}],
                  response_headers={"add": {"X-Resp": "r"}})
    r = get(w.port, "/nothing")
    assert r.status == 404 and not r.headers.has("X-Resp"), r
    r = get(w.port, "/app/")
    assert r.status == 200 and r.headers.get("X-Resp") == "r", r


# ------------------------------------------------------------ config errors


def _check(tmp_path, lines):
    (tmp_path / "weir.yaml").write_text("\n".join(lines) + "\n")
    p = subprocess.run([WEIR_BIN, "-t", "-c", "weir.yaml"], cwd=str(tmp_path),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def _base(port):
    return [
        "workers: 1",                                           # 1
        "modules_dir: %s" % MODULES_DIR,                        # 2
        "pid_file: weir.pid",                                   # 3
        "modules: [router, lb_roundrobin, headers]",            # 4
        "listeners:",                                           # 5
        "  - address: 127.0.0.1:%d" % port,                     # 6
        "upstreams:",                                           # 7
        "  u: {servers: [127.0.0.1:9]}",                        # 8
    ]


def _has(out, tail):
    return any(ln.strip().endswith(tail) and "weir.yaml:" in ln for ln in out.splitlines())


def test_config_refusals_all_reported_with_positions(tmp_path):
    lines = _base(free_port()) + [
        "request_headers:",                                     # 9
        "  set:",                                               # 10
        "    Connection: close",                                # 11  <- col 5
        "    X-Host: \"$hots\"",                                # 12  <- col 14 ($hots)
        "response_headers:",                                    # 13
        "  remove: [X-A, Transfer-Encoding]",                   # 14  <- col 17
        "routes:",                                              # 15
        "  - path: /",                                          # 16
        "    upstream: u",                                      # 17
        "    request_headers:",                                 # 18
        "      add: {Host: other.test, \"Bad Name\": x}",       # 19  <- col 13, col 31
        "    response_headers:",                                # 20
        "      set: {Content-Length: \"5\", X-V: \"$nosuchvar\"}",  # 21 <- col 13, col 40
    ]
    assert lines[10].index("Connection") == 4 and lines[11].index('"$hots"') == 12
    assert lines[13].index("Transfer-Encoding") == 16
    assert lines[18].index("Host") == 12 and lines[18].index('"Bad Name"') == 30
    assert lines[20].index("Content-Length") == 12 and lines[20].index('"$nosuchvar"') == 38
    rc, out = _check(tmp_path, lines)
    assert rc == 1, out
    want = [
        "11:5: request_headers.set: 'Connection' is a hop-by-hop header: weir removes it both "
        "ways and writes its own for each connection (keepalive is managed per side); header "
        "rules cannot set, add or remove it: delete this entry",
        # a variable is reported at its own column, inside the quotes
        "12:14: unknown variable '$hots' in '$hots' (did you mean '$host'?)",
        "14:17: response_headers.remove: 'Transfer-Encoding' is message framing: weir writes "
        "its own Content-Length or chunked framing for each side from the body it actually "
        "sends; header rules cannot set, add or remove it: delete this entry",
        "19:13: request_headers.add: a request carries exactly one Host (a second one makes "
        "servers answer 400); use set: to replace it",
        "19:31: request_headers.add: 'Bad Name' is not a valid header name: ' ' at offset 3 "
        "is not a token character (RFC 9110 section 5.1: letters, digits and !#$%&'*+-.^_`|~)",
        "21:13: response_headers.set: 'Content-Length' is message framing",
        "21:40: unknown variable '$nosuchvar' in '$nosuchvar'",
    ]
    for tail in want:
        assert any(tail in ln and "weir.yaml:" in ln for ln in out.splitlines()), (tail, out)


def test_config_connection_refused_per_route_and_good_config_passes(tmp_path):
    lines = _base(free_port()) + [
        "routes:",                                              # 9
        "  - path: /",                                          # 10
        "    upstream: u",                                      # 11
        "    response_headers: {add: {Keep-Alive: \"timeout=5\"}}",   # 12 <- col 30
    ]
    assert lines[11].index("Keep-Alive") == 29
    rc, out = _check(tmp_path, lines)
    assert rc == 1, out
    assert _has(out, "12:30: response_headers.add: 'Keep-Alive' is a hop-by-hop header: weir "
                     "removes it both ways and manages keepalive per connection itself; header "
                     "rules cannot set, add or remove it: delete this entry"), out

    lines[11] = ("    response_headers: {add: {X-Kept: \"timeout=5\"}, always: true, "
                 "remove: [Server], set: {Host: \"$host\"}}")
    lines.append("request_headers: {set: {X-Forwarded-For: \"$proxy_add_x_forwarded_for\"}}")
    rc, out = _check(tmp_path, lines)
    assert rc == 0, out


def test_config_wrong_shapes(tmp_path):
    lines = _base(free_port()) + [
        "routes: [{path: /, upstream: u}]",                     # 9
        "request_headers: {always: true, sett: {X-A: b}}",      # 10 <- col 19, col 33
        "response_headers: [X-A]",                              # 11 <- col 19
    ]
    rc, out = _check(tmp_path, lines)
    assert rc == 1, out
    assert _has(out, "10:19: request_headers: 'always' belongs to response_headers (it applies "
                     "the rules to answers weir makes itself too)"), out
    assert _has(out, "10:33: request_headers: unknown key 'sett' (expected set, add, "
                     "remove)"), out
    assert _has(out, "11:19: response_headers: expected a mapping {set: {...}, add: {...}, "
                     "remove: [...]}"), out


def test_key_without_the_module_loaded(tmp_path):
    # (at the top level the core's table of known module keys does not list
    # request_headers yet, so only the route scope says which module to load)
    lines = _base(free_port())
    lines[3] = "modules: [router, lb_roundrobin]"
    lines += ["routes:",                                         # 9
              "  - path: /",                                     # 10
              "    upstream: u",                                 # 11
              "    request_headers: {set: {X-A: b}}"]            # 12
    rc, out = _check(tmp_path, lines)
    assert rc == 1, out
    assert _has(out, "12:5: 'request_headers' is provided by module 'headers', which is not "
                     "loaded"), out
