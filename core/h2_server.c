/*
 * The HTTP/2 server (h2.h): one nghttp2 session per client connection, each
 * stream a request object that runs the same phases and goes through the
 * same proxy as an HTTP/1 request, through the downstream operations at the
 * end of this file.
 *
 * Input. The connection is always read, whatever the streams do, so
 * SETTINGS, PING and WINDOW_UPDATE always flow: each receive goes through
 * nghttp2_session_mem_recv at once and its buffer goes back. A stream's DATA
 * is copied into its request-body buffer, which never holds more than the
 * window weir advertised (H2_STREAM_WINDOW; nghttp2 enforces the window),
 * and WINDOW_UPDATE goes out only when the upstream took the bytes:
 * automatic window updates are off and read_body consumes what the previous
 * delivery carried. The connection window (H2_CONN_WINDOW) bounds all of a
 * connection's unconsumed body bytes.
 *
 * Output (h2_wire.c). Frames are pulled from nghttp2 into one connection
 * buffer, at most H2_WIRE_MAX bytes a round, and sent; the next round is
 * pulled when that send completed, so a client that does not read stops the
 * pulls and nghttp2's own limits (outbound acks) see the queue grow. The
 * pull runs from a task at the end of the loop turn, so the responses that
 * completed in one turn leave in one send. Response body slices are copied
 * into the stream's own buffer as they come, so no stream pins a provided
 * buffer of the ring; the proxy is told (hold) to leave the upstream unread
 * until that copy is framed, which waits for the client's window.
 *
 * Priorities: nghttp2's RFC 7540 scheduler with every stream at the default
 * weight is a weighted round robin between the streams that have DATA to
 * send, which is the fairness weir needs; a client's PRIORITY frames only
 * reorder its own streams. Closed streams are not kept for the priority
 * tree (no_closed_streams).
 *
 * What bounds memory per connection: the session (HPACK tables of 4 KiB
 * each way), the output buffer (H2_WIRE_MAX plus a frame, only while a send
 * is queued), and per open stream (at most H2_MAX_STREAMS): its request
 * arena, its request-body buffer (at most the stream window, only while
 * DATA waits for the upstream), and its response copy (at most one
 * upstream read, 16 KiB, only while the client's window holds it back).
 *
 * Timers: the connection's read timer is the idle limit while no stream is
 * open (client_header_timeout before the first, keepalive_timeout after);
 * its write timer is send_timeout while a send is in flight. Each stream
 * has one timer: client_body_timeout while the upstream waits for DATA, and
 * send_timeout while the client's window holds its response back.
 */
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arena.h"
#include "downstream.h"
#include "errpage.h"
#include "flowbuf.h"
#include "h1.h"
#include "h2.h"
#include "h2_guard.h"
#include "h2_wire.h"
#include "log.h"
#include "reqlog.h"
#include "metrics_core.h"
#include "phase.h"
#include "proxy.h"

#define H2_MAX_STREAMS 128
#define H2_STREAM_WINDOW 65535
#define H2_CONN_WINDOW (1u << 20)
/* What a connection may do before it is cut (see the protections below):
 * a burst, then a rate per second. */
#define H2_GLITCH_BURST 100
#define H2_GLITCH_PER_SEC 10
#define H2_IDLE_CONTROL_BURST 200
#define H2_IDLE_CONTROL_PER_SEC 20
#define H2_CONTROL_CREDIT_MAX 64
#define H2_RESET_BURST 500
#define H2_RESET_PER_SEC 30

typedef struct h2_conn h2c_t;
typedef struct h2_stream h2s_t;

enum { ST_NONE, ST_BODY, ST_SEND };

struct h2_stream {
    h2c_t *h;
    weir_request_t *r;
    int32_t id;
    h2_head_t head;
    h2s_t *prev, *next;   /* the connection's streams */
    h2s_t *work_next;     /* the connection's work list */
    unsigned in_work : 1, head_done : 1, started : 1, closed : 1, over : 1, end_in : 1,
        body_wanted : 1, body_stopped : 1, submitted : 1, last : 1,
        deferred : 1, want_done : 1, want_start : 1, reaped : 1,
        bodiless : 1; /* END_STREAM came on the request head */
    int answer;           /* a status to answer with instead of forwarding */
    flowbuf_t body; /* the request body on its way to the upstream side */
    uint64_t data_bytes; /* DATA payload received */
    uint64_t consumed;   /* of which given back as window */
    weir_str_t slice;
    /* response */
    nghttp2_nv *nva, *tnva; /* the response head, the trailers */
    size_t nnv, ntnv;
    int has_body;
    char *ob;
    size_t ob_len, ob_off, ob_cap;
    exchange_fn done, resume;
    struct timer timer;
    int timer_kind;
};

struct h2_conn {
    conn_t *conn;
    const weir_listener_t *listener;
    nghttp2_session *ng;
    h2s_t *streams;
    h2s_t *work, **work_tail;
    size_t nstreams;
    uint64_t requests;
    h2_wire_t wire;
    loop_task_t flush_task;
    struct timer drain_timer;
    h2_bucket_t glitches, idle_control, resets;
    h2_ackfilter_t acks;
    unsigned settings_seen; /* the first SETTINGS is free */
    unsigned control_credit; /* PINGs and WINDOW_UPDATEs the DATA and
                                HEADERS sent so far answer for */
    unsigned closing : 1, goaway : 1, in_recv : 1, in_work : 1, failing : 1, draining : 1;
};

static const conn_handler_t h2_handler;
static const downstream_t h2_downstream;
static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;
static uint64_t drain_grace_ms;

static void h2_close(h2c_t *h, unsigned how);
static void want_flush(h2c_t *h);
static void stream_timer(h2s_t *s, int kind);

