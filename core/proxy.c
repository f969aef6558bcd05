/*
 * The upstream side of a proxied request: connection (fresh or from the
 * per-worker keepalive pool), request forwarding, response validation and
 * streaming back to the client, retries and passive failure marking.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "arena.h"
#include "http1.h"
#include "log.h"
#include "worker.h"

#define RESPONSE_HEAD_MIN_LIMIT (64 * 1024)

enum up_state {
    U_CONNECT,
    U_SEND,      /* sending head and/or body */
    U_WAIT_BODY, /* waiting for the client's next body bytes */
    U_READ_HEAD,
    U_READ_BODY,
    U_SEND_DOWN, /* waiting for the client side to take what we sent */
    U_IDLE,      /* in the pool */
};

struct upconn {
    loop_op_t connect_op, send_op, recv_op, poll_op;
    buf_waiter_t bufwait;
    int fd;
    enum up_state state;
    weir_upstream_t *u;
    size_t peer;
    unsigned inflight;
    unsigned closing : 1, reused : 1, got_bytes : 1, recv_armed : 1, poll_armed : 1,
        keepalive : 1, body_last : 1;
    size_t interim_bytes; /* 1xx heads of this response so far: they count
                             toward the head limit, so a 1xx flood is bounded */
    struct timer timer;
    client_t *c;
    h1_parser_t parser;
    h1_scan_t scan;
    h1_response_t resp;
    inbuf_t in;
    sendq_t sq;
    int send_bid; /* client buffer our pending send reads from */
    upconn_t *pnext, *pprev;
};

typedef struct pool {
    upconn_t *head;
    size_t n;
} pool_t;

static pool_t *pools; /* per upstream index */
static size_t npools;
static unsigned long up_fds; /* upstream sockets open in this worker */

static void on_connect(loop_op_t *op, int res, unsigned flags);
static void on_up_send(loop_op_t *op, int res, unsigned flags);
static void on_up_recv(loop_op_t *op, int res, unsigned flags);
static void on_up_poll(loop_op_t *op, int res, unsigned flags);
static void on_up_timer(struct timer *t);
static void up_fail(upconn_t *up, int status, int count_failure, const char *why);
static void up_fail_errno(upconn_t *up, int status, int count_failure, const char *what, int err);
static void read_response(upconn_t *up);
static void connect_peer(client_t *c);

#define UP_FROM(ptr, member) ((upconn_t *)((char *)(ptr) - offsetof(upconn_t, member)))

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
    up->pnext = up->pprev = NULL;
    p->n--;
}

static void up_free(upconn_t *up)
{
    timer_detach(g_loop, &up->timer);
    inbuf_free(&up->in);
    free(up);
}

static void up_maybe_free(upconn_t *up)
{
    if (up->closing && up->inflight == 0)
        up_free(up);
}

static void up_close(upconn_t *up)
{
    if (up->closing)
        return;
    if (up->state == U_IDLE)
        pool_remove(up);
    up->closing = 1;
    timer_cancel(g_loop, &up->timer);
    if (up->c && up->c->up == up)
        up->c->up = NULL;
    up->c = NULL;
    if (up->fd >= 0) {
        if (up->inflight) {
            struct io_uring_sqe *sqe = loop_sqe(g_loop);
            io_uring_prep_cancel_fd(sqe, up->fd, IORING_ASYNC_CANCEL_ALL);
            loop_prep_op(sqe, NULL);
        }
        struct io_uring_sqe *sqe = loop_sqe(g_loop);
        io_uring_prep_close(sqe, up->fd);
        loop_prep_op(sqe, NULL);
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        up->fd = -1;
        up_fds--;
    }
    up_maybe_free(up);
}

