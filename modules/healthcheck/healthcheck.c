/*
 * Module healthcheck: active health checks of an upstream's servers.
 *
 *     upstreams:
 *       api:
 *         servers: [127.0.0.1:9001, 127.0.0.1:9002]
 *         health_check:
 *           type: http            # http (default) or tcp
 *           path: /health         # http: the target of the GET, default /
 *           host: api.internal    # http: the Host header, default the server
 *                                 #   address's host part ("127.0.0.1", "[::1]",
 *                                 #   "localhost" for unix:)
 *           interval: 2s          # one check per server per interval
 *           timeout: 1s           # for the whole check; at most interval
 *           rise: 2               # consecutive passes that bring a server up
 *           fall: 3               # consecutive failures that take it down
 *           expect_status: 200-399  # http: a code, a range, or a list of both
 *
 * An upstream without health_check is not probed. `health_check: {}` probes
 * with every default.
 *
 * A check: tcp passes when a connect completes within timeout. http sends
 *   GET <path> HTTP/1.1 / Host / Connection: close / User-Agent: weir-healthcheck
 * and passes when the final status line (1xx skipped) arrives within timeout
 * (counted from the start of the connect) and its code is in expect_status.
 * Anything else fails: refused, reset, timed out, closed early, not HTTP.
 *
 * Decisions:
 *  - One prober for the generation: only the primary worker
 *    (weir_worker_is_primary) runs checks, on its loop with weir_timer and
 *    weir_conn_*; nothing blocks. Verdicts reach every worker through the
 *    core's shared peer state (weir_peer_set_down).
 *  - Servers start up (as nginx and HAProxy start them): traffic flows from
 *    the first second, and a dead server takes `fall` checks to go down.
 *  - The rise/fall counters and verdicts live in a shared zone of this
 *    module, not in the prober's memory, so a primary worker that crashes
 *    and is restarted by the master resumes where it was: a server it held
 *    down stays down until `rise` passes, and each change is logged once
 *    (warn when a server goes down, with the reason of the last failure;
 *    notice when it comes back).
 *  - A reload carries the state on when the checked servers are the same:
 *    the zone's name fingerprints them, and a zone of the same name and size
 *    is the running generation's memory (weir_shm_zone). The verdicts are
 *    put into the new generation at conf_done, so its workers start with
 *    them; a changed server list starts fresh (every server up). The old
 *    generation's prober stops starting checks once its worker drains.
 *  - Checks of one server never overlap: the next starts `interval` after
 *    the previous one started (timeout <= interval is required, so a check
 *    always ends first). The first checks of an upstream's servers are
 *    spread over the first interval, so they are not all probed at once.
 *  - Passive failures (core: max_fails within fail_timeout) are a second,
 *    independent source: a server is avoided while either source holds it
 *    down. This module only sets or clears its own verdict.
 *  - Backup servers are checked like the others (so a dead backup is not
 *    used either).
 *  - Every finished check counts in weir_healthcheck_checks_total{upstream,
 *    server, result="ok"|"fail"} (API 1.6: registered at conf_done,
 *    stored and exposed when module metrics is loaded, else a no-op): the
 *    worked example of a module adding a family (README, metrics).
 *  - An upstream with `send_proxy_protocol` (module proxy_protocol): HTTP
 *    checks start with a PROXY header saying UNKNOWN (v1) or LOCAL (v2), so
 *    a server that requires one does not refuse its checks (proxy_preamble).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weir/module.h"

#include "probe.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

enum hc_type { HC_HTTP = 0, HC_TCP };

#define HC_INTERVAL_MIN_MS 10

/* The value of health_check, one per upstream. */
struct hc_check {
    int enabled; /* the key is present */
    enum hc_type type;
    const char *path;
    const char *host; /* NULL: each server's host part */
    uint64_t interval_ms;
    uint64_t timeout_ms;
    unsigned rise, fall;
    struct hc_status_set expect;
    const char *expect_text; /* for messages, e.g. "200-399" */
};

