/*
 * The accept pipeline: an accepted socket becomes a connection, runs the
 * accept phase chain (a module may refuse it, set its addresses or attach a
 * transport), the transport's handshake, then the protocol choice, then the
 * protocol. Protocol choice is HTTP/1 today; ALPN (a TLS transport names
 * the protocol it agreed) and the h2c prior-knowledge preface (listener
 * `http2: true`) are the places HTTP/2 plugs in.
 */
#ifndef WEIR_ACCEPT_H
#define WEIR_ACCEPT_H

#include "conf.h"

/* Takes over fd: 0 when a connection was made (it counts toward the
 * worker's connections until conn_on_client_closed), -1 when it could not
 * be (fd closed). */
int accept_connection(int fd, const weir_listener_t *l, const weir_conf_t *cf);
/* Graceful stop of every protocol (see h1_server_drain). */
void accept_drain(uint64_t idle_grace_ms);

#endif
