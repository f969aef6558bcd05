"""weir -T (issue 13): the effective configuration as YAML that -t accepts.

-T on etc/weir.yaml and on a config that uses every module prints YAML
(parsed here with python3-yaml) that `weir -t` accepts from another
directory, that -T prints again as the same text (a fixed point), and that
serves as the original did; the defaults it prints are the ones README's
tables document; a config error prints the errors and nothing on stdout; an
unset key of a module's own syntax is its default or a comment; relative
paths come out absolute, those inside module keys included (tls
certificates, access_log path: weir_conf_path, ABI 1.7)."""

import os
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import MODULES_DIR, WEIR_BIN, free_port, get
from tlspki import Pki

SOURCE_ROOT = os.environ.get("WEIR_SOURCE_ROOT") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ALL_MODULES = ["router", "lb_roundrobin", "lb_ketama", "healthcheck", "headers", "rewrite",
               "accesslog", "proxy_protocol", "metrics", "tls"]


def run(args, cwd):
    p = subprocess.run([WEIR_BIN] + list(args), cwd=str(cwd), stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def dump(conf, cwd, extra=("-M", MODULES_DIR)):
    """weir -T: the YAML text, which must parse; stderr is the success line only."""
    rc, out, err = run(["-T", "-c", str(conf)] + list(extra), cwd)
    assert rc == 0, err
    assert err == "weir: configuration file %s test is successful\n" % conf, err
    assert yaml.safe_load(out) is not None
    return out


def check_elsewhere(text, tmp_path):
    """The printed config, written in another directory and read from a
    third one (without -M: its modules_dir is absolute), passes -t and
    prints itself again under -T."""
    other = tmp_path / "elsewhere"
    other.mkdir(exist_ok=True)
    (other / "dumped.yaml").write_text(text)
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    rc, out, err = run(["-t", "-c", str(other / "dumped.yaml")], cwd)
    assert rc == 0, err
    again = dump(other / "dumped.yaml", cwd, extra=())
    assert again == text


def ms(text):
    """A printed or documented duration in milliseconds."""
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", str(text))
    assert m, text
    return int(m.group(1)) * units[m.group(2)]


def readme_defaults(section):
    """key -> default of a README table whose default is one `value`."""
    text = open(os.path.join(SOURCE_ROOT, "README.md")).read()
    body = text.split(section, 1)[1].split("\n### ", 1)[0]
    out = {}
    for m in re.finditer(r"^\| `(\w+)` \| `([^`|]+)` \|", body, re.M):
        out[m.group(1)] = m.group(2)
    return out


def same_value(printed, documented):
    if printed is None or isinstance(printed, dict):
        return yaml.safe_load(documented) == printed
    if isinstance(printed, bool):
        return str(printed).lower() == documented
    if isinstance(printed, int):
        return printed == int(documented)
    if re.fullmatch(r"\d+(ms|s|m|h|d)", documented) and re.fullmatch(r"\d+(ms|s|m|h|d)",
                                                                      str(printed)):
        return ms(printed) == ms(documented)
    return str(printed) == documented


def test_T_on_the_default_config(tmp_path):
    shutil.copy(os.path.join(SOURCE_ROOT, "etc", "weir.yaml"), tmp_path / "weir.yaml")
    text = dump("weir.yaml", tmp_path)
    d = yaml.safe_load(text)
    assert d["workers"] == "auto"
    assert d["pid_file"] == str(tmp_path / "weir.pid")         # relative in the file
    assert d["modules_dir"] == os.path.realpath(MODULES_DIR)   # -M, folded in
    assert d["modules"] == ["router", "lb_roundrobin"]
    assert d["error_log"] == {"path": "stderr", "level": "info"}
    assert d["error_page"] is None and d["metrics_max_series"] == 4096
    lst = d["listeners"][0]
    assert lst["name"] == "main" and lst["address"] == "127.0.0.1:8080"
    up = d["upstreams"]["demo"]
    assert [s["address"] for s in up["servers"]] == ["127.0.0.1:9001", "127.0.0.1:9002"]
    assert d["routes"][0]["name"] == "default" and d["routes"][0]["path"] == "/"
    # the defaults the brief names, as written
    assert d["limits"]["client_header_timeout"] == "10s"
    assert d["limits"]["keepalive_timeout"] == "75s"
    assert d["limits"]["max_header_size"] == "16k"
    assert lst["backlog"] == 4096
    assert up["keepalive"] == 128 and up["connect_timeout"] == "3s" and up["retries"] == 1
    # and every single-valued default of README's tables
    for section, got in (("### `limits`", d["limits"]), ("### `listeners[]`", lst),
                         ("### `limits`", lst["limits"]), ("### `upstreams.<name>`", up),
                         ("### Top level (core)", d)):
        documented = readme_defaults(section)
        assert documented, section
        for k, v in documented.items():
            if k in got:
                assert same_value(got[k], v), (section, k, got[k], v)
    for k in ("client_header_timeout", "client_body_timeout", "send_timeout",
              "keepalive_timeout", "keepalive_requests", "max_header_size", "max_body_size",
              "max_connections", "shutdown_timeout"):
        assert k in d["limits"] and k in lst["limits"], k
    for k in ("balancer", "keepalive", "connect_timeout", "read_timeout", "write_timeout",
              "idle_timeout", "tunnel_timeout", "protocol", "retries", "max_fails",
              "fail_timeout"):
        assert k in up, k
    # the unset keys of module router: a comment, the output stays YAML
    assert "    # host: module default\n" in text
    check_elsewhere(text, tmp_path)


def full_config(w, b, tmp_path):
    pki = Pki(tmp_path)
    site = pki.leaf(pki.ca(), "site.test")
    (tmp_path / "logs").mkdir()
    cfg = w.config(
        modules=ALL_MODULES,
        listener={"proxy_protocol": True, "proxy_protocol_from": ["10.0.0.0/8", "::1"]},
        upstreams={
            "app": {"servers": [b.addr, {"address": "127.0.0.1:9", "weight": 2, "backup": True}],
                    "health_check": {"type": "tcp", "interval": "1s", "timeout": "500ms"}},
            "cache": {"balancer": "ketama", "hash_key": "$http_x_user", "servers": [b.addr],
                      "send_proxy_protocol": "v1"},
        },
        routes=[
            {"path": "/img/", "host": ["*.example.com", "test.local"], "upstream": "cache",
             "rewrite": r"^/img/(\w+)$ /i/$1",
             "response_headers": {"set": {"X-Odd": "it's: \"#odd\" \u00e9"}, "always": True}},
            {"path": "/old/", "redirect": {"status": 301, "location": "https://$host/new/"}},
            {"path": "=/metrics", "metrics": True},
            {"path": "/", "upstream": "app", "methods": ["GET", "HEAD"], "access_log": "off"},
        ],
        access_log={"path": "logs/access.log", "format": "$remote_addr $status"},
        request_headers={"set": {"X-Real-IP": "$remote_addr"}, "remove": ["X-Debug"]},
        limits={"max_body_size": "1m"},
    )
    cfg["listeners"].append({"name": "https", "address": "127.0.0.1:%d" % free_port(),
                             "limits": {"client_header_timeout": "5s"},
                             "tls": {"certificates": [{"cert": os.path.basename(site.cert),
                                                       "key": os.path.basename(site.key)}]}})
    cfg["pid_file"] = "weir.pid"
    return cfg


@pytest.mark.skipif(not all(os.path.exists(os.path.join(MODULES_DIR, m + ".so"))
                            for m in ALL_MODULES), reason="a module is not built")
def test_T_with_every_module(weir, backend, tmp_path):
    b = backend()
    w = weir()
    w.write(full_config(w, b, tmp_path))
    text = dump(w.conf_path, tmp_path)
    d = yaml.safe_load(text)
    assert d["modules"] == ALL_MODULES
    assert d["pid_file"] == str(tmp_path / "weir.pid")
    lst, https = d["listeners"]
    assert lst["proxy_protocol"] is True and lst["proxy_protocol_from"] == ["10.0.0.0/8", "::1"]
    assert https["proxy_protocol"] is False and https["limits"]["client_header_timeout"] == "5s"
    assert https["limits"]["max_body_size"] == "1m"      # the top level's, inherited
    cert = https["tls"]["certificates"][0]
    assert os.path.isabs(cert["cert"]) and os.path.isabs(cert["key"]), cert
    assert os.path.dirname(cert["cert"]) == str(tmp_path), cert
    app, cache = d["upstreams"]["app"], d["upstreams"]["cache"]
    assert app["servers"][1] == {"address": "127.0.0.1:9", "weight": 2, "backup": True}
    assert app["health_check"] == {"type": "tcp", "interval": "1s", "timeout": "500ms"}
    assert app["hash_key"] == "$request_uri"
    assert cache["balancer"] == "ketama" and cache["hash_key"] == "$http_x_user"
    assert cache["send_proxy_protocol"] == "v1"
    # unset keys of a module's own syntax, without a declared default: comments
    cache_text = text.split("\n  cache:\n", 1)[1].split("\nroutes:", 1)[0]
    assert "    # health_check: module default\n" in cache_text
    app_text = text.split("\n  app:\n", 1)[1].split("\n  cache:\n", 1)[0]
    assert "    # health_check: module default\n" not in app_text
    assert "    # send_proxy_protocol: module default\n" in app_text
    assert "\n    # tls: module default" in text.split("\n  - name: https\n")[0]
    r1, r2, r3, r4 = d["routes"]
    assert [r["name"] for r in d["routes"]] == ["route1", "route2", "route3", "route4"]
    assert r1["rewrite"] == r"^/img/(\w+)$ /i/$1" and r1["host"] == ["*.example.com", "test.local"]
    assert r1["response_headers"]["set"]["X-Odd"] == "it's: \"#odd\" \u00e9"
    assert r2["redirect"] == {"status": 301, "location": "https://$host/new/"}
    assert "upstream" not in r2 and r3["metrics"] is True and r1["metrics"] is False
    assert r4["access_log"] is False or r4["access_log"] == "off"   # YAML 1.1 reads off
    # what a route inherits from the top level is written out in it
    top_log = d["access_log"]
    assert top_log["path"] == str(tmp_path / "logs" / "access.log")
    assert r1["access_log"] == top_log and r1["request_headers"] == d["request_headers"]
    check_elsewhere(text, tmp_path)

    # the printed config serves as the original: start from it, elsewhere
    served = tmp_path / "served"
    served.mkdir()
    (served / "weir.yaml").write_text(text)
    w2 = weir("served")
    w2.port = w.port
    w2.start()
    resp = get(w.port, "/", headers=[("X-Debug", "1")])
    assert resp.status == 200, resp
    assert get(w.port, "/old/x").status == 301
    assert b"weir_http_requests_total" in get(w.port, "/metrics").body
    w2.stop()
    assert os.path.getsize(tmp_path / "logs" / "access.log") > 0


def test_T_on_a_config_error(weir, backend, tmp_path):
    b = backend()
    w = weir()
    cfg = w.config(upstreams={"b": {"servers": [b.addr], "keepalive": "lots"}},
                   routes=[{"path": "/", "upstream": "b"}, {"name": "route1", "path": "/x",
                                                           "upstream": "b"}])
    text = w.write(cfg)
    rc, out, err = run(["-T", "-c", w.conf_path, "-M", MODULES_DIR], tmp_path)
    assert rc == 1 and out == "", (rc, out)
    line = [i for i, ln in enumerate(text.splitlines(), 1) if "keepalive" in ln][0]
    assert re.search(r"weir\.yaml:%d:\d+: invalid integer 'lots'" % line, err), err
    # an unnamed first route is route1: a second route of that name is the
    # same error with -T as with -t, so a printed name never makes one
    assert "duplicate route name 'route1'" in err, err
    assert err.endswith("test failed\n"), err


def test_T_names_unnamed_routes_and_listeners(weir, backend, tmp_path):
    b = backend()
    w = weir()
    w.write(w.config(upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/a", "upstream": "b"},
                             {"name": "route9", "path": "/b", "upstream": "b"},
                             {"path": "/", "upstream": "b"}]))
    text = dump(w.conf_path, tmp_path)
    d = yaml.safe_load(text)
    assert [r["name"] for r in d["routes"]] == ["route1", "route9", "route3"]
    assert d["listeners"][0]["name"] == "127.0.0.1:%d" % w.port
    check_elsewhere(text, tmp_path)


def test_T_keeps_odd_values(weir, backend, tmp_path):
    """Values that need quoting read back as they were: -T prints itself."""
    b = backend()
    w = weir()
    odd = ["a: b", "# not a comment", "'quoted'", "\"dq\"", "back\\slash", "null", "~", "",
           " lead", "trail ", "- dash", "*star", "&amp", "{brace}", "[list]", "tab\there",
           "caf\u00e9", "\u2028sep"]
    headers = {"X-Odd-%d" % i: v for i, v in enumerate(odd)}
    w.write(w.config(modules=["router", "lb_roundrobin", "headers"],
                     upstreams={"b": {"servers": [b.addr]}},
                     routes=[{"path": "/", "upstream": "b",
                              "response_headers": {"set": headers}}]))
    text = dump(w.conf_path, tmp_path)
    got = yaml.safe_load(text)["routes"][0]["response_headers"]["set"]
    assert got == headers
    check_elsewhere(text, tmp_path)


def test_T_is_in_the_usage(tmp_path):
    rc, out, err = run(["--help"], tmp_path)
    assert rc == 0 and "weir -T [-c FILE]" in out and "\n  -T " in out, out
