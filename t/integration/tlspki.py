"""Throwaway PKI for the TLS tests, made with the openssl command line.

    pki = Pki(tmp_path)                       # a directory of its own
    ca = pki.ca("Test CA")                    # self-signed root
    leaf = pki.leaf(ca, "a.test", sans=["DNS:a.test", "DNS:*.w.test"], key="ec")
    leaf.cert, leaf.key, leaf.chain          # paths: cert alone, key, cert + CA
    client = pki.leaf(ca, "alice", client=True)
    old = pki.leaf(ca, "old.test", expired=True)

key is "ec" (P-256) or "rsa" (2048). Certificates are cached per process by
their parameters (key generation is the slow part), copied into each Pki
directory on demand.
"""
import os
import shutil
import subprocess
import tempfile

_CACHE = tempfile.mkdtemp(prefix="weir-pki-")
_made = {}


def _run(*args):
    p = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (" ".join(args), p.stderr.decode()))


class Cert:
    def __init__(self, d, name):
        self.name = name
        self.cert = os.path.join(d, name + ".pem")
        self.key = os.path.join(d, name + ".key")
        self.chain = os.path.join(d, name + ".chain.pem")


def _keygen(path, key):
    if key == "ec":
        _run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path)
    else:
        _run("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path)


def _make_ca(d, tag, cn, key):
    c = Cert(d, tag)
    _keygen(c.key, key)
    _run("req", "-x509", "-new", "-key", c.key, "-out", c.cert, "-days", "3650", "-subj",
         "/CN=" + cn, "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    shutil.copy(c.cert, c.chain)
    return c


def _make_leaf(d, tag, ca, cn, sans, key, client, expired):
    c = Cert(d, tag)
    _keygen(c.key, key)
    csr = os.path.join(d, tag + ".csr")
    _run("req", "-new", "-key", c.key, "-out", csr, "-subj", "/CN=" + cn)
    ext = os.path.join(d, tag + ".ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        f.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        if sans:
            f.write("subjectAltName=%s\n" % ",".join(sans))
    args = ["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial",
            "-out", c.cert, "-extfile", ext, "-sha256"]
    if expired:
        # valid for one day, ten days ago (openssl 3.0's x509 has no -not_before)
        _run("ca", "-batch", "-config", _ca_config(d, ca), "-in", csr, "-out", c.cert,
             "-startdate", "20200101000000Z", "-enddate", "20200102000000Z",
             "-extfile", ext, "-notext")
    else:
        _run(*(args + ["-days", "825"]))
    with open(c.chain, "w") as out:
        out.write(open(c.cert).read())
        out.write(open(ca.cert).read())
    return c


def _ca_config(d, ca):
    db = os.path.join(d, "ca-db")
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "a").close()
    serial = os.path.join(db, "serial")
    if not os.path.exists(serial):
        with open(serial, "w") as f:
            f.write("1000\n")
    path = os.path.join(d, "ca.cnf")
    with open(path, "w") as f:
        f.write("[ca]\ndefault_ca=d\n[d]\ndir=%s\ndatabase=$dir/index.txt\nserial=$dir/serial\n"
                "new_certs_dir=$dir\ncertificate=%s\nprivate_key=%s\ndefault_md=sha256\n"
                "policy=p\nunique_subject=no\n[p]\ncommonName=supplied\n"
                % (db, ca.cert, ca.key))
    return path


def _cached(tag, make):
    if tag not in _made:
        _made[tag] = make(_CACHE)
    return _made[tag]


class Pki:
    def __init__(self, directory):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)

    def _copy(self, c):
        out = Cert(self.dir, c.name)
        for a in ("cert", "key", "chain"):
            if not os.path.exists(getattr(out, a)):
                shutil.copy(getattr(c, a), getattr(out, a))
        return out

    def ca(self, cn="weir test CA", key="ec"):
        tag = "ca-%s-%s" % (cn.replace(" ", "_"), key)
        return self._copy(_cached(tag, lambda d: _make_ca(d, tag, cn, key)))

    def leaf(self, ca, cn, sans=None, key="ec", client=False, expired=False):
        if sans is None and not client:
            sans = ["DNS:" + cn]
        tag = "leaf-%s-%s-%s-%s-%s-%s" % (ca.name, cn.replace("*", "star"), key, int(client),
                                          int(expired), abs(hash(tuple(sans or ()))))
        src = _cached(tag, lambda d: _make_leaf(d, tag, Cert(_CACHE, ca.name), cn, sans, key,
                                                client, expired))
        return self._copy(src)
