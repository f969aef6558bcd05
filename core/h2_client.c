/*
 * HTTP/2 to the servers of a `protocol: h2` upstream (h2_client.h).
 *
 * Pool: one multiplexed connection per server (and pool key) per worker,
 * opened by the first request and kept while it has streams, then for the
 * upstream's idle_timeout (keepalive: 0 closes it when idle). Streams beyond
 * the server's SETTINGS_MAX_CONCURRENT_STREAMS wait in nghttp2's queue until
 * a stream ends. A connection that got a GOAWAY takes no new stream; the
 * streams it refused (above its last stream id, REFUSED_STREAM) never
 * reached the server and start again on a fresh connection.
 *
 * Full duplex: the request body and the response run at once. Request body
 * slices from the downstream are framed straight from where they are
 * (nghttp2 copies them into its frame) and the next ones are asked for when
 * they are all framed, so the server's window holds the client back.
 * Response DATA is copied into the stream's flowbuf, bounded by the window
 * weir gave the server (H2UP_STREAM_WINDOW), handed down in one piece, and
 * given back as window when the downstream is done with it. Trailers
 * (grpc-status, grpc-message) go into r->resp_trailers for the downstream.
 *
 * Failures before the response head: a connect error or timeout counts as a
 * passive failure, and the request is retried on another server under the
 * same rule as HTTP/1 (upstream_may_retry); otherwise weir answers (errpage:
 * a gRPC client gets grpc-status 14 or 4). After the head: the client's
 * stream is aborted (an RST_STREAM, never a clean end). read_timeout runs
 * per stream: until the head, then between two DATA frames.
 *
 * Lifetime: a stream holds a reference on its request while nghttp2 knows
 * the stream (its data source reads the request), and its exchange ends
 * separately (finish, abort, cancel): both must be over before the stream's
 * memory, in the request arena, may go.
 */
#include "h2_client.h"

#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "arena.h"
#include "conn.h"
#include "downstream.h"
#include "errpage.h"
#include "flowbuf.h"
#include "h1.h"
#include "h2.h"
#include "h2_wire.h"
#include "log.h"
#include "reqlog.h"
#include "metrics_core.h"
#include "phase.h"
#include "upstream.h"

#define H2UP_STREAM_WINDOW (256u * 1024)
#define H2UP_CONN_WINDOW (4u << 20)

typedef struct h2up h2up_t;
typedef struct h2ups h2ups_t;

struct h2ups {
    h2up_t *c;         /* NULL once nghttp2 is done with the stream */
    weir_upstream_t *u;
    size_t peer;
    weir_request_t *r;
    int32_t id;
    h2ups_t *prev, *next;
    loop_task_t task; /* the exchange's work, outside nghttp2's callbacks */
    unsigned attached : 1, exchange : 1, head : 1, down_started : 1, end : 1,
        down_sending : 1, down_last : 1, body_asked : 1, deferred : 1, want_head : 1,
        want_body : 1, want_down : 1, refused : 1;
    int status;
    int64_t clen;
    weir_headers_t hdrs;
    const weir_str_t *src; /* request body slices not yet framed */
    size_t nsrc, si, soff;
    flowbuf_t resp;
    weir_str_t slice;
    struct timer timer;
};

struct h2up {
    conn_t *conn;
    weir_upstream_t *u;
    size_t peer;
    char *key;
    size_t keylen;
    nghttp2_session *ng;
    h2_wire_t wire;
    loop_task_t task;
    h2ups_t *streams;
    size_t nstreams;
    unsigned connected : 1, closing : 1, goaway : 1, in_recv : 1, failed : 1;
    h2up_t *next, *prev;
};

static h2up_t **pools; /* per upstream index */
static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static const conn_handler_t up_handler;

static void want_flush(h2up_t *c);
static void conn_fail(h2up_t *c, int status, int count_failure, const char *why);
static void stream_fail(h2ups_t *s, int status, const char *why);
static void down_more(h2ups_t *s);

static h2ups_t *slot(const weir_request_t *r)
{
    return (h2ups_t *)r->ctx[r->cf->nmodules];
}

static const char *peer_name(const h2up_t *c)
{
    return c->u->peers[c->peer].address;
}

