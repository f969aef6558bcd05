/*
 * Connections (see conn.h): receive, send, transport glue, close.
 */
#include "conn.h"

#include <errno.h>
#include <poll.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arena.h"
#include "log.h"
#include "metrics_core.h"

/* A transport's buffers: plaintext it gave the owner (held until
 * conn_read_done), what was left when a transport stepped aside, and wire
 * bytes on their way out. Both are taken from a per-worker cache only while
 * in use, so an idle connection with a transport holds neither (what
 * SSL_MODE_RELEASE_BUFFERS does for OpenSSL's own). */
#define PLAIN_SIZE 16384
#define WIRE_SIZE PLAIN_SIZE
#define BUF_CACHE_MAX 64

struct conn_plain {
    char *in; /* PLAIN_SIZE bytes while plaintext is held or left over */
    size_t in_len, in_off; /* leftover after DETACH: in[in_off..in_len) */
    int held;
    int leftover; /* in[] holds bytes a detached transport left */
    char *wire; /* WIRE_SIZE bytes while wire bytes wait or are in flight */
    size_t wire_len;
    struct iovec wire_iov;
    struct msghdr wire_msg;
    int wire_armed; /* the send in flight carries wire[], not the owner's queue */
};

typedef struct cleanup {
    struct cleanup *next;
    void (*fn)(void *arg);
    void *arg;
} cleanup_t;

struct conn_extra {
    void **ctx; /* nmodules slots */
    cleanup_t *cleanups;
    char *preamble;
    size_t preamble_len;
    /* a second transport, waiting for the first to step aside (a PROXY
     * header reader, then TLS) */
    const weir_transport_t *tr_next;
    void *tr_next_state;
};

void (*conn_on_client_closed)(void);

static char *buf_cache[BUF_CACHE_MAX];
static size_t nbuf_cache;

static char *buf_get(void)
{
    return nbuf_cache ? buf_cache[--nbuf_cache] : malloc(PLAIN_SIZE);
}

static void buf_put(char *b)
{
    if (!b)
        return;
    if (nbuf_cache < BUF_CACHE_MAX)
        buf_cache[nbuf_cache++] = b;
    else
        free(b);
}

static conn_t *all_clients;
static uint64_t next_id = 1;
static wireq_t *free_queues;
static size_t nfree_queues;
#define FREE_QUEUES_MAX 256

static void on_recv(loop_op_t *op, int res, unsigned flags);
static void on_send(loop_op_t *op, int res, unsigned flags);
static void on_read_timer(struct timer *t);
static void on_write_timer(struct timer *t);
static void run_task(loop_task_t *t);
static void arm_recv(conn_t *c);
static void tr_pump(conn_t *c);
static void close_fd(conn_t *c);
static void maybe_free(conn_t *c);
static void close_progress(conn_t *c);

#define CONN_OF(ptr, member) ((conn_t *)((char *)(ptr) - offsetof(conn_t, member)))

/* shutdown(2) on a socket never blocks (it queues a FIN). It is not a ring
 * operation: one that the ring punted to a worker thread could run after
 * the close, on whatever socket took the descriptor number since. */
static void shut_write(conn_t *c)
{
    shutdown(c->fd, SHUT_WR);
}

/* ----------------------------------------------------------------- create */

static conn_t *conn_new(int fd, const weir_conf_t *cf)
{
    conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = fd;
    c->cf = cf;
    c->id = next_id++;
    c->held_bid = -1;
    c->recv_op.cb = on_recv;
    c->send_op.cb = on_send;
    c->task.fn = run_task;
    timer_init(&c->timers[CONN_TIMER_READ], on_read_timer);
    timer_init(&c->timers[CONN_TIMER_WRITE], on_write_timer);
    return c;
}