/* ------------------------------------------------------------- work list */

/* Streams with something to do once nghttp2 has returned: start their
 * phases, deliver body bytes, call a done or resume, be reaped. Running it
 * outside the callbacks keeps the proxy and the modules from re-entering
 * nghttp2 while it parses or serialises. */
static void queue_work(h2s_t *s)
{
    if (s->in_work)
        return;
    s->in_work = 1;
    s->work_next = NULL;
    *s->h->work_tail = s;
    s->h->work_tail = &s->work_next;
    want_flush(s->h);
}

static void unlink_stream(h2s_t *s)
{
    h2c_t *h = s->h;
    if (s->prev)
        s->prev->next = s->next;
    else
        h->streams = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    if (--h->nstreams == 0)
        metrics_conn_idle(h->conn, 1);
}

/* Received bytes go back to the client as window (WINDOW_UPDATE when
 * nghttp2 finds enough to send); a closed stream's go back to the
 * connection only. */
static void give_back(h2s_t *s, size_t n)
{
    h2c_t *h = s->h;
    if (!n || h->closing)
        return;
    s->consumed += n;
    if (s->closed)
        nghttp2_session_consume_connection(h->ng, n);
    else
        nghttp2_session_consume(h->ng, s->id, n);
}

static void idle_timer(h2c_t *h)
{
    if (h->nstreams) {
        conn_timer(h->conn, CONN_TIMER_READ, 0);
        return;
    }
    const limits_t *lim = &h->listener->limits;
    conn_timer(h->conn, CONN_TIMER_READ,
               h->requests ? lim->keepalive_timeout : lim->client_header_timeout);
}

/*
 * Protections nghttp2 1.52 leaves to the application. nghttp2 itself limits
 * CONTINUATION frames per block (8), SETTINGS entries per frame (32) and the
 * acks it has queued for a client that does not read (1000), and it has a
 * reset rate limit of its own (1000, then 33/s); each ends the connection
 * with a GOAWAY. weir keeps three token buckets per connection, each of
 * which ends it with GOAWAY ENHANCE_YOUR_CALM when empty:
 *
 *  - glitches (H2_GLITCH_*): empty DATA frames without END_STREAM and empty
 *    HEADERS or CONTINUATION frames (CVE-2019-9518), frames nghttp2 refuses
 *    as invalid, every stream weir has to reset because of what the client
 *    sent (MadeYouReset, CVE-2025-8671: PROTOCOL_ERROR, FLOW_CONTROL_ERROR,
 *    STREAM_CLOSED, FRAME_SIZE_ERROR, REFUSED_STREAM), and header lists over
 *    the limit (HPACK bombs). A well-behaved client commits none. Resets
 *    weir sends because an upstream failed or a timer fired (INTERNAL_ERROR,
 *    CANCEL) and NO_ERROR resets are not the client's doing.
 *  - idle control frames (H2_IDLE_CONTROL_*): each DATA or HEADERS frame
 *    weir sends is worth two PINGs, WINDOW_UPDATEs or SETTINGS (but the
 *    first SETTINGS, which is free) (a stream's and the
 *    connection's), up to H2_CONTROL_CREDIT_MAX saved; one beyond that
 *    credit takes a token. A client that receives data answers with them
 *    freely (gRPC's BDP pings, window updates); one that floods them while
 *    nothing flows
 *    (CVE-2019-9512/9517), or while it does not read, is cut even when the
 *    kernel's send buffer swallows the acks.
 *  - client resets (H2_RESET_*): RST_STREAMs from the client, below
 *    nghttp2's own limit, so rapid reset (CVE-2023-44487) is answered with
 *    ENHANCE_YOUR_CALM rather than nghttp2's INTERNAL_ERROR.
 */
static int cut(h2c_t *h, h2_bucket_t *b, unsigned burst, unsigned per_sec, const char *what)
{
    if (h2_bucket_take(b, g_loop->now, burst, per_sec) == 0)
        return 0;
    reqlog(NULL, h->conn, WEIR_LOG_WARN,
           "client %llu: HTTP/2 client misbehaves (%s, beyond %u in a burst or %u/s); "
           "GOAWAY ENHANCE_YOUR_CALM",
           (unsigned long long)h->conn->id, what, burst, per_sec);
    nghttp2_session_terminate_session(h->ng, NGHTTP2_ENHANCE_YOUR_CALM);
    return -1;
}

static int glitch(h2c_t *h, const char *what)
{
    return cut(h, &h->glitches, H2_GLITCH_BURST, H2_GLITCH_PER_SEC, what);
}

/* A PING or WINDOW_UPDATE from the client. */
static int control_frame(h2c_t *h, const char *what)
{
    if (h->control_credit) {
        h->control_credit--;
        return 0;
    }
    return cut(h, &h->idle_control, H2_IDLE_CONTROL_BURST, H2_IDLE_CONTROL_PER_SEC, what);
}

/* The stream is done on both sides (nghttp2 closed it, the exchange is
 * over): the log phase, then the request's last reference from this side.
 * Body and response buffers still read by an upstream send go with the
 * request's arena. */
static void reap(h2s_t *s)
{
    weir_request_t *r = s->r;
    s->reaped = 1;
    s->closed = 1;
    give_back(s, (size_t)(s->data_bytes - s->consumed)); /* bytes held until now */
    timer_detach(g_loop, &s->timer);
    unlink_stream(s);
    idle_timer(s->h);
    free(s->ob);
    s->ob = NULL;
    flowbuf_free(&s->body, r ? r->arena : NULL);
    if (r) {
        if (r->suspended) {
            downstream_orphan_request(r);
            return;
        }
        if (r->status)
            request_run_log(r);
        request_free(r);
    }
}

