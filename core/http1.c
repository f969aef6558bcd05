#include "http1.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "log.h"
#include "phase.h"
#include "worker.h"

/* Head buffers start small and grow up to the head limit; an idle keepalive
 * connection holds none, so idle memory is the client struct alone. */
#define IN_INITIAL 2048

static client_t *all_clients;
static uint64_t next_conn_id = 1;
static const weir_conf_t *g_cf;

static void on_client_recv(loop_op_t *op, int res, unsigned flags);
static void on_client_send(loop_op_t *op, int res, unsigned flags);
static void on_client_timer(struct timer *t);
static void client_close(client_t *c);
static void try_head(client_t *c);
static void arm_recv(client_t *c);
static void answer_status(client_t *c, int status);
static void resolve_addresses(weir_request_t *r);
static int body_over_limit(client_t *c, const weir_str_t *s, size_t n);

int http1_init(const weir_conf_t *cf)
{
    g_cf = cf;
    request_on_answer = client_send_answer;
    return proxy_init(cf);
}

/* ------------------------------------------------------------------ sendq */

void sendq_reset(sendq_t *q)
{
    q->n = q->first = 0;
    q->left = 0;
    q->nhdr = 0;
}

void sendq_add(sendq_t *q, const void *p, size_t len)
{
    if (!len || q->n >= SENDQ_IOV)
        return;
    q->iov[q->n].iov_base = (void *)p;
    q->iov[q->n].iov_len = len;
    q->n++;
    q->left += len;
}

void sendq_add_body(sendq_t *q, const weir_str_t *s, size_t n, int chunked)
{
    for (size_t i = 0; i < n; i++) {
        if (!s[i].len)
            continue;
        if (chunked && q->nhdr <= SENDQ_SLICES) {
            char *h = q->chunk_hdr[q->nhdr++];
            sendq_add(q, h, h1_chunk_header(h, s[i].len));
            sendq_add(q, s[i].data, s[i].len);
            sendq_add(q, H1_CRLF, 2);
        } else {
            sendq_add(q, s[i].data, s[i].len);
        }
    }
}

int sendq_advance(sendq_t *q, size_t sent)
{
    q->left -= sent;
    while (sent && q->first < q->n) {
        struct iovec *v = &q->iov[q->first];
        if (sent >= v->iov_len) {
            sent -= v->iov_len;
            q->first++;
        } else {
            v->iov_base = (char *)v->iov_base + sent;
            v->iov_len -= sent;
            sent = 0;
        }
    }
    return q->left == 0;
}

void sendq_submit(sendq_t *q, int fd, loop_op_t *op)
{
    memset(&q->msg, 0, sizeof(q->msg));
    q->msg.msg_iov = &q->iov[q->first];
    q->msg.msg_iovlen = (size_t)(q->n - q->first);
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_sendmsg(sqe, fd, &q->msg, MSG_NOSIGNAL | MSG_WAITALL);
    loop_prep_op(sqe, op);
}

/* ----------------------------------------------------------- connections */

