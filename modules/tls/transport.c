/*
 * The TLS transport: OpenSSL driven over memory, the core doing every
 * receive and send on the ring (weir_transport_t in weir/module.h).
 *
 * Buffers. OpenSSL reads ciphertext from `in` and writes records to `out`
 * through a BIO of our own (not BIO_s_mem, whose buffer keeps its high-water
 * size forever): both are taken from a small per-worker cache when bytes
 * arrive and go back as soon as they are empty, and OpenSSL's own record
 * buffers go with SSL_MODE_RELEASE_BUFFERS, so an idle TLS connection holds
 * the SSL object and nothing else. Copies: ring buffer -> in (one memcpy;
 * records often straddle receives, so they must be kept somewhere), OpenSSL
 * decrypts into the core's plaintext buffer, and encrypts into out, which
 * output() copies into the core's wire buffer.
 *
 * Records. write() gathers the pieces the core offers back to back (a
 * response head, its body) into one plaintext record of up to rec_max bytes
 * and seals it when full or when output() is called. rec_max starts at
 * SMALL_RECORD so the first bytes of a response fit one TCP segment and the
 * client can decrypt as they come (TCP slow start), and grows to a full
 * 16 KiB record after BULK_AFTER bytes; an idle second resets it, as h2o and
 * Cloudflare do ("dynamic record sizing").
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "tls.h"

#define RECORD_MAX 16384
#define SMALL_RECORD 1360 /* a 1460-byte MSS less the record and TCP option overhead */
#define BULK_AFTER (64 * 1024)
#define IDLE_RESET_MS 1000
#define IOBUF_SIZE (RECORD_MAX + 1024)
#define IOBUF_CACHE_MAX 64
#define IN_MAX (1u << 20) /* the core never gives more than a receive or two */

typedef struct iobuf {
    unsigned char *p;
    size_t off, len, cap;
} iobuf_t;

struct tls_conn {
    SSL *ssl;
    weir_connection_t *c;
    iobuf_t in, out;
    unsigned char *stage; /* plaintext gathered for the next record */
    size_t stage_len;
    size_t rec_max;
    uint64_t sent_since_idle;
    uint64_t last_write_ms;
    tls_client_t *client; /* upstream side */
    size_t peer;
    char *name; /* upstream: the name verified and sent as SNI */
    unsigned done : 1, failed : 1, plain_http : 1;
};

/* --------------------------------------------------------------- buffers */

static unsigned char *cache[IOBUF_CACHE_MAX];
static size_t ncache;

static unsigned char *buf_get(void)
{
    return ncache ? cache[--ncache] : malloc(IOBUF_SIZE);
}

static void buf_put(unsigned char *b)
{
    if (ncache < IOBUF_CACHE_MAX)
        cache[ncache++] = b;
    else
        free(b);
}

static void iobuf_release(iobuf_t *b)
{
    if (!b->p)
        return;
    if (b->cap == IOBUF_SIZE)
        buf_put(b->p);
    else
        free(b->p);
    *b = (iobuf_t){0};
}

