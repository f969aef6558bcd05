/*
 * The upstream side of an exchange (proxy.h).
 *
 * Two pumps run at once on an upstream connection. The request pump sends
 * the head with the body bytes that came with it, then asks the downstream
 * for more body (read_body), each slice sent straight from the buffer it
 * arrived in; write_timeout limits each send. The response pump is armed as
 * soon as the head is submitted: a head that comes early (an upstream that
 * answers 413 or 401 mid-upload, or streams its answer) goes down at once.
 * read_timeout runs once the request is sent, and between response reads.
 *
 * When the response ends before the request body did, weir stops the body
 * (stop_body), the connection is not reused (the server and weir no longer
 * agree where the next message starts), and the downstream closes or lingers
 * as its protocol requires.
 *
 * Memory: the request's memory (its serialised head, the first body slices)
 * may be read by an upstream send after the downstream let go of the
 * request, so an upstream connection holds a reference on the request while
 * it serves it; the reference goes when the connection is released (no send
 * in flight) or pooled. Response bytes the downstream is still sending when
 * the upstream connection goes are handed over to the request's arena.
 */
#include "proxy.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "arena.h"
#include "conn.h"
#include "downstream.h"
#include "errpage.h"
#include "h1.h"
#include "h1_queue.h"
#include "h2_client.h"
#include "inbuf.h"
#include "log.h"
#include "reqlog.h"
#include "metrics_core.h"
#include "upstream.h"
#include "workstate.h"

#define RESPONSE_HEAD_MIN_LIMIT (64 * 1024)
#define UP_SLICES 16

typedef struct upconn upconn_t;

/* The proxy's state for one exchange, in the request's arena (the core's
 * own context slot, index nmodules). */
typedef struct proxy_x {
    weir_str_t head; /* the serialised upstream request head, kept for retries */
    h1_framing_t up_framing;
    upconn_t *up;
} proxy_x_t;

struct upconn {
    conn_t *conn;
    weir_upstream_t *u;
    size_t peer;
    char *pool_key;
    size_t pool_key_len;
    weir_request_t *r; /* the exchange served, with a reference; NULL in the pool */
    unsigned pooled : 1, reused : 1, got_bytes : 1, keepalive : 1, connecting : 1,
        req_sending : 1, req_done : 1, req_stopped : 1, resp_head : 1, resp_done : 1,
        reading : 1, down_sending : 1, closing : 1, tunnel : 1, pool_after_send : 1;
    size_t interim_bytes; /* 1xx heads of this response so far: they count
                             toward the head limit, so a 1xx flood is bounded */
    h1_parser_t parser;
    h1_scan_t scan;
    h1_response_t resp;
    inbuf_t in;
    weir_str_t slices[UP_SLICES];
    upconn_t *pnext, *pprev;
};

/* Idle connections of one upstream, newest first: reuse takes the newest
 * (warmest), a full pool gives up its oldest (least recently used, as
 * nginx's keepalive cache): with pool keys, connections kept for clients
 * that left would otherwise fill the pool for good. */
typedef struct pool {
    upconn_t *head, *tail;
    size_t n;
} pool_t;

static pool_t *pools; /* per upstream index */
static size_t npools;
static unsigned long up_fds; /* upstream sockets open in this worker */

static const conn_handler_t exchange_handler;
static const conn_handler_t pool_handler;

static void up_fail(upconn_t *up, int status, int count_failure, const char *why);
static void up_fail_errno(upconn_t *up, int status, int count_failure, const char *what, int err);
static void read_response(upconn_t *up);
static void connect_peer(weir_request_t *r);
static void up_close(upconn_t *up, unsigned how);
static void request_pump_done(upconn_t *up);

static proxy_x_t *px_of(const weir_request_t *r)
{
    return (proxy_x_t *)r->ctx[r->cf->nmodules];
}

static const char *peer_name(const upconn_t *up)
{
    return up->u->peers[up->peer].address;
}

/* ------------------------------------------------------------ attachment */

static void attach(upconn_t *up, weir_request_t *r)
{
    up->r = r;
    request_ref(r);
    px_of(r)->up = up;
    conn_set_handler(up->conn, &exchange_handler, up);
}

