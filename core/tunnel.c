#include "tunnel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "reqlog.h"

/* Data flowing from side[i] to side[!i]. */
typedef struct direction {
    char *pending; /* bytes that came before the tunnel (copied), sent first */
    size_t pending_len;
    conn_hold_t hold; /* the source's buffer, while a cut send may still read it */
    unsigned sending : 1, ended : 1;
} direction_t;

typedef struct tunnel {
    conn_t *side[2]; /* 0: client, 1: upstream */
    direction_t dir[2];
    uint64_t idle_ms;
    unsigned closing : 1, released;
} tunnel_t;

static const conn_handler_t tunnel_handler;

static int side_of(const tunnel_t *t, const conn_t *c)
{
    return t->side[1] == c;
}

static void touch(tunnel_t *t)
{
    if (!t->closing)
        conn_timer(t->side[0], CONN_TIMER_READ, t->idle_ms);
}

/* Both connections go; a buffer whose bytes a send in flight on the other
 * side still reads is kept until that side is released. */
static void tunnel_close(tunnel_t *t, unsigned how)
{
    if (t->closing)
        return;
    t->closing = 1;
    for (int i = 0; i < 2; i++)
        if (t->dir[i].sending)
            t->dir[i].hold = conn_take_input(t->side[i]);
    conn_close(t->side[0], how);
    conn_close(t->side[1], how);
}

static void maybe_done(tunnel_t *t)
{
    if (t->dir[0].ended && t->dir[1].ended && !t->dir[0].sending && !t->dir[1].sending)
        tunnel_close(t, 0);
}

static void read_from(tunnel_t *t, int i)
{
    if (!t->dir[i].ended && !t->closing)
        conn_read(t->side[i]);
}

/* Sends n bytes that came from side i to the other side. */
static int forward(tunnel_t *t, int i, const char *data, size_t n)
{
    conn_t *dst = t->side[!i];
    wireq_t *q = conn_wq(dst);
    if (!q || wq_add(q, data, n) < 0)
        return -1;
    t->dir[i].sending = 1;
    conn_send(dst);
    return 0;
}

static void on_read(conn_t *c, long n, const char *data)
{
    tunnel_t *t = c->owner;
    int i = side_of(t, c);
    if (n < 0) {
        tunnel_close(t, CONN_ABORT);
        return;
    }
    touch(t);
    if (n == 0) { /* a half-close, passed on once what came before is sent */
        t->dir[i].ended = 1;
        conn_shutdown_write(t->side[!i]);
        maybe_done(t);
        return;
    }
    if (forward(t, i, data, (size_t)n) < 0) {
        conn_read_done(c);
        tunnel_close(t, CONN_ABORT);
    }
}

/* A send on side j completed: the bytes came from side !j. */
static void on_sent(conn_t *c, int res)
{
    tunnel_t *t = c->owner;
    int j = side_of(t, c), i = !j;
    direction_t *d = &t->dir[i];
    d->sending = 0;
    if (d->pending) {
        free(d->pending);
        d->pending = NULL;
    } else {
        conn_read_done(t->side[i]);
    }
    if (res < 0) {
        tunnel_close(t, CONN_ABORT);
        return;
    }
    touch(t);
    read_from(t, i);
    maybe_done(t);
}

static void on_timeout(conn_t *c, int which)
{
    tunnel_t *t = c->owner;
    (void)which;
    reqlog(NULL, t->side[0], WEIR_LOG_INFO, "client %llu: tunnel_timeout; closing the tunnel",
           (unsigned long long)t->side[0]->id);
    tunnel_close(t, CONN_ABORT);
}

static void on_release(conn_t *c)
{
    tunnel_t *t = c->owner;
    int j = side_of(t, c);
    /* the send on side j is done: the buffer it read from side !j may go */
    conn_hold_release(&t->dir[!j].hold);
    if (++t->released < 2)
        return;
    for (int i = 0; i < 2; i++) {
        free(t->dir[i].pending);
        conn_hold_release(&t->dir[i].hold);
    }
    free(t);
}

static const conn_handler_t tunnel_handler = {
    .read = on_read,
    .sent = on_sent,
    .timeout = on_timeout,
    .release = on_release,
};

static int copy_pending(direction_t *d, const char *p, size_t n)
{
    d->hold = (conn_hold_t){.bid = -1};
    if (!n)
        return 0;
    d->pending = malloc(n);
    if (!d->pending)
        return -1;
    memcpy(d->pending, p, n);
    d->pending_len = n;
    return 0;
}

int tunnel_start(conn_t *client, const char *to_up, size_t to_up_len, conn_t *up,
                 const char *to_client, size_t to_client_len, uint64_t idle_ms)
{
    tunnel_t *t = calloc(1, sizeof(*t));
    if (!t)
        return -1;
    if (copy_pending(&t->dir[0], to_up, to_up_len) < 0 ||
        copy_pending(&t->dir[1], to_client, to_client_len) < 0) {
        free(t->dir[0].pending);
        free(t);
        return -1;
    }
    t->side[0] = client;
    t->side[1] = up;
    t->idle_ms = idle_ms;
    conn_timer(client, CONN_TIMER_WRITE, 0);
    conn_timer(up, CONN_TIMER_READ, 0);
    conn_timer(up, CONN_TIMER_WRITE, 0);
    conn_set_handler(client, &tunnel_handler, t);
    conn_set_handler(up, &tunnel_handler, t);
    touch(t);
    for (int i = 0; i < 2; i++) {
        direction_t *d = &t->dir[i];
        if (!d->pending) {
            read_from(t, i);
        } else if (forward(t, i, d->pending, d->pending_len) < 0) {
            tunnel_close(t, CONN_ABORT);
            break;
        }
    }
    return 0;
}
