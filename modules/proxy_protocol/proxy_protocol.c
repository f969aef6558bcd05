/*
 * Module proxy_protocol: the PROXY protocol (v1 and v2) on both sides.
 *
 *   listeners:
 *     - address: 0.0.0.0:8443
 *       proxy_protocol: true              # read a PROXY header first
 *       proxy_protocol_from: [10.0.0.0/8] # only from these peers (optional)
 *   upstreams:
 *     app:
 *       send_proxy_protocol: v2           # v1 or v2, on each new connection
 *
 * Listener side. In the accept phase the module attaches a transport whose
 * handshake reads the header before any HTTP byte: $remote_addr,
 * $remote_port, $server_addr and $server_port become what it says (LOCAL and
 * UNKNOWN keep the socket's). A missing, malformed or truncated header
 * closes the connection with nothing forwarded, and so does one that is not
 * complete within client_header_timeout (the core's handshake limit); each
 * is logged (a truncated or slow one when the connection goes; one that
 * sent nothing at all, as a TCP check does, is not). Then
 * the transport steps aside: the bytes after the header are HTTP on the
 * core's plain path. Refusals are logged at most once a second, with a count
 * of those not logged: one line per connection would let a scanner flood
 * the error log.
 *
 * With proxy_protocol_from, a peer outside the list is served as if the
 * listener had no proxy_protocol (as HAProxy's `expect-proxy` under an ACL):
 * its connection is plain HTTP, and a PROXY line it sends is a bad request.
 * So an untrusted client can never choose its own $remote_addr.
 *
 * Upstream side. Before the first request on every new upstream connection
 * weir sends a header with the client's addresses as weir sees them (after a
 * PROXY header read on the listener). Such connections are pooled apart by
 * that header: the module makes the header bytes the pool key (API 1.3), so
 * a pooled connection is reused only for the same client connection's
 * addresses and ports, in practice by the next requests of that same
 * client. Pooling them together would make the upstream attribute one
 * client's requests to another; not pooling them at all would cost a new
 * connection per request to a keepalive client.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir/module.h>

#include "pp_wire.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

#define MAX_CIDRS 64

typedef struct cidr {
    int family;
    unsigned char addr[16];
    unsigned bits;
} cidr_t;

typedef struct cidr_list {
    size_t n;
    cidr_t *items;
} cidr_list_t;

typedef struct listener_conf {
    int enabled;
    cidr_list_t from;
} listener_conf_t;

typedef struct upstream_conf {
    long send_version; /* 0: off */
} upstream_conf_t;

/* ------------------------------------------------------------- config */

static int parse_cidr(const char *text, cidr_t *out)
{
    char buf[INET6_ADDRSTRLEN + 8];
    if (strlen(text) >= sizeof(buf))
        return -1;
    strcpy(buf, text);
    char *slash = strchr(buf, '/');
    long bits = -1;
    if (slash) {
        char *end;
        *slash = '\0';
        if (slash[1] < '0' || slash[1] > '9') /* strtol would skip spaces, take a sign */
            return -1;
        errno = 0;
        bits = strtol(slash + 1, &end, 10);
        if (errno || *end || end == slash + 1 || bits < 0)
            return -1;
    }
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        if (bits > 32)
            return -1;
        out->bits = bits < 0 ? 32 : (unsigned)bits;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        if (bits > 128)
            return -1;
        out->bits = bits < 0 ? 128 : (unsigned)bits;
        return 0;
    }
    return -1;
}

