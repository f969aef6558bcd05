/*
 * Module tls: HTTPS listeners (certificates by SNI, ALPN, session
 * resumption on every worker and across reloads, client certificates) and
 * TLS to upstreams (SNI, verification, client certificates, resumption).
 * The keys are described in tls_conf.c; the transport in transport.c.
 *
 * Listener side: an accept-phase handler attaches the transport to every
 * connection of a `tls:` listener, so the core runs the handshake (limited
 * by handshake_timeout) before HTTP reads a byte. Garbage instead of a
 * ClientHello, a fatal alert or a stalled handshake closes the connection
 * with nothing forwarded; plain HTTP on the port gets nginx's 400 "The plain
 * HTTP request was sent to HTTPS port" in clear text, then the close.
 * Renegotiation is refused (SSL_OP_NO_RENEGOTIATION): weir answers a
 * renegotiating ClientHello with a no_renegotiation warning alert and starts
 * no new handshake; OpenSSL clients then give the connection up.
 *
 * Upstream side: the upstream_connect hook attaches a client transport; a
 * failed handshake or verification is a 502 with a log line that says why,
 * and a passive failure of that server.
 *
 * Shared state: the ticket secret and the session cache live in shared
 * zones with fixed names and sizes, so every worker and every later
 * generation (a reload) sees the same ones; nothing is written to them from
 * the master after the zone's creation.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "tls.h"

#define TICKET_ZONE "tls.ticket_secret.v1"
#define SCACHE_ZONE "tls.session_cache.v1"

/* The TLS of the listener a client connection came in on, or NULL. */
static const tls_server_t *server_of(const weir_connection_t *c)
{
    const weir_listener_t *l = c ? weir_connection_listener(c) : NULL;
    const tls_listener_conf_t *lc = l ? weir_listener_conf(l, &weir_module) : NULL;
    return lc ? lc->tls : NULL;
}

static weir_result_t on_accept(weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    const tls_server_t *srv = server_of(c);
    if (!srv)
        return WEIR_CONTINUE;
    tls_conn_t *t = tls_conn_server(srv, c);
    if (!t)
        return WEIR_ERROR;
    if (weir_connection_set_transport(c, &tls_transport, t) < 0) {
        tls_transport.free(t);
        weir_log(&weir_module, WEIR_LOG_ERROR,
                 "listener %s: another module already put a transport on the connection",
                 weir_listener_name(weir_connection_listener(c)));
        return WEIR_ERROR;
    }
    weir_connection_set_ctx(c, &weir_module, t);
    weir_connection_set_handshake_timeout(c, srv->handshake_timeout);
    return WEIR_CONTINUE;
}

/* verify_client optional lets a client whose certificate failed
 * verification finish its handshake (so the failure can be logged); its
 * requests are answered 400 here, before routing, and never forwarded:
 * nginx's "The SSL certificate error". */
static weir_result_t on_request(weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    const tls_server_t *srv = server_of(c);
    if (!srv || srv->verify_client != VERIFY_OPTIONAL)
        return WEIR_CONTINUE;
    tls_conn_t *t = weir_connection_ctx(c, &weir_module);
    SSL *ssl = t ? tls_conn_ssl(t) : NULL;
    long v = ssl && SSL_get0_peer_certificate(ssl) ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (v == X509_V_OK)
        return WEIR_CONTINUE;
    weir_request_log(r, &weir_module, WEIR_LOG_INFO,
                     "client %llu: client certificate did not verify: %s",
                     (unsigned long long)weir_connection_id(c), X509_verify_cert_error_string(v));
    if (weir_respond(r, 400, WEIR_STR("The SSL certificate error\n")) < 0)
        return WEIR_ERROR;
    return WEIR_RESPOND;
}

static int conf_init(weir_conf_t *cf)
{
    return tls_vars_register(cf);
}

/* Session IDs are only resumed on the listener that made them: the ID
 * context is the listener's name, the same in every worker and generation. */
static int listeners_done(weir_conf_t *cf)
{
    int any = 0;
    for (size_t i = 0; i < weir_conf_listener_count(cf); i++) {
        const weir_listener_t *l = weir_conf_listener(cf, i);
        const tls_listener_conf_t *lc = weir_listener_conf(l, &weir_module);
        if (!lc || !lc->tls)
            continue;
        any = 1;
        const char *name = weir_listener_name(l);
        unsigned char sid[SSL_MAX_SID_CTX_LENGTH];
        unsigned len = 0;
        if (!EVP_Digest(name, strlen(name), sid, &len, EVP_sha256(), NULL))
            return weir_conf_error(cf, weir_listener_node(l), "tls: digest failed");
        for (size_t k = 0; k < lc->tls->nctx; k++)
            if (!SSL_CTX_set_session_id_context(lc->tls->ctx[k], sid,
                                                len < sizeof(sid) ? len : sizeof(sid)))
                return weir_conf_error(cf, weir_listener_node(l), "tls: session id context");
    }
    return any;
}

static int zones(weir_conf_t *cf)
{
    unsigned char *secret = weir_shm_zone(cf, TICKET_ZONE, TICKET_SECRET_LEN);
    scache_t *sc = weir_shm_zone(cf, SCACHE_ZONE, sizeof(scache_t));
    if (!secret || !sc)
        return -1;
    if (weir_shm_zone_created(cf, secret) && RAND_priv_bytes(secret, TICKET_SECRET_LEN) != 1)
        return weir_conf_error(cf, NULL, "tls: no random bytes for the ticket secret");
    tls_tickets = (ticket_ring_t){.secret = secret};
    tls_scache = sc;
    return 0;
}

