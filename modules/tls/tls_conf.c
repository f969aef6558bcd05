/*
 * The `tls:` mappings (SPEC §7), read into SSL_CTXs at config time, so that
 * `weir -t` loads every certificate and key and a reload that fails keeps
 * the running generation's contexts serving.
 *
 *   listeners:
 *     - address: 0.0.0.0:443
 *       tls:
 *         certificates:                 # one or more; the first is the default
 *           - {cert: site.pem, key: site.key}   # PEM; cert may hold the chain
 *         protocols: [TLSv1.2, TLSv1.3] # the default
 *         ciphers: "..."                # TLS 1.2 (OpenSSL syntax)
 *         ciphersuites: "..."           # TLS 1.3
 *         alpn: [h2, http/1.1]          # offered in this order
 *         session_tickets: true
 *         client_ca: ca.pem             # with verify_client: off|optional|on
 *                                       # (client_ca alone means on; with optional
 *                                       # a certificate that does not verify gets
 *                                       # each request a 400, as nginx)
 *         handshake_timeout: 10s        # default client_header_timeout
 *   upstreams:
 *     app:
 *       tls: {sni: "$host", verify: true, ca: ca.pem, cert: c.pem, key: c.key}
 *
 * Defaults follow Mozilla's "intermediate" profile (v5.7): TLS 1.2 and 1.3,
 * ECDHE with AES-GCM and ChaCha20 (and DHE with the RFC 7919 groups) for
 * 1.2, X25519/P-256/P-384; but the server's cipher order (see base_options). TLSv1 and TLSv1.1 are
 * refused as config errors (RFC 8996); OpenSSL's security level 2 would
 * refuse them anyway.
 *
 * Upstream `verify` defaults to true (HAProxy's `ssl-server-verify
 * required`), against `ca` or else the system's trust store; nginx's
 * default is off, which lets anyone on the path impersonate the upstream.
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define MOZILLA_CIPHERS                                                                   \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                          \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                          \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"                          \
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
#define MOZILLA_SUITES "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:prime256v1:secp384r1"

/* ---------------------------------------------------------------- helpers */

static int fail_ssl(weir_conf_t *cf, const weir_node_t *n, const char *what, const char *path)
{
    char why[512];
    tls_errors(why, sizeof(why));
    if (path)
        return weir_conf_error(cf, n, "%s %s: %s", what, path, why);
    return weir_conf_error(cf, n, "%s: %s", what, why);
}

static const char *scalar_of(weir_conf_t *cf, const weir_node_t *n, const char *key)
{
    const char *s = weir_node_scalar(n);
    if (!s || !*s) {
        weir_conf_error(cf, n, "tls: '%s' must be a non-empty string", key);
        return NULL;
    }
    return s;
}

/* A path relative to the config file's directory, in conf memory; read
 * through weir_conf_path so that `weir -T` prints it absolute. */
static const char *path_of(weir_conf_t *cf, const weir_node_t *n, const char *key)
{
    return scalar_of(cf, n, key) ? weir_conf_path(cf, n) : NULL;
}

/* Rejects keys nobody reads: a typo must not silently mean a default. */
static int check_keys(weir_conf_t *cf, const weir_node_t *map, const char *const *known,
                      const char *where)
{
    int rc = 0;
    for (size_t i = 0; i < weir_node_count(map); i++) {
        const char *k = weir_node_scalar(weir_node_key(map, i));
        size_t j = 0;
        while (known[j] && (!k || strcmp(known[j], k) != 0))
            j++;
        if (known[j])
            continue;
        char list[256] = "";
        for (j = 0; known[j]; j++) {
            strncat(list, j ? ", " : "", sizeof(list) - strlen(list) - 1);
            strncat(list, known[j], sizeof(list) - strlen(list) - 1);
        }
        rc = weir_conf_error(cf, weir_node_key(map, i), "unknown key '%s' in %s (known: %s)",
                             k ? k : "?", where, list);
    }
    return rc;
}

/* Warns (as nginx does not even do) about a certificate outside its
 * validity: clients will refuse it, but it is the operator's call. */