void http1_accept(int fd, const weir_listener_t *l, const weir_conf_t *cf)
{
    client_t *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    c->fd = fd;
    c->cf = cf;
    c->listener = l;
    c->id = next_conn_id++;
    c->recv_op.cb = on_client_recv;
    c->send_op.cb = on_client_send;
    c->send_bid = -1;
    c->state = C_IDLE;
    timer_init(&c->timer, on_client_timer);
    h1_parser_init(&c->parser);
    if (l->addr.ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c->next = all_clients;
    if (all_clients)
        all_clients->prev = c;
    all_clients = c;
    worker_conn_opened();
    client_arm_timer(c, l->limits.client_header_timeout);
    arm_recv(c);
}

void client_arm_timer(client_t *c, uint64_t ms)
{
    if (ms)
        timer_after(g_loop, &c->timer, ms);
    else
        timer_cancel(g_loop, &c->timer);
}

static void client_free(client_t *c)
{
    if (c->retired)
        request_free(c->retired);
    timer_detach(g_loop, &c->timer);
    if (c->prev)
        c->prev->next = c->next;
    else
        all_clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    inbuf_free(&c->in);
    free(c);
    worker_conn_closed();
}

static void maybe_free(client_t *c)
{
    if (c->closing && c->inflight == 0 && !c->up)
        client_free(c);
}

/* A send still in flight reads the request's memory (its send queue, the
 * response head, body bytes the request took over from the upstream): the
 * kernel may still copy them, so such a request is freed with the
 * connection, once every completion is in. */
static void end_request(client_t *c)
{
    if (!c->r)
        return;
    if (c->send_armed)
        c->retired = c->r;
    else
        request_free(c->r);
    c->r = NULL;
    c->sq = NULL;
}

static void client_close(client_t *c)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->state = C_CLOSING;
    timer_cancel(g_loop, &c->timer);
    if (c->up)
        proxy_detach(c, 0);
    if (c->r && !c->r->suspended) {
        if (c->r->status)
            request_run_log(c->r);
        end_request(c);
    }
    if (c->inflight) {
        struct io_uring_sqe *sqe = loop_sqe(g_loop);
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        loop_prep_op(sqe, NULL);
    }
    /* close through the ring: no syscall of our own, fire and forget */
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_close(sqe, c->fd);
    loop_prep_op(sqe, NULL);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    maybe_free(c);
}

void client_abort(client_t *c)
{
    client_close(c);
}

static void arm_recv(client_t *c)
{
    if (c->recv_armed || c->closing)
        return;
    c->recv_armed = 1;
    c->inflight++;
    loop_recv(g_loop, c->fd, &c->recv_op);
}

/* ENOBUFS: the recv stays counted in inflight while waiting, so the client
 * cannot be freed under the waiter list. */
static void retry_nobuf(buf_waiter_t *w)
{
    client_t *c = (client_t *)((char *)w - offsetof(client_t, bufwait));
    c->inflight--;
    if (c->closing)
        maybe_free(c);
    else
        arm_recv(c);
}

int inbuf_append(inbuf_t *b, const char *p, size_t n, size_t initial)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : initial;
        while (cap < b->len + n)
            cap *= 2;
        char *data = realloc(b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return 0;
}

void inbuf_free(inbuf_t *b)
{
    free(b->data);
    *b = (inbuf_t){0};
}

/* Appends bytes to the client's input buffer. */
static int in_append(client_t *c, const char *p, size_t n)
{
    return inbuf_append(&c->in, p, n, IN_INITIAL);
}

static void on_client_recv(loop_op_t *op, int res, unsigned flags)
{
    client_t *c = (client_t *)((char *)op - offsetof(client_t, recv_op));
    c->recv_armed = 0;
    int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
    if (res == -ENOBUFS && !c->closing) {
        c->bufwait.fn = retry_nobuf;
        loop_wait_buffers(g_loop, &c->bufwait);
        return;
    }
    c->inflight--;
    if (c->closing || res <= 0) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        if (c->closing) {
            maybe_free(c);
            return;
        }
        if (c->state == C_BODY)
            log_info("client %llu closed during the request body", (unsigned long long)c->id);
        client_close(c); /* may free c */
        return;
    }
    const char *data = loop_buf(g_loop, (unsigned)bid);
    if (c->state == C_BODY) {
        /* zero-copy: the buffer travels to the upstream send and back */
        weir_str_t s[SENDQ_SLICES];
        size_t ns = 0, off = 0;
        int done = 0;
        ssize_t k = h1_body_feed(&c->parser, data, (size_t)res, s, SENDQ_SLICES, &ns, &done);
        if (k < 0) {
            loop_buf_release(g_loop, (unsigned)bid);
            log_info("client %llu: invalid request body framing", (unsigned long long)c->id);
            client_close(c);
            return;
        }
        off = (size_t)k;
        if (c->r)
            c->r->request_length += (size_t)k;
        if (done) {
            c->body_done = 1;
            /* pipelined bytes after the body wait in in[] for the next request */
            if (off < (size_t)res && in_append(c, data + off, (size_t)res - off) < 0) {
                loop_buf_release(g_loop, (unsigned)bid);
                client_close(c);
                return;
            }
        } else if (off < (size_t)res) {
            /* out of slice room: keep the rest for the next round */
            if (in_append(c, data + off, (size_t)res - off) < 0) {
                loop_buf_release(g_loop, (unsigned)bid);
                client_close(c);
                return;
            }
        }
        if (body_over_limit(c, s, ns)) {
            loop_buf_release(g_loop, (unsigned)bid);
            answer_status(c, 413);
            return;
        }
        proxy_forward_body(c, s, ns, bid, done);
        return;
    }
    int rc = in_append(c, data, (size_t)res);
    loop_buf_release(g_loop, (unsigned)bid);
    if (rc < 0) {
        client_close(c);
        return;
    }
    if (c->state == C_IDLE) {
        c->state = C_HEAD;
        client_arm_timer(c, c->listener->limits.client_header_timeout);
    }
    if (c->state == C_HEAD)
        try_head(c);
}