static int iobuf_append(iobuf_t *b, const void *data, size_t len)
{
    if (!b->p) {
        if (!(b->p = buf_get()))
            return -1;
        b->cap = IOBUF_SIZE;
    }
    if (b->off && b->len + len > b->cap) { /* move the unread part down first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
    }
    if (b->len + len > b->cap) {
        size_t cap = b->cap;
        while (cap < b->len + len)
            cap *= 2;
        unsigned char *p;
        if (b->cap == IOBUF_SIZE) {
            if ((p = malloc(cap)))
                memcpy(p, b->p, b->len), buf_put(b->p);
        } else {
            p = realloc(b->p, cap);
        }
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static size_t iobuf_take(iobuf_t *b, void *dst, size_t cap)
{
    size_t n = b->len - b->off;
    if (n > cap)
        n = cap;
    if (n) {
        memcpy(dst, b->p + b->off, n);
        b->off += n;
    }
    if (b->p && b->off == b->len)
        iobuf_release(b);
    return n;
}

/* ------------------------------------------------------------------- BIO */

static int bio_write(BIO *bio, const char *data, int len)
{
    tls_conn_t *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (len <= 0)
        return 0;
    if (iobuf_append(&t->out, data, (size_t)len) < 0)
        return -1;
    return len;
}

static int bio_read(BIO *bio, char *dst, int cap)
{
    tls_conn_t *t = BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    if (cap <= 0)
        return 0;
    size_t n = iobuf_take(&t->in, dst, (size_t)cap);
    if (n == 0) {
        BIO_set_retry_read(bio);
        return -1;
    }
    return (int)n;
}

static long bio_ctrl(BIO *bio, int cmd, long num, void *ptr)
{
    (void)num, (void)ptr;
    tls_conn_t *t = BIO_get_data(bio);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return t ? (long)(t->in.len - t->in.off) : 0;
    case BIO_CTRL_WPENDING:
        return t ? (long)(t->out.len - t->out.off) : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

static BIO_METHOD *bio_method(void)
{
    static BIO_METHOD *m;
    if (m)
        return m;
    m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weir");
    if (m && (!BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read) ||
              !BIO_meth_set_ctrl(m, bio_ctrl) || !BIO_meth_set_create(m, bio_create))) {
        BIO_meth_free(m);
        m = NULL;
    }
    return m;
}

/* ------------------------------------------------------------- state */

static tls_conn_t *conn_new(SSL_CTX *ctx, weir_connection_t *c)
{
    BIO_METHOD *m = bio_method();
    tls_conn_t *t = calloc(1, sizeof(*t));
    if (!t || !m)
        goto fail;
    t->c = c;
    t->rec_max = SMALL_RECORD;
    if (!(t->ssl = SSL_new(ctx)))
        goto fail;
    BIO *bio = BIO_new(m);
    if (!bio)
        goto fail;
    BIO_set_data(bio, t);
    /* one BIO for both directions: given as both, SSL_set_bio takes its
     * one reference */
    SSL_set_bio(t->ssl, bio, bio);
    SSL_set_app_data(t->ssl, t);
    return t;
fail:
    if (t && t->ssl)
        SSL_free(t->ssl);
    free(t);
    return NULL;
}

tls_conn_t *tls_conn_server(const tls_server_t *srv, weir_connection_t *c)
{
    tls_conn_t *t = conn_new(srv->ctx[0], c);
    if (t)
        SSL_set_accept_state(t->ssl);
    return t;
}

tls_conn_t *tls_conn_client(tls_client_t *cl, size_t peer, const char *name, const char *alpn,
                            weir_connection_t *c)
{
    tls_conn_t *t = conn_new(cl->ctx, c);
    if (!t)
        return NULL;
    t->client = cl;
    t->peer = peer;
    SSL_set_connect_state(t->ssl);
    if (alpn) {
        unsigned char wire[16];
        size_t n = strlen(alpn);
        if (n + 1 > sizeof(wire))
            goto fail;
        wire[0] = (unsigned char)n;
        memcpy(wire + 1, alpn, n);
        if (SSL_set_alpn_protos(t->ssl, wire, (unsigned)(n + 1)) != 0)
            goto fail;
    }
    if (name && !(t->name = strdup(name)))
        goto fail;
    if (name) {
        int is_ip = 0;
        ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
        if (ip) {
            is_ip = 1;
            ASN1_OCTET_STRING_free(ip);
        }
        /* an IP literal is no server name (RFC 6066); it is verified as an
         * IP address instead */
        if (!is_ip && !SSL_set_tlsext_host_name(t->ssl, name))
            goto fail;
        if (cl->verify) {
            X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
            int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name)
                           : X509_VERIFY_PARAM_set1_host(vp, name, 0);
            if (!ok)
                goto fail;
        }
    }
    if (cl->session && cl->session[peer] && cl->session_name[peer] && name &&
        strcmp(cl->session_name[peer], name) == 0)
        SSL_set_session(t->ssl, cl->session[peer]);
    return t;
fail:
    SSL_free(t->ssl);
    free(t->name);
    free(t);
    return NULL;
}

SSL *tls_conn_ssl(const tls_conn_t *t)
{
    return t->ssl;
}

tls_client_t *tls_conn_client_of(const tls_conn_t *t)
{
    return t->client;
}

size_t tls_conn_peer(const tls_conn_t *t)
{
    return t->peer;
}

const char *tls_conn_name(const tls_conn_t *t)
{
    return t->name;
}

/* Each error's reason once (a system error as its errno text: OpenSSL 3
 * calls them all "system lib"). */
const char *tls_errors(char *buf, size_t cap)
{
    size_t n = 0;
    const char *last = NULL;
    buf[0] = '\0';
    unsigned long e;
    while ((e = ERR_get_error()) != 0) {
        const char *why = ERR_SYSTEM_ERROR(e) ? strerror(ERR_GET_REASON(e))
                                              : ERR_reason_error_string(e);
        /* "system lib" only says that the one before was errno's */
        if (!why || strcmp(why, "system lib") == 0 || (last && strcmp(last, why) == 0) ||
            n + 3 >= cap)
            continue;
        last = why;
        int k = snprintf(buf + n, cap - n, "%s%s", n ? ": " : "", why);
        if (k > 0)
            n += (size_t)k < cap - n ? (size_t)k : cap - n - 1;
    }
    if (!n)
        snprintf(buf, cap, "unknown error");
    return buf;
}

/* ------------------------------------------------------------ transport */

static int t_input(void *state, const char *data, size_t len)
{
    tls_conn_t *t = state;
    if (t->failed || t->in.len - t->in.off + len > IN_MAX)
        return WEIR_TRANSPORT_ERROR;
    return iobuf_append(&t->in, data, len) < 0 ? WEIR_TRANSPORT_ERROR : 0;
}

/* nginx answers plain HTTP on an HTTPS port with a 400 that says so; the
 * client reads it instead of a bare close. */
static void answer_plain_http(tls_conn_t *t)
{
    static const char answer[] = "HTTP/1.1 400 Bad Request\r\n"
                                 "Content-Type: text/plain\r\n"
                                 "Content-Length: 48\r\n"
                                 "Connection: close\r\n\r\n"
                                 "The plain HTTP request was sent to HTTPS port.\r\n";
    iobuf_release(&t->out);
    iobuf_append(&t->out, answer, sizeof(answer) - 1);
    t->plain_http = 1;
}

static void log_failure(tls_conn_t *t)
{
    char why[256];
    long v = SSL_get_verify_result(t->ssl);
    if (t->client) {
        if (v != X509_V_OK)
            snprintf(why, sizeof(why), "certificate verify failed: %s",
                     X509_verify_cert_error_string(v));
        else
            tls_errors(why, sizeof(why));
        ERR_clear_error();
        weir_log(&weir_module, WEIR_LOG_ERROR, "upstream %s (%s): TLS handshake failed: %s",
                 t->client->name, weir_peer_address(t->client->u, t->peer), why);
        return;
    }
    tls_errors(why, sizeof(why));
    weir_connection_log(t->c, &weir_module, WEIR_LOG_INFO, "client %llu: TLS handshake failed: %s",
                        (unsigned long long)weir_connection_id(t->c), why);
}

/* After the handshake: an alert (TLS 1.3 servers refuse a client
 * certificate only now), a bad record. */
static void log_read_failure(tls_conn_t *t)
{
    char why[256];
    tls_errors(why, sizeof(why));
    if (t->client)
        weir_log(&weir_module, WEIR_LOG_ERROR, "upstream %s (%s): TLS failed: %s",
                 t->client->name, weir_peer_address(t->client->u, t->peer), why);
    else
        weir_connection_log(t->c, &weir_module, WEIR_LOG_INFO, "client %llu: TLS failed: %s",
                            (unsigned long long)weir_connection_id(t->c), why);
}

static int t_handshake(weir_connection_t *c, void *state)
{
    tls_conn_t *t = state;
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->done = 1;
        weir_connection_set_secure(c);
        const unsigned char *proto;
        unsigned plen;
        SSL_get0_alpn_selected(t->ssl, &proto, &plen);
        if (plen && !t->client)
            weir_connection_set_protocol(c, (weir_str_t){(const char *)proto, plen});
        return WEIR_TRANSPORT_DONE;
    }
    int err = SSL_get_error(t->ssl, rc);
    if (err == SSL_ERROR_WANT_READ)
        return WEIR_TRANSPORT_AGAIN;
    t->failed = 1;
    unsigned long e = ERR_peek_error();
    if (!t->client && ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)
        answer_plain_http(t);
    log_failure(t);
    ERR_clear_error();
    return WEIR_TRANSPORT_ERROR;
}