conn_t *conn_accepted(int fd, const weir_listener_t *l, const weir_conf_t *cf)
{
    conn_t *c = conn_new(fd, cf);
    if (!c) {
        close(fd);
        return NULL;
    }
    c->listener = l;
    if (l->addr.ss.ss_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c->in_list = 1;
    c->next = all_clients;
    if (all_clients)
        all_clients->prev = c;
    all_clients = c;
    metrics_conn_opened(c);
    return c;
}

conn_t *conn_socket(int family, const weir_conf_t *cf)
{
    /* blocking: the ring waits for room on a full socket; on an O_NONBLOCK
     * one its send would fail with EAGAIN instead */
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    conn_t *c = conn_new(fd, cf);
    if (!c) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    c->upstream = 1;
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    return c;
}

conn_t *conn_first(void)
{
    return all_clients;
}

void conn_set_handler(conn_t *c, const conn_handler_t *h, void *owner)
{
    c->h = h;
    c->owner = owner;
}

/* ------------------------------------------------------------------ timers */

void conn_timer(conn_t *c, int which, uint64_t ms)
{
    if (ms)
        timer_after(g_loop, &c->timers[which], ms);
    else
        timer_cancel(g_loop, &c->timers[which]);
}

static void linger_end(conn_t *c);

static void on_read_timer(struct timer *t)
{
    conn_t *c = CONN_OF(t, timers[CONN_TIMER_READ]);
    if (c->closing) {
        if (c->linger)
            linger_end(c);
        return;
    }
    if (c->handshaking) {
        c->handshaking = 0;
        c->hs_timed_out = 1;
        c->handshake_done(c, 0);
        return;
    }
    c->h->timeout(c, CONN_TIMER_READ);
}

static void on_write_timer(struct timer *t)
{
    conn_t *c = CONN_OF(t, timers[CONN_TIMER_WRITE]);
    if (c->closing) { /* the flush before close took too long: cut it */
        c->abort = 1;
        close_fd(c);
        return;
    }
    c->h->timeout(c, CONN_TIMER_WRITE);
}

/* -------------------------------------------------------------- addresses */

static void lookup(int fd, conn_addr_t *a, int peer)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    if (rc < 0) {
        a->u.sa.sa_family = AF_UNSPEC;
        a->len = sizeof(sa_family_t);
        return;
    }
    if (ss.ss_family == AF_INET || ss.ss_family == AF_INET6) {
        memcpy(&a->u, &ss, len <= sizeof(a->u) ? len : sizeof(a->u));
        a->len = len;
    } else {
        a->u.sa.sa_family = ss.ss_family;
        a->len = sizeof(sa_family_t);
    }
}

const struct sockaddr *conn_peer(conn_t *c)
{
    if (!c->peer.len)
        lookup(c->fd, &c->peer, 1);
    return &c->peer.u.sa;
}

const struct sockaddr *conn_local(conn_t *c)
{
    if (!c->local.len)
        lookup(c->fd, &c->local, 0);
    return &c->local.u.sa;
}

/* ------------------------------------------------------------------ input */

static void retry_nobuf(buf_waiter_t *w)
{
    conn_t *c = CONN_OF(w, bufwait);
    c->inflight--;
    c->recv_armed = 0;
    if (c->closing && (!c->linger || c->fd_closed)) {
        maybe_free(c);
        return;
    }
    arm_recv(c);
}

static void arm_recv(conn_t *c)
{
    if (c->recv_armed || c->fd_closed)
        return;
    c->recv_armed = 1;
    c->inflight++;
    loop_recv(g_loop, c->fd, &c->recv_op);
}

void conn_read(conn_t *c)
{
    if (c->closing)
        return;
    c->want_read = 1;
    if (c->tr || (c->plain && c->plain->leftover)) {
        loop_defer(g_loop, &c->task);
        return;
    }
    arm_recv(c);
}

void conn_read_done(conn_t *c)
{
    if (c->held_bid >= 0) {
        loop_buf_release(g_loop, (unsigned)c->held_bid);
        c->held_bid = -1;
    }
    struct conn_plain *p = c->plain;
    if (p) {
        p->held = 0;
        if (!p->leftover) {
            buf_put(p->in);
            p->in = NULL;
        }
        if (!c->tr && !p->leftover) { /* a transport that stepped aside */
            free(p);
            c->plain = NULL;
        }
    }
}

static void release_buffer(void *arg)
{
    loop_buf_release(g_loop, (unsigned)((uintptr_t)arg - 1));
}

conn_hold_t conn_take_input(conn_t *c)
{
    conn_hold_t h = {.bid = c->held_bid, .mem = NULL};
    c->held_bid = -1;
    struct conn_plain *p = c->plain;
    if (h.bid < 0 && p && p->held && p->in) {
        h.mem = p->in;
        p->in = NULL;
        p->held = 0;
    }
    return h;
}

void conn_hold_release(conn_hold_t *h)
{
    if (h->bid >= 0)
        loop_buf_release(g_loop, (unsigned)h->bid);
    free(h->mem);
    h->bid = -1;
    h->mem = NULL;
}

int conn_hand_over_input(conn_t *c, struct arena *a)
{
    if (c->held_bid >= 0) {
        if (arena_cleanup(a, release_buffer, (void *)((uintptr_t)c->held_bid + 1)) < 0)
            return -1;
        c->held_bid = -1;
        return 0;
    }
    struct conn_plain *p = c->plain;
    if (p && p->held && p->in) {
        if (arena_cleanup(a, free, p->in) < 0)
            return -1;
        p->in = NULL;
        p->held = 0;
    }
    return 0;
}

