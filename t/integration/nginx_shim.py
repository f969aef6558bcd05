#!/usr/bin/python3
"""Stand-in for weir, used only to validate the harness: WEIR_TEST_PROXY=nginx.

Accepts `-c weir.yaml -M DIR`, translates the subset of weir's YAML the tests
write into an nginx.conf next to it and execs `nginx -g 'daemon off;'`.
Not every weir feature has an nginx equivalent (methods, strict parsing, 503 on
all-down, ...); tests for those are expected to fail under the shim.
"""
import os
import sys

import yaml


def dur(v):
    return str(v)


def main():
    args = sys.argv[1:]
    conf = None
    i = 0
    while i < len(args):
        if args[i] == "-c":
            conf = args[i + 1]
            i += 2
        elif args[i] == "-M":
            i += 2
        else:
            i += 1
    cfg = yaml.safe_load(open(conf))
    d = os.path.dirname(os.path.abspath(conf))
    lim = cfg.get("limits") or {}
    out = ["worker_processes %s;" % cfg.get("workers", 1),
           "pid %s;" % cfg.get("pid_file", os.path.join(d, "weir.pid")),
           "error_log stderr info;", "user root;",
           "events { worker_connections 4096; }", "http {",
           "access_log off;",
           "client_body_temp_path %s/cb; proxy_temp_path %s/pt;" % (d, d),
           "proxy_http_version 1.1; proxy_set_header Connection \"\";",
           "proxy_set_header Host $http_host; proxy_buffering off;",
           "proxy_request_buffering off; client_max_body_size 0;",
           "proxy_next_upstream error timeout;"]
    if "client_header_timeout" in lim:
        out.append("client_header_timeout %s;" % dur(lim["client_header_timeout"]))
    if "max_header_size" in lim:
        out.append("large_client_header_buffers 4 %s; client_header_buffer_size 1k;"
                   % lim["max_header_size"])
    for name, u in (cfg.get("upstreams") or {}).items():
        out.append("upstream %s {" % name)
        for s in u.get("servers", []):
            if isinstance(s, str):
                s = {"address": s}
            extra = " weight=%d" % s.get("weight", 1)
            extra += " max_fails=%s fail_timeout=%s" % (u.get("max_fails", 1),
                                                          u.get("fail_timeout", "10s"))
            if s.get("backup"):
                extra += " backup"
            out.append("server %s%s;" % (s["address"], extra))
        out.append("keepalive %s;" % u.get("keepalive", 128))
        out.append("}")
    hosts = {}
    for r in cfg.get("routes") or []:
        h = r.get("host")
        key = tuple(h) if isinstance(h, list) else (h,)
        hosts.setdefault(key, []).append(r)
    port = cfg["listeners"][0]["address"]
    for key, routes in hosts.items():
        out.append("server {")
        out.append("listen %s%s;" % (port, " default_server" if key == (None,) else ""))
        if key != (None,):
            out.append("server_name %s;" % " ".join(key))
        for r in routes:
            p = r.get("path", "/")
            if p.startswith("="):
                loc = "= " + p[1:]
            elif p.startswith("^~"):
                loc = "^~ " + p[2:]
            elif p.startswith("~*"):
                loc = "~* \"%s\"" % p[2:]
            elif p.startswith("~"):
                loc = "~ \"%s\"" % p[1:]
            else:
                loc = p
            u = (cfg.get("upstreams") or {}).get(r["upstream"], {})
            out.append("location %s { proxy_pass http://%s;" % (loc, r["upstream"]))
            for k, nk in (("read_timeout", "proxy_read_timeout"),
                          ("connect_timeout", "proxy_connect_timeout")):
                if k in u:
                    out.append("%s %s;" % (nk, u[k]))
            if "retries" in u:
                out.append("proxy_next_upstream_tries %d;" % (int(u["retries"]) + 1))
            out.append("}")
        out.append("}")
    out.append("}")
    ngx = os.path.join(d, "nginx.conf")
    with open(ngx, "w") as f:
        f.write("\n".join(out) + "\n")
    os.execv("/usr/sbin/nginx", ["nginx", "-c", ngx, "-p", d, "-g", "daemon off;"])


if __name__ == "__main__":
    main()