/* Upstream-scope conf struct: the parsed key, then what conf_done builds. */
struct hc_upstream_conf {
    struct hc_check check;
    struct hc_state *state; /* shared zone, one per server of the upstream */
    const char **request;   /* http: the request for each server */
    size_t *request_len;
    weir_metric_t *checks;  /* weir_healthcheck_checks_total */
    int (*series)[2];       /* per server: its fail and ok series */
};

/* ------------------------------------------------------------ config */

static const char *const hc_keys[] = {
    "type", "path", "host", "interval", "timeout", "rise", "fall", "expect_status",
};
#define HC_NKEYS (sizeof(hc_keys) / sizeof(hc_keys[0]))

static const char hc_shape[] = "{type: http, path: /health, interval: 2s, timeout: 1s, rise: 2, "
                               "fall: 3, expect_status: 200-399}";

/* Bytes a target or Host value may not hold: controls, spaces, and for a
 * host the characters that would make it a different URL part. */
static int bad_byte(unsigned char c, const char *extra)
{
    return c <= 0x20 || c >= 0x7f || strchr(extra, c) != NULL;
}

static int parse_path(weir_conf_t *cf, const weir_node_t *v, struct hc_check *hc)
{
    const char *s = weir_node_scalar(v);

    if (s == NULL || *s == '\0')
        return weir_conf_error(cf, v, "health_check.path: expected a path such as /health");
    if (s[0] != '/')
        return weir_conf_error(cf, v,
                               "health_check.path '%s' must start with '/' (e.g. /%s)", s, s);
    for (const char *p = s; *p; p++)
        if (bad_byte((unsigned char)*p, "#"))
            return weir_conf_error(cf, v,
                                   "health_check.path '%s': spaces, control characters, "
                                   "non-ASCII bytes and '#' are not allowed (percent-encode "
                                   "them)",
                                   s);
    hc->path = weir_conf_strdup(cf, s);
    return hc->path ? 0 : weir_conf_error(cf, v, "health_check: out of memory");
}

static int parse_host(weir_conf_t *cf, const weir_node_t *v, struct hc_check *hc)
{
    const char *s = weir_node_scalar(v);

    if (s == NULL || *s == '\0')
        return weir_conf_error(cf, v,
                               "health_check.host: expected a host name such as "
                               "api.internal (or remove it to send each server's address)");
    for (const char *p = s; *p; p++)
        if (bad_byte((unsigned char)*p, "/?#@\"\\<>{}|^`"))
            return weir_conf_error(cf, v,
                                   "health_check.host '%s' is not a valid Host value (a name "
                                   "or address, optionally with :port)",
                                   s);
    hc->host = weir_conf_strdup(cf, s);
    return hc->host ? 0 : weir_conf_error(cf, v, "health_check: out of memory");
}

/* Adds the items of one scalar, "200", "200-399" or "200, 204-206", to the
 * set and to the text kept for messages. */