/* The exchange's work runs from its own task, not the connection's: it
 * goes on after nghttp2 closed the stream, or the connection went, while
 * what the stream received is still on its way down. */
static void queue_work(h2ups_t *s)
{
    if (s->exchange)
        loop_defer(g_loop, &s->task);
}

/* ------------------------------------------------------------ the stream */

/* nghttp2 is done with the stream (closed, or the connection went): the
 * reference goes, and with the exchange over, the stream's memory too. */
static void stream_detach(h2ups_t *s)
{
    h2up_t *c = s->c;
    weir_request_t *r = s->r;
    if (!s->attached)
        return;
    s->attached = 0;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    c->nstreams--;
    s->c = NULL;
    timer_detach(g_loop, &s->timer);
    if (!s->exchange) /* else the exchange still sends what it holds */
        flowbuf_free(&s->resp, r->arena);
    if (!c->nstreams && !c->closing)
        conn_timer(c->conn, CONN_TIMER_READ, c->u->keepalive ? c->u->idle_timeout : 1);
    request_free(r);
}

/* The exchange lets go of the stream: the proxy slot is cleared and the
 * stream is reset upstream unless it ended there. */
static void exchange_end(h2ups_t *s, uint32_t rst)
{
    weir_request_t *r = s->r;
    if (!s->exchange)
        return;
    s->exchange = 0;
    loop_undefer(g_loop, &s->task);
    r->ctx[r->cf->nmodules] = NULL;
    if (!s->attached) {
        flowbuf_free(&s->resp, r->arena);
        return;
    }
    if (s->c && !s->c->closing) {
        if (rst != (uint32_t)-1)
            nghttp2_submit_rst_stream(s->c->ng, NGHTTP2_FLAG_NONE, s->id, rst);
        timer_cancel(g_loop, &s->timer);
        want_flush(s->c);
    }
}

static void read_timer(h2ups_t *s)
{
    timer_after(g_loop, &s->timer, s->u->read_timeout);
}

static void on_stream_timer(struct timer *t)
{
    h2ups_t *s = (h2ups_t *)((char *)t - offsetof(h2ups_t, timer));
    if (!s->exchange)
        return;
    if (!s->head) {
        stream_fail(s, 504, "read_timeout waiting for the response head");
        return;
    }
    reqlog(s->r, NULL, WEIR_LOG_ERROR,
           "upstream %s (%s): read_timeout in the response body; aborting the client",
           s->u->name, s->u->peers[s->peer].address);
    weir_request_t *r = s->r;
    exchange_end(s, NGHTTP2_CANCEL);
    r->ds->abort(r);
}

/* ------------------------------------------------------- request body */

static ssize_t body_read_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)ng, (void)id, (void)user;
    h2ups_t *s = src->ptr;
    weir_request_t *r = s->r;
    if (!s->exchange)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n = 0;
    while (n < length && s->si < s->nsrc) {
        const weir_str_t *sl = &s->src[s->si];
        size_t k = sl->len - s->soff;
        if (k > length - n)
            k = length - n;
        memcpy(buf + n, sl->data + s->soff, k);
        n += k;
        s->soff += k;
        if (s->soff == sl->len) {
            s->si++;
            s->soff = 0;
        }
    }
    if (s->si < s->nsrc)
        return (ssize_t)n;
    if (r->body.done) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)n;
    }
    if (n)
        return (ssize_t)n;
    /* all framed: the downstream may reuse those slices and send more */
    if (!s->body_asked) {
        s->body_asked = 1;
        s->want_body = 1;
        queue_work(s);
    }
    s->deferred = 1;
    return NGHTTP2_ERR_DEFERRED;
}

/* The downstream delivered request body slices (the sink). */
static void body_sink(weir_request_t *r, const weir_str_t *sl, size_t n, int last)
{
    (void)last; /* r->body.done says it */
    h2ups_t *s = slot(r);
    if (!s || !s->attached) {
        r->ds->stop_body(r);
        return;
    }
    s->src = sl;
    s->nsrc = n;
    s->si = s->soff = 0;
    s->body_asked = 0;
    if (s->deferred) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->c->ng, s->id);
    }
    want_flush(s->c);
}

