/*
 * The HTTP/1 server: requests read from a client connection, one exchange at
 * a time (pipelined requests wait in the input buffer), each answered
 * through the downstream interface it implements (downstream.h).
 */
#ifndef WEIR_H1_SERVER_H
#define WEIR_H1_SERVER_H

#include "conn.h"

/* Serves HTTP/1 on c from now on (the accept pipeline chose it); bytes that
 * came before (a transport's leftover) are read first. */
void h1_server_start(conn_t *c);
/* Graceful stop: every connection closes after its next response; idle
 * keepalive connections are closed after idle_grace_ms without a request. */
void h1_server_drain(uint64_t idle_grace_ms);

#endif