static void check_dates(const weir_node_t *n, const char *path, X509 *x)
{
    const char *state = NULL;
    const ASN1_TIME *t = NULL;
    if (X509_cmp_current_time(X509_get0_notAfter(x)) < 0) {
        state = "expired on";
        t = X509_get0_notAfter(x);
    } else if (X509_cmp_current_time(X509_get0_notBefore(x)) > 0) {
        state = "is not valid before";
        t = X509_get0_notBefore(x);
    }
    if (!state)
        return;
    char when[64] = "?";
    BIO *b = BIO_new(BIO_s_mem());
    if (b && ASN1_TIME_print(b, t) > 0) {
        int k = BIO_read(b, when, sizeof(when) - 1);
        when[k > 0 ? k : 0] = '\0';
    }
    BIO_free(b);
    weir_log(&weir_module, WEIR_LOG_WARN, "%s:%u:%u: warning: certificate %s %s %s",
             weir_node_file(n), weir_node_line(n), weir_node_column(n), path, state, when);
}

/* ------------------------------------------------------------ protocols */

static int parse_protocols(weir_conf_t *cf, const weir_node_t *n, int *min, int *max)
{
    if (weir_node_type(n) != WEIR_NODE_SEQUENCE || weir_node_count(n) == 0)
        return weir_conf_error(cf, n, "tls: 'protocols' must be a list, e.g. [TLSv1.2, TLSv1.3]");
    *min = INT_MAX;
    *max = 0;
    for (size_t i = 0; i < weir_node_count(n); i++) {
        const weir_node_t *p = weir_node_child(n, i);
        const char *s = weir_node_scalar(p);
        int v;
        if (s && strcmp(s, "TLSv1.2") == 0)
            v = TLS1_2_VERSION;
        else if (s && strcmp(s, "TLSv1.3") == 0)
            v = TLS1_3_VERSION;
        else if (s && (strcmp(s, "TLSv1") == 0 || strcmp(s, "TLSv1.1") == 0 ||
                       strcmp(s, "SSLv3") == 0))
            return weir_conf_error(cf, p, "tls: protocol %s is not supported: it is insecure "
                                          "(RFC 8996); use TLSv1.2 and TLSv1.3", s);
        else
            return weir_conf_error(cf, p, "tls: unknown protocol '%s' (known: TLSv1.2, TLSv1.3)",
                                   s ? s : "?");
        *min = v < *min ? v : *min;
        *max = v > *max ? v : *max;
    }
    return 0;
}

static int set_protocols(weir_conf_t *cf, const weir_node_t *n, SSL_CTX *ctx)
{
    int min = TLS1_2_VERSION, max = TLS1_3_VERSION;
    if (n && parse_protocols(cf, n, &min, &max) < 0)
        return -1;
    if (!SSL_CTX_set_min_proto_version(ctx, min) || !SSL_CTX_set_max_proto_version(ctx, max))
        return fail_ssl(cf, n, "tls: protocols", NULL);
    return 0;
}

static int set_ciphers(weir_conf_t *cf, const weir_node_t *map, SSL_CTX *ctx)
{
    const weir_node_t *n = weir_node_get(map, "ciphers");
    const char *s = n ? scalar_of(cf, n, "ciphers") : MOZILLA_CIPHERS;
    if (!s)
        return -1;
    if (!SSL_CTX_set_cipher_list(ctx, s))
        return fail_ssl(cf, n, "tls: bad cipher string", s);
    n = weir_node_get(map, "ciphersuites");
    s = n ? scalar_of(cf, n, "ciphersuites") : MOZILLA_SUITES;
    if (!s)
        return -1;
    if (!SSL_CTX_set_ciphersuites(ctx, s))
        return fail_ssl(cf, n, "tls: bad ciphersuites string", s);
    if (!SSL_CTX_set1_groups_list(ctx, GROUPS))
        return fail_ssl(cf, map, "tls: groups", NULL);
    return 0;
}

/* Settings every context of weir shares. The server's cipher order wins
 * (HAProxy's default; nginx and Mozilla leave it to the client), except
 * that a client which puts ChaCha20 first (no AES hardware) gets it. */
