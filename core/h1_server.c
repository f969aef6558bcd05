/*
 * The HTTP/1 server (h1_server.h): heads are assembled in the connection's
 * input buffer, parsed and run through the request phases; the request body
 * is decoded in place and handed to the upstream side; the response goes
 * down through the downstream operations at the end of this file.
 *
 * States of a connection: IDLE (waiting for the first byte of a request,
 * keepalive_timeout), HEAD (receiving a head, client_header_timeout), PHASES
 * (handlers run, nothing is read), EXCHANGE (the upstream side drives: body
 * reads when it asks, client_body_timeout; sends, send_timeout).
 */
#include "h1_server.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "downstream.h"
#include "errpage.h"
#include "h1.h"
#include "h1_queue.h"
#include "h2.h"
#include "inbuf.h"
#include "log.h"
#include "reqlog.h"
#include "metrics_core.h"
#include "phase.h"
#include "proxy.h"
#include "tunnel.h"

/* Head buffers start small and grow up to the head limit; an idle keepalive
 * connection holds none. */
#define IN_INITIAL 2048
/* Body slices decoded from one receive; the rest waits for the next round. */
#define BODY_SLICES 16

enum h1_state { S_IDLE, S_HEAD, S_PHASES, S_EXCHANGE, S_CLOSING };

/* Per exchange, in the request's arena. */
typedef struct h1_exchange {
    h1_parser_t parser;
    h1_request_t req;
    weir_str_t head; /* the response head, queued with the first send */
    h1_framing_t down_framing;
    int down_keepalive;
    unsigned head_queued : 1, head_sent : 1, body_held : 1, body_stopped : 1, sending : 1,
        reading : 1;
    exchange_fn send_done;
    weir_str_t slices[BODY_SLICES];
} h1x_t;

/* Per connection: what an idle keepalive connection costs beside its conn_t. */
typedef struct h1_conn {
    conn_t *conn;
    const weir_listener_t *listener;
    weir_request_t *r;
    h1x_t *x;
    inbuf_t in;
    h1_scan_t scan;
    uint64_t requests;
    enum h1_state state;
    unsigned closing : 1, close_after : 1, continue_sent : 1;
} h1_conn_t;

static const conn_handler_t h1_handler;
static const downstream_t h1_downstream;
static uint64_t drain_idle_grace;

static void try_head(h1_conn_t *h);
static void h1_close(h1_conn_t *h, unsigned how);

static int in_append(h1_conn_t *h, const char *p, size_t n)
{
    return inbuf_append(&h->in, p, n, IN_INITIAL);
}

static void read_timer(h1_conn_t *h, uint64_t ms)
{
    conn_timer(h->conn, CONN_TIMER_READ, ms);
}

void h1_server_start(conn_t *c)
{
    h1_conn_t *h = calloc(1, sizeof(*h));
    if (!h) {
        conn_close(c, CONN_ABORT);
        return;
    }
    h->conn = c;
    h->listener = c->listener;
    h->state = S_IDLE;
    conn_set_handler(c, &h1_handler, h);
    read_timer(h, h->listener->limits.client_header_timeout);
    conn_read(c);
}

static h1_conn_t *conn_of(const weir_request_t *r)
{
    return r->conn->owner;
}

/* Whether the response to r may leave the connection open: the client
 * wants it, nothing forces a close, the worker is not draining, and
 * keepalive_requests is not reached (so the last response says close).
 * An upstream's response may start before the request body ended (full
 * duplex) and still keep the connection if the body then ends; weir's own
 * answer to a request whose body it will not read closes. */
static int may_keep(const h1_conn_t *h, const weir_request_t *r)
{
    return r->keepalive && !h->close_after && (r->body.done || r->resp_from_upstream) &&
           !weir_worker_draining() && h->requests < h->listener->limits.keepalive_requests;
}

/* ------------------------------------------------------------ the request */

