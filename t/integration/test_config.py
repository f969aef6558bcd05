"""Command line and config checking (SPEC §3, §4): `weir -t -c FILE` exit 0/1 with
"file:line:col: message" errors, all errors of a run reported, "did you mean",
keys of modules that are not loaded; `weir -V`; usage errors exit 2.

weir is run with cwd = the config's directory and `-c weir.yaml`, so the file is
named "weir.yaml" in messages as in the SPEC; the absolute path is accepted too.
Line/column numbers are 1-based and point at the offending key (for a bad value,
the key or the value)."""

import os
import re
import subprocess

from conftest import MODULES_DIR, SOURCE_ROOT, WEIR_BIN, free_port


def run(args, cwd, timeout=20):
    p = subprocess.run([WEIR_BIN] + args, cwd=cwd, stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def check(tmp_path, text):
    (tmp_path / "weir.yaml").write_text(text)
    return run(["-t", "-c", "weir.yaml"], str(tmp_path))


def has_line(out, tmp_path, tail):
    """A line equal to '<file>:<tail>' with <file> 'weir.yaml' or its absolute path."""
    names = {"weir.yaml", str(tmp_path / "weir.yaml"), os.path.realpath(tmp_path / "weir.yaml")}
    for ln in out.splitlines():
        ln = ln.strip()
        if ln.endswith(tail) and ln[:len(ln) - len(tail)] in {n + ":" for n in names}:
            return True
    return False


def matching_lines(out, tmp_path, line_re):
    names = "|".join(re.escape(n) for n in ("weir.yaml", str(tmp_path / "weir.yaml")))
    rx = re.compile(r"^(?:%s):%s" % (names, line_re))
    return [ln.strip() for ln in out.splitlines() if rx.match(ln.strip())]


def base(port=None, modules=("router", "lb_roundrobin")):
    """Lines 1..10 of a config; callers append from line 11 on."""
    lines = [
        "workers: 1",                                   # 1
        "modules_dir: %s" % MODULES_DIR,                # 2
        "pid_file: weir.pid",                           # 3
        "error_log: {path: stderr, level: info}",      # 4
        "modules:",                                     # 5
    ]
    mods = list(modules)
    lines += ["  - %s" % m for m in mods]
    while len(lines) < 8:
        lines.append("# padding")
    lines += ["listeners:",                             # 9
              "  - address: 127.0.0.1:%d" % (port or free_port())]   # 10
    assert len(lines) == 10
    return lines


GOOD_TAIL = [
    "routes:",                          # 11
    "  - path: /v1/",                   # 12
    "    upstream: api",                # 13
    "    methods: [GET, POST]",         # 14
    "  - path: /",                      # 15
    "    upstream: api",                # 16
    "upstreams:",                       # 17
    "  api:",                           # 18
    "    balancer: roundrobin",         # 19
    "    servers:",                     # 20
    "      - address: 127.0.0.1:9001",  # 21
    "        weight: 3",                # 22
    "      - 127.0.0.1:9002",           # 23
    "    read_timeout: 250ms",          # 24
    "    connect_timeout: 2s",          # 25
    "limits:",                          # 26
    "  max_header_size: 16k",           # 27
    "  client_header_timeout: 1m",      # 28
]


def test_good_config_exit_0(tmp_path):
    rc, out, err = check(tmp_path, "\n".join(base() + GOOD_TAIL) + "\n")
    assert rc == 0, out + err


def test_default_etc_config_is_valid(tmp_path):
    src = os.path.join(SOURCE_ROOT, "etc", "weir.yaml")
    rc, out, err = run(["-t", "-c", src, "-M", MODULES_DIR], str(tmp_path))
    assert rc == 0, out + err


def test_unknown_key_did_you_mean_and_module_not_loaded(tmp_path):
    # laid out so the two errors sit exactly where the SPEC's examples put them
    lines = base(modules=("router", "lb_roundrobin", "rewrite")) + [
        "routes:",                              # 11
        "  - path: /v1/",                       # 12
        "    upstream: api",                    # 13
        "    rewite: \"^/v1/(.*)$ /$1\"",       # 14  <- col 5
        "  - path: /",                          # 15
        "    upstream: api",                    # 16
        "upstreams:",                           # 17
        "  api:",                               # 18
        "    servers: [127.0.0.1:9001]",        # 19
        "    health_check: {type: tcp}",        # 20  <- col 5
    ]
    assert lines[13].index("rewite") == 4 and lines[19].index("health_check") == 4
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert has_line(both, tmp_path,
                    "14:5: unknown key 'rewite' in route (did you mean 'rewrite'?)"), both
    # all errors of one run are reported, not just the first
    assert has_line(both, tmp_path,
                    "20:5: 'health_check' is provided by module 'healthcheck', "
                    "which is not loaded"), both


def test_module_key_without_module_alone(tmp_path):
    lines = base() + [
        "upstreams:",                           # 11
        "  api:",                               # 12
        "    servers: [127.0.0.1:9001]",        # 13
        "    hash_key: \"$http_x_user\"",       # 14
        "routes:",                              # 15
        "  - path: /",                          # 16
        "    upstream: api",                    # 17
        "    request_headers: {set: {X-A: b}}",  # 18
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert has_line(both, tmp_path, "14:5: 'hash_key' is provided by module 'lb_ketama', "
                                    "which is not loaded"), both
    assert has_line(both, tmp_path, "18:5: 'request_headers' is provided by module 'headers', "
                                    "which is not loaded"), both


def test_several_errors_all_printed(tmp_path):
    lines = [
        "wokers: 1",                            # 1  unknown top-level key
        "modules_dir: %s" % MODULES_DIR,        # 2
        "modules: [router, lb_roundrobin]",     # 3
        "listeners:",                           # 4
        "  - address: 127.0.0.1:%d" % free_port(),  # 5
        "upstreams:",                           # 6
        "  api:",                               # 7
        "    servers: [127.0.0.1:9001]",        # 8
        "    read_timeout: 5x",                 # 9  bad duration
        "    keepalve: 10",                     # 10 unknown key in upstream
        "routes:",                              # 11
        "  - path: /",                          # 12
        "    upstream: api",                    # 13
        "    patth: /x",                        # 14 unknown key in route
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    l1 = matching_lines(both, tmp_path, r"1:1: unknown key 'wokers'.*did you mean 'workers'")
    l9 = matching_lines(both, tmp_path, r"9:(5|19): .*read_timeout|9:(5|19): .*5x")
    l10 = matching_lines(both, tmp_path, r"10:5: unknown key 'keepalve' in upstream.*"
                                         r"did you mean 'keepalive'")
    l14 = matching_lines(both, tmp_path, r"14:5: unknown key 'patth' in route "
                                         r"\(did you mean 'path'\?\)")
    assert l1 and l9 and l10 and l14, both


def test_bad_duration(tmp_path):
    lines = base() + [
        "upstreams:",                            # 11
        "  api:",                                # 12
        "    servers: [127.0.0.1:9001]",         # 13
        "    connect_timeout: 3 seconds",        # 14
        "routes:",                               # 15
        "  - {path: /, upstream: api}",          # 16
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    # names the key, at the key (col 5) or at the value (col 22)
    assert matching_lines(both, tmp_path, r"14:(5|22): .*connect_timeout"), both


def test_bad_size(tmp_path):
    lines = base() + ["limits:", "  max_header_size: 16q"]   # 11, 12
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert matching_lines(both, tmp_path, r"12:(3|20): .*max_header_size"), both


def test_bad_weight(tmp_path):
    lines = base() + [
        "upstreams:",                            # 11
        "  api:",                                # 12
        "    servers:",                          # 13
        "      - address: 127.0.0.1:9001",       # 14
        "        weight: 1001",                  # 15  (1..1000)
        "routes:",                               # 16
        "  - {path: /, upstream: api}",          # 17
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert matching_lines(both, tmp_path, r"15:(9|17): .*weight"), both


def test_route_to_unknown_upstream(tmp_path):
    lines = base() + [
        "upstreams:",                            # 11
        "  api:",                                # 12
        "    servers: [127.0.0.1:9001]",         # 13
        "routes:",                               # 14
        "  - path: /",                           # 15
        "    upstream: apj",                     # 16
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert matching_lines(both, tmp_path, r"16:(5|15): .*apj"), both


def test_unknown_module(tmp_path):
    lines = base(modules=("router", "lb_roundrobin", "nosuchmod")) + [
        "upstreams: {api: {servers: [127.0.0.1:9001]}}",
        "routes: [{path: /, upstream: api}]",
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert matching_lines(both, tmp_path, r"8:(3|5): .*nosuchmod"), both


def test_yaml_syntax_error(tmp_path):
    lines = base() + ["upstreams: {api: {servers: [127.0.0.1:9001]}", "routes: []"]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err
    assert rc == 1, both
    assert matching_lines(both, tmp_path, r"\d+:\d+: "), both


def test_missing_config_file(tmp_path):
    rc, out, err = run(["-t", "-c", "nope.yaml"], str(tmp_path))
    assert rc == 1, out + err
    assert "nope.yaml" in out + err


def test_version(tmp_path):
    rc, out, err = run(["-V"], str(tmp_path))
    both = out + err
    assert rc == 0, both
    ver = re.search(r"(?<![\w])version\s*:\s*'([^']+)'", open(os.path.join(SOURCE_ROOT, "meson.build")).read())
    assert ver and ver.group(1) in both, both
    hdr = open(os.path.join(SOURCE_ROOT, "include", "weir", "module.h")).read()
    major = re.search(r"#define\s+WEIR_ABI_MAJOR\s+(\d+)", hdr).group(1)
    minor = re.search(r"#define\s+WEIR_ABI_MINOR\s+(\d+)", hdr).group(1)
    assert "ABI" in both.upper(), both
    assert "%s.%s" % (major, minor) in both, both
    assert "modules" in both.lower(), both     # modules dir is printed


def test_usage_errors_exit_2(tmp_path):
    for args in (["-Z"], ["-c"], ["-s", "bogus"], ["--no-such-option"], ["extra-argument"]):
        rc, out, err = run(args, str(tmp_path))
        assert rc == 2, "%r exited %d: %s" % (args, rc, out + err)


def test_t_does_not_start_serving(tmp_path):
    port = free_port()
    rc, out, err = check(tmp_path, "\n".join(base(port) + GOOD_TAIL) + "\n")
    assert rc == 0, out + err
    import socket
    s = socket.socket()
    try:
        assert s.connect_ex(("127.0.0.1", port)) != 0, "-t left something listening"
    finally:
        s.close()


def error_lines(out, tmp_path):
    """The positioned error lines of a run, as (line, col, text), in printed order."""
    names = "|".join(re.escape(n) for n in ("weir.yaml", str(tmp_path / "weir.yaml")))
    rx = re.compile(r"^(?:%s):(\d+):(\d+): (.*)$" % names)
    return [(int(m.group(1)), int(m.group(2)), m.group(3))
            for m in (rx.match(ln) for ln in out.splitlines()) if m]


SIX_MISTAKES = [
    "routes:",                                                          # 11
    "  - path: /",                                                      # 12
    "    upstream: apj",                                                # 13 unknown upstream
    "    access_log: {path: stderr, format: \"$remote_addr $nosuch\"}",  # 14 unknown variable
    "    response_headers:",                                            # 15
    "      set:",                                                       # 16
    "        X-A: \"$foo and $bar\"",                                   # 17 two unknown variables
    "    rewrite: \"^/(a[ /b\"",                                        # 18 bad regex
    "upstreams:",                                                       # 19
    "  api:",                                                           # 20
    "    servers: [127.0.0.1:9001]",                                    # 21
    "    conect_timeout: 2s",                                           # 22 unknown key
    "    read_timeout: 5x",                                             # 23 bad duration
]


def test_six_mistakes_of_every_stage_in_one_run(tmp_path):
    """Parse errors, cross-checks (a route's upstream) and what modules check in
    conf_done (an access_log format) come out of one `weir -t`, sorted by position
    like a compiler's, each variable at its own column."""
    lines = base(modules=()) + SIX_MISTAKES
    lines[4] = "modules: [router, lb_roundrobin, headers, rewrite, accesslog]"
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    both = out + err

    def col(lineno, needle):
        return lines[lineno - 1].index(needle) + 1

    want = [
        (13, col(13, "apj"), "unknown upstream 'apj' in route 'route1' (did you mean 'api'?)"),
        (14, col(14, "$nosuch"), "unknown variable '$nosuch' in '$remote_addr $nosuch'"),
        (17, col(17, "$foo"), "unknown variable '$foo' in '$foo and $bar'"),
        (17, col(17, "$bar"), "unknown variable '$bar' in '$foo and $bar'"),
        (18, col(18, '"^/'), 'rewrite "^/(a[ /b": invalid regex: missing terminating ] for '
                             'character class at offset 5'),
        (22, 5, "unknown key 'conect_timeout' in upstream (did you mean 'connect_timeout'?)"),
        (23, col(23, "5x"), "invalid duration '5x' for 'read_timeout' (expected a number with "
                            "ms, s, m, h or d, e.g. 250ms, 2s)"),
    ]
    assert rc == 1, both
    assert error_lines(err, tmp_path) == want, both
    # nothing else but the verdict line
    others = [ln for ln in err.splitlines() if ln and not ln.startswith("weir.yaml:")
              and not ln.startswith(str(tmp_path))]
    assert others == ["weir: configuration file weir.yaml test failed"], both


def test_two_unknown_variables_in_one_template(tmp_path):
    lines = base(modules=("router", "lb_roundrobin", "headers")) + [
        "upstreams: {api: {servers: [127.0.0.1:9001]}}",        # 11
        "routes:",                                               # 12
        "  - path: /",                                           # 13
        "    upstream: api",                                     # 14
        "    request_headers:",                                  # 15
        "      set: {X-B: $hots-$nope-$host}",                   # 16 plain scalar
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    assert rc == 1, out + err
    got = error_lines(err, tmp_path)
    assert got == [
        (16, lines[15].index("$hots") + 1,
         "unknown variable '$hots' in '$hots-$nope-$host' (did you mean '$host'?)"),
        (16, lines[15].index("$nope") + 1, "unknown variable '$nope' in '$hots-$nope-$host'"),
    ], err


def test_block_scalar_value_quoted_without_raw_newline(tmp_path):
    lines = base() + [
        "upstreams:",                                            # 11
        "  api:",                                                # 12
        "    servers: [127.0.0.1:9001]",                         # 13
        "    read_timeout: |",                                   # 14
        "      5s",                                              # 15
        "routes: [{path: /, upstream: api}]",                    # 16
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    assert rc == 1, out + err
    # the value's newline shows as the two characters \n, inside one line
    assert has_line(err, tmp_path, "14:19: invalid duration '5s\\n' for 'read_timeout' "
                                   "(expected a number with ms, s, m, h or d, e.g. 250ms, 2s)"), err
    for ln in err.splitlines():
        assert ln.startswith(("weir.yaml:", str(tmp_path), "weir: configuration file")), \
            "a stray line: %r in\n%s" % (ln, err)


def test_no_cascade_after_an_unknown_or_refused_upstream(tmp_path):
    lines = base() + [
        "upstreams:",                                            # 11
        "  api: [127.0.0.1:9001]",                               # 12 refused: not a mapping
        "  web: {servers: [127.0.0.1:9002]}",                    # 13
        "routes:",                                               # 14
        "  - {path: /a/, upstream: api}",                        # 15 names the refused one
        "  - {path: /b/, upstream: wbe}",                        # 16 unknown
        "  - {path: /c/, upstream: wbe}",                        # 17 unknown again
    ]
    rc, out, err = check(tmp_path, "\n".join(lines) + "\n")
    assert rc == 1, out + err
    assert error_lines(err, tmp_path) == [
        (12, 8, "upstream 'api' must be a mapping, got a list"),
        (16, lines[15].index("wbe") + 1,
         "unknown upstream 'wbe' in route 'route2' (did you mean 'web'?)"),
        (17, lines[16].index("wbe") + 1,
         "unknown upstream 'wbe' in route 'route3' (did you mean 'web'?)"),
    ], err


def _registered_variables():
    """Every variable name the core and the modules register, from the source:
    the tables in core/core_vars.c (registered and reserved) and in each module
    file that calls weir_var_register. Prefix families end with '_'."""
    names = set()
    sources = [os.path.join(SOURCE_ROOT, "core", "core_vars.c")]
    for d, _, files in os.walk(os.path.join(SOURCE_ROOT, "modules")):
        sources += [os.path.join(d, f) for f in files if f.endswith(".c")]
    for path in sources:
        text = open(path).read()
        if "weir_var_register" not in text and "vars_reserve" not in text:
            continue
        found = set(re.findall(r'\{"([a-z][a-z0-9_]*)",\s*(?:0|WEIR_VAR_PREFIX|v_)', text))
        found |= set(re.findall(r'weir_var_register\(\s*cf,\s*"([a-z][a-z0-9_]*)"', text))
        m = re.search(r"tls_vars\[\]\s*=\s*\{([^}]*)\}", text)
        if m:
            found |= set(re.findall(r'"([a-z][a-z0-9_]*)"', m.group(1)))
        assert found, "%s registers variables this test cannot find: update it" % path
        names |= found
    return names


def _readme_section(title):
    text = open(os.path.join(SOURCE_ROOT, "README.md")).read()
    m = re.search(r"^## %s\n(.*?)(?=^## )" % re.escape(title), text, re.M | re.S)
    assert m, "README has no '## %s' section" % title
    return m.group(1)


def test_readme_lists_every_variable():
    names = _registered_variables()
    # the families and a few plain names, so a broken scan cannot pass empty
    assert {"http_", "sent_http_", "cookie_", "arg_", "remote_addr", "ssl_protocol",
            "ssl_client_serial", "proxy_add_x_forwarded_for"} <= names, sorted(names)
    section = _readme_section("Variables")
    rows = [ln for ln in section.splitlines() if ln.startswith("| `$")]
    documented = set()
    for row in rows:
        first = row.split("|")[1]
        for v in re.findall(r"`\$([a-z][a-z0-9_]*?)(NAME)?`", first):
            documented.add(v[0])
    missing = sorted(n for n in names if n not in documented)
    assert not missing, "registered but not in README's Variables table: %s" % missing
    stale = sorted(n for n in documented if n not in names)
    assert not stale, "in README's Variables table but not registered: %s" % stale


def test_readme_nginx_table_names_real_keys():
    """Every key the "Coming from nginx" table gives as weir's is one the core or a
    module reads (a string in their source), so the table invents none."""
    source = ""
    for top in ("core", "modules"):
        for d, _, files in os.walk(os.path.join(SOURCE_ROOT, top)):
            for f in files:
                if f.endswith(".c"):
                    source += open(os.path.join(d, f)).read()
    literals = set(re.findall(r'"([a-z_][a-z0-9_]*)"', source))
    rows = [ln for ln in _readme_section("Coming from nginx").splitlines()
            if ln.startswith("| `") or ln.startswith("| not")]
    assert len(rows) > 40, rows
    keys = set()
    for row in rows:
        weir_col = row.split("|")[2]
        for span in re.findall(r"`([^`]*)`", weir_col):
            keys |= set(re.findall(r"(?<![\w$.])([a-z_][a-z0-9_]*):(?!/)", span))
    assert {"workers", "listeners", "upstreams", "tls", "limits", "access_log"} <= keys, keys
    names = {"api"}  # an upstream's name in an example, not a key
    invented = sorted(k for k in keys - names if k not in literals)
    assert not invented, "keys in the nginx table that nothing reads: %s" % invented