static void base_options(SSL_CTX *ctx)
{
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

/* DHE (TLS 1.2, for old clients with RSA certificates) uses RFC 7919's
 * ffdhe2048, as Mozilla advises, not OpenSSL's automatic pick (RFC 3526's
 * group 14, which testssl flags as a common prime). */
static int set_dh_group(SSL_CTX *ctx)
{
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "DH", NULL);
    EVP_PKEY *params = NULL;
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string("group", "ffdhe2048", 0),
                      OSSL_PARAM_construct_end()};
    int ok = pc && EVP_PKEY_paramgen_init(pc) > 0 && EVP_PKEY_CTX_set_params(pc, p) > 0 &&
             EVP_PKEY_paramgen(pc, &params) > 0 && SSL_CTX_set0_tmp_dh_pkey(ctx, params);
    if (!ok)
        EVP_PKEY_free(params);
    EVP_PKEY_CTX_free(pc);
    return ok ? 0 : -1;
}

/* --------------------------------------------------------- certificates */

/* A certificate (with its chain) and its key into ctx, each checked on its
 * own so that the message says which file is wrong. */
static int load_cert_key(weir_conf_t *cf, const weir_node_t *cn, const weir_node_t *kn,
                         SSL_CTX *ctx)
{
    const char *cert = path_of(cf, cn, "cert"), *key = path_of(cf, kn, "key");
    if (!cert || !key)
        return -1;
    ERR_clear_error();
    if (!SSL_CTX_use_certificate_chain_file(ctx, cert))
        return fail_ssl(cf, cn, "tls: cannot load certificate", cert);
    BIO *b = BIO_new_file(key, "r");
    EVP_PKEY *pk = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (!pk)
        return fail_ssl(cf, kn, "tls: cannot load key", key);
    X509 *x = SSL_CTX_get0_certificate(ctx);
    int rc = 0;
    if (!X509_check_private_key(x, pk)) {
        ERR_clear_error();
        rc = weir_conf_error(cf, kn, "tls: key %s does not match certificate %s (a key and "
                                     "its certificate go in one entry)", key, cert);
    } else if (!SSL_CTX_use_PrivateKey(ctx, pk)) {
        rc = fail_ssl(cf, kn, "tls: cannot use key", key);
    }
    EVP_PKEY_free(pk);
    if (rc == 0)
        check_dates(cn, cert, x);
    return rc;
}

static int load_pair(weir_conf_t *cf, const weir_node_t *entry, SSL_CTX *ctx, int *key_type)
{
    static const char *const known[] = {"cert", "key", NULL};
    if (weir_node_type(entry) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, entry, "tls: a certificate is a mapping {cert: FILE, key: FILE}");
    if (check_keys(cf, entry, known, "a certificate") < 0)
        return -1;
    const weir_node_t *cn = weir_node_get(entry, "cert"), *kn = weir_node_get(entry, "key");
    if (!cn || !kn)
        return weir_conf_error(cf, entry, "tls: a certificate needs both 'cert' and 'key'");
    if (load_cert_key(cf, cn, kn, ctx) < 0)
        return -1;
    EVP_PKEY *pk = X509_get0_pubkey(SSL_CTX_get0_certificate(ctx));
    *key_type = pk ? EVP_PKEY_get_base_id(pk) : 0;
    return 0;
}

/* The names a certificate serves (sni.h): SAN dNSNames, else the CN. */
static int cert_names(X509 *x, char names[][256], size_t cap, size_t *n)
{
    *n = 0;
    GENERAL_NAMES *san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    for (int i = 0; san && i < sk_GENERAL_NAME_num(san); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
        if (g->type != GEN_DNS || *n >= cap)
            continue;
        const ASN1_IA5STRING *s = g->d.dNSName;
        if (s->length > 0 && s->length < 256) {
            memcpy(names[*n], s->data, (size_t)s->length);
            names[(*n)++][s->length] = '\0';
        }
    }
    GENERAL_NAMES_free(san);
    if (*n == 0) {
        int k = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, names[0], 256);
        if (k > 0)
            *n = 1;
    }
    return 0;
}

#define MAX_NAMES 64

typedef struct cert_group {
    SSL_CTX *ctx;
    char names[MAX_NAMES][256];
    size_t nnames;
    int key_types[4];
    size_t ntypes;
} cert_group_t;