/* Counts decoded body bytes; true once a chunked body passes max_body_size
 * (a Content-Length body over it was refused before reading). */
static int body_over_limit(client_t *c, const weir_str_t *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c->body_bytes += s[i].len;
    uint64_t max = c->listener->limits.max_body_size;
    return max && c->body_bytes > max;
}

/* ----------------------------------------------------------- request head */

static void start_request(client_t *c, size_t head_len);

/* A new request on c, tied to the connection before anything can fail. */
static weir_request_t *attach_request(client_t *c)
{
    weir_request_t *r = request_new(c->cf);
    if (!r)
        return NULL;
    r->client = c;
    r->client_sa = &c->peer;
    r->server_sa = &c->local;
    r->listener = c->listener;
    r->connection_id = c->id;
    r->connection_requests = c->requests;
    r->resolve_addresses = resolve_addresses;
    r->method = WEIR_STR("-");
    r->version = 11;
    c->r = r;
    return r;
}

static void answer_status(client_t *c, int status)
{
    weir_request_t *r = c->r;
    if (!r && !(r = attach_request(c))) {
        client_close(c);
        return;
    }
    c->close_after = 1;
    weir_respond(r, status, (weir_str_t){0});
    client_send_answer(r);
}

static void try_head(client_t *c)
{
    const limits_t *lim = &c->listener->limits;
    ssize_t n = h1_scan_head_r(&c->scan, c->in.data + c->in.off, c->in.len - c->in.off,
                               lim->max_header_size, 1);
    if (n == 0) {
        arm_recv(c);
        return;
    }
    if (n < 0) {
        log_info("client %llu: malformed request head (%d)", (unsigned long long)c->id, (int)-n);
        answer_status(c, (int)-n);
        return;
    }
    start_request(c, (size_t)n);
}

static void fill_request(client_t *c, weir_request_t *r)
{
    const h1_request_t *q = &c->req;
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
}

static void resolve_addresses(weir_request_t *r)
{
    client_t *c = r->client;
    c->peer.len = sizeof(c->peer.ss);
    getpeername(c->fd, (struct sockaddr *)&c->peer.ss, &c->peer.len);
    c->local.len = sizeof(c->local.ss);
    getsockname(c->fd, (struct sockaddr *)&c->local.ss, &c->local.len);
}

static void phases_done(weir_request_t *r)
{
    client_t *c = r->client;
    c->state = C_UPSTREAM;
    proxy_start(r);
}