static void pool_put(upconn_t *up)
{
    pool_t *p = &pools[up->u->index];
    if (up->u->keepalive == 0 || p->n >= up->u->keepalive || weir_worker_draining()) {
        up_close(up);
        return;
    }
    up->c = NULL;
    up->state = U_IDLE;
    inbuf_free(&up->in);
    h1_parser_reset(&up->parser);
    up->pnext = p->head;
    up->pprev = NULL;
    if (p->head)
        p->head->pprev = up;
    p->head = up;
    p->n++;
    /* notice a server that closes the idle connection, so we never send on it */
    up->poll_armed = 1;
    up->inflight++;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_poll_add(sqe, up->fd, POLLIN | POLLRDHUP);
    loop_prep_op(sqe, &up->poll_op);
    timer_after(g_loop, &up->timer, up->u->idle_timeout);
}

static upconn_t *pool_get(weir_upstream_t *u, size_t peer)
{
    pool_t *p = &pools[u->index];
    for (upconn_t *up = p->head; up; up = up->pnext) {
        if (up->peer != peer)
            continue;
        pool_remove(up);
        if (up->poll_armed) {
            struct io_uring_sqe *sqe = loop_sqe(g_loop);
            io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)&up->poll_op);
            loop_prep_op(sqe, NULL);
        }
        up->reused = 1;
        return up;
    }
    return NULL;
}

static void on_up_poll(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    upconn_t *up = UP_FROM(op, poll_op);
    up->inflight--;
    up->poll_armed = 0;
    if (up->closing) {
        up_maybe_free(up);
        return;
    }
    /* readable while idle means EOF or unsolicited bytes: either way
     * unusable; a close is the server's right, bytes are a fault */
    if (res > 0 && up->state == U_IDLE) {
        char b;
        if (recv(up->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) > 0)
            log_warn("upstream %s (%s): bytes on an idle keepalive connection (after the end "
                     "of a response); closing it",
                     up->u->name, up->u->peers[up->peer].address);
        up_close(up);
    }
}

/* ------------------------------------------------------------ connecting */

static upconn_t *up_new(weir_upstream_t *u, size_t peer)
{
    upconn_t *up = calloc(1, sizeof(*up));
    if (!up)
        return NULL;
    up->fd = -1;
    up->u = u;
    up->peer = peer;
    up->send_bid = -1;
    up->connect_op.cb = on_connect;
    up->send_op.cb = on_up_send;
    up->recv_op.cb = on_up_recv;
    up->poll_op.cb = on_up_poll;
    timer_init(&up->timer, on_up_timer);
    h1_parser_init(&up->parser);
    return up;
}

/* Near the fd limit an idle pooled connection gives way to the one a client
 * is waiting for (the oldest of the first pool that has one): the worker
 * admits only as many clients as can each hold an upstream socket, so
 * the pools are what stands between a client and its descriptor. */
static void pool_make_fd_room(void)
{
    if (up_fds < worker_upstream_fd_room())
        return;
    for (size_t i = 0; i < npools; i++) {
        upconn_t *oldest = pools[i].head;
        if (!oldest)
            continue;
        while (oldest->pnext)
            oldest = oldest->pnext;
        up_close(oldest);
        return;
    }
}