static void deliver(conn_t *c, long n, const char *data)
{
    c->want_read = 0;
    c->h->read(c, n, data);
}

/* Plaintext from the transport (or what a detached one left) for an owner
 * that asked for it. */
static void deliver_plain(conn_t *c)
{
    struct conn_plain *p = c->plain;
    if (!c->want_read || c->closing || p->held)
        return;
    if (p->leftover) {
        size_t n = p->in_len - p->in_off;
        p->held = 1;
        p->leftover = 0;
        /* the owner reads in[in_off..); the buffer is free again once it is
         * done, and with no transport the plain path takes over */
        deliver(c, (long)n, p->in + p->in_off);
        return;
    }
    if (!c->tr) {
        arm_recv(c);
        return;
    }
    if (!p->in && !(p->in = buf_get())) {
        deliver(c, -ENOMEM, NULL);
        return;
    }
    long n = c->tr->read(c->tr_state, p->in, PLAIN_SIZE);
    tr_pump(c); /* reading may have made wire bytes (TLS key updates) */
    if (n > 0) {
        p->held = 1;
        deliver(c, n, p->in);
        return;
    }
    buf_put(p->in);
    p->in = NULL;
    if (n == WEIR_TRANSPORT_AGAIN) {
        arm_recv(c);
    } else if (n == WEIR_TRANSPORT_EOF) {
        deliver(c, 0, NULL);
    } else {
        deliver(c, -EPROTO, NULL);
    }
}

static void step_handshake(conn_t *c);
static struct conn_extra *extra_of(weir_connection_t *c);

static void linger_recv(conn_t *c, int res, int bid)
{
    if (bid >= 0)
        loop_buf_release(g_loop, (unsigned)bid);
    if (!c->linger_until) { /* still flushing the answer: keep discarding */
        if (res > 0)
            arm_recv(c);
        else
            c->eof = 1;
        return;
    }
    /* the end of the stream, an error, or no buffer to read into (lingering
     * is a courtesy): close */
    if (res <= 0) {
        linger_end(c);
        return;
    }
    c->linger_bytes += (size_t)res;
    if (c->linger_bytes > LINGER_MAX_BYTES || g_loop->now >= c->linger_until) {
        linger_end(c);
        return;
    }
    uint64_t left = c->linger_until - g_loop->now;
    conn_timer(c, CONN_TIMER_READ, left < LINGER_IDLE_MS ? left : LINGER_IDLE_MS);
    arm_recv(c);
}

/* The watch is armed from the task, at the end of the loop turn: a pooled
 * connection that is taken again in the same turn (the common case under
 * load) never costs a POLL_ADD and its POLL_REMOVE. */
void conn_watch(conn_t *c)
{
    if (c->recv_armed || c->closing)
        return;
    c->watch_pending = 1;
    loop_defer(g_loop, &c->task);
}

static void arm_watch(conn_t *c)
{
    c->watch_pending = 0;
    if (c->recv_armed || c->closing)
        return;
    c->watching = 1;
    c->unwatched = 0;
    c->recv_armed = 1;
    c->inflight++;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_poll_add(sqe, c->fd, POLLIN | POLLRDHUP);
    loop_prep_op(sqe, &c->recv_op);
}

void conn_unwatch(conn_t *c)
{
    if (c->watch_pending) { /* never armed */
        c->watch_pending = 0;
        return;
    }
    if (!c->watching || c->unwatched)
        return;
    c->unwatched = 1;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_poll_remove(sqe, (__u64)(uintptr_t)&c->recv_op);
    loop_prep_op(sqe, NULL);
}

static void on_watch(conn_t *c, int res)
{
    c->watching = 0;
    c->recv_armed = 0;
    c->inflight--;
    if (c->closing) {
        maybe_free(c);
        return;
    }
    if (c->unwatched) { /* taken out of the pool: its reads start now */
        c->unwatched = 0;
        if (c->want_read)
            arm_recv(c);
        return;
    }
    (void)res;
    c->h->read(c, -EPIPE, NULL);
}