/* The exchange lets go of up. While the downstream still sends response
 * bytes from up's buffers, the request takes them over. */
static void detach(upconn_t *up)
{
    weir_request_t *r = up->r;
    if (!r)
        return;
    proxy_x_t *px = px_of(r);
    if (px->up == up)
        px->up = NULL;
    if (up->down_sending) {
        conn_hand_over_input(up->conn, r->arena);
        if (up->in.data && arena_cleanup(r->arena, free, up->in.data) == 0)
            up->in = (inbuf_t){0};
        up->down_sending = 0;
    }
}

/* The request reference goes once nothing in flight reads the request. */
static void drop_request(upconn_t *up)
{
    weir_request_t *r = up->r;
    up->r = NULL;
    if (r)
        request_free(r);
}

/* ------------------------------------------------------------------ pool */

static void pool_remove(upconn_t *up)
{
    pool_t *p = &pools[up->u->index];
    if (up->pprev)
        up->pprev->pnext = up->pnext;
    else
        p->head = up->pnext;
    if (up->pnext)
        up->pnext->pprev = up->pprev;
    else
        p->tail = up->pprev;
    up->pnext = up->pprev = NULL;
    up->pooled = 0;
    p->n--;
}

static void up_close(upconn_t *up, unsigned how)
{
    if (up->closing)
        return;
    if (up->pooled)
        pool_remove(up);
    up->closing = 1;
    detach(up);
    up_fds--;
    conn_close(up->conn, how);
}

static void on_up_release(conn_t *c)
{
    upconn_t *up = c->owner;
    drop_request(up);
    inbuf_free(&up->in);
    free(up->pool_key);
    free(up);
}

static void pool_put(upconn_t *up)
{
    pool_t *p = &pools[up->u->index];
    detach(up);
    drop_request(up);
    if (up->u->keepalive == 0 || weir_worker_draining()) {
        up_close(up, 0);
        return;
    }
    if (p->n >= up->u->keepalive)
        up_close(p->tail, 0);
    inbuf_free(&up->in);
    conn_set_handler(up->conn, &pool_handler, up);
    up->pooled = 1;
    up->pnext = p->head;
    up->pprev = NULL;
    if (p->head)
        p->head->pprev = up;
    else
        p->tail = up;
    p->head = up;
    p->n++;
    /* notice a server that closes the idle connection, so we never send on it */
    conn_watch(up->conn);
    conn_timer(up->conn, CONN_TIMER_READ, up->u->idle_timeout);
}

static int same_key(const upconn_t *up, weir_str_t key)
{
    return up->pool_key_len == key.len && (!key.len || memcmp(up->pool_key, key.data, key.len) == 0);
}

static upconn_t *pool_get(weir_upstream_t *u, size_t peer, weir_str_t key)
{
    pool_t *p = &pools[u->index];
    for (upconn_t *up = p->head; up; up = up->pnext) {
        if (up->peer != peer || !same_key(up, key))
            continue;
        pool_remove(up);
        conn_unwatch(up->conn);
        conn_timer(up->conn, CONN_TIMER_READ, 0);
        up->reused = 1;
        return up;
    }
    return NULL;
}

/* Readable while idle means EOF or unsolicited bytes: either way unusable;
 * a close is the server's right, bytes are a fault. */
