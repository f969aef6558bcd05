"""Module metrics (issue 13): the Prometheus endpoint, summed over two workers
and carried across reloads, parsed with Debian's python3-prometheus-client.

Counts are exact: every request of the tests opens its own connection (or a
known set of keepalive connections is held), and each scrape is itself a
request of the metrics route, counted after it is answered (so scrape k sees
k - 1 earlier scrapes)."""

import os
import re
import signal
import subprocess

import pytest

from conftest import SOURCE_ROOT, Reader, connect, free_port, get, read_response, wait_for

prometheus_parser = pytest.importorskip("prometheus_client.parser")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MODULES = ["router", "lb_roundrobin", "healthcheck", "metrics"]
METRICS_HOST = "metrics.local"


class Scraper:
    """Scrapes /metrics on fresh connections and counts its own requests."""

    def __init__(self, port):
        self.port = port
        self.count = 0

    def raw(self, host=METRICS_HOST, method="GET"):
        return get(self.port, "/metrics", host=host, method=method)

    def __call__(self):
        r = self.raw()
        assert r.status == 200, r
        self.count += 1
        assert r.headers.get("content-type") == CONTENT_TYPE
        return parse(r.body.decode())


def parse(text):
    """{(sample name, ((label, value), ...)): value}, and the families' types."""
    samples, types = {}, {}
    for fam in prometheus_parser.text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return Samples(samples, types)


class Samples(dict):
    def __init__(self, samples, types):
        super().__init__(samples)
        self.types = types

    def v(self, name, **labels):
        return self[(name, tuple(sorted(labels.items())))]

    def has(self, name, **labels):
        return (name, tuple(sorted(labels.items()))) in self

    def names(self):
        return {k[0] for k in self}


def dead_addr():
    """An address nothing listens on (connect is refused)."""
    return "127.0.0.1:%d" % free_port()


def config(w, backend, dead, checked_dead, routes_extra=(), drop_broken=False, port=None):
    routes = [
        {"name": "metrics", "host": METRICS_HOST, "path": "=/metrics", "metrics": True},
        {"name": "app", "path": "/app", "upstream": "ok"},
    ]
    if not drop_broken:
        routes.append({"name": "broken", "path": "/broken", "upstream": "dead"})
    routes += list(routes_extra)
    ups = {
        "ok": {"servers": [backend.addr]},
        # max_fails 0: every request tries the dead server (a refused connect)
        "dead": {"servers": [dead], "max_fails": 0, "retries": 0},
        "checked": {"servers": [backend.addr, checked_dead],
                    "health_check": {"type": "tcp", "interval": "100ms", "timeout": "50ms",
                                     "rise": 1, "fall": 1}},
    }
    return w.config(upstreams=ups, routes=routes, workers=2, modules=MODULES,
                    limits={"max_connections": 3}, port=port)


def worker_pids(w):
    wait_for(lambda: len(w.workers()) == 2)
    return w.workers()


def owners(port):
    """{client port: worker pid} of the connections established to port."""
    out = subprocess.run(["ss", "-tnpH", "state", "established", "( sport = :%d )" % port],
                         capture_output=True, text=True, check=True).stdout
    found = {}
    for line in out.splitlines():
        # any process name: under valgrind the workers are "memcheck-amd64-"
        m = re.search(r"127\.0\.0\.1:(\d+)\s+users:\(\(\"[^\"]*\",pid=(\d+)", line)
        if m:
            found[int(m.group(1))] = int(m.group(2))
    return found


def keepalive_get(sock, rd, path):
    sock.sendall(("GET %s HTTP/1.1\r\nHost: test.local\r\n\r\n" % path).encode())
    return read_response(rd)


@pytest.fixture
def setup(weir, backend):
    b = backend()
    w = weir()
    dead, checked_dead = dead_addr(), dead_addr()
    w.start(config(w, b, dead, checked_dead))
    return w, b, dead, checked_dead