static int up_connect(upconn_t *up)
{
    const peer_t *p = &up->u->peers[up->peer];
    const struct sockaddr *sa = (const struct sockaddr *)&p->addr.ss;
    pool_make_fd_room();
    up->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up->fd < 0)
        return -errno;
    up_fds++;
    if (sa->sa_family != AF_UNIX) {
        int one = 1;
        setsockopt(up->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    up->state = U_CONNECT;
    up->inflight++;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_connect(sqe, up->fd, sa, p->addr.len);
    loop_prep_op(sqe, &up->connect_op);
    timer_after(g_loop, &up->timer, up->u->connect_timeout);
    return 0;
}

static void send_request(upconn_t *up);

static void on_connect(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    upconn_t *up = UP_FROM(op, connect_op);
    up->inflight--;
    if (up->closing) {
        up_maybe_free(up);
        return;
    }
    if (res < 0) {
        up_fail_errno(up, 502, 1, "connect() failed", -res);
        return;
    }
    if (up->c)
        up->c->r->connect_us = now_us();
    send_request(up);
}

/* ----------------------------------------------------------- request side */

static int is_idempotent(weir_str_t m)
{
    static const char *const safe[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(safe) / sizeof(safe[0]); i++)
        if (m.len == strlen(safe[i]) && memcmp(m.data, safe[i], m.len) == 0)
            return 1;
    return 0;
}

/* The serialised upstream request head lives in the core's own context slot
 * (index nmodules), so retries resend it without serialising again. */
static weir_str_t *upstream_head(weir_request_t *r)
{
    return (weir_str_t *)r->ctx[r->cf->nmodules];
}

static void up_send(upconn_t *up)
{
    up->state = U_SEND;
    up->inflight++;
    timer_after(g_loop, &up->timer, up->u->write_timeout);
    sendq_submit(&up->sq, up->fd, &up->send_op);
}

/* Head plus the body bytes that came with it; the same on every retry. */
static void send_request(upconn_t *up)
{
    client_t *c = up->c;
    weir_request_t *r = c->r;
    weir_str_t *head = upstream_head(r);
    sendq_reset(&up->sq);
    sendq_add(&up->sq, head->data, head->len);
    int chunked = c->up_framing == H1_FRAMING_CHUNKED;
    sendq_add_body(&up->sq, c->body0, c->nbody0, chunked);
    up->body_last = c->body_done;
    if (c->body_done && chunked)
        sendq_add(&up->sq, H1_LAST_CHUNK, 5);
    up_send(up);
}

void proxy_forward_body(client_t *c, const weir_str_t *s, size_t n, int bid, int last)
{
    upconn_t *up = c->up;
    if (!up) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        return;
    }
    int chunked = c->up_framing == H1_FRAMING_CHUNKED;
    sendq_reset(&up->sq);
    sendq_add_body(&up->sq, s, n, chunked);
    if (last && chunked)
        sendq_add(&up->sq, H1_LAST_CHUNK, 5);
    up->body_last = last;
    if (up->sq.left == 0) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        if (last)
            read_response(up);
        else
            client_read_body(c);
        return;
    }
    client_arm_timer(c, 0);
    up->send_bid = bid;
    up_send(up);
}

static void on_up_send(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    upconn_t *up = UP_FROM(op, send_op);
    up->inflight--;
    if (up->send_bid >= 0) {
        loop_buf_release(g_loop, (unsigned)up->send_bid);
        up->send_bid = -1;
    }
    if (up->closing) {
        up_maybe_free(up);
        return;
    }
    if (res < 0) {
        up_fail_errno(up, 502, 0, "send failed", -res);
        return;
    }
    if (!sendq_advance(&up->sq, (size_t)res)) {
        up_send(up);
        return;
    }
    if (!up->body_last) {
        up->state = U_WAIT_BODY;
        timer_cancel(g_loop, &up->timer);
        client_read_body(up->c);
        return;
    }
    read_response(up);
}

/* -------------------------------------------------------- response side */

static void arm_up_recv(upconn_t *up)
{
    up->recv_armed = 1;
    up->inflight++;
    timer_after(g_loop, &up->timer, up->u->read_timeout);
    loop_recv(g_loop, up->fd, &up->recv_op);
}

static void read_response(upconn_t *up)
{
    up->state = U_READ_HEAD;
    up->interim_bytes = 0;
    h1_scan_init(&up->scan);
    arm_up_recv(up);
}

/* The response head limit: max_header_size, at least 64 KiB (upstream heads
 * are not the client's to size), less the 1xx heads already read. */
static size_t head_limit(const upconn_t *up)
{
    size_t limit = up->c->listener->limits.max_header_size;
    if (limit < RESPONSE_HEAD_MIN_LIMIT)
        limit = RESPONSE_HEAD_MIN_LIMIT;
    return up->interim_bytes < limit ? limit - up->interim_bytes : 0;
}

/* Scans what up->in holds of the response head: 0 when more is needed,
 * else the head is complete (handled) or the response failed. */
static void head_complete(upconn_t *up, size_t head_len);
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

static void response_done(client_t *c, upconn_t *up)
{
    c->r->response_us = now_us();
    int reusable = up->keepalive && up->parser.done && c->body_done;
    proxy_detach(c, reusable);
    client_finish_request(c);
}