static weir_request_t *attach_request(h1_conn_t *h)
{
    weir_request_t *r = request_new(h->conn->cf);
    h1x_t *x = r ? arena_alloc(r->arena, sizeof(*x)) : NULL;
    if (!x) {
        if (r)
            request_free(r);
        return NULL;
    }
    r->conn = h->conn;
    r->tls = h->conn->secure;
    r->ds = &h1_downstream;
    r->ds_ctx = x;
    r->listener = h->listener;
    r->connection_id = h->conn->id;
    r->connection_requests = h->requests;
    r->method = WEIR_STR("-");
    r->version = 11;
    h->r = r;
    h->x = x;
    return r;
}

/* weir answers for the current request (creating one for a head that could
 * not be parsed) and closes after it: the input is not where the next
 * request would start. */
static void answer_status(h1_conn_t *h, int status)
{
    weir_request_t *r = h->r;
    if (!r && !(r = attach_request(h))) {
        h1_close(h, 0);
        return;
    }
    h->close_after = 1;
    h->state = S_EXCHANGE;
    weir_respond(r, status, (weir_str_t){0});
    proxy_answer(r);
}

/* The first line of a head that could not be parsed, for the error log's
 * request: (reqlog.h), copied into the request's arena: leading empty lines
 * skipped, no more than the log shows (and one byte, so the log sees it was
 * cut). Left out when memory is short. */
static void keep_raw_line(weir_request_t *r, const char *p, size_t n)
{
    while (n >= 2 && p[0] == '\r' && p[1] == '\n')
        p += 2, n -= 2;
    const char *eol = memchr(p, '\n', n);
    size_t len = eol ? (size_t)(eol - p) : n;
    if (len && p[len - 1] == '\r')
        len--;
    if (len > REQLOG_REQUEST_MAX + 1)
        len = REQLOG_REQUEST_MAX + 1;
    char *copy = len ? arena_alloc_raw(r->arena, len) : NULL;
    if (!copy)
        return;
    memcpy(copy, p, len);
    r->raw_line = (weir_str_t){copy, len};
}

static void fill_request(weir_request_t *r, const h1_request_t *q)
{
    r->method = q->method;
    r->target = q->target;
    r->path = q->path;
    r->query = q->query;
    r->host = q->host;
    r->host_header = q->authority;
    r->version = q->version;
    r->headers = q->headers;
    r->keepalive = q->keepalive;
    r->expect_continue = q->expect_continue;
    r->has_body = q->framing != H1_FRAMING_NONE;
    r->body.kind = q->framing == H1_FRAMING_LENGTH    ? BODY_LENGTH
                   : q->framing == H1_FRAMING_CHUNKED ? BODY_STREAM
                                                      : BODY_NONE;
    r->body.length = q->content_length;
}

static int body_over_limit(h1_conn_t *h, weir_request_t *r, const weir_str_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        r->body.bytes += s[i].len;
    uint64_t max = h->listener->limits.max_body_size;
    return max && r->body.bytes > max;
}

static void phases_done(weir_request_t *r)
{
    if (r->ds == &downstream_orphan) { /* the client left while a handler held r */
        request_free(r);
        return;
    }
    conn_of(r)->state = S_EXCHANGE;
    proxy_start(r);
}

/* An Upgrade to h2c over HTTP/1.1 is a hint, not a demand (RFC 9113 §3.1
 * removed it): served as a plain HTTP/1.1 request, as nginx does. The
 * parser already dropped Upgrade and what Connection names. */
static int upgrade_is_h2c(const h1_request_t *q)
{
    return q->upgrade_value.len == 3 && strncasecmp(q->upgrade_value.data, "h2c", 3) == 0;
}