static void on_recv(loop_op_t *op, int res, unsigned flags)
{
    conn_t *c = CONN_OF(op, recv_op);
    if (c->watching) {
        on_watch(c, res);
        return;
    }
    int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
    if (res == -ENOBUFS && !c->closing) {
        /* stays counted in inflight and armed while it waits */
        c->bufwait.fn = retry_nobuf;
        loop_wait_buffers(g_loop, &c->bufwait);
        return;
    }
    c->inflight--;
    c->recv_armed = 0;
    if (c->closing) {
        if (c->linger && !c->fd_closed) {
            linger_recv(c, res, bid);
            return;
        }
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        maybe_free(c);
        return;
    }
    if (res <= 0) {
        if (bid >= 0)
            loop_buf_release(g_loop, (unsigned)bid);
        if (res == 0)
            c->eof = 1;
        if (c->handshaking) {
            c->handshaking = 0;
            c->handshake_done(c, 0);
            return;
        }
        deliver(c, res, NULL);
        return;
    }
    const char *data = loop_buf(g_loop, (unsigned)bid);
    if (!c->tr) {
        c->held_bid = bid;
        deliver(c, res, data);
        return;
    }
    int rc = c->tr->input(c->tr_state, data, (size_t)res);
    loop_buf_release(g_loop, (unsigned)bid);
    if (rc < 0) {
        c->tr_failed = 1;
        if (c->handshaking) {
            c->handshaking = 0;
            c->handshake_done(c, 0);
            return;
        }
        deliver(c, -EPROTO, NULL);
        return;
    }
    if (c->handshaking)
        step_handshake(c);
    else
        deliver_plain(c);
}

static void run_task(loop_task_t *t)
{
    conn_t *c = CONN_OF(t, task);
    if (c->closing) {
        close_progress(c);
        return;
    }
    if (c->watch_pending)
        arm_watch(c);
    if (c->tr || c->plain)
        deliver_plain(c);
}

/* -------------------------------------------------------------- handshake */

static struct conn_plain *plain_buffers(conn_t *c)
{
    if (!c->plain)
        c->plain = calloc(1, sizeof(*c->plain));
    return c->plain;
}

/* The transport stepped aside: what read() still holds becomes leftover
 * plaintext, delivered before the next receive. */
static int detach_transport(conn_t *c)
{
    struct conn_plain *p = c->plain;
    p->in_len = p->in_off = 0;
    if (!p->in && !(p->in = buf_get()))
        return -1;
    for (;;) {
        long n = c->tr->read(c->tr_state, p->in + p->in_len, PLAIN_SIZE - p->in_len);
        if (n <= 0)
            break;
        p->in_len += (size_t)n;
        if (p->in_len == PLAIN_SIZE)
            break;
    }
    p->leftover = p->in_len > 0;
    if (!p->leftover) {
        buf_put(p->in);
        p->in = NULL;
    }
    if (c->tr->free)
        c->tr->free(c->tr_state);
    c->tr = NULL;
    c->tr_state = NULL;
    return 0;
}

/* The transport that waited takes over from one that stepped aside, and
 * starts from the bytes that one left. 0, or -1. */
static int next_transport(conn_t *c)
{
    struct conn_extra *x = c->extra;
    struct conn_plain *p = c->plain;
    c->tr = x->tr_next;
    c->tr_state = x->tr_next_state;
    x->tr_next = NULL;
    x->tr_next_state = NULL;
    int rc = 0;
    if (p->leftover) {
        rc = c->tr->input(c->tr_state, p->in + p->in_off, p->in_len - p->in_off);
        p->leftover = 0;
        buf_put(p->in);
        p->in = NULL;
    }
    return rc < 0 ? -1 : 0;
}

static void step_handshake(conn_t *c)
{
    int rc;
    for (;;) {
        rc = c->tr->handshake ? c->tr->handshake(c, c->tr_state) : WEIR_TRANSPORT_DONE;
        tr_pump(c);
        if (rc == WEIR_TRANSPORT_AGAIN && !c->tr_failed) {
            arm_recv(c);
            return;
        }
        if (rc != WEIR_TRANSPORT_DETACH)
            break;
        if (detach_transport(c) < 0) {
            rc = WEIR_TRANSPORT_ERROR;
            break;
        }
        if (!c->extra || !c->extra->tr_next)
            break;
        if (next_transport(c) < 0) {
            rc = WEIR_TRANSPORT_ERROR;
            break;
        }
    }
    c->handshaking = 0;
    conn_timer(c, CONN_TIMER_READ, 0);
    c->handshake_done(c, rc == WEIR_TRANSPORT_DONE || rc == WEIR_TRANSPORT_DETACH);
}

void conn_handshake(conn_t *c, uint64_t timeout_ms, void (*done)(conn_t *c, int ok))
{
    if (!c->tr || !c->tr->handshake) {
        done(c, 1);
        return;
    }
    c->handshaking = 1;
    c->handshake_done = done;
    conn_timer(c, CONN_TIMER_READ, timeout_ms);
    step_handshake(c);
}