static void on_pool_event(conn_t *c, long n, const char *data)
{
    (void)n, (void)data;
    upconn_t *up = c->owner;
    char b;
    if (c->tr) /* TLS: a close_notify, or a late post-handshake message */
        log_info("upstream %s (%s): idle keepalive connection readable; closing it",
                 up->u->name, peer_name(up));
    else if (recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
        log_warn("upstream %s (%s): bytes on an idle keepalive connection (after the end "
                 "of a response); closing it",
                 up->u->name, peer_name(up));
    up_close(up, CONN_ABORT);
}

static void on_pool_timeout(conn_t *c, int which)
{
    (void)which;
    up_close(c->owner, 0);
}

static const conn_handler_t pool_handler = {
    .read = on_pool_event,
    .timeout = on_pool_timeout,
    .release = on_up_release,
};

/* Near the fd limit an idle pooled connection gives way to the one a client
 * is waiting for (the oldest of the first pool that has one): the worker
 * admits only as many clients as can each hold an upstream socket, so
 * the pools are what stands between a client and its descriptor. */
static void pool_make_fd_room(void)
{
    if (up_fds < workstate_upstream_fd_room())
        return;
    for (size_t i = 0; i < npools; i++) {
        if (pools[i].tail) {
            up_close(pools[i].tail, CONN_ABORT);
            return;
        }
    }
}

/* ------------------------------------------------------------ connecting */

static upconn_t *up_new(weir_request_t *r, size_t peer, int *err)
{
    weir_upstream_t *u = r->upstream;
    const peer_t *p = &u->peers[peer];
    upconn_t *up = calloc(1, sizeof(*up));
    if (!up) {
        *err = ENOMEM;
        return NULL;
    }
    pool_make_fd_room();
    up->conn = conn_socket(p->addr.ss.ss_family, r->cf);
    if (!up->conn) {
        *err = errno;
        free(up);
        return NULL;
    }
    up_fds++;
    up->u = u;
    up->peer = peer;
    if (r->pool_key.len) {
        up->pool_key = malloc(r->pool_key.len);
        if (up->pool_key) {
            memcpy(up->pool_key, r->pool_key.data, r->pool_key.len);
            up->pool_key_len = r->pool_key.len;
        }
    }
    h1_parser_init(&up->parser);
    return up;
}

static void send_request(upconn_t *up);

static void handshake_done(conn_t *c, int ok)
{
    upconn_t *up = c->owner;
    if (!ok) {
        metrics_connect_failed(up->u, up->peer,
                               c->hs_timed_out ? MCONNECT_TIMEOUT : MCONNECT_ERROR);
        if (c->hs_timed_out) /* as a connect that takes too long */
            up_fail(up, 504, 1, "connect_timeout in the transport handshake");
        else
            up_fail(up, 502, 1, "upstream transport handshake failed");
        return;
    }
    if (up->r)
        up->r->connect_us = now_us();
    send_request(up);
}

static void on_connected(conn_t *c, int res)
{
    upconn_t *up = c->owner;
    up->connecting = 0;
    if (res < 0) {
        metrics_connect_failed(up->u, up->peer,
                               res == -ECONNREFUSED ? MCONNECT_REFUSED : MCONNECT_ERROR);
        up_fail_errno(up, 502, 1, "connect() failed", -res);
        return;
    }
    conn_handshake(c, up->u->connect_timeout, handshake_done);
}

/* ----------------------------------------------------------- request side */

/* Body slices, framed for the upstream, onto the connection's queue. */
static int queue_body(upconn_t *up, wireq_t *q, const weir_str_t *s, size_t n, int last)
{
    int chunked = px_of(up->r)->up_framing == H1_FRAMING_CHUNKED;
    return h1_queue_body(q, s, n, last, chunked) < 0 ? -1 : 0;
}

static void up_send(upconn_t *up)
{
    up->req_sending = 1;
    conn_timer(up->conn, CONN_TIMER_WRITE, up->u->write_timeout);
    conn_send(up->conn);
}

/* Head plus the body bytes that came with it; the same on every retry. The
 * response is read from now on. */
static void send_request(upconn_t *up)
{
    weir_request_t *r = up->r;
    proxy_x_t *px = px_of(r);
    wireq_t *q = conn_wq(up->conn);
    if (!q || wq_add(q, px->head.data, px->head.len) < 0 ||
        queue_body(up, q, r->body.first, r->body.nfirst, r->body.done) < 0) {
        up_fail(up, 502, 0, "out of memory for the request");
        return;
    }
    up->req_done = 0;
    up_send(up);
    read_response(up);
}

/* The downstream delivered request body slices (the sink). */
static void body_sink(weir_request_t *r, const weir_str_t *s, size_t n, int last)
{
    upconn_t *up = px_of(r)->up;
    if (!up || up->req_stopped) {
        r->ds->stop_body(r);
        return;
    }
    wireq_t *q = conn_wq(up->conn);
    if (!q || queue_body(up, q, s, n, last) < 0) {
        up_fail(up, 502, 0, "out of memory for the request body");
        return;
    }
    (void)last; /* r->body.done says it */
    up_send(up);
}

static void on_up_sent(conn_t *c, int res)
{
    upconn_t *up = c->owner;
    weir_request_t *r = up->r;
    up->req_sending = 0;
    conn_timer(c, CONN_TIMER_WRITE, 0);
    if (res < 0) {
        if (up->pool_after_send) {
            up->pool_after_send = 0;
            up_close(up, CONN_ABORT);
            return;
        }
        if (up->resp_head) {
            /* the upstream answered and stopped reading: the body is over */
            up->keepalive = 0;
            up->req_stopped = 1;
            r->ds->stop_body(r);
            return;
        }
        up_fail_errno(up, 502, 0, "send failed", -res);
        return;
    }
    if (up->pool_after_send) { /* the response ended first; the request is sent now */
        up->pool_after_send = 0;
        pool_put(up);
        return;
    }
    if (up->req_stopped)
        return;
    if (!r->body.done) {
        r->ds->read_body(r); /* the sink sends what comes */
        return;
    }
    request_pump_done(up);
}

static void request_pump_done(upconn_t *up)
{
    up->req_done = 1;
    if (!up->resp_head && up->reading)
        conn_timer(up->conn, CONN_TIMER_READ, up->u->read_timeout);
}

/* -------------------------------------------------------- response side */

static void arm_up_read(upconn_t *up)
{
    up->reading = 1;
    if (up->req_done || up->resp_head)
        conn_timer(up->conn, CONN_TIMER_READ, up->u->read_timeout);
    conn_read(up->conn);
}

static void read_response(upconn_t *up)
{
    up->interim_bytes = 0;
    up->resp_head = up->resp_done = 0;
    h1_scan_init(&up->scan);
    h1_parser_reset(&up->parser);
    arm_up_read(up);
}

/* The response head limit: max_header_size, at least 64 KiB (upstream heads
 * are not the client's to size), less the 1xx heads already read. */
static size_t head_limit(const upconn_t *up)
{
    size_t limit = up->r->listener->limits.max_header_size;
    if (limit < RESPONSE_HEAD_MIN_LIMIT)
        limit = RESPONSE_HEAD_MIN_LIMIT;
    return up->interim_bytes < limit ? limit - up->interim_bytes : 0;
}

static void head_complete(upconn_t *up, size_t head_len);

/* Scans what up->in holds of the response head: 0 when more is needed,
 * else the head is complete (handled) or the response failed. */
static int scan_response_head(upconn_t *up)
{
    size_t limit = head_limit(up);
    ssize_t n = limit ? h1_scan_head_r(&up->scan, up->in.data + up->in.off,
                                       up->in.len - up->in.off, limit, 0)
                      : -431;
    if (n == 0)
        return 0;
    if (n < 0)
        up_fail(up, 502, 0, n == -431 ? "response head over the limit" : "invalid response head");
    else
        head_complete(up, (size_t)n);
    return 1;
}

static int up_append(upconn_t *up, const char *p, size_t n)
{
    return inbuf_append(&up->in, p, n, 4096);
}

/* The exchange is over on this side: pool or close the connection, stop a
 * request body that is still coming, let the downstream finish. */
static void response_done(upconn_t *up)
{
    weir_request_t *r = up->r;
    r->response_us = now_us();
    /* the client's body is not all read, or not all sent: the server and
     * weir no longer agree where the next message starts */
    int body_cut = !r->body.done || up->req_stopped;
    if (body_cut) {
        up->req_stopped = 1;
        r->ds->stop_body(r);
    }
    if (up->keepalive && up->parser.done && !body_cut) {
        if (up->req_sending)
            up->pool_after_send = 1; /* its last bytes are in flight */
        else
            pool_put(up);
    } else {
        up_close(up, body_cut ? CONN_ABORT : 0);
    }
    r->ds->finish(r);
}

static void response_sent(weir_request_t *r);

/* Response body slices down to the client, from the buffer they are in. */
static void send_down(upconn_t *up, size_t n, int done)
{
    weir_request_t *r = up->r;
    up->resp_done = done;
    up->down_sending = 1;
    conn_timer(up->conn, CONN_TIMER_READ, 0);
    r->ds->send_body(r, up->slices, n, done, response_sent);
}

/* Bytes after the end of the response are dropped and the connection is
 * never reused: they are either a broken server or a response meant for
 * the next request. */
static void beyond_body(upconn_t *up, size_t n)
{
    reqlog(up->r, NULL, WEIR_LOG_WARN,
           "upstream %s (%s): %zu bytes beyond the end of the response dropped; the "
           "connection is not reused",
           up->u->name, peer_name(up), n);
    up->keepalive = 0;
}

/* Decodes response body bytes waiting in up->in (what came with the head,
 * or was left over) into up->slices. -1 after logging invalid framing. */
static int feed_inbuf(upconn_t *up, size_t *ns, int *done)
{
    ssize_t k = h1_body_feed(&up->parser, up->in.data + up->in.off, up->in.len - up->in.off,
                             up->slices, UP_SLICES, ns, done);
    if (k < 0) {
        reqlog(up->r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): invalid response body framing", up->u->name,
               peer_name(up));
        up->keepalive = 0;
        return -1;
    }
    up->in.off += (size_t)k;
    if (*done && up->in.off < up->in.len)
        beyond_body(up, up->in.len - up->in.off);
    return 0;
}