/* The client or the connection ended the stream while its exchange ran:
 * the upstream side lets go, and the stream goes. */
static void cancel_exchange(h2s_t *s)
{
    s->over = 1;
    if (s->r && s->started && !s->r->suspended)
        proxy_cancel(s->r);
}

static void stream_closed(h2s_t *s)
{
    s->closed = 1;
    if (!s->over)
        cancel_exchange(s);
    queue_work(s);
}

/* ----------------------------------------------------------- the request */

static void phases_done(weir_request_t *r)
{
    if (r->ds == &downstream_orphan) {
        request_free(r);
        return;
    }
    proxy_start(r);
}

/* The checked head becomes the request: the target is :path, Host is
 * :authority (a "host" entry whose bytes are host_header's, the HTTP/1
 * parser's convention, so a module that sets Host is told apart). */
static int fill_request(h2s_t *s)
{
    weir_request_t *r = s->r;
    h2_head_t *hd = &s->head;
    r->method = hd->method;
    r->target = hd->path;
    const char *q = memchr(hd->path.data, '?', hd->path.len);
    if (hd->path.data[0] == '*') {
        r->path = hd->path;
    } else {
        r->path = (weir_str_t){hd->path.data, q ? (size_t)(q - hd->path.data) : hd->path.len};
        if (q)
            r->query = (weir_str_t){q + 1, hd->path.len - (size_t)(q + 1 - hd->path.data)};
    }
    weir_str_t host;
    h1_parse_authority(hd->authority, &host);
    char *lower = arena_strndup_lower(r->arena, host.data, host.len);
    if (!lower)
        return -500;
    r->host = (weir_str_t){lower, host.len};
    r->host_header = hd->authority;
    headers_init(&r->headers);
    if (headers_push(r->arena, &r->headers, WEIR_STR("host"), hd->authority) < 0)
        return -500;
    for (size_t i = 0; i < hd->fields.n; i++)
        if (headers_push(r->arena, &r->headers, hd->fields.v[i].name, hd->fields.v[i].value) < 0)
            return -500;
    r->keepalive = 1;
    r->te_trailers = hd->te_trailers;
    if (hd->content_length >= 0) {
        r->body.kind = BODY_LENGTH;
        r->body.length = (uint64_t)hd->content_length;
        r->has_body = hd->content_length > 0 || !s->bodiless;
    } else if (!s->bodiless) {
        r->body.kind = BODY_STREAM;
        r->has_body = 1;
    }
    uint64_t max = s->h->listener->limits.max_body_size;
    if (max && hd->content_length > 0 && (uint64_t)hd->content_length > max)
        return -413;
    return request_normalize_path(r);
}

/* Body bytes that are all of the body when the phases end are kept for
 * retries, as over HTTP/1. */
static void take_first_body(h2s_t *s)
{
    weir_request_t *r = s->r;
    if (!s->end_in)
        return;
    r->body.done = 1;
    r->body.retained = 1;
    /* the upstream side reads them from now on, to the end */
    if (!flowbuf_take(&s->body, &s->slice))
        return;
    r->body.first = &s->slice;
    r->body.nfirst = 1;
}

/* From the end of its head (refused or not, and before the phases start,
 * which may wait for the body) a stream is named by it in the log lines (the
 * error log's request:, the access log's $request), as far as it came. */
static void head_for_log(h2s_t *s)
{
    if (s->head.method.len)
        s->r->method = s->head.method;
    if (s->head.path.len)
        s->r->target = s->head.path;
}

static void answer(h2s_t *s, int status)
{
    weir_request_t *r = s->r;
    s->started = 1;
    weir_respond(r, status, (weir_str_t){0});
    proxy_answer(r);
}

static void start_request(h2s_t *s)
{
    weir_request_t *r = s->r;
    h2c_t *h = s->h;
    h->requests++;
    r->connection_requests = h->requests;
    int rc = s->answer ? -s->answer : fill_request(s);
    if (rc < 0) {
        head_for_log(s);
        answer(s, -rc);
        return;
    }
    take_first_body(s);
    s->started = 1;
    request_run_phases(r, WEIR_PHASE_REQUEST, WEIR_PHASE_UPSTREAM_REQUEST, phases_done);
}

/* ------------------------------------------------------- the request body */

/* What the last delivery carried goes back as window. */
static void release_delivered(h2s_t *s)
{
    give_back(s, flowbuf_release(&s->body));
}

/* Hands what the buffer holds to the upstream side when it asked for it. */
static void deliver(h2s_t *s)
{
    weir_request_t *r = s->r;
    if (!s->body_wanted || s->body.taken || (!flowbuf_pending(&s->body) && !s->end_in))
        return;
    s->body_wanted = 0;
    stream_timer(s, ST_NONE);
    size_t n = flowbuf_take(&s->body, &s->slice);
    r->body.done = s->end_in;
    r->body.bytes += n;
    r->request_length += n;
    r->body.sink(r, &s->slice, n ? 1 : 0, s->end_in);
}

static void ds_read_body(weir_request_t *r)
{
    h2s_t *s = r->ds_ctx;
    release_delivered(s);
    want_flush(s->h); /* the WINDOW_UPDATE */
    if (r->body.done || s->body_stopped || s->over)
        return;
    s->body_wanted = 1;
    if (flowbuf_pending(&s->body) || s->end_in) {
        deliver(s);
        return;
    }
    stream_timer(s, ST_BODY);
}

/* The upstream side wants no more body: what is buffered goes back as
 * window, and what still comes is consumed as it arrives. The client is
 * told to stop with RST_STREAM(NO_ERROR) once the response ended
 * (on_frame_send). */