int weir_connection_set_transport(weir_connection_t *c, const weir_transport_t *t, void *state)
{
    if (!t || !t->input || !t->read || !t->write || !t->output || !plain_buffers(c))
        return -1;
    if (!c->tr) {
        c->tr = t;
        c->tr_state = state;
        return 0;
    }
    struct conn_extra *x = extra_of(c);
    if (!x || x->tr_next || !c->tr->handshake)
        return -1;
    x->tr_next = t;
    x->tr_next_state = state;
    return 0;
}

/* ----------------------------------------------------------------- output */

wireq_t *conn_wq(conn_t *c)
{
    if (c->wq)
        return c->wq;
    wireq_t *q = free_queues;
    if (q) {
        free_queues = q->next_free;
        nfree_queues--;
    } else if (!(q = malloc(sizeof(*q)))) {
        return NULL;
    }
    q->n = q->first = q->submitted = 0;
    q->left = 0;
    q->scratch_len = 0;
    q->next_free = NULL;
    c->wq = q;
    return q;
}

static void wq_put(conn_t *c)
{
    wireq_t *q = c->wq;
    if (!q)
        return;
    c->wq = NULL;
    if (nfree_queues < FREE_QUEUES_MAX) {
        q->next_free = free_queues;
        free_queues = q;
        nfree_queues++;
    } else {
        free(q);
    }
}

int wq_add(wireq_t *q, const void *p, size_t len)
{
    if (!len)
        return 0;
    if (q->n >= WQ_IOV)
        return -1;
    q->iov[q->n].iov_base = (void *)p;
    q->iov[q->n].iov_len = len;
    q->n++;
    q->left += len;
    return 0;
}

int wq_copy(wireq_t *q, const void *p, size_t len)
{
    if (q->scratch_len + len > sizeof(q->scratch))
        return -1;
    char *d = q->scratch + q->scratch_len;
    memcpy(d, p, len);
    if (wq_add(q, d, len) < 0)
        return -1;
    q->scratch_len += len;
    return 0;
}

size_t wq_room(const wireq_t *q)
{
    return (size_t)(WQ_IOV - q->n);
}

int wq_empty(const wireq_t *q)
{
    return !q || q->left == 0;
}

static void wq_advance(wireq_t *q, size_t sent)
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
    while (q->first < q->n && q->iov[q->first].iov_len == 0)
        q->first++;
}

void conn_wq_clear(conn_t *c)
{
    wireq_t *q = c->wq;
    if (!q || c->send_armed)
        return;
    wq_put(c);
}

static void submit_send(conn_t *c, struct msghdr *msg)
{
    c->send_armed = 1;
    c->inflight++;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_sendmsg(sqe, c->fd, msg, MSG_NOSIGNAL | MSG_WAITALL);
    loop_prep_op(sqe, &c->send_op);
}

static void submit_queue(conn_t *c)
{
    wireq_t *q = c->wq;
    memset(&q->msg, 0, sizeof(q->msg));
    q->msg.msg_iov = &q->iov[q->first];
    q->msg.msg_iovlen = (size_t)(q->n - q->first);
    q->submitted = q->n;
    submit_send(c, &q->msg);
}

/* Transport path: the owner's plaintext goes through write() at once; its
 * wire bytes, and any the transport made on its own, go out from wire[].
 * The owner's sent() comes when its plaintext is taken and the wire is
 * empty. */
static void tr_pump(conn_t *c)
{
    struct conn_plain *p = c->plain;
    if (!c->tr || !p || c->send_armed || c->fd_closed)
        return;
    wireq_t *q = c->wq;
    size_t wl = 0;
    if (!p->wire && !(p->wire = buf_get()))
        c->tr_failed = 1; /* the owner hears of it below */
    /* The owner's pieces go to write() back to back, so a transport can
     * put a response head and its body in one record; output() comes when
     * the transport took less than offered (it is full), after WIRE_SIZE
     * bytes, and at the end, and wire[] is filled only while it has room.
     * A transport is asked to take more only once it handed over what it
     * made, so one with a bounded buffer always has room. */
    size_t fed = 0;
    while (q && q->left && !c->tr_failed && wl < WIRE_SIZE) {
        struct iovec *v = &q->iov[q->first];
        size_t offered = v->iov_len;
        long k = c->tr->write(c->tr_state, v->iov_base, offered);
        if (k < 0) {
            c->tr_failed = 1;
            break;
        }
        wq_advance(q, (size_t)k);
        fed += (size_t)k;
        if ((size_t)k == offered && q->left && fed < WIRE_SIZE)
            continue;
        size_t made = c->tr->output(c->tr_state, p->wire + wl, WIRE_SIZE - wl);
        wl += made;
        fed = 0;
        if (k == 0 && made == 0) { /* took nothing and made nothing: stuck */
            c->tr_failed = 1;
            break;
        }
    }
    if (p->wire && wl < WIRE_SIZE)
        wl += c->tr->output(c->tr_state, p->wire + wl, WIRE_SIZE - wl);
    p->wire_len = wl;
    if (p->wire_len) {
        p->wire_iov.iov_base = p->wire;
        p->wire_iov.iov_len = p->wire_len;
        memset(&p->wire_msg, 0, sizeof(p->wire_msg));
        p->wire_msg.msg_iov = &p->wire_iov;
        p->wire_msg.msg_iovlen = 1;
        p->wire_armed = 1;
        submit_send(c, &p->wire_msg);
        return;
    }
    buf_put(p->wire); /* nothing waits: an idle connection keeps no buffer */
    p->wire = NULL;
    if (c->closing) {
        /* from the task, not here: conn_close itself pumps, and the close
         * may free the connection */
        loop_defer(g_loop, &c->task);
        return;
    }
    if (c->shut_pending)
        conn_shutdown_write(c);
    if (q && (q->left == 0 || c->tr_failed)) {
        int res = c->tr_failed ? -EPROTO : 0;
        wq_put(c);
        c->h->sent(c, res);
    }
}