static int parse_status_scalar(weir_conf_t *cf, const weir_node_t *item, struct hc_check *hc,
                               char *text, size_t textlen)
{
    const char *s = weir_node_scalar(item);
    char part[64], why[128];
    int rc = 0;

    if (s == NULL || *s == '\0')
        return weir_conf_error(cf, item,
                               "health_check.expect_status: expected a status code such as "
                               "200, a range such as 200-399, or a list of them");
    for (const char *p = s; rc == 0;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int lo, hi;

        if (n >= sizeof(part)) {
            rc = weir_conf_error(cf, item,
                                 "health_check.expect_status '%s': an item is too long "
                                 "(expected a code such as 200 or a range such as 200-399)",
                                 s);
            break;
        }
        memcpy(part, p, n);
        part[n] = '\0';
        if (hc_status_item_parse(part, &lo, &hi, why, sizeof(why)) < 0) {
            rc = weir_conf_error(cf, item, "health_check.expect_status '%s': %s", s, why);
            break;
        }
        hc_status_set_add(&hc->expect, lo, hi);
        size_t used = strlen(text);
        if (lo == hi)
            snprintf(text + used, textlen - used, "%s%d", used ? "," : "", lo);
        else
            snprintf(text + used, textlen - used, "%s%d-%d", used ? "," : "", lo, hi);
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return rc;
}

static int parse_expect(weir_conf_t *cf, const weir_node_t *v, struct hc_check *hc)
{
    char text[256] = "";
    int rc = 0;

    memset(&hc->expect, 0, sizeof(hc->expect));
    switch (weir_node_type(v)) {
    case WEIR_NODE_SCALAR:
        rc = parse_status_scalar(cf, v, hc, text, sizeof(text));
        break;
    case WEIR_NODE_SEQUENCE:
        if (weir_node_count(v) == 0)
            return weir_conf_error(cf, v,
                                   "health_check.expect_status: empty list (remove the key "
                                   "for the default 200-399)");
        /* go on after a bad item, so one run reports every bad item */
        for (size_t i = 0; i < weir_node_count(v); i++) {
            const weir_node_t *item = weir_node_child(v, i);
            if (weir_node_type(item) != WEIR_NODE_SCALAR) {
                rc = weir_conf_error(cf, item,
                                     "health_check.expect_status: list items are codes or "
                                     "ranges such as 200 or 200-399");
                continue;
            }
            if (parse_status_scalar(cf, item, hc, text, sizeof(text)) < 0)
                rc = -1;
        }
        break;
    default:
        return weir_conf_error(cf, v,
                               "health_check.expect_status: expected a status code such as "
                               "200, a range such as 200-399, or a list of them");
    }
    if (rc < 0)
        return -1;
    hc->expect_text = weir_conf_strdup(cf, text);
    return hc->expect_text ? 0 : weir_conf_error(cf, v, "health_check: out of memory");
}

static int parse_duration(weir_conf_t *cf, const weir_node_t *v, const char *key, uint64_t *out)
{
    if (weir_node_duration_ms(cf, v, out) < 0)
        return -1;
    char d[WEIR_DURATION_LEN], min[WEIR_DURATION_LEN];
    if (*out < HC_INTERVAL_MIN_MS)
        return weir_conf_error(cf, v, "health_check.%s %s is too short: use at least %s", key,
                               weir_duration_text(*out, d),
                               weir_duration_text(HC_INTERVAL_MIN_MS, min));
    return 0;
}

static int parse_count(weir_conf_t *cf, const weir_node_t *v, unsigned *out)
{
    long x;

    if (weir_node_int(cf, v, 1, 1000, &x) < 0)
        return -1;
    *out = (unsigned)x;
    return 0;
}

static int parse_health_check(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    struct hc_check *hc = field;
    const weir_node_t *seen[HC_NKEYS] = {0};
    int rc = 0;

    if (weir_node_type(node) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, node, "health_check: expected a mapping such as %s "
                               "(or {} for the defaults)",
                               hc_shape);
    *hc = (struct hc_check){
        .enabled = 1,
        .type = HC_HTTP,
        .path = "/",
        .interval_ms = 2000,
        .timeout_ms = 1000,
        .rise = 2,
        .fall = 3,
        .expect_text = "200-399",
    };
    hc_status_set_add(&hc->expect, 200, 399);

    for (size_t i = 0; i < weir_node_count(node); i++) {
        const weir_node_t *k = weir_node_key(node, i), *v = weir_node_child(node, i);
        const char *key = weir_node_scalar(k);
        size_t idx = HC_NKEYS;

        for (size_t j = 0; key != NULL && j < HC_NKEYS; j++)
            if (strcmp(key, hc_keys[j]) == 0)
                idx = j;
        if (idx == HC_NKEYS) {
            const char *s = key ? hc_suggest(key, hc_keys, HC_NKEYS) : NULL;
            if (s != NULL)
                rc = weir_conf_error(cf, k, "health_check: unknown key '%s' (did you mean '%s'?)",
                                     key, s);
            else
                rc = weir_conf_error(cf, k,
                                     "health_check: unknown key '%s' (expected type, path, "
                                     "host, interval, timeout, rise, fall, expect_status)",
                                     key ? key : "?");
            continue;
        }
        if (seen[idx] != NULL) {
            rc = weir_conf_error(cf, k, "health_check: duplicate key '%s' (first at line %u)",
                                 key, weir_node_line(seen[idx]));
            continue;
        }
        seen[idx] = k;
        int r = 0;
        if (strcmp(key, "type") == 0) {
            const char *s = weir_node_scalar(v);
            if (s != NULL && strcmp(s, "http") == 0)
                hc->type = HC_HTTP;
            else if (s != NULL && strcmp(s, "tcp") == 0)
                hc->type = HC_TCP;
            else
                r = weir_conf_error(cf, v, "health_check.type '%s': expected http or tcp",
                                    s ? s : "");
        } else if (strcmp(key, "path") == 0) {
            r = parse_path(cf, v, hc);
        } else if (strcmp(key, "host") == 0) {
            r = parse_host(cf, v, hc);
        } else if (strcmp(key, "interval") == 0) {
            r = parse_duration(cf, v, "interval", &hc->interval_ms);
        } else if (strcmp(key, "timeout") == 0) {
            r = parse_duration(cf, v, "timeout", &hc->timeout_ms);
        } else if (strcmp(key, "rise") == 0) {
            r = parse_count(cf, v, &hc->rise);
        } else if (strcmp(key, "fall") == 0) {
            r = parse_count(cf, v, &hc->fall);
        } else {
            r = parse_expect(cf, v, hc);
        }
        if (r < 0)
            rc = -1;
    }
    if (rc < 0)
        return -1;

    /* cross-checks, reported at the key that would have to change */
    if (hc->type == HC_TCP) {
        static const char *const http_only[] = {"path", "host", "expect_status"};
        for (size_t j = 0; j < 3; j++) {
            for (size_t idx = 0; idx < HC_NKEYS; idx++)
                if (seen[idx] && strcmp(hc_keys[idx], http_only[j]) == 0)
                    rc = weir_conf_error(cf, seen[idx],
                                         "health_check.%s is only used by type: http (remove "
                                         "it, or set type: http)",
                                         http_only[j]);
        }
    }
    if (hc->timeout_ms > hc->interval_ms) {
        const weir_node_t *at = seen[4] ? seen[4] : seen[3] ? seen[3] : node;
        char t[WEIR_DURATION_LEN], i[WEIR_DURATION_LEN];
        rc = weir_conf_error(cf, at,
                             "health_check: timeout (%s) is longer than interval (%s); "
                             "a check must end before the next starts: lower timeout or raise "
                             "interval",
                             weir_duration_text(hc->timeout_ms, t),
                             weir_duration_text(hc->interval_ms, i));
    }
    return rc;
}

/* The host part of a server address as written: "10.0.0.1:80" -> "10.0.0.1",
 * "[::1]:80" -> "[::1]" (a Host value keeps the brackets), "name:80" ->
 * "name", "unix:/path" -> "localhost". */
static void host_part(const char *addr, const char **host, size_t *len)
{
    if (strncmp(addr, "unix:", 5) == 0) {
        *host = "localhost";
        *len = strlen(*host);
        return;
    }
    const char *colon = strrchr(addr, ':');
    const char *close = strrchr(addr, ']');
    *host = addr;
    if (addr[0] == '[' && close != NULL)
        *len = (size_t)(close - addr) + 1;
    else
        *len = colon ? (size_t)(colon - addr) : strlen(addr);
}

/* A server behind `send_proxy_protocol` (module proxy_protocol) refuses a
 * connection without a PROXY header, so an HTTP check sends one too, saying
 * LOCAL (v2) or UNKNOWN (v1): the check is weir's own connection, not a
 * client's (HAProxy's check-send-proxy does the same). The key is the other
 * module's; it is read from the upstream's node, whose meaning it shares. */
static weir_str_t proxy_preamble(const weir_upstream_t *u)
{
    static const char v1[] = "PROXY UNKNOWN\r\n";
    static const char v2[] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00"; /* LOCAL, no address */
    const char *v = weir_node_scalar(weir_node_get(weir_upstream_node(u), "send_proxy_protocol"));
    if (v && strcmp(v, "v1") == 0)
        return (weir_str_t){v1, sizeof(v1) - 1};
    if (v && strcmp(v, "v2") == 0)
        return (weir_str_t){v2, sizeof(v2) - 1};
    return (weir_str_t){NULL, 0};
}

static int build_requests(weir_conf_t *cf, weir_upstream_t *u, struct hc_upstream_conf *c)
{
    size_t n = weir_upstream_peer_count(u);
    weir_str_t pre = proxy_preamble(u);

    c->request = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*c->request));
    c->request_len = weir_conf_alloc(cf, (n ? n : 1) * sizeof(*c->request_len));
    if (c->request == NULL || c->request_len == NULL)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const char *host = c->check.host;
        size_t hlen = host ? strlen(host) : 0;
        if (host == NULL)
            host_part(weir_peer_address(u, i), &host, &hlen);
        static const char fmt[] = "GET %s HTTP/1.1\r\nHost: %.*s\r\nConnection: close\r\n"
                                  "User-Agent: weir-healthcheck\r\n\r\n";
        int len = snprintf(NULL, 0, fmt, c->check.path, (int)hlen, host);
        char *req = len < 0 ? NULL : weir_conf_alloc(cf, pre.len + (size_t)len + 1);
        if (req == NULL)
            return -1;
        if (pre.len)
            memcpy(req, pre.data, pre.len);
        snprintf(req + pre.len, (size_t)len + 1, fmt, c->check.path, (int)hlen, host);
        c->request[i] = req;
        c->request_len[i] = pre.len + (size_t)len;
    }
    return 0;
}