/* ----------------------------------------------------------- submitting */

/* Fields that do not go to (or come from) an HTTP/2 server as they are:
 * the connection-specific ones, TE and Trailer (HTTP/1's hop-by-hop), and
 * Host and Content-Length, which weir states itself. */
static int connection_specific(weir_str_t n)
{
    static const weir_str_t also[] = {WEIR_STR("te"), WEIR_STR("trailer"), WEIR_STR("host"),
                                      WEIR_STR("content-length")};
    for (size_t i = 0; i < sizeof(also) / sizeof(also[0]); i++)
        if (str_case_eq(n, also[i]))
            return 1;
    return h2_connection_specific(n);
}

static void nv(nghttp2_nv *v, const char *name, size_t nlen, const char *value, size_t vlen)
{
    *v = (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, nlen, vlen, NGHTTP2_NV_FLAG_NONE};
}

/* The request as HTTP/2 fields: pseudo-fields from the request line and the
 * Host weir sends, the fields that may cross (names lowercased), TE:
 * trailers when the client asked for them (gRPC servers want it), the
 * length when it is known. nghttp2 copies them. */
static nghttp2_nv *request_nva(weir_request_t *r, const char *scheme, size_t *count)
{
    const weir_headers_t *hs = &r->headers;
    nghttp2_nv *v = arena_alloc(r->arena, (hs->n + 6) * sizeof(*v));
    char *path = arena_alloc_raw(r->arena, r->path.len + 1 + r->query.len + 1);
    char *clen = arena_alloc_raw(r->arena, 24);
    if (!v || !path || !clen)
        return NULL;
    size_t plen = r->path.len;
    memcpy(path, r->path.data, r->path.len);
    if (r->query.data) {
        path[plen++] = '?';
        memcpy(path + plen, r->query.data, r->query.len);
        plen += r->query.len;
    }
    size_t n = 0;
    nv(&v[n++], ":method", 7, r->method.data, r->method.len);
    nv(&v[n++], ":scheme", 7, scheme, strlen(scheme));
    nv(&v[n++], ":authority", 10, r->host_header.data, r->host_header.len);
    nv(&v[n++], ":path", 5, path, plen);
    for (size_t i = 0; i < hs->n; i++) {
        weir_str_t name = hs->v[i].name;
        if (!name.len || connection_specific(name))
            continue;
        char *lower = arena_strndup_lower(r->arena, name.data, name.len);
        if (!lower)
            return NULL;
        nv(&v[n++], lower, name.len, hs->v[i].value.data, hs->v[i].value.len);
    }
    if (r->te_trailers)
        nv(&v[n++], "te", 2, "trailers", 8);
    if (r->body.kind == BODY_LENGTH) {
        nv(&v[n++], "content-length", 14, clen,
           (size_t)(h1_put_u64(clen, r->body.length) - clen));
    }
    *count = n;
    return v;
}

static int submit(h2ups_t *s)
{
    weir_request_t *r = s->r;
    size_t n;
    nghttp2_nv *v = request_nva(r, s->c->conn->tr ? "https" : "http", &n);
    if (!v)
        return -1;
    nghttp2_data_provider prov = {.source.ptr = s, .read_callback = body_read_cb};
    s->src = r->body.first;
    s->nsrc = r->body.nfirst;
    int32_t id = nghttp2_submit_request(s->c->ng, NULL, v, n,
                                        r->body.kind == BODY_NONE ? NULL : &prov, s);
    if (id < 0) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): cannot submit the request: %s", s->c->u->name,
               peer_name(s->c), nghttp2_strerror(id));
        return -1;
    }
    s->id = id;
    return 0;
}

/* ---------------------------------------------------------- connections */

static int same_key(const h2up_t *c, weir_str_t key)
{
    return c->keylen == key.len && (!key.len || memcmp(c->key, key.data, key.len) == 0);
}

static h2up_t *pool_find(weir_upstream_t *u, size_t peer, weir_str_t key)
{
    for (h2up_t *c = pools[u->index]; c; c = c->next)
        if (c->peer == peer && !c->closing && !c->goaway && same_key(c, key))
            return c;
    return NULL;
}