void conn_send(conn_t *c)
{
    if (c->closing || !c->wq)
        return;
    if (c->tr) {
        tr_pump(c);
        return;
    }
    if (c->send_armed)
        return; /* picked up when the send in flight completes */
    if (c->wq->left == 0) {
        wq_put(c);
        c->h->sent(c, 0);
        return;
    }
    submit_queue(c);
}

static void on_connect_done(conn_t *c, int res)
{
    c->connecting = 0;
    if (c->closing) {
        close_progress(c);
        return;
    }
    if (res == 0 && c->extra && c->extra->preamble) {
        /* the preamble goes before any transport byte: sent raw, first */
        wireq_t *q = conn_wq(c);
        if (!q || wq_add(q, c->extra->preamble, c->extra->preamble_len) < 0) {
            c->h->connected(c, -ENOMEM);
            return;
        }
        submit_queue(c);
        c->connecting = 1; /* its completion finishes the connect */
        return;
    }
    c->h->connected(c, res);
}

static void on_send(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    conn_t *c = CONN_OF(op, send_op);
    c->inflight--;
    c->send_armed = 0;
    if (c->connecting && !c->wq) { /* the connect itself */
        on_connect_done(c, res < 0 ? res : 0);
        return;
    }
    int wire = c->plain && c->plain->wire_armed;
    if (wire)
        c->plain->wire_armed = 0;
    if (c->abort || c->fd_closed) {
        close_progress(c);
        return;
    }
    if (res < 0) {
        if (c->closing) {
            close_fd(c);
            close_progress(c);
            return;
        }
        if (c->connecting) {
            c->connecting = 0;
            wq_put(c);
            c->h->connected(c, res);
            return;
        }
        wq_put(c);
        c->h->sent(c, res);
        return;
    }
    if (wire) {
        struct conn_plain *p = c->plain;
        if ((size_t)res < p->wire_len) {
            /* MSG_WAITALL on a stream socket sends all unless interrupted */
            memmove(p->wire, p->wire + res, p->wire_len - (size_t)res);
            p->wire_len -= (size_t)res;
            p->wire_iov.iov_base = p->wire;
            p->wire_iov.iov_len = p->wire_len;
            p->wire_armed = 1;
            submit_send(c, &p->wire_msg);
            return;
        }
        tr_pump(c);
        return;
    }
    wireq_t *q = c->wq;
    wq_advance(q, (size_t)res);
    if (q->left) {
        submit_queue(c);
        return;
    }
    wq_put(c);
    if (c->connecting) {
        c->connecting = 0;
        if (c->closing) {
            close_progress(c);
            return;
        }
        c->h->connected(c, 0);
        return;
    }
    if (c->closing) {
        close_progress(c);
        return;
    }
    if (c->tr) {
        tr_pump(c);
        return;
    }
    if (c->shut_pending)
        conn_shutdown_write(c);
    c->h->sent(c, 0);
}

void conn_connect(conn_t *c, const struct sockaddr *sa, socklen_t len)
{
    c->connecting = 1;
    c->inflight++;
    c->send_armed = 1;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_connect(sqe, c->fd, sa, len);
    loop_prep_op(sqe, &c->send_op);
}

int weir_connection_write(weir_connection_t *c, const void *data, size_t len)
{
    struct conn_extra *x = c->extra;
    if (!c->upstream || !len)
        return -1;
    if (!x && !(x = c->extra = calloc(1, sizeof(*x))))
        return -1;
    char *p = realloc(x->preamble, x->preamble_len + len);
    if (!p)
        return -1;
    memcpy(p + x->preamble_len, data, len);
    x->preamble = p;
    x->preamble_len += len;
    return 0;
}

