/*
 * Connections: one socket, client or upstream, and everything about it that
 * is not a protocol. It owns the fd and the addresses, the transport (none is
 * the plain, zero-copy path), the module context slots, one wire send queue
 * and a task for work that has no completion of its own.
 *
 * Whoever uses the connection (the HTTP/1 server, the proxy's upstream side,
 * a tunnel) is its owner and gets its events through a conn_handler_t. The
 * owner may change (HTTP/1 hands its connection to a tunnel); there is one at
 * a time.
 *
 * Input: conn_read() asks for bytes; handler->read(c, n, data) delivers them
 * (n > 0), the end of the stream (0) or an error (< 0). The owner holds the
 * bytes until conn_read_done(): on the plain path they are a provided buffer
 * of the ring, which goes back only then, so a connection holds at most one
 * receive buffer and a fast sender waits for a slow receiver. With a
 * transport the same rule holds for the connection's plaintext buffer.
 *
 * Output: the owner fills conn_wq(c) with iovecs and calls conn_send(); the
 * bytes must stay valid until handler->sent(c, 0), which comes when all of
 * the queue is on the wire (short sends are resubmitted), or (c, -errno). A
 * conn_send while a send is in flight adds to it: sent() comes once for
 * both. With a transport, write() takes the plaintext at once and the
 * completion waits for its wire bytes.
 *
 * Close: conn_close() ends the owner's use at once (no more callbacks except
 * release), then runs transport shutdown, flush, and (CONN_LINGER) a lingering
 * close before the fd is closed: write side shut, input read and discarded
 * until the peer closes, for at most LINGER_TIME_MS in all, LINGER_IDLE_MS
 * between reads, and LINGER_MAX_BYTES, so the client reads the answer
 * instead of a reset. handler->release(c) comes once no operation reads the
 * owner's memory any more (its last send completed); the owner frees its
 * memory there, never earlier. The connection itself is freed after the
 * last completion.
 *
 * Timers: two per connection (CONN_TIMER_READ, CONN_TIMER_WRITE), so the
 * two directions of a full-duplex exchange keep their own deadlines; each
 * fires handler->timeout(c, which).
 */
#ifndef WEIR_CONN_H
#define WEIR_CONN_H

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "conf.h"
#include "loop.h"

/* Lingering close (nginx's lingering_close/lingering_time/lingering_timeout):
 * how long and how much weir reads and discards after answering a client
 * that is still sending. */
#define LINGER_TIME_MS 30000
#define LINGER_IDLE_MS 5000
#define LINGER_MAX_BYTES (8u << 20)

typedef struct weir_connection conn_t;

/* A socket address in 32 bytes: IPv4 or IPv6. For a unix socket only the
 * family is kept (peers of a unix listener have no name worth keeping). */
typedef struct conn_addr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in4;
        struct sockaddr_in6 in6;
    } u;
    socklen_t len; /* 0: not looked up yet */
} conn_addr_t;

/* The wire send queue: iovecs plus a little room for small pieces (chunk
 * sizes, CRLFs) copied in. Taken from a per-worker free list while a send
 * is queued or in flight, so an idle connection holds none. */
#define WQ_IOV 56
#define WQ_SCRATCH 512

typedef struct wireq {
    struct msghdr msg;
    struct iovec iov[WQ_IOV];
    int n, first;  /* in use; first not fully sent */
    int submitted; /* iovecs the send in flight covers */
    size_t left;   /* bytes not yet sent */
    size_t scratch_len;
    char scratch[WQ_SCRATCH];
    struct wireq *next_free;
} wireq_t;

enum { CONN_TIMER_READ, CONN_TIMER_WRITE };

/* Application protocols a transport may report (ALPN). */
enum { CONN_ALPN_NONE, CONN_ALPN_HTTP1, CONN_ALPN_H2 };

typedef struct conn_handler {
    void (*connected)(conn_t *c, int res); /* upstream: connect done (0 or -errno) */
    void (*read)(conn_t *c, long n, const char *data);
    void (*sent)(conn_t *c, int res);
    void (*timeout)(conn_t *c, int which);
    void (*release)(conn_t *c);
} conn_handler_t;

struct conn_plain; /* a transport's plaintext and wire buffers */
struct conn_extra; /* module context slots and cleanups, made on first use */