static void pool_unlink(h2up_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (pools[c->u->index] == c)
        pools[c->u->index] = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->next = c->prev = NULL;
}

static void flush(h2up_t *c)
{
    if (c->closing || !c->connected)
        return;
    int rc = h2_wire_flush(&c->wire, c->ng, c->conn, c->u->write_timeout);
    if (rc < 0) {
        conn_fail(c, 502, 0, "HTTP/2 output failed");
        return;
    }
    if (!rc && !c->wire.sending && !c->nstreams)
        h2_wire_free(&c->wire);
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        !c->wire.sending)
        conn_fail(c, 502, 0, "the server ended the HTTP/2 session");
}

static void task_fn(loop_task_t *t)
{
    flush((h2up_t *)((char *)t - offsetof(h2up_t, task)));
}

static void want_flush(h2up_t *c)
{
    if (!c->closing && !c->in_recv)
        loop_defer(g_loop, &c->task);
}

static void up_close(h2up_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    pool_unlink(c);
    loop_undefer(g_loop, &c->task);
    conn_close(c->conn, CONN_ABORT);
}

/* The connection failed: every stream on it fails with it (retried where
 * that is safe), then it closes. */
static void conn_fail(h2up_t *c, int status, int count_failure, const char *why)
{
    if (c->failed)
        return;
    c->failed = 1;
    /* a line about the connection: with one stream on it, that exchange's */
    reqlog(c->nstreams == 1 ? c->streams->r : NULL, NULL, WEIR_LOG_ERROR,
           "upstream %s (%s): %s", c->u->name, peer_name(c), why);
    if (count_failure)
        peer_report(c->u, c->peer, 0);
    pool_unlink(c);
    c->goaway = 1;
    while (c->streams) {
        h2ups_t *s = c->streams;
        weir_request_t *r = s->r;
        request_ref(r);
        if (s->exchange)
            stream_fail(s, status, NULL);
        stream_detach(s);
        request_free(r);
    }
    up_close(c);
}

static void on_release(conn_t *cn)
{
    h2up_t *c = cn->owner;
    while (c->streams)
        stream_detach(c->streams);
    nghttp2_session_del(c->ng);
    h2_wire_free(&c->wire);
    free(c->key);
    free(c);
}

static void hs_done(conn_t *cn, int ok)
{
    h2up_t *c = cn->owner;
    if (!ok) {
        metrics_connect_failed(c->u, c->peer, cn->hs_timed_out ? MCONNECT_TIMEOUT : MCONNECT_ERROR);
        conn_fail(c, cn->hs_timed_out ? 504 : 502, 1,
                  cn->hs_timed_out ? "connect_timeout in the transport handshake"
                                   : "upstream transport handshake failed");
        return;
    }
    c->connected = 1;
    uint64_t now = now_us();
    for (h2ups_t *s = c->streams; s; s = s->next)
        if (!s->r->connect_us)
            s->r->connect_us = now;
    conn_read(cn);
    want_flush(c);
}

static void on_connected(conn_t *cn, int res)
{
    h2up_t *c = cn->owner;
    if (res < 0) {
        char why[128];
        snprintf(why, sizeof(why), "connect() failed: %s", strerror(-res));
        metrics_connect_failed(c->u, c->peer,
                               res == -ECONNREFUSED ? MCONNECT_REFUSED : MCONNECT_ERROR);
        conn_fail(c, 502, 1, why);
        return;
    }
    conn_handshake(cn, c->u->connect_timeout, hs_done);
}

static void on_read(conn_t *cn, long n, const char *data)
{
    h2up_t *c = cn->owner;
    if (n <= 0) {
        conn_read_done(cn);
        conn_fail(c, 502, 0, n == 0 ? "the server closed the HTTP/2 connection"
                                    : "recv failed on the HTTP/2 connection");
        return;
    }
    c->in_recv = 1;
    ssize_t rv = nghttp2_session_mem_recv(c->ng, (const uint8_t *)data, (size_t)n);
    c->in_recv = 0;
    conn_read_done(cn);
    if (rv < 0) {
        char why[128];
        snprintf(why, sizeof(why), "HTTP/2 protocol error from the server: %s",
                 nghttp2_strerror((int)rv));
        conn_fail(c, 502, 0, why);
        return;
    }
    want_flush(c);
    if (!c->closing)
        conn_read(cn);
}

