/*
 * The upstream side: a TLS transport on each new upstream connection of an
 * upstream with `tls:`, the server's name sent and verified, and sessions
 * resumed per server.
 *
 * The name is the sni template rendered for the request, else the host of
 * the server's address as written (an IP literal is verified as an IP and
 * sent as no SNI). When the template has variables, connections made for
 * different names must not be shared: the name becomes the pool key, so a
 * pooled connection only serves requests that would have made the same one.
 */
#include <stdlib.h>
#include <string.h>

#include "tls.h"

static int on_client_session(SSL *ssl, SSL_SESSION *sess)
{
    tls_conn_t *t = SSL_get_app_data(ssl);
    tls_client_t *cl = t ? tls_conn_client_of(t) : NULL;
    size_t peer = t ? tls_conn_peer(t) : 0;
    const char *name = t ? tls_conn_name(t) : NULL;
    if (!cl || !cl->session || peer >= cl->npeers || !name)
        return 0;
    char *copy = strdup(name);
    if (!copy)
        return 0;
    if (cl->session[peer])
        SSL_SESSION_free(cl->session[peer]);
    free(cl->session_name[peer]);
    cl->session[peer] = sess;
    cl->session_name[peer] = copy;
    return 1; /* we keep the reference */
}

int tls_client_ctx_setup(SSL_CTX *ctx, tls_client_t *cl)
{
    (void)cl;
    static const unsigned char http11[] = "\x08http/1.1";
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_client_session);
    return SSL_CTX_set_alpn_protos(ctx, http11, sizeof(http11) - 1) == 0 ? 0 : -1;
}

static const char *tls_upstream_name_of_peer(const weir_request_t *r, const tls_client_t *cl)
{
    int peer = weir_request_peer(r);
    return peer >= 0 && (size_t)peer < cl->npeers ? cl->peer_host[peer] : NULL;
}

const char *tls_upstream_name(weir_request_t *r, tls_client_t *cl)
{
    if (cl->sni) {
        weir_str_t s;
        if (weir_template_render(r, cl->sni, &s) < 0)
            return NULL;
        if (s.len == 0) /* an empty name is no name: the server's host then */
            return tls_upstream_name_of_peer(r, cl);
        char *z = weir_request_alloc(r, s.len + 1);
        if (!z)
            return NULL;
        memcpy(z, s.data, s.len);
        return z;
    }
    return tls_upstream_name_of_peer(r, cl);
}

static tls_client_t *client_of(const weir_request_t *r)
{
    const weir_upstream_t *u = weir_request_upstream(r);
    const tls_upstream_conf_t *uc = u ? weir_upstream_conf(u, &weir_module) : NULL;
    return uc ? uc->tls : NULL;
}

weir_result_t tls_upstream_request(weir_request_t *r)
{
    tls_client_t *cl = client_of(r);
    if (!cl || !cl->sni || weir_template_is_literal(cl->sni))
        return WEIR_CONTINUE;
    const char *name = tls_upstream_name(r, cl);
    if (name && weir_request_set_pool_key(r, (weir_str_t){name, strlen(name)}) < 0)
        return WEIR_ERROR;
    return WEIR_CONTINUE;
}

int tls_upstream_connect(weir_request_t *r, weir_connection_t *c)
{
    tls_client_t *cl = client_of(r);
    if (!cl)
        return 0;
    int peer = weir_request_peer(r);
    if (peer < 0)
        return -1;
    const char *proto = weir_upstream_protocol(weir_request_upstream(r));
    tls_conn_t *t = tls_conn_client(cl, (size_t)peer, tls_upstream_name(r, cl),
                                    strcmp(proto, "http/1.1") ? proto : NULL, c);
    if (!t)
        return -1;
    if (weir_connection_set_transport(c, &tls_transport, t) < 0) {
        tls_transport.free(t);
        return -1;
    }
    return 0;
}