static int same_names(const cert_group_t *a, char names[][256], size_t n)
{
    if (a->nnames != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (strcmp(a->names[i], names[i]) != 0)
            return 0;
    return 1;
}

static SSL_CTX *server_ctx_new(weir_conf_t *cf, const weir_node_t *map, tls_server_t *srv)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        fail_ssl(cf, map, "tls: SSL_CTX_new", NULL);
        return NULL;
    }
    base_options(ctx);
    if (set_dh_group(ctx) < 0) {
        fail_ssl(cf, map, "tls: DH group ffdhe2048", NULL);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (!srv->tickets)
        SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
    if (set_protocols(cf, weir_node_get(map, "protocols"), ctx) < 0 ||
        set_ciphers(cf, map, ctx) < 0 || tls_server_ctx_setup(ctx, srv) < 0) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

static int add_ctx(tls_server_t *srv, SSL_CTX *ctx)
{
    SSL_CTX **v = realloc(srv->ctx, (srv->nctx + 1) * sizeof(*v));
    if (!v)
        return -1;
    srv->ctx = v;
    srv->ctx[srv->nctx++] = ctx;
    return 0;
}

/* Each entry of `certificates` joins the context of an earlier entry with
 * the same names and another key type, or gets its own. */
static int load_certificates(weir_conf_t *cf, const weir_node_t *map, tls_server_t *srv)
{
    const weir_node_t *list = weir_node_get(map, "certificates");
    if (!list || weir_node_type(list) != WEIR_NODE_SEQUENCE || weir_node_count(list) == 0)
        return weir_conf_error(cf, list ? list : map,
                               "tls: 'certificates' must list at least one {cert, key}");
    size_t n = weir_node_count(list);
    cert_group_t *groups = calloc(n, sizeof(*groups));
    size_t ngroups = 0;
    int rc = groups ? 0 : -1;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const weir_node_t *entry = weir_node_child(list, i);
        /* load into a scratch context first to read the names */
        SSL_CTX *probe = server_ctx_new(cf, map, srv);
        int type = 0;
        if (!probe || load_pair(cf, entry, probe, &type) < 0) {
            SSL_CTX_free(probe);
            rc = -1;
            break;
        }
        char (*names)[256] = malloc(MAX_NAMES * 256);
        size_t nn = 0;
        if (!names) {
            SSL_CTX_free(probe);
            rc = -1;
            break;
        }
        cert_names(SSL_CTX_get0_certificate(probe), names, MAX_NAMES, &nn);
        cert_group_t *g = NULL;
        for (size_t j = 0; j < ngroups && !g; j++) {
            int clash = 0;
            for (size_t t = 0; t < groups[j].ntypes; t++)
                clash |= groups[j].key_types[t] == type;
            if (!clash && groups[j].ntypes < 4 && same_names(&groups[j], names, nn))
                g = &groups[j];
        }
        if (g) { /* OpenSSL holds one certificate per key type */
            SSL_CTX_free(probe);
            if (load_pair(cf, entry, g->ctx, &type) < 0)
                rc = -1;
            else
                g->key_types[g->ntypes++] = type;
            free(names);
            continue;
        }
        g = &groups[ngroups++];
        g->ctx = probe;
        memcpy(g->names, names, nn * 256);
        g->nnames = nn;
        g->key_types[g->ntypes++] = type;
        free(names);
        if (add_ctx(srv, probe) < 0) {
            SSL_CTX_free(probe);
            rc = -1;
            break;
        }
        for (size_t k = 0; k < nn; k++) {
            if (sni_add(&srv->sni, g->names[k], strlen(g->names[k]), probe) < 0 &&
                sni_name_valid(g->names[k], strlen(g->names[k])))
                rc = weir_conf_error(cf, entry, "tls: out of memory");
        }
        if (nn == 0 && i > 0)
            weir_log(&weir_module, WEIR_LOG_WARN,
                     "%s:%u:%u: warning: certificate has no DNS name; only a client without "
                     "SNI could get it, and it is not the first",
                     weir_node_file(entry), weir_node_line(entry), weir_node_column(entry));
    }
    free(groups);
    if (rc == 0 && srv->nctx && !srv->sni.dflt)
        srv->sni.dflt = srv->ctx[0];
    return rc;
}

/* ----------------------------------------------------------- client CA */

/* verify_client optional, as nginx's: a certificate that does not verify
 * does not fail the handshake; the result stays in SSL_get_verify_result,
 * so $ssl_client_verify says FAILED:reason and every request on the
 * connection gets a 400 (tls.c). */
static int accept_any_chain(int ok, X509_STORE_CTX *store)
{
    (void)ok, (void)store;
    return 1;
}

