/*
 * Test module for the connection API (1.3): the accept phase, a transport,
 * connection addresses, connection context and cleanup, listener iteration,
 * the upstream_connect hook and the pool key.
 *
 * Listener scope:
 *   conntest_refuse: true          refuse every connection (the accept chain
 *                                  answers 403: closed, nothing sent)
 *   conntest_accept_delay: 100ms   suspend the accept chain, resume from a
 *                                  timer (with conntest_refuse: resume with
 *                                  WEIR_ERROR instead of answering at once)
 *   conntest_xor: N                a transport: the client sends "XOR1\n",
 *                                  the transport answers "OK\n" (plain), then
 *                                  every byte is XORed with N both ways
 *   conntest_addr: "192.0.2.1:4242" the client address requests see
 * Upstream scope:
 *   conntest_preamble: "HELLO\n"   written first on each new upstream connection
 *   conntest_pool_by_header: X-Tenant   pool key = that request header
 *
 * Every client connection gets a context (requests seen, whether the accept
 * chain was resumed) and a cleanup counting into a shared zone. Requests
 * going upstream carry X-Conn-Requests, X-Conn-Id, X-Conn-Listener and
 * X-Conn-Resumed. GET /conntest/cleanups answers "accepted=A cleanups=C".
 * At conf_done one line per listener: "conntest: listener <name>".
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weir/module.h>

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

/* ------------------------------------------------------------------ conf */

typedef struct conn_addr_opt {
    int set;
    struct sockaddr_in sin;
} conn_addr_opt_t;

typedef struct listener_conf {
    int refuse;
    long xor_key; /* 0: no transport */
    uint64_t accept_delay_ms;
    conn_addr_opt_t addr;
} listener_conf_t;

typedef struct upstream_conf {
    const char *preamble;
    const char *pool_header;
} upstream_conf_t;

typedef struct counters {
    _Atomic unsigned long accepted;
    _Atomic unsigned long cleanups;
} counters_t;

static counters_t *counters;

static int parse_addr(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    conn_addr_opt_t *a = field;
    const char *text = weir_node_scalar(node);
    char ip[INET_ADDRSTRLEN];
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon || (size_t)(colon - text) >= sizeof(ip))
        return weir_conf_error(cf, node, "conntest_addr: expected \"IPv4:port\"");
    memcpy(ip, text, (size_t)(colon - text));
    ip[colon - text] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    memset(&a->sin, 0, sizeof(a->sin));
    if (*end || end == colon + 1 || port < 1 || port > 65535 ||
        inet_pton(AF_INET, ip, &a->sin.sin_addr) != 1)
        return weir_conf_error(cf, node, "conntest_addr: expected \"IPv4:port\", got '%s'", text);
    a->sin.sin_family = AF_INET;
    a->sin.sin_port = htons((uint16_t)port);
    a->set = 1;
    return 0;
}

static int conf_done(weir_conf_t *cf)
{
    size_t n = weir_conf_listener_count(cf);
    for (size_t i = 0; i < n; i++) {
        const weir_listener_t *l = weir_conf_listener(cf, i);
        const weir_node_t *node = weir_listener_node(l);
        weir_log(&weir_module, WEIR_LOG_NOTICE, "listener %s (%zu of %zu, line %u)",
                 weir_listener_name(l), i + 1, n, node ? weir_node_line(node) : 0);
    }
    counters = weir_shm_zone(cf, "conntest.counters.v1", sizeof(*counters));
    if (!counters)
        return -1;
    if (weir_shm_zone_created(cf, counters)) {
        atomic_store(&counters->accepted, 0);
        atomic_store(&counters->cleanups, 0);
        weir_log(&weir_module, WEIR_LOG_NOTICE, "counters zone created");
    } else {
        weir_log(&weir_module, WEIR_LOG_NOTICE, "counters zone carried over");
    }
    return 0;
}

/* ------------------------------------------------------- the transport */