static long t_read(void *state, char *buf, size_t cap)
{
    tls_conn_t *t = state;
    size_t n = 0;
    if (t->failed)
        return WEIR_TRANSPORT_ERROR;
    if (SSL_read_ex(t->ssl, buf, cap, &n) == 1)
        return (long)n;
    switch (SSL_get_error(t->ssl, 0)) {
    case SSL_ERROR_WANT_READ:
        return WEIR_TRANSPORT_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return WEIR_TRANSPORT_EOF;
    default:
        t->failed = 1;
        log_read_failure(t);
        return WEIR_TRANSPORT_ERROR;
    }
}

static int seal(tls_conn_t *t, const void *data, size_t len)
{
    size_t n = 0;
    if (SSL_write_ex(t->ssl, data, len, &n) != 1 || n != len) {
        t->failed = 1;
        ERR_clear_error();
        return -1;
    }
    t->sent_since_idle += len;
    if (t->sent_since_idle >= BULK_AFTER)
        t->rec_max = RECORD_MAX;
    return 0;
}

static int seal_stage(tls_conn_t *t)
{
    if (!t->stage_len)
        return 0;
    int rc = seal(t, t->stage, t->stage_len);
    t->stage_len = 0;
    buf_put(t->stage);
    t->stage = NULL;
    return rc;
}

