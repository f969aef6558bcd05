/*
 * Module tls, internal interface between its files:
 *   tls.c        descriptor, directives, accept and upstream hooks, zones
 *   tls_conf.c   the `tls:` mappings of listeners and upstreams -> SSL_CTX
 *   transport.c  the transport: OpenSSL over memory, no socket BIO
 *   tls_vars.c   $ssl_* variables
 *   sni.c, tickets.c, session_cache.c   see their headers
 */
#ifndef WEIR_TLS_H
#define WEIR_TLS_H

#include <stdint.h>

#include <openssl/ssl.h>
#include <weir/module.h>

#include "sni.h"
#include "session_cache.h"
#include "tickets.h"

WEIR_MODULE_EXPORT extern const weir_module_t weir_module;

enum { VERIFY_OFF, VERIFY_OPTIONAL, VERIFY_ON };

/* A listener's TLS: one SSL_CTX per certificate name set (an RSA and an
 * ECDSA certificate for the same names share one, and OpenSSL picks by the
 * client's signature algorithms), chosen by SNI. */
typedef struct tls_server {
    SSL_CTX **ctx; /* ctx[0] is the default */
    size_t nctx;
    sni_index_t sni;
    unsigned char alpn[64]; /* wire format, in preference order */
    size_t alpn_len;
    uint64_t handshake_timeout; /* 0: client_header_timeout */
    int verify_client;
    int tickets;
} tls_server_t;

/* An upstream's TLS. Sessions are resumed per server: each worker keeps
 * the last session a server gave it (with the name it was made for). */
typedef struct tls_client {
    SSL_CTX *ctx;
    weir_template_t *sni; /* NULL: the server's host */
    int verify;
    const weir_upstream_t *u; /* set at conf_done */
    const char *name; /* the upstream's */
    size_t npeers;
    char **peer_host;         /* host part of each server's address; NULL for unix */
    SSL_SESSION **session;    /* per worker (copy-on-write after fork) */
    char **session_name;
} tls_client_t;

typedef struct tls_listener_conf {
    tls_server_t *tls;
} tls_listener_conf_t;

typedef struct tls_upstream_conf {
    tls_client_t *tls;
} tls_upstream_conf_t;

/* The shared state of every server SSL_CTX: ticket keys and session cache. */
extern ticket_ring_t tls_tickets;
extern scache_t *tls_scache;

/* tls_conf.c: directive parsers (WEIR_DIRECTIVE_CUSTOM into a pointer). */
int tls_parse_listener(weir_conf_t *cf, const weir_node_t *node, void *field);
int tls_parse_upstream(weir_conf_t *cf, const weir_node_t *node, void *field);
void tls_server_free(void *srv);
void tls_client_free(void *cl);

/* server.c: the callbacks of a listener's SSL_CTX (SNI, ALPN, tickets,
 * shared session cache, client certificates). 0, or -1. */
int tls_server_ctx_setup(SSL_CTX *ctx, tls_server_t *srv);
/* client.c */
int tls_client_ctx_setup(SSL_CTX *ctx, tls_client_t *cl);
int tls_upstream_connect(weir_request_t *r, weir_connection_t *c);
weir_result_t tls_upstream_request(weir_request_t *r);
/* The name a request's upstream connection verifies and sends as SNI (the
 * sni template, else the server's host; NULL for none), in r's arena. */
const char *tls_upstream_name(weir_request_t *r, tls_client_t *cl);

/* transport.c */
typedef struct tls_conn tls_conn_t;
extern const weir_transport_t tls_transport;
/* A transport state for a new server (c a client connection) or client (an
 * upstream connection) SSL. NULL when memory is short. */
tls_conn_t *tls_conn_server(const tls_server_t *srv, weir_connection_t *c);
/* alpn: the protocol offered to the server ("h2" for a protocol: h2
 * upstream), NULL for the context's http/1.1. */
tls_conn_t *tls_conn_client(tls_client_t *cl, size_t peer, const char *name, const char *alpn,
                            weir_connection_t *c);
SSL *tls_conn_ssl(const tls_conn_t *t);
tls_client_t *tls_conn_client_of(const tls_conn_t *t);
size_t tls_conn_peer(const tls_conn_t *t);
const char *tls_conn_name(const tls_conn_t *t);

/* tls_vars.c */
int tls_vars_register(weir_conf_t *cf);

/* The OpenSSL error queue as one line ("reason: reason"), emptied. */
const char *tls_errors(char *buf, size_t cap);

#endif