static void ds_stop_body(weir_request_t *r)
{
    h2s_t *s = r->ds_ctx;
    s->body_stopped = 1;
    s->body_wanted = 0;
    if (s->timer_kind == ST_BODY)
        stream_timer(s, ST_NONE);
    give_back(s, flowbuf_drop(&s->body)); /* what was taken waits for the reap */
    want_flush(s->h);
}

/* ---------------------------------------------------------- the response */

/* Response fields that never cross into HTTP/2: the connection-specific
 * ones, and TE and Trailer, which are HTTP/1's hop-by-hop business. */
static int connection_specific(weir_str_t n)
{
    return h2_connection_specific(n) || str_case_eq(n, WEIR_STR("te")) ||
           str_case_eq(n, WEIR_STR("trailer"));
}

static int bytes_ok(weir_str_t v)
{
    for (size_t i = 0; i < v.len; i++)
        if (v.data[i] == '\r' || v.data[i] == '\n' || v.data[i] == '\0')
            return 0;
    return 1;
}

static int push_nv(weir_request_t *r, nghttp2_nv *nv, weir_str_t name, weir_str_t value)
{
    char *n = arena_strndup_lower(r->arena, name.data, name.len);
    if (!n)
        return -1;
    *nv = (nghttp2_nv){(uint8_t *)n, (uint8_t *)value.data, name.len, value.len,
                       NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    return 0;
}

/* Fields that may cross into HTTP/2 as nghttp2 fields, after `front` slots
 * left for the caller: no connection-specific ones, no content-length (the
 * caller states the length), names lowercased. NULL when a module set bytes
 * no field may hold, or memory is short. */
static nghttp2_nv *fields_nva(weir_request_t *r, const weir_headers_t *hs, size_t front,
                              size_t back, size_t *n)
{
    nghttp2_nv *nva = arena_alloc(r->arena, (hs->n + front + back) * sizeof(*nva));
    if (!nva)
        return NULL;
    *n = front;
    for (size_t i = 0; i < hs->n; i++) {
        weir_str_t name = hs->v[i].name, value = hs->v[i].value;
        if (!name.len || connection_specific(name) ||
            (name.len == 14 && strncasecmp(name.data, "content-length", 14) == 0))
            continue;
        if (!bytes_ok(name) || !bytes_ok(value)) {
            reqlog(r, NULL, WEIR_LOG_ERROR,
                   "cannot serialise a response field (a module set an invalid header?)");
            return NULL;
        }
        if (push_nv(r, &nva[(*n)++], name, value) < 0)
            return NULL;
    }
    return nva;
}

/* The response head: :status, the fields, the length. It is submitted with
 * the first send_body, so an answer of weir's own may still replace it
 * until then. */
static int ds_start_response(weir_request_t *r, const response_start_t *rs)
{
    h2s_t *s = r->ds_ctx;
    if (r->status < 200 || r->status > 999 || s->submitted)
        return -1; /* no 1xx and no 101 over HTTP/2 */
    size_t n;
    nghttp2_nv *nva = fields_nva(r, &r->resp_headers, 1, 1, &n);
    char *status = arena_alloc_raw(r->arena, 4);
    char *clen = arena_alloc_raw(r->arena, 24);
    if (!nva || !status || !clen)
        return -1;
    h1_put_u64(status, (uint64_t)r->status); /* 200..999: three digits */
    nva[0] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)status, 7, 3,
                          NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    int64_t length = rs->body == BODY_LENGTH ? (int64_t)rs->length
                     : rs->body == BODY_NONE ? rs->advertised
                                             : -1;
    if (length >= 0) {
        size_t k = (size_t)(h1_put_u64(clen, (uint64_t)length) - clen);
        nva[n++] = (nghttp2_nv){(uint8_t *)"content-length", (uint8_t *)clen, 14, k,
                                NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE};
    }
    s->nva = nva;
    s->nnv = n;
    s->has_body = rs->body != BODY_NONE;
    return 0;
}

/* The body's end: END_STREAM on the last DATA, or on the trailers. */
static void end_data(h2s_t *s, uint32_t *flags)
{
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!s->ntnv)
        return;
    if (nghttp2_submit_trailer(s->h->ng, s->id, s->tnva, s->ntnv) == 0)
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
}

static ssize_t read_body_cb(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)ng, (void)id, (void)user;
    h2s_t *s = src->ptr;
    size_t avail = s->ob_len - s->ob_off;
    if (!avail) {
        if (s->last) {
            end_data(s, flags);
            return 0;
        }
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    size_t n = avail < length ? avail : length;
    memcpy(buf, s->ob + s->ob_off, n);
    s->ob_off += n;
    if (s->ob_off == s->ob_len) {
        s->ob_off = s->ob_len = 0;
        if (s->last)
            end_data(s, flags);
        if (s->resume)
            queue_work(s);
    }
    return (ssize_t)n;
}

static int submit_head(h2s_t *s)
{
    nghttp2_data_provider prov = {.source.ptr = s, .read_callback = read_body_cb};
    int rv = nghttp2_submit_response(s->h->ng, s->id, s->nva, s->nnv,
                                     s->has_body ? &prov : NULL);
    s->submitted = 1;
    return rv;
}

static int ob_append(h2s_t *s, const weir_str_t *sl, size_t n)
{
    size_t need = s->ob_len;
    for (size_t i = 0; i < n; i++)
        need += sl[i].len;
    if (need > s->ob_cap) {
        if (s->ob_off) {
            memmove(s->ob, s->ob + s->ob_off, s->ob_len - s->ob_off);
            s->ob_len -= s->ob_off;
            need -= s->ob_off;
            s->ob_off = 0;
        }
        if (need > s->ob_cap) {
            char *p = realloc(s->ob, need);
            if (!p)
                return -1;
            s->ob = p;
            s->ob_cap = need;
        }
    }
    for (size_t i = 0; i < n; i++) {
        memcpy(s->ob + s->ob_len, sl[i].data, sl[i].len);
        s->ob_len += sl[i].len;
    }
    return 0;
}