static uint64_t fnv1a(uint64_t h, const char *s)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return (h ^ 0xff) * 0x100000001b3ull; /* a separator between strings */
}

/* The state is indexed by position: the name fingerprints the checked
 * upstreams and their servers, so only the same layout carries it on. */
static void zone_name(weir_conf_t *cf, char *buf, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t k = 0; k < weir_conf_upstream_count(cf); k++) {
        weir_upstream_t *u = weir_conf_upstream(cf, k);
        const struct hc_upstream_conf *c = weir_upstream_conf(u, &weir_module);
        if (c == NULL || !c->check.enabled)
            continue;
        h = fnv1a(h, weir_upstream_name(u));
        for (size_t i = 0; i < weir_upstream_peer_count(u); i++)
            h = fnv1a(h, weir_peer_address(u, i));
    }
    snprintf(buf, len, "healthcheck.state.%016llx", (unsigned long long)h);
}

/* One family for the generation, a fail and an ok series per checked
 * server. */
static int register_metrics(weir_conf_t *cf, weir_upstream_t *u, struct hc_upstream_conf *c,
                            weir_metric_t **family)
{
    if (!*family)
        *family = weir_metric_new(cf, "weir_healthcheck_checks_total", WEIR_METRIC_COUNTER,
                                  "finished active health checks, by result",
                                  (const char *const[]){"upstream", "server", "result", NULL},
                                  NULL);
    size_t n = weir_upstream_peer_count(u);
    c->checks = *family;
    c->series = weir_conf_alloc(cf, (n + 1) * sizeof(*c->series));
    if (!*family)
        return -1;
    if (!c->series)
        return weir_conf_error(cf, weir_upstream_node(u), "health_check: out of memory");
    for (size_t i = 0; i < n; i++) {
        for (int ok = 0; ok < 2; ok++) {
            const char *v[] = {weir_upstream_name(u), weir_peer_address(u, i), ok ? "ok" : "fail"};
            if ((c->series[i][ok] = weir_metric_series(cf, *family, v)) < 0)
                return -1;
        }
    }
    return 0;
}