/* The host part of "host:port", "[v6]:port"; NULL for unix sockets. */
static char *host_of(weir_conf_t *cf, const char *addr)
{
    if (strncmp(addr, "unix:", 5) == 0)
        return NULL;
    const char *end;
    if (addr[0] == '[') {
        addr++;
        end = strchr(addr, ']');
    } else {
        end = strrchr(addr, ':');
    }
    size_t len = end ? (size_t)(end - addr) : strlen(addr);
    char *h = weir_conf_alloc(cf, len + 1);
    if (h)
        memcpy(h, addr, len);
    return h;
}

static int upstreams_done(weir_conf_t *cf)
{
    for (size_t i = 0; i < weir_conf_upstream_count(cf); i++) {
        weir_upstream_t *u = weir_conf_upstream(cf, i);
        tls_upstream_conf_t *uc = weir_upstream_conf(u, &weir_module);
        tls_client_t *cl = uc ? uc->tls : NULL;
        if (!cl)
            continue;
        cl->u = u;
        cl->name = weir_upstream_name(u);
        cl->npeers = weir_upstream_peer_count(u);
        cl->peer_host = weir_conf_alloc(cf, (cl->npeers + 1) * sizeof(char *));
        if (!cl->peer_host)
            return -1;
        for (size_t p = 0; p < cl->npeers; p++)
            cl->peer_host[p] = host_of(cf, weir_peer_address(u, p));
    }
    return 0;
}

static int conf_done(weir_conf_t *cf)
{
    int any = listeners_done(cf);
    if (any < 0 || upstreams_done(cf) < 0)
        return -1;
    return any ? zones(cf) : 0;
}

/* Upstream sessions are the worker's own. */
static int worker_init(const weir_conf_t *cf)
{
    for (size_t i = 0; i < weir_conf_upstream_count(cf); i++) {
        tls_upstream_conf_t *uc = weir_upstream_conf(weir_conf_upstream(cf, i), &weir_module);
        tls_client_t *cl = uc ? uc->tls : NULL;
        if (!cl)
            continue;
        cl->session = calloc(cl->npeers + 1, sizeof(*cl->session));
        cl->session_name = calloc(cl->npeers + 1, sizeof(*cl->session_name));
        if (!cl->session || !cl->session_name)
            return -1;
    }
    return 0;
}

static void worker_exit(const weir_conf_t *cf)
{
    for (size_t i = 0; i < weir_conf_upstream_count(cf); i++) {
        tls_upstream_conf_t *uc = weir_upstream_conf(weir_conf_upstream(cf, i), &weir_module);
        tls_client_t *cl = uc ? uc->tls : NULL;
        if (!cl || !cl->session)
            continue;
        for (size_t p = 0; p < cl->npeers; p++) {
            SSL_SESSION_free(cl->session[p]);
            free(cl->session_name[p]);
        }
        free(cl->session);
        free(cl->session_name);
        cl->session = NULL;
        cl->session_name = NULL;
    }
}

static const weir_directive_t directives[] = {
    {.key = "tls",
     .scopes = WEIR_SCOPE_LISTENER,
     .type = WEIR_DIRECTIVE_CUSTOM,
     .offset = offsetof(tls_listener_conf_t, tls),
     .size = sizeof(tls_server_t *),
     .parse = tls_parse_listener,
     .help = "{certificates: [{cert, key}], protocols, ciphers, alpn, client_ca, ...}"},
    {.key = "tls",
     .scopes = WEIR_SCOPE_UPSTREAM,
     .type = WEIR_DIRECTIVE_CUSTOM,
     .offset = offsetof(tls_upstream_conf_t, tls),
     .size = sizeof(tls_client_t *),
     .parse = tls_parse_upstream,
     .help = "true, or {sni, verify, ca, cert, key}"},
    {.key = NULL},
};

static const weir_handler_t handlers[] = {
    /* after modules that read bytes before TLS (a PROXY header) */
    {.name = "tls.accept", .phase = WEIR_PHASE_ACCEPT, .priority = WEIR_PRIORITY_LATE,
     .fn = on_accept},
    {.name = "tls.client_verify", .phase = WEIR_PHASE_REQUEST, .priority = WEIR_PRIORITY_FIRST,
     .fn = on_request},
    {.name = "tls.upstream_name", .phase = WEIR_PHASE_UPSTREAM_REQUEST,
     .priority = WEIR_PRIORITY_LATE, .fn = tls_upstream_request},
    {.name = NULL},
};

WEIR_MODULE_EXPORT const weir_module_t weir_module = {
    WEIR_MODULE_HEADER,
    .name = "tls",
    .version = "1.0.0",
    .conf_size = {[WEIR_SCOPE_INDEX_LISTENER] = sizeof(tls_listener_conf_t),
                  [WEIR_SCOPE_INDEX_UPSTREAM] = sizeof(tls_upstream_conf_t)},
    .directives = directives,
    .handlers = handlers,
    .conf_init = conf_init,
    .conf_done = conf_done,
    .worker_init = worker_init,
    .worker_exit = worker_exit,
    .upstream_connect = tls_upstream_connect,
};