static void ds_send_body(weir_request_t *r, const weir_str_t *sl, size_t n, int last,
                         exchange_fn done)
{
    h2s_t *s = r->ds_ctx;
    if (s->closed || s->h->closing) {
        cancel_exchange(s);
        queue_work(s);
        return;
    }
    if (s->has_body && ob_append(s, sl, n) < 0) {
        reqlog(r, NULL, WEIR_LOG_ERROR,
               "client %llu: out of memory for a response", (unsigned long long)r->conn->id);
        nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        cancel_exchange(s);
        queue_work(s);
        return;
    }
    for (size_t i = 0; s->has_body && i < n; i++)
        r->body_bytes_sent += sl[i].len;
    s->last = last;
    if (last && r->resp_trailers.n && s->has_body &&
        !(s->tnva = fields_nva(r, &r->resp_trailers, 0, 0, &s->ntnv))) {
        nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
        cancel_exchange(s);
        queue_work(s);
        return;
    }
    if (!s->submitted) {
        if (submit_head(s) != 0) {
            nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->id,
                                      NGHTTP2_INTERNAL_ERROR);
            cancel_exchange(s);
            queue_work(s);
            return;
        }
    } else if (s->deferred) {
        s->deferred = 0;
        nghttp2_session_resume_data(s->h->ng, s->id);
    }
    s->done = done;
    s->want_done = 1;
    queue_work(s);
}

/* After done: hold the upstream back while the copy waits for the window. */
static int ds_hold(weir_request_t *r, exchange_fn resume)
{
    h2s_t *s = r->ds_ctx;
    if (s->ob_len == s->ob_off)
        return 0;
    s->resume = resume;
    stream_timer(s, ST_SEND);
    return 1;
}

static int ds_head_sent(const weir_request_t *r)
{
    const h2s_t *s = r->ds_ctx;
    return s->submitted;
}

static void ds_finish(weir_request_t *r)
{
    h2s_t *s = r->ds_ctx;
    s->over = 1;
    if (s->closed)
        queue_work(s);
}

/* The response is cut short: the client must see a reset, never a clean
 * END_STREAM. */
static void ds_abort(weir_request_t *r)
{
    h2s_t *s = r->ds_ctx;
    s->over = 1;
    if (!s->closed)
        nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
    queue_work(s);
}

static int ds_tunnel(weir_request_t *r, conn_t *up, const char *pending, size_t len,
                     uint64_t idle_ms)
{
    (void)r, (void)up, (void)pending, (void)len, (void)idle_ms;
    return -1; /* no Upgrade over HTTP/2 */
}

static const downstream_t h2_downstream = {
    .start_response = ds_start_response,
    .send_body = ds_send_body,
    .finish = ds_finish,
    .abort = ds_abort,
    .read_body = ds_read_body,
    .stop_body = ds_stop_body,
    .head_sent = ds_head_sent,
    .tunnel = ds_tunnel,
    .hold = ds_hold,
};

/* ----------------------------------------------------------- stream timer */

static void on_stream_timer(struct timer *t)
{
    h2s_t *s = (h2s_t *)((char *)t - offsetof(h2s_t, timer));
    h2c_t *h = s->h;
    int kind = s->timer_kind;
    s->timer_kind = ST_NONE;
    if (s->closed || s->over)
        return;
    if (kind == ST_BODY) {
        reqlog(s->r, NULL, WEIR_LOG_INFO,
               "client %llu: stream %d: client_body_timeout", (unsigned long long)h->conn->id,
               s->id);
        if (!s->started) { /* the body a head promised never came */
            s->answer = 408;
            queue_work(s);
            return;
        }
        if (!s->submitted) {
            s->body_wanted = 0;
            proxy_cancel(s->r);
            weir_respond(s->r, 408, (weir_str_t){0});
            errpage_send(s->r);
            return;
        }
    } else {
        reqlog(s->r, NULL, WEIR_LOG_INFO,
               "client %llu: stream %d: send_timeout (the client's window stayed shut)",
               (unsigned long long)h->conn->id, s->id);
    }
    nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id,
                              kind == ST_BODY ? NGHTTP2_CANCEL : NGHTTP2_FLOW_CONTROL_ERROR);
    cancel_exchange(s);
    queue_work(s);
}

static void stream_timer(h2s_t *s, int kind)
{
    const limits_t *lim = &s->h->listener->limits;
    s->timer_kind = kind;
    if (kind == ST_NONE)
        timer_cancel(g_loop, &s->timer);
    else
        timer_after(g_loop, &s->timer,
                    kind == ST_BODY ? lim->client_body_timeout : lim->send_timeout);
}

/* ------------------------------------------------------ nghttp2 callbacks */

static h2s_t *stream_of(h2c_t *h, int32_t id)
{
    return nghttp2_session_get_stream_user_data(h->ng, id);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    h2c_t *h = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    weir_request_t *r = h->closing ? NULL : request_new(h->conn->cf);
    h2s_t *s = r ? arena_alloc(r->arena, sizeof(*s)) : NULL;
    if (!s) {
        if (r)
            request_free(r);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id,
                                  NGHTTP2_REFUSED_STREAM);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->h = h;
    s->r = r;
    s->id = f->hd.stream_id;
    h2_head_init(&s->head);
    timer_init(&s->timer, on_stream_timer);
    r->conn = h->conn;
    r->tls = h->conn->secure;
    r->ds = &h2_downstream;
    r->ds_ctx = s;
    r->listener = h->listener;
    r->connection_id = h->conn->id;
    r->method = WEIR_STR("-");
    r->version = 20;
    s->next = h->streams;
    if (h->streams)
        h->streams->prev = s;
    h->streams = s;
    h->nstreams++;
    metrics_conn_idle(h->conn, 0);
    idle_timer(h);
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)ng, (void)flags;
    h2s_t *s = stream_of(user, f->hd.stream_id);
    if (!s || s->head_done) /* trailers: not forwarded to an HTTP/1 upstream */
        return 0;
    h2_head_field(s->r->arena, &s->head, (weir_str_t){(const char *)name, namelen},
                  (weir_str_t){(const char *)value, valuelen},
                  s->h->listener->limits.max_header_size);
    return 0;
}

