/*
 * A byte tunnel between two connections, after a 101 Switching Protocols:
 * what one side sends goes to the other, unchanged, until both have ended.
 *
 * Back-pressure and memory: each direction holds at most one receive buffer
 * (a provided buffer, or a transport's plaintext buffer), sent on from where
 * it landed; the source is read again only when that send completed. An
 * end of stream from one side is passed on as a half-close (shutdown of the
 * other side's write half) once what came before it is sent; the tunnel
 * ends when both directions ended, on an error, or after idle_ms without a
 * byte either way (tunnel_timeout). A draining worker keeps its tunnels
 * until shutdown_timeout ends the process.
 */
#ifndef WEIR_TUNNEL_H
#define WEIR_TUNNEL_H

#include "conn.h"

/* Takes over both connections (their handlers); the pending bytes (copied)
 * go out first: to_up to the upstream, to_client to the client. 0, or -1
 * (nothing changed) when memory is short. */
int tunnel_start(conn_t *client, const char *to_up, size_t to_up_len, conn_t *up,
                 const char *to_client, size_t to_client_len, uint64_t idle_ms);

#endif