void conn_shutdown_write(conn_t *c)
{
    if (c->shut_wr || c->fd_closed)
        return;
    if (c->tr && c->tr->shutdown && !c->tr_shut) {
        c->tr_shut = 1;
        c->tr->shutdown(c->tr_state);
        tr_pump(c);
    }
    if (c->send_armed) { /* after what is queued: the send's end comes back here */
        c->shut_pending = 1;
        return;
    }
    c->shut_pending = 0;
    c->shut_wr = 1;
    shut_write(c);
}

/* ------------------------------------------------------------------ close */

static void run_cleanups(conn_t *c)
{
    struct conn_extra *x = c->extra;
    if (!x)
        return;
    while (x->cleanups) {
        cleanup_t *e = x->cleanups;
        x->cleanups = e->next;
        e->fn(e->arg);
        free(e);
    }
    if (x->tr_next && x->tr_next->free)
        x->tr_next->free(x->tr_next_state);
    free(x->ctx);
    free(x->preamble);
    free(x);
    c->extra = NULL;
}

static void conn_free(conn_t *c)
{
    c->freed = 1;
    timer_detach(g_loop, &c->timers[0]);
    timer_detach(g_loop, &c->timers[1]);
    loop_undefer(g_loop, &c->task);
    run_cleanups(c);
    if (c->tr && c->tr->free)
        c->tr->free(c->tr_state);
    if (c->plain) {
        buf_put(c->plain->in);
        buf_put(c->plain->wire);
    }
    free(c->plain);
    wq_put(c);
    int client = c->in_list;
    if (c->in_list) {
        metrics_conn_closed(c);
        if (c->prev)
            c->prev->next = c->next;
        else
            all_clients = c->next;
        if (c->next)
            c->next->prev = c->prev;
    }
    free(c);
    if (client && conn_on_client_closed)
        conn_on_client_closed();
}

static void maybe_free(conn_t *c)
{
    if (c->closing && c->fd_closed && c->inflight == 0 && c->released)
        conn_free(c);
}

