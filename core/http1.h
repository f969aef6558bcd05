/*
 * HTTP/1 client connections and the proxy path to HTTP/1 upstreams.
 *
 * One request at a time per client connection (pipelined requests wait in
 * the input buffer). Data flow with back-pressure: a receive lands in a
 * provided buffer, is decoded in place and sent on the other side straight
 * from that buffer; the buffer returns to the ring only when that send has
 * completed, and the next receive on the source side is armed only then. So
 * each direction holds at most one 16 KiB buffer per connection, however
 * fast one side and slow the other.
 *
 * Lifetimes: a client owns its current request (r) and, while the request is
 * being proxied, one upstream connection. An object with operations in the
 * ring is freed only when the last completion arrives (inflight == 0).
 */
#ifndef WEIR_HTTP1_H
#define WEIR_HTTP1_H

#include <sys/uio.h>

#include "conf.h"
#include "h1.h"
#include "loop.h"
#include "request.h"

#define SENDQ_SLICES 16
#define SENDQ_IOV (SENDQ_SLICES * 3 + 4)

/* An outgoing vector, resubmitted after short sends. */
typedef struct sendq {
    struct msghdr msg;
    struct iovec iov[SENDQ_IOV];
    int n;       /* iovecs in use */
    int first;   /* first iovec not fully sent */
    size_t left; /* bytes not yet sent */
    char chunk_hdr[SENDQ_SLICES + 1][20];
    int nhdr;
} sendq_t;

void sendq_reset(sendq_t *q);
void sendq_add(sendq_t *q, const void *p, size_t len);
/* Adds body slices, framed as chunks when chunked. */
void sendq_add_body(sendq_t *q, const weir_str_t *s, size_t n, int chunked);
/* Accounts for a completed send of `sent` bytes; 1 when all was sent. */
int sendq_advance(sendq_t *q, size_t sent);
void sendq_submit(sendq_t *q, int fd, loop_op_t *op);

typedef struct upconn upconn_t;

/* A connection's own input bytes (a head being assembled, and what followed
 * it); data[off..len) is unread. Freed while the connection is idle. */
typedef struct inbuf {
    char *data;
    size_t len, cap, off;
} inbuf_t;

int inbuf_append(inbuf_t *b, const char *p, size_t n, size_t initial);
void inbuf_free(inbuf_t *b);

enum client_state {
    C_IDLE,     /* waiting for the first byte of a request (keepalive) */
    C_HEAD,     /* receiving a request head */
    C_PHASES,   /* handlers running (may be suspended) */
    C_UPSTREAM, /* request handed to the upstream side */
    C_BODY,     /* receiving the request body to forward */
    C_RESPONSE, /* sending the response */
    C_CLOSING,
};

typedef struct client {
    loop_op_t recv_op, send_op;
    buf_waiter_t bufwait;
    int fd;
    enum client_state state;
    unsigned inflight;
    unsigned recv_armed : 1, send_armed : 1, closing : 1, close_after : 1, head_sent : 1,
        continue_sent : 1;
    struct timer timer;
    const weir_conf_t *cf;
    const weir_listener_t *listener;
    uint64_t id;
    uint64_t requests;

    inbuf_t in;
    size_t head_len; /* bytes of in[] the current request's head occupies */
    h1_scan_t scan;
    h1_parser_t parser;

    weir_request_t *r;
    weir_request_t *retired; /* closed while a send read from it: freed last */
    h1_request_t req;
    upconn_t *up;
    sendq_t *sq;           /* in the request arena */
    int send_bid;          /* provided buffer the pending send reads from, or -1 */
    int body_done;         /* request body fully read from the client */
    uint64_t body_bytes;   /* decoded request body bytes so far */
    int body_retained;     /* all of the body is in in[] (safe to resend) */
    weir_str_t *body0;     /* body slices found in in[] after the head */
    size_t nbody0;
    h1_framing_t up_framing;   /* framing of the request sent upstream */
    h1_framing_t down_framing; /* framing of the response sent to the client */
    int down_keepalive;
    void (*after_send)(struct client *c);

    sockaddr_any_t peer, local;
    struct client *prev, *next; /* all connections of the worker */
} client_t;

int http1_init(const weir_conf_t *cf);
void http1_accept(int fd, const weir_listener_t *l, const weir_conf_t *cf);
/* Graceful stop: every connection closes after its next response; idle
 * keepalive connections are closed after idle_grace_ms without a request. */
void http1_drain(uint64_t idle_grace_ms);
/* Whether the response to r may leave the connection open: the client
 * wants it, nothing forces a close, the worker is not draining, and
 * keepalive_requests is not reached (so the last response says close). */
int client_may_keep(const client_t *c, const weir_request_t *r);

/* Client-side entry points used by the proxy. */
void client_send_answer(weir_request_t *r);
void client_abort(client_t *c);
void client_finish_request(client_t *c);
void client_read_body(client_t *c);
void client_send(client_t *c, void (*after)(client_t *c));
void client_arm_timer(client_t *c, uint64_t ms);

/* Proxy side (proxy.c). */
int proxy_init(const weir_conf_t *cf);
void proxy_start(weir_request_t *r);
/* The client delivered request body bytes in provided buffer bid (already
 * decoded into slices); forward them, then release the buffer. */
void proxy_forward_body(client_t *c, const weir_str_t *s, size_t n, int bid, int last);
/* The client side's send of response data completed; continue streaming. */
void proxy_response_sent(client_t *c);
/* The client went away or failed: drop the upstream connection. */
void proxy_detach(client_t *c, int reusable);

#endif