static int parse_from(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    cidr_list_t *list = field;
    if (weir_node_type(node) != WEIR_NODE_SEQUENCE)
        return weir_conf_error(cf, node, "proxy_protocol_from must be a list of addresses or "
                                         "CIDR blocks, e.g. [10.0.0.0/8, \"::1\"]");
    size_t n = weir_node_count(node);
    if (n == 0)
        return weir_conf_error(cf, node, "proxy_protocol_from is empty: list the peers that "
                                         "send a PROXY header, or remove the key to accept "
                                         "one from any peer");
    if (n > MAX_CIDRS)
        return weir_conf_error(cf, node, "proxy_protocol_from: at most %d entries", MAX_CIDRS);
    list->items = weir_conf_alloc(cf, (n ? n : 1) * sizeof(cidr_t));
    if (!list->items)
        return weir_conf_error(cf, node, "out of memory");
    for (size_t i = 0; i < n; i++) {
        const weir_node_t *item = weir_node_child(node, i);
        const char *text = weir_node_scalar(item);
        if (!text || parse_cidr(text, &list->items[i]) < 0)
            return weir_conf_error(cf, item,
                                   "'%s' is not an IPv4 or IPv6 address or CIDR block "
                                   "(e.g. 10.0.0.0/8, 2001:db8::/32)",
                                   text ? text : "");
    }
    list->n = n;
    return 0;
}

static int parse_send(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    long *v = field;
    const char *text = weir_node_scalar(node);
    if (text && strcmp(text, "v1") == 0)
        *v = 1;
    else if (text && strcmp(text, "v2") == 0)
        *v = 2;
    else
        return weir_conf_error(cf, node, "send_proxy_protocol must be v1 or v2, got '%s'",
                               text ? text : "");
    return 0;
}

/* proxy_protocol_from without proxy_protocol: true is a mistake worth
 * naming (the list would silently do nothing). */
static int conf_done(weir_conf_t *cf)
{
    int rc = 0;
    for (size_t i = 0; i < weir_conf_listener_count(cf); i++) {
        weir_listener_t *l = weir_conf_listener(cf, i);
        const listener_conf_t *lc = weir_listener_conf(l, &weir_module);
        if (lc && lc->from.n && !lc->enabled)
            rc = weir_conf_error(cf, weir_node_get(weir_listener_node(l), "proxy_protocol_from"),
                                 "proxy_protocol_from on listener %s needs proxy_protocol: true",
                                 weir_listener_name(l));
    }
    return rc;
}

/* ------------------------------------------------------ refusal logging */

static struct {
    uint64_t window_start;
    unsigned long suppressed;
} refusals;

static void addr_text(const struct sockaddr *sa, char *out, size_t cap)
{
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
    else
        snprintf(out, cap, "unix:");
}

/* At most one line a second; the next line says how many were not logged. */
static void log_refusal(weir_connection_t *c, const char *why)
{
    uint64_t now = weir_monotonic_ms();
    if (refusals.window_start && now - refusals.window_start < 1000) {
        refusals.suppressed++;
        return;
    }
    char peer[INET6_ADDRSTRLEN];
    addr_text(weir_connection_client_addr(c), peer, sizeof(peer));
    if (refusals.suppressed)
        weir_log(&weir_module, WEIR_LOG_WARN,
                 "connection from %s closed: %s (and %lu more refused since the last line)", peer,
                 why, refusals.suppressed);
    else
        weir_log(&weir_module, WEIR_LOG_WARN, "connection from %s closed: %s", peer, why);
    refusals.window_start = now;
    refusals.suppressed = 0;
}

/* -------------------------------------------------- the reading transport */

/* What came before the header was parsed: at most PP_PARSE_MAX bytes are
 * needed for an answer, plus one receive's worth that may follow it. */
#define PP_BUFFER_MAX (PP_PARSE_MAX + 65536)

typedef struct reader {
    char *buf;
    size_t len, cap, off; /* after the handshake: buf[off..len) is HTTP */
    int done, refused;
    weir_connection_t *conn; /* for the log line of a header that never came */
} reader_t;

static int reader_input(void *state, const char *data, size_t len)
{
    reader_t *rd = state;
    if (rd->len + len > PP_BUFFER_MAX)
        return WEIR_TRANSPORT_ERROR;
    if (rd->len + len > rd->cap) {
        size_t cap = rd->cap ? rd->cap : 512;
        while (cap < rd->len + len)
            cap *= 2;
        char *p = realloc(rd->buf, cap);
        if (!p)
            return WEIR_TRANSPORT_ERROR;
        rd->buf = p;
        rd->cap = cap;
    }
    memcpy(rd->buf + rd->len, data, len);
    rd->len += len;
    return 0;
}