static void start_request(client_t *c, size_t head_len)
{
    c->requests++;
    weir_request_t *r = attach_request(c);
    if (!r) {
        client_close(c);
        return;
    }
    const char *head = c->in.data + c->in.off;
    int rc = h1_parse_request(r->arena, &c->parser, head, head_len, &c->req);
    c->head_len = head_len;
    c->in.off += head_len;
    r->request_length = head_len;
    if (rc < 0) {
        log_info("client %llu: rejected request (%d)", (unsigned long long)c->id, -rc);
        answer_status(c, -rc);
        return;
    }
    fill_request(c, r);
    c->continue_sent = 0;
    if (r->expect_continue)
        headers_del(&r->headers, WEIR_STR("expect"));
    rc = request_normalize_path(r);
    if (rc < 0) {
        answer_status(c, -rc);
        return;
    }
    if (c->req.framing == H1_FRAMING_LENGTH && c->listener->limits.max_body_size &&
        c->req.content_length > c->listener->limits.max_body_size) {
        answer_status(c, 413);
        return;
    }
    if (c->req.upgrade) {
        /* tunnelling after 101 is not implemented yet: refuse cleanly rather
         * than forward a request whose connection semantics we cannot keep */
        answer_status(c, 501);
        return;
    }
    /* body bytes already received with the head */
    c->body_bytes = 0;
    c->body_done = 0;
    c->body_retained = 0;
    c->nbody0 = 0;
    c->body0 = NULL;
    if (c->req.framing == H1_FRAMING_NONE) {
        c->body_done = c->body_retained = 1;
    } else {
        c->body0 = arena_alloc(r->arena, SENDQ_SLICES * sizeof(weir_str_t));
        if (!c->body0) {
            answer_status(c, 500);
            return;
        }
        int done = 0;
        ssize_t k = h1_body_feed(&c->parser, c->in.data + c->in.off, c->in.len - c->in.off, c->body0,
                                 SENDQ_SLICES, &c->nbody0, &done);
        if (k < 0) {
            answer_status(c, (int)-k);
            return;
        }
        c->in.off += (size_t)k;
        r->request_length += (size_t)k;
        c->body_done = c->body_retained = done;
        if (body_over_limit(c, c->body0, c->nbody0)) {
            answer_status(c, 413);
            return;
        }
    }
    c->state = C_PHASES;
    client_arm_timer(c, 0);
    request_run_phases(r, WEIR_PHASE_REQUEST, WEIR_PHASE_UPSTREAM_REQUEST, phases_done);
}

static void continue_sent(client_t *c)
{
    (void)c;
}

void client_read_body(client_t *c)
{
    c->state = C_BODY;
    /* Expect: 100-continue: weir answers it itself when it starts reading the
     * body (as nginx does) and never forwards Expect, so the client is not
     * kept waiting by an upstream that does not know the request has a body
     * coming, and a 1xx from upstream can never be confused with ours. */
    if (c->r->expect_continue && !c->continue_sent && c->in.off == c->in.len &&
        c->nbody0 == 0) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        c->continue_sent = 1;
        sendq_reset(c->sq);
        sendq_add(c->sq, cont, sizeof(cont) - 1);
        client_send(c, continue_sent);
    }
    /* leftover bytes that did not fit the slice array on the last feed */
    if (c->in.off < c->in.len) {
        weir_str_t s[SENDQ_SLICES];
        size_t ns = 0;
        int done = 0;
        ssize_t k = h1_body_feed(&c->parser, c->in.data + c->in.off, c->in.len - c->in.off, s,
                                 SENDQ_SLICES, &ns, &done);
        if (k < 0) {
            client_close(c);
            return;
        }
        c->in.off += (size_t)k;
        c->r->request_length += (size_t)k;
        c->body_done = done;
        if (body_over_limit(c, s, ns)) {
            answer_status(c, 413);
            return;
        }
        proxy_forward_body(c, s, ns, -1, done);
        return;
    }
    client_arm_timer(c, c->listener->limits.client_body_timeout);
    arm_recv(c);
}

/* ------------------------------------------------------------------ output */

void client_send(client_t *c, void (*after)(client_t *c))
{
    c->after_send = after;
    c->send_armed = 1;
    c->inflight++;
    client_arm_timer(c, c->listener->limits.send_timeout);
    sendq_submit(c->sq, c->fd, &c->send_op);
}

static void on_client_send(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    client_t *c = (client_t *)((char *)op - offsetof(client_t, send_op));
    c->inflight--;
    c->send_armed = 0;
    if (c->send_bid >= 0) {
        loop_buf_release(g_loop, (unsigned)c->send_bid);
        c->send_bid = -1;
    }
    if (c->closing) {
        maybe_free(c);
        return;
    }
    if (res < 0) {
        log_info("client %llu: send failed: %s", (unsigned long long)c->id, strerror(-res));
        client_close(c);
        return;
    }
    if (!sendq_advance(c->sq, (size_t)res)) {
        c->send_armed = 1;
        c->inflight++;
        sendq_submit(c->sq, c->fd, &c->send_op);
        return;
    }
    c->after_send(c);
}

