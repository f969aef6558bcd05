"""Module accesslog: exact lines for a format, JSON escaping, per-route logs and
`off`, answers weir makes itself, buffering with a flush interval and at exit,
reopen after rename (SIGUSR1 and `weir -s reopen`), whole lines from two
workers, and config errors with their position."""
import json
import os
import re
import signal
import socket
import subprocess

from conftest import WEIR_BIN, get, raw_request, wait_for

MODULES = ["router", "lb_roundrobin", "accesslog"]


def _lines(path):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return []
    assert not data or data.endswith(b"\n"), data[-200:]   # only whole lines are written
    return data.decode().splitlines()


def _wait_lines(path, n, timeout=10.0):
    got = wait_for(lambda: (lambda l: l if len(l) >= n else None)(_lines(path)), timeout)
    assert got, "expected %d lines in %s, have %r" % (n, path, _lines(path))
    return got


def _start(weir, backend, access_log, routes=None, workers=1):
    b = backend()
    w = weir()
    cfg = w.config(upstreams={"b": {"servers": [b.addr]}},
                   routes=routes or [{"name": "r1", "path": "/", "upstream": "b"}],
                   workers=workers, modules=MODULES, access_log=access_log)
    w.start(cfg)
    return w, b


def test_exact_lines_for_a_format(weir, backend, tmp_path):
    log = str(tmp_path / "a.log")
    fmt = ('$remote_addr "$request" $status $body_bytes_sent $upstream_status $route '
           '$http_x_user $arg_q $request_length $host')
    w, b = _start(weir, backend, {"path": log, "format": fmt, "flush": "50ms"})
    r1 = get(w.port, "/a/b?q=1&z=2", headers=[("X-User", "bob")])
    r2 = get(w.port, "/plain", host="Example.COM:8080")
    assert r1.status == 200 and r2.status == 200
    lines = _wait_lines(log, 2)
    reqs = b.requests
    assert len(reqs) == 2
    expected1 = '127.0.0.1 "GET /a/b?q=1&z=2 HTTP/1.1" 200 %d 200 r1 bob 1 ' % len(r1.body)
    expected2 = '127.0.0.1 "GET /plain HTTP/1.1" 200 %d 200 r1 - - ' % len(r2.body)
    assert lines[0].startswith(expected1), lines
    assert lines[0].endswith(" test.local"), lines
    assert lines[1].startswith(expected2), lines
    assert lines[1].endswith(" example.com"), lines
    # $request_length counts the whole head as sent: at least the request line
    # and the X-User header
    assert int(lines[0].split()[-2]) > len("GET /a/b?q=1&z=2 HTTP/1.1\r\nX-User: bob\r\n")


def _log_dir():
    out = subprocess.run([WEIR_BIN, "-V"], capture_output=True, text=True).stdout
    return re.search(r"^log dir (.+)$", out, re.M).group(1)


def test_default_format_and_path(weir, backend, tmp_path):
    """With the module loaded and no access_log key: access.log in the log
    directory weir was built with (weir -V), never next to the config;
    default (combined-like) format. weir runs with a private /var/log (and
    /run), so the test writes nothing into the host's."""
    b = backend()
    w = weir()
    cfg = w.config(upstreams={"b": {"servers": [b.addr]}},
                   routes=[{"path": "/", "upstream": "b"}], modules=MODULES)
    w.start(cfg, private=True)
    assert get(w.port, "/d?x=1").status == 200
    path = "/proc/%d/root%s/access.log" % (w.pid, _log_dir())
    # the default flush is 1s: read it while weir runs (its /var/log is gone after)
    assert wait_for(lambda: os.path.exists(path) and _lines(path), 5), w.log()
    lines = _lines(path)
    assert not os.path.exists(os.path.join(w.dir, "access.log"))
    assert len(lines) == 1, lines
    line = lines[0]
    assert line.startswith("127.0.0.1 - ["), line
    assert '] "GET /d?x=1 HTTP/1.1" 200 ' in line, line
    assert line.endswith('"%s"' % b.addr), line


