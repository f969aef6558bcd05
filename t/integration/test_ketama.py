"""lb_ketama: libketama-compatible consistent hashing (SPEC §4 upstreams, §7 lb_ketama).

Expected servers come from tools/ketama_reference.py, a Python (hashlib) reference
written from libketama's algorithm (its `selftest` reproduces libketama's own check),
never from weir: every request's backend must be the one the reference picks for the
request's key and the same server list (addresses as written in the YAML)."""

import http.client
import importlib.util
import os
import subprocess
from collections import Counter

from conftest import MODULES_DIR, SOURCE_ROOT, WEIR_BIN, free_port

_spec = importlib.util.spec_from_file_location(
    "ketama_reference", os.path.join(SOURCE_ROOT, "tools", "ketama_reference.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

MODULES = ["router", "lb_ketama"]


def _proxy(weir, servers, **up):
    w = weir()
    u = {"balancer": "ketama", "servers": servers, "keepalive": 16}
    u.update(up)
    w.start(w.config(upstreams={"pool": u}, routes=[{"path": "/", "upstream": "pool"}],
                     modules=MODULES))
    return w


class Client:
    """One keep-alive client connection to weir."""

    def __init__(self, port):
        self.port = port
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def get(self, target, headers=None):
        h = {"Host": "ketama.test"}
        h.update(headers or {})
        self.c.request("GET", target, headers=h)
        r = self.c.getresponse()
        return r.status, r.read().decode("latin-1")

    def close(self):
        self.c.close()


def _names(backends):
    return [b.name for b in backends]


def _ring(peers):
    return ref.Ring([p if isinstance(p, dict) else {"address": p} for p in peers])


URIS = ["/item/%d?v=%d" % (i, i * 7) for i in range(400)]


def test_reference_is_libketama():
    # the reference reproduces libketama's own test (libketama/test.sh)
    assert ref.selftest() == 0


def test_every_key_goes_where_libketama_puts_it(weir, backend):
    bs = [backend("b%d" % i, mode="id") for i in range(4)]
    peers = [{"address": bs[0].addr, "weight": 3}, {"address": bs[1].addr, "weight": 1},
             {"address": bs[2].addr, "weight": 2}, bs[3].addr]
    ring = _ring(peers)
    w = _proxy(weir, peers)
    c = Client(w.port)
    got = []
    for uri in URIS:        # hash_key defaults to $request_uri: path and query
        status, body = c.get(uri)
        assert status == 200, (uri, status, body)
        got.append(body)
    c.close()
    want = [bs[ring.pick(uri)].name for uri in URIS]
    bad = [(u, g, x) for u, g, x in zip(URIS, got, want) if g != x]
    assert not bad, "%d of %d keys on the wrong server, e.g. %r" % (len(bad), len(URIS), bad[:5])
    counts = Counter(got)
    assert set(counts) == set(_names(bs)), counts
    # weights 3:1:2:1 show in the split (consistent hashing: roughly)
    assert counts["b0"] > counts["b2"] > counts["b1"], counts
    # same key, same server, every time
    c = Client(w.port)
    for uri in URIS[:50]:
        assert c.get(uri)[1] == bs[ring.pick(uri)].name
    c.close()


def test_down_server_moves_only_its_keys(weir, backend):
    bs = [backend("b%d" % i, mode="id") for i in range(4)]
    peers = [b.addr for b in bs]
    ring = _ring(peers)
    w = _proxy(weir, peers, max_fails=1, fail_timeout="60s", retries=1)
    c = Client(w.port)
    before = {}
    for uri in URIS:
        status, body = c.get(uri)
        assert status == 200 and body == bs[ring.pick(uri)].name, (uri, status, body)
        before[uri] = body
    c.close()
    victim = 1
    owned = [u for u in URIS if before[u] == bs[victim].name]
    assert len(owned) > 40, len(owned)

    bs[victim].stop()          # connects are refused from now on
    c = Client(w.port)
    after = {}
    for uri in URIS:
        status, body = c.get(uri)
        # a connect failure is retried on the next usable server (GET, retries: 1)
        assert status == 200, (uri, status, body)
        after[uri] = body
    c.close()
    # the keys of live servers stay where they were
    moved = [u for u in URIS if before[u] != after[u]]
    assert sorted(moved) == sorted(owned)
    # the victim's keys go to the server of the next usable point on the ring
    for uri in owned:
        want = ring.pick(uri, lambda i: i != victim)
        assert want != victim
        assert after[uri] == bs[want].name, (uri, after[uri], bs[want].name)
    # more than one server takes over: the keys spread along the ring
    assert len(set(after[u] for u in owned)) > 1


def test_hash_key_from_header(weir, backend):
    bs = [backend("b%d" % i, mode="id") for i in range(3)]
    peers = [b.addr for b in bs]
    ring = _ring(peers)
    w = _proxy(weir, peers, hash_key="$http_x_user")
    c = Client(w.port)
    seen = {}
    for i in range(300):
        user = "user-%d" % (i % 100)
        # the URI differs every time; only the header decides
        status, body = c.get("/page/%d" % i, {"X-User": user})
        assert status == 200
        assert body == bs[ring.pick(user)].name, (user, body)
        assert seen.setdefault(user, body) == body
    assert len(set(seen.values())) == 3
    # no X-User: the variable is unset and renders as "", one key for all
    for i in range(10):
        assert c.get("/anon/%d" % i) == (200, bs[ring.pick("")].name)
    c.close()


def test_hash_key_template_with_text(weir, backend):
    bs = [backend("b%d" % i, mode="id") for i in range(3)]
    peers = [b.addr for b in bs]
    ring = _ring(peers)
    w = _proxy(weir, peers, hash_key="u=${http_x_user}/$uri")
    c = Client(w.port)
    for i in range(100):
        user, path = "u%d" % (i % 7), "/p/%d" % (i % 5)
        status, body = c.get(path + "?ignored=%d" % i, {"X-User": user})
        assert status == 200
        assert body == bs[ring.pick("u=%s/%s" % (user, path))].name
    c.close()


def test_backups_form_their_own_ring(weir, backend):
    p = [backend("p%d" % i, mode="id") for i in range(2)]
    k = [backend("k%d" % i, mode="id") for i in range(3)]
    peers = [p[0].addr, {"address": k[0].addr, "backup": True}, p[1].addr,
             {"address": k[1].addr, "backup": True, "weight": 2},
             {"address": k[2].addr, "backup": True}]
    order = [p[0], k[0], p[1], k[1], k[2]]
    ring = _ring(peers)
    w = _proxy(weir, peers, max_fails=1, fail_timeout="60s", retries=3)
    c = Client(w.port)
    uris = URIS[:200]
    for uri in uris:
        status, body = c.get(uri)
        assert status == 200 and body == order[ring.pick(uri)].name, (uri, body)
        assert body in ("p0", "p1")
    assert all(b.connections == 0 for b in k)
    # adding backups moved no key: the primary ring is the two primaries alone
    prim = _ring([p[0].addr, p[1].addr])
    for uri in uris:
        assert order[ring.pick(uri)] is p[prim.pick(uri)]
    c.close()

    p[0].stop()
    p[1].stop()
    c = Client(w.port)
    got = Counter()
    for uri in uris:
        status, body = c.get(uri)
        assert status == 200, (uri, status, body)
        want = ring.pick(uri, lambda i: i not in (0, 2))
        assert body == order[want].name, (uri, body, order[want].name)
        got[body] += 1
    c.close()
    assert set(got) == {"k0", "k1", "k2"}, got


def test_all_down_is_503(weir, backend):
    dead = ["127.0.0.1:%d" % free_port() for _ in range(2)]
    w = _proxy(weir, dead, max_fails=1, fail_timeout="60s", retries=1)
    c = Client(w.port)
    statuses = [c.get("/x/%d" % i)[0] for i in range(4)]
    c.close()
    # the first request finds both servers refusing (and marks them down): a
    # gateway error; afterwards the balancer has no usable server: 503
    assert statuses[0] in (502, 503), statuses
    assert statuses[1:] == [503] * 3, statuses


def _check(tmp_path, upstream_lines, modules=MODULES):
    lines = ["workers: 1", "modules_dir: %s" % MODULES_DIR, "pid_file: weir.pid",
             "modules:"] + ["  - %s" % m for m in modules] + [
             "listeners:", "  - address: 127.0.0.1:%d" % free_port(),
             "upstreams:", "  pool:"] + ["    " + ln for ln in upstream_lines] + [
             "routes:", "  - path: /", "    upstream: pool"]
    (tmp_path / "weir.yaml").write_text("\n".join(lines) + "\n")
    p = subprocess.run([WEIR_BIN, "-t", "-c", "weir.yaml"], cwd=str(tmp_path),
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


def test_config_checks(tmp_path):
    ok = ["balancer: ketama", "hash_key: \"$http_x_user$arg_id\"", "servers:",
          "  - 127.0.0.1:9001", "  - {address: 127.0.0.1:9002, weight: 5}"]
    rc, out = _check(tmp_path, ok)
    assert rc == 0, out
    # an unknown variable in hash_key is a config error naming it
    rc, out = _check(tmp_path, ["balancer: ketama", "hash_key: \"$no_such_var\"",
                                "servers: [127.0.0.1:9001]"])
    assert rc == 1 and "no_such_var" in out, out
    # hash_key without lb_ketama loaded: refused, naming the module
    rc, out = _check(tmp_path, ["balancer: roundrobin", "hash_key: \"$uri\"",
                                "servers: [127.0.0.1:9001]"], modules=["router", "lb_roundrobin"])
    assert rc == 1 and "lb_ketama" in out, out
    # hash_key for another balancer: accepted, with a warning that it is ignored
    rc, out = _check(tmp_path, ["balancer: roundrobin", "hash_key: \"$uri\"",
                                "servers: [127.0.0.1:9001]"],
                     modules=["router", "lb_roundrobin", "lb_ketama"])
    assert rc == 0, out
    assert "hash_key is ignored" in out, out
    # balancer: ketama without the module: refused, naming the module
    rc, out = _check(tmp_path, ["balancer: ketama", "servers: [127.0.0.1:9001]"],
                     modules=["router", "lb_roundrobin"])
    assert rc == 1 and "lb_ketama" in out, out