/* Body bytes that came with the head; they are kept for retries. */
static int take_first_body(h1_conn_t *h, weir_request_t *r)
{
    h1x_t *x = h->x;
    request_body_t *b = &r->body;
    if (x->req.framing == H1_FRAMING_NONE) {
        b->done = b->retained = 1;
        return 0;
    }
    b->first = arena_alloc(r->arena, BODY_SLICES * sizeof(weir_str_t));
    if (!b->first)
        return -500;
    int done = 0;
    ssize_t k = h1_body_feed(&x->parser, h->in.data + h->in.off, h->in.len - h->in.off, b->first,
                             BODY_SLICES, &b->nfirst, &done);
    if (k < 0)
        return (int)k;
    h->in.off += (size_t)k;
    r->request_length += (size_t)k;
    b->done = b->retained = done;
    return body_over_limit(h, r, b->first, b->nfirst) ? -413 : 0;
}

static void start_request(h1_conn_t *h, size_t head_len)
{
    h->requests++;
    weir_request_t *r = attach_request(h);
    if (!r) {
        h1_close(h, 0);
        return;
    }
    h1x_t *x = h->x;
    /* The request owns its head: the input buffer may grow (moving) while
     * the request lives, when body bytes and pipelined requests arrive
     * during the exchange (full duplex). */
    char *head = arena_alloc_raw(r->arena, head_len);
    if (!head) {
        h1_close(h, 0);
        return;
    }
    memcpy(head, h->in.data + h->in.off, head_len);
    int rc = h1_parse_request(r->arena, &x->parser, head, head_len, &x->req);
    h->in.off += head_len;
    r->request_length = head_len;
    if (rc < 0) {
        keep_raw_line(r, head, head_len);
        reqlog(r, NULL, WEIR_LOG_INFO, "client %llu: rejected request (%d)",
               (unsigned long long)h->conn->id, -rc);
        answer_status(h, -rc);
        return;
    }
    fill_request(r, &x->req);
    h->continue_sent = 0;
    if (r->expect_continue)
        headers_del(&r->headers, WEIR_STR("expect"));
    rc = request_normalize_path(r);
    if (rc < 0) {
        answer_status(h, -rc);
        return;
    }
    if (x->req.framing == H1_FRAMING_LENGTH && h->listener->limits.max_body_size &&
        x->req.content_length > h->listener->limits.max_body_size) {
        answer_status(h, 413);
        return;
    }
    if (x->req.upgrade && !upgrade_is_h2c(&x->req)) {
        /* forwarded with Upgrade and Connection: upgrade; a 101 makes a tunnel */
        r->upgrade = 1;
        r->upgrade_value = x->req.upgrade_value;
    }
    rc = take_first_body(h, r);
    if (rc < 0) {
        answer_status(h, -rc);
        return;
    }
    h->state = S_PHASES;
    read_timer(h, 0);
    request_run_phases(r, WEIR_PHASE_REQUEST, WEIR_PHASE_UPSTREAM_REQUEST, phases_done);
}

static void try_head(h1_conn_t *h)
{
    const limits_t *lim = &h->listener->limits;
    ssize_t n = h1_scan_head_r(&h->scan, h->in.data + h->in.off, h->in.len - h->in.off,
                               lim->max_header_size, 1);
    if (n == 0) {
        conn_read(h->conn);
        return;
    }
    if (n < 0) {
        /* the request weir answers for, made now so the line names it */
        weir_request_t *r = h->r ? h->r : attach_request(h);
        if (r)
            keep_raw_line(r, h->in.data + h->in.off, h->in.len - h->in.off);
        reqlog(r, h->conn, WEIR_LOG_INFO, "client %llu: malformed request head (%d)",
               (unsigned long long)h->conn->id, (int)-n);
        answer_status(h, (int)-n);
        return;
    }
    start_request(h, (size_t)n);
}

/* ------------------------------------------------------- the request body */

/* A body error once the upstream side has the request: an answer while
 * nothing of the response went out, else the connection is cut. */
static void body_failed(h1_conn_t *h, int status)
{
    if (h->x->head_sent) {
        h1_close(h, CONN_ABORT);
        return;
    }
    answer_status(h, status);
}