static int parse_verify_client(weir_conf_t *cf, const weir_node_t *map, tls_server_t *srv,
                               SSL_CTX *const *ctx, size_t nctx)
{
    const weir_node_t *vn = weir_node_get(map, "verify_client");
    const weir_node_t *can = weir_node_get(map, "client_ca");
    srv->verify_client = VERIFY_OFF;
    if (vn) {
        const char *s = weir_node_scalar(vn);
        /* YAML 1.1 reads a bare off/on as booleans; take them either way */
        if (s && (strcmp(s, "off") == 0 || strcmp(s, "false") == 0))
            srv->verify_client = VERIFY_OFF;
        else if (s && strcmp(s, "optional") == 0)
            srv->verify_client = VERIFY_OPTIONAL;
        else if (s && (strcmp(s, "on") == 0 || strcmp(s, "true") == 0))
            srv->verify_client = VERIFY_ON;
        else
            return weir_conf_error(cf, vn, "tls: verify_client is off, optional or on");
    } else if (can) {
        srv->verify_client = VERIFY_ON;
    }
    if (srv->verify_client == VERIFY_OFF)
        return 0;
    if (!can)
        return weir_conf_error(cf, vn, "tls: verify_client needs 'client_ca' (a PEM file of "
                                       "the CAs whose client certificates are accepted)");
    const char *ca = path_of(cf, can, "client_ca");
    if (!ca)
        return -1;
    for (size_t i = 0; i < nctx; i++) {
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);
        if (!names || !SSL_CTX_load_verify_locations(ctx[i], ca, NULL)) {
            sk_X509_NAME_pop_free(names, X509_NAME_free);
            return fail_ssl(cf, can, "tls: cannot load client_ca", ca);
        }
        SSL_CTX_set_client_CA_list(ctx[i], names);
        if (srv->verify_client == VERIFY_ON)
            SSL_CTX_set_verify(ctx[i], SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
        else /* optional: the handshake goes on; requests are refused (tls.c) */
            SSL_CTX_set_verify(ctx[i], SSL_VERIFY_PEER, accept_any_chain);
        SSL_CTX_set_verify_depth(ctx[i], 10);
    }
    return 0;
}

/* ----------------------------------------------------------------- ALPN */

static int parse_alpn(weir_conf_t *cf, const weir_node_t *n, tls_server_t *srv)
{
    static const char *const defaults[] = {"h2", "http/1.1"};
    size_t count = n ? weir_node_count(n) : 2;
    if (n && (weir_node_type(n) != WEIR_NODE_SEQUENCE || count == 0))
        return weir_conf_error(cf, n, "tls: 'alpn' must be a list, e.g. [h2, http/1.1]");
    srv->alpn_len = 0;
    for (size_t i = 0; i < count; i++) {
        const weir_node_t *p = n ? weir_node_child(n, i) : NULL;
        const char *s = p ? weir_node_scalar(p) : defaults[i];
        weir_str_t name = {s ? s : "", s ? strlen(s) : 0};
        if (!weir_protocol_supported(name)) {
            if (!p) /* a default this core does not speak */
                continue;
            return weir_conf_error(cf, p, "tls: weir does not speak the protocol '%s' "
                                          "(alpn lists what it offers: h2, http/1.1)", name.data);
        }
        if (srv->alpn_len + 1 + name.len > sizeof(srv->alpn))
            return weir_conf_error(cf, p, "tls: alpn list too long");
        srv->alpn[srv->alpn_len++] = (unsigned char)name.len;
        memcpy(srv->alpn + srv->alpn_len, name.data, name.len);
        srv->alpn_len += name.len;
    }
    return 0;
}

/* ------------------------------------------------------------ listener */

void tls_server_free(void *arg)
{
    tls_server_t *srv = arg;
    for (size_t i = 0; i < srv->nctx; i++)
        SSL_CTX_free(srv->ctx[i]);
    free(srv->ctx);
    sni_free(&srv->sni);
    free(srv);
}