static void stream_more(client_t *c);

/* Appends response body slices, framed for the client, to its send queue. */
static void queue_body(client_t *c, const weir_str_t *s, size_t n, int done)
{
    int chunked = c->down_framing == H1_FRAMING_CHUNKED;
    sendq_add_body(c->sq, s, n, chunked);
    for (size_t i = 0; i < n; i++)
        c->r->body_bytes_sent += s[i].len;
    if (done && chunked)
        sendq_add(c->sq, H1_LAST_CHUNK, 5);
}

static void send_body_slices(client_t *c, upconn_t *up, const weir_str_t *s, size_t n, int done,
                             int bid)
{
    sendq_reset(c->sq);
    queue_body(c, s, n, done);
    up->state = U_SEND_DOWN;
    timer_cancel(g_loop, &up->timer);
    if (c->sq->left == 0) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        proxy_response_sent(c);
        return;
    }
    c->send_bid = bid;
    client_send(c, proxy_response_sent);
}

/* Bytes after the end of the response are dropped and the connection is
 * never reused: they are either a broken server or a response meant for
 * the next request. */
static void beyond_body(upconn_t *up, size_t n)
{
    log_warn("upstream %s (%s): %zu bytes beyond the end of the response dropped; the "
             "connection is not reused",
             up->u->name, up->u->peers[up->peer].address, n);
    up->keepalive = 0;
}

/* Decodes response body bytes waiting in up->in (what came with the head,
 * or was left over) into s[SENDQ_SLICES]. -1 after logging invalid framing. */
static int feed_inbuf(upconn_t *up, weir_str_t *s, size_t *ns, int *done)
{
    ssize_t k = h1_body_feed(&up->parser, up->in.data + up->in.off, up->in.len - up->in.off, s,
                             SENDQ_SLICES, ns, done);
    if (k < 0) {
        log_error("upstream %s (%s): invalid response body framing", up->u->name,
                  up->u->peers[up->peer].address);
        up->keepalive = 0;
        return -1;
    }
    up->in.off += (size_t)k;
    if (*done && up->in.off < up->in.len)
        beyond_body(up, up->in.len - up->in.off);
    return 0;
}

static void feed_buffered(client_t *c, upconn_t *up)
{
    weir_str_t s[SENDQ_SLICES];
    size_t ns = 0;
    int done = 0;
    if (feed_inbuf(up, s, &ns, &done) < 0) {
        client_abort(c);
        return;
    }
    send_body_slices(c, up, s, ns, done, -1);
}

void proxy_response_sent(client_t *c)
{
    upconn_t *up = c->up;
    if (!up) {
        client_abort(c);
        return;
    }
    if (up->parser.done) {
        response_done(c, up);
        return;
    }
    stream_more(c);
}

static void stream_more(client_t *c)
{
    upconn_t *up = c->up;
    c->state = C_RESPONSE;
    client_arm_timer(c, 0);
    if (up->in.off < up->in.len) {
        feed_buffered(c, up);
        return;
    }
    up->state = U_READ_BODY;
    arm_up_recv(up);
}