static int headers_received(h2c_t *h, h2s_t *s, const nghttp2_frame *f)
{
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
        s->end_in = 1;
    if (s->head_done) { /* trailers end the body */
        if (s->end_in)
            queue_work(s);
        return 0;
    }
    s->head_done = 1;
    s->bodiless = s->end_in;
    s->r->request_length = f->hd.length;
    int rc = h2_head_finish(s->r->arena, &s->head);
    head_for_log(s); /* a stream waiting for its body is named by it too */
    if (rc == H2_MALFORMED) {
        reqlog(s->r, NULL, WEIR_LOG_INFO, "client %llu: stream %d: malformed request head; reset",
               (unsigned long long)h->conn->id, s->id);
        nghttp2_submit_rst_stream(h->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
        s->over = 1;
        return 0; /* the reset counts as a glitch when it is sent */
    }
    if (rc < 0) {
        reqlog(s->r, NULL, WEIR_LOG_INFO,
               "client %llu: stream %d: rejected request (%d)", (unsigned long long)h->conn->id,
               s->id, -rc);
        s->answer = -rc;
        if (rc == -431 && glitch(h, "header list over max_header_size") < 0)
            return NGHTTP2_ERR_CALLBACK_FAILURE;
    }
    s->want_start = 1;
    queue_work(s);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    h2c_t *h = user;
    if (f->hd.type == NGHTTP2_DATA && f->hd.length == 0 &&
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) && glitch(h, "empty DATA frame") < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    if (((f->hd.type == NGHTTP2_PING && !(f->hd.flags & NGHTTP2_FLAG_ACK) &&
          control_frame(h, "PING frames while nothing flows") < 0) ||
         (f->hd.type == NGHTTP2_WINDOW_UPDATE &&
          control_frame(h, "WINDOW_UPDATE frames while nothing flows") < 0) ||
         (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK) &&
          h->settings_seen++ && control_frame(h, "SETTINGS frames while nothing flows") < 0) ||
         (f->hd.type == NGHTTP2_RST_STREAM &&
          cut(h, &h->resets, H2_RESET_BURST, H2_RESET_PER_SEC, "RST_STREAM frames") < 0)))
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    h2s_t *s = f->hd.stream_id ? stream_of(h, f->hd.stream_id) : NULL;
    if (!s)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        return headers_received(h, s, f);
    } else if (f->hd.type == NGHTTP2_DATA && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        s->end_in = 1;
        if (s->head.content_length >= 0 && s->data_bytes != (uint64_t)s->head.content_length) {
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_PROTOCOL_ERROR);
            cancel_exchange(s);
        }
        queue_work(s);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    h2c_t *h = user;
    h2s_t *s = stream_of(h, id);
    if (!s) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    s->data_bytes += len;
    if (s->over || s->body_stopped || s->closed) {
        give_back(s, len);
        return 0;
    }
    weir_request_t *r = s->r;
    if (s->head.content_length >= 0 && s->data_bytes > (uint64_t)s->head.content_length) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_PROTOCOL_ERROR);
        give_back(s, len);
        cancel_exchange(s);
        queue_work(s);
        return 0;
    }
    uint64_t max = h->listener->limits.max_body_size;
    if (max && s->data_bytes > max) {
        give_back(s, len);
        s->body_stopped = 1;
        if (s->started && !s->submitted && !r->suspended) {
            proxy_cancel(r);
            weir_respond(r, 413, (weir_str_t){0});
            errpage_send(r);
        } else if (!s->started) {
            s->answer = 413;
        } else {
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
            cancel_exchange(s);
        }
        queue_work(s);
        return 0;
    }
    if (flowbuf_append(&s->body, data, len) < 0) {
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
        give_back(s, len);
        cancel_exchange(s);
    }
    queue_work(s);
    return 0;
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *user)
{
    (void)ng;
    if (hd->length == 0 && !(hd->flags & (NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM)) &&
        (hd->type == NGHTTP2_HEADERS || hd->type == NGHTTP2_CONTINUATION) &&
        glitch(user, "empty HEADERS or CONTINUATION frame") < 0)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* nghttp2 found the frame malformed and resets the stream itself (a DATA
 * sum that breaks content-length, for one): the reset is only queued, so
 * the stream is ended here, before its deferred start could forward it. */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int err, void *user)
{
    (void)ng;
    h2s_t *s = f->hd.stream_id ? stream_of(user, f->hd.stream_id) : NULL;
    if (s && !s->over) {
        cancel_exchange(s);
        queue_work(s);
    }
    return glitch(user, nghttp2_strerror(err)) < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE : 0;
}

static int client_caused(uint32_t code)
{
    return code == NGHTTP2_PROTOCOL_ERROR || code == NGHTTP2_FLOW_CONTROL_ERROR ||
           code == NGHTTP2_STREAM_CLOSED || code == NGHTTP2_FRAME_SIZE_ERROR ||
           code == NGHTTP2_REFUSED_STREAM;
}