static void on_sent(conn_t *cn, int res)
{
    h2up_t *c = cn->owner;
    h2_wire_sent(&c->wire, cn);
    if (res < 0) {
        conn_fail(c, 502, 0, "send failed on the HTTP/2 connection");
        return;
    }
    task_fn(&c->task);
}

static void on_timeout(conn_t *cn, int which)
{
    h2up_t *c = cn->owner;
    if (which == CONN_TIMER_WRITE) {
        if (!c->connected) {
            metrics_connect_failed(c->u, c->peer, MCONNECT_TIMEOUT);
            conn_fail(c, 504, 1, "connect_timeout");
        } else {
            conn_fail(c, 504, 0, "write_timeout on the HTTP/2 connection");
        }
        return;
    }
    if (c->nstreams) /* idle timer raced with a new stream */
        return;
    nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR);
    flush(c);
    up_close(c);
}

static const conn_handler_t up_handler = {
    .connected = on_connected,
    .read = on_read,
    .sent = on_sent,
    .timeout = on_timeout,
    .release = on_release,
};

static h2up_t *conn_open(weir_request_t *r)
{
    weir_upstream_t *u = r->upstream;
    size_t peer = (size_t)r->peer;
    const peer_t *p = &u->peers[peer];
    h2up_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->conn = conn_socket(p->addr.ss.ss_family, r->cf);
    if (!c->conn) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): socket() failed: %s", u->name, p->address, strerror(errno));
        free(c);
        return NULL;
    }
    if (nghttp2_session_client_new2(&c->ng, callbacks, c, options) != 0) {
        conn_close(c->conn, CONN_ABORT);
        free(c);
        return NULL;
    }
    c->u = u;
    c->peer = peer;
    c->task.fn = task_fn;
    if (r->pool_key.len && (c->key = malloc(r->pool_key.len))) {
        memcpy(c->key, r->pool_key.data, r->pool_key.len);
        c->keylen = r->pool_key.len;
    }
    conn_set_handler(c->conn, &up_handler, c);
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2UP_STREAM_WINDOW},
    };
    nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 2);
    nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0, H2UP_CONN_WINDOW);
    c->next = pools[u->index];
    if (c->next)
        c->next->prev = c;
    pools[u->index] = c;
    if (upstream_connect_hooks(r, c->conn) < 0) {
        c->failed = 1;
        pool_unlink(c);
        up_close(c);
        return NULL;
    }
    conn_timer(c->conn, CONN_TIMER_WRITE, u->connect_timeout);
    conn_connect(c->conn, (const struct sockaddr *)&p->addr.ss, p->addr.len);
    return c;
}

/* ---------------------------------------------------------- the response */

static void down_sent(weir_request_t *r);
static void down_resume(weir_request_t *r);

static void response_head_sent(weir_request_t *r);

/* The head is in: the upstream-response phase, then the head goes down. */
static void response_head(h2ups_t *s)
{
    weir_request_t *r = s->r;
    peer_report(s->u, s->peer, 1);
    r->status = s->status;
    r->upstream_status = s->status;
    r->resp_headers = s->hdrs;
    r->resp_from_upstream = 1;
    r->header_us = now_us();
    request_run_phases(r, WEIR_PHASE_UPSTREAM_RESPONSE, WEIR_PHASE_UPSTREAM_RESPONSE,
                       response_head_sent);
}