static int reader_handshake(weir_connection_t *c, void *state)
{
    reader_t *rd = state;
    pp_result_t res;
    ssize_t n = pp_parse(rd->buf, rd->len, &res);
    if (n == 0)
        return WEIR_TRANSPORT_AGAIN;
    if (n < 0) {
        char why[96];
        snprintf(why, sizeof(why), "invalid PROXY protocol header (%s)", pp_strerror((int)n));
        log_refusal(c, why);
        rd->refused = 1;
        return WEIR_TRANSPORT_ERROR;
    }
    if (!res.local &&
        weir_connection_set_addresses(c, (const struct sockaddr *)&res.src,
                                      (const struct sockaddr *)&res.dst) < 0) {
        log_refusal(c, "PROXY protocol addresses not usable");
        rd->refused = 1;
        return WEIR_TRANSPORT_ERROR;
    }
    rd->off = (size_t)n;
    rd->done = 1;
    return WEIR_TRANSPORT_DETACH;
}

/* After the handshake: the bytes that followed the header, then nothing (the
 * core drops the transport once it has them). */
static long reader_read(void *state, char *buf, size_t cap)
{
    reader_t *rd = state;
    size_t n = rd->len - rd->off;
    if (!rd->done || !n)
        return WEIR_TRANSPORT_AGAIN;
    if (n > cap)
        n = cap;
    memcpy(buf, rd->buf + rd->off, n);
    rd->off += n;
    return (long)n;
}

static long reader_write(void *state, const char *data, size_t len)
{
    (void)state, (void)data, (void)len;
    return WEIR_TRANSPORT_ERROR; /* nothing is sent before the header is read */
}

static size_t reader_output(void *state, char *buf, size_t cap)
{
    (void)state, (void)buf, (void)cap;
    return 0;
}

/* The transport goes with its connection, or when it stepped aside. A
 * header begun and never completed (the peer closed, or
 * client_header_timeout passed) is a refusal too, logged like the others; a
 * connection that sent nothing at all is not (load balancers' TCP checks
 * and port probes do just that, all day). */
static void reader_free(void *state)
{
    reader_t *rd = state;
    if (!rd->done && !rd->refused && rd->conn && rd->len)
        log_refusal(rd->conn, "truncated PROXY protocol header (the peer closed, or "
                              "client_header_timeout passed)");
    free(rd->buf);
    free(rd);
}

static const weir_transport_t reader_transport = {
    .name = "proxy_protocol",
    .input = reader_input,
    .handshake = reader_handshake,
    .read = reader_read,
    .write = reader_write,
    .output = reader_output,
    .free = reader_free,
};