static void deliver_body(h1_conn_t *h, weir_request_t *r, size_t ns, int done)
{
    if (body_over_limit(h, r, h->x->slices, ns)) {
        if (h->x->body_held) {
            h->x->body_held = 0;
            conn_read_done(h->conn);
        }
        body_failed(h, 413);
        return;
    }
    r->body.sink(r, h->x->slices, ns, done);
}

static void body_input(h1_conn_t *h, const char *data, size_t n)
{
    weir_request_t *r = h->r;
    h1x_t *x = h->x;
    x->reading = 0;
    read_timer(h, 0);
    if (x->body_stopped) {
        conn_read_done(h->conn);
        return;
    }
    size_t ns = 0;
    int done = 0;
    ssize_t k = h1_body_feed(&x->parser, data, n, x->slices, BODY_SLICES, &ns, &done);
    if (k < 0) {
        conn_read_done(h->conn);
        reqlog(r, NULL, WEIR_LOG_INFO,
               "client %llu: invalid request body framing", (unsigned long long)h->conn->id);
        body_failed(h, (int)-k);
        return;
    }
    r->request_length += (size_t)k;
    r->body.done = done;
    /* pipelined bytes after the body wait in in[] for the next request, and
     * bytes beyond the slice room for the next round */
    if ((size_t)k < n && in_append(h, data + k, n - (size_t)k) < 0) {
        conn_read_done(h->conn);
        h1_close(h, CONN_ABORT);
        return;
    }
    x->body_held = 1; /* the slices point into the connection's buffer */
    deliver_body(h, r, ns, done);
}

static void ds_read_body(weir_request_t *r)
{
    h1_conn_t *h = conn_of(r);
    h1x_t *x = r->ds_ctx;
    if (x->body_held) {
        x->body_held = 0;
        conn_read_done(h->conn);
    }
    if (r->body.done || x->body_stopped || h->closing)
        return;
    /* Expect: 100-continue: weir answers it itself when it starts reading the
     * body (as nginx does) and never forwards Expect, so the client is not
     * kept waiting by an upstream that does not know a body is coming, and
     * a 1xx from upstream can never be confused with ours. */
    if (r->expect_continue && !h->continue_sent && h->in.off == h->in.len && !r->body.nfirst) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        wireq_t *q = conn_wq(h->conn);
        h->continue_sent = 1;
        if (q && wq_add(q, cont, sizeof(cont) - 1) == 0)
            conn_send(h->conn);
    }
    if (h->in.off < h->in.len) { /* what did not fit the slices last round */
        size_t ns = 0;
        int done = 0;
        ssize_t k = h1_body_feed(&x->parser, h->in.data + h->in.off, h->in.len - h->in.off,
                                 x->slices, BODY_SLICES, &ns, &done);
        if (k < 0) {
            body_failed(h, (int)-k);
            return;
        }
        h->in.off += (size_t)k;
        r->request_length += (size_t)k;
        r->body.done = done;
        deliver_body(h, r, ns, done);
        return;
    }
    x->reading = 1;
    read_timer(h, h->listener->limits.client_body_timeout);
    conn_read(h->conn);
}

static void ds_stop_body(weir_request_t *r)
{
    h1_conn_t *h = conn_of(r);
    h1x_t *x = r->ds_ctx;
    x->body_stopped = 1;
    /* an upstream send being cut may still read the slices: the request
     * keeps the buffer until it is freed */
    if (x->body_held) {
        x->body_held = 0;
        if (conn_hand_over_input(h->conn, r->arena) < 0)
            conn_read_done(h->conn);
    }
    if (x->reading)
        read_timer(h, 0);
}

/* ---------------------------------------------------------- the response */