static void close_fd(conn_t *c)
{
    if (c->fd_closed)
        return;
    c->fd_closed = 1;
    c->linger = 0;
    timer_cancel(g_loop, &c->timers[0]);
    timer_cancel(g_loop, &c->timers[1]);
    if (c->inflight) {
        struct io_uring_sqe *sqe = loop_sqe(g_loop);
        io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
        loop_prep_op(sqe, NULL);
    }
    /* the ring holds its own reference to the file for what is in flight */
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_close(sqe, c->fd);
    loop_prep_op(sqe, NULL);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

static void linger_end(conn_t *c)
{
    close_fd(c);
    maybe_free(c);
}

static void start_linger(conn_t *c)
{
    shut_write(c);
    c->linger_until = g_loop->now + LINGER_TIME_MS;
    conn_timer(c, CONN_TIMER_READ, LINGER_IDLE_MS);
    arm_recv(c);
}

/*
 * The steps of a close, run from the loop (a completion or the task), never
 * from inside the owner's call: once no send reads the owner's memory, the
 * owner is released; then the connection lingers or its fd is closed; it is
 * freed after the last completion.
 */
static void close_progress(conn_t *c)
{
    if (c->send_armed)
        return; /* its completion comes back here */
    if (!c->released) {
        c->released = 1;
        if (c->held_bid >= 0) {
            loop_buf_release(g_loop, (unsigned)c->held_bid);
            c->held_bid = -1;
        }
        wq_put(c);
        if (c->h && c->h->release)
            c->h->release(c);
    }
    if (!c->fd_closed) {
        if (c->linger && !c->eof) {
            if (!c->linger_until)
                start_linger(c);
            return;
        }
        close_fd(c);
    }
    maybe_free(c);
}

/* How long a close waits for the send in flight before cutting it. */
#define CLOSE_FLUSH_MS 10000

void conn_close(conn_t *c, unsigned how)
{
    if (c->closing)
        return;
    c->closing = 1;
    c->handshaking = 0;
    c->want_read = 0;
    c->linger = (how & CONN_LINGER) && !c->eof && !c->upstream;
    conn_timer(c, CONN_TIMER_READ, 0);
    conn_timer(c, CONN_TIMER_WRITE, 0);
    if (how & CONN_ABORT) {
        c->abort = 1;
        close_fd(c);
    } else {
        /* a receive in flight would wait for bytes that may never come;
         * while lingering it is the discarding read */
        if (c->recv_armed && !c->linger) {
            struct io_uring_sqe *sqe = loop_sqe(g_loop);
            io_uring_prep_cancel(sqe, &c->recv_op, 0);
            loop_prep_op(sqe, NULL);
        }
        if (c->tr && c->tr->shutdown && !c->tr_shut && !c->tr_failed) {
            c->tr_shut = 1;
            c->tr->shutdown(c->tr_state);
            tr_pump(c); /* the close_notify goes out before the close */
        }
        if (c->send_armed)
            conn_timer(c, CONN_TIMER_WRITE, CLOSE_FLUSH_MS);
    }
    loop_defer(g_loop, &c->task);
}

/* --------------------------------------------------------------- modules */

uint64_t weir_connection_id(const weir_connection_t *c)
{
    return c->id;
}

const weir_listener_t *weir_connection_listener(const weir_connection_t *c)
{
    return c->listener;
}

const struct sockaddr *weir_connection_client_addr(weir_connection_t *c)
{
    return c->upstream ? conn_local(c) : conn_peer(c);
}

const struct sockaddr *weir_connection_server_addr(weir_connection_t *c)
{
    return c->upstream ? conn_peer(c) : conn_local(c);
}

void weir_connection_set_secure(weir_connection_t *c)
{
    c->secure = 1;
}

int weir_connection_is_secure(const weir_connection_t *c)
{
    return c->secure;
}

/* The protocols the core speaks, by ALPN name; h2 joins with HTTP/2. */
static int alpn_code(weir_str_t name)
{
    if (name.len == 8 && memcmp(name.data, "http/1.1", 8) == 0)
        return CONN_ALPN_HTTP1;
    if (name.len == 2 && memcmp(name.data, "h2", 2) == 0)
        return CONN_ALPN_H2;
    return -1;
}

int weir_protocol_supported(weir_str_t alpn)
{
    return alpn_code(alpn) > 0;
}

int weir_connection_set_protocol(weir_connection_t *c, weir_str_t alpn)
{
    int code = alpn_code(alpn);
    if (code < 0)
        return -1;
    c->alpn = (unsigned char)code;
    return 0;
}

void weir_connection_set_handshake_timeout(weir_connection_t *c, uint64_t ms)
{
    if (ms > UINT32_MAX)
        ms = UINT32_MAX;
    c->handshake_ms = (uint32_t)ms;
}

static int set_addr(conn_addr_t *a, const struct sockaddr *sa)
{
    socklen_t len;
    if (sa->sa_family == AF_INET)
        len = sizeof(struct sockaddr_in);
    else if (sa->sa_family == AF_INET6)
        len = sizeof(struct sockaddr_in6);
    else
        return -1;
    memcpy(&a->u, sa, len);
    a->len = len;
    return 0;
}

int weir_connection_set_addresses(weir_connection_t *c, const struct sockaddr *client,
                                  const struct sockaddr *server)
{
    if ((client && client->sa_family != AF_INET && client->sa_family != AF_INET6) ||
        (server && server->sa_family != AF_INET && server->sa_family != AF_INET6))
        return -1;
    if (client)
        set_addr(&c->peer, client);
    if (server)
        set_addr(&c->local, server);
    return 0;
}

static struct conn_extra *extra_of(weir_connection_t *c)
{
    if (!c->extra)
        c->extra = calloc(1, sizeof(*c->extra));
    return c->extra;
}

void *weir_connection_ctx(const weir_connection_t *c, const weir_module_t *m)
{
    if (!c->extra || !c->extra->ctx)
        return NULL;
    for (size_t i = 0; i < c->cf->nmodules; i++)
        if (c->cf->modules[i].desc == m)
            return c->extra->ctx[i];
    return NULL;
}

int weir_connection_set_ctx(weir_connection_t *c, const weir_module_t *m, void *ctx)
{
    struct conn_extra *x = extra_of(c);
    if (!x)
        return -1;
    if (!x->ctx && !(x->ctx = calloc(c->cf->nmodules + 1, sizeof(void *))))
        return -1;
    for (size_t i = 0; i < c->cf->nmodules; i++) {
        if (c->cf->modules[i].desc == m) {
            x->ctx[i] = ctx;
            return 0;
        }
    }
    return -1;
}

int weir_connection_cleanup(weir_connection_t *c, void (*fn)(void *arg), void *arg)
{
    struct conn_extra *x = extra_of(c);
    cleanup_t *e = x ? malloc(sizeof(*e)) : NULL;
    if (!e)
        return -1;
    e->fn = fn;
    e->arg = arg;
    e->next = x->cleanups;
    x->cleanups = e;
    return 0;
}