static void abort_exchange(upconn_t *up)
{
    weir_request_t *r = up->r;
    up->keepalive = 0;
    up_close(up, CONN_ABORT);
    r->ds->abort(r);
}

static void stream_more(upconn_t *up)
{
    if (up->in.off < up->in.len) {
        size_t ns = 0;
        int done = 0;
        if (feed_inbuf(up, &ns, &done) < 0) {
            abort_exchange(up);
            return;
        }
        send_down(up, ns, done);
        return;
    }
    arm_up_read(up);
}

/* The downstream took what it held back (hold): the upstream is read on. */
static void response_resume(weir_request_t *r)
{
    upconn_t *up = px_of(r)->up;
    if (!up) {
        r->ds->abort(r);
        return;
    }
    stream_more(up);
}

static void response_sent(weir_request_t *r)
{
    upconn_t *up = px_of(r)->up;
    if (!up) { /* the upstream side went while the send was in flight */
        r->ds->abort(r);
        return;
    }
    up->down_sending = 0;
    conn_read_done(up->conn);
    /* the head's buffer, with the body bytes that came with it, is all
     * sent: a response that streams on, or waits for a slow client, holds
     * none */
    if (up->in.off >= up->in.len)
        inbuf_free(&up->in);
    if (up->resp_done) {
        response_done(up);
        return;
    }
    if (r->ds->hold && r->ds->hold(r, response_resume))
        return;
    stream_more(up);
}

