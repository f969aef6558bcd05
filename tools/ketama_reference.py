#!/usr/bin/python3
"""Reference implementation of libketama's continuum, written apart from weir's C.

It exists to produce expected values for the lb_ketama tests (t/unit/ketama_test.c
embeds its output; t/integration/test_ketama.py imports it), so it is written from
libketama's algorithm (RJ/ketama, libketama/ketama.c), not from weir's code:

  * each server i of n, with weight w and total weight W over the n servers:
        pct = (float)w / (float)W                  (C float, i.e. IEEE single)
        ks  = floorf(pct * 40.0 * (float)n)        (product in double, then float)
    digests k = 0 .. ks-1 are MD5("<address>-<k>"), each giving 4 points
        point h = d[3+4h]<<24 | d[2+4h]<<16 | d[1+4h]<<8 | d[4h]
  * the points are sorted ascending (weir breaks a tie between two servers by
    server index, libketama's qsort leaves it unspecified);
  * a key hashes to the first 4 bytes of MD5(key), little-endian as above, and
    belongs to the first point >= hash, or to point 0 past the last point
    (ketama_get_server).

weir's additions (the module's documented choices, mirrored here):
  * a server that is not usable sends the key on to the next point (wrapping)
    whose server is usable, so only that server's keys move;
  * backup servers are not on the primary ring; they form a ring of their own
    (same construction over the backups only), used when no primary is usable.

Command line (run with /usr/bin/python3); servers are ADDR[=WEIGHT], weight 1
by default, server numbers are their positions (0-based):
  ketama_reference.py points [--first N] [--last N] [--digest] [--ks] [--c] SERVER...
        the sorted points, "index point server" (--c: as C initializers); --digest
        adds the MD5 of all "point server\n" lines, --ks the digests per server
  ketama_reference.py keys [--down I,J] [--fmt F] [--count N] [--c] SERVER...
        "key hash server" for keys F % i, i < N (default "/key/%d", 200), with the
        servers listed in --down unusable (-1: none usable)
  ketama_reference.py hash KEY...         "hash key"
  ketama_reference.py selftest            libketama's own check (libketama/test.sh):
        the MD5 of ketama_test's output over ketama.servers
"""

import bisect
import hashlib
import math
import struct
import sys


def f32(x):
    """Round a Python float (a C double) to the nearest C float."""
    return struct.unpack("<f", struct.pack("<f", x))[0]


def md5_points(data):
    """The four little-endian 32-bit numbers of MD5(data)."""
    d = hashlib.md5(data).digest()
    return [d[4 * h] | d[4 * h + 1] << 8 | d[4 * h + 2] << 16 | d[4 * h + 3] << 24
            for h in range(4)]


def hashi(key):
    """ketama_hashi: the first 4 bytes of MD5(key), little-endian."""
    if isinstance(key, str):
        key = key.encode()
    return md5_points(key)[0]


def digests_for(weight, total, nservers):
    """ks of ketama_create_continuum, with C's float/double conversions."""
    pct = f32(f32(float(weight)) / f32(float(total)))
    return int(math.floor(f32(pct * 40.0 * f32(float(nservers)))))


def continuum(servers):
    """servers: list of (address, weight). Returns sorted [(point, server_index)]."""
    total = sum(w for _, w in servers)
    n = len(servers)
    pts = []
    for i, (addr, w) in enumerate(servers):
        for k in range(digests_for(w, total, n)):
            for p in md5_points(("%s-%d" % (addr, k)).encode()):
                pts.append((p, i))
    pts.sort()
    return pts


def find(cont, h):
    """Index of the first point >= h, 0 past the end (a plain linear scan)."""
    for idx, (p, _) in enumerate(cont):
        if p >= h:
            return idx
    return 0


def lookup(cont, h, usable=None):
    """Server index for hash h: the point find() gives, walking on to the next
    point whose server is usable. None when no server on the ring is usable."""
    if not cont:
        return None
    start = find(cont, h)
    for step in range(len(cont)):
        srv = cont[(start + step) % len(cont)][1]
        if usable is None or usable(srv):
            return srv
    return None