static int ds_start_response(weir_request_t *r, const response_start_t *rs)
{
    h1_conn_t *h = conn_of(r);
    h1x_t *x = r->ds_ctx;
    int keep = may_keep(h, r);
    h1_framing_t head_framing = H1_FRAMING_NONE, body_framing = H1_FRAMING_NONE;
    uint64_t clen = 0;
    switch (rs->body) {
    case BODY_NONE:
        if (rs->advertised >= 0) { /* HEAD, 304: the length, without the body */
            head_framing = H1_FRAMING_LENGTH;
            clen = (uint64_t)rs->advertised;
        }
        break;
    case BODY_LENGTH:
        head_framing = body_framing = H1_FRAMING_LENGTH;
        clen = rs->length;
        break;
    case BODY_STREAM:
        if (r->version == 10) {
            head_framing = body_framing = H1_FRAMING_CLOSE;
            keep = 0;
        } else {
            head_framing = body_framing = H1_FRAMING_CHUNKED;
        }
        break;
    }
    if (r->status == 101) {
        /* the switch: Connection: upgrade instead of keep-alive or close */
        if (!r->upgrade || !rs->upgrade.len ||
            headers_push(r->arena, &r->resp_headers, WEIR_STR("Upgrade"), rs->upgrade) < 0 ||
            headers_push(r->arena, &r->resp_headers, WEIR_STR("Connection"),
                         WEIR_STR("upgrade")) < 0)
            return -1;
        keep = 1;
        head_framing = body_framing = H1_FRAMING_NONE;
    }
    int version = r->version == 10 ? 10 : 11;
    size_t hsz = h1_response_size(version, r->status, rs->reason, &r->resp_headers, head_framing,
                                  clen, keep);
    char *head = arena_alloc_raw(r->arena, hsz + 1);
    if (!head)
        return -1;
    ssize_t n = h1_serialize_response(head, hsz + 1, version, r->status, rs->reason,
                                      &r->resp_headers, head_framing, clen, keep);
    if (n < 0) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "cannot serialise the response head (a module set an invalid header?)");
        return -1;
    }
    x->head = (weir_str_t){head, (size_t)n};
    x->head_queued = 1;
    x->down_framing = body_framing;
    x->down_keepalive = keep;
    return 0;
}

static void ds_send_body(weir_request_t *r, const weir_str_t *s, size_t n, int last,
                         exchange_fn done)
{
    h1_conn_t *h = conn_of(r);
    h1x_t *x = r->ds_ctx;
    wireq_t *q = conn_wq(h->conn);
    if (!q) {
        h1_close(h, CONN_ABORT);
        return;
    }
    int rc = 0;
    if (x->head_queued) {
        rc |= wq_add(q, x->head.data, x->head.len);
        x->head_queued = 0;
        x->head_sent = 1;
    }
    long bytes = h1_queue_body(q, s, n, last, x->down_framing == H1_FRAMING_CHUNKED);
    if (bytes < 0)
        rc = -1;
    else
        r->body_bytes_sent += (uint64_t)bytes;
    if (rc) { /* more slices than the queue holds: a bug, never silent */
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "client %llu: send queue overflow", (unsigned long long)h->conn->id);
        h1_close(h, CONN_ABORT);
        return;
    }
    x->send_done = done;
    x->sending = 1;
    conn_timer(h->conn, CONN_TIMER_WRITE, h->listener->limits.send_timeout);
    conn_send(h->conn);
}

static int ds_head_sent(const weir_request_t *r)
{
    const h1x_t *x = r->ds_ctx;
    return x->head_sent;
}

static void ds_abort(weir_request_t *r)
{
    h1_close(conn_of(r), CONN_ABORT);
}

/* The request is over: the log phase, then its memory (or, while a send on
 * either side may still read it, its last reference goes later). */
static void end_request(h1_conn_t *h)
{
    weir_request_t *r = h->r;
    if (!r)
        return;
    /* body bytes the upstream side took and never gave back (it failed, or
     * weir answered in its place): a cut send may still read them, so the
     * request keeps the buffer until it is freed */
    if (h->x->body_held) {
        h->x->body_held = 0;
        if (conn_hand_over_input(h->conn, r->arena) < 0)
            conn_read_done(h->conn);
    }
    if (!r->suspended && r->status)
        request_run_log(r);
    h->r = NULL;
    h->x = NULL;
    request_free(r);
}