static void response_head_sent(weir_request_t *r)
{
    h2ups_t *s = slot(r);
    if (!s) {
        r->ds->abort(r);
        return;
    }
    int is_head = r->method.len == 4 && memcmp(r->method.data, "HEAD", 4) == 0;
    response_start_t rs = {.advertised = -1};
    if (is_head || h1_status_has_no_body(r->status) ||
        (s->end && !flowbuf_pending(&s->resp) && !r->resp_trailers.n)) {
        rs.body = BODY_NONE;
        if (s->clen >= 0 && r->status != 204)
            rs.advertised = s->clen;
    } else if (s->clen >= 0) {
        rs.body = BODY_LENGTH;
        rs.length = (uint64_t)s->clen;
    } else {
        rs.body = BODY_STREAM;
    }
    if (r->ds->start_response(r, &rs) < 0) {
        exchange_end(s, NGHTTP2_CANCEL);
        weir_respond(r, 502, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    s->down_started = 1;
    if (rs.body == BODY_NONE) { /* nothing more goes down, whatever comes */
        flowbuf_drop(&s->resp);
        s->end = 1;
    }
    down_more(s);
}

static void down_more(h2ups_t *s)
{
    weir_request_t *r = s->r;
    if (!s->exchange || !s->down_started || s->down_sending)
        return;
    size_t n = flowbuf_take(&s->resp, &s->slice);
    int last = s->end;
    if (!n && !last)
        return;
    s->down_sending = 1;
    s->down_last = last;
    r->ds->send_body(r, &s->slice, n ? 1 : 0, last, down_sent);
}

static void give_back(h2ups_t *s, size_t n)
{
    if (!n || !s->attached || s->c->closing)
        return;
    nghttp2_session_consume(s->c->ng, s->id, n);
    want_flush(s->c);
}

static void down_sent(weir_request_t *r)
{
    h2ups_t *s = slot(r);
    if (!s) {
        r->ds->abort(r);
        return;
    }
    s->down_sending = 0;
    give_back(s, flowbuf_release(&s->resp));
    if (s->down_last) {
        r->response_us = now_us();
        if (!r->body.done)
            r->ds->stop_body(r);
        exchange_end(s, s->attached ? NGHTTP2_NO_ERROR : (uint32_t)-1);
        r->ds->finish(r);
        return;
    }
    if (r->ds->hold && r->ds->hold(r, down_resume))
        return;
    down_more(s);
}

static void down_resume(weir_request_t *r)
{
    h2ups_t *s = slot(r);
    if (!s) {
        r->ds->abort(r);
        return;
    }
    down_more(s);
}

/* ------------------------------------------------------------- failures */

/* why NULL: the connection's failure, already logged. */
static void stream_fail(h2ups_t *s, int status, const char *why)
{
    weir_request_t *r = s->r;
    if (why)
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): %s", s->u->name, s->u->peers[s->peer].address, why);
    int started = s->down_started || s->head || r->ds->head_sent(r);
    int refused = s->refused;
    exchange_end(s, NGHTTP2_CANCEL);
    if (started) {
        r->ds->abort(r);
        return;
    }
    if (refused && r->body.retained) { /* never reached the server */
        h2_client_start(r);
        return;
    }
    if (status != 504 && upstream_may_retry(r) && request_pick_peer(r) >= 0) {
        reqlog(r, NULL, WEIR_LOG_INFO, "retrying on %s", r->upstream_addr);
        h2_client_start(r);
        return;
    }
    weir_respond(r, status, (weir_str_t){0});
    errpage_send(r);
}

static void stream_task(loop_task_t *t)
{
    h2ups_t *s = (h2ups_t *)((char *)t - offsetof(h2ups_t, task));
    weir_request_t *r = s->r;
    if (!s->exchange)
        return;
    if (s->want_head) {
        s->want_head = 0;
        response_head(s);
        return; /* the phases continue it */
    }
    if (s->want_body) {
        s->want_body = 0;
        r->ds->read_body(r);
    }
    if (s->want_down) {
        s->want_down = 0;
        down_more(s);
    }
}

/* ------------------------------------------------------ nghttp2 callbacks */

static h2ups_t *stream_of(h2up_t *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->ng, id);
}