/* The 101 went down: both connections become a tunnel. */
static void upgrade_sent(weir_request_t *r)
{
    upconn_t *up = px_of(r)->up;
    if (!up) {
        r->ds->abort(r);
        return;
    }
    if (r->ds->tunnel(r, up->conn, up->in.data + up->in.off, up->in.len - up->in.off,
                      up->u->tunnel_timeout) < 0) {
        reqlog(r, NULL, WEIR_LOG_ERROR, "out of memory for a tunnel");
        abort_exchange(up);
        return;
    }
    /* the connection is the tunnel's now; its descriptor counts against the
     * client's (each client is allowed two) */
    px_of(r)->up = NULL;
    up_fds--;
    drop_request(up);
    inbuf_free(&up->in);
    free(up->pool_key);
    free(up);
}

static void send_response_head(weir_request_t *r)
{
    upconn_t *up = px_of(r)->up;
    if (!up) {
        r->ds->abort(r);
        return;
    }
    const h1_response_t *resp = &up->resp;
    response_start_t rs = {.reason = resp->reason, .advertised = -1};
    if (r->status == 101) {
        rs.body = BODY_NONE;
        rs.upgrade = resp->upgrade_value;
        if (r->ds->start_response(r, &rs) < 0) {
            up_close(up, CONN_ABORT);
            weir_respond(r, 502, (weir_str_t){0});
            errpage_send(r);
            return;
        }
        r->ds->send_body(r, NULL, 0, 1, upgrade_sent);
        return;
    }
    if (resp->framing == H1_FRAMING_NONE) {
        /* HEAD/304: echo the length, send no body; a 204 has no
         * Content-Length at all (RFC 9110 §8.6) */
        rs.body = BODY_NONE;
        if (resp->has_content_length && r->status != 204)
            rs.advertised = (int64_t)resp->content_length;
    } else if (resp->framing == H1_FRAMING_LENGTH) {
        rs.body = BODY_LENGTH;
        rs.length = resp->content_length;
    } else {
        rs.body = BODY_STREAM;
    }
    if (r->ds->start_response(r, &rs) < 0) {
        up->keepalive = 0;
        up_close(up, CONN_ABORT);
        weir_respond(r, 502, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    /* body bytes that arrived with the head go out with it (framing NONE is
     * done at once, which also marks the upstream message complete) */
    size_t ns = 0;
    int done = 0;
    if (feed_inbuf(up, &ns, &done) < 0) {
        up_close(up, CONN_ABORT);
        weir_respond(r, 502, (weir_str_t){0}); /* nothing was sent yet */
        errpage_send(r);
        return;
    }
    send_down(up, ns, done);
}

static void head_complete(upconn_t *up, size_t head_len)
{
    weir_request_t *r = up->r;
    int is_head = r->method.len == 4 && memcmp(r->method.data, "HEAD", 4) == 0;
    /* The request owns the bytes its response head points into: the reason
     * and r->resp_headers outlive the upstream's buffer, which goes back to
     * the pool or is freed as soon as the upstream side is done (an answer
     * of weir's own, the log phase and modules may still read them). */
    char *head = arena_alloc_raw(r->arena, head_len);
    if (!head) {
        up_fail(up, 502, 0, "out of memory for the response head");
        return;
    }
    memcpy(head, up->in.data + up->in.off, head_len);
    up->in.off += head_len;
    int rc = h1_parse_response(r->arena, &up->parser, head, head_len, is_head, &up->resp);
    if (rc < 0) {
        up_fail(up, 502, 0, "invalid response head");
        return;
    }
    if (up->resp.is_1xx) {
        /* 100/103: informational, never final; the real head follows */
        up->interim_bytes += head_len;
        h1_parser_reset(&up->parser);
        h1_scan_init(&up->scan);
        inbuf_compact(&up->in);
        if (!up->in.len || !scan_response_head(up))
            arm_up_read(up);
        return;
    }
    if (up->resp.status == 101 && (!r->upgrade || !up->resp.upgrade || !r->body.done)) {
        up_fail(up, 502, 0, "unsolicited 101 Switching Protocols");
        return;
    }
    up->resp_head = 1;
    up->keepalive = up->resp.keepalive;
    conn_timer(up->conn, CONN_TIMER_READ, 0);
    peer_report(up->u, up->peer, 1);
    r->status = up->resp.status;
    r->upstream_status = up->resp.status;
    r->resp_headers = up->resp.headers;
    r->resp_from_upstream = 1;
    r->header_us = now_us();
    request_run_phases(r, WEIR_PHASE_UPSTREAM_RESPONSE, WEIR_PHASE_UPSTREAM_RESPONSE,
                       send_response_head);
}

static void on_up_read(conn_t *c, long res, const char *data)
{
    upconn_t *up = c->owner;
    up->reading = 0;
    if (res <= 0) {
        if (!up->resp_head) {
            if (!up->got_bytes && up->reused) {
                up_fail(up, 502, 0, "keepalive connection closed by upstream");
                return;
            }
            /* a transport failing on a new connection's first read is the
             * end of its handshake (TLS 1.3 refuses a client certificate
             * after the client finished): a failure of the server */
            int tr_fault = res == -EPROTO && !up->reused && !up->got_bytes;
            up_fail(up, 502, tr_fault,
                    res == 0   ? "upstream closed the connection before the response head"
                    : tr_fault ? "transport failed before the response head"
                               : "recv failed before the response head");
            return;
        }
        /* in the body */
        if (res == 0 && h1_body_eof(&up->parser)) {
            up->keepalive = 0;
            send_down(up, 0, 1);
            return;
        }
        reqlog(up->r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): response cut short (%s); aborting the client connection",
               up->u->name, peer_name(up), res == 0 ? "closed" : strerror((int)-res));
        abort_exchange(up);
        return;
    }
    up->got_bytes = 1;
    if (!up->resp_head) {
        int rc = up_append(up, data, (size_t)res);
        conn_read_done(c);
        if (rc < 0) {
            up_fail(up, 502, 0, "out of memory");
            return;
        }
        if (!scan_response_head(up))
            arm_up_read(up);
        return;
    }
    /* response body: decode in place, send from the same buffer */
    size_t ns = 0;
    int done = 0;
    ssize_t k = h1_body_feed(&up->parser, data, (size_t)res, up->slices, UP_SLICES, &ns, &done);
    if (k < 0) {
        conn_read_done(c);
        reqlog(up->r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): invalid response body framing; aborting the client",
               up->u->name, peer_name(up));
        abort_exchange(up);
        return;
    }
    if ((size_t)k < (size_t)res) {
        if (done) {
            beyond_body(up, (size_t)res - (size_t)k);
        } else {
            /* slice array full: keep the rest for the next round */
            up->in.len = up->in.off = 0;
            if (up_append(up, data + k, (size_t)res - (size_t)k) < 0) {
                conn_read_done(c);
                abort_exchange(up);
                return;
            }
        }
    }
    send_down(up, ns, done);
}