/* Ciphertext received and not yet read: the core gives input() one receive
 * (16 KiB) at a time and asks for another only once read() ran dry, plus a
 * few handshake bytes; twice a receive buffer is ample. Wire bytes waiting
 * for output(): one TLS record's worth. */
#define XOR_IN_MAX (2 * 16384)
#define XOR_OUT_MAX 16384

static const char xor_hello[] = "XOR1\n";
static const char xor_ok[] = "OK\n";

typedef struct xor_state {
    unsigned char key;
    int ready; /* the handshake is done */
    char *in;
    size_t in_len, in_off, in_cap;
    char out[XOR_OUT_MAX];
    size_t out_len, out_off;
    int warned;
} xor_state_t;

static int xor_input(void *state, const char *data, size_t len)
{
    xor_state_t *x = state;
    if (x->in_off == x->in_len)
        x->in_off = x->in_len = 0;
    if (x->in_off && x->in_len + len > x->in_cap) {
        memmove(x->in, x->in + x->in_off, x->in_len - x->in_off);
        x->in_len -= x->in_off;
        x->in_off = 0;
    }
    if (x->in_len + len > XOR_IN_MAX) {
        weir_log(&weir_module, WEIR_LOG_ERROR,
                 "xor: input over its bound (%zu held, %zu more offered)",
                 x->in_len - x->in_off, len);
        return WEIR_TRANSPORT_ERROR;
    }
    if (x->in_len + len > x->in_cap) {
        size_t cap = x->in_cap ? x->in_cap : 4096;
        while (cap < x->in_len + len)
            cap *= 2;
        if (cap > XOR_IN_MAX)
            cap = XOR_IN_MAX;
        char *p = realloc(x->in, cap);
        if (!p)
            return WEIR_TRANSPORT_ERROR;
        x->in = p;
        x->in_cap = cap;
    }
    memcpy(x->in + x->in_len, data, len);
    x->in_len += len;
    return 0;
}

static int xor_handshake(weir_connection_t *c, void *state)
{
    (void)c;
    xor_state_t *x = state;
    size_t want = sizeof(xor_hello) - 1;
    size_t have = x->in_len - x->in_off;
    size_t cmp = have < want ? have : want;
    if (memcmp(x->in ? x->in + x->in_off : "", xor_hello, cmp) != 0)
        return WEIR_TRANSPORT_ERROR; /* wrong from its first differing byte on */
    if (have < want)
        return WEIR_TRANSPORT_AGAIN;
    x->in_off += want;
    /* the answer goes out through output(), made by the transport itself */
    memcpy(x->out + x->out_len, xor_ok, sizeof(xor_ok) - 1);
    x->out_len += sizeof(xor_ok) - 1;
    x->ready = 1;
    return WEIR_TRANSPORT_DONE;
}

static long xor_read(void *state, char *buf, size_t cap)
{
    xor_state_t *x = state;
    size_t n = x->in_len - x->in_off;
    if (!x->ready || !n)
        return WEIR_TRANSPORT_AGAIN;
    if (n > cap)
        n = cap;
    const unsigned char *src = (const unsigned char *)x->in + x->in_off;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)(src[i] ^ x->key);
    x->in_off += n;
    if (x->in_off == x->in_len)
        x->in_off = x->in_len = 0;
    return (long)n;
}

static long xor_write(void *state, const char *data, size_t len)
{
    xor_state_t *x = state;
    if (!x->ready)
        return WEIR_TRANSPORT_ERROR;
    if (x->out_off) {
        memmove(x->out, x->out + x->out_off, x->out_len - x->out_off);
        x->out_len -= x->out_off;
        x->out_off = 0;
    }
    size_t room = sizeof(x->out) - x->out_len;
    if (!room) {
        /* The contract allows a short write; a core that honours it drains
         * output() before it writes again, so a full buffer here means it
         * did not. Say so once, then take nothing. */
        if (!x->warned++)
            weir_log(&weir_module, WEIR_LOG_ERROR,
                     "xor: write() offered %zu bytes with the output buffer full "
                     "(%d bytes): the core wrote again after a short write without "
                     "draining output()",
                     len, XOR_OUT_MAX);
        return 0;
    }
    size_t n = len < room ? len : room;
    unsigned char *dst = (unsigned char *)x->out + x->out_len;
    for (size_t i = 0; i < n; i++)
        dst[i] = (unsigned char)((unsigned char)data[i] ^ x->key);
    x->out_len += n;
    return (long)n;
}

