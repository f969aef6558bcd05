/*
 * Outbound connections for modules (weir_conn_*): a socket driven by the
 * worker's ring, one operation at a time, each with its own deadline.
 *
 * A deadline cancels the pending operation; its completion then reports
 * -ETIMEDOUT. weir_conn_close with an operation in flight only cancels it and
 * marks the connection closed: the memory and the descriptor are released
 * when the cancelled completion arrives. A receive lands in a buffer the
 * connection owns and is copied to the caller's on completion, so the
 * caller's buffer is never written after a close.
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf.h"
#include "loop.h"
#include "vg_mem.h"

enum conn_op { OP_NONE, OP_CONNECT, OP_SEND, OP_RECV };

struct weir_conn {
    loop_op_t op;
    struct timer timer;
    int fd;
    enum conn_op pending;
    int timed_out;
    int closed;
    const char *data; /* send: the rest to go */
    size_t left, sent;
    char *user_buf; /* recv: where the caller wants the bytes */
    char *rbuf;     /* recv: where the kernel writes them */
    size_t rcap;
    struct sockaddr_storage sa;
    socklen_t salen;
    weir_conn_fn fn;
    void *arg;
};

static void conn_release(weir_conn_t *c)
{
    timer_detach(g_loop, &c->timer);
    if (c->fd >= 0) {
        struct io_uring_sqe *sqe = loop_sqe(g_loop);
        io_uring_prep_close(sqe, c->fd);
        loop_prep_op(sqe, NULL);
    }
    free(c->rbuf);
    free(c);
}

static void conn_submit(weir_conn_t *c)
{
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    switch (c->pending) {
    case OP_CONNECT:
        io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&c->sa, c->salen);
        break;
    case OP_SEND:
        io_uring_prep_send(sqe, c->fd, c->data, c->left, MSG_NOSIGNAL);
        break;
    case OP_RECV:
        io_uring_prep_recv(sqe, c->fd, c->rbuf, c->left, 0);
        break;
    case OP_NONE:
        break;
    }
    loop_prep_op(sqe, &c->op);
}

static void conn_deadline(struct timer *t)
{
    weir_conn_t *c = (weir_conn_t *)((char *)t - offsetof(weir_conn_t, timer));
    if (c->pending == OP_NONE)
        return;
    c->timed_out = 1;
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_cancel(sqe, &c->op, 0);
    loop_prep_op(sqe, NULL);
}

static void conn_complete(loop_op_t *op, int res, unsigned flags)
{
    (void)flags;
    weir_conn_t *c = (weir_conn_t *)op;
    enum conn_op what = c->pending;
    if (c->closed) {
        conn_release(c);
        return;
    }
    if (what == OP_SEND && res > 0 && (size_t)res < c->left && !c->timed_out) {
        c->data += res;
        c->left -= (size_t)res;
        c->sent += (size_t)res;
        conn_submit(c);
        return;
    }
    timer_cancel(g_loop, &c->timer);
    c->pending = OP_NONE;
    long result = res;
    if (c->timed_out && (res == -ECANCELED || res == -EINTR || res == -EALREADY))
        result = -ETIMEDOUT;
    else if (what == OP_SEND && res >= 0)
        /* short only when the deadline cut it (or the socket took nothing) */
        result = (size_t)res < c->left ? (c->timed_out ? -ETIMEDOUT : -EPIPE)
                                       : (long)(c->sent + (size_t)res);
    else if (what == OP_RECV && res > 0) {
        WEIR_MEM_DEFINED(c->rbuf, (size_t)res); /* the kernel wrote them: see vg_mem.h */
        memcpy(c->user_buf, c->rbuf, (size_t)res);
    }
    c->timed_out = 0;
    c->fn(c, result, c->arg);
}

static int conn_start(weir_conn_t *c, enum conn_op what, const void *data, size_t len,
                      uint64_t timeout_ms, weir_conn_fn fn, void *arg)
{
    if (c->pending != OP_NONE || c->closed)
        return -1;
    c->pending = what;
    c->data = data;
    c->left = len;
    c->sent = 0;
    c->fn = fn;
    c->arg = arg;
    if (timeout_ms)
        timer_after(g_loop, &c->timer, timeout_ms);
    conn_submit(c);
    return 0;
}

weir_conn_t *weir_conn_connect(const struct sockaddr *sa, socklen_t len, uint64_t timeout_ms,
                               weir_conn_fn fn, void *arg)
{
    if (!g_loop || len > sizeof(struct sockaddr_storage)) {
        errno = EINVAL;
        return NULL;
    }
    weir_conn_t *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        int e = errno;
        free(c);
        errno = e;
        return NULL;
    }
    c->op.cb = conn_complete;
    timer_init(&c->timer, conn_deadline);
    memcpy(&c->sa, sa, len);
    c->salen = len;
    conn_start(c, OP_CONNECT, NULL, 0, timeout_ms, fn, arg);
    return c;
}

int weir_conn_send(weir_conn_t *c, const void *data, size_t len, uint64_t timeout_ms,
                   weir_conn_fn fn, void *arg)
{
    return conn_start(c, OP_SEND, data, len, timeout_ms, fn, arg);
}

int weir_conn_recv(weir_conn_t *c, void *buf, size_t len, uint64_t timeout_ms, weir_conn_fn fn,
                   void *arg)
{
    if (c->pending != OP_NONE || c->closed)
        return -1;
    if (len > c->rcap) {
        char *nb = realloc(c->rbuf, len);
        if (!nb)
            return -1;
        c->rbuf = nb;
        c->rcap = len;
    }
    c->user_buf = buf;
    return conn_start(c, OP_RECV, NULL, len, timeout_ms, fn, arg);
}

void weir_conn_close(weir_conn_t *c)
{
    if (!c || c->closed)
        return;
    c->closed = 1;
    timer_cancel(g_loop, &c->timer);
    if (c->pending == OP_NONE) {
        conn_release(c);
        return;
    }
    struct io_uring_sqe *sqe = loop_sqe(g_loop);
    io_uring_prep_cancel(sqe, &c->op, 0);
    loop_prep_op(sqe, NULL);
}