int tls_parse_listener(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    static const char *const known[] = {"certificates", "protocols",      "ciphers",
                                        "ciphersuites", "alpn",           "session_tickets",
                                        "client_ca",    "verify_client",  "handshake_timeout",
                                        NULL};
    if (weir_node_type(node) != WEIR_NODE_MAPPING)
        return weir_conf_error(cf, node, "tls: on a listener, a mapping with 'certificates'");
    if (check_keys(cf, node, known, "a listener's tls") < 0)
        return -1;
    tls_server_t *srv = calloc(1, sizeof(*srv));
    if (!srv || weir_conf_cleanup(cf, tls_server_free, srv) < 0) {
        free(srv);
        return weir_conf_error(cf, node, "out of memory");
    }
    srv->tickets = 1;
    const weir_node_t *n;
    if ((n = weir_node_get(node, "session_tickets")) && weir_node_bool(cf, n, &srv->tickets) < 0)
        return -1;
    if ((n = weir_node_get(node, "handshake_timeout")) &&
        weir_node_duration_ms(cf, n, &srv->handshake_timeout) < 0)
        return -1;
    if (parse_alpn(cf, weir_node_get(node, "alpn"), srv) < 0 ||
        load_certificates(cf, node, srv) < 0 ||
        parse_verify_client(cf, node, srv, srv->ctx, srv->nctx) < 0)
        return -1;
    *(tls_server_t **)field = srv;
    return 0;
}

/* ------------------------------------------------------------ upstream */

void tls_client_free(void *arg)
{
    tls_client_t *cl = arg;
    SSL_CTX_free(cl->ctx);
    free(cl);
}

static int client_cert(weir_conf_t *cf, const weir_node_t *node, SSL_CTX *ctx)
{
    const weir_node_t *cn = weir_node_get(node, "cert"), *kn = weir_node_get(node, "key");
    if (!cn && !kn)
        return 0;
    if (!cn || !kn)
        return weir_conf_error(cf, cn ? cn : kn, "tls: a client certificate needs both "
                                                 "'cert' and 'key'");
    return load_cert_key(cf, cn, kn, ctx);
}

int tls_parse_upstream(weir_conf_t *cf, const weir_node_t *node, void *field)
{
    static const char *const known[] = {"sni", "verify", "ca", "cert", "key", "protocols", NULL};
    int on = 1;
    if (weir_node_type(node) == WEIR_NODE_SCALAR) { /* tls: true */
        if (weir_node_bool(cf, node, &on) < 0)
            return -1;
        if (!on)
            return 0;
    } else if (weir_node_type(node) != WEIR_NODE_MAPPING) {
        return weir_conf_error(cf, node, "tls: on an upstream, true or a mapping "
                                         "{sni, verify, ca, cert, key}");
    } else if (check_keys(cf, node, known, "an upstream's tls") < 0) {
        return -1;
    }
    int is_map = weir_node_type(node) == WEIR_NODE_MAPPING;
    tls_client_t *cl = calloc(1, sizeof(*cl));
    if (!cl || weir_conf_cleanup(cf, tls_client_free, cl) < 0) {
        free(cl);
        return weir_conf_error(cf, node, "out of memory");
    }
    cl->verify = 1;
    const weir_node_t *n;
    if (is_map && (n = weir_node_get(node, "verify")) && weir_node_bool(cf, n, &cl->verify) < 0)
        return -1;
    if (is_map && (n = weir_node_get(node, "sni"))) {
        const char *s = scalar_of(cf, n, "sni");
        if (!s || !(cl->sni = weir_template_compile(cf, n, s)))
            return -1;
    }
    if (!(cl->ctx = SSL_CTX_new(TLS_client_method())))
        return fail_ssl(cf, node, "tls: SSL_CTX_new", NULL);
    base_options(cl->ctx);
    if (set_protocols(cf, is_map ? weir_node_get(node, "protocols") : NULL, cl->ctx) < 0)
        return -1;
    const weir_node_t *can = is_map ? weir_node_get(node, "ca") : NULL;
    if (can) {
        const char *ca = path_of(cf, can, "ca");
        if (!ca)
            return -1;
        if (!SSL_CTX_load_verify_locations(cl->ctx, ca, NULL))
            return fail_ssl(cf, can, "tls: cannot load ca", ca);
    } else if (cl->verify && !SSL_CTX_set_default_verify_paths(cl->ctx)) {
        return fail_ssl(cf, node, "tls: cannot load the system's trust store", NULL);
    }
    if (cl->verify)
        SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_PEER, NULL);
    if (is_map && client_cert(cf, node, cl->ctx) < 0)
        return -1;
    if (tls_client_ctx_setup(cl->ctx, cl) < 0)
        return fail_ssl(cf, node, "tls: client context", NULL);
    *(tls_client_t **)field = cl;
    return 0;
}