static size_t xor_output(void *state, char *buf, size_t cap)
{
    xor_state_t *x = state;
    size_t n = x->out_len - x->out_off;
    if (n > cap)
        n = cap;
    memcpy(buf, x->out + x->out_off, n);
    x->out_off += n;
    if (x->out_off == x->out_len)
        x->out_off = x->out_len = 0;
    return n;
}

static void xor_free(void *state)
{
    xor_state_t *x = state;
    free(x->in);
    free(x);
}

static const weir_transport_t xor_transport = {
    .name = "conntest_xor",
    .input = xor_input,
    .handshake = xor_handshake,
    .read = xor_read,
    .write = xor_write,
    .output = xor_output,
    .free = xor_free,
};

/* Offered as a second transport, which the core must refuse; it fails
 * every call if it were taken. */
static int probe_input(void *state, const char *data, size_t len)
{
    (void)state, (void)data, (void)len;
    return WEIR_TRANSPORT_ERROR;
}

static long probe_rw(void *state, const char *data, size_t len)
{
    (void)state, (void)data, (void)len;
    return WEIR_TRANSPORT_ERROR;
}

static long probe_read(void *state, char *buf, size_t cap)
{
    (void)state, (void)buf, (void)cap;
    return WEIR_TRANSPORT_ERROR;
}

static size_t probe_output(void *state, char *buf, size_t cap)
{
    (void)state, (void)buf, (void)cap;
    return 0;
}

static const weir_transport_t probe_transport = {
    .name = "conntest_probe",
    .input = probe_input,
    .read = probe_read,
    .write = probe_rw,
    .output = probe_output,
};

/* -------------------------------------------------- connection context */

typedef struct conn_ctx {
    unsigned long requests;
    int resumed;
    weir_request_t *stub;   /* while the accept chain is suspended */
    weir_timer_t *timer;
} conn_ctx_t;

static void conn_cleanup(void *arg)
{
    conn_ctx_t *cx = arg;
    if (cx->timer)
        weir_timer_free(cx->timer);
    free(cx);
    atomic_fetch_add(&counters->cleanups, 1);
}

static const listener_conf_t *lconf_of(weir_connection_t *c)
{
    const weir_listener_t *l = weir_connection_listener(c);
    return l ? weir_listener_conf(l, &weir_module) : NULL;
}

/* What the accept chain does once it may go on (at once, or after the
 * pause): refuse, or set the addresses and the transport. */
static weir_result_t accept_go_on(weir_request_t *r, int resumed)
{
    weir_connection_t *c = weir_request_connection(r);
    const listener_conf_t *lc = lconf_of(c);
    if (!lc)
        return WEIR_CONTINUE;
    if (lc->refuse) {
        if (resumed)
            return WEIR_ERROR;
        weir_respond(r, 403, WEIR_STR("refused by conntest\n"));
        return WEIR_RESPOND;
    }
    if (lc->addr.set &&
        weir_connection_set_addresses(c, (const struct sockaddr *)&lc->addr.sin, NULL) < 0) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "weir_connection_set_addresses failed");
        return WEIR_ERROR;
    }
    if (lc->xor_key) {
        xor_state_t *x = calloc(1, sizeof(*x));
        if (!x)
            return WEIR_ERROR;
        x->key = (unsigned char)lc->xor_key;
        if (weir_connection_set_transport(c, &xor_transport, x) < 0) {
            free(x);
            weir_log(&weir_module, WEIR_LOG_ERROR, "weir_connection_set_transport failed");
            return WEIR_ERROR;
        }
        /* one per connection: a second one is refused */
        if (weir_connection_set_transport(c, &probe_transport, NULL) == 0)
            weir_log(&weir_module, WEIR_LOG_ERROR, "BUG: a second transport was accepted");
    }
    return WEIR_CONTINUE;
}

