"""The h1 smuggler corpus (SPEC §6): 1,703 Transfer-Encoding obfuscations, each with
Content-Length: 5 and the body "0\\r\\n\\r\\n".  Every one must be refused (4xx/5xx,
and then nothing reaches the backend), or forwarded with no Transfer-Encoding header
in any spelling and framed by Content-Length: 5 only, carrying exactly those 5 bytes.

Corpus lines are "name<TAB>request" with \\r \\n \\t \\xNN (and \\\\) escapes.  To tell
the backend's requests apart when they run concurrently, each request's target
"/?cb=1" becomes "/?cb=1&id=<line number>" (the mutations never touch the request
line)."""

import os
import re
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import HERE, SOURCE_ROOT, Backend, Weir, get, raw_request

CORPUS_CANDIDATES = [
    os.path.join(SOURCE_ROOT, "..", "shared", "corpus", "h1_smuggler_mutations.tsv"),
    os.path.join(HERE, "..", "..", "..", "shared", "corpus", "h1_smuggler_mutations.tsv"),
    "/work/shared/corpus/h1_smuggler_mutations.tsv",
]
ESC = {b"r": b"\r", b"n": b"\n", b"t": b"\t", b"\\": b"\\"}


def decode(s):
    return re.sub(rb"\\(x[0-9a-fA-F]{2}|[rnt\\])",
                  lambda m: ESC.get(m.group(1)) or bytes([int(m.group(1)[1:], 16)]), s)


def load_corpus():
    for p in CORPUS_CANDIDATES:
        if os.path.exists(p):
            break
    else:
        pytest.fail("corpus h1_smuggler_mutations.tsv not found in %r" % CORPUS_CANDIDATES)
    out = []
    with open(p, "rb") as f:
        for i, line in enumerate(f.read().split(b"\n")):
            if not line.strip():
                continue
            name, _, req = line.partition(b"\t")
            raw = decode(req)
            assert raw.startswith(b"POST /?cb=1 HTTP/1.1\r\n"), (name, raw[:60])
            raw = raw.replace(b"POST /?cb=1 ", b"POST /?cb=1&id=%d " % i, 1)
            out.append((i, name.decode("latin-1"), raw))
    return out


def te_like(name):
    """Any spelling of Transfer-Encoding: case, '_' or other separators, stray bytes."""
    return "transferencoding" in re.sub(r"[^a-z]", "", name.lower())


@pytest.fixture(scope="module")
def proxy(tmp_path_factory):
    b = Backend("s")
    w = Weir(tmp_path_factory.mktemp("smuggling"))
    sys.modules[__name__]._weirs = [w]
    w.start(w.config(upstreams={"u": {"balancer": "roundrobin", "servers": [b.addr],
                                      "keepalive": 64}},
                     routes=[{"path": "/", "upstream": "u"}]))
    yield w, b
    w.stop()
    b.stop()


def test_corpus_size():
    assert len(load_corpus()) == 1703


def test_smuggler_corpus(proxy):
    w, b = proxy
    corpus = load_corpus()

    # keep the run bounded even when weir stalls: past the deadline, the
    # remaining lines are not sent and count as failures
    deadline = time.monotonic() + 240

    def one(item):
        i, name, raw = item
        if time.monotonic() > deadline:
            return i, name, "not sent (deadline)"
        try:
            r = raw_request(w.port, raw, method="POST", timeout=5)
        except OSError as e:
            return i, name, "connect: %s" % e
        return i, name, r.status if not r.timeout else "timeout"

    with ThreadPoolExecutor(max_workers=32) as ex:
        results = list(ex.map(one, corpus))
    # let weir's upstream side finish, then look at what the backend got
    assert get(w.port, "/sentinel").status == 200
    time.sleep(0.2)

    by_id = {}
    stray = []
    for q in b.requests:
        m = re.search(r"(?:^|&)id=(\d+)", q.query or "")
        if m:
            by_id.setdefault(int(m.group(1)), []).append(q)
        elif q.path != "/sentinel":
            stray.append(q)

    failures = []
    counts = Counter()
    for i, name, status in results:
        got = by_id.get(i, [])
        if isinstance(status, int) and 400 <= status <= 599:
            counts["refused %d" % status] += 1
            if got:
                failures.append((name, "refused with %d but forwarded %r" % (status, got)))
            continue
        if status != 200:
            failures.append((name, "status %r" % status))
            continue
        counts["forwarded"] += 1
        if len(got) != 1:
            failures.append((name, "200 but backend saw %d requests" % len(got)))
            continue
        q = got[0]
        bad = [n for n, _ in q.headers if te_like(n)]
        if bad:
            failures.append((name, "forwarded with %r" % bad))
        elif q.headers.get_all("content-length") != ["5"] or q.framing != "content-length":
            failures.append((name, "forwarded framing %s CL=%r" % (
                q.framing, q.headers.get_all("content-length"))))
        elif q.body != b"0\r\n\r\n" or not q.complete:
            failures.append((name, "forwarded body %r" % q.body))
    summary = "smuggler corpus: %d lines, %s, %d failures, %d stray upstream requests" % (
        len(results), dict(sorted(counts.items())), len(failures), len(stray))
    print(summary)
    sys.__stderr__.write("\n" + summary + "\n")
    assert not stray, "requests reached the backend that no client sent: %r" % stray[:5]
    assert not failures, "%s\nfirst failures: %r" % (summary, failures[:20])


@pytest.mark.parametrize("hdr", [b"Transfer_Encoding: chunked", b"Content_Length: 99",
                                 b"Keep_Alive: timeout=1", b"Proxy_Connection: close",
                                 b"Transfer_encoding: chunked", b"Connection_: close"])
def test_underscore_variants_dropped(proxy, hdr):
    """SPEC §6: underscore variants of framing and hop-by-hop names ('-' written as
    '_') are dropped, not forwarded (and not a reason to refuse the request)."""
    w, b = proxy
    n0 = len(b.requests)
    r = raw_request(w.port, b"POST /under HTTP/1.1\r\nHost: u\r\n" + hdr +
                    b"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    assert r.status == 200, r
    q = [x for x in b.requests[n0:] if x.path == "/under"]
    assert len(q) == 1
    name = hdr.split(b":")[0].decode()
    assert not q[0].headers.has(name), q[0]
    assert q[0].body == b"hello"
