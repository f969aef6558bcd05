/*
 * HTTP/2 in the core (RFC 9113), on nghttp2: the server side of a client
 * connection (h2_server.c) and the checks a stream's request head must pass
 * before it becomes a request object (h2_request.c).
 *
 * nghttp2 runs with its HTTP messaging checks on, and weir checks every head
 * again itself (h2_request.c), so each rule below holds whatever a future
 * nghttp2 lets through:
 *  - field names are lowercase tchar; values hold no CR, LF or NUL and do
 *    not start or end with whitespace (RFC 9113 §8.2.1);
 *  - connection-specific fields (Connection, Keep-Alive, Proxy-Connection,
 *    Transfer-Encoding, Upgrade) are malformed; TE only as "trailers";
 *  - pseudo-fields: :method, :scheme, :path and :authority only, each at
 *    most once and before every regular field; :method, :scheme and :path
 *    are required (CONNECT, which has neither, is 501 as over HTTP/1);
 *    :path is "/"-rooted request-target bytes ("*" for OPTIONS only);
 *    :scheme is http or https;
 *  - Host comes from :authority; a Host field that disagrees is malformed;
 *    with neither, nghttp2 resets the stream (weir's own check says 400);
 *  - content-length is digits, and one value; it must equal the sum of the
 *    DATA frames (checked as they come, h2_server.c);
 *  - cookie fields are joined with "; " (RFC 9113 §8.2.3) before an HTTP/1
 *    upstream sees them;
 *  - the decoded header list (RFC 9113 size: name + value + 32 per field)
 *    is at most the listener's max_header_size, or the answer is 431.
 * A malformed head is a stream error (RST_STREAM PROTOCOL_ERROR); a head that
 * is well-formed HTTP/2 but not a request weir serves gets its status. In no
 * case does anything reach an upstream.
 */
#ifndef WEIR_H2_H
#define WEIR_H2_H

#include <stddef.h>
#include <stdint.h>

#include "conn.h"
#include "headers.h"

struct arena;

/* The client connection preface (RFC 9113 §3.4). */
#define H2_PREFACE "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define H2_PREFACE_LEN 24

/* A stream error: RST_STREAM with PROTOCOL_ERROR. Other failures are
 * negative HTTP statuses (-400, -431, -501). */
#define H2_MALFORMED (-1)

/* The request head of one stream, collected field by field. Values point
 * into the arena. */
typedef struct h2_head {
    weir_str_t method, scheme, authority, path;
    weir_str_t host; /* a Host field, if one came */
    weir_headers_t fields; /* regular fields in order; cookies are joined
                              into one field by h2_head_finish */
    weir_str_t cookie;
    int64_t content_length; /* -1: none */
    size_t list_size;
    unsigned pseudo_seen;
    unsigned regular_seen : 1, cookies : 1, te_trailers : 1;
    int error; /* the first failure; later fields are ignored */
} h2_head_t;

/* Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade
 * (RFC 9113 §8.2.2), in any case. */
int h2_connection_specific(weir_str_t name);

void h2_head_init(h2_head_t *h);
/* One decoded field, copied into a. Returns h->error (0 while all is well). */
int h2_head_field(struct arena *a, h2_head_t *h, weir_str_t name, weir_str_t value,
                  size_t max_list_size);
/* The block ended: the checks that need all of it. 0 or the error. */
int h2_head_finish(struct arena *a, h2_head_t *h);

/* Starts HTTP/2 on an accepted client connection whose protocol is h2 (by
 * ALPN, or the preface seen on an http2: true listener); seen[0..len) are
 * bytes already read from it (the start of the preface). */
void h2_server_start(conn_t *c, const char *seen, size_t len);
/* The worker drains: every HTTP/2 connection gets a shutdown notice (GOAWAY
 * with the highest stream id), then, idle_grace_ms later, a GOAWAY with the
 * last stream it took; in-flight streams finish, and each connection closes
 * when its last stream has. */
void h2_server_drain(uint64_t idle_grace_ms);

#endif