/* The response is complete: keep the connection for the next request, or
 * close it. A response whose head promised keepalive keeps its promise even
 * if the worker started draining meanwhile: the client may already be
 * sending its next request, which is answered with Connection: close. A
 * close while the client may still be sending (its body unread, an error
 * answered, pipelined bytes) lingers, so the client reads the answer. */
static void ds_finish(weir_request_t *r)
{
    h1_conn_t *h = conn_of(r);
    h1x_t *x = r->ds_ctx;
    int keep = x->down_keepalive && !h->close_after && r->body.done;
    unsigned how = (!r->body.done || h->close_after || h->in.off < h->in.len) ? CONN_LINGER : 0;
    end_request(h);
    if (!keep) {
        h1_close(h, how);
        return;
    }
    inbuf_compact(&h->in);
    h1_scan_init(&h->scan);
    if (h->in.len) {
        h->state = S_HEAD;
        read_timer(h, h->listener->limits.client_header_timeout);
        try_head(h);
    } else {
        h->state = S_IDLE;
        metrics_conn_idle(h->conn, 1);
        read_timer(h, weir_worker_draining() ? drain_idle_grace
                                             : h->listener->limits.keepalive_timeout);
        conn_read(h->conn);
    }
}

/* After the 101 went out: the connection leaves HTTP/1 for a tunnel, with
 * what the client sent past its request head. The request is logged now
 * (status 101); the tunnel's own bytes are not in the access log. */
static int ds_tunnel(weir_request_t *r, conn_t *up, const char *pending, size_t len,
                     uint64_t idle_ms)
{
    h1_conn_t *h = conn_of(r);
    conn_t *c = h->conn;
    if (tunnel_start(c, h->in.data + h->in.off, h->in.len - h->in.off, up, pending, len,
                     idle_ms) < 0)
        return -1;
    end_request(h);
    inbuf_free(&h->in);
    free(h);
    return 0;
}

static const downstream_t h1_downstream = {
    .start_response = ds_start_response,
    .send_body = ds_send_body,
    .finish = ds_finish,
    .abort = ds_abort,
    .read_body = ds_read_body,
    .stop_body = ds_stop_body,
    .head_sent = ds_head_sent,
    .tunnel = ds_tunnel,
};

/* ---------------------------------------------------------- connection */

static void h1_close(h1_conn_t *h, unsigned how)
{
    if (h->closing)
        return;
    h->closing = 1;
    h->state = S_CLOSING;
    weir_request_t *r = h->r;
    if (r && !r->suspended) {
        proxy_cancel(r);
        /* an upstream send may still read body bytes from our buffer */
        if (h->x->body_held && conn_hand_over_input(h->conn, r->arena) == 0)
            h->x->body_held = 0;
    }
    conn_close(h->conn, how);
}

static void on_release(conn_t *c)
{
    h1_conn_t *h = c->owner;
    weir_request_t *r = h->r;
    if (r && r->suspended) {
        downstream_orphan_request(r);
        h->r = NULL;
    }
    end_request(h);
    inbuf_free(&h->in);
    free(h);
}

/* h2c with prior knowledge (an `http2: true` listener): a connection whose
 * first bytes are the HTTP/2 preface leaves HTTP/1 for HTTP/2 with them. 1
 * when the connection is no longer ours, or more bytes must tell. */
static int h2_preface(h1_conn_t *h)
{
    size_t n = h->in.len - h->in.off;
    if (n > H2_PREFACE_LEN)
        n = H2_PREFACE_LEN;
    if (memcmp(h->in.data + h->in.off, H2_PREFACE, n) != 0)
        return 0;
    conn_t *c = h->conn;
    if (n < H2_PREFACE_LEN) {
        conn_read(c);
        return 1;
    }
    inbuf_t in = h->in;
    read_timer(h, 0);
    free(h);
    h2_server_start(c, in.data + in.off, in.len - in.off);
    inbuf_free(&in);
    return 1;
}