static void send_response_head(weir_request_t *r)
{
    client_t *c = r->client;
    upconn_t *up = c->up;
    if (!up) {
        client_abort(c);
        return;
    }
    const h1_response_t *resp = &up->resp;
    h1_framing_t down = resp->framing;
    uint64_t clen = resp->content_length;
    int keep = client_may_keep(c, r);
    if (down == H1_FRAMING_NONE && resp->has_content_length && r->status != 204) {
        /* HEAD/304: echo the length, send no body; a 204 has no
         * Content-Length at all (RFC 9110 §8.6) */
        down = H1_FRAMING_LENGTH;
    } else if (down == H1_FRAMING_CHUNKED || down == H1_FRAMING_CLOSE) {
        if (r->version == 10) {
            down = H1_FRAMING_CLOSE;
            keep = 0;
        } else {
            down = H1_FRAMING_CHUNKED;
        }
    }
    c->down_framing = down;
    c->down_keepalive = keep;
    int version = r->version == 10 ? 10 : 11;
    size_t hsz = h1_response_size(version, r->status, resp->reason, &r->resp_headers, down, clen,
                                  keep);
    char *head = arena_alloc_raw(r->arena, hsz + 1);
    if (!head) {
        client_abort(c);
        return;
    }
    ssize_t n = h1_serialize_response(head, hsz + 1, version, r->status, resp->reason,
                                      &r->resp_headers, down, clen, keep);
    if (n < 0) {
        log_error("cannot serialise the response head (a module set an invalid header?)");
        weir_respond(r, 502, (weir_str_t){0});
        client_send_answer(r);
        return;
    }
    if (resp->framing == H1_FRAMING_NONE)
        c->down_framing = H1_FRAMING_NONE;
    sendq_reset(c->sq);
    sendq_add(c->sq, head, (size_t)n);
    c->head_sent = 1;
    c->state = C_RESPONSE;
    /* body bytes that arrived with the head go out with it (framing NONE is
     * done at once, which also marks the upstream message complete) */
    weir_str_t s[SENDQ_SLICES];
    size_t ns = 0;
    int done = 0;
    if (feed_inbuf(up, s, &ns, &done) < 0) {
        weir_respond(r, 502, (weir_str_t){0}); /* nothing was sent yet */
        c->head_sent = 0;
        client_send_answer(r);
        return;
    }
    queue_body(c, s, ns, done);
    up->state = U_SEND_DOWN;
    client_send(c, proxy_response_sent);
}

static void head_complete(upconn_t *up, size_t head_len)
{
    client_t *c = up->c;
    weir_request_t *r = c->r;
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
        size_t rest = up->in.len - up->in.off;
        memmove(up->in.data, up->in.data + up->in.off, rest);
        up->in.len = rest;
        up->in.off = 0;
        if (!rest || !scan_response_head(up))
            arm_up_recv(up);
        return;
    }
    if (up->resp.status == 101) {
        up_fail(up, 502, 0, "unsolicited 101 Switching Protocols");
        return;
    }
    up->keepalive = up->resp.keepalive;
    timer_cancel(g_loop, &up->timer);
    peer_report(up->u, up->peer, 1);
    r->status = up->resp.status;
    r->upstream_status = up->resp.status;
    r->resp_headers = up->resp.headers;
    r->resp_from_upstream = 1;
    r->header_us = now_us();
    request_run_phases(r, WEIR_PHASE_UPSTREAM_RESPONSE, WEIR_PHASE_UPSTREAM_RESPONSE,
                       send_response_head);
}

static void up_retry_nobuf(buf_waiter_t *w)
{
    upconn_t *up = (upconn_t *)((char *)w - offsetof(upconn_t, bufwait));
    up->inflight--;
    if (up->closing) {
        up_maybe_free(up);
        return;
    }
    up->recv_armed = 1;
    up->inflight++;
    loop_recv(g_loop, up->fd, &up->recv_op);
}