/* A response that ended while the client still sends its body: RST_STREAM
 * NO_ERROR tells it to stop (RFC 9113 §8.1). A reset the client caused is a
 * glitch. */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    h2c_t *h = user;
    if (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) {
        h->control_credit += 2;
        if (h->control_credit > H2_CONTROL_CREDIT_MAX)
            h->control_credit = H2_CONTROL_CREDIT_MAX;
    }
    if (f->hd.type == NGHTTP2_RST_STREAM && client_caused(f->rst_stream.error_code) &&
        glitch(user, "streams reset for the client's errors") < 0)
        return 0; /* the GOAWAY is queued; the connection ends after it */
    h2s_t *s = f->hd.stream_id ? stream_of(user, f->hd.stream_id) : NULL;
    if (s && (f->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        (f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) && !s->end_in)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)code;
    h2s_t *s = stream_of(user, id);
    if (!s)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    stream_closed(s);
    return 0;
}

/* ------------------------------------------------------------- work, flush */

/* A body with a content-length that fits the stream window is all read
 * before the request goes upstream (nginx buffers request bodies too): the
 * DATA sum is checked against it first, so a body that breaks its length
 * (which nghttp2 resets without telling) never reaches a server, and the
 * body is kept for retries. Longer bodies, and bodies of unknown length
 * (gRPC streams), go at once. */
static int body_awaited(h2s_t *s)
{
    if (s->end_in || s->answer || s->head.content_length < 0 ||
        s->head.content_length > H2_STREAM_WINDOW)
        return 0;
    if (s->timer_kind == ST_NONE)
        stream_timer(s, ST_BODY);
    return 1;
}

static void run_stream_work(h2s_t *s)
{
    if (s->want_start && !s->closed && !s->over && !body_awaited(s)) {
        s->want_start = 0;
        stream_timer(s, ST_NONE);
        start_request(s);
    }
    if (s->want_done && !s->over) {
        s->want_done = 0;
        exchange_fn done = s->done;
        s->done = NULL;
        done(s->r);
    }
    if (s->resume && s->ob_len == s->ob_off && !s->over) {
        exchange_fn resume = s->resume;
        s->resume = NULL;
        stream_timer(s, ST_NONE);
        resume(s->r);
    }
    if (s->started && !s->over && s->body_wanted)
        deliver(s);
    if (s->closed && !s->reaped && (s->over || !s->started))
        reap(s);
}

static void run_work(h2c_t *h)
{
    if (h->in_work)
        return;
    h->in_work = 1;
    while (h->work) {
        h2s_t *s = h->work;
        h->work = s->work_next;
        if (!h->work)
            h->work_tail = &h->work;
        s->in_work = 0;
        if (!s->reaped)
            run_stream_work(s);
    }
    h->in_work = 0;
}

static void flush(h2c_t *h)
{
    if (h->closing)
        return;
    int rc = h2_wire_flush(&h->wire, h->ng, h->conn, h->listener->limits.send_timeout);
    if (rc < 0) {
        h2_close(h, CONN_ABORT);
        return;
    }
    if (rc || h->wire.sending)
        return;
    if (!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng))
        h2_close(h, 0); /* GOAWAY sent and every stream done */
    else if (!h->nstreams)
        h2_wire_free(&h->wire); /* an idle connection holds no buffer */
}

/* Work first (it submits frames), then the pull; a done or resume that the
 * pull made possible runs in the same round. */
static void flush_task(loop_task_t *t)
{
    h2c_t *h = (h2c_t *)((char *)t - offsetof(h2c_t, flush_task));
    run_work(h);
    flush(h);
    run_work(h);
    if (!h->wire.sending && !h->closing && nghttp2_session_want_write(h->ng))
        want_flush(h);
}

static void want_flush(h2c_t *h)
{
    if (!h->closing && !h->in_recv)
        loop_defer(g_loop, &h->flush_task);
}

/* ------------------------------------------------------------- connection */

static void close_streams(h2c_t *h)
{
    for (h2s_t *s = h->streams; s; s = s->next) {
        if (s->id)
            nghttp2_session_set_stream_user_data(h->ng, s->id, NULL);
        s->closed = 1;
        if (!s->over)
            cancel_exchange(s);
    }
    while (h->streams) {
        h2s_t *s = h->streams;
        s->over = 1;
        reap(s);
    }
    h->work = NULL;
    h->work_tail = &h->work;
}

static void h2_close(h2c_t *h, unsigned how)
{
    if (h->closing)
        return;
    h->closing = 1;
    loop_undefer(g_loop, &h->flush_task);
    timer_detach(g_loop, &h->drain_timer);
    close_streams(h);
    conn_close(h->conn, how);
}

static void on_release(conn_t *c)
{
    h2c_t *h = c->owner;
    close_streams(h);
    loop_undefer(g_loop, &h->flush_task);
    timer_detach(g_loop, &h->drain_timer);
    nghttp2_session_del(h->ng);
    h2_wire_free(&h->wire);
    free(h);
}

static int feed_session(void *arg, const unsigned char *p, size_t n)
{
    h2c_t *h = arg;
    ssize_t rv = nghttp2_session_mem_recv(h->ng, p, n);
    if (rv < 0) {
        reqlog(NULL, h->conn, WEIR_LOG_INFO,
               "client %llu: HTTP/2 connection error: %s", (unsigned long long)h->conn->id,
               nghttp2_strerror((int)rv));
        return -1;
    }
    return 0;
}

/* The client's bytes, without its SETTINGS ACKs (h2_guard.h says why),
 * into the session. */
static int feed(h2c_t *h, const char *data, size_t n)
{
    h->in_recv = 1;
    int rc = h2_ackfilter_feed(&h->acks, (const unsigned char *)data, n, feed_session, h);
    h->in_recv = 0;
    return rc;
}

/* A connection error: nothing more is read; the GOAWAY nghttp2 queued goes
 * out after the send in flight, if there is one (send_timeout bounds the
 * wait), and the connection closes after it. */