static int field_is(const uint8_t *n, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(n, lit, len) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)ng, (void)flags;
    h2ups_t *s = stream_of(user, f->hd.stream_id);
    if (!s || !s->exchange || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    weir_request_t *r = s->r;
    weir_str_t n = {(const char *)name, namelen}, v = {(const char *)value, valuelen};
    if (s->head) { /* trailers */
        if (namelen && name[0] != ':' && !connection_specific(n))
            headers_add_copy(r->arena, &r->resp_trailers, n, v);
        return 0;
    }
    if (field_is(name, namelen, ":status")) {
        uint64_t st;
        if (h1_parse_uint(v, &st) == 0 && st >= 100 && st <= 999)
            s->status = (int)st;
        return 0;
    }
    if (field_is(name, namelen, "content-length")) {
        uint64_t len;
        if (h1_parse_uint(v, &len) == 0 && len <= INT64_MAX)
            s->clen = (int64_t)len;
        return 0;
    }
    if (!namelen || name[0] == ':' || connection_specific(n))
        return 0;
    if (headers_add_copy(r->arena, &s->hdrs, n, v) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)ng;
    h2up_t *c = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = 1;
        pool_unlink(c);
        return 0;
    }
    h2ups_t *s = f->hd.stream_id ? stream_of(c, f->hd.stream_id) : NULL;
    if (!s || !s->exchange)
        return 0;
    int end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (!s->head) {
            if (s->status >= 100 && s->status < 200 && !end) { /* interim: the head follows */
                s->status = 0;
                s->clen = -1;
                headers_init(&s->hdrs);
                return 0;
            }
            if (!s->status) {
                stream_fail(s, 502, "response without a valid :status");
                return 0;
            }
            s->head = 1;
            s->end = end;
            s->want_head = 1;
            read_timer(s);
            queue_work(s);
            return 0;
        }
        s->end = end; /* trailers */
        s->want_down = 1;
        queue_work(s);
    } else if (f->hd.type == NGHTTP2_DATA && end) {
        s->end = 1;
        s->want_down = 1;
        queue_work(s);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    h2ups_t *s = stream_of(user, id);
    if (!s || !s->exchange || !s->head) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    if (flowbuf_append(&s->resp, data, len) < 0) {
        nghttp2_session_consume(ng, id, len);
        stream_fail(s, 502, "out of memory for the response");
        return 0;
    }
    read_timer(s);
    s->want_down = 1;
    queue_work(s);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    h2up_t *c = user;
    h2ups_t *s = stream_of(c, id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    weir_request_t *r = s->r;
    request_ref(r);
    if (s->exchange && !s->end) {
        char why[96];
        s->refused = code == NGHTTP2_REFUSED_STREAM && !s->head;
        snprintf(why, sizeof(why), "the server reset the stream (%s)",
                 nghttp2_http2_strerror(code));
        stream_fail(s, 502, why);
    }
    stream_detach(s);
    if (!c->nstreams && c->goaway)
        want_flush(c);
    request_free(r);
    return 0;
}

/* ---------------------------------------------------------------- entry */

void h2_client_cancel(weir_request_t *r)
{
    h2ups_t *s = slot(r);
    if (s)
        exchange_end(s, NGHTTP2_CANCEL);
}

void h2_client_start(weir_request_t *r)
{
    weir_upstream_t *u = r->upstream;
    h2up_t *c = pool_find(u, (size_t)r->peer, r->pool_key);
    if (!c)
        c = conn_open(r);
    h2ups_t *s = c ? arena_alloc(r->arena, sizeof(*s)) : NULL;
    if (!s) {
        weir_respond(r, 502, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    s->c = c;
    s->u = c->u;
    s->peer = c->peer;
    s->r = r;
    s->clen = -1;
    s->exchange = 1;
    headers_init(&s->hdrs);
    timer_init(&s->timer, on_stream_timer);
    s->task.fn = stream_task;
    r->ctx[r->cf->nmodules] = s;
    r->body.sink = body_sink;
    headers_init(&r->resp_trailers);
    if (submit(s) < 0) {
        r->ctx[r->cf->nmodules] = NULL;
        weir_respond(r, 502, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    request_ref(r);
    s->attached = 1;
    s->next = c->streams;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->nstreams++;
    conn_timer(c->conn, CONN_TIMER_READ, 0);
    if (c->connected && !r->connect_us)
        r->connect_us = now_us();
    read_timer(s);
    want_flush(c);
}

int h2_client_init(const weir_conf_t *cf)
{
    pools = calloc(cf->nupstreams + 1, sizeof(*pools));
    if (!pools)
        return -1;
    if (callbacks)
        return 0;
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_no_closed_streams(options, 1);
    nghttp2_option_set_peer_max_concurrent_streams(options, 100);
    return 0;
}
