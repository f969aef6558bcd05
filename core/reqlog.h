/*
 * Error-log lines about a request or a client connection carry where they
 * come from, in the spirit of nginx's "client: ..., server: ..., request:
 * ...": after the message,
 *
 *   , client: 127.0.0.1:54321, request_id: <32 hex>, route: api,
 *     upstream: app (127.0.0.1:9001), request: "GET /path?q HTTP/1.1"
 *
 * (one line). A field that is not known yet is left out: no route before
 * routing, no upstream before balancing, no request line when the head could
 * not be read at all. The client is the address requests see ($remote_addr
 * and $remote_port: the PROXY header's when module proxy_protocol set one),
 * [v6]:port for IPv6, "unix:" for a unix socket. The request line is $request
 * ("GET /p HTTP/2.0" for an HTTP/2 stream), or the first line as received for
 * a head that could not be parsed, quoted: control characters, bytes from
 * 0x80, '"' and '\' escaped (log.h, log_escape), at most REQLOG_REQUEST_MAX
 * bytes between the quotes, then "..." when it was cut. A line about a
 * connection without a request (an HTTP/2 connection error, a TLS handshake
 * that failed, a timeout between requests) carries the client only.
 *
 * Every such line of the core and of modules (weir_request_log,
 * weir_connection_log) is written here. The level is checked before the
 * context is formatted, and the context is built in a stack buffer: a
 * filtered-out line costs one comparison, a written one no allocation.
 */
#ifndef WEIR_REQLOG_H
#define WEIR_REQLOG_H

#include <stdarg.h>
#include <stddef.h>

#include "log.h"
#include "request.h"

struct weir_connection;

#define REQLOG_REQUEST_MAX 256
/* Room for the longest context: names and addresses are bounded too. */
#define REQLOG_CONTEXT_MAX 1024

/* The context of r (r may be NULL: then the client of c, when c is a client
 * connection; c may be NULL too: nothing) into buf, NUL-terminated; returns
 * its length. */
size_t reqlog_context(const weir_request_t *r, struct weir_connection *c, char *buf, size_t cap);

/* log_msg with the context of r (or of the client connection c) appended;
 * who is the module's name, NULL for the core. */
void reqlog_v(const char *who, const weir_request_t *r, struct weir_connection *c,
              weir_log_level_t level, const char *fmt, va_list ap);
void reqlog(const weir_request_t *r, struct weir_connection *c, weir_log_level_t level,
            const char *fmt, ...) WEIR_PRINTF(4, 5);

#endif
