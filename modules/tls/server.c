/*
 * A listener's SSL_CTX callbacks: the certificate by SNI, ALPN, session
 * tickets sealed with the shared keys (tickets.h), and the shared session
 * cache (session_cache.h). Every context of a listener gets the same
 * callbacks, so it does not matter which of them OpenSSL asks after the SNI
 * switch.
 */
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "tls.h"

/* How long a session may be resumed: one ticket epoch. Tickets are
 * accepted while their keys are (one to two epochs); OpenSSL also checks
 * this lifetime on resumption. */
#define SESSION_LIFETIME_S TICKET_EPOCH_S

ticket_ring_t tls_tickets;
scache_t *tls_scache;

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    tls_server_t *srv = arg;
    SSL_CTX *ctx = sni_lookup(&srv->sni, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
    if (ctx && ctx != SSL_get_SSL_CTX(ssl)) {
        /* only the certificate comes from the new context; verification
         * settings stay the SSL's, which the contexts share anyway */
        SSL_set_SSL_CTX(ssl, ctx);
    }
    return SSL_TLSEXT_ERR_OK;
}

/* Our order wins among what the client offers. A client offering none of
 * ours gets no ALPN answer and HTTP/1.1, as nginx does (RFC 7301 would
 * allow a fatal alert). */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned inlen, void *arg)
{
    (void)ssl;
    tls_server_t *srv = arg;
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, srv->alpn, (unsigned)srv->alpn_len, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

static int mac_init(EVP_MAC_CTX *mac, const ticket_keys_t *k)
{
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_init(mac, k->hmac, sizeof(k->hmac), params);
}

static int on_ticket(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cipher,
                     EVP_MAC_CTX *mac, int enc)
{
    if (!tls_scache || ticket_ring_at(&tls_tickets, (uint64_t)time(NULL)) < 0)
        return enc ? -1 : 0; /* no keys: no ticket, full handshake */
    if (enc) {
        const ticket_keys_t *k = &tls_tickets.cur;
        if (RAND_bytes(iv, 16) != 1)
            return -1;
        memcpy(name, k->name, 16);
        if (!EVP_EncryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k->aes, iv) || !mac_init(mac, k))
            return -1;
        return 1;
    }
    int renew = 0;
    const ticket_keys_t *k = ticket_ring_find(&tls_tickets, name, &renew);
    if (!k)
        return 0; /* unknown or too old: a full handshake */
    if (!EVP_DecryptInit_ex(cipher, EVP_aes_256_cbc(), NULL, k->aes, iv) || !mac_init(mac, k))
        return -1;
    /* TLS 1.3 clients use a ticket once (RFC 8446 C.4): a resumed session
     * gets a new one, or every other connection would be a full handshake.
     * It is also the server's last flight: without it a client that waits
     * on Nagle for the ACK of its Finished stalls ~40 ms. */
    if (renew || SSL_version(ssl) == TLS1_3_VERSION)
        return 2;
    return 1;
}

static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    /* a TLS 1.3 session with a stateless ticket comes back by its ticket,
     * never by its ID: storing it would be work per handshake for nothing */
    if (SSL_version(ssl) == TLS1_3_VERSION && !(SSL_get_options(ssl) & SSL_OP_NO_TICKET))
        return 0;
    unsigned char der[SCACHE_DATA];
    int len = i2d_SSL_SESSION(sess, NULL);
    if (len <= 0 || len > (int)sizeof(der))
        return 0;
    unsigned char *p = der;
    i2d_SSL_SESSION(sess, &p);
    unsigned idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    uint64_t expires = (uint64_t)SSL_SESSION_get_time(sess) + (uint64_t)SSL_SESSION_get_timeout(sess);
    scache_put(tls_scache, id, idlen, der, (size_t)len, expires);
    return 0; /* we keep no reference */
}

static SSL_SESSION *on_get_session(SSL *ssl, const unsigned char *id, int len, int *copy)
{
    (void)ssl;
    unsigned char der[SCACHE_DATA];
    *copy = 0;
    size_t n = len > 0 ? scache_get(tls_scache, id, (size_t)len, (uint64_t)time(NULL), der,
                                    sizeof(der))
                       : 0;
    if (!n)
        return NULL;
    const unsigned char *p = der;
    return d2i_SSL_SESSION(NULL, &p, (long)n);
}

static void on_remove_session(SSL_CTX *ctx, SSL_SESSION *sess)
{
    (void)ctx;
    unsigned idlen;
    const unsigned char *id = SSL_SESSION_get_id(sess, &idlen);
    scache_remove(tls_scache, id, idlen);
}

int tls_server_ctx_setup(SSL_CTX *ctx, tls_server_t *srv)
{
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, srv);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, srv);
    if (srv->tickets && !SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, on_ticket))
        return -1;
    /* the internal cache is not used, so nothing to flush every 255
     * handshakes either */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER | SSL_SESS_CACHE_NO_INTERNAL |
                                            SSL_SESS_CACHE_NO_AUTO_CLEAR);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_sess_set_get_cb(ctx, on_get_session);
    SSL_CTX_sess_set_remove_cb(ctx, on_remove_session);
    SSL_CTX_set_timeout(ctx, SESSION_LIFETIME_S);
    /* TLS 1.3: one ticket per handshake is enough for a reconnecting client
     * (OpenSSL sends two by default) */
    SSL_CTX_set_num_tickets(ctx, 1);
    return 0;
}