static void accept_resume(void *arg)
{
    conn_ctx_t *cx = arg;
    weir_request_t *r = cx->stub;
    weir_timer_free(cx->timer);
    cx->timer = NULL;
    cx->stub = NULL;
    cx->resumed = 1;
    weir_request_resume(r, accept_go_on(r, 1));
}

static weir_result_t on_accept(weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    if (!c) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "BUG: no connection in the accept phase");
        return WEIR_ERROR;
    }
    if (weir_connection_ctx(c, &weir_module))
        weir_log(&weir_module, WEIR_LOG_ERROR, "BUG: a new connection already has a context");
    conn_ctx_t *cx = calloc(1, sizeof(*cx));
    if (!cx)
        return WEIR_ERROR;
    if (weir_connection_cleanup(c, conn_cleanup, cx) < 0) {
        free(cx);
        return WEIR_ERROR;
    }
    if (weir_connection_set_ctx(c, &weir_module, cx) < 0)
        return WEIR_ERROR; /* cx is freed by the cleanup */
    atomic_fetch_add(&counters->accepted, 1);

    const listener_conf_t *lc = lconf_of(c);
    if (lc && lc->accept_delay_ms) {
        cx->stub = r;
        cx->timer = weir_timer_new(accept_resume, cx);
        if (!cx->timer)
            return WEIR_ERROR;
        weir_timer_start(cx->timer, lc->accept_delay_ms);
        return WEIR_SUSPEND;
    }
    return accept_go_on(r, 0);
}

/* ------------------------------------------------------------- requests */

static conn_ctx_t *ctx_of(weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    return c ? weir_connection_ctx(c, &weir_module) : NULL;
}

static weir_result_t on_request(weir_request_t *r)
{
    conn_ctx_t *cx = ctx_of(r);
    if (!cx) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "BUG: a request without its connection context");
        return WEIR_CONTINUE;
    }
    cx->requests++;
    return WEIR_CONTINUE;
}

static int str_is(weir_str_t s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && memcmp(s.data, lit, n) == 0;
}

static weir_result_t on_access(weir_request_t *r)
{
    if (!str_is(weir_request_path(r), "/conntest/cleanups"))
        return WEIR_CONTINUE;
    char body[96];
    int n = snprintf(body, sizeof(body), "accepted=%lu cleanups=%lu\n",
                     atomic_load(&counters->accepted), atomic_load(&counters->cleanups));
    weir_respond(r, 200, (weir_str_t){body, (size_t)n});
    return WEIR_RESPOND;
}

static void set_num(weir_request_t *r, const char *name, unsigned long long v)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "%llu", v);
    weir_headers_set(r, weir_request_headers(r), (weir_str_t){name, strlen(name)},
                     (weir_str_t){buf, (size_t)n});
}

static const upstream_conf_t *uconf_of(const weir_request_t *r)
{
    const weir_upstream_t *u = weir_request_upstream(r);
    return u ? weir_upstream_conf(u, &weir_module) : NULL;
}

static weir_result_t on_upstream_request(weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    conn_ctx_t *cx = ctx_of(r);
    if (cx) {
        set_num(r, "X-Conn-Requests", cx->requests);
        set_num(r, "X-Conn-Resumed", (unsigned long long)cx->resumed);
    }
    set_num(r, "X-Conn-Id", weir_connection_id(c));
    const weir_listener_t *l = weir_connection_listener(c);
    const char *lname = l ? weir_listener_name(l) : "(none)";
    weir_headers_set(r, weir_request_headers(r), WEIR_STR("X-Conn-Listener"),
                     (weir_str_t){lname, strlen(lname)});

    const upstream_conf_t *uc = uconf_of(r);
    if (uc && uc->pool_header) {
        weir_str_t v = {"", 0};
        weir_headers_get(weir_request_headers(r),
                         (weir_str_t){uc->pool_header, strlen(uc->pool_header)}, &v);
        if (weir_request_set_pool_key(r, v) < 0)
            return WEIR_ERROR;
    }
    return WEIR_CONTINUE;
}