static int cidr_match(const cidr_t *n, const struct sockaddr *sa)
{
    const unsigned char *a;
    if (sa->sa_family == AF_INET && n->family == AF_INET)
        a = (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr;
    else if (sa->sa_family == AF_INET6 && n->family == AF_INET6)
        a = (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    else
        return 0;
    unsigned full = n->bits / 8, rest = n->bits % 8;
    if (memcmp(a, n->addr, full) != 0)
        return 0;
    if (!rest)
        return 1;
    unsigned char mask = (unsigned char)(0xff << (8 - rest));
    return (a[full] & mask) == (n->addr[full] & mask);
}

static int trusted(const listener_conf_t *lc, weir_connection_t *c)
{
    if (!lc->from.n)
        return 1;
    const struct sockaddr *peer = weir_connection_client_addr(c);
    for (size_t i = 0; i < lc->from.n; i++)
        if (peer && cidr_match(&lc->from.items[i], peer))
            return 1;
    return 0;
}

static weir_result_t on_accept(weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    const weir_listener_t *l = weir_connection_listener(c);
    const listener_conf_t *lc = l ? weir_listener_conf(l, &weir_module) : NULL;
    if (!lc || !lc->enabled || !trusted(lc, c))
        return WEIR_CONTINUE;
    reader_t *rd = calloc(1, sizeof(*rd));
    if (rd) {
        rd->conn = c;
        /* looked up now, while the socket is open: a refusal logged when the
         * connection is freed names the peer too */
        (void)weir_connection_client_addr(c);
    }
    if (!rd || weir_connection_set_transport(c, &reader_transport, rd) < 0) {
        free(rd);
        weir_log(&weir_module, WEIR_LOG_ERROR, "cannot read a PROXY header: out of memory");
        return WEIR_ERROR;
    }
    return WEIR_CONTINUE;
}

/* ------------------------------------------------------- the sending side */

static const upstream_conf_t *send_conf(const weir_request_t *r)
{
    const weir_upstream_t *u = weir_request_upstream(r);
    const upstream_conf_t *uc = u ? weir_upstream_conf(u, &weir_module) : NULL;
    return uc && uc->send_version ? uc : NULL;
}

static ssize_t header_for(weir_request_t *r, long version, char *out)
{
    return pp_build((int)version, weir_request_client_addr(r), weir_request_server_addr(r), out,
                    PP_MAX_HEADER);
}

/* The pool key: the header itself (see the top of this file). */
static weir_result_t on_upstream_request(weir_request_t *r)
{
    const upstream_conf_t *uc = send_conf(r);
    if (!uc)
        return WEIR_CONTINUE;
    char hdr[PP_MAX_HEADER];
    ssize_t n = header_for(r, uc->send_version, hdr);
    if (n < 0 || weir_request_set_pool_key(r, (weir_str_t){hdr, (size_t)n}) < 0)
        return WEIR_ERROR;
    return WEIR_CONTINUE;
}

static int upstream_connect(weir_request_t *r, weir_connection_t *c)
{
    const upstream_conf_t *uc = send_conf(r);
    if (!uc)
        return 0;
    char hdr[PP_MAX_HEADER];
    ssize_t n = header_for(r, uc->send_version, hdr);
    return n < 0 ? -1 : weir_connection_write(c, hdr, (size_t)n);
}

/* ------------------------------------------------------------ descriptor */

static const weir_directive_t directives[] = {
    {
        .key = "proxy_protocol",
        .scopes = WEIR_SCOPE_LISTENER,
        .type = WEIR_DIRECTIVE_BOOL,
        .offset = offsetof(listener_conf_t, enabled),
        .default_value = "false",
        .help = "read a PROXY protocol (v1 or v2) header before HTTP on this listener",
    },
    {
        .key = "proxy_protocol_from",
        .scopes = WEIR_SCOPE_LISTENER,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(listener_conf_t, from),
        .size = sizeof(cidr_list_t),
        .parse = parse_from,
        .help = "peers allowed to send a PROXY header: [10.0.0.0/8, \"::1\"]",
    },
    {
        .key = "send_proxy_protocol",
        .scopes = WEIR_SCOPE_UPSTREAM,
        .type = WEIR_DIRECTIVE_CUSTOM,
        .offset = offsetof(upstream_conf_t, send_version),
        .size = sizeof(long),
        .parse = parse_send,
        .help = "send a PROXY header on each new upstream connection: v1 or v2",
    },
    {.key = NULL},
};

static const weir_handler_t handlers[] = {
    {.name = "proxy_protocol.accept",
     .phase = WEIR_PHASE_ACCEPT,
     .priority = WEIR_PRIORITY_FIRST,
     .fn = on_accept},
    {.name = "proxy_protocol.upstream",
     .phase = WEIR_PHASE_UPSTREAM_REQUEST,
     .priority = WEIR_PRIORITY_LAST,
     .fn = on_upstream_request},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "proxy_protocol",
    .version = "1.0",
    .conf_size = {[WEIR_SCOPE_INDEX_LISTENER] = sizeof(listener_conf_t),
                  [WEIR_SCOPE_INDEX_UPSTREAM] = sizeof(upstream_conf_t)},
    .directives = directives,
    .handlers = handlers,
    .conf_done = conf_done,
    .upstream_connect = upstream_connect,
};