static void on_up_recv(loop_op_t *op, int res, unsigned flags)
{
    upconn_t *up = UP_FROM(op, recv_op);
    up->inflight--;
    up->recv_armed = 0;
    int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
    if (up->closing || !up->c) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        if (up->closing)
            up_maybe_free(up);
        else
            up_close(up); /* may free up */
        return;
    }
    if (res == -ENOBUFS) {
        /* pool exhausted: wait for a buffer; the read timer keeps running */
        up->inflight++;
        up->bufwait.fn = up_retry_nobuf;
        loop_wait_buffers(g_loop, &up->bufwait);
        return;
    }
    client_t *c = up->c;
    if (res <= 0) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        if (up->state == U_READ_HEAD) {
            if (!up->got_bytes && up->reused) {
                up_fail(up, 502, 0, "keepalive connection closed by upstream");
                return;
            }
            up_fail(up, 502, 0,
                    res == 0 ? "upstream closed the connection before the response head"
                             : "recv failed before the response head");
            return;
        }
        /* in the body */
        if (res == 0 && h1_body_eof(&up->parser)) {
            up->keepalive = 0;
            send_body_slices(c, up, NULL, 0, 1, -1);
            return;
        }
        log_error("upstream %s (%s): response cut short (%s); aborting the client connection",
                  up->u->name, up->u->peers[up->peer].address,
                  res == 0 ? "closed" : strerror(-res));
        up->keepalive = 0;
        client_abort(c);
        return;
    }
    up->got_bytes = 1;
    const char *data = loop_buf(g_loop, (unsigned)bid);
    if (up->state == U_READ_HEAD) {
        int rc = up_append(up, data, (size_t)res);
        loop_buf_release(g_loop, (unsigned)bid);
        if (rc < 0) {
            up_fail(up, 502, 0, "out of memory");
            return;
        }
        if (!scan_response_head(up))
            arm_up_recv(up);
        return;
    }
    /* response body: decode in place, send from the same buffer */
    weir_str_t s[SENDQ_SLICES];
    size_t ns = 0;
    int done = 0;
    ssize_t k = h1_body_feed(&up->parser, data, (size_t)res, s, SENDQ_SLICES, &ns, &done);
    if (k < 0) {
        loop_buf_release(g_loop, (unsigned)bid);
        log_error("upstream %s (%s): invalid response body framing; aborting the client",
                  up->u->name, up->u->peers[up->peer].address);
        up->keepalive = 0;
        client_abort(c);
        return;
    }
    if ((size_t)k < (size_t)res) {
        if (done) {
            beyond_body(up, (size_t)res - (size_t)k);
        } else {
            /* slice array full: keep the rest for the next round */
            up->in.len = up->in.off = 0;
            if (up_append(up, data + k, (size_t)res - (size_t)k) < 0) {
                loop_buf_release(g_loop, (unsigned)bid);
                client_abort(c);
                return;
            }
        }
    }
    send_body_slices(c, up, s, ns, done, bid);
}

/* -------------------------------------------------------------- failures */

static int retry_allowed(client_t *c)
{
    weir_request_t *r = c->r;
    return c->body_retained && is_idempotent(r->method) &&
           (long)r->tries <= r->upstream->retries;
}

/* count_failure: only connect errors and connect timeouts mark a peer toward
 * max_fails (SPEC §7 "passive failures (connect errors)"); a server that
 * accepted the connection and then misbehaved answers 502/504 but stays up. */
static void up_fail(upconn_t *up, int status, int count_failure, const char *why)
{
    client_t *c = up->c;
    weir_upstream_t *u = up->u;
    size_t peer = up->peer;
    int stale = up->reused && !up->got_bytes && status == 502 && up->state != U_CONNECT;
    log_error("upstream %s (%s): %s", u->name, u->peers[peer].address, why);
    if (count_failure)
        peer_report(u, peer, 0);
    up_close(up);
    if (!c || c->closing)
        return;
    if (c->head_sent) {
        client_abort(c);
        return;
    }
    weir_request_t *r = c->r;
    if (stale && c->body_retained) {
        /* the server closed a pooled connection as we reused it: same peer,
         * fresh connection, not counted as a try */
        r->peer = (int)peer;
        connect_peer(c);
        return;
    }
    if (retry_allowed(c) && request_pick_peer(r) >= 0) {
        log_info("retrying on %s", r->upstream_addr);
        connect_peer(c);
        return;
    }
    weir_respond(r, status, (weir_str_t){0});
    client_send_answer(r);
}

static void up_fail_errno(upconn_t *up, int status, int count_failure, const char *what, int err)
{
    char why[160];
    snprintf(why, sizeof(why), "%s: %s", what, strerror(err));
    up_fail(up, status, count_failure, why);
}

