/*
 * The output side of an nghttp2 session on a connection, shared by the
 * HTTP/2 server (h2_server.c) and the HTTP/2 upstream side (h2_client.c):
 * frames are pulled from the session into one buffer, at most H2_WIRE_MAX
 * bytes a round, and sent; the next round waits for that send, so a peer
 * that does not read stops the pulls and nghttp2's own limits see its queue
 * grow. The buffer exists only while there is something to send.
 */
#ifndef WEIR_H2_WIRE_H
#define WEIR_H2_WIRE_H

#include <nghttp2/nghttp2.h>
#include <stddef.h>

#include "conn.h"

#define H2_WIRE_MAX (64u * 1024)

typedef struct h2_wire {
    char *out;
    size_t len, cap;
    unsigned sending : 1;
} h2_wire_t;

/* 1: a send was started (the connection's write timer runs timeout_ms);
 * 0: nothing to send (or a send is already in flight); -1: nghttp2 or
 * memory failed (logged), the caller closes. */
int h2_wire_flush(h2_wire_t *w, nghttp2_session *ng, conn_t *c, uint64_t timeout_ms);
/* The send completed: the buffer may be refilled. */
void h2_wire_sent(h2_wire_t *w, conn_t *c);
void h2_wire_free(h2_wire_t *w);

#endif