/* -------------------------------------------------------------- failures */

/* count_failure: only connect errors and connect timeouts mark a peer toward
 * max_fails (SPEC §7 "passive failures (connect errors)"); a server that
 * accepted the connection and then misbehaved answers 502/504 but stays up. */
static void up_fail(upconn_t *up, int status, int count_failure, const char *why)
{
    weir_request_t *r = up->r;
    weir_upstream_t *u = up->u;
    size_t peer = up->peer;
    int stale = up->reused && !up->got_bytes && status == 502 && !up->connecting;
    reqlog(r, NULL, WEIR_LOG_ERROR, "upstream %s (%s): %s", u->name, peer_name(up), why);
    if (count_failure)
        peer_report(u, peer, 0);
    int head_sent = r && r->ds->head_sent(r);
    up->keepalive = 0;
    up_close(up, CONN_ABORT);
    if (!r)
        return;
    if (head_sent || up->resp_head) {
        r->ds->abort(r);
        return;
    }
    if (stale && r->body.retained) {
        /* the server closed a pooled connection as we reused it: same peer,
         * fresh connection, not counted as a try */
        r->peer = (int)peer;
        connect_peer(r);
        return;
    }
    if (upstream_may_retry(r) && request_pick_peer(r) >= 0) {
        reqlog(r, NULL, WEIR_LOG_INFO, "retrying on %s", r->upstream_addr);
        connect_peer(r);
        return;
    }
    weir_respond(r, status, (weir_str_t){0});
    errpage_send(r);
}