static void on_up_timer(struct timer *t)
{
    upconn_t *up = UP_FROM(t, timer);
    switch (up->state) {
    case U_IDLE:
        up_close(up);
        return;
    case U_CONNECT:
        up_fail(up, 504, 1, "connect_timeout");
        return;
    case U_SEND:
        up_fail(up, 504, 0, "write_timeout");
        return;
    case U_READ_HEAD:
        up_fail(up, 504, 0, "read_timeout waiting for the response head");
        return;
    case U_READ_BODY:
        log_error("upstream %s (%s): read_timeout in the response body; aborting the client",
                  up->u->name, up->u->peers[up->peer].address);
        if (up->c)
            client_abort(up->c);
        else
            up_close(up);
        return;
    default:
        return;
    }
}

/* ---------------------------------------------------------------- entry */

void proxy_detach(client_t *c, int reusable)
{
    upconn_t *up = c->up;
    if (!up)
        return;
    c->up = NULL;
    up->c = NULL;
    if (reusable && !up->closing) {
        pool_put(up);
        return;
    }
    /* a client send in flight may be reading body bytes from up->in: the
     * request keeps them until it is freed (end_request) */
    if (c->send_armed && up->in.data && c->r &&
        arena_cleanup(c->r->arena, free, up->in.data) == 0)
        up->in = (inbuf_t){0};
    up_close(up);
}

static void connect_peer(client_t *c)
{
    weir_request_t *r = c->r;
    weir_upstream_t *u = r->upstream;
    size_t peer = (size_t)r->peer;
    upconn_t *up = pool_get(u, peer);
    if (up) {
        up->c = c;
        c->up = up;
        up->got_bytes = 0;
        if (!r->connect_us)
            r->connect_us = now_us();
        send_request(up);
        return;
    }
    up = up_new(u, peer);
    if (!up) {
        weir_respond(r, 502, (weir_str_t){0});
        client_send_answer(r);
        return;
    }
    up->c = c;
    c->up = up;
    int rc = up_connect(up);
    if (rc < 0)
        up_fail_errno(up, 502, 0, "socket() failed", -rc);
}

int proxy_init(const weir_conf_t *cf)
{
    pools = calloc(cf->nupstreams + 1, sizeof(pool_t));
    npools = cf->nupstreams;
    return pools ? 0 : -1;
}

/* The Host sent upstream: the client's (from the target for absolute-form),
 * unless a module replaced the Host field (SPEC §6: "passed through unless a
 * header rule changes it"). The parser points the client's Host field at
 * host_header's bytes, so a field with other bytes is a module's. A module
 * that removes it leaves the client's. */
static weir_str_t upstream_host(const weir_request_t *r)
{
    header_entry_t *e = headers_find(&r->headers, WEIR_STR("host"));
    if (e && e->value.data != r->host_header.data && e->value.len)
        return e->value;
    if (!r->host_header.len) /* HTTP/1.0 without Host: name the upstream, as
                                nginx's $proxy_host does; HTTP/1.1 needs one */
        return (weir_str_t){r->upstream->name, strlen(r->upstream->name)};
    return r->host_header;
}

void proxy_start(weir_request_t *r)
{
    client_t *c = r->client;
    c->sq = arena_alloc(r->arena, sizeof(sendq_t));
    c->up_framing = c->req.framing;
    r->host_header = upstream_host(r);
    size_t hsz = h1_request_size(r->method, r->path, r->query, r->host_header, &r->headers,
                                 c->up_framing, c->req.content_length);
    char *buf = arena_alloc_raw(r->arena, hsz + 1);
    weir_str_t *head = arena_alloc(r->arena, sizeof(*head));
    if (!c->sq || !buf || !head) {
        weir_respond(r, 500, (weir_str_t){0});
        client_send_answer(r);
        return;
    }
    ssize_t n = h1_serialize_request(buf, hsz + 1, r->method, r->path, r->query, r->host_header,
                                     &r->headers, c->up_framing, c->req.content_length);
    if (n < 0) {
        log_error("cannot serialise the upstream request (a module set an invalid value?)");
        weir_respond(r, 500, (weir_str_t){0});
        client_send_answer(r);
        return;
    }
    head->data = buf;
    head->len = (size_t)n;
    r->ctx[r->cf->nmodules] = head; /* the core's own slot */
    connect_peer(c);
}