class Ring:
    """The lb_ketama balancer for one upstream.

    peers: list of dicts {"address", "weight" (default 1), "backup" (default False)},
    in config order; pick() returns a peer index (or None)."""

    def __init__(self, peers):
        self.peers = [dict(address=p["address"], weight=p.get("weight", 1),
                           backup=bool(p.get("backup", False))) for p in peers]
        self.primary = [i for i, p in enumerate(self.peers) if not p["backup"]]
        self.backup = [i for i, p in enumerate(self.peers) if p["backup"]]
        self.pcont = continuum([(self.peers[i]["address"], self.peers[i]["weight"])
                                for i in self.primary])
        self.bcont = continuum([(self.peers[i]["address"], self.peers[i]["weight"])
                                for i in self.backup])

    def pick(self, key, usable=None):
        h = hashi(key)
        ok = usable or (lambda i: True)
        s = lookup(self.pcont, h, lambda j: ok(self.primary[j]))
        if s is not None:
            return self.primary[s]
        s = lookup(self.bcont, h, lambda j: ok(self.backup[j]))
        if s is not None:
            return self.backup[s]
        return None


def _parse_servers(args):
    out = []
    for a in args:
        addr, _, w = a.partition("=")
        out.append((addr, int(w) if w else 1))
    return out


def selftest():
    """libketama's test.sh: ketama_test over ../ketama.servers prints an empty
    ketama_error() line, then "hash point server" for keys "0".."999999"; the
    MD5 of that output must be 5672b131391f5aa2b280936aec1eea74."""
    servers = [("10.0.1.1:11211", 600), ("10.0.1.2:11211", 300), ("10.0.1.3:11211", 200),
               ("10.0.1.4:11211", 350), ("10.0.1.5:11211", 1000), ("10.0.1.6:11211", 800),
               ("10.0.1.7:11211", 950), ("10.0.1.8:11211", 100)]
    cont = continuum(servers)
    keys = [p for p, _ in cont]
    out = hashlib.md5(b"\n")
    for i in range(1000000):
        k = str(i).encode()
        h = hashi(k)
        idx = bisect.bisect_left(keys, h)
        if idx == len(keys):
            idx = 0
        p, s = cont[idx]
        out.update(b"%d %d %s\n" % (h, p, servers[s][0].encode()))
    got = out.hexdigest()
    want = "5672b131391f5aa2b280936aec1eea74"
    print("selftest md5 %s, libketama %s: %s" % (got, want, "OK" if got == want else "FAIL"))
    return 0 if got == want else 1


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    opts = {"--down": "", "--fmt": "/key/%d", "--count": "200", "--first": "0",
            "--last": "0"}
    flags = set()
    while args and args[0].startswith("--"):
        if args[0] in ("--c", "--digest", "--ks"):
            flags.add(args[0])
            args = args[1:]
        elif args[0] in opts and len(args) > 1:
            opts[args[0]] = args[1]
            args = args[2:]
        else:
            raise SystemExit("unknown option " + args[0])
    if cmd == "selftest":
        return selftest()
    if cmd == "hash":
        for k in args:
            print("0x%08x %s" % (hashi(k), k))
        return 0
    servers = _parse_servers(args)
    if cmd == "points":
        cont = continuum(servers)
        if "--ks" in flags:
            total = sum(w for _, w in servers)
            print("/* digests per server: */ " + ", ".join(
                str(digests_for(w, total, len(servers))) for _, w in servers))
        if "--digest" in flags:
            # MD5 over "point server\n" lines, point in decimal
            h = hashlib.md5()
            for p, srv in cont:
                h.update(b"%d %d\n" % (p, srv))
            print("/* %d points, md5 of \"point server\\n\" lines: */ \"%s\"" % (
                len(cont), h.hexdigest()))
        first, last = int(opts["--first"]), int(opts["--last"])
        rows = list(enumerate(cont))
        if first or last:
            rows = rows[:first] + (rows[-last:] if last else [])
        for idx, (p, srv) in rows:
            if "--c" in flags:
                print("    {%d, 0x%08x, %d}," % (idx, p, srv))
            else:
                print("%d 0x%08x %d" % (idx, p, srv))
        return 0
    if cmd == "keys":
        down = {int(x) for x in opts["--down"].split(",") if x}
        cont = continuum(servers)
        for i in range(int(opts["--count"])):
            key = opts["--fmt"] % i
            h = hashi(key)
            srv = lookup(cont, h, lambda j: j not in down)
            srv = -1 if srv is None else srv
            if "--c" in flags:
                print("    {\"%s\", 0x%08x, %d}," % (key, h, srv))
            else:
                print("%s 0x%08x %d" % (key, h, srv))
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