static const char *const error_page_fmt =
    "<html>\r\n<head><title>%d %s</title></head>\r\n<body>\r\n<center><h1>%d %s</h1></center>\r\n"
    "<hr><center>weir</center>\r\n</body>\r\n</html>\r\n";

/* Renders the error_page template ({{status}}, {{reason}}, {{request_id}}). */
static weir_str_t render_error_page(weir_request_t *r, const char *reason)
{
    const char *tpl = r->cf->error_page;
    if (!tpl) {
        size_t cap = strlen(error_page_fmt) + 2 * strlen(reason) + 16;
        char *p = arena_alloc_raw(r->arena, cap);
        if (!p)
            return (weir_str_t){0};
        int n = snprintf(p, cap, error_page_fmt, r->status, reason, r->status, reason);
        return (weir_str_t){p, n > 0 ? (size_t)n : 0};
    }
    size_t cap = strlen(tpl) * 2 + 128;
    char *out = arena_alloc_raw(r->arena, cap);
    size_t len = 0;
    if (!out)
        return (weir_str_t){0};
    for (const char *p = tpl; *p && len + 64 < cap;) {
        char num[16];
        const char *sub = NULL;
        size_t skip = 0;
        if (strncmp(p, "{{status}}", 10) == 0) {
            snprintf(num, sizeof(num), "%d", r->status);
            sub = num;
            skip = 10;
        } else if (strncmp(p, "{{reason}}", 10) == 0) {
            sub = reason;
            skip = 10;
        } else if (strncmp(p, "{{request_id}}", 14) == 0) {
            sub = request_id(r);
            skip = 14;
        }
        if (sub) {
            size_t sl = strlen(sub);
            if (len + sl >= cap)
                break;
            memcpy(out + len, sub, sl);
            len += sl;
            p += skip;
        } else {
            out[len++] = *p++;
        }
    }
    return (weir_str_t){out, len};
}

static void answer_sent(client_t *c)
{
    client_finish_request(c);
}

/* Sends weir's own answer (weir_respond or an error) for the current request. */
void client_send_answer(weir_request_t *r)
{
    client_t *c = r->client;
    if (c->up)
        proxy_detach(c, 0);
    if (c->head_sent) { /* too late for an answer: the response has started */
        client_close(c);
        return;
    }
    if (r->resp_from_upstream) {
        /* weir answers in place of the upstream's response: none of its
         * fields go down with weir's own status */
        headers_init(&r->resp_headers);
        r->resp_from_upstream = 0;
    }
    const char *reason = h1_reason(r->status);
    /* the error phase may set headers or a body */
    const struct phases *ph = r->cf->phases;
    for (size_t i = ph->start[WEIR_PHASE_ERROR]; i < ph->start[WEIR_PHASE_ERROR + 1]; i++)
        ph->entries[i].handler->fn(r);
    weir_str_t body = r->respond_body;
    if (!body.len && r->status >= 400)
        body = render_error_page(r, reason);
    if (body.len && r->status >= 400 && !headers_find(&r->resp_headers, WEIR_STR("content-type")))
        headers_push(r->arena, &r->resp_headers, WEIR_STR("Content-Type"), WEIR_STR("text/html"));
    /* an unread request body would desynchronise the connection: close */
    if (!c->body_done || c->closing)
        c->close_after = 1;
    int keep = client_may_keep(c, r);
    c->down_keepalive = keep;
    int version = r->version == 10 ? 10 : 11;
    int is_head = r->method.len == 4 && memcmp(r->method.data, "HEAD", 4) == 0;
    /* a 204 or 304 of weir's own (a module's answer) carries no body and,
     * having none to measure, no Content-Length */
    h1_framing_t framing = H1_FRAMING_LENGTH;
    if (h1_status_has_no_body(r->status)) {
        framing = H1_FRAMING_NONE;
        body = (weir_str_t){0};
    }
    size_t hsz = h1_response_size(version, r->status, (weir_str_t){0}, &r->resp_headers,
                                  framing, body.len, keep);
    char *head = arena_alloc_raw(r->arena, hsz + 1);
    c->sq = arena_alloc(r->arena, sizeof(sendq_t));
    if (!head || !c->sq) {
        client_close(c);
        return;
    }
    ssize_t n = h1_serialize_response(head, hsz + 1, version, r->status, (weir_str_t){0},
                                      &r->resp_headers, framing, body.len, keep);
    if (n < 0) {
        client_close(c);
        return;
    }
    sendq_reset(c->sq);
    sendq_add(c->sq, head, (size_t)n);
    if (!is_head)
        sendq_add(c->sq, body.data, body.len);
    r->body_bytes_sent = is_head ? 0 : body.len;
    c->head_sent = 1;
    c->state = C_RESPONSE;
    client_send(c, answer_sent);
}