def test_json_escaping(weir, backend, tmp_path):
    log = str(tmp_path / "j.log")
    fmt = ('{"uri":"$request_uri","ua":"$http_user_agent","missing":"$http_x_none",'
           '"status":$status,"route":"$route"}')
    w, b = _start(weir, backend, {"path": log, "format": fmt, "format_json": True,
                                  "flush": "50ms"})
    ua = 'quote " back \\ tab\tend \xe9'
    s = socket.create_connection(("127.0.0.1", w.port))
    s.sendall(b"GET /p%22q?a=%5C HTTP/1.1\r\nHost: x\r\nUser-Agent: " + ua.encode("latin-1")
              + b"\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
    s.close()
    assert data.startswith(b"HTTP/1.1 200"), data[:100]
    lines = _wait_lines(log, 1)
    rec = json.loads(lines[0])            # the line is valid JSON
    assert rec["uri"] == "/p%22q?a=%5C"
    # the raw byte 0xe9 is escaped as \u00e9 (JSON text stays ASCII-safe)
    assert rec["ua"] == 'quote " back \\ tab\tend \xe9', rec
    assert rec["missing"] == ""
    assert rec["status"] == 200
    assert rec["route"] == "r1"


def test_per_route_files_inheritance_and_off(weir, backend, tmp_path):
    top = str(tmp_path / "top.log")
    api = str(tmp_path / "api.log")
    routes = [
        {"name": "api", "path": "/api/", "upstream": "b", "access_log": {"path": api}},
        {"name": "quiet", "path": "/health", "upstream": "b", "access_log": "off"},
        {"name": "json", "path": "/j/", "upstream": "b",
         "access_log": {"format": '{"r":"$route"}', "format_json": True}},
        {"name": "rest", "path": "/", "upstream": "b"},
    ]
    w, b = _start(weir, backend, {"path": top, "format": "$route $uri $status", "flush": "50ms"},
                  routes=routes)
    for p in ["/api/x", "/health", "/j/1", "/other", "/health"]:
        assert get(w.port, p).status == 200
    top_lines = _wait_lines(top, 2)
    api_lines = _wait_lines(api, 1)
    # the api route keeps the top-level format but writes its own file
    assert api_lines == ["api /api/x 200"]
    # the json route writes to the top-level file with its own format;
    # the rest route inherits everything; /health is not logged
    assert sorted(top_lines) == sorted(['{"r":"json"}', "rest /other 200"]), top_lines


def test_answers_weir_makes_are_logged(weir, backend, tmp_path):
    log = str(tmp_path / "e.log")
    b = backend()
    w = weir()
    cfg = w.config(upstreams={"b": {"servers": [b.addr]}},
                   routes=[{"name": "only", "path": "/only/", "upstream": "b"}],
                   modules=MODULES,
                   access_log={"path": log, "format": '$status "$request" $route $upstream_addr',
                               "flush": "50ms"})
    w.start(cfg)
    assert get(w.port, "/nope").status == 404
    resp = raw_request(w.port, b"GET /x HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    assert resp.status == 400
    lines = _wait_lines(log, 2)
    assert lines[0] == '404 "GET /nope HTTP/1.1" - -', lines
    assert lines[1].startswith("400 "), lines
    assert not b.requests


def test_buffered_until_flush_or_exit(weir, backend, tmp_path):
    log = str(tmp_path / "buf.log")
    w, b = _start(weir, backend, {"path": log, "format": "$uri", "flush": "1h",
                                  "buffer": "64k"})
    for i in range(3):
        assert get(w.port, "/n%d" % i).status == 200
    # an hour's flush interval and a large buffer: nothing written yet ...
    assert _lines(log) == []
    # ... until the worker exits gracefully and writes what it holds
    assert w.stop(signal.SIGQUIT) == 0
    assert _lines(log) == ["/n0", "/n1", "/n2"]


def test_small_buffer_writes_when_full(weir, backend, tmp_path):
    log = str(tmp_path / "small.log")
    w, b = _start(weir, backend, {"path": log, "format": "$uri", "flush": "1h", "buffer": 64})
    for i in range(40):
        assert get(w.port, "/line-%02d" % i).status == 200
    # 64-byte buffers fill after a few lines and are written without a flush
    lines = _wait_lines(log, 30)
    assert lines == ["/line-%02d" % i for i in range(len(lines))]


def test_reopen_after_rename(weir, backend, tmp_path):
    log = str(tmp_path / "r.log")
    w, b = _start(weir, backend, {"path": log, "format": "$uri", "flush": "50ms"})
    assert get(w.port, "/before").status == 200
    _wait_lines(log, 1)
    os.rename(log, log + ".1")
    assert get(w.port, "/renamed").status == 200    # still goes to the renamed file
    wait_for(lambda: len(_lines(log + ".1")) == 2)
    rc = subprocess.run([WEIR_BIN, "-s", "reopen", "-c", w.conf_path], capture_output=True,
                        timeout=10)
    assert rc.returncode == 0, rc.stderr
    assert wait_for(lambda: os.path.exists(log)), "log not reopened; weir log:\n" + w.log()
    assert get(w.port, "/after").status == 200
    assert _wait_lines(log, 1) == ["/after"]
    assert _lines(log + ".1") == ["/before", "/renamed"]
    # and once more with the signal itself
    os.rename(log, log + ".2")
    w.send_signal(signal.SIGUSR1)
    assert wait_for(lambda: os.path.exists(log))
    assert get(w.port, "/again").status == 200
    assert _wait_lines(log, 1) == ["/again"]
    assert _lines(log + ".2") == ["/after"]


def test_two_workers_write_whole_lines(weir, backend, tmp_path):
    log = str(tmp_path / "w2.log")
    w, b = _start(weir, backend, {"path": log, "format": "$uri $status $http_x_pad",
                                  "flush": "20ms", "buffer": 512}, workers=2)
    w.wait_workers(2)
    pad = "p" * 300
    n = 200
    for i in range(n):
        assert get(w.port, "/w/%d" % i, headers=[("X-Pad", pad)]).status == 200
    lines = _wait_lines(log, n)
    assert sorted(lines) == sorted("/w/%d 200 %s" % (i, pad) for i in range(n))


def test_config_errors_name_their_position(weir, tmp_path):
    w = weir()
    cases = [
        ({"path": str(tmp_path / "x.log"), "format": "$status $nosuchvar"},
         "weir.yaml:", "nosuchvar"),
        ({"path": str(tmp_path / "x.log"), "fromat": "$status"}, "weir.yaml:", "fromat"),
        ({"path": "/nonexistent-dir/x/y.log"}, "weir.yaml:", "/nonexistent-dir/x/y.log"),
        ("sometimes", "weir.yaml:", "off"),
        ({"path": str(tmp_path / "x.log"), "buffer": "lots"}, "weir.yaml:", "lots"),
    ]
    for al, where, what in cases:
        cfg = w.config(routes=[], modules=MODULES, access_log=al)
        w.write(cfg)
        p = subprocess.run([WEIR_BIN, "-t", "-c", w.conf_path, "-M", os.environ.get(
            "WEIR_MODULES_DIR", "")], capture_output=True, timeout=10)
        err = p.stderr.decode()
        assert p.returncode == 1, (al, err)
        line = [l for l in err.splitlines() if what in l]
        assert line, (al, err)
        # file:line:col at the start of the message
        assert line[0].startswith(w.conf_path + ":") and line[0].split(":")[1].isdigit() \
            and line[0].split(":")[2].isdigit(), line