static void up_fail_errno(upconn_t *up, int status, int count_failure, const char *what, int err)
{
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", what, strerror(err));
    up_fail(up, status, count_failure, why);
}

static void on_up_timeout(conn_t *c, int which)
{
    upconn_t *up = c->owner;
    if (which == CONN_TIMER_WRITE) {
        if (up->connecting || c->handshaking) {
            metrics_connect_failed(up->u, up->peer, MCONNECT_TIMEOUT);
            up_fail(up, 504, 1, "connect_timeout");
            return;
        }
        if (up->resp_head) {
            reqlog(up->r, NULL, WEIR_LOG_ERROR,
                   "upstream %s (%s): write_timeout in the request body while the response "
                   "streams; aborting the client",
                   up->u->name, peer_name(up));
            abort_exchange(up);
            return;
        }
        up_fail(up, 504, 0, "write_timeout");
        return;
    }
    if (!up->resp_head) {
        up_fail(up, 504, 0, "read_timeout waiting for the response head");
        return;
    }
    reqlog(up->r, NULL, WEIR_LOG_ERROR,
           "upstream %s (%s): read_timeout in the response body; aborting the client",
           up->u->name, peer_name(up));
    abort_exchange(up);
}

static const conn_handler_t exchange_handler = {
    .connected = on_connected,
    .read = on_up_read,
    .sent = on_up_sent,
    .timeout = on_up_timeout,
    .release = on_up_release,
};