static void fail_connection(h2c_t *h)
{
    h->failing = 1;
    if (h->wire.sending)
        return; /* on_sent comes back here */
    run_work(h);
    flush(h);
    h2_close(h, CONN_LINGER);
}

static void on_read(conn_t *c, long n, const char *data)
{
    h2c_t *h = c->owner;
    if (n <= 0) {
        h2_close(h, 0);
        return;
    }
    int rc = h->failing ? 0 : feed(h, data, (size_t)n);
    conn_read_done(c);
    if (h->failing)
        return; /* the GOAWAY waits for the send in flight; nothing more is read */
    if (rc < 0) {
        fail_connection(h);
        return;
    }
    want_flush(h);
    conn_read(c);
}

static void on_sent(conn_t *c, int res)
{
    h2c_t *h = c->owner;
    h2_wire_sent(&h->wire, c);
    if (res < 0) {
        reqlog(NULL, c, WEIR_LOG_INFO,
               "client %llu: send failed: %s", (unsigned long long)c->id, strerror(-res));
        h2_close(h, CONN_ABORT);
        return;
    }
    if (h->failing) {
        fail_connection(h);
        return;
    }
    flush_task(&h->flush_task);
}

static void on_timeout(conn_t *c, int which)
{
    h2c_t *h = c->owner;
    if (which == CONN_TIMER_WRITE)
        reqlog(NULL, c, WEIR_LOG_INFO, "client %llu: send_timeout", (unsigned long long)c->id);
    else if (!h->requests)
        reqlog(NULL, c, WEIR_LOG_INFO,
               "client %llu: client_header_timeout", (unsigned long long)c->id);
    if (which == CONN_TIMER_READ && !h->wire.sending) {
        /* idle: say goodbye politely */
        nghttp2_session_terminate_session(h->ng, NGHTTP2_NO_ERROR);
        flush(h);
    }
    h2_close(h, which == CONN_TIMER_WRITE ? CONN_ABORT : 0);
}

static const conn_handler_t h2_handler = {
    .read = on_read,
    .sent = on_sent,
    .timeout = on_timeout,
    .release = on_release,
};

/* ---------------------------------------------------------------- setup */

static int init_library(void)
{
    if (callbacks)
        return 0;
    if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
        return -1;
    nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, on_stream_close);
    nghttp2_session_callbacks_set_on_begin_frame_callback(callbacks, on_begin_frame);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, on_invalid_frame);
    nghttp2_option_set_no_auto_window_update(options, 1);
    nghttp2_option_set_no_closed_streams(options, 1);
    nghttp2_option_set_max_settings(options, 32);
    nghttp2_option_set_max_outbound_ack(options, 1000);
    nghttp2_option_set_max_continuations(options, 8);
    nghttp2_option_set_stream_reset_rate_limit(options, 1000, 33);
    return 0;
}

static int submit_settings(h2c_t *h)
{
    const limits_t *lim = &h->listener->limits;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
         lim->max_header_size > UINT32_MAX ? UINT32_MAX : (uint32_t)lim->max_header_size},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(h->ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
        return -1;
    return nghttp2_session_set_local_window_size(h->ng, NGHTTP2_FLAG_NONE, 0, H2_CONN_WINDOW);
}

static void drain_goaway(struct timer *t);
static void start_drain(h2c_t *h);

void h2_server_start(conn_t *c, const char *seen, size_t len)
{
    h2c_t *h = calloc(1, sizeof(*h));
    if (!h || init_library() < 0 ||
        nghttp2_session_server_new2(&h->ng, callbacks, h, options) != 0) {
        free(h);
        conn_close(c, CONN_ABORT);
        return;
    }
    h->conn = c;
    h->listener = c->listener;
    h->work_tail = &h->work;
    h->flush_task.fn = flush_task;
    h2_ackfilter_init(&h->acks);
    timer_init(&h->drain_timer, drain_goaway);
    conn_set_handler(c, &h2_handler, h);
    if (submit_settings(h) < 0 || (len && feed(h, seen, len) < 0)) {
        fail_connection(h);
        return;
    }
    idle_timer(h);
    if (weir_worker_draining())
        start_drain(h);
    want_flush(h);
    conn_read(c);
}

/* ------------------------------------------------------------------ drain */

static void final_goaway(h2c_t *h)
{
    if (h->goaway)
        return;
    h->goaway = 1;
    timer_cancel(g_loop, &h->drain_timer);
    nghttp2_submit_goaway(h->ng, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->ng),
                          NGHTTP2_NO_ERROR, NULL, 0);
    want_flush(h);
}

/* The second GOAWAY, with the last stream weir took, comes a grace after
 * the notice: streams the client opened before it saw the notice have
 * arrived by then and are served; later ones are refused before any work
 * is done. Not a PING's round trip: an nghttp2 client sends the PING's ACK
 * ahead of HEADERS it had queued before the notice came, and those would
 * be refused. */
static void drain_goaway(struct timer *t)
{
    final_goaway((h2c_t *)((char *)t - offsetof(h2c_t, drain_timer)));
}

static void start_drain(h2c_t *h)
{
    if (h->draining)
        return;
    h->draining = 1;
    nghttp2_submit_shutdown_notice(h->ng);
    timer_after(g_loop, &h->drain_timer, drain_grace_ms);
    want_flush(h);
}

void h2_server_drain(uint64_t idle_grace_ms)
{
    drain_grace_ms = idle_grace_ms;
    for (conn_t *c = conn_first(); c; c = c->next) {
        if (c->h != &h2_handler || c->closing) /* its owner may be gone */
            continue;
        h2c_t *h = c->owner;
        if (!h->closing)
            start_drain(h);
    }
}