static long t_write(void *state, const char *data, size_t len)
{
    tls_conn_t *t = state;
    if (t->failed || !t->done)
        return WEIR_TRANSPORT_ERROR;
    uint64_t now = weir_monotonic_ms();
    if (now - t->last_write_ms >= IDLE_RESET_MS && !t->stage_len && t->out.len == t->out.off) {
        t->rec_max = SMALL_RECORD;
        t->sent_since_idle = 0;
    }
    t->last_write_ms = now;
    if (!t->stage_len && len >= t->rec_max) { /* a whole record: no gathering copy */
        size_t n = t->rec_max; /* seal() may grow rec_max */
        return seal(t, data, n) < 0 ? WEIR_TRANSPORT_ERROR : (long)n;
    }
    if (!t->stage && !(t->stage = buf_get()))
        return WEIR_TRANSPORT_ERROR;
    size_t room = t->rec_max - t->stage_len;
    size_t n = len < room ? len : room;
    memcpy(t->stage + t->stage_len, data, n);
    t->stage_len += n;
    if (t->stage_len == t->rec_max && seal_stage(t) < 0)
        return WEIR_TRANSPORT_ERROR;
    return (long)n;
}

static size_t t_output(void *state, char *buf, size_t cap)
{
    tls_conn_t *t = state;
    if (t->stage_len && !t->failed)
        seal_stage(t);
    return iobuf_take(&t->out, buf, cap);
}

static void t_shutdown(void *state)
{
    tls_conn_t *t = state;
    if (t->done && !t->failed) {
        seal_stage(t);
        SSL_shutdown(t->ssl); /* queues close_notify in out; no wait for the peer's */
        ERR_clear_error();
    }
}

static void t_free(void *state)
{
    tls_conn_t *t = state;
    SSL_free(t->ssl);
    iobuf_release(&t->in);
    iobuf_release(&t->out);
    if (t->stage)
        buf_put(t->stage);
    free(t->name);
    free(t);
}

const weir_transport_t tls_transport = {
    .name = "tls",
    .input = t_input,
    .handshake = t_handshake,
    .read = t_read,
    .write = t_write,
    .output = t_output,
    .shutdown = t_shutdown,
    .free = t_free,
};
