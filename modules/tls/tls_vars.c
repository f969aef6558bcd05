/*
 * $ssl_* variables, with nginx's meanings and spellings. Each reads the
 * request's client connection; on a connection without TLS every one is
 * unset. The core reserves these names (API 1.4), so a config that logs them
 * loads without this module too.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/x509.h>

#include "tls.h"

static SSL *ssl_of(const weir_request_t *r)
{
    weir_connection_t *c = weir_request_connection(r);
    tls_conn_t *t = c ? weir_connection_ctx(c, &weir_module) : NULL;
    return t ? tls_conn_ssl(t) : NULL;
}

static int out_cstr(weir_request_t *r, const char *s, weir_str_t *out)
{
    (void)r;
    if (!s)
        return 1;
    out->data = s;
    out->len = strlen(s);
    return 0;
}

/* A copy in the request arena (OpenSSL's strings may not outlive the call). */
static int out_copy(weir_request_t *r, const char *s, size_t len, weir_str_t *out)
{
    char *d = weir_request_alloc(r, len + 1);
    if (!d)
        return 1;
    memcpy(d, s, len);
    out->data = d;
    out->len = len;
    return 0;
}

#define GETTER(name) static int name(weir_request_t *r, weir_str_t suffix, weir_str_t *out)

GETTER(v_protocol)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    return ssl ? out_cstr(r, SSL_get_version(ssl), out) : 1;
}

GETTER(v_cipher)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    return ssl ? out_cstr(r, SSL_get_cipher_name(ssl), out) : 1;
}

GETTER(v_server_name)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    const char *s = ssl ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
    return s ? out_copy(r, s, strlen(s), out) : 1;
}

GETTER(v_session_reused)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    return ssl ? out_cstr(r, SSL_session_reused(ssl) ? "r" : ".", out) : 1;
}

GETTER(v_alpn)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    const unsigned char *p;
    unsigned len = 0;
    if (ssl)
        SSL_get0_alpn_selected(ssl, &p, &len);
    return len ? out_copy(r, (const char *)p, len, out) : 1;
}

GETTER(v_client_verify)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    if (!ssl)
        return 1;
    X509 *x = SSL_get0_peer_certificate(ssl);
    if (!x)
        return out_cstr(r, "NONE", out);
    long v = SSL_get_verify_result(ssl);
    if (v == X509_V_OK)
        return out_cstr(r, "SUCCESS", out);
    char buf[160];
    int n = snprintf(buf, sizeof(buf), "FAILED:%s", X509_verify_cert_error_string(v));
    return out_copy(r, buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : sizeof(buf) - 1, out);
}

/* RFC 2253 text of a name, as nginx's $ssl_client_s_dn. */
static int name_text(weir_request_t *r, const X509_NAME *name, weir_str_t *out)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (!b)
        return 1;
    int rc = 1;
    char *p;
    if (X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0) {
        long len = BIO_get_mem_data(b, &p);
        if (len > 0)
            rc = out_copy(r, p, (size_t)len, out);
    }
    BIO_free(b);
    return rc;
}

GETTER(v_client_s_dn)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    return x ? name_text(r, X509_get_subject_name(x), out) : 1;
}

GETTER(v_client_i_dn)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    return x ? name_text(r, X509_get_issuer_name(x), out) : 1;
}

/* SHA-1 of the DER certificate in lowercase hex, as nginx gives it. */
GETTER(v_client_fingerprint)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned len = 0;
    if (!x || !X509_digest(x, EVP_sha1(), md, &len))
        return 1;
    char hex[2 * EVP_MAX_MD_SIZE];
    for (unsigned i = 0; i < len; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return out_copy(r, hex, 2 * len, out);
}

GETTER(v_client_serial)
{
    (void)suffix;
    SSL *ssl = ssl_of(r);
    X509 *x = ssl ? SSL_get0_peer_certificate(ssl) : NULL;
    BIGNUM *bn = x ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL) : NULL;
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int rc = hex ? out_copy(r, hex, strlen(hex), out) : 1;
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

int tls_vars_register(weir_conf_t *cf)
{
    static const struct {
        const char *name;
        weir_var_get_fn get;
    } vars[] = {
        {"ssl_protocol", v_protocol},
        {"ssl_cipher", v_cipher},
        {"ssl_server_name", v_server_name},
        {"ssl_session_reused", v_session_reused},
        {"ssl_alpn_protocol", v_alpn},
        {"ssl_client_verify", v_client_verify},
        {"ssl_client_s_dn", v_client_s_dn},
        {"ssl_client_i_dn", v_client_i_dn},
        {"ssl_client_fingerprint", v_client_fingerprint},
        {"ssl_client_serial", v_client_serial},
    };
    for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
        if (weir_var_register(cf, vars[i].name, 0, vars[i].get) < 0)
            return weir_conf_error(cf, NULL, "tls: variable $%s is taken", vars[i].name);
    return 0;
}