def test_exact_counts_over_two_workers(setup):
    w, b, dead, checked_dead = setup
    pids = worker_pids(w)
    scrape = Scraper(w.port)
    lst = "127.0.0.1:%d" % w.port
    # the start-up probe of the fixture was a connection too: count from here
    accepted0 = scrape().v("weir_connections_accepted_total", listener=lst)

    # keepalive connections held open: max_connections 3 per worker makes
    # the fourth go to the other worker (sequential connects all go to one)
    held = []
    for _ in range(4):
        s = connect(w.port)
        rd = Reader(s)
        r = keepalive_get(s, rd, "/app")
        assert r.status == 200
        held.append((s, rd, len(r.body)))
    by_port = owners(w.port)
    assert {by_port.get(x[0].getsockname()[1]) for x in held} == set(pids), by_port
    app_bytes = sum(x[2] for x in held)
    for s, rd, _ in held:  # a second request on each, on the same connection
        r = keepalive_get(s, rd, "/app")
        assert r.status == 200
        app_bytes += len(r.body)
    n_app = 2 * len(held)

    broken_bytes = 0
    for _ in range(3):
        r = get(w.port, "/broken")
        assert r.status == 502
        broken_bytes += len(r.body)
    for _ in range(2):
        assert get(w.port, "/nothing").status == 404
    # the metrics path under another host is not the metrics route
    r = scrape.raw(host="other.local")
    assert r.status == 404
    assert "content-type" not in r.headers or r.headers.get("content-type") != CONTENT_TYPE

    # the held connections are idle, the scrape's own is active; a closed
    # connection leaves the gauge once its worker freed it
    def settled():
        m = scrape()
        return m if m.v("weir_connections", listener=lst, state="active") == 1 else None
    m = wait_for(settled)
    assert m, "the closed connections never left weir_connections"
    assert m.v("weir_connections", listener=lst, state="idle") == len(held)
    accepted = len(held) + 3 + 2 + 1 + scrape.count - 1
    assert m.v("weir_connections_accepted_total", listener=lst) - accepted0 == accepted

    assert m.v("weir_http_requests_total", route="app", code="2xx") == n_app
    assert m.v("weir_http_requests_total", route="broken", code="5xx") == 3
    assert m.v("weir_http_requests_total", route="", code="4xx") == 3
    assert m.v("weir_http_requests_total", route="metrics", code="2xx") == scrape.count - 1
    for code in ("1xx", "3xx", "4xx", "5xx"):
        assert m.v("weir_http_requests_total", route="app", code=code) == 0
    assert m.v("weir_http_response_bytes_total", route="app") == app_bytes
    assert m.v("weir_http_response_bytes_total", route="broken") == broken_bytes

    # histogram: cumulative buckets, +Inf == _count == requests
    assert m.types["weir_http_request_duration_seconds"] == "histogram"
    buckets = sorted((float(dict(k[1])["le"]), v) for k, v in m.items()
                     if k[0] == "weir_http_request_duration_seconds_bucket"
                     and dict(k[1])["route"] == "app")
    assert len(buckets) == 12 and buckets[-1][0] == float("inf")
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
    assert buckets[-1][1] == n_app
    assert m.v("weir_http_request_duration_seconds_count", route="app") == n_app
    assert 0 < m.v("weir_http_request_duration_seconds_sum", route="app") < n_app * 5

    # upstream side
    assert m.v("weir_upstream_requests_total", upstream="ok", server=b.addr, code="2xx") == n_app
    assert m.v("weir_upstream_requests_total", upstream="dead", server=dead, code="5xx") == 0
    assert m.v("weir_upstream_connect_failures_total", upstream="dead", server=dead,
               result="refused") == 3
    assert m.v("weir_upstream_connect_failures_total", upstream="ok", server=b.addr,
               result="refused") == 0
    assert m.v("weir_upstream_response_duration_seconds_count", upstream="ok") == n_app
    assert m.v("weir_upstream_server_up", upstream="ok", server=b.addr) == 1
    assert m.v("weir_upstream_server_up", upstream="dead", server=dead) == 1  # max_fails 0

    # health checks hold the checked dead server down; checks are counted
    m = wait_for(lambda: (lambda m: m if m.v("weir_upstream_server_up", upstream="checked",
                                             server=checked_dead) == 0 else None)(scrape()))
    assert m.v("weir_upstream_server_up", upstream="checked", server=b.addr) == 1
    m = wait_for(lambda: (lambda m: m if m.v("weir_healthcheck_checks_total", upstream="checked",
                                             server=b.addr, result="ok") >= 2 else None)(scrape()))
    assert m.v("weir_healthcheck_checks_total", upstream="checked", server=checked_dead,
               result="fail") >= 1
    assert m.v("weir_healthcheck_checks_total", upstream="checked", server=checked_dead,
               result="ok") == 0
    assert m.v("weir_healthcheck_checks_total", upstream="checked", server=b.addr,
               result="fail") == 0

    # the process families
    assert m.v("weir_build_info", version=m_version(m), abi=header_abi()) == 1
    assert m.v("weir_config_generation") == 1
    assert m.v("weir_config_reloads_total", result="ok") == 0
    assert m.v("weir_worker_restarts_total") == 0

    for s, _, _ in held:
        s.close()