struct weir_connection {
    int fd;
    unsigned inflight;
    unsigned recv_armed : 1, send_armed : 1, want_read : 1, closing : 1, linger : 1,
        shut_wr : 1, handshaking : 1, eof : 1, upstream : 1, released : 1, freed : 1,
        tr_failed : 1, in_list : 1, connecting : 1, abort : 1, fd_closed : 1, watching : 1,
        unwatched : 1, shut_pending : 1, tr_shut : 1, secure : 1, hs_timed_out : 1, watch_pending : 1;
    int held_bid; /* provided buffer the owner holds, or -1 */
    unsigned char alpn;    /* CONN_ALPN_*: what the transport's handshake chose */
    uint32_t handshake_ms; /* client: handshake limit a module set, 0: client_header_timeout */
    loop_op_t recv_op, send_op;
    buf_waiter_t bufwait;
    loop_task_t task;
    struct timer timers[2];
    const conn_handler_t *h;
    void *owner;
    wireq_t *wq;
    const weir_transport_t *tr;
    void *tr_state;
    struct conn_plain *plain;
    struct conn_extra *extra;
    void (*handshake_done)(conn_t *c, int ok);
    uint64_t id;
    uint64_t linger_until;
    size_t linger_bytes;
    const weir_listener_t *listener; /* NULL for upstream connections */
    const weir_conf_t *cf;
    conn_addr_t peer, local;
    unsigned char addr_set; /* addresses set by a module: no lookup */
    unsigned char mstate;   /* metrics_core.c: how weir_connections counts it */
    struct weir_connection *prev, *next; /* client connections of the worker */
};

/* A client connection for an accepted fd (TCP_NODELAY set for TCP); NULL
 * (fd closed) when memory is short. */
conn_t *conn_accepted(int fd, const weir_listener_t *l, const weir_conf_t *cf);
/* An upstream connection: a new nonblocking socket for family; NULL with
 * errno set. */
conn_t *conn_socket(int family, const weir_conf_t *cf);
/* Starts a connect; handler->connected reports its end. */
void conn_connect(conn_t *c, const struct sockaddr *sa, socklen_t len);

void conn_set_handler(conn_t *c, const conn_handler_t *h, void *owner);

void conn_read(conn_t *c);
void conn_read_done(conn_t *c);
/* An idle connection (in the upstream pool) is watched instead of read:
 * handler->read(c, -EPIPE, NULL) when it becomes readable (the server
 * closed it, or sent bytes nobody asked for), nothing consumed. unwatch
 * ends the watch before the connection is used again; a read asked for
 * meanwhile is armed when the watch is gone. */
void conn_watch(conn_t *c);
void conn_unwatch(conn_t *c);
/* The input the owner holds is still read by a send on another connection
 * while this one closes: the arena (of the request that send serves) takes
 * it over and releases it when freed. 0, or -1 (memory short: the caller
 * must not close before that send completes). */
struct arena;
int conn_hand_over_input(conn_t *c, struct arena *a);
/* The same, for an owner without an arena: the held input becomes a hold
 * the caller releases (conn_hold_release) once that send completed. */
typedef struct conn_hold {
    int bid;   /* a provided buffer, or -1 */
    char *mem; /* a transport's plaintext buffer, or NULL */
} conn_hold_t;
conn_hold_t conn_take_input(conn_t *c);
void conn_hold_release(conn_hold_t *h);

wireq_t *conn_wq(conn_t *c); /* NULL when memory is short */
int wq_add(wireq_t *q, const void *p, size_t len);       /* 0 or -1 (full) */
int wq_copy(wireq_t *q, const void *p, size_t len);      /* into scratch; 0 or -1 */
size_t wq_room(const wireq_t *q);                         /* iovecs left */
int wq_empty(const wireq_t *q);
void conn_send(conn_t *c);
/* Drops what is queued and not yet submitted (an answer that replaces a
 * response in the making). */
void conn_wq_clear(conn_t *c);

/* Runs the transport's handshake, then done(c, 1), or done(c, 0) when it
 * failed (c->hs_timed_out when the limit passed first). Without a
 * transport, done(c, 1) at once. */
void conn_handshake(conn_t *c, uint64_t timeout_ms, void (*done)(conn_t *c, int ok));

void conn_timer(conn_t *c, int which, uint64_t ms); /* 0 disarms */

/* CONN_LINGER: linger (see above) unless the peer already closed.
 * CONN_ABORT: cancel what is in flight instead of flushing it (a response
 * cut short, a timeout). */
#define CONN_LINGER 1u
#define CONN_ABORT 2u
void conn_close(conn_t *c, unsigned how);
/* Half-closes the write side once the queue is sent (tunnels pass a
 * half-close on). */
void conn_shutdown_write(conn_t *c);

/* The addresses, looked up on first use. */
const struct sockaddr *conn_peer(conn_t *c);
const struct sockaddr *conn_local(conn_t *c);

/* Client connections open in this worker, for drain. */
conn_t *conn_first(void);

/* Called (when set) as a client connection is freed: the worker's
 * connection count. Set by the worker; a hook so the layers below never call
 * up into it. */
extern void (*conn_on_client_closed)(void);

#endif