int client_may_keep(const client_t *c, const weir_request_t *r)
{
    return r->keepalive && !c->close_after && !weir_worker_draining() &&
           c->requests < c->listener->limits.keepalive_requests;
}

/* Set by http1_drain: how long an idle connection may wait for a request. */
static uint64_t drain_idle_grace;

/* The response is complete: log, then keep the connection for the next
 * request or close it. A response whose head promised keepalive keeps its
 * promise even if the worker started draining meanwhile: the client may
 * already be sending its next request, which is answered with
 * Connection: close. */
void client_finish_request(client_t *c)
{
    weir_request_t *r = c->r;
    int keep = c->down_keepalive && !c->close_after && c->body_done;
    if (r) {
        request_run_log(r);
        end_request(c);
    }
    c->head_sent = 0;
    if (!keep) {
        client_close(c);
        return;
    }
    /* keep unread pipelined bytes, drop the rest of in[] */
    size_t rest = c->in.len - c->in.off;
    if (rest && c->in.off) {
        memmove(c->in.data, c->in.data + c->in.off, rest);
    } else if (!rest) {
        inbuf_free(&c->in);
    }
    c->in.len = rest;
    c->in.off = 0;
    c->head_len = 0;
    h1_scan_init(&c->scan);
    h1_parser_reset(&c->parser);
    if (rest) {
        c->state = C_HEAD;
        client_arm_timer(c, c->listener->limits.client_header_timeout);
        try_head(c);
    } else {
        c->state = C_IDLE;
        client_arm_timer(c, weir_worker_draining() ? drain_idle_grace
                                                   : c->listener->limits.keepalive_timeout);
        arm_recv(c);
    }
}

static void on_client_timer(struct timer *t)
{
    client_t *c = (client_t *)((char *)t - offsetof(client_t, timer));
    switch (c->state) {
    case C_HEAD:
        log_info("client %llu: client_header_timeout", (unsigned long long)c->id);
        if (c->in.len > c->in.off && !c->r) {
            answer_status(c, 408);
            return;
        }
        break;
    case C_BODY:
        log_info("client %llu: client_body_timeout", (unsigned long long)c->id);
        /* 408 while nothing of a response is on its way (SPEC §6) */
        if (!c->head_sent && !c->send_armed) {
            answer_status(c, 408);
            return;
        }
        break;
    case C_RESPONSE:
        log_info("client %llu: send_timeout", (unsigned long long)c->id);
        break;
    default:
        break;
    }
    client_close(c);
}

/*
 * Every response from now on says Connection: close (client_may_keep).
 * A keepalive connection idle between requests is closed after a short
 * grace, not at once: a busy client has its next request on the way, and
 * closing under it would fail that request for any client that does not
 * retry (wrk, most load balancers); within the grace it is answered, with
 * Connection: close. One still idle when the grace ends is closed; a client
 * sending right then gets no response byte and may retry. A new connection
 * waiting for its first request is not idle: the client is sending (deferred
 * accept waited for its bytes), so it keeps its header timeout.
 */
void http1_drain(uint64_t idle_grace_ms)
{
    drain_idle_grace = idle_grace_ms;
    for (client_t *c = all_clients; c; c = c->next) {
        if (c->state == C_IDLE && c->requests > 0 &&
            (!c->timer.deadline || c->timer.deadline > g_loop->now + idle_grace_ms))
            client_arm_timer(c, idle_grace_ms);
    }
}