def header_abi():
    """"MAJOR.MINOR" as include/weir/module.h defines them."""
    with open(os.path.join(SOURCE_ROOT, "include/weir/module.h")) as f:
        text = f.read()
    major = re.search(r"#define WEIR_ABI_MAJOR (\d+)", text).group(1)
    minor = re.search(r"#define WEIR_ABI_MINOR (\d+)", text).group(1)
    return "%s.%s" % (major, minor)


def m_version(m):
    (key,) = [k for k in m if k[0] == "weir_build_info"]
    return dict(key[1])["version"]


def test_methods_and_head(setup):
    w = setup[0]
    scrape = Scraper(w.port)
    r = scrape.raw(method="POST")
    assert r.status == 405
    assert r.headers.get("allow") == "GET, HEAD"
    r = scrape.raw(method="HEAD")
    assert r.status == 200 and r.body == b""
    assert r.headers.get("content-type") == CONTENT_TYPE
    m = scrape()
    assert m.v("weir_http_requests_total", route="metrics", code="4xx") == 1
    assert m.v("weir_http_requests_total", route="metrics", code="2xx") == 1


def test_counts_carry_across_reloads(setup, weir):
    w, b, dead, checked_dead = setup
    scrape = Scraper(w.port)
    for _ in range(5):
        assert get(w.port, "/app").status == 200
    assert get(w.port, "/broken").status == 502

    # a good reload: route "broken" goes, route "extra" comes
    extra = {"name": "extra", "path": "/extra", "upstream": "ok"}
    w.write(config(w, b, dead, checked_dead, routes_extra=[extra], drop_broken=True,
                   port=w.port))
    w.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload: generation 2 started" in w.log())

    def gen2():
        m = scrape()
        return m if m.v("weir_config_generation") == 2 and not m.has(
            "weir_http_requests_total", route="broken", code="5xx") else None
    m = wait_for(gen2)
    assert m.v("weir_config_reloads_total", result="ok") == 1
    assert m.v("weir_config_reloads_total", result="failed") == 0
    assert m.v("weir_http_requests_total", route="app", code="2xx") == 5
    assert m.v("weir_http_requests_total", route="extra", code="2xx") == 0
    assert not any(dict(k[1]).get("route") == "broken" for k in m)
    assert m.v("weir_upstream_requests_total", upstream="ok", server=b.addr, code="2xx") == 5
    assert m.v("weir_upstream_connect_failures_total", upstream="dead", server=dead,
               result="refused") == 1  # the upstream stays, so does its count
    for _ in range(3):
        assert get(w.port, "/app").status == 200
    assert get(w.port, "/extra").status == 200

    # a failed reload changes nothing but the failure count
    with open(w.conf_path, "a") as f:
        f.write("no_such_key: 1\n")
    w.send_signal(signal.SIGHUP)
    wait_for(lambda: "reload failed" in w.log())
    m = scrape()
    assert m.v("weir_config_reloads_total", result="failed") == 1
    assert m.v("weir_config_reloads_total", result="ok") == 1
    assert m.v("weir_config_generation") == 2
    assert m.v("weir_http_requests_total", route="app", code="2xx") == 8
    assert m.v("weir_http_requests_total", route="extra", code="2xx") == 1


def test_worker_restart_counted(setup):
    w = setup[0]
    pids = worker_pids(w)
    os.kill(pids[0], signal.SIGKILL)
    wait_for(lambda: len(w.workers()) == 2 and pids[0] not in w.workers())
    m = Scraper(w.port)()
    assert m.v("weir_worker_restarts_total") == 1


def test_metrics_route_with_upstream_is_refused(weir, backend):
    b = backend()
    w = weir()
    cfg = w.config(upstreams={"ok": {"servers": [b.addr]}}, modules=MODULES,
                   routes=[{"name": "m", "path": "/metrics", "metrics": True, "upstream": "ok"}])
    w.write(cfg)
    w.start(wait=False)
    assert w.wait_exit() != 0
    assert "route 'm' answers with metrics and never reaches an upstream" in w.log()
    assert "weir.yaml:" in w.log()


def test_table_full_names_the_key(weir, backend):
    b = backend()
    w = weir()
    routes = [{"name": "metrics", "path": "=/metrics", "metrics": True}]
    routes += [{"name": "r%d" % i, "path": "/r%d" % i, "upstream": "ok"} for i in range(20)]
    cfg = w.config(upstreams={"ok": {"servers": [b.addr]}}, modules=MODULES, routes=routes,
                   metrics_max_series=64)
    w.write(cfg)
    w.start(wait=False)
    assert w.wait_exit() != 0
    assert "raise metrics_max_series" in w.log()
