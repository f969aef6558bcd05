/*
 * The downstream interface: how the upstream side of an exchange (proxy.c)
 * and weir's own answers (errpage.c) talk to the protocol that carries the
 * request, whatever it is. HTTP/1 (h1_server.c) implements it today; an
 * HTTP/2 stream will implement the same operations, so the proxy and the
 * answers never learn which protocol they serve.
 *
 * One exchange is one request and its response: r->ds is the protocol's
 * table, r->ds_ctx its state for this exchange.
 *
 * Back-pressure, and what bounds memory, case by case:
 *
 *  - HTTP/1, plain. A receive lands in one of the ring's provided buffers
 *    (16 KiB); the body is decoded in place and the slices are sent on the
 *    other side straight from that buffer. The buffer goes back to the ring
 *    when that send completes, and only then is the source read again
 *    (read_body on the request side, the upstream receive on the response
 *    side). So each direction of an exchange holds at most one buffer, and
 *    the worker's fixed pool (128 x 16 KiB) bounds all receive memory: when
 *    it is empty, receives wait for a buffer instead of failing. A head is
 *    copied into a per-connection buffer that grows to the head limit and is
 *    freed between requests.
 *
 *  - HTTP/1 over a transport. The same rule on the connection's own
 *    plaintext buffer (conn.c): the transport's read() fills it, the owner
 *    holds it until it is done, and nothing more is read meanwhile. The
 *    transport takes the plaintext of a send at once and the completion
 *    waits until its wire bytes (one 16 KiB wire buffer per connection) are
 *    sent, so a slow client stops the upstream reads the same way.
 *
 *  - HTTP/2 streams (h2_server.c). The connection is always read (control
 *    frames must flow); a stream's DATA is copied into a buffer capped by
 *    the window weir advertised, and WINDOW_UPDATE goes out only when the
 *    upstream took the bytes (read_body releases them). Response slices are
 *    copied into the stream's own buffer at once, so no stream pins a
 *    provided buffer whatever its window; while that copy is not all framed
 *    (the client's window is zero) hold() keeps the upstream unread, with
 *    send_timeout as the limit.
 *
 *  - Tunnels (after a 101). One bounded buffer per direction, the same
 *    provided-buffer rule: a direction reads again only when its last bytes
 *    were sent on; a half-close is passed on; tunnel_timeout ends an idle
 *    tunnel.
 *
 *  - Full duplex. The request body pump (client -> upstream) and the
 *    response pump (upstream -> client) run at once, each under the rule
 *    above and each with its own timer, so an exchange holds at most two
 *    buffers.
 */
#ifndef WEIR_DOWNSTREAM_H
#define WEIR_DOWNSTREAM_H

#include "conn.h"
#include "request.h"

typedef void (*exchange_fn)(weir_request_t *r);

/* What the response head says about the body that follows. */
typedef struct response_start {
    weir_str_t reason;    /* may be empty: the standard phrase */
    body_kind_t body;     /* NONE: no body bytes follow */
    uint64_t length;      /* BODY_LENGTH: exact */
    /* BODY_NONE: a Content-Length to state anyway (HEAD, 304), else -1 */
    int64_t advertised;
    weir_str_t upgrade; /* 101: the protocol switched to */
} response_start_t;

typedef struct downstream {
    /* Queues the response head for r->status and r->resp_headers; it goes
     * out with the first send_body. 0, or -1 when it cannot be written (a
     * module set an invalid header) and nothing was queued. */
    int (*start_response)(weir_request_t *r, const response_start_t *rs);
    /* Sends body slices (n may be 0, to push the head alone); last: the body
     * ends here. done(r) comes when the slices' memory may be reused. */
    void (*send_body)(weir_request_t *r, const weir_str_t *s, size_t n, int last,
                      exchange_fn done);
    /* The response is complete (after the last done): log, then the next
     * request or the close the protocol requires. */
    void (*finish)(weir_request_t *r);
    /* The response is cut short or cannot be sent: the client must see the
     * failure (HTTP/1: close without the last chunk). r is done with. */
    void (*abort)(weir_request_t *r);
    /* Delivers the next request body slices to r->body.sink, releasing those
     * delivered before. */
    void (*read_body)(weir_request_t *r);
    /* No more request body is wanted (the response ended first); releases
     * what is held. The protocol then closes or lingers as it must. */
    void (*stop_body)(weir_request_t *r);
    /* Whether any of the response went out: then weir cannot answer in its
     * place any more. */
    int (*head_sent)(const weir_request_t *r);
    /* After a 101 was queued by start_response: the client connection becomes
     * a byte tunnel to up; pending[0..len) are bytes up already sent past
     * the 101 head (copied). 0, or -1 (nothing changed). */
    int (*tunnel)(weir_request_t *r, conn_t *up, const char *pending, size_t len,
                  uint64_t idle_ms);
    /* Optional. After a send_body's done: whether the protocol must hold the
     * next slices back (an HTTP/2 stream at a zero window keeps a copy of
     * what it could not send yet). When it returns 1 the upstream is not
     * read until resume(r) comes. */
    int (*hold)(weir_request_t *r, exchange_fn resume);
} downstream_t;

/* A request whose client left while a handler held it suspended: the
 * handler's resume then goes nowhere and frees it (downstream.c). */
extern const downstream_t downstream_orphan;
void downstream_orphan_request(weir_request_t *r);

#endif