/* ---------------------------------------------------------------- entry */

void proxy_cancel(weir_request_t *r)
{
    if (r->ctx && r->upstream && r->upstream->protocol == UPSTREAM_H2) {
        h2_client_cancel(r);
        return;
    }
    proxy_x_t *px = r->ctx ? px_of(r) : NULL;
    if (!px || !px->up)
        return;
    upconn_t *up = px->up;
    up->keepalive = 0;
    up_close(up, CONN_ABORT);
}

void proxy_answer(weir_request_t *r)
{
    proxy_cancel(r);
    errpage_send(r);
}

static void connect_peer(weir_request_t *r)
{
    weir_upstream_t *u = r->upstream;
    size_t peer = (size_t)r->peer;
    upconn_t *up = pool_get(u, peer, r->pool_key);
    if (up) {
        attach(up, r);
        up->got_bytes = 0;
        up->req_stopped = 0;
        if (!r->connect_us)
            r->connect_us = now_us();
        send_request(up);
        return;
    }
    int err = 0;
    up = up_new(r, peer, &err);
    if (!up) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "upstream %s (%s): socket() failed: %s", u->name, u->peers[peer].address,
               strerror(err));
        weir_respond(r, 502, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    attach(up, r);
    if (upstream_connect_hooks(r, up->conn) < 0) {
        up_fail(up, 502, 0, "a module refused the upstream connection");
        return;
    }
    const peer_t *p = &u->peers[peer];
    up->connecting = 1;
    conn_timer(up->conn, CONN_TIMER_WRITE, u->connect_timeout);
    conn_connect(up->conn, (const struct sockaddr *)&p->addr.ss, p->addr.len);
}

int proxy_init(const weir_conf_t *cf)
{
    pools = calloc(cf->nupstreams + 1, sizeof(pool_t));
    npools = cf->nupstreams;
    request_on_answer = proxy_answer;
    return pools && h2_client_init(cf) == 0 ? 0 : -1;
}

void proxy_start(weir_request_t *r)
{
    if (r->upstream->protocol == UPSTREAM_H2) {
        upstream_set_host(r);
        h2_client_start(r);
        return;
    }
    proxy_x_t *px = arena_alloc(r->arena, sizeof(*px));
    if (!px) {
        weir_respond(r, 500, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    r->ctx[r->cf->nmodules] = px; /* the core's own slot */
    px->up_framing = r->body.kind == BODY_LENGTH   ? H1_FRAMING_LENGTH
                     : r->body.kind == BODY_STREAM ? H1_FRAMING_CHUNKED
                                                   : H1_FRAMING_NONE;
    r->body.sink = body_sink;
    upstream_set_host(r);
    if (r->upgrade &&
        (headers_push(r->arena, &r->headers, WEIR_STR("Upgrade"), r->upgrade_value) < 0 ||
         headers_push(r->arena, &r->headers, WEIR_STR("Connection"), WEIR_STR("upgrade")) < 0)) {
        weir_respond(r, 500, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    size_t hsz = h1_request_size(r->method, r->path, r->query, r->host_header, &r->headers,
                                 px->up_framing, r->body.length);
    char *buf = arena_alloc_raw(r->arena, hsz + 1);
    if (!buf) {
        weir_respond(r, 500, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    ssize_t n = h1_serialize_request(buf, hsz + 1, r->method, r->path, r->query, r->host_header,
                                     &r->headers, px->up_framing, r->body.length);
    if (n < 0) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "cannot serialise the upstream request (a module set an invalid value?)");
        weir_respond(r, 500, (weir_str_t){0});
        errpage_send(r);
        return;
    }
    px->head = (weir_str_t){buf, (size_t)n};
    connect_peer(r);
}