static int hc_conf_done(weir_conf_t *cf)
{
    size_t total = 0;
    weir_metric_t *family = NULL;

    for (size_t k = 0; k < weir_conf_upstream_count(cf); k++) {
        weir_upstream_t *u = weir_conf_upstream(cf, k);
        const struct hc_upstream_conf *c = weir_upstream_conf(u, &weir_module);
        if (c != NULL && c->check.enabled)
            total += weir_upstream_peer_count(u);
    }
    if (total == 0)
        return 0;
    /* The verdicts outlive a restart of the primary worker and a reload
     * (see the top). */
    char name[64];
    zone_name(cf, name, sizeof(name));
    struct hc_state *zone = weir_shm_zone(cf, name, total * sizeof(*zone));
    if (zone == NULL)
        return -1;
    for (size_t k = 0; k < weir_conf_upstream_count(cf); k++) {
        weir_upstream_t *u = weir_conf_upstream(cf, k);
        struct hc_upstream_conf *c = weir_upstream_conf(u, &weir_module);
        if (c == NULL || !c->check.enabled)
            continue;
        c->state = zone;
        for (size_t i = 0; i < weir_upstream_peer_count(u); i++)
            if (zone[i].down) /* carried from the running generation */
                weir_peer_set_down(u, i, 1);
        zone += weir_upstream_peer_count(u);
        /* the http check speaks HTTP/1.1; a gRPC server would refuse it */
        if (c->check.type == HC_HTTP && strcmp(weir_upstream_protocol(u), "http/1.1") != 0)
            return weir_conf_error(cf, weir_upstream_node(u),
                                   "health_check: type http speaks HTTP/1.1, and upstream '%s' "
                                   "says protocol: h2; use type: tcp",
                                   weir_upstream_name(u));
        if (c->check.type == HC_HTTP && build_requests(cf, u, c) < 0)
            return weir_conf_error(cf, weir_upstream_node(u), "health_check: out of memory");
        if (register_metrics(cf, u, c, &family) < 0)
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ prober */

enum hc_step { STEP_CONNECT, STEP_SEND, STEP_RECV };

/* One checked server in the primary worker. */
struct hc_probe {
    const weir_upstream_t *u;
    const struct hc_upstream_conf *c;
    size_t i;
    weir_timer_t *timer;
    weir_conn_t *conn; /* while a check runs */
    uint64_t started;  /* monotonic ms of the current check */
    size_t have;       /* bytes of the answer in buf */
    char buf[1024];
};

static struct hc_probe *probes;
static size_t nprobes;

static const char *const step_words[] = {
    [STEP_CONNECT] = "connecting",
    [STEP_SEND] = "sending the request",
    [STEP_RECV] = "waiting for the status line",
};

/* Ends the current check with a verdict; logs a change of state once and
 * schedules the next check `interval` after this one started. */
static void probe_done(struct hc_probe *p, int ok, const char *reason)
{
    const struct hc_check *hc = &p->c->check;
    struct hc_state *st = &p->c->state[p->i];
    const char *name = weir_upstream_name(p->u), *addr = weir_peer_address(p->u, p->i);

    if (p->conn != NULL) {
        weir_conn_close(p->conn);
        p->conn = NULL;
    }
    weir_metric_add(p->c->checks, p->c->series[p->i][!!ok], 1);
    if (!ok)
        weir_log(&weir_module, WEIR_LOG_DEBUG, "upstream %s: server %s: check failed: %s", name,
                 addr, reason);
    switch (hc_state_record(st, ok, hc->rise, hc->fall)) {
    case HC_WENT_DOWN:
        weir_peer_set_down(p->u, p->i, 1);
        weir_log(&weir_module, WEIR_LOG_WARN,
                 "upstream %s: server %s is down after %u failed checks (last: %s)", name, addr,
                 hc->fall, reason);
        break;
    case HC_WENT_UP:
        weir_peer_set_down(p->u, p->i, 0);
        weir_log(&weir_module, WEIR_LOG_NOTICE,
                 "upstream %s: server %s is up after %u passed checks", name, addr, hc->rise);
        break;
    case HC_SAME:
        break;
    }
    /* a draining worker's generation was replaced: its prober checks there */
    if (weir_worker_draining())
        return;
    uint64_t now = weir_monotonic_ms(), next = p->started + hc->interval_ms;
    weir_timer_start(p->timer, next > now ? next - now : 0);
}

/* Time left of the check's timeout; 0 when it is spent. */
static uint64_t time_left(const struct hc_probe *p)
{
    uint64_t end = p->started + p->c->check.timeout_ms, now = weir_monotonic_ms();
    return end > now ? end - now : 0;
}

static void probe_fail(struct hc_probe *p, enum hc_step step, long res)
{
    char why[160], d[WEIR_DURATION_LEN];

    if (res == -ETIMEDOUT)
        snprintf(why, sizeof(why), "timed out after %s %s",
                 weir_duration_text(p->c->check.timeout_ms, d), step_words[step]);
    else
        snprintf(why, sizeof(why), "%s: %s", step_words[step], strerror((int)-res));
    probe_done(p, 0, why);
}

static void on_recv(weir_conn_t *conn, long res, void *arg);

static void recv_more(struct hc_probe *p)
{
    uint64_t left = time_left(p);

    if (left == 0) {
        probe_fail(p, STEP_RECV, -ETIMEDOUT);
        return;
    }
    if (weir_conn_recv(p->conn, p->buf + p->have, sizeof(p->buf) - p->have, left, on_recv, p) < 0)
        probe_done(p, 0, "internal error: receive refused");
}

static void on_recv(weir_conn_t *conn, long res, void *arg)
{
    struct hc_probe *p = arg;
    char why[160];
    int status;

    (void)conn;
    if (res < 0) {
        probe_fail(p, STEP_RECV, res);
        return;
    }
    if (res == 0) {
        probe_done(p, 0, p->have ? "connection closed inside the status line"
                                 : "connection closed before any response");
        return;
    }
    p->have += (size_t)res;
    switch (hc_scan_status(p->buf, p->have, &status)) {
    case HC_SCAN_STATUS:
        if (hc_status_set_has(&p->c->check.expect, status)) {
            probe_done(p, 1, "passed");
        } else {
            snprintf(why, sizeof(why), "status %d, expected %s", status,
                     p->c->check.expect_text);
            probe_done(p, 0, why);
        }
        return;
    case HC_SCAN_INVALID:
        probe_done(p, 0, "the answer is not an HTTP/1.x status line");
        return;
    case HC_SCAN_MORE:
        break;
    }
    if (p->have == sizeof(p->buf)) {
        snprintf(why, sizeof(why), "no final status line in the first %zu bytes", sizeof(p->buf));
        probe_done(p, 0, why);
        return;
    }
    recv_more(p);
}

static void on_sent(weir_conn_t *conn, long res, void *arg)
{
    struct hc_probe *p = arg;

    (void)conn;
    if (res < 0) {
        probe_fail(p, STEP_SEND, res);
        return;
    }
    recv_more(p);
}

static void on_connect(weir_conn_t *conn, long res, void *arg)
{
    struct hc_probe *p = arg;

    (void)conn;
    if (res < 0) {
        probe_fail(p, STEP_CONNECT, res);
        return;
    }
    if (p->c->check.type == HC_TCP) {
        probe_done(p, 1, "passed");
        return;
    }
    uint64_t left = time_left(p);
    if (left == 0) {
        probe_fail(p, STEP_SEND, -ETIMEDOUT);
        return;
    }
    if (weir_conn_send(p->conn, p->c->request[p->i], p->c->request_len[p->i], left, on_sent, p) <
        0)
        probe_done(p, 0, "internal error: send refused");
}

static void probe_start(void *arg)
{
    struct hc_probe *p = arg;
    socklen_t len = 0;
    const struct sockaddr *sa = weir_peer_sockaddr(p->u, p->i, &len);
    char why[160];

    if (weir_worker_draining())
        return;
    p->started = weir_monotonic_ms();
    p->have = 0;
    if (sa == NULL) {
        probe_done(p, 0, "the server has no address");
        return;
    }
    p->conn = weir_conn_connect(sa, len, p->c->check.timeout_ms, on_connect, p);
    if (p->conn == NULL) {
        snprintf(why, sizeof(why), "cannot open a socket: %s", strerror(errno));
        probe_done(p, 0, why);
    }
}

static void hc_worker_exit(const weir_conf_t *cf)
{
    (void)cf;
    for (size_t k = 0; k < nprobes; k++) {
        /* The loop has stopped: a pending operation is only cancelled, so its
         * buffer (p->buf) is never written after this. */
        if (probes[k].conn != NULL)
            weir_conn_close(probes[k].conn);
        weir_timer_free(probes[k].timer);
    }
    free(probes);
    probes = NULL;
    nprobes = 0;
}

static int hc_worker_init(const weir_conf_t *cf)
{
    size_t n = 0, nups = 0;

    if (!weir_worker_is_primary())
        return 0;
    for (size_t k = 0; k < weir_conf_upstream_count(cf); k++) {
        const weir_upstream_t *u = weir_conf_upstream(cf, k);
        const struct hc_upstream_conf *c = weir_upstream_conf(u, &weir_module);
        if (c != NULL && c->check.enabled) {
            n += weir_upstream_peer_count(u);
            nups++;
        }
    }
    if (n == 0)
        return 0;
    probes = calloc(n, sizeof(*probes));
    if (probes == NULL) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "out of memory for %zu probes", n);
        return -1;
    }
    for (size_t k = 0; k < weir_conf_upstream_count(cf); k++) {
        const weir_upstream_t *u = weir_conf_upstream(cf, k);
        const struct hc_upstream_conf *c = weir_upstream_conf(u, &weir_module);
        size_t npeers = weir_upstream_peer_count(u);
        if (c == NULL || !c->check.enabled)
            continue;
        for (size_t i = 0; i < npeers; i++) {
            struct hc_probe *p = &probes[nprobes];
            *p = (struct hc_probe){.u = u, .c = c, .i = i};
            p->timer = weir_timer_new(probe_start, p);
            if (p->timer == NULL) {
                weir_log(&weir_module, WEIR_LOG_ERROR, "out of memory for probe timers");
                hc_worker_exit(cf);
                return -1;
            }
            nprobes++;
            /* A server the checks hold down (from before a restart of this
             * worker) is held down in the core too. */
            if (c->state[i].down)
                weir_peer_set_down(u, i, 1);
            /* spread the first checks of the upstream over one interval */
            weir_timer_start(p->timer, c->check.interval_ms * i / npeers);
        }
    }
    weir_log(&weir_module, WEIR_LOG_INFO, "checking %zu servers of %zu upstreams", n, nups);
    return 0;
}

static const weir_directive_t hc_directives[] = {
    {
        .key = "health_check",
        .scopes = WEIR_SCOPE_UPSTREAM,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(struct hc_upstream_conf, check),
        .size = sizeof(struct hc_check),
        .parse = parse_health_check,
        .help = "active checks: {type: http|tcp, path: /, host, interval: 2s, timeout: 1s, "
                "rise: 2, fall: 3, expect_status: 200-399}",
    },
    {.key = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "healthcheck",
    .version = "1.0.0",
    .conf_size = {[WEIR_SCOPE_INDEX_UPSTREAM] = sizeof(struct hc_upstream_conf)},
    .directives = hc_directives,
    .conf_done = hc_conf_done,
    .worker_init = hc_worker_init,
    .worker_exit = hc_worker_exit,
};