static int upstream_connect(weir_request_t *r, weir_connection_t *c)
{
    if (weir_connection_listener(c))
        weir_log(&weir_module, WEIR_LOG_ERROR, "BUG: an upstream connection has a listener");
    const upstream_conf_t *uc = uconf_of(r);
    if (!uc || !uc->preamble || !*uc->preamble)
        return 0;
    if (weir_connection_write(c, uc->preamble, strlen(uc->preamble)) < 0) {
        weir_log(&weir_module, WEIR_LOG_ERROR, "weir_connection_write failed");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ descriptor */

static const weir_directive_t directives[] = {
    {.key = "conntest_refuse", .scopes = WEIR_SCOPE_LISTENER, .type = WEIR_DIRECTIVE_BOOL,
     .offset = offsetof(listener_conf_t, refuse), .default_value = "false",
     .help = "refuse every connection in the accept phase"},
    {.key = "conntest_xor", .scopes = WEIR_SCOPE_LISTENER, .type = WEIR_DIRECTIVE_INT,
     .offset = offsetof(listener_conf_t, xor_key), .min = 1, .max = 255,
     .help = "XOR transport with this key (1..255)"},
    {.key = "conntest_accept_delay", .scopes = WEIR_SCOPE_LISTENER,
     .type = WEIR_DIRECTIVE_DURATION, .offset = offsetof(listener_conf_t, accept_delay_ms),
     .help = "suspend the accept chain this long"},
    {.key = "conntest_addr", .scopes = WEIR_SCOPE_LISTENER, .type = WEIR_DIRECTIVE_CUSTOM,
     .offset = offsetof(listener_conf_t, addr), .size = sizeof(conn_addr_opt_t),
     .parse = parse_addr, .help = "client address requests see: \"IPv4:port\""},
    {.key = "conntest_preamble", .scopes = WEIR_SCOPE_UPSTREAM, .type = WEIR_DIRECTIVE_STRING,
     .offset = offsetof(upstream_conf_t, preamble),
     .help = "bytes written first on each new upstream connection"},
    {.key = "conntest_pool_by_header", .scopes = WEIR_SCOPE_UPSTREAM,
     .type = WEIR_DIRECTIVE_STRING, .offset = offsetof(upstream_conf_t, pool_header),
     .help = "request header whose value is the upstream pool key"},
    {.key = NULL},
};

static const weir_handler_t handlers[] = {
    {.name = "conntest.accept", .phase = WEIR_PHASE_ACCEPT, .priority = WEIR_PRIORITY_MIDDLE,
     .fn = on_accept},
    {.name = "conntest.request", .phase = WEIR_PHASE_REQUEST, .priority = WEIR_PRIORITY_FIRST,
     .fn = on_request},
    {.name = "conntest.access", .phase = WEIR_PHASE_ACCESS, .priority = WEIR_PRIORITY_FIRST,
     .fn = on_access},
    {.name = "conntest.upstream", .phase = WEIR_PHASE_UPSTREAM_REQUEST,
     .priority = WEIR_PRIORITY_MIDDLE, .fn = on_upstream_request},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "conntest",
    .version = "1.0",
    .conf_size = {[WEIR_SCOPE_INDEX_LISTENER] = sizeof(listener_conf_t),
                  [WEIR_SCOPE_INDEX_UPSTREAM] = sizeof(upstream_conf_t)},
    .directives = directives,
    .handlers = handlers,
    .conf_done = conf_done,
    .upstream_connect = upstream_connect,
};