static void on_read(conn_t *c, long n, const char *data)
{
    h1_conn_t *h = c->owner;
    if (n <= 0) {
        if (h->state == S_EXCHANGE && h->x && h->x->reading)
            reqlog(h->r, c, WEIR_LOG_INFO,
                   "client %llu closed during the request body", (unsigned long long)c->id);
        h1_close(h, 0);
        return;
    }
    if (h->state == S_EXCHANGE) {
        body_input(h, data, (size_t)n);
        return;
    }
    int rc = in_append(h, data, (size_t)n);
    conn_read_done(c);
    if (rc < 0) {
        h1_close(h, 0);
        return;
    }
    if (h->state == S_IDLE) {
        h->state = S_HEAD;
        metrics_conn_idle(c, 0);
        read_timer(h, h->listener->limits.client_header_timeout);
    }
    if (h->state == S_HEAD && h->listener->http2 && !h->requests && h2_preface(h))
        return;
    if (h->state == S_HEAD)
        try_head(h);
}

static void on_sent(conn_t *c, int res)
{
    h1_conn_t *h = c->owner;
    conn_timer(c, CONN_TIMER_WRITE, 0);
    if (res < 0) {
        reqlog(h->r, c, WEIR_LOG_INFO,
               "client %llu: send failed: %s", (unsigned long long)c->id, strerror(-res));
        h1_close(h, CONN_ABORT);
        return;
    }
    h1x_t *x = h->x;
    if (x && x->sending) {
        x->sending = 0;
        x->send_done(h->r);
    }
}

static void on_timeout(conn_t *c, int which)
{
    h1_conn_t *h = c->owner;
    if (which == CONN_TIMER_WRITE) {
        reqlog(h->r, c, WEIR_LOG_INFO, "client %llu: send_timeout", (unsigned long long)c->id);
        h1_close(h, CONN_ABORT);
        return;
    }
    switch (h->state) {
    case S_HEAD:
        reqlog(h->r, c, WEIR_LOG_INFO,
               "client %llu: client_header_timeout", (unsigned long long)c->id);
        if (h->in.len > h->in.off && !h->r) {
            answer_status(h, 408);
            return;
        }
        break;
    case S_EXCHANGE:
        reqlog(h->r, c, WEIR_LOG_INFO,
               "client %llu: client_body_timeout", (unsigned long long)c->id);
        /* 408 while nothing of a response is on its way (SPEC §6) */
        if (h->x && !h->x->head_sent && !h->x->sending) {
            answer_status(h, 408);
            return;
        }
        h1_close(h, CONN_ABORT);
        return;
    default:
        break;
    }
    h1_close(h, 0);
}

static const conn_handler_t h1_handler = {
    .read = on_read,
    .sent = on_sent,
    .timeout = on_timeout,
    .release = on_release,
};

/*
 * Every response from now on says Connection: close (may_keep). A keepalive
 * connection idle between requests is closed after a short grace, not at
 * once: a busy client has its next request on the way, and closing under it
 * would fail that request for any client that does not retry (wrk, most
 * load balancers); within the grace it is answered, with Connection: close.
 * One still idle when the grace ends is closed; a client sending right then
 * gets no response byte and may retry. A new connection waiting for its
 * first request is not idle: the client is sending (deferred accept waited
 * for its bytes), so it keeps its header timeout.
 */
void h1_server_drain(uint64_t idle_grace_ms)
{
    drain_idle_grace = idle_grace_ms;
    for (conn_t *c = conn_first(); c; c = c->next) {
        if (c->h != &h1_handler || c->closing) /* its owner may be gone */
            continue;
        h1_conn_t *h = c->owner;
        struct timer *t = &c->timers[CONN_TIMER_READ];
        if (h->state == S_IDLE && h->requests > 0 &&
            (!t->deadline || t->deadline > g_loop->now + idle_grace_ms))
            read_timer(h, idle_grace_ms);
    }
}
