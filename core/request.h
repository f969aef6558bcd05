/*
 * The request object behind weir_request_t, and the phase runner.
 *
 * A request lives in its own arena (recycled through a per-worker cache), so
 * everything a handler allocates dies with it after the log phase. The
 * protocol side (HTTP/1 today, HTTP/2 later) fills the head fields and
 * drives the request through request_run_phases(); modules only see the
 * accessors of include/weir/module.h.
 */
#ifndef WEIR_REQUEST_H
#define WEIR_REQUEST_H

#include <stdint.h>
#include <sys/socket.h>

#include "conf.h"
#include "headers.h"

struct arena;
struct weir_connection;
struct downstream;

/* How a message body is delimited, whatever the protocol. */
typedef enum body_kind {
    BODY_NONE = 0, /* no body */
    BODY_LENGTH,   /* exactly `length` bytes */
    BODY_STREAM,   /* length unknown until it ends (chunked, DATA frames) */
} body_kind_t;

/* The request body as the protocol side reads it and the upstream side
 * forwards it: what came with the head is kept (first[]) so a retry can
 * resend it while it is all of the body (retained). */
typedef struct request_body {
    body_kind_t kind;
    uint64_t length;    /* BODY_LENGTH */
    uint64_t bytes;     /* decoded bytes read so far */
    int done;           /* all of it was read from the client */
    int retained;       /* first[] is all of it */
    weir_str_t *first;  /* slices that came with the head (arena) */
    size_t nfirst;
    /* Set by the upstream side: the protocol delivers body slices here, after
     * downstream read_body; they stay valid until the next read_body or
     * stop_body. last: the body ended with these. */
    void (*sink)(weir_request_t *r, const weir_str_t *s, size_t n, int last);
} request_body_t;

/* What the protocol side does when a phase range has run. */
typedef void (*request_next_fn)(weir_request_t *r);

struct weir_request {
    struct arena *arena;
    unsigned refs; /* the protocol side, and the upstream side while it has
                      operations in flight that read the request's memory */
    const weir_conf_t *cf;
    struct weir_connection *conn;  /* the client connection */
    const struct downstream *ds;   /* the protocol side of this exchange */
    void *ds_ctx;                  /* its per-exchange state */
    const weir_listener_t *listener;
    uint64_t connection_id;
    int tls;
    int stub; /* the accept phase's: a connection, no request (error-log lines
                 about it carry only the client) */

    /* request head */
    weir_str_t method, target, path, query, host;
    weir_str_t host_header; /* value sent upstream as Host (with port); the
                               Host field's own bytes when the client sent one */
    int version;            /* 10, 11 */
    weir_str_t raw_line;    /* a head that could not be parsed: its first line as
                               received (arena), for the error log's request: */
    weir_headers_t headers;
    int keepalive;
    int expect_continue;
    int has_body;
    int te_trailers;          /* the client sent TE: trailers (HTTP/2; gRPC) */
    int upgrade;              /* the client asked to switch protocols */
    weir_str_t upgrade_value; /* its Upgrade field */
    request_body_t body;
    uint64_t request_length; /* bytes of head + body received */

    /* routing and balancing */
    weir_route_t *route;
    weir_upstream_t *upstream;
    int peer;
    unsigned char *tried; /* per peer of upstream, arena */
    unsigned tries;
    weir_str_t pool_key; /* weir_request_set_pool_key */

    /* response */
    int status;
    weir_headers_t resp_headers;
    /* Response trailers (an HTTP/2 upstream's, e.g. grpc-status): an HTTP/2
     * client gets them after the body; HTTP/1 drops them. */
    weir_headers_t resp_trailers;
    int resp_from_upstream;  /* resp_headers are the upstream's response head */
    weir_str_t respond_body; /* for weir_respond */
    int responded;           /* weir_respond was called */
    uint64_t body_bytes_sent;
    int upstream_status;
    const char *upstream_addr;
    uint64_t start_wall_ms;
    uint64_t start_us, connect_us, header_us, response_us; /* monotonic µs */
    uint64_t id_bits[2];   /* random, drawn per request */
    char request_id[33];   /* hex of id_bits, formatted on first use */
    uint64_t connection_requests;

    /* phase runner */
    size_t cursor, cursor_end;
    request_next_fn next; /* continuation after the phase range */
    int suspended;
    void **ctx; /* per module */
};

/* Allocates a request with its own arena from the worker's cache; it holds
 * one reference. */
weir_request_t *request_new(const weir_conf_t *cf);
/* A side that may still read the request's memory after the other let go
 * (a send in flight) takes a reference; request_free drops one and frees the
 * request with the last. */
void request_ref(weir_request_t *r);
void request_free(weir_request_t *r);

/* Runs handlers of phases [first, last] from the start of `first`; calls
 * next(r) when done, or request_answer_fn when a handler answers or fails. */
void request_run_phases(weir_request_t *r, weir_phase_t first, weir_phase_t last,
                        request_next_fn next);
/* Called by the runner when a handler answered (WEIR_RESPOND or WEIR_ERROR,
 * with r->status set); provided by the protocol side. */
extern void (*request_on_answer)(weir_request_t *r);

/* Run the log phase (results ignored). */
void request_run_log(weir_request_t *r);

/* Core handlers (e.g. "core.balance") and core variables, given to conf_load. */
extern const weir_handler_t core_phase_handlers[];
int core_vars_register(weir_conf_t *cf);

/* The balance step, also used for retries: picks a peer not yet tried and
 * marks it tried. -1 when none is usable. */
int request_pick_peer(weir_request_t *r);

/* Passive health (max_fails/fail_timeout) in the generation's shared peer
 * zone (peers.c): the outcome of one connection attempt to peer i. */
void peer_report(const weir_upstream_t *u, size_t i, int ok);

uint64_t now_us(void);

/* $request_id: 32 hex digits, formatted on first use. */
const char *request_id(weir_request_t *r);
/* The same text into out, for a reader that may not write to r. */
void request_id_text(const weir_request_t *r, char out[33]);
/* The client's and the server's address (looked up on first use). */
const struct sockaddr *request_client_addr(const weir_request_t *r);
const struct sockaddr *request_server_addr(const weir_request_t *r);

/* Resolves "." and ".." path segments (also spelled %2e) the way nginx does,
 * so routing, rewrites and the upstream all see the same path; a ".." that
 * climbs above "/" is -400. The original target stays in r->target. */
int request_normalize_path(weir_request_t *r);

#endif
